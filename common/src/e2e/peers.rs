//! The peer table ([`Sessions`]): one entry per peer with its sessions, what the user wants
//! of the conversation, the texts waiting for the peer's keys, and the decrypted messages not
//! acknowledged yet; plus our own prekeys ([`super::keys`]). Here: the table, statuses and
//! failing; sending in [`send`], incoming payloads in [`receive`], the user's commands in
//! [`commands`], the key directory in [`directory`], saving in [`saved`].

mod commands;
mod directory;
mod notice;
mod receive;
mod saved;

pub use saved::StateError;
mod send;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::Instant;

use rand_core::{CryptoRngCore, OsRng};

use super::config::{E2eConfig, MAX_PEERS, MAX_PINS};
use super::error::{Failure, Refused};
use super::event::{Action, E2eEvent, Status};
use super::keys::OwnKeys;
use super::ratchet::Ratchet;
use super::trust::check_peer_key;
use crate::identity::{Identity, KEY_LEN};
use crate::pins::Pins;
use crate::protocol::nick_key;

/// A cryptographically secure random number generator, as [`Sessions::with_rng`] takes it.
pub type BoxedRng = Box<dyn CryptoRngCore + Send>;

/// What the user wants of a conversation; saved across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    /// Nothing said: end-to-end if [`E2eConfig::end_to_end_by_default`].
    Default,
    /// The user said `/secure`, or a session came up: only encrypted from now on.
    Secure,
    /// The user said `/insecure`: plain.
    Plain,
}

/// The X3DH start we attach to our messages until the peer answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StartParams {
    signed_prekey: u32,
    one_time: Option<u32>,
}

/// One Double Ratchet session with a peer.
struct Session {
    ratchet: Ratchet,
    /// The initiator's ephemeral key (EK_A): names the session on both sides.
    ephemeral: [u8; KEY_LEN],
    /// Set while we started the session and the peer has not answered in it.
    start: Option<StartParams>,
}

/// Where the setting-up of a session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Setup {
    /// Nothing running.
    Idle,
    /// The peer's keys were asked for at this time.
    Fetching(Instant),
    /// The last attempt failed (a [`Failure::is_blocking`] one blocks sending).
    Failed(Failure),
}

struct Peer {
    nick: String,
    intent: Intent,
    /// The current session first; at most [`super::config::MAX_SESSIONS_PER_PEER`].
    sessions: Vec<Session>,
    /// The identity key of the sessions.
    peer_key: Option<[u8; KEY_LEN]>,
    setup: Setup,
    /// Texts waiting for the peer's keys, with their tags, and whether each goes plain (typed
    /// after `/insecure`: it waits behind the others, so that a conversation keeps its order).
    queued: VecDeque<(String, u64, bool)>,
    /// Decrypted messages whose relay the server has not had acknowledged yet, by relay id.
    unacknowledged: BTreeMap<u64, Unacknowledged>,
    /// Relays that authenticated under a changed key not accepted yet, oldest first: processed
    /// again at `/accept-key`. At most [`super::config::MAX_HELD_PER_PEER`].
    held: VecDeque<Held>,
    /// How many held relays were dropped over the bounds since the last `/accept-key`.
    held_dropped: u64,
    /// The relays the last `/accept-key` took out of [`Peer::held`] whose messages the caller
    /// has not confirmed kept yet ([`Sessions::shown`]): saved as held, so that a client that
    /// stops before it kept them shows them again at its next login; one whose message the
    /// caller could not show and save ([`Sessions::not_shown`]) goes back into `held`, to be
    /// shown by [`Sessions::show_released`] — it was acknowledged to the server when it was
    /// held, so nobody sends it again.
    released: Vec<Held>,
    /// Another copy of this home may hold these sessions too: the next text starts a new
    /// session (fresh keys) instead of sending on them, so that two copies never encrypt under
    /// one message key. They still decrypt.
    renew: bool,
    /// The peer started it and the user never took part (see [`Sessions::peer`]).
    unsolicited: bool,
    /// When the entry was last made or used ([`Sessions::uses`] then): which one makes room.
    last_used: u64,
}

/// A relay held until the user accepts the peer's changed key: the payload as it came, with
/// the server's id (the sender is the peer it is kept under).
#[derive(Clone)]
struct Held {
    id: u64,
    payload: Vec<u8>,
}

/// A decrypted message not acknowledged yet: shown again if the server sends the same bytes
/// under the same id after a restart (or after the client could not show it).
#[derive(Clone)]
struct Unacknowledged {
    /// SHA-256 of the relay payload.
    digest: [u8; 32],
    text: String,
    /// Whether it may be shown again (restored from disk, or not shown): once.
    reshow: bool,
}

impl Peer {
    fn new(nick: &str) -> Peer {
        Peer {
            nick: nick.to_owned(),
            intent: Intent::Default,
            sessions: Vec::new(),
            peer_key: None,
            setup: Setup::Idle,
            queued: VecDeque::new(),
            unacknowledged: BTreeMap::new(),
            held: VecDeque::new(),
            held_dropped: 0,
            released: Vec::new(),
            renew: false,
            unsolicited: false,
            last_used: 0,
        }
    }

    /// Whether the entry holds nothing: no session, no text waiting, no block, nothing said by
    /// the user, nothing to show again.
    fn holds_nothing(&self) -> bool {
        self.sessions.is_empty()
            && self.queued.is_empty()
            && self.unacknowledged.is_empty()
            && self.intent == Intent::Default
            && matches!(self.setup, Setup::Idle | Setup::Failed(_))
            && self.blocked().is_none()
            && self.held.is_empty()
    }

    /// The blocking failure, if the conversation is blocked.
    fn blocked(&self) -> Option<&Failure> {
        match &self.setup {
            Setup::Failed(f) if f.is_blocking() => Some(f),
            _ => None,
        }
    }
}

/// All of one user's end-to-end sessions, and its prekeys. A state machine with no I/O and no
/// clock: callers pass in what arrived and the time, and get back [`Action`]s.
pub struct Sessions {
    me: String,
    identity: Identity,
    pins: Pins,
    config: E2eConfig,
    peers: HashMap<String, Peer>,
    /// Counts the uses of entries ([`Peer::last_used`]): the order in which they make room,
    /// the same in every run (and in the browser's port).
    uses: u64,
    keys: OwnKeys,
    /// When each pin was made in this run (a count, [`Sessions::pin_clock`]): which one makes
    /// room ([`MAX_PINS`]). Not saved: pins loaded count as older than any made since.
    pin_made: HashMap<String, u64>,
    pin_clock: u64,
    /// Every random byte: ephemeral and ratchet keys, prekeys, signatures' nonces.
    rng: BoxedRng,
    /// Telling peers we could not read their messages ([`notice`]); not saved.
    notices: notice::Notices,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys; only who we have sessions with.
        f.debug_struct("Sessions")
            .field("me", &self.me)
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions for `me` with this identity and these pins, with randomness from the operating
    /// system ([`OsRng`]).
    pub fn new(me: &str, identity: Identity, pins: Pins, config: E2eConfig) -> Sessions {
        Sessions::with_rng(me, identity, pins, config, Box::new(OsRng))
    }

    /// [`Sessions::new`] with every random byte drawn from `rng`, which must be a
    /// cryptographically secure generator outside tests (a seeded one makes runs repeatable).
    /// If it fails, what needed it is refused ([`Refused::Crypto`]).
    pub fn with_rng(
        me: &str,
        identity: Identity,
        pins: Pins,
        config: E2eConfig,
        rng: BoxedRng,
    ) -> Sessions {
        Sessions {
            me: me.to_owned(),
            identity,
            pins,
            config,
            peers: HashMap::new(),
            uses: 0,
            keys: OwnKeys::default(),
            pin_made: HashMap::new(),
            pin_clock: 0,
            rng,
            notices: notice::Notices::default(),
        }
    }

    /// Our identity's public key.
    pub fn public_key(&self) -> &[u8; KEY_LEN] {
        self.identity.public()
    }

    /// The pins, for saving.
    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    /// The entry for `nick`, made if missing, for something the user does (a text, a
    /// command): from now on the user took part in the conversation (it is not
    /// [`Peer::unsolicited`]). When the table is full, the least recently used entry that holds
    /// nothing makes room, else the least recently used unsolicited one
    /// ([`Sessions::evictable`]); if there is none, [`Refused::TooManyPeers`].
    fn peer(&mut self, nick: &str) -> Result<&mut Peer, Refused> {
        let entry = self.entry_for(nick, false)?;
        entry.unsolicited = false;
        Ok(entry)
    }

    /// The entry for `nick`, made if missing, for a session the peer started: a new entry is
    /// [`Peer::unsolicited`]. Unsolicited entries are at most
    /// [`E2eConfig::max_unsolicited`]: beyond it the least recently used evictable one makes
    /// room; entries the user took part in never do (only ones that hold nothing).
    fn peer_started(&mut self, nick: &str) -> Result<&mut Peer, Refused> {
        self.entry_for(nick, true)
    }

    /// Whether a session `nick` starts could have an entry ([`Sessions::peer_started`]
    /// would not refuse): checked before any of its cryptography, so that a flood of starts
    /// refused for want of room costs little.
    fn room_for_start(&self, nick: &str) -> bool {
        self.peers.contains_key(&nick_key(nick)) || self.room(true).is_ok()
    }

    fn entry_for(&mut self, nick: &str, by_peer: bool) -> Result<&mut Peer, Refused> {
        let key = nick_key(nick);
        if !self.peers.contains_key(&key) {
            if let Some(victim) = self.room(by_peer)? {
                self.peers.remove(&victim);
            }
        }
        self.uses = self.uses.saturating_add(1);
        let uses = self.uses;
        let entry = self.peers.entry(key).or_insert_with(|| {
            let mut p = Peer::new(nick);
            p.unsolicited = by_peer;
            p
        });
        entry.last_used = uses;
        Ok(entry)
    }

    /// What must go to make room for a new entry (`by_peer`: for a session the peer started):
    /// `None` if there is room already, or the key of the entry to remove.
    fn room(&self, by_peer: bool) -> Result<Option<String>, Refused> {
        let least_used = |f: &dyn Fn(&Peer) -> bool| {
            self.peers
                .iter()
                .filter(|(_, p)| f(p))
                .min_by_key(|(_, p)| p.last_used)
                .map(|(k, _)| k.clone())
        };
        let max_peers = self.config.max_peers.min(MAX_PEERS);
        if by_peer {
            let unsolicited = self.peers.values().filter(|p| p.unsolicited).count();
            if unsolicited >= self.config.max_unsolicited.min(max_peers) {
                return least_used(&|p| self.evictable(p))
                    .map(Some)
                    .ok_or(Refused::TooManyPeers);
            }
        }
        if self.peers.len() < max_peers {
            return Ok(None);
        }
        least_used(&Peer::holds_nothing)
            .or_else(|| least_used(&|p| self.evictable(p)))
            .map(Some)
            .ok_or(Refused::TooManyPeers)
    }

    /// Whether `p` is an unsolicited entry that may make room: the peer started it, the user
    /// never took part (sent nothing, said nothing, did not verify the key), and it holds
    /// nothing to show or send (no text waiting or unacknowledged, no block, no key request).
    /// Its key stays pinned: a key change is still caught when the peer comes back.
    fn evictable(&self, p: &Peer) -> bool {
        p.unsolicited
            && p.queued.is_empty()
            && p.unacknowledged.is_empty()
            && p.blocked().is_none()
            && p.held.is_empty()
            && !matches!(p.setup, Setup::Fetching(_))
            && !self.pins.get(&p.nick).is_some_and(|pin| pin.verified)
    }

    /// Whether a key for `nick` could be pinned: `Ok(None)` if there is room (or `nick` has a
    /// pin), `Ok(Some(victim))` for the pin to drop first ([`MAX_PINS`]: the least recently
    /// pinned that is not verified and whose nick has no entry), `Err(())` if none may go.
    fn pin_room(&self, nick: &str) -> Result<Option<String>, ()> {
        if self.pins.len() < MAX_PINS || self.pins.get(nick).is_some() {
            return Ok(None);
        }
        let me = nick_key(nick);
        self.pins
            .iter()
            .filter(|(k, pin)| !pin.verified && **k != me && !self.peers.contains_key(*k))
            .min_by_key(|(k, _)| (self.pin_made.get(*k).copied().unwrap_or(0), *k))
            .map(|(k, _)| Some(k.clone()))
            .ok_or(())
    }

    /// Pins `key` for `nick` (a new peer, trust on first use), dropping a pin to make room
    /// ([`Sessions::pin_room`]). For a session the peer started (`by_peer`) nothing is pinned
    /// when nothing may go (the caller checked first); for the user's own conversation it is
    /// pinned all the same (the user's doing, not a flood's).
    fn pin_new(&mut self, nick: &str, key: &[u8; crate::identity::KEY_LEN], by_peer: bool) {
        match self.pin_room(nick) {
            Ok(Some(victim)) => {
                self.pins.remove(&victim);
                self.pin_made.remove(&victim);
            }
            Ok(None) => {}
            Err(()) if by_peer => return,
            Err(()) => {}
        }
        if self.pins.pin_new(nick, key) {
            self.pin_clock = self.pin_clock.saturating_add(1);
            self.pin_made.insert(nick_key(nick), self.pin_clock);
        }
    }

    /// Where the conversation with `peer` stands.
    pub fn status(&self, peer: &str) -> Status {
        let default = if self.config.end_to_end_by_default {
            Status::Ready
        } else {
            Status::Plain
        };
        let Some(entry) = self.peers.get(&nick_key(peer)) else {
            return default;
        };
        if entry.intent == Intent::Plain {
            return Status::Plain;
        }
        if let Some(f) = entry.blocked() {
            return Status::Failed(f.clone());
        }
        if let (Some(key), false) = (entry.peer_key, entry.sessions.is_empty()) {
            let trust = check_peer_key(&self.pins, self.identity.public(), &entry.nick, &key)
                .unwrap_or(super::trust::Trust::Pinned);
            return Status::Secure { key, trust };
        }
        match &entry.setup {
            Setup::Fetching(_) => Status::Starting,
            Setup::Failed(f) => Status::Failed(f.clone()),
            Setup::Idle if entry.intent == Intent::Secure => Status::Ready,
            Setup::Idle => default,
        }
    }

    /// Fails the setting-up with `peer`: the texts waiting are dropped and reported; a
    /// blocking failure blocks the conversation (and is saved).
    fn fail(&mut self, peer: &str, failure: Failure) -> Vec<Action> {
        let Some(entry) = self.peers.get_mut(&nick_key(peer)) else {
            return Vec::new();
        };
        // The sessions stay (those with the pinned key are still good); only `/accept-key`
        // drops them.
        let blocking = failure.is_blocking();
        entry.setup = Setup::Failed(failure.clone());
        let mut actions = Vec::new();
        let mut unsent = Vec::new();
        let mut plain = Vec::new();
        for (text, line, is_plain) in entry.queued.drain(..) {
            if is_plain {
                // The user chose plain for these: they go, behind the ones dropped.
                plain.push(Action::SendPlain {
                    to: entry.nick.clone(),
                    text,
                    line,
                });
            } else {
                unsent.push(line);
            }
        }
        if blocking {
            actions.push(Action::Persist);
        }
        actions.push(Action::Event(E2eEvent::Failed {
            peer: entry.nick.clone(),
            failure,
            unsent,
        }));
        actions.extend(plain);
        actions
    }

    /// When [`Sessions::tick`] must run next: the earliest deadline of a key request.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| match p.setup {
                Setup::Fetching(since) => Some(since + self.config.fetch_timeout),
                _ => None,
            })
            .min()
    }

    /// Fails the key requests that were not answered in time.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let timeout = self.config.fetch_timeout;
        let late: Vec<String> = self
            .peers
            .values()
            .filter(|p| matches!(p.setup, Setup::Fetching(since) if since + timeout <= now))
            .map(|p| p.nick.clone())
            .collect();
        late.iter()
            .flat_map(|nick| self.fail(nick, Failure::Timeout))
            .collect()
    }

    /// The connection to the server ended: key requests in flight will not be answered.
    /// The texts waiting for them stay queued; [`Sessions::login`] asks again.
    pub fn disconnected(&mut self) {}

    /// The server acknowledged (the client sent `Received`) every personal message up to
    /// `up_to`: their decrypted texts need not be kept for showing again after a crash.
    ///
    /// Kept all the same: the texts of relays released at `/accept-key` and not known to be
    /// shown yet ([`Peer::held`], [`Peer::released`]): they were acknowledged when they were
    /// held, and are shown from here ([`Sessions::show_released`]).
    pub fn acknowledged(&mut self, up_to: u64) {
        for entry in self.peers.values_mut() {
            let mut later = entry.unacknowledged.split_off(&(up_to.saturating_add(1)));
            for h in entry.held.iter().chain(&entry.released) {
                if let Some(kept) = entry.unacknowledged.remove(&h.id) {
                    later.insert(h.id, kept);
                }
            }
            entry.unacknowledged = later;
        }
    }

    /// The caller kept (showed and, where it keeps lines, stored) the message `id` from `peer`:
    /// one released at `/accept-key` is no longer saved as held. Call it for every message
    /// shown; for others it does nothing. Returns whether it was such a message: the saved
    /// state still lists it as held until the next save (a restart before that shows it again).
    pub fn shown(&mut self, peer: &str, id: u64) -> bool {
        let Some(entry) = self.peers.get_mut(&nick_key(peer)) else {
            return false;
        };
        let before = entry.released.len();
        entry.released.retain(|h| h.id != id);
        entry.released.len() != before
    }

    /// Test instrumentation: how many one-time prekey secrets we hold.
    #[cfg(test)]
    pub(super) fn one_time_secrets(&self) -> usize {
        self.keys.one_time.len()
    }
}
