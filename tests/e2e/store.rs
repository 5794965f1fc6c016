//! What the server keeps across restarts: history, messages for offline users, accounts; and
//! how the store behaves when it is damaged, locked, or the server is killed.

use mm_client::ChatLine;
use mm_client::{ConnectError, Event};
use mm_common::protocol::ErrorCode;
use mm_server::Limits;
use mm_tests::{identity_for, ServerProcess, TestClient, TestServer, WAIT};

const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");

/// Collects the history a fresh login received: everything before the answer to a line we
/// send (history is queued before anything live, so it all arrives before that answer).
async fn history_of(client: &mut TestClient) -> Vec<(u64, String, String)> {
    client.client.public("(marker)").await.unwrap();
    let mut history = Vec::new();
    loop {
        match client.next().await {
            Event::History(ChatLine { id, from, text, .. }) => history.push((id, from, text)),
            Event::Sent { .. } => return history,
            Event::Closed { error, .. } => panic!("closed: {error:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn history_survives_a_restart_in_order_with_its_senders() {
    let server = TestServer::start_unthrottled().await; // history_len 100
    let mut alice = server.client("alice").await;
    let mut carol = server.client("carol").await;
    for i in 0..150 {
        let who = if i % 2 == 0 { &mut alice } else { &mut carol };
        who.client.public(&format!("line {i}")).await.unwrap();
        assert!(matches!(who.next_answer().await, Event::Sent { .. }));
    }
    let server = server.restart().await;
    let mut bob = server.client("bob").await;
    let history = history_of(&mut bob).await;
    assert_eq!(history.len(), 100, "the last 100 lines");
    for (n, (_, from, text)) in history.iter().enumerate() {
        let i = n + 50;
        assert_eq!(text, &format!("line {i}"));
        assert_eq!(from, if i % 2 == 0 { "alice" } else { "carol" });
    }
    assert!(history.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");
    // New ids continue after the old ones.
    bob.client.public("after restart").await.unwrap();
    let Event::Sent { id, .. } = bob.next_answer().await else {
        panic!("not sent")
    };
    assert!(id > history[99].0, "{id} after {}", history[99].0);
}

#[tokio::test]
async fn private_lines_wait_for_an_offline_user_across_a_restart_and_arrive_once() {
    let server = TestServer::start().await;
    let bob = server.client("bob").await; // registers bob
    bob.client.quit().await;
    let mut bob = bob;
    bob.wait_for("close", |e| matches!(e, Event::Closed { .. }))
        .await;

    let mut alice = server.client("alice").await;
    // Plain lines (end-to-end ones queued offline: secure.rs).
    alice.client.insecure("bob").await.unwrap();
    alice.client.insecure("nobody").await.unwrap();
    for text in ["first", "second", "third"] {
        alice.client.private("bob", text).await.unwrap();
        assert!(
            matches!(alice.next_answer_or_queued().await, Event::Queued { .. }),
            "the sender is told it was stored"
        );
    }
    // A nick nobody registered is still an error.
    alice.client.private("nobody", "x").await.unwrap();
    alice
        .expect_refusal(ErrorCode::NO_SUCH_NICK, "not a registered user")
        .await;

    let server = server.restart().await;
    let mut bob = server.client("bob").await;
    let mut got = Vec::new();
    while got.len() < 3 {
        if let Event::Offline(ChatLine { from, text, .. }) = bob
            .wait_for("offline line", |e| {
                matches!(e, Event::Offline(ChatLine { .. }))
            })
            .await
        {
            assert_eq!(from, "alice");
            got.push(text);
        }
    }
    assert_eq!(got, ["first", "second", "third"]);
    // Delivered means deleted: the next login gets nothing again.
    bob.client.quit().await;
    bob.wait_for("close", |e| matches!(e, Event::Closed { .. }))
        .await;
    let mut bob = server.client("bob").await;
    bob.client.public("(marker)").await.unwrap();
    loop {
        match bob.next().await {
            Event::Offline(ChatLine { text, .. }) => panic!("{text} delivered twice"),
            Event::Sent { .. } => break,
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_full_mailbox_refuses_more_and_says_so() {
    let server = TestServer::start_with(Limits {
        mailbox_len: 2,
        ..Limits::default()
    })
    .await;
    let bob = server.client("bob").await;
    bob.client.quit().await;
    let mut alice = server.client("alice").await;
    let mut bob = bob;
    bob.wait_for("close", |e| matches!(e, Event::Closed { .. }))
        .await;
    alice.client.insecure("bob").await.unwrap();
    for _ in 0..2 {
        alice.client.private("bob", "hi").await.unwrap();
        assert!(matches!(
            alice.next_answer_or_queued().await,
            Event::Queued { .. }
        ));
    }
    alice.client.private("bob", "one too many").await.unwrap();
    alice
        .expect_refusal(ErrorCode::MAILBOX_FULL, "keeps for one user (2)")
        .await;
}

#[tokio::test]
async fn a_damaged_store_stops_the_server_with_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("mm-server.db"), vec![0x42u8; 16 * 1024]).unwrap();
    let stderr = mm_tests::server_refuses_to_start(MM_SERVER, data.path()).await;
    assert!(
        stderr.contains("damaged or not a Multi-Messenger store")
            && stderr.contains("move it aside"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The file was left as it was: nothing silently replaced.
    let kept = std::fs::read(data.path().join("mm-server.db")).unwrap();
    assert!(kept.iter().all(|&b| b == 0x42) && kept.len() == 16 * 1024);
}

#[tokio::test]
async fn a_second_server_on_the_same_store_is_refused() {
    let first = ServerProcess::start(MM_SERVER, "").await;
    let stderr = mm_tests::server_refuses_to_start(MM_SERVER, first.data.path()).await;
    assert!(stderr.contains("in use by another process"), "{stderr}");
    let (status, _) = first.stop().await;
    assert!(status.success());
}

#[tokio::test]
async fn admin_lists_accounts_and_releases_a_nick() {
    let server = ServerProcess::start(MM_SERVER, "").await;
    let (alice, _events, _) = mm_client::connect(&server.options("alice")).await.unwrap();
    alice.quit().await;
    let admin = |args: &[&str]| {
        std::process::Command::new(MM_SERVER)
            .args(args)
            .arg("--data")
            .arg(server.data.path())
            .envs(mm_tests::test_store_env(server.data.path()))
            .output()
            .unwrap()
    };
    let list = admin(&["accounts", "list"]);
    assert!(list.status.success());
    let list = String::from_utf8_lossy(&list.stdout);
    let fingerprint = identity_for("alice").fingerprint();
    let shown = format!(
        "certificate {}",
        mm_server::store::short_credential(&fingerprint)
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("alice ") && l.contains(&shown)),
        "{list}"
    );

    // Someone else cannot take it...
    let mut stranger = server.options("alice");
    stranger.certificate = Some(mm_certs::ClientIdentity::generate().unwrap());
    assert!(matches!(
        mm_client::connect(&stranger).await,
        Err(ConnectError::Refused {
            code: ErrorCode::NICK_REGISTERED,
            ..
        })
    ));
    // ...until the operator releases it (alice lost her key, say).
    let release = admin(&["accounts", "release", "ALICE"]);
    assert!(release.status.success(), "{release:?}");
    let (_c, _e, welcome) = mm_client::connect(&stranger).await.unwrap();
    assert_eq!(welcome.nick, "alice");
    let again = admin(&["accounts", "release", "nobody"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no account named nobody"));
}

/// The server with history kept long enough to hold the whole burst, and no rate limit.
pub(crate) const BURST_CONFIG: &str = r#"
[limits]
rate_burst = 1000000
rate_per_sec = 1000000
history_len = 1000
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_in_a_burst_every_acknowledged_line_is_in_the_store() {
    const SENT: usize = 1000;
    let server = ServerProcess::start(MM_SERVER, BURST_CONFIG).await;
    let (alice, mut events, _) = mm_client::connect(&server.options("alice")).await.unwrap();
    let sender = {
        let alice = alice.clone();
        tokio::spawn(async move {
            for i in 0..SENT {
                if alice.public(&format!("m{i}")).await.is_err() {
                    break; // the server is gone
                }
            }
        })
    };
    // Kill it mid-burst: after a third of the lines were acknowledged.
    let mut acked = 0;
    while acked < SENT / 3 {
        match tokio::time::timeout(WAIT, events.next()).await.unwrap() {
            Some(Event::Sent { .. }) => acked += 1,
            Some(Event::Closed { error, .. }) => panic!("closed early: {error:?}"),
            _ => {}
        }
    }
    let data = server.kill().await;
    let _ = tokio::time::timeout(WAIT, sender).await;
    // Every acknowledgement that reached alice before the connection died counts.
    loop {
        match tokio::time::timeout(WAIT, events.next()).await.unwrap() {
            Some(Event::Sent { .. }) => acked += 1,
            Some(Event::Closed { .. }) | None => break,
            _ => {}
        }
    }

    let server = ServerProcess::start_in(MM_SERVER, BURST_CONFIG, data).await;
    let (bob, mut events, _) = mm_client::connect(&server.options("bob")).await.unwrap();
    bob.public("(marker)").await.unwrap();
    let mut texts = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, events.next()).await.unwrap() {
            Some(Event::History(ChatLine { from, text, .. })) => {
                assert_eq!(from, "alice");
                texts.push(text);
            }
            Some(Event::Sent { .. }) => break,
            Some(Event::Closed { error, .. }) => panic!("closed: {error:?}"),
            _ => {}
        }
    }
    let expected: Vec<String> = (0..texts.len()).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected, "a prefix, in order, with no gaps");
    assert!(texts.len() <= SENT, "{} lines kept", texts.len());
    // A line is acknowledged only once it is on disk: kill -9 loses none of those.
    assert!(
        texts.len() >= acked,
        "kill -9 after {acked} acknowledged lines left only {} in the store",
        texts.len()
    );
    let (status, _) = server.stop().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_graceful_stop_nothing_acknowledged_is_lost() {
    let server = ServerProcess::start(MM_SERVER, BURST_CONFIG).await;
    let (alice, mut events, _) = mm_client::connect(&server.options("alice")).await.unwrap();
    for i in 0..500 {
        alice.public(&format!("g{i}")).await.unwrap();
    }
    let mut acked = 0;
    while acked < 500 {
        if let Some(Event::Sent { .. }) = tokio::time::timeout(WAIT, events.next()).await.unwrap() {
            acked += 1;
        }
    }
    let data = server.stop_keeping_data().await;
    let server = ServerProcess::start_in(MM_SERVER, BURST_CONFIG, data).await;
    let (bob, mut events, _) = mm_client::connect(&server.options("bob")).await.unwrap();
    bob.public("(marker)").await.unwrap();
    let mut n = 0;
    loop {
        match tokio::time::timeout(WAIT, events.next()).await.unwrap() {
            Some(Event::History(ChatLine { text, .. })) => {
                assert_eq!(text, format!("g{n}"));
                n += 1;
            }
            Some(Event::Sent { .. }) => break,
            _ => {}
        }
    }
    assert_eq!(n, 500, "every acknowledged line survived SIGTERM");
}

#[tokio::test]
async fn new_nicks_stop_at_the_account_cap_and_owners_still_get_in() {
    let server = TestServer::start_with(Limits {
        max_accounts: 2,
        ..Limits::default()
    })
    .await;
    let alice = server.client("alice").await;
    let _bob = server.client("bob").await;
    match server.try_client("carol").await {
        Err(ConnectError::Refused { code, detail }) => {
            assert_eq!(code, ErrorCode::ACCOUNTS_FULL);
            assert!(detail.contains("no new accounts"), "{detail}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a third account was registered"),
    }
    alice.client.quit().await;
    let mut alice = alice;
    alice
        .wait_for("close", |e| matches!(e, Event::Closed { .. }))
        .await;
    let again = server.client("alice").await;
    assert_eq!(again.welcome.nick, "alice");
}
