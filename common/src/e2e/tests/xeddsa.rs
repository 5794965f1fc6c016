//! XEdDSA: round trips, the cross-check with an independent Ed25519 verifier
//! (`ed25519-dalek`'s `verify_strict` on the Edwards form of the key), and refusals.

use ed25519_dalek::{Signature, VerifyingKey};
use proptest::prelude::*;

use super::TestRng;
use crate::e2e::xeddsa::{edwards_public, sign, verify};
use crate::identity::Identity;
use crate::prekeys::signed_prekey_message;

/// What `ed25519-dalek` says of `signature` for the Edwards form of `public`.
pub(super) fn ed25519_accepts(public: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Some(ed) = edwards_public(public) else {
        return false;
    };
    let (Ok(key), Ok(sig)) = (
        VerifyingKey::from_bytes(&ed),
        Signature::from_slice(signature),
    ) else {
        return false;
    };
    key.verify_strict(message, &sig).is_ok()
}

fn keypair(seed: u64) -> ([u8; 32], [u8; 32]) {
    let id = Identity::generate_with(&mut TestRng(seed));
    (*id.secret(), *id.public())
}

#[test]
fn signatures_verify_here_and_as_ed25519_for_both_signs_of_the_edwards_key() {
    let mut negated = 0;
    for seed in 0..16 {
        let (private, public) = keypair(seed);
        // Whether calculate_key_pair had to negate: the sign bit of kB.
        let k = {
            let mut k = private;
            k[0] &= 248;
            k[31] &= 127;
            k[31] |= 64;
            k
        };
        let e = curve25519_dalek::EdwardsPoint::mul_base_clamped(k).compress();
        negated += usize::from(e.as_bytes()[31] >> 7);
        let message = format!("message {seed}");
        let signature = sign(&private, message.as_bytes(), &[seed as u8; 64]);
        assert!(verify(&public, message.as_bytes(), &signature));
        assert!(ed25519_accepts(&public, message.as_bytes(), &signature));
        assert!(!verify(&public, b"another message", &signature));
        // s < 2^253 (indeed < q).
        assert_eq!(signature[63] & 0xE0, 0);
    }
    assert!(
        (1..16).contains(&negated),
        "both cases seen: {negated} of 16 negated"
    );
}

#[test]
fn a_bit_flip_anywhere_fails() {
    let (private, public) = keypair(99);
    let message = b"MultiMessenger".to_vec();
    let signature = sign(&private, &message, &[7; 64]);
    assert!(verify(&public, &message, &signature));
    for bit in 0..512 {
        let mut s = signature;
        s[bit / 8] ^= 1 << (bit % 8);
        assert!(!verify(&public, &message, &s), "signature bit {bit}");
        assert!(
            !ed25519_accepts(&public, &message, &s),
            "signature bit {bit}"
        );
    }
    for bit in 0..message.len() * 8 {
        let mut m = message.clone();
        m[bit / 8] ^= 1 << (bit % 8);
        assert!(!verify(&public, &m, &signature), "message bit {bit}");
    }
    for bit in 0..256 {
        let mut k = public;
        k[bit / 8] ^= 1 << (bit % 8);
        assert!(!verify(&k, &message, &signature), "key bit {bit}");
    }
}

#[test]
fn malformed_signatures_and_keys_are_refused() {
    let (private, public) = keypair(5);
    let signature = sign(&private, b"m", &[1; 64]);
    assert!(!verify(&public, b"m", &signature[..63]));
    assert!(!verify(
        &public,
        b"m",
        &[signature.as_slice(), &[0]].concat()
    ));
    assert!(!verify(&public, b"m", &[]));
    // s + q: the same point equation, a non-canonical scalar.
    let with_q = add_q(&signature);
    assert!(!verify(&public, b"m", &with_q));
    assert!(!ed25519_accepts(&public, b"m", &with_q));
    // u ≥ p: the key plus p is the same field element, refused as non-canonical.
    assert!(!verify(&[0xFF; 32], b"m", &signature));
    let mut u_plus_p = public;
    let mut carry = 0u16;
    for (i, byte) in u_plus_p.iter_mut().enumerate() {
        let p = if i == 0 {
            0xED
        } else if i == 31 {
            0x7F
        } else {
            0xFF
        };
        let sum = u16::from(*byte) + p + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    if carry == 0 {
        assert!(!verify(&u_plus_p, b"m", &signature));
    }
    // u = −1 has no Edwards form.
    let mut minus_one = [0xFF; 32];
    minus_one[0] = 0xEC;
    minus_one[31] = 0x7F;
    assert!(!verify(&minus_one, b"m", &signature));
    assert!(!verify(&[0; 32], b"m", &[0; 64]));
}

/// `signature` with q added to its s (little-endian).
pub(super) fn add_q(signature: &[u8; 64]) -> [u8; 64] {
    const Q: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = *signature;
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(out[32 + i]) + u16::from(Q[i]) + carry;
        out[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

#[test]
fn identity_signs_its_prekeys() {
    let id = Identity::generate_with(&mut TestRng(3));
    let message = signed_prekey_message(7, &[9; 32]);
    let signature = id.sign(&message, &mut TestRng(4));
    assert!(verify(id.public(), &message, &signature));
    assert!(!verify(
        id.public(),
        &signed_prekey_message(8, &[9; 32]),
        &signature
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_keys_agree_with_ed25519(seed: u64, message: Vec<u8>, random: [u8; 32]) {
        let (private, public) = keypair(seed);
        let mut z = [0u8; 64];
        z[..32].copy_from_slice(&random);
        let signature = sign(&private, &message, &z);
        prop_assert!(verify(&public, &message, &signature));
        prop_assert!(ed25519_accepts(&public, &message, &signature));
    }

    #[test]
    fn verify_never_panics_and_agrees_with_ed25519(
        public: [u8; 32],
        message: Vec<u8>,
        signature in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let ours = verify(&public, &message, &signature);
        if public[31] & 0x80 == 0 && signature.len() == 64 {
            prop_assert_eq!(ours, ed25519_accepts(&public, &message, &signature));
        }
        prop_assert!(!ours);
    }
}
