//! Accounts, mailboxes and history within their bounds; the file and its lock.

use super::*;

/// Whether the store at `place` recorded `ms` as its last opening.
fn opened_at<P: Place>(place: &P, ms: u64) -> bool {
    place.count(&format!("meta WHERE key = 'opened_ms' AND value = {ms}")) == 1
}

async fn nick_belongs_to_the_first_fingerprint_case_insensitively<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS, clock()).unwrap();
    assert_eq!(
        login(&store, "Alice", "fp-a", 1).await,
        LoginOutcome::Registered
    );
    assert_eq!(login(&store, "alice", "fp-a", 2).await, LoginOutcome::Known);
    assert_eq!(login(&store, "ALICE", "fp-b", 3).await, LoginOutcome::Taken);
}

async fn mailbox_is_bounded_ordered_and_emptied_on_delivery<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS, clock()).unwrap();
    login(&store, "bob", "fp-b", 1).await;
    assert_eq!(
        reply(store.queue_mail("carol", mail(1, "a", "x"), Arrival::Offline)).await,
        QueueOutcome::NoSuchAccount
    );
    for id in [5, 6] {
        assert_eq!(
            reply(store.queue_mail("bob", mail(id, "a", "m"), Arrival::Offline)).await,
            QueueOutcome::Queued
        );
    }
    assert_eq!(
        reply(store.queue_mail("bob", mail(7, "a", "m"), Arrival::Offline)).await,
        QueueOutcome::MailboxFull
    );
    let waiting = reply(store.waiting("bob")).await;
    assert_eq!(waiting.iter().map(|l| l.id).collect::<Vec<_>>(), [5, 6]);
    store.delivered("bob", 5).unwrap();
    let waiting = reply(store.waiting("bob")).await;
    assert_eq!(waiting.iter().map(|l| l.id).collect::<Vec<_>>(), [6]);
}

async fn history_keeps_the_newest_lines_and_ids_survive_reopen<P: Place>() {
    let place = P::new();
    {
        let (store, loaded) = place.open(OPTS, clock()).unwrap();
        assert_eq!(loaded.last_id, 0);
        for id in 1..=5 {
            store
                .append_public(line(id, "a", &format!("l{id}")))
                .unwrap();
        }
        reply(store.close(42)).await;
        store.join();
    }
    let (store, loaded) = place.open(OPTS, clock()).unwrap();
    assert_eq!(
        loaded.history.iter().map(|l| l.id).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert_eq!(loaded.history[0], line(3, "a", "l3"));
    assert_eq!(loaded.last_id, 42);
    reply(store.close(0)).await;
}

fn a_second_open_is_refused_while_the_first_holds_the_store<P: Place>() {
    let place = P::new();
    let _first = place.open(OPTS, clock()).unwrap();
    let err = place.open(OPTS, clock()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}

async fn the_total_of_waiting_lines_is_bounded_and_delivery_frees_room<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS, clock()).unwrap(); // 2 per user, 3 in all
    for nick in ["bob", "carol"] {
        login(&store, nick, "fp", 1).await;
    }
    for (id, to) in [(1, "bob"), (2, "bob"), (3, "carol")] {
        assert_eq!(
            reply(store.queue_mail(to, mail(id, "a", "m"), Arrival::Offline)).await,
            QueueOutcome::Queued
        );
    }
    assert_eq!(
        reply(store.queue_mail("carol", mail(4, "a", "m"), Arrival::Offline)).await,
        QueueOutcome::StoreFull
    );
    store.delivered("bob", 2).unwrap();
    assert_eq!(
        reply(store.queue_mail("carol", mail(5, "a", "m"), Arrival::Offline)).await,
        QueueOutcome::Queued
    );
}

async fn the_commit_lag_is_measured_from_acceptance_on_the_store_clock<P: Place>() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let place = P::new();
    let (store, _) = place.open(OPTS, clock.clone()).unwrap();
    let max_lag = |store: &BatchStore<P::B>| {
        let (tx, rx) = std::sync::mpsc::channel();
        store.on_writer(move |w| tx.send(w.stats.max_lag_ms).unwrap());
        rx.recv().unwrap()
    };
    let public = |id, ts| Line {
        room: crate::hub::RoomId::LOBBY,
        action: false,
        id,
        ts,
        from: "a".into(),
        text: "x".into(),
    };
    assert_eq!(max_lag(&store), 0);
    // Accepted by the hub 250 ms before the store commits it, then one 100 ms before.
    reply(store.append_public(public(1, START_MS - 250))).await;
    assert_eq!(max_lag(&store), 250);
    reply(store.append_public(public(2, START_MS - 100))).await;
    assert_eq!(max_lag(&store), 250, "the longest is kept");
    // A personal line committed while the clock reads 2 s after its acceptance.
    login(&store, "bob", "fp-b", START_MS).await;
    clock.advance(Duration::from_secs(2));
    let waiting = Mail {
        id: 3,
        ts: START_MS,
        from: "a".into(),
        body: Body::Text("x".into()),
    };
    reply(store.queue_mail("bob", waiting, Arrival::Offline)).await;
    assert_eq!(max_lag(&store), 2000);
    reply(store.close(3)).await;
}

fn release_frees_the_nick_and_drops_its_mail<P: Place>() {
    let place = P::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    {
        let (store, _) = place.open(OPTS, clock()).unwrap();
        rt.block_on(async {
            login(&store, "bob", "fp-b", 1).await;
            reply(store.queue_mail("bob", mail(1, "a", "secret"), Arrival::Offline)).await;
            reply(store.close(1)).await;
        });
        store.join();
    }
    let accounts = place.accounts();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].nick, "bob");
    assert_eq!(accounts[0].waiting, 1);
    assert!(place.release("BOB"));
    assert!(!place.release("bob"));
    let (store, _) = place.open(OPTS, clock()).unwrap();
    rt.block_on(async {
        assert_eq!(
            login(&store, "bob", "fp-new", 2).await,
            LoginOutcome::Registered
        );
        assert!(reply(store.waiting("bob")).await.is_empty());
    });
}

async fn registration_stops_at_the_cap_and_a_release_makes_room<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS, clock()).unwrap(); // at most 3 accounts
    for nick in ["a", "b", "c"] {
        assert_eq!(login(&store, nick, "fp", 1).await, LoginOutcome::Registered);
    }
    assert_eq!(login(&store, "d", "fp", 1).await, LoginOutcome::Full);
    assert_eq!(login(&store, "a", "fp", 2).await, LoginOutcome::Known);
    // An operator releases one while the server runs: the cap is recounted.
    assert!(place.release("b"));
    assert_eq!(login(&store, "d", "fp", 3).await, LoginOutcome::Registered);
    assert_eq!(login(&store, "e", "fp", 3).await, LoginOutcome::Full);
}

async fn lines_kept_for_online_users_stay_within_the_mailbox_ceiling_and_the_total<P: Place>() {
    // 2 per offline user, ceiling 2 + 2 unacknowledged, 3 in all.
    let place = P::new();
    let (store, _) = place.open(OPTS, clock()).unwrap();
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

async fn each_opening_is_recorded_at_the_time_of_the_store_clock<P: Place>() {
    let place = P::new();
    let clock = Arc::new(ManualClock::new(START_MS));
    {
        let (store, _) = place.open(OPTS, clock.clone()).unwrap();
        reply(store.close(0)).await;
        store.join();
    }
    assert!(opened_at(&place, START_MS));
    clock.advance(Duration::from_millis(crate::clock::DAY_MS + 1));
    let (store, _) = place.open(OPTS, clock.clone()).unwrap();
    assert!(opened_at(&place, START_MS + crate::clock::DAY_MS + 1));
    reply(store.close(0)).await;
}

on_both!(
    async: [
        lines_kept_for_online_users_stay_within_the_mailbox_ceiling_and_the_total,
        each_opening_is_recorded_at_the_time_of_the_store_clock,
        registration_stops_at_the_cap_and_a_release_makes_room,
        nick_belongs_to_the_first_fingerprint_case_insensitively,
        mailbox_is_bounded_ordered_and_emptied_on_delivery,
        history_keeps_the_newest_lines_and_ids_survive_reopen,
        the_total_of_waiting_lines_is_bounded_and_delivery_frees_room,
        the_commit_lag_is_measured_from_acceptance_on_the_store_clock,
    ],
    sync: [a_second_open_is_refused_while_the_first_holds_the_store, release_frees_the_nick_and_drops_its_mail],
);
