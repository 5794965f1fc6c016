//! A store that keeps everything in memory and answers at once: nothing survives the process.
//! For tests (answers never depend on another thread, so tokio's paused clock stays exact) and
//! as the smallest example of the [`Store`] contract.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use mm_common::protocol::nick_key;
use tokio::sync::oneshot;

use super::sqlite::Options;
use super::{Arrival, Line, LoginOutcome, Mail, QueueOutcome, Reply, Store, StoreError};

/// See the module documentation.
#[derive(Debug)]
pub struct MemoryStore {
    opts: Options,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Fingerprint by nick key.
    accounts: HashMap<String, String>,
    mailboxes: HashMap<String, VecDeque<Mail>>,
    /// Lines in all mailboxes.
    waiting: usize,
    closed: bool,
}

fn answered<T>(value: T) -> Reply<T> {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(Ok(value)); // the receiver is right here
    rx
}

impl MemoryStore {
    /// An empty store with the same limits as the SQLite one.
    pub fn new(opts: Options) -> MemoryStore {
        MemoryStore {
            opts,
            state: Mutex::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.closed {
            return Err(StoreError::Closed);
        }
        Ok(f(&mut state))
    }
}

impl Store for MemoryStore {
    fn login(
        &self,
        nick: &str,
        fingerprint: &str,
        _: u64,
    ) -> Result<Reply<LoginOutcome>, StoreError> {
        let max = self.opts.max_accounts;
        self.with(|s| match s.accounts.get(&nick_key(nick)) {
            None if s.accounts.len() >= max => LoginOutcome::Full,
            None => {
                s.accounts.insert(nick_key(nick), fingerprint.to_owned());
                LoginOutcome::Registered
            }
            Some(owner) if owner == fingerprint => LoginOutcome::Known,
            Some(_) => LoginOutcome::Taken,
        })
        .map(answered)
    }

    fn waiting(&self, nick_key: &str) -> Result<Reply<Vec<Mail>>, StoreError> {
        self.with(|s| {
            s.mailboxes
                .get(nick_key)
                .map(|m| m.iter().cloned().collect())
                .unwrap_or_default()
        })
        .map(answered)
    }

    fn delivered(&self, nick_key: &str, up_to: u64) -> Result<(), StoreError> {
        self.with(|s| {
            if let Some(m) = s.mailboxes.get_mut(nick_key) {
                let before = m.len();
                m.retain(|l| l.id > up_to);
                s.waiting -= before - m.len();
            }
        })
    }

    fn logged_out(&self, _: &str, _: u64) -> Result<(), StoreError> {
        self.with(|_| ())
    }

    fn append_public(&self, _: Line) -> Result<Reply<()>, StoreError> {
        self.with(|_| ()).map(answered) // the hub's in-memory history is all there is
    }

    fn queue_mail(
        &self,
        to_key: &str,
        mail: Mail,
        arrival: Arrival,
    ) -> Result<Reply<QueueOutcome>, StoreError> {
        let (max, total) = (self.opts.mailbox_len, self.opts.mailbox_total);
        self.with(|s| {
            if !s.accounts.contains_key(to_key) {
                // Live: released by an operator while online; delivered, nothing to keep.
                return match arrival {
                    Arrival::Live => QueueOutcome::Queued,
                    Arrival::Offline => QueueOutcome::NoSuchAccount,
                };
            }
            if s.waiting >= total {
                return match arrival {
                    Arrival::Offline => QueueOutcome::StoreFull,
                    Arrival::Live => QueueOutcome::Queued, // delivered, not kept
                };
            }
            let mailbox = s.mailboxes.entry(to_key.to_owned()).or_default();
            if arrival == Arrival::Offline && mailbox.len() >= max {
                return QueueOutcome::MailboxFull;
            }
            mailbox.push_back(mail);
            s.waiting += 1;
            QueueOutcome::Queued
        })
        .map(answered)
    }

    fn close(&self, _: u64) -> Result<Reply<()>, StoreError> {
        self.with(|s| s.closed = true).map(answered)
    }
}

/// A [`MemoryStore`] whose mailbox reads or deletions can be made to fail (`Busy`), for tests
/// of what the hub and sessions do while a store is failing.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct FaultyStore {
    inner: MemoryStore,
    /// `waiting` is refused.
    pub waiting_fails: std::sync::atomic::AtomicBool,
    /// `delivered` is refused.
    pub deletes_fail: std::sync::atomic::AtomicBool,
    /// The `up_to` of every deletion applied.
    pub deleted: Mutex<Vec<u64>>,
}

#[cfg(test)]
impl FaultyStore {
    pub(crate) fn new(opts: Options) -> FaultyStore {
        FaultyStore {
            inner: MemoryStore::new(opts),
            waiting_fails: Default::default(),
            deletes_fail: Default::default(),
            deleted: Mutex::default(),
        }
    }
}

#[cfg(test)]
impl Store for FaultyStore {
    fn login(&self, n: &str, f: &str, t: u64) -> Result<Reply<LoginOutcome>, StoreError> {
        self.inner.login(n, f, t)
    }
    fn waiting(&self, key: &str) -> Result<Reply<Vec<Mail>>, StoreError> {
        if self.waiting_fails.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Busy);
        }
        self.inner.waiting(key)
    }
    fn delivered(&self, key: &str, up_to: u64) -> Result<(), StoreError> {
        if self.deletes_fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Busy);
        }
        self.deleted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(up_to);
        self.inner.delivered(key, up_to)
    }
    fn logged_out(&self, key: &str, t: u64) -> Result<(), StoreError> {
        self.inner.logged_out(key, t)
    }
    fn append_public(&self, line: Line) -> Result<Reply<()>, StoreError> {
        self.inner.append_public(line)
    }
    fn queue_mail(
        &self,
        key: &str,
        mail: Mail,
        a: Arrival,
    ) -> Result<Reply<QueueOutcome>, StoreError> {
        self.inner.queue_mail(key, mail, a)
    }
    fn close(&self, last_id: u64) -> Result<Reply<()>, StoreError> {
        self.inner.close(last_id)
    }
}
