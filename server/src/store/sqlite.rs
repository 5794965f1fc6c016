//! The SQLite store: one file in the data directory, WAL mode, `synchronous = FULL`.
//!
//! One writer thread owns the connection. Work arrives on a bounded channel; the thread takes
//! whatever has queued up (up to [`MAX_BATCH`] operations), runs it in one transaction, commits
//! (one fsync of the WAL), and only then answers. Under load the batches grow, so the message
//! rate is not bound by the disk's fsync rate; when idle, each operation commits on its own at
//! once. After `kill -9` what can be lost is what was still waiting in the channel or in the
//! batch being committed (measured in BENCHMARKS.md); what was answered is on disk.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::Duration;

use mm_common::protocol::nick_key;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::{
    Account, Arrival, Body, Line, Loaded, LoginOutcome, Mail, QueueOutcome, Reply, Store,
    StoreError,
};

/// Schema version this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 2;

/// Most operations committed in one transaction.
const MAX_BATCH: usize = 1024;

/// Operations that may wait for the writer. Beyond this, callers get [`StoreError::Busy`] and
/// refuse the message rather than accept what might not be stored.
const CHANNEL_BOUND: usize = 16 * 1024;

/// How long SQLite waits for a lock held by another connection (an admin command) before
/// failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migrations, in order; entry `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; 2] = [
    "
    CREATE TABLE accounts (
        nick_key     TEXT PRIMARY KEY,
        nick         TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        created_ms   INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE history (
        id     INTEGER PRIMARY KEY,
        ts     INTEGER NOT NULL,
        sender TEXT NOT NULL,
        text   TEXT NOT NULL
    );
    CREATE TABLE mailbox (
        id     INTEGER PRIMARY KEY,
        to_key TEXT NOT NULL,
        ts     INTEGER NOT NULL,
        sender TEXT NOT NULL,
        text   TEXT NOT NULL
    );
    CREATE INDEX mailbox_by_recipient ON mailbox (to_key, id);
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
",
    // 2: the mailbox keeps every personal line until acknowledged, relays included (their
    // payload here, `text` empty).
    "ALTER TABLE mailbox ADD COLUMN payload BLOB;",
];

/// How much the store keeps.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Public lines kept as history.
    pub history_len: usize,
    /// Private lines that may wait for one offline user.
    pub mailbox_len: usize,
    /// Most accounts.
    pub max_accounts: usize,
    /// Most private lines waiting, all mailboxes together.
    pub mailbox_total: usize,
    /// Most lines one connection may leave unacknowledged; live lines beyond
    /// `mailbox_len + max_unacked` in one mailbox are delivered but not kept.
    pub max_unacked: usize,
}

impl Options {
    /// Most lines one mailbox holds, live ones included; also the most a login fetches.
    fn mailbox_ceiling(&self) -> usize {
        self.mailbox_len.saturating_add(self.max_unacked)
    }
}

/// Running counts the writer keeps so that a bound check is not a table count each time. They
/// are recounted when they say a bound is reached, since an admin command (another connection)
/// may have deleted rows.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    accounts: u64,
    waiting: u64,
}

/// The SQLite store. Dropping it without [`Store::close`] lets the writer finish what was
/// submitted and stop.
#[derive(Debug)]
pub struct SqliteStore {
    tx: SyncSender<Cmd>,
    /// Held for the store's life: a second server on the same file is refused at start.
    _lock: Option<File>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

enum Cmd {
    Login {
        nick: String,
        fingerprint: String,
        now_ms: u64,
        reply: oneshot::Sender<Result<LoginOutcome, StoreError>>,
    },
    Waiting {
        key: String,
        reply: oneshot::Sender<Result<Vec<Mail>, StoreError>>,
    },
    Delivered {
        key: String,
        up_to: u64,
    },
    LoggedOut {
        key: String,
        now_ms: u64,
    },
    Public {
        line: Line,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Mail {
        to_key: String,
        mail: Mail,
        arrival: Arrival,
        reply: oneshot::Sender<Result<QueueOutcome, StoreError>>,
    },
    Close {
        last_id: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// An answer to send once the batch is committed.
enum Answer {
    Login(
        oneshot::Sender<Result<LoginOutcome, StoreError>>,
        Result<LoginOutcome, StoreError>,
    ),
    Waiting(
        oneshot::Sender<Result<Vec<Mail>, StoreError>>,
        Result<Vec<Mail>, StoreError>,
    ),
    Public(oneshot::Sender<Result<(), StoreError>>),
    Queue(
        oneshot::Sender<Result<QueueOutcome, StoreError>>,
        Result<QueueOutcome, StoreError>,
    ),
    Close(oneshot::Sender<Result<(), StoreError>>),
}

impl Answer {
    /// Sends the answer, or `failure` instead when the commit failed.
    fn send(self, failure: Option<&str>) {
        let fail = |d: &str| StoreError::Failed(d.to_owned());
        // A dropped receiver means the session is gone; nothing to tell.
        match self {
            Answer::Login(tx, r) => drop(tx.send(failure.map_or(r, |d| Err(fail(d))))),
            Answer::Waiting(tx, r) => drop(tx.send(failure.map_or(r, |d| Err(fail(d))))),
            Answer::Queue(tx, r) => drop(tx.send(failure.map_or(r, |d| Err(fail(d))))),
            Answer::Public(tx) | Answer::Close(tx) => {
                drop(tx.send(failure.map_or(Ok(()), |d| Err(fail(d)))))
            }
        }
    }
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`, checks it, applies migrations, loads what the
    /// server needs at start, and starts the writer thread. A lock file beside it (`path` +
    /// `.lock`) keeps a second server off the same store.
    ///
    /// # Errors
    /// [`StoreError::Open`], [`StoreError::Corrupt`], [`StoreError::Locked`] or
    /// [`StoreError::TooNew`], each with the path and what to do.
    pub fn open(path: &Path, opts: Options) -> Result<(SqliteStore, Loaded), StoreError> {
        let lock = lock_file(path)?;
        let conn = open_connection(path)?;
        Self::start(conn, path, opts, Some(lock))
    }

    /// A store in memory, for tests: same code, nothing on disk.
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_in_memory(opts: Options) -> Result<(SqliteStore, Loaded), StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| open_error(&path, &e))?;
        Self::start(conn, &path, opts, None)
    }

    fn start(
        mut conn: Connection,
        path: &Path,
        opts: Options,
        lock: Option<File>,
    ) -> Result<(SqliteStore, Loaded), StoreError> {
        prepare(&mut conn, path)?;
        let loaded = load(&conn, opts.history_len).map_err(|e| classify(path, &e))?;
        let counts = Counts {
            accounts: count_accounts(&conn).map_err(|e| classify(path, &e))?,
            waiting: count_waiting(&conn).map_err(|e| classify(path, &e))?,
        };
        let (tx, rx) = sync_channel(CHANNEL_BOUND);
        let writer = std::thread::Builder::new()
            .name("mm-store".into())
            .spawn(move || writer(conn, rx, opts, counts))
            .map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                detail: format!("cannot start the writer thread: {e}"),
            })?;
        Ok((
            SqliteStore {
                tx,
                _lock: lock,
                writer: Mutex::new(Some(writer)),
            },
            loaded,
        ))
    }

    fn submit(&self, cmd: Cmd) -> Result<(), StoreError> {
        self.tx.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Busy,
            TrySendError::Disconnected(_) => StoreError::Closed,
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

    /// Every account, by nick (for `mm-server accounts list`). Opens the file directly; works
    /// while a server runs.
    ///
    /// # Errors
    /// As [`SqliteStore::open`], or a failed query.
    pub fn list_accounts(path: &Path) -> Result<Vec<Account>, StoreError> {
        let mut conn = open_connection(path)?;
        prepare(&mut conn, path)?;
        let mut stmt = conn
            .prepare(
                "SELECT nick, fingerprint, created_ms, last_seen_ms,
                        (SELECT COUNT(*) FROM mailbox WHERE to_key = accounts.nick_key)
                 FROM accounts ORDER BY nick_key",
            )
            .map_err(|e| classify(path, &e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Account {
                    nick: r.get(0)?,
                    fingerprint: r.get(1)?,
                    created_ms: from_sql(r.get(2)?),
                    last_seen_ms: from_sql(r.get(3)?),
                    waiting: from_sql(r.get(4)?),
                })
            })
            .map_err(|e| classify(path, &e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| classify(path, &e))
    }

    /// Frees `nick` (any case): deletes its account and the private lines waiting for it, so a
    /// new owner never reads the old owner's mail. Returns whether there was such an account.
    /// A running server applies it at the nick's next login.
    ///
    /// # Errors
    /// As [`SqliteStore::list_accounts`].
    pub fn release(path: &Path, nick: &str) -> Result<bool, StoreError> {
        let mut conn = open_connection(path)?;
        prepare(&mut conn, path)?;
        let key = nick_key(nick);
        let tx = conn.transaction().map_err(|e| classify(path, &e))?;
        let removed = tx
            .execute("DELETE FROM accounts WHERE nick_key = ?1", [&key])
            .map_err(|e| classify(path, &e))?;
        tx.execute("DELETE FROM mailbox WHERE to_key = ?1", [&key])
            .map_err(|e| classify(path, &e))?;
        tx.commit().map_err(|e| classify(path, &e))?;
        Ok(removed > 0)
    }
}

impl Store for SqliteStore {
    fn login(
        &self,
        nick: &str,
        fingerprint: &str,
        now_ms: u64,
    ) -> Result<Reply<LoginOutcome>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::Login {
            nick: nick.to_owned(),
            fingerprint: fingerprint.to_owned(),
            now_ms,
            reply,
        })?;
        Ok(rx)
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

    fn logged_out(&self, nick_key: &str, now_ms: u64) -> Result<(), StoreError> {
        self.submit(Cmd::LoggedOut {
            key: nick_key.to_owned(),
            now_ms,
        })
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

    fn close(&self, last_id: u64) -> Result<Reply<()>, StoreError> {
        let (reply, rx) = oneshot::channel();
        // Blocking send: closing must not be refused because the channel is full.
        self.tx
            .send(Cmd::Close { last_id, reply })
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }
}

/// Takes the store's lock file, or says who has it.
fn lock_file(path: &Path) -> Result<File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Open {
            path: lock_path.clone(),
            detail: e.to_string(),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.to_path_buf(),
            detail: format!("{} is held", lock_path.display()),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Open {
            path: lock_path,
            detail: e.to_string(),
        }),
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, &e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| classify(path, &e))?;
    Ok(conn)
}

/// Settings, an integrity check and migrations.
fn prepare(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let c = |e: rusqlite::Error| classify(path, &e);
    // Reading the header first turns "not a database" into a clear error before anything else.
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(c)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(c)?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        return Err(StoreError::Open {
            path: path.to_path_buf(),
            detail: format!("cannot switch to WAL mode (journal mode is {mode})"),
        });
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(c)?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(c)?;
    if check != "ok" {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: check,
        });
    }
    let start = usize::try_from(version).unwrap_or(0);
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(start) {
        let tx = conn.transaction().map_err(c)?;
        tx.execute_batch(migration).map_err(c)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )
        .map_err(c)?;
        tx.commit().map_err(c)?;
    }
    Ok(())
}

fn load(conn: &Connection, history_len: usize) -> rusqlite::Result<Loaded> {
    let mut stmt =
        conn.prepare("SELECT id, ts, sender, text FROM history ORDER BY id DESC LIMIT ?1")?;
    let mut history = stmt
        .query_map([to_sql(history_len as u64)], line_from_row)?
        .collect::<rusqlite::Result<Vec<Line>>>()?;
    history.reverse();
    let last_id: i64 = conn.query_row(
        "SELECT MAX(
            COALESCE((SELECT value FROM meta WHERE key = 'last_id'), 0),
            COALESCE((SELECT MAX(id) FROM history), 0),
            COALESCE((SELECT MAX(id) FROM mailbox), 0))",
        [],
        |r| r.get(0),
    )?;
    Ok(Loaded {
        history,
        last_id: from_sql(last_id),
    })
}

fn line_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Line> {
    Ok(Line {
        id: from_sql(r.get(0)?),
        ts: from_sql(r.get(1)?),
        from: r.get(2)?,
        text: r.get(3)?,
    })
}

/// SQLite integers are i64; ids and times are u64 far below 2⁶³.
fn to_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn open_error(path: &Path, e: &rusqlite::Error) -> StoreError {
    match classify(path, e) {
        StoreError::Failed(detail) => StoreError::Open {
            path: path.to_path_buf(),
            detail,
        },
        other => other,
    }
}

/// Names the failures a user can act on.
fn classify(path: &Path, e: &rusqlite::Error) -> StoreError {
    let detail = e.to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail,
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked {
            path: path.to_path_buf(),
            detail,
        },
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            StoreError::Open {
                path: path.to_path_buf(),
                detail,
            }
        }
        _ => StoreError::Failed(detail),
    }
}

/// What the writer did, logged at close.
#[derive(Debug, Default)]
struct Stats {
    batches: u64,
    ops: u64,
    /// Longest time from a line's acceptance to its commit.
    max_lag_ms: u64,
}

/// The writer thread: batches, one transaction each, answers after the commit.
fn writer(mut conn: Connection, rx: Receiver<Cmd>, opts: Options, mut counts: Counts) {
    let mut batch: Vec<Cmd> = Vec::with_capacity(MAX_BATCH);
    let mut answers: Vec<Answer> = Vec::with_capacity(MAX_BATCH);
    // A failing disk would otherwise log once per batch, thousands of times a second.
    let mut failures: u64 = 0;
    let mut stats = Stats::default();
    loop {
        let Ok(first) = rx.recv() else {
            return; // every sender dropped: nothing more can come
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(_) => break,
            }
        }
        let closing = batch.iter().any(|c| matches!(c, Cmd::Close { .. }));
        let oldest = batch
            .iter()
            .filter_map(|c| match c {
                Cmd::Public { line, .. } => Some(line.ts),
                Cmd::Mail { mail, .. } => Some(mail.ts),
                _ => None,
            })
            .min();
        stats.batches += 1;
        stats.ops += batch.len() as u64;
        let before = counts;
        let result = run_batch(&mut conn, &mut batch, &mut answers, opts, &mut counts);
        if result.is_err() {
            counts = before; // the batch was rolled back
        }
        if let Some(oldest) = oldest {
            // From the hub accepting a line to its commit: what kill -9 can lose at most.
            stats.max_lag_ms = stats
                .max_lag_ms
                .max(crate::hub::now_ms().saturating_sub(oldest));
        }
        let failure = result.err().map(|e| e.to_string());
        if let Some(detail) = &failure {
            failures += 1;
            if failures.is_power_of_two() {
                error!(error = %detail, failures, "store: a batch could not be committed; its messages were delivered but not stored");
            }
        }
        for answer in answers.drain(..) {
            answer.send(failure.as_deref());
        }
        if closing {
            info!(
                batches = stats.batches,
                operations = stats.ops,
                max_commit_lag_ms = stats.max_lag_ms,
                "store: closing"
            );
            // Fold the WAL into the main file so that the store is one file at rest.
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
                warn!(error = %e, "store: final checkpoint failed (the WAL is kept; nothing lost)");
            }
            return;
        }
    }
}

fn run_batch(
    conn: &mut Connection,
    batch: &mut Vec<Cmd>,
    answers: &mut Vec<Answer>,
    opts: Options,
    counts: &mut Counts,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate);
    let tx = match tx {
        Ok(tx) => tx,
        Err(e) => {
            // Still answer everyone (with the failure).
            for cmd in batch.drain(..) {
                answers.extend(unapplied(cmd));
            }
            return Err(e);
        }
    };
    let mut max_id: u64 = 0;
    let mut appended = false;
    for cmd in batch.drain(..) {
        match cmd {
            Cmd::Login {
                nick,
                fingerprint,
                now_ms,
                reply,
            } => answers.push(Answer::Login(
                reply,
                login(
                    &tx,
                    &nick,
                    &fingerprint,
                    now_ms,
                    opts.max_accounts,
                    &mut counts.accounts,
                )
                .map_err(failed),
            )),
            Cmd::Waiting { key, reply } => answers.push(Answer::Waiting(
                reply,
                waiting(&tx, &key, opts.mailbox_ceiling()).map_err(failed),
            )),
            Cmd::Delivered { key, up_to } => {
                let deleted = tx
                    .prepare_cached("DELETE FROM mailbox WHERE to_key = ?1 AND id <= ?2")
                    .and_then(|mut s| s.execute(params![key, to_sql(up_to)]));
                if let Ok(n) = deleted {
                    counts.waiting = counts.waiting.saturating_sub(n as u64);
                }
                log_failure("delivered", deleted);
            }
            Cmd::LoggedOut { key, now_ms } => log_failure(
                "logged out",
                tx.prepare_cached("UPDATE accounts SET last_seen_ms = ?2 WHERE nick_key = ?1")
                    .and_then(|mut s| s.execute(params![key, to_sql(now_ms)])),
            ),
            Cmd::Public { line, reply } => {
                max_id = max_id.max(line.id);
                appended = true;
                // A failed insert fails the batch: the line is acknowledged only once durable.
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO history (id, ts, sender, text) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    to_sql(line.id),
                    to_sql(line.ts),
                    line.from,
                    line.text
                ])?;
                answers.push(Answer::Public(reply));
            }
            Cmd::Mail {
                to_key,
                mail,
                arrival,
                reply,
            } => {
                max_id = max_id.max(mail.id);
                let outcome = queue_mail(&tx, &to_key, &mail, arrival, opts, &mut counts.waiting)
                    .map_err(failed);
                answers.push(Answer::Queue(reply, outcome));
            }
            Cmd::Close { last_id, reply } => {
                max_id = max_id.max(last_id);
                answers.push(Answer::Close(reply));
            }
        }
    }
    if appended {
        // Keep only the newest `history_len` lines.
        tx.prepare_cached(
            "DELETE FROM history WHERE id <= (SELECT id FROM history ORDER BY id DESC LIMIT 1 OFFSET ?1)",
        )?
        .execute([to_sql(opts.history_len as u64)])?;
    }
    if max_id > 0 {
        tx.prepare_cached(
            "INSERT INTO meta (key, value) VALUES ('last_id', ?1)
             ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
        )?
        .execute([to_sql(max_id)])?;
    }
    tx.commit()
}

/// The answer for a command that never ran (its transaction could not start).
fn unapplied(cmd: Cmd) -> Option<Answer> {
    fn err<T>() -> Result<T, StoreError> {
        Err(StoreError::Failed("transaction not started".into()))
    }
    match cmd {
        Cmd::Login { reply, .. } => Some(Answer::Login(reply, err())),
        Cmd::Waiting { reply, .. } => Some(Answer::Waiting(reply, err())),
        Cmd::Mail { reply, .. } => Some(Answer::Queue(reply, err())),
        Cmd::Public { reply, .. } => Some(Answer::Public(reply)),
        Cmd::Close { reply, .. } => Some(Answer::Close(reply)),
        Cmd::Delivered { .. } | Cmd::LoggedOut { .. } => None,
    }
}

fn failed(e: rusqlite::Error) -> StoreError {
    StoreError::Failed(e.to_string())
}

fn log_failure(what: &str, r: rusqlite::Result<usize>) {
    if let Err(e) = r {
        warn!(error = %e, op = what, "store operation failed");
    }
}

/// How many private lines are waiting, all mailboxes together.
fn count_waiting(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COUNT(*) FROM mailbox", [], |r| r.get(0))
        .map(from_sql)
}

/// How many accounts there are.
fn count_accounts(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))
        .map(from_sql)
}

/// `accounts` is the writer's running count, so that registering does not count the table each
/// time; it is recounted when it says the cap is reached (an admin may have released some).
fn login(
    tx: &rusqlite::Transaction<'_>,
    nick: &str,
    fingerprint: &str,
    now_ms: u64,
    max_accounts: usize,
    accounts: &mut u64,
) -> rusqlite::Result<LoginOutcome> {
    let key = nick_key(nick);
    let owner: Option<String> = tx
        .prepare_cached("SELECT fingerprint FROM accounts WHERE nick_key = ?1")?
        .query_row([&key], |r| r.get(0))
        .optional()?;
    match owner {
        None => {
            if *accounts >= max_accounts as u64 {
                *accounts = count_accounts(tx)?;
                if *accounts >= max_accounts as u64 {
                    return Ok(LoginOutcome::Full);
                }
            }
            tx.prepare_cached(
                "INSERT INTO accounts (nick_key, nick, fingerprint, created_ms, last_seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![key, nick, fingerprint, to_sql(now_ms)])?;
            *accounts += 1;
            Ok(LoginOutcome::Registered)
        }
        Some(owner) if owner == fingerprint => {
            tx.prepare_cached(
                "UPDATE accounts SET nick = ?2, last_seen_ms = ?3 WHERE nick_key = ?1",
            )?
            .execute(params![key, nick, to_sql(now_ms)])?;
            Ok(LoginOutcome::Known)
        }
        Some(_) => Ok(LoginOutcome::Taken),
    }
}

fn waiting(tx: &rusqlite::Transaction<'_>, key: &str, limit: usize) -> rusqlite::Result<Vec<Mail>> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, ts, sender, text, payload FROM mailbox WHERE to_key = ?1 ORDER BY id LIMIT ?2",
    )?;
    let mails = stmt
        .query_map(params![key, to_sql(limit as u64)], |r| {
            let payload: Option<Vec<u8>> = r.get(4)?;
            Ok(Mail {
                id: from_sql(r.get(0)?),
                ts: from_sql(r.get(1)?),
                from: r.get(2)?,
                body: match payload {
                    Some(payload) => Body::Relay(payload),
                    None => Body::Text(r.get(3)?),
                },
            })
        })?
        .collect();
    mails
}

/// Keeps `mail` for `to_key`. An offline recipient must be registered and within the mailbox
/// bounds; a live one (already delivered to) is kept up to the mailbox ceiling, so that a client
/// that never acknowledges cannot grow its mailbox without end.
fn queue_mail(
    tx: &rusqlite::Transaction<'_>,
    to_key: &str,
    mail: &Mail,
    arrival: Arrival,
    opts: Options,
    waiting: &mut u64,
) -> rusqlite::Result<QueueOutcome> {
    let registered = tx
        .prepare_cached("SELECT 1 FROM accounts WHERE nick_key = ?1")?
        .query_row([to_key], |_| Ok(()))
        .optional()?
        .is_some();
    let count: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM mailbox WHERE to_key = ?1")?
        .query_row([to_key], |r| r.get(0))?;
    let count = from_sql(count);
    match arrival {
        Arrival::Offline => {
            if !registered {
                return Ok(QueueOutcome::NoSuchAccount);
            }
            if count >= opts.mailbox_len as u64 {
                return Ok(QueueOutcome::MailboxFull);
            }
            if *waiting >= opts.mailbox_total as u64 {
                *waiting = count_waiting(tx)?;
                if *waiting >= opts.mailbox_total as u64 {
                    return Ok(QueueOutcome::StoreFull);
                }
            }
        }
        Arrival::Live => {
            // Already in the recipient's queue. Not kept for a nick an operator released
            // meanwhile (its next owner must not read it), nor beyond the ceiling.
            if !registered || count >= opts.mailbox_ceiling() as u64 {
                if registered {
                    warn!(
                        "a mailbox is at its ceiling; a delivered line is not kept for redelivery"
                    );
                }
                return Ok(QueueOutcome::Queued);
            }
        }
    }
    let (text, payload) = match &mail.body {
        Body::Text(text) => (text.as_str(), None),
        Body::Relay(payload) => ("", Some(payload.as_slice())),
    };
    tx.prepare_cached(
        "INSERT INTO mailbox (id, to_key, ts, sender, text, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        to_sql(mail.id),
        to_key,
        to_sql(mail.ts),
        mail.from,
        text,
        payload
    ])?;
    *waiting += 1;
    Ok(QueueOutcome::Queued)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: Options = Options {
        history_len: 3,
        mailbox_len: 2,
        max_accounts: 3,
        mailbox_total: 3,
        max_unacked: 2,
    };

    fn line(id: u64, from: &str, text: &str) -> Line {
        Line {
            id,
            ts: 1000 + id,
            from: from.into(),
            text: text.into(),
        }
    }

    fn mail(id: u64, from: &str, text: &str) -> Mail {
        Mail {
            id,
            ts: 1000 + id,
            from: from.into(),
            body: Body::Text(text.into()),
        }
    }

    async fn reply<T>(r: Result<Reply<T>, StoreError>) -> T {
        r.unwrap().await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn nick_belongs_to_the_first_fingerprint_case_insensitively() {
        let (store, _) = SqliteStore::open_in_memory(OPTS).unwrap();
        assert_eq!(
            reply(store.login("Alice", "fp-a", 1)).await,
            LoginOutcome::Registered
        );
        assert_eq!(
            reply(store.login("alice", "fp-a", 2)).await,
            LoginOutcome::Known
        );
        assert_eq!(
            reply(store.login("ALICE", "fp-b", 3)).await,
            LoginOutcome::Taken
        );
    }

    #[tokio::test]
    async fn mailbox_is_bounded_ordered_and_emptied_on_delivery() {
        let (store, _) = SqliteStore::open_in_memory(OPTS).unwrap();
        reply(store.login("bob", "fp-b", 1)).await;
        assert_eq!(
            reply(store.queue_mail("carol", mail(1, "a", "x"), Arrival::Offline)).await,
            QueueOutcome::NoSuchAccount
        );
        for id in [5, 6] {
            assert_eq!(
                reply(store.queue_mail("bob", mail(id, "a", "m"), Arrival::Offline)).await,
                QueueOutcome::Queued
            );
        }
        assert_eq!(
            reply(store.queue_mail("bob", mail(7, "a", "m"), Arrival::Offline)).await,
            QueueOutcome::MailboxFull
        );
        let waiting = reply(store.waiting("bob")).await;
        assert_eq!(waiting.iter().map(|l| l.id).collect::<Vec<_>>(), [5, 6]);
        store.delivered("bob", 5).unwrap();
        let waiting = reply(store.waiting("bob")).await;
        assert_eq!(waiting.iter().map(|l| l.id).collect::<Vec<_>>(), [6]);
    }

    #[tokio::test]
    async fn history_keeps_the_newest_lines_and_ids_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            let (store, loaded) = SqliteStore::open(&path, OPTS).unwrap();
            assert_eq!(loaded.last_id, 0);
            for id in 1..=5 {
                store
                    .append_public(line(id, "a", &format!("l{id}")))
                    .unwrap();
            }
            reply(store.close(42)).await;
            store.join();
        }
        let (store, loaded) = SqliteStore::open(&path, OPTS).unwrap();
        assert_eq!(
            loaded.history.iter().map(|l| l.id).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(loaded.history[0], line(3, "a", "l3"));
        assert_eq!(loaded.last_id, 42);
        reply(store.close(0)).await;
    }

    #[test]
    fn a_second_open_is_refused_while_the_first_holds_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let _first = SqliteStore::open(&path, OPTS).unwrap();
        let err = SqliteStore::open(&path, OPTS).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    }

    #[test]
    fn garbage_file_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = SqliteStore::open(&path, OPTS).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("move it aside"), "{err}");
    }

    #[test]
    fn release_frees_the_nick_and_drops_its_mail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let rt = tokio::runtime::Runtime::new().unwrap();
        {
            let (store, _) = SqliteStore::open(&path, OPTS).unwrap();
            rt.block_on(async {
                reply(store.login("bob", "fp-b", 1)).await;
                reply(store.queue_mail("bob", mail(1, "a", "secret"), Arrival::Offline)).await;
                reply(store.close(1)).await;
            });
            store.join();
        }
        let accounts = SqliteStore::list_accounts(&path).unwrap();
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0].nick, "bob");
        assert_eq!(accounts[0].waiting, 1);
        assert!(SqliteStore::release(&path, "BOB").unwrap());
        assert!(!SqliteStore::release(&path, "bob").unwrap());
        let (store, _) = SqliteStore::open(&path, OPTS).unwrap();
        rt.block_on(async {
            assert_eq!(
                reply(store.login("bob", "fp-new", 2)).await,
                LoginOutcome::Registered
            );
            assert!(reply(store.waiting("bob")).await.is_empty());
        });
    }

    #[tokio::test]
    async fn registration_stops_at_the_cap_and_a_release_makes_room() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let (store, _) = SqliteStore::open(&path, OPTS).unwrap(); // at most 3 accounts
        for nick in ["a", "b", "c"] {
            assert_eq!(
                reply(store.login(nick, "fp", 1)).await,
                LoginOutcome::Registered
            );
        }
        assert_eq!(reply(store.login("d", "fp", 1)).await, LoginOutcome::Full);
        assert_eq!(reply(store.login("a", "fp", 2)).await, LoginOutcome::Known);
        // An operator releases one while the server runs: the cap is recounted.
        assert!(SqliteStore::release(&path, "b").unwrap());
        assert_eq!(
            reply(store.login("d", "fp", 3)).await,
            LoginOutcome::Registered
        );
        assert_eq!(reply(store.login("e", "fp", 3)).await, LoginOutcome::Full);
    }

    #[tokio::test]
    async fn the_total_of_waiting_lines_is_bounded_and_delivery_frees_room() {
        let (store, _) = SqliteStore::open_in_memory(OPTS).unwrap(); // 2 per user, 3 in all
        for nick in ["bob", "carol"] {
            reply(store.login(nick, "fp", 1)).await;
        }
        for (id, to) in [(1, "bob"), (2, "bob"), (3, "carol")] {
            assert_eq!(
                reply(store.queue_mail(to, mail(id, "a", "m"), Arrival::Offline)).await,
                QueueOutcome::Queued
            );
        }
        assert_eq!(
            reply(store.queue_mail("carol", mail(4, "a", "m"), Arrival::Offline)).await,
            QueueOutcome::StoreFull
        );
        store.delivered("bob", 2).unwrap();
        assert_eq!(
            reply(store.queue_mail("carol", mail(5, "a", "m"), Arrival::Offline)).await,
            QueueOutcome::Queued
        );
    }
}
