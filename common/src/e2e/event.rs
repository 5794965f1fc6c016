//! What the machine hands back to its caller: [`Action`]s to carry out, [`E2eEvent`]s to show,
//! what became of a text ([`Outgoing`]), and where a conversation stands ([`Status`]).

use super::error::Failure;
use super::trust::Trust;
use crate::identity::KEY_LEN;
use crate::prekeys::KeyUpload;

/// Something to show the user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum E2eEvent {
    /// A session is up: we started it from the peer's keys, or the peer started it.
    Ready {
        /// The peer.
        peer: String,
        /// Its identity key.
        key: [u8; KEY_LEN],
        /// How far it is trusted.
        trust: Trust,
        /// Whether the peer started it.
        by_peer: bool,
    },
    /// A message that decrypted and authenticated.
    Message {
        /// The peer.
        peer: String,
        /// The server's id of the relay that carried it.
        id: u64,
        /// The text.
        text: String,
    },
    /// The user said `/secure` after `/insecure`: texts go end-to-end again, on the sessions
    /// kept.
    Resumed {
        /// The peer.
        peer: String,
    },
    /// The user said `/insecure`: texts go plain from now on.
    Ended {
        /// The peer.
        peer: String,
        /// Texts that waited for the peer's keys and are dropped, not sent (tags as given to
        /// [`Sessions::send_text`](super::Sessions::send_text)).
        unsent: Vec<u64>,
    },
    /// No session could be set up (the texts waiting are dropped, not sent), or the
    /// conversation is blocked.
    Failed {
        /// The peer.
        peer: String,
        /// Why.
        failure: Failure,
        /// The tags of texts that waited and are dropped, not sent; oldest first.
        unsent: Vec<u64>,
    },
    /// A message from the peer could not be read and is not shown: altered on the way, sent
    /// in a session we no longer have, or the one-time key it used is gone (the server handed
    /// it out twice). The session carries on; the peer should send it again.
    Unreadable {
        /// The peer.
        peer: String,
    },
    /// A message the peer had sent before came again under a new id (the server replayed
    /// it): ignored.
    Replayed {
        /// The peer.
        peer: String,
    },
    /// Messages from the peer under a changed key not accepted yet: held, not shown and not
    /// lost, until the user compares safety numbers and says `/accept-key` (the peer cannot be
    /// told). Said each time one more is held.
    Held {
        /// The peer.
        peer: String,
        /// How many are held now.
        held: usize,
        /// How many older ones were dropped since the last `/accept-key`, over the bounds.
        dropped: u64,
    },
    /// The user accepted the peer's new key: the messages held under it follow, as if they
    /// arrived now (a [`E2eEvent::Ready`], then each one).
    Released {
        /// The peer.
        peer: String,
        /// The key just accepted.
        key: [u8; KEY_LEN],
        /// How many follow.
        count: usize,
    },
    /// The peer could not read `count` of our messages: it had no session with us when they
    /// came (it lost its keys, or has a new identity), and told us so end-to-end, in a session
    /// it started (under a changed key this comes only after `/accept-key`). The user should
    /// send them again.
    PeerCouldNotRead {
        /// The peer.
        peer: String,
        /// How many (as the peer counted them; at most
        /// [`MAX_NOTICE_COUNT`](super::config::MAX_NOTICE_COUNT)).
        count: u32,
    },
    /// Another copy of this client's home published keys since this one last did: two
    /// machines use one home, and their sessions break each other's.
    OtherDevice,
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Save the state ([`Sessions::state_bytes`](super::Sessions::state_bytes)) and the pins
    /// ([`Sessions::pins`](super::Sessions::pins)) now, before carrying out the actions after
    /// it: a message is sent only once the state that encrypted it is on disk (a restart must
    /// never encrypt again under the same key), and shown only once the state that decrypted
    /// it is.
    Persist,
    /// Relay `payload` to `to`.
    Send {
        /// The peer.
        to: String,
        /// The encoded [`Envelope`](super::Envelope).
        payload: Vec<u8>,
        /// The tag of the text this payload carries (as given to
        /// [`Sessions::send_text`](super::Sessions::send_text)).
        line: Option<u64>,
    },
    /// Send `text` to `to` as a plain private line (`ClientMsg::Private`): typed after
    /// `/insecure` while texts before it waited for the peer's keys, it goes after them.
    SendPlain {
        /// The peer.
        to: String,
        /// The text.
        text: String,
        /// Its tag (as given to [`Sessions::send_text`](super::Sessions::send_text)).
        line: u64,
    },
    /// Show this.
    Event(E2eEvent),
    /// Publish these keys in the server's key directory (`ClientMsg::PublishKeys`); pass the
    /// answer to [`Sessions::published`](super::Sessions::published).
    Publish(KeyUpload),
    /// Fetch this user's prekey bundle (`ClientMsg::FetchBundle`); pass the answer to
    /// [`Sessions::bundle`](super::Sessions::bundle).
    FetchBundle(String),
}

/// What to do with a text for a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// The conversation is plain (the user said `/insecure`, or end-to-end by default is off
    /// and the user never said `/secure`): send it as a plain private message.
    Plain,
    /// Encrypted: carry out these actions.
    Secure(Vec<Action>),
    /// It waits for the peer's keys (carry out these actions: the fetch), and goes encrypted
    /// when they come, or fails visibly.
    Queued(Vec<Action>),
    /// Plain (the user said `/insecure`), but it waits behind texts typed before that are still
    /// waiting for the peer's keys: an [`Action::SendPlain`] sends it after them.
    QueuedPlain,
}

/// Where a conversation stands, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Plain: the user said `/insecure` (or end-to-end by default is off).
    Plain,
    /// End-to-end, with no session yet: the first text fetches the peer's keys and starts
    /// one, whether or not the peer is online.
    Ready,
    /// Fetching the peer's keys.
    Starting,
    /// A session is up.
    Secure {
        /// The peer's key.
        key: [u8; KEY_LEN],
        /// Its trust.
        trust: Trust,
    },
    /// The last attempt failed, or the conversation is blocked ([`Failure::is_blocking`]).
    Failed(Failure),
}
