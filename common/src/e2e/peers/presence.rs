//! What the server says of peers and of our connection: a new connection
//! ([`Sessions::connection_reset`]), a peer's presence, a peer that left or cannot be reached,
//! and a relay refused.

use std::time::Instant;

use super::{Intent, Sessions, State};
use crate::e2e::error::Failure;
use crate::e2e::event::Action;
use crate::protocol::nick_key;

impl Sessions {
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
}
