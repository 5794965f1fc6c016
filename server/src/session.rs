//! One client connection from TCP accept to close: TLS handshake, hello, then a single task that
//! `select!`s over the client's messages, the user's queue, the ping timer and shutdown.
//! Whatever became ready is queued on the transport and sent with one flush (for TLS: one write),
//! under a timeout: a client that stops reading is dropped, never waited for.
//!
//! Everything after the TLS handshake is generic over the [`Transport`], so the rules (login,
//! rate limits, timeouts, slow clients) are tested on the in-memory transport with tokio's paused
//! clock (`tests`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mm_common::protocol::{
    self, validate_nick, validate_text, ClientMsg, ErrorCode, LeaveReason, ServerMsg,
    MONITOR_PER_FRAME, PROTOCOL_VERSION, USERS_PER_FRAME,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Limits;
use crate::hub::{Accepted, Hub, JoinError, Membership, PrivateOutcome, SendError};
use crate::limit::{RateLimiter, Registrations, Verdict};
use crate::store::{Body, LoginOutcome, QueueOutcome, Reply, StoreError};
use crate::transport::framed::Framed;
use crate::transport::{ReadError, Transport};

/// Most bytes collected into one write: one TLS record's worth. Enough to amortise the write and
/// flush over hundreds of chat lines, small enough that 10,000 busy sessions do not hold
/// gigabytes between them (measured: 256 KiB batches peaked at 333 KiB RSS per idle connection
/// during a join storm).
const MAX_BATCH: usize = 16 * 1024;

/// Longest wait for the store's answer (a login, a line made durable). It answers after a
/// commit, normally within milliseconds, and retries while the database is locked; this only
/// bounds a stuck disk.
const STORE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait, after close_notify, for the client to close its side (its unread input is
/// discarded meanwhile, so that closing never turns into a reset).
const LINGER: Duration = Duration::from_secs(2);

/// How long, after `Shutdown`, the server still answers what the client sends (messages that
/// crossed the notice on the wire), unless the client closes first.
const LINGER_AFTER_SHUTDOWN: Duration = Duration::from_secs(1);

/// What every session needs.
pub(crate) struct Context {
    pub hub: Hub,
    pub limits: Limits,
    pub server_name: String,
    /// New registrations per certificate and per address.
    pub registrations: Registrations,
}

/// Why a logged-in session ended.
#[derive(Debug)]
enum Exit {
    /// The client sent `Quit`.
    Quit,
    /// The client closed the connection or it failed.
    Disconnected,
    /// The server is shutting down; `Shutdown` is queued, and the client may still be answered
    /// until this deadline.
    Shutdown(Instant),
    /// The client fell too far behind (its queue overflowed).
    TooSlow,
    /// A write made no progress within the write timeout.
    WriteStalled,
    /// The same account logged in on another connection.
    Replaced,
    /// The client broke the protocol or went silent; tell it why.
    Fatal(ErrorCode, String),
}

/// Serves one accepted TCP connection until it ends.
pub(crate) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    ctx: Arc<Context>,
    cancel: CancellationToken,
) {
    let _ = tcp.set_nodelay(true); // chat lines are small and latency-sensitive
    let accept = timeout(ctx.limits.handshake_timeout, acceptor.accept(tcp));
    let tls = tokio::select! {
        r = accept => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                let failure = crate::tls::handshake_failure(&e);
                if failure.certificate_refused {
                    info!(%peer, why = %failure.why, "TLS handshake failed");
                } else {
                    debug!(%peer, why = %failure.why, "TLS handshake failed");
                }
                return;
            }
            Err(_) => {
                debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        () = cancel.cancelled() => return,
    };
    run(Framed::tls(tls), peer, &ctx, &cancel).await;
}

/// Runs a session on an established connection: hello, chat, and the goodbye. The account is
/// the fingerprint of the client's certificate ([`Transport::peer_fingerprint`]).
pub(crate) async fn run<T: Transport>(
    mut conn: T,
    peer: SocketAddr,
    ctx: &Context,
    cancel: &CancellationToken,
) {
    let fingerprint = conn.peer_fingerprint();
    let membership = match login(&mut conn, peer, fingerprint, ctx, cancel).await {
        Ok(m) => m,
        Err(LoginFailed::Tell(code, detail)) => {
            debug!(%peer, code = %code, "login refused");
            conn.queue_msg(&ServerMsg::Error {
                code,
                fatal: true,
                detail,
            });
            close(&mut conn, &ctx.limits).await;
            return;
        }
        Err(LoginFailed::Shutdown) => {
            conn.queue_msg(&ServerMsg::Shutdown {
                reason: "server is shutting down".into(),
            });
            close(&mut conn, &ctx.limits).await;
            return;
        }
        Err(LoginFailed::Silent) => return,
    };
    let nick = membership.nick.clone();
    let conn_id = membership.conn_id;
    info!(%peer, conn = conn_id, %nick, "logged in");

    let exit = chat(&mut conn, membership, ctx, cancel).await;
    let reason = match &exit {
        Exit::Quit => LeaveReason::Quit,
        Exit::Disconnected | Exit::Shutdown(_) | Exit::Replaced => LeaveReason::Disconnected,
        Exit::TooSlow | Exit::WriteStalled => LeaveReason::TooSlow,
        // Silent, or dropped because the store stopped answering: not the client's fault.
        Exit::Fatal(code, _) if *code == ErrorCode::TIMEOUT || *code == ErrorCode::BUSY => {
            LeaveReason::Disconnected
        }
        Exit::Fatal(..) => LeaveReason::ProtocolError,
    };
    if let Exit::Shutdown(deadline) = exit {
        // Still logged in while it lingers: an acknowledgement that crossed the notice (mm
        // sends one as it quits) must still delete what it covers. Then it leaves, and the
        // close stays inside the shutdown grace.
        let linger_until = deadline.min(Instant::now() + LINGER_AFTER_SHUTDOWN);
        linger_after_shutdown(&mut conn, ctx, conn_id, &nick, linger_until).await;
        ctx.hub.leave(conn_id, &nick, reason);
        info!(%peer, conn = conn_id, %nick, reason = reason.as_str(), "left");
        let grace_end = deadline + ctx.limits.shutdown_grace.mul_f64(0.15);
        let _ = timeout_at(grace_end, close(&mut conn, &ctx.limits)).await;
        return;
    }
    ctx.hub.leave(conn_id, &nick, reason);
    info!(%peer, conn = conn_id, %nick, reason = reason.as_str(), "left");

    match exit {
        Exit::Quit => close(&mut conn, &ctx.limits).await,
        Exit::Shutdown(_) => {} // handled above
        Exit::TooSlow => {
            // It is not reading what it has; one last short message has the best chance.
            conn.discard_pending();
            conn.queue_msg(&ServerMsg::Error {
                code: ErrorCode::TOO_SLOW,
                fatal: true,
                detail: "you did not read messages fast enough".into(),
            });
            close(&mut conn, &ctx.limits).await;
        }
        Exit::Fatal(code, detail) => {
            conn.queue_msg(&ServerMsg::Error {
                code,
                fatal: true,
                detail,
            });
            close(&mut conn, &ctx.limits).await;
        }
        Exit::Replaced => {
            conn.queue_msg(&ServerMsg::Error {
                code: ErrorCode::REPLACED,
                fatal: true,
                detail: "you logged in again from another connection".into(),
            });
            close(&mut conn, &ctx.limits).await;
        }
        Exit::Disconnected | Exit::WriteStalled => {}
    }
}

/// Flushes what is queued and sends close_notify, each bounded by the write timeout, then reads
/// (and discards) whatever the client still sends until it closes too, for at most [`LINGER`]:
/// closing a socket with unread input makes the kernel send a reset, which can destroy data the
/// client has not read yet (our last frames included).
async fn close<T: Transport>(conn: &mut T, limits: &Limits) {
    if timeout(limits.write_timeout, conn.flush()).await.is_err() {
        return;
    }
    if timeout(limits.write_timeout, conn.close()).await.is_err() {
        return;
    }
    let _ = timeout(LINGER, async {
        while let Ok(n) = conn.read_discard().await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// After `Shutdown`: until the client closes, quits, or `deadline` passes, answers what it still
/// sends (messages that crossed the notice on the wire get `shutting-down`, pings a pong), so that
/// nothing the client sent goes unanswered.
async fn linger_after_shutdown<T: Transport>(
    conn: &mut T,
    ctx: &Context,
    conn_id: u64,
    nick: &str,
    deadline: Instant,
) {
    loop {
        if timeout_at(deadline, conn.flush()).await.is_err() {
            return;
        }
        let payload = match timeout_at(deadline, conn.recv()).await {
            Ok(Ok(Some(payload))) => payload,
            _ => return,
        };
        match ClientMsg::decode(&payload) {
            Ok(ClientMsg::Public { .. } | ClientMsg::Private { .. } | ClientMsg::Relay { .. }) => {
                conn.queue_msg(&ServerMsg::Error {
                    code: ErrorCode::SHUTTING_DOWN,
                    fatal: false,
                    detail: SendError::Closed.to_string(),
                });
            }
            Ok(ClientMsg::Ping { token }) => conn.queue_msg(&ServerMsg::Pong { token }),
            Ok(ClientMsg::Received { up_to }) => {
                ctx.hub.received(conn_id, nick, up_to);
            }
            Ok(ClientMsg::Quit) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

enum LoginFailed {
    /// Send this fatal error, then close.
    Tell(ErrorCode, String),
    /// The server is shutting down.
    Shutdown,
    /// The peer is gone or sent no message at all; nothing to say.
    Silent,
}

impl From<StoreError> for LoginFailed {
    /// The store could not complete the login (busy, failing, a stuck disk, closed).
    fn from(e: StoreError) -> Self {
        warn!(error = %e, "login not completed: store failed");
        LoginFailed::Tell(
            ErrorCode::BUSY,
            "the server cannot complete your login right now (its store is busy); try again".into(),
        )
    }
}

/// The refusal for a login the accounts do not admit.
fn login_refusal(nick: &str, outcome: &LoginOutcome) -> LoginFailed {
    let (code, detail) = match outcome {
        LoginOutcome::Taken => (
            ErrorCode::NICK_REGISTERED,
            format!("nick {nick} is registered to another key (client certificate)"),
        ),
        LoginOutcome::Full => (
            ErrorCode::ACCOUNTS_FULL,
            format!("nick {nick} is not registered and this server takes no new accounts (it holds its maximum); ask its operator"),
        ),
        LoginOutcome::LooksLike(other) => (
            ErrorCode::NICK_LOOKS_LIKE,
            format!("nick {nick} looks like the registered nick {other}; choose another"),
        ),
        LoginOutcome::Changed => (
            ErrorCode::BUSY,
            format!("the account {nick} changed while you logged in (released or expired); log in again"),
        ),
        LoginOutcome::Registered | LoginOutcome::Known => (
            ErrorCode::INTERNAL,
            "login refused for no reason (a server bug)".into(),
        ),
    };
    LoginFailed::Tell(code, detail)
}

/// A registration that [`Store::login`](crate::store::Store::login) may be making while the
/// session waits for the answer. If the session stops waiting before it knows the outcome
/// (shutdown, the store's timeout, the task dropped at the end of the shutdown grace), dropping
/// this undoes the registration, applied after it in the store's order: the login was
/// refused, so it must not leave the nick registered to this certificate.
struct PendingRegistration<'a> {
    armed: bool,
    store: &'a Arc<dyn crate::store::Store>,
    nick: &'a str,
    fingerprint: &'a str,
    created_ms: u64,
}

impl PendingRegistration<'_> {
    /// The store's answer arrived: nothing to undo.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for PendingRegistration<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(e) =
            self.store
                .abandon_registration(self.nick, self.fingerprint, self.created_ms)
        {
            warn!(error = %e, nick = self.nick, "a registration whose login did not complete could not be undone; the operator can release the nick");
        }
    }
}

/// Waits for `Hello`, checks it and the account, joins the hub and queues `Welcome`, the user
/// list, the room's history and the personal lines waiting in the user's mailbox (sent while
/// offline, or delivered before and never acknowledged).
///
/// A login's side effects happen only if it succeeds. In order:
/// 1. what can be checked without anyone's help (hello, nick, certificate);
/// 2. the account, from a read ([`Store::check_login`](crate::store::Store::check_login):
///    nick registered to another certificate, look-alike, accounts full);
/// 3. for a new nick, the registration limits (in memory; given back if the login fails);
/// 4. the hub (nick online with another certificate, shutting down), which admits the login;
/// 5. the store, which decides again in its own order and, only if it admits the login,
///    writes all a login writes — the registration, "logged in again" — and reads the mailbox,
///    as one unit ([`Store::login`](crate::store::Store::login)).
///
/// Nothing is written before step 5, and nothing can refuse the login after it, except that
/// the session may stop waiting for the store's answer (shutdown, a stuck store, the task
/// dropped): a [`PendingRegistration`] then undoes the registration in the store's order, so
/// that a refused login never leaves a nick registered (the fault of issue 13, item 5: a
/// refused `nick-in-use` login used to register the nick first).
async fn login<T: Transport>(
    conn: &mut T,
    peer: SocketAddr,
    fingerprint: Option<String>,
    ctx: &Context,
    cancel: &CancellationToken,
) -> Result<Membership, LoginFailed> {
    let read = timeout(ctx.limits.hello_timeout, conn.recv());
    let payload = tokio::select! {
        r = read => match r {
            Ok(Ok(Some(payload))) => payload,
            Ok(Ok(None)) | Ok(Err(ReadError::Io(_))) => return Err(LoginFailed::Silent),
            Ok(Err(e)) => return Err(LoginFailed::Tell(ErrorCode::BAD_FRAME, e.to_string())),
            Err(_) => return Err(LoginFailed::Tell(ErrorCode::TIMEOUT, "no hello received in time".into())),
        },
        () = cancel.cancelled() => return Err(LoginFailed::Shutdown),
    };
    let (version, nick) = match ClientMsg::decode(&payload) {
        Ok(ClientMsg::Hello { version, nick }) => (version, nick),
        Ok(_) => {
            return Err(LoginFailed::Tell(
                ErrorCode::UNEXPECTED_MESSAGE,
                "the first message must be Hello".into(),
            ))
        }
        Err(e) => return Err(LoginFailed::Tell(ErrorCode::BAD_FRAME, e.to_string())),
    };
    if version != PROTOCOL_VERSION {
        return Err(LoginFailed::Tell(
            ErrorCode::UNSUPPORTED_VERSION,
            format!("this server speaks protocol version {PROTOCOL_VERSION}, not {version}"),
        ));
    }
    if let Err(e) = validate_nick(&nick) {
        return Err(LoginFailed::Tell(ErrorCode::INVALID_NICK, e.to_string()));
    }
    let Some(fingerprint) = fingerprint else {
        return Err(LoginFailed::Tell(
            ErrorCode::CERTIFICATE_REQUIRED,
            "this server identifies users by a TLS client certificate and none was presented"
                .into(),
        ));
    };
    let checked = tokio::select! {
        checked = store_answer(ctx.hub.store().check_login(&nick, &fingerprint)) => checked,
        // A read: nothing to undo.
        () = cancel.cancelled() => return Err(LoginFailed::Shutdown),
    };
    let checked = match checked {
        Ok(outcome) => outcome,
        Err(e) => {
            warn!(error = %e, "login not checked: store failed");
            return Err(LoginFailed::Tell(
                ErrorCode::BUSY,
                "the server cannot check accounts right now; try again".into(),
            ));
        }
    };
    let register = match checked {
        LoginOutcome::Known => false,
        LoginOutcome::Registered => true,
        refused => return Err(login_refusal(&nick, &refused)),
    };
    let reservation = if register {
        match ctx
            .registrations
            .reserve(&fingerprint, peer.ip(), std::time::Instant::now())
        {
            Ok(reservation) => Some(reservation),
            Err(over) => {
                info!(%peer, %nick, limit = ?over.by, "registration refused: over the limit");
                return Err(LoginFailed::Tell(
                    ErrorCode::REGISTRATION_LIMIT,
                    format!("cannot register the new nick {nick}: {over}"),
                ));
            }
        }
    } else {
        None
    };
    let now = ctx.hub.clock().now_ms();
    let mut membership =
        match ctx
            .hub
            .join_unannounced(ctx.hub.next_conn_id(), &nick, &fingerprint, now, register)
        {
            Ok(m) => m,
            Err(JoinError::NickInUse(n)) => {
                return Err(LoginFailed::Tell(
                    ErrorCode::NICK_IN_USE,
                    format!("{n} is already online"),
                ))
            }
            Err(JoinError::Closed) => return Err(LoginFailed::Shutdown),
        };
    // Without the mailbox the login fails: acknowledging the live lines that would follow
    // (`Received` is cumulative) would delete waiting ones this client never saw.
    let answer = match membership.login.take() {
        Some(reply) => {
            let pending = PendingRegistration {
                armed: register,
                store: ctx.hub.store(),
                nick: &nick,
                fingerprint: &fingerprint,
                created_ms: now,
            };
            let answer = tokio::select! {
                answer = store_answer(Ok(reply)) => answer.map_err(LoginFailed::from),
                // Stops waiting: the pending registration, if any, is undone.
                () = cancel.cancelled() => Err(LoginFailed::Shutdown),
            };
            if answer.is_ok() {
                // The store decided; whatever it decided, nothing is left to undo.
                pending.disarm();
            }
            answer
        }
        None => Err(LoginFailed::from(StoreError::Busy)),
    };
    let admitted = match answer {
        Ok(login) if login.outcome.admits() => Ok(login),
        Ok(login) => Err(login_refusal(&nick, &login.outcome)),
        Err(failed) => Err(failed),
    };
    let login = match admitted {
        Ok(login) => login,
        Err(failed) => {
            if membership.announce {
                ctx.hub.withdraw(membership.conn_id, &membership.nick);
            } else {
                // It took over an older connection of the account: that one is gone, so the
                // others must hear that the user left (and its logout is recorded: the older
                // connection's, not this login's). Taking over is the one thing a login does
                // before the store admits it, because the live queue must exist when the
                // mailbox is read; only the owner's own certificate can do it.
                ctx.hub.leave(
                    membership.conn_id,
                    &membership.nick,
                    LeaveReason::Disconnected,
                );
            }
            return Err(failed);
        }
    };
    if login.outcome == LoginOutcome::Registered {
        if let Some(reservation) = reservation {
            reservation.commit();
        }
        info!(%peer, %nick, %fingerprint, "nick registered");
    }
    let mails = login.waiting;
    ctx.hub.announce(&membership);
    let online = u32::try_from(membership.online.len()).unwrap_or(u32::MAX);
    conn.queue_msg(&ServerMsg::Welcome {
        nick: membership.nick.clone(),
        server: ctx.server_name.clone(),
        online,
        max_text_len: u32::try_from(ctx.limits.max_text_len).unwrap_or(u32::MAX),
        rate_burst: ctx.limits.rate_burst,
        rate_per_sec: ctx.limits.rate_per_sec,
    });
    queue_users(conn, &membership.online);
    // Sent; do not keep it. Every session holding the list of who was online when it joined
    // cost N²/2 strings: 325 KiB per connection with 10,000 users.
    membership.online = Vec::new();
    for line in std::mem::take(&mut membership.history) {
        conn.queue(line);
    }
    // They stay in the mailbox until the client acknowledges them.
    let ids: Vec<u64> = mails.iter().map(|m| m.id).collect();
    // A login fetches at most what one mailbox may hold; more can wait only after the limits
    // were lowered, and then the rest comes at a later login.
    let fetch_limit = ctx.limits.mailbox_len + ctx.limits.outbound_queue.max(1);
    ctx.hub.fetched(
        membership.conn_id,
        &membership.nick,
        &ids,
        ids.len() < fetch_limit,
    );
    for mail in mails {
        conn.queue_msg(&match mail.body {
            Body::Text(text) => ServerMsg::Offline {
                id: mail.id,
                ts: mail.ts,
                from: mail.from,
                text,
            },
            Body::Relay(payload) => ServerMsg::Relay {
                id: mail.id,
                ts: mail.ts,
                from: mail.from,
                payload,
            },
        });
    }
    Ok(membership)
}

/// The store's answer, within [`STORE_TIMEOUT`].
async fn store_answer<T>(submitted: Result<Reply<T>, StoreError>) -> Result<T, StoreError> {
    match timeout(STORE_TIMEOUT, submitted?).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(StoreError::Closed),
        Err(_) => Err(StoreError::Busy),
    }
}

/// Queues the user list in frames of at most [`USERS_PER_FRAME`] nicks.
fn queue_users<T: Transport>(conn: &mut T, nicks: &[String]) {
    let mut chunks = nicks.chunks(USERS_PER_FRAME).peekable();
    if chunks.peek().is_none() {
        conn.queue_msg(&ServerMsg::Users {
            nicks: Vec::new(),
            last: true,
        });
    }
    while let Some(chunk) = chunks.next() {
        conn.queue_msg(&ServerMsg::Users {
            nicks: chunk.to_vec(),
            last: chunks.peek().is_none(),
        });
    }
}

/// The answer owed to one `Public`, `Private` or `Relay`. Answers leave in the order the
/// messages came, each once it is known: a line is acknowledged only when it is durable.
enum Answer {
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
}

impl Answer {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Answer::Ready(_) => None,
            Answer::Public { deadline, .. } | Answer::Mail { deadline, .. } => Some(*deadline),
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
            refusal(
                ErrorCode::BUSY,
                "the server could not store the message (those online may have seen it); try again"
                    .into(),
            )
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
    // Only refusals name the recipient, cleaned of anything a client could have put there.
    let to = || protocol_safe(to);
    let (code, detail) = match stored {
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
        Ok(QueueOutcome::MailboxFull) => (
            ErrorCode::MAILBOX_FULL,
            format!(
                "{} is offline and has as many messages waiting as the server keeps for one user ({})",
                to(),
                limits.mailbox_len
            ),
        ),
        Ok(QueueOutcome::StoreFull) => (
            ErrorCode::MAILBOX_FULL,
            format!(
                "{} is offline and the server keeps no more waiting messages right now (its limit is {} for all users together)",
                to(),
                limits.mailbox_total
            ),
        ),
        Ok(QueueOutcome::NoSuchAccount) => (
            ErrorCode::NO_SUCH_NICK,
            format!("{} is not online and not a registered user", to()),
        ),
        Err(e) => {
            warn!(error = %e, "private line not stored");
            (
                ErrorCode::BUSY,
                "the server could not store the message; try again".into(),
            )
        }
    };
    refusal(code, detail)
}

fn refusal(code: ErrorCode, detail: String) -> ServerMsg {
    ServerMsg::Error {
        code,
        fatal: false,
        detail,
    }
}

/// Moves the answers at the front that are known into the write buffer, in order.
fn pump<T: Transport>(conn: &mut T, answers: &mut VecDeque<Answer>, limits: &Limits) {
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
        };
        answers.pop_front();
        conn.queue_msg(&msg);
    }
}

/// Waits until the answer at the front is known and returns it (removed from the queue).
/// Cancel-safe: the answer is removed only once known. A store that stays silent past the
/// answer's deadline ends the session: its outcome is then unknown, and the client's
/// unacknowledged lines are its to resend.
async fn settle_front(answers: &mut VecDeque<Answer>, limits: &Limits) -> Result<ServerMsg, Exit> {
    let Some(deadline) = answers.front().and_then(Answer::deadline) else {
        return match answers.pop_front() {
            Some(Answer::Ready(msg)) => Ok(msg),
            _ => std::future::pending().await,
        };
    };
    let silent = || {
        Exit::Fatal(
            ErrorCode::BUSY,
            "the server's store is not answering; messages not acknowledged may not have been kept"
                .into(),
        )
    };
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
        _ => return std::future::pending().await,
    };
    answers.pop_front();
    Ok(msg)
}

/// Most answers one session may owe at once (waiting for the store); beyond this it stops
/// reading from its client until the store catches up.
const MAX_OWED: usize = 1024;

/// The logged-in loop.
async fn chat<T: Transport>(
    conn: &mut T,
    mut m: Membership,
    ctx: &Context,
    cancel: &CancellationToken,
) -> Exit {
    let limits = &ctx.limits;
    let mut last_heard = Instant::now();
    let mut ping =
        tokio::time::interval_at(Instant::now() + limits.ping_interval, limits.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping_token: u64 = 0;
    let mut limiter = RateLimiter::new(
        limits.rate_burst,
        limits.rate_per_sec,
        limits.flood_strikes,
        Instant::now().into_std(),
    );
    let mut answers: VecDeque<Answer> = VecDeque::new();
    // Set once the server stops: by then every accepted line must be out and answered.
    let mut stopping: Option<Instant> = None;

    loop {
        pump(conn, &mut answers, limits);
        if let Some(deadline) = stopping {
            // The hub is closed: nothing new enters the queue, so this empties it.
            if let Err(exit) = drain(conn, &mut m, usize::MAX) {
                return exit;
            }
            if answers.is_empty() || Instant::now() >= deadline {
                conn.queue_msg(&ServerMsg::Shutdown {
                    reason: "server is shutting down".into(),
                });
                return Exit::Shutdown(deadline);
            }
        }
        // Flush first: the welcome, and whatever the last turn collected.
        if conn.pending() > 0 {
            match timeout(limits.write_timeout, conn.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Exit::Disconnected,
                Err(_) => return Exit::WriteStalled,
            }
            if m.queue.is_empty() {
                conn.shrink_idle(); // going idle: do not keep a burst-sized buffer
            }
        }
        let owes_store = answers.front().is_some_and(|a| a.deadline().is_some());
        tokio::select! {
            () = cancel.cancelled(), if stopping.is_none() => {
                // Keep serving a little longer: deliver what was accepted, answer what is owed
                // and refuse what still comes (the hub is closed) — then say goodbye.
                stopping = Some(Instant::now() + limits.shutdown_grace.mul_f64(0.8));
            }
            settled = settle_front(&mut answers, limits), if owes_store => match settled {
                Ok(msg) => conn.queue_msg(&msg),
                Err(exit) => return exit,
            },
            queued = m.queue.recv() => match queued {
                Some(msg) => {
                    m.queued_bytes.fetch_sub(msg.len(), Ordering::Relaxed);
                    conn.queue(msg);
                }
                None => return closed_queue(&m),
            },
            read = conn.recv(), if answers.len() < MAX_OWED => {
                last_heard = Instant::now();
                match read {
                    Ok(Some(payload)) => {
                        if let Some(exit) = handle(conn, &m, ctx, &mut limiter, &mut answers, &payload) {
                            return exit;
                        }
                    }
                    Ok(None) | Err(ReadError::Io(_)) => return Exit::Disconnected,
                    // Not messages (a bad frame, or cut in the middle of one).
                    Err(e) => return Exit::Fatal(ErrorCode::BAD_FRAME, e.to_string()),
                }
            }
            _ = ping.tick() => {
                let silent = last_heard.elapsed();
                if silent >= limits.idle_timeout {
                    return Exit::Fatal(ErrorCode::TIMEOUT, format!("no answer for {} s", silent.as_secs()));
                }
                if silent >= limits.ping_interval {
                    ping_token = ping_token.wrapping_add(1);
                    conn.queue_msg(&ServerMsg::Ping { token: ping_token });
                }
            }
            () = tokio::time::sleep_until(stopping.unwrap_or_else(Instant::now)), if stopping.is_some() => {}
        }
        // Collect whatever else is ready so that it leaves in the same write.
        if let Err(exit) = drain(conn, &mut m, MAX_BATCH) {
            return exit;
        }
    }
}

/// Moves ready messages from the user's queue onto the transport without waiting, until it
/// holds `budget` bytes.
fn drain<T: Transport>(conn: &mut T, m: &mut Membership, budget: usize) -> Result<(), Exit> {
    while conn.pending() < budget {
        match m.queue.try_recv() {
            Ok(msg) => {
                m.queued_bytes.fetch_sub(msg.len(), Ordering::Relaxed);
                conn.queue(msg);
            }
            Err(mpsc::error::TryRecvError::Empty) => break,
            Err(mpsc::error::TryRecvError::Disconnected) => return Err(closed_queue(m)),
        }
    }
    Ok(())
}

/// Why the hub closed our queue: another login took the nick over, or we fell behind.
fn closed_queue(m: &Membership) -> Exit {
    if m.replaced.load(Ordering::Relaxed) {
        Exit::Replaced
    } else {
        Exit::TooSlow
    }
}

/// Handles one message from a logged-in client; `Some` ends the session. Answers owed to chat
/// messages go to `answers`, in order.
fn handle<T: Transport>(
    conn: &mut T,
    m: &Membership,
    ctx: &Context,
    limiter: &mut RateLimiter,
    answers: &mut VecDeque<Answer>,
    payload: &[u8],
) -> Option<Exit> {
    let msg = match ClientMsg::decode(payload) {
        Ok(msg) => msg,
        Err(e) => return Some(Exit::Fatal(ErrorCode::BAD_FRAME, e.to_string())),
    };
    // An acknowledgement that advances is free; one that does not (a repeat, or beyond what
    // this connection was given) is useless and counts against the rate like any message.
    let free = match msg {
        ClientMsg::Pong { .. } | ClientMsg::Quit => true,
        ClientMsg::Received { up_to } => ctx.hub.received(m.conn_id, &m.nick, up_to),
        _ => false,
    };
    if !free {
        match limiter.check(Instant::now().into_std()) {
            Verdict::Allow => {}
            Verdict::Refuse => {
                // Messages that expect an answer get one; a refused Who or Ping is dropped,
                // so that a client counting answers never sees one it did not expect.
                if matches!(
                    msg,
                    ClientMsg::Public { .. } | ClientMsg::Private { .. } | ClientMsg::Relay { .. }
                ) {
                    answers.push_back(Answer::Ready(refusal(
                        ErrorCode::RATE_LIMITED,
                        "too many messages; slow down".into(),
                    )));
                }
                return None;
            }
            Verdict::Disconnect => {
                return Some(Exit::Fatal(
                    ErrorCode::RATE_LIMITED,
                    "disconnected for flooding".into(),
                ));
            }
        }
    }
    let deadline = Instant::now() + STORE_TIMEOUT;
    let owed = match msg {
        ClientMsg::Public { text } => check_text(&text, ctx).and_then(|()| {
            let (accepted, durable) = ctx
                .hub
                .publish(m.conn_id, &m.nick, text)
                .map_err(send_error)?;
            Ok(Answer::Public {
                accepted,
                durable,
                deadline,
            })
        }),
        ClientMsg::Private { to, text } => check_recipient(&to)
            .and_then(|()| check_text(&text, ctx))
            .and_then(|()| {
                let (accepted, reply, live) = match ctx
                    .hub
                    .send_private(&m.nick, &to, text)
                    .map_err(send_error)?
                {
                    PrivateOutcome::Delivered(accepted, reply) => (accepted, reply, true),
                    PrivateOutcome::Stored(accepted, reply) => (accepted, reply, false),
                };
                Ok(Answer::Mail {
                    accepted,
                    to,
                    live,
                    reply,
                    deadline,
                })
            }),
        ClientMsg::Relay { to, payload } => check_recipient(&to)
            .and_then(|()| check_payload(&payload))
            .and_then(|()| {
                let (accepted, reply) = ctx.hub.relay(&m.nick, &to, payload).map_err(send_error)?;
                Ok(Answer::Mail {
                    accepted,
                    to,
                    live: true,
                    reply,
                    deadline,
                })
            }),
        ClientMsg::Who => {
            queue_users(conn, &ctx.hub.online());
            return None;
        }
        ClientMsg::Monitor { nicks } => {
            if nicks.is_empty() || nicks.len() > MONITOR_PER_FRAME {
                return Some(Exit::Fatal(
                    ErrorCode::BAD_FRAME,
                    format!("monitor takes 1 to {MONITOR_PER_FRAME} nicks"),
                ));
            }
            ctx.hub.monitor(m.conn_id, &m.nick, &nicks);
            return None;
        }
        ClientMsg::Ping { token } => {
            conn.queue_msg(&ServerMsg::Pong { token });
            return None;
        }
        ClientMsg::Received { .. } | ClientMsg::Pong { .. } => return None,
        ClientMsg::Quit => return Some(Exit::Quit),
        ClientMsg::Hello { .. } => {
            return Some(Exit::Fatal(
                ErrorCode::UNEXPECTED_MESSAGE,
                "already logged in".into(),
            ))
        }
    };
    answers.push_back(match owed {
        Ok(answer) => answer,
        Err((code, detail)) => {
            if code == ErrorCode::INTERNAL {
                warn!(%detail, "message refused by an internal error");
            }
            Answer::Ready(refusal(code, detail))
        }
    });
    None
}

/// A recipient that is not even a valid nick cannot be online.
fn check_recipient(to: &str) -> Result<(), (ErrorCode, String)> {
    validate_nick(to).map_err(|_| {
        (
            ErrorCode::NO_SUCH_NICK,
            // Echoed only when it can be shown whole: cut or cleaned, `aaa…(600)` would come
            // back as a 32-character nick that IS valid.
            if protocol_safe(to) == to {
                format!("{to} is not a valid nick")
            } else {
                format!(
                    "the recipient is not a valid nick ({} bytes; a nick is 1-{} of a-z A-Z 0-9 _ -, starting with a letter)",
                    to.len(),
                    protocol::MAX_NICK_LEN
                )
            },
        )
    })
}

fn check_payload(payload: &[u8]) -> Result<(), (ErrorCode, String)> {
    if payload.is_empty() || payload.len() > protocol::MAX_RELAY_LEN {
        return Err((
            ErrorCode::BAD_PAYLOAD,
            format!(
                "relay payload must be 1 to {} bytes",
                protocol::MAX_RELAY_LEN
            ),
        ));
    }
    Ok(())
}

fn check_text(text: &str, ctx: &Context) -> Result<(), (ErrorCode, String)> {
    validate_text(text, ctx.limits.max_text_len).map_err(|e| {
        let code = match e {
            protocol::TextError::TooLong { .. } => ErrorCode::TEXT_TOO_LONG,
            _ => ErrorCode::INVALID_TEXT,
        };
        (code, e.to_string())
    })
}

fn send_error(e: SendError) -> (ErrorCode, String) {
    let code = match e {
        SendError::NoSuchNick(_) | SendError::RecipientTooSlow(_) => ErrorCode::NO_SUCH_NICK,
        SendError::Closed => ErrorCode::SHUTTING_DOWN,
        SendError::Busy => ErrorCode::BUSY,
        _ => ErrorCode::INTERNAL,
    };
    (code, e.to_string())
}

/// A recipient name echoed in an error: cut to the nick limit and stripped of every character
/// chat text may not hold (`mm_common::text`: controls, line separators, bidi and format
/// controls), so that error details stay short, printable and one line whatever the client sent.
fn protocol_safe(name: &str) -> String {
    name.chars()
        .filter(|&c| !mm_common::text::is_forbidden(c))
        .take(protocol::MAX_NICK_LEN)
        .collect()
}

#[cfg(test)]
mod tests;
