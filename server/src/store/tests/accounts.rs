//! Accounts on every backend: look-alikes refused in one batch, abandoned registrations undone
//! only as they were made, that an account was used recorded while commits fail, and
//! expiry of accounts nobody came back to.

use super::*;

async fn an_abandoned_registration_is_undone_only_if_it_is_still_that_registration<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS_MANY, clock()).unwrap();
    // Registered, mail arrived, then its login gave up: undone, mail and all.
    assert_eq!(
        login(&store, "bob", "fp-b", 5).await,
        LoginOutcome::Registered
    );
    reply(store.queue_mail("bob", mail(1, "a", "x"), Arrival::Offline)).await;
    store.abandon_registration("BOB", "fp-b", 5).unwrap();
    // Only what that login made: not another certificate's, not another time's, not once used.
    assert_eq!(
        login(&store, "carol", "fp-c", 6).await,
        LoginOutcome::Registered
    );
    store.abandon_registration("carol", "fp-x", 6).unwrap();
    store.abandon_registration("carol", "fp-c", 5).unwrap();
    assert_eq!(
        login(&store, "dave", "fp-d", 7).await,
        LoginOutcome::Registered
    );
    assert_eq!(login(&store, "dave", "fp-d", 8).await, LoginOutcome::Known);
    store.abandon_registration("dave", "fp-d", 7).unwrap();
    assert!(reply(store.waiting("bob")).await.is_empty());
    let accounts = place.accounts();
    let nicks: Vec<&str> = accounts.iter().map(|a| a.nick.as_str()).collect();
    assert_eq!(nicks, ["carol", "dave"]);
}

async fn expiry_deletes_only_accounts_nobody_came_back_to<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS_MANY, clock()).unwrap();
    let day = crate::clock::DAY_MS;
    for (nick, at) in [
        ("gone", 1),
        ("gone2", 2),
        ("used", 1),
        ("online", 1),
        ("late", 1),
        ("recent", 30 * day),
    ] {
        assert_eq!(
            login(&store, nick, "fp", at).await,
            LoginOutcome::Registered
        );
    }
    assert_eq!(login(&store, "used", "fp", 2).await, LoginOutcome::Known);
    // late's registering connection ended on day 29 (a durable logout).
    store.logged_out("late", 29 * day, true).unwrap();
    reply(store.queue_mail("gone", mail(1, "a", "x"), Arrival::Offline)).await;
    let cutoff = 31 * day - 30 * day; // now = day 31, 30 days
    let expired = reply(store.expire_unused(cutoff, vec!["online".into()], 1)).await;
    assert_eq!(expired, ["gone"], "at most `limit`, oldest first");
    let expired = reply(store.expire_unused(cutoff, vec!["online".into()], 10)).await;
    assert_eq!(expired, ["gone2"]);
    assert!(reply(store.waiting("gone")).await.is_empty());
    let accounts = place.accounts();
    let nicks: Vec<&str> = accounts.iter().map(|a| a.nick.as_str()).collect();
    assert_eq!(nicks, ["late", "online", "recent", "used"]);
    assert_eq!(account(&accounts, "used").unwrap().returned_ms, Some(2));
    assert_eq!(account(&accounts, "online").unwrap().returned_ms, None);
    // The expired nicks are free for anyone.
    assert_eq!(
        login(&store, "gone", "fp-new", 31 * day).await,
        LoginOutcome::Registered
    );
}

async fn look_alikes_are_refused_even_when_registering_in_the_same_batch<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS_MANY, clock()).unwrap();
    let paused = store.pause();
    let first = store.login("alice", "fp-a", 1, true).unwrap();
    let second = store.login("aIice", "fp-m", 1, true).unwrap();
    let check = store.check_login("AL1CE", "fp-m").unwrap();
    drop(paused);
    assert_eq!(
        first.await.unwrap().unwrap().outcome,
        LoginOutcome::Registered
    );
    assert_eq!(
        second.await.unwrap().unwrap().outcome,
        LoginOutcome::LooksLike("alice".into())
    );
    assert_eq!(
        check.await.unwrap().unwrap(),
        LoginOutcome::LooksLike("alice".into())
    );
    // The owner, in any spelling, is unaffected; a nick that only reads alike is fine.
    assert_eq!(login(&store, "ALICE", "fp-a", 2).await, LoginOutcome::Known);
    assert_eq!(
        login(&store, "alicia", "fp-m", 2).await,
        LoginOutcome::Registered
    );
}

async fn that_an_account_was_used_is_recorded_even_if_the_store_fails_at_that_moment<P: Place>() {
    let place = P::new();
    let (store, _) = place.open_tuned(OPTS_MANY, clock(), FAST).unwrap();
    assert_eq!(
        login(&store, "bob", "fp-b", 1).await,
        LoginOutcome::Registered
    );
    assert_eq!(
        login(&store, "eve", "fp-e", 1).await,
        LoginOutcome::Registered
    );
    let lock = place.hold();
    // bob comes back: the login works (from a read) even though nothing can be written...
    let held = store.append_public(line(1, "a", "held")).unwrap();
    failing(&store).await;
    assert_eq!(login(&store, "bob", "fp-b", 2).await, LoginOutcome::Known);
    // ...and eve's registering connection ends: recorded too, though other writes are refused.
    store.logged_out("eve", 3, true).unwrap();
    assert!(matches!(
        store.logged_out("bob", 3, false),
        Err(StoreError::Busy)
    ));
    drop(lock);
    held.await.unwrap().unwrap();
    reply(store.close(1)).await;
    store.join();
    drop(store);
    let accounts = place.accounts();
    assert_eq!(account(&accounts, "bob").unwrap().returned_ms, Some(2));
    assert_eq!(account(&accounts, "eve").unwrap().last_seen_ms, 3);
    assert_eq!(account(&accounts, "eve").unwrap().returned_ms, None);
}

on_both!(
    async: [
        look_alikes_are_refused_even_when_registering_in_the_same_batch,
        that_an_account_was_used_is_recorded_even_if_the_store_fails_at_that_moment,
        an_abandoned_registration_is_undone_only_if_it_is_still_that_registration,
        expiry_deletes_only_accounts_nobody_came_back_to,
    ],
    sync: [],
);
