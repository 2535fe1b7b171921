//! Fast open: segment footers and index checkpoints restore the index, a
//! damaged one is ignored and rebuilt, and the result is always the index a
//! full scan of the log builds.
#![cfg(feature = "dangerous-test-hooks")]

use std::path::{Path, PathBuf};

use batpak::prelude::*;
use batpak::store::IndexSource;
use serde_json::json;

const KIND: EventKind = EventKind::custom(0xF, 1);

fn config(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir)
        .with_segment_max_bytes(8 * 1024)
        .with_sync_every_n_events(20)
}

fn coord(i: usize) -> Coordinate {
    Coordinate::new(format!("entity-{}", i % 7), format!("scope-{}", i % 2)).unwrap()
}

/// Appends a mix of singles, batches, idempotent and causally linked events.
fn fill(store: &Store, from: usize, count: usize) {
    let mut previous = None;
    for i in from..from + count {
        let mut options = AppendOptions::new();
        if i % 5 == 0 {
            options = options.idempotency_key(format!("key-{i}"));
        }
        if let Some(cause) = previous {
            if i % 3 == 0 {
                options = options.causation_id(cause).correlation_id(cause);
            }
        }
        if i % 11 == 0 {
            let mut batch = Batch::new().idempotency_key(format!("batch-{i}"));
            for j in 0..3 {
                let item = BatchItem::new(&coord(i + j), KIND, &json!({"i": i, "j": j})).unwrap();
                let item = if j > 0 { item.caused_by_item(0) } else { item };
                batch.push(item);
            }
            store.append_batch(&batch).unwrap();
        } else {
            let receipt = store
                .append_with_options(
                    &coord(i),
                    KIND,
                    &json!({"i": i, "pad": "x".repeat(i % 40)}),
                    options,
                )
                .unwrap();
            previous = Some(receipt.event_id);
        }
    }
}

/// Copies a store directory (as a crash image if the store is live), with or
/// without its derived files.
fn copy_store(from: &Path, to: &Path, with_checkpoints: bool) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if entry.file_type().unwrap().is_dir() {
            if name == "checkpoints" && !with_checkpoints {
                continue;
            }
            copy_store(&entry.path(), &to.join(&name), true);
        } else if name != "LOCK" {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

fn images(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.join("checkpoints"))
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// Everything a reader can observe, for comparing two stores.
fn observe(store: &Store) -> Vec<StoredEvent> {
    store.query(&Region::all()).map(|e| e.unwrap()).collect()
}

fn assert_same_as_a_full_scan(store: &Store, dir: &Path) {
    store.sync().unwrap();
    let scan_dir = tempfile::tempdir().unwrap();
    copy_store(dir, scan_dir.path(), false);
    let scanned = Store::open_read_only(StoreConfig::new(scan_dir.path())).unwrap();
    assert_eq!(scanned.open_report().index_source, IndexSource::Scan);
    store.index_matches(&scanned).unwrap();
    assert_eq!(observe(store), observe(&scanned));
}

#[test]
fn reopen_after_close_restores_the_index_from_images_without_scanning() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    fill(&store, 0, 400);
    let segments = store.stats().segments;
    assert!(segments > 4, "the test needs several segments");
    let retry = || AppendOptions::new().idempotency_key("key-5");
    let original = store
        .append_with_options(&coord(5), KIND, &json!("retry"), retry())
        .unwrap();
    let closed = store.close().unwrap();
    // One footer per sealed segment and one checkpoint of the active one.
    let files = images(dir.path());
    let footers = files
        .iter()
        .filter(|p| p.extension().unwrap() == "footer")
        .count();
    let checkpoints = files
        .iter()
        .filter(|p| p.extension().unwrap() == "checkpoint")
        .count();
    assert_eq!(
        (footers as u32, checkpoints),
        (segments - 1, 1),
        "{files:?}"
    );

    let store = Store::open(config(dir.path())).unwrap();
    let report = store.open_report().clone();
    assert_eq!(
        report.index_source,
        IndexSource::Checkpoint {
            restored_events: closed.next_sequence,
            scanned_events: 0,
            images: segments,
        }
    );
    assert!(report.ignored_files.is_empty(), "{report:?}");
    assert_same_as_a_full_scan(&store, dir.path());
    // Appends continue the restored state: clocks, chains, idempotency keys.
    let again = store
        .append_with_options(&coord(5), KIND, &json!("retry"), retry())
        .unwrap();
    assert_eq!(again, original, "idempotency key restored from an image");
    fill(&store, 400, 50);
    assert_same_as_a_full_scan(&store, dir.path());
    store.close().unwrap();
}

#[test]
fn after_a_crash_only_the_tail_after_the_checkpoint_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let crash = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    fill(&store, 0, 300);
    store.checkpoint().unwrap();
    let checkpointed = store.next_sequence();
    fill(&store, 300, 7);
    store.sync().unwrap();
    // The files as a crash would leave them: no close, no final checkpoint.
    copy_store(dir.path(), crash.path(), true);
    let expected = observe(&store);
    drop(store);

    let store = Store::open(config(crash.path())).unwrap();
    match store.open_report().index_source {
        IndexSource::Checkpoint {
            restored_events,
            scanned_events,
            ..
        } => {
            assert!(
                restored_events >= checkpointed,
                "{restored_events} < {checkpointed}"
            );
            assert_eq!(restored_events + scanned_events, expected.len() as u64);
            assert!(
                scanned_events > 0 && scanned_events < 40,
                "{scanned_events}"
            );
        }
        other => panic!("expected a checkpoint open, got {other:?}"),
    }
    assert_eq!(observe(&store), expected);
    assert_same_as_a_full_scan(&store, crash.path());
}

type Harm = Box<dyn Fn(&mut Vec<u8>, &[u8])>;

#[test]
fn damaged_images_are_ignored_reported_rebuilt_and_give_identical_results() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    fill(&store, 0, 300);
    store.close().unwrap();
    let files = images(dir.path());
    assert!(files.len() >= 4);
    let pristine: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    // Every way an image can be wrong, one per file: a flipped byte in the
    // header, one in the body, a truncation, another segment's image under
    // this name, and garbage.
    let damage: Vec<Harm> = vec![
        Box::new(|b, _| b[20] ^= 0x01),
        Box::new(|b, _| {
            let at = b.len() / 2;
            b[at] ^= 0x80
        }),
        Box::new(|b, _| b.truncate(b.len() - 3)),
        Box::new(|b, other| *b = other.to_vec()),
        Box::new(|b, _| *b = b"not an image at all".to_vec()),
    ];
    for (round, harm) in damage.iter().enumerate() {
        let target = round % files.len();
        let other = &pristine[(target + 1) % files.len()];
        let mut bytes = pristine[target].clone();
        harm(&mut bytes, other);
        std::fs::write(&files[target], &bytes).unwrap();

        let store = Store::open(config(dir.path())).unwrap();
        let report = store.open_report().clone();
        assert_eq!(report.ignored_files.len(), 1, "round {round}: {report:?}");
        assert_eq!(report.ignored_files[0].file, files[target]);
        assert_same_as_a_full_scan(&store, dir.path());
        store.close().unwrap();
        // Rebuilt at close: the next open trusts every image again.
        let store = Store::open(config(dir.path())).unwrap();
        assert!(
            store.open_report().ignored_files.is_empty(),
            "round {round}"
        );
        assert!(matches!(
            store.open_report().index_source,
            IndexSource::Checkpoint {
                scanned_events: 0,
                ..
            }
        ));
        store.close().unwrap();
    }
}

#[test]
fn an_image_that_no_longer_matches_its_segment_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    fill(&store, 0, 30);
    store.checkpoint().unwrap();
    let saved: Vec<(PathBuf, Vec<u8>)> = images(dir.path())
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    store.close().unwrap();
    // Replace the log with a different one of the same shape, then put the
    // old images back: they describe other events and must be refused.
    std::fs::remove_dir_all(dir.path()).unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    fill(&store, 0, 30);
    store.close().unwrap();
    for (path, bytes) in &saved {
        std::fs::write(path, bytes).unwrap();
    }
    let store = Store::open(config(dir.path())).unwrap();
    assert!(!store.open_report().ignored_files.is_empty());
    assert_same_as_a_full_scan(&store, dir.path());
}

#[test]
fn reopening_leaves_no_stray_files() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..4 {
        let store = Store::open(config(dir.path())).unwrap();
        fill(&store, round * 100, 100);
        store.close().unwrap();
    }
    let listing = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let before = listing(dir.path());
    let before_images = listing(&dir.path().join("checkpoints"));
    for _ in 0..3 {
        Store::open(config(dir.path())).unwrap().close().unwrap();
    }
    assert_eq!(listing(dir.path()), before);
    assert_eq!(listing(&dir.path().join("checkpoints")), before_images);
    assert!(before_images.iter().all(|n| !n.ends_with(".tmp")));
    // Every segment but the active one has a footer; nothing else lingers.
    let segments = before.iter().filter(|n| n.ends_with(".segment")).count();
    assert_eq!(before_images.len(), segments, "{before_images:?}");
}

#[test]
fn read_only_open_uses_images_and_never_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    fill(&store, 0, 200);
    store.close().unwrap();
    for path in images(dir.path()) {
        std::fs::remove_file(path).unwrap();
    }
    let reader = Store::open_read_only(config(dir.path())).unwrap();
    assert_eq!(reader.open_report().index_source, IndexSource::Scan);
    drop(reader);
    assert!(images(dir.path()).is_empty());
    let store = Store::open(config(dir.path())).unwrap();
    store.close().unwrap();
    let reader = Store::open_read_only(config(dir.path())).unwrap();
    assert!(matches!(
        reader.open_report().index_source,
        IndexSource::Checkpoint {
            scanned_events: 0,
            ..
        }
    ));
}

#[test]
fn the_background_thread_writes_footers_soon_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let crash = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    fill(&store, 0, 300);
    store.sync().unwrap();
    let sealed = store.stats().segments as usize - 1;
    assert!(sealed >= 3);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let footers = || {
        images(dir.path())
            .iter()
            .filter(|p| p.extension().unwrap() == "footer")
            .count()
    };
    while footers() < sealed {
        assert!(
            std::time::Instant::now() < deadline,
            "no footers after 20 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A crash now: the footers written in the background are trusted.
    copy_store(dir.path(), crash.path(), true);
    let expected = observe(&store);
    drop(store);
    let store = Store::open(config(crash.path())).unwrap();
    match store.open_report().index_source {
        IndexSource::Checkpoint {
            restored_events,
            images,
            ..
        } => {
            assert!(images as usize >= sealed, "{images} < {sealed}");
            assert!(restored_events > 0);
        }
        other => panic!("expected a checkpoint open, got {other:?}"),
    }
    assert_eq!(observe(&store), expected);
    assert_same_as_a_full_scan(&store, crash.path());
}
