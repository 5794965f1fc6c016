//! What nodes tell each other through the stream: one [`Event`] per stream message, encoded
//! with postcard (the wire protocol's encoding). See CLUSTER.md.
//!
//! A stream message is input from the network like any other: [`decode`] bounds its size and
//! every string in it, and a message that does not decode is skipped (logged, never applied).

use mm_common::protocol::{LeaveReason, MemberChange, RoomMode};
use serde::{Deserialize, Serialize};

/// Largest encoded event accepted (bytes): a relayed payload of the protocol's largest frame
/// and its envelope.
pub const MAX_EVENT_LEN: usize = mm_common::frame::MAX_FRAME_LEN + 1024;

/// Which node accepted a message, and which of its proposals it was: the origin's node epoch
/// (its fencing token, unique per node start), its proposal counter, and the connection that
/// sent it (skipped when the origin delivers the line to its own users).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The accepting node's epoch.
    pub epoch: i64,
    /// The node's proposal counter (from 1): with `epoch`, the `Nats-Msg-Id`.
    pub n: u64,
    /// The sending connection on the accepting node.
    pub conn: u64,
}

impl Origin {
    /// The stream's deduplication id for this proposal (`Nats-Msg-Id`).
    #[must_use]
    pub fn msg_id(&self) -> String {
        format!("{}-{}", self.epoch, self.n)
    }
}

/// A personal message's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PersonalBody {
    /// A private line's text.
    Text(String),
    /// An end-to-end payload, relayed as is.
    Relay(Vec<u8>),
}

/// One thing that happened on some node, in the one order of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// A line for a room (`#lobby` included); its id is the stream's.
    Line {
        /// Who accepted it.
        origin: Origin,
        /// The room, as the sender named it.
        room: String,
        /// `/me` action.
        action: bool,
        /// The sender's nick.
        from: String,
        /// The line (validated by the accepting node; checked again on decode).
        text: String,
        /// The accepting node's time, ms since the Unix epoch.
        ts: u64,
    },
    /// A private line or a relayed end-to-end payload for one user.
    Personal {
        /// Who accepted it.
        origin: Origin,
        /// The recipient's nick as the sender typed it.
        to: String,
        /// The sender's nick.
        from: String,
        /// What it carries.
        body: PersonalBody,
        /// The accepting node's time, ms since the Unix epoch.
        ts: u64,
    },
    /// A room command (CLUSTER.md, "Rooms"): every node runs it against its rooms, in stream
    /// order, and reaches the same outcome.
    Room {
        /// Who accepted it (`conn` 0: the server itself, e.g. `mm-server rooms`).
        origin: Origin,
        /// The acting user's nick; empty for the server itself.
        from: String,
        /// The command.
        cmd: RoomCmd,
        /// The accepting node's time, ms since the Unix epoch: the time every node uses.
        ts: u64,
    },
    /// `nick` logged in on the node of `epoch` (others heard of it).
    Online {
        /// The node's epoch.
        epoch: i64,
        /// The nick as the user spells it.
        nick: String,
    },
    /// `nick`, on the node of `epoch`, is away with `message`, or back (`None`).
    Away {
        /// The node's epoch.
        epoch: i64,
        /// The nick as the user spells it.
        nick: String,
        /// The away message.
        message: Option<String>,
    },
    /// `nick` left the node of `epoch`.
    Offline {
        /// The node's epoch.
        epoch: i64,
        /// The nick as the user spells it.
        nick: String,
        /// Why, as told to the others.
        reason: LeaveReason,
    },
}

/// A room command as the stream carries it (the client's `ClientMsg` room commands, and the
/// server's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RoomCmd {
    /// `/join`: enter the room, creating it if missing.
    Join {
        /// The room.
        room: String,
    },
    /// `/part`.
    Part {
        /// The room.
        room: String,
        /// Told to the room.
        reason: String,
    },
    /// Set the topic.
    Topic {
        /// The room.
        room: String,
        /// The new topic (may be empty).
        topic: String,
    },
    /// Invite `nick`.
    Invite {
        /// The room.
        room: String,
        /// The invitee.
        nick: String,
    },
    /// Remove `nick`.
    Kick {
        /// The room.
        room: String,
        /// Who is removed.
        nick: String,
        /// Told to the room.
        reason: String,
    },
    /// Op, voice, ban and their reverse.
    Member {
        /// The room.
        room: String,
        /// Whose standing changes.
        nick: String,
        /// The change.
        change: MemberChange,
    },
    /// A mode on or off.
    Mode {
        /// The room.
        room: String,
        /// Which.
        mode: RoomMode,
        /// On or off.
        on: bool,
    },
    /// The account of `from` is gone (expired, released) or was registered anew: it leaves
    /// every room, and its invitations and bans go.
    Forget {
        /// Told to the rooms.
        reason: String,
    },
    /// The server's operator deletes the room (`mm-server rooms delete`), or it expired.
    Delete {
        /// The room.
        room: String,
        /// Told to its members.
        reason: String,
        /// Only the room of this id (an expiry names the room it found expired: not one made
        /// again under its name since); 0: whichever room has the name.
        id: u64,
    },
    /// The server's operator makes `nick` the owner (`mm-server rooms set-owner`).
    SetOwner {
        /// The room.
        room: String,
        /// The member.
        nick: String,
    },
}

impl RoomCmd {
    /// Whether only the server gives it (no user acts).
    fn by_server(&self) -> bool {
        matches!(self, RoomCmd::Delete { .. } | RoomCmd::SetOwner { .. })
    }

    /// Whether its fields are within the protocol's bounds.
    fn in_bounds(&self) -> bool {
        use mm_common::protocol::{validate_nick, validate_room, MAX_REASON_LEN, MAX_TOPIC_LEN};
        let room_ok = |r: &str| validate_room(r).is_ok();
        let nick_ok = |n: &str| validate_nick(n).is_ok();
        let words_ok = |t: &str, max: usize| {
            t.is_empty() || mm_common::protocol::validate_text(t, max).is_ok()
        };
        match self {
            RoomCmd::Join { room } => room_ok(room),
            RoomCmd::Part { room, reason } | RoomCmd::Delete { room, reason, .. } => {
                room_ok(room) && words_ok(reason, MAX_REASON_LEN)
            }
            RoomCmd::Topic { room, topic } => room_ok(room) && words_ok(topic, MAX_TOPIC_LEN),
            RoomCmd::Invite { room, nick }
            | RoomCmd::Member { room, nick, .. }
            | RoomCmd::SetOwner { room, nick } => room_ok(room) && nick_ok(nick),
            RoomCmd::Kick { room, nick, reason } => {
                room_ok(room) && nick_ok(nick) && words_ok(reason, MAX_REASON_LEN)
            }
            RoomCmd::Mode { room, .. } => room_ok(room),
            RoomCmd::Forget { reason } => words_ok(reason, MAX_REASON_LEN),
        }
    }
}

/// Why a stream message was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// Larger than [`MAX_EVENT_LEN`].
    #[error("event of {0} bytes is too large")]
    TooLarge(usize),
    /// Not an event.
    #[error("event does not decode")]
    Malformed,
    /// A nick or text beyond the protocol's bounds.
    #[error("event field out of bounds")]
    OutOfBounds,
}

/// Encodes `event` for the stream.
///
/// # Errors
/// [`EventError::Malformed`] if it cannot be encoded (not expected for validated input).
pub fn encode(event: &Event) -> Result<Vec<u8>, EventError> {
    postcard::to_stdvec(event).map_err(|_| EventError::Malformed)
}

/// Decodes one stream message, with the protocol's bounds on every field.
///
/// # Errors
/// See [`EventError`].
pub fn decode(bytes: &[u8]) -> Result<Event, EventError> {
    if bytes.len() > MAX_EVENT_LEN {
        return Err(EventError::TooLarge(bytes.len()));
    }
    let event: Event = postcard::from_bytes(bytes).map_err(|_| EventError::Malformed)?;
    // The same checks as a client's input: a forged or damaged event shows nothing a client
    // could not have sent (nicks as registered, text without control characters).
    let nick_ok = |n: &str| mm_common::protocol::validate_nick(n).is_ok();
    let text_ok =
        |t: &str| mm_common::protocol::validate_text(t, mm_common::protocol::MAX_TEXT_LEN).is_ok();
    let ok = match &event {
        Event::Line {
            room, from, text, ..
        } => mm_common::protocol::validate_room(room).is_ok() && nick_ok(from) && text_ok(text),
        // A user's command names its user; the server's own (delete, set-owner) none.
        Event::Room { from, cmd, .. } => {
            (if cmd.by_server() {
                from.is_empty()
            } else {
                nick_ok(from)
            }) && cmd.in_bounds()
        }
        Event::Personal { to, from, body, .. } => {
            nick_ok(to)
                && nick_ok(from)
                && match body {
                    PersonalBody::Text(t) => text_ok(t),
                    PersonalBody::Relay(p) => {
                        !p.is_empty() && p.len() <= mm_common::frame::MAX_FRAME_LEN
                    }
                }
        }
        Event::Online { nick, .. } | Event::Offline { nick, .. } => nick_ok(nick),
        Event::Away { nick, message, .. } => {
            nick_ok(nick)
                && message.as_ref().is_none_or(|m| {
                    m.len() <= mm_common::protocol::MAX_REASON_LEN
                        && !m.chars().any(char::is_control)
                })
        }
    };
    if ok {
        Ok(event)
    } else {
        Err(EventError::OutOfBounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_hostile_bytes_are_refused() {
        let origin = Origin {
            epoch: 7,
            n: 3,
            conn: 9,
        };
        assert_eq!(origin.msg_id(), "7-3");
        for event in [
            Event::Line {
                origin,
                room: "#lobby".into(),
                action: false,
                from: "ann".into(),
                text: "hi".into(),
                ts: 1,
            },
            Event::Room {
                origin,
                from: "ann".into(),
                cmd: RoomCmd::Kick {
                    room: "#dev".into(),
                    nick: "bob".into(),
                    reason: "spam".into(),
                },
                ts: 3,
            },
            Event::Room {
                origin,
                from: String::new(),
                cmd: RoomCmd::Delete {
                    room: "#dev".into(),
                    reason: "expired".into(),
                    id: 12,
                },
                ts: 4,
            },
            Event::Personal {
                origin,
                to: "Bob".into(),
                from: "ann".into(),
                body: PersonalBody::Relay(vec![1, 2, 3]),
                ts: 2,
            },
            Event::Online {
                epoch: 7,
                nick: "ann".into(),
            },
            Event::Offline {
                epoch: 7,
                nick: "ann".into(),
                reason: LeaveReason::Quit,
            },
            Event::Away {
                epoch: 7,
                nick: "ann".into(),
                message: Some("lunch".into()),
            },
        ] {
            assert_eq!(decode(&encode(&event).unwrap()).unwrap(), event);
        }
        assert_eq!(decode(&[0xff; 8]), Err(EventError::Malformed));
        assert_eq!(decode(&[]), Err(EventError::Malformed));
        let huge = vec![0u8; MAX_EVENT_LEN + 1];
        assert_eq!(decode(&huge), Err(EventError::TooLarge(MAX_EVENT_LEN + 1)));
        for bad in [
            Event::Online {
                epoch: 1,
                nick: String::new(),
            },
            Event::Online {
                epoch: 1,
                nick: "bad nick!".into(),
            },
            Event::Line {
                origin,
                room: "#lobby".into(),
                action: false,
                from: "ann".into(),
                text: "bell\u{7}".into(),
                ts: 1,
            },
            Event::Line {
                origin,
                room: "no spaces allowed".into(),
                action: false,
                from: "ann".into(),
                text: "hi".into(),
                ts: 1,
            },
            Event::Room {
                origin,
                from: String::new(),
                cmd: RoomCmd::Join {
                    room: "#dev".into(),
                },
                ts: 1,
            },
            Event::Room {
                origin,
                from: "ann".into(),
                cmd: RoomCmd::Topic {
                    room: "#dev".into(),
                    topic: "esc\u{1b}[2J".into(),
                },
                ts: 1,
            },
            // A server-only command in a user's name.
            Event::Room {
                origin,
                from: "mallory".into(),
                cmd: RoomCmd::Delete {
                    room: "#dev".into(),
                    reason: String::new(),
                    id: 0,
                },
                ts: 1,
            },
            Event::Away {
                epoch: 1,
                nick: "ann".into(),
                message: Some("esc\u{1b}[31m".into()),
            },
        ] {
            assert_eq!(
                decode(&encode(&bad).unwrap()),
                Err(EventError::OutOfBounds),
                "{bad:?}"
            );
        }
    }
}
