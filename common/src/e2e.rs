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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::identity::{is_contributory, key_fingerprint, Identity, KEY_LEN};
use crate::pins::{PinCheck, Pins};
use crate::protocol::{nick_key, validate_nick};

/// The Noise protocol used for every session.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";

/// Version of the end-to-end layer, bound into every handshake's prologue.
pub const E2E_VERSION: u8 = 1;

/// Length of a session id.
pub const SESSION_ID_LEN: usize = 16;

/// A session id: random, chosen by the initiator.
pub type SessionId = [u8; SESSION_ID_LEN];

/// Plaintext sizes that messages are padded up to.
pub const PAD_BUCKETS: [usize; 4] = [128, 512, 2048, 8192];

/// Authentication tag added by ChaCha20-Poly1305.
const TAG_LEN: usize = 16;

/// Largest ciphertext accepted; anything longer is refused before decryption.
pub const MAX_CIPHERTEXT: usize = PAD_BUCKETS[PAD_BUCKETS.len() - 1] + TAG_LEN;

/// Largest handshake message accepted (XX messages are at most 96 bytes with empty payloads).
const MAX_HANDSHAKE_MSG: usize = 1024;

/// Most peers we keep state for. A `Hello` from a nick we have no state for is refused
/// beyond it, so that a flood of handshakes from many (possibly invented) nicks cannot grow
/// memory or CPU without bound.
pub const MAX_PEERS: usize = 4096;

/// Most handshakes started by peers that may be in progress at once.
pub const MAX_INCOMING_HANDSHAKES: usize = 32;

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

/// What travels inside a relay payload between two clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope {
    /// Handshake message 1, initiator → responder.
    Hello {
        /// The new session.
        session: SessionId,
        /// Noise message.
        noise: Vec<u8>,
    },
    /// Handshake message 2, responder → initiator.
    Reply {
        /// The session.
        session: SessionId,
        /// Noise message.
        noise: Vec<u8>,
    },
    /// Handshake message 3, initiator → responder.
    Finish {
        /// The session.
        session: SessionId,
        /// Noise message.
        noise: Vec<u8>,
    },
    /// An encrypted, padded `Inner` message.
    Data {
        /// The session it is encrypted in.
        session: SessionId,
        /// Noise transport message.
        ciphertext: Vec<u8>,
    },
    /// "I dropped this session." Unauthenticated, so it can only end a session, never start
    /// or alter one (the relay can always drop messages anyway).
    Abort {
        /// The session.
        session: SessionId,
        /// Why.
        reason: AbortReason,
    },
}

/// Why a peer dropped a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AbortReason {
    /// The handshake failed.
    HandshakeFailed,
    /// Our pin for the sender's key does not match; we did not accept the session.
    KeyNotAccepted,
    /// A message did not decrypt.
    DecryptFailed,
    /// We have no session with that id (e.g. we restarted).
    UnknownSession,
    /// The user ended the session.
    Ended,
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AbortReason::HandshakeFailed => "their handshake failed",
            AbortReason::KeyNotAccepted => "they do not accept your key (their pin differs)",
            AbortReason::DecryptFailed => "a message did not decrypt on their side",
            AbortReason::UnknownSession => "they do not have this session (restarted?)",
            AbortReason::Ended => "they ended it",
        })
    }
}

/// The plaintext inside [`Envelope::Data`], before padding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Inner {
    /// A chat line.
    Text(String),
    /// The sender rekeys its direction after this message.
    Rekey,
    /// The sender ended the session.
    Close,
}

/// How far a peer's key is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// First contact: pinned just now.
    New,
    /// Matches the pin; not verified by the user.
    Pinned,
    /// Matches the pin, which the user verified.
    Verified,
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trust::New => "new key, now pinned; not verified",
            Trust::Pinned => "pinned key; not verified",
            Trust::Verified => "verified",
        })
    }
}

/// Why a session failed. Until the user acts, sending to the peer is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The peer presented a key other than the pinned one.
    KeyChanged {
        /// The pinned key.
        pinned: [u8; KEY_LEN],
        /// The key presented now.
        presented: [u8; KEY_LEN],
    },
    /// A message did not decrypt (tampered, replayed, reordered, dropped or truncated).
    Decrypt,
    /// The handshake failed.
    Handshake,
    /// The peer presented a small-order (unusable) key.
    BadKey,
    /// The peer went offline.
    PeerLeft,
    /// The server could not deliver to the peer: it is not online.
    Unreachable,
    /// The peer dropped the session.
    PeerAborted(AbortReason),
    /// The handshake did not finish in time.
    Timeout,
    /// No session since our connection to the server was re-established, or since this
    /// client started.
    NotConnected,
    /// The server refused to relay a message of the session (busy, rate limit): the peer
    /// would not be able to decrypt what follows, so the session ends.
    RelayRefused,
    /// The peer presented our own identity key: the two users share one home directory (or
    /// the peer has a copy of our key). Never pinned, never a session.
    OwnKey,
}

impl Failure {
    /// Whether this only interrupted the session, so that a new one may start by itself. Key
    /// changes, invalid keys, and messages of an established session that did not decrypt (or
    /// that the peer could not decrypt) block the conversation until the user acts: they are
    /// what tampering looks like. A handshake that did not complete is an interruption: it
    /// exposes nothing, and stale handshake messages (kept in a mailbox across a reconnect)
    /// cause it harmlessly.
    pub fn is_interruption(&self) -> bool {
        matches!(
            self,
            Failure::PeerLeft
                | Failure::Unreachable
                | Failure::Timeout
                | Failure::NotConnected
                | Failure::RelayRefused
                | Failure::Handshake
                | Failure::PeerAborted(
                    AbortReason::UnknownSession | AbortReason::Ended | AbortReason::HandshakeFailed
                )
        )
    }

    /// The word saved in the conversations file for a failure that blocks (interruptions are
    /// saved as plain `secure`: after a restart they are [`Failure::NotConnected`]).
    fn token(&self) -> Option<&'static str> {
        Some(match self {
            Failure::Decrypt => "decrypt",
            Failure::BadKey => "bad-key",
            Failure::PeerAborted(AbortReason::KeyNotAccepted) => "peer-key",
            Failure::PeerAborted(AbortReason::DecryptFailed) => "peer-decrypt",
            Failure::OwnKey => "own-key",
            _ => return None,
        })
    }

    fn from_token(token: &str) -> Option<Failure> {
        Some(match token {
            "decrypt" => Failure::Decrypt,
            "bad-key" => Failure::BadKey,
            "peer-key" => Failure::PeerAborted(AbortReason::KeyNotAccepted),
            "peer-decrypt" => Failure::PeerAborted(AbortReason::DecryptFailed),
            "own-key" => Failure::OwnKey,
            _ => return None,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::KeyChanged { pinned, presented } => write!(
                f,
                "the peer's key CHANGED (pinned {}, presented {})",
                key_fingerprint(pinned),
                key_fingerprint(presented)
            ),
            Failure::Decrypt => {
                f.write_str("a message failed to decrypt (tampered, replayed, reordered or lost)")
            }
            Failure::Handshake => f.write_str("the handshake failed"),
            Failure::BadKey => f.write_str("the peer sent an invalid key"),
            Failure::PeerLeft => f.write_str("the peer went offline"),
            Failure::Unreachable => f.write_str("the peer is not online"),
            Failure::PeerAborted(reason) => write!(f, "the peer dropped the session: {reason}"),
            Failure::Timeout => f.write_str("the handshake timed out"),
            Failure::NotConnected => f.write_str(
                "not set up again since the connection to the server was re-established",
            ),
            Failure::RelayRefused => {
                f.write_str("the server refused to pass on one of its messages")
            }
            Failure::OwnKey => f.write_str(
                "the peer presents your own key: you share one home directory (identity.key) with them; each user needs their own",
            ),
        }
    }
}

/// Something to show the user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum E2eEvent {
    /// A handshake started (by us, or by the peer).
    Starting {
        /// The peer.
        peer: String,
        /// Whether the peer started it.
        by_peer: bool,
    },
    /// The session is ready (or was renewed by a re-handshake).
    Ready {
        /// The peer.
        peer: String,
        /// Its identity key.
        key: [u8; KEY_LEN],
        /// How far it is trusted.
        trust: Trust,
        /// A re-handshake replaced an existing session.
        renewed: bool,
    },
    /// A message that decrypted and authenticated.
    Message {
        /// The peer.
        peer: String,
        /// The text.
        text: String,
    },
    /// The session ended normally.
    Ended {
        /// The peer.
        peer: String,
        /// Whether the peer ended it.
        by_peer: bool,
        /// The tags (given to [`Sessions::send_text`]) of texts that were waiting for the
        /// session and are now dropped, not sent; oldest first.
        unsent: Vec<u64>,
    },
    /// A session the peer offered did not come up, in a conversation the user never made
    /// secure: it stays plain (as it was).
    NotStarted {
        /// The peer.
        peer: String,
        /// Why.
        failure: Failure,
        /// The tags of texts that waited for the session and are dropped, not sent.
        unsent: Vec<u64>,
    },
    /// The session failed; sending to the peer is refused until `/secure` or `/insecure`.
    Failed {
        /// The peer.
        peer: String,
        /// Why.
        failure: Failure,
        /// The tags (given to [`Sessions::send_text`]) of texts that were waiting for the
        /// session and are now dropped, not sent; oldest first.
        unsent: Vec<u64>,
    },
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Relay `payload` to `to`.
    Send {
        /// The peer.
        to: String,
        /// The encoded [`Envelope`].
        payload: Vec<u8>,
        /// The tag of the text this payload carries (as given to [`Sessions::send_text`]),
        /// `None` for handshake, rekey, close and abort messages.
        line: Option<u64>,
    },
    /// Show this.
    Event(E2eEvent),
    /// The pins or the conversations changed: save both ([`Sessions::pins`],
    /// [`Sessions::conversations_text`]).
    Persist,
    /// Watch this peer's presence from now on (the server's `Monitor`), so that an interrupted
    /// session can restart when it comes online: pass what the server says to
    /// [`Sessions::presence`].
    Monitor(String),
}

/// What to do with a text for a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// The conversation is plain (never secured, or the user said `/insecure`): send it as a
    /// plain private message.
    Plain,
    /// Encrypted: carry out these actions.
    Secure(Vec<Action>),
    /// A handshake is running, or was started now to resume an interrupted session (carry out
    /// these actions): the text waits and goes encrypted when the session is ready.
    Queued(Vec<Action>),
}

/// Why a text or command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// The session failed in a way that may be an attack; the user must `/secure` again or
    /// `/insecure`.
    #[error("the secure session with {peer} failed ({failure}); nothing was sent. {}", next_step(peer, *online))]
    Blocked {
        /// The peer.
        peer: String,
        /// Why.
        failure: Failure,
        /// Whether the peer is online now, if known.
        online: Option<bool>,
    },
    /// The conversation is secure but the peer is offline, and a session needs both online.
    #[error("{0} is offline and secure messages need {0} online; nothing was sent. The secure session restarts by itself when {0} is back (/insecure {0} sends unencrypted instead)")]
    Offline(String),
    /// Too many texts wait for the handshake.
    #[error("too many messages waiting for the secure session with {0}")]
    QueueFull(String),
    /// `/secure` to oneself.
    #[error("you cannot start a secure session with yourself")]
    Yourself,
    /// Not a valid nick.
    #[error("{0:?} is not a valid nick")]
    InvalidNick(String),
    /// There is one already.
    #[error("a secure session with {0} is already up")]
    AlreadySecure(String),
    /// One is being set up.
    #[error("a secure session with {0} is already being set up")]
    AlreadyStarting(String),
    /// The peer's key changed and the user has not accepted the new key.
    #[error(
        "{0}'s key changed and nothing was sent; compare the safety number of the new key (/verify {0}) with {0}, then /accept-key {0} to start a new session (and /verified {0} if the numbers matched), or /insecure {0} to send unencrypted"
    )]
    KeyNotAccepted(String),
    /// `/accept-key` with no changed key to accept.
    #[error("{0}'s key has not changed; nothing to accept")]
    NothingToAccept(String),
    /// `/insecure` with no session.
    #[error("there is no secure session with {0}")]
    NoSession(String),
    /// No key known for the peer.
    #[error("no key known for {0} yet; run /secure {0} first")]
    NoKey(String),
    /// The crypto library failed (not expected with valid state).
    #[error("encryption failed")]
    Crypto,
    /// Secure conversations with [`MAX_PEERS`] peers exist already.
    #[error("too many secure conversations ({MAX_PEERS}); /insecure some first")]
    TooManyPeers,
}

/// What to tell the user to do about a blocked conversation.
fn next_step(peer: &str, online: Option<bool>) -> String {
    match online {
        Some(false) => format!("{peer} is offline now; when {peer} is back, /secure {peer} starts a new session (/insecure {peer} sends unencrypted)"),
        Some(true) => format!("{peer} is online: /secure {peer} starts a new session, or /insecure {peer} sends unencrypted"),
        None => format!("/secure {peer} starts a new session, or /insecure {peer} sends unencrypted"),
    }
}

/// Where a conversation stands, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Plain (never secured, or the user said `/insecure`): private messages go in plain
    /// text (over TLS).
    Plain,
    /// Being set up.
    Starting,
    /// Up.
    Secure {
        /// The peer's key.
        key: [u8; KEY_LEN],
        /// Its trust.
        trust: Trust,
    },
    /// Secure wanted, but the session was interrupted (`reason`): nothing goes plain; the next
    /// text starts a new session and waits for it (refused while the peer is offline), and the
    /// session restarts by itself when the peer comes online.
    Interrupted {
        /// Why there is no session now.
        reason: Failure,
        /// Whether the peer is online, if known.
        online: Option<bool>,
    },
    /// Failed in a way that may be an attack, or the peer's key changed: sending is refused
    /// until the user acts.
    Failed(Failure),
}

struct Handshake {
    session: SessionId,
    noise: Box<snow::HandshakeState>,
    initiator: bool,
    started: Instant,
    /// During a re-handshake: the current session, still carrying messages.
    previous: Option<Box<Established>>,
}

struct Established {
    session: SessionId,
    transport: Box<snow::TransportState>,
    initiator: bool,
    since: Instant,
    messages: u64,
    sent_since_rekey: u64,
    peer_key: [u8; KEY_LEN],
    trust: Trust,
    /// After a re-handshake: the old session, kept only to decrypt what the peer sent on it
    /// before it switched. Dropped at the peer's first message on the new session.
    draining: Option<(SessionId, Box<snow::TransportState>)>,
}

enum State {
    Idle,
    Handshaking(Box<Handshake>),
    Established(Box<Established>),
    Failed(Failure),
}

/// What the user wants of a conversation; saved across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    /// Never secured, or the user said `/insecure`.
    Plain,
    /// The user said `/secure`, or a session came up: only encrypted from now on.
    Secure,
}

/// One saved conversation ([`Sessions::conversations_text`]).
enum Saved {
    Secure,
    Blocked(Failure),
    KeyChanged([u8; KEY_LEN]),
}

/// Parses a conversations file.
///
/// # Errors
/// The 1-based number of the first damaged line.
fn parse_conversations(text: &str) -> Result<Vec<(String, Saved)>, usize> {
    // Written whole (atomically) with every line ended: a last line without its end was cut
    // off, and a cut-off nick would name someone else.
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(text.lines().count().max(1));
    }
    let mut saved = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (nick, entry) = match words.as_slice() {
            [] => continue,
            ["secure", nick] => (*nick, Saved::Secure),
            ["blocked", nick, token] => (
                *nick,
                Saved::Blocked(Failure::from_token(token).ok_or(i + 1)?),
            ),
            ["key-changed", nick, key] => (
                *nick,
                Saved::KeyChanged(crate::identity::parse_key(key).ok_or(i + 1)?),
            ),
            _ => return Err(i + 1),
        };
        validate_nick(nick).map_err(|_| i + 1)?;
        if saved.len() >= MAX_PEERS {
            return Err(i + 1);
        }
        saved.push((nick.to_owned(), entry));
    }
    Ok(saved)
}

/// Checks a conversations file ([`Sessions::conversations_text`]) without loading it.
///
/// # Errors
/// The 1-based number of the first damaged line.
pub fn check_conversations(text: &str) -> Result<(), usize> {
    parse_conversations(text).map(|_| ())
}

/// A responder waits this many times `handshake_timeout` for message 3.
const RESPONDER_PATIENCE: u32 = 4;

/// Most handshakes started automatically ([`Sessions::presence`], [`Sessions::tick`]) that run at
/// once: after a reconnect with many secure peers online, the others start as these finish,
/// instead of all queueing behind the client's rate pacing and timing out.
pub const MAX_AUTOMATIC_STARTS: usize = 4;

/// Shortest wait before a session that failed to start restarts by itself; it doubles with
/// every attempt, up to [`MAX_RETRY_WAIT`].
const RETRY_WAIT: Duration = Duration::from_secs(5);

/// Longest wait between automatic restarts.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);

struct Peer {
    nick: String,
    state: State,
    intent: Intent,
    /// Whether the peer is online, as far as we know on this connection.
    online: Option<bool>,
    /// Whether we asked the server to monitor the peer on this connection.
    monitored: bool,
    /// Handshakes we started since the last session came up, and when the last one started:
    /// automatic restarts wait [`RETRY_WAIT`] × 2^(attempts−1) after it.
    attempts: u32,
    last_start: Option<Instant>,
    /// The handshake running was started automatically after an earlier automatic attempt
    /// failed: its start and interruption are not announced again.
    quiet: bool,
    /// The handshake running (if any) was started automatically.
    automatic: bool,
    /// The conversation was blocked for this reason when the peer started the handshake now
    /// running: if it does not complete, the conversation is blocked again (not merely
    /// interrupted).
    blocked_by: Option<Failure>,
    /// Texts waiting for the handshake, with their tags.
    queued: VecDeque<(String, u64)>,
}

/// All of one user's end-to-end sessions.
pub struct Sessions {
    me: String,
    identity: Identity,
    pins: Pins,
    config: E2eConfig,
    peers: HashMap<String, Peer>,
    /// Test instrumentation: every session's raw transport keys, as an attacker who stole them
    /// would have them.
    #[cfg(test)]
    stolen: Vec<(SessionId, [u8; 32], [u8; 32])>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys; only who we have sessions with.
        f.debug_struct("Sessions")
            .field("me", &self.me)
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The prologue both sides feed to Noise: binds version, both nicks and the session.
pub fn prologue(nick_a: &str, nick_b: &str, session: &SessionId) -> Vec<u8> {
    let mut nicks = [nick_key(nick_a), nick_key(nick_b)];
    nicks.sort();
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"multi-messenger e2e");
    out.push(E2E_VERSION);
    for nick in &nicks {
        // Nicks are at most 32 bytes, so one length byte is unambiguous.
        out.push(u8::try_from(nick.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(nick.as_bytes());
    }
    out.extend_from_slice(session);
    out
}

/// A snow builder with our parameters, key and prologue. Shared by production code and the
/// test-vector test so that the vectors exercise the configuration we ship.
pub fn noise_builder<'a>(
    local_private_key: &'a [u8],
    prologue: &'a [u8],
) -> Result<snow::Builder<'a>, snow::Error> {
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse()?;
    snow::Builder::new(params)
        .local_private_key(local_private_key)?
        .prologue(prologue)
}

fn encode(envelope: &Envelope) -> Vec<u8> {
    // Encoding a Vec-backed envelope of bounded size cannot fail.
    postcard::to_allocvec(envelope).unwrap_or_default()
}

/// Pads an encoded [`Inner`] with zeros up to the next bucket.
fn pad(inner: &Inner) -> Result<Vec<u8>, Refused> {
    let mut plain = postcard::to_allocvec(inner).map_err(|_| Refused::Crypto)?;
    let bucket = PAD_BUCKETS
        .iter()
        .copied()
        .find(|b| *b >= plain.len())
        .ok_or(Refused::Crypto)?;
    plain.resize(bucket, 0);
    Ok(plain)
}

/// The [`Inner`] in a padded plaintext; the padding must be all zeros.
fn unpad(plain: &[u8]) -> Option<Inner> {
    let (inner, rest) = postcard::take_from_bytes::<Inner>(plain).ok()?;
    rest.iter().all(|b| *b == 0).then_some(inner)
}

fn random_session() -> SessionId {
    let mut id = [0u8; SESSION_ID_LEN];
    OsRng.fill_bytes(&mut id);
    id
}

fn key_of(bytes: Option<&[u8]>) -> Option<[u8; KEY_LEN]> {
    bytes.and_then(|b| <[u8; KEY_LEN]>::try_from(b).ok())
}

/// The ephemeral key at the start of handshake messages 1 and 2, for the small-order check.
fn leading_key(noise: &[u8]) -> Option<[u8; KEY_LEN]> {
    key_of(noise.get(..KEY_LEN))
}

impl Sessions {
    /// Sessions for `me` with this identity and these pins.
    pub fn new(me: &str, identity: Identity, pins: Pins, config: E2eConfig) -> Sessions {
        Sessions {
            me: me.to_owned(),
            identity,
            pins,
            config,
            peers: HashMap::new(),
            #[cfg(test)]
            stolen: Vec::new(),
        }
    }

    /// Our identity's public key.
    pub fn public_key(&self) -> &[u8; KEY_LEN] {
        self.identity.public()
    }

    /// The pins, for saving.
    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    fn peer(&mut self, nick: &str) -> &mut Peer {
        self.peers.entry(nick_key(nick)).or_insert_with(|| Peer {
            nick: nick.to_owned(),
            state: State::Idle,
            intent: Intent::Plain,
            online: None,
            monitored: false,
            attempts: 0,
            last_start: None,
            quiet: false,
            automatic: false,
            blocked_by: None,
            queued: VecDeque::new(),
        })
    }

    /// Marks the conversation with `nick` as wanting to be secure. Returns the actions that
    /// come with a change: save it, and watch the peer's presence.
    fn want_secure(&mut self, nick: &str) -> Vec<Action> {
        let entry = self.peer(nick);
        let mut actions = Vec::new();
        if entry.intent != Intent::Secure {
            entry.intent = Intent::Secure;
            actions.push(Action::Persist);
        }
        let monitored = self.peers.values().filter(|p| p.monitored).count();
        let entry = self.peer(nick);
        if !entry.monitored && monitored < crate::protocol::MAX_MONITORED {
            entry.monitored = true;
            actions.push(Action::Monitor(entry.nick.clone()));
        }
        actions
    }

    /// The conversations to remember across restarts, one per line: `secure NICK` (secure
    /// wanted), `blocked NICK REASON` (failed in a way that needs the user), `key-changed NICK
    /// HEX` (the peer presented the key HEX, not its pin). Plain conversations are not listed.
    pub fn conversations_text(&self) -> String {
        let mut lines: Vec<String> = self
            .peers
            .values()
            .filter(|p| p.intent == Intent::Secure)
            .map(|p| match (&p.state, &p.blocked_by) {
                (State::Handshaking(_), Some(f)) => match f.token() {
                    Some(token) => format!("blocked {} {token}", p.nick),
                    None => format!("secure {}", p.nick),
                },
                (state, _) => match state {
                    State::Failed(Failure::KeyChanged { presented, .. }) => {
                        format!("key-changed {} {}", p.nick, crate::identity::hex(presented))
                    }
                    State::Failed(f) => match f.token() {
                        Some(token) => format!("blocked {} {token}", p.nick),
                        None => format!("secure {}", p.nick),
                    },
                    _ => format!("secure {}", p.nick),
                },
            })
            .collect();
        lines.sort();
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        text
    }

    /// Restores what [`Sessions::conversations_text`] saved (call before the first
    /// connection): secure conversations start [`Status::Interrupted`], blocked ones stay
    /// blocked, and key changes stay unaccepted.
    ///
    /// # Errors
    /// The 1-based number of the first damaged line; nothing is restored then. Refusing is
    /// safer than forgetting: a forgotten conversation would go plain.
    pub fn restore(&mut self, text: &str) -> Result<(), usize> {
        let saved = parse_conversations(text)?;
        if self.peers.len() + saved.len() > MAX_PEERS {
            return Err(MAX_PEERS + 1);
        }
        for (nick, saved) in saved {
            if nick_key(&nick) == nick_key(&self.me) {
                continue;
            }
            let state = match saved {
                Saved::Secure => State::Failed(Failure::NotConnected),
                Saved::Blocked(f) => State::Failed(f),
                Saved::KeyChanged(presented) => match self.pins.get(&nick) {
                    Some(pin) if pin.key != presented => State::Failed(Failure::KeyChanged {
                        pinned: pin.key,
                        presented,
                    }),
                    // Accepted meanwhile (or the pin is gone): secure, not blocked.
                    _ => State::Failed(Failure::NotConnected),
                },
            };
            let entry = self.peer(&nick);
            entry.intent = Intent::Secure;
            entry.state = state;
        }
        Ok(())
    }

    /// A new connection to the server: sessions of the old one cannot continue (the peer saw
    /// us leave). Secure conversations become [`Status::Interrupted`] (blocked ones stay
    /// blocked); texts that waited were the old connection's, which reported them. Returns the
    /// peers to monitor on the new connection (the caller sends them; answers go to
    /// [`Sessions::presence`]), at most [`crate::protocol::MAX_MONITORED`].
    pub fn connection_reset(&mut self) -> Vec<String> {
        let mut monitor = Vec::new();
        for entry in self.peers.values_mut() {
            entry.online = None;
            entry.monitored = false;
            entry.queued.clear();
            entry.attempts = 0;
            entry.last_start = None;
            entry.quiet = false;
            // A blocked conversation whose peer was starting a session stays blocked.
            if let (State::Handshaking(_), Some(blocked)) = (&entry.state, entry.blocked_by.take())
            {
                entry.state = State::Failed(blocked);
            }
            let interrupted = match &entry.state {
                State::Handshaking(_) | State::Established(_) => true,
                State::Failed(f) => f.is_interruption(),
                State::Idle => false,
            };
            if interrupted {
                entry.state = match entry.intent {
                    Intent::Secure => State::Failed(Failure::NotConnected),
                    Intent::Plain => State::Idle,
                };
            }
            if entry.intent == Intent::Secure {
                monitor.push(entry.nick.clone());
            }
        }
        // Beyond the server's bound, the same peers every time (by name); the others restart
        // on the user's next line to them.
        monitor.sort_unstable_by_key(|n| nick_key(n));
        monitor.truncate(crate::protocol::MAX_MONITORED);
        for nick in &monitor {
            if let Some(entry) = self.peers.get_mut(&nick_key(nick)) {
                entry.monitored = true;
            }
        }
        monitor
    }

    /// What the server says of `peer`'s presence (a monitor answer, a join or a leave notice,
    /// or a refused relay for an offline peer). Going offline ends its session; coming online
    /// restarts an interrupted secure conversation (waiting longer after each attempt that
    /// did not come up).
    pub fn presence(&mut self, peer: &str, online: bool, now: Instant) -> Vec<Action> {
        let key = nick_key(peer);
        let Some(entry) = self.peers.get_mut(&key) else {
            return Vec::new();
        };
        entry.online = Some(online);
        if !online {
            return self.fail_if_active(peer, Failure::PeerLeft);
        }
        self.resume_if_due(&key, now, &mut None)
    }

    /// Starts a session by itself for an interrupted secure conversation whose peer is online,
    /// if the wait after the last attempt is over.
    ///
    /// `running` is the number of automatic handshakes running, counted on first need and kept
    /// up to date by the caller's loop (so that a tick over many peers counts once).
    fn resume_if_due(
        &mut self,
        key: &str,
        now: Instant,
        running: &mut Option<usize>,
    ) -> Vec<Action> {
        let Some(entry) = self.peers.get(key) else {
            return Vec::new();
        };
        // Not after the peer ended the session on purpose (`/insecure` on its side): that
        // waits for this side's user to write again, so that both users' choices are seen.
        let interrupted = matches!(&entry.state, State::Failed(f)
            if f.is_interruption() && *f != Failure::PeerAborted(AbortReason::Ended));
        if entry.intent != Intent::Secure || entry.online != Some(true) || !interrupted {
            return Vec::new();
        }
        if let (Some(last), Some(n)) = (entry.last_start, entry.attempts.checked_sub(1)) {
            let wait = RETRY_WAIT
                .saturating_mul(1u32 << n.min(8))
                .min(MAX_RETRY_WAIT);
            if now.saturating_duration_since(last) < wait {
                return Vec::new();
            }
        }
        let nick = entry.nick.clone();
        let count = *running.get_or_insert_with(|| {
            self.peers
                .values()
                .filter(|p| p.automatic && matches!(p.state, State::Handshaking(_)))
                .count()
        });
        if count >= MAX_AUTOMATIC_STARTS {
            return Vec::new(); // `tick` starts it when one of those is done
        }
        let actions = self.begin(&nick, now, true).unwrap_or_default();
        if !actions.is_empty() {
            *running = Some(count + 1);
        }
        actions
    }

    /// Where the conversation with `peer` stands.
    pub fn status(&self, peer: &str) -> Status {
        let Some(entry) = self.peers.get(&nick_key(peer)) else {
            return Status::Plain;
        };
        match &entry.state {
            State::Failed(f) if f.is_interruption() && entry.intent == Intent::Secure => {
                Status::Interrupted {
                    reason: f.clone(),
                    online: entry.online,
                }
            }
            State::Idle => Status::Plain,
            State::Handshaking(h) => match &h.previous {
                Some(e) => Status::Secure {
                    key: e.peer_key,
                    trust: e.trust,
                },
                None => Status::Starting,
            },
            State::Established(e) => Status::Secure {
                key: e.peer_key,
                trust: e.trust,
            },
            State::Failed(f) => Status::Failed(f.clone()),
        }
    }

    /// `/secure peer`: starts a handshake.
    ///
    /// # Errors
    /// [`Refused`] if there is a session already, the peer is us, or its key changed.
    pub fn start(&mut self, peer: &str, now: Instant) -> Result<Vec<Action>, Refused> {
        validate_nick(peer).map_err(|_| Refused::InvalidNick(peer.to_owned()))?;
        if nick_key(peer) == nick_key(&self.me) {
            return Err(Refused::Yourself);
        }
        if !self.peers.contains_key(&nick_key(peer)) && self.peers.len() >= MAX_PEERS {
            return Err(Refused::TooManyPeers);
        }
        let entry = self.peer(peer);
        match &entry.state {
            State::Established(_) => return Err(Refused::AlreadySecure(entry.nick.clone())),
            State::Handshaking(_) => return Err(Refused::AlreadyStarting(entry.nick.clone())),
            State::Failed(Failure::KeyChanged { .. }) => {
                return Err(Refused::KeyNotAccepted(entry.nick.clone()))
            }
            State::Idle | State::Failed(_) => {}
        }
        // The user asked: start now, whatever the wait after earlier attempts.
        entry.attempts = 0;
        entry.blocked_by = None;
        let mut actions = self.begin(peer, now, false)?;
        actions.extend(self.want_secure(peer));
        Ok(actions)
    }

    /// Starts a handshake with `peer` (no session and no key change to accept), counting the
    /// attempt. An `automatic` attempt after the first one is quiet: no `Starting` event, and
    /// no `Failed` event if it only times out or is interrupted with nothing waiting for it (the
    /// status says where the conversation stands), so that a peer that never answers does not
    /// fill the screen.
    fn begin(&mut self, peer: &str, now: Instant, automatic: bool) -> Result<Vec<Action>, Refused> {
        let (handshake, hello) = self.initiate(peer, now, None).ok_or(Refused::Crypto)?;
        let entry = self.peer(peer);
        entry.state = State::Handshaking(Box::new(handshake));
        entry.attempts = entry.attempts.saturating_add(1);
        entry.last_start = Some(now);
        entry.quiet = automatic && entry.attempts > 1;
        entry.automatic = automatic;
        let nick = entry.nick.clone();
        let mut actions = vec![Action::Send {
            to: nick.clone(),
            payload: hello,
            line: None,
        }];
        if !entry.quiet {
            actions.push(Action::Event(E2eEvent::Starting {
                peer: nick,
                by_peer: false,
            }));
        }
        Ok(actions)
    }

    /// Builds an initiator handshake and its first message.
    fn initiate(
        &self,
        peer: &str,
        now: Instant,
        previous: Option<Box<Established>>,
    ) -> Option<(Handshake, Vec<u8>)> {
        let session = random_session();
        let prologue = prologue(&self.me, peer, &session);
        let mut noise = noise_builder(self.identity.secret(), &prologue)
            .ok()?
            .build_initiator()
            .ok()?;
        let mut buf = [0u8; MAX_HANDSHAKE_MSG];
        let n = noise.write_message(&[], &mut buf).ok()?;
        let hello = encode(&Envelope::Hello {
            session,
            noise: buf.get(..n)?.to_vec(),
        });
        Some((
            Handshake {
                session,
                noise: Box::new(noise),
                initiator: true,
                started: now,
                previous,
            },
            hello,
        ))
    }

    /// A text for `peer`: encrypted, queued, or to be sent plain when there is no session.
    /// `line` is the caller's tag for the text: the [`Action::Send`] that carries it has
    /// `line: Some(line)`, and if it is dropped unsent (the session failed or ended while it
    /// waited), the tag is in that event's `unsent`.
    ///
    /// # Errors
    /// [`Refused`] when the session failed (never a silent fallback to plain text) or the
    /// queue is full.
    pub fn send_text(
        &mut self,
        peer: &str,
        text: &str,
        line: u64,
        now: Instant,
    ) -> Result<Outgoing, Refused> {
        let key = nick_key(peer);
        if key == nick_key(&self.me) {
            return Ok(Outgoing::Plain);
        }
        let max_queued = self.config.max_queued;
        let Some(entry) = self.peers.get_mut(&key) else {
            return Ok(Outgoing::Plain);
        };
        match &mut entry.state {
            State::Idle => Ok(Outgoing::Plain),
            State::Failed(Failure::KeyChanged { .. }) => {
                Err(Refused::KeyNotAccepted(entry.nick.clone()))
            }
            State::Failed(failure)
                if !failure.is_interruption() || entry.intent != Intent::Secure =>
            {
                Err(Refused::Blocked {
                    peer: entry.nick.clone(),
                    failure: failure.clone(),
                    online: entry.online,
                })
            }
            State::Failed(_) => {
                // Interrupted: never plain. A new session starts now and the text waits for
                // it — unless the peer is known to be offline (what we know of a peer we do
                // not monitor may be stale: then try, and the server says if it is offline).
                if entry.online == Some(false) && entry.monitored {
                    return Err(Refused::Offline(entry.nick.clone()));
                }
                let nick = entry.nick.clone();
                let mut actions = self.want_secure(&nick);
                actions.extend(self.begin(&nick, now, false)?);
                self.peer(&nick).queued.push_back((text.to_owned(), line));
                Ok(Outgoing::Queued(actions))
            }
            State::Handshaking(h) if h.previous.is_none() => {
                if entry.queued.len() >= max_queued {
                    return Err(Refused::QueueFull(entry.nick.clone()));
                }
                entry.queued.push_back((text.to_owned(), line));
                Ok(Outgoing::Queued(Vec::new()))
            }
            State::Handshaking(_) | State::Established(_) => {
                let actions = self.encrypt_text(&key, text, line, now)?;
                Ok(Outgoing::Secure(actions))
            }
        }
    }

    /// Encrypts a text on the session that currently carries messages for `key`, then rekeys
    /// or re-handshakes if due.
    fn encrypt_text(
        &mut self,
        key: &str,
        text: &str,
        line: u64,
        now: Instant,
    ) -> Result<Vec<Action>, Refused> {
        let rekey_every = self.config.rekey_every;
        let Some(entry) = self.peers.get_mut(key) else {
            return Err(Refused::Crypto);
        };
        let nick = entry.nick.clone();
        let session = match &mut entry.state {
            State::Established(e) => e,
            State::Handshaking(h) => h.previous.as_mut().ok_or(Refused::Crypto)?,
            _ => return Err(Refused::Crypto),
        };
        let mut actions = vec![Action::Send {
            to: nick.clone(),
            payload: seal(session, &Inner::Text(text.to_owned()))?,
            line: Some(line),
        }];
        session.messages += 1;
        session.sent_since_rekey += 1;
        if session.sent_since_rekey >= rekey_every {
            actions.push(Action::Send {
                to: nick,
                payload: seal(session, &Inner::Rekey)?,
                line: None,
            });
            session.transport.rekey_outgoing();
            session.sent_since_rekey = 0;
        }
        actions.extend(self.rehandshake_if_due(key, now));
        Ok(actions)
    }

    /// Starts a re-handshake if this side initiated the session and it is old or busy enough.
    fn rehandshake_if_due(&mut self, key: &str, now: Instant) -> Vec<Action> {
        let due = match self.peers.get(key).map(|p| &p.state) {
            Some(State::Established(e)) => {
                e.initiator
                    && (e.messages >= self.config.rehandshake_messages
                        || now.saturating_duration_since(e.since) >= self.config.rehandshake_after)
            }
            _ => false,
        };
        if !due {
            return Vec::new();
        }
        let Some(entry) = self.peers.get_mut(key) else {
            return Vec::new();
        };
        let nick = entry.nick.clone();
        let State::Established(current) = std::mem::replace(&mut entry.state, State::Idle) else {
            return Vec::new();
        };
        match self.initiate(&nick, now, None) {
            Some((mut handshake, hello)) => {
                handshake.previous = Some(current);
                self.peer(&nick).state = State::Handshaking(Box::new(handshake));
                vec![Action::Send {
                    to: nick,
                    payload: hello,
                    line: None,
                }]
            }
            None => {
                self.peer(&nick).state = State::Established(current);
                Vec::new()
            }
        }
    }

    /// Handles a relay payload from `from` (the server-authenticated sender).
    pub fn receive(&mut self, from: &str, payload: &[u8], now: Instant) -> Vec<Action> {
        if validate_nick(from).is_err() || nick_key(from) == nick_key(&self.me) {
            return Vec::new();
        }
        // Whatever it sent, the peer is online.
        if let Some(entry) = self.peers.get_mut(&nick_key(from)) {
            entry.online = Some(true);
        }
        let envelope = match postcard::from_bytes::<Envelope>(payload) {
            Ok(envelope) => envelope,
            // Garbage in a live session is tampering; otherwise there is nothing to protect.
            Err(_) => return self.fail_if_active(from, Failure::Decrypt),
        };
        match envelope {
            Envelope::Hello { session, noise } => self.on_hello(from, session, &noise, now),
            Envelope::Reply { session, noise } => self.on_reply(from, session, &noise, now),
            Envelope::Finish { session, noise } => self.on_finish(from, session, &noise, now),
            Envelope::Data {
                session,
                ciphertext,
            } => self.on_data(from, session, &ciphertext, now),
            Envelope::Abort { session, reason } => self.on_abort(from, session, reason),
        }
    }

    fn on_hello(
        &mut self,
        from: &str,
        session: SessionId,
        noise: &[u8],
        now: Instant,
    ) -> Vec<Action> {
        let my_key = nick_key(&self.me);
        if !self.peers.contains_key(&nick_key(from)) && self.incoming_full() {
            // No state is created for the sender: a flood of Hellos costs nothing but this.
            return vec![abort(from, session, AbortReason::HandshakeFailed)];
        }
        let entry = self.peer(from);
        let nick = entry.nick.clone();
        let previous = match std::mem::replace(&mut entry.state, State::Idle) {
            State::Failed(failure @ Failure::KeyChanged { .. }) => {
                entry.state = State::Failed(failure);
                // Answer (message 2 carries our key and nothing else), then drop the session:
                // the peer learns our key, so that both can compare the safety number of its
                // new key before this side accepts it.
                let mut actions = Vec::new();
                if let Ok((_, reply)) = self.respond(from, session, noise, now, None) {
                    actions.push(Action::Send {
                        to: nick.clone(),
                        payload: reply,
                        line: None,
                    });
                }
                actions.push(abort(&nick, session, AbortReason::KeyNotAccepted));
                return actions;
            }
            State::Handshaking(h) if h.initiator && h.session != session => {
                // Both sides started at once. The side with the smaller nick stays initiator;
                // the other answers its Hello. Both apply the same rule, so one session results.
                if my_key < nick_key(from) {
                    entry.state = State::Handshaking(h);
                    return Vec::new();
                }
                h.previous
            }
            State::Handshaking(h) => h.previous,
            State::Established(e) => Some(e), // the peer renews the session
            State::Failed(f) => {
                // A peer (or a forged Hello) may start a new session on a blocked
                // conversation; if that does not complete, it stays blocked for its reason.
                if !f.is_interruption() {
                    entry.blocked_by = Some(f);
                }
                None
            }
            State::Idle => None,
        };
        let renewing = previous.is_some();
        match self.respond(from, session, noise, now, previous) {
            Ok((handshake, reply)) => {
                self.peer(from).state = State::Handshaking(Box::new(handshake));
                let mut actions = vec![Action::Send {
                    to: nick.clone(),
                    payload: reply,
                    line: None,
                }];
                if !renewing {
                    actions.push(Action::Event(E2eEvent::Starting {
                        peer: nick,
                        by_peer: true,
                    }));
                }
                actions
            }
            Err(failure) => self.handshake_failed(from, session, failure),
        }
    }

    fn respond(
        &self,
        from: &str,
        session: SessionId,
        noise: &[u8],
        now: Instant,
        previous: Option<Box<Established>>,
    ) -> Result<(Handshake, Vec<u8>), Failure> {
        if noise.len() > MAX_HANDSHAKE_MSG {
            return Err(Failure::Handshake);
        }
        if !leading_key(noise).is_some_and(|e| is_contributory(&e)) {
            return Err(Failure::BadKey);
        }
        let prologue = prologue(&self.me, from, &session);
        let mut state = noise_builder(self.identity.secret(), &prologue)
            .and_then(|b| b.build_responder())
            .map_err(|_| Failure::Handshake)?;
        let mut payload = [0u8; MAX_HANDSHAKE_MSG];
        // Handshake payloads are empty by this protocol: anything in one is refused.
        state
            .read_message(noise, &mut payload)
            .ok()
            .filter(|n| *n == 0)
            .ok_or(Failure::Handshake)?;
        let mut buf = [0u8; MAX_HANDSHAKE_MSG];
        let n = state
            .write_message(&[], &mut buf)
            .map_err(|_| Failure::Handshake)?;
        let reply = encode(&Envelope::Reply {
            session,
            noise: buf.get(..n).ok_or(Failure::Handshake)?.to_vec(),
        });
        Ok((
            Handshake {
                session,
                noise: Box::new(state),
                initiator: false,
                started: now,
                previous,
            },
            reply,
        ))
    }

    /// Whether a new peer's `Hello` must be refused: too many peers, or too many handshakes
    /// started by peers in progress.
    fn incoming_full(&self) -> bool {
        let incoming = self
            .peers
            .values()
            .filter(|p| matches!(&p.state, State::Handshaking(h) if !h.initiator))
            .count();
        self.peers.len() >= MAX_PEERS || incoming >= MAX_INCOMING_HANDSHAKES
    }

    /// Takes the handshake for `session` out of the peer's state if it is ours to continue.
    fn take_handshake(
        &mut self,
        from: &str,
        session: SessionId,
        initiator: bool,
    ) -> Option<Box<Handshake>> {
        let entry = self.peers.get_mut(&nick_key(from))?;
        match std::mem::replace(&mut entry.state, State::Idle) {
            State::Handshaking(h) if h.session == session && h.initiator == initiator => Some(h),
            other => {
                entry.state = other; // stale or unexpected: ignore
                None
            }
        }
    }

    fn on_reply(
        &mut self,
        from: &str,
        session: SessionId,
        noise: &[u8],
        now: Instant,
    ) -> Vec<Action> {
        let Some(mut h) = self.take_handshake(from, session, true) else {
            return Vec::new();
        };
        if noise.len() > MAX_HANDSHAKE_MSG
            || !leading_key(noise).is_some_and(|e| is_contributory(&e))
        {
            return self.handshake_failed(from, session, Failure::BadKey);
        }
        let mut payload = [0u8; MAX_HANDSHAKE_MSG];
        if h.noise.read_message(noise, &mut payload) != Ok(0) {
            return self.handshake_failed(from, session, Failure::Handshake);
        }
        // The responder's static key is known now: check it before sending message 3.
        let checked = self.check_peer_key(from, key_of(h.noise.get_remote_static()));
        if let Err(failure) = &checked {
            if matches!(failure, Failure::OwnKey) {
                return self.own_key(from, session, *h);
            }
            if !matches!(failure, Failure::KeyChanged { .. }) {
                let failure = failure.clone();
                return self.abort_and_fail(from, session, abort_reason(&failure), failure);
            }
        }
        // Message 3 carries our static key and nothing else (handshake payloads are empty).
        // It is sent even when the peer's key changed, then the session is dropped: the peer
        // then knows our key, so that both sides can compare the safety number of the key
        // presented before either accepts it.
        let mut buf = [0u8; MAX_HANDSHAKE_MSG];
        let Ok(n) = h.noise.write_message(&[], &mut buf) else {
            return self.handshake_failed(from, session, Failure::Handshake);
        };
        let nick = self.peer(from).nick.clone();
        let finish = encode(&Envelope::Finish {
            session,
            noise: buf[..n].to_vec(),
        });
        let mut actions = vec![Action::Send {
            to: nick,
            payload: finish,
            line: None,
        }];
        match checked {
            Ok(trust) => actions.extend(self.establish(from, *h, trust, now)),
            Err(failure) => {
                actions.extend(self.abort_and_fail(from, session, abort_reason(&failure), failure))
            }
        }
        actions
    }

    fn on_finish(
        &mut self,
        from: &str,
        session: SessionId,
        noise: &[u8],
        now: Instant,
    ) -> Vec<Action> {
        let Some(mut h) = self.take_handshake(from, session, false) else {
            return Vec::new();
        };
        let mut payload = [0u8; MAX_HANDSHAKE_MSG];
        if noise.len() > MAX_HANDSHAKE_MSG || h.noise.read_message(noise, &mut payload) != Ok(0) {
            return self.handshake_failed(from, session, Failure::Handshake);
        }
        match self.check_peer_key(from, key_of(h.noise.get_remote_static())) {
            Ok(trust) => self.establish(from, *h, trust, now),
            Err(failure) => self.abort_and_fail(from, session, abort_reason(&failure), failure),
        }
    }

    /// Checks the peer's static key: usable, and matching its pin (pinning it if new).
    fn check_peer_key(
        &mut self,
        from: &str,
        key: Option<[u8; KEY_LEN]>,
    ) -> Result<(Trust, bool), Failure> {
        let key = key.ok_or(Failure::Handshake)?;
        if !is_contributory(&key) {
            return Err(Failure::BadKey);
        }
        if key == *self.identity.public() {
            return Err(Failure::OwnKey); // before any pin: a pin of our own key counts for nothing
        }
        match self.pins.check(from, &key) {
            PinCheck::New => Ok((Trust::New, true)),
            PinCheck::Pinned { verified: true } => Ok((Trust::Verified, false)),
            PinCheck::Pinned { verified: false } => Ok((Trust::Pinned, false)),
            PinCheck::Changed { pinned } => Err(Failure::KeyChanged {
                pinned,
                presented: key,
            }),
        }
    }

    /// The responder presented our own key. Handshake message 3 still goes (it tells a holder
    /// of our key nothing new: reading message 2 proved it has our secret key), so that the
    /// responder sees our key too and warns its user likewise; then no session, no pin.
    fn own_key(&mut self, from: &str, session: SessionId, mut h: Handshake) -> Vec<Action> {
        let mut buf = [0u8; MAX_HANDSHAKE_MSG];
        let mut actions = Vec::new();
        let written = h.noise.write_message(&[], &mut buf).ok();
        if let Some(noise) = written.and_then(|n| buf.get(..n)) {
            let payload = encode(&Envelope::Finish {
                session,
                noise: noise.to_vec(),
            });
            actions.push(Action::Send {
                to: self.peer(from).nick.clone(),
                payload,
                line: None,
            });
        }
        actions.extend(self.fail(from, Failure::OwnKey));
        actions
    }

    fn establish(
        &mut self,
        from: &str,
        h: Handshake,
        (trust, new_pin): (Trust, bool),
        now: Instant,
    ) -> Vec<Action> {
        let session = h.session;
        let Some(peer_key) = key_of(h.noise.get_remote_static()) else {
            return self.handshake_failed(from, session, Failure::Handshake);
        };
        #[cfg(test)]
        let mut h = h;
        #[cfg(test)]
        {
            let (a, b) = h.noise.dangerously_get_raw_split();
            self.stolen.push((session, a, b));
        }
        let Ok(transport) = h.noise.into_transport_mode() else {
            return self.handshake_failed(from, session, Failure::Handshake);
        };
        let mut actions = self.want_secure(from);
        if new_pin && self.pins.pin_new(from, &peer_key) && !actions.contains(&Action::Persist) {
            actions.push(Action::Persist);
        }
        let entry = self.peer(from);
        entry.attempts = 0;
        entry.quiet = false;
        entry.blocked_by = None;
        let renewed = h.previous.is_some();
        let established = Established {
            session,
            transport: Box::new(transport),
            initiator: h.initiator,
            since: now,
            messages: 0,
            sent_since_rekey: 0,
            peer_key,
            trust,
            draining: h.previous.map(|p| (p.session, p.transport)),
        };
        let entry = self.peer(from);
        entry.state = State::Established(Box::new(established));
        let nick = entry.nick.clone();
        let mut queued: VecDeque<(String, u64)> = entry.queued.drain(..).collect();
        actions.push(Action::Event(E2eEvent::Ready {
            peer: nick,
            key: peer_key,
            trust,
            renewed,
        }));
        let key = nick_key(from);
        while let Some((text, line)) = queued.pop_front() {
            match self.encrypt_text(&key, &text, line, now) {
                Ok(more) => actions.extend(more),
                Err(_) => {
                    // This text and the ones after it were not sent: put them back to be
                    // reported with the failure.
                    queued.push_front((text, line));
                    self.peer(from).queued = queued;
                    actions.extend(self.fail(from, Failure::Handshake));
                    break;
                }
            }
        }
        actions
    }

    fn on_data(
        &mut self,
        from: &str,
        session: SessionId,
        ciphertext: &[u8],
        now: Instant,
    ) -> Vec<Action> {
        let key = nick_key(from);
        let Some(nick) = self.peers.get(&key).map(|p| p.nick.clone()) else {
            return vec![abort(from, session, AbortReason::UnknownSession)];
        };
        // Decrypt within one short borrow of the peer's state; act on the result after.
        let opened: Option<Option<Inner>> = self.peers.get_mut(&key).and_then(|entry| {
            let transport = transport_for(&mut entry.state, &session)?;
            if ciphertext.len() > MAX_CIPHERTEXT {
                return Some(None);
            }
            let mut plain = vec![0u8; ciphertext.len()];
            let inner = transport
                .read_message(ciphertext, &mut plain)
                .ok()
                .and_then(|n| plain.get(..n).and_then(unpad));
            if inner == Some(Inner::Rekey) {
                transport.rekey_incoming();
            }
            Some(inner)
        });
        match opened {
            None => vec![abort(&nick, session, AbortReason::UnknownSession)],
            Some(None) => {
                self.abort_and_fail(from, session, AbortReason::DecryptFailed, Failure::Decrypt)
            }
            Some(Some(Inner::Text(text))) => {
                if let Some(e) = self.current_mut(&key) {
                    e.messages += 1;
                }
                let mut actions = vec![Action::Event(E2eEvent::Message { peer: nick, text })];
                actions.extend(self.rehandshake_if_due(&key, now));
                actions
            }
            Some(Some(Inner::Rekey)) => Vec::new(),
            Some(Some(Inner::Close)) => {
                let entry = self.peer(from);
                // The peer chose plain; this side still wants secure until its user says so.
                entry.state = match entry.intent {
                    Intent::Secure => State::Failed(Failure::PeerAborted(AbortReason::Ended)),
                    Intent::Plain => State::Idle,
                };
                let unsent = entry.queued.drain(..).map(|(_, line)| line).collect();
                vec![Action::Event(E2eEvent::Ended {
                    peer: nick,
                    by_peer: true,
                    unsent,
                })]
            }
        }
    }

    fn on_abort(&mut self, from: &str, session: SessionId, reason: AbortReason) -> Vec<Action> {
        let ours = match self.peers.get(&nick_key(from)).map(|p| &p.state) {
            Some(State::Handshaking(h)) => {
                h.session == session || h.previous.as_ref().is_some_and(|p| p.session == session)
            }
            Some(State::Established(e)) => e.session == session,
            _ => false,
        };
        if ours {
            self.fail(from, Failure::PeerAborted(reason))
        } else {
            Vec::new() // stale or forged for a session we do not have: nothing to end
        }
    }

    /// The session that carries our messages to `key` now.
    fn current_mut(&mut self, key: &str) -> Option<&mut Established> {
        match &mut self.peers.get_mut(key)?.state {
            State::Established(e) => Some(e),
            State::Handshaking(h) => h.previous.as_deref_mut(),
            _ => None,
        }
    }

    /// Marks the session with `peer` failed; queued texts are dropped and reported.
    fn fail(&mut self, peer: &str, failure: Failure) -> Vec<Action> {
        let entry = self.peer(peer);
        let failure = match entry.blocked_by.take() {
            Some(blocked) if failure.is_interruption() => blocked,
            _ => failure,
        };
        let persist = !failure.is_interruption() && entry.intent == Intent::Secure;
        if matches!(failure, Failure::PeerLeft | Failure::Unreachable) {
            entry.online = Some(false);
        }
        let quiet = std::mem::take(&mut entry.quiet)
            && entry.queued.is_empty()
            && failure.is_interruption();
        // A conversation the user never made secure stays plain when a session the peer
        // started fails (the failure is still shown); key problems block it all the same.
        entry.state = match (entry.intent, &failure) {
            (Intent::Plain, f) if !matches!(f, Failure::KeyChanged { .. } | Failure::OwnKey) => {
                State::Idle
            }
            _ => State::Failed(failure.clone()),
        };
        let unsent: Vec<u64> = entry.queued.drain(..).map(|(_, line)| line).collect();
        let mut actions = Vec::new();
        if entry.intent == Intent::Plain && failure.is_interruption() {
            // A session the peer offered did not come up: nothing was secure to begin with.
            actions.push(Action::Event(E2eEvent::NotStarted {
                peer: entry.nick.clone(),
                failure,
                unsent,
            }));
        } else if !quiet {
            actions.push(Action::Event(E2eEvent::Failed {
                peer: entry.nick.clone(),
                failure,
                unsent,
            }));
        }
        if persist {
            actions.push(Action::Persist);
        }
        actions
    }

    /// Tells the peer why we dropped `session`, and fails our side of it.
    fn abort_and_fail(
        &mut self,
        from: &str,
        session: SessionId,
        reason: AbortReason,
        failure: Failure,
    ) -> Vec<Action> {
        let nick = self.peer(from).nick.clone();
        let mut actions = vec![abort(&nick, session, reason)];
        actions.extend(self.fail(from, failure));
        actions
    }

    fn handshake_failed(
        &mut self,
        from: &str,
        session: SessionId,
        failure: Failure,
    ) -> Vec<Action> {
        self.abort_and_fail(from, session, AbortReason::HandshakeFailed, failure)
    }

    fn fail_if_active(&mut self, peer: &str, failure: Failure) -> Vec<Action> {
        match self.peers.get(&nick_key(peer)).map(|p| &p.state) {
            Some(State::Handshaking(_) | State::Established(_)) => self.fail(peer, failure),
            _ => Vec::new(),
        }
    }

    /// The peer went offline: its session cannot continue.
    pub fn peer_left(&mut self, peer: &str) -> Vec<Action> {
        if let Some(entry) = self.peers.get_mut(&nick_key(peer)) {
            entry.online = Some(false);
        }
        self.fail_if_active(peer, Failure::PeerLeft)
    }

    /// The server could not deliver a payload to `peer` (it is offline): its session cannot
    /// continue, and a handshake to it fails at once instead of timing out.
    pub fn unreachable(&mut self, peer: &str) -> Vec<Action> {
        if let Some(entry) = self.peers.get_mut(&nick_key(peer)) {
            entry.online = Some(false);
        }
        self.fail_if_active(peer, Failure::Unreachable)
    }

    /// The server refused to relay one of our messages to `peer` for another reason (busy,
    /// rate limit): the peer would fail to decrypt everything after it, so the session ends
    /// now, visibly; a secure conversation restarts with the next text.
    pub fn relay_refused(&mut self, peer: &str) -> Vec<Action> {
        self.fail_if_active(peer, Failure::RelayRefused)
    }

    /// `/insecure peer`: ends the session (telling the peer, encrypted, if it is up) and allows
    /// plain private messages again.
    ///
    /// # Errors
    /// [`Refused::NoSession`] if there is nothing to end.
    pub fn end(&mut self, peer: &str) -> Result<Vec<Action>, Refused> {
        let key = nick_key(peer);
        let Some(entry) = self.peers.get_mut(&key) else {
            return Err(Refused::NoSession(peer.to_owned()));
        };
        let nick = entry.nick.clone();
        let mut actions = Vec::new();
        match std::mem::replace(&mut entry.state, State::Idle) {
            State::Idle if entry.intent == Intent::Plain => return Err(Refused::NoSession(nick)),
            State::Idle => {}
            State::Established(mut e) => actions.push(Action::Send {
                to: nick.clone(),
                payload: seal(&mut e, &Inner::Close)?,
                line: None,
            }),
            State::Handshaking(h) => match h.previous {
                Some(mut e) => actions.push(Action::Send {
                    to: nick.clone(),
                    payload: seal(&mut e, &Inner::Close)?,
                    line: None,
                }),
                None => actions.push(abort(&nick, h.session, AbortReason::Ended)),
            },
            State::Failed(_) => {}
        }
        let unsent = entry.queued.drain(..).map(|(_, line)| line).collect();
        entry.intent = Intent::Plain;
        entry.blocked_by = None;
        actions.push(Action::Event(E2eEvent::Ended {
            peer: nick,
            by_peer: false,
            unsent,
        }));
        actions.push(Action::Persist);
        Ok(actions)
    }

    /// `/accept-key peer`: after a key change, pins the new key (not verified), unblocks, and
    /// starts a new session unless the peer is known to be offline.
    ///
    /// # Errors
    /// [`Refused::NothingToAccept`] if the peer's key did not change.
    pub fn accept_key(&mut self, peer: &str, now: Instant) -> Result<Vec<Action>, Refused> {
        let key = nick_key(peer);
        let presented = match self.peers.get(&key).map(|p| &p.state) {
            Some(State::Failed(Failure::KeyChanged { presented, .. })) => *presented,
            _ => return Err(Refused::NothingToAccept(peer.to_owned())),
        };
        self.pins.replace(peer, &presented);
        Ok(self.accepted(peer, now))
    }

    /// After the user accepted a changed key: the conversation is secure and interrupted, and
    /// a new session starts now if the peer is online.
    fn accepted(&mut self, peer: &str, now: Instant) -> Vec<Action> {
        let entry = self.peer(peer);
        entry.state = State::Failed(Failure::NotConnected);
        entry.attempts = 0;
        entry.last_start = None;
        let mut actions = vec![Action::Persist];
        let key = nick_key(peer);
        let online = self.peers.get(&key).and_then(|p| p.online) != Some(false);
        if online {
            let nick = self.peer(peer).nick.clone();
            actions.extend(self.begin(&nick, now, false).unwrap_or_default());
        }
        actions
    }

    /// `/verified peer`: the user compared the safety number ([`Sessions::safety_number`]) and
    /// it matched. It never accepts a changed key: that takes its own explicit step
    /// ([`Sessions::accept_key`]), so that a `/verified` meant for an earlier comparison cannot
    /// accept a key that changed since.
    ///
    /// # Errors
    /// [`Refused::NoKey`] if no key is pinned for the peer; [`Refused::KeyNotAccepted`] after
    /// a key change not accepted yet.
    pub fn mark_verified(&mut self, peer: &str, _now: Instant) -> Result<Vec<Action>, Refused> {
        let key = nick_key(peer);
        if let Some(State::Failed(Failure::KeyChanged { .. })) =
            self.peers.get(&key).map(|p| &p.state)
        {
            return Err(Refused::KeyNotAccepted(self.peer(peer).nick.clone()));
        }
        if !self.pins.mark_verified(peer) {
            return Err(Refused::NoKey(peer.to_owned()));
        }
        let pinned = self.pins.get(peer).map(|p| p.key);
        if let Some(e) = self.current_mut(&nick_key(peer)) {
            if Some(e.peer_key) == pinned {
                e.trust = Trust::Verified;
            }
        }
        Ok(vec![Action::Persist])
    }

    /// The safety number with `peer`: from our key and its pinned key — or, after a key
    /// change, the key it presents now (not accepted yet), which is the one both users must
    /// compare before accepting it. The peer's side computes the same digits from our key
    /// (it learned ours from the handshake we then dropped).
    ///
    /// # Errors
    /// [`Refused::NoKey`] if no key is known for the peer.
    pub fn safety_number(&self, peer: &str) -> Result<String, Refused> {
        let key = match self.peers.get(&nick_key(peer)).map(|p| &p.state) {
            Some(State::Failed(Failure::KeyChanged { presented, .. })) => *presented,
            _ => {
                self.pins
                    .get(peer)
                    .ok_or_else(|| Refused::NoKey(peer.to_owned()))?
                    .key
            }
        };
        Ok(crate::safety::safety_number(
            &self.me,
            self.identity.public(),
            peer,
            &key,
        ))
    }

    /// Call now and then (every few seconds): times out handshakes and renews old sessions.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let timeout = self.config.handshake_timeout;
        let keys: Vec<String> = self.peers.keys().cloned().collect();
        let mut actions = Vec::new();
        let mut running = None;
        let mut waiting = Vec::new();
        for key in keys {
            let Some(entry) = self.peers.get_mut(&key) else {
                continue;
            };
            let nick = entry.nick.clone();
            // A responder waits longer than an initiator: message 3 may wait behind the
            // initiator's own paced traffic after it already counts the session as up.
            let timed_out = matches!(&entry.state, State::Handshaking(h)
                if now.saturating_duration_since(h.started)
                    >= if h.initiator { timeout } else { timeout.saturating_mul(RESPONDER_PATIENCE) });
            if timed_out {
                if let State::Handshaking(h) = std::mem::replace(&mut entry.state, State::Idle) {
                    match h.previous {
                        // A renewal that did not finish: keep the session we have.
                        Some(previous) => entry.state = State::Established(previous),
                        None => actions.extend(self.fail(&nick, Failure::Timeout)),
                    }
                }
            } else {
                actions.extend(self.rehandshake_if_due(&key, now));
                waiting.push(key);
            }
        }
        // Then automatic restarts, once the handshakes that timed out are counted out (those
        // restart at a later tick).
        for key in waiting {
            actions.extend(self.resume_if_due(&key, now, &mut running));
        }
        actions
    }
}

/// The transport that decrypts messages of `session` in this state, if any. A message on the
/// current session shows the peer has switched, so the drained old session is dropped.
fn transport_for<'a>(
    state: &'a mut State,
    session: &SessionId,
) -> Option<&'a mut snow::TransportState> {
    match state {
        State::Established(e) => {
            let e: &mut Established = e;
            if e.session == *session {
                e.draining = None;
                return Some(&mut e.transport);
            }
            match &mut e.draining {
                Some((old, transport)) if old == session => Some(transport),
                _ => None,
            }
        }
        State::Handshaking(h) => match &mut h.previous {
            Some(p) if p.session == *session => Some(&mut p.transport),
            _ => None,
        },
        State::Idle | State::Failed(_) => None,
    }
}

/// Encrypts `inner`, padded, as a Data envelope of `e`'s session.
fn seal(e: &mut Established, inner: &Inner) -> Result<Vec<u8>, Refused> {
    let plain = pad(inner)?;
    let mut buf = vec![0u8; plain.len() + TAG_LEN];
    let n = e
        .transport
        .write_message(&plain, &mut buf)
        .map_err(|_| Refused::Crypto)?;
    buf.truncate(n);
    Ok(encode(&Envelope::Data {
        session: e.session,
        ciphertext: buf,
    }))
}

/// What to tell a peer whose key check failed.
fn abort_reason(failure: &Failure) -> AbortReason {
    match failure {
        Failure::KeyChanged { .. } | Failure::OwnKey => AbortReason::KeyNotAccepted,
        _ => AbortReason::HandshakeFailed,
    }
}

fn abort(to: &str, session: SessionId, reason: AbortReason) -> Action {
    Action::Send {
        to: to.to_owned(),
        payload: encode(&Envelope::Abort { session, reason }),
        line: None,
    }
}

#[cfg(test)]
mod tests;
