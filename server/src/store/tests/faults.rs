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

on_both!(
    async: [
        io_errors_retry_the_whole_batch_and_the_running_counts_stay_right,
        an_operation_that_fails_on_its_own_is_refused_alone_and_its_batch_commits,
    ],
    sync: [],
);
