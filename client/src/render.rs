//! What an event says, decided once for both front ends. [`event`] turns an [`Event`] into
//! [`Rendered`] items — where it goes, what kind of line it is, who said it, the words — and
//! line mode ([`crate::display::format`]) and the terminal UI ([`crate::tui::app::App`]) lay
//! those out in their own way (prefixes and colours; tabs and styles). Pure: no I/O.
//!
//! The text of an item is raw: it holds what came from the network as it came. Each front end
//! cleans what it shows ([`crate::display::clean`]), so a hostile server or peer can never put
//! a control character, a line break or a bidi override on the terminal.

use crate::ChatLine;
use mm_common::e2e::{E2eEvent, Failure, Trust};
use mm_common::identity::key_fingerprint;
use mm_common::protocol::{
    is_lobby, ErrorCode, LeaveReason, Member, MemberChange, RoomMode, RoomSummary,
};

use crate::command::HELP;
use crate::{Delivery, Event, RoomEvent, Welcome};

/// Where an item belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The public room (the lobby).
    Room,
    /// A room other than the lobby, by name (the terminal UI shows it in that room's tab).
    InRoom(String),
    /// The private conversation with this nick (the terminal UI opens its tab).
    Peer(String),
    /// The private conversation with this nick, only if one is open already: a front end
    /// without conversations (line mode) does not show it, and neither does one without a
    /// conversation with that nick. Used for what the room says too (`bob joined`), in other
    /// words.
    PeerTab(String),
    /// Wherever the user is looking (the tab shown; line mode's stdout): answers to commands,
    /// server errors, warnings.
    Here,
}

/// What kind of line an item is; front ends pick their prefix and colour from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Someone's public line (`from` is set).
    Public,
    /// Someone's private line, not end-to-end encrypted (`from` is set).
    Private,
    /// A public line from before we logged in (`from` and `ts` are set).
    History,
    /// A private line sent while we were offline (`from` and `ts` are set).
    Offline,
    /// An end-to-end encrypted line from a peer (`from` is set).
    Secure,
    /// Our own public line (`from` is our nick).
    OwnPublic,
    /// Our own private line, not end-to-end encrypted (`from` is our nick; the target is the
    /// recipient).
    OwnPrivate,
    /// Our own end-to-end encrypted line; `queued`: waiting for the session to be ready.
    OwnSecure {
        /// Still waiting for the session.
        queued: bool,
    },
    /// An action line (`/me`) of someone's, or ours (`from` is set): `* alice waves`.
    Action,
    /// An action line from before we logged in or joined (`from` and `ts` are set).
    HistoryAction,
    /// The marker before the first line of a room's history we had not been sent: `── new ──`.
    NewMarker,
    /// A notice: joins, session changes, answers to commands.
    Notice,
    /// A secure session came up: a notice worth its own colour.
    Ready,
    /// An error or a warning.
    Error,
    /// A warning that may mean an attack (a changed key): louder than [`Kind::Error`].
    Alarm,
    /// A safety number: `text` is its title (`safety number with bob`), `number` its 60 digits
    /// in groups of 5.
    SafetyNumber {
        /// The digits, in groups of 5 separated by spaces.
        number: String,
        /// It is the number of a changed key, not accepted yet.
        new_key: bool,
    },
}

/// One thing to show, in no front end's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Where it goes.
    pub target: Target,
    /// What kind of line it is.
    pub kind: Kind,
    /// The sender of a chat line; `None` for notices.
    pub from: Option<String>,
    /// The words, raw (clean them before showing: [`crate::display::clean`]).
    pub text: String,
    /// When it was sent (ms since the Unix epoch) for lines from the server; `None`: now.
    pub ts: Option<u64>,
}

impl Rendered {
    /// A notice at `target`.
    pub fn notice(target: Target, text: impl Into<String>) -> Rendered {
        Rendered::new(target, Kind::Notice, text)
    }

    /// An error where the user is looking.
    pub fn error(text: impl Into<String>) -> Rendered {
        Rendered::new(Target::Here, Kind::Error, text)
    }

    /// An item without a sender or a time.
    pub fn new(target: Target, kind: Kind, text: impl Into<String>) -> Rendered {
        Rendered {
            target,
            kind,
            from: None,
            text: text.into(),
            ts: None,
        }
    }

    fn chat(target: Target, kind: Kind, from: &str, text: &str, ts: Option<u64>) -> Rendered {
        Rendered {
            target,
            kind,
            from: Some(from.to_owned()),
            text: text.to_owned(),
            ts,
        }
    }
}

/// What `event` says, in order; empty for events that show nothing (acknowledgements).
pub fn event(event: &Event) -> Vec<Rendered> {
    let one = |item: Rendered| vec![item];
    match event {
        Event::Public(line) => one(room_line(line, false)),
        Event::History(line) => one(room_line(line, true)),
        Event::Room(e) => room_event(e),
        Event::Private(ChatLine { ts, from, text, .. }) => one(Rendered::chat(
            Target::Peer(from.clone()),
            Kind::Private,
            from,
            text,
            Some(*ts),
        )),
        Event::Offline(ChatLine { ts, from, text, .. }) => one(Rendered::chat(
            Target::Peer(from.clone()),
            Kind::Offline,
            from,
            text,
            Some(*ts),
        )),
        Event::Queued { .. } => one(Rendered::notice(
            Target::Here,
            "they are offline; the server keeps the message for their next login",
        )),
        Event::Sent { .. } => Vec::new(),
        Event::Joined { nick } => vec![
            Rendered::notice(Target::Room, format!("{nick} joined")),
            Rendered::notice(Target::PeerTab(nick.clone()), format!("{nick} is online")),
        ],
        Event::Left { nick, reason } => {
            let why = match reason {
                LeaveReason::Quit => String::new(),
                other => format!(" ({})", other.as_str()),
            };
            vec![
                Rendered::notice(Target::Room, format!("{nick} left{why}")),
                Rendered::notice(
                    Target::PeerTab(nick.clone()),
                    format!("{nick} went offline{why}"),
                ),
            ]
        }
        Event::Users(nicks) => one(Rendered::notice(
            Target::Here,
            format!("online ({}): {}", nicks.len(), nicks.join(", ")),
        )),
        Event::Error { code, detail, .. } => one(Rendered::error(format!(
            "error ({}): {detail}",
            code.name()
        ))),
        Event::Shutdown { reason } => one(Rendered::notice(Target::Room, shutdown_words(reason))),
        Event::Warning(w) => one(Rendered::error(format!("warning: {w}"))),
        Event::Reconnecting {
            attempt,
            in_secs,
            reason,
        } => one(Rendered::notice(
            Target::Room,
            format!("not connected ({reason}); reconnecting in {in_secs} s (attempt {attempt})"),
        )),
        Event::Reconnected(w) => one(Rendered::notice(
            Target::Room,
            format!("reconnected; {} online", w.online.len()),
        )),
        Event::GaveUp { advice, .. } => {
            one(Rendered::new(Target::Room, Kind::Error, advice.clone()))
        }
        Event::SafetyNumber {
            peer,
            number,
            new_key,
        } => safety_number(peer, number, *new_key),
        Event::Secure(e) => secure(e),
        Event::Closed { error: Some(e), .. } => one(Rendered::new(
            Target::Room,
            Kind::Error,
            format!("disconnected: {e}"),
        )),
        Event::Closed { error: None, .. } => one(Rendered::notice(Target::Room, "disconnected")),
    }
}

/// Where a room's items go: the lobby is [`Target::Room`].
pub fn room_target(room: &str) -> Target {
    if room.is_empty() || is_lobby(room) {
        Target::Room
    } else {
        Target::InRoom(room.to_owned())
    }
}

/// A room line (live, or from the history).
fn room_line(line: &ChatLine, history: bool) -> Rendered {
    let kind = match (line.action, history) {
        (false, false) => Kind::Public,
        (false, true) => Kind::History,
        (true, false) => Kind::Action,
        (true, true) => Kind::HistoryAction,
    };
    Rendered::chat(
        room_target(&line.room),
        kind,
        &line.from,
        &line.text,
        Some(line.ts),
    )
}

/// `bob an operator`, the words of a member change for `* alice made ...`.
fn member_change_words(by: &str, nick: &str, room: &str, change: MemberChange) -> String {
    match change {
        MemberChange::Op => format!("{by} made {nick} an operator in {room}"),
        MemberChange::Deop => format!("{by} took {nick}'s operator status in {room}"),
        MemberChange::Voice => format!("{by} gave {nick} voice in {room}"),
        MemberChange::Devoice => format!("{by} took {nick}'s voice in {room}"),
        MemberChange::Ban => format!("{by} banned {nick} from {room}"),
        MemberChange::Unban => format!("{by} lifted the ban on {nick} in {room}"),
    }
}

/// ` (reason)`, or nothing for an empty reason.
fn because(reason: &str) -> String {
    if reason.trim().is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

/// One sentence for a refused room command: why, in words.
pub fn room_error_words(code: ErrorCode) -> Option<&'static str> {
    Some(match code {
        ErrorCode::NO_SUCH_ROOM => "there is no such room (/list shows the rooms)",
        ErrorCode::INVALID_ROOM => {
            "that is not a room name (# then 1 to 48 letters, digits, _ or -)"
        }
        ErrorCode::NOT_IN_ROOM => "you are not in that room, or the user is not",
        ErrorCode::BANNED => "you are banned from it",
        ErrorCode::INVITE_ONLY => {
            "it is invite-only and you are not invited (ask an operator to /invite you)"
        }
        ErrorCode::NOT_OP => "only its operators may do that (and nobody may do it to its owner)",
        ErrorCode::ROOM_FULL => "it has as many members (or bans) as the server allows",
        ErrorCode::TOO_MANY_ROOMS => {
            "you are in as many rooms as the server allows (/part one first)"
        }
        ErrorCode::ROOMS_FULL => "the server takes no more new rooms for now",
        ErrorCode::ROOM_LOOKS_LIKE => "the name looks like an existing room's: choose another",
        ErrorCode::MODERATED => "it is moderated: only operators and voiced members speak",
        ErrorCode::INVALID_TOPIC => "the text is too long or holds characters the server refuses",
        ErrorCode::LOBBY_FIXED => {
            "#lobby cannot be left, and nobody can be kicked or banned from it"
        }
        ErrorCode::NO_SUCH_NICK => "there is no such user",
        ErrorCode::RATE_LIMITED => "you are sending too fast; wait a moment",
        ErrorCode::BUSY => "the server is busy; try again",
        _ => return None,
    })
}

/// `~alice @bob +carol dave (away)`: a member list as IRC shows it (offline members in
/// brackets).
pub fn names_words(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| {
            let mut s = format!("{}{}", m.role.prefix(), m.nick);
            if !m.online {
                s.push_str(" (offline)");
            } else if m.away {
                s.push_str(" (away)");
            }
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `#dev  3 members  topic`: one room of a `/list` page.
pub fn list_line(room: &RoomSummary) -> String {
    let members = crate::display::count(room.members as usize, "member", "members");
    if room.topic.is_empty() {
        format!("{}  {members}", room.name)
    } else {
        format!("{}  {members}  {}", room.name, room.topic)
    }
}

/// What a room event says.
pub fn room_event(event: &RoomEvent) -> Vec<Rendered> {
    let note = |room: &str, text: String| vec![Rendered::notice(room_target(room), text)];
    match event {
        RoomEvent::Entered { room, created } => {
            let mut text = format!("entered {}", room.name);
            if *created {
                text.push_str(" (new room)");
            }
            if !room.topic.is_empty() {
                text.push_str(&format!(" — topic: {}", room.topic));
            }
            text.push_str(&format!(
                " — {} — {}",
                crate::display::count(room.members as usize, "member", "members"),
                crate::core::role_words(room.role)
            ));
            let modes = crate::core::modes_words(room.modes);
            if !modes.is_empty() {
                text.push_str(&format!(" — {modes}"));
            }
            text.push_str(" — not end-to-end encrypted: the server reads room lines");
            note(&room.name, text)
        }
        RoomEvent::NewLines { room } => vec![Rendered::new(
            room_target(room),
            Kind::NewMarker,
            "── new ──",
        )],
        RoomEvent::Joined { room, nick } => note(room, format!("{nick} joined {room}")),
        RoomEvent::Parted {
            room,
            nick,
            reason,
            me,
        } => {
            if *me {
                vec![Rendered::notice(
                    Target::Room,
                    format!("you left {room}{}", because(reason)),
                )]
            } else {
                note(room, format!("{nick} left {room}{}", because(reason)))
            }
        }
        RoomEvent::Kicked {
            room,
            nick,
            by,
            reason,
            me,
        } => {
            if *me {
                vec![Rendered::new(
                    Target::Room,
                    Kind::Error,
                    format!("you were kicked from {room} by {by}{}", because(reason)),
                )]
            } else {
                note(
                    room,
                    format!("{nick} was kicked from {room} by {by}{}", because(reason)),
                )
            }
        }
        RoomEvent::Topic {
            room,
            by,
            topic,
            changed: true,
        } => {
            let by = if by.is_empty() { "someone" } else { by };
            if topic.is_empty() {
                note(room, format!("{by} cleared the topic of {room}"))
            } else {
                note(room, format!("{by} set the topic of {room}: {topic}"))
            }
        }
        RoomEvent::Topic {
            room,
            by,
            topic,
            changed: false,
        } => {
            let text = if topic.is_empty() {
                format!("{room} has no topic")
            } else if by.is_empty() {
                format!("topic of {room}: {topic}")
            } else {
                format!("topic of {room}: {topic} (set by {by})")
            };
            vec![Rendered::notice(Target::Here, text)]
        }
        RoomEvent::Mode { room, by, mode, on } => {
            let text = match (mode, on) {
                (RoomMode::InviteOnly, true) => format!("{by} made {room} invite-only"),
                (RoomMode::InviteOnly, false) => {
                    format!("{by} made {room} open to everyone (-i)")
                }
                (mode, on) => format!(
                    "{by} set {room} {}{} ({}{})",
                    if *on { '+' } else { '-' },
                    mode.letter(),
                    if *on { "" } else { "no longer " },
                    mode.words()
                ),
            };
            note(room, text)
        }
        RoomEvent::Member {
            room,
            by,
            nick,
            change,
        } => note(room, member_change_words(by, nick, room, *change)),
        RoomEvent::Invited {
            room, by, me: true, ..
        } => vec![Rendered::notice(
            Target::Room,
            format!("you were invited to {room} by {by} — /join {room}"),
        )],
        RoomEvent::Invited {
            room,
            nick,
            me: false,
            ..
        } => vec![Rendered::notice(
            Target::Here,
            format!("invited {nick} to {room}"),
        )],
        RoomEvent::Names {
            room,
            members,
            complete,
        } => {
            let more = if *complete { "" } else { " …(more: /names)" };
            vec![Rendered::notice(
                Target::Here,
                format!("{room}: {}{more}", names_words(members)),
            )]
        }
        RoomEvent::List { rooms, next } => {
            let mut items: Vec<Rendered> = rooms
                .iter()
                .map(|r| Rendered::notice(Target::Here, list_line(r)))
                .collect();
            if rooms.is_empty() {
                items.push(Rendered::notice(Target::Here, "no rooms"));
            }
            if !next.is_empty() {
                items.push(Rendered::notice(Target::Here, "more rooms: /list more"));
            }
            items
        }
        RoomEvent::Error {
            room,
            doing,
            code,
            detail,
        } => {
            let why = match room_error_words(*code) {
                Some(words) => {
                    let extra = matches!(
                        *code,
                        ErrorCode::ROOMS_FULL
                            | ErrorCode::ROOM_LOOKS_LIKE
                            | ErrorCode::INVALID_TOPIC
                    ) && !detail.trim().is_empty();
                    if extra {
                        format!("{words} ({detail})")
                    } else {
                        words.to_owned()
                    }
                }
                None => format!("{detail} ({})", code.name()),
            };
            let doing = doing.unwrap_or("use");
            vec![Rendered::error(format!("cannot {doing} {room}: {why}"))]
        }
        RoomEvent::Away {
            message, me: true, ..
        } => vec![Rendered::notice(
            Target::Here,
            if message.is_empty() {
                "you are back (no longer marked away)".to_owned()
            } else {
                format!("you are marked away: {message}")
            },
        )],
        RoomEvent::Away {
            nick,
            message,
            me: false,
        } => vec![Rendered::notice(
            Target::Here,
            if message.is_empty() {
                format!("{nick} is back")
            } else {
                format!("{nick} is away: {message}")
            },
        )],
    }
}

/// Our own line to a room, as handed to the connection; `action`: a `/me` line.
pub fn own_room_line(nick: &str, room: &str, text: &str, action: bool) -> Rendered {
    let kind = if action {
        Kind::Action
    } else {
        Kind::OwnPublic
    };
    Rendered::chat(room_target(room), kind, nick, text, None)
}

/// What an end-to-end event says (in the conversation with its peer); empty for a kind of
/// event this version does not show.
pub fn secure(event: &E2eEvent) -> Vec<Rendered> {
    let Some(peer) = e2e_peer(event) else {
        return Vec::new();
    };
    let at = || Target::Peer(peer.to_owned());
    let item = match event {
        E2eEvent::Starting { by_peer: false, .. } => Rendered::notice(
            at(),
            format!("setting up a secure session with {peer}..."),
        ),
        E2eEvent::Starting { by_peer: true, .. } => Rendered::notice(
            at(),
            format!("{peer} is setting up a secure session with you..."),
        ),
        E2eEvent::Ready {
            key,
            trust,
            renewed: false,
            ..
        } => {
            let compare = if *trust == Trust::Verified {
                String::new()
            } else {
                format!(". Compare safety numbers: /verify {peer}")
            };
            Rendered::new(
                at(),
                Kind::Ready,
                format!(
                    "secure session with {peer} ready: messages to and from {peer} are end-to-end encrypted. \
                     {peer}'s key: {} ({trust}){compare}",
                    key_fingerprint(key)
                ),
            )
        }
        E2eEvent::Ready { renewed: true, .. } => Rendered::notice(
            at(),
            format!("secure session with {peer} renewed with fresh keys"),
        ),
        E2eEvent::Message { text, .. } => Rendered::chat(at(), Kind::Secure, peer, text, None),
        E2eEvent::Ended {
            by_peer, unsent, ..
        } => {
            let dropped = not_sent(unsent.len());
            Rendered::notice(
                at(),
                if *by_peer {
                    format!(
                        "{peer} ended the secure session{dropped}; nothing goes unencrypted: your next message to {peer} starts a new one (/insecure {peer} to go on unencrypted)"
                    )
                } else {
                    format!(
                        "secure session with {peer} ended by you{dropped}; private messages with {peer} are NOT end-to-end encrypted now"
                    )
                },
            )
        }
        E2eEvent::NotStarted {
            failure, unsent, ..
        } => Rendered::notice(
            at(),
            format!(
                "the secure session {peer} offered did not come up ({failure}){}; private messages with {peer} are still NOT end-to-end encrypted (/secure {peer} to try)",
                not_sent(unsent.len())
            ),
        ),
        E2eEvent::Failed {
            failure: Failure::KeyChanged { pinned, presented },
            ..
        } => Rendered::new(
            at(),
            Kind::Alarm,
            format!(
                "WARNING: {peer}'s key has CHANGED. Pinned: {}. Presented: {}. Someone may be \
                 intercepting your conversation; nothing was sent. Compare the safety number of \
                 the NEW key (/verify {peer}) with {peer} in person or by phone; if they match: \
                 /accept-key {peer}, then /verified {peer}",
                key_fingerprint(pinned),
                key_fingerprint(presented)
            ),
        ),
        E2eEvent::Failed {
            failure: Failure::OwnKey,
            unsent,
            ..
        } => Rendered::new(
            at(),
            Kind::Alarm,
            format!(
                "WARNING: {}{}",
                own_key_warning(peer),
                not_sent(unsent.len())
            ),
        ),
        E2eEvent::Failed {
            failure, unsent, ..
        } => {
            let dropped = not_sent(unsent.len());
            let text = if matches!(failure, Failure::PeerLeft | Failure::Unreachable) {
                format!(
                    "secure session with {peer} interrupted: {failure}{dropped}. Nothing goes unencrypted: \
                     messages to {peer} are refused until {peer} is back, and the session then restarts \
                     by itself; /insecure {peer} to go on unencrypted"
                )
            } else if failure.is_interruption() {
                format!(
                    "secure session with {peer} interrupted: {failure}{dropped}. Nothing goes unencrypted: \
                     your next message to {peer} starts a new session and waits for it (it also restarts \
                     by itself when {peer} is online); /insecure {peer} to go on unencrypted"
                )
            } else {
                format!(
                    "secure session with {peer} failed: {failure}{dropped}. Messages to {peer} are blocked \
                     until /secure {peer} or /insecure {peer}"
                )
            };
            Rendered::new(at(), Kind::Error, text)
        }
        _ => return Vec::new(),
    };
    vec![item]
}

/// The peer an end-to-end event is about; `None` for a kind this version does not know.
pub fn e2e_peer(event: &E2eEvent) -> Option<&str> {
    match event {
        E2eEvent::Starting { peer, .. }
        | E2eEvent::Ready { peer, .. }
        | E2eEvent::Message { peer, .. }
        | E2eEvent::Ended { peer, .. }
        | E2eEvent::NotStarted { peer, .. }
        | E2eEvent::Failed { peer, .. } => Some(peer),
        _ => None,
    }
}

/// Why the lines an end-to-end event drops (its `unsent`) were not sent, for a front end that
/// marks each of them; `None` for an event that drops none.
pub fn unsent_reason(event: &E2eEvent) -> Option<String> {
    match event {
        E2eEvent::Ended { .. } => Some("not sent: the secure session ended".into()),
        E2eEvent::NotStarted { failure, .. } => Some(format!(
            "not sent: the secure session did not come up ({failure})"
        )),
        E2eEvent::Failed { failure, .. } => {
            Some(format!("not sent: the secure session failed ({failure})"))
        }
        _ => None,
    }
}

/// A safety number and what to do with it, in the conversation with `peer`: the number
/// ([`Kind::SafetyNumber`]), then a notice saying how to compare it. `new_key`: the number of
/// a changed key, not accepted yet.
pub fn safety_number(peer: &str, number: &str, new_key: bool) -> Vec<Rendered> {
    let (title, then) = if new_key {
        (
            format!("safety number of {peer}'s NEW key (not accepted yet)"),
            format!("/accept-key {peer}, then /verified {peer}"),
        )
    } else {
        (
            format!("safety number with {peer}"),
            format!("/verified {peer}"),
        )
    };
    let at = Target::Peer(peer.to_owned());
    vec![
        Rendered::new(
            at.clone(),
            Kind::SafetyNumber {
                number: number.to_owned(),
                new_key,
            },
            title,
        ),
        Rendered::notice(
            at,
            format!(
                "compare it with the one {peer} sees, in person or by phone; if they are the same: {then}"
            ),
        ),
    ]
}

/// The notice after logging in: `connected to SERVER as NICK; 2 online: alice, bob`.
pub fn welcome(server: &str, w: &Welcome) -> Rendered {
    Rendered::notice(
        Target::Room,
        format!(
            "connected to {server} as {}; {} online: {}",
            w.nick,
            w.online.len(),
            w.online.join(", ")
        ),
    )
}

/// Our own public line, as handed to the connection.
pub fn own_public(nick: &str, text: &str) -> Rendered {
    Rendered::chat(Target::Room, Kind::OwnPublic, nick, text, None)
}

/// Our own private line to `to`, as it went (`delivery`).
pub fn own_private(nick: &str, to: &str, text: &str, delivery: Delivery) -> Rendered {
    let kind = match delivery {
        Delivery::Plain => Kind::OwnPrivate,
        Delivery::Secure => Kind::OwnSecure { queued: false },
        Delivery::Queued => Kind::OwnSecure { queued: true },
    };
    Rendered::chat(Target::Peer(to.to_owned()), kind, nick, text, None)
}

/// The `/help` text, one notice a line.
pub fn help() -> Vec<Rendered> {
    HELP.lines()
        .map(|line| Rendered::notice(Target::Here, line))
        .collect()
}

/// What to tell the user when `peer` presents our own identity key.
pub fn own_key_warning(peer: &str) -> String {
    format!(
        "{peer} presents your own key: you and {peer} share one home directory; each user needs \
         their own (each --nick has one by default; or --home DIR). Nothing was sent or pinned; \
         messages to {peer} stay blocked: once {peer} has a home of their own, /secure {peer} \
         again (or /insecure {peer} to send plain)"
    )
}

/// `; 2 waiting messages were NOT sent`, or nothing for 0.
fn not_sent(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => "; 1 waiting message was NOT sent".to_string(),
        n => format!("; {n} waiting messages were NOT sent"),
    }
}

/// The notice for the server's `Shutdown { reason }`: `server shutting down`, with the reason
/// only when it says more than that (today's server says just "server is shutting down").
pub fn shutdown_words(reason: &str) -> String {
    let reason = reason.trim();
    if reason.is_empty() || reason.to_ascii_lowercase().contains("shutting down") {
        "server shutting down".to_owned()
    } else {
        format!("server shutting down: {reason}")
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
