//! One peer's session: the Noise XX handshake ([`Handshake`], Noise spec rev 34 §7.5, pattern
//! `XX`) and the established transport ([`Established`]: seal and open, rekey counters, the
//! drained previous session after a renewal), with no knowledge of the peer table.
//!
//! XX messages: 1 `-> e`, 2 `<- e, ee, s, es`, 3 `-> s, se`. Every handshake payload is empty.
//! The initiator learns the responder's static key from message 2, the responder the
//! initiator's from message 3.

use std::time::{Duration, Instant};

use super::config::{E2eConfig, RESPONDER_PATIENCE};
use super::envelope::{
    encode, pad, unpad, Envelope, Inner, SessionId, MAX_CIPHERTEXT, MAX_HANDSHAKE_MSG, TAG_LEN,
};
use super::error::{Failure, Refused};
use super::rng::SharedRng;
use super::trust::Trust;
use crate::identity::{is_contributory, KEY_LEN};
use crate::protocol::nick_key;

/// The Noise protocol used for every session.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";

/// Version of the end-to-end layer, bound into every handshake's prologue.
pub const E2E_VERSION: u8 = 1;

/// The prologue both sides feed to Noise: binds version, both nicks (case-folded, sorted, so
/// both sides compute the same bytes) and the session id.
pub fn prologue(nick_a: &str, nick_b: &str, session: &SessionId) -> Vec<u8> {
    let mut nicks = [nick_key(nick_a), nick_key(nick_b)];
    nicks.sort();
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"multi-messenger e2e");
    out.push(E2E_VERSION);
    for nick in &nicks {
        // Nicks are at most 32 bytes, so one length byte is unambiguous.
        out.push(u8::try_from(nick.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(nick.as_bytes());
    }
    out.extend_from_slice(session);
    out
}

/// A snow builder with our parameters, key (32-byte X25519 secret) and prologue, and snow's
/// default resolver (randomness from the operating system). Shared with the test-vector test
/// so that the vectors exercise the configuration we ship; sessions use the same builder with
/// their injected randomness instead.
///
/// # Errors
/// snow's, for a key of the wrong length (not expected otherwise).
pub fn noise_builder<'a>(
    local_private_key: &'a [u8],
    prologue: &'a [u8],
) -> Result<snow::Builder<'a>, snow::Error> {
    configure(
        snow::Builder::new(NOISE_PARAMS.parse()?),
        local_private_key,
        prologue,
    )
}

/// [`noise_builder`] drawing its randomness from `rng`.
fn builder_with<'a>(
    rng: &SharedRng,
    local_private_key: &'a [u8],
    prologue: &'a [u8],
) -> Result<snow::Builder<'a>, snow::Error> {
    let builder = snow::Builder::with_resolver(NOISE_PARAMS.parse()?, rng.resolver());
    configure(builder, local_private_key, prologue)
}

fn configure<'a>(
    builder: snow::Builder<'a>,
    local_private_key: &'a [u8],
    prologue: &'a [u8],
) -> Result<snow::Builder<'a>, snow::Error> {
    builder
        .local_private_key(local_private_key)?
        .prologue(prologue)
}

/// When something timed is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// Already, whatever the time.
    Now,
    /// From this instant on.
    At(Instant),
}

impl Due {
    /// `start + wait`; `None` (never) if that instant cannot be represented.
    pub(super) fn after(start: Instant, wait: Duration) -> Option<Due> {
        start.checked_add(wait).map(Due::At)
    }

    /// Whether it is due at `now`.
    pub(super) fn reached(self, now: Instant) -> bool {
        match self {
            Due::Now => true,
            Due::At(at) => now >= at,
        }
    }
}

/// A handshake in progress with one peer.
pub(super) struct Handshake {
    pub(super) session: SessionId,
    pub(super) noise: Box<snow::HandshakeState>,
    pub(super) initiator: bool,
    pub(super) started: Instant,
    /// During a re-handshake: the current session, still carrying messages.
    pub(super) previous: Option<Box<Established>>,
}

/// The identity key at the start of a Noise message's bytes, if there are enough.
pub(super) fn key_of(bytes: Option<&[u8]>) -> Option<[u8; KEY_LEN]> {
    bytes.and_then(|b| <[u8; KEY_LEN]>::try_from(b).ok())
}

/// The ephemeral key at the start of handshake messages 1 and 2, for the small-order check.
fn leading_key(noise: &[u8]) -> Option<[u8; KEY_LEN]> {
    key_of(noise.get(..KEY_LEN))
}

impl Handshake {
    /// Starts a handshake as initiator: a fresh session id and ephemeral key from `rng`, and
    /// the encoded [`Envelope::Hello`] (message 1) to send. `None` if the source of randomness
    /// or snow failed.
    pub(super) fn initiate(
        rng: &SharedRng,
        secret: &[u8; KEY_LEN],
        me: &str,
        peer: &str,
        now: Instant,
    ) -> Option<(Handshake, Vec<u8>)> {
        let session = rng.session_id()?;
        let prologue = prologue(me, peer, &session);
        let mut noise = builder_with(rng, secret, &prologue)
            .ok()?
            .build_initiator()
            .ok()?;
        let mut buf = [0u8; MAX_HANDSHAKE_MSG];
        let n = noise.write_message(&[], &mut buf).ok()?;
        let hello = encode(&Envelope::Hello {
            session,
            noise: buf.get(..n)?.to_vec(),
        });
        let handshake = Handshake {
            session,
            noise: Box::new(noise),
            initiator: true,
            started: now,
            previous: None,
        };
        Some((handshake, hello))
    }

    /// Answers message 1 (`noise`, from `from`, for `session`) as responder: the handshake and
    /// the encoded [`Envelope::Reply`] (message 2) to send.
    ///
    /// # Errors
    /// [`Failure::BadKey`] for a small-order ephemeral key, [`Failure::Handshake`] for an
    /// oversized or broken message, or one with a payload.
    pub(super) fn respond(
        rng: &SharedRng,
        secret: &[u8; KEY_LEN],
        me: &str,
        from: &str,
        session: SessionId,
        noise: &[u8],
        now: Instant,
    ) -> Result<(Handshake, Vec<u8>), Failure> {
        if noise.len() > MAX_HANDSHAKE_MSG {
            return Err(Failure::Handshake);
        }
        if !leading_key(noise).is_some_and(|e| is_contributory(&e)) {
            return Err(Failure::BadKey);
        }
        let prologue = prologue(me, from, &session);
        let mut state = builder_with(rng, secret, &prologue)
            .and_then(|b| b.build_responder())
            .map_err(|_| Failure::Handshake)?;
        let mut payload = [0u8; MAX_HANDSHAKE_MSG];
        // Handshake payloads are empty by this protocol: anything in one is refused.
        state
            .read_message(noise, &mut payload)
            .ok()
            .filter(|n| *n == 0)
            .ok_or(Failure::Handshake)?;
        let mut buf = [0u8; MAX_HANDSHAKE_MSG];
        let n = state
            .write_message(&[], &mut buf)
            .map_err(|_| Failure::Handshake)?;
        let reply = encode(&Envelope::Reply {
            session,
            noise: buf.get(..n).ok_or(Failure::Handshake)?.to_vec(),
        });
        let handshake = Handshake {
            session,
            noise: Box::new(state),
            initiator: false,
            started: now,
            previous: None,
        };
        Ok((handshake, reply))
    }

    /// Reads message 2 as initiator; the responder's static key is known after it.
    ///
    /// # Errors
    /// [`Failure::BadKey`] for an oversized message or a small-order ephemeral key,
    /// [`Failure::Handshake`] if it does not read or carries a payload.
    pub(super) fn read_reply(&mut self, noise: &[u8]) -> Result<(), Failure> {
        if noise.len() > MAX_HANDSHAKE_MSG
            || !leading_key(noise).is_some_and(|e| is_contributory(&e))
        {
            return Err(Failure::BadKey);
        }
        self.read(noise)
    }

    /// Reads message 3 as responder; the initiator's static key is known after it.
    ///
    /// # Errors
    /// [`Failure::Handshake`] for an oversized message, one that does not read, or a payload.
    pub(super) fn read_finish(&mut self, noise: &[u8]) -> Result<(), Failure> {
        if noise.len() > MAX_HANDSHAKE_MSG {
            return Err(Failure::Handshake);
        }
        self.read(noise)
    }

    fn read(&mut self, noise: &[u8]) -> Result<(), Failure> {
        let mut payload = [0u8; MAX_HANDSHAKE_MSG];
        if self.noise.read_message(noise, &mut payload) == Ok(0) {
            Ok(())
        } else {
            Err(Failure::Handshake)
        }
    }

    /// Message 3 as an encoded [`Envelope::Finish`] (our static key and nothing else); `None`
    /// if snow refuses.
    pub(super) fn write_finish(&mut self) -> Option<Vec<u8>> {
        let mut buf = [0u8; MAX_HANDSHAKE_MSG];
        let n = self.noise.write_message(&[], &mut buf).ok()?;
        Some(encode(&Envelope::Finish {
            session: self.session,
            noise: buf.get(..n)?.to_vec(),
        }))
    }

    /// The peer's static key, once the handshake has revealed it.
    pub(super) fn remote_key(&self) -> Option<[u8; KEY_LEN]> {
        key_of(self.noise.get_remote_static())
    }

    /// When this handshake times out: after `handshake_timeout` for an initiator, and
    /// [`RESPONDER_PATIENCE`] times that for a responder (message 3 may wait behind the
    /// initiator's own paced traffic after it already counts the session as up).
    pub(super) fn timeout(&self, config: &E2eConfig) -> Option<Due> {
        let wait = if self.initiator {
            config.handshake_timeout
        } else {
            config.handshake_timeout.saturating_mul(RESPONDER_PATIENCE)
        };
        Due::after(self.started, wait)
    }

    /// The finished handshake as an established session, `trust`ed, up since `now`. The
    /// previous session (of a renewal) is kept to drain. `None` if snow refuses (the handshake
    /// is not finished) or gave no peer key.
    pub(super) fn into_established(self, trust: Trust, now: Instant) -> Option<Established> {
        let peer_key = self.remote_key()?;
        let transport = self.noise.into_transport_mode().ok()?;
        Some(Established {
            session: self.session,
            transport: Box::new(transport),
            initiator: self.initiator,
            since: now,
            messages: 0,
            sent_since_rekey: 0,
            peer_key,
            trust,
            draining: self.previous.map(|p| (p.session, p.transport)),
        })
    }
}

/// An established session with one peer.
pub(super) struct Established {
    pub(super) session: SessionId,
    pub(super) transport: Box<snow::TransportState>,
    pub(super) initiator: bool,
    pub(super) since: Instant,
    /// Texts sent and received on it, for the renewal after `rehandshake_messages`.
    pub(super) messages: u64,
    /// Messages sent since this direction last rekeyed.
    pub(super) sent_since_rekey: u64,
    pub(super) peer_key: [u8; KEY_LEN],
    pub(super) trust: Trust,
    /// After a re-handshake: the old session, kept only to decrypt what the peer sent on it
    /// before it switched. Dropped at the peer's first message on the new session.
    pub(super) draining: Option<(SessionId, Box<snow::TransportState>)>,
}

impl Established {
    /// Encrypts `inner`, padded, as an encoded Data envelope of this session.
    ///
    /// # Errors
    /// [`Refused::Crypto`] if it does not fit or snow refuses.
    pub(super) fn seal(&mut self, inner: &Inner) -> Result<Vec<u8>, Refused> {
        let plain = pad(inner)?;
        let mut buf = vec![0u8; plain.len() + TAG_LEN];
        let n = self
            .transport
            .write_message(&plain, &mut buf)
            .map_err(|_| Refused::Crypto)?;
        buf.truncate(n);
        Ok(encode(&Envelope::Data {
            session: self.session,
            ciphertext: buf,
        }))
    }

    /// Encrypts a text, counting it; after every `rekey_every` texts also a rekey announcement
    /// (the second payload), after which our sending direction uses the new key (Noise spec rev
    /// 34 §11.3).
    ///
    /// # Errors
    /// [`Refused::Crypto`] if either does not encrypt.
    pub(super) fn seal_text(
        &mut self,
        text: &str,
        rekey_every: u64,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), Refused> {
        let payload = self.seal(&Inner::Text(text.to_owned()))?;
        self.messages += 1;
        self.sent_since_rekey += 1;
        if self.sent_since_rekey < rekey_every {
            return Ok((payload, None));
        }
        let rekey = self.seal(&Inner::Rekey)?;
        self.transport.rekey_outgoing();
        self.sent_since_rekey = 0;
        Ok((payload, Some(rekey)))
    }

    /// When the initiator renews this session with a new handshake: at once after
    /// `rehandshake_messages` texts, else when it is `rehandshake_after` old. `None` for the
    /// responder (the initiator renews).
    pub(super) fn renewal(&self, config: &E2eConfig) -> Option<Due> {
        if !self.initiator {
            None
        } else if self.messages >= config.rehandshake_messages {
            Some(Due::Now)
        } else {
            Due::after(self.since, config.rehandshake_after)
        }
    }

    /// The transport that decrypts messages of `session`: this one (the peer has switched to
    /// it, so the drained old session is dropped) or the drained one.
    pub(super) fn transport_for(
        &mut self,
        session: &SessionId,
    ) -> Option<&mut snow::TransportState> {
        if self.session == *session {
            self.draining = None;
            return Some(&mut self.transport);
        }
        match &mut self.draining {
            Some((old, transport)) if old == session => Some(transport),
            _ => None,
        }
    }
}

/// Decrypts and unpads a Data envelope's `ciphertext` with `transport`, applying the peer's
/// rekey announcement. `None` if it is oversized, does not decrypt, or is not a padded
/// [`Inner`]: any of these ends the session.
pub(super) fn open(transport: &mut snow::TransportState, ciphertext: &[u8]) -> Option<Inner> {
    if ciphertext.len() > MAX_CIPHERTEXT {
        return None;
    }
    let mut plain = vec![0u8; ciphertext.len()];
    let inner = transport
        .read_message(ciphertext, &mut plain)
        .ok()
        .and_then(|n| plain.get(..n).and_then(unpad));
    if inner == Some(Inner::Rekey) {
        transport.rekey_incoming();
    }
    inner
}
