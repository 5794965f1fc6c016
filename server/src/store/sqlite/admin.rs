//! The operations behind `mm-server accounts`: each opens the store file with its own
//! connection (beside a running server's, whose writer waits for it like for any other lock),
//! and is done when it returns.

use std::path::Path;

use mm_common::protocol::nick_key;
use rusqlite::Connection;

use super::schema::{classify, open_connection, prepare};
use super::{accounts, mailbox, SqliteStore};
use crate::store::{Account, StoreError};

impl SqliteStore {
    /// Every account, by nick (for `mm-server accounts list`). Opens the file directly; works
    /// while a server runs.
    ///
    /// # Errors
    /// As [`SqliteStore::open`], or a failed query.
    pub fn list_accounts(path: &Path) -> Result<Vec<Account>, StoreError> {
        let conn = open(path)?;
        accounts::list(&conn).map_err(|e| classify(path, &e))
    }

    /// Frees `nick` (any case): deletes its account and the private lines waiting for it, so a
    /// new owner never reads the old owner's mail. Returns whether there was such an account.
    /// A running server applies it at the nick's next login.
    ///
    /// # Errors
    /// As [`SqliteStore::list_accounts`].
    pub fn release(path: &Path, nick: &str) -> Result<bool, StoreError> {
        let mut conn = open(path)?;
        let key = nick_key(nick);
        let c = |e: rusqlite::Error| classify(path, &e);
        let tx = conn.transaction().map_err(c)?;
        let removed = accounts::delete(&tx, &key).map_err(c)?;
        mailbox::delete_all(&tx, &key).map_err(c)?;
        tx.commit().map_err(c)?;
        Ok(removed)
    }
}

/// A connection of its own to the store at `path`, checked and migrated.
fn open(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = open_connection(path)?;
    prepare(&mut conn, path)?;
    Ok(conn)
}
