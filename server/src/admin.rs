//! The admin listener: plain HTTP on its own address (loopback by default: `--admin`,
//! `admin = "..."`), separate from the chat port, for the operator's monitoring.
//!
//! - `GET /metrics`: the server's metrics in Prometheus' text format ([`crate::metrics`]);
//! - `GET /healthz`: `200 ok` while the process runs;
//! - `GET /readyz`: `200 ready` when the store answers a trivial request
//!   ([`crate::store::Store::ready`]) within [`READY_TIMEOUT`], `503` otherwise (e.g. while
//!   commits fail and the store refuses writes as busy).
//!
//! One request per connection, answered with `Connection: close`. Bounded: at most
//! [`MAX_CONNECTIONS`] at once (more are closed at once), a request head of at most
//! [`MAX_HEAD`] bytes (parsed with `httparse`; larger gets `431`), and [`REQUEST_TIMEOUT`] for the
//! whole exchange (a slow client is dropped).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::hub::Hub;
use crate::metrics::Metrics;

/// The admin listener's address unless configured: loopback only, port 9464 (the port commonly
/// used by Prometheus exporters of OpenTelemetry). Several nodes on one machine each configure
/// their own.
pub const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// Most admin connections served at once; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 16;

/// Longest request head read (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;

/// Time for one whole exchange: the request head in, the answer out.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `/readyz` waits for the store.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves the admin endpoints on `listener` until `cancel`.
pub(crate) async fn serve(
    listener: TcpListener,
    hub: Hub,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = cancel.cancelled() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "admin listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            debug!(%peer, "admin listener: too many connections; closing");
            continue;
        };
        let (hub, metrics) = (hub.clone(), Arc::clone(&metrics));
        tokio::spawn(async move {
            if tokio::time::timeout(REQUEST_TIMEOUT, exchange(tcp, &hub, &metrics))
                .await
                .is_err()
            {
                debug!(%peer, "admin listener: request timed out");
            }
            drop(slot);
        });
    }
}

/// What a request asked for.
enum Route {
    Metrics,
    Health,
    Ready,
}

/// Reads one request head and answers it.
async fn exchange(mut tcp: TcpStream, hub: &Hub, metrics: &Metrics) {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut filled = 0;
    // HEAD is answered as GET is, without the body (RFC 9110, 9.3.2): health checkers use it.
    let mut head_only = false;
    let route = loop {
        let n = match tcp.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(_)) => {
                match request.method {
                    Some("GET") => {}
                    Some("HEAD") => head_only = true,
                    _ => {
                        return answer(
                            &mut tcp,
                            "405 Method Not Allowed",
                            "text/plain",
                            "GET or HEAD only\n",
                            false,
                        )
                        .await
                    }
                }
                let path = request.path.unwrap_or("/");
                let path = path.split('?').next().unwrap_or(path);
                break match path {
                    "/metrics" => Route::Metrics,
                    "/healthz" => Route::Health,
                    "/readyz" => Route::Ready,
                    _ => {
                        return answer(
                            &mut tcp,
                            "404 Not Found",
                            "text/plain",
                            "not found: /metrics, /healthz, /readyz\n",
                            head_only,
                        )
                        .await
                    }
                };
            }
            Ok(httparse::Status::Partial) if filled == buf.len() => {
                return answer(
                    &mut tcp,
                    "431 Request Header Fields Too Large",
                    "text/plain",
                    "request head too large\n",
                    false,
                )
                .await;
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => {
                return answer(
                    &mut tcp,
                    "400 Bad Request",
                    "text/plain",
                    "bad request\n",
                    false,
                )
                .await
            }
        }
    };
    match route {
        Route::Metrics => {
            let (rooms, online) = hub.sizes();
            let (remote, waiting) = hub.cluster_sizes();
            metrics
                .cluster
                .remote_users
                .set(i64::try_from(remote).unwrap_or(i64::MAX));
            metrics
                .cluster
                .proposals_waiting
                .set(i64::try_from(waiting).unwrap_or(i64::MAX));
            let text = metrics.render(rooms, online);
            answer(
                &mut tcp,
                "200 OK",
                crate::metrics::CONTENT_TYPE,
                &text,
                head_only,
            )
            .await;
        }
        Route::Health => answer(&mut tcp, "200 OK", "text/plain", "ok\n", head_only).await,
        Route::Ready => {
            let bus_down = hub.is_clustered() && metrics.cluster.bus_connected.get() == 0;
            let refused = hub.is_clustered()
                && metrics
                    .cluster
                    .publishing_fails(std::time::Duration::from_secs(10));
            let state = if bus_down {
                Err("the cluster's bus (NATS) is not connected: lines cannot be ordered".to_owned())
            } else if refused {
                Err("the cluster's stream does not take this node's lines (JetStream full or gone?)".to_owned())
            } else {
                ready(hub).await
            };
            let (status, body) = match state {
                Ok(()) => ("200 OK", "ready\n".to_owned()),
                Err(why) => ("503 Service Unavailable", format!("not ready: {why}\n")),
            };
            answer(&mut tcp, status, "text/plain", &body, head_only).await;
        }
    }
}

/// Whether the store answers a trivial request within [`READY_TIMEOUT`]; why not otherwise.
pub(crate) async fn ready(hub: &Hub) -> Result<(), String> {
    let reply = hub.store().ready().map_err(|e| e.to_string())?;
    match tokio::time::timeout(READY_TIMEOUT, reply).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(_)) => Err("the store dropped the request".into()),
        Err(_) => Err(format!(
            "the store did not answer within {} s",
            READY_TIMEOUT.as_secs()
        )),
    }
}

/// Writes a whole answer (the head only for a HEAD request, with the body's length) and
/// closes.
async fn answer(
    tcp: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
    head_only: bool,
) {
    let body_sent = if head_only { "" } else { body };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if tcp.write_all(head.as_bytes()).await.is_ok()
        && tcp.write_all(body_sent.as_bytes()).await.is_ok()
    {
        let _ = tcp.shutdown().await;
    }
}
