//! The store's error type.

use std::io;
use std::path::PathBuf;

use crate::{CoordinateError, EventId, EventKind};

/// Everything that can go wrong in the store. Each variant says what and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An operating-system call failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What the store was doing (`"write"`, `"sync"`, `"open"`, ...).
        operation: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Another writer (in this process or another) holds the store directory.
    #[error("store directory {path} is locked by another writer")]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {field}: {reason}")]
    InvalidConfig {
        /// The configuration field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A coordinate was rejected.
    #[error(transparent)]
    Coordinate(#[from] CoordinateError),
    /// The kind is in a category reserved for the store.
    #[error("event kind {kind} is reserved for the store (categories 0x0 and 0xD)")]
    ReservedKind {
        /// The rejected kind.
        kind: EventKind,
    },
    /// The serialized payload exceeds the configured limit. Nothing was written.
    #[error("payload is {size} bytes; the limit is {max} bytes")]
    PayloadTooLarge {
        /// Size of the serialized payload (or the point at which serialization stopped).
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// The payload could not be serialized or deserialized.
    #[error("payload {direction} failed: {source}")]
    Serialization {
        /// `"encoding"` or `"decoding"`.
        direction: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// Optimistic concurrency failed: the entity's clock is not the expected one.
    #[error("clock mismatch: expected {expected}, entity is at {actual}")]
    ClockMismatch {
        /// The clock the caller expected (0 = no events yet).
        expected: u64,
        /// The entity's actual clock.
        actual: u64,
    },
    /// An item of an atomic batch was rejected; nothing of the batch was written.
    #[error("batch item {index}: {source}")]
    BatchItem {
        /// Position of the item in the batch.
        index: usize,
        /// Why it was rejected.
        #[source]
        source: Box<StoreError>,
    },
    /// A batch exceeds the configured item or byte limit, or is empty.
    #[error("batch rejected: {reason}")]
    BatchRejected {
        /// What limit was exceeded.
        reason: String,
    },
    /// An argument was malformed (for example an over-long idempotency key).
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// What is wrong.
        reason: String,
    },
    /// Stored bytes failed a check. Never returned as data.
    #[error("corrupt {file} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage within the file.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// A segment was written in a format version this build does not read
    /// (by a newer build, or by a development build before the first
    /// release). Nothing is changed, whatever the recovery mode.
    #[error("{file} uses segment format version {version}; this build reads version {supported}")]
    UnsupportedFormat {
        /// The segment file.
        file: PathBuf,
        /// Its format version.
        version: u16,
        /// The version this build reads and writes.
        supported: u16,
    },
    /// A file in the store directory is not what its name says it is.
    #[error("foreign or unreadable file {file}: {reason}")]
    ForeignFile {
        /// The file.
        file: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// An earlier write or sync failed; the store refuses writes until it is reopened.
    #[error("store refuses writes after an earlier failure (reopen it): {reason}")]
    Poisoned {
        /// The failure that poisoned the store.
        reason: String,
    },
    /// The store was opened read-only.
    #[error("store is open read-only")]
    ReadOnly,
    /// The store is closing or closed.
    #[error("store is closed")]
    Closed,
    /// A typed read met an event whose payload compaction redacted; read it
    /// untyped (payload `null`, [`StoredEvent::redacted`](crate::StoredEvent::redacted) set)
    /// or skip it.
    #[error("event {event_id} (sequence {sequence}) was redacted: its payload is gone")]
    Redacted {
        /// The event's sequence.
        sequence: u64,
        /// The event.
        event_id: crate::EventId,
    },
    /// No event has this id.
    #[error("no event with id {event_id}")]
    NotFound {
        /// The id looked up.
        event_id: EventId,
    },
    /// The log is full: a clock or sequence would overflow its stored width.
    #[error("capacity exceeded: {reason}")]
    CapacityExceeded {
        /// Which limit.
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            operation,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        StoreError::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
