//! The SQLite store: one file in the data directory, WAL mode, `synchronous = FULL`.
//!
//! One writer thread owns the connection. Work arrives on a bounded channel; the thread takes
//! whatever has queued up (up to `MAX_BATCH` operations), runs it in one transaction, commits
//! (one fsync of the WAL), and only then answers. Under load the batches grow, so the message
//! rate is not bound by the disk's fsync rate; when idle, each operation commits on its own at
//! once. After `kill -9` what can be lost is what was still waiting in the channel or in the
//! batch being committed (measured in BENCHMARKS.md); what was answered is on disk.
//!
//! A commit that fails (another process holds the lock, a full disk, an I/O error, a file that
//! became read-only) loses nothing: the writer keeps the batch and retries it whole, with
//! backoff, until it commits; meanwhile new writes are refused at submission
//! ([`StoreError::Busy`]) and logins of registered users, mailbox reads and room history reads
//! are answered from reads. Only closing gives up, after `Tuning::close_effort`, and says what was not stored.
//!
//! Layout: [`SqliteStore`] is the shared writer ([`crate::store::writer`]: batching, retries,
//! answers) on [`SqliteBackend`] (`backend`), which runs each batch (`command::apply`) through the SQL of one module per table or group of
//! tables (`accounts`, `mailbox`, `history`, `rooms`, `meta`), sorting failures with
//! `failure`. `schema` opens the file and migrates it, `lock` keeps a second server off it, and
//! `admin` holds what `mm-server accounts` and `mm-server rooms` do, on a connection of their
//! own.

mod accounts;
mod admin;
mod backend;
mod command;
mod convert;
mod failure;
mod history;
mod keys;
mod lock;
mod mailbox;
mod meta;
mod rooms;
mod schema;

#[cfg(test)]
mod tests;

pub(crate) use admin::{await_request, room_name};
pub use admin::{RoomAdmin, RoomAdminError};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use lock::lock_file;
use schema::{check_writable, classify, open_connection, open_error, prepare};

#[cfg(test)]
pub(crate) use accounts::add_credential;
pub use backend::SqliteBackend;

use super::command::Counts;
use super::writer::{BatchStore, Tuning, TUNING};
use super::{Loaded, Options, RoomId, StoreError};
use crate::clock::Clock;

/// How long SQLite waits for a lock held by another connection (an admin command) before a
/// commit counts as failed.
const BUSY_TIMEOUT: Duration = TUNING.busy_timeout;

/// The SQLite store: the shared writer ([`super::writer`]) on an SQLite connection. Dropping it
/// without [`crate::store::Store::close`] lets the writer finish what was submitted and stop.
pub type SqliteStore = BatchStore<SqliteBackend>;

impl SqliteStore {
    /// Opens (or creates) the store at `path`, checks it, applies migrations, loads what the
    /// server needs at start ([`Loaded`]: the lobby's newest `opts.history_len` lines, every
    /// room with its members, bans and invitations, each room's newest `opts.history_len`
    /// lines, the last room id and the last message id), and starts the writer thread, which
    /// keeps within `opts`. Requests queued by `mm-server rooms` are left for
    /// [`Store::admin_requests`]. A lock file beside it (`path` +
    /// `.lock`) keeps a second server off the same store.
    ///
    /// It also proves that the store can be written (a small write transaction, recording when
    /// it was opened by `clock`), so that a read-only store stops the server at start rather
    /// than refusing every message later. The times of accounts and lines come with each
    /// call (the hub's clock); `clock` only times the store's own bookkeeping: give it the
    /// hub's.
    ///
    /// # Errors
    /// [`StoreError::Open`], [`StoreError::Corrupt`], [`StoreError::Locked`],
    /// [`StoreError::NotWritable`] or [`StoreError::TooNew`], each with the path and what to do.
    pub fn open(
        path: &Path,
        opts: Options,
        clock: Arc<dyn Clock>,
    ) -> Result<(SqliteStore, Loaded), StoreError> {
        Self::open_tuned(path, opts, clock, TUNING)
    }

    pub(crate) fn open_tuned(
        path: &Path,
        opts: Options,
        clock: Arc<dyn Clock>,
        tuning: Tuning,
    ) -> Result<(SqliteStore, Loaded), StoreError> {
        let lock = lock_file(path)?;
        // Private before SQLite opens it: SQLite gives the `-wal` and `-shm` files it creates
        // the database file's mode, and the store holds private lines in cleartext.
        mm_certs::create_private_file(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let conn = open_connection(path)?;
        Self::start(conn, path, opts, clock, Some(lock), tuning)
    }

    /// A store in memory, for tests: same code, nothing on disk.
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_in_memory(
        opts: Options,
        clock: Arc<dyn Clock>,
    ) -> Result<(SqliteStore, Loaded), StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| open_error(&path, &e))?;
        Self::start(conn, &path, opts, clock, None, TUNING)
    }

    fn start(
        mut conn: Connection,
        path: &Path,
        opts: Options,
        clock: Arc<dyn Clock>,
        lock: Option<std::fs::File>,
        tuning: Tuning,
    ) -> Result<(SqliteStore, Loaded), StoreError> {
        prepare(&mut conn, path)?;
        check_writable(&mut conn, path, clock.now_ms())?;
        let c = |e: rusqlite::Error| classify(path, &e);
        let loaded = Loaded {
            history: history::recent(&conn, RoomId::LOBBY, opts.history_len).map_err(c)?,
            last_id: meta::last_id(&conn).map_err(c)?,
            rooms: rooms::load(&conn).map_err(c)?,
            room_history: history::recent_by_room(&conn, opts.history_len).map_err(c)?,
            last_room_id: meta::last_room_id(&conn).map_err(c)?,
            rooms_applied: 0,
        };
        let counts = Counts {
            accounts: accounts::count(&conn).map_err(c)?,
            waiting: mailbox::total(&conn).map_err(c)?,
        };
        conn.busy_timeout(tuning.busy_timeout).map_err(c)?;
        let guard = lock.map(|l| Box::new(l) as Box<dyn std::any::Any + Send + Sync>);
        let store = BatchStore::spawn(SqliteBackend { conn }, opts, counts, clock, tuning, guard)
            .map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            detail: format!("cannot start the writer thread: {e}"),
        })?;
        Ok((store, loaded))
    }
}
