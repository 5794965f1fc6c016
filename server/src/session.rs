//! One client connection from TCP accept to close: TLS handshake, hello, then a single task that
//! `select!`s over the socket, the user's queue, the ping timer and shutdown. Whatever became
//! ready is collected into the connection's write buffer and sent with one write and one flush,
//! under a timeout: a client that stops reading is dropped, never waited for.
//!
//! Everything after the TLS handshake is generic over the byte stream, so the rules (rate
//! limits, timeouts) are tested on in-memory streams with tokio's paused clock.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mm_common::protocol::{
    self, validate_nick, validate_text, ClientMsg, ErrorCode, LeaveReason, ServerMsg,
    PROTOCOL_VERSION, USERS_PER_FRAME,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Limits;
use crate::connection::{Connection, ReadError};
use crate::hub::{now_ms, Hub, JoinError, Membership, PrivateOutcome, SendError};
use crate::limit::{RateLimiter, Verdict};
use crate::store::{LoginOutcome, QueueOutcome, Reply, StoreError};

/// A byte stream a session can run on (TLS in production, in-memory in tests).
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Stream for T {}

/// Most bytes collected into one write: one TLS record's worth. Enough to amortise the write and
/// flush over hundreds of chat lines, small enough that 10,000 busy sessions do not hold
/// gigabytes between them (measured: 256 KiB batches peaked at 333 KiB RSS per idle connection
/// during a join storm).
const MAX_BATCH: usize = 16 * 1024;

/// Plaintext rustls may hold for a connection that is slow to take it; beyond this, writes wait
/// (and the write timeout applies) instead of buffering more.
const TLS_BUFFER_LIMIT: usize = 32 * 1024;

/// Longest wait for the store's answer (a login, a stored private line). It answers after a
/// commit, normally within milliseconds; this only bounds a stuck disk.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every session needs.
pub(crate) struct Context {
    pub hub: Hub,
    pub limits: Limits,
    pub server_name: String,
}

/// Why a logged-in session ended.
#[derive(Debug)]
enum Exit {
    /// The client sent `Quit`.
    Quit,
    /// The client closed the connection or it failed.
    Disconnected,
    /// The server is shutting down.
    Shutdown,
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
                debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        () = cancel.cancelled() => return,
    };
    let mut tls = tls;
    tls.get_mut().1.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
    // TLS proved the client holds the key of this certificate (if it sent one); the account is
    // the certificate's fingerprint.
    let fingerprint = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| mm_certs::fingerprint(cert));
    run(Connection::new(tls), peer, fingerprint, &ctx, &cancel).await;
}

/// Runs a session on an established stream: hello, chat, and the goodbye.
pub(crate) async fn run<S: Stream>(
    mut conn: Connection<S>,
    peer: SocketAddr,
    fingerprint: Option<String>,
    ctx: &Context,
    cancel: &CancellationToken,
) {
    let (membership, delivered) = match login(&mut conn, fingerprint, ctx, cancel).await {
        Ok(m) => m,
        Err(LoginFailed::Tell(code, detail)) => {
            debug!(%peer, code = %code, "login refused");
            conn.queue(&ServerMsg::Error {
                code,
                fatal: true,
                detail,
            });
            close(&mut conn, &ctx.limits).await;
            return;
        }
        Err(LoginFailed::Shutdown) => {
            conn.queue(&ServerMsg::Shutdown {
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

    let exit = chat(&mut conn, membership, delivered, ctx, cancel).await;
    let reason = match &exit {
        Exit::Quit => LeaveReason::Quit,
        Exit::Disconnected | Exit::Shutdown | Exit::Replaced => LeaveReason::Disconnected,
        Exit::TooSlow | Exit::WriteStalled => LeaveReason::TooSlow,
        Exit::Fatal(code, _) if *code == ErrorCode::TIMEOUT => LeaveReason::Disconnected,
        Exit::Fatal(..) => LeaveReason::ProtocolError,
    };
    ctx.hub.leave(conn_id, &nick, reason);
    info!(%peer, conn = conn_id, %nick, reason = reason.as_str(), "left");

    match exit {
        Exit::Quit | Exit::Shutdown => close(&mut conn, &ctx.limits).await,
        Exit::TooSlow => {
            // It is not reading what it has; one last short frame has the best chance.
            conn.discard_pending();
            conn.queue(&ServerMsg::Error {
                code: ErrorCode::TOO_SLOW,
                fatal: true,
                detail: "you did not read messages fast enough".into(),
            });
            close(&mut conn, &ctx.limits).await;
        }
        Exit::Fatal(code, detail) => {
            conn.queue(&ServerMsg::Error {
                code,
                fatal: true,
                detail,
            });
            close(&mut conn, &ctx.limits).await;
        }
        Exit::Replaced => {
            conn.queue(&ServerMsg::Error {
                code: ErrorCode::REPLACED,
                fatal: true,
                detail: "you logged in again from another connection".into(),
            });
            close(&mut conn, &ctx.limits).await;
        }
        Exit::Disconnected | Exit::WriteStalled => {}
    }
}

/// Flushes what is queued and sends close_notify, each bounded by the write timeout.
async fn close<S: Stream>(conn: &mut Connection<S>, limits: &Limits) {
    if timeout(limits.write_timeout, conn.flush()).await.is_ok() {
        let _ = timeout(limits.write_timeout, conn.shutdown()).await;
    }
}

enum LoginFailed {
    /// Send this fatal error, then close.
    Tell(ErrorCode, String),
    /// The server is shutting down.
    Shutdown,
    /// The peer is gone or sent no frame at all; nothing to say.
    Silent,
}

/// Waits for `Hello`, checks it and the account, joins the hub and queues `Welcome`, the user
/// list, the room's history and the private lines stored while the user was offline. Returns
/// the membership and the id up to which stored lines were queued (to delete once written).
async fn login<S: Stream>(
    conn: &mut Connection<S>,
    fingerprint: Option<String>,
    ctx: &Context,
    cancel: &CancellationToken,
) -> Result<(Membership, Option<u64>), LoginFailed> {
    let read = timeout(ctx.limits.hello_timeout, conn.read_frame());
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
    match store_answer(ctx.hub.store().login(&nick, &fingerprint, now_ms())).await {
        Ok(LoginOutcome::Registered) => info!(%nick, %fingerprint, "nick registered"),
        Ok(LoginOutcome::Known) => {}
        Ok(LoginOutcome::Full) => {
            return Err(LoginFailed::Tell(
                ErrorCode::ACCOUNTS_FULL,
                format!("nick {nick} is not registered and this server takes no new accounts (it holds its maximum); ask its operator"),
            ))
        }
        Ok(LoginOutcome::Taken) => {
            return Err(LoginFailed::Tell(
                ErrorCode::NICK_REGISTERED,
                format!("nick {nick} is registered to another key (client certificate)"),
            ))
        }
        Err(e) => {
            warn!(error = %e, "login not checked: store failed");
            return Err(LoginFailed::Tell(
                ErrorCode::BUSY,
                "the server cannot check accounts right now; try again".into(),
            ));
        }
    }
    let mut membership = match ctx.hub.join(ctx.hub.next_conn_id(), &nick, &fingerprint) {
        Ok(m) => m,
        Err(JoinError::NickInUse(n)) => {
            return Err(LoginFailed::Tell(
                ErrorCode::NICK_IN_USE,
                format!("{n} is already online"),
            ))
        }
        Err(JoinError::Closed) => return Err(LoginFailed::Shutdown),
    };
    let online = u32::try_from(membership.online.len()).unwrap_or(u32::MAX);
    conn.queue(&ServerMsg::Welcome {
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
    for frame in std::mem::take(&mut membership.history) {
        conn.queue_frame(&frame);
    }
    let mut delivered = None;
    if let Some(waiting) = membership.waiting.take() {
        match store_answer(Ok(waiting)).await {
            Ok(lines) => {
                for line in lines {
                    delivered = Some(line.id);
                    conn.queue(&ServerMsg::Offline {
                        id: line.id,
                        ts: line.ts,
                        from: line.from,
                        text: line.text,
                    });
                }
            }
            // They stay stored for the next login.
            Err(e) => warn!(error = %e, "stored private lines not fetched"),
        }
    }
    Ok((membership, delivered))
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
fn queue_users<S: Stream>(conn: &mut Connection<S>, nicks: &[String]) {
    let mut chunks = nicks.chunks(USERS_PER_FRAME).peekable();
    if chunks.peek().is_none() {
        conn.queue(&ServerMsg::Users {
            nicks: Vec::new(),
            last: true,
        });
    }
    while let Some(chunk) = chunks.next() {
        conn.queue(&ServerMsg::Users {
            nicks: chunk.to_vec(),
            last: chunks.peek().is_none(),
        });
    }
}

/// The logged-in loop.
async fn chat<S: Stream>(
    conn: &mut Connection<S>,
    mut m: Membership,
    mut delivered: Option<u64>,
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

    loop {
        // Flush first: the welcome, and whatever the last turn collected.
        if conn.pending() > 0 {
            match timeout(limits.write_timeout, conn.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Exit::Disconnected,
                Err(_) => return Exit::WriteStalled,
            }
            // The lines stored while the user was offline are written: delete them (a crash
            // before this point delivers them again rather than never).
            if let Some(up_to) = delivered.take() {
                if let Err(e) = ctx
                    .hub
                    .store()
                    .delivered(&protocol::nick_key(&m.nick), up_to)
                {
                    warn!(error = %e, "delivered lines not deleted; they will be sent again");
                }
            }
            if m.queue.is_empty() {
                conn.shrink_idle(); // going idle: do not keep a burst-sized buffer
            }
        }
        tokio::select! {
            () = cancel.cancelled() => {
                return match drain(conn, &mut m, usize::MAX) {
                    Ok(()) => {
                        conn.queue(&ServerMsg::Shutdown { reason: "server is shutting down".into() });
                        Exit::Shutdown
                    }
                    Err(exit) => exit,
                };
            }
            frame = m.queue.recv() => match frame {
                Some(frame) => {
                    m.queued_bytes.fetch_sub(frame.len(), Ordering::Relaxed);
                    conn.queue_frame(&frame);
                }
                None => return closed_queue(&m),
            },
            read = conn.read_frame() => {
                last_heard = Instant::now();
                match read {
                    Ok(Some(payload)) => {
                        if let Some(exit) = handle(conn, &m, ctx, &mut limiter, &payload).await {
                            return exit;
                        }
                    }
                    Ok(None) | Err(ReadError::Io(_)) => return Exit::Disconnected,
                    Err(e @ (ReadError::Frame(_) | ReadError::Truncated)) => {
                        return Exit::Fatal(ErrorCode::BAD_FRAME, e.to_string())
                    }
                }
            }
            _ = ping.tick() => {
                let silent = last_heard.elapsed();
                if silent >= limits.idle_timeout {
                    return Exit::Fatal(ErrorCode::TIMEOUT, format!("no answer for {} s", silent.as_secs()));
                }
                if silent >= limits.ping_interval {
                    ping_token = ping_token.wrapping_add(1);
                    conn.queue(&ServerMsg::Ping { token: ping_token });
                }
            }
        }
        // Collect whatever else is ready so that it leaves in the same write.
        if let Err(exit) = drain(conn, &mut m, MAX_BATCH) {
            return exit;
        }
    }
}

/// Moves ready frames from the user's queue into the write buffer without waiting, until the
/// buffer holds `budget` bytes.
fn drain<S: Stream>(
    conn: &mut Connection<S>,
    m: &mut Membership,
    budget: usize,
) -> Result<(), Exit> {
    while conn.pending() < budget {
        match m.queue.try_recv() {
            Ok(frame) => {
                m.queued_bytes.fetch_sub(frame.len(), Ordering::Relaxed);
                conn.queue_frame(&frame);
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

/// Handles one frame from a logged-in client; `Some` ends the session.
async fn handle<S: Stream>(
    conn: &mut Connection<S>,
    m: &Membership,
    ctx: &Context,
    limiter: &mut RateLimiter,
    payload: &[u8],
) -> Option<Exit> {
    let msg = match ClientMsg::decode(payload) {
        Ok(msg) => msg,
        Err(e) => return Some(Exit::Fatal(ErrorCode::BAD_FRAME, e.to_string())),
    };
    if !matches!(
        msg,
        ClientMsg::Pong { .. } | ClientMsg::Quit | ClientMsg::Received { .. }
    ) {
        match limiter.check(Instant::now().into_std()) {
            Verdict::Allow => {}
            Verdict::Refuse => {
                // Messages that expect an answer get one; a refused Who or Ping is dropped,
                // so that a client counting answers never sees one it did not expect.
                if matches!(
                    msg,
                    ClientMsg::Public { .. } | ClientMsg::Private { .. } | ClientMsg::Relay { .. }
                ) {
                    answer(
                        conn,
                        Err((
                            ErrorCode::RATE_LIMITED,
                            "too many messages; slow down".into(),
                        )),
                    );
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
    match msg {
        ClientMsg::Public { text } => {
            let result = check_text(&text, ctx).and_then(|()| {
                ctx.hub
                    .publish(m.conn_id, &m.nick, text)
                    .map_err(send_error)
            });
            answer(conn, result);
        }
        ClientMsg::Private { to, text } => {
            let result = check_recipient(&to)
                .and_then(|()| check_text(&text, ctx))
                .and_then(|()| ctx.hub.send_private(&m.nick, &to, text).map_err(send_error));
            match result {
                Ok(PrivateOutcome::Delivered(accepted)) => answer(conn, Ok(accepted)),
                Ok(PrivateOutcome::Stored(accepted, reply)) => {
                    let result = match store_answer(Ok(reply)).await {
                        Ok(QueueOutcome::Queued) => {
                            conn.queue(&ServerMsg::Queued {
                                id: accepted.id,
                                ts: accepted.ts,
                            });
                            return None;
                        }
                        Ok(QueueOutcome::MailboxFull) => Err((
                            ErrorCode::MAILBOX_FULL,
                            format!(
                                "{} is offline and has {} messages waiting, the most the server keeps",
                                protocol_safe(&to),
                                ctx.limits.mailbox_len
                            ),
                        )),
                        Ok(QueueOutcome::StoreFull) => Err((
                            ErrorCode::MAILBOX_FULL,
                            format!(
                                "{} is offline and the server keeps no more messages for offline users right now ({} waiting in all)",
                                protocol_safe(&to),
                                ctx.limits.mailbox_total
                            ),
                        )),
                        Ok(QueueOutcome::NoSuchAccount) => Err((
                            ErrorCode::NO_SUCH_NICK,
                            format!("{} is not online and not a registered user", protocol_safe(&to)),
                        )),
                        Err(e) => {
                            warn!(error = %e, "private line not stored");
                            Err((ErrorCode::BUSY, "the server could not store the message; try again".into()))
                        }
                    };
                    answer(conn, result);
                }
                Err(e) => answer(conn, Err(e)),
            }
        }
        ClientMsg::Relay { to, payload } => {
            let result = check_recipient(&to)
                .and_then(|()| check_payload(&payload))
                .and_then(|()| ctx.hub.relay(&m.nick, &to, payload).map_err(send_error));
            answer(conn, result);
        }
        ClientMsg::Who => queue_users(conn, &ctx.hub.online()),
        ClientMsg::Ping { token } => conn.queue(&ServerMsg::Pong { token }),
        ClientMsg::Pong { .. } => {}
        ClientMsg::Received { .. } => {}
        ClientMsg::Quit => return Some(Exit::Quit),
        ClientMsg::Hello { .. } => {
            return Some(Exit::Fatal(
                ErrorCode::UNEXPECTED_MESSAGE,
                "already logged in".into(),
            ))
        }
    }
    None
}

/// A recipient that is not even a valid nick cannot be online.
fn check_recipient(to: &str) -> Result<(), (ErrorCode, String)> {
    validate_nick(to).map_err(|_| {
        (
            ErrorCode::NO_SUCH_NICK,
            format!("{} is not a valid nick", protocol_safe(to)),
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

/// Answers a Public/Private/Relay with `Sent` or a non-fatal `Error`.
fn answer<S: Stream>(
    conn: &mut Connection<S>,
    result: Result<crate::hub::Accepted, (ErrorCode, String)>,
) {
    match result {
        Ok(accepted) => conn.queue(&ServerMsg::Sent {
            id: accepted.id,
            ts: accepted.ts,
        }),
        Err((code, detail)) => {
            if code == ErrorCode::INTERNAL {
                warn!(%detail, "message refused by an internal error");
            }
            conn.queue(&ServerMsg::Error {
                code,
                fatal: false,
                detail,
            });
        }
    }
}

/// A recipient name echoed in an error: cut to the nick limit and stripped of control characters,
/// so that error details stay short and printable whatever the client sent.
fn protocol_safe(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(protocol::MAX_NICK_LEN)
        .collect()
}

#[cfg(test)]
mod tests {
    //! Session rules on in-memory streams with tokio's paused clock: timeouts and rate limits
    //! are checked to the second without waiting for them.

    use std::time::Duration;

    use bytes::BytesMut;
    use mm_common::frame;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::task::JoinHandle;

    use super::*;

    struct Client {
        io: DuplexStream,
        buf: BytesMut,
    }

    impl Client {
        async fn send(&mut self, msg: &ClientMsg) {
            self.io
                .write_all(&frame::encode(msg).unwrap())
                .await
                .unwrap();
        }

        /// The next message, or `None` once the server closed.
        async fn recv(&mut self) -> Option<ServerMsg> {
            loop {
                match frame::split_frame(&mut self.buf) {
                    Ok(payload) => return Some(ServerMsg::decode(&payload).unwrap()),
                    Err(frame::FrameError::Incomplete { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                match self.io.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        }

        async fn login(&mut self, nick: &str) {
            self.send(&ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                nick: nick.into(),
            })
            .await;
            assert!(matches!(self.recv().await, Some(ServerMsg::Welcome { .. })));
            assert!(matches!(
                self.recv().await,
                Some(ServerMsg::Users { last: true, .. })
            ));
        }
    }

    /// A session on an in-memory stream whose buffer holds `buffer` bytes each way.
    fn start(limits: Limits, buffer: usize) -> (Client, Hub, JoinHandle<()>) {
        let hub = Hub::in_memory(&limits);
        let ctx = Arc::new(Context {
            hub: hub.clone(),
            limits,
            server_name: "test".into(),
        });
        let (client, server) = tokio::io::duplex(buffer);
        let task = tokio::spawn(async move {
            let peer = SocketAddr::from(([127, 0, 0, 1], 1));
            run(
                Connection::new(server),
                peer,
                Some("fingerprint".into()),
                &ctx,
                &CancellationToken::new(),
            )
            .await;
        });
        (
            Client {
                io: client,
                buf: BytesMut::new(),
            },
            hub,
            task,
        )
    }

    fn public(text: &str) -> ClientMsg {
        ClientMsg::Public { text: text.into() }
    }

    #[tokio::test(start_paused = true)]
    async fn over_the_rate_messages_are_refused_then_allowed_again() {
        let limits = Limits {
            rate_burst: 5,
            rate_per_sec: 2,
            flood_strikes: 100,
            ..Limits::default()
        };
        let (mut c, _hub, _task) = start(limits, 1 << 20);
        c.login("alice").await;
        for _ in 0..8 {
            c.send(&public("x")).await;
        }
        let mut answers = Vec::new();
        for _ in 0..8 {
            answers.push(match c.recv().await.unwrap() {
                ServerMsg::Sent { .. } => "sent",
                ServerMsg::Error {
                    code: ErrorCode::RATE_LIMITED,
                    fatal: false,
                    ..
                } => "limited",
                other => panic!("{other:?}"),
            });
        }
        assert_eq!(
            answers,
            ["sent"; 5]
                .iter()
                .chain(["limited"; 3].iter())
                .copied()
                .collect::<Vec<_>>()
        );
        // One second later two more tokens (2 per second).
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..3 {
            c.send(&public("y")).await;
        }
        assert!(matches!(c.recv().await, Some(ServerMsg::Sent { .. })));
        assert!(matches!(c.recv().await, Some(ServerMsg::Sent { .. })));
        assert!(matches!(
            c.recv().await,
            Some(ServerMsg::Error {
                code: ErrorCode::RATE_LIMITED,
                ..
            })
        ));
        // A refused Who is dropped without an answer; the next answer is for the next message.
        c.send(&ClientMsg::Who).await;
        tokio::time::sleep(Duration::from_millis(1)).await; // let the session see it now
        tokio::time::advance(Duration::from_secs(1)).await;
        c.send(&public("z")).await;
        assert!(matches!(c.recv().await, Some(ServerMsg::Sent { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sustained_flooder_is_disconnected() {
        let limits = Limits {
            rate_burst: 5,
            rate_per_sec: 1,
            flood_strikes: 10,
            ..Limits::default()
        };
        let (mut c, hub, task) = start(limits, 1 << 20);
        c.login("flood").await;
        for _ in 0..100 {
            c.send(&public("spam")).await;
        }
        let mut seen = Vec::new();
        while let Some(msg) = c.recv().await {
            seen.push(msg);
        }
        let sent = seen
            .iter()
            .filter(|m| matches!(m, ServerMsg::Sent { .. }))
            .count();
        let limited = seen
            .iter()
            .filter(|m| {
                matches!(
                    m,
                    ServerMsg::Error {
                        code: ErrorCode::RATE_LIMITED,
                        fatal: false,
                        ..
                    }
                )
            })
            .count();
        assert_eq!((sent, limited), (5, 10), "{seen:?}");
        assert!(matches!(
            seen.last(),
            Some(ServerMsg::Error {
                code: ErrorCode::RATE_LIMITED,
                fatal: true,
                ..
            })
        ));
        task.await.unwrap();
        assert!(hub.online().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_pinged_then_dropped_on_time() {
        let (mut c, hub, task) = start(Limits::default(), 1 << 20); // ping 30 s, idle 90 s
        c.login("mute").await;
        let t0 = Instant::now();
        let mut pings = Vec::new();
        let last = loop {
            match c.recv().await.unwrap() {
                ServerMsg::Ping { .. } => pings.push(t0.elapsed().as_secs()),
                other => break other,
            }
        };
        assert_eq!(pings, vec![30, 60]);
        assert!(
            matches!(
                last,
                ServerMsg::Error {
                    code: ErrorCode::TIMEOUT,
                    fatal: true,
                    ..
                }
            ),
            "{last:?}"
        );
        assert_eq!(t0.elapsed().as_secs(), 90);
        assert!(c.recv().await.is_none());
        task.await.unwrap();
        assert!(hub.online().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn answering_pings_keeps_a_client_connected_for_hours() {
        let (mut c, hub, _task) = start(Limits::default(), 1 << 20);
        c.login("alive").await;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3 * 3600) {
            match c.recv().await.unwrap() {
                ServerMsg::Ping { token } => c.send(&ClientMsg::Pong { token }).await,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(hub.online(), vec!["alive".to_string()]);
        c.send(&public("still here")).await;
        assert!(matches!(c.recv().await, Some(ServerMsg::Sent { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn no_hello_times_out_on_time() {
        let (mut c, _hub, task) = start(Limits::default(), 1 << 20); // hello_timeout 10 s
        let t0 = Instant::now();
        let msg = c.recv().await;
        assert!(
            matches!(
                msg,
                Some(ServerMsg::Error {
                    code: ErrorCode::TIMEOUT,
                    fatal: true,
                    ..
                })
            ),
            "{msg:?}"
        );
        assert_eq!(t0.elapsed().as_secs(), 10);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
        let limits = Limits::default(); // write_timeout 10 s
        let (mut c, hub, task) = start(limits, 4096); // small buffer: writes block quickly
        c.login("sloth").await;
        let other = hub.join(hub.next_conn_id(), "talker", "fp").unwrap();
        // The talker's lines fill sloth's stream; sloth reads nothing.
        for i in 0..20 {
            hub.publish(
                other.conn_id,
                "talker",
                format!("line {i} {}", "x".repeat(1000)),
            )
            .unwrap();
        }
        let t0 = Instant::now();
        task.await.unwrap();
        assert_eq!(
            t0.elapsed().as_secs(),
            10,
            "dropped when the write timeout ran out"
        );
        assert_eq!(hub.online(), vec!["talker".to_string()]);
    }
}
