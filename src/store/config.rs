//! Store configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::StoreError;

/// How a sync reaches stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `fdatasync`: file data and the metadata needed to read it back.
    #[default]
    SyncData,
    /// `fsync`: file data and all metadata.
    SyncAll,
}

/// What open does when it finds damage that is not a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to open and name the damaged segment and offset
    /// ([`StoreError::Corrupt`]). A torn tail (an incomplete last write) is
    /// always cut back, and reported in the open report.
    #[default]
    Strict,
    /// Truncate the log at the first damaged frame, delete everything after
    /// it, and report what was dropped in the open report. Explicit data loss:
    /// use it only after [`RecoveryMode::Strict`] told you where the damage is.
    Repair,
}

/// Configuration of a [`Store`](crate::Store), built with `with_*` methods.
///
/// ```
/// use batpak::prelude::*;
/// let config = StoreConfig::new("./batpak-data")
///     .with_sync_every_n_events(100)
///     .with_sync_mode(SyncMode::SyncData);
/// assert_eq!(config.sync_every_n_events(), 100);
/// ```
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub(crate) dir: PathBuf,
    pub(crate) sync_every_n_events: u32,
    pub(crate) sync_mode: SyncMode,
    pub(crate) sync_interval: Duration,
    pub(crate) segment_max_bytes: u64,
    pub(crate) payload_max_bytes: u32,
    pub(crate) batch_max_items: u32,
    pub(crate) batch_max_bytes: u64,
    pub(crate) write_buffer_bytes: usize,
    pub(crate) recovery_mode: RecoveryMode,
    #[cfg(feature = "dangerous-test-hooks")]
    pub(crate) fault_injector: Option<std::sync::Arc<crate::fault::FaultInjector>>,
}

/// Largest payload the format can hold, whatever the configuration says.
pub const PAYLOAD_MAX_BYTES_LIMIT: u32 = 64 * 1024 * 1024;

impl StoreConfig {
    /// A configuration with defaults for the store in `dir` (created on open
    /// if missing): every append durable (`n = 1`) with group commit,
    /// `fdatasync`, 64 MiB segments, 1 MiB payloads, batches of up to 10,000
    /// items and 16 MiB.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        StoreConfig {
            dir: dir.as_ref().to_path_buf(),
            sync_every_n_events: 1,
            sync_mode: SyncMode::SyncData,
            sync_interval: Duration::from_millis(100),
            segment_max_bytes: 64 * 1024 * 1024,
            payload_max_bytes: 1024 * 1024,
            batch_max_items: 10_000,
            batch_max_bytes: 16 * 1024 * 1024,
            write_buffer_bytes: 256 * 1024,
            recovery_mode: RecoveryMode::Strict,
            #[cfg(feature = "dangerous-test-hooks")]
            fault_injector: None,
        }
    }

    /// At most `n` acknowledged events may be not yet on stable storage.
    /// `1` (the default) makes every receipt durable; concurrent appenders
    /// share one sync (group commit). Must be at least 1.
    pub fn with_sync_every_n_events(mut self, n: u32) -> Self {
        self.sync_every_n_events = n;
        self
    }

    /// `fdatasync` ([`SyncMode::SyncData`], default) or `fsync` ([`SyncMode::SyncAll`]).
    pub fn with_sync_mode(mut self, mode: SyncMode) -> Self {
        self.sync_mode = mode;
        self
    }

    /// Caps how long an acknowledged event may stay unsynced when
    /// `sync_every_n_events > 1` (default 100 ms). A background thread syncs
    /// at this interval while anything is unsynced. Must be non-zero.
    pub fn with_sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    /// Size at which the active segment is sealed and a new one started
    /// (default 64 MiB; at least 4 KiB). An atomic batch never spans two
    /// segments, so a segment may exceed this by up to one batch.
    pub fn with_segment_max_bytes(mut self, bytes: u64) -> Self {
        self.segment_max_bytes = bytes;
        self
    }

    /// Largest accepted payload in bytes, after serialization (default 1 MiB,
    /// at most [`PAYLOAD_MAX_BYTES_LIMIT`]).
    pub fn with_payload_max_bytes(mut self, bytes: u32) -> Self {
        self.payload_max_bytes = bytes;
        self
    }

    /// Largest number of items in one atomic batch (default 10,000).
    pub fn with_batch_max_items(mut self, items: u32) -> Self {
        self.batch_max_items = items;
        self
    }

    /// Largest encoded size of one atomic batch (default 16 MiB).
    pub fn with_batch_max_bytes(mut self, bytes: u64) -> Self {
        self.batch_max_bytes = bytes;
        self
    }

    /// Bytes of relaxed appends kept in the process before they are handed to
    /// the operating system (default 256 KiB). Only matters when
    /// `sync_every_n_events > 1`.
    pub fn with_write_buffer_bytes(mut self, bytes: usize) -> Self {
        self.write_buffer_bytes = bytes;
        self
    }

    /// What to do with damage found on open (default [`RecoveryMode::Strict`]).
    pub fn with_recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery_mode = mode;
        self
    }

    /// Routes every file operation of the write and recovery paths through
    /// `injector`, which can fail them on demand. Test builds only.
    #[cfg(feature = "dangerous-test-hooks")]
    pub fn with_fault_injector(
        mut self,
        injector: std::sync::Arc<crate::fault::FaultInjector>,
    ) -> Self {
        self.fault_injector = Some(injector);
        self
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configured sync cadence.
    pub fn sync_every_n_events(&self) -> u32 {
        self.sync_every_n_events
    }

    /// The configured sync mode.
    pub fn sync_mode(&self) -> SyncMode {
        self.sync_mode
    }

    /// The configured sync interval.
    pub fn sync_interval(&self) -> Duration {
        self.sync_interval
    }

    /// The configured segment size.
    pub fn segment_max_bytes(&self) -> u64 {
        self.segment_max_bytes
    }

    /// The configured payload limit.
    pub fn payload_max_bytes(&self) -> u32 {
        self.payload_max_bytes
    }

    /// Checks every value; called by `Store::open`.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let invalid =
            |field: &'static str, reason: String| StoreError::InvalidConfig { field, reason };
        if self.sync_every_n_events == 0 {
            return Err(invalid("sync_every_n_events", "must be at least 1".into()));
        }
        if self.sync_interval.is_zero() {
            return Err(invalid("sync_interval", "must be greater than zero".into()));
        }
        if self.segment_max_bytes < 4096 {
            return Err(invalid(
                "segment_max_bytes",
                format!("{} is below the minimum of 4096", self.segment_max_bytes),
            ));
        }
        if self.segment_max_bytes > u32::MAX as u64 {
            return Err(invalid(
                "segment_max_bytes",
                format!(
                    "{} is above the maximum of {}",
                    self.segment_max_bytes,
                    u32::MAX
                ),
            ));
        }
        if self.payload_max_bytes == 0 || self.payload_max_bytes > PAYLOAD_MAX_BYTES_LIMIT {
            return Err(invalid(
                "payload_max_bytes",
                format!(
                    "{} is outside 1..={PAYLOAD_MAX_BYTES_LIMIT}",
                    self.payload_max_bytes
                ),
            ));
        }
        if self.batch_max_items == 0 {
            return Err(invalid("batch_max_items", "must be at least 1".into()));
        }
        if self.batch_max_bytes == 0 || self.batch_max_bytes > u32::MAX as u64 {
            return Err(invalid(
                "batch_max_bytes",
                format!("{} is outside 1..={}", self.batch_max_bytes, u32::MAX),
            ));
        }
        if self.dir.as_os_str().is_empty() {
            return Err(invalid("dir", "the store directory path is empty".into()));
        }
        Ok(())
    }
}
