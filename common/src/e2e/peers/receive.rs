//! Incoming relay payloads: a message of a session we have, or the start of a new one (X3DH
//! as the responder). Only what decrypted and authenticated is ever shown; anything else is
//! reported as unreadable (or replayed) and changes nothing. A peer entry is made only for a
//! start that authenticated, so junk from invented nicks cannot fill the table.

use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{Held, Intent, Session, Sessions, Setup, Unacknowledged};
use crate::e2e::config::{MAX_HELD, MAX_HELD_PER_PEER, MAX_SESSIONS_PER_PEER, MAX_UNACKNOWLEDGED};
use crate::e2e::envelope::{decode, unpad, Envelope, Inner, Sealed};
use crate::e2e::error::Failure;
use crate::e2e::event::{Action, E2eEvent};
use crate::e2e::ratchet::{Ratchet, RatchetError};
use crate::e2e::trust::{check_peer_key, Trust};
use crate::e2e::x3dh;
use crate::identity::KEY_LEN;
use crate::protocol::{nick_key, validate_nick, MAX_TEXT_LEN};

/// What became of one sealed message.
enum Opened {
    /// Decrypted by the session at this index.
    Text(usize, String),
    /// A notice that the peer could not read our messages, decrypted by the session at this
    /// index.
    Notice(usize, u32),
    /// A position already passed in a session (and no other session could read it): a replay.
    Replayed,
    /// Nothing could read it.
    Unreadable,
}

/// The fields of a session start.
struct Start<'a> {
    identity: [u8; KEY_LEN],
    ephemeral: [u8; KEY_LEN],
    signed_prekey: u32,
    one_time: Option<u32>,
    sealed: &'a Sealed,
}

/// The SHA-256 of a relay payload: what a message kept for showing again is matched by.
fn digest(payload: &[u8]) -> [u8; 32] {
    Sha256::digest(payload).into()
}

impl Sessions {
    /// A relay payload `payload` from `from`, which the server gave the id `id`. Returns what
    /// to do: a decrypted message comes after an [`Action::Persist`] (the state that decrypted
    /// it is saved before it is shown or acknowledged).
    pub fn receive(&mut self, from: &str, id: u64, payload: &[u8], now: Instant) -> Vec<Action> {
        // The server names senders; a name that is not a nick is nobody's.
        if validate_nick(from).is_err() {
            return Vec::new();
        }
        let key = nick_key(from);
        if key == nick_key(&self.me) {
            return Vec::new();
        }
        let nick = self
            .peers
            .get(&key)
            .map_or_else(|| from.to_owned(), |p| p.nick.clone());
        // Delivered again after a restart (decrypted and saved before, never acknowledged):
        // shown again, as the server does with plain mail — only the very same bytes, and
        // only once per run.
        if let Some(kept) = self
            .peers
            .get_mut(&key)
            .and_then(|p| p.unacknowledged.get_mut(&id))
        {
            if kept.digest == digest(payload) && kept.reshow {
                kept.reshow = false;
                return vec![Action::Event(E2eEvent::Message {
                    peer: nick,
                    id,
                    text: kept.text.clone(),
                })];
            }
            return vec![Action::Event(E2eEvent::Replayed { peer: nick })];
        }
        // Held already (under a changed key not accepted yet): the server sent it again
        // (after a restart, or because it was not saved); the same bytes under another id are
        // a replay.
        if let Some(entry) = self.peers.get(&key) {
            if let Some(h) = entry
                .held
                .iter()
                .find(|h| h.id == id || h.payload == payload)
            {
                if h.id == id && h.payload == payload {
                    return vec![Action::Persist, held_event(&entry.nick, entry)];
                }
                return vec![Action::Event(E2eEvent::Replayed { peer: nick })];
            }
        }
        let Some(envelope) = decode(payload) else {
            return unreadable(&nick);
        };
        match envelope {
            Envelope::Message(sealed) => {
                let mut actions = self.open_existing(&nick, id, payload, &sealed, None);
                // Unreadable with no session at all: we lost ours, and the peer is told.
                if matches!(
                    actions.as_slice(),
                    [Action::Event(E2eEvent::Unreadable { .. })]
                ) {
                    actions.extend(self.notice_unreadable(&nick, now));
                }
                actions
            }
            Envelope::Start {
                identity,
                ephemeral,
                signed_prekey,
                one_time,
                message,
            } => {
                let known = self
                    .peers
                    .get(&key)
                    .is_some_and(|p| p.sessions.iter().any(|s| s.ephemeral == ephemeral));
                if known {
                    return self.open_existing(&nick, id, payload, &message, Some(ephemeral));
                }
                if self.keys.seen_start(&ephemeral) {
                    return vec![Action::Event(E2eEvent::Replayed { peer: nick })];
                }
                let start = Start {
                    identity,
                    ephemeral,
                    signed_prekey,
                    one_time,
                    sealed: &message,
                };
                self.take_start(&nick, id, payload, start, now)
            }
        }
    }

    /// A session start our keys cannot open: unreadable, and the peer told if we have no
    /// session with them ([`Sessions::notice_unreadable`]).
    fn unreadable_start(&mut self, nick: &str, now: Instant) -> Vec<Action> {
        let mut actions = unreadable(nick);
        actions.extend(self.notice_unreadable(nick, now));
        actions
    }

    /// A message of a session we have (the one named by `ephemeral`, or any).
    fn open_existing(
        &mut self,
        nick: &str,
        id: u64,
        payload: &[u8],
        sealed: &Sealed,
        ephemeral: Option<[u8; KEY_LEN]>,
    ) -> Vec<Action> {
        let Some(entry) = self.peers.get_mut(&nick_key(nick)) else {
            return unreadable(nick);
        };
        let mut opened = Opened::Unreadable;
        for (i, session) in entry.sessions.iter_mut().enumerate() {
            if ephemeral.is_some_and(|e| e != session.ephemeral) {
                continue;
            }
            match session
                .ratchet
                .decrypt(&sealed.header, &sealed.ciphertext, &mut *self.rng)
            {
                Ok(plain) => {
                    let plain = zeroize::Zeroizing::new(plain);
                    opened = match unpad(&plain) {
                        Some(Inner::Text(text)) => Opened::Text(i, text),
                        Some(Inner::Unreadable { count }) => Opened::Notice(i, count),
                        None => Opened::Unreadable,
                    };
                    // A plain `Message` in a session we started: the peer has answered.
                    if ephemeral.is_none() {
                        session.start = None;
                    }
                    break;
                }
                // Passed in this session; another may still read it.
                Err(RatchetError::Old) => opened = Opened::Replayed,
                Err(_) => {}
            }
        }
        match opened {
            Opened::Text(i, text) => {
                // The session that last carried a message becomes the one we send on, so that
                // two sessions started at once converge on one.
                let session = entry.sessions.remove(i);
                entry.sessions.insert(0, session);
                self.deliver(nick, id, payload, text, Vec::new())
            }
            Opened::Notice(i, count) => {
                let session = entry.sessions.remove(i);
                entry.sessions.insert(0, session);
                Sessions::show_notice(nick, count, Vec::new())
            }
            Opened::Replayed => vec![Action::Event(E2eEvent::Replayed {
                peer: nick.to_owned(),
            })],
            Opened::Unreadable => unreadable(nick),
        }
    }

    /// The first message of a session the peer started (X3DH as the responder). Nothing
    /// changes unless it authenticates: then the one-time prekey is spent, the start
    /// remembered, the key pinned — or, for a key other than the pinned one, the conversation
    /// blocked (its sessions kept, the message not shown).
    fn take_start(
        &mut self,
        nick: &str,
        id: u64,
        payload: &[u8],
        start: Start<'_>,
        now: Instant,
    ) -> Vec<Action> {
        // No room for one more peer (the table is full of conversations in use), or for one
        // more pin (MAX_PINS, none may go): refused before any cryptography, so that a flood
        // of starts costs little.
        if !self.room_for_start(nick) || self.pin_room(nick).is_err() {
            return unreadable(nick);
        }
        let checked = check_peer_key(&self.pins, self.identity.public(), nick, &start.identity);
        if let Err(Failure::BadKey) = checked {
            return unreadable(nick);
        }
        // From here, a start our keys cannot open was made for keys we no longer have (a new
        // home, lost state): with no session with the peer either, the peer is told (as for
        // a session message, `notice_unreadable`), or every line of theirs would be lost
        // unseen while their first line is still a start (they never had our answer).
        let Some(spk) = self.keys.signed_secret(start.signed_prekey) else {
            return self.unreadable_start(nick, now);
        };
        // A start without a one-time prekey can be replayed (X3DH §4.2): taken only while it
        // can be remembered.
        if start.one_time.is_none() && !self.keys.can_remember(start.signed_prekey) {
            self.keys.rotate_now = true;
            return unreadable(nick);
        }
        let otk = match start.one_time {
            None => None,
            Some(otk_id) => match self.keys.one_time.get(&otk_id) {
                Some(k) => Some(&k.secret),
                // Used already (the server handed it out twice, or this is a replay), or
                // never ours.
                None => return self.unreadable_start(nick, now),
            },
        };
        let Ok(x3dh) = x3dh::respond(
            &self.me,
            &self.identity,
            nick,
            &start.identity,
            &start.ephemeral,
            &spk.secret,
            otk.map(|s| &**s),
        ) else {
            return self.unreadable_start(nick, now);
        };
        let mut ratchet =
            Ratchet::responder(&x3dh.shared, &spk.secret, x3dh.associated_data.clone());
        let plain = match ratchet.decrypt(
            &start.sealed.header,
            &start.sealed.ciphertext,
            &mut *self.rng,
        ) {
            Ok(plain) => zeroize::Zeroizing::new(plain),
            Err(_) => return self.unreadable_start(nick, now),
        };
        let Some(inner) = unpad(&plain) else {
            return unreadable(nick);
        };
        // Authenticated: whoever sent it holds the private key of `identity`.
        let trust = match checked {
            Ok(trust) => trust,
            Err(failure) => {
                // A key other than the pinned one (or ours), proven by the sender. Blocked
                // until the user compares and accepts it; the sessions with the pinned key
                // stay, and nothing is spent (the start is not taken). Under a changed key it
                // is held, not lost: taken again (as if it arrived then) at `/accept-key`.
                if self.peer_started(nick).is_err() {
                    return unreadable(nick);
                }
                if matches!(failure, Failure::KeyChanged { .. }) {
                    return self.hold(nick, id, payload, failure);
                }
                return self.fail(nick, failure);
            }
        };
        let Ok(entry) = self.peer_started(nick) else {
            return unreadable(nick); // the table is full of peers in use
        };
        if entry.peer_key != Some(start.identity) {
            entry.sessions.clear();
        }
        entry.peer_key = Some(start.identity);
        entry.renew = false; // a session the peer started now: no copy of this home has it
        entry.sessions.insert(
            0,
            Session {
                ratchet,
                ephemeral: start.ephemeral,
                start: None,
            },
        );
        entry.sessions.truncate(MAX_SESSIONS_PER_PEER);
        if entry.intent == Intent::Default {
            entry.intent = Intent::Secure;
        }
        // An authenticated session from the pinned key clears a failure of our own attempt
        // (a bad bundle from the directory); texts that waited for our fetch go on it now.
        let was_fetching = matches!(entry.setup, Setup::Fetching(_));
        if !matches!(
            entry.setup,
            Setup::Failed(Failure::KeyChanged { .. } | Failure::OwnKey)
        ) {
            entry.setup = Setup::Idle;
        }
        let peer = entry.nick.clone();
        let has_queued = !entry.queued.is_empty();
        if let Some(otk_id) = start.one_time {
            self.keys.one_time.remove(&otk_id);
        }
        self.keys
            .remember_start(start.signed_prekey, start.ephemeral);
        if trust == Trust::New {
            self.pin_new(nick, &start.identity, true);
        }
        let mut before = vec![Action::Event(E2eEvent::Ready {
            peer,
            key: start.identity,
            trust,
            by_peer: true,
        })];
        if was_fetching || has_queued {
            before.extend(self.flush_queued(nick));
        }
        match inner {
            Inner::Text(text) => self.deliver(nick, id, payload, text, before),
            Inner::Unreadable { count } => Sessions::show_notice(nick, count, before),
        }
    }

    /// A relay that authenticated under a changed key not accepted yet: held (saved before
    /// it is acknowledged: [`fail`](Sessions::fail) asks for the save first), the conversation
    /// blocked, and the user told how many wait. Over the bounds the oldest go, counted.
    fn hold(&mut self, nick: &str, id: u64, payload: &[u8], failure: Failure) -> Vec<Action> {
        let key = nick_key(nick);
        let Some(entry) = self.peers.get_mut(&key) else {
            return unreadable(nick);
        };
        entry.held.push_back(Held {
            id,
            payload: payload.to_vec(),
        });
        while entry.held.len() > MAX_HELD_PER_PEER {
            entry.held.pop_front();
            entry.held_dropped = entry.held_dropped.saturating_add(1);
        }
        // In all: the oldest (lowest relay id) of any peer goes; its peer is told too.
        let mut others = Vec::new();
        while self.peers.values().map(|p| p.held.len()).sum::<usize>() > MAX_HELD {
            let Some(oldest) = self
                .peers
                .iter()
                .filter_map(|(k, p)| p.held.front().map(|h| (h.id, k.clone())))
                .min()
                .map(|(_, k)| k)
            else {
                break;
            };
            if let Some(p) = self.peers.get_mut(&oldest) {
                p.held.pop_front();
                p.held_dropped = p.held_dropped.saturating_add(1);
                if oldest != key && !others.contains(&oldest) {
                    others.push(oldest);
                }
            }
        }
        let mut actions = self.fail(nick, failure);
        for k in std::iter::once(&key).chain(&others) {
            if let Some(p) = self.peers.get(k) {
                actions.push(held_event(&p.nick, p));
            }
        }
        actions
    }

    /// A decrypted text: kept until acknowledged, then saved, then shown.
    fn deliver(
        &mut self,
        nick: &str,
        id: u64,
        payload: &[u8],
        text: String,
        before: Vec<Action>,
    ) -> Vec<Action> {
        let mut actions = vec![Action::Persist];
        actions.extend(before);
        // The rules of a plain line (no control characters, nothing that breaks a line): a
        // peer's client that broke them is not shown.
        if crate::protocol::validate_text(&text, MAX_TEXT_LEN).is_err() {
            actions.push(Action::Event(E2eEvent::Unreadable {
                peer: nick.to_owned(),
            }));
            return actions;
        }
        if let Some(entry) = self.peers.get_mut(&nick_key(nick)) {
            entry.unacknowledged.insert(
                id,
                Unacknowledged {
                    digest: digest(payload),
                    text: text.clone(),
                    reshow: false,
                },
            );
            while entry.unacknowledged.len() > MAX_UNACKNOWLEDGED {
                entry.unacknowledged.pop_first();
            }
        }
        actions.push(Action::Event(E2eEvent::Message {
            peer: nick.to_owned(),
            id,
            text,
        }));
        actions
    }

    /// The caller could not show the message `id` from `peer` (it was not saved): when the
    /// server sends it again, it is shown then. One released at `/accept-key` (the server
    /// will not send it again: it was acknowledged when held) is held again, and shown by
    /// [`Sessions::show_released`].
    pub fn not_shown(&mut self, peer: &str, id: u64) {
        let Some(entry) = self.peers.get_mut(&nick_key(peer)) else {
            return;
        };
        if let Some(kept) = entry.unacknowledged.get_mut(&id) {
            kept.reshow = true;
        }
        if let Some(at) = entry.released.iter().position(|h| h.id == id) {
            let h = entry.released.remove(at);
            if !entry.held.iter().any(|o| o.id == id) {
                let at = entry
                    .held
                    .iter()
                    .position(|o| o.id > id)
                    .unwrap_or(entry.held.len());
                entry.held.insert(at, h);
            }
        }
    }
}

/// How many relays of `entry` are held: said to the user.
fn held_event(nick: &str, entry: &super::Peer) -> Action {
    Action::Event(E2eEvent::Held {
        peer: nick.to_owned(),
        held: entry.held.len(),
        dropped: entry.held_dropped,
    })
}

fn unreadable(nick: &str) -> Vec<Action> {
    vec![Action::Event(E2eEvent::Unreadable {
        peer: nick.to_owned(),
    })]
}
