//! Messages, limits and validation rules of protocol version [`PROTOCOL_VERSION`].
//!
//! Each frame's payload is one postcard-encoded [`ClientMsg`] (client → server) or [`ServerMsg`]
//! (server → client). `PROTOCOL.md` documents the byte layout for people writing other clients.
//! New variants are only ever appended, so the variant numbers below are part of the protocol.

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks. The client sends it in [`ClientMsg::Hello`]; the
/// server refuses versions it does not speak with [`ErrorCode::UNSUPPORTED_VERSION`].
pub const PROTOCOL_VERSION: u16 = 4;

/// The TLS ALPN protocol name. Both sides offer it, so a Multi-Messenger client and an HTTPS
/// server (or the reverse) fail at the handshake instead of exchanging garbage.
pub const ALPN: &[u8] = b"mm/1";

/// The TCP port a server listens on and a client connects to when none is given (unassigned by
/// IANA).
pub const DEFAULT_PORT: u16 = 7667;

/// Longest nick, in characters (nicks are ASCII, so also in bytes).
pub const MAX_NICK_LEN: usize = 32;

/// Longest chat text, in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 4096;

/// Most nicks the server puts in one [`ServerMsg::Users`] frame; longer lists are split so that
/// every frame stays far below the frame limit (1,000 × 33 bytes ≈ 33 KB).
pub const USERS_PER_FRAME: usize = 1000;

/// Largest relay payload (end-to-end encrypted data between two clients), in bytes.
pub const MAX_RELAY_LEN: usize = 16 * 1024;

/// Longest error detail the server sends, in bytes.
pub const MAX_DETAIL_LEN: usize = 512;

/// Most nicks in one [`ClientMsg::Monitor`].
pub const MONITOR_PER_FRAME: usize = 64;

/// Most nicks one connection may monitor; further ones are ignored (like IRCv3 `MONITOR`'s
/// limit, a bound on the server's memory per connection).
pub const MAX_MONITORED: usize = 256;

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First frame of every connection: who the client is and which protocol it speaks.
    Hello {
        /// The client's [`PROTOCOL_VERSION`].
        version: u16,
        /// Requested nick; see [`validate_nick`].
        nick: String,
    },
    /// A line for everyone else in the room.
    Public {
        /// The text; see [`validate_text`].
        text: String,
    },
    /// A line for one user only.
    Private {
        /// Recipient nick (case-insensitive).
        to: String,
        /// The text; see [`validate_text`].
        text: String,
    },
    /// Asks for the list of online users; answered with [`ServerMsg::Users`] frames.
    Who,
    /// Liveness probe; answered with [`ServerMsg::Pong`] carrying the same token.
    Ping {
        /// Opaque value echoed back.
        token: u64,
    },
    /// Answer to a [`ServerMsg::Ping`].
    Pong {
        /// The token of the ping being answered.
        token: u64,
    },
    /// The client is leaving; the server closes the connection after it.
    Quit,
    /// Opaque bytes for one user: end-to-end handshake and encrypted messages. The server does
    /// not look inside; it adds the authenticated sender and forwards.
    Relay {
        /// Recipient nick (case-insensitive).
        to: String,
        /// 1 to [`MAX_RELAY_LEN`] bytes.
        payload: Vec<u8>,
    },
    /// The client has received every line addressed to it personally — [`ServerMsg::Private`],
    /// [`ServerMsg::Offline`] and [`ServerMsg::Relay`] — whose id is at most `up_to`. The
    /// server keeps each such line in the recipient's mailbox until this arrives, and sends the
    /// unacknowledged ones again (with the same ids) at the next login. Not answered; counted
    /// against the rate limit only when it acknowledges nothing new (ids beyond what the
    /// connection was given are ignored).
    Received {
        /// Highest id received; ids of personal lines reach one client in increasing order.
        up_to: u64,
    },
    /// Watch these users' presence (the idea of IRCv3 `MONITOR`): the server answers at once
    /// with one [`ServerMsg::Presence`] per valid nick, then sends one each time that user
    /// comes online or goes offline, for as long as this connection lasts — whatever the size
    /// of the room (join and leave notices stop in large rooms). 1 to [`MONITOR_PER_FRAME`]
    /// nicks; invalid nicks and those beyond [`MAX_MONITORED`] per connection are ignored. Not
    /// answered otherwise; counted against the rate limit.
    Monitor {
        /// Nicks to watch (case-insensitive).
        nicks: Vec<String>,
    },
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// Successful answer to [`ClientMsg::Hello`]; followed by [`ServerMsg::Users`] frames.
    Welcome {
        /// The nick as registered (the spelling the client asked for).
        nick: String,
        /// Server software name and version, for display.
        server: String,
        /// How many users are online, this client included.
        online: u32,
        /// The server's text limit in bytes (at most [`MAX_TEXT_LEN`]).
        max_text_len: u32,
        /// Messages a client may send at once (every frame counts but `Pong`, `Quit` and a
        /// `Received` that acknowledges something new).
        rate_burst: u32,
        /// Messages per second a client may send, sustained. Clients should pace themselves
        /// within these limits; frames over them are refused with `rate-limited`.
        rate_per_sec: u32,
    },
    /// Part of the list of online users. Lists longer than [`USERS_PER_FRAME`] come in several
    /// frames; the one with `last == true` ends the list.
    Users {
        /// Nicks in this part.
        nicks: Vec<String>,
        /// Whether this is the last part.
        last: bool,
    },
    /// A public line from another user.
    Public {
        /// Server-assigned message id, increasing.
        id: u64,
        /// Server receive time, milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// Sender nick.
        from: String,
        /// The text, exactly as sent.
        text: String,
    },
    /// A private line addressed to this client.
    Private {
        /// Server-assigned message id, increasing.
        id: u64,
        /// Server receive time, milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// Sender nick.
        from: String,
        /// The text, exactly as sent.
        text: String,
    },
    /// The server accepted this client's [`ClientMsg::Public`], [`ClientMsg::Private`] or
    /// [`ClientMsg::Relay`]. Every such message is answered, in order, with exactly one `Sent` or
    /// one non-fatal [`ServerMsg::Error`].
    Sent {
        /// The id the message was given.
        id: u64,
        /// Its server timestamp, milliseconds since the Unix epoch (UTC).
        ts: u64,
    },
    /// A user came online.
    Joined {
        /// Milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// Their nick.
        nick: String,
    },
    /// A user went offline.
    Left {
        /// Milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// Their nick.
        nick: String,
        /// Why.
        reason: LeaveReason,
    },
    /// Something went wrong. When `fatal` is true the server closes the connection next.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Whether the connection is being closed.
        fatal: bool,
        /// Human-readable detail (at most [`MAX_DETAIL_LEN`] bytes, never message text).
        detail: String,
    },
    /// The server is shutting down; it closes the connection after this frame.
    Shutdown {
        /// Human-readable reason.
        reason: String,
    },
    /// Liveness probe; the client must answer with [`ClientMsg::Pong`].
    Ping {
        /// Opaque value to echo.
        token: u64,
    },
    /// Answer to a [`ClientMsg::Ping`].
    Pong {
        /// The token of the ping being answered.
        token: u64,
    },
    /// Opaque bytes from another user (see [`ClientMsg::Relay`]).
    Relay {
        /// Server-assigned message id.
        id: u64,
        /// Server receive time, milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// Sender nick, as authenticated by the server.
        from: String,
        /// The bytes, exactly as sent.
        payload: Vec<u8>,
    },
    /// A public line from before this client logged in: the room's recent history, oldest
    /// first, sent right after the user list and before anything live.
    History {
        /// The id it was given when it was sent.
        id: u64,
        /// When it was sent, milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// Sender nick.
        from: String,
        /// The text, exactly as sent.
        text: String,
    },
    /// Answer to a [`ClientMsg::Private`] whose recipient is a registered user who is offline:
    /// the server stored it and delivers it at their next login. Takes the place of `Sent`.
    Queued {
        /// The id the message was given.
        id: u64,
        /// Its server timestamp, milliseconds since the Unix epoch (UTC).
        ts: u64,
    },
    /// A private line sent to this client while it was offline, delivered at login (after any
    /// `History`), oldest first.
    Offline {
        /// The id it was given when it was sent.
        id: u64,
        /// When it was sent, milliseconds since the Unix epoch (UTC).
        ts: u64,
        /// Sender nick.
        from: String,
        /// The text, exactly as sent.
        text: String,
    },
    /// A monitored user's presence ([`ClientMsg::Monitor`]): now, then at every change.
    Presence {
        /// The nick (as registered when online, as asked otherwise).
        nick: String,
        /// Whether they are online.
        online: bool,
    },
}

/// Why a user left, as told to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaveReason {
    /// The user quit.
    Quit,
    /// The connection dropped or timed out.
    Disconnected,
    /// The server disconnected a client that could not keep up with its messages.
    TooSlow,
    /// The server disconnected a client that broke the protocol.
    ProtocolError,
}

impl LeaveReason {
    /// Short human-readable form.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Quit => "quit",
            LeaveReason::Disconnected => "disconnected",
            LeaveReason::TooSlow => "too slow",
            LeaveReason::ProtocolError => "protocol error",
        }
    }
}

/// A machine-readable error code. A plain number on the wire so that a client can still decode
/// codes added after it was written; [`ErrorCode::name`] gives the documented name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// The client's protocol version is not supported.
    pub const UNSUPPORTED_VERSION: ErrorCode = ErrorCode(1);
    /// A frame could not be decoded (bad length, bad postcard, trailing bytes).
    pub const BAD_FRAME: ErrorCode = ErrorCode(2);
    /// A well-formed message that is not allowed now (e.g. a second `Hello`, or chat before it).
    pub const UNEXPECTED_MESSAGE: ErrorCode = ErrorCode(3);
    /// The nick breaks the nick rules.
    pub const INVALID_NICK: ErrorCode = ErrorCode(10);
    /// Someone online already uses that nick (compared case-insensitively).
    pub const NICK_IN_USE: ErrorCode = ErrorCode(11);
    /// The nick is registered to another client certificate.
    pub const NICK_REGISTERED: ErrorCode = ErrorCode(12);
    /// The client presented no TLS client certificate; this server identifies users by one.
    pub const CERTIFICATE_REQUIRED: ErrorCode = ErrorCode(13);
    /// The same account logged in from another connection, which replaces this one.
    pub const REPLACED: ErrorCode = ErrorCode(14);
    /// The nick is not registered and the server takes no new accounts (it holds its maximum).
    pub const ACCOUNTS_FULL: ErrorCode = ErrorCode(15);
    /// The nick is not registered, and it looks like a registered nick (same
    /// [`crate::confusable::skeleton`]): choose another.
    pub const NICK_LOOKS_LIKE: ErrorCode = ErrorCode(16);
    /// The nick is not registered, and this client certificate or address registered as many
    /// new nicks as the server allows for now; the detail says when to try again.
    pub const REGISTRATION_LIMIT: ErrorCode = ErrorCode(17);
    /// The recipient of a private message is not online.
    pub const NO_SUCH_NICK: ErrorCode = ErrorCode(20);
    /// The text is longer than the server's limit.
    pub const TEXT_TOO_LONG: ErrorCode = ErrorCode(21);
    /// The text is empty or holds control characters.
    pub const INVALID_TEXT: ErrorCode = ErrorCode(22);
    /// A relay payload is empty or larger than [`MAX_RELAY_LEN`].
    pub const BAD_PAYLOAD: ErrorCode = ErrorCode(23);
    /// The offline recipient has as many stored messages waiting as the server keeps.
    pub const MAILBOX_FULL: ErrorCode = ErrorCode(24);
    /// The client did not read its messages fast enough and is being disconnected.
    pub const TOO_SLOW: ErrorCode = ErrorCode(30);
    /// The client was silent for too long (no hello, no pong).
    pub const TIMEOUT: ErrorCode = ErrorCode(31);
    /// The client sends faster than the server allows.
    pub const RATE_LIMITED: ErrorCode = ErrorCode(32);
    /// The server holds as many connections as it allows.
    pub const SERVER_FULL: ErrorCode = ErrorCode(33);
    /// The server is shutting down and accepts no more messages.
    pub const SHUTTING_DOWN: ErrorCode = ErrorCode(34);
    /// The server cannot take the message right now (its store is behind); try again.
    pub const BUSY: ErrorCode = ErrorCode(35);
    /// The server failed internally; not the client's fault.
    pub const INTERNAL: ErrorCode = ErrorCode(99);

    /// The documented name of the code, or `"unknown"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::UNSUPPORTED_VERSION => "unsupported-version",
            Self::BAD_FRAME => "bad-frame",
            Self::UNEXPECTED_MESSAGE => "unexpected-message",
            Self::INVALID_NICK => "invalid-nick",
            Self::NICK_IN_USE => "nick-in-use",
            Self::NICK_REGISTERED => "nick-registered",
            Self::CERTIFICATE_REQUIRED => "certificate-required",
            Self::REPLACED => "replaced",
            Self::ACCOUNTS_FULL => "accounts-full",
            Self::NICK_LOOKS_LIKE => "nick-looks-like",
            Self::REGISTRATION_LIMIT => "registration-limit",
            Self::NO_SUCH_NICK => "no-such-nick",
            Self::TEXT_TOO_LONG => "text-too-long",
            Self::INVALID_TEXT => "invalid-text",
            Self::BAD_PAYLOAD => "bad-payload",
            Self::MAILBOX_FULL => "mailbox-full",
            Self::TOO_SLOW => "too-slow",
            Self::TIMEOUT => "timeout",
            Self::RATE_LIMITED => "rate-limited",
            Self::SERVER_FULL => "server-full",
            Self::SHUTTING_DOWN => "shutting-down",
            Self::BUSY => "busy",
            Self::INTERNAL => "internal",
            _ => "unknown",
        }
    }
}

impl std::fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A payload that is not a valid message. The messages are the `bad-frame` details the server
/// sends (PROTOCOL.md, "Error details"): the protocol's own words, never the decoder's, so that
/// what a peer reads does not depend on the library that decoded it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload does not start with a message type (a varint that ends).
    #[error("malformed frame: the message type is not a valid number")]
    BadType,
    /// The message type is not one of this protocol's (a newer peer, or garbage).
    #[error("unknown message type {0}")]
    UnknownType(u64),
    /// The type is known but the rest is not that message.
    #[error("malformed frame: the {kind} message does not decode ({why})")]
    Body {
        /// The message type's name (`Hello`, `Public`, ...).
        kind: &'static str,
        /// What is wrong with it, in a few words.
        why: &'static str,
    },
    /// A message decoded but bytes were left over; a frame holds exactly one message.
    #[error("malformed frame: {} after the end of the message", bytes(*.0))]
    TrailingBytes(usize),
    /// The message is not in its one canonical encoding (e.g. an overlong varint). postcard
    /// would accept it, but every message has exactly one valid encoding, so that nothing can
    /// be smuggled in alternative forms (found by fuzzing).
    #[error("malformed frame: the message is not in its one canonical encoding (a number or length with needless extra bytes)")]
    NonCanonical,
}

/// `1 byte`, `3 bytes`.
fn bytes(n: usize) -> String {
    if n == 1 {
        "1 byte".into()
    } else {
        format!("{n} bytes")
    }
}

/// What a postcard failure means for a message body, in the protocol's words.
fn body_fault(e: &postcard::Error) -> &'static str {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => "it ends too early",
        postcard::Error::DeserializeBadVarint => "a number is malformed",
        postcard::Error::DeserializeBadBool => "a true/false field is not 0 or 1",
        postcard::Error::DeserializeBadUtf8 | postcard::Error::DeserializeBadChar => {
            "a text is not valid UTF-8"
        }
        postcard::Error::DeserializeBadOption | postcard::Error::DeserializeBadEnum => {
            "a field holds an unknown value"
        }
        // An unknown variant of an enum field (e.g. a `LeaveReason`) comes back as serde's
        // custom error.
        postcard::Error::SerdeDeCustom => "a field holds an unknown value",
        _ => "its fields do not decode",
    }
}

/// Reads the variant index that starts a postcard enum (a `u32` varint, at most 5 bytes):
/// `None` when the varint does not end within 5 bytes of the payload or does not fit a `u32`
/// (`ff ff ff ff ff ff ff ff ff 7f` was read as type 18446744073709551615).
fn leading_varint(payload: &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    for (i, &byte) in payload.iter().enumerate().take(5) {
        // At most 35 bits: no shift loses anything.
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (value <= u64::from(u32::MAX)).then_some(value);
        }
    }
    None
}

fn decode_exact<'a, T: Deserialize<'a> + Serialize>(
    payload: &'a [u8],
    kinds: &[&'static str],
) -> Result<T, DecodeError> {
    let index = leading_varint(payload).ok_or(DecodeError::BadType)?;
    let kind = usize::try_from(index)
        .ok()
        .and_then(|i| kinds.get(i))
        .copied()
        .ok_or(DecodeError::UnknownType(index))?;
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(|e| DecodeError::Body {
        kind,
        why: body_fault(&e),
    })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    // Re-encode and compare: a short, allocation-once check next to the TLS work per frame.
    // (Encoding what was just decoded does not fail; if it did, the payload is not canonical.)
    let canonical = postcard::to_allocvec(&msg).map_err(|_| DecodeError::NonCanonical)?;
    if canonical != payload {
        return Err(DecodeError::NonCanonical);
    }
    Ok(msg)
}

impl ClientMsg {
    /// Decodes one frame payload.
    ///
    /// # Errors
    /// [`DecodeError`] if the payload is not exactly one `ClientMsg`.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        decode_exact(payload, &Self::KINDS)
    }

    /// The message types' names, by their number on the wire (for error details).
    pub const KINDS: [&'static str; 10] = [
        "Hello", "Public", "Private", "Who", "Ping", "Pong", "Quit", "Relay", "Received", "Monitor",
    ];
}

impl ServerMsg {
    /// Decodes one frame payload.
    ///
    /// # Errors
    /// [`DecodeError`] if the payload is not exactly one `ServerMsg`.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        decode_exact(payload, &Self::KINDS)
    }

    /// The message types' names, by their number on the wire (for error details).
    pub const KINDS: [&'static str; 16] = [
        "Welcome", "Users", "Public", "Private", "Sent", "Joined", "Left", "Error", "Shutdown",
        "Ping", "Pong", "Relay", "History", "Queued", "Offline", "Presence",
    ];
}

/// Why a nick is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NickError {
    /// Empty.
    #[error("a nick cannot be empty")]
    Empty,
    /// Over [`MAX_NICK_LEN`] characters.
    #[error("a nick is at most {MAX_NICK_LEN} characters")]
    TooLong,
    /// Starts with something other than an ASCII letter.
    #[error("a nick must start with a letter (a-z, A-Z)")]
    BadStart,
    /// Holds a character outside `A-Z a-z 0-9 _ -`.
    #[error("a nick may only hold letters a-z, A-Z, digits, '_' and '-'")]
    BadChar,
}

/// Checks the nick rules: 1 to [`MAX_NICK_LEN`] characters, an ASCII letter first, then ASCII
/// letters, digits, `_` or `-`. This set is safe to show in any terminal and in file names.
///
/// # Errors
/// The first rule broken.
pub fn validate_nick(nick: &str) -> Result<(), NickError> {
    let first = nick.chars().next().ok_or(NickError::Empty)?;
    if nick.len() > MAX_NICK_LEN {
        return Err(NickError::TooLong);
    }
    if !first.is_ascii_alphabetic() {
        return Err(NickError::BadStart);
    }
    if !nick
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(NickError::BadChar);
    }
    Ok(())
}

/// The form under which nicks are compared: `Alice`, `ALICE` and `alice` are the same user.
/// Only meaningful for nicks that passed [`validate_nick`] (ASCII), where lowercasing is exact.
pub fn nick_key(nick: &str) -> String {
    nick.to_ascii_lowercase()
}

/// Why a text is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// Empty.
    #[error("empty message")]
    Empty,
    /// Longer than the limit.
    #[error("message of {len} bytes is over the limit of {max} bytes")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// Holds a control character (newline, escape, NUL…): one message is one line, and terminal
    /// escape sequences from other users must never reach a terminal.
    #[error("message holds a control character")]
    ControlChar,
    /// Holds a character that can end a line in some readers, reorder it, or hide text (a line
    /// separator, a bidi override, an invisible format character…; see [`crate::text`]).
    #[error(
        "message holds U+{code:04X}, {what}: characters that can break a line, reorder it or hide text are refused",
        code = u32::from(*.0),
        what = crate::text::describe(*.0)
    )]
    UnsafeChar(char),
}

/// Checks a chat text: not empty, at most `max_len` bytes (never more than [`MAX_TEXT_LEN`]),
/// no control characters (Unicode category Cc, which includes `\n`, `\r`, `\t`, ESC, NUL) and
/// none of the other characters [`crate::text`] refuses (U+2028, U+2029, bidi embeddings,
/// overrides and isolates, invisible format characters, tags outside a flag).
///
/// # Errors
/// The first rule broken.
pub fn validate_text(text: &str, max_len: usize) -> Result<(), TextError> {
    let max = max_len.min(MAX_TEXT_LEN);
    if text.is_empty() {
        return Err(TextError::Empty);
    }
    if text.len() > max {
        return Err(TextError::TooLong {
            len: text.len(),
            max,
        });
    }
    match crate::text::find_forbidden(text) {
        None => Ok(()),
        Some((_, c)) if c.is_control() => Err(TextError::ControlChar),
        Some((_, c)) => Err(TextError::UnsafeChar(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;

    fn roundtrip_server(msg: ServerMsg) {
        let bytes = frame::encode(&msg).unwrap();
        let len = frame::check(&bytes).unwrap();
        assert_eq!(len + frame::HEADER_LEN, bytes.len());
        assert_eq!(ServerMsg::decode(&bytes[frame::HEADER_LEN..]).unwrap(), msg);
    }

    #[test]
    fn every_server_message_round_trips() {
        for msg in [
            ServerMsg::Welcome {
                nick: "a".into(),
                server: "s".into(),
                online: 3,
                max_text_len: 9,
                rate_burst: 20,
                rate_per_sec: 5,
            },
            ServerMsg::Users {
                nicks: vec!["a".into(), "b".into()],
                last: true,
            },
            ServerMsg::Public {
                id: 1,
                ts: 2,
                from: "a".into(),
                text: "hé".into(),
            },
            ServerMsg::Private {
                id: u64::MAX,
                ts: 2,
                from: "a".into(),
                text: "x".into(),
            },
            ServerMsg::Sent { id: 5, ts: 6 },
            ServerMsg::Joined {
                ts: 1,
                nick: "b".into(),
            },
            ServerMsg::Left {
                ts: 1,
                nick: "b".into(),
                reason: LeaveReason::TooSlow,
            },
            ServerMsg::Error {
                code: ErrorCode(777),
                fatal: true,
                detail: "d".into(),
            },
            ServerMsg::Shutdown {
                reason: "bye".into(),
            },
            ServerMsg::Ping { token: 9 },
            ServerMsg::Pong { token: 9 },
            ServerMsg::Relay {
                id: 1,
                ts: 2,
                from: "a".into(),
                payload: vec![0, 255, 7],
            },
            ServerMsg::History {
                id: 3,
                ts: 4,
                from: "c".into(),
                text: "old".into(),
            },
            ServerMsg::Queued { id: 7, ts: 8 },
            ServerMsg::Offline {
                id: 5,
                ts: 6,
                from: "d".into(),
                text: "while you were away".into(),
            },
        ] {
            roundtrip_server(msg);
        }
    }

    #[test]
    fn every_client_message_round_trips() {
        for msg in [
            ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                nick: "alice".into(),
            },
            ClientMsg::Public { text: "hi".into() },
            ClientMsg::Private {
                to: "bob".into(),
                text: "psst".into(),
            },
            ClientMsg::Who,
            ClientMsg::Ping { token: 1 },
            ClientMsg::Pong { token: 2 },
            ClientMsg::Quit,
            ClientMsg::Relay {
                to: "b".into(),
                payload: vec![1, 2, 3],
            },
            ClientMsg::Received { up_to: 300 },
        ] {
            let bytes = frame::encode(&msg).unwrap();
            assert_eq!(ClientMsg::decode(&bytes[frame::HEADER_LEN..]).unwrap(), msg);
        }
    }

    #[test]
    fn wire_layout_is_stable() {
        // PROTOCOL.md documents these bytes; changing them breaks other clients.
        let hello = ClientMsg::Hello {
            version: 1,
            nick: "bob".into(),
        };
        assert_eq!(
            &frame::encode(&hello).unwrap()[..],
            &[0, 0, 0, 6, 0, 1, 3, b'b', b'o', b'b']
        );
        let public = ClientMsg::Public { text: "hi".into() };
        assert_eq!(
            &frame::encode(&public).unwrap()[..],
            &[0, 0, 0, 4, 1, 2, b'h', b'i']
        );
        let err = ServerMsg::Error {
            code: ErrorCode::NO_SUCH_NICK,
            fatal: false,
            detail: String::new(),
        };
        assert_eq!(
            &frame::encode(&err).unwrap()[..],
            &[0, 0, 0, 4, 7, 20, 0, 0]
        );
        let received = ClientMsg::Received { up_to: 300 };
        assert_eq!(
            &frame::encode(&received).unwrap()[..],
            &[0, 0, 0, 3, 8, 0xac, 0x02]
        );
        let queued = ServerMsg::Queued { id: 1, ts: 2 };
        assert_eq!(
            &frame::encode(&queued).unwrap()[..],
            &[0, 0, 0, 3, 13, 1, 2]
        );
        let monitor = ClientMsg::Monitor {
            nicks: vec!["bob".into()],
        };
        assert_eq!(
            &frame::encode(&monitor).unwrap()[..],
            &[0, 0, 0, 6, 9, 1, 3, b'b', b'o', b'b']
        );
        let presence = ServerMsg::Presence {
            nick: "bob".into(),
            online: true,
        };
        assert_eq!(
            &frame::encode(&presence).unwrap()[..],
            &[0, 0, 0, 6, 15, 3, b'b', b'o', b'b', 1]
        );
    }

    #[test]
    fn trailing_bytes_and_garbage_are_rejected() {
        let bytes = frame::encode(&ClientMsg::Who).unwrap();
        let mut payload = bytes[frame::HEADER_LEN..].to_vec();
        payload.push(0);
        assert!(matches!(
            ClientMsg::decode(&payload),
            Err(DecodeError::TrailingBytes(1))
        ));
        assert!(ClientMsg::decode(&[200]).is_err()); // unknown variant
        assert!(ClientMsg::decode(&[1, 5, b'a']).is_err()); // string shorter than its length
        assert!(ClientMsg::decode(&[1, 2, 0xff, 0xfe]).is_err()); // invalid UTF-8
        assert!(ClientMsg::decode(&[]).is_err());
    }

    #[test]
    fn decode_errors_say_what_is_wrong_in_the_protocols_words() {
        // Every detail the server sends for an undecodable payload (PROTOCOL.md, "Error
        // details"): never the decoder's own words ("Serde Deserialization Error", "Found a
        // varint that didn't terminate", "Hit the end of buffer").
        for (payload, detail) in [
            (&[42][..], "unknown message type 42"),
            (&[0xac, 0x02][..], "unknown message type 300"),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f][..],
                "malformed frame: the message type is not a valid number",
            ),
            (
                &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02][..],
                "malformed frame: the message type is not a valid number",
            ),
            (
                &[0xff, 0xff, 0xff, 0xff, 0x1f][..],
                "malformed frame: the message type is not a valid number",
            ),
            (&[0x80][..], "malformed frame: the message type is not a valid number"),
            (&[][..], "malformed frame: the message type is not a valid number"),
            (
                &[1, 5, b'a'][..],
                "malformed frame: the Public message does not decode (it ends too early)",
            ),
            (
                &[1, 2, 0xff, 0xfe][..],
                "malformed frame: the Public message does not decode (a text is not valid UTF-8)",
            ),
            (
                &[4, 0xff, 0xff][..],
                "malformed frame: the Ping message does not decode (it ends too early)",
            ),
            (
                &[4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..],
                "malformed frame: the Ping message does not decode (a number is malformed)",
            ),
            (
                &[3, 0][..],
                "malformed frame: 1 byte after the end of the message",
            ),
            (
                &[6, 0, 0][..],
                "malformed frame: 2 bytes after the end of the message",
            ),
            (
                &[0x00, 0x82, 0x00, 0x00][..],
                "malformed frame: the message is not in its one canonical encoding (a number or length with needless extra bytes)",
            ),
        ] {
            let e = ClientMsg::decode(payload).unwrap_err();
            assert_eq!(e.to_string(), detail, "{payload:?}");
        }
        for (payload, detail) in [
            (&[16][..], "unknown message type 16"),
            (
                &[6, 1, 1, b'a', 9][..],
                "malformed frame: the Left message does not decode (a field holds an unknown value)",
            ),
            (
                &[15, 1, b'a', 2][..],
                "malformed frame: the Presence message does not decode (a true/false field is not 0 or 1)",
            ),
        ] {
            let e = ServerMsg::decode(payload).unwrap_err();
            assert_eq!(e.to_string(), detail, "{payload:?}");
        }
    }

    #[test]
    fn the_kind_names_follow_the_variant_numbers() {
        let clients = [
            ClientMsg::Hello {
                version: 1,
                nick: "a".into(),
            },
            ClientMsg::Public { text: "x".into() },
            ClientMsg::Private {
                to: "a".into(),
                text: "x".into(),
            },
            ClientMsg::Who,
            ClientMsg::Ping { token: 1 },
            ClientMsg::Pong { token: 1 },
            ClientMsg::Quit,
            ClientMsg::Relay {
                to: "a".into(),
                payload: vec![1],
            },
            ClientMsg::Received { up_to: 1 },
            ClientMsg::Monitor {
                nicks: vec!["a".into()],
            },
        ];
        assert_eq!(clients.len(), ClientMsg::KINDS.len());
        for msg in clients {
            let bytes = postcard::to_allocvec(&msg).unwrap();
            let name = format!("{msg:?}");
            assert!(
                name.split([' ', '{']).next() == Some(ClientMsg::KINDS[usize::from(bytes[0])]),
                "{name}"
            );
        }
        let servers = [
            ServerMsg::Welcome {
                nick: "a".into(),
                server: "s".into(),
                online: 1,
                max_text_len: 1,
                rate_burst: 1,
                rate_per_sec: 1,
            },
            ServerMsg::Users {
                nicks: vec![],
                last: true,
            },
            ServerMsg::Public {
                id: 1,
                ts: 1,
                from: "a".into(),
                text: "x".into(),
            },
            ServerMsg::Private {
                id: 1,
                ts: 1,
                from: "a".into(),
                text: "x".into(),
            },
            ServerMsg::Sent { id: 1, ts: 1 },
            ServerMsg::Joined {
                ts: 1,
                nick: "a".into(),
            },
            ServerMsg::Left {
                ts: 1,
                nick: "a".into(),
                reason: LeaveReason::Quit,
            },
            ServerMsg::Error {
                code: ErrorCode::BUSY,
                fatal: false,
                detail: String::new(),
            },
            ServerMsg::Shutdown {
                reason: String::new(),
            },
            ServerMsg::Ping { token: 1 },
            ServerMsg::Pong { token: 1 },
            ServerMsg::Relay {
                id: 1,
                ts: 1,
                from: "a".into(),
                payload: vec![1],
            },
            ServerMsg::History {
                id: 1,
                ts: 1,
                from: "a".into(),
                text: "x".into(),
            },
            ServerMsg::Queued { id: 1, ts: 1 },
            ServerMsg::Offline {
                id: 1,
                ts: 1,
                from: "a".into(),
                text: "x".into(),
            },
            ServerMsg::Presence {
                nick: "a".into(),
                online: true,
            },
        ];
        assert_eq!(servers.len(), ServerMsg::KINDS.len());
        for msg in servers {
            let bytes = postcard::to_allocvec(&msg).unwrap();
            let name = format!("{msg:?}");
            assert!(
                name.split([' ', '{']).next() == Some(ServerMsg::KINDS[usize::from(bytes[0])]),
                "{name}"
            );
        }
    }

    #[test]
    fn only_the_canonical_encoding_is_accepted() {
        // Found by the client_msg fuzz target: Hello with version 2 as an overlong varint.
        assert!(matches!(
            ClientMsg::decode(&[0x00, 0x82, 0x00, 0x00]),
            Err(DecodeError::NonCanonical)
        ));
        assert_eq!(
            ClientMsg::decode(&[0x00, 0x02, 0x00]).unwrap(),
            ClientMsg::Hello {
                version: 2,
                nick: String::new()
            }
        );
        // Found by the server_msg fuzz target.
        assert!(ServerMsg::decode(&[0x04, 0x1b, 0xf9, 0x00]).is_err());
        // An overlong string length.
        assert!(matches!(
            ClientMsg::decode(&[0x01, 0x81, 0x00, b'x']),
            Err(DecodeError::NonCanonical)
        ));
    }

    #[test]
    fn nick_rules() {
        for ok in ["a", "Alice", "bob_2", "x-y", &"a".repeat(MAX_NICK_LEN)] {
            assert_eq!(validate_nick(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_nick(""), Err(NickError::Empty));
        assert_eq!(
            validate_nick(&"a".repeat(MAX_NICK_LEN + 1)),
            Err(NickError::TooLong)
        );
        assert_eq!(validate_nick("1abc"), Err(NickError::BadStart));
        assert_eq!(validate_nick("_abc"), Err(NickError::BadStart));
        assert_eq!(validate_nick("é"), Err(NickError::BadStart));
        for bad in ["a b", "a\u{1b}[31m", "ali\u{e9}", "a.b", "a\n", "a/b"] {
            assert_eq!(validate_nick(bad), Err(NickError::BadChar), "{bad:?}");
        }
        assert_eq!(nick_key("AlIce"), "alice");
    }

    #[test]
    fn text_rules() {
        assert_eq!(validate_text("hello, wörld 👋", MAX_TEXT_LEN), Ok(()));
        assert_eq!(validate_text("", MAX_TEXT_LEN), Err(TextError::Empty));
        assert_eq!(
            validate_text(&"x".repeat(MAX_TEXT_LEN), MAX_TEXT_LEN),
            Ok(())
        );
        assert_eq!(
            validate_text(&"x".repeat(MAX_TEXT_LEN + 1), usize::MAX),
            Err(TextError::TooLong {
                len: MAX_TEXT_LEN + 1,
                max: MAX_TEXT_LEN
            })
        );
        assert_eq!(
            validate_text("abcd", 3),
            Err(TextError::TooLong { len: 4, max: 3 })
        );
        for bad in [
            "a\nb",
            "a\rb",
            "\u{1b}[2J",
            "nul\0",
            "tab\t",
            "\u{7f}",
            "\u{85}",
        ] {
            assert_eq!(
                validate_text(bad, MAX_TEXT_LEN),
                Err(TextError::ControlChar),
                "{bad:?}"
            );
        }
        let forged = "ok\u{2028}[secure] <bob> yes, send it to account 42";
        let err = validate_text(forged, MAX_TEXT_LEN).unwrap_err();
        assert_eq!(err, TextError::UnsafeChar('\u{2028}'));
        assert_eq!(
            err.to_string(),
            "message holds U+2028, a line separator: characters that can break a line, reorder it or hide text are refused"
        );
        for bad in ["\u{202E}", "\u{2066}x", "a\u{FEFF}", "\u{E0041}"] {
            assert!(
                matches!(
                    validate_text(bad, MAX_TEXT_LEN),
                    Err(TextError::UnsafeChar(_))
                ),
                "{bad:?}"
            );
        }
        for good in ["\u{200F}שלום\u{200E}", "\u{627}\u{61C}"] {
            assert_eq!(validate_text(good, MAX_TEXT_LEN), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn error_codes_have_names_and_unknown_ones_survive() {
        assert_eq!(ErrorCode::NICK_IN_USE.name(), "nick-in-use");
        assert_eq!(ErrorCode(4242).name(), "unknown");
        assert_eq!(format!("{:?}", ErrorCode(20)), "no-such-nick(20)");
    }
}
