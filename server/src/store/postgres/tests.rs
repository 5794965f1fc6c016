//! What only the PostgreSQL store has: its link (TLS off loopback, no password in the URL),
//! the connection lost or refused (made again, nothing accepted lost), its lock and its
//! schema version. The behaviour tests of every backend are in `store/tests`.

use std::time::Duration;

use tokio::sync::oneshot::error::TryRecvError;

use super::*;
use crate::store::tests::{
    clock, failing, ids, line, login, mail, reply, Place, Postgres, FAST, OPTS_LONG,
};
use crate::store::{Arrival, QueueOutcome, Store};

#[test]
fn off_loopback_the_link_must_be_tls_and_plain_is_refused_before_connecting() {
    for url in [
        "postgres://mm@db.example.org/chat",
        "postgres://mm@192.0.2.7:5432/chat",
        "postgresql://mm@[2001:db8::1]:5432/chat?sslmode=require",
        "postgres://mm@db.example.org/chat?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        // A loopback name with a remote address to connect to.
        "postgres://mm@localhost/chat?hostaddr=192.0.2.7",
    ] {
        let target = PgTarget::parse(url).unwrap();
        assert!(target.tls(), "{url} must use TLS");
    }
    for url in [
        "postgres://mm@db.example.org/chat?sslmode=disable",
        "postgres://mm@192.0.2.7/chat?sslmode=prefer",
        "postgres://mm@192.0.2.7/chat?sslmode=allow",
    ] {
        let err = PgTarget::parse(url).unwrap_err();
        assert!(err.contains("must use TLS"), "{url}: {err}");
    }
    // Plain only on this machine.
    for url in [
        "postgres://mm@127.0.0.1:5432/chat",
        "postgres://mm@127.1.2.3/chat",
        "postgres://mm@localhost/chat",
        "postgres://mm@[::1]:5432/chat",
        "postgres://mm@%2Frun%2Fpostgresql/chat",
    ] {
        let target = PgTarget::parse(url).unwrap();
        assert!(!target.tls(), "{url} may be plain");
    }
    assert!(
        PgTarget::parse("postgres://mm@localhost/chat?sslmode=verify-full")
            .unwrap()
            .tls()
    );
}

#[test]
fn an_off_loopback_store_without_a_trusted_root_is_not_connected_to_in_plain() {
    // A root file that holds no certificate: refused before any connection is tried.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("empty.pem");
    std::fs::write(&root, "").unwrap();
    let url = format!(
        "postgres://mm@192.0.2.7:5432/chat?sslrootcert={}",
        root.display()
    );
    let target = PgTarget::parse(&url).unwrap();
    let err = target.tls_config().unwrap_err();
    assert!(err.contains("no CA certificate"), "{err}");
}

#[test]
fn a_password_in_the_url_is_refused_and_never_repeated() {
    for url in [
        "postgres://mm:s3cr3t@127.0.0.1:5432/chat",
        "postgres://mm@127.0.0.1:5432/chat?password=s3cr3t",
    ] {
        let err = PgTarget::parse(url).unwrap_err();
        assert!(err.contains("MM_STORE_PASSWORD"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }
    let mut target = PgTarget::parse("postgres://mm@127.0.0.1:5432/chat").unwrap();
    target.set_password(b"s3cr3t");
    let shown = format!("{target} {target:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
}

#[tokio::test]
async fn a_second_server_on_the_database_is_refused_with_the_locked_words() {
    let place = Postgres::new();
    let (first, _) = place.open(OPTS_LONG, clock()).unwrap();
    let err = place.open(OPTS_LONG, clock()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("in use by another"), "{err}");
    // Once the first is gone, its lock is too.
    reply(first.close(0)).await;
    first.join();
    let (second, _) = place.open(OPTS_LONG, clock()).unwrap();
    reply(second.close(0)).await;
}

#[tokio::test]
async fn a_database_of_a_newer_schema_is_refused() {
    let place = Postgres::new();
    {
        let (store, _) = place.open(OPTS_LONG, clock()).unwrap();
        reply(store.close(0)).await;
        store.join();
    }
    let url = crate::store::tests::with_db(&crate::store::tests::test_server(), &place.name);
    off_runtime(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute("UPDATE schema_version SET version = 99")
            .unwrap();
    });
    let err = place.open(OPTS_LONG, clock()).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
}

/// The sessions of mm-server on the test database.
fn sessions(place: &Postgres) -> Vec<i32> {
    let name = place.name.clone();
    place.admin(move |c| {
        c.query(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = $1 AND application_name = 'mm-server'",
            &[&name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    })
}

/// Ends every session on the test database but the caller's (as a server restart or a
/// network cut would).
fn kill_sessions(place: &Postgres) {
    let name = place.name.clone();
    place.admin(move |c| {
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .unwrap();
    });
}

#[tokio::test]
async fn the_connection_killed_mid_stream_is_made_again_and_nothing_accepted_is_lost() {
    let place = Postgres::new();
    let (store, _) = place.open_tuned(OPTS_LONG, clock(), FAST).unwrap();
    login(&store, "bob", "fp-b", 1).await;
    reply(store.append_public(line(1, "a", "before"))).await;
    // Lines accepted while the writer is held, then the connection is killed under them.
    let paused = store.pause();
    let public: Vec<_> = (2..=20)
        .map(|id| store.append_public(line(id, "a", "l")).unwrap())
        .collect();
    let queued = store
        .queue_mail("bob", mail(21, "a", "m"), Arrival::Offline)
        .unwrap();
    let before = sessions(&place);
    assert_eq!(before.len(), 1, "{before:?}");
    kill_sessions(&place);
    drop(paused);
    for r in public {
        r.await.unwrap().unwrap();
    }
    assert_eq!(queued.await.unwrap().unwrap(), QueueOutcome::Queued);
    assert_eq!(ids(&reply(store.waiting("bob")).await), [21]);
    assert!(!store.is_failing());
    let after = sessions(&place);
    assert!(
        after.len() == 1 && after != before,
        "a new session: {before:?} then {after:?}"
    );
    // Its lock was taken again with the new session: a second server is still refused.
    assert!(matches!(
        place.open(OPTS_LONG, clock()).unwrap_err(),
        StoreError::Locked { .. }
    ));
    reply(store.close(21)).await;
    store.join();
    let (store, loaded) = place.open(OPTS_LONG, clock()).unwrap();
    assert_eq!(
        loaded.history.iter().map(|l| l.id).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert_eq!(loaded.last_id, 21);
    reply(store.close(0)).await;
}

/// The lock is the session's: when the first server's session is gone, a second server can
/// open the database. The first must then never write it again (its ids, rooms and accounts in
/// memory are stale: its lines would land out of order, or be judged committed by the second's
/// batch counter), even after the second is gone.
#[tokio::test]
async fn a_server_whose_session_was_lost_while_another_opened_the_database_never_writes_it_again() {
    let place = Postgres::new();
    let (first, _) = place.open_tuned(OPTS_LONG, clock(), FAST).unwrap();
    login(&first, "bob", "fp-b", 1).await;
    reply(first.append_public(line(1, "a", "first"))).await;
    kill_sessions(&place);
    let (second, loaded) = place.open(OPTS_LONG, clock()).unwrap();
    assert_eq!(loaded.last_id, 1);
    reply(second.append_public(line(1000, "b", "second"))).await;
    reply(second.close(1000)).await;
    second.join();
    // The first reconnects, finds another server's mark, and stops writing for good.
    let stale = first.append_public(line(2, "a", "stale")).unwrap();
    failing(&first).await;
    assert!(matches!(
        first.append_public(line(3, "a", "refused")),
        Err(StoreError::Busy)
    ));
    let closed = first.close(3).unwrap();
    assert!(matches!(
        stale.await.unwrap(),
        Err(StoreError::NotStored { lines: 1, .. })
    ));
    assert!(matches!(
        closed.await.unwrap(),
        Err(StoreError::NotStored { .. })
    ));
    first.join();
    let (third, loaded) = place.open(OPTS_LONG, clock()).unwrap();
    assert_eq!(
        loaded.history.iter().map(|l| l.id).collect::<Vec<_>>(),
        [1, 1000]
    );
    reply(third.close(0)).await;
}

#[tokio::test]
async fn while_the_database_refuses_connections_writes_are_busy_then_it_comes_back() {
    let place = Postgres::new();
    let (store, _) = place.open_tuned(OPTS_LONG, clock(), FAST).unwrap();
    login(&store, "bob", "fp-b", 1).await;
    let name = place.name.clone();
    place.admin(move |c| {
        c.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
            .unwrap();
    });
    kill_sessions(&place);
    // Accepted, then held: the writer cannot connect.
    let held = store.append_public(line(1, "a", "held")).unwrap();
    failing(&store).await;
    let mut held = held;
    assert!(matches!(held.try_recv(), Err(TryRecvError::Empty)));
    // New writes are refused at once, not queued.
    assert!(matches!(
        store.append_public(line(2, "a", "refused")),
        Err(StoreError::Busy)
    ));
    assert!(matches!(
        store.queue_mail("bob", mail(3, "a", "refused"), Arrival::Offline),
        Err(StoreError::Busy)
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let name = place.name.clone();
    place.admin(move |c| {
        c.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            .unwrap();
    });
    // Back: the held line is stored and answered, and writes are taken again.
    tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the held line is answered once the database is back")
        .unwrap()
        .unwrap();
    reply(store.append_public(line(4, "a", "after"))).await;
    assert!(!store.is_failing());
    reply(store.close(4)).await;
    store.join();
    let (store, loaded) = place.open(OPTS_LONG, clock()).unwrap();
    assert_eq!(
        loaded.history.iter().map(|l| l.id).collect::<Vec<_>>(),
        [1, 4]
    );
    reply(store.close(0)).await;
}

#[tokio::test]
async fn a_table_locked_by_another_session_is_waited_out_and_new_writes_are_busy_meanwhile() {
    let place = Postgres::new();
    let (store, _) = place.open_tuned(OPTS_LONG, clock(), FAST).unwrap();
    reply(store.append_public(line(1, "a", "before"))).await;
    // Another session holds the history table (as an operator's long transaction could).
    let url = crate::store::tests::with_db(&crate::store::tests::test_server(), &place.name);
    let (locked, is_locked) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut tx = c.transaction().unwrap();
        tx.batch_execute("LOCK TABLE history IN ACCESS EXCLUSIVE MODE")
            .unwrap();
        locked.send(()).unwrap();
        let _ = released.recv();
        tx.commit().unwrap();
    });
    is_locked.recv().unwrap();
    let mut held = store.append_public(line(2, "a", "held")).unwrap();
    failing(&store).await;
    assert!(matches!(held.try_recv(), Err(TryRecvError::Empty)));
    assert!(matches!(
        store.append_public(line(3, "a", "refused")),
        Err(StoreError::Busy)
    ));
    drop(release);
    holder.join().unwrap();
    tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("answered once the lock is gone")
        .unwrap()
        .unwrap();
    assert!(!store.is_failing());
    assert_eq!(
        reply(store.room_history(crate::store::RoomId::LOBBY, 10))
            .await
            .iter()
            .map(|l| l.id)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    reply(store.close(2)).await;
}

#[tokio::test]
async fn a_commit_whose_answer_is_lost_is_not_applied_twice() {
    let place = Postgres::new();
    let (store, _) = place.open_tuned(OPTS_LONG, clock(), FAST).unwrap();
    login(&store, "bob", "fp-b", 1).await;
    // The batch commits, then the connection is lost before its answer arrives.
    store.on_writer(|w| w.backend.lose_at_commit = true);
    let paused = store.pause();
    let queued = store
        .queue_mail("bob", mail(1, "a", "once"), Arrival::Offline)
        .unwrap();
    let public = store.append_public(line(2, "a", "once")).unwrap();
    let registered = store.login("carol", "fp-c", 2, true).unwrap();
    drop(paused);
    // Answered as it went, not failed as a duplicate of itself, nor registered twice.
    assert_eq!(queued.await.unwrap().unwrap(), QueueOutcome::Queued);
    public.await.unwrap().unwrap();
    assert_eq!(
        registered.await.unwrap().unwrap().outcome,
        crate::store::LoginOutcome::Registered
    );
    store.on_writer(|w| assert!(!w.backend.lose_at_commit, "the loss was injected"));
    assert_eq!(ids(&reply(store.waiting("bob")).await), [1]);
    assert_eq!(place.count("mailbox"), 1);
    reply(store.append_public(line(3, "a", "after"))).await;
    reply(store.close(3)).await;
    store.join();
}

/// The test database's target, opened as one node of several.
fn node_target(place: &Postgres) -> PgTarget {
    let mut target = place.target.clone();
    target.set_cluster(true);
    target
}

#[tokio::test]
async fn nodes_of_a_cluster_open_one_new_database_at_once_and_a_lone_server_is_kept_out() {
    let place = Postgres::new();
    let target = node_target(&place);
    // Four nodes start at once on a database without the store's tables: each migrates
    // under the transaction-level lock.
    let start = std::sync::Barrier::new(4);
    let stores: Vec<PgStore> = std::thread::scope(|s| {
        let opening: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    PgStore::open(&target, OPTS_LONG, clock())
                })
            })
            .collect();
        opening
            .into_iter()
            .map(|o| o.join().unwrap().unwrap().0)
            .collect()
    });
    assert_eq!(place.count("schema_version"), 1);
    assert_eq!(
        login(&stores[0], "bob", "fp-b", 1).await,
        crate::store::LoginOutcome::Registered
    );
    assert_eq!(
        login(&stores[1], "carol", "fp-c", 2).await,
        crate::store::LoginOutcome::Registered
    );
    reply(stores[2].append_public(line(1, "a", "from node 2"))).await;
    reply(stores[3].append_public(line(2, "b", "from node 3"))).await;
    assert_eq!(place.count("accounts"), 2);
    assert_eq!(place.count("history"), 2);
    // Each node counts its batches under a key of its own (the one-server key is not used).
    assert_eq!(place.count("meta WHERE key LIKE 'batch_seq.%'"), 4);
    assert_eq!(place.count("meta WHERE key = 'batch_seq'"), 0);
    // A one-server mm-server is refused while nodes hold the database.
    assert!(matches!(
        place.open(OPTS_LONG, clock()).unwrap_err(),
        StoreError::Locked { .. }
    ));
    for store in &stores {
        reply(store.close(2)).await;
        store.join();
    }
    // Closed cleanly: their counters are gone.
    assert_eq!(place.count("meta WHERE key LIKE 'batch_seq.%'"), 0);
    // And a node is refused while a one-server mm-server holds it.
    let (lone, loaded) = place.open(OPTS_LONG, clock()).unwrap();
    assert_eq!(loaded.last_id, 2);
    assert!(matches!(
        PgStore::open(&target, OPTS_LONG, clock()).unwrap_err(),
        StoreError::Locked { .. }
    ));
    reply(lone.close(2)).await;
}

#[tokio::test]
async fn a_lone_server_whose_session_was_lost_while_a_node_opened_the_database_never_writes_it_again(
) {
    let place = Postgres::new();
    let (lone, _) = place.open_tuned(OPTS_LONG, clock(), FAST).unwrap();
    reply(lone.append_public(line(1, "a", "lone"))).await;
    kill_sessions(&place);
    let (node, _) = PgStore::open(&node_target(&place), OPTS_LONG, clock()).unwrap();
    reply(node.append_public(line(1000, "b", "node"))).await;
    reply(node.close(1000)).await;
    node.join();
    // The lone server reconnects, finds another mark, and stops writing for good.
    let stale = lone.append_public(line(2, "a", "stale")).unwrap();
    failing(&lone).await;
    let closed = lone.close(2).unwrap();
    assert!(matches!(
        stale.await.unwrap(),
        Err(StoreError::NotStored { lines: 1, .. })
    ));
    assert!(closed.await.unwrap().is_err());
    lone.join();
    assert_eq!(place.count("history"), 2);
}

#[test]
fn a_failure_at_open_names_what_postgresql_said() {
    let place = Postgres::new();
    // A table of the store's name that is not the store's: the migration cannot make it.
    let url = crate::store::tests::with_db(&crate::store::tests::test_server(), &place.name);
    off_runtime(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute("CREATE TABLE accounts (x INT)").unwrap();
    });
    let err = place.open(OPTS_LONG, clock()).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[tokio::test]
async fn room_changes_of_one_stream_event_are_stored_once_and_never_behind_a_later_one() {
    use crate::store::tests::rooms::{change, member, reopen, room};
    use crate::store::RoomChange;
    use mm_common::protocol::Role;
    let place = Postgres::new();
    let (store, loaded) = place.open(OPTS_LONG, clock()).unwrap();
    assert_eq!(loaded.rooms_applied, 0);
    let topic = |t: &str| RoomChange::Topic(RoomId(5), t.into(), "alice".into(), 1);
    // Node A stores event 10; node B's copy of it (the same id) writes nothing, nor does a
    // slower node's event 8 after it. Event 12 is stored; an empty list records 15.
    let create =
        |id, name| RoomChange::Create(room(id, name, vec![member("alice", Role::Owner, 0)]));
    change(
        &store,
        RoomChange::Ordered(10, vec![create(5, "#a"), topic("ten")]),
    )
    .await;
    change(
        &store,
        RoomChange::Ordered(10, vec![create(6, "#b"), topic("ten again")]),
    )
    .await;
    change(&store, RoomChange::Ordered(8, vec![topic("eight")])).await;
    change(&store, RoomChange::Ordered(12, vec![topic("twelve")])).await;
    change(&store, RoomChange::Ordered(15, Vec::new())).await;
    change(&store, RoomChange::Ordered(14, vec![topic("fourteen")])).await;
    reply(store.close(0)).await;
    store.join();
    let loaded = reopen(&place, OPTS_LONG);
    assert_eq!(loaded.rooms_applied, 15);
    let names: Vec<&str> = loaded.rooms.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["#a"]);
    assert_eq!(loaded.rooms[0].topic, "twelve");
}

#[tokio::test]
async fn on_a_cluster_an_acknowledgement_takes_only_the_lines_given_and_a_late_one_is_not_sent_again(
) {
    let place = Postgres::new();
    let (store, _) = PgStore::open(&node_target(&place), OPTS_LONG, clock()).unwrap();
    login(&store, "bob", "fp-b", 1).await;
    let queue = |id, arrival| store.queue_mail("bob", mail(id, "alice", "hi"), arrival);
    assert_eq!(reply(queue(5, Arrival::Live)).await, QueueOutcome::Queued);
    // bob's node gave him 5 and 6 (live) and he acknowledged them before the node that
    // accepted 6 stored it: 6 is answered as kept, and is not kept.
    store.delivered_given("bob", 6, vec![5, 6]).unwrap();
    assert_eq!(reply(queue(6, Arrival::Live)).await, QueueOutcome::Queued);
    assert_eq!(reply(queue(7, Arrival::Live)).await, QueueOutcome::Queued);
    // 4 was ordered while bob was offline, and its node stores it only now, after bob's login
    // read the mailbox and after he acknowledged 6: he was never given it, so it stays (with a
    // high-water mark it was dropped: a line answered "queued" and never shown).
    assert_eq!(
        reply(queue(4, Arrival::Offline)).await,
        QueueOutcome::Queued
    );
    let ids = |mails: Vec<crate::store::Mail>| mails.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(reply(store.waiting("bob")).await), [4, 7]);
    // The other order: a given line's row lands just after the delete that should have taken
    // it. It stays in the table, but is never sent again.
    store.delivered_given("bob", 9, vec![7, 8, 9]).unwrap();
    let url = crate::store::tests::with_db(&place.server, &place.name);
    off_runtime(move || {
        let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
        c.execute(
            "INSERT INTO mailbox (id, to_key, ts, sender, text) VALUES (8, 'bob', 1, 'alice', 'late')",
            &[],
        )
        .unwrap()
    });
    assert_eq!(ids(reply(store.waiting("bob")).await), [4]);
    reply(store.close(0)).await;
    store.join();
}

#[tokio::test]
async fn the_total_of_waiting_lines_holds_across_nodes() {
    let place = Postgres::new();
    let opts = Options {
        mailbox_total: 3,
        mailbox_len: 10,
        max_accounts: 10,
        ..OPTS_LONG
    };
    let target = node_target(&place);
    let (a, _) = PgStore::open(&target, opts, clock()).unwrap();
    let (b, _) = PgStore::open(&target, opts, clock()).unwrap();
    login(&a, "bob", "fp-b", 1).await;
    let offline =
        |store: &PgStore, id| store.queue_mail("bob", mail(id, "alice", "hi"), Arrival::Offline);
    assert_eq!(reply(offline(&a, 1)).await, QueueOutcome::Queued);
    assert_eq!(reply(offline(&a, 2)).await, QueueOutcome::Queued);
    // Node b opened before node a stored them: it reads the database's count, not only its own.
    assert_eq!(reply(offline(&b, 3)).await, QueueOutcome::Queued);
    assert_eq!(reply(offline(&b, 4)).await, QueueOutcome::StoreFull);
    for store in [a, b] {
        reply(store.close(0)).await;
        store.join();
    }
}

/// A store with #Dev (alice owner, Bob member, two lines) and #ops (carol owner), closed.
async fn two_rooms(place: &Postgres) {
    use crate::store::tests::rooms::{change, closed, member, room, said};
    use crate::store::RoomChange;
    use mm_common::protocol::Role;
    let (store, _) = place.open(OPTS_LONG, clock()).unwrap();
    let dev = room(
        5,
        "#Dev",
        vec![
            member("alice", Role::Owner, 0),
            member("Bob", Role::Member, 0),
        ],
    );
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

/// Rows of `room_requests` in the test database.
fn requests_queued(place: &Postgres) -> i64 {
    let url = crate::store::tests::with_db(&place.server, &place.name);
    off_runtime(move || {
        let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
        c.query_one("SELECT COUNT(*) FROM room_requests", &[])
            .unwrap()
            .get(0)
    })
}

fn role_of(
    rooms: &[crate::store::RoomRecord],
    room: &str,
    key: &str,
) -> Option<mm_common::protocol::Role> {
    rooms
        .iter()
        .find(|r| r.name == room)?
        .members
        .iter()
        .find(|m| m.key == key)
        .map(|m| m.role)
}

#[tokio::test]
async fn with_no_server_running_rooms_are_listed_and_changes_queued_for_the_next_one() {
    use crate::store::sqlite::{RoomAdmin, RoomAdminError};
    use crate::store::RoomRequest;
    use mm_common::protocol::Role;
    const NO_WAIT: Duration = Duration::from_millis(0);
    let place = Postgres::new();
    two_rooms(&place).await;
    let target = &place.target;

    let rooms = PgStore::list_rooms(target).unwrap();
    assert_eq!(
        rooms.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["#Dev", "#ops"]
    );
    assert_eq!(role_of(&rooms, "#Dev", "alice"), Some(Role::Owner));
    assert_eq!(role_of(&rooms, "#Dev", "bob"), Some(Role::Member));

    // Refused, and nothing queued.
    let err = PgStore::set_room_owner(target, "dev", "dave", NO_WAIT).unwrap_err();
    assert!(matches!(err, RoomAdminError::NotAMember { .. }), "{err}");
    assert_eq!(err.to_string(), "dave is not a member of #Dev");
    let err = PgStore::delete_room(target, "#nope", NO_WAIT).unwrap_err();
    assert!(matches!(err, RoomAdminError::NoSuchRoom(_)), "{err}");
    let err = PgStore::delete_room(target, "#lobby", NO_WAIT).unwrap_err();
    assert!(matches!(err, RoomAdminError::Lobby), "{err}");
    let err = PgStore::delete_room(target, "#no way", NO_WAIT).unwrap_err();
    assert!(matches!(err, RoomAdminError::BadName(_)), "{err}");
    assert_eq!(
        PgStore::set_room_owner(target, "#DEV", "Alice", NO_WAIT).unwrap(),
        RoomAdmin::AlreadyOwner {
            name: "#Dev".into(),
            nick: "alice".into()
        }
    );
    assert_eq!(requests_queued(&place), 0);

    // No server took them: queued, and the rooms unchanged.
    assert_eq!(
        PgStore::delete_room(target, "ops", NO_WAIT).unwrap(),
        RoomAdmin::Queued {
            name: "#ops".into()
        }
    );
    assert_eq!(
        PgStore::set_room_owner(target, "#dev", "BOB", Duration::from_millis(200)).unwrap(),
        RoomAdmin::Queued {
            name: "#Dev".into()
        }
    );
    assert_eq!(requests_queued(&place), 2);
    let rooms = PgStore::list_rooms(target).unwrap();
    assert_eq!(rooms.len(), 2);
    assert_eq!(role_of(&rooms, "#Dev", "bob"), Some(Role::Member));

    // The next server to start takes them, in order, once.
    let (store, loaded) = place.open(OPTS_LONG, clock()).unwrap();
    assert_eq!(loaded.rooms.len(), 2);
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
    assert_eq!(requests_queued(&place), 0);
    crate::store::tests::rooms::closed(store).await;
}

#[tokio::test]
async fn on_postgresql_the_command_says_applied_once_a_running_server_has_done_it() {
    use crate::store::sqlite::RoomAdmin;
    use crate::store::{RoomChange, RoomRequest};
    use std::sync::Arc;
    let place = Postgres::new();
    two_rooms(&place).await;
    let (store, loaded) = place.open(OPTS_LONG, clock()).unwrap();
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
    let target = place.target.clone();
    let (deleted, owner) = tokio::task::spawn_blocking(move || {
        (
            PgStore::delete_room(&target, "#ops", Duration::from_secs(10)),
            PgStore::set_room_owner(&target, "#dev", "bob", Duration::from_millis(500)),
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
    let rooms = PgStore::list_rooms(&place.target).unwrap();
    assert_eq!(
        rooms.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["#Dev"]
    );
}
