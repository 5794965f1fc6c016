//! Login with an account key: the login method of clients that cannot present a TLS client
//! certificate (the web client), next to [`ClientMsg::Hello`](crate::protocol::ClientMsg::Hello)
//! over a certificate.
//!
//! ```text
//! client                                  server
//! KeyHello { version, nick, key }  ──────▶
//!                                  ◀────── Challenge { nonce }     (32 fresh random bytes)
//! KeyProof { signature }           ──────▶  verifies the signature of signed_message(..)
//!                                  ◀────── Welcome … (as after Hello), or a fatal Error
//! ```
//!
//! The key is an ECDSA P-256 key (FIPS 186-4; SEC1 uncompressed point; signatures with SHA-256
//! as `r ‖ s`, IEEE P1363): what WebCrypto generates as a *non-extractable* key in every
//! browser, so the page never holds the private key's bytes. The account is then identified by
//! [`credential`] of the key, where a certificate login uses the certificate's fingerprint;
//! the two never collide (a credential starts `p256:`).
//!
//! What is signed ([`signed_message`]) binds the server's nonce (no replay on another
//! connection), the nick and the key (a proof for one login is not one for another).

use sha2::{Digest, Sha256};

/// Length of an account key: an uncompressed SEC1 P-256 point (`04 ‖ x ‖ y`).
pub const PUBLIC_KEY_LEN: usize = 65;

/// Length of a signature: `r ‖ s`, 32 bytes each.
pub const SIGNATURE_LEN: usize = 64;

/// Length of the server's nonce in [`ServerMsg::Challenge`](crate::protocol::ServerMsg::Challenge).
pub const NONCE_LEN: usize = 32;

/// The first bytes of every signed login message (domain separation: a signature made for
/// anything else never verifies as a login).
pub const CONTEXT: &[u8] = b"multi-messenger key login v1\0";

/// The prefix of every key credential.
pub const CREDENTIAL_PREFIX: &str = "p256:";

/// The bytes the client signs: [`CONTEXT`] ‖ nonce (32) ‖ nick length (1 byte) ‖ nick
/// (ASCII) ‖ key (65).
#[must_use]
pub fn signed_message(nonce: &[u8], nick: &str, key: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + nonce.len() + 1 + nick.len() + key.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(nonce);
    // Nicks are at most 32 bytes; a longer one is refused before anything is signed.
    m.push(u8::try_from(nick.len()).unwrap_or(u8::MAX));
    m.extend_from_slice(nick.as_bytes());
    m.extend_from_slice(key);
    m
}

/// The account's credential for `key`: `p256:` and the SHA-256 of the key's 65 bytes in
/// lowercase hex. Stored where a certificate login stores the certificate's fingerprint.
#[must_use]
pub fn credential(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    let mut s = String::with_capacity(CREDENTIAL_PREFIX.len() + 64);
    s.push_str(CREDENTIAL_PREFIX);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Whether `key` has the shape of an account key (65 bytes starting `04`). Whether it is a
/// point on the curve is checked when the signature is verified.
#[must_use]
pub fn well_formed_key(key: &[u8]) -> bool {
    key.len() == PUBLIC_KEY_LEN && key.first() == Some(&0x04)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_message_binds_nonce_nick_and_key_in_a_fixed_layout() {
        let nonce = [7u8; NONCE_LEN];
        let mut key = [1u8; PUBLIC_KEY_LEN];
        key[0] = 4;
        let m = signed_message(&nonce, "alice", &key);
        assert_eq!(&m[..CONTEXT.len()], CONTEXT);
        assert_eq!(&m[CONTEXT.len()..CONTEXT.len() + 32], &nonce);
        assert_eq!(m[CONTEXT.len() + 32], 5);
        assert_eq!(&m[CONTEXT.len() + 33..CONTEXT.len() + 38], b"alice");
        assert_eq!(&m[CONTEXT.len() + 38..], &key);
        assert_ne!(m, signed_message(&nonce, "alicf", &key));
    }

    #[test]
    fn a_credential_is_prefixed_hex_of_the_keys_digest() {
        let c = credential(&[4u8; PUBLIC_KEY_LEN]);
        assert!(c.starts_with("p256:"));
        assert_eq!(c.len(), 5 + 64);
        assert!(c[5..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(c, credential(&[5u8; PUBLIC_KEY_LEN]));
    }

    #[test]
    fn only_uncompressed_points_are_well_formed() {
        assert!(well_formed_key(&[4u8; 65]));
        assert!(!well_formed_key(&[2u8; 65]));
        assert!(!well_formed_key(&[4u8; 33]));
        assert!(!well_formed_key(&[]));
    }
}
