//! Decoding what a server sends (clients must survive a hostile server): never panics, and whatever decodes re-encodes to the same
//! bytes (one encoding per message, so nothing can be smuggled in alternative forms).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mm_common::frame::{self, HEADER_LEN};
use mm_common::protocol::ServerMsg;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = ServerMsg::decode(data) {
        if let Ok(encoded) = frame::encode(&msg) {
            assert_eq!(&encoded[HEADER_LEN..], data, "non-canonical encoding accepted");
            assert_eq!(ServerMsg::decode(&encoded[HEADER_LEN..]).ok(), Some(msg));
        }
    }
});
