//! A fault or a crash at every I/O step of compaction: the store reopens,
//! verifies clean, holds every kept event unchanged, and each removed event
//! is either still there (its segment's old state) or gone (the new state) —
//! never changed, never resurrected after it was gone.
#![cfg(feature = "dangerous-test-hooks")]

use std::collections::BTreeMap;
use std::path::Path;

use batpak::fault::{Fault, FaultInjector, IoPoint};
use batpak::prelude::*;
use serde_json::json;

const KIND: EventKind = EventKind::custom(0x1, 9);

fn config(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir)
        .with_segment_max_bytes(4096)
        .with_sync_every_n_events(1)
}

fn fill(store: &Store) {
    for i in 0..90 {
        let coord = Coordinate::new(format!("e{}", i % 4), "s").unwrap();
        let options = AppendOptions::new().idempotency_key(format!("k{i}"));
        let payload = json!({"i": i, "pad": "q".repeat(24)});
        if i % 9 == 4 {
            let mut batch = Batch::new();
            batch.push(BatchItem::new(&coord, KIND, &payload).unwrap());
            batch.push(BatchItem::new(&coord, KIND, &json!({"i": i, "second": true})).unwrap());
            store.append_batch(&batch).unwrap();
        } else {
            store
                .append_with_options(&coord, KIND, &payload, options)
                .unwrap();
        }
    }
}

fn all(store: &Store) -> Vec<StoredEvent> {
    store.query(&Region::all()).map(|e| e.unwrap()).collect()
}

fn policy() -> Compaction {
    Compaction::new()
        .drop_entity("e1")
        .drop_before_sequence(20)
        .redact_entity("e2")
}

fn removed(event: &StoredEvent) -> bool {
    event.coordinate.entity() == "e1" || event.sequence() < 20
}

/// The invariants after a fault or crash, on the store in `dir`.
fn check(dir: &Path, before: &BTreeMap<u64, StoredEvent>, label: &str) {
    let store = Store::open(config(dir)).unwrap_or_else(|e| panic!("{label}: open: {e}"));
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{label}: {:#?}", report.damage);
    let now = all(&store);
    for event in &now {
        let old = before
            .get(&event.sequence())
            .unwrap_or_else(|| panic!("{label}: unknown event {}", event.sequence()));
        if event.redacted {
            assert_eq!(event.coordinate.entity(), "e2", "{label}");
            assert_eq!(event.header, old.header, "{label}");
            assert_eq!(event.hash, old.hash, "{label}");
        } else {
            assert_eq!(event, old, "{label}");
        }
    }
    let present: Vec<u64> = now.iter().map(StoredEvent::sequence).collect();
    for event in before.values().filter(|e| !removed(e)) {
        assert!(
            present.binary_search(&event.sequence()).is_ok(),
            "{label}: kept event {} is missing",
            event.sequence()
        );
    }
    // Keys of removed events still answer.
    let retry = store
        .append_with_options(
            &Coordinate::new("e1", "s").unwrap(),
            KIND,
            &json!("again"),
            AppendOptions::new().idempotency_key("k1"),
        )
        .unwrap();
    assert_eq!(retry.sequence, before[&1].sequence(), "{label}");
    // Finishing the compaction reaches exactly the new state.
    store.compact(&policy()).unwrap();
    let finished = all(&store);
    let expected: Vec<&StoredEvent> = before.values().filter(|e| !removed(e)).collect();
    assert_eq!(finished.len(), expected.len(), "{label}");
    for (got, old) in finished.iter().zip(expected) {
        assert_eq!(got.sequence(), old.sequence(), "{label}");
        assert_eq!(got.redacted, old.coordinate.entity() == "e2", "{label}");
    }
    assert!(store.verify().unwrap().is_clean(), "{label}");
    store.close().unwrap();
}

#[test]
fn a_fault_or_crash_at_any_step_of_compaction_leaves_the_old_or_the_new_state() {
    let faults_of = [
        (IoPoint::Open, Fault::Error),
        (IoPoint::Read, Fault::Error),
        (IoPoint::Create, Fault::Error),
        (IoPoint::Write, Fault::Error),
        (IoPoint::Write, Fault::ShortWrite { keep_bytes: 200 }),
        (IoPoint::Sync, Fault::Error),
        (IoPoint::Rename, Fault::Error),
        (IoPoint::Remove, Fault::Error),
        (IoPoint::SyncDir, Fault::Error),
        (IoPoint::Write, Fault::Crash),
        (IoPoint::Sync, Fault::Crash),
        (IoPoint::Rename, Fault::Crash),
        (IoPoint::SyncDir, Fault::Crash),
    ];
    let mut fired_runs = 0;
    let mut images = 0;
    for (point, fault) in faults_of {
        for n in 1.. {
            let dir = tempfile::tempdir().unwrap();
            let faults = FaultInjector::recording();
            let store =
                Store::open(config(dir.path()).with_fault_injector(faults.clone())).unwrap();
            fill(&store);
            let before: BTreeMap<u64, StoredEvent> =
                all(&store).into_iter().map(|e| (e.sequence(), e)).collect();
            let injected = faults.injected();
            faults.fail_nth(point, n, fault);
            let outcome = store.compact(&policy());
            let fired = faults.injected() > injected;
            let label = format!("{point:?} {fault:?} #{n}");
            if !fired {
                outcome.unwrap_or_else(|e| panic!("{label}: {e}"));
                break;
            }
            fired_runs += 1;
            if fault == Fault::Crash {
                drop(store);
                for seed in 0..3 {
                    let image = tempfile::tempdir().unwrap();
                    faults.crash_image(dir.path(), image.path(), seed).unwrap();
                    check(image.path(), &before, &format!("{label} image {seed}"));
                    images += 1;
                }
            } else {
                assert!(outcome.is_err(), "{label}: the fault must surface");
                faults.clear();
                drop(store);
                check(dir.path(), &before, &label);
            }
        }
    }
    println!(
        "compaction fault campaign: {fired_runs} faulted runs, {images} crash images, 0 violations"
    );
    assert!(fired_runs > 30, "faults reached {fired_runs} steps");
}
