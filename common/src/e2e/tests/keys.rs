//! Pins: changed keys, verification, safety numbers, our own key presented back.

use super::*;

#[test]
fn initiator_detects_a_changed_key_before_sending_message_three() {
    let mut r = key_changed_pair();
    r.start(true); // alice -> Hello
    r.deliver_one(false); // bob -> Reply
    r.deliver_one(true); // alice checks bob's key
    let sent: Vec<Envelope> = r.b.inbox.iter().map(|p| envelope(p)).collect();
    assert!(
        matches!(
            sent.as_slice(),
            [
                Envelope::Finish { .. },
                Envelope::Abort {
                    reason: AbortReason::KeyNotAccepted,
                    ..
                }
            ]
        ),
        "message 3 (so that bob learns alice's key), then the abort: {sent:?}"
    );
    match Relay::failures(&r.a).as_slice() {
        [Failure::KeyChanged { pinned, presented }] => {
            assert_ne!(pinned, presented);
            assert_eq!(presented, r.b.sessions.public_key());
        }
        other => panic!("{other:?}"),
    }
    let now = r.now;
    assert_eq!(
        r.a.sessions.send_text("bob", "x", 0, now),
        Err(Refused::KeyNotAccepted("bob".into()))
    );
    assert_eq!(
        r.a.sessions.start("bob", now).unwrap_err(),
        Refused::KeyNotAccepted("bob".into())
    );
    // Only an explicit acceptance unblocks; the new key is pinned but not verified, and a
    // new session starts at once.
    r.deliver_all(); // bob takes message 3 and the abort
    r.b.inbox.clear();
    r.a.events.clear();
    r.b.events.clear();
    let actions = r.a.sessions.accept_key("bob", now).unwrap();
    assert_eq!(actions.first(), Some(&Action::Persist));
    r.apply(true, actions);
    r.deliver_all();
    assert_eq!(
        Relay::readies(&r.a),
        vec![(Trust::Pinned, false)],
        "accepting a key clears verified"
    );
}

#[test]
fn responder_detects_a_changed_key_after_message_three() {
    let mut r = key_changed_pair();
    // Now alice changes key and bob (who pinned her old one) answers her.
    let pins_a = r.a.sessions.pins().clone();
    r.a.sessions = test_sessions("alice", test_identity(), pins_a, E2eConfig::default());
    let pins_b = r.b.sessions.pins().clone();
    // bob keeps his identity from key_changed_pair, which alice has not pinned yet: give alice
    // a pin for it so only bob's check can fail.
    r.a.sessions
        .pins_mut()
        .replace("bob", r.b.sessions.public_key());
    assert_eq!(pins_b, *r.b.sessions.pins());
    r.start(true);
    r.deliver_all();
    match Relay::failures(&r.b).as_slice() {
        [Failure::KeyChanged { presented, .. }] => assert_eq!(presented, r.a.sessions.public_key()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        Relay::failures(&r.a),
        vec![Failure::PeerAborted(AbortReason::KeyNotAccepted)]
    );
    // Whatever alice sent on the session it believed in is never shown by bob.
    assert!(Relay::messages(&r.b).is_empty());
}

#[test]
fn verification_is_shown_and_survives_in_pins() {
    let mut r = Relay::new();
    r.connect();
    assert_eq!(
        r.a.sessions.mark_verified("bob", r.now).unwrap(),
        vec![Action::Persist]
    );
    assert!(matches!(
        r.a.sessions.status("bob"),
        Status::Secure {
            trust: Trust::Verified,
            ..
        }
    ));
    assert!(r.a.sessions.pins().get("bob").unwrap().verified);
    assert_eq!(
        r.a.sessions.mark_verified("carol", r.now).unwrap_err(),
        Refused::NoKey("carol".into())
    );
    assert!(matches!(
        r.a.sessions.safety_number("carol"),
        Err(Refused::NoKey(_))
    ));
    // A later session with the same key reports it as verified.
    let actions = r.a.sessions.end("bob").unwrap();
    r.apply(true, actions);
    r.deliver_all();
    r.a.events.clear();
    r.connect();
    assert_eq!(Relay::readies(&r.a), vec![(Trust::Verified, false)]);
}

#[test]
fn after_a_key_change_both_sides_can_compare_the_new_keys_safety_number() {
    // bob reinstalled (new key, no pins); alice started (initiator) or bob did (responder).
    for alice_starts in [true, false] {
        let mut r = Relay::new();
        r.connect();
        r.b.sessions = fresh("bob");
        reconnect_a_only(&mut r);
        r.start(!alice_starts);
        r.deliver_all();
        assert!(
            matches!(
                r.a.sessions.status("bob"),
                Status::Failed(Failure::KeyChanged { .. })
            ),
            "{:?}",
            r.a.sessions.status("bob")
        );
        let alice_says = r.a.sessions.safety_number("bob").unwrap();
        let bob_says =
            r.b.sessions
                .safety_number("alice")
                .expect("bob learned alice's key");
        assert_eq!(alice_says, bob_says, "alice_starts={alice_starts}");
        // bob is told that alice did not accept his key; nothing was shown as a message.
        assert!(Relay::failures(&r.b).contains(&Failure::PeerAborted(AbortReason::KeyNotAccepted)));
        // /verified alone never accepts a changed key (it may have been meant for an earlier
        // comparison); they compared: /accept-key, then /verified.
        assert_eq!(
            r.a.sessions.mark_verified("bob", r.now),
            Err(Refused::KeyNotAccepted("bob".into()))
        );
        let actions = r.a.sessions.accept_key("bob", r.now).unwrap();
        r.apply(true, actions);
        let actions = r.a.sessions.mark_verified("bob", r.now).unwrap();
        r.apply(true, actions);
        r.deliver_all();
        assert!(matches!(
            r.a.sessions.status("bob"),
            Status::Secure {
                trust: Trust::Verified,
                ..
            }
        ));
        r.send(true, "hello again");
        r.deliver_all();
        assert_eq!(Relay::messages(&r.b), vec!["hello again"]);
    }
}

/// Two nicks with one identity key: two users sharing one home directory.
fn shared_key_pair() -> Relay {
    let shared = test_identity();
    Relay {
        a: side("alice", shared.clone(), E2eConfig::default(), next_seed()),
        b: side("bob", shared, E2eConfig::default(), next_seed()),
        now: Instant::now(),
        relayed: Vec::new(),
    }
}

#[test]
fn a_peer_presenting_our_own_key_is_refused_on_both_sides_and_never_pinned() {
    for alice_starts in [true, false] {
        let mut r = shared_key_pair();
        // Even an old pin of that key (made before this check existed) does not make it good.
        r.b.sessions
            .pins_mut()
            .replace("alice", r.a.sessions.public_key());
        r.start(alice_starts);
        r.deliver_all();
        assert_eq!(
            Relay::failures(&r.a),
            vec![Failure::OwnKey],
            "{alice_starts}"
        );
        assert_eq!(
            Relay::failures(&r.b),
            vec![Failure::OwnKey],
            "{alice_starts}"
        );
        assert!(Relay::readies(&r.a).is_empty() && Relay::readies(&r.b).is_empty());
        assert!(r.a.sessions.pins().get("bob").is_none(), "nothing pinned");
        assert!(
            r.b.sessions
                .pins()
                .get("alice")
                .is_some_and(|p| p.key == *r.a.sessions.public_key()),
            "only the old pin"
        );
        let now = r.now;
        for (side, peer) in [(&mut r.a, "bob"), (&mut r.b, "alice")] {
            assert_eq!(side.sessions.status(peer), Status::Failed(Failure::OwnKey));
            assert!(
                matches!(
                    side.sessions.send_text(peer, "x", 0, now),
                    Err(Refused::Blocked {
                        failure: Failure::OwnKey,
                        ..
                    })
                ),
                "never plain, never secure"
            );
        }
    }
    assert!(Failure::OwnKey.to_string().contains("your own key"));
}
