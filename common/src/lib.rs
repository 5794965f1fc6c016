//! Multi-Messenger's wire protocol, shared by the server and the clients.
//!
//! Nothing in this crate does I/O or reads the clock: it turns bytes into messages and back, and
//! says whether a message is acceptable. That keeps it unit-testable in memory and lets the server
//! and every client agree on one definition of the protocol (documented in `PROTOCOL.md`). The
//! one exception is opt-in: the `io` feature adds [`frame`]'s `FrameReader`, the loop that reads
//! frames from a tokio `AsyncRead`, shared by the server, the client, the tests and the bench
//! (its tests run when the feature is on, as in any workspace build).
//!
//! The data path on the wire is: bytes → [`frame`] (length prefix, size limit) →
//! [`protocol`] (postcard-encoded [`protocol::ClientMsg`] / [`protocol::ServerMsg`]).

pub mod confusable;
pub mod e2e;
pub mod frame;
pub mod identity;
pub mod key_login;
pub mod pins;
pub mod prekeys;
pub mod protocol;
pub mod rate;
pub mod safety;
pub mod text;
