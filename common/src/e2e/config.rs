//! Tunables ([`E2eConfig`]) and the fixed bounds and waits of the peer table.

use std::time::Duration;

/// Tunables.
#[derive(Debug, Clone)]
pub struct E2eConfig {
    /// A sender rekeys its direction after this many messages.
    pub rekey_every: u64,
    /// The initiator runs a new handshake after this many messages (both directions).
    pub rehandshake_messages: u64,
    /// ... or after the session is this old.
    pub rehandshake_after: Duration,
    /// A handshake not finished within this fails.
    pub handshake_timeout: Duration,
    /// Texts that may wait for a handshake to finish.
    pub max_queued: usize,
}

impl Default for E2eConfig {
    fn default() -> Self {
        E2eConfig {
            rekey_every: 100,
            rehandshake_messages: 1000,
            rehandshake_after: Duration::from_secs(60 * 60),
            handshake_timeout: Duration::from_secs(30),
            max_queued: 64,
        }
    }
}

/// Most peers we keep state for. A `Hello` from a nick we have no state for is refused
/// beyond it, so that a flood of handshakes from many (possibly invented) nicks cannot grow
/// memory or CPU without bound.
pub const MAX_PEERS: usize = 4096;

/// Most handshakes started by peers that may be in progress at once.
pub const MAX_INCOMING_HANDSHAKES: usize = 32;

/// Most handshakes started automatically ([`Sessions::presence`], [`Sessions::tick`]) that run at
/// once: after a reconnect with many secure peers online, the others start as these finish,
/// instead of all queueing behind the client's rate pacing and timing out.
///
/// [`Sessions::presence`]: crate::e2e::Sessions::presence
/// [`Sessions::tick`]: crate::e2e::Sessions::tick
pub const MAX_AUTOMATIC_STARTS: usize = 4;

/// A responder waits this many times `handshake_timeout` for message 3.
pub(super) const RESPONDER_PATIENCE: u32 = 4;

/// Shortest wait before a session that failed to start restarts by itself; it doubles with
/// every attempt, up to [`MAX_RETRY_WAIT`].
pub(super) const RETRY_WAIT: Duration = Duration::from_secs(5);

/// Longest wait between automatic restarts.
pub(super) const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);

/// The wait before the automatic restart that follows `attempts` handshakes started since the
/// last session came up: none before the first, then [`RETRY_WAIT`] × 2^(attempts−1), at most
/// [`MAX_RETRY_WAIT`].
pub(super) fn retry_wait(attempts: u32) -> Option<Duration> {
    let n = attempts.checked_sub(1)?;
    Some(
        RETRY_WAIT
            .saturating_mul(1u32 << n.min(8))
            .min(MAX_RETRY_WAIT),
    )
}
