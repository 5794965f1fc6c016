//! Tunables ([`E2eConfig`]) and the fixed bounds of the peer table.

use std::time::Duration;

/// Tunables.
#[derive(Debug, Clone)]
pub struct E2eConfig {
    /// Private messages are end-to-end encrypted unless the user says `/insecure NICK` (on by
    /// default). Off: a conversation is plain until `/secure NICK` (protocol 5's behaviour).
    pub end_to_end_by_default: bool,
    /// Texts that may wait for a peer's keys.
    pub max_queued: usize,
    /// A request for a peer's keys not answered within this fails the texts waiting for it.
    pub fetch_timeout: Duration,
    /// A new signed prekey after this long (Signal suggests "once a week, or once a month").
    pub signed_prekey_rotation: Duration,
    /// How many one-time prekeys to publish at a time.
    pub one_time_batch: usize,
    /// Most peers kept in the table (at most [`MAX_PEERS`], which is the default; smaller in
    /// tests, so that filling the table is quick).
    pub max_peers: usize,
    /// Most entries kept for peers who started a session the user never took part in
    /// ("unsolicited": we sent them nothing, the user did nothing with them); beyond it the
    /// least recently used of them that holds nothing to show makes room. Default
    /// [`MAX_UNSOLICITED`]: the rest of the table stays for the user's own conversations.
    pub max_unsolicited: usize,
}

impl Default for E2eConfig {
    fn default() -> Self {
        E2eConfig {
            end_to_end_by_default: true,
            max_queued: 64,
            fetch_timeout: Duration::from_secs(30),
            signed_prekey_rotation: Duration::from_secs(7 * 24 * 60 * 60),
            one_time_batch: crate::prekeys::MAX_ONE_TIME_PER_UPLOAD,
            max_peers: MAX_PEERS,
            max_unsolicited: MAX_UNSOLICITED,
        }
    }
}

/// Most peers we keep state for: a flood of session starts from many (possibly invented)
/// nicks is refused beyond it, so memory stays bounded.
pub const MAX_PEERS: usize = 4096;

/// Most pinned keys that sessions the peers started can make: beyond it, the least recently
/// pinned one (in this run; pins loaded count as older, ties by nick) that is not verified and
/// whose nick has no peer entry is dropped, or, if there is none, the start is refused as
/// unreadable (before its cryptography). A dropped pin's next key is taken as new, not as
/// changed (SECURITY.md). The user's own conversations drop one too, but are never refused.
pub const MAX_PINS: usize = 8192;

/// Most entries for peers who started a session the user never took part in (a quarter of
/// [`MAX_PEERS`]): a flood of valid starts from invented nicks can never take the table from
/// the user's own conversations.
pub const MAX_UNSOLICITED: usize = MAX_PEERS / 4;

/// Most sessions kept per peer: the current one and older ones still able to decrypt late
/// messages (both sides may start a session at once; each keeps the other's).
pub const MAX_SESSIONS_PER_PEER: usize = 3;

/// Most decrypted messages kept per peer until the server's copy is acknowledged (so a crash
/// between saving and showing shows them again, never loses them).
pub const MAX_UNACKNOWLEDGED: usize = 1024;

/// Most messages held per peer: sent under a changed key the user has not accepted yet, kept
/// (not shown) until `/accept-key`; beyond it the oldest is dropped and counted.
pub const MAX_HELD_PER_PEER: usize = 50;

/// Most messages held in all (each at most [`crate::protocol::MAX_RELAY_LEN`] bytes); beyond
/// it the oldest (lowest relay id) of any peer is dropped and counted.
pub const MAX_HELD: usize = 500;

/// Most one-time prekey secrets kept (the server keeps the newest
/// [`crate::prekeys::MAX_ONE_TIME_STORED`]; we keep more, for bundles handed out before an
/// upload trimmed the server's list).
pub const MAX_ONE_TIME_SECRETS: usize = 400;

/// Signed prekeys kept: the current one and older ones, for sessions started from bundles
/// fetched before a rotation.
pub const MAX_SIGNED_PREKEYS: usize = 3;

/// Ephemeral keys of session starts remembered per signed prekey, so that a replayed start is
/// not taken for a new session (X3DH §4.2: a start without a one-time prekey can be replayed).
/// When one prekey's list is full, starts on it without a one-time prekey are refused and the
/// prekey is replaced at the next login. (Small in tests, so that filling it is quick.)
#[cfg(not(test))]
pub const MAX_SEEN_STARTS: usize = 8192;
/// See above.
#[cfg(test)]
pub const MAX_SEEN_STARTS: usize = 32;

/// At most one notice that we could not read a peer's messages
/// ([`E2eEvent::PeerCouldNotRead`](super::E2eEvent::PeerCouldNotRead)) per peer in this time:
/// a hostile server can forge unreadable relays from any nick.
pub const NOTICE_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// At most this many peers with a notice waiting for their keys, in all.
pub const MAX_NOTICES_PENDING: usize = 20;

/// The largest count a notice carries (more unreadable messages are counted as this many).
pub const MAX_NOTICE_COUNT: u32 = 999;

/// At most this many peers remembered as told recently (the oldest forgotten first).
pub const MAX_NOTICES_REMEMBERED: usize = 256;
