//! `history` in PostgreSQL: each room's most recent public lines (the lobby's are room 1).

use postgres::{Error, GenericClient, Row};

use crate::store::encode::{from_sql, to_sql};
use crate::store::{Line, RoomId};

/// Appends `line` to its room (replacing a line with its id, if any).
pub(super) fn append<C: GenericClient>(c: &mut C, line: &Line) -> Result<u64, Error> {
    c.execute(
        "INSERT INTO history (id, room, ts, sender, text, action) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET room = excluded.room, ts = excluded.ts,
             sender = excluded.sender, text = excluded.text, action = excluded.action",
        &[
            &to_sql(line.id),
            &to_sql(line.room.0),
            &to_sql(line.ts),
            &line.from,
            &line.text,
            &line.action,
        ],
    )
}

/// Keeps only the newest `keep` lines of `room`.
pub(super) fn trim<C: GenericClient>(c: &mut C, room: RoomId, keep: usize) -> Result<u64, Error> {
    c.execute(
        "DELETE FROM history WHERE room = $1 AND id <= (
             SELECT id FROM history WHERE room = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        &[&to_sql(room.0), &to_sql(keep as u64)],
    )
}

/// A row selected as `id, ts, sender, text, action, room`.
fn line(r: &Row) -> Result<Line, Error> {
    Ok(Line {
        id: from_sql(r.try_get(0)?),
        ts: from_sql(r.try_get(1)?),
        from: r.try_get(2)?,
        text: r.try_get(3)?,
        action: r.try_get(4)?,
        room: RoomId(from_sql(r.try_get(5)?)),
    })
}

/// The newest `n` lines of `room`, oldest first.
pub(super) fn recent<C: GenericClient>(
    c: &mut C,
    room: RoomId,
    n: usize,
) -> Result<Vec<Line>, Error> {
    let mut lines = c
        .query(
            "SELECT id, ts, sender, text, action, room FROM history WHERE room = $1
             ORDER BY id DESC LIMIT $2",
            &[&to_sql(room.0), &to_sql(n as u64)],
        )?
        .iter()
        .map(line)
        .collect::<Result<Vec<_>, _>>()?;
    lines.reverse();
    Ok(lines)
}

/// The newest `n` lines of every stored room (not the lobby), by room id, each oldest first.
pub(super) fn recent_by_room<C: GenericClient>(
    c: &mut C,
    n: usize,
) -> Result<Vec<(RoomId, Vec<Line>)>, Error> {
    let mut rooms: Vec<(RoomId, Vec<Line>)> = Vec::new();
    for row in c.query(
        "SELECT id, ts, sender, text, action, room FROM (
             SELECT h.id, h.ts, h.sender, h.text, h.action, h.room,
                    ROW_NUMBER() OVER (PARTITION BY h.room ORDER BY h.id DESC) AS newest
             FROM history h JOIN rooms r ON r.id = h.room) AS t
         WHERE newest <= $1
         ORDER BY room, id",
        &[&to_sql(n as u64)],
    )? {
        let line = line(&row)?;
        match rooms.last_mut() {
            Some((room, lines)) if *room == line.room => lines.push(line),
            _ => rooms.push((line.room, vec![line])),
        }
    }
    Ok(rooms)
}
