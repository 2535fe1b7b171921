//! Failures injected through the I/O seam: a failed write or sync fails its
//! waiters, cuts the tail back, refuses writes until reopen, and leaves no
//! undead events behind.
#![cfg(feature = "dangerous-test-hooks")]

use std::sync::Arc;

use batpak::fault::{Fault, FaultInjector, IoPoint};
use batpak::prelude::*;
use serde_json::json;

const K: EventKind = EventKind::custom(3, 1);

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "s").unwrap()
}

fn open_with(dir: &std::path::Path, faults: &Arc<FaultInjector>, n: u32) -> Store {
    Store::open(
        StoreConfig::new(dir)
            .with_sync_every_n_events(n)
            .with_sync_interval(std::time::Duration::from_secs(3600))
            .with_fault_injector(faults.clone()),
    )
    .unwrap()
}

#[test]
fn failed_sync_fails_its_waiters_and_leaves_no_undead_events() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let store = open_with(dir.path(), &faults, 1);
    let kept = store.append(&coord("a"), K, &json!("kept")).unwrap();
    faults.fail_nth(IoPoint::Sync, 1, Fault::Error);
    let error = store.append(&coord("a"), K, &json!("lost")).unwrap_err();
    assert!(
        matches!(error, StoreError::Poisoned { .. } | StoreError::Io { .. }),
        "{error}"
    );
    // Refuses writes until reopened, and readers never see the failed event.
    assert!(matches!(
        store.append(&coord("a"), K, &json!("after")),
        Err(StoreError::Poisoned { .. })
    ));
    assert_eq!(store.stream("a").count(), 1);
    assert!(store.close().is_err(), "close reports the failure");
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let events: Vec<_> = store.stream("a").map(|e| e.unwrap().payload).collect();
    assert_eq!(events, vec![json!("kept")]);
    assert_eq!(
        store.get(kept.event_id).unwrap().unwrap().payload,
        json!("kept")
    );
    // The sequence is reused by the next successful append: the failed one never existed.
    assert_eq!(
        store
            .append(&coord("a"), K, &json!("next"))
            .unwrap()
            .sequence,
        1
    );
}

#[test]
fn a_failed_batch_sync_never_reappears_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let store = open_with(dir.path(), &faults, 1);
    store.append(&coord("a"), K, &0).unwrap();
    faults.fail_nth(IoPoint::Sync, 1, Fault::Error);
    let mut batch = Batch::new();
    for i in 0..4 {
        batch.add(&coord(&format!("b{i}")), K, &i).unwrap();
    }
    assert!(store.append_batch(&batch).is_err());
    drop(store);
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(store.next_sequence(), 1);
    for i in 0..4 {
        assert_eq!(store.entity_clock(&format!("b{i}")), 0);
    }
}

#[test]
fn concurrent_waiters_on_a_failed_sync_all_fail() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let store = Arc::new(open_with(dir.path(), &faults, 1));
    faults.fail_always(IoPoint::Sync, Fault::Error);
    let handles: Vec<_> = (0..6)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || store.append(&coord(&format!("t{t}")), K, &t).is_ok())
        })
        .collect();
    let successes = handles
        .into_iter()
        .filter(|_| true)
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(
        successes, 0,
        "no waiter may be told success by a failed sync"
    );
    assert_eq!(store.next_sequence(), 0);
    faults.clear();
    drop(store);
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(store.next_sequence(), 0);
}

#[test]
fn a_failed_or_short_write_poisons_and_cuts_back() {
    for fault in [Fault::Error, Fault::ShortWrite { keep_bytes: 30 }] {
        let dir = tempfile::tempdir().unwrap();
        let faults = FaultInjector::new();
        let store = open_with(dir.path(), &faults, 1);
        store.append(&coord("a"), K, &"kept").unwrap();
        faults.fail_nth(IoPoint::Write, 1, fault);
        assert!(store.append(&coord("a"), K, &"lost").is_err());
        assert!(matches!(
            store.append(&coord("a"), K, &"x"),
            Err(StoreError::Poisoned { .. })
        ));
        drop(store);
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        assert!(
            store.open_report().torn_tail.is_none(),
            "the tail was cut before reopen ({fault:?})"
        );
        let events: Vec<_> = store.stream("a").map(|e| e.unwrap().payload).collect();
        assert_eq!(events, vec![json!("kept")], "{fault:?}");
    }
}

#[test]
fn relaxed_events_lost_to_a_failed_sync_are_within_the_cadence() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    // A cadence far above the events appended, so the background thread
    // never syncs on its own (it is asked at half the cadence, and skips
    // its sleep from a quarter on): which sync fails is then decided here.
    // With a cadence of 10 it could sync the five unsynced events itself
    // just before the fault was armed, and `Store::sync` found nothing to do.
    let store = open_with(dir.path(), &faults, 1000);
    for i in 0..10 {
        store.append(&coord("a"), K, &i).unwrap();
    }
    store.sync().unwrap();
    assert_eq!(store.durable_sequence(), Some(9));
    for i in 10..15 {
        store.append(&coord("a"), K, &i).unwrap();
    }
    assert_eq!(store.durable_sequence(), Some(9));
    faults.fail_nth(IoPoint::Sync, 1, Fault::Error);
    assert!(store.sync().is_err());
    // Unsynced relaxed events are cut back with the failed sync; durable ones stay.
    assert_eq!(store.stream("a").count(), 10);
    drop(store);
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(store.stream("a").count(), 10);
}

#[test]
fn a_failed_rotation_poisons_without_losing_durable_events() {
    for point in [IoPoint::Create, IoPoint::SyncDir, IoPoint::Sync] {
        let dir = tempfile::tempdir().unwrap();
        let faults = FaultInjector::new();
        let store = Store::open(
            StoreConfig::new(dir.path())
                .with_segment_max_bytes(4096)
                .with_fault_injector(faults.clone()),
        )
        .unwrap();
        let mut acknowledged = 0;
        let mut failed = false;
        for i in 0..200 {
            if i == 10 {
                faults.fail_always(point, Fault::Error);
            }
            match store.append(&coord("a"), K, &json!({"i": i, "pad": "z".repeat(100)})) {
                Ok(_) => acknowledged += 1,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "{point:?} never failed");
        faults.clear();
        drop(store);
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        assert_eq!(store.stream("a").count(), acknowledged, "{point:?}");
    }
}

/// Group commit: durable appenders on several threads share syncs, and every
/// receipt still comes back only after a sync that covers it. (The I/O seam
/// counts the syncs; the speed-up itself is measured by `cargo xtask bench`,
/// W4.)
#[test]
fn concurrent_durable_appenders_share_syncs() {
    const THREADS: usize = 8;
    const EACH: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let store = open_with(dir.path(), &faults, 1);
    let before = faults.calls(IoPoint::Sync);
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let store = &store;
            scope.spawn(move || {
                for i in 0..EACH {
                    let receipt = store
                        .append(&coord(&format!("e{t}")), K, &json!(i))
                        .unwrap();
                    let durable = store.durable_sequence().expect("something is durable");
                    assert!(durable >= receipt.sequence, "receipt before its sync");
                }
            });
        }
    });
    let syncs = faults.calls(IoPoint::Sync) - before;
    let events = (THREADS * EACH) as u64;
    assert!(
        syncs * 2 <= events,
        "{syncs} syncs for {events} durable appends from {THREADS} threads"
    );
    store.close().unwrap();
}
