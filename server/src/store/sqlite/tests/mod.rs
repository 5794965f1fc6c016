//! The SQLite store's unit tests, fault injection included: the helpers here, the tests by
//! concern in the submodules.

mod accounts;
mod basics;
mod credentials;
mod faults;
mod keys;
mod rooms;

use std::time::Instant;

use tokio::sync::oneshot::error::TryRecvError;

use super::*;
use crate::clock::ManualClock;
use crate::store::writer::Tuning;
use crate::store::{Account, Body};
use crate::store::{Arrival, Line, Loaded, LoginOutcome, Mail, QueueOutcome, Reply, Store};
use mm_common::protocol::nick_key;
use std::sync::Arc;

/// When the tests' store clock stands (2023-11-14T22:13:20Z); it only times the store's own
/// bookkeeping, since logins and lines bring their own times.
const START_MS: u64 = 1_700_000_000_000;

/// A clock for a store under test, standing at [`START_MS`].
fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(START_MS))
}

const OPTS: Options = Options {
    history_len: 3,
    mailbox_len: 2,
    max_accounts: 3,
    mailbox_total: 3,
    max_unacked: 2,
};

fn line(id: u64, from: &str, text: &str) -> Line {
    Line {
        room: crate::hub::RoomId::LOBBY,
        action: false,
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

/// Short waits, so that a failure is noticed (and given up at close) within a test's time.
const FAST: Tuning = Tuning {
    busy_timeout: Duration::from_millis(100),
    retry_busy_timeout: Duration::from_millis(10),
    backoff_min: Duration::from_millis(5),
    backoff_max: Duration::from_millis(20),
    close_effort: Duration::from_millis(300),
};

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
    let (store, loaded) = SqliteStore::open(path, OPTS_LONG, clock()).unwrap();
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

const OPTS_MANY: Options = Options {
    max_accounts: 100,
    ..OPTS_LONG
};

fn account<'a>(accounts: &'a [Account], nick: &str) -> Option<&'a Account> {
    accounts.iter().find(|a| a.nick.eq_ignore_ascii_case(nick))
}
