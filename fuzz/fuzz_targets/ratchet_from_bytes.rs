//! Reading a saved Double Ratchet state: arbitrary bytes must never panic; a state that loads
//! saves to bytes that load again to the same state, and can be used (encrypt, decrypt) without
//! panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mm_common::e2e::ratchet::{Header, Ratchet};
use rand_core::OsRng;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut ratchet) = Ratchet::from_bytes(data) {
        let saved = ratchet.to_bytes();
        let again = Ratchet::from_bytes(&saved).expect("a saved state loads");
        assert_eq!(*again.to_bytes(), *saved, "save is not stable");
        let header = Header {
            dh: *ratchet.ratchet_key(),
            pn: 0,
            n: 0,
        };
        let _ = ratchet.decrypt(&header, data, &mut OsRng);
        let _ = ratchet.encrypt(data);
    }
});
