//! Room commands from a logged-in client (`Join` … `Away`): each checked here for what the
//! session can check alone (room names, lengths), then handed to the hub, which answers into
//! the user's outbox; a refusal is sent at once as a `RoomError` (never fatal).

use mm_common::protocol::{
    is_lobby, validate_nick, validate_room, ClientMsg, ServerMsg, MAX_REASON_LEN,
};

use super::context::{Context, STORE_TIMEOUT};
use crate::hub::{HistoryLoad, Joining, Outbox, RoomError};
use crate::store::{Line, StoreError};
use crate::transport::Transport;

/// Handles one room command. Answers go to the outbox (through the hub, in its order) or, for
/// lists and refusals, straight onto the transport. A join whose room's history must be read
/// from the store returns its [`HistoryLoad`], to complete with [`complete`].
pub(super) fn command<T: Transport>(
    conn: &mut T,
    m: &Outbox,
    ctx: &Context,
    msg: ClientMsg,
) -> Option<HistoryLoad> {
    let hub = &ctx.hub;
    if hub.is_clustered() {
        // Rooms are not shared between nodes yet (CLUSTER.md): refused in words, never
        // half-working. Commands on #lobby (its names; the rest answered as on one node) and
        // away messages work; the list of rooms is empty.
        if matches!(msg, ClientMsg::List { .. }) {
            conn.queue_msg(&ServerMsg::Rooms {
                rooms: Vec::new(),
                next: String::new(),
            });
            return None;
        }
        let lobby = command_room(&msg).is_some_and(is_lobby);
        if !lobby && !matches!(msg, ClientMsg::Away { .. }) {
            let room = command_room(&msg).unwrap_or_default().to_owned();
            conn.queue_msg(&refusal(&room, &RoomError::NotOnCluster));
            return None;
        }
    }
    let (room, result) = match msg {
        ClientMsg::Join { room } => {
            match valid(&room).and_then(|()| hub.join_room(m.conn_id, &m.nick, &room)) {
                Ok(Joining::Done) => return None,
                Ok(Joining::Loading(load)) => return Some(load),
                Err(e) => (room, Err(e)),
            }
        }
        ClientMsg::Part { room, reason } => {
            let r = valid(&room)
                .and_then(|()| words(&reason, "reason"))
                .and_then(|()| hub.part_room(m.conn_id, &m.nick, &room, &reason));
            (room, r)
        }
        ClientMsg::List { after } => {
            conn.queue_msg(&hub.list_rooms(&m.nick, &after));
            return None;
        }
        ClientMsg::Names { room } => match valid(&room).and_then(|()| hub.names(&m.nick, &room)) {
            Ok(pages) => {
                for page in pages {
                    conn.queue_msg(&page);
                }
                return None;
            }
            Err(e) => (room, Err(e)),
        },
        ClientMsg::Topic { room, topic } => {
            let r = valid(&room).and_then(|()| hub.topic(m.conn_id, &m.nick, &room, topic));
            (room, r)
        }
        ClientMsg::Invite { room, nick } => {
            let r = valid(&room)
                .and_then(|()| user(&nick))
                .and_then(|()| hub.invite(m.conn_id, &m.nick, &room, &nick));
            (room, r)
        }
        ClientMsg::Kick { room, nick, reason } => {
            let r = valid(&room)
                .and_then(|()| user(&nick))
                .and_then(|()| words(&reason, "reason"))
                .and_then(|()| hub.kick(m.conn_id, &m.nick, &room, &nick, &reason));
            (room, r)
        }
        ClientMsg::Member { room, nick, change } => {
            let r = valid(&room)
                .and_then(|()| user(&nick))
                .and_then(|()| hub.member_change(m.conn_id, &m.nick, &room, &nick, change));
            (room, r)
        }
        ClientMsg::Mode { room, mode, on } => {
            let r = valid(&room).and_then(|()| hub.set_mode(m.conn_id, &m.nick, &room, mode, on));
            (room, r)
        }
        ClientMsg::Away { message } => (String::new(), hub.away(m.conn_id, &m.nick, message)),
        _ => return None,
    };
    if let Err(e) = result {
        conn.queue_msg(&refusal(&room, &e));
    }
    None
}

/// Completes a join whose room history the store was asked for, once it answered (`lines`):
/// `Entered`, members and history go to the outbox; a store that did not answer is told to
/// the client as a `RoomError` (`busy`: join again).
pub(super) fn complete<T: Transport>(
    conn: &mut T,
    m: &Outbox,
    ctx: &Context,
    load: HistoryLoad,
    lines: Result<Vec<Line>, StoreError>,
    names: bool,
) {
    let room = ctx.hub.room_name(load.room).unwrap_or_default();
    if let Err(e) = ctx
        .hub
        .complete_join(m.conn_id, &m.nick, load, lines, names)
    {
        conn.queue_msg(&refusal(&room, &e));
    }
}

/// The store's answer to a history load, within [`STORE_TIMEOUT`].
pub(super) async fn loaded(load: &mut HistoryLoad) -> Result<Vec<Line>, StoreError> {
    match tokio::time::timeout(STORE_TIMEOUT, &mut load.reply).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(StoreError::Closed),
        Err(_) => Err(StoreError::Busy),
    }
}

/// The room a room command names (`Away` names none: ""), or `None` for other messages.
pub(super) fn command_room(msg: &ClientMsg) -> Option<&str> {
    match msg {
        ClientMsg::Join { room }
        | ClientMsg::Part { room, .. }
        | ClientMsg::Names { room }
        | ClientMsg::Topic { room, .. }
        | ClientMsg::Invite { room, .. }
        | ClientMsg::Kick { room, .. }
        | ClientMsg::Member { room, .. }
        | ClientMsg::Mode { room, .. } => Some(room),
        ClientMsg::List { .. } | ClientMsg::Away { .. } => Some(""),
        _ => None,
    }
}

/// The `RoomError` message; the room name echoed only when it is a valid one (what a client
/// shows must be safe to show).
fn refusal(room: &str, e: &RoomError) -> ServerMsg {
    let shown = if validate_room(room).is_ok() {
        room
    } else {
        ""
    };
    e.message(shown)
}

fn valid(room: &str) -> Result<(), RoomError> {
    validate_room(room).map_err(|e| RoomError::BadName(e.to_string()))
}

fn user(nick: &str) -> Result<(), RoomError> {
    validate_nick(nick).map_err(|_| RoomError::NoSuchNick)
}

fn words(text: &str, what: &str) -> Result<(), RoomError> {
    crate::hub::check_words(text, MAX_REASON_LEN, what)
}
