//! The `history` table: each room's most recent public lines (the lobby's are room 1).

use rusqlite::{params, Connection};

use super::convert::{from_sql, to_sql};
use crate::store::{Line, RoomId};

/// Appends `line` to its room (replacing a line with its id, if any); returns the rows written.
pub(super) fn append(tx: &rusqlite::Transaction<'_>, line: &Line) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO history (id, room, ts, sender, text, action)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            to_sql(line.id),
            to_sql(line.room.0),
            to_sql(line.ts),
            line.from,
            line.text,
            line.action
        ])
    })
}

/// Keeps only the newest `keep` lines of `room`; returns how many it deleted.
pub(super) fn trim(
    tx: &rusqlite::Transaction<'_>,
    room: RoomId,
    keep: usize,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "DELETE FROM history WHERE room = ?1 AND id <= (
             SELECT id FROM history WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )
    .and_then(|mut s| s.execute(params![to_sql(room.0), to_sql(keep as u64)]))
}

/// Deletes every line of `room`; returns how many.
pub(super) fn delete_room(tx: &Connection, room: RoomId) -> rusqlite::Result<usize> {
    tx.prepare_cached("DELETE FROM history WHERE room = ?1")?
        .execute([to_sql(room.0)])
}

/// A `history` row selected as `id, ts, sender, text, action, room`.
fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Line> {
    Ok(Line {
        id: from_sql(r.get(0)?),
        ts: from_sql(r.get(1)?),
        from: r.get(2)?,
        text: r.get(3)?,
        action: r.get::<_, i64>(4)? != 0,
        room: RoomId(from_sql(r.get(5)?)),
    })
}

/// The newest `n` lines of `room`, oldest first.
pub(super) fn recent(conn: &Connection, room: RoomId, n: usize) -> rusqlite::Result<Vec<Line>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, ts, sender, text, action, room FROM history WHERE room = ?1
         ORDER BY id DESC LIMIT ?2",
    )?;
    let mut history = stmt
        .query_map(params![to_sql(room.0), to_sql(n as u64)], row)?
        .collect::<rusqlite::Result<Vec<Line>>>()?;
    history.reverse();
    Ok(history)
}

/// The newest `n` lines of every room in the `rooms` table (the lobby is not one), in one
/// query: by room id, each room's oldest first; rooms without lines are absent.
pub(super) fn recent_by_room(
    conn: &Connection,
    n: usize,
) -> rusqlite::Result<Vec<(RoomId, Vec<Line>)>> {
    let mut stmt = conn.prepare(
        "SELECT id, ts, sender, text, action, room FROM (
             SELECT h.id, h.ts, h.sender, h.text, h.action, h.room,
                    ROW_NUMBER() OVER (PARTITION BY h.room ORDER BY h.id DESC) AS newest
             FROM history h JOIN rooms r ON r.id = h.room)
         WHERE newest <= ?1
         ORDER BY room, id",
    )?;
    let mut rooms: Vec<(RoomId, Vec<Line>)> = Vec::new();
    for line in stmt.query_map([to_sql(n as u64)], row)? {
        let line = line?;
        match rooms.last_mut() {
            Some((room, lines)) if *room == line.room => lines.push(line),
            _ => rooms.push((line.room, vec![line])),
        }
    }
    Ok(rooms)
}
