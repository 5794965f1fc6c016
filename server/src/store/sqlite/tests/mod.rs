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

fn history_ids(path: &Path) -> Vec<u64> {
    let (store, loaded) = SqliteStore::open(path, OPTS_LONG, clock()).unwrap();
    drop(store);
    loaded.history.iter().map(|l| l.id).collect()
}
