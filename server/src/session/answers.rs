//! The answers a session owes its client for `Public`, `Private` and `Relay`, queued in the
//! order the messages came: an [`Answer`] is either known now (a refusal) or waits for the store
//! to make the line durable. [`pump`] sends the known ones at the front without waiting;
//! [`settle_front`] waits for the front one, bounded by its deadline.

use std::collections::VecDeque;

use mm_common::protocol::ServerMsg;
use tokio::sync::oneshot;
use tokio::time::{timeout_at, Instant};
use tracing::warn;

use super::context::Exit;
use super::refusal::Refusal;
use crate::config::Limits;
use crate::hub::{Accepted, Ordered, SendError, Settled};
use crate::store::{QueueOutcome, Reply, StoreError};
use crate::transport::Transport;

/// The answer owed to one `Public`, `Private` or `Relay`. Answers leave in the order the
/// messages came, each once it is known: a line is acknowledged only when it is durable.
pub(crate) enum Answer {
    /// Known now (a refusal).
    Ready(ServerMsg),
    /// `Sent` once the public line is in the stored history.
    Public {
        accepted: Accepted,
        durable: Reply<()>,
        deadline: Instant,
    },
    /// `Sent` (`live`) or `Queued` once the personal line is in the recipient's mailbox.
    Mail {
        accepted: Accepted,
        to: String,
        live: bool,
        reply: Reply<QueueOutcome>,
        deadline: Instant,
    },
    /// On a node of several: the line is being ordered by the stream; once applied it becomes
    /// a `Public` (`to` is `None`) or a `Mail` answer with its id (CLUSTER.md).
    Ordering {
        to: Option<String>,
        reply: oneshot::Receiver<Settled>,
        deadline: Instant,
    },
}

impl Answer {
    /// When the store's answer is due; `None` for an answer known now.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self {
            Answer::Ready(_) => None,
            Answer::Public { deadline, .. }
            | Answer::Mail { deadline, .. }
            | Answer::Ordering { deadline, .. } => Some(*deadline),
        }
    }
}

/// The message for a settled [`Answer::Public`].
fn public_answer(accepted: Accepted, stored: Result<(), StoreError>) -> ServerMsg {
    match stored {
        Ok(()) => ServerMsg::Sent {
            id: accepted.id,
            ts: accepted.ts,
        },
        Err(e) => {
            warn!(error = %e, "public line not stored");
            Refusal::PublicNotStored.answer()
        }
    }
}

/// The message for a settled [`Answer::Mail`].
fn mail_answer(
    accepted: Accepted,
    to: &str,
    live: bool,
    stored: Result<QueueOutcome, StoreError>,
    limits: &Limits,
) -> ServerMsg {
    // Only refusals name the recipient (cleaned by `Refusal::wire`).
    let to = to.to_owned();
    let refusal = match stored {
        Ok(QueueOutcome::Queued) if live => {
            return ServerMsg::Sent {
                id: accepted.id,
                ts: accepted.ts,
            }
        }
        Ok(QueueOutcome::Queued) => {
            return ServerMsg::Queued {
                id: accepted.id,
                ts: accepted.ts,
            }
        }
        Ok(QueueOutcome::MailboxFull) => Refusal::MailboxFull {
            to,
            max: limits.mailbox_len,
        },
        Ok(QueueOutcome::StoreFull) => Refusal::StoreFull {
            to,
            max: limits.mailbox_total,
        },
        Ok(QueueOutcome::NoSuchAccount) => Refusal::NoSuchAccount { to },
        Err(e) => {
            warn!(error = %e, "private line not stored");
            Refusal::PrivateNotStored
        }
    };
    refusal.answer()
}

/// Moves the answers at the front that are known into the write buffer, in order.
pub(crate) fn pump<T: Transport>(conn: &mut T, answers: &mut VecDeque<Answer>, limits: &Limits) {
    loop {
        let msg = match answers.front_mut() {
            None => return,
            Some(Answer::Ready(_)) => {
                if let Some(Answer::Ready(msg)) = answers.pop_front() {
                    conn.queue_msg(&msg);
                }
                continue;
            }
            Some(Answer::Public {
                accepted, durable, ..
            }) => match durable.try_recv() {
                Ok(stored) => public_answer(*accepted, stored),
                Err(oneshot::error::TryRecvError::Empty) => return,
                Err(oneshot::error::TryRecvError::Closed) => {
                    public_answer(*accepted, Err(StoreError::Closed))
                }
            },
            Some(Answer::Mail {
                accepted,
                to,
                live,
                reply,
                ..
            }) => match reply.try_recv() {
                Ok(stored) => mail_answer(*accepted, to, *live, stored, limits),
                Err(oneshot::error::TryRecvError::Empty) => return,
                Err(oneshot::error::TryRecvError::Closed) => {
                    mail_answer(*accepted, to, *live, Err(StoreError::Closed), limits)
                }
            },
            Some(Answer::Ordering { reply, .. }) => match reply.try_recv() {
                Ok(settled) => {
                    if let Some(answer) = answers.front_mut() {
                        if let Some(msg) = ordered(answer, settled) {
                            answers.pop_front();
                            conn.queue_msg(&msg);
                        }
                    }
                    continue;
                }
                Err(oneshot::error::TryRecvError::Empty) => return,
                Err(oneshot::error::TryRecvError::Closed) => {
                    Refusal::Send(SendError::Closed).answer()
                }
            },
        };
        answers.pop_front();
        conn.queue_msg(&msg);
    }
}

/// Turns the front [`Answer::Ordering`] into the answer it waits for now that the stream
/// ordered its line (`Public` or `Mail`, waiting for the store), or returns the refusal to
/// send at once.
fn ordered(answer: &mut Answer, settled: Settled) -> Option<ServerMsg> {
    let Answer::Ordering { to, deadline, .. } = answer else {
        return None;
    };
    // The store's wait starts now that the line is ordered (the bus may have taken long).
    let deadline = (*deadline).max(Instant::now() + super::context::STORE_TIMEOUT);
    *answer = match settled {
        Ok(Ordered::Public(accepted, durable)) => Answer::Public {
            accepted,
            durable,
            deadline,
        },
        Ok(Ordered::Mail(accepted, live, reply)) => Answer::Mail {
            accepted,
            to: to.take().unwrap_or_default(),
            live,
            reply,
            deadline,
        },
        Err(e) => return Some(Refusal::Send(e).answer()),
    };
    None
}

/// Waits until the answer at the front is known and returns it (removed from the queue).
/// Cancel-safe: the answer is removed only once known. A store that stays silent past the
/// answer's deadline ends the session: its outcome is then unknown, and the client's
/// unacknowledged lines are its to resend.
pub(crate) async fn settle_front(
    answers: &mut VecDeque<Answer>,
    limits: &Limits,
) -> Result<ServerMsg, Exit> {
    let Some(deadline) = answers.front().and_then(Answer::deadline) else {
        return match answers.pop_front() {
            Some(Answer::Ready(msg)) => Ok(msg),
            _ => std::future::pending().await,
        };
    };
    let silent = || Exit::Fatal(Refusal::StoreSilent);
    let msg = match answers.front_mut() {
        Some(Answer::Public {
            accepted, durable, ..
        }) => match timeout_at(deadline, durable).await {
            Ok(Ok(stored)) => public_answer(*accepted, stored),
            Ok(Err(_)) => public_answer(*accepted, Err(StoreError::Closed)),
            Err(_) => return Err(silent()),
        },
        Some(Answer::Mail {
            accepted,
            to,
            live,
            reply,
            ..
        }) => match timeout_at(deadline, reply).await {
            Ok(Ok(stored)) => mail_answer(*accepted, to, *live, stored, limits),
            Ok(Err(_)) => mail_answer(*accepted, to, *live, Err(StoreError::Closed), limits),
            Err(_) => return Err(silent()),
        },
        Some(Answer::Ordering { reply, .. }) => {
            match timeout_at(deadline.max(bus_deadline(deadline)), reply).await {
                Ok(settled) => {
                    let settled = settled.unwrap_or(Err(SendError::Closed));
                    let Some(answer) = answers.front_mut() else {
                        return std::future::pending().await;
                    };
                    match ordered(answer, settled) {
                        Some(refusal) => refusal,
                        // Now a `Public` or `Mail` answer: wait for the store (same deadline).
                        None => return Box::pin(settle_front(answers, limits)).await,
                    }
                }
                Err(_) => return Err(Exit::Fatal(Refusal::BusSilent)),
            }
        }
        _ => return std::future::pending().await,
    };
    answers.pop_front();
    Ok(msg)
}

/// How long a line waits for the cluster's bus to order it, counted like the store's
/// deadline (which is 30 s after the line came): 90 s, below JetStream's 2-minute window in
/// which a publish sent again is recognised as a repeat (CLUSTER.md). A NATS outage shorter
/// than that only delays answers.
pub(crate) const BUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// The deadline of a line waiting for the bus, from its store deadline.
fn bus_deadline(store_deadline: Instant) -> Instant {
    store_deadline + BUS_TIMEOUT.saturating_sub(super::context::STORE_TIMEOUT)
}

/// Most answers one session may owe at once (waiting for the store); beyond this it stops
/// reading from its client until the store catches up.
pub(crate) const MAX_OWED: usize = 1024;
