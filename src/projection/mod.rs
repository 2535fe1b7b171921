//! Projections: state folded from one entity's events.
//!
//! A type implements [`EventSourced`] (an initial state, how one event
//! changes it, which kinds it cares about, a schema version).
//! [`Store::project`] folds it from the entity's events as they are read
//! (never collecting them first); it sees exactly what
//! [`Store::stream`] returns. [`Store::project_with`] does the same through a
//! [`ProjectionCache`]: [`NoCache`] (the default behaviour of `project`) or
//! the file-backed [`FileCache`], which keeps one checksummed entry per
//! projection type and entity and, when only new events arrived, folds just
//! those onto the cached state. [`Store::watch`] waits for an entity to
//! change and yields the new state.
//!
//! ```
//! use batpak::prelude::*;
//!
//! #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
//! struct Balance { cents: i64 }
//!
//! const DEPOSITED: EventKind = EventKind::custom(0x1, 1);
//! const WITHDRAWN: EventKind = EventKind::custom(0x1, 2);
//!
//! impl EventSourced for Balance {
//!     const RELEVANT_KINDS: &'static [EventKind] = &[DEPOSITED, WITHDRAWN];
//!     fn initial() -> Self { Balance::default() }
//!     fn apply(&mut self, event: &StoredEvent) {
//!         let cents = event.payload["cents"].as_i64().unwrap_or(0);
//!         if event.kind() == DEPOSITED { self.cents += cents } else { self.cents -= cents }
//!     }
//! }
//!
//! # let dir = tempfile::tempdir()?;
//! let store = Store::open(StoreConfig::new(dir.path()))?;
//! let account = Coordinate::new("account:1", "bank")?;
//! store.append(&account, DEPOSITED, &serde_json::json!({"cents": 700}))?;
//! store.append(&account, WITHDRAWN, &serde_json::json!({"cents": 200}))?;
//!
//! let balance: Balance = store.project("account:1", Freshness::Consistent)?;
//! assert_eq!(balance.cents, 500);
//!
//! let cache = FileCache::for_store(&store)?;
//! let first = store.project_with::<Balance, _>(&cache, "account:1", Freshness::Consistent)?;
//! assert_eq!(first.outcome, CacheOutcome::Miss);
//! let again = store.project_with::<Balance, _>(&cache, "account:1", Freshness::Consistent)?;
//! assert_eq!(again.outcome, CacheOutcome::Hit);
//! assert_eq!(again.state.cents, 500);
//! # store.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cache;
mod watch;

pub use cache::{
    CacheEntry, CacheError, CacheKey, CacheLookup, FileCache, NoCache, ProjectionCache,
};
pub use watch::ProjectionWatcher;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{EventId, EventKind, Region, Store, StoreError, StoredEvent};

/// A state folded from one entity's events.
pub trait EventSourced: Sized {
    /// The kinds [`EventSourced::apply`] is called for; empty means every
    /// kind. Part of the cache key.
    const RELEVANT_KINDS: &'static [EventKind] = &[];

    /// The version of the folded state's shape and meaning. Bump it when
    /// `apply` or the state changes, so cached states of the old version are
    /// not used. Part of the cache key.
    const SCHEMA_VERSION: u16 = 0;

    /// The state of an entity with no (relevant) events.
    fn initial() -> Self;

    /// Folds one event into the state. Called in clock order, only for
    /// [`EventSourced::RELEVANT_KINDS`].
    fn apply(&mut self, event: &StoredEvent);

    /// The name the cache key is built from. Defaults to
    /// [`std::any::type_name`], which is stable across rebuilds of the same
    /// program but changes if the type moves or is renamed; override it to
    /// keep cached states across such refactors.
    fn projection_name() -> &'static str {
        std::any::type_name::<Self>()
    }

    /// True if `kind` is one of [`EventSourced::RELEVANT_KINDS`].
    fn is_relevant(kind: EventKind) -> bool {
        Self::RELEVANT_KINDS.is_empty() || Self::RELEVANT_KINDS.contains(&kind)
    }
}

/// How current a projection must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Freshness {
    /// Reflects every event of the entity committed before the call.
    #[default]
    Consistent,
    /// A cached state written at most `max_age` ago may be returned without
    /// looking at the log, even if events arrived since. Without a cache
    /// entry that young, behaves like [`Freshness::Consistent`].
    MaybeStale {
        /// How old a cached state may be.
        max_age: Duration,
    },
}

/// Where in the entity's stream a folded state stands: the last event folded
/// over (relevant or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// The entity's clock at that event (0 = no events).
    pub clock: u64,
    /// The event's global sequence.
    pub sequence: Option<u64>,
    /// The event's id.
    pub event_id: Option<EventId>,
}

/// How [`Store::project_with`] produced its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The cache holds nothing (for example [`NoCache`]); folded from the log.
    Miss,
    /// The cached state was current; no event was read.
    Hit,
    /// A [`Freshness::MaybeStale`] request was served from a young enough
    /// entry without checking the log.
    Unchecked,
    /// The cached state was behind; only the newer events were folded onto it.
    Incremental {
        /// Events read past the cached position.
        events_read: u64,
    },
    /// The entry failed its checksum or format checks; rebuilt from the log.
    Corrupt,
    /// The entry did not match the log (for example it was ahead of it, or
    /// its last event is not in the log); rebuilt from the log.
    Invalidated,
}

/// A projected state and how it was produced.
#[derive(Debug)]
pub struct Projected<T> {
    /// The state.
    pub state: T,
    /// Where in the entity's stream the state stands.
    pub position: Position,
    /// Cache hit, miss, incremental update or rebuild.
    pub outcome: CacheOutcome,
    /// Set if writing the updated entry to the cache failed. The state is
    /// still correct; a cache never makes a projection fail.
    pub cache_error: Option<CacheError>,
}

/// What one fold did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Folded {
    /// The last event read.
    pub(crate) position: Position,
    /// Events read (relevant or not).
    pub(crate) events_read: u64,
    /// Events passed to [`EventSourced::apply`].
    pub(crate) events_applied: u64,
}

/// Folds the events of `entity` after `from` onto `state`, reading them lazily.
pub(crate) fn fold_after<T: EventSourced>(
    store: &Store,
    entity: &str,
    state: &mut T,
    from: Position,
) -> Result<Folded, StoreError> {
    let events = if from.clock == 0 {
        store.stream(entity)
    } else {
        store.query(&Region::entity(entity).with_clock_range(from.clock + 1..))
    };
    let mut position = from;
    let mut events_read = 0;
    let mut events_applied = 0;
    for event in events {
        let event = event?;
        if event.header.clock <= position.clock {
            // Defensive: never fold an event twice.
            continue;
        }
        if T::is_relevant(event.header.kind) {
            state.apply(&event);
            events_applied += 1;
        }
        position = Position {
            clock: event.header.clock,
            sequence: Some(event.header.sequence),
            event_id: Some(event.header.event_id),
        };
        events_read += 1;
    }
    Ok(Folded {
        position,
        events_read,
        events_applied,
    })
}

impl Store {
    /// Folds `T` from `entity`'s events, reading them as it folds. Uses no
    /// cache, so every [`Freshness`] gets a consistent state.
    pub fn project<T: EventSourced>(
        &self,
        entity: &str,
        freshness: Freshness,
    ) -> Result<T, StoreError> {
        let _ = freshness;
        let mut state = T::initial();
        fold_after(self, entity, &mut state, Position::default())?;
        Ok(state)
    }

    /// Folds `T` from `entity`'s events through `cache`: a current entry is
    /// returned as is, a behind one is brought up to date with only the
    /// newer events, a corrupt or mismatched one is rebuilt from the log.
    /// The updated state is written back to the cache.
    pub fn project_with<T, C>(
        &self,
        cache: &C,
        entity: &str,
        freshness: Freshness,
    ) -> Result<Projected<T>, StoreError>
    where
        T: EventSourced + Serialize + DeserializeOwned,
        C: ProjectionCache + ?Sized,
    {
        let key = CacheKey::of::<T>();
        let (start, outcome_if_rebuilt) = match cache.load(&key, entity) {
            CacheLookup::Missing => (None, CacheOutcome::Miss),
            CacheLookup::Corrupt { reason } => {
                tracing::warn!(
                    key = key.as_str(),
                    entity,
                    reason,
                    "corrupt projection cache entry"
                );
                (None, CacheOutcome::Corrupt)
            }
            CacheLookup::Found(entry) => match serde_json::from_slice::<T>(&entry.state) {
                Ok(state) => (Some((state, entry)), CacheOutcome::Invalidated),
                Err(error) => {
                    tracing::warn!(key = key.as_str(), entity, %error, "cached projection state does not decode");
                    (None, CacheOutcome::Corrupt)
                }
            },
        };

        if let Some((mut state, entry)) = start {
            if let Freshness::MaybeStale { max_age } = freshness {
                if entry.age() <= max_age {
                    return Ok(Projected {
                        state,
                        position: entry.position,
                        outcome: CacheOutcome::Unchecked,
                        cache_error: None,
                    });
                }
            }
            if self.entry_matches_log(entity, &entry.position)? {
                if self.entity_clock(entity) == entry.position.clock {
                    return Ok(Projected {
                        state,
                        position: entry.position,
                        outcome: CacheOutcome::Hit,
                        cache_error: None,
                    });
                }
                let Folded {
                    position,
                    events_read,
                    ..
                } = fold_after(self, entity, &mut state, entry.position)?;
                if events_read == 0 {
                    return Ok(Projected {
                        state,
                        position,
                        outcome: CacheOutcome::Hit,
                        cache_error: None,
                    });
                }
                let cache_error = write_entry(cache, &key, entity, &state, position);
                return Ok(Projected {
                    state,
                    position,
                    outcome: CacheOutcome::Incremental { events_read },
                    cache_error,
                });
            }
        }

        let mut state = T::initial();
        let position = fold_after(self, entity, &mut state, Position::default())?.position;
        let cache_error = write_entry(cache, &key, entity, &state, position);
        Ok(Projected {
            state,
            position,
            outcome: outcome_if_rebuilt,
            cache_error,
        })
    }

    /// Waits for `entity` to change and yields its new state (see
    /// [`ProjectionWatcher`]). Folds the current state first.
    pub fn watch<T: EventSourced>(
        &self,
        entity: &str,
    ) -> Result<ProjectionWatcher<'_, T>, StoreError> {
        ProjectionWatcher::new(self, entity)
    }

    /// True if the event a cache entry was folded up to is still in the log
    /// at the same place, so folding on from it is sound. Guards against a
    /// log that was cut back (an unsynced tail lost in a crash) and then grew
    /// again to the same clock with different events.
    fn entry_matches_log(&self, entity: &str, position: &Position) -> Result<bool, StoreError> {
        if position.clock > self.entity_clock(entity) {
            return Ok(false);
        }
        match (position.sequence, position.event_id) {
            (None, None) => Ok(position.clock == 0),
            (Some(sequence), Some(event_id)) => {
                Ok(self.get_by_sequence(sequence)?.is_some_and(|event| {
                    event.header.event_id == event_id
                        && event.header.clock == position.clock
                        && event.coordinate.entity() == entity
                }))
            }
            _ => Ok(false),
        }
    }
}

fn write_entry<T: Serialize, C: ProjectionCache + ?Sized>(
    cache: &C,
    key: &CacheKey,
    entity: &str,
    state: &T,
    position: Position,
) -> Option<CacheError> {
    let result = serde_json::to_vec(state)
        .map_err(CacheError::Encode)
        .and_then(|state| cache.store(key, entity, &CacheEntry::now(position, state)));
    match result {
        Ok(()) => None,
        Err(error) => {
            tracing::warn!(key = key.as_str(), entity, %error, "projection cache write failed");
            Some(error)
        }
    }
}
