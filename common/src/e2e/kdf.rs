//! The key derivation functions of X3DH and the Double Ratchet: HKDF and HMAC over SHA-256.
//!
//! # Why SHA-256 (and not BLAKE2s, as the Noise sessions used)
//!
//! Signal's specifications (X3DH §2.2, Double Ratchet §5.2) and libsignal use HKDF and HMAC over
//! SHA-256 or SHA-512, so following them keeps this code close to what has been analysed. The
//! browser client (to come) gets HKDF-SHA-256 and HMAC-SHA-256 natively from WebCrypto
//! (`crypto.subtle`) and from `@noble/hashes`, while BLAKE2s is in neither WebCrypto nor needed
//! once Noise is gone: one hash family for both implementations.
//!
//! Every function is pure and returns its secrets in [`Zeroizing`] buffers. (The `hkdf`/`hmac`
//! 0.12 crates do not wipe their internal hash states; those live on the stack only for the
//! duration of a call.)

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The `info` of [`kdf_rk`].
pub const ROOT_INFO: &[u8] = b"MultiMessenger Double Ratchet v1 root";

/// The `info` of [`message_keys`].
pub const MESSAGE_KEYS_INFO: &[u8] = b"MultiMessenger message keys v1";

/// Length of a ChaCha20-Poly1305 nonce, in bytes.
pub const NONCE_LEN: usize = 12;

/// HKDF-SHA-256 (RFC 5869): `N` bytes of output keying material. `N` is at most 255 × 32 =
/// 8160 bytes (checked at compile time).
pub fn hkdf_sha256<const N: usize>(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; N]> {
    const { assert!(N <= 255 * 32, "HKDF-SHA-256 gives at most 8160 bytes") };
    let mut out = Zeroizing::new([0u8; N]);
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    // `expand` fails only for N > 255 × 32, ruled out above.
    let _ = hk.expand(info, &mut out[..]);
    out
}

/// HMAC-SHA-256 of `data` under `key`.
fn hmac_sha256(key: &[u8; 32], data: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // HMAC takes keys of any length: `new_from_slice` cannot fail here.
    if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) {
        mac.update(data);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// The root KDF of a Double Ratchet step: `(new root key, chain key)`, the two halves of
/// HKDF-SHA-256(salt = `rk`, ikm = `dh_out`, info = [`ROOT_INFO`], 64 bytes).
pub fn kdf_rk(rk: &[u8; 32], dh_out: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let okm = hkdf_sha256::<64>(rk, dh_out, ROOT_INFO);
    split(&okm)
}

/// The chain KDF: `(next chain key, message key)` = (HMAC-SHA-256(`ck`, `0x02`),
/// HMAC-SHA-256(`ck`, `0x01`)), as the Double Ratchet specification recommends (§5.2).
pub fn kdf_ck(ck: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    (hmac_sha256(ck, &[0x02]), hmac_sha256(ck, &[0x01]))
}

/// The ChaCha20-Poly1305 key and nonce of a message key: HKDF-SHA-256(salt = 32 zero bytes,
/// ikm = `mk`, info = [`MESSAGE_KEYS_INFO`], 44 bytes) split 32/12. A message key encrypts one
/// message only, so a derived (rather than random or counter) nonce is never reused.
pub fn message_keys(mk: &[u8; 32]) -> (Zeroizing<[u8; 32]>, [u8; NONCE_LEN]) {
    let okm = hkdf_sha256::<44>(&[0u8; 32], mk, MESSAGE_KEYS_INFO);
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&okm[32..]);
    (key, nonce)
}

/// The two 32-byte halves of 64 bytes.
fn split(okm: &[u8; 64]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let (mut a, mut b) = (Zeroizing::new([0u8; 32]), Zeroizing::new([0u8; 32]));
    a.copy_from_slice(&okm[..32]);
    b.copy_from_slice(&okm[32..]);
    (a, b)
}
