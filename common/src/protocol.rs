//! Messages, limits and validation rules of protocol version [`PROTOCOL_VERSION`].
//!
//! Each frame's payload is one postcard-encoded [`ClientMsg`] (client → server) or [`ServerMsg`]
//! (server → client). `PROTOCOL.md` documents the byte layout for people writing other clients.
//! New variants are only ever appended, so the variant numbers below are part of the protocol.

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks. The client sends it in [`ClientMsg::Hello`]; the
/// server refuses versions it does not speak with [`ErrorCode::UNSUPPORTED_VERSION`].
pub const PROTOCOL_VERSION: u16 = 6;

/// The TLS ALPN protocol name. Both sides offer it, so a Multi-Messenger client and an HTTPS
/// server (or the reverse) fail at the handshake instead of exchanging garbage.
pub const ALPN: &[u8] = b"mm/1";

/// The TCP port a server listens on and a client connects to when none is given (unassigned by
/// IANA).
pub const DEFAULT_PORT: u16 = 7667;

/// Longest nick, in characters (nicks are ASCII, so also in bytes).
pub const MAX_NICK_LEN: usize = 32;

/// Longest chat text, in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 4096;

/// Most nicks the server puts in one [`ServerMsg::Users`] frame; longer lists are split so that
/// every frame stays far below the frame limit (1,000 × 33 bytes ≈ 33 KB).
pub const USERS_PER_FRAME: usize = 1000;

/// Largest relay payload (end-to-end encrypted data between two clients), in bytes.
pub const MAX_RELAY_LEN: usize = 16 * 1024;

/// Longest error detail the server sends, in bytes.
pub const MAX_DETAIL_LEN: usize = 512;

/// Most nicks in one [`ClientMsg::Monitor`].
pub const MONITOR_PER_FRAME: usize = 64;

/// The room every user is in while online: the public chat of protocol 4. It cannot be left.
pub const LOBBY: &str = "#lobby";

/// Longest room name, in characters: `#` and 1 to 48 more (room names are ASCII).
pub const MAX_ROOM_LEN: usize = 49;

/// Longest room topic the protocol carries, in bytes of UTF-8 (a server may set a lower limit,
/// `max_topic_len`).
pub const MAX_TOPIC_LEN: usize = 1024;

/// Longest reason (for parting or a kick) or away message, in bytes of UTF-8.
pub const MAX_REASON_LEN: usize = 256;

/// Most members the server puts in one [`ServerMsg::Names`] frame (1,000 × ~36 bytes ≈ 36 KB).
pub const NAMES_PER_FRAME: usize = 1000;

/// Most members in the one [`ServerMsg::Names`] page that follows a [`ServerMsg::Entered`]
/// answering a [`ClientMsg::Join`]: a join into a room of thousands costs one small page, not
/// the whole list (`/names` pages through the rest).
pub const NAMES_ON_JOIN: usize = 100;

/// Most rooms in one [`ServerMsg::Rooms`] page.
pub const ROOMS_PER_FRAME: usize = 100;

/// Most nicks one connection may monitor; further ones are ignored (like IRCv3 `MONITOR`'s
/// limit, a bound on the server's memory per connection).
pub const MAX_MONITORED: usize = 256;

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First frame of every connection: who the client is and which protocol it speaks.
    Hello {
        /// The client's [`PROTOCOL_VERSION`].
        version: u16,
        /// Requested nick; see [`validate_nick`].
        nick: String,
    },
    /// A line for everyone else in a room the sender is a member of.
    Public {
        /// The room's name ([`LOBBY`] for the public chat of protocol 4); see
        /// [`validate_room`].
        room: String,
        /// The text; see [`validate_text`].
        text: String,
        /// Whether it is an action (`/me waves`: shown as `* alice waves`).
        action: bool,
    },
    /// A line for one user only.
    Private {
        /// Recipient nick (case-insensitive).
        to: String,
        /// The text; see [`validate_text`].
        text: String,
    },
    /// Asks for the list of online users; answered with [`ServerMsg::Users`] frames.
    Who,
    /// Liveness probe; answered with [`ServerMsg::Pong`] carrying the same token.
    Ping {
        /// Opaque value echoed back.
        token: u64,
    },
    /// Answer to a [`ServerMsg::Ping`].
    Pong {
        /// The token of the ping being answered.
        token: u64,
    },
    /// The client is leaving; the server closes the connection after it.
    Quit,
    /// Opaque bytes for one user: end-to-end encrypted messages ([`crate::e2e`]'s envelope).
    /// The server does not look inside; it adds the authenticated sender and forwards. Like a
    /// [`ClientMsg::Private`], it is answered with [`ServerMsg::Sent`] when the recipient is
    /// online, [`ServerMsg::Queued`] when it is a registered user who is offline (kept in their
    /// mailbox until they log in and acknowledge it), or an [`ServerMsg::Error`].
    Relay {
        /// Recipient nick (case-insensitive).
        to: String,
        /// 1 to [`MAX_RELAY_LEN`] bytes.
        payload: Vec<u8>,
    },
    /// The client has received every line addressed to it personally — [`ServerMsg::Private`],
    /// [`ServerMsg::Offline`] and [`ServerMsg::Relay`] — whose id is at most `up_to`. The
    /// server keeps each such line in the recipient's mailbox until this arrives, and sends the
    /// unacknowledged ones again (with the same ids) at the next login. Not answered; counted
    /// against the rate limit only when it acknowledges nothing new (ids beyond what the
    /// connection was given are ignored).
    Received {
        /// Highest id received; ids of personal lines reach one client in increasing order.
        up_to: u64,
    },
    /// Watch these users' presence (the idea of IRCv3 `MONITOR`): the server answers at once
    /// with one [`ServerMsg::Presence`] per valid nick, then sends one each time that user
    /// comes online or goes offline, for as long as this connection lasts — whatever the size
    /// of the room (join and leave notices stop in large rooms). 1 to [`MONITOR_PER_FRAME`]
    /// nicks; invalid nicks and those beyond [`MAX_MONITORED`] per connection are ignored. Not
    /// answered otherwise; counted against the rate limit.
    Monitor {
        /// Nicks to watch (case-insensitive).
        nicks: Vec<String>,
    },
    /// Join a room, creating it if it does not exist (its creator becomes its owner). Answered
    /// with [`ServerMsg::Entered`] (then one [`ServerMsg::Names`] page of at most
    /// [`NAMES_ON_JOIN`] members and the room's [`ServerMsg::History`]), or with a
    /// [`ServerMsg::RoomError`]. The membership persists: the server enters the user into
    /// their rooms again at every login. Joining a room one is in answers as a join does.
    Join {
        /// The room's name; see [`validate_room`].
        room: String,
    },
    /// Leave a room. Everyone in it, the leaver included, gets [`ServerMsg::Parted`]; or a
    /// [`ServerMsg::RoomError`] (not a member; [`LOBBY`] cannot be left).
    Part {
        /// The room's name.
        room: String,
        /// Why, shown to the others; may be empty. At most [`MAX_REASON_LEN`] bytes.
        reason: String,
    },
    /// Asks for the list of rooms, in pages of at most [`ROOMS_PER_FRAME`] sorted by name:
    /// answered with one [`ServerMsg::Rooms`]. Invite-only rooms are listed to their members
    /// only.
    List {
        /// Start after this room name (case-insensitive); empty for the first page.
        after: String,
    },
    /// Asks for a room's members: answered with [`ServerMsg::Names`] frames (the last has
    /// `last == true`), or a [`ServerMsg::RoomError`]. Members only, unless the room is not
    /// invite-only.
    Names {
        /// The room's name.
        room: String,
    },
    /// Sets a room's topic (empty clears it), or asks for it (`None`): answered with
    /// [`ServerMsg::Topic`] (to everyone in the room when it changes) or a
    /// [`ServerMsg::RoomError`].
    Topic {
        /// The room's name.
        room: String,
        /// The new topic (at most the server's `max_topic_len`, never more than
        /// [`MAX_TOPIC_LEN`]), or `None` to ask.
        topic: Option<String>,
    },
    /// Invites a user into an invite-only room (ops only there; any member otherwise). Both
    /// the inviter and the invitee (if online) get [`ServerMsg::Invited`]; the invitation is
    /// kept until used.
    Invite {
        /// The room's name.
        room: String,
        /// Who is invited (case-insensitive): any valid nick (the invitation waits until that
        /// nick joins).
        nick: String,
    },
    /// Removes a member from a room (ops only; nobody removes the owner). Everyone in it, the
    /// kicked user included, gets [`ServerMsg::Kicked`].
    Kick {
        /// The room's name.
        room: String,
        /// Who (case-insensitive).
        nick: String,
        /// Why; may be empty. At most [`MAX_REASON_LEN`] bytes.
        reason: String,
    },
    /// Changes a user's standing in a room (ops only): operator, voice, ban (applies to the
    /// account: a banned user cannot join, and is removed if a member). Everyone in the room
    /// gets [`ServerMsg::MemberChanged`].
    Member {
        /// The room's name.
        room: String,
        /// Who (case-insensitive).
        nick: String,
        /// What changes.
        change: MemberChange,
    },
    /// Turns a room mode on or off (ops only). Everyone in the room gets
    /// [`ServerMsg::ModeChanged`].
    Mode {
        /// The room's name.
        room: String,
        /// Which mode.
        mode: RoomMode,
        /// On or off.
        on: bool,
    },
    /// Marks the user away with a message, or back (empty). Answered with [`ServerMsg::Away`]
    /// for the user themself; senders of private lines to an away user get a `ServerMsg::Away`
    /// after their `Sent`. At most [`MAX_REASON_LEN`] bytes.
    Away {
        /// Why; empty for back.
        message: String,
    },
    /// Publishes this account's end-to-end keys in the server's key directory (protocol 6):
    /// sent after every login, and again with more one-time prekeys when the server says they
    /// run low. Answered with [`ServerMsg::KeysPublished`], or a non-fatal [`ServerMsg::Error`]
    /// `bad-keys` ([`ErrorCode::BAD_KEYS`]). Not in the order of line answers.
    PublishKeys {
        /// The keys; see [`crate::prekeys::KeyUpload::validate`].
        keys: crate::prekeys::KeyUpload,
    },
    /// Asks for a user's prekey bundle, to start an end-to-end session with them (online or
    /// not). Answered with [`ServerMsg::Bundle`]. Rate-limited per account separately from
    /// chat (each answer may use up one of the user's one-time prekeys).
    FetchBundle {
        /// Whose (case-insensitive).
        nick: String,
    },
    /// Starts a login with an **account key** instead of a TLS client certificate (the web
    /// client: a browser cannot present a certificate it made itself without a picker). In
    /// place of [`ClientMsg::Hello`], as the first message; the server answers with
    /// [`ServerMsg::Challenge`], the client proves it holds the key with
    /// [`ClientMsg::KeyProof`], and the login goes on as after `Hello` (the same ownership
    /// rules, limits and errors), with the account's credential
    /// [`crate::key_login::credential`] in place of the certificate's fingerprint. See
    /// [`crate::key_login`].
    KeyHello {
        /// [`PROTOCOL_VERSION`].
        version: u16,
        /// The nick to log in as.
        nick: String,
        /// The account key: an ECDSA P-256 public key, SEC1 uncompressed
        /// ([`crate::key_login::PUBLIC_KEY_LEN`] bytes, starting `04`).
        key: Vec<u8>,
    },
    /// Answers [`ServerMsg::Challenge`]: the signature of
    /// [`crate::key_login::signed_message`] with the account key.
    KeyProof {
        /// ECDSA P-256 with SHA-256, `r ‖ s` (IEEE P1363, as WebCrypto produces;
        /// [`crate::key_login::SIGNATURE_LEN`] bytes).
        signature: Vec<u8>,
    },
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// Successful answer to [`ClientMsg::Hello`]; followed by [`ServerMsg::Users`] frames.
    Welcome {
        /// The nick as registered (the spelling the client asked for).
        nick: String,
        /// Server software name and version, for display.
        server: String,
        /// How many users are online, this client included.
        online: u32,
        /// The server's text limit in bytes (at most [`MAX_TEXT_LEN`]).
        max_text_len: u32,
        /// Messages a client may send at once (every frame counts but `Pong`, `Quit` and a
        /// `Received` that acknowledges something new).
        rate_burst: u32,
        /// Messages per second a client may send, sustained. Clients should pace themselves
        /// within these limits; frames over them are refused with `rate-limited`.
        rate_per_sec: u32,
    },
    /// Part of the list of online users. Lists longer than [`USERS_PER_FRAME`] come in several
    /// frames; the one with `last == true` ends the list.
    Users {
        /// Nicks in this part.
        nicks: Vec<String>,
        /// Whether this is the last part.
        last: bool,
    },
    /// A line from another user in a room this client is in.
    Public {
        /// Server-assigned message id, increasing.
        id: u64,
        /// Server receive time, milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// The room's name, as spelled when it was created.
        room: String,
        /// Sender nick.
        from: String,
        /// The text, exactly as sent.
        text: String,
        /// Whether it is an action (`/me`).
        action: bool,
    },
    /// A private line addressed to this client.
    Private {
        /// Server-assigned message id, increasing.
        id: u64,
        /// Server receive time, milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// Sender nick.
        from: String,
        /// The text, exactly as sent.
        text: String,
    },
    /// The server accepted this client's [`ClientMsg::Public`], [`ClientMsg::Private`] or
    /// [`ClientMsg::Relay`]. Every such message is answered, in order, with exactly one `Sent` or
    /// one non-fatal [`ServerMsg::Error`].
    Sent {
        /// The id the message was given.
        id: u64,
        /// Its server timestamp, milliseconds since the Unix epoch (UTC).
        ts: u64,
    },
    /// A user came into a room: in [`LOBBY`], came online; in another room, joined it.
    /// Sent only while the room is small enough (the server's `presence_max_online`).
    Joined {
        /// Milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// The room's name.
        room: String,
        /// Their nick.
        nick: String,
    },
    /// A user went offline (sent in [`LOBBY`] only; other rooms keep their members while
    /// they are offline). Sent only while the lobby is small enough.
    Left {
        /// Milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// The room's name.
        room: String,
        /// Their nick.
        nick: String,
        /// Why.
        reason: LeaveReason,
    },
    /// Something went wrong. When `fatal` is true the server closes the connection next.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Whether the connection is being closed.
        fatal: bool,
        /// Human-readable detail (at most [`MAX_DETAIL_LEN`] bytes, never message text).
        detail: String,
    },
    /// The server is shutting down; it closes the connection after this frame.
    Shutdown {
        /// Human-readable reason.
        reason: String,
    },
    /// Liveness probe; the client must answer with [`ClientMsg::Pong`].
    Ping {
        /// Opaque value to echo.
        token: u64,
    },
    /// Answer to a [`ClientMsg::Ping`].
    Pong {
        /// The token of the ping being answered.
        token: u64,
    },
    /// Opaque bytes from another user (see [`ClientMsg::Relay`]).
    Relay {
        /// Server-assigned message id.
        id: u64,
        /// Server receive time, milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// Sender nick, as authenticated by the server.
        from: String,
        /// The bytes, exactly as sent.
        payload: Vec<u8>,
    },
    /// A room line from before this client logged in or joined: the room's recent history,
    /// oldest first, sent at login (the lobby's right after the user list, each other room's
    /// after its [`ServerMsg::Entered`]) and after a join's first page of members, before
    /// anything live in that room.
    History {
        /// The id it was given when it was sent.
        id: u64,
        /// When it was sent, milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// The room's name.
        room: String,
        /// Sender nick.
        from: String,
        /// The text, exactly as sent.
        text: String,
        /// Whether it is an action (`/me`).
        action: bool,
    },
    /// Answer to a [`ClientMsg::Private`] or [`ClientMsg::Relay`] whose recipient is a
    /// registered user who is offline: the server stored it and delivers it at their next
    /// login (a relay as [`ServerMsg::Relay`], with the same id). Takes the place of `Sent`.
    Queued {
        /// The id the message was given.
        id: u64,
        /// Its server timestamp, milliseconds since the Unix epoch (UTC).
        ts: u64,
    },
    /// A private line sent to this client while it was offline, delivered at login (after any
    /// `History`), oldest first.
    Offline {
        /// The id it was given when it was sent.
        id: u64,
        /// When it was sent, milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// Sender nick.
        from: String,
        /// The text, exactly as sent.
        text: String,
    },
    /// A monitored user's presence ([`ClientMsg::Monitor`]): now, then at every change.
    Presence {
        /// The nick (as registered when online, as asked otherwise).
        nick: String,
        /// Whether they are online.
        online: bool,
    },
    /// This client is in a room: the answer to a [`ClientMsg::Join`], and at login once for
    /// each room (other than [`LOBBY`]) the user is a member of, after the lobby's history.
    /// Followed by the room's [`ServerMsg::History`]; a join's answer puts one
    /// [`ServerMsg::Names`] page (at most [`NAMES_ON_JOIN`] members) in between.
    Entered {
        /// The room's name, as spelled when it was created.
        room: String,
        /// Its topic (empty: none).
        topic: String,
        /// Who set the topic, and when (ms since the Unix epoch); empty and 0 if never.
        topic_by: String,
        /// When the topic was set.
        topic_ts: u64,
        /// Its modes.
        modes: Modes,
        /// How many members it has (online or not).
        members: u32,
        /// This user's standing in it.
        role: Role,
        /// The id of the newest room line this user had been sent when they last left or
        /// logged out (0: none): a client marks the lines after it as new.
        seen: u64,
        /// Whether this join created the room (its creator is its owner).
        created: bool,
    },
    /// Part of a room's member list ([`ClientMsg::Names`], or the first page after
    /// [`ServerMsg::Entered`]), sorted by nick; `last == true` ends it.
    Names {
        /// The room's name.
        room: String,
        /// Members in this part.
        members: Vec<Member>,
        /// Whether this is the last part (after a join: whether the page holds every member).
        last: bool,
    },
    /// One page of the room list ([`ClientMsg::List`]).
    Rooms {
        /// Rooms in this page, sorted by name.
        rooms: Vec<RoomSummary>,
        /// Ask with this in [`ClientMsg::List::after`] for the next page; empty when this is
        /// the last one.
        next: String,
    },
    /// A member left a room ([`ClientMsg::Part`]); also the leaver's own confirmation.
    Parted {
        /// Milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// The room's name.
        room: String,
        /// Who left.
        nick: String,
        /// Their reason; may be empty.
        reason: String,
    },
    /// A member was removed from a room ([`ClientMsg::Kick`], or a ban); sent to everyone in
    /// it and to the removed user.
    Kicked {
        /// Milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// The room's name.
        room: String,
        /// Who was removed.
        nick: String,
        /// By whom.
        by: String,
        /// Why; may be empty.
        reason: String,
    },
    /// A room's topic: when it changes (to everyone in the room), or when asked.
    Topic {
        /// When it was set, milliseconds since the Unix epoch (UTC); 0 if never.
        ts: u64,
        /// The room's name.
        room: String,
        /// Who set it (empty if never).
        by: String,
        /// The topic (empty: none).
        topic: String,
    },
    /// A room mode changed ([`ClientMsg::Mode`]); to everyone in the room.
    ModeChanged {
        /// Milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// The room's name.
        room: String,
        /// Who changed it.
        by: String,
        /// Which mode.
        mode: RoomMode,
        /// On or off now.
        on: bool,
    },
    /// A user's standing in a room changed ([`ClientMsg::Member`]); to everyone in the room.
    MemberChanged {
        /// Milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// The room's name.
        room: String,
        /// Who changed it.
        by: String,
        /// Whose standing.
        nick: String,
        /// What changed.
        change: MemberChange,
    },
    /// An invitation into a room ([`ClientMsg::Invite`]): to the invitee (if online) and, as
    /// the confirmation, to the inviter.
    Invited {
        /// Milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// The room's name.
        room: String,
        /// Who invited.
        by: String,
        /// Who is invited.
        nick: String,
    },
    /// A room command ([`ClientMsg::Join`] … [`ClientMsg::Mode`]) was refused. Not fatal.
    RoomError {
        /// The room's name as the client wrote it.
        room: String,
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable detail (at most [`MAX_DETAIL_LEN`] bytes).
        detail: String,
    },
    /// A user is away (or back, with an empty message): to that user after
    /// [`ClientMsg::Away`], and to the sender of a private line to them, after its answer.
    Away {
        /// Whose.
        nick: String,
        /// Their away message; empty: back.
        message: String,
    },
    /// The answer to [`ClientMsg::PublishKeys`]: the keys are stored (durably).
    KeysPublished {
        /// How many one-time prekeys the directory holds for this account now.
        one_time: u32,
        /// Another copy of this client's home published keys since this one last did (see
        /// [`crate::prekeys::DeviceCheck`]): two machines are using one home, and their
        /// end-to-end sessions will break each other's.
        other_device: bool,
    },
    /// The answer to [`ClientMsg::FetchBundle`].
    Bundle {
        /// The nick as asked.
        nick: String,
        /// The bundle, or why there is none.
        answer: crate::prekeys::BundleAnswer,
    },
    /// This account's one-time prekeys in the directory fell below
    /// [`crate::prekeys::PREKEYS_LOW`]: publish more ([`ClientMsg::PublishKeys`]).
    PrekeysLow {
        /// How many remain.
        one_time: u32,
    },
    /// A [`ClientMsg::PublishKeys`] was refused: `bad-keys` (the detail says which rule),
    /// `busy` (the store could not take them now: publish again later), `rate-limited` or
    /// `shutting-down`. Its own message, not an [`ServerMsg::Error`], so that a client counting
    /// the answers of its lines never takes it for one.
    KeysRefused {
        /// Why.
        code: ErrorCode,
        /// Human-readable detail (at most [`MAX_DETAIL_LEN`] bytes).
        detail: String,
    },
    /// Answers [`ClientMsg::KeyHello`]: the client signs
    /// [`crate::key_login::signed_message`] over this nonce and answers with
    /// [`ClientMsg::KeyProof`].
    Challenge {
        /// [`crate::key_login::NONCE_LEN`] fresh random bytes, never used for another login.
        nonce: Vec<u8>,
    },
}

/// A member's standing in a room, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// A member: reads and speaks (unless the room is moderated).
    Member,
    /// Speaks in a moderated room.
    Voiced,
    /// An operator: sets the topic and modes, invites, kicks, bans, gives and takes voice and
    /// operator status.
    Op,
    /// The room's owner (its creator, or whom the server's operator named): an operator that
    /// other operators cannot kick, ban or demote.
    Owner,
}

impl Role {
    /// Whether this standing may act as an operator.
    pub fn is_op(self) -> bool {
        self >= Role::Op
    }

    /// Whether this standing may speak in a moderated room.
    pub fn is_voiced(self) -> bool {
        self >= Role::Voiced
    }

    /// IRC's prefix for the standing: `~` owner, `@` op, `+` voiced, nothing for a member.
    pub fn prefix(self) -> &'static str {
        match self {
            Role::Owner => "~",
            Role::Op => "@",
            Role::Voiced => "+",
            Role::Member => "",
        }
    }
}

/// A room's modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Modes {
    /// `+i`: only invited users join.
    pub invite_only: bool,
    /// `+t`: only operators set the topic.
    pub topic_ops: bool,
    /// `+m`: only operators and voiced members speak.
    pub moderated: bool,
}

impl Modes {
    /// Whether `mode` is on.
    pub fn get(self, mode: RoomMode) -> bool {
        match mode {
            RoomMode::InviteOnly => self.invite_only,
            RoomMode::TopicOps => self.topic_ops,
            RoomMode::Moderated => self.moderated,
        }
    }

    /// Turns `mode` on or off.
    pub fn set(&mut self, mode: RoomMode, on: bool) {
        match mode {
            RoomMode::InviteOnly => self.invite_only = on,
            RoomMode::TopicOps => self.topic_ops = on,
            RoomMode::Moderated => self.moderated = on,
        }
    }

    /// IRC's spelling of the modes that are on: `+imt`, or empty.
    pub fn letters(self) -> String {
        let mut s = String::new();
        for mode in RoomMode::ALL {
            if self.get(mode) {
                s.push(mode.letter());
            }
        }
        if s.is_empty() {
            s
        } else {
            format!("+{s}")
        }
    }
}

/// One room mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoomMode {
    /// `i`: invite-only.
    InviteOnly,
    /// `t`: topic settable by operators only.
    TopicOps,
    /// `m`: moderated.
    Moderated,
}

impl RoomMode {
    /// Every mode, in letter order.
    pub const ALL: [RoomMode; 3] = [
        RoomMode::InviteOnly,
        RoomMode::Moderated,
        RoomMode::TopicOps,
    ];

    /// IRC's letter for it.
    pub fn letter(self) -> char {
        match self {
            RoomMode::InviteOnly => 'i',
            RoomMode::TopicOps => 't',
            RoomMode::Moderated => 'm',
        }
    }

    /// The mode of an IRC letter (`i`, `t`, `m`) or a plain word (`invite-only`,
    /// `topic-ops`, `moderated`).
    pub fn parse(s: &str) -> Option<RoomMode> {
        match s {
            "i" | "invite-only" | "invite" => Some(RoomMode::InviteOnly),
            "t" | "topic-ops" | "topic" => Some(RoomMode::TopicOps),
            "m" | "moderated" => Some(RoomMode::Moderated),
            _ => None,
        }
    }
}

/// A change of a user's standing in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MemberChange {
    /// Make an operator.
    Op,
    /// Take operator status away (back to member).
    Deop,
    /// Let speak in a moderated room.
    Voice,
    /// Take voice away.
    Devoice,
    /// Ban the account (removing it if a member).
    Ban,
    /// Lift a ban.
    Unban,
    /// Became the room's owner: sent by the server when ownership passes on (the owner left,
    /// or the server's operator named another); the previous owner, if still a member, is an
    /// operator now (a `Deop` does not follow). Refused from clients (`not-op`).
    Owner,
}

impl MemberChange {
    /// The command's name: `op`, `deop`, `voice`, `devoice`, `ban`, `unban`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberChange::Op => "op",
            MemberChange::Deop => "deop",
            MemberChange::Voice => "voice",
            MemberChange::Devoice => "devoice",
            MemberChange::Ban => "ban",
            MemberChange::Unban => "unban",
            MemberChange::Owner => "owner",
        }
    }
}

/// One member in a [`ServerMsg::Names`] list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Their nick.
    pub nick: String,
    /// Their standing.
    pub role: Role,
    /// Whether they are online.
    pub online: bool,
    /// Whether they are marked away.
    pub away: bool,
}

/// One room in a [`ServerMsg::Rooms`] page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    /// Its name.
    pub name: String,
    /// How many members.
    pub members: u32,
    /// Its topic (empty: none).
    pub topic: String,
}

/// Why a user left, as told to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaveReason {
    /// The user quit.
    Quit,
    /// The connection dropped or timed out.
    Disconnected,
    /// The server disconnected a client that could not keep up with its messages.
    TooSlow,
    /// The server disconnected a client that broke the protocol.
    ProtocolError,
}

impl LeaveReason {
    /// Short human-readable form.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Quit => "quit",
            LeaveReason::Disconnected => "disconnected",
            LeaveReason::TooSlow => "too slow",
            LeaveReason::ProtocolError => "protocol error",
        }
    }
}

/// A machine-readable error code. A plain number on the wire so that a client can still decode
/// codes added after it was written; [`ErrorCode::name`] gives the documented name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// The client's protocol version is not supported.
    pub const UNSUPPORTED_VERSION: ErrorCode = ErrorCode(1);
    /// A frame could not be decoded (bad length, bad postcard, trailing bytes).
    pub const BAD_FRAME: ErrorCode = ErrorCode(2);
    /// A well-formed message that is not allowed now (e.g. a second `Hello`, or chat before it).
    pub const UNEXPECTED_MESSAGE: ErrorCode = ErrorCode(3);
    /// The nick breaks the nick rules.
    pub const INVALID_NICK: ErrorCode = ErrorCode(10);
    /// Someone online already uses that nick (compared case-insensitively).
    pub const NICK_IN_USE: ErrorCode = ErrorCode(11);
    /// The nick is registered to another client certificate.
    pub const NICK_REGISTERED: ErrorCode = ErrorCode(12);
    /// The client presented no TLS client certificate; this server identifies users by one.
    pub const CERTIFICATE_REQUIRED: ErrorCode = ErrorCode(13);
    /// The same account logged in from another connection, which replaces this one.
    pub const REPLACED: ErrorCode = ErrorCode(14);
    /// The nick is not registered and the server takes no new accounts (it holds its maximum).
    pub const ACCOUNTS_FULL: ErrorCode = ErrorCode(15);
    /// The nick is not registered, and it looks like a registered nick (same
    /// [`crate::confusable::skeleton`]): choose another.
    pub const NICK_LOOKS_LIKE: ErrorCode = ErrorCode(16);
    /// The nick is not registered, and this client certificate or address registered as many
    /// new nicks as the server allows for now; the detail says when to try again.
    pub const REGISTRATION_LIMIT: ErrorCode = ErrorCode(17);
    /// The recipient of a private line or relay is neither online nor a registered user (or,
    /// in a room command, the user is not known).
    pub const NO_SUCH_NICK: ErrorCode = ErrorCode(20);
    /// The text is longer than the server's limit.
    pub const TEXT_TOO_LONG: ErrorCode = ErrorCode(21);
    /// The text is empty or holds control characters.
    pub const INVALID_TEXT: ErrorCode = ErrorCode(22);
    /// A relay payload is empty or larger than [`MAX_RELAY_LEN`].
    pub const BAD_PAYLOAD: ErrorCode = ErrorCode(23);
    /// The offline recipient has as many stored messages waiting as the server keeps.
    pub const MAILBOX_FULL: ErrorCode = ErrorCode(24);
    /// A [`ClientMsg::PublishKeys`] whose keys break the rules
    /// ([`crate::prekeys::KeyUpload::validate`]); the detail says which.
    pub const BAD_KEYS: ErrorCode = ErrorCode(25);
    /// The room does not exist.
    pub const NO_SUCH_ROOM: ErrorCode = ErrorCode(40);
    /// The room name breaks the room rules ([`validate_room`]).
    pub const INVALID_ROOM: ErrorCode = ErrorCode(41);
    /// The client is not a member of that room (or the named user is not).
    pub const NOT_IN_ROOM: ErrorCode = ErrorCode(42);
    /// The account is banned from that room.
    pub const BANNED: ErrorCode = ErrorCode(43);
    /// The room is invite-only and the client is not invited.
    pub const INVITE_ONLY: ErrorCode = ErrorCode(44);
    /// Only the room's operators may do that (or: nobody may do that to the owner).
    pub const NOT_OP: ErrorCode = ErrorCode(45);
    /// The room has as many members (or bans) as the server allows.
    pub const ROOM_FULL: ErrorCode = ErrorCode(46);
    /// The client is in as many rooms as the server allows.
    pub const TOO_MANY_ROOMS: ErrorCode = ErrorCode(47);
    /// The server holds as many rooms as it allows, or this client created as many as it may
    /// for now (the detail says when to try again).
    pub const ROOMS_FULL: ErrorCode = ErrorCode(48);
    /// No room by that name exists, and it looks like one that does (same
    /// [`crate::confusable::skeleton`]): choose another.
    pub const ROOM_LOOKS_LIKE: ErrorCode = ErrorCode(49);
    /// The room is moderated and the client is neither operator nor voiced.
    pub const MODERATED: ErrorCode = ErrorCode(50);
    /// The topic, reason or away message is too long or holds refused characters.
    pub const INVALID_TOPIC: ErrorCode = ErrorCode(51);
    /// [`LOBBY`] cannot be left, and its members cannot be kicked or banned.
    pub const LOBBY_FIXED: ErrorCode = ErrorCode(52);
    /// Rooms other than [`LOBBY`] are not available on this server (one node of several: they
    /// are not shared between nodes yet); the detail says so.
    pub const ROOMS_UNAVAILABLE: ErrorCode = ErrorCode(53);
    /// The client did not read its messages fast enough and is being disconnected.
    pub const TOO_SLOW: ErrorCode = ErrorCode(30);
    /// The client was silent for too long (no hello, no pong).
    pub const TIMEOUT: ErrorCode = ErrorCode(31);
    /// The client sends faster than the server allows.
    pub const RATE_LIMITED: ErrorCode = ErrorCode(32);
    /// The server holds as many connections as it allows.
    pub const SERVER_FULL: ErrorCode = ErrorCode(33);
    /// The server is shutting down and accepts no more messages.
    pub const SHUTTING_DOWN: ErrorCode = ErrorCode(34);
    /// The server cannot take the message right now (its store is behind); try again.
    pub const BUSY: ErrorCode = ErrorCode(35);
    /// The server failed internally; not the client's fault.
    pub const INTERNAL: ErrorCode = ErrorCode(99);

    /// The documented name of the code, or `"unknown"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::UNSUPPORTED_VERSION => "unsupported-version",
            Self::BAD_FRAME => "bad-frame",
            Self::UNEXPECTED_MESSAGE => "unexpected-message",
            Self::INVALID_NICK => "invalid-nick",
            Self::NICK_IN_USE => "nick-in-use",
            Self::NICK_REGISTERED => "nick-registered",
            Self::CERTIFICATE_REQUIRED => "certificate-required",
            Self::REPLACED => "replaced",
            Self::ACCOUNTS_FULL => "accounts-full",
            Self::NICK_LOOKS_LIKE => "nick-looks-like",
            Self::REGISTRATION_LIMIT => "registration-limit",
            Self::NO_SUCH_NICK => "no-such-nick",
            Self::TEXT_TOO_LONG => "text-too-long",
            Self::INVALID_TEXT => "invalid-text",
            Self::BAD_PAYLOAD => "bad-payload",
            Self::MAILBOX_FULL => "mailbox-full",
            Self::BAD_KEYS => "bad-keys",
            Self::NO_SUCH_ROOM => "no-such-room",
            Self::INVALID_ROOM => "invalid-room",
            Self::NOT_IN_ROOM => "not-in-room",
            Self::BANNED => "banned",
            Self::INVITE_ONLY => "invite-only",
            Self::NOT_OP => "not-op",
            Self::ROOM_FULL => "room-full",
            Self::TOO_MANY_ROOMS => "too-many-rooms",
            Self::ROOMS_FULL => "rooms-full",
            Self::ROOM_LOOKS_LIKE => "room-looks-like",
            Self::MODERATED => "moderated",
            Self::INVALID_TOPIC => "invalid-topic",
            Self::LOBBY_FIXED => "lobby-fixed",
            Self::ROOMS_UNAVAILABLE => "rooms-unavailable",
            Self::TOO_SLOW => "too-slow",
            Self::TIMEOUT => "timeout",
            Self::RATE_LIMITED => "rate-limited",
            Self::SERVER_FULL => "server-full",
            Self::SHUTTING_DOWN => "shutting-down",
            Self::BUSY => "busy",
            Self::INTERNAL => "internal",
            _ => "unknown",
        }
    }
}

impl std::fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A payload that is not a valid message. The messages are the `bad-frame` details the server
/// sends (PROTOCOL.md, "Error details"): the protocol's own words, never the decoder's, so that
/// what a peer reads does not depend on the library that decoded it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload does not start with a message type (a varint that ends).
    #[error("malformed frame: the message type is not a valid number")]
    BadType,
    /// The message type is not one of this protocol's (a newer peer, or garbage).
    #[error("unknown message type {0}")]
    UnknownType(u64),
    /// The type is known but the rest is not that message.
    #[error("malformed frame: the {kind} message does not decode ({why})")]
    Body {
        /// The message type's name (`Hello`, `Public`, ...).
        kind: &'static str,
        /// What is wrong with it, in a few words.
        why: &'static str,
    },
    /// A message decoded but bytes were left over; a frame holds exactly one message.
    #[error("malformed frame: {} after the end of the message", bytes(*.0))]
    TrailingBytes(usize),
    /// The message is not in its one canonical encoding (e.g. an overlong varint). postcard
    /// would accept it, but every message has exactly one valid encoding, so that nothing can
    /// be smuggled in alternative forms (found by fuzzing).
    #[error("malformed frame: the message is not in its one canonical encoding (a number or length with needless extra bytes)")]
    NonCanonical,
}

/// `1 byte`, `3 bytes`.
fn bytes(n: usize) -> String {
    if n == 1 {
        "1 byte".into()
    } else {
        format!("{n} bytes")
    }
}

/// What a postcard failure means for a message body, in the protocol's words.
fn body_fault(e: &postcard::Error) -> &'static str {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => "it ends too early",
        postcard::Error::DeserializeBadVarint => "a number is malformed",
        postcard::Error::DeserializeBadBool => "a true/false field is not 0 or 1",
        postcard::Error::DeserializeBadUtf8 | postcard::Error::DeserializeBadChar => {
            "a text is not valid UTF-8"
        }
        postcard::Error::DeserializeBadOption | postcard::Error::DeserializeBadEnum => {
            "a field holds an unknown value"
        }
        // An unknown variant of an enum field (e.g. a `LeaveReason`) comes back as serde's
        // custom error.
        postcard::Error::SerdeDeCustom => "a field holds an unknown value",
        _ => "its fields do not decode",
    }
}

/// Reads the variant index that starts a postcard enum (a `u32` varint, at most 5 bytes):
/// `None` when the varint does not end within 5 bytes of the payload or does not fit a `u32`
/// (`ff ff ff ff ff ff ff ff ff 7f` was read as type 18446744073709551615).
fn leading_varint(payload: &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    for (i, &byte) in payload.iter().enumerate().take(5) {
        // At most 35 bits: no shift loses anything.
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (value <= u64::from(u32::MAX)).then_some(value);
        }
    }
    None
}

fn decode_exact<'a, T: Deserialize<'a> + Serialize>(
    payload: &'a [u8],
    kinds: &[&'static str],
) -> Result<T, DecodeError> {
    let index = leading_varint(payload).ok_or(DecodeError::BadType)?;
    let kind = usize::try_from(index)
        .ok()
        .and_then(|i| kinds.get(i))
        .copied()
        .ok_or(DecodeError::UnknownType(index))?;
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(|e| DecodeError::Body {
        kind,
        why: body_fault(&e),
    })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    // Re-encode and compare: a short, allocation-once check next to the TLS work per frame.
    // (Encoding what was just decoded does not fail; if it did, the payload is not canonical.)
    let canonical = postcard::to_allocvec(&msg).map_err(|_| DecodeError::NonCanonical)?;
    if canonical != payload {
        return Err(DecodeError::NonCanonical);
    }
    Ok(msg)
}

impl ClientMsg {
    /// Decodes one frame payload.
    ///
    /// # Errors
    /// [`DecodeError`] if the payload is not exactly one `ClientMsg`.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        decode_exact(payload, &Self::KINDS)
    }

    /// The message types' names, by their number on the wire (for error details).
    pub const KINDS: [&'static str; 24] = [
        "Hello",
        "Public",
        "Private",
        "Who",
        "Ping",
        "Pong",
        "Quit",
        "Relay",
        "Received",
        "Monitor",
        "Join",
        "Part",
        "List",
        "Names",
        "Topic",
        "Invite",
        "Kick",
        "Member",
        "Mode",
        "Away",
        "PublishKeys",
        "FetchBundle",
        "KeyHello",
        "KeyProof",
    ];
}

impl ServerMsg {
    /// Decodes one frame payload.
    ///
    /// # Errors
    /// [`DecodeError`] if the payload is not exactly one `ServerMsg`.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        decode_exact(payload, &Self::KINDS)
    }

    /// The message types' names, by their number on the wire (for error details).
    pub const KINDS: [&'static str; 32] = [
        "Welcome",
        "Users",
        "Public",
        "Private",
        "Sent",
        "Joined",
        "Left",
        "Error",
        "Shutdown",
        "Ping",
        "Pong",
        "Relay",
        "History",
        "Queued",
        "Offline",
        "Presence",
        "Entered",
        "Names",
        "Rooms",
        "Parted",
        "Kicked",
        "Topic",
        "ModeChanged",
        "MemberChanged",
        "Invited",
        "RoomError",
        "Away",
        "KeysPublished",
        "Bundle",
        "PrekeysLow",
        "KeysRefused",
        "Challenge",
    ];
}

/// Why a nick is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NickError {
    /// Empty.
    #[error("a nick cannot be empty")]
    Empty,
    /// Over [`MAX_NICK_LEN`] characters.
    #[error("a nick is at most {MAX_NICK_LEN} characters")]
    TooLong,
    /// Starts with something other than an ASCII letter.
    #[error("a nick must start with a letter (a-z, A-Z)")]
    BadStart,
    /// Holds a character outside `A-Z a-z 0-9 _ -`.
    #[error("a nick may only hold letters a-z, A-Z, digits, '_' and '-'")]
    BadChar,
}

/// Checks the nick rules: 1 to [`MAX_NICK_LEN`] characters, an ASCII letter first, then ASCII
/// letters, digits, `_` or `-`. This set is safe to show in any terminal and in file names.
///
/// # Errors
/// The first rule broken.
pub fn validate_nick(nick: &str) -> Result<(), NickError> {
    let first = nick.chars().next().ok_or(NickError::Empty)?;
    if nick.len() > MAX_NICK_LEN {
        return Err(NickError::TooLong);
    }
    if !first.is_ascii_alphabetic() {
        return Err(NickError::BadStart);
    }
    if !nick
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(NickError::BadChar);
    }
    Ok(())
}

/// Why a room name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomNameError {
    /// Does not start with `#`.
    #[error("a room name starts with #")]
    NoHash,
    /// Nothing after the `#`.
    #[error("a room name needs at least one character after #")]
    Empty,
    /// Longer than [`MAX_ROOM_LEN`].
    #[error("a room name is at most 48 characters after #")]
    TooLong,
    /// A character outside the safe set.
    #[error("a room name holds only letters, digits, _ and - after #")]
    BadChar,
}

/// Checks the room-name rules: `#` then 1 to 48 ASCII letters, digits, `_` or `-` (so a name
/// never holds a space, `.`, `*` or `>`, and can become a message-bus subject when the server
/// runs on several nodes; safe in any terminal and file name). Compared case-insensitively
/// ([`room_key`]).
///
/// # Errors
/// The first rule broken.
pub fn validate_room(name: &str) -> Result<(), RoomNameError> {
    let Some(rest) = name.strip_prefix('#') else {
        return Err(RoomNameError::NoHash);
    };
    if rest.is_empty() {
        return Err(RoomNameError::Empty);
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(RoomNameError::BadChar);
    }
    if name.len() > MAX_ROOM_LEN {
        return Err(RoomNameError::TooLong);
    }
    Ok(())
}

/// The form under which room names are compared: `#Dev` and `#dev` are the same room. Only
/// meaningful for names that passed [`validate_room`] (ASCII).
pub fn room_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Whether `name` is [`LOBBY`], in any case.
pub fn is_lobby(name: &str) -> bool {
    name.eq_ignore_ascii_case(LOBBY)
}

/// The form under which nicks are compared: `Alice`, `ALICE` and `alice` are the same user.
/// Only meaningful for nicks that passed [`validate_nick`] (ASCII), where lowercasing is exact.
pub fn nick_key(nick: &str) -> String {
    nick.to_ascii_lowercase()
}

/// Why a text is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// Empty.
    #[error("empty message")]
    Empty,
    /// Longer than the limit.
    #[error("message of {len} bytes is over the limit of {max} bytes")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// Holds a control character (newline, escape, NUL…): one message is one line, and terminal
    /// escape sequences from other users must never reach a terminal.
    #[error("message holds a control character")]
    ControlChar,
    /// Holds a character that can end a line in some readers, reorder it, or hide text (a line
    /// separator, a bidi override, an invisible format character…; see [`crate::text`]).
    #[error(
        "message holds U+{code:04X}, {what}: characters that can break a line, reorder it or hide text are refused",
        code = u32::from(*.0),
        what = crate::text::describe(*.0)
    )]
    UnsafeChar(char),
}

/// Checks a chat text: not empty, at most `max_len` bytes (never more than [`MAX_TEXT_LEN`]),
/// no control characters (Unicode category Cc, which includes `\n`, `\r`, `\t`, ESC, NUL) and
/// none of the other characters [`crate::text`] refuses (U+2028, U+2029, bidi embeddings,
/// overrides and isolates, invisible format characters, tags outside a flag).
///
/// # Errors
/// The first rule broken.
pub fn validate_text(text: &str, max_len: usize) -> Result<(), TextError> {
    let max = max_len.min(MAX_TEXT_LEN);
    if text.is_empty() {
        return Err(TextError::Empty);
    }
    if text.len() > max {
        return Err(TextError::TooLong {
            len: text.len(),
            max,
        });
    }
    match crate::text::find_forbidden(text) {
        None => Ok(()),
        Some((_, c)) if c.is_control() => Err(TextError::ControlChar),
        Some((_, c)) => Err(TextError::UnsafeChar(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;

    fn roundtrip_server(msg: ServerMsg) {
        let bytes = frame::encode(&msg).unwrap();
        let len = frame::check(&bytes).unwrap();
        assert_eq!(len + frame::HEADER_LEN, bytes.len());
        assert_eq!(ServerMsg::decode(&bytes[frame::HEADER_LEN..]).unwrap(), msg);
    }

    /// One of each server message about rooms (protocol 5), in wire order.
    fn room_messages() -> Vec<ServerMsg> {
        vec![
            ServerMsg::Entered {
                room: "#Dev".into(),
                topic: "t".into(),
                topic_by: "a".into(),
                topic_ts: 7,
                modes: Modes {
                    invite_only: true,
                    topic_ops: false,
                    moderated: true,
                },
                members: 3,
                role: Role::Owner,
                seen: 41,
                created: false,
            },
            ServerMsg::Names {
                room: "#Dev".into(),
                members: vec![Member {
                    nick: "a".into(),
                    role: Role::Voiced,
                    online: true,
                    away: false,
                }],
                last: false,
            },
            ServerMsg::Rooms {
                rooms: vec![RoomSummary {
                    name: "#Dev".into(),
                    members: 3,
                    topic: String::new(),
                }],
                next: "#dev".into(),
            },
            ServerMsg::Parted {
                ts: 1,
                room: "#Dev".into(),
                nick: "a".into(),
                reason: "bye".into(),
            },
            ServerMsg::Kicked {
                ts: 1,
                room: "#Dev".into(),
                nick: "a".into(),
                by: "b".into(),
                reason: String::new(),
            },
            ServerMsg::Topic {
                ts: 1,
                room: "#Dev".into(),
                by: "b".into(),
                topic: "hé".into(),
            },
            ServerMsg::ModeChanged {
                ts: 1,
                room: "#Dev".into(),
                by: "b".into(),
                mode: RoomMode::TopicOps,
                on: false,
            },
            ServerMsg::MemberChanged {
                ts: 1,
                room: "#Dev".into(),
                by: "b".into(),
                nick: "a".into(),
                change: MemberChange::Devoice,
            },
            ServerMsg::Invited {
                ts: 1,
                room: "#Dev".into(),
                by: "b".into(),
                nick: "a".into(),
            },
            ServerMsg::RoomError {
                room: "#x".into(),
                code: ErrorCode::BANNED,
                detail: "d".into(),
            },
            ServerMsg::Away {
                nick: "a".into(),
                message: String::new(),
            },
        ]
    }

    #[test]
    fn every_server_message_round_trips() {
        for msg in room_messages() {
            roundtrip_server(msg);
        }
        for msg in [
            ServerMsg::Welcome {
                nick: "a".into(),
                server: "s".into(),
                online: 3,
                max_text_len: 9,
                rate_burst: 20,
                rate_per_sec: 5,
            },
            ServerMsg::Users {
                nicks: vec!["a".into(), "b".into()],
                last: true,
            },
            ServerMsg::Public {
                room: "#lobby".into(),
                action: false,
                id: 1,
                ts: 2,
                from: "a".into(),
                text: "hé".into(),
            },
            ServerMsg::Private {
                id: u64::MAX,
                ts: 2,
                from: "a".into(),
                text: "x".into(),
            },
            ServerMsg::Sent { id: 5, ts: 6 },
            ServerMsg::Joined {
                room: "#lobby".into(),
                ts: 1,
                nick: "b".into(),
            },
            ServerMsg::Left {
                room: "#lobby".into(),
                ts: 1,
                nick: "b".into(),
                reason: LeaveReason::TooSlow,
            },
            ServerMsg::Error {
                code: ErrorCode(777),
                fatal: true,
                detail: "d".into(),
            },
            ServerMsg::Shutdown {
                reason: "bye".into(),
            },
            ServerMsg::Ping { token: 9 },
            ServerMsg::Pong { token: 9 },
            ServerMsg::Relay {
                id: 1,
                ts: 2,
                from: "a".into(),
                payload: vec![0, 255, 7],
            },
            ServerMsg::History {
                room: "#lobby".into(),
                action: false,
                id: 3,
                ts: 4,
                from: "c".into(),
                text: "old".into(),
            },
            ServerMsg::Queued { id: 7, ts: 8 },
            ServerMsg::Offline {
                id: 5,
                ts: 6,
                from: "d".into(),
                text: "while you were away".into(),
            },
        ] {
            roundtrip_server(msg);
        }
    }

    #[test]
    fn every_client_message_round_trips() {
        for msg in [
            ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                nick: "alice".into(),
            },
            ClientMsg::Public {
                room: "#lobby".into(),
                action: false,
                text: "hi".into(),
            },
            ClientMsg::Private {
                to: "bob".into(),
                text: "psst".into(),
            },
            ClientMsg::Who,
            ClientMsg::Ping { token: 1 },
            ClientMsg::Pong { token: 2 },
            ClientMsg::Quit,
            ClientMsg::Relay {
                to: "b".into(),
                payload: vec![1, 2, 3],
            },
            ClientMsg::Received { up_to: 300 },
        ] {
            let bytes = frame::encode(&msg).unwrap();
            assert_eq!(ClientMsg::decode(&bytes[frame::HEADER_LEN..]).unwrap(), msg);
        }
    }

    #[test]
    fn wire_layout_is_stable() {
        // PROTOCOL.md documents these bytes; changing them breaks other clients.
        let hello = ClientMsg::Hello {
            version: 1,
            nick: "bob".into(),
        };
        assert_eq!(
            &frame::encode(&hello).unwrap()[..],
            &[0, 0, 0, 6, 0, 1, 3, b'b', b'o', b'b']
        );
        let public = ClientMsg::Public {
            room: "#dev".into(),
            text: "hi".into(),
            action: false,
        };
        assert_eq!(
            &frame::encode(&public).unwrap()[..],
            &[0, 0, 0, 10, 1, 4, b'#', b'd', b'e', b'v', 2, b'h', b'i', 0]
        );
        let join = ClientMsg::Join {
            room: "#dev".into(),
        };
        assert_eq!(
            &frame::encode(&join).unwrap()[..],
            &[0, 0, 0, 6, 10, 4, b'#', b'd', b'e', b'v']
        );
        let mode = ClientMsg::Mode {
            room: "#dev".into(),
            mode: RoomMode::InviteOnly,
            on: true,
        };
        assert_eq!(
            &frame::encode(&mode).unwrap()[..],
            &[0, 0, 0, 8, 18, 4, b'#', b'd', b'e', b'v', 0, 1]
        );
        let room_error = ServerMsg::RoomError {
            room: "#dev".into(),
            code: ErrorCode::BANNED,
            detail: String::new(),
        };
        assert_eq!(
            &frame::encode(&room_error).unwrap()[..],
            &[0, 0, 0, 8, 25, 4, b'#', b'd', b'e', b'v', 43, 0]
        );
        let err = ServerMsg::Error {
            code: ErrorCode::NO_SUCH_NICK,
            fatal: false,
            detail: String::new(),
        };
        assert_eq!(
            &frame::encode(&err).unwrap()[..],
            &[0, 0, 0, 4, 7, 20, 0, 0]
        );
        let received = ClientMsg::Received { up_to: 300 };
        assert_eq!(
            &frame::encode(&received).unwrap()[..],
            &[0, 0, 0, 3, 8, 0xac, 0x02]
        );
        let queued = ServerMsg::Queued { id: 1, ts: 2 };
        assert_eq!(
            &frame::encode(&queued).unwrap()[..],
            &[0, 0, 0, 3, 13, 1, 2]
        );
        let monitor = ClientMsg::Monitor {
            nicks: vec!["bob".into()],
        };
        assert_eq!(
            &frame::encode(&monitor).unwrap()[..],
            &[0, 0, 0, 6, 9, 1, 3, b'b', b'o', b'b']
        );
        let presence = ServerMsg::Presence {
            nick: "bob".into(),
            online: true,
        };
        assert_eq!(
            &frame::encode(&presence).unwrap()[..],
            &[0, 0, 0, 6, 15, 3, b'b', b'o', b'b', 1]
        );
    }

    #[test]
    fn trailing_bytes_and_garbage_are_rejected() {
        let bytes = frame::encode(&ClientMsg::Who).unwrap();
        let mut payload = bytes[frame::HEADER_LEN..].to_vec();
        payload.push(0);
        assert!(matches!(
            ClientMsg::decode(&payload),
            Err(DecodeError::TrailingBytes(1))
        ));
        assert!(ClientMsg::decode(&[200]).is_err()); // unknown variant
        assert!(ClientMsg::decode(&[1, 5, b'a']).is_err()); // string shorter than its length
        assert!(ClientMsg::decode(&[1, 2, 0xff, 0xfe]).is_err()); // invalid UTF-8
        assert!(ClientMsg::decode(&[]).is_err());
    }

    #[test]
    fn decode_errors_say_what_is_wrong_in_the_protocols_words() {
        // Every detail the server sends for an undecodable payload (PROTOCOL.md, "Error
        // details"): never the decoder's own words ("Serde Deserialization Error", "Found a
        // varint that didn't terminate", "Hit the end of buffer").
        for (payload, detail) in [
            (&[42][..], "unknown message type 42"),
            (&[0xac, 0x02][..], "unknown message type 300"),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f][..],
                "malformed frame: the message type is not a valid number",
            ),
            (
                &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02][..],
                "malformed frame: the message type is not a valid number",
            ),
            (
                &[0xff, 0xff, 0xff, 0xff, 0x1f][..],
                "malformed frame: the message type is not a valid number",
            ),
            (&[0x80][..], "malformed frame: the message type is not a valid number"),
            (&[][..], "malformed frame: the message type is not a valid number"),
            (
                &[1, 5, b'a'][..],
                "malformed frame: the Public message does not decode (it ends too early)",
            ),
            (
                &[1, 2, 0xff, 0xfe][..],
                "malformed frame: the Public message does not decode (a text is not valid UTF-8)",
            ),
            (
                &[4, 0xff, 0xff][..],
                "malformed frame: the Ping message does not decode (it ends too early)",
            ),
            (
                &[4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..],
                "malformed frame: the Ping message does not decode (a number is malformed)",
            ),
            (
                &[3, 0][..],
                "malformed frame: 1 byte after the end of the message",
            ),
            (
                &[6, 0, 0][..],
                "malformed frame: 2 bytes after the end of the message",
            ),
            (
                &[0x00, 0x82, 0x00, 0x00][..],
                "malformed frame: the message is not in its one canonical encoding (a number or length with needless extra bytes)",
            ),
        ] {
            let e = ClientMsg::decode(payload).unwrap_err();
            assert_eq!(e.to_string(), detail, "{payload:?}");
        }
        for (payload, detail) in [
            (&[32][..], "unknown message type 32"),
            (
                &[6, 1, 1, b'#', 1, b'a', 9][..],
                "malformed frame: the Left message does not decode (a field holds an unknown value)",
            ),
            (
                &[15, 1, b'a', 2][..],
                "malformed frame: the Presence message does not decode (a true/false field is not 0 or 1)",
            ),
        ] {
            let e = ServerMsg::decode(payload).unwrap_err();
            assert_eq!(e.to_string(), detail, "{payload:?}");
        }
    }

    #[test]
    fn the_kind_names_follow_the_variant_numbers() {
        let clients = [
            ClientMsg::Hello {
                version: 1,
                nick: "a".into(),
            },
            ClientMsg::Public {
                room: "#lobby".into(),
                action: false,
                text: "x".into(),
            },
            ClientMsg::Private {
                to: "a".into(),
                text: "x".into(),
            },
            ClientMsg::Who,
            ClientMsg::Ping { token: 1 },
            ClientMsg::Pong { token: 1 },
            ClientMsg::Quit,
            ClientMsg::Relay {
                to: "a".into(),
                payload: vec![1],
            },
            ClientMsg::Received { up_to: 1 },
            ClientMsg::Monitor {
                nicks: vec!["a".into()],
            },
            ClientMsg::Join { room: "#a".into() },
            ClientMsg::Part {
                room: "#a".into(),
                reason: String::new(),
            },
            ClientMsg::List {
                after: String::new(),
            },
            ClientMsg::Names { room: "#a".into() },
            ClientMsg::Topic {
                room: "#a".into(),
                topic: None,
            },
            ClientMsg::Invite {
                room: "#a".into(),
                nick: "b".into(),
            },
            ClientMsg::Kick {
                room: "#a".into(),
                nick: "b".into(),
                reason: "r".into(),
            },
            ClientMsg::Member {
                room: "#a".into(),
                nick: "b".into(),
                change: MemberChange::Ban,
            },
            ClientMsg::Mode {
                room: "#a".into(),
                mode: RoomMode::Moderated,
                on: true,
            },
            ClientMsg::Away {
                message: "lunch".into(),
            },
            ClientMsg::PublishKeys {
                keys: crate::prekeys::KeyUpload {
                    identity: [9; 32],
                    signed_prekey: crate::prekeys::SignedPrekey {
                        id: 1,
                        key: [9; 32],
                        signature: vec![0; crate::prekeys::SIGNATURE_LEN],
                    },
                    one_time: Vec::new(),
                    device: crate::prekeys::DeviceCheck {
                        previous: [0; 16],
                        next: [1; 16],
                    },
                    replace_one_time: false,
                },
            },
            ClientMsg::FetchBundle { nick: "b".into() },
            ClientMsg::KeyHello {
                version: PROTOCOL_VERSION,
                nick: "b".into(),
                key: vec![4; crate::key_login::PUBLIC_KEY_LEN],
            },
            ClientMsg::KeyProof {
                signature: vec![1; crate::key_login::SIGNATURE_LEN],
            },
        ];
        assert_eq!(clients.len(), ClientMsg::KINDS.len());
        for msg in clients {
            let bytes = postcard::to_allocvec(&msg).unwrap();
            let name = format!("{msg:?}");
            assert!(
                name.split([' ', '{']).next() == Some(ClientMsg::KINDS[usize::from(bytes[0])]),
                "{name}"
            );
        }
        let servers = [
            ServerMsg::Welcome {
                nick: "a".into(),
                server: "s".into(),
                online: 1,
                max_text_len: 1,
                rate_burst: 1,
                rate_per_sec: 1,
            },
            ServerMsg::Users {
                nicks: vec![],
                last: true,
            },
            ServerMsg::Public {
                room: "#lobby".into(),
                action: false,
                id: 1,
                ts: 1,
                from: "a".into(),
                text: "x".into(),
            },
            ServerMsg::Private {
                id: 1,
                ts: 1,
                from: "a".into(),
                text: "x".into(),
            },
            ServerMsg::Sent { id: 1, ts: 1 },
            ServerMsg::Joined {
                room: "#lobby".into(),
                ts: 1,
                nick: "a".into(),
            },
            ServerMsg::Left {
                room: "#lobby".into(),
                ts: 1,
                nick: "a".into(),
                reason: LeaveReason::Quit,
            },
            ServerMsg::Error {
                code: ErrorCode::BUSY,
                fatal: false,
                detail: String::new(),
            },
            ServerMsg::Shutdown {
                reason: String::new(),
            },
            ServerMsg::Ping { token: 1 },
            ServerMsg::Pong { token: 1 },
            ServerMsg::Relay {
                id: 1,
                ts: 1,
                from: "a".into(),
                payload: vec![1],
            },
            ServerMsg::History {
                room: "#lobby".into(),
                action: false,
                id: 1,
                ts: 1,
                from: "a".into(),
                text: "x".into(),
            },
            ServerMsg::Queued { id: 1, ts: 1 },
            ServerMsg::Offline {
                id: 1,
                ts: 1,
                from: "a".into(),
                text: "x".into(),
            },
            ServerMsg::Presence {
                nick: "a".into(),
                online: true,
            },
        ]
        .into_iter()
        .chain(room_messages())
        .chain([
            ServerMsg::KeysPublished {
                one_time: 1,
                other_device: false,
            },
            ServerMsg::Bundle {
                nick: "a".into(),
                answer: crate::prekeys::BundleAnswer::NoKeys,
            },
            ServerMsg::PrekeysLow { one_time: 1 },
            ServerMsg::KeysRefused {
                code: ErrorCode::BUSY,
                detail: String::new(),
            },
            ServerMsg::Challenge {
                nonce: vec![7; crate::key_login::NONCE_LEN],
            },
        ])
        .collect::<Vec<_>>();
        assert_eq!(servers.len(), ServerMsg::KINDS.len());
        for msg in servers {
            let bytes = postcard::to_allocvec(&msg).unwrap();
            let name = format!("{msg:?}");
            assert!(
                name.split([' ', '{']).next() == Some(ServerMsg::KINDS[usize::from(bytes[0])]),
                "{name}"
            );
        }
    }

    #[test]
    fn only_the_canonical_encoding_is_accepted() {
        // Found by the client_msg fuzz target: Hello with version 2 as an overlong varint.
        assert!(matches!(
            ClientMsg::decode(&[0x00, 0x82, 0x00, 0x00]),
            Err(DecodeError::NonCanonical)
        ));
        assert_eq!(
            ClientMsg::decode(&[0x00, 0x02, 0x00]).unwrap(),
            ClientMsg::Hello {
                version: 2,
                nick: String::new()
            }
        );
        // Found by the server_msg fuzz target.
        assert!(ServerMsg::decode(&[0x04, 0x1b, 0xf9, 0x00]).is_err());
        // An overlong string length.
        assert!(matches!(
            ClientMsg::decode(&[0x01, 0x81, 0x00, b'x', 1, b'y', 0]),
            Err(DecodeError::NonCanonical)
        ));
    }

    #[test]
    fn room_name_rules() {
        let longest = format!("#{}", "a".repeat(48));
        for ok in ["#a", "#lobby", "#Dev_2", "#9-x", "#-", longest.as_str()] {
            assert_eq!(validate_room(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_room("dev"), Err(RoomNameError::NoHash));
        assert_eq!(validate_room("#"), Err(RoomNameError::Empty));
        assert_eq!(
            validate_room(&format!("#{}", "a".repeat(49))),
            Err(RoomNameError::TooLong)
        );
        // Never a space, nor a message-bus subject's `.`, `*` or `>`, nor anything else.
        for bad in [
            "#a b",
            "#a.b",
            "#a*",
            "#a>",
            "##",
            "#é",
            "#a\u{202e}",
            "#a,b",
            "#a:b",
        ] {
            assert_eq!(validate_room(bad), Err(RoomNameError::BadChar), "{bad}");
        }
        assert_eq!(room_key("#DeV"), "#dev");
        assert!(is_lobby("#LOBBY") && !is_lobby("#lobby2"));
    }

    #[test]
    fn nick_rules() {
        for ok in ["a", "Alice", "bob_2", "x-y", &"a".repeat(MAX_NICK_LEN)] {
            assert_eq!(validate_nick(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_nick(""), Err(NickError::Empty));
        assert_eq!(
            validate_nick(&"a".repeat(MAX_NICK_LEN + 1)),
            Err(NickError::TooLong)
        );
        assert_eq!(validate_nick("1abc"), Err(NickError::BadStart));
        assert_eq!(validate_nick("_abc"), Err(NickError::BadStart));
        assert_eq!(validate_nick("é"), Err(NickError::BadStart));
        for bad in ["a b", "a\u{1b}[31m", "ali\u{e9}", "a.b", "a\n", "a/b"] {
            assert_eq!(validate_nick(bad), Err(NickError::BadChar), "{bad:?}");
        }
        assert_eq!(nick_key("AlIce"), "alice");
    }

    #[test]
    fn text_rules() {
        assert_eq!(validate_text("hello, wörld 👋", MAX_TEXT_LEN), Ok(()));
        assert_eq!(validate_text("", MAX_TEXT_LEN), Err(TextError::Empty));
        assert_eq!(
            validate_text(&"x".repeat(MAX_TEXT_LEN), MAX_TEXT_LEN),
            Ok(())
        );
        assert_eq!(
            validate_text(&"x".repeat(MAX_TEXT_LEN + 1), usize::MAX),
            Err(TextError::TooLong {
                len: MAX_TEXT_LEN + 1,
                max: MAX_TEXT_LEN
            })
        );
        assert_eq!(
            validate_text("abcd", 3),
            Err(TextError::TooLong { len: 4, max: 3 })
        );
        for bad in [
            "a\nb",
            "a\rb",
            "\u{1b}[2J",
            "nul\0",
            "tab\t",
            "\u{7f}",
            "\u{85}",
        ] {
            assert_eq!(
                validate_text(bad, MAX_TEXT_LEN),
                Err(TextError::ControlChar),
                "{bad:?}"
            );
        }
        let forged = "ok\u{2028}[secure] <bob> yes, send it to account 42";
        let err = validate_text(forged, MAX_TEXT_LEN).unwrap_err();
        assert_eq!(err, TextError::UnsafeChar('\u{2028}'));
        assert_eq!(
            err.to_string(),
            "message holds U+2028, a line separator: characters that can break a line, reorder it or hide text are refused"
        );
        for bad in ["\u{202E}", "\u{2066}x", "a\u{FEFF}", "\u{E0041}"] {
            assert!(
                matches!(
                    validate_text(bad, MAX_TEXT_LEN),
                    Err(TextError::UnsafeChar(_))
                ),
                "{bad:?}"
            );
        }
        for good in ["\u{200F}שלום\u{200E}", "\u{627}\u{61C}"] {
            assert_eq!(validate_text(good, MAX_TEXT_LEN), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn error_codes_have_names_and_unknown_ones_survive() {
        assert_eq!(ErrorCode::NICK_IN_USE.name(), "nick-in-use");
        assert_eq!(ErrorCode(4242).name(), "unknown");
        assert_eq!(format!("{:?}", ErrorCode(20)), "no-such-nick(20)");
    }
}
