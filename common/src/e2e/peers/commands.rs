//! The user's commands on a conversation: `/secure` ([`Sessions::start`]), `/insecure`
//! ([`Sessions::end`]), `/accept-key`, `/verified`, and the safety number to compare.

use std::time::Instant;

use super::{Intent, Sessions, Setup};
use crate::e2e::error::{Failure, Refused};
use crate::e2e::event::{Action, E2eEvent};
use crate::protocol::{nick_key, validate_nick};

impl Sessions {
    /// `/secure peer`: the conversation is end-to-end from now on (also when end-to-end by
    /// default is off), and a session starts now: the peer's keys are fetched (whether or not
    /// it is online). After a blocking failure other than a key change, this is the retry.
    /// Said while a session is still being set up after `/insecure`: end-to-end again, and the
    /// texts typed after `/insecure` that still wait for the peer's keys go encrypted with the
    /// others (the user's last word was `/secure`).
    ///
    /// Decided before anything changes: a refusal leaves the conversation as it was.
    ///
    /// # Errors
    /// [`Refused`] if there is a session already, one is being set up, the peer is us, or its
    /// key changed (that takes `/accept-key`).
    pub fn start(&mut self, peer: &str, now: Instant) -> Result<Vec<Action>, Refused> {
        validate_nick(peer).map_err(|_| Refused::InvalidNick(peer.to_owned()))?;
        if nick_key(peer) == nick_key(&self.me) {
            return Err(Refused::Yourself);
        }
        if let Some(entry) = self.peers.get(&nick_key(peer)) {
            if let Some(Failure::KeyChanged { .. }) = entry.blocked() {
                return Err(Refused::KeyNotAccepted(entry.nick.clone()));
            }
            if entry.intent == Intent::Secure {
                if !entry.sessions.is_empty() && !entry.renew {
                    return Err(Refused::AlreadySecure(entry.nick.clone()));
                }
                if matches!(entry.setup, Setup::Fetching(_)) {
                    return Err(Refused::AlreadyStarting(entry.nick.clone()));
                }
            }
        }
        let entry = self.peer(peer)?;
        let mut actions = Vec::new();
        if entry.intent != Intent::Secure {
            entry.intent = Intent::Secure;
            // Waiting texts the user had typed for plain go encrypted now.
            for queued in &mut entry.queued {
                queued.2 = false;
            }
            actions.push(Action::Persist);
        }
        let resumed = Action::Event(E2eEvent::Resumed {
            peer: entry.nick.clone(),
        });
        if !entry.sessions.is_empty() && !entry.renew {
            // Secure again after /insecure: the sessions are still there.
            actions.push(resumed);
            return Ok(actions);
        }
        if matches!(entry.setup, Setup::Fetching(_)) {
            // Secure again after /insecure while the keys are still being fetched: the texts
            // waiting go on the session when it comes up.
            actions.push(resumed);
            return Ok(actions);
        }
        let was_blocked = entry.blocked().is_some();
        entry.setup = Setup::Fetching(now);
        if was_blocked {
            actions.push(Action::Persist);
        }
        actions.push(Action::FetchBundle(entry.nick.clone()));
        Ok(actions)
    }

    /// `/insecure peer`: private texts to the peer go plain from now on (shown as such on both
    /// sides), until `/secure peer`. The sessions are kept: messages the peer sends encrypted
    /// still decrypt. Texts typed before and still waiting for the peer's keys go encrypted
    /// when the keys come (they were written for an end-to-end conversation).
    ///
    /// # Errors
    /// [`Refused::AlreadyPlain`] if the conversation is plain already.
    pub fn end(&mut self, peer: &str) -> Result<Vec<Action>, Refused> {
        validate_nick(peer).map_err(|_| Refused::InvalidNick(peer.to_owned()))?;
        if nick_key(peer) == nick_key(&self.me) {
            return Err(Refused::Yourself);
        }
        let by_default = self.config.end_to_end_by_default;
        // Decided before anything changes (a refusal makes no entry, so evicts none).
        let (intent, nick) = self
            .peers
            .get(&nick_key(peer))
            .map_or((Intent::Default, peer), |p| (p.intent, p.nick.as_str()));
        if intent == Intent::Plain || (intent == Intent::Default && !by_default) {
            return Err(Refused::AlreadyPlain(nick.to_owned()));
        }
        let entry = self.peer(peer)?;
        entry.intent = Intent::Plain;
        Ok(vec![
            Action::Persist,
            Action::Event(E2eEvent::Ended {
                peer: entry.nick.clone(),
                unsent: Vec::new(),
            }),
        ])
    }

    /// `/accept-key peer`: after a key change, pins the new key (not verified) and unblocks;
    /// the next text starts a session with it. The messages held meanwhile
    /// ([`E2eEvent::Held`]) are taken now, in the order they came, as if they arrived now
    /// ([`E2eEvent::Released`], then what [`Sessions::receive`] makes of each: the peer's
    /// session start, then its texts). This is the only way they are shown: `/insecure` does
    /// not show them (a plain conversation does not make an unaccepted key trusted). One held
    /// under yet another key blocks the conversation again, and is held again.
    ///
    /// # Errors
    /// [`Refused::NothingToAccept`] if the peer's key did not change.
    pub fn accept_key(&mut self, peer: &str, now: Instant) -> Result<Vec<Action>, Refused> {
        let presented = match self.peers.get(&nick_key(peer)).and_then(|p| p.blocked()) {
            Some(Failure::KeyChanged { presented, .. }) => *presented,
            _ => return Err(Refused::NothingToAccept(peer.to_owned())),
        };
        // The entry exists (it is blocked): never refused here, so nothing changed before.
        let entry = self.peer(peer)?;
        entry.setup = Setup::Idle;
        entry.sessions.clear();
        entry.peer_key = None;
        let held = std::mem::take(&mut entry.held);
        // Until the caller shows them: one it cannot show (its save failed) is held again.
        entry.released = held.iter().cloned().collect();
        entry.held_dropped = 0;
        let nick = entry.nick.clone();
        self.pins.replace(peer, &presented);
        let mut actions = vec![Action::Persist];
        if !held.is_empty() {
            actions.push(Action::Event(E2eEvent::Released {
                peer: nick.clone(),
                key: presented,
                count: held.len(),
            }));
            for h in held {
                actions.extend(self.receive(&nick, h.id, &h.payload, now));
            }
        }
        Ok(actions)
    }

    /// Shows the messages released at `/accept-key` that the caller could not show then (the
    /// save before them failed: [`Sessions::not_shown`] held them again), or that a restart
    /// found still held in a conversation no longer blocked: for each such peer a save, then
    /// what [`Sessions::receive`] makes of each (its text kept since, or the relay decrypted
    /// now). Run at each login ([`Sessions::login`]) and by the caller once a save works again.
    pub fn show_released(&mut self, now: Instant) -> Vec<Action> {
        let mut keys: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.held.is_empty() && p.blocked().is_none())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        let mut actions = Vec::new();
        for key in keys {
            let Some(entry) = self.peers.get_mut(&key) else {
                continue;
            };
            let held = std::mem::take(&mut entry.held);
            entry.released = held.iter().cloned().collect();
            for h in &held {
                if let Some(kept) = entry.unacknowledged.get_mut(&h.id) {
                    kept.reshow = true; // shown from the text kept, once
                }
            }
            let nick = entry.nick.clone();
            actions.push(Action::Persist);
            for h in held {
                actions.extend(self.receive(&nick, h.id, &h.payload, now));
            }
        }
        actions
    }

    /// `/verified peer`: the user compared the safety number ([`Sessions::safety_number`]) and
    /// it matched. It never accepts a changed key: that takes its own explicit step
    /// ([`Sessions::accept_key`]).
    ///
    /// # Errors
    /// [`Refused::NoKey`] if no key is pinned for the peer; [`Refused::KeyNotAccepted`] after
    /// a key change not accepted yet.
    pub fn mark_verified(&mut self, peer: &str, _now: Instant) -> Result<Vec<Action>, Refused> {
        if let Some(Failure::KeyChanged { .. }) =
            self.peers.get(&nick_key(peer)).and_then(|p| p.blocked())
        {
            return Err(Refused::KeyNotAccepted(peer.to_owned()));
        }
        if !self.pins.mark_verified(peer) {
            return Err(Refused::NoKey(peer.to_owned()));
        }
        Ok(vec![Action::Persist])
    }

    /// The safety number with `peer`: from our key and its pinned key — or, after a key
    /// change, the key it presents now (not accepted yet), which is the one both users must
    /// compare before accepting it.
    ///
    /// # Errors
    /// [`Refused::NoKey`] if no key is known for the peer.
    pub fn safety_number(&self, peer: &str) -> Result<String, Refused> {
        let key = match self.peers.get(&nick_key(peer)).and_then(|p| p.blocked()) {
            Some(Failure::KeyChanged { presented, .. }) => *presented,
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
