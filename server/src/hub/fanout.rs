//! Fan-out and eviction: publishing to a topic through the bus, and disconnecting the
//! connections whose outbox was full. Nobody ever waits for a slow client.
//!
//! Evicting one connection tells others (its watchers, the room), which can find more outboxes
//! full: eviction works through a list, never by recursion, so that a cascade through
//! thousands of full outboxes costs no stack (a chain of 3,000 watchers, each watching the
//! next, once overflowed a worker's 2 MiB stack and aborted the server).

use std::sync::Arc;

use bytes::Bytes;
use mm_common::frame;
use mm_common::protocol::{LeaveReason, ServerMsg};

use super::bus::TooSlow;
use super::topic::{RoomId, Topic};
use super::State;

impl State {
    /// Publishes the encoded message `msg` to `topic` (except connection `skip`) and
    /// disconnects the subscribers whose outbox was full (their leaving announced the same
    /// way). Returns how many outboxes took it.
    pub(super) fn publish(&mut self, topic: &Topic, msg: &Bytes, skip: Option<u64>) -> usize {
        let published = self.bus.publish(topic, msg, skip);
        self.evict_all(published.too_slow);
        published.delivered
    }

    /// Encodes a notice once and publishes it to the lobby, except to connection `skip`.
    pub(super) fn notice(&mut self, skip: u64, msg: &ServerMsg) {
        match frame::encode_message(msg) {
            Ok(encoded) => {
                self.publish(&Topic::Room(RoomId::LOBBY), &encoded, Some(skip));
            }
            Err(e) => tracing::error!(error = %e, "notice could not be encoded"),
        }
    }

    /// Queues a personal line (kept in the mailbox until acknowledged) for the online user
    /// `key`, keeping the lines it has not acknowledged within `max_unacked`. Returns whether
    /// it reached their outbox (false: they are offline, were just dropped as too slow, or
    /// their session is ending; the line then waits in the mailbox for their next login).
    pub(super) fn deliver_personal(&mut self, key: &str, id: u64, encoded: &Bytes) -> bool {
        let Some(peer) = self.peers.get(key) else {
            return false;
        };
        let conn_id = peer.conn_id;
        if peer.unacked.len() >= self.max_unacked {
            self.evict(conn_id, key);
            return false;
        }
        if self.publish(&Topic::user(key), encoded, None) == 0 {
            return false;
        }
        match self.peers.get_mut(key) {
            Some(peer) => {
                peer.unacked.push_back(id);
                true
            }
            None => false,
        }
    }

    /// Drops connection `conn_id` of the user `key`, whose outbox is full; see
    /// [`State::evict_all`].
    pub(super) fn evict(&mut self, conn_id: u64, key: &str) {
        self.evict_all(vec![(conn_id, Arc::from(key))]);
    }

    /// Drops the connections in `pending` (connection id, nick key), whose outbox is full, and
    /// every connection that the notices of their leaving find full in turn. Unsubscribing a
    /// connection everywhere closes its outbox after the messages already in it: its session
    /// then tells its client and disconnects. Each connection is dropped at most once, so
    /// this ends after at most one round per user online.
    pub(super) fn evict_all(&mut self, mut pending: TooSlow) {
        while let Some((conn_id, key)) = pending.pop() {
            let Some(peer) = self.remove_if_current(conn_id, &key) else {
                continue; // already gone (dropped earlier in this cascade, or logged out)
            };
            tracing::info!(conn = peer.conn_id, nick = %peer.nick, "queue full; disconnecting a slow client");
            if !peer.announced {
                continue; // nobody heard of it
            }
            if let Some(cluster) = self.cluster.as_mut() {
                cluster.tell_presence(&peer.nick, false, LeaveReason::TooSlow);
            }
            pending.extend(self.notify_monitors(&peer.nick, false));
            let lobby = Topic::Room(RoomId::LOBBY);
            if !self.presence(self.bus.subscribers(&lobby) + 1) {
                continue;
            }
            let left = ServerMsg::Left {
                room: "#lobby".into(),
                ts: self.clock.now_ms(),
                nick: peer.nick,
                reason: LeaveReason::TooSlow,
            };
            match frame::encode_message(&left) {
                Ok(encoded) => {
                    pending.extend(self.bus.publish(&lobby, &encoded, Some(conn_id)).too_slow);
                }
                Err(e) => tracing::error!(error = %e, "notice could not be encoded"),
            }
        }
    }
}
