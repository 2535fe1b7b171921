//! Integrity checks: every checksum, every sequence, every clock and every
//! hash-chain link, with a report that says exactly where damage is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::engine::Inner;
use super::log::frame::{
    decode_frame, other_format_version, FrameView, SegmentHeader, SEGMENT_FLAG_COMPACTED,
    SEGMENT_HEADER_BYTES,
};
use super::log::scan::valid_frame_after;
use super::log::segment::list_dir;
use crate::{EventHash, StoreConfig, StoreError};

/// What kind of damage [`verify`](crate::Store::verify) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum DamageKind {
    /// A segment header is unreadable or inconsistent.
    SegmentHeader,
    /// Bytes that should be a frame fail the checksum or layout checks.
    Frame,
    /// The log ends inside a frame or an atomic batch (a torn tail).
    TornTail,
    /// A frame carries a sequence out of order, or sequences are missing.
    Sequence,
    /// An entity's clock does not count up by one.
    Clock,
    /// An event's hash-chain link does not match its content and the
    /// previous link of its entity (edited, dropped or reordered events).
    Chain,
    /// An atomic batch is incomplete or its items are inconsistent.
    Batch,
    /// The open store's index disagrees with the log.
    Index,
}

/// One place where the store is damaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// What is wrong.
    pub kind: DamageKind,
    /// The segment file.
    pub file: PathBuf,
    /// Byte offset in that file.
    pub offset: u64,
    /// The entity concerned, when the damaged frame could be read.
    pub entity: Option<String>,
    /// The sequence concerned, when known.
    pub sequence: Option<u64>,
    /// A human explanation.
    pub detail: String,
}

/// The result of a verification run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Segment files checked.
    pub segments: u32,
    /// Bytes checked.
    pub bytes: u64,
    /// Frames whose checksum and layout were good.
    pub events: u64,
    /// Distinct entities whose chains were followed.
    pub entities: u64,
    /// Hash-chain links recomputed and compared (0 without the `blake3` feature).
    pub links_checked: u64,
    /// Chain anchors accepted: stubs compaction left where an entity's
    /// earlier events were removed. The chain is checked from each anchor on;
    /// the anchor's own link cannot be recomputed without what was removed.
    pub anchors: u64,
    /// Everything found, in log order. A damaged frame usually brings
    /// follow-on entries after it (the sequence gap it leaves, and the clock
    /// and chain of its entity that no longer link up): the first entry is
    /// where the damage starts.
    pub damage: Vec<Damage>,
}

impl VerifyReport {
    /// True if nothing was found.
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Progress of a verification run, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyProgress {
    /// Bytes checked so far.
    pub bytes_done: u64,
    /// Bytes to check in total.
    pub bytes_total: u64,
    /// Segment files finished.
    pub segments_done: u32,
    /// Segment files in total.
    pub segments_total: u32,
    /// Damage found so far.
    pub damage_found: u64,
}

/// Most damage entries one run records; beyond this only counts grow.
const DAMAGE_MAX: usize = 10_000;

struct Chain {
    clock: u64,
    last_hash: Option<EventHash>,
}

/// Verifies the store directory `config.dir()` without opening it as a store
/// (no lock, no index, nothing written): usable on a store that refuses to
/// open because it is damaged. Reports every damaged place it can reach.
pub fn verify_dir(config: &StoreConfig) -> Result<VerifyReport, StoreError> {
    verify_files(config.dir(), u64::MAX, None, &mut |_| {})
}

/// Verifies with a progress callback; see [`verify_dir`].
pub fn verify_dir_with_progress(
    config: &StoreConfig,
    progress: &mut dyn FnMut(&VerifyProgress),
) -> Result<VerifyReport, StoreError> {
    verify_files(config.dir(), u64::MAX, None, progress)
}

impl Inner {
    pub(crate) fn verify(
        &self,
        progress: &mut dyn FnMut(&VerifyProgress),
    ) -> Result<VerifyReport, StoreError> {
        // Hand everything acknowledged to the OS so the files hold it.
        if !self.read_only {
            let mut writer = self.writer.lock();
            self.flush_pending(&mut writer)?;
        }
        let visible = self.index.read().visible();
        verify_files(self.dir(), visible, Some(self), progress)
    }
}

fn verify_files(
    dir: &Path,
    visible: u64,
    inner: Option<&Inner>,
    progress: &mut dyn FnMut(&VerifyProgress),
) -> Result<VerifyReport, StoreError> {
    let listing = list_dir(dir).map_err(|e| StoreError::io("list", dir, e))?;
    let sizes: Vec<u64> = listing
        .segments
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .collect();
    let mut state = Progress {
        report: VerifyReport::default(),
        progress: VerifyProgress {
            bytes_done: 0,
            bytes_total: sizes.iter().sum(),
            segments_done: 0,
            segments_total: listing.segments.len() as u32,
            damage_found: 0,
        },
    };
    let mut chains: HashMap<String, Chain> = HashMap::new();
    let mut next_sequence = 0u64;
    let mut follows_compacted = false;
    let count = listing.segments.len();
    for (position, (id, path)) in listing.segments.iter().enumerate() {
        let is_last = position + 1 == count;
        let bytes = std::fs::read(path).map_err(|e| StoreError::io("read", path, e))?;
        state.report.segments += 1;
        state.report.bytes += bytes.len() as u64;
        if let Some(version) = other_format_version(&bytes) {
            return Err(super::open::unsupported(path, version));
        }
        let header = match SegmentHeader::decode(&bytes) {
            Ok(header) if header.segment_id == u64::from(*id) => header,
            Ok(header) => {
                state.damage(
                    DamageKind::SegmentHeader,
                    path,
                    16,
                    None,
                    None,
                    format!("header names segment {}", header.segment_id),
                );
                header
            }
            Err(reason) => {
                // An unfinished last segment (crash during creation) is harmless.
                if !is_last || valid_frame_after(&bytes, 0) {
                    state.damage(DamageKind::SegmentHeader, path, 0, None, None, reason);
                }
                state.finish_segment(bytes.len() as u64, progress);
                continue;
            }
        };
        let compacted = header.flags & SEGMENT_FLAG_COMPACTED != 0;
        // Compaction may remove a segment's last events: a gap follows it.
        let gap_allowed = compacted || follows_compacted;
        follows_compacted = compacted;
        if header.first_sequence < next_sequence
            || (!gap_allowed && header.first_sequence != next_sequence)
        {
            state.damage(
                DamageKind::Sequence,
                path,
                24,
                None,
                Some(header.first_sequence),
                format!(
                    "segment starts at sequence {}, expected {next_sequence}",
                    header.first_sequence
                ),
            );
        }
        if gap_allowed {
            next_sequence = next_sequence.max(header.first_sequence);
        }
        let mut at = SEGMENT_HEADER_BYTES;
        // Items of the batch being read: (remaining after this one, offset of its first item).
        let mut open_batch: Option<(u32, u64)> = None;
        while at < bytes.len() {
            let view = match decode_frame(&bytes[at..]) {
                Ok(view) => view,
                Err(error) => {
                    if bytes[at..].iter().all(|&b| b == 0) {
                        break; // unused, zero-filled space
                    }
                    let resume = next_frame(&bytes, at + 1);
                    let kind = if is_last && resume.is_none() {
                        DamageKind::TornTail
                    } else {
                        DamageKind::Frame
                    };
                    state.damage(kind, path, at as u64, None, None, error.to_string());
                    match resume {
                        Some(resume) => {
                            at = resume;
                            continue;
                        }
                        None => break,
                    }
                }
            };
            if view.sequence >= visible {
                break; // not yet acknowledged when the run started
            }
            state.report.events += 1;
            check_frame(
                &mut state,
                &mut chains,
                &mut next_sequence,
                compacted,
                path,
                at as u64,
                &view,
            );
            if let Some(inner) = inner {
                check_index(&mut state, inner, *id, path, at as u64, &view);
            }
            match (open_batch, view.batch_remaining) {
                (Some((remaining, _)), now) if remaining != now + 1 => {
                    state.damage(
                        DamageKind::Batch,
                        path,
                        at as u64,
                        Some(view.entity),
                        Some(view.sequence),
                        format!(
                            "batch item says {now} items follow, expected {}",
                            remaining - 1
                        ),
                    );
                    open_batch = (now > 0).then_some((now, at as u64));
                }
                (Some(_), 0) => open_batch = None,
                (Some((_, start)), now) => open_batch = Some((now, start)),
                (None, 0) => {}
                (None, now) => open_batch = Some((now, at as u64)),
            }
            at += view.frame_len;
        }
        if let Some((remaining, start)) = open_batch {
            state.damage(
                DamageKind::TornTail,
                path,
                start,
                None,
                None,
                format!("atomic batch ends with {remaining} items missing"),
            );
        }
        state.finish_segment(bytes.len() as u64, progress);
    }
    if let Some(inner) = inner {
        if next_sequence < visible {
            let dir = inner.dir().to_path_buf();
            state.damage(
                DamageKind::Index,
                &dir,
                0,
                None,
                Some(next_sequence),
                format!("the index holds {visible} events but the log ends at {next_sequence}"),
            );
        }
    }
    state.report.entities = chains.len() as u64;
    Ok(state.report)
}

struct Progress {
    report: VerifyReport,
    progress: VerifyProgress,
}

impl Progress {
    fn damage(
        &mut self,
        kind: DamageKind,
        file: &Path,
        offset: u64,
        entity: Option<&str>,
        sequence: Option<u64>,
        detail: String,
    ) {
        self.progress.damage_found += 1;
        if self.report.damage.len() < DAMAGE_MAX {
            self.report.damage.push(Damage {
                kind,
                file: file.to_path_buf(),
                offset,
                entity: entity.map(str::to_string),
                sequence,
                detail,
            });
        }
    }

    fn finish_segment(&mut self, bytes: u64, progress: &mut dyn FnMut(&VerifyProgress)) {
        self.progress.bytes_done += bytes;
        self.progress.segments_done += 1;
        progress(&self.progress);
    }
}

/// The next offset at or after `from` where a valid frame starts.
fn next_frame(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&at| decode_frame(&bytes[at..]).is_ok())
}

fn check_frame(
    state: &mut Progress,
    chains: &mut HashMap<String, Chain>,
    next_sequence: &mut u64,
    compacted: bool,
    path: &Path,
    offset: u64,
    view: &FrameView<'_>,
) {
    let sequence_ok = if compacted {
        view.sequence >= *next_sequence
    } else {
        view.sequence == *next_sequence
    };
    if !sequence_ok {
        state.damage(
            DamageKind::Sequence,
            path,
            offset,
            Some(view.entity),
            Some(view.sequence),
            format!(
                "sequence {} where {} was expected",
                view.sequence, next_sequence
            ),
        );
    }
    if view.is_stub() && !compacted {
        state.damage(
            DamageKind::Frame,
            path,
            offset,
            Some(view.entity),
            Some(view.sequence),
            "stub of a removed event in a segment that was never compacted".into(),
        );
    }
    *next_sequence = (*next_sequence).max(view.sequence + 1);
    let chain = chains.entry(view.entity.to_string()).or_insert(Chain {
        clock: 0,
        last_hash: None,
    });
    // A stub in a compacted segment may stand for removed events before it:
    // it anchors its entity's chain at its own clock and link.
    let anchor = compacted && view.is_stub() && view.clock > chain.clock + 1;
    if anchor {
        state.report.anchors += 1;
    }
    if view.clock != chain.clock + 1 && !anchor {
        state.damage(
            DamageKind::Clock,
            path,
            offset,
            Some(view.entity),
            Some(view.sequence),
            format!("clock {} follows clock {}", view.clock, chain.clock),
        );
    }
    #[cfg(feature = "blake3")]
    {
        match view.hash {
            Some(stored) => {
                let expected = view.recompute_link(chain.last_hash.as_ref());
                if !anchor {
                    state.report.links_checked += 1;
                }
                if expected != stored && !anchor {
                    state.damage(
                        DamageKind::Chain,
                        path,
                        offset,
                        Some(view.entity),
                        Some(view.sequence),
                        format!(
                            "hash-chain link {} does not match the event (expected {})",
                            stored.to_hex(),
                            expected.to_hex()
                        ),
                    );
                }
            }
            None if chain.last_hash.is_some() => state.damage(
                DamageKind::Chain,
                path,
                offset,
                Some(view.entity),
                Some(view.sequence),
                "event has no hash-chain link but earlier events of its entity do".into(),
            ),
            None => {}
        }
    }
    chain.clock = view.clock;
    chain.last_hash = view.hash;
}

fn check_index(
    state: &mut Progress,
    inner: &Inner,
    segment: u32,
    path: &Path,
    offset: u64,
    view: &FrameView<'_>,
) {
    let index = inner.index.read();
    let Some(entry) = index.entry(view.sequence) else {
        return;
    };
    let agrees = entry.segment == segment
        && u64::from(entry.offset) == offset
        && index.event_id_at(view.sequence) == Some(view.event_id)
        && u64::from(entry.clock) == view.clock;
    drop(index);
    if !agrees {
        state.damage(
            DamageKind::Index,
            path,
            offset,
            Some(view.entity),
            Some(view.sequence),
            "the index entry for this sequence points elsewhere or disagrees".into(),
        );
    }
}

/// Reads the frame at `sequence` and returns its stored link and the link
/// recomputed from its bytes and `previous`, for chain walks.
#[cfg(feature = "blake3")]
impl Inner {
    pub(crate) fn link_at(
        &self,
        sequence: u64,
        previous: Option<&EventHash>,
    ) -> Result<(Option<EventHash>, EventHash), StoreError> {
        use super::log::segment::ReadFrameError;
        let entry = self.index.read().entry(sequence).ok_or_else(|| {
            StoreError::corrupt(self.dir(), sequence, "event vanished during a chain walk")
        })?;
        self.ensure_flushed(entry.segment, u64::from(entry.offset))?;
        let reader = self
            .segments
            .read()
            .get(&entry.segment)
            .cloned()
            .ok_or_else(|| {
                StoreError::corrupt(
                    self.segment_path(entry.segment),
                    u64::from(entry.offset),
                    "segment missing",
                )
            })?;
        let offset = u64::from(entry.offset);
        let result = reader.with_frame(offset, |bytes| {
            decode_frame(bytes).map(|view| (view.hash, view.recompute_link(previous)))
        });
        match result {
            Ok(Ok(links)) => Ok(links),
            Ok(Err(error)) => Err(StoreError::corrupt(
                reader.path.clone(),
                offset,
                error.to_string(),
            )),
            Err(ReadFrameError::Io(source)) => {
                Err(StoreError::io("read", reader.path.clone(), source))
            }
            Err(ReadFrameError::Frame(error)) => Err(StoreError::corrupt(
                reader.path.clone(),
                offset,
                error.to_string(),
            )),
        }
    }
}
