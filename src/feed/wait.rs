//! Sleeping until the store publishes more events, without polling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::store::engine::Inner;

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
    loop {
        if inner.visible.load(Ordering::Acquire) > known || inner.closed.load(Ordering::Acquire) {
            return true;
        }
        if interrupt.is_some_and(|flag| flag.load(Ordering::Acquire)) {
            return false;
        }
        if inner.published.wait_until(&mut guard, deadline).timed_out() {
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
