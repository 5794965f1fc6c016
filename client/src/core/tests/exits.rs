// About 500 lines: one test per way a conversation fails or leaves end-to-end; they share
// its helpers.
//! Every way a conversation fails or leaves end-to-end encryption that cores and the server
//! double can produce: no keys, no such user, a changed key (in the directory, or in a
//! message), our own key, a bad signature, a fetch not answered, altered, replayed, dropped
//! or refused messages, a link drop while keys are fetched. For each: the status, what the
//! user is told, and that nothing goes plain unless the user chose it (`/insecure`).

use std::time::Duration;

use mm_common::e2e::{E2eEvent, Failure, Refused, Status};
use mm_common::protocol::{ClientMsg, ErrorCode};

use super::secure::secured;
use super::world::World;
use super::{config, relays_from, secure_events, secure_texts, sent_plain};
use crate::core::{Delivery, Event, SendError};

/// Whether `events` hold `Failed` for `peer` with `failure`, with these texts unsent.
fn failed(events: &[Event], peer: &str, failure: &Failure, unsent: &[u64]) -> bool {
    secure_events(events).iter().any(|e| {
        matches!(e, E2eEvent::Failed { peer: p, failure: f, unsent: u }
            if p == peer && f == failure && u == unsent)
    })
}

/// Whether `events` say a message from `peer` could not be read.
fn unreadable(events: &[Event], peer: &str) -> bool {
    secure_events(events)
        .iter()
        .any(|e| matches!(e, E2eEvent::Unreadable { peer: p } if p == peer))
}

/// Whether the double received any relay or private line at all.
fn anything_sent(world: &World, from: &str) -> bool {
    world.server.log.iter().any(|l| {
        l.from == from && matches!(l.msg, ClientMsg::Relay { .. } | ClientMsg::Private { .. })
    })
}

#[test]
fn a_peer_without_keys_gets_nothing_and_the_waiting_line_is_dropped_visibly() {
    let mut world = World::new();
    // bob's account exists, but he never published keys (a protocol 5 client).
    world.server.registered.insert("bob".into());
    world.connect("alice");
    let now = world.now;
    let (line, delivery) = world
        .core("alice")
        .private("bob", "hello?", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Queued);
    world.pump();
    let events = world.events("alice");
    assert!(
        failed(&events, "bob", &Failure::NoKeys, &[line.get()]),
        "{events:?}"
    );
    assert!(!anything_sent(&world, "alice"), "never sent plain");
    assert_eq!(
        world.core("alice").unanswered(),
        0,
        "the line has its answer"
    );
    assert_eq!(
        world.core("alice").secure_status("bob"),
        Status::Failed(Failure::NoKeys)
    );
    // Not blocking: the next line asks again (and fails again, visibly).
    let now = world.now;
    let (again, delivery) = world
        .core("alice")
        .private("bob", "hello again?", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Queued);
    world.pump();
    assert!(failed(
        &world.events("alice"),
        "bob",
        &Failure::NoKeys,
        &[again.get()]
    ));
    assert_eq!(world.server.fetches("alice", "bob"), 2);
    assert!(!anything_sent(&world, "alice"));
    // Only the user's /insecure makes it plain.
    let now = world.now;
    world
        .core("alice")
        .insecure("bob", now)
        .expect("end-to-end");
    let (_, delivery) = world
        .core("alice")
        .private("bob", "plain, by choice", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Plain);
    world.pump();
    assert!(sent_plain(&world, "plain, by choice"));
    assert!(!sent_plain(&world, "hello?"));
}

#[test]
fn a_nick_nobody_has_is_said_and_nothing_is_sent() {
    let mut world = World::new();
    world.connect("alice");
    let now = world.now;
    let (line, _) = world
        .core("alice")
        .private("nobody", "anyone?", now)
        .expect("connected");
    world.pump();
    let events = world.events("alice");
    assert!(
        failed(&events, "nobody", &Failure::NoSuchUser, &[line.get()]),
        "{events:?}"
    );
    assert!(!anything_sent(&world, "alice"));
    assert_eq!(world.core("alice").unanswered(), 0);
}

#[test]
fn a_fetch_the_server_never_answers_fails_the_waiting_lines_in_time() {
    let mut world = World::new();
    world.connect("bob");
    world.connect("alice");
    world.server.ignore_fetches = true;
    let now = world.now;
    let (line, delivery) = world
        .core("alice")
        .private("bob", "slow server", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Queued);
    world.advance(Duration::from_secs(29));
    assert!(secure_events(&world.events("alice")).is_empty());
    assert_eq!(world.core("alice").secure_status("bob"), Status::Starting);
    world.advance(Duration::from_secs(2));
    let events = world.events("alice");
    assert!(
        failed(&events, "bob", &Failure::Timeout, &[line.get()]),
        "{events:?}"
    );
    assert_eq!(world.core("alice").unanswered(), 0);
    assert!(!anything_sent(&world, "alice"));
    // The next line tries again.
    world.server.ignore_fetches = false;
    let now = world.now;
    world
        .core("alice")
        .private("bob", "second try", now)
        .expect("connected");
    world.pump();
    assert_eq!(secure_texts(&world.events("bob"), "alice"), ["second try"]);
}

#[test]
fn a_changed_key_in_the_directory_blocks_sending_until_the_user_accepts_it() {
    let mut world = World::new();
    world.connect("bob");
    let bob_key = *world.client("bob").config.secure.identity.public();
    // alice pinned another key for bob (met before; the directory now hands out a new one).
    let old_key = *mm_common::identity::Identity::generate().public();
    let mut alice = config("alice");
    alice.secure.pins.pin_new("bob", &old_key);
    world.connect_with("alice", alice);
    let now = world.now;
    let (line, _) = world
        .core("alice")
        .private("bob", "is it you?", now)
        .expect("connected");
    world.pump();
    let changed = Failure::KeyChanged {
        pinned: old_key,
        presented: bob_key,
    };
    let events = world.events("alice");
    assert!(
        failed(&events, "bob", &changed, &[line.get()]),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::SafetyNumber { peer, new_key: true, .. } if peer == "bob")),
        "the new key's safety number, to compare: {events:?}"
    );
    assert_eq!(
        world.core("alice").secure_status("bob"),
        Status::Failed(changed)
    );
    let now = world.now;
    let sent = world.core("alice").private("bob", "still you?", now);
    assert!(
        matches!(&sent, Err(SendError::Refused(Refused::KeyNotAccepted(p))) if p == "bob"),
        "{sent:?}"
    );
    world.advance(Duration::from_secs(60));
    assert!(
        !anything_sent(&world, "alice"),
        "nothing at all went to bob"
    );
    assert_eq!(world.core("alice").unanswered(), 0);
    // The safety number of the new key is the one bob sees (he pins alice's key when she
    // writes; here he computes it from hers).
    let number = world.core("alice").safety_number("bob").expect("presented");
    let now = world.now;
    world.core("alice").accept_key("bob", now).expect("changed");
    world
        .core("alice")
        .mark_verified("bob", now)
        .expect("pinned");
    let (_, delivery) = world
        .core("alice")
        .private("bob", "verified now", now)
        .expect("connected");
    assert_eq!(
        delivery,
        Delivery::Queued,
        "a new session from the directory"
    );
    world.pump();
    assert_eq!(
        secure_texts(&world.events("bob"), "alice"),
        ["verified now"]
    );
    assert_eq!(
        world.core("bob").safety_number("alice").expect("pinned"),
        number
    );
    assert!(matches!(
        world.core("alice").secure_status("bob"),
        Status::Secure { key, .. } if key == bob_key
    ));
}

#[test]
fn a_peer_back_with_a_new_identity_is_stopped_before_its_messages_are_shown() {
    let mut world = secured();
    // bob lost his home: the same nick with a new identity, new keys in the directory.
    world.disconnect("bob");
    world.clients.remove("bob");
    world.advance(Duration::from_secs(10));
    world.events("alice");
    world.connect_with("bob", config("bob"));
    let new_key = world.core("bob").public_key();
    let now = world.now;
    world
        .core("bob")
        .private("alice", "it is me, new phone", now)
        .expect("connected");
    world.pump();
    let events = world.events("alice");
    assert!(secure_texts(&events, "bob").is_empty(), "{events:?}");
    assert!(
        secure_events(&events).iter().any(|e| matches!(e,
            E2eEvent::Failed { failure: Failure::KeyChanged { presented, .. }, .. } if *presented == new_key)),
        "{events:?}"
    );
    let now = world.now;
    let sent = world.core("alice").private("bob", "who is this?", now);
    assert!(
        matches!(&sent, Err(SendError::Refused(Refused::KeyNotAccepted(_)))),
        "{sent:?}"
    );
    assert!(!sent_plain(&world, "who is this?"));
    // /insecure is the other way out: plain, by choice.
    world.core("alice").insecure("bob", now).expect("blocked");
    let (_, delivery) = world
        .core("alice")
        .private("bob", "plain then", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Plain);
}

#[test]
fn a_peer_presenting_our_own_key_is_refused_and_never_pinned() {
    let mut world = World::new();
    world.connect("alice");
    let mut shared = config("bob");
    shared.secure.identity = world.client("alice").config.secure.identity.clone();
    world.connect_with("bob", shared);
    let now = world.now;
    let (line, _) = world
        .core("alice")
        .private("bob", "to myself?", now)
        .expect("connected");
    world.pump();
    let events = world.events("alice");
    assert!(
        failed(&events, "bob", &Failure::OwnKey, &[line.get()]),
        "{events:?}"
    );
    assert_eq!(
        world.core("alice").secure_status("bob"),
        Status::Failed(Failure::OwnKey)
    );
    assert!(
        world.core("alice").safety_number("bob").is_err(),
        "never pinned"
    );
    let now = world.now;
    let sent = world.core("alice").private("bob", "again?", now);
    assert!(
        matches!(
            &sent,
            Err(SendError::Refused(Refused::Blocked {
                failure: Failure::OwnKey,
                ..
            }))
        ),
        "{sent:?}"
    );
    assert!(!anything_sent(&world, "alice"));
}

#[test]
fn a_bundle_whose_signature_fails_blocks_until_secure_fetches_again() {
    let mut world = World::new();
    world.connect("bob");
    world.connect("alice");
    let good = world.server.directory["bob"]
        .signed_prekey
        .signature
        .clone();
    world
        .server
        .directory
        .get_mut("bob")
        .expect("published")
        .signed_prekey
        .signature[5] ^= 0x40;
    let now = world.now;
    let (line, _) = world
        .core("alice")
        .private("bob", "hi", now)
        .expect("connected");
    world.pump();
    let events = world.events("alice");
    assert!(
        failed(&events, "bob", &Failure::BadSignature, &[line.get()]),
        "{events:?}"
    );
    let now = world.now;
    let sent = world.core("alice").private("bob", "hi?", now);
    assert!(
        matches!(
            &sent,
            Err(SendError::Refused(Refused::Blocked {
                failure: Failure::BadSignature,
                ..
            }))
        ),
        "{sent:?}"
    );
    assert!(!anything_sent(&world, "alice"));
    // The directory is honest again; /secure is the retry.
    world
        .server
        .directory
        .get_mut("bob")
        .expect("published")
        .signed_prekey
        .signature = good;
    world.core("alice").secure("bob", now).expect("blocked");
    world.pump();
    let now = world.now;
    let (_, delivery) = world
        .core("alice")
        .private("bob", "hi again", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.pump();
    assert_eq!(secure_texts(&world.events("bob"), "alice"), ["hi again"]);
}

#[test]
fn an_altered_message_is_not_shown_and_the_session_carries_on() {
    let mut world = secured();
    world.server.tamper_next_relay_from = Some("alice".into());
    let now = world.now;
    world
        .core("alice")
        .private("bob", "altered on the way", now)
        .expect("connected");
    world.pump();
    let bob = world.events("bob");
    assert!(secure_texts(&bob, "alice").is_empty(), "{bob:?}");
    assert!(unreadable(&bob, "alice"), "{bob:?}");
    let now = world.now;
    world
        .core("alice")
        .private("bob", "intact", now)
        .expect("connected");
    world.pump();
    assert_eq!(secure_texts(&world.events("bob"), "alice"), ["intact"]);
    assert!(matches!(
        world.core("bob").secure_status("alice"),
        Status::Secure { .. }
    ));
}

#[test]
fn a_replayed_message_is_shown_once_and_the_replay_is_said() {
    let mut world = secured();
    let now = world.now;
    world
        .core("alice")
        .private("bob", "pay 10 to carol", now)
        .expect("connected");
    world.pump();
    assert_eq!(
        secure_texts(&world.events("bob"), "alice"),
        ["pay 10 to carol"]
    );
    let payload = relays_from(&world, "alice").pop().expect("sent");
    world.server.inject_relay("alice", "bob", payload, now);
    world.pump();
    let bob = world.events("bob");
    assert!(secure_texts(&bob, "alice").is_empty(), "{bob:?}");
    assert!(
        secure_events(&bob)
            .iter()
            .any(|e| matches!(e, E2eEvent::Replayed { peer } if peer == "alice")),
        "{bob:?}"
    );
    // The first message of the session (with its X3DH start) replayed: also refused.
    let first = relays_from(&world, "alice").remove(0);
    world.server.inject_relay("alice", "bob", first, now);
    world.pump();
    let bob = world.events("bob");
    assert!(secure_texts(&bob, "alice").is_empty(), "{bob:?}");
}

#[test]
fn a_dropped_message_does_not_stop_the_later_ones() {
    let mut world = secured();
    world.server.hold_relays_from.insert("alice".into());
    let now = world.now;
    world
        .core("alice")
        .private("bob", "lost", now)
        .expect("connected");
    world.pump();
    world.server.held.clear();
    world.server.hold_relays_from.clear();
    for text in ["after 1", "after 2"] {
        let now = world.now;
        world
            .core("alice")
            .private("bob", text, now)
            .expect("connected");
        world.pump();
    }
    assert_eq!(
        secure_texts(&world.events("bob"), "alice"),
        ["after 1", "after 2"]
    );
}

#[test]
fn a_relay_the_server_refuses_is_answered_once_and_the_next_line_still_decrypts() {
    let mut world = secured();
    world.server.refuse_next_relay_from = Some(("alice".into(), ErrorCode::RATE_LIMITED));
    let now = world.now;
    let (line, delivery) = world
        .core("alice")
        .private("bob", "refused", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.pump();
    let events = world.events("alice");
    let answers = events
        .iter()
        .filter(|e| {
            matches!(e,
            Event::Sent { line: l, .. } | Event::Queued { line: l, .. }
                | Event::Error { line: Some(l), .. } if *l == line)
        })
        .count();
    assert_eq!(answers, 1, "{events:?}");
    assert!(
        events.iter().any(|e| matches!(e,
            Event::Error { line: Some(l), code, .. } if *l == line && *code == ErrorCode::RATE_LIMITED)),
        "{events:?}"
    );
    assert_eq!(world.core("alice").unanswered(), 0);
    let now = world.now;
    world
        .core("alice")
        .private("bob", "next", now)
        .expect("connected");
    world.pump();
    assert_eq!(secure_texts(&world.events("bob"), "alice"), ["next"]);
    assert!(!sent_plain(&world, "refused"));
}

/// A link drop while a line waits for the peer's keys, with `reconnects` as given: with a next
/// connection to come, the line is carried and sent on it once (not reported undelivered);
/// without, it is reported undelivered and never sent later, even when a connection with the
/// same sessions logs in again (the user may have typed it again).
fn link_drop_while_waiting_for_keys(reconnects: bool) {
    let mut world = World::new();
    world.connect("bob");
    let mut alice = config("alice");
    alice.reconnects = reconnects;
    world.connect_with("alice", alice);
    let now = world.now;
    let (waiting, delivery) = world
        .core("alice")
        .private("bob", "typed as the link dropped", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Queued);
    // The link drops before the fetch is even written.
    world.disconnect("alice");
    let events = world.events("alice");
    let undelivered = events
        .iter()
        .any(|e| matches!(e, Event::Closed { undelivered, .. } if undelivered.contains(&waiting)));
    assert_eq!(undelivered, !reconnects, "{events:?}");
    world.advance(Duration::from_secs(10));
    let config = world.client("alice").config.clone();
    if reconnects {
        // As the driver does: the next connection adopts what the dropped one carried.
        let mut old = world.clients.remove("alice").expect("alice");
        world.start("alice", config);
        world.core("alice").adopt_events(&mut old.core);
        world.pump();
    } else {
        world.connect_with("alice", config);
    }
    world.advance(Duration::from_secs(2));
    let bob = world.events("bob");
    let arrived = secure_texts(&bob, "alice");
    assert_eq!(arrived.len(), usize::from(reconnects), "{bob:?}");
    let alice = world.events("alice");
    assert_eq!(
        alice
            .iter()
            .filter(|e| matches!(e, Event::Sent { line, .. } if *line == waiting))
            .count(),
        usize::from(reconnects),
        "{alice:?}"
    );
    assert_eq!(world.core("alice").unanswered(), 0);
    assert!(!sent_plain(&world, "typed as the link dropped"));
}

#[test]
fn a_line_waiting_for_keys_when_the_link_drops_goes_once_on_the_next_connection() {
    link_drop_while_waiting_for_keys(true);
}

#[test]
fn a_line_waiting_for_keys_reported_undelivered_is_never_sent_later() {
    link_drop_while_waiting_for_keys(false);
}

#[test]
fn messages_delivered_out_of_order_all_decrypt_once() {
    let mut world = secured();
    world.server.hold_relays_from.insert("alice".into());
    for text in ["late 1", "late 2"] {
        let now = world.now;
        world
            .core("alice")
            .private("bob", text, now)
            .expect("connected");
        world.pump();
    }
    world.server.hold_relays_from.clear();
    let now = world.now;
    world
        .core("alice")
        .private("bob", "early", now)
        .expect("connected");
    world.pump();
    world.server.release_held(now);
    world.pump();
    let bob = world.events("bob");
    assert_eq!(
        secure_texts(&bob, "alice"),
        ["early", "late 1", "late 2"],
        "{bob:?}"
    );
    assert!(!unreadable(&bob, "alice"));
}

#[test]
fn a_message_under_a_new_identity_is_held_then_shown_after_accept_key() {
    let mut world = secured();
    world.disconnect("bob");
    world.clients.remove("bob");
    world.advance(Duration::from_secs(10));
    world.events("alice");
    world.connect_with("bob", config("bob"));
    let new_key = world.core("bob").public_key();
    let now = world.now;
    world
        .core("bob")
        .private("alice", "it is me, new phone", now)
        .expect("connected");
    world.pump();
    let events = world.events("alice");
    assert!(secure_texts(&events, "bob").is_empty(), "{events:?}");
    // Said at once: one message waits, and what shows it.
    assert!(
        secure_events(&events).iter().any(|e| matches!(e,
            E2eEvent::Held { peer, held: 1, dropped: 0 } if peer == "bob")),
        "{events:?}"
    );
    // /insecure does not show it.
    let now = world.now;
    world.core("alice").insecure("bob", now).expect("blocked");
    world.pump();
    assert!(secure_texts(&world.events("alice"), "bob").is_empty());
    world.core("alice").accept_key("bob", now).expect("changed");
    world.pump();
    let events = world.events("alice");
    assert!(
        secure_events(&events).iter().any(|e| matches!(e,
            E2eEvent::Released { key, count: 1, .. } if *key == new_key)),
        "{events:?}"
    );
    assert_eq!(secure_texts(&events, "bob"), ["it is me, new phone"]);
}

/// alice (whose end-to-end state is saved in a file, which cannot be written when `breaks`)
/// and bob talk; bob comes back with a new identity and writes. Returns whether alice
/// acknowledged anything after that, and her events.
fn held_while_saving(breaks: bool) -> (bool, Vec<Event>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("home");
    std::fs::create_dir(&dir).expect("mkdir");
    let mut world = World::new();
    let mut alice = config("alice");
    alice.secure.state_file = Some(dir.join(crate::secure::STATE_FILE));
    world.connect_with("alice", alice);
    world.connect("bob");
    let now = world.now;
    world
        .core("bob")
        .private("alice", "hello alice", now)
        .expect("connected");
    world.pump();
    world.advance(Duration::from_secs(5));
    assert_eq!(secure_texts(&world.events("alice"), "bob"), ["hello alice"]);
    world.disconnect("bob");
    world.clients.remove("bob");
    world.connect_with("bob", config("bob"));
    if breaks {
        std::fs::remove_dir_all(&dir).expect("rm");
    }
    let before = world.server.log.len();
    let now = world.now;
    world
        .core("bob")
        .private("alice", "new phone", now)
        .expect("connected");
    world.pump();
    world.advance(Duration::from_secs(5));
    let acked = world.server.log[before..]
        .iter()
        .any(|l| l.from == "alice" && matches!(l.msg, ClientMsg::Received { .. }));
    (acked, world.events("alice"))
}

#[test]
fn a_held_message_is_acknowledged_only_once_saved() {
    for breaks in [false, true] {
        let (acked, events) = held_while_saving(breaks);
        assert!(
            secure_events(&events)
                .iter()
                .any(|e| matches!(e, E2eEvent::Held { held: 1, .. })),
            "said either way: {events:?}"
        );
        assert_eq!(acked, !breaks, "saving failed: {breaks}; {events:?}");
    }
}

/// alice's end-to-end state is saved in a file; bob comes back with a new identity and writes:
/// held. alice says `/accept-key` while her home cannot be written: the released message is
/// not shown (its state is not saved), and the server will not send it again (acknowledged
/// when it was held). Once a save works again, it is shown.
#[test]
fn a_message_released_while_saving_fails_is_shown_once_a_save_works() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("home");
    std::fs::create_dir(&dir).expect("mkdir");
    let mut world = World::new();
    let mut alice = config("alice");
    alice.secure.state_file = Some(dir.join(crate::secure::STATE_FILE));
    world.connect_with("alice", alice);
    world.connect("bob");
    let now = world.now;
    world
        .core("bob")
        .private("alice", "hello alice", now)
        .expect("connected");
    world.pump();
    world.advance(Duration::from_secs(5));
    world.disconnect("bob");
    world.clients.remove("bob");
    world.connect_with("bob", config("bob"));
    let now = world.now;
    world
        .core("bob")
        .private("alice", "new phone", now)
        .expect("connected");
    world.pump();
    world.advance(Duration::from_secs(5));
    let events = world.events("alice");
    assert!(
        secure_events(&events)
            .iter()
            .any(|e| matches!(e, E2eEvent::Held { held: 1, .. })),
        "{events:?}"
    );
    // The home cannot be written: /accept-key shows nothing.
    std::fs::remove_dir_all(&dir).expect("rm");
    let now = world.now;
    world.core("alice").accept_key("bob", now).expect("changed");
    world.pump();
    world.advance(Duration::from_secs(3));
    let events = world.events("alice");
    assert!(secure_texts(&events, "bob").is_empty(), "{events:?}");
    // It can again: shown (once), with no help from the server.
    std::fs::create_dir(&dir).expect("mkdir");
    world.advance(Duration::from_secs(3));
    let events = world.events("alice");
    assert_eq!(secure_texts(&events, "bob"), ["new phone"], "{events:?}");
    world.advance(Duration::from_secs(3));
    assert!(secure_texts(&world.events("alice"), "bob").is_empty());
}

/// `/secure` while lines wait for the peer's keys, one of them typed after `/insecure` (for
/// plain): done (not refused as "being set up"), and when the keys come every waiting line goes
/// end-to-end encrypted — none plain, since the user's last word was `/secure`.
#[test]
fn secure_again_while_the_keys_are_fetched_sends_the_lines_waiting_encrypted() {
    let mut world = World::new();
    world.connect("bob");
    world.connect("alice");
    world.server.slow_fetches = Some(Vec::new());
    let now = world.now;
    let (_, delivery) = world
        .core("alice")
        .private("bob", "first", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Queued);
    world.pump();
    world.core("alice").insecure("bob", now).expect("secure");
    let (_, delivery) = world
        .core("alice")
        .private("bob", "typed while plain", now)
        .expect("connected");
    assert_eq!(
        delivery,
        Delivery::Plain,
        "waits behind the first, for plain"
    );
    world
        .core("alice")
        .secure("bob", now)
        .expect("done, not refused");
    world.pump();
    assert!(
        secure_events(&world.events("alice"))
            .iter()
            .any(|e| matches!(e, E2eEvent::Resumed { peer } if peer == "bob")),
        "said"
    );
    world.server.answer_fetches();
    world.pump();
    world.advance(Duration::from_secs(2));
    let events = world.events("bob");
    assert_eq!(
        secure_texts(&events, "alice"),
        ["first", "typed while plain"],
        "{events:?}"
    );
    assert!(!sent_plain(&world, "typed while plain"));
}
