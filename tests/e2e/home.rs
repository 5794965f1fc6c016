//! One home is one identity, through the real `mm` in line mode: a second `mm` on a home in use
//! stops, each nick has its own default home (and the single default home of older versions
//! goes to the nick it belongs to), a client replaced by another login says so and exits 3,
//! and a peer presenting our own key is refused with a warning.

use mm_client::ChatLine;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use mm_client::Event;
use mm_tests::{TestServer, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const MM: &str = env!("CARGO_BIN_EXE_e2e-mm");

/// `mm --nick NICK` in line mode against `server` (trusting its CA), with `data` as the data
/// directory (`XDG_DATA_HOME`, and `HOME` below it) and `--home` only if given.
fn mm(server: &TestServer, nick: &str, data: &Path, home: Option<&Path>) -> Command {
    let mut cmd = Command::new(MM);
    cmd.args(["--server", &server.server(), "--nick", nick, "--ca"])
        .arg(server.ca_path());
    if let Some(home) = home {
        cmd.arg("--home").arg(home);
    }
    cmd.env("XDG_DATA_HOME", data)
        .env("HOME", data.join("unix-home"))
        .env_remove("MM_HOME")
        .env_remove("MM_SERVER")
        .env_remove("MM_NICK")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// A running `mm` we type into and read from.
struct Mm {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Lines<BufReader<ChildStdout>>,
}

impl Mm {
    fn spawn(mut cmd: Command) -> Mm {
        let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap()).lines();
        Mm { child, stdin, out }
    }

    async fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Skips stdout lines until one satisfies `pred`; returns it.
    async fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let line = tokio::time::timeout_at(deadline, self.out.next_line())
                .await
                .unwrap_or_else(|_| panic!("no line with {what} in time"))
                .unwrap()
                .unwrap_or_else(|| panic!("stdout ended before a line with {what}"));
            if pred(&line) {
                return line;
            }
        }
    }

    async fn connected(&mut self, nick: &str) {
        self.wait_line("the welcome", |l| {
            l.starts_with("* connected to ") && l.contains(&format!(" as {nick};"))
        })
        .await;
    }

    /// Closes stdin (EOF: quit) and waits for the exit; stdout is drained.
    async fn finish(mut self) -> Output {
        drop(self.stdin.take());
        while let Ok(Ok(Some(_))) = tokio::time::timeout(WAIT, self.out.next_line()).await {}
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("mm did not exit in time")
            .unwrap();
        let mut stderr = Vec::new();
        if let Some(mut err) = self.child.stderr.take() {
            tokio::io::AsyncReadExt::read_to_end(&mut err, &mut stderr)
                .await
                .unwrap();
        }
        Output {
            status,
            stdout: Vec::new(),
            stderr,
        }
    }
}

/// Runs `cmd` with stdin at EOF (line mode quits once connected) and returns its output.
async fn run(mut cmd: Command) -> Output {
    tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("mm did not exit in time")
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every file of a (flat) directory and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Copies a (flat) home directory, as a user copying it to another place would.
pub(crate) fn copy_home(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The fingerprint of the client certificate in `home`.
fn certificate(home: &Path) -> String {
    let certs = mm_certs::load_certs(&home.join("client.pem")).unwrap();
    mm_certs::fingerprint(&certs[0])
}

fn users(data: &Path) -> PathBuf {
    data.join("multi-messenger").join("users")
}

#[tokio::test]
async fn a_second_mm_on_a_home_in_use_stops_before_touching_it_and_the_first_carries_on() {
    let server = TestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let home = data.path().join("alice");
    let mut bob = server.client("bob").await;
    let mut alice = Mm::spawn(mm(&server, "alice", data.path(), Some(&home)));
    alice.connected("alice").await;
    let pid = alice.child.id().unwrap();
    // A pin in the home, to see that it survives.
    mm_tests::wait_for_keys(&server, "bob").await;
    alice.type_line("/msg bob hello").await;
    bob.secure_ready("alice").await;
    assert_eq!(bob.secure_message().await, ("alice".into(), "hello".into()));
    alice
        .wait_line("the session", |l| {
            l.contains("secure session with bob ready")
        })
        .await;
    let before = snapshot(&home);
    assert!(
        String::from_utf8_lossy(&before["pins"]).contains("bob"),
        "{before:?}"
    );

    // The same user again, or another user pointed at this home: both stop at once.
    for nick in ["alice", "bob"] {
        let second = run(mm(&server, nick, data.path(), Some(&home))).await;
        let err = stderr(&second);
        assert_eq!(second.status.code(), Some(1), "{nick}: {err}");
        assert!(
            err.contains(&format!(
                "mm: {} is in use by another mm (pid {pid}); ",
                home.display()
            )) && err.contains("home of their own"),
            "{nick}: {err}"
        );
        assert!(!err.contains("connected"), "{err}");
        assert_eq!(snapshot(&home), before, "{nick}: the home was touched");
    }

    // The first was neither knocked off nor disturbed.
    alice.type_line("/msg bob still here").await;
    assert_eq!(
        bob.secure_message().await,
        ("alice".into(), "still here".into())
    );
    let done = alice.finish().await;
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    assert!(String::from_utf8_lossy(&std::fs::read(home.join("pins")).unwrap()).contains("bob"));
}

#[tokio::test]
async fn a_line_mode_client_replaced_by_another_login_exits_3_and_says_why() {
    let server = TestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let (home, copy) = (data.path().join("a"), data.path().join("b"));
    let mut bob = server.client("bob").await;
    let mut first = Mm::spawn(mm(&server, "alice", data.path(), Some(&home)));
    first.connected("alice").await;
    // The home copied while the first runs: the same account, and the lock stays behind.
    copy_home(&home, &copy);
    let mut second = Mm::spawn(mm(&server, "alice", data.path(), Some(&copy)));
    second.connected("alice").await;

    first
        .wait_line("the notice", |l| l.starts_with("! error (replaced)"))
        .await;
    let done = first.finish().await;
    let err = stderr(&done);
    assert_eq!(done.status.code(), Some(3), "{err}");
    assert!(
        err.contains("mm: alice logged in from another client (same account, same certificate); this one is disconnected and does not reconnect"),
        "{err}"
    );
    assert!(!err.contains("not delivered"), "{err}");

    // The other one keeps the account.
    second.type_line("still me").await;
    let line = bob.next_line().await;
    assert!(
        matches!(&line, Event::Public(ChatLine { from, text, .. }) if from == "alice" && text == "still me"),
        "{line:?}"
    );
    let done = second.finish().await;
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
}

#[tokio::test]
async fn each_nick_has_its_own_default_home_so_two_users_on_one_machine_are_two_identities() {
    let server = TestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    // As in the README's first screen: no --home.
    let mut alice = Mm::spawn(mm(&server, "alice", data.path(), None));
    alice.connected("alice").await;
    let mut bob = Mm::spawn(mm(&server, "Bob", data.path(), None));
    bob.connected("Bob").await;
    alice.wait_line("bob's join", |l| l == "* Bob joined").await;
    bob.type_line("hi alice").await;
    alice
        .wait_line("bob's line", |l| l == "<Bob> hi alice")
        .await;
    alice.type_line("hi bob").await;
    bob.wait_line("alice's line", |l| l == "<alice> hi bob")
        .await;

    let (alice_home, bob_home) = (
        users(data.path()).join("alice"),
        users(data.path()).join("bob"),
    );
    assert_ne!(certificate(&alice_home), certificate(&bob_home));
    assert_ne!(
        std::fs::read(alice_home.join("identity.key")).unwrap(),
        std::fs::read(bob_home.join("identity.key")).unwrap()
    );
    assert!(!data.path().join("multi-messenger").join("client").exists());
    for done in [alice.finish().await, bob.finish().await] {
        assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    }
    #[cfg(unix)]
    for dir in [users(data.path()), alice_home, bob_home] {
        assert_eq!(mm_tests::mode(&dir), 0o700, "{}", dir.display());
    }
}

#[tokio::test]
async fn the_default_home_of_older_versions_goes_to_the_nick_it_was_registered_with() {
    let server = TestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let old = data.path().join("multi-messenger").join("client");
    // An older mm made its single default home and registered alice with it.
    let made = run(mm(&server, "alice", data.path(), Some(&old))).await;
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    let alices = certificate(&old);
    // (This version names a home's nick in it; the older one did not.)
    std::fs::remove_file(old.join("nick")).unwrap();
    // bob has an account of his own (another machine).
    drop(server.client("bob").await);

    // bob is the first to start after the upgrade: the old home is not his, the server says so,
    // and it stays for alice.
    let refused = run(mm(&server, "bob", data.path(), None)).await;
    let err = stderr(&refused);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains("nick-registered") || err.contains("registered"),
        "{err}"
    );
    assert!(
        err.contains("holds another nick's identity, so it stays for that nick"),
        "{err}"
    );
    assert!(!old.join("nick").exists(), "bob did not keep it");

    // alice gets it, and is told once.
    let adopted = run(mm(&server, "alice", data.path(), None)).await;
    let err = stderr(&adopted);
    assert_eq!(adopted.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("mm: using {} as alice's home", old.display())),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(old.join("nick")).unwrap(),
        "alice\n"
    );
    let again = run(mm(&server, "ALICE", data.path(), None)).await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(!stderr(&again).contains("using"), "{}", stderr(&again));
    assert_eq!(certificate(&old), alices);
    assert!(!users(data.path()).join("alice").exists());

    // Any other nick gets a home and an identity of its own.
    let carol = run(mm(&server, "carol", data.path(), None)).await;
    assert_eq!(carol.status.code(), Some(0), "{}", stderr(&carol));
    assert_ne!(certificate(&users(data.path()).join("carol")), alices);
}

#[tokio::test]
async fn a_peer_presenting_our_own_key_is_refused_with_a_warning_on_both_sides() {
    let server = TestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let (home, copy) = (data.path().join("a"), data.path().join("b"));
    let mut alice = Mm::spawn(mm(&server, "alice", data.path(), Some(&home)));
    alice.connected("alice").await;
    // bob runs on a copy of alice's home: one identity key for two people. (A home names its
    // nick since this version, which refuses another nick; a copy made by an older version
    // does not.)
    copy_home(&home, &copy);
    std::fs::remove_file(copy.join("nick")).unwrap();
    let mut bob = Mm::spawn(mm(&server, "bob", data.path(), Some(&copy)));
    bob.connected("bob").await;
    mm_tests::wait_for_keys(&server, "bob").await;
    mm_tests::wait_for_keys(&server, "alice").await;

    // Each side sees it when it fetches the other's keys.
    alice.type_line("/secure bob").await;
    let warning = alice
        .wait_line("the warning", |l| l.starts_with("!! WARNING"))
        .await;
    assert!(
        warning.starts_with(
            "!! WARNING: bob presents your own key: you and bob share one home directory; each user needs their own"
        ),
        "{warning}"
    );
    bob.type_line("/msg alice and mine is 5678").await;
    let warning = bob
        .wait_line("the warning", |l| l.starts_with("!! WARNING"))
        .await;
    assert!(
        warning.starts_with("!! WARNING: alice presents your own key"),
        "{warning}"
    );
    assert!(
        warning.ends_with("1 waiting message was NOT sent"),
        "{warning}"
    );
    // Blocked, not sent plain, and nothing pinned on either side.
    alice.type_line("/msg bob my PIN is 1234").await;
    let refusal = alice
        .wait_line("the refusal", |l| l.starts_with("! "))
        .await;
    assert!(refusal.contains("your own key"), "{refusal}");
    let (a, b) = (alice.finish().await, bob.finish().await);
    assert_eq!(a.status.code(), Some(2), "{}", stderr(&a));
    assert_eq!(b.status.code(), Some(2), "{}", stderr(&b));
    for (dir, peer) in [(&home, "bob"), (&copy, "alice")] {
        let pins = std::fs::read_to_string(dir.join("pins")).unwrap_or_default();
        assert!(!pins.contains(peer), "{peer} was pinned: {pins}");
    }
}

#[tokio::test]
async fn a_home_belongs_to_its_nick_and_a_copy_cannot_be_used_as_another() {
    let server = TestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let (home, copy) = (data.path().join("a"), data.path().join("c"));
    let mut alice = Mm::spawn(mm(&server, "alice", data.path(), Some(&home)));
    alice.connected("alice").await;
    alice.finish().await;
    assert_eq!(
        std::fs::read_to_string(home.join("nick")).unwrap(),
        "alice\n"
    );
    // carol on a copy of alice's home would carry alice's identity, pins and secure
    // conversations into carol's name: refused before anything is touched.
    copy_home(&home, &copy);
    let without_lock = |dir: &Path| {
        let mut files = snapshot(dir);
        files.remove("lock"); // holds the pid of the last mm that locked the home
        files
    };
    let before = without_lock(&copy);
    let output = run(mm(&server, "carol", data.path(), Some(&copy))).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("is alice's home") && err.contains("--nick alice"),
        "{err}"
    );
    assert_eq!(without_lock(&copy), before, "nothing in the home changed");
    // The same home as alice (any spelling) is fine.
    let mut again = Mm::spawn(mm(&server, "Alice", data.path(), Some(&home)));
    again.connected("Alice").await;
    again.finish().await;
}
