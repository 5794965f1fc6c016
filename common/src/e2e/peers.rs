//! The peer table ([`Sessions`]): one entry per peer with its session state, what the user
//! wants of the conversation, presence, and the texts waiting for a handshake. Here: the
//! table itself, sending texts, and failing sessions; the user's commands are in [`commands`],
//! what the server says of peers in [`presence`], incoming payloads in [`receive`], timers
//! (handshake timeouts, renewals, automatic restarts with backoff) in [`timers`].

mod commands;
mod presence;
mod receive;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Instant;

use rand_core::OsRng;

use super::config::{E2eConfig, MAX_PEERS};
use super::conversations::{parse_conversations, Saved};
use super::envelope::{encode, Envelope, SessionId};
use super::error::{AbortReason, Failure, Refused};
use super::event::{Action, E2eEvent, Outgoing, Status};
use super::rng::{BoxedRng, SharedRng};
use super::session::{Established, Handshake};
use crate::identity::{Identity, KEY_LEN};
use crate::pins::Pins;
use crate::protocol::nick_key;

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
}
