//! The link to NATS (`--bus`): its settings, checked at start ([`BusConfig::new`]), and the
//! connection itself ([`connect`]). See CLUSTER.md for what travels over it.
//!
//! Rules, as for the PostgreSQL store's link:
//! - no user name, password or token in a URL (it would be on command lines and in logs): NATS
//!   credentials come from a credentials file (`--bus-creds`, JWT + nkey seed, mode 600);
//! - off loopback (127.0.0.0/8, ::1, `localhost`) the link uses TLS with verification (a
//!   `tls://` URL or `--bus-ca`) and credentials;
//! - TLS (once any URL is `tls://` or `--bus-ca` is given, for every server of the list) verifies
//!   the server's certificate with the CA certificates of `--bus-ca`, else the system's roots
//!   (rustls with the `ring` provider, as everywhere in mm-server).
//!
//! The link reconnects without end, with a backoff of up to 5 s, while the node keeps running;
//! each disconnect and reconnect is logged (never a message's content).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

/// The node's lease unless `--node-lease` says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(8);
/// The shortest lease accepted.
pub const MIN_LEASE: Duration = Duration::from_secs(1);
/// The longest lease accepted.
pub const MAX_LEASE: Duration = Duration::from_secs(300);
/// How long one attempt to reach a NATS server may take (TCP, TLS, INFO, CONNECT, PONG).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between two reconnection attempts.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);
/// The longest node name.
pub const MAX_NODE_NAME: usize = 64;
/// NATS's port when a URL gives none.
pub const DEFAULT_NATS_PORT: u16 = 4222;
/// The largest credentials file read (a user JWT and a seed are about 1 KiB).
const MAX_CREDS_FILE: u64 = 64 * 1024;

/// Where the bus is and how this node joins it: `--bus`, `--bus-creds`, `--bus-ca`,
/// `--node-name`, `--node-lease` (or their fields in the configuration file), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// The NATS servers, each `nats://HOST:PORT` or `tls://HOST:PORT` (no credentials in them).
    pub urls: Vec<String>,
    /// A NATS credentials file (user JWT and nkey seed), readable by its owner only.
    pub creds_file: Option<PathBuf>,
    /// CA certificates (PEM) to verify the NATS servers with instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// This node's name: 1–64 characters of `A-Z a-z 0-9 . _ : -`.
    pub node_name: String,
    /// This node's lease in the store (1 s to 5 min).
    pub lease: Duration,
}

/// What the operator gave for the bus, before it is checked.
#[derive(Debug, Clone, Default)]
pub struct BusSettings {
    /// `--bus` / `bus` / `$MM_SERVER_BUS`: one URL or a comma-separated list.
    pub url: String,
    /// `--bus-creds` / `bus_creds_file`.
    pub creds_file: Option<PathBuf>,
    /// `--bus-ca` / `bus_ca_file`.
    pub ca_file: Option<PathBuf>,
    /// `--node-name` / `node_name`.
    pub node_name: Option<String>,
    /// `--node-lease` / `node_lease`.
    pub lease: Option<Duration>,
}

/// One server of `--bus`, parsed.
#[derive(Debug, Clone)]
struct BusUrl {
    /// `nats://HOST:PORT` or `tls://HOST:PORT`.
    shown: String,
    tls: bool,
    loopback: bool,
}

impl BusConfig {
    /// Checks `settings`. `postgres` says whether the store is PostgreSQL (the only store
    /// several nodes can share); `default_node_name` is used without `--node-name`
    /// (`HOSTNAME:CHATPORT`).
    ///
    /// # Errors
    /// A sentence for the operator naming the fix. It never repeats a URL's credentials.
    pub fn new(
        settings: &BusSettings,
        postgres: bool,
        default_node_name: &str,
    ) -> Result<BusConfig, String> {
        let parsed = settings
            .url
            .split(',')
            .map(parse_url)
            .collect::<Result<Vec<_>, _>>()?;
        if !postgres {
            return Err("--bus needs a PostgreSQL store, the one store several nodes can share: add --store postgres://USER@HOST:PORT/DB (or store = \"postgres://…\" in --config, or $MM_SERVER_STORE)".into());
        }
        let tls = settings.ca_file.is_some() || parsed.iter().any(|u| u.tls);
        let remote: Vec<&str> = parsed
            .iter()
            .filter(|u| !u.loopback)
            .map(|u| u.shown.as_str())
            .collect();
        if !remote.is_empty() && !tls {
            return Err(format!(
                "the bus {} is not on this machine, so its link must use TLS with verification: write the URL as tls://HOST:PORT, or name the NATS server's CA certificate with --bus-ca FILE (bus_ca_file)",
                remote.join(", ")
            ));
        }
        if !remote.is_empty() && settings.creds_file.is_none() {
            return Err(format!(
                "the bus {} is not on this machine, so this node must authenticate: give a NATS credentials file (user JWT and nkey seed) with --bus-creds FILE (bus_creds_file)",
                remote.join(", ")
            ));
        }
        if let Some(file) = &settings.creds_file {
            check_private(file)?;
        }
        if let Some(file) = &settings.ca_file {
            if !file.is_file() {
                return Err(format!(
                    "bus_ca_file {} is not a readable file (the CA certificates, PEM, that verify the NATS server)",
                    file.display()
                ));
            }
        }
        let node_name = match &settings.node_name {
            Some(name) => name.clone(),
            None => default_node_name.to_owned(),
        };
        check_node_name(&node_name).map_err(|why| {
            if settings.node_name.is_some() {
                format!("node_name {node_name:?} {why}")
            } else {
                format!("this node's default name {node_name:?} (HOSTNAME:PORT) {why}; choose one with --node-name NAME")
            }
        })?;
        let lease = settings.lease.unwrap_or(DEFAULT_LEASE);
        if !(MIN_LEASE..=MAX_LEASE).contains(&lease) {
            return Err(format!(
                "node_lease {lease:?} is out of range: it must be 1s to 5m"
            ));
        }
        Ok(BusConfig {
            urls: parsed.into_iter().map(|u| u.shown).collect(),
            creds_file: settings.creds_file.clone(),
            ca_file: settings.ca_file.clone(),
            node_name,
            lease,
        })
    }

    /// Whether the link uses TLS: some URL is `tls://`, or `--bus-ca` is given. Then every
    /// server of the list is reached with TLS.
    pub fn tls(&self) -> bool {
        self.ca_file.is_some() || self.urls.iter().any(|u| u.starts_with("tls://"))
    }

    /// The servers, for messages: `nats://a:4222, nats://b:4222`.
    pub fn shown(&self) -> String {
        self.urls.join(", ")
    }
}

/// Reads one server of `--bus`. Refused: credentials before `@` (never repeated), a scheme
/// other than `nats://` or `tls://`, a path or query, a host or port that is not one.
fn parse_url(text: &str) -> Result<BusUrl, String> {
    let text = text.trim();
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => (String::new(), text),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // Before anything that could quote it: whatever precedes `@` may be a password or token.
    if let Some((_, host)) = authority.rsplit_once('@') {
        return Err(format!(
            "the bus URL for {host} holds a user name, password or token (before @); a URL is shown in command lines, configuration files and logs, so NATS credentials go in a credentials file named by --bus-creds (bus_creds_file, mode 600), and the URL without them"
        ));
    }
    let usage = "each bus server is written nats://HOST:PORT or tls://HOST:PORT (a list is separated by commas)";
    if text.is_empty() {
        return Err(format!("the bus URL is empty: {usage}"));
    }
    let tls = match scheme.as_str() {
        "nats" => false,
        "tls" => true,
        "" => return Err(format!("the bus URL {authority:?} has no scheme: {usage}")),
        other => {
            return Err(format!(
                "the bus URL {other}://{authority} is not NATS: {usage}"
            ))
        }
    };
    if !(tail.is_empty() || tail == "/") {
        return Err(format!(
            "the bus URL {scheme}://{authority} has a path or query after the host and port, which NATS does not use: {usage}"
        ));
    }
    let bad = || format!("the bus URL {scheme}://{authority} has no valid host and port: {usage}");
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        if std::net::Ipv6Addr::from_str(host).is_err() {
            return Err(bad());
        }
        (format!("[{host}]"), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
        if !valid {
            return Err(bad());
        }
        (host.to_owned(), port)
    };
    let port = match port {
        None => DEFAULT_NATS_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(bad()),
        },
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare.eq_ignore_ascii_case("localhost")
        || IpAddr::from_str(bare).is_ok_and(|ip| ip.is_loopback());
    Ok(BusUrl {
        shown: format!("{scheme}://{host}:{port}"),
        tls,
        loopback,
    })
}

/// A node name: 1–64 characters of `A-Z a-z 0-9 . _ : -`.
fn check_node_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_NODE_NAME {
        return Err("must be 1 to 64 characters long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
    {
        return Err("may hold only letters, digits and . _ : -");
    }
    Ok(())
}

/// Refuses a credentials file others may read (or that cannot be examined), like the store's
/// password file.
fn check_private(file: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(file)
        .map_err(|e| format!("cannot read bus_creds_file {}: {e}", file.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "bus_creds_file {} is not a file (a NATS credentials file: user JWT and nkey seed)",
            file.display()
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "bus_creds_file {} can be read by others (mode {:04o}); it holds this node's secret key: make it private with chmod 600 {}",
                file.display(),
                mode & 0o777,
                file.display()
            ));
        }
    }
    Ok(())
}

/// The link to NATS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The credentials file cannot be used.
    #[error("{0}")]
    Credentials(String),
    /// The TLS settings cannot be used (the CA file, no roots).
    #[error("{0}")]
    TlsSetup(String),
    /// No server of the list answered within [`CONNECT_TIMEOUT`].
    #[error("cannot reach the bus (NATS) at {urls}: no answer within {secs} s; is nats-server running there, and does --bus name it?")]
    Timeout {
        /// The servers tried.
        urls: String,
        /// The time allowed.
        secs: u64,
    },
    /// A server refused this node's credentials (or needs some).
    #[error("the bus (NATS) at {urls} refused this node: {cause}; check the credentials file of --bus-creds (bus_creds_file) and the account NATS expects")]
    Refused {
        /// The servers tried.
        urls: String,
        /// The server's or client's words.
        cause: String,
    },
    /// The TLS handshake failed (most often: a certificate not signed by a trusted CA).
    #[error("TLS with the bus (NATS) at {urls} failed: {cause}; if its certificate comes from a private CA, name that CA's certificate with --bus-ca FILE (bus_ca_file)")]
    Tls {
        /// The servers tried.
        urls: String,
        /// What failed.
        cause: String,
    },
    /// Any other failure (refused connection, DNS, I/O).
    #[error("cannot connect to the bus (NATS) at {urls}: {cause}")]
    Connect {
        /// The servers tried.
        urls: String,
        /// What failed.
        cause: String,
    },
}

/// Connects to the bus: TLS as [`BusConfig::tls`] says, the credentials file, the node's name
/// as the connection's name, reconnection without end (backoff up to
/// [`MAX_RECONNECT_DELAY`]) once connected, each disconnect and reconnect logged.
///
/// # Errors
/// [`BusError`] when no server of the list accepts this node within [`CONNECT_TIMEOUT`] each,
/// naming the servers (never credentials).
pub async fn connect(cfg: &BusConfig) -> Result<async_nats::Client, BusError> {
    let urls = cfg.shown();
    let lost = Arc::new(AtomicBool::new(false));
    let mut options = async_nats::ConnectOptions::new()
        .name(&cfg.node_name)
        .connection_timeout(CONNECT_TIMEOUT)
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        // A NATS server that went silent (a cut cable) is noticed within ~20 s, not 2 min.
        .ping_interval(Duration::from_secs(10))
        .event_callback({
            let urls = urls.clone();
            move |event| {
                log_event(&urls, &lost, &event);
                std::future::ready(())
            }
        });
    if let Some(file) = &cfg.creds_file {
        let creds = read_creds(file).await?;
        options = options.credentials(&creds).map_err(|e| {
            BusError::Credentials(format!(
                "bus_creds_file {} is not a NATS credentials file (user JWT and nkey seed): {e}",
                file.display()
            ))
        })?;
    }
    if cfg.tls() {
        let ca = cfg.ca_file.clone();
        let tls = tokio::task::spawn_blocking(move || tls_config(ca.as_deref()))
            .await
            .map_err(|e| BusError::TlsSetup(format!("cannot read the bus's CA: {e}")))??;
        options = options.require_tls(true).tls_client_config(tls);
    }
    let addrs = cfg
        .urls
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BusError::Connect {
            urls: urls.clone(),
            cause: format!("not a NATS server address: {e}"),
        })?;
    // Each server is tried once, each for CONNECT_TIMEOUT at most; this bounds the whole.
    let n = u32::try_from(addrs.len()).unwrap_or(u32::MAX);
    let all = CONNECT_TIMEOUT
        .saturating_mul(n)
        .saturating_add(Duration::from_secs(1));
    let timed_out = || BusError::Timeout {
        urls: urls.clone(),
        secs: CONNECT_TIMEOUT.as_secs(),
    };
    let client = match tokio::time::timeout(all, options.connect(addrs)).await {
        Err(_) => return Err(timed_out()),
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            use async_nats::ConnectErrorKind as Kind;
            let cause = error_chain(&e);
            return Err(match e.kind() {
                Kind::TimedOut => timed_out(),
                Kind::AuthorizationViolation | Kind::Authentication => BusError::Refused {
                    urls: urls.clone(),
                    cause,
                },
                // A refused certificate comes as an I/O error holding rustls's.
                _ if e.kind() == Kind::Tls || is_tls_failure(&e) => BusError::Tls {
                    urls: urls.clone(),
                    cause,
                },
                _ => BusError::Connect {
                    urls: urls.clone(),
                    cause,
                },
            });
        }
    };
    info!(bus = %urls, node = %cfg.node_name, tls = cfg.tls(), "connected to the bus (NATS)");
    Ok(client)
}

/// An error and its causes, `a: b: c`, each once.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Whether `e` or one of its causes is a TLS failure (rustls's error, bare or in an I/O error).
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        if err.is::<rustls::Error>() || inner.is_some_and(|i| i.is::<rustls::Error>()) {
            return true;
        }
        next = err.source();
    }
    false
}

/// The wait before reconnection attempt `attempts` (1 for the first): none, then 100 ms
/// doubling up to [`MAX_RECONNECT_DELAY`].
pub fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(16);
    Duration::from_millis(100u64.saturating_mul(1 << exp)).min(MAX_RECONNECT_DELAY)
}

/// Logs a NATS connection event: what happened to the link, never a message. `lost` is set
/// while the link is down, so that failed attempts are warned about once per outage.
fn log_event(urls: &str, lost: &AtomicBool, event: &async_nats::Event) {
    use async_nats::Event;
    match event {
        Event::Connected => {
            if lost.swap(false, Ordering::Relaxed) {
                info!(bus = %urls, "the link to the bus (NATS) is back");
            }
        }
        Event::Disconnected => {
            lost.store(true, Ordering::Relaxed);
            warn!(bus = %urls, "lost the link to the bus (NATS); reconnecting (every {} s at most) while this node keeps running", MAX_RECONNECT_DELAY.as_secs());
        }
        Event::ClientError(e) => {
            if lost.load(Ordering::Relaxed) {
                debug!(bus = %urls, error = %e, "reconnection attempt to the bus (NATS) failed");
            } else {
                warn!(bus = %urls, error = %e, "bus (NATS) client error");
            }
        }
        Event::ServerError(e) => warn!(bus = %urls, error = %e, "the bus (NATS) reported an error"),
        Event::LameDuckMode => {
            warn!(bus = %urls, "the bus (NATS) server is shutting down (lame duck mode); this node will move to another server of the list when it closes")
        }
        Event::SlowConsumer(sid) => {
            warn!(bus = %urls, subscription = sid, "this node reads from the bus (NATS) too slowly: the NATS client dropped messages of a subscription")
        }
        Event::Draining => info!(bus = %urls, "closing the link to the bus (NATS)"),
        Event::Closed => warn!(bus = %urls, "the link to the bus (NATS) is closed"),
    }
}

/// Reads the credentials file (private, checked again now, at most 64 KiB), wiped from memory
/// once used.
async fn read_creds(file: &Path) -> Result<zeroize::Zeroizing<String>, BusError> {
    let path = file.to_path_buf();
    let read = tokio::task::spawn_blocking(move || {
        check_private(&path)?;
        let bytes = zeroize::Zeroizing::new(
            mm_certs::read_limited(&path, MAX_CREDS_FILE)
                .map_err(|e| format!("cannot read bus_creds_file {}: {e}", path.display()))?,
        );
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            format!(
                "bus_creds_file {} is not text (a NATS credentials file: user JWT and nkey seed)",
                path.display()
            )
        })?;
        Ok::<_, String>(zeroize::Zeroizing::new(text.to_owned()))
    })
    .await
    .map_err(|e| BusError::Credentials(format!("cannot read bus_creds_file: {e}")))?;
    read.map_err(BusError::Credentials)
}

/// rustls (ring provider) trusting the CA certificates of `ca`, else the system's roots.
fn tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, BusError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(file) => {
            use rustls_pki_types::pem::PemObject;
            let bad = |e: &dyn std::fmt::Display| {
                BusError::TlsSetup(format!("cannot read bus_ca_file {}: {e}", file.display()))
            };
            let certs =
                rustls_pki_types::CertificateDer::pem_file_iter(file).map_err(|e| bad(&e))?;
            for cert in certs {
                let cert = cert.map_err(|e| bad(&e))?;
                roots.add(cert).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(BusError::TlsSetup(format!(
                    "bus_ca_file {} holds no certificate (PEM, -----BEGIN CERTIFICATE-----)",
                    file.display()
                )));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot use is skipped, as browsers do.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(BusError::TlsSetup("this system has no CA certificates to verify the bus (NATS) with: name the NATS server's CA with --bus-ca FILE (bus_ca_file)".into()));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BusError::TlsSetup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests;
