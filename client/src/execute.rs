//! Carrying out a parsed [`Command`] against the connection, once for both front ends: line
//! mode (`crate::cli`) and the terminal UI ([`crate::tui`]). What a command shows goes to a
//! [`Sink`] as [`Rendered`] items, worded in [`crate::render`]; each front end lays them out.
//! Commands only one front end has (the terminal UI's `/close`, `/reconnect`, tabs) stay there.

use mm_common::e2e::{Failure, Refused, Status};
use mm_common::protocol::{ClientMsg, LOBBY};

use crate::command::{self, Command};
use crate::render::{self, Rendered, Target};
use crate::{Client, Delivery, LineId, NotConnected, SendError};

/// What a command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done: a chat line was handed to the connection, or a command ran.
    Done,
    /// Refused, and the sink was told why: a text the server would refuse, a blocked secure
    /// session, a command the end-to-end layer refused.
    Refused,
    /// The connection is closed: nothing was done and nothing shown (the event stream says
    /// why).
    NotConnected,
    /// `/quit`: the front end leaves.
    Quit,
}

/// Where a command's items go.
pub trait Sink {
    /// Shows an item (an answer, a refusal).
    fn show(&mut self, item: Rendered);

    /// Our own chat line, handed to the connection as `line` (the events about `line` say how
    /// it went). A front end that does not echo what the user typed ignores it.
    fn own(&mut self, item: Rendered, line: LineId) {
        let _ = (item, line);
    }

    /// The room the user is looking at, for room commands that name none (the terminal UI's
    /// room tab); `None` (line mode, the lobby, a conversation): such commands must name one.
    fn room(&self) -> Option<String> {
        None
    }
}

/// What [`execute`] needs of the connection: [`Client`]'s methods of the same names (a test
/// double stands in for it in tests).
// Used with concrete types only (whose futures stay `Send`), so no `Send` bound is declared.
#[allow(async_fn_in_trait)]
pub trait Chat {
    /// Our nick.
    fn nick(&self) -> &str;
    /// The server's limit on a chat text, in bytes.
    fn max_text_len(&self) -> usize;
    /// Sends a public line.
    ///
    /// # Errors
    /// [`NotConnected`].
    async fn public(&self, text: &str) -> Result<LineId, NotConnected>;
    /// Sends a private line, end-to-end encrypted if the conversation is secure.
    ///
    /// # Errors
    /// [`SendError`]: not connected, or refused by the end-to-end layer.
    async fn private(&self, to: &str, text: &str) -> Result<(LineId, Delivery), SendError>;
    /// Asks who is online.
    ///
    /// # Errors
    /// [`NotConnected`].
    async fn who(&self) -> Result<(), NotConnected>;
    /// `/secure`.
    ///
    /// # Errors
    /// [`SendError`].
    async fn secure(&self, peer: &str) -> Result<(), SendError>;
    /// `/insecure`.
    ///
    /// # Errors
    /// [`SendError`].
    async fn insecure(&self, peer: &str) -> Result<(), SendError>;
    /// `/accept-key`.
    ///
    /// # Errors
    /// [`SendError`].
    async fn accept_key(&self, peer: &str) -> Result<(), SendError>;
    /// `/verified`.
    ///
    /// # Errors
    /// [`SendError`].
    async fn mark_verified(&self, peer: &str) -> Result<(), SendError>;
    /// The safety number with `peer`: 60 digits in groups of 5.
    ///
    /// # Errors
    /// [`Refused`] when no key of `peer` is known.
    fn safety_number(&self, peer: &str) -> Result<String, Refused>;
    /// The end-to-end state of the conversation with `peer`.
    fn secure_status(&self, peer: &str) -> Status;
    /// Sends a line to a room (`action`: `/me`).
    ///
    /// # Errors
    /// [`NotConnected`].
    async fn say(&self, room: &str, text: &str, action: bool) -> Result<LineId, NotConnected>;
    /// Sends a room command.
    ///
    /// # Errors
    /// [`NotConnected`].
    async fn room_command(&self, msg: ClientMsg) -> Result<(), NotConnected>;
    /// Where the next `/list` page starts (empty: none).
    fn list_next(&self) -> String;
    /// Hides (`on`) or shows again `nick`'s lines; `Ok(false)`: nothing changed.
    ///
    /// # Errors
    /// Why not, in words.
    fn ignore(&self, nick: &str, on: bool) -> Result<bool, String>;
    /// The nicks ignored.
    fn ignored(&self) -> Vec<String>;
}

impl Chat for Client {
    fn nick(&self) -> &str {
        Client::nick(self)
    }
    fn max_text_len(&self) -> usize {
        Client::max_text_len(self)
    }
    async fn public(&self, text: &str) -> Result<LineId, NotConnected> {
        Client::public(self, text).await
    }
    async fn private(&self, to: &str, text: &str) -> Result<(LineId, Delivery), SendError> {
        Client::private(self, to, text).await
    }
    async fn who(&self) -> Result<(), NotConnected> {
        Client::who(self).await
    }
    async fn secure(&self, peer: &str) -> Result<(), SendError> {
        Client::secure(self, peer).await
    }
    async fn insecure(&self, peer: &str) -> Result<(), SendError> {
        Client::insecure(self, peer).await
    }
    async fn accept_key(&self, peer: &str) -> Result<(), SendError> {
        Client::accept_key(self, peer).await
    }
    async fn mark_verified(&self, peer: &str) -> Result<(), SendError> {
        Client::mark_verified(self, peer).await
    }
    fn safety_number(&self, peer: &str) -> Result<String, Refused> {
        Client::safety_number(self, peer)
    }
    fn secure_status(&self, peer: &str) -> Status {
        Client::secure_status(self, peer)
    }
    async fn say(&self, room: &str, text: &str, action: bool) -> Result<LineId, NotConnected> {
        Client::say(self, room, text, action).await
    }
    async fn room_command(&self, msg: ClientMsg) -> Result<(), NotConnected> {
        Client::room_command(self, &msg).await
    }
    fn list_next(&self) -> String {
        Client::list_next(self)
    }
    fn ignore(&self, nick: &str, on: bool) -> Result<bool, String> {
        Client::state(self).ignore(nick, on)
    }
    fn ignored(&self) -> Vec<String> {
        Client::state(self).ignored()
    }
}

/// Why `text` would be refused ([`command::text_refusal`]), as an error item; `None` if it
/// may be sent.
pub fn text_refusal(text: &str, max: usize) -> Option<Rendered> {
    command::text_refusal(text, max).map(Rendered::error)
}

/// What `/verify peer` shows: the safety number, then how to compare it. `key_changed`: the
/// peer's key changed and the number is the new key's, not accepted yet.
pub fn verify_items(peer: &str, number: &str, key_changed: bool) -> Vec<Rendered> {
    render::safety_number(peer, number, key_changed)
}

/// What `/verified peer` says once done.
pub fn verified_item(peer: &str) -> Rendered {
    Rendered::notice(
        Target::Here,
        format!("{peer}'s key is now marked as verified"),
    )
}

/// What `/accept-key peer` says once done.
pub fn accepted_item(peer: &str) -> Rendered {
    Rendered::notice(
        Target::Here,
        format!(
            "accepted {peer}'s new key (pinned, not verified); a new secure session starts. /verify {peer} to compare safety numbers"
        ),
    )
}

/// Carries out `command` with `client`, showing what it says on `sink`. `Nothing` does
/// nothing; `Quit` only answers [`Outcome::Quit`] (the front end leaves).
///
/// A text the server would refuse is refused here, before sending ([`text_refusal`]); a
/// refusal of the end-to-end layer is shown as an error item. Neither sends anything.
pub async fn execute<C: Chat>(client: &C, command: Command, sink: &mut impl Sink) -> Outcome {
    let result: Result<(), SendError> = match command {
        Command::Nothing => return Outcome::Done,
        Command::Quit => return Outcome::Quit,
        Command::Help => {
            for item in render::help() {
                sink.show(item);
            }
            return Outcome::Done;
        }
        Command::Who => client.who().await.map_err(|_| SendError::NotConnected),
        Command::Say(text) => {
            if let Some(refusal) = text_refusal(&text, client.max_text_len()) {
                sink.show(refusal);
                return Outcome::Refused;
            }
            match client.public(&text).await {
                Ok(line) => {
                    sink.own(render::own_public(client.nick(), &text), line);
                    Ok(())
                }
                Err(NotConnected) => Err(SendError::NotConnected),
            }
        }
        Command::Msg { to, text } => {
            if let Some(refusal) = text_refusal(&text, client.max_text_len()) {
                sink.show(refusal);
                return Outcome::Refused;
            }
            client.private(&to, &text).await.map(|(line, delivery)| {
                sink.own(
                    render::own_private(client.nick(), &to, &text, delivery),
                    line,
                );
            })
        }
        Command::Secure(peer) => client.secure(&peer).await,
        Command::Insecure(peer) => client.insecure(&peer).await,
        Command::Verify(peer) => match client.safety_number(&peer) {
            Ok(number) => {
                let changed = matches!(
                    client.secure_status(&peer),
                    Status::Failed(Failure::KeyChanged { .. })
                );
                for item in verify_items(&peer, &number, changed) {
                    sink.show(item);
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        },
        Command::Verified(peer) => client
            .mark_verified(&peer)
            .await
            .map(|()| sink.show(verified_item(&peer))),
        Command::AcceptKey(peer) => client
            .accept_key(&peer)
            .await
            .map(|()| sink.show(accepted_item(&peer))),
        Command::SayIn { room, text, action } => {
            if let Some(refusal) = text_refusal(&text, client.max_text_len()) {
                sink.show(refusal);
                return Outcome::Refused;
            }
            let room = room
                .or_else(|| sink.room())
                .unwrap_or_else(|| LOBBY.to_owned());
            match client.say(&room, &text, action).await {
                Ok(line) => {
                    sink.own(
                        render::own_room_line(client.nick(), &room, &text, action),
                        line,
                    );
                    Ok(())
                }
                Err(NotConnected) => Err(SendError::NotConnected),
            }
        }
        Command::Names(None) if sink.room().is_none() => {
            client.who().await.map_err(|_| SendError::NotConnected)
        }
        Command::Ignore(None) => {
            let list = client.ignored();
            sink.show(Rendered::notice(
                Target::Here,
                if list.is_empty() {
                    "you ignore nobody (/ignore NICK hides NICK's lines)".to_owned()
                } else {
                    format!("ignored ({}): {}", list.len(), list.join(", "))
                },
            ));
            return Outcome::Done;
        }
        Command::Ignore(Some(nick)) => return ignore(client, &nick, true, sink),
        Command::Unignore(nick) => return ignore(client, &nick, false, sink),
        other => match room_message(other, client, &*sink) {
            Ok(msg) => client
                .room_command(msg)
                .await
                .map_err(|_| SendError::NotConnected),
            Err(usage) => {
                sink.show(Rendered::error(usage));
                return Outcome::Refused;
            }
        },
    };
    match result {
        Ok(()) => Outcome::Done,
        Err(SendError::NotConnected) => Outcome::NotConnected,
        Err(e) => {
            sink.show(Rendered::error(e.to_string()));
            Outcome::Refused
        }
    }
}

/// `/ignore NICK` (`on`) or `/unignore NICK`.
fn ignore<C: Chat>(client: &C, nick: &str, on: bool, sink: &mut impl Sink) -> Outcome {
    match client.ignore(nick, on) {
        Ok(changed) => {
            let text = match (on, changed) {
                (true, true) => format!(
                    "ignoring {nick}: their room and private lines are hidden (/unignore {nick} to undo)"
                ),
                (true, false) => format!("you ignore {nick} already"),
                (false, true) => format!("no longer ignoring {nick}"),
                (false, false) => format!("you did not ignore {nick}"),
            };
            sink.show(Rendered::notice(Target::Here, text));
            Outcome::Done
        }
        Err(why) => {
            sink.show(Rendered::error(why));
            Outcome::Refused
        }
    }
}

/// The room `room` names, or the one shown; an error naming the usage when there is none.
fn which_room(room: Option<String>, sink: &impl Sink, usage: &str) -> Result<String, String> {
    room.or_else(|| sink.room())
        .ok_or_else(|| format!("which room? {usage}"))
}

/// The message for a room command; `Err`: what to tell the user instead.
fn room_message<C: Chat>(
    command: Command,
    client: &C,
    sink: &impl Sink,
) -> Result<ClientMsg, String> {
    Ok(match command {
        Command::Join(room) => ClientMsg::Join { room },
        Command::Part { room, reason } => ClientMsg::Part {
            room: which_room(room, sink, "/part #ROOM [REASON]")?,
            reason,
        },
        Command::List { more: false } => ClientMsg::List {
            after: String::new(),
        },
        Command::List { more: true } => {
            let after = client.list_next();
            if after.is_empty() {
                return Err("no more rooms to list (/list starts again)".into());
            }
            ClientMsg::List { after }
        }
        Command::Topic { room, text } => ClientMsg::Topic {
            room: which_room(room, sink, "/topic #ROOM [TEXT]")?,
            topic: text,
        },
        Command::Names(room) => ClientMsg::Names {
            room: which_room(room, sink, "/names #ROOM")?,
        },
        Command::Invite { nick, room } => ClientMsg::Invite {
            room: which_room(room, sink, "/invite NICK #ROOM")?,
            nick,
        },
        Command::Kick { room, nick, reason } => ClientMsg::Kick {
            room: which_room(room, sink, "/kick #ROOM NICK [REASON]")?,
            nick,
            reason,
        },
        Command::Member { room, nick, change } => ClientMsg::Member {
            room: which_room(room, sink, &format!("/{} #ROOM NICK", change.as_str()))?,
            nick,
            change,
        },
        Command::Mode { room, mode, on } => ClientMsg::Mode {
            room: which_room(room, sink, "/mode #ROOM +i|-i|+t|-t|+m|-m")?,
            mode,
            on,
        },
        Command::Away(message) => ClientMsg::Away { message },
        // Every other command is carried out in `execute`.
        _ => return Err("not a room command".into()),
    })
}

#[cfg(test)]
#[path = "execute_tests.rs"]
mod tests;
