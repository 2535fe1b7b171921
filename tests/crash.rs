//! Real crash tests: a child process appends durably (single events and
//! batches, across segment rotations) and is killed with SIGKILL at a random
//! moment; the parent reopens the store and checks that every acknowledged
//! event is present, in order, with intact per-entity clocks and hash chains,
//! and that no batch is partly present. Every other child appends with a
//! relaxed cadence instead (`sync_every_n_events(16)`, while the background
//! thread writes zeros ahead of the log): it may lose at most 15 of its
//! newest acknowledged events, and everything else holds as above.
//!
//! `cargo test` runs a short campaign (200 kills by default);
//! `cargo xtask chaos` sets `BATPAK_CRASH_KILLS` for a long one. Every
//! `BATPAK_CRASH_KILLS_PER_STORE` kills (default 250) the campaign starts
//! over in a fresh store: each check reads and verifies the whole store, so
//! one ever-growing store would make a long campaign quadratic.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use batpak::prelude::*;
use serde_json::json;

const CHILD_DIR: &str = "BATPAK_CRASH_CHILD_DIR";
const CHILD_SEED: &str = "BATPAK_CRASH_CHILD_SEED";
const CHILD_CADENCE: &str = "BATPAK_CRASH_CHILD_CADENCE";
/// `sync_every_n_events` of the relaxed children (every other kill).
const RELAXED_CADENCE: u32 = 16;
const SINGLE: EventKind = EventKind::custom(4, 1);
const BATCHED: EventKind = EventKind::custom(4, 2);

fn config(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir).with_segment_max_bytes(16 * 1024)
}

/// The relaxed children: larger segments, so the background thread writes
/// zeros ahead of the log while they append, and dies with them.
fn relaxed_config(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir)
        .with_segment_max_bytes(8 * 1024 * 1024)
        .with_sync_every_n_events(RELAXED_CADENCE)
}

/// The child: appends until killed, printing one line per acknowledged event.
#[test]
#[ignore = "run as a child process by the crash campaign"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let seed: u64 = std::env::var(CHILD_SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let cadence: u32 = std::env::var(CHILD_CADENCE)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = fastrand::Rng::with_seed(seed);
    let config = if cadence > 1 {
        relaxed_config(Path::new(&dir))
    } else {
        config(Path::new(&dir))
    };
    let store = Store::open(config).expect("child open");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for round in 0u64.. {
        let entity = format!("e{}", rng.u8(..8));
        if rng.u8(..10) < 7 {
            let payload =
                json!({"seed": seed, "round": round, "pad": "p".repeat(rng.usize(..200))});
            let receipt = store
                .append(
                    &Coordinate::new(&entity, "crash").unwrap(),
                    SINGLE,
                    &payload,
                )
                .expect("child append");
            writeln!(out, "A {} {} 0", receipt.sequence, receipt.event_id).unwrap();
        } else {
            let items = rng.usize(2..7);
            let mut batch = Batch::new();
            for i in 0..items {
                let entity = format!("e{}", rng.u8(..8));
                batch
                    .add(
                        &Coordinate::new(&entity, "crash").unwrap(),
                        BATCHED,
                        &json!({"seed": seed, "round": round, "i": i, "n": items}),
                    )
                    .unwrap();
            }
            let receipts = store.append_batch(&batch).expect("child batch");
            for receipt in receipts {
                writeln!(out, "A {} {} {items}", receipt.sequence, receipt.event_id).unwrap();
            }
        }
        out.flush().unwrap();
    }
}

/// Checks the reopened store against everything acknowledged so far. The
/// last child may have lost up to `may_lose` of its acknowledged events (a
/// relaxed cadence), only its newest ones; those are forgotten, since the
/// next child reuses their sequences.
fn check(
    dir: &Path,
    acknowledged: &mut BTreeMap<u64, EventId>,
    latest: &[u64],
    may_lose: usize,
) -> Result<u64, String> {
    let store = Store::open(config(dir)).map_err(|e| format!("reopen failed: {e}"))?;
    let events: Vec<StoredEvent> = store
        .query(&Region::all())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("read failed: {e}"))?;
    for (position, event) in events.iter().enumerate() {
        if event.header.sequence != position as u64 {
            return Err(format!("sequence gap at {position}"));
        }
    }
    let lost: Vec<u64> = latest
        .iter()
        .copied()
        .filter(|&sequence| sequence >= events.len() as u64)
        .collect();
    if lost.len() > may_lose {
        return Err(format!(
            "{} acknowledged events lost, at most {may_lose} may be",
            lost.len()
        ));
    }
    for sequence in &lost {
        acknowledged.remove(sequence);
    }
    for (&sequence, &id) in acknowledged.iter() {
        match events.get(sequence as usize) {
            Some(event) if event.header.event_id == id => {}
            Some(event) => {
                return Err(format!(
                    "acknowledged {id} at {sequence} but found {}",
                    event.header.event_id
                ))
            }
            None => return Err(format!("acknowledged event {id} at {sequence} is missing")),
        }
    }
    // Clocks count up by one per entity; chains link each event to the last.
    let mut clocks: HashMap<String, u64> = HashMap::new();
    for event in &events {
        let clock = clocks
            .entry(event.coordinate.entity().to_string())
            .or_insert(0);
        *clock += 1;
        if event.header.clock != *clock {
            return Err(format!(
                "entity {} clock {} after {}",
                event.coordinate,
                event.header.clock,
                *clock - 1
            ));
        }
    }
    #[cfg(feature = "blake3")]
    {
        let report = store.verify().map_err(|e| format!("verify failed: {e}"))?;
        if !report.is_clean() {
            return Err(format!("verify found damage: {report:?}"));
        }
    }
    // No partial batch: consecutive batch items (same round) are all there.
    let mut position = 0;
    while position < events.len() {
        let event = &events[position];
        if event.header.kind == BATCHED {
            let n = event.payload["n"].as_u64().unwrap_or(0) as usize;
            let round = &event.payload["round"];
            let seed = &event.payload["seed"];
            let whole = (0..n).all(|i| {
                events.get(position + i).is_some_and(|item| {
                    item.payload["i"] == json!(i)
                        && &item.payload["round"] == round
                        && &item.payload["seed"] == seed
                })
            });
            if !whole {
                return Err(format!("partial batch at sequence {position}"));
            }
            position += n;
        } else {
            position += 1;
        }
    }
    let count = events.len() as u64;
    store.close().map_err(|e| format!("close failed: {e}"))?;
    Ok(count)
}

#[test]
fn acknowledged_events_survive_sigkill() {
    let kills: u64 = std::env::var("BATPAK_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let base_seed: u64 = std::env::var("BATPAK_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED);
    println!(
        "crash campaign: {kills} kills, base seed {base_seed} (set BATPAK_CRASH_SEED to replay)"
    );
    let kills_per_store: u64 = std::env::var("BATPAK_CRASH_KILLS_PER_STORE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(250)
        .max(1);
    let mut dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = fastrand::Rng::with_seed(base_seed);
    let mut acknowledged: BTreeMap<u64, EventId> = BTreeMap::new();
    let started = Instant::now();
    // Events in the stores already finished, and in the current one.
    let mut stored_before = 0;
    let mut stored = 0;
    let mut acknowledged_total = 0;
    let mut stores = 1;
    for kill in 0..kills {
        if kill > 0 && kill % kills_per_store == 0 {
            acknowledged_total += acknowledged.len();
            acknowledged.clear();
            stored_before += stored;
            dir = tempfile::tempdir().unwrap();
            stores += 1;
        }
        let seed = base_seed.wrapping_mul(1_000_003).wrapping_add(kill);
        let cadence = if kill % 2 == 1 { RELAXED_CADENCE } else { 1 };
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_SEED, seed.to_string())
            .env(CHILD_CADENCE, cadence.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter(|line| line.starts_with("A "))
                .collect::<Vec<String>>()
        });
        std::thread::sleep(Duration::from_millis(rng.u64(5..60)));
        child.kill().expect("SIGKILL the child");
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let mut latest = Vec::new();
        for line in lines {
            let mut parts = line.split(' ');
            parts.next();
            let (Some(sequence), Some(id)) = (parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(sequence), Ok(id)) = (sequence.parse::<u64>(), id.parse::<EventId>()) else {
                continue; // a line torn by the kill
            };
            latest.push(sequence);
            if let Some(previous) = acknowledged.insert(sequence, id) {
                assert_eq!(
                    previous, id,
                    "seed {seed}: sequence {sequence} acknowledged twice with different ids"
                );
            }
        }
        let may_lose = cadence as usize - 1;
        match check(dir.path(), &mut acknowledged, &latest, may_lose) {
            Ok(count) => stored = count,
            Err(violation) => {
                println!(
                    "crash campaign: {} kills, {stores} stores, 1 violations",
                    kill + 1
                );
                panic!("kill {kill} (child seed {seed}): {violation}")
            }
        }
    }
    println!(
        "crash campaign: {kills} kills, {stores} stores, {} acknowledged events, {} stored, 0 violations, {:.1}s",
        acknowledged_total + acknowledged.len(),
        stored_before + stored,
        started.elapsed().as_secs_f64()
    );
    assert!(
        kills == 0 || acknowledged_total + acknowledged.len() > 0,
        "the children never acknowledged anything"
    );
}
