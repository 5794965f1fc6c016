//! What `mm-server accounts` and `mm-server rooms` do on a PostgreSQL store: a connection of
//! their own beside any running server's (or every node's, on a cluster), one transaction per
//! command.
//!
//! A room lives in the running servers' memory as well as in the database, and whether one
//! runs cannot be told cheaply, so `rooms delete` and `rooms set-owner` never change the rooms
//! tables themselves: they always queue a request in `room_requests`, which a running server
//! (on a cluster, any one node: it proposes it to the stream, so every node applies it) takes
//! within a few seconds, or else the next server to start takes at its first look.

use std::collections::HashMap;
use std::time::Duration;

use mm_common::protocol::{nick_key, room_key, Role};
use postgres::{Client, Error};

use super::{describe, keys, off_runtime, rooms, schema, PgStore, PgTarget};
use crate::store::encode::{from_sql, KIND_DELETE, KIND_SET_OWNER};
use crate::store::sqlite::{await_request, room_name, RoomAdmin, RoomAdminError};
use crate::store::{Account, Credential, CredentialKind, RoomRecord, StoreError};

/// Connects to the store for a command, which needs its schema made by a server first.
fn open(target: &PgTarget) -> Result<Client, StoreError> {
    let shown = target.to_string();
    let mut client = target.connect().map_err(|e| StoreError::Open {
        path: shown.clone().into(),
        detail: e.to_string(),
    })?;
    let version = schema::version(&mut client).map_err(|e| StoreError::Open {
        path: shown.clone().into(),
        detail: describe(&e),
    })?;
    match version {
        0 => Err(StoreError::Open {
            path: shown.into(),
            detail: "no store in this database yet (the server creates it on first start)".into(),
        }),
        v if v > schema::SCHEMA_VERSION => Err(StoreError::TooNew {
            path: shown.into(),
            found: v,
            known: schema::SCHEMA_VERSION,
        }),
        _ => Ok(client),
    }
}

impl PgStore {
    /// Every account, by nick key (for `mm-server accounts list`), read in one transaction.
    /// Works while a server runs. Blocking.
    ///
    /// # Errors
    /// As [`PgStore::open`], or a failed query.
    pub fn list_accounts(target: &PgTarget) -> Result<Vec<Account>, StoreError> {
        off_runtime(|| {
            let mut client = open(target)?;
            list(&mut client).map_err(|e| StoreError::Failed(describe(&e)))
        })
    }

    /// Frees `nick` (any case): deletes its account, credentials, waiting lines and keys in one
    /// transaction. Returns whether there was such an account. Blocking.
    ///
    /// # Errors
    /// As [`PgStore::list_accounts`].
    pub fn release(target: &PgTarget, nick: &str) -> Result<bool, StoreError> {
        let key = nick_key(nick);
        off_runtime(|| {
            let mut client = open(target)?;
            let mut released = || -> Result<bool, Error> {
                let mut tx = client.transaction()?;
                tx.execute(
                    "DELETE FROM account_credentials WHERE nick_key = $1",
                    &[&key],
                )?;
                let removed = tx.execute("DELETE FROM accounts WHERE nick_key = $1", &[&key])?;
                tx.execute("DELETE FROM mailbox WHERE to_key = $1", &[&key])?;
                keys::forget(&mut tx, &key)?;
                tx.commit()?;
                Ok(removed > 0)
            };
            released().map_err(|e| StoreError::Failed(describe(&e)))
        })
    }
}

impl PgStore {
    /// Every room with its members, bans and invitations, by id (for `mm-server rooms list`),
    /// read in one transaction. Works while servers run (and shows what they have stored).
    /// Blocking.
    ///
    /// # Errors
    /// As [`PgStore::list_accounts`].
    pub fn list_rooms(target: &PgTarget) -> Result<Vec<RoomRecord>, StoreError> {
        off_runtime(|| {
            let mut client = open(target)?;
            let mut listed = || -> Result<Vec<RoomRecord>, Error> {
                let mut tx = client
                    .build_transaction()
                    .isolation_level(postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()?;
                let rooms = rooms::load(&mut tx)?;
                tx.commit()?;
                Ok(rooms)
            };
            listed().map_err(|e| StoreError::Failed(describe(&e)))
        })
    }

    /// Deletes the room `name` (any case; the leading `#` may be left out) with its members,
    /// bans, invitations and history, as [`crate::store::sqlite::SqliteStore::delete_room`]
    /// does, except that it is never done in the database directly: the room is looked up,
    /// then a request is queued for a server and the call waits up to `wait` for it:
    /// [`RoomAdmin::AppliedByServer`], [`RoomAdmin::TakenByServer`] or [`RoomAdmin::Queued`]
    /// (no server took it: none may be running; the next to start takes it). Blocking.
    ///
    /// # Errors
    /// [`RoomAdminError::BadName`], [`RoomAdminError::Lobby`], [`RoomAdminError::NoSuchRoom`],
    /// or [`RoomAdminError::Store`] as [`PgStore::list_accounts`].
    pub fn delete_room(
        target: &PgTarget,
        name: &str,
        wait: Duration,
    ) -> Result<RoomAdmin, RoomAdminError> {
        let typed = room_name(name)?;
        let key = room_key(&typed);
        off_runtime(|| {
            let mut client = open(target)?;
            let mut tx = client.transaction().map_err(failed)?;
            let (id, name) = rooms::find(&mut tx, &key)
                .map_err(failed)?
                .ok_or_else(|| RoomAdminError::NoSuchRoom(typed.clone()))?;
            let request = rooms::request(&mut tx, KIND_DELETE, &key, "").map_err(failed)?;
            tx.commit().map_err(failed)?;
            await_request(wait, name, |taken| {
                let taken = taken || !rooms::request_pending(&mut client, request)?;
                // Gone, or a new room of that name made since (another id).
                let gone =
                    taken && rooms::find(&mut client, &key)?.is_none_or(|(other, _)| other != id);
                Ok((taken, gone))
            })
            .map_err(failed)
        })
    }

    /// Makes the member `nick` (any case) the owner of the room `name` (as for
    /// [`PgStore::delete_room`]); its previous owner becomes an operator. As
    /// [`PgStore::delete_room`], the room and the member are looked up, then a request is
    /// queued and waited for. If `nick` already owns the room, nothing is queued
    /// ([`RoomAdmin::AlreadyOwner`]). Blocking.
    ///
    /// # Errors
    /// As [`PgStore::delete_room`], and [`RoomAdminError::NotAMember`].
    pub fn set_room_owner(
        target: &PgTarget,
        name: &str,
        nick: &str,
        wait: Duration,
    ) -> Result<RoomAdmin, RoomAdminError> {
        let typed = room_name(name)?;
        let key = room_key(&typed);
        let member_key = nick_key(nick);
        off_runtime(|| {
            let mut client = open(target)?;
            let mut tx = client.transaction().map_err(failed)?;
            let (id, name) = rooms::find(&mut tx, &key)
                .map_err(failed)?
                .ok_or_else(|| RoomAdminError::NoSuchRoom(typed.clone()))?;
            let Some((spelled, role)) = rooms::member(&mut tx, id, &member_key).map_err(failed)?
            else {
                return Err(RoomAdminError::NotAMember {
                    room: name,
                    nick: nick.to_owned(),
                });
            };
            if role == Role::Owner {
                return Ok(RoomAdmin::AlreadyOwner {
                    name,
                    nick: spelled,
                });
            }
            let request = rooms::request(&mut tx, KIND_SET_OWNER, &key, nick).map_err(failed)?;
            tx.commit().map_err(failed)?;
            await_request(wait, name, |taken| {
                let taken = taken || !rooms::request_pending(&mut client, request)?;
                let owns = taken
                    && rooms::member(&mut client, id, &member_key)?
                        .is_some_and(|(_, role)| role == Role::Owner);
                Ok((taken, owns))
            })
            .map_err(failed)
        })
    }
}

/// A failed query, as a room command's error.
fn failed(e: Error) -> RoomAdminError {
    RoomAdminError::Store(StoreError::Failed(describe(&e)))
}

/// Every account with its credentials (oldest first) and its number of waiting lines.
fn list(client: &mut Client) -> Result<Vec<Account>, Error> {
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let mut credentials: HashMap<String, Vec<Credential>> = HashMap::new();
    for r in tx.query(
        "SELECT nick_key, credential, kind, added_ms FROM account_credentials
         ORDER BY nick_key, added_ms, credential",
        &[],
    )? {
        let kind: String = r.try_get(2)?;
        credentials
            .entry(r.try_get(0)?)
            .or_default()
            .push(Credential {
                kind: if kind == CredentialKind::Key.as_str() {
                    CredentialKind::Key
                } else {
                    CredentialKind::Certificate
                },
                credential: r.try_get(1)?,
                added_ms: from_sql(r.try_get(3)?),
            });
    }
    let accounts = tx
        .query(
            "SELECT nick_key, nick, created_ms, last_seen_ms, returned_ms,
                    (SELECT COUNT(*) FROM mailbox WHERE to_key = accounts.nick_key)
             FROM accounts ORDER BY nick_key",
            &[],
        )?
        .iter()
        .map(|r| {
            let key: String = r.try_get(0)?;
            Ok(Account {
                nick: r.try_get(1)?,
                credentials: credentials.remove(&key).unwrap_or_default(),
                created_ms: from_sql(r.try_get(2)?),
                last_seen_ms: from_sql(r.try_get(3)?),
                returned_ms: r.try_get::<_, Option<i64>>(4)?.map(from_sql),
                waiting: from_sql(r.try_get(5)?),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    tx.commit()?;
    Ok(accounts)
}
