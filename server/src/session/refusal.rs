//! Every refusal a session sends, as one [`Refusal`] per kind, and the one place
//! ([`Refusal::wire`]) that gives each its [`ErrorCode`] and detail text. PROTOCOL.md ("Error
//! details") and `tests/e2e/hostile.rs` quote these details: change them there too.

use mm_common::prekeys::KeyUploadError;
use mm_common::protocol::{self, ErrorCode, ServerMsg, TextError, PROTOCOL_VERSION};

use crate::hub::SendError;

/// Why the server refused something a client sent, or ended its session. Whether it is fatal is
/// decided where it is sent, not here ([`Refusal::fatal`], [`Refusal::answer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Refusal {
    // The connection and its frames.
    /// Not a message: a bad frame, a connection cut inside one, or an undecodable payload
    /// (`bad-frame`, with the reader's or decoder's words).
    BadFrame(String),
    /// No `Hello` within the hello timeout (`timeout`).
    NoHello,
    /// Silent for this many seconds, past the idle timeout (`timeout`).
    Idle { secs: u64 },
    /// The first message was not `Hello` (`unexpected-message`).
    NotHello,
    /// A second `Hello` (`unexpected-message`).
    AlreadyLoggedIn,
    /// `Monitor` with no nick or more than a frame may hold (`bad-frame`).
    MonitorCount,

    // Login.
    /// `Hello` with another protocol version (`unsupported-version`).
    UnsupportedVersion { version: u16 },
    /// The nick in `Hello` is not a nick (`invalid-nick`, with the validator's words).
    InvalidNick(String),
    /// No TLS client certificate (`certificate-required`).
    CertificateRequired,
    /// A `KeyProof` that is not the account key's signature of the challenge
    /// (`certificate-required`: no credential was proven).
    KeyProofInvalid,
    /// No `KeyProof` within the hello timeout after `Challenge` (`timeout`).
    NoKeyProof,
    /// The store could not read the accounts (`busy`).
    AccountsUnchecked,
    /// The store could not complete the login (`busy`).
    LoginNotCompleted,
    /// The nick is registered to another certificate (`nick-registered`).
    NickRegistered { nick: String },
    /// The nick is new and the server takes no new accounts (`accounts-full`).
    AccountsFull { nick: String },
    /// The nick looks like a registered one (`nick-looks-like`).
    NickLooksLike { nick: String, other: String },
    /// The account changed between the check and the login (`busy`).
    AccountChanged { nick: String },
    /// The store refused a login it admits: a server bug (`internal`).
    LoginRefusedForNoReason,
    /// Registering the nick would pass a registration limit (`registration-limit`, with the
    /// limit's words).
    RegistrationLimit { nick: String, over: String },
    /// The nick is online with another certificate (`nick-in-use`).
    NickInUse { nick: String },
    /// The cluster could not give this node the nick now (its other session is still ending
    /// on another node, or the cluster's database did not answer): try again.
    Cluster(crate::cluster::ClaimError),

    // Chat.
    /// Over the message rate (`rate-limited`; not fatal).
    RateLimited,
    /// Over the message rate too often (`rate-limited`; fatal).
    Flooding,
    /// A chat text the protocol refuses (`text-too-long` or `invalid-text`, with the
    /// validator's words).
    TextRefused(TextError),
    /// A recipient that is not a valid nick (`no-such-nick`; echoed only if it is shown whole).
    InvalidRecipient { to: String },
    /// A line for a room whose name breaks the room rules (`invalid-room`).
    InvalidRoom(protocol::RoomNameError),
    /// A relay payload empty or too long (`bad-payload`).
    PayloadLength,
    /// The hub could not take a line (`no-such-nick`, `shutting-down`, `busy` or `internal`,
    /// with the hub's words).
    Send(SendError),
    /// A public line was not stored (`busy`).
    PublicNotStored,
    /// A personal line was not stored (`busy`).
    PrivateNotStored,
    /// The offline recipient's mailbox holds `max` lines (`mailbox-full`).
    MailboxFull { to: String, max: usize },
    /// All mailboxes together hold `max` lines (`mailbox-full`).
    StoreFull { to: String, max: usize },
    /// The recipient is offline and not registered (`no-such-nick`).
    NoSuchAccount { to: String },
    /// The store stopped answering while lines were owed an answer (`busy`; fatal).
    StoreSilent,
    /// One node of several: the cluster's bus (NATS) did not order a line in time.
    BusSilent,
    /// The client fell too far behind (`too-slow`).
    TooSlow,
    /// The account logged in on another connection (`replaced`).
    Replaced,

    // The key directory.
    /// A `PublishKeys` whose keys break the rules (`bad-keys`, with the rule's words).
    BadKeys(KeyUploadError),
    /// The store could not take or store published keys (`busy`).
    KeysNotStored,
}

impl Refusal {
    /// The code and detail text sent for this refusal: the one mapping from refusals to the wire.
    /// Names a client sent (recipients) are shown only as [`protocol_safe`] makes them.
    pub(crate) fn wire(&self) -> (ErrorCode, String) {
        match self {
            Refusal::BadFrame(why) => (ErrorCode::BAD_FRAME, why.clone()),
            Refusal::NoHello => (ErrorCode::TIMEOUT, "no hello received in time".into()),
            Refusal::NoKeyProof => (
                ErrorCode::TIMEOUT,
                "no answer to the login challenge received in time".into(),
            ),
            Refusal::Idle { secs } => (ErrorCode::TIMEOUT, format!("no answer for {secs} s")),
            Refusal::NotHello => (
                ErrorCode::UNEXPECTED_MESSAGE,
                "the first message must be Hello (or KeyHello)".into(),
            ),
            Refusal::AlreadyLoggedIn => {
                (ErrorCode::UNEXPECTED_MESSAGE, "already logged in".into())
            }
            Refusal::MonitorCount => (
                ErrorCode::BAD_FRAME,
                format!(
                    "monitor takes 1 to {} nicks",
                    protocol::MONITOR_PER_FRAME
                ),
            ),
            Refusal::UnsupportedVersion { version } => (
                ErrorCode::UNSUPPORTED_VERSION,
                if *version < PROTOCOL_VERSION {
                    format!("this server speaks protocol version {PROTOCOL_VERSION}, not {version}: upgrade your client (mm) to one that speaks version {PROTOCOL_VERSION}")
                } else {
                    format!("this server speaks protocol version {PROTOCOL_VERSION}, not {version}: the client is newer than the server; ask its operator to upgrade mm-server")
                },
            ),
            Refusal::InvalidNick(why) => (ErrorCode::INVALID_NICK, why.clone()),
            Refusal::KeyProofInvalid => (
                ErrorCode::CERTIFICATE_REQUIRED,
                "the account key's proof does not verify: the signature is not that key's signature of the challenge"
                    .into(),
            ),
            Refusal::CertificateRequired => (
                ErrorCode::CERTIFICATE_REQUIRED,
                "this server identifies users by a TLS client certificate and none was presented"
                    .into(),
            ),
            Refusal::AccountsUnchecked => (
                ErrorCode::BUSY,
                "the server cannot check accounts right now; try again".into(),
            ),
            Refusal::LoginNotCompleted => (
                ErrorCode::BUSY,
                "the server cannot complete your login right now (its store is busy); try again"
                    .into(),
            ),
            Refusal::NickRegistered { nick } => (
                ErrorCode::NICK_REGISTERED,
                format!("nick {nick} is registered to another key (another mm client certificate or web browser key)"),
            ),
            Refusal::AccountsFull { nick } => (
                ErrorCode::ACCOUNTS_FULL,
                format!("nick {nick} is not registered and this server takes no new accounts (it holds its maximum); ask its operator"),
            ),
            Refusal::NickLooksLike { nick, other } => (
                ErrorCode::NICK_LOOKS_LIKE,
                format!("nick {nick} looks like the registered nick {other}; choose another"),
            ),
            Refusal::AccountChanged { nick } => (
                ErrorCode::BUSY,
                format!("the account {nick} changed while you logged in (released or expired); log in again"),
            ),
            Refusal::LoginRefusedForNoReason => (
                ErrorCode::INTERNAL,
                "login refused for no reason (a server bug)".into(),
            ),
            Refusal::RegistrationLimit { nick, over } => (
                ErrorCode::REGISTRATION_LIMIT,
                format!("cannot register the new nick {nick}: {over}"),
            ),
            Refusal::NickInUse { nick } => {
                (ErrorCode::NICK_IN_USE, format!("{nick} is already online"))
            }
            Refusal::Cluster(e) => (ErrorCode::BUSY, e.to_string()),
            Refusal::RateLimited => (
                ErrorCode::RATE_LIMITED,
                "too many messages; slow down".into(),
            ),
            Refusal::Flooding => (
                ErrorCode::RATE_LIMITED,
                "disconnected for flooding".into(),
            ),
            Refusal::TextRefused(e) => {
                let code = match e {
                    TextError::TooLong { .. } => ErrorCode::TEXT_TOO_LONG,
                    _ => ErrorCode::INVALID_TEXT,
                };
                (code, e.to_string())
            }
            Refusal::InvalidRoom(e) => (ErrorCode::INVALID_ROOM, e.to_string()),
            Refusal::InvalidRecipient { to } => (
                ErrorCode::NO_SUCH_NICK,
                // Echoed only when it can be shown whole: cut or cleaned, `aaa…(600)` would come
                // back as a 32-character nick that IS valid.
                if protocol_safe(to) == *to {
                    format!("{to} is not a valid nick")
                } else {
                    format!(
                        "the recipient is not a valid nick ({} bytes; a nick is 1-{} of a-z A-Z 0-9 _ -, starting with a letter)",
                        to.len(),
                        protocol::MAX_NICK_LEN
                    )
                },
            ),
            Refusal::PayloadLength => (
                ErrorCode::BAD_PAYLOAD,
                format!(
                    "relay payload must be 1 to {} bytes",
                    protocol::MAX_RELAY_LEN
                ),
            ),
            Refusal::Send(e) => {
                let code = match e {
                    SendError::NoSuchNick(_) | SendError::RecipientTooSlow(_) => {
                        ErrorCode::NO_SUCH_NICK
                    }
                    SendError::Closed => ErrorCode::SHUTTING_DOWN,
                    SendError::Replaced => ErrorCode::REPLACED,
                    SendError::Busy => ErrorCode::BUSY,
                    SendError::NoSuchRoom(_) => ErrorCode::NO_SUCH_ROOM,
                    SendError::NotInRoom(_) => ErrorCode::NOT_IN_ROOM,
                    SendError::Moderated(_) => ErrorCode::MODERATED,
                    _ => ErrorCode::INTERNAL,
                };
                (code, e.to_string())
            }
            Refusal::PublicNotStored => (
                ErrorCode::BUSY,
                "the server could not store the message (those online may have seen it); try again"
                    .into(),
            ),
            Refusal::PrivateNotStored => (
                ErrorCode::BUSY,
                "the server could not store the message; try again".into(),
            ),
            Refusal::MailboxFull { to, max } => (
                ErrorCode::MAILBOX_FULL,
                format!(
                    "{} is offline and has as many messages waiting as the server keeps for one user ({max})",
                    protocol_safe(to)
                ),
            ),
            Refusal::StoreFull { to, max } => (
                ErrorCode::MAILBOX_FULL,
                format!(
                    "{} is offline and the server keeps no more waiting messages right now (its limit is {max} for all users together)",
                    protocol_safe(to)
                ),
            ),
            Refusal::NoSuchAccount { to } => (
                ErrorCode::NO_SUCH_NICK,
                format!("{} is not online and not a registered user", protocol_safe(to)),
            ),
            Refusal::BusSilent => (
                ErrorCode::BUSY,
                "the cluster's message bus is not answering: lines not acknowledged may still be delivered once it is back (look before sending them again)"
                    .into(),
            ),
            Refusal::StoreSilent => (
                ErrorCode::BUSY,
                "the server's store is not answering; messages not acknowledged may not have been kept"
                    .into(),
            ),
            Refusal::TooSlow => (
                ErrorCode::TOO_SLOW,
                "you did not read messages fast enough".into(),
            ),
            Refusal::Replaced => (
                ErrorCode::REPLACED,
                "you logged in again from another connection".into(),
            ),
            Refusal::BadKeys(e) => (ErrorCode::BAD_KEYS, e.to_string()),
            Refusal::KeysNotStored => (
                ErrorCode::BUSY,
                "the server could not store your keys right now; publish them again".into(),
            ),
        }
    }

    /// The code alone (from [`Refusal::wire`]).
    pub(crate) fn code(&self) -> ErrorCode {
        self.wire().0
    }

    /// The error that ends the session.
    pub(crate) fn fatal(&self) -> ServerMsg {
        self.error(true)
    }

    /// The error that answers one message; the session goes on.
    pub(crate) fn answer(&self) -> ServerMsg {
        self.error(false)
    }

    /// The answer to a refused `PublishKeys` (its own message: outside the order of line
    /// answers).
    pub(crate) fn keys_refused(&self) -> ServerMsg {
        let (code, detail) = self.wire();
        ServerMsg::KeysRefused { code, detail }
    }

    /// The error that answers a room command about `room` (a valid room name or empty).
    pub(crate) fn room_error(&self, room: &str) -> ServerMsg {
        let (code, detail) = self.wire();
        let room = if protocol::validate_room(room).is_ok() {
            room
        } else {
            ""
        };
        ServerMsg::RoomError {
            room: room.to_owned(),
            code,
            detail,
        }
    }

    fn error(&self, fatal: bool) -> ServerMsg {
        let (code, detail) = self.wire();
        ServerMsg::Error {
            code,
            fatal,
            detail,
        }
    }
}

/// A recipient name echoed in an error: cut to the nick limit and stripped of every character
/// chat text may not hold (`mm_common::text`: controls, line separators, bidi and format
/// controls), so that error details stay short, printable and one line whatever the client sent.
pub(crate) fn protocol_safe(name: &str) -> String {
    name.chars()
        .filter(|&c| !mm_common::text::is_forbidden(c))
        .take(protocol::MAX_NICK_LEN)
        .collect()
}
