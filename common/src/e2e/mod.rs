//! End-to-end encrypted private sessions (`/secure`), as a state machine with no I/O and no
//! clock: callers pass in what arrived and the current time, and get back [`Action`]s (payloads
//! to relay, events to show, pins to save). That keeps every rule testable in memory.
//!
//! # Design
//!
//! * **Handshake**: `Noise_XX_25519_ChaChaPoly_BLAKE2s` (via `snow`) between the two clients'
//!   long-term X25519 identity keys, relayed by the server as opaque bytes. The prologue binds
//!   the E2E version, both nicks (case-folded, sorted) and a fresh random session id, so a
//!   handshake cannot be spliced into another session or between other users. Handshake
//!   payloads are always empty: no chat content before both sides are authenticated.
//! * **Trust**: the peer's static key is checked against its pin (trust on first use) before we
//!   send anything that depends on it: the initiator after message 2, before message 3; the
//!   responder after message 3. A changed key fails the session loudly and blocks the peer until
//!   the user explicitly accepts the new key. Small-order keys (ephemeral or static) are refused.
//! * **Transport**: snow's in-order `TransportState`, whose implicit counter nonces make any
//!   dropped, replayed, reordered or altered message fail to decrypt. Any failure ends the
//!   session; only text that came out of a successful decryption is ever reported as a secure
//!   message. Plaintexts are padded to fixed buckets so lengths leak only coarsely.
//! * **Key updates**: after every `rekey_every` messages a sender announces and applies a Noise
//!   rekey (forward secrecy within a session). After `rehandshake_messages` messages or
//!   `rehandshake_after`, the session's initiator runs a fresh handshake (new ephemeral keys),
//!   so a stolen session key stops working: post-compromise recovery. Messages keep flowing on
//!   the old session until the new one is ready.
//! * **Never a silent downgrade**: once the user asked for a secure chat with a peer (`/secure`)
//!   or a session with it came up, the conversation *wants* to be secure until the user says
//!   `/insecure` — across reconnects and client restarts (the caller saves
//!   [`Sessions::conversations_text`] and gives it back to [`Sessions::restore`]). Texts for
//!   such a peer are only ever sent encrypted: while a session is being set up they wait for
//!   it; when a session was *interrupted* (reconnect, restart, the peer left, a timeout) the
//!   next text starts a new one and waits for it, and the session also restarts by itself when
//!   the peer is seen online ([`Sessions::presence`]); when the peer is known to be offline, or
//!   a session *failed* in a way that may be an attack (a key change, a message that did not
//!   decrypt, a broken handshake), sending is refused with the reason until the user acts.
//!   SECURITY.md has the table of every transition.
//!
//! # Layout
//!
//! One file per concept, in the style of vodozemac's `olm/session/`:
//! * `envelope`: the wire [`Envelope`], padding and the size bounds;
//! * `session`: one peer's Noise XX handshake and established transport (seal, open, rekey);
//! * `peers`: the peer table [`Sessions`] (with `peers/receive` for incoming payloads and
//!   `peers/timers` for timeouts, renewals and automatic restarts: [`Sessions::tick`],
//!   [`Sessions::poll_timeout`]);
//! * `trust`: pin decisions ([`Trust`]); `conversations`: the saved-conversations format;
//! * `error`: [`AbortReason`], [`Failure`], [`Refused`]; `event`: [`Action`], [`E2eEvent`],
//!   [`Outgoing`], [`Status`]; `config`: [`E2eConfig`] and the bounds;
//! * `rng`: the injected source of randomness ([`Sessions::with_rng`]);
//! * `kdf`: HKDF-SHA-256 and HMAC-SHA-256, the root, chain and message-key derivations;
//! * `xeddsa`: XEdDSA signatures with X25519 identity keys (signed prekeys);
//! * `x3dh`: X3DH key agreement from a prekey bundle ([`x3dh::initiate`], [`x3dh::respond`]);
//! * `ratchet`: the Double Ratchet ([`ratchet::Ratchet`]): per-message keys, skipped keys,
//!   saved state.

mod config;
mod conversations;
mod envelope;
mod error;
mod event;
pub mod kdf;
mod peers;
pub mod ratchet;
mod rng;
mod session;
mod trust;
pub mod x3dh;
pub mod xeddsa;

pub use config::{E2eConfig, MAX_AUTOMATIC_STARTS, MAX_INCOMING_HANDSHAKES, MAX_PEERS};
pub use conversations::check_conversations;
pub use envelope::{Envelope, SessionId, MAX_CIPHERTEXT, PAD_BUCKETS, SESSION_ID_LEN};
pub use error::{AbortReason, Failure, Refused};
pub use event::{Action, E2eEvent, Outgoing, Status};
pub use peers::Sessions;
pub use rng::BoxedRng;
pub use session::{noise_builder, prologue, E2E_VERSION, NOISE_PARAMS};
pub use trust::Trust;

#[cfg(test)]
mod tests;
