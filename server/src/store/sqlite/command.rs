//! How each command ([`crate::store::command::Cmd`]) runs inside a batch's SQLite
//! transaction ([`apply`], through the table modules).

use tracing::warn;

use super::failure::{alone, atomically, failed};
use super::{accounts, history, keys, mailbox, rooms};
use crate::store::command::{login, Cmd, Counts, Decision, Outcome};
use crate::store::{Options, StoreError};

/// Runs one command inside the batch's transaction. `Err` is a failure of the database (the
/// whole batch is retried); a failure of this command alone is its answer. What every command
/// records besides (ids, rooms to trim) is `Cmd::track`'s.
pub(super) fn apply(
    tx: &rusqlite::Transaction<'_>,
    cmd: &Cmd,
    opts: Options,
    counts: &mut Counts,
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
            Outcome::Check(alone(tx, decided)?.map(Decision::outcome).map_err(failed))
        }
        Cmd::Login {
            nick,
            credential,
            now_ms,
            register,
            ..
        } => Outcome::Login(
            atomically(tx, counts, |counts| {
                login(
                    &mut &*tx, nick, credential, *now_ms, *register, opts, counts,
                )
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
        // One server: every line up to `up_to` was given (ids are stored in their order).
        Cmd::Delivered { key, up_to, .. } => {
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
        // Their ids are recorded with the batch (`Cmd::track`).
        Cmd::Close { .. } | Cmd::ReserveIds { .. } | Cmd::Ready { .. } => Outcome::Nothing,
    })
}
