//! Rooms: their changes through close and reopen, per-room history, the migration of a store
//! from before rooms, and `mm-server rooms` with and without a server holding the store.

use mm_common::protocol::{Modes, Role};

use super::*;
use crate::store::writer::{Backend, BatchStore};
use crate::store::{MemberRecord, RoomChange, RoomId, RoomRecord};
use mm_common::protocol::nick_key;

pub(crate) fn member(nick: &str, role: Role, seen: u64) -> MemberRecord {
    MemberRecord {
        key: nick_key(nick),
        nick: nick.into(),
        role,
        seen,
    }
}

/// A room created at ms 100 by `members` (the first its owner), with nothing else set.
pub(crate) fn room(id: u64, name: &str, members: Vec<MemberRecord>) -> RoomRecord {
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
pub(crate) fn said(room: u64, id: u64, text: &str) -> Line {
    Line {
        room: RoomId(room),
        ..line(id, "alice", text)
    }
}

pub(crate) async fn change(store: &dyn Store, change: RoomChange) {
    reply(store.room(change)).await;
}

pub(crate) async fn closed<B: Backend>(store: BatchStore<B>) {
    reply(store.close(0)).await;
    store.join();
}

/// What a start finds in the store at `path`.
pub(crate) fn reopen<P: Place>(place: &P, opts: Options) -> Loaded {
    let (store, loaded) = place.open(opts, clock()).unwrap();
    store.stop();
    loaded
}

pub(crate) fn line_ids(lines: &[Line]) -> Vec<u64> {
    lines.iter().map(|l| l.id).collect()
}

async fn rooms_and_every_change_to_them_survive_close_and_reopen<P: Place>() {
    let place = P::new();
    let (store, loaded) = place.open(OPTS_LONG, clock()).unwrap();
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

    let loaded = reopen(&place, OPTS_LONG);
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
    assert_eq!(place.count("room_members WHERE room = 7"), 0);
    assert_eq!(place.count("room_bans WHERE room = 7"), 0);
    assert_eq!(place.count("history WHERE room = 7"), 0);
}

async fn a_room_created_twice_is_refused_alone_and_the_rest_of_its_batch_commits<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS, clock()).unwrap();
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
    assert_eq!(place.count("room_members WHERE key = 'b'"), 0);
    assert_eq!(
        line_ids(&reply(store.room_history(RoomId(2), 10)).await),
        [9]
    );
}

async fn each_room_keeps_its_own_newest_lines<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS, clock()).unwrap(); // history_len 3
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

    let loaded = reopen(&place, OPTS);
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
    assert_eq!(place.count("history"), 3 + 2 + 3);
}

async fn room_history_answers_as_of_its_place_in_the_store_order<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS_LONG, clock()).unwrap();
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

async fn room_history_never_answers_more_than_a_room_keeps<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS, clock()).unwrap(); // history_len 3
    let paused = store.pause();
    for id in 1..=5 {
        store.append_public(said(2, id, "x")).unwrap();
    }
    let read = store.room_history(RoomId(2), 100).unwrap();
    drop(paused);
    assert_eq!(line_ids(&read.await.unwrap().unwrap()), [3, 4, 5]);
}

async fn ten_thousand_rooms_load_quickly<P: Place>() {
    let place = P::new();
    let (store, _) = place.open(OPTS_LONG, clock()).unwrap();
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
    let loaded = reopen(&place, OPTS_LONG);
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

async fn room_changes_are_refused_while_the_store_fails_and_accepted_ones_are_kept<P: Place>() {
    let place = P::new();
    let (store, _) = place.open_tuned(OPTS_LONG, clock(), FAST).unwrap();
    let lock = place.hold();
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
    let loaded = reopen(&place, OPTS_LONG);
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

async fn room_history_is_read_while_the_store_fails_unless_a_held_line_is_the_room_s<P: Place>() {
    let place = P::new();
    let (store, _) = place.open_tuned(OPTS_LONG, clock(), FAST).unwrap();
    reply(store.append_public(said(2, 1, "stored"))).await;
    reply(store.append_public(said(3, 2, "stored"))).await;
    let lock = place.hold();
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

on_both!(
    async: [
        room_changes_are_refused_while_the_store_fails_and_accepted_ones_are_kept,
        room_history_is_read_while_the_store_fails_unless_a_held_line_is_the_room_s,
        rooms_and_every_change_to_them_survive_close_and_reopen,
        a_room_created_twice_is_refused_alone_and_the_rest_of_its_batch_commits,
        each_room_keeps_its_own_newest_lines,
        room_history_answers_as_of_its_place_in_the_store_order,
        room_history_never_answers_more_than_a_room_keeps,
        ten_thousand_rooms_load_quickly,
    ],
    sync: [],
);
