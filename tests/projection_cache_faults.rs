//! Faults in the projection cache: a `FileCache::for_store` of a store opened
//! with a fault injector writes through the injector, so every step of a
//! cache write (create, write, short write, sync, rename, directory sync)
//! and of a cache read can fail or lose power. A failed cache write is
//! reported in `cache_error` and never makes a projection wrong, now or
//! later: a damaged or missing entry is rebuilt from the log.
#![cfg(feature = "dangerous-test-hooks")]

use batpak::fault::{Fault, FaultInjector, FaultRule, IoPoint};
use batpak::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

const ADDED: EventKind = EventKind::custom(0x2, 1);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sum {
    total: i64,
    events: u64,
}

impl EventSourced for Sum {
    const RELEVANT_KINDS: &'static [EventKind] = &[ADDED];

    fn initial() -> Self {
        Sum {
            total: 0,
            events: 0,
        }
    }

    fn apply(&mut self, event: &StoredEvent) {
        self.total += event.payload["n"].as_i64().unwrap_or(0);
        self.events += 1;
    }

    fn projection_name() -> &'static str {
        "sum"
    }
}

fn add(store: &Store, n: i64) {
    store
        .append(
            &Coordinate::new("acct", "s").unwrap(),
            ADDED,
            &json!({"n": n}),
        )
        .unwrap();
}

/// The state a fold over the log gives, without any cache.
fn truth(store: &Store) -> Sum {
    store.project::<Sum>("acct", Freshness::Consistent).unwrap()
}

#[test]
fn a_failed_cache_write_at_any_step_never_makes_a_projection_wrong() {
    let faults_of = [
        (IoPoint::Create, Fault::Error),
        (IoPoint::Write, Fault::Error),
        (IoPoint::Write, Fault::ShortWrite { keep_bytes: 30 }),
        (IoPoint::Sync, Fault::Error),
        (IoPoint::Rename, Fault::Error),
        (IoPoint::SyncDir, Fault::Error),
        (IoPoint::Open, Fault::Error),
        (IoPoint::Read, Fault::Error),
    ];
    let mut reported = 0;
    for (point, fault) in faults_of {
        let dir = tempfile::tempdir().unwrap();
        let faults = FaultInjector::new();
        let store =
            Store::open(StoreConfig::new(dir.path()).with_fault_injector(faults.clone())).unwrap();
        let cache = FileCache::for_store(&store).unwrap();
        for n in 1..=5 {
            add(&store, n);
        }
        let first = store
            .project_with::<Sum, _>(&cache, "acct", Freshness::Consistent)
            .unwrap();
        assert!(first.cache_error.is_none());
        add(&store, 100);
        // Only cache files fail: the log is not what this test is about.
        faults.add_rule(
            FaultRule::at(point)
                .path_contains(FileCache::STORE_SUBDIRECTORY)
                .nth(1)
                .fault(fault),
        );
        let before = faults.injected();
        let second = store
            .project_with::<Sum, _>(&cache, "acct", Freshness::Consistent)
            .unwrap();
        assert_eq!(
            faults.injected(),
            before + 1,
            "{point:?}: the fault reached the cache"
        );
        assert_eq!(second.state, truth(&store), "{point:?}");
        if matches!(point, IoPoint::Open | IoPoint::Read) {
            // A failed read is a damaged entry: rebuilt and rewritten.
            assert_eq!(second.outcome, CacheOutcome::Corrupt, "{point:?}");
        } else {
            assert!(
                second.cache_error.is_some(),
                "{point:?}: the failure is reported"
            );
            reported += 1;
        }
        faults.clear();
        // Later projections, through this cache and a fresh one, are right.
        add(&store, 1000);
        let third = store
            .project_with::<Sum, _>(&cache, "acct", Freshness::Consistent)
            .unwrap();
        assert_eq!(third.state, truth(&store), "{point:?}");
        assert!(third.cache_error.is_none(), "{point:?}");
        let fresh = FileCache::for_store(&store).unwrap();
        let fourth = store
            .project_with::<Sum, _>(&fresh, "acct", Freshness::Consistent)
            .unwrap();
        assert_eq!(fourth.outcome, CacheOutcome::Hit, "{point:?}");
        assert_eq!(fourth.state, truth(&store), "{point:?}");
        // No temporary file is left next to the entry.
        let entries: Vec<_> = walk(&dir.path().join(FileCache::STORE_SUBDIRECTORY));
        assert_eq!(entries.len(), 1, "{point:?}: {entries:?}");
        store.close().unwrap();
    }
    assert_eq!(reported, 6);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}

/// A power loss at every step of a cache write: whatever the crash image
/// holds of the cache (the old entry, the new one, a partial temporary
/// file), projections on the reopened store equal a fold of the log.
#[test]
fn a_power_loss_during_a_cache_write_leaves_a_usable_cache() {
    let mut images = 0;
    for point in [
        IoPoint::Create,
        IoPoint::Write,
        IoPoint::Sync,
        IoPoint::Rename,
        IoPoint::SyncDir,
    ] {
        for seed in 0..6u64 {
            let dir = tempfile::tempdir().unwrap();
            let faults = FaultInjector::recording();
            let store =
                Store::open(StoreConfig::new(dir.path()).with_fault_injector(faults.clone()))
                    .unwrap();
            let cache = FileCache::for_store(&store).unwrap();
            for n in 1..=4 {
                add(&store, n);
            }
            store
                .project_with::<Sum, _>(&cache, "acct", Freshness::Consistent)
                .unwrap();
            add(&store, 50);
            faults.add_rule(
                FaultRule::at(point)
                    .path_contains(FileCache::STORE_SUBDIRECTORY)
                    .nth(1)
                    .fault(Fault::Crash),
            );
            let projected = store
                .project_with::<Sum, _>(&cache, "acct", Freshness::Consistent)
                .unwrap();
            assert!(faults.crashed(), "{point:?}");
            assert_eq!(projected.state, truth(&store), "{point:?}");
            drop(store);
            let image = tempfile::tempdir().unwrap();
            faults.crash_image(dir.path(), image.path(), seed).unwrap();
            images += 1;
            let store = Store::open(StoreConfig::new(image.path())).unwrap();
            let cache = FileCache::for_store(&store).unwrap();
            let after = store
                .project_with::<Sum, _>(&cache, "acct", Freshness::Consistent)
                .unwrap();
            assert_eq!(after.state, truth(&store), "{point:?} seed {seed}");
            assert!(after.cache_error.is_none(), "{point:?} seed {seed}");
            store.close().unwrap();
        }
    }
    assert_eq!(images, 30);
}
