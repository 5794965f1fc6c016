//! The writer thread: it owns the connection, commits batches, answers after each commit, and
//! keeps (and retries) what it accepted while commits fail.
//!
//! A batch is run from borrowed commands: a failed attempt consumes nothing (no reply, no
//! count), so the same batch is retried whole until it commits. While it fails:
//! - the shared `failing` flag is set, and [`super::SqliteStore`] refuses new writes at once;
//! - writes already in the channel join the held batch, in order;
//! - logins are answered from a read (a registered owner gets in, and that it came back is
//!   held to be written with the batch; a registration is refused with [`StoreError::Busy`]),
//!   and so are mailbox reads, unless a held write touches that account or mailbox (then the
//!   login or read waits for the commit, to stay in order);
//! - the failure is logged when it starts, then at attempts 2, 4, 8, ..., and once when it
//!   recovers. At close, after [`Tuning::close_effort`], the writer gives up and answers
//!   [`StoreError::NotStored`], naming how many accepted lines were not stored.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mm_common::confusable::skeleton;
use mm_common::protocol::nick_key;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use super::schema::{from_sql, to_sql};
use super::{Counts, Options, Tuning, MAX_BATCH};
use crate::store::{Arrival, Body, Line, Login, LoginOutcome, Mail, QueueOutcome, StoreError};

/// A submission to the writer.
pub(super) enum Cmd {
    Check {
        nick: String,
        fingerprint: String,
        reply: oneshot::Sender<Result<LoginOutcome, StoreError>>,
    },
    Login {
        nick: String,
        fingerprint: String,
        now_ms: u64,
        register: bool,
        reply: oneshot::Sender<Result<Login, StoreError>>,
    },
    Abandon {
        key: String,
        fingerprint: String,
        created_ms: u64,
    },
    /// An owner's login answered from a read while commits failed: that the account was used
    /// again is recorded once they work (never dropped: expiry depends on it).
    Returned {
        key: String,
        fingerprint: String,
        now_ms: u64,
    },
    Waiting {
        key: String,
        reply: oneshot::Sender<Result<Vec<Mail>, StoreError>>,
    },
    Delivered {
        key: String,
        up_to: u64,
    },
    LoggedOut {
        key: String,
        now_ms: u64,
        durable: bool,
    },
    Expire {
        cutoff_ms: u64,
        online: Vec<String>,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<String>, StoreError>>,
    },
    Public {
        line: Line,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Mail {
        to_key: String,
        mail: Mail,
        arrival: Arrival,
        reply: oneshot::Sender<Result<QueueOutcome, StoreError>>,
    },
    Close {
        last_id: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Runs on the writer thread as soon as it is received, outside any transaction: fault
    /// injection for tests.
    #[cfg(test)]
    Test(Box<dyn FnOnce(&mut Writer) + Send>),
}

impl Cmd {
    /// Whether it changes the store (refused while the store is failing). Logins and mailbox
    /// reads are not: they are answered from a read then.
    pub(super) fn is_write(&self) -> bool {
        matches!(
            self,
            Cmd::Public { .. }
                | Cmd::Mail { .. }
                | Cmd::Delivered { .. }
                | Cmd::LoggedOut { .. }
                | Cmd::Abandon { .. }
                | Cmd::Returned { .. }
                | Cmd::Expire { .. }
        )
    }

    /// A write accepted even while commits fail (and then retried like an accepted line):
    /// undoing a registration whose login gave up, and what an unused account's expiry
    /// depends on. Each is bounded by the logins that cause it.
    pub(super) fn must_keep(&self) -> bool {
        matches!(
            self,
            Cmd::Abandon { .. } | Cmd::Returned { .. } | Cmd::LoggedOut { durable: true, .. }
        )
    }

    /// The mailbox a write changes, if any.
    fn mailbox(&self) -> Option<&str> {
        match self {
            Cmd::Mail { to_key, .. } => Some(to_key),
            Cmd::Delivered { key, .. } | Cmd::Abandon { key, .. } => Some(key),
            _ => None,
        }
    }

    /// An accepted line (whose sender waits for it to be stored).
    fn is_line(&self) -> bool {
        matches!(self, Cmd::Public { .. } | Cmd::Mail { .. })
    }

    /// Sends the answer after the commit.
    fn answer(self, outcome: Outcome) {
        // A dropped receiver means the session is gone; nothing to tell.
        match (self, outcome) {
            (Cmd::Check { reply, .. }, Outcome::Check(r)) => drop(reply.send(r)),
            (Cmd::Login { reply, .. }, Outcome::Login(r)) => drop(reply.send(r)),
            (Cmd::Expire { reply, .. }, Outcome::Expired(r)) => drop(reply.send(r)),
            (Cmd::Waiting { reply, .. }, Outcome::Waiting(r)) => drop(reply.send(r)),
            (Cmd::Public { reply, .. }, Outcome::Public(r)) => drop(reply.send(r)),
            (Cmd::Mail { reply, .. }, Outcome::Queue(r)) => drop(reply.send(r)),
            (Cmd::Close { reply, .. }, Outcome::Nothing) => drop(reply.send(Ok(()))),
            (cmd, _) => cmd.fail(StoreError::Failed("internal: mismatched answer".into())),
        }
    }

    /// Answers `error` instead.
    fn fail(self, error: StoreError) {
        match self {
            Cmd::Check { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Login { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Expire { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Waiting { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Public { reply, .. } | Cmd::Close { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Mail { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Delivered { .. }
            | Cmd::LoggedOut { .. }
            | Cmd::Abandon { .. }
            | Cmd::Returned { .. } => {}
            #[cfg(test)]
            Cmd::Test(_) => {}
        }
    }
}

/// What one command of a batch came to, kept until the batch commits.
enum Outcome {
    Nothing,
    Check(Result<LoginOutcome, StoreError>),
    Login(Result<Login, StoreError>),
    Expired(Result<Vec<String>, StoreError>),
    Waiting(Result<Vec<Mail>, StoreError>),
    Public(Result<(), StoreError>),
    Queue(Result<QueueOutcome, StoreError>),
}

/// While commits fail: what the held batch is about to change, so that reads of it wait for
/// the commit instead of running ahead of it.
#[derive(Debug, Default)]
struct Held {
    /// Accounts and mailboxes a held write changes.
    mailboxes: HashSet<String>,
    /// A held expiry sweep, which may delete any unused account.
    expire: bool,
}

/// What the writer did, logged at close.
#[derive(Debug, Default)]
struct Stats {
    batches: u64,
    ops: u64,
    /// Longest time from a line's acceptance to its commit.
    max_lag_ms: u64,
    /// Times the store started failing.
    outages: u64,
    /// When the last outage ended.
    recovered: Option<Instant>,
}

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) conn: Connection,
    rx: Receiver<Cmd>,
    opts: Options,
    /// Changed only by committed batches.
    counts: Counts,
    /// Shared with the store: set while commits fail.
    failing: Arc<AtomicBool>,
    tuning: Tuning,
    stats: Stats,
    /// One per command of the batch being run; reused.
    outcomes: Vec<Outcome>,
    /// Test hook: fail this many commits with an I/O error.
    #[cfg(test)]
    pub(super) fail_commits: u32,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        rx: Receiver<Cmd>,
        opts: Options,
        counts: Counts,
        failing: Arc<AtomicBool>,
        tuning: Tuning,
    ) -> Writer {
        Writer {
            conn,
            rx,
            opts,
            counts,
            failing,
            tuning,
            stats: Stats::default(),
            outcomes: Vec::with_capacity(MAX_BATCH),
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
                    Ok(cmd) => self.take(cmd, &mut batch),
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
                    .max(crate::hub::now_ms().saturating_sub(oldest));
            }
            if closing {
                self.finish();
                return;
            }
        }
    }

    /// Adds `cmd` to the batch (test hooks run at once).
    fn take(&mut self, cmd: Cmd, batch: &mut Vec<Cmd>) {
        match cmd {
            #[cfg(test)]
            Cmd::Test(hook) => hook(self),
            cmd => batch.push(cmd),
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
        let mut counts = self.counts;
        self.outcomes.clear();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut max_id: u64 = 0;
        let mut appended = false;
        for cmd in batch {
            let outcome = apply(&tx, cmd, self.opts, &mut counts, &mut max_id, &mut appended)?;
            self.outcomes.push(outcome);
        }
        if appended {
            // Keep only the newest `history_len` lines.
            let trimmed = tx
                .prepare_cached(
                    "DELETE FROM history WHERE id <= (SELECT id FROM history ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                )
                .and_then(|mut s| s.execute([to_sql(self.opts.history_len as u64)]));
            if let Err(e) = alone(&tx, trimmed)? {
                warn!(error = %e, "store: history not trimmed");
            }
        }
        if max_id > 0 {
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('last_id', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            )?
            .execute([to_sql(max_id)])?;
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
        self.counts = counts;
        Ok(())
    }

    /// Keeps `batch` and retries it, with backoff, until it commits; meanwhile answers what a
    /// read can answer and takes in what arrives. At close (or once every sender is gone) it
    /// gives up after [`Tuning::close_effort`]. Returns whether a close was among what it
    /// answered.
    fn retry(&mut self, batch: &mut Vec<Cmd>, first: &rusqlite::Error) -> bool {
        let since = Instant::now();
        self.failing.store(true, Ordering::Relaxed);
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
                    Ok(cmd) => {
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
                    self.failing.store(false, Ordering::Relaxed);
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
                fingerprint,
                reply,
            } => {
                let mut accounts = self.counts.accounts;
                let outcome = match evaluate(
                    &self.conn,
                    &nick,
                    &fingerprint,
                    self.opts.max_accounts,
                    &mut accounts,
                ) {
                    // Registering needs a write.
                    Ok(Decision::Register) => Err(StoreError::Busy),
                    Ok(Decision::Owner { .. }) => Ok(LoginOutcome::Known),
                    Ok(Decision::Refused(outcome)) => Ok(outcome),
                    Err(e) => Err(failed(e)),
                };
                drop(reply.send(outcome));
            }
            Cmd::Login {
                nick,
                fingerprint,
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
                        fingerprint,
                        now_ms,
                        register: false,
                        reply,
                    });
                    return;
                }
                let mut accounts = self.counts.accounts;
                let answer = match evaluate(
                    &self.conn,
                    &nick,
                    &fingerprint,
                    self.opts.max_accounts,
                    &mut accounts,
                ) {
                    Ok(Decision::Owner { returned }) => {
                        match waiting(&self.conn, &key, self.opts.mailbox_ceiling()) {
                            Ok(mails) => {
                                if !returned {
                                    // The owner is in (from a read); that it came back is
                                    // recorded with the retried batch, never dropped.
                                    batch.push(Cmd::Returned {
                                        key,
                                        fingerprint,
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
                drop(reply.send(answer));
            }
            Cmd::Waiting { key, reply } if !held.expire && !held.mailboxes.contains(&key) => {
                let mails = waiting(&self.conn, &key, self.opts.mailbox_ceiling()).map_err(failed);
                drop(reply.send(mails));
            }
            #[cfg(test)]
            Cmd::Test(hook) => hook(self),
            cmd => {
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
        for cmd in batch.drain(..) {
            cmd.fail(StoreError::NotStored {
                lines,
                detail: last.to_string(),
            });
        }
    }
}

/// Runs one command inside the batch's transaction. `Err` is a failure of the database (the
/// whole batch is retried); a failure of this command alone is its answer.
fn apply(
    tx: &rusqlite::Transaction<'_>,
    cmd: &Cmd,
    opts: Options,
    counts: &mut Counts,
    max_id: &mut u64,
    appended: &mut bool,
) -> rusqlite::Result<Outcome> {
    Ok(match cmd {
        Cmd::Check {
            nick, fingerprint, ..
        } => {
            let decided = evaluate(
                tx,
                nick,
                fingerprint,
                opts.max_accounts,
                &mut counts.accounts,
            );
            Outcome::Check(alone(tx, decided)?.map(Decision::outcome).map_err(failed))
        }
        Cmd::Login {
            nick,
            fingerprint,
            now_ms,
            register,
            ..
        } => Outcome::Login(
            atomically(tx, counts, |counts| {
                login(tx, nick, fingerprint, *now_ms, *register, opts, counts)
            })?
            .map_err(failed),
        ),
        Cmd::Abandon {
            key,
            fingerprint,
            created_ms,
        } => {
            abandon(tx, key, fingerprint, *created_ms, counts)?;
            Outcome::Nothing
        }
        Cmd::Returned {
            key,
            fingerprint,
            now_ms,
        } => {
            // Required, not best effort: if it fails, the batch is retried.
            tx.prepare_cached(
                "UPDATE accounts SET returned_ms = COALESCE(returned_ms, ?3)
                 WHERE nick_key = ?1 AND fingerprint = ?2",
            )?
            .execute(params![key, fingerprint, to_sql(*now_ms)])?;
            Outcome::Nothing
        }
        Cmd::Expire {
            cutoff_ms,
            online,
            limit,
            ..
        } => Outcome::Expired(
            atomically(tx, counts, |counts| {
                expire(tx, *cutoff_ms, online, *limit, counts)
            })?
            .map_err(failed),
        ),
        Cmd::Waiting { key, .. } => {
            Outcome::Waiting(alone(tx, waiting(tx, key, opts.mailbox_ceiling()))?.map_err(failed))
        }
        Cmd::Delivered { key, up_to } => {
            let deleted = tx
                .prepare_cached("DELETE FROM mailbox WHERE to_key = ?1 AND id <= ?2")
                .and_then(|mut s| s.execute(params![key, to_sql(*up_to)]));
            match alone(tx, deleted)? {
                Ok(n) => counts.waiting = counts.waiting.saturating_sub(n as u64),
                Err(e) => warn!(error = %e, "store: acknowledged lines not deleted"),
            }
            Outcome::Nothing
        }
        Cmd::LoggedOut {
            key,
            now_ms,
            durable,
        } => {
            let updated = tx
                .prepare_cached("UPDATE accounts SET last_seen_ms = ?2 WHERE nick_key = ?1")
                .and_then(|mut s| s.execute(params![key, to_sql(*now_ms)]));
            if *durable {
                // The end of a registering connection: an unused account's expiry counts
                // from it, so a failure retries the batch.
                updated?;
            } else {
                best_effort(tx, updated, "last-seen time not recorded")?;
            }
            Outcome::Nothing
        }
        Cmd::Public { line, .. } => {
            *max_id = (*max_id).max(line.id);
            *appended = true;
            let inserted = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO history (id, ts, sender, text) VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        to_sql(line.id),
                        to_sql(line.ts),
                        line.from,
                        line.text
                    ])
                });
            Outcome::Public(alone(tx, inserted)?.map(drop).map_err(failed))
        }
        Cmd::Mail {
            to_key,
            mail,
            arrival,
            ..
        } => {
            *max_id = (*max_id).max(mail.id);
            let queued = queue_mail(tx, to_key, mail, *arrival, opts, &mut counts.waiting);
            Outcome::Queue(alone(tx, queued)?.map_err(failed))
        }
        Cmd::Close { last_id, .. } => {
            *max_id = (*max_id).max(*last_id);
            Outcome::Nothing
        }
        #[cfg(test)]
        Cmd::Test(_) => Outcome::Nothing,
    })
}

/// Sorts a statement's failure: `Err` if the database failed (busy, locked, full, read-only, an
/// I/O error, ...: the batch is retried whole), `Ok(Err)` if only this operation did (a
/// constraint, a value out of range: retrying would fail the same way, so it is answered as a
/// failure and the batch goes on).
fn alone<T>(
    tx: &Connection,
    r: rusqlite::Result<T>,
) -> rusqlite::Result<Result<T, rusqlite::Error>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        // SQLite may roll the whole transaction back on some errors: then nothing of it holds.
        Err(e) if database_failed(&e) || tx.is_autocommit() => Err(e),
        Err(e) => Ok(Err(e)),
    }
}

/// A write whose failure is only logged (even a database failure: a read-only or full store
/// must not fail a login over its last-seen time), unless SQLite rolled the whole transaction
/// back, which fails the batch.
fn best_effort(tx: &Connection, r: rusqlite::Result<usize>, what: &str) -> rusqlite::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if tx.is_autocommit() => Err(e),
        Err(e) => {
            warn!(error = %e, "store: {what}");
            Ok(())
        }
    }
}

/// Whether the failure is the database's (and may pass) rather than the operation's own.
fn database_failed(e: &rusqlite::Error) -> bool {
    !matches!(
        e.sqlite_error_code(),
        None | Some(
            ErrorCode::ConstraintViolation
                | ErrorCode::TypeMismatch
                | ErrorCode::TooBig
                | ErrorCode::ParameterOutOfRange
                | ErrorCode::ApiMisuse
        )
    )
}

fn failed(e: rusqlite::Error) -> StoreError {
    StoreError::Failed(e.to_string())
}

/// How many private lines are waiting, all mailboxes together.
pub(super) fn count_waiting(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COUNT(*) FROM mailbox", [], |r| r.get(0))
        .map(from_sql)
}

/// How many accounts there are.
pub(super) fn count_accounts(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))
        .map(from_sql)
}

/// Runs `f` as one unit inside the batch's transaction: if it fails on its own (see
/// [`alone`]), whatever it wrote is rolled back and the running counts are as before; if the
/// database fails, the whole batch is retried as usual.
fn atomically<T>(
    tx: &rusqlite::Transaction<'_>,
    counts: &mut Counts,
    f: impl FnOnce(&mut Counts) -> rusqlite::Result<T>,
) -> rusqlite::Result<Result<T, rusqlite::Error>> {
    tx.execute_batch("SAVEPOINT unit")?;
    let mut scratch = *counts;
    match alone(tx, f(&mut scratch))? {
        Ok(value) => {
            tx.execute_batch("RELEASE unit")?;
            *counts = scratch;
            Ok(Ok(value))
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO unit; RELEASE unit")?;
            Ok(Err(e))
        }
    }
}

/// How a login stands, from reads only.
enum Decision {
    /// The nick belongs to this certificate; `returned` if it logged in again after its
    /// registering connection before.
    Owner { returned: bool },
    /// The nick is free and may be registered.
    Register,
    /// Refused, and why.
    Refused(LoginOutcome),
}

impl Decision {
    /// As [`crate::store::Store::check_login`] answers it.
    fn outcome(self) -> LoginOutcome {
        match self {
            Decision::Owner { .. } => LoginOutcome::Known,
            Decision::Register => LoginOutcome::Registered,
            Decision::Refused(outcome) => outcome,
        }
    }
}

/// Decides a login of `nick` with `fingerprint`: the owner's certificate gets in, another is
/// refused, and a free nick may be registered unless the store is full or the nick looks like
/// a registered one (its confusable skeleton is taken; checked here, in the writer's order,
/// so that two look-alikes registering at once cannot both get in).
///
/// `accounts` is the writer's running count, so that registering does not count the table each
/// time; it is recounted when it says the cap is reached (an admin may have released some).
fn evaluate(
    conn: &Connection,
    nick: &str,
    fingerprint: &str,
    max_accounts: usize,
    accounts: &mut u64,
) -> rusqlite::Result<Decision> {
    let key = nick_key(nick);
    let owner: Option<(String, bool)> = conn
        .prepare_cached(
            "SELECT fingerprint, returned_ms IS NOT NULL FROM accounts WHERE nick_key = ?1",
        )?
        .query_row([&key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((owner, returned)) = owner {
        return Ok(if owner == fingerprint {
            Decision::Owner { returned }
        } else {
            Decision::Refused(LoginOutcome::Taken)
        });
    }
    if *accounts >= max_accounts as u64 {
        *accounts = count_accounts(conn)?;
        if *accounts >= max_accounts as u64 {
            return Ok(Decision::Refused(LoginOutcome::Full));
        }
    }
    let like: Option<String> = conn
        .prepare_cached(
            "SELECT nick FROM accounts WHERE skeleton = ?1 ORDER BY created_ms, nick_key LIMIT 1",
        )?
        .query_row([skeleton(nick)], |r| r.get(0))
        .optional()?;
    Ok(match like {
        Some(other) => Decision::Refused(LoginOutcome::LooksLike(other)),
        None => Decision::Register,
    })
}

/// Completes a login (run [`atomically`]: a failure of any step keeps none of it). Everything
/// a login writes is here, and only for a login that is admitted: registering a free nick (if
/// `register`), marking an owner's account as returned the first time it logs in again
/// (required: expiry depends on it), and its spelling and last-seen time (best effort: if that
/// fails alone the login still succeeds; if the database fails, the batch is retried and,
/// meanwhile, the login answered from a read). Then the mailbox is read.
fn login(
    tx: &rusqlite::Transaction<'_>,
    nick: &str,
    fingerprint: &str,
    now_ms: u64,
    register: bool,
    opts: Options,
    counts: &mut Counts,
) -> rusqlite::Result<Login> {
    let key = nick_key(nick);
    let outcome = match evaluate(
        tx,
        nick,
        fingerprint,
        opts.max_accounts,
        &mut counts.accounts,
    )? {
        Decision::Owner { returned } => {
            if !returned {
                tx.prepare_cached("UPDATE accounts SET returned_ms = ?2 WHERE nick_key = ?1")?
                    .execute(params![key, to_sql(now_ms)])?;
            }
            let seen = tx
                .prepare_cached(
                    "UPDATE accounts SET nick = ?2, last_seen_ms = ?3 WHERE nick_key = ?1",
                )
                .and_then(|mut s| s.execute(params![key, nick, to_sql(now_ms)]));
            best_effort(tx, seen, "last-seen time not recorded")?;
            LoginOutcome::Known
        }
        Decision::Register if register => {
            tx.prepare_cached(
                "INSERT INTO accounts
                     (nick_key, nick, fingerprint, created_ms, last_seen_ms, skeleton)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            )?
            .execute(params![
                key,
                nick,
                fingerprint,
                to_sql(now_ms),
                skeleton(nick)
            ])?;
            counts.accounts += 1;
            LoginOutcome::Registered
        }
        Decision::Register => LoginOutcome::Changed,
        Decision::Refused(outcome) => outcome,
    };
    let waiting = if outcome.admits() {
        waiting(tx, &key, opts.mailbox_ceiling())?
    } else {
        Vec::new()
    };
    Ok(Login { outcome, waiting })
}

/// Deletes the account `key` and its mailbox if it is still exactly what a registration by
/// `fingerprint` at `created_ms` made (nobody logged in with it since).
fn abandon(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    fingerprint: &str,
    created_ms: u64,
    counts: &mut Counts,
) -> rusqlite::Result<()> {
    let deleted = tx
        .prepare_cached(
            "DELETE FROM accounts WHERE nick_key = ?1 AND fingerprint = ?2 AND created_ms = ?3
             AND returned_ms IS NULL",
        )?
        .execute(params![key, fingerprint, to_sql(created_ms)])?;
    if deleted > 0 {
        let mails = tx
            .prepare_cached("DELETE FROM mailbox WHERE to_key = ?1")?
            .execute([key])?;
        counts.accounts = counts.accounts.saturating_sub(1);
        counts.waiting = counts.waiting.saturating_sub(mails as u64);
        info!("store: a registration whose login did not complete was undone");
    }
    Ok(())
}

/// Deletes up to `limit` unused accounts (see [`crate::store::Store::expire_unused`]) and
/// their mailboxes; returns their nicks.
fn expire(
    tx: &rusqlite::Transaction<'_>,
    cutoff_ms: u64,
    online: &[String],
    limit: usize,
    counts: &mut Counts,
) -> rusqlite::Result<Vec<String>> {
    let online: HashSet<&str> = online.iter().map(String::as_str).collect();
    // Online ones are skipped, so look at that many more.
    let candidates: Vec<(String, String)> = tx
        .prepare_cached(
            "SELECT nick_key, nick FROM accounts
             WHERE returned_ms IS NULL AND created_ms < ?1 AND last_seen_ms < ?1
             ORDER BY created_ms LIMIT ?2",
        )?
        .query_map(
            params![
                to_sql(cutoff_ms),
                to_sql(limit.saturating_add(online.len()) as u64)
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut expired = Vec::new();
    for (key, nick) in candidates {
        if expired.len() >= limit {
            break;
        }
        if online.contains(key.as_str()) {
            continue;
        }
        tx.prepare_cached("DELETE FROM accounts WHERE nick_key = ?1")?
            .execute([&key])?;
        let mails = tx
            .prepare_cached("DELETE FROM mailbox WHERE to_key = ?1")?
            .execute([&key])?;
        counts.accounts = counts.accounts.saturating_sub(1);
        counts.waiting = counts.waiting.saturating_sub(mails as u64);
        expired.push(nick);
    }
    Ok(expired)
}

fn waiting(conn: &Connection, key: &str, limit: usize) -> rusqlite::Result<Vec<Mail>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, ts, sender, text, payload FROM mailbox WHERE to_key = ?1 ORDER BY id LIMIT ?2",
    )?;
    let mails = stmt
        .query_map(params![key, to_sql(limit as u64)], |r| {
            let payload: Option<Vec<u8>> = r.get(4)?;
            Ok(Mail {
                id: from_sql(r.get(0)?),
                ts: from_sql(r.get(1)?),
                from: r.get(2)?,
                body: match payload {
                    Some(payload) => Body::Relay(payload),
                    None => Body::Text(r.get(3)?),
                },
            })
        })?
        .collect();
    mails
}

/// Keeps `mail` for `to_key`. An offline recipient must be registered and within the mailbox
/// bounds; a live one (already delivered to) is kept up to the mailbox ceiling, so that a client
/// that never acknowledges cannot grow its mailbox without end.
fn queue_mail(
    tx: &rusqlite::Transaction<'_>,
    to_key: &str,
    mail: &Mail,
    arrival: Arrival,
    opts: Options,
    waiting: &mut u64,
) -> rusqlite::Result<QueueOutcome> {
    let registered = tx
        .prepare_cached("SELECT 1 FROM accounts WHERE nick_key = ?1")?
        .query_row([to_key], |_| Ok(()))
        .optional()?
        .is_some();
    let count: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM mailbox WHERE to_key = ?1")?
        .query_row([to_key], |r| r.get(0))?;
    let count = from_sql(count);
    match arrival {
        Arrival::Offline => {
            if !registered {
                return Ok(QueueOutcome::NoSuchAccount);
            }
            if count >= opts.mailbox_len as u64 {
                return Ok(QueueOutcome::MailboxFull);
            }
            if *waiting >= opts.mailbox_total as u64 {
                *waiting = count_waiting(tx)?;
                if *waiting >= opts.mailbox_total as u64 {
                    return Ok(QueueOutcome::StoreFull);
                }
            }
        }
        Arrival::Live => {
            // Already in the recipient's queue. Not kept for a nick an operator released
            // meanwhile (its next owner must not read it), nor beyond the mailbox's ceiling or
            // the store's total (so that clients that never acknowledge cannot grow the store
            // without end): then delivered once, not again.
            if !registered {
                return Ok(QueueOutcome::Queued);
            }
            let mut full = count >= opts.mailbox_ceiling() as u64;
            if !full && *waiting >= opts.mailbox_total as u64 {
                *waiting = count_waiting(tx)?;
                full = *waiting >= opts.mailbox_total as u64;
            }
            if full {
                debug!("a mailbox or the store is at its bound; a delivered line is not kept for redelivery");
                return Ok(QueueOutcome::Queued);
            }
        }
    }
    let (text, payload) = match &mail.body {
        Body::Text(text) => (text.as_str(), None),
        Body::Relay(payload) => ("", Some(payload.as_slice())),
    };
    tx.prepare_cached(
        "INSERT INTO mailbox (id, to_key, ts, sender, text, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        to_sql(mail.id),
        to_key,
        to_sql(mail.ts),
        mail.from,
        text,
        payload
    ])?;
    *waiting += 1;
    Ok(QueueOutcome::Queued)
}
