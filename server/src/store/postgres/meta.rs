//! `meta` in PostgreSQL: the highest message id given out, the highest room id given, when
//! the server last opened the store, and the number of the last batch committed
//! (`batch_seq`, to tell whether a commit whose answer was lost happened).

use postgres::{Error, GenericClient};

use crate::store::encode::{from_sql, to_sql};

/// Raises the counter `key` to `value` (never lowers what is recorded).
pub(super) fn record_max<C: GenericClient>(c: &mut C, key: &str, value: u64) -> Result<(), Error> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = GREATEST(meta.value, excluded.value)",
        &[&key, &to_sql(value)],
    )?;
    Ok(())
}

/// The highest message id ever given out (recorded, or still in the history or a mailbox).
pub(super) fn last_id<C: GenericClient>(c: &mut C) -> Result<u64, Error> {
    c.query_one(
        "SELECT GREATEST(
            COALESCE((SELECT value FROM meta WHERE key = 'last_id'), 0),
            COALESCE((SELECT MAX(id) FROM history), 0),
            COALESCE((SELECT MAX(id) FROM mailbox), 0))",
        &[],
    )?
    .try_get(0)
    .map(from_sql)
}

/// The highest room id ever given; at least 1 (the lobby's).
pub(super) fn last_room_id<C: GenericClient>(c: &mut C) -> Result<u64, Error> {
    c.query_one(
        "SELECT GREATEST(
            1,
            COALESCE((SELECT value FROM meta WHERE key = 'last_room_id'), 1),
            COALESCE((SELECT MAX(id) FROM rooms), 1))",
        &[],
    )?
    .try_get(0)
    .map(|v: i64| from_sql(v).max(1))
}

/// Records that the server opened the store at `now_ms`.
pub(super) fn record_opened<C: GenericClient>(c: &mut C, now_ms: u64) -> Result<(), Error> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES ('opened_ms', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&to_sql(now_ms)],
    )?;
    Ok(())
}

/// Sets the counter `key` to `value`.
pub(super) fn set<C: GenericClient>(c: &mut C, key: &str, value: i64) -> Result<(), Error> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&key, &value],
    )?;
    Ok(())
}

/// The counter `key`; 0 if never set.
pub(super) fn value<C: GenericClient>(c: &mut C, key: &str) -> Result<i64, Error> {
    c.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
        .map_or(Ok(0), |r| r.try_get(0))
}
