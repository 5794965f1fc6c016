//! Failures after acceptance: nothing accepted is lost, new writes are refused meanwhile.

use super::*;

async fn io_errors_retry_the_whole_batch_and_the_running_counts_stay_right<P: Place>() {
    let place = P::new();
    // At most 2 lines per mailbox and 3 in all.
    let (store, _) = place.open_tuned(OPTS, clock(), FAST).unwrap();
    for nick in ["bob", "carol", "dave"] {
        login(&store, nick, "fp", 1).await;
    }
    for (id, to) in [(1, "bob"), (2, "bob"), (3, "carol")] {
        reply(store.queue_mail(to, mail(id, "a", "m"), Arrival::Offline)).await;
    }
    // The next three commits fail; the batch deleting bob's two lines is tried four times.
    store.on_writer(|w| w.fail_commits = 3);
    store.delivered("bob", 2).unwrap();
    // After the deletion in order: answered once it is committed.
    assert!(reply(store.waiting("bob")).await.is_empty());
    store.on_writer(|w| assert_eq!(w.fail_commits, 0, "the failures were injected"));
    assert!(!store.is_failing());
    // One line waits in all: room for exactly two more. A count changed by the failed
    // attempts would let a fourth line in.
    for (id, to) in [(4, "carol"), (5, "dave")] {
        assert_eq!(
            reply(store.queue_mail(to, mail(id, "a", "m"), Arrival::Offline)).await,
            QueueOutcome::Queued
        );
    }
    assert_eq!(
        reply(store.queue_mail("dave", mail(6, "a", "m"), Arrival::Offline)).await,
        QueueOutcome::StoreFull
    );
    reply(store.close(6)).await;
}

async fn an_operation_that_fails_on_its_own_is_refused_alone_and_its_batch_commits<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS, clock()).unwrap();
    login(&store, "bob", "fp-b", 1).await;
    let first = store
        .queue_mail("bob", mail(1, "a", "one"), Arrival::Offline)
        .unwrap();
    // The same id again: a constraint violation, which retrying could never fix.
    let again = store
        .queue_mail("bob", mail(1, "a", "dup"), Arrival::Offline)
        .unwrap();
    let public = store.append_public(line(2, "a", "p")).unwrap();
    assert_eq!(first.await.unwrap().unwrap(), QueueOutcome::Queued);
    assert!(matches!(again.await.unwrap(), Err(StoreError::Failed(_))));
    public.await.unwrap().unwrap();
    assert!(!store.is_failing());
    assert_eq!(ids(&reply(store.waiting("bob")).await), [1]);
}

async fn a_locked_store_keeps_what_it_accepted_refuses_new_writes_and_commits_once_released<
    P: Place,
>() {
    let place = P::new();
    let (store, _) = place.open_tuned(OPTS_LONG, clock(), FAST).unwrap();
    login(&store, "bob", "fp-b", 1).await;
    reply(store.queue_mail("bob", mail(1, "a", "waiting"), Arrival::Offline)).await;
    reply(store.append_public(line(2, "a", "before"))).await;

    let lock = place.hold();
    let mut held = store.append_public(line(3, "a", "held")).unwrap();
    failing(&store).await;
    // New writes are refused at once (the hub then delivers them to nobody).
    assert!(matches!(
        store.append_public(line(4, "a", "refused")),
        Err(StoreError::Busy)
    ));
    assert!(matches!(
        store.queue_mail("bob", mail(5, "a", "refused"), Arrival::Offline),
        Err(StoreError::Busy)
    ));
    // Reads still work: the owner logs in and reads the mailbox; nobody registers.
    assert_eq!(login(&store, "Bob", "fp-b", 2).await, LoginOutcome::Known);
    assert_eq!(login(&store, "bob", "fp-x", 2).await, LoginOutcome::Taken);
    assert!(matches!(
        store
            .login("carol", "fp-c", 2, true)
            .unwrap()
            .await
            .unwrap(),
        Err(StoreError::Busy)
    ));
    assert_eq!(ids(&reply(store.waiting("bob")).await), [1]);
    // The accepted line is not answered while it is not stored...
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(matches!(held.try_recv(), Err(TryRecvError::Empty)));
    // ...and is stored, then answered, once the lock is released.
    drop(lock);
    held.await.unwrap().unwrap();
    assert!(!store.is_failing());
    reply(store.append_public(line(6, "a", "after"))).await;
    assert_eq!(
        login(&store, "carol", "fp-c", 3).await,
        LoginOutcome::Registered
    );
    reply(store.close(6)).await;
    store.join();
    drop(store);
    assert_eq!(history_ids(&place), [2, 3, 6]);
}

async fn closing_while_commits_still_fail_gives_up_in_bounded_time_and_names_what_was_lost<
    P: Place,
>() {
    let place = P::new();
    let (store, _) = place.open_tuned(OPTS_LONG, clock(), FAST).unwrap();
    login(&store, "bob", "fp-b", 1).await;
    let lock = place.hold();
    let paused = store.pause();
    let public = store.append_public(line(1, "a", "lost")).unwrap();
    let private = store
        .queue_mail("bob", mail(2, "a", "lost"), Arrival::Offline)
        .unwrap();
    let closing = store.close(2).unwrap();
    let started = Instant::now();
    drop(paused);
    let closed = closing.await.unwrap();
    assert!(
        matches!(closed, Err(StoreError::NotStored { lines: 2, .. })),
        "{closed:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        public.await.unwrap(),
        Err(StoreError::NotStored { .. })
    ));
    assert!(matches!(
        private.await.unwrap(),
        Err(StoreError::NotStored { .. })
    ));
    store.join();
    drop((store, lock));
    assert!(history_ids(&place).is_empty());
}

/// What `/readyz` and the store's metrics read: `ready` goes through a commit (refused at
/// once while commits fail), and the backlog counts what was submitted and not answered,
/// from before the metrics were attached and through a failure.
async fn readiness_and_the_backlog_follow_a_failing_store_and_its_recovery<P: Place>() {
    let place = P::new();
    let (store, _) = place.open_tuned(OPTS_LONG, clock(), FAST).unwrap();
    // Work submitted before the metrics are handed over is counted all the same.
    let paused = store.pause();
    let early = store.append_public(line(1, "a", "early")).unwrap();
    let metrics = crate::metrics::Metrics::new().unwrap();
    store.attach_metrics(metrics.store.clone());
    assert_eq!(metrics.store.backlog.get(), 1);
    drop(paused);
    early.await.unwrap().unwrap();
    reply(store.ready()).await;
    assert_eq!(metrics.store.backlog.get(), 0);
    let committed = metrics.store.commit_seconds.get_sample_count();
    assert!(committed >= 2, "{committed}");

    assert_eq!(
        login(&store, "bob", "fp-b", 1).await,
        LoginOutcome::Registered
    );
    let lock = place.hold();
    let held = store.append_public(line(2, "a", "held")).unwrap();
    failing(&store).await;
    // Not ready while commits fail: refused at once.
    assert!(matches!(store.ready(), Err(StoreError::Busy)));
    assert_eq!(metrics.store.backlog.get(), 1);
    // A login answered from a read while failing is answered (not waiting), and that bob came
    // back is held with the batch: one more operation waits.
    assert_eq!(login(&store, "bob", "fp-b", 2).await, LoginOutcome::Known);
    assert_eq!(metrics.store.backlog.get(), 2);
    drop(lock);
    held.await.unwrap().unwrap();
    reply(store.ready()).await;
    assert_eq!(metrics.store.backlog.get(), 0);
    assert!(metrics.store.commit_seconds.get_sample_count() > committed);
    reply(store.close(2)).await;
    store.join();
}

on_both!(
    async: [
        readiness_and_the_backlog_follow_a_failing_store_and_its_recovery,
        a_locked_store_keeps_what_it_accepted_refuses_new_writes_and_commits_once_released,
        closing_while_commits_still_fail_gives_up_in_bounded_time_and_names_what_was_lost,
        io_errors_retry_the_whole_batch_and_the_running_counts_stay_right,
        an_operation_that_fails_on_its_own_is_refused_alone_and_its_batch_commits,
    ],
    sync: [],
);
