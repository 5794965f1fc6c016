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
use mm_common::protocol::{nick_key, LeaveReason, ServerMsg, LOBBY};
use tokio::sync::{mpsc, oneshot};

use super::messages::{Accepted, SendError};
use super::topic::{RoomId, Topic};
use super::{history, Hub, State};
use crate::cluster::event::{self, Event, Origin, PersonalBody};
use crate::store::{Arrival, Body, Line, Mail, QueueOutcome, Reply, StoreError};

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

/// A user online on another node.
#[derive(Debug, Clone)]
pub(super) struct Remote {
    nick: String,
    epoch: i64,
    /// Their away message, if away.
    away: Option<String>,
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
    /// Users online on other nodes, by nick key.
    pub(super) remote: HashMap<String, Remote>,
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
        text: String,
        action: bool,
    ) -> Option<Result<oneshot::Receiver<Settled>, SendError>> {
        let cluster = state.cluster.as_mut()?;
        let (tx, rx) = oneshot::channel();
        let ts = state.clock.now_ms();
        let from = from.to_owned();
        let Some(origin) = cluster.propose(conn_id, |origin| Event::Line {
            origin,
            action,
            from,
            text,
            ts,
        }) else {
            return Some(Err(SendError::Busy));
        };
        cluster.pending.insert(origin.n, tx);
        Some(Ok(rx))
    }

    /// As [`Hub::propose_line`], for a private line or relayed payload to `to`.
    pub(super) fn propose_personal(
        state: &mut State,
        conn_id: u64,
        from: &str,
        to: &str,
        body: Body,
    ) -> Option<Result<oneshot::Receiver<Settled>, SendError>> {
        let cluster = state.cluster.as_mut()?;
        let (tx, rx) = oneshot::channel();
        let ts = state.clock.now_ms();
        let (from, to) = (from.to_owned(), to.to_owned());
        let body = match body {
            Body::Text(t) => PersonalBody::Text(t),
            Body::Relay(p) => PersonalBody::Relay(p),
        };
        let Some(origin) = cluster.propose(conn_id, |origin| Event::Personal {
            origin,
            to,
            from,
            body,
            ts,
        }) else {
            return Some(Err(SendError::Busy));
        };
        cluster.pending.insert(origin.n, tx);
        Some(Ok(rx))
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
        match event {
            Event::Line {
                origin,
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
                self.apply_line(&mut state, line, origin, origin.epoch == epoch, waiting);
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
            let state = self.lock();
            let Some(cluster) = state.cluster.as_ref() else {
                return;
            };
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
        state
            .cluster
            .as_ref()
            .map_or((0, 0), |c| (c.remote.len(), c.pending.len()))
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
    }

    /// How many proposals of this node wait for the stream.
    pub fn pending_proposals(&self) -> usize {
        self.lock().cluster.as_ref().map_or(0, |c| c.pending.len())
    }

    /// Abandons the proposals still waiting (the node is closing): their senders are told.
    pub(crate) fn abandon_pending(&self) {
        let mut state = self.lock();
        if let Some(cluster) = state.cluster.as_mut() {
            for (_, tx) in cluster.pending.drain() {
                let _ = tx.send(Err(SendError::Closed));
            }
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
