//! Watching a projection: wait for an entity to change, get its new state.

use std::time::{Duration, Instant};

use super::{fold_after, EventSourced, Position};
use crate::{Store, StoreError};

/// Keeps a projection of one entity current, folding only new events, and
/// waits (without busy polling) for the entity to change.
///
/// ```
/// use batpak::prelude::*;
/// use std::time::Duration;
///
/// #[derive(Debug, Default)]
/// struct Count(u64);
/// impl EventSourced for Count {
///     fn initial() -> Self { Count(0) }
///     fn apply(&mut self, _event: &StoredEvent) { self.0 += 1 }
/// }
///
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(StoreConfig::new(dir.path()))?;
/// let coord = Coordinate::new("counter:1", "app")?;
/// let mut watcher = store.watch::<Count>("counter:1")?;
/// assert!(watcher.wait(Duration::from_millis(10))?.is_none()); // nothing happened
/// store.append(&coord, EventKind::custom(0x1, 1), &())?;
/// assert_eq!(watcher.wait(Duration::from_secs(5))?.map(|count| count.0), Some(1));
/// # store.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ProjectionWatcher<'store, T> {
    store: &'store Store,
    entity: String,
    state: T,
    position: Position,
}

impl<'store, T: EventSourced> ProjectionWatcher<'store, T> {
    pub(super) fn new(store: &'store Store, entity: &str) -> Result<Self, StoreError> {
        let mut state = T::initial();
        let position = fold_after(store, entity, &mut state, Position::default())?.position;
        Ok(ProjectionWatcher {
            store,
            entity: entity.to_string(),
            state,
            position,
        })
    }

    /// The state as of the last fold.
    pub fn state(&self) -> &T {
        &self.state
    }

    /// Where in the entity's stream the state stands.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The state, giving up the watcher.
    pub fn into_state(self) -> T {
        self.state
    }

    /// Folds any events that arrived since the last fold; true if one of
    /// them was relevant (the state may have changed).
    pub fn catch_up(&mut self) -> Result<bool, StoreError> {
        if self.store.entity_clock(&self.entity) <= self.position.clock {
            return Ok(false);
        }
        let folded = fold_after(self.store, &self.entity, &mut self.state, self.position)?;
        self.position = folded.position;
        Ok(folded.events_applied > 0)
    }

    /// Waits up to `timeout` for a relevant event on the entity; returns the
    /// new state, or `None` if nothing relevant arrived in time. Events of
    /// other kinds move the position on without waking the caller.
    pub fn wait(&mut self, timeout: Duration) -> Result<Option<&T>, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            // Read the global position before looking at the entity: an
            // event committed after this read wakes the wait below at once.
            let known_next_sequence = self.store.next_sequence();
            if self.catch_up()? {
                return Ok(Some(&self.state));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.store
                .wait_for_new_events(known_next_sequence, deadline - now);
        }
    }
}
