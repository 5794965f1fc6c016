//! Credentials on every backend: an account holds a set of them (one today), in their own
//! table; a login is the owner's if its credential is one of them, and they go wherever their
//! account goes.

use super::*;
use crate::store::memory::MemoryStore;
use crate::store::Credential;

/// How many credentials the store at `place` holds for the nick key `key`.
fn credentials_of<P: Place>(place: &P, key: &str) -> i64 {
    place.count(&format!("account_credentials WHERE nick_key = '{key}'"))
}

/// How a login of `nick` with `credential` goes on any store (registering it if free).
async fn login_on(store: &dyn Store, nick: &str, credential: &str, now: u64) -> LoginOutcome {
    reply(store.login(nick, credential, now, true))
        .await
        .outcome
}

async fn an_account_with_two_credentials_logs_in_with_either_and_no_other<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS_MANY, clock()).unwrap();
    assert_eq!(
        login(&store, "alice", "AA:01", 1).await,
        LoginOutcome::Registered
    );
    place.add_credential("alice", "p256:beef", 2);
    for credential in ["AA:01", "p256:beef"] {
        assert_eq!(
            reply(store.check_login("Alice", credential)).await,
            LoginOutcome::Known
        );
        assert_eq!(
            login(&store, "Alice", credential, 3).await,
            LoginOutcome::Known
        );
    }
    assert_eq!(
        reply(store.check_login("alice", "CC:03")).await,
        LoginOutcome::Taken
    );
    assert_eq!(
        login(&store, "alice", "CC:03", 3).await,
        LoginOutcome::Taken
    );
    // The listing shows both, oldest first, by kind and a short form.
    let accounts = place.accounts();
    let credentials = &account(&accounts, "alice").unwrap().credentials;
    assert_eq!(
        credentials
            .iter()
            .map(Credential::short)
            .collect::<Vec<_>>(),
        ["certificate AA:01", "key p256:beef"]
    );
    assert_eq!(credentials[1].added_ms, 2);

    // The in-memory store models the same set.
    let memory = MemoryStore::new(OPTS_MANY);
    assert_eq!(
        login_on(&memory, "alice", "AA:01", 1).await,
        LoginOutcome::Registered
    );
    assert!(memory.add_credential("ALICE", "p256:beef"));
    for credential in ["AA:01", "p256:beef"] {
        assert_eq!(
            login_on(&memory, "alice", credential, 2).await,
            LoginOutcome::Known
        );
    }
    assert_eq!(
        login_on(&memory, "alice", "CC:03", 2).await,
        LoginOutcome::Taken
    );
    memory.release("alice");
    assert_eq!(
        login_on(&memory, "alice", "CC:03", 3).await,
        LoginOutcome::Registered
    );
    for old in ["AA:01", "p256:beef"] {
        assert_eq!(
            login_on(&memory, "alice", old, 4).await,
            LoginOutcome::Taken
        );
    }
}

async fn a_released_or_expired_account_takes_its_credentials_along<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS_MANY, clock()).unwrap();
    for (nick, first, second) in [("alice", "AA:01", "p256:a2"), ("bob", "BB:01", "p256:b2")] {
        assert_eq!(
            login(&store, nick, first, 1).await,
            LoginOutcome::Registered
        );
        place.add_credential(nick, second, 2);
        assert_eq!(credentials_of(&place, nick), 2);
    }
    // alice: released by the operator, beside the running server.
    assert!(place.release("ALICE"));
    assert_eq!(credentials_of(&place, "alice"), 0);
    // bob: never came back after registering, so it expires.
    let expired = reply(store.expire_unused(100, Vec::new(), 10)).await;
    assert_eq!(expired, ["bob"]);
    assert_eq!(credentials_of(&place, "bob"), 0);
    // The new owners do not inherit the old credentials: the old certificates and keys are
    // refused.
    for (nick, old) in [
        ("alice", ["AA:01", "p256:a2"]),
        ("bob", ["BB:01", "p256:b2"]),
    ] {
        assert_eq!(
            login(&store, nick, "CC:new", 200).await,
            LoginOutcome::Registered
        );
        for old in old {
            assert_eq!(
                reply(store.check_login(nick, old)).await,
                LoginOutcome::Taken,
                "{nick} {old}"
            );
            assert_eq!(
                login(&store, nick, old, 201).await,
                LoginOutcome::Taken,
                "{nick} {old}"
            );
        }
        assert_eq!(credentials_of(&place, nick), 1);
    }
}

async fn an_abandoned_registration_takes_its_credential_along<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS_MANY, clock()).unwrap();
    assert_eq!(
        login(&store, "carol", "CC:01", 5).await,
        LoginOutcome::Registered
    );
    assert_eq!(credentials_of(&place, "carol"), 1);
    store.abandon_registration("carol", "CC:01", 5).unwrap();
    // Applied in the store's order: the nick is free again.
    assert_eq!(
        reply(store.check_login("carol", "CC:01")).await,
        LoginOutcome::Registered
    );
    assert_eq!(credentials_of(&place, "carol"), 0);
    assert_eq!(
        login(&store, "carol", "DD:02", 6).await,
        LoginOutcome::Registered
    );
    assert_eq!(
        login(&store, "carol", "CC:01", 7).await,
        LoginOutcome::Taken
    );
}

async fn a_registration_never_inherits_a_credential_left_without_its_account<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS_MANY, clock()).unwrap();
    // A row no deletion should leave (every one takes them along), as if one had.
    place.add_credential("zed", "ZZ:old", 1);
    assert_eq!(
        login(&store, "zed", "ZZ:new", 2).await,
        LoginOutcome::Registered
    );
    assert_eq!(login(&store, "zed", "ZZ:old", 3).await, LoginOutcome::Taken);
    assert_eq!(credentials_of(&place, "zed"), 1);
}

on_both!(
    async: [
        an_account_with_two_credentials_logs_in_with_either_and_no_other,
        a_released_or_expired_account_takes_its_credentials_along,
        an_abandoned_registration_takes_its_credential_along,
        a_registration_never_inherits_a_credential_left_without_its_account,
    ],
    sync: [],
);
