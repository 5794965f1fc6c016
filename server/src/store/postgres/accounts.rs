//! `accounts` and `account_credentials` in PostgreSQL: deciding and completing logins, and the
//! deletions that free a nick (always with its credentials, mailbox and keys).

use std::collections::HashSet;

use mm_common::confusable::skeleton;
use mm_common::protocol::nick_key;
use postgres::{Error, GenericClient, Transaction};
use tracing::info;

use super::{keys, mailbox, unit};
use crate::store::command::{at_bound, Accounts, Counts, Decision};
use crate::store::encode::{from_sql, to_sql};
use crate::store::CredentialKind;

/// Decides a login of `nick` with `credential` ([`Decision::decide`]); `accounts` is the
/// writer's running count.
pub(super) fn evaluate<C: GenericClient>(
    c: &mut C,
    nick: &str,
    credential: &str,
    max_accounts: usize,
    accounts: &mut u64,
) -> Result<Decision, Error> {
    let key = nick_key(nick);
    let owner = c
        .query_opt(
            "SELECT EXISTS (SELECT 1 FROM account_credentials
                            WHERE nick_key = $1 AND credential = $2),
                    returned_ms IS NOT NULL
             FROM accounts WHERE nick_key = $1",
            &[&key, &credential],
        )?
        .map(|r| Ok::<_, Error>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()?;
    Decision::decide(
        c,
        owner,
        |c| at_bound(accounts, max_accounts, || count(c)),
        |c| {
            c.query_opt(
                "SELECT nick FROM accounts WHERE skeleton = $1
                 ORDER BY created_ms, nick_key LIMIT 1",
                &[&skeleton(nick)],
            )?
            .map(|r| r.try_get(0))
            .transpose()
        },
    )
}

/// The login's steps ([`crate::store::command::login`]) on PostgreSQL.
impl Accounts for Transaction<'_> {
    type Error = Error;

    fn evaluate(
        &mut self,
        nick: &str,
        credential: &str,
        max_accounts: usize,
        accounts: &mut u64,
    ) -> Result<Decision, Error> {
        evaluate(self, nick, credential, max_accounts, accounts)
    }

    fn set_returned(&mut self, key: &str, now_ms: u64) -> Result<(), Error> {
        self.execute(
            "UPDATE accounts SET returned_ms = $2 WHERE nick_key = $1",
            &[&key, &to_sql(now_ms)],
        )?;
        Ok(())
    }

    fn seen(&mut self, key: &str, nick: &str, now_ms: u64) -> Result<(), Error> {
        let seen = unit(self, |tx| {
            tx.execute(
                "UPDATE accounts SET nick = $2, last_seen_ms = $3 WHERE nick_key = $1",
                &[&key, &nick, &to_sql(now_ms)],
            )
        })?;
        if let Err(e) = seen {
            tracing::warn!(error = %e, "store: last-seen time not recorded");
        }
        Ok(())
    }

    fn register(
        &mut self,
        key: &str,
        nick: &str,
        credential: &str,
        now_ms: u64,
    ) -> Result<(), Error> {
        let now = to_sql(now_ms);
        self.execute(
            "INSERT INTO accounts (nick_key, nick, created_ms, last_seen_ms, skeleton)
             VALUES ($1, $2, $3, $3, $4)",
            &[&key, &nick, &now, &skeleton(nick)],
        )?;
        forget_credentials(self, key)?;
        self.execute(
            "INSERT INTO account_credentials (nick_key, credential, kind, added_ms)
             VALUES ($1, $2, $3, $4) ON CONFLICT (nick_key, credential) DO NOTHING",
            &[
                &key,
                &credential,
                &CredentialKind::of(credential).as_str(),
                &now,
            ],
        )?;
        keys::forget(self, key)
    }

    fn waiting(&mut self, key: &str, limit: usize) -> Result<Vec<crate::store::Mail>, Error> {
        mailbox::waiting(self, key, limit)
    }
}

/// Deletes the account `key` with its credentials, mailbox and keys if it is still exactly what
/// a registration by `credential` at `created_ms` made.
pub(super) fn abandon(
    tx: &mut Transaction<'_>,
    key: &str,
    credential: &str,
    created_ms: u64,
    counts: &mut Counts,
) -> Result<(), Error> {
    let deleted = tx.execute(
        "DELETE FROM accounts WHERE nick_key = $1 AND created_ms = $3
         AND returned_ms IS NULL
         AND EXISTS (SELECT 1 FROM account_credentials
                     WHERE nick_key = $1 AND credential = $2)",
        &[&key, &credential, &to_sql(created_ms)],
    )?;
    if deleted > 0 {
        forget_credentials(tx, key)?;
        forget_mailbox(tx, key, counts)?;
        info!("store: a registration whose login did not complete was undone");
    }
    Ok(())
}

/// Deletes up to `limit` unused accounts not in `online`; returns their nicks.
pub(super) fn expire(
    tx: &mut Transaction<'_>,
    cutoff_ms: u64,
    online: &[String],
    limit: usize,
    counts: &mut Counts,
) -> Result<Vec<String>, Error> {
    let online: HashSet<&str> = online.iter().map(String::as_str).collect();
    let rows = tx.query(
        "SELECT nick_key, nick FROM accounts
         WHERE returned_ms IS NULL AND created_ms < $1 AND last_seen_ms < $1
         ORDER BY created_ms LIMIT $2",
        &[
            &to_sql(cutoff_ms),
            &to_sql(limit.saturating_add(online.len()) as u64),
        ],
    )?;
    let mut expired = Vec::new();
    for row in rows {
        let (key, nick): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        if expired.len() >= limit {
            break;
        }
        if online.contains(key.as_str()) {
            continue;
        }
        forget_credentials(tx, &key)?;
        tx.execute("DELETE FROM accounts WHERE nick_key = $1", &[&key])?;
        forget_mailbox(tx, &key, counts)?;
        expired.push(nick);
    }
    Ok(expired)
}

/// Whether `key` is a registered account.
pub(super) fn exists<C: GenericClient>(c: &mut C, key: &str) -> Result<bool, Error> {
    Ok(
        c.query_opt("SELECT 1 FROM accounts WHERE nick_key = $1", &[&key])?
            .is_some(),
    )
}

/// Marks the account `key` holding `credential` as returned at `now_ms`, unless it already is.
pub(super) fn returned(
    tx: &mut Transaction<'_>,
    key: &str,
    credential: &str,
    now_ms: u64,
) -> Result<(), Error> {
    tx.execute(
        "UPDATE accounts SET returned_ms = COALESCE(returned_ms, $3)
         WHERE nick_key = $1
         AND EXISTS (SELECT 1 FROM account_credentials
                     WHERE nick_key = $1 AND credential = $2)",
        &[&key, &credential, &to_sql(now_ms)],
    )?;
    Ok(())
}

/// Records that `key` logged out at `now_ms`.
pub(super) fn logged_out(tx: &mut Transaction<'_>, key: &str, now_ms: u64) -> Result<u64, Error> {
    tx.execute(
        "UPDATE accounts SET last_seen_ms = $2 WHERE nick_key = $1",
        &[&key, &to_sql(now_ms)],
    )
}

fn forget_credentials(tx: &mut Transaction<'_>, key: &str) -> Result<(), Error> {
    tx.execute(
        "DELETE FROM account_credentials WHERE nick_key = $1",
        &[&key],
    )?;
    Ok(())
}

/// After the account `key` was deleted: deletes its mailbox and keys, and counts both out.
fn forget_mailbox(tx: &mut Transaction<'_>, key: &str, counts: &mut Counts) -> Result<(), Error> {
    let mails = tx.execute("DELETE FROM mailbox WHERE to_key = $1", &[&key])?;
    keys::forget(tx, key)?;
    counts.accounts = counts.accounts.saturating_sub(1);
    counts.waiting = counts.waiting.saturating_sub(mails);
    Ok(())
}

/// How many accounts there are.
pub(super) fn count<C: GenericClient>(c: &mut C) -> Result<u64, Error> {
    c.query_one("SELECT COUNT(*) FROM accounts", &[])?
        .try_get(0)
        .map(from_sql)
}
