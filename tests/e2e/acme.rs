//! `mm-server --acme-domain` against a local ACME server, Debian's `pebble` (never the
//! internet): the certificate is obtained by real TLS-ALPN-01 validation on the server's port,
//! a real `mm` trusts it through the system's roots (`SSL_CERT_FILE` = pebble's root) and
//! refuses it without them, a restart reuses the stored certificate, a short-lived certificate
//! is renewed while the server runs, and nothing is served before the first certificate.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use mm_tests::{ServerProcess, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const MM: &str = env!("CARGO_BIN_EXE_e2e-mm");
const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");
const PEBBLE: &str = "/usr/bin/pebble";
const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";
/// The name the certificate is for; `mm` reaches it through `MM_TEST_RESOLVE`, pebble through
/// pebble-challtestsrv's DNS, both at 127.0.0.1.
const DOMAIN: &str = "chat.mm.test";
/// Long enough for pebble to validate and issue on a loaded machine.
const ISSUE_WAIT: Duration = Duration::from_secs(60);

/// A free loopback port (bound, read and released: the program given it binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// pebble and pebble-challtestsrv on loopback ports, killed at drop.
struct Pebble {
    dir: tempfile::TempDir,
    acme_port: u16,
    _dns: Child,
    _pebble: Child,
}

impl Pebble {
    /// Starts them for a server that listens on `tls_port`; `validity` (seconds) makes pebble
    /// issue certificates that short-lived.
    async fn start(tls_port: u16, validity: Option<u64>) -> Pebble {
        for program in [PEBBLE, CHALLTESTSRV] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: these tests need Debian's `pebble` package (apt-get install pebble; scripts/test installs it)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        // pebble's own HTTPS certificate, from a CA made here: mm-server trusts it with
        // --acme-directory-ca.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pebble HTTPS test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.path().join("https-ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("https.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("https.key"), key.serialize_pem()).unwrap();

        let (dns_port, dns_admin, acme_port, admin_port) =
            (free_port(), free_port(), free_port(), free_port());
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{admin_port}"),
            "certificate": dir.path().join("https.pem"),
            "privateKey": dir.path().join("https.key"),
            "httpPort": free_port(),
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(seconds) = validity {
            config["pebble"]["certificateValidityPeriod"] = seconds.into();
        }
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();

        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        // DNS only: every name is 127.0.0.1 (no AAAA answers: the server listens on IPv4).
        let dns = Command::new(CHALLTESTSRV)
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_admin}")])
            .stdout(log("dns.log"))
            .stderr(log("dns.err"))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pebble = Command::new(PEBBLE)
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // Real validation, always.
            .env_remove("PEBBLE_VA_ALWAYS_VALID")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pebble = Pebble {
            dir,
            acme_port,
            _dns: dns,
            _pebble: pebble,
        };
        for port in [acme_port, admin_port, dns_port] {
            let deadline = tokio::time::Instant::now() + WAIT;
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "pebble did not listen on {port}: {}",
                    pebble.log()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Its issuing root, from its management interface.
        let root = https_get(admin_port, "/roots/0", &pebble.https_ca()).await;
        let begin = root
            .find("-----BEGIN CERTIFICATE-----")
            .expect("a PEM root");
        let end = root.find("-----END CERTIFICATE-----").expect("a PEM root")
            + "-----END CERTIFICATE-----".len();
        std::fs::write(pebble.root(), format!("{}\n", &root[begin..end])).unwrap();
        pebble
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// The CA of pebble's own HTTPS certificate (not a root of the certificates it issues).
    fn https_ca(&self) -> PathBuf {
        self.dir.path().join("https-ca.pem")
    }

    /// The root of the certificates pebble issues.
    fn root(&self) -> PathBuf {
        self.dir.path().join("root.pem")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// How many orders pebble was asked for.
    fn orders(&self) -> usize {
        self.log().matches("POST /order-plz").count()
    }
}

/// GET `path` from 127.0.0.1:`port` over HTTPS trusting `ca`; the whole response as text.
async fn https_get(port: u16, path: &str, ca: &Path) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for cert in mm_certs::load_certs(ca).unwrap() {
        roots.add(cert).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// The arguments that start mm-server on `port` with a certificate for [`DOMAIN`] from `pebble`.
fn server_args(data: &Path, port: u16, directory: &str, https_ca: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--data".into(), data.into()];
    for a in [
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--acme-domain",
        DOMAIN,
        "--acme-directory",
        directory,
        "--acme-contact",
        "mailto:ops@mm.test",
        "--acme-directory-ca",
    ] {
        args.push(a.into());
    }
    args.push(https_ca.into());
    args
}

/// pebble on a free port (certificates valid `validity` seconds, else its default) and an
/// mm-server on that port ordering from it, once the server logged its first certificate:
/// (the port, pebble, the server, that log line).
async fn issued(validity: Option<u64>) -> (u16, Pebble, ServerProcess, String) {
    let port = free_port();
    let pebble = Pebble::start(port, validity).await;
    let data = tempfile::tempdir().unwrap();
    let args = server_args(data.path(), port, &pebble.directory(), &pebble.https_ca());
    let mut server = ServerProcess::start_with_args(MM_SERVER, &args, data).await;
    let obtained = wait_for_log(
        &mut server,
        "obtained a certificate from the ACME server",
        ISSUE_WAIT,
    )
    .await;
    (port, pebble, server, obtained)
}

/// Reads the server's log until a line contains `what` (within `wait`); returns that line.
async fn wait_for_log(server: &mut ServerProcess, what: &str, wait: Duration) -> String {
    let deadline = tokio::time::Instant::now() + wait;
    let mut seen = 0;
    loop {
        if let Some(line) = server.log[seen..].iter().find(|l| l.contains(what)) {
            return line.clone();
        }
        seen = server.log.len();
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not log {what:?}; it logged:\n{}",
            server.log.join("\n")
        );
        server.read_log(Duration::from_millis(200)).await;
    }
}

/// `mm` in line mode for `nick` at [`DOMAIN`]:`port`, with the system's roots replaced by
/// `roots` (`SSL_CERT_FILE`) and [`DOMAIN`] at 127.0.0.1.
fn spawn_mm(port: u16, nick: &str, home: &Path, roots: &Path) -> Child {
    Command::new(MM)
        .args(["--server", &format!("{DOMAIN}:{port}"), "--nick", nick])
        .arg("--home")
        .arg(home)
        .arg("--line-mode")
        .env("SSL_CERT_FILE", roots)
        .env_remove("SSL_CERT_DIR")
        .env(
            mm_client::connect::TEST_RESOLVE_ENV,
            format!("{DOMAIN}=127.0.0.1"),
        )
        .env_remove("MM_SERVER")
        .env_remove("MM_NICK")
        .env_remove("MM_HOME")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn line_containing(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> String {
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("waited in vain for {what:?}; mm printed {seen:#?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("mm ended before {what:?}; it printed {seen:#?}"));
        if line.contains(what) {
            return line;
        }
        seen.push(line);
    }
}

async fn finish(mm: Child) -> std::process::Output {
    tokio::time::timeout(WAIT, mm.wait_with_output())
        .await
        .expect("mm did not exit in time")
        .unwrap()
}

#[tokio::test]
async fn a_certificate_from_pebble_by_tls_alpn_01_is_trusted_through_the_system_roots_and_reused_after_a_restart(
) {
    let (port, pebble, server, obtained) = issued(None).await;
    let data_path = server.data.path().to_path_buf();
    assert!(obtained.contains(DOMAIN), "{obtained}");
    // Validated by connecting to the server's port with ALPN acme-tls/1, not waved through.
    assert!(
        server
            .log
            .iter()
            .any(|l| l.contains("answered an ACME validation (TLS-ALPN-01)")),
        "{:#?}",
        server.log
    );
    assert_eq!(pebble.orders(), 1);
    // The account and the certificate are private; no self-made CA was made.
    let tls = data_path.join("tls");
    assert_eq!(mm_tests::mode(&tls), 0o700);
    for file in ["acme-account.json", "acme.pem"] {
        assert_eq!(mm_tests::mode(&tls.join(file)), 0o600, "{file}");
    }
    for file in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        assert!(!tls.join(file).exists(), "{file} was made");
    }

    // bob and alice trust pebble's root as their system's: they chat, nothing pinned.
    let homes = tempfile::tempdir().unwrap();
    let mut bob = spawn_mm(port, "bob", &homes.path().join("bob"), &pebble.root());
    let mut bob_out = BufReader::new(bob.stdout.take().unwrap()).lines();
    let bob_in = bob.stdin.take().unwrap();
    assert_eq!(
        line_containing(&mut bob_out, "connected").await,
        format!("* connected to {DOMAIN}:{port} as bob; 1 online: bob")
    );
    let mut alice = spawn_mm(port, "alice", &homes.path().join("alice"), &pebble.root());
    let mut alice_out = BufReader::new(alice.stdout.take().unwrap()).lines();
    let mut alice_in = alice.stdin.take().unwrap();
    line_containing(&mut alice_out, "connected").await;
    alice_in
        .write_all(b"hello bob over a publicly trusted certificate\n")
        .await
        .unwrap();
    assert_eq!(
        line_containing(&mut bob_out, "publicly trusted").await,
        "<alice> hello bob over a publicly trusted certificate"
    );
    drop((alice_in, bob_in));
    for (nick, mm) in [("alice", alice), ("bob", bob)] {
        let out = finish(mm).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "mm: verified by the system's root certificates: {DOMAIN}"
            )),
            "{nick}: {stderr}"
        );
        assert!(
            !homes.path().join(nick).join("known_servers").exists(),
            "{nick} pinned the server"
        );
    }

    // Without pebble's root among the system's roots the same server is refused, as any
    // server that verifies neither way is.
    let mut carol = spawn_mm(
        port,
        "carol",
        &homes.path().join("carol"),
        &pebble.https_ca(),
    );
    drop(carol.stdin.take());
    let out = finish(carol).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("{DOMAIN}:{port} is not a known server")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("verified by the system's root"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());

    // A restart presents the stored certificate at once: no new account, no new order.
    let data = server.stop_keeping_data().await;
    let args = server_args(data.path(), port, &pebble.directory(), &pebble.https_ca());
    let mut server = ServerProcess::start_with_args(MM_SERVER, &args, data).await;
    let reused = wait_for_log(&mut server, "using the stored ACME certificate", WAIT).await;
    let fingerprint = |line: &str| {
        line.split("fingerprint=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    };
    assert_eq!(fingerprint(&reused), fingerprint(&obtained));
    let mut dave = spawn_mm(port, "dave", &homes.path().join("dave"), &pebble.root());
    let mut dave_out = BufReader::new(dave.stdout.take().unwrap()).lines();
    line_containing(&mut dave_out, "connected").await;
    drop(dave.stdin.take());
    finish(dave).await;
    server.read_log(Duration::from_millis(300)).await;
    assert!(
        !server
            .log
            .iter()
            .any(|l| l.contains("registered an ACME account")
                || l.contains("obtained a certificate")),
        "{:#?}",
        server.log
    );
    assert_eq!(pebble.orders(), 1, "a new order after the restart");
}

#[tokio::test]
async fn a_short_lived_certificate_is_renewed_while_the_server_runs() {
    // 30 s certificates: renewed with 10 s left, i.e. 20 s after issue.
    let (port, pebble, mut server, obtained) = issued(Some(30)).await;
    let renewed = wait_for_log(
        &mut server,
        "renewed the certificate from the ACME server",
        ISSUE_WAIT,
    )
    .await;
    let fingerprint = |line: &str| {
        line.split("fingerprint=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .unwrap()
    };
    assert_ne!(fingerprint(&renewed), fingerprint(&obtained));
    assert_eq!(pebble.orders(), 2);
    // The renewed certificate is the one presented: mm sees it verified.
    let home = tempfile::tempdir().unwrap();
    let mut erin = spawn_mm(port, "erin", home.path(), &pebble.root());
    let mut out = BufReader::new(erin.stdout.take().unwrap()).lines();
    line_containing(&mut out, "connected").await;
    drop(erin.stdin.take());
    let stderr = String::from_utf8_lossy(&finish(erin).await.stderr).into_owned();
    assert!(
        stderr.contains("verified by the system's root certificates"),
        "{stderr}"
    );
    let presented = mm_certs::load_certs(&server.data.path().join("tls").join("acme.pem")).unwrap();
    assert_eq!(
        Some(mm_certs::fingerprint(&presented[0])),
        Some(fingerprint(&renewed))
    );
}

#[tokio::test]
async fn until_the_first_certificate_arrives_nothing_is_served_and_the_failure_says_what_to_do() {
    // An ACME directory nobody answers: the order fails and is retried later.
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let nowhere = format!("https://127.0.0.1:{}/dir", free_port());
    let ca = data.path().join("unused-ca.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    std::fs::write(&ca, params.self_signed(&key).unwrap().pem()).unwrap();
    let args = server_args(&data.path().join("server"), port, &nowhere, &ca);
    let mut server = ServerProcess::start_with_args(MM_SERVER, &args, data).await;
    let failed = wait_for_log(
        &mut server,
        "obtaining a certificate from the ACME server failed",
        WAIT,
    )
    .await;
    for words in [
        "no certificate yet: TLS connections are refused until one arrives",
        "port 443 reaches this server",
        "retry_in_s=60",
    ] {
        assert!(failed.contains(words), "{words:?} not in {failed}");
    }
    // A TLS client gets no certificate at all: not the self-made one, none.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from(DOMAIN).unwrap();
    let handshake = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await;
    match handshake {
        Err(e) => assert!(
            !e.to_string().contains("invalid peer certificate"),
            "a certificate was presented: {e}"
        ),
        Ok(_) => panic!("a TLS handshake completed without a certificate"),
    }
    let tls = server.data.path().join("server").join("tls");
    for file in ["ca.pem", "server.pem", "acme.pem"] {
        assert!(!tls.join(file).exists(), "{file} exists");
    }
}

/// Two nodes of a cluster (PostgreSQL and NATS) with `--acme-domain`: the ACME server
/// validates at node 2's port, but node 2 cannot order (it does not trust the ACME server's
/// HTTPS certificate); node 1 orders, posts its challenge in the store, node 2 answers it,
/// and node 2 presents the certificate node 1 obtained, trusted by a real `mm`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_a_cluster_answer_each_other_s_challenges_and_present_one_certificate() {
    let db = mm_tests::TestDatabase::new();
    let nats = mm_tests::TestNats::start();
    let (port1, port2) = (free_port(), free_port());
    let pebble = Pebble::start(port2, None).await;
    let node = |name: &str, port: u16, https_ca: &Path| {
        let data = tempfile::tempdir().unwrap();
        let mut args = server_args(data.path(), port, &pebble.directory(), https_ca);
        for a in [
            "--store",
            &db.url(),
            "--bus",
            &nats.url(),
            "--node-name",
            name,
            "--node-lease",
            "5s",
        ] {
            args.push(a.into());
        }
        (args, data)
    };
    // pebble's issuing root is not the CA of its HTTPS certificate: node 2's orders fail.
    let (args2, data2) = node("n2", port2, &pebble.root());
    let mut n2 = ServerProcess::start_with_args(MM_SERVER, &args2, data2).await;
    let (args1, data1) = node("n1", port1, &pebble.https_ca());
    let mut n1 = ServerProcess::start_with_args(MM_SERVER, &args1, data1).await;
    let obtained = wait_for_log(
        &mut n1,
        "obtained a certificate from the ACME server",
        ISSUE_WAIT,
    )
    .await;
    assert!(obtained.contains(DOMAIN), "{obtained}");
    // The validation reached node 2, which answered the challenge node 1 posted.
    wait_for_log(&mut n2, "answered an ACME validation (TLS-ALPN-01)", WAIT).await;
    wait_for_log(
        &mut n2,
        "using the certificate another node of the cluster obtained",
        WAIT * 2,
    )
    .await;
    assert_eq!(pebble.orders(), 1);
    assert!(
        !n1.log
            .iter()
            .any(|l| l.contains("answered an ACME validation")),
        "node 1 was validated itself: {:#?}",
        n1.log
    );
    // A real mm trusts node 2 through pebble's root as its system's.
    let home = tempfile::tempdir().unwrap();
    let mut mm = spawn_mm(port2, "bob", home.path(), &pebble.root());
    let mut out = BufReader::new(mm.stdout.take().unwrap()).lines();
    let connected = line_containing(&mut out, "connected").await;
    assert!(
        connected.starts_with(&format!("* connected to {DOMAIN}:{port2} as bob")),
        "{connected}"
    );
    drop(mm.stdin.take());
    finish(mm).await;
}

/// A node whose ACME directory differs from a live node's is refused at start: each would
/// order, and present, its own certificate (a breaker saw two fingerprints).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_acme_directory_than_the_live_nodes_is_refused_at_start() {
    let db = mm_tests::TestDatabase::new();
    let nats = mm_tests::TestNats::start();
    let args = |data: &Path, name: &str, directory: &str| {
        let mut args = server_args(
            data,
            free_port(),
            directory,
            Path::new("/nonexistent-ca.pem"),
        );
        for a in [
            "--store",
            &db.url(),
            "--bus",
            &nats.url(),
            "--node-name",
            name,
        ] {
            args.push(a.into());
        }
        args
    };
    let data1 = tempfile::tempdir().unwrap();
    let a1 = args(data1.path(), "n1", "https://127.0.0.1:9/dir");
    let _n1 = ServerProcess::start_with_args(MM_SERVER, &a1, data1).await;
    let data2 = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        WAIT * 2,
        Command::new(MM_SERVER)
            .args(args(data2.path(), "n2", "https://localhost:9/dir"))
            .output(),
    )
    .await
    .expect("the node did not stop")
    .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("runs with other room limits or ACME settings")
            && said.contains("acme_directory=https://127.0.0.1:9/dir")
            && said.contains("acme_directory=https://localhost:9/dir"),
        "{said}"
    );
}
