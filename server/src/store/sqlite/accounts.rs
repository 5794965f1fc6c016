//! The `accounts` and `account_credentials` tables: who owns which nick (whoever logs in with
//! one of its credentials), deciding and completing logins, and the deletions that free a nick
//! (always with its credentials and its mailbox: a new owner never logs in with the old
//! owner's credentials nor reads the old owner's mail).

use std::collections::{HashMap, HashSet};

use mm_common::confusable::skeleton;
use mm_common::protocol::nick_key;
use rusqlite::{params, Connection, OptionalExtension};
use tracing::info;

use super::convert::{from_sql, to_sql};
use super::failure::best_effort;
use super::{keys, mailbox};
use crate::store::command::{at_bound, Accounts, Counts, Decision};
use crate::store::{Account, Credential, CredentialKind};

/// Decides a login of `nick` with `credential`: one of the account's credentials gets in,
/// another is refused, and a free nick may be registered unless the store is full or the nick
/// looks like a registered one (its confusable skeleton is taken; checked here, in the
/// writer's order, so that two look-alikes registering at once cannot both get in).
///
/// `accounts` is the writer's running count, so that registering does not count the table each
/// time; it is recounted when it says the cap is reached (an admin may have released some).
pub(super) fn evaluate(
    conn: &Connection,
    nick: &str,
    credential: &str,
    max_accounts: usize,
    accounts: &mut u64,
) -> rusqlite::Result<Decision> {
    let key = nick_key(nick);
    let owner: Option<(bool, bool)> = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM account_credentials
                            WHERE nick_key = ?1 AND credential = ?2),
                    returned_ms IS NOT NULL
             FROM accounts WHERE nick_key = ?1",
        )?
        .query_row(params![key, credential], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Decision::decide(
        &mut (),
        owner,
        |_| at_bound(accounts, max_accounts, || count(conn)),
        |_| {
            conn.prepare_cached(
                "SELECT nick FROM accounts WHERE skeleton = ?1 ORDER BY created_ms, nick_key LIMIT 1",
            )?
            .query_row([skeleton(nick)], |r| r.get(0))
            .optional()
        },
    )
}

/// The login's steps ([`crate::store::command::login`]) on SQLite.
impl Accounts for &rusqlite::Transaction<'_> {
    type Error = rusqlite::Error;

    fn evaluate(
        &mut self,
        nick: &str,
        credential: &str,
        max_accounts: usize,
        accounts: &mut u64,
    ) -> rusqlite::Result<Decision> {
        evaluate(self, nick, credential, max_accounts, accounts)
    }

    fn set_returned(&mut self, key: &str, now_ms: u64) -> rusqlite::Result<()> {
        self.prepare_cached("UPDATE accounts SET returned_ms = ?2 WHERE nick_key = ?1")?
            .execute(params![key, to_sql(now_ms)])?;
        Ok(())
    }

    fn seen(&mut self, key: &str, nick: &str, now_ms: u64) -> rusqlite::Result<()> {
        let seen = self
            .prepare_cached("UPDATE accounts SET nick = ?2, last_seen_ms = ?3 WHERE nick_key = ?1")
            .and_then(|mut s| s.execute(params![key, nick, to_sql(now_ms)]));
        best_effort(self, seen, "last-seen time not recorded")
    }

    fn register(
        &mut self,
        key: &str,
        nick: &str,
        credential: &str,
        now_ms: u64,
    ) -> rusqlite::Result<()> {
        self.prepare_cached(
            "INSERT INTO accounts (nick_key, nick, created_ms, last_seen_ms, skeleton)
             VALUES (?1, ?2, ?3, ?3, ?4)",
        )?
        .execute(params![key, nick, to_sql(now_ms), skeleton(nick)])?;
        forget_credentials(self, key)?;
        add_credential(self, key, credential, now_ms)?;
        keys::forget(self, key)
    }

    fn waiting(&mut self, key: &str, limit: usize) -> rusqlite::Result<Vec<crate::store::Mail>> {
        mailbox::waiting(self, key, limit)
    }
}

/// Deletes the account `key`, its credentials and its mailbox if it is still exactly what a
/// registration by `credential` at `created_ms` made (nobody logged in with it since).
pub(super) fn abandon(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    credential: &str,
    created_ms: u64,
    counts: &mut Counts,
) -> rusqlite::Result<()> {
    let deleted = tx
        .prepare_cached(
            "DELETE FROM accounts WHERE nick_key = ?1 AND created_ms = ?3
             AND returned_ms IS NULL
             AND EXISTS (SELECT 1 FROM account_credentials
                         WHERE nick_key = ?1 AND credential = ?2)",
        )?
        .execute(params![key, credential, to_sql(created_ms)])?;
    if deleted > 0 {
        forget_credentials(tx, key)?;
        forget_mailbox(tx, key, counts)?;
        info!("store: a registration whose login did not complete was undone");
    }
    Ok(())
}

/// Deletes up to `limit` unused accounts (see [`crate::store::Store::expire_unused`]), their
/// credentials and their mailboxes; returns their nicks.
pub(super) fn expire(
    tx: &rusqlite::Transaction<'_>,
    cutoff_ms: u64,
    online: &[String],
    limit: usize,
    counts: &mut Counts,
) -> rusqlite::Result<Vec<String>> {
    let online: HashSet<&str> = online.iter().map(String::as_str).collect();
    // Online ones are skipped, so look at that many more.
    let candidates: Vec<(String, String)> = tx
        .prepare_cached(
            "SELECT nick_key, nick FROM accounts
             WHERE returned_ms IS NULL AND created_ms < ?1 AND last_seen_ms < ?1
             ORDER BY created_ms LIMIT ?2",
        )?
        .query_map(
            params![
                to_sql(cutoff_ms),
                to_sql(limit.saturating_add(online.len()) as u64)
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut expired = Vec::new();
    for (key, nick) in candidates {
        if expired.len() >= limit {
            break;
        }
        if online.contains(key.as_str()) {
            continue;
        }
        delete(tx, &key)?;
        forget_mailbox(tx, &key, counts)?;
        expired.push(nick);
    }
    Ok(expired)
}

/// Whether `key` is a registered account.
pub(super) fn exists(conn: &Connection, key: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM accounts WHERE nick_key = ?1")?
        .query_row([key], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Marks the account `key` holding `credential` as returned at `now_ms`, unless it already is:
/// an owner's login answered from a read while commits failed. Required, not best effort:
/// expiry depends on it.
pub(super) fn returned(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    credential: &str,
    now_ms: u64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE accounts SET returned_ms = COALESCE(returned_ms, ?3)
         WHERE nick_key = ?1
         AND EXISTS (SELECT 1 FROM account_credentials
                     WHERE nick_key = ?1 AND credential = ?2)",
    )?
    .execute(params![key, credential, to_sql(now_ms)])?;
    Ok(())
}

/// Records that `key` logged out at `now_ms` (its last-seen time). Best effort (a failure is
/// logged), unless `durable`: the end of a registering connection, from which an unused
/// account's expiry counts, so then a failure fails the batch, which is retried.
pub(super) fn logged_out(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    now_ms: u64,
    durable: bool,
) -> rusqlite::Result<()> {
    let updated = tx
        .prepare_cached("UPDATE accounts SET last_seen_ms = ?2 WHERE nick_key = ?1")
        .and_then(|mut s| s.execute(params![key, to_sql(now_ms)]));
    if durable {
        updated?;
    } else {
        best_effort(tx, updated, "last-seen time not recorded")?;
    }
    Ok(())
}

/// Deletes the account `key` and its credentials, not its mailbox; returns whether there was
/// one. Run it in a transaction: the two go together.
pub(super) fn delete(tx: &Connection, key: &str) -> rusqlite::Result<bool> {
    forget_credentials(tx, key)?;
    Ok(tx
        .prepare_cached("DELETE FROM accounts WHERE nick_key = ?1")?
        .execute([key])?
        > 0)
}

/// Adds `credential` (its kind from its form, [`CredentialKind::of`]) to the account `key` at
/// `now_ms`; one it already holds stays as it was. Registration adds the first; nothing in the
/// protocol adds another yet (tests do, through a connection of their own).
pub(crate) fn add_credential(
    conn: &Connection,
    key: &str,
    credential: &str,
    now_ms: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO account_credentials (nick_key, credential, kind, added_ms)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (nick_key, credential) DO NOTHING",
    )?
    .execute(params![
        key,
        credential,
        CredentialKind::of(credential).as_str(),
        to_sql(now_ms)
    ])?;
    Ok(())
}

/// Deletes every credential of the account `key`.
fn forget_credentials(conn: &Connection, key: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM account_credentials WHERE nick_key = ?1")?
        .execute([key])?;
    Ok(())
}

/// After the account `key` was deleted: deletes its mailbox, and counts both out.
fn forget_mailbox(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    counts: &mut Counts,
) -> rusqlite::Result<()> {
    let mails = mailbox::delete_all(tx, key)?;
    keys::forget(tx, key)?;
    counts.accounts = counts.accounts.saturating_sub(1);
    counts.waiting = counts.waiting.saturating_sub(mails as u64);
    Ok(())
}

/// How many accounts there are.
pub(super) fn count(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))
        .map(from_sql)
}

/// Every account with its credentials (oldest first) and its number of waiting lines, by nick
/// key. Read in one transaction, so that both agree.
pub(super) fn list(conn: &mut Connection) -> rusqlite::Result<Vec<Account>> {
    let tx = conn.transaction()?;
    let mut credentials: HashMap<String, Vec<Credential>> = HashMap::new();
    {
        let mut stmt = tx.prepare(
            "SELECT nick_key, credential, kind, added_ms FROM account_credentials
             ORDER BY nick_key, added_ms, credential",
        )?;
        let rows = stmt.query_map([], |r| {
            let kind: String = r.get(2)?;
            Ok((
                r.get::<_, String>(0)?,
                Credential {
                    kind: if kind == CredentialKind::Key.as_str() {
                        CredentialKind::Key
                    } else {
                        CredentialKind::Certificate
                    },
                    credential: r.get(1)?,
                    added_ms: from_sql(r.get(3)?),
                },
            ))
        })?;
        for row in rows {
            let (key, credential) = row?;
            credentials.entry(key).or_default().push(credential);
        }
    }
    let mut stmt = tx.prepare(
        "SELECT nick_key, nick, created_ms, last_seen_ms, returned_ms,
                (SELECT COUNT(*) FROM mailbox WHERE to_key = accounts.nick_key)
         FROM accounts ORDER BY nick_key",
    )?;
    let rows = stmt.query_map([], |r| {
        let key: String = r.get(0)?;
        Ok(Account {
            nick: r.get(1)?,
            credentials: credentials.remove(&key).unwrap_or_default(),
            created_ms: from_sql(r.get(2)?),
            last_seen_ms: from_sql(r.get(3)?),
            returned_ms: r.get::<_, Option<i64>>(4)?.map(from_sql),
            waiting: from_sql(r.get(5)?),
        })
    })?;
    rows.collect()
}
