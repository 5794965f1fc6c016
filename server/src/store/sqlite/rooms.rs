//! The rooms tables: `rooms`, `room_members`, `room_bans`, `room_invites` (applying a
//! [`RoomChange`], loading them all at start), and `room_requests` (what `mm-server rooms`
//! asks of a running server).

use std::collections::HashMap;

use mm_common::protocol::Role;
use rusqlite::{params, Connection, OptionalExtension};

use super::convert::{from_sql, to_sql};
use super::{history, meta};
use crate::store::encode::{
    modes_bits, modes_from_bits, request_from_row, role_from_sql, role_to_sql,
};
use crate::store::{MemberRecord, RoomChange, RoomId, RoomRecord, RoomRequest};

/// Applies `change` inside the writer's transaction. A change to a room that is not (or no
/// longer) stored writes nothing.
pub(super) fn apply(tx: &rusqlite::Transaction<'_>, change: &RoomChange) -> rusqlite::Result<()> {
    match change {
        RoomChange::Create(room) => create(tx, room),
        RoomChange::Join(room, member) => {
            join(tx, *room, member)?;
            tx.prepare_cached("DELETE FROM room_invites WHERE room = ?1 AND key = ?2")?
                .execute(params![to_sql(room.0), member.key])?;
            Ok(())
        }
        RoomChange::Part(room, key) => {
            tx.prepare_cached("DELETE FROM room_members WHERE room = ?1 AND key = ?2")?
                .execute(params![to_sql(room.0), key])?;
            Ok(())
        }
        RoomChange::Seen(marks) => {
            let mut update = tx
                .prepare_cached("UPDATE room_members SET seen = ?3 WHERE room = ?1 AND key = ?2")?;
            for (room, key, seen) in marks {
                update.execute(params![to_sql(room.0), key, to_sql(*seen)])?;
            }
            Ok(())
        }
        RoomChange::Topic(room, topic, by, ts) => {
            tx.prepare_cached(
                "UPDATE rooms SET topic = ?2, topic_by = ?3, topic_ts = ?4 WHERE id = ?1",
            )?
            .execute(params![to_sql(room.0), topic, by, to_sql(*ts)])?;
            Ok(())
        }
        RoomChange::Modes(room, modes) => {
            tx.prepare_cached("UPDATE rooms SET modes = ?2 WHERE id = ?1")?
                .execute(params![to_sql(room.0), modes_bits(*modes)])?;
            Ok(())
        }
        RoomChange::Ban(room, key, on) => {
            mark(tx, "room_bans", *room, key, *on)?;
            if *on {
                // A ban removes the member and its invitation in the same step.
                for table in ["room_members", "room_invites"] {
                    mark(tx, table, *room, key, false)?;
                }
            }
            Ok(())
        }
        RoomChange::Invite(room, key, on) => mark(tx, "room_invites", *room, key, *on),
        RoomChange::Active(room, ms) => {
            tx.prepare_cached("UPDATE rooms SET active_ms = MAX(active_ms, ?2) WHERE id = ?1")?
                .execute(params![to_sql(room.0), to_sql(*ms)])?;
            Ok(())
        }
        RoomChange::Delete(room) => delete(tx, *room).map(drop),
        // One server: no other node stores them.
        RoomChange::Ordered(_, changes) => changes.iter().try_for_each(|c| apply(tx, c)),
    }
}

/// Stores a new room with its members, bans and invitations, and records its id as given.
fn create(tx: &rusqlite::Transaction<'_>, room: &RoomRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO rooms (id, key, name, topic, topic_by, topic_ts, modes, created_ms, active_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        to_sql(room.id.0),
        mm_common::protocol::room_key(&room.name),
        room.name,
        room.topic,
        room.topic_by,
        to_sql(room.topic_ts),
        modes_bits(room.modes),
        to_sql(room.created_ms),
        to_sql(room.active_ms)
    ])?;
    for member in &room.members {
        join(tx, room.id, member)?;
    }
    for key in &room.bans {
        mark(tx, "room_bans", room.id, key, true)?;
    }
    for key in &room.invites {
        mark(tx, "room_invites", room.id, key, true)?;
    }
    meta::record_last_room_id(tx, room.id.0)
}

/// Adds `member` to `room` if the room is stored, or replaces its nick, standing and `seen`.
fn join(tx: &Connection, room: RoomId, member: &MemberRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO room_members (room, key, nick, role, seen)
         SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM rooms WHERE id = ?1)
         ON CONFLICT (room, key) DO UPDATE
             SET nick = excluded.nick, role = excluded.role, seen = excluded.seen",
    )?
    .execute(params![
        to_sql(room.0),
        member.key,
        member.nick,
        role_to_sql(member.role),
        to_sql(member.seen)
    ])?;
    Ok(())
}

/// Adds (`on`) or removes the nick key `key` in `table` (`room_bans` or `room_invites`) for
/// `room`; adds only to a stored room.
fn mark(tx: &Connection, table: &str, room: RoomId, key: &str, on: bool) -> rusqlite::Result<()> {
    let sql = if on {
        format!(
            "INSERT OR IGNORE INTO {table} (room, key)
             SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM rooms WHERE id = ?1)"
        )
    } else {
        format!("DELETE FROM {table} WHERE room = ?1 AND key = ?2")
    };
    tx.prepare_cached(&sql)?
        .execute(params![to_sql(room.0), key])?;
    Ok(())
}

/// What deleting a room removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Deleted {
    /// Its members.
    pub(super) members: usize,
    /// Its lines of history.
    pub(super) lines: usize,
}

/// Deletes `room` with its members, bans, invitations and history (its id stays given).
pub(super) fn delete(tx: &Connection, room: RoomId) -> rusqlite::Result<Deleted> {
    let id = to_sql(room.0);
    tx.prepare_cached("DELETE FROM rooms WHERE id = ?1")?
        .execute([id])?;
    let members = tx
        .prepare_cached("DELETE FROM room_members WHERE room = ?1")?
        .execute([id])?;
    tx.prepare_cached("DELETE FROM room_bans WHERE room = ?1")?
        .execute([id])?;
    tx.prepare_cached("DELETE FROM room_invites WHERE room = ?1")?
        .execute([id])?;
    let lines = history::delete_room(tx, room)?;
    Ok(Deleted { members, lines })
}

/// Every stored room with its members (by nick key), bans and invitations, by id: one query
/// per table.
pub(super) fn load(conn: &Connection) -> rusqlite::Result<Vec<RoomRecord>> {
    let mut rooms: Vec<RoomRecord> = conn
        .prepare(
            "SELECT id, name, topic, topic_by, topic_ts, modes, created_ms, active_ms
             FROM rooms ORDER BY id",
        )?
        .query_map([], |r| {
            Ok(RoomRecord {
                id: RoomId(from_sql(r.get(0)?)),
                name: r.get(1)?,
                topic: r.get(2)?,
                topic_by: r.get(3)?,
                topic_ts: from_sql(r.get(4)?),
                modes: modes_from_bits(r.get(5)?),
                created_ms: from_sql(r.get(6)?),
                active_ms: from_sql(r.get(7)?),
                members: Vec::new(),
                bans: Vec::new(),
                invites: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let index: HashMap<RoomId, usize> = rooms.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    let mut members =
        conn.prepare("SELECT room, key, nick, role, seen FROM room_members ORDER BY room, key")?;
    let members = members.query_map([], |r| {
        Ok((
            RoomId(from_sql(r.get(0)?)),
            MemberRecord {
                key: r.get(1)?,
                nick: r.get(2)?,
                role: role_from_sql(r.get(3)?),
                seen: from_sql(r.get(4)?),
            },
        ))
    })?;
    for member in members {
        let (room, member) = member?;
        // Rows of a room that is gone are left over from nothing this build writes; skipped.
        if let Some(&i) = index.get(&room) {
            rooms[i].members.push(member);
        }
    }
    for (table, bans) in [("room_bans", true), ("room_invites", false)] {
        let mut stmt =
            conn.prepare(&format!("SELECT room, key FROM {table} ORDER BY room, key"))?;
        let keys = stmt.query_map([], |r| Ok((RoomId(from_sql(r.get(0)?)), r.get(1)?)))?;
        for key in keys {
            let (room, key): (RoomId, String) = key?;
            if let Some(&i) = index.get(&room) {
                if bans {
                    rooms[i].bans.push(key);
                } else {
                    rooms[i].invites.push(key);
                }
            }
        }
    }
    Ok(rooms)
}

/// The id and name of the room whose key ([`mm_common::protocol::room_key`]) is `key`.
pub(super) fn find(conn: &Connection, key: &str) -> rusqlite::Result<Option<(RoomId, String)>> {
    conn.prepare_cached("SELECT id, name FROM rooms WHERE key = ?1")?
        .query_row([key], |r| Ok((RoomId(from_sql(r.get(0)?)), r.get(1)?)))
        .optional()
}

/// A member's nick (as spelled) and standing.
pub(super) fn member(
    conn: &Connection,
    room: RoomId,
    key: &str,
) -> rusqlite::Result<Option<(String, Role)>> {
    conn.prepare_cached("SELECT nick, role FROM room_members WHERE room = ?1 AND key = ?2")?
        .query_row(params![to_sql(room.0), key], |r| {
            Ok((r.get(0)?, role_from_sql(r.get(1)?)))
        })
        .optional()
}

/// Makes the member `key` of `room` its owner and every other owner an operator; returns the
/// nicks of those demoted. The caller has checked that `key` is a member.
pub(super) fn set_owner(tx: &Connection, room: RoomId, key: &str) -> rusqlite::Result<Vec<String>> {
    let id = to_sql(room.0);
    let previous: Vec<String> = tx
        .prepare_cached(
            "SELECT nick FROM room_members WHERE room = ?1 AND role = ?2 AND key != ?3 ORDER BY key",
        )?
        .query_map(params![id, role_to_sql(Role::Owner), key], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    tx.prepare_cached(
        "UPDATE room_members SET role = ?2 WHERE room = ?1 AND role = ?3 AND key != ?4",
    )?
    .execute(params![
        id,
        role_to_sql(Role::Op),
        role_to_sql(Role::Owner),
        key
    ])?;
    tx.prepare_cached("UPDATE room_members SET role = ?2 WHERE room = ?1 AND key = ?3")?
        .execute(params![id, role_to_sql(Role::Owner), key])?;
    Ok(previous)
}

/// Queues a request for a running server; returns its id.
pub(super) fn request(
    conn: &Connection,
    kind: &str,
    room_key: &str,
    nick: &str,
) -> rusqlite::Result<i64> {
    conn.prepare_cached("INSERT INTO room_requests (kind, room_key, nick) VALUES (?1, ?2, ?3)")?
        .execute(params![kind, room_key, nick])?;
    Ok(conn.last_insert_rowid())
}

/// Whether the request `id` still waits for the server.
pub(super) fn request_pending(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM room_requests WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
}

/// Takes every pending request, in id order: reads and deletes them. A request of a kind this
/// build does not know (never written by it) is logged and dropped.
pub(super) fn take_requests(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<Vec<RoomRequest>> {
    let rows: Vec<(i64, String, String, String)> = tx
        .prepare_cached("SELECT id, kind, room_key, nick FROM room_requests ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let Some(&(last, ..)) = rows.last() else {
        return Ok(Vec::new());
    };
    tx.prepare_cached("DELETE FROM room_requests WHERE id <= ?1")?
        .execute([last])?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, kind, room_key, nick)| request_from_row(id, &kind, room_key, nick))
        .collect())
}
