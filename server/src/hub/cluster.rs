//! The hub on one node of several (CLUSTER.md): lines are not given ids and delivered when
//! accepted, but *proposed* to the stream; every node, this one included, applies the stream
//! in its one order ([`Hub::apply`]), which gives each line its id and delivers it. The node
//! that accepted a line also stores it then, and its sender's answer follows the store.
//!
//! Presence: logins and logouts of this node's users are proposed too; the users of other
//! nodes are kept in [`ClusterState::remote`], so `/who`, join and leave notices and "sent or
//! queued" cover every node.

use std::collections::HashMap;

use bytes::Bytes;
use mm_common::frame;
use mm_common::protocol::{is_lobby, nick_key, LeaveReason, ServerMsg, LOBBY};
use tokio::sync::{mpsc, oneshot};

use super::messages::{Accepted, SendError};
use super::rooms::{Act, Joining, RoomError};
use super::topic::{RoomId, Topic};
use super::{history, Hub, State};
use crate::cluster::event::{self, Event, Origin, PersonalBody, RoomCmd};
use crate::store::{Arrival, Body, Line, Mail, QueueOutcome, Reply, RoomChange, StoreError};

/// A proposal on its way to the stream: its deduplication id (`Nats-Msg-Id`) and the encoded
/// [`Event`].
#[derive(Debug)]
pub struct Proposal {
    /// `Nats-Msg-Id`: the origin's epoch and proposal number.
    pub msg_id: String,
    /// The encoded event.
    pub bytes: Bytes,
    /// How many times it was sent to the stream (the publisher's count).
    pub attempts: u32,
}

/// How a hub joins the others: this node's epoch, where its proposals go, and the id of the
/// stream's sequence 0 (a line's id is `base + sequence`).
#[derive(Debug)]
pub struct ClusterSetup {
    /// This node's epoch (fencing token, unique per start).
    pub epoch: i64,
    /// Where proposals go (the publisher task): bounded; full means busy.
    pub proposals: mpsc::Sender<Proposal>,
    /// A line's id is `base + stream sequence`.
    pub base: u64,
}

/// What a proposed line became once the stream ordered it and this node applied it.
#[derive(Debug)]
pub enum Ordered {
    /// A lobby line: its id and time, and the store's answer on keeping it in the history.
    Public(Accepted, Reply<()>),
    /// A personal line: its id and time, whether its recipient was online on some node, and
    /// the store's answer on keeping it in their mailbox.
    Mail(Accepted, bool, Reply<QueueOutcome>),
}

/// The answer to a proposal: [`Ordered`], or why it was not taken.
pub type Settled = Result<Ordered, SendError>;

/// Most nodes whose newest proposal number a node keeps before it forgets those not live.
const MAX_ORIGINS: usize = 4096;

/// How many room lines of other nodes a node keeps for [`Hub::lines_of`] (a dead node's lines
/// not yet stored are among the newest: it stores within a second of ordering).
pub const RECENT_LINES: usize = 4096;

/// The answer to a proposed room command, once every node runs it: as on one node.
pub type RoomSettled = Result<Joining, RoomError>;

/// A user online on another node.
#[derive(Debug, Clone)]
pub(super) struct Remote {
    nick: String,
    epoch: i64,
    /// Their away message, if away.
    away: Option<String>,
}

impl Remote {
    /// Whether they are away.
    pub(super) fn is_away(&self) -> bool {
        self.away.is_some()
    }
}

/// The hub's cluster state (behind the hub's lock).
#[derive(Debug)]
pub(super) struct ClusterState {
    epoch: i64,
    proposals: mpsc::Sender<Proposal>,
    base: u64,
    /// The last proposal number given out.
    next_n: u64,
    /// Proposals of this node's sessions waiting for the stream, by number.
    pending: HashMap<u64, oneshot::Sender<Settled>>,
    /// Room commands of this node's sessions waiting for the stream, by number.
    room_pending: HashMap<u64, oneshot::Sender<RoomSettled>>,
    /// Those of them that took a room creation from their user's allowance (a join of a
    /// room that did not exist here): given back if the join does not create it.
    creations: HashMap<u64, String>,
    /// While a room command the stream ordered is run: the store changes it makes, stored
    /// together with its id ([`RoomChange::Ordered`]).
    pub(super) room_changes: Option<Vec<RoomChange>>,
    /// Room lines of other nodes this node accepted, oldest first, at most [`RECENT_LINES`]:
    /// those a node that dies had not stored are stored by the node that sweeps it
    /// ([`Hub::lines_of`]).
    foreign_lines: std::collections::VecDeque<(i64, Line)>,
    /// The highest id whose room changes were handed to the store: told to it now and then
    /// (an empty [`RoomChange::Ordered`]), so that a node starting later knows where the
    /// rooms it loads stand in the stream.
    rooms_told: u64,
    /// Users online on other nodes, by nick key.
    pub(super) remote: HashMap<String, Remote>,
    /// The newest proposal number applied of each node (by epoch): a proposal of a node
    /// ordered after a later one of the same node is refused ([`Hub::apply`]).
    origin_n: HashMap<i64, u64>,
    /// The highest id applied: a message applied again after a replay is skipped.
    last_id: u64,
    /// Ids up to here are recorded in the store (`reserve_ids`): a stream made again starts
    /// above them.
    recorded: u64,
}

impl ClusterState {
    pub(super) fn new(setup: ClusterSetup) -> ClusterState {
        ClusterState {
            epoch: setup.epoch,
            proposals: setup.proposals,
            base: setup.base,
            next_n: 0,
            pending: HashMap::new(),
            room_pending: HashMap::new(),
            creations: HashMap::new(),
            origin_n: HashMap::new(),
            room_changes: None,
            foreign_lines: std::collections::VecDeque::new(),
            rooms_told: 0,
            remote: HashMap::new(),
            last_id: 0,
            recorded: 0,
        }
    }

    /// Hands `event` (made with its origin) to the publisher; `None` if its queue is full.
    fn propose(&mut self, conn: u64, make: impl FnOnce(Origin) -> Event) -> Option<Origin> {
        self.next_n += 1;
        let origin = Origin {
            epoch: self.epoch,
            n: self.next_n,
            conn,
        };
        let bytes = match event::encode(&make(origin)) {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                tracing::error!(error = %e, "event could not be encoded");
                return None;
            }
        };
        let proposal = Proposal {
            msg_id: origin.msg_id(),
            bytes,
            attempts: 0,
        };
        self.proposals.try_send(proposal).ok().map(|()| origin)
    }

    /// Proposes a presence change of this node's user `nick` (best effort: a full queue is
    /// logged; the lease sweep corrects a missed logout).
    pub(super) fn tell_presence(&mut self, nick: &str, online: bool, reason: LeaveReason) {
        let epoch = self.epoch;
        let nick = nick.to_owned();
        let told = self.propose(0, |_| {
            if online {
                Event::Online { epoch, nick }
            } else {
                Event::Offline {
                    epoch,
                    nick,
                    reason,
                }
            }
        });
        if told.is_none() {
            tracing::warn!("presence change not told to the other nodes: the bus queue is full");
        }
    }

    /// Whether a room command the stream ordered is being run (its changes are collected).
    pub(super) fn applying(&self) -> bool {
        self.room_changes.is_some()
    }

    /// Whether `key` is online on another node.
    pub(super) fn is_remote(&self, key: &str) -> bool {
        self.remote.contains_key(key)
    }

    /// Proposes that this node's user `nick` is away with `message` (`None`: back). Best
    /// effort, as presence.
    pub(super) fn tell_away(&mut self, nick: &str, message: Option<String>) {
        let epoch = self.epoch;
        let nick = nick.to_owned();
        if self
            .propose(0, |_| Event::Away {
                epoch,
                nick,
                message,
            })
            .is_none()
        {
            tracing::warn!("away message not told to the other nodes: the bus queue is full");
        }
    }

    /// The away message of `key`, online on another node, with how they spell their nick.
    pub(super) fn remote_away(&self, key: &str) -> Option<(String, String)> {
        let r = self.remote.get(key)?;
        r.away.clone().map(|m| (r.nick.clone(), m))
    }
}

impl Hub {
    /// Whether this hub is one node of several.
    pub fn is_clustered(&self) -> bool {
        self.shared.clustered
    }

    /// Proposes a lobby line of connection `conn_id` (`from`) to the stream; the receiver
    /// answers once this node applied it (its id) — or why not. `None` when this hub is not
    /// clustered.
    pub(super) fn propose_line(
        state: &mut State,
        conn_id: u64,
        from: &str,
        room: &str,
        text: String,
        action: bool,
    ) -> Option<Result<oneshot::Receiver<Settled>, SendError>> {
        let (from, room) = (from.to_owned(), room.to_owned());
        Self::propose_awaited(
            state,
            conn_id,
            SendError::Busy,
            |c| &mut c.pending,
            |origin, ts| Event::Line {
                origin,
                room,
                action,
                from,
                text,
                ts,
            },
        )
    }

    /// Proposes the event `make` builds (from its origin and this node's time) for connection
    /// `conn_id`, and keeps the sender of its answer in the waiting map `pending` chooses;
    /// `busy` if the publisher's queue is full. `None` when this hub is not clustered.
    fn propose_awaited<T, E>(
        state: &mut State,
        conn_id: u64,
        busy: E,
        pending: impl FnOnce(&mut ClusterState) -> &mut HashMap<u64, oneshot::Sender<T>>,
        make: impl FnOnce(Origin, u64) -> Event,
    ) -> Option<Result<oneshot::Receiver<T>, E>> {
        let ts = state.clock.now_ms();
        let cluster = state.cluster.as_mut()?;
        let (tx, rx) = oneshot::channel();
        let Some(origin) = cluster.propose(conn_id, |origin| make(origin, ts)) else {
            return Some(Err(busy));
        };
        pending(cluster).insert(origin.n, tx);
        Some(Ok(rx))
    }

    /// Proposes room command `cmd` of `from` (its connection `conn_id`; 0 and `from` empty:
    /// the server) to the stream; the receiver answers once this node ran it. `None` when this
    /// hub is not clustered.
    pub(super) fn propose_room(
        state: &mut State,
        conn_id: u64,
        from: &str,
        cmd: RoomCmd,
    ) -> Option<Result<oneshot::Receiver<RoomSettled>, RoomError>> {
        let from = from.to_owned();
        Self::propose_awaited(
            state,
            conn_id,
            RoomError::Busy,
            |c| &mut c.room_pending,
            |origin, ts| Event::Room {
                origin,
                from,
                cmd,
                ts,
            },
        )
    }

    /// A room command of connection `conn_id` of `nick` on a node of several: checked for
    /// what this node alone decides (the connection is current; the creation limit, a
    /// node's own) and proposed to the stream. Every node runs it once ordered; the answer
    /// is [`Joining::Ordering`]. On one node, [`RoomError::Closed`] (use the commands).
    ///
    /// # Errors
    /// Closed, busy (the bus queue is full), the creation limit.
    pub fn room_command(
        &self,
        conn_id: u64,
        nick: &str,
        cmd: RoomCmd,
    ) -> Result<Joining, RoomError> {
        let key = nick_key(nick);
        let mut state = self.lock();
        state.actor(conn_id, &key)?;
        let limits = self.shared.room_limits;
        let creating = matches!(&cmd, RoomCmd::Join { room } if state.rooms.id_of(room).is_none());
        if creating {
            let now_ms = state.clock.now_ms();
            state.take_creation(&key, &limits, now_ms)?;
        }
        match Self::propose_room(&mut state, conn_id, nick, cmd) {
            Some(Ok(rx)) => {
                if creating {
                    if let Some(cluster) = state.cluster.as_mut() {
                        cluster.creations.insert(cluster.next_n, key.clone());
                    }
                }
                Ok(Joining::Ordering(rx))
            }
            Some(Err(e)) => {
                if creating {
                    state.rooms.give_back_creation(&key, limits.creations);
                }
                Err(e)
            }
            None => Err(RoomError::Closed),
        }
    }

    /// Runs room command `cmd` of `from` that the stream ordered as `id` at `ts` (every node
    /// does, in stream order, with the same outcome), and hands its store changes to the
    /// store with `id`. The answer is for the proposing session, on the node that accepted
    /// it.
    fn apply_room(
        &self,
        state: &mut State,
        id: u64,
        from: &str,
        cmd: RoomCmd,
        ts: u64,
    ) -> RoomSettled {
        let Some(cluster) = state.cluster.as_mut() else {
            return Err(RoomError::Closed);
        };
        cluster.room_changes = Some(Vec::new());
        let act = Act {
            key: if from.is_empty() {
                String::new()
            } else {
                nick_key(from)
            },
            nick: from.to_owned(),
            now_ms: ts,
        };
        let server = act.key.is_empty();
        let done = |r: Result<(), RoomError>| r.map(|()| Joining::Done);
        let outcome = match cmd {
            _ if server && !matches!(cmd, RoomCmd::Delete { .. } | RoomCmd::SetOwner { .. }) => {
                Err(RoomError::NoSuchNick)
            }
            RoomCmd::Join { room } => self.join_in(state, &act, &room),
            RoomCmd::Part { room, reason } => done(self.part_in(state, &act, &room, &reason)),
            RoomCmd::Topic { room, topic } => done(self.topic_in(state, &act, &room, Some(topic))),
            RoomCmd::Invite { room, nick } => done(self.invite_in(state, &act, &room, &nick)),
            RoomCmd::Kick { room, nick, reason } => {
                done(self.kick_in(state, &act, &room, &nick, &reason))
            }
            RoomCmd::Member { room, nick, change } => {
                done(self.member_change_in(state, &act, &room, &nick, change))
            }
            RoomCmd::Mode { room, mode, on } => {
                done(self.set_mode_in(state, &act, &room, mode, on))
            }
            RoomCmd::Forget { reason } => {
                self.forget_memberships(state, from, &reason, ts);
                Ok(Joining::Done)
            }
            RoomCmd::Delete { room, reason, id } => {
                if id == 0 || state.rooms.id_of(&room) == Some(RoomId(id)) {
                    self.delete_in(state, &room, &reason, ts);
                }
                Ok(Joining::Done)
            }
            RoomCmd::SetOwner { room, nick } => {
                self.set_owner_in(state, &room, &nick, ts);
                Ok(Joining::Done)
            }
        };
        let changes = state
            .cluster
            .as_mut()
            .and_then(|c| c.room_changes.take())
            .unwrap_or_default();
        if !changes.is_empty() {
            self.tell_rooms(state, id, changes);
        }
        outcome
    }

    /// Hands the room changes up to `id` to the store (best effort: every node that applies
    /// the same events hands the same changes; one refusal here is covered by the others).
    fn tell_rooms(&self, state: &mut State, id: u64, changes: Vec<RoomChange>) {
        match self.shared.store.room(RoomChange::Ordered(id, changes)) {
            Ok(_) => {
                if let Some(c) = state.cluster.as_mut().filter(|c| c.rooms_told != u64::MAX) {
                    c.rooms_told = id;
                }
            }
            Err(e) => {
                // This node no longer tells the store where its rooms stand (that would
                // claim changes it did not store); the other nodes do.
                if let Some(c) = state.cluster.as_mut() {
                    c.rooms_told = u64::MAX;
                }
                tracing::warn!(error = %e, id, "room changes not handed to the store (other nodes store them)");
            }
        }
    }

    /// Tells the store that the room changes of every event this node applied are handed to
    /// it (an empty [`RoomChange::Ordered`]), if it applied any event since the last time:
    /// a node starting later reads the stream's room commands from there. Called every few
    /// seconds.
    pub fn tell_rooms_applied(&self) {
        let mut state = self.lock();
        let Some(cluster) = state.cluster.as_ref() else {
            return;
        };
        let (last, told) = (cluster.last_id, cluster.rooms_told);
        if told != u64::MAX && last > told {
            self.tell_rooms(&mut state, last, Vec::new());
        }
    }

    /// As [`Hub::propose_line`], for a private line or relayed payload to `to`.
    pub(super) fn propose_personal(
        state: &mut State,
        conn_id: u64,
        from: &str,
        to: &str,
        body: Body,
    ) -> Option<Result<oneshot::Receiver<Settled>, SendError>> {
        let (from, to) = (from.to_owned(), to.to_owned());
        let body = match body {
            Body::Text(t) => PersonalBody::Text(t),
            Body::Relay(p) => PersonalBody::Relay(p),
        };
        Self::propose_awaited(
            state,
            conn_id,
            SendError::Busy,
            |c| &mut c.pending,
            |origin, ts| Event::Personal {
                origin,
                to,
                from,
                body,
                ts,
            },
        )
    }

    /// Applies the stream's message `seq` (already decoded): on every node, in stream order.
    /// A message applied before (a replay after the bus reconnected) is skipped.
    pub fn apply(&self, seq: u64, event: Event) {
        let mut state = self.lock();
        let Some(cluster) = state.cluster.as_mut() else {
            return;
        };
        let id = cluster.base.saturating_add(seq);
        if id <= cluster.last_id {
            return;
        }
        cluster.last_id = id;
        if id.saturating_add(super::ids::BLOCK / 2) > cluster.recorded {
            // Best effort, never lowered: a stream made again starts above what was given out.
            let up_to = id.saturating_add(super::ids::BLOCK);
            if self.shared.store.reserve_ids(up_to).is_ok() {
                cluster.recorded = up_to;
            }
        }
        let epoch = cluster.epoch;
        let origin = match &event {
            Event::Line { origin, .. }
            | Event::Personal { origin, .. }
            | Event::Room { origin, .. } => Some(*origin),
            _ => None,
        };
        if let Some(origin) = origin {
            // A node proposes in order and the stream keeps that order, unless a proposal
            // whose acknowledgement was lost is sent again after later ones landed: then it is
            // refused on every node (the same decision everywhere: stream order), and its
            // sender told, rather than delivered out of its sender's order.
            let newest = cluster.origin_n.entry(origin.epoch).or_insert(0);
            if origin.n <= *newest {
                tracing::warn!(
                    epoch = origin.epoch,
                    n = origin.n,
                    "a proposal ordered after a later one of its node: refused everywhere"
                );
                if origin.epoch == epoch {
                    if let Some(tx) = cluster.pending.remove(&origin.n) {
                        let _ = tx.send(Err(SendError::Busy));
                    }
                    if let Some(tx) = cluster.room_pending.remove(&origin.n) {
                        let _ = tx.send(Err(RoomError::Busy));
                    }
                    if let Some(key) = cluster.creations.remove(&origin.n) {
                        let burst = self.shared.room_limits.creations;
                        state.rooms.give_back_creation(&key, burst);
                    }
                }
                return;
            }
            *newest = origin.n;
        }
        match event {
            Event::Line {
                origin,
                room,
                action,
                from,
                text,
                ts,
            } => {
                let waiting = (origin.epoch == epoch)
                    .then(|| cluster.pending.remove(&origin.n))
                    .flatten();
                let line = Line {
                    room: RoomId::LOBBY,
                    action,
                    id,
                    ts,
                    from,
                    text,
                };
                let mine = origin.epoch == epoch;
                if is_lobby(&room) {
                    self.apply_line(&mut state, line, origin, mine, waiting);
                } else {
                    self.apply_room_line(&mut state, &room, line, origin, mine, waiting);
                }
            }
            Event::Room {
                origin,
                from,
                cmd,
                ts,
            } => {
                let waiting = (origin.epoch == epoch)
                    .then(|| cluster.room_pending.remove(&origin.n))
                    .flatten();
                let took_creation =
                    origin.epoch == epoch && cluster.creations.remove(&origin.n).is_some();
                // A join that finds the room made meanwhile (by someone ordered first) creates
                // nothing: the creation it took from its user's allowance is given back.
                let made_before = match &cmd {
                    RoomCmd::Join { room } => state.rooms.id_of(room).is_some(),
                    _ => true,
                };
                let outcome = self.apply_room(&mut state, id, &from, cmd, ts);
                if took_creation && (made_before || outcome.is_err()) {
                    let burst = self.shared.room_limits.creations;
                    state.rooms.give_back_creation(&nick_key(&from), burst);
                }
                // Without a waiting session (it ended meanwhile) a member whose room history
                // was being loaded enters the room at its next login.
                if let Some(tx) = waiting {
                    let _ = tx.send(outcome);
                }
            }
            Event::Personal {
                origin,
                to,
                from,
                body,
                ts,
            } => {
                let waiting = (origin.epoch == epoch)
                    .then(|| cluster.pending.remove(&origin.n))
                    .flatten();
                let mail = Mail {
                    id,
                    ts,
                    from,
                    body: match body {
                        PersonalBody::Text(t) => Body::Text(t),
                        PersonalBody::Relay(p) => Body::Relay(p),
                    },
                };
                self.apply_personal(&mut state, &to, mail, origin.epoch == epoch, waiting);
            }
            Event::Online { epoch: node, nick } => {
                if node == epoch {
                    return; // this node told its own users when it happened
                }
                let key = nick_key(&nick);
                if state.peers.contains_key(&key) {
                    return; // a newer login here took it over meanwhile
                }
                let known = state.cluster.as_mut().and_then(|cluster| {
                    cluster.remote.insert(
                        key,
                        Remote {
                            nick: nick.clone(),
                            epoch: node,
                            away: None,
                        },
                    )
                });
                // A user who moved from one node to another is not announced again.
                if known.is_none() {
                    state.tell_local_presence(&nick, true, LeaveReason::Quit);
                }
            }
            Event::Away {
                epoch: node,
                nick,
                message,
            } => {
                if let Some(r) = cluster
                    .remote
                    .get_mut(&nick_key(&nick))
                    .filter(|r| r.epoch == node)
                {
                    r.away = message;
                }
            }
            Event::Offline {
                epoch: node,
                nick,
                reason,
            } => {
                let key = nick_key(&nick);
                // Every node moves the user's `seen` marks here, to the rooms' newest lines at
                // this point of the stream: the same marks on every node and in the store.
                let marks = state.mark_seen(&key);
                if !marks.is_empty() {
                    self.tell_rooms(&mut state, id, vec![RoomChange::Seen(marks)]);
                }
                let Some(cluster) = state.cluster.as_mut() else {
                    return;
                };
                let removed = cluster
                    .remote
                    .get(&key)
                    .is_some_and(|r| r.epoch == node)
                    .then(|| cluster.remote.remove(&key))
                    .flatten();
                if let Some(r) = removed {
                    state.tell_local_presence(&r.nick, false, reason);
                }
            }
        }
    }

    fn apply_line(
        &self,
        state: &mut State,
        line: Line,
        origin: Origin,
        mine: bool,
        waiting: Option<oneshot::Sender<Settled>>,
    ) {
        let msg = ServerMsg::Public {
            room: LOBBY.to_owned(),
            action: line.action,
            id: line.id,
            ts: line.ts,
            from: line.from.clone(),
            text: line.text.clone(),
        };
        let Ok(encoded) = frame::encode_message(&msg) else {
            tracing::error!(id = line.id, "a line from the stream could not be encoded");
            return;
        };
        if state.history.is_kept() {
            if let Some(h) = history::encode(&line, LOBBY.to_owned()) {
                state.history.push(h);
            }
        }
        let accepted = Accepted {
            id: line.id,
            ts: line.ts,
        };
        if mine {
            // Stored by the node that accepted it, whether or not its sender still waits: the
            // others have seen it, so the history must have it.
            let stored = self.shared.store.append_public(line);
            if let Some(tx) = waiting {
                let _ = tx.send(
                    stored
                        .map(|reply| Ordered::Public(accepted, reply))
                        .map_err(refused),
                );
            }
        }
        let skip = mine.then_some(origin.conn);
        state.publish(&Topic::Room(RoomId::LOBBY), &encoded, skip);
    }

    /// A line for room `room` (not the lobby) that the stream ordered: checked as on one node
    /// (the room exists, its sender is a member, and voiced if the room is moderated) against
    /// the room as every node has it at this point of the stream; then into the room's
    /// history and to its members here. The accepting node stores it and answers its sender.
    fn apply_room_line(
        &self,
        state: &mut State,
        room: &str,
        mut line: Line,
        origin: Origin,
        mine: bool,
        waiting: Option<oneshot::Sender<Settled>>,
    ) {
        let checked = state
            .rooms
            .id_of(room)
            .and_then(|id| state.rooms.get(id).map(|r| (id, r)))
            .ok_or_else(|| SendError::NoSuchRoom(room.to_owned()))
            .and_then(|(id, r)| {
                let role = r
                    .role(&nick_key(&line.from))
                    .ok_or_else(|| SendError::NotInRoom(r.name.clone()))?;
                if r.modes.moderated && !role.is_voiced() {
                    return Err(SendError::Moderated(r.name.clone()));
                }
                Ok((id, r.name.clone()))
            });
        let (room_id, name) = match checked {
            Ok(found) => found,
            Err(e) => {
                if let Some(tx) = waiting {
                    let _ = tx.send(Err(e));
                }
                return;
            }
        };
        line.room = room_id;
        let msg = ServerMsg::Public {
            room: name.clone(),
            action: line.action,
            id: line.id,
            ts: line.ts,
            from: line.from.clone(),
            text: line.text.clone(),
        };
        let Ok(encoded) = frame::encode_message(&msg) else {
            tracing::error!(id = line.id, "a line from the stream could not be encoded");
            return;
        };
        let len = self.shared.room_limits.history_len;
        if len > 0 {
            if let Some(h) = history::encode(&line, name) {
                state.rooms.push_line(room_id, line.id, h, len);
            }
        }
        let accepted = Accepted {
            id: line.id,
            ts: line.ts,
        };
        if let Some(r) = state.rooms.get_mut(room_id) {
            r.last_line = line.id;
            r.active_ms = line.ts;
            // The store learns of activity at most hourly, from the node that accepted a line.
            if mine
                && line.ts.saturating_sub(r.stored_active_ms) >= super::messages::ACTIVE_EVERY_MS
                && self
                    .shared
                    .store
                    .room(RoomChange::Active(room_id, line.ts))
                    .is_ok()
            {
                r.stored_active_ms = line.ts;
            }
        }
        if mine {
            let stored = self.shared.store.append_public(line);
            if let Some(tx) = waiting {
                let _ = tx.send(
                    stored
                        .map(|reply| Ordered::Public(accepted, reply))
                        .map_err(refused),
                );
            }
        } else if let Some(cluster) = state.cluster.as_mut() {
            if cluster.foreign_lines.len() >= RECENT_LINES {
                cluster.foreign_lines.pop_front();
            }
            cluster.foreign_lines.push_back((origin.epoch, line));
        }
        state.publish(&Topic::Room(room_id), &encoded, mine.then_some(origin.conn));
    }

    fn apply_personal(
        &self,
        state: &mut State,
        to: &str,
        mail: Mail,
        mine: bool,
        waiting: Option<oneshot::Sender<Settled>>,
    ) {
        let key = nick_key(to);
        let local = state.peers.contains_key(&key);
        let remote = state.cluster.as_ref().is_some_and(|c| c.is_remote(&key));
        let (id, ts) = (mail.id, mail.ts);
        let delivered = if local {
            let msg = match &mail.body {
                Body::Text(text) => ServerMsg::Private {
                    id,
                    ts,
                    from: mail.from.clone(),
                    text: text.clone(),
                },
                Body::Relay(payload) => ServerMsg::Relay {
                    id,
                    ts,
                    from: mail.from.clone(),
                    payload: payload.clone(),
                },
            };
            match frame::encode_message(&msg) {
                Ok(encoded) => state.deliver_personal(&key, id, &encoded),
                Err(_) => false,
            }
        } else {
            false
        };
        if !mine {
            return;
        }
        // Live: in an outbox here, or with its recipient online on another node (which
        // delivers it); the mailbox keeps it until acknowledged either way.
        let live = delivered || remote;
        let arrival = if live {
            Arrival::Live
        } else {
            Arrival::Offline
        };
        let stored = self.shared.store.queue_mail(&key, mail, arrival);
        if let Some(tx) = waiting {
            let _ = tx.send(
                stored
                    .map(|reply| Ordered::Mail(Accepted { id, ts }, live, reply))
                    .map_err(refused),
            );
        }
    }

    /// The room lines of the node of `epoch` (gone) among the last [`RECENT_LINES`] this node
    /// accepted from other nodes, oldest first; forgotten here.
    pub fn lines_of(&self, epoch: i64) -> Vec<Line> {
        let mut state = self.lock();
        let Some(cluster) = state.cluster.as_mut() else {
            return Vec::new();
        };
        let (theirs, others): (Vec<_>, Vec<_>) = cluster
            .foreign_lines
            .drain(..)
            .partition(|(e, _)| *e == epoch);
        cluster.foreign_lines.extend(others);
        theirs.into_iter().map(|(_, line)| line).collect()
    }

    /// The node of `epoch` is gone (its lease expired): its users leave.
    pub fn node_gone(&self, epoch: i64) {
        let mut state = self.lock();
        let Some(cluster) = state.cluster.as_mut() else {
            return;
        };
        let gone: Vec<String> = cluster
            .remote
            .iter()
            .filter(|(_, r)| r.epoch == epoch)
            .map(|(k, _)| k.clone())
            .collect();
        let mut nicks = Vec::new();
        for key in gone {
            if let Some(r) = cluster.remote.remove(&key) {
                nicks.push(r.nick);
            }
        }
        for nick in nicks {
            state.tell_local_presence(&nick, false, LeaveReason::Disconnected);
        }
    }

    /// The nodes whose lease is current are `live` (epochs, read from the database): the
    /// users of any other node leave ([`Hub::node_gone`]). A node that joined after `live` was
    /// read has a greater epoch than all of it (epochs come from one sequence), so an epoch
    /// missing from `live` is gone if it is lower than the greatest there, or if it was
    /// already missing from the last read (`missing`, kept by the caller).
    pub fn keep_nodes(&self, live: &[i64], missing: &mut std::collections::HashSet<i64>) {
        let newest = live.iter().copied().max().unwrap_or(i64::MAX);
        let absent: std::collections::HashSet<i64> = {
            let mut state = self.lock();
            let Some(cluster) = state.cluster.as_mut() else {
                return;
            };
            // Bounded: only forged events (NATS access) name many nodes.
            if cluster.origin_n.len() > MAX_ORIGINS {
                let mine = cluster.epoch;
                cluster
                    .origin_n
                    .retain(|e, _| *e == mine || live.contains(e));
            }
            cluster
                .remote
                .values()
                .map(|r| r.epoch)
                .filter(|e| !live.contains(e))
                .collect()
        };
        for &epoch in &absent {
            if epoch < newest || missing.contains(&epoch) {
                tracing::info!(epoch, "a node's lease expired: its users are gone");
                self.node_gone(epoch);
            }
        }
        *missing = absent;
    }

    /// Whether `nick_key` has a session on this node.
    pub fn is_online_here(&self, nick_key_: &str) -> bool {
        self.lock().peers.contains_key(nick_key_)
    }

    /// Users already online on other nodes when this node joined (`(nick, epoch)`), as if
    /// they had logged in.
    pub fn seed_remote(&self, users: Vec<(String, i64)>) {
        let mut state = self.lock();
        let Some(cluster) = state.cluster.as_mut() else {
            return;
        };
        for (nick, epoch) in users {
            if epoch != cluster.epoch {
                cluster.remote.insert(
                    nick_key(&nick),
                    Remote {
                        nick,
                        epoch,
                        away: None,
                    },
                );
            }
        }
    }

    /// A login on another node took over `nick` with `credential`: ends the session here
    /// quietly, as a local takeover would (its client is told it was replaced). Returns
    /// whether a session here held it with that credential.
    pub fn replaced_elsewhere(&self, nick_key_: &str, credential: &str, epoch: i64) -> bool {
        let mut state = self.lock();
        let Some(peer) = state.peers.get(nick_key_) else {
            return false;
        };
        if peer.credential != credential {
            return false;
        }
        peer.replaced
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let Some(peer) = state.remove_peer(nick_key_) else {
            return false;
        };
        // The user moved to the node of `epoch`: this node's users saw them online and are not
        // told they left or joined; the new node's `Online` finds them known.
        if let Some(cluster) = state.cluster.as_mut() {
            cluster.remote.insert(
                nick_key_.to_owned(),
                Remote {
                    nick: peer.nick,
                    epoch,
                    away: None,
                },
            );
        }
        true
    }

    /// Nicks online on other nodes.
    pub(super) fn remote_nicks(state: &State) -> impl Iterator<Item = &String> {
        state
            .cluster
            .iter()
            .flat_map(|c| c.remote.values().map(|r| &r.nick))
    }

    /// Users online on other nodes: their nick and whether they are away.
    pub(super) fn remote_members(state: &State) -> impl Iterator<Item = (&String, bool)> {
        state
            .cluster
            .iter()
            .flat_map(|c| c.remote.values().map(|r| (&r.nick, r.away.is_some())))
    }

    /// Users online on other nodes, and this node's proposals waiting for the stream (for the
    /// metrics); zeros on a hub on its own.
    pub fn cluster_sizes(&self) -> (usize, usize) {
        let state = self.lock();
        state.cluster.as_ref().map_or((0, 0), |c| {
            (c.remote.len(), c.pending.len() + c.room_pending.len())
        })
    }

    /// The stream refused this node's proposal `msg_id` (`EPOCH-N`): its sender, if it
    /// waits, is told the line was not sent (busy).
    pub fn refuse_proposal(&self, msg_id: &str) {
        let Some(n) = msg_id
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse::<u64>().ok())
        else {
            return;
        };
        let mut state = self.lock();
        if let Some(tx) = state.cluster.as_mut().and_then(|c| c.pending.remove(&n)) {
            let _ = tx.send(Err(SendError::Busy));
        }
        if let Some(tx) = state
            .cluster
            .as_mut()
            .and_then(|c| c.room_pending.remove(&n))
        {
            let _ = tx.send(Err(RoomError::Busy));
        }
        let taken = state.cluster.as_mut().and_then(|c| c.creations.remove(&n));
        if let Some(key) = taken {
            let burst = self.shared.room_limits.creations;
            state.rooms.give_back_creation(&key, burst);
        }
    }

    /// How many proposals of this node wait for the stream.
    pub fn pending_proposals(&self) -> usize {
        self.lock()
            .cluster
            .as_ref()
            .map_or(0, |c| c.pending.len() + c.room_pending.len())
    }

    /// Abandons the proposals still waiting (the node is closing): their senders are told.
    pub(crate) fn abandon_pending(&self) {
        let mut state = self.lock();
        if let Some(cluster) = state.cluster.as_mut() {
            for (_, tx) in cluster.pending.drain() {
                let _ = tx.send(Err(SendError::Closed));
            }
            for (_, tx) in cluster.room_pending.drain() {
                let _ = tx.send(Err(RoomError::Closed));
            }
            cluster.creations.clear();
        }
    }
}

impl State {
    /// Tells this node's users that `nick` (a user of another node) came or went: a notice in
    /// the lobby while it is small enough, and their monitors.
    fn tell_local_presence(&mut self, nick: &str, online: bool, reason: LeaveReason) {
        let too_slow = self.notify_monitors(nick, online);
        self.evict_all(too_slow);
        let lobby = Topic::Room(RoomId::LOBBY);
        if !self.presence(self.bus.subscribers(&lobby)) {
            return;
        }
        let ts = self.clock.now_ms();
        let msg = if online {
            ServerMsg::Joined {
                room: LOBBY.into(),
                ts,
                nick: nick.to_owned(),
            }
        } else {
            ServerMsg::Left {
                room: LOBBY.into(),
                ts,
                nick: nick.to_owned(),
                reason,
            }
        };
        if let Ok(encoded) = frame::encode_message(&msg) {
            self.publish(&lobby, &encoded, None);
        }
    }
}

/// A store refusal as the sender learns it.
fn refused(e: StoreError) -> SendError {
    match e {
        StoreError::Closed => SendError::Closed,
        _ => SendError::Busy,
    }
}
