//! How a failure inside a batch's transaction is sorted: the database's (busy, locked, full,
//! read-only, an I/O error: the whole batch is retried) or the operation's own (a constraint, a
//! value out of range: retrying would fail the same way, so it is that operation's answer and
//! the batch goes on).

use rusqlite::{Connection, ErrorCode};
use tracing::warn;

use super::Counts;
use crate::store::StoreError;

/// Sorts a statement's failure: `Err` if the database failed (busy, locked, full, read-only, an
/// I/O error, ...: the batch is retried whole), `Ok(Err)` if only this operation did (a
/// constraint, a value out of range: retrying would fail the same way, so it is answered as a
/// failure and the batch goes on).
pub(super) fn alone<T>(
    tx: &Connection,
    r: rusqlite::Result<T>,
) -> rusqlite::Result<Result<T, rusqlite::Error>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        // SQLite may roll the whole transaction back on some errors: then nothing of it holds.
        Err(e) if database_failed(&e) || tx.is_autocommit() => Err(e),
        Err(e) => Ok(Err(e)),
    }
}

/// A write whose failure is only logged (even a database failure: a read-only or full store
/// must not fail a login over its last-seen time), unless SQLite rolled the whole transaction
/// back, which fails the batch.
pub(super) fn best_effort(
    tx: &Connection,
    r: rusqlite::Result<usize>,
    what: &str,
) -> rusqlite::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if tx.is_autocommit() => Err(e),
        Err(e) => {
            warn!(error = %e, "store: {what}");
            Ok(())
        }
    }
}

/// Whether the failure is the database's (and may pass) rather than the operation's own.
fn database_failed(e: &rusqlite::Error) -> bool {
    !matches!(
        e.sqlite_error_code(),
        None | Some(
            ErrorCode::ConstraintViolation
                | ErrorCode::TypeMismatch
                | ErrorCode::TooBig
                | ErrorCode::ParameterOutOfRange
                | ErrorCode::ApiMisuse
        )
    )
}

/// An operation's own failure as its answer.
pub(super) fn failed(e: rusqlite::Error) -> StoreError {
    StoreError::Failed(e.to_string())
}

/// Runs `f` as one unit inside the batch's transaction: if it fails on its own (see
/// [`alone`]), whatever it wrote is rolled back and the running counts are as before; if the
/// database fails, the whole batch is retried as usual.
pub(super) fn atomically<T>(
    tx: &rusqlite::Transaction<'_>,
    counts: &mut Counts,
    f: impl FnOnce(&mut Counts) -> rusqlite::Result<T>,
) -> rusqlite::Result<Result<T, rusqlite::Error>> {
    tx.execute_batch("SAVEPOINT unit")?;
    let mut scratch = *counts;
    match alone(tx, f(&mut scratch))? {
        Ok(value) => {
            tx.execute_batch("RELEASE unit")?;
            *counts = scratch;
            Ok(Ok(value))
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO unit; RELEASE unit")?;
            Ok(Err(e))
        }
    }
}
