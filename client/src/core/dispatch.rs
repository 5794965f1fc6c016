//! What each message from a logged-in server does: events for the front end, answers matched
//! to the user's lines, end-to-end input, acknowledgements of personal lines.

use super::ChatLine;
use std::time::Instant;

use mm_common::e2e::Status;
use mm_common::protocol::{is_lobby, ClientMsg, ErrorCode, ServerMsg};

use super::lines::Answer;
use super::login::MAX_LISTED_USERS;
use super::{Core, Event, Item};

impl Core {
    /// One message from the server after the login.
    pub(super) fn dispatch(&mut self, msg: ServerMsg, now: Instant) {
        match msg {
            ServerMsg::Ping { token } => {
                self.out.queue(&ClientMsg::Pong { token }, None);
            }
            ServerMsg::Pong { .. } | ServerMsg::Welcome { .. } => {}
            // Protocol 6's key directory: wired to the end-to-end sessions next.
            ServerMsg::KeysPublished { .. }
            | ServerMsg::Bundle { .. }
            | ServerMsg::PrekeysLow { .. } => {}
            ServerMsg::Relay {
                id,
                ts,
                from,
                payload,
            } => self.relay(id, ts, &from, &payload, now),
            ServerMsg::Users { nicks, last } => self.users(nicks, last, now),
            ServerMsg::Public {
                room,
                action,
                id,
                ts,
                from,
                text,
            } => self.room_line(
                ChatLine {
                    id,
                    ts,
                    room,
                    from,
                    text,
                    action,
                },
                false,
            ),
            ServerMsg::History {
                room,
                action,
                id,
                ts,
                from,
                text,
            } => self.room_line(
                ChatLine {
                    id,
                    ts,
                    room,
                    from,
                    text,
                    action,
                },
                true,
            ),
            ServerMsg::Offline { id, ts, from, text } => {
                self.personal(Event::Offline(ChatLine::new(id, ts, "", &from, &text)))
            }
            ServerMsg::Private { id, ts, from, text } => {
                self.personal(Event::Private(ChatLine::new(id, ts, "", &from, &text)))
            }
            ServerMsg::Sent { id, ts } => self.accepted(id, ts, false),
            ServerMsg::Queued { id, ts } => self.accepted(id, ts, true),
            ServerMsg::Joined { room, nick, .. } if is_lobby(&room) => {
                self.presence(&nick, true, now);
                self.push(Event::Joined { nick });
            }
            ServerMsg::Presence { nick, online } => self.presence(&nick, online, now),
            msg @ (ServerMsg::Joined { .. }
            | ServerMsg::Entered { .. }
            | ServerMsg::Names { .. }
            | ServerMsg::Rooms { .. }
            | ServerMsg::Parted { .. }
            | ServerMsg::Kicked { .. }
            | ServerMsg::Topic { .. }
            | ServerMsg::ModeChanged { .. }
            | ServerMsg::MemberChanged { .. }
            | ServerMsg::Invited { .. }
            | ServerMsg::RoomError { .. }
            | ServerMsg::Away { .. }) => self.room_message(msg),
            // Only the lobby tells who went offline.
            ServerMsg::Left { room, .. } if !is_lobby(&room) => {}
            ServerMsg::Left { nick, reason, .. } => {
                let actions = self
                    .secure
                    .as_ref()
                    .map(|s| s.sessions().peer_left(&nick))
                    .unwrap_or_default();
                self.push(Event::Left { nick, reason });
                self.perform(actions, now);
            }
            ServerMsg::Error {
                code,
                fatal: false,
                detail,
            } => self.refused(code, detail, now),
            ServerMsg::Error {
                code,
                fatal: true,
                detail,
            } => {
                self.replaced |= code == ErrorCode::REPLACED;
                self.push(Event::Error {
                    line: None,
                    code,
                    fatal: true,
                    detail,
                })
            }
            ServerMsg::Shutdown { reason } => self.push(Event::Shutdown { reason }),
        }
    }

    /// Whether the personal line `id` sent at `ts` is one sent again after a reconnect
    /// (already passed on): then it is marked handled, in turn, so that it is acknowledged
    /// again without being shown again.
    fn repeat(&mut self, id: u64, ts: u64) -> bool {
        if self.config.state.is_new_personal(id, ts) {
            return false;
        }
        self.events.push_back(Item::Handled(id));
        true
    }

    /// End-to-end data from `from`.
    fn relay(&mut self, id: u64, ts: u64, from: &str, payload: &[u8], now: Instant) {
        // A replayed end-to-end message would fail to decrypt and end the session.
        if self.repeat(id, ts) {
            return;
        }
        let actions = self
            .secure
            .as_ref()
            .map(|s| s.sessions().receive(from, payload, now))
            .unwrap_or_default();
        self.perform(actions, now);
        self.config.state.received_personal(id, ts);
        // Handled once the events it made are.
        self.events.push_back(Item::Handled(id));
    }

    /// A page of the user list asked for with `/who`; pages nobody asked for are ignored (a
    /// hostile server could otherwise fill memory with them).
    fn users(&mut self, nicks: Vec<String>, last: bool, now: Instant) {
        if self.who_asked == 0 {
            return;
        }
        // Nicks are 1 to 32 characters: "nicks" of 60,000 bytes would hold gigabytes within
        // the count.
        if nicks.iter().any(|n| !super::login::is_nick_sized(n)) {
            self.who = None;
            return self.close(
                Some("the server's user list holds something that is not a nick".into()),
                now,
            );
        }
        let list = self.who.get_or_insert_with(Vec::new);
        if list.len().saturating_add(nicks.len()) > MAX_LISTED_USERS {
            self.who = None;
            return self.close(Some("the server's user list is too long".into()), now);
        }
        list.extend(nicks);
        if last {
            self.who_asked -= 1;
            let list = self.who.take().unwrap_or_default();
            self.push(Event::Users(list));
        }
    }

    /// A plain `Private` or `Offline` line: shown once, with a warning when the conversation
    /// with its sender is secure.
    fn personal(&mut self, event: Event) {
        let (Event::Private(ChatLine { id, ts, from, .. })
        | Event::Offline(ChatLine { id, ts, from, .. })) = &event
        else {
            return;
        };
        let (id, ts) = (*id, *ts);
        if self.repeat(id, ts) {
            return;
        }
        let warning = self.plain_from_secure(from);
        if self.ignored(from) {
            // Hidden, but handled: acknowledged like a line shown.
            self.config.state.received_personal(id, ts);
            self.events.push_back(Item::Handled(id));
            return;
        }
        self.push(event);
        self.config.state.received_personal(id, ts);
        if let Some(warning) = warning {
            self.push(Event::Warning(warning));
        }
    }

    /// The warning for a plain private line from `from` when the conversation with them is
    /// secure (a session is up, being set up, or interrupted, or it is blocked): their client
    /// (or an old copy of it), or the server, sent it plain.
    fn plain_from_secure(&self, from: &str) -> Option<String> {
        let secure = self.secure.as_ref()?;
        (!matches!(secure.sessions().status(from), Status::Plain)).then(|| {
            format!(
                "the private message from {from} above was NOT end-to-end encrypted, although \
                 your conversation with {from} is secure: the server could read it (or forged it)"
            )
        })
    }

    /// `Sent` or `Queued`: the answer to the oldest frame waiting for one.
    fn accepted(&mut self, id: u64, ts: u64, queued: bool) {
        let line = match self.out.next_answer() {
            Some(Answer::Text(line)) => line,
            Some(Answer::Relay {
                line: Some(line), ..
            }) => line,
            // Acknowledgements of end-to-end internals are not the user's business; an
            // answer to nothing (a confused server) is ignored.
            Some(Answer::Relay { line: None, .. }) | None => return,
        };
        self.out.answered(line);
        // Our own room lines come back as history after a reconnect, too.
        let room = self.line_room(line);
        self.config.state.received_public(&room, id, ts);
        self.push(if queued {
            Event::Queued { line, id, ts }
        } else {
            Event::Sent { line, id, ts }
        });
    }

    fn presence(&mut self, nick: &str, online: bool, now: Instant) {
        let actions = self
            .secure
            .as_ref()
            .map(|s| s.sessions().presence(nick, online, now))
            .unwrap_or_default();
        self.perform(actions, now);
    }

    /// A non-fatal error: the answer to the oldest frame waiting for one.
    fn refused(&mut self, code: ErrorCode, detail: String, now: Instant) {
        let (line, refused_relay) = match self.out.next_answer() {
            Some(Answer::Text(line)) => (Some(line), None),
            Some(Answer::Relay { peer, line }) => (line, Some(peer)),
            None => (None, None),
        };
        let unreachable = refused_relay.is_some() && code == ErrorCode::NO_SUCH_NICK;
        if let Some(line) = line {
            self.out.answered(line);
            self.line_room(line);
        }
        // An unreachable peer's end-to-end internals are not the user's business; a refused
        // line of theirs (or any other refusal) is.
        if !unreachable || line.is_some() {
            self.push(Event::Error {
                line,
                code,
                fatal: false,
                detail,
            });
        }
        // The peer is offline: its handshake or session fails now, with that reason. Any other
        // refused relay leaves a gap the peer could not decrypt past: the session ends now,
        // visibly.
        let Some(peer) = refused_relay else { return };
        let actions = match &self.secure {
            Some(s) if unreachable => s.sessions().unreachable(&peer),
            Some(s) => s.sessions().relay_refused(&peer),
            None => return,
        };
        self.perform(actions, now);
    }
}
