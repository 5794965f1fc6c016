//! Reading frames from a byte stream: the one "fill the buffer until a frame is whole" loop,
//! shared by the server's TLS transport, the client, the end-to-end tests and the load
//! generator. Only with the `io` feature (tokio's `AsyncRead`); parsing stays in [`super`].
//!
//! Like mini-redis' `Connection::read_frame`: the reader owns its buffer, asks
//! [`split_frame`] for a frame, and reads more only when it says
//! [`Incomplete`](FrameError::Incomplete).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{split_frame, FrameError};

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The stream failed (for TLS: includes a peer that closed without close_notify).
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a frame (said in the protocol's words: the `bad-frame` details of
    /// PROTOCOL.md).
    #[error("{0}")]
    Frame(FrameError),
    /// The stream ended in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// The transport's own delimiting of messages was broken in another way than a frame
    /// length (the WebSocket transport: a text message, a frame that breaks RFC 6455). The
    /// text is the `bad-frame` detail, in the protocol's words.
    #[error("{0}")]
    Framing(String),
}

/// A read buffer that yields whole frames' payloads from any [`AsyncRead`].
///
/// Memory: the buffer starts empty (no allocation until the first read) and each read reserves
/// room for the rest of the next frame, at least `CHUNK` bytes: never more than the next frame
/// needs beyond `CHUNK`, so never past [`HEADER_LEN`](super::HEADER_LEN) +
/// [`MAX_FRAME_LEN`](super::MAX_FRAME_LEN) + `CHUNK` however long a peer claims its frame is
/// (the length is checked from the header before the buffer grows). `CHUNK` is a type
/// parameter, so the reader is exactly one `BytesMut` (32 bytes) per connection. The server
/// uses the default 1 KiB: every idle connection keeps that much.
#[derive(Debug, Default)]
pub struct FrameReader<const CHUNK: usize = 1024> {
    buf: BytesMut,
}

impl<const CHUNK: usize> FrameReader<CHUNK> {
    /// An empty reader; allocates nothing until the first read.
    pub fn new() -> Self {
        FrameReader {
            buf: BytesMut::new(),
        }
    }

    /// Whether the buffer already holds a whole frame (or a header that can never start one):
    /// the next [`read_frame`](Self::read_frame) returns without reading.
    pub fn has_frame(&self) -> bool {
        !matches!(super::check(&self.buf), Err(FrameError::Incomplete { .. }))
    }

    /// Bytes read from the stream and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the buffer holds room for (read or not): what this reader costs its connection.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Frees the buffer if it holds nothing (bytes of a frame not complete yet stay): for a
    /// connection about to wait, so that an idle one keeps no read buffer. The next read
    /// allocates again.
    pub fn release_if_empty(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// Reads from `stream` until one whole frame is buffered and returns its payload (1 to
    /// [`MAX_FRAME_LEN`](super::MAX_FRAME_LEN) bytes, sharing the buffer's allocation: no copy);
    /// bytes after it stay buffered for the next call. `Ok(None)` on a clean end of stream
    /// between frames.
    ///
    /// Cancel-safe: bytes read before the future is dropped stay in the buffer, so this can be
    /// a `select!` branch.
    ///
    /// # Errors
    /// [`ReadError::Io`] if `stream` fails, [`ReadError::Frame`] if the bytes are not a frame
    /// (the stream is then unusable), [`ReadError::Truncated`] if it ends mid-frame.
    pub async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        stream: &mut R,
    ) -> Result<Option<BytesMut>, ReadError> {
        loop {
            match split_frame(&mut self.buf) {
                Ok(payload) => return Ok(Some(payload)),
                Err(FrameError::Incomplete { needed }) => {
                    // `needed` is at most HEADER_LEN + MAX_FRAME_LEN: the announced length was
                    // checked before we get here.
                    let missing = needed.saturating_sub(self.buf.len());
                    self.buf.reserve(missing.max(CHUNK));
                }
                Err(e) => return Err(ReadError::Frame(e)),
            }
            if stream.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Truncated)
                };
            }
        }
    }

    /// Reads up to `CHUNK` bytes from `stream` and throws them away, with whatever was
    /// buffered; `Ok(0)` at the end of the stream. For the last moments of a connection (after
    /// TLS close_notify), when nothing read matters any more but unread input would make the
    /// kernel answer the peer's data with a reset.
    ///
    /// # Errors
    /// I/O errors of `stream`.
    pub async fn read_discard<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        stream: &mut R,
    ) -> std::io::Result<usize> {
        self.buf.clear();
        self.buf.reserve(CHUNK);
        let n = stream.read_buf(&mut self.buf).await?;
        self.buf.clear();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::super::{encode_into, HEADER_LEN, MAX_FRAME_LEN};
    use super::*;

    fn frames(msgs: &[&[u8]]) -> BytesMut {
        let mut out = BytesMut::new();
        for m in msgs {
            encode_into(&m.to_vec(), &mut out).unwrap();
        }
        out
    }

    #[tokio::test]
    async fn frames_cut_anywhere_come_out_whole_then_a_clean_end() {
        let bytes = frames(&[b"one", &[7u8; 3000], b"three"]);
        let (mut tx, mut rx) = tokio::io::duplex(1); // one byte per read
        let writer = tokio::spawn(async move {
            tx.write_all(&bytes).await.unwrap();
        });
        let mut reader = FrameReader::<1024>::new();
        let mut got = Vec::new();
        while let Some(payload) = reader.read_frame(&mut rx).await.unwrap() {
            got.push(Vec::<u8>::from(&payload[..]));
        }
        writer.await.unwrap();
        // Each payload is a postcard Vec<u8>: its length (varint) then the bytes.
        assert_eq!(got.len(), 3);
        assert_eq!(&got[0][1..], b"one");
        assert_eq!(got[1].len(), 2 + 3000);
        assert_eq!(&got[2][1..], b"three");
    }

    #[tokio::test]
    async fn an_end_inside_a_frame_is_truncated_and_a_bad_header_is_refused() {
        let mut bytes = frames(&[b"whole"]);
        bytes.extend_from_slice(&[0, 0, 0, 9, 1, 2]); // a frame cut after 2 of its 9 bytes
        let mut reader = FrameReader::<1024>::new();
        let mut stream = &bytes[..];
        assert!(reader.read_frame(&mut stream).await.unwrap().is_some());
        assert!(matches!(
            reader.read_frame(&mut stream).await,
            Err(ReadError::Truncated)
        ));

        let mut stream = &[0u8, 0, 0, 0][..];
        let err = FrameReader::<1024>::new()
            .read_frame(&mut stream)
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::Frame(FrameError::Empty)), "{err}");
        assert_eq!(
            err.to_string(),
            "malformed frame: length 0 (a frame holds 1 to 65536 bytes)"
        );
    }

    #[tokio::test]
    async fn the_buffer_grows_only_as_far_as_the_next_frame_needs() {
        // A header announcing far more than the limit: refused before the buffer grows past
        // the first chunk.
        let mut reader = FrameReader::<1024>::new();
        let mut stream = &[0xffu8, 0xff, 0xff, 0xff, 0, 0][..];
        assert!(matches!(
            reader.read_frame(&mut stream).await,
            Err(ReadError::Frame(FrameError::TooLarge { .. }))
        ));
        assert!(reader.capacity() <= 1024 * 2, "{}", reader.capacity());

        // Small frames: one chunk. A largest frame: room for it, not much more.
        let small = frames(&[b"hi"]);
        let mut reader = FrameReader::<1024>::new();
        assert_eq!(reader.capacity(), 0, "nothing allocated before reading");
        reader.read_frame(&mut &small[..]).await.unwrap().unwrap();
        assert!(reader.capacity() <= 2 * 1024, "{}", reader.capacity());
        let big = frames(&[&vec![1u8; MAX_FRAME_LEN - 3]]);
        let payload = reader.read_frame(&mut &big[..]).await.unwrap().unwrap();
        assert_eq!(payload.len(), MAX_FRAME_LEN);
        assert!(
            reader.capacity() + payload.len() <= HEADER_LEN + MAX_FRAME_LEN + 2 * 1024,
            "{}",
            reader.capacity()
        );
    }

    #[tokio::test]
    async fn releasing_frees_an_empty_buffer_only() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::<1024>::new();
        let wire = frames(&[b"one", b"two"]);
        client.write_all(&wire[..wire.len() - 1]).await.unwrap();
        assert_eq!(
            &reader.read_frame(&mut server).await.unwrap().unwrap()[..],
            b"\x03one"
        );
        reader.release_if_empty();
        assert!(reader.capacity() > 0, "a partial frame is kept");
        assert_eq!(
            reader.buffered(),
            HEADER_LEN + 3,
            "all of `two` but its last byte"
        );
        client.write_all(&wire[wire.len() - 1..]).await.unwrap();
        assert_eq!(
            &reader.read_frame(&mut server).await.unwrap().unwrap()[..],
            b"\x03two"
        );
        reader.release_if_empty();
        assert_eq!(reader.capacity(), 0);
        drop(client);
        assert!(reader.read_frame(&mut server).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_read_dropped_halfway_keeps_what_it_read() {
        let bytes = frames(&[b"first", b"second"]);
        let (mut tx, mut rx) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::<1024>::new();
        tx.write_all(&bytes[..6]).await.unwrap(); // the first frame's header and 2 bytes
        tokio::select! {
            biased;
            r = reader.read_frame(&mut rx) => panic!("returned early: {r:?}"),
            () = tokio::task::yield_now() => {}
        }
        assert_eq!(reader.buffered(), 6, "the cancelled read kept its bytes");
        assert!(!reader.has_frame());
        tx.write_all(&bytes[6..]).await.unwrap();
        drop(tx);
        assert_eq!(
            &reader.read_frame(&mut rx).await.unwrap().unwrap()[1..],
            b"first"
        );
        assert!(reader.has_frame(), "the second frame came in the same read");
        assert_eq!(
            &reader.read_frame(&mut rx).await.unwrap().unwrap()[1..],
            b"second"
        );
        assert!(reader.read_frame(&mut rx).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn discarding_reads_and_forgets() {
        let mut reader = FrameReader::<1024>::new();
        let mut stream = &[1u8; 3000][..];
        let n = reader.read_discard(&mut stream).await.unwrap();
        assert!(n > 0 && n <= 2 * 1024, "{n}");
        assert_eq!(reader.buffered(), 0);
        assert_eq!(stream.len(), 3000 - n);
    }
}
