//! End-to-end encrypted private chats (protocol 6: X3DH prekeys from the server's key
//! directory, then the Double Ratchet) through a real server over real TLS, with the library
//! client and with the real `mm` binary in line mode.

use std::path::Path;
use std::sync::{Arc, Mutex};

use mm_client::{Delivery, Event};
use mm_common::e2e::{E2eEvent, Envelope, Failure, Trust};
use mm_tests::{wait_for_keys, RawTls, TestServer, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One relayed payload: (from, to, payload).
type Relayed = (String, String, Vec<u8>);

/// Every relayed payload.
type Seen = Arc<Mutex<Vec<Relayed>>>;

/// A server whose relay hook is `alter` (given the payloads relayed before this one, and
/// this one), recording what it relays after the change.
async fn server_with_relay(
    alter: impl Fn(&[Relayed], Vec<u8>) -> Vec<u8> + Send + Sync + 'static,
) -> (TestServer, Seen) {
    let seen: Seen = Arc::default();
    let tap = Arc::clone(&seen);
    let server =
        TestServer::start_with_hook(Arc::new(move |from: &str, to: &str, payload: Vec<u8>| {
            let mut seen = tap.lock().unwrap();
            let payload = alter(&seen, payload);
            seen.push((from.to_owned(), to.to_owned(), payload.clone()));
            payload
        }))
        .await;
    (server, seen)
}

/// A server that relays honestly and records every payload.
async fn recording_server() -> (TestServer, Seen) {
    server_with_relay(|_, payload| payload).await
}

/// The envelope in a relayed payload.
fn envelope(payload: &[u8]) -> Envelope {
    postcard::from_bytes(payload).expect("an end-to-end envelope")
}

/// Every byte of every file under `dir` (the server's data directory: the SQLite database,
/// its WAL and shared memory, anything else).
fn all_bytes_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.push((path.display().to_string(), bytes));
            }
        }
    }
    files
}

#[tokio::test]
async fn a_private_line_is_end_to_end_by_default_and_the_server_sees_only_ciphertext() {
    let (server, seen) = recording_server().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    wait_for_keys(&server, "bob").await;
    let secrets = ["the eagle lands at midnight", "ünïcødé ✓ secret"];
    let (_, delivery) = alice.client.private("bob", secrets[0]).await.unwrap();
    assert_eq!(delivery, Delivery::Queued, "it waits for bob's keys");
    match alice.secure_ready("bob").await {
        E2eEvent::Ready {
            key,
            trust,
            by_peer,
            ..
        } => {
            assert_eq!(
                key,
                bob.client.public_key(),
                "bob's real key, from the directory"
            );
            assert_eq!((trust, by_peer), (Trust::New, false));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        bob.secure_message().await,
        ("alice".to_string(), secrets[0].to_string())
    );
    // bob answers on alice's session; then alice's messages no longer carry the start.
    let (_, delivery) = bob.client.private("ALICE", "roger").await.unwrap();
    assert_eq!(delivery, Delivery::Secure);
    assert_eq!(
        alice.secure_message().await,
        ("bob".to_string(), "roger".to_string())
    );
    let (_, delivery) = alice.client.private("bob", secrets[1]).await.unwrap();
    assert_eq!(delivery, Delivery::Secure);
    assert_eq!(
        bob.secure_message().await,
        ("alice".to_string(), secrets[1].to_string())
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "one relay per line");
    assert!(matches!(envelope(&seen[0].2), Envelope::Start { .. }));
    assert!(matches!(envelope(&seen[1].2), Envelope::Message(_)));
    assert!(matches!(envelope(&seen[2].2), Envelope::Message(_)));
    for (_, _, payload) in seen.iter() {
        for secret in secrets.iter().chain(&["roger"]) {
            for piece in secret.as_bytes().windows(5) {
                assert!(
                    !contains(payload, piece),
                    "plaintext piece {:?} visible to the server",
                    String::from_utf8_lossy(piece)
                );
            }
        }
    }
}

#[tokio::test]
async fn a_user_without_keys_gets_nothing_and_the_line_is_dropped_visibly() {
    let server = TestServer::start().await;
    // carol's account exists (she logged in with protocol 6) but never published keys.
    let _carol = RawTls::login(&server, "carol").await;
    let mut alice = server.client("alice").await;
    let (line, delivery) = alice.client.private("carol", "hello?").await.unwrap();
    assert_eq!(delivery, Delivery::Queued);
    let failed = alice
        .secure_event("failure", |e| matches!(e, E2eEvent::Failed { .. }))
        .await;
    assert_eq!(
        failed,
        E2eEvent::Failed {
            peer: "carol".into(),
            failure: Failure::NoKeys,
            unsent: vec![line.get()],
        }
    );
    // A nick nobody has.
    let (line, _) = alice.client.private("nobody", "anyone?").await.unwrap();
    let failed = alice
        .secure_event("failure", |e| matches!(e, E2eEvent::Failed { .. }))
        .await;
    assert_eq!(
        failed,
        E2eEvent::Failed {
            peer: "nobody".into(),
            failure: Failure::NoSuchUser,
            unsent: vec![line.get()],
        }
    );
}

/// Replaces the payload of relay number `n` (from 0) by `with(earlier, payload)`.
fn at(
    n: usize,
    with: impl Fn(&[Relayed], Vec<u8>) -> Vec<u8> + Send + Sync + 'static,
) -> impl Fn(&[Relayed], Vec<u8>) -> Vec<u8> + Send + Sync + 'static {
    move |seen: &[Relayed], payload: Vec<u8>| {
        if seen.len() == n {
            with(seen, payload)
        } else {
            payload
        }
    }
}

#[tokio::test]
async fn a_replayed_message_is_shown_once_and_the_ones_after_a_lost_one_still_decrypt() {
    // The server replaces alice's third message by her second again: the second is replayed,
    // the third is lost.
    let (server, _) = server_with_relay(at(2, |seen, _| seen[1].2.clone())).await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    wait_for_keys(&server, "bob").await;
    for text in ["one", "two", "three (lost)", "four"] {
        alice.client.private("bob", text).await.unwrap();
    }
    assert_eq!(bob.secure_message().await.1, "one");
    assert_eq!(bob.secure_message().await.1, "two");
    let replayed = bob
        .wait_for("the replay", |e| {
            matches!(
                e,
                Event::Secure(E2eEvent::Replayed { .. } | E2eEvent::Message { .. })
            )
        })
        .await;
    assert!(
        matches!(&replayed, Event::Secure(E2eEvent::Replayed { peer }) if peer == "alice"),
        "the replay is said, not shown: {replayed:?}"
    );
    assert_eq!(bob.secure_message().await.1, "four");
}

#[tokio::test]
async fn an_altered_message_is_not_shown_and_the_session_carries_on() {
    let (server, _) = server_with_relay(at(1, |_, mut payload| {
        let last = payload.len() - 1;
        payload[last] ^= 0x01;
        payload
    }))
    .await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    wait_for_keys(&server, "bob").await;
    for text in ["one", "altered", "three"] {
        alice.client.private("bob", text).await.unwrap();
    }
    assert_eq!(bob.secure_message().await.1, "one");
    let next = bob
        .wait_for("the altered message", |e| {
            matches!(
                e,
                Event::Secure(E2eEvent::Unreadable { .. } | E2eEvent::Message { .. })
            )
        })
        .await;
    assert!(
        matches!(&next, Event::Secure(E2eEvent::Unreadable { peer }) if peer == "alice"),
        "{next:?}"
    );
    assert_eq!(bob.secure_message().await.1, "three");
}

// ---- the real `mm` in line mode ----------------------------------------------------------------

/// `mm` in line mode for `nick` with home `home`, trusting `server`'s CA.
struct Mm {
    child: Child,
    stdin: ChildStdin,
    out: Lines<BufReader<ChildStdout>>,
    /// Everything it printed so far (for failure messages).
    printed: Vec<String>,
}

impl Mm {
    async fn start(server: &TestServer, nick: &str, home: &Path) -> Mm {
        let mut child = crate::cli::spawn_mm(&server.server(), Some(&server.ca_path()), nick, home);
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut mm = Mm {
            child,
            stdin,
            out,
            printed: Vec::new(),
        };
        mm.line_containing(&format!("as {nick}")).await;
        mm
    }

    async fn say(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    async fn next_line(&mut self) -> String {
        let line = tokio::time::timeout(WAIT, self.out.next_line())
            .await
            .unwrap_or_else(|_| panic!("no output in time; mm printed {:#?}", self.printed))
            .unwrap()
            .unwrap_or_else(|| panic!("stdout closed; mm printed {:#?}", self.printed));
        self.printed.push(line.clone());
        line
    }

    /// Skips output until a line contains `what`; returns it.
    async fn line_containing(&mut self, what: &str) -> String {
        loop {
            let line = self.next_line().await;
            if line.contains(what) {
                return line;
            }
        }
    }

    /// The next chat line (private, secure), skipping notices; every line skipped is returned
    /// too, so that a test can check nothing was shown twice.
    async fn next_chat(&mut self) -> String {
        loop {
            let line = self.next_line().await;
            if line.starts_with("[secure] <") || line.starts_with("[private") {
                return line;
            }
        }
    }

    /// Ends input and waits for `mm` to exit (it sends everything first); its status must be
    /// success.
    async fn finish(mut self) {
        drop(self.stdin);
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("mm did not exit")
            .unwrap();
        assert!(status.success(), "{status:?}");
    }
}

#[tokio::test]
async fn line_mode_offline_mail_stays_ciphertext_on_the_server_and_sessions_survive_restarts() {
    let (server, seen) = recording_server().await;
    let homes = tempfile::tempdir().unwrap();
    let (alice_home, bob_home) = (homes.path().join("alice"), homes.path().join("bob"));

    // bob's first run publishes his keys; then he is offline.
    let bob = Mm::start(&server, "bob", &bob_home).await;
    wait_for_keys(&server, "bob").await;
    bob.finish().await;

    // alice writes five lines to offline bob: each queued end-to-end encrypted.
    let texts: Vec<String> = (1..=5)
        .map(|i| {
            format!(
                "offline-secret-{i}-{}",
                ["ab", "cd", "ef", "gh", "ij"][i - 1]
            )
        })
        .collect();
    let mut alice = Mm::start(&server, "alice", &alice_home).await;
    for text in &texts {
        alice.say(&format!("/msg bob {text}")).await;
    }
    for _ in &texts {
        alice
            .line_containing("queued end-to-end encrypted for bob (offline)")
            .await;
    }
    alice.finish().await;

    // Nothing the server keeps holds any of the plaintexts: not the database, not its WAL.
    let files = all_bytes_under(server.data.path());
    assert!(
        files.iter().any(|(name, _)| name.ends_with("-wal")),
        "the WAL is checked too: {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (name, bytes) in &files {
        for text in &texts {
            assert!(!contains(bytes, text.as_bytes()), "{text:?} in {name}");
        }
    }
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 5);
        assert!(seen
            .iter()
            .all(|(_, _, p)| matches!(envelope(p), Envelope::Start { .. })));
    }

    // bob's next run reads them, in order, once.
    let mut bob = Mm::start(&server, "bob", &bob_home).await;
    for text in &texts {
        assert_eq!(bob.next_chat().await, format!("[secure] <alice> {text}"));
    }
    // His answer goes on alice's session (a plain ratchet message, no fetch of his own).
    bob.say("/msg alice reply-from-bob").await;
    bob.line_containing("queued end-to-end encrypted for alice (offline)")
        .await;
    bob.finish().await;

    // Both restart: alice reads bob's answer, and her next line continues the session.
    let mut alice = Mm::start(&server, "alice", &alice_home).await;
    assert_eq!(alice.next_chat().await, "[secure] <bob> reply-from-bob");
    let mut bob = Mm::start(&server, "bob", &bob_home).await;
    alice.say("/msg bob after-both-restarted").await;
    assert_eq!(
        bob.next_chat().await,
        "[secure] <alice> after-both-restarted",
        "shown once, nothing before it again"
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 7);
        assert!(
            matches!(envelope(&seen[5].2), Envelope::Message(_)),
            "bob answered in alice's session"
        );
        assert!(
            matches!(envelope(&seen[6].2), Envelope::Message(_)),
            "after the restarts: the saved session, not a new start from a new bundle"
        );
    }

    // /insecure: plain on purpose, shown as not end-to-end on both sides.
    alice.say("/insecure bob").await;
    alice
        .line_containing("private messages to bob are NOT end-to-end encrypted from now on")
        .await;
    alice.say("/msg bob plain-on-purpose").await;
    assert_eq!(bob.next_chat().await, "[private] <alice> plain-on-purpose");
    bob.line_containing("was NOT end-to-end encrypted").await;
    assert_eq!(seen.lock().unwrap().len(), 7, "no relay for the plain line");
    alice.finish().await;
    bob.finish().await;
}
