//! What room events and room lines say ([`super::event`] for the rest).

use mm_common::protocol::{ErrorCode, Member, MemberChange, RoomMode, RoomSummary};

use super::{room_target, Kind, Rendered, Target};
use crate::{ChatLine, RoomEvent};

/// A room line (live, or from the history).
pub(super) fn room_line(line: &ChatLine, history: bool) -> Rendered {
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
    let by = actor(by);
    match change {
        MemberChange::Op => format!("{by} made {nick} an operator in {room}"),
        MemberChange::Deop => format!("{by} took {nick}'s operator status in {room}"),
        MemberChange::Voice => format!("{by} gave {nick} voice in {room}"),
        MemberChange::Devoice => format!("{by} took {nick}'s voice in {room}"),
        MemberChange::Ban => format!("{by} banned {nick} from {room}"),
        MemberChange::Unban => format!("{by} lifted the ban on {nick} in {room}"),
        MemberChange::Owner => format!("{nick} now owns {room}"),
    }
}

/// Who did it: a nick, or (empty, never a nick) the server itself.
fn actor(by: &str) -> &str {
    if by.is_empty() {
        "the server"
    } else {
        by
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
        RoomEvent::Entered { room, created, .. } => {
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
            let by = actor(by);
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
            // The same words as the web page's (web/src/render.js).
            let text = match (mode, on) {
                (RoomMode::InviteOnly, true) => {
                    format!("{by} made {room} invite-only (+i): only those invited join")
                }
                (RoomMode::InviteOnly, false) => {
                    format!("{by} made {room} open to everyone (-i)")
                }
                (RoomMode::Moderated, true) => format!(
                    "{by} made {room} moderated (+m): only operators and voiced members speak"
                ),
                (RoomMode::Moderated, false) => {
                    format!("{by} made {room} unmoderated (-m): every member speaks")
                }
                (RoomMode::TopicOps, true) => {
                    format!("{by} let only operators set the topic of {room} (+t)")
                }
                (RoomMode::TopicOps, false) => {
                    format!("{by} let every member set the topic of {room} (-t)")
                }
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
            // Where one code covers several cases (you or the other user not in the room or
            // banned; not an operator or the owner; the server's or your own room limit), the
            // server's detail says which: it is shown (on one line, cut to length by the core).
            let precise = matches!(
                *code,
                ErrorCode::NOT_IN_ROOM
                    | ErrorCode::NOT_OP
                    | ErrorCode::BANNED
                    | ErrorCode::ROOMS_FULL
                    | ErrorCode::ROOM_LOOKS_LIKE
                    | ErrorCode::INVALID_TOPIC
            ) && !detail.trim().is_empty();
            let why = match room_error_words(*code) {
                Some(_) if precise => detail.clone(),
                Some(words) => words.to_owned(),
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
