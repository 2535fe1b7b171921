//! Guaranteed cursors: every matching committed event, exactly once, in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{position, wait};
use crate::store::engine::Inner;
use crate::{Region, StoreError, StoredEvent};

/// How many index entries one look-up may examine before releasing the index.
const SCAN_BUDGET: usize = 64 * 1024;
/// Largest batch a single poll returns, whatever the caller asks for.
pub(crate) const BATCH_MAX: usize = 64 * 1024;

/// A pull feed over the events a [`Region`] selects: every matching committed
/// event exactly once, in global sequence order. Created by
/// [`Store::cursor_guaranteed`](crate::Store::cursor_guaranteed) or
/// [`Store::named_cursor`](crate::Store::named_cursor).
///
/// The cursor keeps a *position*: the next sequence it will consider. Every
/// matching event below it has been delivered. Polling reads forward through
/// the store's index from there, so a poll costs in proportion to what it
/// returns (plus, for a region not narrowed to one entity or cause, the
/// index entries appended since the previous poll), never to the store's size.
///
/// - [`Cursor::poll_batch`] and the [`Iterator`] impl never block: they
///   return what is committed now (the iterator ends when the cursor has
///   caught up; it yields more if called again after new commits).
/// - [`Cursor::wait_batch`] and [`Cursor::next_timeout`] sleep until the
///   store publishes new events or the timeout passes (no polling loop).
/// - [`Cursor::commit`] records the position as done: durably for a named
///   cursor, in memory for an anonymous one ([`Cursor::rewind_to_committed`]
///   goes back to it).
///
/// The cursor keeps the store's shared state alive but not the [`Store`]
/// handle: closing the store makes waits return [`StoreError::Closed`] once
/// everything committed before the close has been delivered.
///
/// [`Store`]: crate::Store
pub struct Cursor {
    inner: Arc<Inner>,
    region: Region,
    /// The next sequence to consider.
    next: u64,
    /// The position of the last commit.
    committed: u64,
    name: Option<String>,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("name", &self.name)
            .field("region", &self.region)
            .field("position", &self.next)
            .field("committed", &self.committed)
            .finish()
    }
}

impl Cursor {
    pub(crate) fn new(inner: Arc<Inner>, region: Region) -> Cursor {
        Cursor {
            inner,
            region,
            next: 0,
            committed: 0,
            name: None,
        }
    }

    pub(crate) fn named(
        inner: Arc<Inner>,
        name: &str,
        region: Region,
    ) -> Result<Cursor, StoreError> {
        position::validate_name(name)?;
        if inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        if inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        if !inner.feeds.named_open.lock().insert(name.to_string()) {
            return Err(StoreError::InvalidInput {
                reason: format!("named cursor {name:?} is already open on this store"),
            });
        }
        // From here on the registration is released by Drop, even on error.
        let mut cursor = Cursor {
            inner,
            region,
            next: 0,
            committed: 0,
            name: Some(name.to_string()),
        };
        position::ensure_dir(&cursor.inner)?;
        if let Some(stored) = position::load(&cursor.inner, name)? {
            cursor.next = stored;
            cursor.committed = stored;
        }
        tracing::debug!(cursor = name, position = cursor.next, "named cursor opened");
        Ok(cursor)
    }

    /// Starts at `sequence` (inclusive). Also sets the in-memory committed
    /// position; a named cursor's stored position changes at the next commit.
    pub fn from_sequence(mut self, sequence: u64) -> Self {
        self.next = sequence;
        self.committed = sequence;
        self
    }

    /// Starts after `sequence` (exclusive); see [`Cursor::from_sequence`].
    pub fn after(self, sequence: u64) -> Self {
        self.from_sequence(sequence.saturating_add(1))
    }

    /// Starts after everything committed so far: only new events.
    pub fn from_now(self) -> Self {
        let visible = self.inner.visible.load(Ordering::Acquire);
        self.from_sequence(visible)
    }

    /// The next sequence the cursor will consider; every matching event below
    /// it has been delivered.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The position of the last [`Cursor::commit`] (for a named cursor, what
    /// is stored on disk).
    pub fn committed_position(&self) -> u64 {
        self.committed
    }

    /// The cursor's name, if it is a named cursor.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The region the cursor follows.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Records everything delivered so far as done.
    ///
    /// For a named cursor the position is written durably (temporary file,
    /// sync, rename, directory sync) before this returns; after a restart or
    /// crash the cursor resumes here. Because a position must never point past
    /// events that could still be lost, the store is first synced up to the
    /// position if it is not durable yet (relevant with
    /// `with_sync_every_n_events(n > 1)`). For an anonymous cursor the
    /// position is kept in memory only.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        let Some(name) = &self.name else {
            self.committed = self.next;
            return Ok(());
        };
        if self.next == self.committed && position::cursor_path(&self.inner, name).exists() {
            return Ok(());
        }
        if self.inner.durable_next.load(Ordering::Acquire) < self.next {
            self.inner.sync_through(self.next)?;
        }
        position::save(&self.inner, name, self.next)?;
        self.committed = self.next;
        Ok(())
    }

    /// Goes back to the last committed position, so events delivered since
    /// are delivered again (what a restart after a crash would do).
    pub fn rewind_to_committed(&mut self) {
        self.next = self.committed;
    }

    /// Up to `max` (at most 65,536) matching events committed now, in order;
    /// empty if the cursor has caught up. Never blocks.
    ///
    /// If reading an event fails (a corrupt frame), the events before it are
    /// returned and the error is returned by the next call; the cursor does
    /// not move past an event it could not deliver.
    pub fn poll_batch(&mut self, max: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let max = max.clamp(1, BATCH_MAX);
        let mut out: Vec<StoredEvent> = Vec::new();
        loop {
            // Everything below this is visible; a look-up that finds the
            // region exhausted has examined at least this far.
            let visible = self.inner.visible.load(Ordering::Acquire);
            let after = self.next.checked_sub(1);
            let (sequences, resume) =
                self.inner
                    .index
                    .read()
                    .select(&self.region, after, max - out.len(), SCAN_BUDGET);
            for sequence in sequences {
                match self.inner.read_event(sequence) {
                    Ok(Some(event)) => out.push(event),
                    // Cut back after a write failure: not committed after all.
                    Ok(None) => {}
                    Err(error) if out.is_empty() => return Err(error),
                    Err(_) => return Ok(out),
                }
                self.next = sequence + 1;
            }
            match resume {
                Some(resume) => {
                    self.next = self.next.max(resume.saturating_add(1));
                    if out.len() >= max {
                        return Ok(out);
                    }
                }
                None => {
                    self.next = self.next.max(visible);
                    return Ok(out);
                }
            }
        }
    }

    /// Like [`Cursor::poll_batch`], but if nothing is ready, sleeps until the
    /// store publishes new events or `timeout` passes (then returns an empty
    /// batch). Fails with [`StoreError::Closed`] once the store is closed and
    /// everything committed before has been delivered.
    pub fn wait_batch(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.wait_batch_until(max, deadline_after(timeout), None)
    }

    /// The next matching event, sleeping up to `timeout` for one to be
    /// committed (`Ok(None)` on timeout). Fails with [`StoreError::Closed`]
    /// once the store is closed and drained.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self.wait_batch(1, timeout)?.pop())
    }

    /// The waiting poll, optionally cut short by `interrupt` (raised with
    /// `wait::interrupt`).
    pub(crate) fn wait_batch_until(
        &mut self,
        max: usize,
        deadline: Instant,
        interrupt: Option<&AtomicBool>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        loop {
            let known = self.inner.visible.load(Ordering::Acquire);
            let batch = self.poll_batch(max)?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            if self.inner.closed.load(Ordering::Acquire) {
                // Closing publishes nothing new: one more poll drains it all.
                let batch = self.poll_batch(max)?;
                return if batch.is_empty() {
                    Err(StoreError::Closed)
                } else {
                    Ok(batch)
                };
            }
            if !wait::wait_for_more(&self.inner, known, deadline, interrupt) {
                return Ok(Vec::new());
            }
        }
    }
}

/// `now + timeout`, saturating far in the future.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

impl Iterator for Cursor {
    type Item = Result<StoredEvent, StoreError>;

    /// The next matching event committed now; `None` when the cursor has
    /// caught up (not fused: it yields again after new commits). Never blocks.
    fn next(&mut self) -> Option<Self::Item> {
        match self.poll_batch(1) {
            Ok(mut batch) => batch.pop().map(Ok),
            Err(error) => Some(Err(error)),
        }
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            self.inner.feeds.named_open.lock().remove(name);
        }
    }
}
