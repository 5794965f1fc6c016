//! The Multi-Messenger server.
//!
//! Data path: TCP accept ([`listener`]) → TLS handshake (`session`; the ClientHello's ALPN
//! chooses the native protocol or HTTPS for browsers, [`web`]) → [`transport`] (frames in,
//! one message each; [`transport::framed`] is TLS over TCP) → the session (login, then each
//! `ClientMsg` dispatched) → [`hub`] (an id and a time, the store, each message encoded once)
//! → a [`hub::Topic`] on the bus (a shared handle pushed into the [`hub::Outbox`] of each
//! subscriber) → each recipient's session → its transport (framed there, one write per
//! wake-up) → its socket. Beside it, the hub hands accounts, public history and private lines
//! for offline users to the [`store`].
//!
//! The server relays end-to-end encrypted payloads as opaque bytes; it never holds end-to-end
//! keys (only its own TLS key).

pub mod acme;
pub mod admin;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod hub;
pub mod limit;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod renew;
mod session;
pub mod store;
pub mod tls;
pub mod transport;
pub mod web;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

pub use config::{Config, Limits};
pub use hub::Hub;

/// The file name of the store in the data directory.
pub const STORE_FILE: &str = "mm-server.db";

/// Every file the server keeps in its data directory: the store, SQLite's write-ahead log and
/// shared-memory index beside it, and the store's lock file. All private (0600).
pub const DATA_FILES: [&str; 4] = [
    STORE_FILE,
    "mm-server.db-wal",
    "mm-server.db-shm",
    "mm-server.db.lock",
];

/// Makes the data directory and the TLS directory private: creates them 0700 if missing, and
/// tightens them and the files the server keeps there ([`DATA_FILES`], `mm_certs::TLS_FILES`)
/// where an older version or a loose umask left them readable by others. Logs each change, and
/// warns about each mode it could not change.
///
/// # Errors
/// If a directory cannot be created.
pub fn make_private(data_dir: &Path, tls_dir: &Path) -> std::io::Result<()> {
    for (dir, files) in [
        (data_dir, &DATA_FILES[..]),
        (tls_dir, &mm_certs::TLS_FILES[..]),
    ] {
        mm_certs::create_private_dir(dir)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        for change in mm_certs::tighten(dir, files) {
            warn!("{change}");
        }
    }
    Ok(())
}

/// Where the server keeps its store (`--store`, `store` in the configuration).
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// The store `mm-server.db` in this data directory (the default).
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://USER@HOST:PORT/DB`), its password already set.
    Postgres(Box<store::postgres::PgTarget>),
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sqlite(dir) => write!(f, "{}", dir.join(STORE_FILE).display()),
            // Never with a password: the URL holds none.
            StoreLocation::Postgres(target) => write!(f, "{target}"),
        }
    }
}

/// Opens (or creates) the store at `store` (`mm-server.db` in a data directory, or a
/// PostgreSQL database) and makes a hub on it, with an optional relay hook (see
/// [`hub::RelayHook`]).
///
/// # Errors
/// [`store::StoreError`] naming the problem (corrupt, locked, unreadable, unreachable) and what
/// to do.
pub fn open_hub(
    store: &StoreLocation,
    limits: &Limits,
    hook: Option<hub::RelayHook>,
) -> Result<Hub, store::StoreError> {
    let shown = store.to_string();
    let clock: Arc<dyn clock::Clock> = Arc::new(clock::SystemClock);
    let opts = store::Options::from_limits(limits);
    let (store, loaded): (Arc<dyn store::Store>, _) = match store {
        StoreLocation::Sqlite(data_dir) => {
            mm_certs::create_private_dir(data_dir).map_err(|e| store::StoreError::Open {
                path: data_dir.to_path_buf(),
                detail: e.to_string(),
            })?;
            let (store, loaded) = store::sqlite::SqliteStore::open(
                &data_dir.join(STORE_FILE),
                opts,
                Arc::clone(&clock),
            )?;
            (Arc::new(store), loaded)
        }
        StoreLocation::Postgres(target) => {
            let (store, loaded) = store::postgres::PgStore::open(target, opts, Arc::clone(&clock))?;
            (Arc::new(store), loaded)
        }
    };
    info!(
        store = %shown,
        history = loaded.history.len(),
        last_id = loaded.last_id,
        "store opened"
    );
    Ok(Hub::builder(limits, store, loaded)
        .relay_hook(hook)
        .clock(clock)
        .build())
}

/// Serves clients on `listener` with the store at `store` until `shutdown` completes; see
/// [`serve`].
///
/// # Errors
/// If the store cannot be opened, or as [`serve`].
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    store: &StoreLocation,
    operations: Operations,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut operations = operations;
    let Some(bus) = operations.bus.take() else {
        let hub = open_hub(store, &limits, None)?;
        serve_with(listener, tls, limits, hub, operations, shutdown).await?;
        return Ok(());
    };
    // What every node must share besides the room limits: ACME's directory and domains (nodes
    // that differ would each order their own certificate).
    let shared = operations.acme.as_ref().map_or_else(String::new, |a| {
        format!(
            " acme_directory={} acme_domains={}",
            a.opts.directory,
            a.opts.domains.join(",")
        )
    });
    let (hub, joining) = open_node(store, &limits, &bus, &shared).await?;
    operations.cluster = Some(joining);
    serve_with(listener, tls, limits, hub, operations, shutdown).await?;
    Ok(())
}

/// Opens the store shared by every node (PostgreSQL, without the one-server lock), joins the
/// cluster through `bus` (CLUSTER.md) and builds the hub as one node of several. Every live
/// node must run with the same room limits and `shared` settings (text; empty: none).
///
/// # Errors
/// If the store is not PostgreSQL, cannot be opened, or the cluster cannot be joined (a live
/// node's settings differ).
pub async fn open_node(
    store: &StoreLocation,
    limits: &Limits,
    bus: &cluster::nats::BusConfig,
    shared: &str,
) -> anyhow::Result<(Hub, cluster::Joining)> {
    let StoreLocation::Postgres(target) = store else {
        anyhow::bail!("--bus needs a PostgreSQL store shared by every node (--store postgres://…)");
    };
    let clock: Arc<dyn clock::Clock> = Arc::new(clock::SystemClock);
    let opts = store::Options::from_limits(limits);
    let mut target = target.clone();
    target.set_cluster(true);
    let target = &target;
    let opened = {
        let target = target.clone();
        let clock = Arc::clone(&clock);
        tokio::task::spawn_blocking(move || store::postgres::PgStore::open(&target, opts, clock))
            .await
            .map_err(|e| anyhow::anyhow!("store: {e}"))??
    };
    let (store, loaded) = opened;
    info!(store = %target, last_id = loaded.last_id, "store opened (shared by the cluster's nodes)");
    let mut joining = cluster::start(
        target,
        bus,
        (loaded.last_id, loaded.rooms_applied),
        &format!("{}{shared}", hub::cluster_settings(limits)),
    )
    .await?;
    let mut loaded = loaded;
    joining.complete_history(&mut loaded.history, limits.history_len);
    let store: Arc<dyn store::Store> = Arc::new(store);
    let hub = Hub::builder(limits, store, loaded)
        .clock(clock)
        .cluster(joining.setup())
        .build();
    Ok((hub, joining))
}

/// What an operator runs beside the chat listener.
#[derive(Debug, Default)]
pub struct Operations {
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`; see [`admin`]), if any.
    pub admin: Option<TcpListener>,
    /// Peers whose connections begin with a PROXY protocol v2 header (see [`proxy`]).
    pub proxy_from: proxy::Trusted,
    /// The cluster to join (`--bus`, CLUSTER.md), for [`run`].
    pub bus: Option<cluster::nats::BusConfig>,
    /// This node, joined and waiting for its hub ([`open_node`]), for [`serve_with`].
    pub cluster: Option<cluster::Joining>,
    /// A node's ACME certificate, kept with the other nodes once it joined
    /// ([`cluster::acme`]); on one server the CLI keeps it alone.
    pub acme: Option<cluster::acme::AcmeSetup>,
}

/// As [`serve_with`], without an admin listener or trusted proxies.
///
/// # Errors
/// As [`serve_with`].
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    hub: Hub,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, tls, limits, hub, Operations::default(), shutdown).await
}

/// Serves clients on `listener` until `shutdown` completes — native clients with `tls`, and
/// browsers (ALPN `http/1.1`) with [`tls::web_config`] made from it — then shuts down gracefully: stops
/// accepting, stops accepting messages, lets every session deliver what was accepted and tell
/// its client, makes the store durable, and returns once all sessions ended (or
/// `limits.shutdown_grace` passed) and the store is closed.
///
/// # Errors
/// If the listener's address cannot be read or rustls refuses the web configuration (it does
/// not with its defaults; accept errors are retried with backoff), or if
/// the store could not commit everything accepted at close (the error says how much was not
/// stored; `mm-server` then exits non-zero).
pub async fn serve_with(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    hub: Hub,
    operations: Operations,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let web = tls::web_config(&tls).map_err(std::io::Error::other)?;
    let metrics = Arc::new(metrics::Metrics::new().map_err(std::io::Error::other)?);
    hub.store().attach_metrics(metrics.store.clone());
    let configs = session::TlsConfigs { native: tls, web };
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    // The node's own tasks outlive the sessions' drain at shutdown: lines proposed before it
    // are still applied and answered.
    let node_cancel = CancellationToken::new();
    let node_tracker = TaskTracker::new();
    let lost = CancellationToken::new();
    let node = operations
        .cluster
        .map(|joining| joining.run(&hub, &metrics.cluster, &node_tracker, &node_cancel, &lost));
    if let (Some(setup), Some(node)) = (operations.acme, &node) {
        node_tracker.spawn(cluster::acme::maintain(
            setup,
            node.membership(),
            node_cancel.clone(),
        ));
    }
    let ctx = Arc::new(session::Context {
        hub: hub.clone(),
        server_name: format!("mm-server {}", env!("CARGO_PKG_VERSION")),
        limits: limits.clone(),
        registrations: limit::Registrations::from_limits(&limits),
        metrics: Arc::clone(&metrics),
        cluster: node.clone(),
    });
    let local = listener.local_addr()?;
    if limits.unused_account_days > 0 {
        // The first sweep is submitted before any login, so it is applied before them.
        let first = sweep_unused(&hub, limits.unused_account_days);
        tracker.spawn(expire_unused_accounts(
            hub.clone(),
            limits.unused_account_days,
            first,
            cancel.clone(),
        ));
    }
    tracker.spawn(maintain_rooms(
        hub.clone(),
        limits.room_expiry_days,
        cancel.clone(),
    ));
    if let Some(admin) = operations.admin {
        match admin.local_addr() {
            Ok(at) => {
                info!("metrics at http://{at}/metrics (health at /healthz, readiness at /readyz)")
            }
            Err(e) => warn!(error = %e, "admin listener: its address cannot be read"),
        }
        tracker.spawn(admin::serve(
            admin,
            hub.clone(),
            Arc::clone(&metrics),
            cancel.clone(),
        ));
    }
    if !operations.proxy_from.is_empty() {
        info!(from = %operations.proxy_from, "PROXY protocol v2 required from these peers");
    }
    info!(%local, "listening");

    tokio::select! {
        () = listener::accept_loop(&listener, &configs, &ctx, &operations.proxy_from, &cancel, &tracker) => {}
        () = shutdown => info!("shutdown requested"),
        () = lost.cancelled() => error!("this node left the cluster (see above): stopping"),
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
    if let Some(node) = &node {
        // Proposals still in flight are applied (and stored) or abandoned, then the node
        // leaves: its nicks are free at once rather than at the end of its lease.
        node.drain(&hub, Duration::from_secs(5)).await;
        node_cancel.cancel();
        node_tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), node_tracker.wait()).await;
        node.leave().await;
    }
    // Everything accepted was submitted to the store under the hub's lock before the hub
    // closed; closing the store commits it all.
    // Submitting the close may wait for room in the store's queue: off the async workers.
    let closing = tokio::task::spawn_blocking(move || hub.close_store()).await;
    let unstored = match closing.unwrap_or(Err(store::StoreError::Closed)) {
        Ok(reply) => match tokio::time::timeout(Duration::from_secs(30), reply).await {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(e))) => Some(format!("the final commit failed: {e}")),
            Ok(Err(_)) | Err(_) => Some("the store did not answer the close within 30 s".into()),
        },
        Err(e) => {
            warn!(error = %e, "store already closed");
            None
        }
    };
    if let Some(lost) = unstored {
        // Accepted messages may be missing from the store: not a clean stop.
        error!("store: {lost}");
        return Err(std::io::Error::other(format!(
            "stopped, but {lost}; see the log above"
        )));
    }
    info!("store closed");
    if lost.is_cancelled() {
        return Err(std::io::Error::other(
            "stopped: this node lost its place in the cluster (see the log above)",
        ));
    }
    info!("stopped");
    Ok(())
}

/// How often empty rooms are looked for (and once a minute after start).
const ROOM_EXPIRY_EVERY: Duration = Duration::from_secs(3600);

/// Most rooms one sweep deletes.
const ROOM_EXPIRY_BATCH: usize = 1000;

/// How often the store is asked for what `mm-server rooms delete|set-owner` queued while this
/// server runs (the command waits up to 10 s for it to be taken).
const ROOM_REQUESTS_EVERY: Duration = Duration::from_secs(2);

/// Applies the operator's room requests (every [`ROOM_REQUESTS_EVERY`]) and deletes rooms
/// without members last active more than `days` days ago (see [`Limits::room_expiry_days`];
/// 0 keeps them; a minute after start, then every [`ROOM_EXPIRY_EVERY`]), until `cancel`.
async fn maintain_rooms(hub: Hub, days: u32, cancel: CancellationToken) {
    let mut next_expiry = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut tick = tokio::time::interval(ROOM_REQUESTS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        apply_room_requests(&hub, &cancel).await;
        if days > 0 && tokio::time::Instant::now() >= next_expiry {
            next_expiry = tokio::time::Instant::now() + ROOM_EXPIRY_EVERY;
            let gone = hub.expire_rooms(days, ROOM_EXPIRY_BATCH);
            if !gone.is_empty() {
                info!(
                    count = gone.len(),
                    "deleted rooms nobody was in for {days} days"
                );
                if gone.len() >= ROOM_EXPIRY_BATCH {
                    next_expiry = tokio::time::Instant::now() + EXPIRY_SWEEP_SOON;
                }
            }
        }
    }
}

/// Takes the operator's queued room requests from the store and applies them.
async fn apply_room_requests(hub: &Hub, cancel: &CancellationToken) {
    let reply = match hub.store().admin_requests() {
        Ok(reply) => reply,
        Err(e) => {
            debug!(error = %e, "room requests not read; trying again");
            return;
        }
    };
    let requests = tokio::select! {
        r = reply => r,
        () = cancel.cancelled() => return,
    };
    let Ok(Ok(requests)) = requests else {
        return;
    };
    for request in requests {
        match request {
            store::RoomRequest::Delete { room_key } => {
                if hub.delete_room(&room_key, "deleted by the server's operator") {
                    info!("deleted a room at the operator's request");
                } else {
                    warn!("the operator's request to delete a room found no such room");
                }
            }
            store::RoomRequest::SetOwner { room_key, nick } => {
                if hub.set_owner(&room_key, &nick) {
                    info!("a room has a new owner at the operator's request");
                } else {
                    warn!(
                        "the operator's request to set a room's owner found no such room or member"
                    );
                }
            }
        }
    }
}

/// How often unused accounts are looked for (and once at start).
const EXPIRY_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Most accounts one sweep deletes (one store transaction, kept short); when there are more,
/// the next sweep follows [`EXPIRY_SWEEP_SOON`] later.
const EXPIRY_SWEEP_BATCH: usize = 1000;

/// The pause between sweeps while a backlog of expired accounts is being deleted, or after the
/// store refused a sweep.
const EXPIRY_SWEEP_SOON: Duration = Duration::from_secs(1);

/// Submits one expiry sweep through the store's writer: accounts that never logged in again
/// after their registering connection, which ended (or began, if its end was not recorded)
/// more than `days` days ago.
fn sweep_unused(hub: &Hub, days: u32) -> Result<store::Reply<Vec<String>>, store::StoreError> {
    hub.expire_unused(days, EXPIRY_SWEEP_BATCH)
}

/// Deletes unused accounts (see [`Limits::unused_account_days`]): the sweep `first` submitted
/// at start, then one every [`EXPIRY_SWEEP_EVERY`], until `cancel`.
async fn expire_unused_accounts(
    hub: Hub,
    days: u32,
    mut sweep: Result<store::Reply<Vec<String>>, store::StoreError>,
    cancel: CancellationToken,
) {
    loop {
        let next = match sweep {
            Ok(reply) => {
                let answer = tokio::select! {
                    answer = reply => answer,
                    () = cancel.cancelled() => return,
                };
                match answer {
                    Ok(Ok(nicks)) if nicks.is_empty() => EXPIRY_SWEEP_EVERY,
                    Ok(Ok(nicks)) => {
                        hub.accounts_gone(&nicks);
                        let shown: Vec<&str> = nicks.iter().take(20).map(String::as_str).collect();
                        info!(
                            count = nicks.len(),
                            nicks = %shown.join(", "),
                            "expired accounts nobody logged in to again within {days} days of registering them (their nicks are free)"
                        );
                        if nicks.len() >= EXPIRY_SWEEP_BATCH {
                            EXPIRY_SWEEP_SOON
                        } else {
                            EXPIRY_SWEEP_EVERY
                        }
                    }
                    Ok(Err(e)) => {
                        warn!(error = %e, "expiry of unused accounts failed; trying again later");
                        EXPIRY_SWEEP_EVERY
                    }
                    Err(_) => return, // the store closed
                }
            }
            Err(store::StoreError::Closed) => return,
            Err(e) => {
                debug!(error = %e, "store busy; expiry of unused accounts postponed");
                Duration::from_secs(60)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            () = cancel.cancelled() => return,
        }
        sweep = sweep_unused(&hub, days);
    }
}
