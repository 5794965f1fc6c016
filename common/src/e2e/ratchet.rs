//! The Double Ratchet (Signal's Double Ratchet specification, revision 1, 2016-11-20, §3.1–3.5)
//! with X25519, HKDF/HMAC-SHA-256 ([`super::kdf`]) and ChaCha20-Poly1305.
//!
//! State as in §3.2: our ratchet key pair `DHs`, the peer's ratchet key `DHr`, the root key
//! `RK`, the sending and receiving chain keys `CKs`/`CKr`, the counters `Ns`, `Nr`, `PN`, and
//! the skipped message keys `MKSKIPPED` keyed by `(DHr, n)` in insertion order (§3.5), plus the
//! session's associated data.
//!
//! Differences from the specification's pseudocode, all on the receiving side:
//! * [`Ratchet::decrypt`] is transactional: every change is computed aside and committed only
//!   after the message authenticated, so a forged, damaged or replayed message leaves the state
//!   exactly as it was (the specification's note in §3.5). It draws the new ratchet key pair
//!   only then: a message that fails to decrypt consumes no randomness.
//! * The peer's previous ratchet keys are remembered (the last [`MAX_OLD_CHAINS`]), so a
//!   message from a chain already passed whose key is not stored is reported as
//!   [`RatchetError::Old`] instead of being taken for a new ratchet step.
//! * [`MAX_SKIP`] bounds the keys skipped in one chain (§3.5, as in the specification, once for
//!   the end of the current chain and once in the new one); [`MAX_SKIPPED_KEYS`] bounds those
//!   stored, the oldest dropped first (§4 "deletion of skipped message keys").
//!
//! The AEAD's associated data is `AD ‖ header.encode()` (a fixed 40-byte header layout, so a
//! second implementation can match it byte for byte). Each message key gives the
//! ChaCha20-Poly1305 key and nonce through [`message_keys`].

use std::collections::VecDeque;
use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::kdf::{kdf_ck, kdf_rk, message_keys};
use crate::identity::hex;

/// Most message keys skipped in one chain step (per chain, per message received).
pub const MAX_SKIP: u32 = 1000;

/// Most skipped message keys stored in total; beyond it the oldest are dropped.
pub const MAX_SKIPPED_KEYS: usize = 2000;

/// How many of the peer's previous ratchet public keys are remembered (to recognize messages
/// from chains already passed).
pub const MAX_OLD_CHAINS: usize = 1000;

/// Length of an encoded [`Header`].
pub const HEADER_LEN: usize = 40;

/// The version byte that starts [`Ratchet::to_bytes`].
const FORMAT_VERSION: u8 = 1;

/// A message header: the sender's current ratchet public key, the length of its previous
/// sending chain and the message's number in the current one.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Header {
    /// The sender's ratchet public key.
    pub dh: [u8; 32],
    /// Number of messages in the sender's previous sending chain.
    pub pn: u32,
    /// This message's number in the current sending chain.
    pub n: u32,
}

impl Header {
    /// `dh ‖ pn ‖ n`, the numbers big-endian: the bytes authenticated with the message.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..32].copy_from_slice(&self.dh);
        out[32..36].copy_from_slice(&self.pn.to_be_bytes());
        out[36..].copy_from_slice(&self.n.to_be_bytes());
        out
    }
}

/// Why a message cannot be encrypted or decrypted, or a saved state read. Deliberately vague
/// where details would help an attacker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RatchetError {
    /// A responder cannot send before it received a message (it has no sending chain yet).
    #[error("no sending chain yet: wait for the peer's first message")]
    NotReady,
    /// The message did not authenticate: forged, damaged, or from another session.
    #[error("the message does not decrypt")]
    Decrypt,
    /// The message's place in its chain was passed and its key is not stored: a replay, or a
    /// message whose key was dropped.
    #[error("the message is a replay or too old")]
    Old,
    /// Accepting the message would skip more than [`MAX_SKIP`] message keys.
    #[error("the message would skip too many messages")]
    TooManySkipped,
    /// A ratchet key is of small order (the Diffie-Hellman output is all zeros).
    #[error("a ratchet key is not usable")]
    BadKey,
    /// A saved state is damaged or of an unknown version.
    #[error("the saved session state is damaged")]
    Format,
}

/// A skipped message key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct Skipped {
    #[zeroize(skip)]
    dh: [u8; 32],
    #[zeroize(skip)]
    n: u32,
    mk: [u8; 32],
}

/// One side of a Double Ratchet session. Secrets are wiped on drop; `Debug` shows only public
/// values and counters.
#[derive(Clone)]
pub struct Ratchet {
    /// `DHs`.
    dhs: StaticSecret,
    dhs_public: [u8; 32],
    /// `DHr`.
    dhr: Option<[u8; 32]>,
    /// The peer's ratchet keys before `dhr`, oldest first.
    old_dhr: VecDeque<[u8; 32]>,
    rk: Zeroizing<[u8; 32]>,
    cks: Option<Zeroizing<[u8; 32]>>,
    ckr: Option<Zeroizing<[u8; 32]>>,
    ns: u32,
    nr: u32,
    pn: u32,
    /// `MKSKIPPED`, oldest first.
    skipped: VecDeque<Skipped>,
    ad: Vec<u8>,
    received: bool,
}

impl fmt::Debug for Ratchet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ratchet")
            .field("ratchet_key", &hex(&self.dhs_public[..4]))
            .field("ns", &self.ns)
            .field("nr", &self.nr)
            .field("pn", &self.pn)
            .field("skipped", &self.skipped.len())
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

/// `DH(secret, public)`, refused if not contributory.
fn dh(secret: &StaticSecret, public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, RatchetError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(RatchetError::BadKey);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// A fresh ratchet key pair: 32 bytes drawn from `rng` with one `fill_bytes` call.
fn generate(rng: &mut (impl CryptoRngCore + ?Sized)) -> (StaticSecret, [u8; 32]) {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut bytes[..]);
    let secret = StaticSecret::from(*bytes);
    let public = PublicKey::from(&secret).to_bytes();
    (secret, public)
}

/// The AEAD's associated data for `header`.
fn aead_ad(ad: &[u8], header: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(ad.len() + HEADER_LEN);
    out.extend_from_slice(ad);
    out.extend_from_slice(&header.encode());
    out
}

fn seal(mk: &[u8; 32], ad: &[u8], header: &Header, plaintext: &[u8]) -> Option<Vec<u8>> {
    let (key, nonce) = message_keys(mk);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key[..]));
    let aad = aead_ad(ad, header);
    cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .ok()
}

fn open(mk: &[u8; 32], ad: &[u8], header: &Header, ciphertext: &[u8]) -> Option<Vec<u8>> {
    let (key, nonce) = message_keys(mk);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key[..]));
    let aad = aead_ad(ad, header);
    cipher
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .ok()
}

/// Advances `ck` from position `from` to `until`, collecting the skipped keys of chain `dh`.
fn skip(
    ck: &mut Zeroizing<[u8; 32]>,
    dh: &[u8; 32],
    from: u32,
    until: u32,
    out: &mut Vec<Skipped>,
) -> Result<(), RatchetError> {
    if until.saturating_sub(from) > MAX_SKIP {
        return Err(RatchetError::TooManySkipped);
    }
    for n in from..until {
        let (next, mk) = kdf_ck(ck);
        *ck = next;
        out.push(Skipped {
            dh: *dh,
            n,
            mk: *mk,
        });
    }
    Ok(())
}

impl Ratchet {
    /// RatchetInitAlice: the initiator's state from the X3DH secret `shared` and the
    /// responder's signed prekey `peer_ratchet_key` (its first ratchet key). Draws our first
    /// ratchet key pair from `rng` (32 bytes).
    ///
    /// # Errors
    /// [`RatchetError::BadKey`] if `peer_ratchet_key` is of small order.
    pub fn initiator(
        shared: &[u8; 32],
        peer_ratchet_key: &[u8; 32],
        associated_data: Vec<u8>,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Ratchet, RatchetError> {
        let (dhs, dhs_public) = generate(rng);
        let out = dh(&dhs, peer_ratchet_key)?;
        let (rk, cks) = kdf_rk(shared, &out);
        Ok(Ratchet {
            dhs,
            dhs_public,
            dhr: Some(*peer_ratchet_key),
            old_dhr: VecDeque::new(),
            rk,
            cks: Some(cks),
            ckr: None,
            ns: 0,
            nr: 0,
            pn: 0,
            skipped: VecDeque::new(),
            ad: associated_data,
            received: false,
        })
    }

    /// RatchetInitBob: the responder's state from the X3DH secret `shared` and the secret of
    /// its signed prekey (its first ratchet key pair). It can send only after it received.
    pub fn responder(
        shared: &[u8; 32],
        own_ratchet_secret: &[u8; 32],
        associated_data: Vec<u8>,
    ) -> Ratchet {
        let dhs = StaticSecret::from(*own_ratchet_secret);
        let dhs_public = PublicKey::from(&dhs).to_bytes();
        Ratchet {
            dhs,
            dhs_public,
            dhr: None,
            old_dhr: VecDeque::new(),
            rk: Zeroizing::new(*shared),
            cks: None,
            ckr: None,
            ns: 0,
            nr: 0,
            pn: 0,
            skipped: VecDeque::new(),
            ad: associated_data,
            received: false,
        }
    }

    /// Whether a message from the peer decrypted in this session (from then on the peer has
    /// the session: the X3DH start need not be sent again).
    pub fn has_received(&self) -> bool {
        self.received
    }

    /// Our current ratchet public key (the `dh` of the headers we send now).
    pub fn ratchet_key(&self) -> &[u8; 32] {
        &self.dhs_public
    }

    /// The number of skipped message keys stored.
    pub fn skipped_keys(&self) -> usize {
        self.skipped.len()
    }

    /// RatchetEncrypt: the header and ciphertext of `plaintext`.
    ///
    /// # Errors
    /// [`RatchetError::NotReady`] for a responder that has received nothing yet.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<(Header, Vec<u8>), RatchetError> {
        let Some(cks) = self.cks.as_mut() else {
            return Err(RatchetError::NotReady);
        };
        let (next, mk) = kdf_ck(cks);
        let header = Header {
            dh: self.dhs_public,
            pn: self.pn,
            n: self.ns,
        };
        let ciphertext = seal(&mk, &self.ad, &header, plaintext).ok_or(RatchetError::Decrypt)?;
        *cks = next;
        // 2^32 messages in one chain cannot happen; if they did, the header numbers would stop
        // rising and the peer would refuse the repeats as `Old` (keys are never reused).
        self.ns = self.ns.saturating_add(1);
        Ok((header, ciphertext))
    }

    /// RatchetDecrypt, transactional: on any error the state is exactly as before. `rng` gives
    /// the new ratchet key pair when the message starts a new ratchet step (32 bytes, drawn only
    /// once the message authenticated).
    ///
    /// # Errors
    /// [`RatchetError::Decrypt`], [`RatchetError::Old`], [`RatchetError::TooManySkipped`],
    /// [`RatchetError::BadKey`].
    pub fn decrypt(
        &mut self,
        header: &Header,
        ciphertext: &[u8],
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Vec<u8>, RatchetError> {
        // TrySkippedMessageKeys
        if let Some(i) = self
            .skipped
            .iter()
            .position(|s| s.dh == header.dh && s.n == header.n)
        {
            let plaintext = open(&self.skipped[i].mk, &self.ad, header, ciphertext)
                .ok_or(RatchetError::Decrypt)?;
            self.skipped.remove(i);
            self.received = true;
            return Ok(plaintext);
        }
        let mut new_skipped = Vec::new();
        if self.dhr == Some(header.dh) {
            // The current receiving chain (the initiator has none before its first reply).
            let Some(ckr) = self.ckr.as_ref() else {
                return Err(RatchetError::Old);
            };
            if header.n < self.nr {
                return Err(RatchetError::Old);
            }
            let mut ck = ckr.clone();
            skip(&mut ck, &header.dh, self.nr, header.n, &mut new_skipped)?;
            let (next, mk) = kdf_ck(&ck);
            let plaintext = open(&mk, &self.ad, header, ciphertext).ok_or(RatchetError::Decrypt)?;
            self.ckr = Some(next);
            self.nr = header.n.saturating_add(1);
            self.commit_skipped(new_skipped);
            self.received = true;
            return Ok(plaintext);
        }
        if self.old_dhr.contains(&header.dh) {
            return Err(RatchetError::Old);
        }
        // A new ratchet step (DHRatchet), computed aside. First the end of the current chain.
        if let (Some(ckr), Some(dhr)) = (self.ckr.as_ref(), self.dhr.as_ref()) {
            let mut ck = ckr.clone();
            skip(&mut ck, dhr, self.nr, header.pn, &mut new_skipped)?;
        }
        let out = dh(&self.dhs, &header.dh)?;
        let (rk1, mut ck) = kdf_rk(&self.rk, &out);
        skip(&mut ck, &header.dh, 0, header.n, &mut new_skipped)?;
        let (next, mk) = kdf_ck(&ck);
        let plaintext = open(&mk, &self.ad, header, ciphertext).ok_or(RatchetError::Decrypt)?;
        // Authenticated: the second half of the step, then commit.
        let (dhs, dhs_public) = generate(rng);
        let out2 = dh(&dhs, &header.dh)?;
        let (rk2, cks) = kdf_rk(&rk1, &out2);
        if let Some(old) = self.dhr.replace(header.dh) {
            self.old_dhr.push_back(old);
            while self.old_dhr.len() > MAX_OLD_CHAINS {
                self.old_dhr.pop_front();
            }
        }
        self.pn = self.ns;
        self.ns = 0;
        self.nr = header.n.saturating_add(1);
        self.ckr = Some(next);
        self.dhs = dhs;
        self.dhs_public = dhs_public;
        self.rk = rk2;
        self.cks = Some(cks);
        self.commit_skipped(new_skipped);
        self.received = true;
        Ok(plaintext)
    }

    /// The stored skipped key for `header`, if any (tests of forward secrecy).
    #[cfg(test)]
    pub(crate) fn skipped_key_for_test(&self, header: &Header) -> Option<[u8; 32]> {
        self.skipped
            .iter()
            .find(|s| s.dh == header.dh && s.n == header.n)
            .map(|s| s.mk)
    }

    /// The receiving chain key (tests of forward secrecy).
    #[cfg(test)]
    pub(crate) fn receiving_chain_for_test(&self) -> Option<[u8; 32]> {
        self.ckr.as_deref().copied()
    }

    /// Stores newly skipped keys, dropping the oldest beyond [`MAX_SKIPPED_KEYS`].
    fn commit_skipped(&mut self, new: Vec<Skipped>) {
        self.skipped.extend(new);
        while self.skipped.len() > MAX_SKIPPED_KEYS {
            self.skipped.pop_front();
        }
    }

    /// The state as bytes to save (a version byte, then postcard). Holds every secret of the
    /// session: store it as carefully as the identity key.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let saved = Saved {
            dhs: self.dhs.to_bytes(),
            dhr: self.dhr,
            old_dhr: self.old_dhr.iter().copied().collect(),
            rk: *self.rk,
            cks: self.cks.as_deref().copied(),
            ckr: self.ckr.as_deref().copied(),
            ns: self.ns,
            nr: self.nr,
            pn: self.pn,
            skipped: self
                .skipped
                .iter()
                .map(|s| SavedSkipped {
                    dh: s.dh,
                    n: s.n,
                    mk: s.mk,
                })
                .collect(),
            ad: self.ad.clone(),
            received: self.received,
        };
        // Reserved up front so that the buffer never moves (no stray copies of secrets).
        let estimate = 256 + self.ad.len() + 33 * self.old_dhr.len() + 80 * self.skipped.len();
        let mut out = Zeroizing::new(Vec::with_capacity(estimate));
        out.push(FORMAT_VERSION);
        match postcard::to_extend(&saved, std::mem::take(&mut *out)) {
            Ok(bytes) => *out = bytes,
            // Serializing plain data into a vector cannot fail.
            Err(_) => out.clear(),
        }
        out
    }

    /// Reads [`Ratchet::to_bytes`]' format. Never panics.
    ///
    /// # Errors
    /// [`RatchetError::Format`] for damaged input, an unknown version, trailing bytes or more
    /// than [`MAX_SKIPPED_KEYS`] skipped keys.
    pub fn from_bytes(bytes: &[u8]) -> Result<Ratchet, RatchetError> {
        let Some((&FORMAT_VERSION, rest)) = bytes.split_first() else {
            return Err(RatchetError::Format);
        };
        let (saved, tail): (Saved, _) =
            postcard::take_from_bytes(rest).map_err(|_| RatchetError::Format)?;
        if !tail.is_empty()
            || saved.skipped.len() > MAX_SKIPPED_KEYS
            || saved.old_dhr.len() > MAX_OLD_CHAINS
        {
            return Err(RatchetError::Format);
        }
        let dhs = StaticSecret::from(saved.dhs);
        let dhs_public = PublicKey::from(&dhs).to_bytes();
        Ok(Ratchet {
            dhs,
            dhs_public,
            dhr: saved.dhr,
            old_dhr: saved.old_dhr.iter().copied().collect(),
            rk: Zeroizing::new(saved.rk),
            cks: saved.cks.map(Zeroizing::new),
            ckr: saved.ckr.map(Zeroizing::new),
            ns: saved.ns,
            nr: saved.nr,
            pn: saved.pn,
            skipped: saved
                .skipped
                .iter()
                .map(|s| Skipped {
                    dh: s.dh,
                    n: s.n,
                    mk: s.mk,
                })
                .collect(),
            ad: saved.ad.clone(),
            received: saved.received,
        })
    }
}

/// The saved form of a [`Ratchet`] (format version 1).
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct Saved {
    dhs: [u8; 32],
    dhr: Option<[u8; 32]>,
    old_dhr: Vec<[u8; 32]>,
    rk: [u8; 32],
    cks: Option<[u8; 32]>,
    ckr: Option<[u8; 32]>,
    ns: u32,
    nr: u32,
    pn: u32,
    skipped: Vec<SavedSkipped>,
    ad: Vec<u8>,
    received: bool,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct SavedSkipped {
    dh: [u8; 32],
    n: u32,
    mk: [u8; 32],
}
