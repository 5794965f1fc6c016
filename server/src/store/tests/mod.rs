//! The store's behaviour tests, run on every backend: each test is written once, generic over
//! a [`Place`] where a store is opened, and [`on_both!`] instantiates it as
//! `…::sqlite::NAME` (a file in a temporary directory) and `…::postgres::NAME` (a database of
//! its own, created on the server `MM_TEST_POSTGRES` names and dropped afterwards).
//! Fault injection that only one backend has stays with it (`sqlite/tests`,
//! `postgres/tests`).

mod accounts;
mod basics;
mod credentials;
mod faults;
pub(crate) mod keys;
pub(crate) mod rooms;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot::error::TryRecvError;

use super::postgres::{off_runtime, PgStore, PgTarget};
use super::sqlite::SqliteStore;
use super::writer::{Backend, BatchStore, Tuning, TUNING};
use super::*;
use crate::clock::{Clock, ManualClock};

/// Where a test opens its stores: the same place each time, so that a reopen finds what was
/// stored; removed when dropped.
pub(crate) trait Place: Sized {
    type B: Backend;
    /// A new, empty place.
    fn new() -> Self;
    /// Opens the store there with `tuning`.
    fn open_tuned(
        &self,
        opts: Options,
        clock: Arc<dyn Clock>,
        tuning: Tuning,
    ) -> Result<(BatchStore<Self::B>, Loaded), StoreError>;
    /// How many rows `from` (a table, and maybe a `WHERE` clause) selects in the store there.
    fn count(&self, from: &str) -> i64;
    /// Another process holding the store so that the server's commits fail (reads still
    /// work), until the guard is dropped.
    fn hold(&self) -> Box<dyn std::any::Any>;
    /// Every account there, as `mm-server accounts list` reads them.
    fn accounts(&self) -> Vec<Account>;
    /// Frees `nick` there, as `mm-server accounts release` does.
    fn release(&self, nick: &str) -> bool;
    /// Adds `credential` to the account `key` there, on a connection of its own (nothing in the
    /// protocol adds a second credential yet).
    fn add_credential(&self, key: &str, credential: &str, now_ms: u64);
    /// Opens the store there.
    fn open(
        &self,
        opts: Options,
        clock: Arc<dyn Clock>,
    ) -> Result<(BatchStore<Self::B>, Loaded), StoreError> {
        self.open_tuned(opts, clock, TUNING)
    }
}

/// An SQLite file in a temporary directory.
pub(crate) struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join("store.db")
    }
}

impl Place for Sqlite {
    type B = super::sqlite::SqliteBackend;
    fn new() -> Self {
        Sqlite {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }
    fn open_tuned(
        &self,
        opts: Options,
        clock: Arc<dyn Clock>,
        tuning: Tuning,
    ) -> Result<(SqliteStore, Loaded), StoreError> {
        SqliteStore::open_tuned(&self.path(), opts, clock, tuning)
    }
    fn hold(&self) -> Box<dyn std::any::Any> {
        // As `BEGIN EXCLUSIVE` in the sqlite3 shell would; root cannot bypass it.
        let conn = rusqlite::Connection::open(self.path()).expect("the store's file");
        conn.busy_timeout(Duration::from_secs(5))
            .expect("a busy timeout");
        conn.execute_batch("BEGIN EXCLUSIVE")
            .expect("the write lock");
        Box::new(conn)
    }
    fn accounts(&self) -> Vec<Account> {
        SqliteStore::list_accounts(&self.path()).expect("the accounts")
    }
    fn release(&self, nick: &str) -> bool {
        SqliteStore::release(&self.path(), nick).expect("a release")
    }
    fn add_credential(&self, key: &str, credential: &str, now_ms: u64) {
        let conn = rusqlite::Connection::open(self.path()).expect("the store's file");
        conn.busy_timeout(Duration::from_secs(5))
            .expect("a busy timeout");
        super::sqlite::add_credential(&conn, key, credential, now_ms).expect("a credential");
    }
    fn count(&self, from: &str) -> i64 {
        rusqlite::Connection::open(self.path())
            .expect("the store's file")
            .query_row(&format!("SELECT COUNT(*) FROM {from}"), [], |r| r.get(0))
            .expect("a count")
    }
}

/// The PostgreSQL server the tests use: `MM_TEST_POSTGRES`, a URL of a role that may create
/// databases. Missing, the test fails (never skips) and says how to get one.
pub(crate) fn test_server() -> String {
    match std::env::var("MM_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "MM_TEST_POSTGRES is not set: the store tests need a PostgreSQL server. Start a throwaway one with `eval \"$(scripts/postgres start)\"` (scripts/test does this), then run the tests again"
        ),
    }
}

/// `url` with its database replaced by `db`.
pub(crate) fn with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &base[..host_end])
}

/// A database of its own on the test server, dropped at the end.
pub(crate) struct Postgres {
    pub(crate) server: String,
    pub(crate) name: String,
    pub(crate) target: PgTarget,
}

impl Postgres {
    /// A connection to the test server's maintenance database, for what a test does to the
    /// server from outside (on a thread of its own: see [`off_runtime`]).
    pub(crate) fn admin<T: Send>(&self, f: impl FnOnce(&mut ::postgres::Client) -> T + Send) -> T {
        let server = self.server.clone();
        off_runtime(move || {
            let mut client =
                ::postgres::Client::connect(&server, ::postgres::NoTls).expect("the test server");
            f(&mut client)
        })
    }
}

impl Place for Postgres {
    type B = super::postgres::PgBackend;
    fn new() -> Self {
        let server = test_server();
        let mut bytes = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .expect("random bytes");
        let name = format!(
            "mm_t_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let target = PgTarget::parse(&with_db(&server, &name)).expect("a test URL");
        let place = Postgres {
            server,
            name,
            target,
        };
        let create = format!("CREATE DATABASE {}", place.name);
        place.admin(move |c| c.batch_execute(&create).expect("CREATE DATABASE"));
        place
    }
    fn open_tuned(
        &self,
        opts: Options,
        clock: Arc<dyn Clock>,
        tuning: Tuning,
    ) -> Result<(PgStore, Loaded), StoreError> {
        PgStore::open_tuned(&self.target, opts, clock, tuning)
    }
    fn hold(&self) -> Box<dyn std::any::Any> {
        Box::new(Held::new(with_db(&self.server, &self.name)))
    }
    fn accounts(&self) -> Vec<Account> {
        PgStore::list_accounts(&self.target).expect("the accounts")
    }
    fn release(&self, nick: &str) -> bool {
        PgStore::release(&self.target, nick).expect("a release")
    }
    fn add_credential(&self, key: &str, credential: &str, now_ms: u64) {
        let url = with_db(&self.server, &self.name);
        let (key, credential) = (key.to_owned(), credential.to_owned());
        let kind = CredentialKind::of(&credential).as_str();
        let now = super::encode::to_sql(now_ms);
        off_runtime(move || {
            ::postgres::Client::connect(&url, ::postgres::NoTls)
                .expect("the test database")
                .execute(
                    "INSERT INTO account_credentials (nick_key, credential, kind, added_ms)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (nick_key, credential) DO NOTHING",
                    &[&key, &credential, &kind, &now],
                )
                .expect("a credential");
        });
    }
    fn count(&self, from: &str) -> i64 {
        let url = with_db(&self.server, &self.name);
        let sql = format!("SELECT COUNT(*) FROM {from}");
        off_runtime(move || {
            ::postgres::Client::connect(&url, ::postgres::NoTls)
                .expect("the test database")
                .query_one(&sql, &[])
                .expect("a count")
                .get(0)
        })
    }
}

/// Another session's transaction holding every table of the store in `EXCLUSIVE` mode (plain
/// reads go on, writes wait), until dropped.
struct Held {
    release: Option<std::sync::mpsc::Sender<()>>,
    holder: Option<std::thread::JoinHandle<()>>,
}

impl Held {
    fn new(url: String) -> Held {
        let (locked, is_locked) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).expect("the database");
            let mut tx = c.transaction().expect("a transaction");
            tx.batch_execute(
                "LOCK TABLE accounts, account_credentials, history, mailbox, meta, rooms,
                     room_members, room_bans, room_invites, room_requests, prekeys,
                     one_time_prekeys IN EXCLUSIVE MODE",
            )
            .expect("the locks");
            locked.send(()).expect("the test waits");
            let _ = released.recv();
            tx.commit().expect("released");
        });
        is_locked.recv().expect("the tables locked");
        Held {
            release: Some(release),
            holder: Some(holder),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(holder) = self.holder.take() {
            let _ = holder.join();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = self.admin(move |c| c.batch_execute(&drop));
    }
}

/// Instantiates generic tests (`async fn name<P: Place>()`, or `fn` for `sync`) on each backend.
macro_rules! on_both {
    (async: [$($a:ident),* $(,)?], sync: [$($s:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $a() { super::$a::<crate::store::tests::Sqlite>().await })*
            $(#[test] fn $s() { super::$s::<crate::store::tests::Sqlite>() })*
        }
        mod postgres {
            $(#[tokio::test] async fn $a() { super::$a::<crate::store::tests::Postgres>().await })*
            $(#[test] fn $s() { super::$s::<crate::store::tests::Postgres>() })*
        }
    };
}
pub(crate) use on_both;

/// When the tests' store clock stands (2023-11-14T22:13:20Z).
pub(crate) const START_MS: u64 = 1_700_000_000_000;

/// A clock for a store under test, standing at [`START_MS`].
pub(crate) fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(START_MS))
}

pub(crate) const OPTS: Options = Options {
    history_len: 3,
    mailbox_len: 2,
    max_accounts: 3,
    mailbox_total: 3,
    max_unacked: 2,
};

pub(crate) const OPTS_LONG: Options = Options {
    history_len: 1000,
    ..OPTS
};

pub(crate) const OPTS_MANY: Options = Options {
    max_accounts: 100,
    ..OPTS_LONG
};

/// Short waits, so that a failure is noticed (and given up at close) within a test's time.
pub(crate) const FAST: Tuning = Tuning {
    busy_timeout: Duration::from_millis(100),
    retry_busy_timeout: Duration::from_millis(10),
    backoff_min: Duration::from_millis(5),
    backoff_max: Duration::from_millis(20),
    close_effort: Duration::from_millis(300),
};

pub(crate) fn line(id: u64, from: &str, text: &str) -> Line {
    Line {
        room: RoomId::LOBBY,
        action: false,
        id,
        ts: 1000 + id,
        from: from.into(),
        text: text.into(),
    }
}

pub(crate) fn mail(id: u64, from: &str, text: &str) -> Mail {
    Mail {
        id,
        ts: 1000 + id,
        from: from.into(),
        body: Body::Text(text.into()),
    }
}

pub(crate) async fn reply<T>(r: Result<Reply<T>, StoreError>) -> T {
    r.unwrap().await.unwrap().unwrap()
}

/// Logs `nick` in (registering it if free) and says how it went.
pub(crate) async fn login(
    store: &dyn Store,
    nick: &str,
    fingerprint: &str,
    now: u64,
) -> LoginOutcome {
    reply(store.login(nick, fingerprint, now, true))
        .await
        .outcome
}

/// Waits until the writer says commits fail.
pub(crate) async fn failing<B: Backend>(store: &BatchStore<B>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.is_failing() {
        assert!(
            Instant::now() < deadline,
            "the store never noticed the failure"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) fn ids(mails: &[Mail]) -> Vec<u64> {
    mails.iter().map(|m| m.id).collect()
}

/// The account of `nick` (any case) among `accounts`.
pub(crate) fn account<'a>(accounts: &'a [Account], nick: &str) -> Option<&'a Account> {
    accounts.iter().find(|a| a.nick.eq_ignore_ascii_case(nick))
}

/// The lobby's history ids a start at `place` finds.
pub(crate) fn history_ids<P: Place>(place: &P) -> Vec<u64> {
    let (store, loaded) = place.open(OPTS_LONG, clock()).unwrap();
    store.stop();
    loaded.history.iter().map(|l| l.id).collect()
}
