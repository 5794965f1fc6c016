//! The rooms tables in PostgreSQL: `rooms`, `room_members`, `room_bans`, `room_invites`
//! (applying a [`RoomChange`], loading them all at start) and `room_requests`.

use std::collections::HashMap;

use postgres::{Error, GenericClient, Transaction};

use super::meta;
use crate::store::encode::{
    from_sql, modes_bits, modes_from_bits, request_from_row, role_from_sql, role_to_sql, to_sql,
};
use crate::store::{MemberRecord, RoomChange, RoomId, RoomRecord, RoomRequest};

/// The tables that hold a set of nick keys per room.
#[derive(Clone, Copy)]
enum Set {
    Bans,
    Invites,
    Members,
}

/// Applies `change`; a change to a room that is not stored writes nothing.
pub(super) fn apply(tx: &mut Transaction<'_>, change: &RoomChange) -> Result<(), Error> {
    match change {
        RoomChange::Create(room) => create(tx, room),
        RoomChange::Join(room, member) => {
            join(tx, *room, member)?;
            mark(tx, Set::Invites, *room, &member.key, false)
        }
        RoomChange::Part(room, key) => mark(tx, Set::Members, *room, key, false),
        RoomChange::Seen(marks) => {
            let update =
                tx.prepare("UPDATE room_members SET seen = $3 WHERE room = $1 AND key = $2")?;
            for (room, key, seen) in marks {
                tx.execute(&update, &[&to_sql(room.0), key, &to_sql(*seen)])?;
            }
            Ok(())
        }
        RoomChange::Topic(room, topic, by, ts) => {
            tx.execute(
                "UPDATE rooms SET topic = $2, topic_by = $3, topic_ts = $4 WHERE id = $1",
                &[&to_sql(room.0), topic, by, &to_sql(*ts)],
            )?;
            Ok(())
        }
        RoomChange::Modes(room, modes) => {
            tx.execute(
                "UPDATE rooms SET modes = $2 WHERE id = $1",
                &[&to_sql(room.0), &modes_bits(*modes)],
            )?;
            Ok(())
        }
        RoomChange::Ban(room, key, on) => {
            mark(tx, Set::Bans, *room, key, *on)?;
            if *on {
                // A ban removes the member and its invitation in the same step.
                mark(tx, Set::Members, *room, key, false)?;
                mark(tx, Set::Invites, *room, key, false)?;
            }
            Ok(())
        }
        RoomChange::Invite(room, key, on) => mark(tx, Set::Invites, *room, key, *on),
        RoomChange::Active(room, ms) => {
            tx.execute(
                "UPDATE rooms SET active_ms = GREATEST(active_ms, $2) WHERE id = $1",
                &[&to_sql(room.0), &to_sql(*ms)],
            )?;
            Ok(())
        }
        RoomChange::Ordered(id, changes) => {
            // One statement decides and records, under the row's lock: of two nodes storing
            // the same event, the second finds the id recorded and writes nothing.
            let first = tx
                .query_opt(
                    "INSERT INTO meta (key, value) VALUES ('rooms_applied', $1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value
                     WHERE meta.value < excluded.value
                     RETURNING value",
                    &[&to_sql(*id)],
                )?
                .is_some();
            if first {
                for change in changes {
                    apply(tx, change)?;
                }
            }
            Ok(())
        }
        RoomChange::Delete(room) => {
            let id = to_sql(room.0);
            tx.execute("DELETE FROM rooms WHERE id = $1", &[&id])?;
            for table in ["room_members", "room_bans", "room_invites", "history"] {
                tx.execute(&format!("DELETE FROM {table} WHERE room = $1"), &[&id])?;
            }
            Ok(())
        }
    }
}

fn create(tx: &mut Transaction<'_>, room: &RoomRecord) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO rooms (id, key, name, topic, topic_by, topic_ts, modes, created_ms, active_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &to_sql(room.id.0),
            &mm_common::protocol::room_key(&room.name),
            &room.name,
            &room.topic,
            &room.topic_by,
            &to_sql(room.topic_ts),
            &modes_bits(room.modes),
            &to_sql(room.created_ms),
            &to_sql(room.active_ms),
        ],
    )?;
    for member in &room.members {
        join(tx, room.id, member)?;
    }
    for key in &room.bans {
        mark(tx, Set::Bans, room.id, key, true)?;
    }
    for key in &room.invites {
        mark(tx, Set::Invites, room.id, key, true)?;
    }
    meta::record_max(tx, "last_room_id", room.id.0)
}

/// Adds `member` to a stored `room`, or replaces its nick, standing and `seen`.
fn join(tx: &mut Transaction<'_>, room: RoomId, member: &MemberRecord) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO room_members (room, key, nick, role, seen)
         SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM rooms WHERE id = $1)
         ON CONFLICT (room, key) DO UPDATE
             SET nick = excluded.nick, role = excluded.role, seen = excluded.seen",
        &[
            &to_sql(room.0),
            &member.key,
            &member.nick,
            &role_to_sql(member.role),
            &to_sql(member.seen),
        ],
    )?;
    Ok(())
}

/// Adds (`on`, to a stored room only; not members) or removes `key` in `set` for `room`.
fn mark(
    tx: &mut Transaction<'_>,
    set: Set,
    room: RoomId,
    key: &str,
    on: bool,
) -> Result<(), Error> {
    let table = match set {
        Set::Bans => "room_bans",
        Set::Invites => "room_invites",
        Set::Members => "room_members",
    };
    let sql = if on {
        format!(
            "INSERT INTO {table} (room, key)
             SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM rooms WHERE id = $1)
             ON CONFLICT (room, key) DO NOTHING"
        )
    } else {
        format!("DELETE FROM {table} WHERE room = $1 AND key = $2")
    };
    tx.execute(&sql, &[&to_sql(room.0), &key])?;
    Ok(())
}

/// Every stored room with its members, bans and invitations, by id.
pub(super) fn load<C: GenericClient>(c: &mut C) -> Result<Vec<RoomRecord>, Error> {
    let mut rooms = c
        .query(
            "SELECT id, name, topic, topic_by, topic_ts, modes, created_ms, active_ms
             FROM rooms ORDER BY id",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(RoomRecord {
                id: RoomId(from_sql(r.try_get(0)?)),
                name: r.try_get(1)?,
                topic: r.try_get(2)?,
                topic_by: r.try_get(3)?,
                topic_ts: from_sql(r.try_get(4)?),
                modes: modes_from_bits(r.try_get(5)?),
                created_ms: from_sql(r.try_get(6)?),
                active_ms: from_sql(r.try_get(7)?),
                members: Vec::new(),
                bans: Vec::new(),
                invites: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let index: HashMap<RoomId, usize> = rooms.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    for r in c.query(
        "SELECT room, key, nick, role, seen FROM room_members ORDER BY room, key",
        &[],
    )? {
        if let Some(&i) = index.get(&RoomId(from_sql(r.try_get(0)?))) {
            rooms[i].members.push(MemberRecord {
                key: r.try_get(1)?,
                nick: r.try_get(2)?,
                role: role_from_sql(r.try_get(3)?),
                seen: from_sql(r.try_get(4)?),
            });
        }
    }
    for (table, bans) in [("room_bans", true), ("room_invites", false)] {
        for r in c.query(
            &format!("SELECT room, key FROM {table} ORDER BY room, key"),
            &[],
        )? {
            if let Some(&i) = index.get(&RoomId(from_sql(r.try_get(0)?))) {
                let key: String = r.try_get(1)?;
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

/// Takes every pending request, in id order: reads and deletes them.
pub(super) fn take_requests(tx: &mut Transaction<'_>) -> Result<Vec<RoomRequest>, Error> {
    let rows = tx.query(
        "DELETE FROM room_requests RETURNING id, kind, room_key, nick",
        &[],
    )?;
    let mut requests = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<_, i64>(0)?,
                r.try_get::<_, String>(1)?,
                r.try_get::<_, String>(2)?,
                r.try_get::<_, String>(3)?,
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    requests.sort_by_key(|r| r.0);
    Ok(requests
        .into_iter()
        .filter_map(|(id, kind, room_key, nick)| request_from_row(id, &kind, room_key, nick))
        .collect())
}

/// The room whose key is `key`: its id and name as spelled at creation.
pub(super) fn find<C: GenericClient>(
    c: &mut C,
    key: &str,
) -> Result<Option<(RoomId, String)>, Error> {
    c.query_opt("SELECT id, name FROM rooms WHERE key = $1", &[&key])?
        .map(|r| Ok((RoomId(from_sql(r.try_get(0)?)), r.try_get(1)?)))
        .transpose()
}

/// A member's nick (as spelled) and standing.
pub(super) fn member<C: GenericClient>(
    c: &mut C,
    room: RoomId,
    key: &str,
) -> Result<Option<(String, mm_common::protocol::Role)>, Error> {
    c.query_opt(
        "SELECT nick, role FROM room_members WHERE room = $1 AND key = $2",
        &[&to_sql(room.0), &key],
    )?
    .map(|r| Ok((r.try_get(0)?, role_from_sql(r.try_get(1)?))))
    .transpose()
}

/// Queues a request for the server (`mm-server rooms delete` or `set-owner`); returns its id.
pub(super) fn request<C: GenericClient>(
    c: &mut C,
    kind: &str,
    room_key: &str,
    nick: &str,
) -> Result<i64, Error> {
    c.query_one(
        "INSERT INTO room_requests (kind, room_key, nick) VALUES ($1, $2, $3) RETURNING id",
        &[&kind, &room_key, &nick],
    )?
    .try_get(0)
}

/// Whether the request `id` still waits for a server.
pub(super) fn request_pending<C: GenericClient>(c: &mut C, id: i64) -> Result<bool, Error> {
    Ok(
        c.query_opt("SELECT 1 FROM room_requests WHERE id = $1", &[&id])?
            .is_some(),
    )
}
