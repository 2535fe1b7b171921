//! Cursor poll cost as the store grows: `cargo bench --bench cursor_poll`.
//!
//! A plain timing binary (no harness). The store grows to 10k, 100k and 1M
//! events (pass a smaller largest size as the first argument, e.g.
//! `cargo bench --bench cursor_poll -- 200000`). At each size it measures, on
//! cursors that have caught up with the store:
//!
//! - `all/10`: a `Region::all()` cursor polling the 10 events appended since
//!   its previous poll;
//! - `entity/1`: an exact-entity cursor polling the 1 event (of those 10) on
//!   its entity;
//! - `scope/1`: a scope-and-kind cursor (no entity narrowing, so the index
//!   columns are scanned) polling the 1 matching event of those 10;
//! - `idle/0`: a caught-up `Region::all()` poll that finds nothing.
//!
//! Appends are not timed. Flat numbers across sizes mean a poll costs in
//! proportion to what it returns (and to what was appended since the previous
//! poll), not to the size of the store.

use std::time::{Duration, Instant};

use batpak::prelude::*;
use serde_json::json;

const FILLER: EventKind = EventKind::custom(0x1, 1);
const WATCHED: EventKind = EventKind::custom(0x1, 2);
const ROUNDS: usize = 2_000;
const PER_ROUND: u64 = 10;

fn payload(i: u64) -> serde_json::Value {
    json!({"user": format!("user-{}", i % 1000), "amount": i, "note": "a cursor poll benchmark filler payload"})
}

/// Appends `count` filler events across 1000 entities, in batches.
fn grow(store: &Store, count: u64, written: &mut u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut left = count;
    while left > 0 {
        let n = left.min(5_000);
        let mut batch = Batch::new();
        for _ in 0..n {
            let entity = format!("entity-{}", *written % 1000);
            batch.add(
                &Coordinate::new(entity, "bench")?,
                FILLER,
                &payload(*written),
            )?;
            *written += 1;
        }
        store.append_batch(&batch)?;
        left -= n;
    }
    Ok(())
}

#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn line(&mut self, size: u64, what: &str) -> f64 {
        self.0.sort();
        let total: Duration = self.0.iter().sum();
        let mean_us = total.as_secs_f64() * 1e6 / self.0.len() as f64;
        let p50 = self.0[self.0.len() / 2].as_secs_f64() * 1e6;
        let p99 = self.0[self.0.len() * 99 / 100].as_secs_f64() * 1e6;
        println!("{size:>9} events  {what:<9}  mean {mean_us:>8.2} µs  p50 {p50:>8.2} µs  p99 {p99:>8.2} µs");
        p50
    }
}

fn measure(
    store: &Store,
    size: u64,
    written: &mut u64,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let watched = Coordinate::new("watched", "bench")?;
    let mut all = store.cursor_guaranteed(&Region::all()).from_now();
    let mut entity = store
        .cursor_guaranteed(&Region::entity("watched"))
        .from_now();
    let mut scope = store
        .cursor_guaranteed(&Region::scope("bench").with_kind(KindFilter::Exact(WATCHED)))
        .from_now();
    let (mut s_all, mut s_entity, mut s_scope, mut s_idle) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    for _ in 0..ROUNDS {
        grow(store, PER_ROUND - 1, written)?;
        store.append(&watched, WATCHED, &payload(*written))?;
        *written += 1;

        let started = Instant::now();
        let got = all.poll_batch(100)?;
        s_all.0.push(started.elapsed());
        assert_eq!(got.len() as u64, PER_ROUND);

        let started = Instant::now();
        let got = entity.poll_batch(100)?;
        s_entity.0.push(started.elapsed());
        assert_eq!(got.len(), 1);

        let started = Instant::now();
        let got = scope.poll_batch(100)?;
        s_scope.0.push(started.elapsed());
        assert_eq!(got.len(), 1);

        let started = Instant::now();
        let got = all.poll_batch(100)?;
        s_idle.0.push(started.elapsed());
        assert!(got.is_empty());
    }
    Ok(vec![
        s_all.line(size, "all/10"),
        s_entity.line(size, "entity/1"),
        s_scope.line(size, "scope/1"),
        s_idle.line(size, "idle/0"),
    ])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let largest: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let sizes: Vec<u64> = [10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|&s| s <= largest)
        .collect();
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path()).with_sync_every_n_events(1_000_000))?;
    let mut written = 0;
    let mut results = Vec::new();
    for &size in &sizes {
        let started = Instant::now();
        grow(&store, size.saturating_sub(written), &mut written)?;
        eprintln!(
            "grew the store to {written} events in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        results.push((written, measure(&store, written, &mut written)?));
    }
    if let (Some((small, first)), Some((large, last))) = (results.first(), results.last()) {
        println!("ratio of median poll cost, {large} vs {small} events (1.0 = flat):");
        for (name, (a, b)) in ["all/10", "entity/1", "scope/1", "idle/0"]
            .iter()
            .zip(first.iter().zip(last))
        {
            println!("  {name:<9} {:.2}", b / a);
        }
    }
    store.close()?;
    Ok(())
}
