//! Online snapshots: a consistent prefix, taken while writers run, that opens
//! as a store and verifies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use batpak::prelude::*;
use batpak::store::IndexSource;
use serde_json::json;

const KIND: EventKind = EventKind::custom(0xF, 2);

fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig::new(dir)
        .with_segment_max_bytes(16 * 1024)
        .with_sync_every_n_events(8)
}

#[test]
fn a_snapshot_under_concurrent_appends_is_a_consistent_durable_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(config(dir.path())).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let store = store.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let coord = Coordinate::new(format!("w{t}-{}", i % 5), "s").unwrap();
                    if i.is_multiple_of(7) {
                        let mut batch = Batch::new();
                        for j in 0..4 {
                            batch
                                .add(&coord, KIND, &json!({"t": t, "i": i, "j": j}))
                                .unwrap();
                        }
                        store.append_batch(&batch).unwrap();
                    } else {
                        store
                            .append(&coord, KIND, &json!({"t": t, "i": i}))
                            .unwrap();
                    }
                    i += 1;
                }
            })
        })
        .collect();
    // Let the log grow over several segments, then snapshot repeatedly
    // while the writers keep going.
    while store.next_sequence() < 600 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut reports = Vec::new();
    for round in 0..3 {
        let report = store
            .snapshot(backups.path().join(format!("copy-{round}")))
            .unwrap();
        assert!(report.next_sequence > 0);
        reports.push(report);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    assert!(
        store.stats().segments > 2,
        "the test wants several segments"
    );
    for report in &reports {
        let copy = Store::open(config(&report.dir)).unwrap();
        // Exactly the prefix below the cut, every event as in the source.
        assert_eq!(copy.next_sequence(), report.next_sequence);
        assert!(copy.open_report().torn_tail.is_none());
        let copied: Vec<StoredEvent> = copy.query(&Region::all()).map(|e| e.unwrap()).collect();
        assert_eq!(copied.len() as u64, report.next_sequence);
        for event in &copied {
            let original = store
                .get_by_sequence(event.header.sequence)
                .unwrap()
                .unwrap();
            assert_eq!(event, &original);
        }
        // No partial batch: every batch in the copy has its four items.
        let verified = copy.verify().unwrap();
        assert!(verified.is_clean(), "{:?}", verified.damage);
        assert_eq!(verified.events, report.next_sequence);
        assert!(matches!(
            copy.open_report().index_source,
            IndexSource::Checkpoint { .. } | IndexSource::Scan
        ));
        // The copy is a store of its own: it takes appends.
        let receipt = copy
            .append(&Coordinate::new("after", "s").unwrap(), KIND, &1)
            .unwrap();
        assert_eq!(receipt.sequence, report.next_sequence);
        copy.close().unwrap();
    }
    let later: Vec<u64> = reports.iter().map(|r| r.next_sequence).collect();
    assert!(later.windows(2).all(|w| w[0] <= w[1]), "{later:?}");
}

#[test]
fn a_snapshot_carries_images_and_opens_without_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    for i in 0..400 {
        store
            .append(
                &Coordinate::new(format!("e{}", i % 9), "s").unwrap(),
                KIND,
                &json!({"i": i, "pad": "p".repeat(50)}),
            )
            .unwrap();
    }
    store.checkpoint().unwrap();
    let report = store.snapshot(backups.path().join("copy")).unwrap();
    assert_eq!(
        report.images, report.segments,
        "a footer per sealed segment plus a checkpoint"
    );
    let copy = Store::open_read_only(StoreConfig::new(&report.dir)).unwrap();
    assert_eq!(
        copy.open_report().index_source,
        IndexSource::Checkpoint {
            restored_events: 400,
            scanned_events: 0,
            images: report.images
        }
    );
    assert!(copy.open_report().ignored_files.is_empty());
    assert!(copy.verify().unwrap().is_clean());
}

#[test]
fn a_snapshot_refuses_a_non_empty_destination_or_one_inside_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    store
        .append(&Coordinate::new("e", "s").unwrap(), KIND, &1)
        .unwrap();
    let busy = tempfile::tempdir().unwrap();
    std::fs::write(busy.path().join("something"), b"x").unwrap();
    assert!(matches!(
        store.snapshot(busy.path()),
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(busy.path().join("something").exists(), "left alone");
    assert!(matches!(
        store.snapshot(dir.path().join("inside")),
        Err(StoreError::InvalidInput { .. })
    ));
    // An empty existing directory is fine.
    let empty = tempfile::tempdir().unwrap();
    let report = store.snapshot(empty.path()).unwrap();
    assert_eq!(report.next_sequence, 1);
}

#[test]
fn named_cursor_positions_come_along_and_never_point_past_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let coord = Coordinate::new("audit", "ops").unwrap();
    for i in 0..5 {
        store.append(&coord, KIND, &json!(i)).unwrap();
    }
    {
        let mut cursor = store.named_cursor("mailer", &Region::all()).unwrap();
        assert_eq!(cursor.poll_batch(3).unwrap().len(), 3);
        cursor.commit().unwrap();
    }
    let report = store.snapshot(backups.path().join("copy")).unwrap();
    assert_eq!(report.next_sequence, 5);
    let copy = Store::open(config(&report.dir)).unwrap();
    assert_eq!(copy.named_cursors().unwrap(), vec!["mailer".to_string()]);
    let mut cursor = copy.named_cursor("mailer", &Region::all()).unwrap();
    let rest: Vec<_> = cursor
        .poll_batch(10)
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(rest, vec![json!(3), json!(4)]);
}
