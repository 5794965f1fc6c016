//! The WebSocket transport (RFC 6455) for the web client: each WebSocket **binary** message
//! carries exactly one payload (1 to [`MAX_FRAME_LEN`] bytes, no length prefix), over the
//! server's own TLS (PROTOCOL.md, "The web: HTTPS and WebSocket on the same port").
//!
//! tokio-tungstenite does the WebSocket framing (masking, fragments, control frames) with a
//! small configuration ([`config`]): a 4 KiB read buffer (tungstenite's default allocates
//! 128 KiB per connection up front), messages and frames of at most 64 KiB (checked from the
//! frame header before the payload is read), a bounded write buffer, unmasked client frames
//! refused (RFC 6455 section 5.1). What is not a message of the protocol is a [`ReadError`]
//! that the session answers with a fatal `bad-frame`: a text message, an empty message, one
//! over the limit, a frame that breaks RFC 6455, or more than [`MESSAGE_BYTE_BUDGET`] bytes of
//! frames without a whole message (a flood of tiny or empty continuation fragments, which
//! tungstenite alone would read forever).
//!
//! Memory: tungstenite's read buffer is allocated whole at the upgrade (4 KiB here; an idle
//! WebSocket costs the server ~29 KiB of RSS with TLS and all, 157 KiB with tungstenite's default
//! read buffer: measured by the e2e test `web::idle_websocket_connections_cost_little_memory...`).
//! Its write buffer is drained but not shrunk after a burst, so a connection keeps up to
//! [`WRITE_BUFFER`] (plus one message) of it; [`Transport::shrink_idle`] cannot reach it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mm_common::frame::{FrameError, ReadError, MAX_FRAME_LEN};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::framed::TlsStream;
use super::Transport;

/// tungstenite's read buffer: allocated once per connection (its default is 128 KiB).
pub const READ_BUFFER: usize = 4 * 1024;

/// Bytes of outgoing frames collected before tungstenite writes them to TLS on its own (a
/// [`Transport::flush`] writes whatever is collected anyway): one session batch.
pub const WRITE_BUFFER: usize = 16 * 1024;

/// Most bytes tungstenite's write buffer may hold: one batch and one largest message with its
/// header (RFC 6455 section 5.2: at most 10 bytes for a server's frame).
pub const MAX_WRITE_BUFFER: usize = WRITE_BUFFER + MAX_FRAME_LEN + 64;

/// Most bytes of WebSocket frames read from the client for one message (headers and control
/// frames included): a whole 64 KiB message in frames of any sensible size fits well within it;
/// a flood of tiny or empty continuation fragments does not.
pub const MESSAGE_BYTE_BUDGET: usize = MAX_FRAME_LEN + 16 * 1024;

/// The `bad-frame` detail of a text message.
pub const TEXT_MESSAGE: &str =
    "malformed frame: a WebSocket text message (each message is one binary WebSocket message)";

/// The `bad-frame` detail of a message sent in too many fragments.
pub const TOO_FRAGMENTED: &str =
    "malformed frame: a WebSocket message in too many fragments (over 81920 bytes of frames)";

/// The WebSocket configuration of every connection (see the module).
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(MAX_FRAME_LEN))
        .max_frame_size(Some(MAX_FRAME_LEN))
        .accept_unmasked_frames(false)
}

/// The marker of a [`Metered`] stream over its budget.
#[derive(Debug, thiserror::Error)]
#[error("{TOO_FRAGMENTED}")]
struct OverBudget;

/// A byte stream that counts what is read from it since the last whole message and fails
/// reads past [`MESSAGE_BYTE_BUDGET`].
#[derive(Debug)]
pub struct Metered<S> {
    inner: S,
    read: usize,
}

impl<S> Metered<S> {
    fn reset(&mut self) {
        self.read = 0;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.read > MESSAGE_BYTE_BUDGET {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                OverBudget,
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.read = self.read.saturating_add(n);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Messages as WebSocket binary messages over a byte stream `S` (see the module).
#[derive(Debug)]
pub struct WsTransport<S> {
    ws: WebSocketStream<Metered<S>>,
    queued: Vec<Bytes>,
    queued_bytes: usize,
    /// How long answering the client's Close may take (the session's write timeout).
    close_wait: Duration,
}

impl WsTransport<TlsStream> {
    /// The transport of an upgraded TLS connection: caps what rustls buffers for it as the
    /// native transport does; `part` is what was read after the upgrade request's head.
    pub async fn tls(mut stream: TlsStream, part: Vec<u8>, close_wait: Duration) -> Self {
        stream
            .get_mut()
            .1
            .set_buffer_limit(Some(super::framed::TLS_BUFFER_LIMIT));
        WsTransport::new(stream, part, close_wait).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsTransport<S> {
    /// Wraps a stream whose upgrade (RFC 6455 section 4.2.2) is done, as the server side, with
    /// `part` the bytes already read after the request's head (the first frames, if the client
    /// did not wait for the 101).
    pub async fn new(stream: S, part: Vec<u8>, close_wait: Duration) -> Self {
        let metered = Metered {
            inner: stream,
            read: 0,
        };
        let ws =
            WebSocketStream::from_partially_read(metered, part, Role::Server, Some(config())).await;
        WsTransport {
            ws,
            queued: Vec::new(),
            queued_bytes: 0,
            close_wait,
        }
    }

    /// After the client's Close: sends tungstenite's reply (queued when it read the Close),
    /// then TLS close_notify, within `close_wait`.
    async fn answer_close(&mut self) {
        let _ = tokio::time::timeout(self.close_wait, async {
            let _ = self.ws.flush().await;
            let _ = self.ws.get_mut().inner.shutdown().await;
        })
        .await;
    }
}

/// A WebSocket frame header's length for a payload of `len` bytes from the server (RFC 6455
/// section 5.2: no mask; 7-bit, 16-bit or 64-bit length).
fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// The session's view of a tungstenite read error.
fn read_error(e: WsError) -> ReadError {
    match e {
        WsError::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<OverBudget>()) => {
            ReadError::Framing(TOO_FRAGMENTED.into())
        }
        WsError::Io(io) => ReadError::Io(io),
        WsError::Capacity(CapacityError::MessageTooLong { size, .. }) => {
            ReadError::Frame(FrameError::TooLarge { len: size as u64 })
        }
        WsError::Utf8(_) => ReadError::Framing(TEXT_MESSAGE.into()),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | WsError::ConnectionClosed
        | WsError::AlreadyClosed => ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()),
        WsError::Protocol(ProtocolError::UnmaskedFrameFromClient) => ReadError::Framing(
            "malformed frame: a WebSocket frame from the client is not masked (RFC 6455 section 5.1)"
                .into(),
        ),
        WsError::Protocol(_) | WsError::Capacity(_) => ReadError::Framing(
            "malformed frame: the WebSocket frames break RFC 6455 (reserved bits or opcodes, a fragmented or long control frame, a continuation out of place)"
                .into(),
        ),
        other => ReadError::Io(std::io::Error::other(other.to_string())),
    }
}

/// The error of a write, as the session sees it.
fn write_error(e: WsError) -> std::io::Error {
    match e {
        WsError::Io(io) => io,
        other => std::io::Error::new(std::io::ErrorKind::BrokenPipe, other.to_string()),
    }
}

impl<S> Transport for WsTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Cancel-safe: `StreamExt::next` on tungstenite's stream keeps a partly read frame in its
    /// buffer; pings are answered by tungstenite (the pong goes out with the next read or
    /// flush, which the loop's next read is).
    async fn recv(&mut self) -> Result<Option<Bytes>, ReadError> {
        loop {
            let Some(next) = self.ws.next().await else {
                return Ok(None);
            };
            self.ws.get_mut().reset();
            match next.map_err(read_error)? {
                Message::Binary(payload) if payload.is_empty() => {
                    return Err(ReadError::Frame(FrameError::Empty));
                }
                Message::Binary(payload) if payload.len() > MAX_FRAME_LEN => {
                    return Err(ReadError::Frame(FrameError::TooLarge {
                        len: payload.len() as u64,
                    }));
                }
                Message::Binary(payload) => return Ok(Some(payload)),
                Message::Text(_) => return Err(ReadError::Framing(TEXT_MESSAGE.into())),
                Message::Close(_) => {
                    self.answer_close().await;
                    return Ok(None);
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    fn queue(&mut self, payload: Bytes) {
        self.queued_bytes += header_len(payload.len()) + payload.len();
        self.queued.push(payload);
    }

    fn pending(&self) -> usize {
        self.queued_bytes
    }

    fn discard_pending(&mut self) {
        self.queued.clear();
        self.queued_bytes = 0;
    }

    /// Feeds every queued message to tungstenite as a binary message, then flushes once: one
    /// TLS write per wake-up (or one per [`WRITE_BUFFER`] of a larger batch).
    async fn flush(&mut self) -> std::io::Result<()> {
        self.queued_bytes = 0;
        for payload in self.queued.drain(..) {
            self.ws
                .feed(Message::Binary(payload))
                .await
                .map_err(write_error)?;
        }
        self.ws.flush().await.map_err(write_error)
    }

    fn shrink_idle(&mut self) {
        if self.queued.is_empty() && self.queued.capacity() > 16 {
            self.queued = Vec::new();
        }
    }

    /// Sends a Close frame (RFC 6455 section 5.5.1), then TLS close_notify and the TCP write
    /// shutdown; the client's Close is read by [`Transport::read_discard`].
    async fn close(&mut self) -> std::io::Result<()> {
        self.ws.close(None).await.map_err(write_error)?;
        self.ws.get_mut().inner.shutdown().await
    }

    async fn read_discard(&mut self) -> std::io::Result<usize> {
        match self.ws.next().await {
            None => Ok(0),
            Some(Ok(msg)) => Ok(msg.len().max(1)),
            Some(Err(WsError::Io(e))) => Err(e),
            Some(Err(e)) => Err(std::io::Error::other(e.to_string())),
        }
    }

    /// None: a WebSocket client presents no client certificate; it logs in with an account key.
    fn peer_fingerprint(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use mm_common::protocol::{ClientMsg, ServerMsg, PROTOCOL_VERSION};
    use tokio::io::DuplexStream;

    use super::*;

    async fn pair() -> (WsTransport<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (server, client) = tokio::io::duplex(1 << 18);
        let t = WsTransport::new(server, Vec::new(), Duration::from_secs(1)).await;
        let c = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        (t, c)
    }

    #[test]
    fn the_configuration_is_small() {
        let c = config();
        assert_eq!(c.read_buffer_size, 4096);
        assert_eq!(c.max_message_size, Some(65536));
        assert_eq!(c.max_frame_size, Some(65536));
        assert!(!c.accept_unmasked_frames);
        assert!(c.max_write_buffer_size > c.write_buffer_size + MAX_FRAME_LEN + 10);
        assert_eq!(
            TOO_FRAGMENTED.contains("81920"),
            MESSAGE_BYTE_BUDGET == 81920
        );
    }

    #[tokio::test]
    async fn binary_messages_are_payloads_both_ways() {
        let (mut t, mut c) = pair().await;
        let hello = ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            nick: "alice".into(),
        };
        let payload = mm_common::frame::encode_message(&hello).unwrap();
        c.send(Message::Binary(payload.clone())).await.unwrap();
        c.send(Message::Ping(Bytes::from_static(b"p")))
            .await
            .unwrap();
        c.send(Message::Binary(payload.clone())).await.unwrap();
        assert_eq!(t.recv().await.unwrap().unwrap(), payload);
        // The ping is answered while the next message is read.
        assert_eq!(t.recv().await.unwrap().unwrap(), payload);

        t.queue_msg(&ServerMsg::Pong { token: 1 });
        t.queue_msg(&ServerMsg::Pong { token: 2 });
        assert!(t.pending() > 0);
        t.flush().await.unwrap();
        assert_eq!(t.pending(), 0);
        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.push(c.next().await.unwrap().unwrap());
        }
        assert!(matches!(&seen[0], Message::Pong(p) if &p[..] == b"p"));
        for (msg, token) in seen[1..].iter().zip([1, 2]) {
            let Message::Binary(b) = msg else {
                panic!("{msg:?}")
            };
            assert_eq!(ServerMsg::decode(b).unwrap(), ServerMsg::Pong { token });
        }
        assert_eq!(t.peer_fingerprint(), None);
    }

    #[tokio::test]
    async fn text_empty_and_oversized_messages_are_bad_frames() {
        let (mut t, mut c) = pair().await;
        c.send(Message::Text("hi".into())).await.unwrap();
        let e = t.recv().await.unwrap_err();
        assert!(matches!(e, ReadError::Framing(_)), "{e}");
        assert_eq!(e.to_string(), TEXT_MESSAGE);
        c.send(Message::Binary(Bytes::new())).await.unwrap();
        assert!(matches!(
            t.recv().await,
            Err(ReadError::Frame(FrameError::Empty))
        ));

        let (mut t, mut c) = pair().await;
        c.send(Message::Binary(vec![0; MAX_FRAME_LEN + 1].into()))
            .await
            .unwrap();
        let e = t.recv().await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "frame too long: 65537 bytes, the limit is 65536"
        );
    }

    #[tokio::test]
    async fn a_close_ends_reading_and_is_answered() {
        let (mut t, mut c) = pair().await;
        c.close(None).await.unwrap();
        assert!(t.recv().await.unwrap().is_none());
        assert!(matches!(c.next().await, Some(Ok(Message::Close(_)))));
    }
}
