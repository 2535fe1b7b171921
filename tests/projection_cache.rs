//! Projections: folds equal a hand fold over `stream()`, and the file cache's
//! miss, hit, stale, incremental, corrupt and invalidated paths.

use std::time::Duration;

use batpak::prelude::*;
use batpak::projection::{CacheKey, Position};
use serde::{Deserialize, Serialize};

const DEPOSITED: EventKind = EventKind::custom(0x1, 1);
const WITHDRAWN: EventKind = EventKind::custom(0x1, 2);
const NOTE: EventKind = EventKind::custom(0x1, 3);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    balance: i64,
    operations: u64,
}

impl EventSourced for Account {
    const RELEVANT_KINDS: &'static [EventKind] = &[WITHDRAWN, DEPOSITED];
    const SCHEMA_VERSION: u16 = 1;

    fn initial() -> Self {
        Account {
            balance: 0,
            operations: 0,
        }
    }

    fn apply(&mut self, event: &StoredEvent) {
        let amount = event.payload["amount"].as_i64().unwrap_or(0);
        match event.kind() {
            DEPOSITED => self.balance += amount,
            WITHDRAWN => self.balance -= amount,
            other => panic!("apply called for irrelevant kind {other}"),
        }
        self.operations += 1;
    }
}

/// Counts every event, whatever its kind; pins its cache name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EventCount(u64);

impl EventSourced for EventCount {
    fn initial() -> Self {
        EventCount(0)
    }
    fn apply(&mut self, _event: &StoredEvent) {
        self.0 += 1;
    }
    fn projection_name() -> &'static str {
        "event-count"
    }
}

/// The oracle: a fold written by hand over `stream()`.
fn hand_fold(store: &Store, entity: &str) -> Account {
    let mut balance = 0;
    let mut operations = 0;
    for event in store.stream(entity) {
        let event = event.unwrap();
        let amount = event.payload["amount"].as_i64().unwrap_or(0);
        if event.kind() == DEPOSITED {
            balance += amount;
            operations += 1;
        } else if event.kind() == WITHDRAWN {
            balance -= amount;
            operations += 1;
        }
    }
    Account {
        balance,
        operations,
    }
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(StoreConfig::new(dir)).unwrap()
}

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "bank").unwrap()
}

fn deposit(store: &Store, entity: &str, amount: i64) {
    store
        .append(
            &coord(entity),
            DEPOSITED,
            &serde_json::json!({ "amount": amount }),
        )
        .unwrap();
}

fn fill(store: &Store) {
    for n in 0..40 {
        let (kind, amount) = match n % 3 {
            0 => (DEPOSITED, 100 + n),
            1 => (WITHDRAWN, n),
            _ => (NOTE, 1_000_000),
        };
        store
            .append(
                &coord("account:a"),
                kind,
                &serde_json::json!({ "amount": amount }),
            )
            .unwrap();
        // Unrelated traffic on another entity, interleaved.
        deposit(store, "account:b", 1);
    }
}

#[test]
fn projection_equals_a_hand_fold_over_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    fill(&store);
    let projected: Account = store.project("account:a", Freshness::Consistent).unwrap();
    assert_eq!(projected, hand_fold(&store, "account:a"));
    assert_eq!(projected.operations, 27);
    let cache = FileCache::for_store(&store).unwrap();
    let cached = store
        .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
        .unwrap();
    assert_eq!(cached.state, projected);
    assert_eq!(cached.position.clock, 40);
    let count: EventCount = store.project("account:a", Freshness::Consistent).unwrap();
    assert_eq!(count, EventCount(40));
    let nobody: Account = store
        .project("account:nobody", Freshness::Consistent)
        .unwrap();
    assert_eq!(nobody, Account::initial());
}

#[test]
fn no_cache_always_folds_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    fill(&store);
    for _ in 0..2 {
        let projected = store
            .project_with::<Account, _>(&NoCache, "account:a", Freshness::Consistent)
            .unwrap();
        assert_eq!(projected.outcome, CacheOutcome::Miss);
        assert_eq!(projected.state, hand_fold(&store, "account:a"));
    }
}

#[test]
fn cache_miss_then_hit_then_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    fill(&store);
    let cache = FileCache::for_store(&store).unwrap();
    assert_eq!(cache.dir(), dir.path().join("projections"));

    let first = store
        .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
        .unwrap();
    assert_eq!(first.outcome, CacheOutcome::Miss);
    assert!(first.cache_error.is_none());
    assert!(cache
        .entry_path(&CacheKey::of::<Account>(), "account:a")
        .exists());

    let second = store
        .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
        .unwrap();
    assert_eq!(second.outcome, CacheOutcome::Hit);
    assert_eq!(second.state, first.state);

    deposit(&store, "account:a", 5);
    store
        .append(&coord("account:a"), NOTE, &serde_json::json!({"amount": 9}))
        .unwrap();
    deposit(&store, "account:a", 7);
    let third = store
        .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
        .unwrap();
    assert_eq!(third.outcome, CacheOutcome::Incremental { events_read: 3 });
    assert_eq!(third.state, hand_fold(&store, "account:a"));
    assert_eq!(third.state.balance, first.state.balance + 12);
    assert_eq!(third.position.clock, 43);

    // The incremental result was written back: the next call is a hit.
    let fourth = store
        .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
        .unwrap();
    assert_eq!(fourth.outcome, CacheOutcome::Hit);
    assert_eq!(fourth.state, third.state);
}

#[test]
fn maybe_stale_serves_a_young_entry_without_reading_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    deposit(&store, "account:a", 10);
    let cache = FileCache::for_store(&store).unwrap();
    store
        .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
        .unwrap();
    deposit(&store, "account:a", 20);

    let stale = store
        .project_with::<Account, _>(
            &cache,
            "account:a",
            Freshness::MaybeStale {
                max_age: Duration::from_secs(3600),
            },
        )
        .unwrap();
    assert_eq!(stale.outcome, CacheOutcome::Unchecked);
    assert_eq!(stale.state.balance, 10, "the stale state, as allowed");

    // Too old for the caller: checked against the log and brought up to date.
    let fresh = store
        .project_with::<Account, _>(
            &cache,
            "account:a",
            Freshness::MaybeStale {
                max_age: Duration::ZERO,
            },
        )
        .unwrap();
    assert_eq!(fresh.outcome, CacheOutcome::Incremental { events_read: 1 });
    assert_eq!(fresh.state.balance, 30);
    let consistent = store
        .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
        .unwrap();
    assert_eq!(
        (consistent.outcome, consistent.state.balance),
        (CacheOutcome::Hit, 30)
    );
}

#[test]
fn corrupt_entries_are_ignored_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    fill(&store);
    let cache = FileCache::for_store(&store).unwrap();
    let expected = hand_fold(&store, "account:a");
    store
        .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
        .unwrap();
    let path = cache.entry_path(&CacheKey::of::<Account>(), "account:a");
    let good = std::fs::read(&path).unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    let damages: [Vec<u8>; 4] = [
        flipped,
        good[..good.len() - 3].to_vec(),
        Vec::new(),
        b"not a cache entry at all, but long enough to have a header...".to_vec(),
    ];
    for damaged in damages {
        std::fs::write(&path, &damaged).unwrap();
        let rebuilt = store
            .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
            .unwrap();
        assert_eq!(rebuilt.outcome, CacheOutcome::Corrupt);
        assert_eq!(rebuilt.state, expected);
        // The rebuilt entry replaced the damaged one.
        let again = store
            .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
            .unwrap();
        assert_eq!(again.outcome, CacheOutcome::Hit);
    }
}

#[test]
fn an_entry_that_does_not_match_the_log_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    fill(&store);
    let cache = FileCache::for_store(&store).unwrap();
    let key = CacheKey::of::<Account>();
    let forged_state = serde_json::to_vec(&Account {
        balance: 999_999,
        operations: 1,
    })
    .unwrap();
    let real = store.stream("account:a").nth(4).unwrap().unwrap();

    // Ahead of the log (as after losing an unsynced tail in a crash).
    let ahead = Position {
        clock: 1000,
        sequence: Some(5000),
        event_id: Some(real.id()),
    };
    // At a real clock, but naming an event that is not there.
    let wrong_event = Position {
        clock: 5,
        sequence: Some(real.sequence()),
        event_id: Some(EventId::from_bytes([3; 16])),
    };
    for position in [ahead, wrong_event] {
        cache
            .store(
                &key,
                "account:a",
                &batpak::projection::CacheEntry::now(position, forged_state.clone()),
            )
            .unwrap();
        let projected = store
            .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
            .unwrap();
        assert_eq!(projected.outcome, CacheOutcome::Invalidated);
        assert_eq!(projected.state, hand_fold(&store, "account:a"));
    }
}

#[test]
fn cache_key_is_built_from_name_version_and_kinds_only() {
    // The exact strings: no TypeId, no build-dependent hash. A rebuilt
    // program computes the same key, hence the same file.
    assert_eq!(
        CacheKey::of::<Account>().as_str(),
        "projection_cache::Account@v1[1001,1002]"
    );
    assert_eq!(CacheKey::of::<EventCount>().as_str(), "event-count@v0[*]");
    let dir = tempfile::tempdir().unwrap();
    let cache = FileCache::open(dir.path()).unwrap();
    let path = cache.entry_path(&CacheKey::of::<EventCount>(), "account:a");
    let relative = path.strip_prefix(cache.dir()).unwrap();
    assert_eq!(
        relative,
        std::path::Path::new("event-count@v0___-1bb7931c28523b23/account_a-de3e4fc24848b089.entry")
    );
}

#[test]
fn cache_survives_closing_and_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        fill(&store);
        let cache = FileCache::for_store(&store).unwrap();
        let first = store
            .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
            .unwrap();
        assert_eq!(first.outcome, CacheOutcome::Miss);
        store.close().unwrap();
    }
    let store = open(dir.path());
    assert!(
        store.open_report().foreign_files.is_empty(),
        "the store owns its projections/ directory"
    );
    let cache = FileCache::for_store(&store).unwrap();
    let again = store
        .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
        .unwrap();
    assert_eq!(again.outcome, CacheOutcome::Hit);
    assert_eq!(again.state, hand_fold(&store, "account:a"));
}

#[test]
fn a_version_bump_does_not_reuse_old_entries() {
    #[derive(Debug, Serialize, Deserialize)]
    struct CountV2(u64);
    impl EventSourced for CountV2 {
        const SCHEMA_VERSION: u16 = 2;
        fn initial() -> Self {
            CountV2(0)
        }
        fn apply(&mut self, _event: &StoredEvent) {
            self.0 += 2;
        }
        fn projection_name() -> &'static str {
            "event-count"
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    deposit(&store, "account:a", 1);
    let cache = FileCache::for_store(&store).unwrap();
    let v0 = store
        .project_with::<EventCount, _>(&cache, "account:a", Freshness::Consistent)
        .unwrap();
    assert_eq!(v0.state, EventCount(1));
    let v2 = store
        .project_with::<CountV2, _>(&cache, "account:a", Freshness::Consistent)
        .unwrap();
    assert_eq!(v2.outcome, CacheOutcome::Miss);
    assert_eq!(v2.state.0, 2);
}

#[test]
fn watcher_yields_the_new_state_when_the_entity_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    deposit(&store, "account:a", 10);
    let mut watcher = store.watch::<Account>("account:a").unwrap();
    assert_eq!(watcher.state().balance, 10);
    assert!(watcher.wait(Duration::from_millis(20)).unwrap().is_none());

    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(30));
            // Irrelevant events do not wake the watcher...
            deposit(&store, "account:b", 1);
            store
                .append(&coord("account:a"), NOTE, &serde_json::json!({}))
                .unwrap();
            std::thread::sleep(Duration::from_millis(30));
            // ...a relevant one does.
            deposit(&store, "account:a", 5);
        });
        let state = watcher.wait(Duration::from_secs(10)).unwrap().cloned();
        assert_eq!(state.map(|account| account.balance), Some(15));
    });
    assert_eq!(watcher.position().clock, 3);
    assert_eq!(watcher.into_state(), hand_fold(&store, "account:a"));
}

#[test]
fn hits_and_incremental_updates_start_from_the_cached_state() {
    // A cached state that no fold of the log would produce, at the log's
    // real position: a hit must return it as is, and an incremental update
    // must fold only the new events onto it.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    fill(&store);
    let cache = FileCache::for_store(&store).unwrap();
    let last = store.stream("account:a").last().unwrap().unwrap();
    let position = Position {
        clock: last.header.clock,
        sequence: Some(last.sequence()),
        event_id: Some(last.id()),
    };
    let marked = Account {
        balance: 1_000_000,
        operations: 0,
    };
    cache
        .store(
            &CacheKey::of::<Account>(),
            "account:a",
            &batpak::projection::CacheEntry::now(position, serde_json::to_vec(&marked).unwrap()),
        )
        .unwrap();

    let hit = store
        .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
        .unwrap();
    assert_eq!((hit.outcome, &hit.state), (CacheOutcome::Hit, &marked));

    deposit(&store, "account:a", 5);
    let updated = store
        .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
        .unwrap();
    assert_eq!(
        updated.outcome,
        CacheOutcome::Incremental { events_read: 1 }
    );
    assert_eq!(
        updated.state,
        Account {
            balance: 1_000_005,
            operations: 1
        }
    );
}

mod model {
    //! Random interleavings of appends, cached projections and cache damage:
    //! every cached projection equals the hand fold over `stream()`.

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Deposit(i64),
        Withdraw(i64),
        Note,
        OtherEntity,
        Project,
        ProjectMaybeStale,
        DamageEntry(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (1i64..1000).prop_map(Step::Deposit),
            2 => (1i64..1000).prop_map(Step::Withdraw),
            1 => Just(Step::Note),
            1 => Just(Step::OtherEntity),
            3 => Just(Step::Project),
            1 => Just(Step::ProjectMaybeStale),
            1 => any::<usize>().prop_map(Step::DamageEntry),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn cached_projection_always_equals_the_hand_fold(steps in proptest::collection::vec(step(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(StoreConfig::new(dir.path()).with_sync_every_n_events(1000)).unwrap();
            let cache = FileCache::for_store(&store).unwrap();
            let path = cache.entry_path(&CacheKey::of::<Account>(), "account:a");
            let mut last_consistent: Option<Account> = None;
            for step in steps {
                match step {
                    Step::Deposit(amount) => deposit(&store, "account:a", amount),
                    Step::Withdraw(amount) => {
                        store.append(&coord("account:a"), WITHDRAWN, &serde_json::json!({ "amount": amount })).unwrap();
                    }
                    Step::Note => {
                        store.append(&coord("account:a"), NOTE, &serde_json::json!({ "amount": 1 })).unwrap();
                    }
                    Step::OtherEntity => deposit(&store, "account:b", 3),
                    Step::Project => {
                        let projected = store
                            .project_with::<Account, _>(&cache, "account:a", Freshness::Consistent)
                            .unwrap();
                        prop_assert_eq!(&projected.state, &hand_fold(&store, "account:a"));
                        prop_assert_eq!(projected.position.clock, store.entity_clock("account:a"));
                        prop_assert!(projected.cache_error.is_none());
                        last_consistent = Some(projected.state);
                    }
                    Step::ProjectMaybeStale => {
                        let projected = store
                            .project_with::<Account, _>(
                                &cache,
                                "account:a",
                                Freshness::MaybeStale { max_age: Duration::from_secs(3600) },
                            )
                            .unwrap();
                        if projected.outcome == CacheOutcome::Unchecked {
                            // Stale is allowed, but only as the last state cached.
                            prop_assert_eq!(Some(&projected.state), last_consistent.as_ref());
                        } else {
                            prop_assert_eq!(&projected.state, &hand_fold(&store, "account:a"));
                            last_consistent = Some(projected.state);
                        }
                    }
                    Step::DamageEntry(at) => {
                        if let Ok(mut bytes) = std::fs::read(&path) {
                            let index = at % bytes.len();
                            bytes[index] ^= 0x5A;
                            std::fs::write(&path, &bytes).unwrap();
                            last_consistent = None;
                        }
                    }
                }
            }
        }
    }
}
