//! The wire envelope between two clients (postcard-encoded, relayed by the server as opaque
//! bytes in a `Relay`), the padded plaintext inside it, and the size bounds.
//!
//! Every message is a Double Ratchet message ([`Sealed`]). Until the initiator of a session
//! has heard back from the peer, its messages also carry the X3DH start ([`Envelope::Start`]),
//! so that whichever of them arrives first (mail is delivered in order, but a lost one must not
//! strand the rest) can set up the session at the peer.

use serde::{Deserialize, Serialize};

use super::ratchet::Header;
use crate::identity::KEY_LEN;

/// Plaintext sizes that messages are padded up to, in bytes: lengths leak only coarsely.
pub const PAD_BUCKETS: [usize; 4] = [128, 512, 2048, 8192];

/// Authentication tag added by ChaCha20-Poly1305, in bytes.
pub(super) const TAG_LEN: usize = 16;

/// Largest ciphertext accepted, in bytes; anything longer is refused before decryption.
pub const MAX_CIPHERTEXT: usize = PAD_BUCKETS[PAD_BUCKETS.len() - 1] + TAG_LEN;

/// One Double Ratchet message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The ratchet header (sent in the clear, authenticated as associated data).
    pub header: Header,
    /// ChaCha20-Poly1305 of the padded [`Inner`].
    pub ciphertext: Vec<u8>,
}

/// What travels inside a relay payload between two clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope {
    /// A message of a session the sender started (X3DH) and the peer has not answered yet.
    Start {
        /// The sender's identity key (IK_A).
        identity: [u8; KEY_LEN],
        /// The sender's ephemeral key for this session (EK_A); it also names the session.
        ephemeral: [u8; KEY_LEN],
        /// The id of the peer's signed prekey it used.
        signed_prekey: u32,
        /// The id of the peer's one-time prekey it used, if the bundle had one.
        one_time: Option<u32>,
        /// The message.
        message: Sealed,
    },
    /// A message of an established session.
    Message(Sealed),
}

/// The plaintext inside a [`Sealed`], before padding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Inner {
    /// A chat line.
    Text(String),
    /// No user text: the sender had no session with us when our messages came (it lost its
    /// keys, or has a new identity), and could not read this many of them
    /// ([`super::peers::notice`]). Last in the enum, so that an older decoder fails closed
    /// (unreadable) rather than misreading it.
    Unreadable {
        /// How many messages it could not read (at most [`super::config::MAX_NOTICE_COUNT`]).
        count: u32,
    },
}

/// The postcard bytes of `envelope`.
pub(super) fn encode(envelope: &Envelope) -> Vec<u8> {
    // Encoding a Vec-backed envelope of bounded size cannot fail.
    postcard::to_allocvec(envelope).unwrap_or_default()
}

/// The envelope in `bytes`: exactly one, with a ciphertext of at most [`MAX_CIPHERTEXT`].
pub(super) fn decode(bytes: &[u8]) -> Option<Envelope> {
    let (envelope, rest) = postcard::take_from_bytes::<Envelope>(bytes).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let sealed = match &envelope {
        Envelope::Start { message, .. } => message,
        Envelope::Message(m) => m,
    };
    (sealed.ciphertext.len() <= MAX_CIPHERTEXT).then_some(envelope)
}

/// Pads an encoded [`Inner`] with zeros up to the next bucket; `None` if it does not fit the
/// largest.
pub(super) fn pad(inner: &Inner) -> Option<Vec<u8>> {
    let mut plain = postcard::to_allocvec(inner).ok()?;
    let bucket = PAD_BUCKETS.iter().copied().find(|b| *b >= plain.len())?;
    plain.resize(bucket, 0);
    Some(plain)
}

/// The [`Inner`] in a padded plaintext; the padding must be all zeros and the size a bucket.
pub(super) fn unpad(plain: &[u8]) -> Option<Inner> {
    if !PAD_BUCKETS.contains(&plain.len()) {
        return None;
    }
    let (inner, rest) = postcard::take_from_bytes::<Inner>(plain).ok()?;
    rest.iter().all(|b| *b == 0).then_some(inner)
}
