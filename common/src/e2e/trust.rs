//! Pin decisions: how far a peer's key is trusted ([`Trust`]), and the check of a key a peer
//! presents (in the key directory, or in a message starting a session) against its pin.

use std::fmt;

use super::error::Failure;
use crate::identity::{is_contributory, KEY_LEN};
use crate::pins::{PinCheck, Pins};

/// How far a peer's key is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// First contact: the key came from the server (its key directory, or a message it
    /// relayed) and is pinned now; not verified.
    New,
    /// Matches the pin; not verified by the user.
    Pinned,
    /// Matches the pin, which the user verified.
    Verified,
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trust::New => {
                "not verified (first contact: key from the server's directory, now pinned)"
            }
            Trust::Pinned => "not verified (pinned at first contact)",
            Trust::Verified => "verified",
        })
    }
}

/// Checks the identity key `key` that `from` presents: usable (not small order), not our own
/// key `own`, and matching its pin. Returns the trust (the caller pins a new key).
///
/// # Errors
/// [`Failure::BadKey`] for a small-order key, [`Failure::OwnKey`] for ours,
/// [`Failure::KeyChanged`] if it differs from the pin.
pub(super) fn check_peer_key(
    pins: &Pins,
    own: &[u8; KEY_LEN],
    from: &str,
    key: &[u8; KEY_LEN],
) -> Result<Trust, Failure> {
    if !is_contributory(key) {
        return Err(Failure::BadKey);
    }
    if key == own {
        return Err(Failure::OwnKey); // before any pin: a pin of our own key counts for nothing
    }
    match pins.check(from, key) {
        PinCheck::New => Ok(Trust::New),
        PinCheck::Pinned { verified: true } => Ok(Trust::Verified),
        PinCheck::Pinned { verified: false } => Ok(Trust::Pinned),
        PinCheck::Changed { pinned } => Err(Failure::KeyChanged {
            pinned,
            presented: *key,
        }),
    }
}
