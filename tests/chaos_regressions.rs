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

/// Found by the checkpoint-loading fuzz harness (`tests/chaos_fuzz.rs`,
/// an image spliced with its checksums fixed): open estimates the events it
/// will index from the image headers and reserves index memory for them
/// before any image is checked against its segment. A header (checksum
/// intact) claiming an absurd event count made open try to allocate
/// exabytes and abort the process. Open must ignore the image instead.
#[test]
fn an_image_header_claiming_absurd_event_counts_does_not_abort_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let coord = Coordinate::new("e", "s").unwrap();
    for i in 0..5 {
        store.append(&coord, K, &json!(i)).unwrap();
    }
    store.close().unwrap();
    let path = dir.path().join("checkpoints").join("0000000000.checkpoint");
    let mut image = std::fs::read(&path).unwrap();
    // Event count (bytes 48..56), then the header checksum (bytes 92..96).
    image[48..56].copy_from_slice(&(1u64 << 50).to_le_bytes());
    let crc = crc32fast::hash(&image[..92]);
    image[92..96].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &image).unwrap();
    let store = Store::open_read_only(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(store.next_sequence(), 5);
    assert_eq!(store.open_report().ignored_files.len(), 1);
}
