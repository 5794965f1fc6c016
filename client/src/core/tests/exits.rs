// About 600 lines: one test per row of the transition table; they share its helpers.
//! Every way out of a secure session (SECURITY.md, "Every way out of a secure session") that
//! cores and the server double can produce, one test per row: the status, what the user is
//! told, and that nothing goes plain unless the user chose it. The row "our connection drops"
//! is `secure::a_reconnect_never_turns_a_secure_conversation_plain`.

use crate::ChatLine;
use std::time::Duration;

use mm_common::e2e::{AbortReason, E2eConfig, E2eEvent, Failure, Refused, Status};
use mm_common::protocol::{ClientMsg, ErrorCode};

use super::secure::{secured, secured_with};
use super::world::World;
use super::{config, ready, secure_events, secure_texts, sent_plain};
use crate::core::{Delivery, Event, SendError};

/// Whether `events` hold `Failed` for `peer` with `failure`.
fn failed(events: &[Event], peer: &str, failure: &Failure) -> bool {
    secure_events(events).iter().any(
        |e| matches!(e, E2eEvent::Failed { peer: p, failure: f, .. } if p == peer && f == failure),
    )
}

/// Whether both alice and bob see a secure session with each other.
fn both_secure(world: &mut World) -> bool {
    matches!(
        world.core("alice").secure_status("bob"),
        Status::Secure { .. }
    ) && matches!(
        world.core("bob").secure_status("alice"),
        Status::Secure { .. }
    )
}

#[test]
fn the_peer_going_offline_interrupts_the_session_and_refuses_lines_until_it_is_back() {
    let mut world = secured();
    world.disconnect("bob");
    let events = world.events("alice");
    assert!(
        failed(&events, "bob", &Failure::PeerLeft),
        "told the peer went offline: {events:?}"
    );
    assert_eq!(
        world.core("alice").secure_status("bob"),
        Status::Interrupted {
            reason: Failure::PeerLeft,
            online: Some(false)
        }
    );
    let now = world.now;
    let sent = world.core("alice").private("bob", "are you there", now);
    assert!(
        matches!(&sent, Err(SendError::Refused(Refused::Offline(p))) if p == "bob"),
        "{sent:?}"
    );
    world.pump();
    assert!(!sent_plain(&world, "are you there"));
    assert_eq!(
        world.core("alice").unanswered(),
        0,
        "the refused line was not taken"
    );

    // bob comes back (same configuration): the session restarts by itself.
    world.advance(Duration::from_secs(10));
    let config = world.client("bob").config.clone();
    world.connect_with("bob", config);
    world.advance(Duration::from_secs(2));
    assert!(both_secure(&mut world));
    assert!(ready(&world.events("alice"), "bob", false));
}

#[test]
fn secure_to_an_offline_peer_says_the_peer_is_not_online_and_starts_when_it_logs_in() {
    let mut world = World::new();
    world.connect("alice");
    let now = world.now;
    world.core("alice").secure("bob", now).expect("connected");
    world.pump();
    let events = world.events("alice");
    assert!(failed(&events, "bob", &Failure::Unreachable), "{events:?}");
    assert!(
        !events.iter().any(|e| matches!(e, Event::Error { .. })),
        "the refused handshake relay is not the user's business: {events:?}"
    );
    assert_eq!(
        world.core("alice").secure_status("bob"),
        Status::Interrupted {
            reason: Failure::Unreachable,
            online: Some(false)
        }
    );
    let now = world.now;
    let sent = world.core("alice").private("bob", "hello?", now);
    assert!(
        matches!(&sent, Err(SendError::Refused(Refused::Offline(_)))),
        "{sent:?}"
    );

    // bob logs in later: the session starts with no /insecure (or /secure) first.
    world.advance(Duration::from_secs(10));
    world.connect("bob");
    world.advance(Duration::from_secs(2));
    assert!(both_secure(&mut world));
    assert!(!sent_plain(&world, "hello?"));
}

#[test]
fn a_changed_key_blocks_the_conversation_until_the_user_accepts_it() {
    let mut world = secured();
    // bob comes back with another identity under the same nick; alice pinned the old key.
    world.disconnect("bob");
    world.advance(Duration::from_secs(10));
    world.events("alice");
    world.connect_with("bob", config("bob"));
    world.advance(Duration::from_secs(2));
    let new_key = world.core("bob").public_key();
    let events = world.events("alice");
    assert!(
        secure_events(&events).iter().any(|e| matches!(e,
            E2eEvent::Failed { peer, failure: Failure::KeyChanged { presented, .. }, .. }
                if peer == "bob" && *presented == new_key)),
        "the change is shown with the new key: {events:?}"
    );
    let number = world.core("alice").safety_number("bob").expect("known");
    assert!(
        events.contains(&Event::SafetyNumber {
            peer: "bob".into(),
            number,
            new_key: true
        }),
        "the new key's safety number is shown unasked: {events:?}"
    );
    assert!(matches!(
        world.core("alice").secure_status("bob"),
        Status::Failed(Failure::KeyChanged { .. })
    ));
    let now = world.now;
    for refused in [
        world
            .core("alice")
            .private("bob", "blocked", now)
            .map(|_| ()),
        world.core("alice").secure("bob", now),
        world.core("alice").mark_verified("bob", now),
    ] {
        assert!(
            matches!(
                &refused,
                Err(SendError::Refused(Refused::KeyNotAccepted(_)))
            ),
            "{refused:?}"
        );
    }
    world.advance(Duration::from_secs(60));
    assert!(
        matches!(
            world.core("alice").secure_status("bob"),
            Status::Failed(Failure::KeyChanged { .. })
        ),
        "still blocked: nothing restarts by itself"
    );
    assert!(!sent_plain(&world, "blocked"));

    // The user accepts the new key: a new session with it.
    let now = world.now;
    world
        .core("alice")
        .accept_key("bob", now)
        .expect("accepted");
    world.pump();
    assert!(
        matches!(world.core("alice").secure_status("bob"), Status::Secure { key, .. } if key == new_key),
        "{:?}",
        world.core("alice").secure_status("bob")
    );
}

#[test]
fn a_handshake_that_times_out_interrupts_and_reports_the_waiting_lines_unsent() {
    let mut world = World::new();
    world.connect("alice");
    world.connect("bob");
    // The double drops every answer of bob's.
    world.server.hold_relays_from.insert("bob".into());
    let now = world.now;
    world.core("alice").secure("bob", now).expect("connected");
    world.pump();
    assert_eq!(world.core("alice").secure_status("bob"), Status::Starting);
    let now = world.now;
    let (line, delivery) = world
        .core("alice")
        .private("bob", "waiting", now)
        .expect("queued");
    assert_eq!(delivery, Delivery::Queued);
    world.events("alice");
    let mut events = Vec::new();
    for _ in 0..40 {
        world.advance(Duration::from_secs(1));
        events = world.events("alice");
        if !secure_events(&events).is_empty() {
            break;
        }
    }
    assert!(
        secure_events(&events).iter().any(|e| matches!(e,
            E2eEvent::Failed { peer, failure: Failure::Timeout, unsent }
                if peer == "bob" && unsent == &[line.get()])),
        "{events:?}"
    );
    assert!(matches!(
        world.core("alice").secure_status("bob"),
        Status::Interrupted {
            reason: Failure::Timeout,
            ..
        }
    ));
    assert_eq!(
        world.core("alice").unanswered(),
        0,
        "its answer was that event"
    );
    assert!(!sent_plain(&world, "waiting"));
}

#[test]
fn a_renewal_that_does_not_finish_keeps_the_current_session() {
    let e2e = E2eConfig {
        rehandshake_after: Duration::from_secs(60),
        ..E2eConfig::default()
    };
    let mut world = secured_with(&e2e);
    world.server.hold_relays_from.insert("bob".into());
    world.advance(Duration::from_secs(62));
    assert!(
        world
            .server
            .held
            .iter()
            .any(|h| h.from == "bob" && h.to == "alice"),
        "bob answered a renewal that the double kept"
    );
    world.advance(Duration::from_secs(40));
    let events = world.events("alice");
    assert!(
        !secure_events(&events)
            .iter()
            .any(|e| matches!(e, E2eEvent::Failed { .. })),
        "nothing to see: {events:?}"
    );
    assert!(both_secure(&mut world));
    world.server.held.clear();
    let now = world.now;
    let (_, delivery) = world
        .core("alice")
        .private("bob", "still secure", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.pump();
    assert_eq!(
        secure_texts(&world.events("bob"), "alice"),
        ["still secure"]
    );
}

#[test]
fn the_user_saying_insecure_makes_the_conversation_plain_by_explicit_choice() {
    let mut world = secured();
    let now = world.now;
    world.core("alice").insecure("bob", now).expect("a session");
    world.pump();
    let events = world.events("alice");
    assert!(
        secure_events(&events).iter().any(|e| matches!(e,
            E2eEvent::Ended { peer, by_peer: false, .. } if peer == "bob")),
        "{events:?}"
    );
    assert_eq!(world.core("alice").secure_status("bob"), Status::Plain);
    let now = world.now;
    let (_, delivery) = world
        .core("alice")
        .private("bob", "plain now", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Plain);
    world.pump();
    assert!(sent_plain(&world, "plain now"), "plain, as chosen");
    let bob = world.events("bob");
    assert!(
        secure_events(&bob).iter().any(|e| matches!(e,
            E2eEvent::Ended { peer, by_peer: true, .. } if peer == "alice")),
        "{bob:?}"
    );
    assert!(bob.iter().any(
        |e| matches!(e, Event::Private(ChatLine { from, text, .. }) if from == "alice" && text == "plain now")
    ));
}

#[test]
fn the_peer_ending_the_session_leaves_ours_secure_and_our_next_line_starts_a_new_one() {
    let mut world = secured();
    let now = world.now;
    world.core("bob").insecure("alice", now).expect("a session");
    world.pump();
    let events = world.events("alice");
    assert!(
        secure_events(&events).iter().any(|e| matches!(e,
            E2eEvent::Ended { peer, by_peer: true, .. } if peer == "bob")),
        "{events:?}"
    );
    let interrupted = Status::Interrupted {
        reason: Failure::PeerAborted(AbortReason::Ended),
        online: Some(true),
    };
    assert_eq!(world.core("alice").secure_status("bob"), interrupted);
    // Not restarted behind bob's back.
    world.advance(Duration::from_secs(60));
    assert_eq!(world.core("alice").secure_status("bob"), interrupted);
    assert!(secure_events(&world.events("alice")).is_empty());
    // alice's next line starts a new session and waits for it: never plain.
    let now = world.now;
    let (_, delivery) = world
        .core("alice")
        .private("bob", "still secret", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Queued);
    world.pump();
    assert!(!sent_plain(&world, "still secret"));
    assert_eq!(
        secure_texts(&world.events("bob"), "alice"),
        ["still secret"]
    );
}

#[test]
fn a_message_that_does_not_decrypt_blocks_the_conversation_until_the_user_acts() {
    let mut world = secured();
    world.server.tamper_next_relay_from = Some("alice".into());
    let now = world.now;
    world
        .core("alice")
        .private("bob", "tampered with", now)
        .expect("connected");
    world.pump();
    let bob = world.events("bob");
    assert!(failed(&bob, "alice", &Failure::Decrypt), "{bob:?}");
    assert!(secure_texts(&bob, "alice").is_empty());
    assert_eq!(
        world.core("bob").secure_status("alice"),
        Status::Failed(Failure::Decrypt)
    );
    let now = world.now;
    let sent = world.core("bob").private("alice", "reply", now);
    assert!(
        matches!(
            &sent,
            Err(SendError::Refused(Refused::Blocked {
                failure: Failure::Decrypt,
                ..
            }))
        ),
        "{sent:?}"
    );
    // Blocked, also as time goes by, and on alice's side nothing goes plain either.
    world.advance(Duration::from_secs(60));
    assert_eq!(
        world.core("bob").secure_status("alice"),
        Status::Failed(Failure::Decrypt)
    );
    // The row "Abort: it could not decrypt": bob told alice, whose side is blocked too.
    let peer_failed = Failure::PeerAborted(AbortReason::DecryptFailed);
    assert_eq!(
        world.core("alice").secure_status("bob"),
        Status::Failed(peer_failed.clone())
    );
    let now = world.now;
    let sent = world.core("alice").private("bob", "from alice", now);
    assert!(
        matches!(&sent, Err(SendError::Refused(Refused::Blocked { failure, .. })) if *failure == peer_failed),
        "{sent:?}"
    );
    world.pump();
    assert!(!sent_plain(&world, "reply") && !sent_plain(&world, "from alice"));
    // Until the user acts: /secure starts a new session.
    world.events("bob");
    let now = world.now;
    world
        .core("bob")
        .secure("alice", now)
        .expect("a new session");
    world.advance(Duration::from_secs(1));
    assert!(both_secure(&mut world));
}

#[test]
fn a_relay_the_server_refuses_interrupts_the_session_visibly_and_the_next_line_restarts_it() {
    let mut world = secured();
    world.server.refuse_next_relay_from = Some(("alice".into(), ErrorCode::BUSY));
    let now = world.now;
    let (line, delivery) = world
        .core("alice")
        .private("bob", "refused", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Secure);
    world.pump();
    let events = world.events("alice");
    assert!(
        events.iter().any(|e| matches!(e,
            Event::Error { line: Some(l), code: ErrorCode::BUSY, fatal: false, .. } if *l == line)),
        "the line is answered with the refusal: {events:?}"
    );
    assert!(failed(&events, "bob", &Failure::RelayRefused), "{events:?}");
    assert!(matches!(
        world.core("alice").secure_status("bob"),
        Status::Interrupted {
            reason: Failure::RelayRefused,
            ..
        }
    ));
    let now = world.now;
    let (_, delivery) = world
        .core("alice")
        .private("bob", "next", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Queued);
    world.pump();
    assert_eq!(secure_texts(&world.events("bob"), "alice"), ["next"]);
    assert!(both_secure(&mut world));
    assert!(
        !world
            .server
            .log
            .iter()
            .any(|l| matches!(l.msg, ClientMsg::Private { .. })),
        "nothing went plain"
    );
}

#[test]
fn a_peer_presenting_our_own_key_is_refused_and_never_pinned() {
    let mut world = World::new();
    world.connect("alice");
    let mut shared = config("bob");
    shared.secure.identity = world.client("alice").config.secure.identity.clone();
    world.connect_with("bob", shared);
    let now = world.now;
    world.core("alice").secure("bob", now).expect("connected");
    world.pump();
    let events = world.events("alice");
    assert!(failed(&events, "bob", &Failure::OwnKey), "{events:?}");
    assert_eq!(
        world.core("alice").secure_status("bob"),
        Status::Failed(Failure::OwnKey)
    );
    assert!(
        world.core("alice").safety_number("bob").is_err(),
        "never pinned"
    );
    let now = world.now;
    let sent = world.core("alice").private("bob", "to myself?", now);
    assert!(
        matches!(&sent, Err(SendError::Refused(Refused::Blocked { .. }))),
        "{sent:?}"
    );
    assert!(!sent_plain(&world, "to myself?"));
}

#[test]
fn our_client_restarting_restores_the_conversation_and_the_session_comes_back_by_itself() {
    let mut world = secured();
    // What a restart keeps: the identity, the pins and the conversations, as saved.
    let keys = world.core("alice").keys().expect("logged in");
    let (pins, conversations) = {
        let sessions = keys.sessions();
        (sessions.pins().clone(), sessions.conversations_text())
    };
    assert!(conversations.contains("bob"), "{conversations:?}");
    let identity = world.client("alice").config.secure.identity.clone();
    world.disconnect("alice");
    world.advance(Duration::from_secs(10));
    // A new process: nothing shared with the old one but what was saved.
    let mut restarted = config("alice");
    restarted.secure.identity = identity;
    restarted.secure.pins = pins;
    restarted.secure.conversations = conversations;
    world.server.hold_relays_from.insert("alice".into());
    world.connect_with("alice", restarted);
    let status = world.core("alice").secure_status("bob");
    assert!(
        !matches!(status, Status::Plain | Status::Secure { .. }),
        "restored, not up yet: {status:?}"
    );
    let now = world.now;
    let sent = world.core("alice").private("bob", "after a restart", now);
    assert!(
        matches!(sent, Ok((_, Delivery::Queued)) | Err(_)),
        "queued or refused, never plain: {sent:?}"
    );
    world.server.hold_relays_from.clear();
    let now = world.now;
    world.server.release_held(now);
    world.advance(Duration::from_secs(2));
    assert!(both_secure(&mut world));
    assert!(!sent_plain(&world, "after a restart"));
}

#[test]
fn a_handshake_message_that_fails_even_a_stale_one_replayed_interrupts_and_never_goes_plain() {
    let mut world = secured();
    // Every handshake message of the session, as a server that kept them could replay them.
    let stale: Vec<(String, String, Vec<u8>)> = world
        .server
        .log
        .iter()
        .filter_map(|l| match &l.msg {
            ClientMsg::Relay { to, payload } => Some((l.from.clone(), to.clone(), payload.clone())),
            _ => None,
        })
        .collect();
    assert!(stale.len() >= 3, "{stale:?}");
    world.advance(Duration::from_secs(5));
    for (from, to, payload) in stale {
        let now = world.now;
        world.server.inject_relay(&from, &to, payload, now);
        world.pump();
    }
    let bob = world.events("bob");
    assert!(failed(&bob, "alice", &Failure::Handshake), "{bob:?}");
    // The row "Abort: unknown session / its handshake failed": alice is told, interrupted.
    let alice = world.events("alice");
    assert!(
        failed(
            &alice,
            "bob",
            &Failure::PeerAborted(AbortReason::HandshakeFailed)
        ),
        "{alice:?}"
    );
    for (me, peer) in [("alice", "bob"), ("bob", "alice")] {
        let status = world.core(me).secure_status(peer);
        assert!(
            matches!(
                status,
                Status::Interrupted { .. } | Status::Starting | Status::Secure { .. }
            ),
            "{me}: {status:?}"
        );
    }
    // Interrupted: the next line goes encrypted, restarting the session if it has to.
    world.advance(Duration::from_secs(40));
    let now = world.now;
    let sent = world.core("alice").private("bob", "after the replay", now);
    assert!(
        matches!(sent, Ok((_, Delivery::Secure | Delivery::Queued))),
        "{sent:?}"
    );
    world.advance(Duration::from_secs(2));
    assert_eq!(
        secure_texts(&world.events("bob"), "alice"),
        ["after the replay"]
    );
    assert!(!sent_plain(&world, "after the replay"));
}

#[test]
fn a_peer_that_does_not_accept_our_key_blocks_the_conversation_until_the_user_acts() {
    let mut world = secured();
    // bob comes back with a new identity but his saved conversations (a lost identity file):
    // he wants a secure session with alice, who pinned his old key.
    world.disconnect("bob");
    world.advance(Duration::from_secs(10));
    world.events("alice");
    let mut lost_key = config("bob");
    lost_key.secure.conversations = "secure alice\n".into();
    world.connect_with("bob", lost_key);
    world.advance(Duration::from_secs(2));
    let bob = world.events("bob");
    let refused = Failure::PeerAborted(AbortReason::KeyNotAccepted);
    assert!(failed(&bob, "alice", &refused), "{bob:?}");
    assert_eq!(
        world.core("bob").secure_status("alice"),
        Status::Failed(refused.clone())
    );
    let now = world.now;
    let sent = world.core("bob").private("alice", "it is me", now);
    assert!(
        matches!(&sent, Err(SendError::Refused(Refused::Blocked { failure, .. })) if *failure == refused),
        "{sent:?}"
    );
    world.advance(Duration::from_secs(60));
    assert_eq!(
        world.core("bob").secure_status("alice"),
        Status::Failed(refused),
        "blocked, not restarted by itself"
    );
    assert!(!sent_plain(&world, "it is me"));
    // Both sides can compare the same safety number (of bob's new key) before accepting it.
    let alice_number = world.core("alice").safety_number("bob").expect("presented");
    let bob_number = world.core("bob").safety_number("alice").expect("pinned");
    assert_eq!(alice_number, bob_number);
}
