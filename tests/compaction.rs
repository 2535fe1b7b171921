//! Compaction and retention: every policy keeps what it must keep, byte for
//! byte, chains still verify, removed events never come back, keys and
//! cursors survive, and it is safe under concurrent writers and reopen.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use batpak::prelude::*;
use batpak::store::VerifyReport;
use serde_json::json;

const KIND: EventKind = EventKind::custom(0x1, 7);

fn config(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir)
        .with_segment_max_bytes(8 * 1024)
        .with_sync_every_n_events(1)
}

fn entity(i: usize) -> Coordinate {
    Coordinate::new(format!("user:{}", i % 7), "accounts").unwrap()
}

/// Singles, batches and keyed appends over several segments.
fn fill(store: &Store, from: usize, count: usize) {
    let mut i = from;
    while i < from + count {
        match i % 10 {
            3 => {
                let mut batch = Batch::new();
                batch.push(BatchItem::new(&entity(i), KIND, &json!({"i": i, "batch": 0})).unwrap());
                batch.push(
                    BatchItem::new(&entity(i + 1), KIND, &json!({"i": i, "batch": 1})).unwrap(),
                );
                store.append_batch(&batch).unwrap();
                i += 2;
            }
            6 => {
                let options = AppendOptions::new().idempotency_key(format!("key-{i}"));
                store
                    .append_with_options(&entity(i), KIND, &json!({"i": i, "keyed": true}), options)
                    .unwrap();
                i += 1;
            }
            _ => {
                store
                    .append(&entity(i), KIND, &json!({"i": i, "pad": "p".repeat(40)}))
                    .unwrap();
                i += 1;
            }
        }
    }
}

fn all(store: &Store) -> Vec<StoredEvent> {
    store.query(&Region::all()).map(|e| e.unwrap()).collect()
}

fn by_sequence(events: Vec<StoredEvent>) -> BTreeMap<u64, StoredEvent> {
    events.into_iter().map(|e| (e.sequence(), e)).collect()
}

/// Everything `after` holds equals `before` where `keep` says so, and
/// nothing else is there.
fn assert_kept(
    before: &BTreeMap<u64, StoredEvent>,
    after: &[StoredEvent],
    keep: impl Fn(&StoredEvent) -> bool,
) {
    let expected: Vec<&StoredEvent> = before.values().filter(|e| keep(e)).collect();
    let got: Vec<&StoredEvent> = after.iter().collect();
    assert_eq!(got.len(), expected.len(), "number of kept events");
    for (got, expected) in got.iter().zip(expected) {
        assert_eq!(*got, expected, "kept event {}", expected.sequence());
    }
}

fn assert_verifies(store: &Store) -> VerifyReport {
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{:#?}", report.damage);
    report
}

#[test]
fn dropping_an_entity_removes_it_and_keeps_every_other_event_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    fill(&store, 0, 300);
    let before = by_sequence(all(&store));
    let mut steps = Vec::new();
    let report = store
        .compact_with_progress(&Compaction::new().drop_entity("user:3"), &mut |step| {
            steps.push(*step)
        })
        .unwrap();
    let last = steps.last().unwrap();
    assert_eq!(last.segments_done, last.segments_total);
    assert_eq!(last.bytes_done, last.bytes_total);
    assert_eq!(last.segments_total, report.segments_examined);
    assert!(steps.windows(2).all(|w| w[0].bytes_done <= w[1].bytes_done));
    assert!(report.segments_rewritten > 1, "{report:?}");
    assert!(report.events_removed > 30, "{report:?}");
    assert!(report.bytes_reclaimed() > 0, "{report:?}");
    let keep = |e: &StoredEvent| e.coordinate.entity() != "user:3";
    assert_kept(&before, &all(&store), keep);
    // The same policy again finds nothing left to do.
    let again = store
        .compact(&Compaction::new().drop_entity("user:3"))
        .unwrap();
    assert_eq!(again.segments_rewritten, 0, "{again:?}");
    assert_eq!(again.events_removed, 0);
    assert_eq!(store.stream("user:3").count(), 0);
    assert!(store.entities("user:3").is_empty());
    let verified = assert_verifies(&store);
    if cfg!(feature = "blake3") {
        assert!(verified.links_checked > 200);
    }
    assert!(
        verified.anchors > 0,
        "stubs anchor the removed entity's chain"
    );
    // Get by id of a removed event finds nothing.
    let removed = before.values().find(|e| !keep(e)).unwrap();
    assert!(store.get(removed.id()).unwrap().is_none());
    assert!(store.get_by_sequence(removed.sequence()).unwrap().is_none());
    let stats = store.stats();
    assert_eq!(stats.removed_events, report.events_removed);
    assert_eq!(stats.events, before.len() as u64 - report.events_removed);

    // Appends to the removed entity continue its clock and chain.
    let clock = store.entity_clock("user:3");
    assert!(clock > 30);
    let receipt = store
        .append(&entity(3), KIND, &json!({"after": "erasure"}))
        .unwrap();
    assert_eq!(receipt.clock, clock + 1);
    assert_verifies(&store);
    store.close().unwrap();

    // The same after reopen.
    let store = Store::open(config(dir.path())).unwrap();
    let mut expected: Vec<StoredEvent> = before.values().filter(|e| keep(e)).cloned().collect();
    let reopened = all(&store);
    assert_eq!(&reopened[..expected.len()], &expected[..]);
    assert_eq!(reopened.len(), expected.len() + 1);
    expected.push(reopened.last().unwrap().clone());
    assert_eq!(store.entity_clock("user:3"), clock + 1);
    assert_eq!(store.stats().removed_events, report.events_removed);
    assert_verifies(&store);
    store.walk_entity_chain("user:3").unwrap();
    store.walk_entity_chain("user:4").unwrap();
}

#[test]
fn retention_by_sequence_and_by_time_drops_only_the_old_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    fill(&store, 0, 200);
    let cut_time = store
        .get_by_sequence(120)
        .unwrap()
        .unwrap()
        .header
        .timestamp_us;
    fill(&store, 200, 100);
    let before = by_sequence(all(&store));
    store
        .compact(&Compaction::new().drop_before_sequence(80))
        .unwrap();
    assert_kept(&before, &all(&store), |e| e.sequence() >= 80);
    assert_verifies(&store);
    // A second, wider policy on already compacted segments.
    store
        .compact(&Compaction::new().drop_before_timestamp_us(cut_time))
        .unwrap();
    assert_kept(&before, &all(&store), |e| {
        e.sequence() >= 80 && e.header.timestamp_us >= cut_time
    });
    assert_verifies(&store);
    for i in 0..7 {
        store.walk_entity_chain(&format!("user:{i}")).unwrap();
    }
    // A snapshot of a compacted store opens with the same events.
    let backup = tempfile::tempdir().unwrap();
    let copy_dir = backup.path().join("copy");
    store.snapshot(&copy_dir).unwrap();
    let copy = Store::open(config(&copy_dir)).unwrap();
    assert_eq!(all(&copy), all(&store));
    assert_verifies(&copy);
    drop(copy);
    // New events after compaction, then reopen.
    fill(&store, 300, 40);
    let now = all(&store);
    store.close().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    assert_eq!(all(&store), now);
    assert_verifies(&store);
    assert_eq!(store.next_sequence(), before.len() as u64 + 40);
}

#[test]
fn retention_gives_back_the_index_memory_of_the_removed_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(dir.path())
        .with_segment_max_bytes(64 * 1024)
        .with_sync_every_n_events(1000);
    let store = Store::open(config.clone()).unwrap();
    for i in 0..20_000u64 {
        let coord = Coordinate::new(format!("device:{}", i % 50), "telemetry").unwrap();
        store.append(&coord, KIND, &json!({"reading": i})).unwrap();
    }
    let before = store.stats().index_memory_bytes;
    store
        .compact(&Compaction::new().drop_before_sequence(19_000))
        .unwrap();
    let after = store.stats().index_memory_bytes;
    assert!(after * 5 < before, "index memory {before} -> {after} bytes");
    assert_eq!(store.stats().events, 1_000);
    assert_eq!(
        store.get_by_sequence(19_000).unwrap().unwrap().payload["reading"],
        19_000
    );
    assert!(store.get_by_sequence(18_999).unwrap().is_none());
    assert_eq!(store.query(&Region::all()).count(), 1_000);
    assert_eq!(store.stream("device:7").count(), 20);
    assert_eq!(store.entity_clock("device:7"), 400);
    store.close().unwrap();
    let store = Store::open(config).unwrap();
    let reopened = store.stats().index_memory_bytes;
    assert!(
        reopened * 5 < before,
        "index memory after reopen {reopened} bytes"
    );
    assert_eq!(store.query(&Region::all()).count(), 1_000);
    let receipt = store
        .append(
            &Coordinate::new("device:7", "telemetry").unwrap(),
            KIND,
            &json!({}),
        )
        .unwrap();
    assert_eq!(receipt.sequence, 20_000);
    assert_eq!(receipt.clock, 401);
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn redaction_keeps_the_event_and_its_chain_but_not_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    fill(&store, 0, 150);
    store
        .append(&entity(2), KIND, &json!({"email": "alice@example.com"}))
        .unwrap();
    fill(&store, 151, 20);
    let before = by_sequence(all(&store));
    let single = before
        .values()
        .find(|e| e.coordinate.entity() == "user:5")
        .unwrap();
    let report = store
        .compact(
            &Compaction::new()
                .redact_entity("user:2")
                .redact_event(single.id()),
        )
        .unwrap();
    assert!(report.events_redacted > 10);
    assert_eq!(report.events_removed, 0);
    let after = all(&store);
    assert_eq!(after.len(), before.len());
    for event in &after {
        let old = &before[&event.sequence()];
        let redacted = event.coordinate.entity() == "user:2" || event.id() == single.id();
        assert_eq!(event.redacted, redacted);
        assert_eq!(event.header, old.header);
        assert_eq!(event.hash, old.hash);
        if redacted {
            assert_eq!(event.payload, serde_json::Value::Null);
        } else {
            assert_eq!(event, old);
        }
    }
    let verified = assert_verifies(&store);
    assert_eq!(verified.anchors, 0);
    store.walk_entity_chain("user:2").unwrap();
    // A typed read of a redacted payload says so.
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Payload {
        i: u64,
    }
    let typed = store.get_typed::<Payload>(single.id());
    assert!(
        matches!(typed, Err(StoreError::Redacted { .. })),
        "{typed:?}"
    );
    // Redaction is not undone by a later compaction, and survives reopen.
    store
        .compact(&Compaction::new().drop_entity("user:6"))
        .unwrap();
    store.close().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let reopened = store.get(single.id()).unwrap().unwrap();
    assert!(reopened.redacted);
    assert_eq!(reopened.payload, serde_json::Value::Null);
    assert_verifies(&store);
    // The payload bytes are gone from the files.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("alice@example.com"),
            "{} still holds the erased payload",
            path.display()
        );
    }
}

#[test]
fn idempotency_keys_of_removed_events_still_answer_retries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let first = store
        .append_with_options(
            &entity(1),
            KIND,
            &json!({"pay": 10}),
            AppendOptions::new().idempotency_key("payment-1"),
        )
        .unwrap();
    let mut batch = Batch::new().idempotency_key("import-1");
    batch.push(BatchItem::new(&entity(1), KIND, &json!({"line": 1})).unwrap());
    batch.push(BatchItem::new(&entity(2), KIND, &json!({"line": 2})).unwrap());
    let batch_receipts = store.append_batch(&batch).unwrap();
    fill(&store, 10, 100);
    store
        .compact(&Compaction::new().drop_before_sequence(50))
        .unwrap();
    assert!(store.get(first.event_id).unwrap().is_none());
    let next = store.next_sequence();
    let retry = |store: &Store| {
        let again = store
            .append_with_options(
                &entity(1),
                KIND,
                &json!({"pay": 10}),
                AppendOptions::new().idempotency_key("payment-1"),
            )
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(store.append_batch(&batch).unwrap(), batch_receipts);
        assert_eq!(store.next_sequence(), next, "a retry writes nothing");
    };
    retry(&store);
    store.close().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    retry(&store);
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn named_cursors_continue_after_compaction_with_the_kept_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    fill(&store, 0, 120);
    let mut cursor = store.named_cursor("billing", &Region::all()).unwrap();
    let seen: Vec<u64> = cursor
        .poll_batch(40)
        .unwrap()
        .iter()
        .map(StoredEvent::sequence)
        .collect();
    assert_eq!(seen.len(), 40);
    cursor.commit().unwrap();
    drop(cursor);
    store
        .compact(&Compaction::new().drop_entity("user:1"))
        .unwrap();
    let mut cursor = store.named_cursor("billing", &Region::all()).unwrap();
    let mut rest = Vec::new();
    loop {
        let batch = cursor.poll_batch(64).unwrap();
        if batch.is_empty() {
            break;
        }
        for event in batch {
            assert_ne!(event.coordinate.entity(), "user:1");
            rest.push(event.sequence());
        }
    }
    assert!(rest.iter().all(|s| *s > seen[39]));
    let expected: Vec<u64> = all(&store)
        .into_iter()
        .map(|e| e.sequence())
        .filter(|s| *s > seen[39])
        .collect();
    assert_eq!(rest, expected);
}

#[test]
fn compaction_runs_while_writers_and_readers_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(config(dir.path()).with_sync_every_n_events(16)).unwrap());
    fill(&store, 0, 200);
    let before = by_sequence(all(&store));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut receipts = Vec::new();
                for i in 0..150 {
                    let coord = Coordinate::new(format!("live:{t}"), "s").unwrap();
                    receipts.push(
                        store
                            .append(&coord, KIND, &json!({"t": t, "i": i}))
                            .unwrap(),
                    );
                }
                receipts
            })
        })
        .collect();
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || {
            for _ in 0..20 {
                for event in store.query(&Region::all()) {
                    let event = event.unwrap();
                    assert_ne!(event.coordinate.entity(), "", "reads stay consistent");
                }
            }
        })
    };
    let report = store
        .compact(
            &Compaction::new()
                .drop_entity("user:0")
                .drop_entity("user:4"),
        )
        .unwrap();
    assert!(report.events_removed > 0);
    let receipts: Vec<AppendReceipt> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    reader.join().unwrap();
    store.sync().unwrap();
    for receipt in &receipts {
        let event = store.get(receipt.event_id).unwrap().unwrap();
        assert_eq!(event.sequence(), receipt.sequence);
    }
    let now = all(&store);
    let old: Vec<StoredEvent> = now
        .iter()
        .filter(|e| e.sequence() < before.len() as u64)
        .cloned()
        .collect();
    assert_kept(&before, &old, |e| {
        !["user:0", "user:4"].contains(&e.coordinate.entity())
    });
    assert_verifies(&store);
    Arc::try_unwrap(store).ok().unwrap().close().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    assert_eq!(all(&store), now);
    assert_verifies(&store);
}

#[test]
fn an_empty_policy_and_a_read_only_store_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    fill(&store, 0, 50);
    let report = store.compact(&Compaction::new()).unwrap();
    assert_eq!(report.segments_rewritten, 0);
    let nothing = store
        .compact(&Compaction::new().drop_entity("nobody"))
        .unwrap();
    assert_eq!(nothing.segments_rewritten, 0);
    assert!(nothing.segments_examined > 0);
    store.close().unwrap();
    let store = Store::open_read_only(config(dir.path())).unwrap();
    assert!(matches!(
        store.compact(&Compaction::new().drop_entity("user:1")),
        Err(StoreError::ReadOnly)
    ));
}

#[test]
fn a_read_only_store_keeps_its_view_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    fill(&store, 0, 100);
    let before = all(&store);
    let reader = Store::open_read_only(config(dir.path())).unwrap();
    store
        .compact(&Compaction::new().drop_entity("user:2"))
        .unwrap();
    fill(&store, 100, 20);
    reader.refresh().unwrap();
    let seen = all(&reader);
    assert_eq!(&seen[..before.len()], &before[..]);
    assert_eq!(seen.len(), before.len() + 20);
    let reopened = Store::open_read_only(config(dir.path())).unwrap();
    assert_eq!(all(&reopened), all(&store));
}

#[test]
fn cached_projections_do_not_outlive_removed_or_redacted_events() {
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    struct Emails(Vec<String>);
    impl EventSourced for Emails {
        fn initial() -> Self {
            Emails::default()
        }
        fn apply(&mut self, event: &StoredEvent) {
            if let Some(email) = event.payload.get("email").and_then(|e| e.as_str()) {
                self.0.push(email.to_string());
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let bob = entity(2);
    store
        .append(&bob, KIND, &json!({"email": "bob@example.com"}))
        .unwrap();
    store.append(&bob, KIND, &json!({"plan": "pro"})).unwrap();
    let cache = FileCache::for_store(&store).unwrap();
    let folded = store
        .project_with::<Emails, _>(&cache, bob.entity(), Freshness::Consistent)
        .unwrap();
    assert_eq!(folded.state.0, ["bob@example.com"]);
    // Served from the cache the second time.
    let again = store
        .project_with::<Emails, _>(&cache, bob.entity(), Freshness::Consistent)
        .unwrap();
    assert_eq!(again.state.0, ["bob@example.com"]);
    store
        .compact(&Compaction::new().redact_entity(bob.entity()))
        .unwrap();
    let folded = store
        .project_with::<Emails, _>(&cache, bob.entity(), Freshness::Consistent)
        .unwrap();
    assert!(
        folded.state.0.is_empty(),
        "the cached state held the erased email"
    );
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append {
            entity: u8,
            key: Option<u8>,
        },
        Batch {
            entities: Vec<u8>,
            key: Option<u8>,
        },
        DropEntity(u8),
        DropBefore(u8),
        Redact(u8),
        Reopen,
        /// A named cursor delivers up to this many events, then commits.
        Poll(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u8..4, proptest::option::weighted(0.3, 0u8..6))
                .prop_map(|(entity, key)| Op::Append { entity, key }),
            3 => (proptest::collection::vec(0u8..4, 1..4), proptest::option::weighted(0.3, 0u8..6))
                .prop_map(|(entities, key)| Op::Batch { entities, key }),
            1 => (0u8..4).prop_map(Op::DropEntity),
            1 => (0u8..100).prop_map(Op::DropBefore),
            1 => (0u8..4).prop_map(Op::Redact),
            1 => Just(Op::Reopen),
            2 => (1u8..6).prop_map(Op::Poll),
        ]
    }

    /// What the store (and a named cursor polling it) must show: per sequence, the entity, the payload and
    /// whether it was redacted; removed sequences are absent.
    #[derive(Default)]
    struct Model {
        events: BTreeMap<u64, (String, serde_json::Value, bool)>,
        clocks: BTreeMap<String, u64>,
        keys: BTreeMap<String, Vec<AppendReceipt>>,
        next: u64,
    }

    fn name(entity: u8) -> String {
        format!("m:{entity}")
    }

    fn check(store: &Store, model: &Model) -> Result<(), TestCaseError> {
        let got = all(store);
        prop_assert_eq!(got.len(), model.events.len());
        for (event, (sequence, (entity, payload, redacted))) in got.iter().zip(&model.events) {
            prop_assert_eq!(event.sequence(), *sequence);
            prop_assert_eq!(event.coordinate.entity(), entity.as_str());
            prop_assert_eq!(event.redacted, *redacted);
            if *redacted {
                prop_assert_eq!(&event.payload, &serde_json::Value::Null);
            } else {
                prop_assert_eq!(&event.payload, payload);
            }
        }
        for (entity, clock) in &model.clocks {
            prop_assert_eq!(store.entity_clock(entity), *clock);
        }
        prop_assert_eq!(store.stats().events, model.events.len() as u64);
        Ok(())
    }

    /// Drains a lossy subscription: every event it delivered was appended
    /// while it listened, none twice, in sequence order, and it never
    /// accounts for more events than were appended.
    fn check_subscription(
        subscription: batpak::Subscription,
        appended: &[u64],
    ) -> Result<(), TestCaseError> {
        let mut got = Vec::new();
        while let Ok(event) = subscription.recv_timeout(std::time::Duration::from_millis(50)) {
            got.push(event.sequence());
        }
        prop_assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "in order, once: {:?}",
            got
        );
        for sequence in &got {
            prop_assert!(
                appended.binary_search(sequence).is_ok(),
                "phantom event {}",
                sequence
            );
        }
        prop_assert!(subscription.delivered() + subscription.dropped() <= appended.len() as u64);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn compaction_cursors_and_subscriptions_match_a_model_of_removal_and_redaction(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let config = || StoreConfig::new(dir.path()).with_segment_max_bytes(4096);
            let mut store = Some(Store::open(config()).unwrap());
            let mut model = Model::default();
            let mut counter = 0u64;
            // The named cursor and the next sequence it owes (the model's view).
            let mut cursor = Some(store.as_ref().unwrap().named_cursor("model", &Region::all()).unwrap());
            let mut owed = 0u64;
            // A lossy subscription: it may drop, but what it delivers must be
            // events appended while it listened, once each, in order.
            let mut subscription = Some(store.as_ref().unwrap().subscribe_lossy(&Region::all()));
            let mut appended_since: Vec<u64> = Vec::new();
            for op in ops {
                let live = store.as_ref().unwrap();
                match op {
                    Op::Append { entity, key } => {
                        counter += 1;
                        let payload = json!({"n": counter, "pad": "m".repeat(120)});
                        let mut options = AppendOptions::new();
                        if let Some(key) = key {
                            options = options.idempotency_key(format!("single-{key}"));
                        }
                        let coord = Coordinate::new(name(entity), "s").unwrap();
                        let receipt = live.append_with_options(&coord, KIND, &payload, options).unwrap();
                        match key.and_then(|k| model.keys.get(&format!("single-{k}"))) {
                            Some(earlier) => prop_assert_eq!(&vec![receipt], earlier),
                            None => {
                                prop_assert_eq!(receipt.sequence, model.next);
                                model.next += 1;
                                let clock = model.clocks.entry(name(entity)).or_default();
                                *clock += 1;
                                prop_assert_eq!(receipt.clock, *clock);
                                model.events.insert(receipt.sequence, (name(entity), payload, false));
                                appended_since.push(receipt.sequence);
                                if let Some(key) = key {
                                    model.keys.insert(format!("single-{key}"), vec![receipt]);
                                }
                            }
                        }
                    }
                    Op::Batch { entities, key } => {
                        let mut batch = Batch::new();
                        if let Some(key) = key {
                            batch = batch.idempotency_key(format!("batch-{key}"));
                        }
                        let mut payloads = Vec::new();
                        for entity in &entities {
                            counter += 1;
                            let payload = json!({"n": counter, "pad": "m".repeat(120)});
                            let coord = Coordinate::new(name(*entity), "s").unwrap();
                            batch.push(BatchItem::new(&coord, KIND, &payload).unwrap());
                            payloads.push(payload);
                        }
                        let receipts = live.append_batch(&batch).unwrap();
                        match key.and_then(|k| model.keys.get(&format!("batch-{k}"))) {
                            Some(earlier) => prop_assert_eq!(&receipts, earlier),
                            None => {
                                for ((receipt, entity), payload) in receipts.iter().zip(&entities).zip(payloads) {
                                    prop_assert_eq!(receipt.sequence, model.next);
                                    model.next += 1;
                                    *model.clocks.entry(name(*entity)).or_default() += 1;
                                    model.events.insert(receipt.sequence, (name(*entity), payload, false));
                                    appended_since.push(receipt.sequence);
                                }
                                if let Some(key) = key {
                                    model.keys.insert(format!("batch-{key}"), receipts);
                                }
                            }
                        }
                    }
                    Op::DropEntity(entity) => {
                        live.compact(&Compaction::new().drop_entity(name(entity))).unwrap();
                        model.events.retain(|_, (e, _, _)| *e != name(entity));
                    }
                    Op::DropBefore(percent) => {
                        let bound = model.next * u64::from(percent) / 100;
                        live.compact(&Compaction::new().drop_before_sequence(bound)).unwrap();
                        model.events.retain(|s, _| *s >= bound);
                    }
                    Op::Redact(entity) => {
                        live.compact(&Compaction::new().redact_entity(name(entity))).unwrap();
                        for (e, _, redacted) in model.events.values_mut() {
                            if *e == name(entity) {
                                *redacted = true;
                            }
                        }
                    }
                    Op::Reopen => {
                        check_subscription(subscription.take().unwrap(), &appended_since)?;
                        appended_since.clear();
                        drop(cursor.take());
                        store.take().unwrap().close().unwrap();
                        store = Some(Store::open(config()).unwrap());
                        cursor = Some(store.as_ref().unwrap().named_cursor("model", &Region::all()).unwrap());
                        subscription = Some(store.as_ref().unwrap().subscribe_lossy(&Region::all()));
                    }
                    Op::Poll(max) => {
                        let live_cursor = cursor.as_mut().unwrap();
                        let got = live_cursor.poll_batch(usize::from(max)).unwrap();
                        let expected: Vec<u64> = model
                            .events
                            .range(owed..)
                            .take(usize::from(max))
                            .map(|(sequence, _)| *sequence)
                            .collect();
                        let delivered: Vec<u64> = got.iter().map(StoredEvent::sequence).collect();
                        prop_assert_eq!(&delivered, &expected, "cursor delivers every kept event once, in order");
                        for event in &got {
                            let (_, payload, redacted) = &model.events[&event.sequence()];
                            prop_assert_eq!(event.redacted, *redacted);
                            if !*redacted {
                                prop_assert_eq!(&event.payload, payload);
                            }
                        }
                        if let Some(last) = delivered.last() {
                            owed = last + 1;
                        }
                        live_cursor.commit().unwrap();
                    }
                }
                check(store.as_ref().unwrap(), &model)?;
            }
            check_subscription(subscription.take().unwrap(), &appended_since)?;
            drop(cursor.take());
            let live = store.take().unwrap();
            let report = live.verify().unwrap();
            prop_assert!(report.is_clean(), "{:#?}", report.damage);
            live.close().unwrap();
            let reopened = Store::open(config()).unwrap();
            check(&reopened, &model)?;
            prop_assert!(reopened.verify().unwrap().is_clean());
        }
    }
}

#[test]
fn a_rewrite_interrupted_before_its_commit_point_is_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    fill(&store, 0, 50);
    let before = all(&store);
    store.close().unwrap();
    let unfinished = dir.path().join("0000000000.segment.tmp");
    std::fs::write(&unfinished, b"half a segment").unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    assert!(!unfinished.exists());
    assert_eq!(store.open_report().removed_files, vec![unfinished]);
    assert_eq!(all(&store), before);
    drop(store);
    // A read-only open leaves such a file alone.
    let unfinished = dir.path().join("0000000001.segment.tmp");
    std::fs::write(&unfinished, b"half a segment").unwrap();
    let reader = Store::open_read_only(config(dir.path())).unwrap();
    assert!(unfinished.exists());
    assert!(reader.open_report().removed_files.is_empty());
}
