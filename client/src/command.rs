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
    /// `/msg #room TEXT` (a line to that room), or `/me [#room] ACTION` (`action`).
    SayIn {
        /// The room; `None`: the room shown (the lobby in line mode).
        room: Option<String>,
        /// Text.
        text: String,
        /// Whether it is an action (`/me`).
        action: bool,
    },
    /// `/join #room`.
    Join(String),
    /// `/part [#room] [reason]`.
    Part {
        /// The room; `None`: the room shown.
        room: Option<String>,
        /// Why (may be empty).
        reason: String,
    },
    /// `/list [more]`: the room list, or its next page.
    List {
        /// The next page.
        more: bool,
    },
    /// `/topic [#room] [text]`: shows the topic, or sets it.
    Topic {
        /// The room; `None`: the room shown.
        room: Option<String>,
        /// The new topic; `None`: show it.
        text: Option<String>,
    },
    /// `/names [#room]`: the room's members (the lobby: who is online).
    Names(Option<String>),
    /// `/invite NICK [#room]`.
    Invite {
        /// Who.
        nick: String,
        /// The room; `None`: the room shown.
        room: Option<String>,
    },
    /// `/kick [#room] NICK [reason]`.
    Kick {
        /// The room; `None`: the room shown.
        room: Option<String>,
        /// Who.
        nick: String,
        /// Why (may be empty).
        reason: String,
    },
    /// `/op`, `/deop`, `/voice`, `/devoice`, `/ban`, `/unban` `[#room] NICK`.
    Member {
        /// The room; `None`: the room shown.
        room: Option<String>,
        /// Who.
        nick: String,
        /// What changes.
        change: MemberChange,
    },
    /// `/mode [#room] +i|-i|+t|-t|+m|-m` (or `/mode [#room] invite-only on`).
    Mode {
        /// The room; `None`: the room shown.
        room: Option<String>,
        /// Which mode.
        mode: RoomMode,
        /// On or off.
        on: bool,
    },
    /// `/away [message]`: away with a message, or back (empty).
    Away(String),
    /// `/ignore NICK` (`Some`), or `/ignore` alone: the list.
    Ignore(Option<String>),
    /// `/unignore NICK`.
    Unignore(String),
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

use mm_common::protocol::{
    validate_nick, validate_room, MemberChange, RoomMode, MAX_REASON_LEN, MAX_TOPIC_LEN,
};

/// Every command [`parse`] knows: its name (without the `/`), then its other spellings. Any
/// case is the same command. [`HELP`] lists each by its name (a test keeps the two in step).
pub const NAMES: [(&str, &[&str]); 27] = [
    ("msg", &["m"]),
    ("me", &[]),
    ("join", &["j"]),
    ("part", &["leave"]),
    ("list", &[]),
    ("topic", &[]),
    ("names", &[]),
    ("invite", &[]),
    ("kick", &[]),
    ("ban", &[]),
    ("unban", &[]),
    ("op", &[]),
    ("deop", &[]),
    ("voice", &[]),
    ("devoice", &[]),
    ("mode", &[]),
    ("away", &[]),
    ("ignore", &[]),
    ("unignore", &[]),
    ("secure", &[]),
    ("insecure", &[]),
    ("verify", &[]),
    ("verified", &[]),
    ("accept-key", &[]),
    ("who", &[]),
    ("help", &["?"]),
    ("quit", &["exit", "q"]),
];

/// The name (in [`NAMES`]) of the command `word` spells, in any case and by any of its
/// spellings: `Some("quit")` for `Q`; `None` for a word that is no command.
pub fn command_name(word: &str) -> Option<&'static str> {
    let word = word.to_ascii_lowercase();
    NAMES
        .iter()
        .find(|(name, aliases)| *name == word || aliases.contains(&word.as_str()))
        .map(|(name, _)| *name)
}

/// The `/help` text.
pub const HELP: &str = "\
commands:
  TEXT             say TEXT in the room (start with // to say something beginning with /)
  /msg NICK TEXT   say TEXT to NICK only (end-to-end encrypted once you said /secure NICK)
  /me ACTION       act in the room (`/me #dev waves`): shown as `* you waves`
rooms (#name; the server reads room lines: they are not end-to-end encrypted):
  /join #ROOM      join a room (creating it: you are its owner); /msg #ROOM TEXT says TEXT there
  /part [#ROOM] [REASON]  leave a room
  /list [more]     list the rooms (more: the next page)
  /names [#ROOM]   list a room's members (~owner @operator +voiced)
  /topic [#ROOM] [TEXT]  show the topic, or set it to TEXT
  /invite NICK [#ROOM]   invite NICK into a room
  /kick [#ROOM] NICK [REASON]  remove NICK from a room (operators)
  /ban [#ROOM] NICK      ban NICK from a room; /unban [#ROOM] NICK lifts it
  /unban [#ROOM] NICK    lift a ban
  /op [#ROOM] NICK       make NICK an operator; /deop takes it back
  /deop [#ROOM] NICK     take NICK's operator status
  /voice [#ROOM] NICK    let NICK speak in a moderated room; /devoice takes it back
  /devoice [#ROOM] NICK  take NICK's voice
  /mode [#ROOM] +i|-i|+t|-t|+m|-m  invite-only, topic by operators, moderated (or: invite-only on)
  /away [MESSAGE]  mark yourself away (no message: back)
  /ignore [NICK]   hide NICK's room and private lines (kept in your home); alone: the list
  /unignore NICK   show NICK's lines again
other commands:
  /secure NICK     start an end-to-end encrypted session with NICK (the server cannot read it)
  /verify NICK     show the safety number to compare with NICK in person or by phone
  /verified NICK   mark NICK's key as verified after the numbers matched
  /insecure NICK   end the secure session; /msg NICK is unencrypted again
  /accept-key NICK accept NICK's new key after a key-change warning
  /who             list who is online
  /help            this list
  /quit            leave (Ctrl-D too)";

/// Spaces a tab becomes in chat text.
pub const TAB_SPACES: usize = 4;

/// `text` with each tab replaced by [`TAB_SPACES`] spaces. One message is one line and may not
/// hold a control character; a tab (from a paste, or a file piped to line mode) is the one whose
/// meaning survives as plain spaces. A fixed width, not tab stops: the receiver's line starts
/// after a time and a nick of any width, so no column could be kept anyway. Every other control
/// character is left for [`text_refusal`] to refuse.
pub fn expand_tabs(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\t') {
        std::borrow::Cow::Owned(text.replace('\t', &" ".repeat(TAB_SPACES)))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

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

/// Parses one input line (without its newline). Tabs in the text to send become spaces
/// ([`expand_tabs`]); between a command and its arguments they separate words like spaces.
///
/// # Errors
/// [`CommandError`] for unknown commands or missing arguments.
pub fn parse(line: &str) -> Result<Command, CommandError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Ok(Command::Nothing);
    }
    if let Some(escaped) = line.strip_prefix("//") {
        return Ok(Command::Say(format!("/{}", expand_tabs(escaped))));
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Command::Say(expand_tabs(line).into_owned()));
    };
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((name, args)) => (name, args.trim_start()),
        None => (rest, ""),
    };
    let Some(command) = command_name(name) else {
        return Err(CommandError(format!(
            "unknown command /{} (try /help)",
            name.to_ascii_lowercase()
        )));
    };
    match command {
        "msg" => {
            let (to, text) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
            if to.is_empty() || text.trim().is_empty() {
                return Err(CommandError(
                    "usage: /msg NICK TEXT (or /msg #ROOM TEXT)".into(),
                ));
            }
            if to.starts_with('#') {
                return Ok(Command::SayIn {
                    room: Some(room_name(to)?),
                    text: expand_tabs(text).into_owned(),
                    action: false,
                });
            }
            Ok(Command::Msg {
                to: to.to_owned(),
                text: expand_tabs(text).into_owned(),
            })
        }
        "secure" | "insecure" | "verify" | "verified" | "accept-key" => {
            let mut words = args.split_whitespace();
            let (Some(nick), None) = (words.next(), words.next()) else {
                return Err(CommandError(format!("usage: /{name} NICK")));
            };
            let nick = nick.to_owned();
            Ok(match command {
                "secure" => Command::Secure(nick),
                "insecure" => Command::Insecure(nick),
                "verify" => Command::Verify(nick),
                "verified" => Command::Verified(nick),
                _ => Command::AcceptKey(nick),
            })
        }
        "who" => Ok(Command::Who),
        "help" => Ok(Command::Help),
        "quit" => Ok(Command::Quit),
        other => parse_room_command(other, args),
    }
}

/// `name` checked as a room name ([`validate_room`]).
///
/// # Errors
/// Why it is no room name, in words.
pub fn room_name(name: &str) -> Result<String, CommandError> {
    validate_room(name)
        .map(|()| name.to_owned())
        .map_err(|e| CommandError(format!("{name} is not a room name: {e}")))
}

/// `nick` checked as a nick.
fn nick_arg(nick: &str) -> Result<String, CommandError> {
    validate_nick(nick)
        .map(|()| nick.to_owned())
        .map_err(|e| CommandError(format!("{nick} is not a nick: {e}")))
}

/// Splits off a leading `#room` argument (checked), if the arguments start with one.
fn leading_room(args: &str) -> Result<(Option<String>, &str), CommandError> {
    if !args.starts_with('#') {
        return Ok((None, args));
    }
    let (room, rest) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
    Ok((Some(room_name(room)?), rest.trim_start()))
}

/// A reason or away message, checked: at most [`MAX_REASON_LEN`] bytes, no control characters.
fn reason_arg(text: &str) -> Result<String, CommandError> {
    let text = expand_tabs(text.trim()).into_owned();
    if text.is_empty() {
        return Ok(text);
    }
    match text_refusal(&text, MAX_REASON_LEN) {
        Some(why) => Err(CommandError(why)),
        None => Ok(text),
    }
}

/// The room commands (and `/me`, `/away`, `/ignore`).
fn parse_room_command(command: &str, args: &str) -> Result<Command, CommandError> {
    let usage = |u: &str| Err(CommandError(format!("usage: {u}")));
    match command {
        "me" => {
            let (room, text) = leading_room(args)?;
            if text.trim().is_empty() {
                return usage("/me [#ROOM] ACTION");
            }
            Ok(Command::SayIn {
                room,
                text: expand_tabs(text).into_owned(),
                action: true,
            })
        }
        "join" => {
            let mut words = args.split_whitespace();
            match (words.next(), words.next()) {
                (Some(room), None) => Ok(Command::Join(room_name(room)?)),
                _ => usage("/join #ROOM"),
            }
        }
        "part" => {
            let (room, reason) = leading_room(args)?;
            Ok(Command::Part {
                room,
                reason: reason_arg(reason)?,
            })
        }
        "list" => match args.trim() {
            "" => Ok(Command::List { more: false }),
            "more" => Ok(Command::List { more: true }),
            _ => usage("/list [more]"),
        },
        "topic" => {
            let (room, text) = leading_room(args)?;
            let text = expand_tabs(text.trim_end()).into_owned();
            if text.is_empty() {
                return Ok(Command::Topic { room, text: None });
            }
            if let Some(why) = text_refusal(&text, MAX_TOPIC_LEN) {
                return Err(CommandError(why));
            }
            Ok(Command::Topic {
                room,
                text: Some(text),
            })
        }
        "names" => {
            let (room, rest) = leading_room(args)?;
            if !rest.trim().is_empty() {
                return usage("/names [#ROOM]");
            }
            Ok(Command::Names(room))
        }
        "invite" => {
            let mut words = args.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(nick), room, None) if !nick.starts_with('#') => Ok(Command::Invite {
                    nick: nick_arg(nick)?,
                    room: room.map(room_name).transpose()?,
                }),
                _ => usage("/invite NICK [#ROOM]"),
            }
        }
        "kick" => {
            let (room, rest) = leading_room(args)?;
            let (nick, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            if nick.is_empty() {
                return usage("/kick [#ROOM] NICK [REASON]");
            }
            Ok(Command::Kick {
                room,
                nick: nick_arg(nick)?,
                reason: reason_arg(reason)?,
            })
        }
        "ban" | "unban" | "op" | "deop" | "voice" | "devoice" => {
            let change = match command {
                "ban" => MemberChange::Ban,
                "unban" => MemberChange::Unban,
                "op" => MemberChange::Op,
                "deop" => MemberChange::Deop,
                "voice" => MemberChange::Voice,
                _ => MemberChange::Devoice,
            };
            let (room, rest) = leading_room(args)?;
            let mut words = rest.split_whitespace();
            match (words.next(), words.next()) {
                (Some(nick), None) => Ok(Command::Member {
                    room,
                    nick: nick_arg(nick)?,
                    change,
                }),
                _ => usage(&format!("/{command} [#ROOM] NICK")),
            }
        }
        "mode" => {
            let (room, rest) = leading_room(args)?;
            let words: Vec<&str> = rest.split_whitespace().collect();
            let bad = || {
                CommandError(
                    "usage: /mode [#ROOM] +i|-i|+t|-t|+m|-m (i: invite-only, t: topic by operators, m: moderated), or /mode [#ROOM] invite-only|topic-ops|moderated on|off".into(),
                )
            };
            let (mode, on) = match words.as_slice() {
                [flag] => {
                    let on = match flag.chars().next() {
                        Some('+') => true,
                        Some('-') => false,
                        _ => return Err(bad()),
                    };
                    (flag.get(1..).and_then(RoomMode::parse).ok_or_else(bad)?, on)
                }
                [word, state] => {
                    let on = match state.to_ascii_lowercase().as_str() {
                        "on" | "yes" | "true" => true,
                        "off" | "no" | "false" => false,
                        _ => return Err(bad()),
                    };
                    let word = word.to_ascii_lowercase();
                    (RoomMode::parse(&word).ok_or_else(bad)?, on)
                }
                _ => return Err(bad()),
            };
            Ok(Command::Mode { room, mode, on })
        }
        "away" => Ok(Command::Away(reason_arg(args)?)),
        "ignore" | "unignore" => {
            let mut words = args.split_whitespace();
            match (command, words.next(), words.next()) {
                ("ignore", None, None) => Ok(Command::Ignore(None)),
                ("ignore", Some(nick), None) => Ok(Command::Ignore(Some(nick_arg(nick)?))),
                ("unignore", Some(nick), None) => Ok(Command::Unignore(nick_arg(nick)?)),
                _ => usage(&format!("/{command} NICK")),
            }
        }
        // A name in NAMES without its arm here (a test finds it).
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
    fn tabs_become_four_spaces_and_other_control_characters_stay_to_be_refused() {
        assert_eq!(parse("a\tb"), Ok(Command::Say("a    b".into())));
        assert_eq!(parse("\tindented"), Ok(Command::Say("    indented".into())));
        assert_eq!(parse("//x\ty"), Ok(Command::Say("/x    y".into())));
        // Between words of a command a tab separates them; in the text it is four spaces.
        assert_eq!(
            parse("/msg\tbob\tcol1\tcol2"),
            Ok(Command::Msg {
                to: "bob".into(),
                text: "col1    col2".into()
            })
        );
        assert_eq!(parse("\t\t"), Ok(Command::Nothing));
        assert!(parse("/msg bob \t").is_err(), "a tab alone is no text");
        // Only tabs: what else the server refuses is left in, and refused before sending.
        for refused in [
            "a\u{1b}[2Jb",
            "bell\u{7}",
            "nul\0",
            "a\rb",
            "a\u{b}b",
            "a\u{2028}b",
        ] {
            let Ok(Command::Say(text)) = parse(refused) else {
                panic!("{refused:?}")
            };
            assert_eq!(text, refused);
            assert!(text_refusal(&text, 4096).is_some(), "{refused:?}");
        }
        assert_eq!(text_refusal(&expand_tabs("a\tb"), 4096), None);
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
        assert_eq!(parse("/Q"), Ok(Command::Quit));
        assert_eq!(parse("/names"), Ok(Command::Names(None)));
        assert_eq!(
            parse("/m bob hi"),
            Ok(Command::Msg {
                to: "bob".into(),
                text: "hi".into()
            })
        );
    }

    /// Whether `parse` takes `/word` as a command (rightly used or not).
    fn parses_as_a_command(word: &str) -> bool {
        !matches!(parse(&format!("/{word} bob hi")), Err(e) if e.0.starts_with("unknown command"))
    }

    /// NAMES is the shared table `common/tests/vectors/commands-v1.json` (the web client's
    /// `web/test/commands.test.js` checks its side against the same file): every command of
    /// mm is listed there with its spellings as `"clients": [.., "mm", ..]`, and nothing else is.
    #[test]
    fn the_command_table_is_the_shared_fixture() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../common/tests/vectors/commands-v1.json"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut fixture: Vec<(String, Vec<String>)> = doc["commands"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["clients"].as_array().unwrap().iter().any(|x| x == "mm"))
            .map(|c| {
                let aliases = c["aliases"].as_array().unwrap();
                (
                    c["name"].as_str().unwrap().to_owned(),
                    aliases
                        .iter()
                        .map(|a| a.as_str().unwrap().to_owned())
                        .collect(),
                )
            })
            .collect();
        let mut ours: Vec<(String, Vec<String>)> = NAMES
            .iter()
            .map(|(name, aliases)| {
                (
                    (*name).to_owned(),
                    aliases.iter().map(|a| (*a).to_owned()).collect(),
                )
            })
            .collect();
        fixture.sort();
        ours.sort();
        assert_eq!(
            ours, fixture,
            "client/src/command.rs NAMES and the fixture's \"mm\" commands differ"
        );
    }

    /// The commands `/help` lists: the first word of each line that starts with one.
    fn help_commands() -> Vec<&'static str> {
        HELP.lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter_map(|word| word.strip_prefix('/'))
            .collect()
    }

    #[test]
    fn every_command_the_parser_knows_is_in_help_and_every_one_in_help_parses() {
        for (name, aliases) in NAMES {
            for word in std::iter::once(name).chain(aliases.iter().copied()) {
                assert!(
                    parses_as_a_command(word),
                    "/{word} is in NAMES but not parsed"
                );
                assert!(
                    parses_as_a_command(&word.to_ascii_uppercase()),
                    "/{word} in capitals"
                );
                assert_eq!(command_name(word), Some(name));
            }
            assert!(
                help_commands().contains(&name),
                "/help does not list /{name}"
            );
        }
        for listed in help_commands() {
            assert!(
                command_name(listed).is_some() && parses_as_a_command(listed),
                "/help lists /{listed}, which is no command"
            );
        }
        // Anything else is unknown: the parser looks every name up in NAMES.
        for word in ["frob", "reconnect", "query", "", "msgx", "m-sg"] {
            assert_eq!(command_name(word), None, "{word}");
            assert!(!parses_as_a_command(word), "{word}");
        }
    }

    fn err(line: &str) -> String {
        parse(line).expect_err(line).0
    }

    #[test]
    fn room_commands_parse_with_and_without_a_room() {
        use mm_common::protocol::{MemberChange as M, RoomMode as R};
        let room = |r: &str| Some(r.to_owned());
        assert_eq!(parse("/join #dev"), Ok(Command::Join("#dev".into())));
        assert_eq!(parse("/j #Dev"), Ok(Command::Join("#Dev".into())));
        assert_eq!(
            parse("/part"),
            Ok(Command::Part {
                room: None,
                reason: String::new()
            })
        );
        assert_eq!(
            parse("/part #dev see you  later"),
            Ok(Command::Part {
                room: room("#dev"),
                reason: "see you  later".into()
            })
        );
        assert_eq!(
            parse("/part gone home"),
            Ok(Command::Part {
                room: None,
                reason: "gone home".into()
            })
        );
        assert_eq!(parse("/list"), Ok(Command::List { more: false }));
        assert_eq!(parse("/list more"), Ok(Command::List { more: true }));
        assert_eq!(
            parse("/topic #dev"),
            Ok(Command::Topic {
                room: room("#dev"),
                text: None
            })
        );
        assert_eq!(
            parse("/topic"),
            Ok(Command::Topic {
                room: None,
                text: None
            })
        );
        assert_eq!(
            parse("/topic #dev release on friday"),
            Ok(Command::Topic {
                room: room("#dev"),
                text: Some("release on friday".into())
            })
        );
        assert_eq!(
            parse("/topic new topic here"),
            Ok(Command::Topic {
                room: None,
                text: Some("new topic here".into())
            })
        );
        assert_eq!(parse("/names #dev"), Ok(Command::Names(room("#dev"))));
        assert_eq!(
            parse("/invite bob #dev"),
            Ok(Command::Invite {
                nick: "bob".into(),
                room: room("#dev")
            })
        );
        assert_eq!(
            parse("/invite bob"),
            Ok(Command::Invite {
                nick: "bob".into(),
                room: None
            })
        );
        assert_eq!(
            parse("/kick #dev bob flooding the room"),
            Ok(Command::Kick {
                room: room("#dev"),
                nick: "bob".into(),
                reason: "flooding the room".into()
            })
        );
        assert_eq!(
            parse("/kick bob"),
            Ok(Command::Kick {
                room: None,
                nick: "bob".into(),
                reason: String::new()
            })
        );
        for (word, change) in [
            ("ban", M::Ban),
            ("unban", M::Unban),
            ("op", M::Op),
            ("deop", M::Deop),
            ("voice", M::Voice),
            ("devoice", M::Devoice),
        ] {
            assert_eq!(
                parse(&format!("/{word} #dev bob")),
                Ok(Command::Member {
                    room: room("#dev"),
                    nick: "bob".into(),
                    change
                })
            );
            assert_eq!(
                parse(&format!("/{word} bob")),
                Ok(Command::Member {
                    room: None,
                    nick: "bob".into(),
                    change
                })
            );
            assert_eq!(
                err(&format!("/{word}")),
                format!("usage: /{word} [#ROOM] NICK")
            );
            assert_eq!(
                err(&format!("/{word} #dev bob carol")),
                format!("usage: /{word} [#ROOM] NICK")
            );
        }
        for (args, mode, on) in [
            ("#dev +i", R::InviteOnly, true),
            ("#dev -i", R::InviteOnly, false),
            ("+t", R::TopicOps, true),
            ("-t", R::TopicOps, false),
            ("#dev +m", R::Moderated, true),
            ("-m", R::Moderated, false),
            ("#dev invite-only on", R::InviteOnly, true),
            ("moderated off", R::Moderated, false),
            ("#dev Topic-Ops ON", R::TopicOps, true),
        ] {
            let expected_room = args.starts_with('#').then(|| "#dev".to_owned());
            assert_eq!(
                parse(&format!("/mode {args}")),
                Ok(Command::Mode {
                    room: expected_room,
                    mode,
                    on
                }),
                "{args}"
            );
        }
        assert_eq!(
            parse("/me waves"),
            Ok(Command::SayIn {
                room: None,
                text: "waves".into(),
                action: true
            })
        );
        assert_eq!(
            parse("/me #dev waves  twice"),
            Ok(Command::SayIn {
                room: room("#dev"),
                text: "waves  twice".into(),
                action: true
            })
        );
        assert_eq!(
            parse("/msg #dev hello all"),
            Ok(Command::SayIn {
                room: room("#dev"),
                text: "hello all".into(),
                action: false
            })
        );
        assert_eq!(
            parse("/away lunch, back at 2"),
            Ok(Command::Away("lunch, back at 2".into()))
        );
        assert_eq!(parse("/away"), Ok(Command::Away(String::new())));
        assert_eq!(parse("/ignore"), Ok(Command::Ignore(None)));
        assert_eq!(
            parse("/ignore eve"),
            Ok(Command::Ignore(Some("eve".into())))
        );
        assert_eq!(parse("/unignore eve"), Ok(Command::Unignore("eve".into())));
    }

    #[test]
    fn room_commands_refuse_bad_rooms_nicks_and_arguments_clearly() {
        assert_eq!(err("/join"), "usage: /join #ROOM");
        assert_eq!(err("/join #a #b"), "usage: /join #ROOM");
        assert_eq!(
            err("/join dev"),
            "dev is not a room name: a room name starts with #"
        );
        assert_eq!(
            err("/join #"),
            "# is not a room name: a room name needs at least one character after #"
        );
        assert_eq!(
            err("/join #a.b"),
            "#a.b is not a room name: a room name holds only letters, digits, _ and - after #"
        );
        assert_eq!(
            err(&format!("/join #{}", "x".repeat(49))),
            format!(
                "#{} is not a room name: a room name is at most 48 characters after #",
                "x".repeat(49)
            )
        );
        assert!(err("/part #a*b").contains("not a room name"));
        assert!(err("/topic #a!b x").contains("not a room name"));
        assert!(err("/msg #a!b hi").contains("not a room name"));
        assert!(err("/me #a!b hi").contains("not a room name"));
        assert_eq!(err("/me"), "usage: /me [#ROOM] ACTION");
        assert_eq!(err("/me #dev"), "usage: /me [#ROOM] ACTION");
        assert_eq!(err("/list all"), "usage: /list [more]");
        assert_eq!(err("/names #dev x"), "usage: /names [#ROOM]");
        assert_eq!(err("/invite"), "usage: /invite NICK [#ROOM]");
        assert_eq!(err("/invite #dev bob"), "usage: /invite NICK [#ROOM]");
        assert!(err("/invite bob dev").contains("not a room name"));
        assert!(err("/invite 9bob #dev").contains("9bob is not a nick"));
        assert_eq!(err("/kick #dev"), "usage: /kick [#ROOM] NICK [REASON]");
        assert!(err("/kick #dev b@d").contains("not a nick"));
        assert!(err("/mode #dev").starts_with("usage: /mode"));
        assert!(err("/mode #dev +x").starts_with("usage: /mode"));
        assert!(err("/mode #dev i").starts_with("usage: /mode"));
        assert!(err("/mode #dev invite-only maybe").starts_with("usage: /mode"));
        assert!(err(&format!("/away {}", "x".repeat(300))).contains("text-too-long"));
        assert!(err(&format!("/part #dev {}", "x".repeat(300))).contains("text-too-long"));
        assert!(err("/topic #dev a\u{1b}b").contains("invalid-text"));
        assert!(err(&format!("/topic #dev {}", "x".repeat(2000))).contains("text-too-long"));
        assert_eq!(err("/ignore a b"), "usage: /ignore NICK");
        assert_eq!(err("/unignore"), "usage: /unignore NICK");
        assert!(err("/ignore 1x").contains("not a nick"));
    }
}
