//! The key directory (schema 5), on both backends: a one-time prekey is handed out once (also
//! under concurrent takes and across a reopen), the newest 200 are kept, a new identity drops
//! the old one-time prekeys, the device check, and keys go with their account.

use super::*;
use crate::store::tests::keys::{answer, publish, register, take, token, upload, NONE};
use crate::store::{Store, Taken};

#[test]
fn an_account_released_by_the_operator_loses_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let (store, _) = SqliteStore::open(&path, OPTS_MANY, clock()).unwrap();
        register(&store, "bob").await;
        publish(&store, "bob", upload(1, 0..3, NONE, token(1))).await;
        reply(store.close(0)).await;
        store.join();
    });
    drop(rt);
    assert!(SqliteStore::release(&path, "Bob").unwrap());
    let conn = Connection::open(&path).unwrap();
    let rows: i64 = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM prekeys) + (SELECT COUNT(*) FROM one_time_prekeys)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn a_store_of_schema_4_gains_the_key_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        schema::migrate_to(&mut conn, 4).unwrap();
        conn.execute(
            "INSERT INTO accounts (nick_key, nick, fingerprint, created_ms, last_seen_ms, skeleton, returned_ms)
             VALUES ('bob', 'bob', 'fp-bob', 1, 1, 'bob', 1)",
            [],
        )
        .unwrap();
    }
    let (store, _) = SqliteStore::open(&path, OPTS_MANY, clock()).unwrap();
    assert_eq!(answer(store.take_bundle("bob", true)).await, Taken::NoKeys);
    publish(&store, "bob", upload(1, 0..1, NONE, token(1))).await;
    assert_eq!(take(&store, "bob").await, (Some(0), 0));
    reply(store.close(0)).await;
    store.join();
    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION);
}
