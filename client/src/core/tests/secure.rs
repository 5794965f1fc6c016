//! End-to-end sessions through the server double: set up, used, renewed, and kept across a
//! reconnect without ever going plain.

use std::time::Duration;

use mm_common::e2e::{E2eConfig, Failure, Status};
use mm_common::protocol::ClientMsg;

use super::world::World;
use super::{config_e2e, contains, ready, secure_texts, sent_plain};
use crate::core::{Delivery, Event};

/// A world with alice and bob online (made with `e2e`), a secure session between them set up
/// by alice, and every event so far taken.
pub(super) fn secured_with(e2e: &E2eConfig) -> World {
    let mut world = World::new();
    world.connect_with("alice", config_e2e("alice", e2e.clone()));
    world.connect_with("bob", config_e2e("bob", e2e.clone()));
    let now = world.now;
    world.core("alice").secure("bob", now).expect("connected");
    world.pump();
    let alice = world.events("alice");
    let bob = world.events("bob");
    assert!(ready(&alice, "bob", false), "{alice:?}");
    assert!(ready(&bob, "alice", false), "{bob:?}");
    world
}

/// [`secured_with`] the default end-to-end tunables.
pub(super) fn secured() -> World {
    secured_with(&E2eConfig::default())
}

#[test]
fn a_secure_session_comes_up_on_both_sides_and_the_server_never_sees_the_text() {
    let mut world = secured();
    for (me, peer) in [("alice", "bob"), ("bob", "alice")] {
        assert!(
            matches!(world.core(me).secure_status(peer), Status::Secure { .. }),
            "{me}: {:?}",
            world.core(me).secure_status(peer)
        );
    }
    let secret = "the eagle lands at midnight";
    let now = world.now;
    let (line, delivery) = world
        .core("alice")
        .private("bob", secret, now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.pump();
    assert_eq!(secure_texts(&world.events("bob"), "alice"), [secret]);
    let alice = world.events("alice");
    assert!(
        alice
            .iter()
            .any(|e| matches!(e, Event::Sent { line: l, .. } if *l == line)),
        "the relay carrying it is answered: {alice:?}"
    );
    // Both ways.
    let now = world.now;
    let (_, delivery) = world
        .core("bob")
        .private("alice", "roger", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.pump();
    assert_eq!(secure_texts(&world.events("alice"), "bob"), ["roger"]);
    // Nothing the double received or sent holds a text, and no relay is readable.
    assert!(!contains(&world.server.raw_in, secret.as_bytes()));
    assert!(!contains(&world.server.raw_out, secret.as_bytes()));
    assert!(!contains(&world.server.raw_in, b"roger"));
    assert!(!sent_plain(&world, secret));
    let relays = world
        .server
        .log
        .iter()
        .filter(|l| {
            matches!(&l.msg, ClientMsg::Relay { payload, .. }
            if !contains(payload, secret.as_bytes()))
        })
        .count();
    assert!(relays >= 4, "handshake and texts went as relays: {relays}");
}

#[test]
fn a_session_renews_itself_after_the_renewal_interval_without_a_plain_line() {
    let e2e = E2eConfig {
        rehandshake_after: Duration::from_secs(60),
        ..E2eConfig::default()
    };
    let mut world = secured_with(&e2e);
    world.advance(Duration::from_secs(59));
    assert!(!ready(&world.events("alice"), "bob", true), "not yet");
    world.advance(Duration::from_secs(3));
    let alice = world.events("alice");
    let bob = world.events("bob");
    assert!(ready(&alice, "bob", true), "alice renewed: {alice:?}");
    assert!(ready(&bob, "alice", true), "bob renewed: {bob:?}");
    for (me, peer) in [("alice", "bob"), ("bob", "alice")] {
        assert!(matches!(
            world.core(me).secure_status(peer),
            Status::Secure { .. }
        ));
    }
    let now = world.now;
    let (_, delivery) = world
        .core("alice")
        .private("bob", "after renewal", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.pump();
    assert_eq!(
        secure_texts(&world.events("bob"), "alice"),
        ["after renewal"]
    );
    assert!(!sent_plain(&world, "after renewal"));
    assert!(
        !world
            .server
            .log
            .iter()
            .any(|l| matches!(l.msg, ClientMsg::Private { .. })),
        "no plain line at all"
    );
}

#[test]
fn a_reconnect_never_turns_a_secure_conversation_plain() {
    let mut world = secured();
    // A line typed just as the link drops: never written.
    let now = world.now;
    let (lost, _) = world
        .core("alice")
        .private("bob", "in flight", now)
        .expect("connected");
    world.disconnect("alice");
    let events = world.events("alice");
    assert!(
        matches!(events.last(), Some(Event::Closed { undelivered, .. }) if undelivered == &[lost]),
        "{events:?}"
    );
    let bob = world.events("bob");
    assert!(
        matches!(
            world.core("bob").secure_status("alice"),
            Status::Interrupted {
                reason: Failure::PeerLeft,
                ..
            }
        ),
        "bob: {:?} after {bob:?}",
        world.core("bob").secure_status("alice")
    );

    // The new connection, made with a clone of the same configuration; the double holds
    // alice's relays back so that we can look at the conversation before the session is up.
    world.advance(Duration::from_secs(10));
    world.server.hold_relays_from.insert("alice".into());
    let config = world.client("alice").config.clone();
    world.connect_with("alice", config);
    let status = world.core("alice").secure_status("bob");
    assert!(
        !matches!(status, Status::Plain | Status::Secure { .. }),
        "{status:?}"
    );
    let now = world.now;
    let sent = world
        .core("alice")
        .private("bob", "after the reconnect", now);
    assert!(
        matches!(sent, Ok((_, Delivery::Queued)) | Err(_)),
        "queued or refused, never plain: {sent:?}"
    );
    world.pump();
    assert!(!sent_plain(&world, "after the reconnect"));

    // The session restarts by itself once both are online and the relays flow.
    world.server.hold_relays_from.clear();
    let now = world.now;
    world.server.release_held(now);
    world.pump();
    world.advance(Duration::from_secs(40));
    for (me, peer) in [("alice", "bob"), ("bob", "alice")] {
        assert!(
            matches!(world.core(me).secure_status(peer), Status::Secure { .. }),
            "{me}: {:?}",
            world.core(me).secure_status(peer)
        );
    }
    let alice = world.events("alice");
    assert!(ready(&alice, "bob", false), "{alice:?}");
    let now = world.now;
    let (_, delivery) = world
        .core("alice")
        .private("bob", "secure again", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.pump();
    let bob = world.events("bob");
    assert!(
        secure_texts(&bob, "alice").contains(&"secure again".to_string()),
        "{bob:?}"
    );
    assert!(!sent_plain(&world, "secure again"));
    assert!(!sent_plain(&world, "in flight"));
}

#[test]
fn texts_keep_arriving_across_rekeys_in_both_directions() {
    let e2e = E2eConfig {
        rekey_every: 3,
        ..E2eConfig::default()
    };
    let mut world = secured_with(&e2e);
    let texts: Vec<String> = (0..10).map(|i| format!("text {i}")).collect();
    for text in &texts {
        let now = world.now;
        let (_, delivery) = world
            .core("alice")
            .private("bob", text, now)
            .expect("connected");
        assert_eq!(delivery, Delivery::Secure);
        let (_, delivery) = world
            .core("bob")
            .private("alice", text, now)
            .expect("connected");
        assert_eq!(delivery, Delivery::Secure);
        world.advance(Duration::from_millis(500));
    }
    assert_eq!(secure_texts(&world.events("bob"), "alice"), texts);
    assert_eq!(secure_texts(&world.events("alice"), "bob"), texts);
    assert!(!sent_plain(&world, "text 0"));
}

#[test]
fn a_line_waiting_for_a_session_when_the_link_drops_is_reported_undelivered_and_never_sent_later() {
    let mut world = World::new();
    world.connect("alice");
    world.connect("bob");
    world.server.hold_relays_from.insert("bob".into());
    let now = world.now;
    world.core("alice").secure("bob", now).expect("connected");
    let (waiting, delivery) = world
        .core("alice")
        .private("bob", "typed too early", now)
        .expect("queued");
    assert_eq!(delivery, Delivery::Queued);
    world.pump();
    world.disconnect("alice");
    let events = world.events("alice");
    assert!(
        matches!(events.last(), Some(Event::Closed { undelivered, .. }) if undelivered.contains(&waiting)),
        "{events:?}"
    );
    // The session comes up on the next connection; the line reported undelivered stays unsent
    // (the user may have sent it again: it must not arrive twice).
    world.server.hold_relays_from.clear();
    world.server.held.clear();
    world.advance(Duration::from_secs(10));
    let config = world.client("alice").config.clone();
    world.connect_with("alice", config);
    world.advance(Duration::from_secs(2));
    assert!(matches!(
        world.core("alice").secure_status("bob"),
        Status::Secure { .. }
    ));
    let bob = world.events("bob");
    assert!(secure_texts(&bob, "alice").is_empty(), "{bob:?}");
    assert!(!sent_plain(&world, "typed too early"));
}

#[test]
fn sixty_lines_typed_while_the_session_starts_all_arrive_in_order_within_the_rate() {
    let mut world = World::with_rate(10, 5);
    world.connect("alice");
    world.connect("bob");
    let now = world.now;
    world.core("alice").secure("bob", now).expect("connected");
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
fn a_secure_line_crossing_the_peers_departure_is_answered_once_with_the_refusal() {
    let mut world = secured();
    let now = world.now;
    // Encrypted and queued, but not written yet when bob's link drops.
    let (line, delivery) = world
        .core("alice")
        .private("bob", "too late", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.disconnect("bob");
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
            Event::Error { line: Some(l), code, .. }
                if *l == line && *code == mm_common::protocol::ErrorCode::NO_SUCH_NICK)),
        "{events:?}"
    );
    assert_eq!(world.core("alice").unanswered(), 0);
    assert!(matches!(
        world.core("alice").secure_status("bob"),
        Status::Interrupted { .. }
    ));
    assert!(!sent_plain(&world, "too late"));
}
