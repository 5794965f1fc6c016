//! Decoding what a client sends: never panics, and whatever decodes re-encodes to the same
//! bytes (one encoding per message, so nothing can be smuggled in alternative forms).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mm_common::frame::{self, HEADER_LEN};
use mm_common::protocol::ClientMsg;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = ClientMsg::decode(data) {
        if let Ok(encoded) = frame::encode(&msg) {
            assert_eq!(&encoded[HEADER_LEN..], data, "non-canonical encoding accepted");
            assert_eq!(ClientMsg::decode(&encoded[HEADER_LEN..]).ok(), Some(msg));
        }
    }
});
