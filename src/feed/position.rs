//! Durable positions of named cursors: one small checksummed file per name in
//! `<store dir>/cursors/`, replaced atomically on every commit.
//!
//! File layout (little-endian, 36 bytes):
//!
//! | bytes  | field                                               |
//! |--------|-----------------------------------------------------|
//! | 0..8   | magic `BPKCURS\0`                                   |
//! | 8..10  | format version (1)                                  |
//! | 10..16 | reserved, zero                                      |
//! | 16..24 | position: the next sequence to deliver              |
//! | 24..32 | wall-clock time of the commit, µs since the epoch   |
//! | 32..36 | CRC32 of bytes 0..32                                |
//!
//! Replacement protocol: write `.<name>.tmp`, sync it, rename it over
//! `<name>`, sync the directory. A crash leaves either the old or the new
//! file, never a mixture; a leftover temporary file is ignored and replaced.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::store::engine::{now_us, Inner};
use crate::StoreError;

/// The subdirectory of the store directory that holds named cursor positions.
pub const CURSOR_DIR: &str = "cursors";

/// Longest cursor name, in bytes.
pub const CURSOR_NAME_MAX_BYTES: usize = 100;

const MAGIC: &[u8; 8] = b"BPKCURS\0";
const VERSION: u16 = 1;
const FILE_BYTES: usize = 36;
const CHECKED_BYTES: usize = 32;

/// Rejects names that are not safe, portable file names.
pub(crate) fn validate_name(name: &str) -> Result<(), StoreError> {
    let bytes = name.as_bytes();
    let well_formed = !bytes.is_empty()
        && bytes.len() <= CURSOR_NAME_MAX_BYTES
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if well_formed {
        Ok(())
    } else {
        Err(StoreError::InvalidInput {
            reason: format!(
                "cursor name {name:?} must be 1..={CURSOR_NAME_MAX_BYTES} bytes of ASCII letters, \
                 digits, '-', '_' and '.', starting with a letter or digit"
            ),
        })
    }
}

pub(crate) fn cursor_dir(inner: &Inner) -> PathBuf {
    inner.dir().join(CURSOR_DIR)
}

pub(crate) fn cursor_path(inner: &Inner, name: &str) -> PathBuf {
    cursor_dir(inner).join(name)
}

fn encode(position: u64, committed_us: i64) -> [u8; FILE_BYTES] {
    let mut bytes = [0u8; FILE_BYTES];
    bytes[0..8].copy_from_slice(MAGIC);
    bytes[8..10].copy_from_slice(&VERSION.to_le_bytes());
    bytes[16..24].copy_from_slice(&position.to_le_bytes());
    bytes[24..32].copy_from_slice(&committed_us.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..CHECKED_BYTES]);
    bytes[32..36].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

/// Checks and decodes a position file's bytes.
fn decode(path: &Path, bytes: &[u8]) -> Result<u64, StoreError> {
    if bytes.len() < 8 || &bytes[0..8] != MAGIC {
        return Err(StoreError::ForeignFile {
            file: path.to_path_buf(),
            reason: "not a batpak cursor position file (bad magic)".into(),
        });
    }
    if bytes.len() != FILE_BYTES {
        return Err(StoreError::corrupt(
            path,
            bytes.len().min(FILE_BYTES) as u64,
            format!(
                "cursor position file is {} bytes; expected {FILE_BYTES}",
                bytes.len()
            ),
        ));
    }
    let stored_crc = u32::from_le_bytes([bytes[32], bytes[33], bytes[34], bytes[35]]);
    let crc = crc32fast::hash(&bytes[..CHECKED_BYTES]);
    if stored_crc != crc {
        return Err(StoreError::corrupt(
            path,
            CHECKED_BYTES as u64,
            format!("cursor position checksum mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"),
        ));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != VERSION {
        return Err(StoreError::ForeignFile {
            file: path.to_path_buf(),
            reason: format!("cursor position format version {version}; this build reads {VERSION}"),
        });
    }
    Ok(le_u64(&bytes[16..24]))
}

/// The stored position of `name`, `None` if it never committed.
pub(crate) fn load(inner: &Inner, name: &str) -> Result<Option<u64>, StoreError> {
    let path = cursor_path(inner, name);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StoreError::io("open cursor", path, source)),
    };
    // Bounded read: a position file is tiny; anything larger is not one.
    let mut bytes = Vec::with_capacity(FILE_BYTES);
    file.take(FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| StoreError::io("read cursor", path.clone(), source))?;
    let position = decode(&path, &bytes)?;
    let visible = inner.visible.load(Ordering::Acquire);
    if position > visible {
        // Commits never outrun the durable log, so this file belongs to
        // another store (or the log lost events it should not have).
        return Err(StoreError::corrupt(
            &path,
            16,
            format!("cursor position {position} is past the end of the store ({visible} events)"),
        ));
    }
    Ok(Some(position))
}

/// Creates the cursor directory if needed, durably.
pub(crate) fn ensure_dir(inner: &Inner) -> Result<(), StoreError> {
    let dir = cursor_dir(inner);
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(&dir)
        .map_err(|source| StoreError::io("create cursor directory", dir.clone(), source))?;
    // FSYNC THE STORE DIRECTORY: the new subdirectory must survive power loss.
    inner
        .io
        .sync_dir(inner.dir())
        .map_err(|source| StoreError::io("sync directory", inner.dir().to_path_buf(), source))
}

/// Atomically replaces the stored position of `name` with `position`.
pub(crate) fn save(inner: &Inner, name: &str, position: u64) -> Result<(), StoreError> {
    let dir = cursor_dir(inner);
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.tmp"));
    match inner.io.remove_file(&temporary) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(StoreError::io("remove cursor temporary", temporary, source)),
    }
    let bytes = encode(position, now_us());
    {
        let file = inner
            .io
            .create_file(&temporary)
            .map_err(|source| StoreError::io("create cursor", temporary.clone(), source))?;
        file.write_all_at(&bytes, 0)
            .map_err(|source| StoreError::io("write cursor", temporary.clone(), source))?;
        file.sync(inner.config.sync_mode)
            .map_err(|source| StoreError::io("sync cursor", temporary.clone(), source))?;
    }
    inner
        .io
        .rename(&temporary, &path)
        .map_err(|source| StoreError::io("rename cursor", path.clone(), source))?;
    // FSYNC THE DIRECTORY: the rename is what commits the new position.
    inner
        .io
        .sync_dir(&dir)
        .map_err(|source| StoreError::io("sync directory", dir.clone(), source))
}

/// Deletes the stored position of `name`.
pub(crate) fn remove(inner: &Inner, name: &str) -> Result<(), StoreError> {
    validate_name(name)?;
    if inner.read_only {
        return Err(StoreError::ReadOnly);
    }
    if inner.feeds.named_open.lock().contains(name) {
        return Err(StoreError::InvalidInput {
            reason: format!("named cursor {name:?} is open; drop it before removing its position"),
        });
    }
    let path = cursor_path(inner, name);
    match inner.io.remove_file(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(StoreError::io("remove cursor", path, source)),
    }
    let dir = cursor_dir(inner);
    inner
        .io
        .sync_dir(&dir)
        .map_err(|source| StoreError::io("sync directory", dir.clone(), source))
}

/// Names with a stored position.
pub(crate) fn list(inner: &Inner) -> Result<Vec<String>, StoreError> {
    let dir = cursor_dir(inner);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(StoreError::io("list cursors", dir, source)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| StoreError::io("list cursors", dir.clone(), source))?;
        if let Some(name) = entry.file_name().to_str() {
            if validate_name(name).is_ok() {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_round_trips_and_every_flipped_byte_is_detected() {
        let path = Path::new("cursors/x");
        let bytes = encode(12_345, 99);
        assert_eq!(decode(path, &bytes).unwrap(), 12_345);
        for at in 0..FILE_BYTES {
            let mut damaged = bytes;
            damaged[at] ^= 0x40;
            assert!(
                decode(path, &damaged).is_err(),
                "flip at byte {at} undetected"
            );
        }
        assert!(decode(path, &bytes[..20]).is_err());
        assert!(decode(path, b"").is_err());
    }

    #[test]
    fn names_must_be_plain_file_names() {
        for good in ["a", "mailer", "billing.v2", "worker_1-x"] {
            validate_name(good).unwrap();
        }
        let long = "a".repeat(CURSOR_NAME_MAX_BYTES + 1);
        for bad in ["", ".hidden", "-x", "a/b", "..", "a b", "ä", long.as_str()] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
