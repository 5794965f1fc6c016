//! What a logged-in session does with each message from its client: [`dispatch`] decodes it,
//! charges the rate limit, and hands it to the one function for its kind. Chat lines (`Public`,
//! `Private`, `Relay`) owe an [`Answer`], queued in order; the key directory's commands wait
//! for the store outside that order (`keys`); the rest answer at once or not at all.
//! A refusal is a [`Refusal`]: sent as the line's answer, or, when fatal, the session's [`Exit`].

use std::collections::VecDeque;

use mm_common::protocol::{
    validate_nick, validate_room, validate_text, ClientMsg, ErrorCode, ServerMsg, MAX_RELAY_LEN,
    MONITOR_PER_FRAME,
};
use tokio::time::Instant;
use tracing::warn;

use super::answers::Answer;
use super::context::{queue_users, Context, Exit, STORE_TIMEOUT};
use super::keys::{KeyCommand, KeyWait};
use super::refusal::Refusal;
use crate::hub::{Outbox, PrivateOutcome, Sent};
use crate::limit::{RateLimiter, Verdict};
use crate::metrics::MessageKind;
use crate::transport::Transport;

/// What a session waits for: the answers owed to lines (in order), joins waiting for their
/// room's history, and key directory commands waiting for the store.
pub(crate) struct Waits<'a> {
    pub answers: &'a mut VecDeque<Answer>,
    pub loads: &'a mut VecDeque<super::rooms::RoomWait>,
    pub keys: &'a mut VecDeque<KeyWait>,
}

/// Handles one message from a logged-in client; `Some` ends the session. Answers owed to chat
/// messages go to `answers`, in order. Fatal: a payload that is not a message (`BadFrame`),
/// flooding, a bad `Monitor`, a second `Hello`.
pub(crate) fn dispatch<T: Transport>(
    conn: &mut T,
    m: &Outbox,
    ctx: &Context,
    limiter: &mut RateLimiter,
    waits: Waits<'_>,
    payload: &[u8],
) -> Option<Exit> {
    let Waits {
        answers,
        loads,
        keys: key_waits,
    } = waits;
    let msg = match ClientMsg::decode(payload) {
        Ok(msg) => msg,
        Err(e) => return Some(Exit::Fatal(Refusal::BadFrame(e.to_string()))),
    };
    // An acknowledgement that advances is free; one that does not (a repeat, or beyond what
    // this connection was given) is useless and counts against the rate like any message.
    // A bundle fetch also has its own limit, per account (`hub::keys`); it counts here too, so
    // that fetching without end is a flood like any other.
    let free = match msg {
        ClientMsg::Pong { .. } | ClientMsg::Quit => true,
        ClientMsg::Received { up_to } => ctx.hub.received(m.conn_id, &m.nick, up_to),
        _ => false,
    };
    if !free {
        match limiter.check(Instant::now().into_std()) {
            Verdict::Allow => {}
            Verdict::Refuse => {
                ctx.metrics.rate_limited.inc();
                // Messages that expect an answer get one; a refused Who or Ping is dropped,
                // so that a client counting answers never sees one it did not expect.
                if matches!(
                    msg,
                    ClientMsg::Public { .. } | ClientMsg::Private { .. } | ClientMsg::Relay { .. }
                ) {
                    answers.push_back(Answer::Ready(Refusal::RateLimited.answer()));
                } else if let Some(room) = super::rooms::command_room(&msg) {
                    // A room command is told why nothing happened.
                    conn.queue_msg(&Refusal::RateLimited.room_error(room));
                } else if matches!(msg, ClientMsg::PublishKeys { .. }) {
                    // Outside the line order, as its other answers.
                    conn.queue_msg(&Refusal::RateLimited.keys_refused());
                } else if let ClientMsg::FetchBundle { nick } = &msg {
                    conn.queue_msg(&ServerMsg::Bundle {
                        nick: super::refusal::protocol_safe(nick),
                        answer: mm_common::prekeys::BundleAnswer::RateLimited {
                            retry_after_ms: 1000,
                        },
                    });
                }
                return None;
            }
            Verdict::Disconnect => return Some(Exit::Fatal(Refusal::Flooding)),
        }
    }
    let deadline = Instant::now() + STORE_TIMEOUT;
    match msg {
        ClientMsg::Public { room, text, action } => {
            let kind = if mm_common::protocol::is_lobby(&room) {
                MessageKind::Public
            } else {
                MessageKind::Room
            };
            owe(
                answers,
                counted(ctx, kind, public(m, ctx, &room, text, action, deadline)),
            )
        }
        ClientMsg::Private { to, text } => {
            let away = ctx.hub.away_message(&to);
            let owed = counted(
                ctx,
                MessageKind::Private,
                private(m, ctx, to, text, deadline),
            );
            let accepted = owed.is_ok();
            let exit = owe(answers, owed);
            // After the line's answer, in order: the recipient is away.
            if let Some((nick, message)) = away.filter(|_| accepted) {
                answers.push_back(Answer::Ready(ServerMsg::Away { nick, message }));
            }
            exit
        }
        ClientMsg::Relay { to, payload } => {
            // Private lines are end-to-end relays since protocol 6: the sender learns that the
            // recipient is away as for a plain one, after the answer.
            let away = ctx.hub.away_message(&to);
            let owed = counted(
                ctx,
                MessageKind::Relay,
                relay(m, ctx, to, payload, deadline),
            );
            let accepted = owed.is_ok();
            let exit = owe(answers, owed);
            if let Some((nick, message)) = away.filter(|_| accepted) {
                answers.push_back(Answer::Ready(ServerMsg::Away { nick, message }));
            }
            exit
        }
        ClientMsg::Who => {
            queue_users(conn, ctx.hub.online());
            None
        }
        ClientMsg::Monitor { nicks } => monitor(m, ctx, &nicks),
        ClientMsg::Ping { token } => {
            conn.queue_msg(&ServerMsg::Pong { token });
            None
        }
        // Acknowledged above.
        ClientMsg::Received { .. } | ClientMsg::Pong { .. } => None,
        ClientMsg::Quit => Some(Exit::Quit),
        // The key directory: answered outside the order of line answers.
        ClientMsg::PublishKeys { keys } => {
            super::keys::command(conn, m, ctx, key_waits, KeyCommand::Publish(keys));
            None
        }
        ClientMsg::FetchBundle { nick } => {
            super::keys::command(conn, m, ctx, key_waits, KeyCommand::Fetch(nick));
            None
        }
        ClientMsg::Hello { .. } | ClientMsg::KeyHello { .. } | ClientMsg::KeyProof { .. } => {
            Some(Exit::Fatal(Refusal::AlreadyLoggedIn))
        }
        ClientMsg::Join { .. }
        | ClientMsg::Part { .. }
        | ClientMsg::List { .. }
        | ClientMsg::Names { .. }
        | ClientMsg::Topic { .. }
        | ClientMsg::Invite { .. }
        | ClientMsg::Kick { .. }
        | ClientMsg::Member { .. }
        | ClientMsg::Mode { .. }
        | ClientMsg::Away { .. } => {
            loads.extend(super::rooms::command(conn, m, ctx, msg));
            None
        }
    }
}

/// Counts a chat message the hub accepted, by kind.
fn counted(
    ctx: &Context,
    kind: MessageKind,
    owed: Result<Answer, Refusal>,
) -> Result<Answer, Refusal> {
    if owed.is_ok() {
        ctx.metrics.message(kind);
    }
    owed
}

/// Queues the answer owed to a chat line: the store's, or the refusal now.
fn owe(answers: &mut VecDeque<Answer>, owed: Result<Answer, Refusal>) -> Option<Exit> {
    answers.push_back(match owed {
        Ok(answer) => answer,
        Err(refusal) => {
            if refusal.code() == ErrorCode::INTERNAL {
                let (_, detail) = refusal.wire();
                warn!(%detail, "message refused by an internal error");
            }
            Answer::Ready(refusal.answer())
        }
    });
    None
}

/// `Public`: a line for a room, answered once it is in the stored history.
/// Refusals: [`Refusal::InvalidRoom`], [`Refusal::TextRefused`], [`Refusal::Send`].
fn public(
    m: &Outbox,
    ctx: &Context,
    room: &str,
    text: String,
    action: bool,
    deadline: Instant,
) -> Result<Answer, Refusal> {
    validate_room(room).map_err(Refusal::InvalidRoom)?;
    check_text(&text, ctx)?;
    match ctx
        .hub
        .say(m.conn_id, &m.nick, room, text, action)
        .map_err(Refusal::Send)?
    {
        Sent::Now(accepted, durable) => Ok(Answer::Public {
            accepted,
            durable,
            deadline,
        }),
        Sent::Ordering(reply) => Ok(Answer::Ordering {
            to: None,
            reply,
            deadline,
        }),
    }
}

/// `Private`: a line for one user, delivered live or kept in the mailbox, answered once it is
/// in the mailbox. Refusals: [`Refusal::InvalidRecipient`], [`Refusal::TextRefused`],
/// [`Refusal::Send`].
fn private(
    m: &Outbox,
    ctx: &Context,
    to: String,
    text: String,
    deadline: Instant,
) -> Result<Answer, Refusal> {
    check_recipient(&to)?;
    check_text(&text, ctx)?;
    let (accepted, reply, live) = match ctx
        .hub
        .send_private(m.conn_id, &m.nick, &to, text)
        .map_err(Refusal::Send)?
    {
        PrivateOutcome::Delivered(accepted, reply) => (accepted, reply, true),
        PrivateOutcome::Stored(accepted, reply) => (accepted, reply, false),
        PrivateOutcome::Ordering(reply) => {
            return Ok(Answer::Ordering {
                to: Some(to),
                reply,
                deadline,
            })
        }
    };
    Ok(Answer::Mail {
        accepted,
        to,
        live,
        reply,
        deadline,
    })
}

/// `Relay`: an opaque payload for one user, delivered live or kept in the mailbox (as a
/// `Private` is), answered once it is in the mailbox. Refusals: [`Refusal::InvalidRecipient`],
/// [`Refusal::PayloadLength`], [`Refusal::Send`].
fn relay(
    m: &Outbox,
    ctx: &Context,
    to: String,
    payload: Vec<u8>,
    deadline: Instant,
) -> Result<Answer, Refusal> {
    check_recipient(&to)?;
    check_payload(&payload)?;
    let (accepted, reply, live) = match ctx
        .hub
        .relay(m.conn_id, &m.nick, &to, payload)
        .map_err(Refusal::Send)?
    {
        PrivateOutcome::Delivered(accepted, reply) => (accepted, reply, true),
        PrivateOutcome::Stored(accepted, reply) => (accepted, reply, false),
        PrivateOutcome::Ordering(reply) => {
            return Ok(Answer::Ordering {
                to: Some(to),
                reply,
                deadline,
            })
        }
    };
    Ok(Answer::Mail {
        accepted,
        to,
        live,
        reply,
        deadline,
    })
}

/// `Monitor`: watch these nicks come and go. Fatal [`Refusal::MonitorCount`] for none or more
/// than [`MONITOR_PER_FRAME`].
fn monitor(m: &Outbox, ctx: &Context, nicks: &[String]) -> Option<Exit> {
    if nicks.is_empty() || nicks.len() > MONITOR_PER_FRAME {
        return Some(Exit::Fatal(Refusal::MonitorCount));
    }
    ctx.hub.monitor(m.conn_id, &m.nick, nicks);
    None
}

/// A recipient that is not even a valid nick cannot be online.
fn check_recipient(to: &str) -> Result<(), Refusal> {
    validate_nick(to).map_err(|_| Refusal::InvalidRecipient { to: to.to_owned() })
}

fn check_payload(payload: &[u8]) -> Result<(), Refusal> {
    if payload.is_empty() || payload.len() > MAX_RELAY_LEN {
        return Err(Refusal::PayloadLength);
    }
    Ok(())
}

fn check_text(text: &str, ctx: &Context) -> Result<(), Refusal> {
    validate_text(text, ctx.limits.max_text_len).map_err(Refusal::TextRefused)
}
