//! A client's long-term X25519 identity key, and checks on other parties' public keys.
//!
//! The secret is zeroized on drop and never printed: `Debug` shows only the public key.

use std::fmt;

use rand_core::{CryptoRngCore, OsRng};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of an X25519 key in bytes.
pub const KEY_LEN: usize = 32;

/// First line of an identity file; says what the file is and its format version.
const FILE_HEADER: &str = "multi-messenger identity v1";

/// A long-term X25519 key pair.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Identity {
    secret: [u8; KEY_LEN],
    #[zeroize(skip)]
    public: [u8; KEY_LEN],
}

/// An identity file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The text is not an identity file of a version we know.
    #[error("not a Multi-Messenger identity file (expected first line {FILE_HEADER:?})")]
    Format,
    /// The key line is not 64 hex digits.
    #[error("the key in the identity file is damaged")]
    Key,
}

impl Identity {
    /// A fresh random identity, from the operating system's generator.
    pub fn generate() -> Identity {
        Identity::generate_with(&mut OsRng)
    }

    /// A fresh identity whose secret is 32 bytes drawn from `rng` (a cryptographically secure
    /// generator outside tests; a seeded one gives the same identity every time).
    pub fn generate_with(rng: &mut (impl CryptoRngCore + ?Sized)) -> Identity {
        let mut secret = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(&mut secret[..]);
        Identity::from_secret(*secret)
    }

    /// The identity with this secret scalar (clamped by X25519 when used).
    pub fn from_secret(secret: [u8; KEY_LEN]) -> Identity {
        let dalek = StaticSecret::from(secret);
        let public = PublicKey::from(&dalek).to_bytes();
        Identity { secret, public }
    }

    /// The public key.
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// An XEdDSA signature of `message` by this identity ([`crate::e2e::xeddsa`]), with 64
    /// fresh random bytes from `rng`.
    pub fn sign(&self, message: &[u8], rng: &mut (impl CryptoRngCore + ?Sized)) -> [u8; 64] {
        let mut random = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(&mut random[..]);
        crate::e2e::xeddsa::sign(&self.secret, message, &random)
    }

    /// The secret key, for handing to the Noise implementation only.
    pub(crate) fn secret(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }

    /// The file form: a header line and the secret as hex. The returned text is zeroized when
    /// dropped; write it to a file readable only by its owner.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{FILE_HEADER}\n{}\n", hex(&self.secret)))
    }

    /// Parses [`Identity::to_file_text`]'s format.
    ///
    /// # Errors
    /// [`IdentityError`] if the text is not such a file.
    pub fn from_file_text(text: &str) -> Result<Identity, IdentityError> {
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(FILE_HEADER) {
            return Err(IdentityError::Format);
        }
        let key = lines.next().map(str::trim).ok_or(IdentityError::Key)?;
        let secret = Zeroizing::new(parse_key(key).ok_or(IdentityError::Key)?);
        Ok(Identity::from_secret(*secret))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public", &hex(&self.public))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Whether `key` is a usable X25519 public key: a Diffie-Hellman with it must be contributory
/// (not all zeros), which rules out the small-order points an attacker could use to force a
/// known shared secret. X25519 itself does not check this.
pub fn is_contributory(key: &[u8; KEY_LEN]) -> bool {
    let probe = StaticSecret::random_from_rng(OsRng);
    probe
        .diffie_hellman(&PublicKey::from(*key))
        .was_contributory()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key as 64 hex digits, back to bytes.
pub fn parse_key(text: &str) -> Option<[u8; KEY_LEN]> {
    if text.len() != KEY_LEN * 2 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

/// A public key for people to read and compare: 16 groups of 4 hex digits.
pub fn key_fingerprint(key: &[u8; KEY_LEN]) -> String {
    grouped(&hex(key), 4)
}

/// `s` (ASCII) in groups of `n` characters separated by spaces, for reading aloud.
pub(crate) fn grouped(s: &str, n: usize) -> String {
    s.as_bytes()
        .chunks(n.max(1))
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_and_debug_never_shows_the_secret() {
        let id = Identity::generate();
        let text = id.to_file_text();
        let back = Identity::from_file_text(&text).unwrap();
        assert_eq!(back.public(), id.public());
        let debug = format!("{id:?}");
        assert!(debug.contains("<redacted>"));
        assert!(!debug.contains(&hex(id.secret())), "{debug}");
        assert!(debug.contains(&hex(id.public())));
    }

    #[test]
    fn damaged_files_are_refused() {
        assert_eq!(
            Identity::from_file_text("hello\n00").unwrap_err(),
            IdentityError::Format
        );
        assert_eq!(
            Identity::from_file_text(FILE_HEADER).unwrap_err(),
            IdentityError::Key
        );
        assert_eq!(
            Identity::from_file_text(&format!("{FILE_HEADER}\nzz")).unwrap_err(),
            IdentityError::Key
        );
        let bad = format!("{FILE_HEADER}\n{}", "g".repeat(64));
        assert_eq!(
            Identity::from_file_text(&bad).unwrap_err(),
            IdentityError::Key
        );
    }

    #[test]
    fn the_public_key_is_rfc7748s() {
        // RFC 7748 section 6.1: Alice's private and public keys.
        let secret =
            parse_key("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a").unwrap();
        let id = Identity::from_secret(secret);
        assert_eq!(
            hex(id.public()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn small_order_points_are_not_contributory() {
        assert!(!is_contributory(&[0u8; 32]));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(!is_contributory(&one));
        // A point of order 8 (from the Curve25519 small-order list).
        let order8 =
            parse_key("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800").unwrap();
        assert!(!is_contributory(&order8));
        assert!(is_contributory(Identity::generate().public()));
    }

    #[test]
    fn fingerprints_group_hex() {
        let fp = key_fingerprint(&[0xab; 32]);
        assert_eq!(fp.split(' ').count(), 16);
        assert!(fp.starts_with("abab abab"));
    }
}
