//! What can be submitted to the writer ([`Cmd`]), how each command runs inside a batch's
//! transaction ([`apply`], through the table modules), and how it is answered after the
//! commit ([`Outcome`]).

use tokio::sync::oneshot;
use tracing::warn;

use super::failure::{alone, atomically, failed};
use super::{accounts, history, keys, mailbox, rooms, Counts};
use mm_common::prekeys::KeyUpload;

use crate::store::{
    Arrival, Line, Login, LoginOutcome, Mail, Options, Published, QueueOutcome, RoomChange, RoomId,
    RoomRequest, StoreError, Taken,
};

/// A submission to the writer.
pub(super) enum Cmd {
    Check {
        nick: String,
        credential: String,
        reply: oneshot::Sender<Result<LoginOutcome, StoreError>>,
    },
    Login {
        nick: String,
        credential: String,
        now_ms: u64,
        register: bool,
        reply: oneshot::Sender<Result<Login, StoreError>>,
    },
    Abandon {
        key: String,
        credential: String,
        created_ms: u64,
    },
    /// An owner's login answered from a read while commits failed: that the account was used
    /// again is recorded once they work (never dropped: expiry depends on it).
    Returned {
        key: String,
        credential: String,
        now_ms: u64,
    },
    Waiting {
        key: String,
        reply: oneshot::Sender<Result<Vec<Mail>, StoreError>>,
    },
    Delivered {
        key: String,
        up_to: u64,
    },
    LoggedOut {
        key: String,
        now_ms: u64,
        durable: bool,
    },
    Expire {
        cutoff_ms: u64,
        online: Vec<String>,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<String>, StoreError>>,
    },
    Public {
        line: Line,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Room {
        change: RoomChange,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    RoomHistory {
        room: RoomId,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<Line>, StoreError>>,
    },
    /// Reads and deletes the pending `room_requests`.
    AdminRequests {
        reply: oneshot::Sender<Result<Vec<RoomRequest>, StoreError>>,
    },
    Mail {
        to_key: String,
        mail: Mail,
        arrival: Arrival,
        reply: oneshot::Sender<Result<QueueOutcome, StoreError>>,
    },
    ReserveIds {
        up_to: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    PublishKeys {
        key: String,
        keys: Box<KeyUpload>,
        reply: oneshot::Sender<Result<Published, StoreError>>,
    },
    /// Reads a bundle and deletes the one-time prekey it hands out, in the batch.
    TakeBundle {
        key: String,
        one_time: bool,
        reply: oneshot::Sender<Result<Taken, StoreError>>,
    },
    PrekeyCount {
        key: String,
        reply: oneshot::Sender<Result<Option<u32>, StoreError>>,
    },
    Close {
        last_id: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// `/readyz`: nothing to do but go through a batch and its commit.
    Ready {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

impl Cmd {
    /// Whether it changes the store (refused while the store is failing). Logins and mailbox
    /// reads are not: they are answered from a read then.
    pub(super) fn is_write(&self) -> bool {
        matches!(
            self,
            Cmd::Public { .. }
                | Cmd::Room { .. }
                | Cmd::AdminRequests { .. }
                | Cmd::Mail { .. }
                | Cmd::Delivered { .. }
                | Cmd::LoggedOut { .. }
                | Cmd::Abandon { .. }
                | Cmd::Returned { .. }
                | Cmd::Expire { .. }
                | Cmd::ReserveIds { .. }
                | Cmd::PublishKeys { .. }
                | Cmd::TakeBundle { .. }
                | Cmd::Ready { .. }
        )
    }

    /// A write accepted even while commits fail (and then retried like an accepted line):
    /// undoing a registration whose login gave up, and what an unused account's expiry
    /// depends on. Each is bounded by the logins that cause it.
    pub(super) fn must_keep(&self) -> bool {
        matches!(
            self,
            Cmd::Abandon { .. } | Cmd::Returned { .. } | Cmd::LoggedOut { durable: true, .. }
        )
    }

    /// The mailbox a write changes, if any.
    pub(super) fn mailbox(&self) -> Option<&str> {
        match self {
            Cmd::Mail { to_key, .. } => Some(to_key),
            Cmd::Delivered { key, .. } | Cmd::Abandon { key, .. } => Some(key),
            _ => None,
        }
    }

    /// An accepted line (whose sender waits for it to be stored).
    pub(super) fn is_line(&self) -> bool {
        matches!(self, Cmd::Public { .. } | Cmd::Mail { .. })
    }

    /// Sends the answer after the commit.
    pub(super) fn answer(self, outcome: Outcome) {
        // A dropped receiver means the session is gone; nothing to tell.
        match (self, outcome) {
            (Cmd::Check { reply, .. }, Outcome::Check(r)) => drop(reply.send(r)),
            (Cmd::Login { reply, .. }, Outcome::Login(r)) => drop(reply.send(r)),
            (Cmd::Expire { reply, .. }, Outcome::Expired(r)) => drop(reply.send(r)),
            (Cmd::Waiting { reply, .. }, Outcome::Waiting(r)) => drop(reply.send(r)),
            (Cmd::Public { reply, .. }, Outcome::Public(r)) => drop(reply.send(r)),
            (Cmd::Room { reply, .. }, Outcome::Room(r)) => drop(reply.send(r)),
            (Cmd::RoomHistory { reply, .. }, Outcome::RoomHistory(r)) => drop(reply.send(r)),
            (Cmd::AdminRequests { reply, .. }, Outcome::Requests(r)) => drop(reply.send(r)),
            (Cmd::Mail { reply, .. }, Outcome::Queue(r)) => drop(reply.send(r)),
            (Cmd::PublishKeys { reply, .. }, Outcome::Published(r)) => drop(reply.send(r)),
            (Cmd::TakeBundle { reply, .. }, Outcome::Taken(r)) => drop(reply.send(r)),
            (Cmd::PrekeyCount { reply, .. }, Outcome::Count(r)) => drop(reply.send(r)),
            (
                Cmd::Close { reply, .. } | Cmd::ReserveIds { reply, .. } | Cmd::Ready { reply },
                Outcome::Nothing,
            ) => {
                drop(reply.send(Ok(())));
            }
            (cmd, _) => cmd.fail(StoreError::Failed("internal: mismatched answer".into())),
        }
    }

    /// Answers `error` instead.
    pub(super) fn fail(self, error: StoreError) {
        match self {
            Cmd::Check { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Login { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Expire { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Waiting { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Public { reply, .. }
            | Cmd::Room { reply, .. }
            | Cmd::Close { reply, .. }
            | Cmd::Ready { reply }
            | Cmd::ReserveIds { reply, .. } => drop(reply.send(Err(error))),
            Cmd::RoomHistory { reply, .. } => drop(reply.send(Err(error))),
            Cmd::AdminRequests { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Mail { reply, .. } => drop(reply.send(Err(error))),
            Cmd::PublishKeys { reply, .. } => drop(reply.send(Err(error))),
            Cmd::TakeBundle { reply, .. } => drop(reply.send(Err(error))),
            Cmd::PrekeyCount { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Delivered { .. }
            | Cmd::LoggedOut { .. }
            | Cmd::Abandon { .. }
            | Cmd::Returned { .. } => {}
        }
    }
}

/// What one command of a batch came to, kept until the batch commits.
pub(super) enum Outcome {
    Nothing,
    Check(Result<LoginOutcome, StoreError>),
    Login(Result<Login, StoreError>),
    Expired(Result<Vec<String>, StoreError>),
    Waiting(Result<Vec<Mail>, StoreError>),
    Public(Result<(), StoreError>),
    Room(Result<(), StoreError>),
    RoomHistory(Result<Vec<Line>, StoreError>),
    Requests(Result<Vec<RoomRequest>, StoreError>),
    Queue(Result<QueueOutcome, StoreError>),
    Published(Result<Published, StoreError>),
    Taken(Result<Taken, StoreError>),
    Count(Result<Option<u32>, StoreError>),
}

/// Runs one command inside the batch's transaction. `Err` is a failure of the database (the
/// whole batch is retried); a failure of this command alone is its answer. `appended` collects
/// the rooms that got a line (trimmed at the end of the batch).
pub(super) fn apply(
    tx: &rusqlite::Transaction<'_>,
    cmd: &Cmd,
    opts: Options,
    counts: &mut Counts,
    max_id: &mut u64,
    appended: &mut Vec<RoomId>,
) -> rusqlite::Result<Outcome> {
    Ok(match cmd {
        Cmd::Check {
            nick, credential, ..
        } => {
            let decided = accounts::evaluate(
                tx,
                nick,
                credential,
                opts.max_accounts,
                &mut counts.accounts,
            );
            Outcome::Check(
                alone(tx, decided)?
                    .map(accounts::Decision::outcome)
                    .map_err(failed),
            )
        }
        Cmd::Login {
            nick,
            credential,
            now_ms,
            register,
            ..
        } => Outcome::Login(
            atomically(tx, counts, |counts| {
                accounts::login(tx, nick, credential, *now_ms, *register, opts, counts)
            })?
            .map_err(failed),
        ),
        Cmd::Abandon {
            key,
            credential,
            created_ms,
        } => {
            accounts::abandon(tx, key, credential, *created_ms, counts)?;
            Outcome::Nothing
        }
        Cmd::Returned {
            key,
            credential,
            now_ms,
        } => {
            // Required, not best effort: if it fails, the batch is retried.
            accounts::returned(tx, key, credential, *now_ms)?;
            Outcome::Nothing
        }
        Cmd::Expire {
            cutoff_ms,
            online,
            limit,
            ..
        } => Outcome::Expired(
            atomically(tx, counts, |counts| {
                accounts::expire(tx, *cutoff_ms, online, *limit, counts)
            })?
            .map_err(failed),
        ),
        Cmd::Waiting { key, .. } => {
            let mails = mailbox::waiting(tx, key, opts.mailbox_ceiling());
            Outcome::Waiting(alone(tx, mails)?.map_err(failed))
        }
        Cmd::Delivered { key, up_to } => {
            let deleted = mailbox::delete_up_to(tx, key, *up_to);
            match alone(tx, deleted)? {
                Ok(n) => counts.waiting = counts.waiting.saturating_sub(n as u64),
                Err(e) => warn!(error = %e, "store: acknowledged lines not deleted"),
            }
            Outcome::Nothing
        }
        Cmd::LoggedOut {
            key,
            now_ms,
            durable,
        } => {
            accounts::logged_out(tx, key, *now_ms, *durable)?;
            Outcome::Nothing
        }
        Cmd::Public { line, .. } => {
            *max_id = (*max_id).max(line.id);
            if !appended.contains(&line.room) {
                appended.push(line.room);
            }
            let inserted = history::append(tx, line);
            Outcome::Public(alone(tx, inserted)?.map(drop).map_err(failed))
        }
        Cmd::Room { change, .. } => {
            // One unit: a change that fails on its own (a room created twice) keeps none of it.
            Outcome::Room(atomically(tx, counts, |_| rooms::apply(tx, change))?.map_err(failed))
        }
        Cmd::RoomHistory { room, limit, .. } => {
            // Never more than the room keeps, however the lines fell into batches (trimming
            // is at the end of each).
            let lines = history::recent(tx, *room, (*limit).min(opts.history_len));
            Outcome::RoomHistory(alone(tx, lines)?.map_err(failed))
        }
        Cmd::AdminRequests { .. } => {
            Outcome::Requests(atomically(tx, counts, |_| rooms::take_requests(tx))?.map_err(failed))
        }
        Cmd::Mail {
            to_key,
            mail,
            arrival,
            ..
        } => {
            *max_id = (*max_id).max(mail.id);
            let queued = accounts::exists(tx, to_key).and_then(|registered| {
                mailbox::queue(
                    tx,
                    to_key,
                    registered,
                    mail,
                    *arrival,
                    opts,
                    &mut counts.waiting,
                )
            });
            Outcome::Queue(alone(tx, queued)?.map_err(failed))
        }
        Cmd::PublishKeys { key, keys, .. } => Outcome::Published(
            atomically(tx, counts, |_| keys::publish(tx, key, keys))?
                .map_err(failed)
                .and_then(|p| p.ok_or_else(|| StoreError::Failed("no such account".into()))),
        ),
        Cmd::TakeBundle { key, one_time, .. } => Outcome::Taken(
            atomically(tx, counts, |_| keys::take(tx, key, *one_time))?.map_err(failed),
        ),
        Cmd::PrekeyCount { key, .. } => {
            let n = keys::stored_count(tx, key);
            Outcome::Count(alone(tx, n)?.map_err(failed))
        }
        Cmd::Close { last_id, .. } => {
            *max_id = (*max_id).max(*last_id);
            Outcome::Nothing
        }
        Cmd::Ready { .. } => Outcome::Nothing,
        // Recorded as the highest id given out, which is what a reservation promises.
        Cmd::ReserveIds { up_to, .. } => {
            *max_id = (*max_id).max(*up_to);
            Outcome::Nothing
        }
    })
}
