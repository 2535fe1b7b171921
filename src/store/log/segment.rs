//! Segment files: naming, listing, and positioned reads for the read path.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

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
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let rest = map.get(start..).unwrap_or(&[]);
            let len = declared_frame_len(rest).map_err(ReadFrameError::Frame)?;
            let bytes = rest
                .get(..len)
                .ok_or(ReadFrameError::Frame(FrameError::Truncated {
                    needed: len,
                    available: rest.len(),
                }))?;
            return Ok(f(bytes));
        }
        // One read usually covers the whole frame; a second fetches the rest.
        let mut buf = vec![0u8; 512];
        let got = read_full_at(&self.file, &mut buf, offset).map_err(ReadFrameError::Io)?;
        buf.truncate(got);
        let len = declared_frame_len(&buf).map_err(ReadFrameError::Frame)?;
        if len > buf.len() {
            let have = buf.len();
            buf.resize(len, 0);
            let more = read_full_at(&self.file, &mut buf[have..], offset + have as u64)
                .map_err(ReadFrameError::Io)?;
            if more < len - have {
                return Err(ReadFrameError::Frame(FrameError::Truncated {
                    needed: len,
                    available: have + more,
                }));
            }
        }
        buf.truncate(len);
        Ok(f(&buf))
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

    #[test]
    fn segment_names_round_trip_and_reject_lookalikes() {
        assert_eq!(segment_file_name(7), "0000000007.segment");
        assert_eq!(parse_segment_file_name("0000000007.segment"), Some(7));
        assert_eq!(parse_segment_file_name("7.segment"), None);
        assert_eq!(parse_segment_file_name("00000000x7.segment"), None);
        assert_eq!(parse_segment_file_name("0000000007.segment.tmp"), None);
    }
}
