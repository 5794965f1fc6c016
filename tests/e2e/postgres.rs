//! The real `mm-server` on a PostgreSQL store (`store = "postgres://…"`): what was acknowledged
//! to clients (public lines, a line for a user offline) survives `kill -9` of the server and a
//! restart on the same database, a second server on that database is refused, and
//! `mm-server accounts` works on it (`rooms` says it does not yet).
//!
//! Needs `MM_TEST_POSTGRES` (a loopback server where the role may create databases):
//! `eval "$(scripts/postgres start)"`, which `scripts/test` does. Without it the test fails.

use mm_client::{ChatLine, Event};
use mm_tests::{rand_tag, ServerProcess, TestClient, TestDatabase as Database, WAIT};

use crate::offline::mm;

const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_what_was_acknowledged_survives_kill_9_and_a_second_server_is_refused() {
    let db = Database::new();
    let config = format!("store = \"{}\"\n{}", db.url(), crate::store::BURST_CONFIG);
    let server = ServerProcess::start(MM_SERVER, &config).await;
    assert!(
        server
            .log
            .iter()
            .any(|l| l.contains("store opened") && l.contains(&db.name)),
        "{:?}",
        server.log
    );

    // A second server on the same database: refused, in words.
    let other = tempfile::tempdir().unwrap();
    let refused = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(MM_SERVER)
            .args(["--bind", "127.0.0.1:0", "--store", &db.url(), "--data"])
            .arg(other.path())
            .output(),
    )
    .await
    .expect("the second server refused at once")
    .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("in use by another") && stderr.contains(&db.name),
        "{stderr}"
    );

    // bob registers and goes offline; alice leaves him a line, acknowledged as queued.
    let homes = tempfile::tempdir().unwrap();
    let (alice, bob) = (homes.path().join("alice"), homes.path().join("bob"));
    let tag = format!("{:016x}", rand_tag());
    mm(&server, "bob", &bob, "").await;
    let out = mm(
        &server,
        "alice",
        &alice,
        &format!("/msg bob waiting-{tag}\n"),
    )
    .await;
    assert!(
        out.contains("queued end-to-end encrypted for bob (offline)"),
        "{out}"
    );

    // carol's public lines, each acknowledged, then kill -9.
    let mut carol = TestClient::connect(&server.options("carol")).await;
    for i in 0..50 {
        carol.client.public(&format!("p{i}")).await.unwrap();
        assert!(matches!(carol.next_answer().await, Event::Sent { .. }));
    }
    let data = server.kill().await;

    // Restarted on the same database (the lock of the killed one's session is gone with it).
    let server = ServerProcess::start_in(MM_SERVER, &config, data).await;
    let mut dave = TestClient::connect(&server.options("dave")).await;
    dave.client.public("(marker)").await.unwrap();
    let mut history = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, dave.next()).await.unwrap() {
            Event::History(ChatLine { from, text, .. }) => {
                assert_eq!(from, "carol");
                history.push(text);
            }
            Event::Sent { .. } => break,
            Event::Closed { error, .. } => panic!("closed: {error:?}"),
            _ => {}
        }
    }
    let expected: Vec<String> = (0..50).map(|i| format!("p{i}")).collect();
    assert_eq!(history, expected, "every acknowledged line, in order");
    let out = mm(&server, "bob", &bob, "").await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("[secure") && l.ends_with(&format!("<alice> waiting-{tag}"))),
        "the offline line, once, after kill -9: {out}"
    );

    // The operator's commands on the same database, beside the running server.
    let admin = |args: &[&str]| {
        std::process::Command::new(MM_SERVER)
            .args(args)
            .args(["--store", &db.url(), "--data"])
            .arg(other.path())
            .output()
            .unwrap()
    };
    let list = admin(&["accounts", "list"]);
    assert!(list.status.success(), "{list:?}");
    let list = String::from_utf8_lossy(&list.stdout);
    for nick in ["alice", "bob", "carol", "dave"] {
        assert!(
            list.lines().any(|l| l.starts_with(&format!("{nick} "))),
            "{list}"
        );
    }
    let rooms = admin(&["rooms", "list"]);
    assert!(rooms.status.success(), "{rooms:?}");
    assert!(
        String::from_utf8_lossy(&rooms.stdout).contains(" room(s)"),
        "{rooms:?}"
    );
    assert!(
        !other.path().join("mm-server.db").exists(),
        "no SQLite file made"
    );
    let (status, _) = server.stop().await;
    assert!(status.success());
}
