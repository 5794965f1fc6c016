//! The operations behind `mm-server accounts` and `mm-server rooms`: each opens the store file
//! with its own connection (beside a running server's, whose writer waits for it like for any
//! other lock), and is done when it returns.
//!
//! A room lives in the running server's memory as well as in the file, so `rooms delete` and
//! `rooms set-owner` change the file directly only when no server holds the store (its lock
//! file, taken for the time of the change); otherwise they queue a request in `room_requests`,
//! which the server takes ([`crate::store::Store::admin_requests`]) and applies.
//!
//! [`RoomAdmin`], [`RoomAdminError`], [`room_name`] and [`await_request`] are shared with the
//! PostgreSQL store's commands (`store::postgres::admin`), which always queue.

use std::path::Path;
use std::time::{Duration, Instant};

use mm_common::protocol::{is_lobby, nick_key, room_key, validate_room, Role, LOBBY};
use rusqlite::{Connection, TransactionBehavior};

use super::lock::lock_file;
use super::schema::{classify, open_connection, prepare};
use super::{accounts, keys, mailbox, rooms, SqliteStore};
use crate::store::{Account, RoomRecord, StoreError};

/// How often a command that queued a request looks whether the server took it.
const POLL: Duration = Duration::from_millis(50);

/// What `mm-server rooms delete` or `mm-server rooms set-owner` came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomAdmin {
    /// No server held the store: the room, its members, bans, invitations and history were
    /// deleted in the file.
    Deleted {
        /// The room, as spelled at creation.
        name: String,
        /// How many members it had.
        members: usize,
        /// How many lines of history it had.
        lines: usize,
    },
    /// No server held the store: `nick` now owns the room in the file, and its previous
    /// owners are operators.
    OwnerSet {
        /// The room, as spelled at creation.
        name: String,
        /// The new owner, as spelled when it joined.
        nick: String,
        /// The previous owners (usually one; none if the room had none), now operators.
        previous: Vec<String>,
    },
    /// `nick` already owns the room: nothing was changed or queued.
    AlreadyOwner {
        /// The room, as spelled at creation.
        name: String,
        /// The owner, as spelled when it joined.
        nick: String,
    },
    /// A server took the request within the wait, and the store shows it done.
    AppliedByServer {
        /// The room, as spelled at creation.
        name: String,
    },
    /// A server took the request within the wait, but the store did not show it done by the
    /// end of the wait (the server may have found it no longer applies).
    TakenByServer {
        /// The room, as spelled at creation.
        name: String,
    },
    /// No server took the request within the wait (on SQLite one holds the store; on
    /// PostgreSQL none may be running): it stays queued in the store, for a running server's
    /// next look or the next server's start.
    Queued {
        /// The room, as spelled at creation.
        name: String,
    },
}

/// Why `mm-server rooms delete` or `set-owner` did nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoomAdminError {
    /// Not a room name ([`validate_room`]).
    #[error(
        "{0} is not a room name: a room name is # followed by 1 to 48 letters, digits, _ or -"
    )]
    BadName(String),
    /// The lobby is not a stored room.
    #[error("{LOBBY} is everyone's room: it cannot be deleted and has no owner")]
    Lobby,
    /// No room has that name.
    #[error("no such room: {0}")]
    NoSuchRoom(String),
    /// The nick is not a member of the room.
    #[error("{nick} is not a member of {room}")]
    NotAMember {
        /// The room, as spelled at creation.
        room: String,
        /// The nick, as typed.
        nick: String,
    },
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SqliteStore {
    /// Every account, by nick (for `mm-server accounts list`). Opens the file directly; works
    /// while a server runs.
    ///
    /// # Errors
    /// As [`SqliteStore::open`], or a failed query.
    pub fn list_accounts(path: &Path) -> Result<Vec<Account>, StoreError> {
        let mut conn = open(path)?;
        accounts::list(&mut conn).map_err(|e| classify(path, &e))
    }

    /// Frees `nick` (any case): deletes its account, its credentials and the private lines
    /// waiting for it, so a new owner never logs in with the old owner's credentials nor reads
    /// the old owner's mail. Returns whether there was such an account.
    /// A running server applies it at the nick's next login.
    ///
    /// # Errors
    /// As [`SqliteStore::list_accounts`].
    pub fn release(path: &Path, nick: &str) -> Result<bool, StoreError> {
        let mut conn = open(path)?;
        let key = nick_key(nick);
        let c = |e: rusqlite::Error| classify(path, &e);
        let tx = conn.transaction().map_err(c)?;
        let removed = accounts::delete(&tx, &key).map_err(c)?;
        mailbox::delete_all(&tx, &key).map_err(c)?;
        keys::forget(&tx, &key).map_err(c)?;
        tx.commit().map_err(c)?;
        Ok(removed)
    }
}

impl SqliteStore {
    /// Every room with its members, bans and invitations, by id (for `mm-server rooms list`).
    /// Opens the file directly; works while a server runs (and shows what it has stored).
    ///
    /// # Errors
    /// As [`SqliteStore::open`], or a failed query.
    pub fn list_rooms(path: &Path) -> Result<Vec<RoomRecord>, StoreError> {
        let conn = open(path)?;
        rooms::load(&conn).map_err(|e| classify(path, &e))
    }

    /// Deletes the room `name` (any case; the leading `#` may be left out, since a shell takes
    /// an unquoted `#dev` for a comment) with its members, bans, invitations and history.
    ///
    /// If no server holds the store, it is done in the file at once ([`RoomAdmin::Deleted`]).
    /// Otherwise a request is queued for the server and the call waits up to `wait` for it:
    /// [`RoomAdmin::AppliedByServer`], [`RoomAdmin::TakenByServer`] or [`RoomAdmin::Queued`].
    /// Blocking.
    ///
    /// # Errors
    /// [`RoomAdminError::BadName`], [`RoomAdminError::Lobby`], [`RoomAdminError::NoSuchRoom`],
    /// or [`RoomAdminError::Store`] as [`SqliteStore::open`] or a failed query.
    pub fn delete_room(
        path: &Path,
        name: &str,
        wait: Duration,
    ) -> Result<RoomAdmin, RoomAdminError> {
        let typed = room_name(name)?;
        let key = room_key(&typed);
        let c = |e: rusqlite::Error| RoomAdminError::Store(classify(path, &e));
        let Some(_lock) = unless_running(path)? else {
            let conn = open(path)?;
            let (id, name) = rooms::find(&conn, &key)
                .map_err(c)?
                .ok_or_else(|| RoomAdminError::NoSuchRoom(typed.clone()))?;
            let request =
                rooms::request(&conn, crate::store::encode::KIND_DELETE, &key, "").map_err(c)?;
            let gone = |conn: &Connection| {
                rooms::find(conn, &key).map(|found| found.is_none_or(|(other, _)| other != id))
            };
            return await_server(&conn, request, wait, gone, name).map_err(c);
        };
        let mut conn = open(path)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(c)?;
        let (id, name) = rooms::find(&tx, &key)
            .map_err(c)?
            .ok_or_else(|| RoomAdminError::NoSuchRoom(typed.clone()))?;
        let deleted = rooms::delete(&tx, id).map_err(c)?;
        tx.commit().map_err(c)?;
        Ok(RoomAdmin::Deleted {
            name,
            members: deleted.members,
            lines: deleted.lines,
        })
    }

    /// Makes the member `nick` (any case) the owner of the room `name` (as for
    /// [`SqliteStore::delete_room`]); its previous owner becomes an operator.
    ///
    /// If no server holds the store, it is done in the file at once ([`RoomAdmin::OwnerSet`]).
    /// Otherwise a request is queued for the server and the call waits up to `wait` for it:
    /// [`RoomAdmin::AppliedByServer`], [`RoomAdmin::TakenByServer`] or [`RoomAdmin::Queued`].
    /// If `nick` already owns the room, nothing is done ([`RoomAdmin::AlreadyOwner`]).
    /// Blocking.
    ///
    /// # Errors
    /// As [`SqliteStore::delete_room`], and [`RoomAdminError::NotAMember`].
    pub fn set_room_owner(
        path: &Path,
        name: &str,
        nick: &str,
        wait: Duration,
    ) -> Result<RoomAdmin, RoomAdminError> {
        let typed = room_name(name)?;
        let key = room_key(&typed);
        let member_key = nick_key(nick);
        let c = |e: rusqlite::Error| RoomAdminError::Store(classify(path, &e));
        let lock = unless_running(path)?;
        let mut conn = open(path)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(c)?;
        let (id, name) = rooms::find(&tx, &key)
            .map_err(c)?
            .ok_or_else(|| RoomAdminError::NoSuchRoom(typed.clone()))?;
        let Some((spelled, role)) = rooms::member(&tx, id, &member_key).map_err(c)? else {
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
        if lock.is_none() {
            let request =
                rooms::request(&tx, crate::store::encode::KIND_SET_OWNER, &key, nick).map_err(c)?;
            tx.commit().map_err(c)?;
            let owns = |conn: &Connection| {
                rooms::member(conn, id, &member_key)
                    .map(|m| m.is_some_and(|(_, role)| role == Role::Owner))
            };
            return await_server(&conn, request, wait, owns, name).map_err(c);
        }
        let previous = rooms::set_owner(&tx, id, &member_key).map_err(c)?;
        tx.commit().map_err(c)?;
        Ok(RoomAdmin::OwnerSet {
            name,
            nick: spelled,
            previous,
        })
    }
}

/// `name` as a room name: `#` added if left out, then checked; the lobby is refused.
pub(crate) fn room_name(name: &str) -> Result<String, RoomAdminError> {
    let name = if name.starts_with('#') {
        name.to_owned()
    } else {
        format!("#{name}")
    };
    if validate_room(&name).is_err() {
        return Err(RoomAdminError::BadName(name));
    }
    if is_lobby(&name) {
        return Err(RoomAdminError::Lobby);
    }
    Ok(name)
}

/// The store's lock file if no server holds it (keep it for the time of the change), `None`
/// if one does.
fn unless_running(path: &Path) -> Result<Option<std::fs::File>, StoreError> {
    match lock_file(path) {
        Ok(lock) => Ok(Some(lock)),
        Err(StoreError::Locked { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Waits up to `wait` for the server to take the request `id`, then for `done` to say that the
/// file shows its effect; says which happened.
fn await_server(
    conn: &Connection,
    id: i64,
    wait: Duration,
    done: impl Fn(&Connection) -> rusqlite::Result<bool>,
    name: String,
) -> rusqlite::Result<RoomAdmin> {
    await_request(wait, name, |taken| {
        let taken = taken || !rooms::request_pending(conn, id)?;
        Ok((taken, taken && done(conn)?))
    })
}

/// Waits up to `wait` for a queued request to be taken by a server and then to show its
/// effect in the store: `look(taken so far)` says (taken, done) at each look, every [`POLL`].
/// [`RoomAdmin::AppliedByServer`] once both hold; at the end of the wait,
/// [`RoomAdmin::TakenByServer`] if only taken, else [`RoomAdmin::Queued`]. Shared by the
/// SQLite and PostgreSQL stores.
pub(crate) fn await_request<E>(
    wait: Duration,
    name: String,
    mut look: impl FnMut(bool) -> Result<(bool, bool), E>,
) -> Result<RoomAdmin, E> {
    let deadline = Instant::now() + wait;
    let mut taken = false;
    loop {
        let (now_taken, done) = look(taken)?;
        taken = now_taken;
        if taken && done {
            return Ok(RoomAdmin::AppliedByServer { name });
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        std::thread::sleep(left.min(POLL));
    }
    Ok(if taken {
        RoomAdmin::TakenByServer { name }
    } else {
        RoomAdmin::Queued { name }
    })
}

/// A connection of its own to the store at `path`, checked and migrated.
fn open(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = open_connection(path)?;
    prepare(&mut conn, path)?;
    Ok(conn)
}
