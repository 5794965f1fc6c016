//! Helpers for the end-to-end tests: a real server on `127.0.0.1:0` with certificates made at
//! test time, real clients, and a raw TLS peer for misbehaving on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use mm_client::ChatLine;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use mm_certs::ClientIdentity;
use mm_client::{connect, Client, ConnectError, ConnectOptions, Event, Events, Trust, Welcome};
use mm_common::e2e::E2eEvent;
use mm_common::frame::{self, FrameReader, ReadError};
use mm_common::protocol::{nick_key, ClientMsg, ServerMsg, PROTOCOL_VERSION};
use mm_server::Limits;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen promptly. Generous: this is a
/// deadline against hangs, not a speed assertion.
pub const WAIT: Duration = Duration::from_secs(10);

/// Limits with the rate limit lifted, for tests that send in bulk to check something else
/// (ordering, slow readers, shutdown). The client paces itself to whatever the server announces.
pub fn unthrottled() -> Limits {
    Limits {
        rate_burst: 1_000_000,
        rate_per_sec: 1_000_000,
        ..Limits::default()
    }
}

/// The client certificate the test clients use for `nick` (any case): one per nick for the
/// whole test run, so that reconnecting as the same user presents the same key, as `mm` does.
pub fn identity_for(nick: &str) -> ClientIdentity {
    static IDS: OnceLock<Mutex<HashMap<String, ClientIdentity>>> = OnceLock::new();
    let mut ids = IDS.get_or_init(Mutex::default).lock().unwrap();
    ids.entry(nick_key(nick))
        .or_insert_with(|| ClientIdentity::generate().unwrap())
        .clone()
}

/// The PostgreSQL server the tests use: `MM_TEST_POSTGRES`, a URL of a role that may create
/// databases (`eval "$(scripts/postgres start)"` starts a throwaway one; `scripts/test` does).
/// Missing, the test fails (never skips) and says how to get one.
pub fn test_postgres() -> String {
    match std::env::var("MM_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "MM_TEST_POSTGRES is not set: this test needs a PostgreSQL server. Start a throwaway one with `eval \"$(scripts/postgres start)\"` (scripts/test does this), then run the tests again"
        ),
    }
}

/// Whether the suite's servers keep their store in PostgreSQL: `MM_TEST_STORE=postgres` (the
/// second run of the end-to-end suite in `scripts/test`); otherwise SQLite in their data
/// directory, the default. Any other value fails the test rather than quietly using SQLite.
pub fn store_is_postgres() -> bool {
    match std::env::var("MM_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => false,
        Ok("postgres") => true,
        Ok(other) => panic!("MM_TEST_STORE={other}: expected `sqlite` or `postgres`"),
    }
}

/// A database of its own on the test server ([`test_postgres`]), made with `psql`; dropped
/// with this value.
pub struct TestDatabase {
    server: String,
    /// Its name (`mm_e2e_` and 16 hex digits).
    pub name: String,
}

impl TestDatabase {
    /// Creates one.
    pub fn new() -> TestDatabase {
        let name = format!("mm_e2e_{:016x}", rand_tag());
        let db = TestDatabase {
            server: test_postgres(),
            name,
        };
        db.psql(&format!("CREATE DATABASE {}", db.name));
        db
    }

    fn psql(&self, sql: &str) {
        let out = std::process::Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &self.server, "-c", sql])
            .output()
            .expect("psql (Debian's postgresql-client)");
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The store's URL (`postgres://…/NAME`, no password: the test server trusts loopback).
    pub fn url(&self) -> String {
        let (base, _) = self.server.rsplit_once('/').expect("a URL with a database");
        format!("{base}/{}", self.name)
    }
}

impl Default for TestDatabase {
    fn default() -> Self {
        TestDatabase::new()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                "-X",
                "-q",
                &self.server,
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// A random number (from the operating system) for names and texts no other test or process
/// could hold.
pub fn rand_tag() -> u64 {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .unwrap();
    u64::from_le_bytes(bytes)
}

/// The file in a test server's data directory naming the PostgreSQL database that is its store
/// under `MM_TEST_STORE=postgres`, so that a restart on the same data directory (a new
/// [`TestServer`] or [`ServerProcess`]) finds the same store.
const TEST_STORE_FILE: &str = "mm-test-store-url";

/// The store a test server with data directory `data` uses: with [`store_is_postgres`], the
/// database named in `data` (made on first use; the throwaway server is deleted with all its
/// databases at the end of `scripts/test`), else `None` (SQLite in `data`).
pub fn test_store_url(data: &Path) -> Option<String> {
    if !store_is_postgres() {
        return None;
    }
    let file = data.join(TEST_STORE_FILE);
    if let Ok(url) = std::fs::read_to_string(&file) {
        return Some(url.trim().to_owned());
    }
    let db = TestDatabase::new();
    let url = db.url();
    // Kept for the rest of the run: the data directory may outlive this value (restarts).
    std::mem::forget(db);
    // A data directory that does not exist (a test that checks mm-server creates nothing
    // before it refuses) gets a database of its own that nothing else will find.
    if data.is_dir() {
        std::fs::write(&file, &url).expect("the data directory");
    }
    Some(url)
}

/// The environment that points an `mm-server` command (the server, or `mm-server accounts`)
/// at the store of the test server with data directory `data`: `MM_SERVER_STORE` under
/// `MM_TEST_STORE=postgres`, nothing otherwise (SQLite in `data`).
pub fn test_store_env(data: &Path) -> Option<(&'static str, String)> {
    test_store_url(data).map(|url| ("MM_SERVER_STORE", url))
}

/// A server running in this process.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its TLS directory (ca.pem, server.pem, keys), deleted at drop.
    pub tls: tempfile::TempDir,
    /// Its data directory (the store), deleted at drop.
    pub data: tempfile::TempDir,
    /// The CA that signed its certificate.
    pub ca: Vec<CertificateDer<'static>>,
    /// The limits it runs with.
    pub limits: Limits,
    /// The certificate it presents (replaceable while it runs, as SIGHUP and renewal do).
    pub cert: Arc<mm_server::tls::ServerCert>,
    /// Its admin listener (`/metrics`, `/healthz`, `/readyz`), if started with one
    /// ([`TestServer::start_operated`]).
    pub admin: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// A server with default limits.
    pub async fn start() -> TestServer {
        Self::start_with(Limits::default()).await
    }

    /// A server with the rate limit lifted (see [`unthrottled`]).
    pub async fn start_unthrottled() -> TestServer {
        Self::start_with(unthrottled()).await
    }

    /// A server with the given limits and freshly generated certificates.
    pub async fn start_with(limits: Limits) -> TestServer {
        let tls = tempfile::tempdir().unwrap();
        mm_certs::generate(tls.path(), &mm_certs::Names::default(), false).unwrap();
        Self::start_in(tls, limits).await
    }

    /// A server on 127.0.0.1 using the certificates already in `tls`.
    pub async fn start_in(tls: tempfile::TempDir, limits: Limits) -> TestServer {
        Self::start_on("127.0.0.1:0", tls, limits).await
    }

    /// A server whose hub passes every relayed payload through `hook`.
    pub async fn start_with_hook(hook: mm_server::hub::RelayHook) -> TestServer {
        let tls = tempfile::tempdir().unwrap();
        mm_certs::generate(tls.path(), &mm_certs::Names::default(), false).unwrap();
        let data = tempfile::tempdir().unwrap();
        Self::start_full("127.0.0.1:0", tls, data, Limits::default(), Some(hook)).await
    }

    /// A server on `bind` using the certificates already in `tls` and a new store.
    pub async fn start_on(bind: &str, tls: tempfile::TempDir, limits: Limits) -> TestServer {
        let data = tempfile::tempdir().unwrap();
        Self::start_full(bind, tls, data, limits, None).await
    }

    /// A server with an admin listener on 127.0.0.1:0 ([`TestServer::admin`]) that requires a
    /// PROXY protocol v2 header from `proxy_from`.
    pub async fn start_operated(limits: Limits, proxy_from: &[&str]) -> TestServer {
        let tls = tempfile::tempdir().unwrap();
        mm_certs::generate(tls.path(), &mm_certs::Names::default(), false).unwrap();
        let data = tempfile::tempdir().unwrap();
        let admin = mm_server::listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let at = admin.local_addr().unwrap();
        let operations = mm_server::Operations {
            admin: Some(admin),
            proxy_from: mm_server::proxy::Trusted::new(
                proxy_from.iter().map(|p| p.parse().unwrap()).collect(),
            ),
            ..Default::default()
        };
        let mut server =
            Self::start_with_operations("127.0.0.1:0", tls, data, limits, None, operations).await;
        server.admin = Some(at);
        server
    }

    /// Shuts this server down gracefully and starts a new one on the same certificates and
    /// store (on a new port).
    pub async fn restart(mut self) -> TestServer {
        self.stop().await;
        let TestServer {
            tls, data, limits, ..
        } = self;
        Self::start_full("127.0.0.1:0", tls, data, limits, None).await
    }

    /// As [`TestServer::restart`], on the same port (for clients that reconnect by themselves),
    /// after the server was down for `down`.
    pub async fn restart_on_same_port(mut self, down: Duration) -> TestServer {
        self.stop().await;
        tokio::time::sleep(down).await;
        let TestServer {
            addr,
            tls,
            data,
            limits,
            ..
        } = self;
        Self::start_full(&addr.to_string(), tls, data, limits, None).await
    }

    async fn start_full(
        bind: &str,
        tls: tempfile::TempDir,
        data: tempfile::TempDir,
        limits: Limits,
        hook: Option<mm_server::hub::RelayHook>,
    ) -> TestServer {
        let operations = mm_server::Operations::default();
        Self::start_with_operations(bind, tls, data, limits, hook, operations).await
    }

    async fn start_with_operations(
        bind: &str,
        tls: tempfile::TempDir,
        data: tempfile::TempDir,
        limits: Limits,
        hook: Option<mm_server::hub::RelayHook>,
        operations: mm_server::Operations,
    ) -> TestServer {
        let store = match test_store_url(data.path()) {
            Some(url) => mm_server::StoreLocation::Postgres(Box::new(
                mm_server::store::postgres::PgTarget::parse(&url).unwrap(),
            )),
            None => mm_server::StoreLocation::Sqlite(data.path().to_path_buf()),
        };
        let hub = mm_server::open_hub(&store, &limits, hook).unwrap();
        let ca = mm_certs::load_certs(&tls.path().join(mm_certs::CA_CERT)).unwrap();
        let cert = Arc::new(mm_server::tls::ServerCert::load(tls.path()).unwrap());
        let config = mm_server::tls::server_config_with(Arc::clone(&cert)).unwrap();
        let listener = mm_server::listener::bind(bind.parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(mm_server::serve_with(
            listener,
            config,
            limits.clone(),
            hub,
            operations,
            async {
                let _ = rx.await;
            },
        ));
        TestServer {
            addr,
            tls,
            data,
            limits,
            ca,
            cert,
            admin: None,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Path of the CA certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.tls.path().join(mm_certs::CA_CERT)
    }

    /// `127.0.0.1:PORT`.
    pub fn server(&self) -> String {
        self.addr.to_string()
    }

    /// Connection options for `nick`, trusting this server's CA, with `nick`'s certificate
    /// (see [`identity_for`]).
    pub fn options(&self, nick: &str) -> ConnectOptions {
        let mut opts = ConnectOptions::new(self.server(), nick, Trust::Roots(self.ca.clone()));
        opts.certificate = Some(identity_for(nick));
        opts
    }

    /// Connects and logs in as `nick`.
    pub async fn try_client(&self, nick: &str) -> Result<(Client, Events, Welcome), ConnectError> {
        connect(&self.options(nick)).await
    }

    /// Connects and logs in as `nick`; panics on failure.
    pub async fn client(&self, nick: &str) -> TestClient {
        self.client_with(self.options(nick)).await
    }

    /// Connects with these options; panics on failure.
    pub async fn client_with(&self, opts: ConnectOptions) -> TestClient {
        TestClient::connect(&opts).await
    }

    /// Asks the server to shut down gracefully and waits until `run` returns.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("server did not stop")
                .unwrap()
                .unwrap();
        }
    }
}

/// Completes a TLS handshake with the server at `addr`, verifying its certificate for `name`
/// against `roots`, and returns the end-entity certificate it presented (or the handshake
/// error).
pub async fn presented(
    addr: &str,
    roots: &[CertificateDer<'static>],
    name: &str,
) -> Result<CertificateDer<'static>, std::io::Error> {
    let mut store = rustls::RootCertStore::empty();
    for cert in roots {
        store.add(cert.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("TLS handshake hung")?;
    Ok(tls.get_ref().1.peer_certificates().unwrap()[0].clone())
}

/// Waits until `nick`'s end-to-end keys are in `server`'s key directory. A client publishes
/// them right after its login, and a peer that fetches them before they are stored gets
/// "no keys" (its line is dropped, visibly): tests that write to a user who just logged in
/// wait for this first. Asks as the user `keyprobe` (using up at most one of `nick`'s
/// one-time prekeys: the server hands one requester the same one within its reuse window).
pub async fn wait_for_keys(server: &TestServer, nick: &str) {
    wait_for_keys_at(&server.addr.to_string(), &server.ca, nick).await;
}

/// [`wait_for_keys`] on the server at `addr` whose CA is `ca` (e.g. a [`ServerProcess`]).
pub async fn wait_for_keys_at(addr: &str, ca: &[CertificateDer<'static>], nick: &str) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut probe = RawTls::over_roots(ca, tcp, Some(&identity_for("keyprobe")))
        .await
        .unwrap();
    probe
        .send(&ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            nick: "keyprobe".into(),
        })
        .await;
    assert!(matches!(
        probe.read().await,
        Some(ServerMsg::Welcome { .. })
    ));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        probe
            .send(&ClientMsg::FetchBundle { nick: nick.into() })
            .await;
        let answer = loop {
            match probe.read().await.expect("the server closed") {
                ServerMsg::Bundle { answer, .. } => break answer,
                _ => continue,
            }
        };
        let wait = match answer {
            mm_common::prekeys::BundleAnswer::Keys(_) => return,
            mm_common::prekeys::BundleAnswer::RateLimited { retry_after_ms } => {
                Duration::from_millis(retry_after_ms)
            }
            _ => Duration::from_millis(20),
        };
        assert!(
            tokio::time::Instant::now() + wait < deadline,
            "{nick}'s keys never reached the directory"
        );
        tokio::time::sleep(wait).await;
    }
}

/// A logged-in client and its event stream.
pub struct TestClient {
    /// Sending handle.
    pub client: Client,
    /// Incoming events.
    pub events: Events,
    /// What the server said at login.
    pub welcome: Welcome,
}

impl TestClient {
    /// Connects with `opts` to any server; panics (naming the nick) on failure.
    pub async fn connect(opts: &ConnectOptions) -> TestClient {
        let (client, events, welcome) = connect(opts)
            .await
            .unwrap_or_else(|e| panic!("{} cannot log in: {e}", opts.nick));
        TestClient {
            client,
            events,
            welcome,
        }
    }

    /// The next event, whatever it is (fails the test after [`WAIT`]).
    pub async fn next(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.events.next())
            .await
            .expect("no event in time")
            .expect("event stream ended")
    }

    /// Skips events until one matches; returns it. `Closed` ends the wait with a failure unless
    /// it is what is being waited for.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .unwrap_or_else(|_| panic!("waited in vain for {what}"))
                .unwrap_or_else(|| panic!("event stream ended while waiting for {what}"));
            if pred(&event) {
                return event;
            }
            if matches!(event, Event::Closed { .. }) {
                panic!("connection closed while waiting for {what}: {event:?}");
            }
        }
    }

    /// Waits for the next public or private line, skipping notices and acknowledgements.
    pub async fn next_line(&mut self) -> Event {
        self.wait_for("a chat line", |e| {
            matches!(
                e,
                Event::Public(ChatLine { .. }) | Event::Private(ChatLine { .. })
            )
        })
        .await
    }

    /// Waits for the next end-to-end event matching `pred`.
    pub async fn secure_event(&mut self, what: &str, pred: impl Fn(&E2eEvent) -> bool) -> E2eEvent {
        match self
            .wait_for(what, |e| matches!(e, Event::Secure(s) if pred(s)))
            .await
        {
            Event::Secure(e) => e,
            _ => unreachable!(),
        }
    }

    /// Waits until the secure session with `peer` is ready; returns the event.
    pub async fn secure_ready(&mut self, peer: &str) -> E2eEvent {
        self.secure_event(
            "secure session ready",
            |e| matches!(e, E2eEvent::Ready { peer: p, .. } if p == peer),
        )
        .await
    }

    /// Waits for the next decrypted secure message; returns (peer, text).
    pub async fn secure_message(&mut self) -> (String, String) {
        match self
            .secure_event("a secure message", |e| {
                matches!(e, E2eEvent::Message { .. })
            })
            .await
        {
            E2eEvent::Message { peer, text, .. } => (peer, text),
            _ => unreachable!(),
        }
    }

    /// Says `text` publicly, checks the server accepted it, and checks that `to` receives it.
    pub async fn chat_to(&mut self, to: &mut TestClient, text: &str) {
        self.client.public(text).await.unwrap();
        assert!(matches!(self.next_answer().await, Event::Sent { .. }));
        match to.next_line().await {
            Event::Public(ChatLine { text: got, .. }) => assert_eq!(got, text),
            other => panic!("{other:?}"),
        }
    }

    /// Waits for the answer to a private line: `Sent`, `Queued` (stored for an offline user)
    /// or `Error`.
    pub async fn next_answer_or_queued(&mut self) -> Event {
        self.wait_for("Sent, Queued or Error", |e| {
            matches!(
                e,
                Event::Sent { .. } | Event::Queued { .. } | Event::Error { .. }
            )
        })
        .await
    }

    /// Waits for the answer to a message we sent and checks it is a non-fatal `code` error
    /// whose detail mentions `needle`.
    pub async fn expect_refusal(&mut self, code: mm_common::protocol::ErrorCode, needle: &str) {
        match self.next_answer().await {
            Event::Error {
                line,
                code: got,
                fatal,
                detail,
            } => {
                assert_eq!(got, code, "{detail}");
                assert!(!fatal, "{detail}");
                assert!(line.is_some(), "a refusal names the line it refuses");
                assert!(detail.contains(needle), "{detail:?} lacks {needle:?}");
            }
            other => panic!("expected a {code} error, got {other:?}"),
        }
    }

    /// Waits for the acknowledgement or error that answers a message we sent.
    pub async fn next_answer(&mut self) -> Event {
        self.wait_for("Sent or Error", |e| {
            matches!(e, Event::Sent { .. } | Event::Error { .. })
        })
        .await
    }
}

/// Starts the server `binary` on the data directory `data` expecting it to refuse to start:
/// asserts that it exits (within [`WAIT`]) unsuccessfully, and returns what it said on stderr.
pub async fn server_refuses_to_start(binary: &str, data: &Path) -> String {
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(binary)
            .args(["--bind", "127.0.0.1:0", "--data"])
            .arg(data)
            .envs(test_store_env(data))
            .output(),
    )
    .await
    .expect("mm-server started (or hung) where it should have refused to")
    .unwrap();
    assert!(!out.status.success(), "mm-server exited successfully");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A raw TLS connection for sending exactly the bytes a test wants.
pub struct RawTls {
    /// The stream.
    pub stream: tokio_rustls::client::TlsStream<TcpStream>,
    frames: FrameReader,
}

impl RawTls {
    /// Connects with TLS (verified against `server`'s CA) and a new client certificate, and
    /// sends nothing.
    pub async fn connect(server: &TestServer) -> RawTls {
        Self::connect_as(server, Some(&ClientIdentity::generate().unwrap())).await
    }

    /// Connects with TLS presenting `identity` (or no client certificate), and sends nothing.
    pub async fn connect_as(server: &TestServer, identity: Option<&ClientIdentity>) -> RawTls {
        Self::connect_with(server, identity, None).await
    }

    /// As [`RawTls::connect_as`], with the socket's receive buffer set to `recv_buffer` bytes
    /// (a client on a slow or small link: what the server sends waits in its own buffers).
    pub async fn connect_with(
        server: &TestServer,
        identity: Option<&ClientIdentity>,
        recv_buffer: Option<u32>,
    ) -> RawTls {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let tcp = socket.connect(server.addr).await.unwrap();
        Self::over(server, tcp, identity).await.unwrap()
    }

    /// TLS (verified against `server`'s CA, presenting `identity`) over a connection the test
    /// made (and may have written to already, e.g. a PROXY header); the handshake's error if it
    /// fails.
    pub async fn over(
        server: &TestServer,
        tcp: TcpStream,
        identity: Option<&ClientIdentity>,
    ) -> std::io::Result<RawTls> {
        Self::over_roots(&server.ca, tcp, identity).await
    }

    /// As [`RawTls::over`], trusting the CA certificates `ca`.
    pub async fn over_roots(
        ca: &[CertificateDer<'static>],
        tcp: TcpStream,
        identity: Option<&ClientIdentity>,
    ) -> std::io::Result<RawTls> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in ca {
            roots.add(cert.clone()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match identity {
            Some(id) => config
                .with_client_auth_cert(vec![id.cert.clone()], id.key())
                .unwrap(),
            None => config.with_no_client_auth(),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from("localhost").unwrap();
        let stream = connector.connect(name, tcp).await?;
        Ok(RawTls {
            stream,
            frames: FrameReader::new(),
        })
    }

    /// Sends `Hello` as `nick`; true if the server answers `Welcome` (then the user list is
    /// read too), false if it refuses or closes.
    pub async fn hello(&mut self, nick: &str) -> bool {
        self.send(&ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            nick: nick.into(),
        })
        .await;
        if !matches!(self.read().await, Some(ServerMsg::Welcome { .. })) {
            return false;
        }
        while let Some(msg) = self.read().await {
            if let ServerMsg::Users { last: true, .. } = msg {
                break;
            }
        }
        true
    }

    /// Connects and logs in as `nick`, reading the welcome and user list.
    pub async fn login(server: &TestServer, nick: &str) -> RawTls {
        Self::login_with(server, nick, None).await
    }

    /// As [`RawTls::login`], with a receive buffer of `recv_buffer` bytes (see
    /// [`RawTls::connect_with`]).
    pub async fn login_with(server: &TestServer, nick: &str, recv_buffer: Option<u32>) -> RawTls {
        let mut raw = Self::connect_with(server, Some(&identity_for(nick)), recv_buffer).await;
        raw.send(&ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            nick: nick.into(),
        })
        .await;
        assert!(matches!(raw.read().await, Some(ServerMsg::Welcome { .. })));
        while let Some(msg) = raw.read().await {
            if let ServerMsg::Users { last: true, .. } = msg {
                break;
            }
        }
        raw
    }

    /// Sends one message as a frame.
    pub async fn send(&mut self, msg: &ClientMsg) {
        let bytes = frame::encode(msg).unwrap();
        self.send_bytes(&bytes).await;
    }

    /// Sends raw bytes; errors are ignored (the server may have closed already).
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// Reads the next frame's payload, however long it takes; `Ok(None)` when the server
    /// closed the connection cleanly between frames.
    pub async fn read_frame(&mut self) -> Result<Option<BytesMut>, ReadError> {
        self.frames.read_frame(&mut self.stream).await
    }

    /// Reads the next message; `None` when the server closed the connection (cleanly or not).
    pub async fn read(&mut self) -> Option<ServerMsg> {
        let read = tokio::time::timeout(WAIT, self.read_frame())
            .await
            .expect("server neither answered nor closed");
        match read {
            Ok(Some(payload)) => Some(ServerMsg::decode(&payload).expect("server sent garbage")),
            Err(ReadError::Frame(e)) => panic!("server sent a bad frame: {e}"),
            Ok(None) | Err(_) => None,
        }
    }

    /// Reads until the server closes; returns every message seen.
    pub async fn read_to_close(&mut self) -> Vec<ServerMsg> {
        let mut seen = Vec::new();
        while let Some(msg) = self.read().await {
            seen.push(msg);
        }
        seen
    }
}

/// Reads a TCP stream until the peer closes it; true if it closed within [`WAIT`].
pub async fn closes(stream: &mut TcpStream) -> bool {
    closed_within(stream, WAIT).await
}

/// Reads (and discards) until the peer closes the stream; true if it did within `limit`.
pub async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> bool {
    let mut sink = vec![0u8; 16 * 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// The mode bits of a file.
#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Walks `root` (not following links) and checks that every directory, `root` included, is
/// 0700 and every file 0600, except the names in `skip` (files the test itself wrote). Returns
/// the paths of the files it checked, relative to `root`.
#[cfg(unix)]
pub fn assert_private_tree(root: &Path, skip: &[&str]) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    let mut bad = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let mode = std::fs::symlink_metadata(&dir)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        if mode != 0o700 {
            bad.push(format!(
                "{} is a directory with mode {mode:04o}",
                dir.display()
            ));
        }
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                dirs.push(path);
            } else if !skip.contains(&name.as_str()) {
                let mode = meta.permissions().mode() & 0o777;
                if mode != 0o600 {
                    bad.push(format!("{} has mode {mode:04o}", path.display()));
                }
                files.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    assert!(bad.is_empty(), "not private:\n{}", bad.join("\n"));
    files.sort();
    files
}

/// The real `mm-server` binary running as a child process (so that its own memory can be read).
pub struct ServerProcess {
    /// The child.
    pub child: tokio::process::Child,
    /// `127.0.0.1:PORT` it listens on.
    pub addr: String,
    /// Its data directory (TLS files), deleted at drop.
    pub data: tempfile::TempDir,
    /// Log lines read so far.
    pub log: Vec<String>,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
}

impl ServerProcess {
    /// Starts `binary` with `config` (TOML; `bind` is forced to 127.0.0.1:0) and an empty data
    /// directory, and waits until it listens.
    pub async fn start(binary: &str, config: &str) -> ServerProcess {
        Self::start_limited(binary, config, None).await
    }

    /// As [`ServerProcess::start`], with at most `max_files` open file descriptors if given
    /// (to provoke EMFILE on accept).
    pub async fn start_limited(
        binary: &str,
        config: &str,
        max_files: Option<u32>,
    ) -> ServerProcess {
        Self::start_full(binary, config, max_files, tempfile::tempdir().unwrap()).await
    }

    /// As [`ServerProcess::start`] on an existing data directory (e.g. from
    /// [`ServerProcess::kill`]).
    pub async fn start_in(binary: &str, config: &str, data: tempfile::TempDir) -> ServerProcess {
        Self::start_full(binary, config, None, data).await
    }

    /// As [`ServerProcess::start_in`], listening on `bind` (e.g. the address of a server
    /// killed before, for clients that reconnect by themselves).
    pub async fn start_on(binary: &str, bind: &str, data: tempfile::TempDir) -> ServerProcess {
        Self::start_bound(binary, "", None, data, bind).await
    }

    async fn start_full(
        binary: &str,
        config: &str,
        max_files: Option<u32>,
        data: tempfile::TempDir,
    ) -> ServerProcess {
        Self::start_bound(binary, config, max_files, data, "127.0.0.1:0").await
    }

    async fn start_bound(
        binary: &str,
        config: &str,
        max_files: Option<u32>,
        data: tempfile::TempDir,
        bind: &str,
    ) -> ServerProcess {
        let config_path = data.path().join("mm-server.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut command = match max_files {
            Some(n) => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(binary);
                c
            }
            None => tokio::process::Command::new(binary),
        };
        command
            .args(["--bind", bind, "--config"])
            .arg(&config_path)
            .env("MM_SERVER_DATA", data.path());
        // Under MM_TEST_STORE=postgres: the store, unless the configuration names one.
        if let Some(url) = test_store_url(data.path()) {
            command.env("MM_SERVER_STORE", url);
        }
        Self::spawn(command, data).await
    }

    /// Starts `binary` with `args` only (no configuration file, no `MM_SERVER_DATA`: pass
    /// `--data` and `--bind`), keeping `data` for the test, and waits until it listens.
    pub async fn start_with_args(
        binary: &str,
        args: &[std::ffi::OsString],
        data: tempfile::TempDir,
    ) -> ServerProcess {
        let mut command = tokio::process::Command::new(binary);
        command.args(args).env_remove("MM_SERVER_DATA");
        if let Some(url) = test_store_url(data.path()) {
            command.env("MM_SERVER_STORE", url);
        }
        Self::spawn(command, data).await
    }

    async fn spawn(mut command: tokio::process::Command, data: tempfile::TempDir) -> ServerProcess {
        use tokio::io::AsyncBufReadExt;
        let mut child = command
            .env("RUST_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut log = Vec::new();
        let addr = loop {
            let line = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .expect("server did not start")
                .unwrap()
                .expect("server exited");
            log.push(line.clone());
            if let Some(rest) = line.split("listening local=").nth(1) {
                break rest.trim().to_string();
            }
        };
        ServerProcess {
            child,
            addr,
            data,
            log,
            lines,
        }
    }

    /// The CA the server generated.
    pub fn ca(&self) -> Vec<CertificateDer<'static>> {
        mm_certs::load_certs(&self.data.path().join("tls").join(mm_certs::CA_CERT)).unwrap()
    }

    /// CPU time (user + system) the server process has used, in clock ticks (Linux).
    pub fn cpu_ticks(&self) -> u64 {
        let pid = self.child.id().unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Reads log lines that arrived within `wait`.
    pub async fn read_log(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout_at(deadline, self.lines.next_line()).await
        {
            self.log.push(line);
        }
    }

    /// Resident memory of the server process, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Sends the server process `signal` (e.g. `STOP` to make it hang, `CONT` to resume it).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Kills the server with SIGKILL (no chance to clean up) and returns its data directory.
    pub async fn kill(mut self) -> tempfile::TempDir {
        self.child.start_kill().unwrap();
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        self.data
    }

    /// Connection options for `nick` (with `nick`'s certificate, see [`identity_for`]).
    pub fn options(&self, nick: &str) -> ConnectOptions {
        let mut opts = ConnectOptions::new(self.addr.clone(), nick, Trust::Roots(self.ca()));
        opts.certificate = Some(identity_for(nick));
        opts
    }

    /// Stops the server gracefully (SIGTERM), checks it exited successfully, and returns its
    /// data directory.
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        let status = self.terminate().await;
        assert!(status.success(), "{status}");
        self.data
    }

    /// Waits (up to `wait`) for the server to exit by itself; its exit status with the rest
    /// of the log.
    pub async fn exited(mut self, wait: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let status = tokio::time::timeout(wait, self.child.wait())
            .await
            .expect("the server did not exit")
            .unwrap();
        while let Ok(Some(line)) = self.lines.next_line().await {
            self.log.push(line);
        }
        (status, self.log)
    }

    /// Sends SIGTERM, waits for exit, and returns the exit status with the rest of the log.
    pub async fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = self.terminate().await;
        while let Ok(Some(line)) = self.lines.next_line().await {
            self.log.push(line);
        }
        (status, self.log)
    }

    async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap()
            .unwrap()
    }
}

/// Which of `needles` occur anywhere in the readable memory of the process `pid` (read through
/// `/proc/PID/maps` and `/proc/PID/mem`, as a core dump would hold it). Reading another
/// process's memory needs the right to trace it: a child of the test, same user.
///
/// # Panics
/// If the memory cannot be read at all (then the test could not check anything).
pub fn memory_holds(pid: u32, needles: &[&[u8]]) -> Vec<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut found: Vec<Vec<u8>> = Vec::new();
    let mut read = 0usize;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with('r') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        let mut data = vec![0u8; usize::try_from(b - a).unwrap()];
        // Some mappings (guard pages, [vvar]) cannot be read: skipped.
        if mem.seek(SeekFrom::Start(a)).is_err() || mem.read_exact(&mut data).is_err() {
            continue;
        }
        read += data.len();
        for needle in needles {
            if !found.iter().any(|f| f == needle)
                && data.windows(needle.len()).any(|w| w == *needle)
            {
                found.push(needle.to_vec());
            }
        }
    }
    assert!(
        read > 1_000_000,
        "read only {read} bytes of process {pid}'s memory"
    );
    found
}

/// Which of `needles` occur in any file under `dir` (recursively).
pub fn files_hold(dir: &std::path::Path, needles: &[&[u8]]) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(data) = std::fs::read(&path) {
                for needle in needles {
                    if data.windows(needle.len()).any(|w| w == *needle) {
                        found.push((path.clone(), needle.to_vec()));
                    }
                }
            }
        }
    }
    found
}

/// Where the tests find nats-server: Debian's package (`apt-get install nats-server`, 2.9.10;
/// `scripts/test` installs it).
pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A real nats-server with JetStream, on a free port of 127.0.0.1 and a store directory of its
/// own, killed on drop. It **fails** (panics, saying how to install it) when
/// [`NATS_SERVER`] is missing: a test of the bus never passes without one.
pub struct TestNats {
    child: Option<std::process::Child>,
    port: u16,
    /// Its HTTP monitoring port (`/connz`: the connections, with their names).
    monitor: u16,
    /// Holds the JetStream store (`js/`), the log (`nats.log`) and TLS files a test puts there.
    pub dir: tempfile::TempDir,
    /// Arguments besides address, port and store (e.g. `--tls …`).
    extra: Vec<std::ffi::OsString>,
}

impl TestNats {
    /// Starts one, plain (no TLS), and waits until it accepts.
    pub fn start() -> TestNats {
        Self::start_with(Vec::new(), tempfile::tempdir().unwrap())
    }

    /// Starts one with the configuration file text `config` (e.g. `jetstream { max_file_store:
    /// 40000 }`) besides the usual flags, and waits until it accepts.
    pub fn start_configured(config: &str) -> TestNats {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nats.conf");
        std::fs::write(&path, config).unwrap();
        Self::start_with(vec!["-c".into(), path.into_os_string()], dir)
    }

    /// Stops it, deletes its JetStream store (as a lost disk would), and starts it again on
    /// the same port.
    pub fn restart_without_store(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(self.dir.path().join("js"));
        self.restart();
    }

    /// Starts one with TLS required (`--tls --tlscert CERT --tlskey KEY`: the certificate
    /// chain and key, PEM, in `dir`), and waits until it accepts.
    pub fn start_tls(dir: tempfile::TempDir, cert: &Path, key: &Path) -> TestNats {
        let extra = vec![
            "--tls".into(),
            "--tlscert".into(),
            cert.as_os_str().to_owned(),
            "--tlskey".into(),
            key.as_os_str().to_owned(),
        ];
        Self::start_with(extra, dir)
    }

    fn start_with(extra: Vec<std::ffi::OsString>, mut dir: tempfile::TempDir) -> TestNats {
        assert!(
            Path::new(NATS_SERVER).is_file(),
            "{NATS_SERVER} is missing: the bus tests need a real NATS server. Install it with `apt-get install nats-server` (Debian's 2.9.10; scripts/test installs it), then run the tests again"
        );
        // A port just freed can be taken by someone else before nats-server binds it: retried.
        let mut last = String::new();
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        for _ in 0..5 {
            let mut nats = TestNats {
                child: None,
                port: free(),
                monitor: free(),
                dir,
                extra: extra.clone(),
            };
            match nats.spawn() {
                Ok(()) => return nats,
                Err(e) => {
                    last = e;
                    dir = std::mem::replace(&mut nats.dir, tempfile::tempdir().unwrap());
                }
            }
        }
        panic!("nats-server did not start: {last}");
    }

    /// Runs nats-server on `self.port` with the store in `self.dir` and waits until it
    /// accepts; the error holds its log.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("nats.log");
        let mut child = std::process::Command::new(NATS_SERVER)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string(), "-js", "-sd"])
            .arg(self.dir.path().join("js"))
            .arg("-l")
            .arg(&log)
            .args(&self.extra)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {NATS_SERVER}: {e}"))?;
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("nats-server exited ({status}):\n{log}"));
            }
            // Ready once it sends its INFO line (TLS servers too: NATS sends INFO in plain).
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::Read;
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 5];
                if s.read_exact(&mut buf).is_ok() && &buf == b"INFO " {
                    self.child = Some(child);
                    return Ok(());
                }
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!(
                    "nats-server did not accept within {WAIT:?}:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `nats://127.0.0.1:PORT` (`tls://` for a server started with [`TestNats::start_tls`]).
    pub fn url(&self) -> String {
        let tls = self.extra.iter().any(|a| a == "--tls");
        let scheme = if tls { "tls" } else { "nats" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its pid while it runs (mm-bench reads its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Kills it (SIGKILL: as a crash; the JetStream store stays) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it if it runs, then starts it again on the same port with the same store, and
    /// waits until it accepts.
    pub fn restart(&mut self) {
        self.stop();
        // The port was just closed; another process could take it meanwhile (rare): retried
        // for a few seconds, then a failure in words.
        let mut last = String::new();
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "nats-server did not start again on port {}: {last}",
            self.port
        );
    }

    /// The names of the clients connected now, from the monitoring endpoint `/connz`.
    pub fn connection_names(&self) -> Vec<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.monitor)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(b"GET /connz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        json["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        self.stop();
    }
}
