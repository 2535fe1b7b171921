//! The append path: sequences, clocks, CAS, idempotency, limits, reads.

use batpak::prelude::*;
use serde_json::json;

const MOVED: EventKind = EventKind::custom(0xF, 1);

fn open(dir: &std::path::Path) -> Store {
    Store::open(StoreConfig::new(dir)).expect("open")
}

/// A relaxed store whose interval sync never comes during a test: only the
/// cadence, explicit syncs and durable appends sync it.
fn open_relaxed(dir: &std::path::Path, sync_every_n_events: u32) -> Store {
    Store::open(
        StoreConfig::new(dir)
            .with_sync_every_n_events(sync_every_n_events)
            .with_sync_interval(std::time::Duration::from_secs(3600)),
    )
    .expect("open")
}

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "scope").expect("valid coordinate")
}

#[test]
fn sequences_are_gapless_from_zero_and_clocks_count_per_entity() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = coord("a");
    let b = coord("b");
    let r0 = store.append(&a, MOVED, &json!(0)).unwrap();
    let r1 = store.append(&b, MOVED, &json!(1)).unwrap();
    let r2 = store.append(&a, MOVED, &json!(2)).unwrap();
    assert_eq!((r0.sequence, r0.clock), (0, 1));
    assert_eq!((r1.sequence, r1.clock), (1, 1));
    assert_eq!((r2.sequence, r2.clock), (2, 2));
    assert!(
        r0.event_id < r1.event_id && r1.event_id < r2.event_id,
        "ids follow sequence order"
    );
    assert_eq!(store.entity_clock("a"), 2);
    assert_eq!(store.entity_clock("nobody"), 0);
    let stream: Vec<_> = store.stream("a").map(|e| e.unwrap().payload).collect();
    assert_eq!(stream, vec![json!(0), json!(2)]);
    store.close().unwrap();
}

#[test]
fn reads_return_exactly_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = Coordinate::new("player:alice", "room:dungeon").unwrap();
    let payload = json!({"x": 10, "y": 20, "name": "ålice", "tags": ["a", "b"], "n": null});
    let cause = store.append(&c, MOVED, &json!("cause")).unwrap();
    let receipt = store
        .append_with_options(
            &c,
            MOVED,
            &payload,
            AppendOptions::new()
                .causation_id(cause.event_id)
                .correlation_id(cause.event_id)
                .flags(0x8001),
        )
        .unwrap();
    let event = store.get(receipt.event_id).unwrap().expect("present");
    assert_eq!(event.payload, payload);
    assert_eq!(event.coordinate, c);
    assert_eq!(event.header.event_id, receipt.event_id);
    assert_eq!(event.header.sequence, receipt.sequence);
    assert_eq!(event.header.clock, receipt.clock);
    assert_eq!(event.header.kind, MOVED);
    assert_eq!(event.header.flags, 0x8001);
    assert_eq!(event.header.causation_id, Some(cause.event_id));
    assert_eq!(event.header.correlation_id, cause.event_id);
    assert_eq!(event.hash, receipt.hash);
    let root = store.get(cause.event_id).unwrap().unwrap();
    assert_eq!(
        root.header.correlation_id, cause.event_id,
        "default correlation is the event itself"
    );
    assert_eq!(root.header.causation_id, None);
    assert_eq!(
        store.get_by_sequence(1).unwrap().unwrap().header.event_id,
        receipt.event_id
    );
    assert!(store.get_by_sequence(2).unwrap().is_none());
    let typed: StoredEvent<String> = store.get_typed(cause.event_id).unwrap().unwrap();
    assert_eq!(typed.payload, "cause");
    store.close().unwrap();
}

/// Iterators read the active segment ahead in large blocks. Every event must
/// still come back whole, in order and exactly once while another thread
/// appends (relaxed, so bytes reach the file in flushes of every size, and
/// the segment rotates under the readers), and after close and reopen.
#[test]
fn replays_of_the_active_segment_are_exact_while_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(dir.path())
        .with_sync_every_n_events(64)
        .with_segment_max_bytes(256 * 1024);
    let store = Store::open(config.clone()).unwrap();
    let total = 4_000u64;
    let payload = |i: u64| json!({"i": i, "pad": "x".repeat((i % 250) as usize)});
    let check = |store: &Store| -> u64 {
        let mut seen = 0u64;
        for event in store.query(&Region::all()) {
            let event = event.expect("every visible event reads back intact");
            assert_eq!(event.header.sequence, seen, "in order, none skipped");
            assert_eq!(event.payload, payload(seen));
            seen += 1;
        }
        seen
    };
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for i in 0..total {
                let entity = format!("e{}", i % 7);
                store.append(&coord(&entity), MOVED, &payload(i)).unwrap();
            }
        });
        while !writer.is_finished() {
            check(&store);
        }
    });
    assert_eq!(check(&store), total);
    assert!(
        store.stats().segments > 3,
        "the log rotated under the readers"
    );
    store.close().unwrap();
    let store = Store::open(config).unwrap();
    assert_eq!(check(&store), total);
    store.close().unwrap();
}

#[cfg(feature = "blake3")]
#[test]
fn receipts_carry_the_hash_chain_link() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let r1 = store.append(&coord("a"), MOVED, &1).unwrap();
    let r2 = store.append(&coord("a"), MOVED, &1).unwrap();
    assert!(r1.hash.is_some() && r2.hash.is_some());
    assert_ne!(
        r1.hash, r2.hash,
        "same payload, different position: different link"
    );
}

#[cfg(not(feature = "blake3"))]
#[test]
fn without_blake3_hashes_are_absent_not_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let r = store.append(&coord("a"), MOVED, &1).unwrap();
    assert_eq!(r.hash, None);
    assert_eq!(store.get(r.event_id).unwrap().unwrap().hash, None);
}

#[test]
fn expect_clock_distinguishes_empty_from_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = coord("a");
    let mismatch = store
        .append_with_options(&a, MOVED, &1, AppendOptions::new().expect_clock(1))
        .unwrap_err();
    assert!(matches!(
        mismatch,
        StoreError::ClockMismatch {
            expected: 1,
            actual: 0
        }
    ));
    store
        .append_with_options(&a, MOVED, &1, AppendOptions::new().expect_clock(0))
        .unwrap();
    let again = store
        .append_with_options(&a, MOVED, &2, AppendOptions::new().expect_clock(0))
        .unwrap_err();
    assert!(matches!(
        again,
        StoreError::ClockMismatch {
            expected: 0,
            actual: 1
        }
    ));
    store
        .append_with_options(&a, MOVED, &2, AppendOptions::new().expect_clock(1))
        .unwrap();
    assert_eq!(store.stream("a").count(), 2, "failed CAS wrote nothing");
    assert_eq!(store.next_sequence(), 2);
}

#[test]
fn idempotent_retry_returns_the_original_receipt_even_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let a = coord("a");
    let original = {
        let store = open(dir.path());
        let original = store
            .append_with_options(
                &a,
                MOVED,
                &"first",
                AppendOptions::new().idempotency_key("k-1"),
            )
            .unwrap();
        let retry = store
            .append_with_options(
                &a,
                MOVED,
                &"first",
                AppendOptions::new().idempotency_key("k-1"),
            )
            .unwrap();
        assert_eq!(retry, original);
        assert_eq!(store.next_sequence(), 1);
        store.close().unwrap();
        original
    };
    let store = open(dir.path());
    let retry = store
        .append_with_options(
            &a,
            MOVED,
            &"first",
            AppendOptions::new().idempotency_key("k-1"),
        )
        .unwrap();
    assert_eq!(retry, original);
    let other = store
        .append_with_options(
            &a,
            MOVED,
            &"second",
            AppendOptions::new().idempotency_key("k-2"),
        )
        .unwrap();
    assert_eq!(other.sequence, 1);
    assert_eq!(store.next_sequence(), 2);
    let too_long = store
        .append_with_options(
            &a,
            MOVED,
            &1,
            AppendOptions::new().idempotency_key("x".repeat(256)),
        )
        .unwrap_err();
    assert!(matches!(too_long, StoreError::InvalidInput { .. }));
}

#[test]
fn reserved_kinds_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for kind in [EventKind::custom(0x0, 1), EventKind::custom(0xD, 0xFFF)] {
        let error = store.append(&coord("a"), kind, &1).unwrap_err();
        assert!(matches!(error, StoreError::ReservedKind { kind: k } if k == kind));
    }
    assert_eq!(store.next_sequence(), 0);
}

#[test]
fn oversized_payload_is_rejected_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path()).with_payload_max_bytes(100)).unwrap();
    let error = store
        .append(&coord("a"), MOVED, &"x".repeat(200))
        .unwrap_err();
    assert!(
        matches!(error, StoreError::PayloadTooLarge { max: 100, .. }),
        "{error}"
    );
    let bytes_before = store.stats().segment_bytes;
    assert_eq!(store.next_sequence(), 0);
    store.append(&coord("a"), MOVED, &"x".repeat(50)).unwrap();
    assert!(store.stats().segment_bytes > bytes_before);
}

#[test]
fn bad_coordinates_and_config_values_get_typed_errors() {
    assert!(matches!(
        Coordinate::new("a\u{0}", "s"),
        Err(CoordinateError::ControlCharacter { .. })
    ));
    assert!(matches!(
        Coordinate::new("a", "\n"),
        Err(CoordinateError::ControlCharacter { .. })
    ));
    assert!(matches!(
        Coordinate::new("x".repeat(1025), "s"),
        Err(CoordinateError::TooLong { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    for config in [
        StoreConfig::new(dir.path()).with_sync_every_n_events(0),
        StoreConfig::new(dir.path()).with_segment_max_bytes(10),
        StoreConfig::new(dir.path()).with_payload_max_bytes(0),
        StoreConfig::new(dir.path()).with_sync_interval(std::time::Duration::ZERO),
        StoreConfig::new(dir.path()).with_batch_max_items(0),
    ] {
        let error = Store::open(config).unwrap_err();
        assert!(matches!(error, StoreError::InvalidConfig { .. }), "{error}");
    }
}

#[test]
fn a_second_writer_gets_locked_and_the_lock_is_released_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let error = Store::open(StoreConfig::new(dir.path())).unwrap_err();
    assert!(matches!(error, StoreError::Locked { .. }), "{error}");
    store.close().unwrap();
    open(dir.path()).close().unwrap();
    // Dropping releases the lock too.
    drop(open(dir.path()));
    open(dir.path()).close().unwrap();
}

#[test]
fn submit_pipelines_appends_and_tickets_return_durable_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let tickets: Vec<_> = (0..50)
        .map(|i| {
            store
                .submit(&coord("a"), MOVED, &i, AppendOptions::new())
                .unwrap()
        })
        .collect();
    let receipts: Vec<_> = tickets.into_iter().map(|t| t.wait().unwrap()).collect();
    for (i, receipt) in receipts.iter().enumerate() {
        assert_eq!(receipt.sequence, i as u64);
    }
    assert_eq!(store.durable_sequence(), Some(49));
}

#[test]
fn durability_cadence_and_explicit_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_relaxed(dir.path(), 10);
    // Fewer than a quarter of the cadence: the background thread has no
    // reason to sync (it is asked at half, and skips its sleep from a
    // quarter on), so nothing is durable yet.
    for i in 0..2 {
        store.append(&coord("a"), MOVED, &i).unwrap();
    }
    assert_eq!(
        store.durable_sequence(),
        None,
        "relaxed appends wait for the cadence"
    );
    assert_eq!(store.stats().unsynced_events, 2);
    let durable = store
        .append_with_options(&coord("a"), MOVED, &2, AppendOptions::new().durable())
        .unwrap();
    assert!(store.durable_sequence() >= Some(durable.sequence));
    for i in 3..5 {
        store.append(&coord("a"), MOVED, &i).unwrap();
    }
    assert_eq!(store.durable_sequence(), Some(2));
    store.sync().unwrap();
    assert_eq!(store.durable_sequence(), Some(4));
    // The append that makes n events unsynced returns only once at most
    // n - 1 acknowledged events are unsynced.
    for i in 5..15 {
        store.append(&coord("a"), MOVED, &i).unwrap();
        assert!(store.stats().unsynced_events <= 9);
    }
    // Event 14 made ten unsynced (5..=14), so its append returned only once
    // event 5 was durable.
    assert!(store.durable_sequence() >= Some(5));
    // Relaxed appends are readable at once.
    let r = store.append(&coord("b"), MOVED, &"fresh").unwrap();
    assert_eq!(
        store.get(r.event_id).unwrap().unwrap().payload,
        json!("fresh")
    );
}

/// `stats()` counts the syncs that made events durable and the appends
/// whose callers had to wait for one.
#[test]
fn stats_count_syncs_and_the_appends_that_waited_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let fresh = store.stats();
    assert_eq!((fresh.syncs, fresh.sync_waits), (0, 0));
    assert_eq!(fresh.sync_wait_time, std::time::Duration::ZERO);
    // Durable appends from one thread: each waits for its own sync.
    for i in 0..5 {
        store.append(&coord("a"), MOVED, &i).unwrap();
    }
    let durable = store.stats();
    assert_eq!(durable.sync_waits, 5);
    assert_eq!(durable.syncs, 5);
    assert!(durable.sync_time > std::time::Duration::ZERO);
    assert!(durable.sync_wait_time >= durable.sync_time / 2);
    store.close().unwrap();

    // Relaxed appends below the cadence never wait; `Store::sync` is a sync
    // but no append waited for it.
    let dir = tempfile::tempdir().unwrap();
    let store = open_relaxed(dir.path(), 1_000);
    for i in 0..100 {
        store.append(&coord("a"), MOVED, &i).unwrap();
    }
    store.sync().unwrap();
    let relaxed = store.stats();
    assert_eq!(relaxed.sync_waits, 0);
    assert_eq!(relaxed.sync_wait_time, std::time::Duration::ZERO);
    assert_eq!(relaxed.syncs, 1);
    // An append that asks for durability waits like any durable one.
    store
        .append_with_options(&coord("a"), MOVED, &"now", AppendOptions::new().durable())
        .unwrap();
    let after = store.stats();
    assert_eq!((after.syncs, after.sync_waits), (2, 1));
}

#[test]
fn the_sync_interval_bounds_how_long_an_event_stays_unsynced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        StoreConfig::new(dir.path())
            .with_sync_every_n_events(1_000_000)
            .with_sync_interval(std::time::Duration::from_millis(20)),
    )
    .unwrap();
    store.append(&coord("a"), MOVED, &1).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.durable_sequence().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "interval sync never happened"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    store.close().unwrap();
}

#[test]
fn concurrent_durable_appenders_all_get_durable_distinct_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(dir.path()));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let r = store
                            .append(&coord(&format!("t{t}")), MOVED, &json!({"t": t, "i": i}))
                            .unwrap();
                        assert!(store.durable_sequence() >= Some(r.sequence));
                        r
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut sequences: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .map(|r| r.sequence)
        .collect();
    sequences.sort_unstable();
    assert_eq!(sequences, (0..400).collect::<Vec<_>>());
    for t in 0..8 {
        let payloads: Vec<i64> = store
            .stream(&format!("t{t}"))
            .map(|e| e.unwrap().payload["i"].as_i64().unwrap())
            .collect();
        assert_eq!(
            payloads,
            (0..50).collect::<Vec<_>>(),
            "per-entity order kept"
        );
    }
}

#[test]
fn rotation_spreads_the_log_over_segments_and_everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        StoreConfig::new(dir.path())
            .with_segment_max_bytes(4096)
            .with_sync_every_n_events(50)
    };
    let store = Store::open(config()).unwrap();
    let mut receipts = Vec::new();
    for i in 0..300 {
        receipts.push(
            store
                .append(&coord(&format!("e{}", i % 7)), MOVED, &json!({"i": i}))
                .unwrap(),
        );
    }
    assert!(store.stats().segments > 5, "{:?}", store.stats());
    store.close().unwrap();
    let store = Store::open(config()).unwrap();
    assert_eq!(store.next_sequence(), 300);
    for (i, receipt) in receipts.iter().enumerate() {
        let event = store.get(receipt.event_id).unwrap().unwrap();
        assert_eq!(event.payload, json!({"i": i}));
        assert_eq!(event.header.clock, receipt.clock);
    }
    let next = store
        .append(&coord("e0"), MOVED, &json!({"i": 300}))
        .unwrap();
    assert_eq!(next.sequence, 300);
    assert_eq!(next.clock, receipts[294].clock + 1);
    // Reopening does not leave empty segments behind.
    let segments = store.stats().segments;
    store.close().unwrap();
    let store = Store::open(config()).unwrap();
    assert_eq!(store.stats().segments, segments);
    store.close().unwrap();
    let store = Store::open(config()).unwrap();
    assert_eq!(store.stats().segments, segments);
}

#[test]
fn raw_iteration_yields_the_stored_json_bytes_and_decode_yields_types() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(&coord("a"), MOVED, &json!({"b": 1, "a": [true]}))
        .unwrap();
    store
        .append(&coord("a"), MOVED, &json!({"b": 2, "a": []}))
        .unwrap();
    let raw: Vec<_> = store
        .stream("a")
        .raw()
        .map(|e| e.unwrap().payload)
        .collect();
    assert_eq!(raw[0].as_bytes(), br#"{"a":[true],"b":1}"#);
    assert_eq!(
        raw[1].parse::<serde_json::Value>().unwrap(),
        json!({"b": 2, "a": []})
    );
    #[derive(serde::Deserialize)]
    struct Shape {
        b: u32,
    }
    let typed: Vec<u32> = store
        .stream("a")
        .decode::<Shape>()
        .map(|e| e.unwrap().payload.b)
        .collect();
    assert_eq!(typed, vec![1, 2]);
}
