//! The shipped programs, run as subprocesses: `mm` in line mode, `mm-certs`, `mm-server`.

use mm_client::ChatLine;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mm_client::Event;
use mm_common::e2e::E2eEvent;
use mm_common::protocol::LeaveReason;
use mm_server::Limits;
use mm_tests::{TestClient, TestServer, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const MM: &str = env!("CARGO_BIN_EXE_e2e-mm");
const MM_CERTS: &str = env!("CARGO_BIN_EXE_e2e-mm-certs");
const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");

/// Starts `mm` in line mode with piped stdin/stdout/stderr and an empty home.
pub(crate) fn spawn_mm(server: &str, ca: Option<&Path>, nick: &str, home: &Path) -> Child {
    spawn_mm_with(server, ca, nick, home, &[])
}

/// [`spawn_mm`] with more arguments.
fn spawn_mm_with(server: &str, ca: Option<&Path>, nick: &str, home: &Path, more: &[&str]) -> Child {
    let mut cmd = Command::new(MM);
    cmd.args(["--server", server, "--nick", nick])
        .arg("--home")
        .arg(home)
        .args(more);
    if let Some(ca) = ca {
        cmd.arg("--ca").arg(ca);
    }
    cmd.env_remove("MM_SERVER")
        .env_remove("MM_NICK")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().unwrap()
}

/// `mm` for `nick` against an in-process server, trusting its CA.
fn spawn_trusting(server: &TestServer, nick: &str, home: &Path) -> Child {
    spawn_mm(&server.server(), Some(&server.ca_path()), nick, home)
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("no output in time")
        .unwrap()
        .expect("stdout closed")
}

#[tokio::test]
async fn line_mode_client_end_to_end() {
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut alice = server.client("alice").await;
    let mut bob = spawn_trusting(&server, "bob", home.path());
    let mut out = BufReader::new(bob.stdout.take().unwrap()).lines();
    let mut stdin = bob.stdin.take().unwrap();

    assert_eq!(
        next_line(&mut out).await,
        format!(
            "* connected to {} as bob; 2 online: alice, bob",
            server.server()
        )
    );
    assert_eq!(alice.next().await, Event::Joined { nick: "bob".into() });

    alice
        .client
        .public("hello bob, *with* <symbols> & ünïcode")
        .await
        .unwrap();
    assert_eq!(
        next_line(&mut out).await,
        "<alice> hello bob, *with* <symbols> & ünïcode"
    );
    // End to end by default: bob's keys from the directory.
    mm_tests::wait_for_keys(&server, "bob").await;
    alice.client.private("bob", "psst").await.unwrap();
    assert!(line_containing(&mut out, "alice started a secure session")
        .await
        .starts_with("* "));
    assert_eq!(next_line(&mut out).await, "[secure] <alice> psst");

    stdin
        .write_all(b"hi alice\n/msg alice back at you\n//slash\n")
        .await
        .unwrap();
    let hi = alice.next_line().await;
    assert!(
        matches!(&hi, Event::Public(ChatLine { from, text, .. }) if from == "bob" && text == "hi alice"),
        "{hi:?}"
    );
    assert_eq!(
        alice.secure_message().await,
        ("bob".to_string(), "back at you".to_string())
    );
    let slash = alice.next_line().await;
    assert!(
        matches!(&slash, Event::Public(ChatLine { text, .. }) if text == "/slash"),
        "{slash:?}"
    );
    // One command at a time: local errors print at once, server answers a round trip later.
    for (input, output) in [
        (
            "/msg nobody x\n",
            "! nobody is not a user on this server; 1 waiting message was NOT sent",
        ),
        ("/who\n", "* online (2): alice, bob"),
        ("/frob\n", "! unknown command /frob (try /help)"),
        (
            "/msg alice\n",
            "! usage: /msg NICK TEXT (or /msg #ROOM TEXT)",
        ),
    ] {
        stdin.write_all(input.as_bytes()).await.unwrap();
        assert_eq!(next_line(&mut out).await, output);
    }

    drop(stdin); // EOF: quit cleanly, but say that three input lines did nothing
    let output = finish(bob, WAIT).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        "mm: 3 lines not delivered: 2 refused by mm, 1 not sent: no end-to-end session could be set up (see above)",
        "{stderr}"
    );
    // Answers to alice's own lines come once they are stored, possibly after bob's lines.
    assert_eq!(
        alice
            .wait_for(
                "bob's leave",
                |e| matches!(e, Event::Left { nick, .. } if nick == "bob")
            )
            .await,
        Event::Left {
            nick: "bob".into(),
            reason: LeaveReason::Quit
        }
    );
}

/// A file piped to line mode (or a paste into it): a tab becomes four spaces, in public and
/// private text alike, and every other control character is still refused. A line over the
/// server's limit is refused with its real size in bytes (multi-byte text counts its bytes),
/// never cut, and the lines around it still go.
#[tokio::test]
async fn line_mode_turns_tabs_into_spaces_and_refuses_long_lines_with_their_real_size() {
    let server = TestServer::start_unthrottled().await;
    let home = tempfile::tempdir().unwrap();
    let mut alice = server.client("alice").await;
    let mut bob = spawn_trusting(&server, "bob", home.path());
    let mut out = BufReader::new(bob.stdout.take().unwrap()).lines();
    let mut stdin = bob.stdin.take().unwrap();
    next_line(&mut out).await; // connected
    mm_tests::wait_for_keys(&server, "alice").await;
    let input = format!(
        "name\tage\r\n/msg alice\tsecret\tcol\n{}\nbell\x07\n{}\n{}\nlast\n",
        "x".repeat(5000),
        "é".repeat(2100),
        "é".repeat(2048)
    );
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);

    // The private line is end-to-end: it waits for alice's keys, so public lines may pass it.
    let mut said = Vec::new();
    let mut secure = None;
    while !(said.last().is_some_and(|l: &String| l == "last") && secure.is_some()) {
        let line = alice
            .wait_for("a line", |e| {
                matches!(
                    e,
                    Event::Public(_) | Event::Private(_) | Event::Secure(E2eEvent::Message { .. })
                )
            })
            .await;
        match line {
            Event::Secure(E2eEvent::Message { text, .. }) => secure = Some(text),
            Event::Public(ChatLine { text, .. }) | Event::Private(ChatLine { text, .. }) => {
                said.push(text)
            }
            _ => {}
        }
    }
    said.pop();
    assert_eq!(
        said,
        ["name    age", "é".repeat(2048).as_str()],
        "tabs as four spaces; 2048 é are 4096 bytes: just in"
    );
    assert_eq!(secure.as_deref(), Some("secret    col"));
    let mut printed = Vec::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(WAIT, out.next_line()).await {
        printed.push(line);
    }
    let printed = printed.join("\n");
    for refusal in [
        "message of 5000 bytes is over the limit of 4096 bytes",
        "message of 4200 bytes is over the limit of 4096 bytes",
        "message holds a control character",
    ] {
        assert!(printed.contains(refusal), "{refusal}:\n{printed}");
    }
    let output = finish(bob, WAIT).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("mm: 3 lines not delivered: 3 refused by mm"),
        "{stderr}"
    );
}

#[tokio::test]
async fn line_mode_sends_everything_before_eof_then_exits_zero() {
    let server = TestServer::start_unthrottled().await;
    let home = tempfile::tempdir().unwrap();
    let mut alice = server.client("alice").await;
    let mut bob = spawn_trusting(&server, "bob", home.path());
    let mut stdin = bob.stdin.take().unwrap();
    let input: String = (0..300).map(|i| format!("line {i}\n")).collect();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(WAIT, bob.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for i in 0..300 {
        assert!(
            matches!(alice.next_line().await, Event::Public(ChatLine { text, .. }) if text == format!("line {i}"))
        );
    }
    alice
        .wait_for("bob's quit", |e| {
            matches!(
                e,
                Event::Left {
                    reason: LeaveReason::Quit,
                    ..
                }
            )
        })
        .await;
}

#[tokio::test]
async fn line_mode_refuses_an_unknown_server_without_a_trust_anchor() {
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut mm = spawn_mm(&server.server(), None, "bob", home.path());
    drop(mm.stdin.take());
    let output = tokio::time::timeout(WAIT, mm.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a known server"), "{stderr}");
    assert!(
        stderr.contains(&mm_certs::fingerprint(&server.ca[0])),
        "{stderr}"
    );
    assert!(stderr.contains("--ca"), "{stderr}");
    assert!(output.stdout.is_empty());

    // Once the fingerprint is in known_servers, the same command connects.
    mm_client::trust::KnownServers::in_home(home.path())
        .add(&server.server(), &mm_certs::fingerprint(&server.ca[0]))
        .unwrap();
    let mut mm = spawn_mm(&server.server(), None, "bob", home.path());
    drop(mm.stdin.take());
    let output = tokio::time::timeout(WAIT, mm.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("* connected to"));
}

#[tokio::test]
async fn mm_certs_output_works_with_server_and_client_and_keys_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let output = Command::new(MM_CERTS)
        .arg("--out")
        .arg(&tls)
        .args(["--ip", "192.0.2.10", "--name", "chat.example.test"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let ca = mm_certs::load_certs(&tls.join("ca.pem")).unwrap();
    assert!(stdout.contains(&mm_certs::fingerprint(&ca[0])), "{stdout}");
    assert!(
        stdout.contains("192.0.2.10") && stdout.contains("chat.example.test"),
        "{stdout}"
    );
    #[cfg(unix)]
    {
        assert_eq!(mm_tests::mode(&tls.join("ca.key")), 0o600);
        assert_eq!(mm_tests::mode(&tls.join("server.key")), 0o600);
    }
    // Run again, it keeps the CA (clients keep trusting the server) and issues a new server
    // certificate from it.
    let server_before = std::fs::read(tls.join("server.pem")).unwrap();
    let again = Command::new(MM_CERTS)
        .arg("--out")
        .arg(&tls)
        .args(["--ip", "192.0.2.10", "--name", "chat.example.test"])
        .output()
        .await
        .unwrap();
    assert!(again.status.success());
    assert_eq!(
        mm_certs::load_certs(&tls.join("ca.pem")).unwrap(),
        ca,
        "the CA was kept"
    );
    assert_ne!(
        std::fs::read(tls.join("server.pem")).unwrap(),
        server_before
    );

    // The files serve a real server and a real client.
    let moved = tempfile::tempdir().unwrap();
    for f in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        std::fs::copy(tls.join(f), moved.path().join(f)).unwrap();
    }
    let server = TestServer::start_in(moved, Limits::default()).await;
    let home = tempfile::tempdir().unwrap();
    let mut mm = spawn_mm(
        &format!("localhost:{}", server.addr.port()),
        Some(&tls.join("ca.pem")),
        "carol",
        home.path(),
    );
    mm.stdin
        .take()
        .unwrap()
        .write_all(b"hello from carol\n")
        .await
        .unwrap();
    let output = tokio::time::timeout(WAIT, mm.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn mm_server_starts_with_embedded_defaults_and_stops_gracefully_on_sigterm() {
    // An empty configuration file: every setting at its default.
    let server = mm_tests::ServerProcess::start(MM_SERVER, "").await;
    let log_so_far = server.log.join("\n");
    assert!(log_so_far.contains("generated a CA"), "{log_so_far}");
    let ca = server.ca();
    assert!(
        log_so_far.contains(&mm_certs::fingerprint(&ca[0])),
        "the log shows the CA fingerprint"
    );
    #[cfg(unix)]
    assert_eq!(
        mm_tests::mode(&server.data.path().join("tls").join("server.key")),
        0o600
    );

    let opts = mm_client::ConnectOptions::new(
        server.addr.clone(),
        "alice",
        mm_client::Trust::Roots(ca.clone()),
    );
    let (alice, mut alice_events, _) = mm_client::connect(&opts).await.unwrap();
    let opts =
        mm_client::ConnectOptions::new(server.addr.clone(), "bob", mm_client::Trust::Roots(ca));
    let (_bob, mut bob_events, _) = mm_client::connect(&opts).await.unwrap();
    let secret = "a distinctive line the log must never contain";
    alice.public(secret).await.unwrap();
    // Plain, so that the server has the text in hand (and still never logs it).
    alice.insecure("bob").await.unwrap();
    alice.private("bob", secret).await.unwrap();
    let mut lines = 0;
    while lines < 2 {
        match tokio::time::timeout(WAIT, bob_events.next())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Public(ChatLine { .. }) | Event::Private(ChatLine { .. }) => lines += 1,
            _ => {}
        }
    }

    let stopping = tokio::spawn(server.stop());
    let told = tokio::time::timeout(WAIT, async {
        loop {
            match alice_events.next().await {
                Some(Event::Shutdown { .. }) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    });
    assert!(told.await.unwrap(), "client was told about the shutdown");
    let (status, log) = stopping.await.unwrap();
    assert!(status.success(), "{status}");
    let whole_log = log.join("\n");
    assert!(whole_log.contains("logged in"), "{whole_log}");
    assert!(
        !whole_log.contains("distinctive"),
        "message text leaked into the log:\n{whole_log}"
    );
}

#[tokio::test]
async fn line_mode_secure_chat_and_safety_number() {
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut alice = server.client("alice").await;
    let mut bob = spawn_trusting(&server, "bob", home.path());
    let mut out = BufReader::new(bob.stdout.take().unwrap()).lines();
    let mut stdin = bob.stdin.take().unwrap();
    assert!(next_line(&mut out).await.starts_with("* connected to"));
    assert!(
        home.path().join("identity.key").exists(),
        "identity created on first run"
    );

    // alice's first line starts the session from bob's keys in the directory.
    mm_tests::wait_for_keys(&server, "bob").await;
    alice.client.private("bob", "top secret").await.unwrap();
    // (After the notices of the probe's visit.)
    let ready = line_containing(&mut out, "started a secure session").await;
    assert!(
        ready.starts_with("* alice started a secure session"),
        "{ready}"
    );
    assert!(
        ready.contains("not verified (first contact: key from the server's directory, now pinned)"),
        "{ready}"
    );
    assert_eq!(next_line(&mut out).await, "[secure] <alice> top secret");
    alice.secure_ready("bob").await;
    stdin
        .write_all(b"/msg alice back, secretly\n")
        .await
        .unwrap();
    assert_eq!(
        alice.secure_message().await,
        ("bob".to_string(), "back, secretly".to_string())
    );

    stdin.write_all(b"/verify alice\n").await.unwrap();
    let number = alice.client.safety_number("bob").unwrap();
    assert_eq!(
        next_line(&mut out).await,
        format!("* safety number with alice: {number}")
    );
    assert!(next_line(&mut out).await.contains("/verified alice"));
    stdin.write_all(b"/verified alice\n").await.unwrap();
    assert_eq!(
        next_line(&mut out).await,
        "* alice's key is now marked as verified"
    );
    let pins = std::fs::read_to_string(home.path().join("pins")).unwrap();
    assert!(
        pins.contains("alice") && pins.contains(" verified"),
        "{pins}"
    );

    // alice goes plain on purpose: bob sees her line as plain, flagged, and his own lines
    // stay end-to-end until *he* says otherwise.
    alice.client.insecure("bob").await.unwrap();
    alice
        .client
        .private("bob", "plain from alice")
        .await
        .unwrap();
    line_containing(&mut out, "[private] <alice> plain from alice").await;
    line_containing(&mut out, "was NOT end-to-end encrypted").await;
    stdin.write_all(b"/msg alice still secret\n").await.unwrap();
    assert_eq!(
        alice.secure_message().await,
        ("bob".to_string(), "still secret".to_string())
    );
    // Only bob's own /insecure makes his lines plain (and says so).
    stdin.write_all(b"/insecure alice\n").await.unwrap();
    line_containing(&mut out, "NOT end-to-end encrypted from now on").await;
    stdin.write_all(b"/msg alice plain again\n").await.unwrap();
    assert!(
        matches!(alice.next_line().await, Event::Private(ChatLine { text, .. }) if text == "plain again")
    );

    drop(stdin);
    let status = tokio::time::timeout(WAIT, bob.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn mm_owns_its_nick_by_its_home_and_sees_what_it_missed() {
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    // First run: mm makes its certificate (key 0600) and registers "dana".
    let mut dana = spawn_trusting(&server, "dana", home.path());
    let mut out = BufReader::new(dana.stdout.take().unwrap()).lines();
    assert!(next_line(&mut out).await.starts_with("* connected"));
    mm_tests::wait_for_keys(&server, "dana").await;
    drop(dana.stdin.take()); // EOF: quit
    assert!(dana.wait().await.unwrap().success());
    #[cfg(unix)]
    assert_eq!(
        mm_tests::mode(&home.path().join(mm_certs::CLIENT_KEY)),
        0o600
    );

    // While she is away: a public line and a private one.
    let mut erin = server.client("erin").await;
    erin.client.public("news for the room").await.unwrap();
    erin.next_answer().await;
    erin.client.private("dana", "for you only").await.unwrap();
    assert!(matches!(
        erin.next_answer_or_queued().await,
        Event::Queued { .. }
    ));

    // Someone else (another home, so another certificate) cannot be dana.
    let other_home = tempfile::tempdir().unwrap();
    let thief = spawn_trusting(&server, "dana", other_home.path());
    let output = tokio::time::timeout(WAIT, thief.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("registered to another key") && stderr.contains("copy that machine's home"),
        "{stderr}"
    );
    // Following the advice ("otherwise choose another --nick") works with the same home: the
    // refused nick did not keep it.
    let mut dora = spawn_trusting(&server, "dora", other_home.path());
    let mut out = BufReader::new(dora.stdout.take().unwrap()).lines();
    assert!(next_line(&mut out).await.starts_with("* connected"));
    drop(dora.stdin.take());
    assert!(dora.wait().await.unwrap().success());

    // Dana again, same home: history, then her mail.
    let mut dana = spawn_trusting(&server, "dana", home.path());
    let mut out = BufReader::new(dana.stdout.take().unwrap()).lines();
    assert!(next_line(&mut out).await.starts_with("* connected"));
    let history = next_line(&mut out).await;
    assert!(
        history.starts_with("[history ") && history.ends_with("] <erin> news for the room"),
        "{history}"
    );
    // End to end by default: queued encrypted for her, read with her keys.
    let mail = line_containing(&mut out, "for you only").await;
    assert_eq!(mail, "[secure] <erin> for you only");
    // mm acknowledged it (Received) once shown: the next login does not get it again.
    drop(dana.stdin.take());
    assert!(dana.wait().await.unwrap().success());
    let mut dana = spawn_trusting(&server, "dana", home.path());
    let mut stdin = dana.stdin.take().unwrap();
    // A line of her own after the login sequence: when erin has it, dana has had her mail.
    stdin.write_all(b"back again\n").await.unwrap();
    let back = erin.next_line().await;
    assert!(
        matches!(&back, Event::Public(ChatLine { text, .. }) if text == "back again"),
        "{back:?}"
    );
    drop(stdin);
    let output = finish(dana, WAIT).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        !stdout.contains("for you only"),
        "delivered twice:\n{stdout}"
    );
}

/// Waits for `mm` to exit (at most `within`) and returns what it wrote.
/// `--server HOST` takes the default port (it was refused: "is not HOST:PORT"); a value that is
/// no address is refused in words that show the accepted forms.
#[tokio::test]
async fn a_server_without_a_port_gets_the_default_port() {
    let home = tempfile::tempdir().unwrap();
    // Nothing is trusted in this home, so whatever listens on 7667 (or nothing) is refused; the
    // refusal names the address mm used.
    let mut mm = spawn_mm("127.0.0.1", None, "bob", home.path());
    drop(mm.stdin.take());
    let output = finish(mm, WAIT).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("127.0.0.1:7667"), "{stderr}");

    for bad in ["two words", "host:0", "host:port"] {
        let mut mm = spawn_mm(bad, None, "bob", home.path());
        drop(mm.stdin.take());
        let output = finish(mm, WAIT).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{bad}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid value '{bad}' for '--server <HOST[:PORT]>': give HOST or HOST:PORT, for example chat.example.org or 192.168.1.20:7667")),
            "{stderr}"
        );
    }
}

async fn finish(mm: Child, within: std::time::Duration) -> std::process::Output {
    tokio::time::timeout(within, mm.wait_with_output())
        .await
        .expect("mm did not exit in time")
        .unwrap()
}

/// `mm: N lines not delivered...` from stderr: N.
fn not_delivered(stderr: &str) -> Option<usize> {
    stderr.lines().find_map(|l| {
        l.strip_prefix("mm: ")?
            .split_once(" line")
            .filter(|(_, rest)| rest.contains("not delivered"))?
            .0
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn line_mode_delivers_a_whole_paced_burst_before_it_exits() {
    // Default limits: a burst of 20, then 5 per second. 100 lines take ~20 s of pacing; mm
    // must not quit (or exit 0) before the last one is acknowledged.
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut alice = server.client("alice").await;
    let mut frank = spawn_trusting(&server, "frank", home.path());
    let input: String = (1..=100).map(|i| format!("line {i}\n")).collect();
    let mut stdin = frank.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let output = finish(frank, std::time::Duration::from_secs(90)).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        !stdout.contains("rate-limited"),
        "paced within the limit:\n{stdout}"
    );
    for i in 1..=100 {
        let line = alice.next_line().await;
        assert!(
            matches!(&line, Event::Public(ChatLine { from, text, .. }) if from == "frank" && *text == format!("line {i}")),
            "line {i}: {line:?}"
        );
    }
}

#[tokio::test]
async fn line_mode_counts_the_lines_a_lost_connection_did_not_deliver() {
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut alice = server.client("alice").await;
    let mut frank = spawn_trusting(&server, "frank", home.path());
    let input: String = (1..=60).map(|i| format!("line {i}\n")).collect();
    let mut stdin = frank.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    // The first lines arrive; the server goes away while the pacer still holds the rest.
    let mut received = 0;
    while received < 5 {
        if let Event::Public(ChatLine { .. }) = alice.next_line().await {
            received += 1;
        }
    }
    server.shutdown().await;
    let output = finish(frank, WAIT).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // Everything the server accepted reached alice before it closed; what it did not is what
    // mm counts.
    loop {
        match alice.next().await {
            Event::Public(ChatLine { .. }) => received += 1,
            Event::Closed { .. } => break,
            _ => {}
        }
    }
    let lost = not_delivered(&stderr).unwrap_or_else(|| panic!("no count on stderr:\n{stderr}"));
    assert!(lost > 0, "{stderr}");
    assert_eq!(received + lost, 60, "{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("not delivered"))
            .count(),
        1,
        "one line says it:\n{stderr}"
    );
}

#[tokio::test]
async fn line_mode_gives_up_with_a_count_when_the_server_stops_answering() {
    let server = mm_tests::ServerProcess::start(MM_SERVER, "").await;
    let home = tempfile::tempdir().unwrap();
    let ca = home.path().join("server-ca.pem");
    std::fs::copy(server.data.path().join("tls").join(mm_certs::CA_CERT), &ca).unwrap();
    let mut frank = spawn_mm(&server.addr, Some(&ca), "frank", home.path());
    let mut out = BufReader::new(frank.stdout.take().unwrap()).lines();
    assert!(next_line(&mut out).await.starts_with("* connected"));
    server.signal("STOP"); // hangs: the TCP connection stays up, nothing is answered
    let mut stdin = frank.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo\nthree\n").await.unwrap();
    drop(stdin);
    let started = tokio::time::Instant::now();
    let status = tokio::time::timeout(std::time::Duration::from_secs(40), frank.wait())
        .await
        .expect("mm waits for a hung server only so long")
        .unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut frank.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(not_delivered(&stderr), Some(3), "{stderr}");
    assert!(stderr.contains("stopped answering"), "{stderr}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(10),
        "a few seconds of silence are not yet a failure"
    );
    server.signal("CONT");
}

#[tokio::test]
async fn line_mode_refuses_bad_input_lines_by_number_and_sends_the_rest() {
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.client("bob").await;
    mm_tests::wait_for_keys(&server, "bob").await;
    let mut frank = spawn_trusting(&server, "frank", home.path());
    let mut input = b"line one\ncaf\xe9 au lait\nline three\r\n/msg bob line four\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 20_000));
    input.extend(b"\nnul\0byte\nlast line, no newline");
    let mut stdin = frank.stdin.take().unwrap();
    stdin.write_all(&input).await.unwrap();
    drop(stdin);
    let output = finish(frank, WAIT).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("stdin line 2 is not valid UTF-8; not sent"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stdin line 5 is 20000 bytes"),
        "the real size:\n{stderr}"
    );
    assert!(stdout.contains("! error (invalid-text)"), "{stdout}");
    assert_eq!(not_delivered(&stderr), Some(3), "{stderr}");
    let mut got = Vec::new();
    let mut secure = Vec::new();
    loop {
        match bob.next().await {
            Event::Public(ChatLine { text, .. }) => got.push(text),
            Event::Private(ChatLine { text, .. }) => got.push(format!("private: {text}")),
            Event::Secure(E2eEvent::Message { text, .. }) => secure.push(format!("secure: {text}")),
            Event::Left { nick, .. } if nick == "frank" => break,
            _ => {}
        }
    }
    // End to end, line four waited for bob's keys: the public line after it may pass it.
    got.extend(secure);
    assert_eq!(
        got,
        [
            "line one",
            "line three",
            "last line, no newline",
            "secure: line four"
        ]
    );
}

#[tokio::test]
async fn line_mode_counts_lines_a_secure_session_never_sent() {
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut frank = spawn_trusting(&server, "frank", home.path());
    let mut stdin = frank.stdin.take().unwrap();
    // Nobody is called ghost: no keys to fetch, and the line that waited for them is dropped
    // (never sent plain).
    stdin.write_all(b"/msg ghost hello\n").await.unwrap();
    drop(stdin);
    let output = finish(frank, WAIT).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert_eq!(not_delivered(&stderr), Some(1), "{stdout}\n{stderr}");
}

#[tokio::test]
async fn line_mode_ends_quietly_when_its_output_pipes_close() {
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let alice = server.client("alice").await;
    // stdout closed (`mm | head -1`), stdin still open: mm notices at its next line of output.
    let mut frank = spawn_trusting(&server, "frank", home.path());
    let mut out = BufReader::new(frank.stdout.take().unwrap()).lines();
    assert!(next_line(&mut out).await.starts_with("* connected"));
    drop(out);
    let _stdin = frank.stdin.take().unwrap();
    alice.client.public("anyone there?").await.unwrap();
    let output = finish(frank, WAIT).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "{stderr}");

    // stderr closed: a refused input line still ends in an exit status, not a panic.
    let mut frank = spawn_trusting(&server, "frank", home.path());
    drop(frank.stderr.take());
    let mut stdin = frank.stdin.take().unwrap();
    stdin.write_all(b"caf\xe9\nfine\n").await.unwrap();
    drop(stdin);
    let output = finish(frank, WAIT).await;
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn mail_that_mm_could_not_show_stays_on_the_server() {
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    // bob registers, then is away.
    let mut bob = spawn_trusting(&server, "bob", home.path());
    drop(bob.stdin.take());
    assert!(finish(bob, WAIT).await.status.success());
    let mut alice = server.client("alice").await;
    for i in 1..=5 {
        alice
            .client
            .private("bob", &format!("offline line {i}"))
            .await
            .unwrap();
        assert!(matches!(
            alice.next_answer_or_queued().await,
            Event::Queued { .. }
        ));
    }
    // bob's mm runs with its output already gone (`mm | head -1` where head has exited): it
    // cannot show the mail, so it must not tell the server it has it.
    let mut bob = spawn_trusting(&server, "bob", home.path());
    drop(bob.stdout.take());
    let _stdin = bob.stdin.take();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await; // the mail arrives
    drop(_stdin);
    let output = finish(bob, WAIT).await;
    assert_eq!(output.status.code(), Some(141));

    let mut bob = spawn_trusting(&server, "bob", home.path());
    let mut out = BufReader::new(bob.stdout.take().unwrap()).lines();
    let mut shown = Vec::new();
    while shown.len() < 5 {
        let line = next_line(&mut out).await;
        if let Some(i) = (1..=5).find(|i| line.ends_with(&format!("offline line {i}"))) {
            shown.push(i);
        }
    }
    assert_eq!(shown, [1, 2, 3, 4, 5]);
}

/// Reads `mm`'s output until a line contains `what` (or one of its `|`-separated
/// alternatives); returns that line.
async fn line_containing(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> String {
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("waited in vain for {what:?}; mm printed {seen:#?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("mm ended before {what:?}; it printed {seen:#?}"));
        if what.split('|').any(|w| line.contains(w)) {
            return line;
        }
        seen.push(line);
    }
}

#[tokio::test]
async fn line_mode_keeps_a_secure_conversation_secure_across_a_kill() {
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let alice_opts = server.options("alice");
    let mut alice = server.client_with(alice_opts.clone()).await;
    let mut bob = spawn_trusting(&server, "bob", home.path());
    let mut out = BufReader::new(bob.stdout.take().unwrap()).lines();
    let mut stdin = bob.stdin.take().unwrap();
    mm_tests::wait_for_keys(&server, "alice").await;
    stdin.write_all(b"/msg alice first\n").await.unwrap();
    line_containing(&mut out, "secure session with alice ready").await;
    alice.secure_ready("bob").await;
    assert_eq!(alice.secure_message().await.1, "first");

    // bob's mm is killed (no goodbye) and started again on the same home: the session goes on
    // from the saved state, with no new start.
    bob.kill().await.unwrap();
    let mut bob = spawn_trusting(&server, "bob", home.path());
    let mut out = BufReader::new(bob.stdout.take().unwrap()).lines();
    let mut stdin = bob.stdin.take().unwrap();
    assert!(next_line(&mut out).await.starts_with("* connected to"));
    stdin
        .write_all(b"/msg alice my PIN is 1234\n")
        .await
        .unwrap();
    assert_eq!(
        alice.secure_message().await,
        ("bob".to_string(), "my PIN is 1234".to_string())
    );

    // alice goes offline: bob's next line is queued for her, still encrypted (never plain),
    // and she reads it when she is back.
    alice.client.quit().await;
    stdin
        .write_all(b"/msg alice my PIN is 5678\n")
        .await
        .unwrap();
    line_containing(&mut out, "queued end-to-end encrypted for alice (offline)").await;
    drop(stdin);
    let output = finish(bob, WAIT).await;
    assert!(output.status.success(), "{output:?}");
    let mut alice = TestClient::connect(&alice_opts).await;
    let first = alice
        .wait_for("bob's next line", |e| {
            matches!(
                e,
                Event::Secure(E2eEvent::Message { .. })
                    | Event::Private(ChatLine { .. })
                    | Event::Offline(ChatLine { .. })
            )
        })
        .await;
    assert!(
        matches!(&first, Event::Secure(E2eEvent::Message { text, .. }) if text == "my PIN is 5678"),
        "only the secure line reaches alice, nothing plain: {first:?}"
    );
}

#[test]
fn without_a_nick_mm_says_which_ones_it_looked_for() {
    let home = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(MM)
        .args(["--home"])
        .arg(home.path())
        .env_remove("USER")
        .env_remove("MM_NICK")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--nick NAME") && stderr.contains("$USER, which is not set"),
        "{stderr}"
    );
}

/// Line mode reconnects when asked to (`--reconnect always`; by default when stdin is a
/// terminal): the server restarts, mm says so, a line typed while it is down waits and arrives
/// after the reconnect, once; piped without the option, the first drop ends mm (as before).
#[tokio::test]
async fn line_mode_reconnects_and_what_was_typed_meanwhile_arrives_once() {
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut bob = spawn_mm_with(
        &server.server(),
        Some(&server.ca_path()),
        "bob",
        home.path(),
        &["--reconnect", "always"],
    );
    let mut out = BufReader::new(bob.stdout.take().unwrap()).lines();
    let mut stdin = bob.stdin.take().unwrap();
    assert!(next_line(&mut out).await.starts_with("* connected to"));

    let restart = tokio::spawn(server.restart_on_same_port(Duration::from_secs(2)));
    let mut seen = Vec::new();
    loop {
        let line = next_line(&mut out).await;
        seen.push(line.clone());
        if line.starts_with("* not connected (") {
            assert!(line.contains("reconnecting in"), "{line}");
            break;
        }
    }
    // Typed while the server is down: it waits for the next connection.
    stdin.write_all(b"typed while down\n").await.unwrap();
    let server = restart.await.unwrap();
    loop {
        let line = next_line(&mut out).await;
        seen.push(line.clone());
        if line.starts_with("* reconnected") {
            break;
        }
    }
    // alice logs in after it went: the room's history holds it, once.
    let mut alice = server.client("alice").await;
    stdin.write_all(b"after the restart\n").await.unwrap();
    let mut history = Vec::new();
    let live = loop {
        match alice.next().await {
            Event::History(ChatLine { from, text, .. }) => history.push((from, text)),
            Event::Public(ChatLine { from, text, .. }) => break (from, text),
            _ => {}
        }
    };
    assert_eq!(
        history
            .iter()
            .filter(|(f, t)| f == "bob" && t == "typed while down")
            .count(),
        1,
        "{history:?} {seen:?}"
    );
    assert_eq!(live, ("bob".to_string(), "after the restart".to_string()));
    drop(stdin);
    let status = tokio::time::timeout(WAIT, bob.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}
