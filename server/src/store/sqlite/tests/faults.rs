//! Failures after acceptance: nothing accepted is lost, new writes are refused meanwhile.

use super::*;

#[tokio::test]
async fn a_full_disk_is_retried_until_there_is_room_and_nothing_accepted_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open_tuned(&path, OPTS_LONG, clock(), FAST).unwrap();
    // The writer's file may not grow (max_page_count is per connection): SQLITE_FULL.
    store.on_writer(|w| {
        let pages: i64 = w
            .backend
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let max: i64 = w
            .backend
            .conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(max, pages);
    });
    let big = "x".repeat(8000); // overflow pages: the file must grow
    let paused = store.pause();
    let held: Vec<_> = (1..=5)
        .map(|id| store.append_public(line(id, "a", &big)).unwrap())
        .collect();
    drop(paused);
    failing(&store).await;
    assert!(matches!(
        store.append_public(line(9, "a", "refused")),
        Err(StoreError::Busy)
    ));
    store.on_writer(|w| {
        let _: i64 = w
            .backend
            .conn
            .query_row("PRAGMA max_page_count = 1000000", [], |r| r.get(0))
            .unwrap();
    });
    for r in held {
        r.await.unwrap().unwrap();
    }
    reply(store.close(5)).await;
    store.join();
    drop(store);
    assert_eq!(history_ids(&path), [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn a_store_that_became_read_only_is_retried_while_owners_still_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open_tuned(&path, OPTS_LONG, clock(), FAST).unwrap();
    login(&store, "bob", "fp-b", 1).await;
    login(&store, "carol", "fp-c", 1).await;
    login(&store, "carol", "fp-c", 1).await; // returned: nothing left to record
    store.on_writer(|w| {
        w.backend
            .conn
            .execute_batch("PRAGMA query_only = 1")
            .unwrap()
    });
    let held = store
        .queue_mail("bob", mail(1, "a", "kept"), Arrival::Offline)
        .unwrap();
    failing(&store).await;
    // Not a registration: an owner's login is a read (its last-seen time is best effort).
    assert_eq!(login(&store, "carol", "fp-c", 2).await, LoginOutcome::Known);
    assert_eq!(login(&store, "carol", "fp-x", 2).await, LoginOutcome::Taken);
    assert!(matches!(
        store.login("dave", "fp-d", 2, true).unwrap().await.unwrap(),
        Err(StoreError::Busy)
    ));
    // bob's mailbox has a held write: his login, which reads it, waits for it, and so does a
    // plain read, so that they stay in order.
    let mut bob = store.login("bob", "fp-b", 2, true).unwrap();
    let mut read = store.waiting("bob").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(bob.try_recv(), Err(TryRecvError::Empty)));
    assert!(matches!(read.try_recv(), Err(TryRecvError::Empty)));
    store.on_writer(|w| {
        w.backend
            .conn
            .execute_batch("PRAGMA query_only = 0")
            .unwrap()
    });
    assert_eq!(held.await.unwrap().unwrap(), QueueOutcome::Queued);
    let bob = bob.await.unwrap().unwrap();
    assert_eq!(bob.outcome, LoginOutcome::Known);
    assert_eq!(ids(&bob.waiting), [1]);
    assert_eq!(ids(&read.await.unwrap().unwrap()), [1]);
    reply(store.close(1)).await;
}

#[tokio::test]
async fn a_store_that_cannot_be_written_is_refused_at_start_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let (store, _) = SqliteStore::open(&path, OPTS, clock()).unwrap();
        reply(store.close(0)).await;
        store.join();
    }
    // A connection that cannot write (as a read-only mount would make it; root-proof).
    let conn = schema::open_connection(&path).unwrap();
    conn.execute_batch("PRAGMA query_only = 1").unwrap();
    let err = SqliteStore::start(conn, &path, OPTS, clock(), None, TUNING).unwrap_err();
    assert!(matches!(err, StoreError::NotWritable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("writable"),
        "{text}"
    );
    // A file SQLite itself opens read-only: its header's write version is from the future.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[18] = 3;
    std::fs::write(&path, &bytes).unwrap();
    let err = SqliteStore::open(&path, OPTS, clock()).unwrap_err();
    assert!(matches!(err, StoreError::NotWritable { .. }), "{err}");
}

#[tokio::test]
async fn an_owner_logs_in_again_and_again_on_a_store_that_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open_tuned(&path, OPTS, clock(), FAST).unwrap();
    login(&store, "bob", "fp-b", 1).await;
    store.on_writer(|w| {
        w.backend
            .conn
            .execute_batch("PRAGMA query_only = 1")
            .unwrap()
    });
    // The check is a read; recording the time is best effort: it never fails the login.
    for now in 2..5 {
        assert_eq!(login(&store, "BOB", "fp-b", now).await, LoginOutcome::Known);
        let _ = store.logged_out("bob", now, false); // refused while failing: best effort too
    }
    assert_eq!(reply(store.waiting("bob")).await, []);
    // Writable again: the store notices by itself (nothing was held).
    store.on_writer(|w| {
        w.backend
            .conn
            .execute_batch("PRAGMA query_only = 0")
            .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.is_failing() {
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reply(store.append_public(line(1, "a", "x"))).await;
}
