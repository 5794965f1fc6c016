//! The `mm-server` command line.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::store::sqlite::SqliteStore;

/// Multi-Messenger chat server.
///
/// With no options it listens on 127.0.0.1:7667 and, on first start, generates its TLS
/// certificates (a CA and a server certificate) and its store in its data directory.
///
/// Signals: SIGTERM or SIGINT (Ctrl-C) shut down gracefully. SIGHUP reloads server.pem and
/// server.key from the TLS directory for new connections (a file that does not load keeps the
/// certificate in use) and logs what it did; the bind address, directories and limits are not
/// reloaded (restart to change them).
///
/// Certificates: the server certificate is valid 397 days. At start and daily the server
/// renews it from ca.key in the TLS directory when fewer than 30 days remain, or when it is
/// valid longer than 397 days in all (made by an older version), with the same names and CA
/// (so clients notice nothing), or warns if ca.key is not there.
#[derive(Debug, Parser)]
#[command(name = "mm-server", version)]
pub struct Args {
    /// Administration commands (the server is started when none is given)
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Data directory: the store (mm-server.db) and, unless --tls-dir is given, tls/
    /// [default: data_dir in --config, else $MM_SERVER_DATA, else multi-messenger/server in
    /// $XDG_DATA_HOME or ~/.local/share]
    #[arg(long, value_name = "DIR", global = true)]
    pub data: Option<PathBuf>,
    /// Address and port to listen on, e.g. 0.0.0.0:7667 for a LAN [default: 127.0.0.1:7667]
    #[arg(long, value_name = "ADDR:PORT")]
    pub bind: Option<SocketAddr>,
    /// Directory with the CA (ca.pem, ca.key) and the server certificate (server.pem,
    /// server.key); when it holds none of them, a CA and a certificate are generated there
    /// [default: tls_dir in --config, else tls/ in the data directory]
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
    /// TOML configuration file (see mm-server.example.toml); flags override it
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Obtain and renew a publicly trusted certificate for DOMAIN from an ACME server (Let's
    /// Encrypt unless --acme-directory says otherwise), validated with TLS-ALPN-01 on this
    /// server's port: the domain must resolve to this machine and its port 443 reach this
    /// server. Repeat for more names (one certificate covers them all). Replaces the self-made
    /// CA and certificate [default: acme_domains in --config]
    #[arg(long = "acme-domain", value_name = "DOMAIN")]
    pub acme_domains: Vec<String>,
    /// The ACME server's directory URL [default: acme_directory in --config, else Let's
    /// Encrypt's production directory https://acme-v02.api.letsencrypt.org/directory]
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,
    /// Contact for the ACME account, where the CA writes about expiring certificates or
    /// problems (repeatable) [default: acme_contact in --config]
    #[arg(long, value_name = "mailto:ADDRESS")]
    pub acme_contact: Vec<String>,
    /// Trust the ACME server's own HTTPS certificate with this CA certificate (PEM) instead of
    /// the system's roots: a private ACME server, or tests [default: acme_directory_ca in
    /// --config]
    #[arg(long, value_name = "FILE")]
    pub acme_directory_ca: Option<PathBuf>,
    /// Admin listener (plain HTTP: /metrics, /healthz, /readyz), or "off"; keep it on loopback
    /// or a private network [default: 127.0.0.1:9464; if that port is taken the server warns
    /// and runs without it]
    #[arg(long, value_name = "ADDR:PORT|off")]
    pub admin: Option<String>,
    /// A load balancer's address or network (e.g. 10.0.0.0/8) whose connections begin with a
    /// PROXY protocol v2 header giving the client's address; repeatable; replaces
    /// proxy_protocol_from in --config [default: none]
    #[arg(long = "proxy-from", value_name = "ADDR_OR_CIDR")]
    pub proxy_from: Vec<String>,
    /// The store: a PostgreSQL URL postgres://USER@HOST:PORT/DB (no password in it: give it
    /// in $MM_STORE_PASSWORD or store_password_file; TLS with verification off loopback)
    /// [default: store in --config, else $MM_SERVER_STORE, else mm-server.db in the data
    /// directory]
    #[arg(long, value_name = "URL", global = true)]
    pub store: Option<String>,
    /// Join a cluster of nodes (CLUSTER.md) over this NATS server with JetStream:
    /// nats://HOST:PORT, tls://HOST:PORT, or a comma-separated list of servers; no credentials
    /// in it (--bus-creds). Needs a PostgreSQL --store; off loopback it needs TLS (tls:// or
    /// --bus-ca) and --bus-creds [default: bus in --config, else $MM_SERVER_BUS, else none: one
    /// server on its own]
    #[arg(long, value_name = "URL")]
    pub bus: Option<String>,
    /// NATS credentials file (user JWT and nkey seed) for --bus; only its owner may read it
    /// (chmod 600) [default: bus_creds_file in --config]
    #[arg(long, value_name = "FILE")]
    pub bus_creds: Option<PathBuf>,
    /// CA certificates (PEM) to verify the NATS server of --bus with instead of the system's
    /// roots; turns TLS on [default: bus_ca_file in --config]
    #[arg(long, value_name = "FILE")]
    pub bus_ca: Option<PathBuf>,
    /// This node's name in the cluster: 1-64 characters of A-Z a-z 0-9 . _ : - [default:
    /// node_name in --config, else HOSTNAME:PORT with the chat port]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// This node's lease in the store, e.g. 8s (1s to 5m): a node that cannot renew it closes
    /// its sessions, and a node that died frees its nicks when it runs out [default:
    /// node_lease in --config, else 8s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub node_lease: Option<std::time::Duration>,
}

/// Reads a duration as the configuration file writes them (`8s`, `500ms`, `1m`).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime_serde::re::humantime::parse_duration(text)
        .map_err(|e| format!("{e} (write it like 8s, 500ms or 1m)"))
}

/// Administration commands; they work on the store while a server runs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Registered nicks (each owned by one client certificate)
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Rooms (channels other than #lobby): list them, delete one, name its owner
    #[command(subcommand)]
    Rooms(RoomsCommand),
}

/// `mm-server rooms ...`
///
/// Room names are case-insensitive; the leading # may be left out (a shell takes an unquoted
/// #dev for a comment: write '#dev' or dev). While a server runs, `delete` and `set-owner` ask
/// it to make the change (so that its members are told) and wait up to 10 s for it; otherwise
/// they change the store directly. On a PostgreSQL store they always ask (any node of a
/// cluster takes it); with no server running, the next one to start makes the change.
#[derive(Debug, Subcommand)]
pub enum RoomsCommand {
    /// List rooms: name, members, owner, modes, topic
    List,
    /// Delete a room with its members, bans, invitations and history
    Delete {
        /// The room (any case; '#dev' or dev)
        name: String,
    },
    /// Make a member the owner of a room; its previous owner becomes an operator
    SetOwner {
        /// The room (any case; '#dev' or dev)
        name: String,
        /// The member's nick (any case)
        nick: String,
    },
}

/// How long `mm-server rooms delete` and `set-owner` wait for a running server to apply them.
const ROOM_REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `mm-server accounts ...`
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// List accounts: nick, registration and last-seen times, when it expires if nobody logs in
    /// to it again (unused_account_days), waiting messages, credentials (kind and the start of
    /// each: a certificate's fingerprint, an account key's p256: hash)
    List,
    /// Free a nick so that the next client to log in with it owns it (e.g. a user who lost
    /// their key). Deletes the messages waiting for it.
    Release {
        /// The nick (any case)
        nick: String,
    },
}

/// Runs `mm-server` with the process arguments.
///
/// Exit status: 0 after a graceful shutdown or a successful administration command, 1 with a
/// message on stderr otherwise. Neither a closed stderr (the log) nor a closed stdout (an
/// administration command's output, e.g. piped into `head`) makes it fail or panic.
/// The log filter without `RUST_LOG`.
/// async-nats logs every connection event at info in its own words; `cluster::nats` logs each
/// once in ours (a lost link as a warning), so only its warnings and errors come through.
const DEFAULT_LOG_FILTER: &str = "info,rustls=off,async_nats=warn";

pub fn main() -> ExitCode {
    // Before anything is created: whatever the server or SQLite creates is owner-only.
    mm_certs::restrict_umask();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // rustls logs a misbehaving peer's messages as warnings in its own terms, and
                // anyone who can connect can repeat them; the session logs each failed
                // handshake in plain words instead (debug, or info when the client refused us).
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(|| LogSink)
        // On a failed write tracing-subscriber would report it with eprintln!, which panics when
        // stderr is gone; LogSink never fails, and this makes sure of it.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            report(&format!("mm-server: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&format!("mm-server: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Writes a line to stderr; a failed write is dropped (there is nowhere else to report it).
fn report(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Set once stderr reported a broken pipe: nothing reads the log any more.
static LOG_CLOSED: AtomicBool = AtomicBool::new(false);

/// The log's writer: stderr, where a write that fails (EPIPE after the reader of a pipe went
/// away, ENOSPC, ...) drops the line instead of failing, or panicking in, the task that logged
/// it. After a broken pipe no more writes are tried.
#[derive(Debug, Clone, Copy)]
struct LogSink;

impl LogSink {
    fn dropped(e: &std::io::Error) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            LOG_CLOSED.store(true, Ordering::Relaxed);
        }
    }
}

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if LOG_CLOSED.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        match std::io::stderr().write(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e), // retried
            Err(e) => {
                Self::dropped(&e);
                Ok(buf.len())
            }
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if LOG_CLOSED.load(Ordering::Relaxed) {
            return Ok(());
        }
        // One locked write per event, so that lines from different threads do not interleave.
        if let Err(e) = std::io::stderr().lock().write_all(buf) {
            Self::dropped(&e);
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Where the configuration comes from: the file, then the command line's overrides. Kept so
/// that SIGHUP can read it again and say what changed.
#[derive(Debug, Clone)]
struct Sources {
    file: Option<PathBuf>,
    data: Option<PathBuf>,
    bind: Option<SocketAddr>,
    tls_dir: Option<PathBuf>,
    acme: AcmeFlags,
    admin: Option<String>,
    proxy_from: Vec<String>,
    store: Option<String>,
    bus: BusFlags,
}

/// The `--bus*` and `--node-*` flags (each overrides its field of the file when given).
#[derive(Debug, Clone, Default)]
struct BusFlags {
    url: Option<String>,
    creds: Option<PathBuf>,
    ca: Option<PathBuf>,
    node_name: Option<String>,
    node_lease: Option<std::time::Duration>,
}

/// The `--acme-*` flags (each overrides its field of the file when given).
#[derive(Debug, Clone, Default)]
struct AcmeFlags {
    domains: Vec<String>,
    directory: Option<String>,
    contact: Vec<String>,
    directory_ca: Option<PathBuf>,
}

/// The configuration in effect, with its directories and store resolved.
#[derive(Debug, Clone)]
struct Effective {
    config: Config,
    data_dir: PathBuf,
    tls_dir: PathBuf,
    store: crate::StoreLocation,
    /// The bus of a cluster (`--bus`), checked; `None` for one server on its own.
    bus: Option<crate::cluster::nats::BusConfig>,
}

impl Sources {
    /// Reads the file (blocking) and applies the overrides.
    fn load(&self) -> anyhow::Result<Effective> {
        let mut config = match &self.file {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(dir) = &self.data {
            config.data_dir = Some(dir.clone());
        }
        if let Some(bind) = self.bind {
            config.bind = bind;
        }
        if let Some(dir) = &self.tls_dir {
            config.tls_dir = Some(dir.clone());
        }
        if !self.acme.domains.is_empty() {
            config.acme_domains.clone_from(&self.acme.domains);
        }
        if let Some(url) = &self.acme.directory {
            config.acme_directory = Some(url.clone());
        }
        if !self.acme.contact.is_empty() {
            config.acme_contact.clone_from(&self.acme.contact);
        }
        if let Some(file) = &self.acme.directory_ca {
            config.acme_directory_ca = Some(file.clone());
        }
        if let Some(admin) = &self.admin {
            config.admin = Some(admin.clone());
        }
        if !self.proxy_from.is_empty() {
            config.proxy_protocol_from = self.proxy_from.clone();
        }
        // Checked whichever way they came (a file's are checked as it is read).
        config.admin_setting()?;
        config.proxies()?;
        let data_dir = match config.data_dir.clone() {
            Some(dir) => dir,
            None => mm_certs::default_server_data_dir()
                .context("no home directory for the server's data; pass --data DIR")?,
        };
        let tls_dir = config
            .tls_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("tls"));
        if let Some(store) = &self.store {
            config.store = Some(store.clone());
        }
        let store = store_location(&config, &data_dir)?;
        if let Some(url) = &self.bus.url {
            config.bus = Some(url.clone());
        }
        if config.bus.is_none() {
            config.bus = std::env::var("MM_SERVER_BUS")
                .ok()
                .filter(|s| !s.is_empty());
        }
        if let Some(file) = &self.bus.creds {
            config.bus_creds_file = Some(file.clone());
        }
        if let Some(file) = &self.bus.ca {
            config.bus_ca_file = Some(file.clone());
        }
        if let Some(name) = &self.bus.node_name {
            config.node_name = Some(name.clone());
        }
        if let Some(lease) = self.bus.node_lease {
            config.node_lease = Some(lease);
        }
        let postgres = matches!(store, crate::StoreLocation::Postgres(_));
        let bus = config.bus(postgres, hostname().as_deref())?;
        Ok(Effective {
            config,
            data_dir,
            tls_dir,
            store,
            bus,
        })
    }
}

/// Where the store is: `store` from the flag or the file, else `$MM_SERVER_STORE`, else
/// `mm-server.db` in `data_dir`. A PostgreSQL URL gets its password from `$MM_STORE_PASSWORD`
/// or `store_password_file`, never from the URL (refused there).
fn store_location(config: &Config, data_dir: &Path) -> anyhow::Result<crate::StoreLocation> {
    let url = config
        .store
        .clone()
        .or_else(|| std::env::var("MM_SERVER_STORE").ok())
        .filter(|s| !s.is_empty());
    let Some(url) = url else {
        return Ok(crate::StoreLocation::Sqlite(data_dir.to_path_buf()));
    };
    if !crate::store::postgres::is_url(&url) {
        anyhow::bail!(
            "the store must be a PostgreSQL URL (postgres://USER@HOST:PORT/DB), or left out for mm-server.db in the data directory"
        );
    }
    let mut target = crate::store::postgres::PgTarget::parse(&url).map_err(anyhow::Error::msg)?;
    let password = match (
        &config.store_password_file,
        std::env::var("MM_STORE_PASSWORD"),
    ) {
        (Some(file), _) => Some(read_password_file(file)?),
        (None, Ok(password)) if !password.is_empty() => {
            Some(zeroize::Zeroizing::new(password.into_bytes()))
        }
        _ => None,
    };
    if let Some(password) = password {
        target.set_password(&password);
    }
    Ok(crate::StoreLocation::Postgres(Box::new(target)))
}

/// Reads the store's password from `file`, which only its owner may read (like the server's
/// private key); one line, its line ending dropped.
fn read_password_file(file: &Path) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file)
            .with_context(|| format!("cannot read store_password_file {}", file.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "store_password_file {} can be read by others (mode {:04o}); make it private with chmod 600 {}",
                file.display(),
                mode & 0o777,
                file.display()
            );
        }
    }
    let mut bytes = zeroize::Zeroizing::new(
        mm_certs::read_limited(file, 4096)
            .with_context(|| format!("cannot read store_password_file {}", file.display()))?,
    );
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        anyhow::bail!("store_password_file {} is empty", file.display());
    }
    Ok(bytes)
}

/// Every account of the store at `store` (SQLite file or PostgreSQL database).
fn list_accounts(store: &crate::StoreLocation) -> anyhow::Result<Vec<crate::store::Account>> {
    Ok(match store {
        crate::StoreLocation::Sqlite(dir) => SqliteStore::list_accounts(&existing_store(dir)?)?,
        crate::StoreLocation::Postgres(target) => {
            crate::store::postgres::PgStore::list_accounts(target)?
        }
    })
}

/// Frees `nick` in the store at `store`; whether there was such an account.
fn release(store: &crate::StoreLocation, nick: &str) -> anyhow::Result<bool> {
    Ok(match store {
        crate::StoreLocation::Sqlite(dir) => SqliteStore::release(&existing_store(dir)?, nick)?,
        crate::StoreLocation::Postgres(target) => {
            crate::store::postgres::PgStore::release(target, nick)?
        }
    })
}

/// The SQLite store's file in `dir`, which the server makes on its first start.
fn existing_store(dir: &Path) -> anyhow::Result<PathBuf> {
    let store = dir.join(crate::STORE_FILE);
    if !store.exists() {
        anyhow::bail!(
            "no store at {} (the server creates it on first start)",
            store.display()
        );
    }
    Ok(store)
}

/// The web client's URL for a server bound to `bound`: its address itself, unless it is the
/// unspecified address (0.0.0.0 or ::), which no browser can open. Then the first DNS name of
/// the server certificate that is not `localhost` (the name clients are meant to use; the
/// certificate must cover the URL's host for a browser to accept it), else its first IP address
/// that is not loopback, else the machine's hostname (`hostname`, as the kernel reports it), else
/// `localhost`.
pub fn web_url(
    bound: SocketAddr,
    names: Option<&mm_certs::Names>,
    hostname: Option<&str>,
) -> String {
    let port = bound.port();
    if !bound.ip().is_unspecified() {
        return format!("https://{bound}/");
    }
    let dns = names.and_then(|n| n.dns.iter().find(|d| !d.eq_ignore_ascii_case("localhost")));
    if let Some(dns) = dns {
        return format!("https://{dns}:{port}/");
    }
    let ip = names.and_then(|n| {
        n.ips
            .iter()
            .find(|ip| !ip.is_loopback() && !ip.is_unspecified())
    });
    if let Some(ip) = ip {
        return format!("https://{}/", SocketAddr::new(*ip, port));
    }
    let host = hostname.filter(|h| !h.is_empty()).unwrap_or("localhost");
    format!("https://{host}:{port}/")
}

/// The machine's hostname, as Linux reports it (`None` elsewhere, or if unreadable).
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Listens on `addr`; a refusal says why in plain words and what to do.
async fn listen(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    crate::listener::bind(addr).map_err(|e| anyhow::anyhow!(listen_refused(addr, &e)))
}

/// The sentence for a refused `bind(2)` on `addr`.
fn listen_refused(addr: SocketAddr, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::AddrInUse => format!(
            "cannot listen on {addr}: the address is already in use (another mm-server?); \
             stop the other program or choose another address with --bind"
        ),
        ErrorKind::PermissionDenied => format!(
            "cannot listen on {addr}: permission denied (ports below 1024 need privileges); \
             choose a port above 1023 with --bind, for example 0.0.0.0:7667"
        ),
        ErrorKind::AddrNotAvailable => format!(
            "cannot listen on {addr}: {} is not an address of this machine; \
             use one of its addresses, 0.0.0.0 for all of them, or 127.0.0.1",
            addr.ip()
        ),
        _ => format!("cannot listen on {addr}: {e}"),
    }
}

/// The admin listener for `setting`. A configured address that cannot be used stops the
/// server (with the reason and `--admin`); the default one, when taken (another node on this
/// machine), is warned about and the server runs without metrics.
fn admin_listener(
    setting: crate::config::AdminSetting,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    use crate::config::AdminSetting;
    let (addr, configured) = match setting {
        AdminSetting::Off => return Ok(None),
        AdminSetting::Default => (crate::admin::DEFAULT_ADMIN, false),
        AdminSetting::At(addr) => (addr, true),
    };
    match crate::listener::bind(addr) {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if configured => Err(anyhow::anyhow!(
            "admin listener: {}",
            admin_refused(addr, &e)
        )),
        Err(e) => {
            warn!(
                "NO metrics or health endpoints: {}",
                admin_refused(addr, &e)
            );
            Ok(None)
        }
    }
}

/// The sentence for an admin address that cannot be listened on.
fn admin_refused(addr: SocketAddr, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        format!(
            "cannot listen on {addr}: the address is already in use (another mm-server on this \
             machine?); give each server its own with --admin ADDR:PORT (or admin = \"...\" \
             in --config), or --admin off"
        )
    } else {
        format!("cannot listen on {addr}: {e}; choose another address with --admin ADDR:PORT, or --admin off")
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let sources = Sources {
        file: args.config,
        data: args.data,
        bind: args.bind,
        tls_dir: args.tls_dir,
        acme: AcmeFlags {
            domains: args.acme_domains,
            directory: args.acme_directory,
            contact: args.acme_contact,
            directory_ca: args.acme_directory_ca,
        },
        admin: args.admin,
        proxy_from: args.proxy_from,
        store: args.store,
        bus: BusFlags {
            url: args.bus,
            creds: args.bus_creds,
            ca: args.bus_ca,
            node_name: args.node_name,
            node_lease: args.node_lease,
        },
    };
    match args.command {
        Some(Command::Accounts(cmd)) => {
            let running = sources.load()?;
            return accounts(
                &running.store,
                cmd,
                running.config.limits.unused_account_days,
            );
        }
        Some(Command::Rooms(cmd)) => {
            let running = sources.load()?;
            return rooms(&running.store, cmd);
        }
        None => {}
    }
    // Before anything slow (the store): from here on SIGHUP, SIGINT and SIGTERM no longer
    // have their default effect of ending the process on the spot.
    let signals = Signals::install();
    let running = sources.load()?;
    let Effective {
        config, tls_dir, ..
    } = &running;

    // Checked before anything is created: a typo in --acme-domain fails here.
    let acme = if config.acme_domains.is_empty() {
        None
    } else {
        Some(crate::acme::AcmeOptions::new(
            &config.acme_domains,
            config.acme_directory.clone(),
            config.acme_contact.clone(),
            config.acme_directory_ca.clone(),
        )?)
    };
    // The address first: a busy port fails before anything is created on disk (a new data
    // directory, a CA). Connections wait in the backlog until the server accepts.
    let listener = listen(config.bind).await?;
    let operations = crate::Operations {
        admin: admin_listener(config.admin_setting()?)?,
        proxy_from: config.proxies()?,
        bus: config.bus(
            matches!(running.store, crate::StoreLocation::Postgres(_)),
            hostname().as_deref(),
        )?,
        cluster: None,
        acme: None,
    };
    let mut operations = operations;
    crate::make_private(&running.data_dir, tls_dir)?;
    // An interrupted replacement of server.key and server.pem is completed (or rolled back)
    // before anything reads them.
    let (cert, renewer) = match acme {
        Some(opts) => {
            // Publicly trusted: no self-made CA, and never its certificate under this name.
            let challenges = Arc::new(crate::acme::Challenges::default());
            let cert = Arc::new(crate::tls::ServerCert::for_acme(Arc::clone(&challenges)));
            crate::acme::start(tls_dir, &opts, &cert);
            let renewer = if operations.bus.is_some() {
                // A node: the certificate is kept with the other nodes once it joined
                // (CLUSTER.md, "Certificates").
                operations.acme = Some(crate::cluster::acme::AcmeSetup {
                    opts,
                    tls_dir: tls_dir.clone(),
                    cert: Arc::clone(&cert),
                    challenges,
                });
                tokio::spawn(async {})
            } else {
                tokio::spawn(crate::acme::maintain(
                    opts,
                    tls_dir.clone(),
                    Arc::clone(&cert),
                    challenges,
                ))
            };
            (cert, renewer)
        }
        None => {
            crate::renew::finish_pending(tls_dir)?;
            match mm_certs::ensure_server_files(tls_dir)? {
                mm_certs::Ensured::Existing => {}
                mm_certs::Ensured::Generated(g) => {
                    info!(dir = %tls_dir.display(), covers = %g.covers.join(", "), "generated a CA and a server certificate");
                    info!(ca = %g.ca_cert.display(), fingerprint = %g.ca_fingerprint, "clients trust this CA with --ca, or by comparing this fingerprint on first contact");
                    if !config.bind.ip().is_loopback() {
                        warn!("the generated certificate covers only localhost; for LAN clients run `mm-certs --ip <LAN address>` or `mm-certs --name <host>.lan` (same CA) and send SIGHUP; a public name or address needs `mm-certs --new-ca` (every client must then trust the new CA)");
                    }
                }
            }
            // A CA from before name constraints could vouch for any website: said at every start.
            crate::renew::warn_if_ca_unlimited(tls_dir);
            // A key that is not the certificate's is healed from ca.key if it can be, else refused.
            let cert = Arc::new(crate::renew::load_at_start(
                tls_dir,
                time::OffsetDateTime::now_utc(),
            )?);
            // Before listening: a certificate about to run out is renewed before anyone connects.
            let renewal = crate::renew::check(tls_dir, &cert, time::OffsetDateTime::now_utc());
            crate::renew::log(&renewal, tls_dir);
            let expires = match &renewal {
                crate::renew::Outcome::Valid { not_after }
                | crate::renew::Outcome::Renewed { not_after, .. }
                | crate::renew::Outcome::CannotRenew { not_after, .. } => {
                    mm_certs::date(*not_after)
                }
                _ => "unknown".into(),
            };
            info!(dir = %tls_dir.display(), fingerprint = %cert.summary().fingerprint, %expires, "using TLS certificate");
            if let Ok(ca) = mm_certs::load_certs(&tls_dir.join(mm_certs::CA_CERT)) {
                if let Some(ca) = ca.first() {
                    info!(fingerprint = %mm_certs::fingerprint(ca), ca = %tls_dir.join(mm_certs::CA_CERT).display(), "CA fingerprint");
                }
            }
            let renewer = tokio::spawn(crate::renew::renew_daily(
                tls_dir.clone(),
                Arc::clone(&cert),
            ));
            (cert, renewer)
        }
    };
    let tls = crate::tls::server_config_with(Arc::clone(&cert))?;
    if let Ok(bound) = listener.local_addr() {
        let names = if config.acme_domains.is_empty() {
            cert.end_entity()
                .and_then(|der| {
                    mm_certs::CertInfo::parse(&der, &tls_dir.join(mm_certs::SERVER_CERT)).ok()
                })
                .map(|info| info.names)
        } else {
            // The names the ACME certificate is (or will be) for, even before it arrives.
            Some(mm_certs::Names {
                dns: config.acme_domains.clone(),
                ips: Vec::new(),
            })
        };
        info!(
            "web client: {}",
            web_url(bound, names.as_ref(), hostname().as_deref())
        );
    }
    let Signals {
        interrupt,
        terminate,
        hangup,
    } = signals;
    let reloader = tokio::spawn(reload_on_hangup(
        hangup,
        cert,
        sources.clone(),
        running.clone(),
    ));
    let result = crate::run(
        listener,
        tls,
        config.limits.clone(),
        &running.store,
        operations,
        shutdown_requested(interrupt, terminate),
    )
    .await;
    // A SIGHUP during shutdown only swapped the certificate; later ones are ignored (the
    // handler stays installed for the life of the process).
    reloader.abort();
    renewer.abort();
    result
}

fn accounts(
    store: &crate::StoreLocation,
    cmd: AccountsCommand,
    unused_account_days: u32,
) -> anyhow::Result<()> {
    match cmd {
        AccountsCommand::List => {
            let accounts = list_accounts(store)?;
            let mut out = format!(
                "{:<32}  {:<16}  {:<16}  {:<16}  {:>7}  credentials\n",
                "nick", "registered", "last seen", "expires (unused)", "waiting"
            );
            let mut unused = 0;
            for a in &accounts {
                let expires = match (a.returned_ms, unused_account_days) {
                    (Some(_), _) | (None, 0) => "never".to_owned(),
                    (None, days) => {
                        unused += 1;
                        // From the end of its registering connection (its last-seen time).
                        let from = a.created_ms.max(a.last_seen_ms);
                        utc(from.saturating_add(u64::from(days) * crate::clock::DAY_MS))
                    }
                };
                out.push_str(&format!(
                    "{:<32}  {:<16}  {:<16}  {:<16}  {:>7}  {}\n",
                    a.nick,
                    utc(a.created_ms),
                    utc(a.last_seen_ms),
                    expires,
                    a.waiting,
                    a.credentials
                        .iter()
                        .map(crate::store::Credential::short)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            out.push_str(&format!(
                "{} account(s); {unused} never logged in again after registering{}\n",
                accounts.len(),
                if unused_account_days == 0 {
                    " (they never expire: unused_account_days = 0)".to_owned()
                } else {
                    format!(" (each expires {unused_account_days} days after its registering connection ended, unless it logs in again)")
                }
            ));
            print_out(&out)
        }
        AccountsCommand::Release { nick } => {
            if release(store, &nick)? {
                print_out(&format!(
                    "released {nick}: the next client to log in with it owns it\n"
                ))
            } else {
                anyhow::bail!("no account named {nick}");
            }
        }
    }
}

/// `mm-server rooms ...` on the store at `store`: the SQLite file (changed directly when no
/// server holds it) or the PostgreSQL database (every change queued for a server).
fn rooms(store: &crate::StoreLocation, cmd: RoomsCommand) -> anyhow::Result<()> {
    use crate::store::postgres::PgStore;
    use crate::StoreLocation::{Postgres, Sqlite};
    let file = match store {
        Sqlite(dir) => dir.join(crate::STORE_FILE),
        Postgres(_) => PathBuf::new(),
    };
    if matches!(store, Sqlite(_)) && !file.exists() {
        anyhow::bail!(
            "no store at {} (the server creates it on first start)",
            file.display()
        );
    }
    let wait = ROOM_REQUEST_WAIT;
    match cmd {
        RoomsCommand::List => print_out(&room_list(&match store {
            Postgres(target) => PgStore::list_rooms(target)?,
            Sqlite(_) => SqliteStore::list_rooms(&file)?,
        })),
        RoomsCommand::Delete { name } => {
            let done = match store {
                Postgres(target) => PgStore::delete_room(target, &name, wait)?,
                Sqlite(_) => SqliteStore::delete_room(&file, &name, wait)?,
            };
            print_out(&room_admin_message(&done, None, StoreKind::of(store)))
        }
        RoomsCommand::SetOwner { name, nick } => {
            let done = match store {
                Postgres(target) => PgStore::set_room_owner(target, &name, &nick, wait)?,
                Sqlite(_) => SqliteStore::set_room_owner(&file, &name, &nick, wait)?,
            };
            print_out(&room_admin_message(
                &done,
                Some(&nick),
                StoreKind::of(store),
            ))
        }
    }
}

/// Which store a room command worked on: what a request no server took means differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    /// A server held the file (its lock), so one is running.
    Sqlite,
    /// Whether a server runs on the database is not known.
    Postgres,
}

impl StoreKind {
    fn of(store: &crate::StoreLocation) -> StoreKind {
        match store {
            crate::StoreLocation::Sqlite(_) => StoreKind::Sqlite,
            crate::StoreLocation::Postgres(_) => StoreKind::Postgres,
        }
    }
}

/// `mm-server rooms list`'s table: one room a line, then a count.
fn room_list(rooms: &[crate::store::RoomRecord]) -> String {
    use mm_common::protocol::Role;
    let mut out = format!(
        "{:<24}  {:>7}  {:<16}  {:<5}  topic\n",
        "room", "members", "owner", "modes"
    );
    for room in rooms {
        let owners: Vec<&str> = room
            .members
            .iter()
            .filter(|m| m.role == Role::Owner)
            .map(|m| m.nick.as_str())
            .collect();
        let owner = if owners.is_empty() {
            "-".to_owned()
        } else {
            owners.join(",")
        };
        let modes = room.modes.letters();
        out.push_str(&format!(
            "{:<24}  {:>7}  {:<16}  {:<5}  {}\n",
            room.name,
            room.members.len(),
            owner,
            if modes.is_empty() { "-" } else { &modes },
            printable(&room.topic)
        ));
    }
    out.push_str(&format!("{} room(s)\n", rooms.len()));
    out
}

/// `text` with control characters (a terminal's escape sequences) shown as `?`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// What `mm-server rooms delete` (`nick` None) or `set-owner` (`nick` the nick typed) says it
/// did.
fn room_admin_message(
    done: &crate::store::sqlite::RoomAdmin,
    nick: Option<&str>,
    kind: StoreKind,
) -> String {
    use crate::store::sqlite::RoomAdmin;
    let wait = ROOM_REQUEST_WAIT.as_secs();
    let what = |name: &str| match nick {
        None => format!("{name} is deleted"),
        Some(nick) => format!("{nick} owns {name}"),
    };
    match done {
        RoomAdmin::Deleted {
            name,
            members,
            lines,
        } => format!(
            "deleted {name} (no server is running): its {members} member(s), its bans and invitations, and its {lines} line(s) of history\n"
        ),
        RoomAdmin::OwnerSet {
            name,
            nick,
            previous,
        } => {
            let before = if previous.is_empty() {
                "it had no owner".to_owned()
            } else {
                format!("{}, its previous owner, is now an operator", previous.join(", "))
            };
            format!("{nick} now owns {name} (no server is running); {before}\n")
        }
        RoomAdmin::AlreadyOwner { name, nick } => {
            format!("{nick} already owns {name}; nothing changed\n")
        }
        RoomAdmin::AppliedByServer { name } => {
            format!("the running server applied it: {}\n", what(name))
        }
        RoomAdmin::TakenByServer { name } => format!(
            "the running server took the request, but after {wait} s the store does not show that {} (it may have found that it no longer applies); check with `mm-server rooms list`\n",
            what(name)
        ),
        RoomAdmin::Queued { name } => {
            let change = match nick {
                None => format!("{name} is deleted"),
                Some(nick) => format!("{nick} becomes the owner of {name}"),
            };
            match kind {
                StoreKind::Sqlite => format!(
                    "queued: the running server will apply it ({change} when it next looks for requests; it did not within {wait} s, and the request stays in the store until a server takes it)\n"
                ),
                StoreKind::Postgres => format!(
                    "queued: no server took the request within {wait} s (none may be running); the request stays in the database, and {change} when a server next starts on it, or when a running one next looks for requests\n"
                ),
            }
        }
    }
}

/// Writes an administration command's output to stdout. A reader that stopped reading (`| head`)
/// is not an error: what it wanted it has. Any other write error is.
fn print_out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
    }
}

/// `YYYY-MM-DD HH:MM` in UTC.
fn utc(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(0);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "?".into(),
    }
}

/// The signals the server handles, registered at start.
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
    #[cfg(not(unix))]
    interrupt: (),
    #[cfg(not(unix))]
    terminate: (),
    #[cfg(not(unix))]
    hangup: (),
}

impl Signals {
    /// Registers handlers for SIGINT, SIGTERM and SIGHUP; one that cannot be registered is
    /// logged and keeps its default effect.
    #[cfg(unix)]
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let register = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                error!(error = %e, "cannot handle {name}; it will end the process without a graceful shutdown");
                None
            }
        };
        Signals {
            interrupt: register(SignalKind::interrupt(), "SIGINT"),
            terminate: register(SignalKind::terminate(), "SIGTERM"),
            hangup: register(SignalKind::hangup(), "SIGHUP"),
        }
    }

    #[cfg(not(unix))]
    fn install() -> Signals {
        Signals {
            interrupt: (),
            terminate: (),
            hangup: (),
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM, including one that arrived before the first poll.
#[cfg(unix)]
async fn shutdown_requested(
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
) {
    async fn wait(signal: Option<tokio::signal::unix::Signal>) {
        if let Some(mut s) = signal {
            if s.recv().await.is_some() {
                return;
            }
        }
        // No handler, or no more signals can arrive: never completes.
        std::future::pending().await
    }
    tokio::select! {
        () = wait(interrupt) => info!("SIGINT received"),
        () = wait(terminate) => info!("SIGTERM received"),
    }
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
async fn shutdown_requested((): (), (): ()) {
    if let Err(e) = tokio::signal::ctrl_c().await {
        error!(error = %e, "cannot handle Ctrl-C; stop the server another way");
        std::future::pending::<()>().await;
    }
    info!("Ctrl-C received");
}

/// On each SIGHUP: reloads the TLS certificate and re-reads the configuration file to name what
/// changed but needs a restart. Runs until aborted.
#[cfg(unix)]
async fn reload_on_hangup(
    hangup: Option<tokio::signal::unix::Signal>,
    cert: Arc<crate::tls::ServerCert>,
    sources: Sources,
    running: Effective,
) {
    let Some(mut hangup) = hangup else { return };
    let running = Arc::new(running);
    while hangup.recv().await.is_some() {
        let (cert, sources, running) = (Arc::clone(&cert), sources.clone(), Arc::clone(&running));
        // File reads: off the async workers.
        if let Err(e) = tokio::task::spawn_blocking(move || reload(&cert, &sources, &running)).await
        {
            error!(error = %e, "SIGHUP: reload failed");
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(
    (): (),
    _cert: Arc<crate::tls::ServerCert>,
    _sources: Sources,
    _running: Effective,
) {
}

/// What SIGHUP does; see [`reload_on_hangup`]. Blocking.
fn reload(cert: &crate::tls::ServerCert, sources: &Sources, running: &Effective) {
    let dir = running.tls_dir.display();
    let before = cert.summary();
    let reloaded = if cert.is_acme() {
        info!(%dir, "SIGHUP: the TLS certificate comes from the ACME server and is renewed by mm-server itself; nothing to reload");
        None
    } else {
        Some(cert.reload(&running.tls_dir))
    };
    match reloaded {
        None => {}
        Some(Ok(now)) if now == before => {
            info!(%dir, fingerprint = %now.fingerprint, "SIGHUP: TLS certificate reloaded; it is unchanged")
        }
        Some(Ok(now)) => {
            info!(%dir, fingerprint = %now.fingerprint, previous = %before.fingerprint, "SIGHUP: TLS certificate reloaded; new connections get it, established ones keep theirs")
        }
        Some(Err(e)) => {
            warn!(%dir, error = %e, fingerprint = %before.fingerprint, "SIGHUP: TLS certificate NOT reloaded; still using the previous one")
        }
    }
    let fixed = "the bind and admin addresses, trusted proxies, data directory, TLS directory, store, bus and limits are not reloaded; restart to change them";
    match sources.load() {
        Err(e) => warn!(error = %format!("{e:#}"), "SIGHUP: configuration not re-read; {fixed}"),
        Ok(new) => {
            let mut changed = Vec::new();
            if new.config.bind != running.config.bind {
                changed.push("bind");
            }
            if new.config.admin != running.config.admin {
                changed.push("admin");
            }
            if new.config.proxy_protocol_from != running.config.proxy_protocol_from {
                changed.push("proxy_protocol_from");
            }
            if new.data_dir != running.data_dir {
                changed.push("data_dir");
            }
            if new.store.to_string() != running.store.to_string() {
                changed.push("store");
            }
            if new.tls_dir != running.tls_dir {
                changed.push("tls_dir");
            }
            if new.bus != running.bus {
                changed.push("bus");
            }
            if format!("{:?}", new.config.limits) != format!("{:?}", running.config.limits) {
                changed.push("limits");
            }
            if changed.is_empty() {
                info!("SIGHUP: {fixed}");
            } else {
                warn!(changed = %changed.join(", "), "SIGHUP: configuration changed but not applied; {fixed}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mm_common::protocol::{Modes, Role};

    use super::*;
    use crate::store::sqlite::RoomAdmin;
    use crate::store::{MemberRecord, RoomId, RoomRecord};

    fn with_store(store: &str) -> Config {
        Config {
            store: Some(store.into()),
            ..Config::default()
        }
    }

    #[test]
    fn the_store_is_sqlite_in_the_data_directory_unless_a_postgresql_url_is_given() {
        let dir = Path::new("/srv/mm");
        let sqlite = store_location(&Config::default(), dir).unwrap();
        assert!(matches!(&sqlite, crate::StoreLocation::Sqlite(d) if d == dir));
        let pg = store_location(&with_store("postgres://mm@127.0.0.1:5432/chat"), dir).unwrap();
        assert!(matches!(pg, crate::StoreLocation::Postgres(_)));
        let err = store_location(&with_store("sqlite:///tmp/x.db"), dir).unwrap_err();
        assert!(err.to_string().contains("PostgreSQL URL"), "{err}");
    }

    #[test]
    fn a_store_url_with_a_password_is_refused_without_repeating_it() {
        let err = store_location(
            &with_store("postgres://mm:hunter2@127.0.0.1:5432/chat"),
            Path::new("/srv/mm"),
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("MM_STORE_PASSWORD"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[cfg(unix)]
    #[test]
    fn a_store_password_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "hunter2\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = Config {
            store_password_file: Some(file.clone()),
            ..with_store("postgres://mm@127.0.0.1:5432/chat")
        };
        let err = store_location(&config, dir.path()).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(&read_password_file(&file).unwrap()[..], b"hunter2");
        assert!(matches!(
            store_location(&config, dir.path()).unwrap(),
            crate::StoreLocation::Postgres(_)
        ));
    }

    /// `args` for `mm-server rooms ...` on the store `url`, with a data directory of its own.
    fn rooms_args(command: &[&str], url: &str, data: &Path) -> Args {
        let mut argv = vec!["mm-server"];
        argv.extend_from_slice(command);
        argv.extend_from_slice(&["--store", url]);
        let mut args = Args::try_parse_from(argv).unwrap();
        args.data = Some(data.to_path_buf());
        args
    }

    #[tokio::test]
    async fn rooms_works_on_a_postgresql_store_and_touches_no_file() {
        use crate::store::tests::rooms::{change, closed, member, room};
        use crate::store::tests::{clock, Place, Postgres, OPTS_LONG};
        let data = tempfile::tempdir().unwrap();
        // A database that cannot be reached: the command says so (it went there, not to a
        // file in the data directory).
        for command in [&["rooms", "list"][..], &["rooms", "delete", "dev"]] {
            let args = rooms_args(command, "postgres://mm@127.0.0.1:1/chat", data.path());
            let err = format!("{:#}", run(args).await.unwrap_err());
            assert!(err.contains("127.0.0.1:1"), "{err}");
            assert!(!err.contains("does not work"), "{err}");
        }
        // A database with a store: the room and the member are looked up in it.
        let place = Postgres::new();
        let (store, _) = place.open(OPTS_LONG, clock()).unwrap();
        change(
            &store,
            crate::store::RoomChange::Create(room(
                5,
                "#Dev",
                vec![member("alice", Role::Owner, 0)],
            )),
        )
        .await;
        closed(store).await;
        let url = crate::store::tests::with_db(&place.server, &place.name);
        let run_rooms =
            |command: &'static [&'static str]| run(rooms_args(command, &url, data.path()));
        run_rooms(&["rooms", "list"]).await.unwrap();
        let err = run_rooms(&["rooms", "delete", "ops"]).await.unwrap_err();
        assert_eq!(err.to_string(), "no such room: #ops");
        let err = run_rooms(&["rooms", "set-owner", "dev", "bob"])
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "bob is not a member of #Dev");
        // Already the owner: nothing queued, and so no wait.
        run_rooms(&["rooms", "set-owner", "DEV", "Alice"])
            .await
            .unwrap();
        let queued: i64 = place.admin({
            let url = url.clone();
            move |_| {
                let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
                c.query_one("SELECT COUNT(*) FROM room_requests", &[])
                    .unwrap()
                    .get(0)
            }
        });
        assert_eq!(queued, 0);
        assert!(!data.path().join(crate::STORE_FILE).exists());
    }

    #[test]
    fn the_room_list_names_owner_modes_and_topic_and_neutralises_escapes() {
        let member = |nick: &str, role| MemberRecord {
            key: nick.to_ascii_lowercase(),
            nick: nick.into(),
            role,
            seen: 0,
        };
        let room = RoomRecord {
            id: RoomId(2),
            name: "#Dev".into(),
            topic: "v5\x1b[2J".into(),
            topic_by: "alice".into(),
            topic_ts: 1,
            modes: Modes {
                invite_only: true,
                topic_ops: false,
                moderated: true,
            },
            created_ms: 1,
            active_ms: 1,
            members: vec![member("Bob", Role::Op), member("alice", Role::Owner)],
            bans: Vec::new(),
            invites: Vec::new(),
        };
        let empty = RoomRecord {
            id: RoomId(3),
            name: "#empty".into(),
            topic: String::new(),
            modes: Modes::default(),
            members: Vec::new(),
            ..room.clone()
        };
        let out = room_list(&[room, empty]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        let dev: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(dev, ["#Dev", "2", "alice", "+im", "v5?[2J"]);
        let empty: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(empty, ["#empty", "0", "-", "-"]);
        assert_eq!(lines[3], "2 room(s)");
    }

    #[test]
    fn the_web_url_uses_the_bound_address_or_a_name_the_certificate_covers() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            web_url(at("127.0.0.1:7667"), None, None),
            "https://127.0.0.1:7667/"
        );
        assert_eq!(web_url(at("[::1]:7667"), None, None), "https://[::1]:7667/");
        let names = mm_certs::Names {
            dns: vec!["localhost".into(), "chat.example".into()],
            ips: vec!["127.0.0.1".parse().unwrap(), "192.0.2.7".parse().unwrap()],
        };
        assert_eq!(
            web_url(at("0.0.0.0:7667"), Some(&names), Some("box")),
            "https://chat.example:7667/"
        );
        let ips = mm_certs::Names {
            dns: vec!["localhost".into()],
            ..names.clone()
        };
        assert_eq!(
            web_url(at("[::]:9"), Some(&ips), Some("box")),
            "https://192.0.2.7:9/"
        );
        let none = mm_certs::Names::default();
        assert_eq!(
            web_url(at("0.0.0.0:1"), Some(&none), Some("box")),
            "https://box:1/"
        );
        assert_eq!(web_url(at("0.0.0.0:1"), None, None), "https://localhost:1/");
    }

    #[test]
    fn rooms_subcommands_parse() {
        use clap::CommandFactory;
        Args::command().debug_assert();
        let args = Args::try_parse_from(["mm-server", "rooms", "set-owner", "dev", "bob"]).unwrap();
        assert!(matches!(
            args.command,
            Some(Command::Rooms(RoomsCommand::SetOwner { name, nick })) if name == "dev" && nick == "bob"
        ));
        let args = Args::try_parse_from(["mm-server", "rooms", "delete", "#dev"]).unwrap();
        assert!(matches!(
            args.command,
            Some(Command::Rooms(RoomsCommand::Delete { name })) if name == "#dev"
        ));
        assert!(Args::try_parse_from(["mm-server", "rooms", "set-owner", "dev"]).is_err());
    }

    #[test]
    fn room_commands_say_what_happened_and_nothing_more() {
        let name = || "#Dev".to_string();
        let applied = RoomAdmin::AppliedByServer { name: name() };
        let sqlite = StoreKind::Sqlite;
        assert!(
            room_admin_message(&applied, None, sqlite).starts_with("the running server applied it")
        );
        let queued = RoomAdmin::Queued { name: name() };
        let on_file = room_admin_message(&queued, Some("bob"), sqlite);
        assert!(on_file.starts_with("queued: the running server will apply it"));
        assert!(!on_file.contains("applied"), "{on_file}");
        // On PostgreSQL no server may be running: not claimed, and when it happens is said.
        let on_db = room_admin_message(&queued, Some("bob"), StoreKind::Postgres);
        assert!(
            on_db.starts_with("queued: no server took the request within 10 s"),
            "{on_db}"
        );
        assert!(
            on_db.contains("bob becomes the owner of #Dev when a server next starts"),
            "{on_db}"
        );
        assert!(!on_db.contains("running server will"), "{on_db}");
        let taken = room_admin_message(&RoomAdmin::TakenByServer { name: name() }, None, sqlite);
        assert!(!taken.contains("applied"), "{taken}");
        let owner = RoomAdmin::OwnerSet {
            name: name(),
            nick: "Bob".into(),
            previous: vec!["alice".into()],
        };
        assert_eq!(
            room_admin_message(&owner, Some("bob"), sqlite),
            "Bob now owns #Dev (no server is running); alice, its previous owner, is now an operator\n"
        );
    }
}
