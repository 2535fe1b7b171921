//! A named cursor's consumer is SIGKILLed; the next consumer resumes from the
//! last committed position, and together they handle every event (at least once).
//!
//! The consumer is this test binary itself, run as a child process in the
//! mode selected by `BATPAK_FEED_CHILD_DIR` (see `child_consumer`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use batpak::prelude::*;
use serde_json::json;

const CHILD_DIR_VAR: &str = "BATPAK_FEED_CHILD_DIR";
const EVENTS: u64 = 300;
const CURSOR: &str = "consumer";

/// The child: consumes in batches of 10, printing what it handled and what it
/// committed, slowly enough to be killed in the middle.
#[test]
#[ignore = "child process of named_cursor_resumes_after_the_consumer_is_killed"]
fn child_consumer() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let store = Store::open(StoreConfig::new(dir)).expect("child open");
    let mut cursor = store.named_cursor(CURSOR, &Region::all()).expect("cursor");
    loop {
        let batch = cursor
            .wait_batch(10, Duration::from_secs(60))
            .expect("poll");
        for event in &batch {
            println!("handled {}", event.header.sequence);
        }
        cursor.commit().expect("commit");
        println!("committed {}", cursor.committed_position());
        std::thread::sleep(Duration::from_millis(15));
    }
}

#[test]
fn named_cursor_resumes_after_the_consumer_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store =
            Store::open(StoreConfig::new(dir.path()).with_sync_every_n_events(1000)).unwrap();
        let coord = Coordinate::new("ledger", "kill").unwrap();
        for i in 0..EVENTS {
            store
                .append(&coord, EventKind::custom(0xF, 1), &json!(i))
                .unwrap();
        }
        store.close().unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_consumer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut handled = BTreeSet::new();
    let mut last_committed = 0;
    let mut commits = 0;
    let record = |line: &str, handled: &mut BTreeSet<u64>, last_committed: &mut u64| {
        // libtest may print "test child_consumer ... " before the first line.
        if let Some((_, n)) = line.split_once("handled ") {
            handled.insert(n.parse::<u64>().unwrap());
        } else if let Some((_, n)) = line.split_once("committed ") {
            *last_committed = n.parse().unwrap();
            return true;
        }
        false
    };
    // Let it commit a few times, then kill it without warning.
    while commits < 4 {
        let line = lines.next().expect("child output").unwrap();
        if record(&line, &mut handled, &mut last_committed) {
            commits += 1;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Whatever it printed before dying counts too.
    for line in lines {
        record(&line.unwrap(), &mut handled, &mut last_committed);
    }
    assert!(
        last_committed > 0 && last_committed < EVENTS,
        "killed mid-way"
    );

    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let mut cursor = store.named_cursor(CURSOR, &Region::all()).unwrap();
    let resumed_at = cursor.position();
    // At least the last commit it reported; at most one batch more (a commit
    // that landed but was not reported before the kill).
    assert!(
        resumed_at >= last_committed && resumed_at <= last_committed + 10,
        "resumed at {resumed_at}, last reported commit {last_committed}"
    );
    assert!(
        (0..resumed_at).all(|s| handled.contains(&s)),
        "every committed event was handled by the killed consumer: resumed at {resumed_at}, handled {handled:?}"
    );
    let mut rest = Vec::new();
    loop {
        let batch = cursor.poll_batch(64).unwrap();
        if batch.is_empty() {
            break;
        }
        rest.extend(batch.into_iter().map(|e| e.header.sequence));
    }
    assert_eq!(rest, (resumed_at..EVENTS).collect::<Vec<_>>());
    cursor.commit().unwrap();
    drop(cursor);
    store.close().unwrap();
}
