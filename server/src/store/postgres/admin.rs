//! What `mm-server accounts` does on a PostgreSQL store: a connection of its own beside a
//! running server's, one transaction per command. (`mm-server rooms` is not done on
//! PostgreSQL yet: the command says so.)

use std::collections::HashMap;

use mm_common::protocol::nick_key;
use postgres::{Client, Error};

use super::{describe, keys, off_runtime, schema, PgStore, PgTarget};
use crate::store::encode::from_sql;
use crate::store::{Account, Credential, CredentialKind, StoreError};

/// Connects to the store for a command, which needs its schema made by a server first.
fn open(target: &PgTarget) -> Result<Client, StoreError> {
    let shown = target.to_string();
    let mut client = target.connect().map_err(|e| StoreError::Open {
        path: shown.clone().into(),
        detail: e.to_string(),
    })?;
    let version = schema::version(&mut client).map_err(|e| StoreError::Open {
        path: shown.clone().into(),
        detail: describe(&e),
    })?;
    match version {
        0 => Err(StoreError::Open {
            path: shown.into(),
            detail: "no store in this database yet (the server creates it on first start)".into(),
        }),
        v if v > schema::SCHEMA_VERSION => Err(StoreError::TooNew {
            path: shown.into(),
            found: v,
            known: schema::SCHEMA_VERSION,
        }),
        _ => Ok(client),
    }
}

impl PgStore {
    /// Every account, by nick key (for `mm-server accounts list`), read in one transaction.
    /// Works while a server runs. Blocking.
    ///
    /// # Errors
    /// As [`PgStore::open`], or a failed query.
    pub fn list_accounts(target: &PgTarget) -> Result<Vec<Account>, StoreError> {
        off_runtime(|| {
            let mut client = open(target)?;
            list(&mut client).map_err(|e| StoreError::Failed(describe(&e)))
        })
    }

    /// Frees `nick` (any case): deletes its account, credentials, waiting lines and keys in one
    /// transaction. Returns whether there was such an account. Blocking.
    ///
    /// # Errors
    /// As [`PgStore::list_accounts`].
    pub fn release(target: &PgTarget, nick: &str) -> Result<bool, StoreError> {
        let key = nick_key(nick);
        off_runtime(|| {
            let mut client = open(target)?;
            let mut released = || -> Result<bool, Error> {
                let mut tx = client.transaction()?;
                tx.execute(
                    "DELETE FROM account_credentials WHERE nick_key = $1",
                    &[&key],
                )?;
                let removed = tx.execute("DELETE FROM accounts WHERE nick_key = $1", &[&key])?;
                tx.execute("DELETE FROM mailbox WHERE to_key = $1", &[&key])?;
                keys::forget(&mut tx, &key)?;
                tx.commit()?;
                Ok(removed > 0)
            };
            released().map_err(|e| StoreError::Failed(describe(&e)))
        })
    }
}

/// Every account with its credentials (oldest first) and its number of waiting lines.
fn list(client: &mut Client) -> Result<Vec<Account>, Error> {
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let mut credentials: HashMap<String, Vec<Credential>> = HashMap::new();
    for r in tx.query(
        "SELECT nick_key, credential, kind, added_ms FROM account_credentials
         ORDER BY nick_key, added_ms, credential",
        &[],
    )? {
        let kind: String = r.try_get(2)?;
        credentials
            .entry(r.try_get(0)?)
            .or_default()
            .push(Credential {
                kind: if kind == CredentialKind::Key.as_str() {
                    CredentialKind::Key
                } else {
                    CredentialKind::Certificate
                },
                credential: r.try_get(1)?,
                added_ms: from_sql(r.try_get(3)?),
            });
    }
    let accounts = tx
        .query(
            "SELECT nick_key, nick, created_ms, last_seen_ms, returned_ms,
                    (SELECT COUNT(*) FROM mailbox WHERE to_key = accounts.nick_key)
             FROM accounts ORDER BY nick_key",
            &[],
        )?
        .iter()
        .map(|r| {
            let key: String = r.try_get(0)?;
            Ok(Account {
                nick: r.try_get(1)?,
                credentials: credentials.remove(&key).unwrap_or_default(),
                created_ms: from_sql(r.try_get(2)?),
                last_seen_ms: from_sql(r.try_get(3)?),
                returned_ms: r.try_get::<_, Option<i64>>(4)?.map(from_sql),
                waiting: from_sql(r.try_get(5)?),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    tx.commit()?;
    Ok(accounts)
}
