//! The writer thread every backend runs ([`Writer`]), and the store in front of it
//! ([`BatchStore`]): the thread owns the backend's connection ([`Backend`]), commits batches,
//! answers after each commit, and keeps (and retries) what it accepted while commits fail.
//!
//! Work arrives on a bounded channel ([`CHANNEL_BOUND`]); the thread takes whatever has queued
//! up (up to [`MAX_BATCH`] operations), has the backend run it in one transaction and commit,
//! and only then answers. Under load the batches grow, so the message rate is not bound by the
//! commit rate; when idle, each operation commits on its own at once.
//!
//! A batch is run from borrowed commands: a failed attempt consumes nothing (no reply, no
//! count), so the same batch is retried whole until it commits. While it fails:
//! - the shared `failing` flag is set, and [`BatchStore`] refuses new writes at once;
//! - writes already in the channel join the held batch, in order;
//! - logins are answered from a read (a registered owner gets in, and that it came back is
//!   held to be written with the batch; a registration is refused with [`StoreError::Busy`]),
//!   and so are mailbox reads and room history reads, unless a held write touches that
//!   account, mailbox or room (then the login or read waits for the commit, to stay in order);
//! - the failure is logged when it starts, then at attempts 2, 4, 8, ..., and once when it
//!   recovers. At close, after [`Tuning::close_effort`], the writer gives up and answers
//!   [`StoreError::NotStored`], naming how many accepted lines were not stored.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mm_common::protocol::nick_key;
use tracing::{error, info, warn};

use mm_common::prekeys::KeyUpload;
use tokio::sync::oneshot;

use super::command::{Cmd, Counts, Decision, Outcome};
use super::{
    Arrival, Line, Login, LoginOutcome, Mail, Options, Published, QueueOutcome, Reply, RoomChange,
    RoomId, RoomRequest, Store, StoreError, Taken,
};
use crate::clock::Clock;

/// Most operations committed in one transaction.
pub(crate) const MAX_BATCH: usize = 1024;

/// Operations that may wait for the writer. Beyond this, callers get [`StoreError::Busy`] and
/// refuse the message rather than accept what might not be stored.
pub(crate) const CHANNEL_BOUND: usize = 16 * 1024;

/// What a backend does for the writer: run a batch in one transaction, and the few reads that
/// answer logins, mailboxes and room history while commits fail. Its errors are the
/// database's; an operation's own failure is its [`Outcome`].
pub trait Backend: Send + 'static {
    /// A failure of the database.
    type Error: std::fmt::Display;

    /// Runs `batch` in one transaction and commits it, pushing one outcome per command onto
    /// `outcomes` (which comes empty) and updating `counts` (a copy: the writer keeps it only
    /// if this succeeds). On `Err` nothing changed in the store.
    fn commit(
        &mut self,
        batch: &[Cmd],
        opts: Options,
        counts: &mut Counts,
        outcomes: &mut Vec<Outcome>,
    ) -> Result<(), Self::Error>;

    /// How a login stands, from reads ([`Decision::decide`]).
    fn evaluate(
        &mut self,
        nick: &str,
        credential: &str,
        max_accounts: usize,
        accounts: &mut u64,
    ) -> Result<Decision, Self::Error>;

    /// The first `limit` lines waiting for `key`, oldest first.
    fn waiting(&mut self, key: &str, limit: usize) -> Result<Vec<Mail>, Self::Error>;

    /// The newest `n` lines of `room`, oldest first.
    fn recent(&mut self, room: RoomId, n: usize) -> Result<Vec<Line>, Self::Error>;

    /// Commits started (`true`) or stopped failing: a backend may wait less for locks while
    /// they fail, so that reads are answered between attempts.
    fn retrying(&mut self, on: bool, tuning: &Tuning);

    /// At close, after the last commit.
    fn finish(&mut self);
}

/// How the writer waits and retries.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// How long the backend waits for a lock held by another connection (an admin command)
    /// while commits work, before a commit counts as failed.
    pub(crate) busy_timeout: Duration,
    /// The same while commits fail: short, so that reads are answered between attempts.
    pub(crate) retry_busy_timeout: Duration,
    /// First pause between attempts; it doubles up to `backoff_max`.
    pub(crate) backoff_min: Duration,
    /// Longest pause between attempts.
    pub(crate) backoff_max: Duration,
    /// At close (server shutdown), how long the writer keeps retrying before it gives up and
    /// reports what was not stored.
    pub(crate) close_effort: Duration,
}

/// The tuning of a server.
pub(crate) const TUNING: Tuning = Tuning {
    busy_timeout: Duration::from_secs(5),
    retry_busy_timeout: Duration::from_millis(100),
    backoff_min: Duration::from_millis(20),
    backoff_max: Duration::from_secs(1),
    close_effort: Duration::from_secs(10),
};

/// An operation's own failure as its answer.
pub(crate) fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(e.to_string())
}

/// While commits fail: what the held batch is about to change, so that reads of it wait for
/// the commit instead of running ahead of it.
#[derive(Debug, Default)]
struct Held {
    /// Accounts and mailboxes a held write changes.
    mailboxes: HashSet<String>,
    /// A held expiry sweep, which may delete any unused account.
    expire: bool,
    /// Rooms with a held line.
    rooms: HashSet<RoomId>,
    /// A held room change (a deletion drops a room's history).
    room_change: bool,
}

/// What the writer did, logged at close.
#[derive(Debug, Default)]
pub struct Stats {
    batches: u64,
    ops: u64,
    /// Longest time from a line's acceptance to its commit, in ms on the store's clock.
    pub(crate) max_lag_ms: u64,
    /// Times the store started failing.
    outages: u64,
    /// When the last outage ended.
    recovered: Option<Instant>,
}

/// Test code run on the writer thread.
pub type Hook<B> = Box<dyn FnOnce(&mut Writer<B>) + Send>;

/// What arrives on the writer's channel.
pub enum Msg<B: Backend> {
    /// Work for a batch.
    Cmd(Cmd),
    /// Runs on the writer thread as soon as it is received, outside any transaction: fault
    /// injection for tests.
    #[cfg_attr(not(test), allow(dead_code))]
    Test(Hook<B>),
}

/// What a store and its writer thread share: whether commits fail, and the store's own
/// measurements, kept from its opening and mirrored into the server's metrics once
/// [`Store::attach_metrics`] hands them over.
#[derive(Debug, Default)]
pub struct Instruments {
    /// Set by the writer while commits fail: new writes are refused at once.
    failing: AtomicBool,
    /// Operations submitted and not yet answered.
    backlog: std::sync::atomic::AtomicI64,
    metrics: std::sync::OnceLock<crate::metrics::StoreMetrics>,
}

impl Instruments {
    /// `n` more operations wait (negative: `-n` were answered).
    fn waiting(&self, n: i64) {
        let now = self.backlog.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(m) = self.metrics.get() {
            m.backlog.set(now);
        }
    }

    /// A batch committed after `took`.
    fn committed(&self, took: std::time::Duration) {
        if let Some(m) = self.metrics.get() {
            m.commit_seconds.observe(took.as_secs_f64());
        }
    }
}

/// The writer thread's state.
pub struct Writer<B: Backend> {
    pub(crate) backend: B,
    rx: Receiver<Msg<B>>,
    opts: Options,
    /// Changed only by committed batches.
    counts: Counts,
    /// Shared with the store: whether commits fail (set here), the backlog and commit times.
    instruments: Arc<Instruments>,
    tuning: Tuning,
    /// Reads the time for the statistics (the commit lag).
    clock: Arc<dyn Clock>,
    pub(crate) stats: Stats,
    /// One per command of the batch being run; reused.
    outcomes: Vec<Outcome>,
    /// Test hook: fail this many commits with an I/O error.
    #[cfg(test)]
    pub(crate) fail_commits: u32,
}

impl<B: Backend> Writer<B> {
    pub(crate) fn new(
        backend: B,
        rx: Receiver<Msg<B>>,
        opts: Options,
        counts: Counts,
        instruments: Arc<Instruments>,
        tuning: Tuning,
        clock: Arc<dyn Clock>,
    ) -> Writer<B> {
        Writer {
            backend,
            rx,
            opts,
            counts,
            instruments,
            tuning,
            clock,
            stats: Stats::default(),
            outcomes: Vec::with_capacity(MAX_BATCH),
            #[cfg(test)]
            fail_commits: 0,
        }
    }

    /// Batches, one transaction each, answers after the commit; until closed.
    pub(crate) fn run(mut self) {
        let mut batch: Vec<Cmd> = Vec::with_capacity(MAX_BATCH);
        loop {
            let Ok(first) = self.rx.recv() else {
                return; // every sender dropped: nothing more can come
            };
            self.take(first, &mut batch);
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(msg) => self.take(msg, &mut batch),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            let mut closing = batch.iter().any(|c| matches!(c, Cmd::Close { .. }));
            let oldest = batch
                .iter()
                .filter_map(|c| match c {
                    Cmd::Public { line, .. } => Some(line.ts),
                    Cmd::Mail { mail, .. } => Some(mail.ts),
                    _ => None,
                })
                .min();
            self.stats.batches += 1;
            self.stats.ops += batch.len() as u64;
            match self.commit(&batch) {
                Ok(()) => self.answer(&mut batch),
                Err(e) => closing |= self.retry(&mut batch, &e),
            }
            if let Some(oldest) = oldest {
                // From the hub accepting a line to its commit: what kill -9 can lose at most.
                self.stats.max_lag_ms = self
                    .stats
                    .max_lag_ms
                    .max(self.clock.now_ms().saturating_sub(oldest));
            }
            if closing {
                self.finish();
                return;
            }
        }
    }

    /// Adds the command in `msg` to the batch.
    fn take(&mut self, msg: Msg<B>, batch: &mut Vec<Cmd>) {
        if let Some(cmd) = self.open(msg) {
            batch.push(cmd);
        }
    }

    /// The command in `msg`; a test hook runs at once instead.
    fn open(&mut self, msg: Msg<B>) -> Option<Cmd> {
        match msg {
            Msg::Cmd(cmd) => Some(cmd),
            Msg::Test(hook) => {
                hook(self);
                None
            }
        }
    }

    fn finish(&mut self) {
        info!(
            batches = self.stats.batches,
            operations = self.stats.ops,
            max_commit_lag_ms = self.stats.max_lag_ms,
            outages = self.stats.outages,
            "store: closing"
        );
        self.backend.finish();
    }

    /// Answers every command of the committed batch.
    fn answer(&mut self, batch: &mut Vec<Cmd>) {
        self.instruments.waiting(-(batch.len() as i64));
        for (cmd, outcome) in batch.drain(..).zip(self.outcomes.drain(..)) {
            cmd.answer(outcome);
        }
    }

    /// Runs `batch` in one transaction and commits it. On failure nothing changed: the
    /// transaction is rolled back, the counts are as they were, and no command was answered.
    fn commit(&mut self, batch: &[Cmd]) -> Result<(), String> {
        let started = Instant::now();
        let mut counts = self.counts;
        self.outcomes.clear();
        #[cfg(test)]
        if self.fail_commits > 0 {
            self.fail_commits -= 1;
            return Err("injected I/O error".into());
        }
        self.backend
            .commit(batch, self.opts, &mut counts, &mut self.outcomes)
            .map_err(|e| e.to_string())?;
        self.instruments.committed(started.elapsed());
        self.counts = counts;
        Ok(())
    }

    /// Keeps `batch` and retries it, with backoff, until it commits; meanwhile answers what a
    /// read can answer and takes in what arrives. At close (or once every sender is gone) it
    /// gives up after [`Tuning::close_effort`]. Returns whether a close was among what it
    /// answered.
    fn retry(&mut self, batch: &mut Vec<Cmd>, first: &str) -> bool {
        let since = Instant::now();
        self.instruments.failing.store(true, Ordering::Relaxed);
        self.stats.outages += 1;
        self.backend.retrying(true, &self.tuning);
        // Accounts and mailboxes with a held write: reading them now would run ahead of it.
        let mut held = Held::default();
        for cmd in std::mem::take(batch) {
            self.hold(cmd, batch, &mut held);
        }
        // A store that fails and recovers again and again logs an outage that a single retry
        // cures only at the 1st, 2nd, 4th, 8th... such outage, or after a quiet minute.
        let mut announced = false;
        let announce = |first: &str, batch: &[Cmd], outages: u64| {
            error!(
                error = %first,
                operations = batch.len(),
                lines = batch.iter().filter(|c| c.is_line()).count(),
                outages,
                "store: cannot commit; the accepted operations are kept and retried until they are stored, new messages are refused (busy) meanwhile, and registered users can still log in while the store can be read"
            );
        };
        if self.stats.outages.is_power_of_two()
            || self
                .stats
                .recovered
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            announce(first, batch, self.stats.outages);
            announced = true;
        }
        let mut closing = batch.iter().any(|c| matches!(c, Cmd::Close { .. }));
        let mut give_up_at = closing.then(|| Instant::now() + self.tuning.close_effort);
        let mut backoff = self.tuning.backoff_min;
        let mut attempts: u64 = 1;
        loop {
            // Pause, answering reads and taking in what arrives.
            let wake = Instant::now() + backoff;
            while let Some(left) = wake.checked_duration_since(Instant::now()) {
                match self.rx.recv_timeout(left) {
                    Ok(msg) => {
                        let Some(cmd) = self.open(msg) else {
                            continue;
                        };
                        if matches!(cmd, Cmd::Close { .. }) {
                            closing = true;
                            give_up_at
                                .get_or_insert_with(|| Instant::now() + self.tuning.close_effort);
                        }
                        self.hold(cmd, batch, &mut held);
                    }
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        // Dropped without a close: nothing more can come; a bounded effort.
                        give_up_at.get_or_insert_with(|| Instant::now() + self.tuning.close_effort);
                        std::thread::sleep(left);
                        break;
                    }
                }
            }
            let error = match self.commit(batch) {
                Ok(()) => {
                    self.instruments.failing.store(false, Ordering::Relaxed);
                    self.backend.retrying(false, &self.tuning);
                    if announced {
                        warn!(
                            attempts,
                            "store recovered after {} s; {} operations committed",
                            since.elapsed().as_secs(),
                            batch.len()
                        );
                    }
                    self.stats.recovered = Some(Instant::now());
                    self.answer(batch);
                    return closing;
                }
                Err(e) => e,
            };
            attempts += 1;
            if !announced {
                announce(first, batch, self.stats.outages);
                announced = true;
            } else if attempts.is_power_of_two() {
                warn!(
                    error = %error,
                    attempts,
                    failing_for_s = since.elapsed().as_secs(),
                    waiting = batch.len(),
                    "store: still cannot commit; retrying"
                );
            }
            if give_up_at.is_some_and(|t| Instant::now() >= t) {
                self.give_up(batch, &error);
                return closing;
            }
            backoff = (backoff * 2).min(self.tuning.backoff_max);
        }
    }

    /// While failing: answers `cmd` from a read if it is one that can be, else keeps it (in
    /// order) for the retried batch.
    fn hold(&mut self, cmd: Cmd, batch: &mut Vec<Cmd>, held: &mut Held) {
        match cmd {
            Cmd::Check {
                nick,
                credential,
                reply,
            } => {
                let mut accounts = self.counts.accounts;
                let outcome = match self.backend.evaluate(
                    &nick,
                    &credential,
                    self.opts.max_accounts,
                    &mut accounts,
                ) {
                    // Registering needs a write.
                    Ok(Decision::Register) => Err(StoreError::Busy),
                    Ok(Decision::Owner { .. }) => Ok(LoginOutcome::Known),
                    Ok(Decision::Refused(outcome)) => Ok(outcome),
                    Err(e) => Err(failed(e)),
                };
                self.instruments.waiting(-1);
                drop(reply.send(outcome));
            }
            Cmd::Login {
                nick,
                credential,
                now_ms,
                reply,
                ..
            } => {
                let key = nick_key(&nick);
                if held.expire || held.mailboxes.contains(&key) {
                    // A held write changes this account or mailbox: read after it, at the
                    // commit, and register nothing meanwhile.
                    batch.push(Cmd::Login {
                        nick,
                        credential,
                        now_ms,
                        register: false,
                        reply,
                    });
                    return;
                }
                let mut accounts = self.counts.accounts;
                let answer = match self.backend.evaluate(
                    &nick,
                    &credential,
                    self.opts.max_accounts,
                    &mut accounts,
                ) {
                    Ok(Decision::Owner { returned }) => {
                        match self.backend.waiting(&key, self.opts.mailbox_ceiling()) {
                            Ok(mails) => {
                                if !returned {
                                    // The owner is in (from a read); that it came back is
                                    // recorded with the retried batch, never dropped.
                                    self.instruments.waiting(1);
                                    batch.push(Cmd::Returned {
                                        key,
                                        credential,
                                        now_ms,
                                    });
                                }
                                Ok(Login {
                                    outcome: LoginOutcome::Known,
                                    waiting: mails,
                                })
                            }
                            Err(e) => Err(failed(e)),
                        }
                    }
                    // Registering needs a write.
                    Ok(Decision::Register) => Err(StoreError::Busy),
                    Ok(Decision::Refused(outcome)) => Ok(Login {
                        outcome,
                        waiting: Vec::new(),
                    }),
                    Err(e) => Err(failed(e)),
                };
                self.instruments.waiting(-1);
                drop(reply.send(answer));
            }
            Cmd::Waiting { key, reply } if !held.expire && !held.mailboxes.contains(&key) => {
                let mails = self
                    .backend
                    .waiting(&key, self.opts.mailbox_ceiling())
                    .map_err(failed);
                self.instruments.waiting(-1);
                drop(reply.send(mails));
            }
            Cmd::RoomHistory { room, limit, reply }
                if !held.room_change && !held.rooms.contains(&room) =>
            {
                let lines = self
                    .backend
                    .recent(room, limit.min(self.opts.history_len))
                    .map_err(failed);
                self.instruments.waiting(-1);
                drop(reply.send(lines));
            }
            cmd => {
                match &cmd {
                    Cmd::Public { line, .. } => {
                        held.rooms.insert(line.room);
                    }
                    Cmd::Room { .. } => held.room_change = true,
                    _ => {}
                }
                if let Some(key) = cmd.mailbox() {
                    if !held.mailboxes.contains(key) {
                        held.mailboxes.insert(key.to_owned());
                    }
                }
                held.expire |= matches!(cmd, Cmd::Expire { .. });
                batch.push(cmd);
            }
        }
    }

    /// At close, commits still fail: answers every held command with the failure and says how
    /// much accepted work was not stored.
    fn give_up(&mut self, batch: &mut Vec<Cmd>, last: &str) {
        let lines = batch.iter().filter(|c| c.is_line()).count();
        let others = batch
            .iter()
            .filter(|c| !c.is_line() && !matches!(c, Cmd::Close { .. }))
            .count();
        // Which lines, for the operator (ids only: logs never hold message text).
        let ids: Vec<u64> = batch
            .iter()
            .filter_map(|c| match c {
                Cmd::Public { line, .. } => Some(line.id),
                Cmd::Mail { mail, .. } => Some(mail.id),
                _ => None,
            })
            .take(64)
            .collect();
        error!(
            error = %last,
            lines,
            ?ids,
            other_operations = others,
            "store: giving up at close; {lines} accepted lines were NOT stored (their senders were not told they were sent; those online may have seen them); {others} acknowledgements and other updates were not applied"
        );
        self.instruments.waiting(-(batch.len() as i64));
        for cmd in batch.drain(..) {
            cmd.fail(StoreError::NotStored {
                lines,
                detail: last.to_owned(),
            });
        }
    }
}

/// A store whose writer thread ([`Writer`]) runs batches on backend `B`: every call only
/// submits a command and never blocks. Dropping it without [`Store::close`] lets the writer
/// finish what was submitted and stop.
pub struct BatchStore<B: Backend> {
    tx: SyncSender<Msg<B>>,
    /// Shared with the writer: whether commits fail, the backlog, the metrics.
    instruments: Arc<Instruments>,
    /// Held for the store's life (e.g. a lock file keeping a second server off it).
    _guard: Option<Box<dyn std::any::Any + Send + Sync>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl<B: Backend> std::fmt::Debug for BatchStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchStore")
            .field("backend", &std::any::type_name::<B>())
            .field("instruments", &self.instruments)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> BatchStore<B> {
    /// Starts the writer thread on `backend`, which holds `counts` and keeps
    /// within `opts`; `guard` is kept as long as the store.
    pub(crate) fn spawn(
        backend: B,
        opts: Options,
        counts: Counts,
        clock: Arc<dyn Clock>,
        tuning: Tuning,
        guard: Option<Box<dyn std::any::Any + Send + Sync>>,
    ) -> std::io::Result<BatchStore<B>> {
        let (tx, rx) = sync_channel(CHANNEL_BOUND);
        let instruments = Arc::new(Instruments::default());
        let writer = Writer::new(
            backend,
            rx,
            opts,
            counts,
            Arc::clone(&instruments),
            tuning,
            clock,
        );
        let writer = std::thread::Builder::new()
            .name("mm-store".into())
            .spawn(move || writer.run())?;
        Ok(BatchStore {
            tx,
            instruments,
            _guard: guard,
            writer: Mutex::new(Some(writer)),
        })
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

    /// Submits the command `make` builds around a reply channel; its receiver is the answer.
    fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Cmd,
    ) -> Result<Reply<T>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(make(reply))?;
        Ok(rx)
    }

    /// Waits for the writer thread to end (after [`Store::close`]). Blocking: call it from
    /// `spawn_blocking` or outside the runtime.
    pub fn join(&self) {
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// Drops the store and waits for its writer to finish what was submitted and end (as a
    /// server's process ending would), so that the store can be opened again at once.
    #[cfg(test)]
    pub(crate) fn stop(self) {
        let BatchStore { tx, writer, .. } = self;
        drop(tx);
        if let Some(handle) = writer.into_inner().ok().flatten() {
            let _ = handle.join();
        }
    }

    /// Runs `f` on the writer thread (outside any transaction) and waits for it.
    #[cfg(test)]
    pub(crate) fn on_writer(&self, f: impl FnOnce(&mut Writer<B>) + Send + 'static) {
        let (done, wait) = std::sync::mpsc::channel();
        self.tx
            .send(Msg::Test(Box::new(move |w| {
                f(w);
                let _ = done.send(());
            })))
            .expect("the writer is running");
        wait.recv().expect("the writer ran the hook");
    }

    /// Stops the writer until the returned sender is dropped, so that what is submitted
    /// meanwhile lands in one batch.
    #[cfg(test)]
    pub(crate) fn pause(&self) -> std::sync::mpsc::Sender<()> {
        let (resume, wait) = std::sync::mpsc::channel::<()>();
        self.tx
            .send(Msg::Test(Box::new(move |_| {
                let _ = wait.recv();
            })))
            .expect("the writer is running");
        resume
    }

    /// Whether the writer says commits fail.
    #[cfg(test)]
    pub(crate) fn is_failing(&self) -> bool {
        self.instruments.failing.load(Ordering::Relaxed)
    }
}

impl<B: Backend> Store for BatchStore<B> {
    fn room(&self, change: RoomChange) -> Result<Reply<()>, StoreError> {
        self.ask(|reply| Cmd::Room { change, reply })
    }

    fn room_history(&self, room: RoomId, limit: usize) -> Result<Reply<Vec<Line>>, StoreError> {
        self.ask(|reply| Cmd::RoomHistory { room, limit, reply })
    }

    fn admin_requests(&self) -> Result<Reply<Vec<RoomRequest>>, StoreError> {
        self.ask(|reply| Cmd::AdminRequests { reply })
    }

    fn check_login(&self, nick: &str, credential: &str) -> Result<Reply<LoginOutcome>, StoreError> {
        self.ask(|reply| Cmd::Check {
            nick: nick.to_owned(),
            credential: credential.to_owned(),
            reply,
        })
    }

    fn login(
        &self,
        nick: &str,
        credential: &str,
        now_ms: u64,
        register: bool,
    ) -> Result<Reply<Login>, StoreError> {
        self.ask(|reply| Cmd::Login {
            nick: nick.to_owned(),
            credential: credential.to_owned(),
            now_ms,
            register,
            reply,
        })
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
        self.ask(|reply| Cmd::Waiting {
            key: nick_key.to_owned(),
            reply,
        })
    }

    fn delivered(&self, nick_key: &str, up_to: u64) -> Result<(), StoreError> {
        self.delivered_given(nick_key, up_to, Vec::new())
    }

    fn delivered_given(
        &self,
        nick_key: &str,
        up_to: u64,
        given: Vec<u64>,
    ) -> Result<(), StoreError> {
        self.submit(Cmd::Delivered {
            key: nick_key.to_owned(),
            up_to,
            given,
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
        self.ask(|reply| Cmd::Expire {
            cutoff_ms,
            online,
            limit,
            reply,
        })
    }

    fn append_public(&self, line: Line) -> Result<Reply<()>, StoreError> {
        self.ask(|reply| Cmd::Public { line, reply })
    }

    fn queue_mail(
        &self,
        to_key: &str,
        mail: Mail,
        arrival: Arrival,
    ) -> Result<Reply<QueueOutcome>, StoreError> {
        self.ask(|reply| Cmd::Mail {
            to_key: to_key.to_owned(),
            mail,
            arrival,
            reply,
        })
    }

    fn reserve_ids(&self, up_to: u64) -> Result<Reply<()>, StoreError> {
        self.ask(|reply| Cmd::ReserveIds { up_to, reply })
    }

    fn publish_keys(&self, key: &str, keys: KeyUpload) -> Result<Reply<Published>, StoreError> {
        self.ask(|reply| Cmd::PublishKeys {
            key: key.to_owned(),
            keys: Box::new(keys),
            reply,
        })
    }

    fn take_bundle(&self, key: &str, one_time: bool) -> Result<Reply<Taken>, StoreError> {
        self.ask(|reply| Cmd::TakeBundle {
            key: key.to_owned(),
            one_time,
            reply,
        })
    }

    fn prekey_count(&self, key: &str) -> Result<Reply<Option<u32>>, StoreError> {
        self.ask(|reply| Cmd::PrekeyCount {
            key: key.to_owned(),
            reply,
        })
    }

    fn ready(&self) -> Result<Reply<()>, StoreError> {
        // A write: refused at once while commits fail.
        self.ask(|reply| Cmd::Ready { reply })
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
