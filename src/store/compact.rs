//! Compaction and retention: reclaiming space under a [`Compaction`] policy.
//!
//! Compaction rewrites **sealed** segments, one at a time, and never changes
//! a sequence. For each segment it decides per event: keep (the frame is
//! copied byte for byte), redact (the payload becomes its blake3 digest, so
//! the chain link still verifies), or remove. A removed event leaves a
//! **stub** (a frame with the payload redacted and the `STUB` flag) when
//! something still needs it:
//!
//! - it is the last removed event before a kept event of its entity, or
//!   the entity's last record of all: the stub carries the entity's clock and
//!   chain link, so the next kept event still links up, and appends to the
//!   entity continue its clock and chain (segments are processed newest
//!   first, so "the next record" may be in a later segment: on disk a gap is
//!   always followed by a stub, after every step);
//! - its unit (a single append or an atomic batch) carried an idempotency
//!   key: the key survives, and a retry is answered with the original
//!   receipts, read from the stubs;
//! - another event of its atomic batch survives: batches stay whole units.
//!
//! Every other removed event leaves nothing; its sequence becomes a gap.
//!
//! Commit protocol per segment (see `docs/reference/ARCHITECTURE-ops.md`):
//! write `NNNNNNNNNN.segment.tmp`, sync it, rename it over the segment (the
//! commit point), sync the directory; then swap the segment reader and the
//! index entries together under the index lock. A crash before the rename
//! leaves the old segment (the temporary file is removed on open), after it
//! the new one; readers holding the old file keep reading the old inode.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::checkpoint::{footer_file_name, replace_by_rename, CHECKPOINT_DIR};
use super::engine::{now_us, Inner};
use super::index::Rewritten;
use super::log::frame::{
    encode_frame, mark_frame, FrameView, SegmentHeader, REDACTED, SEGMENT_FLAG_COMPACTED,
    SEGMENT_HEADER_BYTES, STUB,
};
use super::log::scan::{scan_frames, ScanEnd};
use super::log::segment::{segment_file_name, SegmentReader};
use super::open::read_range;
use crate::{EventId, StoreError};

/// A retention policy: which events [`Store::compact`](crate::Store::compact)
/// removes and which payloads it redacts. An empty policy changes nothing.
///
/// Removal wins over redaction. Compaction works on sealed segments; it first
/// seals the active segment, so every event appended before the call is
/// covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compaction {
    drop_entities: BTreeSet<String>,
    drop_before_sequence: Option<u64>,
    drop_before_us: Option<i64>,
    redact_entities: BTreeSet<String>,
    redact_events: BTreeSet<EventId>,
}

impl Compaction {
    /// A policy that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes every event of `entity` (exact name).
    pub fn drop_entity(mut self, entity: impl Into<String>) -> Self {
        self.drop_entities.insert(entity.into());
        self
    }

    /// Removes every event with a sequence below `sequence`.
    pub fn drop_before_sequence(mut self, sequence: u64) -> Self {
        self.drop_before_sequence = Some(sequence);
        self
    }

    /// Removes every event whose timestamp is before `time`.
    pub fn drop_before(self, time: SystemTime) -> Self {
        let micros = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
        };
        self.drop_before_timestamp_us(micros)
    }

    /// Removes every event whose timestamp (microseconds since the Unix
    /// epoch) is below `timestamp_us`.
    pub fn drop_before_timestamp_us(mut self, timestamp_us: i64) -> Self {
        self.drop_before_us = Some(timestamp_us);
        self
    }

    /// Removes every event older than `age` at the time of the call.
    pub fn drop_older_than(self, age: Duration) -> Self {
        let cutoff = SystemTime::now().checked_sub(age).unwrap_or(UNIX_EPOCH);
        self.drop_before(cutoff)
    }

    /// Redacts the payload of every event of `entity`: the events stay, with
    /// every header field, and read back with a `null` payload and
    /// [`StoredEvent::redacted`](crate::StoredEvent::redacted) set.
    pub fn redact_entity(mut self, entity: impl Into<String>) -> Self {
        self.redact_entities.insert(entity.into());
        self
    }

    /// Redacts the payload of one event.
    pub fn redact_event(mut self, event_id: EventId) -> Self {
        self.redact_events.insert(event_id);
        self
    }

    /// True if the policy would change nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    fn decide(&self, view: &FrameView<'_>) -> Decision {
        let removed = view.is_stub()
            || self.drop_entities.contains(view.entity)
            || self.drop_before_sequence.is_some_and(|s| view.sequence < s)
            || self.drop_before_us.is_some_and(|t| view.timestamp_us < t);
        if removed {
            Decision::Remove
        } else if view.is_redacted()
            || self.redact_entities.contains(view.entity)
            || self.redact_events.contains(&view.event_id)
        {
            Decision::Redact
        } else {
            Decision::Keep
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Keep,
    Redact,
    Remove,
}

/// What one frame of the old segment becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Copy,
    Redact,
    Stub,
    Vanish,
}

impl Fate {
    /// True if the frame's bytes stay as they are (a kept frame, or one
    /// already redacted or already a stub).
    fn keeps_bytes_of(self, view: &FrameView<'_>) -> bool {
        match self {
            Fate::Copy => true,
            Fate::Redact => view.is_redacted(),
            Fate::Stub => view.is_stub(),
            Fate::Vanish => false,
        }
    }
}

/// Progress of a compaction, for progress bars
/// ([`Store::compact_with_progress`](crate::Store::compact_with_progress)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionProgress {
    /// Sealed segments looked at so far.
    pub segments_done: u32,
    /// Sealed segments to look at.
    pub segments_total: u32,
    /// Bytes of those segments read so far.
    pub bytes_done: u64,
    /// Bytes of all sealed segments.
    pub bytes_total: u64,
}

/// What [`Store::compact`](crate::Store::compact) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactionReport {
    /// Sealed segments examined.
    pub segments_examined: u32,
    /// Segments rewritten (the others needed no change).
    pub segments_rewritten: u32,
    /// Events removed by this run (stubs included).
    pub events_removed: u64,
    /// Events whose payload this run redacted.
    pub events_redacted: u64,
    /// Stubs written (removed events that keep a clock, a chain link or an
    /// idempotency key).
    pub stubs: u64,
    /// Bytes of the rewritten segments before.
    pub bytes_before: u64,
    /// Bytes of the rewritten segments after.
    pub bytes_after: u64,
    /// How long it took.
    #[serde(with = "duration_micros")]
    pub duration: Duration,
}

impl CompactionReport {
    /// Bytes given back to the file system.
    pub fn bytes_reclaimed(&self) -> u64 {
        self.bytes_before.saturating_sub(self.bytes_after)
    }
}

mod duration_micros {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u128(duration.as_micros())
    }
}

/// One rewritten segment, ready to commit.
struct Rewrite {
    bytes: Vec<u8>,
    changes: Vec<(u64, Rewritten)>,
    removed: u64,
    redacted: u64,
    stubs: u64,
}

impl Inner {
    pub(crate) fn compact(
        &self,
        policy: &Compaction,
        progress: &mut dyn FnMut(&CompactionProgress),
    ) -> Result<CompactionReport, StoreError> {
        let started = Instant::now();
        let mut report = CompactionReport::default();
        // One compaction at a time, and no footer writing or snapshot copying
        // while segments are replaced.
        let mut maintenance = self.maintenance.state.lock();
        let active_id = {
            let mut writer = self.writer.lock();
            self.check_writable(&writer)?;
            if policy.is_empty() {
                return Ok(report);
            }
            // Seal the active segment if it holds events, so every event
            // appended before this call is in a sealed segment.
            let holds_events = writer
                .active
                .as_ref()
                .is_some_and(|a| a.end() > SEGMENT_HEADER_BYTES as u64);
            if holds_events {
                self.rotate(&mut writer)?;
            }
            writer.active.as_ref().map(|a| a.id)
        };
        let Some(active_id) = active_id else {
            return Err(StoreError::ReadOnly);
        };
        let sealed: Vec<(u32, u64)> = self
            .segments
            .read()
            .iter()
            .filter(|(id, _)| **id < active_id)
            .map(|(id, reader)| (*id, std::fs::metadata(&reader.path).map_or(0, |m| m.len())))
            .collect();
        let mut step = CompactionProgress {
            segments_done: 0,
            segments_total: sealed.len() as u32,
            bytes_done: 0,
            bytes_total: sealed.iter().map(|(_, len)| len).sum(),
        };
        progress(&step);
        // Newest first: see `plan`. The active segment holds no events yet
        // (it was just sealed), or only ones appended since, which are kept.
        let mut later: HashMap<String, bool> = HashMap::new();
        for (id, len) in sealed.into_iter().rev() {
            step.segments_done += 1;
            step.bytes_done += len;
            if self.closed.load(std::sync::atomic::Ordering::Acquire) {
                return Err(StoreError::Closed);
            }
            report.segments_examined += 1;
            let path = self.segment_path(id);
            let old = read_segment(self, &path)?;
            let Some(rewrite) = rewrite_segment(policy, &mut later, id, &path, &old)? else {
                progress(&step);
                continue;
            };
            if report.segments_rewritten == 0 {
                // Cached projections may hold what is about to be removed.
                self.clear_projection_cache()?;
            }
            self.commit_rewrite(id, &path, &rewrite)?;
            maintenance.footers.remove(&id);
            maintenance.compacted.insert(id);
            report.segments_rewritten += 1;
            report.events_removed += rewrite.removed;
            report.events_redacted += rewrite.redacted;
            report.stubs += rewrite.stubs;
            report.bytes_before += old.len() as u64;
            report.bytes_after += rewrite.bytes.len() as u64;
            tracing::info!(
                segment = id,
                removed = rewrite.removed,
                redacted = rewrite.redacted,
                stubs = rewrite.stubs,
                bytes_before = old.len(),
                bytes_after = rewrite.bytes.len(),
                "compacted segment"
            );
            progress(&step);
        }
        if report.segments_rewritten > 0 {
            // Again: a projection folded during the run saw the old state.
            self.clear_projection_cache()?;
        }
        report.duration = started.elapsed();
        Ok(report)
    }

    /// Removes every entry of the store's own projection cache
    /// (`<store>/projections/`, see [`FileCache::for_store`](crate::FileCache::for_store)):
    /// states folded from removed or redacted events must not outlive them.
    /// Caches kept elsewhere are the application's to clear.
    fn clear_projection_cache(&self) -> Result<(), StoreError> {
        let root = self.dir().join(crate::FileCache::STORE_SUBDIRECTORY);
        let Ok(keys) = std::fs::read_dir(&root) else {
            return Ok(());
        };
        for key in keys.filter_map(Result::ok) {
            let key_dir = key.path();
            let Ok(entries) = std::fs::read_dir(&key_dir) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                self.io
                    .remove_file(&path)
                    .map_err(|e| StoreError::io("remove", &path, e))?;
            }
            let _ = std::fs::remove_dir(&key_dir);
        }
        self.io
            .sync_dir(&root)
            .map_err(|e| StoreError::io("sync directory", &root, e))
    }

    /// Writes the new segment under a temporary name, renames it into place
    /// and swaps the reader and the index entries.
    fn commit_rewrite(
        &self,
        id: u32,
        path: &std::path::Path,
        rewrite: &Rewrite,
    ) -> Result<(), StoreError> {
        let dir = self.dir();
        // `NNNNNNNNNN.segment.tmp`, synced, then renamed over the segment:
        // THE COMMIT POINT, from here on the segment is the new one.
        replace_by_rename(
            self.io.as_ref(),
            dir,
            &segment_file_name(id),
            &rewrite.bytes,
            self.config.sync_mode,
        )?;
        let synced = self
            .io
            .sync_dir(dir)
            .map_err(|e| StoreError::io("sync directory", dir, e));
        // The file at `path` is the new segment whatever the directory sync
        // did, so the in-memory view follows it now. Readers that hold the
        // old reader keep reading the old inode, consistently.
        let reader = SegmentReader::open(path.to_path_buf(), true)
            .map_err(|e| StoreError::io("map", path, e))?;
        {
            let mut index = self.index.write();
            self.segments.write().insert(id, Arc::new(reader));
            index.apply_rewrite(id, &rewrite.changes);
            index.trim_removed_prefix();
        }
        // The old footer describes the old file; open would ignore it.
        let footer = dir.join(CHECKPOINT_DIR).join(footer_file_name(id));
        if footer.exists() {
            if let Err(error) = self.io.remove_file(&footer) {
                tracing::warn!(file = %footer.display(), %error, "could not remove a stale footer");
            }
        }
        synced
    }
}

fn read_segment(inner: &Inner, path: &std::path::Path) -> Result<Vec<u8>, StoreError> {
    let file = inner
        .io
        .open_file(path, false)
        .map_err(|e| StoreError::io("open", path, e))?;
    let len = file.len().map_err(|e| StoreError::io("stat", path, e))?;
    let bytes = read_range(file.as_ref(), path, 0, len)?;
    let got = bytes.len() as u64;
    if got != len {
        return Err(StoreError::corrupt(
            path,
            got,
            "segment shorter than its length",
        ));
    }
    Ok(bytes)
}

/// Plans and encodes the rewrite of one sealed segment; `None` if the policy
/// changes nothing in it.
fn rewrite_segment(
    policy: &Compaction,
    later: &mut HashMap<String, bool>,
    id: u32,
    path: &std::path::Path,
    old: &[u8],
) -> Result<Option<Rewrite>, StoreError> {
    let header =
        SegmentHeader::decode(old).map_err(|reason| StoreError::corrupt(path, 0, reason))?;
    let compacted = header.flags & SEGMENT_FLAG_COMPACTED != 0;
    // Collect every unit; a sealed segment must scan clean to be rewritten.
    let mut units: Vec<Vec<(FrameView<'_>, u64)>> = Vec::new();
    let scanned = scan_frames(
        old,
        SEGMENT_HEADER_BYTES,
        header.first_sequence,
        compacted,
        |unit| {
            units.push(unit.to_vec());
            Ok(())
        },
    );
    if let ScanEnd::Damaged { offset, reason, .. } = scanned {
        return Err(StoreError::corrupt(
            path,
            offset,
            format!("compaction refuses a damaged segment: {reason}"),
        ));
    }
    let fates = plan(policy, &units, later);
    let changes_anything = units
        .iter()
        .flatten()
        .zip(&fates)
        .any(|((view, _), fate)| !fate.keeps_bytes_of(view));
    if !changes_anything {
        return Ok(None);
    }
    // A new identity: images of the old file never match the new one.
    let created_us = now_us().max(header.created_us.saturating_add(1));
    let new_header = SegmentHeader {
        flags: header.flags | SEGMENT_FLAG_COMPACTED,
        segment_id: u64::from(id),
        first_sequence: header.first_sequence,
        created_us,
    };
    let mut bytes = Vec::with_capacity(old.len());
    bytes.extend_from_slice(&new_header.encode());
    let mut rewrite = Rewrite {
        bytes,
        changes: Vec::new(),
        removed: 0,
        redacted: 0,
        stubs: 0,
    };
    for ((view, offset), fate) in units.iter().flatten().zip(&fates) {
        let at = rewrite.bytes.len();
        let new_offset = u32::try_from(at)
            .map_err(|_| StoreError::corrupt(path, *offset, "segment offset beyond 4 GiB"))?;
        if fate.keeps_bytes_of(view) {
            let start = *offset as usize;
            rewrite
                .bytes
                .extend_from_slice(&old[start..start + view.frame_len]);
        }
        let change = match fate {
            Fate::Copy if view.is_stub() => Rewritten::Stub(new_offset),
            Fate::Copy => Rewritten::Kept(new_offset),
            Fate::Redact => {
                if !view.is_redacted() {
                    encode_redacted(view, REDACTED, &mut rewrite.bytes);
                    rewrite.redacted += 1;
                }
                Rewritten::Kept(new_offset)
            }
            Fate::Stub => {
                if !view.is_stub() {
                    encode_redacted(view, REDACTED | STUB, &mut rewrite.bytes);
                    rewrite.removed += 1;
                    rewrite.stubs += 1;
                }
                Rewritten::Stub(new_offset)
            }
            Fate::Vanish => {
                if !view.is_stub() {
                    rewrite.removed += 1;
                }
                Rewritten::Vanished
            }
        };
        rewrite.changes.push((view.sequence, change));
    }
    Ok(Some(rewrite))
}

/// Appends `view` re-encoded with its payload replaced by the payload's
/// digest (kept as is if it already is one) and `flags` set. Every header
/// field and the stored link stay, so the chain still verifies.
fn encode_redacted(view: &FrameView<'_>, flags: u8, out: &mut Vec<u8>) {
    let digest = redacted_payload(view);
    let mut fields = view.fields();
    fields.payload = &digest;
    let start = out.len();
    encode_frame(&fields, view.hash.as_ref(), out);
    mark_frame(&mut out[start..], flags);
}

/// What a redacted frame stores in place of the payload: its blake3 digest,
/// or nothing for events written without hash chains.
fn redacted_payload(view: &FrameView<'_>) -> Vec<u8> {
    if view.is_redacted() {
        return view.payload.to_vec();
    }
    #[cfg(feature = "blake3")]
    if view.hash.is_some() {
        return super::log::frame::payload_digest(view.payload).to_vec();
    }
    Vec::new()
}

/// Decides the fate of every frame, in segment order.
///
/// `later` maps each entity to whether its first record after this segment
/// (in the segments already processed: compaction goes from the newest
/// sealed segment to the oldest) is a stub; absent means no later record.
/// It is updated to describe this segment's first surviving records.
fn plan(
    policy: &Compaction,
    units: &[Vec<(FrameView<'_>, u64)>],
    later: &mut HashMap<String, bool>,
) -> Vec<Fate> {
    let decisions: Vec<Decision> = units
        .iter()
        .flatten()
        .map(|(view, _)| policy.decide(view))
        .collect();
    let mut fates = vec![Fate::Copy; decisions.len()];
    // Backwards: a removed event vanishes only if the next record of its
    // entity is removed too (that one, or a later one, keeps the entity's
    // clock and link as a stub). The next record may be in a later segment,
    // already rewritten: on disk, a gap is always followed by a stub, at
    // every step of a run.
    let frames: Vec<&FrameView<'_>> = units.iter().flatten().map(|(v, _)| v).collect();
    let mut next_removed: HashMap<&str, bool> = HashMap::new();
    for (at, view) in frames.iter().enumerate().rev() {
        let removed = decisions[at] == Decision::Remove;
        let next_is_stub = match next_removed.get(view.entity) {
            Some(removed) => *removed,
            None => later.get(view.entity) == Some(&true),
        };
        fates[at] = match decisions[at] {
            Decision::Keep => Fate::Copy,
            Decision::Redact => Fate::Redact,
            Decision::Remove if next_is_stub => Fate::Vanish,
            Decision::Remove => Fate::Stub,
        };
        next_removed.insert(view.entity, removed);
    }
    // Units stay whole: a keyed unit keeps stubs of all its removed events
    // (its receipts can be replayed), and so does any unit of which
    // something survives.
    let mut at = 0;
    for unit in units {
        let range = at..at + unit.len();
        at += unit.len();
        let keyed = unit
            .first()
            .is_some_and(|(v, _)| v.idempotency_key.is_some());
        let survives = fates[range.clone()].iter().any(|f| *f != Fate::Vanish);
        if keyed || (survives && unit.len() > 1) {
            for fate in &mut fates[range] {
                if *fate == Fate::Vanish {
                    *fate = Fate::Stub;
                }
            }
        }
    }
    // What the next (older) segment will see after this one.
    let mut first_seen: HashMap<&str, bool> = HashMap::new();
    for (view, fate) in frames.iter().zip(&fates) {
        if *fate != Fate::Vanish {
            first_seen
                .entry(view.entity)
                .or_insert(*fate == Fate::Stub || view.is_stub());
        }
    }
    for (entity, is_stub) in first_seen {
        later.insert(entity.to_string(), is_stub);
    }
    fates
}
