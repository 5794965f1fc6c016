//! What the protocol core tells its front end: [`Event`]s, the [`Welcome`] of a login, and the
//! [`LineId`] handles of the user's own lines.

use mm_common::e2e::E2eEvent;
use mm_common::protocol::{ErrorCode, LeaveReason};

/// A handle for one chat line given to [`crate::Client::public`] or [`crate::Client::private`]:
/// the events that answer it ([`Event::Sent`], [`Event::Queued`], a non-fatal
/// [`Event::Error`]), the end-to-end events that drop it unsent (`unsent` of
/// `E2eEvent::Failed` / `Ended`, as [`LineId::get`]) and [`Event::Closed`]'s `undelivered`
/// carry it. Unique within one [`crate::ClientState`] (so across the reconnections of one
/// process), increasing from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LineId(pub(crate) u64);

impl LineId {
    /// The number (as in end-to-end events' `unsent`).
    pub fn get(self) -> u64 {
        self.0
    }

    /// The handle of an end-to-end tag (which this client sets to [`LineId::get`]).
    pub(crate) fn from_tag(tag: u64) -> LineId {
        LineId(tag)
    }
}

/// What the server said when we logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// Our nick as registered.
    pub nick: String,
    /// Server software.
    pub server: String,
    /// The server's text limit in bytes.
    pub max_text_len: u32,
    /// The server's rate limit: messages at once...
    pub rate_burst: u32,
    /// ...and per second, sustained. The client paces itself within them.
    pub rate_per_sec: u32,
    /// Users online, us included (empty when the options asked not to keep the list:
    /// [`crate::ConnectOptions::user_list`]).
    pub online: Vec<String>,
}

/// One line of chat as the server delivered it: the shape shared by [`Event::Public`],
/// [`Event::Private`], [`Event::History`] and [`Event::Offline`], which say what kind of line
/// it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// Message id (unique on the server, increasing).
    pub id: u64,
    /// Server time, ms since the Unix epoch.
    pub ts: u64,
    /// Sender.
    pub from: String,
    /// Text.
    pub text: String,
}

/// Something that happened on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A public line.
    Public(ChatLine),
    /// A private line to us, sent plain (readable by the server).
    Private(ChatLine),
    /// A public line from before we logged in (the room's recent history, oldest first,
    /// before anything live).
    History(ChatLine),
    /// A private line sent to us while we were offline, delivered at login (oldest first).
    Offline(ChatLine),
    /// Our private line's recipient is offline; the server stored it for their next login.
    Queued {
        /// Our line.
        line: LineId,
        /// Its id.
        id: u64,
        /// Its server time.
        ts: u64,
    },
    /// The server accepted our line (for a secure line: the relay carrying it).
    Sent {
        /// Our line.
        line: LineId,
        /// Its id.
        id: u64,
        /// Its server time.
        ts: u64,
    },
    /// Someone came online.
    Joined {
        /// Their nick.
        nick: String,
    },
    /// Someone went offline.
    Left {
        /// Their nick.
        nick: String,
        /// Why.
        reason: LeaveReason,
    },
    /// The complete list of online users (answer to `/who`).
    Users(Vec<String>),
    /// An error from the server.
    Error {
        /// The line it refuses (non-fatal errors answering one of our lines); `None` for
        /// errors about something else.
        line: Option<LineId>,
        /// Code.
        code: ErrorCode,
        /// Whether the server is closing the connection.
        fatal: bool,
        /// Detail.
        detail: String,
    },
    /// The server is shutting down.
    Shutdown {
        /// Its reason.
        reason: String,
    },
    /// Something about an end-to-end session (ready, a decrypted message, a failure...).
    Secure(E2eEvent),
    /// A local warning for the user (not from the server).
    Warning(String),
    /// The safety number of a peer's key ([`crate::Client::safety_number`]), shown unasked
    /// when the peer presented a key other than its pin: the number of that new key, to compare
    /// before accepting it.
    SafetyNumber {
        /// The peer.
        peer: String,
        /// 60 digits in groups of 5.
        number: String,
        /// It is the number of a changed key, not accepted yet.
        new_key: bool,
    },
    /// The connection dropped and the driver reconnects by itself
    /// ([`crate::ConnectOptions::reconnect`]): attempt `attempt` starts in `in_secs` seconds
    /// (or at once after [`crate::Client::reconnect_now`]). Follows [`Event::Closed`] or a
    /// failed attempt.
    Reconnecting {
        /// 1 for the first attempt after a drop.
        attempt: u32,
        /// Seconds until it starts.
        in_secs: u64,
        /// Why the last connection or attempt failed, in words.
        reason: String,
    },
    /// Connected and logged in again after [`Event::Reconnecting`]: the server's welcome.
    /// Secure conversations restart by themselves as their peers are seen online.
    Reconnected(Welcome),
    /// The driver stopped reconnecting: retrying cannot help (the server refused the login,
    /// its certificate changed, another login took the account over) until the user asks
    /// ([`crate::Client::reconnect_now`]).
    GaveUp {
        /// Why, in a few words (a status line).
        reason: String,
        /// The whole story for the user: why, and what to do (trust a new certificate, then
        /// `/reconnect`...).
        advice: String,
        /// Our lines that waited for the next connection, oldest first: never sent.
        unsent: Vec<LineId>,
    },
    /// The connection ended; always the last event of a connection (with reconnecting on,
    /// [`Event::Reconnecting`] or [`Event::GaveUp`] follows).
    Closed {
        /// Why, when it was not a clean close.
        error: Option<String>,
        /// Our lines that got no answer, oldest first: whether the server took them is
        /// unknown (send them again to be sure). Lines waiting for a secure session are here
        /// too: they were never sent. With reconnecting on, plain lines never written are not
        /// here: they go on the next connection (or come in [`Event::GaveUp`]'s `unsent`).
        undelivered: Vec<LineId>,
    },
}
