//! Several nodes (`--bus nats://…`): see CLUSTER.md for the model.
//!
//! - `nats`: the link to NATS (URL, TLS, credentials) and [`nats::BusConfig`].
//! - `lease`: this node's lease and the nicks it holds, in PostgreSQL, with fencing.

pub mod lease;
pub mod nats;
