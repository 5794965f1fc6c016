//! The key directory's rules (protocol 6): publishing an account's keys, handing out bundles
//! under the limits that keep anyone from draining another user's one-time prekeys, and telling
//! an owner online that its one-time prekeys run low.
//!
//! - Bundle fetches are limited per account (a token bucket, `bundle_fetch_burst` at once and
//!   `bundle_fetches_per_minute`), not per connection: reconnecting does not refill it.
//! - One requester gets at most one one-time prekey of one target per
//!   `one_time_prekey_reuse_window`; within it the bundle carries the signed prekey alone.
//!
//! Both are kept in bounded LRU maps, under their own lock (never the hub's state lock: no
//! fan-out happens here). The store does the rest: a one-time prekey is deleted in the
//! transaction that reads it.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;
use mm_common::prekeys::{KeyUpload, PREKEYS_LOW};
use mm_common::protocol::{nick_key, ServerMsg};
use mm_common::rate::TokenBucket;

use super::rooms::encode;
use super::Hub;
use crate::config::Limits;
use crate::store::{Published, Reply, StoreError, Taken};

/// Most accounts whose fetch bucket is remembered; the least recently used is forgotten first
/// (a forgotten bucket is full again: at worst one more burst for that account).
const BUCKETS_TRACKED: usize = 65_536;

/// Most (requester, target) pairs remembered for the reuse window; beyond it the least
/// recently used is forgotten (that requester may then get one more one-time prekey, still
/// within its fetch limit).
const PAIRS_TRACKED: usize = 65_536;

/// The limits and what they remember.
#[derive(Debug)]
pub(super) struct KeyLimits {
    burst: u32,
    per_sec: f64,
    reuse_window: Duration,
    state: Mutex<Tracked>,
}

#[derive(Debug)]
struct Tracked {
    /// Fetch buckets by requester nick key.
    buckets: LruCache<String, TokenBucket>,
    /// When each (requester, target) pair last took a one-time prekey.
    taken: LruCache<(String, String), Instant>,
}

impl KeyLimits {
    pub(super) fn from_limits(limits: &Limits) -> KeyLimits {
        KeyLimits {
            burst: limits.bundle_fetch_burst.max(1),
            per_sec: f64::from(limits.bundle_fetches_per_minute) / 60.0,
            reuse_window: limits.one_time_prekey_reuse_window,
            state: Mutex::new(Tracked {
                buckets: LruCache::new(
                    NonZeroUsize::new(BUCKETS_TRACKED).unwrap_or(NonZeroUsize::MIN),
                ),
                taken: LruCache::new(NonZeroUsize::new(PAIRS_TRACKED).unwrap_or(NonZeroUsize::MIN)),
            }),
        }
    }
}

/// What a bundle fetch comes to before the store is asked.
#[derive(Debug)]
pub enum Fetch {
    /// Over the requester's fetch limit: try again after this long.
    Limited(Duration),
    /// The store's answer will come here. `one_time`: whether a one-time prekey was asked for
    /// (false within the reuse window).
    Asked {
        /// The store's answer.
        reply: Reply<Taken>,
        /// Whether a one-time prekey was asked for.
        one_time: bool,
    },
}

impl Hub {
    /// Stores the keys `nick` (connection `conn_id`) published; `keys` must have passed
    /// [`KeyUpload::validate`]. The reply comes once they are durable. From now on this
    /// connection may be told again that its one-time prekeys run low.
    ///
    /// # Errors
    /// If the store refuses the work (busy, closed).
    pub fn publish_keys(
        &self,
        conn_id: u64,
        nick: &str,
        keys: KeyUpload,
    ) -> Result<Reply<Published>, StoreError> {
        let key = nick_key(nick);
        if self.lock().closed {
            return Err(StoreError::Closed);
        }
        let reply = self.shared.store.publish_keys(&key, keys)?;
        let mut state = self.lock();
        if let Some(peer) = state.peers.get_mut(&key).filter(|p| p.conn_id == conn_id) {
            peer.prekeys_low_sent = false;
        }
        Ok(reply)
    }

    /// Asks the store for a bundle of `target` for `requester` at `now`, under the fetch limit
    /// and the reuse window (see the module documentation). A fetch refused by the store is
    /// not counted against either.
    ///
    /// # Errors
    /// If the store refuses the work (busy, closed).
    pub fn fetch_bundle(
        &self,
        requester: &str,
        target: &str,
        now: Instant,
    ) -> Result<Fetch, StoreError> {
        if self.lock().closed {
            return Err(StoreError::Closed);
        }
        let limits = &self.shared.key_limits;
        let requester = nick_key(requester);
        let target = nick_key(target);
        let mut tracked = limits.state.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = tracked.buckets.get_or_insert_mut(requester.clone(), || {
            TokenBucket::new(limits.burst, limits.per_sec, now)
        });
        if !bucket.try_take(now) {
            let wait = bucket.wait_time(now);
            // A bucket that never refills (0 per minute) still names a wait: a minute.
            let wait = if wait.is_zero() {
                Duration::from_secs(60)
            } else {
                wait
            };
            return Ok(Fetch::Limited(wait));
        }
        let pair = (requester, target);
        let one_time = match tracked.taken.peek(&pair) {
            Some(&at) => now.saturating_duration_since(at) >= limits.reuse_window,
            None => true,
        };
        match self.shared.store.take_bundle(&pair.1, one_time) {
            Ok(reply) => {
                if one_time {
                    tracked.taken.put(pair, now);
                }
                Ok(Fetch::Asked { reply, one_time })
            }
            Err(e) => {
                if let Some(bucket) = tracked.buckets.get_mut(&pair.0) {
                    bucket.give_back();
                }
                Err(e)
            }
        }
    }

    /// A fetch by `requester` of `target` at `at` that asked for a one-time prekey got none
    /// (none remained, no keys, no such account): it does not count against the reuse window.
    pub fn no_one_time_taken(&self, requester: &str, target: &str, at: Instant) {
        let pair = (nick_key(requester), nick_key(target));
        let mut tracked = self
            .shared
            .key_limits
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if tracked.taken.peek(&pair) == Some(&at) {
            tracked.taken.pop(&pair);
        }
    }

    /// A fetch left `target` with `remaining` one-time prekeys: if that is below
    /// [`PREKEYS_LOW`] and `target` is online, tells it (`PrekeysLow`), once per connection
    /// until it publishes again.
    pub fn one_time_left(&self, target: &str, remaining: u32) {
        if remaining >= PREKEYS_LOW {
            return;
        }
        let key = nick_key(target);
        let mut state = self.lock();
        let Some(peer) = state.peers.get_mut(&key) else {
            return;
        };
        if peer.prekeys_low_sent {
            return;
        }
        peer.prekeys_low_sent = true;
        let msg = ServerMsg::PrekeysLow {
            one_time: remaining,
        };
        state.send_user(&key, encode(&msg));
    }
}
