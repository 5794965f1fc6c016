//! One client connection from TCP accept to close: TLS handshake, hello, then a single task that
//! `select!`s over the client's messages, the user's queue, the ping timer and shutdown.
//! Whatever became ready is queued on the transport and sent with one flush (for TLS: one write),
//! under a timeout: a client that stops reading is dropped, never waited for.
//!
//! Everything after the TLS handshake is generic over the [`Transport`], so the rules (login,
//! rate limits, timeouts, slow clients) are tested on the in-memory transport with tokio's paused
//! clock (`tests`).
//!
//! The parts (none imports this driver; they share [`context`]):
//! - this file: [`serve`] (TLS accept, with the configuration the ClientHello's ALPN asks
//!   for: native, or HTTPS for browsers, handed to `crate::web`), [`run`] (login, the chat loop, the goodbye) and the
//!   select loop itself (`chat`): the transport, the user's queue, answers owed, timers;
//! - `login`: `Hello` to `Welcome`, or the refusal;
//! - `dispatch`: one function per `ClientMsg` kind, called from one `match`;
//! - `answers`: the queue of answers owed to chat lines and their settling;
//! - `keys`: the key directory's commands, answered outside the order of line answers;
//! - `refusal`: every refusal as a `Refusal`, and the one mapping to error codes and details;
//! - `context`: the `Context`, the `Exit`, the store timeout, the user list's frames.

mod answers;
mod context;
mod dispatch;
mod keys;
mod login;
mod refusal;
mod rooms;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mm_common::protocol::{ClientMsg, ErrorCode, LeaveReason, ServerMsg};
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::LazyConfigAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::config::Limits;
use crate::hub::{Closed, Outbox, SendError};
use crate::limit::RateLimiter;
use crate::tls::Flavor;
use crate::transport::framed::Framed;
use crate::transport::{ReadError, Transport};
use answers::{pump, settle_front, Answer, MAX_OWED};
pub(crate) use context::Context;
use context::Exit;
use dispatch::{dispatch, Waits};
use login::{login, LoginFailed};
use refusal::Refusal;

/// Most bytes collected into one write: one TLS record's worth. Enough to amortise the write and
/// flush over hundreds of chat lines, small enough that 10,000 busy sessions do not hold
/// gigabytes between them (measured: 256 KiB batches peaked at 333 KiB RSS per idle connection
/// during a join storm).
const MAX_BATCH: usize = 16 * 1024;

/// Longest wait, after close_notify, for the client to close its side (its unread input is
/// discarded meanwhile, so that closing never turns into a reset).
const LINGER: Duration = Duration::from_secs(2);

/// How long, after `Shutdown`, the server still answers what the client sends (messages that
/// crossed the notice on the wire), unless the client closes first.
const LINGER_AFTER_SHUTDOWN: Duration = Duration::from_secs(1);

/// The server's two TLS configurations, chosen per connection from its ClientHello (see
/// [`crate::tls::flavor`]).
#[derive(Debug, Clone)]
pub(crate) struct TlsConfigs {
    /// The native protocol's: a client certificate requested, ALPN `mm/1`.
    pub native: Arc<ServerConfig>,
    /// HTTPS for browsers: no client certificate request, ALPN `http/1.1`.
    pub web: Arc<ServerConfig>,
}

/// Serves one accepted TCP connection until it ends: reads its ClientHello, completes the TLS
/// handshake with the configuration its ALPN asks for (both within the handshake timeout), then
/// runs a native session or the web server's requests on it.
pub(crate) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    configs: TlsConfigs,
    ctx: Arc<Context>,
    cancel: CancellationToken,
) {
    let _ = tcp.set_nodelay(true); // chat lines are small and latency-sensitive
    let handshake = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        let flavor = crate::tls::flavor(start.client_hello().alpn());
        let config = match flavor {
            Flavor::Native => Arc::clone(&configs.native),
            Flavor::Web => Arc::clone(&configs.web),
        };
        Ok::<_, std::io::Error>((flavor, start.into_stream(config).await?))
    };
    let accept = timeout(ctx.limits.handshake_timeout, handshake);
    let (flavor, tls) = tokio::select! {
        r = accept => match r {
            Ok(Ok(done)) => done,
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
    if tls.get_ref().1.alpn_protocol() == Some(crate::acme::ACME_TLS_ALPN) {
        // The ACME server's TLS-ALPN-01 validation: it checked the challenge certificate in
        // the handshake, and nothing more is said on this connection (RFC 8737 section 3).
        info!(%peer, "answered an ACME validation (TLS-ALPN-01)");
        let mut tls = tls;
        let _ = timeout(
            Duration::from_secs(1),
            tokio::io::AsyncWriteExt::shutdown(&mut tls),
        )
        .await;
        return;
    }
    if flavor == Flavor::Web {
        // Boxed twice over: this future stays a native session's size, and the TLS connection
        // is not kept twice in the web one's (see `web::serve`).
        Box::pin(crate::web::serve(Box::new(tls), peer, &ctx, &cancel)).await;
        return;
    }
    // Owned here and lent to `run`: an async fn keeps its arguments and the locals it moves
    // them into side by side (rust-lang/rust#62958), which for a 1.3 KB connection taken by
    // value cost every session's future another copy of it.
    let _open = ctx.metrics.connection(crate::metrics::Transport::Tls);
    let mut conn = Framed::tls(tls);
    run(&mut conn, peer, &ctx, &cancel).await;
}

/// Runs a session on an established connection: hello, chat, and the goodbye. The account is
/// the fingerprint of the client's certificate ([`Transport::peer_fingerprint`]).
pub(crate) async fn run<T: Transport>(
    conn: &mut T,
    peer: SocketAddr,
    ctx: &Context,
    cancel: &CancellationToken,
) {
    let fingerprint = conn.peer_fingerprint();
    // The login, the goodbyes and the linger run once per connection: boxed, their futures
    // live on the heap only while they run, and the session's own future (the task, for as long
    // as the connection lives) is only as large as the chat loop needs.
    let mut outbox = match Box::pin(login(conn, peer, fingerprint, ctx, cancel)).await {
        Ok(m) => m,
        Err(LoginFailed::Tell(refusal)) => {
            ctx.metrics.login(crate::metrics::LoginOutcome::Refused);
            debug!(%peer, code = %refusal.code(), "login refused");
            conn.queue_msg(&refusal.fatal());
            Box::pin(close(conn, &ctx.limits)).await;
            return;
        }
        Err(LoginFailed::Shutdown) => {
            conn.queue_msg(&ServerMsg::Shutdown {
                reason: "server is shutting down".into(),
            });
            Box::pin(close(conn, &ctx.limits)).await;
            return;
        }
        Err(LoginFailed::Silent) => return,
    };
    let nick = outbox.nick.clone();
    let conn_id = outbox.conn_id;
    info!(%peer, conn = conn_id, %nick, "logged in");

    let exit = chat(conn, &mut outbox, ctx, cancel).await;
    ctx.metrics.queue_drops.inc_by(outbox.refused());
    if matches!(exit, Exit::TooSlow | Exit::WriteStalled) {
        ctx.metrics.slow_consumer_disconnects.inc();
    }
    let reason = match &exit {
        Exit::Quit => LeaveReason::Quit,
        Exit::Disconnected | Exit::Shutdown(_) | Exit::Replaced => LeaveReason::Disconnected,
        Exit::TooSlow | Exit::WriteStalled => LeaveReason::TooSlow,
        // Silent, or dropped because the store stopped answering: not the client's fault.
        Exit::Fatal(refusal) if matches!(refusal.code(), ErrorCode::TIMEOUT | ErrorCode::BUSY) => {
            LeaveReason::Disconnected
        }
        Exit::Fatal(..) => LeaveReason::ProtocolError,
    };
    if let Exit::Shutdown(deadline) = exit {
        // Still logged in while it lingers: an acknowledgement that crossed the notice (mm
        // sends one as it quits) must still delete what it covers. Then it leaves, and the
        // close stays inside the shutdown grace.
        let linger_until = deadline.min(Instant::now() + LINGER_AFTER_SHUTDOWN);
        Box::pin(linger_after_shutdown(
            conn,
            ctx,
            conn_id,
            &nick,
            linger_until,
        ))
        .await;
        ctx.hub.leave(conn_id, &nick, reason);
        if let Some(node) = &ctx.cluster {
            node.release(&ctx.hub, mm_common::protocol::nick_key(&nick));
        }
        info!(%peer, conn = conn_id, %nick, reason = reason.as_str(), "left");
        let grace_end = deadline + ctx.limits.shutdown_grace.mul_f64(0.15);
        let _ = Box::pin(timeout_at(grace_end, close(conn, &ctx.limits))).await;
        return;
    }
    ctx.hub.leave(conn_id, &nick, reason);
    if let Some(node) = &ctx.cluster {
        node.release(&ctx.hub, mm_common::protocol::nick_key(&nick));
    }
    info!(%peer, conn = conn_id, %nick, reason = reason.as_str(), "left");

    match exit {
        Exit::Quit => Box::pin(close(conn, &ctx.limits)).await,
        Exit::Shutdown(_) => {} // handled above
        Exit::TooSlow => {
            // It is not reading what it has; one last short message has the best chance.
            conn.discard_pending();
            conn.queue_msg(&Refusal::TooSlow.fatal());
            Box::pin(close(conn, &ctx.limits)).await;
        }
        Exit::Fatal(refusal) => {
            conn.queue_msg(&refusal.fatal());
            Box::pin(close(conn, &ctx.limits)).await;
        }
        Exit::Replaced => {
            conn.queue_msg(&Refusal::Replaced.fatal());
            Box::pin(close(conn, &ctx.limits)).await;
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
                conn.queue_msg(&Refusal::Send(SendError::Closed).answer());
            }
            Ok(ClientMsg::PublishKeys { .. } | ClientMsg::FetchBundle { .. }) => {
                conn.queue_msg(&Refusal::Send(SendError::Closed).answer());
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

/// The logged-in loop.
async fn chat<T: Transport>(
    conn: &mut T,
    outbox: &mut Outbox,
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
    // Joins waiting for their room's history from the store, and room commands waiting for
    // the cluster's stream, oldest first.
    let mut loads: VecDeque<rooms::RoomWait> = VecDeque::new();
    // Key directory commands waiting for the store, oldest first.
    let mut key_waits: VecDeque<keys::KeyWait> = VecDeque::new();
    // Set once the server stops: by then every accepted line must be out and answered.
    let mut stopping: Option<Instant> = None;
    // Set when the client quit with commands still waiting for their answers (a room command
    // the cluster's stream orders, a room's history): it gets them, then the session ends.
    let mut quitting = false;

    loop {
        pump(conn, &mut answers, limits);
        if quitting && loads.is_empty() && answers.is_empty() && key_waits.is_empty() {
            if let Err(exit) = drain(conn, outbox, usize::MAX, ctx) {
                return exit;
            }
            return Exit::Quit;
        }
        if let Some(deadline) = stopping {
            // The hub is closed: nothing new enters the queue, so this empties it.
            if let Err(exit) = drain(conn, outbox, usize::MAX, ctx) {
                return exit;
            }
            if (answers.is_empty() && key_waits.is_empty()) || Instant::now() >= deadline {
                let reason = if ctx.hub.is_fenced() {
                    "this server lost its place in the cluster; reconnect (to another server)"
                } else {
                    "server is shutting down"
                };
                conn.queue_msg(&ServerMsg::Shutdown {
                    reason: reason.into(),
                });
                return Exit::Shutdown(deadline);
            }
        }
        // Flush first: the welcome, and whatever the last turn collected.
        if conn.pending() > 0 {
            ctx.metrics.bytes_sent.inc_by(conn.pending() as u64);
            match timeout(limits.write_timeout, conn.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Exit::Disconnected,
                Err(_) => return Exit::WriteStalled,
            }
            if outbox.is_empty() {
                // Going idle: do not keep burst-sized buffers.
                conn.shrink_idle();
                outbox.shrink_idle();
            }
        }
        let owes_store = answers.front().is_some_and(|a| a.deadline().is_some());
        tokio::select! {
            () = cancel.cancelled(), if stopping.is_none() => {
                // Keep serving a little longer: deliver what was accepted, answer what is owed
                // and refuse what still comes (the hub is closed) — then say goodbye.
                // A node that lost its cluster lease ends its sessions at once (CLUSTER.md).
                let grace = if ctx.hub.is_fenced() {
                    Duration::ZERO
                } else {
                    limits.shutdown_grace.mul_f64(0.8)
                };
                stopping = Some(Instant::now() + grace);
            }
            settled = settle_front(&mut answers, limits), if owes_store => match settled {
                Ok(msg) => conn.queue_msg(&msg),
                Err(exit) => return exit,
            },
            queued = outbox.recv() => match queued {
                Ok(msg) => {
                    ctx.metrics.deliveries.inc();
                    conn.queue(msg);
                }
                Err(closed) => return closed_exit(closed),
            },
            done = keys::next_done(&mut key_waits), if !key_waits.is_empty() => {
                keys::complete(conn, outbox, ctx, done);
            }
            done = rooms::next_waited(&mut loads), if !loads.is_empty() => {
                rooms::waited(conn, outbox, ctx, &mut loads, done);
            }
            read = conn.recv(), if !quitting && answers.len() < MAX_OWED && loads.len() < MAX_LOADING && key_waits.len() < keys::MAX_KEY_WAITS => {
                last_heard = Instant::now();
                match read {
                    Ok(Some(payload)) => {
                        // The payload and its 4-byte length (a WebSocket frame's header
                        // differs a little; counted the same way).
                        ctx.metrics.bytes_received.inc_by(payload.len() as u64 + 4);
                        match dispatch(conn, outbox, ctx, &mut limiter, Waits { answers: &mut answers, loads: &mut loads, keys: &mut key_waits }, &payload) {
                            Some(Exit::Quit) if !(loads.is_empty() && answers.is_empty() && key_waits.is_empty()) => quitting = true,
                            Some(exit) => return exit,
                            None => {}
                        }
                    }
                    Ok(None) | Err(ReadError::Io(_)) => return Exit::Disconnected,
                    // Not messages (a bad frame, or cut in the middle of one).
                    Err(e) => return Exit::Fatal(Refusal::BadFrame(e.to_string())),
                }
            }
            _ = ping.tick() => {
                let silent = last_heard.elapsed();
                if silent >= limits.idle_timeout {
                    return Exit::Fatal(Refusal::Idle { secs: silent.as_secs() });
                }
                if silent >= limits.ping_interval {
                    ping_token = ping_token.wrapping_add(1);
                    conn.queue_msg(&ServerMsg::Ping { token: ping_token });
                }
            }
            () = tokio::time::sleep_until(stopping.unwrap_or_else(Instant::now)), if stopping.is_some() => {}
        }
        // Collect whatever else is ready so that it leaves in the same write.
        if let Err(exit) = drain(conn, outbox, MAX_BATCH, ctx) {
            return exit;
        }
    }
}

/// Joins whose room history is being read that one session may have; it stops reading its
/// client's messages at this many until the store answers.
const MAX_LOADING: usize = 8;

/// Moves ready messages from the outbox onto the transport without waiting, until it holds
/// `budget` bytes.
fn drain<T: Transport>(
    conn: &mut T,
    outbox: &mut Outbox,
    budget: usize,
    ctx: &Context,
) -> Result<(), Exit> {
    while conn.pending() < budget {
        match outbox.try_recv() {
            Ok(Some(msg)) => {
                ctx.metrics.deliveries.inc();
                conn.queue(msg);
            }
            Ok(None) => break,
            Err(closed) => return Err(closed_exit(closed)),
        }
    }
    Ok(())
}

/// How the session ends when the hub closed its outbox.
fn closed_exit(closed: Closed) -> Exit {
    match closed {
        Closed::Replaced => Exit::Replaced,
        Closed::TooSlow => Exit::TooSlow,
    }
}

#[cfg(test)]
mod tests;
