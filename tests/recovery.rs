//! Recovery on open: torn tails, damage, foreign files, repair, read-only.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use batpak::prelude::*;
use serde_json::json;

const K: EventKind = EventKind::custom(2, 1);

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "s").unwrap()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "segment"))
        .collect();
    out.sort();
    out
}

/// A store with `n` single events on entity "a", closed.
fn build(dir: &Path, n: u64) -> Vec<AppendReceipt> {
    let store = Store::open(StoreConfig::new(dir)).unwrap();
    let receipts = (0..n)
        .map(|i| store.append(&coord("a"), K, &json!({"i": i})).unwrap())
        .collect();
    store.close().unwrap();
    receipts
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn a_torn_last_frame_is_cut_back_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 5);
    let segment = segments(dir.path()).pop().unwrap();
    let full = fs::metadata(&segment).unwrap().len();
    // Cut the last frame in half, as a crash mid-write would.
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(full - 20)
        .unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(store.next_sequence(), 4);
    let cut = store
        .open_report()
        .torn_tail
        .clone()
        .expect("torn tail reported");
    assert_eq!(cut.file, segment);
    assert!(cut.dropped_bytes > 0);
    // The next append takes sequence 4 and the store stays consistent.
    assert_eq!(
        store
            .append(&coord("a"), K, &json!({"i": "new"}))
            .unwrap()
            .sequence,
        4
    );
    store.close().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    assert!(store.open_report().torn_tail.is_none());
    assert_eq!(store.stream("a").count(), 5);
}

#[test]
fn every_truncation_of_the_log_opens_to_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let receipts = build(dir.path(), 4);
    let segment = segments(dir.path()).pop().unwrap();
    let original = fs::read(&segment).unwrap();
    for len in (0..original.len()).rev().step_by(7) {
        let copy = tempfile::tempdir().unwrap();
        fs::write(
            copy.path().join(segment.file_name().unwrap()),
            &original[..len],
        )
        .unwrap();
        let store =
            Store::open(StoreConfig::new(copy.path())).unwrap_or_else(|e| panic!("len {len}: {e}"));
        let events: Vec<StoredEvent> = store.query(&Region::all()).map(Result::unwrap).collect();
        assert!(events.len() <= 4);
        for (event, receipt) in events.iter().zip(&receipts) {
            assert_eq!(
                event.header.event_id, receipt.event_id,
                "len {len}: a prefix survives"
            );
        }
    }
}

#[test]
fn garbage_appended_to_the_last_segment_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 3);
    let segment = segments(dir.path()).pop().unwrap();
    append_bytes(
        &segment,
        b"this is not a frame, just noise at the end of the file",
    );
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(store.next_sequence(), 3);
    assert!(store.open_report().torn_tail.is_some());
}

#[test]
fn damage_before_valid_data_is_a_typed_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 5);
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    // Damage the second frame's payload; frames three to five stay valid.
    let first_frame_len = u32::from_le_bytes(bytes[48..52].try_into().unwrap()) as usize + 8;
    let second = 48 + first_frame_len;
    let second_len = u32::from_le_bytes(bytes[second..second + 4].try_into().unwrap()) as usize + 8;
    bytes[second + second_len - 3] ^= 0x55;
    fs::write(&segment, &bytes).unwrap();
    // With the index checkpoint written at close, open trusts it for the
    // bytes it covers: the damage is found by the read that touches it.
    {
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        assert!(matches!(
            store.get_by_sequence(1),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(
            store.get_by_sequence(2).unwrap().unwrap().header.sequence,
            2
        );
    }
    // Without derived files, open scans and refuses.
    fs::remove_dir_all(dir.path().join("checkpoints")).unwrap();
    match Store::open(StoreConfig::new(dir.path())) {
        Err(StoreError::Corrupt {
            file,
            offset,
            reason,
        }) => {
            assert_eq!(file, segment);
            assert_eq!(offset, second as u64);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Read-only open refuses too: damage is never skipped silently.
    assert!(matches!(
        Store::open_read_only(StoreConfig::new(dir.path())),
        Err(StoreError::Corrupt { .. })
    ));
    // Explicit repair cuts at the damage and reports what it dropped.
    let store =
        Store::open(StoreConfig::new(dir.path()).with_recovery_mode(RecoveryMode::Repair)).unwrap();
    assert_eq!(store.next_sequence(), 1);
    let repaired = store
        .open_report()
        .repaired
        .clone()
        .expect("repair reported");
    assert_eq!(repaired.offset, second as u64);
    assert!(repaired.dropped_bytes > 0);
    store.close().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(store.next_sequence(), 1);
}

#[test]
fn damage_in_a_sealed_segment_is_an_error_and_repair_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        StoreConfig::new(dir.path())
            .with_segment_max_bytes(4096)
            .with_sync_every_n_events(100)
    };
    let store = Store::open(config()).unwrap();
    for i in 0..200 {
        store
            .append(&coord("a"), K, &json!({"i": i, "pad": "x".repeat(40)}))
            .unwrap();
    }
    store.close().unwrap();
    let files = segments(dir.path());
    assert!(files.len() >= 3);
    // Truncate the first (sealed) segment in the middle of a frame.
    let first = &files[0];
    let len = fs::metadata(first).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(first)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    match Store::open(config()) {
        Err(StoreError::Corrupt { file, .. }) => assert_eq!(&file, first),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let store = Store::open(config().with_recovery_mode(RecoveryMode::Repair)).unwrap();
    let repaired = store.open_report().repaired.clone().unwrap();
    assert_eq!(repaired.dropped_files.len(), files.len() - 1);
    let kept = store.next_sequence();
    assert!(kept > 0 && kept < 200);
    for (i, event) in store.query(&Region::all()).enumerate() {
        assert_eq!(event.unwrap().payload["i"], json!(i));
    }
}

#[test]
fn zero_length_and_headerless_last_segments_are_removed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 2);
    let empty = dir.path().join("0000000001.segment");
    fs::write(&empty, b"").unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(store.open_report().removed_files, vec![empty.clone()]);
    assert_eq!(store.next_sequence(), 2);
    store.close().unwrap();
    fs::write(&empty, b"BATPAKSG\x01").unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(store.open_report().removed_files, vec![empty]);
    store.append(&coord("a"), K, &3).unwrap();
    assert_eq!(store.stream("a").count(), 3);
}

#[test]
fn a_zero_length_sealed_segment_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 2);
    let only = segments(dir.path()).pop().unwrap();
    // Put an empty file *before* the real segment.
    fs::rename(&only, dir.path().join("0000000001.segment")).unwrap();
    fs::write(dir.path().join("0000000000.segment"), b"").unwrap();
    assert!(matches!(
        Store::open(StoreConfig::new(dir.path())),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn a_foreign_file_is_left_alone_and_reported_and_a_fake_segment_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 2);
    let note = dir.path().join("notes.txt");
    fs::write(&note, "not ours").unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(store.open_report().foreign_files, vec![note.clone()]);
    store.close().unwrap();
    assert_eq!(fs::read_to_string(&note).unwrap(), "not ours");
    // A file named like a (sealed) segment that is not one.
    let only = segments(dir.path()).pop().unwrap();
    fs::rename(&only, dir.path().join("0000000001.segment")).unwrap();
    fs::write(
        dir.path().join("0000000000.segment"),
        "definitely not a segment, but long enough to have a header",
    )
    .unwrap();
    match Store::open(StoreConfig::new(dir.path())) {
        Err(StoreError::Corrupt { reason, .. }) => assert!(reason.contains("magic"), "{reason}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_torn_batch_at_the_tail_disappears_entirely() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    store.append(&coord("a"), K, &0).unwrap();
    let mut batch = Batch::new();
    for i in 0..5 {
        batch
            .add(&coord(&format!("b{i}")), K, &json!({"item": i}))
            .unwrap();
    }
    store.append_batch(&batch).unwrap();
    store.close().unwrap();
    let segment = segments(dir.path()).pop().unwrap();
    let full = fs::metadata(&segment).unwrap().len();
    let mut saw_prefix_only = 0;
    for cut in 1..200 {
        let copy = tempfile::tempdir().unwrap();
        let bytes = fs::read(&segment).unwrap();
        fs::write(
            copy.path().join(segment.file_name().unwrap()),
            &bytes[..(full - cut) as usize],
        )
        .unwrap();
        let store = Store::open(StoreConfig::new(copy.path())).unwrap();
        let n = store.next_sequence();
        assert!(n == 1 || n == 6, "cut {cut}: {n} events is a partial batch");
        if n == 1 {
            saw_prefix_only += 1;
            for i in 0..5 {
                assert_eq!(store.entity_clock(&format!("b{i}")), 0);
            }
        }
    }
    assert!(saw_prefix_only > 0);
}

#[test]
fn read_only_open_works_beside_a_writer_and_refresh_sees_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(StoreConfig::new(dir.path()).with_segment_max_bytes(4096)).unwrap();
    writer.append(&coord("a"), K, &0).unwrap();
    let reader = Store::open_read_only(StoreConfig::new(dir.path())).unwrap();
    assert!(reader.is_read_only());
    assert_eq!(reader.next_sequence(), 1);
    assert!(matches!(
        reader.append(&coord("a"), K, &1),
        Err(StoreError::ReadOnly)
    ));
    for i in 1..100 {
        writer
            .append(&coord("a"), K, &json!({"i": i, "pad": "y".repeat(50)}))
            .unwrap();
    }
    let mut batch = Batch::new();
    batch.add(&coord("b"), K, &1).unwrap();
    batch.add(&coord("c"), K, &2).unwrap();
    writer.append_batch(&batch).unwrap();
    assert_eq!(reader.refresh().unwrap(), 101);
    assert_eq!(reader.next_sequence(), 102);
    assert_eq!(reader.stream("a").count(), 100);
    assert_eq!(reader.entity_clock("c"), 1);
    assert_eq!(reader.refresh().unwrap(), 0);
    writer.close().unwrap();
    reader.close().unwrap();
}

#[test]
fn repeated_refreshes_follow_a_writer_across_rotations_event_for_event() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(
        StoreConfig::new(dir.path())
            .with_segment_max_bytes(4096)
            .with_sync_every_n_events(7),
    )
    .unwrap();
    writer.append(&coord("a"), K, &0).unwrap();
    writer.sync().unwrap();
    let reader = Store::open_read_only(StoreConfig::new(dir.path())).unwrap();
    let all = |store: &Store| -> Vec<StoredEvent> {
        store.query(&Region::all()).map(Result::unwrap).collect()
    };
    for round in 0..40 {
        for i in 0..(round % 5) * 3 {
            writer
                .append(
                    &coord(&format!("e{}", i % 3)),
                    K,
                    &json!({"r": round, "i": i}),
                )
                .unwrap();
        }
        if round % 4 == 1 {
            let mut batch = Batch::new();
            batch
                .add(&coord("b"), K, &json!({"pad": "x".repeat(300)}))
                .unwrap();
            batch.add(&coord("c"), K, &round).unwrap();
            writer.append_batch(&batch).unwrap();
        }
        writer.sync().unwrap();
        reader.refresh().unwrap();
        assert_eq!(all(&reader), all(&writer), "round {round}");
    }
    assert!(segments(dir.path()).len() > 3, "the writer rotated");
    writer.close().unwrap();
    reader.close().unwrap();
}

#[test]
fn a_missing_directory_is_an_error_for_read_only_open() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    assert!(matches!(
        Store::open_read_only(StoreConfig::new(&missing)),
        Err(StoreError::Io { .. })
    ));
    assert!(!missing.exists(), "read-only open never creates anything");
}

/// A segment of another format version (here the version before the current
/// hash-chain link) is refused with a typed error by every way in, repair
/// included, and left exactly as it was.
#[test]
fn a_segment_of_another_format_version_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 3);
    let segment = segments(dir.path()).remove(0);
    let mut bytes = fs::read(&segment).unwrap();
    let current = u16::from_le_bytes([bytes[8], bytes[9]]);
    let other = current - 1;
    bytes[8..10].copy_from_slice(&other.to_le_bytes());
    let crc = crc32fast::hash(&bytes[0..40]);
    bytes[40..44].copy_from_slice(&crc.to_le_bytes());
    fs::write(&segment, &bytes).unwrap();

    let refused = |result: Result<Store, StoreError>| match result {
        Err(StoreError::UnsupportedFormat {
            file,
            version,
            supported,
        }) => {
            assert_eq!(file, segment);
            assert_eq!((version, supported), (other, current));
        }
        Err(other) => panic!("expected UnsupportedFormat, got {other}"),
        Ok(_) => panic!("a segment of another format version was opened"),
    };
    refused(Store::open(StoreConfig::new(dir.path())));
    refused(Store::open(
        StoreConfig::new(dir.path()).with_recovery_mode(RecoveryMode::Repair),
    ));
    refused(Store::open_read_only(StoreConfig::new(dir.path())));
    assert!(matches!(
        batpak::store::verify_dir(&StoreConfig::new(dir.path())),
        Err(StoreError::UnsupportedFormat { .. })
    ));
    assert_eq!(
        fs::read(&segment).unwrap(),
        bytes,
        "the segment was changed"
    );
}
