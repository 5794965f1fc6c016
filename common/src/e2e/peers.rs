//! The peer table ([`Sessions`]): one entry per peer with its session state, what the user
//! wants of the conversation, presence, and the texts waiting for a handshake; the user's
//! commands and what the server says of peers. Incoming payloads are in [`receive`], timers
//! (handshake timeouts, renewals, automatic restarts with backoff) in [`timers`].

mod receive;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Instant;

use rand_core::OsRng;

use super::config::{E2eConfig, MAX_PEERS};
use super::conversations::{parse_conversations, Saved};
use super::envelope::{encode, Envelope, Inner, SessionId};
use super::error::{AbortReason, Failure, Refused};
use super::event::{Action, E2eEvent, Outgoing, Status};
use super::rng::{BoxedRng, SharedRng};
use super::session::{Established, Handshake};
use super::trust::Trust;
use crate::identity::{Identity, KEY_LEN};
use crate::pins::Pins;
use crate::protocol::{nick_key, validate_nick};

/// Where one peer's session stands.
enum State {
    Idle,
    Handshaking(Box<Handshake>),
    Established(Box<Established>),
    Failed(Failure),
}

/// What the user wants of a conversation; saved across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    /// Never secured, or the user said `/insecure`.
    Plain,
    /// The user said `/secure`, or a session came up: only encrypted from now on.
    Secure,
}

struct Peer {
    nick: String,
    state: State,
    intent: Intent,
    /// Whether the peer is online, as far as we know on this connection.
    online: Option<bool>,
    /// Whether we asked the server to monitor the peer on this connection.
    monitored: bool,
    /// Handshakes we started since the last session came up, and when the last one started:
    /// automatic restarts wait [`super::config::retry_wait`] after it.
    attempts: u32,
    last_start: Option<Instant>,
    /// The handshake running was started automatically after an earlier automatic attempt
    /// failed: its start and interruption are not announced again.
    quiet: bool,
    /// The handshake running (if any) was started automatically.
    automatic: bool,
    /// The conversation was blocked for this reason when the peer started the handshake now
    /// running: if it does not complete, the conversation is blocked again (not merely
    /// interrupted).
    blocked_by: Option<Failure>,
    /// Texts waiting for the handshake, with their tags.
    queued: VecDeque<(String, u64)>,
}

/// All of one user's end-to-end sessions.
pub struct Sessions {
    me: String,
    identity: Identity,
    pins: Pins,
    config: E2eConfig,
    peers: HashMap<String, Peer>,
    /// Every random byte: session ids and snow's ephemeral keys.
    rng: SharedRng,
    /// The latest `now` given to any call: what [`Sessions::poll_timeout`] answers when
    /// something is due already.
    latest: Option<Instant>,
    /// Test instrumentation: every session's raw transport keys, as an attacker who stole them
    /// would have them.
    #[cfg(test)]
    stolen: Vec<(SessionId, [u8; 32], [u8; 32])>,
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

/// An [`Envelope::Abort`] of `session` to `to`, for `reason`.
fn abort(to: &str, session: SessionId, reason: AbortReason) -> Action {
    Action::Send {
        to: to.to_owned(),
        payload: encode(&Envelope::Abort { session, reason }),
        line: None,
    }
}

impl Sessions {
    /// Sessions for `me` with this identity and these pins, with randomness from the operating
    /// system ([`OsRng`]).
    pub fn new(me: &str, identity: Identity, pins: Pins, config: E2eConfig) -> Sessions {
        Sessions::with_rng(me, identity, pins, config, Box::new(OsRng))
    }

    /// [`Sessions::new`] with every random byte the sessions need — session ids, and the
    /// ephemeral keys snow generates for each handshake — drawn from `rng`, which must be a
    /// cryptographically secure generator outside tests (a seeded one makes runs repeatable).
    /// If it fails, the handshake that needed it is not started ([`Refused::Crypto`]).
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
            rng: SharedRng::new(rng),
            latest: None,
            #[cfg(test)]
            stolen: Vec::new(),
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

    /// Test instrumentation: the raw keys of every session that came up, in order.
    #[cfg(test)]
    pub(super) fn stolen(&self) -> &[(SessionId, [u8; 32], [u8; 32])] {
        &self.stolen
    }

    /// Test instrumentation: the pins, to alter.
    #[cfg(test)]
    pub(super) fn pins_mut(&mut self) -> &mut Pins {
        &mut self.pins
    }

    /// Test instrumentation: our identity.
    #[cfg(test)]
    pub(super) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Test instrumentation: how many peers have an entry.
    #[cfg(test)]
    pub(super) fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Remembers `now` as the latest time seen.
    fn saw(&mut self, now: Instant) {
        if self.latest.is_none_or(|l| l < now) {
            self.latest = Some(now);
        }
    }

    fn peer(&mut self, nick: &str) -> &mut Peer {
        self.peers.entry(nick_key(nick)).or_insert_with(|| Peer {
            nick: nick.to_owned(),
            state: State::Idle,
            intent: Intent::Plain,
            online: None,
            monitored: false,
            attempts: 0,
            last_start: None,
            quiet: false,
            automatic: false,
            blocked_by: None,
            queued: VecDeque::new(),
        })
    }

    /// Marks the conversation with `nick` as wanting to be secure. Returns the actions that
    /// come with a change: save it, and watch the peer's presence.
    fn want_secure(&mut self, nick: &str) -> Vec<Action> {
        let entry = self.peer(nick);
        let mut actions = Vec::new();
        if entry.intent != Intent::Secure {
            entry.intent = Intent::Secure;
            actions.push(Action::Persist);
        }
        let monitored = self.peers.values().filter(|p| p.monitored).count();
        let entry = self.peer(nick);
        if !entry.monitored && monitored < crate::protocol::MAX_MONITORED {
            entry.monitored = true;
            actions.push(Action::Monitor(entry.nick.clone()));
        }
        actions
    }

    /// The conversations to remember across restarts, one per line: `secure NICK` (secure
    /// wanted), `blocked NICK REASON` (failed in a way that needs the user), `key-changed NICK
    /// HEX` (the peer presented the key HEX, not its pin). Plain conversations are not listed.
    /// The format is [`super::conversations`]'.
    pub fn conversations_text(&self) -> String {
        let mut lines: Vec<String> = self
            .peers
            .values()
            .filter(|p| p.intent == Intent::Secure)
            .map(|p| {
                let failure = match (&p.state, &p.blocked_by) {
                    (State::Handshaking(_), Some(f)) => Some(f),
                    (State::Failed(f), _) => Some(f),
                    _ => None,
                };
                Saved::of(failure).line(&p.nick)
            })
            .collect();
        lines.sort();
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        text
    }

    /// Restores what [`Sessions::conversations_text`] saved (call before the first
    /// connection): secure conversations start [`Status::Interrupted`], blocked ones stay
    /// blocked, and key changes stay unaccepted.
    ///
    /// # Errors
    /// The 1-based number of the first damaged line; nothing is restored then. Refusing is
    /// safer than forgetting: a forgotten conversation would go plain.
    pub fn restore(&mut self, text: &str) -> Result<(), usize> {
        let saved = parse_conversations(text)?;
        if self.peers.len() + saved.len() > MAX_PEERS {
            return Err(MAX_PEERS + 1);
        }
        for (nick, saved) in saved {
            if nick_key(&nick) == nick_key(&self.me) {
                continue;
            }
            let state = match saved {
                Saved::Secure => State::Failed(Failure::NotConnected),
                Saved::Blocked(f) => State::Failed(f),
                Saved::KeyChanged(presented) => match self.pins.get(&nick) {
                    Some(pin) if pin.key != presented => State::Failed(Failure::KeyChanged {
                        pinned: pin.key,
                        presented,
                    }),
                    // Accepted meanwhile (or the pin is gone): secure, not blocked.
                    _ => State::Failed(Failure::NotConnected),
                },
            };
            let entry = self.peer(&nick);
            entry.intent = Intent::Secure;
            entry.state = state;
        }
        Ok(())
    }
    /// A new connection to the server: sessions of the old one cannot continue (the peer saw
    /// us leave). Secure conversations become [`Status::Interrupted`] (blocked ones stay
    /// blocked); texts that waited were the old connection's, which reported them. Returns the
    /// peers to monitor on the new connection (the caller sends them; answers go to
    /// [`Sessions::presence`]), at most [`crate::protocol::MAX_MONITORED`].
    pub fn connection_reset(&mut self) -> Vec<String> {
        let mut monitor = Vec::new();
        for entry in self.peers.values_mut() {
            entry.online = None;
            entry.monitored = false;
            entry.queued.clear();
            entry.attempts = 0;
            entry.last_start = None;
            entry.quiet = false;
            // A blocked conversation whose peer was starting a session stays blocked.
            if let (State::Handshaking(_), Some(blocked)) = (&entry.state, entry.blocked_by.take())
            {
                entry.state = State::Failed(blocked);
            }
            let interrupted = match &entry.state {
                State::Handshaking(_) | State::Established(_) => true,
                State::Failed(f) => f.is_interruption(),
                State::Idle => false,
            };
            if interrupted {
                entry.state = match entry.intent {
                    Intent::Secure => State::Failed(Failure::NotConnected),
                    Intent::Plain => State::Idle,
                };
            }
            if entry.intent == Intent::Secure {
                monitor.push(entry.nick.clone());
            }
        }
        // Beyond the server's bound, the same peers every time (by name); the others restart
        // on the user's next line to them.
        monitor.sort_unstable_by_key(|n| nick_key(n));
        monitor.truncate(crate::protocol::MAX_MONITORED);
        for nick in &monitor {
            if let Some(entry) = self.peers.get_mut(&nick_key(nick)) {
                entry.monitored = true;
            }
        }
        monitor
    }

    /// What the server says of `peer`'s presence (a monitor answer, a join or a leave notice,
    /// or a refused relay for an offline peer). Going offline ends its session; coming online
    /// restarts an interrupted secure conversation (waiting longer after each attempt that
    /// did not come up).
    pub fn presence(&mut self, peer: &str, online: bool, now: Instant) -> Vec<Action> {
        self.saw(now);
        let key = nick_key(peer);
        let Some(entry) = self.peers.get_mut(&key) else {
            return Vec::new();
        };
        entry.online = Some(online);
        if !online {
            return self.fail_if_active(peer, Failure::PeerLeft);
        }
        self.resume_if_due(&key, now, &mut None)
    }

    /// Where the conversation with `peer` stands.
    pub fn status(&self, peer: &str) -> Status {
        let Some(entry) = self.peers.get(&nick_key(peer)) else {
            return Status::Plain;
        };
        match &entry.state {
            State::Failed(f) if f.is_interruption() && entry.intent == Intent::Secure => {
                Status::Interrupted {
                    reason: f.clone(),
                    online: entry.online,
                }
            }
            State::Idle => Status::Plain,
            State::Handshaking(h) => match &h.previous {
                Some(e) => Status::Secure {
                    key: e.peer_key,
                    trust: e.trust,
                },
                None => Status::Starting,
            },
            State::Established(e) => Status::Secure {
                key: e.peer_key,
                trust: e.trust,
            },
            State::Failed(f) => Status::Failed(f.clone()),
        }
    }

    /// `/secure peer`: starts a handshake.
    ///
    /// # Errors
    /// [`Refused`] if there is a session already, the peer is us, or its key changed.
    pub fn start(&mut self, peer: &str, now: Instant) -> Result<Vec<Action>, Refused> {
        self.saw(now);
        validate_nick(peer).map_err(|_| Refused::InvalidNick(peer.to_owned()))?;
        if nick_key(peer) == nick_key(&self.me) {
            return Err(Refused::Yourself);
        }
        if !self.peers.contains_key(&nick_key(peer)) && self.peers.len() >= MAX_PEERS {
            return Err(Refused::TooManyPeers);
        }
        let entry = self.peer(peer);
        match &entry.state {
            State::Established(_) => return Err(Refused::AlreadySecure(entry.nick.clone())),
            State::Handshaking(_) => return Err(Refused::AlreadyStarting(entry.nick.clone())),
            State::Failed(Failure::KeyChanged { .. }) => {
                return Err(Refused::KeyNotAccepted(entry.nick.clone()))
            }
            State::Idle | State::Failed(_) => {}
        }
        // The user asked: start now, whatever the wait after earlier attempts.
        entry.attempts = 0;
        entry.blocked_by = None;
        let mut actions = self.begin(peer, now, false)?;
        actions.extend(self.want_secure(peer));
        Ok(actions)
    }

    /// Starts a handshake with `peer` (no session and no key change to accept), counting the
    /// attempt. An `automatic` attempt after the first one is quiet: no `Starting` event, and
    /// no `Failed` event if it only times out or is interrupted with nothing waiting for it (the
    /// status says where the conversation stands), so that a peer that never answers does not
    /// fill the screen.
    fn begin(&mut self, peer: &str, now: Instant, automatic: bool) -> Result<Vec<Action>, Refused> {
        let (handshake, hello) = self.initiate(peer, now).ok_or(Refused::Crypto)?;
        let entry = self.peer(peer);
        entry.state = State::Handshaking(Box::new(handshake));
        entry.attempts = entry.attempts.saturating_add(1);
        entry.last_start = Some(now);
        entry.quiet = automatic && entry.attempts > 1;
        entry.automatic = automatic;
        let nick = entry.nick.clone();
        let mut actions = vec![Action::Send {
            to: nick.clone(),
            payload: hello,
            line: None,
        }];
        if !entry.quiet {
            actions.push(Action::Event(E2eEvent::Starting {
                peer: nick,
                by_peer: false,
            }));
        }
        Ok(actions)
    }

    /// Builds an initiator handshake with `peer` and its first message, from our identity and
    /// the injected randomness.
    fn initiate(&self, peer: &str, now: Instant) -> Option<(Handshake, Vec<u8>)> {
        Handshake::initiate(&self.rng, self.identity.secret(), &self.me, peer, now)
    }

    /// A text for `peer`: encrypted, queued, or to be sent plain when there is no session.
    /// `line` is the caller's tag for the text: the [`Action::Send`] that carries it has
    /// `line: Some(line)`, and if it is dropped unsent (the session failed or ended while it
    /// waited), the tag is in that event's `unsent`.
    ///
    /// # Errors
    /// [`Refused`] when the session failed (never a silent fallback to plain text) or the
    /// queue is full.
    pub fn send_text(
        &mut self,
        peer: &str,
        text: &str,
        line: u64,
        now: Instant,
    ) -> Result<Outgoing, Refused> {
        self.saw(now);
        let key = nick_key(peer);
        if key == nick_key(&self.me) {
            return Ok(Outgoing::Plain);
        }
        let max_queued = self.config.max_queued;
        let Some(entry) = self.peers.get_mut(&key) else {
            return Ok(Outgoing::Plain);
        };
        match &mut entry.state {
            State::Idle => Ok(Outgoing::Plain),
            State::Failed(Failure::KeyChanged { .. }) => {
                Err(Refused::KeyNotAccepted(entry.nick.clone()))
            }
            State::Failed(failure)
                if !failure.is_interruption() || entry.intent != Intent::Secure =>
            {
                Err(Refused::Blocked {
                    peer: entry.nick.clone(),
                    failure: failure.clone(),
                    online: entry.online,
                })
            }
            State::Failed(_) => {
                // Interrupted: never plain. A new session starts now and the text waits for
                // it — unless the peer is known to be offline (what we know of a peer we do
                // not monitor may be stale: then try, and the server says if it is offline).
                if entry.online == Some(false) && entry.monitored {
                    return Err(Refused::Offline(entry.nick.clone()));
                }
                let nick = entry.nick.clone();
                let mut actions = self.want_secure(&nick);
                actions.extend(self.begin(&nick, now, false)?);
                self.peer(&nick).queued.push_back((text.to_owned(), line));
                Ok(Outgoing::Queued(actions))
            }
            State::Handshaking(h) if h.previous.is_none() => {
                if entry.queued.len() >= max_queued {
                    return Err(Refused::QueueFull(entry.nick.clone()));
                }
                entry.queued.push_back((text.to_owned(), line));
                Ok(Outgoing::Queued(Vec::new()))
            }
            State::Handshaking(_) | State::Established(_) => {
                let actions = self.encrypt_text(&key, text, line, now)?;
                Ok(Outgoing::Secure(actions))
            }
        }
    }

    /// Encrypts a text on the session that currently carries messages for `key`, then rekeys
    /// or re-handshakes if due.
    fn encrypt_text(
        &mut self,
        key: &str,
        text: &str,
        line: u64,
        now: Instant,
    ) -> Result<Vec<Action>, Refused> {
        let rekey_every = self.config.rekey_every;
        let Some(entry) = self.peers.get_mut(key) else {
            return Err(Refused::Crypto);
        };
        let nick = entry.nick.clone();
        let session = match &mut entry.state {
            State::Established(e) => e,
            State::Handshaking(h) => h.previous.as_mut().ok_or(Refused::Crypto)?,
            _ => return Err(Refused::Crypto),
        };
        let (payload, rekey) = session.seal_text(text, rekey_every)?;
        let mut actions = vec![Action::Send {
            to: nick.clone(),
            payload,
            line: Some(line),
        }];
        if let Some(payload) = rekey {
            actions.push(Action::Send {
                to: nick,
                payload,
                line: None,
            });
        }
        actions.extend(self.rehandshake_if_due(key, now));
        Ok(actions)
    }

    /// The session that carries our messages to `key` now.
    fn current_mut(&mut self, key: &str) -> Option<&mut Established> {
        match &mut self.peers.get_mut(key)?.state {
            State::Established(e) => Some(e),
            State::Handshaking(h) => h.previous.as_deref_mut(),
            _ => None,
        }
    }

    /// Marks the session with `peer` failed; queued texts are dropped and reported.
    fn fail(&mut self, peer: &str, failure: Failure) -> Vec<Action> {
        let entry = self.peer(peer);
        let failure = match entry.blocked_by.take() {
            Some(blocked) if failure.is_interruption() => blocked,
            _ => failure,
        };
        let persist = !failure.is_interruption() && entry.intent == Intent::Secure;
        if matches!(failure, Failure::PeerLeft | Failure::Unreachable) {
            entry.online = Some(false);
        }
        let quiet = std::mem::take(&mut entry.quiet)
            && entry.queued.is_empty()
            && failure.is_interruption();
        // A conversation the user never made secure stays plain when a session the peer
        // started fails (the failure is still shown); key problems block it all the same.
        entry.state = match (entry.intent, &failure) {
            (Intent::Plain, f) if !matches!(f, Failure::KeyChanged { .. } | Failure::OwnKey) => {
                State::Idle
            }
            _ => State::Failed(failure.clone()),
        };
        let unsent: Vec<u64> = entry.queued.drain(..).map(|(_, line)| line).collect();
        let mut actions = Vec::new();
        if entry.intent == Intent::Plain && failure.is_interruption() {
            // A session the peer offered did not come up: nothing was secure to begin with.
            actions.push(Action::Event(E2eEvent::NotStarted {
                peer: entry.nick.clone(),
                failure,
                unsent,
            }));
        } else if !quiet {
            actions.push(Action::Event(E2eEvent::Failed {
                peer: entry.nick.clone(),
                failure,
                unsent,
            }));
        }
        if persist {
            actions.push(Action::Persist);
        }
        actions
    }

    /// Tells the peer why we dropped `session`, and fails our side of it.
    fn abort_and_fail(
        &mut self,
        from: &str,
        session: SessionId,
        reason: AbortReason,
        failure: Failure,
    ) -> Vec<Action> {
        let nick = self.peer(from).nick.clone();
        let mut actions = vec![abort(&nick, session, reason)];
        actions.extend(self.fail(from, failure));
        actions
    }

    fn handshake_failed(
        &mut self,
        from: &str,
        session: SessionId,
        failure: Failure,
    ) -> Vec<Action> {
        self.abort_and_fail(from, session, AbortReason::HandshakeFailed, failure)
    }

    fn fail_if_active(&mut self, peer: &str, failure: Failure) -> Vec<Action> {
        match self.peers.get(&nick_key(peer)).map(|p| &p.state) {
            Some(State::Handshaking(_) | State::Established(_)) => self.fail(peer, failure),
            _ => Vec::new(),
        }
    }

    /// The peer went offline: its session cannot continue.
    pub fn peer_left(&mut self, peer: &str) -> Vec<Action> {
        if let Some(entry) = self.peers.get_mut(&nick_key(peer)) {
            entry.online = Some(false);
        }
        self.fail_if_active(peer, Failure::PeerLeft)
    }

    /// The server could not deliver a payload to `peer` (it is offline): its session cannot
    /// continue, and a handshake to it fails at once instead of timing out.
    pub fn unreachable(&mut self, peer: &str) -> Vec<Action> {
        if let Some(entry) = self.peers.get_mut(&nick_key(peer)) {
            entry.online = Some(false);
        }
        self.fail_if_active(peer, Failure::Unreachable)
    }

    /// The server refused to relay one of our messages to `peer` for another reason (busy,
    /// rate limit): the peer would fail to decrypt everything after it, so the session ends
    /// now, visibly; a secure conversation restarts with the next text.
    pub fn relay_refused(&mut self, peer: &str) -> Vec<Action> {
        self.fail_if_active(peer, Failure::RelayRefused)
    }

    /// `/insecure peer`: ends the session (telling the peer, encrypted, if it is up) and allows
    /// plain private messages again.
    ///
    /// # Errors
    /// [`Refused::NoSession`] if there is nothing to end.
    pub fn end(&mut self, peer: &str) -> Result<Vec<Action>, Refused> {
        let key = nick_key(peer);
        let Some(entry) = self.peers.get_mut(&key) else {
            return Err(Refused::NoSession(peer.to_owned()));
        };
        let nick = entry.nick.clone();
        let mut actions = Vec::new();
        match std::mem::replace(&mut entry.state, State::Idle) {
            State::Idle if entry.intent == Intent::Plain => return Err(Refused::NoSession(nick)),
            State::Idle => {}
            State::Established(mut e) => actions.push(Action::Send {
                to: nick.clone(),
                payload: e.seal(&Inner::Close)?,
                line: None,
            }),
            State::Handshaking(h) => match h.previous {
                Some(mut e) => actions.push(Action::Send {
                    to: nick.clone(),
                    payload: e.seal(&Inner::Close)?,
                    line: None,
                }),
                None => actions.push(abort(&nick, h.session, AbortReason::Ended)),
            },
            State::Failed(_) => {}
        }
        let unsent = entry.queued.drain(..).map(|(_, line)| line).collect();
        entry.intent = Intent::Plain;
        entry.blocked_by = None;
        actions.push(Action::Event(E2eEvent::Ended {
            peer: nick,
            by_peer: false,
            unsent,
        }));
        actions.push(Action::Persist);
        Ok(actions)
    }

    /// `/accept-key peer`: after a key change, pins the new key (not verified), unblocks, and
    /// starts a new session unless the peer is known to be offline.
    ///
    /// # Errors
    /// [`Refused::NothingToAccept`] if the peer's key did not change.
    pub fn accept_key(&mut self, peer: &str, now: Instant) -> Result<Vec<Action>, Refused> {
        self.saw(now);
        let key = nick_key(peer);
        let presented = match self.peers.get(&key).map(|p| &p.state) {
            Some(State::Failed(Failure::KeyChanged { presented, .. })) => *presented,
            _ => return Err(Refused::NothingToAccept(peer.to_owned())),
        };
        self.pins.replace(peer, &presented);
        Ok(self.accepted(peer, now))
    }

    /// After the user accepted a changed key: the conversation is secure and interrupted, and
    /// a new session starts now if the peer is online.
    fn accepted(&mut self, peer: &str, now: Instant) -> Vec<Action> {
        let entry = self.peer(peer);
        entry.state = State::Failed(Failure::NotConnected);
        entry.attempts = 0;
        entry.last_start = None;
        let mut actions = vec![Action::Persist];
        let key = nick_key(peer);
        let online = self.peers.get(&key).and_then(|p| p.online) != Some(false);
        if online {
            let nick = self.peer(peer).nick.clone();
            actions.extend(self.begin(&nick, now, false).unwrap_or_default());
        }
        actions
    }

    /// `/verified peer`: the user compared the safety number ([`Sessions::safety_number`]) and
    /// it matched. It never accepts a changed key: that takes its own explicit step
    /// ([`Sessions::accept_key`]), so that a `/verified` meant for an earlier comparison cannot
    /// accept a key that changed since.
    ///
    /// # Errors
    /// [`Refused::NoKey`] if no key is pinned for the peer; [`Refused::KeyNotAccepted`] after
    /// a key change not accepted yet.
    pub fn mark_verified(&mut self, peer: &str, now: Instant) -> Result<Vec<Action>, Refused> {
        self.saw(now);
        let key = nick_key(peer);
        if let Some(State::Failed(Failure::KeyChanged { .. })) =
            self.peers.get(&key).map(|p| &p.state)
        {
            return Err(Refused::KeyNotAccepted(self.peer(peer).nick.clone()));
        }
        if !self.pins.mark_verified(peer) {
            return Err(Refused::NoKey(peer.to_owned()));
        }
        let pinned = self.pins.get(peer).map(|p| p.key);
        if let Some(e) = self.current_mut(&nick_key(peer)) {
            if Some(e.peer_key) == pinned {
                e.trust = Trust::Verified;
            }
        }
        Ok(vec![Action::Persist])
    }

    /// The safety number with `peer`: from our key and its pinned key — or, after a key
    /// change, the key it presents now (not accepted yet), which is the one both users must
    /// compare before accepting it. The peer's side computes the same digits from our key
    /// (it learned ours from the handshake we then dropped).
    ///
    /// # Errors
    /// [`Refused::NoKey`] if no key is known for the peer.
    pub fn safety_number(&self, peer: &str) -> Result<String, Refused> {
        let key = match self.peers.get(&nick_key(peer)).map(|p| &p.state) {
            Some(State::Failed(Failure::KeyChanged { presented, .. })) => *presented,
            _ => {
                self.pins
                    .get(peer)
                    .ok_or_else(|| Refused::NoKey(peer.to_owned()))?
                    .key
            }
        };
        Ok(crate::safety::safety_number(
            &self.me,
            self.identity.public(),
            peer,
            &key,
        ))
    }
}
