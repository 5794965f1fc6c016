//! The Multi-Messenger server.
//!
//! Data path: TCP accept ([`run`]) → TLS handshake and hello ([`session`]) → frames
//! ([`connection`]) → messages (`mm_common::protocol`) → [`hub`] (each
//! recipient's bounded queue) → each recipient's session → its socket.
//!
//! The server relays end-to-end encrypted payloads as opaque bytes; it never holds end-to-end
//! keys (only its own TLS key).

pub mod cli;
pub mod config;
pub mod connection;
pub mod hub;
pub mod limit;
mod session;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

pub use config::{Config, Limits};
pub use hub::Hub;

/// Serves clients on `listener` until `shutdown` completes, then shuts down gracefully: stops
/// accepting, stops accepting messages, lets every session deliver what was accepted and tell
/// its client, and returns once all sessions ended or `limits.shutdown_grace` passed.
///
/// # Errors
/// Only if the listener's address cannot be read; accept errors are retried with backoff.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let hub = Hub::new(&limits);
    serve(listener, tls, limits, hub, shutdown).await
}

/// [`run`] with a hub made by the caller (e.g. with a relay hook for tests).
///
/// # Errors
/// As [`run`].
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    hub: Hub,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let ctx = Arc::new(session::Context {
        hub: hub.clone(),
        server_name: format!("mm-server {}", env!("CARGO_PKG_VERSION")),
        limits: limits.clone(),
    });
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let local = listener.local_addr()?;
    info!(%local, "listening");

    tokio::select! {
        () = accept_loop(&listener, &acceptor, &ctx, &cancel, &tracker) => {}
        () = shutdown => info!("shutdown requested"),
    }
    drop(listener);

    // Order matters: close the hub first so that nothing is accepted after the sessions start
    // draining, then tell the sessions.
    hub.close();
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(limits.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            remaining = tracker.len(),
            "shutdown grace period over; dropping remaining connections"
        );
    }
    info!("stopped");
    Ok(())
}

async fn accept_loop(
    listener: &TcpListener,
    acceptor: &tokio_rustls::TlsAcceptor,
    ctx: &Arc<session::Context>,
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
            Ok((tcp, peer)) => {
                backoff = Duration::from_millis(10);
                let Some(ip_slot) = per_ip.claim(peer.ip()) else {
                    debug!(%peer, "per-address connection cap reached; closing");
                    continue; // dropping `tcp` closes it; the permit returns to the pool
                };
                let (acceptor, ctx, cancel) = (acceptor.clone(), Arc::clone(ctx), cancel.clone());
                tracker.spawn(async move {
                    session::serve(tcp, peer, acceptor, ctx, cancel).await;
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
