//! What the parts of a session share (the driver in `mod.rs`, `login`, `dispatch`, `answers`):
//! the [`Context`], why a session ends ([`Exit`]), how long the store may take, and the user
//! list's frames. Kept apart from `mod.rs` so that the parts never import the driver.

use std::time::Duration;

use mm_common::protocol::{ServerMsg, USERS_PER_FRAME};
use tokio::time::Instant;

use super::refusal::Refusal;
use crate::config::Limits;
use crate::hub::Hub;
use crate::limit::Registrations;
use crate::transport::Transport;

/// Longest wait for the store's answer (a login, a line made durable). It answers after a
/// commit, normally within milliseconds, and retries while the database is locked; this only
/// bounds a stuck disk.
pub(crate) const STORE_TIMEOUT: Duration = Duration::from_secs(30);

/// What every session needs.
pub(crate) struct Context {
    pub hub: Hub,
    pub limits: Limits,
    pub server_name: String,
    /// New registrations per certificate and per address.
    pub registrations: Registrations,
    /// This server's metrics.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// This node, when it is one of several (CLUSTER.md): logins claim their nick through it.
    pub cluster: Option<std::sync::Arc<crate::cluster::Node>>,
}

/// Why a logged-in session ended.
#[derive(Debug)]
pub(crate) enum Exit {
    /// The client sent `Quit`.
    Quit,
    /// The client closed the connection or it failed.
    Disconnected,
    /// The server is shutting down; `Shutdown` is queued, and the client may still be answered
    /// until this deadline.
    Shutdown(Instant),
    /// The client fell too far behind (its queue overflowed).
    TooSlow,
    /// A write made no progress within the write timeout.
    WriteStalled,
    /// The same account logged in on another connection.
    Replaced,
    /// The client broke the protocol or went silent, or the store stopped answering; tell it
    /// why.
    Fatal(Refusal),
}

/// Queues the user list in frames of at most [`USERS_PER_FRAME`] nicks (one empty frame for
/// nobody); the last has `last: true`.
pub(crate) fn queue_users<T: Transport>(conn: &mut T, mut nicks: Vec<String>) {
    if nicks.is_empty() {
        conn.queue_msg(&ServerMsg::Users {
            nicks: Vec::new(),
            last: true,
        });
    }
    // Moved, not copied, into the frames.
    while !nicks.is_empty() {
        let rest = nicks.split_off(nicks.len().min(USERS_PER_FRAME));
        let last = rest.is_empty();
        conn.queue_msg(&ServerMsg::Users {
            nicks: std::mem::replace(&mut nicks, rest),
            last,
        });
    }
}
