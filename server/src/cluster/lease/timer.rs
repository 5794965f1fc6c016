//! [`LeaseTimer`]: when this node renews its lease, and when it must count itself fenced.
//! Sans-I/O: it reads no clock; every instant is given to it.

use std::time::{Duration, Instant};

/// When to renew the lease and when the node must stop acting as a member (CLUSTER.md, "A node
/// that cannot renew closes its sessions before its lease expires").
///
/// The database sets `expires_at = now() + lease` when it runs a renewal, which is after the
/// node sent it; so counting from the *send* time of the last renewal that succeeded, the node
/// is never later than the database. At `lease − margin` (margin = lease/4) without a newer
/// success it is fenced; the database may declare it dead only at `lease`.
#[derive(Debug, Clone)]
pub struct LeaseTimer {
    lease: Duration,
    /// Send time of the last renewal that succeeded (at first, of the join).
    confirmed: Instant,
    /// Send time of the last renewal sent.
    sent: Instant,
    /// Whether a renewal is in flight.
    in_flight: bool,
    /// Renewals that failed (or timed out) since the last success.
    failures: u32,
}

impl LeaseTimer {
    /// A timer for a lease of `lease` granted by a join (or renewal) sent at `joined`.
    pub fn new(joined: Instant, lease: Duration) -> LeaseTimer {
        LeaseTimer {
            lease,
            confirmed: joined,
            sent: joined,
            in_flight: false,
            failures: 0,
        }
    }

    /// The lease's length.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How long before the lease's end the node counts itself fenced: lease/4.
    pub fn margin(&self) -> Duration {
        self.lease / 4
    }

    /// How often the lease is renewed (and how long one renewal may take): lease/4.
    pub fn period(&self) -> Duration {
        self.lease / 4
    }

    /// A renewal was sent at `at`.
    pub fn renew_sent(&mut self, at: Instant) {
        self.sent = self.sent.max(at);
        self.in_flight = true;
    }

    /// The renewal sent at `sent_at` succeeded.
    pub fn renewed(&mut self, sent_at: Instant) {
        self.confirmed = self.confirmed.max(sent_at);
        self.in_flight = false;
        self.failures = 0;
    }

    /// The renewal in flight failed or timed out.
    pub fn failed(&mut self) {
        self.in_flight = false;
        self.failures = self.failures.saturating_add(1);
    }

    /// Renewals that failed since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether a renewal is in flight.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// When the node counts itself fenced: the send time of the last successful renewal +
    /// lease − margin.
    pub fn deadline(&self) -> Instant {
        let until = self.lease.saturating_sub(self.margin());
        // Far beyond any real lease; an instant that cannot be represented is "now".
        self.confirmed.checked_add(until).unwrap_or(self.confirmed)
    }

    /// When the next renewal is due: a period after the last one was sent.
    pub fn next_renewal(&self) -> Instant {
        self.sent.checked_add(self.period()).unwrap_or(self.sent)
    }

    /// Whether, at `now`, the node must count itself fenced.
    pub fn is_fenced(&self, now: Instant) -> bool {
        now >= self.deadline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(8);

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn the_deadline_is_the_lease_less_a_quarter_after_the_join_was_sent() {
        let t0 = Instant::now();
        let timer = LeaseTimer::new(t0, LEASE);
        assert_eq!(timer.margin(), s(2.0));
        assert_eq!(timer.deadline(), t0 + s(6.0));
        assert!(!timer.is_fenced(t0 + s(5.999)));
        assert!(timer.is_fenced(t0 + s(6.0)));
        assert_eq!(timer.next_renewal(), t0 + s(2.0));
    }

    #[test]
    fn a_success_counts_from_its_send_time_not_its_answer() {
        let t0 = Instant::now();
        let mut timer = LeaseTimer::new(t0, LEASE);
        timer.renew_sent(t0 + s(2.0));
        assert!(timer.in_flight());
        assert_eq!(timer.next_renewal(), t0 + s(4.0));
        // Answered late: the lease counts from when it was sent.
        timer.renewed(t0 + s(2.0));
        assert!(!timer.in_flight());
        assert_eq!(timer.deadline(), t0 + s(8.0));
        assert!(!timer.is_fenced(t0 + s(7.9)));
        assert!(timer.is_fenced(t0 + s(8.0)));
    }

    #[test]
    fn failures_do_not_move_the_deadline_and_the_node_is_fenced_at_it() {
        let t0 = Instant::now();
        let mut timer = LeaseTimer::new(t0, LEASE);
        timer.renew_sent(t0 + s(2.0));
        timer.failed();
        timer.renew_sent(t0 + s(4.0));
        timer.failed();
        assert_eq!(timer.failures(), 2);
        assert_eq!(timer.deadline(), t0 + s(6.0));
        assert_eq!(timer.next_renewal(), t0 + s(6.0));
        assert!(!timer.is_fenced(t0 + s(5.9)));
        assert!(timer.is_fenced(t0 + s(6.0)));
    }

    #[test]
    fn a_later_success_restores_a_node_fenced_only_by_time() {
        let t0 = Instant::now();
        let mut timer = LeaseTimer::new(t0, LEASE);
        timer.renew_sent(t0 + s(2.0));
        timer.failed();
        timer.renew_sent(t0 + s(4.0));
        timer.failed();
        timer.renew_sent(t0 + s(6.0));
        assert!(timer.is_fenced(t0 + s(6.5)));
        timer.renewed(t0 + s(6.0));
        assert_eq!(timer.failures(), 0);
        assert!(!timer.is_fenced(t0 + s(6.5)));
        assert_eq!(timer.deadline(), t0 + s(12.0));
    }

    #[test]
    fn an_older_answer_never_moves_the_deadline_back() {
        let t0 = Instant::now();
        let mut timer = LeaseTimer::new(t0, LEASE);
        timer.renew_sent(t0 + s(4.0));
        timer.renewed(t0 + s(4.0));
        // An answer to an earlier renewal, arriving after (as after a reconnection).
        timer.renewed(t0 + s(2.0));
        assert_eq!(timer.deadline(), t0 + s(10.0));
        timer.renew_sent(t0 + s(1.0));
        assert_eq!(timer.next_renewal(), t0 + s(6.0));
    }
}
