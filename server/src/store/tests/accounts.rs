//! Accounts on every backend: abandoned registrations undone only as they were made, and
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

on_both!(
    async: [
        an_abandoned_registration_is_undone_only_if_it_is_still_that_registration,
        expiry_deletes_only_accounts_nobody_came_back_to,
    ],
    sync: [],
);
