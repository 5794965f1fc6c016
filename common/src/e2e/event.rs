//! What the machine hands back to its caller: [`Action`]s to carry out, [`E2eEvent`]s to show,
//! what became of a text ([`Outgoing`]), and where a conversation stands ([`Status`]).

use super::error::Failure;
use super::trust::Trust;
use crate::identity::KEY_LEN;

/// Something to show the user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum E2eEvent {
    /// A handshake started (by us, or by the peer).
    Starting {
        /// The peer.
        peer: String,
        /// Whether the peer started it.
        by_peer: bool,
    },
    /// The session is ready (or was renewed by a re-handshake).
    Ready {
        /// The peer.
        peer: String,
        /// Its identity key.
        key: [u8; KEY_LEN],
        /// How far it is trusted.
        trust: Trust,
        /// A re-handshake replaced an existing session.
        renewed: bool,
    },
    /// A message that decrypted and authenticated.
    Message {
        /// The peer.
        peer: String,
        /// The text.
        text: String,
    },
    /// The session ended normally.
    Ended {
        /// The peer.
        peer: String,
        /// Whether the peer ended it.
        by_peer: bool,
        /// The tags (given to [`Sessions::send_text`](super::Sessions::send_text)) of texts that were waiting for the
        /// session and are now dropped, not sent; oldest first.
        unsent: Vec<u64>,
    },
    /// A session the peer offered did not come up, in a conversation the user never made
    /// secure: it stays plain (as it was).
    NotStarted {
        /// The peer.
        peer: String,
        /// Why.
        failure: Failure,
        /// The tags of texts that waited for the session and are dropped, not sent.
        unsent: Vec<u64>,
    },
    /// The session failed; sending to the peer is refused until `/secure` or `/insecure`.
    Failed {
        /// The peer.
        peer: String,
        /// Why.
        failure: Failure,
        /// The tags (given to [`Sessions::send_text`](super::Sessions::send_text)) of texts that were waiting for the
        /// session and are now dropped, not sent; oldest first.
        unsent: Vec<u64>,
    },
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Relay `payload` to `to`.
    Send {
        /// The peer.
        to: String,
        /// The encoded [`Envelope`].
        payload: Vec<u8>,
        /// The tag of the text this payload carries (as given to [`Sessions::send_text`](super::Sessions::send_text)),
        /// `None` for handshake, rekey, close and abort messages.
        line: Option<u64>,
    },
    /// Show this.
    Event(E2eEvent),
    /// The pins or the conversations changed: save both ([`Sessions::pins`](super::Sessions::pins),
    /// [`Sessions::conversations_text`](super::Sessions::conversations_text)).
    Persist,
    /// Watch this peer's presence from now on (the server's `Monitor`), so that an interrupted
    /// session can restart when it comes online: pass what the server says to
    /// [`Sessions::presence`](super::Sessions::presence).
    Monitor(String),
}

/// What to do with a text for a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// The conversation is plain (never secured, or the user said `/insecure`): send it as a
    /// plain private message.
    Plain,
    /// Encrypted: carry out these actions.
    Secure(Vec<Action>),
    /// A handshake is running, or was started now to resume an interrupted session (carry out
    /// these actions): the text waits and goes encrypted when the session is ready.
    Queued(Vec<Action>),
}

/// Where a conversation stands, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Plain (never secured, or the user said `/insecure`): private messages go in plain
    /// text (over TLS).
    Plain,
    /// Being set up.
    Starting,
    /// Up.
    Secure {
        /// The peer's key.
        key: [u8; KEY_LEN],
        /// Its trust.
        trust: Trust,
    },
    /// Secure wanted, but the session was interrupted (`reason`): nothing goes plain; the next
    /// text starts a new session and waits for it (refused while the peer is offline), and the
    /// session restarts by itself when the peer comes online.
    Interrupted {
        /// Why there is no session now.
        reason: Failure,
        /// Whether the peer is online, if known.
        online: Option<bool>,
    },
    /// Failed in a way that may be an attack, or the peer's key changed: sending is refused
    /// until the user acts.
    Failed(Failure),
}
