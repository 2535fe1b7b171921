//! Lossy subscriptions: a push feed with a bounded buffer per subscriber.
//!
//! One dispatcher thread per store (started by the first subscription,
//! stopped when the store closes or the last subscriber is gone) sleeps until
//! the store publishes, then, for each subscriber, selects the newly visible
//! events its region matches (filtering *before* buffering) and offers them to
//! the subscriber's channel without blocking. A full channel drops the
//! notification and counts it. The dispatcher never runs inside the write
//! path, so a slow or stuck subscriber can never slow an append.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::cursor::deadline_after;
use crate::store::engine::Inner;
use crate::{Region, StoredEvent};

/// Notifications a subscription buffers by default.
pub const SUBSCRIPTION_CAPACITY_DEFAULT: usize = 1024;
/// Largest buffer a subscription may ask for.
pub const SUBSCRIPTION_CAPACITY_MAX: usize = 1 << 20;

/// How many sequences the dispatcher takes from the index at a time.
const SELECT_CHUNK: usize = 1024;
/// How many index entries one look-up may examine before releasing the index.
const SCAN_BUDGET: usize = 64 * 1024;
/// How often an idle dispatcher checks whether its subscribers are gone.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Counters shared by a subscriber and the dispatcher.
#[derive(Debug, Default)]
struct Counters {
    dropped: AtomicU64,
    delivered: AtomicU64,
}

#[derive(Debug)]
struct Subscriber {
    region: Region,
    /// The next sequence this subscriber has not been offered.
    next: u64,
    sender: flume::Sender<StoredEvent>,
    counters: Arc<Counters>,
}

/// The dispatcher's subscribers; lives in the store's shared state.
#[derive(Debug, Default)]
pub(crate) struct DispatchState {
    subscribers: Vec<Subscriber>,
    running: bool,
}

/// Why [`Subscription::recv_timeout`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeedRecvError {
    /// Nothing arrived within the timeout.
    #[error("no notification within the timeout")]
    Timeout,
    /// The feed ended: the store closed and the buffer is drained.
    #[error("the feed ended (the store was closed)")]
    Ended,
}

/// A live, lossy feed of committed events; see
/// [`Store::subscribe_lossy`](crate::Store::subscribe_lossy).
///
/// Blocking receives ([`Subscription::recv`], iteration) and an async receive
/// ([`Subscription::recv_async`], usable from any executor; the library
/// itself needs no async runtime) are available.
///
/// ```
/// use std::future::Future;
/// use std::pin::pin;
/// use std::sync::Arc;
/// use std::task::{Context, Poll, Wake, Waker};
/// use batpak::prelude::*;
///
/// // A minimal executor for the example; in real code use your runtime's.
/// fn block_on<F: Future>(future: F) -> F::Output {
///     struct Unpark(std::thread::Thread);
///     impl Wake for Unpark {
///         fn wake(self: Arc<Self>) {
///             self.0.unpark();
///         }
///     }
///     let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
///     let mut context = Context::from_waker(&waker);
///     let mut future = pin!(future);
///     loop {
///         match future.as_mut().poll(&mut context) {
///             Poll::Ready(output) => return output,
///             Poll::Pending => std::thread::park(),
///         }
///     }
/// }
///
/// # let dir = tempfile::tempdir()?;
/// let store = Arc::new(Store::open(StoreConfig::new(dir.path()))?);
/// let feed = store.subscribe_lossy(&Region::entity("door:front"));
/// let writer = {
///     let store = Arc::clone(&store);
///     std::thread::spawn(move || {
///         let door = Coordinate::new("door:front", "house")?;
///         store.append(&door, EventKind::custom(3, 1), &"opened")
///     })
/// };
/// // An async caller awaits the next notification.
/// let event = block_on(async { feed.recv_async().await }).expect("store still open");
/// assert_eq!(event.payload, "opened");
/// writer.join().expect("writer thread")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Subscription {
    receiver: flume::Receiver<StoredEvent>,
    counters: Arc<Counters>,
    region: Region,
}

impl Subscription {
    /// The next notification, blocking until one arrives; `None` once the
    /// feed has ended (the store closed and the buffer is drained).
    pub fn recv(&self) -> Option<StoredEvent> {
        self.receiver.recv().ok()
    }

    /// The next notification, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<StoredEvent, FeedRecvError> {
        self.receiver
            .recv_deadline(deadline_after(timeout))
            .map_err(|error| match error {
                flume::RecvTimeoutError::Timeout => FeedRecvError::Timeout,
                flume::RecvTimeoutError::Disconnected => FeedRecvError::Ended,
            })
    }

    /// A buffered notification, if there is one; never blocks.
    pub fn try_recv(&self) -> Option<StoredEvent> {
        self.receiver.try_recv().ok()
    }

    /// Awaits the next notification from async code (any executor); `None`
    /// once the feed has ended.
    pub fn recv_async(&self) -> impl Future<Output = Option<StoredEvent>> + Send + '_ {
        let next = self.receiver.recv_async();
        async move { next.await.ok() }
    }

    /// How many matching notifications were dropped because the buffer was
    /// full (or, rarely, because the event could not be read).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Acquire)
    }

    /// How many notifications were put into the buffer so far.
    pub fn delivered(&self) -> u64 {
        self.counters.delivered.load(Ordering::Acquire)
    }

    /// Notifications buffered and not yet received.
    pub fn pending(&self) -> usize {
        self.receiver.len()
    }

    /// True once the feed has ended and the buffer is drained.
    pub fn is_ended(&self) -> bool {
        self.receiver.is_disconnected() && self.receiver.is_empty()
    }

    /// The region the subscription follows.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// A blocking iterator over notifications; it ends with the feed.
    pub fn iter(&self) -> SubscriptionIter<'_> {
        SubscriptionIter { subscription: self }
    }
}

/// Blocking iterator over a [`Subscription`]; see [`Subscription::iter`].
#[derive(Debug)]
pub struct SubscriptionIter<'a> {
    subscription: &'a Subscription,
}

impl Iterator for SubscriptionIter<'_> {
    type Item = StoredEvent;

    fn next(&mut self) -> Option<StoredEvent> {
        self.subscription.recv()
    }
}

impl<'a> IntoIterator for &'a Subscription {
    type Item = StoredEvent;
    type IntoIter = SubscriptionIter<'a>;

    fn into_iter(self) -> SubscriptionIter<'a> {
        self.iter()
    }
}

impl Iterator for Subscription {
    type Item = StoredEvent;

    /// Blocks for the next notification; ends with the feed.
    fn next(&mut self) -> Option<StoredEvent> {
        self.recv()
    }
}

/// Registers a subscriber, starting the dispatcher if it is not running.
pub(crate) fn subscribe(inner: &Arc<Inner>, region: &Region, capacity: usize) -> Subscription {
    let (sender, receiver) = flume::bounded(capacity.clamp(1, SUBSCRIPTION_CAPACITY_MAX));
    let counters = Arc::new(Counters::default());
    let subscription = Subscription {
        receiver,
        counters: counters.clone(),
        region: region.clone(),
    };
    if inner.closed.load(Ordering::Acquire) {
        // Dropping the sender ends the feed at once.
        return subscription;
    }
    let mut state = inner.feeds.dispatch.lock();
    state.subscribers.push(Subscriber {
        region: region.clone(),
        next: inner.visible.load(Ordering::Acquire),
        sender,
        counters,
    });
    if !state.running {
        let dispatcher_inner = inner.clone();
        let spawned = std::thread::Builder::new()
            .name("batpak-feed".into())
            .spawn(move || dispatch(&dispatcher_inner));
        match spawned {
            Ok(_) => state.running = true,
            Err(error) => {
                // Without a dispatcher nothing would ever arrive: end the
                // feed visibly rather than leave it silent.
                tracing::error!(%error, "could not start the subscription dispatcher");
                state.subscribers.clear();
            }
        }
    }
    subscription
}

/// The dispatcher thread's loop.
fn dispatch(inner: &Inner) {
    tracing::debug!("subscription dispatcher started");
    let mut seen = inner.visible.load(Ordering::Acquire);
    loop {
        seen = inner.wait_for_visible(seen, IDLE_CHECK);
        let closing = inner.closed.load(Ordering::Acquire);
        let mut state = inner.feeds.dispatch.lock();
        state.subscribers.retain(|s| !s.sender.is_disconnected());
        // Everything committed before a close is still offered.
        for subscriber in &mut state.subscribers {
            offer_new_events(inner, subscriber);
        }
        if closing || state.subscribers.is_empty() {
            // Dropping the senders ends every feed once drained.
            state.subscribers.clear();
            state.running = false;
            tracing::debug!(closing, "subscription dispatcher stopped");
            return;
        }
    }
}

/// Offers one subscriber every visible event its region selects past its
/// position, dropping (and counting) what does not fit in its buffer.
fn offer_new_events(inner: &Inner, subscriber: &mut Subscriber) {
    let visible = inner.visible.load(Ordering::Acquire);
    if subscriber.next >= visible {
        return;
    }
    let mut after = subscriber.next.checked_sub(1);
    loop {
        let (sequences, resume) =
            inner
                .index
                .read()
                .select(&subscriber.region, after, SELECT_CHUNK, SCAN_BUDGET);
        for sequence in sequences {
            after = Some(sequence);
            if subscriber.sender.is_full() {
                // Not even read: a slow subscriber costs the dispatcher little.
                subscriber.counters.dropped.fetch_add(1, Ordering::AcqRel);
                continue;
            }
            match inner.read_event(sequence) {
                Ok(Some(event)) => match subscriber.sender.try_send(event) {
                    Ok(()) => {
                        subscriber.counters.delivered.fetch_add(1, Ordering::AcqRel);
                    }
                    Err(flume::TrySendError::Full(_)) => {
                        subscriber.counters.dropped.fetch_add(1, Ordering::AcqRel);
                    }
                    Err(flume::TrySendError::Disconnected(_)) => {
                        subscriber.next = visible;
                        return;
                    }
                },
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, sequence, "subscription could not read an event; dropped");
                    subscriber.counters.dropped.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
        match resume {
            Some(resume) => after = Some(after.map_or(resume, |a| a.max(resume))),
            None => break,
        }
    }
    subscriber.next = visible.max(after.map_or(0, |a| a + 1));
}
