//! Rooms: their changes through close and reopen, per-room history, the migration of a store
//! from before rooms, and `mm-server rooms` with and without a server holding the store.

use mm_common::protocol::Role;

use super::*;
use crate::store::tests::rooms::{change, closed, line_ids, member, room, said};
use crate::store::{RoomChange, RoomId, RoomRecord, RoomRequest};

/// Rows of `table` in the file at `path`.
fn count(path: &Path, table: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_store_from_before_rooms_keeps_its_history_as_the_lobby_s() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        schema::migrate_to(&mut conn, 3).unwrap();
        for id in 1..=4_i64 {
            conn.execute(
                "INSERT INTO history (id, ts, sender, text) VALUES (?1, ?2, 'alice', ?3)",
                rusqlite::params![id, 1000 + id, format!("old {id}")],
            )
            .unwrap();
        }
        conn.execute_batch("INSERT INTO meta (key, value) VALUES ('last_id', 9)")
            .unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 3);
    }
    let (store, loaded) = SqliteStore::open(&path, OPTS, clock()).unwrap(); // history_len 3
    assert_eq!(
        loaded.history,
        [2, 3, 4].map(|id| line(id, "alice", &format!("old {id}")))
    );
    assert!(loaded.rooms.is_empty() && loaded.room_history.is_empty());
    assert_eq!(loaded.last_room_id, 1);
    assert_eq!(loaded.last_id, 9);
    // The migrated lines are trimmed with the lobby's, not with another room's.
    change(&store, RoomChange::Create(room(2, "#new", vec![]))).await;
    reply(store.append_public(said(2, 10, "new room"))).await;
    reply(store.append_public(line(11, "bob", "lobby"))).await;
    closed(store).await;
    let loaded = reopen_at(&path, OPTS);
    assert_eq!(line_ids(&loaded.history), [3, 4, 11]);
    assert_eq!(line_ids(&loaded.room_history[0].1), [10]);
    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION); // and on through the later migrations
}

/// A store file at `path` holding #Dev (id 5: alice its owner, bob, 2 lines) and #ops (id 6:
/// carol), not in use.
async fn two_rooms(path: &Path) {
    let (store, _) = SqliteStore::open(path, OPTS_LONG, clock()).unwrap();
    let mut dev = room(
        5,
        "#Dev",
        vec![
            member("alice", Role::Owner, 0),
            member("Bob", Role::Member, 0),
        ],
    );
    dev.topic = "the \x1b[2Jtopic".into();
    dev.modes.moderated = true;
    change(&store, RoomChange::Create(dev)).await;
    change(
        &store,
        RoomChange::Create(room(6, "#ops", vec![member("carol", Role::Owner, 0)])),
    )
    .await;
    reply(store.append_public(said(5, 1, "one"))).await;
    reply(store.append_public(said(5, 2, "two"))).await;
    closed(store).await;
}

fn role_of(rooms: &[RoomRecord], room: &str, key: &str) -> Option<Role> {
    rooms
        .iter()
        .find(|r| r.name == room)?
        .members
        .iter()
        .find(|m| m.key == key)
        .map(|m| m.role)
}

const NO_WAIT: Duration = Duration::from_millis(0);

#[tokio::test]
async fn rooms_are_listed_and_changed_in_the_file_when_no_server_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    two_rooms(&path).await;

    let rooms = SqliteStore::list_rooms(&path).unwrap();
    assert_eq!(
        rooms.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["#Dev", "#ops"]
    );
    assert_eq!(rooms[0].members.len(), 2);

    // Plain-word refusals, and nothing changed.
    let err = SqliteStore::set_room_owner(&path, "#dev", "dave", NO_WAIT).unwrap_err();
    assert!(matches!(err, RoomAdminError::NotAMember { .. }), "{err}");
    assert_eq!(err.to_string(), "dave is not a member of #Dev");
    let err = SqliteStore::delete_room(&path, "#nope", NO_WAIT).unwrap_err();
    assert_eq!(err.to_string(), "no such room: #nope");
    let err = SqliteStore::delete_room(&path, "#LOBBY", NO_WAIT).unwrap_err();
    assert!(matches!(err, RoomAdminError::Lobby), "{err}");
    let err = SqliteStore::delete_room(&path, "#a b", NO_WAIT).unwrap_err();
    assert!(matches!(err, RoomAdminError::BadName(_)), "{err}");
    assert_eq!(
        SqliteStore::set_room_owner(&path, "dev", "ALICE", NO_WAIT).unwrap(),
        RoomAdmin::AlreadyOwner {
            name: "#Dev".into(),
            nick: "alice".into()
        }
    );

    // bob (any case, room without its #) becomes the owner; alice an operator.
    assert_eq!(
        SqliteStore::set_room_owner(&path, "DEV", "bob", NO_WAIT).unwrap(),
        RoomAdmin::OwnerSet {
            name: "#Dev".into(),
            nick: "Bob".into(),
            previous: vec!["alice".into()]
        }
    );
    let rooms = SqliteStore::list_rooms(&path).unwrap();
    assert_eq!(role_of(&rooms, "#Dev", "bob"), Some(Role::Owner));
    assert_eq!(role_of(&rooms, "#Dev", "alice"), Some(Role::Op));
    assert_eq!(role_of(&rooms, "#ops", "carol"), Some(Role::Owner));

    assert_eq!(
        SqliteStore::delete_room(&path, "#dev", NO_WAIT).unwrap(),
        RoomAdmin::Deleted {
            name: "#Dev".into(),
            members: 2,
            lines: 2
        }
    );
    assert!(matches!(
        SqliteStore::delete_room(&path, "#dev", NO_WAIT),
        Err(RoomAdminError::NoSuchRoom(_))
    ));
    // A server starts on it afterwards (the command let go of the lock): #ops only, no
    // request left for it, and the deleted room's id stays given.
    let (store, loaded) = SqliteStore::open(&path, OPTS_LONG, clock()).unwrap();
    assert_eq!(
        loaded.rooms.iter().map(|r| r.id).collect::<Vec<_>>(),
        [RoomId(6)]
    );
    assert!(loaded.room_history.is_empty());
    assert_eq!(loaded.last_room_id, 6);
    assert!(reply(store.admin_requests()).await.is_empty());
}

#[tokio::test]
async fn a_request_queued_while_a_server_holds_the_store_is_taken_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    two_rooms(&path).await;
    let (store, _) = SqliteStore::open(&path, OPTS_LONG, clock()).unwrap();

    let p = path.clone();
    let (delete, owner, refused) = tokio::task::spawn_blocking(move || {
        (
            SqliteStore::delete_room(&p, "#ops", Duration::from_millis(100)),
            SqliteStore::set_room_owner(&p, "#dev", "BOB", Duration::from_millis(100)),
            SqliteStore::set_room_owner(&p, "#dev", "dave", Duration::from_millis(100)),
        )
    })
    .await
    .unwrap();
    // Nobody took them: queued, and the file unchanged.
    assert_eq!(
        delete.unwrap(),
        RoomAdmin::Queued {
            name: "#ops".into()
        }
    );
    assert_eq!(
        owner.unwrap(),
        RoomAdmin::Queued {
            name: "#Dev".into()
        }
    );
    assert!(matches!(refused, Err(RoomAdminError::NotAMember { .. })));
    let rooms = SqliteStore::list_rooms(&path).unwrap();
    assert_eq!(rooms.len(), 2);
    assert_eq!(role_of(&rooms, "#Dev", "bob"), Some(Role::Member));

    assert_eq!(
        reply(store.admin_requests()).await,
        [
            RoomRequest::Delete {
                room_key: "#ops".into()
            },
            RoomRequest::SetOwner {
                room_key: "#dev".into(),
                nick: "BOB".into()
            }
        ]
    );
    assert!(reply(store.admin_requests()).await.is_empty());
    closed(store).await;
    assert_eq!(count(&path, "room_requests"), 0);
}

#[tokio::test]
async fn a_request_left_by_a_server_that_stopped_waits_for_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    two_rooms(&path).await;
    let (store, loaded) = SqliteStore::open(&path, OPTS_LONG, clock()).unwrap();
    assert_eq!(loaded.rooms.len(), 2);
    let p = path.clone();
    let queued = tokio::task::spawn_blocking(move || SqliteStore::delete_room(&p, "ops", NO_WAIT))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(queued, RoomAdmin::Queued { .. }));
    closed(store).await;
    drop(loaded);
    // The next start does not apply it (the hub does, at its first look).
    let (store, loaded) = SqliteStore::open(&path, OPTS_LONG, clock()).unwrap();
    assert_eq!(loaded.rooms.len(), 2);
    assert_eq!(
        reply(store.admin_requests()).await,
        [RoomRequest::Delete {
            room_key: "#ops".into()
        }]
    );
}

#[tokio::test]
async fn the_command_says_applied_once_the_running_server_has_done_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    two_rooms(&path).await;
    let (store, loaded) = SqliteStore::open(&path, OPTS_LONG, clock()).unwrap();
    let store = Arc::new(store);
    let ids: std::collections::HashMap<String, RoomId> = loaded
        .rooms
        .iter()
        .map(|r| (mm_common::protocol::room_key(&r.name), r.id))
        .collect();
    // A stand-in for the hub: looks for requests and applies deletions only.
    let hub = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            loop {
                for request in reply(store.admin_requests()).await {
                    if let RoomRequest::Delete { room_key } = request {
                        reply(store.room(RoomChange::Delete(ids[&room_key]))).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let p = path.clone();
    let (deleted, owner) = tokio::task::spawn_blocking(move || {
        (
            SqliteStore::delete_room(&p, "#ops", Duration::from_secs(10)),
            SqliteStore::set_room_owner(&p, "#dev", "bob", Duration::from_millis(500)),
        )
    })
    .await
    .unwrap();
    hub.abort();
    assert_eq!(
        deleted.unwrap(),
        RoomAdmin::AppliedByServer {
            name: "#ops".into()
        }
    );
    // Taken but not done (this stand-in ignores it): not claimed as applied.
    assert_eq!(
        owner.unwrap(),
        RoomAdmin::TakenByServer {
            name: "#Dev".into()
        }
    );
    let rooms = SqliteStore::list_rooms(&path).unwrap();
    assert_eq!(
        rooms.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["#Dev"]
    );
}

/// What a start finds in the store at `path`.
fn reopen_at(path: &Path, opts: Options) -> Loaded {
    let (store, loaded) = SqliteStore::open(path, opts, clock()).unwrap();
    drop(store);
    loaded
}
