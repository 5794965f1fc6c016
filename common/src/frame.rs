//! Length-prefixed framing.
//!
//! A frame is a 4-byte big-endian payload length `N` followed by `N` payload bytes (one
//! postcard-encoded message). `N` must be between 1 and [`MAX_FRAME_LEN`]. The length is checked
//! as soon as the 4 header bytes are in, *before* any buffer is grown for the payload, so a peer
//! cannot make us allocate more than [`MAX_FRAME_LEN`] by lying about a length.
//!
//! Parsing tells "not enough bytes yet" ([`FrameError::Incomplete`], read more and retry) apart
//! from "these bytes can never be a frame" (every other variant, drop the connection), like
//! mini-redis' `frame.rs`.
//!
//! Two kinds of encoding: [`encode_message`] makes a *message* (the payload alone), what the
//! server's hub queues and shares between recipients; [`encode`], [`encode_into`] and
//! [`put_frame`] make *frames* (header and payload), what goes on a byte stream. With the `io`
//! feature, [`FrameReader`] reads frames from a tokio `AsyncRead`.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

#[cfg(feature = "io")]
mod reader;
#[cfg(feature = "io")]
pub use reader::{FrameReader, ReadError};

/// Size of the length prefix in bytes.
pub const HEADER_LEN: usize = 4;

/// Largest payload a frame may carry, in bytes (64 KiB).
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Why a buffer does not (yet) hold a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// More bytes are needed; `needed` is the total the buffer must hold for the next frame
    /// (header only, when the header is not complete yet). Not an error of the peer.
    #[error("incomplete frame: {needed} bytes needed")]
    Incomplete {
        /// Total buffer length needed before trying again.
        needed: usize,
    },
    /// The length prefix announces more than [`MAX_FRAME_LEN`] bytes.
    #[error("frame too long: {len} bytes, the limit is {MAX_FRAME_LEN}")]
    TooLarge {
        /// The announced payload length.
        len: u64,
    },
    /// The length prefix is zero; every message encodes to at least one byte.
    #[error("malformed frame: length 0 (a frame holds 1 to {MAX_FRAME_LEN} bytes)")]
    Empty,
}

/// Looks at the start of `buf` and returns the payload length of the first frame if the whole
/// frame is there.
///
/// # Errors
/// [`FrameError::Incomplete`] if more bytes are needed, any other variant if the bytes are
/// invalid.
pub fn check(buf: &[u8]) -> Result<usize, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Err(FrameError::Incomplete { needed: HEADER_LEN });
    };
    let mut len_bytes = [0u8; HEADER_LEN];
    len_bytes.copy_from_slice(header);
    let len = u32::from_be_bytes(len_bytes);
    let len_usize = usize::try_from(len).map_err(|_| FrameError::TooLarge { len: len.into() })?;
    if len_usize == 0 {
        return Err(FrameError::Empty);
    }
    if len_usize > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len: len.into() });
    }
    let needed = HEADER_LEN + len_usize;
    if buf.len() < needed {
        return Err(FrameError::Incomplete { needed });
    }
    Ok(len_usize)
}

/// Removes the first complete frame from `buf` and returns its payload.
///
/// On [`FrameError::Incomplete`] `buf` is left untouched. The returned payload shares `buf`'s
/// allocation (no copy).
///
/// # Errors
/// As [`check`].
pub fn split_frame(buf: &mut BytesMut) -> Result<BytesMut, FrameError> {
    let len = check(buf)?;
    let mut frame = buf.split_to(HEADER_LEN + len);
    Ok(frame.split_off(HEADER_LEN))
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded message would exceed [`MAX_FRAME_LEN`]. Callers validate lengths before
    /// encoding, so this means a bug or an unchecked input.
    #[error("message too long to send: {len} bytes, the frame limit is {MAX_FRAME_LEN}")]
    TooLarge {
        /// Encoded payload length.
        len: usize,
    },
    /// An empty payload cannot be a frame (every message encodes to at least one byte, so
    /// this means a bug).
    #[error("an empty message cannot be sent (a frame holds 1 to {MAX_FRAME_LEN} bytes)")]
    Empty,
    /// postcard refused the value (kept for debugging, not said: its words are the library's).
    #[error("the message cannot be encoded")]
    Postcard(postcard::Error),
}

impl From<postcard::Error> for EncodeError {
    fn from(e: postcard::Error) -> EncodeError {
        EncodeError::Postcard(e)
    }
}

/// Encodes `msg` as one message payload, without a frame header: 1 to [`MAX_FRAME_LEN`]
/// bytes, ready for [`put_frame`] (or any transport's own framing).
///
/// The result is a [`Bytes`] so that a message meant for many recipients is encoded once and
/// shared by reference count.
///
/// # Errors
/// [`EncodeError`] if the message does not fit in a frame.
pub fn encode_message<T: Serialize + ?Sized>(msg: &T) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::with_capacity(64);
    put_payload(msg, &mut out)?;
    Ok(out.freeze())
}

/// Encodes `msg` as one complete frame (header and payload).
///
/// # Errors
/// [`EncodeError`] if the message does not fit in a frame.
pub fn encode<T: Serialize + ?Sized>(msg: &T) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::with_capacity(64);
    encode_into(msg, &mut out)?;
    Ok(out.freeze())
}

/// Appends `msg` as one complete frame to `out`. On error `out` is left as it was.
///
/// # Errors
/// [`EncodeError`] if the message does not fit in a frame.
pub fn encode_into<T: Serialize + ?Sized>(msg: &T, out: &mut BytesMut) -> Result<(), EncodeError> {
    let start = out.len();
    out.put_u32(0); // patched below once the payload length is known
    let len = match put_payload(msg, out) {
        Ok(len) => len,
        Err(e) => {
            out.truncate(start);
            return Err(e);
        }
    };
    // put_payload checked len <= MAX_FRAME_LEN, so it fits in u32.
    let header = u32::try_from(len).map_err(|_| EncodeError::TooLarge { len })?;
    out[start..start + HEADER_LEN].copy_from_slice(&header.to_be_bytes());
    Ok(())
}

/// Appends an already encoded message (see [`encode_message`]) to `out` as one frame: its
/// 4-byte length, then `payload`. On error `out` is left as it was.
///
/// # Errors
/// [`EncodeError::Empty`] if `payload` is empty, [`EncodeError::TooLarge`] if it is longer
/// than [`MAX_FRAME_LEN`] (no message encodes to either).
pub fn put_frame(payload: &[u8], out: &mut BytesMut) -> Result<(), EncodeError> {
    let len = payload.len();
    if len == 0 {
        return Err(EncodeError::Empty);
    }
    let header = u32::try_from(len)
        .ok()
        .filter(|_| len <= MAX_FRAME_LEN)
        .ok_or(EncodeError::TooLarge { len })?;
    out.reserve(HEADER_LEN + len);
    out.put_u32(header);
    out.extend_from_slice(payload);
    Ok(())
}

/// Appends `msg`'s payload to `out` and returns its length. On error `out` is left as it was.
fn put_payload<T: Serialize + ?Sized>(msg: &T, out: &mut BytesMut) -> Result<usize, EncodeError> {
    let start = out.len();
    // `&mut BytesMut` is itself a `BufMut`, so the writer borrows `out` instead of taking it.
    let result = postcard::to_io(msg, (&mut *out).writer()).map(|_| ());
    let len = out.len() - start;
    match result {
        Ok(_) if len <= MAX_FRAME_LEN => Ok(len),
        Ok(_) => {
            out.truncate(start);
            Err(EncodeError::TooLarge { len })
        }
        Err(e) => {
            out.truncate(start);
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_header_and_body_are_told_apart_from_invalid() {
        assert_eq!(check(&[]), Err(FrameError::Incomplete { needed: 4 }));
        assert_eq!(check(&[0, 0, 0]), Err(FrameError::Incomplete { needed: 4 }));
        assert_eq!(
            check(&[0, 0, 0, 3, 1]),
            Err(FrameError::Incomplete { needed: 7 })
        );
        assert_eq!(check(&[0, 0, 0, 3, 1, 2, 3]), Ok(3));
        assert_eq!(check(&[0, 0, 0, 0]), Err(FrameError::Empty));
    }

    #[test]
    fn frame_errors_are_said_in_the_protocols_words() {
        // The `bad-frame` details of PROTOCOL.md.
        assert_eq!(
            check(&[0, 1, 0x11, 0x70]).unwrap_err().to_string(),
            "frame too long: 70000 bytes, the limit is 65536"
        );
        assert_eq!(
            check(&[0, 0, 0, 0]).unwrap_err().to_string(),
            "malformed frame: length 0 (a frame holds 1 to 65536 bytes)"
        );
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header_alone() {
        // Only the 4 header bytes: the verdict must not wait for (or allocate) the body.
        assert_eq!(
            check(&[0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLarge { len: 0xffff_ffff })
        );
        let just_over = u32::try_from(MAX_FRAME_LEN + 1).unwrap().to_be_bytes();
        assert_eq!(
            check(&just_over),
            Err(FrameError::TooLarge {
                len: (MAX_FRAME_LEN + 1) as u64
            })
        );
        let max = u32::try_from(MAX_FRAME_LEN).unwrap().to_be_bytes();
        assert_eq!(
            check(&max),
            Err(FrameError::Incomplete {
                needed: 4 + MAX_FRAME_LEN
            })
        );
    }

    #[test]
    fn split_frame_takes_exactly_one_frame_and_leaves_the_rest() {
        let mut buf = BytesMut::new();
        encode_into(&(1u8, 2u8), &mut buf).unwrap();
        encode_into(&7u8, &mut buf).unwrap();
        buf.extend_from_slice(&[0, 0]); // start of a third frame
        let first = split_frame(&mut buf).unwrap();
        assert_eq!(&first[..], &[1, 2]);
        let second = split_frame(&mut buf).unwrap();
        assert_eq!(&second[..], &[7]);
        assert_eq!(
            split_frame(&mut buf),
            Err(FrameError::Incomplete { needed: 4 })
        );
        assert_eq!(&buf[..], &[0, 0]);
    }

    #[test]
    fn encoding_refuses_payloads_over_the_limit_and_leaves_the_buffer_intact() {
        let mut out = BytesMut::from(&b"keep"[..]);
        let big = vec![0u8; MAX_FRAME_LEN];
        // A Vec<u8> of MAX_FRAME_LEN bytes encodes to MAX_FRAME_LEN + varint length bytes.
        assert!(matches!(
            encode_into(&big, &mut out),
            Err(EncodeError::TooLarge { .. })
        ));
        assert_eq!(&out[..], b"keep");
        let fits = vec![0u8; MAX_FRAME_LEN - 3];
        encode_into(&fits, &mut out).unwrap();
        assert_eq!(out.len(), 4 + 4 + MAX_FRAME_LEN);
    }

    #[test]
    fn a_message_framed_later_is_the_frame_encoded_at_once() {
        let msg = (42u32, "hello".to_string());
        let payload = encode_message(&msg).unwrap();
        let mut framed = BytesMut::new();
        put_frame(&payload, &mut framed).unwrap();
        assert_eq!(&framed[..], &encode(&msg).unwrap()[..]);
        assert_eq!(&split_frame(&mut framed).unwrap()[..], &payload[..]);
    }

    #[test]
    fn framing_refuses_what_no_peer_would_accept_and_leaves_the_buffer_intact() {
        let mut out = BytesMut::from(&b"keep"[..]);
        assert!(matches!(put_frame(&[], &mut out), Err(EncodeError::Empty)));
        assert!(matches!(
            put_frame(&vec![0u8; MAX_FRAME_LEN + 1], &mut out),
            Err(EncodeError::TooLarge { .. })
        ));
        assert_eq!(&out[..], b"keep");
        put_frame(&vec![0u8; MAX_FRAME_LEN], &mut out).unwrap();
        assert_eq!(out.len(), 4 + HEADER_LEN + MAX_FRAME_LEN);
        assert!(matches!(
            encode_message(&vec![0u8; MAX_FRAME_LEN]),
            Err(EncodeError::TooLarge { .. })
        ));
    }
}
