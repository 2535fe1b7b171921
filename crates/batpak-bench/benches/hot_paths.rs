//! Criterion micro-benchmarks of batpak's hot paths, through the public API:
//! relaxed append, durable append, durable batch of 100, one entity's
//! history, and a replay of the whole store.
//!
//! Run with `cargo bench -p batpak-bench`. These time one operation in
//! isolation; the standard workloads and the budgets are in the
//! `batpak-bench` binary.

use std::hint::black_box;

use batpak::{Batch, BatchItem, Coordinate, EventKind, Region, Store, StoreConfig};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde::Serialize;

const KIND: EventKind = EventKind::custom(0x1, 1);
const ENTITIES: usize = 100;

#[derive(Serialize)]
struct Payload<'a> {
    user: &'a str,
    amount: u64,
    note: &'a str,
}

const NOTE: &str =
    "payment received for order; customer asked for gift wrapping and a delivery slot in the morning";

fn payload(i: usize) -> Payload<'static> {
    Payload {
        user: "user-123",
        amount: i as u64,
        note: NOTE,
    }
}

fn coordinates() -> Vec<Coordinate> {
    (0..ENTITIES)
        .map(|i| Coordinate::new(format!("entity-{i}"), "bench").expect("valid coordinate"))
        .collect()
}

fn append(c: &mut Criterion) {
    let coordinates = coordinates();
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    for (name, n) in [("relaxed_n1000", 1000u32), ("durable_n1", 1)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(StoreConfig::new(dir.path()).with_sync_every_n_events(n))
            .expect("open store");
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                black_box(
                    store
                        .append(&coordinates[i % ENTITIES], KIND, &payload(i))
                        .expect("append"),
                )
            })
        });
        let _closed = store.close().expect("close");
    }
    group.finish();
}

fn batch(c: &mut Criterion) {
    let coordinates = coordinates();
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Elements(100));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(StoreConfig::new(dir.path())).expect("open store");
    group.bench_function("durable_100", |b| {
        b.iter_batched(
            || {
                let mut batch = Batch::new().durable();
                for i in 0..100 {
                    batch.push(
                        BatchItem::new(&coordinates[i % ENTITIES], KIND, &payload(i))
                            .expect("item"),
                    );
                }
                batch
            },
            |batch| black_box(store.append_batch(&batch).expect("batch")),
            BatchSize::SmallInput,
        )
    });
    let _closed = store.close().expect("close");
    group.finish();
}

/// A store of 10,000 events over 100 entities, for the read benchmarks.
fn filled_store(dir: &std::path::Path) -> Store {
    let coordinates = coordinates();
    let store = Store::open(StoreConfig::new(dir)).expect("open store");
    for chunk in 0..10 {
        let mut batch = Batch::new();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            batch
                .push(BatchItem::new(&coordinates[i % ENTITIES], KIND, &payload(i)).expect("item"));
        }
        store.append_batch(&batch).expect("batch");
    }
    store
}

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = filled_store(dir.path());
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(100));
    let mut e = 0usize;
    group.bench_function("entity_100_events", |b| {
        b.iter(|| {
            e = (e + 1) % ENTITIES;
            let events = store
                .stream(&format!("entity-{e}"))
                .collect::<Result<Vec<_>, _>>()
                .expect("stream");
            black_box(events.len())
        })
    });
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("replay_10k_events", |b| {
        b.iter(|| {
            let mut counts = [0u64; 4];
            for event in store.query(&Region::all()) {
                let event = event.expect("event");
                counts[event.kind().type_id() as usize % 4] += 1;
            }
            black_box(counts)
        })
    });
    group.finish();
    let _closed = store.close().expect("close");
}

criterion_group!(benches, append, batch, reads);
criterion_main!(benches);
