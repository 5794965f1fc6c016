//! What the user typed, as a command. Pure: no I/O, so every rule is unit-tested.

/// A parsed input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Plain text (or `//text`, which sends `/text`): a public line.
    Say(String),
    /// `/msg NICK TEXT`.
    Msg {
        /// Recipient.
        to: String,
        /// Text.
        text: String,
    },
    /// `/secure NICK`: start an end-to-end session.
    Secure(String),
    /// `/insecure NICK`: end it; private messages go unencrypted again.
    Insecure(String),
    /// `/verify NICK`: show the safety number.
    Verify(String),
    /// `/verified NICK`: mark NICK's key verified after comparing safety numbers.
    Verified(String),
    /// `/accept-key NICK`: accept NICK's changed key.
    AcceptKey(String),
    /// `/who`.
    Who,
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
    /// Nothing to do (empty line).
    Nothing,
}

/// A line that is not a valid command; the message is for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

/// The `/help` text.
pub const HELP: &str = "\
commands:
  TEXT             say TEXT to everyone (start with // to say something beginning with /)
  /msg NICK TEXT   say TEXT to NICK only (end-to-end encrypted if a secure session is up)
  /secure NICK     start an end-to-end encrypted session with NICK (the server cannot read it)
  /verify NICK     show the safety number to compare with NICK in person or by phone
  /verified NICK   mark NICK's key as verified after the numbers matched
  /insecure NICK   end the secure session; /msg NICK is unencrypted again
  /accept-key NICK accept NICK's new key after a key-change warning
  /who             list who is online
  /help            this list
  /quit            leave (Ctrl-D too)";

/// Why a text would be refused, checked before sending and worded like the server's error
/// (`error (text-too-long): ...`); `None` if it may be sent.
pub fn text_refusal(text: &str, max: usize) -> Option<String> {
    use mm_common::protocol::{validate_text, ErrorCode, TextError};
    validate_text(text, max).err().map(|e| {
        let code = match e {
            TextError::TooLong { .. } => ErrorCode::TEXT_TOO_LONG,
            _ => ErrorCode::INVALID_TEXT,
        };
        format!("error ({}): {e}", code.name())
    })
}

/// Parses one input line (without its newline).
///
/// # Errors
/// [`CommandError`] for unknown commands or missing arguments.
pub fn parse(line: &str) -> Result<Command, CommandError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Ok(Command::Nothing);
    }
    if let Some(escaped) = line.strip_prefix("//") {
        return Ok(Command::Say(format!("/{escaped}")));
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Command::Say(line.to_owned()));
    };
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((name, args)) => (name, args.trim_start()),
        None => (rest, ""),
    };
    match name.to_ascii_lowercase().as_str() {
        "msg" | "m" => {
            let (to, text) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
            if to.is_empty() || text.trim().is_empty() {
                return Err(CommandError("usage: /msg NICK TEXT".into()));
            }
            Ok(Command::Msg {
                to: to.to_owned(),
                text: text.to_owned(),
            })
        }
        "secure" | "insecure" | "verify" | "verified" | "accept-key" => {
            let mut words = args.split_whitespace();
            let (Some(nick), None) = (words.next(), words.next()) else {
                return Err(CommandError(format!("usage: /{name} NICK")));
            };
            let nick = nick.to_owned();
            Ok(match name.to_ascii_lowercase().as_str() {
                "secure" => Command::Secure(nick),
                "insecure" => Command::Insecure(nick),
                "verify" => Command::Verify(nick),
                "verified" => Command::Verified(nick),
                _ => Command::AcceptKey(nick),
            })
        }
        "who" | "names" => Ok(Command::Who),
        "help" | "?" => Ok(Command::Help),
        "quit" | "exit" | "q" => Ok(Command::Quit),
        other => Err(CommandError(format!(
            "unknown command /{other} (try /help)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_said_verbatim() {
        assert_eq!(
            parse("hello  world "),
            Ok(Command::Say("hello  world ".into()))
        );
        assert_eq!(parse("  leading"), Ok(Command::Say("  leading".into())));
        assert_eq!(parse("crlf\r"), Ok(Command::Say("crlf".into())));
        assert_eq!(
            parse("//etc/passwd"),
            Ok(Command::Say("/etc/passwd".into()))
        );
        assert_eq!(parse(""), Ok(Command::Nothing));
        assert_eq!(parse("   "), Ok(Command::Nothing));
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse("/msg bob hi there"),
            Ok(Command::Msg {
                to: "bob".into(),
                text: "hi there".into()
            })
        );
        assert_eq!(
            parse("/MSG bob  two  spaces"),
            Ok(Command::Msg {
                to: "bob".into(),
                text: " two  spaces".into()
            })
        );
        assert_eq!(parse("/who"), Ok(Command::Who));
        assert_eq!(parse("/help"), Ok(Command::Help));
        assert_eq!(parse("/quit"), Ok(Command::Quit));
        assert!(parse("/msg bob").is_err());
        assert!(parse("/msg").is_err());
        assert!(parse("/msg bob   ").is_err());
        assert_eq!(
            parse("/frob x").unwrap_err().0,
            "unknown command /frob (try /help)"
        );
    }
}
