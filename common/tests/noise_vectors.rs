//! The Noise test vectors that snow ships for our pattern
//! (`Noise_XX_25519_ChaChaPoly_BLAKE2s`, from cacophony), run through the same
//! `noise_builder` configuration the clients use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mm_common::e2e::{noise_builder, NOISE_PARAMS};
use serde_json::Value;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn cacophony_vectors_for_our_pattern_pass() {
    let text = include_str!("noise_xx_vectors.json");
    let file: Value = serde_json::from_str(text).unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    for v in vectors {
        assert_eq!(v["protocol_name"], NOISE_PARAMS);
        let (is, ie, rs, re) = (
            unhex(v["init_static"].as_str().unwrap()),
            unhex(v["init_ephemeral"].as_str().unwrap()),
            unhex(v["resp_static"].as_str().unwrap()),
            unhex(v["resp_ephemeral"].as_str().unwrap()),
        );
        let (ip, rp) = (
            unhex(v["init_prologue"].as_str().unwrap()),
            unhex(v["resp_prologue"].as_str().unwrap()),
        );
        let mut init = noise_builder(&is, &ip)
            .unwrap()
            .fixed_ephemeral_key_for_testing_only(&ie)
            .build_initiator()
            .unwrap();
        let mut resp = noise_builder(&rs, &rp)
            .unwrap()
            .fixed_ephemeral_key_for_testing_only(&re)
            .build_responder()
            .unwrap();
        let messages = v["messages"].as_array().unwrap();
        let mut buf = [0u8; 65535];
        let mut out = [0u8; 65535];
        let mut init_transport = None;
        let mut resp_transport = None;
        for (i, m) in messages.iter().enumerate() {
            let payload = unhex(m["payload"].as_str().unwrap());
            let expected = unhex(m["ciphertext"].as_str().unwrap());
            let initiator_sends = i % 2 == 0;
            let n = if i < 3 {
                let n = if initiator_sends {
                    init.write_message(&payload, &mut buf)
                } else {
                    resp.write_message(&payload, &mut buf)
                }
                .unwrap();
                let read = if initiator_sends {
                    resp.read_message(&buf[..n], &mut out)
                } else {
                    init.read_message(&buf[..n], &mut out)
                }
                .unwrap();
                assert_eq!(&out[..read], &payload[..], "message {i} payload");
                if i == 2 {
                    let hash = unhex(v["handshake_hash"].as_str().unwrap());
                    assert_eq!(init.get_handshake_hash(), &hash[..]);
                    assert_eq!(resp.get_handshake_hash(), &hash[..]);
                }
                n
            } else {
                if init_transport.is_none() {
                    let i_state = std::mem::replace(
                        &mut init,
                        noise_builder(&is, &ip).unwrap().build_initiator().unwrap(),
                    );
                    let r_state = std::mem::replace(
                        &mut resp,
                        noise_builder(&rs, &rp).unwrap().build_responder().unwrap(),
                    );
                    init_transport = Some(i_state.into_transport_mode().unwrap());
                    resp_transport = Some(r_state.into_transport_mode().unwrap());
                }
                let (it, rt) = (
                    init_transport.as_mut().unwrap(),
                    resp_transport.as_mut().unwrap(),
                );
                let n = if initiator_sends {
                    it.write_message(&payload, &mut buf)
                } else {
                    rt.write_message(&payload, &mut buf)
                }
                .unwrap();
                let read = if initiator_sends {
                    rt.read_message(&buf[..n], &mut out)
                } else {
                    it.read_message(&buf[..n], &mut out)
                }
                .unwrap();
                assert_eq!(&out[..read], &payload[..], "message {i} payload");
                n
            };
            assert_eq!(&buf[..n], &expected[..], "message {i} ciphertext");
        }
    }
}
