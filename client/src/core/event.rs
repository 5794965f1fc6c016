//! What the protocol core tells its front end: [`Event`]s, the [`Welcome`] of a login, and the
//! [`LineId`] handles of the user's own lines.

use mm_common::e2e::E2eEvent;
use mm_common::protocol::{
    ErrorCode, LeaveReason, Member, MemberChange, Modes, Role, RoomMode, RoomSummary,
};

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
    /// [`crate::ConnectOptions::user_list`], or when the server has more users online than
    /// it lists at login: see `online_count`).
    pub online: Vec<String>,
    /// How many users are online, us included, as the server counted them.
    pub online_count: u32,
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
    /// The room of a room line ([`mm_common::protocol::LOBBY`] for the public chat); empty for
    /// a private line.
    pub room: String,
    /// Sender.
    pub from: String,
    /// Text.
    pub text: String,
    /// Whether it is an action (`/me waves`: shown as `* alice waves`).
    pub action: bool,
}

impl ChatLine {
    /// A line in the lobby or a private line (`room` empty), not an action.
    pub fn new(id: u64, ts: u64, room: &str, from: &str, text: &str) -> ChatLine {
        ChatLine {
            id,
            ts,
            room: room.to_owned(),
            from: from.to_owned(),
            text: text.to_owned(),
            action: false,
        }
    }

    /// Whether it is a line of a room other than the lobby.
    pub fn in_room(&self) -> bool {
        !self.room.is_empty() && !mm_common::protocol::is_lobby(&self.room)
    }
}

/// What the client knows of a room it is in (other than the lobby): kept by the core from the
/// server's room messages ([`crate::Client::rooms`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// Its name, as spelled when it was created.
    pub name: String,
    /// Its topic (empty: none), on one line.
    pub topic: String,
    /// Who set the topic (empty: nobody).
    pub topic_by: String,
    /// Its modes.
    pub modes: Modes,
    /// How many members it has (online or not).
    pub members: u32,
    /// Our standing in it.
    pub role: Role,
    /// The id of the newest line we had been sent when we last left it (0: none).
    pub seen: u64,
    /// Its members as last listed (`/names`, or the first page after a join), kept up to
    /// date with joins, parts, kicks and changes; at most [`crate::core::MAX_NAMES`].
    pub names: Vec<Member>,
}

/// Something that happened in a room, or about rooms: [`Event::Room`]. Every text in it that
/// came from the server is on one line; room names are valid ones.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoomEvent {
    /// We are in a room: after our `/join`, or at login for each of our rooms. Lines of its
    /// history follow.
    Entered {
        /// The room as we now know it.
        room: RoomInfo,
        /// Whether our join created it (we are its owner).
        created: bool,
        /// Whether it answers our own `/join` (not an entry the server made at login or
        /// after a reconnect): a front end brings such a room forward.
        asked: bool,
    },
    /// The lines of a room's history from here on are new to us (we had not been sent them):
    /// shown as a `── new ──` marker. Comes at most once per entering, before the first such
    /// line, and only when lines we had been sent come before it.
    NewLines {
        /// The room.
        room: String,
    },
    /// Someone joined a room we are in.
    Joined {
        /// The room.
        room: String,
        /// Who.
        nick: String,
    },
    /// Someone left a room we are in; `me`: we did (the room is closed for us).
    Parted {
        /// The room.
        room: String,
        /// Who.
        nick: String,
        /// Their reason (may be empty).
        reason: String,
        /// Whether it is us.
        me: bool,
    },
    /// Someone was removed from a room; `me`: we were (the room is closed for us).
    Kicked {
        /// The room.
        room: String,
        /// Who.
        nick: String,
        /// By whom.
        by: String,
        /// Why (may be empty).
        reason: String,
        /// Whether it is us.
        me: bool,
    },
    /// A room's topic: changed (`changed`), or as asked with `/topic #room`.
    Topic {
        /// The room.
        room: String,
        /// Who set it (empty: nobody).
        by: String,
        /// The topic (empty: none).
        topic: String,
        /// Whether it was just changed (else it answers our question).
        changed: bool,
    },
    /// A room mode was turned on or off.
    Mode {
        /// The room.
        room: String,
        /// By whom.
        by: String,
        /// Which mode.
        mode: RoomMode,
        /// On or off now.
        on: bool,
    },
    /// Someone's standing in a room changed (op, voice, ban...).
    Member {
        /// The room.
        room: String,
        /// By whom.
        by: String,
        /// Whose.
        nick: String,
        /// What changed.
        change: MemberChange,
    },
    /// An invitation: to us (`nick` is ours), or ours to someone (the confirmation).
    Invited {
        /// The room.
        room: String,
        /// Who invited.
        by: String,
        /// Who is invited.
        nick: String,
        /// Whether we are the one invited.
        me: bool,
    },
    /// A room's member list (the answer to `/names`, or the first page after a join).
    Names {
        /// The room.
        room: String,
        /// Its members, sorted by nick (at most [`crate::core::MAX_NAMES`]).
        members: Vec<Member>,
        /// Whether it holds every member.
        complete: bool,
    },
    /// A page of the room list (`/list`).
    List {
        /// Rooms in it, sorted by name (names valid, topics on one line).
        rooms: Vec<RoomSummary>,
        /// Where the next page starts (`/list more`); empty on the last page.
        next: String,
    },
    /// The server refused a room command.
    Error {
        /// The room, as we wrote it (cleaned).
        room: String,
        /// What we asked, in words (`join`, `set the topic of`...), when known.
        doing: Option<&'static str>,
        /// Machine-readable code.
        code: ErrorCode,
        /// The server's detail.
        detail: String,
    },
    /// Someone is away (a private line of ours reached them away), or back (`message`
    /// empty); `me`: our own `/away` was taken.
    Away {
        /// Whose.
        nick: String,
        /// Their away message (empty: back).
        message: String,
        /// Whether it is us.
        me: bool,
    },
}

/// Something that happened on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A room line (the lobby's or another room's: [`ChatLine::room`]).
    Public(ChatLine),
    /// A private line to us, sent plain (readable by the server).
    Private(ChatLine),
    /// A room line from before we logged in or joined (the room's recent history, oldest
    /// first, before anything live in that room).
    History(ChatLine),
    /// Something in a room other than its lines, or about rooms.
    Room(RoomEvent),
    /// A private line sent to us while we were offline, delivered at login (oldest first).
    Offline(ChatLine),
    /// Our private line's recipient is offline; the server stored it for their next login.
    Queued {
        /// Our line.
        line: LineId,
        /// The recipient, when the line went end-to-end encrypted (`None`: a plain line).
        secure_for: Option<String>,
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
