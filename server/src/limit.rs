//! Rate limiting with token buckets. Pure: time is passed in, so the rules are unit-tested
//! without clocks.
//!
//! [`Registrations`] limits new nicks per client certificate and per client address over time.
//!
//! Each connection has two buckets:
//! * **messages**: `burst` tokens, refilled at `per_sec`. Every client frame but `Pong`, `Quit`
//!   and a `Received` that acknowledges something new takes one; a frame finding it empty is
//!   not processed: a `Public`, `Private` or `Relay` is refused with `rate-limited`, any other
//!   dropped.
//! * **strikes**: every refused frame takes one; they refill at one per second. A client that
//!   keeps flooding runs out and is disconnected, while one that pastes a burst now and then
//!   never does.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;
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

/// How many new nicks a key may register: `count` at once, refilling at `count` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Registrations (at least 1).
    pub count: u32,
    /// Over this long (more than zero).
    pub per: Duration,
}

impl Allowance {
    fn bucket(self, now: Instant) -> TokenBucket {
        let per_sec = f64::from(self.count) / self.per.as_secs_f64().max(1e-3);
        TokenBucket::new(self.count, per_sec, now)
    }
}

/// What a registration was counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedBy {
    /// The client certificate.
    Certificate,
    /// The client address (IPv6: its /64).
    Address,
}

/// A registration over the limit, and when one will be allowed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    /// Which limit.
    pub by: LimitedBy,
    /// That limit.
    pub allowance: Allowance,
    /// How long until a registration is allowed again.
    pub retry_in: Duration,
}

impl fmt::Display for OverLimit {
    /// E.g. "too many new nicks from this address (at most 10 per hour); try again in 6
    /// minutes". Never names the certificate or the address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = match self.by {
            LimitedBy::Certificate => "this certificate",
            LimitedBy::Address => "this address",
        };
        write!(
            f,
            "too many new nicks from {from} (at most {} per {}); try again in {}",
            self.allowance.count,
            period(self.allowance.per),
            wait(self.retry_in)
        )
    }
}

/// "hour", "24 hours", "2 days", "90 seconds".
fn period(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        0 => return "moment".into(),
        s if s % 86_400 == 0 => (s / 86_400, "days"),
        s if s % 3600 == 0 => (s / 3600, "hours"),
        s if s % 60 == 0 => (s / 60, "minutes"),
        s => (s, "seconds"),
    };
    if n == 1 {
        unit.trim_end_matches('s').to_owned()
    } else {
        format!("{n} {unit}")
    }
}

/// "1 minute", "6 minutes", "8 hours": rounded up, in minutes below two hours.
fn wait(d: Duration) -> String {
    let minutes = d.as_secs().div_ceil(60).max(1);
    match minutes {
        1 => "1 minute".into(),
        m if m < 120 => format!("{m} minutes"),
        m => format!("{} hours", m.div_ceil(60)),
    }
}

/// The key an address is counted under: IPv4 (and IPv4-mapped IPv6) addresses as they are,
/// other IPv6 addresses by their /64 network (what one host or household is usually given:
/// counting single addresses would let one host register from 2⁶⁴ of them).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// New registrations per client certificate and per client address, over time (token buckets).
/// A registration takes one from both; one that does not happen after all (the login was
/// refused later) gives them back. Memory is bounded: at most `tracked` certificates and
/// `tracked` addresses are remembered, the least recently seen forgotten first (by then its
/// allowance has most likely refilled, so forgetting it changes little). Nothing is kept across
/// restarts. Cheap to clone; one lock, never held across an await.
#[derive(Debug, Clone)]
pub struct Registrations {
    inner: Arc<Mutex<Tracked>>,
}

#[derive(Debug)]
struct Tracked {
    per_certificate: Allowance,
    per_address: Allowance,
    certificates: LruCache<String, TokenBucket>,
    addresses: LruCache<IpAddr, TokenBucket>,
}

/// One registration counted against a certificate and an address. Dropped without
/// [`Reservation::commit`], it gives its share back.
#[derive(Debug)]
#[must_use = "dropping a reservation gives it back"]
pub struct Reservation {
    inner: Arc<Mutex<Tracked>>,
    certificate: String,
    address: IpAddr,
    committed: bool,
}

impl Registrations {
    /// Limits of `per_certificate` and `per_address`, remembering at most `tracked` (at least
    /// 1) of each.
    pub fn new(per_certificate: Allowance, per_address: Allowance, tracked: usize) -> Self {
        let tracked = NonZeroUsize::new(tracked).unwrap_or(NonZeroUsize::MIN);
        Registrations {
            inner: Arc::new(Mutex::new(Tracked {
                per_certificate,
                per_address,
                certificates: LruCache::new(tracked),
                addresses: LruCache::new(tracked),
            })),
        }
    }

    /// The server's limits.
    pub fn from_limits(limits: &crate::config::Limits) -> Self {
        Self::new(
            Allowance {
                count: limits.registrations_per_certificate,
                per: limits.registrations_per_certificate_period,
            },
            Allowance {
                count: limits.registrations_per_address,
                per: limits.registrations_per_address_period,
            },
            limits.registrations_tracked,
        )
    }

    fn lock(&self) -> MutexGuard<'_, Tracked> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one registration by `certificate` from `ip` at `now`, if both allow it.
    ///
    /// # Errors
    /// [`OverLimit`] naming the limit reached and when to try again; nothing is counted then.
    pub fn reserve(
        &self,
        certificate: &str,
        ip: IpAddr,
        now: Instant,
    ) -> Result<Reservation, OverLimit> {
        let address = address_key(ip);
        let mut guard = self.lock();
        let t = &mut *guard;
        let (per_certificate, per_address) = (t.per_certificate, t.per_address);
        let by_certificate = t
            .certificates
            .get_or_insert_mut_ref(certificate, || per_certificate.bucket(now));
        if !by_certificate.try_take(now) {
            return Err(OverLimit {
                by: LimitedBy::Certificate,
                allowance: per_certificate,
                retry_in: by_certificate.wait_time(now),
            });
        }
        let by_address = t
            .addresses
            .get_or_insert_mut(address, || per_address.bucket(now));
        if !by_address.try_take(now) {
            let retry_in = by_address.wait_time(now);
            if let Some(bucket) = t.certificates.get_mut(certificate) {
                bucket.give_back();
            }
            return Err(OverLimit {
                by: LimitedBy::Address,
                allowance: per_address,
                retry_in,
            });
        }
        drop(guard);
        Ok(Reservation {
            inner: Arc::clone(&self.inner),
            certificate: certificate.to_owned(),
            address,
            committed: false,
        })
    }

    /// How many certificates and addresses are remembered now.
    pub fn tracked(&self) -> (usize, usize) {
        let t = self.lock();
        (t.certificates.len(), t.addresses.len())
    }
}

impl Reservation {
    /// The registration happened: it stays counted.
    pub fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = t.certificates.peek_mut(&self.certificate) {
            bucket.give_back();
        }
        if let Some(bucket) = t.addresses.peek_mut(&self.address) {
            bucket.give_back();
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

    const DAY: Duration = Duration::from_secs(86_400);
    const HOUR: Duration = Duration::from_secs(3600);

    fn registrations(tracked: usize) -> Registrations {
        Registrations::new(
            Allowance { count: 3, per: DAY },
            Allowance {
                count: 10,
                per: HOUR,
            },
            tracked,
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_certificate_registers_three_a_day_then_is_told_when_to_try_again() {
        let r = registrations(100);
        let t0 = Instant::now();
        for n in 0..3 {
            r.reserve("cert", ip(&format!("10.0.0.{n}")), t0)
                .unwrap()
                .commit();
        }
        let over = r.reserve("cert", ip("10.0.0.9"), t0).unwrap_err();
        assert_eq!(over.by, LimitedBy::Certificate);
        assert!((over.retry_in.as_secs_f64() - 8.0 * 3600.0).abs() < 1.0);
        assert_eq!(
            over.to_string(),
            "too many new nicks from this certificate (at most 3 per day); try again in 8 hours"
        );
        // Another certificate from the same address is not affected.
        r.reserve("other", ip("10.0.0.9"), t0).unwrap().commit();
        // A third of a day later, one more.
        let later = t0 + DAY / 3;
        r.reserve("cert", ip("10.0.0.9"), later).unwrap().commit();
        assert!(r.reserve("cert", ip("10.0.0.9"), later).is_err());
    }

    #[test]
    fn an_address_registers_ten_an_hour_whatever_the_certificates() {
        let r = registrations(100);
        let t0 = Instant::now();
        for n in 0..10 {
            r.reserve(&format!("c{n}"), ip("192.0.2.1"), t0)
                .unwrap()
                .commit();
        }
        let over = r.reserve("c10", ip("192.0.2.1"), t0).unwrap_err();
        assert_eq!(over.by, LimitedBy::Address);
        assert_eq!(
            over.to_string(),
            "too many new nicks from this address (at most 10 per hour); try again in 6 minutes"
        );
        // Refused by the address: the certificate's share was not taken.
        for _ in 0..3 {
            r.reserve("c10", ip("192.0.2.2"), t0).unwrap().commit();
        }
        // IPv6 counts by /64; IPv4-mapped addresses as IPv4.
        for n in 0..10 {
            r.reserve(&format!("v6-{n}"), ip(&format!("2001:db8::{n:x}")), t0)
                .unwrap()
                .commit();
        }
        let over = r
            .reserve("v6-x", ip("2001:db8::ffff:1234:5678:9abc"), t0)
            .unwrap_err();
        assert_eq!(over.by, LimitedBy::Address);
        r.reserve("v6-y", ip("2001:db8:0:1::1"), t0)
            .unwrap()
            .commit();
        assert_eq!(address_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert!(r.reserve("v4-mapped", ip("::ffff:192.0.2.1"), t0).is_err());
    }

    #[test]
    fn a_registration_that_does_not_happen_gives_its_share_back() {
        let r = registrations(100);
        let t0 = Instant::now();
        for _ in 0..50 {
            // Refused later (nick in use, look-alike, shutdown...): dropped, not committed.
            drop(r.reserve("cert", ip("10.0.0.1"), t0).unwrap());
        }
        for _ in 0..3 {
            r.reserve("cert", ip("10.0.0.1"), t0).unwrap().commit();
        }
        assert!(r.reserve("cert", ip("10.0.0.1"), t0).is_err());
    }

    #[test]
    fn memory_stays_bounded_under_many_certificates_and_addresses() {
        let r = registrations(64);
        let t0 = Instant::now();
        for n in 0..10_000u32 {
            let addr = IpAddr::from(n.to_be_bytes());
            let _ = r.reserve(&format!("cert-{n}"), addr, t0);
        }
        assert_eq!(r.tracked(), (64, 64));
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
