//! Live feeds: lossy subscriptions, guaranteed and named cursors, workers, reactors.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use batpak::feed::{FeedRecvError, WorkerExit};
use batpak::prelude::*;
use serde_json::json;

const NOISE: EventKind = EventKind::custom(0xF, 1);
const SIGNAL: EventKind = EventKind::custom(0xF, 2);
const FOLLOW_UP: EventKind = EventKind::custom(0xF, 3);
const PATIENCE: Duration = Duration::from_secs(20);

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "feeds").expect("valid coordinate")
}

/// Fast appends: durability is not what these tests are about.
fn open_relaxed(dir: &std::path::Path) -> Store {
    Store::open(StoreConfig::new(dir).with_sync_every_n_events(10_000)).expect("open")
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn all_sequences(store: &Store, region: &Region) -> Vec<u64> {
    store
        .query(region)
        .map(|e| e.expect("readable").header.sequence)
        .collect()
}

#[test]
fn lossy_subscriber_under_a_flood_of_unrelated_events_gets_every_matching_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_relaxed(dir.path());
    // The buffer holds the signals but not a thousandth of the noise: it only
    // works if filtering happens before buffering.
    let feed = store.subscribe_lossy_with_capacity(&Region::entity("signal"), 64);
    let signal = coord("signal");
    let mut expected = Vec::new();
    for round in 0..50 {
        for i in 0..400 {
            store
                .append(&coord(&format!("noise:{}", i % 7)), NOISE, &json!(i))
                .unwrap();
        }
        expected.push(
            store
                .append(&signal, SIGNAL, &json!(round))
                .unwrap()
                .sequence,
        );
    }
    wait_until("every signal was offered", || {
        feed.delivered() + feed.dropped() == 50
    });
    let received: Vec<u64> = std::iter::from_fn(|| feed.try_recv())
        .map(|e| e.header.sequence)
        .collect();
    assert_eq!(received, expected);
    assert_eq!(feed.dropped(), 0);
    store.close().unwrap();
}

#[test]
fn slow_subscriber_loses_notifications_and_its_drop_count_says_how_many() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_relaxed(dir.path());
    let feed = store.subscribe_lossy_with_capacity(&Region::all(), 8);
    let mut receipts = Vec::new();
    for i in 0..100 {
        receipts.push(store.append(&coord("busy"), SIGNAL, &json!(i)).unwrap());
    }
    wait_until("all 100 were offered", || {
        feed.delivered() + feed.dropped() == 100
    });
    assert_eq!(feed.delivered(), 8);
    assert_eq!(feed.dropped(), 92);
    // What was kept is the oldest, complete and in order.
    let kept: Vec<StoredEvent> = std::iter::from_fn(|| feed.try_recv()).collect();
    assert_eq!(kept.len(), 8);
    for (event, receipt) in kept.iter().zip(&receipts) {
        assert_eq!(event.header.event_id, receipt.event_id);
        assert_eq!(event.coordinate.entity(), "busy");
        assert_eq!(event.header.kind, SIGNAL);
    }
    // Once it has room again it receives new events.
    let late = store
        .append(&coord("busy"), SIGNAL, &json!("late"))
        .unwrap();
    let event = feed.recv_timeout(PATIENCE).unwrap();
    assert_eq!(event.header.event_id, late.event_id);
    assert_eq!(event.payload, json!("late"));
    assert_eq!(feed.dropped(), 92);
    store.close().unwrap();
}

#[test]
fn subscriptions_end_cleanly_when_the_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_relaxed(dir.path());
    let feed = store.subscribe_lossy(&Region::all());
    let other = store.subscribe_lossy(&Region::entity("x"));
    let iterating = {
        let consumer = std::thread::spawn(move || feed.into_iter().count());
        store.append(&coord("x"), SIGNAL, &json!(1)).unwrap();
        store.append(&coord("y"), SIGNAL, &json!(2)).unwrap();
        // Everything committed before the close is still delivered.
        store.close().unwrap();
        consumer
    };
    assert_eq!(
        iterating.join().unwrap(),
        2,
        "iteration ends after the close"
    );
    assert_eq!(other.recv().map(|e| e.payload), Some(json!(1)));
    assert_eq!(
        other.recv_timeout(PATIENCE).unwrap_err(),
        FeedRecvError::Ended
    );
    assert!(other.recv().is_none());
    assert!(other.is_ended());
}

#[test]
fn dropped_subscriptions_do_not_block_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_relaxed(dir.path());
    let first = store.subscribe_lossy(&Region::all());
    drop(first);
    let second = store.subscribe_lossy(&Region::all());
    store.append(&coord("x"), SIGNAL, &json!(1)).unwrap();
    assert_eq!(second.recv_timeout(PATIENCE).unwrap().payload, json!(1));
    drop(second);
    // A new subscriber after all others left still works (the dispatcher
    // restarts if it had stopped).
    std::thread::sleep(Duration::from_millis(1200));
    let third = store.subscribe_lossy(&Region::all());
    store.append(&coord("x"), SIGNAL, &json!(2)).unwrap();
    assert_eq!(third.recv_timeout(PATIENCE).unwrap().payload, json!(2));
    store.close().unwrap();
}

#[test]
fn a_cursor_under_concurrent_writers_delivers_every_event_exactly_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(Store::open(StoreConfig::new(dir.path()).with_sync_every_n_events(100)).unwrap());
    const WRITERS: usize = 4;
    const EACH: usize = 400;
    let total = WRITERS * EACH;
    let mut everything = store.cursor_guaranteed(&Region::all());
    let mut writer_zero = store.cursor_guaranteed(&Region::entity_prefix("writer-0:"));
    let consumer = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut zero = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        while all.len() < total && Instant::now() < deadline {
            for event in everything
                .wait_batch(97, Duration::from_millis(200))
                .unwrap()
            {
                all.push(event.header.sequence);
            }
            for event in writer_zero.poll_batch(13).unwrap() {
                zero.push(event.header.sequence);
            }
        }
        for event in writer_zero.by_ref() {
            zero.push(event.unwrap().header.sequence);
        }
        assert!(everything.poll_batch(1000).unwrap().is_empty());
        (all, zero)
    });
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let entity = format!("writer-{w}:{}", i % 5);
                    store.append(&coord(&entity), SIGNAL, &json!(i)).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let (all, zero) = consumer.join().unwrap();
    assert_eq!(all, all_sequences(&store, &Region::all()));
    assert_eq!(all, (0..total as u64).collect::<Vec<_>>());
    assert_eq!(
        zero,
        all_sequences(&store, &Region::entity_prefix("writer-0:"))
    );
    assert_eq!(zero.len(), EACH);
    Arc::try_unwrap(store).unwrap().close().unwrap();
}

#[test]
fn cursors_start_anywhere_and_wait_without_losing_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_relaxed(dir.path());
    for i in 0..10 {
        store.append(&coord("a"), SIGNAL, &json!(i)).unwrap();
    }
    let from_five: Vec<u64> = store
        .cursor_guaranteed(&Region::all())
        .from_sequence(5)
        .map(|e| e.unwrap().header.sequence)
        .collect();
    assert_eq!(from_five, vec![5, 6, 7, 8, 9]);
    let after_five: Vec<u64> = store
        .cursor_guaranteed(&Region::all())
        .after(5)
        .map(|e| e.unwrap().header.sequence)
        .collect();
    assert_eq!(after_five, vec![6, 7, 8, 9]);
    let mut live = store.cursor_guaranteed(&Region::all()).from_now();
    assert_eq!(live.position(), 10);
    let started = Instant::now();
    assert!(live
        .next_timeout(Duration::from_millis(100))
        .unwrap()
        .is_none());
    assert!(started.elapsed() >= Duration::from_millis(100));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            store.append(&coord("a"), SIGNAL, &json!("woken")).unwrap();
        });
        let event = live
            .next_timeout(PATIENCE)
            .unwrap()
            .expect("woken by the append");
        assert_eq!(event.payload, json!("woken"));
    });
    store.close().unwrap();
    // After the close, a waiting cursor learns that nothing more will come.
    assert!(matches!(
        live.wait_batch(10, PATIENCE),
        Err(StoreError::Closed)
    ));
}

#[test]
fn feeds_see_a_batch_only_once_it_is_committed_and_all_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_relaxed(dir.path()));
    const BATCHES: u64 = 200;
    const ITEMS: u64 = 5;
    let feed = store.subscribe_lossy_with_capacity(&Region::all(), 10_000);
    let mut cursor = store.cursor_guaranteed(&Region::all());
    let reader = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            let mut seen = 0;
            while seen < BATCHES * ITEMS {
                let poll = cursor.wait_batch(100_000, PATIENCE).unwrap();
                assert!(!poll.is_empty(), "timed out");
                let mut per_batch: BTreeMap<u64, u64> = BTreeMap::new();
                for event in &poll {
                    *per_batch
                        .entry(event.payload["batch"].as_u64().unwrap())
                        .or_default() += 1;
                }
                assert!(
                    per_batch.values().all(|&n| n == ITEMS),
                    "a poll returned part of a batch: {per_batch:?}"
                );
                seen += poll.len() as u64;
            }
            // The subscriber: when the first item of a batch arrives, every
            // item of it is already readable.
            for _ in 0..BATCHES {
                let first = feed.recv_timeout(PATIENCE).unwrap();
                assert_eq!(first.payload["item"], 0);
                for k in 1..ITEMS {
                    let sibling = store
                        .get_by_sequence(first.header.sequence + k)
                        .unwrap()
                        .expect("the rest of the batch is committed");
                    assert_eq!(sibling.payload["batch"], first.payload["batch"]);
                    let next = feed.recv_timeout(PATIENCE).unwrap();
                    assert_eq!(next.header.sequence, first.header.sequence + k);
                }
            }
            assert_eq!(feed.dropped(), 0);
        })
    };
    for b in 0..BATCHES {
        let mut batch = Batch::new();
        for k in 0..ITEMS {
            batch
                .add(
                    &coord(&format!("b:{k}")),
                    SIGNAL,
                    &json!({"batch": b, "item": k}),
                )
                .unwrap();
        }
        store.append_batch(&batch).unwrap();
        if b == BATCHES / 2 {
            // A batch that fails is never seen by any feed.
            let mut doomed = Batch::new();
            doomed
                .add(
                    &coord("b:0"),
                    SIGNAL,
                    &json!({"batch": "doomed", "item": 0}),
                )
                .unwrap();
            doomed.push(
                BatchItem::new(
                    &coord("b:1"),
                    SIGNAL,
                    &json!({"batch": "doomed", "item": 1}),
                )
                .unwrap()
                .expect_clock(999),
            );
            assert!(store.append_batch(&doomed).is_err());
        }
    }
    reader.join().unwrap();
    Arc::try_unwrap(store).unwrap().close().unwrap();
}

#[test]
fn a_named_cursor_resumes_from_its_last_commit_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_relaxed(dir.path());
        for i in 0..10 {
            store.append(&coord("a"), SIGNAL, &json!(i)).unwrap();
        }
        let mut cursor = store.named_cursor("billing", &Region::all()).unwrap();
        assert_eq!(cursor.poll_batch(4).unwrap().len(), 4);
        cursor.commit().unwrap();
        assert_eq!(cursor.committed_position(), 4);
        // Delivered but not committed: delivered again after the restart.
        assert_eq!(cursor.poll_batch(3).unwrap().len(), 3);
        assert!(
            store.named_cursor("billing", &Region::all()).is_err(),
            "one handle per name"
        );
        drop(cursor);
        assert_eq!(store.named_cursors().unwrap(), vec!["billing".to_string()]);
        store.close().unwrap();
    }
    let store = open_relaxed(dir.path());
    let mut cursor = store.named_cursor("billing", &Region::all()).unwrap();
    assert_eq!(cursor.position(), 4);
    let rest: Vec<_> = cursor
        .poll_batch(100)
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(rest, (4..10).map(|i| json!(i)).collect::<Vec<_>>());
    cursor.commit().unwrap();
    drop(cursor);
    store.close().unwrap();
}

#[test]
fn a_commit_makes_the_events_it_covers_durable_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_relaxed(dir.path());
    for i in 0..5 {
        store.append(&coord("a"), SIGNAL, &json!(i)).unwrap();
    }
    assert!(store.durable_sequence().is_none_or(|d| d < 4));
    let mut cursor = store.named_cursor("c", &Region::all()).unwrap();
    cursor.poll_batch(10).unwrap();
    cursor.commit().unwrap();
    assert_eq!(store.durable_sequence(), Some(4));
    drop(cursor);
    store.close().unwrap();
}

#[test]
fn a_damaged_cursor_file_is_an_error_never_a_silent_reset() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_relaxed(dir.path());
    for i in 0..3 {
        store.append(&coord("a"), SIGNAL, &json!(i)).unwrap();
    }
    let mut cursor = store.named_cursor("fragile", &Region::all()).unwrap();
    cursor.poll_batch(2).unwrap();
    cursor.commit().unwrap();
    drop(cursor);
    let path = dir.path().join("cursors").join("fragile");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[17] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    match store.named_cursor("fragile", &Region::all()) {
        Err(StoreError::Corrupt { file, .. }) => assert_eq!(file, path),
        other => panic!("expected a corrupt-file error, got {other:?}"),
    }
    std::fs::write(&path, b"hello, I am not a cursor").unwrap();
    assert!(matches!(
        store.named_cursor("fragile", &Region::all()),
        Err(StoreError::ForeignFile { .. })
    ));
    // Starting over is a deliberate act.
    store.remove_named_cursor("fragile").unwrap();
    let cursor = store.named_cursor("fragile", &Region::all()).unwrap();
    assert_eq!(cursor.position(), 0);
    assert!(matches!(
        store.named_cursor("../escape", &Region::all()),
        Err(StoreError::InvalidInput { .. })
    ));
    drop(cursor);
    store.close().unwrap();
}

#[test]
fn a_worker_restarts_after_its_handler_panics_and_resumes_from_the_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_relaxed(dir.path());
    for i in 0..20 {
        store.append(&coord("job"), SIGNAL, &json!(i)).unwrap();
    }
    let handled = Arc::new(Mutex::new(Vec::new()));
    let worker = {
        let handled = Arc::clone(&handled);
        let mut panicked = false;
        let cursor = store.named_cursor("jobs", &Region::all()).unwrap();
        let policy = WorkerPolicy::default()
            .with_batch_max(5)
            .with_backoff(Duration::from_millis(1), Duration::from_millis(5));
        CursorWorker::spawn(cursor, policy, move |batch| {
            for event in batch {
                if event.header.sequence == 7 && !panicked {
                    panicked = true;
                    panic!("simulated handler crash at sequence 7");
                }
                handled.lock().unwrap().push(event.header.sequence);
            }
            Ok(())
        })
        .unwrap()
    };
    wait_until("the worker committed everything", || {
        worker.committed_position() == 20
    });
    worker.stop();
    let report = worker.join();
    assert!(
        matches!(report.exit, WorkerExit::Stopped),
        "{:?}",
        report.exit
    );
    assert_eq!(report.restarts, 1);
    assert_eq!(report.committed_position, 20);
    assert_eq!(report.events, 20);
    // The failed batch (5..10) was delivered again from its start.
    let handled = handled.lock().unwrap().clone();
    let mut expected: Vec<u64> = (0..7).collect();
    expected.extend(5..20);
    assert_eq!(handled, expected);
    // The committed position is durable.
    let cursor = store.named_cursor("jobs", &Region::all()).unwrap();
    assert_eq!(cursor.position(), 20);
    drop(cursor);
    store.close().unwrap();
}

#[test]
fn a_worker_gives_up_after_too_many_consecutive_failures() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_relaxed(dir.path());
    store.append(&coord("job"), SIGNAL, &json!(0)).unwrap();
    let policy = WorkerPolicy::default()
        .with_max_restarts(2)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(2));
    let mut calls = 0;
    let worker = CursorWorker::spawn(store.cursor_guaranteed(&Region::all()), policy, move |_| {
        calls += 1;
        Err(format!("failure number {calls}").into())
    })
    .unwrap();
    let report = worker.join();
    match report.exit {
        WorkerExit::GaveUp { last_error } => assert!(last_error.contains("failure number 3")),
        other => panic!("expected GaveUp, got {other:?}"),
    }
    assert_eq!(report.restarts, 2);
    assert_eq!(report.committed_position, 0);
    store.close().unwrap();
}

#[test]
fn a_worker_ends_when_the_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_relaxed(dir.path());
    let worker = CursorWorker::spawn(
        store.cursor_guaranteed(&Region::all()),
        WorkerPolicy::default(),
        |_| Ok(()),
    )
    .unwrap();
    store.append(&coord("a"), SIGNAL, &json!(0)).unwrap();
    store.close().unwrap();
    let report = worker.join();
    assert!(
        matches!(report.exit, WorkerExit::StoreClosed),
        "{:?}",
        report.exit
    );
    assert_eq!(report.events, 1);
}

#[test]
fn a_reactor_sets_causal_links_stops_cleanly_and_leaves_close_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let signals = Region::all().with_kind(KindFilter::Exact(SIGNAL));
    let react = |trigger: &StoredEvent, reactions: &mut Reactions| {
        let target = coord(&format!("reply:{}", trigger.coordinate.entity()));
        reactions.emit(&target, FOLLOW_UP, &json!({"to": trigger.payload}))?;
        Ok(())
    };
    let mut triggers = Vec::new();
    {
        let store = Arc::new(open_relaxed(dir.path()));
        let reactor = Reactor::spawn(
            Arc::clone(&store),
            "replies",
            &signals,
            WorkerPolicy::default(),
            react,
        )
        .unwrap();
        for i in 0..10 {
            triggers.push(
                store
                    .append(&coord(&format!("msg:{i}")), SIGNAL, &json!(i))
                    .unwrap(),
            );
        }
        let last = triggers.last().unwrap().sequence;
        wait_until("the reactor caught up", || {
            reactor.committed_position() > last
        });
        reactor.stop();
        let report = reactor.join();
        assert_eq!(report.events, 10);
        let store = Arc::try_unwrap(store).expect("the reactor released the store");
        store.close().unwrap();
    }
    // Restarted, the reactor resumes after what it handled: no duplicates.
    let store = Arc::new(open_relaxed(dir.path()));
    let extra = store
        .append(&coord("msg:extra"), SIGNAL, &json!("extra"))
        .unwrap();
    triggers.push(extra);
    let reactor = Reactor::spawn(
        Arc::clone(&store),
        "replies",
        &signals,
        WorkerPolicy::default(),
        react,
    )
    .unwrap();
    wait_until("the restarted reactor caught up", || {
        reactor.committed_position() > extra.sequence
    });
    reactor.stop();
    reactor.join();
    let follow_ups: Vec<StoredEvent> = store
        .query(&Region::all().with_kind(KindFilter::Exact(FOLLOW_UP)))
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(follow_ups.len(), triggers.len());
    for trigger in &triggers {
        let replies: Vec<&StoredEvent> = follow_ups
            .iter()
            .filter(|f| f.header.causation_id == Some(trigger.event_id))
            .collect();
        assert_eq!(replies.len(), 1, "exactly one reply per trigger");
        assert_eq!(replies[0].header.correlation_id, trigger.event_id);
    }
    Arc::try_unwrap(store).unwrap().close().unwrap();
}

/// Every append wakes a thread blocked in `wait_for_new_events` at once. In
/// a ping-pong of 2,000 appends (every tenth durable, so the sync thread
/// publishes it), each append waits until the waiter has seen the one
/// before, so a lost wake-up would leave the waiter asleep for its whole
/// timeout; none does. The waiter is sometimes already asleep when the
/// append lands and sometimes not yet, so both orders are covered.
#[test]
fn every_append_wakes_a_waiter_for_new_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_relaxed(dir.path());
    let rounds = 2_000u64;
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<u64>();
    std::thread::scope(|scope| {
        let store = &store;
        scope.spawn(move || {
            for known in 0..rounds {
                let started = Instant::now();
                let visible = store.wait_for_new_events(known, PATIENCE);
                assert!(
                    started.elapsed() < PATIENCE / 2,
                    "the wake-up for event {known} was lost"
                );
                assert!(visible > known, "woke with {visible} visible, knew {known}");
                seen_tx.send(visible).expect("send");
            }
        });
        for i in 0..rounds {
            let options = if i % 10 == 9 {
                AppendOptions::new().durable()
            } else {
                AppendOptions::new()
            };
            store
                .append_with_options(&coord("ping"), NOISE, &json!({ "i": i }), options)
                .expect("append");
            let seen = seen_rx.recv_timeout(PATIENCE).expect("the waiter saw it");
            assert_eq!(seen, i + 1);
        }
    });
}
