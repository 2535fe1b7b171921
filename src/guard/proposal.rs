//! A proposed event: what gates inspect before anything is written.

use serde::Serialize;

use crate::typed::EventPayload;
use crate::{AppendOptions, Coordinate, EventKind, StoreError};

/// An event not yet written: coordinate, kind, payload and append options.
///
/// The payload is held as a JSON value so gates can inspect it without
/// knowing its Rust type; it is stored as the same compact JSON any other
/// write path produces.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub(crate) coordinate: Coordinate,
    pub(crate) kind: EventKind,
    pub(crate) payload: serde_json::Value,
    pub(crate) options: AppendOptions,
    /// Set for typed proposals: the schema version `with_options` must keep.
    typed_version: Option<u16>,
}

impl Proposal {
    /// Proposes an event of `kind` with `payload`.
    pub fn new(
        coordinate: &Coordinate,
        kind: EventKind,
        payload: &impl Serialize,
    ) -> Result<Self, StoreError> {
        let payload =
            serde_json::to_value(payload).map_err(|source| StoreError::Serialization {
                direction: "encoding",
                source,
            })?;
        Ok(Proposal {
            coordinate: coordinate.clone(),
            kind,
            payload,
            options: AppendOptions::default(),
            typed_version: None,
        })
    }

    /// Proposes a typed event: kind and schema version come from `T`.
    pub fn typed<T: EventPayload>(coordinate: &Coordinate, value: &T) -> Result<Self, StoreError> {
        let mut proposal = Proposal::new(coordinate, T::KIND, value)?;
        proposal.options = proposal.options.schema_version(T::SCHEMA_VERSION);
        proposal.typed_version = Some(T::SCHEMA_VERSION);
        Ok(proposal)
    }

    /// Sets the options the event will be appended with (concurrency,
    /// idempotency, causal metadata, flags, schema version, durability).
    /// A typed proposal keeps its type's schema version.
    pub fn with_options(mut self, options: AppendOptions) -> Self {
        self.options = match self.typed_version {
            Some(version) => options.schema_version(version),
            None => options,
        };
        self
    }

    /// Where the event would be written.
    pub fn coordinate(&self) -> &Coordinate {
        &self.coordinate
    }

    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The event's payload.
    pub fn payload(&self) -> &serde_json::Value {
        &self.payload
    }

    /// The options the event would be appended with.
    pub fn options(&self) -> &AppendOptions {
        &self.options
    }
}
