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
//! Layout: [`SqliteStore`] (here) submits `command::Cmd`s to the `writer` thread, which runs
//! them in batches (`command::apply`) through the SQL of one module per table or group of
//! tables (`accounts`, `mailbox`, `history`, `rooms`, `meta`), sorting failures with
//! `failure`. `schema` opens the file and migrates it, `lock` keeps a second server off it, and
//! `admin` holds what `mm-server accounts` and `mm-server rooms` do, on a connection of their
//! own.

mod accounts;
mod admin;
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
mod writer;

#[cfg(test)]
mod tests;

pub use admin::{RoomAdmin, RoomAdminError};

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mm_common::protocol::nick_key;
use rusqlite::Connection;
use tokio::sync::oneshot;

use command::Cmd;
use lock::lock_file;
use schema::{check_writable, classify, open_connection, open_error, prepare};
use writer::{Msg, Writer};

use mm_common::prekeys::KeyUpload;

use super::{
    Arrival, Line, Loaded, Login, LoginOutcome, Mail, Options, Published, QueueOutcome, Reply,
    RoomChange, RoomId, RoomRequest, Store, StoreError, Taken,
};
use crate::clock::Clock;

/// Most operations committed in one transaction.
const MAX_BATCH: usize = 1024;

/// Operations that may wait for the writer. Beyond this, callers get [`StoreError::Busy`] and
/// refuse the message rather than accept what might not be stored.
const CHANNEL_BOUND: usize = 16 * 1024;

/// How long SQLite waits for a lock held by another connection (an admin command) before a
/// commit counts as failed.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How the writer waits and retries.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    /// SQLite's wait for a lock while commits work ([`BUSY_TIMEOUT`]).
    busy_timeout: Duration,
    /// SQLite's wait for a lock while commits fail: short, so that reads are answered between
    /// attempts.
    retry_busy_timeout: Duration,
    /// First pause between attempts; it doubles up to `backoff_max`.
    backoff_min: Duration,
    /// Longest pause between attempts.
    backoff_max: Duration,
    /// At close (server shutdown), how long the writer keeps retrying before it gives up and
    /// reports what was not stored.
    close_effort: Duration,
}

const TUNING: Tuning = Tuning {
    busy_timeout: BUSY_TIMEOUT,
    retry_busy_timeout: Duration::from_millis(100),
    backoff_min: Duration::from_millis(20),
    backoff_max: Duration::from_secs(1),
    close_effort: Duration::from_secs(10),
};

/// Running counts the writer keeps so that a bound check is not a table count each time. They
/// are recounted when they say a bound is reached, since an admin command (another connection)
/// may have deleted rows.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    accounts: u64,
    waiting: u64,
}

/// What the store and its writer thread share: whether commits fail, and the store's own
/// measurements, kept from its opening and mirrored into the server's metrics once
/// [`Store::attach_metrics`] hands them over.
#[derive(Debug, Default)]
pub(super) struct Instruments {
    /// Set by the writer while commits fail: new writes are refused at once.
    failing: AtomicBool,
    /// Operations submitted and not yet answered.
    backlog: std::sync::atomic::AtomicI64,
    metrics: std::sync::OnceLock<crate::metrics::StoreMetrics>,
}

impl Instruments {
    /// `n` more operations wait (negative: `-n` were answered).
    pub(super) fn waiting(&self, n: i64) {
        let now = self.backlog.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(m) = self.metrics.get() {
            m.backlog.set(now);
        }
    }

    /// A batch committed after `took`.
    pub(super) fn committed(&self, took: Duration) {
        if let Some(m) = self.metrics.get() {
            m.commit_seconds.observe(took.as_secs_f64());
        }
    }
}

/// The SQLite store. Dropping it without [`Store::close`] lets the writer finish what was
/// submitted and stop.
#[derive(Debug)]
pub struct SqliteStore {
    tx: SyncSender<Msg>,
    /// Held for the store's life: a second server on the same file is refused at start.
    _lock: Option<File>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    instruments: Arc<Instruments>,
}

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

    fn open_tuned(
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
        lock: Option<File>,
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
        };
        let counts = Counts {
            accounts: accounts::count(&conn).map_err(c)?,
            waiting: mailbox::total(&conn).map_err(c)?,
        };
        conn.busy_timeout(tuning.busy_timeout).map_err(c)?;
        let (tx, rx) = sync_channel(CHANNEL_BOUND);
        let instruments = Arc::new(Instruments::default());
        let writer = Writer::new(
            conn,
            rx,
            opts,
            counts,
            tuning,
            clock,
            Arc::clone(&instruments),
        );
        let writer = std::thread::Builder::new()
            .name("mm-store".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                detail: format!("cannot start the writer thread: {e}"),
            })?;
        Ok((
            SqliteStore {
                tx,
                _lock: lock,
                writer: Mutex::new(Some(writer)),
                instruments,
            },
            loaded,
        ))
    }

    /// Hands `cmd` to the writer without waiting. A write is refused at once while the store is
    /// failing (what it accepted waits for a commit, and what it refuses is delivered to
    /// nobody), except the few that must not be dropped (see `Cmd::must_keep`).
    fn submit(&self, cmd: Cmd) -> Result<(), StoreError> {
        if cmd.is_write() && !cmd.must_keep() && self.instruments.failing.load(Ordering::Relaxed) {
            return Err(StoreError::Busy);
        }
        // Counted before it is sent: the writer may answer it at once.
        self.instruments.waiting(1);
        self.tx.try_send(Msg::Cmd(cmd)).map_err(|e| {
            self.instruments.waiting(-1);
            match e {
                TrySendError::Full(_) => StoreError::Busy,
                TrySendError::Disconnected(_) => StoreError::Closed,
            }
        })
    }

    /// Waits for the writer thread to end (after [`Store::close`]). Blocking: call it from
    /// `spawn_blocking` or outside the runtime.
    pub fn join(&self) {
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Store for SqliteStore {
    fn room(&self, change: RoomChange) -> Result<Reply<()>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::Room { change, reply })?;
        Ok(rx)
    }

    fn room_history(&self, room: RoomId, limit: usize) -> Result<Reply<Vec<Line>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::RoomHistory { room, limit, reply })?;
        Ok(rx)
    }

    fn admin_requests(&self) -> Result<Reply<Vec<RoomRequest>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::AdminRequests { reply })?;
        Ok(rx)
    }

    fn check_login(&self, nick: &str, credential: &str) -> Result<Reply<LoginOutcome>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::Check {
            nick: nick.to_owned(),
            credential: credential.to_owned(),
            reply,
        })?;
        Ok(rx)
    }

    fn login(
        &self,
        nick: &str,
        credential: &str,
        now_ms: u64,
        register: bool,
    ) -> Result<Reply<Login>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::Login {
            nick: nick.to_owned(),
            credential: credential.to_owned(),
            now_ms,
            register,
            reply,
        })?;
        Ok(rx)
    }

    fn abandon_registration(
        &self,
        nick: &str,
        credential: &str,
        created_ms: u64,
    ) -> Result<(), StoreError> {
        self.submit(Cmd::Abandon {
            key: nick_key(nick),
            credential: credential.to_owned(),
            created_ms,
        })
    }

    fn waiting(&self, nick_key: &str) -> Result<Reply<Vec<Mail>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::Waiting {
            key: nick_key.to_owned(),
            reply,
        })?;
        Ok(rx)
    }

    fn delivered(&self, nick_key: &str, up_to: u64) -> Result<(), StoreError> {
        self.submit(Cmd::Delivered {
            key: nick_key.to_owned(),
            up_to,
        })
    }

    fn logged_out(&self, nick_key: &str, now_ms: u64, durable: bool) -> Result<(), StoreError> {
        self.submit(Cmd::LoggedOut {
            key: nick_key.to_owned(),
            now_ms,
            durable,
        })
    }

    fn expire_unused(
        &self,
        cutoff_ms: u64,
        online: Vec<String>,
        limit: usize,
    ) -> Result<Reply<Vec<String>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::Expire {
            cutoff_ms,
            online,
            limit,
            reply,
        })?;
        Ok(rx)
    }

    fn append_public(&self, line: Line) -> Result<Reply<()>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::Public { line, reply })?;
        Ok(rx)
    }

    fn queue_mail(
        &self,
        to_key: &str,
        mail: Mail,
        arrival: Arrival,
    ) -> Result<Reply<QueueOutcome>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::Mail {
            to_key: to_key.to_owned(),
            mail,
            arrival,
            reply,
        })?;
        Ok(rx)
    }

    fn reserve_ids(&self, up_to: u64) -> Result<Reply<()>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::ReserveIds { up_to, reply })?;
        Ok(rx)
    }

    fn publish_keys(&self, key: &str, keys: KeyUpload) -> Result<Reply<Published>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::PublishKeys {
            key: key.to_owned(),
            keys: Box::new(keys),
            reply,
        })?;
        Ok(rx)
    }

    fn take_bundle(&self, key: &str, one_time: bool) -> Result<Reply<Taken>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::TakeBundle {
            key: key.to_owned(),
            one_time,
            reply,
        })?;
        Ok(rx)
    }

    fn prekey_count(&self, key: &str) -> Result<Reply<Option<u32>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::PrekeyCount {
            key: key.to_owned(),
            reply,
        })?;
        Ok(rx)
    }

    fn ready(&self) -> Result<Reply<()>, StoreError> {
        let (reply, rx) = oneshot::channel();
        // A write: refused at once while commits fail.
        self.submit(Cmd::Ready { reply })?;
        Ok(rx)
    }

    fn attach_metrics(&self, metrics: crate::metrics::StoreMetrics) {
        metrics
            .backlog
            .set(self.instruments.backlog.load(Ordering::Relaxed));
        // Only the first is kept: the store belongs to one server.
        let _ = self.instruments.metrics.set(metrics);
    }

    fn close(&self, last_id: u64) -> Result<Reply<()>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.instruments.waiting(1);
        // Blocking send: closing must not be refused because the channel is full.
        self.tx
            .send(Msg::Cmd(Cmd::Close { last_id, reply }))
            .map_err(|_| {
                self.instruments.waiting(-1);
                StoreError::Closed
            })?;
        Ok(rx)
    }
}
