//! The key directory on SQLite only: the migration that adds it (the behaviour tests of the
//! key directory are in `store/tests/keys.rs`, on both backends).

use super::*;
use crate::store::tests::keys::{answer, publish, take, token, upload, NONE};
use crate::store::{Store, Taken};

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
