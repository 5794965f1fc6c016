//! The server's read path on arbitrary bytes: the first byte picks a chunk size, the rest
//! arrives in chunks of that size, and every complete frame is decoded as a client message.
//! Must never panic, never return a payload over the limit, and never buffer more than one
//! frame's worth of bytes while a frame is incomplete.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mm_common::frame::{self, FrameError, HEADER_LEN, MAX_FRAME_LEN};
use mm_common::protocol::ClientMsg;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut buf = BytesMut::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match frame::split_frame(&mut buf) {
                Ok(payload) => {
                    assert!(!payload.is_empty() && payload.len() <= MAX_FRAME_LEN);
                    let _ = ClientMsg::decode(&payload);
                }
                Err(FrameError::Incomplete { needed }) => {
                    assert!(needed <= HEADER_LEN + MAX_FRAME_LEN);
                    break;
                }
                Err(_) => return, // invalid: the server disconnects here
            }
        }
    }
});
