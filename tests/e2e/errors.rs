//! Every way a connection can fail that a user can meet is said by the real `mm` in one plain
//! sentence with what to do next: never a TLS library's type names (`InvalidContentType`,
//! `BadSignature`...), never its documentation links, never an OS error number.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mm_certs::{CertInfo, Issue, Names};
use mm_server::Limits;
use mm_tests::{ServerProcess, TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cli::spawn_mm;

const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");

/// What users met before: none of it may reach them.
pub(crate) fn assert_plain(said: &str) {
    for jargon in [
        "InvalidContentType",
        "BadSignature",
        "UnknownIssuer",
        "UnknownCA",
        "NotValidForName",
        "AlertReceived",
        "BadCertificate",
        "DnsName",
        "IpAddress(",
        "close_notify",
        "docs.rs",
        "https://",
        "os error",
        "corrupt message",
        "tls handshake eof",
        "invalid peer certificate",
        "(UNIX)",
        "TLS with",
        "\u{fffd}",
    ] {
        assert!(!said.contains(jargon), "{jargon:?} in:\n{said}");
    }
}

/// Runs `mm` in line mode with nothing to send, expecting it to fail to connect; returns what
/// it said on stderr after its first-run notes.
async fn mm_fails(server: &str, ca: Option<&Path>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_mm(server, ca, "alice", &dir.path().join("home"));
    drop(child.stdin.take());
    let output = tokio::time::timeout(WAIT * 2, child.wait_with_output())
        .await
        .expect("mm hung")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("mm: created your"))
        .collect();
    let said = said.join("\n");
    assert_plain(&said);
    said
}

/// A TCP listener on 127.0.0.1:0 that does `serve` with every connection.
async fn listener<F, Fut>(serve: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(tcp));
        }
    });
    addr
}

/// Reads what the client sends first (its TLS hello).
async fn read_some(tcp: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await;
}

#[tokio::test]
async fn a_server_that_is_not_a_multi_messenger_server_is_said_to_be_none() {
    let ca = tempfile::tempdir().unwrap();
    mm_certs::generate(ca.path(), &Names::default(), false).unwrap();
    let ca = ca.path().join(mm_certs::CA_CERT);
    // Another program on the port: an SSH-like banner, and a web server.
    let banner = listener(|mut tcp| async move {
        let _ = tcp.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    })
    .await;
    let http = listener(|mut tcp| async move {
        read_some(&mut tcp).await;
        let _ = tcp
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
    })
    .await;
    for (server, ca) in [
        (&banner, Some(ca.as_path())),
        (&http, Some(ca.as_path())),
        // Without --ca (a server not trusted yet): the same.
        (&http, None),
    ] {
        assert_eq!(
            mm_fails(server, ca).await,
            format!(
                "mm: {server} is not a Multi-Messenger server: it does not answer with TLS as mm-server does (another program on that port, a web server?); check the port in --server (mm-server listens on 7667 unless told otherwise)"
            )
        );
    }
}

#[tokio::test]
async fn a_server_that_closes_or_resets_before_the_secure_connection_is_said_so() {
    let ca = tempfile::tempdir().unwrap();
    mm_certs::generate(ca.path(), &Names::default(), false).unwrap();
    let ca = ca.path().join(mm_certs::CA_CERT);
    let closes = listener(|mut tcp| async move {
        read_some(&mut tcp).await;
    })
    .await;
    assert_eq!(
        mm_fails(&closes, Some(&ca)).await,
        format!("mm: {closes} closed the connection before a secure connection was set up: it may not be a Multi-Messenger server (check --server), or it is overloaded or stopping (try again later)")
    );
    let resets = listener(|mut tcp| async move {
        read_some(&mut tcp).await;
        // A zero linger makes the close a reset (and never blocks, which the deprecation is about).
        #[allow(deprecated)]
        let _ = tcp.set_linger(Some(Duration::ZERO));
    })
    .await;
    assert_eq!(
        mm_fails(&resets, Some(&ca)).await,
        format!("mm: {resets} cut the connection (reset) before a secure connection was set up: it may not be a Multi-Messenger server (check --server), or it is overloaded or stopping (try again later)")
    );
}

#[tokio::test]
async fn nothing_listening_and_an_unknown_name_are_said_without_os_error_numbers() {
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = free.local_addr().unwrap().to_string();
    drop(free);
    assert_eq!(
        mm_fails(&server, None).await,
        format!("mm: cannot reach {server}: nothing is listening there (is mm-server running, and is the port in --server right?)")
    );
    let said = mm_fails("no-such-host.invalid:7667", None).await;
    // The resolver's reason varies (no such name; no DNS at all in a sandbox).
    assert!(
        said.starts_with("mm: cannot reach no-such-host.invalid:7667: the name no-such-host.invalid could not be looked up (")
            && said.ends_with("); check the name in --server, and that this computer is online"),
        "{said}"
    );
}

#[tokio::test]
async fn a_server_signed_by_another_ca_than_the_ca_file_names_the_file() {
    // The real server; its log says in plain words why a client refused it.
    let mut server = ServerProcess::start(MM_SERVER, "").await;
    // Another Multi-Messenger CA (same name, other key: the signature does not verify), and
    // a certificate that is no CA at all of this server (an unknown issuer).
    let other = tempfile::tempdir().unwrap();
    mm_certs::generate(other.path(), &Names::default(), false).unwrap();
    let other_ca = other.path().join(mm_certs::CA_CERT);
    let stranger = other.path().join("leaf.pem");
    std::fs::write(
        &stranger,
        std::fs::read_to_string(other.path().join(mm_certs::SERVER_CERT))
            .unwrap()
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap(),
    )
    .unwrap();
    for ca in [&other_ca, &stranger] {
        assert_eq!(
            mm_fails(&server.addr, Some(ca)).await,
            format!(
                "mm: the certificate of {} is not signed by the CA in {} — is --ca the right file? It must be the ca.pem of that server (in its TLS directory; mm-server logs its fingerprint at start): ask its operator",
                server.addr,
                ca.display()
            )
        );
    }
    server.read_log(Duration::from_millis(500)).await;
    let refused: Vec<&String> = server
        .log
        .iter()
        .filter(|l| l.contains("TLS handshake failed"))
        .collect();
    assert_eq!(refused.len(), 2, "{:#?}", server.log);
    for line in refused {
        assert!(
            line.contains("why=the client did not accept this server's CA: normal on first contact while its user compares the CA fingerprint, or from a browser that does not trust the CA yet; otherwise it was given another ca.pem or pinned another fingerprint (give its user this server's ca.pem or the CA fingerprint logged at start)"),
            "{line}"
        );
        assert!(
            !line.contains("UnknownCA") && !line.contains("DecryptError"),
            "{line}"
        );
    }
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_certificate_is_said_with_its_dates() {
    let now = time::OffsetDateTime::now_utc();
    for (issued, what) in [
        (now - time::Duration::days(400), "expired on"),
        (now + time::Duration::days(30), "is not valid before"),
    ] {
        let tls = tempfile::tempdir().unwrap();
        let issue = Issue {
            now: issued,
            server_validity: time::Duration::days(397),
        };
        mm_certs::generate_at(tls.path(), &Names::default(), false, issue).unwrap();
        let chain = mm_certs::load_certs(&tls.path().join(mm_certs::SERVER_CERT)).unwrap();
        let info = CertInfo::parse(&chain[0], Path::new("server.pem")).unwrap();
        let server = TestServer::start_in(tls, Limits::default()).await;
        let said = mm_fails(&server.server(), Some(&server.ca_path())).await;
        let at = |t: time::OffsetDateTime| {
            format!(
                "{} {:02}:{:02} UTC",
                mm_certs::date(t),
                t.hour(),
                t.minute()
            )
        };
        let expected = if what == "expired on" {
            format!(
                "mm: the certificate of {} expired on {} (this computer's clock says ",
                server.server(),
                at(info.not_after)
            )
        } else {
            format!(
                "mm: the certificate of {} is not valid before {} and this computer's clock says ",
                server.server(),
                at(info.not_before)
            )
        };
        assert!(said.starts_with(&expected), "{said}\nexpected: {expected}");
        let ends = if what == "expired on" {
            "): the server's operator must renew it (mm-server does at start when its TLS directory holds ca.key; or mm-certs, then restart mm-server); if this computer's date is wrong, correct it"
        } else {
            " UTC: one of the two clocks is wrong (this computer's, or the server's when it made the certificate); correct it and try again"
        };
        assert!(said.ends_with(ends), "{said}");
    }
}

#[tokio::test]
async fn a_certificate_for_other_names_says_which_names_it_covers() {
    let tls = tempfile::tempdir().unwrap();
    mm_certs::generate(tls.path(), &Names::default(), false).unwrap();
    // 127.0.0.2 is loopback but not in the certificate.
    let server = TestServer::start_on("127.0.0.2:0", tls, Limits::default()).await;
    assert_eq!(
        mm_fails(&server.server(), Some(&server.ca_path())).await,
        format!(
            "mm: the certificate of {} does not cover the name 127.0.0.2 (it covers localhost, 127.0.0.1, ::1): connect with one of those in --server, or ask the operator to add 127.0.0.2 (mm-certs --name NAME or --ip ADDR, then restart mm-server)",
            server.server()
        )
    );
}

/// A TLS server (not a Multi-Messenger one) that only accepts client certificates from a CA
/// of its own, so it refuses mm's.
async fn server_refusing_client_certificates(
    versions: &'static [&'static rustls::SupportedProtocolVersion],
) -> (String, tempfile::TempDir) {
    let tls = tempfile::tempdir().unwrap();
    mm_certs::generate(tls.path(), &Names::default(), false).unwrap();
    let chain = mm_certs::load_certs(&tls.path().join(mm_certs::SERVER_CERT)).unwrap();
    let key = mm_certs::load_key(&tls.path().join(mm_certs::SERVER_KEY)).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(chain[1].clone()).unwrap(); // client certificates must come from its CA
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let addr = listener(move |tcp| {
        let acceptor = acceptor.clone();
        async move {
            let _ = acceptor.accept(tcp).await;
        }
    })
    .await;
    (addr, tls)
}

static TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
static TLS12: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];

#[tokio::test]
async fn a_server_that_refuses_the_client_certificate_is_said_so_with_either_tls_version() {
    // TLS 1.3: the refusal arrives after the handshake, at the login.
    let (server, tls) = server_refusing_client_certificates(&TLS13).await;
    assert_eq!(
        mm_fails(&server, Some(&tls.path().join(mm_certs::CA_CERT))).await,
        "mm: login failed: the server refused mm's client certificate (the key that owns your nick; TLS alert: unknown CA): a Multi-Messenger server accepts any, so it may be another kind of server; check --server, or ask its operator"
    );
    // TLS 1.2: during the handshake.
    let (server, tls) = server_refusing_client_certificates(&TLS12).await;
    assert_eq!(
        mm_fails(&server, Some(&tls.path().join(mm_certs::CA_CERT))).await,
        format!("mm: {server} refused mm's client certificate (the key that owns your nick; TLS alert: unknown CA): a Multi-Messenger server accepts any, so it may be another kind of server; check --server, or ask its operator")
    );
}

#[tokio::test]
async fn a_server_that_goes_away_without_a_goodbye_is_said_so_without_the_tls_librarys_link() {
    let server = ServerProcess::start(MM_SERVER, "").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::copy(server.data.path().join("tls").join(mm_certs::CA_CERT), &ca).unwrap();
    let mut mm = spawn_mm(&server.addr, Some(&ca), "alice", &dir.path().join("home"));
    let mut out = tokio::io::BufReader::new(mm.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(line.starts_with("* connected"), "{line}");
    // SIGKILL: the socket closes without TLS close_notify.
    let _data = server.kill().await;
    let mut rest = String::new();
    tokio::time::timeout(WAIT, out.read_to_string(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let output = tokio::time::timeout(WAIT, mm.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Without close_notify; and with a reset instead of a close when the killed server had
    // not read all the client sent (its key upload right after the login may still be in
    // flight). Either is said in plain words.
    let goodbye = if rest.contains("(reset)") {
        "the connection was cut off (reset): the server stopped, or the network dropped it"
    } else {
        "the server closed the connection without saying goodbye: it stopped or crashed, or the network cut the connection"
    };
    assert_eq!(rest, format!("! disconnected: {goodbye}\n"));
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        // Its input was still open: what would have come after was never read.
        format!(
            "mm: connection lost ({goodbye}); every line was delivered (the rest of the input was not read)"
        ),
        "{stderr}"
    );
    assert_plain(&rest);
    assert_plain(&stderr);
    assert_eq!(output.status.code(), Some(1));
}

#[tokio::test]
async fn a_damaged_ca_file_is_named() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let said = |path: &Path, why: &str| {
        format!(
            "mm: --ca {}: {why}; --ca takes the server's ca.pem (in its TLS directory; mm-certs prints where it wrote it)",
            path.display()
        )
    };
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert_eq!(
        mm_fails(&server.server(), Some(&ca)).await,
        said(
            &ca,
            "does not hold a certificate mm can check servers with (damaged?)"
        )
    );
    // Every other file that is not a CA certificate, each said in words (they were "no
    // certificate found", "No such file or directory (os error 2)", Debug byte lists, and
    // /dev/zero read until memory ran out).
    let text = dir.path().join("README.md");
    std::fs::write(&text, "# not a certificate\n").unwrap();
    let key = dir.path().join("ca.key");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let cut = dir.path().join("cut.pem");
    std::fs::write(&cut, "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let fifo = dir.path().join("fifo.pem");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (path, why) in [
        (
            text.as_path(),
            "holds no certificate (a PEM file with -----BEGIN CERTIFICATE-----)",
        ),
        (
            key.as_path(),
            "holds a private key, not a certificate (keep ca.key secret, on the server)",
        ),
        (
            cut.as_path(),
            "holds no certificate (a PEM file with -----BEGIN CERTIFICATE-----)",
        ),
        (missing.as_path(), "no such file or directory"),
        (Path::new("/dev/zero"), "not a regular file"),
        (fifo.as_path(), "not a regular file"),
    ] {
        assert_eq!(
            mm_fails(&server.server(), Some(path)).await,
            said(path, why)
        );
    }
}
