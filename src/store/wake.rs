//! Waking every thread that waits for a sync round, at once.
//!
//! When a group commit ends, the leader releases everyone it covered. Woken
//! one by one (a `unpark` each), the releases cost the leader a system call
//! and, on a virtual machine, often an exit to the host per thread, while
//! the released threads are already queueing for the next round. On Linux
//! the waiters sleep on one futex word instead, and the leader wakes them all
//! with one call. Elsewhere a mutex and condition variable do the same job.

use std::time::Instant;

/// A round counter that waiters watch: [`RoundSignal::advance`] moves it,
/// and [`RoundSignal::wake_all`] wakes everyone still waiting on the value
/// they saw.
#[derive(Debug, Default)]
pub(crate) struct RoundSignal {
    #[cfg(target_os = "linux")]
    word: std::sync::atomic::AtomicU32,
    #[cfg(not(target_os = "linux"))]
    word: std::sync::Mutex<u32>,
    #[cfg(not(target_os = "linux"))]
    moved: std::sync::Condvar,
}

#[cfg(target_os = "linux")]
impl RoundSignal {
    /// The round now: the value to pass to [`RoundSignal::wait`].
    pub(crate) fn current(&self) -> u32 {
        self.word.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Starts the next round; waits on the old value return.
    pub(crate) fn advance(&self) {
        self.word.fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Sleeps while the counter still holds `seen`, until `deadline` if one
    /// is given. May return early (spuriously); callers check and loop.
    pub(crate) fn wait(&self, seen: u32, deadline: Option<Instant>) {
        let timeout = deadline.map(|deadline| {
            let left = deadline.saturating_duration_since(Instant::now());
            libc::timespec {
                tv_sec: left.as_secs().min(i32::MAX as u64) as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            }
        });
        if timeout.is_some_and(|t| t.tv_sec == 0 && t.tv_nsec == 0) {
            return;
        }
        let timeout_ptr = timeout
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: FUTEX_WAIT reads the aligned 32-bit word of this live
        // atomic and sleeps only while it still equals `seen`; the timeout,
        // if any, is a valid relative timespec on the stack. Any error
        // (EAGAIN: the word moved; EINTR; ETIMEDOUT) just returns.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                seen,
                timeout_ptr,
            );
        }
    }

    /// Wakes every waiter (after [`RoundSignal::advance`]).
    pub(crate) fn wake_all(&self) {
        // SAFETY: FUTEX_WAKE only wakes threads waiting on this word; the
        // pointer is to a live, aligned atomic.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.word.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
impl RoundSignal {
    /// The round now: the value to pass to [`RoundSignal::wait`].
    pub(crate) fn current(&self) -> u32 {
        *self.word.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the next round; waits on the old value return.
    pub(crate) fn advance(&self) {
        let mut word = self.word.lock().unwrap_or_else(|e| e.into_inner());
        *word = word.wrapping_add(1);
    }

    /// Sleeps while the counter still holds `seen`, until `deadline` if one
    /// is given. May return early; callers check and loop.
    pub(crate) fn wait(&self, seen: u32, deadline: Option<Instant>) {
        let word = self.word.lock().unwrap_or_else(|e| e.into_inner());
        if *word != seen {
            return;
        }
        match deadline {
            None => drop(self.moved.wait(word)),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                drop(self.moved.wait_timeout(word, left));
            }
        }
    }

    /// Wakes every waiter (after [`RoundSignal::advance`]).
    pub(crate) fn wake_all(&self) {
        self.moved.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Every waiter of a round wakes from one `wake_all` after `advance`,
    /// and a wait on a round that has already passed returns at once.
    #[test]
    fn one_wake_releases_every_waiter() {
        let signal = Arc::new(RoundSignal::default());
        let round = signal.current();
        let woken = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (signal, woken) = (signal.clone(), woken.clone());
                std::thread::spawn(move || {
                    while signal.current() == round {
                        signal.wait(round, None);
                    }
                    woken.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(woken.load(Ordering::Relaxed), 0, "nobody wakes early");
        signal.advance();
        signal.wake_all();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(woken.load(Ordering::Relaxed), 6);
        let started = Instant::now();
        signal.wait(round, None);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// A wait with a deadline returns once it has passed.
    #[test]
    fn a_wait_with_a_deadline_ends() {
        let signal = RoundSignal::default();
        let deadline = Instant::now() + Duration::from_millis(5);
        while Instant::now() < deadline {
            signal.wait(signal.current(), Some(deadline));
        }
        signal.wait(signal.current(), Some(Instant::now()));
    }
}
