//! The `mm-server` command line.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing::{info, warn};

use crate::config::Config;
use crate::store::sqlite::SqliteStore;

/// Multi-Messenger chat server.
///
/// With no options it listens on 127.0.0.1:7667 and, on first start, generates its TLS
/// certificates (a CA and a server certificate) and its store in its data directory.
#[derive(Debug, Parser)]
#[command(name = "mm-server", version)]
pub struct Args {
    /// Administration commands (the server is started when none is given)
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Data directory: the store (mm-server.db) and, unless --tls-dir is given, tls/
    /// [default: $MM_SERVER_DATA or ~/.local/share/multi-messenger/server]
    #[arg(long, value_name = "DIR", global = true)]
    pub data: Option<PathBuf>,
    /// Address and port to listen on, e.g. 0.0.0.0:7667 for a LAN [default: 127.0.0.1:7667]
    #[arg(long, value_name = "ADDR:PORT")]
    pub bind: Option<SocketAddr>,
    /// Directory with server.pem and server.key, generated if empty
    /// [default: $MM_SERVER_DATA/tls or ~/.local/share/multi-messenger/server/tls]
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
    /// TOML configuration file (see mm-server.example.toml); flags override it
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

/// Administration commands; they work on the store while a server runs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Registered nicks (each owned by one client certificate)
    #[command(subcommand)]
    Accounts(AccountsCommand),
}

/// `mm-server accounts ...`
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// List accounts: nick, certificate fingerprint, registration and last-seen times
    List,
    /// Free a nick so that the next client to log in with it owns it (e.g. a user who lost
    /// their key). Deletes the messages waiting for it.
    Release {
        /// The nick (any case)
        nick: String,
    },
}

/// Runs `mm-server` with the process arguments.
pub fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mm-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mm-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(dir) = args.data {
        config.data_dir = Some(dir);
    }
    let data_dir = match config.data_dir.clone() {
        Some(dir) => dir,
        None => mm_certs::default_server_data_dir()
            .context("no home directory for the server's data; pass --data DIR")?,
    };
    if let Some(Command::Accounts(cmd)) = args.command {
        return accounts(&data_dir.join(crate::STORE_FILE), cmd);
    }
    if let Some(bind) = args.bind {
        config.bind = bind;
    }
    if let Some(dir) = args.tls_dir {
        config.tls_dir = Some(dir);
    }
    let tls_dir = config
        .tls_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("tls"));

    match mm_certs::ensure_server_files(&tls_dir)? {
        mm_certs::Ensured::Existing => info!(dir = %tls_dir.display(), "using TLS certificate"),
        mm_certs::Ensured::Generated(g) => {
            info!(dir = %tls_dir.display(), covers = %g.covers.join(", "), "generated a CA and a server certificate");
            info!(ca = %g.ca_cert.display(), fingerprint = %g.ca_fingerprint, "clients trust this CA with --ca, or by comparing this fingerprint on first contact");
            if !config.bind.ip().is_loopback() {
                warn!("the generated certificate covers only localhost; for LAN clients run `mm-certs --force --ip <LAN address>` and restart");
            }
        }
    }
    let tls = crate::tls::server_config_from_dir(&tls_dir)?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    if let Ok(ca) = mm_certs::load_certs(&tls_dir.join(mm_certs::CA_CERT)) {
        if let Some(ca) = ca.first() {
            info!(fingerprint = %mm_certs::fingerprint(ca), "CA fingerprint");
        }
    }
    crate::run(listener, tls, config.limits, &data_dir, shutdown_signal()).await
}

fn accounts(store: &std::path::Path, cmd: AccountsCommand) -> anyhow::Result<()> {
    if !store.exists() {
        anyhow::bail!(
            "no store at {} (the server creates it on first start)",
            store.display()
        );
    }
    match cmd {
        AccountsCommand::List => {
            let accounts = SqliteStore::list_accounts(store)?;
            println!(
                "{:<32}  {:<16}  {:<16}  {:>7}  fingerprint (SHA-256)",
                "nick", "registered", "last seen", "waiting"
            );
            for a in &accounts {
                println!(
                    "{:<32}  {:<16}  {:<16}  {:>7}  {}",
                    a.nick,
                    utc(a.created_ms),
                    utc(a.last_seen_ms),
                    a.waiting,
                    a.fingerprint
                );
            }
            println!("{} account(s)", accounts.len());
        }
        AccountsCommand::Release { nick } => {
            if SqliteStore::release(store, &nick)? {
                println!("released {nick}: the next client to log in with it owns it");
            } else {
                anyhow::bail!("no account named {nick}");
            }
        }
    }
    Ok(())
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

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
