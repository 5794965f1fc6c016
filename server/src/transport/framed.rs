//! The server's transport: messages as length-prefixed frames (PROTOCOL.md: a 4-byte
//! big-endian length, then the message) over a byte stream, TLS over TCP in production.
//!
//! It owns a read buffer ([`FrameReader`]: 1 KiB per read, grown only as far as the next frame
//! needs, never past the frame limit) and a write buffer that collects every frame ready for the
//! client, so that they leave in one TLS write and one flush. The length prefix is added here,
//! as a message is queued, and nowhere else in the server.

use bytes::{Buf, Bytes, BytesMut};
use mm_common::frame::{self, FrameReader, ReadError};
use mm_common::protocol::ServerMsg;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Transport;

/// The production stream: TLS over an accepted TCP connection.
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// Plaintext rustls may hold for a connection that is slow to take it; beyond this, writes wait
/// (and the session's write timeout applies) instead of buffering more.
pub(crate) const TLS_BUFFER_LIMIT: usize = 32 * 1024;

/// A write buffer bigger than this after a flush is given back at once (after a burst).
const KEEP_AFTER_FLUSH: usize = 32 * 1024;

/// A write buffer bigger than this is given back when the connection goes idle.
const KEEP_WHEN_IDLE: usize = 4 * 1024;

/// A byte stream that knows the certificate its client presented (TLS).
pub trait PeerCertificate {
    /// The fingerprint of the client's certificate, as [`Transport::peer_fingerprint`].
    fn peer_fingerprint(&self) -> Option<String>;
}

impl<IO> PeerCertificate for tokio_rustls::server::TlsStream<IO> {
    fn peer_fingerprint(&self) -> Option<String> {
        // TLS proved the client holds the key of this certificate (if it sent one).
        self.get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| mm_certs::fingerprint(cert))
    }
}

/// A byte stream that can wait for input without a buffer to read it into.
pub trait ReadReady {
    /// Returns once a read may find something (input, the end, an error), or at once if the
    /// stream cannot tell. A read buffer handed to the stream before then would be held for as
    /// long as the client stays silent.
    fn read_ready(&self) -> impl std::future::Future<Output = ()> + Send;
}

impl ReadReady for TlsStream {
    /// Waits on the socket only while rustls holds no plaintext and no close_notify
    /// (`wants_read`): records it has already taken in are processed as they arrive, so then
    /// only the socket can bring more. rustls' own read buffer (4 KiB, its deframer) is allocated
    /// by its first read and kept; this spares the session's read buffer.
    async fn read_ready(&self) {
        let (tcp, tls) = self.get_ref();
        if tls.wants_read() {
            // An error shows again at the read that follows.
            let _ = tcp.readable().await;
        }
    }
}

/// Messages framed over a byte stream `S` (see the module).
#[derive(Debug)]
pub struct Framed<S> {
    stream: S,
    reader: FrameReader,
    write_buf: BytesMut,
}

impl Framed<TlsStream> {
    /// The transport of an accepted TLS connection: caps what rustls buffers for it at 32 KiB.
    pub fn tls(mut stream: TlsStream) -> Self {
        stream.get_mut().1.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Framed::new(stream)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    /// Wraps a stream; allocates nothing until the first read or write.
    pub fn new(stream: S) -> Self {
        Framed {
            stream,
            reader: FrameReader::new(),
            write_buf: BytesMut::new(),
        }
    }
}

impl<S> Transport for Framed<S>
where
    S: AsyncRead + AsyncWrite + PeerCertificate + ReadReady + Unpin + Sync + Send,
{
    async fn recv(&mut self) -> Result<Option<Bytes>, ReadError> {
        if self.reader.buffered() == 0 {
            // Between messages (the usual state of an idle connection): wait for input with no
            // read buffer, instead of with the 1 KiB one a read reserves. Cancel-safe: nothing
            // is read before the stream is ready.
            self.reader.release_if_empty();
            self.stream.read_ready().await;
        }
        // The payload shares the read buffer's allocation; freezing it copies nothing.
        Ok(self
            .reader
            .read_frame(&mut self.stream)
            .await?
            .map(BytesMut::freeze))
    }

    fn queue(&mut self, payload: Bytes) {
        if let Err(e) = frame::put_frame(&payload, &mut self.write_buf) {
            super::log_unsendable(&e);
        }
    }

    /// Encodes `msg` straight into the write buffer, header included: no allocation per
    /// message.
    fn queue_msg(&mut self, msg: &ServerMsg) {
        if let Err(e) = frame::encode_into(msg, &mut self.write_buf) {
            super::log_unsendable(&e);
        }
    }

    fn pending(&self) -> usize {
        self.write_buf.len()
    }

    fn discard_pending(&mut self) {
        self.write_buf.clear();
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        while self.write_buf.has_remaining() {
            let n = self.stream.write(&self.write_buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.write_buf.advance(n);
        }
        self.stream.flush().await?;
        // Give a large buffer back after a burst. What was written was advanced over, and
        // `capacity()` counts only the room after it: reclaim it (nothing to copy, the buffer
        // is empty) to see, and keep using, the whole allocation.
        if self.write_buf.try_reclaim(KEEP_AFTER_FLUSH + 1) {
            self.write_buf = BytesMut::new();
        }
        Ok(())
    }

    /// Frees the write buffer if it is empty and not small: otherwise every idle connection
    /// keeps whatever its largest write needed (the online list at login: ~6 KiB per connection
    /// with 2,000 users, measured with massif). Not done after every write, which cost a third
    /// of fan-out throughput in reallocations.
    ///
    /// The size is the whole allocation's (see [`Framed::flush`]): a buffer that was written
    /// from reports only the room after what it wrote, so a 7 KiB login burst in an 8 KiB
    /// buffer looked like 1 KiB and was kept (~3.9 KB per idle connection with 2,000 users,
    /// massif).
    fn shrink_idle(&mut self) {
        if self.write_buf.is_empty() && self.write_buf.try_reclaim(KEEP_WHEN_IDLE + 1) {
            self.write_buf = BytesMut::new();
        }
    }

    /// Sends TLS close_notify and shuts the TCP write side.
    async fn close(&mut self) -> std::io::Result<()> {
        self.stream.shutdown().await
    }

    async fn read_discard(&mut self) -> std::io::Result<usize> {
        self.reader.read_discard(&mut self.stream).await
    }

    fn peer_fingerprint(&self) -> Option<String> {
        self.stream.peer_fingerprint()
    }
}

#[cfg(test)]
mod tests {
    use mm_common::protocol::{ClientMsg, PROTOCOL_VERSION};
    use tokio::io::{AsyncReadExt, DuplexStream};

    use super::*;

    impl PeerCertificate for DuplexStream {
        fn peer_fingerprint(&self) -> Option<String> {
            None
        }
    }

    impl ReadReady for DuplexStream {
        async fn read_ready(&self) {}
    }

    #[tokio::test]
    async fn an_idle_connection_keeps_no_buffer_its_login_needed() {
        let (server, mut client) = tokio::io::duplex(1 << 16);
        let mut t = Framed::new(server);
        // A login-sized burst: ~7 KiB in a buffer that grew to 8 KiB.
        let nicks: Vec<String> = (0..1000).map(|i| format!("n{i}")).collect();
        t.queue_msg(&ServerMsg::Users { nicks, last: true });
        let len = t.pending();
        assert!(len > KEEP_WHEN_IDLE && len <= 2 * KEEP_WHEN_IDLE, "{len}");
        t.flush().await.unwrap();
        let mut wire = vec![0; len];
        client.read_exact(&mut wire).await.unwrap();
        t.shrink_idle();
        assert_eq!(t.write_buf.capacity(), 0);

        // A small buffer stays for the next message.
        t.queue_msg(&ServerMsg::Pong { token: 1 });
        t.flush().await.unwrap();
        t.shrink_idle();
        assert!(t.write_buf.capacity() > 0);
    }

    #[tokio::test]
    async fn messages_go_out_as_length_prefixed_frames_in_one_write() {
        let (server, mut client) = tokio::io::duplex(1 << 16);
        let mut t = Framed::new(server);
        let shared = frame::encode_message(&ServerMsg::Ping { token: 7 }).unwrap();
        t.queue(shared.clone());
        t.queue_msg(&ServerMsg::Pong { token: 8 });
        assert_eq!(t.pending(), 2 * frame::HEADER_LEN + shared.len() * 2);
        t.flush().await.unwrap();
        assert_eq!(t.pending(), 0);
        t.close().await.unwrap();
        let mut wire = Vec::new();
        client.read_to_end(&mut wire).await.unwrap();
        let mut expected = BytesMut::new();
        frame::encode_into(&ServerMsg::Ping { token: 7 }, &mut expected).unwrap();
        frame::encode_into(&ServerMsg::Pong { token: 8 }, &mut expected).unwrap();
        assert_eq!(wire, &expected[..]);
    }

    #[tokio::test]
    async fn frames_in_come_out_as_messages_and_bad_frames_as_errors() {
        let (server, mut client) = tokio::io::duplex(1 << 16);
        let mut t = Framed::new(server);
        let hello = ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            nick: "alice".into(),
        };
        client
            .write_all(&frame::encode(&hello).unwrap())
            .await
            .unwrap();
        client.write_all(&[0, 0, 0, 0]).await.unwrap();
        let payload = t.recv().await.unwrap().unwrap();
        assert_eq!(ClientMsg::decode(&payload).unwrap(), hello);
        assert!(matches!(t.recv().await, Err(ReadError::Frame(_))));
        assert_eq!(t.peer_fingerprint(), None);
    }
}
