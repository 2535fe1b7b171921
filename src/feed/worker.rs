//! A supervised cursor worker: a thread that feeds batches from a cursor to a
//! handler, commits after each handled batch, and restarts the handler by
//! policy when it fails or panics.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cursor::{deadline_after, BATCH_MAX};
use super::{wait, Cursor};
use crate::store::engine::Inner;
use crate::{StoreError, StoredEvent};

/// What a worker's handler returns when it cannot handle a batch.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a [`CursorWorker`] polls and how it restarts a failing handler.
///
/// A *failure* is a handler that returned an error or panicked, or a commit
/// that failed. After a failure the worker rewinds its cursor to the last
/// committed position (so the failed batch is delivered again), waits the
/// current backoff, and restarts. Backoff starts at `backoff_initial` and
/// doubles up to `backoff_max`; a handled batch resets it. After
/// `max_restarts` consecutive failures the worker gives up
/// ([`WorkerExit::GaveUp`]).
#[derive(Debug, Clone)]
pub struct WorkerPolicy {
    /// Largest batch handed to the handler (1 to 65,536; default 256).
    pub batch_max: usize,
    /// Consecutive failures tolerated before giving up (default 5).
    pub max_restarts: u32,
    /// First backoff after a failure (default 10 ms).
    pub backoff_initial: Duration,
    /// Longest backoff (default 1 s).
    pub backoff_max: Duration,
}

impl Default for WorkerPolicy {
    fn default() -> Self {
        WorkerPolicy {
            batch_max: 256,
            max_restarts: 5,
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
        }
    }
}

impl WorkerPolicy {
    /// Sets [`WorkerPolicy::batch_max`].
    pub fn with_batch_max(mut self, batch_max: usize) -> Self {
        self.batch_max = batch_max;
        self
    }

    /// Sets [`WorkerPolicy::max_restarts`].
    pub fn with_max_restarts(mut self, max_restarts: u32) -> Self {
        self.max_restarts = max_restarts;
        self
    }

    /// Sets the initial and the longest backoff.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }
}

/// Why a worker stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum WorkerExit {
    /// [`CursorWorker::stop`] was called (or the handle dropped).
    Stopped,
    /// The store was closed and every event committed before was handled.
    StoreClosed,
    /// The handler failed `max_restarts + 1` times in a row.
    GaveUp {
        /// The last failure (error message or panic message).
        last_error: String,
    },
    /// Reading from the store failed in a way a restart cannot fix.
    Failed(StoreError),
}

/// What a worker did, returned by [`CursorWorker::join`].
#[derive(Debug)]
pub struct WorkerReport {
    /// Batches handled successfully (and committed).
    pub batches: u64,
    /// Events in those batches.
    pub events: u64,
    /// Restarts after failures.
    pub restarts: u32,
    /// The cursor's committed position when the worker stopped.
    pub committed_position: u64,
    /// Why it stopped.
    pub exit: WorkerExit,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    batches: AtomicU64,
    events: AtomicU64,
    restarts: AtomicU32,
    committed: AtomicU64,
}

/// A thread driving a [`Cursor`] with a handler; see [`CursorWorker::spawn`].
///
/// Delivery is at-least-once: a batch is committed only after the handler
/// returned `Ok`, so after a failure, restart or crash the uncommitted batch is
/// handled again. With a named cursor the committed position survives the
/// process. Dropping the handle stops the worker and waits for it.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use batpak::prelude::*;
/// use batpak::feed::{CursorWorker, WorkerPolicy};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(StoreConfig::new(dir.path()))?;
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let worker = {
///     let seen = Arc::clone(&seen);
///     let cursor = store.named_cursor("indexer", &Region::all())?;
///     CursorWorker::spawn(cursor, WorkerPolicy::default(), move |batch| {
///         let mut seen = seen.lock().map_err(|_| "poisoned")?;
///         seen.extend(batch.iter().map(|e| e.header.sequence));
///         Ok(())
///     })?
/// };
/// let coord = Coordinate::new("doc:1", "wiki")?;
/// let last = store.append(&coord, EventKind::custom(4, 1), &"edit")?;
/// while worker.committed_position() <= last.sequence {
///     std::thread::sleep(std::time::Duration::from_millis(5));
/// }
/// worker.stop();
/// let report = worker.join();
/// assert_eq!(report.events, 1);
/// assert_eq!(*seen.lock().unwrap(), [0]);
/// # store.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CursorWorker {
    inner: Arc<Inner>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<WorkerReport>>,
}

impl std::fmt::Debug for CursorWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorWorker")
            .field("committed_position", &self.committed_position())
            .field("restarts", &self.restarts())
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl CursorWorker {
    /// Starts a thread that hands batches of `cursor` to `handler` and
    /// commits the cursor after each batch the handler accepted.
    pub fn spawn<F>(
        cursor: Cursor,
        policy: WorkerPolicy,
        handler: F,
    ) -> Result<CursorWorker, StoreError>
    where
        F: FnMut(&[StoredEvent]) -> Result<(), HandlerError> + Send + 'static,
    {
        let inner = cursor.inner().clone();
        let shared = Arc::new(Shared {
            committed: AtomicU64::new(cursor.committed_position()),
            ..Shared::default()
        });
        let name = match cursor.name() {
            Some(name) => format!("batpak-worker-{name}"),
            None => "batpak-worker".to_string(),
        };
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(cursor, policy, handler, &thread_shared))
            .map_err(|source| {
                StoreError::io("spawn worker thread", inner.dir().to_path_buf(), source)
            })?;
        Ok(CursorWorker {
            inner,
            shared,
            thread: Some(thread),
        })
    }

    /// Asks the worker to stop after the batch it is handling (if any); it
    /// wakes at once if it is waiting for events. Does not wait; see
    /// [`CursorWorker::join`].
    pub fn stop(&self) {
        wait::interrupt(&self.inner, &self.shared.stop);
    }

    /// Waits for the worker thread to end and reports what it did. Call
    /// [`CursorWorker::stop`] first unless the store is being closed.
    pub fn join(mut self) -> WorkerReport {
        self.join_thread()
    }

    /// True once the worker thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// The cursor's committed position: every event below it was handled.
    pub fn committed_position(&self) -> u64 {
        self.shared.committed.load(Ordering::Acquire)
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u32 {
        self.shared.restarts.load(Ordering::Acquire)
    }

    /// Events handled and committed so far.
    pub fn events_handled(&self) -> u64 {
        self.shared.events.load(Ordering::Acquire)
    }

    fn join_thread(&mut self) -> WorkerReport {
        let report = self.thread.take().map(JoinHandle::join);
        match report {
            Some(Ok(report)) => report,
            // The handler's panics are caught; only a bug in the loop gets here.
            other => WorkerReport {
                batches: self.shared.batches.load(Ordering::Acquire),
                events: self.shared.events.load(Ordering::Acquire),
                restarts: self.shared.restarts.load(Ordering::Acquire),
                committed_position: self.committed_position(),
                exit: WorkerExit::GaveUp {
                    last_error: if other.is_some() {
                        "worker thread panicked".into()
                    } else {
                        "worker already joined".into()
                    },
                },
            },
        }
    }
}

impl Drop for CursorWorker {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
            let _ = self.join_thread();
        }
    }
}

/// The text of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        format!("handler panicked: {text}")
    } else if let Some(text) = payload.downcast_ref::<String>() {
        format!("handler panicked: {text}")
    } else {
        "handler panicked".into()
    }
}

/// The worker thread.
fn run<F>(mut cursor: Cursor, policy: WorkerPolicy, mut handler: F, shared: &Shared) -> WorkerReport
where
    F: FnMut(&[StoredEvent]) -> Result<(), HandlerError>,
{
    let batch_max = policy.batch_max.clamp(1, BATCH_MAX);
    let mut failures: u32 = 0;
    let mut backoff = policy.backoff_initial;
    let exit = loop {
        if shared.stop.load(Ordering::Acquire) {
            break WorkerExit::Stopped;
        }
        // Waits are cut short by stop(), so a long deadline costs nothing.
        let deadline = deadline_after(Duration::from_secs(3600));
        let batch = match cursor.wait_batch_until(batch_max, deadline, Some(&shared.stop)) {
            Ok(batch) if batch.is_empty() => continue,
            Ok(batch) => batch,
            Err(StoreError::Closed) => break WorkerExit::StoreClosed,
            Err(error) => break WorkerExit::Failed(error),
        };
        let outcome = match catch_unwind(AssertUnwindSafe(|| handler(&batch))) {
            Ok(Ok(())) => cursor
                .commit()
                .map_err(|error| format!("commit failed: {error}")),
            Ok(Err(error)) => Err(format!("handler failed: {error}")),
            Err(payload) => Err(panic_message(payload.as_ref())),
        };
        match outcome {
            Ok(()) => {
                failures = 0;
                backoff = policy.backoff_initial;
                shared.batches.fetch_add(1, Ordering::AcqRel);
                shared
                    .events
                    .fetch_add(batch.len() as u64, Ordering::AcqRel);
                shared
                    .committed
                    .store(cursor.committed_position(), Ordering::Release);
            }
            Err(last_error) => {
                failures += 1;
                tracing::warn!(
                    cursor = cursor.name().unwrap_or(""),
                    failures,
                    error = %last_error,
                    "cursor worker failure"
                );
                if failures > policy.max_restarts {
                    break WorkerExit::GaveUp { last_error };
                }
                cursor.rewind_to_committed();
                shared.restarts.fetch_add(1, Ordering::AcqRel);
                sleep_interruptibly(cursor.inner(), backoff, &shared.stop);
                backoff = backoff.saturating_mul(2).min(policy.backoff_max);
            }
        }
    };
    WorkerReport {
        batches: shared.batches.load(Ordering::Acquire),
        events: shared.events.load(Ordering::Acquire),
        restarts: shared.restarts.load(Ordering::Acquire),
        committed_position: cursor.committed_position(),
        exit,
    }
}

/// Sleeps for `duration` unless `stop` is raised first.
fn sleep_interruptibly(inner: &Inner, duration: Duration, stop: &AtomicBool) {
    let deadline = Instant::now() + duration;
    // No sequence is ever above u64::MAX, so only the deadline, a close or
    // `stop` ends this wait.
    while Instant::now() < deadline && !stop.load(Ordering::Acquire) {
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        wait::wait_for_more(inner, u64::MAX, deadline, Some(stop));
    }
}
