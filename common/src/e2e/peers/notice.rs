//! Telling a peer that we could not read its messages. When a session message comes from a
//! peer with whom we have no session at all (we lost our keys, or this home has a new
//! identity), nothing can ever read it, and the peer would go on sending into the void. So we
//! fetch the peer's keys (as for a first text, on the same fetch) and send it a session start
//! whose inner content is [`Inner::Unreadable`] with how many we could not read: no user text.
//! Under our new key the peer's client blocks the conversation until its user accepts the
//! key, then shows the notice ([`E2eEvent::PeerCouldNotRead`]).
//!
//! A hostile server can forge unreadable relays from any nick: at most one notice per peer per
//! [`NOTICE_INTERVAL`] (remembered in memory for at most [`MAX_NOTICES_REMEMBERED`] peers), at
//! most [`MAX_NOTICES_PENDING`] waiting for keys in all, never to ourselves, never while the
//! conversation is blocked, never a second fetch while one runs, and never for a relay from a
//! peer with whom we have a session (that one is merely unreadable).

use std::collections::BTreeMap;
use std::time::Instant;

use super::{Sessions, Setup};
use crate::e2e::config::{
    MAX_NOTICES_PENDING, MAX_NOTICES_REMEMBERED, MAX_NOTICE_COUNT, NOTICE_INTERVAL,
};
use crate::e2e::envelope::Inner;
use crate::e2e::event::{Action, E2eEvent};
use crate::protocol::nick_key;

/// The notices waiting for a peer's keys, and when each peer was last told.
#[derive(Default)]
pub(super) struct Notices {
    /// By nick key: how many unreadable messages to report once the peer's keys come. Only
    /// while that peer's keys are being fetched (stale ones are dropped).
    pending: BTreeMap<String, u32>,
    /// By nick key: when a notice to the peer was last decided on.
    told: BTreeMap<String, Instant>,
}

impl Sessions {
    /// A session message from `nick` that nothing could read: if we have no session with the
    /// peer at all, it is told (within the bounds). Returns the fetch of its keys, if one
    /// must start.
    pub(super) fn notice_unreadable(&mut self, nick: &str, now: Instant) -> Vec<Action> {
        let key = nick_key(nick);
        if key == nick_key(&self.me) {
            return Vec::new();
        }
        if let Some(entry) = self.peers.get(&key) {
            if !entry.sessions.is_empty() || entry.blocked().is_some() {
                return Vec::new();
            }
        }
        // Only while the fetch that carries them runs.
        let peers = &self.peers;
        self.notices.pending.retain(|k, _| {
            peers
                .get(k)
                .is_some_and(|p| matches!(p.setup, Setup::Fetching(_)))
        });
        if let Some(count) = self.notices.pending.get_mut(&key) {
            *count = count.saturating_add(1).min(MAX_NOTICE_COUNT);
            return Vec::new();
        }
        if self
            .notices
            .told
            .get(&key)
            .is_some_and(|at| now.saturating_duration_since(*at) < NOTICE_INTERVAL)
        {
            return Vec::new();
        }
        if self.notices.pending.len() >= MAX_NOTICES_PENDING || !self.room_for_start(nick) {
            return Vec::new();
        }
        let Ok(entry) = self.peer_started(nick) else {
            return Vec::new();
        };
        let fetch = if matches!(entry.setup, Setup::Fetching(_)) {
            Vec::new() // a text of the user's waits for the keys already: the notice rides along
        } else {
            entry.setup = Setup::Fetching(now);
            vec![Action::FetchBundle(entry.nick.clone())]
        };
        self.notices.pending.insert(key.clone(), 1);
        self.notices.told.insert(key, now);
        while self.notices.told.len() > MAX_NOTICES_REMEMBERED {
            let Some(oldest) = self
                .notices
                .told
                .iter()
                .min_by_key(|(k, at)| (**at, (*k).clone()))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.notices.told.remove(&oldest);
        }
        fetch
    }

    /// The peer's keys came and a session with it is up: the notice waiting for them, if any,
    /// encrypted on it (before the texts that waited).
    pub(super) fn send_notice(&mut self, nick: &str) -> Option<Action> {
        let count = self.notices.pending.remove(&nick_key(nick))?;
        self.encrypt_inner(nick, &Inner::Unreadable { count }, None)
            .ok()
    }

    /// The notice in a message that decrypted and authenticated: saved, then shown.
    pub(super) fn show_notice(nick: &str, count: u32, before: Vec<Action>) -> Vec<Action> {
        let mut actions = vec![Action::Persist];
        actions.extend(before);
        actions.push(Action::Event(E2eEvent::PeerCouldNotRead {
            peer: nick.to_owned(),
            count: count.clamp(1, MAX_NOTICE_COUNT),
        }));
        actions
    }
}
