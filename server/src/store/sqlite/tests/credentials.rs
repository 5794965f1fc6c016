//! Credentials: an account holds a set of them (one today), in their own table; a login is
//! the owner's if its credential is one of them, and they go wherever their account goes.

use mm_common::confusable::skeleton;

use super::*;
use crate::store::{Credential, CredentialKind};

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
