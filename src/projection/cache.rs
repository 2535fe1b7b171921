//! Projection caches: none, or one checksummed file per (projection, entity).
//!
//! # Entry file format (all integers little-endian)
//!
//! ```text
//! offset  size  field
//!  0       8    magic "BPKPROJ1"
//!  8       8    clock           entity clock of the last event folded (0 = none)
//! 16       8    sequence        its global sequence (u64::MAX = none)
//! 24      16    event id        its id (all zero = none)
//! 40       8    written_at_us   when the entry was written, µs since the Unix epoch (i64)
//! 48       4    key length      K
//! 52       4    entity length   E
//! 56       4    state length    S
//! 60       K    key             the CacheKey string (UTF-8)
//! 60+K     E    entity          the entity name (UTF-8)
//! 60+K+E   S    state           the folded state, compact JSON
//! 60+K+E+S 4    crc32           CRC-32 (crc32fast) of every byte before it
//! ```
//!
//! The key and entity are stored in full and checked on load, so two keys or
//! entities whose file names collide never read each other's state.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{EventSourced, Position};
use crate::store::log::io::{RealIo, StorageIo};
use crate::{EventId, Store, SyncMode};

const MAGIC: &[u8; 8] = b"BPKPROJ1";
const HEADER_BYTES: usize = 60;
const CRC_BYTES: usize = 4;
/// Longest readable part of a file or directory name, before its hash.
const NAME_PART_MAX_BYTES: usize = 64;
/// Entries bigger than this are refused on load rather than read whole.
const ENTRY_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The stable identity of a projection in a cache:
/// `<projection name>@v<schema version>[<kinds>]`, where kinds are the
/// sorted hexadecimal bits of [`EventSourced::RELEVANT_KINDS`] (or `*` for
/// every kind). Built only from names and numbers, never from a `TypeId`,
/// so it is the same in every build of the program.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key of projection type `T`.
    pub fn of<T: EventSourced>() -> CacheKey {
        let mut kinds: Vec<u16> = T::RELEVANT_KINDS.iter().map(|kind| kind.bits()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        let kinds = if kinds.is_empty() {
            "*".to_string()
        } else {
            kinds
                .iter()
                .map(|bits| format!("{bits:04x}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        CacheKey(format!(
            "{}@v{}[{}]",
            T::projection_name(),
            T::SCHEMA_VERSION,
            kinds
        ))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A cached state and where in the entity's stream it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The last event folded into the state.
    pub position: Position,
    /// When the entry was written, µs since the Unix epoch.
    pub written_at_us: i64,
    /// The state, compact JSON.
    pub state: Vec<u8>,
}

impl CacheEntry {
    /// An entry written now.
    pub fn now(position: Position, state: Vec<u8>) -> Self {
        CacheEntry {
            position,
            written_at_us: now_us(),
            state,
        }
    }

    /// How long ago the entry was written (zero if the clock went backwards).
    pub fn age(&self) -> Duration {
        let age_us = now_us().saturating_sub(self.written_at_us).max(0);
        Duration::from_micros(age_us as u64)
    }
}

fn now_us() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_micros()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// What a cache holds for a key and entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLookup {
    /// Nothing.
    Missing,
    /// Something that failed its checks; it will be rebuilt and overwritten.
    Corrupt {
        /// Which check failed.
        reason: String,
    },
    /// A valid entry.
    Found(CacheEntry),
}

/// Why a cache entry could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A file operation failed.
    #[error("projection cache: {operation} {path}: {source}")]
    Io {
        /// What the cache was doing.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The entry would be larger than a cache entry may be.
    #[error("projection cache: entry of {size} bytes is over the {max} byte limit")]
    TooLarge {
        /// The entry's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The state could not be serialized.
    #[error("projection cache: encoding state: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Where [`Store::project_with`] keeps folded states.
///
/// Implementations must be safe to share between threads; a failed `store`
/// never fails the projection (it is reported in
/// [`Projected::cache_error`](super::Projected::cache_error)).
pub trait ProjectionCache: Send + Sync {
    /// The entry for `key` and `entity`, if any.
    fn load(&self, key: &CacheKey, entity: &str) -> CacheLookup;

    /// Replaces the entry for `key` and `entity`.
    fn store(&self, key: &CacheKey, entity: &str, entry: &CacheEntry) -> Result<(), CacheError>;
}

/// A cache that keeps nothing: every projection folds from the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

impl ProjectionCache for NoCache {
    fn load(&self, _key: &CacheKey, _entity: &str) -> CacheLookup {
        CacheLookup::Missing
    }

    fn store(&self, _key: &CacheKey, _entity: &str, _entry: &CacheEntry) -> Result<(), CacheError> {
        Ok(())
    }
}

/// A cache of one checksummed file per (projection, entity) under a
/// directory, usually `<store dir>/projections/` ([`FileCache::for_store`]).
///
/// Entries survive restarts and rebuilds of the program (see [`CacheKey`]).
/// Writes are atomic: a temporary file is written and synced, renamed over
/// the entry, and the directory synced, so a crash leaves the old entry or
/// the new one, never a mix. Damaged entries are reported as
/// [`CacheLookup::Corrupt`] and rebuilt.
///
/// A cache made with [`FileCache::for_store`] does its file operations
/// through the store's I/O layer, so a store opened with a fault injector
/// (feature `dangerous-test-hooks`) injects faults into cache files too.
#[derive(Debug, Clone)]
pub struct FileCache {
    dir: PathBuf,
    io: Arc<dyn StorageIo>,
}

/// The I/O layer `store` writes through: the real file system, or (with a
/// fault injector) the same injector wrapped around it.
fn io_of(store: &Store) -> Arc<dyn StorageIo> {
    #[cfg(feature = "dangerous-test-hooks")]
    if let Some(injector) = &store.config().fault_injector {
        return crate::fault::wrap(Arc::new(RealIo), injector.clone());
    }
    let _ = store;
    Arc::new(RealIo)
}

/// Distinguishes temporary files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl FileCache {
    /// The name of the cache directory inside a store directory.
    pub const STORE_SUBDIRECTORY: &'static str = "projections";

    /// A cache in `<store dir>/projections/`, created if needed.
    pub fn for_store(store: &Store) -> Result<FileCache, CacheError> {
        FileCache::open_with(
            store.config().dir().join(Self::STORE_SUBDIRECTORY),
            io_of(store),
        )
    }

    /// A cache in `dir`, created if needed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<FileCache, CacheError> {
        FileCache::open_with(dir.into(), Arc::new(RealIo))
    }

    fn open_with(dir: PathBuf, io: Arc<dyn StorageIo>) -> Result<FileCache, CacheError> {
        fs::create_dir_all(&dir).map_err(|source| CacheError::Io {
            operation: "create directory",
            path: dir.clone(),
            source,
        })?;
        Ok(FileCache { dir, io })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding the entry for `key` and `entity`:
    /// `<dir>/<key name>-<key hash>/<entity name>-<entity hash>.entry`, where
    /// names are the strings with unsafe characters replaced (and cut to 64
    /// bytes) and hashes are 64-bit FNV-1a of the full strings, in hex.
    pub fn entry_path(&self, key: &CacheKey, entity: &str) -> PathBuf {
        self.dir
            .join(file_name(key.as_str()))
            .join(format!("{}.entry", file_name(entity)))
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        let io_error = |operation, path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io {
                operation,
                path,
                source,
            }
        };
        let parent = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent).map_err(io_error("create directory", parent))?;
        let temp = path.with_extension(format!(
            "tmp-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let io = self.io.as_ref();
        let result = (|| {
            let file = match io.create_file(&temp) {
                // A leftover of an earlier process that had the same id.
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    io.remove_file(&temp).map_err(io_error("remove", &temp))?;
                    io.create_file(&temp)
                }
                other => other,
            }
            .map_err(io_error("create", &temp))?;
            file.write_all_at(bytes, 0)
                .map_err(io_error("write", &temp))?;
            file.sync(SyncMode::SyncAll)
                .map_err(io_error("sync", &temp))?;
            drop(file);
            io.rename(&temp, path).map_err(io_error("rename", &temp))?;
            // FSYNC THE DIRECTORY: the rename is only durable once the
            // directory entry is.
            io.sync_dir(parent)
                .map_err(io_error("sync directory", parent))
        })();
        if result.is_err() {
            // Best effort: a stray temporary file is harmless (never loaded).
            let _ = io.remove_file(&temp);
        }
        result
    }

    /// The bytes of the entry file at `path`, refusing oversized files.
    fn read_entry(&self, path: &Path) -> io::Result<Vec<u8>> {
        let file = self.io.open_file(path, false)?;
        let length = file.len()?;
        if length > ENTRY_MAX_BYTES {
            return Err(io::Error::other(format!(
                "entry is {length} bytes, over the limit"
            )));
        }
        let mut bytes = vec![0u8; length as usize];
        let read = file.read_at(&mut bytes, 0)?;
        bytes.truncate(read);
        Ok(bytes)
    }
}

impl ProjectionCache for FileCache {
    fn load(&self, key: &CacheKey, entity: &str) -> CacheLookup {
        let path = self.entry_path(key, entity);
        let bytes = match self.read_entry(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return CacheLookup::Missing,
            Err(error) => {
                return CacheLookup::Corrupt {
                    reason: format!("{}: {error}", path.display()),
                }
            }
        };
        match decode_entry(&bytes, key.as_str(), entity) {
            Ok(entry) => CacheLookup::Found(entry),
            Err(reason) => CacheLookup::Corrupt {
                reason: format!("{}: {reason}", path.display()),
            },
        }
    }

    fn store(&self, key: &CacheKey, entity: &str, entry: &CacheEntry) -> Result<(), CacheError> {
        let size =
            (HEADER_BYTES + key.as_str().len() + entity.len() + entry.state.len() + CRC_BYTES)
                as u64;
        if size > ENTRY_MAX_BYTES {
            // Also keeps every length within the u32 fields of the format.
            return Err(CacheError::TooLarge {
                size,
                max: ENTRY_MAX_BYTES,
            });
        }
        let bytes = encode_entry(key.as_str(), entity, entry);
        self.write_atomically(&self.entry_path(key, entity), &bytes)
    }
}

/// A file-name-safe rendering of `text`: a readable part plus a hash of the whole.
fn file_name(text: &str) -> String {
    let mut readable = String::with_capacity(NAME_PART_MAX_BYTES);
    for character in text.chars() {
        if readable.len() + character.len_utf8() > NAME_PART_MAX_BYTES {
            break;
        }
        readable.push(
            if character.is_ascii_alphanumeric() || "-_.@".contains(character) {
                character
            } else {
                '_'
            },
        );
    }
    format!("{readable}-{:016x}", fnv1a_64(text.as_bytes()))
}

/// 64-bit FNV-1a: tiny, fixed forever, and the same on every platform and build.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

pub(crate) fn encode_entry(key: &str, entity: &str, entry: &CacheEntry) -> Vec<u8> {
    let length = HEADER_BYTES + key.len() + entity.len() + entry.state.len() + CRC_BYTES;
    let mut bytes = Vec::with_capacity(length);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&entry.position.clock.to_le_bytes());
    bytes.extend_from_slice(&entry.position.sequence.unwrap_or(u64::MAX).to_le_bytes());
    bytes.extend_from_slice(
        &entry
            .position
            .event_id
            .map(EventId::to_bytes)
            .unwrap_or([0; 16]),
    );
    bytes.extend_from_slice(&entry.written_at_us.to_le_bytes());
    for part_length in [key.len(), entity.len(), entry.state.len()] {
        // Bounded by ENTRY_MAX_BYTES (checked by the caller), so each fits in a u32.
        debug_assert!(part_length as u64 <= ENTRY_MAX_BYTES);
        bytes.extend_from_slice(&(part_length as u32).to_le_bytes());
    }
    bytes.extend_from_slice(key.as_bytes());
    bytes.extend_from_slice(entity.as_bytes());
    bytes.extend_from_slice(&entry.state);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(bytes.len(), length);
    bytes
}

pub(crate) fn decode_entry(bytes: &[u8], key: &str, entity: &str) -> Result<CacheEntry, String> {
    if bytes.len() < HEADER_BYTES + CRC_BYTES {
        return Err(format!(
            "entry is {} bytes, shorter than its header",
            bytes.len()
        ));
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_BYTES);
    let stored_crc = u32::from_le_bytes(array(crc, 0));
    let actual_crc = crc32fast::hash(body);
    if stored_crc != actual_crc {
        return Err(format!(
            "checksum mismatch (stored {stored_crc:08x}, computed {actual_crc:08x})"
        ));
    }
    if &body[0..8] != MAGIC {
        return Err("not a projection cache entry (bad magic)".to_string());
    }
    let clock = u64::from_le_bytes(array(body, 8));
    let sequence = u64::from_le_bytes(array(body, 16));
    let event_id: [u8; 16] = array(body, 24);
    let written_at_us = i64::from_le_bytes(array(body, 40));
    let key_length = u32::from_le_bytes(array(body, 48)) as usize;
    let entity_length = u32::from_le_bytes(array(body, 52)) as usize;
    let state_length = u32::from_le_bytes(array(body, 56)) as usize;
    if HEADER_BYTES as u64 + key_length as u64 + entity_length as u64 + state_length as u64
        != body.len() as u64
    {
        return Err("part lengths do not add up to the entry size".to_string());
    }
    let key_end = HEADER_BYTES + key_length;
    let entity_end = key_end + entity_length;
    if &body[HEADER_BYTES..key_end] != key.as_bytes() {
        return Err("entry belongs to another projection key".to_string());
    }
    if &body[key_end..entity_end] != entity.as_bytes() {
        return Err("entry belongs to another entity".to_string());
    }
    let has_event = sequence != u64::MAX;
    if has_event != (clock != 0) {
        return Err("clock and sequence disagree about whether an event was folded".to_string());
    }
    Ok(CacheEntry {
        position: Position {
            clock,
            sequence: has_event.then_some(sequence),
            event_id: has_event.then(|| EventId::from_bytes(event_id)),
        },
        written_at_us,
        state: body[entity_end..].to_vec(),
    })
}

/// Copies `N` bytes at `offset`; callers have checked the length.
fn array<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[offset..offset + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;

    struct Counter;
    impl EventSourced for Counter {
        const RELEVANT_KINDS: &'static [EventKind] = &[
            EventKind::custom(0xF, 2),
            EventKind::custom(0xF, 1),
            EventKind::custom(0xF, 2),
        ];
        const SCHEMA_VERSION: u16 = 3;
        fn initial() -> Self {
            Counter
        }
        fn apply(&mut self, _event: &crate::StoredEvent) {}
    }

    struct Everything;
    impl EventSourced for Everything {
        fn initial() -> Self {
            Everything
        }
        fn apply(&mut self, _event: &crate::StoredEvent) {}
        fn projection_name() -> &'static str {
            "everything"
        }
    }

    fn sample_entry() -> CacheEntry {
        CacheEntry {
            position: Position {
                clock: 42,
                sequence: Some(1234),
                event_id: Some(EventId::from_bytes([9; 16])),
            },
            written_at_us: 1_700_000_000_000_000,
            state: br#"{"count":42}"#.to_vec(),
        }
    }

    #[test]
    fn key_is_name_version_and_sorted_kinds() {
        assert_eq!(
            CacheKey::of::<Counter>().as_str(),
            "batpak::projection::cache::tests::Counter@v3[f001,f002]"
        );
        assert_eq!(CacheKey::of::<Everything>().as_str(), "everything@v0[*]");
    }

    #[test]
    fn entry_round_trips() {
        let entry = sample_entry();
        let bytes = encode_entry("k@v0[*]", "player:1", &entry);
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(decode_entry(&bytes, "k@v0[*]", "player:1"), Ok(entry));

        let empty = CacheEntry {
            position: Position::default(),
            written_at_us: 5,
            state: b"0".to_vec(),
        };
        let bytes = encode_entry("k", "e", &empty);
        assert_eq!(decode_entry(&bytes, "k", "e"), Ok(empty));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = encode_entry("key", "entity", &sample_entry());
        for index in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[index] ^= 1 << bit;
                assert!(
                    decode_entry(&damaged, "key", "entity").is_err(),
                    "flip of bit {bit} at byte {index} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn truncated_entries_are_rejected() {
        let bytes = encode_entry("key", "entity", &sample_entry());
        for length in 0..bytes.len() {
            assert!(decode_entry(&bytes[..length], "key", "entity").is_err());
        }
    }

    #[test]
    fn entries_of_another_key_or_entity_are_rejected() {
        let bytes = encode_entry("key", "entity", &sample_entry());
        assert_eq!(
            decode_entry(&bytes, "other", "entity"),
            Err("entry belongs to another projection key".to_string())
        );
        assert_eq!(
            decode_entry(&bytes, "key", "other"),
            Err("entry belongs to another entity".to_string())
        );
    }

    #[test]
    fn file_names_are_safe_bounded_and_stable() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(file_name("a"), "a-af63dc4c8601ec8c");
        let long = "x/".repeat(600);
        let name = file_name(&long);
        assert!(name.len() <= NAME_PART_MAX_BYTES + 17);
        assert!(!name.contains('/'));
        assert_ne!(
            file_name("a:b"),
            file_name("a_b"),
            "hash keeps sanitized names apart"
        );
    }

    #[test]
    fn file_cache_stores_loads_and_reports_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::open(dir.path().join("projections")).unwrap();
        let key = CacheKey::of::<Everything>();
        assert_eq!(cache.load(&key, "player:1"), CacheLookup::Missing);

        let entry = sample_entry();
        cache.store(&key, "player:1", &entry).unwrap();
        assert_eq!(
            cache.load(&key, "player:1"),
            CacheLookup::Found(entry.clone())
        );
        assert_eq!(cache.load(&key, "player:2"), CacheLookup::Missing);

        let path = cache.entry_path(&key, "player:1");
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 0xFF;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            cache.load(&key, "player:1"),
            CacheLookup::Corrupt { .. }
        ));

        // Overwriting repairs it, and leaves no temporary file behind.
        cache.store(&key, "player:1", &entry).unwrap();
        assert_eq!(cache.load(&key, "player:1"), CacheLookup::Found(entry));
        let files: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(files.len(), 1);
    }
}
