//! The user's commands on a conversation: `/secure` ([`Sessions::start`]), `/insecure`
//! ([`Sessions::end`]), `/accept-key`, `/verified`, and the safety number to compare.

use std::time::Instant;

use super::{abort, Intent, Sessions, State};
use crate::e2e::config::MAX_PEERS;
use crate::e2e::envelope::Inner;
use crate::e2e::error::{AbortReason, Failure, Refused};
use crate::e2e::event::{Action, E2eEvent};
use crate::e2e::trust::Trust;
use crate::protocol::{nick_key, validate_nick};

impl Sessions {
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
