//! Integrity: checksums, hash chains, verify reports, tamper and bit-flip
//! campaigns, ancestry walks and causal queries.

use std::fs;
use std::path::{Path, PathBuf};

use batpak::prelude::*;
use batpak::store::{verify_dir, DamageKind};
use serde_json::json;

const K: EventKind = EventKind::custom(5, 1);
const HEADER: usize = 48;

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "s").unwrap()
}

fn segment(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "segment"))
        .collect();
    files.sort();
    files.pop().unwrap()
}

/// Offsets of every frame in a segment.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = HEADER;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        out.push(at);
        at += 8 + len;
    }
    out
}

/// Recomputes a frame's CRC after an edit, as a careful attacker would.
#[cfg_attr(not(feature = "blake3"), allow(dead_code))]
fn fix_crc(bytes: &mut [u8], at: usize) {
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[at..at + 4]);
    hasher.update(&bytes[at + 8..at + 8 + len]);
    let crc = hasher.finalize();
    bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Six events over two entities, closed; returns the directory.
fn small_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    for i in 0..6 {
        let entity = if i % 2 == 0 { "a" } else { "b" };
        store
            .append(&coord(entity), K, &json!({"i": i, "text": "hello"}))
            .unwrap();
    }
    store.close().unwrap();
    dir
}

#[test]
fn a_clean_store_verifies_clean() {
    let dir = small_store();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.events, 6);
    assert_eq!(report.entities, 2);
    #[cfg(feature = "blake3")]
    assert_eq!(report.links_checked, 6);
    let mut calls = 0;
    store
        .verify_with_progress(&mut |p| {
            calls += 1;
            assert!(p.bytes_done <= p.bytes_total);
        })
        .unwrap();
    assert_eq!(calls, 1);
    assert!(verify_dir(&StoreConfig::new(dir.path()))
        .unwrap()
        .is_clean());
}

#[test]
fn an_edited_payload_byte_is_a_checksum_error_on_read_and_on_verify() {
    let dir = small_store();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let path = segment(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let offsets = frame_offsets(&bytes);
    let victim = offsets[2];
    let payload_at = bytes[victim..]
        .windows(5)
        .position(|w| w == b"hello")
        .unwrap()
        + victim;
    bytes[payload_at] = b'j';
    fs::write(&path, &bytes).unwrap();
    // The store reads the active segment with positioned reads: it sees the edit.
    let error = store.get_by_sequence(2).unwrap_err();
    assert!(
        matches!(error, StoreError::Corrupt { offset, .. } if offset == victim as u64),
        "{error}"
    );
    let report = store.verify().unwrap();
    // The damaged frame comes first; what follows are its consequences (the
    // sequence gap and the entity's clock and chain that can no longer link up).
    assert_eq!(report.damage[0].kind, DamageKind::Frame, "{report:?}");
    assert!(
        report.damage[1..].iter().all(|d| d.offset > victim as u64),
        "{report:?}"
    );
    assert_eq!(report.damage[0].offset, victim as u64);
    assert_eq!(report.damage[0].file, path);
}

#[cfg(feature = "blake3")]
mod chain {
    use super::*;

    fn tampered(
        edit: impl FnOnce(&mut Vec<u8>, &[usize]),
    ) -> (tempfile::TempDir, Vec<batpak::store::Damage>) {
        let dir = small_store();
        let path = segment(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        let offsets = frame_offsets(&bytes);
        edit(&mut bytes, &offsets);
        fs::write(&path, &bytes).unwrap();
        let report = verify_dir(&StoreConfig::new(dir.path())).unwrap();
        (dir, report.damage)
    }

    #[test]
    fn an_edited_payload_with_a_fixed_checksum_breaks_the_chain_at_that_event() {
        let (_dir, damage) = tampered(|bytes, offsets| {
            let at = offsets[2];
            let p = bytes[at..].windows(5).position(|w| w == b"hello").unwrap() + at;
            bytes[p] = b'j';
            fix_crc(bytes, at);
        });
        assert_eq!(damage.len(), 1, "{damage:?}");
        assert_eq!(damage[0].kind, DamageKind::Chain);
        assert_eq!(damage[0].sequence, Some(2));
        assert_eq!(damage[0].entity.as_deref(), Some("a"));
    }

    #[test]
    fn an_edited_header_field_breaks_the_chain() {
        let (_dir, damage) = tampered(|bytes, offsets| {
            let at = offsets[3] + 8 + 16; // timestamp
            bytes[at] ^= 1;
            fix_crc(bytes, offsets[3]);
        });
        assert_eq!(damage.len(), 1, "{damage:?}");
        assert_eq!(
            (damage[0].kind, damage[0].sequence),
            (DamageKind::Chain, Some(3))
        );
    }

    #[test]
    fn a_dropped_event_is_reported_where_the_gap_is() {
        let (_dir, damage) = tampered(|bytes, offsets| {
            bytes.drain(offsets[2]..offsets[3]);
        });
        let kinds: Vec<_> = damage.iter().map(|d| (d.kind, d.sequence)).collect();
        assert!(
            kinds.contains(&(DamageKind::Sequence, Some(3))),
            "{kinds:?}"
        );
        assert!(kinds.contains(&(DamageKind::Clock, Some(4))), "{kinds:?}");
        assert!(kinds.contains(&(DamageKind::Chain, Some(4))), "{kinds:?}");
    }

    #[test]
    fn swapped_events_are_reported() {
        let (_dir, damage) = tampered(|bytes, offsets| {
            let first = bytes[offsets[1]..offsets[2]].to_vec();
            let second = bytes[offsets[2]..offsets[3]].to_vec();
            let mut swapped = second;
            swapped.extend_from_slice(&first);
            bytes.splice(offsets[1]..offsets[3], swapped);
        });
        assert!(
            damage
                .iter()
                .any(|d| d.kind == DamageKind::Sequence && d.sequence == Some(2)),
            "{damage:?}"
        );
    }

    #[test]
    fn a_truncated_entity_is_reported() {
        // Drop every event of entity "a" after its first.
        let (_dir, damage) = tampered(|bytes, offsets| {
            for &at in [offsets[4], offsets[2]].iter() {
                let end = offsets
                    .iter()
                    .copied()
                    .find(|&o| o > at)
                    .unwrap_or(bytes.len());
                bytes.drain(at..end);
            }
        });
        assert!(
            damage
                .iter()
                .any(|d| d.kind == DamageKind::Sequence && d.sequence == Some(3)),
            "{damage:?}"
        );
    }

    #[test]
    fn an_entity_chain_walk_goes_newest_to_oldest_and_detects_breaks() {
        let dir = small_store();
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        let walk = store.walk_entity_chain("a").unwrap();
        assert_eq!(
            walk.iter().map(|e| e.header.clock).collect::<Vec<_>>(),
            vec![3, 2, 1]
        );
        let path = segment(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        let offsets = frame_offsets(&bytes);
        let p = bytes[offsets[2]..]
            .windows(5)
            .position(|w| w == b"hello")
            .unwrap()
            + offsets[2];
        bytes[p] = b'y';
        fix_crc(&mut bytes, offsets[2]);
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            store.walk_entity_chain("a"),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(store.walk_entity_chain("b").is_ok());
    }
}

#[test]
fn flipping_any_single_byte_is_detected_and_never_read_as_data() {
    let dir = small_store();
    let path = segment(dir.path());
    let original = fs::read(&path).unwrap();
    let expected: Vec<StoredEvent> = {
        let store = Store::open_read_only(StoreConfig::new(dir.path())).unwrap();
        store.query(&Region::all()).map(Result::unwrap).collect()
    };
    let name = path.file_name().unwrap().to_owned();
    let mut detected_by_verify = 0;
    for at in 0..original.len() {
        let copy = tempfile::tempdir().unwrap();
        let mut bytes = original.clone();
        bytes[at] ^= 0x20;
        fs::write(copy.path().join(&name), &bytes).unwrap();
        let report = verify_dir(&StoreConfig::new(copy.path())).unwrap();
        assert!(
            !report.is_clean(),
            "flip at byte {at} went unnoticed by verify"
        );
        detected_by_verify += 1;
        // Whatever open does (refuse, or cut a torn-looking tail), reads never
        // return an event that differs from what was written.
        if let Ok(store) = Store::open_read_only(StoreConfig::new(copy.path())) {
            for event in store.query(&Region::all()).flatten() {
                let original = &expected[event.header.sequence as usize];
                assert_eq!(&event, original, "flip at byte {at} changed a read");
            }
        }
    }
    assert_eq!(detected_by_verify, original.len());
}

#[test]
fn ancestry_and_causal_queries_across_entities_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let root = store.append(&coord("order:1"), K, &"placed").unwrap();
    let paid = store
        .append_with_options(
            &coord("payment:1"),
            K,
            &"paid",
            AppendOptions::new()
                .causation_id(root.event_id)
                .correlation_id(root.event_id),
        )
        .unwrap();
    let mut batch = Batch::new();
    let shipped = batch.push(
        BatchItem::new(&coord("shipment:1"), K, &"shipped")
            .unwrap()
            .caused_by(Causation::Event(paid.event_id))
            .correlation_id(root.event_id),
    );
    batch.push(
        BatchItem::new(&coord("email:1"), K, &"mailed")
            .unwrap()
            .caused_by_item(shipped),
    );
    batch.push(
        BatchItem::new(&coord("stock:1"), K, &"reserved")
            .unwrap()
            .caused_by(Causation::Event(paid.event_id))
            .correlation_id(root.event_id),
    );
    let receipts = store.append_batch(&batch).unwrap();
    store.append(&coord("unrelated"), K, &"noise").unwrap();

    let ancestors = store.walk_ancestors(receipts[1].event_id, 10).unwrap();
    let chain: Vec<_> = ancestors
        .iter()
        .map(|e| e.payload.as_str().unwrap().to_string())
        .collect();
    assert_eq!(chain, vec!["shipped", "paid", "placed"]);
    assert_eq!(
        store.walk_ancestors(receipts[1].event_id, 2).unwrap().len(),
        2
    );
    assert!(store.walk_ancestors(root.event_id, 10).unwrap().is_empty());

    let children: Vec<_> = store
        .caused_by(paid.event_id)
        .map(|e| e.unwrap().header.event_id)
        .collect();
    assert_eq!(children, vec![receipts[0].event_id, receipts[2].event_id]);
    let conversation: Vec<_> = store
        .correlated(root.event_id)
        .map(|e| e.unwrap().payload.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        conversation,
        vec!["placed", "paid", "shipped", "mailed", "reserved"]
    );
    // The same answers after a reopen (rebuilt from the log).
    store.close().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(store.correlated(root.event_id).count(), 5);
    assert_eq!(store.caused_by(paid.event_id).count(), 2);
    let missing = EventId::from_bytes([7; 16]);
    assert!(matches!(
        store.walk_ancestors(missing, 5),
        Err(StoreError::NotFound { .. })
    ));
}
