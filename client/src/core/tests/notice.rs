//! A peer who lost its keys tells the sender, end-to-end: bob comes back with a new identity
//! (a new home) and cannot read alice's messages on her old session; he tells her, so that her
//! conversation is blocked at once (his key changed) and, after `/accept-key`, she is told how
//! many to send again.

use std::time::Duration;

use mm_common::e2e::{E2eEvent, Failure, Refused, Status};

use super::secure::secured;
use super::{config, secure_events};
use crate::core::{Event, SendError};

fn could_not_read(events: &[Event], peer: &str) -> Vec<u32> {
    secure_events(events)
        .iter()
        .filter_map(|e| match e {
            E2eEvent::PeerCouldNotRead { peer: p, count } if p == peer => Some(*count),
            _ => None,
        })
        .collect()
}

#[test]
fn a_peer_with_a_new_home_tells_the_sender_who_is_blocked_then_told_the_count() {
    let mut world = secured();
    // bob's home is replaced: a new identity, which logs in and publishes new keys.
    world.disconnect("bob");
    world.clients.remove("bob");
    world.advance(Duration::from_secs(10));
    world.connect_with("bob", config("bob"));
    world.events("bob");
    world.events("alice");
    // alice, who has a session with bob's old key, writes twice.
    for text in ["lost 1", "lost 2"] {
        let now = world.now;
        world
            .core("alice")
            .private("bob", text, now)
            .expect("connected");
    }
    world.pump();
    // bob could read neither; alice is blocked at once (bob's key changed).
    let events = world.events("alice");
    assert!(
        matches!(
            world.core("alice").secure_status("bob"),
            Status::Failed(Failure::KeyChanged { .. })
        ),
        "{events:?}"
    );
    assert!(could_not_read(&events, "bob").is_empty(), "{events:?}");
    let now = world.now;
    let sent = world.core("alice").private("bob", "lost 3", now);
    assert!(
        matches!(&sent, Err(SendError::Refused(Refused::KeyNotAccepted(p))) if p == "bob"),
        "{sent:?}"
    );
    // After /accept-key: how many bob could not read (one or both, as the fetch of alice's
    // keys raced her second message), in the words mm shows.
    world.core("alice").accept_key("bob", now).expect("changed");
    world.pump();
    let events = world.events("alice");
    let counts = could_not_read(&events, "bob");
    assert!(matches!(counts.as_slice(), [1 | 2]), "{events:?}");
    // Her next message reaches bob, on the session his notice started.
    let now = world.now;
    world
        .core("alice")
        .private("bob", "sent again", now)
        .expect("connected");
    world.pump();
    assert_eq!(
        super::secure_texts(&world.events("bob"), "alice"),
        ["sent again"]
    );
}
