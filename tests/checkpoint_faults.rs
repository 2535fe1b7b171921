//! Injected I/O faults at every step of writing footers and checkpoints:
//! the call errors cleanly (or succeeds), nothing acknowledged is lost, and
//! the next open restores exactly the index a full scan builds.
#![cfg(feature = "dangerous-test-hooks")]

use std::path::Path;

use batpak::fault::{Fault, FaultInjector, IoPoint};
use batpak::prelude::*;
use serde_json::json;

const KIND: EventKind = EventKind::custom(0xF, 3);

fn config(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir)
        .with_segment_max_bytes(4096)
        .with_sync_every_n_events(10)
}

fn fill(store: &Store, from: usize, count: usize) {
    for i in from..from + count {
        let coord = Coordinate::new(format!("e{}", i % 5), "s").unwrap();
        let options = AppendOptions::new().idempotency_key(format!("k{i}"));
        store
            .append_with_options(
                &coord,
                KIND,
                &json!({"i": i, "pad": "z".repeat(30)}),
                options,
            )
            .unwrap();
    }
}

fn all(store: &Store) -> Vec<StoredEvent> {
    store.query(&Region::all()).map(|e| e.unwrap()).collect()
}

fn without_images(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() && entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }
    }
    copy
}

#[test]
fn a_fault_at_any_step_of_a_checkpoint_loses_nothing_and_reopens_identically() {
    let faults_of = [
        (IoPoint::Open, Fault::Error),
        (IoPoint::Read, Fault::Error),
        (IoPoint::Create, Fault::Error),
        (IoPoint::Write, Fault::Error),
        (IoPoint::Write, Fault::ShortWrite { keep_bytes: 100 }),
        (IoPoint::Sync, Fault::Error),
        (IoPoint::Rename, Fault::Error),
        (IoPoint::Remove, Fault::Error),
        (IoPoint::SyncDir, Fault::Error),
    ];
    let mut injected_somewhere = 0;
    for (point, fault) in faults_of {
        for n in 1.. {
            let dir = tempfile::tempdir().unwrap();
            let faults = FaultInjector::new();
            let store =
                Store::open(config(dir.path()).with_fault_injector(faults.clone())).unwrap();
            fill(&store, 0, 60);
            // A first checkpoint, so later ones replace files and remove stale ones.
            store.checkpoint().unwrap();
            fill(&store, 60, 40);
            let before = faults.injected();
            faults.fail_nth(point, n, fault);
            let outcome = store.checkpoint();
            let fired = faults.injected() > before;
            faults.clear();
            if !fired {
                assert!(outcome.is_ok(), "{point:?} #{n}: {outcome:?}");
                break;
            }
            injected_somewhere += 1;
            let expected = all(&store);
            let acknowledged = expected.len();
            // The store either keeps going or (a failed sync of the log
            // itself) refuses writes; either way it closes or drops cleanly.
            drop(store);
            let store = Store::open(config(dir.path())).unwrap();
            assert!(all(&store).len() >= acknowledged.min(100), "{point:?} #{n}");
            assert_eq!(
                &all(&store)[..acknowledged],
                &expected[..],
                "{point:?} #{n}"
            );
            let scan_dir = without_images(dir.path());
            let scanned = Store::open_read_only(StoreConfig::new(scan_dir.path())).unwrap();
            store
                .index_matches(&scanned)
                .unwrap_or_else(|e| panic!("{point:?} #{n}: {e}"));
            // Keys survive whichever way the index was restored.
            let retry = store
                .append_with_options(
                    &Coordinate::new("e3", "s").unwrap(),
                    KIND,
                    &json!("again"),
                    AppendOptions::new().idempotency_key("k3"),
                )
                .unwrap();
            assert_eq!(retry.sequence, 3, "{point:?} #{n}");
            store.close().unwrap();
        }
    }
    assert!(
        injected_somewhere > 15,
        "faults reached {injected_somewhere} steps"
    );
}

#[test]
fn a_failed_final_checkpoint_does_not_fail_close() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let store = Store::open(config(dir.path()).with_fault_injector(faults.clone())).unwrap();
    fill(&store, 0, 50);
    faults.fail_always(IoPoint::Rename, Fault::Error);
    store.close().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    assert_eq!(store.next_sequence(), 50);
    assert_eq!(all(&store).len(), 50);
}
