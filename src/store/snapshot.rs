//! Online backup: [`Store::snapshot`] copies a consistent prefix of the log
//! (a cut at one sequence) into a new directory while writers keep going.
//!
//! The cut is taken under the writer lock: everything encoded so far is
//! handed to the operating system and the end of the active segment is noted.
//! Then a sync makes that prefix durable (the snapshot never contains an
//! event the store could still cut back after a failed sync). Sealed segments
//! are immutable and copied whole; the active segment is copied up to the
//! noted end, which later appends never touch. Footers of the copied sealed
//! segments, and a checkpoint of the copied prefix of the active one when the
//! store has one, come along, so the snapshot opens fast too.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::checkpoint::{checkpoint_file_name, footer_file_name, write_atomically, CHECKPOINT_DIR};
use super::index::footer::KIND_CHECKPOINT;
use super::log::io::StorageIo;
use super::log::segment::segment_file_name;
use crate::{Store, StoreError};

/// Copy buffer size: bounds the memory a snapshot uses.
const COPY_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// What [`Store::snapshot`] copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotReport {
    /// The snapshot directory.
    pub dir: PathBuf,
    /// The cut: the snapshot holds exactly the events with sequences below this.
    pub next_sequence: u64,
    /// Segment files copied.
    pub segments: u32,
    /// Bytes of segment files copied.
    pub bytes: u64,
    /// Footer and checkpoint files copied or written (the snapshot opens
    /// without scanning what they cover).
    pub images: u32,
}

impl Store {
    /// Copies a consistent, durable prefix of the store into `dest`, which
    /// must not exist or be an empty directory, while appends continue.
    ///
    /// The snapshot holds exactly the events with sequences below
    /// [`SnapshotReport::next_sequence`], all of which were durable in this
    /// store before the copy started; it opens as a store (with
    /// [`Store::open`] or [`Store::open_read_only`]) and verifies. Named cursor
    /// positions (`cursors/`) are copied as they are at the moment of the
    /// copy. Only a snapshot for which this returned `Ok` is complete: on an
    /// error the partial directory is removed (best effort).
    ///
    /// ```
    /// use batpak::prelude::*;
    /// # let dir = tempfile::tempdir()?;
    /// # let backup = tempfile::tempdir()?;
    /// let store = Store::open(StoreConfig::new(dir.path()))?;
    /// store.append(&Coordinate::new("e", "s")?, EventKind::custom(1, 1), &1)?;
    /// let report = store.snapshot(backup.path().join("copy"))?;
    /// let copy = Store::open_read_only(StoreConfig::new(&report.dir))?;
    /// assert_eq!(copy.next_sequence(), report.next_sequence);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self, dest: impl AsRef<Path>) -> Result<SnapshotReport, StoreError> {
        let dest = dest.as_ref().to_path_buf();
        let inner = &self.inner;
        if inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        prepare_destination(&dest, inner.dir())?;
        let result = self.snapshot_into(&dest);
        if result.is_err() {
            // Never leave something that looks like a complete snapshot.
            let _ = std::fs::remove_dir_all(&dest);
        }
        result
    }

    fn snapshot_into(&self, dest: &Path) -> Result<SnapshotReport, StoreError> {
        let inner = &self.inner;
        // Cursor positions first: a consumer commits only positions of events
        // it was delivered, which are all below the cut taken next, so no
        // copied cursor points past the end of the copied log.
        copy_cursors(
            inner.io.as_ref(),
            &inner.dir().join(crate::feed::CURSOR_DIR),
            &dest.join(crate::feed::CURSOR_DIR),
            inner.config.sync_mode,
        )?;
        // Compaction and image writing replace files; keep them out while copying.
        let maintenance = inner.maintenance.state.lock();
        let (next_sequence, active_id, active_end) = {
            let mut writer = inner.writer.lock();
            if let Some(reason) = &writer.poisoned {
                return Err(StoreError::Poisoned {
                    reason: reason.clone(),
                });
            }
            inner.flush_pending(&mut writer)?;
            let active = writer.active.as_ref().ok_or(StoreError::ReadOnly)?;
            let next = inner.index.read().next_sequence();
            (next, active.id, active.written)
        };
        inner.sync_through(next_sequence)?;
        let segments: Vec<u32> = inner
            .segments
            .read()
            .keys()
            .copied()
            .filter(|id| *id <= active_id)
            .collect();
        let io = inner.io.as_ref();
        let mut report = SnapshotReport {
            dir: dest.to_path_buf(),
            next_sequence,
            segments: 0,
            bytes: 0,
            images: 0,
        };
        for id in &segments {
            let name = segment_file_name(*id);
            let from = inner.dir().join(&name);
            let limit = (*id == active_id).then_some(active_end);
            report.bytes += copy_file(io, &from, &dest.join(&name), limit, inner.config.sync_mode)?;
            report.segments += 1;
        }
        // Derived files: footers of sealed segments are valid as they are; the
        // active segment gets a checkpoint of the part the copy holds.
        let images_from = inner.dir().join(CHECKPOINT_DIR);
        let images_to = dest.join(CHECKPOINT_DIR);
        for id in segments.iter().filter(|id| **id < active_id) {
            if !maintenance.footers.contains(id) {
                continue;
            }
            let name = footer_file_name(*id);
            let from = images_from.join(&name);
            if from.is_file() {
                std::fs::create_dir_all(&images_to)
                    .map_err(|e| StoreError::io("create directory", &images_to, e))?;
                copy_file(
                    io,
                    &from,
                    &images_to.join(&name),
                    None,
                    inner.config.sync_mode,
                )?;
                report.images += 1;
            }
        }
        if let Some(builder) = maintenance
            .active
            .as_ref()
            .filter(|b| b.segment().id == active_id && b.watermark <= active_end)
        {
            write_atomically(
                io,
                &images_to,
                &checkpoint_file_name(active_id),
                &builder.encode(KIND_CHECKPOINT),
                inner.config.sync_mode,
            )?;
            report.images += 1;
        }
        drop(maintenance);
        for dir in [Some(images_to.as_path()), Some(dest), dest.parent()]
            .into_iter()
            .flatten()
        {
            if dir.is_dir() {
                io.sync_dir(dir)
                    .map_err(|e| StoreError::io("sync directory", dir, e))?;
            }
        }
        tracing::info!(
            dest = %dest.display(),
            next_sequence,
            segments = report.segments,
            bytes = report.bytes,
            "snapshot taken"
        );
        Ok(report)
    }
}

fn prepare_destination(dest: &Path, store_dir: &Path) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::InvalidInput { reason };
    if let (Ok(dest_abs), Ok(store_abs)) =
        (std::path::absolute(dest), std::fs::canonicalize(store_dir))
    {
        if dest_abs.starts_with(&store_abs) {
            return Err(invalid(format!(
                "snapshot destination {} is inside the store directory",
                dest.display()
            )));
        }
    }
    if dest.exists() {
        let mut entries = std::fs::read_dir(dest).map_err(|e| StoreError::io("list", dest, e))?;
        if entries.next().is_some() {
            return Err(invalid(format!(
                "snapshot destination {} is not empty",
                dest.display()
            )));
        }
    } else {
        std::fs::create_dir_all(dest).map_err(|e| StoreError::io("create directory", dest, e))?;
    }
    Ok(())
}

/// Copies `from` (its first `limit` bytes, if given) to the new file `to`
/// through the I/O seam, in bounded chunks, and syncs it.
fn copy_file(
    io: &dyn StorageIo,
    from: &Path,
    to: &Path,
    limit: Option<u64>,
    mode: crate::SyncMode,
) -> Result<u64, StoreError> {
    let source = io
        .open_file(from, false)
        .map_err(|e| StoreError::io("open", from, e))?;
    let len = source.len().map_err(|e| StoreError::io("stat", from, e))?;
    let len = limit.map_or(len, |l| l.min(len));
    let target = io
        .create_file(to)
        .map_err(|e| StoreError::io("create", to, e))?;
    let mut buffer = vec![0u8; COPY_CHUNK_BYTES.min(len as usize).max(1)];
    let mut at = 0u64;
    while at < len {
        let want = ((len - at) as usize).min(buffer.len());
        let got = source
            .read_at(&mut buffer[..want], at)
            .map_err(|e| StoreError::io("read", from, e))?;
        if got < want {
            return Err(StoreError::corrupt(
                from,
                at + got as u64,
                "file shrank while being copied",
            ));
        }
        target
            .write_all_at(&buffer[..want], at)
            .map_err(|e| StoreError::io("write", to, e))?;
        at += want as u64;
    }
    target
        .sync(mode)
        .map_err(|e| StoreError::io("sync", to, e))?;
    Ok(len)
}

/// Copies the named cursor files (not their temporary files), if any.
/// They are copied as files; their format belongs to the feeds.
fn copy_cursors(
    io: &dyn StorageIo,
    from: &Path,
    to: &Path,
    mode: crate::SyncMode,
) -> Result<(), StoreError> {
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(());
    };
    std::fs::create_dir_all(to).map_err(|e| StoreError::io("create directory", to, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if !path.is_file() || name.to_string_lossy().ends_with(".tmp") {
            continue;
        }
        copy_file(io, &path, &to.join(&name), None, mode)?;
    }
    io.sync_dir(to)
        .map_err(|e| StoreError::io("sync directory", to, e))
}
