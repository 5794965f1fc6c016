//! Topics: what a message is addressed to on the `Bus`. A room's lines,
//! notices and presence go to the room's topic, whose subscribers are its members' outboxes;
//! a user's personal lines and notices go to the user's own topic, whose subscriber is the
//! outbox of their current connection. Today's public chat is one room, [`RoomId::LOBBY`].

use std::fmt;

/// A room's id: stable for the room's life, never reused (the store will hand them out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub u64);

impl RoomId {
    /// The room every user is in: the public chat of protocol 4 (`#lobby`).
    pub const LOBBY: RoomId = RoomId(1);
}

/// An address on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Topic {
    /// A room: every member's outbox.
    Room(RoomId),
    /// A user, by [`nick_key`](mm_common::protocol::nick_key): the outbox of the user's
    /// current connection.
    User(String),
}

impl Topic {
    /// The topic of the user whose nick key is `key`.
    pub fn user(key: &str) -> Topic {
        Topic::User(key.to_owned())
    }
}

impl fmt::Display for Topic {
    /// `room.ID` or `user.KEY`: the subject a message bus between nodes will use (nick keys
    /// hold no `.`, `*` or `>`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Room(RoomId(id)) => write!(f, "room.{id}"),
            Topic::User(key) => write!(f, "user.{key}"),
        }
    }
}
