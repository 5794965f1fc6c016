//! The login: `Hello`, then the server's `Welcome` and its user list, checked.

use mm_common::protocol::{nick_key, validate_nick, ErrorCode, ServerMsg};

use super::Welcome;

/// Most nicks accepted in one user list: a hostile server could otherwise send `Users` frames
/// without end and grow the list without bound.
pub(crate) const MAX_LISTED_USERS: usize = 1_000_000;

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The server refused the login.
    #[error("server refused the login: {detail} ({code})")]
    Refused {
        /// Error code.
        code: ErrorCode,
        /// Detail from the server.
        detail: String,
    },
    /// The server broke the protocol or closed the connection during login.
    #[error("login failed: {0}")]
    Protocol(String),
    /// The server did not complete the login in the time allowed.
    #[error("the server did not answer the login in time")]
    Timeout,
}

/// A login in progress.
#[derive(Debug)]
pub(crate) struct Login {
    asked: String,
    welcome: Option<Welcome>,
    keep_list: bool,
    listed: usize,
}

/// What one message of the login did.
pub(crate) enum Step {
    /// More to come.
    More,
    /// Logged in.
    Done(Welcome),
}

impl Login {
    /// A login as `asked`; `keep_list`: keep the user list (else only count it).
    pub(crate) fn new(asked: &str, keep_list: bool) -> Login {
        Login {
            asked: asked.to_owned(),
            welcome: None,
            keep_list,
            listed: 0,
        }
    }

    /// Takes one message from the server.
    pub(crate) fn step(&mut self, msg: ServerMsg) -> Result<Step, LoginError> {
        match (msg, self.welcome.as_mut()) {
            (
                ServerMsg::Welcome {
                    nick,
                    server,
                    max_text_len,
                    rate_burst,
                    rate_per_sec,
                    online: online_count,
                },
                None,
            ) => {
                // The nick is who we are to the end-to-end layer: a server that welcomed us as
                // someone else could make a conversation with that someone look like one with
                // ourselves (which goes plain). Only the spelling may differ.
                if nick_key(&nick) != nick_key(&self.asked) || validate_nick(&nick).is_err() {
                    return Err(LoginError::Protocol(format!(
                        "the server welcomed us as {:?}, not as {}",
                        mm_common::text::sanitize(&nick),
                        self.asked
                    )));
                }
                self.welcome = Some(Welcome {
                    nick,
                    server,
                    max_text_len,
                    rate_burst,
                    rate_per_sec,
                    online: Vec::new(),
                    online_count,
                });
                Ok(Step::More)
            }
            (ServerMsg::Users { nicks, last }, Some(w)) => {
                self.listed = self.listed.saturating_add(nicks.len());
                if self.listed > MAX_LISTED_USERS {
                    return Err(LoginError::Protocol(
                        "the server's user list is too long".into(),
                    ));
                }
                // Nicks are 1 to 32 characters: a list of 60,000-byte "nicks" would hold
                // gigabytes within the count.
                if nicks.iter().any(|n| !is_nick_sized(n)) {
                    return Err(LoginError::Protocol(
                        "the server's user list holds something that is not a nick".into(),
                    ));
                }
                if self.keep_list {
                    w.online.extend(nicks);
                }
                if !last {
                    return Ok(Step::More);
                }
                self.welcome
                    .take()
                    .map(Step::Done)
                    .ok_or_else(|| LoginError::Protocol("no welcome".into()))
            }
            (ServerMsg::Error { code, detail, .. }, _) => Err(LoginError::Refused { code, detail }),
            (ServerMsg::Shutdown { reason }, _) => Err(LoginError::Refused {
                code: ErrorCode::SHUTTING_DOWN,
                detail: reason,
            }),
            (other, _) => Err(LoginError::Protocol(format!(
                "unexpected {}",
                variant_name(&other)
            ))),
        }
    }
}

/// Whether `nick` has a nick's size (1 to [`MAX_NICK_LEN`](mm_common::protocol::MAX_NICK_LEN)
/// bytes). Only the size: nicks registered under older rules stay listable.
pub(crate) fn is_nick_sized(nick: &str) -> bool {
    !nick.is_empty() && nick.len() <= mm_common::protocol::MAX_NICK_LEN
}

fn variant_name(msg: &ServerMsg) -> &'static str {
    match msg {
        ServerMsg::Welcome { .. } => "Welcome",
        ServerMsg::Users { .. } => "Users",
        ServerMsg::Public { .. } => "Public",
        ServerMsg::Private { .. } => "Private",
        ServerMsg::Sent { .. } => "Sent",
        ServerMsg::Joined { .. } => "Joined",
        ServerMsg::Left { .. } => "Left",
        ServerMsg::Error { .. } => "Error",
        ServerMsg::Shutdown { .. } => "Shutdown",
        ServerMsg::Ping { .. } => "Ping",
        ServerMsg::Pong { .. } => "Pong",
        ServerMsg::Relay { .. } => "Relay",
        ServerMsg::History { .. } => "History",
        ServerMsg::Queued { .. } => "Queued",
        ServerMsg::Offline { .. } => "Offline",
        ServerMsg::Presence { .. } => "Presence",
        ServerMsg::Entered { .. } => "Entered",
        ServerMsg::Names { .. } => "Names",
        ServerMsg::Rooms { .. } => "Rooms",
        ServerMsg::Parted { .. } => "Parted",
        ServerMsg::Kicked { .. } => "Kicked",
        ServerMsg::Topic { .. } => "Topic",
        ServerMsg::ModeChanged { .. } => "ModeChanged",
        ServerMsg::MemberChanged { .. } => "MemberChanged",
        ServerMsg::Invited { .. } => "Invited",
        ServerMsg::RoomError { .. } => "RoomError",
        ServerMsg::Away { .. } => "Away",
        ServerMsg::KeysPublished { .. } => "KeysPublished",
        ServerMsg::Bundle { .. } => "Bundle",
        ServerMsg::PrekeysLow { .. } => "PrekeysLow",
        ServerMsg::KeysRefused { .. } => "KeysRefused",
        ServerMsg::Challenge { .. } => "Challenge",
    }
}

/// The server's own words (error details, shutdown reasons, its name) are one line of text:
/// whatever could end or reorder a line in them becomes a space, so that a hostile server
/// cannot print lines of its choosing (say, a forged `[secure] <bob> ...`) on our stderr.
/// Users' texts are checked where they are shown.
pub(crate) fn server_words_on_one_line(msg: ServerMsg) -> ServerMsg {
    match msg {
        ServerMsg::Error {
            code,
            fatal,
            detail,
        } => ServerMsg::Error {
            code,
            fatal,
            detail: one_line(detail),
        },
        ServerMsg::Shutdown { reason } => ServerMsg::Shutdown {
            reason: one_line(reason),
        },
        ServerMsg::Welcome {
            nick,
            server,
            online,
            max_text_len,
            rate_burst,
            rate_per_sec,
        } => ServerMsg::Welcome {
            nick,
            server: one_line(server),
            online,
            max_text_len,
            rate_burst,
            rate_per_sec,
        },
        ServerMsg::KeysRefused { code, detail } => ServerMsg::KeysRefused {
            code,
            detail: one_line(detail),
        },
        other => other,
    }
}

/// At most [`MAX_DETAIL_LEN`](mm_common::protocol::MAX_DETAIL_LEN) bytes, as PROTOCOL.md
/// promises (a hostile server sent 60,000), on one line.
fn one_line(text: String) -> String {
    super::rooms::one_line_max(text, mm_common::protocol::MAX_DETAIL_LEN)
}
