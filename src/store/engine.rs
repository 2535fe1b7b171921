//! The shared state behind a [`Store`](crate::Store) handle and the write path.
//!
//! One writer at a time holds `writer`: it assigns sequences, clocks, ids and
//! hash-chain links, encodes frames into the pending buffer and records them
//! in the index (hidden from readers until acknowledged). Durability is a
//! separate step, `sync_through`, run by whichever waiting appender becomes
//! the sync leader: it hands the pending bytes to the operating system under
//! the writer lock, then syncs *without* holding it, so other appenders keep
//! encoding the next group while the disk works (group commit).
//!
//! Lock order: `writer` → `index` → `sync` → `publish`. No lock is held
//! across a sync except `writer` during rotation and failure handling.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockUpgradableReadGuard};
use smallvec::SmallVec;

use super::index::{Index, NewEntry};
use super::log::frame::{
    encode_frame, FrameFields, SegmentHeader, BODY_FIXED_BYTES, FRAME_PREFIX_BYTES,
    SEGMENT_HEADER_BYTES,
};
use super::log::io::{StorageFile, StorageIo};
use super::log::segment::{segment_file_name, ReadFrameError, SegmentReader};
use super::options::Causation;
use super::report::OpenReport;
use super::wake::RoundSignal;
use crate::event::IdGenerator;
use crate::{
    AppendOptions, AppendReceipt, Batch, Coordinate, EventHash, EventId, EventKind, StoreConfig,
    StoreError,
};

/// The segment being appended to.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) id: u32,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn StorageFile>,
    /// Bytes handed to the operating system.
    pub(crate) written: u64,
    /// Encoded frames not yet handed to the operating system.
    pub(crate) pending: Vec<u8>,
    /// File length: bytes past `written` up to here are zeros written ahead
    /// of the log and synced, so that appending syncs rewrite allocated
    /// blocks instead of growing the file (a sync that must also persist a
    /// new file size costs up to twice as much).
    pub(crate) allocated: u64,
}

impl Active {
    pub(crate) fn end(&self) -> u64 {
        self.written + self.pending.len() as u64
    }
}

/// How far ahead of the log zeros are written: 4 MiB, or one segment if
/// segments are smaller.
fn preallocation_step(segment_max_bytes: u64) -> u64 {
    segment_max_bytes.clamp(SEGMENT_HEADER_BYTES as u64, 4 * 1024 * 1024)
}

/// See [`Inner::falling_behind`]: a quarter of the cadence is unsynced.
fn falling_behind(unsynced: u64, sync_every_n_events: u32) -> bool {
    unsynced.saturating_mul(4) >= u64::from(sync_every_n_events)
}

/// What [`write_zeros`] writes from: one anonymous mapping per process,
/// never written, so every page of it reads as the kernel's shared zero page.
/// Writing zeros then costs no allocation, no `memset` and no cache lines
/// beyond that one page (a fresh 256 KiB buffer per extension cost the
/// background thread about 260,000 instructions between two syncs, counted
/// with callgrind). Should the mapping fail, a heap buffer serves.
fn zeros() -> &'static [u8] {
    const LEN: usize = 1024 * 1024;
    enum Zeros {
        Mapped(memmap2::Mmap),
        Heap(Box<[u8]>),
    }
    static ZEROS: std::sync::OnceLock<Zeros> = std::sync::OnceLock::new();
    let zeros = ZEROS.get_or_init(|| {
        match memmap2::MmapOptions::new()
            .len(LEN)
            .map_anon()
            .and_then(memmap2::MmapMut::make_read_only)
        {
            Ok(map) => Zeros::Mapped(map),
            Err(_) => Zeros::Heap(vec![0; LEN].into_boxed_slice()),
        }
    });
    match zeros {
        Zeros::Mapped(map) => map,
        Zeros::Heap(heap) => heap,
    }
}

/// Writes zeros from `from` up to `to` and, given a mode, syncs them (and
/// the new length).
fn write_zeros(
    file: &dyn StorageFile,
    from: u64,
    to: u64,
    mode: Option<crate::SyncMode>,
) -> std::io::Result<()> {
    let zeros = zeros();
    let mut at = from;
    while at < to {
        let len = zeros
            .len()
            .min(usize::try_from(to - at).unwrap_or(usize::MAX));
        file.write_all_at(&zeros[..len], at)?;
        at += len as u64;
    }
    match mode {
        Some(mode) => file.sync(mode),
        None => Ok(()),
    }
}

/// Zeros the background thread writes ahead of the log, so that appenders
/// rarely stop to write them (see [`Inner::extend_ahead`]).
#[derive(Debug, Default)]
pub(crate) struct Extension {
    /// The background thread is writing zeros past the active segment's
    /// `allocated`: nothing else may write there until it is done.
    pub(crate) busy: bool,
    /// A finished extension, (segment, new end), not yet adopted by the writer.
    pub(crate) done: Option<(u32, u64)>,
}

impl Extension {
    /// Counts a finished extension of the active segment as allocated.
    fn adopt(&mut self, active: &mut Active) {
        if let Some((segment, end)) = self.done.take() {
            if segment == active.id && end > active.allocated {
                active.allocated = end;
            }
        }
    }
}

/// How much the background thread writes ahead per round.
const EXTENSION_CHUNK: u64 = 256 * 1024;

/// Where a read-only store's scan of the log stopped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tail {
    pub(crate) segment: u32,
    pub(crate) offset: u64,
}

#[derive(Debug)]
pub(crate) struct Writer {
    /// `None` for read-only stores.
    pub(crate) active: Option<Active>,
    pub(crate) ids: IdGenerator,
    pub(crate) poisoned: Option<String>,
    /// Units (first, last sequence) whose appenders wait for a sync; they stay
    /// invisible to readers until it succeeds.
    pub(crate) awaiting_sync: VecDeque<(u64, u64)>,
    /// Read-only stores: where refresh continues.
    pub(crate) tail: Tail,
}

#[derive(Debug, Default)]
pub(crate) struct SyncState {
    /// Sequences below this are on stable storage.
    pub(crate) durable_next: u64,
    pub(crate) in_progress: bool,
    pub(crate) failure: Option<String>,
    /// Threads parked until the sync in progress ends.
    pub(crate) parked: Vec<Parked>,
    /// The leader of the sync in progress waits for its own receipts.
    pub(crate) leader_appends: bool,
    /// Appenders that waited when the last sync ended: how many a leader
    /// expects back before it starts the next one.
    pub(crate) expected: u64,
    /// While appenders gather for the next sync (none in progress): when the
    /// first of them stops waiting for the rest.
    pub(crate) gather_until: Option<std::time::Instant>,
    /// How long the last sync took.
    pub(crate) last_sync: Duration,
}

/// A thread waiting for a sync: what it needs synced, and who it is.
#[derive(Debug)]
pub(crate) struct Parked {
    through: u64,
    appender: bool,
    thread: std::thread::ThreadId,
}

impl SyncState {
    /// Threads waiting for durability, the leader included (for stats).
    pub(crate) fn waiters(&self) -> u64 {
        self.parked.len() as u64 + u64::from(self.in_progress)
    }

    /// Parked appenders that the syncs so far do not cover.
    fn uncovered(&self) -> u64 {
        self.parked
            .iter()
            .filter(|p| p.appender && p.through > self.durable_next)
            .count() as u64
    }

    /// Takes this thread's entry out of `parked`, if a release has not.
    fn unpark_self(&mut self, through: u64) {
        let me = std::thread::current().id();
        if let Some(at) = self
            .parked
            .iter()
            .position(|p| p.through == through && p.thread == me)
        {
            self.parked.swap_remove(at);
        }
    }
}

pub(crate) struct Inner {
    pub(crate) config: StoreConfig,
    pub(crate) io: Arc<dyn StorageIo>,
    pub(crate) read_only: bool,
    pub(crate) index: RwLock<Index>,
    pub(crate) writer: Mutex<Writer>,
    pub(crate) sync: Mutex<SyncState>,
    /// The wait round: advanced (under the sync lock) whenever the parked
    /// threads are released; they sleep on it, and one wake releases them all.
    pub(crate) round: RoundSignal,
    /// Mirror of `SyncState::durable_next` for lock-free reads.
    pub(crate) durable_next: AtomicU64,
    /// Syncs of the log and appenders' waits for them (for `stats()`).
    pub(crate) sync_counters: SyncCounters,
    pub(crate) segments: RwLock<BTreeMap<u32, Arc<SegmentReader>>>,
    /// Packed (segment, offset): every frame before it is in the OS.
    pub(crate) flushed: AtomicU64,
    /// Taken by waiters for new events (and by whoever wakes them), so a
    /// wake-up cannot fall between a waiter's check and its sleep.
    pub(crate) publish: Mutex<()>,
    pub(crate) published: Condvar,
    /// Threads waiting on `published` (see [`Inner::publish`]).
    pub(crate) publish_waiters: AtomicUsize,
    /// Mirror of the index's visible bound, changed by [`Inner::publish`].
    pub(crate) visible: AtomicU64,
    pub(crate) open_report: OpenReport,
    pub(crate) lock_file: Mutex<Option<File>>,
    pub(crate) closed: AtomicBool,
    pub(crate) flusher: Mutex<Option<JoinHandle<()>>>,
    pub(crate) flusher_stop: Mutex<bool>,
    pub(crate) flusher_wake: Condvar,
    /// Live feeds: the lossy-subscription dispatcher and the open named cursors.
    pub(crate) feeds: crate::feed::FeedState,
    /// Set when relaxed appends reach half the cadence: the background thread
    /// syncs early, so the appender that reaches the full cadence rarely waits.
    pub(crate) sync_requested: AtomicBool,
    /// Footers and checkpoints (see `checkpoint.rs`).
    pub(crate) maintenance: super::checkpoint::Maintenance,
    /// Background preallocation (lock order: `writer` → `extension`).
    pub(crate) extension: Mutex<Extension>,
    pub(crate) extension_done: Condvar,
    /// Held while bytes go to the active segment, so writes land in order
    /// even when a sync leader writes without the writer lock (lock order:
    /// `writer` → `flushing`; see [`Inner::flush_unlocked`]).
    pub(crate) flushing: Mutex<Flushing>,
}

/// How often the log was synced and appenders waited for it, since open.
#[derive(Debug, Default)]
pub(crate) struct SyncCounters {
    syncs: AtomicU64,
    sync_nanos: AtomicU64,
    waits: AtomicU64,
    wait_nanos: AtomicU64,
}

impl SyncCounters {
    fn record_sync(&self, took: Duration) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.sync_nanos.fetch_add(nanos(took), Ordering::Relaxed);
    }

    fn record_wait(&self, took: Duration) {
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.wait_nanos.fetch_add(nanos(took), Ordering::Relaxed);
    }

    /// (syncs, time in them, waits, time waited).
    pub(crate) fn snapshot(&self) -> (u64, Duration, u64, Duration) {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        (
            load(&self.syncs),
            Duration::from_nanos(load(&self.sync_nanos)),
            load(&self.waits),
            Duration::from_nanos(load(&self.wait_nanos)),
        )
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The write in flight to the active segment.
#[derive(Debug, Default)]
pub(crate) struct Flushing {
    /// The bytes being written; swapped with the active segment's pending
    /// buffer, so both keep their capacity.
    spare: Vec<u8>,
    /// A write made without the writer lock failed and the store is about
    /// to be poisoned: no later bytes may follow it into the file.
    failed: bool,
}

pub(crate) fn pack_position(segment: u32, offset: u64) -> u64 {
    (u64::from(segment) << 32) | offset.min(u64::from(u32::MAX))
}

pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An entity's head while a unit is planned: its name, its id (`None` if
/// it has no events yet), and its clock and link after the unit's events so far.
#[derive(Clone, Copy)]
struct Head<'a> {
    name: &'a str,
    id: Option<u32>,
    clock: u64,
    link: Option<EventHash>,
}

/// One frame of a planned unit: its fields, its link and its entity's id.
struct Planned<'a> {
    fields: FrameFields<'a>,
    hash: Option<EventHash>,
    entity_id: Option<u32>,
}

/// A thread counted in `Inner::publish_waiters`; uncounts it on drop.
pub(crate) struct NewEventsWaiter<'a>(&'a AtomicUsize);

impl Drop for NewEventsWaiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Who waits in [`Inner::sync_through_as`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiter {
    Appender,
    Other,
}

/// The receipts of one unit, inline for a single event.
pub(crate) type Receipts = SmallVec<[AppendReceipt; 1]>;

/// What an append produced before any wait for durability.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) receipts: Receipts,
    /// Sequences below this must be durable before the receipts may be returned.
    pub(crate) sync_through: Option<u64>,
}

/// One event the writer is about to encode.
struct Draft<'a> {
    coordinate: &'a Coordinate,
    kind: EventKind,
    payload: &'a [u8],
    /// blake3 of the payload, computed before the writer lock is taken.
    digest: PayloadDigest,
    expect_clock: Option<u64>,
    correlation_id: Option<EventId>,
    causation: Option<Causation>,
    flags: u16,
    schema_version: u16,
}

impl Inner {
    pub(crate) fn segment_path(&self, id: u32) -> PathBuf {
        self.config.dir.join(segment_file_name(id))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.config.dir
    }

    pub(crate) fn check_writable(&self, writer: &Writer) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        if let Some(reason) = &writer.poisoned {
            return Err(StoreError::Poisoned {
                reason: reason.clone(),
            });
        }
        Ok(())
    }

    /// Appends one already-encoded payload.
    pub(crate) fn append_one(
        &self,
        coordinate: &Coordinate,
        kind: EventKind,
        payload: &[u8],
        options: &AppendOptions,
        allow_reserved: bool,
    ) -> Result<Accepted, StoreError> {
        if kind.is_reserved() && !allow_reserved {
            return Err(StoreError::ReservedKind { kind });
        }
        if let Some(key) = &options.idempotency_key {
            key.validate()?;
        }
        let draft = Draft {
            coordinate,
            kind,
            payload,
            digest: PayloadDigest::of(payload),
            expect_clock: options.expect_clock,
            correlation_id: options.correlation_id,
            causation: options.causation_id.map(Causation::Event),
            flags: options.flags,
            schema_version: options.schema_version,
        };
        self.append_unit(
            std::slice::from_ref(&draft),
            options.idempotency_key.as_ref().map(|k| k.as_bytes()),
            options.durable,
        )
        .map_err(|(_, error)| error)
    }

    /// Appends an atomic batch.
    pub(crate) fn append_batch(
        &self,
        batch: &Batch,
        allow_reserved: bool,
    ) -> Result<Accepted, StoreError> {
        let limit_items = self.config.batch_max_items as usize;
        if batch.items.is_empty() {
            return Err(StoreError::BatchRejected {
                reason: "a batch needs at least one item".into(),
            });
        }
        if batch.items.len() > limit_items {
            return Err(StoreError::BatchRejected {
                reason: format!(
                    "{} items exceed the limit of {limit_items}",
                    batch.items.len()
                ),
            });
        }
        if let Some(key) = &batch.idempotency_key {
            key.validate()?;
        }
        let mut total_bytes: u64 = 0;
        for (index, item) in batch.items.iter().enumerate() {
            let reject = |source: StoreError| StoreError::BatchItem {
                index,
                source: Box::new(source),
            };
            if item.kind.is_reserved() && !allow_reserved {
                return Err(reject(StoreError::ReservedKind { kind: item.kind }));
            }
            if item.payload.len() > self.config.payload_max_bytes as usize {
                return Err(reject(StoreError::PayloadTooLarge {
                    size: item.payload.len() as u64,
                    max: u64::from(self.config.payload_max_bytes),
                }));
            }
            if let Some(Causation::Item(cause)) = item.causation {
                if cause >= index {
                    return Err(reject(StoreError::InvalidInput {
                        reason: format!(
                            "item {index} names item {cause} as its cause; a cause must be an earlier item"
                        ),
                    }));
                }
            }
            // The largest frame this item can become: prefix, fixed part, both
            // causal ids and the hash (the key is added below).
            total_bytes += (item.payload.len()
                + item.coordinate.entity().len()
                + item.coordinate.scope().len()
                + FRAME_PREFIX_BYTES
                + BODY_FIXED_BYTES
                + 16
                + 16
                + 32) as u64;
        }
        total_bytes += batch
            .idempotency_key
            .as_ref()
            .map_or(0, |k| k.as_bytes().len() as u64);
        if total_bytes > self.config.batch_max_bytes {
            return Err(StoreError::BatchRejected {
                reason: format!(
                    "up to {total_bytes} encoded bytes exceed the limit of {}",
                    self.config.batch_max_bytes
                ),
            });
        }
        let drafts: Vec<Draft<'_>> = batch
            .items
            .iter()
            .map(|item| Draft {
                coordinate: &item.coordinate,
                kind: item.kind,
                payload: &item.payload,
                digest: PayloadDigest::of(&item.payload),
                expect_clock: item.expect_clock,
                correlation_id: item.correlation_id,
                causation: item.causation,
                flags: item.flags,
                schema_version: item.schema_version,
            })
            .collect();
        self.append_unit(
            &drafts,
            batch.idempotency_key.as_ref().map(|k| k.as_bytes()),
            batch.durable,
        )
        .map_err(|(index, error)| match index {
            Some(index) => StoreError::BatchItem {
                index,
                source: Box::new(error),
            },
            None => error,
        })
    }

    /// The heart of the write path: validates, assigns, encodes and indexes
    /// one unit (a single event or a batch) under the writer lock. Errors carry
    /// the position of the offending item, if one is to blame.
    fn append_unit(
        &self,
        drafts: &[Draft<'_>],
        key: Option<&[u8]>,
        durable: bool,
    ) -> Result<Accepted, (Option<usize>, StoreError)> {
        let mut writer = self.writer.lock();
        self.check_writable(&writer).map_err(|e| (None, e))?;
        let index = self.index.upgradable_read();

        if let Some(key) = key {
            if let Some((first, count)) = index.idempotent_unit(key) {
                drop(index);
                drop(writer);
                return self.replay_receipts(first, count).map_err(|e| (None, e));
            }
        }

        // Validate every item and assign clocks and links, as if the items
        // applied one after another.
        let first_sequence = index.next_sequence();
        let timestamp_us = now_us();
        let now_ms = u64::try_from(timestamp_us / 1000).unwrap_or(0);
        // Inline for single events: the common append allocates nothing here.
        let mut heads: SmallVec<[Head<'_>; 1]> = SmallVec::with_capacity(drafts.len());
        let mut frames: SmallVec<[Planned<'_>; 1]> = SmallVec::with_capacity(drafts.len());
        let mut unit_bytes = 0usize;
        for (position, draft) in drafts.iter().enumerate() {
            let entity = draft.coordinate.entity();
            let slot = match heads.iter().position(|head| head.name == entity) {
                Some(slot) => slot,
                None => {
                    let (id, clock, link) = index.entity_head_and_id(entity);
                    heads.push(Head {
                        name: entity,
                        id,
                        clock,
                        link,
                    });
                    heads.len() - 1
                }
            };
            let Head {
                id: entity_id,
                clock,
                link: previous_hash,
                ..
            } = heads[slot];
            if let Some(expected) = draft.expect_clock {
                if expected != clock {
                    return Err((
                        Some(position),
                        StoreError::ClockMismatch {
                            expected,
                            actual: clock,
                        },
                    ));
                }
            }
            if clock >= u64::from(u32::MAX) {
                return Err((
                    Some(position),
                    StoreError::CapacityExceeded {
                        reason: format!("entity {entity} has reached {clock} events"),
                    },
                ));
            }
            let event_id = writer.ids.next(now_ms);
            let cause = match draft.causation {
                Some(Causation::Item(cause)) => Some(&frames[cause].fields),
                _ => None,
            };
            let causation_id = match draft.causation {
                Some(Causation::Event(id)) => Some(id),
                Some(Causation::Item(_)) => cause.map(|c: &FrameFields<'_>| c.event_id),
                None => None,
            };
            let correlation = match (draft.correlation_id, cause) {
                (Some(id), _) => id,
                (None, Some(cause)) => cause.correlation_id.unwrap_or(cause.event_id),
                (None, None) => event_id,
            };
            let fields = FrameFields {
                sequence: first_sequence + position as u64,
                clock: clock + 1,
                timestamp_us,
                event_id,
                batch_remaining: (drafts.len() - 1 - position) as u32,
                kind: draft.kind,
                flags: draft.flags,
                schema_version: draft.schema_version,
                correlation_id: (correlation != event_id).then_some(correlation),
                causation_id,
                idempotency_key: if position == 0 { key } else { None },
                entity,
                scope: draft.coordinate.scope(),
                payload: draft.payload,
            };
            let hash = link(previous_hash.as_ref(), &fields, &draft.digest);
            heads[slot].clock = clock + 1;
            heads[slot].link = hash;
            unit_bytes += fields.encoded_len(hash.is_some());
            frames.push(Planned {
                fields,
                hash,
                entity_id,
            });
        }

        // Make room, then encode.
        let Some(active) = writer.active.as_ref() else {
            return Err((None, StoreError::ReadOnly));
        };
        let end = active.end();
        let header_only = end <= SEGMENT_HEADER_BYTES as u64;
        let too_big = end + unit_bytes as u64 > self.config.segment_max_bytes
            || end + unit_bytes as u64 > u64::from(u32::MAX);
        if too_big && !header_only {
            drop(index);
            if let Err(error) = self.rotate(&mut writer) {
                return Err((None, error));
            }
            drop(writer);
            // Sequences, clocks and links were computed against the old
            // state, which rotation does not change; recompute for simplicity.
            return self.append_unit(drafts, key, durable);
        }
        let mut index = RwLockUpgradableReadGuard::upgrade(index);
        let active = writer.active.as_mut().ok_or((None, StoreError::ReadOnly))?;
        let segment = active.id;
        let count = frames.len() as u32;
        let mut receipts = Receipts::with_capacity(frames.len());
        for (position, planned) in frames.iter().enumerate() {
            let Planned {
                fields,
                hash,
                entity_id,
            } = planned;
            let offset = active.end();
            encode_frame(fields, hash.as_ref(), &mut active.pending);
            let pushed = index.push_known(
                NewEntry {
                    sequence: fields.sequence,
                    segment,
                    offset: offset as u32,
                    timestamp_us,
                    event_id: fields.event_id,
                    entity: fields.entity,
                    scope: fields.scope,
                    clock: fields.clock,
                    kind: fields.kind,
                    flags: fields.flags,
                    correlation_id: fields.correlation_id,
                    causation_id: fields.causation_id,
                    idempotency: fields.idempotency_key.map(|k| (k, count)),
                    hash: *hash,
                    stub: false,
                },
                *entity_id,
            );
            if let Err(reason) = pushed {
                // Unreachable by construction; fail loudly rather than write a
                // log the index disagrees with.
                drop(index);
                self.fail(&mut writer, format!("index rejected event: {reason}"));
                return Err((Some(position), StoreError::Poisoned { reason }));
            }
            receipts.push(AppendReceipt {
                event_id: fields.event_id,
                sequence: fields.sequence,
                clock: fields.clock,
                hash: *hash,
            });
        }
        let last_sequence = first_sequence + u64::from(count) - 1;
        tracing::trace!(first_sequence, count, durable, "append");
        let cadence = u64::from(self.config.sync_every_n_events);
        let unsynced = last_sequence + 1 - self.durable_next.load(Ordering::Acquire);
        // A durable unit is hidden until its sync and waits for it. A relaxed
        // unit that reaches the cadence is visible at once like any relaxed
        // one, but its appender waits until at most `cadence - 1` of the
        // acknowledged events are unsynced, which a sync already under way
        // usually achieves; with `cadence = 1` that is its own sync.
        let must_sync = durable || cadence <= 1;
        let wait_through = if must_sync {
            Some(last_sequence + 1)
        } else if unsynced >= cadence {
            Some(last_sequence + 2 - cadence)
        } else {
            None
        };
        if must_sync {
            writer
                .awaiting_sync
                .push_back((first_sequence, last_sequence));
        } else if writer.awaiting_sync.is_empty() {
            index.set_visible(last_sequence + 1);
        }
        let visible = index.visible();
        drop(index);
        self.publish(visible);
        if !must_sync
            && unsynced * 2 >= cadence
            && !self.sync_requested.load(Ordering::Acquire)
            && !self.sync_requested.swap(true, Ordering::AcqRel)
        {
            let _stop = self.flusher_stop.lock();
            self.flusher_wake.notify_one();
        }
        if !must_sync {
            let over = writer
                .active
                .as_ref()
                .is_some_and(|a| a.pending.len() >= self.config.write_buffer_bytes);
            if over {
                if let Err(error) = self.flush_pending(&mut writer) {
                    return Err((None, error));
                }
            }
        }
        Ok(Accepted {
            receipts,
            sync_through: wait_through,
        })
    }

    /// Receipts of an earlier unit, for an idempotent retry. Read from the
    /// frames, which may be stubs if compaction removed the events since.
    fn replay_receipts(&self, first: u64, count: u32) -> Result<Accepted, StoreError> {
        let last = first + u64::from(count) - 1;
        let visible = self.index.read().visible();
        let sync_through = (last >= visible).then_some(last + 1);
        if let Some(through) = sync_through {
            self.sync_through(through)?;
        }
        let mut receipts = Receipts::with_capacity(count as usize);
        for sequence in first..=last {
            receipts.push(self.receipt_at(sequence)?);
        }
        Ok(Accepted {
            receipts,
            sync_through: None,
        })
    }

    /// The receipt of the event (or stub of a removed event) at `sequence`.
    fn receipt_at(&self, sequence: u64) -> Result<AppendReceipt, StoreError> {
        let gone = || StoreError::Poisoned {
            reason: format!("idempotent unit at sequence {sequence} is gone"),
        };
        let (entry, reader) = {
            let index = self.index.read();
            let entry = index.entry_any(sequence).ok_or_else(gone)?;
            if entry.segment == super::index::VANISHED {
                return Err(gone());
            }
            let segment = entry.segment & !super::index::DROPPED;
            (entry, self.segments.read().get(&segment).cloned())
        };
        let segment = entry.segment & !super::index::DROPPED;
        self.ensure_flushed(segment, u64::from(entry.offset))?;
        let reader = reader.ok_or_else(gone)?;
        let offset = u64::from(entry.offset);
        let corrupt = |reason: String| StoreError::corrupt(reader.path.clone(), offset, reason);
        let read = reader.with_frame(offset, |bytes| {
            let view =
                super::log::frame::decode_frame(bytes).map_err(|e| corrupt(e.to_string()))?;
            if view.sequence != sequence {
                return Err(corrupt(format!(
                    "frame does not match the index entry for sequence {sequence}"
                )));
            }
            Ok(AppendReceipt {
                event_id: view.event_id,
                sequence,
                clock: view.clock,
                hash: view.hash,
            })
        });
        match read {
            Ok(receipt) => receipt,
            Err(ReadFrameError::Io(source)) => {
                Err(StoreError::io("read", reader.path.clone(), source))
            }
            Err(ReadFrameError::Frame(error)) => Err(corrupt(error.to_string())),
        }
    }

    /// Hands the pending bytes to the operating system, under the writer lock.
    /// Also waits for a write in flight ([`Inner::flush_unlocked`]), so when it
    /// returns every byte before `end()` is in the operating system.
    pub(crate) fn flush_pending(&self, writer: &mut Writer) -> Result<(), StoreError> {
        let Some(flushing) = self.begin_flush(writer)? else {
            return Ok(());
        };
        let Some(active) = writer.active.as_mut() else {
            return Ok(());
        };
        match active.file.write_all_at(&active.pending, active.written) {
            Ok(()) => {
                active.written += active.pending.len() as u64;
                active.pending.clear();
                self.flushed
                    .store(pack_position(active.id, active.written), Ordering::Release);
                Ok(())
            }
            Err(source) => {
                let error = StoreError::io("write", active.path.clone(), source);
                drop(flushing);
                self.fail(writer, error.to_string());
                Err(error)
            }
        }
    }

    /// [`Inner::flush_pending`] for a sync leader: takes the pending bytes
    /// under the writer lock, then releases it and writes them, so appenders
    /// keep encoding while the bytes are copied to the operating system.
    /// `flushing` is held across the write: whoever writes next, or changes
    /// the file's length, waits for it.
    fn flush_unlocked(&self, mut writer: MutexGuard<'_, Writer>) -> Result<(), StoreError> {
        let Some(mut flushing) = self.begin_flush(&mut writer)? else {
            return Ok(());
        };
        let Some(active) = writer.active.as_mut() else {
            return Ok(());
        };
        std::mem::swap(&mut active.pending, &mut flushing.spare);
        let offset = active.written;
        let end = offset + flushing.spare.len() as u64;
        active.written = end;
        let (file, id, path) = (active.file.clone(), active.id, active.path.clone());
        drop(writer);
        let written = file.write_all_at(&flushing.spare, offset);
        flushing.spare.clear();
        match written {
            Ok(()) => {
                self.flushed
                    .store(pack_position(id, end), Ordering::Release);
                Ok(())
            }
            Err(source) => {
                flushing.failed = true;
                drop(flushing);
                let error = StoreError::io("write", path, source);
                self.fail(&mut self.writer.lock(), error.to_string());
                Err(error)
            }
        }
    }

    /// The start of every flush: takes `flushing` (waiting for a write in
    /// flight) and makes room for the pending bytes. `None`: nothing to
    /// write. A failure poisons the store.
    fn begin_flush(
        &self,
        writer: &mut Writer,
    ) -> Result<Option<MutexGuard<'_, Flushing>>, StoreError> {
        let flushing = self.flushing.lock();
        if flushing.failed {
            // An earlier write made without the writer lock failed.
            drop(flushing);
            let reason = writer
                .poisoned
                .clone()
                .unwrap_or_else(|| "an earlier write to the log failed".into());
            self.fail(writer, reason.clone());
            return Err(StoreError::Poisoned { reason });
        }
        let Some(active) = writer.active.as_mut() else {
            return Ok(None);
        };
        if active.pending.is_empty() {
            return Ok(None);
        }
        if let Err(error) = self.make_room(active) {
            drop(flushing);
            self.fail(writer, error.to_string());
            return Err(error);
        }
        Ok(Some(flushing))
    }

    /// Makes sure the zeros ahead of the log reach past the pending bytes,
    /// writing (and syncing) the next preallocation step if they do not.
    fn make_room(&self, active: &mut Active) -> Result<(), StoreError> {
        let end = active.end();
        if end > active.allocated {
            self.settle_extension(active);
        }
        if end > active.allocated {
            let step = preallocation_step(self.config.segment_max_bytes);
            let target = end.max(active.allocated + step);
            write_zeros(
                active.file.as_ref(),
                active.allocated,
                target,
                Some(self.config.sync_mode),
            )
            .map_err(|source| StoreError::io("preallocate", active.path.clone(), source))?;
            active.allocated = target;
        }
        Ok(())
    }

    /// Everything below `through` is on stable storage: raises the durable
    /// bound (and its lock-free mirror).
    fn record_durable(&self, state: &mut SyncState, through: u64) {
        state.durable_next = state.durable_next.max(through);
        self.durable_next
            .store(state.durable_next, Ordering::Release);
    }

    /// Ends a wait round: every parked thread wakes and looks again. Takes
    /// the sync lock's guard and releases it before waking them.
    fn release_waiters(&self, mut state: MutexGuard<'_, SyncState>) {
        self.round.advance();
        let parked = std::mem::take(&mut state.parked);
        drop(state);
        if !parked.is_empty() {
            self.round.wake_all();
        }
    }

    /// Waits for a background extension of the active segment to finish and
    /// adopts its zeros. Called under the writer lock before anything writes
    /// past `allocated` or changes the file's length.
    pub(crate) fn settle_extension(&self, active: &mut Active) {
        let mut extension = self.extension.lock();
        while extension.busy {
            self.extension_done.wait(&mut extension);
        }
        extension.adopt(active);
    }

    /// Background thread of relaxed stores, after each interval sync: keeps
    /// the zeros ahead of the log about one preallocation step long by
    /// writing the next [`EXTENSION_CHUNK`] of them, without a lock held and
    /// without a sync of their own. The next interval sync carries them to
    /// disk with its data, a little at a time. Written by the appender, the
    /// whole step and its sync would stall appends for milliseconds, and a
    /// step written here in one go would hold up the syncs appenders wait for.
    /// `busy` keeps everyone else out of the range until it is adopted. A
    /// failure is only logged: the appender then writes the zeros itself and
    /// reports its own failure.
    pub(crate) fn extend_ahead(&self) {
        let step = preallocation_step(self.config.segment_max_bytes);
        let job = {
            let mut writer = self.writer.lock();
            if writer.poisoned.is_some() || self.closed.load(Ordering::Acquire) {
                return;
            }
            let Some(active) = writer.active.as_mut() else {
                return;
            };
            let mut extension = self.extension.lock();
            if extension.busy {
                return;
            }
            extension.adopt(active);
            let to = (active.allocated + EXTENSION_CHUNK).min(self.config.segment_max_bytes);
            if active.allocated >= active.end() + step || to <= active.allocated {
                return;
            }
            extension.busy = true;
            (active.file.clone(), active.id, active.allocated, to)
        };
        let (file, segment, from, to) = job;
        let written = write_zeros(file.as_ref(), from, to, None);
        if written.is_ok() {
            // Start the zeros on their way to the device now: the sync that
            // carries them (and the new file length) is one appenders may
            // wait for, and it took about twice as long as any other while
            // it also had to write them (W1: 500-700 µs against 210-280).
            file.start_writeback(from, to - from);
        }
        if let Err(error) = &written {
            tracing::warn!(%error, segment, "could not preallocate ahead of the log");
        }
        let mut extension = self.extension.lock();
        extension.busy = false;
        extension.done = written.ok().map(|()| (segment, to));
        self.extension_done.notify_all();
    }

    /// Makes every sequence below `through` durable, leading a sync if no one
    /// else is. Returns an error if the sync that should have covered it failed.
    pub(crate) fn sync_through(&self, through: u64) -> Result<(), StoreError> {
        self.sync_through_as(through, Waiter::Other)
    }

    /// [`Inner::sync_through`] for an appender waiting for its receipts.
    ///
    /// Appenders are counted so that syncs cover whole groups: the appenders
    /// a sync releases come straight back with their next events, and a
    /// leader that started syncing at once would cover only the few already
    /// back, leaving the rest for the sync after (groups settle at about half
    /// the appenders). So while no sync is under way, an appender parks until
    /// as many appenders wait as did when the last sync ended; the one that
    /// completes the group leads the sync at once, without waking anyone.
    /// After half the last sync's duration the first of them leads with
    /// those that came, and the group expected shrinks to that. A single
    /// appender never waits (it is the one expected), nor does a waiter that
    /// is not an appender (the interval sync, `Store::sync`).
    pub(crate) fn sync_through_appender(&self, through: u64) -> Result<(), StoreError> {
        self.sync_through_as(through, Waiter::Appender)
    }

    /// The appender's side of an accepted unit: waits for the sync it needs,
    /// if any (`Accepted::sync_through`), before its receipts may go out.
    /// Counted in `stats()` when it has to wait.
    pub(crate) fn await_sync(&self, sync_through: Option<u64>) -> Result<(), StoreError> {
        let Some(through) = sync_through else {
            return Ok(());
        };
        if self.durable_next.load(Ordering::Acquire) >= through {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let outcome = self.sync_through_appender(through);
        self.sync_counters.record_wait(started.elapsed());
        outcome
    }

    fn sync_through_as(&self, through: u64, waiter: Waiter) -> Result<(), StoreError> {
        let appender = waiter == Waiter::Appender;
        let mut state = self.sync.lock();
        loop {
            if state.durable_next >= through {
                return Ok(());
            }
            if let Some(reason) = &state.failure {
                return Err(StoreError::Poisoned {
                    reason: reason.clone(),
                });
            }
            let now = std::time::Instant::now();
            let waiting = state.uncovered() + 1;
            let gather = !state.in_progress
                && appender
                && waiting < state.expected
                && state.gather_until.is_none_or(|until| now < until);
            if state.in_progress || gather {
                // Park until the round ends (or, gathering, until the group
                // is complete or the time is up). Threads a sync covered
                // return without taking the lock again, so a large group
                // wakes at once instead of one lock hand-over at a time.
                // Only the first appender of a gathering keeps time; the
                // rest wait for the round to end like any waiter (a timer
                // each would wake them all in the middle of the sync).
                let deadline = match state.gather_until {
                    None if gather => {
                        let until = now + state.last_sync / 2;
                        state.gather_until = Some(until);
                        Some(until)
                    }
                    _ => None,
                };
                state.parked.push(Parked {
                    through,
                    appender,
                    thread: std::thread::current().id(),
                });
                // Read under the sync lock, which every release holds.
                let round = self.round.current();
                drop(state);
                let released = loop {
                    if self.round.current() != round {
                        break true;
                    }
                    if deadline.is_some_and(|deadline| std::time::Instant::now() >= deadline) {
                        break false;
                    }
                    self.round.wait(round, deadline);
                };
                if released && self.durable_next.load(Ordering::Acquire) >= through {
                    return Ok(());
                }
                state = self.sync.lock();
                if !released {
                    state.unpark_self(through);
                }
                continue;
            }
            if state.gather_until.take().is_some() && appender && waiting < state.expected {
                // The time ran out: some appender has stopped.
                state.expected = waiting;
            }
            state.in_progress = true;
            state.leader_appends = appender;
            drop(state);
            let started = std::time::Instant::now();
            let outcome = self.lead_sync();
            let took = started.elapsed();
            state = self.sync.lock();
            state.in_progress = false;
            state.last_sync = took;
            let appenders = state.parked.iter().filter(|p| p.appender).count() as u64
                + u64::from(state.leader_appends);
            state.expected = state.expected.max(appenders);
            // A successful leader recorded the new bound itself.
            if let Err(reason) = outcome {
                state.failure.get_or_insert(reason);
            }
            self.release_waiters(state);
            state = self.sync.lock();
        }
    }

    /// Syncs a segment to make its appended events durable, counting the
    /// sync and its time in `stats()` when it succeeds.
    fn sync_log(&self, file: &dyn StorageFile) -> std::io::Result<()> {
        let started = std::time::Instant::now();
        file.sync(self.config.sync_mode)?;
        let took = started.elapsed();
        tracing::trace!(elapsed_us = took.as_micros() as u64, "log sync");
        self.sync_counters.record_sync(took);
        Ok(())
    }

    /// One group commit: flush under the writer lock, sync outside it, then
    /// record the new durable bound and publish everything the sync covered.
    fn lead_sync(&self) -> Result<(), String> {
        let (file, through, path) = {
            let writer = self.writer.lock();
            if let Some(reason) = &writer.poisoned {
                return Err(reason.clone());
            }
            let through = self.index.read().next_sequence();
            let Some(active) = writer.active.as_ref() else {
                return Err("store is read-only".into());
            };
            let (file, path) = (active.file.clone(), active.path.clone());
            self.flush_unlocked(writer).map_err(|e| e.to_string())?;
            (file, through, path)
        };
        let synced = self.sync_log(file.as_ref());
        tracing::trace!(through, "group sync");
        let mut writer = self.writer.lock();
        if let Some(reason) = &writer.poisoned {
            return Err(reason.clone());
        }
        match synced {
            Ok(()) => {
                // Record the new durable bound before the writer lock goes:
                // a write failing on another thread right after must cut the
                // log back to it, not to the bound before this sync (which
                // would drop events this sync made durable and that their
                // appenders are about to be told are).
                self.record_durable(&mut self.sync.lock(), through);
                self.complete_durable(&mut writer, through);
                Ok(())
            }
            Err(source) => {
                let reason = StoreError::io("sync", path, source).to_string();
                self.fail(&mut writer, reason.clone());
                Err(reason)
            }
        }
    }

    /// Everything below `through` is durable: reveal the units that waited.
    fn complete_durable(&self, writer: &mut Writer, through: u64) {
        let waited = writer.awaiting_sync.len();
        while writer
            .awaiting_sync
            .front()
            .is_some_and(|&(_, last)| last < through)
        {
            writer.awaiting_sync.pop_front();
        }
        if waited == 0 {
            // Nothing was hidden (relaxed appends are visible at once): no
            // need to hold up appenders for the index lock.
            return;
        }
        let mut index = self.index.write();
        let visible = match writer.awaiting_sync.front() {
            Some(&(first, _)) => first,
            None => index.next_sequence(),
        };
        let visible = visible.max(index.visible());
        index.set_visible(visible);
        let visible = index.visible();
        drop(index);
        self.publish(visible);
    }

    /// Moves the visible bound and wakes the waiters for new events, if any.
    ///
    /// Publishers hold the writer lock, so they take turns. A waiter counts
    /// itself in `publish_waiters` under the publish lock before it looks at
    /// `visible` ([`Inner::count_new_events_waiter`]); both sides use `SeqCst`, so either
    /// the waiter sees the new bound or this sees the waiter and wakes it
    /// under the lock. With no one waiting (every append of a store without
    /// followers) the lock is not taken.
    pub(crate) fn publish(&self, visible: u64) {
        let previous = self.visible.swap(visible, Ordering::SeqCst);
        if visible != previous && self.publish_waiters.load(Ordering::SeqCst) > 0 {
            let _guard = self.publish.lock();
            self.published.notify_all();
        }
    }

    /// Counts the calling thread among the waiters for new events until the
    /// returned guard drops. Call with the publish lock held, before the
    /// first look at `visible` (see [`Inner::publish`]).
    pub(crate) fn count_new_events_waiter(&self) -> NewEventsWaiter<'_> {
        self.publish_waiters.fetch_add(1, Ordering::SeqCst);
        NewEventsWaiter(&self.publish_waiters)
    }

    /// Seals the active segment (syncing it) and starts the next one.
    pub(crate) fn rotate(&self, writer: &mut Writer) -> Result<(), StoreError> {
        self.flush_pending(writer)?;
        let Some(active) = writer.active.as_mut() else {
            return Err(StoreError::ReadOnly);
        };
        self.settle_extension(active);
        let old_id = active.id;
        let old_path = active.path.clone();
        // A sealed segment ends exactly at its last frame.
        let trimmed = if active.allocated > active.written {
            active.file.set_len(active.written)
        } else {
            Ok(())
        };
        if let Err(source) = trimmed.and_then(|()| self.sync_log(active.file.as_ref())) {
            let error = StoreError::io("sync", old_path, source);
            self.fail(writer, error.to_string());
            return Err(error);
        }
        let through = self.index.read().next_sequence();
        {
            let mut state = self.sync.lock();
            self.record_durable(&mut state, through);
            self.release_waiters(state);
        }
        self.complete_durable(writer, through);
        match SegmentReader::open(old_path.clone(), true) {
            Ok(reader) => {
                self.segments.write().insert(old_id, Arc::new(reader));
            }
            Err(source) => {
                let error = StoreError::io("map", old_path, source);
                self.fail(writer, error.to_string());
                return Err(error);
            }
        }
        // The index marks removed events with the top bit of the segment id.
        let new_id = old_id
            .checked_add(1)
            .filter(|id| id & super::index::DROPPED == 0)
            .ok_or_else(|| StoreError::CapacityExceeded {
                reason: "segment ids exhausted".into(),
            })?;
        match create_segment(self, new_id, through) {
            Ok(active) => {
                writer.active = Some(active);
                tracing::debug!(
                    segment = new_id,
                    first_sequence = through,
                    "rotated segment"
                );
                Ok(())
            }
            Err(error) => {
                self.fail(writer, error.to_string());
                Err(error)
            }
        }
    }

    /// A write or sync failed: fail every waiter, cut the log back to what is
    /// known durable, and refuse writes until reopen. Never retry a failed
    /// sync: the kernel may have dropped the dirty pages it could not write.
    pub(crate) fn fail(&self, writer: &mut Writer, reason: String) {
        if writer.poisoned.is_some() {
            return;
        }
        tracing::error!(%reason, "write path failed; store refuses writes until reopened");
        writer.poisoned = Some(reason.clone());
        writer.awaiting_sync.clear();
        let durable_next = self.sync.lock().durable_next;
        let mut index = self.index.write();
        if let Some(active) = writer.active.as_mut() {
            self.settle_extension(active);
            // A write in flight finishes (or fails) before the cut.
            drop(self.flushing.lock());
            active.pending.clear();
            // Cut at the first event that is not durable. Rotation syncs the
            // sealed segment first, so that event is in the active segment.
            if let Some(entry) = index.entry_any(durable_next) {
                if entry.segment == active.id {
                    let cut = u64::from(entry.offset);
                    // If the truncation itself fails, overwrite the failed
                    // tail with zeros instead: recovery reads zeros as a torn
                    // tail and cuts them, so the failed frames can never
                    // come back as events (no undead events).
                    let end = active.written.max(cut);
                    let cut_ok = active
                        .file
                        .set_len(cut)
                        .or_else(|error| {
                            tracing::error!(%error, "could not truncate the failed tail; zeroing it");
                            let zeros = vec![0u8; usize::try_from(end - cut).unwrap_or(0)];
                            active.file.write_all_at(&zeros, cut)
                        })
                        .and_then(|()| active.file.sync(self.config.sync_mode));
                    match cut_ok {
                        Ok(()) => {
                            active.written = cut;
                            active.allocated = active.allocated.min(cut);
                        }
                        Err(error) => {
                            tracing::error!(%error, "could not cut the unsynced tail back");
                        }
                    }
                }
            }
            self.flushed
                .store(pack_position(active.id, active.written), Ordering::Release);
        }
        index.truncate(durable_next);
        let visible = index.visible();
        drop(index);
        {
            let mut state = self.sync.lock();
            state.failure.get_or_insert(reason);
            self.release_waiters(state);
        }
        self.publish(visible);
    }

    /// Waits until more than `known` events are visible or `timeout` passes.
    pub(crate) fn wait_for_visible(&self, known: u64, timeout: Duration) -> u64 {
        let deadline = std::time::Instant::now() + timeout;
        let mut guard = self.publish.lock();
        let _waiting = self.count_new_events_waiter();
        loop {
            let visible = self.visible.load(Ordering::SeqCst);
            if visible > known || self.closed.load(Ordering::Acquire) {
                return visible;
            }
            if self.published.wait_until(&mut guard, deadline).timed_out() {
                return self.visible.load(Ordering::Acquire);
            }
        }
    }

    /// Background thread: syncs at the configured interval while anything is unsynced.
    pub(crate) fn start_flusher(self: &Arc<Self>) {
        if self.read_only || self.config.sync_every_n_events <= 1 {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(self);
        let interval = self.config.sync_interval;
        // Under fault injection every I/O call happens on a caller's thread,
        // in a deterministic order, so the appender writes its zeros itself.
        #[cfg(feature = "dangerous-test-hooks")]
        let extend_in_background = self.config.fault_injector.is_none();
        #[cfg(not(feature = "dangerous-test-hooks"))]
        let extend_in_background = true;
        let spawned = std::thread::Builder::new()
            .name("batpak-sync".into())
            .spawn(move || loop {
                let Some(inner) = weak.upgrade() else { return };
                // Read before the stop lock, which the appender that asks for
                // a sync takes while it holds the writer lock: the index lock
                // is not taken under it. A request made after this still
                // wakes the thread (it is checked under the lock).
                let behind = inner.falling_behind();
                {
                    let mut stop = inner.flusher_stop.lock();
                    if *stop {
                        return;
                    }
                    if !inner.sync_requested.load(Ordering::Acquire) && !behind {
                        inner.flusher_wake.wait_for(&mut stop, interval);
                    }
                    if *stop {
                        return;
                    }
                }
                inner.sync_requested.store(false, Ordering::Release);
                let written = inner.index.read().next_sequence();
                if inner.durable_next.load(Ordering::Acquire) < written {
                    if let Err(error) = inner.sync_through(written) {
                        tracing::warn!(%error, "interval sync failed");
                        return;
                    }
                }
                if extend_in_background {
                    inner.extend_ahead();
                }
            });
        match spawned {
            Ok(handle) => *self.flusher.lock() = Some(handle),
            Err(error) => tracing::warn!(%error, "could not start the interval sync thread"),
        }
    }

    /// Whether the events appended during the last sync already make a
    /// quarter of the cadence: the appenders are outpacing the syncs, so
    /// the background thread syncs again at once rather than sleeping until
    /// the request at half the cadence and its wake-up, while the appender
    /// runs on towards the cadence, where it waits for whatever of the next
    /// sync has not passed yet (see ARCHITECTURE.md, the write path).
    fn falling_behind(&self) -> bool {
        let written = self.index.read().next_sequence();
        let unsynced = written.saturating_sub(self.durable_next.load(Ordering::Acquire));
        falling_behind(unsynced, self.config.sync_every_n_events)
    }

    pub(crate) fn stop_flusher(&self) {
        *self.flusher_stop.lock() = true;
        self.flusher_wake.notify_all();
        if let Some(handle) = self.flusher.lock().take() {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }

    /// How far `segment`'s bytes are in the operating system for good: its
    /// whole file once the writer has moved past it.
    pub(crate) fn written_bound(&self, segment: u32) -> u64 {
        let flushed = self.flushed.load(Ordering::Acquire);
        match (flushed >> 32).cmp(&u64::from(segment)) {
            std::cmp::Ordering::Greater => u64::MAX,
            std::cmp::Ordering::Equal => flushed & u64::from(u32::MAX),
            std::cmp::Ordering::Less => 0,
        }
    }

    /// Makes sure the frame at (segment, offset) has been handed to the OS,
    /// so a positioned read can see it.
    pub(crate) fn ensure_flushed(&self, segment: u32, offset: u64) -> Result<(), StoreError> {
        if self.read_only || pack_position(segment, offset) < self.flushed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut writer = self.writer.lock();
        self.flush_pending(&mut writer)
    }
}

/// The blake3 digest of a payload, which the hash-chain link covers
/// (nothing without the `blake3` feature).
#[derive(Debug, Clone, Copy)]
struct PayloadDigest(#[cfg(feature = "blake3")] [u8; 32]);

impl PayloadDigest {
    fn of(payload: &[u8]) -> PayloadDigest {
        #[cfg(feature = "blake3")]
        {
            PayloadDigest(super::log::frame::payload_digest(payload))
        }
        #[cfg(not(feature = "blake3"))]
        {
            let _ = payload;
            PayloadDigest()
        }
    }
}

/// The hash-chain link of a frame (absent without the `blake3` feature).
fn link(
    previous: Option<&EventHash>,
    fields: &FrameFields<'_>,
    digest: &PayloadDigest,
) -> Option<EventHash> {
    #[cfg(feature = "blake3")]
    {
        Some(super::log::frame::chain_hash(previous, fields, &digest.0))
    }
    #[cfg(not(feature = "blake3"))]
    {
        let _ = (previous, fields, digest);
        None
    }
}

/// Creates segment `id` with its header, durably (file and directory synced).
pub(crate) fn create_segment(
    inner: &Inner,
    id: u32,
    first_sequence: u64,
) -> Result<Active, StoreError> {
    let path = inner.segment_path(id);
    let file = inner
        .io
        .create_file(&path)
        .map_err(|e| StoreError::io("create", path.clone(), e))?;
    let header = SegmentHeader {
        flags: 0,
        segment_id: u64::from(id),
        first_sequence,
        created_us: now_us(),
    };
    file.write_all_at(&header.encode(), 0)
        .map_err(|e| StoreError::io("write", path.clone(), e))?;
    let allocated = preallocation_step(inner.config.segment_max_bytes);
    write_zeros(
        file.as_ref(),
        SEGMENT_HEADER_BYTES as u64,
        allocated,
        Some(inner.config.sync_mode),
    )
    .map_err(|e| StoreError::io("preallocate", path.clone(), e))?;
    // FSYNC THE DIRECTORY: without it the new file may vanish on power loss.
    inner
        .io
        .sync_dir(inner.dir())
        .map_err(|e| StoreError::io("sync directory", inner.dir().to_path_buf(), e))?;
    let reader = SegmentReader::open(path.clone(), false)
        .map_err(|e| StoreError::io("open", path.clone(), e))?;
    inner.segments.write().insert(id, Arc::new(reader));
    inner.flushed.store(
        pack_position(id, SEGMENT_HEADER_BYTES as u64),
        Ordering::Release,
    );
    Ok(Active {
        id,
        path,
        file,
        written: SEGMENT_HEADER_BYTES as u64,
        pending: Vec::new(),
        allocated,
    })
}

impl Inner {
    /// Cuts the zeros written ahead of the log off the active segment (at
    /// close), so a closed store's files end at their last frame. Best effort:
    /// zeros left behind are harmless (open cuts them).
    pub(crate) fn trim_preallocation(&self) {
        let mut writer = self.writer.lock();
        if writer.poisoned.is_some()
            || !writer.active.as_ref().is_some_and(|a| a.pending.is_empty())
        {
            return;
        }
        if let Some(active) = writer.active.as_mut() {
            self.settle_extension(active);
            let _flushing = self.flushing.lock();
            if active.allocated > active.written {
                let trimmed = active
                    .file
                    .set_len(active.written)
                    .and_then(|()| active.file.sync(self.config.sync_mode));
                match trimmed {
                    Ok(()) => active.allocated = active.written,
                    Err(error) => tracing::warn!(%error, "could not trim preallocated space"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::falling_behind;

    /// The background thread skips its sleep from a quarter of the cadence
    /// unsynced on, and only then: below it, it waits for the request at
    /// half the cadence as before.
    #[test]
    fn the_background_thread_syncs_again_at_once_from_a_quarter_of_the_cadence() {
        assert!(!falling_behind(249, 1000));
        assert!(falling_behind(250, 1000));
        assert!(falling_behind(999, 1000));
        assert!(!falling_behind(0, 2));
        assert!(falling_behind(1, 2));
        assert!(falling_behind(u64::MAX, u32::MAX));
    }
}
