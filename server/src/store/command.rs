//! What a backend's writer is given ([`Cmd`]) and answers after its commit ([`Outcome`]), with
//! the bookkeeping both backends share: the running [`Counts`] and how a login stands
//! ([`Decision`]). How each command runs is the backend's (its SQL), inside one transaction per
//! batch; the writer ([`super::writer`]) batches, retries and answers for every backend alike.

use tokio::sync::oneshot;

use mm_common::prekeys::KeyUpload;

use crate::store::{
    Arrival, Line, Login, LoginOutcome, Mail, Published, QueueOutcome, RoomChange, RoomId,
    RoomRequest, StoreError, Taken,
};

/// Running counts the writer keeps so that a bound check is not a table count each time. They
/// are recounted when they say a bound is reached, since an admin command (another connection)
/// may have deleted rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub(crate) accounts: u64,
    pub(crate) waiting: u64,
}

/// How a login stands, from reads only.
pub enum Decision {
    /// The credential is one of the nick's account's; `returned` if it logged in again after
    /// its registering connection before.
    Owner { returned: bool },
    /// The nick is free and may be registered.
    Register,
    /// Refused, and why.
    Refused(LoginOutcome),
}

impl Decision {
    /// As [`crate::store::Store::check_login`] answers it.
    pub(crate) fn outcome(self) -> LoginOutcome {
        match self {
            Decision::Owner { .. } => LoginOutcome::Known,
            Decision::Register => LoginOutcome::Registered,
            Decision::Refused(outcome) => outcome,
        }
    }

    /// Decides a login from what the store holds: `owner` is, for the nick's account if there
    /// is one, whether it holds the credential and whether it returned; `full` says whether the
    /// store holds as many accounts as allowed and `like` names a registered nick with the same
    /// confusable skeleton, each read through `db`. The last two are asked only for a free nick.
    pub(crate) fn decide<C: ?Sized, E>(
        db: &mut C,
        owner: Option<(bool, bool)>,
        full: impl FnOnce(&mut C) -> Result<bool, E>,
        like: impl FnOnce(&mut C) -> Result<Option<String>, E>,
    ) -> Result<Decision, E> {
        if let Some((holds, returned)) = owner {
            return Ok(if holds {
                Decision::Owner { returned }
            } else {
                Decision::Refused(LoginOutcome::Taken)
            });
        }
        if full(db)? {
            return Ok(Decision::Refused(LoginOutcome::Full));
        }
        Ok(match like(db)? {
            Some(other) => Decision::Refused(LoginOutcome::LooksLike(other)),
            None => Decision::Register,
        })
    }
}

/// The account operations a login is made of, inside one backend's transaction.
pub(crate) trait Accounts {
    /// A failure of the database or of the operation.
    type Error;
    /// How a login stands ([`Decision::decide`]); `accounts` is the writer's running count.
    fn evaluate(
        &mut self,
        nick: &str,
        credential: &str,
        max_accounts: usize,
        accounts: &mut u64,
    ) -> Result<Decision, Self::Error>;
    /// Marks the account `key` as returned at `now_ms` (required: expiry depends on it).
    fn set_returned(&mut self, key: &str, now_ms: u64) -> Result<(), Self::Error>;
    /// Records the nick's spelling and the last-seen time: best effort, a failure of this
    /// update alone is logged, not returned.
    fn seen(&mut self, key: &str, nick: &str, now_ms: u64) -> Result<(), Self::Error>;
    /// Registers `nick` (`key`) with `credential` as its one credential, and no keys (a new
    /// account never inherits a gone one's credentials or keys, whatever left them).
    fn register(
        &mut self,
        key: &str,
        nick: &str,
        credential: &str,
        now_ms: u64,
    ) -> Result<(), Self::Error>;
    /// The first `limit` lines waiting for `key`, oldest first.
    fn waiting(&mut self, key: &str, limit: usize) -> Result<Vec<crate::store::Mail>, Self::Error>;
}

/// Completes a login (see [`crate::store::Store::login`]); run it as one unit, so that a
/// failure of any step keeps none of it. Everything a login writes is here, and only for a
/// login that is admitted: registering a free nick (if `register`), marking an owner's account
/// as returned the first time it logs in again, and its spelling and last-seen time. Then the
/// mailbox is read.
pub(crate) fn login<A: Accounts>(
    a: &mut A,
    nick: &str,
    credential: &str,
    now_ms: u64,
    register: bool,
    opts: crate::store::Options,
    counts: &mut Counts,
) -> Result<crate::store::Login, A::Error> {
    let key = mm_common::protocol::nick_key(nick);
    let outcome = match a.evaluate(nick, credential, opts.max_accounts, &mut counts.accounts)? {
        Decision::Owner { returned } => {
            if !returned {
                a.set_returned(&key, now_ms)?;
            }
            a.seen(&key, nick, now_ms)?;
            LoginOutcome::Known
        }
        Decision::Register if register => {
            a.register(&key, nick, credential, now_ms)?;
            counts.accounts += 1;
            LoginOutcome::Registered
        }
        Decision::Register => LoginOutcome::Changed,
        Decision::Refused(outcome) => outcome,
    };
    let waiting = if outcome.admits() {
        a.waiting(&key, opts.mailbox_ceiling())?
    } else {
        Vec::new()
    };
    Ok(crate::store::Login { outcome, waiting })
}

/// Whether a bound is reached by a running count (`count`, kept by the writer): if it says so,
/// it is recounted with `recount` first (an admin command may have deleted rows).
pub(crate) fn at_bound<E>(
    count: &mut u64,
    bound: usize,
    recount: impl FnOnce() -> Result<u64, E>,
) -> Result<bool, E> {
    if *count >= bound as u64 {
        *count = recount()?;
    }
    Ok(*count >= bound as u64)
}

/// What a mailbox does with a personal line (see [`crate::store::Store::queue_mail`]).
pub(crate) enum Admit {
    /// Store it.
    Store,
    /// Do not store it; answer this.
    Answer(QueueOutcome),
}

/// Decides whether a personal line for a recipient (registered or not, with `count` lines in
/// its mailbox) is stored: an offline recipient must be registered and within the mailbox
/// bounds; a live one (already delivered to) is kept up to the mailbox ceiling and the store's
/// total, so that a client that never acknowledges cannot grow the store without end.
/// `total_full` says whether the store's total is reached (recounting if need be).
pub(crate) fn admit<E>(
    arrival: Arrival,
    registered: bool,
    count: u64,
    opts: crate::store::Options,
    total_full: impl FnOnce() -> Result<bool, E>,
) -> Result<Admit, E> {
    Ok(match arrival {
        Arrival::Offline => {
            if !registered {
                Admit::Answer(QueueOutcome::NoSuchAccount)
            } else if count >= opts.mailbox_len as u64 {
                Admit::Answer(QueueOutcome::MailboxFull)
            } else if total_full()? {
                Admit::Answer(QueueOutcome::StoreFull)
            } else {
                Admit::Store
            }
        }
        // Already in the recipient's queue. Not kept for a nick an operator released
        // meanwhile (its next owner must not read it), nor beyond the mailbox's ceiling or the
        // store's total: then delivered once, not again.
        Arrival::Live => {
            if !registered {
                Admit::Answer(QueueOutcome::Queued)
            } else if count >= opts.mailbox_ceiling() as u64 || total_full()? {
                tracing::debug!("a mailbox or the store is at its bound; a delivered line is not kept for redelivery");
                Admit::Answer(QueueOutcome::Queued)
            } else {
                Admit::Store
            }
        }
    })
}

/// A submission to the writer.
pub enum Cmd {
    Check {
        nick: String,
        credential: String,
        reply: oneshot::Sender<Result<LoginOutcome, StoreError>>,
    },
    Login {
        nick: String,
        credential: String,
        now_ms: u64,
        register: bool,
        reply: oneshot::Sender<Result<Login, StoreError>>,
    },
    Abandon {
        key: String,
        credential: String,
        created_ms: u64,
    },
    /// An owner's login answered from a read while commits failed: that the account was used
    /// again is recorded once they work (never dropped: expiry depends on it).
    Returned {
        key: String,
        credential: String,
        now_ms: u64,
    },
    Waiting {
        key: String,
        reply: oneshot::Sender<Result<Vec<Mail>, StoreError>>,
    },
    Delivered {
        key: String,
        up_to: u64,
        /// The ids given to the connection up to `up_to` (empty: every line up to it).
        given: Vec<u64>,
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
    Room {
        change: RoomChange,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    RoomHistory {
        room: RoomId,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<Line>, StoreError>>,
    },
    /// Reads and deletes the pending `room_requests`.
    AdminRequests {
        reply: oneshot::Sender<Result<Vec<RoomRequest>, StoreError>>,
    },
    Mail {
        to_key: String,
        mail: Mail,
        arrival: Arrival,
        reply: oneshot::Sender<Result<QueueOutcome, StoreError>>,
    },
    ReserveIds {
        up_to: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    PublishKeys {
        key: String,
        keys: Box<KeyUpload>,
        reply: oneshot::Sender<Result<Published, StoreError>>,
    },
    /// Reads a bundle and deletes the one-time prekey it hands out, in the batch.
    TakeBundle {
        key: String,
        one_time: bool,
        reply: oneshot::Sender<Result<Taken, StoreError>>,
    },
    PrekeyCount {
        key: String,
        reply: oneshot::Sender<Result<Option<u32>, StoreError>>,
    },
    Close {
        last_id: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// `/readyz`: nothing to do but go through a batch and its commit.
    Ready {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

impl Cmd {
    /// Whether it changes the store (refused while the store is failing). Logins and mailbox
    /// reads are not: they are answered from a read then.
    pub(crate) fn is_write(&self) -> bool {
        matches!(
            self,
            Cmd::Public { .. }
                | Cmd::Room { .. }
                | Cmd::AdminRequests { .. }
                | Cmd::Mail { .. }
                | Cmd::Delivered { .. }
                | Cmd::LoggedOut { .. }
                | Cmd::Abandon { .. }
                | Cmd::Returned { .. }
                | Cmd::Expire { .. }
                | Cmd::ReserveIds { .. }
                | Cmd::PublishKeys { .. }
                | Cmd::TakeBundle { .. }
                | Cmd::Ready { .. }
        )
    }

    /// A write accepted even while commits fail (and then retried like an accepted line):
    /// undoing a registration whose login gave up, and what an unused account's expiry
    /// depends on. Each is bounded by the logins that cause it.
    pub(crate) fn must_keep(&self) -> bool {
        matches!(
            self,
            Cmd::Abandon { .. } | Cmd::Returned { .. } | Cmd::LoggedOut { durable: true, .. }
        )
    }

    /// The mailbox a write changes, if any.
    pub(crate) fn mailbox(&self) -> Option<&str> {
        match self {
            Cmd::Mail { to_key, .. } => Some(to_key),
            Cmd::Delivered { key, .. } | Cmd::Abandon { key, .. } => Some(key),
            _ => None,
        }
    }

    /// What a command records besides its own work, the same in every backend: raises
    /// `max_id` to the highest message id it gives out (a line's, a reservation's, the last
    /// one at close; recorded with the batch), and adds a room that got a line to `appended`
    /// (its history is trimmed at the end of the batch).
    pub(crate) fn track(&self, max_id: &mut u64, appended: &mut Vec<RoomId>) {
        let id = match self {
            Cmd::Public { line, .. } => {
                if !appended.contains(&line.room) {
                    appended.push(line.room);
                }
                line.id
            }
            Cmd::Mail { mail, .. } => mail.id,
            Cmd::Close { last_id, .. } => *last_id,
            // Recorded as the highest id given out, which is what a reservation promises.
            Cmd::ReserveIds { up_to, .. } => *up_to,
            _ => return,
        };
        *max_id = (*max_id).max(id);
    }

    /// An accepted line (whose sender waits for it to be stored).
    pub(crate) fn is_line(&self) -> bool {
        matches!(self, Cmd::Public { .. } | Cmd::Mail { .. })
    }

    /// Sends the answer after the commit.
    pub(crate) fn answer(self, outcome: Outcome) {
        // A dropped receiver means the session is gone; nothing to tell.
        match (self, outcome) {
            (Cmd::Check { reply, .. }, Outcome::Check(r)) => drop(reply.send(r)),
            (Cmd::Login { reply, .. }, Outcome::Login(r)) => drop(reply.send(r)),
            (Cmd::Expire { reply, .. }, Outcome::Expired(r)) => drop(reply.send(r)),
            (Cmd::Waiting { reply, .. }, Outcome::Waiting(r)) => drop(reply.send(r)),
            (Cmd::Public { reply, .. }, Outcome::Public(r)) => drop(reply.send(r)),
            (Cmd::Room { reply, .. }, Outcome::Room(r)) => drop(reply.send(r)),
            (Cmd::RoomHistory { reply, .. }, Outcome::RoomHistory(r)) => drop(reply.send(r)),
            (Cmd::AdminRequests { reply, .. }, Outcome::Requests(r)) => drop(reply.send(r)),
            (Cmd::Mail { reply, .. }, Outcome::Queue(r)) => drop(reply.send(r)),
            (Cmd::PublishKeys { reply, .. }, Outcome::Published(r)) => drop(reply.send(r)),
            (Cmd::TakeBundle { reply, .. }, Outcome::Taken(r)) => drop(reply.send(r)),
            (Cmd::PrekeyCount { reply, .. }, Outcome::Count(r)) => drop(reply.send(r)),
            (
                Cmd::Close { reply, .. } | Cmd::ReserveIds { reply, .. } | Cmd::Ready { reply },
                Outcome::Nothing,
            ) => {
                drop(reply.send(Ok(())));
            }
            (cmd, _) => cmd.fail(StoreError::Failed("internal: mismatched answer".into())),
        }
    }

    /// Answers `error` instead.
    pub(crate) fn fail(self, error: StoreError) {
        match self {
            Cmd::Check { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Login { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Expire { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Waiting { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Public { reply, .. }
            | Cmd::Room { reply, .. }
            | Cmd::Close { reply, .. }
            | Cmd::Ready { reply }
            | Cmd::ReserveIds { reply, .. } => drop(reply.send(Err(error))),
            Cmd::RoomHistory { reply, .. } => drop(reply.send(Err(error))),
            Cmd::AdminRequests { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Mail { reply, .. } => drop(reply.send(Err(error))),
            Cmd::PublishKeys { reply, .. } => drop(reply.send(Err(error))),
            Cmd::TakeBundle { reply, .. } => drop(reply.send(Err(error))),
            Cmd::PrekeyCount { reply, .. } => drop(reply.send(Err(error))),
            Cmd::Delivered { .. }
            | Cmd::LoggedOut { .. }
            | Cmd::Abandon { .. }
            | Cmd::Returned { .. } => {}
        }
    }
}

/// What one command of a batch came to, kept until the batch commits.
pub enum Outcome {
    Nothing,
    Check(Result<LoginOutcome, StoreError>),
    Login(Result<Login, StoreError>),
    Expired(Result<Vec<String>, StoreError>),
    Waiting(Result<Vec<Mail>, StoreError>),
    Public(Result<(), StoreError>),
    Room(Result<(), StoreError>),
    RoomHistory(Result<Vec<Line>, StoreError>),
    Requests(Result<Vec<RoomRequest>, StoreError>),
    Queue(Result<QueueOutcome, StoreError>),
    Published(Result<Published, StoreError>),
    Taken(Result<Taken, StoreError>),
    Count(Result<Option<u32>, StoreError>),
}

/// The key directory's rule for an upload ([`crate::store::Store::publish_keys`]) against what
/// is stored (`stored`: the identity key and device token, if the account published before):
/// whether another device published since (the stored token is neither the upload's `previous`
/// nor its `next`), and whether the stored one-time prekeys are dropped first (the identity key
/// changed, or the upload replaces them).
pub(crate) fn device_check(stored: Option<(&[u8], &[u8])>, keys: &KeyUpload) -> (bool, bool) {
    let (other_device, identity_changed) = match stored {
        Some((identity, device)) => (
            device != keys.device.previous && device != keys.device.next,
            identity != keys.identity,
        ),
        None => (false, false),
    };
    (other_device, identity_changed || keys.replace_one_time)
}
