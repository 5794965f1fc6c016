//! Listening for TCP connections: the listening socket (with a backlog sized for reconnect
//! storms) and the accept loop, which caps connections in total and per client address and
//! hands each accepted connection to a session (native or web: both count against the same
//! caps, since the protocol is chosen after the accept, at the TLS handshake). A connection from
//! a trusted load balancer ([`crate::proxy`]) is counted by the client address its PROXY header
//! names, once the header is read, and served as that address (both transports alike).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info};

use crate::proxy::{self, Trusted};
use crate::session;

/// The listen backlog asked of the kernel: how many connections whose TCP handshake completed
/// may wait for `accept(2)`. The kernel caps it at `net.core.somaxconn` (4096 on Linux since
/// 5.4). The standard library's and tokio's default, 128, overflows when a few hundred clients
/// connect at once (every client reconnecting after a server restart): the kernel then drops
/// the last ACK of their TCP handshakes, or answers with SYN cookies and forgets them, and a
/// client that waits for the server to speak first sits on a connection the server never saw.
/// Go asks for `somaxconn`, nginx for 511.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Listens for TCP connections on `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as
/// tokio's `TcpListener::bind` sets, so a restarted server can bind while old connections
/// linger in TIME_WAIT).
///
/// # Errors
/// As `socket(2)`, `bind(2)` and `listen(2)`: the address is in use, not local, or needs
/// privileges.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

pub(crate) async fn accept_loop(
    listener: &TcpListener,
    configs: &session::TlsConfigs,
    ctx: &Arc<session::Context>,
    proxies: &Trusted,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(ctx.limits.max_connections));
    let per_ip = PerIp::new(ctx.limits.max_connections_per_ip);
    let mut backoff = Duration::from_millis(10);
    loop {
        // Hold a slot before accepting: at the cap, new connections wait in the kernel backlog
        // instead of costing us memory.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return; // the semaphore is never closed
        };
        match listener.accept().await {
            Ok((tcp, peer)) if proxies.trusts(peer.ip()) => {
                backoff = Duration::from_millis(10);
                // The client's address comes in the header: read it (bounded by the handshake
                // timeout) in the connection's own task, then count it by that address.
                let (configs, ctx, cancel) = (configs.clone(), Arc::clone(ctx), cancel.clone());
                let per_ip = per_ip.clone();
                tracker.spawn(async move {
                    let mut tcp = tcp;
                    let header = timeout(ctx.limits.handshake_timeout, proxy::read_header(&mut tcp, peer));
                    let client = tokio::select! {
                        r = header => match r {
                            Ok(Ok(client)) => client,
                            // A balancer's TCP health check connects and closes: not
                            // worth a line each.
                            Ok(Err(e @ proxy::HeaderError::Io(_))) => {
                                ctx.metrics.proxy_header_refused.inc();
                                debug!(%peer, why = %e, "closed a connection from a trusted proxy");
                                return;
                            }
                            Ok(Err(e)) => {
                                ctx.metrics.proxy_header_refused.inc();
                                info!(%peer, why = %e, "closed a connection from a trusted proxy (every connection from a --proxy-from address must begin with a PROXY protocol v2 header; if this peer is not a load balancer, take it off proxy_protocol_from)");
                                return;
                            }
                            Err(_) => {
                                ctx.metrics.proxy_header_refused.inc();
                                info!(%peer, "closed a connection from a trusted proxy: no PROXY protocol v2 header in time (if this peer is not a load balancer, take it off proxy_protocol_from)");
                                return;
                            }
                        },
                        () = cancel.cancelled() => return,
                    };
                    let Some(ip_slot) = per_ip.claim(client.ip().to_canonical()) else {
                        debug!(%client, proxy = %peer, "per-address connection cap reached; closing");
                        return;
                    };
                    session::serve(tcp, client, configs, ctx, cancel).await;
                    drop(ip_slot);
                    drop(permit);
                });
            }
            Ok((tcp, peer)) => {
                backoff = Duration::from_millis(10);
                let Some(ip_slot) = per_ip.claim(peer.ip()) else {
                    debug!(%peer, "per-address connection cap reached; closing");
                    continue; // dropping `tcp` closes it; the permit returns to the pool
                };
                let (configs, ctx, cancel) = (configs.clone(), Arc::clone(ctx), cancel.clone());
                tracker.spawn(async move {
                    session::serve(tcp, peer, configs, ctx, cancel).await;
                    drop(ip_slot);
                    drop(permit);
                });
            }
            Err(e) => {
                // EMFILE/ENFILE/ECONNABORTED and the like: back off instead of spinning, and
                // keep serving the connections we have.
                error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "accept failed");
                drop(permit);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Connections per client address, capped.
#[derive(Debug, Clone)]
struct PerIp {
    max: usize,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's claim on its address's count; released on drop.
struct IpSlot {
    ip: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    fn new(max: usize) -> PerIp {
        PerIp {
            max,
            counts: Arc::default(),
        }
    }

    fn claim(&self, ip: IpAddr) -> Option<IpSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            ip,
            counts: Arc::clone(&self.counts),
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's cap on any listen backlog, where it can be read.
    fn somaxconn() -> Option<usize> {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_backlog_instead_of_being_dropped() {
        // 400 clients connect while the server accepts nothing (as when all of them reconnect
        // at once after a restart, or the server is busy). With the default backlog of 128 the
        // kernel keeps 129 and drops the handshakes of the rest; all 400 must be there to accept.
        const CLIENTS: usize = 400;
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let connect = tokio::net::TcpStream::connect(addr);
            match tokio::time::timeout(Duration::from_secs(5), connect).await {
                Ok(Ok(stream)) => clients.push(stream),
                Ok(Err(e)) => panic!("connect failed: {e}"),
                Err(_) => break, // the kernel dropped the SYN: the backlog is full
            }
        }
        let mut accepted = 0;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(500), listener.accept()).await
        {
            accepted += 1;
        }
        let expected = somaxconn().map_or(CLIENTS, |cap| CLIENTS.min(cap + 1));
        assert!(
            accepted >= expected,
            "{accepted} of {CLIENTS} connections reached accept(2); expected {expected}"
        );
    }
}
