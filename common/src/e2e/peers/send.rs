//! Sending a text: encrypted on the current session, or queued while the peer's keys are
//! fetched, or plain when the user said so. Never plain by itself.

use std::time::Instant;

use super::{Intent, Sessions, Setup};
use crate::e2e::envelope::{encode, pad, Envelope, Inner, Sealed};
use crate::e2e::error::{Failure, Refused};
use crate::e2e::event::{Action, Outgoing};
use crate::protocol::{nick_key, validate_nick};

impl Sessions {
    /// A text for `peer`: encrypted, queued for the peer's keys, or plain when the user said
    /// `/insecure` (or end-to-end by default is off and the user never said `/secure`).
    /// `line` is the caller's tag for the text: the [`Action::Send`] that carries it has
    /// `line: Some(line)`, and if it is dropped unsent (the peer has no keys, the conversation
    /// got blocked), the tag is in that event's `unsent`.
    ///
    /// # Errors
    /// [`Refused`] when the conversation is blocked (never a silent fallback to plain text),
    /// the queue is full, or the table is.
    pub fn send_text(
        &mut self,
        peer: &str,
        text: &str,
        line: u64,
        now: Instant,
    ) -> Result<Outgoing, Refused> {
        if nick_key(peer) == nick_key(&self.me) {
            return Ok(Outgoing::Plain);
        }
        // Not a nick: nobody's keys to ask the server for.
        validate_nick(peer).map_err(|_| Refused::InvalidNick(peer.to_owned()))?;
        let by_default = self.config.end_to_end_by_default;
        let max_queued = self.config.max_queued;
        // Decided before anything changes: a refused text makes no entry (so evicts none) and
        // leaves the conversation as it was.
        let existing = self.peers.get(&nick_key(peer));
        let intent = existing.map_or(Intent::Default, |p| p.intent);
        let plain = match intent {
            Intent::Plain => true,
            Intent::Default => !by_default,
            Intent::Secure => false,
        };
        if let Some(entry) = existing {
            let queue_full = entry.queued.len() >= max_queued;
            if plain {
                // Behind the texts still waiting for the peer's keys (typed before `/insecure`).
                if !entry.queued.is_empty() && queue_full {
                    return Err(Refused::QueueFull(entry.nick.clone()));
                }
            } else {
                // The rules of a plain line, which the server cannot check inside ciphertext.
                crate::protocol::validate_text(text, crate::protocol::MAX_TEXT_LEN)
                    .map_err(Refused::InvalidText)?;
                match entry.blocked() {
                    Some(Failure::KeyChanged { .. }) => {
                        return Err(Refused::KeyNotAccepted(entry.nick.clone()))
                    }
                    Some(failure) => {
                        return Err(Refused::Blocked {
                            peer: entry.nick.clone(),
                            failure: failure.clone(),
                        })
                    }
                    None => {}
                }
                if (entry.sessions.is_empty() || entry.renew) && queue_full {
                    return Err(Refused::QueueFull(entry.nick.clone()));
                }
            }
        } else if !plain {
            crate::protocol::validate_text(text, crate::protocol::MAX_TEXT_LEN)
                .map_err(Refused::InvalidText)?;
            if max_queued == 0 {
                return Err(Refused::QueueFull(peer.to_owned()));
            }
        }
        let entry = self.peer(peer)?;
        if plain {
            if entry.queued.is_empty() {
                return Ok(Outgoing::Plain);
            }
            entry.queued.push_back((text.to_owned(), line, true));
            return Ok(Outgoing::QueuedPlain);
        }
        if !entry.sessions.is_empty() && !entry.renew {
            let nick = entry.nick.clone();
            let send = self.encrypt(&nick, text, Some(line))?;
            return Ok(Outgoing::Secure(vec![Action::Persist, send]));
        }
        entry.queued.push_back((text.to_owned(), line, false));
        if matches!(entry.setup, Setup::Fetching(_)) {
            return Ok(Outgoing::Queued(Vec::new()));
        }
        entry.setup = Setup::Fetching(now);
        Ok(Outgoing::Queued(vec![Action::FetchBundle(
            entry.nick.clone(),
        )]))
    }

    /// Encrypts `text` on the current session with `peer` (with the X3DH start attached while
    /// the peer has not answered). The caller saves the state before the send goes out.
    ///
    /// # Errors
    /// [`Refused::Crypto`] without a session, or if the text does not fit the largest padding
    /// bucket.
    pub(super) fn encrypt(
        &mut self,
        peer: &str,
        text: &str,
        line: Option<u64>,
    ) -> Result<Action, Refused> {
        self.encrypt_inner(peer, &Inner::Text(text.to_owned()), line)
    }

    /// [`Sessions::encrypt`] for any [`Inner`].
    pub(super) fn encrypt_inner(
        &mut self,
        peer: &str,
        inner: &Inner,
        line: Option<u64>,
    ) -> Result<Action, Refused> {
        let identity = *self.identity.public();
        let entry = self.peers.get_mut(&nick_key(peer)).ok_or(Refused::Crypto)?;
        let session = entry.sessions.first_mut().ok_or(Refused::Crypto)?;
        let plain = zeroize::Zeroizing::new(pad(inner).ok_or(Refused::Crypto)?);
        let (header, ciphertext) = session
            .ratchet
            .encrypt(&plain)
            .map_err(|_| Refused::Crypto)?;
        let message = Sealed { header, ciphertext };
        let envelope = match session.start {
            Some(start) => Envelope::Start {
                identity,
                ephemeral: session.ephemeral,
                signed_prekey: start.signed_prekey,
                one_time: start.one_time,
                message,
            },
            None => Envelope::Message(message),
        };
        Ok(Action::Send {
            to: entry.nick.clone(),
            payload: encode(&envelope),
            line,
        })
    }

    /// Encrypts the texts that waited for a session with `peer`: the sends, in order (texts
    /// that fail to encrypt are reported unsent).
    pub(super) fn flush_queued(&mut self, peer: &str) -> Vec<Action> {
        let Some(entry) = self.peers.get_mut(&nick_key(peer)) else {
            return Vec::new();
        };
        let queued: Vec<(String, u64, bool)> = entry.queued.drain(..).collect();
        let to = entry.nick.clone();
        let mut sends = Vec::new();
        let mut unsent = Vec::new();
        for (text, line, plain) in queued {
            if plain {
                sends.push(Action::SendPlain {
                    to: to.clone(),
                    text,
                    line,
                });
                continue;
            }
            match self.encrypt(peer, &text, Some(line)) {
                Ok(send) => sends.push(send),
                Err(_) => unsent.push(line),
            }
        }
        if !unsent.is_empty() {
            sends.push(Action::Event(crate::e2e::event::E2eEvent::Failed {
                peer: peer.to_owned(),
                failure: Failure::BadKey,
                unsent,
            }));
        }
        sends
    }
}
