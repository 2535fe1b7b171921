//! # batpak
//!
//! An embedded, sync-first event store: an append-only, crash-safe log of
//! immutable events with causal metadata and per-entity hash chains, in one
//! process, with no server and no async runtime.
//!
//! ```
//! use batpak::prelude::*;
//! # let dir = tempfile::tempdir()?;
//! let store = Store::open(StoreConfig::new(dir.path()))?;
//! let coord = Coordinate::new("player:alice", "room:dungeon")?;
//! let receipt = store.append(&coord, EventKind::custom(0xF, 1), &serde_json::json!({"x": 10}))?;
//! let event = store.get(receipt.event_id)?.expect("just written");
//! assert_eq!(event.payload["x"], 10);
//! store.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Start with [`Store::open`], [`Store::append`] and [`Store::query`]; the
//! guide in the repository explains durability, batches, integrity and the
//! rest.

#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod coordinate;
pub mod event;
#[cfg(feature = "dangerous-test-hooks")]
pub mod fault;
pub mod feed;
pub mod guard;
pub mod pipeline;
pub mod prelude;
pub mod projection;
pub mod region;
pub mod store;
pub mod typed;
pub mod typestate;

pub use batpak_derive::EventPayload;
pub use coordinate::{Coordinate, CoordinateError};
pub use event::{EventHash, EventHeader, EventId, EventKind, KindError, StoredEvent};
pub use feed::{Cursor, CursorWorker, Reactor, Subscription};
pub use guard::{gate_fn, Denial, Gate, GateSet, Proposal};
pub use pipeline::{Committed, Pipeline, Receipt};
pub use projection::{CacheOutcome, EventSourced, FileCache, Freshness, NoCache, ProjectionCache};
pub use region::{EntityFilter, KindFilter, Region};
pub use store::{
    AppendOptions, AppendReceipt, AppendTicket, Batch, BatchItem, Causation, Closed, Compaction,
    CompactionProgress, CompactionReport, IdempotencyKey, RecoveryMode, Store, StoreConfig,
    StoreError, SyncMode,
};
pub use typed::{EventPayload, TypedError, UpcastError};
pub use typestate::TypestateError;

/// The README's quickstart (SPEC §1, verbatim), compiled and run as a
/// doctest. It writes `./batpak-data` in the package directory (gitignored).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

/// The guide's chapters, compiled and run as doctests so every example in
/// them stays true.
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../guide/src/typed-events.md")]
    mod typed_events {}
    #[doc = include_str!("../guide/src/projections.md")]
    mod projections {}
    #[doc = include_str!("../guide/src/gates.md")]
    mod gates {}
    #[doc = include_str!("../guide/src/typestate.md")]
    mod typestate {}
    #[doc = include_str!("../guide/src/introduction.md")]
    mod introduction {}
    #[doc = include_str!("../guide/src/quickstart.md")]
    mod quickstart {}
    #[doc = include_str!("../guide/src/appending-and-durability.md")]
    mod appending_and_durability {}
    #[doc = include_str!("../guide/src/batches.md")]
    mod batches {}
    #[doc = include_str!("../guide/src/concurrency-and-idempotency.md")]
    mod concurrency_and_idempotency {}
    #[doc = include_str!("../guide/src/reading-and-regions.md")]
    mod reading_and_regions {}
    #[doc = include_str!("../guide/src/integrity.md")]
    mod integrity {}
    #[doc = include_str!("../guide/src/tuning.md")]
    mod tuning {}
    #[doc = include_str!("../guide/src/migrating.md")]
    mod migrating {}
    #[doc = include_str!("../guide/src/subscriptions.md")]
    mod subscriptions {}
    #[doc = include_str!("../guide/src/operations.md")]
    mod operations {}
    #[cfg(feature = "dangerous-test-hooks")]
    #[doc = include_str!("../guide/src/testing.md")]
    mod testing {}
}
