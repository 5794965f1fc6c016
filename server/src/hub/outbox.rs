//! A connection's outbox: the one bounded queue through which everything for a logged-in
//! connection passes, in the order the hub accepted it. The hub's side (`OutboxSender`) is
//! what the `Bus` delivers into; the session's side ([`Outbox`]) is what it
//! drains onto its transport.
//!
//! The queue is bounded twice: in messages (a tokio `mpsc` channel) and in bytes (a shared
//! counter, so that a few large messages cannot hold megabytes). A full outbox never makes
//! anybody wait: the sender learns `QueueError::Full` and the hub disconnects that connection
//! as too slow. Not to be confused with a *mailbox* (PROTOCOL.md: the personal lines the store
//! keeps for a user until their client acknowledges them).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Why a message could not be put into an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// The outbox is full, in messages or in bytes: its reader is too slow.
    Full,
    /// The session is gone (its [`Outbox`] was dropped).
    Closed,
}

/// The hub's end of a connection's outbox. Cheap to clone (two reference counts); the outbox
/// closes for the session once every clone is dropped (unsubscribed from every topic).
#[derive(Debug, Clone)]
pub(crate) struct OutboxSender {
    /// The connection this outbox belongs to.
    pub conn_id: u64,
    /// Its user's [`nick_key`](mm_common::protocol::nick_key), shared by every clone.
    pub key: Arc<str>,
    queue: mpsc::Sender<Bytes>,
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl OutboxSender {
    /// Queues one encoded message (a `ServerMsg` payload, no frame header), keeping the outbox
    /// within its message and byte bounds.
    pub fn push(&self, msg: Bytes) -> Result<(), QueueError> {
        let len = msg.len();
        // Counted before sending so that the session's subtraction can never come first.
        let before = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before.saturating_add(len) > self.max_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(QueueError::Full);
        }
        self.queue.try_send(msg).map_err(|e| {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => QueueError::Full,
                mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
            }
        })
    }
}

/// A logged-in connection's end of its outbox, held by its session.
#[derive(Debug)]
pub struct Outbox {
    /// The connection's id.
    pub conn_id: u64,
    /// The nick as registered.
    pub nick: String,
    queue: mpsc::Receiver<Bytes>,
    queued_bytes: Arc<AtomicUsize>,
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
    /// message queued before that).
    pub async fn recv(&mut self) -> Result<Bytes, Closed> {
        match self.queue.recv().await {
            Some(msg) => Ok(self.taken(msg)),
            None => Err(self.why_closed()),
        }
    }

    /// The next message if one is ready: `Ok(None)` when the outbox is empty, `Err` once the
    /// hub closed it.
    pub fn try_recv(&mut self) -> Result<Option<Bytes>, Closed> {
        match self.queue.try_recv() {
            Ok(msg) => Ok(Some(self.taken(msg))),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(self.why_closed()),
        }
    }

    /// Whether nothing waits in the outbox.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes of messages waiting in the outbox.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// Whether a login with the same certificate replaced this connection.
    pub fn is_replaced(&self) -> bool {
        self.replaced.load(Ordering::Relaxed)
    }

    fn taken(&self, msg: Bytes) -> Bytes {
        self.queued_bytes.fetch_sub(msg.len(), Ordering::Relaxed);
        msg
    }

    fn why_closed(&self) -> Closed {
        if self.is_replaced() {
            Closed::Replaced
        } else {
            Closed::TooSlow
        }
    }
}

/// A new outbox for connection `conn_id` of the user `key`, holding at most `max_messages`
/// messages and `max_bytes` bytes of them; `replaced` is the flag the hub sets when another
/// login takes the nick over.
pub(crate) fn outbox(
    conn_id: u64,
    nick: &str,
    key: &str,
    max_messages: usize,
    max_bytes: usize,
    replaced: Arc<AtomicBool>,
) -> (OutboxSender, Outbox) {
    let (tx, rx) = mpsc::channel(max_messages.max(1));
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let sender = OutboxSender {
        conn_id,
        key: Arc::from(key),
        queue: tx,
        queued_bytes: Arc::clone(&queued_bytes),
        max_bytes,
    };
    let outbox = Outbox {
        conn_id,
        nick: nick.to_owned(),
        queue: rx,
        queued_bytes,
        replaced,
    };
    (sender, outbox)
}
