//! The hub: who is online, and how a message reaches its recipients.
//!
//! Every event for a user — public lines, private lines, joins, leaves — goes into that user's
//! one bounded queue in the order the hub accepted it, so everyone sees one consistent order and
//! a sender's lines never overtake each other. A message meant for many users is encoded once
//! into [`Bytes`] (the payload only: each session's transport frames it as it writes); each
//! queue gets a reference-counted handle, never a copy. When a user's queue is
//! full, that user is disconnected as too slow: nobody ever waits for a slow client.
//!
//! All state sits behind one `std::sync::Mutex` (as in mini-redis' `db.rs`): critical sections
//! are short, never `.await`, and only do map work and non-blocking `try_send`s — including the
//! submissions to the [`Store`], so the store applies them in the hub's order.
//!
//! The hub also keeps the room's recent history in memory, already encoded as `History` messages,
//! so that a login costs a few reference-count increments instead of a database query.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use mm_common::frame;
use mm_common::protocol::{nick_key, validate_nick, LeaveReason, ServerMsg, MAX_MONITORED};
use tokio::sync::mpsc;

use crate::clock::{Clock, SystemClock, DAY_MS};
use crate::config::Limits;
use crate::store::memory::MemoryStore;
use crate::store::{
    Arrival, Body, Line, Loaded, Login, Mail, Options, QueueOutcome, Reply, Store, StoreError,
};

/// Cloneable handle to the shared state.
#[derive(Debug, Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    next_conn_id: AtomicU64,
    outbound_queue: usize,
    relay_hook: Option<RelayHook>,
    store: Arc<dyn Store>,
    history_len: usize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("outbound_queue", &self.outbound_queue)
            .finish_non_exhaustive()
    }
}

/// Sees every relayed payload (sender, recipient, bytes) and returns what to forward. For tests
/// and audits: a test can prove what the server saw of an end-to-end session, or play a
/// malicious relay. The default server has none.
pub type RelayHook = Arc<dyn Fn(&str, &str, Vec<u8>) -> Vec<u8> + Send + Sync>;

#[derive(Debug)]
struct State {
    /// The hub's clock: every timestamp is read under the lock, as the event is accepted.
    clock: Arc<dyn Clock>,
    /// Online users by [`nick_key`].
    peers: HashMap<String, Peer>,
    /// Set by [`Hub::close`]: no more logins or messages are accepted.
    closed: bool,
    /// Id of the next public or private message.
    next_msg_id: u64,
    /// Most bytes of encoded messages that may wait in one user's queue (at least one largest
    /// message).
    max_queued_bytes: usize,
    /// Join and leave notices are sent only while at most this many users are online.
    presence_max_online: usize,
    /// Most personal lines one connection may leave unacknowledged before it counts as too
    /// slow.
    max_unacked: usize,
    /// The newest public lines as encoded `History` messages, oldest first.
    history: VecDeque<Bytes>,
    /// Presence watches ([`Hub::monitor`]): the watched user's [`nick_key`] → the keys of the
    /// online users watching it. Each watcher's own list is in its [`Peer::monitoring`].
    monitors: HashMap<String, HashSet<String>>,
}

impl State {
    /// Whether join/leave notices go out with `online` users in the room: in a large room
    /// they are noise nobody reads, and each costs one queued message per user (O(N²) for N
    /// logins; measured at 312 KiB per connection with 10,000 users).
    fn presence(&self, online: usize) -> bool {
        online <= self.presence_max_online
    }
}

#[derive(Debug)]
struct Peer {
    conn_id: u64,
    nick: String,
    /// The client certificate it logged in with.
    fingerprint: String,
    /// Set when a login with the same certificate takes this nick over.
    replaced: Arc<AtomicBool>,
    queue: mpsc::Sender<Bytes>,
    /// Bytes in `queue`; the session subtracts what it takes out.
    queued_bytes: Arc<AtomicUsize>,
    /// Ids of the personal lines queued live for this connection and not yet acknowledged,
    /// oldest first (they also wait in the user's mailbox in the store).
    unacked: VecDeque<u64>,
    /// Ids of the lines fetched from the mailbox at login ([`Hub::fetched`]) and not yet
    /// acknowledged, oldest first; all lower than any in `unacked`.
    fetched: VecDeque<u64>,
    /// Set when the login could not fetch the whole mailbox (more waited than one fetch
    /// takes): acknowledgements then stop at the last fetched id, so that they never delete
    /// the rows in between that this connection was not given.
    ack_ceiling: Option<u64>,
    /// Keys of the users this connection monitors, at most [`MAX_MONITORED`].
    monitoring: HashSet<String>,
    /// Whether this connection's login registers the nick: its logout is then recorded
    /// durably (an unused account's expiry counts from the end of its registering connection).
    registering: bool,
}

/// Why a message could not be queued for a user.
enum QueueError {
    /// The queue is full, in messages or in bytes.
    Full,
    /// The session is gone.
    Closed,
}

impl Peer {
    /// Queues a personal line (kept in the mailbox until acknowledged), keeping the number of
    /// unacknowledged lines within `max_unacked` as well as the queue's bounds.
    fn enqueue_personal(
        &mut self,
        id: u64,
        encoded: Bytes,
        max_bytes: usize,
        max_unacked: usize,
    ) -> Result<(), QueueError> {
        if self.unacked.len() >= max_unacked {
            return Err(QueueError::Full);
        }
        self.enqueue(encoded, max_bytes)?;
        self.unacked.push_back(id);
        Ok(())
    }

    /// Queues an encoded message, keeping the queue within its message and byte bounds.
    fn enqueue(&self, msg: Bytes, max_bytes: usize) -> Result<(), QueueError> {
        let len = msg.len();
        // Counted before sending so that the session's subtraction can never come first.
        let before = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before.saturating_add(len) > max_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(QueueError::Full);
        }
        self.queue.try_send(msg).map_err(|e| {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => QueueError::Full,
                mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
            }
        })
    }
}

/// A logged-in user's end of the hub, held by their session.
#[derive(Debug)]
pub struct Membership {
    /// This connection's id.
    pub conn_id: u64,
    /// The nick as registered.
    pub nick: String,
    /// Encoded messages (`ServerMsg` payloads, no frame header) for this user, in hub order.
    /// `None` from `recv` means the hub dropped the user because the queue overflowed.
    pub queue: mpsc::Receiver<Bytes>,
    /// Bytes waiting in `queue`: subtract each message's length when taking it out.
    pub queued_bytes: Arc<AtomicUsize>,
    /// Nicks online at the moment of joining (this user included), sorted.
    pub online: Vec<String>,
    /// The room's history at the moment of joining, as encoded `History` messages, oldest
    /// first; every later public line is in `queue`.
    pub history: Vec<Bytes>,
    /// The store's decision on this login ([`Store::login`], submitted in the hub's order):
    /// whether it is admitted (registering the nick if it was free), and the personal lines
    /// waiting in the user's mailbox (sent while offline, or delivered before and never
    /// acknowledged), oldest first. `None` if the store refused the request.
    pub login: Option<Reply<Login>>,
    /// Set when another login with the same certificate replaced this one; the queue then
    /// closes.
    pub replaced: Arc<AtomicBool>,
    /// Whether others are to hear of this login ([`Hub::announce`]): not when it took over the
    /// same account's older connection.
    pub announce: bool,
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// Someone online has that nick (case-insensitively) with another certificate.
    #[error("nick {0} is already in use")]
    NickInUse(String),
    /// The server is shutting down.
    #[error("server is shutting down")]
    Closed,
}

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The recipient is not online.
    #[error("{0} is not online")]
    NoSuchNick(String),
    /// The recipient could not keep up and was disconnected; the message was not delivered.
    #[error("{0} could not keep up and was disconnected; message not delivered")]
    RecipientTooSlow(String),
    /// The server is shutting down.
    #[error("server is shutting down")]
    Closed,
    /// The store cannot take more work right now; the message was not accepted.
    #[error("the server is busy; try again")]
    Busy,
    /// The message could not be encoded (a bug: inputs are validated first).
    #[error("message could not be encoded")]
    Encode,
}

/// An accepted message's id and server timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Message id.
    pub id: u64,
    /// Server time, ms since the Unix epoch.
    pub ts: u64,
}

/// Where a private line went. Either way it was handed to the recipient's mailbox in the store,
/// whose reply says once it is durable (or why it was not kept); answer the sender only then.
#[derive(Debug)]
pub enum PrivateOutcome {
    /// Into the online recipient's queue too (answer `Sent`).
    Delivered(Accepted, Reply<QueueOutcome>),
    /// The recipient is offline, or was just dropped as too slow (answer `Queued`).
    Stored(Accepted, Reply<QueueOutcome>),
}

/// How a hub is put together beyond its limits and store: see [`Hub::builder`].
#[must_use = "a builder does nothing until `build`"]
pub struct HubBuilder<'a> {
    limits: &'a Limits,
    store: Arc<dyn Store>,
    loaded: Loaded,
    hook: Option<RelayHook>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for HubBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubBuilder")
            .field("store", &self.store)
            .field("hook", &self.hook.is_some())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl HubBuilder<'_> {
    /// Passes every relayed payload through `hook` (see [`RelayHook`]); none by default.
    pub fn relay_hook(mut self, hook: Option<RelayHook>) -> Self {
        self.hook = hook;
        self
    }

    /// Reads the time from `clock` (message timestamps, logins and logouts, expiry cutoffs);
    /// [`SystemClock`] by default. Give the store the same clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The hub.
    pub fn build(self) -> Hub {
        let HubBuilder {
            limits,
            store,
            loaded,
            hook,
            clock,
        } = self;
        let history: VecDeque<Bytes> = loaded
            .history
            .into_iter()
            .rev()
            .take(limits.history_len)
            .rev()
            .filter_map(|l| history_message(l.id, l.ts, l.from, l.text))
            .collect();
        Hub {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    clock,
                    peers: HashMap::new(),
                    closed: false,
                    max_queued_bytes: limits.outbound_queue_bytes.max(frame::MAX_FRAME_LEN),
                    presence_max_online: limits.presence_max_online,
                    max_unacked: limits.outbound_queue.max(1),
                    next_msg_id: loaded.last_id.saturating_add(1),
                    history,
                    monitors: HashMap::new(),
                }),
                next_conn_id: AtomicU64::new(1),
                outbound_queue: limits.outbound_queue.max(1),
                relay_hook: hook,
                store,
                history_len: limits.history_len,
            }),
        }
    }
}

impl Hub {
    /// A hub with these limits (`outbound_queue`, `outbound_queue_bytes`,
    /// `presence_max_online`, `history_len`), backed by `store`, starting from what the store
    /// loaded, on the [`SystemClock`], without a relay hook.
    pub fn new(limits: &Limits, store: Arc<dyn Store>, loaded: Loaded) -> Hub {
        Self::builder(limits, store, loaded).build()
    }

    /// A hub with an in-memory store: nothing survives the process. For tests.
    pub fn in_memory(limits: &Limits) -> Hub {
        let store = MemoryStore::new(Options::from_limits(limits));
        Self::new(limits, Arc::new(store), Loaded::default())
    }

    /// As [`Hub::new`], with what [`HubBuilder`] lets a caller change (a relay hook, a clock).
    pub fn builder(limits: &Limits, store: Arc<dyn Store>, loaded: Loaded) -> HubBuilder<'_> {
        HubBuilder {
            limits,
            store,
            loaded,
            hook: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// The hub's clock (give the store the same one).
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.lock().clock)
    }

    /// The store behind this hub.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// A fresh connection id (never 0).
    pub fn next_conn_id(&self) -> u64 {
        self.shared.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent before anything that could panic,
        // so a poisoned lock is still usable; keep serving rather than take the server down.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// [`Hub::join_unannounced`] (registering the nick if it is free), then [`Hub::announce`],
    /// without waiting for the store's answer. For tests and tools: a session waits for it.
    ///
    /// # Errors
    /// As [`Hub::join_unannounced`].
    pub fn join(
        &self,
        conn_id: u64,
        nick: &str,
        fingerprint: &str,
    ) -> Result<Membership, JoinError> {
        let now_ms = self.clock().now_ms();
        let membership = self.join_unannounced(conn_id, nick, fingerprint, now_ms, true)?;
        self.announce(&membership);
        Ok(membership)
    }

    /// Tells the others that `m` came online (a `Joined` notice, when the room is small enough
    /// and it did not take over its own older connection). Called once the login is complete,
    /// so that a login refused after joining (its mailbox could not be read) is never seen.
    pub fn announce(&self, m: &Membership) {
        if !m.announce {
            return;
        }
        let mut state = self.lock();
        let current = state
            .peers
            .get(&nick_key(&m.nick))
            .is_some_and(|p| p.conn_id == m.conn_id);
        if current && !state.closed {
            notify_monitors(&mut state, &m.nick, true);
        }
        if current && !state.closed && state.presence(state.peers.len()) {
            let joined = ServerMsg::Joined {
                ts: state.clock.now_ms(),
                nick: m.nick.clone(),
            };
            broadcast(&mut state, m.conn_id, &joined);
        }
    }

    /// Admits a login of `nick` (it must already satisfy `validate_nick`) with `fingerprint`,
    /// without telling the others yet ([`Hub::announce`]), and hands the rest of the login to
    /// the store ([`Store::login`] with `now_ms` and `register`): the session must wait for
    /// its answer ([`Membership::login`]) and [`Hub::withdraw`] if it does not admit the login.
    ///
    /// The hub's own refusals come first, before the store is asked to do anything, so that a
    /// login refused here leaves no trace in the store (nothing is registered). The returned
    /// `online` list, history and queue fit together: every later event is in the queue. If the
    /// nick is online with the same certificate (a client reconnecting before the server
    /// noticed the old connection died), the new login replaces the old one.
    ///
    /// # Errors
    /// [`JoinError`] if the nick is online with another certificate, or the hub is closed.
    pub fn join_unannounced(
        &self,
        conn_id: u64,
        nick: &str,
        fingerprint: &str,
        now_ms: u64,
        register: bool,
    ) -> Result<Membership, JoinError> {
        let key = nick_key(nick);
        let (tx, rx) = mpsc::channel(self.shared.outbound_queue);
        let mut state = self.lock();
        if state.closed {
            return Err(JoinError::Closed);
        }
        let mut takeover = false;
        if let Some(existing) = state.peers.get(&key) {
            if existing.fingerprint != fingerprint {
                return Err(JoinError::NickInUse(existing.nick.clone()));
            }
            // Dropping the old entry drops its queue's sender: its session sees the queue
            // close, finds `replaced` set, tells its client and ends.
            existing.replaced.store(true, Ordering::Relaxed);
            remove_peer(&mut state, &key);
            takeover = true;
            tracing::info!(conn = conn_id, nick, "login replaces an older connection");
        }
        // Under the lock, so that a private line stored for this user before this point is in
        // what the store returns, and every later one goes to the queue instead. The store
        // writes nothing unless it admits the login.
        let login = match self.shared.store.login(nick, fingerprint, now_ms, register) {
            Ok(reply) => Some(reply),
            Err(e) => {
                tracing::warn!(error = %e, "store refused the login request");
                None
            }
        };
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let replaced = Arc::new(AtomicBool::new(false));
        state.peers.insert(
            key,
            Peer {
                conn_id,
                nick: nick.to_owned(),
                fingerprint: fingerprint.to_owned(),
                replaced: Arc::clone(&replaced),
                queue: tx,
                queued_bytes: Arc::clone(&queued_bytes),
                unacked: VecDeque::new(),
                fetched: VecDeque::new(),
                ack_ceiling: None,
                monitoring: HashSet::new(),
                registering: register,
            },
        );
        let mut online: Vec<String> = state.peers.values().map(|p| p.nick.clone()).collect();
        online.sort_unstable_by_key(|n| nick_key(n));
        let history: Vec<Bytes> = state.history.iter().cloned().collect();
        drop(state);
        Ok(Membership {
            announce: !takeover,
            conn_id,
            nick: nick.to_owned(),
            queue: rx,
            queued_bytes,
            online,
            history,
            login,
            replaced,
        })
    }

    /// Removes a login that never completed (refused after joining, before [`Hub::announce`]):
    /// nobody heard of it, so nobody hears of its end.
    pub fn withdraw(&self, conn_id: u64, nick: &str) {
        let mut state = self.lock();
        remove_if_current(&mut state, conn_id, nick);
    }

    /// Adds `nicks` to the presence watches of `nick`'s connection `conn_id`
    /// ([`ClientMsg::Monitor`](mm_common::protocol::ClientMsg::Monitor)) and queues each one's
    /// presence now; later changes follow in the same queue, so the client sees them in order.
    /// Invalid nicks, and nicks beyond [`MAX_MONITORED`] per connection, are ignored.
    pub fn monitor(&self, conn_id: u64, nick: &str, nicks: &[String]) {
        let mut state = self.lock();
        let me = nick_key(nick);
        let mut notices = Vec::new();
        for watched in nicks {
            if validate_nick(watched).is_err() {
                continue;
            }
            let key = nick_key(watched);
            let Some(peer) = state.peers.get_mut(&me).filter(|p| p.conn_id == conn_id) else {
                return;
            };
            if !peer.monitoring.contains(&key) {
                if peer.monitoring.len() >= MAX_MONITORED {
                    continue;
                }
                peer.monitoring.insert(key.clone());
                state
                    .monitors
                    .entry(key.clone())
                    .or_default()
                    .insert(me.clone());
            }
            let msg = match state.peers.get(&key) {
                Some(p) => ServerMsg::Presence {
                    nick: p.nick.clone(),
                    online: true,
                },
                None => ServerMsg::Presence {
                    nick: watched.clone(),
                    online: false,
                },
            };
            if let Ok(encoded) = frame::encode_message(&msg) {
                notices.push(encoded);
            }
        }
        let Some(peer) = state.peers.get(&me).filter(|p| p.conn_id == conn_id) else {
            return;
        };
        let full = notices.into_iter().any(|f| {
            matches!(
                peer.enqueue(f, state.max_queued_bytes),
                Err(QueueError::Full)
            )
        });
        if full {
            evict(&mut state, &me);
        }
    }

    /// Submits an expiry sweep to the store ([`Store::expire_unused`]): accounts that never
    /// logged in again after their registering connection, registered and last seen more than
    /// `days` days (of [`DAY_MS`]) before now on the hub's clock, at most `limit` of them. An
    /// account last seen exactly `days` days ago is kept; 1 ms later it goes. Those online
    /// (their registering connection is still open) are kept. Under the lock, so that a login
    /// admitted after this point is decided after the sweep.
    ///
    /// # Errors
    /// If the store refuses the work (busy, closed): try again later.
    pub fn expire_unused(&self, days: u32, limit: usize) -> Result<Reply<Vec<String>>, StoreError> {
        let state = self.lock();
        let cutoff_ms = state
            .clock
            .now_ms()
            .saturating_sub(u64::from(days).saturating_mul(DAY_MS));
        let online: Vec<String> = state.peers.keys().cloned().collect();
        self.shared.store.expire_unused(cutoff_ms, online, limit)
    }

    /// Logs a connection out and tells the others, unless the hub already dropped it (or the
    /// server is shutting down, when leave notices are noise).
    pub fn leave(&self, conn_id: u64, nick: &str, reason: LeaveReason) {
        let mut state = self.lock();
        let Some(peer) = remove_if_current(&mut state, conn_id, nick) else {
            return;
        };
        let now_ms = state.clock.now_ms();
        if let Err(e) = self
            .shared
            .store
            .logged_out(&nick_key(nick), now_ms, peer.registering)
        {
            if peer.registering {
                tracing::warn!(error = %e, "the end of a registering connection not recorded; the account's expiry counts from its registration");
            } else {
                tracing::debug!(error = %e, "last-seen time not recorded");
            }
        }
        if !state.closed {
            notify_monitors(&mut state, nick, false);
        }
        if !state.closed && state.presence(state.peers.len() + 1) {
            broadcast(
                &mut state,
                conn_id,
                &ServerMsg::Left {
                    ts: now_ms,
                    nick: nick.to_owned(),
                    reason,
                },
            );
        }
    }

    /// Sends a public line to everyone but its sender and adds it to the history (memory and
    /// store). `text` must already be validated. The reply says when the line is durable:
    /// acknowledge it to the sender only then.
    ///
    /// # Errors
    /// [`SendError::Closed`] when shutting down; [`SendError::Busy`] when the store cannot take
    /// it (then nobody receives it: what is accepted is also stored).
    pub fn publish(
        &self,
        conn_id: u64,
        from: &str,
        text: String,
    ) -> Result<(Accepted, Reply<()>), SendError> {
        let mut state = self.lock();
        if state.closed {
            return Err(SendError::Closed);
        }
        let accepted = next_accepted(&mut state);
        let msg = ServerMsg::Public {
            id: accepted.id,
            ts: accepted.ts,
            from: from.to_owned(),
            text,
        };
        let encoded = frame::encode_message(&msg).map_err(|_| SendError::Encode)?;
        // The message's strings move on into the store's line: one allocation each.
        let ServerMsg::Public { from, text, .. } = msg else {
            return Err(SendError::Encode);
        };
        let line = Line {
            id: accepted.id,
            ts: accepted.ts,
            from,
            text,
        };
        let history = if self.shared.history_len > 0 {
            Some(
                history_message(line.id, line.ts, line.from.clone(), line.text.clone())
                    .ok_or(SendError::Encode)?,
            )
        } else {
            None
        };
        let durable = self
            .shared
            .store
            .append_public(line)
            .map_err(refused_by_store)?;
        if let Some(history) = history {
            if state.history.len() >= self.shared.history_len {
                state.history.pop_front();
            }
            state.history.push_back(history);
        }
        broadcast_encoded(&mut state, conn_id, encoded);
        Ok((accepted, durable))
    }

    /// Sends a private line to `to` (any case): into their mailbox in the store until their
    /// client acknowledges it, and into their queue as well when they are online. `text` must
    /// already be validated.
    ///
    /// # Errors
    /// [`SendError::Closed`] when shutting down, [`SendError::Busy`] when the store refuses (then
    /// nobody receives it).
    pub fn send_private(
        &self,
        from: &str,
        to: &str,
        text: String,
    ) -> Result<PrivateOutcome, SendError> {
        let key = nick_key(to);
        let mut state = self.lock();
        if state.closed {
            return Err(SendError::Closed);
        }
        let accepted = next_accepted(&mut state);
        if !state.peers.contains_key(&key) {
            let mail = Mail {
                id: accepted.id,
                ts: accepted.ts,
                from: from.to_owned(),
                body: Body::Text(text),
            };
            let reply = self
                .shared
                .store
                .queue_mail(&key, mail, Arrival::Offline)
                .map_err(refused_by_store)?;
            return Ok(PrivateOutcome::Stored(accepted, reply));
        }
        let msg = ServerMsg::Private {
            id: accepted.id,
            ts: accepted.ts,
            from: from.to_owned(),
            text,
        };
        let encoded = frame::encode_message(&msg).map_err(|_| SendError::Encode)?;
        // The message's strings move on into the mailbox entry: no copy of the text.
        let ServerMsg::Private { from, text, .. } = msg else {
            return Err(SendError::Encode);
        };
        let mail = Mail {
            id: accepted.id,
            ts: accepted.ts,
            from,
            body: Body::Text(text),
        };
        match self.deliver_live(&mut state, &key, mail, encoded)? {
            (true, reply) => Ok(PrivateOutcome::Delivered(accepted, reply)),
            (false, reply) => Ok(PrivateOutcome::Stored(accepted, reply)),
        }
    }

    /// Relays an opaque payload (end-to-end data) to `to`, who must be online, stamped with the
    /// sender's nick. Like a private line it stays in the recipient's mailbox until
    /// acknowledged; the reply says when that is durable.
    ///
    /// # Errors
    /// [`SendError::NoSuchNick`] if `to` is not online; otherwise as [`Hub::send_private`].
    pub fn relay(
        &self,
        from: &str,
        to: &str,
        payload: Vec<u8>,
    ) -> Result<(Accepted, Reply<QueueOutcome>), SendError> {
        let payload = match &self.shared.relay_hook {
            Some(hook) => hook(from, to, payload),
            None => payload,
        };
        let key = nick_key(to);
        let mut state = self.lock();
        if state.closed {
            return Err(SendError::Closed);
        }
        if !state.peers.contains_key(&key) {
            return Err(SendError::NoSuchNick(to.to_owned()));
        }
        let accepted = next_accepted(&mut state);
        let msg = ServerMsg::Relay {
            id: accepted.id,
            ts: accepted.ts,
            from: from.to_owned(),
            payload,
        };
        let encoded = frame::encode_message(&msg).map_err(|_| SendError::Encode)?;
        // The payload moves on into the mailbox entry: no copy of up to 16 KiB.
        let ServerMsg::Relay { from, payload, .. } = msg else {
            return Err(SendError::Encode);
        };
        let mail = Mail {
            id: accepted.id,
            ts: accepted.ts,
            from,
            body: Body::Relay(payload),
        };
        // Dropped as too slow, or its session is ending: the sender's end-to-end layer must
        // learn now that the peer is unreachable (the payload waits in the mailbox all the
        // same, and at worst ends a stale session at the peer's next login).
        match self.deliver_live(&mut state, &key, mail, encoded)? {
            (true, reply) => Ok((accepted, reply)),
            (false, _) => Err(SendError::RecipientTooSlow(to.to_owned())),
        }
    }

    /// Hands `mail` to the online user `key`'s mailbox, then queues the message `encoded` for
    /// them. Returns
    /// whether it reached their queue (false: they were dropped as too slow, or their session
    /// is ending; it then waits in the mailbox for their next login).
    fn deliver_live(
        &self,
        state: &mut State,
        key: &str,
        mail: Mail,
        encoded: Bytes,
    ) -> Result<(bool, Reply<QueueOutcome>), SendError> {
        let id = mail.id;
        // Stored first: if the store refuses, nobody receives it.
        let reply = self
            .shared
            .store
            .queue_mail(key, mail, Arrival::Live)
            .map_err(refused_by_store)?;
        let (max_bytes, max_unacked) = (state.max_queued_bytes, state.max_unacked);
        let queued = state
            .peers
            .get_mut(key)
            .map(|p| p.enqueue_personal(id, encoded, max_bytes, max_unacked));
        match queued {
            Some(Ok(())) => Ok((true, reply)),
            Some(Err(QueueError::Full)) => {
                evict(state, key);
                Ok((false, reply))
            }
            Some(Err(QueueError::Closed)) | None => Ok((false, reply)),
        }
    }

    /// The login of connection `conn_id` (logged in as `nick`) handed it these mailbox lines
    /// (`ids`, increasing); `complete` says whether that was the whole mailbox.
    pub fn fetched(&self, conn_id: u64, nick: &str, ids: &[u64], complete: bool) {
        let mut state = self.lock();
        if let Some(peer) = state.peers.get_mut(&nick_key(nick)) {
            if peer.conn_id == conn_id {
                peer.fetched = ids.iter().copied().collect();
                if !complete {
                    peer.ack_ceiling = Some(ids.last().copied().unwrap_or(0));
                }
            }
        }
    }

    /// The client of connection `conn_id` (logged in as `nick`) acknowledged every personal
    /// line up to id `up_to`: the lines this connection was given up to there leave the
    /// mailbox. Acknowledgements from a connection that no longer holds the nick are ignored
    /// (its successor is given the lines again). Returns whether it acknowledged at least one
    /// line given to this connection and not acknowledged before: repeats and guesses cost no
    /// store work, and a client that keeps sending them is flooding.
    pub fn received(&self, conn_id: u64, nick: &str, up_to: u64) -> bool {
        let key = nick_key(nick);
        let mut state = self.lock();
        let Some(peer) = state.peers.get_mut(&key) else {
            return false;
        };
        if peer.conn_id != conn_id {
            return false;
        }
        let up_to = peer.ack_ceiling.map_or(up_to, |c| up_to.min(c));
        // The highest given id covered: acknowledging ids never given deletes nothing.
        let covered = |q: &VecDeque<u64>| q.iter().take_while(|&&id| id <= up_to).last().copied();
        let Some(highest) = covered(&peer.unacked).or_else(|| covered(&peer.fetched)) else {
            return false;
        };
        // Under the lock: the store deletes after it stored every line up to `highest`.
        if let Err(e) = self.shared.store.delivered(&key, highest) {
            // Not deleted (the store is failing or behind): kept as unacknowledged, so the
            // client's next acknowledgement (it sends one when it quits) tries again; failing
            // that, the lines come again at the next login, where the client drops repeats.
            tracing::debug!(error = %e, "acknowledged lines not deleted yet");
            return false;
        }
        for q in [&mut peer.fetched, &mut peer.unacked] {
            while q.front().is_some_and(|&id| id <= highest) {
                q.pop_front();
            }
        }
        true
    }

    /// Online nicks, sorted case-insensitively.
    pub fn online(&self) -> Vec<String> {
        let state = self.lock();
        let mut nicks: Vec<String> = state.peers.values().map(|p| p.nick.clone()).collect();
        drop(state);
        nicks.sort_unstable_by_key(|n| nick_key(n));
        nicks
    }

    /// Stops accepting logins and messages. Everything accepted before this call is already in
    /// a queue, so sessions that drain their queue after it deliver all of it.
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// Closes the store after [`Hub::close`]: everything accepted is made durable, with the
    /// last message id given out so that ids keep increasing after a restart.
    ///
    /// # Errors
    /// If the store is already closed.
    pub fn close_store(&self) -> Result<Reply<()>, StoreError> {
        let last_id = self.lock().next_msg_id.saturating_sub(1);
        self.shared.store.close(last_id)
    }
}

/// A store refusal as the sender learns it.
fn refused_by_store(e: StoreError) -> SendError {
    match e {
        StoreError::Closed => SendError::Closed,
        _ => SendError::Busy,
    }
}

/// A public line as the encoded `History` message a newcomer receives.
fn history_message(id: u64, ts: u64, from: String, text: String) -> Option<Bytes> {
    frame::encode_message(&ServerMsg::History { id, ts, from, text }).ok()
}

fn next_accepted(state: &mut State) -> Accepted {
    let id = state.next_msg_id;
    state.next_msg_id = state.next_msg_id.saturating_add(1);
    Accepted {
        id,
        ts: state.clock.now_ms(),
    }
}

/// Encodes `msg` once and queues it for everyone except `skip_conn`.
fn broadcast(state: &mut State, skip_conn: u64, msg: &ServerMsg) {
    match frame::encode_message(msg) {
        Ok(encoded) => broadcast_encoded(state, skip_conn, encoded),
        Err(e) => tracing::error!(error = %e, "notice could not be encoded"),
    }
}

/// Queues the message `encoded` for everyone except `skip_conn`; users whose queue is full are
/// disconnected (and their leaving announced the same way).
fn broadcast_encoded(state: &mut State, skip_conn: u64, encoded: Bytes) {
    let mut too_slow = Vec::new();
    for (key, peer) in &state.peers {
        if peer.conn_id == skip_conn {
            continue;
        }
        if let Err(QueueError::Full) = peer.enqueue(encoded.clone(), state.max_queued_bytes) {
            too_slow.push(key.clone());
        }
    }
    for key in too_slow {
        evict(state, &key);
    }
}

/// Drops a user whose queue is full. Dropping its queue's sender makes its session see the
/// queue close after the messages already in it: it then tells its client and disconnects.
fn evict(state: &mut State, key: &str) {
    if let Some(peer) = remove_peer(state, key) {
        notify_monitors(state, &peer.nick, false);
        tracing::info!(conn = peer.conn_id, nick = %peer.nick, "queue full; disconnecting a slow client");
        let left = ServerMsg::Left {
            ts: state.clock.now_ms(),
            nick: peer.nick,
            reason: LeaveReason::TooSlow,
        };
        // Recursion depth is bounded by the number of users, each evicted at most once.
        if state.presence(state.peers.len() + 1) {
            broadcast(state, peer.conn_id, &left);
        }
    }
}

/// Removes the connection of `key` and its presence watches.
fn remove_peer(state: &mut State, key: &str) -> Option<Peer> {
    let peer = state.peers.remove(key)?;
    for watched in &peer.monitoring {
        if let Some(watchers) = state.monitors.get_mut(watched) {
            watchers.remove(key);
            if watchers.is_empty() {
                state.monitors.remove(watched);
            }
        }
    }
    Some(peer)
}

/// Tells the users monitoring `nick` that it came online or went offline; watchers whose
/// queue is full are disconnected, as for any notice.
fn notify_monitors(state: &mut State, nick: &str, online: bool) {
    let Some(watchers) = state.monitors.get(&nick_key(nick)) else {
        return;
    };
    let msg = ServerMsg::Presence {
        nick: nick.to_owned(),
        online,
    };
    let encoded = match frame::encode_message(&msg) {
        Ok(encoded) => encoded,
        Err(e) => {
            tracing::error!(error = %e, "notice could not be encoded");
            return;
        }
    };
    let mut too_slow = Vec::new();
    for watcher in watchers {
        if let Some(peer) = state.peers.get(watcher) {
            if let Err(QueueError::Full) = peer.enqueue(encoded.clone(), state.max_queued_bytes) {
                too_slow.push(watcher.clone());
            }
        }
    }
    for key in too_slow {
        evict(state, &key);
    }
}

/// Removes `nick` if it still belongs to `conn_id` (a new login may have taken the nick after
/// the hub dropped the old one). Returns what it removed.
fn remove_if_current(state: &mut State, conn_id: u64, nick: &str) -> Option<Peer> {
    let key = nick_key(nick);
    if state.peers.get(&key).is_some_and(|p| p.conn_id == conn_id) {
        remove_peer(state, &key)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    /// Where the tests' manual clocks start (2023-11-14T22:13:20Z).
    const START_MS: u64 = 1_700_000_000_000;

    /// 31 days: past the 30 days the expiry tests use.
    const DAYS_31: Duration = Duration::from_millis(31 * DAY_MS);

    /// A hub with default limits over `store`, on a manual clock standing at [`START_MS`].
    fn on_manual_clock(store: Arc<dyn Store>) -> (Hub, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(START_MS));
        let hub = Hub::builder(&Limits::default(), store, Loaded::default())
            .clock(clock.clone())
            .build();
        (hub, clock)
    }

    fn memory_store(limits: &Limits) -> Arc<dyn Store> {
        Arc::new(MemoryStore::new(Options::from_limits(limits)))
    }

    fn test_hub(outbound_queue: usize, outbound_queue_bytes: usize) -> Hub {
        Hub::in_memory(&Limits {
            outbound_queue,
            outbound_queue_bytes,
            ..Limits::default()
        })
    }

    /// The next message queued for `m` (a whole message: the hub queues no frame headers).
    fn next(m: &mut Membership) -> ServerMsg {
        let msg = m.queue.try_recv().unwrap();
        ServerMsg::decode(&msg).unwrap()
    }

    /// Each test user's certificate: one per nick, case-insensitively.
    fn fp(nick: &str) -> String {
        format!("fp-{}", nick_key(nick))
    }

    /// Registers `nick` in the hub's store (as a login would, at the hub's time) so that lines
    /// can wait for it.
    fn register(hub: &Hub, nick: &str) {
        let now = hub.clock().now_ms();
        let mut reply = hub.store().login(nick, &fp(nick), now, true).unwrap();
        assert!(reply.try_recv().unwrap().is_ok());
    }

    /// A private line that reached an online recipient.
    fn delivered(r: Result<PrivateOutcome, SendError>) -> Accepted {
        match r {
            Ok(PrivateOutcome::Delivered(a, mut reply)) => {
                assert_eq!(reply.try_recv().unwrap().unwrap(), QueueOutcome::Queued);
                a
            }
            other => panic!("not delivered: {other:?}"),
        }
    }

    /// A private line handed to the store, and what it said.
    fn stored(r: Result<PrivateOutcome, SendError>) -> QueueOutcome {
        match r {
            Ok(PrivateOutcome::Stored(_, mut reply)) => reply.try_recv().unwrap().unwrap(),
            other => panic!("not stored: {other:?}"),
        }
    }

    fn drain(m: &mut Membership) {
        while m.queue.try_recv().is_ok() {}
    }

    #[test]
    fn nicks_are_unique_case_insensitively_and_free_again_after_leave() {
        let hub = test_hub(4, usize::MAX);
        let alice = hub.join(1, "Alice", &fp("Alice")).unwrap();
        assert_eq!(
            hub.join(2, "alice", "another key").unwrap_err(),
            JoinError::NickInUse("Alice".into())
        );
        hub.leave(alice.conn_id, "Alice", LeaveReason::Quit);
        assert!(hub.join(3, "ALICE", &fp("ALICE")).is_ok());
    }

    #[test]
    fn join_snapshot_and_queue_fit_together() {
        let hub = test_hub(16, usize::MAX);
        let mut a = hub.join(1, "a", &fp("a")).unwrap();
        let b = hub.join(2, "B", &fp("B")).unwrap();
        assert_eq!(a.online, vec!["a".to_string()]);
        assert_eq!(b.online, vec!["a".to_string(), "B".to_string()]);
        assert!(matches!(next(&mut a), ServerMsg::Joined { nick, .. } if nick == "B"));
        assert!(
            a.queue.try_recv().is_err(),
            "a does not hear of its own join"
        );
    }

    #[test]
    fn public_and_private_keep_the_order_they_were_accepted_in() {
        let hub = test_hub(16, usize::MAX);
        let mut a = hub.join(1, "a", &fp("a")).unwrap();
        let mut b = hub.join(2, "b", &fp("b")).unwrap();
        drain(&mut a);
        let (first, _) = hub.publish(1, "a", "one".into()).unwrap();
        let second = delivered(hub.send_private("a", "b", "two".into()));
        let (third, _) = hub.publish(1, "a", "three".into()).unwrap();
        assert!(first.id < second.id && second.id < third.id);
        assert!(matches!(next(&mut b), ServerMsg::Public { text, .. } if text == "one"));
        assert!(matches!(next(&mut b), ServerMsg::Private { text, .. } if text == "two"));
        assert!(matches!(next(&mut b), ServerMsg::Public { text, .. } if text == "three"));
        assert!(a.queue.try_recv().is_err(), "no echo to the sender");
    }

    #[test]
    fn a_broadcast_frame_is_encoded_once_and_shared() {
        let hub = test_hub(16, usize::MAX);
        let mut members: Vec<Membership> = (1..=3)
            .map(|i| {
                hub.join(i, &format!("u{i}"), &fp(&format!("u{i}")))
                    .unwrap()
            })
            .collect();
        for m in &mut members {
            drain(m);
        }
        hub.publish(1, "u1", "x".into()).unwrap();
        let f2 = members[1].queue.try_recv().unwrap();
        let f3 = members[2].queue.try_recv().unwrap();
        assert_eq!(
            f2.as_ptr(),
            f3.as_ptr(),
            "same allocation, not a copy per recipient"
        );
    }

    #[test]
    fn private_goes_to_one_queue_and_unknown_recipients_are_errors() {
        let hub = test_hub(16, usize::MAX);
        let mut a = hub.join(1, "a", &fp("a")).unwrap();
        let mut b = hub.join(2, "b", &fp("b")).unwrap();
        drain(&mut a);
        delivered(hub.send_private("a", "B", "psst".into()));
        assert!(
            matches!(next(&mut b), ServerMsg::Private { from, text, .. } if from == "a" && text == "psst")
        );
        assert!(a.queue.try_recv().is_err());
        assert_eq!(
            stored(hub.send_private("a", "carol", "x".into())),
            QueueOutcome::NoSuchAccount
        );
    }

    #[test]
    fn a_full_queue_disconnects_that_user_only() {
        let hub = test_hub(2, usize::MAX);
        let mut a = hub.join(1, "a", &fp("a")).unwrap();
        let mut slow = hub.join(2, "slow", &fp("slow")).unwrap();
        let mut c = hub.join(3, "c", &fp("c")).unwrap();
        drain(&mut a);
        drain(&mut slow);
        drain(&mut c);
        register(&hub, "slow");
        delivered(hub.send_private("a", "slow", "1".into()));
        delivered(hub.send_private("a", "slow", "2".into()));
        // The third does not fit: slow is dropped and the line waits in the store instead.
        assert_eq!(
            stored(hub.send_private("a", "slow", "3".into())),
            QueueOutcome::Queued
        );
        assert_eq!(hub.online(), vec!["a".to_string(), "c".to_string()]);
        // The slow session still gets what was queued, then sees its queue closed.
        assert!(slow.queue.try_recv().is_ok());
        assert!(slow.queue.try_recv().is_ok());
        assert!(matches!(
            slow.queue.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert!(matches!(
            next(&mut a),
            ServerMsg::Left {
                reason: LeaveReason::TooSlow,
                ..
            }
        ));
        assert!(matches!(
            next(&mut c),
            ServerMsg::Left {
                reason: LeaveReason::TooSlow,
                ..
            }
        ));
        // Its later logout does not announce a second leave.
        hub.leave(2, "slow", LeaveReason::Disconnected);
        assert!(a.queue.try_recv().is_err());
        // A broadcast also evicts a full queue, and the others still get the line.
        hub.publish(3, "c", "x".into()).unwrap();
        hub.publish(3, "c", "y".into()).unwrap();
        hub.publish(3, "c", "z".into()).unwrap();
        assert_eq!(hub.online(), vec!["c".to_string()]);
    }

    #[test]
    fn the_byte_bound_disconnects_before_the_frame_bound() {
        let hub = test_hub(1000, 200_000); // the byte bound is raised to one largest message at least
        let mut a = hub.join(1, "a", &fp("a")).unwrap();
        let slow = hub.join(2, "slow", &fp("slow")).unwrap();
        drain(&mut a);
        let text = "x".repeat(4000);
        let mut sent = 0;
        while hub.online().len() == 2 {
            let _ = hub.send_private("a", "slow", text.clone());
            sent += 1;
            assert!(sent < 1000, "never disconnected");
        }
        // 200 KB of 4 KB messages: about 50, far below the bound of 1000 messages.
        assert!((45..=55).contains(&sent), "{sent}");
        assert!(slow.queued_bytes.load(Ordering::Relaxed) <= 200_000);
    }

    #[test]
    fn queued_bytes_follow_the_queue() {
        let hub = test_hub(16, usize::MAX);
        let mut a = hub.join(1, "a", &fp("a")).unwrap();
        let _b = hub.join(2, "b", &fp("b")).unwrap();
        let joined = a.queue.try_recv().unwrap(); // b's join notice
        assert_eq!(a.queued_bytes.load(Ordering::Relaxed), joined.len());
        delivered(hub.send_private("b", "a", "hello".into()));
        let private = a.queue.try_recv().unwrap();
        assert_eq!(
            a.queued_bytes.load(Ordering::Relaxed),
            joined.len() + private.len()
        );
    }

    #[test]
    fn a_stale_session_cannot_log_out_the_new_owner_of_its_nick() {
        let hub = test_hub(1, usize::MAX);
        let _a = hub.join(1, "a", &fp("a")).unwrap();
        delivered(hub.send_private("x", "a", "1".into()));
        let _ = hub.send_private("x", "a", "2".into()); // evicts conn 1
        let _a2 = hub.join(5, "a", &fp("a")).unwrap();
        hub.leave(1, "a", LeaveReason::Disconnected);
        assert_eq!(hub.online(), vec!["a".to_string()]);
    }

    #[test]
    fn monitored_presence_is_told_whatever_the_room_size_and_bounded() {
        let hub = Hub::in_memory(&Limits {
            presence_max_online: 1,
            ..Limits::default()
        });
        let mut a = hub.join(1, "alice", &fp("alice")).unwrap();
        hub.monitor(
            1,
            "alice",
            &["Bob".into(), "not a nick!".into(), "carol".into()],
        );
        assert_eq!(
            next(&mut a),
            ServerMsg::Presence {
                nick: "Bob".into(),
                online: false
            }
        );
        assert_eq!(
            next(&mut a),
            ServerMsg::Presence {
                nick: "carol".into(),
                online: false
            }
        );
        assert!(a.queue.try_recv().is_err(), "invalid nicks are ignored");
        let _x = hub.join(5, "xavier", &fp("xavier")).unwrap(); // 2 online: no join notices
        let bob = hub.join(2, "bob", &fp("bob")).unwrap();
        assert_eq!(
            next(&mut a),
            ServerMsg::Presence {
                nick: "bob".into(),
                online: true
            }
        );
        assert!(a.queue.try_recv().is_err(), "xavier is not monitored");
        hub.leave(bob.conn_id, "bob", LeaveReason::Quit);
        assert_eq!(
            next(&mut a),
            ServerMsg::Presence {
                nick: "bob".into(),
                online: false
            }
        );
        // Bounded per connection: beyond MAX_MONITORED, nicks are ignored.
        let many: Vec<String> = (0..MAX_MONITORED + 10).map(|i| format!("u{i}")).collect();
        for chunk in many.chunks(64) {
            hub.monitor(1, "alice", chunk);
        }
        drain(&mut a);
        let _late = hub.join(9, &many[MAX_MONITORED + 5], &fp("late")).unwrap();
        assert!(
            a.queue.try_recv().is_err(),
            "a nick beyond the bound is not watched"
        );
        // A watcher that leaves stops being told, and its watches are gone.
        hub.leave(1, "alice", LeaveReason::Quit);
        let _bob = hub.join(3, "bob", &fp("bob")).unwrap();
        assert!(hub.lock().monitors.values().all(|w| !w.contains("alice")));
    }

    #[test]
    fn presence_notices_stop_in_large_rooms() {
        let hub = Hub::in_memory(&Limits {
            presence_max_online: 3,
            ..Limits::default()
        });
        let mut a = hub.join(1, "a", &fp("a")).unwrap();
        let _b = hub.join(2, "b", &fp("b")).unwrap();
        let _c = hub.join(3, "c", &fp("c")).unwrap(); // 3 online: still announced
        let d = hub.join(4, "d", &fp("d")).unwrap(); // 4 online: silent
        assert!(matches!(next(&mut a), ServerMsg::Joined { nick, .. } if nick == "b"));
        assert!(matches!(next(&mut a), ServerMsg::Joined { nick, .. } if nick == "c"));
        assert!(a.queue.try_recv().is_err(), "d's join is not announced");
        assert_eq!(d.online.len(), 4, "the newcomer still gets the whole list");
        hub.leave(4, "d", LeaveReason::Quit); // from 4 to 3: silent
        assert!(a.queue.try_recv().is_err());
        hub.leave(3, "c", LeaveReason::Quit); // from 3 to 2: announced
        assert!(matches!(next(&mut a), ServerMsg::Left { nick, .. } if nick == "c"));
    }

    #[test]
    fn closed_hub_accepts_nothing() {
        let hub = test_hub(4, usize::MAX);
        let _a = hub.join(1, "a", &fp("a")).unwrap();
        hub.close();
        assert_eq!(
            hub.publish(1, "a", "x".into()).map(|(a, _)| a),
            Err(SendError::Closed)
        );
        assert!(matches!(
            hub.send_private("a", "a", "x".into()),
            Err(SendError::Closed)
        ));
        assert_eq!(hub.join(2, "b", &fp("b")).unwrap_err(), JoinError::Closed);
    }

    #[test]
    fn a_login_with_the_same_key_replaces_the_old_connection_quietly() {
        let hub = test_hub(16, usize::MAX);
        let mut watcher = hub.join(1, "w", &fp("w")).unwrap();
        let mut old = hub.join(2, "a", &fp("a")).unwrap();
        drain(&mut watcher);
        let new = hub.join(3, "A", &fp("a")).unwrap();
        assert!(old.replaced.load(Ordering::Relaxed));
        assert!(matches!(
            old.queue.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert!(!new.replaced.load(Ordering::Relaxed));
        assert_eq!(hub.online(), vec!["A".to_string(), "w".to_string()]);
        assert!(watcher.queue.try_recv().is_err(), "no join or leave notice");
        // The old session's logout does not log the new one out.
        hub.leave(2, "a", LeaveReason::Disconnected);
        assert_eq!(hub.online().len(), 2);
    }

    #[test]
    fn history_is_kept_in_order_and_bounded_and_handed_to_newcomers() {
        let hub = Hub::in_memory(&Limits {
            history_len: 2,
            ..Limits::default()
        });
        let a = hub.join(1, "a", &fp("a")).unwrap();
        for text in ["one", "two", "three"] {
            hub.publish(a.conn_id, "a", text.into()).unwrap();
        }
        let b = hub.join(2, "b", &fp("b")).unwrap();
        let texts: Vec<String> = b
            .history
            .iter()
            .map(|f| match ServerMsg::decode(f).unwrap() {
                ServerMsg::History { from, text, .. } => format!("{from}:{text}"),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["a:two", "a:three"]);
    }

    #[test]
    fn lines_for_an_offline_user_wait_for_their_next_login() {
        let hub = test_hub(16, usize::MAX);
        register(&hub, "bob");
        let _a = hub.join(1, "a", &fp("a")).unwrap();
        assert_eq!(
            stored(hub.send_private("a", "bob", "while away".into())),
            QueueOutcome::Queued
        );
        let mut bob = hub.join(2, "bob", &fp("bob")).unwrap();
        let waiting = bob
            .login
            .take()
            .unwrap()
            .try_recv()
            .unwrap()
            .unwrap()
            .waiting;
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].body, Body::Text("while away".into()));
        // Once online, lines go to the queue, not the store.
        delivered(hub.send_private("a", "bob", "live".into()));
    }

    #[test]
    fn an_acknowledgement_the_store_refused_is_taken_again_later() {
        let limits = Limits::default();
        let store = Arc::new(crate::store::memory::FaultyStore::new(
            Options::from_limits(&limits),
        ));
        store.deletes_fail.store(true, Ordering::SeqCst);
        let hub = Hub::new(&limits, store.clone(), Loaded::default());
        let _a = hub.join(1, "a", &fp("a")).unwrap();
        let b = hub.join(2, "b", &fp("b")).unwrap();
        let line = delivered(hub.send_private("a", "b", "x".into()));
        // During the outage the acknowledgement cannot be applied (and counts as nothing)...
        assert!(!hub.received(b.conn_id, "b", line.id));
        assert!(store.deleted.lock().unwrap().is_empty());
        // ...so the same one, sent again (mm sends one when it quits), is new, not a repeat.
        store.deletes_fail.store(false, Ordering::SeqCst);
        assert!(hub.received(b.conn_id, "b", line.id));
        assert_eq!(*store.deleted.lock().unwrap(), [line.id]);
        assert!(!hub.received(b.conn_id, "b", line.id), "now it is a repeat");
    }

    #[test]
    fn only_lines_given_to_the_connection_can_be_acknowledged() {
        let hub = test_hub(16, usize::MAX);
        let a = hub.join(1, "a", &fp("a")).unwrap();
        let b = hub.join(2, "b", &fp("b")).unwrap();
        // Guesses: nothing was given yet, so nothing is acknowledged (and no store work).
        for up_to in [1, 2, 3, u64::MAX] {
            assert!(!hub.received(b.conn_id, "b", up_to));
        }
        let first = delivered(hub.send_private("a", "b", "1".into()));
        let second = delivered(hub.send_private("a", "b", "2".into()));
        assert!(hub.received(b.conn_id, "b", first.id));
        assert!(!hub.received(b.conn_id, "b", first.id), "a repeat");
        assert!(hub.received(b.conn_id, "b", u64::MAX), "covers the second");
        assert!(!hub.received(b.conn_id, "b", second.id + 1));
        // Not from another connection of the account.
        let _ = a;
        assert!(!hub.received(99, "b", u64::MAX));
    }

    #[test]
    fn a_partial_mailbox_fetch_stops_acknowledgements_at_its_last_line() {
        let hub = test_hub(16, usize::MAX);
        register(&hub, "b");
        let _a = hub.join(1, "a", &fp("a")).unwrap();
        stored(hub.send_private("a", "b", "one".into())); // id 1
        stored(hub.send_private("a", "b", "two".into())); // id 2
        let b = hub.join(2, "b", &fp("b")).unwrap();
        // The login got line 1 only: more waited than one fetch takes.
        hub.fetched(b.conn_id, "b", &[1], false);
        let live = delivered(hub.send_private("a", "b", "live".into()));
        assert!(hub.received(b.conn_id, "b", live.id));
        // Only line 1 is gone: line 2 was never given, and the live line waits with it.
        let waiting = hub
            .store()
            .waiting("b")
            .unwrap()
            .try_recv()
            .unwrap()
            .unwrap();
        let ids: Vec<u64> = waiting.iter().map(|m| m.id).collect();
        assert_eq!(ids, [2, live.id]);
    }

    #[test]
    fn an_expiry_sweep_never_deletes_an_account_whose_registering_connection_is_open() {
        let (hub, clock) = on_manual_clock(memory_store(&Limits::default()));
        register(&hub, "offline");
        let online = hub.join(1, "online", &fp("online")).unwrap();
        clock.advance(DAYS_31);
        let mut sweep = hub.expire_unused(30, 100).unwrap();
        assert_eq!(sweep.try_recv().unwrap().unwrap(), ["offline"]);
        // Once it has left, it is unused like any other.
        hub.leave(online.conn_id, "online", LeaveReason::Quit);
        clock.advance(DAYS_31);
        let mut sweep = hub.expire_unused(30, 100).unwrap();
        assert_eq!(sweep.try_recv().unwrap().unwrap(), ["online"]);
    }

    /// Expiry at its boundary through the hub, on a store sharing the hub's clock.
    fn expires_one_ms_after_exactly_n_days(store: Arc<dyn Store>) {
        let (hub, clock) = on_manual_clock(store);
        let answer = |r: Result<Reply<Vec<String>>, StoreError>| r.unwrap().blocking_recv();
        let mut idle = hub.join(1, "idle", &fp("idle")).unwrap();
        let mut used = hub.join(2, "used", &fp("used")).unwrap();
        for m in [&mut idle, &mut used] {
            let login = m.login.take().unwrap().blocking_recv().unwrap().unwrap();
            assert_eq!(login.outcome, crate::store::LoginOutcome::Registered);
        }
        // The registering connections end an hour later; "used" logs in again the next day.
        clock.advance(Duration::from_secs(3600));
        let ended = clock.now_ms();
        hub.leave(idle.conn_id, "idle", LeaveReason::Quit);
        hub.leave(used.conn_id, "used", LeaveReason::Quit);
        clock.advance(Duration::from_millis(DAY_MS));
        let mut again = hub.join(3, "used", &fp("used")).unwrap();
        let login = again
            .login
            .take()
            .unwrap()
            .blocking_recv()
            .unwrap()
            .unwrap();
        assert_eq!(login.outcome, crate::store::LoginOutcome::Known);
        hub.leave(again.conn_id, "used", LeaveReason::Quit);
        // Unused for exactly 30 days: kept.
        clock.set(ended + 30 * DAY_MS);
        assert_eq!(
            answer(hub.expire_unused(30, 100)).unwrap().unwrap(),
            Vec::<String>::new()
        );
        // 1 ms later: expired; an account used again never is.
        clock.advance(Duration::from_millis(1));
        assert_eq!(
            answer(hub.expire_unused(30, 100)).unwrap().unwrap(),
            ["idle"]
        );
        clock.advance(Duration::from_millis(1000 * DAY_MS));
        assert_eq!(
            answer(hub.expire_unused(30, 100)).unwrap().unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_account_unused_for_exactly_n_days_expires_1_ms_later_and_not_before() {
        let limits = Limits::default();
        expires_one_ms_after_exactly_n_days(memory_store(&limits));
        let (store, _) = crate::store::sqlite::SqliteStore::open_in_memory(
            Options::from_limits(&limits),
            Arc::new(ManualClock::new(START_MS)),
        )
        .unwrap();
        expires_one_ms_after_exactly_n_days(Arc::new(store));
    }

    #[test]
    fn lines_and_notices_carry_the_time_of_the_hub_clock_when_accepted() {
        let (hub, clock) = on_manual_clock(memory_store(&Limits::default()));
        let ts = |msg: ServerMsg| match msg {
            ServerMsg::Joined { ts, .. }
            | ServerMsg::Left { ts, .. }
            | ServerMsg::Public { ts, .. }
            | ServerMsg::Private { ts, .. }
            | ServerMsg::Relay { ts, .. }
            | ServerMsg::History { ts, .. } => ts,
            other => panic!("{other:?}"),
        };
        let mut a = hub.join(1, "a", &fp("a")).unwrap();
        clock.advance(Duration::from_millis(7));
        let mut b = hub.join(2, "b", &fp("b")).unwrap();
        assert_eq!(ts(next(&mut a)), START_MS + 7, "b's join notice");
        clock.advance(Duration::from_millis(5));
        let (public, _) = hub.publish(1, "a", "one".into()).unwrap();
        assert_eq!(public.ts, START_MS + 12);
        assert_eq!(ts(next(&mut b)), START_MS + 12);
        clock.advance(Duration::from_millis(1));
        let private = delivered(hub.send_private("a", "b", "two".into()));
        assert_eq!(private.ts, START_MS + 13);
        assert_eq!(ts(next(&mut b)), START_MS + 13);
        clock.advance(Duration::from_millis(1));
        let (relay, _) = hub.relay("a", "b", vec![1]).unwrap();
        assert_eq!(relay.ts, START_MS + 14);
        assert_eq!(ts(next(&mut b)), START_MS + 14);
        // Kept as accepted: the history a newcomer gets, the mailbox a login fetches.
        clock.advance(Duration::from_secs(3600));
        let c = hub.join(3, "c", &fp("c")).unwrap();
        let history = ServerMsg::decode(&c.history[0]).unwrap();
        assert_eq!(ts(history), START_MS + 12);
        let waiting = hub
            .store()
            .waiting("b")
            .unwrap()
            .try_recv()
            .unwrap()
            .unwrap();
        let times: Vec<u64> = waiting.iter().map(|m| m.ts).collect();
        assert_eq!(times, [START_MS + 13, START_MS + 14]);
        // A clock stepped back: timestamps follow it, ids do not.
        clock.set(START_MS);
        let (earlier, _) = hub.publish(1, "a", "three".into()).unwrap();
        assert_eq!(earlier.ts, START_MS);
        assert!(earlier.id > relay.id);
        hub.leave(b.conn_id, "b", LeaveReason::Quit);
        drain(&mut a);
        hub.leave(c.conn_id, "c", LeaveReason::Quit);
        assert_eq!(ts(next(&mut a)), START_MS, "c's leave notice");
    }

    #[test]
    fn ids_continue_after_what_the_store_loaded() {
        let limits = Limits::default();
        let store = Arc::new(MemoryStore::new(Options::from_limits(&limits)));
        let loaded = Loaded {
            history: Vec::new(),
            last_id: 41,
        };
        let hub = Hub::new(&limits, store, loaded);
        let a = hub.join(1, "a", &fp("a")).unwrap();
        assert_eq!(hub.publish(a.conn_id, "a", "x".into()).unwrap().0.id, 42);
    }
}
