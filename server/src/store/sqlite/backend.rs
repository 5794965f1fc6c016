//! The SQLite side of the shared writer ([`crate::store::writer::Backend`]): one connection,
//! one `BEGIN IMMEDIATE` transaction per batch.

use rusqlite::{Connection, TransactionBehavior};
use tracing::warn;

use super::command::apply;
use super::failure::alone;
use super::{accounts, history, mailbox, meta};
use crate::store::command::{Cmd, Counts, Decision, Outcome};
use crate::store::writer::{Backend, Tuning};
use crate::store::{Line, Mail, Options, RoomId};

/// The writer's SQLite connection.
pub struct SqliteBackend {
    pub(crate) conn: Connection,
}

impl Backend for SqliteBackend {
    type Error = rusqlite::Error;

    fn commit(
        &mut self,
        batch: &[Cmd],
        opts: Options,
        counts: &mut Counts,
        outcomes: &mut Vec<Outcome>,
    ) -> rusqlite::Result<()> {
        if !self.conn.is_autocommit() {
            // A transaction left open by an earlier failure (its rollback failed too).
            self.conn.execute_batch("ROLLBACK")?;
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut max_id: u64 = 0;
        let mut appended = Vec::new();
        for cmd in batch {
            cmd.track(&mut max_id, &mut appended);
            outcomes.push(apply(&tx, cmd, opts, counts)?);
        }
        for room in appended {
            // Keep only the newest `history_len` lines of each room that got one.
            let trimmed = history::trim(&tx, room, opts.history_len);
            if let Err(e) = alone(&tx, trimmed)? {
                warn!(error = %e, room = room.0, "store: history not trimmed");
            }
        }
        if max_id > 0 {
            meta::record_last_id(&tx, max_id)?;
        }
        tx.commit()
    }

    fn evaluate(
        &mut self,
        nick: &str,
        credential: &str,
        max_accounts: usize,
        accounts: &mut u64,
    ) -> rusqlite::Result<Decision> {
        accounts::evaluate(&self.conn, nick, credential, max_accounts, accounts)
    }

    fn waiting(&mut self, key: &str, limit: usize) -> rusqlite::Result<Vec<Mail>> {
        mailbox::waiting(&self.conn, key, limit)
    }

    fn recent(&mut self, room: RoomId, n: usize) -> rusqlite::Result<Vec<Line>> {
        history::recent(&self.conn, room, n)
    }

    fn retrying(&mut self, on: bool, tuning: &Tuning) {
        let wait = if on {
            tuning.retry_busy_timeout
        } else {
            tuning.busy_timeout
        };
        if let Err(e) = self.conn.busy_timeout(wait) {
            warn!(error = %e, "store: cannot change the lock wait");
        }
    }

    fn finish(&mut self) {
        // Fold the WAL into the main file so that the store is one file at rest.
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
            warn!(error = %e, "store: final checkpoint failed (the WAL is kept; nothing lost)");
        }
    }
}
