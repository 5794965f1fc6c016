//! Rooms: their changes through close and reopen, per-room history, the migration of a store
//! from before rooms, and `mm-server rooms` with and without a server holding the store.

use mm_common::protocol::{Modes, Role};

use super::*;
use crate::store::{MemberRecord, RoomChange, RoomId, RoomRecord, RoomRequest};

fn member(nick: &str, role: Role, seen: u64) -> MemberRecord {
    MemberRecord {
        key: nick_key(nick),
        nick: nick.into(),
        role,
        seen,
    }
}

/// A room created at ms 100 by `members` (the first its owner), with nothing else set.
fn room(id: u64, name: &str, members: Vec<MemberRecord>) -> RoomRecord {
    RoomRecord {
        id: RoomId(id),
        name: name.into(),
        topic: String::new(),
        topic_by: String::new(),
        topic_ts: 0,
        modes: Modes::default(),
        created_ms: 100,
        active_ms: 100,
        members,
        bans: Vec::new(),
        invites: Vec::new(),
    }
}

/// A line of room `room`.
fn said(room: u64, id: u64, text: &str) -> Line {
    Line {
        room: RoomId(room),
        ..line(id, "alice", text)
    }
}

async fn change(store: &SqliteStore, change: RoomChange) {
    reply(store.room(change)).await;
}

async fn closed(store: SqliteStore) {
    reply(store.close(0)).await;
    store.join();
}

/// What a start finds in the store at `path`.
fn reopen(path: &Path, opts: Options) -> Loaded {
    let (store, loaded) = SqliteStore::open(path, opts, clock()).unwrap();
    drop(store);
    loaded
}

fn line_ids(lines: &[Line]) -> Vec<u64> {
    lines.iter().map(|l| l.id).collect()
}

/// Rows of `table` in the file at `path`.
fn count(path: &Path, table: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn rooms_and_every_change_to_them_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, loaded) = SqliteStore::open(&path, OPTS_LONG, clock()).unwrap();
    assert!(loaded.rooms.is_empty() && loaded.room_history.is_empty());
    assert_eq!(loaded.last_room_id, 1);

    let mut dev = room(5, "#Dev", vec![member("Alice", Role::Owner, 0)]);
    dev.bans = vec!["eve".into()];
    dev.invites = vec!["carol".into()];
    change(&store, RoomChange::Create(dev)).await;
    change(&store, RoomChange::Create(room(7, "#ops", vec![]))).await;
    // bob joins and is made an operator (the second Join replaces his standing).
    change(
        &store,
        RoomChange::Join(RoomId(5), member("Bob", Role::Member, 3)),
    )
    .await;
    change(
        &store,
        RoomChange::Join(RoomId(5), member("Bob", Role::Op, 4)),
    )
    .await;
    // carol's invitation is used up by her joining; dave's stays.
    change(&store, RoomChange::Invite(RoomId(5), "dave".into(), true)).await;
    change(
        &store,
        RoomChange::Join(RoomId(5), member("carol", Role::Voiced, 0)),
    )
    .await;
    // frank joins and leaves.
    change(
        &store,
        RoomChange::Join(RoomId(5), member("frank", Role::Member, 0)),
    )
    .await;
    change(&store, RoomChange::Part(RoomId(5), "frank".into())).await;
    change(&store, RoomChange::Ban(RoomId(5), "mallory".into(), true)).await;
    change(&store, RoomChange::Ban(RoomId(5), "eve".into(), false)).await;
    change(
        &store,
        RoomChange::Topic(RoomId(5), "Shipping v5".into(), "Bob".into(), 250),
    )
    .await;
    let modes = Modes {
        invite_only: true,
        topic_ops: true,
        moderated: false,
    };
    change(&store, RoomChange::Modes(RoomId(5), modes)).await;
    change(
        &store,
        RoomChange::Seen(vec![
            (RoomId(5), "alice".into(), 41),
            (RoomId(5), "bob".into(), 42),
        ]),
    )
    .await;
    change(&store, RoomChange::Active(RoomId(5), 300)).await;
    change(&store, RoomChange::Active(RoomId(5), 200)).await; // never back in time
    reply(store.append_public(said(5, 40, "in dev"))).await;
    reply(store.append_public(said(7, 41, "in ops"))).await;
    // #ops goes, with its line; a change to it afterwards is ignored.
    change(&store, RoomChange::Delete(RoomId(7))).await;
    change(
        &store,
        RoomChange::Join(RoomId(7), member("bob", Role::Owner, 0)),
    )
    .await;
    change(&store, RoomChange::Ban(RoomId(7), "eve".into(), true)).await;
    closed(store).await;

    let loaded = reopen(&path, OPTS_LONG);
    let mut expected = room(
        5,
        "#Dev",
        vec![
            member("Alice", Role::Owner, 41),
            member("Bob", Role::Op, 42),
            member("carol", Role::Voiced, 0),
        ],
    );
    expected.topic = "Shipping v5".into();
    expected.topic_by = "Bob".into();
    expected.topic_ts = 250;
    expected.modes = modes;
    expected.active_ms = 300;
    expected.bans = vec!["mallory".into()];
    expected.invites = vec!["dave".into()];
    assert_eq!(loaded.rooms, [expected]);
    assert_eq!(
        loaded.room_history,
        [(RoomId(5), vec![said(5, 40, "in dev")])]
    );
    // The deleted room's id stays given; nothing of it is left.
    assert_eq!(loaded.last_room_id, 7);
    assert_eq!(loaded.last_id, 41);
    assert_eq!(count(&path, "room_members WHERE room = 7"), 0);
    assert_eq!(count(&path, "room_bans WHERE room = 7"), 0);
    assert_eq!(count(&path, "history WHERE room = 7"), 0);
}

#[tokio::test]
async fn a_room_created_twice_is_refused_alone_and_the_rest_of_its_batch_commits() {
    let (store, _) = SqliteStore::open_in_memory(OPTS, clock()).unwrap();
    let paused = store.pause();
    let first = store
        .room(RoomChange::Create(room(
            2,
            "#dev",
            vec![member("a", Role::Owner, 0)],
        )))
        .unwrap();
    // Same name in another case: the key is taken.
    let again = store
        .room(RoomChange::Create(room(
            3,
            "#DEV",
            vec![member("b", Role::Owner, 0)],
        )))
        .unwrap();
    let line = store.append_public(said(2, 9, "x")).unwrap();
    drop(paused);
    first.await.unwrap().unwrap();
    assert!(matches!(again.await.unwrap(), Err(StoreError::Failed(_))));
    line.await.unwrap().unwrap();
    // Nothing of the refused one was kept: b is no member of room 3 (or 2).
    store.on_writer(|w| {
        let members: i64 = w
            .backend
            .conn
            .query_row(
                "SELECT COUNT(*) FROM room_members WHERE key = 'b'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(members, 0);
    });
    assert_eq!(
        line_ids(&reply(store.room_history(RoomId(2), 10)).await),
        [9]
    );
}

#[tokio::test]
async fn each_room_keeps_its_own_newest_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open(&path, OPTS, clock()).unwrap(); // history_len 3
    change(&store, RoomChange::Create(room(2, "#a", vec![]))).await;
    change(&store, RoomChange::Create(room(3, "#b", vec![]))).await;
    // Lobby: 1..=5; #a: 6, 7; #b: 8..=11 with an action; some in one batch, some alone.
    let paused = store.pause();
    let mut replies = Vec::new();
    for id in 1..=3 {
        replies.push(store.append_public(line(id, "a", "l")).unwrap());
    }
    for id in [6, 7] {
        replies.push(store.append_public(said(2, id, "a")).unwrap());
    }
    drop(paused);
    for r in replies {
        r.await.unwrap().unwrap();
    }
    for id in [4, 5] {
        reply(store.append_public(line(id, "a", "l"))).await;
    }
    for id in 8..=11 {
        let mut l = said(3, id, "b");
        l.action = id == 10;
        reply(store.append_public(l)).await;
    }
    closed(store).await;

    let loaded = reopen(&path, OPTS);
    assert_eq!(line_ids(&loaded.history), [3, 4, 5]);
    assert!(loaded.history.iter().all(|l| l.room == RoomId::LOBBY));
    let by_room: Vec<(RoomId, Vec<u64>)> = loaded
        .room_history
        .iter()
        .map(|(room, lines)| (*room, line_ids(lines)))
        .collect();
    assert_eq!(
        by_room,
        [(RoomId(2), vec![6, 7]), (RoomId(3), vec![9, 10, 11])]
    );
    let b = &loaded.room_history[1].1;
    assert_eq!(
        b.iter().map(|l| l.action).collect::<Vec<_>>(),
        [false, true, false]
    );
    // Trimmed in the file, not only at loading: at most 3 lines per room.
    assert_eq!(count(&path, "history"), 3 + 2 + 3);
}

#[tokio::test]
async fn room_history_answers_as_of_its_place_in_the_store_order() {
    let (store, _) = SqliteStore::open_in_memory(OPTS_LONG, clock()).unwrap();
    change(&store, RoomChange::Create(room(2, "#a", vec![]))).await;
    // All in one batch: the read sees what was appended before it, and nothing after.
    let paused = store.pause();
    store.append_public(said(2, 1, "one")).unwrap();
    store.append_public(line(2, "lobby", "not #a's")).unwrap();
    store.append_public(said(2, 3, "three")).unwrap();
    let before = store.room_history(RoomId(2), 10).unwrap();
    let newest = store.room_history(RoomId(2), 1).unwrap();
    store.append_public(said(2, 4, "four")).unwrap();
    let after = store.room_history(RoomId(2), 10).unwrap();
    let empty = store.room_history(RoomId(9), 10).unwrap();
    drop(paused);
    assert_eq!(line_ids(&before.await.unwrap().unwrap()), [1, 3]);
    assert_eq!(line_ids(&newest.await.unwrap().unwrap()), [3]);
    let after = after.await.unwrap().unwrap();
    assert_eq!(line_ids(&after), [1, 3, 4]);
    assert_eq!(after[2], said(2, 4, "four"));
    assert!(empty.await.unwrap().unwrap().is_empty());
}

#[tokio::test]
async fn room_history_never_answers_more_than_a_room_keeps() {
    let (store, _) = SqliteStore::open_in_memory(OPTS, clock()).unwrap(); // history_len 3
    let paused = store.pause();
    for id in 1..=5 {
        store.append_public(said(2, id, "x")).unwrap();
    }
    let read = store.room_history(RoomId(2), 100).unwrap();
    drop(paused);
    assert_eq!(line_ids(&read.await.unwrap().unwrap()), [3, 4, 5]);
}

#[tokio::test]
async fn room_changes_are_refused_while_the_store_fails_and_accepted_ones_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open_tuned(&path, OPTS_LONG, clock(), FAST).unwrap();
    let lock = hold_lock(&path);
    let mut held = store
        .room(RoomChange::Create(room(
            2,
            "#kept",
            vec![member("a", Role::Owner, 0)],
        )))
        .unwrap();
    failing(&store).await;
    assert!(matches!(
        store.room(RoomChange::Create(room(3, "#refused", vec![]))),
        Err(StoreError::Busy)
    ));
    assert!(matches!(store.admin_requests(), Err(StoreError::Busy)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(held.try_recv(), Err(TryRecvError::Empty)));
    drop(lock);
    held.await.unwrap().unwrap();
    closed(store).await;
    let loaded = reopen(&path, OPTS_LONG);
    assert_eq!(
        loaded
            .rooms
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["#kept"]
    );
    assert_eq!(loaded.last_room_id, 2);
}

#[tokio::test]
async fn room_history_is_read_while_the_store_fails_unless_a_held_line_is_the_room_s() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open_tuned(&path, OPTS_LONG, clock(), FAST).unwrap();
    reply(store.append_public(said(2, 1, "stored"))).await;
    reply(store.append_public(said(3, 2, "stored"))).await;
    let lock = hold_lock(&path);
    let held = store.append_public(said(2, 3, "held")).unwrap();
    failing(&store).await;
    // Room 3 has nothing held: answered now, from a read.
    assert_eq!(
        line_ids(&reply(store.room_history(RoomId(3), 10)).await),
        [2]
    );
    // Room 2's read waits for the held line, and sees it.
    let mut read = store.room_history(RoomId(2), 10).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(read.try_recv(), Err(TryRecvError::Empty)));
    drop(lock);
    held.await.unwrap().unwrap();
    assert_eq!(line_ids(&read.await.unwrap().unwrap()), [1, 3]);
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
    let loaded = reopen(&path, OPTS);
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

#[tokio::test]
async fn ten_thousand_rooms_load_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (store, _) = SqliteStore::open(&path, OPTS_LONG, clock()).unwrap();
    let mut replies = Vec::new();
    for id in 2..10_002 {
        let mut r = room(
            id,
            &format!("#room{id}"),
            vec![
                member("alice", Role::Owner, 0),
                member("bob", Role::Member, 0),
            ],
        );
        r.bans = vec!["eve".into()];
        replies.push(store.room(RoomChange::Create(r)).unwrap());
        replies.push(store.append_public(said(id, id, "hello")).unwrap());
        if replies.len() >= 4096 {
            for r in replies.drain(..) {
                r.await.unwrap().unwrap();
            }
        }
    }
    for r in replies {
        r.await.unwrap().unwrap();
    }
    closed(store).await;
    let started = Instant::now();
    let loaded = reopen(&path, OPTS_LONG);
    let took = started.elapsed();
    assert_eq!(loaded.rooms.len(), 10_000);
    assert_eq!(loaded.room_history.len(), 10_000);
    assert_eq!(loaded.last_room_id, 10_001);
    assert!(loaded
        .rooms
        .iter()
        .all(|r| r.members.len() == 2 && r.bans == ["eve"]));
    // One query per table: well under a second here, even unoptimised; the bound leaves
    // room for a loaded machine.
    assert!(took < Duration::from_secs(3), "loading took {took:?}");
}
