//! The hub: who is online, and how a message reaches its recipients.
//!
//! A message accepted by the hub gets its id (`ids`) and timestamp ([`Clock`]), is handed to
//! the [`Store`], encoded once into [`Bytes`] (the payload only: each session's transport frames
//! it as it writes), and published on the `bus` to a [`Topic`]: the room's for public lines
//! and room notices, a user's own for personal lines and notices. The bus puts a
//! reference-counted handle — never a copy — into the [`Outbox`] of each subscriber; when an
//! outbox is full, its connection is disconnected as too slow (`fanout`): nobody ever waits
//! for a slow client. Who is online, and who watches whose presence, is `presence`; each
//! room's recent lines are kept encoded in memory (`history`).
//!
//! Every event for a connection passes through its one outbox in the order the hub accepted
//! it, so everyone sees one consistent order and a sender's lines never overtake each other.
//! All state sits behind one `std::sync::Mutex` (as in mini-redis' `db.rs`): critical sections
//! are short, never `.await`, and only do map work and non-blocking queue pushes — including
//! the submissions to the store, so that the store applies them in the hub's order.

pub(crate) mod bus;
mod cluster;
mod fanout;
mod history;
pub(crate) mod ids;
mod keys;
mod messages;
pub mod outbox;
mod presence;
mod room;
mod rooms;
pub mod topic;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use mm_common::frame;
use mm_common::protocol::{nick_key, LeaveReason, ServerMsg};

use crate::clock::{Clock, SystemClock, DAY_MS};
use crate::config::Limits;
use crate::store::memory::MemoryStore;
use crate::store::{Loaded, Login, Options, Reply, Store, StoreError};
use bus::{Bus, LocalBus};
pub use cluster::{ClusterSetup, Ordered, Proposal, RoomSettled, Settled, RECENT_LINES};
use history::History;
use ids::{IdSource, ReservedIds};
pub use keys::Fetch;
pub use messages::{Accepted, PrivateOutcome, SendError, Sent};
pub use outbox::{Closed, Outbox};
use presence::Peer;
use room::RoomTable;
use rooms::RoomLimits;
pub use rooms::{check_words, cluster_settings, HistoryLoad, Joining, RoomError};
pub use topic::{RoomId, Topic};

/// Cloneable handle to the shared state.
#[derive(Debug, Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    next_conn_id: AtomicU64,
    /// Most messages that may wait in one outbox.
    outbound_queue: usize,
    /// Most bytes of encoded messages that may wait in one outbox (at least one largest
    /// message).
    max_queued_bytes: usize,
    relay_hook: Option<RelayHook>,
    store: Arc<dyn Store>,
    room_limits: RoomLimits,
    /// The key directory's fetch limits (`keys`).
    key_limits: keys::KeyLimits,
    /// Whether this hub is one node of several (`cluster`): lines go through the stream.
    clustered: bool,
    /// Set by [`Hub::fence`]: this node lost its lease; sessions end at once, without the
    /// shutdown's grace.
    fenced: AtomicBool,
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

/// Everything behind the hub's lock.
#[derive(Debug)]
struct State {
    /// The hub's clock: every timestamp is read under the lock, as the event is accepted.
    clock: Arc<dyn Clock>,
    /// Online users by [`nick_key`].
    peers: HashMap<String, Peer>,
    /// Where messages are published.
    bus: Box<dyn Bus>,
    /// Where message ids come from.
    ids: Box<dyn IdSource>,
    /// Set by [`Hub::close`]: no more logins or messages are accepted.
    closed: bool,
    /// Join and leave notices are sent only while at most this many users are online.
    presence_max_online: usize,
    /// Most personal lines one connection may leave unacknowledged before it counts as too
    /// slow.
    max_unacked: usize,
    /// The lobby's newest lines.
    history: History,
    /// Every other room.
    rooms: RoomTable,
    /// Most lines of history all rooms but the lobby keep in memory together.
    history_cache_lines: usize,
    /// Presence watches ([`Hub::monitor`]): the watched user's [`nick_key`] → the keys of the
    /// online users watching it. Each watcher's own list is in its [`Peer::monitoring`].
    monitors: HashMap<String, HashSet<String>>,
    /// One node of several: proposals, users of other nodes (`cluster`).
    cluster: Option<cluster::ClusterState>,
}

/// What a login admitted by the hub gets: its outbox and what it must tell its client first.
#[derive(Debug)]
pub struct Joined {
    /// Everything for this connection from now on, in hub order.
    pub outbox: Outbox,
    /// Nicks online at the moment of joining (this user included), sorted — while at most
    /// `presence_max_online` users are online; above that, empty (see `online_count`).
    pub online: Vec<String>,
    /// How many users are online at the moment of joining, this user included.
    pub online_count: usize,
    /// The lobby's history at the moment of joining, as encoded `History` messages, oldest
    /// first; every later public line is in the outbox.
    pub history: Vec<Bytes>,
    /// For each room (but the lobby) the user is a member of whose history is in memory:
    /// `Entered` and the room's history, encoded, to send after the lobby's history; every
    /// later event of these rooms is in the outbox.
    pub rooms: Vec<Bytes>,
    /// The user's other rooms, whose history is being read from the store: complete each
    /// with [`Hub::complete_join`] once the login is admitted.
    pub loading: Vec<HistoryLoad>,
    /// The store's decision on this login ([`Store::login`], submitted in the hub's order):
    /// whether it is admitted (registering the nick if it was free), and the personal lines
    /// waiting in the user's mailbox (sent while offline, or delivered before and never
    /// acknowledged), oldest first. `None` if the store refused the request.
    pub login: Option<Reply<Login>>,
    /// Whether others are to hear of this login ([`Hub::announce`]): not when it took over an
    /// older connection of the same account that they had heard of (it replaces it quietly).
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

/// How a hub is put together beyond its limits and store: see [`Hub::builder`].
#[must_use = "a builder does nothing until `build`"]
pub struct HubBuilder<'a> {
    limits: &'a Limits,
    store: Arc<dyn Store>,
    loaded: Loaded,
    hook: Option<RelayHook>,
    clock: Arc<dyn Clock>,
    bus: Option<Box<dyn Bus>>,
    cluster: Option<ClusterSetup>,
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

    /// Makes this hub one node of several (CLUSTER.md): lines and presence changes are
    /// proposed to the stream through `setup`, and applied from it ([`Hub::apply`]).
    pub fn cluster(mut self, setup: ClusterSetup) -> Self {
        self.cluster = Some(setup);
        self
    }

    /// Publishes through `bus`; a [`LocalBus`] by default.
    #[cfg(test)]
    pub(crate) fn bus(mut self, bus: Box<dyn Bus>) -> Self {
        self.bus = Some(bus);
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
            bus,
            cluster,
        } = self;
        let clustered = cluster.is_some();
        let ids = ReservedIds::new(Arc::clone(&store), loaded.last_id);
        Hub {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    clock,
                    peers: HashMap::new(),
                    bus: bus.unwrap_or_else(|| Box::new(LocalBus::default())),
                    ids: Box::new(ids),
                    closed: false,
                    presence_max_online: limits.presence_max_online,
                    max_unacked: limits.outbound_queue.max(1),
                    history: History::from_lines(
                        loaded.history,
                        limits.history_len,
                        mm_common::protocol::LOBBY,
                    ),
                    rooms: RoomTable::load(
                        loaded.rooms,
                        loaded.room_history,
                        loaded.last_room_id,
                        limits.history_len,
                        // A node of a cluster keeps no room history in memory from the start:
                        // lines other nodes ordered just before may not be committed yet
                        // (CLUSTER.md). Each room's is read from the store when first entered.
                        if cluster.is_some() {
                            0
                        } else {
                            limits.history_cache_lines
                        },
                    ),
                    history_cache_lines: limits.history_cache_lines,
                    monitors: HashMap::new(),
                    cluster: cluster.map(cluster::ClusterState::new),
                }),
                next_conn_id: AtomicU64::new(1),
                outbound_queue: limits.outbound_queue.max(1),
                max_queued_bytes: limits.outbound_queue_bytes.max(frame::MAX_FRAME_LEN),
                relay_hook: hook,
                store,
                room_limits: RoomLimits::from_limits(limits),
                key_limits: keys::KeyLimits::from_limits(limits),
                clustered,
                fenced: AtomicBool::new(false),
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
            bus: None,
            cluster: None,
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
    pub fn join(&self, conn_id: u64, nick: &str, credential: &str) -> Result<Joined, JoinError> {
        let now_ms = self.clock().now_ms();
        let joined = self.join_unannounced(conn_id, nick, credential, now_ms, true)?;
        self.announce(&joined.outbox, joined.announce);
        Ok(joined)
    }

    /// Tells the others that the owner of `outbox` came online (a `Joined` notice, when the
    /// room is small enough, and to its monitors), if `announce` ([`Joined::announce`]: not
    /// when it took over its own older connection). Called once the login is complete, so
    /// that a login refused after joining (its mailbox could not be read) is never seen.
    pub fn announce(&self, outbox: &Outbox, announce: bool) {
        if !announce {
            return;
        }
        let mut state = self.lock();
        if state.closed {
            return;
        }
        let key = nick_key(&outbox.nick);
        let Some(peer) = state
            .peers
            .get_mut(&key)
            .filter(|p| p.conn_id == outbox.conn_id)
        else {
            return; // replaced or dropped meanwhile
        };
        peer.announced = true;
        let moved = peer.moved;
        if let Some(cluster) = state.cluster.as_mut() {
            cluster.tell_presence(&outbox.nick, true, LeaveReason::Quit);
        }
        if moved {
            return;
        }
        let too_slow = state.notify_monitors(&outbox.nick, true);
        state.evict_all(too_slow);
        if state.presence(state.bus.subscribers(&Topic::Room(RoomId::LOBBY))) {
            let joined = ServerMsg::Joined {
                room: "#lobby".into(),
                ts: state.clock.now_ms(),
                nick: outbox.nick.clone(),
            };
            state.notice(outbox.conn_id, &joined);
        }
    }

    /// Admits a login of `nick` (it must already satisfy `validate_nick`) with `credential`,
    /// without telling the others yet ([`Hub::announce`]), and hands the rest of the login to
    /// the store ([`Store::login`] with `now_ms` and `register`): the session must wait for
    /// its answer ([`Joined::login`]) and [`Hub::withdraw`] if it does not admit the login.
    ///
    /// The hub's own refusals come first, before the store is asked to do anything, so that a
    /// login refused here leaves no trace in the store (nothing is registered). The returned
    /// `online` list, history and outbox fit together: every later event is in the outbox. If
    /// the nick is online with the same certificate (a client reconnecting before the server
    /// noticed the old connection died), the new login replaces the old one.
    ///
    /// # Errors
    /// [`JoinError`] if the nick is online with another certificate, or the hub is closed.
    pub fn join_unannounced(
        &self,
        conn_id: u64,
        nick: &str,
        credential: &str,
        now_ms: u64,
        register: bool,
    ) -> Result<Joined, JoinError> {
        let key = nick_key(nick);
        let replaced = Arc::new(AtomicBool::new(false));
        let (sender, outbox) = outbox::outbox(
            conn_id,
            nick,
            &key,
            self.shared.outbound_queue,
            self.shared.max_queued_bytes,
            Arc::clone(&replaced),
        );
        let mut state = self.lock();
        if state.closed {
            return Err(JoinError::Closed);
        }
        // Whether the others heard of the connection this login replaces: then it replaces it
        // quietly; if they did not (that login was still waiting for the store), this one is
        // announced once complete.
        let mut inherited = false;
        if let Some(existing) = state.peers.get(&key) {
            if existing.credential != credential {
                return Err(JoinError::NickInUse(existing.nick.clone()));
            }
            // Unsubscribing the old connection closes its outbox: its session sees it close,
            // finds `replaced` set, tells its client and ends.
            existing.replaced.store(true, Ordering::Relaxed);
            inherited = existing.announced;
            state.remove_peer(&key);
            tracing::info!(conn = conn_id, nick, "login replaces an older connection");
        }
        let mut moved = false;
        if let Some(cluster) = state.cluster.as_mut() {
            // The session claimed the nick for this node first (CLUSTER.md): another node's
            // session of it is being ended (or that node is dead), and everyone saw the user
            // online: they are not told again.
            moved = cluster.remote.remove(&key).is_some();
        }
        // Under the lock, so that a private line stored for this user before this point is in
        // what the store returns, and every later one goes to the outbox instead. The store
        // writes nothing unless it admits the login.
        let login = match self.shared.store.login(nick, credential, now_ms, register) {
            Ok(reply) => Some(reply),
            Err(e) => {
                tracing::warn!(error = %e, "store refused the login request");
                None
            }
        };
        state
            .bus
            .subscribe(Topic::Room(RoomId::LOBBY), sender.clone());
        state.bus.subscribe(Topic::user(&key), sender.clone());
        let mut rooms = Vec::new();
        if register {
            // A new account: memberships still listed under this nick are a released or
            // expired account's, never this one's.
            self.forget_memberships(&mut state, nick, "account released", now_ms);
        }
        let mut loading = Vec::new();
        let history_len = self.shared.room_limits.history_len;
        for id in state.rooms.of_user(&key).to_vec() {
            if state.rooms.start_loading(id) {
                state.bus.subscribe(Topic::Room(id), sender.clone());
                rooms.extend(state.entry_frames(id, &key, false, None));
            } else {
                match self.shared.store.room_history(id, history_len) {
                    Ok(reply) => loading.push(HistoryLoad {
                        room: id,
                        created: false,
                        reply,
                    }),
                    Err(e) => {
                        tracing::warn!(error = %e, room = id.0, "a room's history could not be asked for at login; the user enters it at the next login or /join");
                    }
                }
            }
        }
        state.peers.insert(
            key,
            Peer {
                sender,
                away: None,
                conn_id,
                nick: nick.to_owned(),
                credential: credential.to_owned(),
                replaced,
                unacked: VecDeque::new(),
                fetched: VecDeque::new(),
                ack_ceiling: None,
                monitoring: HashSet::new(),
                announced: inherited,
                registering: register,
                prekeys_low_sent: false,
                moved,
            },
        );
        // The list of who is online goes with a login only while join and leave notices keep
        // it current (`presence_max_online`): above that it would be stale at once, and
        // sending it to every login is O(N²) — 5,000 logins copied 12.5 M nicks, 89% of a
        // join storm's time. The count is in `Welcome`; `Who` lists everyone on request.
        let online_now = state.peers.len() + state.cluster.as_ref().map_or(0, |c| c.remote.len());
        let mut online: Vec<String> = if state.presence(online_now) {
            state
                .peers
                .values()
                .map(|p| &p.nick)
                .chain(Self::remote_nicks(&state))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let history = state.history.snapshot();
        drop(state);
        // One key per nick, not two per comparison: 10,000 nicks online cost ~4 ms otherwise.
        online.sort_by_cached_key(|n| nick_key(n));
        Ok(Joined {
            outbox,
            online,
            online_count: online_now,
            history,
            rooms,
            loading,
            login,
            announce: !inherited,
        })
    }

    /// Removes a login that never completed (refused after joining, before [`Hub::announce`]):
    /// nobody heard of it, so nobody hears of its end.
    pub fn withdraw(&self, conn_id: u64, nick: &str) {
        self.lock().remove_if_current(conn_id, &nick_key(nick));
    }

    /// Adds `nicks` to the presence watches of `nick`'s connection `conn_id`
    /// ([`ClientMsg::Monitor`](mm_common::protocol::ClientMsg::Monitor)) and queues each one's
    /// presence now; later changes follow in the same outbox, so the client sees them in order.
    /// Invalid nicks, and nicks beyond [`MAX_MONITORED`](mm_common::protocol::MAX_MONITORED)
    /// per connection, are ignored.
    pub fn monitor(&self, conn_id: u64, nick: &str, nicks: &[String]) {
        self.lock().monitor(conn_id, &nick_key(nick), nicks);
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
        let key = nick_key(nick);
        let Some(peer) = state.remove_if_current(conn_id, &key) else {
            return;
        };
        let now_ms = state.clock.now_ms();
        // On a cluster every node marks it when it applies the logout, at the same point of
        // the stream (`Event::Offline`): the same mark everywhere.
        let marks = if state.cluster.is_none() {
            state.mark_seen(&key)
        } else {
            Vec::new()
        };
        if !marks.is_empty() {
            // Best effort: a lost mark only shows a few lines as new again.
            let _ = self
                .shared
                .store
                .room(crate::store::RoomChange::Seen(marks));
        }
        if let Err(e) = self.shared.store.logged_out(&key, now_ms, peer.registering) {
            if peer.registering {
                tracing::warn!(error = %e, "the end of a registering connection not recorded; the account's expiry counts from its registration");
            } else {
                tracing::debug!(error = %e, "last-seen time not recorded");
            }
        }
        if peer.announced {
            if let Some(cluster) = state.cluster.as_mut() {
                cluster.tell_presence(nick, false, reason);
            }
        }
        if state.closed || !peer.announced {
            return; // shutting down (notices are noise), or nobody heard of this login
        }
        let too_slow = state.notify_monitors(nick, false);
        state.evict_all(too_slow);
        // The room as it was, with the one who left.
        if state.presence(state.bus.subscribers(&Topic::Room(RoomId::LOBBY)) + 1) {
            let left = ServerMsg::Left {
                room: "#lobby".into(),
                ts: now_ms,
                nick: nick.to_owned(),
                reason,
            };
            state.notice(conn_id, &left);
        }
    }

    /// Online nicks, sorted case-insensitively.
    pub fn online(&self) -> Vec<String> {
        let state = self.lock();
        let mut nicks: Vec<String> = state
            .peers
            .values()
            .map(|p| &p.nick)
            .chain(Self::remote_nicks(&state))
            .cloned()
            .collect();
        drop(state);
        nicks.sort_by_cached_key(|n| nick_key(n));
        nicks
    }

    /// How many rooms there are (besides `#lobby`) and how many users are online: for the
    /// metrics.
    pub fn sizes(&self) -> (usize, usize) {
        let state = self.lock();
        (state.rooms.len(), state.peers.len())
    }

    /// Stops accepting logins and messages. Everything accepted before this call is already in
    /// an outbox, so sessions that drain their outbox after it deliver all of it.
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// [`Hub::close`] because this node lost its cluster lease (CLUSTER.md): its sessions are
    /// to end at once, before another node may be given their nicks.
    pub fn fence(&self) {
        self.shared.fenced.store(true, Ordering::SeqCst);
        self.close();
    }

    /// Whether [`Hub::fence`] was called.
    pub fn is_fenced(&self) -> bool {
        self.shared.fenced.load(Ordering::SeqCst)
    }

    /// Closes the store after [`Hub::close`]: everything accepted is made durable, with the
    /// last message id given out so that ids keep increasing after a restart.
    ///
    /// # Errors
    /// If the store is already closed.
    pub fn close_store(&self) -> Result<Reply<()>, StoreError> {
        let last_id = self.lock().ids.last();
        self.shared.store.close(last_id)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rooms;
