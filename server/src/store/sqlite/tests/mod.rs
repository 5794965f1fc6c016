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
use crate::store::tests::{
    account, clock, failing, ids, line, login, mail, reply, FAST, OPTS, OPTS_LONG, OPTS_MANY,
    START_MS,
};
use crate::store::{Arrival, Loaded, LoginOutcome, QueueOutcome, Store};
use std::sync::Arc;

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
