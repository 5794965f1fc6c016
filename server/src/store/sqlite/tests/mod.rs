//! What only the SQLite store has: its file (damaged, locked, read-only, full), its schema's
//! history (migrations from every older version), fault injection through its connection,
//! and `mm-server rooms` on it. The behaviour tests of every backend are in `store/tests`.

mod accounts;
mod basics;
mod credentials;
mod faults;
mod keys;
mod rooms;

use std::time::Instant;

use tokio::sync::oneshot::error::TryRecvError;

use super::*;
use crate::store::tests::{
    account, clock, failing, ids, line, login, mail, reply, FAST, OPTS, OPTS_LONG, OPTS_MANY,
};
use crate::store::{Arrival, Loaded, LoginOutcome, QueueOutcome, Store};
use std::sync::Arc;

fn history_ids(path: &Path) -> Vec<u64> {
    let (store, loaded) = SqliteStore::open(path, OPTS_LONG, clock()).unwrap();
    drop(store);
    loaded.history.iter().map(|l| l.id).collect()
}
