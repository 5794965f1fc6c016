//! Wall-clock time for the server's timestamps, as a seam: the hub and the store read it
//! through [`Clock`], so that tests can drive it ([`ManualClock`]) instead of sleeping or
//! guessing (in the manner of rustls' `TimeProvider`, injected where it is needed).
//!
//! What it times: the `ts` of accepted messages and presence notices, an account's
//! registration, last-seen and first-return times, the cutoff of unused-account expiry, and the
//! store's bookkeeping (when it was opened, the commit lag it logs). Timeouts, backoff and rate
//! limits are durations, not dates: they use the monotonic clock (`Instant`, tokio's in the
//! sessions, whose paused mode tests use), not this one.
//!
//! A wall clock is not monotonic: the system's may be stepped backwards, and then so do
//! timestamps, as they always have. Nothing relies on timestamps increasing: message ids are
//! what orders messages, and they never go backwards (the hub hands them out from one counter
//! under its lock, continuing after the highest id the store ever recorded; see
//! `Hub::close_store` and the store's `last_id`).

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One day in milliseconds: the unit of `unused_account_days`.
pub const DAY_MS: u64 = 86_400_000;

/// Tells the time.
pub trait Clock: Send + Sync + Debug {
    /// Milliseconds since the Unix epoch (UTC). Not monotonic: see the module documentation.
    fn now_ms(&self) -> u64;
}

/// The system's clock: what production uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// [`SystemTime::now`] in milliseconds since the Unix epoch; 0 if the system clock is set
    /// before 1970, `u64::MAX` if beyond what 64 bits of milliseconds hold.
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to: for tests. Share it through an `Arc` (as an
/// `Arc<dyn Clock>` for the code under test, and as itself for the test to move it).
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// A clock that reads `start_ms` (ms since the Unix epoch) until moved.
    pub fn new(start_ms: u64) -> ManualClock {
        ManualClock {
            now_ms: AtomicU64::new(start_ms),
        }
    }

    /// Sets the time to `ms` since the Unix epoch; backwards too (as a stepped system clock).
    pub fn set(&self, ms: u64) {
        self.now_ms.store(ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `by` (whole milliseconds; saturating at `u64::MAX`).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        // `fetch_update` with a closure that always returns `Some` cannot fail.
        let _ = self
            .now_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_milliseconds_since_the_epoch() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let now = SystemClock.now_ms();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(before <= now && now <= after, "{before} {now} {after}");
    }

    #[test]
    fn a_manual_clock_moves_only_when_told_and_is_shared() {
        let clock = std::sync::Arc::new(ManualClock::new(1_000));
        let seen: std::sync::Arc<dyn Clock> = clock.clone();
        assert_eq!(seen.now_ms(), 1_000);
        clock.advance(Duration::from_millis(1));
        assert_eq!(seen.now_ms(), 1_001);
        clock.advance(Duration::from_secs(1));
        assert_eq!(seen.now_ms(), 2_001);
        clock.set(5);
        assert_eq!(seen.now_ms(), 5, "backwards, as a stepped system clock");
        clock.set(u64::MAX - 1);
        clock.advance(Duration::from_millis(10));
        assert_eq!(seen.now_ms(), u64::MAX, "saturates");
    }
}
