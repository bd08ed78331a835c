//! Where "now" comes from: the [`Clock`] the server, the verifier and the gateway ask,
//! the operating system's [`SystemClock`], and a [`ManualClock`] that moves only when
//! told to.
//!
//! Policy: the rules in this crate still take `now` as a [`Timestamp`] argument; a
//! clock is what the crates above hold and ask once per decision. Tests and simulations
//! give them a [`ManualClock`] and move it, so a test of expiry, lifetimes or a rotation
//! schedule moves time instead of sleeping. [`SystemClock`] is the one place latchkey
//! reads the wall clock for its domain decisions.

use crate::Timestamp;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // Before 1970 reads as the epoch; past year 292 million as the end of time.
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Timestamp::from_millis(millis)
    }
}

/// A clock that stands still until it is moved: [`advance`](Self::advance) or
/// [`set`](Self::set). Shared between threads behind an `Arc`.
///
/// ```
/// use latchkey_core::Timestamp;
/// use latchkey_core::clock::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Timestamp::from_millis(1_000));
/// clock.advance(Duration::from_millis(1_500));
/// assert_eq!(clock.now(), Timestamp::from_millis(2_500));
/// clock.set(Timestamp::from_millis(0));
/// assert_eq!(clock.now(), Timestamp::from_millis(0));
/// ```
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            millis: AtomicI64::new(start.millis()),
        }
    }

    /// A clock standing at the system clock's now, for tests that mix it with
    /// instants computed from the wall clock.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }

    /// Moves the clock forward by `by` (to the millisecond, saturating).
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        // fetch_update rather than fetch_add: an addition past i64::MAX saturates
        // instead of wrapping to 1970's far past.
        let _ = self
            .millis
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Puts the clock at `to`, forward or back.
    pub fn set(&self, to: Timestamp) {
        self.millis.store(to.millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_manual_clock_stands_still_until_moved() {
        let clock = ManualClock::new(Timestamp::from_millis(42));
        assert_eq!(clock.now(), Timestamp::from_millis(42));
        assert_eq!(clock.now(), Timestamp::from_millis(42));
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now(), Timestamp::from_millis(2_042));
    }

    #[test]
    fn a_manual_clock_can_be_set_back() {
        let clock = ManualClock::new(Timestamp::from_millis(5_000));
        clock.set(Timestamp::from_millis(1_000));
        assert_eq!(clock.now(), Timestamp::from_millis(1_000));
    }

    #[test]
    fn advancing_past_the_end_of_time_saturates() {
        let clock = ManualClock::new(Timestamp::from_millis(i64::MAX - 10));
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now(), Timestamp::from_millis(i64::MAX));
        clock.advance(Duration::MAX);
        assert_eq!(clock.now(), Timestamp::from_millis(i64::MAX));
    }

    #[test]
    fn advances_from_many_threads_all_count() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        clock.advance(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(clock.now(), Timestamp::from_millis(4_000));
    }

    #[test]
    fn the_system_clock_reads_the_wall_clock() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let now = SystemClock.now().millis();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(now >= i64::try_from(before.as_millis()).unwrap());
        assert!(now <= i64::try_from(after.as_millis()).unwrap());
    }
}
