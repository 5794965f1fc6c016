//! The wire envelope between two clients (postcard-encoded, relayed by the server as opaque
//! bytes), the padded plaintext inside [`Envelope::Data`], and the size bounds.

use serde::{Deserialize, Serialize};

use super::error::{AbortReason, Refused};

/// Length of a session id, in bytes.
pub const SESSION_ID_LEN: usize = 16;

/// A session id: random, chosen by the initiator.
pub type SessionId = [u8; SESSION_ID_LEN];

/// Plaintext sizes that messages are padded up to, in bytes.
pub const PAD_BUCKETS: [usize; 4] = [128, 512, 2048, 8192];

/// Authentication tag added by ChaCha20-Poly1305, in bytes.
pub(super) const TAG_LEN: usize = 16;

/// Largest ciphertext accepted, in bytes; anything longer is refused before decryption.
pub const MAX_CIPHERTEXT: usize = PAD_BUCKETS[PAD_BUCKETS.len() - 1] + TAG_LEN;

/// Largest handshake message accepted, in bytes (XX messages are at most 96 bytes with empty
/// payloads).
pub(super) const MAX_HANDSHAKE_MSG: usize = 1024;

/// What travels inside a relay payload between two clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope {
    /// Handshake message 1, initiator → responder.
    Hello {
        /// The new session.
        session: SessionId,
        /// Noise message.
        noise: Vec<u8>,
    },
    /// Handshake message 2, responder → initiator.
    Reply {
        /// The session.
        session: SessionId,
        /// Noise message.
        noise: Vec<u8>,
    },
    /// Handshake message 3, initiator → responder.
    Finish {
        /// The session.
        session: SessionId,
        /// Noise message.
        noise: Vec<u8>,
    },
    /// An encrypted, padded `Inner` message.
    Data {
        /// The session it is encrypted in.
        session: SessionId,
        /// Noise transport message.
        ciphertext: Vec<u8>,
    },
    /// "I dropped this session." Unauthenticated, so it can only end a session, never start
    /// or alter one (the relay can always drop messages anyway).
    Abort {
        /// The session.
        session: SessionId,
        /// Why.
        reason: AbortReason,
    },
}

/// The plaintext inside [`Envelope::Data`], before padding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Inner {
    /// A chat line.
    Text(String),
    /// The sender rekeys its direction after this message.
    Rekey,
    /// The sender ended the session.
    Close,
}

/// The postcard bytes of `envelope`.
pub(super) fn encode(envelope: &Envelope) -> Vec<u8> {
    // Encoding a Vec-backed envelope of bounded size cannot fail.
    postcard::to_allocvec(envelope).unwrap_or_default()
}

/// Pads an encoded [`Inner`] with zeros up to the next bucket.
///
/// # Errors
/// [`Refused::Crypto`] if it does not fit the largest bucket.
pub(super) fn pad(inner: &Inner) -> Result<Vec<u8>, Refused> {
    let mut plain = postcard::to_allocvec(inner).map_err(|_| Refused::Crypto)?;
    let bucket = PAD_BUCKETS
        .iter()
        .copied()
        .find(|b| *b >= plain.len())
        .ok_or(Refused::Crypto)?;
    plain.resize(bucket, 0);
    Ok(plain)
}

/// The [`Inner`] in a padded plaintext; the padding must be all zeros.
pub(super) fn unpad(plain: &[u8]) -> Option<Inner> {
    let (inner, rest) = postcard::take_from_bytes::<Inner>(plain).ok()?;
    rest.iter().all(|b| *b == 0).then_some(inner)
}
