//! Fault injection for tests (feature `dangerous-test-hooks`, never for
//! production): make any file operation of the write and recovery paths fail,
//! or write only part of its bytes, by countdown, always, or by seeded
//! probability.
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

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;
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

/// What happens to an intercepted call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with an I/O error and does nothing.
    Error,
    /// Writes only: the first `keep_bytes` bytes are written, then the call fails.
    ShortWrite {
        /// Bytes written before the failure.
        keep_bytes: usize,
    },
}

#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// Fires on the call this many calls from now (1 = the next call).
    Countdown(u64),
    Always,
    /// Fires with this probability per call.
    Probability(f64),
}

#[derive(Debug, Clone)]
struct Rule {
    point: IoPoint,
    trigger: Trigger,
    fault: Fault,
    path_contains: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    calls: HashMap<IoPoint, u64>,
    injected: u64,
    rng: u64,
}

/// Decides which intercepted calls fail. Share it with `Arc` between the test
/// and the store (`StoreConfig::with_fault_injector`).
#[derive(Default)]
pub struct FaultInjector {
    state: Mutex<State>,
}

impl fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("FaultInjector")
            .field("rules", &state.rules.len())
            .field("injected", &state.injected)
            .finish()
    }
}

impl FaultInjector {
    /// An injector with no rules: every call goes through.
    pub fn new() -> Arc<FaultInjector> {
        Arc::new(FaultInjector::default())
    }

    /// Fails the `n`-th call at `point` from now on (1 = the next one), once.
    pub fn fail_nth(&self, point: IoPoint, n: u64, fault: Fault) {
        self.add(point, Trigger::Countdown(n.max(1)), fault, None);
    }

    /// Fails every call at `point` until [`FaultInjector::clear`].
    pub fn fail_always(&self, point: IoPoint, fault: Fault) {
        self.add(point, Trigger::Always, fault, None);
    }

    /// Fails calls at `point` on files whose path contains `fragment`.
    pub fn fail_always_for(&self, point: IoPoint, fragment: &str, fault: Fault) {
        self.add(point, Trigger::Always, fault, Some(fragment.to_string()));
    }

    /// Fails each call at `point` with `probability`, drawn from a generator
    /// seeded with `seed`, so a failing run replays exactly.
    pub fn fail_with_probability(&self, point: IoPoint, probability: f64, seed: u64, fault: Fault) {
        self.state.lock().rng = seed | 1;
        self.add(point, Trigger::Probability(probability), fault, None);
    }

    fn add(&self, point: IoPoint, trigger: Trigger, fault: Fault, path_contains: Option<String>) {
        self.state.lock().rules.push(Rule {
            point,
            trigger,
            fault,
            path_contains,
        });
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.state.lock().rules.clear();
    }

    /// Calls seen at `point` so far.
    pub fn calls(&self, point: IoPoint) -> u64 {
        self.state.lock().calls.get(&point).copied().unwrap_or(0)
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.state.lock().injected
    }

    /// Records a call and decides whether it fails.
    fn check(&self, point: IoPoint, path: &Path) -> Option<Fault> {
        let mut state = self.state.lock();
        *state.calls.entry(point).or_insert(0) += 1;
        let path = path.to_string_lossy();
        let mut fired = None;
        let mut rng = state.rng;
        let mut spent = None;
        for (position, rule) in state.rules.iter_mut().enumerate() {
            if rule.point != point
                || rule
                    .path_contains
                    .as_ref()
                    .is_some_and(|f| !path.contains(f.as_str()))
            {
                continue;
            }
            let fires = match &mut rule.trigger {
                Trigger::Countdown(left) => {
                    *left -= 1;
                    if *left == 0 {
                        spent = Some(position);
                        true
                    } else {
                        false
                    }
                }
                Trigger::Always => true,
                Trigger::Probability(p) => {
                    // xorshift64*: small, seeded, reproducible.
                    rng ^= rng >> 12;
                    rng ^= rng << 25;
                    rng ^= rng >> 27;
                    let draw = rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
                    (draw as f64 / (1u64 << 53) as f64) < *p
                }
            };
            if fires && fired.is_none() {
                fired = Some(rule.fault);
            }
        }
        state.rng = rng;
        if let Some(position) = spent {
            state.rules.remove(position);
        }
        if fired.is_some() {
            state.injected += 1;
        }
        fired
    }
}

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
    path: std::path::PathBuf,
}

impl FaultyIo {
    fn gate(&self, point: IoPoint, path: &Path) -> io::Result<()> {
        match self.injector.check(point, path) {
            Some(_) => Err(injected_error(point)),
            None => Ok(()),
        }
    }

    fn file(&self, real: Arc<dyn StorageFile>, path: &Path) -> Arc<dyn StorageFile> {
        Arc::new(FaultyFile {
            real,
            injector: self.injector.clone(),
            path: path.to_path_buf(),
        })
    }
}

impl StorageIo for FaultyIo {
    fn create_file(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        self.gate(IoPoint::Create, path)?;
        Ok(self.file(self.real.create_file(path)?, path))
    }

    fn open_file(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>> {
        self.gate(IoPoint::Open, path)?;
        Ok(self.file(self.real.open_file(path, writable)?, path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.gate(IoPoint::Rename, from)?;
        self.real.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.gate(IoPoint::Remove, path)?;
        self.real.remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.gate(IoPoint::SyncDir, path)?;
        self.real.sync_dir(path)
    }
}

impl StorageFile for FaultyFile {
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        match self.injector.check(IoPoint::Write, &self.path) {
            None => self.real.write_all_at(bytes, offset),
            Some(Fault::Error) => Err(injected_error(IoPoint::Write)),
            Some(Fault::ShortWrite { keep_bytes }) => {
                let keep = keep_bytes.min(bytes.len());
                self.real.write_all_at(&bytes[..keep], offset)?;
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
        self.real.sync(mode)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.injector.check(IoPoint::Truncate, &self.path).is_some() {
            return Err(injected_error(IoPoint::Truncate));
        }
        self.real.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        self.real.len()
    }
}
