//! The `mm-server` process and its surroundings: signals (SIGHUP reloads the certificate,
//! SIGTERM and SIGINT stop gracefully) and output pipes that close under it (`2>&1 | tee` after
//! Ctrl-C, `accounts list | head -1`). All through the real binary.

use mm_client::ChatLine;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use mm_client::{ConnectOptions, Event, Trust};
use mm_tests::{identity_for, presented, ServerProcess, TestClient, WAIT};
use rustls_pki_types::CertificateDer;
use tokio::io::AsyncBufReadExt;

const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");
const MM_CERTS: &str = env!("CARGO_BIN_EXE_e2e-mm-certs");

/// Sends `signal` (e.g. "HUP") to process `pid` with kill(1).
fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

/// Reads the server's log until `count` lines contain `needle`; fails after [`WAIT`].
async fn wait_for_log(server: &mut ServerProcess, needle: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.log.iter().filter(|l| l.contains(needle)).count() < count {
        assert_alive(&mut server.child, &format!("waiting for {needle:?}"));
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {count}th log line with {needle:?}:\n{}",
            server.log.join("\n")
        );
        server.read_log(Duration::from_millis(100)).await;
    }
}

/// Fails the test if the process ended.
fn assert_alive(child: &mut tokio::process::Child, after: &str) {
    let exited = child.try_wait().unwrap();
    assert!(
        exited.is_none(),
        "the server died after {after}: {exited:?}"
    );
}

/// The first certificate of a PEM file.
fn end_entity(path: &Path) -> CertificateDer<'static> {
    mm_certs::load_certs(path).unwrap().remove(0)
}

/// Connects and logs in as `nick` with `nick`'s certificate.
async fn login(addr: &str, ca: &[CertificateDer<'static>], nick: &str) -> TestClient {
    let mut opts = ConnectOptions::new(addr.to_owned(), nick, Trust::Roots(ca.to_vec()));
    opts.certificate = Some(identity_for(nick));
    TestClient::connect(&opts).await
}

/// Waits for the shutdown notice and the clean close that follows it.
async fn told_to_shut_down(user: &mut TestClient) {
    let notice = user
        .wait_for("shutdown notice", |e| matches!(e, Event::Shutdown { .. }))
        .await;
    assert!(matches!(notice, Event::Shutdown { reason } if reason.contains("shutting down")));
    assert_eq!(
        user.next().await,
        Event::Closed {
            error: None,
            undelivered: vec![]
        }
    );
}

async fn exit_status(child: &mut tokio::process::Child) -> ExitStatus {
    tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("the server did not exit")
        .unwrap()
}

#[tokio::test]
async fn sighup_reloads_the_certificate_for_new_connections_and_keeps_serving() {
    let mut server = ServerProcess::start(MM_SERVER, "").await;
    let pid = server.child.id().unwrap();
    let tls = server.data.path().join("tls");
    let old_ca = server.ca();
    let old_cert = end_entity(&tls.join(mm_certs::SERVER_CERT));
    let mut alice = login(&server.addr, &old_ca, "alice").await;
    let mut bob = login(&server.addr, &old_ca, "bob").await;
    assert_eq!(
        presented(&server.addr, &old_ca, "localhost").await.unwrap(),
        old_cert
    );

    // A SIGHUP with nothing changed: still serving, the same certificate.
    send_signal(pid, "HUP");
    wait_for_log(
        &mut server,
        "SIGHUP: TLS certificate reloaded; it is unchanged",
        1,
    )
    .await;
    assert_alive(&mut server.child, "SIGHUP");
    wait_for_log(
        &mut server,
        "limits are not reloaded; restart to change them",
        1,
    )
    .await;
    alice.chat_to(&mut bob, "after the first hangup").await;

    // The operator issues a new server certificate for another name from the same CA.
    let output = std::process::Command::new(MM_CERTS)
        .args(["--renew", "--name", "reloaded.lan", "--out"])
        .arg(&tls)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(server.ca(), old_ca, "the CA is kept");
    let new_cert = end_entity(&tls.join(mm_certs::SERVER_CERT));
    assert_ne!(new_cert, old_cert);
    assert!(
        presented(&server.addr, &old_ca, "reloaded.lan")
            .await
            .is_err(),
        "not before SIGHUP"
    );
    send_signal(pid, "HUP");
    wait_for_log(
        &mut server,
        "SIGHUP: TLS certificate reloaded; new connections",
        1,
    )
    .await;
    assert_alive(&mut server.child, "SIGHUP");
    let reloaded = server
        .log
        .iter()
        .find(|l| l.contains("SIGHUP: TLS certificate reloaded; new connections"))
        .unwrap();
    assert!(
        reloaded.contains(&mm_certs::fingerprint(&new_cert))
            && reloaded.contains(&mm_certs::fingerprint(&old_cert)),
        "{reloaded}"
    );

    // Established connections are untouched; new ones get the new certificate and its name.
    alice.chat_to(&mut bob, "on the old connection").await;
    bob.chat_to(&mut alice, "both ways").await;
    assert_eq!(
        presented(&server.addr, &old_ca, "reloaded.lan")
            .await
            .unwrap(),
        new_cert
    );
    let mut carol = login(&server.addr, &old_ca, "carol").await;
    carol
        .chat_to(&mut alice, "carol on the new certificate")
        .await;

    // Damaged files: each reload fails, says why, and the new certificate stays in use.
    let good_cert = std::fs::read(tls.join(mm_certs::SERVER_CERT)).unwrap();
    let good_key = std::fs::read(tls.join(mm_certs::SERVER_KEY)).unwrap();
    let old_pem = {
        let other = tempfile::tempdir().unwrap();
        mm_certs::generate(other.path(), &mm_certs::Names::default(), false).unwrap();
        std::fs::read(other.path().join(mm_certs::SERVER_CERT)).unwrap()
    };
    let truncated = good_cert[..good_cert.len() / 3].to_vec();
    // (what, server.pem, server.key, what the log line says); None: the file is missing.
    type File<'a> = Option<&'a [u8]>;
    let damages: [(&str, File, File, &str); 5] = [
        (
            "garbage certificate",
            Some(b"garbage\n"),
            Some(&good_key),
            "no certificate",
        ),
        (
            "truncated certificate",
            Some(&truncated),
            Some(&good_key),
            "server.pem",
        ),
        (
            "another certificate's key",
            Some(&old_pem),
            Some(&good_key),
            "unusable certificate or key",
        ),
        ("missing key", Some(&good_cert), None, "server.key"),
        ("empty key", Some(&good_cert), Some(b""), "server.key"),
    ];
    for (n, (what, cert, key, reason)) in damages.into_iter().enumerate() {
        for (file, contents) in [(mm_certs::SERVER_CERT, cert), (mm_certs::SERVER_KEY, key)] {
            let path = tls.join(file);
            match contents {
                Some(bytes) => std::fs::write(&path, bytes).unwrap(),
                None => std::fs::remove_file(&path).unwrap(),
            }
        }
        send_signal(pid, "HUP");
        wait_for_log(&mut server, "SIGHUP: TLS certificate NOT reloaded", n + 1).await;
        assert_alive(&mut server.child, what);
        let line = server
            .log
            .iter()
            .filter(|l| l.contains("SIGHUP: TLS certificate NOT reloaded"))
            .nth(n)
            .unwrap();
        assert!(line.contains(reason), "{what}: {line}");
        assert!(
            line.contains(&mm_certs::fingerprint(&new_cert)),
            "{what}: names the certificate still in use: {line}"
        );
        assert_eq!(
            presented(&server.addr, &old_ca, "reloaded.lan")
                .await
                .unwrap(),
            new_cert,
            "{what}: the previous certificate stays in use"
        );
        alice.chat_to(&mut carol, what).await;
    }

    // SIGTERM still stops it gracefully, and a SIGHUP during the shutdown does no harm.
    send_signal(pid, "TERM");
    send_signal(pid, "HUP");
    for user in [&mut alice, &mut bob, &mut carol] {
        told_to_shut_down(user).await;
    }
    // (Its own SIGTERM arrives during the shutdown too.)
    let (status, log) = server.stop().await;
    assert!(status.success(), "{status}\n{}", log.join("\n"));
    assert!(log.iter().any(|l| l.contains("SIGTERM received")));
    assert!(log.iter().any(|l| l.contains("store closed")));
}

/// The server's log (stderr) as lines.
type LogLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>;

/// Starts the binary on 127.0.0.1:0 with data directory `data` and `RUST_LOG` set to
/// `rust_log` (unset: the default filter), reading its log up to the "listening" line.
/// Returns the child, the rest of its log, its address and the lines read so far.
async fn start_logging(
    data: &Path,
    rust_log: Option<&str>,
) -> (tokio::process::Child, LogLines, String, Vec<String>) {
    let mut command = tokio::process::Command::new(MM_SERVER);
    command
        .args(["--bind", "127.0.0.1:0", "--data"])
        .arg(data)
        .envs(mm_tests::test_store_env(data));
    match rust_log {
        Some(filter) => command.env("RUST_LOG", filter),
        None => command.env_remove("RUST_LOG"),
    };
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
    (child, lines, addr, log)
}

/// Starts the binary with an empty data directory and its log on a pipe; reads the log up to
/// the "listening" line, then closes the pipe's read end, as when `tee` dies with Ctrl-C.
/// Returns the child, its address and the data directory.
async fn start_then_close_the_log() -> (tokio::process::Child, String, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let (mut child, lines, addr, _) = start_logging(data.path(), Some("info")).await;
    drop(lines); // the read end: every later write to stderr fails with EPIPE
    drop(child.stdout.take());
    (child, addr, data)
}

/// Serving with a closed log, then stopping with `signal`.
async fn closed_log_then(signal: &str) {
    let (mut child, addr, data) = start_then_close_the_log().await;
    let pid = child.id().unwrap();
    let ca = mm_certs::load_certs(&data.path().join("tls").join(mm_certs::CA_CERT)).unwrap();
    // Logins, registrations, chat and leaving all log.
    let mut alice = login(&addr, &ca, "alice").await;
    let mut bob = login(&addr, &ca, "bob").await;
    for i in 0..5 {
        alice.chat_to(&mut bob, &format!("line {i}")).await;
    }
    let carol = login(&addr, &ca, "carol").await;
    carol.client.quit().await;
    let mut carol = carol;
    carol
        .wait_for("close", |e| matches!(e, Event::Closed { .. }))
        .await;
    bob.chat_to(&mut alice, "after carol left").await;
    // A SIGHUP logs too.
    send_signal(pid, "HUP");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_alive(&mut child, "SIGHUP with the log closed");
    alice.chat_to(&mut bob, "after the hangup").await;

    send_signal(pid, signal);
    told_to_shut_down(&mut alice).await;
    told_to_shut_down(&mut bob).await;
    let status = exit_status(&mut child).await;
    assert_eq!(status.code(), Some(0), "{status}");
    // What was accepted was committed: the history survives into the next start.
    let server = ServerProcess::start_in(MM_SERVER, "", data).await;
    let mut dave = login(&server.addr, &server.ca(), "dave").await;
    dave.client.public("(marker)").await.unwrap();
    let mut history = Vec::new();
    loop {
        match dave.next().await {
            Event::History(ChatLine { text, .. }) => history.push(text),
            Event::Sent { .. } => break,
            _ => {}
        }
    }
    assert_eq!(history.last().map(String::as_str), Some("after the hangup"));
    let (status, _) = server.stop().await;
    assert!(status.success());
}

#[tokio::test]
async fn a_closed_log_pipe_does_not_affect_serving_or_a_sigterm_shutdown() {
    closed_log_then("TERM").await;
}

#[tokio::test]
async fn a_closed_log_pipe_does_not_affect_serving_or_a_sigint_shutdown() {
    closed_log_then("INT").await;
}

/// Runs `mm-server --data DIR args...` with stdout on `stdout`; returns its status and stderr.
async fn admin(data: &Path, args: &[&str], stdout: Stdio) -> (ExitStatus, String) {
    let child = tokio::process::Command::new(MM_SERVER)
        .arg("--data")
        .arg(data)
        .args(args)
        .envs(mm_tests::test_store_env(data))
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("mm-server did not finish")
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A pipe whose read end is already closed (`| head -1` after head exited).
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Stdio::from(writer)
}

#[tokio::test]
async fn admin_output_into_a_closed_pipe_is_not_an_error_and_a_full_disk_is_one() {
    let server = ServerProcess::start(MM_SERVER, "").await;
    let ca = server.ca();
    for nick in ["alice", "bob"] {
        let user = login(&server.addr, &ca, nick).await;
        user.client.quit().await;
    }
    let data = server.stop_keeping_data().await;

    let (status, stderr) = admin(data.path(), &["accounts", "list"], closed_pipe()).await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The action is done even though nobody reads the confirmation.
    let (status, stderr) = admin(
        data.path(),
        &["accounts", "release", "alice"],
        closed_pipe(),
    )
    .await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    let listing = tokio::process::Command::new(MM_SERVER)
        .arg("--data")
        .arg(data.path())
        .args(["accounts", "list"])
        .envs(mm_tests::test_store_env(data.path()))
        .output();
    let listing = tokio::time::timeout(WAIT, listing).await.unwrap().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(listing.contains("1 account(s)"), "{listing}");
    assert!(
        listing.contains("bob") && !listing.contains("alice"),
        "{listing}"
    );

    // mm-certs too: the files are written, the report goes nowhere, no panic.
    let out = tempfile::tempdir().unwrap();
    let certs = tokio::process::Command::new(MM_CERTS)
        .arg("--out")
        .arg(out.path())
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output();
    let certs = tokio::time::timeout(WAIT, certs).await.unwrap().unwrap();
    assert_eq!(certs.status.code(), Some(0), "{certs:?}");
    assert!(out.path().join(mm_certs::SERVER_CERT).exists());

    // Any other write error is reported, still without a panic.
    #[cfg(target_os = "linux")]
    {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let (status, stderr) = admin(data.path(), &["accounts", "list"], Stdio::from(full)).await;
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("cannot write to stdout"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// Runs `mm-server --bind ADDR --data DIR` expecting it to refuse at start; returns its stderr.
async fn refused_start(bind: &str, data: &Path) -> String {
    let (status, stderr) = admin(data, &["--bind", bind], Stdio::null()).await;
    assert!(!status.success(), "started on {bind}");
    stderr
}

/// A busy port (or an address not on this machine) is refused in plain words before anything
/// is made on disk: it used to create the data directory and a new CA first.
#[tokio::test]
async fn an_address_that_cannot_be_used_is_refused_before_anything_is_created() {
    let parent = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let data = parent.path().join("new-data");
    let stderr = refused_start(&addr, &data).await;
    assert!(
        stderr.contains(&format!(
            "cannot listen on {addr}: the address is already in use (another mm-server?); \
             stop the other program or choose another address with --bind"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("os error"), "{stderr}");
    assert!(!data.exists(), "a refused start made {}", data.display());

    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine.
    let stderr = refused_start("192.0.2.1:7667", &data).await;
    assert!(
        stderr.contains(
            "cannot listen on 192.0.2.1:7667: 192.0.2.1 is not an address of this machine"
        ),
        "{stderr}"
    );
    assert!(!data.exists(), "a refused start made {}", data.display());
}

/// rustls logged a misbehaving peer's records as warnings in its own terms (`WARN rustls::check:
/// Received a ApplicationData message while expecting [Handshake]`), at the default level and as
/// often as anyone cared to connect; the default log now leaves them out.
#[tokio::test]
async fn the_default_log_holds_no_tls_library_warnings_about_bad_clients() {
    use tokio::io::AsyncWriteExt as _;
    let data = tempfile::tempdir().unwrap();
    let (child, mut lines, addr, mut log) = start_logging(data.path(), None).await;
    // A TLS record of application data before any handshake, and a ChangeCipherSpec.
    for record in [
        &[0x17, 0x03, 0x03, 0x00, 0x01, 0x00][..],
        &[0x14, 0x03, 0x03, 0x00, 0x01, 0x01][..],
    ] {
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(record).await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(
            WAIT,
            tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut sink),
        )
        .await;
    }
    send_signal(child.id().unwrap(), "TERM");
    while let Ok(Ok(Some(line))) = tokio::time::timeout(WAIT, lines.next_line()).await {
        log.push(line);
    }
    let log = log.join("\n");
    assert!(
        log.contains("shut down") || log.contains("stopped"),
        "{log}"
    );
    assert!(!log.contains("rustls"), "{log}");
}

/// A client that reconnects by itself gives up when another login takes its account over, and
/// stays given up: a `/reconnect` asked for earlier (while it was connected, or during an
/// attempt that then succeeded) does not count later (it used to, and took the account back).
#[tokio::test]
async fn a_replaced_client_stays_given_up_whatever_was_asked_before() {
    let server = mm_tests::TestServer::start().await;
    let mut opts = server.options("olga");
    opts.reconnect = true;
    let mut first = server.client_with(opts).await;
    first.client.reconnect_now(); // connected: nothing to do now
    let _second = server.client("olga").await;
    // Closed (by the server: replaced), then the give-up.
    loop {
        if let Event::GaveUp { reason, .. } = first.next().await {
            assert!(reason.contains("another client logged in"), "{reason}");
            break;
        }
    }
    let later = tokio::time::timeout(std::time::Duration::from_secs(3), async {
        loop {
            if let Event::Reconnected(_) = first.next().await {
                return;
            }
        }
    })
    .await;
    assert!(later.is_err(), "it took the account back by itself");
    assert!(!first.client.is_connected());
}
