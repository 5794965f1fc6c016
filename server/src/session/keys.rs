//! The key directory's two commands (protocol 6): `PublishKeys` and `FetchBundle`. Neither is in
//! the order of line answers: each is checked here, handed to the hub and the store, and
//! answered on its own once the store replies (`KeysPublished`, `Bundle`) or at once (a
//! refusal, a fetch over the limit). The store's replies are awaited in the session's select
//! loop, oldest first (the store answers in submission order), each within [`STORE_TIMEOUT`];
//! a store that fails or stays silent is told to the client as a non-fatal `busy`.

use std::collections::VecDeque;

use mm_common::prekeys::{BundleAnswer, KeyUpload};
use mm_common::protocol::{validate_nick, ServerMsg};
use tokio::time::{timeout_at, Instant};
use tracing::warn;

use super::context::{Context, STORE_TIMEOUT};
use super::refusal::{protocol_safe, Refusal};
use crate::hub::{Fetch, Outbox, SendError};
use crate::store::{Published, Reply, StoreError, Taken};
use crate::transport::Transport;

/// Key commands one session may have waiting for the store; it stops reading its client's
/// messages at this many until the store answers.
pub(super) const MAX_KEY_WAITS: usize = 16;

/// A key command waiting for the store.
pub(super) enum KeyWait {
    /// `KeysPublished` once the keys are durable.
    Publish {
        reply: Reply<Published>,
        deadline: Instant,
    },
    /// `Bundle` once the store handed it out (a one-time prekey's deletion durable).
    Fetch {
        nick: String,
        reply: Reply<Taken>,
        deadline: Instant,
        /// Whether a one-time prekey was asked for, and when (the reuse window's mark).
        one_time: Option<std::time::Instant>,
    },
}

/// A [`KeyWait`] the store answered (a silent store: [`StoreError::Busy`]).
pub(super) enum KeyDone {
    Published(Result<Published, StoreError>),
    Taken {
        nick: String,
        one_time: Option<std::time::Instant>,
        taken: Result<Taken, StoreError>,
    },
}

/// Handles `PublishKeys` or `FetchBundle`: answers at once, or adds what it waits for to
/// `waits`.
pub(super) fn command<T: Transport>(
    conn: &mut T,
    m: &Outbox,
    ctx: &Context,
    waits: &mut VecDeque<KeyWait>,
    msg: KeyCommand,
) {
    let deadline = Instant::now() + STORE_TIMEOUT;
    match msg {
        KeyCommand::Publish(keys) => {
            if let Err(e) = keys.validate() {
                conn.queue_msg(&Refusal::BadKeys(e).answer());
                return;
            }
            match ctx.hub.publish_keys(m.conn_id, &m.nick, keys) {
                Ok(reply) => waits.push_back(KeyWait::Publish { reply, deadline }),
                Err(e) => conn.queue_msg(&store_refusal(&e, Refusal::KeysNotStored).answer()),
            }
        }
        KeyCommand::Fetch(nick) => {
            if validate_nick(&nick).is_err() {
                // Not a nick, so nobody's: echoed cleaned and cut, as error details are.
                conn.queue_msg(&ServerMsg::Bundle {
                    nick: protocol_safe(&nick),
                    answer: BundleAnswer::NoSuchUser,
                });
                return;
            }
            let now = Instant::now().into_std();
            match ctx.hub.fetch_bundle(&m.nick, &nick, now) {
                Ok(Fetch::Limited(wait)) => conn.queue_msg(&ServerMsg::Bundle {
                    nick,
                    answer: BundleAnswer::RateLimited {
                        retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
                    },
                }),
                Ok(Fetch::Asked { reply, one_time }) => waits.push_back(KeyWait::Fetch {
                    nick,
                    reply,
                    deadline,
                    one_time: one_time.then_some(now),
                }),
                Err(e) => conn.queue_msg(&store_refusal(&e, Refusal::BundleNotRead).answer()),
            }
        }
    }
}

/// The two key commands, taken out of their `ClientMsg`.
pub(super) enum KeyCommand {
    Publish(KeyUpload),
    Fetch(String),
}

/// The store's answer to the first of `waits`, within its deadline, with that wait taken off
/// the queue; never ready when there is none. Cancel-safe: the wait stays at the front until
/// it is answered.
pub(super) async fn next_done(waits: &mut VecDeque<KeyWait>) -> KeyDone {
    let answered = match waits.front_mut() {
        Some(KeyWait::Publish { reply, deadline }) => {
            KeyDone::Published(settled(timeout_at(*deadline, reply).await))
        }
        Some(KeyWait::Fetch {
            reply,
            deadline,
            nick,
            one_time,
        }) => {
            let taken = settled(timeout_at(*deadline, reply).await);
            KeyDone::Taken {
                nick: std::mem::take(nick),
                one_time: *one_time,
                taken,
            }
        }
        None => std::future::pending().await,
    };
    waits.pop_front();
    answered
}

/// The store's reply as a result: a dropped reply is a closed store, none in time a busy one.
fn settled<T>(
    r: Result<
        Result<Result<T, StoreError>, tokio::sync::oneshot::error::RecvError>,
        tokio::time::error::Elapsed,
    >,
) -> Result<T, StoreError> {
    match r {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(StoreError::Closed),
        Err(_) => Err(StoreError::Busy),
    }
}

/// Answers a key command the store answered.
pub(super) fn complete<T: Transport>(conn: &mut T, m: &Outbox, ctx: &Context, done: KeyDone) {
    match done {
        KeyDone::Published(Ok(p)) => conn.queue_msg(&ServerMsg::KeysPublished {
            one_time: p.one_time,
            other_device: p.other_device,
        }),
        KeyDone::Published(Err(e)) => {
            warn!(error = %e, "published keys not stored");
            conn.queue_msg(&store_refusal(&e, Refusal::KeysNotStored).answer());
        }
        KeyDone::Taken {
            nick,
            one_time,
            taken,
        } => {
            let handed_out =
                matches!(&taken, Ok(Taken::Bundle { bundle, .. }) if bundle.one_time.is_some());
            if let (Some(at), false) = (one_time, handed_out) {
                // None was handed out: the reuse window does not start.
                ctx.hub.no_one_time_taken(&m.nick, &nick, at);
            }
            let answer = match taken {
                Ok(Taken::Bundle { bundle, remaining }) => {
                    ctx.hub.one_time_left(&nick, remaining);
                    BundleAnswer::Keys(bundle)
                }
                Ok(Taken::NoKeys) => BundleAnswer::NoKeys,
                Ok(Taken::NoSuchAccount) => BundleAnswer::NoSuchUser,
                Err(e) => {
                    warn!(error = %e, "bundle not handed out");
                    conn.queue_msg(&store_refusal(&e, Refusal::BundleNotRead).answer());
                    return;
                }
            };
            conn.queue_msg(&ServerMsg::Bundle { nick, answer });
        }
    }
}

/// A store failure as the client learns it: `shutting-down` once the store closed, else
/// `busy` (`otherwise`).
fn store_refusal(e: &StoreError, otherwise: Refusal) -> Refusal {
    match e {
        StoreError::Closed => Refusal::Send(SendError::Closed),
        _ => otherwise,
    }
}
