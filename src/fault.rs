//! Fault injection for tests (feature `dangerous-test-hooks`, never for
//! production): make any file operation of the write and recovery paths fail,
//! write only part of its bytes, or "crash" the machine, by countdown, always,
//! or by seeded probability, filtered by operation and by path; and produce
//! **crash images**: directories holding what a power loss could have left
//! behind (everything that was synced, plus any prefix of what was not).
//!
//! ```
//! use batpak::fault::{Fault, FaultInjector, IoPoint};
//! use batpak::prelude::*;
//! # let dir = tempfile::tempdir()?;
//! let faults = FaultInjector::new();
//! let store = Store::open(StoreConfig::new(dir.path()).with_fault_injector(faults.clone()))?;
//! let coord = Coordinate::new("e", "s")?;
//! faults.fail_nth(IoPoint::Sync, 1, Fault::Error);
//! assert!(store.append(&coord, EventKind::custom(1, 1), &1).is_err());
//! // The store refuses writes until it is reopened.
//! assert!(matches!(store.append(&coord, EventKind::custom(1, 1), &2), Err(StoreError::Poisoned { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Crash images need an injector made with [`FaultInjector::recording`]
//! *before* the store is opened, so it sees every byte from the start:
//!
//! ```
//! use batpak::fault::{Fault, FaultInjector, FaultRule, IoPoint};
//! use batpak::prelude::*;
//! # let dir = tempfile::tempdir()?;
//! # let image = tempfile::tempdir()?;
//! let faults = FaultInjector::recording();
//! let store = Store::open(StoreConfig::new(dir.path()).with_fault_injector(faults.clone()))?;
//! let coord = Coordinate::new("e", "s")?;
//! let kept = store.append(&coord, EventKind::custom(1, 1), &"durable")?;
//! // The machine dies during the next sync: that call and every later one fail.
//! faults.add_rule(FaultRule::at(IoPoint::Sync).nth(1).fault(Fault::Crash));
//! assert!(store.append(&coord, EventKind::custom(1, 1), &"in flight").is_err());
//! drop(store);
//! // What could be on disk after the power loss, for seed 7:
//! faults.crash_image(dir.path(), image.path(), 7)?;
//! let reopened = Store::open(StoreConfig::new(image.path()))?;
//! assert_eq!(reopened.get(kept.event_id)?.map(|e| e.payload), Some(serde_json::json!("durable")));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::store::log::io::{StorageFile, StorageIo};
use crate::SyncMode;

/// A kind of file-system call the injector can intercept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoPoint {
    /// Creating a file.
    Create,
    /// Opening an existing file.
    Open,
    /// Writing bytes.
    Write,
    /// Reading bytes (recovery).
    Read,
    /// `fsync`/`fdatasync` of a file.
    Sync,
    /// Truncating or extending a file.
    Truncate,
    /// Renaming a file.
    Rename,
    /// Deleting a file.
    Remove,
    /// Syncing a directory.
    SyncDir,
}

impl IoPoint {
    /// Every interception point, in a fixed order (for campaigns).
    pub const ALL: [IoPoint; 9] = [
        IoPoint::Create,
        IoPoint::Open,
        IoPoint::Write,
        IoPoint::Read,
        IoPoint::Sync,
        IoPoint::Truncate,
        IoPoint::Rename,
        IoPoint::Remove,
        IoPoint::SyncDir,
    ];
}

/// What happens to an intercepted call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with an I/O error and does nothing.
    Error,
    /// Writes only: the first `keep_bytes` bytes are written, then the call
    /// fails. At other points this behaves like [`Fault::Error`].
    ShortWrite {
        /// Bytes written before the failure.
        keep_bytes: usize,
    },
    /// The machine loses power during this call: the call and every later
    /// call through the injector fail, and nothing more reaches the disk. A
    /// recording injector freezes its view of the disk here (the interrupted
    /// call counts as issued but not synced), so
    /// [`FaultInjector::crash_image`] shows what the power loss left.
    Crash,
}

#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// Fires on the call this many matching calls from now (1 = the next call).
    Countdown(u64),
    /// Fires on that call and on every matching call after it.
    From(u64),
    Always,
    /// Fires with this probability per matching call, drawn from the state.
    Probability {
        probability: f64,
        rng: u64,
    },
}

/// One rule of a [`FaultInjector`]: which calls it matches (operations and a
/// path fragment), when it fires (countdown, always, seeded probability) and
/// what it does ([`Fault`]). Built with chained methods:
///
/// ```
/// use batpak::fault::{Fault, FaultRule, IoPoint};
/// // The third write or sync of a segment file writes 10 bytes and fails.
/// let rule = FaultRule::at(IoPoint::Write)
///     .or_at(IoPoint::Sync)
///     .path_contains(".segment")
///     .nth(3)
///     .fault(Fault::ShortWrite { keep_bytes: 10 });
/// # let _ = rule;
/// ```
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// Empty means every point.
    points: Vec<IoPoint>,
    path_contains: Option<String>,
    trigger: Trigger,
    fault: Fault,
}

impl FaultRule {
    /// A rule matching calls at `point`; by default it fires on every such
    /// call with [`Fault::Error`].
    pub fn at(point: IoPoint) -> FaultRule {
        FaultRule {
            points: vec![point],
            path_contains: None,
            trigger: Trigger::Always,
            fault: Fault::Error,
        }
    }

    /// A rule matching calls at every point.
    pub fn anywhere() -> FaultRule {
        FaultRule {
            points: Vec::new(),
            path_contains: None,
            trigger: Trigger::Always,
            fault: Fault::Error,
        }
    }

    /// Also matches calls at `point`.
    pub fn or_at(mut self, point: IoPoint) -> FaultRule {
        if !self.points.is_empty() && !self.points.contains(&point) {
            self.points.push(point);
        }
        self
    }

    /// Matches only calls on paths containing `fragment` (for example
    /// `".segment"` or a file name).
    pub fn path_contains(mut self, fragment: &str) -> FaultRule {
        self.path_contains = Some(fragment.to_string());
        self
    }

    /// Fires once, on the `n`-th matching call from when it is added (1 = the
    /// next one), then removes itself.
    pub fn nth(mut self, n: u64) -> FaultRule {
        self.trigger = Trigger::Countdown(n.max(1));
        self
    }

    /// Fires on the `n`-th matching call from when it is added and on every
    /// matching call after it (a device that goes bad and stays bad).
    pub fn from_nth(mut self, n: u64) -> FaultRule {
        self.trigger = Trigger::From(n.max(1));
        self
    }

    /// Fires on every matching call until [`FaultInjector::clear`].
    pub fn always(mut self) -> FaultRule {
        self.trigger = Trigger::Always;
        self
    }

    /// Fires on each matching call with `probability`, drawn from a generator
    /// seeded with `seed`, so a failing run replays exactly.
    pub fn with_probability(mut self, probability: f64, seed: u64) -> FaultRule {
        self.trigger = Trigger::Probability {
            probability,
            // xorshift needs a non-zero state; mix the seed so nearby seeds differ.
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        };
        self
    }

    /// What the rule does when it fires (default [`Fault::Error`]).
    pub fn fault(mut self, fault: Fault) -> FaultRule {
        self.fault = fault;
        self
    }

    fn matches(&self, point: IoPoint, path: &str) -> bool {
        (self.points.is_empty() || self.points.contains(&point))
            && self
                .path_contains
                .as_ref()
                .is_none_or(|fragment| path.contains(fragment.as_str()))
    }
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<FaultRule>,
    calls: HashMap<IoPoint, u64>,
    injected: u64,
    crashed: bool,
}

/// Decides which intercepted calls fail, and (when made with
/// [`FaultInjector::recording`]) keeps a shadow of what is durable on disk.
/// Share it with `Arc` between the test and the store
/// (`StoreConfig::with_fault_injector`).
#[derive(Default)]
pub struct FaultInjector {
    state: Mutex<State>,
    shadow: Mutex<Option<Shadow>>,
}

impl fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("FaultInjector")
            .field("rules", &state.rules.len())
            .field("injected", &state.injected)
            .field("crashed", &state.crashed)
            .field("recording", &self.shadow.lock().is_some())
            .finish()
    }
}

impl FaultInjector {
    /// An injector with no rules: every call goes through.
    pub fn new() -> Arc<FaultInjector> {
        Arc::new(FaultInjector::default())
    }

    /// An injector that also records, per file, the bytes that were synced
    /// and the writes since, so [`FaultInjector::crash_image`] can build what
    /// a power loss could leave behind. Give it to the store before opening:
    /// a file it first sees when it is opened is assumed durable as it is on
    /// disk at that moment. Keeps file contents in memory: for test-sized
    /// stores.
    pub fn recording() -> Arc<FaultInjector> {
        Arc::new(FaultInjector {
            state: Mutex::new(State::default()),
            shadow: Mutex::new(Some(Shadow::default())),
        })
    }

    /// Recording injectors: takes every file now under `dir` (recursively) as
    /// durable as it is, so crash images include files the store has not
    /// opened yet (call it before opening an existing store). Returns how
    /// many files were adopted.
    pub fn adopt_existing(&self, dir: &Path) -> io::Result<usize> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(next) = pending.pop() {
            for entry in std::fs::read_dir(&next)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    pending.push(entry.path());
                } else if kind.is_file() {
                    found.push(entry.path());
                }
            }
        }
        let mut adopted = 0;
        self.with_shadow(|s| {
            for path in &found {
                if !s.current.contains_key(path) {
                    s.file_for(path);
                    adopted += 1;
                }
            }
        });
        Ok(adopted)
    }

    /// Fails the `n`-th call at `point` from now on (1 = the next one), once.
    pub fn fail_nth(&self, point: IoPoint, n: u64, fault: Fault) {
        self.add_rule(FaultRule::at(point).nth(n).fault(fault));
    }

    /// Fails every call at `point` until [`FaultInjector::clear`].
    pub fn fail_always(&self, point: IoPoint, fault: Fault) {
        self.add_rule(FaultRule::at(point).always().fault(fault));
    }

    /// Fails calls at `point` on files whose path contains `fragment`.
    pub fn fail_always_for(&self, point: IoPoint, fragment: &str, fault: Fault) {
        self.add_rule(
            FaultRule::at(point)
                .path_contains(fragment)
                .always()
                .fault(fault),
        );
    }

    /// Fails each call at `point` with `probability`, drawn from a generator
    /// seeded with `seed`, so a failing run replays exactly.
    pub fn fail_with_probability(&self, point: IoPoint, probability: f64, seed: u64, fault: Fault) {
        self.add_rule(
            FaultRule::at(point)
                .with_probability(probability, seed)
                .fault(fault),
        );
    }

    /// Adds a rule. When several rules fire on one call, the first added wins
    /// (all of them count down).
    pub fn add_rule(&self, rule: FaultRule) {
        self.state.lock().rules.push(rule);
    }

    /// Removes every rule. A crash ([`Fault::Crash`]) is not undone: a
    /// crashed injector keeps failing every call.
    pub fn clear(&self) {
        self.state.lock().rules.clear();
    }

    /// Calls seen at `point` so far (including failed ones).
    pub fn calls(&self, point: IoPoint) -> u64 {
        self.state.lock().calls.get(&point).copied().unwrap_or(0)
    }

    /// Calls seen so far at every point, in [`IoPoint::ALL`] order.
    pub fn all_calls(&self) -> [u64; 9] {
        let state = self.state.lock();
        IoPoint::ALL.map(|point| state.calls.get(&point).copied().unwrap_or(0))
    }

    /// Faults injected so far (rule firings; the failures that follow a
    /// crash are not counted).
    pub fn injected(&self) -> u64 {
        self.state.lock().injected
    }

    /// True once a [`Fault::Crash`] fired.
    pub fn crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// True if this injector records crash images.
    pub fn is_recording(&self) -> bool {
        self.shadow.lock().is_some()
    }

    /// Writes into `dest` what a power loss could have left of the files the
    /// store in `store_dir` wrote through this injector: every file's synced
    /// bytes plus a prefix (chosen by `seed`, possibly empty or complete, and
    /// possibly ending inside a write) of its unsynced writes and
    /// truncations, and the directory entries made durable by a directory
    /// sync plus a prefix of the later creations, renames and deletions. If a
    /// [`Fault::Crash`] fired, the image is of the moment of the crash.
    ///
    /// Files the injector never saw (the lock file, files written outside the
    /// store's I/O seam) are not in the image. Fails with
    /// [`io::ErrorKind::Unsupported`] unless the injector was made with
    /// [`FaultInjector::recording`].
    pub fn crash_image(&self, store_dir: &Path, dest: &Path, seed: u64) -> io::Result<CrashImage> {
        let shadow = self.shadow.lock();
        let Some(shadow) = shadow.as_ref() else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "crash images need FaultInjector::recording()",
            ));
        };
        shadow.image(store_dir, dest, seed)
    }

    /// Records a call and decides whether it fails.
    fn check(&self, point: IoPoint, path: &Path) -> Option<Fault> {
        let mut state = self.state.lock();
        *state.calls.entry(point).or_insert(0) += 1;
        if state.crashed {
            return Some(Fault::Error);
        }
        let path = path.to_string_lossy();
        let mut fired = None;
        let mut spent = Vec::new();
        for (position, rule) in state.rules.iter_mut().enumerate() {
            if !rule.matches(point, &path) {
                continue;
            }
            let fires = match &mut rule.trigger {
                Trigger::Countdown(left) => {
                    *left -= 1;
                    if *left == 0 {
                        spent.push(position);
                        true
                    } else {
                        false
                    }
                }
                Trigger::From(left) => {
                    *left = left.saturating_sub(1);
                    *left == 0
                }
                Trigger::Always => true,
                Trigger::Probability { probability, rng } => next_unit(rng) < *probability,
            };
            if fires && fired.is_none() {
                fired = Some(rule.fault);
            }
        }
        for position in spent.into_iter().rev() {
            state.rules.remove(position);
        }
        if let Some(fault) = fired {
            state.injected += 1;
            if fault == Fault::Crash {
                state.crashed = true;
            }
        }
        fired
    }

    fn with_shadow(&self, f: impl FnOnce(&mut Shadow)) {
        if let Some(shadow) = self.shadow.lock().as_mut() {
            f(shadow);
        }
    }
}

/// xorshift64* in [0, 1): small, seeded, reproducible.
fn next_unit(rng: &mut u64) -> f64 {
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    let draw = rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
    draw as f64 / (1u64 << 53) as f64
}

/// What [`FaultInjector::crash_image`] put into the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashImage {
    /// Files written into the image (paths inside the image directory).
    pub files: Vec<PathBuf>,
    /// Unsynced bytes (of writes) the image kept.
    pub unsynced_bytes_kept: u64,
    /// Unsynced bytes (of writes) the image dropped.
    pub unsynced_bytes_dropped: u64,
    /// Unsynced directory changes (creations, renames, deletions) kept.
    pub directory_changes_kept: u64,
    /// Unsynced directory changes dropped.
    pub directory_changes_dropped: u64,
}

// ---------------------------------------------------------------------------
// The shadow: what is durable, what is only issued.

#[derive(Debug, Clone)]
enum FileChange {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl FileChange {
    /// Applies the change to `content`; a write keeps only its first `keep` bytes.
    fn apply(&self, content: &mut Vec<u8>, keep: Option<usize>) {
        match self {
            FileChange::Write { offset, bytes } => {
                let bytes = &bytes[..keep.unwrap_or(bytes.len()).min(bytes.len())];
                let Ok(start) = usize::try_from(*offset) else {
                    return;
                };
                let end = start + bytes.len();
                if content.len() < end {
                    content.resize(end, 0);
                }
                content[start..end].copy_from_slice(bytes);
            }
            FileChange::SetLen(len) => {
                content.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0);
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
struct ShadowFile {
    synced: Vec<u8>,
    unsynced: Vec<FileChange>,
}

#[derive(Debug, Clone)]
enum DirChange {
    Link { path: PathBuf, file: usize },
    Unlink { path: PathBuf },
    Rename { from: PathBuf, to: PathBuf },
}

impl DirChange {
    fn dir(&self) -> Option<&Path> {
        match self {
            DirChange::Link { path, .. } | DirChange::Unlink { path } => path.parent(),
            DirChange::Rename { to, .. } => to.parent(),
        }
    }

    fn apply(&self, names: &mut HashMap<PathBuf, usize>) {
        match self {
            DirChange::Link { path, file } => {
                names.insert(path.clone(), *file);
            }
            DirChange::Unlink { path } => {
                names.remove(path);
            }
            DirChange::Rename { from, to } => {
                if let Some(file) = names.remove(from) {
                    names.insert(to.clone(), file);
                }
            }
        }
    }
}

/// Files are tracked by identity (like inodes), so renames and open handles
/// follow the file, not the name.
#[derive(Debug, Default)]
struct Shadow {
    files: Vec<ShadowFile>,
    /// Names as the running program sees them.
    current: HashMap<PathBuf, usize>,
    /// Names made durable by a directory sync.
    durable: HashMap<PathBuf, usize>,
    unsynced_dir: Vec<DirChange>,
}

impl Shadow {
    /// The file behind `path`, adopting a file first seen now (assumed durable).
    fn file_for(&mut self, path: &Path) -> usize {
        if let Some(&file) = self.current.get(path) {
            return file;
        }
        let synced = std::fs::read(path).unwrap_or_default();
        self.files.push(ShadowFile {
            synced,
            unsynced: Vec::new(),
        });
        let file = self.files.len() - 1;
        self.current.insert(path.to_path_buf(), file);
        self.durable.insert(path.to_path_buf(), file);
        file
    }

    fn create(&mut self, path: &Path) -> usize {
        self.files.push(ShadowFile::default());
        let file = self.files.len() - 1;
        self.current.insert(path.to_path_buf(), file);
        self.unsynced_dir.push(DirChange::Link {
            path: path.to_path_buf(),
            file,
        });
        file
    }

    fn change(&mut self, file: usize, change: FileChange) {
        if let Some(shadow) = self.files.get_mut(file) {
            shadow.unsynced.push(change);
        }
    }

    /// Number of unsynced changes of `file`, taken when a sync starts: only
    /// changes issued before it are covered by it.
    fn unsynced_count(&self, file: usize) -> usize {
        self.files.get(file).map_or(0, |f| f.unsynced.len())
    }

    fn synced(&mut self, file: usize, covered: usize) {
        if let Some(shadow) = self.files.get_mut(file) {
            let covered = covered.min(shadow.unsynced.len());
            let changes: Vec<FileChange> = shadow.unsynced.drain(..covered).collect();
            for change in changes {
                change.apply(&mut shadow.synced, None);
            }
        }
    }

    fn remove(&mut self, path: &Path) {
        self.current.remove(path);
        self.unsynced_dir.push(DirChange::Unlink {
            path: path.to_path_buf(),
        });
    }

    fn rename(&mut self, from: &Path, to: &Path) {
        let file = self.file_for(from);
        self.current.remove(from);
        self.current.insert(to.to_path_buf(), file);
        self.unsynced_dir.push(DirChange::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        });
    }

    fn dir_changes_in(&self, dir: &Path) -> usize {
        self.unsynced_dir
            .iter()
            .filter(|c| c.dir() == Some(dir))
            .count()
    }

    /// Makes the first `covered` unsynced changes of `dir` durable.
    fn dir_synced(&mut self, dir: &Path, covered: usize) {
        let mut left = covered;
        let mut kept = Vec::with_capacity(self.unsynced_dir.len());
        for change in std::mem::take(&mut self.unsynced_dir) {
            if left > 0 && change.dir() == Some(dir) {
                left -= 1;
                change.apply(&mut self.durable);
            } else {
                kept.push(change);
            }
        }
        self.unsynced_dir = kept;
    }

    fn image(&self, store_dir: &Path, dest: &Path, seed: u64) -> io::Result<CrashImage> {
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        rng |= 1;
        let mut pick = |upper: usize| -> usize {
            // Lean towards the extremes (nothing or everything survived),
            // which are the cases most likely to matter.
            let draw = next_unit(&mut rng);
            if draw < 0.25 {
                0
            } else if draw < 0.5 {
                upper
            } else {
                ((next_unit(&mut rng) * (upper as f64 + 1.0)) as usize).min(upper)
            }
        };
        let mut report = CrashImage::default();
        let mut names = self.durable.clone();
        let keep_dir = pick(self.unsynced_dir.len());
        for change in &self.unsynced_dir[..keep_dir] {
            change.apply(&mut names);
        }
        report.directory_changes_kept = keep_dir as u64;
        report.directory_changes_dropped = (self.unsynced_dir.len() - keep_dir) as u64;
        std::fs::create_dir_all(dest)?;
        let mut names: Vec<(&PathBuf, &usize)> = names.iter().collect();
        names.sort();
        for (path, &file) in names {
            let Ok(relative) = path.strip_prefix(store_dir) else {
                continue;
            };
            let Some(shadow) = self.files.get(file) else {
                continue;
            };
            let mut content = shadow.synced.clone();
            let total: usize = shadow.unsynced.len();
            let keep = pick(total);
            for change in &shadow.unsynced[..keep] {
                change.apply(&mut content, None);
                if let FileChange::Write { bytes, .. } = change {
                    report.unsynced_bytes_kept += bytes.len() as u64;
                }
            }
            if let Some(FileChange::Write { offset, bytes }) = shadow.unsynced.get(keep) {
                // The change the crash interrupted: a prefix of its bytes.
                let part = pick(bytes.len());
                FileChange::Write {
                    offset: *offset,
                    bytes: bytes.clone(),
                }
                .apply(&mut content, Some(part));
                report.unsynced_bytes_kept += part as u64;
                report.unsynced_bytes_dropped += (bytes.len() - part) as u64;
            }
            for change in shadow.unsynced.iter().skip(keep + 1) {
                if let FileChange::Write { bytes, .. } = change {
                    report.unsynced_bytes_dropped += bytes.len() as u64;
                }
            }
            let target = dest.join(relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&target, &content)?;
            report.files.push(target);
        }
        Ok(report)
    }
}

// ---------------------------------------------------------------------------
// Decoders for the fuzzers.

/// The crate's internal decoders, for the fuzz targets in `fuzz/` and their
/// short proptest runs (`tests/chaos_fuzz.rs`): the event frame decoder and
/// the index image (footer and checkpoint) loader. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::store::index::footer::parse_image;
    use crate::store::index::Index;
    use crate::store::log::frame::{decode_frame as decode, encode_frame};
    use crate::{EventHash, EventId, EventKind};

    /// What a frame decoded to.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct DecodedFrame {
        /// Bytes the frame occupies, length and checksum words included.
        pub frame_len: usize,
        /// Global sequence.
        pub sequence: u64,
        /// Entity clock.
        pub clock: u64,
        /// Timestamp, µs since the Unix epoch.
        pub timestamp_us: i64,
        /// Event id.
        pub event_id: EventId,
        /// Items of its batch after it.
        pub batch_remaining: u32,
        /// Event kind.
        pub kind: EventKind,
        /// Event flags.
        pub flags: u16,
        /// Payload schema version.
        pub schema_version: u16,
        /// Explicit correlation id.
        pub correlation_id: Option<EventId>,
        /// Causation id.
        pub causation_id: Option<EventId>,
        /// Idempotency key.
        pub idempotency_key: Option<Vec<u8>>,
        /// Entity name.
        pub entity: String,
        /// Scope name.
        pub scope: String,
        /// Payload bytes.
        pub payload: Vec<u8>,
        /// Hash-chain link.
        pub hash: Option<EventHash>,
        /// The decoded fields encoded again by the writer's encoder.
        pub reencoded: Vec<u8>,
    }

    /// Decodes the frame at the start of `bytes` as recovery and reads do.
    pub fn decode_frame(bytes: &[u8]) -> Result<DecodedFrame, String> {
        let view = decode(bytes).map_err(|error| error.to_string())?;
        let mut reencoded = Vec::new();
        encode_frame(&view.fields(), view.hash.as_ref(), &mut reencoded);
        Ok(DecodedFrame {
            frame_len: view.frame_len,
            sequence: view.sequence,
            clock: view.clock,
            timestamp_us: view.timestamp_us,
            event_id: view.event_id,
            batch_remaining: view.batch_remaining,
            kind: view.kind,
            flags: view.flags,
            schema_version: view.schema_version,
            correlation_id: view.correlation_id,
            causation_id: view.causation_id,
            idempotency_key: view.idempotency_key.map(<[u8]>::to_vec),
            entity: view.entity.to_string(),
            scope: view.scope.to_string(),
            payload: view.payload.to_vec(),
            hash: view.hash,
            reencoded,
        })
    }

    /// Decodes and checks the frame at the start of `bytes` (length, CRC,
    /// layout) without copying anything out: what every read and the
    /// recovery scan do per frame. Returns the frame's length.
    pub fn check_frame(bytes: &[u8]) -> Result<usize, String> {
        decode(bytes)
            .map(|view| view.frame_len)
            .map_err(|error| error.to_string())
    }

    /// Encodes `frame`'s fields as the writer does (length, CRC, layout; the
    /// hash link is taken as given), appending to `out`.
    pub fn encode_frame_into(frame: &DecodedFrame, out: &mut Vec<u8>) {
        let fields = crate::store::log::frame::FrameFields {
            sequence: frame.sequence,
            clock: frame.clock,
            timestamp_us: frame.timestamp_us,
            event_id: frame.event_id,
            batch_remaining: frame.batch_remaining,
            kind: frame.kind,
            flags: frame.flags,
            schema_version: frame.schema_version,
            correlation_id: frame.correlation_id,
            causation_id: frame.causation_id,
            idempotency_key: frame.idempotency_key.as_deref(),
            entity: &frame.entity,
            scope: &frame.scope,
            payload: &frame.payload,
        };
        encode_frame(&fields, frame.hash.as_ref(), out);
    }

    /// Loads an index image (footer or checkpoint) into an empty index as
    /// opening a store does for its first segment: parse (header, checksums,
    /// tables), find the last frame for the spot check, then load, checking
    /// every record on the way. Returns the number of events it describes.
    pub fn load_index_image(bytes: &[u8]) -> Result<u64, String> {
        let view = parse_image(bytes)?;
        let _ = view.last_frame();
        let mut index = Index::default();
        index.apply_image(&view)?;
        Ok(view.events)
    }
}

// ---------------------------------------------------------------------------
// The seam wrapper.

fn injected_error(point: IoPoint) -> io::Error {
    io::Error::other(format!("injected fault at {point:?}"))
}

pub(crate) fn wrap(real: Arc<dyn StorageIo>, injector: Arc<FaultInjector>) -> Arc<dyn StorageIo> {
    Arc::new(FaultyIo { real, injector })
}

#[derive(Debug)]
struct FaultyIo {
    real: Arc<dyn StorageIo>,
    injector: Arc<FaultInjector>,
}

#[derive(Debug)]
struct FaultyFile {
    real: Arc<dyn StorageFile>,
    injector: Arc<FaultInjector>,
    path: PathBuf,
    /// The file's identity in the shadow (recording injectors only).
    shadow_file: Option<usize>,
}

impl FaultyIo {
    fn file(
        &self,
        real: Arc<dyn StorageFile>,
        path: &Path,
        shadow_file: Option<usize>,
    ) -> Arc<dyn StorageFile> {
        Arc::new(FaultyFile {
            real,
            injector: self.injector.clone(),
            path: path.to_path_buf(),
            shadow_file,
        })
    }
}

impl StorageIo for FaultyIo {
    fn create_file(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        match self.injector.check(IoPoint::Create, path) {
            None => {}
            Some(Fault::Crash) => {
                // The entry may or may not have reached the directory.
                self.injector.with_shadow(|s| {
                    s.create(path);
                });
                return Err(injected_error(IoPoint::Create));
            }
            Some(_) => return Err(injected_error(IoPoint::Create)),
        }
        let real = self.real.create_file(path)?;
        let mut shadow_file = None;
        self.injector
            .with_shadow(|s| shadow_file = Some(s.create(path)));
        Ok(self.file(real, path, shadow_file))
    }

    fn open_file(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>> {
        if self.injector.check(IoPoint::Open, path).is_some() {
            return Err(injected_error(IoPoint::Open));
        }
        let real = self.real.open_file(path, writable)?;
        let mut shadow_file = None;
        self.injector
            .with_shadow(|s| shadow_file = Some(s.file_for(path)));
        Ok(self.file(real, path, shadow_file))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self.injector.check(IoPoint::Rename, from) {
            None => {}
            Some(Fault::Crash) => {
                self.injector.with_shadow(|s| s.rename(from, to));
                return Err(injected_error(IoPoint::Rename));
            }
            Some(_) => return Err(injected_error(IoPoint::Rename)),
        }
        self.real.rename(from, to)?;
        self.injector.with_shadow(|s| s.rename(from, to));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self.injector.check(IoPoint::Remove, path) {
            None => {}
            Some(Fault::Crash) => {
                self.injector.with_shadow(|s| s.remove(path));
                return Err(injected_error(IoPoint::Remove));
            }
            Some(_) => return Err(injected_error(IoPoint::Remove)),
        }
        self.real.remove_file(path)?;
        self.injector.with_shadow(|s| s.remove(path));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if self.injector.check(IoPoint::SyncDir, path).is_some() {
            return Err(injected_error(IoPoint::SyncDir));
        }
        let mut covered = 0;
        self.injector
            .with_shadow(|s| covered = s.dir_changes_in(path));
        self.real.sync_dir(path)?;
        self.injector.with_shadow(|s| s.dir_synced(path, covered));
        Ok(())
    }
}

impl FaultyFile {
    fn record(&self, change: FileChange) {
        if let Some(file) = self.shadow_file {
            self.injector.with_shadow(|s| s.change(file, change));
        }
    }
}

impl StorageFile for FaultyFile {
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        match self.injector.check(IoPoint::Write, &self.path) {
            None => {
                self.real.write_all_at(bytes, offset)?;
                self.record(FileChange::Write {
                    offset,
                    bytes: bytes.to_vec(),
                });
                Ok(())
            }
            Some(Fault::Error) => Err(injected_error(IoPoint::Write)),
            Some(Fault::ShortWrite { keep_bytes }) => {
                let keep = keep_bytes.min(bytes.len());
                self.real.write_all_at(&bytes[..keep], offset)?;
                self.record(FileChange::Write {
                    offset,
                    bytes: bytes[..keep].to_vec(),
                });
                Err(injected_error(IoPoint::Write))
            }
            Some(Fault::Crash) => {
                // Issued when the power went: any prefix of it may survive.
                self.record(FileChange::Write {
                    offset,
                    bytes: bytes.to_vec(),
                });
                Err(injected_error(IoPoint::Write))
            }
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if self.injector.check(IoPoint::Read, &self.path).is_some() {
            return Err(injected_error(IoPoint::Read));
        }
        self.real.read_at(buf, offset)
    }

    fn sync(&self, mode: SyncMode) -> io::Result<()> {
        if self.injector.check(IoPoint::Sync, &self.path).is_some() {
            return Err(injected_error(IoPoint::Sync));
        }
        let mut covered = 0;
        if let Some(file) = self.shadow_file {
            self.injector
                .with_shadow(|s| covered = s.unsynced_count(file));
        }
        self.real.sync(mode)?;
        if let Some(file) = self.shadow_file {
            self.injector.with_shadow(|s| s.synced(file, covered));
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        match self.injector.check(IoPoint::Truncate, &self.path) {
            None => {}
            Some(Fault::Crash) => {
                self.record(FileChange::SetLen(len));
                return Err(injected_error(IoPoint::Truncate));
            }
            Some(_) => return Err(injected_error(IoPoint::Truncate)),
        }
        self.real.set_len(len)?;
        self.record(FileChange::SetLen(len));
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.real.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(offset: u64, bytes: &[u8]) -> FileChange {
        FileChange::Write {
            offset,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn images_hold_synced_bytes_and_a_prefix_of_the_rest() {
        let root = PathBuf::from("/store");
        let path = root.join("f");
        let mut shadow = Shadow::default();
        let file = shadow.create(&path);
        shadow.dir_synced(&root, 1);
        shadow.change(file, write(0, b"durable"));
        let covered = shadow.unsynced_count(file);
        shadow.synced(file, covered);
        shadow.change(file, write(7, b"-pending"));
        shadow.change(file, FileChange::SetLen(3));
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let dest = tempfile::tempdir().unwrap();
            let report = shadow.image(&root, dest.path(), seed).unwrap();
            assert_eq!(report.files.len(), 1);
            let content = std::fs::read(dest.path().join("f")).unwrap();
            let text = String::from_utf8(content).unwrap();
            assert!(
                "durable-pending".starts_with(&text) && text.len() >= 7 || text == "dur",
                "seed {seed}: {text:?}"
            );
            seen.insert(text);
        }
        // Nothing, everything, the truncation and partial writes all occur.
        assert!(seen.contains("durable"));
        assert!(seen.contains("durable-pending"));
        assert!(seen.contains("dur"));
        assert!(seen.len() > 4, "{seen:?}");
    }

    #[test]
    fn unsynced_directory_entries_may_vanish_and_renames_follow_the_file() {
        let root = PathBuf::from("/store");
        let mut shadow = Shadow::default();
        let a = shadow.create(&root.join("a.tmp"));
        shadow.change(a, write(0, b"x"));
        let covered = shadow.unsynced_count(a);
        shadow.synced(a, covered);
        let changes = shadow.dir_changes_in(&root);
        shadow.dir_synced(&root, changes);
        shadow.rename(&root.join("a.tmp"), &root.join("a"));
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let dest = tempfile::tempdir().unwrap();
            shadow.image(&root, dest.path(), seed).unwrap();
            let old = dest.path().join("a.tmp").exists();
            let new = dest.path().join("a").exists();
            assert!(old != new, "exactly one name survives (seed {seed})");
            outcomes.insert(new);
        }
        assert_eq!(outcomes.len(), 2, "both outcomes occur");
    }

    #[test]
    fn rules_filter_by_point_and_path_and_count_down() {
        let injector = FaultInjector::new();
        injector.add_rule(
            FaultRule::at(IoPoint::Write)
                .or_at(IoPoint::Sync)
                .path_contains("seg")
                .nth(2),
        );
        let seg = Path::new("/d/1.seg");
        let other = Path::new("/d/other");
        assert_eq!(injector.check(IoPoint::Write, other), None);
        assert_eq!(injector.check(IoPoint::Read, seg), None);
        assert_eq!(injector.check(IoPoint::Sync, seg), None);
        assert_eq!(injector.check(IoPoint::Write, seg), Some(Fault::Error));
        assert_eq!(injector.check(IoPoint::Write, seg), None, "fires once");
        assert_eq!(injector.injected(), 1);
        assert_eq!(injector.calls(IoPoint::Write), 3);
    }

    #[test]
    fn a_crash_fails_every_later_call() {
        let injector = FaultInjector::new();
        injector.add_rule(FaultRule::at(IoPoint::Sync).nth(1).fault(Fault::Crash));
        let p = Path::new("/x");
        assert_eq!(injector.check(IoPoint::Write, p), None);
        assert_eq!(injector.check(IoPoint::Sync, p), Some(Fault::Crash));
        assert!(injector.crashed());
        injector.clear();
        assert_eq!(injector.check(IoPoint::Read, p), Some(Fault::Error));
        assert_eq!(injector.injected(), 1);
    }

    #[test]
    fn seeded_probability_replays() {
        let run = |seed| {
            let injector = FaultInjector::new();
            injector.fail_with_probability(IoPoint::Write, 0.3, seed, Fault::Error);
            (0..64)
                .map(|_| injector.check(IoPoint::Write, Path::new("/f")).is_some())
                .collect::<Vec<bool>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
        let fired = run(9).iter().filter(|f| **f).count();
        assert!((5..40).contains(&fired), "{fired}");
    }
}
