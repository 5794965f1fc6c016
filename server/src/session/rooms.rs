//! Room commands from a logged-in client (`Join` … `Away`): each checked here for what the
//! session can check alone (room names, lengths), then handed to the hub, which answers into
//! the user's outbox; a refusal is sent at once as a `RoomError` (never fatal).

use mm_common::protocol::{
    is_lobby, validate_nick, validate_room, ClientMsg, ServerMsg, MAX_REASON_LEN,
};

use super::answers::BUS_TIMEOUT;
use super::context::{Context, STORE_TIMEOUT};
use crate::cluster::event::RoomCmd;
use crate::hub::{HistoryLoad, Joining, Outbox, RoomError, RoomSettled};
use crate::store::{Line, StoreError};
use crate::transport::Transport;

/// What a session waits for after a room command: a room's history from the store (a join,
/// or a login's entry into a room), or — on a node of several — the command's outcome once
/// the cluster's stream ordered it and every node ran it (CLUSTER.md, "Rooms").
pub(crate) enum RoomWait {
    /// Complete with [`complete`] once the store answers.
    Load(HistoryLoad),
    /// A command proposed to the stream: answered as on one node once ordered.
    Ordering {
        /// The room it names (for a refusal).
        room: String,
        /// Its outcome.
        reply: tokio::sync::oneshot::Receiver<RoomSettled>,
        /// When to stop waiting ([`BUS_TIMEOUT`]): told [`RoomError::Unanswered`].
        deadline: tokio::time::Instant,
    },
}

/// What the first of a session's [`RoomWait`]s came to.
pub(crate) enum RoomWaited {
    /// The store answered a history load.
    Loaded(HistoryLoad, Result<Vec<Line>, StoreError>),
    /// A command the stream ordered was run: its outcome.
    Settled(String, Result<Joining, RoomError>),
}

/// Handles one room command. Answers go to the outbox (through the hub, in its order) or, for
/// lists and refusals, straight onto the transport. A join whose room's history must be read
/// from the store, or a command proposed to the cluster's stream, returns its [`RoomWait`].
pub(super) fn command<T: Transport>(
    conn: &mut T,
    m: &Outbox,
    ctx: &Context,
    msg: ClientMsg,
) -> Option<RoomWait> {
    let hub = &ctx.hub;
    if hub.is_clustered() {
        if let Some(cmd) = cluster_command(&msg) {
            let room = command_room(&msg).unwrap_or_default().to_owned();
            let checked = match &msg {
                ClientMsg::Part { reason, .. } | ClientMsg::Kick { reason, .. } => {
                    words(reason, "reason")
                }
                ClientMsg::Topic {
                    topic: Some(topic), ..
                } => crate::hub::check_words(
                    topic,
                    mm_common::protocol::MAX_TOPIC_LEN.min(ctx.limits.max_topic_len),
                    "topic",
                ),
                _ => Ok(()),
            };
            let result = valid(&room)
                .and_then(|()| match &msg {
                    ClientMsg::Invite { nick, .. }
                    | ClientMsg::Kick { nick, .. }
                    | ClientMsg::Member { nick, .. } => user(nick),
                    _ => Ok(()),
                })
                .and(checked)
                .and_then(|()| hub.room_command(m.conn_id, &m.nick, cmd));
            return match result {
                Ok(Joining::Ordering(reply)) => Some(RoomWait::Ordering {
                    room,
                    reply,
                    deadline: tokio::time::Instant::now() + BUS_TIMEOUT,
                }),
                Ok(Joining::Loading(load)) => Some(RoomWait::Load(load)),
                Ok(Joining::Done) => None,
                Err(e) => {
                    conn.queue_msg(&refusal(&room, &e));
                    None
                }
            };
        }
    }
    let (room, result) = match msg {
        ClientMsg::Join { room } => {
            match valid(&room).and_then(|()| hub.join_room(m.conn_id, &m.nick, &room)) {
                Ok(Joining::Done) => return None,
                Ok(Joining::Loading(load)) => return Some(RoomWait::Load(load)),
                Ok(Joining::Ordering(reply)) => {
                    return Some(RoomWait::Ordering {
                        room,
                        reply,
                        deadline: tokio::time::Instant::now() + BUS_TIMEOUT,
                    })
                }
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

/// The stream's form of a room command that changes a room other than the lobby (on a node
/// of several these are ordered by the cluster's stream); `None` for the rest (lists, names,
/// asking a topic, away, and every command on `#lobby`: answered by this node alone).
fn cluster_command(msg: &ClientMsg) -> Option<RoomCmd> {
    if command_room(msg).is_none_or(|room| room.is_empty() || is_lobby(room)) {
        return None;
    }
    Some(match msg.clone() {
        ClientMsg::Join { room } => RoomCmd::Join { room },
        ClientMsg::Part { room, reason } => RoomCmd::Part { room, reason },
        ClientMsg::Topic {
            room,
            topic: Some(topic),
        } => RoomCmd::Topic { room, topic },
        ClientMsg::Invite { room, nick } => RoomCmd::Invite { room, nick },
        ClientMsg::Kick { room, nick, reason } => RoomCmd::Kick { room, nick, reason },
        ClientMsg::Member { room, nick, change } => RoomCmd::Member { room, nick, change },
        ClientMsg::Mode { room, mode, on } => RoomCmd::Mode { room, mode, on },
        _ => return None,
    })
}

/// Waits for the first of `waits` (never ready when there is none: `select!` builds this
/// future even when its branch is disabled) and takes it.
pub(super) async fn next_waited(waits: &mut std::collections::VecDeque<RoomWait>) -> RoomWaited {
    let waited = match waits.front_mut() {
        Some(RoomWait::Load(load)) => Err(loaded(load).await),
        Some(RoomWait::Ordering {
            reply, deadline, ..
        }) => Ok(match tokio::time::timeout_at(*deadline, reply).await {
            Ok(Ok(settled)) => settled,
            Ok(Err(_)) => Err(RoomError::Closed),
            Err(_) => Err(RoomError::Unanswered),
        }),
        None => std::future::pending().await,
    };
    match (waits.pop_front(), waited) {
        (Some(RoomWait::Load(load)), Err(lines)) => RoomWaited::Loaded(load, lines),
        (Some(RoomWait::Ordering { room, .. }), Ok(settled)) => RoomWaited::Settled(room, settled),
        _ => RoomWaited::Settled(String::new(), Err(RoomError::Closed)),
    }
}

/// Acts on what [`next_waited`] took: completes a join, answers a command the stream ordered
/// (a refusal; a join's history may still have to be loaded: queued at the front of `waits`).
pub(super) fn waited<T: Transport>(
    conn: &mut T,
    m: &Outbox,
    ctx: &Context,
    waits: &mut std::collections::VecDeque<RoomWait>,
    done: RoomWaited,
) {
    match done {
        RoomWaited::Loaded(load, lines) => complete(conn, m, ctx, load, lines, true),
        RoomWaited::Settled(_, Ok(Joining::Loading(load))) => {
            waits.push_front(RoomWait::Load(load))
        }
        RoomWaited::Settled(_, Ok(_)) => {}
        RoomWaited::Settled(room, Err(e)) => conn.queue_msg(&refusal(&room, &e)),
    }
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
