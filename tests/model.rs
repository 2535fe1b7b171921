//! Model check: random sequences of appends, batches, CAS, idempotent
//! retries and reopens, run against the store and against a simple in-memory
//! model; everything observable must agree.

use std::collections::HashMap;

use batpak::prelude::*;
use proptest::prelude::*;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
enum Op {
    Append {
        entity: u8,
        kind: u8,
        expect: Option<u8>,
        key: Option<u8>,
    },
    Batch {
        items: Vec<(u8, Option<u8>)>,
        key: Option<u8>,
    },
    Reopen,
    ReadBack,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, 0u8..3, proptest::option::weighted(0.3, 0u8..4), proptest::option::weighted(0.3, 0u8..6))
            .prop_map(|(entity, kind, expect, key)| Op::Append { entity, kind, expect, key }),
        2 => (proptest::collection::vec((0u8..4, proptest::option::weighted(0.2, 0u8..4)), 1..5), proptest::option::weighted(0.3, 0u8..6))
            .prop_map(|(items, key)| Op::Batch { items, key }),
        1 => Just(Op::Reopen),
        1 => Just(Op::ReadBack),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct ModelEvent {
    entity: String,
    kind: EventKind,
    payload: Value,
    clock: u64,
}

#[derive(Default)]
struct Model {
    events: Vec<ModelEvent>,
    clocks: HashMap<String, u64>,
    /// key -> receipts (sequence, clock) of the original unit
    keys: HashMap<String, Vec<(u64, u64)>>,
}

fn kind(k: u8) -> EventKind {
    EventKind::custom(1, u16::from(k))
}

fn check_reads(store: &Store, model: &Model, ids: &[EventId]) {
    assert_eq!(store.next_sequence(), model.events.len() as u64);
    let all: Vec<StoredEvent> = store.query(&Region::all()).map(Result::unwrap).collect();
    assert_eq!(all.len(), model.events.len());
    for (event, expected) in all.iter().zip(&model.events) {
        assert_eq!(event.coordinate.entity(), expected.entity);
        assert_eq!(event.header.kind, expected.kind);
        assert_eq!(event.payload, expected.payload);
        assert_eq!(event.header.clock, expected.clock);
    }
    for entity in 0..4 {
        let name = format!("e{entity}");
        let stream: Vec<Value> = store.stream(&name).map(|e| e.unwrap().payload).collect();
        let expected: Vec<Value> = model
            .events
            .iter()
            .filter(|e| e.entity == name)
            .map(|e| e.payload.clone())
            .collect();
        assert_eq!(stream, expected, "stream of {name}");
        assert_eq!(
            store.entity_clock(&name),
            model.clocks.get(&name).copied().unwrap_or(0)
        );
    }
    for k in 0..3 {
        let by_kind = store
            .query(&Region::all().with_kind(KindFilter::Exact(kind(k))))
            .count();
        assert_eq!(
            by_kind,
            model.events.iter().filter(|e| e.kind == kind(k)).count()
        );
    }
    for (sequence, id) in ids.iter().enumerate() {
        assert_eq!(
            store.get(*id).unwrap().unwrap().header.sequence,
            sequence as u64
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..40), cadence in prop_oneof![Just(1u32), Just(4u32)]) {
        let dir = tempfile::tempdir().unwrap();
        let config = || StoreConfig::new(dir.path()).with_sync_every_n_events(cadence).with_segment_max_bytes(4096);
        let mut store = Store::open(config()).unwrap();
        let mut model = Model::default();
        let mut ids: Vec<EventId> = Vec::new();
        let mut counter = 0u64;
        for op in ops {
            match op {
                Op::Append { entity, kind: k, expect, key } => {
                    counter += 1;
                    let name = format!("e{entity}");
                    let payload = json!({"n": counter});
                    let mut options = AppendOptions::new();
                    if let Some(expect) = expect { options = options.expect_clock(u64::from(expect)); }
                    let key = key.map(|k| format!("key-{k}"));
                    if let Some(key) = &key { options = options.idempotency_key(key.as_str()); }
                    let result = store.append_with_options(&Coordinate::new(&name, "m").unwrap(), kind(k), &payload, options);
                    let current = model.clocks.get(&name).copied().unwrap_or(0);
                    if let Some(original) = key.as_ref().and_then(|k| model.keys.get(k)) {
                        let receipt = result.unwrap();
                        prop_assert_eq!((receipt.sequence, receipt.clock), original[0]);
                    } else if expect.is_some_and(|e| u64::from(e) != current) {
                        match result {
                            Err(StoreError::ClockMismatch { expected, actual }) => {
                                prop_assert_eq!(expected, u64::from(expect.unwrap()));
                                prop_assert_eq!(actual, current);
                            }
                            other => prop_assert!(false, "expected mismatch, got {:?}", other),
                        }
                    } else {
                        let receipt = result.unwrap();
                        prop_assert_eq!(receipt.sequence, model.events.len() as u64);
                        prop_assert_eq!(receipt.clock, current + 1);
                        model.clocks.insert(name.clone(), current + 1);
                        model.events.push(ModelEvent { entity: name, kind: kind(k), payload, clock: current + 1 });
                        if let Some(key) = key { model.keys.insert(key, vec![(receipt.sequence, receipt.clock)]); }
                        ids.push(receipt.event_id);
                    }
                }
                Op::Batch { items, key } => {
                    let key = key.map(|k| format!("key-{k}"));
                    let mut batch = Batch::new();
                    if let Some(key) = &key { batch = batch.idempotency_key(key.as_str()); }
                    let mut planned = Vec::new();
                    let mut clocks = model.clocks.clone();
                    let mut failed_at = None;
                    for (position, (entity, expect)) in items.iter().enumerate() {
                        counter += 1;
                        let name = format!("e{entity}");
                        let payload = json!({"n": counter, "batch": true});
                        let mut item = BatchItem::new(&Coordinate::new(&name, "m").unwrap(), kind(0), &payload).unwrap();
                        let current = clocks.get(&name).copied().unwrap_or(0);
                        if let Some(expect) = expect {
                            item = item.expect_clock(u64::from(*expect));
                            if u64::from(*expect) != current && failed_at.is_none() { failed_at = Some(position); }
                        }
                        clocks.insert(name.clone(), current + 1);
                        planned.push(ModelEvent { entity: name, kind: kind(0), payload, clock: current + 1 });
                        batch.push(item);
                    }
                    let result = store.append_batch(&batch);
                    if let Some(original) = key.as_ref().and_then(|k| model.keys.get(k)) {
                        let receipts = result.unwrap();
                        let got: Vec<(u64, u64)> = receipts.iter().map(|r| (r.sequence, r.clock)).collect();
                        prop_assert_eq!(&got, original);
                    } else if let Some(position) = failed_at {
                        match result {
                            Err(StoreError::BatchItem { index, source }) => {
                                prop_assert_eq!(index, position);
                                let mismatch = matches!(*source, StoreError::ClockMismatch { .. });
                                prop_assert!(mismatch, "batch item failed for another reason");
                            }
                            other => prop_assert!(false, "expected batch failure, got {:?}", other),
                        }
                    } else {
                        let receipts = result.unwrap();
                        let first = model.events.len() as u64;
                        for (i, (receipt, event)) in receipts.iter().zip(&planned).enumerate() {
                            prop_assert_eq!(receipt.sequence, first + i as u64);
                            prop_assert_eq!(receipt.clock, event.clock);
                            ids.push(receipt.event_id);
                        }
                        if let Some(key) = key {
                            model.keys.insert(key, receipts.iter().map(|r| (r.sequence, r.clock)).collect());
                        }
                        model.clocks = clocks;
                        model.events.extend(planned);
                    }
                }
                Op::Reopen => {
                    store.close().unwrap();
                    store = Store::open(config()).unwrap();
                }
                Op::ReadBack => check_reads(&store, &model, &ids),
            }
        }
        check_reads(&store, &model, &ids);
        store.close().unwrap();
        let store = Store::open(config()).unwrap();
        check_reads(&store, &model, &ids);
        prop_assert!(store.verify().unwrap().is_clean());
    }
}
