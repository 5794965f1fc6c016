//! The hub's unit tests: a hub over an in-memory store, on a manual clock where time matters.
//! (Over 600 lines: one test per rule of the hub, sharing the set-up helpers at the top.)

use super::*;
use crate::clock::ManualClock;
use crate::store::{Body, QueueOutcome};
use mm_common::protocol::{LOBBY, MAX_MONITORED};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Where the tests' manual clocks start (2023-11-14T22:13:20Z).
const START_MS: u64 = 1_700_000_000_000;

/// 31 days: past the 30 days the expiry tests use.
const DAYS_31: Duration = Duration::from_millis(31 * DAY_MS);

/// A hub with default limits over `store`, on a manual clock standing at [`START_MS`].
fn on_manual_clock(store: Arc<dyn Store>) -> (Hub, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START_MS));
    let hub = Hub::builder(&Limits::default(), store, Loaded::default())
        .clock(clock.clone())
        .build();
    (hub, clock)
}

fn memory_store(limits: &Limits) -> Arc<dyn Store> {
    Arc::new(MemoryStore::new(Options::from_limits(limits)))
}

fn test_hub(outbound_queue: usize, outbound_queue_bytes: usize) -> Hub {
    Hub::in_memory(&Limits {
        outbound_queue,
        outbound_queue_bytes,
        ..Limits::default()
    })
}

/// The next message queued for `m` (a whole message: the hub queues no frame headers).
fn next(m: &mut Joined) -> ServerMsg {
    let msg = m.outbox.try_recv().unwrap().unwrap();
    ServerMsg::decode(&msg).unwrap()
}

/// The connection `nick` is online with (0 if offline: any connection may send then).
fn conn_of(hub: &Hub, nick: &str) -> u64 {
    hub.lock()
        .peers
        .get(&nick_key(nick))
        .map_or(0, |p| p.conn_id)
}

/// Each test user's certificate: one per nick, case-insensitively.
fn fp(nick: &str) -> String {
    format!("fp-{}", nick_key(nick))
}

/// Registers `nick` in the hub's store (as a login would, at the hub's time) so that lines
/// can wait for it.
fn register(hub: &Hub, nick: &str) {
    let now = hub.clock().now_ms();
    let mut reply = hub.store().login(nick, &fp(nick), now, true).unwrap();
    assert!(reply.try_recv().unwrap().is_ok());
}

/// A private line that reached an online recipient.
fn delivered(r: Result<PrivateOutcome, SendError>) -> Accepted {
    match r {
        Ok(PrivateOutcome::Delivered(a, mut reply)) => {
            assert_eq!(reply.try_recv().unwrap().unwrap(), QueueOutcome::Queued);
            a
        }
        other => panic!("not delivered: {other:?}"),
    }
}

/// A private line handed to the store, and what it said.
fn stored(r: Result<PrivateOutcome, SendError>) -> QueueOutcome {
    match r {
        Ok(PrivateOutcome::Stored(_, mut reply)) => reply.try_recv().unwrap().unwrap(),
        other => panic!("not stored: {other:?}"),
    }
}

fn drain(m: &mut Joined) {
    while let Ok(Some(_)) = m.outbox.try_recv() {}
}

/// Whether nothing waits for `m` (its outbox is empty, or closed).
fn nothing_for(m: &mut Joined) -> bool {
    !matches!(m.outbox.try_recv(), Ok(Some(_)))
}

#[test]
fn nicks_are_unique_case_insensitively_and_free_again_after_leave() {
    let hub = test_hub(4, usize::MAX);
    let alice = hub.join(1, "Alice", &fp("Alice")).unwrap();
    assert_eq!(
        hub.join(2, "alice", "another key").unwrap_err(),
        JoinError::NickInUse("Alice".into())
    );
    hub.leave(alice.outbox.conn_id, "Alice", LeaveReason::Quit);
    assert!(hub.join(3, "ALICE", &fp("ALICE")).is_ok());
}

#[test]
fn join_snapshot_and_queue_fit_together() {
    let hub = test_hub(16, usize::MAX);
    let mut a = hub.join(1, "a", &fp("a")).unwrap();
    let b = hub.join(2, "B", &fp("B")).unwrap();
    assert_eq!(a.online, vec!["a".to_string()]);
    assert_eq!(b.online, vec!["a".to_string(), "B".to_string()]);
    assert!(matches!(next(&mut a), ServerMsg::Joined { nick, .. } if nick == "B"));
    assert!(nothing_for(&mut a), "a does not hear of its own join");
}

#[test]
fn public_and_private_keep_the_order_they_were_accepted_in() {
    let hub = test_hub(16, usize::MAX);
    let mut a = hub.join(1, "a", &fp("a")).unwrap();
    let mut b = hub.join(2, "b", &fp("b")).unwrap();
    drain(&mut a);
    let (first, _) = hub.publish(1, "a", LOBBY, "one".into(), false).unwrap();
    let second = delivered(hub.send_private(conn_of(&hub, "a"), "a", "b", "two".into()));
    let (third, _) = hub.publish(1, "a", LOBBY, "three".into(), false).unwrap();
    assert!(first.id < second.id && second.id < third.id);
    assert!(matches!(next(&mut b), ServerMsg::Public { text, .. } if text == "one"));
    assert!(matches!(next(&mut b), ServerMsg::Private { text, .. } if text == "two"));
    assert!(matches!(next(&mut b), ServerMsg::Public { text, .. } if text == "three"));
    assert!(nothing_for(&mut a), "no echo to the sender");
}

#[test]
fn a_broadcast_frame_is_encoded_once_and_shared() {
    let hub = test_hub(16, usize::MAX);
    let mut members: Vec<Joined> = (1..=3)
        .map(|i| {
            hub.join(i, &format!("u{i}"), &fp(&format!("u{i}")))
                .unwrap()
        })
        .collect();
    for m in &mut members {
        drain(m);
    }
    hub.publish(1, "u1", LOBBY, "x".into(), false).unwrap();
    let f2 = members[1].outbox.try_recv().unwrap().unwrap();
    let f3 = members[2].outbox.try_recv().unwrap().unwrap();
    assert_eq!(
        f2.as_ptr(),
        f3.as_ptr(),
        "same allocation, not a copy per recipient"
    );
}

#[test]
fn private_goes_to_one_queue_and_unknown_recipients_are_errors() {
    let hub = test_hub(16, usize::MAX);
    let mut a = hub.join(1, "a", &fp("a")).unwrap();
    let mut b = hub.join(2, "b", &fp("b")).unwrap();
    drain(&mut a);
    delivered(hub.send_private(conn_of(&hub, "a"), "a", "B", "psst".into()));
    assert!(
        matches!(next(&mut b), ServerMsg::Private { from, text, .. } if from == "a" && text == "psst")
    );
    assert!(nothing_for(&mut a));
    assert_eq!(
        stored(hub.send_private(conn_of(&hub, "a"), "a", "carol", "x".into())),
        QueueOutcome::NoSuchAccount
    );
}

#[test]
fn a_relay_to_an_offline_user_waits_in_their_mailbox_like_a_private_line() {
    let hub = test_hub(16, usize::MAX);
    let mut a = hub.join(1, "a", &fp("a")).unwrap();
    let b = hub.join(2, "b", &fp("b")).unwrap();
    hub.leave(b.outbox.conn_id, "b", LeaveReason::Quit);
    drain(&mut a);
    let kept = match hub.relay(conn_of(&hub, "a"), "a", "B", vec![7, 8]) {
        Ok(PrivateOutcome::Stored(accepted, mut reply)) => {
            assert_eq!(reply.try_recv().unwrap().unwrap(), QueueOutcome::Queued);
            accepted
        }
        other => panic!("not stored: {other:?}"),
    };
    assert!(nothing_for(&mut a));
    // Nobody registered carol: not kept.
    assert_eq!(
        stored(hub.relay(conn_of(&hub, "a"), "a", "carol", vec![1])),
        QueueOutcome::NoSuchAccount
    );
    // At b's next login, with the same id.
    let mut again = hub.join(3, "b", &fp("b")).unwrap();
    let login = again.login.take().unwrap().try_recv().unwrap().unwrap();
    assert!(
        matches!(&login.waiting[..], [m] if m.id == kept.id && m.from == "a" && m.body == Body::Relay(vec![7, 8])),
        "{:?}",
        login.waiting
    );
}

#[test]
fn a_full_queue_disconnects_that_user_only() {
    let hub = test_hub(2, usize::MAX);
    let mut a = hub.join(1, "a", &fp("a")).unwrap();
    let mut slow = hub.join(2, "slow", &fp("slow")).unwrap();
    let mut c = hub.join(3, "c", &fp("c")).unwrap();
    drain(&mut a);
    drain(&mut slow);
    drain(&mut c);
    register(&hub, "slow");
    delivered(hub.send_private(conn_of(&hub, "a"), "a", "slow", "1".into()));
    delivered(hub.send_private(conn_of(&hub, "a"), "a", "slow", "2".into()));
    // The third does not fit: slow is dropped and the line waits in the store instead.
    assert_eq!(
        stored(hub.send_private(conn_of(&hub, "a"), "a", "slow", "3".into())),
        QueueOutcome::Queued
    );
    assert_eq!(hub.online(), vec!["a".to_string(), "c".to_string()]);
    // The slow session still gets what was queued, then sees its queue closed.
    assert!(matches!(slow.outbox.try_recv(), Ok(Some(_))));
    assert!(matches!(slow.outbox.try_recv(), Ok(Some(_))));
    assert_eq!(slow.outbox.try_recv(), Err(Closed::TooSlow));
    assert!(matches!(
        next(&mut a),
        ServerMsg::Left {
            reason: LeaveReason::TooSlow,
            ..
        }
    ));
    assert!(matches!(
        next(&mut c),
        ServerMsg::Left {
            reason: LeaveReason::TooSlow,
            ..
        }
    ));
    // Its later logout does not announce a second leave.
    hub.leave(2, "slow", LeaveReason::Disconnected);
    assert!(nothing_for(&mut a));
    // A broadcast also evicts a full queue, and the others still get the line.
    hub.publish(3, "c", LOBBY, "x".into(), false).unwrap();
    hub.publish(3, "c", LOBBY, "y".into(), false).unwrap();
    hub.publish(3, "c", LOBBY, "z".into(), false).unwrap();
    assert_eq!(hub.online(), vec!["c".to_string()]);
}

#[test]
fn the_byte_bound_disconnects_before_the_frame_bound() {
    let hub = test_hub(1000, 200_000); // the byte bound is raised to one largest message at least
    let mut a = hub.join(1, "a", &fp("a")).unwrap();
    let slow = hub.join(2, "slow", &fp("slow")).unwrap();
    drain(&mut a);
    let text = "x".repeat(4000);
    let mut sent = 0;
    while hub.online().len() == 2 {
        let _ = hub.send_private(conn_of(&hub, "a"), "a", "slow", text.clone());
        sent += 1;
        assert!(sent < 1000, "never disconnected");
    }
    // 200 KB of 4 KB messages: about 50, far below the bound of 1000 messages.
    assert!((45..=55).contains(&sent), "{sent}");
    assert!(slow.outbox.queued_bytes() <= 200_000);
}

#[test]
fn queued_bytes_follow_the_queue() {
    let hub = test_hub(16, usize::MAX);
    let mut a = hub.join(1, "a", &fp("a")).unwrap();
    let _b = hub.join(2, "b", &fp("b")).unwrap();
    let notice = a.outbox.queued_bytes(); // b's join notice, waiting
    assert!(notice > 0);
    delivered(hub.send_private(conn_of(&hub, "b"), "b", "a", "hello".into()));
    let both = a.outbox.queued_bytes();
    assert!(both > notice);
    let joined = a.outbox.try_recv().unwrap().unwrap();
    assert_eq!(joined.len(), notice);
    assert_eq!(a.outbox.queued_bytes(), both - notice);
    let private = a.outbox.try_recv().unwrap().unwrap();
    assert_eq!(both, joined.len() + private.len());
    assert_eq!(a.outbox.queued_bytes(), 0);
}

#[test]
fn a_stale_session_cannot_log_out_the_new_owner_of_its_nick() {
    let hub = test_hub(1, usize::MAX);
    let _a = hub.join(1, "a", &fp("a")).unwrap();
    delivered(hub.send_private(conn_of(&hub, "x"), "x", "a", "1".into()));
    let _ = hub.send_private(conn_of(&hub, "x"), "x", "a", "2".into()); // evicts conn 1
    let _a2 = hub.join(5, "a", &fp("a")).unwrap();
    hub.leave(1, "a", LeaveReason::Disconnected);
    assert_eq!(hub.online(), vec!["a".to_string()]);
}

#[test]
fn monitored_presence_is_told_whatever_the_room_size_and_bounded() {
    let hub = Hub::in_memory(&Limits {
        presence_max_online: 1,
        ..Limits::default()
    });
    let mut a = hub.join(1, "alice", &fp("alice")).unwrap();
    hub.monitor(
        1,
        "alice",
        &["Bob".into(), "not a nick!".into(), "carol".into()],
    );
    assert_eq!(
        next(&mut a),
        ServerMsg::Presence {
            nick: "Bob".into(),
            online: false
        }
    );
    assert_eq!(
        next(&mut a),
        ServerMsg::Presence {
            nick: "carol".into(),
            online: false
        }
    );
    assert!(nothing_for(&mut a), "invalid nicks are ignored");
    let _x = hub.join(5, "xavier", &fp("xavier")).unwrap(); // 2 online: no join notices
    let bob = hub.join(2, "bob", &fp("bob")).unwrap();
    assert_eq!(
        next(&mut a),
        ServerMsg::Presence {
            nick: "bob".into(),
            online: true
        }
    );
    assert!(nothing_for(&mut a), "xavier is not monitored");
    hub.leave(bob.outbox.conn_id, "bob", LeaveReason::Quit);
    assert_eq!(
        next(&mut a),
        ServerMsg::Presence {
            nick: "bob".into(),
            online: false
        }
    );
    // Bounded per connection: beyond MAX_MONITORED, nicks are ignored.
    let many: Vec<String> = (0..MAX_MONITORED + 10).map(|i| format!("u{i}")).collect();
    for chunk in many.chunks(64) {
        hub.monitor(1, "alice", chunk);
    }
    drain(&mut a);
    let _late = hub.join(9, &many[MAX_MONITORED + 5], &fp("late")).unwrap();
    assert!(
        nothing_for(&mut a),
        "a nick beyond the bound is not watched"
    );
    // A watcher that leaves stops being told, and its watches are gone.
    hub.leave(1, "alice", LeaveReason::Quit);
    let _bob = hub.join(3, "bob", &fp("bob")).unwrap();
    assert!(hub.lock().monitors.values().all(|w| !w.contains("alice")));
}

#[test]
fn presence_notices_stop_in_large_rooms() {
    let hub = Hub::in_memory(&Limits {
        presence_max_online: 3,
        ..Limits::default()
    });
    let mut a = hub.join(1, "a", &fp("a")).unwrap();
    let _b = hub.join(2, "b", &fp("b")).unwrap();
    let _c = hub.join(3, "c", &fp("c")).unwrap(); // 3 online: still announced
    let d = hub.join(4, "d", &fp("d")).unwrap(); // 4 online: silent
    assert!(matches!(next(&mut a), ServerMsg::Joined { nick, .. } if nick == "b"));
    assert!(matches!(next(&mut a), ServerMsg::Joined { nick, .. } if nick == "c"));
    assert!(nothing_for(&mut a), "d's join is not announced");
    // The newcomer gets the count, not a list that no notice would keep current.
    assert!(d.online.is_empty());
    assert_eq!(d.online_count, 4);
    hub.leave(4, "d", LeaveReason::Quit); // from 4 to 3: silent
    assert!(nothing_for(&mut a));
    hub.leave(3, "c", LeaveReason::Quit); // from 3 to 2: announced
    assert!(matches!(next(&mut a), ServerMsg::Left { nick, .. } if nick == "c"));
}

#[test]
fn closed_hub_accepts_nothing() {
    let hub = test_hub(4, usize::MAX);
    let _a = hub.join(1, "a", &fp("a")).unwrap();
    hub.close();
    assert_eq!(
        hub.publish(1, "a", LOBBY, "x".into(), false)
            .map(|(a, _)| a),
        Err(SendError::Closed)
    );
    assert!(matches!(
        hub.send_private(conn_of(&hub, "a"), "a", "a", "x".into()),
        Err(SendError::Closed)
    ));
    assert_eq!(hub.join(2, "b", &fp("b")).unwrap_err(), JoinError::Closed);
}

#[test]
fn a_login_with_the_same_key_replaces_the_old_connection_quietly() {
    let hub = test_hub(16, usize::MAX);
    let mut watcher = hub.join(1, "w", &fp("w")).unwrap();
    let mut old = hub.join(2, "a", &fp("a")).unwrap();
    drain(&mut watcher);
    let new = hub.join(3, "A", &fp("a")).unwrap();
    assert!(old.outbox.is_replaced());
    assert_eq!(old.outbox.try_recv(), Err(Closed::Replaced));
    assert!(!new.outbox.is_replaced());
    assert_eq!(hub.online(), vec!["A".to_string(), "w".to_string()]);
    assert!(nothing_for(&mut watcher), "no join or leave notice");
    // The old session's logout does not log the new one out.
    hub.leave(2, "a", LeaveReason::Disconnected);
    assert_eq!(hub.online().len(), 2);
}

#[test]
fn history_is_kept_in_order_and_bounded_and_handed_to_newcomers() {
    let hub = Hub::in_memory(&Limits {
        history_len: 2,
        ..Limits::default()
    });
    let a = hub.join(1, "a", &fp("a")).unwrap();
    for text in ["one", "two", "three"] {
        hub.publish(a.outbox.conn_id, "a", LOBBY, text.into(), false)
            .unwrap();
    }
    let b = hub.join(2, "b", &fp("b")).unwrap();
    let texts: Vec<String> = b
        .history
        .iter()
        .map(|f| match ServerMsg::decode(f).unwrap() {
            ServerMsg::History { from, text, .. } => format!("{from}:{text}"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(texts, ["a:two", "a:three"]);
}

#[test]
fn lines_for_an_offline_user_wait_for_their_next_login() {
    let hub = test_hub(16, usize::MAX);
    register(&hub, "bob");
    let _a = hub.join(1, "a", &fp("a")).unwrap();
    assert_eq!(
        stored(hub.send_private(conn_of(&hub, "a"), "a", "bob", "while away".into())),
        QueueOutcome::Queued
    );
    let mut bob = hub.join(2, "bob", &fp("bob")).unwrap();
    let waiting = bob
        .login
        .take()
        .unwrap()
        .try_recv()
        .unwrap()
        .unwrap()
        .waiting;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].body, Body::Text("while away".into()));
    // Once online, lines go to the queue, not the store.
    delivered(hub.send_private(conn_of(&hub, "a"), "a", "bob", "live".into()));
}

#[test]
fn an_acknowledgement_the_store_refused_is_taken_again_later() {
    let limits = Limits::default();
    let store = Arc::new(crate::store::memory::FaultyStore::new(
        Options::from_limits(&limits),
    ));
    store.deletes_fail.store(true, Ordering::SeqCst);
    let hub = Hub::new(&limits, store.clone(), Loaded::default());
    let _a = hub.join(1, "a", &fp("a")).unwrap();
    let b = hub.join(2, "b", &fp("b")).unwrap();
    let line = delivered(hub.send_private(conn_of(&hub, "a"), "a", "b", "x".into()));
    // During the outage the acknowledgement cannot be applied (and counts as nothing)...
    assert!(!hub.received(b.outbox.conn_id, "b", line.id));
    assert!(store.deleted.lock().unwrap().is_empty());
    // ...so the same one, sent again (mm sends one when it quits), is new, not a repeat.
    store.deletes_fail.store(false, Ordering::SeqCst);
    assert!(hub.received(b.outbox.conn_id, "b", line.id));
    assert_eq!(*store.deleted.lock().unwrap(), [line.id]);
    assert!(
        !hub.received(b.outbox.conn_id, "b", line.id),
        "now it is a repeat"
    );
}

#[test]
fn only_lines_given_to_the_connection_can_be_acknowledged() {
    let hub = test_hub(16, usize::MAX);
    let a = hub.join(1, "a", &fp("a")).unwrap();
    let b = hub.join(2, "b", &fp("b")).unwrap();
    // Guesses: nothing was given yet, so nothing is acknowledged (and no store work).
    for up_to in [1, 2, 3, u64::MAX] {
        assert!(!hub.received(b.outbox.conn_id, "b", up_to));
    }
    let first = delivered(hub.send_private(conn_of(&hub, "a"), "a", "b", "1".into()));
    let second = delivered(hub.send_private(conn_of(&hub, "a"), "a", "b", "2".into()));
    assert!(hub.received(b.outbox.conn_id, "b", first.id));
    assert!(!hub.received(b.outbox.conn_id, "b", first.id), "a repeat");
    assert!(
        hub.received(b.outbox.conn_id, "b", u64::MAX),
        "covers the second"
    );
    assert!(!hub.received(b.outbox.conn_id, "b", second.id + 1));
    // Not from another connection of the account.
    let _ = a;
    assert!(!hub.received(99, "b", u64::MAX));
}

#[test]
fn a_partial_mailbox_fetch_stops_acknowledgements_at_its_last_line() {
    let hub = test_hub(16, usize::MAX);
    register(&hub, "b");
    let _a = hub.join(1, "a", &fp("a")).unwrap();
    stored(hub.send_private(conn_of(&hub, "a"), "a", "b", "one".into())); // id 1
    stored(hub.send_private(conn_of(&hub, "a"), "a", "b", "two".into())); // id 2
    let b = hub.join(2, "b", &fp("b")).unwrap();
    // The login got line 1 only: more waited than one fetch takes.
    hub.fetched(b.outbox.conn_id, "b", &[1], false);
    let live = delivered(hub.send_private(conn_of(&hub, "a"), "a", "b", "live".into()));
    assert!(hub.received(b.outbox.conn_id, "b", live.id));
    // Only line 1 is gone: line 2 was never given, and the live line waits with it.
    let waiting = hub
        .store()
        .waiting("b")
        .unwrap()
        .try_recv()
        .unwrap()
        .unwrap();
    let ids: Vec<u64> = waiting.iter().map(|m| m.id).collect();
    assert_eq!(ids, [2, live.id]);
}

#[test]
fn an_expiry_sweep_never_deletes_an_account_whose_registering_connection_is_open() {
    let (hub, clock) = on_manual_clock(memory_store(&Limits::default()));
    register(&hub, "offline");
    let online = hub.join(1, "online", &fp("online")).unwrap();
    clock.advance(DAYS_31);
    let mut sweep = hub.expire_unused(30, 100).unwrap();
    assert_eq!(sweep.try_recv().unwrap().unwrap(), ["offline"]);
    // Once it has left, it is unused like any other.
    hub.leave(online.outbox.conn_id, "online", LeaveReason::Quit);
    clock.advance(DAYS_31);
    let mut sweep = hub.expire_unused(30, 100).unwrap();
    assert_eq!(sweep.try_recv().unwrap().unwrap(), ["online"]);
}

/// Expiry at its boundary through the hub, on a store sharing the hub's clock.
fn expires_one_ms_after_exactly_n_days(store: Arc<dyn Store>) {
    let (hub, clock) = on_manual_clock(store);
    let answer = |r: Result<Reply<Vec<String>>, StoreError>| r.unwrap().blocking_recv();
    let mut idle = hub.join(1, "idle", &fp("idle")).unwrap();
    let mut used = hub.join(2, "used", &fp("used")).unwrap();
    for m in [&mut idle, &mut used] {
        let login = m.login.take().unwrap().blocking_recv().unwrap().unwrap();
        assert_eq!(login.outcome, crate::store::LoginOutcome::Registered);
    }
    // The registering connections end an hour later; "used" logs in again the next day.
    clock.advance(Duration::from_secs(3600));
    let ended = clock.now_ms();
    hub.leave(idle.outbox.conn_id, "idle", LeaveReason::Quit);
    hub.leave(used.outbox.conn_id, "used", LeaveReason::Quit);
    clock.advance(Duration::from_millis(DAY_MS));
    let mut again = hub.join(3, "used", &fp("used")).unwrap();
    let login = again
        .login
        .take()
        .unwrap()
        .blocking_recv()
        .unwrap()
        .unwrap();
    assert_eq!(login.outcome, crate::store::LoginOutcome::Known);
    hub.leave(again.outbox.conn_id, "used", LeaveReason::Quit);
    // Unused for exactly 30 days: kept.
    clock.set(ended + 30 * DAY_MS);
    assert_eq!(
        answer(hub.expire_unused(30, 100)).unwrap().unwrap(),
        Vec::<String>::new()
    );
    // 1 ms later: expired; an account used again never is.
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        answer(hub.expire_unused(30, 100)).unwrap().unwrap(),
        ["idle"]
    );
    clock.advance(Duration::from_millis(1000 * DAY_MS));
    assert_eq!(
        answer(hub.expire_unused(30, 100)).unwrap().unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn an_account_unused_for_exactly_n_days_expires_1_ms_later_and_not_before() {
    let limits = Limits::default();
    expires_one_ms_after_exactly_n_days(memory_store(&limits));
    let (store, _) = crate::store::sqlite::SqliteStore::open_in_memory(
        Options::from_limits(&limits),
        Arc::new(ManualClock::new(START_MS)),
    )
    .unwrap();
    expires_one_ms_after_exactly_n_days(Arc::new(store));
}

#[test]
fn lines_and_notices_carry_the_time_of_the_hub_clock_when_accepted() {
    let (hub, clock) = on_manual_clock(memory_store(&Limits::default()));
    let ts = |msg: ServerMsg| match msg {
        ServerMsg::Joined { ts, .. }
        | ServerMsg::Left { ts, .. }
        | ServerMsg::Public { ts, .. }
        | ServerMsg::Private { ts, .. }
        | ServerMsg::Relay { ts, .. }
        | ServerMsg::History { ts, .. } => ts,
        other => panic!("{other:?}"),
    };
    let mut a = hub.join(1, "a", &fp("a")).unwrap();
    clock.advance(Duration::from_millis(7));
    let mut b = hub.join(2, "b", &fp("b")).unwrap();
    assert_eq!(ts(next(&mut a)), START_MS + 7, "b's join notice");
    clock.advance(Duration::from_millis(5));
    let (public, _) = hub.publish(1, "a", LOBBY, "one".into(), false).unwrap();
    assert_eq!(public.ts, START_MS + 12);
    assert_eq!(ts(next(&mut b)), START_MS + 12);
    clock.advance(Duration::from_millis(1));
    let private = delivered(hub.send_private(conn_of(&hub, "a"), "a", "b", "two".into()));
    assert_eq!(private.ts, START_MS + 13);
    assert_eq!(ts(next(&mut b)), START_MS + 13);
    clock.advance(Duration::from_millis(1));
    let relay = delivered(hub.relay(conn_of(&hub, "a"), "a", "b", vec![1]));
    assert_eq!(relay.ts, START_MS + 14);
    assert_eq!(ts(next(&mut b)), START_MS + 14);
    // Kept as accepted: the history a newcomer gets, the mailbox a login fetches.
    clock.advance(Duration::from_secs(3600));
    let c = hub.join(3, "c", &fp("c")).unwrap();
    let history = ServerMsg::decode(&c.history[0]).unwrap();
    assert_eq!(ts(history), START_MS + 12);
    let waiting = hub
        .store()
        .waiting("b")
        .unwrap()
        .try_recv()
        .unwrap()
        .unwrap();
    let times: Vec<u64> = waiting.iter().map(|m| m.ts).collect();
    assert_eq!(times, [START_MS + 13, START_MS + 14]);
    // A clock stepped back: timestamps follow it, ids do not.
    clock.set(START_MS);
    let (earlier, _) = hub.publish(1, "a", LOBBY, "three".into(), false).unwrap();
    assert_eq!(earlier.ts, START_MS);
    assert!(earlier.id > relay.id);
    hub.leave(b.outbox.conn_id, "b", LeaveReason::Quit);
    drain(&mut a);
    hub.leave(c.outbox.conn_id, "c", LeaveReason::Quit);
    assert_eq!(ts(next(&mut a)), START_MS, "c's leave notice");
}

#[test]
fn ids_continue_after_what_the_store_loaded() {
    let limits = Limits::default();
    let store = Arc::new(MemoryStore::new(Options::from_limits(&limits)));
    let loaded = Loaded {
        history: Vec::new(),
        last_id: 41,
        ..Loaded::default()
    };
    let hub = Hub::new(&limits, store, loaded);
    let a = hub.join(1, "a", &fp("a")).unwrap();
    assert_eq!(
        hub.publish(a.outbox.conn_id, "a", LOBBY, "x".into(), false)
            .unwrap()
            .0
            .id,
        42
    );
}

#[test]
fn each_message_is_published_once_to_its_topic() {
    let limits = Limits::default();
    let bus = bus::RecordingBus::default();
    let log = Arc::clone(&bus.log);
    let hub = Hub::builder(&limits, memory_store(&limits), Loaded::default())
        .bus(Box::new(bus))
        .build();
    let mut alice = hub.join(1, "Alice", &fp("alice")).unwrap();
    hub.monitor(1, "Alice", &["bob".to_string()]);
    let mut bob = hub.join(2, "bob", &fp("bob")).unwrap();
    drain(&mut alice);
    let (line, _) = hub
        .publish(2, "bob", LOBBY, "hi all".into(), false)
        .unwrap();
    delivered(hub.send_private(conn_of(&hub, "bob"), "bob", "ALICE", "hi you".into()));
    let relayed = delivered(hub.relay(conn_of(&hub, "Alice"), "Alice", "bob", vec![1, 2, 3]));
    hub.leave(2, "bob", LeaveReason::Quit);

    let lobby = Topic::Room(RoomId::LOBBY);
    let seen: Vec<(Topic, ServerMsg, Option<u64>)> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(topic, msg, skip)| (topic.clone(), ServerMsg::decode(msg).unwrap(), *skip))
        .collect();
    let shape: Vec<(String, &str, Option<u64>)> = seen
        .iter()
        .map(|(topic, msg, skip)| {
            let kind = match msg {
                ServerMsg::Presence { online: true, .. } => "presence online",
                ServerMsg::Presence { online: false, .. } => "presence offline",
                ServerMsg::Joined { .. } => "joined",
                ServerMsg::Public { .. } => "public",
                ServerMsg::Private { .. } => "private",
                ServerMsg::Relay { .. } => "relay",
                ServerMsg::Left { .. } => "left",
                _ => "other",
            };
            (topic.to_string(), kind, *skip)
        })
        .collect();
    assert_eq!(
        shape,
        [
            // alice's login (nobody else there yet), alice's monitor answer, then bob's
            // login: to alice's topic (she monitors him) and the room.
            (lobby.to_string(), "joined", Some(1)),
            ("user.alice".to_string(), "presence offline", None),
            ("user.alice".to_string(), "presence online", None),
            (lobby.to_string(), "joined", Some(2)),
            (lobby.to_string(), "public", Some(2)),
            ("user.alice".to_string(), "private", None),
            ("user.bob".to_string(), "relay", None),
            ("user.alice".to_string(), "presence offline", None),
            (lobby.to_string(), "left", Some(2)),
        ]
    );
    assert!(matches!(&seen[4].1, ServerMsg::Public { id, .. } if *id == line.id));
    assert!(matches!(&seen[6].1, ServerMsg::Relay { id, .. } if *id == relayed.id));
    // What the bus delivered is what reached the outboxes.
    assert!(matches!(next(&mut alice), ServerMsg::Public { text, .. } if text == "hi all"));
    assert!(matches!(next(&mut alice), ServerMsg::Private { text, .. } if text == "hi you"));
    assert!(matches!(next(&mut bob), ServerMsg::Relay { payload, .. } if payload == [1, 2, 3]));
}

/// Every message waiting for `m`, decoded.
fn all(m: &mut Joined) -> Vec<ServerMsg> {
    let mut out = Vec::new();
    while let Ok(Some(b)) = m.outbox.try_recv() {
        out.push(ServerMsg::decode(&b).unwrap());
    }
    out
}

#[test]
fn a_login_that_takes_over_one_nobody_heard_of_is_announced_once_complete() {
    // Two logins of one account race (a quick reconnect, two devices): the second takes over
    // the first before the store answered it, so nobody had heard of the first.
    let hub = test_hub(64, usize::MAX);
    let mut w = hub.join(1, "w", &fp("w")).unwrap();
    hub.monitor(1, "w", &["a".into()]);
    all(&mut w);
    let now = hub.clock().now_ms();
    let first = hub.join_unannounced(2, "a", &fp("a"), now, true).unwrap();
    let second = hub.join_unannounced(3, "a", &fp("a"), now, true).unwrap();
    assert!(first.outbox.is_replaced());
    assert!(
        second.announce,
        "nobody heard of the first: this one must be announced"
    );
    hub.announce(&second.outbox, second.announce);
    let got = all(&mut w);
    assert!(
        got.contains(&ServerMsg::Presence {
            nick: "a".into(),
            online: true
        }),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|m| matches!(m, ServerMsg::Joined { nick, .. } if nick == "a")),
        "{got:?}"
    );
    // Taking over a connection the others heard of stays quiet.
    let third = hub.join(4, "a", &fp("a")).unwrap();
    assert!(!third.announce);
    assert_eq!(all(&mut w), []);
}

#[test]
fn a_login_still_waiting_for_the_store_is_not_online_to_anyone() {
    let hub = test_hub(64, usize::MAX);
    let mut w = hub.join(1, "w", &fp("w")).unwrap();
    let now = hub.clock().now_ms();
    let x = hub.join_unannounced(2, "x", &fp("x"), now, true).unwrap();
    hub.monitor(1, "w", &["x".into()]);
    assert_eq!(
        all(&mut w),
        [ServerMsg::Presence {
            nick: "x".into(),
            online: false
        }]
    );
    // Refused after all (its mailbox could not be read): nobody hears of its end either.
    hub.withdraw(x.outbox.conn_id, "x");
    assert_eq!(all(&mut w), []);
    // Admitted: the watcher hears it once, and of its end.
    let x = hub.join_unannounced(3, "x", &fp("x"), now, true).unwrap();
    assert_eq!(all(&mut w), []);
    hub.announce(&x.outbox, x.announce);
    hub.leave(3, "x", LeaveReason::Quit);
    let got = all(&mut w);
    assert_eq!(
        got.iter()
            .filter(|m| matches!(m, ServerMsg::Presence { .. }))
            .collect::<Vec<_>>(),
        [
            &ServerMsg::Presence {
                nick: "x".into(),
                online: true
            },
            &ServerMsg::Presence {
                nick: "x".into(),
                online: false
            }
        ]
    );
}

#[test]
fn a_replaced_connection_can_no_longer_send() {
    // Its session ends once it finds its outbox closed; lines it read before that are
    // refused, never delivered as the account's (to its successor among others).
    let hub = test_hub(64, usize::MAX);
    let mut b = hub.join(1, "b", &fp("b")).unwrap();
    let _old = hub.join(2, "a", &fp("a")).unwrap();
    let mut new = hub.join(3, "a", &fp("a")).unwrap();
    all(&mut b);
    all(&mut new);
    assert_eq!(
        hub.publish(2, "a", LOBBY, "stale".into(), false)
            .unwrap_err(),
        SendError::Replaced
    );
    assert_eq!(
        hub.send_private(2, "a", "b", "stale".into()).unwrap_err(),
        SendError::Replaced
    );
    assert_eq!(
        hub.relay(2, "a", "b", vec![1]).unwrap_err(),
        SendError::Replaced
    );
    assert_eq!(all(&mut b), []);
    assert_eq!(all(&mut new), []);
    // The current connection sends as before.
    hub.publish(3, "a", LOBBY, "fresh".into(), false).unwrap();
    assert!(matches!(&all(&mut b)[..], [ServerMsg::Public { text, .. }] if text == "fresh"));
}

/// A chain of watchers (u1 monitors u0, u2 monitors u1, …) whose outboxes are all full: one
/// logout drops the whole chain in one call under the hub's lock.
fn eviction_chain(users: u64) {
    let hub = Hub::in_memory(&Limits {
        outbound_queue: 1,
        outbound_queue_bytes: usize::MAX,
        presence_max_online: 0,
        // The in-memory store then answers every login "full" at once instead of scanning
        // every account (the hub admits the connection either way): joins stay O(1).
        max_accounts: 0,
        ..Limits::default()
    });
    let mut keep = Vec::new();
    for i in 0..users {
        let nick = format!("u{i}");
        keep.push(hub.join(i + 1, &nick, &fp(&nick)).unwrap().outbox);
        if i > 0 {
            // Its one slot now holds the presence of u{i-1}: full.
            hub.monitor(i + 1, &nick, &[format!("u{}", i - 1)]);
        }
    }
    hub.leave(1, "u0", LeaveReason::Quit);
    assert!(hub.online().is_empty(), "the whole chain is dropped");
    for outbox in &mut keep[1..] {
        let _ = outbox.try_recv(); // what it held
        assert_eq!(outbox.try_recv(), Err(Closed::TooSlow));
    }
}

#[test]
fn a_cascade_of_evictions_costs_no_stack() {
    // On a thread with tokio's worker stack: one level of recursion per user overflowed it
    // at 3,000 users (2,000 in a debug build, as tests run) and aborted the server. (Each login copies the
    // list of who is online, so the set-up is quadratic: 2,500 keeps it to seconds.)
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| eviction_chain(2_500))
        .unwrap()
        .join()
        .unwrap();
}

/// A hub that is node `epoch` of a cluster, and what it proposes.
fn node_hub(epoch: i64) -> (Hub, tokio::sync::mpsc::Receiver<Proposal>) {
    node_hub_with(epoch, &Limits::default())
}

/// [`node_hub`] with `limits`.
fn node_hub_with(epoch: i64, limits: &Limits) -> (Hub, tokio::sync::mpsc::Receiver<Proposal>) {
    let (proposals, published) = tokio::sync::mpsc::channel(64);
    let hub = Hub::builder(limits, memory_store(limits), Loaded::default())
        .cluster(ClusterSetup {
            epoch,
            proposals,
            base: 1000,
        })
        .build();
    (hub, published)
}

#[test]
fn on_a_cluster_a_proposal_ordered_after_a_later_one_of_its_node_is_refused_on_every_node() {
    let (n7, mut proposed) = node_hub(7);
    let (n9, _) = node_hub(9);
    let ann = n7.join(1, "ann", &fp("ann")).unwrap();
    let mut bob = n9.join(1, "bob", &fp("bob")).unwrap();
    drain(&mut bob);
    let say = |text: &str| match n7.say(ann.outbox.conn_id, "ann", LOBBY, text.into(), false) {
        Ok(Sent::Ordering(rx)) => rx,
        other => panic!("{other:?}"),
    };
    let (mut first, mut second) = (say("one"), say("two"));
    let mut events = Vec::new();
    while let Ok(p) = proposed.try_recv() {
        events.push(crate::cluster::event::decode(&p.bytes).unwrap());
    }
    let lines: Vec<_> = events
        .into_iter()
        .filter(|e| matches!(e, crate::cluster::event::Event::Line { .. }))
        .collect();
    assert_eq!(lines.len(), 2);
    // "one" was sent again after its acknowledgement was lost: the stream has it after "two".
    for (seq, event) in [(1, lines[1].clone()), (2, lines[0].clone())] {
        n7.apply(seq, event.clone());
        n9.apply(seq, event);
    }
    assert!(matches!(second.try_recv(), Ok(Ok(Ordered::Public(a, _))) if a.id == 1001));
    assert!(matches!(first.try_recv(), Ok(Err(SendError::Busy))));
    // Node 9 decided the same: bob got "two" only.
    let mut texts = Vec::new();
    while let Ok(Some(msg)) = bob.outbox.try_recv() {
        if let ServerMsg::Public { text, .. } = ServerMsg::decode(&msg).unwrap() {
            texts.push(text);
        }
    }
    assert_eq!(texts, ["two"]);
}

#[test]
fn on_a_cluster_a_join_that_finds_the_room_made_first_elsewhere_gives_its_creation_back() {
    use crate::cluster::event::{Event, RoomCmd};
    let limits = Limits {
        room_creations_per_user: 1,
        ..Limits::default()
    };
    let (n7, mut from7) = node_hub_with(7, &limits);
    let (n9, mut from9) = node_hub_with(9, &limits);
    let ann = n7.join(1, "ann", &fp("ann")).unwrap();
    let bob = n9.join(1, "bob", &fp("bob")).unwrap();
    let join = |hub: &Hub, m: &Joined, room: &str| {
        hub.room_command(
            m.outbox.conn_id,
            &m.outbox.nick,
            RoomCmd::Join { room: room.into() },
        )
    };
    // Both make #x at once, each on its node; the stream orders bob's first.
    let mut anns = match join(&n7, &ann, "#x") {
        Ok(Joining::Ordering(rx)) => rx,
        other => panic!("{other:?}"),
    };
    assert!(matches!(join(&n9, &bob, "#x"), Ok(Joining::Ordering(_))));
    let room_event = |rx: &mut tokio::sync::mpsc::Receiver<Proposal>| loop {
        let p = rx.try_recv().unwrap();
        let e = crate::cluster::event::decode(&p.bytes).unwrap();
        if matches!(
            e,
            Event::Room {
                cmd: RoomCmd::Join { .. },
                ..
            }
        ) {
            return e;
        }
    };
    let (bobs_join, anns_join) = (room_event(&mut from9), room_event(&mut from7));
    for (seq, event) in [(1, bobs_join), (2, anns_join)] {
        n7.apply(seq, event.clone());
        n9.apply(seq, event);
    }
    let answer = anns.try_recv();
    assert!(matches!(answer, Ok(Ok(_))), "{answer:?}");
    // ann joined bob's room: she created nothing, and may still create one.
    assert!(
        matches!(join(&n7, &ann, "#y"), Ok(Joining::Ordering(_))),
        "ann's creation was used up by a join"
    );
    assert!(matches!(
        join(&n7, &ann, "#z"),
        Err(RoomError::CreationLimit(_))
    ));
}
