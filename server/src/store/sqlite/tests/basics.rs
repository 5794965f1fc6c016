//! Accounts, mailboxes and history within their bounds; the file and its lock.

use super::*;

#[test]
fn garbage_file_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = SqliteStore::open(&path, OPTS, clock()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("move it aside"), "{err}");
}

#[tokio::test]
async fn lines_kept_for_online_users_stay_within_the_mailbox_ceiling_and_the_total() {
    // 2 per offline user, ceiling 2 + 2 unacknowledged, 3 in all.
    let (store, _) = SqliteStore::open_in_memory(OPTS, clock()).unwrap();
    for nick in ["bob", "carol", "dave"] {
        login(&store, nick, "fp", 1).await;
    }
    // A client that never acknowledges: its live lines are kept up to the total...
    for id in 1..=3 {
        assert_eq!(
            reply(store.queue_mail("bob", mail(id, "a", "m"), Arrival::Live)).await,
            QueueOutcome::Queued
        );
    }
    assert_eq!(reply(store.waiting("bob")).await.len(), 3);
    // ...and beyond it delivered but not kept, for anyone.
    assert_eq!(
        reply(store.queue_mail("carol", mail(4, "a", "m"), Arrival::Live)).await,
        QueueOutcome::Queued
    );
    assert!(reply(store.waiting("carol")).await.is_empty());
    assert_eq!(
        reply(store.queue_mail("dave", mail(5, "a", "m"), Arrival::Offline)).await,
        QueueOutcome::StoreFull
    );
    // Acknowledging makes room again.
    store.delivered("bob", 3).unwrap();
    assert_eq!(
        reply(store.queue_mail("dave", mail(6, "a", "m"), Arrival::Offline)).await,
        QueueOutcome::Queued
    );
}

// --- The store's own clock: when it was opened, and the commit lag it logs at close. ---

/// The time the store recorded as its last opening.
fn opened_ms(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("SELECT value FROM meta WHERE key = 'opened_ms'", [], |r| {
            r.get(0)
        })
        .unwrap()
}

#[tokio::test]
async fn each_opening_is_recorded_at_the_time_of_the_store_clock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let clock = Arc::new(ManualClock::new(START_MS));
    {
        let (store, _) = SqliteStore::open(&path, OPTS, clock.clone()).unwrap();
        reply(store.close(0)).await;
        store.join();
    }
    assert_eq!(opened_ms(&path), START_MS as i64);
    clock.advance(Duration::from_millis(crate::clock::DAY_MS + 1));
    let (store, _) = SqliteStore::open(&path, OPTS, clock.clone()).unwrap();
    assert_eq!(
        opened_ms(&path),
        (START_MS + crate::clock::DAY_MS + 1) as i64
    );
    reply(store.close(0)).await;
}
