//! The terminal UI's tabs and what it shows about them: a tab's lines and their kinds, how far
//! our own lines got, the security state of a conversation, the connection; and what a key
//! asks the runner to do.

use std::collections::VecDeque;

use mm_common::e2e::{Failure, Status, Trust};
use mm_common::identity::key_fingerprint;

use crate::command::Command;
use crate::LineId;

/// What a tab is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TabKind {
    /// The public room.
    Room,
    /// A room other than the lobby (`#dev`), opened when we enter it.
    Channel(String),
    /// A private conversation with this nick.
    Private(String),
}

/// The end-to-end state of a private conversation, as shown in the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// No secure session: TLS to the server only, which can read the messages.
    Plain,
    /// A secure session is being set up.
    Starting,
    /// End-to-end encrypted with the key of this fingerprint.
    Secure {
        /// The peer's key fingerprint.
        fingerprint: String,
        /// Whether the user verified the safety number.
        verified: bool,
    },
    /// End-to-end, no session yet: the first line fetches the peer's keys and starts one
    /// (whether or not the peer is online).
    Ready,
    /// The last attempt to start a session failed (`blocked`: sending is blocked until the
    /// user acts; otherwise the next line tries again).
    Failed {
        /// What happened.
        reason: String,
        /// The peer's key changed: possibly an attack.
        key_changed: bool,
        /// Sending is blocked until the user acts.
        blocked: bool,
        /// The peer has no end-to-end keys.
        no_keys: bool,
    },
}

impl From<&Status> for Security {
    fn from(status: &Status) -> Security {
        match status {
            Status::Plain => Security::Plain,
            Status::Starting => Security::Starting,
            Status::Secure { key, trust } => Security::Secure {
                fingerprint: key_fingerprint(key),
                verified: *trust == Trust::Verified,
            },
            Status::Ready => Security::Ready,
            Status::Failed(failure) => Security::Failed {
                reason: failure.to_string(),
                key_changed: matches!(failure, Failure::KeyChanged { .. }),
                blocked: failure.is_blocking(),
                no_keys: matches!(failure, Failure::NoKeys),
            },
            _ => Security::Failed {
                reason: "unknown state".into(),
                key_changed: false,
                blocked: true,
                no_keys: false,
            },
        }
    }
}

/// How a line looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Someone's action (`/me`), or ours: `* alice waves`.
    Action,
    /// Someone's public line.
    Public,
    /// A public line from before we logged in.
    History,
    /// A private line (not end-to-end encrypted).
    Private,
    /// A private line sent to us while we were offline.
    Offline,
    /// An end-to-end encrypted line.
    Secure,
    /// Our own line (public, or private in plain).
    Own,
    /// Our own end-to-end encrypted line (`queued`: waiting for the session).
    OwnSecure {
        /// Still waiting for the session to be ready.
        queued: bool,
    },
    /// A notice (joins, session changes, answers to commands).
    Notice,
    /// An error or warning.
    Error,
    /// A line of a safety-number block.
    Safety,
}

/// How far one of our own lines got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sending {
    /// No answer from the server yet (or waiting for the secure session).
    Pending(LineId),
    /// The server accepted it (or stored it for an offline recipient).
    Delivered,
    /// It was not delivered, for this reason (a refusal, a session that failed).
    Refused(String),
    /// The connection ended before the server answered: maybe not delivered.
    NotDelivered,
}

/// One line of scrollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Increasing per tab; the unread marker points at one.
    pub seq: u64,
    /// When it was sent (server time for messages, local time for notices), ms since the epoch.
    pub ts: u64,
    /// How it looks.
    pub kind: LineKind,
    /// The sender, for chat lines.
    pub from: Option<String>,
    /// The text (as received: the renderer neutralises control characters).
    pub text: String,
    /// For our own chat lines: how far it got.
    pub sending: Option<Sending>,
}

/// A conversation.
#[derive(Debug)]
pub struct Tab {
    /// What it is.
    pub kind: TabKind,
    /// Scrollback, oldest first, at most [`SCROLLBACK`](super::SCROLLBACK).
    pub lines: VecDeque<Line>,
    /// Lines that arrived while the tab was not shown.
    pub unread: usize,
    /// Whether one of them mentions us (or, for a private tab, any line at all).
    pub mention: bool,
    /// How many of them mention us (private tabs: how many private lines).
    pub mentions: usize,
    /// Rows scrolled back from the bottom, as drawn (long lines wrap to several rows; 0:
    /// following new lines). At most what shows the conversation's first row at the top.
    pub scroll: usize,
    /// The first line that arrived since the user last left the tab.
    pub marker: Option<u64>,
    /// For private tabs.
    pub security: Security,
    pub(super) next_seq: u64,
}

impl Tab {
    pub(super) fn new(kind: TabKind) -> Tab {
        Tab {
            kind,
            lines: VecDeque::new(),
            unread: 0,
            mention: false,
            mentions: 0,
            scroll: 0,
            marker: None,
            security: Security::Plain,
            next_seq: 0,
        }
    }

    /// The tab's title (`#lobby`, a room's name, or the peer's nick).
    pub fn title(&self) -> &str {
        match &self.kind {
            TabKind::Room => "#lobby",
            TabKind::Channel(room) => room,
            TabKind::Private(peer) => peer,
        }
    }

    /// The room of a room tab (not the lobby's).
    pub fn room(&self) -> Option<&str> {
        match &self.kind {
            TabKind::Channel(room) => Some(room),
            _ => None,
        }
    }

    /// The peer of a private tab.
    pub fn peer(&self) -> Option<&str> {
        match &self.kind {
            TabKind::Room | TabKind::Channel(_) => None,
            TabKind::Private(peer) => Some(peer),
        }
    }
}

/// The connection, as shown in the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conn {
    /// Logged in.
    Connected,
    /// Lost; trying again.
    Reconnecting {
        /// Attempts so far.
        attempt: u32,
        /// Seconds until the next one (0: trying now).
        in_secs: u64,
        /// Why the last one failed, or why the connection was lost.
        reason: String,
    },
    /// Given up (or quitting).
    Offline(String),
}

/// What the runner must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing (the state changed, redraw).
    None,
    /// Carry out this command (already resolved against the current tab).
    Run(Command),
    /// Send these lines in order, one chat line each: a draft of several lines. If one is not
    /// sent, it and the ones after it go back into the input ([`App::unsent`](super::App::unsent)).
    RunAll(Vec<Command>),
    /// `/reconnect`: connect again now, even after being replaced by another login or giving
    /// up.
    Reconnect,
    /// Leave.
    Quit,
}

/// A desktop notification to raise (when enabled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Title (who).
    pub title: String,
    /// Body (what).
    pub body: String,
}
