//! The one source of randomness of the end-to-end layer, injected by the caller
//! ([`Sessions::with_rng`](super::Sessions::with_rng)): session ids, and every random byte snow
//! asks its resolver for (the handshakes' ephemeral keys; with `Noise_XX_25519_ChaChaPoly_BLAKE2s`
//! nothing else, as ChaCha20-Poly1305 transport nonces are counters).
//!
//! snow takes randomness from a [`CryptoResolver`]'s `resolve_rng`, and keeps what it got inside
//! each `HandshakeState` (which must be `Send + Sync`): [`InjectedResolver`] hands out a handle on
//! the shared source and takes every other primitive from snow's [`DefaultResolver`].

use std::sync::{Arc, Mutex};

use rand_core::CryptoRngCore;
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use super::envelope::{SessionId, SESSION_ID_LEN};

/// A cryptographically secure random number generator, as [`Sessions::with_rng`] takes it.
///
/// [`Sessions::with_rng`]: super::Sessions::with_rng
pub type BoxedRng = Box<dyn CryptoRngCore + Send>;

/// The injected source, shared by the peer table and every handshake built from it. Draws are
/// serialized by the mutex, so a seeded source gives the same bytes for the same calls.
#[derive(Clone)]
pub(super) struct SharedRng(Arc<Mutex<BoxedRng>>);

impl SharedRng {
    pub(super) fn new(rng: BoxedRng) -> SharedRng {
        SharedRng(Arc::new(Mutex::new(rng)))
    }

    /// Fills `dest` from the source; `false` if the source failed (or a draw panicked before:
    /// a poisoned source is not trusted again).
    pub(super) fn fill(&self, dest: &mut [u8]) -> bool {
        match self.0.lock() {
            Ok(mut rng) => rng.try_fill_bytes(dest).is_ok(),
            Err(_) => false,
        }
    }

    /// A fresh random session id; `None` if the source failed.
    pub(super) fn session_id(&self) -> Option<SessionId> {
        let mut id = [0u8; SESSION_ID_LEN];
        self.fill(&mut id).then_some(id)
    }

    /// A snow resolver whose randomness is this source.
    pub(super) fn resolver(&self) -> Box<dyn CryptoResolver + Send> {
        Box::new(InjectedResolver { rng: self.clone() })
    }
}

impl Random for SharedRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        if self.fill(dest) {
            Ok(())
        } else {
            Err(snow::Error::Rng)
        }
    }
}

/// snow's [`DefaultResolver`] with the injected source as its random number generator.
pub(super) struct InjectedResolver {
    rng: SharedRng,
}

impl CryptoResolver for InjectedResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(self.rng.clone()))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}
