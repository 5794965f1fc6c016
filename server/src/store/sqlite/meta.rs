//! The `meta` table: the highest message id given out, the highest room id given, and when
//! the server last opened the store.

use rusqlite::Connection;

use super::convert::{from_sql, to_sql};

/// Raises the counter `key` in `meta` to `value` (never lowers what is recorded).
fn record_max(tx: &rusqlite::Transaction<'_>, key: &str, value: u64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
    )?
    .execute(rusqlite::params![key, to_sql(value)])?;
    Ok(())
}

/// Records that ids up to `id` were given out (never lowers what is recorded).
pub(super) fn record_last_id(tx: &rusqlite::Transaction<'_>, id: u64) -> rusqlite::Result<()> {
    record_max(tx, "last_id", id)
}

/// The highest message id ever given out: the recorded one, or a higher one still in the
/// history or a mailbox; 0 for a new store.
pub(super) fn last_id(conn: &Connection) -> rusqlite::Result<u64> {
    let last_id: i64 = conn.query_row(
        "SELECT MAX(
            COALESCE((SELECT value FROM meta WHERE key = 'last_id'), 0),
            COALESCE((SELECT MAX(id) FROM history), 0),
            COALESCE((SELECT MAX(id) FROM mailbox), 0))",
        [],
        |r| r.get(0),
    )?;
    Ok(from_sql(last_id))
}

/// Records that room ids up to `id` were given (never lowers what is recorded).
pub(super) fn record_last_room_id(tx: &rusqlite::Transaction<'_>, id: u64) -> rusqlite::Result<()> {
    record_max(tx, "last_room_id", id)
}

/// The highest room id ever given: the recorded one, or a higher one still in `rooms`; at
/// least 1 (the lobby's).
pub(super) fn last_room_id(conn: &Connection) -> rusqlite::Result<u64> {
    let last: i64 = conn.query_row(
        "SELECT MAX(
            1,
            COALESCE((SELECT value FROM meta WHERE key = 'last_room_id'), 1),
            COALESCE((SELECT MAX(id) FROM rooms), 1))",
        [],
        |r| r.get(0),
    )?;
    Ok(from_sql(last).max(1))
}

/// Records that the server opened the store at `now_ms` (ms since the Unix epoch).
pub(super) fn record_opened(tx: &rusqlite::Transaction<'_>, now_ms: u64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('opened_ms', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [to_sql(now_ms)],
    )?;
    Ok(())
}
