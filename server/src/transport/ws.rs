//! The WebSocket transport (RFC 6455) for the web client: each WebSocket **binary** message
//! carries exactly one payload (1 to [`MAX_FRAME_LEN`] bytes, no length prefix), over the
//! server's own TLS (PROTOCOL.md, "The web: HTTPS and WebSocket on the same port").
//!
//! tokio-tungstenite does the WebSocket framing (masking, fragments, control frames) with a
//! small configuration ([`config`]): a 512-byte read buffer (tungstenite's default allocates
//! 128 KiB per connection up front), messages and frames of at most 64 KiB (checked from the
//! frame header before the payload is read), a bounded write buffer, unmasked client frames
//! refused (RFC 6455 section 5.1). What is not a message of the protocol is a [`ReadError`]
//! that the session answers with a fatal `bad-frame`: a text message, an empty message, one
//! over the limit, a frame that breaks RFC 6455 (each with its own detail: reserved bits, a
//! reserved opcode, invalid UTF-8 in a Close reason, a Close status code that may not be sent,
//! ...), or more than [`MESSAGE_BYTE_BUDGET`] bytes of frames without a whole binary message (a
//! flood of tiny or empty continuation fragments, which tungstenite alone would read forever).
//! Only a whole binary message starts a new budget: pings and pongs count towards it, so that
//! pings interleaved with empty continuations cannot keep a message going forever (a client
//! must send a message at least every ~80 KiB of control frames; a browser sends no pings of
//! its own, and the web client's keep-alive is a protocol `Ping`, a binary message).
//!
//! Memory: tungstenite's read buffer is allocated whole at the upgrade, [`READ_BUFFER`] bytes
//! (its default, 128 KiB, would be zero-filled at the first read); it grows for a frame that
//! needs more, and reads take at most that much at a time. With the session's future kept
//! once (see `web::serve`), an idle WebSocket before login costs the server 17.5 KiB of RSS
//! against 11.7 KiB for an idle native connection, measured together in one debug server by the
//! e2e test `web::idle_websocket_connections_cost_little_memory_and_the_web_address_is_logged`
//! (28.1 KiB before: a 4 KiB read buffer, a second copy of the TLS connection and a second
//! session future's room; 157 KiB with tungstenite's default read buffer). Logged in, release
//! build, 10,000 idle clients (`mm-bench --transport ws idle`, BENCHMARKS.md "Web client:
//! WebSocket vs native"): 17.8 KiB per WebSocket against 12.7 KiB per native connection.
//! tungstenite's write buffer is drained but not shrunk after a burst, so a connection keeps
//! up to [`WRITE_BUFFER`] (plus one message) of it; [`Transport::shrink_idle`] cannot reach it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mm_common::frame::{FrameError, ReadError, MAX_FRAME_LEN};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::framed::TlsStream;
use super::{Queued, Transport};

/// tungstenite's read buffer at the upgrade, and the most it reads at once (its default is
/// 128 KiB): a login's messages fit; a larger frame grows it.
pub const READ_BUFFER: usize = 512;

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

/// The `bad-frame` detail of over [`MESSAGE_BYTE_BUDGET`] bytes of frames without a whole
/// message: a message in too many fragments, or control frames (pings) without messages.
pub const TOO_FRAGMENTED: &str =
    "malformed frame: over 81920 bytes of WebSocket frames without a whole message (too many fragments or control frames)";

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
    queued: Queued,
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
            queued: Queued::new(header_len),
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

/// The `bad-frame` detail of invalid UTF-8 where RFC 6455 wants text: tungstenite reports a
/// text message's and a Close reason's alike, so the detail names both.
pub const INVALID_UTF8: &str = "malformed frame: invalid UTF-8 in a WebSocket Close reason or text message (RFC 6455 sections 5.5.1 and 5.6)";

/// The `bad-frame` detail of a Close frame whose status code may not be sent: under 1000,
/// 1005, 1006, 1015, 1016 to 2999, 5000 and over (RFC 6455 section 7.4).
pub const BAD_CLOSE_CODE: &str =
    "malformed frame: a WebSocket Close with a status code that may not be sent (RFC 6455 section 7.4)";

/// The `bad-frame` detail of a protocol error of the client's frames (RFC 6455 section 5).
fn protocol_detail(e: &ProtocolError) -> String {
    let what = match e {
        ProtocolError::NonZeroReservedBits => {
            "a WebSocket frame with reserved bits set (RSV1-3; no extension was negotiated)".into()
        }
        ProtocolError::UnmaskedFrameFromClient => {
            "a WebSocket frame from the client is not masked (RFC 6455 section 5.1)".into()
        }
        ProtocolError::UnknownControlFrameType(op)
        | ProtocolError::UnknownDataFrameType(op)
        | ProtocolError::InvalidOpcode(op) => {
            format!("a WebSocket frame with the reserved opcode {op:#x} (RFC 6455 section 5.2)")
        }
        ProtocolError::FragmentedControlFrame => {
            "a fragmented WebSocket control frame (RFC 6455 section 5.5)".into()
        }
        ProtocolError::ControlFrameTooBig => {
            "a WebSocket control frame over 125 bytes (RFC 6455 section 5.5)".into()
        }
        ProtocolError::UnexpectedContinueFrame => {
            "a WebSocket continuation frame with no message to continue (RFC 6455 section 5.4)"
                .into()
        }
        ProtocolError::ExpectedFragment(_) => {
            "a new WebSocket message before the fragmented one ended (RFC 6455 section 5.4)".into()
        }
        ProtocolError::InvalidCloseSequence => {
            "a WebSocket Close frame with a 1-byte payload (RFC 6455 section 5.5.1)".into()
        }
        ProtocolError::ReceivedAfterClosing => {
            "a WebSocket frame after the client's Close (RFC 6455 section 5.5.1)".into()
        }
        other => format!("the WebSocket frames break RFC 6455 ({other})"),
    };
    format!("malformed frame: {what}")
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
        WsError::Utf8(_) => ReadError::Framing(INVALID_UTF8.into()),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | WsError::ConnectionClosed
        | WsError::AlreadyClosed => ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()),
        WsError::Protocol(p) => ReadError::Framing(protocol_detail(&p)),
        WsError::Capacity(c) => ReadError::Framing(format!("malformed frame: {c}")),
        other => ReadError::Io(std::io::Error::other(other.to_string())),
    }
}

/// Whether a Close read by tungstenite carried a status code that may not be sent: tungstenite
/// replaces such a code by 1002 with this reason before the Close reaches us (and answers it so).
/// A client's own 1002 with exactly this reason is taken for one too.
fn is_replaced_close(frame: Option<&CloseFrame>) -> bool {
    frame
        .is_some_and(|f| f.code == CloseCode::Protocol && f.reason.as_str() == "Protocol violation")
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
            match next.map_err(read_error)? {
                Message::Binary(payload) if payload.is_empty() => {
                    return Err(ReadError::Frame(FrameError::Empty));
                }
                Message::Binary(payload) if payload.len() > MAX_FRAME_LEN => {
                    return Err(ReadError::Frame(FrameError::TooLarge {
                        len: payload.len() as u64,
                    }));
                }
                Message::Binary(payload) => {
                    // Only a whole data message starts a new budget: control frames count
                    // towards the message they came amid (or before).
                    self.ws.get_mut().reset();
                    return Ok(Some(payload));
                }
                Message::Text(_) => return Err(ReadError::Framing(TEXT_MESSAGE.into())),
                Message::Close(frame) => {
                    // Boxed: its timer would otherwise sit in every session's read future.
                    Box::pin(self.answer_close()).await;
                    if is_replaced_close(frame.as_ref()) {
                        return Err(ReadError::Framing(BAD_CLOSE_CODE.into()));
                    }
                    return Ok(None);
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    fn queue(&mut self, payload: Bytes) {
        self.queued.push(payload);
    }

    fn pending(&self) -> usize {
        self.queued.bytes()
    }

    fn discard_pending(&mut self) {
        self.queued.clear();
    }

    /// Feeds every queued message to tungstenite as a binary message, then flushes once: one
    /// TLS write per wake-up (or one per [`WRITE_BUFFER`] of a larger batch).
    async fn flush(&mut self) -> std::io::Result<()> {
        while let Some(payload) = self.queued.pop() {
            self.ws
                .feed(Message::Binary(payload))
                .await
                .map_err(write_error)?;
        }
        self.ws.flush().await.map_err(write_error)
    }

    fn shrink_idle(&mut self) {
        self.queued.shrink_idle();
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
        assert_eq!(c.read_buffer_size, 512);
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

    /// A masked client frame (RFC 6455 section 5.2) with a zero mask: `first` is FIN, RSV and
    /// the opcode.
    fn raw_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first];
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    /// A transport and the raw client end of its stream.
    async fn raw_pair() -> (WsTransport<DuplexStream>, DuplexStream) {
        let (server, client) = tokio::io::duplex(1 << 20);
        let t = WsTransport::new(server, Vec::new(), Duration::from_secs(1)).await;
        (t, client)
    }

    /// What `recv` makes of `bytes` from the client: its error's text.
    async fn refusal_of(bytes: &[u8]) -> String {
        let (mut t, mut client) = raw_pair().await;
        client.write_all(bytes).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), t.recv()).await {
            Ok(Err(e)) => {
                assert!(matches!(e, ReadError::Framing(_)), "{e:?}");
                e.to_string()
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn pings_amid_empty_continuations_do_not_renew_the_fragment_budget() {
        let (mut t, mut client) = raw_pair().await;
        // A message begun, then 200 KiB of empty continuations, each after a ping: every ping
        // comes back out of tungstenite as a message of its own.
        let mut flood = raw_frame(0x02, &[1]);
        while flood.len() < 200 * 1024 {
            flood.extend_from_slice(&raw_frame(0x89, b""));
            flood.extend_from_slice(&raw_frame(0x00, b""));
        }
        let writer = tokio::spawn(async move {
            let _ = client.write_all(&flood).await;
            client
        });
        let read = tokio::time::timeout(Duration::from_secs(5), t.recv()).await;
        let e = read.expect("the flood is cut off").unwrap_err();
        assert_eq!(e.to_string(), TOO_FRAGMENTED);
        drop(t);
        let _ = writer.await;

        // Pings between whole messages are fine, and a whole message starts a new budget.
        let (mut t, mut client) = raw_pair().await;
        let mut ok = Vec::new();
        for _ in 0..3 {
            for _ in 0..(MESSAGE_BYTE_BUDGET / 6 / 2) {
                ok.extend_from_slice(&raw_frame(0x89, b""));
            }
            ok.extend_from_slice(&raw_frame(0x82, b"m"));
        }
        let writer = tokio::spawn(async move {
            let _ = client.write_all(&ok).await;
            client
        });
        for _ in 0..3 {
            assert_eq!(&t.recv().await.unwrap().unwrap()[..], b"m");
        }
        drop(t);
        let _ = writer.await;
    }

    #[tokio::test]
    async fn frames_that_break_rfc_6455_are_refused_with_what_is_wrong() {
        let bad_utf8_close = raw_frame(0x88, &[0x03, 0xe8, 0xff, 0xfe]);
        assert_eq!(refusal_of(&bad_utf8_close).await, INVALID_UTF8);
        for code in [999u16, 1005, 1006, 1015, 2000, 5000] {
            let close = raw_frame(0x88, &code.to_be_bytes());
            assert_eq!(refusal_of(&close).await, BAD_CLOSE_CODE, "{code}");
        }
        let rsv = refusal_of(&raw_frame(0x80 | 0x40 | 0x02, b"x")).await;
        assert!(rsv.contains("reserved bits"), "{rsv}");
        let data_op = refusal_of(&raw_frame(0x83, b"x")).await;
        assert!(data_op.contains("reserved opcode 0x3"), "{data_op}");
        let ctl_op = refusal_of(&raw_frame(0x8b, b"")).await;
        assert!(ctl_op.contains("reserved opcode 0xb"), "{ctl_op}");
        let one_byte_close = refusal_of(&raw_frame(0x88, &[3])).await;
        assert!(one_byte_close.contains("1-byte"), "{one_byte_close}");
        let stray = refusal_of(&raw_frame(0x80, b"x")).await;
        assert!(stray.contains("no message to continue"), "{stray}");
        let mut interleaved = raw_frame(0x02, b"a");
        interleaved.extend_from_slice(&raw_frame(0x82, b"b"));
        let interleaved = refusal_of(&interleaved).await;
        assert!(
            interleaved.contains("before the fragmented one"),
            "{interleaved}"
        );
        let long_ping = refusal_of(&raw_frame(0x89, &[0; 126])).await;
        assert!(long_ping.contains("over 125 bytes"), "{long_ping}");
        let split_ping = refusal_of(&raw_frame(0x09, b"")).await;
        assert!(
            split_ping.contains("fragmented WebSocket control"),
            "{split_ping}"
        );

        // An ordinary Close (a permitted code, a UTF-8 reason) just ends the connection.
        let (mut t, mut client) = raw_pair().await;
        client
            .write_all(&raw_frame(0x88, &[0x03, 0xe8, b'o', b'k']))
            .await
            .unwrap();
        assert!(t.recv().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn largest_messages_pass_both_ways_whole_or_in_fragments() {
        let (mut t, mut c) = pair().await;
        let big: Bytes = (0..MAX_FRAME_LEN).map(|i| (i % 251) as u8).collect();
        c.send(Message::Binary(big.clone())).await.unwrap();
        assert_eq!(t.recv().await.unwrap().unwrap(), big);
        // In 1000-byte fragments, with a ping amid them.
        let (mut t, mut client) = raw_pair().await;
        let mut wire = Vec::new();
        let chunks: Vec<&[u8]> = big.chunks(1000).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let fin = if i + 1 == chunks.len() { 0x80 } else { 0 };
            let op = if i == 0 { 0x02 } else { 0x00 };
            wire.extend_from_slice(&raw_frame(fin | op, chunk));
            if i == 10 {
                wire.extend_from_slice(&raw_frame(0x89, b"p"));
            }
        }
        client.write_all(&wire).await.unwrap();
        assert_eq!(t.recv().await.unwrap().unwrap(), big);
        t.queue(big.clone());
        t.flush().await.unwrap();
        let mut c = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        loop {
            match c.next().await.unwrap().unwrap() {
                Message::Binary(b) => {
                    assert_eq!(b, big);
                    break;
                }
                Message::Pong(_) => {}
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_close_ends_reading_and_is_answered() {
        let (mut t, mut c) = pair().await;
        c.close(None).await.unwrap();
        assert!(t.recv().await.unwrap().is_none());
        assert!(matches!(c.next().await, Some(Ok(Message::Close(_)))));
    }
}
