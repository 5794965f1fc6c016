//! Accounts: look-alikes, atomic logins, undoing registrations, expiry.

use super::*;

/// A store file as schema version 2 left it, with these (nick, fingerprint) accounts.
fn schema_2_store(path: &Path, accounts: &[(&str, &str)]) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE accounts (nick_key TEXT PRIMARY KEY, nick TEXT NOT NULL,
             fingerprint TEXT NOT NULL, created_ms INTEGER NOT NULL,
             last_seen_ms INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE history (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL,
             sender TEXT NOT NULL, text TEXT NOT NULL);
         CREATE TABLE mailbox (id INTEGER PRIMARY KEY, to_key TEXT NOT NULL,
             ts INTEGER NOT NULL, sender TEXT NOT NULL, text TEXT NOT NULL, payload BLOB);
         CREATE INDEX mailbox_by_recipient ON mailbox (to_key, id);
         CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
         PRAGMA user_version = 2;",
    )
    .unwrap();
    for (nick, fp) in accounts {
        conn.execute(
            "INSERT INTO accounts VALUES (?1, ?2, ?3, 5, 7)",
            [&nick.to_ascii_lowercase(), *nick, *fp],
        )
        .unwrap();
    }
}

#[tokio::test]
async fn the_migration_fills_skeletons_and_registered_look_alikes_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    schema_2_store(
        &path,
        &[("alice", "fp-a"), ("aIice", "fp-m"), ("bob", "fp-b")],
    );
    let (store, _) = SqliteStore::open(&path, OPTS_MANY, clock()).unwrap();
    let skeletons: Vec<(String, String)> = {
        let conn = Connection::open(&path).unwrap();
        let mut stmt = conn
            .prepare("SELECT nick, skeleton FROM accounts ORDER BY nick_key")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        rows
    };
    assert_eq!(
        skeletons,
        [
            ("aIice".to_string(), "allce".to_string()),
            ("alice".into(), "allce".into()),
            ("bob".into(), "bob".into())
        ]
    );
    // Both registered look-alikes log in; a new one is refused; nobody's account is unused.
    assert_eq!(
        login(&store, "alice", "fp-a", 10).await,
        LoginOutcome::Known
    );
    assert_eq!(
        login(&store, "AIICE", "fp-m", 10).await,
        LoginOutcome::Known
    );
    assert!(matches!(
        login(&store, "a1ice", "fp-x", 10).await,
        LoginOutcome::LooksLike(n) if n == "alice" || n == "AIICE"
    ));
    reply(store.close(0)).await;
    store.join();
    drop(store);
    let accounts = SqliteStore::list_accounts(&path).unwrap();
    assert_eq!(accounts.len(), 3);
    assert_eq!(account(&accounts, "bob").unwrap().returned_ms, Some(7));
}

#[tokio::test]
async fn a_login_that_fails_part_way_keeps_nothing_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open(&path, OPTS, clock()).unwrap(); // at most 3 accounts
                                                                       // A mailbox row that cannot be read (its time is not a number): reading carol's mailbox
                                                                       // fails on its own, after her registration was written in the same login.
    store.on_writer(|w| {
        w.backend.conn
            .execute(
                "INSERT INTO mailbox (id, to_key, ts, sender, text) VALUES (1, 'carol', 'x', 'a', 'b')",
                [],
            )
            .unwrap();
    });
    assert!(matches!(
        store
            .login("carol", "fp-c", 1, true)
            .unwrap()
            .await
            .unwrap(),
        Err(StoreError::Failed(_))
    ));
    assert!(!store.is_failing());
    assert!(account(&SqliteStore::list_accounts(&path).unwrap(), "carol").is_none());
    // The running count did not move: three accounts still fit.
    for nick in ["a", "b", "c"] {
        assert_eq!(login(&store, nick, "fp", 2).await, LoginOutcome::Registered);
    }
    assert_eq!(login(&store, "d", "fp", 2).await, LoginOutcome::Full);
}
