//! The store: the write path, the log, the index and the reads.
//!
//! [`Store`] is the handle; everything it does is implemented by the
//! submodules: `engine` (write path and group commit), `open` (recovery),
//! `read` (reads and iterators), `index` (the in-memory index) and `log`
//! (the on-disk format and the I/O seam).

mod checkpoint;
pub(crate) mod codec;
mod compact;
mod config;
pub(crate) mod engine;
mod error;
pub(crate) mod index;
mod json;
pub(crate) mod log;
mod open;
mod options;
mod read;
mod report;
mod snapshot;
mod verify;
mod wake;

pub use checkpoint::{IgnoredFile, CHECKPOINT_EVERY, CHECKPOINT_EVERY_EVENTS};
pub use compact::{Compaction, CompactionProgress, CompactionReport};
pub use config::{RecoveryMode, StoreConfig, SyncMode, PAYLOAD_MAX_BYTES_LIMIT};
pub use error::StoreError;
pub use options::{
    AppendOptions, AppendReceipt, Batch, BatchItem, Causation, IdempotencyKey,
    IDEMPOTENCY_KEY_MAX_BYTES,
};
pub use read::{EventIter, RawPayload, TypedEventIter};
pub use report::{EntityInfo, IndexSource, OpenReport, Page, StoreStats, TailCut};
pub use snapshot::SnapshotReport;
pub use verify::{
    verify_dir, verify_dir_with_progress, Damage, DamageKind, VerifyProgress, VerifyReport,
};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Coordinate, EventId, EventKind, Region, StoredEvent};
use engine::{Accepted, Inner};
use log::io::{RealIo, StorageIo};

/// The handle to one store directory. `Send + Sync`: share it by reference or
/// `Arc`.
///
/// Open it with [`Store::open`] (one writer per directory, enforced with a
/// lock file) or [`Store::open_read_only`] (any number, beside a writer).
/// Close it with [`Store::close`], which syncs and reports errors; dropping
/// it syncs on a best-effort basis.
pub struct Store {
    inner: Arc<Inner>,
}

/// Proof of an orderly, durable shutdown, returned by [`Store::close`].
#[derive(Debug)]
pub struct Closed {
    /// Sequence one past the last event in the store when it closed.
    pub next_sequence: u64,
}

/// A submitted append whose receipt is collected later (pipelining): the
/// event has a sequence and is ordered, but the durability wait, if any, has
/// not happened yet. See [`Store::submit`].
#[must_use = "a ticket must be waited on to learn whether the append succeeded"]
pub struct AppendTicket {
    inner: Arc<Inner>,
    receipt: AppendReceipt,
    sync_through: Option<u64>,
}

impl std::fmt::Debug for AppendTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendTicket")
            .field("receipt", &self.receipt)
            .field("sync_through", &self.sync_through)
            .finish()
    }
}

impl AppendTicket {
    /// The sequence the event was given.
    pub fn sequence(&self) -> u64 {
        self.receipt.sequence
    }

    /// Waits until the append is acknowledged under the store's durability
    /// rules and returns its receipt. If the covering sync failed, the event
    /// is not in the store and this returns the error.
    pub fn wait(self) -> Result<AppendReceipt, StoreError> {
        self.inner.await_sync(self.sync_through)?;
        Ok(self.receipt)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.config.dir)
            .field("read_only", &self.inner.read_only)
            .finish_non_exhaustive()
    }
}

fn io_for(config: &StoreConfig) -> Arc<dyn StorageIo> {
    #[cfg(feature = "dangerous-test-hooks")]
    if let Some(injector) = &config.fault_injector {
        return crate::fault::wrap(Arc::new(RealIo), injector.clone());
    }
    let _ = config;
    Arc::new(RealIo)
}

impl Store {
    /// Opens (creating if needed) the store in `config.dir()` for writing.
    ///
    /// Scans the log, rebuilds the index and cuts back a torn tail (reported
    /// in [`Store::open_report`]). Damage before valid data is an error naming
    /// the file and offset ([`StoreError::Corrupt`]) unless the configuration
    /// asks for [`RecoveryMode::Repair`]. A second writer on the same
    /// directory, in this process or another, gets [`StoreError::Locked`].
    pub fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let io = io_for(&config);
        Ok(Store {
            inner: open::open(config, false, io)?,
        })
    }

    /// Opens a store for reading only. Takes no lock, so it works beside a
    /// live writer in another process; call [`Store::refresh`] to see events
    /// committed after open. Never modifies the directory.
    pub fn open_read_only(config: StoreConfig) -> Result<Store, StoreError> {
        let io = io_for(&config);
        Ok(Store {
            inner: open::open(config, true, io)?,
        })
    }

    /// Read-only stores: indexes events committed since open or the last
    /// refresh and returns how many were added. Writable stores see their own
    /// appends already; for them this returns 0.
    pub fn refresh(&self) -> Result<u64, StoreError> {
        if !self.inner.read_only {
            return Ok(0);
        }
        open::refresh(&self.inner)
    }

    /// Appends one event with default options; see [`Store::append_with_options`].
    ///
    /// ```
    /// use batpak::prelude::*;
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(StoreConfig::new(dir.path()))?;
    /// let coord = Coordinate::new("player:alice", "room:dungeon")?;
    /// let first = store.append(&coord, EventKind::custom(0xF, 1), &serde_json::json!({"x": 1}))?;
    /// let second = store.append(&coord, EventKind::custom(0xF, 1), &serde_json::json!({"x": 2}))?;
    /// assert_eq!((first.sequence, first.clock), (0, 1));
    /// assert_eq!((second.sequence, second.clock), (1, 2));
    /// # store.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append(
        &self,
        coordinate: &Coordinate,
        kind: EventKind,
        payload: &impl Serialize,
    ) -> Result<AppendReceipt, StoreError> {
        self.append_with_options(coordinate, kind, payload, AppendOptions::default())
    }

    /// Appends one event.
    ///
    /// The payload is serialized (compact JSON) and checked against the
    /// payload limit before anything is written. The receipt is returned once
    /// the event is acknowledged: with `sync_every_n_events(1)` (the default)
    /// or [`AppendOptions::durable`], only after the sync that covers it
    /// succeeded. Fails with [`StoreError::ReservedKind`],
    /// [`StoreError::PayloadTooLarge`], [`StoreError::ClockMismatch`] (and
    /// writes nothing), or with [`StoreError::Poisoned`] if an earlier write or
    /// sync failed.
    pub fn append_with_options(
        &self,
        coordinate: &Coordinate,
        kind: EventKind,
        payload: &impl Serialize,
        options: AppendOptions,
    ) -> Result<AppendReceipt, StoreError> {
        // `submit` and `wait` without the ticket (and its handle on the store).
        let accepted = self.accept(coordinate, kind, payload, &options)?;
        self.inner.await_sync(accepted.sync_through)?;
        Ok(accepted.receipts[0])
    }

    /// Orders an append and returns a ticket without waiting for the sync
    /// that makes it durable; [`AppendTicket::wait`] does that. Submitting
    /// many appends and then waiting on their tickets overlaps them, so they
    /// share syncs even from a single thread.
    pub fn submit(
        &self,
        coordinate: &Coordinate,
        kind: EventKind,
        payload: &impl Serialize,
        options: AppendOptions,
    ) -> Result<AppendTicket, StoreError> {
        let accepted = self.accept(coordinate, kind, payload, &options)?;
        Ok(self.ticket(accepted))
    }

    /// Encodes and orders one append; the durability wait is the caller's.
    fn accept(
        &self,
        coordinate: &Coordinate,
        kind: EventKind,
        payload: &impl Serialize,
        options: &AppendOptions,
    ) -> Result<Accepted, StoreError> {
        if kind.is_reserved() {
            return Err(StoreError::ReservedKind { kind });
        }
        codec::with_encoded(payload, self.inner.config.payload_max_bytes, |bytes| {
            self.inner
                .append_one(coordinate, kind, bytes, options, false)
        })
    }

    fn ticket(&self, accepted: Accepted) -> AppendTicket {
        AppendTicket {
            inner: self.inner.clone(),
            receipt: accepted.receipts[0],
            sync_through: accepted.sync_through,
        }
    }

    /// Appends an atomic batch: every item or none, through a crash at any
    /// byte. Items apply in order (clock expectations see earlier items of the
    /// same batch); an item may name an earlier item as its cause. A batch
    /// that returns an error left nothing behind and never reappears.
    pub fn append_batch(&self, batch: &Batch) -> Result<Vec<AppendReceipt>, StoreError> {
        self.append_batch_internal(batch, false)
    }

    /// [`Store::append_batch`], optionally allowing the store's reserved kinds
    /// (for records the store itself keeps, such as gate bypasses).
    #[allow(dead_code)]
    pub(crate) fn append_batch_internal(
        &self,
        batch: &Batch,
        allow_reserved: bool,
    ) -> Result<Vec<AppendReceipt>, StoreError> {
        let accepted = self.inner.append_batch(batch, allow_reserved)?;
        self.inner.await_sync(accepted.sync_through)?;
        Ok(accepted.receipts.into_vec())
    }

    /// Makes everything acknowledged so far durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        if self.inner.read_only {
            return Ok(());
        }
        // A poisoned store cut acknowledged but unsynced events back: never
        // tell the caller that everything acknowledged is durable.
        if let Some(reason) = self.inner.writer.lock().poisoned.clone() {
            return Err(StoreError::Poisoned { reason });
        }
        let written = self.inner.index.read().next_sequence();
        self.inner.sync_through(written)
    }

    /// The highest sequence known to be on stable storage (`None` while
    /// nothing is).
    pub fn durable_sequence(&self) -> Option<u64> {
        self.inner
            .durable_next
            .load(Ordering::Acquire)
            .checked_sub(1)
    }

    /// One event by id (`None` if there is none).
    pub fn get(&self, event_id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        self.get_typed(event_id)
    }

    /// One event by id, its payload decoded into `T`.
    pub fn get_typed<T: DeserializeOwned>(
        &self,
        event_id: EventId,
    ) -> Result<Option<StoredEvent<T>>, StoreError> {
        let sequence = self.inner.index.read().sequence_of(event_id);
        match sequence {
            Some(sequence) => self.inner.read_event(sequence),
            None => Ok(None),
        }
    }

    /// One event by global sequence.
    pub fn get_by_sequence(&self, sequence: u64) -> Result<Option<StoredEvent>, StoreError> {
        self.inner.read_event(sequence)
    }

    /// One entity's events in clock order, read lazily.
    pub fn stream(&self, entity: &str) -> EventIter {
        self.query(&Region::entity(entity))
    }

    /// The events a region selects, in global sequence order, read lazily.
    ///
    /// Cost: an exact-entity region walks that entity's list; causation and
    /// correlation regions walk their lists; other regions scan the compact
    /// index columns (never the disk) and read only what matches.
    pub fn query(&self, region: &Region) -> EventIter {
        EventIter::new(self.inner.clone(), region.clone())
    }

    /// One page of a query: at most `limit` events with sequence greater than
    /// `after`, and where to continue.
    pub fn query_page(
        &self,
        region: &Region,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let mut events = Vec::with_capacity(limit.min(1024));
        let mut cursor = after;
        loop {
            let (sequences, resume) =
                self.inner
                    .index
                    .read()
                    .select(region, cursor, limit - events.len(), 64 * 1024);
            for sequence in sequences {
                if let Some(event) = self.inner.read_event(sequence)? {
                    events.push(event);
                }
                cursor = Some(sequence);
            }
            match resume {
                Some(resume) if events.len() < limit => {
                    cursor = Some(cursor.map_or(resume, |c| c.max(resume)));
                }
                Some(_) => {
                    return Ok(Page {
                        next_after: cursor,
                        events,
                    })
                }
                None => {
                    return Ok(Page {
                        events,
                        next_after: None,
                    })
                }
            }
        }
    }

    /// Checks every checksum, sequence, clock and hash-chain link in the log,
    /// and that the index agrees with it. Returns a report naming each damaged
    /// place (file, offset, entity, sequence, kind); an `Err` means the check
    /// itself could not run (for example a file could not be read).
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.inner.verify(&mut |_| {})
    }

    /// [`Store::verify`] with a callback after each segment, for progress bars.
    pub fn verify_with_progress(
        &self,
        progress: &mut dyn FnMut(&VerifyProgress),
    ) -> Result<VerifyReport, StoreError> {
        self.inner.verify(progress)
    }

    /// The causes of an event, nearest first, following causation links back
    /// to the root (at most `limit` steps; each step is an index lookup). Stops
    /// at an event with no cause or whose cause is not in the store, and never
    /// loops. The event itself is not included.
    pub fn walk_ancestors(
        &self,
        event_id: EventId,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        seen.insert(event_id);
        let Some(mut current) = self.get(event_id)? else {
            return Err(StoreError::NotFound { event_id });
        };
        while out.len() < limit {
            let Some(cause) = current.header.causation_id else {
                break;
            };
            if !seen.insert(cause) {
                break;
            }
            let Some(parent) = self.get(cause)? else {
                break;
            };
            out.push(parent.clone());
            current = parent;
        }
        Ok(out)
    }

    /// An entity's events from the newest back to the oldest, each link
    /// recomputed from the event's bytes and its predecessor's link. Fails with
    /// [`StoreError::Corrupt`] naming the first event whose link does not hold.
    pub fn walk_entity_chain(&self, entity: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let events: Vec<StoredEvent> = self.stream(entity).collect::<Result<_, _>>()?;
        #[cfg(feature = "blake3")]
        {
            let mut previous: Option<crate::EventHash> = None;
            let mut previous_clock = 0;
            for event in &events {
                // Where compaction removed earlier events the chain restarts
                // at a stub (an anchor, checked by `verify`): the first event
                // after the gap links to a link this walk does not read.
                let anchored = event.header.clock != previous_clock + 1;
                previous_clock = event.header.clock;
                let (stored, expected) = self
                    .inner
                    .link_at(event.header.sequence, previous.as_ref())?;
                if !anchored && stored.is_some() && Some(expected) != stored {
                    return Err(StoreError::corrupt(
                        self.inner.dir(),
                        event.header.sequence,
                        format!(
                            "hash-chain link of {} (sequence {}) does not match its content",
                            event.header.event_id, event.header.sequence
                        ),
                    ));
                }
                previous = event.hash;
            }
        }
        Ok(events.into_iter().rev().collect())
    }

    /// Every event whose correlation id is `correlation_id` (the conversation
    /// it started), in sequence order; served by the index.
    pub fn correlated(&self, correlation_id: EventId) -> EventIter {
        self.query(&Region::all().with_correlation(correlation_id))
    }

    /// Every event directly caused by `event_id`, in sequence order; served by the index.
    pub fn caused_by(&self, event_id: EventId) -> EventIter {
        self.query(&Region::all().with_causation(event_id))
    }

    /// The entity's clock as readers see it (0 = no events).
    pub fn entity_clock(&self, entity: &str) -> u64 {
        self.inner.index.read().visible_clock(entity)
    }

    /// Entities whose names start with `prefix` (all with `""`), in name order.
    pub fn entities(&self, prefix: &str) -> Vec<EntityInfo> {
        let index = self.inner.index.read();
        index
            .entities_with_prefix(prefix)
            .filter_map(|entity| {
                let (events, last) = index.visible_extent(entity);
                let last_sequence = last?;
                let clock = index.entry(last_sequence).map_or(0, |e| u64::from(e.clock));
                Some(EntityInfo {
                    entity: entity.name.to_string(),
                    clock,
                    events: events as u64,
                    last_sequence,
                })
            })
            .collect()
    }

    /// The number of events visible to readers (= the next sequence once
    /// every acknowledged append is visible).
    pub fn next_sequence(&self) -> u64 {
        self.inner.visible.load(Ordering::Acquire)
    }

    /// Blocks until more than `known` events are visible (see
    /// [`Store::next_sequence`]) or `timeout` passes, and returns the number
    /// visible. Wakes on publish, never polls.
    pub fn wait_for_new_events(&self, known: u64, timeout: Duration) -> u64 {
        self.inner.wait_for_visible(known, timeout)
    }

    /// Reclaims space under a retention policy: removes events (whole
    /// entities, everything before a sequence or a time) and redacts
    /// payloads, rewriting sealed segments one at a time. The active segment
    /// is sealed first, so the policy covers every event appended before the
    /// call.
    ///
    /// Guarantees: a kept event reads back exactly as before (same sequence,
    /// id, header and payload); chains of kept events still verify (a stub
    /// anchors an entity whose earlier events were removed); a removed event
    /// never comes back; idempotency keys of removed events still answer
    /// retries with the original receipts; named cursor positions stay
    /// valid; and a crash at any step leaves the old or the new state of each
    /// segment. Readers and writers run on during compaction; readers that
    /// already hold an event keep it, readers of a read-only store opened
    /// elsewhere see the change when they reopen.
    ///
    /// ```
    /// # use batpak::prelude::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(StoreConfig::new(dir.path()))?;
    /// let alice = Coordinate::new("user:alice", "accounts")?;
    /// let kind = EventKind::custom(1, 1);
    /// store.append(&alice, kind, &serde_json::json!({"email": "alice@example.com"}))?;
    /// let report = store.compact(&Compaction::new().drop_entity("user:alice"))?;
    /// assert_eq!(report.events_removed, 1);
    /// assert_eq!(store.stream("user:alice").count(), 0);
    /// assert!(store.verify()?.is_clean());
    /// # Ok::<(), batpak::StoreError>(())
    /// ```
    pub fn compact(&self, policy: &Compaction) -> Result<CompactionReport, StoreError> {
        self.inner.compact(policy, &mut |_| {})
    }

    /// [`Store::compact`] with a callback after each segment, for progress bars.
    pub fn compact_with_progress(
        &self,
        policy: &Compaction,
        progress: &mut dyn FnMut(&CompactionProgress),
    ) -> Result<CompactionReport, StoreError> {
        self.inner.compact(policy, progress)
    }

    /// Counts, sizes, sequences, durability frontier, and the open report.
    pub fn stats(&self) -> StoreStats {
        let (events, removed_events, entities, next_sequence, index_memory_bytes) = {
            let index = self.inner.index.read();
            (
                index.visible().saturating_sub(index.dropped()),
                index.dropped(),
                index.entity_count() as u64,
                index.next_sequence(),
                index.memory_bytes(),
            )
        };
        let (poisoned, active) = {
            let writer = self.inner.writer.lock();
            (
                writer.poisoned.is_some(),
                writer
                    .active
                    .as_ref()
                    .map(|a| (a.id, a.written + a.pending.len() as u64)),
            )
        };
        let segments = self.inner.segments.read();
        // Log bytes: the active segment counts up to its last frame, not the
        // zeros written ahead of it.
        let segment_bytes: u64 = segments
            .iter()
            .map(|(id, s)| match active {
                Some((active_id, end)) if active_id == *id => end,
                _ => std::fs::metadata(&s.path).map_or(0, |m| m.len()),
            })
            .sum();
        let durable_next = self.inner.durable_next.load(Ordering::Acquire);
        let (syncs, sync_time, sync_waits, sync_wait_time) = self.inner.sync_counters.snapshot();
        StoreStats {
            events,
            removed_events,
            entities,
            segments: segments.len() as u32,
            segment_bytes,
            next_sequence,
            durable_sequence: durable_next.checked_sub(1),
            unsynced_events: next_sequence.saturating_sub(durable_next),
            writer_queue_depth: self.inner.sync.lock().waiters(),
            syncs,
            sync_time,
            sync_waits,
            sync_wait_time,
            index_memory_bytes,
            poisoned,
            open_report: self.inner.open_report.clone(),
        }
    }

    /// The shared state, for the crate's own subsystems (feeds, operations).
    #[allow(dead_code)]
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// How open restored the store.
    pub fn open_report(&self) -> &OpenReport {
        &self.inner.open_report
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// True if opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// Drains, syncs and closes; reports every error. After a successful
    /// close every acknowledged event is on stable storage.
    pub fn close(self) -> Result<Closed, StoreError> {
        let result = self.shutdown();
        let next_sequence = self.inner.index.read().next_sequence();
        result.map(|()| Closed { next_sequence })
    }

    fn shutdown(&self) -> Result<(), StoreError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.inner.stop_flusher();
        self.inner.stop_maintenance();
        let synced = if self.inner.read_only {
            Ok(())
        } else {
            let poisoned = self.inner.writer.lock().poisoned.clone();
            match poisoned {
                Some(reason) => Err(StoreError::Poisoned { reason }),
                None => self.sync(),
            }
        };
        if synced.is_ok() && !self.inner.read_only {
            self.inner.trim_preallocation();
        }
        if synced.is_ok() && !self.inner.read_only {
            // Derived data: a failure only means the next open scans more.
            if let Err(error) = self.inner.maintain(true) {
                tracing::warn!(%error, "final index checkpoint failed; the next open scans more");
            }
        }
        {
            // Under the publish lock, so a waiter cannot check `closed`, miss
            // this store, and then sleep through the wake-up below.
            let _publish = self.inner.publish.lock();
            self.inner.closed.store(true, Ordering::Release);
        }
        self.inner.published.notify_all();
        if let Some(lock) = self.inner.lock_file.lock().take() {
            let _ = lock.unlock();
        }
        tracing::info!(dir = %self.inner.config.dir.display(), ok = synced.is_ok(), "store closed");
        synced
    }
}

impl Drop for Store {
    /// Best effort: syncs what was acknowledged and releases the lock. Durable
    /// appends were already on disk when they returned, so nothing durable
    /// depends on this. Use [`Store::close`] to see errors.
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::warn!(%error, "store dropped without close; final sync failed");
        }
    }
}
