//! Reactions: events that cause follow-up events.

use std::sync::Arc;

use serde::Serialize;

use super::{CursorWorker, HandlerError, WorkerPolicy, WorkerReport};
use crate::{
    Batch, BatchItem, Causation, Coordinate, EventId, EventKind, Region, Store, StoreError,
    StoredEvent,
};

/// The follow-up events a reaction emits for one trigger; see [`Reactor`].
///
/// Every event emitted here is appended with its correlation id set to the
/// trigger's correlation id and its causation id set to the trigger's id.
#[derive(Debug)]
pub struct Reactions {
    correlation_id: EventId,
    causation_id: EventId,
    items: Vec<BatchItem>,
}

impl Reactions {
    fn for_trigger(trigger: &StoredEvent) -> Reactions {
        Reactions {
            correlation_id: trigger.header.correlation_id,
            causation_id: trigger.header.event_id,
            items: Vec::new(),
        }
    }

    /// Emits a follow-up event. Fails only if `payload` cannot be serialized.
    pub fn emit(
        &mut self,
        coordinate: &Coordinate,
        kind: EventKind,
        payload: &impl Serialize,
    ) -> Result<(), StoreError> {
        let item = BatchItem::new(coordinate, kind, payload)?
            .correlation_id(self.correlation_id)
            .caused_by(Causation::Event(self.causation_id));
        self.items.push(item);
        Ok(())
    }

    /// Number of follow-up events emitted so far.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A worker that turns events into follow-up events.
///
/// It follows a region with a named cursor (the reactor's name) and calls
/// the reaction for each event; whatever the reaction emits for one trigger
/// is appended as one atomic batch whose idempotency key is derived from the
/// reactor's name and the trigger's id. Processing is at-least-once (a
/// trigger may be handled again after a failure or restart) but the
/// idempotency key makes the follow-ups appear once.
///
/// The reactor holds an `Arc<Store>`; after [`Reactor::stop`] and
/// [`Reactor::join`] it has let go of it, so the caller can take the store
/// back with `Arc::try_unwrap` and [`Store::close`] it.
///
/// A reaction must not emit events its own region selects, or it feeds on
/// itself.
///
/// ```
/// use std::sync::Arc;
/// use batpak::prelude::*;
/// use batpak::feed::{Reactor, WorkerPolicy};
/// const ORDER_PLACED: EventKind = EventKind::custom(5, 1);
/// const INVOICE_ISSUED: EventKind = EventKind::custom(5, 2);
/// # let dir = tempfile::tempdir()?;
/// let store = Arc::new(Store::open(StoreConfig::new(dir.path()))?);
/// let reactor = Reactor::spawn(
///     Arc::clone(&store),
///     "invoicing",
///     &Region::all().with_kind(KindFilter::Exact(ORDER_PLACED)),
///     WorkerPolicy::default(),
///     |order, reactions| {
///         let invoice = Coordinate::new(format!("invoice:{}", order.coordinate.entity()), "billing")?;
///         reactions.emit(&invoice, INVOICE_ISSUED, &order.payload)?;
///         Ok(())
///     },
/// )?;
/// let order = store.append(&Coordinate::new("order:9", "shop")?, ORDER_PLACED, &42)?;
/// while reactor.committed_position() <= order.sequence {
///     std::thread::sleep(std::time::Duration::from_millis(5));
/// }
/// reactor.stop();
/// reactor.join();
/// let invoice = store.stream("invoice:order:9").next().expect("one invoice")?;
/// assert_eq!(invoice.header.causation_id, Some(order.event_id));
/// assert_eq!(invoice.header.correlation_id, order.event_id);
/// let store = Arc::try_unwrap(store).expect("the reactor let go of the store");
/// store.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Reactor {
    worker: CursorWorker,
}

impl Reactor {
    /// Starts a reactor named `name` (also its cursor's name, see
    /// [`Store::named_cursor`]) over `region`.
    pub fn spawn<F>(
        store: Arc<Store>,
        name: &str,
        region: &Region,
        policy: WorkerPolicy,
        mut reaction: F,
    ) -> Result<Reactor, StoreError>
    where
        F: FnMut(&StoredEvent, &mut Reactions) -> Result<(), HandlerError> + Send + 'static,
    {
        let cursor = store.named_cursor(name, region)?;
        let key_prefix = format!("batpak.reaction:{name}:");
        let worker = CursorWorker::spawn(cursor, policy, move |batch| {
            for trigger in batch {
                let mut reactions = Reactions::for_trigger(trigger);
                reaction(trigger, &mut reactions)?;
                if reactions.items.is_empty() {
                    continue;
                }
                let mut follow_ups = Batch::new()
                    .idempotency_key(format!("{key_prefix}{}", trigger.header.event_id));
                for item in reactions.items {
                    follow_ups.push(item);
                }
                store.append_batch(&follow_ups)?;
            }
            Ok(())
        })?;
        Ok(Reactor { worker })
    }

    /// Asks the reactor to stop after the batch it is handling; see
    /// [`CursorWorker::stop`].
    pub fn stop(&self) {
        self.worker.stop();
    }

    /// Waits for the reactor to end; after this it no longer holds the store.
    pub fn join(self) -> WorkerReport {
        self.worker.join()
    }

    /// Every trigger below this position has been reacted to.
    pub fn committed_position(&self) -> u64 {
        self.worker.committed_position()
    }

    /// Restarts so far (see [`WorkerPolicy`]).
    pub fn restarts(&self) -> u32 {
        self.worker.restarts()
    }
}
