//! A connection's outbox: the one bounded queue through which everything for a logged-in
//! connection passes, in the order the hub accepted it. The hub's side (`OutboxSender`) is
//! what the `Bus` delivers into; the session's side ([`Outbox`]) is what it
//! drains onto its transport.
//!
//! The queue is bounded twice: in messages and in bytes (so that a few large messages cannot
//! hold megabytes). A full outbox never makes anybody wait: the sender learns
//! `QueueError::Full` and the hub disconnects that connection as too slow. Not to be confused with a *mailbox* (PROTOCOL.md: the personal lines the store
//! keeps for a user until their client acknowledges them).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

/// Why a message could not be put into an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// The outbox is full, in messages or in bytes: its reader is too slow.
    Full,
    /// The session is gone (its [`Outbox`] was dropped).
    Closed,
}

/// What both ends share. The queue allocates nothing while empty and idle (see
/// [`Outbox::shrink_idle`]): an idle connection's outbox costs this struct, not a channel and
/// its blocks (tokio's mpsc held ~2.8 KB per connection).
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Woken at each push and at the close; `notify_one` keeps a permit when the session is not
    /// waiting, so no wake-up is lost between its check and its wait.
    notify: Notify,
    max_messages: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Bytes>,
    /// Bytes of `messages`.
    bytes: usize,
    /// Every [`OutboxSender`] is gone: the hub delivers nothing more.
    closed: bool,
    /// The [`Outbox`] is gone: the session ended.
    gone: bool,
    /// Messages refused because the queue was full (for the metrics).
    refused: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every critical section leaves the queue consistent: a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Closes the outbox for the session when the last [`OutboxSender`] is dropped.
#[derive(Debug)]
struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.notify.notify_one();
    }
}

/// The hub's end of a connection's outbox. Cheap to clone (two reference counts); the outbox
/// closes for the session once every clone is dropped (unsubscribed from every topic).
#[derive(Debug, Clone)]
pub(crate) struct OutboxSender {
    /// The connection this outbox belongs to.
    pub conn_id: u64,
    /// Its user's [`nick_key`](mm_common::protocol::nick_key), shared by every clone.
    pub key: Arc<str>,
    open: Arc<Open>,
}

impl OutboxSender {
    /// Queues one encoded message (a `ServerMsg` payload, no frame header), keeping the outbox
    /// within its message and byte bounds.
    pub fn push(&self, msg: Bytes) -> Result<(), QueueError> {
        let shared = &self.open.0;
        let mut queue = shared.lock();
        if queue.gone {
            return Err(QueueError::Closed);
        }
        if queue.messages.len() >= shared.max_messages
            || queue
                .bytes
                .checked_add(msg.len())
                .is_none_or(|total| total > shared.max_bytes)
        {
            queue.refused = queue.refused.saturating_add(1);
            return Err(QueueError::Full);
        }
        queue.bytes += msg.len();
        queue.messages.push_back(msg);
        drop(queue);
        shared.notify.notify_one();
        Ok(())
    }
}

/// A logged-in connection's end of its outbox, held by its session.
#[derive(Debug)]
pub struct Outbox {
    /// The connection's id.
    pub conn_id: u64,
    /// The nick as registered.
    pub nick: String,
    shared: Arc<Shared>,
    replaced: Arc<AtomicBool>,
}

/// Why an outbox closed: the hub stopped delivering to this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Another login with the same certificate took the nick over.
    Replaced,
    /// The outbox overflowed: the connection did not keep up, and the hub dropped it.
    TooSlow,
}

impl Outbox {
    /// The next message, waiting for one; `Err` once the hub closed the outbox (after every
    /// message queued before that). Cancel-safe: a message is taken only when returned.
    pub async fn recv(&mut self) -> Result<Bytes, Closed> {
        loop {
            if let Some(msg) = self.try_recv()? {
                return Ok(msg);
            }
            self.shared.notify.notified().await;
        }
    }

    /// The next message if one is ready: `Ok(None)` when the outbox is empty, `Err` once the
    /// hub closed it (and it is empty).
    pub fn try_recv(&mut self) -> Result<Option<Bytes>, Closed> {
        let mut queue = self.shared.lock();
        match queue.messages.pop_front() {
            Some(msg) => {
                queue.bytes -= msg.len();
                Ok(Some(msg))
            }
            None if queue.closed => Err(self.why_closed()),
            None => Ok(None),
        }
    }

    /// Whether nothing waits in the outbox.
    pub fn is_empty(&self) -> bool {
        self.shared.lock().messages.is_empty()
    }

    /// Bytes of messages waiting in the outbox.
    pub fn queued_bytes(&self) -> usize {
        self.shared.lock().bytes
    }

    /// How many messages did not fit in this outbox (each makes the hub drop the connection as
    /// too slow).
    pub fn refused(&self) -> u64 {
        self.shared.lock().refused
    }

    /// Whether a login with the same certificate replaced this connection.
    pub fn is_replaced(&self) -> bool {
        self.replaced.load(Ordering::Relaxed)
    }

    /// Gives back the queue's memory if it is empty: for a session going idle (not after
    /// every message, which would allocate once per wake-up under load).
    pub fn shrink_idle(&mut self) {
        let mut queue = self.shared.lock();
        if queue.messages.is_empty() && queue.messages.capacity() > 0 {
            queue.messages = VecDeque::new();
        }
    }

    fn why_closed(&self) -> Closed {
        if self.is_replaced() {
            Closed::Replaced
        } else {
            Closed::TooSlow
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.gone = true;
        queue.messages = VecDeque::new();
        queue.bytes = 0;
    }
}

/// A new outbox for connection `conn_id` of the user `key`, holding at most `max_messages`
/// messages (at least 1) and `max_bytes` bytes of them; `replaced` is the flag the hub sets
/// when another login takes the nick over.
pub(crate) fn outbox(
    conn_id: u64,
    nick: &str,
    key: &str,
    max_messages: usize,
    max_bytes: usize,
    replaced: Arc<AtomicBool>,
) -> (OutboxSender, Outbox) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        notify: Notify::new(),
        max_messages: max_messages.max(1),
        max_bytes,
    });
    let sender = OutboxSender {
        conn_id,
        key: Arc::from(key),
        open: Arc::new(Open(Arc::clone(&shared))),
    };
    let outbox = Outbox {
        conn_id,
        nick: nick.to_owned(),
        shared,
        replaced,
    };
    (sender, outbox)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_session_gets_every_message_in_order_then_the_close() {
        let (tx, mut rx) = outbox(1, "a", "a", 64, usize::MAX, Arc::default());
        let pusher = std::thread::spawn(move || {
            let mut sent = 0u32;
            while sent < 20_000 {
                match tx.push(Bytes::from(sent.to_be_bytes().to_vec())) {
                    Ok(()) => sent += 1,
                    Err(QueueError::Full) => std::thread::yield_now(),
                    Err(QueueError::Closed) => panic!("the session is here"),
                }
            }
            // Dropping the last sender closes the outbox, after what it holds.
        });
        for expected in 0..20_000u32 {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
                .await
                .expect("a wake-up was lost")
                .unwrap();
            assert_eq!(msg[..], expected.to_be_bytes());
        }
        pusher.join().unwrap();
        assert_eq!(rx.recv().await, Err(Closed::TooSlow));
        assert_eq!(rx.queued_bytes(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recv_cancelled_by_select_loses_nothing_and_the_close_wakes_the_session() {
        for _round in 0..200 {
            let (tx, mut rx) = outbox(1, "a", "a", 8, 64, Arc::default());
            let pusher = std::thread::spawn(move || {
                let mut sent = 0u32;
                while sent < 2_000 {
                    match tx.push(Bytes::from(sent.to_be_bytes().to_vec())) {
                        Ok(()) => sent += 1,
                        Err(QueueError::Full) => std::thread::yield_now(),
                        Err(QueueError::Closed) => panic!("the session is here"),
                    }
                }
            });
            let (mut expected, mut spins) = (0u32, 0u32);
            loop {
                spins += 1;
                // As the session's select! does: recv is often dropped while it waits.
                let got = tokio::select! {
                    r = rx.recv() => r,
                    () = tokio::task::yield_now() => {
                        if spins % 3 != 0 {
                            continue;
                        }
                        match rx.try_recv() {
                            Ok(Some(msg)) => Ok(msg),
                            Ok(None) => continue,
                            Err(closed) => Err(closed),
                        }
                    }
                };
                match got {
                    Ok(msg) => {
                        assert_eq!(msg[..], expected.to_be_bytes());
                        expected += 1;
                        if rx.is_empty() {
                            rx.shrink_idle();
                        }
                    }
                    Err(closed) => {
                        assert_eq!(closed, Closed::TooSlow);
                        break;
                    }
                }
            }
            assert_eq!(expected, 2_000);
            assert_eq!(rx.queued_bytes(), 0);
            pusher.join().unwrap();
            // A session waiting when the last sender goes from another thread wakes up.
            let (tx, mut rx) = outbox(1, "a", "a", 8, 64, Arc::default());
            let dropper = std::thread::spawn(move || drop(tx));
            let closed = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
                .await
                .expect("hung after the close");
            assert_eq!(closed, Err(Closed::TooSlow));
            dropper.join().unwrap();
        }
    }

    #[test]
    fn bounds_idle_memory_and_a_gone_session() {
        let (tx, mut rx) = outbox(1, "a", "a", 2, 10, Arc::default());
        tx.push(Bytes::from_static(b"12345")).unwrap();
        assert_eq!(
            tx.push(Bytes::from_static(b"123456")),
            Err(QueueError::Full),
            "11 bytes"
        );
        tx.push(Bytes::from_static(b"12345")).unwrap();
        assert_eq!(tx.push(Bytes::from_static(b"1")), Err(QueueError::Full));
        assert_eq!(rx.queued_bytes(), 10);
        rx.shrink_idle();
        assert!(!rx.is_empty(), "nothing is dropped by shrinking");
        while rx.try_recv().unwrap().is_some() {}
        rx.shrink_idle();
        assert_eq!(rx.shared.lock().messages.capacity(), 0);
        drop(rx);
        assert_eq!(tx.push(Bytes::from_static(b"x")), Err(QueueError::Closed));
    }
}
