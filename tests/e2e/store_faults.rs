//! When the store fails after the server accepted a line: every line acknowledged (`Sent`) is
//! stored, nothing is acknowledged before it is, and a failure that outlasts the server is
//! reported (non-zero exit); a store that cannot be written stops the server at start.
//!
//! The faults are ones root cannot bypass: another process holding the store's write lock
//! (`BEGIN EXCLUSIVE`, as the sqlite3 shell would), and a file SQLite itself opens read-only.

use mm_client::ChatLine;
use std::path::Path;
use std::time::{Duration, Instant};

use mm_client::{ConnectError, Event};
use mm_common::protocol::ErrorCode;
use mm_server::store::sqlite::SqliteStore;
use mm_server::store::Store;
use mm_tests::{ServerProcess, TestClient, WAIT};

const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");

/// Another process's connection holding the store's write lock; released on drop.
fn hold_lock(db: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    conn
}

async fn login(server: &ServerProcess, nick: &str) -> TestClient {
    TestClient::connect(&server.options(nick)).await
}

/// Waits (up to `within`) for a log line containing `needle`.
async fn wait_log(server: &mut ServerProcess, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(line) = server.log.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            server.log.join("\n")
        );
        server.read_log(Duration::from_millis(100)).await;
    }
}

/// The events that arrive within `wait`.
async fn pending_events(client: &mut TestClient, wait: Duration) -> Vec<Event> {
    let mut events = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(wait, client.events.next()).await {
        events.push(event);
    }
    events
}

/// The history a fresh login receives (it all arrives before the answer to a line it sends).
async fn history_texts(client: &mut TestClient) -> Vec<String> {
    client.client.public("(marker)").await.unwrap();
    let mut texts = Vec::new();
    loop {
        match client.next().await {
            Event::History(ChatLine { text, .. }) => texts.push(text),
            Event::Sent { .. } => return texts,
            Event::Closed { error, .. } => panic!("closed: {error:?}"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_posted_while_another_process_locks_the_store_is_sent_only_once_stored() {
    let mut server = ServerProcess::start(MM_SERVER, "").await; // default limits
    let db = server.data.path().join("mm-server.db");
    let mut bob = login(&server, "bob").await;
    bob.client.quit().await;
    bob.wait_for("close", |e| matches!(e, Event::Closed { .. }))
        .await;
    let mut carol = login(&server, "carol").await;
    let mut alice = login(&server, "alice").await;
    // Plain: bob's next login below is a new client (new end-to-end keys).
    alice.client.insecure("bob").await.unwrap();
    alice.client.private("bob", "kept for bob").await.unwrap();
    assert!(matches!(
        alice.next_answer_or_queued().await,
        Event::Queued { .. }
    ));

    let lock = hold_lock(&db);
    alice.client.public("posted while locked").await.unwrap();
    // The writer waits out SQLite's lock wait (5 s), then fails, keeps the line and retries.
    wait_log(&mut server, "store: cannot commit", Duration::from_secs(20)).await;

    // While the store fails, a new line is refused at once and delivered to nobody...
    let asked = Instant::now();
    carol.client.public("refused while failing").await.unwrap();
    carol.expect_refusal(ErrorCode::BUSY, "busy").await;
    assert!(asked.elapsed() < Duration::from_secs(2), "refused at once");
    // ...a registered user still logs in and gets the line waiting for them...
    let mut bob = login(&server, "bob").await;
    match bob
        .wait_for("the waiting line", |e| {
            matches!(e, Event::Offline(ChatLine { .. }))
        })
        .await
    {
        Event::Offline(ChatLine { text, .. }) => assert_eq!(text, "kept for bob"),
        _ => unreachable!(),
    }
    // ...and a new nick cannot register.
    match mm_client::connect(&server.options("dave")).await {
        Err(ConnectError::Refused { code, .. }) => assert_eq!(code, ErrorCode::BUSY),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("registered while the store cannot write"),
    }
    // alice's line is not acknowledged while it is not stored.
    for event in pending_events(&mut alice, Duration::from_millis(300)).await {
        assert!(
            !matches!(
                event,
                Event::Sent { .. } | Event::Error { .. } | Event::Closed { .. }
            ),
            "answered before it was stored: {event:?}"
        );
        assert!(
            !matches!(&event, Event::Public(ChatLine { text, .. }) if text == "refused while failing"),
            "a refused line was delivered"
        );
    }

    let released = Instant::now();
    drop(lock);
    assert!(matches!(alice.next_answer().await, Event::Sent { .. }));
    println!(
        "Sent {} ms after the lock was released",
        released.elapsed().as_millis()
    );
    wait_log(&mut server, "store recovered after", WAIT).await;
    alice.client.public("after recovery").await.unwrap();
    assert!(matches!(alice.next_answer().await, Event::Sent { .. }));

    let data = server.stop_keeping_data().await;
    let server = ServerProcess::start_in(MM_SERVER, "", data).await;
    let mut erin = login(&server, "erin").await;
    let history = history_texts(&mut erin).await;
    assert_eq!(history, ["posted while locked", "after recovery"]);
    let (status, _) = server.stop().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_still_failing_at_shutdown_makes_mm_server_exit_non_zero_naming_what_was_lost() {
    const CONFIG: &str = "[limits]\nshutdown_grace = \"1s\"\n";
    let mut server = ServerProcess::start(MM_SERVER, CONFIG).await;
    let db = server.data.path().join("mm-server.db");
    let mut alice = login(&server, "alice").await;
    let lock = hold_lock(&db);
    alice.client.public("never stored").await.unwrap();
    wait_log(&mut server, "store: cannot commit", Duration::from_secs(20)).await;

    let pid = server.child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // Grace (1 s), then the store's final effort (10 s), then it gives up.
    let status = tokio::time::timeout(Duration::from_secs(40), server.child.wait())
        .await
        .expect("mm-server did not exit")
        .unwrap();
    server.read_log(Duration::from_secs(2)).await;
    let log = server.log.join("\n");
    assert!(!status.success(), "exited successfully:\n{log}");
    assert!(
        log.contains("1 accepted lines were NOT stored"),
        "the log does not say what was lost:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    // alice was never told the line was sent.
    for event in pending_events(&mut alice, Duration::from_millis(300)).await {
        assert!(!matches!(event, Event::Sent { .. }), "{event:?}");
    }

    drop(lock);
    let server = ServerProcess::start_in(MM_SERVER, CONFIG, server.data).await;
    let mut bob = login(&server, "bob").await;
    assert!(history_texts(&mut bob).await.is_empty());
    let (status, _) = server.stop().await;
    assert!(status.success());
}

#[tokio::test]
async fn a_store_that_cannot_be_written_stops_the_server_at_start_with_a_clear_error() {
    // A store as a server leaves it.
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join(mm_server::STORE_FILE);
    let opts = mm_server::store::Options::from_limits(&mm_server::Limits::default());
    let clock = std::sync::Arc::new(mm_server::clock::SystemClock);
    let (store, _) = SqliteStore::open(&db, opts, clock).unwrap();
    store.close(0).unwrap().await.unwrap().unwrap();
    store.join();
    drop(store);
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[18] = 3; // write version
    std::fs::write(&db, &bytes).unwrap();
    let stderr = mm_tests::server_refuses_to_start(MM_SERVER, data.path()).await;
    assert!(
        stderr.contains("cannot be written")
            && stderr.contains(&db.display().to_string())
            && stderr.contains("writable"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
