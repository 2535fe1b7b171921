//! What the store reports about itself.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::StoredEvent;

/// Where open got its index from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IndexSource {
    /// A new, empty store.
    Empty,
    /// A full scan of every segment.
    Scan,
    /// Segment footers and checkpoints restored most of the index; only the
    /// log after them was scanned.
    Checkpoint {
        /// Events restored from footers and checkpoints.
        restored_events: u64,
        /// Events found by scanning the log after them.
        scanned_events: u64,
        /// Footer and checkpoint files used.
        images: u32,
    },
}

/// A torn or damaged tail that open cut back (or, read-only, ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TailCut {
    /// The segment file.
    pub file: PathBuf,
    /// Where the cut was made.
    pub offset: u64,
    /// Bytes dropped from that file.
    pub dropped_bytes: u64,
    /// Whole segment files deleted after it (repair only).
    pub dropped_files: Vec<PathBuf>,
    /// What was found at the cut.
    pub reason: String,
}

/// How open restored the store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenReport {
    /// Where the index came from.
    pub index_source: IndexSource,
    /// Events indexed.
    pub events: u64,
    /// Segment files in use.
    pub segments: u32,
    /// Time open took.
    pub duration: Duration,
    /// A torn tail that was cut back (a crash in the middle of a write).
    pub torn_tail: Option<TailCut>,
    /// Damage cut away by [`RecoveryMode::Repair`](crate::RecoveryMode::Repair).
    pub repaired: Option<TailCut>,
    /// Empty or header-less segment files left by a crash during creation, removed.
    pub removed_files: Vec<PathBuf>,
    /// Files in the store directory that batpak does not own; left alone.
    pub foreign_files: Vec<PathBuf>,
    /// Footers or checkpoints that failed a check and were ignored (the log
    /// was scanned instead; they are rewritten).
    pub ignored_files: Vec<crate::store::IgnoredFile>,
}

/// A snapshot of the store's counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreStats {
    /// Events visible to readers (not counting removed ones).
    pub events: u64,
    /// Sequences whose events compaction removed (their sequences are never
    /// reused).
    pub removed_events: u64,
    /// Distinct entities.
    pub entities: u64,
    /// Segment files.
    pub segments: u32,
    /// Bytes in segment files.
    pub segment_bytes: u64,
    /// The next sequence to be assigned.
    pub next_sequence: u64,
    /// Highest sequence on stable storage, if any.
    pub durable_sequence: Option<u64>,
    /// Events written but not yet durable.
    pub unsynced_events: u64,
    /// Appenders waiting for a sync.
    pub writer_queue_depth: u64,
    /// Syncs that made appended events durable since open: group commits
    /// (one covers every appender waiting for it) and the sync that seals a
    /// full segment.
    pub syncs: u64,
    /// Time spent in those syncs, in total.
    pub sync_time: std::time::Duration,
    /// Appends (and batches and tickets) since open whose caller waited for
    /// a sync before its receipts: durable ones whose sync was not done yet,
    /// and relaxed ones that reached the `sync_every_n_events` bound.
    pub sync_waits: u64,
    /// Time those callers spent waiting, in total.
    pub sync_wait_time: std::time::Duration,
    /// Approximate bytes of memory held by the index.
    pub index_memory_bytes: u64,
    /// True if an earlier failure stopped writes.
    pub poisoned: bool,
    /// How open restored the store.
    pub open_report: OpenReport,
}

/// Facts about one entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntityInfo {
    /// Its name.
    pub entity: String,
    /// Its clock (number of events ever appended to it).
    pub clock: u64,
    /// Events currently stored.
    pub events: u64,
    /// Sequence of its latest event.
    pub last_sequence: u64,
}

/// One page of a query.
#[derive(Debug, Clone)]
pub struct Page {
    /// The events, in sequence order.
    pub events: Vec<StoredEvent>,
    /// Pass as `after` to get the next page; `None` when the query is exhausted.
    pub next_after: Option<u64>,
}
