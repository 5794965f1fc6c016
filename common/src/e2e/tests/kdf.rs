//! The key derivations: HKDF against RFC 5869, HMAC against a from-scratch HMAC over `sha2`,
//! and the splits of the root and message-key derivations.

use sha2::{Digest, Sha256};

use crate::e2e::kdf::{hkdf_sha256, kdf_ck, kdf_rk, message_keys, MESSAGE_KEYS_INFO, ROOT_INFO};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// HMAC-SHA-256 written out (RFC 2104), independent of the `hmac` crate.
fn reference_hmac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(key);
    let inner: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x36)
        .chain(data.iter().copied())
        .collect();
    let inner = Sha256::digest(&inner);
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(inner).collect();
    Sha256::digest(&outer).into()
}

#[test]
fn hkdf_is_rfc5869s() {
    // RFC 5869 appendix A.1.
    let okm = hkdf_sha256::<42>(
        &unhex("000102030405060708090a0b0c"),
        &[0x0b; 22],
        &unhex("f0f1f2f3f4f5f6f7f8f9"),
    );
    assert_eq!(
        okm[..].to_vec(),
        unhex(
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        )
    );
    // RFC 5869 appendix A.3 (empty salt and info).
    let okm = hkdf_sha256::<42>(&[], &[0x0b; 22], &[]);
    assert_eq!(
        okm[..].to_vec(),
        unhex(
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        )
    );
}

#[test]
fn hkdf_gives_its_maximum_length() {
    let okm = hkdf_sha256::<8160>(b"salt", b"ikm", b"info");
    assert_ne!(okm[8128..], [0u8; 32]);
    let short = hkdf_sha256::<64>(b"salt", b"ikm", b"info");
    assert_eq!(okm[..64], short[..], "a prefix of the longer output");
}

#[test]
fn the_chain_kdf_is_hmac_with_constants_2_and_1() {
    let ck = [0x42u8; 32];
    let (next, mk) = kdf_ck(&ck);
    assert_eq!(*next, reference_hmac(&ck, &[0x02]));
    assert_eq!(*mk, reference_hmac(&ck, &[0x01]));
    assert_ne!(*next, *mk);
}

#[test]
fn the_root_and_message_kdfs_split_hkdf() {
    let (rk, dh) = ([1u8; 32], [2u8; 32]);
    let (new_rk, ck) = kdf_rk(&rk, &dh);
    let okm = hkdf_sha256::<64>(&rk, &dh, ROOT_INFO);
    assert_eq!(new_rk[..], okm[..32]);
    assert_eq!(ck[..], okm[32..]);

    let mk = [3u8; 32];
    let (key, nonce) = message_keys(&mk);
    let okm = hkdf_sha256::<44>(&[0u8; 32], &mk, MESSAGE_KEYS_INFO);
    assert_eq!(key[..], okm[..32]);
    assert_eq!(nonce[..], okm[32..]);
}
