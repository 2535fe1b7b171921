//! Everything most programs need: `use batpak::prelude::*;`.

pub use crate::coordinate::{Coordinate, CoordinateError};
pub use crate::event::{EventHash, EventHeader, EventId, EventKind, StoredEvent};
pub use crate::feed::{Cursor, CursorWorker, Reactions, Reactor, Subscription, WorkerPolicy};
pub use crate::guard::{gate_fn, Denial, Gate, GateSet, Proposal};
pub use crate::pipeline::{Committed, Pipeline, Receipt};
pub use crate::projection::{
    CacheOutcome, EventSourced, FileCache, Freshness, NoCache, ProjectionCache,
};
pub use crate::region::{EntityFilter, KindFilter, Region};
pub use crate::store::{
    AppendOptions, AppendReceipt, AppendTicket, Batch, BatchItem, Causation, Closed, Compaction,
    IdempotencyKey, RecoveryMode, Store, StoreConfig, StoreError, SyncMode,
};
pub use crate::typed::{EventPayload, TypedError, UpcastError};
pub use crate::typestate::TypestateError;
pub use batpak_derive::EventPayload;
