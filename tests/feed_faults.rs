//! Failures injected while a named cursor saves its position: the commit
//! errors cleanly, the stored position stays the previous one, the store keeps
//! working, and a later commit succeeds.
#![cfg(feature = "dangerous-test-hooks")]

use batpak::fault::{Fault, FaultInjector, IoPoint};
use batpak::prelude::*;
use serde_json::json;

#[test]
fn a_failed_cursor_save_at_any_io_point_keeps_the_previous_position() {
    let cases = [
        (IoPoint::Remove, Fault::Error),
        (IoPoint::Create, Fault::Error),
        (IoPoint::Write, Fault::Error),
        (IoPoint::Write, Fault::ShortWrite { keep_bytes: 20 }),
        (IoPoint::Sync, Fault::Error),
        (IoPoint::Rename, Fault::Error),
    ];
    for (point, fault) in cases {
        let dir = tempfile::tempdir().unwrap();
        let faults = FaultInjector::new();
        let store =
            Store::open(StoreConfig::new(dir.path()).with_fault_injector(faults.clone())).unwrap();
        let coord = Coordinate::new("a", "s").unwrap();
        for i in 0..6 {
            store
                .append(&coord, EventKind::custom(1, 1), &json!(i))
                .unwrap();
        }
        let mut cursor = store.named_cursor("c", &Region::all()).unwrap();
        cursor.poll_batch(2).unwrap();
        cursor.commit().unwrap();
        // The temporary file exists only for the Remove case to have work to do.
        std::fs::write(dir.path().join("cursors").join(".c.tmp"), b"left over").unwrap();

        cursor.poll_batch(2).unwrap();
        faults.fail_always_for(point, "cursors", fault);
        let error = cursor.commit().expect_err("the injected fault surfaces");
        assert!(matches!(error, StoreError::Io { .. }), "{point:?}: {error}");
        assert_eq!(cursor.committed_position(), 2, "{point:?}");
        faults.clear();

        // The store is not poisoned by a cursor failure.
        store
            .append(&coord, EventKind::custom(1, 1), &json!("after"))
            .unwrap();
        drop(cursor);
        let mut cursor = store.named_cursor("c", &Region::all()).unwrap();
        assert_eq!(cursor.position(), 2, "{point:?}: the old position survives");
        cursor.poll_batch(3).unwrap();
        cursor.commit().unwrap();
        drop(cursor);
        let cursor = store.named_cursor("c", &Region::all()).unwrap();
        assert_eq!(cursor.position(), 5, "{point:?}");
        drop(cursor);
        store.close().unwrap();
    }
}

#[test]
fn a_failed_directory_sync_after_the_rename_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let store =
        Store::open(StoreConfig::new(dir.path()).with_fault_injector(faults.clone())).unwrap();
    let coord = Coordinate::new("a", "s").unwrap();
    store
        .append(&coord, EventKind::custom(1, 1), &json!(0))
        .unwrap();
    let mut cursor = store.named_cursor("c", &Region::all()).unwrap();
    cursor.poll_batch(1).unwrap();
    faults.fail_always_for(IoPoint::SyncDir, "cursors", Fault::Error);
    // The new position may or may not survive a power loss: the caller is told.
    assert!(matches!(cursor.commit(), Err(StoreError::Io { .. })));
    assert_eq!(cursor.committed_position(), 0);
    faults.clear();
    cursor.commit().unwrap();
    assert_eq!(cursor.committed_position(), 1);
    drop(cursor);
    store.close().unwrap();
}
