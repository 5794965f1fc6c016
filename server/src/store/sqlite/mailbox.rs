//! The `mailbox` table: personal lines kept until their recipient acknowledges them.

use rusqlite::{params, Connection};

use super::convert::{from_sql, to_sql};
use crate::store::command::{admit, at_bound, Admit};
use crate::store::{Arrival, Body, Mail, Options, QueueOutcome};

/// The first `limit` lines waiting for `key`, oldest first.
pub(super) fn waiting(conn: &Connection, key: &str, limit: usize) -> rusqlite::Result<Vec<Mail>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, ts, sender, text, payload FROM mailbox WHERE to_key = ?1 ORDER BY id LIMIT ?2",
    )?;
    let mails = stmt
        .query_map(params![key, to_sql(limit as u64)], |r| {
            let payload: Option<Vec<u8>> = r.get(4)?;
            Ok(Mail {
                id: from_sql(r.get(0)?),
                ts: from_sql(r.get(1)?),
                from: r.get(2)?,
                body: match payload {
                    Some(payload) => Body::Relay(payload),
                    None => Body::Text(r.get(3)?),
                },
            })
        })?
        .collect();
    mails
}

/// Keeps `mail` for `to_key`, whose account exists if `registered` ([`super::accounts::exists`]),
/// if [`admit`] says so. `waiting` is the writer's running count of lines in all mailboxes,
/// recounted when it says the total is reached.
pub(super) fn queue(
    tx: &rusqlite::Transaction<'_>,
    to_key: &str,
    registered: bool,
    mail: &Mail,
    arrival: Arrival,
    opts: Options,
    waiting: &mut u64,
) -> rusqlite::Result<QueueOutcome> {
    let count: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM mailbox WHERE to_key = ?1")?
        .query_row([to_key], |r| r.get(0))?;
    let admitted = admit(arrival, registered, from_sql(count), opts, || {
        at_bound(waiting, opts.mailbox_total, || total(tx))
    })?;
    if let Admit::Answer(outcome) = admitted {
        return Ok(outcome);
    }
    let (text, payload) = match &mail.body {
        Body::Text(text) => (text.as_str(), None),
        Body::Relay(payload) => ("", Some(payload.as_slice())),
    };
    tx.prepare_cached(
        "INSERT INTO mailbox (id, to_key, ts, sender, text, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        to_sql(mail.id),
        to_key,
        to_sql(mail.ts),
        mail.from,
        text,
        payload
    ])?;
    *waiting += 1;
    Ok(QueueOutcome::Queued)
}

/// Deletes the lines waiting for `key` up to id `up_to` (acknowledged); returns how many.
pub(super) fn delete_up_to(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    up_to: u64,
) -> rusqlite::Result<usize> {
    tx.prepare_cached("DELETE FROM mailbox WHERE to_key = ?1 AND id <= ?2")
        .and_then(|mut s| s.execute(params![key, to_sql(up_to)]))
}

/// Deletes every line waiting for `key` (its account is gone); returns how many.
pub(super) fn delete_all(tx: &Connection, key: &str) -> rusqlite::Result<usize> {
    tx.prepare_cached("DELETE FROM mailbox WHERE to_key = ?1")?
        .execute([key])
}

/// How many private lines are waiting, all mailboxes together.
pub(super) fn total(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COUNT(*) FROM mailbox", [], |r| r.get(0))
        .map(from_sql)
}
