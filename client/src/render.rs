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
use mm_common::protocol::{is_lobby, LeaveReason};

use crate::command::HELP;
use crate::{Delivery, Event, Welcome};

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
        Event::Queued {
            secure_for: Some(peer),
            ..
        } => one(Rendered::notice(
            Target::Peer(peer.clone()),
            format!("queued end-to-end encrypted for {peer} (offline): delivered at their next login"),
        )),
        Event::Queued { .. } => one(Rendered::notice(
            Target::Here,
            "they are offline; the server keeps the message (NOT end-to-end encrypted) for their next login",
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
            format!("reconnected; {} online", w.online_count),
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

/// What an end-to-end event says (in the conversation with its peer); empty for a kind of
/// event this version does not show.
pub fn secure(event: &E2eEvent) -> Vec<Rendered> {
    let Some(peer) = e2e_peer(event) else {
        return secure_general(event);
    };
    let at = || Target::Peer(peer.to_owned());
    let item = match event {
        E2eEvent::Ready {
            key,
            trust,
            by_peer,
            ..
        } => {
            let compare = if *trust == Trust::Verified {
                String::new()
            } else {
                format!(". Compare safety numbers: /verify {peer}")
            };
            let who = if *by_peer {
                format!("{peer} started a secure session")
            } else {
                format!("secure session with {peer} ready")
            };
            Rendered::new(
                at(),
                Kind::Ready,
                format!(
                    "{who}: messages to and from {peer} are end-to-end encrypted. \
                     {peer}'s key: {}, {trust}{compare}",
                    key_fingerprint(key)
                ),
            )
        }
        E2eEvent::Message { text, .. } => Rendered::chat(at(), Kind::Secure, peer, text, None),
        E2eEvent::Ended { unsent, .. } => Rendered::notice(
            at(),
            format!(
                "private messages to {peer} are NOT end-to-end encrypted from now on (the server can read them){}; /secure {peer} to encrypt again",
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
                 intercepting your conversation; nothing was sent or shown. Compare the safety number of \
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
        E2eEvent::Resumed { .. } => Rendered::notice(
            at(),
            format!("private messages to {peer} are end-to-end encrypted again"),
        ),
        E2eEvent::Failed {
            failure: Failure::NoSuchUser,
            unsent,
            ..
        } => Rendered::new(
            at(),
            Kind::Error,
            format!(
                "{peer} is not a user on this server{}",
                not_sent(unsent.len())
            ),
        ),
        E2eEvent::Failed {
            failure: Failure::NoKeys,
            unsent,
            ..
        } => Rendered::new(
            at(),
            Kind::Error,
            format!(
                "{peer} has no end-to-end keys (an older client, or a browser page from before end-to-end; {peer} gets keys by logging in again with a current one){}. To send plain (the server can read it): /insecure {peer}, then send again",
                not_sent(unsent.len())
            ),
        ),
        E2eEvent::Failed {
            failure, unsent, ..
        } => {
            let dropped = not_sent(unsent.len());
            let text = if failure.is_blocking() {
                format!(
                    "secure session with {peer} failed: {failure}{dropped}. Messages to {peer} are blocked \
                     until /secure {peer} (tries again) or /insecure {peer}"
                )
            } else {
                format!(
                    "could not start a secure session with {peer}: {failure}{dropped}. Nothing goes \
                     unencrypted: your next message to {peer} tries again (/insecure {peer} to send plain)"
                )
            };
            Rendered::new(at(), Kind::Error, text)
        }
        E2eEvent::Held { held, dropped, .. } => Rendered::new(
            at(),
            Kind::Alarm,
            held_words(peer, *held, *dropped),
        ),
        E2eEvent::Released { key, count, .. } => Rendered::notice(
            at(),
            format!(
                "{} from {peer} {}, sent under the key you just accepted ({})",
                if *count == 1 {
                    "1 held message".to_owned()
                } else {
                    format!("{count} held messages")
                },
                if *count == 1 { "follows" } else { "follow" },
                key_fingerprint(key)
            ),
        ),
        E2eEvent::Unreadable { .. } => Rendered::new(
            at(),
            Kind::Error,
            format!(
                "a message from {peer} could not be decrypted and is not shown (altered on the way, \
                 or sent in a session this client no longer has): ask {peer} to send it again"
            ),
        ),
        E2eEvent::Replayed { .. } => Rendered::new(
            at(),
            Kind::Error,
            format!("a message from {peer} came again (replayed by the server?) and was ignored"),
        ),
        E2eEvent::PeerCouldNotRead { count, .. } => {
            Rendered::new(at(), Kind::Error, could_not_read_words(peer, *count))
        }
        _ => return Vec::new(),
    };
    vec![item]
}

/// What [`E2eEvent::PeerCouldNotRead`] says: the peer lost its keys and could not read
/// `count` of our messages.
pub fn could_not_read_words(peer: &str, count: u32) -> String {
    let messages = if count == 1 {
        "1 of your messages".to_owned()
    } else {
        format!("{count} of your messages")
    };
    format!(
        "{peer} could not read {messages} ({peer}'s client no longer had the keys of your secure session): send again what you sent {peer} before the key-change warning"
    )
}

/// What [`E2eEvent::Held`] says: how many messages wait under a changed key, and what shows
/// them.
pub fn held_words(peer: &str, held: usize, dropped: u64) -> String {
    let lost = match dropped {
        0 => String::new(),
        1 => "; 1 older message was dropped (too many held)".to_owned(),
        n => format!("; {n} older messages were dropped (too many held)"),
    };
    let (messages, are) = if held == 1 {
        ("1 message".to_owned(), "is")
    } else {
        (format!("{held} messages"), "are")
    };
    format!(
        "{messages} from {peer} under the new key {are} held until you compare safety numbers (/verify {peer}) and /accept-key {peer}{lost}"
    )
}

/// What an end-to-end event about no peer says (another copy of this home is in use).
pub fn secure_general(event: &E2eEvent) -> Vec<Rendered> {
    match event {
        E2eEvent::OtherDevice => vec![Rendered::new(
            Target::Here,
            Kind::Alarm,
            "WARNING: another copy of this client's home directory published end-to-end keys since this one last did: \
             two machines are using one home, and their secure sessions break each other's. Use one copy only \
             (each machine needs its own nick and home)"
                .to_owned(),
        )],
        _ => Vec::new(),
    }
}

/// The peer an end-to-end event is about; `None` for an event about no peer, or of a kind
/// this version does not know.
pub fn e2e_peer(event: &E2eEvent) -> Option<&str> {
    match event {
        E2eEvent::Ready { peer, .. }
        | E2eEvent::Resumed { peer }
        | E2eEvent::Message { peer, .. }
        | E2eEvent::Ended { peer, .. }
        | E2eEvent::Failed { peer, .. }
        | E2eEvent::Unreadable { peer }
        | E2eEvent::Replayed { peer }
        | E2eEvent::Held { peer, .. }
        | E2eEvent::Released { peer, .. }
        | E2eEvent::PeerCouldNotRead { peer, .. } => Some(peer),
        _ => None,
    }
}

/// Why the lines an end-to-end event drops (its `unsent`) were not sent, for a front end that
/// marks each of them; `None` for an event that drops none.
pub fn unsent_reason(event: &E2eEvent) -> Option<String> {
    match event {
        E2eEvent::Ended { .. } => Some("not sent: you said /insecure before it went".into()),
        E2eEvent::Failed {
            failure: Failure::NoKeys,
            peer,
            ..
        } => Some(format!(
            "not sent: {peer} has no end-to-end keys (to send plain: /insecure {peer}, then send again)"
        )),
        E2eEvent::Failed { failure, .. } => {
            Some(format!("not sent: no secure session ({failure})"))
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
    let text = if w.online.is_empty() && w.online_count > 1 {
        // A large server does not list everyone at login.
        format!(
            "connected to {server} as {}; {} online (/who lists them)",
            w.nick, w.online_count
        )
    } else {
        format!(
            "connected to {server} as {}; {} online: {}",
            w.nick,
            w.online.len(),
            w.online.join(", ")
        )
    };
    Rendered::notice(Target::Room, text)
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

#[path = "render_rooms.rs"]
mod rooms;
use rooms::room_line;
pub use rooms::{list_line, names_words, own_room_line, room_error_words, room_event};

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
