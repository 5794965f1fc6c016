//! End-to-end by default through the double's key directory: a session starts from the peer's
//! prekeys whether or not the peer is online, offline mail is delivered at the next login,
//! a restart carries on from the saved state, and `/insecure` is the only way to plain.

use std::path::Path;
use std::time::Duration;

use mm_common::e2e::{E2eEvent, Status, Trust};
use mm_common::protocol::ClientMsg;

use super::world::World;
use super::{config, is_start, ready, relays_from, secure_events, secure_texts, sent_plain};
use super::{contains, CoreConfig};
use crate::core::{Delivery, Event};
use crate::secure::SecureSetup;

/// A world with alice and bob online and a session between them that alice started with a
/// first line ("hello bob"), which bob answered ("hello alice"); every event so far taken.
pub(super) fn secured() -> World {
    let mut world = World::new();
    world.connect("alice");
    world.connect("bob");
    converse(&mut world);
    world
}

/// alice says "hello bob", bob answers "hello alice": the session is up both ways.
fn converse(world: &mut World) {
    let now = world.now;
    world
        .core("alice")
        .private("bob", "hello bob", now)
        .expect("connected");
    world.pump();
    assert_eq!(secure_texts(&world.events("bob"), "alice"), ["hello bob"]);
    let now = world.now;
    let (_, delivery) = world
        .core("bob")
        .private("alice", "hello alice", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.pump();
    assert_eq!(secure_texts(&world.events("alice"), "bob"), ["hello alice"]);
}

/// A configuration for `nick` whose identity, pins and end-to-end state live in `home`, as
/// `mm` loads them at start (each call is a new process).
fn config_at(nick: &str, home: &Path) -> CoreConfig {
    let (secure, _) = SecureSetup::load(home).expect("home loads");
    CoreConfig {
        secure,
        ..config(nick)
    }
}

#[test]
fn a_private_line_is_end_to_end_by_default_and_the_server_never_sees_the_text() {
    let mut world = World::new();
    world.connect("alice");
    world.connect("bob");
    let secret = "the eagle lands at midnight";
    let now = world.now;
    assert_eq!(world.core("alice").secure_status("bob"), Status::Ready);
    let (line, delivery) = world
        .core("alice")
        .private("bob", secret, now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Queued, "it waits for bob's keys");
    assert_eq!(world.core("alice").secure_status("bob"), Status::Starting);
    world.pump();
    let alice = world.events("alice");
    let bob = world.events("bob");
    assert!(ready(&alice, "bob", false), "{alice:?}");
    assert!(ready(&bob, "alice", true), "{bob:?}");
    let bob_key = world.core("bob").public_key();
    assert!(
        secure_events(&alice).iter().any(|e| matches!(e,
            E2eEvent::Ready { key, trust: Trust::New, .. } if *key == bob_key)),
        "alice pinned bob's real key from the directory: {alice:?}"
    );
    assert!(
        alice
            .iter()
            .any(|e| matches!(e, Event::Sent { line: l, .. } if *l == line)),
        "the relay carrying it is answered: {alice:?}"
    );
    assert_eq!(secure_texts(&bob, "alice"), [secret]);
    assert!(
        !bob.iter().any(|e| matches!(e, Event::Private(_))),
        "{bob:?}"
    );

    // The server saw a relay, never a Private, and never the text.
    assert!(!sent_plain(&world, secret));
    assert!(!world
        .server
        .log
        .iter()
        .any(|l| matches!(l.msg, ClientMsg::Private { .. })));
    let relays = relays_from(&world, "alice");
    assert_eq!(relays.len(), 1, "one relay for one line");
    assert!(
        is_start(&relays[0]),
        "the first message carries the X3DH start"
    );
    assert!(!contains(&world.server.raw_in, secret.as_bytes()));
    assert!(!contains(&world.server.raw_out, secret.as_bytes()));
    assert_eq!(world.server.fetches("alice", "bob"), 1);

    // bob answers on the session alice started (no fetch of his own), and once alice has
    // heard back, her messages no longer carry the start.
    let now = world.now;
    let (_, delivery) = world
        .core("bob")
        .private("alice", "roger", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.pump();
    assert_eq!(secure_texts(&world.events("alice"), "bob"), ["roger"]);
    assert_eq!(world.server.fetches("bob", "alice"), 0);
    let now = world.now;
    let (_, delivery) = world
        .core("alice")
        .private("bob", "over and out", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.pump();
    assert_eq!(
        secure_texts(&world.events("bob"), "alice"),
        ["over and out"]
    );
    let relays = relays_from(&world, "alice");
    assert!(
        !is_start(relays.last().expect("sent")),
        "a plain ratchet message"
    );
    assert!(!contains(&world.server.raw_in, b"roger"));
    assert!(!contains(&world.server.raw_in, b"over and out"));
    for (me, peer) in [("alice", "bob"), ("bob", "alice")] {
        assert!(
            matches!(world.core(me).secure_status(peer), Status::Secure { .. }),
            "{me}: {:?}",
            world.core(me).secure_status(peer)
        );
    }
}

#[test]
fn alice_writes_to_offline_bob_who_reads_it_once_at_his_next_login() {
    let mut world = World::new();
    // bob has logged in once (his keys are in the directory), and left.
    world.connect("bob");
    let bob_config = world.client("bob").config.clone();
    world.disconnect("bob");
    world.clients.remove("bob");
    world.connect("alice");
    let texts = ["are you there?", "call me", "it is about the folder"];
    let mut lines = Vec::new();
    for text in texts {
        let now = world.now;
        let (line, _) = world
            .core("alice")
            .private("bob", text, now)
            .expect("connected");
        lines.push(line);
        world.pump();
    }
    let alice = world.events("alice");
    for line in &lines {
        assert!(
            alice.iter().any(|e| matches!(e,
                Event::Queued { line: l, secure_for: Some(p), .. } if l == line && p == "bob")),
            "{line:?} queued end-to-end for bob: {alice:?}"
        );
    }
    assert!(ready(&alice, "bob", false), "{alice:?}");
    for text in texts {
        assert!(!sent_plain(&world, text));
        assert!(!contains(&world.server.raw_in, text.as_bytes()));
    }
    assert_eq!(world.core("alice").unanswered(), 0);

    // bob's next login (the same home: a clone of his configuration).
    world.advance(Duration::from_secs(60));
    world.connect_with("bob", bob_config);
    world.advance(Duration::from_secs(1));
    let bob = world.events("bob");
    assert_eq!(
        secure_texts(&bob, "alice"),
        texts,
        "in order, once: {bob:?}"
    );
    assert!(ready(&bob, "alice", true), "{bob:?}");
    assert!(
        !secure_events(&bob)
            .iter()
            .any(|e| matches!(e, E2eEvent::Unreadable { .. } | E2eEvent::Replayed { .. })),
        "{bob:?}"
    );
    world.advance(Duration::from_secs(5));
    assert!(secure_texts(&world.events("bob"), "alice").is_empty());
    // And bob's answer goes on the same session, with no fetch of alice's keys.
    let now = world.now;
    let (_, delivery) = world
        .core("bob")
        .private("alice", "here now", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.pump();
    assert_eq!(secure_texts(&world.events("alice"), "bob"), ["here now"]);
    assert_eq!(world.server.fetches("bob", "alice"), 0);
}

#[test]
fn insecure_sends_the_next_line_plain_on_purpose_and_secure_takes_it_back() {
    let mut world = secured();
    let now = world.now;
    world.core("alice").insecure("bob", now).expect("secure");
    world.pump();
    let events = world.events("alice");
    assert!(
        secure_events(&events).iter().any(|e| matches!(e,
            E2eEvent::Ended { peer, unsent } if peer == "bob" && unsent.is_empty())),
        "{events:?}"
    );
    assert_eq!(world.core("alice").secure_status("bob"), Status::Plain);
    let now = world.now;
    let (_, delivery) = world
        .core("alice")
        .private("bob", "plain on purpose", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Plain);
    world.pump();
    assert!(sent_plain(&world, "plain on purpose"));
    // bob sees it as a plain line, flagged: his conversation with alice is end-to-end.
    let bob = world.events("bob");
    assert!(
        bob.iter().any(
            |e| matches!(e, Event::Private(l) if l.text == "plain on purpose" && l.from == "alice")
        ),
        "{bob:?}"
    );
    assert!(
        bob.iter()
            .any(|e| matches!(e, Event::Warning(w) if w.contains("NOT end-to-end encrypted"))),
        "{bob:?}"
    );
    assert!(secure_texts(&bob, "alice").is_empty());
    // bob's own lines stay end-to-end (alice's choice is not his), and still decrypt.
    let now = world.now;
    let (_, delivery) = world
        .core("bob")
        .private("alice", "still encrypted", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.pump();
    assert_eq!(
        secure_texts(&world.events("alice"), "bob"),
        ["still encrypted"]
    );
    assert!(!sent_plain(&world, "still encrypted"));
    // /secure again: the kept session, no new fetch.
    let now = world.now;
    world.core("alice").secure("bob", now).expect("plain now");
    assert!(matches!(
        world.core("alice").secure_status("bob"),
        Status::Secure { .. }
    ));
    let (_, delivery) = world
        .core("alice")
        .private("bob", "encrypted again", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.pump();
    assert_eq!(
        secure_texts(&world.events("bob"), "alice"),
        ["encrypted again"]
    );
    assert_eq!(world.server.fetches("alice", "bob"), 1);
}

#[test]
fn a_restarted_client_carries_on_from_its_saved_state_without_fetching_keys_again() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let home = tmp.path().join("alice");
    let mut world = World::new();
    world.connect_with("alice", config_at("alice", &home));
    world.connect("bob");
    converse(&mut world);
    assert_eq!(world.server.fetches("alice", "bob"), 1);
    // alice's process ends (the link drops; nothing is shared with the next process but the
    // home directory).
    world.disconnect("alice");
    world.clients.remove("alice");
    world.advance(Duration::from_secs(10));
    world.connect_with("alice", config_at("alice", &home));
    assert!(
        matches!(
            world.core("alice").secure_status("bob"),
            Status::Secure { .. }
        ),
        "{:?}",
        world.core("alice").secure_status("bob")
    );
    let now = world.now;
    let (_, delivery) = world
        .core("alice")
        .private("bob", "after the restart", now)
        .expect("connected");
    assert_eq!(
        delivery,
        Delivery::Secure,
        "no fetch: the session was saved"
    );
    world.pump();
    assert_eq!(
        secure_texts(&world.events("bob"), "alice"),
        ["after the restart"]
    );
    assert_eq!(world.server.fetches("alice", "bob"), 1, "no second fetch");
    assert!(!is_start(
        relays_from(&world, "alice").last().expect("sent")
    ));
    // And the other way, into the restored ratchet.
    let now = world.now;
    world
        .core("bob")
        .private("alice", "welcome back", now)
        .expect("connected");
    world.pump();
    assert_eq!(
        secure_texts(&world.events("alice"), "bob"),
        ["welcome back"]
    );
    assert!(!sent_plain(&world, "after the restart"));
}

#[test]
fn a_restart_before_the_peer_answered_keeps_the_start_and_the_peer_reads_everything() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let home = tmp.path().join("alice");
    let mut world = World::new();
    world.connect("bob");
    let bob_config = world.client("bob").config.clone();
    world.disconnect("bob");
    world.clients.remove("bob");
    world.connect_with("alice", config_at("alice", &home));
    let now = world.now;
    world
        .core("alice")
        .private("bob", "first", now)
        .expect("connected");
    world.pump();
    world.disconnect("alice");
    world.clients.remove("alice");
    world.connect_with("alice", config_at("alice", &home));
    let now = world.now;
    let (_, delivery) = world
        .core("alice")
        .private("bob", "second", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.pump();
    assert_eq!(world.server.fetches("alice", "bob"), 1);
    let relays = relays_from(&world, "alice");
    assert_eq!(relays.len(), 2);
    assert!(
        relays.iter().all(|r| is_start(r)),
        "bob has not answered: both carry the start"
    );
    world.connect_with("bob", bob_config);
    world.pump();
    assert_eq!(
        secure_texts(&world.events("bob"), "alice"),
        ["first", "second"]
    );
}

#[test]
fn sixty_lines_typed_while_the_keys_are_fetched_all_arrive_in_order_within_the_rate() {
    let mut world = World::with_rate(10, 5);
    world.connect("alice");
    world.connect("bob");
    let now = world.now;
    let texts: Vec<String> = (0..60).map(|i| format!("queued {i}")).collect();
    let mut lines = Vec::new();
    for text in &texts {
        let (line, delivery) = world
            .core("alice")
            .private("bob", text, now)
            .expect("room in the queue");
        assert_eq!(delivery, Delivery::Queued);
        lines.push(line);
    }
    world.pump();
    world.advance(Duration::from_secs(20));
    assert_eq!(secure_texts(&world.events("bob"), "alice"), texts);
    assert_eq!(world.server.rate_violations, 0);
    assert_eq!(world.server.fetches("alice", "bob"), 1, "one fetch for all");
    let alice = world.events("alice");
    for line in lines {
        assert!(
            alice
                .iter()
                .any(|e| matches!(e, Event::Sent { line: l, .. } if *l == line)),
            "{line:?} answered: {alice:?}"
        );
    }
    assert_eq!(world.core("alice").unanswered(), 0);
}

#[test]
fn every_login_publishes_keys_and_each_one_time_prekey_is_used_once() {
    let mut world = World::new();
    world.connect("bob");
    let published = world.server.directory["bob"].one_time.len();
    assert!(published > 0, "bob published one-time prekeys at login");
    assert!(world.server.log.iter().any(|l| l.from == "bob"
        && matches!(&l.msg, ClientMsg::PublishKeys { keys } if keys.identity == *world.clients["bob"].config.secure.identity.public())));
    for nick in ["alice", "carol", "dave"] {
        world.connect(nick);
        let now = world.now;
        world
            .core(nick)
            .private("bob", &format!("from {nick}"), now)
            .expect("connected");
        world.pump();
    }
    assert_eq!(world.server.directory["bob"].one_time.len(), published - 3);
    let bob = world.events("bob");
    for nick in ["alice", "carol", "dave"] {
        assert_eq!(secure_texts(&bob, nick), [format!("from {nick}")]);
    }
}
