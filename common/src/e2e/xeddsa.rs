//! XEdDSA signatures with X25519 keys (Signal's XEdDSA specification, revision 1, 2016-10-20,
//! §2.3–2.4 and §5): an identity key that does Diffie-Hellman also signs its prekeys.
//!
//! A signature is `R ‖ s` (64 bytes). It is a standard Ed25519 signature for the Edwards form
//! of the Montgomery public key with the sign bit 0 (the signer negates its scalar when needed,
//! `calculate_key_pair`), so any strict Ed25519 verifier accepts it for that key.
//!
//! Details of this implementation:
//! * the private key is an X25519 secret as stored by [`crate::identity::Identity`]: it is
//!   clamped as X25519 clamps, then used as the scalar `k`;
//! * `a` enters `hash_1` as its canonical 32-byte little-endian encoding (reduced mod q, after
//!   the negation);
//! * verification refuses `u ≥ p`, an `R` whose y coordinate is ≥ p, and a non-canonical
//!   `s ≥ q` (stricter than the specification's `s ≥ 2^253`, which lets `s` and `s + q` both
//!   pass; our signer always produces `s < q`, and Ed25519's strict verifiers refuse `s ≥ q`
//!   too, so no signature is malleable).

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use crate::prekeys::SIGNATURE_LEN;

/// `hash_1`'s prefix: the 256-bit little-endian encoding of 2^256 − 1 − 1.
const HASH_1_PREFIX: [u8; 32] = {
    let mut p = [0xFF; 32];
    p[0] = 0xFE;
    p
};

/// X25519's clamping of a secret scalar.
fn clamp(mut k: [u8; 32]) -> [u8; 32] {
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    k
}

/// `calculate_key_pair(k)`: the Edwards public key `A` (sign bit 0) and the scalar `a` with
/// `A = aB`.
fn calculate_key_pair(private: &[u8; 32]) -> (CompressedEdwardsY, Zeroizing<Scalar>) {
    let k = Zeroizing::new(clamp(*private));
    let mut a = Zeroizing::new(Scalar::from_bytes_mod_order(*k));
    let e = (ED25519_BASEPOINT_TABLE * &*a).compress();
    if e.as_bytes()[31] & 0x80 != 0 {
        *a = -*a;
    }
    let mut public = *e.as_bytes();
    public[31] &= 0x7F;
    (CompressedEdwardsY(public), a)
}

/// Signs `message` with the X25519 secret `private`; `random` is 64 fresh random bytes (`Z`).
pub fn sign(private: &[u8; 32], message: &[u8], random: &[u8; 64]) -> [u8; SIGNATURE_LEN] {
    let (public, a) = calculate_key_pair(private);
    // r = hash_1(a ‖ M ‖ Z) mod q
    let a_bytes = Zeroizing::new(a.to_bytes());
    let mut wide = Zeroizing::new([0u8; 64]);
    let mut h1 = Sha512::new();
    h1.update(HASH_1_PREFIX);
    h1.update(&a_bytes[..]);
    h1.update(message);
    h1.update(random);
    wide.copy_from_slice(&h1.finalize());
    let r = Zeroizing::new(Scalar::from_bytes_mod_order_wide(&wide));
    let big_r = (ED25519_BASEPOINT_TABLE * &*r).compress();
    // h = hash(R ‖ A ‖ M) mod q
    let h = challenge(big_r.as_bytes(), public.as_bytes(), message);
    // s = r + h·a mod q
    let s = Zeroizing::new(*r + h * *a);
    let mut signature = [0u8; SIGNATURE_LEN];
    signature[..32].copy_from_slice(big_r.as_bytes());
    signature[32..].copy_from_slice(s.as_bytes());
    signature
}

/// Whether `signature` is `public`'s XEdDSA signature of `message`. Any signature that is not
/// exactly 64 bytes is refused. Never panics.
pub fn verify(public: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(signature) = <&[u8; SIGNATURE_LEN]>::try_from(signature) else {
        return false;
    };
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&signature[..32]);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&signature[32..]);
    // u ≥ p, R.y ≥ p
    if !below_p(public) {
        return false;
    }
    let mut r_y = r_bytes;
    r_y[31] &= 0x7F;
    if !below_p(&r_y) {
        return false;
    }
    // s ≥ q (covers the specification's s ≥ 2^|q|)
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
        return false;
    };
    // A = convert_mont(u): the Edwards point with sign bit 0; none if u = −1 or off the curve.
    let Some(big_a) = MontgomeryPoint(*public).to_edwards(0) else {
        return false;
    };
    let a_bytes = big_a.compress();
    let h = challenge(&r_bytes, a_bytes.as_bytes(), message);
    // R_check = sB − hA
    let check = EdwardsPoint::vartime_double_scalar_mul_basepoint(&-h, &big_a, &s).compress();
    // Both are public: a plain comparison leaks nothing.
    check.as_bytes() == &r_bytes
}

/// `h = SHA-512(R ‖ A ‖ M) mod q`.
fn challenge(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> Scalar {
    let mut hash = Sha512::new();
    hash.update(r);
    hash.update(a);
    hash.update(message);
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&hash.finalize());
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// Whether the 256-bit little-endian integer `x` is below p = 2^255 − 19.
fn below_p(x: &[u8; 32]) -> bool {
    if x[31] & 0x80 != 0 {
        return false;
    }
    // The only 255-bit values ≥ p are p .. 2^255 − 1: 0x7F, then 30 × 0xFF, then ≥ 0xED.
    !(x[31] == 0x7F && x[1..31].iter().all(|&b| b == 0xFF) && x[0] >= 0xED)
}

/// The Edwards public key that a signature by `public` verifies under as plain Ed25519 (sign
/// bit 0), for tests that cross-check with an Ed25519 implementation.
#[cfg(test)]
pub(crate) fn edwards_public(public: &[u8; 32]) -> Option<[u8; 32]> {
    MontgomeryPoint(*public)
        .to_edwards(0)
        .map(|p| p.compress().to_bytes())
}
