//! X3DH key agreement (Signal's X3DH specification, revision 1, §2–3) with X25519, SHA-256 and
//! XEdDSA: the initiator ("A", Alice) starts a session from the responder's ("B", Bob)
//! [`PrekeyBundle`] while B may be offline; B completes it from A's first message.
//!
//! * `DH1 = DH(IK_A, SPK_B)`, `DH2 = DH(EK_A, IK_B)`, `DH3 = DH(EK_A, SPK_B)`, and
//!   `DH4 = DH(EK_A, OPK_B)` when a one-time prekey was handed out;
//! * `SK = HKDF-SHA-256(salt = 32 zero bytes, ikm = 32 × 0xFF ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4],
//!   info = "MultiMessenger X3DH v1", 32 bytes)`;
//! * the associated data binds both identity keys and both (case-folded) nicks
//!   ([`associated_data`]), always with A first so that both sides compute the same bytes.
//!
//! Every Diffie-Hellman output must be contributory (not all zeros): that refuses the
//! small-order keys an attacker could use to force a known secret, whichever key carries them.
//! The functions are pure: the initiator's ephemeral secret is passed in.

use std::fmt;

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::kdf::hkdf_sha256;
use super::xeddsa;
use crate::identity::{Identity, KEY_LEN};
use crate::prekeys::{signed_prekey_message, PrekeyBundle};
use crate::protocol::nick_key;

/// The `info` of the X3DH key derivation.
pub const X3DH_INFO: &[u8] = b"MultiMessenger X3DH v1";

/// The first bytes of [`associated_data`].
pub const AD_LABEL: &[u8] = b"MultiMessenger AD v1";

/// What X3DH gives both sides: the shared secret `SK` and the associated data `AD` for the
/// Double Ratchet.
pub struct SessionStart {
    /// `SK`, the Double Ratchet's first root key.
    pub shared: Zeroizing<[u8; 32]>,
    /// `AD`: [`associated_data`] of the two parties.
    pub associated_data: Vec<u8>,
}

impl fmt::Debug for SessionStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStart")
            .field("shared", &"<redacted>")
            .field("associated_data_len", &self.associated_data.len())
            .finish()
    }
}

/// Why a session cannot start. Deliberately vague: the details would help an attacker only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum X3dhError {
    /// The signed prekey is not signed by the bundle's identity key.
    #[error("the prekey bundle's signature does not verify")]
    BadSignature,
    /// A key is of small order (a Diffie-Hellman output is all zeros).
    #[error("a key in the session start is not usable")]
    BadKey,
}

/// The X25519 public key of `secret` (base-point multiplication, after clamping).
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

/// `DH(secret, public)`, refused if not contributory.
fn dh(secret: &[u8; 32], public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, X3dhError> {
    let shared = StaticSecret::from(*secret).diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(X3dhError::BadKey);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// `SK` from the DH outputs in order.
fn derive(outputs: &[&[u8; 32]]) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * (1 + outputs.len())));
    ikm.extend_from_slice(&[0xFF; 32]);
    for out in outputs {
        ikm.extend_from_slice(&out[..]);
    }
    hkdf_sha256::<32>(&[0u8; 32], &ikm, X3DH_INFO)
}

/// The associated data of a session: `"MultiMessenger AD v1" ‖ IK_A ‖ IK_B ‖ len(a) ‖ a ‖
/// len(b) ‖ b` where `a` and `b` are the initiator's and responder's nicks case-folded
/// ([`nick_key`]) and each length is one byte. Nicks are at most
/// [`crate::protocol::MAX_NICK_LEN`] bytes; a longer one would be cut to 255 bytes here.
pub fn associated_data(
    initiator: &str,
    initiator_key: &[u8; KEY_LEN],
    responder: &str,
    responder_key: &[u8; KEY_LEN],
) -> Vec<u8> {
    let (a, b) = (nick_key(initiator), nick_key(responder));
    let mut ad = Vec::with_capacity(AD_LABEL.len() + 2 * KEY_LEN + 2 + a.len() + b.len());
    ad.extend_from_slice(AD_LABEL);
    ad.extend_from_slice(initiator_key);
    ad.extend_from_slice(responder_key);
    for nick in [a.as_bytes(), b.as_bytes()] {
        let nick = &nick[..nick.len().min(255)];
        ad.push(nick.len() as u8);
        ad.extend_from_slice(nick);
    }
    ad
}

/// The initiator's side: `me` (with `identity`) starts a session with `peer` from its `bundle`
/// and a fresh `ephemeral_secret` (32 random bytes; its public key, [`public_key`], goes to the
/// peer with the first message).
///
/// # Errors
/// [`X3dhError::BadSignature`] if the signed prekey's signature does not verify (checked
/// first); [`X3dhError::BadKey`] if any key is of small order.
pub fn initiate(
    me: &str,
    identity: &Identity,
    peer: &str,
    bundle: &PrekeyBundle,
    ephemeral_secret: &[u8; 32],
) -> Result<SessionStart, X3dhError> {
    let spk = &bundle.signed_prekey;
    if !xeddsa::verify(
        &bundle.identity,
        &signed_prekey_message(spk.id, &spk.key),
        &spk.signature,
    ) {
        return Err(X3dhError::BadSignature);
    }
    let dh1 = dh(identity.secret(), &spk.key)?;
    let dh2 = dh(ephemeral_secret, &bundle.identity)?;
    let dh3 = dh(ephemeral_secret, &spk.key)?;
    let shared = match &bundle.one_time {
        Some(otk) => {
            let dh4 = dh(ephemeral_secret, &otk.key)?;
            derive(&[&dh1, &dh2, &dh3, &dh4])
        }
        None => derive(&[&dh1, &dh2, &dh3]),
    };
    Ok(SessionStart {
        shared,
        associated_data: associated_data(me, identity.public(), peer, &bundle.identity),
    })
}

/// The responder's side: `me` (with `identity`, the secret of the signed prekey the initiator
/// used and that of its one-time prekey if one was used) completes the session `peer` (with
/// `peer_identity`) started with `peer_ephemeral`.
///
/// # Errors
/// [`X3dhError::BadKey`] if the peer's identity or ephemeral key is of small order.
pub fn respond(
    me: &str,
    identity: &Identity,
    peer: &str,
    peer_identity: &[u8; KEY_LEN],
    peer_ephemeral: &[u8; KEY_LEN],
    signed_prekey_secret: &[u8; 32],
    one_time_secret: Option<&[u8; 32]>,
) -> Result<SessionStart, X3dhError> {
    let dh1 = dh(signed_prekey_secret, peer_identity)?;
    let dh2 = dh(identity.secret(), peer_ephemeral)?;
    let dh3 = dh(signed_prekey_secret, peer_ephemeral)?;
    let shared = match one_time_secret {
        Some(otk) => {
            let dh4 = dh(otk, peer_ephemeral)?;
            derive(&[&dh1, &dh2, &dh3, &dh4])
        }
        None => derive(&[&dh1, &dh2, &dh3]),
    };
    Ok(SessionStart {
        shared,
        associated_data: associated_data(peer, peer_identity, me, identity.public()),
    })
}
