//! Atomic batches: all-or-nothing, intra-batch causation, per-item CAS,
//! idempotency and limits.

use batpak::prelude::*;
use serde_json::json;

const PLACED: EventKind = EventKind::custom(1, 1);
const RESERVED: EventKind = EventKind::custom(1, 2);

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "shop").unwrap()
}

#[test]
fn a_batch_commits_across_entities_with_consecutive_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    store
        .append(&coord("stock:apple"), RESERVED, &json!({"qty": 10}))
        .unwrap();
    let mut batch = Batch::new();
    let order = batch
        .add(&coord("order:1"), PLACED, &json!({"item": "apple"}))
        .unwrap();
    batch.push(
        BatchItem::new(&coord("stock:apple"), RESERVED, &json!({"qty": -1}))
            .unwrap()
            .caused_by_item(order)
            .expect_clock(1),
    );
    batch.push(
        BatchItem::new(&coord("order:1"), PLACED, &json!({"confirmed": true}))
            .unwrap()
            .caused_by_item(1)
            .expect_clock(1),
    );
    let receipts = store.append_batch(&batch).unwrap();
    assert_eq!(
        receipts
            .iter()
            .map(|r| (r.sequence, r.clock))
            .collect::<Vec<_>>(),
        vec![(1, 1), (2, 2), (3, 2)]
    );
    let order_event = store.get(receipts[0].event_id).unwrap().unwrap();
    let stock_event = store.get(receipts[1].event_id).unwrap().unwrap();
    let confirm = store.get(receipts[2].event_id).unwrap().unwrap();
    assert_eq!(stock_event.header.causation_id, Some(receipts[0].event_id));
    assert_eq!(confirm.header.causation_id, Some(receipts[1].event_id));
    // Items caused by an earlier item inherit its correlation.
    assert_eq!(order_event.header.correlation_id, receipts[0].event_id);
    assert_eq!(stock_event.header.correlation_id, receipts[0].event_id);
    assert_eq!(confirm.header.correlation_id, receipts[0].event_id);
    assert_eq!(
        store
            .query(&Region::all().with_correlation(receipts[0].event_id))
            .count(),
        3
    );
}

#[test]
fn one_failing_expectation_rejects_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let mut batch = Batch::new();
    batch.add(&coord("a"), PLACED, &1).unwrap();
    batch.push(
        BatchItem::new(&coord("a"), PLACED, &2)
            .unwrap()
            .expect_clock(1),
    );
    batch.push(
        BatchItem::new(&coord("b"), PLACED, &3)
            .unwrap()
            .expect_clock(5),
    );
    let error = store.append_batch(&batch).unwrap_err();
    match error {
        StoreError::BatchItem { index, source } => {
            assert_eq!(index, 2);
            assert!(matches!(
                *source,
                StoreError::ClockMismatch {
                    expected: 5,
                    actual: 0
                }
            ));
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(store.next_sequence(), 0);
    assert_eq!(store.entity_clock("a"), 0);
    // The same batch with the right expectation commits, from sequence 0.
    let mut batch = Batch::new();
    batch.add(&coord("a"), PLACED, &1).unwrap();
    batch.push(
        BatchItem::new(&coord("a"), PLACED, &2)
            .unwrap()
            .expect_clock(1),
    );
    assert_eq!(store.append_batch(&batch).unwrap()[0].sequence, 0);
}

#[test]
fn batch_idempotency_returns_all_original_receipts_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let make = || {
        let mut batch = Batch::new().idempotency_key("import-17");
        batch.add(&coord("a"), PLACED, &1).unwrap();
        batch.add(&coord("b"), PLACED, &2).unwrap();
        batch
    };
    let original = {
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        let original = store.append_batch(&make()).unwrap();
        assert_eq!(store.append_batch(&make()).unwrap(), original);
        store.close().unwrap();
        original
    };
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(store.append_batch(&make()).unwrap(), original);
    assert_eq!(store.next_sequence(), 2);
}

#[test]
fn limits_and_bad_items_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        StoreConfig::new(dir.path())
            .with_batch_max_items(3)
            .with_batch_max_bytes(1500)
            .with_payload_max_bytes(500),
    )
    .unwrap();
    assert!(matches!(
        store.append_batch(&Batch::new()),
        Err(StoreError::BatchRejected { .. })
    ));
    let mut too_many = Batch::new();
    for i in 0..4 {
        too_many.add(&coord("a"), PLACED, &i).unwrap();
    }
    assert!(matches!(
        store.append_batch(&too_many),
        Err(StoreError::BatchRejected { .. })
    ));
    let mut too_big = Batch::new();
    for _ in 0..3 {
        too_big.add(&coord("a"), PLACED, &"x".repeat(450)).unwrap();
    }
    assert!(matches!(
        store.append_batch(&too_big),
        Err(StoreError::BatchRejected { .. })
    ));
    let mut big_item = Batch::new();
    big_item.add(&coord("a"), PLACED, &"x".repeat(600)).unwrap();
    assert!(matches!(
        store.append_batch(&big_item),
        Err(StoreError::BatchItem { index: 0, source }) if matches!(*source, StoreError::PayloadTooLarge { .. })
    ));
    let mut reserved = Batch::new();
    reserved.add(&coord("a"), PLACED, &1).unwrap();
    reserved
        .add(&coord("a"), EventKind::custom(0, 1), &1)
        .unwrap();
    assert!(matches!(
        store.append_batch(&reserved),
        Err(StoreError::BatchItem { index: 1, source }) if matches!(*source, StoreError::ReservedKind { .. })
    ));
    let mut forward = Batch::new();
    forward.push(
        BatchItem::new(&coord("a"), PLACED, &1)
            .unwrap()
            .caused_by_item(1),
    );
    forward.add(&coord("a"), PLACED, &2).unwrap();
    assert!(matches!(
        store.append_batch(&forward),
        Err(StoreError::BatchItem { index: 0, source }) if matches!(*source, StoreError::InvalidInput { .. })
    ));
    assert_eq!(
        store.next_sequence(),
        0,
        "nothing was written by any rejected batch"
    );
}

#[test]
fn a_batch_is_never_split_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = || StoreConfig::new(dir.path()).with_segment_max_bytes(4096);
    let store = Store::open(config()).unwrap();
    for round in 0..20 {
        let mut batch = Batch::new();
        for i in 0..7 {
            batch
                .add(
                    &coord(&format!("e{i}")),
                    PLACED,
                    &json!({"round": round, "i": i, "pad": "p".repeat(60)}),
                )
                .unwrap();
        }
        store.append_batch(&batch).unwrap();
    }
    store.close().unwrap();
    // Every segment file holds whole batches: each starts at a multiple of 7.
    let store = Store::open(config()).unwrap();
    assert_eq!(store.next_sequence(), 140);
    assert!(store.stats().segments > 3);
}
