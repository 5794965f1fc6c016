//! Credentials: an account holds a set of them (one today), in their own table; a login is
//! the owner's if its credential is one of them, and they go wherever their account goes.

use mm_common::confusable::skeleton;

use super::*;
use crate::store::memory::MemoryStore;
use crate::store::{Credential, CredentialKind};

/// How many credentials the store file at `path` holds for the nick key `key`.
fn credentials_of(path: &Path, key: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM account_credentials WHERE nick_key = ?1",
            [key],
            |r| r.get(0),
        )
        .unwrap()
}

/// Adds `credential` to the account `key` at `now_ms` on the writer's connection: nothing in
/// the protocol adds a second credential yet.
fn add_credential(store: &SqliteStore, key: &'static str, credential: &'static str, now_ms: u64) {
    store.on_writer(move |w| {
        crate::store::sqlite::accounts::add_credential(&w.backend.conn, key, credential, now_ms)
            .unwrap();
    });
}

/// How a login of `nick` with `credential` goes on any store (registering it if free).
async fn login_on(store: &dyn Store, nick: &str, credential: &str, now: u64) -> LoginOutcome {
    reply(store.login(nick, credential, now, true))
        .await
        .outcome
}

#[tokio::test]
async fn a_store_of_schema_5_keeps_every_login_once_its_fingerprints_are_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        schema::migrate_to(&mut conn, 5).unwrap();
        // As the server of key logins (schema 5) registered them: certificates' fingerprints
        // and a key's credential in `accounts.fingerprint`.
        for (nick, fingerprint, created, returned) in [
            ("Alice", "AA:01:02:03:04:05:06:07:08:09", 5, Some(7)),
            ("bob", "BB:01", 6, None),
            ("web", "p256:0123456789abcdef0123", 9, Some(9)),
        ] {
            conn.execute(
                "INSERT INTO accounts
                     (nick_key, nick, fingerprint, created_ms, last_seen_ms, skeleton, returned_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
                rusqlite::params![
                    nick.to_ascii_lowercase(),
                    nick,
                    fingerprint,
                    created,
                    skeleton(nick),
                    returned
                ],
            )
            .unwrap();
        }
    }
    let (store, _) = SqliteStore::open(&path, OPTS_MANY, clock()).unwrap();
    // Every account logs in with what it logged in with before, in any case of its nick...
    for (nick, credential) in [
        ("ALICE", "AA:01:02:03:04:05:06:07:08:09"),
        ("bob", "BB:01"),
        ("Web", "p256:0123456789abcdef0123"),
    ] {
        assert_eq!(
            reply(store.check_login(nick, credential)).await,
            LoginOutcome::Known,
            "{nick}"
        );
        assert_eq!(
            login(&store, nick, credential, 10).await,
            LoginOutcome::Known,
            "{nick}"
        );
    }
    // ...and with nothing else: not another account's credential.
    assert_eq!(
        login(&store, "alice", "BB:01", 11).await,
        LoginOutcome::Taken
    );
    assert_eq!(
        login(&store, "bob", "p256:0123456789abcdef0123", 11).await,
        LoginOutcome::Taken
    );
    reply(store.close(0)).await;
    store.join();
    drop(store);
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 6);
    // One source of truth: the column is gone.
    let fingerprint_columns: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('accounts') WHERE name = 'fingerprint'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(fingerprint_columns, 0);
    let accounts = SqliteStore::list_accounts(&path).unwrap();
    assert_eq!(
        account(&accounts, "alice").unwrap().credentials,
        [Credential {
            kind: CredentialKind::Certificate,
            credential: "AA:01:02:03:04:05:06:07:08:09".into(),
            added_ms: 5,
        }]
    );
    assert_eq!(
        account(&accounts, "web").unwrap().credentials,
        [Credential {
            kind: CredentialKind::Key,
            credential: "p256:0123456789abcdef0123".into(),
            added_ms: 9,
        }]
    );
    // bob logged in again: recorded through its credential.
    assert_eq!(account(&accounts, "bob").unwrap().returned_ms, Some(10));
}

#[tokio::test]
async fn an_account_with_two_credentials_logs_in_with_either_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open(&path, OPTS_MANY, clock()).unwrap();
    assert_eq!(
        login(&store, "alice", "AA:01", 1).await,
        LoginOutcome::Registered
    );
    add_credential(&store, "alice", "p256:beef", 2);
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
    let accounts = SqliteStore::list_accounts(&path).unwrap();
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

#[tokio::test]
async fn a_released_or_expired_account_takes_its_credentials_along() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open(&path, OPTS_MANY, clock()).unwrap();
    for (nick, first, second) in [("alice", "AA:01", "p256:a2"), ("bob", "BB:01", "p256:b2")] {
        assert_eq!(
            login(&store, nick, first, 1).await,
            LoginOutcome::Registered
        );
        add_credential(&store, nick, second, 2);
        assert_eq!(credentials_of(&path, nick), 2);
    }
    // alice: released by the operator, beside the running server.
    assert!(SqliteStore::release(&path, "ALICE").unwrap());
    assert_eq!(credentials_of(&path, "alice"), 0);
    // bob: never came back after registering, so it expires.
    let expired = reply(store.expire_unused(100, Vec::new(), 10)).await;
    assert_eq!(expired, ["bob"]);
    assert_eq!(credentials_of(&path, "bob"), 0);
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
        assert_eq!(credentials_of(&path, nick), 1);
    }
}

#[tokio::test]
async fn an_abandoned_registration_takes_its_credential_along() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open(&path, OPTS_MANY, clock()).unwrap();
    assert_eq!(
        login(&store, "carol", "CC:01", 5).await,
        LoginOutcome::Registered
    );
    assert_eq!(credentials_of(&path, "carol"), 1);
    store.abandon_registration("carol", "CC:01", 5).unwrap();
    // Applied in the store's order: the nick is free again.
    assert_eq!(
        reply(store.check_login("carol", "CC:01")).await,
        LoginOutcome::Registered
    );
    assert_eq!(credentials_of(&path, "carol"), 0);
    assert_eq!(
        login(&store, "carol", "DD:02", 6).await,
        LoginOutcome::Registered
    );
    assert_eq!(
        login(&store, "carol", "CC:01", 7).await,
        LoginOutcome::Taken
    );
}

#[tokio::test]
async fn a_registration_never_inherits_a_credential_left_without_its_account() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open(&path, OPTS_MANY, clock()).unwrap();
    // A row no deletion should leave (every one takes them along), as if one had.
    add_credential(&store, "zed", "ZZ:old", 1);
    assert_eq!(
        login(&store, "zed", "ZZ:new", 2).await,
        LoginOutcome::Registered
    );
    assert_eq!(login(&store, "zed", "ZZ:old", 3).await, LoginOutcome::Taken);
    assert_eq!(credentials_of(&path, "zed"), 1);
}
