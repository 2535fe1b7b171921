//! The store: the write path, the log, the index and the reads.

pub(crate) mod codec;
mod config;
mod error;
mod options;
mod report;

pub use config::{RecoveryMode, StoreConfig, SyncMode, PAYLOAD_MAX_BYTES_LIMIT};
pub use error::StoreError;
pub use options::{
    AppendOptions, AppendReceipt, Batch, BatchItem, Causation, IdempotencyKey,
    IDEMPOTENCY_KEY_MAX_BYTES,
};
pub use report::{EntityInfo, IndexSource, OpenReport, Page, StoreStats, TailCut};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Coordinate, EventId, EventKind, Region, StoredEvent};

/// The handle to one store directory. `Send + Sync`: share it by reference or `Arc`.
pub struct Store {
    _private: (),
}

/// Proof of an orderly, durable shutdown, returned by [`Store::close`].
#[derive(Debug)]
#[must_use]
pub struct Closed {
    /// Sequence one past the last event in the store when it closed.
    pub next_sequence: u64,
}

/// A submitted append whose receipt can be collected later (pipelining).
#[derive(Debug)]
#[must_use = "a ticket must be waited on to learn whether the append succeeded"]
pub struct AppendTicket {
    _private: (),
}

impl AppendTicket {
    /// Waits until the append is acknowledged under the store's durability
    /// rules and returns its receipt.
    pub fn wait(self) -> Result<AppendReceipt, StoreError> {
        todo!("engine")
    }
}

/// An iterator over stored events, fetched lazily in index order.
pub struct EventIter {
    _private: (),
}

impl Iterator for EventIter {
    type Item = Result<StoredEvent, StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        todo!("engine")
    }
}

impl Store {
    /// Opens (creating if needed) the store in `config.dir()` for writing.
    pub fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let _ = config;
        todo!("engine")
    }

    /// Opens a store for reading only, beside a live writer if there is one.
    pub fn open_read_only(config: StoreConfig) -> Result<Store, StoreError> {
        let _ = config;
        todo!("engine")
    }

    /// Read-only stores: picks up events committed since open or the last refresh.
    pub fn refresh(&self) -> Result<u64, StoreError> {
        todo!("engine")
    }

    /// Appends one event.
    pub fn append(
        &self,
        coordinate: &Coordinate,
        kind: EventKind,
        payload: &impl Serialize,
    ) -> Result<AppendReceipt, StoreError> {
        self.append_with_options(coordinate, kind, payload, AppendOptions::default())
    }

    /// Appends one event with options.
    pub fn append_with_options(
        &self,
        coordinate: &Coordinate,
        kind: EventKind,
        payload: &impl Serialize,
        options: AppendOptions,
    ) -> Result<AppendReceipt, StoreError> {
        let _ = (coordinate, kind, payload, options);
        todo!("engine")
    }

    /// Submits an append without waiting for durability.
    pub fn submit(
        &self,
        coordinate: &Coordinate,
        kind: EventKind,
        payload: &impl Serialize,
        options: AppendOptions,
    ) -> Result<AppendTicket, StoreError> {
        let _ = (coordinate, kind, payload, options);
        todo!("engine")
    }

    /// Appends an atomic batch.
    pub fn append_batch(&self, batch: &Batch) -> Result<Vec<AppendReceipt>, StoreError> {
        let _ = batch;
        todo!("engine")
    }

    /// Makes everything acknowledged so far durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        todo!("engine")
    }

    /// The highest sequence known to be on stable storage.
    pub fn durable_sequence(&self) -> Option<u64> {
        todo!("engine")
    }

    /// One event by id.
    pub fn get(&self, event_id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        let _ = event_id;
        todo!("engine")
    }

    /// One event by id, decoded into `T`.
    pub fn get_typed<T: DeserializeOwned>(
        &self,
        event_id: EventId,
    ) -> Result<Option<StoredEvent<T>>, StoreError> {
        let _ = event_id;
        todo!("engine")
    }

    /// One event by global sequence.
    pub fn get_by_sequence(&self, sequence: u64) -> Result<Option<StoredEvent>, StoreError> {
        let _ = sequence;
        todo!("engine")
    }

    /// One entity's events in clock order.
    pub fn stream(&self, entity: &str) -> EventIter {
        let _ = entity;
        todo!("engine")
    }

    /// The events a region selects, in global sequence order.
    pub fn query(&self, region: &Region) -> EventIter {
        let _ = region;
        todo!("engine")
    }

    /// One page of a query: at most `limit` events with sequence greater than `after`.
    pub fn query_page(
        &self,
        region: &Region,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let _ = (region, after, limit);
        todo!("engine")
    }

    /// The entity's clock (0 = no events).
    pub fn entity_clock(&self, entity: &str) -> u64 {
        let _ = entity;
        todo!("engine")
    }

    /// Entities whose names start with `prefix`, in name order.
    pub fn entities(&self, prefix: &str) -> Vec<EntityInfo> {
        let _ = prefix;
        todo!("engine")
    }

    /// The next sequence to be assigned (= number of sequences used).
    pub fn next_sequence(&self) -> u64 {
        todo!("engine")
    }

    /// Counts, sizes, sequences, durability frontier, and the open report.
    pub fn stats(&self) -> StoreStats {
        todo!("engine")
    }

    /// How open restored the store.
    pub fn open_report(&self) -> &OpenReport {
        todo!("engine")
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        todo!("engine")
    }

    /// True if opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        todo!("engine")
    }

    /// Drains, syncs and closes; reports every error.
    pub fn close(self) -> Result<Closed, StoreError> {
        todo!("engine")
    }
}
