//! HTTPS for browsers on the native port (PROTOCOL.md, "The web: HTTPS and WebSocket on the
//! same port"): connections whose ClientHello offers ALPN `http/1.1` (see
//! [`crate::tls::flavor`]) get HTTP/1.1 here: the embedded web client ([`assets`]) and, at
//! `/ws`, the WebSocket transport ([`crate::transport::ws`]) on which an ordinary session runs.
//!
//! Bounds: a request head of at most [`http::MAX_HEAD`] bytes, read within the `hello_timeout`
//! (for the whole head, however slowly it trickles in), at most [`MAX_REQUESTS`] requests per
//! connection, no request bodies, and one deadline for the whole connection until it upgrades:
//! [`PRE_UPGRADE_TIMEOUTS`] times the `hello_timeout` (30 s by default) from the TLS handshake's
//! end, after which it is closed without a word, whatever it is doing. Without it, requests
//! trickled in just within each `hello_timeout` held an unauthenticated connection (and its
//! slot under the connection caps) for 100 × 10 s. A page load is a handful of small requests
//! on one or two connections, done in a second or two; a browser whose keep-alive connection
//! was closed opens a new one. After the upgrade the session's own timeouts apply, as on the
//! native transport (the `hello_timeout` again for the login). Web connections were counted
//! against the connection caps by the accept loop like native ones.

pub mod assets;
pub mod http;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::session::Context;
use crate::transport::framed::TlsStream;
use crate::transport::ws::WsTransport;
use http::{Action, HeadError, Response};

/// Most requests served on one connection (keep-alive); the last one's response closes it.
pub const MAX_REQUESTS: usize = 100;

/// How many `hello_timeout`s a web connection may last before it upgrades to a WebSocket (see
/// the module): 3, so 30 s with the default 10 s.
pub const PRE_UPGRADE_TIMEOUTS: u32 = 3;

/// Longest wait, after the last response and close_notify, for the client to close too.
const LINGER: Duration = Duration::from_secs(2);

/// Bytes read at once while reading a head.
const READ_CHUNK: usize = 1024;

/// How reading a head ended without a request.
enum NoHead {
    /// The client closed, failed, was too slow, or the server stops: close without a word.
    Gone,
    /// The head is refused: answer this and close.
    Refused(Response),
}

/// Serves an accepted web TLS connection: HTTP requests until it closes, or, after an upgrade
/// at `/ws`, the WebSocket transport's session. Everything before the upgrade must end within
/// [`PRE_UPGRADE_TIMEOUTS`] × `hello_timeout` (see the module).
///
/// Memory: the TLS connection comes boxed and is moved into the transport at the upgrade, so
/// this future does not keep a second copy of it (1.2 KB) for the session's life, as an owned
/// argument would (rust-lang/rust#62958); the HTTP part and the transport's set-up run boxed,
/// so their state is freed once the session runs. What stays is the transport and the session's
/// future, as for a native connection.
pub(crate) async fn serve(
    tls: Box<TlsStream>,
    peer: SocketAddr,
    ctx: &Context,
    cancel: &CancellationToken,
) {
    let mut tls = tls;
    let Some(part) = Box::pin(upgrade(&mut tls, peer, ctx, cancel)).await else {
        return;
    };
    let _open = ctx.metrics.connection(crate::metrics::Transport::WebSocket);
    let mut conn = Box::pin(WsTransport::tls(*tls, part, ctx.limits.write_timeout)).await;
    crate::session::run(&mut conn, peer, ctx, cancel).await;
}

/// The HTTP part of a web connection under its one deadline: `None` once it is to close, or
/// the bytes read after the upgrade request's head (see [`serve_http`]).
async fn upgrade(
    tls: &mut TlsStream,
    peer: SocketAddr,
    ctx: &Context,
    cancel: &CancellationToken,
) -> Option<Vec<u8>> {
    tls.get_mut()
        .1
        .set_buffer_limit(Some(crate::transport::framed::TLS_BUFFER_LIMIT));
    let overall = Instant::now()
        + ctx
            .limits
            .hello_timeout
            .saturating_mul(PRE_UPGRADE_TIMEOUTS);
    match timeout_at(overall, serve_http(tls, peer, ctx, cancel, overall)).await {
        Ok(Some(part)) => {
            debug!(%peer, "WebSocket opened");
            Some(part)
        }
        Ok(None) => None,
        Err(_) => {
            debug!(%peer, "web connection closed: not upgraded in time");
            None
        }
    }
}

/// The HTTP part of a web connection: serves requests until the connection is to close
/// (`None`), or until it answered an upgrade at `/ws` with `101` (the bytes read after that
/// request's head: the first WebSocket frames, if any). Each head must come within the
/// `hello_timeout` and by `overall`.
async fn serve_http(
    tls: &mut TlsStream,
    peer: SocketAddr,
    ctx: &Context,
    cancel: &CancellationToken,
    overall: Instant,
) -> Option<Vec<u8>> {
    let limits = &ctx.limits;
    let mut buf: Vec<u8> = Vec::new();
    for served in 1..=MAX_REQUESTS {
        let deadline = overall.min(Instant::now() + limits.hello_timeout);
        let read = tokio::select! {
            r = read_head(tls, &mut buf, deadline) => r,
            () = cancel.cancelled() => Err(NoHead::Gone),
        };
        let (req, len) = match read {
            Ok(parsed) => parsed,
            Err(NoHead::Gone) => return None,
            Err(NoHead::Refused(response)) => {
                debug!(%peer, status = response.status, "HTTP request head refused");
                respond_and_close(tls, &response, false, limits.write_timeout).await;
                return None;
            }
        };
        // What follows the head: the next request, or the first WebSocket frames.
        let rest = buf.split_off(len);
        buf = rest;
        match http::route(&req, served == MAX_REQUESTS) {
            Action::Respond(response) => {
                let head_only = req.method == "HEAD";
                debug!(%peer, method = %req.method, path = %req.path, status = response.status, "HTTP");
                if response.close {
                    respond_and_close(tls, &response, head_only, limits.write_timeout).await;
                    return None;
                }
                if !write(tls, &response.render(head_only), limits.write_timeout).await {
                    return None;
                }
            }
            Action::Upgrade { accept } => {
                let answer = http::switching(&accept).render(false);
                if !write(tls, &answer, limits.write_timeout).await {
                    return None;
                }
                buf.shrink_to_fit();
                return Some(buf);
            }
        }
    }
    None
}

/// Reads until `buf` starts with a whole request head, by `deadline`.
async fn read_head(
    tls: &mut TlsStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(http::Request, usize), NoHead> {
    loop {
        match http::parse(buf) {
            Ok(Some(parsed)) => return Ok(parsed),
            Ok(None) => {}
            Err(HeadError::TooLarge) => {
                return Err(NoHead::Refused(Response::text(
                    431,
                    "request head too large\n",
                    true,
                )))
            }
            Err(HeadError::Malformed) => {
                return Err(NoHead::Refused(Response::text(
                    400,
                    "not an HTTP/1.1 request\n",
                    true,
                )))
            }
        }
        let room = http::MAX_HEAD.saturating_sub(buf.len()).min(READ_CHUNK);
        let start = buf.len();
        buf.resize(start + room, 0);
        let read = timeout_at(deadline, tls.read(&mut buf[start..])).await;
        let n = match read {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => 0,
        };
        buf.truncate(start + n);
        if n == 0 {
            return Err(NoHead::Gone);
        }
    }
}

/// Writes and flushes `bytes` within `limit`; false if the client is gone or too slow.
async fn write(tls: &mut TlsStream, bytes: &[u8], limit: Duration) -> bool {
    matches!(
        timeout(limit, async {
            tls.write_all(bytes).await?;
            tls.flush().await
        })
        .await,
        Ok(Ok(()))
    )
}

/// Sends a last response, close_notify, and reads (discarding) until the client closes, for at
/// most [`LINGER`]: closing with unread input would reset the connection and could destroy the
/// response before the client reads it.
async fn respond_and_close(
    tls: &mut TlsStream,
    response: &Response,
    head_only: bool,
    limit: Duration,
) {
    if !write(tls, &response.render(head_only), limit).await {
        return;
    }
    if !matches!(timeout(limit, tls.shutdown()).await, Ok(Ok(()))) {
        return;
    }
    let mut sink = [0u8; 1024];
    let _ = timeout(LINGER, async {
        while let Ok(n) = tls.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
