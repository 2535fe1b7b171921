//! Live feeds: what a program sees of events as they are committed.
//!
//! Two kinds of feed, for two kinds of consumer:
//!
//! - [`Subscription`] ([`Store::subscribe_lossy`]): a push feed with a
//!   bounded buffer, for consumers that want to *react quickly* and can
//!   tolerate missing a notification (a UI, a cache invalidation, a metric).
//!   Events are filtered by region before they are buffered, so unrelated
//!   traffic never crowds out matching events; a subscriber that falls behind
//!   loses notifications and [`Subscription::dropped`] says how many.
//! - [`Cursor`] ([`Store::cursor_guaranteed`]): a pull feed that delivers
//!   every matching committed event exactly once, in global order, from any
//!   start position. Named cursors ([`Store::named_cursor`]) keep their
//!   position durably in `<store dir>/cursors/<name>` for at-least-once
//!   consumers that restart.
//!
//! On top of cursors: [`CursorWorker`], a supervised thread that runs a
//! handler over batches and restarts it by policy, and [`Reactor`], which
//! turns events into follow-up events with correlation and causation set to
//! the trigger.
//!
//! Both feeds only ever see *committed* events: an event becomes visible
//! after its acknowledgement (after its sync when it is durable), and an
//! atomic batch becomes visible all at once.

mod cursor;
mod position;
mod reactor;
mod subscription;
mod wait;
mod worker;

pub use cursor::Cursor;
pub use position::{CURSOR_DIR, CURSOR_NAME_MAX_BYTES};
pub use reactor::{Reactions, Reactor};
pub use subscription::{
    FeedRecvError, Subscription, SubscriptionIter, SUBSCRIPTION_CAPACITY_DEFAULT,
    SUBSCRIPTION_CAPACITY_MAX,
};
pub use worker::{CursorWorker, HandlerError, WorkerExit, WorkerPolicy, WorkerReport};

use std::collections::BTreeSet;

use parking_lot::Mutex;

use crate::{Region, Store, StoreError};

/// Per-store state of the feeds, kept in the store's shared state.
#[derive(Debug, Default)]
pub(crate) struct FeedState {
    /// Lossy subscribers and whether the dispatcher thread runs.
    pub(crate) dispatch: Mutex<subscription::DispatchState>,
    /// Names of the named cursors open on this store (one handle per name).
    pub(crate) named_open: Mutex<BTreeSet<String>>,
}

impl Store {
    /// A live, lossy feed of the committed events `region` selects, with a
    /// buffer of [`SUBSCRIPTION_CAPACITY_DEFAULT`] notifications.
    ///
    /// The feed starts with the events committed after this call. Each
    /// notification is the whole [`StoredEvent`](crate::StoredEvent)
    /// (coordinate, header, payload), so a consumer rarely needs a second
    /// read. When the subscriber falls behind and its buffer is full, newer
    /// notifications are dropped and counted ([`Subscription::dropped`]); use
    /// a [`Cursor`] when every event matters. No part of an atomic batch is
    /// offered before the whole batch is committed, but when the buffer
    /// overflows in the middle of a batch, its later events are among the
    /// dropped ones (a cursor always delivers whole batches). The feed ends (iteration stops,
    /// [`Subscription::recv`] returns `None`) once the store is closed and
    /// the buffer is drained.
    ///
    /// ```
    /// use batpak::prelude::*;
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(StoreConfig::new(dir.path()))?;
    /// let alerts = store.subscribe_lossy(&Region::entity_prefix("sensor:"));
    /// let sensor = Coordinate::new("sensor:7", "plant")?;
    /// store.append(&sensor, EventKind::custom(0xA, 1), &serde_json::json!({"celsius": 91}))?;
    /// let event = alerts.recv_timeout(std::time::Duration::from_secs(5))?;
    /// assert_eq!(event.coordinate.entity(), "sensor:7");
    /// assert_eq!(event.payload["celsius"], 91);
    /// store.close()?;
    /// assert!(alerts.recv().is_none(), "the feed ends with the store");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe_lossy(&self, region: &Region) -> Subscription {
        self.subscribe_lossy_with_capacity(region, SUBSCRIPTION_CAPACITY_DEFAULT)
    }

    /// [`Store::subscribe_lossy`] with a buffer of `capacity` notifications
    /// (clamped to `1..=`[`SUBSCRIPTION_CAPACITY_MAX`]).
    pub fn subscribe_lossy_with_capacity(&self, region: &Region, capacity: usize) -> Subscription {
        subscription::subscribe(self.inner(), region, capacity)
    }

    /// A pull feed of every committed event `region` selects, exactly once
    /// and in global sequence order, starting at the beginning of the store
    /// (see [`Cursor::from_sequence`], [`Cursor::after`] and
    /// [`Cursor::from_now`] for other starts).
    ///
    /// ```
    /// use batpak::prelude::*;
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(StoreConfig::new(dir.path()))?;
    /// let cart = Coordinate::new("cart:1", "shop")?;
    /// for item in ["apple", "pear", "fig"] {
    ///     store.append(&cart, EventKind::custom(1, 1), &item)?;
    /// }
    /// let mut cursor = store.cursor_guaranteed(&Region::entity("cart:1"));
    /// let batch = cursor.poll_batch(10)?;
    /// let items: Vec<_> = batch.iter().map(|e| e.payload.as_str().unwrap_or("")).collect();
    /// assert_eq!(items, ["apple", "pear", "fig"]);
    /// assert!(cursor.poll_batch(10)?.is_empty(), "each event is delivered once");
    /// # store.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cursor_guaranteed(&self, region: &Region) -> Cursor {
        Cursor::new(self.inner().clone(), region.clone())
    }

    /// A guaranteed cursor whose position is kept durably under `name`
    /// (file `<store dir>/cursors/<name>`), for at-least-once consumers that
    /// restart: it resumes at the last [`Cursor::commit`]ted position, or at
    /// the beginning of the store if it never committed. Events delivered
    /// after the last commit are delivered again after a restart or crash.
    ///
    /// Names are 1 to [`CURSOR_NAME_MAX_BYTES`] bytes of ASCII letters,
    /// digits, `-`, `_` and `.`, starting with a letter or digit. One handle
    /// per name may be open at a time.
    ///
    /// Errors: [`StoreError::InvalidInput`] for a bad or already open name,
    /// [`StoreError::ReadOnly`] on a read-only store (it never writes to the
    /// directory), [`StoreError::Corrupt`] / [`StoreError::ForeignFile`] if
    /// the position file fails its checksum or is not a cursor file. A damaged
    /// position is never silently reset: delete it with
    /// [`Store::remove_named_cursor`] to start over deliberately.
    ///
    /// ```
    /// use batpak::prelude::*;
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(StoreConfig::new(dir.path()))?;
    /// let log = Coordinate::new("audit", "ops")?;
    /// store.append(&log, EventKind::custom(2, 1), &"first")?;
    /// store.append(&log, EventKind::custom(2, 1), &"second")?;
    /// {
    ///     let mut cursor = store.named_cursor("mailer", &Region::all())?;
    ///     let first = cursor.poll_batch(1)?;
    ///     assert_eq!(first[0].payload, "first");
    ///     cursor.commit()?; // "first" is done, durably
    /// }
    /// let mut cursor = store.named_cursor("mailer", &Region::all())?;
    /// assert_eq!(cursor.poll_batch(10)?[0].payload, "second");
    /// # drop(cursor);
    /// # store.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn named_cursor(&self, name: &str, region: &Region) -> Result<Cursor, StoreError> {
        Cursor::named(self.inner().clone(), name, region.clone())
    }

    /// Deletes the stored position of the named cursor `name` (a no-op if it
    /// has none), so the next [`Store::named_cursor`] starts at the
    /// beginning. Fails with [`StoreError::InvalidInput`] while a handle with
    /// that name is open.
    pub fn remove_named_cursor(&self, name: &str) -> Result<(), StoreError> {
        position::remove(self.inner(), name)
    }

    /// The names of the named cursors that have a stored position, in name order.
    pub fn named_cursors(&self) -> Result<Vec<String>, StoreError> {
        position::list(self.inner())
    }
}
