//! End-to-end encrypted private conversations, as a state machine with no I/O and no clock:
//! callers pass in what arrived and the current time, and get back [`Action`]s (payloads to
//! relay, keys to publish or fetch, events to show, state to save). That keeps every rule
//! testable in memory.
//!
//! # Design (protocol 6)
//!
//! One design for every private session, online or offline, after Signal's published
//! specifications:
//!
//! * **Keys**: each client has a long-term X25519 identity key (the same as protocol 5's, so
//!   pins and safety numbers stay valid). It publishes in the server's key directory a signed
//!   prekey (signed with **XEdDSA** by the identity key, rotated weekly) and one-time prekeys
//!   (handed out once by the server).
//! * **Session start**: **X3DH** from the peer's prekey bundle, with a one-time prekey when
//!   the server has one left (else the signed prekey only: the "last resort"). The bundle's
//!   signature is checked and its identity key compared with the pin before anything is
//!   encrypted; a key from the directory for someone never met is pinned as "not verified
//!   (key from the server's directory)". The associated data binds both identity keys and
//!   both nicks.
//! * **Messages**: the **Double Ratchet** (HKDF/HMAC over SHA-256, ChaCha20-Poly1305),
//!   with skipped-message keys bounded ([`ratchet::MAX_SKIP`], [`ratchet::MAX_SKIPPED_KEYS`]).
//!   Until the peer answers, every message carries the X3DH start, so that the peer can open
//!   the session from whichever arrives. Plaintexts are padded to fixed buckets.
//! * **Never a silent downgrade**: private texts are end-to-end by default; plain only after
//!   `/insecure NICK`. A peer without keys, a bad bundle, a key change: the texts are refused
//!   or dropped visibly, never sent plain. SECURITY.md has the table of every transition.
//! * **State**: every ratchet step is saved ([`Action::Persist`]) before its message is sent
//!   or shown; decrypted messages are kept until the server's copy is acknowledged, so that a
//!   crash shows them again instead of losing them.
//!
//! # Layout
//!
//! One file per concept, in the style of vodozemac's `olm/session/`:
//! * `kdf`: HKDF and HMAC derivations; `xeddsa`: signatures with X25519 keys; `x3dh`: the
//!   session start; `ratchet`: the Double Ratchet;
//! * `envelope`: the wire [`Envelope`], padding and the size bounds;
//! * `keys`: our own prekeys and their secrets;
//! * `peers`: the peer table [`Sessions`] (with `peers/send`, `peers/receive`,
//!   `peers/commands`, `peers/directory` for the key directory, `peers/saved` for the saved
//!   state);
//! * `trust`: pin decisions ([`Trust`]); `error`: [`Failure`], [`Refused`]; `event`:
//!   [`Action`], [`E2eEvent`], [`Outgoing`], [`Status`]; `config`: [`E2eConfig`] and the
//!   bounds.

mod config;
mod envelope;
mod error;
mod event;
pub mod kdf;
mod keys;
mod peers;
pub mod ratchet;
mod trust;
pub mod x3dh;
pub mod xeddsa;

pub use config::{
    E2eConfig, MAX_NOTICES_PENDING, MAX_NOTICE_COUNT, MAX_PEERS, MAX_UNSOLICITED, NOTICE_INTERVAL,
};
pub use envelope::{Envelope, Sealed, MAX_CIPHERTEXT, PAD_BUCKETS};
pub use error::{Failure, Refused};
pub use event::{Action, E2eEvent, Outgoing, Status};
pub use peers::{BoxedRng, Sessions, StateError};
pub use trust::Trust;

#[cfg(test)]
mod tests;
