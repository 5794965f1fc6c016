//! The store's unit tests, fault injection included.

use super::*;
use crate::store::Body;

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

/// Logs `nick` in (registering it if free) and says how it went.
async fn login(store: &SqliteStore, nick: &str, fingerprint: &str, now: u64) -> LoginOutcome {
    reply(store.login(nick, fingerprint, now, true))
        .await
        .outcome
}

#[tokio::test]
async fn nick_belongs_to_the_first_fingerprint_case_insensitively() {
    let (store, _) = SqliteStore::open_in_memory(OPTS).unwrap();
    assert_eq!(
        login(&store, "Alice", "fp-a", 1).await,
        LoginOutcome::Registered
    );
    assert_eq!(login(&store, "alice", "fp-a", 2).await, LoginOutcome::Known);
    assert_eq!(login(&store, "ALICE", "fp-b", 3).await, LoginOutcome::Taken);
}

#[tokio::test]
async fn mailbox_is_bounded_ordered_and_emptied_on_delivery() {
    let (store, _) = SqliteStore::open_in_memory(OPTS).unwrap();
    login(&store, "bob", "fp-b", 1).await;
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
            login(&store, "bob", "fp-b", 1).await;
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
            login(&store, "bob", "fp-new", 2).await,
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
        assert_eq!(login(&store, nick, "fp", 1).await, LoginOutcome::Registered);
    }
    assert_eq!(login(&store, "d", "fp", 1).await, LoginOutcome::Full);
    assert_eq!(login(&store, "a", "fp", 2).await, LoginOutcome::Known);
    // An operator releases one while the server runs: the cap is recounted.
    assert!(SqliteStore::release(&path, "b").unwrap());
    assert_eq!(login(&store, "d", "fp", 3).await, LoginOutcome::Registered);
    assert_eq!(login(&store, "e", "fp", 3).await, LoginOutcome::Full);
}

#[tokio::test]
async fn the_total_of_waiting_lines_is_bounded_and_delivery_frees_room() {
    let (store, _) = SqliteStore::open_in_memory(OPTS).unwrap(); // 2 per user, 3 in all
    for nick in ["bob", "carol"] {
        login(&store, nick, "fp", 1).await;
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

// --- Failures after acceptance: nothing accepted is lost, new writes are refused meanwhile. ---

#[tokio::test]
async fn lines_kept_for_online_users_stay_within_the_mailbox_ceiling_and_the_total() {
    // 2 per offline user, ceiling 2 + 2 unacknowledged, 3 in all.
    let (store, _) = SqliteStore::open_in_memory(OPTS).unwrap();
    for nick in ["bob", "carol", "dave"] {
        login(&store, nick, "fp", 1).await;
    }
    // A client that never acknowledges: its live lines are kept up to the total...
    for id in 1..=3 {
        assert_eq!(
            reply(store.queue_mail("bob", mail(id, "a", "m"), Arrival::Live)).await,
            QueueOutcome::Queued
        );
    }
    assert_eq!(reply(store.waiting("bob")).await.len(), 3);
    // ...and beyond it delivered but not kept, for anyone.
    assert_eq!(
        reply(store.queue_mail("carol", mail(4, "a", "m"), Arrival::Live)).await,
        QueueOutcome::Queued
    );
    assert!(reply(store.waiting("carol")).await.is_empty());
    assert_eq!(
        reply(store.queue_mail("dave", mail(5, "a", "m"), Arrival::Offline)).await,
        QueueOutcome::StoreFull
    );
    // Acknowledging makes room again.
    store.delivered("bob", 3).unwrap();
    assert_eq!(
        reply(store.queue_mail("dave", mail(6, "a", "m"), Arrival::Offline)).await,
        QueueOutcome::Queued
    );
}

use std::time::Instant;

use tokio::sync::oneshot::error::TryRecvError;

/// Short waits, so that a failure is noticed (and given up at close) within a test's time.
const FAST: Tuning = Tuning {
    busy_timeout: Duration::from_millis(100),
    retry_busy_timeout: Duration::from_millis(10),
    backoff_min: Duration::from_millis(5),
    backoff_max: Duration::from_millis(20),
    close_effort: Duration::from_millis(300),
};

impl SqliteStore {
    /// Runs `f` on the writer thread (outside any transaction) and waits for it.
    fn on_writer(&self, f: impl FnOnce(&mut writer::Writer) + Send + 'static) {
        let (done, wait) = std::sync::mpsc::channel();
        self.tx
            .send(Cmd::Test(Box::new(move |w| {
                f(w);
                let _ = done.send(());
            })))
            .unwrap();
        wait.recv().unwrap();
    }

    /// Stops the writer until the returned sender is dropped, so that what is submitted
    /// meanwhile lands in one batch.
    fn pause(&self) -> std::sync::mpsc::Sender<()> {
        let (resume, wait) = std::sync::mpsc::channel::<()>();
        self.tx
            .send(Cmd::Test(Box::new(move |_| {
                let _ = wait.recv();
            })))
            .unwrap();
        resume
    }

    fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }
}

/// Waits until the writer says commits fail.
async fn failing(store: &SqliteStore) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.is_failing() {
        assert!(
            Instant::now() < deadline,
            "the store never noticed the failure"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Another process's connection holding the store's write lock (as `BEGIN EXCLUSIVE` in the
/// sqlite3 shell would); released on drop. Root cannot bypass it.
fn hold_lock(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    conn
}

fn history_ids(path: &Path) -> Vec<u64> {
    let (store, loaded) = SqliteStore::open(path, OPTS_LONG).unwrap();
    drop(store);
    loaded.history.iter().map(|l| l.id).collect()
}

const OPTS_LONG: Options = Options {
    history_len: 1000,
    ..OPTS
};

fn ids(mails: &[Mail]) -> Vec<u64> {
    mails.iter().map(|m| m.id).collect()
}

#[tokio::test]
async fn a_locked_store_keeps_what_it_accepted_refuses_new_writes_and_commits_once_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open_tuned(&path, OPTS_LONG, FAST).unwrap();
    login(&store, "bob", "fp-b", 1).await;
    reply(store.queue_mail("bob", mail(1, "a", "waiting"), Arrival::Offline)).await;
    reply(store.append_public(line(2, "a", "before"))).await;

    let lock = hold_lock(&path);
    let mut held = store.append_public(line(3, "a", "held")).unwrap();
    failing(&store).await;
    // New writes are refused at once (the hub then delivers them to nobody).
    assert!(matches!(
        store.append_public(line(4, "a", "refused")),
        Err(StoreError::Busy)
    ));
    assert!(matches!(
        store.queue_mail("bob", mail(5, "a", "refused"), Arrival::Offline),
        Err(StoreError::Busy)
    ));
    // Reads still work: the owner logs in and reads the mailbox; nobody registers.
    assert_eq!(login(&store, "Bob", "fp-b", 2).await, LoginOutcome::Known);
    assert_eq!(login(&store, "bob", "fp-x", 2).await, LoginOutcome::Taken);
    assert!(matches!(
        store
            .login("carol", "fp-c", 2, true)
            .unwrap()
            .await
            .unwrap(),
        Err(StoreError::Busy)
    ));
    assert_eq!(ids(&reply(store.waiting("bob")).await), [1]);
    // The accepted line is not answered while it is not stored...
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(matches!(held.try_recv(), Err(TryRecvError::Empty)));
    // ...and is stored, then answered, once the lock is released.
    drop(lock);
    held.await.unwrap().unwrap();
    assert!(!store.is_failing());
    reply(store.append_public(line(6, "a", "after"))).await;
    assert_eq!(
        login(&store, "carol", "fp-c", 3).await,
        LoginOutcome::Registered
    );
    reply(store.close(6)).await;
    store.join();
    drop(store);
    assert_eq!(history_ids(&path), [2, 3, 6]);
}

#[tokio::test]
async fn a_full_disk_is_retried_until_there_is_room_and_nothing_accepted_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open_tuned(&path, OPTS_LONG, FAST).unwrap();
    // The writer's file may not grow (max_page_count is per connection): SQLITE_FULL.
    store.on_writer(|w| {
        let pages: i64 = w
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let max: i64 = w
            .conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(max, pages);
    });
    let big = "x".repeat(8000); // overflow pages: the file must grow
    let paused = store.pause();
    let held: Vec<_> = (1..=5)
        .map(|id| store.append_public(line(id, "a", &big)).unwrap())
        .collect();
    drop(paused);
    failing(&store).await;
    assert!(matches!(
        store.append_public(line(9, "a", "refused")),
        Err(StoreError::Busy)
    ));
    store.on_writer(|w| {
        let _: i64 = w
            .conn
            .query_row("PRAGMA max_page_count = 1000000", [], |r| r.get(0))
            .unwrap();
    });
    for r in held {
        r.await.unwrap().unwrap();
    }
    reply(store.close(5)).await;
    store.join();
    drop(store);
    assert_eq!(history_ids(&path), [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn a_store_that_became_read_only_is_retried_while_owners_still_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open_tuned(&path, OPTS_LONG, FAST).unwrap();
    login(&store, "bob", "fp-b", 1).await;
    login(&store, "carol", "fp-c", 1).await;
    login(&store, "carol", "fp-c", 1).await; // returned: nothing left to record
    store.on_writer(|w| w.conn.execute_batch("PRAGMA query_only = 1").unwrap());
    let held = store
        .queue_mail("bob", mail(1, "a", "kept"), Arrival::Offline)
        .unwrap();
    failing(&store).await;
    // Not a registration: an owner's login is a read (its last-seen time is best effort).
    assert_eq!(login(&store, "carol", "fp-c", 2).await, LoginOutcome::Known);
    assert_eq!(login(&store, "carol", "fp-x", 2).await, LoginOutcome::Taken);
    assert!(matches!(
        store.login("dave", "fp-d", 2, true).unwrap().await.unwrap(),
        Err(StoreError::Busy)
    ));
    // bob's mailbox has a held write: his login, which reads it, waits for it, and so does a
    // plain read, so that they stay in order.
    let mut bob = store.login("bob", "fp-b", 2, true).unwrap();
    let mut read = store.waiting("bob").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(bob.try_recv(), Err(TryRecvError::Empty)));
    assert!(matches!(read.try_recv(), Err(TryRecvError::Empty)));
    store.on_writer(|w| w.conn.execute_batch("PRAGMA query_only = 0").unwrap());
    assert_eq!(held.await.unwrap().unwrap(), QueueOutcome::Queued);
    let bob = bob.await.unwrap().unwrap();
    assert_eq!(bob.outcome, LoginOutcome::Known);
    assert_eq!(ids(&bob.waiting), [1]);
    assert_eq!(ids(&read.await.unwrap().unwrap()), [1]);
    reply(store.close(1)).await;
}

#[tokio::test]
async fn io_errors_retry_the_whole_batch_and_the_running_counts_stay_right() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    // At most 2 lines per mailbox and 3 in all.
    let (store, _) = SqliteStore::open_tuned(&path, OPTS, FAST).unwrap();
    for nick in ["bob", "carol", "dave"] {
        login(&store, nick, "fp", 1).await;
    }
    for (id, to) in [(1, "bob"), (2, "bob"), (3, "carol")] {
        reply(store.queue_mail(to, mail(id, "a", "m"), Arrival::Offline)).await;
    }
    // The next three commits fail; the batch deleting bob's two lines is tried four times.
    store.on_writer(|w| w.fail_commits = 3);
    store.delivered("bob", 2).unwrap();
    // After the deletion in order: answered once it is committed.
    assert!(reply(store.waiting("bob")).await.is_empty());
    store.on_writer(|w| assert_eq!(w.fail_commits, 0, "the failures were injected"));
    assert!(!store.is_failing());
    // One line waits in all: room for exactly two more. A count changed by the failed
    // attempts would let a fourth line in.
    for (id, to) in [(4, "carol"), (5, "dave")] {
        assert_eq!(
            reply(store.queue_mail(to, mail(id, "a", "m"), Arrival::Offline)).await,
            QueueOutcome::Queued
        );
    }
    assert_eq!(
        reply(store.queue_mail("dave", mail(6, "a", "m"), Arrival::Offline)).await,
        QueueOutcome::StoreFull
    );
    reply(store.close(6)).await;
}

#[tokio::test]
async fn closing_while_commits_still_fail_gives_up_in_bounded_time_and_names_what_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open_tuned(&path, OPTS_LONG, FAST).unwrap();
    login(&store, "bob", "fp-b", 1).await;
    let lock = hold_lock(&path);
    let paused = store.pause();
    let public = store.append_public(line(1, "a", "lost")).unwrap();
    let private = store
        .queue_mail("bob", mail(2, "a", "lost"), Arrival::Offline)
        .unwrap();
    let closing = store.close(2).unwrap();
    let started = Instant::now();
    drop(paused);
    let closed = closing.await.unwrap();
    assert!(
        matches!(closed, Err(StoreError::NotStored { lines: 2, .. })),
        "{closed:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        public.await.unwrap(),
        Err(StoreError::NotStored { .. })
    ));
    assert!(matches!(
        private.await.unwrap(),
        Err(StoreError::NotStored { .. })
    ));
    store.join();
    drop((store, lock));
    assert!(history_ids(&path).is_empty());
}

#[tokio::test]
async fn an_operation_that_fails_on_its_own_is_refused_alone_and_its_batch_commits() {
    let (store, _) = SqliteStore::open_in_memory(OPTS).unwrap();
    login(&store, "bob", "fp-b", 1).await;
    let first = store
        .queue_mail("bob", mail(1, "a", "one"), Arrival::Offline)
        .unwrap();
    // The same id again: a constraint violation, which retrying could never fix.
    let again = store
        .queue_mail("bob", mail(1, "a", "dup"), Arrival::Offline)
        .unwrap();
    let public = store.append_public(line(2, "a", "p")).unwrap();
    assert_eq!(first.await.unwrap().unwrap(), QueueOutcome::Queued);
    assert!(matches!(again.await.unwrap(), Err(StoreError::Failed(_))));
    public.await.unwrap().unwrap();
    assert!(!store.is_failing());
    assert_eq!(ids(&reply(store.waiting("bob")).await), [1]);
}

#[tokio::test]
async fn a_store_that_cannot_be_written_is_refused_at_start_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let (store, _) = SqliteStore::open(&path, OPTS).unwrap();
        reply(store.close(0)).await;
        store.join();
    }
    // A connection that cannot write (as a read-only mount would make it; root-proof).
    let conn = schema::open_connection(&path).unwrap();
    conn.execute_batch("PRAGMA query_only = 1").unwrap();
    let err = SqliteStore::start(conn, &path, OPTS, None, TUNING).unwrap_err();
    assert!(matches!(err, StoreError::NotWritable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("writable"),
        "{text}"
    );
    // A file SQLite itself opens read-only: its header's write version is from the future.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[18] = 3;
    std::fs::write(&path, &bytes).unwrap();
    let err = SqliteStore::open(&path, OPTS).unwrap_err();
    assert!(matches!(err, StoreError::NotWritable { .. }), "{err}");
}

#[tokio::test]
async fn an_owner_logs_in_again_and_again_on_a_store_that_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open_tuned(&path, OPTS, FAST).unwrap();
    login(&store, "bob", "fp-b", 1).await;
    store.on_writer(|w| w.conn.execute_batch("PRAGMA query_only = 1").unwrap());
    // The check is a read; recording the time is best effort: it never fails the login.
    for now in 2..5 {
        assert_eq!(login(&store, "BOB", "fp-b", now).await, LoginOutcome::Known);
        let _ = store.logged_out("bob", now, false); // refused while failing: best effort too
    }
    assert_eq!(reply(store.waiting("bob")).await, []);
    // Writable again: the store notices by itself (nothing was held).
    store.on_writer(|w| w.conn.execute_batch("PRAGMA query_only = 0").unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.is_failing() {
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reply(store.append_public(line(1, "a", "x"))).await;
}

// --- Accounts: look-alikes, atomic logins, undoing registrations, expiry. ---

const OPTS_MANY: Options = Options {
    max_accounts: 100,
    ..OPTS_LONG
};

fn account<'a>(accounts: &'a [Account], nick: &str) -> Option<&'a Account> {
    accounts.iter().find(|a| a.nick.eq_ignore_ascii_case(nick))
}

#[tokio::test]
async fn look_alikes_are_refused_even_when_registering_in_the_same_batch() {
    let (store, _) = SqliteStore::open_in_memory(OPTS_MANY).unwrap();
    let paused = store.pause();
    let first = store.login("alice", "fp-a", 1, true).unwrap();
    let second = store.login("aIice", "fp-m", 1, true).unwrap();
    let check = store.check_login("AL1CE", "fp-m").unwrap();
    drop(paused);
    assert_eq!(
        first.await.unwrap().unwrap().outcome,
        LoginOutcome::Registered
    );
    assert_eq!(
        second.await.unwrap().unwrap().outcome,
        LoginOutcome::LooksLike("alice".into())
    );
    assert_eq!(
        check.await.unwrap().unwrap(),
        LoginOutcome::LooksLike("alice".into())
    );
    // The owner, in any spelling, is unaffected; a nick that only reads alike is fine.
    assert_eq!(login(&store, "ALICE", "fp-a", 2).await, LoginOutcome::Known);
    assert_eq!(
        login(&store, "alicia", "fp-m", 2).await,
        LoginOutcome::Registered
    );
}

/// A store file as schema version 2 left it, with these (nick, fingerprint) accounts.
fn schema_2_store(path: &Path, accounts: &[(&str, &str)]) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE accounts (nick_key TEXT PRIMARY KEY, nick TEXT NOT NULL,
             fingerprint TEXT NOT NULL, created_ms INTEGER NOT NULL,
             last_seen_ms INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE history (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL,
             sender TEXT NOT NULL, text TEXT NOT NULL);
         CREATE TABLE mailbox (id INTEGER PRIMARY KEY, to_key TEXT NOT NULL,
             ts INTEGER NOT NULL, sender TEXT NOT NULL, text TEXT NOT NULL, payload BLOB);
         CREATE INDEX mailbox_by_recipient ON mailbox (to_key, id);
         CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
         PRAGMA user_version = 2;",
    )
    .unwrap();
    for (nick, fp) in accounts {
        conn.execute(
            "INSERT INTO accounts VALUES (?1, ?2, ?3, 5, 7)",
            [&nick.to_ascii_lowercase(), *nick, *fp],
        )
        .unwrap();
    }
}

#[tokio::test]
async fn the_migration_fills_skeletons_and_registered_look_alikes_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    schema_2_store(
        &path,
        &[("alice", "fp-a"), ("aIice", "fp-m"), ("bob", "fp-b")],
    );
    let (store, _) = SqliteStore::open(&path, OPTS_MANY).unwrap();
    let skeletons: Vec<(String, String)> = {
        let conn = Connection::open(&path).unwrap();
        let mut stmt = conn
            .prepare("SELECT nick, skeleton FROM accounts ORDER BY nick_key")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        rows
    };
    assert_eq!(
        skeletons,
        [
            ("aIice".to_string(), "allce".to_string()),
            ("alice".into(), "allce".into()),
            ("bob".into(), "bob".into())
        ]
    );
    // Both registered look-alikes log in; a new one is refused; nobody's account is unused.
    assert_eq!(
        login(&store, "alice", "fp-a", 10).await,
        LoginOutcome::Known
    );
    assert_eq!(
        login(&store, "AIICE", "fp-m", 10).await,
        LoginOutcome::Known
    );
    assert!(matches!(
        login(&store, "a1ice", "fp-x", 10).await,
        LoginOutcome::LooksLike(n) if n == "alice" || n == "AIICE"
    ));
    reply(store.close(0)).await;
    store.join();
    drop(store);
    let accounts = SqliteStore::list_accounts(&path).unwrap();
    assert_eq!(accounts.len(), 3);
    assert_eq!(account(&accounts, "bob").unwrap().returned_ms, Some(7));
}

#[tokio::test]
async fn a_login_that_fails_part_way_keeps_nothing_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open(&path, OPTS).unwrap(); // at most 3 accounts
                                                              // A mailbox row that cannot be read (its time is not a number): reading carol's mailbox
                                                              // fails on its own, after her registration was written in the same login.
    store.on_writer(|w| {
        w.conn
            .execute(
                "INSERT INTO mailbox (id, to_key, ts, sender, text) VALUES (1, 'carol', 'x', 'a', 'b')",
                [],
            )
            .unwrap();
    });
    assert!(matches!(
        store
            .login("carol", "fp-c", 1, true)
            .unwrap()
            .await
            .unwrap(),
        Err(StoreError::Failed(_))
    ));
    assert!(!store.is_failing());
    assert!(account(&SqliteStore::list_accounts(&path).unwrap(), "carol").is_none());
    // The running count did not move: three accounts still fit.
    for nick in ["a", "b", "c"] {
        assert_eq!(login(&store, nick, "fp", 2).await, LoginOutcome::Registered);
    }
    assert_eq!(login(&store, "d", "fp", 2).await, LoginOutcome::Full);
}

#[tokio::test]
async fn an_abandoned_registration_is_undone_only_if_it_is_still_that_registration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open(&path, OPTS_MANY).unwrap();
    // Registered, mail arrived, then its login gave up: undone, mail and all.
    assert_eq!(
        login(&store, "bob", "fp-b", 5).await,
        LoginOutcome::Registered
    );
    reply(store.queue_mail("bob", mail(1, "a", "x"), Arrival::Offline)).await;
    store.abandon_registration("BOB", "fp-b", 5).unwrap();
    // Only what that login made: not another certificate's, not another time's, not once used.
    assert_eq!(
        login(&store, "carol", "fp-c", 6).await,
        LoginOutcome::Registered
    );
    store.abandon_registration("carol", "fp-x", 6).unwrap();
    store.abandon_registration("carol", "fp-c", 5).unwrap();
    assert_eq!(
        login(&store, "dave", "fp-d", 7).await,
        LoginOutcome::Registered
    );
    assert_eq!(login(&store, "dave", "fp-d", 8).await, LoginOutcome::Known);
    store.abandon_registration("dave", "fp-d", 7).unwrap();
    assert!(reply(store.waiting("bob")).await.is_empty());
    let accounts = SqliteStore::list_accounts(&path).unwrap();
    let nicks: Vec<&str> = accounts.iter().map(|a| a.nick.as_str()).collect();
    assert_eq!(nicks, ["carol", "dave"]);
}

#[tokio::test]
async fn expiry_deletes_only_accounts_nobody_came_back_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open(&path, OPTS_MANY).unwrap();
    let day = 86_400_000;
    for (nick, at) in [
        ("gone", 1),
        ("gone2", 2),
        ("used", 1),
        ("online", 1),
        ("late", 1),
        ("recent", 30 * day),
    ] {
        assert_eq!(
            login(&store, nick, "fp", at).await,
            LoginOutcome::Registered
        );
    }
    assert_eq!(login(&store, "used", "fp", 2).await, LoginOutcome::Known);
    // late's registering connection ended on day 29 (a durable logout).
    store.logged_out("late", 29 * day, true).unwrap();
    reply(store.queue_mail("gone", mail(1, "a", "x"), Arrival::Offline)).await;
    let cutoff = 31 * day - 30 * day; // now = day 31, 30 days
    let expired = reply(store.expire_unused(cutoff, vec!["online".into()], 1)).await;
    assert_eq!(expired, ["gone"], "at most `limit`, oldest first");
    let expired = reply(store.expire_unused(cutoff, vec!["online".into()], 10)).await;
    assert_eq!(expired, ["gone2"]);
    assert!(reply(store.waiting("gone")).await.is_empty());
    let accounts = SqliteStore::list_accounts(&path).unwrap();
    let nicks: Vec<&str> = accounts.iter().map(|a| a.nick.as_str()).collect();
    assert_eq!(nicks, ["late", "online", "recent", "used"]);
    assert_eq!(account(&accounts, "used").unwrap().returned_ms, Some(2));
    assert_eq!(account(&accounts, "online").unwrap().returned_ms, None);
    // The expired nicks are free for anyone.
    assert_eq!(
        login(&store, "gone", "fp-new", 31 * day).await,
        LoginOutcome::Registered
    );
}

#[tokio::test]
async fn that_an_account_was_used_is_recorded_even_if_the_store_fails_at_that_moment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open_tuned(&path, OPTS_MANY, FAST).unwrap();
    assert_eq!(
        login(&store, "bob", "fp-b", 1).await,
        LoginOutcome::Registered
    );
    assert_eq!(
        login(&store, "eve", "fp-e", 1).await,
        LoginOutcome::Registered
    );
    store.on_writer(|w| w.conn.execute_batch("PRAGMA query_only = 1").unwrap());
    // bob comes back: the login works (from a read) even though nothing can be written...
    let held = store.append_public(line(1, "a", "held")).unwrap();
    failing(&store).await;
    assert_eq!(login(&store, "bob", "fp-b", 2).await, LoginOutcome::Known);
    // ...and eve's registering connection ends: recorded too, though other writes are refused.
    store.logged_out("eve", 3, true).unwrap();
    assert!(matches!(
        store.logged_out("bob", 3, false),
        Err(StoreError::Busy)
    ));
    store.on_writer(|w| w.conn.execute_batch("PRAGMA query_only = 0").unwrap());
    held.await.unwrap().unwrap();
    reply(store.close(1)).await;
    store.join();
    drop(store);
    let accounts = SqliteStore::list_accounts(&path).unwrap();
    assert_eq!(account(&accounts, "bob").unwrap().returned_ms, Some(2));
    assert_eq!(account(&accounts, "eve").unwrap().last_seen_ms, 3);
    assert_eq!(account(&accounts, "eve").unwrap().returned_ms, None);
}
