//! Bugs the chaos campaigns found, one test each, named for the bug.
#![cfg(feature = "dangerous-test-hooks")]

use batpak::fault::{FaultInjector, FaultRule, IoPoint};
use batpak::prelude::*;
use serde_json::json;

const K: EventKind = EventKind::custom(7, 2);

/// Found by the fault campaign (`Append/Sync#1/OnceNoCutBack`): a sync fails,
/// the store poisons and tries to cut the failed frame back with
/// `set_len`, but the truncation fails too. The frame stayed in the file, so
/// the next open found a valid frame and the append that had returned an
/// error reappeared (an undead event) without any power loss.
#[test]
fn failed_append_reappears_when_the_cut_back_truncation_fails() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let store =
        Store::open(StoreConfig::new(dir.path()).with_fault_injector(faults.clone())).unwrap();
    let coord = Coordinate::new("e", "s").unwrap();
    store.append(&coord, K, &json!("kept")).unwrap();
    faults.add_rule(FaultRule::at(IoPoint::Sync).nth(1));
    faults.add_rule(FaultRule::at(IoPoint::Truncate).always());
    assert!(store.append(&coord, K, &json!("failed")).is_err());
    drop(store);
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let payloads: Vec<_> = store.stream("e").map(|e| e.unwrap().payload).collect();
    assert_eq!(
        payloads,
        vec![json!("kept")],
        "the failed append must stay gone"
    );
    assert!(store.verify().unwrap().is_clean());
}

/// Found by the model campaign (seeds 200161, 200190, 200200 of
/// `chaos_model`): relaxed appends are acknowledged, a later write fails and
/// poisons the store, which cuts the unsynced (acknowledged) events back.
/// `Store::sync()` then returned `Ok(())`, telling the caller that everything
/// acknowledged so far is durable although those events are gone.
#[test]
fn sync_on_a_poisoned_store_reports_the_failure_instead_of_success() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let store = Store::open(
        StoreConfig::new(dir.path())
            .with_sync_every_n_events(1000)
            .with_sync_interval(std::time::Duration::from_secs(3600))
            .with_fault_injector(faults.clone()),
    )
    .unwrap();
    let coord = Coordinate::new("e", "s").unwrap();
    for i in 0..3 {
        store.append(&coord, K, &i).unwrap(); // acknowledged, not yet durable
    }
    faults.add_rule(FaultRule::at(IoPoint::Write).nth(1));
    assert!(store
        .append_with_options(&coord, K, &3, AppendOptions::new().durable())
        .is_err());
    assert!(
        matches!(store.sync(), Err(StoreError::Poisoned { .. })),
        "sync must not claim the lost acknowledged events are durable"
    );
}
