//! Events: kinds, ids, headers, and what reads return.

mod header;
mod id;
mod kind;

pub use header::{EventHash, EventHeader, StoredEvent};
pub use id::EventId;
pub(crate) use id::IdGenerator;
pub use kind::{EventKind, KindError};
