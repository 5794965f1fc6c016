//! The key directory of protocol 6: what a client publishes so that others can start an
//! end-to-end session with it while it is offline (X3DH prekeys, after Signal's X3DH
//! specification), and what the server hands out ([`PrekeyBundle`]).
//!
//! The server stores, per account, one identity key, one signed prekey and up to
//! [`MAX_ONE_TIME_STORED`] one-time prekeys. It hands each one-time prekey out once (deleted in
//! the same transaction) and serves the signed prekey alone when none remain (the "last resort"
//! key). It never checks signatures: clients do, against the identity key they pin.
//!
//! Nothing here does cryptography; [`crate::e2e`] signs and verifies.

use serde::{Deserialize, Serialize};

use crate::identity::{is_contributory, KEY_LEN};

/// Length of an XEdDSA signature, in bytes (`R ‖ s`, 32 bytes each).
pub const SIGNATURE_LEN: usize = 64;

/// Most one-time prekeys in one [`KeyUpload`].
pub const MAX_ONE_TIME_PER_UPLOAD: usize = 100;

/// Most one-time prekeys the server keeps per account; an upload beyond it keeps the newest
/// ones.
pub const MAX_ONE_TIME_STORED: usize = 200;

/// When an account's one-time prekeys fall below this many, the server tells its owner
/// ([`crate::protocol::ServerMsg::PrekeysLow`]) so that the client uploads more.
pub const PREKEYS_LOW: u32 = 20;

/// Length of a [`DeviceCheck`] token, in bytes.
pub const DEVICE_TOKEN_LEN: usize = 16;

/// A medium-term prekey signed by the identity key: XEdDSA over
/// [`signed_prekey_message`]`(id, key)`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPrekey {
    /// The owner's number for it (a client uses a new one at each rotation).
    pub id: u32,
    /// The X25519 public key.
    pub key: [u8; KEY_LEN],
    /// [`SIGNATURE_LEN`] bytes.
    pub signature: Vec<u8>,
}

/// A one-time prekey: handed out once, then deleted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimePrekey {
    /// The owner's number for it (unique per account; never reused by a client).
    pub id: u32,
    /// The X25519 public key.
    pub key: [u8; KEY_LEN],
}

/// What the server hands out to start a session with an account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrekeyBundle {
    /// The account's X25519 identity key (the same key as protocol 5's `/secure`).
    pub identity: [u8; KEY_LEN],
    /// Its current signed prekey.
    pub signed_prekey: SignedPrekey,
    /// One of its one-time prekeys, none when none remain.
    pub one_time: Option<OneTimePrekey>,
}

/// Two copies of one client home (one account used from two machines with a copied home)
/// would both advance the same ratchets and break each other's sessions. Each login's upload
/// carries the token the client saved at its previous upload (`previous`, all zeros the first
/// time) and a fresh random one (`next`); the server keeps the last `next` it stored. If the
/// stored token is neither `previous` nor `next`, another copy has published since: the answer
/// says `other_device`. The server stores `next` either way.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCheck {
    /// The token saved at the previous upload; all zeros at the first.
    pub previous: [u8; DEVICE_TOKEN_LEN],
    /// A fresh random token.
    pub next: [u8; DEVICE_TOKEN_LEN],
}

/// A client's keys for the directory ([`crate::protocol::ClientMsg::PublishKeys`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUpload {
    /// The identity key; replaces the stored one (the account is the client certificate's).
    pub identity: [u8; KEY_LEN],
    /// The current signed prekey; replaces the stored one.
    pub signed_prekey: SignedPrekey,
    /// New one-time prekeys, added to those stored: at most [`MAX_ONE_TIME_PER_UPLOAD`].
    pub one_time: Vec<OneTimePrekey>,
    /// The copied-home check.
    pub device: DeviceCheck,
    /// When the identity key changed (a new home for the same account), the server drops the
    /// one-time prekeys stored for the old one. Clients set it when they know they replaced the
    /// identity; the server also drops them whenever `identity` differs from the stored one.
    pub replace_one_time: bool,
}

/// The answer to [`crate::protocol::ClientMsg::FetchBundle`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BundleAnswer {
    /// The account's keys.
    Keys(PrekeyBundle),
    /// The account exists and published no keys (a protocol 5 client, or never logged in
    /// since): end-to-end is impossible until it does.
    NoKeys,
    /// No account by that nick.
    NoSuchUser,
    /// The asker fetched more bundles than the server allows; try again after this many
    /// milliseconds.
    RateLimited {
        /// Milliseconds.
        retry_after_ms: u64,
    },
    /// The server could not read its directory now (its store is busy or closing); try again.
    Busy,
}

/// The bytes an identity key signs for a signed prekey: a domain label, the id (4 bytes, big
/// endian) and the key. The label keeps a prekey signature from being valid for anything else.
pub fn signed_prekey_message(id: u32, key: &[u8; KEY_LEN]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNED_PREKEY_LABEL.len() + 4 + KEY_LEN);
    m.extend_from_slice(SIGNED_PREKEY_LABEL);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(key);
    m
}

/// The domain label of [`signed_prekey_message`].
pub const SIGNED_PREKEY_LABEL: &[u8] = b"MultiMessenger signed prekey v1";

/// Why a [`KeyUpload`] is refused (the server answers with `bad-keys` and this detail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyUploadError {
    /// A key is of small order (or all zeros): it would make a Diffie-Hellman output public.
    #[error("a key is not usable (small order)")]
    BadKey,
    /// The signature is not [`SIGNATURE_LEN`] bytes.
    #[error("the signed prekey's signature is not {SIGNATURE_LEN} bytes")]
    SignatureLength,
    /// Too many one-time prekeys.
    #[error("at most {MAX_ONE_TIME_PER_UPLOAD} one-time prekeys per upload")]
    TooMany,
    /// Two one-time prekeys have the same id.
    #[error("two one-time prekeys have the same id")]
    DuplicateId,
}

impl KeyUpload {
    /// Checks the shape: usable keys, a signature of the right length, at most
    /// [`MAX_ONE_TIME_PER_UPLOAD`] one-time prekeys with distinct ids. (The signature itself is
    /// for the clients to check.)
    ///
    /// # Errors
    /// The first rule broken.
    pub fn validate(&self) -> Result<(), KeyUploadError> {
        if self.signed_prekey.signature.len() != SIGNATURE_LEN {
            return Err(KeyUploadError::SignatureLength);
        }
        if self.one_time.len() > MAX_ONE_TIME_PER_UPLOAD {
            return Err(KeyUploadError::TooMany);
        }
        let keys = std::iter::once(&self.identity)
            .chain(std::iter::once(&self.signed_prekey.key))
            .chain(self.one_time.iter().map(|k| &k.key));
        for key in keys {
            if !is_contributory(key) {
                return Err(KeyUploadError::BadKey);
            }
        }
        let mut ids: Vec<u32> = self.one_time.iter().map(|k| k.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(KeyUploadError::DuplicateId);
        }
        Ok(())
    }
}

// Debug without the bulk: public keys as a short fingerprint, so logs stay readable (nothing
// secret is here).
fn short(key: &[u8]) -> String {
    format!("{}…", crate::identity::hex(&key[..key.len().min(4)]))
}

impl std::fmt::Debug for SignedPrekey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignedPrekey({} {})", self.id, short(&self.key))
    }
}

impl std::fmt::Debug for OneTimePrekey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OneTimePrekey({} {})", self.id, short(&self.key))
    }
}

impl std::fmt::Debug for PrekeyBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrekeyBundle")
            .field("identity", &short(&self.identity))
            .field("signed_prekey", &self.signed_prekey)
            .field("one_time", &self.one_time)
            .finish()
    }
}

impl std::fmt::Debug for DeviceCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceCheck({} → {})",
            short(&self.previous),
            short(&self.next)
        )
    }
}

impl std::fmt::Debug for KeyUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyUpload")
            .field("identity", &short(&self.identity))
            .field("signed_prekey", &self.signed_prekey)
            .field("one_time", &self.one_time.len())
            .field("device", &self.device)
            .field("replace_one_time", &self.replace_one_time)
            .finish()
    }
}

impl std::fmt::Debug for BundleAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BundleAnswer::Keys(b) => f.debug_tuple("Keys").field(b).finish(),
            BundleAnswer::NoKeys => f.write_str("NoKeys"),
            BundleAnswer::NoSuchUser => f.write_str("NoSuchUser"),
            BundleAnswer::RateLimited { retry_after_ms } => f
                .debug_struct("RateLimited")
                .field("retry_after_ms", retry_after_ms)
                .finish(),
            BundleAnswer::Busy => f.write_str("Busy"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload() -> KeyUpload {
        KeyUpload {
            identity: [9; KEY_LEN],
            signed_prekey: SignedPrekey {
                id: 1,
                key: [7; KEY_LEN],
                signature: vec![0; SIGNATURE_LEN],
            },
            one_time: (0..3)
                .map(|i| OneTimePrekey {
                    id: i,
                    key: [i as u8 + 10; KEY_LEN],
                })
                .collect(),
            device: DeviceCheck {
                previous: [0; DEVICE_TOKEN_LEN],
                next: [1; DEVICE_TOKEN_LEN],
            },
            replace_one_time: false,
        }
    }

    #[test]
    fn uploads_are_checked_for_shape() {
        assert_eq!(upload().validate(), Ok(()));
        let mut u = upload();
        u.signed_prekey.signature.pop();
        assert_eq!(u.validate(), Err(KeyUploadError::SignatureLength));
        let mut u = upload();
        u.one_time[2].id = 0;
        assert_eq!(u.validate(), Err(KeyUploadError::DuplicateId));
        let mut u = upload();
        u.one_time[1].key = [0; KEY_LEN];
        assert_eq!(u.validate(), Err(KeyUploadError::BadKey));
        let mut u = upload();
        u.identity = [0; KEY_LEN];
        assert_eq!(u.validate(), Err(KeyUploadError::BadKey));
        let mut u = upload();
        u.one_time = (0..=MAX_ONE_TIME_PER_UPLOAD as u32)
            .map(|id| OneTimePrekey { id, key: [5; 32] })
            .collect();
        assert_eq!(u.validate(), Err(KeyUploadError::TooMany));
    }

    #[test]
    fn the_signed_message_has_a_label_the_id_and_the_key() {
        let m = signed_prekey_message(0x0102_0304, &[0xAA; KEY_LEN]);
        assert!(m.starts_with(SIGNED_PREKEY_LABEL));
        assert_eq!(
            &m[SIGNED_PREKEY_LABEL.len()..SIGNED_PREKEY_LABEL.len() + 4],
            &[1, 2, 3, 4]
        );
        assert_eq!(m.len(), SIGNED_PREKEY_LABEL.len() + 4 + KEY_LEN);
    }

    #[test]
    fn debug_is_short() {
        let text = format!("{:?}", upload());
        assert!(text.contains("09090909…"), "{text}");
        assert!(!text.contains("9, 9, 9"), "{text}");
    }
}
