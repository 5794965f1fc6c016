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
            ServerMsg::Pong { .. } | ServerMsg::Welcome { .. } | ServerMsg::Challenge { .. } => {}
            ServerMsg::KeysPublished {
                one_time,
                other_device,
            } => self.e2e(|s| s.published(one_time, other_device), now),
            ServerMsg::Bundle { nick, answer } => self.e2e(|s| s.bundle(&nick, answer, now), now),
            ServerMsg::PrekeysLow { one_time } => self.e2e(|s| s.prekeys_low(one_time), now),
            ServerMsg::KeysRefused { code, detail } => {
                self.e2e(
                    |s| {
                        s.publish_refused();
                        Vec::new()
                    },
                    now,
                );
                self.push(Event::Warning(format!(
                    "the server did not take your end-to-end keys ({detail}; {code:?}): people who never wrote to you cannot start a secure conversation with you until your next login"
                )));
            }
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
                self.push(Event::Joined { nick });
            }
            // Nobody monitors since protocol 6 (end-to-end sessions no longer need the peer
            // online); an unasked presence is ignored.
            ServerMsg::Presence { .. } => {}
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
            ServerMsg::Left { nick, reason, .. } => self.push(Event::Left { nick, reason }),
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

    /// Runs `f` on the end-to-end sessions (not holding them while carrying out what it
    /// returns).
    fn e2e(
        &mut self,
        f: impl FnOnce(&mut mm_common::e2e::Sessions) -> Vec<mm_common::e2e::Action>,
        now: Instant,
    ) {
        let actions = match &self.secure {
            Some(secure) => f(&mut secure.sessions()),
            None => return,
        };
        self.perform(actions, now);
    }

    /// End-to-end data from `from`: decrypted (the state saved first), then shown; handled
    /// (acknowledged) after that.
    fn relay(&mut self, id: u64, ts: u64, from: &str, payload: &[u8], now: Instant) {
        // Already passed on in this process: acknowledged again, not decrypted again.
        if self.repeat(id, ts) {
            return;
        }
        let actions = self
            .secure
            .as_ref()
            .map(|s| s.sessions().receive(from, id, payload, now))
            .unwrap_or_default();
        self.held_unsaved = false;
        self.perform(actions, now);
        if std::mem::take(&mut self.held_unsaved) {
            // Not saved, so not shown: nothing more is acknowledged on this connection (an
            // acknowledgement counts every id below it); the server sends it again at the next
            // login, when it is shown.
            self.acks.hold();
            return;
        }
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
    /// secure (a session is up or being set up, or it is blocked or failed): their client (or
    /// an old copy of it), or the server, sent it plain. Not for a conversation that is only
    /// end-to-end by default with nothing said yet (no session, no fetch): that would flag
    /// every plain line from anyone as coming from a "secure" conversation.
    fn plain_from_secure(&self, from: &str) -> Option<String> {
        let secure = self.secure.as_ref()?;
        let status = secure.sessions().status(from);
        (!matches!(status, Status::Plain | Status::Ready)).then(|| {
            format!(
                "the private message from {from} above was NOT end-to-end encrypted, although \
                 your conversation with {from} is secure: the server could read it (or forged it)"
            )
        })
    }

    /// `Sent` or `Queued`: the answer to the oldest frame waiting for one.
    fn accepted(&mut self, id: u64, ts: u64, queued: bool) {
        let (line, secure_for) = match self.out.next_answer() {
            Some(Answer::Text(line)) => (line, None),
            Some(Answer::Relay {
                line: Some(line),
                peer,
            }) => (line, Some(peer)),
            // Acknowledgements of end-to-end internals are not the user's business; an
            // answer to nothing (a confused server) is ignored.
            Some(Answer::Relay { line: None, .. }) | None => return,
        };
        self.out.answered(line);
        // Our own room lines come back as history after a reconnect, too.
        let room = self.line_room(line);
        self.config.state.received_public(&room, id, ts);
        self.push(if queued {
            Event::Queued {
                line,
                secure_for,
                id,
                ts,
            }
        } else {
            Event::Sent { line, id, ts }
        });
    }

    /// A non-fatal error: the answer to the oldest frame waiting for one.
    fn refused(&mut self, code: ErrorCode, detail: String, now: Instant) {
        let (line, refused_relay) = match self.out.next_answer() {
            Some(Answer::Text(line)) => (Some(line), None),
            Some(Answer::Relay { peer, line }) => (line, Some(peer)),
            None => (None, None),
        };
        if let Some(line) = line {
            self.out.answered(line);
            self.line_room(line);
        }
        // A refused relay of a text is the user's business (its line says why); one that
        // carried no text leaves at most a gap the peer's ratchet skips.
        if line.is_some() || refused_relay.is_none() {
            self.push(Event::Error {
                line,
                code,
                fatal: false,
                detail,
            });
        }
        let _ = now;
    }
}
