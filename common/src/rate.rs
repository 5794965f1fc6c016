//! A token bucket: a burst, then a steady rate. Pure (time is passed in). The server uses it to
//! rate-limit clients; the client library uses the same bucket, with the limits the server
//! announced, to pace itself so that an honest client is never refused.

use std::time::{Duration, Instant};

/// A token counts as whole from here: refilling in floating point leaves 0.999999999 where
/// 1 is meant, which [`TokenBucket::wait_time`] would call a wait of zero (below a nanosecond)
/// while [`TokenBucket::try_take`] refused — a pacer asking both would spin.
const WHOLE: f64 = 1.0 - 1e-6;

/// A token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens refilled at `per_sec` tokens per second.
    pub fn new(capacity: u32, per_sec: f64, now: Instant) -> TokenBucket {
        let capacity = f64::from(capacity.max(1));
        TokenBucket {
            capacity,
            per_sec: per_sec.max(0.0),
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.last = now;
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= WHOLE {
            self.tokens = (self.tokens - 1.0).max(0.0);
            true
        } else {
            false
        }
    }

    /// Returns one token taken for something that did not happen after all (never beyond the
    /// capacity).
    pub fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.capacity);
    }

    /// Whether the bucket is full at `now`: it then remembers nothing a new bucket would not.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.capacity
    }
}

impl TokenBucket {
    /// How long until a token is available (zero if one is).
    pub fn wait_time(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= WHOLE || self.per_sec <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(5, 2.0, t0);
        assert_eq!((0..8).filter(|_| bucket.try_take(t0)).count(), 5);
        // Half a second later, one more token (2 per second).
        let t1 = t0 + Duration::from_millis(500);
        assert!(bucket.try_take(t1));
        assert!(!bucket.try_take(t1));
        // A long pause refills only up to the burst size.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| bucket.try_take(t2)).count(), 5);
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(1, 1.0, t0);
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0 - Duration::from_secs(5)));
    }

    #[test]
    fn a_token_given_back_can_be_taken_again_but_never_beyond_the_capacity() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(2, 0.0, t0);
        assert!(bucket.try_take(t0));
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0));
        bucket.give_back();
        assert!(bucket.try_take(t0));
        for _ in 0..10 {
            bucket.give_back();
        }
        assert!(bucket.is_full(t0));
        assert_eq!((0..10).filter(|_| bucket.try_take(t0)).count(), 2);
    }

    #[test]
    fn wait_time_says_when_the_next_token_comes() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1, 4.0, t0);
        assert_eq!(bucket.wait_time(t0), Duration::ZERO);
        assert!(bucket.try_take(t0));
        let wait = bucket.wait_time(t0);
        assert!((wait.as_secs_f64() - 0.25).abs() < 1e-6, "{wait:?}");
        assert!(bucket.try_take(t0 + wait));
    }
}
