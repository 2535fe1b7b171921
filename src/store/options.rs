//! What callers pass to the write path, and what it hands back.

use serde::{Deserialize, Serialize};

use crate::{Coordinate, EventHash, EventId, EventKind, StoreError};

/// Longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 255;

/// A caller-chosen key that makes an append safe to retry: a second append
/// with the same key returns the original receipt and writes nothing. Keys are
/// stored in the log, so they survive restart. At most
/// [`IDEMPOTENCY_KEY_MAX_BYTES`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(Box<[u8]>);

impl IdempotencyKey {
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.0.is_empty() || self.0.len() > IDEMPOTENCY_KEY_MAX_BYTES {
            return Err(StoreError::InvalidInput {
                reason: format!(
                    "idempotency key is {} bytes; it must be 1..={IDEMPOTENCY_KEY_MAX_BYTES}",
                    self.0.len()
                ),
            });
        }
        Ok(())
    }
}

impl From<&str> for IdempotencyKey {
    fn from(value: &str) -> Self {
        IdempotencyKey(value.as_bytes().into())
    }
}

impl From<String> for IdempotencyKey {
    fn from(value: String) -> Self {
        IdempotencyKey(value.into_bytes().into_boxed_slice())
    }
}

impl From<&String> for IdempotencyKey {
    fn from(value: &String) -> Self {
        IdempotencyKey(value.as_bytes().into())
    }
}

impl From<&[u8]> for IdempotencyKey {
    fn from(value: &[u8]) -> Self {
        IdempotencyKey(value.into())
    }
}

impl From<Vec<u8>> for IdempotencyKey {
    fn from(value: Vec<u8>) -> Self {
        IdempotencyKey(value.into_boxed_slice())
    }
}

impl From<u128> for IdempotencyKey {
    fn from(value: u128) -> Self {
        IdempotencyKey(value.to_be_bytes().as_slice().into())
    }
}

impl From<uuid::Uuid> for IdempotencyKey {
    fn from(value: uuid::Uuid) -> Self {
        IdempotencyKey(value.as_bytes().as_slice().into())
    }
}

/// Options of one append: concurrency control, idempotency, causal metadata,
/// flags and durability.
#[derive(Debug, Clone, Default)]
pub struct AppendOptions {
    pub(crate) expect_clock: Option<u64>,
    pub(crate) idempotency_key: Option<IdempotencyKey>,
    pub(crate) correlation_id: Option<EventId>,
    pub(crate) causation_id: Option<EventId>,
    pub(crate) flags: u16,
    pub(crate) schema_version: u16,
    pub(crate) durable: bool,
}

impl AppendOptions {
    /// No expectations, no key, the store's sync cadence.
    pub fn new() -> Self {
        Self::default()
    }

    /// Optimistic concurrency: the entity's clock must be `clock` (0 = the
    /// entity has no events yet), else the append fails with
    /// [`StoreError::ClockMismatch`] and writes nothing.
    pub fn expect_clock(mut self, clock: u64) -> Self {
        self.expect_clock = Some(clock);
        self
    }

    /// Makes the append safe to retry: a later append with the same key
    /// returns the original receipt and writes nothing.
    pub fn idempotency_key(mut self, key: impl Into<IdempotencyKey>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// The conversation this event belongs to (default: the event's own id).
    pub fn correlation_id(mut self, id: EventId) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// The event that caused this one.
    pub fn causation_id(mut self, id: EventId) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Application-defined flags, stored verbatim in the header.
    pub fn flags(mut self, flags: u16) -> Self {
        self.flags = flags;
        self
    }

    /// Schema version of the payload, stored in the header (default 0).
    pub fn schema_version(mut self, version: u16) -> Self {
        self.schema_version = version;
        self
    }

    /// Return only once this event is on stable storage, whatever the
    /// store's sync cadence.
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }
}

/// Proof that an append was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppendReceipt {
    /// The new event's id.
    pub event_id: EventId,
    /// Its global position: gapless, starts at 0, never changes.
    pub sequence: u64,
    /// The entity's clock after this event (its first event has clock 1).
    pub clock: u64,
    /// The event's hash-chain link (`None` without the `blake3` feature).
    pub hash: Option<EventHash>,
}

/// How a batch item names its cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Causation {
    /// An event already in the store.
    Event(EventId),
    /// An earlier item of the same batch, by position.
    Item(usize),
}

/// One event of an atomic [`Batch`].
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub(crate) coordinate: Coordinate,
    pub(crate) kind: EventKind,
    pub(crate) payload: Vec<u8>,
    pub(crate) expect_clock: Option<u64>,
    pub(crate) correlation_id: Option<EventId>,
    pub(crate) causation: Option<Causation>,
    pub(crate) flags: u16,
    pub(crate) schema_version: u16,
}

impl BatchItem {
    /// An item with its payload serialized now. Fails only if the payload
    /// cannot be serialized; limits are checked when the batch is appended.
    pub fn new(
        coordinate: &Coordinate,
        kind: EventKind,
        payload: &impl Serialize,
    ) -> Result<Self, StoreError> {
        let payload = crate::store::codec::encode_payload(payload, u32::MAX)?;
        Ok(Self::from_encoded(coordinate.clone(), kind, payload))
    }

    pub(crate) fn from_encoded(coordinate: Coordinate, kind: EventKind, payload: Vec<u8>) -> Self {
        BatchItem {
            coordinate,
            kind,
            payload,
            expect_clock: None,
            correlation_id: None,
            causation: None,
            flags: 0,
            schema_version: 0,
        }
    }

    /// The entity's clock must be `clock` when this item is applied (items
    /// apply in order, so a second item on the same entity sees the first).
    pub fn expect_clock(mut self, clock: u64) -> Self {
        self.expect_clock = Some(clock);
        self
    }

    /// The conversation this event belongs to. Unset, an item caused by an
    /// earlier item inherits that item's correlation id; otherwise it is its
    /// own id.
    pub fn correlation_id(mut self, id: EventId) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// The event that caused this one: an existing event or an earlier item.
    pub fn caused_by(mut self, cause: Causation) -> Self {
        self.causation = Some(cause);
        self
    }

    /// Shorthand for `caused_by(Causation::Item(index))`.
    pub fn caused_by_item(self, index: usize) -> Self {
        self.caused_by(Causation::Item(index))
    }

    /// Application-defined flags.
    pub fn flags(mut self, flags: u16) -> Self {
        self.flags = flags;
        self
    }

    /// Schema version of the payload, stored in the header (default 0).
    pub fn schema_version(mut self, version: u16) -> Self {
        self.schema_version = version;
        self
    }

    /// The item's coordinate.
    pub fn coordinate(&self) -> &Coordinate {
        &self.coordinate
    }

    /// The item's kind.
    pub fn kind(&self) -> EventKind {
        self.kind
    }
}

/// An atomic batch: events (possibly across entities) committed
/// all-or-nothing, through a crash at any byte.
///
/// ```
/// use batpak::prelude::*;
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::open(StoreConfig::new(dir.path()))?;
/// let order = Coordinate::new("order:1", "shop")?;
/// let stock = Coordinate::new("stock:apple", "shop")?;
/// let mut batch = Batch::new().idempotency_key("order-1-placed");
/// let placed = batch.push(BatchItem::new(&order, EventKind::custom(1, 1), &"placed")?.expect_clock(0));
/// batch.push(BatchItem::new(&stock, EventKind::custom(1, 2), &-1)?.caused_by_item(placed));
/// let receipts = store.append_batch(&batch)?;
/// assert_eq!(receipts.len(), 2);
/// assert_eq!(receipts[1].sequence, receipts[0].sequence + 1);
/// # store.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub(crate) items: Vec<BatchItem>,
    pub(crate) idempotency_key: Option<IdempotencyKey>,
    pub(crate) durable: bool,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an item; returns its position, for [`BatchItem::caused_by_item`].
    pub fn push(&mut self, item: BatchItem) -> usize {
        self.items.push(item);
        self.items.len() - 1
    }

    /// Serializes `payload` and adds an item with default options.
    pub fn add(
        &mut self,
        coordinate: &Coordinate,
        kind: EventKind,
        payload: &impl Serialize,
    ) -> Result<usize, StoreError> {
        Ok(self.push(BatchItem::new(coordinate, kind, payload)?))
    }

    /// A retry of a batch with the same key returns the original receipts.
    pub fn idempotency_key(mut self, key: impl Into<IdempotencyKey>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Return only once the batch is on stable storage, whatever the cadence.
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if the batch has no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items, in order.
    pub fn items(&self) -> &[BatchItem] {
        &self.items
    }
}
