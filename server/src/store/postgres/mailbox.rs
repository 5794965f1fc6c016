//! `mailbox` in PostgreSQL: personal lines kept until their recipient acknowledges them.

use postgres::{Error, GenericClient, Transaction};

use crate::store::command::{admit, at_bound, Admit};
use crate::store::encode::{from_sql, to_sql};
use crate::store::{Arrival, Body, Mail, Options, QueueOutcome};

/// The first `limit` lines waiting for `key`, oldest first.
pub(super) fn waiting<C: GenericClient>(
    c: &mut C,
    key: &str,
    limit: usize,
) -> Result<Vec<Mail>, Error> {
    c.query(
        "SELECT id, ts, sender, text, payload FROM mailbox WHERE to_key = $1 ORDER BY id LIMIT $2",
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
pub(super) fn queue(
    tx: &mut Transaction<'_>,
    to_key: &str,
    registered: bool,
    mail: &Mail,
    arrival: Arrival,
    opts: Options,
    waiting: &mut u64,
) -> Result<QueueOutcome, Error> {
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

/// How many private lines are waiting, all mailboxes together.
pub(super) fn total<C: GenericClient>(c: &mut C) -> Result<u64, Error> {
    c.query_one("SELECT COUNT(*) FROM mailbox", &[])?
        .try_get(0)
        .map(from_sql)
}
