//! The `history` table: the room's most recent public lines.

use rusqlite::{params, Connection};

use super::convert::{from_sql, to_sql};
use crate::store::Line;

/// Appends `line` (replacing a line with its id, if any); returns the rows written.
pub(super) fn append(tx: &rusqlite::Transaction<'_>, line: &Line) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO history (id, ts, sender, text) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| {
        s.execute(params![
            to_sql(line.id),
            to_sql(line.ts),
            line.from,
            line.text
        ])
    })
}

/// Keeps only the newest `keep` lines; returns how many it deleted.
pub(super) fn trim(tx: &rusqlite::Transaction<'_>, keep: usize) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "DELETE FROM history WHERE id <= (SELECT id FROM history ORDER BY id DESC LIMIT 1 OFFSET ?1)",
    )
    .and_then(|mut s| s.execute([to_sql(keep as u64)]))
}

/// The newest `n` lines, oldest first.
pub(super) fn recent(conn: &Connection, n: usize) -> rusqlite::Result<Vec<Line>> {
    let mut stmt =
        conn.prepare("SELECT id, ts, sender, text FROM history ORDER BY id DESC LIMIT ?1")?;
    let mut history = stmt
        .query_map([to_sql(n as u64)], |r| {
            Ok(Line {
                room: crate::hub::RoomId::LOBBY,
                action: false,
                id: from_sql(r.get(0)?),
                ts: from_sql(r.get(1)?),
                from: r.get(2)?,
                text: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<Line>>>()?;
    history.reverse();
    Ok(history)
}
