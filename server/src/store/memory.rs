//! A store that keeps everything in memory and answers at once: nothing survives the process.
//! For tests (answers never depend on another thread, so tokio's paused clock stays exact) and
//! as the smallest example of the [`Store`] contract.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;

use mm_common::confusable::skeleton;
use mm_common::protocol::nick_key;
use tokio::sync::oneshot;

use mm_common::prekeys::{
    KeyUpload, OneTimePrekey, PrekeyBundle, SignedPrekey, DEVICE_TOKEN_LEN, MAX_ONE_TIME_STORED,
};

use super::{
    Arrival, Line, Login, LoginOutcome, Mail, Options, Published, QueueOutcome, Reply, RoomChange,
    RoomId, RoomRequest, Store, StoreError, Taken,
};

/// See the module documentation.
#[derive(Debug)]
pub struct MemoryStore {
    opts: Options,
    state: Mutex<State>,
}

#[derive(Debug)]
struct Account {
    nick: String,
    /// Whoever logs in with one of these owns it (one today: the registering one).
    credentials: BTreeSet<String>,
    skeleton: String,
    created_ms: u64,
    last_seen_ms: u64,
    returned: bool,
}

#[derive(Debug, Default)]
struct State {
    /// By nick key.
    accounts: HashMap<String, Account>,
    mailboxes: HashMap<String, VecDeque<Mail>>,
    /// Lines in all mailboxes.
    waiting: usize,
    /// Each room's newest lines (at most `history_len`), oldest first.
    history: HashMap<RoomId, VecDeque<Line>>,
    /// The key directory, by nick key.
    keys: HashMap<String, Keys>,
    closed: bool,
}

/// One account's entry in the key directory.
#[derive(Debug)]
struct Keys {
    identity: [u8; 32],
    signed_prekey: SignedPrekey,
    device: [u8; DEVICE_TOKEN_LEN],
    /// Oldest first; at most [`MAX_ONE_TIME_STORED`].
    one_time: VecDeque<OneTimePrekey>,
}

impl State {
    /// The account `key` is gone: its mail and keys go with it.
    fn forget(&mut self, key: &str) {
        if let Some(m) = self.mailboxes.remove(key) {
            self.waiting -= m.len();
        }
        self.keys.remove(key);
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
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

    /// Decides a login as the SQLite store does: `Registered` means "free".
    fn decide(&self, s: &State, nick: &str, credential: &str) -> LoginOutcome {
        match s.accounts.get(&nick_key(nick)) {
            Some(a) if a.credentials.contains(credential) => LoginOutcome::Known,
            Some(_) => LoginOutcome::Taken,
            None if s.accounts.len() >= self.opts.max_accounts => LoginOutcome::Full,
            None => {
                let sk = skeleton(nick);
                match s.accounts.values().find(|a| a.skeleton == sk) {
                    Some(a) => LoginOutcome::LooksLike(a.nick.clone()),
                    None => LoginOutcome::Registered,
                }
            }
        }
    }

    /// The nicks registered, as nick key → (credentials, returned), for tests.
    #[cfg(test)]
    pub(crate) fn accounts(&self) -> HashMap<String, (BTreeSet<String>, bool)> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .accounts
            .iter()
            .map(|(k, a)| (k.clone(), (a.credentials.clone(), a.returned)))
            .collect()
    }

    /// Adds `credential` to the account of `nick`, if there is one, for tests: nothing in the
    /// protocol adds a second credential yet. Returns whether there was such an account.
    #[cfg(test)]
    pub(crate) fn add_credential(&self, nick: &str, credential: &str) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .accounts
            .get_mut(&nick_key(nick))
            .map(|a| a.credentials.insert(credential.to_owned()))
            .is_some()
    }

    /// Frees `nick` and drops its credentials and mail, as `mm-server accounts release` does,
    /// for tests.
    #[cfg(test)]
    pub(crate) fn release(&self, nick: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.accounts.remove(&nick_key(nick));
        state.forget(&nick_key(nick));
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
    fn check_login(&self, nick: &str, credential: &str) -> Result<Reply<LoginOutcome>, StoreError> {
        self.with(|s| self.decide(s, nick, credential))
            .map(answered)
    }

    fn login(
        &self,
        nick: &str,
        credential: &str,
        now_ms: u64,
        register: bool,
    ) -> Result<Reply<Login>, StoreError> {
        let mailbox_ceiling = self.opts.mailbox_ceiling();
        self.with(|s| {
            let key = nick_key(nick);
            let outcome = match self.decide(s, nick, credential) {
                LoginOutcome::Known => {
                    if let Some(a) = s.accounts.get_mut(&key) {
                        a.returned = true;
                        a.nick = nick.to_owned();
                        a.last_seen_ms = now_ms;
                    }
                    LoginOutcome::Known
                }
                LoginOutcome::Registered if register => {
                    s.accounts.insert(
                        key.clone(),
                        Account {
                            nick: nick.to_owned(),
                            credentials: BTreeSet::from([credential.to_owned()]),
                            skeleton: skeleton(nick),
                            created_ms: now_ms,
                            last_seen_ms: now_ms,
                            returned: false,
                        },
                    );
                    // A new account never inherits a gone one's keys.
                    s.keys.remove(&key);
                    LoginOutcome::Registered
                }
                LoginOutcome::Registered => LoginOutcome::Changed,
                refused => refused,
            };
            let waiting = if outcome.admits() {
                s.mailboxes
                    .get(&key)
                    .map(|m| m.iter().take(mailbox_ceiling).cloned().collect())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            Login { outcome, waiting }
        })
        .map(answered)
    }

    fn abandon_registration(
        &self,
        nick: &str,
        credential: &str,
        created_ms: u64,
    ) -> Result<(), StoreError> {
        self.with(|s| {
            let key = nick_key(nick);
            let ours = s.accounts.get(&key).is_some_and(|a| {
                a.credentials.contains(credential) && a.created_ms == created_ms && !a.returned
            });
            if ours {
                s.accounts.remove(&key);
                s.forget(&key);
            }
        })
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

    fn logged_out(&self, key: &str, now_ms: u64, _: bool) -> Result<(), StoreError> {
        self.with(|s| {
            if let Some(a) = s.accounts.get_mut(key) {
                a.last_seen_ms = now_ms;
            }
        })
    }

    fn expire_unused(
        &self,
        cutoff_ms: u64,
        online: Vec<String>,
        limit: usize,
    ) -> Result<Reply<Vec<String>>, StoreError> {
        self.with(|s| {
            let mut old: Vec<(u64, String)> = s
                .accounts
                .iter()
                .filter(|(k, a)| {
                    !a.returned
                        && a.created_ms < cutoff_ms
                        && a.last_seen_ms < cutoff_ms
                        && !online.contains(k)
                })
                .map(|(k, a)| (a.created_ms, k.clone()))
                .collect();
            old.sort_unstable();
            old.truncate(limit);
            let mut expired = Vec::new();
            for (_, key) in old {
                if let Some(a) = s.accounts.remove(&key) {
                    expired.push(a.nick);
                }
                s.forget(&key);
            }
            expired
        })
        .map(answered)
    }

    fn append_public(&self, line: Line) -> Result<Reply<()>, StoreError> {
        let len = self.opts.history_len;
        self.with(|s| {
            if len == 0 {
                return;
            }
            let lines = s.history.entry(line.room).or_default();
            if lines.len() >= len {
                lines.pop_front();
            }
            lines.push_back(line);
        })
        .map(answered)
    }

    fn room(&self, change: RoomChange) -> Result<Reply<()>, StoreError> {
        // Rooms live in the hub; only what `room_history` answers is kept here.
        fn forget(s: &mut State, change: RoomChange) {
            match change {
                RoomChange::Delete(room) => {
                    s.history.remove(&room);
                }
                RoomChange::Ordered(_, changes) => {
                    for c in changes {
                        forget(s, c);
                    }
                }
                _ => {}
            }
        }
        self.with(|s| forget(s, change)).map(answered)
    }

    fn room_history(&self, room: RoomId, limit: usize) -> Result<Reply<Vec<Line>>, StoreError> {
        self.with(|s| {
            s.history.get(&room).map_or_else(Vec::new, |lines| {
                let skip = lines.len().saturating_sub(limit);
                lines.iter().skip(skip).cloned().collect()
            })
        })
        .map(answered)
    }

    fn admin_requests(&self) -> Result<Reply<Vec<RoomRequest>>, StoreError> {
        // No file, so no `mm-server rooms` to queue anything.
        self.with(|_| Vec::new()).map(answered)
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

    fn publish_keys(&self, key: &str, keys: KeyUpload) -> Result<Reply<Published>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.with(|s| {
            if !s.accounts.contains_key(key) {
                let _ = tx.send(Err(StoreError::Failed("no such account".into())));
                return;
            }
            let KeyUpload {
                identity,
                signed_prekey,
                one_time,
                device,
                replace_one_time,
            } = keys;
            let other_device = s
                .keys
                .get(key)
                .is_some_and(|k| k.device != device.previous && k.device != device.next);
            let entry = s.keys.entry(key.to_owned()).or_insert_with(|| Keys {
                identity,
                signed_prekey: signed_prekey.clone(),
                device: device.next,
                one_time: VecDeque::new(),
            });
            if replace_one_time || entry.identity != identity {
                entry.one_time.clear();
            }
            entry.identity = identity;
            entry.signed_prekey = signed_prekey;
            entry.device = device.next;
            for k in one_time {
                entry.one_time.retain(|o| o.id != k.id);
                entry.one_time.push_back(k);
            }
            while entry.one_time.len() > MAX_ONE_TIME_STORED {
                entry.one_time.pop_front();
            }
            let _ = tx.send(Ok(Published {
                one_time: count(entry.one_time.len()),
                other_device,
            }));
        })?;
        Ok(rx)
    }

    fn take_bundle(&self, key: &str, one_time: bool) -> Result<Reply<Taken>, StoreError> {
        self.with(|s| {
            let Some(entry) = s.keys.get_mut(key) else {
                return if s.accounts.contains_key(key) {
                    Taken::NoKeys
                } else {
                    Taken::NoSuchAccount
                };
            };
            let taken = if one_time {
                entry.one_time.pop_front()
            } else {
                None
            };
            Taken::Bundle {
                bundle: PrekeyBundle {
                    identity: entry.identity,
                    signed_prekey: entry.signed_prekey.clone(),
                    one_time: taken,
                },
                remaining: count(entry.one_time.len()),
            }
        })
        .map(answered)
    }

    fn prekey_count(&self, key: &str) -> Result<Reply<Option<u32>>, StoreError> {
        self.with(|s| s.keys.get(key).map(|k| count(k.one_time.len())))
            .map(answered)
    }

    fn reserve_ids(&self, _up_to: u64) -> Result<Reply<()>, StoreError> {
        // Nothing survives the process: there is no later start to continue after them.
        self.with(|_| ()).map(answered)
    }

    fn ready(&self) -> Result<Reply<()>, StoreError> {
        self.with(|_| ()).map(answered)
    }

    /// Nothing to measure: every answer is immediate and nothing waits.
    fn attach_metrics(&self, _: crate::metrics::StoreMetrics) {}

    fn close(&self, _: u64) -> Result<Reply<()>, StoreError> {
        self.with(|s| s.closed = true).map(answered)
    }
}

/// A reply the store gave that a [`FaultyStore`] holds back, with where it was to go.
#[cfg(test)]
type Stalled = (Reply<Login>, oneshot::Sender<Result<Login, StoreError>>);

/// A [`MemoryStore`] whose mailbox reads or deletions can be made to fail (`Busy`), or whose
/// login answers can be held back, for tests of what the hub and sessions do while a store is
/// failing.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct FaultyStore {
    /// The store behind it.
    pub inner: MemoryStore,
    /// `waiting` is refused, and a login fails (its mailbox cannot be read).
    pub waiting_fails: std::sync::atomic::AtomicBool,
    /// A login is applied, but its answer is held back (in `stalled`).
    pub logins_stall: std::sync::atomic::AtomicBool,
    /// The held-back login answers.
    pub stalled: Mutex<Vec<Stalled>>,
    /// `delivered` is refused.
    pub deletes_fail: std::sync::atomic::AtomicBool,
    /// The `up_to` of every deletion applied.
    pub deleted: Mutex<Vec<u64>>,
    /// `reserve_ids` is refused.
    pub reserve_fails: std::sync::atomic::AtomicBool,
    /// `publish_keys` and `take_bundle` are accepted and then fail (the store's answer is an
    /// error).
    pub keys_fail: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
impl Default for FaultyStore {
    fn default() -> FaultyStore {
        FaultyStore::new(Options::from_limits(&crate::config::Limits::default()))
    }
}

#[cfg(test)]
impl FaultyStore {
    pub(crate) fn new(opts: Options) -> FaultyStore {
        FaultyStore {
            inner: MemoryStore::new(opts),
            waiting_fails: Default::default(),
            logins_stall: Default::default(),
            stalled: Mutex::default(),
            deletes_fail: Default::default(),
            deleted: Mutex::default(),
            reserve_fails: Default::default(),
            keys_fail: Default::default(),
        }
    }
}

/// A reply that says the work failed.
#[cfg(test)]
fn failed_reply<T>() -> Reply<T> {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(Err(StoreError::Failed("injected".into())));
    rx
}

#[cfg(test)]
impl Store for FaultyStore {
    fn check_login(&self, n: &str, f: &str) -> Result<Reply<LoginOutcome>, StoreError> {
        self.inner.check_login(n, f)
    }
    fn login(&self, n: &str, f: &str, t: u64, register: bool) -> Result<Reply<Login>, StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.waiting_fails.load(SeqCst) {
            // The mailbox cannot be read: the whole login fails, and none of it is kept.
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Err(StoreError::Busy));
            return Ok(rx);
        }
        let reply = self.inner.login(n, f, t, register)?;
        if !self.logins_stall.load(SeqCst) {
            return Ok(reply);
        }
        // Done, but the answer does not come (a stuck disk, as the session sees it).
        let (tx, rx) = oneshot::channel();
        self.stalled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((reply, tx));
        Ok(rx)
    }
    fn abandon_registration(&self, n: &str, f: &str, t: u64) -> Result<(), StoreError> {
        self.inner.abandon_registration(n, f, t)
    }
    fn expire_unused(
        &self,
        cutoff_ms: u64,
        online: Vec<String>,
        limit: usize,
    ) -> Result<Reply<Vec<String>>, StoreError> {
        self.inner.expire_unused(cutoff_ms, online, limit)
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
    fn logged_out(&self, key: &str, t: u64, durable: bool) -> Result<(), StoreError> {
        self.inner.logged_out(key, t, durable)
    }
    fn append_public(&self, line: Line) -> Result<Reply<()>, StoreError> {
        self.inner.append_public(line)
    }
    fn room(&self, change: RoomChange) -> Result<Reply<()>, StoreError> {
        self.inner.room(change)
    }
    fn room_history(&self, room: RoomId, limit: usize) -> Result<Reply<Vec<Line>>, StoreError> {
        self.inner.room_history(room, limit)
    }
    fn admin_requests(&self) -> Result<Reply<Vec<RoomRequest>>, StoreError> {
        self.inner.admin_requests()
    }
    fn queue_mail(
        &self,
        key: &str,
        mail: Mail,
        a: Arrival,
    ) -> Result<Reply<QueueOutcome>, StoreError> {
        self.inner.queue_mail(key, mail, a)
    }
    fn publish_keys(&self, key: &str, keys: KeyUpload) -> Result<Reply<Published>, StoreError> {
        if self.keys_fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(failed_reply());
        }
        self.inner.publish_keys(key, keys)
    }
    fn take_bundle(&self, key: &str, one_time: bool) -> Result<Reply<Taken>, StoreError> {
        if self.keys_fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(failed_reply());
        }
        self.inner.take_bundle(key, one_time)
    }
    fn prekey_count(&self, key: &str) -> Result<Reply<Option<u32>>, StoreError> {
        self.inner.prekey_count(key)
    }
    fn reserve_ids(&self, up_to: u64) -> Result<Reply<()>, StoreError> {
        if self.reserve_fails.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Busy);
        }
        self.inner.reserve_ids(up_to)
    }
    fn ready(&self) -> Result<Reply<()>, StoreError> {
        self.inner.ready()
    }
    fn attach_metrics(&self, metrics: crate::metrics::StoreMetrics) {
        self.inner.attach_metrics(metrics);
    }
    fn close(&self, last_id: u64) -> Result<Reply<()>, StoreError> {
        self.inner.close(last_id)
    }
}
