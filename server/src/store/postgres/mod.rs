//! The PostgreSQL store (`mm-server --store postgres://USER@HOST:PORT/DB`): the same tables,
//! semantics and writer as the SQLite store, in a PostgreSQL database.
//!
//! Shape: the shared writer thread ([`crate::store::writer`]: batching, one transaction per
//! batch, answers after the commit, retries with backoff while commits fail, reads answered
//! meanwhile, a bounded give-up at close) runs on [`PgBackend`], which owns one connection.
//! The driver is rust-postgres: `postgres`, the blocking facade of `tokio-postgres` that drives
//! the async client on a current-thread runtime of its own. A dedicated thread with its own
//! runtime, rather than a task on the server's runtime, because the writer must be able to
//! block (waiting for the next command, backing off) without holding up the hub, and so that
//! both backends share one writer, written once.
//!
//! Every command of a batch runs in a savepoint: PostgreSQL aborts a whole transaction on any
//! error, so an operation that fails on its own (a constraint, a value it cannot store) is
//! rolled back alone and answered as failed, and the batch goes on; any other failure (the
//! connection lost, the server shutting down) fails the batch, which the writer retries whole,
//! reconnecting first.
//!
//! One server per database: the writer's session holds `pg_try_advisory_lock(`[`LOCK_KEY`]`)`
//! from the start (taken again when it reconnects); a second server is refused with
//! [`StoreError::Locked`]. Nodes of a cluster ([`PgTarget::set_cluster`]) hold it shared
//! instead: they open the database side by side, and a one-server mm-server and nodes keep
//! each other out.
//!
//! Links: a host other than loopback (127.0.0.0/8, ::1, `localhost`) or a unix socket needs
//! TLS with certificate and host name verification (`sslmode=verify-full`), rustls with the
//! `ring` provider, trusting `sslrootcert=FILE` from the URL or else the system's roots. A
//! password is never in the URL (it would be on the command line): it comes from the
//! environment or a file ([`PgTarget::set_password`]).
//!
//! Layout: [`PgTarget`] (here) is where and how to connect; `schema` migrates; one module per
//! table group (`accounts`, `mailbox`, `history`, `rooms`, `keys`, `meta`) holds the SQL;
//! `admin` is what `mm-server accounts` does, on a connection of its own.

mod accounts;
mod admin;
mod history;
mod keys;
mod mailbox;
mod meta;
mod rooms;
mod schema;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::{Client, Error, Transaction};
use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::{error, info, warn};

use super::command::{Cmd, Counts, Decision, Outcome};
use super::writer::{failed, Backend, BatchStore, Tuning, TUNING};
use super::{Line, Loaded, Mail, Options, RoomId, StoreError};
use crate::clock::Clock;

/// The advisory lock a server holds on its database ("mm-store" in ASCII).
pub const LOCK_KEY: i64 = 0x6d6d_2d73_746f_7265;

/// The PostgreSQL store.
pub type PgStore = BatchStore<PgBackend>;

/// Where the PostgreSQL store is and how to reach it.
#[derive(Clone)]
pub struct PgTarget {
    config: Config,
    /// Connect with TLS (verify-full); plain only on loopback.
    tls: bool,
    /// `sslrootcert` from the URL: the CA certificates to trust instead of the system's.
    root: Option<PathBuf>,
    /// The URL as given (it holds no password).
    shown: String,
    /// Opened as one node of several (`--bus`): no one-server lock and fence; see
    /// [`PgTarget::set_cluster`].
    cluster: bool,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("PgTarget")
            .field("url", &self.shown)
            .field("tls", &self.tls)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Whether `url` names a PostgreSQL store (`postgres://` or `postgresql://`).
pub fn is_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl PgTarget {
    /// Reads a `postgres://USER@HOST:PORT/DB?…` URL. Refused: a password in it (it would be
    /// seen on the command line and in process lists), and a host off loopback with TLS
    /// turned off (`sslmode=disable`, `allow` or `prefer`): every link of the server is TLS.
    /// `sslrootcert=FILE` names the CA certificates to trust (else the system's roots).
    ///
    /// # Errors
    /// What is wrong with it, in words for the operator.
    pub fn parse(url: &str) -> Result<PgTarget, String> {
        if !is_url(url) {
            return Err(format!(
                "{url:?} is not a PostgreSQL URL (postgres://USER@HOST:PORT/DB)"
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        let mut sslmode = None;
        let mut root = None;
        for param in query.split('&').filter(|p| !p.is_empty()) {
            match param.split_once('=') {
                Some(("sslmode", v)) => sslmode = Some(v.to_owned()),
                Some(("sslrootcert", v)) => root = Some(PathBuf::from(v)),
                _ => kept.push(param),
            }
        }
        let rebuilt = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        // The driver's own errors could quote the URL; ours never hold more than the host.
        let mut config =
            Config::from_str(&rebuilt).map_err(|e| format!("cannot read the store's URL: {e}"))?;
        // PostgreSQL's NOTICEs (`relation ... already exists, skipping` at every start) are
        // not the operator's business; warnings and errors still come through.
        if config.get_options().is_none() {
            config.options("-c client_min_messages=warning");
        }
        if config.get_password().is_some() {
            return Err("the store's URL holds a password; a URL is shown in command lines, configuration files and logs, so the password goes in MM_STORE_PASSWORD or in a file named by store_password_file in the configuration (mode 600), and the URL without it".into());
        }
        let local = is_local(&config);
        let tls = match sslmode.as_deref() {
            None | Some("disable" | "allow" | "prefer") if local => false,
            None | Some("require" | "verify-ca" | "verify-full") => true,
            Some("disable" | "allow" | "prefer") => {
                return Err(format!(
                    "the store's host {} is not on this machine, so its connection must use TLS with verification; remove sslmode={} from the URL (TLS with verify-full is the default off loopback)",
                    hosts(&config),
                    sslmode.unwrap_or_default()
                ))
            }
            Some(other) => return Err(format!("unknown sslmode={other} in the store's URL")),
        };
        config.ssl_mode(if tls {
            SslMode::Require
        } else {
            SslMode::Disable
        });
        config.connect_timeout(Duration::from_secs(5));
        // A link that goes silent (a cut, a host gone) fails within about half a minute rather
        // than holding the writer (and every reply) for the system's two hours.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(15))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(30));
        config.application_name("mm-server");
        Ok(PgTarget {
            config,
            tls,
            root,
            shown: url.to_owned(),
            cluster: false,
        })
    }

    /// Sets the password (from `MM_STORE_PASSWORD` or `store_password_file`).
    pub fn set_password(&mut self, password: &[u8]) {
        self.config.password(password);
    }

    /// Whether the connection uses TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The database's name, if the URL gives one.
    pub fn dbname(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// Opens the store as one node of several sharing the database (`--bus`, CLUSTER.md):
    /// the store's session takes the database's lock *shared* (`pg_try_advisory_lock_shared`)
    /// rather than alone, so that nodes open it side by side while a one-server mm-server
    /// still cannot (and a node cannot while a one-server mm-server holds it); the
    /// schema is migrated under a transaction-level lock (several nodes may start at once);
    /// there is no `meta.owner` fence between nodes (the node leases fence what nodes own),
    /// but opening still writes a new mark there, so that a one-server mm-server that lost its
    /// session meanwhile is fenced when it reconnects; and each node records its batches
    /// under a key of its own (`batch_seq.MARK`), removed at a clean close.
    pub fn set_cluster(&mut self, on: bool) {
        self.cluster = on;
    }

    /// Whether the store is opened as one node of several ([`PgTarget::set_cluster`]).
    pub fn cluster(&self) -> bool {
        self.cluster
    }

    /// Connects (TLS as decided by [`PgTarget::parse`]).
    fn connect(&self) -> Result<Client, PgError> {
        let tls = self.tls_config().map_err(PgError::Tls)?;
        Ok(postgres::Config::from(self.config.clone()).connect(MakeRustlsConnect::new(tls))?)
    }

    /// An async connection on the caller's tokio runtime with the same settings and TLS as the
    /// store's (for the node leases, which must not wait behind the writer's batches). The
    /// connection's task is spawned on the runtime; it ends when the client is dropped.
    pub(crate) async fn connect_async(&self) -> Result<tokio_postgres::Client, PgError> {
        let tls = self.tls_config().map_err(PgError::Tls)?;
        let (client, connection) = self.config.connect(MakeRustlsConnect::new(tls)).await?;
        let shown = self.shown.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                warn!(store = %shown, error = %describe(&e), "cluster: the connection to PostgreSQL ended");
            }
        });
        Ok(client)
    }

    /// rustls with the ring provider, trusting `sslrootcert` or else the system's roots.
    fn tls_config(&self) -> Result<rustls::ClientConfig, String> {
        let mut roots = rustls::RootCertStore::empty();
        if self.tls {
            match &self.root {
                Some(file) => {
                    use rustls_pki_types::pem::PemObject;
                    let certs = rustls_pki_types::CertificateDer::pem_file_iter(file)
                        .map_err(|e| format!("cannot read sslrootcert {}: {e}", file.display()))?;
                    for cert in certs {
                        let cert = cert.map_err(|e| {
                            format!("cannot read sslrootcert {}: {e}", file.display())
                        })?;
                        roots
                            .add(cert)
                            .map_err(|e| format!("sslrootcert {}: {e}", file.display()))?;
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    for cert in found.certs {
                        // A system root rustls cannot use is skipped, as browsers do.
                        let _ = roots.add(cert);
                    }
                }
            }
            if roots.is_empty() {
                return Err("no CA certificate to verify the store's server with (name them with sslrootcert=FILE in the URL)".into());
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// Whether every host the URL names is on this machine: a unix socket, `localhost`, or a
/// loopback address (and so is every `hostaddr`).
fn is_local(config: &Config) -> bool {
    let hosts = config.get_hosts().iter().all(|h| match h {
        Host::Tcp(name) => {
            let name = name.trim_start_matches('[').trim_end_matches(']');
            name.eq_ignore_ascii_case("localhost")
                || IpAddr::from_str(name).is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    });
    hosts && config.get_hostaddrs().iter().all(IpAddr::is_loopback)
}

fn hosts(config: &Config) -> String {
    config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            Host::Unix(path) => path.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A failure of the database, as the writer sees it.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// From PostgreSQL or the link to it.
    #[error("{}", describe(.0))]
    Db(#[from] Error),
    /// Reconnected, but another server holds the database's lock now.
    #[error("another mm-server holds the database's lock (pg_try_advisory_lock({LOCK_KEY}))")]
    Locked,
    /// Reconnected, and another server opened the database while this one's session was
    /// gone (the lock goes with the session): this server's view of it (ids, rooms, accounts
    /// in memory) is stale, and it must never write the database again.
    #[error("another mm-server opened this database while this one was disconnected from it; this server no longer writes it (what it accepted since is NOT stored): stop it, and run one mm-server per database")]
    Fenced,
    /// TLS could not be set up.
    #[error("{0}")]
    Tls(String),
    /// Test hook: the connection was lost right after a commit.
    #[cfg(test)]
    #[error("the connection was lost at the commit (test)")]
    LostAtCommit,
}

/// The driver's error with PostgreSQL's own message, if any.
pub(crate) fn describe(e: &Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{e}: {} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// Sorting a failure: the operation's own (answered, the batch goes on) or the database's.
pub(super) trait Failure: From<Error> {
    /// `Ok(self)` if only the operation failed, `Err` with the database's failure otherwise.
    fn split(self) -> Result<Self, Error>;
}

impl Failure for Error {
    fn split(self) -> Result<Self, Error> {
        if self.is_closed() {
            return Err(self);
        }
        match self.code().map(|c| c.code()) {
            // Connection, transaction state, rollback (serialization, deadlock), resources,
            // limits, object state, operator intervention (shutdown), system and internal
            // errors: the database's, retried.
            Some(code)
                if ["08", "25", "40", "53", "54", "55", "57", "58", "XX"]
                    .iter()
                    .any(|class| code.starts_with(class)) =>
            {
                Err(self)
            }
            // Data and constraint errors, and errors converting a value: this operation's.
            Some(_) => Ok(self),
            None if self.as_db_error().is_none()
                && std::error::Error::source(&self).is_some_and(|s| s.is::<std::io::Error>()) =>
            {
                Err(self)
            }
            None => Ok(self),
        }
    }
}

/// Runs `f` as one unit inside the batch's transaction (a savepoint): if it fails on its own,
/// what it wrote is rolled back and its failure is the answer; if the database fails, the
/// batch fails.
pub(super) fn unit<T, E: Failure>(
    tx: &mut Transaction<'_>,
    f: impl FnOnce(&mut Transaction<'_>) -> Result<T, E>,
) -> Result<Result<T, E>, Error> {
    let mut savepoint = tx.transaction()?;
    match f(&mut savepoint) {
        Ok(value) => {
            savepoint.commit()?;
            Ok(Ok(value))
        }
        Err(e) => {
            let own = e.split()?;
            savepoint.rollback()?;
            Ok(Err(own))
        }
    }
}

/// The writer's connection, made again after it is lost.
pub struct PgBackend {
    target: PgTarget,
    client: Option<Client>,
    /// The number of the last batch committed (`meta.batch_seq`), written in each batch's
    /// transaction: a commit whose answer was lost (the connection dropped) is looked up
    /// before the batch runs again, so that nothing is applied twice (a line stored, then
    /// refused as a duplicate of itself; an account registered, then "known").
    seq: i64,
    /// Test hook: lose the connection right after the next commit.
    #[cfg(test)]
    pub(crate) lose_at_commit: bool,
    /// How long a statement waits for a lock another session holds (an operator's command)
    /// before the commit counts as failed: [`Tuning::busy_timeout`], shorter while retrying.
    lock_timeout: Duration,
    /// This server's mark in `meta.owner`, written when it opened the store under the lock.
    /// The lock is the session's: when the session is lost another server can open the
    /// database; a reconnection that finds another mark in `meta.owner` is [`PgError::Fenced`].
    owner: i64,
    /// Set once fenced: no connection is made again.
    fenced: bool,
    /// One node of several ([`PgTarget::set_cluster`]): the lock shared, no `owner` check.
    cluster: bool,
    /// The `meta` key of [`PgBackend::seq`]: `batch_seq`, or `batch_seq.MARK` for a node.
    seq_key: String,
    /// On a node: when the running counts were last read from the database (the other nodes
    /// add accounts and waiting lines too): at the first batch, then every
    /// [`COUNTS_EVERY`].
    counted: Option<std::time::Instant>,
}

/// How stale a node's running counts (accounts, waiting lines) may be: `max_accounts` and
/// `mailbox_total` hold across nodes but for what other nodes added within this time.
pub const COUNTS_EVERY: Duration = Duration::from_secs(5);

impl PgBackend {
    /// The connection, made (and the lock taken) if there is none or it was lost.
    fn client(&mut self) -> Result<&mut Client, PgError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            warn!(store = %self.target, "store: the connection to PostgreSQL was lost; connecting again");
            self.client = None;
        }
        if self.fenced {
            return Err(PgError::Fenced);
        }
        let client = match self.client.take() {
            Some(client) => client,
            None => {
                let mut client = self.target.connect()?;
                lock(&mut client, self.cluster)?;
                if !self.cluster && meta::value(&mut client, "owner")? != self.owner {
                    self.fenced = true;
                    error!(store = %self.target, "store: {}", PgError::Fenced);
                    return Err(PgError::Fenced);
                }
                set_lock_timeout(&mut client, self.lock_timeout)?;
                client
            }
        };
        Ok(self.client.insert(client))
    }

    /// Runs `f` on the connection; a lost connection is dropped, to be made again.
    fn with<T, E: Into<PgError>>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, E>,
    ) -> Result<T, PgError> {
        let result = f(self.client()?).map_err(Into::into);
        if let Err(PgError::Db(e)) = &result {
            if e.is_closed() {
                self.client = None;
            }
        }
        result
    }
}

/// Sets how long this session's statements wait for a lock.
fn set_lock_timeout(client: &mut Client, wait: Duration) -> Result<(), Error> {
    client.batch_execute(&format!("SET lock_timeout = {}", wait.as_millis().max(1)))
}

impl PgBackend {
    /// After a commit whose answer was lost: whether batch `seq` committed, asked on a
    /// connection of its own (a few tries; without the server's lock, which the lost session
    /// may still hold for a while). `false` also when the database cannot be asked: the batch
    /// is then run again, and a line of it may be refused as a duplicate of itself (logged).
    fn committed_after_all(&mut self, seq: i64) -> bool {
        self.client = None;
        for attempt in 1..=3u32 {
            let asked = self
                .target
                .connect()
                .and_then(|mut c| Ok(meta::value(&mut c, &self.seq_key)?));
            match asked {
                Ok(stored) => return stored >= seq,
                Err(_) => std::thread::sleep(Duration::from_millis(50) * attempt),
            }
        }
        warn!("store: a commit's answer was lost and the database cannot be asked whether it committed; the batch is run again, so a line of it may be refused as a duplicate of itself");
        false
    }
}

/// Takes the database's advisory lock on this session: alone (one server), or shared with the
/// other nodes of a cluster (which still keeps out a one-server mm-server, and is kept out by
/// one).
fn lock(client: &mut Client, cluster: bool) -> Result<(), PgError> {
    let sql = if cluster {
        "SELECT pg_try_advisory_lock_shared($1)"
    } else {
        "SELECT pg_try_advisory_lock($1)"
    };
    let held: bool = client.query_one(sql, &[&LOCK_KEY])?.try_get(0)?;
    if held {
        Ok(())
    } else {
        Err(PgError::Locked)
    }
}

impl Backend for PgBackend {
    type Error = PgError;

    fn commit(
        &mut self,
        batch: &[Cmd],
        opts: Options,
        counts: &mut Counts,
        outcomes: &mut Vec<Outcome>,
    ) -> Result<(), PgError> {
        let seq = self.seq + 1;
        let mut at_commit = false;
        let seq_key = self.seq_key.clone();
        let cluster = self.target.cluster;
        let recount = cluster && self.counted.is_none_or(|t| t.elapsed() >= COUNTS_EVERY);
        let result = self.with(|client| -> Result<(), Error> {
            let mut tx = client.transaction()?;
            if recount {
                counts.accounts = accounts::count(&mut tx)?;
                counts.waiting = mailbox::total(&mut tx)?;
            }
            let mut max_id = 0;
            let mut appended = Vec::new();
            for cmd in batch {
                cmd.track(&mut max_id, &mut appended);
                outcomes.push(apply(&mut tx, cmd, opts, counts, cluster)?);
            }
            for room in appended {
                // Keep only the newest `history_len` lines of each room that got one.
                if let Err(e) = unit(&mut tx, |tx| history::trim(tx, room, opts.history_len))? {
                    warn!(error = %e, room = room.0, "store: history not trimmed");
                }
            }
            if max_id > 0 {
                meta::record_max(&mut tx, "last_id", max_id)?;
            }
            meta::set(&mut tx, &seq_key, seq)?;
            at_commit = true;
            tx.commit()
        });
        #[cfg(test)]
        let result = match result {
            Ok(()) if std::mem::take(&mut self.lose_at_commit) => {
                self.client = None;
                Err(PgError::LostAtCommit)
            }
            other => other,
        };
        if recount && result.is_ok() {
            self.counted = Some(std::time::Instant::now());
        }
        match result {
            Ok(()) => {
                self.seq = seq;
                Ok(())
            }
            Err(e) if at_commit && self.committed_after_all(seq) => {
                info!(error = %e, "store: a commit's answer was lost, but it had committed");
                self.seq = seq;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn evaluate(
        &mut self,
        nick: &str,
        credential: &str,
        max_accounts: usize,
        accounts: &mut u64,
    ) -> Result<Decision, PgError> {
        self.with(|c| accounts::evaluate(c, nick, credential, max_accounts, accounts))
    }

    fn waiting(&mut self, key: &str, limit: usize) -> Result<Vec<Mail>, PgError> {
        self.with(|c| mailbox::waiting(c, key, limit))
    }

    fn recent(&mut self, room: RoomId, n: usize) -> Result<Vec<Line>, PgError> {
        self.with(|c| history::recent(c, room, n))
    }

    fn retrying(&mut self, on: bool, tuning: &Tuning) {
        self.lock_timeout = if on {
            tuning.retry_busy_timeout
        } else {
            tuning.busy_timeout
        };
        if let Some(client) = self.client.as_mut().filter(|c| !c.is_closed()) {
            if let Err(e) = set_lock_timeout(client, self.lock_timeout) {
                warn!(error = %describe(&e), "store: cannot change the lock wait");
            }
        }
    }

    fn finish(&mut self) {
        if self.cluster && !self.fenced {
            // This node's batch counter is of no use once it is closed (best effort: a row
            // left by a node that died is harmless).
            if let Some(client) = self.client.as_mut().filter(|c| !c.is_closed()) {
                if let Err(e) = client.execute("DELETE FROM meta WHERE key = $1", &[&self.seq_key])
                {
                    warn!(error = %describe(&e), "store: this node's batch counter not removed");
                }
            }
        }
        // Closing the session releases the advisory lock.
        self.client = None;
    }
}

/// Runs one command inside the batch's transaction, in a savepoint of its own. `Err` is a
/// failure of the database (the batch is retried); the command's own failure is its answer.
fn apply(
    tx: &mut Transaction<'_>,
    cmd: &Cmd,
    opts: Options,
    counts: &mut Counts,
    cluster: bool,
) -> Result<Outcome, Error> {
    // Counts change only if the unit holds.
    let mut scratch = *counts;
    let outcome = match cmd {
        Cmd::Check {
            nick, credential, ..
        } => Outcome::Check(
            unit(tx, |tx| {
                accounts::evaluate(
                    tx,
                    nick,
                    credential,
                    opts.max_accounts,
                    &mut scratch.accounts,
                )
            })?
            .map(Decision::outcome)
            .map_err(failed),
        ),
        Cmd::Login {
            nick,
            credential,
            now_ms,
            register,
            ..
        } => Outcome::Login(
            unit(tx, |tx| {
                super::command::login(tx, nick, credential, *now_ms, *register, opts, &mut scratch)
            })?
            .map_err(failed),
        ),
        Cmd::Abandon {
            key,
            credential,
            created_ms,
        } => {
            // Required: if it fails, the batch is retried.
            accounts::abandon(tx, key, credential, *created_ms, &mut scratch)?;
            Outcome::Nothing
        }
        Cmd::Returned {
            key,
            credential,
            now_ms,
        } => {
            accounts::returned(tx, key, credential, *now_ms)?;
            Outcome::Nothing
        }
        Cmd::Expire {
            cutoff_ms,
            online,
            limit,
            ..
        } => Outcome::Expired(
            unit(tx, |tx| {
                accounts::expire(tx, *cutoff_ms, online, *limit, &mut scratch)
            })?
            .map_err(failed),
        ),
        Cmd::Waiting { key, .. } => Outcome::Waiting(
            unit(tx, |tx| mailbox::waiting(tx, key, opts.mailbox_ceiling()))?.map_err(failed),
        ),
        Cmd::Delivered { key, up_to, given } => {
            let deleted = unit(tx, |tx| {
                if cluster && !given.is_empty() {
                    mailbox::delivered_ids(tx, key, given)
                } else {
                    mailbox::delivered(tx, key, *up_to)
                }
            })?;
            match deleted {
                Ok(n) => scratch.waiting = scratch.waiting.saturating_sub(n),
                Err(e) => warn!(error = %e, "store: acknowledged lines not deleted"),
            }
            Outcome::Nothing
        }
        Cmd::LoggedOut {
            key,
            now_ms,
            durable,
        } => {
            if *durable {
                accounts::logged_out(tx, key, *now_ms)?;
            } else if let Err(e) = unit(tx, |tx| accounts::logged_out(tx, key, *now_ms))? {
                warn!(error = %e, "store: last-seen time not recorded");
            }
            Outcome::Nothing
        }
        Cmd::Public { line, .. } => Outcome::Public(
            unit(tx, |tx| history::append(tx, line))?
                .map(drop)
                .map_err(failed),
        ),
        Cmd::Room { change, .. } => {
            Outcome::Room(unit(tx, |tx| rooms::apply(tx, change))?.map_err(failed))
        }
        Cmd::RoomHistory { room, limit, .. } => Outcome::RoomHistory(
            unit(tx, |tx| {
                history::recent(tx, *room, (*limit).min(opts.history_len))
            })?
            .map_err(failed),
        ),
        Cmd::AdminRequests { .. } => {
            Outcome::Requests(unit(tx, rooms::take_requests)?.map_err(failed))
        }
        Cmd::Mail {
            to_key,
            mail,
            arrival,
            ..
        } => Outcome::Queue(
            unit(tx, |tx| {
                let registered = accounts::exists(tx, to_key)?;
                mailbox::queue(
                    tx,
                    to_key,
                    registered,
                    mail,
                    *arrival,
                    opts,
                    &mut scratch.waiting,
                    cluster,
                )
            })?
            .map_err(failed),
        ),
        Cmd::PublishKeys { key, keys, .. } => Outcome::Published(
            unit(tx, |tx| keys::publish(tx, key, keys))?
                .map_err(failed)
                .and_then(|p| p.ok_or_else(|| StoreError::Failed("no such account".into()))),
        ),
        Cmd::TakeBundle { key, one_time, .. } => {
            Outcome::Taken(unit(tx, |tx| keys::take(tx, key, *one_time))?.map_err(failed))
        }
        Cmd::PrekeyCount { key, .. } => {
            Outcome::Count(unit(tx, |tx| keys::stored_count(tx, key))?.map_err(failed))
        }
        // Their ids are recorded with the batch (`Cmd::track`).
        Cmd::Close { .. } | Cmd::ReserveIds { .. } | Cmd::Ready { .. } => Outcome::Nothing,
    };
    *counts = scratch;
    Ok(outcome)
}

impl PgStore {
    /// Connects to the database `target` names, takes its lock (one server per database),
    /// migrates it, proves it can be written, loads what the server needs at start
    /// ([`Loaded`]) and starts the writer, as [`crate::store::sqlite::SqliteStore::open`] does
    /// for a file.
    ///
    /// # Errors
    /// [`StoreError::Open`] (cannot connect, TLS), [`StoreError::Locked`] (another mm-server
    /// holds it), [`StoreError::TooNew`], [`StoreError::NotWritable`].
    /// Blocking (as opening a file is); it may be called on an async runtime's thread: the
    /// driver's own runtime runs on a thread of its own meanwhile.
    pub fn open(
        target: &PgTarget,
        opts: Options,
        clock: Arc<dyn Clock>,
    ) -> Result<(PgStore, Loaded), StoreError> {
        Self::open_tuned(target, opts, clock, TUNING)
    }

    pub(crate) fn open_tuned(
        target: &PgTarget,
        opts: Options,
        clock: Arc<dyn Clock>,
        tuning: Tuning,
    ) -> Result<(PgStore, Loaded), StoreError> {
        off_runtime(|| Self::open_here(target, opts, clock, tuning))
    }

    fn open_here(
        target: &PgTarget,
        opts: Options,
        clock: Arc<dyn Clock>,
        tuning: Tuning,
    ) -> Result<(PgStore, Loaded), StoreError> {
        let shown = target.to_string();
        let mut client = target.connect().map_err(|e| StoreError::Open {
            path: shown.clone().into(),
            detail: e.to_string(),
        })?;
        match lock(&mut client, target.cluster) {
            Ok(()) => {}
            Err(PgError::Locked) => {
                return Err(StoreError::Locked {
                    path: shown.into(),
                    detail: PgError::Locked.to_string(),
                })
            }
            Err(e) => return Err(target_error(&shown, &e)),
        }
        schema::migrate(&mut client, &shown)?;
        let e = |e: Error| target_error(&shown, &describe(&e));
        // Never 0 (what `meta::value` answers for a store no server marked).
        let owner = ring::rand::generate::<[u8; 8]>(&ring::rand::SystemRandom::new())
            .map(|r| i64::from_le_bytes(r.expose()) & i64::MAX)
            .map_err(|_| StoreError::Failed("no randomness for the store's owner mark".into()))?
            .max(1);
        {
            let mut tx = client.transaction().map_err(e)?;
            meta::record_opened(&mut tx, clock.now_ms()).map_err(e)?;
            meta::set(&mut tx, "owner", owner).map_err(e)?;
            tx.commit().map_err(|err| StoreError::NotWritable {
                path: shown.clone().into(),
                detail: describe(&err),
            })?;
        }
        // One snapshot: the rooms as of the stream position `rooms_applied` records (a node
        // of a cluster applies the stream's room events after it, CLUSTER.md).
        let mut snapshot = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(e)?;
        let c = &mut snapshot;
        let loaded = Loaded {
            history: history::recent(c, RoomId::LOBBY, opts.history_len).map_err(e)?,
            last_id: meta::last_id(c).map_err(e)?,
            rooms: rooms::load(c).map_err(e)?,
            room_history: history::recent_by_room(c, opts.history_len).map_err(e)?,
            last_room_id: meta::last_room_id(c).map_err(e)?,
            rooms_applied: u64::try_from(meta::value(c, "rooms_applied").map_err(e)?).unwrap_or(0),
        };
        snapshot.commit().map_err(e)?;
        let c = &mut client;
        let counts = Counts {
            accounts: accounts::count(c).map_err(e)?,
            waiting: mailbox::total(c).map_err(e)?,
        };
        info!(store = %target, tls = target.tls, "store: PostgreSQL");
        set_lock_timeout(&mut client, tuning.busy_timeout).map_err(e)?;
        let seq_key = if target.cluster {
            format!("batch_seq.{owner:016x}")
        } else {
            "batch_seq".to_owned()
        };
        let seq = meta::value(&mut client, &seq_key).map_err(e)?;
        let backend = PgBackend {
            target: target.clone(),
            client: Some(client),
            seq,
            #[cfg(test)]
            lose_at_commit: false,
            lock_timeout: tuning.busy_timeout,
            owner,
            fenced: false,
            cluster: target.cluster,
            seq_key,
            counted: None,
        };
        let store = BatchStore::spawn(backend, opts, counts, clock, tuning, None).map_err(|e| {
            StoreError::Open {
                path: shown.into(),
                detail: format!("cannot start the writer thread: {e}"),
            }
        })?;
        Ok((store, loaded))
    }
}

/// A failure at open, named for the operator.
pub(super) fn target_error(target: &str, e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Open {
        path: target.into(),
        detail: e.to_string(),
    }
}

/// Runs `f` on a thread of its own and waits for it: the blocking driver starts a runtime of
/// its own, which tokio refuses on a thread that already runs one.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}
