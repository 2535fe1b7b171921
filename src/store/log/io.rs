//! The one seam through which the write and recovery paths touch the file
//! system, so tests can make any of those calls fail (feature
//! `dangerous-test-hooks`, see [`crate::fault`]).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::SyncMode;

/// A file opened through the seam.
pub(crate) trait StorageFile: Send + Sync + fmt::Debug {
    /// Writes all of `bytes` at `offset`.
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()>;
    /// Reads into `buf` at `offset`; returns how many bytes were read.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Flushes to stable storage.
    fn sync(&self, mode: SyncMode) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length.
    fn len(&self) -> io::Result<u64>;
    /// Starts writing `len` bytes at `offset` back to the device without
    /// waiting (a hint; syncing stays the job of [`StorageFile::sync`]).
    fn start_writeback(&self, _offset: u64, _len: u64) {}
}

/// File-system operations of the write and recovery paths.
pub(crate) trait StorageIo: Send + Sync + fmt::Debug {
    /// Creates a new file (failing if it exists), readable and writable.
    fn create_file(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    /// Opens an existing file.
    fn open_file(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Renames a file (atomically replacing the target). Part of the seam for
    /// the atomic file replacements of derived files.
    #[allow(dead_code)]
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes directory entries (creations, renames, deletions) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default)]
pub(crate) struct RealIo;

#[derive(Debug)]
struct RealFile(File);

impl StorageFile for RealFile {
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(bytes, offset)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.0.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn sync(&self, mode: SyncMode) -> io::Result<()> {
        match mode {
            SyncMode::SyncData => self.0.sync_data(),
            SyncMode::SyncAll => self.0.sync_all(),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (
            libc::off64_t::try_from(offset),
            libc::off64_t::try_from(len),
        ) else {
            return;
        };
        // SAFETY: a plain system call on a descriptor this file owns; it
        // reads and writes no memory of ours.
        let _ = unsafe {
            libc::sync_file_range(self.0.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl StorageIo for RealIo {
    fn create_file(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Arc::new(RealFile(file)))
    }

    fn open_file(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(writable).open(path)?;
        Ok(Arc::new(RealFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writeback hint changes nothing a read or a sync sees, whatever
    /// range it is given (inside, past the end, too large for the call).
    #[test]
    fn start_writeback_is_only_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let file = RealIo.create_file(&dir.path().join("f")).unwrap();
        let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        file.write_all_at(&bytes, 0).unwrap();
        for (offset, len) in [(0, 10_000), (4096, 100), (9_000, 1 << 20), (0, u64::MAX)] {
            file.start_writeback(offset, len);
        }
        file.sync(SyncMode::SyncData).unwrap();
        assert_eq!(file.len().unwrap(), 10_000);
        let mut back = vec![0u8; 10_000];
        assert_eq!(file.read_at(&mut back, 0).unwrap(), 10_000);
        assert_eq!(back, bytes);
    }
}
