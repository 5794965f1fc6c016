//! The writer thread: it owns the connection, commits batches, answers after each commit, and
//! keeps (and retries) what it accepted while commits fail.
//!
//! A batch is run from borrowed commands: a failed attempt consumes nothing (no reply, no
//! count), so the same batch is retried whole until it commits. While it fails:
//! - the shared `failing` flag is set, and [`super::SqliteStore`] refuses new writes at once;
//! - writes already in the channel join the held batch, in order;
//! - logins are answered from a read (a registered owner gets in, and that it came back is
//!   held to be written with the batch; a registration is refused with [`StoreError::Busy`]),
//!   and so are mailbox reads and room history reads, unless a held write touches that
//!   account, mailbox or room (then the login or read waits for the commit, to stay in order);
//! - the failure is logged when it starts, then at attempts 2, 4, 8, ..., and once when it
//!   recovers. At close, after [`Tuning::close_effort`], the writer gives up and answers
//!   [`StoreError::NotStored`], naming how many accepted lines were not stored.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mm_common::protocol::nick_key;
use rusqlite::{Connection, TransactionBehavior};
use tracing::{error, info, warn};

use super::command::{apply, Cmd, Outcome};
use super::failure::{alone, failed};
use super::{accounts, history, mailbox, meta, Counts, Instruments, Tuning, MAX_BATCH};
use crate::clock::Clock;
use crate::store::{Login, LoginOutcome, Options, RoomId, StoreError};

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
pub(super) struct Stats {
    batches: u64,
    ops: u64,
    /// Longest time from a line's acceptance to its commit, in ms on the store's clock.
    pub(super) max_lag_ms: u64,
    /// Times the store started failing.
    outages: u64,
    /// When the last outage ended.
    recovered: Option<Instant>,
}

/// What arrives on the writer's channel.
pub(super) enum Msg {
    /// Work for a batch.
    Cmd(Cmd),
    /// Runs on the writer thread as soon as it is received, outside any transaction: fault
    /// injection for tests.
    #[cfg(test)]
    Test(Box<dyn FnOnce(&mut Writer) + Send>),
}

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) conn: Connection,
    rx: Receiver<Msg>,
    opts: Options,
    /// Changed only by committed batches.
    counts: Counts,
    tuning: Tuning,
    /// Reads the time for the statistics (the commit lag).
    clock: Arc<dyn Clock>,
    pub(super) stats: Stats,
    /// One per command of the batch being run; reused.
    outcomes: Vec<Outcome>,
    /// Shared with the store: whether commits fail (set here), the backlog and commit times.
    instruments: Arc<Instruments>,
    /// Test hook: fail this many commits with an I/O error.
    #[cfg(test)]
    pub(super) fail_commits: u32,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        rx: Receiver<Msg>,
        opts: Options,
        counts: Counts,
        tuning: Tuning,
        clock: Arc<dyn Clock>,
        instruments: Arc<Instruments>,
    ) -> Writer {
        Writer {
            conn,
            rx,
            opts,
            counts,
            tuning,
            clock,
            stats: Stats::default(),
            outcomes: Vec::with_capacity(MAX_BATCH),
            instruments,
            #[cfg(test)]
            fail_commits: 0,
        }
    }

    /// Batches, one transaction each, answers after the commit; until closed.
    pub(super) fn run(mut self) {
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
    fn take(&mut self, msg: Msg, batch: &mut Vec<Cmd>) {
        if let Some(cmd) = self.open(msg) {
            batch.push(cmd);
        }
    }

    /// The command in `msg`; a test hook runs at once instead.
    fn open(&mut self, msg: Msg) -> Option<Cmd> {
        match msg {
            Msg::Cmd(cmd) => Some(cmd),
            #[cfg(test)]
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
        // Fold the WAL into the main file so that the store is one file at rest.
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
            warn!(error = %e, "store: final checkpoint failed (the WAL is kept; nothing lost)");
        }
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
    fn commit(&mut self, batch: &[Cmd]) -> rusqlite::Result<()> {
        if !self.conn.is_autocommit() {
            // A transaction left open by an earlier failure (its rollback failed too).
            self.conn.execute_batch("ROLLBACK")?;
        }
        let started = Instant::now();
        let mut counts = self.counts;
        self.outcomes.clear();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut max_id: u64 = 0;
        let mut appended = Vec::new();
        for cmd in batch {
            let outcome = apply(&tx, cmd, self.opts, &mut counts, &mut max_id, &mut appended)?;
            self.outcomes.push(outcome);
        }
        for room in appended {
            // Keep only the newest `history_len` lines of each room that got one.
            let trimmed = history::trim(&tx, room, self.opts.history_len);
            if let Err(e) = alone(&tx, trimmed)? {
                warn!(error = %e, room = room.0, "store: history not trimmed");
            }
        }
        if max_id > 0 {
            meta::record_last_id(&tx, max_id)?;
        }
        #[cfg(test)]
        if self.fail_commits > 0 {
            self.fail_commits -= 1;
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                Some("injected I/O error".into()),
            ));
        }
        tx.commit()?;
        self.instruments.committed(started.elapsed());
        self.counts = counts;
        Ok(())
    }

    /// Keeps `batch` and retries it, with backoff, until it commits; meanwhile answers what a
    /// read can answer and takes in what arrives. At close (or once every sender is gone) it
    /// gives up after [`Tuning::close_effort`]. Returns whether a close was among what it
    /// answered.
    fn retry(&mut self, batch: &mut Vec<Cmd>, first: &rusqlite::Error) -> bool {
        let since = Instant::now();
        self.instruments.failing.store(true, Ordering::Relaxed);
        self.stats.outages += 1;
        if let Err(e) = self.conn.busy_timeout(self.tuning.retry_busy_timeout) {
            warn!(error = %e, "store: cannot shorten the lock wait");
        }
        // Accounts and mailboxes with a held write: reading them now would run ahead of it.
        let mut held = Held::default();
        for cmd in std::mem::take(batch) {
            self.hold(cmd, batch, &mut held);
        }
        // A store that fails and recovers again and again logs an outage that a single retry
        // cures only at the 1st, 2nd, 4th, 8th... such outage, or after a quiet minute.
        let mut announced = false;
        let announce = |first: &rusqlite::Error, batch: &[Cmd], outages: u64| {
            error!(
                error = %first,
                operations = batch.len(),
                lines = batch.iter().filter(|c| c.is_line()).count(),
                outages,
                "store: cannot commit; the accepted operations are kept and retried until they are stored, new messages are refused (busy) meanwhile, registered users can still log in"
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
                    if let Err(e) = self.conn.busy_timeout(self.tuning.busy_timeout) {
                        warn!(error = %e, "store: cannot restore the lock wait");
                    }
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
                let outcome = match accounts::evaluate(
                    &self.conn,
                    &nick,
                    &credential,
                    self.opts.max_accounts,
                    &mut accounts,
                ) {
                    // Registering needs a write.
                    Ok(accounts::Decision::Register) => Err(StoreError::Busy),
                    Ok(accounts::Decision::Owner { .. }) => Ok(LoginOutcome::Known),
                    Ok(accounts::Decision::Refused(outcome)) => Ok(outcome),
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
                let answer = match accounts::evaluate(
                    &self.conn,
                    &nick,
                    &credential,
                    self.opts.max_accounts,
                    &mut accounts,
                ) {
                    Ok(accounts::Decision::Owner { returned }) => {
                        match mailbox::waiting(&self.conn, &key, self.opts.mailbox_ceiling()) {
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
                    Ok(accounts::Decision::Register) => Err(StoreError::Busy),
                    Ok(accounts::Decision::Refused(outcome)) => Ok(Login {
                        outcome,
                        waiting: Vec::new(),
                    }),
                    Err(e) => Err(failed(e)),
                };
                self.instruments.waiting(-1);
                drop(reply.send(answer));
            }
            Cmd::Waiting { key, reply } if !held.expire && !held.mailboxes.contains(&key) => {
                let mails =
                    mailbox::waiting(&self.conn, &key, self.opts.mailbox_ceiling()).map_err(failed);
                self.instruments.waiting(-1);
                drop(reply.send(mails));
            }
            Cmd::RoomHistory { room, limit, reply }
                if !held.room_change && !held.rooms.contains(&room) =>
            {
                let lines = history::recent(&self.conn, room, limit.min(self.opts.history_len))
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
    fn give_up(&mut self, batch: &mut Vec<Cmd>, last: &rusqlite::Error) {
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
                detail: last.to_string(),
            });
        }
    }
}
