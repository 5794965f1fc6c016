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
           AND NOT EXISTS (SELECT 1 FROM mailbox_acked a WHERE a.to_key = $1 AND a.id = mailbox.id)
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
    if cluster && acknowledged(tx, to_key, mail.id)? {
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

/// Whether `to_key` acknowledged the line `id` lately (on a cluster: it came live through
/// another node, whose acknowledgement was stored first).
fn acknowledged(tx: &mut Transaction<'_>, to_key: &str, id: u64) -> Result<bool, Error> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM mailbox_acked WHERE to_key = $1 AND id = $2",
            &[&to_key, &to_sql(id)],
        )?
        .is_some())
}

/// How long a node of a cluster remembers an acknowledged id (for a line another node stores
/// late): far beyond a commit's lag.
const ACKED_KEPT_SECS: f64 = 600.0;

/// Deletes `to_key`'s lines up to `up_to` (acknowledged; one server: every line up to there
/// was given). Answers how many were deleted.
pub(super) fn delivered(tx: &mut Transaction<'_>, to_key: &str, up_to: u64) -> Result<u64, Error> {
    tx.execute(
        "DELETE FROM mailbox WHERE to_key = $1 AND id <= $2",
        &[&to_key, &to_sql(up_to)],
    )
}

/// On a node of a cluster: deletes the lines `given` to `to_key`'s connection that it
/// acknowledged, and only those — another node may store a line with a lower id late, that the
/// connection was never given: it stays for the next login. The ids are remembered for
/// [`ACKED_KEPT_SECS`], for a line stored after its acknowledgement ([`queue`], [`waiting`]).
/// Answers how many were deleted.
pub(super) fn delivered_ids(
    tx: &mut Transaction<'_>,
    to_key: &str,
    given: &[u64],
) -> Result<u64, Error> {
    if given.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = given.iter().map(|&id| to_sql(id)).collect();
    tx.execute(
        "INSERT INTO mailbox_acked (to_key, id) SELECT $1, unnest($2::BIGINT[])
         ON CONFLICT (to_key, id) DO NOTHING",
        &[&to_key, &ids],
    )?;
    tx.execute(
        "DELETE FROM mailbox_acked
         WHERE to_key = $1 AND at < now() - make_interval(secs => $2)",
        &[&to_key, &ACKED_KEPT_SECS],
    )?;
    tx.execute(
        "DELETE FROM mailbox WHERE to_key = $1 AND id = ANY($2)",
        &[&to_key, &ids],
    )
}

/// How many private lines are waiting, all mailboxes together.
pub(super) fn total<C: GenericClient>(c: &mut C) -> Result<u64, Error> {
    c.query_one("SELECT COUNT(*) FROM mailbox", &[])?
        .try_get(0)
        .map(from_sql)
}
