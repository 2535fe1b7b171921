//! Sleeping until the store publishes more events, without polling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::store::engine::Inner;

/// Longest single sleep. `Store::close` raises `closed` without holding the
/// publish lock, so its wake-up can slip between a waiter's check and its
/// sleep; re-checking this often bounds how long such a waiter oversleeps.
/// (A few wake-ups per second while idle, not a polling loop.)
const RECHECK: Duration = Duration::from_millis(500);

/// Blocks until more than `known` events are visible, the store closes,
/// `interrupt` is raised (see [`interrupt`]) or `deadline` passes. Returns
/// true if there may be more to read (more visible, or closing).
pub(crate) fn wait_for_more(
    inner: &Inner,
    known: u64,
    deadline: Instant,
    interrupt: Option<&AtomicBool>,
) -> bool {
    let mut guard = inner.publish.lock();
    let _waiting = inner.count_new_events_waiter();
    loop {
        if inner.visible.load(Ordering::SeqCst) > known || inner.closed.load(Ordering::Acquire) {
            return true;
        }
        if interrupt.is_some_and(|flag| flag.load(Ordering::Acquire)) {
            return false;
        }
        let slice_end = deadline.min(Instant::now() + RECHECK);
        let timed_out = inner
            .published
            .wait_until(&mut guard, slice_end)
            .timed_out();
        if timed_out && slice_end >= deadline {
            return inner.visible.load(Ordering::Acquire) > known;
        }
    }
}

/// Raises `flag` and wakes every waiter of [`wait_for_more`]. Setting the flag
/// under the publish lock means a waiter cannot miss it between its check and
/// its sleep.
pub(crate) fn interrupt(inner: &Inner, flag: &AtomicBool) {
    {
        let _guard = inner.publish.lock();
        flag.store(true, Ordering::Release);
    }
    inner.published.notify_all();
}
