//! Pipelines: evaluate a [`Proposal`] against a [`GateSet`], hand back a
//! single-use [`Receipt`], and commit it through the store.
//!
//! A [`Receipt`] is proof that the gates passed: it has no public
//! constructor, cannot be cloned, and is consumed by [`Receipt::commit`], so
//! a gated event is written at most once and only after its gates passed.
//! [`Pipeline::bypass`] writes an event without gates, atomically together
//! with a record of who bypassed what and why.
//!
//! ```
//! use batpak::prelude::*;
//! # let dir = tempfile::tempdir()?;
//! let store = Store::open(StoreConfig::new(dir.path()))?;
//! let pipeline = Pipeline::new(GateSet::fail_fast().with(gate_fn(
//!     "small-amounts",
//!     |limit: &u64, proposal: &Proposal| match proposal.payload()["amount"].as_u64() {
//!         Some(amount) if amount <= *limit => Ok(()),
//!         _ => Err(format!("over the limit of {limit}")),
//!     },
//! )));
//! let account = Coordinate::new("account:1", "bank")?;
//! let withdraw = EventKind::custom(0x1, 2);
//!
//! let proposal = Proposal::new(&account, withdraw, &serde_json::json!({"amount": 50}))?;
//! let committed = pipeline.evaluate(&100, proposal)?.commit(&store)?;
//! assert_eq!(committed.receipt.clock, 1);
//!
//! let too_big = Proposal::new(&account, withdraw, &serde_json::json!({"amount": 500}))?;
//! let denial = pipeline.evaluate(&100, too_big).unwrap_err();
//! assert_eq!(denial.gate(), "small-amounts");
//! # store.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::Serialize;

use crate::guard::{Denial, GateSet, Proposal};
use crate::{AppendReceipt, Batch, BatchItem, Causation, Coordinate, EventKind, Store, StoreError};

/// The reserved kind of a bypass record (system category 0x0, type 0x001).
pub const BYPASS_KIND: EventKind = EventKind::custom(EventKind::SYSTEM_CATEGORY, 0x001);

/// The entity bypass records are written to (in the bypassed event's scope),
/// so that recording a bypass never moves the bypassed entity's clock.
pub const BYPASS_ENTITY: &str = "batpak:bypass";

/// Gates plus the way to commit what they allow.
#[derive(Debug)]
pub struct Pipeline<Ctx: ?Sized> {
    gates: GateSet<Ctx>,
}

/// Single-use proof that a [`Proposal`] passed a [`Pipeline`]'s gates.
///
/// There is no public constructor and no `Clone`: the only way to get one is
/// [`Pipeline::evaluate`], and [`Receipt::commit`] consumes it.
#[derive(Debug)]
#[must_use = "a receipt does nothing until it is committed"]
pub struct Receipt {
    proposal: Proposal,
    gates_passed: Vec<String>,
}

/// What a commit wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Where the event was written.
    pub coordinate: Coordinate,
    /// Its kind.
    pub kind: EventKind,
    /// The store's receipt: event id, sequence, clock and hash as stored.
    pub receipt: AppendReceipt,
    /// The gates the event passed, in order (empty for a bypass).
    pub gates_passed: Vec<String>,
    /// For a bypass: the receipt of the bypass record written with the event.
    pub bypass_record: Option<AppendReceipt>,
}

/// The payload of a bypass record ([`BYPASS_KIND`]). Its `causation_id` is
/// the bypassed event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BypassRecord {
    /// Why the gates were bypassed.
    pub reason: String,
    /// The bypassed event's entity.
    pub entity: String,
    /// The bypassed event's scope.
    pub scope: String,
    /// The bypassed event's kind.
    pub kind: EventKind,
    /// The gates that were skipped.
    pub gates_skipped: Vec<String>,
}

impl<Ctx: ?Sized> Pipeline<Ctx> {
    /// A pipeline guarded by `gates`.
    pub fn new(gates: GateSet<Ctx>) -> Self {
        Pipeline { gates }
    }

    /// The pipeline's gates.
    pub fn gates(&self) -> &GateSet<Ctx> {
        &self.gates
    }

    /// Runs the gates over `proposal`; on success returns the receipt that
    /// commits it.
    pub fn evaluate(&self, context: &Ctx, proposal: Proposal) -> Result<Receipt, Denial> {
        self.gates.evaluate(context, &proposal)?;
        Ok(Receipt {
            proposal,
            gates_passed: self.gates.names().map(str::to_string).collect(),
        })
    }

    /// Commits `proposal` without evaluating the gates, recording why.
    ///
    /// One atomic batch writes the event and a [`BypassRecord`] of kind
    /// [`BYPASS_KIND`] on entity [`BYPASS_ENTITY`] (same scope), caused by the
    /// event: either both are in the log or neither is. The reason must not
    /// be empty. The proposal's options apply to the event (its idempotency
    /// key and durability to the whole batch).
    pub fn bypass(
        &self,
        store: &Store,
        proposal: Proposal,
        reason: &str,
    ) -> Result<Committed, StoreError> {
        if reason.trim().is_empty() {
            return Err(StoreError::InvalidInput {
                reason: "a bypass needs a reason".to_string(),
            });
        }
        let Proposal {
            coordinate,
            kind,
            payload,
            options,
            ..
        } = proposal;
        let mut item = BatchItem::new(&coordinate, kind, &payload)?
            .flags(options.flags)
            .schema_version(options.schema_version);
        if let Some(clock) = options.expect_clock {
            item = item.expect_clock(clock);
        }
        if let Some(id) = options.correlation_id {
            item = item.correlation_id(id);
        }
        if let Some(id) = options.causation_id {
            item = item.caused_by(Causation::Event(id));
        }
        let record = BypassRecord {
            reason: reason.to_string(),
            entity: coordinate.entity().to_string(),
            scope: coordinate.scope().to_string(),
            kind,
            gates_skipped: self.gates.names().map(str::to_string).collect(),
        };
        let record_coordinate = Coordinate::new(BYPASS_ENTITY, coordinate.scope())?;

        let mut batch = Batch::new();
        if let Some(key) = options.idempotency_key {
            batch = batch.idempotency_key(key);
        }
        if options.durable {
            batch = batch.durable();
        }
        let event_index = batch.push(item);
        batch.push(
            BatchItem::new(&record_coordinate, BYPASS_KIND, &record)?.caused_by_item(event_index),
        );
        let receipts = store.append_batch_internal(&batch, true)?;
        let (event, record) = match receipts.as_slice() {
            [event, record] => (*event, *record),
            other => {
                return Err(StoreError::InvalidInput {
                    reason: format!("bypass batch returned {} receipts, expected 2", other.len()),
                })
            }
        };
        tracing::warn!(
            entity = coordinate.entity(),
            kind = %kind,
            event_id = %event.event_id,
            reason,
            "gates bypassed"
        );
        Ok(Committed {
            coordinate,
            kind,
            receipt: event,
            gates_passed: Vec::new(),
            bypass_record: Some(record),
        })
    }
}

impl Receipt {
    /// The proposal the gates passed.
    pub fn proposal(&self) -> &Proposal {
        &self.proposal
    }

    /// The gates that passed, in order.
    pub fn gates_passed(&self) -> &[String] {
        &self.gates_passed
    }

    /// Appends the event through `store` and returns what was committed,
    /// with the real sequence, clock and hash. Consumes the receipt.
    pub fn commit(self, store: &Store) -> Result<Committed, StoreError> {
        let Receipt {
            proposal,
            gates_passed,
        } = self;
        let receipt = store.append_with_options(
            &proposal.coordinate,
            proposal.kind,
            &proposal.payload,
            proposal.options,
        )?;
        Ok(Committed {
            coordinate: proposal.coordinate,
            kind: proposal.kind,
            receipt,
            gates_passed,
            bypass_record: None,
        })
    }
}
