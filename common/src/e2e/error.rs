//! Why things fail: a peer's [`AbortReason`], a session's [`Failure`], and a refused command
//! or text ([`Refused`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::config::MAX_PEERS;
use crate::identity::{key_fingerprint, KEY_LEN};

/// Why a peer dropped a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AbortReason {
    /// The handshake failed.
    HandshakeFailed,
    /// Our pin for the sender's key does not match; we did not accept the session.
    KeyNotAccepted,
    /// A message did not decrypt.
    DecryptFailed,
    /// We have no session with that id (e.g. we restarted).
    UnknownSession,
    /// The user ended the session.
    Ended,
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AbortReason::HandshakeFailed => "their handshake failed",
            AbortReason::KeyNotAccepted => "they do not accept your key (their pin differs)",
            AbortReason::DecryptFailed => "a message did not decrypt on their side",
            AbortReason::UnknownSession => "they do not have this session (restarted?)",
            AbortReason::Ended => "they ended it",
        })
    }
}

/// Why a session failed. Until the user acts, sending to the peer is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The peer presented a key other than the pinned one.
    KeyChanged {
        /// The pinned key.
        pinned: [u8; KEY_LEN],
        /// The key presented now.
        presented: [u8; KEY_LEN],
    },
    /// A message did not decrypt (tampered, replayed, reordered, dropped or truncated).
    Decrypt,
    /// The handshake failed.
    Handshake,
    /// The peer presented a small-order (unusable) key.
    BadKey,
    /// The peer went offline.
    PeerLeft,
    /// The server could not deliver to the peer: it is not online.
    Unreachable,
    /// The peer dropped the session.
    PeerAborted(AbortReason),
    /// The handshake did not finish in time.
    Timeout,
    /// No session since our connection to the server was re-established, or since this
    /// client started.
    NotConnected,
    /// The server refused to relay a message of the session (busy, rate limit): the peer
    /// would not be able to decrypt what follows, so the session ends.
    RelayRefused,
    /// The peer presented our own identity key: the two users share one home directory (or
    /// the peer has a copy of our key). Never pinned, never a session.
    OwnKey,
}

impl Failure {
    /// Whether this only interrupted the session, so that a new one may start by itself. Key
    /// changes, invalid keys, and messages of an established session that did not decrypt (or
    /// that the peer could not decrypt) block the conversation until the user acts: they are
    /// what tampering looks like. A handshake that did not complete is an interruption: it
    /// exposes nothing, and stale handshake messages (kept in a mailbox across a reconnect)
    /// cause it harmlessly.
    pub fn is_interruption(&self) -> bool {
        matches!(
            self,
            Failure::PeerLeft
                | Failure::Unreachable
                | Failure::Timeout
                | Failure::NotConnected
                | Failure::RelayRefused
                | Failure::Handshake
                | Failure::PeerAborted(
                    AbortReason::UnknownSession | AbortReason::Ended | AbortReason::HandshakeFailed
                )
        )
    }

    /// What to tell a peer whose key check failed with this.
    pub(super) fn abort_reason(&self) -> AbortReason {
        match self {
            Failure::KeyChanged { .. } | Failure::OwnKey => AbortReason::KeyNotAccepted,
            _ => AbortReason::HandshakeFailed,
        }
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
            Failure::Decrypt => {
                f.write_str("a message failed to decrypt (tampered, replayed, reordered or lost)")
            }
            Failure::Handshake => f.write_str("the handshake failed"),
            Failure::BadKey => f.write_str("the peer sent an invalid key"),
            Failure::PeerLeft => f.write_str("the peer went offline"),
            Failure::Unreachable => f.write_str("the peer is not online"),
            Failure::PeerAborted(reason) => write!(f, "the peer dropped the session: {reason}"),
            Failure::Timeout => f.write_str("the handshake timed out"),
            Failure::NotConnected => f.write_str(
                "not set up again since the connection to the server was re-established",
            ),
            Failure::RelayRefused => {
                f.write_str("the server refused to pass on one of its messages")
            }
            Failure::OwnKey => f.write_str(
                "the peer presents your own key: you share one home directory (identity.key) with them; each user needs their own",
            ),
        }
    }
}

/// Why a text or command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// The session failed in a way that may be an attack; the user must `/secure` again or
    /// `/insecure`.
    #[error("the secure session with {peer} failed ({failure}); nothing was sent. {}", next_step(peer, *online))]
    Blocked {
        /// The peer.
        peer: String,
        /// Why.
        failure: Failure,
        /// Whether the peer is online now, if known.
        online: Option<bool>,
    },
    /// The conversation is secure but the peer is offline, and a session needs both online.
    #[error("{0} is offline and secure messages need {0} online; nothing was sent. The secure session restarts by itself when {0} is back (/insecure {0} sends unencrypted instead)")]
    Offline(String),
    /// Too many texts wait for the handshake.
    #[error("too many messages waiting for the secure session with {0}")]
    QueueFull(String),
    /// `/secure` to oneself.
    #[error("you cannot start a secure session with yourself")]
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
        "{0}'s key changed and nothing was sent; compare the safety number of the new key (/verify {0}) with {0}, then /accept-key {0} to start a new session (and /verified {0} if the numbers matched), or /insecure {0} to send unencrypted"
    )]
    KeyNotAccepted(String),
    /// `/accept-key` with no changed key to accept.
    #[error("{0}'s key has not changed; nothing to accept")]
    NothingToAccept(String),
    /// `/insecure` with no session.
    #[error("there is no secure session with {0}")]
    NoSession(String),
    /// No key known for the peer.
    #[error("no key known for {0} yet; run /secure {0} first")]
    NoKey(String),
    /// The crypto library failed (not expected with valid state).
    #[error("encryption failed")]
    Crypto,
    /// Secure conversations with [`MAX_PEERS`] peers exist already.
    #[error("too many secure conversations ({MAX_PEERS}); /insecure some first")]
    TooManyPeers,
}

/// What to tell the user to do about a blocked conversation.
fn next_step(peer: &str, online: Option<bool>) -> String {
    match online {
        Some(false) => format!("{peer} is offline now; when {peer} is back, /secure {peer} starts a new session (/insecure {peer} sends unencrypted)"),
        Some(true) => format!("{peer} is online: /secure {peer} starts a new session, or /insecure {peer} sends unencrypted"),
        None => format!("/secure {peer} starts a new session, or /insecure {peer} sends unencrypted"),
    }
}
