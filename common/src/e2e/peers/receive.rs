//! Incoming relay payloads: a message of a session we have, or the start of a new one (X3DH
//! as the responder). Only what decrypted and authenticated is ever shown; anything else is
//! reported as unreadable (or replayed) and changes nothing.

use std::time::Instant;

use super::{Intent, Session, Sessions, Setup};
use crate::e2e::config::{MAX_SESSIONS_PER_PEER, MAX_UNACKNOWLEDGED};
use crate::e2e::envelope::{decode, unpad, Envelope, Inner, Sealed};
use crate::e2e::error::Failure;
use crate::e2e::event::{Action, E2eEvent};
use crate::e2e::ratchet::{Ratchet, RatchetError};
use crate::e2e::trust::{check_peer_key, Trust};
use crate::e2e::x3dh;
use crate::identity::KEY_LEN;
use crate::protocol::{nick_key, MAX_TEXT_LEN};

/// What became of one sealed message.
enum Opened {
    /// Decrypted by the session at this index.
    Text(usize, String),
    /// A position already passed: a replay.
    Replayed,
    /// Nothing could read it.
    Unreadable,
}

impl Sessions {
    /// A relay payload `payload` from `from`, which the server gave the id `id`. Returns what
    /// to do: a decrypted message comes after an [`Action::Persist`] (the state that decrypted
    /// it is saved before it is shown or acknowledged).
    pub fn receive(&mut self, from: &str, id: u64, payload: &[u8], now: Instant) -> Vec<Action> {
        let _ = now;
        let key = nick_key(from);
        if key == nick_key(&self.me) {
            return Vec::new();
        }
        // Delivered again after a restart (not acknowledged before): show it again, as the
        // server does with plain mail.
        if let Some(text) = self.peers.get(&key).and_then(|p| p.unacknowledged.get(&id)) {
            let peer = self
                .peers
                .get(&key)
                .map(|p| p.nick.clone())
                .unwrap_or_default();
            return vec![Action::Event(E2eEvent::Message {
                peer,
                id,
                text: text.clone(),
            })];
        }
        let Ok(entry) = self.peer(from) else {
            return Vec::new(); // table full: a flood of invented nicks is not kept
        };
        let nick = entry.nick.clone();
        let Some(envelope) = decode(payload) else {
            return unreadable(&nick);
        };
        match envelope {
            Envelope::Message(sealed) => self.open_existing(&nick, id, &sealed, None),
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
                    return self.open_existing(&nick, id, &message, Some(ephemeral));
                }
                if self.keys.seen_start(&ephemeral) {
                    return vec![Action::Event(E2eEvent::Replayed { peer: nick })];
                }
                self.take_start(
                    &nick,
                    id,
                    identity,
                    ephemeral,
                    signed_prekey,
                    one_time,
                    &message,
                )
            }
        }
    }

    /// A message of a session we have (the one named by `ephemeral`, or any).
    fn open_existing(
        &mut self,
        nick: &str,
        id: u64,
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
                        None => Opened::Unreadable,
                    };
                    // A plain `Message` in a session we started: the peer has answered.
                    if ephemeral.is_none() {
                        session.start = None;
                    }
                    break;
                }
                Err(RatchetError::Old) => {
                    opened = Opened::Replayed;
                    break;
                }
                Err(_) => {}
            }
        }
        match opened {
            Opened::Text(i, text) => {
                // The session that last carried a message becomes the one we send on, so that
                // two sessions started at once converge on one.
                let session = entry.sessions.remove(i);
                entry.sessions.insert(0, session);
                self.deliver(nick, id, text, Vec::new())
            }
            Opened::Replayed => vec![Action::Event(E2eEvent::Replayed {
                peer: nick.to_owned(),
            })],
            Opened::Unreadable => unreadable(nick),
        }
    }

    /// The first message of a session the peer started (X3DH as the responder).
    #[allow(clippy::too_many_arguments)]
    fn take_start(
        &mut self,
        nick: &str,
        id: u64,
        identity: [u8; KEY_LEN],
        ephemeral: [u8; KEY_LEN],
        signed_prekey: u32,
        one_time: Option<u32>,
        sealed: &Sealed,
    ) -> Vec<Action> {
        let trust = match check_peer_key(&self.pins, self.identity.public(), nick, &identity) {
            Ok(trust) => trust,
            Err(failure @ (Failure::KeyChanged { .. } | Failure::OwnKey)) => {
                // Not shown: it comes from a key other than the pinned one.
                let mut actions = self.fail(nick, failure);
                actions.push(Action::Event(E2eEvent::Unreadable {
                    peer: nick.to_owned(),
                }));
                return actions;
            }
            Err(_) => return unreadable(nick),
        };
        let Some(spk) = self.keys.signed_secret(signed_prekey) else {
            return unreadable(nick);
        };
        let otk = match one_time {
            None => None,
            Some(otk_id) => match self.keys.one_time.get(&otk_id) {
                Some(k) => Some(&k.secret),
                // Used already (the server handed it out twice, or this is a replay), or
                // never ours.
                None => return unreadable(nick),
            },
        };
        let Ok(start) = x3dh::respond(
            &self.me,
            &self.identity,
            nick,
            &identity,
            &ephemeral,
            &spk.secret,
            otk.map(|s| &**s),
        ) else {
            return unreadable(nick);
        };
        let mut ratchet =
            Ratchet::responder(&start.shared, &spk.secret, start.associated_data.clone());
        let plain = match ratchet.decrypt(&sealed.header, &sealed.ciphertext, &mut *self.rng) {
            Ok(plain) => zeroize::Zeroizing::new(plain),
            Err(_) => return unreadable(nick),
        };
        let Some(Inner::Text(text)) = unpad(&plain) else {
            return unreadable(nick);
        };
        // Authenticated: the session is the peer's (it knows the identity secret), so the
        // one-time key is spent and the start can never be taken again.
        if let Some(otk_id) = one_time {
            self.keys.one_time.remove(&otk_id);
        }
        self.keys.remember_start(ephemeral);
        if trust == Trust::New {
            self.pins.pin_new(nick, &identity);
        }
        let Some(entry) = self.peers.get_mut(&nick_key(nick)) else {
            return unreadable(nick);
        };
        if entry.peer_key != Some(identity) {
            entry.sessions.clear();
        }
        entry.peer_key = Some(identity);
        entry.sessions.insert(
            0,
            Session {
                ratchet,
                ephemeral,
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
        entry.setup = Setup::Idle;
        let mut before = vec![Action::Event(E2eEvent::Ready {
            peer: entry.nick.clone(),
            key: identity,
            trust,
            by_peer: true,
        })];
        if was_fetching || !entry.queued.is_empty() {
            before.extend(self.flush_queued(nick));
        }
        self.deliver(nick, id, text, before)
    }

    /// A decrypted text: kept until acknowledged, then saved, then shown.
    fn deliver(&mut self, nick: &str, id: u64, text: String, before: Vec<Action>) -> Vec<Action> {
        let mut actions = vec![Action::Persist];
        actions.extend(before);
        if text.is_empty() || text.len() > MAX_TEXT_LEN {
            actions.push(Action::Event(E2eEvent::Unreadable {
                peer: nick.to_owned(),
            }));
            return actions;
        }
        if let Some(entry) = self.peers.get_mut(&nick_key(nick)) {
            entry.unacknowledged.insert(id, text.clone());
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
}

fn unreadable(nick: &str) -> Vec<Action> {
    vec![Action::Event(E2eEvent::Unreadable {
        peer: nick.to_owned(),
    })]
}
