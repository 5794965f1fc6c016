//! Presence: who is online (one connection per nick), and who watches whom.
//!
//! The table of online users ([`Peer`] by nick key) decides logins, replacements and
//! acknowledgements; presence changes reach others as `Joined`/`Left` notices in the room
//! (only while the room is small enough for them to be read) and as `Presence` notices to the
//! users who monitor the nick ([`ClientMsg::Monitor`](mm_common::protocol::ClientMsg), at most
//! [`MAX_MONITORED`] nicks per connection), whatever the room's size.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use mm_common::frame;
use mm_common::protocol::{nick_key, validate_nick, ServerMsg, MAX_MONITORED};

use super::bus::TooSlow;
use super::topic::{RoomId, Topic};
use super::State;

/// One online user: their current connection and what the hub tracks for it.
#[derive(Debug)]
pub(super) struct Peer {
    pub conn_id: u64,
    /// The hub's end of its outbox, to subscribe it to rooms it joins.
    pub sender: super::outbox::OutboxSender,
    /// Its away message, if away.
    pub away: Option<String>,
    pub nick: String,
    /// The credential it logged in with: its client certificate's fingerprint, or its account
    /// key's `p256:` credential.
    pub credential: String,
    /// Set when a login with the same credential takes this nick over.
    pub replaced: Arc<AtomicBool>,
    /// Ids of the personal lines queued live for this connection and not yet acknowledged,
    /// oldest first (they also wait in the user's mailbox in the store).
    pub unacked: VecDeque<u64>,
    /// Ids of the lines fetched from the mailbox at login ([`Hub::fetched`](super::Hub)) and
    /// not yet acknowledged, oldest first; all lower than any in `unacked`.
    pub fetched: VecDeque<u64>,
    /// Set when the login could not fetch the whole mailbox (more waited than one fetch
    /// takes): acknowledgements then stop at the last fetched id, so that they never delete
    /// the rows in between that this connection was not given.
    pub ack_ceiling: Option<u64>,
    /// Keys of the users this connection monitors, at most [`MAX_MONITORED`].
    pub monitoring: HashSet<String>,
    /// Whether the others were told that this user is online ([`Hub::announce`](super::Hub)):
    /// until then the login may still be refused, so nobody hears of it — not of its end,
    /// and not from a MONITOR either. A login that takes over an announced connection of the
    /// same account inherits it (it replaces it quietly).
    pub announced: bool,
    /// Whether this connection's login registers the nick: its logout is then recorded
    /// durably (an unused account's expiry counts from the end of its registering connection).
    pub registering: bool,
    /// Whether this connection was told that its one-time prekeys run low (`PrekeysLow`)
    /// since it last published keys.
    pub prekeys_low_sent: bool,
    /// One node of several: this login took the user over from another node, where everyone
    /// saw them online: its announcement only tells the other nodes where they are now.
    pub moved: bool,
}

impl State {
    /// Whether join/leave notices go out with `online` users in the room: in a large room
    /// they are noise nobody reads, and each costs one queued message per user (O(N²) for N
    /// logins; measured at 312 KiB per connection with 10,000 users).
    pub(super) fn presence(&self, online: usize) -> bool {
        online <= self.presence_max_online
    }

    /// Removes the connection of `key`: from the table, from its topics on the bus (which
    /// closes its outbox once drained), and its presence watches.
    pub(super) fn remove_peer(&mut self, key: &str) -> Option<Peer> {
        let peer = self.peers.remove(key)?;
        self.bus
            .unsubscribe(&Topic::Room(RoomId::LOBBY), peer.conn_id);
        self.bus.unsubscribe(&Topic::user(key), peer.conn_id);
        let rooms = self.rooms.of_user(key).to_vec();
        for id in &rooms {
            self.bus.unsubscribe(&Topic::Room(*id), peer.conn_id);
        }
        self.evict_histories(&rooms);
        for watched in &peer.monitoring {
            if let Some(watchers) = self.monitors.get_mut(watched) {
                watchers.remove(key);
                if watchers.is_empty() {
                    self.monitors.remove(watched);
                }
            }
        }
        Some(peer)
    }

    /// Subscribes the user `key`'s current connection to room `id`, unless it is already.
    pub(super) fn subscribe_room(&mut self, id: super::RoomId, key: &str) {
        let Some(sender) = self.outbox_sender(key) else {
            return;
        };
        let topic = Topic::Room(id);
        if !self.bus.is_subscribed(&topic, sender.conn_id) {
            self.bus.subscribe(topic, sender);
        }
    }

    /// The outbox of the user `key`'s current connection.
    pub(super) fn outbox_sender(&self, key: &str) -> Option<super::outbox::OutboxSender> {
        self.peers.get(key).map(|p| p.sender.clone())
    }

    /// Moves the `seen` mark of the user `key` in each of its rooms to the room's newest line
    /// (it logs out having been sent them), in memory and, best effort, in the store.
    pub(super) fn mark_seen(&mut self, key: &str) -> Vec<(RoomId, String, u64)> {
        let mut marks = Vec::new();
        for id in self.rooms.of_user(key).to_vec() {
            if let Some(room) = self.rooms.get_mut(id) {
                let last = room.last_line;
                if let Some(m) = room.members.get_mut(key) {
                    if m.seen != last {
                        m.seen = last;
                        marks.push((id, key.to_owned(), last));
                    }
                }
            }
        }
        marks
    }

    /// Removes `key` if it still belongs to `conn_id` (a new login may have taken the nick
    /// after the hub dropped the old one). Returns what it removed.
    pub(super) fn remove_if_current(&mut self, conn_id: u64, key: &str) -> Option<Peer> {
        if self.peers.get(key).is_some_and(|p| p.conn_id == conn_id) {
            self.remove_peer(key)
        } else {
            None
        }
    }

    /// Whether `conn_id` is the current connection of the user `key`.
    pub(super) fn is_current(&self, conn_id: u64, key: &str) -> bool {
        self.peers.get(key).is_some_and(|p| p.conn_id == conn_id)
    }

    /// Tells the users monitoring `nick` that it came online or went offline. Returns the
    /// watchers whose outbox was full, for [`State::evict_all`].
    #[must_use = "the watchers returned must be evicted"]
    pub(super) fn notify_monitors(&mut self, nick: &str, online: bool) -> TooSlow {
        let mut too_slow = TooSlow::new();
        let Some(watchers) = self.monitors.get(&nick_key(nick)) else {
            return too_slow;
        };
        let msg = ServerMsg::Presence {
            nick: nick.to_owned(),
            online,
        };
        let encoded = match frame::encode_message(&msg) {
            Ok(encoded) => encoded,
            Err(e) => {
                tracing::error!(error = %e, "notice could not be encoded");
                return too_slow;
            }
        };
        for watcher in watchers {
            let published = self.bus.publish(&Topic::user(watcher), &encoded, None);
            too_slow.extend(published.too_slow);
        }
        too_slow
    }

    /// Adds `nicks` to the presence watches of connection `conn_id` of the user `me`, and
    /// tells it each one's presence now. See [`Hub::monitor`](super::Hub::monitor).
    pub(super) fn monitor(&mut self, conn_id: u64, me: &str, nicks: &[String]) {
        let mut notices = Vec::new();
        for watched in nicks {
            if validate_nick(watched).is_err() {
                continue;
            }
            let key = nick_key(watched);
            let Some(peer) = self.peers.get_mut(me).filter(|p| p.conn_id == conn_id) else {
                return;
            };
            if !peer.monitoring.contains(&key) {
                if peer.monitoring.len() >= MAX_MONITORED {
                    continue;
                }
                peer.monitoring.insert(key.clone());
                self.monitors
                    .entry(key.clone())
                    .or_default()
                    .insert(me.to_owned());
            }
            let msg = match self.peers.get(&key) {
                Some(p) if p.announced => ServerMsg::Presence {
                    nick: p.nick.clone(),
                    online: true,
                },
                _ => ServerMsg::Presence {
                    nick: watched.clone(),
                    online: false,
                },
            };
            if let Ok(encoded) = frame::encode_message(&msg) {
                notices.push(encoded);
            }
        }
        if !self.is_current(conn_id, me) {
            return;
        }
        let mine = Topic::user(me);
        for notice in notices {
            let published = self.bus.publish(&mine, &notice, None);
            if !published.too_slow.is_empty() {
                self.evict(conn_id, me);
                return;
            }
        }
    }
}
