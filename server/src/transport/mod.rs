//! How a session exchanges messages with its client: the [`Transport`] trait, below the
//! session and above the bytes.
//!
//! A transport carries *messages*: each one postcard-encoded payload of 1 to
//! [`MAX_FRAME_LEN`](mm_common::frame::MAX_FRAME_LEN) bytes (a `ClientMsg` in, a `ServerMsg`
//! out). How they are delimited on the wire is the transport's business: [`framed::Framed`]
//! (TLS over TCP, the native transport) puts the 4-byte length prefix of PROTOCOL.md in
//! front of each, and nothing else in the server knows that prefix; [`ws::WsTransport`] (the
//! web client's) sends each as one WebSocket binary message; [`memory::MemoryTransport`]
//! passes them through channels, so that tests run real sessions with many clients, no sockets
//! and tokio's paused clock. (Like Ergo's `IRCConn`, one message-level interface with one
//! implementation per carrier.)
//!
//! Writing is in two steps, as one write per wake-up needs: [`Transport::queue`] collects
//! messages (no I/O), [`Transport::flush`] sends all that is collected. Reading is one message
//! per [`Transport::recv`], cancel-safe, so that a session can `select!` over it.

pub mod framed;
pub mod memory;
pub mod ws;

use std::collections::VecDeque;
use std::future::Future;

use bytes::Bytes;
use mm_common::frame;
use mm_common::protocol::ServerMsg;

pub use mm_common::frame::ReadError;

/// One client connection, message by message. Sessions are generic over it (static dispatch: no
/// boxing per message).
pub trait Transport: Send {
    /// The next message from the client: its payload (1 to 64 KiB), or `Ok(None)` when the
    /// client closed cleanly between messages.
    ///
    /// Cancel-safe: whatever arrived before the future is dropped stays for the next call.
    ///
    /// # Errors
    /// [`ReadError::Io`] when the connection fails; [`ReadError::Frame`] or
    /// [`ReadError::Truncated`] when the client's bytes are not messages (the connection is
    /// then unusable).
    fn recv(&mut self) -> impl Future<Output = Result<Option<Bytes>, ReadError>> + Send;

    /// Queues one encoded message (see [`frame::encode_message`]) for the next
    /// [`flush`](Transport::flush). Takes the handle, so a message shared between recipients
    /// is not copied before the transport has to.
    fn queue(&mut self, payload: Bytes);

    /// Encodes `msg` and queues it. Messages the server builds always fit in a frame; if one
    /// does not, it is logged and dropped rather than sent broken.
    fn queue_msg(&mut self, msg: &ServerMsg) {
        match frame::encode_message(msg) {
            Ok(payload) => self.queue(payload),
            Err(e) => log_unsendable(&e),
        }
    }

    /// Bytes queued and not yet flushed, as the transport will send them (for the TLS
    /// transport: 4 bytes of length per message included). Bounds one write.
    fn pending(&self) -> usize;

    /// Forgets every queued message (before a last error to a client that cannot keep up
    /// anyway). Only whole messages are ever queued, so what follows is still well formed.
    fn discard_pending(&mut self);

    /// Sends everything queued, in order, and waits until it is handed to the connection (for
    /// TLS: written and flushed to the socket). Not cancel-safe: callers put a timeout around it
    /// and drop the connection when it fires.
    ///
    /// # Errors
    /// I/O errors (the client is gone).
    fn flush(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Frees buffers a burst left behind, if nothing is queued. Called when the connection goes
    /// idle, so that idle connections cost little.
    fn shrink_idle(&mut self);

    /// Ends the sending side, after a [`flush`](Transport::flush): for TLS, close_notify and
    /// the TCP write shutdown. The client can still send (see
    /// [`read_discard`](Transport::read_discard)).
    ///
    /// # Errors
    /// I/O errors.
    fn close(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Waits for whatever the client still sends after [`close`](Transport::close) and throws it
    /// away; returns how much (bytes, or for in-memory transports the message's length) or `0`
    /// once the client closed too.
    ///
    /// # Errors
    /// I/O errors.
    fn read_discard(&mut self) -> impl Future<Output = std::io::Result<usize>> + Send;

    /// The SHA-256 fingerprint (lowercase hex, as `mm_certs::fingerprint`) of the client
    /// certificate the client proved it holds, if it presented one: the account's identity at
    /// login.
    fn peer_fingerprint(&self) -> Option<String>;
}

/// Whole messages queued for the next flush, for transports that send them one by one (the
/// WebSocket and in-memory ones), with their size on the wire: each payload's length plus
/// the carrier's own bytes for it (`overhead`: a WebSocket frame header; nothing in memory).
#[derive(Debug)]
pub struct Queued {
    messages: VecDeque<Bytes>,
    /// Wire bytes of `messages`.
    bytes: usize,
    overhead: fn(usize) -> usize,
}

impl Queued {
    /// An empty queue whose messages cost `overhead(len)` bytes besides their `len`.
    pub fn new(overhead: fn(usize) -> usize) -> Queued {
        Queued {
            messages: VecDeque::new(),
            bytes: 0,
            overhead,
        }
    }

    /// Queues a message at the back.
    pub fn push(&mut self, payload: Bytes) {
        self.bytes += payload.len() + (self.overhead)(payload.len());
        self.messages.push_back(payload);
    }

    /// The first message, taken off the queue.
    pub fn pop(&mut self) -> Option<Bytes> {
        let payload = self.messages.pop_front()?;
        self.bytes = self
            .bytes
            .saturating_sub(payload.len() + (self.overhead)(payload.len()));
        Some(payload)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Wire bytes queued ([`Transport::pending`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets every message ([`Transport::discard_pending`]).
    pub fn clear(&mut self) {
        self.messages.clear();
        self.bytes = 0;
    }

    /// Frees the queue's room if it is empty ([`Transport::shrink_idle`]).
    pub fn shrink_idle(&mut self) {
        if self.messages.is_empty() && self.messages.capacity() > 0 {
            self.messages = VecDeque::new();
        }
    }
}

/// Logs a message the server built but cannot send (a bug: the server's messages fit in a frame).
fn log_unsendable(e: &frame::EncodeError) {
    tracing::error!(error = %e, "dropping a server message that does not fit in a frame");
}
