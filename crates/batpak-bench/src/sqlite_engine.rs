//! The SQLite peer (`rusqlite`, bundled, WAL), doing the same work as batpak:
//! the same events, with an id, a per-entity clock and a timestamp, one row
//! per event.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, Statement, TransactionBehavior};

use crate::child::{signal_ready, OpenOutcome};
use crate::error::{io_err, BenchError, BenchResult};
use crate::fixture::{now_us, Fixture, SCOPE};
use crate::measure::{
    current_rss_bytes, disk_bytes, peak_rss_bytes, Latencies, RELAXED_LATENCY_SAMPLE,
};
use crate::report::Sample;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    sequence INTEGER PRIMARY KEY,
    id BLOB NOT NULL,
    entity TEXT NOT NULL,
    scope TEXT NOT NULL,
    kind INTEGER NOT NULL,
    clock INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_entity_clock ON events (entity, clock);
";

/// The clock is assigned inside the insert, under SQLite's write lock, as
/// batpak assigns it under its own.
const INSERT: &str = "INSERT INTO events (id, entity, scope, kind, clock, ts, payload)
VALUES (?1, ?2, ?3, ?4, (SELECT COALESCE(MAX(clock), 0) + 1 FROM events WHERE entity = ?2), ?5, ?6)";

const SELECT_ENTITY: &str = "SELECT sequence, id, entity, scope, kind, clock, ts, payload
FROM events WHERE entity = ?1 ORDER BY clock";

const SELECT_ALL: &str = "SELECT sequence, id, entity, scope, kind, clock, ts, payload
FROM events ORDER BY sequence";

/// How long a writer waits for the write lock before SQLite gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// `synchronous` setting of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// WAL synced at checkpoints only (relaxed).
    Normal,
    /// WAL synced at every commit (durable).
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// The database file inside a workload directory.
pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("events.db")
}

fn connect(dir: &Path, synchronous: Synchronous) -> BenchResult<Connection> {
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let conn = Connection::open(db_path(dir))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(BenchError::Check(format!(
            "SQLite journal_mode is {mode}, not wal"
        )));
    }
    conn.pragma_update(None, "synchronous", synchronous.pragma())?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

fn insert(statement: &mut Statement<'_>, fixture: &Fixture, i: usize) -> BenchResult<()> {
    let payload = serde_json::to_string(&fixture.payload(i))?;
    let id = uuid::Uuid::now_v7();
    statement.execute(params![
        &id.as_bytes()[..],
        fixture.entity(i),
        SCOPE,
        Fixture::kind(i).bits(),
        now_us(),
        payload
    ])?;
    Ok(())
}

/// W1/W2: `n` single inserts, one transaction (autocommit) per event.
pub fn single_appends(
    fixture: &Fixture,
    dir: &Path,
    n: usize,
    synchronous: Synchronous,
) -> BenchResult<Sample> {
    let conn = connect(dir, synchronous)?;
    let mut latencies = Latencies::with_capacity(n);
    let every = match synchronous {
        Synchronous::Full => 1,
        Synchronous::Normal => RELAXED_LATENCY_SAMPLE,
    };
    let seconds = {
        let mut statement = conn.prepare_cached(INSERT)?;
        let started = Instant::now();
        for i in 0..n {
            let op = (i % every == 0).then(Instant::now);
            insert(&mut statement, fixture, i)?;
            if let Some(op) = op {
                latencies.record_since(op);
            }
        }
        started.elapsed().as_secs_f64()
    };
    finish(vec![conn], dir, seconds, latencies)
}

/// W3: `batches` transactions of `size` inserts, `synchronous = FULL`.
pub fn batches(fixture: &Fixture, dir: &Path, batches: usize, size: usize) -> BenchResult<Sample> {
    let mut conn = connect(dir, Synchronous::Full)?;
    let mut latencies = Latencies::with_capacity(batches);
    let started = Instant::now();
    for b in 0..batches {
        let op = Instant::now();
        let transaction = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut statement = transaction.prepare_cached(INSERT)?;
            for i in b * size..(b + 1) * size {
                insert(&mut statement, fixture, i)?;
            }
        }
        transaction.commit()?;
        latencies.record_since(op);
    }
    let seconds = started.elapsed().as_secs_f64();
    finish(vec![conn], dir, seconds, latencies)
}

/// W4: `threads` threads, one connection each, `n` inserts in total,
/// `synchronous = FULL`, autocommit, waiting on the busy timeout for the lock.
pub fn concurrent_appends(
    fixture: &Fixture,
    dir: &Path,
    threads: usize,
    n: usize,
) -> BenchResult<Sample> {
    // The schema is created once, before the writers race.
    let first = connect(dir, Synchronous::Full)?;
    let per_thread = n / threads;
    let barrier = std::sync::Barrier::new(threads + 1);
    let (seconds, outcomes) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || -> BenchResult<(Latencies, Connection)> {
                    let conn = connect(dir, Synchronous::Full);
                    barrier.wait();
                    let conn = conn?;
                    let mut latencies = Latencies::with_capacity(per_thread);
                    {
                        let mut statement = conn.prepare_cached(INSERT)?;
                        for i in t * per_thread..(t + 1) * per_thread {
                            let op = Instant::now();
                            insert(&mut statement, fixture, i)?;
                            latencies.record_since(op);
                        }
                    }
                    Ok((latencies, conn))
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        (started.elapsed().as_secs_f64(), outcomes)
    });
    let mut latencies = Latencies::with_capacity(n);
    let mut connections = vec![first];
    for outcome in outcomes {
        let (thread_latencies, conn) =
            outcome.map_err(|_| BenchError::Panicked("a writer thread panicked".into()))??;
        latencies.merge(thread_latencies);
        connections.push(conn);
    }
    finish(connections, dir, seconds, latencies)
}

/// Closes every connection (the last close checkpoints and removes the WAL),
/// then measures the directory.
fn finish(
    connections: Vec<Connection>,
    dir: &Path,
    seconds: f64,
    mut latencies: Latencies,
) -> BenchResult<Sample> {
    let peak_rss_bytes = peak_rss_bytes();
    for conn in connections {
        conn.close().map_err(|(_, e)| e)?;
    }
    let (p50_us, p99_us) = latencies.p50_p99_us().unzip();
    Ok(Sample {
        seconds,
        p50_us,
        p99_us,
        bytes_on_disk: Some(disk_bytes(dir)),
        peak_rss_bytes,
        ..Sample::default()
    })
}

/// Builds the big database of W5-W7: `n` events in transactions of 10,000.
pub fn build_big(fixture: &Fixture, dir: &Path, n: usize) -> BenchResult<()> {
    let mut conn = connect(dir, Synchronous::Normal)?;
    let mut next = 0;
    while next < n {
        let end = (next + 10_000).min(n);
        let transaction = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut statement = transaction.prepare_cached(INSERT)?;
            for i in next..end {
                insert(&mut statement, fixture, i)?;
            }
        }
        transaction.commit()?;
        next = end;
    }
    conn.close().map_err(|(_, e)| e)?;
    Ok(())
}

/// Number of events in a database.
pub fn count_events(dir: &Path) -> BenchResult<u64> {
    let conn = connect(dir, Synchronous::Full)?;
    let count: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))?;
    conn.close().map_err(|(_, e)| e)?;
    Ok(count as u64)
}

/// One event as read back: every column, owned, like a batpak `StoredEvent`
/// (the payload stays JSON text; it is not parsed).
#[derive(Debug)]
#[allow(dead_code)] // the fields are read to do the work, not used afterwards
struct EventRow {
    sequence: i64,
    id: Vec<u8>,
    entity: String,
    scope: String,
    kind: i64,
    clock: i64,
    ts: i64,
    payload: String,
}

fn read_entity(statement: &mut Statement<'_>, entity: &str) -> BenchResult<Vec<EventRow>> {
    let rows = statement.query_map([entity], |row| {
        Ok(EventRow {
            sequence: row.get(0)?,
            id: row.get(1)?,
            entity: row.get(2)?,
            scope: row.get(3)?,
            kind: row.get(4)?,
            clock: row.get(5)?,
            ts: row.get(6)?,
            payload: row.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// W6: the full history of each entity, through the (entity, clock) index.
pub fn entity_reads(dir: &Path, entities: &[&str], expected: usize) -> BenchResult<Sample> {
    let conn = connect(dir, Synchronous::Full)?;
    let mut latencies = Latencies::with_capacity(entities.len());
    let seconds = {
        let mut statement = conn.prepare_cached(SELECT_ENTITY)?;
        let started = Instant::now();
        for entity in entities {
            let op = Instant::now();
            let events = read_entity(&mut statement, entity)?;
            latencies.record_since(op);
            if events.len() != expected {
                return Err(BenchError::Check(format!(
                    "{entity} has {} rows, expected {expected}",
                    events.len()
                )));
            }
        }
        started.elapsed().as_secs_f64()
    };
    let mut sample = finish(vec![conn], dir, seconds, latencies)?;
    sample.bytes_on_disk = None;
    Ok(sample)
}

/// W7: a full scan in sequence order, reading every column and folding a
/// count per kind.
pub fn replay(dir: &Path, expected: u64) -> BenchResult<Sample> {
    let conn = connect(dir, Synchronous::Full)?;
    let mut counts = vec![0u64; 1 << 16];
    let mut bytes_seen = 0usize;
    let seconds = {
        let mut statement = conn.prepare_cached(SELECT_ALL)?;
        let started = Instant::now();
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let _sequence: i64 = row.get(0)?;
            let id = row.get_ref(1)?.as_blob()?;
            let entity = row.get_ref(2)?.as_str()?;
            let scope = row.get_ref(3)?.as_str()?;
            let kind: i64 = row.get(4)?;
            let _clock: i64 = row.get(5)?;
            let _ts: i64 = row.get(6)?;
            let payload = row.get_ref(7)?.as_str()?;
            bytes_seen += id.len() + entity.len() + scope.len() + payload.len();
            counts[(kind as usize) & 0xFFFF] += 1;
        }
        started.elapsed().as_secs_f64()
    };
    let total: u64 = counts.iter().sum();
    if total != expected {
        return Err(BenchError::Check(format!(
            "scan saw {total} rows, expected {expected}"
        )));
    }
    let mut sample = finish(vec![conn], dir, seconds, Latencies::default())?;
    sample.bytes_on_disk = None;
    sample.extra.insert(
        "kinds".into(),
        counts.iter().filter(|c| **c > 0).count() as f64,
    );
    sample.extra.insert(
        "bytes_per_row".into(),
        (bytes_seen as u64 / total.max(1)) as f64,
    );
    Ok(sample)
}

/// Child side of W5. SQLite opens lazily: "open" here is `Connection::open`
/// plus the first statement (`PRAGMA journal_mode`), which reads the header
/// and, after a crash, recovers the WAL index.
pub fn child_open(dir: &Path, entity: &str) -> BenchResult<OpenOutcome> {
    let started = Instant::now();
    let conn = Connection::open(db_path(dir))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    let open_s = started.elapsed().as_secs_f64();
    let rss_after_open_bytes = peak_rss_bytes();
    let rss_now_after_open_bytes = current_rss_bytes();
    let started = Instant::now();
    let events = {
        let mut statement = conn.prepare_cached(SELECT_ENTITY)?;
        read_entity(&mut statement, entity)?
    };
    let read_s = started.elapsed().as_secs_f64();
    let rss_after_read_bytes = peak_rss_bytes();
    let count: i64 = conn.query_row("SELECT MAX(sequence) FROM events", [], |row| row.get(0))?;
    conn.close().map_err(|(_, e)| e)?;
    Ok(OpenOutcome {
        open_s,
        read_s,
        events_read: events.len() as u64,
        rss_after_open_bytes,
        rss_now_after_open_bytes,
        rss_after_read_bytes,
        events: count as u64,
        index_memory_bytes: None,
        detail: String::new(),
    })
}

/// Child side of the crash image: inserts durable rows until killed.
pub fn child_crash(fixture: &Fixture, dir: &Path) -> BenchResult<()> {
    let conn = connect(dir, Synchronous::Full)?;
    let mut statement = conn.prepare_cached(INSERT)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0usize;
    while Instant::now() < deadline {
        insert(&mut statement, fixture, i)?;
        i += 1;
        if i == 10 {
            signal_ready()?;
        }
    }
    std::process::abort()
}

/// Projection rows, SQLite side: the same per-entity fold (events per kind)
/// from `SELECT kind ... WHERE entity = ? ORDER BY clock`.
pub fn projections(dir: &Path, entities: &[&str], expected: usize) -> BenchResult<Sample> {
    let conn = connect(dir, Synchronous::Full)?;
    let mut latencies = Latencies::with_capacity(entities.len());
    let seconds = {
        let mut statement =
            conn.prepare_cached("SELECT kind FROM events WHERE entity = ?1 ORDER BY clock")?;
        let started = Instant::now();
        for entity in entities {
            let op = Instant::now();
            let mut counts = [0u64; crate::fixture::KINDS.len()];
            let mut rows = statement.query([entity])?;
            while let Some(row) = rows.next()? {
                let bits: u16 = row.get(0)?;
                let kind = batpak::EventKind::from_bits(bits);
                if let Some(index) = crate::fixture::KINDS.iter().position(|k| *k == kind) {
                    counts[index] += 1;
                }
            }
            latencies.record_since(op);
            let total: u64 = counts.iter().sum();
            if total != expected as u64 {
                return Err(BenchError::Check(format!(
                    "{entity} folds {total} rows, expected {expected}"
                )));
            }
        }
        started.elapsed().as_secs_f64()
    };
    let mut sample = finish(vec![conn], dir, seconds, latencies)?;
    sample.bytes_on_disk = None;
    Ok(sample)
}
