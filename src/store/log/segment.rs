//! Segment files: naming, listing, and positioned reads for the read path.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::frame::{declared_frame_len, FrameError};

const SEGMENT_SUFFIX: &str = ".segment";

/// Names the store owns in its directory besides segments.
pub(crate) const LOCK_FILE_NAME: &str = "LOCK";
/// Directories and files other subsystems keep in the store directory.
pub(crate) const RESERVED_NAMES: &[&str] = &[
    LOCK_FILE_NAME,
    "cursors",
    "projections",
    "checkpoints",
    "snapshots",
];

/// The file name of segment `id`: ten decimal digits, so names sort by id.
pub(crate) fn segment_file_name(id: u32) -> String {
    format!("{id:010}{SEGMENT_SUFFIX}")
}

/// The id of a segment file name, if it is one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What a store directory holds.
#[derive(Debug, Default)]
pub(crate) struct DirListing {
    /// Segment files, sorted by id.
    pub(crate) segments: Vec<(u32, PathBuf)>,
    /// Files batpak does not own.
    pub(crate) foreign: Vec<PathBuf>,
    /// `NNNNNNNNNN.segment.tmp`: a segment rewrite (compaction) that never
    /// reached its commit point.
    pub(crate) unfinished: Vec<PathBuf>,
}

pub(crate) fn list_dir(dir: &Path) -> io::Result<DirListing> {
    let mut listing = DirListing::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            listing.foreign.push(entry.path());
            continue;
        };
        if let Some(id) = parse_segment_file_name(name) {
            listing.segments.push((id, entry.path()));
        } else if name
            .strip_suffix(".tmp")
            .and_then(parse_segment_file_name)
            .is_some()
        {
            listing.unfinished.push(entry.path());
        } else if !RESERVED_NAMES.contains(&name) && !name.ends_with(".tmp") {
            listing.foreign.push(entry.path());
        }
    }
    listing.segments.sort_by_key(|(id, _)| *id);
    listing.foreign.sort();
    listing.unfinished.sort();
    Ok(listing)
}

/// Read access to one segment: memory-mapped once sealed (never written or
/// truncated again), positioned reads while active.
#[derive(Debug)]
pub(crate) struct SegmentReader {
    pub(crate) path: PathBuf,
    file: File,
    map: Option<Mmap>,
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum ReadFrameError {
    Io(io::Error),
    Frame(FrameError),
}

impl SegmentReader {
    pub(crate) fn open(path: PathBuf, sealed: bool) -> io::Result<SegmentReader> {
        let file = File::open(&path)?;
        let map = if sealed { map_file(&file)? } else { None };
        Ok(SegmentReader { path, file, map })
    }

    /// The same file, memory-mapped (once it is sealed).
    pub(crate) fn sealed(&self) -> io::Result<SegmentReader> {
        let file = self.file.try_clone()?;
        let map = map_file(&file)?;
        Ok(SegmentReader {
            path: self.path.clone(),
            file,
            map,
        })
    }

    /// The file from `offset` to its end as it is now (through this reader's
    /// open file, which may be a replaced one).
    pub(crate) fn read_from(&self, offset: u64) -> io::Result<Vec<u8>> {
        let shrank = || {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "segment shrank under a reader",
            )
        };
        let start = usize::try_from(offset).map_err(|_| shrank())?;
        if let Some(map) = &self.map {
            return map.get(start..).map(<[u8]>::to_vec).ok_or_else(shrank);
        }
        let len = usize::try_from(self.file.metadata()?.len()).unwrap_or(usize::MAX);
        let mut bytes = vec![0u8; len.checked_sub(start).ok_or_else(shrank)?];
        let got = read_full_at(&self.file, &mut bytes, offset)?;
        bytes.truncate(got);
        Ok(bytes)
    }

    /// Calls `f` with the bytes of the frame at `offset` (not yet checked).
    pub(crate) fn with_frame<R>(
        &self,
        offset: u64,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, ReadFrameError> {
        if let Some(map) = &self.map {
            return with_mapped_frame(map, offset, f);
        }
        let mut buf = Vec::new();
        let len = read_frame_into(&self.file, offset, FRAME_READ_BYTES, u64::MAX, &mut buf)?;
        Ok(f(&buf[..len]))
    }

    /// [`SegmentReader::with_frame`] for a reader going through the log in
    /// order: frames of an unmapped segment (the active one) are served from
    /// `ahead`, which reads [`READ_AHEAD_BYTES`] at a time once reads run
    /// in order, instead of one read per frame. It comes with the segment's
    /// written bound: how far its bytes are in the file for good.
    pub(crate) fn with_frame_ahead<R>(
        self: &Arc<Self>,
        offset: u64,
        ahead: Option<(&mut ReadAhead, u64)>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, ReadFrameError> {
        match (&self.map, ahead) {
            (None, Some((ahead, written))) => ahead.with_frame(self, offset, written, f),
            _ => self.with_frame(offset, f),
        }
    }
}

/// The frame at `offset` of a mapped segment.
fn with_mapped_frame<R>(
    map: &Mmap,
    offset: u64,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, ReadFrameError> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let rest = map.get(start..).unwrap_or(&[]);
    let len = declared_frame_len(rest).map_err(ReadFrameError::Frame)?;
    let bytes = rest
        .get(..len)
        .ok_or(ReadFrameError::Frame(FrameError::Truncated {
            needed: len,
            available: rest.len(),
        }))?;
    Ok(f(bytes))
}

/// What one read of a frame fetches at first; a second read fetches the
/// rest of a longer frame.
const FRAME_READ_BYTES: usize = 512;

/// What [`ReadAhead`] reads at a time once reads run in order.
pub(crate) const READ_AHEAD_BYTES: usize = 64 * 1024;

/// Reads the frame at `offset` into `buf` (from `offset`), reading `want`
/// bytes at first but nothing at or past `limit` beyond the frame itself.
/// Returns the frame's length; `buf` may hold more after it.
fn read_frame_into(
    file: &File,
    offset: u64,
    want: usize,
    limit: u64,
    buf: &mut Vec<u8>,
) -> Result<usize, ReadFrameError> {
    let room = usize::try_from(limit.saturating_sub(offset)).unwrap_or(usize::MAX);
    buf.clear();
    buf.resize(want.min(room).max(FRAME_READ_BYTES.min(want)), 0);
    let got = read_full_at(file, buf, offset).map_err(ReadFrameError::Io)?;
    buf.truncate(got);
    let len = declared_frame_len(buf).map_err(ReadFrameError::Frame)?;
    if len > buf.len() {
        let have = buf.len();
        buf.resize(len, 0);
        let more = read_full_at(file, &mut buf[have..], offset + have as u64)
            .map_err(ReadFrameError::Io)?;
        if more < len - have {
            return Err(ReadFrameError::Frame(FrameError::Truncated {
                needed: len,
                available: have + more,
            }));
        }
    }
    Ok(len)
}

/// Bytes of an unmapped segment read ahead for a reader going through the
/// log in order (an iterator over a range of sequences).
///
/// Only bytes below the segment's written bound at the time of the read are
/// kept: those are whole frames the log never changes, so later frames can
/// be served from them. Bytes past the bound may still be in flight from a
/// writer and are never served.
#[derive(Debug, Default)]
pub(crate) struct ReadAhead {
    /// The segment the bytes are from (held, so it is never mistaken for
    /// another reader at the same address).
    reader: Option<Arc<SegmentReader>>,
    /// File offset of `bytes[0]`.
    start: u64,
    bytes: Vec<u8>,
    /// End of the last frame served: a read starting there runs in order.
    next: u64,
}

impl ReadAhead {
    /// Serves the frame at `offset` of `reader`, whose bytes below `written`
    /// are in the file for good.
    fn with_frame<R>(
        &mut self,
        reader: &Arc<SegmentReader>,
        offset: u64,
        written: u64,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, ReadFrameError> {
        let same = self.reader.as_ref().is_some_and(|r| Arc::ptr_eq(r, reader));
        if same {
            if let Some(at) = offset
                .checked_sub(self.start)
                .and_then(|at| usize::try_from(at).ok())
            {
                if let Some(rest) = self.bytes.get(at..) {
                    if let Ok(len) = declared_frame_len(rest) {
                        if let Some(bytes) = rest.get(..len) {
                            self.next = offset + len as u64;
                            return Ok(f(bytes));
                        }
                    }
                }
            }
        }
        // In order: read well ahead; elsewhere (a reader skipping through
        // the log) one frame, as an unbuffered read would.
        let in_order = same && offset == self.next;
        let want = if in_order {
            READ_AHEAD_BYTES
        } else {
            FRAME_READ_BYTES
        };
        let len = read_frame_into(&reader.file, offset, want, written, &mut self.bytes)?;
        let keep = usize::try_from(written.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .max(len);
        self.bytes.truncate(keep);
        self.reader = Some(Arc::clone(reader));
        self.start = offset;
        self.next = offset + len as u64;
        Ok(f(&self.bytes[..len]))
    }
}

fn map_file(file: &File) -> io::Result<Option<Mmap>> {
    if file.metadata()?.len() == 0 {
        return Ok(None);
    }
    // SAFETY: sealed segments are never written or truncated by batpak while a
    // store is open; compaction replaces files by rename, which leaves this
    // mapping on the old inode. An outside process truncating a sealed segment
    // of a live store would break that assumption (documented in ARCHITECTURE.md).
    let map = unsafe { Mmap::map(file)? };
    Ok(Some(map))
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames of `sizes` bodies, each body filled with `fill`, as the read
    /// path sees them (a length prefix; the rest is not looked at here).
    fn frames(sizes: &[usize], fill: u8) -> Vec<u8> {
        use crate::store::log::frame::FRAME_PREFIX_BYTES;
        let mut out = Vec::new();
        for &body in sizes {
            out.extend_from_slice(&(body as u32).to_le_bytes());
            out.resize(out.len() + FRAME_PREFIX_BYTES - 4, 0);
            out.resize(out.len() + body, fill);
        }
        out
    }

    /// Read-ahead serves frames from its block only below the written bound
    /// it was given when it read: bytes past it may still be in flight, and
    /// a frame there is read again once written.
    #[test]
    fn read_ahead_serves_only_bytes_below_the_written_bound() {
        use crate::store::log::frame::BODY_FIXED_BYTES;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0000000000.segment");
        let sizes: Vec<usize> = (0..400).map(|i| BODY_FIXED_BYTES + i % 170).collect();
        let (first, later) = sizes.split_at(300);
        let old = [frames(first, 1), frames(later, 2)].concat();
        std::fs::write(&path, &old).unwrap();
        let reader = Arc::new(SegmentReader::open(path.clone(), false).unwrap());
        let written = frames(first, 1).len() as u64;
        let mut ahead = ReadAhead::default();
        let mut offset = 0u64;
        let read = |ahead: &mut ReadAhead, offset: u64, written: u64| {
            reader
                .with_frame_ahead(offset, Some((ahead, written)), <[u8]>::to_vec)
                .unwrap()
        };
        let mut last = 0;
        for &body in first {
            let frame = read(&mut ahead, offset, written);
            assert_eq!(frame.len(), 8 + body);
            assert!(frame[8..].iter().all(|b| *b == 1));
            last = offset;
            offset += frame.len() as u64;
        }
        // A reader starting at the last written frame: a short read, whose
        // bytes past the bound must not be kept either.
        let mut ahead = ReadAhead::default();
        assert_eq!(read(&mut ahead, last, written).len() as u64, offset - last);
        // The writer now puts other bytes where the block held the old ones.
        let new = [frames(first, 1), frames(later, 3)].concat();
        std::fs::write(&path, &new).unwrap();
        let written = new.len() as u64;
        for &body in later {
            let frame = read(&mut ahead, offset, written);
            assert_eq!(frame.len(), 8 + body);
            assert!(frame[8..].iter().all(|b| *b == 3), "stale bytes served");
            offset += frame.len() as u64;
        }
        // Out of order reads work too.
        let frame = read(&mut ahead, 0, written);
        assert_eq!(frame.len(), 8 + first[0]);
    }

    #[test]
    fn segment_names_round_trip_and_reject_lookalikes() {
        assert_eq!(segment_file_name(7), "0000000007.segment");
        assert_eq!(parse_segment_file_name("0000000007.segment"), Some(7));
        assert_eq!(parse_segment_file_name("7.segment"), None);
        assert_eq!(parse_segment_file_name("00000000x7.segment"), None);
        assert_eq!(parse_segment_file_name("0000000007.segment.tmp"), None);
    }
}
