//! Fast open: writing segment footers and index checkpoints, and choosing
//! them on open.
//!
//! The format of both is the index image (`index::footer`). This module
//! decides *when* they are written and *which* are trusted:
//!
//! - a **footer** is written for every sealed segment, by the maintenance
//!   thread shortly after rotation seals it (and at close at the latest);
//! - a **checkpoint** of the active segment is rewritten when
//!   [`CHECKPOINT_EVERY_EVENTS`] durable events accumulated since the last
//!   one, when [`CHECKPOINT_EVERY`] passed with anything new, at
//!   [`Store::checkpoint`](crate::Store::checkpoint), and at close.
//!
//! Images only ever cover durable events, so a crash can never leave an image
//! describing bytes that recovery then cuts away. They are written under a
//! temporary name, synced, renamed into place and the directory synced
//! (through the I/O seam, so fault injection reaches every step). On open
//! each segment takes its image if the image checks out, and only the bytes
//! after the image's watermark are scanned: open time grows with the
//! un-checkpointed tail, not with the store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::engine::Inner;
use super::index::footer::{
    decode_header, parse_image, ImageBuilder, SegmentIdentity, IMAGE_HEADER_BYTES, KIND_CHECKPOINT,
    KIND_FOOTER,
};
use super::index::{Index, NewEntry};
use super::log::frame::{
    decode_frame, SegmentHeader, BODY_FIXED_BYTES, FRAME_PREFIX_BYTES, SEGMENT_FLAG_COMPACTED,
    SEGMENT_HEADER_BYTES,
};
use super::log::io::{StorageFile, StorageIo};
use super::log::scan::{scan_frames, Located, ScanEnd};
use crate::{Store, StoreError, SyncMode};

/// The directory (inside the store directory) holding footers and checkpoints.
pub(crate) const CHECKPOINT_DIR: &str = "checkpoints";
/// A checkpoint of the active segment is written after this many new durable events.
pub const CHECKPOINT_EVERY_EVENTS: u64 = 100_000;
/// ... or after this long, if anything new became durable.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);
/// How often the maintenance thread looks for work.
const MAINTENANCE_TICK: Duration = Duration::from_millis(500);

const FOOTER_SUFFIX: &str = ".footer";
const CHECKPOINT_SUFFIX: &str = ".checkpoint";

pub(crate) fn footer_file_name(id: u32) -> String {
    format!("{id:010}{FOOTER_SUFFIX}")
}

pub(crate) fn checkpoint_file_name(id: u32) -> String {
    format!("{id:010}{CHECKPOINT_SUFFIX}")
}

/// What the image files in the checkpoint directory are.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// Per segment id: footer path, checkpoint path.
    images: BTreeMap<u32, (Option<PathBuf>, Option<PathBuf>)>,
    /// Leftovers of interrupted writes.
    temporary: Vec<PathBuf>,
    /// The checkpoint directory.
    dir: PathBuf,
}

impl Catalog {
    pub(crate) fn list(store_dir: &Path) -> Catalog {
        let mut catalog = Catalog {
            dir: store_dir.join(CHECKPOINT_DIR),
            ..Catalog::default()
        };
        let Ok(entries) = std::fs::read_dir(&catalog.dir) else {
            return catalog;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                catalog.temporary.push(entry.path());
                continue;
            }
            let parse = |suffix: &str| {
                let digits = name.strip_suffix(suffix)?;
                (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| digits.parse::<u32>().ok())
                    .flatten()
            };
            if let Some(id) = parse(FOOTER_SUFFIX) {
                catalog.images.entry(id).or_default().0 = Some(entry.path());
            } else if let Some(id) = parse(CHECKPOINT_SUFFIX) {
                catalog.images.entry(id).or_default().1 = Some(entry.path());
            }
        }
        catalog
    }
}

impl Catalog {
    /// An estimate of the events open will index: those the images claim,
    /// plus the bytes after their watermarks at a typical frame size. Only
    /// headers are read. `None` without images (a full scan grows as it goes).
    pub(crate) fn planned_events(
        &self,
        io: &dyn StorageIo,
        segments: &[(u32, PathBuf)],
    ) -> Option<usize> {
        /// A typical small event frame; overestimates the tail a little.
        const TAIL_BYTES_PER_EVENT: u64 = 128;
        let mut images = false;
        let mut total = 0u64;
        for (id, path) in segments {
            let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let mut covered = (0u64, SEGMENT_HEADER_BYTES as u64);
            if let Some((footer, checkpoint)) = self.images.get(id) {
                for image in [footer, checkpoint].into_iter().flatten() {
                    let mut head = [0u8; IMAGE_HEADER_BYTES];
                    let read = io
                        .open_file(image, false)
                        .and_then(|f| f.read_at(&mut head, 0));
                    if let Ok(IMAGE_HEADER_BYTES) = read {
                        if let Ok((_, _, watermark, events)) = decode_header(&head) {
                            // Images are checked only later: never believe
                            // more events than the covered bytes can hold.
                            let possible = watermark.saturating_sub(SEGMENT_HEADER_BYTES as u64)
                                / (FRAME_PREFIX_BYTES + BODY_FIXED_BYTES) as u64;
                            if watermark <= len && events <= possible && events > covered.0 {
                                covered = (events, watermark);
                                images = true;
                            }
                        }
                    }
                }
            }
            total += covered.0 + len.saturating_sub(covered.1) / TAIL_BYTES_PER_EVENT;
        }
        images.then(|| usize::try_from(total).unwrap_or(usize::MAX))
    }
}

/// A derived file that open did not trust.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IgnoredFile {
    /// The file.
    pub file: PathBuf,
    /// Which check it failed. It is rebuilt from the log.
    pub reason: String,
}

/// What open learned from images.
#[derive(Debug, Default)]
pub(crate) struct ImageOutcome {
    pub(crate) images: u32,
    pub(crate) restored_events: u64,
    pub(crate) ignored: Vec<IgnoredFile>,
    /// Segments whose footer is on disk and valid.
    pub(crate) footers: BTreeSet<u32>,
    /// The image the last segment was restored from, to continue from.
    pub(crate) last_image: Option<ImageBuilder>,
}

/// Tries the footer, then the checkpoint, of segment `id`; applies the first
/// that checks out and returns its watermark (where scanning continues).
#[allow(clippy::too_many_arguments)]
pub(crate) fn load_image(
    io: &dyn StorageIo,
    catalog: &Catalog,
    header: &SegmentHeader,
    id: u32,
    segment_len: u64,
    segment: &dyn StorageFile,
    index: &mut Index,
    outcome: &mut ImageOutcome,
) -> Option<u64> {
    let (footer, checkpoint) = catalog.images.get(&id)?;
    let identity = SegmentIdentity {
        id,
        flags: header.flags,
        created_us: header.created_us,
        first_sequence: header.first_sequence,
    };
    for (path, kind) in [(footer, KIND_FOOTER), (checkpoint, KIND_CHECKPOINT)] {
        let Some(path) = path else { continue };
        match try_image(io, path, kind, identity, segment_len, segment, index) {
            Ok((watermark, events, builder)) => {
                outcome.images += 1;
                outcome.restored_events += events;
                if kind == KIND_FOOTER {
                    outcome.footers.insert(id);
                }
                outcome.last_image = builder;
                return Some(watermark);
            }
            Err(reason) => {
                tracing::warn!(file = %path.display(), %reason, "ignoring index image; the log is scanned instead");
                outcome.ignored.push(IgnoredFile {
                    file: path.clone(),
                    reason,
                });
            }
        }
    }
    None
}

fn try_image(
    io: &dyn StorageIo,
    path: &Path,
    kind: u16,
    identity: SegmentIdentity,
    segment_len: u64,
    segment: &dyn StorageFile,
    index: &mut Index,
) -> Result<(u64, u64, Option<ImageBuilder>), String> {
    let file = io
        .open_file(path, false)
        .map_err(|e| format!("cannot open: {e}"))?;
    let len = file.len().map_err(|e| format!("cannot stat: {e}"))?;
    // An image is never larger than twice its segment (records are smaller
    // than the frames they describe); check before allocating.
    if len > segment_len.saturating_mul(2) + 4096 {
        return Err(format!(
            "image of {len} bytes is too large for a segment of {segment_len}"
        ));
    }
    if len < IMAGE_HEADER_BYTES as u64 {
        return Err(format!("image of {len} bytes is shorter than its header"));
    }
    drop(file);
    // Mapped rather than read: an image is read once, and a mapping shares
    // the page cache instead of copying it into a fresh, zeroed buffer.
    let mapped = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    // SAFETY: batpak replaces images by rename and never writes one in
    // place, so the mapped file does not change while it is mapped (an
    // outside process truncating it would break this, as for sealed
    // segments). The mapping lives only for this function.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&mapped) }
        .map_err(|e| format!("cannot map: {e}"))?;
    apply_bytes(&map, kind, identity, segment_len, segment, index)
}

fn apply_bytes(
    bytes: &[u8],
    kind: u16,
    identity: SegmentIdentity,
    segment_len: u64,
    segment: &dyn StorageFile,
    index: &mut Index,
) -> Result<(u64, u64, Option<ImageBuilder>), String> {
    // Records are checked while they load (one pass), not here.
    let view = parse_image(bytes)?;
    if view.kind != kind {
        return Err(format!("image kind {} under the wrong name", view.kind));
    }
    if view.segment != identity {
        return Err(format!(
            "image describes another segment file ({:?}, segment is {identity:?})",
            view.segment
        ));
    }
    if view.watermark < SEGMENT_HEADER_BYTES as u64 || view.watermark > segment_len {
        return Err(format!(
            "image covers {} bytes, the segment has {segment_len}",
            view.watermark
        ));
    }
    // Spot check: the last record's frame ends exactly at the watermark and
    // is the event the image says.
    match view.last_frame() {
        None if view.events > 0 => {
            return Err("image columns do not describe a last record".into());
        }
        None if view.watermark != SEGMENT_HEADER_BYTES as u64 => {
            return Err("empty image with a watermark past the header".into());
        }
        None => {}
        Some((sequence, offset, event_id)) => {
            let frame_len = view
                .watermark
                .checked_sub(u64::from(offset))
                .filter(|&l| l > 0 && l <= super::log::frame::BODY_MAX_BYTES as u64 + 8)
                .ok_or_else(|| "last record lies outside the covered bytes".to_string())?;
            let mut frame = vec![0u8; frame_len as usize];
            let got = segment
                .read_at(&mut frame, u64::from(offset))
                .map_err(|e| format!("cannot read the segment: {e}"))?;
            let view_frame = decode_frame(&frame[..got])
                .map_err(|e| format!("the log does not match the image: {e}"))?;
            if view_frame.frame_len as u64 != frame_len
                || view_frame.sequence != sequence
                || view_frame.event_id != event_id
            {
                return Err("the log does not match the image's last record".into());
            }
        }
    }
    // Only the active segment's checkpoint is continued by later
    // checkpoints; footers describe sealed segments and need no builder.
    let builder = if kind == KIND_CHECKPOINT {
        Some(ImageBuilder::from_loaded(&view, bytes))
    } else {
        None
    };
    index.apply_image(&view)?;
    Ok((view.watermark, view.events, builder))
}

/// The maintenance side: which images exist and the thread that writes them.
#[derive(Debug, Default)]
pub(crate) struct Maintenance {
    pub(crate) state: Mutex<MaintenanceState>,
    stop: Mutex<bool>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
pub(crate) struct MaintenanceState {
    /// Sealed segments whose footer is on disk.
    pub(crate) footers: BTreeSet<u32>,
    /// Compacted segments: they have no image (open scans them).
    pub(crate) compacted: BTreeSet<u32>,
    /// The image of the active segment built so far (may be ahead of the
    /// checkpoint on disk).
    pub(crate) active: Option<ImageBuilder>,
    /// The checkpoint on disk: segment and events covered.
    pub(crate) checkpointed: Option<(u32, u32)>,
    pub(crate) checkpointed_at: Option<Instant>,
}

impl Maintenance {
    pub(crate) fn new(outcome: &mut ImageOutcome, active_segment: Option<u32>) -> Maintenance {
        let active = outcome
            .last_image
            .take()
            .filter(|b| Some(b.segment().id) == active_segment);
        let checkpointed = active.as_ref().map(|b| (b.segment().id, b.events()));
        Maintenance {
            state: Mutex::new(MaintenanceState {
                footers: std::mem::take(&mut outcome.footers),
                compacted: BTreeSet::new(),
                active,
                checkpointed,
                checkpointed_at: Some(Instant::now()),
            }),
            ..Maintenance::default()
        }
    }
}

impl Inner {
    /// Starts the thread that writes footers and periodic checkpoints.
    /// Not started for read-only stores, nor under fault injection, where
    /// checkpoints happen only at [`Store::checkpoint`] and close so that
    /// injected faults hit a deterministic sequence of calls.
    pub(crate) fn start_maintenance(self: &Arc<Self>) {
        if self.read_only {
            return;
        }
        #[cfg(feature = "dangerous-test-hooks")]
        if self.config.fault_injector.is_some() {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("batpak-checkpoint".into())
            .spawn(move || loop {
                let Some(inner) = weak.upgrade() else { return };
                {
                    let mut stop = inner.maintenance.stop.lock();
                    if *stop {
                        return;
                    }
                    inner.maintenance.wake.wait_for(&mut stop, MAINTENANCE_TICK);
                    if *stop {
                        return;
                    }
                }
                if let Err(error) = inner.maintain(false) {
                    tracing::warn!(%error, "writing index footers or checkpoints failed; open scans more");
                }
            });
        match spawned {
            Ok(handle) => *self.maintenance.thread.lock() = Some(handle),
            Err(error) => tracing::warn!(%error, "could not start the checkpoint thread"),
        }
    }

    pub(crate) fn stop_maintenance(&self) {
        *self.maintenance.stop.lock() = true;
        self.maintenance.wake.notify_all();
        if let Some(handle) = self.maintenance.thread.lock().take() {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }

    /// Writes missing footers of sealed segments and, if due (or `force`),
    /// a checkpoint of the active segment.
    pub(crate) fn maintain(&self, force: bool) -> Result<(), StoreError> {
        if self.read_only {
            return Ok(());
        }
        let mut state = self.maintenance.state.lock();
        let (active_id, limit) = {
            let writer = self.writer.lock();
            if writer.poisoned.is_some() {
                return Ok(());
            }
            let Some(active) = writer.active.as_ref() else {
                return Ok(());
            };
            let durable = self.durable_next.load(Ordering::Acquire);
            let index = self.index.read();
            let limit = match index.entry_any(durable) {
                Some(entry) if entry.segment == active.id => u64::from(entry.offset),
                Some(_) => SEGMENT_HEADER_BYTES as u64,
                None => active.written,
            };
            (active.id, limit)
        };
        let sealed: Vec<(u32, PathBuf)> = self
            .segments
            .read()
            .iter()
            .filter(|(id, _)| **id < active_id)
            .map(|(id, reader)| (*id, reader.path.clone()))
            .collect();
        for (id, path) in sealed {
            if state.footers.contains(&id) || state.compacted.contains(&id) {
                continue;
            }
            let builder = match state.active.take() {
                Some(builder) if builder.segment().id == id => builder,
                _ => new_builder(self.io.as_ref(), &path, id)?,
            };
            if builder.segment().flags & SEGMENT_FLAG_COMPACTED != 0 {
                // Sequences with gaps and stubs: not described by images.
                state.compacted.insert(id);
                continue;
            }
            let mut builder = builder;
            let file = self
                .io
                .open_file(&path, false)
                .map_err(|e| StoreError::io("open", &path, e))?;
            let end = file.len().map_err(|e| StoreError::io("stat", &path, e))?;
            extend(&mut builder, file.as_ref(), &path, end)?;
            self.write_derived(&footer_file_name(id), &builder.encode(KIND_FOOTER))?;
            state.footers.insert(id);
            let stale = self
                .dir()
                .join(CHECKPOINT_DIR)
                .join(checkpoint_file_name(id));
            if stale.exists() {
                self.io
                    .remove_file(&stale)
                    .map_err(|e| StoreError::io("remove", &stale, e))?;
            }
            tracing::debug!(
                segment = id,
                events = builder.events(),
                "wrote segment footer"
            );
        }
        if state
            .active
            .as_ref()
            .is_some_and(|b| b.segment().id != active_id)
        {
            state.active = None;
        }
        let checkpointed = match state.checkpointed {
            Some((segment, events)) if segment == active_id => Some(events),
            _ => None,
        };
        let durable_events = self
            .durable_next
            .load(Ordering::Acquire)
            .saturating_sub(self.segment_first_sequence(active_id, &state));
        let new_events = durable_events.saturating_sub(u64::from(checkpointed.unwrap_or(0)));
        let stale_for = state.checkpointed_at.map_or(Duration::MAX, |t| t.elapsed());
        let due = new_events >= CHECKPOINT_EVERY_EVENTS
            || (new_events > 0 && stale_for >= CHECKPOINT_EVERY)
            || (force && (new_events > 0 || checkpointed.is_none()));
        if !due {
            return Ok(());
        }
        let path = self.segment_path(active_id);
        let mut builder = match state.active.take() {
            Some(builder) => builder,
            None => new_builder(self.io.as_ref(), &path, active_id)?,
        };
        let file = self
            .io
            .open_file(&path, false)
            .map_err(|e| StoreError::io("open", &path, e))?;
        let extended = extend(&mut builder, file.as_ref(), &path, limit);
        let events = builder.events();
        state.active = Some(builder);
        extended?;
        if checkpointed == Some(events) {
            state.checkpointed_at = Some(Instant::now());
            return Ok(());
        }
        let bytes = state
            .active
            .as_ref()
            .map(|b| b.encode(KIND_CHECKPOINT))
            .unwrap_or_default();
        self.write_derived(&checkpoint_file_name(active_id), &bytes)?;
        state.checkpointed = Some((active_id, events));
        state.checkpointed_at = Some(Instant::now());
        tracing::debug!(segment = active_id, events, "wrote index checkpoint");
        Ok(())
    }

    /// First sequence of the active segment as far as the image knows it.
    fn segment_first_sequence(&self, active_id: u32, state: &MaintenanceState) -> u64 {
        if let Some(builder) = state.active.as_ref() {
            return builder.segment().first_sequence;
        }
        let index = self.index.read();
        // The first entry of the active segment, or (empty segment) the next sequence.
        let next = index.next_sequence();
        let mut low = 0u64;
        let mut high = next;
        while low < high {
            let mid = low + (high - low) / 2;
            match index.entry_any(mid) {
                // Removed events are always in sealed segments.
                Some(entry) if entry.segment < active_id || entry.is_dropped() => low = mid + 1,
                _ => high = mid,
            }
        }
        low
    }

    /// Writes a derived file atomically: temporary name, sync, rename,
    /// directory sync, all through the I/O seam.
    pub(crate) fn write_derived(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = self.dir().join(CHECKPOINT_DIR);
        write_atomically(self.io.as_ref(), &dir, name, bytes, self.config.sync_mode)
    }
}

/// Writes `dir/name` atomically (creating `dir` if needed): a crash leaves
/// the old file or the new one, never a mix.
pub(crate) fn write_atomically(
    io: &dyn StorageIo,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: SyncMode,
) -> Result<(), StoreError> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io("create directory", dir, e))?;
        if let Some(parent) = dir.parent() {
            io.sync_dir(parent)
                .map_err(|e| StoreError::io("sync directory", parent, e))?;
        }
    }
    replace_by_rename(io, dir, name, bytes, mode)?;
    io.sync_dir(dir)
        .map_err(|e| StoreError::io("sync directory", dir, e))
}

/// Replaces `dir/name` with `bytes` through `name.tmp`: remove a leftover
/// temporary, create, write and sync it, rename it into place (the commit
/// point). The caller syncs `dir` to make the rename durable.
pub(crate) fn replace_by_rename(
    io: &dyn StorageIo,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: SyncMode,
) -> Result<(), StoreError> {
    let temporary = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    if temporary.exists() {
        io.remove_file(&temporary)
            .map_err(|e| StoreError::io("remove", &temporary, e))?;
    }
    let file = io
        .create_file(&temporary)
        .map_err(|e| StoreError::io("create", &temporary, e))?;
    file.write_all_at(bytes, 0)
        .map_err(|e| StoreError::io("write", &temporary, e))?;
    file.sync(mode)
        .map_err(|e| StoreError::io("sync", &temporary, e))?;
    drop(file);
    // RENAME, THEN FSYNC THE DIRECTORY: the rename is the commit point.
    io.rename(&temporary, &target)
        .map_err(|e| StoreError::io("rename", &temporary, e))
}

fn new_builder(io: &dyn StorageIo, path: &Path, id: u32) -> Result<ImageBuilder, StoreError> {
    let file = io
        .open_file(path, false)
        .map_err(|e| StoreError::io("open", path, e))?;
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
    let got = file
        .read_at(&mut bytes, 0)
        .map_err(|e| StoreError::io("read", path, e))?;
    let header =
        SegmentHeader::decode(&bytes[..got]).map_err(|r| StoreError::corrupt(path, 0, r))?;
    Ok(ImageBuilder::new(
        SegmentIdentity {
            id,
            flags: header.flags,
            created_us: header.created_us,
            first_sequence: header.first_sequence,
        },
        SEGMENT_HEADER_BYTES as u64,
    ))
}

/// Scans the segment bytes from the builder's watermark up to `end` into it.
fn extend(
    builder: &mut ImageBuilder,
    file: &dyn StorageFile,
    path: &Path,
    end: u64,
) -> Result<(), StoreError> {
    let start = builder.watermark;
    if end <= start {
        return Ok(());
    }
    let mut bytes = vec![0u8; (end - start) as usize];
    let got = file
        .read_at(&mut bytes, start)
        .map_err(|e| StoreError::io("read", path, e))?;
    bytes.truncate(got);
    let compacted = builder.segment().flags & SEGMENT_FLAG_COMPACTED != 0;
    let mut failure = None;
    let scanned = scan_frames(&bytes, 0, builder.next_sequence(), compacted, |unit| {
        add_unit(builder, start, unit).inspect_err(|reason| failure = Some(reason.clone()))
    });
    match scanned {
        ScanEnd::Clean => {
            builder.watermark = start + bytes.len() as u64;
            Ok(())
        }
        ScanEnd::Damaged { offset, reason, .. } => Err(StoreError::corrupt(
            path,
            start + offset,
            failure.unwrap_or(reason),
        )),
    }
}

fn add_unit(builder: &mut ImageBuilder, base: u64, unit: &[Located<'_>]) -> Result<(), String> {
    let count = unit.len() as u32;
    for (view, offset) in unit {
        let offset =
            u32::try_from(base + offset).map_err(|_| "segment offset beyond 4 GiB".to_string())?;
        let segment = builder.segment().id;
        builder.push(&NewEntry::from_frame(view, segment, offset, count))?;
    }
    Ok(())
}

/// Removes leftovers: temporary files and images of segments that no
/// longer exist. Best effort; a leftover is harmless.
pub(crate) fn clean_catalog(io: &dyn StorageIo, catalog: &Catalog, segments: &BTreeSet<u32>) {
    let mut removed = false;
    let stale = catalog
        .images
        .iter()
        .filter(|(id, _)| !segments.contains(id))
        .flat_map(|(_, (footer, checkpoint))| footer.iter().chain(checkpoint.iter()));
    for path in catalog.temporary.iter().chain(stale) {
        match io.remove_file(path) {
            Ok(()) => removed = true,
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "could not remove a stale derived file")
            }
        }
    }
    if removed {
        // Removals are not needed for correctness (a leftover is ignored or
        // removed again), so a failed directory sync is only logged.
        if let Err(error) = io.sync_dir(&catalog.dir) {
            tracing::warn!(dir = %catalog.dir.display(), %error, "could not sync the checkpoint directory");
        }
    }
}

impl Store {
    /// Writes index footers for every sealed segment that lacks one and a
    /// checkpoint of the active segment covering every durable event, so
    /// that the next open (even after a crash) scans only what comes after.
    ///
    /// The store does this by itself (after rotation, every
    /// [`CHECKPOINT_EVERY_EVENTS`] durable events or [`CHECKPOINT_EVERY`], and
    /// at close); call it to bound the next open's work at a moment of your
    /// choosing. A failure leaves the log untouched: images are derived data.
    ///
    /// ```
    /// use batpak::prelude::*;
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(StoreConfig::new(dir.path()))?;
    /// store.append(&Coordinate::new("e", "s")?, EventKind::custom(1, 1), &1)?;
    /// store.checkpoint()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        self.sync()?;
        self.inner.maintain(true)
    }
}

#[cfg(feature = "dangerous-test-hooks")]
impl Store {
    /// Test hook (feature `dangerous-test-hooks`): checks that this store's
    /// in-memory index equals `other`'s field by field, and says where not.
    /// Used to prove that an index restored from footers and checkpoints is
    /// the one a full scan builds.
    #[doc(hidden)]
    pub fn index_matches(&self, other: &Store) -> Result<(), String> {
        self.inner.index.read().same_as(&other.inner.index.read())
    }
}
