//! The interactive `mm` in a real terminal: tmux runs it, `send-keys` types, `capture-pane`
//! reads the screen. Needs tmux: CI installs it; elsewhere the test says it skipped.

use mm_client::ChatLine;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mm_client::Event;
use mm_common::e2e::E2eEvent;
use mm_tests::{TestClient, TestServer, WAIT};

const MM: &str = env!("CARGO_BIN_EXE_e2e-mm");
const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");

/// A private tmux server (its own socket), killed at drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Whether tmux is there; in CI its absence fails the test (never a silent skip), and
    /// elsewhere the skip is said on stderr.
    fn usable() -> bool {
        if Self::available() {
            return true;
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is required in CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: tmux is not installed");
        false
    }

    fn start(command: &str) -> Tmux {
        Self::start_sized(command, 140, 30)
    }

    /// A window of `width` columns and `height` rows.
    fn start_sized(command: &str, width: u16, height: u16) -> Tmux {
        // One tmux server per test, even when tests run at once.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = format!("mm-e2e-{}-{n}", std::process::id());
        let tmux = Tmux { socket };
        let ok = tmux
            .cmd(&[
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
                command,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-session failed");
        tmux
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]).args(args);
        c.env("TERM", "xterm-256color");
        c
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status().unwrap().success());
    }

    /// Pastes `text` as a terminal does: tmux's paste buffer, sent with bracketed-paste marks
    /// when `bracketed` (and the application asked for them), as plain keys otherwise (a
    /// terminal without bracketed paste). tmux sends each `\n` as `\r`, as terminals do,
    /// unless `raw`.
    fn paste(&self, text: &str, bracketed: bool, raw: bool) {
        use std::io::Write as _;
        let mut load = self
            .cmd(&["load-buffer", "-b", "clip", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        load.stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        assert!(load.wait().unwrap().success());
        let mut args = vec!["paste-buffer", "-d", "-b", "clip", "-t", "t"];
        if bracketed {
            args.push("-p");
        }
        if raw {
            args.push("-r");
        }
        assert!(self.cmd(&args).status().unwrap().success());
    }

    fn screen(&self) -> String {
        let out = self
            .cmd(&["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `text`; returns the screen.
    async fn wait_for(&self, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited in vain for {text:?}; the screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).status();
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The shell command that runs mm for alice on `server` (trusting its CA) with her home in
/// `home`, then says how mm exited and keeps the pane open.
fn alice_command(server: &TestServer, home: &Path) -> String {
    format!(
        "{} --server {} --ca {} --nick alice --home {}; echo \"mm exited with $?\"; sleep 30",
        shell_quote(Path::new(MM)),
        server.server(),
        shell_quote(&server.ca_path()),
        shell_quote(home)
    )
}

/// alice's mm in tmux and bob's test client, on `server`, both logged in and bob told that
/// alice joined; the last value is alice's home (kept until the test ends).
async fn alice_in_tmux_beside_bob(server: &TestServer) -> (Tmux, TestClient, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.client("bob").await;
    mm_tests::wait_for_keys(server, "bob").await;
    let tmux = Tmux::start(&alice_command(server, home.path()));
    tmux.wait_for("as alice; 2 online").await;
    bob.wait_for(
        "alice joined",
        |e| matches!(e, Event::Joined { nick } if nick == "alice"),
    )
    .await;
    (tmux, bob, home)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_ui_chats_in_tabs_and_shows_the_secure_state() {
    if !Tmux::usable() {
        return;
    }
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    // bob's options are kept, so that he can come back with the same keys.
    let bob_opts = server.options("bob");
    let mut bob = server.client_with(bob_opts.clone()).await;
    // After mm exits, say how it exited and keep the pane, to see the terminal restored.
    let command = alice_command(&server, home.path());
    let tmux = Tmux::start(&command);
    tmux.wait_for("as alice; 2 online").await;
    tmux.wait_for("#lobby · 2 online").await;

    // Receive in the room, send to the room.
    bob.client.public("hello from bob").await.unwrap();
    tmux.wait_for("<bob> hello from bob").await;
    tmux.keys(&["hi from alice", "Enter"]);
    let line = bob.next_line().await;
    assert!(
        matches!(&line, Event::Public(ChatLine { from, text, .. }) if from == "alice" && text == "hi from alice"),
        "{line:?}"
    );

    // A private line opens bob's tab, with an unread count while it is not shown. It is
    // end-to-end by default: bob's client fetched alice's keys from the directory.
    mm_tests::wait_for_keys(&server, "alice").await;
    let (_, delivery) = bob.client.private("alice", "just for you").await.unwrap();
    assert_eq!(delivery, mm_client::Delivery::Queued);
    bob.secure_ready("alice").await;
    // Unread: the session's start and the line.
    tmux.wait_for("2 bob (2) !").await;
    tmux.keys(&["M-2"]);
    let screen = tmux.wait_for("[secure] <bob> just for you").await;
    assert!(
        screen.contains("bob: SECURE e2e"),
        "the tab's status bar says so:\n{screen}"
    );
    tmux.keys(&["encrypted reply", "Enter"]);
    let reply = bob
        .secure_event("a secure message", |e| {
            matches!(e, E2eEvent::Message { .. })
        })
        .await;
    assert!(
        matches!(&reply, E2eEvent::Message { peer, text, .. } if peer == "alice" && text == "encrypted reply"),
        "{reply:?}"
    );
    tmux.keys(&["/verify", "Enter"]);
    tmux.wait_for("safety number with bob:").await;

    // The server goes away and comes back: the UI says so and reconnects by itself. The
    // conversation stays end-to-end — never plain: paused while reconnecting; with bob
    // offline, a line is queued encrypted in his mailbox and he reads it when he is back.
    drop(bob);
    let restart = tokio::spawn(server.restart_on_same_port(Duration::from_secs(2)));
    let screen = tmux.wait_for("reconnecting in").await; // the status bar, while the server is down
    assert!(
        screen.contains("bob: SECURE e2e · paused while reconnecting"),
        "{screen}"
    );
    let server = restart.await.unwrap();
    let screen = tmux.wait_for(" · connected").await;
    assert!(screen.contains("bob: SECURE e2e"), "{screen}");
    tmux.keys(&["while you were away", "Enter"]);
    tmux.wait_for("queued end-to-end encrypted for bob (offline)")
        .await;
    let mut bob = TestClient::connect(&bob_opts).await;
    assert_eq!(
        bob.secure_message().await,
        ("alice".to_string(), "while you were away".to_string())
    );
    tmux.keys(&["welcome back, secretly", "Enter"]);
    let back = bob
        .secure_event("a secure message", |e| {
            matches!(e, E2eEvent::Message { .. })
        })
        .await;
    assert!(
        matches!(&back, E2eEvent::Message { text, .. } if text == "welcome back, secretly"),
        "{back:?}"
    );
    drop(bob);
    tmux.keys(&["M-1"]);
    let screen = tmux.wait_for("reconnected; 1 online").await;
    assert!(screen.contains("disconnected"), "{screen}");
    let carol = server.client("carol").await;
    carol
        .client
        .private("alice", "after the restart")
        .await
        .unwrap();
    tmux.wait_for("3 carol (2) !").await; // the session's start and the line
    tmux.keys(&["M-3"]);
    tmux.wait_for("[secure] <carol> after the restart").await;
    // By now the replayed history has been read (it comes before anything live): the room shows
    // none of it again, our own line included.
    tmux.keys(&["M-1"]);
    let screen = tmux.wait_for("carol joined").await;
    assert!(
        !screen.contains("[history]"),
        "history already seen is not shown again after the reconnect:\n{screen}"
    );

    // Ctrl+C quits cleanly and gives the terminal back.
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_for("mm exited with 0").await;
    assert!(!screen.contains("#lobby>"), "the UI is gone:\n{screen}");
}

/// Waits until some row of the screen satisfies `row`; returns the screen.
async fn wait_for_row(tmux: &Tmux, what: &str, row: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let screen = tmux.screen();
        if screen.lines().any(&row) {
            return screen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited in vain for {what}; the screen:\n{screen}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_ui_shows_a_line_as_sent_only_once_the_server_has_it() {
    if !Tmux::usable() {
        return;
    }
    // A server process, to make it hang (SIGSTOP) and die (SIGKILL) under the client.
    let server = mm_tests::ServerProcess::start(MM_SERVER, "").await;
    let addr = server.addr.clone();
    let home = tempfile::tempdir().unwrap();
    let ca = home.path().join("server-ca.pem");
    std::fs::copy(server.data.path().join("tls").join(mm_certs::CA_CERT), &ca).unwrap();
    let (_bob, mut bob_events, _) = mm_client::connect(&server.options("bob")).await.unwrap();
    let command = format!(
        "{} --server {addr} --ca {} --nick alice --home {}; echo \"mm exited with $?\"; sleep 30",
        shell_quote(Path::new(MM)),
        shell_quote(&ca),
        shell_quote(home.path())
    );
    let tmux = Tmux::start(&command);
    tmux.wait_for("as alice; 2 online").await;

    // A refused line is shown refused where it stands, not as sent and then an error.
    tmux.keys(&["/msg nosuchuser hi there", "Enter"]);
    // (End to end by default: the key directory knows no such user; nothing was sent.)
    let screen = wait_for_row(&tmux, "the refusal", |r| {
        r.contains("<alice> hi there") && r.contains("no such user")
    })
    .await;
    assert!(
        !screen.contains("! error"),
        "no separate error line:\n{screen}"
    );

    // An accepted line loses its pending mark once the server has it.
    tmux.keys(&["M-1"]);
    tmux.keys(&["hello bob", "Enter"]);
    loop {
        match tokio::time::timeout(WAIT, bob_events.next()).await.unwrap() {
            Some(Event::Public(ChatLine { text, .. })) if text == "hello bob" => break,
            Some(_) => {}
            None => panic!("bob's connection ended"),
        }
    }
    wait_for_row(&tmux, "hello bob, sent", |r| {
        r.contains("<alice> hello bob") && !r.contains("sending") && !r.contains("NOT")
    })
    .await;

    // The server hangs: a line typed now stays pending...
    server.signal("STOP");
    tmux.keys(&["typed during the hang", "Enter"]);
    wait_for_row(&tmux, "the pending mark", |r| {
        r.contains("<alice> typed during the hang") && r.contains("(sending)")
    })
    .await;
    // ...and when it dies, it says the line was not delivered, before and after the reconnect.
    let data = server.kill().await;
    wait_for_row(&tmux, "not delivered", |r| {
        r.contains("<alice> typed during the hang") && r.contains("NOT DELIVERED (no answer")
    })
    .await;
    let _server = mm_tests::ServerProcess::start_on(MM_SERVER, &addr, data).await;
    let screen = tmux.wait_for("reconnected").await;
    assert!(
        screen
            .lines()
            .any(|r| r.contains("typed during the hang") && r.contains("NOT DELIVERED")),
        "{screen}"
    );
    assert!(screen.contains("Up recalls them"), "{screen}");
    tmux.keys(&["C-c"]);
    tmux.wait_for("mm exited with 0").await;
}

/// Lines of the server's log (read for `wait`) saying `nick` logged in, in all so far.
async fn logins(server: &mut mm_tests::ServerProcess, nick: &str, wait: Duration) -> usize {
    server.read_log(wait).await;
    let who = format!("nick={nick}");
    server
        .log
        .iter()
        .filter(|l| l.contains("logged in") && l.split_whitespace().any(|w| w == who))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_ui_replaced_by_another_login_stays_disconnected_until_reconnect() {
    if !Tmux::usable() {
        return;
    }
    // A server process, to count logins in its log.
    let mut server = mm_tests::ServerProcess::start(MM_SERVER, "").await;
    let addr = server.addr.clone();
    let dir = tempfile::tempdir().unwrap();
    let (home, copy) = (dir.path().join("a"), dir.path().join("b"));
    let ca = dir.path().join("server-ca.pem");
    std::fs::copy(server.data.path().join("tls").join(mm_certs::CA_CERT), &ca).unwrap();
    let start = |home: &Path| {
        Tmux::start(&format!(
            "{} --server {addr} --ca {} --nick alice --home {}; echo \"mm exited with $?\"; sleep 30",
            shell_quote(Path::new(MM)),
            shell_quote(&ca),
            shell_quote(home)
        ))
    };
    let first = start(&home);
    first.wait_for("as alice; 1 online").await;
    // The home copied while the first runs (so its lock does not stop the second): one account
    // in two clients.
    crate::home::copy_home(&home, &copy);
    let second = start(&copy);
    second.wait_for("as alice; 1 online").await;

    // Nobody knocks anybody off: for 5 s, still the two logins...
    assert_eq!(
        logins(&mut server, "alice", Duration::from_secs(5)).await,
        2
    );
    // ...and the first says why it is off, and what to do.
    let replaced = "alice logged in from another client; this one is disconnected — /reconnect to take the account back";
    first.wait_for(replaced).await;
    first
        .wait_for("offline: logged in from another client — /reconnect takes the account back")
        .await;
    let screen = first.screen();
    assert!(!screen.contains("reconnect in"), "{screen}");
    let screen = second.screen();
    assert!(
        !screen.contains("disconnected") && screen.contains(" · connected"),
        "{screen}"
    );

    // Typing is refused with what to do; /reconnect takes the account back, once.
    first.keys(&["hello?", "Enter"]);
    first
        .wait_for("not connected: nothing was sent; /reconnect to connect again")
        .await;
    first.keys(&["/reconnect", "Enter"]);
    first.wait_for("reconnected; 1 online").await;
    second.wait_for(replaced).await;
    assert_eq!(
        logins(&mut server, "alice", Duration::from_secs(4)).await,
        3
    );
    let screen = first.screen();
    assert!(screen.contains(" · connected"), "{screen}");

    for tmux in [first, second] {
        tmux.keys(&["C-c"]);
        tmux.wait_for("mm exited with 0").await;
    }
}

/// Every file `mm` keeps in its home — the certificate and keys, `known_servers` after trusting
/// a server on first contact, `pins` and `e2e-state` after a secure session, the `lock` —
/// is private (0600), in a home it
/// created private (0700), parents included. Through the real binary in a terminal, since only
/// the interactive mode asks to trust a server.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_mm_keeps_in_its_home_is_private() {
    if !Tmux::usable() {
        return;
    }
    let server = TestServer::start().await;
    let mut bob = server.client("bob").await;
    let place = tempfile::tempdir().unwrap();
    let home = place.path().join("fresh").join("home");
    // No --ca: mm asks whether to trust the server and remembers it in known_servers.
    let command = format!(
        "{} --server {} --nick alice --home {}; echo \"mm exited with $?\"; sleep 30",
        shell_quote(Path::new(MM)),
        server.server(),
        shell_quote(&home)
    );
    let tmux = Tmux::start(&command);
    tmux.wait_for("Trust this server and remember it?").await;
    tmux.keys(&["y", "Enter"]);
    tmux.wait_for("as alice; 2 online").await;
    mm_tests::wait_for_keys(&server, "bob").await;
    tmux.keys(&["/msg bob hi", "Enter"]);
    bob.secure_ready("alice").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !home.join("pins").exists() {
        assert!(tokio::time::Instant::now() < deadline, "no pins file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tmux.keys(&["C-c"]);
    tmux.wait_for("mm exited with 0").await;

    let files = mm_tests::assert_private_tree(&place.path().join("fresh"), &[]);
    for expected in [
        "home/client.pem",
        "home/client.key",
        "home/identity.key",
        "home/known_servers",
        "home/pins",
        "home/e2e-state",
        "home/lock",
    ] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} in {files:?}"
        );
    }
}

/// 2025-07-01 12:00 UTC and 2025-01-01 12:00 UTC, in milliseconds.
const SUMMER_NOON_UTC: i64 = 1_751_371_200_000;
const WINTER_NOON_UTC: i64 = 1_735_732_800_000;

/// A server whose history holds bob's "a summer line" from 1 July 12:00 UTC and "a winter line"
/// from 1 January 12:00 UTC (sent now, then dated back in its store while it is stopped).
async fn server_with_history_from_two_seasons() -> mm_tests::ServerProcess {
    let server = mm_tests::ServerProcess::start(MM_SERVER, "").await;
    let bob = TestClient::connect(&server.options("bob")).await;
    for text in ["a summer line", "a winter line"] {
        bob.client.public(text).await.unwrap();
    }
    bob.client.flush(WAIT).await.unwrap();
    bob.client.quit().await;
    drop(bob);
    let data = server.stop_keeping_data().await;
    {
        let db = rusqlite::Connection::open(data.path().join("mm-server.db")).unwrap();
        for (text, ts) in [
            ("a summer line", SUMMER_NOON_UTC),
            ("a winter line", WINTER_NOON_UTC),
        ] {
            let n = db
                .execute(
                    "UPDATE history SET ts = ?1 WHERE text = ?2",
                    rusqlite::params![ts, text],
                )
                .unwrap();
            assert_eq!(n, 1, "{text} is in the history");
        }
    }
    mm_tests::ServerProcess::start_in(MM_SERVER, "", data).await
}

/// History from two seasons in a terminal in New York: each line in the local time of its own
/// day — 08:00 (EDT, UTC-4) in July, 07:00 (EST, UTC-5) in January — whatever the season the
/// test runs in (the offset is not the one of the moment `mm` started). A `TZ` naming no zone
/// shows UTC, and the UI says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_ui_shows_each_time_with_the_offset_of_its_own_day() {
    if !Tmux::usable() {
        return;
    }
    let server = server_with_history_from_two_seasons().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("server-ca.pem");
    std::fs::copy(server.data.path().join("tls").join(mm_certs::CA_CERT), &ca).unwrap();
    let start = |tz: &str, nick: &str| {
        Tmux::start(&format!(
            "TZ={tz} {} --server {} --ca {} --nick {nick} --home {}; echo \"mm exited with $?\"; sleep 30",
            shell_quote(Path::new(MM)),
            server.addr,
            shell_quote(&ca),
            shell_quote(&dir.path().join(nick))
        ))
    };
    let new_york = start("America/New_York", "alice");
    let nowhere = start("Mars/Olympus", "carol");

    let row = |screen: &str, text: &str| -> String {
        screen
            .lines()
            .find(|r| r.contains(text))
            .unwrap_or_default()
            .to_owned()
    };
    new_york.wait_for("<bob> a winter line").await;
    let screen = new_york.wait_for("<bob> a summer line").await;
    assert!(
        row(&screen, "a summer line").starts_with("2025-07-01 08:00 [history] <bob> a summer line"),
        "July is EDT (UTC-4):\n{screen}"
    );
    assert!(
        row(&screen, "a winter line").starts_with("2025-01-01 07:00 [history] <bob> a winter line"),
        "January is EST (UTC-5):\n{screen}"
    );
    assert!(!screen.contains("not a time zone"), "{screen}");

    nowhere.wait_for("<bob> a winter line").await;
    let screen = nowhere
        .wait_for("TZ=Mars/Olympus is not a time zone mm can find")
        .await;
    assert!(
        row(&screen, "a summer line").starts_with("2025-07-01 12:00 [history] <bob> a summer line"),
        "an unknown zone is UTC:\n{screen}"
    );
    assert!(
        row(&screen, "a winter line").starts_with("2025-01-01 12:00 [history] <bob> a winter line"),
        "{screen}"
    );
    assert!(screen.contains("times are shown in UTC"), "{screen}");

    for tmux in [new_york, nowhere] {
        tmux.keys(&["C-c"]);
        tmux.wait_for("mm exited with 0").await;
    }
}

/// The next chat line bob receives, as (private?, text).
async fn said_to_bob(bob: &mut TestClient) -> (bool, String) {
    let line = bob
        .wait_for("a line", |e| {
            matches!(
                e,
                Event::Public(_) | Event::Private(_) | Event::Secure(E2eEvent::Message { .. })
            )
        })
        .await;
    match line {
        Event::Public(ChatLine { text, .. }) => (false, text),
        // End to end by default.
        Event::Secure(E2eEvent::Message { text, .. }) => (true, text),
        other => panic!("not end-to-end: {other:?}"),
    }
}

/// Pastes into the terminal UI: lines stay lines (sent one by one, in order, on Enter, never
/// before), tabs become spaces, CR LF and bare CR end lines, a line over the server's limit
/// is refused with its real size and stays to be edited — in a terminal with bracketed paste
/// and in one without (the paste then arrives as keys, Enter and Tab included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_ui_sends_pasted_lines_as_lines_and_never_cuts_one() {
    if !Tmux::usable() {
        return;
    }
    let server = TestServer::start_unthrottled().await;
    let (tmux, mut bob, _home) = alice_in_tmux_beside_bob(&server).await;

    // Bracketed paste of three lines with a tab and an empty line (tmux sends \n as \r).
    tmux.paste("first pasted line\nsecond\tcolumn\n\nthird\n", true, false);
    // Its last line break starts no line; the empty line is counted apart, left out.
    tmux.wait_for("pasted 3 lines (and 1 empty line, left out): Enter sends each as its own line")
        .await;
    let screen = tmux
        .wait_for("#lobby (3 lines, 1 empty)> first pasted line")
        .await;
    assert!(screen.contains("second    column"), "{screen}");
    tmux.keys(&["Enter"]);
    for expected in ["first pasted line", "second    column", "third"] {
        assert_eq!(
            said_to_bob(&mut bob).await,
            (false, expected.to_owned()),
            "in order, nothing before Enter"
        );
    }
    tmux.wait_for("left out 1 empty line").await;

    // CR LF line ends (a copy from Windows), with /msg on the first line: all to bob.
    tmux.keys(&["/msg bob "]);
    tmux.paste("one\r\ntwo\r\n", true, true);
    tmux.wait_for("pasted 2 lines").await;
    tmux.keys(&["Enter"]);
    assert_eq!(said_to_bob(&mut bob).await, (true, "one".to_owned()));
    assert_eq!(said_to_bob(&mut bob).await, (true, "two".to_owned()));

    // 5,000 characters: refused with their real size, kept in the input, nothing cut or sent.
    tmux.keys(&["M-1"]);
    tmux.paste(&"x".repeat(5000), true, false);
    tmux.wait_for("5000/4096 bytes").await;
    tmux.keys(&["Enter"]);
    tmux.wait_for(
        "message of 5000 bytes is over the limit of 4096 bytes — nothing was sent; the line stays in the input to edit",
    )
    .await;
    let screen = tmux.wait_for("5000/4096 bytes").await;
    assert!(
        screen.contains("#lobby> xxxx"),
        "still in the input:\n{screen}"
    );
    tmux.keys(&["C-u"]);
    tmux.keys(&["after the long one", "Enter"]);
    assert_eq!(
        said_to_bob(&mut bob).await,
        (false, "after the long one".to_owned()),
        "the long line never went"
    );

    // A terminal without bracketed paste: the lines arrive as keys, Enter and Tab included,
    // at once. They make a draft all the same (nothing sent, no completion).
    tmux.paste("plain a\nplain\tb\n", false, false);
    tmux.wait_for("pasted 2 lines").await;
    tmux.wait_for("#lobby (2 lines)> plain a").await;
    tmux.keys(&["Enter"]);
    assert_eq!(said_to_bob(&mut bob).await, (false, "plain a".to_owned()));
    assert_eq!(
        said_to_bob(&mut bob).await,
        (false, "plain    b".to_owned())
    );

    tmux.keys(&["C-c"]);
    tmux.wait_for("mm exited with 0").await;
}

/// A terminal without bracketed paste, and input longer than one read of the terminal (2 KiB
/// and more: a paste of 3,000 characters, 1,000 arrow keys): everything arrives and shows at
/// once, and a key typed after a pause is taken on its own — an Enter sends, it is never held
/// back to arrive with the next key and be taken as a line break of the paste.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_typed_after_long_input_without_bracketed_paste_are_taken_at_once_and_alone() {
    if !Tmux::usable() {
        return;
    }
    let server = TestServer::start_unthrottled().await;
    let (tmux, mut bob, _home) = alice_in_tmux_beside_bob(&server).await;
    let pause = || tokio::time::sleep(Duration::from_millis(700));

    // 3,000 characters in one line: all of it shows without another key...
    let long = format!("{}the end", "x".repeat(2993));
    tmux.paste(&long, false, false);
    tmux.wait_for("xxxxthe end").await;
    // ...and Enter after a pause sends it, whole, as one line.
    pause().await;
    tmux.keys(&["Enter"]);
    assert_eq!(said_to_bob(&mut bob).await, (false, long.clone()));
    // The input is empty again (tmux drops a row's trailing spaces: the prompt row is "#lobby>").
    let screen = wait_for_row(&tmux, "an empty input", |r| r.trim_end() == "#lobby>").await;
    assert!(!screen.contains("lines)>"), "no draft of lines:\n{screen}");

    // A letter typed after such a paste shows at once, without another key after it.
    tmux.paste(&format!("{}two", "y".repeat(2997)), false, false);
    tmux.wait_for("yyyytwo").await;
    pause().await;
    tmux.keys(&["!"]);
    tmux.wait_for("yyyytwo!").await;
    tmux.keys(&["C-u"]);

    // 40 lines of 80 characters (3,240 bytes with the line breaks), then Enter after a pause:
    // the 40 lines go, in order.
    let lines: Vec<String> = (1..=40)
        .map(|i| format!("{i:02} {}", "z".repeat(77)))
        .collect();
    tmux.paste(&(lines.join("\n") + "\n"), false, false);
    tmux.wait_for("pasted 40 lines").await;
    pause().await;
    tmux.keys(&["Enter"]);
    for line in &lines {
        assert_eq!(said_to_bob(&mut bob).await, (false, line.clone()));
    }

    // 1,000 arrow keys (3,000 bytes) at once, then Enter: the line is sent as it is.
    tmux.keys(&["moved over"]);
    tmux.keys(&["-N", "1000", "Left"]);
    pause().await;
    tmux.keys(&["Enter"]);
    assert_eq!(
        said_to_bob(&mut bob).await,
        (false, "moved over".to_owned())
    );

    // A command typed after a long paste is a command.
    tmux.paste(&"w".repeat(3000), false, false);
    pause().await;
    tmux.keys(&["C-u"]);
    pause().await;
    tmux.keys(&["/quit", "Enter"]);
    tmux.wait_for("mm exited with 0").await;
}

/// The server-certificate-changed warning shows in the terminal UI as lines (it showed its line
/// breaks as `�`, in the room and the status bar), with both fingerprints and the command that
/// trusts the new one. Forgetting the old one (`mm trust forget`) works on this mm's file while
/// it runs, after which /reconnect says how to trust the new certificate; the shown command then
/// gets it connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_server_certificate_shows_as_lines_naming_mm_trust_add() {
    if !Tmux::usable() {
        return;
    }
    let server = TestServer::start().await;
    let old_fp = mm_certs::fingerprint(&server.ca[0]);
    let place = tempfile::tempdir().unwrap();
    let home = place.path().join("home");
    let command = format!(
        "{} --server {} --nick alice --home {}; echo \"mm exited with $?\"; sleep 30",
        shell_quote(Path::new(MM)),
        server.server(),
        shell_quote(&home)
    );
    // Wide enough for the trust command (a 95-character fingerprint) on one row.
    let tmux = Tmux::start_sized(&command, 220, 40);
    tmux.wait_for("Trust this server and remember it?").await;
    tmux.keys(&["y", "Enter"]);
    tmux.wait_for("as alice; 1 online").await;

    // The operator makes a new CA and restarts the server.
    mm_certs::generate(server.tls.path(), &mm_certs::Names::default(), true).unwrap();
    let server = server
        .restart_on_same_port(Duration::from_millis(300))
        .await;
    let new_fp = mm_certs::fingerprint(&server.ca[0]);
    let addr = server.server();
    let trust = format!("mm trust add {addr} {new_fp} --home {}", home.display());
    // The message's last row: the screen may be captured while the rows above it are drawn.
    let screen = wait_for_row(&tmux, "the end of the message", |r| {
        r.trim_end()
            .ends_with("! then connect again (/reconnect in the terminal UI).")
    })
    .await;
    for row in [
        format!("! not reconnecting (/reconnect to try again): the certificate of {addr} has CHANGED since you trusted it"),
        format!("!   trusted:   {old_fp}"),
        format!("!   presented: {new_fp}"),
        "! This may be an attack (someone between you and the server), or its operator made a new CA.".to_string(),
        format!("!   {trust}"),
        "! then connect again (/reconnect in the terminal UI).".to_string(),
    ] {
        assert!(
            screen.lines().any(|r| r.trim_end().ends_with(&row)),
            "{row:?} as a row of its own:\n{screen}"
        );
    }
    assert!(!screen.contains('\u{fffd}'), "{screen}");
    assert!(
        screen.contains(&format!(
            "offline: the certificate of {addr} has CHANGED since you trusted it …"
        )),
        "the status bar says it in one line:\n{screen}"
    );

    // The command as shown, on the file this mm uses (while it runs).
    let mm = |args: &[&str]| {
        let out = Command::new(MM)
            .args(args)
            .env_remove("MM_HOME")
            .env_remove("MM_NICK")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let home_arg = home.display().to_string();
    let said = mm(&["trust", "forget", &addr, "--home", &home_arg]);
    assert_eq!(
        said.trim_end(),
        format!(
            "mm: forgot {addr} (CA fingerprint {old_fp}) in {}; the next connection to it shows its fingerprint and asks again",
            home.join("known_servers").display()
        )
    );
    // Not trusted any more: /reconnect says how to trust it.
    tmux.keys(&["/reconnect", "Enter"]);
    let screen = tmux
        .wait_for(&format!(
            "! not reconnecting: {addr} is not a trusted server (any more); its CA fingerprint is"
        ))
        .await;
    assert!(
        screen
            .lines()
            .any(|r| r.trim_end().ends_with(&format!("!   {new_fp}"))),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("!   mm trust add {addr} {new_fp}")),
        "{screen}"
    );
    // The operator confirms the new fingerprint: trusted, and /reconnect connects.
    mm(&["trust", "add", &addr, &new_fp, "--home", &home_arg]);
    tmux.keys(&["/reconnect", "Enter"]);
    let screen = tmux.wait_for("reconnected; 1 online").await;
    assert!(screen.contains(" · connected"), "{screen}");
    assert!(!screen.contains('\u{fffd}'), "{screen}");
    tmux.keys(&["C-c"]);
    tmux.wait_for("mm exited with 0").await;
}
