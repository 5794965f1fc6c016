//! The hub: who is online, and how a message reaches its recipients.
//!
//! * **Room** (public lines, joins, leaves): encoded once into a [`Bytes`] frame and pushed into
//!   one bounded `broadcast` ring that every session reads from. Sending costs the same for 10 or
//!   10,000 users, each recipient gets the frame by reference count, and a client that falls
//!   more than `room_backlog` frames behind gets `Lagged` and is disconnected — nobody waits for it.
//! * **Direct** (private lines): a bounded `mpsc` queue per user. When a recipient's queue is
//!   full, that recipient is disconnected as too slow; the sender is told.
//!
//! All state sits behind one `std::sync::Mutex` (as in mini-redis' `db.rs`): critical sections
//! are short, never `.await`, and only do map lookups and non-blocking `try_send`s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mm_common::frame;
use mm_common::protocol::{nick_key, LeaveReason, ServerMsg};
use tokio::sync::{broadcast, mpsc};

/// A frame on the room ring, tagged with the connection that caused it so that a session can
/// skip its own lines (senders get [`ServerMsg::Sent`] instead of an echo).
#[derive(Debug, Clone)]
pub struct RoomFrame {
    /// Connection id of the sender (0 for none).
    pub from_conn: u64,
    /// The encoded frame.
    pub frame: Bytes,
}

/// Cloneable handle to the shared state.
#[derive(Debug, Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    room: broadcast::Sender<RoomFrame>,
    next_conn_id: AtomicU64,
    outbound_queue: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Online users by [`nick_key`].
    peers: HashMap<String, Peer>,
    /// Set by [`Hub::close`]: no more logins or messages are accepted.
    closed: bool,
    /// Id of the next public or private message.
    next_msg_id: u64,
}

#[derive(Debug)]
struct Peer {
    conn_id: u64,
    nick: String,
    direct: mpsc::Sender<Bytes>,
}

/// A logged-in user's end of the hub, held by their session.
#[derive(Debug)]
pub struct Membership {
    /// This connection's id.
    pub conn_id: u64,
    /// The nick as registered.
    pub nick: String,
    /// Frames addressed to this user only. `None` from `recv` means the hub dropped the user
    /// (its queue overflowed).
    pub direct: mpsc::Receiver<Bytes>,
    /// The room ring, subscribed at the moment of joining.
    pub room: broadcast::Receiver<RoomFrame>,
    /// Nicks online at the moment of joining (this user included), sorted.
    pub online: Vec<String>,
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// Someone online has that nick (case-insensitively).
    #[error("nick {0} is already in use")]
    NickInUse(String),
    /// The server is shutting down.
    #[error("server is shutting down")]
    Closed,
}

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
    /// The message could not be encoded (a bug: inputs are validated first).
    #[error("message could not be encoded")]
    Encode,
}

/// Where an accepted message stands: its id and server timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Message id.
    pub id: u64,
    /// Server time, ms since the Unix epoch.
    pub ts: u64,
}

/// Milliseconds since the Unix epoch; 0 if the clock is before 1970.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Hub {
    /// A hub whose room ring holds `room_backlog` frames and whose per-user queues hold
    /// `outbound_queue` frames. Both must be at least 1 (checked by `Limits::check`).
    pub fn new(room_backlog: usize, outbound_queue: usize) -> Hub {
        let (room, _) = broadcast::channel(room_backlog.max(1));
        Hub {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    next_msg_id: 1,
                    ..State::default()
                }),
                room,
                next_conn_id: AtomicU64::new(1),
                outbound_queue: outbound_queue.max(1),
            }),
        }
    }

    /// A fresh connection id (never 0).
    pub fn next_conn_id(&self) -> u64 {
        self.shared.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than stopping the whole server would, so keep serving.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Logs `nick` in (it must already satisfy `validate_nick`): registers it, subscribes to the
    /// room and announces the join, all under one lock so that the returned `online` list and
    /// the room stream fit together with nothing missed or doubled.
    ///
    /// # Errors
    /// [`JoinError`] if the nick is taken or the hub is closed.
    pub fn join(&self, conn_id: u64, nick: &str) -> Result<Membership, JoinError> {
        let key = nick_key(nick);
        let (tx, rx) = mpsc::channel(self.shared.outbound_queue);
        let mut state = self.lock();
        if state.closed {
            return Err(JoinError::Closed);
        }
        if let Some(existing) = state.peers.get(&key) {
            return Err(JoinError::NickInUse(existing.nick.clone()));
        }
        let room = self.shared.room.subscribe();
        state.peers.insert(
            key,
            Peer {
                conn_id,
                nick: nick.to_owned(),
                direct: tx,
            },
        );
        let mut online: Vec<String> = state.peers.values().map(|p| p.nick.clone()).collect();
        online.sort_unstable_by_key(|n| nick_key(n));
        self.room_send(
            conn_id,
            &ServerMsg::Joined {
                ts: now_ms(),
                nick: nick.to_owned(),
            },
        );
        drop(state);
        Ok(Membership {
            conn_id,
            nick: nick.to_owned(),
            direct: rx,
            room,
            online,
        })
    }

    /// Logs a connection out and tells the room, unless the hub already dropped it (or the
    /// server is shutting down, when leave notices are noise).
    pub fn leave(&self, conn_id: u64, nick: &str, reason: LeaveReason) {
        let mut state = self.lock();
        if remove_if_current(&mut state, conn_id, nick) && !state.closed {
            self.room_send(
                conn_id,
                &ServerMsg::Left {
                    ts: now_ms(),
                    nick: nick.to_owned(),
                    reason,
                },
            );
        }
    }

    /// Publishes a public line to everyone else. `text` must already be validated.
    ///
    /// # Errors
    /// [`SendError::Closed`] when shutting down.
    pub fn publish(&self, conn_id: u64, from: &str, text: String) -> Result<Accepted, SendError> {
        let mut state = self.lock();
        if state.closed {
            return Err(SendError::Closed);
        }
        let accepted = next_accepted(&mut state);
        let msg = ServerMsg::Public {
            id: accepted.id,
            ts: accepted.ts,
            from: from.to_owned(),
            text,
        };
        let frame = frame::encode(&msg).map_err(|_| SendError::Encode)?;
        // Sent under the lock so that ring order is id order. An error only means no session
        // is subscribed, which is fine.
        let _ = self.shared.room.send(RoomFrame {
            from_conn: conn_id,
            frame,
        });
        Ok(accepted)
    }

    /// Sends a private line to `to` (any case). `text` must already be validated.
    ///
    /// # Errors
    /// [`SendError`] if the recipient is offline or too slow, or the hub is closed.
    pub fn send_private(&self, from: &str, to: &str, text: String) -> Result<Accepted, SendError> {
        let key = nick_key(to);
        let mut state = self.lock();
        if state.closed {
            return Err(SendError::Closed);
        }
        let Some(peer) = state.peers.get(&key) else {
            return Err(SendError::NoSuchNick(to.to_owned()));
        };
        let (recipient_conn, recipient_nick) = (peer.conn_id, peer.nick.clone());
        let accepted = next_accepted(&mut state);
        let msg = ServerMsg::Private {
            id: accepted.id,
            ts: accepted.ts,
            from: from.to_owned(),
            text,
        };
        let frame = frame::encode(&msg).map_err(|_| SendError::Encode)?;
        let result = state.peers.get(&key).map(|p| p.direct.try_send(frame));
        match result {
            Some(Ok(())) => Ok(accepted),
            Some(Err(mpsc::error::TrySendError::Full(_))) => {
                // Dropping the peer drops its queue's sender: its session sees the queue close,
                // tells the client it was too slow, and disconnects.
                remove_if_current(&mut state, recipient_conn, &recipient_nick);
                let left = ServerMsg::Left {
                    ts: now_ms(),
                    nick: recipient_nick.clone(),
                    reason: LeaveReason::TooSlow,
                };
                self.room_send(recipient_conn, &left);
                Err(SendError::RecipientTooSlow(recipient_nick))
            }
            // The session is gone but has not logged out yet.
            Some(Err(mpsc::error::TrySendError::Closed(_))) | None => {
                Err(SendError::NoSuchNick(recipient_nick))
            }
        }
    }

    /// Online nicks, sorted case-insensitively.
    pub fn online(&self) -> Vec<String> {
        let state = self.lock();
        let mut nicks: Vec<String> = state.peers.values().map(|p| p.nick.clone()).collect();
        drop(state);
        nicks.sort_unstable_by_key(|n| nick_key(n));
        nicks
    }

    /// Number of users online.
    pub fn online_count(&self) -> usize {
        self.lock().peers.len()
    }

    /// Stops accepting logins and messages. Everything accepted before this call is already in
    /// the ring or a queue, so sessions that drain after it deliver all of it.
    pub fn close(&self) {
        self.lock().closed = true;
    }

    fn room_send(&self, from_conn: u64, msg: &ServerMsg) {
        match frame::encode(msg) {
            Ok(frame) => {
                let _ = self.shared.room.send(RoomFrame { from_conn, frame });
            }
            Err(e) => tracing::error!(error = %e, "room notice could not be encoded"),
        }
    }
}

fn next_accepted(state: &mut State) -> Accepted {
    let id = state.next_msg_id;
    state.next_msg_id = state.next_msg_id.saturating_add(1);
    Accepted { id, ts: now_ms() }
}

/// Removes `nick` if it still belongs to `conn_id` (a new login may have taken the nick after
/// the hub dropped the old one). Returns whether it removed anything.
fn remove_if_current(state: &mut State, conn_id: u64, nick: &str) -> bool {
    let key = nick_key(nick);
    if state.peers.get(&key).is_some_and(|p| p.conn_id == conn_id) {
        state.peers.remove(&key);
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mm_common::frame::HEADER_LEN;

    fn decode(frame: &Bytes) -> ServerMsg {
        ServerMsg::decode(&frame[HEADER_LEN..]).unwrap()
    }

    #[test]
    fn nicks_are_unique_case_insensitively_and_free_again_after_leave() {
        let hub = Hub::new(16, 4);
        let alice = hub.join(1, "Alice").unwrap();
        assert_eq!(
            hub.join(2, "alice").unwrap_err(),
            JoinError::NickInUse("Alice".into())
        );
        hub.leave(alice.conn_id, "Alice", LeaveReason::Quit);
        assert!(hub.join(3, "ALICE").is_ok());
    }

    #[test]
    fn join_snapshot_and_room_stream_fit_together() {
        let hub = Hub::new(16, 4);
        let mut a = hub.join(1, "a").unwrap();
        let b = hub.join(2, "B").unwrap();
        assert_eq!(a.online, vec!["a".to_string()]);
        assert_eq!(b.online, vec!["a".to_string(), "B".to_string()]);
        // a's room stream starts with its own join (skipped by its session), then b's.
        assert_eq!(a.room.try_recv().unwrap().from_conn, 1);
        let joined = a.room.try_recv().unwrap();
        assert!(matches!(decode(&joined.frame), ServerMsg::Joined { nick, .. } if nick == "B"));
    }

    #[test]
    fn public_ids_increase_and_frames_are_shared_not_copied() {
        let hub = Hub::new(16, 4);
        let mut a = hub.join(1, "a").unwrap();
        let mut b = hub.join(2, "b").unwrap();
        while a.room.try_recv().is_ok() {}
        while b.room.try_recv().is_ok() {}
        let first = hub.publish(1, "a", "one".into()).unwrap();
        let second = hub.publish(2, "b", "two".into()).unwrap();
        assert!(second.id > first.id);
        let fa = a.room.try_recv().unwrap().frame;
        let fb = b.room.try_recv().unwrap().frame;
        assert_eq!(
            fa.as_ptr(),
            fb.as_ptr(),
            "one encoding shared by all recipients"
        );
        assert!(
            matches!(decode(&fa), ServerMsg::Public { from, text, .. } if from == "a" && text == "one")
        );
    }

    #[test]
    fn private_goes_to_one_queue_and_unknown_recipients_are_errors() {
        let hub = Hub::new(16, 4);
        let mut a = hub.join(1, "a").unwrap();
        let mut b = hub.join(2, "b").unwrap();
        hub.send_private("a", "B", "psst".into()).unwrap();
        let frame = b.direct.try_recv().unwrap();
        assert!(
            matches!(decode(&frame), ServerMsg::Private { from, text, .. } if from == "a" && text == "psst")
        );
        assert!(a.direct.try_recv().is_err());
        assert_eq!(
            hub.send_private("a", "carol", "x".into()),
            Err(SendError::NoSuchNick("carol".into()))
        );
    }

    #[test]
    fn a_full_private_queue_disconnects_the_recipient_not_the_sender() {
        let hub = Hub::new(16, 2);
        let mut a = hub.join(1, "a").unwrap();
        let mut slow = hub.join(2, "slow").unwrap();
        while a.room.try_recv().is_ok() {}
        hub.send_private("a", "slow", "1".into()).unwrap();
        hub.send_private("a", "slow", "2".into()).unwrap();
        assert_eq!(
            hub.send_private("a", "slow", "3".into()),
            Err(SendError::RecipientTooSlow("slow".into()))
        );
        assert_eq!(hub.online(), vec!["a".to_string()]);
        // The slow session still gets what was queued, then sees its queue closed.
        assert!(slow.direct.try_recv().is_ok());
        assert!(slow.direct.try_recv().is_ok());
        assert!(matches!(
            slow.direct.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        let left = decode(&a.room.try_recv().unwrap().frame);
        assert!(matches!(
            left,
            ServerMsg::Left {
                reason: LeaveReason::TooSlow,
                ..
            }
        ));
        // Its later logout does not announce a second leave.
        hub.leave(2, "slow", LeaveReason::Disconnected);
        assert!(a.room.try_recv().is_err());
    }

    #[test]
    fn a_stale_session_cannot_log_out_the_new_owner_of_its_nick() {
        let hub = Hub::new(16, 1);
        let _a = hub.join(1, "a").unwrap();
        hub.send_private("x", "a", "1".into()).unwrap();
        let _ = hub.send_private("x", "a", "2".into()); // evicts conn 1
        let _a2 = hub.join(5, "a").unwrap();
        hub.leave(1, "a", LeaveReason::Disconnected);
        assert_eq!(hub.online(), vec!["a".to_string()]);
    }

    #[test]
    fn closed_hub_accepts_nothing() {
        let hub = Hub::new(16, 4);
        let _a = hub.join(1, "a").unwrap();
        hub.close();
        assert_eq!(hub.publish(1, "a", "x".into()), Err(SendError::Closed));
        assert_eq!(
            hub.send_private("a", "a", "x".into()),
            Err(SendError::Closed)
        );
        assert_eq!(hub.join(2, "b").unwrap_err(), JoinError::Closed);
    }
}
