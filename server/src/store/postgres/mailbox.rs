//! `mailbox` in PostgreSQL: personal lines kept until their recipient acknowledges them.

use postgres::{Error, GenericClient, Transaction};

use crate::store::command::{admit, at_bound, Admit};
use crate::store::encode::{from_sql, to_sql};
use crate::store::{Arrival, Body, Mail, Options, QueueOutcome};

/// The first `limit` lines waiting for `key`, oldest first; none it acknowledged already (a
/// line a node of a cluster stored after the acknowledgement deleted the others).
pub(super) fn waiting<C: GenericClient>(
    c: &mut C,
    key: &str,
    limit: usize,
) -> Result<Vec<Mail>, Error> {
    c.query(
        "SELECT id, ts, sender, text, payload FROM mailbox
         WHERE to_key = $1
           AND id > COALESCE((SELECT up_to FROM mailbox_acked WHERE to_key = $1), 0)
         ORDER BY id LIMIT $2",
        &[&key, &to_sql(limit as u64)],
    )?
    .iter()
    .map(|r| {
        let payload: Option<Vec<u8>> = r.try_get(4)?;
        Ok(Mail {
            id: from_sql(r.try_get(0)?),
            ts: from_sql(r.try_get(1)?),
            from: r.try_get(2)?,
            body: match payload {
                Some(payload) => Body::Relay(payload),
                None => Body::Text(r.try_get(3)?),
            },
        })
    })
    .collect()
}

/// Keeps `mail` for `to_key` if [`admit`] says so; `waiting` is the writer's running count.
/// On a node of a cluster (`cluster`), a line its recipient already acknowledged (it came
/// live through another node, whose acknowledgement was stored first) is not kept: answered
/// as kept, since it was delivered.
#[allow(clippy::too_many_arguments)] // the mailbox's one write, with what it depends on
pub(super) fn queue(
    tx: &mut Transaction<'_>,
    to_key: &str,
    registered: bool,
    mail: &Mail,
    arrival: Arrival,
    opts: Options,
    waiting: &mut u64,
    cluster: bool,
) -> Result<QueueOutcome, Error> {
    if cluster && acknowledged(tx, to_key)? >= mail.id {
        return Ok(QueueOutcome::Queued);
    }
    let count: i64 = tx
        .query_one("SELECT COUNT(*) FROM mailbox WHERE to_key = $1", &[&to_key])?
        .try_get(0)?;
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
    tx.execute(
        "INSERT INTO mailbox (id, to_key, ts, sender, text, payload)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &to_sql(mail.id),
            &to_key,
            &to_sql(mail.ts),
            &mail.from,
            &text,
            &payload,
        ],
    )?;
    *waiting += 1;
    Ok(QueueOutcome::Queued)
}

/// The highest id `to_key` acknowledged (0: none recorded).
fn acknowledged(tx: &mut Transaction<'_>, to_key: &str) -> Result<u64, Error> {
    Ok(tx
        .query_opt(
            "SELECT up_to FROM mailbox_acked WHERE to_key = $1",
            &[&to_key],
        )?
        .map(|r| r.try_get(0).map(from_sql))
        .transpose()?
        .unwrap_or(0))
}

/// Deletes `to_key`'s lines up to `up_to` (acknowledged); on a cluster (`cluster`) records
/// the mark first, for lines other nodes store later ([`queue`], [`waiting`]). Answers how many
/// were deleted.
pub(super) fn delivered(
    tx: &mut Transaction<'_>,
    to_key: &str,
    up_to: u64,
    cluster: bool,
) -> Result<u64, Error> {
    if cluster {
        tx.execute(
            "INSERT INTO mailbox_acked (to_key, up_to) VALUES ($1, $2)
             ON CONFLICT (to_key) DO UPDATE
                 SET up_to = GREATEST(mailbox_acked.up_to, excluded.up_to)",
            &[&to_key, &to_sql(up_to)],
        )?;
    }
    tx.execute(
        "DELETE FROM mailbox WHERE to_key = $1 AND id <= $2",
        &[&to_key, &to_sql(up_to)],
    )
}

/// How many private lines are waiting, all mailboxes together.
pub(super) fn total<C: GenericClient>(c: &mut C) -> Result<u64, Error> {
    c.query_one("SELECT COUNT(*) FROM mailbox", &[])?
        .try_get(0)
        .map(from_sql)
}
