//! Measures budget W5 and the memory budget (TARGETS.md) on a 1M-event store:
//! open after `close()`, open after a crash without close, resident memory
//! after open, then a read of one entity. Ignored by default: it is a
//! measurement, not a test, and timings are never asserted.
//!
//! ```text
//! cargo test --release --test ops_budget -- --ignored --nocapture
//! BATPAK_W5_DIR=/path BATPAK_W5_EVENTS=1000000 (defaults: a temp dir, 1M)
//! ```
//!
//! Every measurement runs in a fresh child process, so resident memory is
//! the store's and not left over from building it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use batpak::prelude::*;
use batpak::store::IndexSource;

const ROLE: &str = "BATPAK_W5_ROLE";
const DIR: &str = "BATPAK_W5_DIR";
const EVENTS: &str = "BATPAK_W5_EVENTS";

fn events() -> u64 {
    std::env::var(EVENTS)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time of the calling thread in milliseconds (open runs on it): on a
/// shared machine the wall time mostly measures the other tenants.
fn cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |ns| ns / 1e6)
}

fn payload(i: u64) -> serde_json::Value {
    serde_json::json!({
        "user": format!("user-{:06}", i % 100_000),
        "amount": i * 7 % 10_000,
        "note": "a note of some length to bring the payload near 150 bytes, as in W1",
    })
}

fn append_events(store: &Store, from: u64, count: u64) {
    let kinds = [
        EventKind::custom(0xA, 1),
        EventKind::custom(0xA, 2),
        EventKind::custom(0xA, 3),
    ];
    let mut i = from;
    while i < from + count {
        let mut batch = Batch::new();
        let end = (i + 1000).min(from + count);
        for j in i..end {
            let coord = Coordinate::new(format!("entity-{}", j % 1000), "scope").unwrap();
            batch
                .add(&coord, kinds[(j % 3) as usize], &payload(j))
                .unwrap();
        }
        store.append_batch(&batch).unwrap();
        i = end;
    }
}

/// Child process roles.
fn child(role: &str, dir: &Path) {
    match role {
        "build" => {
            let store = Store::open(StoreConfig::new(dir)).unwrap();
            let started = Instant::now();
            append_events(&store, 0, events());
            let appended = started.elapsed();
            store.close().unwrap();
            println!(
                "built {} events in {:.1} s",
                events(),
                appended.as_secs_f64()
            );
        }
        "close" => {
            // Bring the store to the state an orderly close leaves.
            Store::open(StoreConfig::new(dir)).unwrap().close().unwrap();
        }
        "crash" => {
            // Append a tail, then die without close (no final checkpoint).
            let store = Store::open(StoreConfig::new(dir)).unwrap();
            let next = store.next_sequence();
            append_events(&store, next, 20_000);
            std::process::exit(0);
        }
        "open" => {
            let before = rss_kib();
            let cpu_before = cpu_ms();
            let started = Instant::now();
            let store = Store::open(StoreConfig::new(dir)).unwrap();
            let open = started.elapsed();
            let open_cpu = cpu_ms() - cpu_before;
            let after = rss_kib();
            let read_started = Instant::now();
            let read = store.stream("entity-42").count();
            let read_time = read_started.elapsed();
            let stats = store.stats();
            let source = match stats.open_report.index_source {
                IndexSource::Checkpoint {
                    restored_events,
                    scanned_events,
                    images,
                } => format!("checkpoint(images={images}, restored={restored_events}, scanned={scanned_events})"),
                other => format!("{other:?}"),
            };
            println!(
                "open: {:.1} ms wall, {open_cpu:.1} ms cpu, source {source}, events {}, rss before {} KiB, after open {} KiB ({:.1} MiB), index memory {:.1} MiB ({:.1} B/event), read entity-42: {read} events in {:.2} ms",
                open.as_secs_f64() * 1000.0,
                stats.events,
                before,
                after,
                after as f64 / 1024.0,
                stats.index_memory_bytes as f64 / (1024.0 * 1024.0),
                stats.index_memory_bytes as f64 / stats.events.max(1) as f64,
                read_time.as_secs_f64() * 1000.0,
            );
            // Leave without writing anything (a read-only look would do, but
            // W5 measures the writable open).
            std::process::exit(0);
        }
        other => panic!("unknown role {other}"),
    }
}

fn run(role: &str, dir: &Path) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "w5_open_and_memory", "--ignored", "--nocapture"])
        .env(ROLE, role)
        .env(DIR, dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    for line in text
        .lines()
        .filter(|l| l.starts_with("open:") || l.starts_with("built"))
    {
        println!("[{role}] {line}");
    }
    assert!(
        output.status.success(),
        "{role} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "measurement: run with --release --ignored --nocapture"]
fn w5_open_and_memory() {
    if let Ok(role) = std::env::var(ROLE) {
        let dir = PathBuf::from(std::env::var(DIR).unwrap());
        child(&role, &dir);
        return;
    }
    let temporary = tempfile::tempdir().unwrap();
    let dir = std::env::var(DIR)
        .map(PathBuf::from)
        .unwrap_or_else(|_| temporary.path().join("w5"));
    let built = dir.join("0000000000.segment").exists();
    if built {
        run("close", &dir);
    } else {
        run("build", &dir);
    }
    println!("after close():");
    for _ in 0..3 {
        run("open", &dir);
    }
    println!("after a crash without close (20k events appended, no close):");
    run("crash", &dir);
    run("open", &dir);
    run("open", &dir);
    println!("without any footer or checkpoint (full scan):");
    let images = dir.join("checkpoints");
    let saved = dir.join("checkpoints-saved");
    std::fs::rename(&images, &saved).unwrap();
    run("open", &dir);
    std::fs::remove_dir_all(&images).ok();
    std::fs::rename(&saved, &images).unwrap();
}
