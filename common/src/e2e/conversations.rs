//! The saved-conversations file ([`Sessions::conversations_text`](super::Sessions::conversations_text), [`Sessions::restore`](super::Sessions::restore)): one
//! line per secure conversation, so that a secure conversation never turns plain across a
//! restart. Lines: `secure NICK`, `blocked NICK REASON` (REASON one of `decrypt`, `bad-key`,
//! `peer-key`, `peer-decrypt`, `own-key`), `key-changed NICK HEX` (64 hex digits); every line
//! ends with `\n`, at most [`MAX_PEERS`] lines.

use super::config::MAX_PEERS;
use super::error::{AbortReason, Failure};
use crate::identity::KEY_LEN;
use crate::protocol::validate_nick;

/// One saved conversation ([`Sessions::conversations_text`](super::Sessions::conversations_text)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Saved {
    /// `secure NICK`: secure wanted (interrupted after a restart).
    Secure,
    /// `blocked NICK REASON`: failed in a way that needs the user.
    Blocked(Failure),
    /// `key-changed NICK HEX`: the peer presented the key HEX, not its pin.
    KeyChanged([u8; KEY_LEN]),
}

impl Saved {
    /// What to save of a secure conversation that stands at `failure` (if any): a failure
    /// that blocks is kept, an interruption is saved as plain `secure` (after a restart it is
    /// [`Failure::NotConnected`]).
    pub(super) fn of(failure: Option<&Failure>) -> Saved {
        match failure {
            Some(Failure::KeyChanged { presented, .. }) => Saved::KeyChanged(*presented),
            Some(f) if f.token().is_some() => Saved::Blocked(f.clone()),
            _ => Saved::Secure,
        }
    }

    /// This entry's line for `nick`, without its end.
    pub(super) fn line(&self, nick: &str) -> String {
        match self {
            Saved::Secure => format!("secure {nick}"),
            Saved::Blocked(f) => match f.token() {
                Some(token) => format!("blocked {nick} {token}"),
                None => format!("secure {nick}"),
            },
            Saved::KeyChanged(key) => format!("key-changed {nick} {}", crate::identity::hex(key)),
        }
    }
}

/// Parses a conversations file.
///
/// # Errors
/// The 1-based number of the first damaged line.
pub(super) fn parse_conversations(text: &str) -> Result<Vec<(String, Saved)>, usize> {
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

/// Checks a conversations file ([`Sessions::conversations_text`](super::Sessions::conversations_text)) without loading it.
///
/// # Errors
/// The 1-based number of the first damaged line.
pub fn check_conversations(text: &str) -> Result<(), usize> {
    parse_conversations(text).map(|_| ())
}

impl Failure {
    /// The word saved in the conversations file for a failure that blocks (interruptions are
    /// saved as plain `secure`: after a restart they are [`Failure::NotConnected`]).
    pub(super) fn token(&self) -> Option<&'static str> {
        Some(match self {
            Failure::Decrypt => "decrypt",
            Failure::BadKey => "bad-key",
            Failure::PeerAborted(AbortReason::KeyNotAccepted) => "peer-key",
            Failure::PeerAborted(AbortReason::DecryptFailed) => "peer-decrypt",
            Failure::OwnKey => "own-key",
            _ => return None,
        })
    }

    pub(super) fn from_token(token: &str) -> Option<Failure> {
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
