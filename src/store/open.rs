//! Opening a store: lock, scan the log, rebuild the index, cut a torn tail.
//! Also the read-only refresh, which continues the same scan.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, RwLock};

use super::checkpoint::{clean_catalog, load_image, Catalog, ImageOutcome, Maintenance};
use super::engine::{
    create_segment, pack_position, Active, Extension, Flushing, Inner, SyncState, Tail, Writer,
};
use super::index::{Index, NewEntry};
use super::log::frame::{
    other_format_version, SegmentHeader, FORMAT_VERSION, SEGMENT_FLAG_COMPACTED,
    SEGMENT_HEADER_BYTES,
};
use super::log::io::{StorageFile, StorageIo};
use super::log::scan::{scan_frames, valid_frame_after, Located, ScanEnd};
use super::log::segment::{list_dir, SegmentReader, LOCK_FILE_NAME};
use super::report::{IndexSource, OpenReport, TailCut};
use crate::event::IdGenerator;
use crate::{RecoveryMode, StoreConfig, StoreError};

/// The last segment: id, path, writable handle (writable opens), end offset.
type LastSegment = (u32, PathBuf, Option<Arc<dyn StorageFile>>, u64);

/// What recovery produced.
struct Recovered {
    index: Index,
    readers: BTreeMap<u32, Arc<SegmentReader>>,
    last: Option<LastSegment>,
}

enum Pass {
    Done(Box<Recovered>),
    /// Repair changed files; scan again.
    Again,
}

pub(crate) fn open(
    config: StoreConfig,
    read_only: bool,
    io: Arc<dyn StorageIo>,
) -> Result<Arc<Inner>, StoreError> {
    config.validate()?;
    let started = Instant::now();
    let dir = config.dir.clone();
    if read_only {
        if !dir.is_dir() {
            return Err(StoreError::io(
                "open",
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "store directory does not exist",
                ),
            ));
        }
    } else {
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("create directory", &dir, e))?;
    }
    let lock_file = if read_only {
        None
    } else {
        Some(acquire_lock(&dir)?)
    };
    let mut report = OpenReport {
        index_source: IndexSource::Scan,
        events: 0,
        segments: 0,
        duration: Default::default(),
        torn_tail: None,
        repaired: None,
        removed_files: Vec::new(),
        foreign_files: Vec::new(),
        ignored_files: Vec::new(),
    };
    let mut images = ImageOutcome::default();
    let recovered = loop {
        match recover(&config, io.as_ref(), read_only, &mut report, &mut images)? {
            Pass::Done(recovered) => break recovered,
            Pass::Again => continue,
        }
    };
    let Recovered {
        index,
        readers,
        last,
    } = *recovered;
    let next_sequence = index.next_sequence();
    if next_sequence == 0 && last.is_none() {
        report.index_source = IndexSource::Empty;
    } else if images.images > 0 {
        report.index_source = IndexSource::Checkpoint {
            restored_events: images.restored_events,
            scanned_events: next_sequence.saturating_sub(images.restored_events),
            images: images.images,
        };
    }
    report.ignored_files = std::mem::take(&mut images.ignored);
    let maintenance = Maintenance::new(&mut images, last.as_ref().map(|(id, ..)| *id));
    report.events = next_sequence;
    let ids = IdGenerator::after(index.last_id());
    let tail = last.as_ref().map_or(
        Tail {
            segment: 0,
            offset: 0,
        },
        |(id, _, _, end)| Tail {
            segment: *id,
            offset: *end,
        },
    );
    let mut active = None;
    if let Some((id, path, Some(file), end)) = last {
        // Whatever a crashed writer left in the page cache becomes durable now,
        // so `durable_sequence` tells the truth from the first moment.
        file.sync(config.sync_mode)
            .map_err(|e| StoreError::io("sync", path.clone(), e))?;
        active = Some(Active {
            id,
            path,
            file,
            written: end,
            pending: Vec::new(),
            allocated: end,
        });
    }
    let flushed = active
        .as_ref()
        .map_or(0, |a: &Active| pack_position(a.id, a.written));
    let mut index = index;
    index.set_visible(next_sequence);
    let inner = Arc::new(Inner {
        io,
        read_only,
        index: RwLock::new(index),
        writer: Mutex::new(Writer {
            active,
            ids,
            poisoned: None,
            awaiting_sync: VecDeque::new(),
            tail,
        }),
        sync: Mutex::new(SyncState {
            durable_next: next_sequence,
            ..SyncState::default()
        }),
        round: Default::default(),
        extension: Mutex::new(Extension::default()),
        extension_done: Condvar::new(),
        flushing: Mutex::new(Flushing::default()),
        durable_next: AtomicU64::new(next_sequence),
        sync_counters: Default::default(),
        segments: RwLock::new(readers),
        flushed: AtomicU64::new(flushed),
        publish: Mutex::new(()),
        published: Condvar::new(),
        publish_waiters: AtomicUsize::new(0),
        visible: AtomicU64::new(next_sequence),
        open_report: report,
        lock_file: Mutex::new(lock_file),
        closed: AtomicBool::new(false),
        flusher: Mutex::new(None),
        flusher_stop: Mutex::new(false),
        flusher_wake: Condvar::new(),
        maintenance,
        feeds: crate::feed::FeedState::default(),
        sync_requested: AtomicBool::new(false),
        config,
    });
    if !read_only && inner.writer.lock().active.is_none() {
        let next_id = inner
            .segments
            .read()
            .keys()
            .next_back()
            .map_or(0, |id| id + 1);
        let created = create_segment(&inner, next_id, next_sequence)?;
        inner.writer.lock().active = Some(created);
    }
    // The open report is immutable once built; record the final numbers.
    let segments = inner.segments.read().len() as u32;
    let elapsed = started.elapsed();
    // SAFETY of the cast below is not needed: we rebuild the Arc instead of
    // mutating through it.
    let inner = finish_report(inner, segments, elapsed);
    inner.start_flusher();
    inner.start_maintenance();
    tracing::info!(
        dir = %inner.config.dir.display(),
        events = inner.open_report.events,
        segments,
        elapsed_ms = elapsed.as_secs_f64() * 1000.0,
        read_only,
        "store opened"
    );
    Ok(inner)
}

fn finish_report(mut inner: Arc<Inner>, segments: u32, elapsed: std::time::Duration) -> Arc<Inner> {
    if let Some(inner_mut) = Arc::get_mut(&mut inner) {
        inner_mut.open_report.segments = segments;
        inner_mut.open_report.duration = elapsed;
    }
    inner
}

fn acquire_lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io("open lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(StoreError::io("lock", &path, e)),
    }
}

/// Adds one scanned unit to the index.
pub(crate) fn index_unit(
    index: &mut Index,
    segment: u32,
    base: u64,
    unit: &[Located<'_>],
) -> Result<(), String> {
    let count = unit.len() as u32;
    for (view, offset) in unit {
        let offset =
            u32::try_from(base + offset).map_err(|_| "segment offset beyond 4 GiB".to_string())?;
        // The scanner only lets sequence gaps through in compacted segments.
        index.skip_to(view.sequence);
        index.push(NewEntry::from_frame(view, segment, offset, count))?;
    }
    Ok(())
}

fn recover(
    config: &StoreConfig,
    io: &dyn StorageIo,
    read_only: bool,
    report: &mut OpenReport,
    images: &mut ImageOutcome,
) -> Result<Pass, StoreError> {
    let dir = &config.dir;
    let listing = list_dir(dir).map_err(|e| StoreError::io("list", dir, e))?;
    report.foreign_files = listing.foreign.clone();
    if !read_only && !listing.unfinished.is_empty() {
        // A compaction interrupted before its commit point: the old segment
        // is still in place, the half-written new one goes.
        for path in &listing.unfinished {
            io.remove_file(path)
                .map_err(|e| StoreError::io("remove", path, e))?;
            report.removed_files.push(path.clone());
        }
        io.sync_dir(dir)
            .map_err(|e| StoreError::io("sync directory", dir, e))?;
    }
    let catalog = Catalog::list(dir);
    *images = ImageOutcome::default();
    let mut index = Index::default();
    let mut _prefault = None;
    if config.recovery_mode != RecoveryMode::Repair {
        if let Some(events) = catalog.planned_events(io, &listing.segments) {
            _prefault = Some(index.reserve_events(events));
        }
    }
    let mut readers = BTreeMap::new();
    let mut last = None;
    let mut follows_compacted = false;
    let count = listing.segments.len();
    for (position, (id, path)) in listing.segments.iter().enumerate() {
        let is_last = position + 1 == count;
        let later: Vec<PathBuf> = listing.segments[position + 1..]
            .iter()
            .map(|(_, p)| p.clone())
            .collect();
        let file = io
            .open_file(path, !read_only)
            .map_err(|e| StoreError::io("open", path, e))?;
        let segment_len = file.len().map_err(|e| StoreError::io("stat", path, e))?;
        let head = read_range(
            file.as_ref(),
            path,
            0,
            segment_len.min(SEGMENT_HEADER_BYTES as u64),
        )?;
        if let Some(version) = other_format_version(&head) {
            return Err(unsupported(path, version));
        }
        let header = match SegmentHeader::decode(&head) {
            Ok(header) => header,
            Err(reason) => {
                let bytes = read_range(file.as_ref(), path, 0, segment_len)?;
                if is_last && !valid_frame_after(&bytes, 0) {
                    // A crash while the segment was being created.
                    if !read_only {
                        io.remove_file(path)
                            .map_err(|e| StoreError::io("remove", path, e))?;
                        io.sync_dir(dir)
                            .map_err(|e| StoreError::io("sync directory", dir, e))?;
                        report.removed_files.push(path.clone());
                    }
                    continue;
                }
                return damage(
                    config, io, read_only, report, path, &file, 0, 0, reason, &later,
                );
            }
        };
        if header.segment_id != u64::from(*id) {
            let reason = format!(
                "header names segment {}, file name says {id}",
                header.segment_id
            );
            return damage(
                config, io, read_only, report, path, &file, 0, 16, reason, &later,
            );
        }
        let compacted = header.flags & SEGMENT_FLAG_COMPACTED != 0;
        let expected = index.next_sequence();
        // Compaction may remove the last events of a segment: the next
        // segment then starts after a gap.
        let gap_allowed = compacted || follows_compacted;
        follows_compacted = compacted;
        if (!gap_allowed && header.first_sequence != expected) || header.first_sequence < expected {
            let reason = format!(
                "segment starts at sequence {}, the log so far ends before {expected}",
                header.first_sequence
            );
            return damage(
                config, io, read_only, report, path, &file, 0, 24, reason, &later,
            );
        }
        index.skip_to(header.first_sequence);
        // A footer or checkpoint that checks out replaces the scan of the
        // bytes it covers; only what follows its watermark is read. Those
        // frames are checksummed on every read and by `verify()`, not here.
        // Repair wants to find damage, so it always scans everything.
        // Compacted segments have no images (their sequences have gaps).
        let start = if config.recovery_mode == RecoveryMode::Repair || compacted {
            None
        } else {
            load_image(
                io,
                &catalog,
                &header,
                *id,
                segment_len,
                file.as_ref(),
                &mut index,
                images,
            )
        }
        .unwrap_or(SEGMENT_HEADER_BYTES as u64);
        let tail = read_range(file.as_ref(), path, start, segment_len)?;
        let end = scan_frames(&tail, 0, index.next_sequence(), compacted, |unit| {
            index_unit(&mut index, *id, start, unit)
        });
        let mut end_offset = segment_len;
        if let ScanEnd::Damaged {
            cut_offset,
            offset,
            reason,
            valid_frame_after,
        } = end
        {
            let (cut_offset, offset) = (start + cut_offset, start + offset);
            if is_last && !valid_frame_after {
                end_offset = cut_offset;
                let dropped_bytes = segment_len - cut_offset;
                if !read_only {
                    file.set_len(cut_offset)
                        .and_then(|()| file.sync(config.sync_mode))
                        .map_err(|e| StoreError::io("truncate", path, e))?;
                    tracing::warn!(file = %path.display(), offset = cut_offset, dropped_bytes, %reason, "cut torn tail");
                }
                report.torn_tail = Some(TailCut {
                    file: path.clone(),
                    offset: cut_offset,
                    dropped_bytes,
                    dropped_files: Vec::new(),
                    reason: if read_only {
                        format!("{reason} (left in place: read-only)")
                    } else {
                        reason
                    },
                });
            } else {
                return damage(
                    config, io, read_only, report, path, &file, cut_offset, offset, reason, &later,
                );
            }
        }
        let reader = SegmentReader::open(path.clone(), !is_last)
            .map_err(|e| StoreError::io("open", path, e))?;
        readers.insert(*id, Arc::new(reader));
        if is_last {
            last = Some((*id, path.clone(), (!read_only).then_some(file), end_offset));
        }
    }
    if !read_only {
        let ids: BTreeSet<u32> = readers.keys().copied().collect();
        clean_catalog(io, &catalog, &ids);
    }
    index.trim_removed_prefix();
    Ok(Pass::Done(Box::new(Recovered {
        index,
        readers,
        last,
    })))
}

/// Reads bytes `[from, to)` of a file (empty if `from >= to`).
pub(crate) fn read_range(
    file: &dyn StorageFile,
    path: &Path,
    from: u64,
    to: u64,
) -> Result<Vec<u8>, StoreError> {
    if from >= to {
        return Ok(Vec::new());
    }
    let len = usize::try_from(to - from)
        .map_err(|_| StoreError::corrupt(path, from, "segment too large"))?;
    let mut bytes = vec![0u8; len];
    let got = file
        .read_at(&mut bytes, from)
        .map_err(|e| StoreError::io("read", path, e))?;
    bytes.truncate(got);
    Ok(bytes)
}

/// Damage that is not a torn tail: a typed error, or with
/// [`RecoveryMode::Repair`] a cut at the damage and everything after it deleted.
#[allow(clippy::too_many_arguments)]
fn damage(
    config: &StoreConfig,
    io: &dyn StorageIo,
    read_only: bool,
    report: &mut OpenReport,
    path: &Path,
    file: &Arc<dyn StorageFile>,
    cut_offset: u64,
    offset: u64,
    reason: String,
    later: &[PathBuf],
) -> Result<Pass, StoreError> {
    if read_only || config.recovery_mode == RecoveryMode::Strict || report.repaired.is_some() {
        return Err(StoreError::corrupt(path, offset, reason));
    }
    let size = file.len().map_err(|e| StoreError::io("stat", path, e))?;
    let mut dropped_files = Vec::new();
    for later_path in later {
        io.remove_file(later_path)
            .map_err(|e| StoreError::io("remove", later_path, e))?;
        dropped_files.push(later_path.clone());
    }
    if cut_offset < SEGMENT_HEADER_BYTES as u64 {
        io.remove_file(path)
            .map_err(|e| StoreError::io("remove", path, e))?;
        dropped_files.push(path.to_path_buf());
    } else {
        file.set_len(cut_offset)
            .and_then(|()| file.sync(config.sync_mode))
            .map_err(|e| StoreError::io("truncate", path, e))?;
    }
    io.sync_dir(&config.dir)
        .map_err(|e| StoreError::io("sync directory", &config.dir, e))?;
    tracing::warn!(file = %path.display(), offset, %reason, "repair cut the log at damage");
    report.repaired = Some(TailCut {
        file: path.to_path_buf(),
        offset: cut_offset,
        dropped_bytes: size.saturating_sub(cut_offset),
        dropped_files,
        reason: format!("{reason} (damage found at offset {offset})"),
    });
    report.torn_tail = None;
    report.removed_files.clear();
    Ok(Pass::Again)
}

/// Read-only stores: index what writers committed since the last look.
pub(crate) fn refresh(inner: &Inner) -> Result<u64, StoreError> {
    let mut writer = inner.writer.lock();
    let dir = inner.dir();
    let listing = list_dir(dir).map_err(|e| StoreError::io("list", dir, e))?;
    let before = inner.index.read().next_sequence();
    let mut tail = writer.tail;
    let segments: Vec<(u32, PathBuf)> = listing
        .segments
        .into_iter()
        .filter(|(id, _)| *id >= tail.segment)
        .collect();
    for (position, (id, path)) in segments.iter().enumerate() {
        let is_last = position + 1 == segments.len();
        // Only the bytes after what was already indexed are read. A segment
        // this store already reads is read through the same open file: if
        // the writer's compaction replaced it since, this store keeps the
        // view it had until it is reopened.
        let from = if *id == tail.segment { tail.offset } else { 0 };
        let known = inner.segments.read().get(id).cloned();
        let bytes = match &known {
            Some(reader) => reader
                .read_from(from)
                .map_err(|e| StoreError::io("read", path, e))?,
            None => {
                let file = inner
                    .io
                    .open_file(path, false)
                    .map_err(|e| StoreError::io("open", path, e))?;
                let len = file.len().map_err(|e| StoreError::io("stat", path, e))?;
                if len < from {
                    return Err(StoreError::corrupt(
                        path,
                        from,
                        "segment shrank under a reader",
                    ));
                }
                read_range(file.as_ref(), path, from, len)?
            }
        };
        // The index is locked for the in-memory work only, not the reads.
        let mut index = inner.index.write();
        let mut compacted = false;
        let start = if from > 0 {
            0
        } else {
            if let Some(version) = other_format_version(&bytes) {
                return Err(unsupported(path, version));
            }
            match SegmentHeader::decode(&bytes) {
                Ok(header) if header.segment_id == u64::from(*id) => {
                    // Segments the writer compacted before this store saw them.
                    compacted = header.flags & SEGMENT_FLAG_COMPACTED != 0;
                    index.skip_to(header.first_sequence);
                    SEGMENT_HEADER_BYTES
                }
                // Still being created by the writer; look again later.
                _ if is_last => break,
                Ok(_) => return Err(StoreError::corrupt(path, 16, "segment id mismatch")),
                Err(reason) => return Err(StoreError::corrupt(path, 0, reason)),
            }
        };
        let mut end = from + bytes.len() as u64;
        let scanned = scan_frames(&bytes, start, index.next_sequence(), compacted, |unit| {
            index_unit(&mut index, *id, from, unit)
        });
        drop(index);
        if let ScanEnd::Damaged {
            cut_offset,
            offset,
            reason,
            valid_frame_after,
        } = scanned
        {
            if !is_last || valid_frame_after {
                return Err(StoreError::corrupt(path, from + offset, reason));
            }
            // A write in progress: stop before it and look again later.
            end = from + cut_offset;
        }
        let reader = match known {
            Some(reader) => reader,
            None => {
                let reader = Arc::new(
                    SegmentReader::open(path.clone(), false)
                        .map_err(|e| StoreError::io("open", path, e))?,
                );
                inner.segments.write().insert(*id, reader.clone());
                reader
            }
        };
        if !is_last {
            // Sealed now: map the same file.
            if let Ok(sealed) = reader.sealed() {
                inner.segments.write().insert(*id, Arc::new(sealed));
            }
        }
        tail = Tail {
            segment: *id,
            offset: end,
        };
    }
    writer.tail = tail;
    let next = {
        let mut index = inner.index.write();
        let next = index.next_sequence();
        index.set_visible(next);
        next
    };
    inner.publish(next);
    Ok(next - before)
}

/// A segment of a format version this build does not read: refused as it is,
/// never repaired.
pub(crate) fn unsupported(path: &Path, version: u16) -> StoreError {
    StoreError::UnsupportedFormat {
        file: path.to_path_buf(),
        version,
        supported: FORMAT_VERSION,
    }
}
