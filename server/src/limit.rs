//! Rate limiting with token buckets. Pure: time is passed in, so the rules are unit-tested
//! without clocks.
//!
//! Each connection has two buckets:
//! * **messages**: `burst` tokens, refilled at `per_sec`. Every client frame but `Pong` and `Quit`
//!   takes one; a frame finding it empty is refused with `rate-limited` (not processed).
//! * **strikes**: every refused frame takes one; they refill at one per second. A client that
//!   keeps flooding runs out and is disconnected, while one that pastes a burst now and then
//!   never does.

use std::time::Instant;

use mm_common::rate::TokenBucket;

/// What to do with a client frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Process it.
    Allow,
    /// Refuse it with `rate-limited`.
    Refuse,
    /// Refuse it and disconnect: a sustained flood.
    Disconnect,
}

/// The per-connection limiter.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    messages: TokenBucket,
    strikes: TokenBucket,
}

impl RateLimiter {
    /// `burst` messages at once, `per_sec` sustained; `strikes` refused messages (refilling at
    /// one per second) before a disconnect.
    pub fn new(burst: u32, per_sec: u32, strikes: u32, now: Instant) -> RateLimiter {
        RateLimiter {
            messages: TokenBucket::new(burst, f64::from(per_sec), now),
            strikes: TokenBucket::new(strikes, 1.0, now),
        }
    }

    /// The verdict for one more frame at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.messages.try_take(now) {
            Verdict::Allow
        } else if self.strikes.try_take(now) {
            Verdict::Refuse
        } else {
            Verdict::Disconnect
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_occasional_burst_is_refused_in_part_but_never_disconnected() {
        let mut now = Instant::now();
        let mut limiter = RateLimiter::new(10, 5, 20, now);
        for _ in 0..100 {
            // 15 at once every 10 s: 5 refused each time, and 10 s refills the strikes too.
            let verdicts: Vec<Verdict> = (0..15).map(|_| limiter.check(now)).collect();
            assert_eq!(
                verdicts.iter().filter(|v| **v == Verdict::Allow).count(),
                10
            );
            assert!(!verdicts.contains(&Verdict::Disconnect));
            now += Duration::from_secs(10);
        }
    }

    #[test]
    fn a_sustained_flood_is_disconnected() {
        let mut now = Instant::now();
        let mut limiter = RateLimiter::new(10, 5, 20, now);
        let mut sent = 0;
        let verdict = loop {
            // 100 messages per second against a limit of 5.
            now += Duration::from_millis(10);
            sent += 1;
            match limiter.check(now) {
                Verdict::Disconnect => break sent,
                _ if sent > 100_000 => panic!("never disconnected"),
                _ => {}
            }
        };
        // 10 burst + 20 strikes, plus what refilled meanwhile: well under a second of flooding.
        assert!(verdict < 100, "disconnected after {verdict} messages");
    }

    #[test]
    fn a_client_at_the_steady_rate_is_never_refused() {
        let mut now = Instant::now();
        let mut limiter = RateLimiter::new(10, 5, 20, now);
        for _ in 0..10_000 {
            now += Duration::from_millis(200);
            assert_eq!(limiter.check(now), Verdict::Allow);
        }
    }
}
