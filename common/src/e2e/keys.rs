//! Our own prekeys ([`OwnKeys`]): the signed prekeys (the current one and a few before it),
//! the one-time prekeys' secrets, what the server's directory has of them, the session starts
//! seen (against replays), and the copied-home check's token.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rand_core::CryptoRngCore;
use zeroize::{Zeroize, Zeroizing};

use super::config::{MAX_ONE_TIME_SECRETS, MAX_SEEN_STARTS, MAX_SIGNED_PREKEYS};
use super::{x3dh, xeddsa};
use crate::identity::{Identity, KEY_LEN};
use crate::prekeys::{
    signed_prekey_message, DeviceCheck, KeyUpload, OneTimePrekey, SignedPrekey, DEVICE_TOKEN_LEN,
    MAX_ONE_TIME_PER_UPLOAD,
};

/// One signed prekey with its secret.
pub(super) struct SignedSecret {
    pub(super) id: u32,
    pub(super) secret: Zeroizing<[u8; KEY_LEN]>,
    pub(super) public: [u8; KEY_LEN],
    pub(super) signature: Vec<u8>,
    /// When it was made, milliseconds since the Unix epoch.
    pub(super) created_ms: u64,
}

/// One one-time prekey's secret.
pub(super) struct OneTimeSecret {
    pub(super) secret: Zeroizing<[u8; KEY_LEN]>,
    pub(super) public: [u8; KEY_LEN],
    /// Whether the server's directory has it (acknowledged by `KeysPublished`).
    pub(super) published: bool,
}

/// Our prekeys.
#[derive(Default)]
pub(super) struct OwnKeys {
    /// Newest first; at most [`MAX_SIGNED_PREKEYS`].
    pub(super) signed: Vec<SignedSecret>,
    /// By id (ids grow: the smallest are the oldest).
    pub(super) one_time: BTreeMap<u32, OneTimeSecret>,
    /// The next prekey id to use (signed and one-time share the counter).
    pub(super) next_id: u32,
    /// Ephemeral keys of session starts taken, by the signed prekey they used: kept as long as
    /// that prekey is (a start on a prekey no longer kept cannot be taken again anyway), at
    /// most [`MAX_SEEN_STARTS`] each.
    pub(super) seen: BTreeMap<u32, HashSet<[u8; KEY_LEN]>>,
    /// A signed prekey's list of starts filled up: make a new signed prekey at the next login
    /// (until then, starts on it without a one-time prekey are refused).
    pub(super) rotate_now: bool,
    /// The copied-home token the server confirmed last (zeros: none yet).
    pub(super) device: [u8; DEVICE_TOKEN_LEN],
    /// The token sent in an upload not answered yet: sent again until it is, so that a crash
    /// mid-login is never taken for another copy of the home.
    pub(super) device_pending: Option<[u8; DEVICE_TOKEN_LEN]>,
    /// One-time keys sent in uploads not answered yet.
    pub(super) in_flight: Vec<u32>,
}

/// A fresh X25519 secret and its public key; `None` if the random source failed.
fn fresh_key(
    rng: &mut (impl CryptoRngCore + ?Sized),
) -> Option<(Zeroizing<[u8; KEY_LEN]>, [u8; KEY_LEN])> {
    let mut secret = Zeroizing::new([0u8; KEY_LEN]);
    rng.try_fill_bytes(&mut secret[..]).ok()?;
    let public = x3dh::public_key(&secret);
    Some((secret, public))
}

impl OwnKeys {
    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Makes a new signed prekey if there is none or the current one is older than
    /// `rotation`; returns whether it did. `None` if the random source failed.
    pub(super) fn rotate_if_due(
        &mut self,
        identity: &Identity,
        now_ms: u64,
        rotation: Duration,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Option<bool> {
        let due = self.rotate_now
            || match self.signed.first() {
                None => true,
                Some(s) => now_ms.saturating_sub(s.created_ms) >= rotation.as_millis() as u64,
            };
        if !due {
            return Some(false);
        }
        let (secret, public) = fresh_key(rng)?;
        let id = self.take_id();
        let mut random = Zeroizing::new([0u8; 64]);
        rng.try_fill_bytes(&mut random[..]).ok()?;
        let signature = xeddsa::sign(
            identity.secret(),
            &signed_prekey_message(id, &public),
            &random,
        )
        .to_vec();
        self.signed.insert(
            0,
            SignedSecret {
                id,
                secret,
                public,
                signature,
                created_ms: now_ms,
            },
        );
        self.signed.truncate(MAX_SIGNED_PREKEYS);
        let kept: Vec<u32> = self.signed.iter().map(|s| s.id).collect();
        self.seen.retain(|id, _| kept.contains(id));
        self.rotate_now = false;
        Some(true)
    }

    /// Makes `count` new one-time prekeys (dropping the oldest secrets beyond
    /// [`MAX_ONE_TIME_SECRETS`]). `None` if the random source failed.
    pub(super) fn add_one_time(
        &mut self,
        count: usize,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Option<()> {
        for _ in 0..count.min(MAX_ONE_TIME_PER_UPLOAD) {
            let (secret, public) = fresh_key(rng)?;
            let id = self.take_id();
            self.one_time.insert(
                id,
                OneTimeSecret {
                    secret,
                    public,
                    published: false,
                },
            );
        }
        while self.one_time.len() > MAX_ONE_TIME_SECRETS {
            self.one_time.pop_first();
        }
        Some(())
    }

    /// The upload for the directory: the identity, the current signed prekey, the one-time
    /// prekeys not published yet (at most [`MAX_ONE_TIME_PER_UPLOAD`]), and the copied-home
    /// check (a fresh token, or the pending one again). `None` without a signed prekey or if
    /// the random source failed.
    pub(super) fn upload(
        &mut self,
        identity: &Identity,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Option<KeyUpload> {
        let signed = self.signed.first()?;
        let signed_prekey = SignedPrekey {
            id: signed.id,
            key: signed.public,
            signature: signed.signature.clone(),
        };
        let one_time: Vec<OneTimePrekey> = self
            .one_time
            .iter()
            .rev()
            .filter(|(_, k)| !k.published)
            .take(MAX_ONE_TIME_PER_UPLOAD)
            .map(|(id, k)| OneTimePrekey {
                id: *id,
                key: k.public,
            })
            .collect();
        let next = match self.device_pending {
            Some(next) => next,
            None => {
                let mut next = [0u8; DEVICE_TOKEN_LEN];
                rng.try_fill_bytes(&mut next).ok()?;
                self.device_pending = Some(next);
                next
            }
        };
        self.in_flight = one_time.iter().map(|k| k.id).collect();
        Some(KeyUpload {
            identity: *identity.public(),
            signed_prekey,
            one_time,
            device: DeviceCheck {
                previous: self.device,
                next,
            },
            replace_one_time: false,
        })
    }

    /// The server stored the last upload.
    pub(super) fn published(&mut self) {
        for id in std::mem::take(&mut self.in_flight) {
            if let Some(k) = self.one_time.get_mut(&id) {
                k.published = true;
            }
        }
        if let Some(next) = self.device_pending.take() {
            self.device = next;
        }
    }

    /// The signed prekey secret with this id.
    pub(super) fn signed_secret(&self, id: u32) -> Option<&SignedSecret> {
        self.signed.iter().find(|s| s.id == id)
    }

    /// Whether a session start with this ephemeral key was taken before.
    pub(super) fn seen_start(&self, ephemeral: &[u8; KEY_LEN]) -> bool {
        self.seen.values().any(|set| set.contains(ephemeral))
    }

    /// Whether a start on `signed_prekey` could still be remembered (its list is not full).
    pub(super) fn can_remember(&self, signed_prekey: u32) -> bool {
        self.seen
            .get(&signed_prekey)
            .is_none_or(|set| set.len() < MAX_SEEN_STARTS)
    }

    /// Remembers a session start taken on `signed_prekey`. A full list is not grown: the
    /// prekey is rotated at the next login ([`OwnKeys::rotate_now`]).
    pub(super) fn remember_start(&mut self, signed_prekey: u32, ephemeral: [u8; KEY_LEN]) {
        let set = self.seen.entry(signed_prekey).or_default();
        if set.len() < MAX_SEEN_STARTS {
            set.insert(ephemeral);
        }
        if set.len() >= MAX_SEEN_STARTS {
            self.rotate_now = true;
        }
    }
}

impl Drop for OwnKeys {
    fn drop(&mut self) {
        // The secrets are `Zeroizing`; the rest is public, but the device token is not for
        // everyone to read in a core dump either.
        self.device.zeroize();
    }
}
