//! Accepting messages: public lines (to the room, its history and the store), private lines
//! (to the recipient's mailbox in the store, and their outbox when online), relayed end-to-end
//! payloads (the same way), and the acknowledgements that take personal lines out of the mailbox.

use std::collections::VecDeque;

use bytes::Bytes;
use mm_common::frame;
use mm_common::protocol::{is_lobby, nick_key, ServerMsg, LOBBY};

use super::topic::{RoomId, Topic};
use super::{history, Hub, State};
use crate::store::{Arrival, Body, Line, Mail, QueueOutcome, Reply, StoreError};

/// How stale a room's stored last-activity time may get (ms): an hour, against expiry counted
/// in days.
pub(super) const ACTIVE_EVERY_MS: u64 = 3_600_000;

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The recipient is not online.
    #[error("{0} is not online")]
    NoSuchNick(String),
    /// The recipient could not keep up and was disconnected; the message was not delivered.
    #[error("{0} could not keep up and was disconnected; message not delivered")]
    RecipientTooSlow(String),
    /// The server is shutting down.
    #[error("server is shutting down")]
    Closed,
    /// No room by that name (the name, as valid room names are: safe to show).
    #[error("there is no room {0}")]
    NoSuchRoom(String),
    /// The sender is not a member of the room (named).
    #[error("you are not in {0}: /join it first")]
    NotInRoom(String),
    /// The room (named) is moderated and the sender is neither operator nor voiced.
    #[error("{0} is moderated: only its operators and voiced members speak")]
    Moderated(String),
    /// The sending connection was replaced by a newer login of the same account (the line
    /// crossed the replacement; the old connection is about to be told and closed).
    #[error("this connection was replaced by a newer login of the same account; not sent")]
    Replaced,
    /// The store cannot take more work right now; the message was not accepted.
    #[error("the server is busy; try again")]
    Busy,
    /// The message could not be encoded (a bug: inputs are validated first).
    #[error("message could not be encoded")]
    Encode,
}

/// What became of a line handed to [`Hub::say`].
#[derive(Debug)]
pub enum Sent {
    /// Accepted now: its id and time, and the store's answer on keeping it.
    Now(Accepted, Reply<()>),
    /// Proposed to the cluster's stream: the answer comes once the stream ordered it and this
    /// node applied it (CLUSTER.md).
    Ordering(tokio::sync::oneshot::Receiver<super::Settled>),
}

/// An accepted message's id and server timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Message id.
    pub id: u64,
    /// Server time, ms since the Unix epoch.
    pub ts: u64,
}

/// Where a private line went. Either way it was handed to the recipient's mailbox in the store,
/// whose reply says once it is durable (or why it was not kept); answer the sender only then.
#[derive(Debug)]
pub enum PrivateOutcome {
    /// Into the online recipient's outbox too (answer `Sent`).
    Delivered(Accepted, Reply<QueueOutcome>),
    /// The recipient is offline, or was just dropped as too slow (answer `Queued`).
    Stored(Accepted, Reply<QueueOutcome>),
    /// Proposed to the cluster's stream: which of the two it is comes once the stream ordered
    /// it and this node applied it (CLUSTER.md).
    Ordering(tokio::sync::oneshot::Receiver<super::Settled>),
}

impl Hub {
    /// [`Hub::publish`] on one node; on a node of several, proposes the line to the stream
    /// ([`Sent::Ordering`]): whether its sender may speak in the room is decided once the
    /// stream ordered it. Errors as [`Hub::publish`].
    ///
    /// # Errors
    /// As above.
    pub fn say(
        &self,
        conn_id: u64,
        from: &str,
        room: &str,
        text: String,
        action: bool,
    ) -> Result<Sent, SendError> {
        if !self.shared.clustered {
            return self
                .publish(conn_id, from, room, text, action)
                .map(|(accepted, durable)| Sent::Now(accepted, durable));
        }
        let mut state = self.lock();
        admissible(&state, conn_id, from)?;
        if !is_lobby(room) && state.rooms.id_of(room).is_none() {
            return Err(SendError::NoSuchRoom(room.to_owned())); // membership: once ordered
        }
        match Self::propose_line(&mut state, conn_id, from, room, text, action) {
            Some(proposed) => proposed.map(Sent::Ordering),
            None => Err(SendError::Closed),
        }
    }

    /// Sends a line to everyone in room `room` but its sender and adds it to the room's
    /// history (memory and store). `text` must already be validated. The reply says when the
    /// line is durable: acknowledge it to the sender only then.
    ///
    /// # Errors
    /// [`SendError::Closed`] when shutting down; [`SendError::Replaced`] when a newer login of
    /// `from` replaced connection `conn_id`; [`SendError::NoSuchRoom`], [`SendError::NotInRoom`],
    /// [`SendError::Moderated`]; [`SendError::Busy`] when the store cannot take it (then
    /// nobody receives it: what is accepted is also stored).
    pub fn publish(
        &self,
        conn_id: u64,
        from: &str,
        room: &str,
        text: String,
        action: bool,
    ) -> Result<(Accepted, Reply<()>), SendError> {
        let mut state = self.lock();
        let (id, room) = if is_lobby(room) {
            (RoomId::LOBBY, LOBBY.to_owned())
        } else {
            let gone = || SendError::NoSuchRoom(room.to_owned());
            let id = state.rooms.id_of(room).ok_or_else(gone)?;
            let r = state.rooms.get(id).ok_or_else(gone)?;
            let role = r
                .role(&nick_key(from))
                .ok_or_else(|| SendError::NotInRoom(r.name.clone()))?;
            if r.modes.moderated && !role.is_voiced() {
                return Err(SendError::Moderated(r.name.clone()));
            }
            (id, r.name.clone())
        };
        let topic = Topic::Room(id);
        let accepted = accept(&mut state, conn_id, from, &topic)?;
        let msg = ServerMsg::Public {
            room,
            action,
            id: accepted.id,
            ts: accepted.ts,
            from: from.to_owned(),
            text,
        };
        let encoded = frame::encode_message(&msg).map_err(|_| SendError::Encode)?;
        // The message's strings move on into the store's line: one allocation each.
        let ServerMsg::Public {
            room: name,
            from,
            text,
            ..
        } = msg
        else {
            return Err(SendError::Encode);
        };
        let line = Line {
            room: id,
            action,
            id: accepted.id,
            ts: accepted.ts,
            from,
            text,
        };
        let kept = if id == RoomId::LOBBY {
            state.history.is_kept()
        } else {
            self.shared.room_limits.history_len > 0
        };
        let history = if kept {
            Some(history::encode(&line, name).ok_or(SendError::Encode)?)
        } else {
            None
        };
        let durable = self
            .shared
            .store
            .append_public(line)
            .map_err(refused_by_store)?;
        if id == RoomId::LOBBY {
            if let Some(history) = history {
                state.history.push(history);
            }
        } else if let Some(r) = state.rooms.get_mut(id) {
            r.last_line = accepted.id;
            if let Some(history) = history {
                let len = self.shared.room_limits.history_len;
                state.rooms.push_line(id, accepted.id, history, len);
            }
            let Some(r) = state.rooms.get_mut(id) else {
                return Err(SendError::NoSuchRoom(String::new())); // found above, under the lock
            };
            // The store learns of activity at most hourly (it decides when an empty room
            // expires): not a write per line.
            if accepted.ts.saturating_sub(r.stored_active_ms) >= ACTIVE_EVERY_MS
                && self
                    .shared
                    .store
                    .room(crate::store::RoomChange::Active(id, accepted.ts))
                    .is_ok()
            {
                r.stored_active_ms = accepted.ts;
            }
            r.active_ms = accepted.ts;
        }
        state.publish(&topic, &encoded, Some(conn_id));
        Ok((accepted, durable))
    }

    /// Sends a private line to `to` (any case): into their mailbox in the store until their
    /// client acknowledges it, and into their outbox as well when they are online. `text` must
    /// already be validated.
    ///
    /// # Errors
    /// As [`Hub::publish`]: [`SendError::Closed`], [`SendError::Replaced`], [`SendError::Busy`]
    /// (then nobody receives it).
    pub fn send_private(
        &self,
        conn_id: u64,
        from: &str,
        to: &str,
        text: String,
    ) -> Result<PrivateOutcome, SendError> {
        self.send_personal(conn_id, from, to, Body::Text(text))
    }

    /// Relays an opaque payload (end-to-end data) to `to`, stamped with the sender's nick,
    /// exactly as [`Hub::send_private`] sends a line: into their mailbox in the store until
    /// their client acknowledges it, and into their outbox as well when they are online. An
    /// offline recipient gets it at their next login (as `Relay`, with the same id); the
    /// store's reply says whether it was kept (an unregistered recipient, a full mailbox).
    ///
    /// # Errors
    /// As [`Hub::send_private`].
    pub fn relay(
        &self,
        conn_id: u64,
        from: &str,
        to: &str,
        payload: Vec<u8>,
    ) -> Result<PrivateOutcome, SendError> {
        let payload = match &self.shared.relay_hook {
            Some(hook) => hook(from, to, payload),
            None => payload,
        };
        self.send_personal(conn_id, from, to, Body::Relay(payload))
    }

    /// [`Hub::send_private`] and [`Hub::relay`]: `body` into `to`'s mailbox, and to their
    /// outbox when they are online (as `Private` or `Relay`). A recipient dropped as too slow,
    /// or whose session is ending, gets it at their next login like one who is offline.
    fn send_personal(
        &self,
        conn_id: u64,
        from: &str,
        to: &str,
        body: Body,
    ) -> Result<PrivateOutcome, SendError> {
        let key = nick_key(to);
        let topic = Topic::user(&key);
        let mut state = self.lock();
        if self.shared.clustered {
            admissible(&state, conn_id, from)?;
            return match Self::propose_personal(&mut state, conn_id, from, to, body) {
                Some(proposed) => proposed.map(PrivateOutcome::Ordering),
                None => Err(SendError::Closed),
            };
        }
        let accepted = accept(&mut state, conn_id, from, &topic)?;
        let (id, ts) = (accepted.id, accepted.ts);
        if !state.peers.contains_key(&key) {
            let mail = Mail {
                id,
                ts,
                from: from.to_owned(),
                body,
            };
            let reply = self
                .shared
                .store
                .queue_mail(&key, mail, Arrival::Offline)
                .map_err(refused_by_store)?;
            return Ok(PrivateOutcome::Stored(accepted, reply));
        }
        let from = from.to_owned();
        let msg = match body {
            Body::Text(text) => ServerMsg::Private { id, ts, from, text },
            Body::Relay(payload) => ServerMsg::Relay {
                id,
                ts,
                from,
                payload,
            },
        };
        let encoded = frame::encode_message(&msg).map_err(|_| SendError::Encode)?;
        // The strings and payload move on into the mailbox entry: no copy of up to 16 KiB.
        let (from, body) = match msg {
            ServerMsg::Private { from, text, .. } => (from, Body::Text(text)),
            ServerMsg::Relay { from, payload, .. } => (from, Body::Relay(payload)),
            _ => return Err(SendError::Encode),
        };
        let mail = Mail { id, ts, from, body };
        match self.deliver_live(&mut state, &key, mail, &encoded)? {
            (true, reply) => Ok(PrivateOutcome::Delivered(accepted, reply)),
            (false, reply) => Ok(PrivateOutcome::Stored(accepted, reply)),
        }
    }

    /// Hands `mail` to the online user `key`'s mailbox, then publishes the message `encoded`
    /// to them. Returns whether it reached their outbox (false: they were dropped as too slow,
    /// or their session is ending; it then waits in the mailbox for their next login).
    fn deliver_live(
        &self,
        state: &mut State,
        key: &str,
        mail: Mail,
        encoded: &Bytes,
    ) -> Result<(bool, Reply<QueueOutcome>), SendError> {
        let id = mail.id;
        // Stored first: if the store refuses, nobody receives it.
        let reply = self
            .shared
            .store
            .queue_mail(key, mail, Arrival::Live)
            .map_err(refused_by_store)?;
        Ok((state.deliver_personal(key, id, encoded), reply))
    }

    /// The login of connection `conn_id` (logged in as `nick`) handed it these mailbox lines
    /// (`ids`, increasing); `complete` says whether that was the whole mailbox.
    pub fn fetched(&self, conn_id: u64, nick: &str, ids: &[u64], complete: bool) {
        let mut state = self.lock();
        if let Some(peer) = state.peers.get_mut(&nick_key(nick)) {
            if peer.conn_id == conn_id {
                peer.fetched = ids.iter().copied().collect();
                if !complete {
                    peer.ack_ceiling = Some(ids.last().copied().unwrap_or(0));
                }
            }
        }
    }

    /// The client of connection `conn_id` (logged in as `nick`) acknowledged every personal
    /// line up to id `up_to`: the lines this connection was given up to there leave the
    /// mailbox. Acknowledgements from a connection that no longer holds the nick are ignored
    /// (its successor is given the lines again). Returns whether it acknowledged at least one
    /// line given to this connection and not acknowledged before: repeats and guesses cost no
    /// store work, and a client that keeps sending them is flooding.
    pub fn received(&self, conn_id: u64, nick: &str, up_to: u64) -> bool {
        let key = nick_key(nick);
        let mut state = self.lock();
        let clustered = state.cluster.is_some();
        let Some(peer) = state.peers.get_mut(&key) else {
            return false;
        };
        if peer.conn_id != conn_id {
            return false;
        }
        let up_to = peer.ack_ceiling.map_or(up_to, |c| up_to.min(c));
        // The highest given id covered: acknowledging ids never given deletes nothing.
        let covered = |q: &VecDeque<u64>| q.iter().take_while(|&&id| id <= up_to).last().copied();
        let Some(highest) = covered(&peer.unacked).or_else(|| covered(&peer.fetched)) else {
            return false;
        };
        // Under the lock: the store deletes after it stored every line up to `highest`. On a
        // cluster only the lines given here leave (one stored late by another node was not).
        let given: Vec<u64> = if clustered {
            let mut ids: Vec<u64> = peer
                .fetched
                .iter()
                .chain(peer.unacked.iter())
                .copied()
                .filter(|&id| id <= highest)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        } else {
            Vec::new()
        };
        if let Err(e) = self.shared.store.delivered_given(&key, highest, given) {
            // Not deleted (the store is failing or behind): kept as unacknowledged, so the
            // client's next acknowledgement (it sends one when it quits) tries again; failing
            // that, the lines come again at the next login, where the client drops repeats.
            tracing::debug!(error = %e, "acknowledged lines not deleted yet");
            return false;
        }
        for q in [&mut peer.fetched, &mut peer.unacked] {
            while q.front().is_some_and(|&id| id <= highest) {
                q.pop_front();
            }
        }
        true
    }
}

/// A store refusal as the sender learns it.
fn refused_by_store(e: StoreError) -> SendError {
    match e {
        StoreError::Closed => SendError::Closed,
        _ => SendError::Busy,
    }
}

/// Accepts a message from connection `conn_id` of `from` for `topic`: its id and the time,
/// unless the hub is closed, a newer login of `from` replaced that connection, or no id may be
/// given out yet (see `ids`).
fn accept(
    state: &mut State,
    conn_id: u64,
    from: &str,
    topic: &Topic,
) -> Result<Accepted, SendError> {
    admissible(state, conn_id, from)?;
    let id = state.ids.next(topic).ok_or(SendError::Busy)?;
    Ok(Accepted {
        id,
        ts: state.clock.now_ms(),
    })
}

/// Whether connection `conn_id` of `from` may send now: not when the hub is closed, nor when a
/// newer login of `from` replaced it.
fn admissible(state: &State, conn_id: u64, from: &str) -> Result<(), SendError> {
    if state.closed {
        return Err(SendError::Closed);
    }
    if state
        .peers
        .get(&nick_key(from))
        .is_some_and(|p| p.conn_id != conn_id)
    {
        return Err(SendError::Replaced);
    }
    Ok(())
}
