//! Why things fail: a conversation's [`Failure`], and a refused command or text ([`Refused`]).
//! Crypto failures are deliberately vague: they say what the user can do, not which check
//! failed.

use std::fmt;

use super::config::MAX_PEERS;
use crate::identity::{key_fingerprint, KEY_LEN};

/// Why a conversation could not be (or stay) end-to-end encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The peer's identity key (from the server's key directory, or in a message starting a
    /// session) differs from the pinned one. Blocks sending until `/accept-key` or
    /// `/insecure`.
    KeyChanged {
        /// The pinned key.
        pinned: [u8; KEY_LEN],
        /// The key presented now.
        presented: [u8; KEY_LEN],
    },
    /// The peer's prekey bundle from the server's key directory carries a signed prekey whose
    /// signature does not verify under its identity key: the directory (or someone between)
    /// altered it. Blocks sending until `/secure` (fetch again) or `/insecure`.
    BadSignature,
    /// A key the peer (or the directory) presented is not usable (small order). Blocks like
    /// [`Failure::BadSignature`].
    BadKey,
    /// The peer presents our own identity key: two users share one home directory. Never
    /// pinned; blocks.
    OwnKey,
    /// The peer has published no end-to-end keys (it runs an older client, or never logged in
    /// since this server gained the key directory). Nothing is sent plain by itself.
    NoKeys,
    /// No user by that nick on this server.
    NoSuchUser,
    /// The server limits how many key bundles one user may fetch; it said to wait this long.
    RateLimited {
        /// Milliseconds.
        retry_after_ms: u64,
    },
    /// The server did not answer the request for the peer's keys in time.
    Timeout,
    /// The server could not read its key directory now.
    Busy,
    /// Not connected to the server.
    NotConnected,
}

impl Failure {
    /// Whether it blocks the conversation until the user acts (`/secure`, `/accept-key`,
    /// `/insecure`): what tampering looks like. The others only fail the texts waiting now; the
    /// next text tries again.
    pub fn is_blocking(&self) -> bool {
        matches!(
            self,
            Failure::KeyChanged { .. } | Failure::BadSignature | Failure::BadKey | Failure::OwnKey
        )
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::KeyChanged { pinned, presented } => write!(
                f,
                "the peer's key CHANGED (pinned {}, presented {})",
                key_fingerprint(pinned),
                key_fingerprint(presented)
            ),
            Failure::BadSignature => f.write_str(
                "the server's key directory gave keys whose signature does not verify (altered on the way)",
            ),
            Failure::BadKey => f.write_str("the peer's keys are not usable (invalid key)"),
            Failure::OwnKey => f.write_str(
                "the peer presents your own key: you share one home directory (identity.key) with them; each user needs their own",
            ),
            Failure::NoKeys => f.write_str("the peer has no end-to-end keys"),
            Failure::NoSuchUser => f.write_str("no such user on this server"),
            Failure::RateLimited { retry_after_ms } => write!(
                f,
                "the server limits key requests; try again in {} s",
                retry_after_ms.div_ceil(1000).max(1)
            ),
            Failure::Timeout => f.write_str("the server did not answer the request for keys"),
            Failure::Busy => f.write_str("the server could not read its key directory just now"),
            Failure::NotConnected => f.write_str("not connected to the server"),
        }
    }
}

/// Why a text or command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// The conversation is blocked; the user must act.
    #[error("the end-to-end conversation with {peer} is blocked ({failure}); nothing was sent. /secure {peer} tries again, or /insecure {peer} sends unencrypted")]
    Blocked {
        /// The peer.
        peer: String,
        /// Why.
        failure: Failure,
    },
    /// The text breaks the rules every private line follows (the same as a plain line's:
    /// [`crate::protocol::validate_text`]).
    #[error("{0}")]
    InvalidText(crate::protocol::TextError),
    /// Too many texts wait for the peer's keys.
    #[error("too many messages waiting for {0}'s keys")]
    QueueFull(String),
    /// `/secure` or `/insecure` to oneself.
    #[error("private messages to yourself are not end-to-end encrypted: there is nobody else to keep them from")]
    Yourself,
    /// Not a valid nick.
    #[error("{0:?} is not a valid nick")]
    InvalidNick(String),
    /// There is one already.
    #[error("a secure session with {0} is already up")]
    AlreadySecure(String),
    /// One is being set up.
    #[error("a secure session with {0} is already being set up")]
    AlreadyStarting(String),
    /// The peer's key changed and the user has not accepted the new key.
    #[error(
        "{0}'s key changed and nothing was sent; compare the safety number of the new key (/verify {0}) with {0}, then /accept-key {0} (and /verified {0} if the numbers matched), or /insecure {0} to send unencrypted"
    )]
    KeyNotAccepted(String),
    /// `/accept-key` with no changed key to accept.
    #[error("{0}'s key has not changed; nothing to accept")]
    NothingToAccept(String),
    /// `/insecure` for a conversation that is plain already.
    #[error("the conversation with {0} is already not end-to-end encrypted")]
    AlreadyPlain(String),
    /// No key known for the peer.
    #[error("no key known for {0} yet; /secure {0} fetches it")]
    NoKey(String),
    /// Encryption failed (not expected with valid state), or the random source failed.
    #[error("encryption failed")]
    Crypto,
    /// Conversations with [`MAX_PEERS`] peers are in use already (none of them one that only
    /// the peer started and that could make room).
    #[error("too many end-to-end conversations ({MAX_PEERS} people, the most kept): nothing was sent or changed")]
    TooManyPeers,
}
