//! Pin decisions: how far a peer's key is trusted ([`Trust`]), and the check of a peer's static
//! key against its pin (trust on first use) when a handshake reveals it.

use std::fmt;

use super::error::Failure;
use crate::identity::{is_contributory, KEY_LEN};
use crate::pins::{PinCheck, Pins};

/// How far a peer's key is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// First contact: pinned just now.
    New,
    /// Matches the pin; not verified by the user.
    Pinned,
    /// Matches the pin, which the user verified.
    Verified,
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trust::New => "new key, now pinned; not verified",
            Trust::Pinned => "pinned key; not verified",
            Trust::Verified => "verified",
        })
    }
}

/// Checks the static key `key` that peer `from` presented in a handshake: usable (not small
/// order), not our own key `own`, and matching its pin. Returns the trust and whether the key
/// is new (not pinned yet: the caller pins it when the session comes up).
///
/// # Errors
/// [`Failure::Handshake`] if the handshake gave no key, [`Failure::BadKey`] for a small-order
/// key, [`Failure::OwnKey`] for ours, [`Failure::KeyChanged`] if it differs from the pin.
pub(super) fn check_peer_key(
    pins: &Pins,
    own: &[u8; KEY_LEN],
    from: &str,
    key: Option<[u8; KEY_LEN]>,
) -> Result<(Trust, bool), Failure> {
    let key = key.ok_or(Failure::Handshake)?;
    if !is_contributory(&key) {
        return Err(Failure::BadKey);
    }
    if key == *own {
        return Err(Failure::OwnKey); // before any pin: a pin of our own key counts for nothing
    }
    match pins.check(from, &key) {
        PinCheck::New => Ok((Trust::New, true)),
        PinCheck::Pinned { verified: true } => Ok((Trust::Verified, false)),
        PinCheck::Pinned { verified: false } => Ok((Trust::Pinned, false)),
        PinCheck::Changed { pinned } => Err(Failure::KeyChanged {
            pinned,
            presented: key,
        }),
    }
}
