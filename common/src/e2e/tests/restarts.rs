//! Reconnects, restarts and the saved conversations: a secure conversation never turns plain.

use super::*;

#[test]
fn a_reconnect_never_turns_a_secure_conversation_plain() {
    for verified in [false, true] {
        let mut r = Relay::new();
        r.connect();
        if verified {
            r.a.sessions.mark_verified("bob", r.now).unwrap();
        }
        reconnect(&mut r);
        assert_eq!(
            r.a.sessions.status("bob"),
            Status::Interrupted {
                reason: Failure::NotConnected,
                online: None
            }
        );
        // The next text starts a new session and waits for it: never plain.
        let now = r.now;
        let actions = match r
            .a
            .sessions
            .send_text("bob", "my PIN is 1234", 5, now)
            .unwrap()
        {
            Outgoing::Queued(actions) => actions,
            other => panic!("{other:?}"),
        };
        r.apply(true, actions);
        r.deliver_all();
        assert_eq!(Relay::messages(&r.b), vec!["my PIN is 1234"]);
        assert_eq!(r.a.sent_lines.last(), Some(&5));
        let trust = if verified {
            Trust::Verified
        } else {
            Trust::Pinned
        };
        assert_eq!(Relay::readies(&r.a), vec![(trust, false)]);
    }
}

#[test]
fn an_interrupted_session_restarts_when_the_peer_comes_online() {
    let mut r = Relay::new();
    r.connect();
    reconnect(&mut r);
    let now = r.now;
    // The monitor answers: bob is offline for alice; sending is refused with that reason.
    assert!(r.a.sessions.presence("bob", false, now).is_empty());
    assert_eq!(
        r.a.sessions.send_text("bob", "x", 0, now),
        Err(Refused::Offline("bob".into()))
    );
    // bob comes online: alice's side restarts by itself.
    let actions = r.a.sessions.presence("bob", true, now);
    assert!(
        matches!(actions.first(), Some(Action::Send { .. })),
        "{actions:?}"
    );
    r.apply(true, actions);
    r.deliver_all();
    assert!(matches!(r.a.sessions.status("bob"), Status::Secure { .. }));
    assert!(matches!(
        r.b.sessions.status("alice"),
        Status::Secure { .. }
    ));
    r.send(true, "back");
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), vec!["back"]);
}

#[test]
fn both_sides_restarting_at_once_make_one_session() {
    let mut r = Relay::new();
    r.connect();
    reconnect(&mut r);
    let now = r.now;
    let a = r.a.sessions.presence("bob", true, now);
    let b = r.b.sessions.presence("alice", true, now);
    r.apply(true, a);
    r.apply(false, b);
    r.deliver_all();
    assert!(matches!(r.a.sessions.status("bob"), Status::Secure { .. }));
    assert!(matches!(
        r.b.sessions.status("alice"),
        Status::Secure { .. }
    ));
    r.send(true, "one");
    r.send(false, "two");
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), vec!["one"]);
    assert_eq!(Relay::messages(&r.a), vec!["two"]);
}

#[test]
fn automatic_restarts_wait_longer_after_each_attempt_that_fails() {
    let mut r = Relay::new();
    r.connect();
    reconnect(&mut r);
    let start = r.now;
    // bob never answers (an old client, or a relay that drops): each attempt times out.
    let mut starts = Vec::new();
    let mut announced = Vec::new();
    let mut note = |s: u64, actions: Vec<Action>| {
        for action in actions {
            match action {
                Action::Send { payload, .. }
                    if matches!(envelope(&payload), Envelope::Hello { .. }) =>
                {
                    starts.push(s)
                }
                Action::Event(e) => announced.push(e),
                _ => {}
            }
        }
    };
    note(0, r.a.sessions.presence("bob", true, start));
    for s in 1..=200u64 {
        note(s, r.a.sessions.tick(start + Duration::from_secs(s)));
    }
    // Each attempt times out after 30 s; the next waits 5, 10, 20, 40 … s after the start of
    // the last (ticks are 1 s apart). Only the first is announced (with its failure).
    assert_eq!(starts, vec![0, 31, 62, 93, 133], "{starts:?}");
    assert!(
        matches!(
            announced.as_slice(),
            [
                E2eEvent::Starting { .. },
                E2eEvent::Failed {
                    failure: Failure::Timeout,
                    ..
                }
            ]
        ),
        "{announced:?}"
    );
    assert!(r.b.events.is_empty());
}

#[test]
fn a_stale_failure_gives_todays_reason_and_secure_needs_no_insecure_first() {
    let mut r = Relay::new();
    let now = r.now;
    // `/secure bob` while bob is offline.
    let actions = r.a.sessions.start("bob", now).unwrap();
    r.apply(true, actions);
    r.b.inbox.clear();
    let actions = r.a.sessions.unreachable("bob");
    r.apply(true, actions);
    assert_eq!(
        r.a.sessions.status("bob"),
        Status::Interrupted {
            reason: Failure::Unreachable,
            online: Some(false)
        }
    );
    assert_eq!(
        r.a.sessions.send_text("bob", "hi", 0, now),
        Err(Refused::Offline("bob".into()))
    );
    // bob logs in (a while later): the session starts by itself.
    let actions =
        r.a.sessions
            .presence("bob", true, now + Duration::from_secs(60));
    r.apply(true, actions);
    r.deliver_all();
    assert!(matches!(r.a.sessions.status("bob"), Status::Secure { .. }));
    // A blocked conversation names the peer's presence now, and /secure restarts it.
    let mut r = mangled(|inbox| inbox.swap(0, 1));
    let now = r.now;
    let actions = r.b.sessions.presence("alice", true, now);
    assert!(
        actions.is_empty(),
        "a failure that may be an attack does not restart by itself"
    );
    let refused = r.b.sessions.send_text("alice", "x", 0, now).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("alice is online: /secure alice"),
        "{refused}"
    );
    r.start(false);
    r.deliver_all();
    assert!(matches!(
        r.b.sessions.status("alice"),
        Status::Secure { .. }
    ));
}

#[test]
fn a_refused_relay_ends_the_session_visibly_and_the_next_text_restarts_it() {
    let mut r = Relay::new();
    r.connect();
    r.send(true, "lost");
    r.b.inbox.clear(); // the server refused it
    let actions = r.a.sessions.relay_refused("bob");
    r.apply(true, actions);
    assert_eq!(Relay::failures(&r.a), vec![Failure::RelayRefused]);
    let now = r.now;
    let actions = match r.a.sessions.send_text("bob", "again", 9, now).unwrap() {
        Outgoing::Queued(actions) => actions,
        other => panic!("{other:?}"),
    };
    r.apply(true, actions);
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), vec!["again"]);
}

#[test]
fn conversations_survive_a_restart_secure_blocked_and_key_changed() {
    let mut r = Relay::new();
    r.connect();
    let text = r.a.sessions.conversations_text();
    assert_eq!(text, "secure bob\n");
    let restart = |r: &Relay, text: &str| {
        let mut s = test_sessions(
            "alice",
            r.a.sessions.identity().clone(),
            r.a.sessions.pins().clone(),
            E2eConfig::default(),
        );
        s.restore(text).unwrap();
        s
    };
    let mut s = restart(&r, &text);
    assert_eq!(
        s.status("bob"),
        Status::Interrupted {
            reason: Failure::NotConnected,
            online: None
        }
    );
    assert!(matches!(
        s.send_text("bob", "x", 1, r.now),
        Ok(Outgoing::Queued(_))
    ));
    // Blocked.
    let r = mangled(|inbox| inbox.swap(0, 1));
    let text = r.b.sessions.conversations_text();
    assert_eq!(text, "blocked alice decrypt\n");
    let mut s = fresh("bob");
    s.restore(&text).unwrap();
    assert_eq!(s.status("alice"), Status::Failed(Failure::Decrypt));
    // Key changed.
    let mut r = key_changed_pair();
    r.start(true);
    r.deliver_all();
    let text = r.a.sessions.conversations_text();
    assert!(text.starts_with("key-changed bob "), "{text}");
    let mut s = restart(&r, &text);
    assert_eq!(
        s.send_text("bob", "x", 0, r.now),
        Err(Refused::KeyNotAccepted("bob".into()))
    );
    assert_eq!(s.safety_number("bob"), r.a.sessions.safety_number("bob"));
    // A cut-off file and one with more conversations than a client keeps are refused.
    assert_eq!(check_conversations("secure bob\nsecure bo"), Err(2));
    let many: String = (0..=MAX_PEERS).map(|i| format!("secure p{i}\n")).collect();
    assert_eq!(check_conversations(&many), Err(MAX_PEERS + 1));
    // Damaged files are refused, not half-read.
    for bad in [
        "secure",
        "secure b@d",
        "blocked bob nonsense",
        "key-changed bob 12",
        "frobnicate bob",
    ] {
        let mut s = fresh("alice");
        assert_eq!(
            s.restore(&format!("secure carol\n{bad}\n")),
            Err(2),
            "{bad}"
        );
        assert_eq!(s.status("carol"), Status::Plain, "nothing restored");
    }
}

#[test]
fn after_a_reconnect_only_a_few_automatic_handshakes_run_at_once() {
    let mut a = fresh("alice");
    let text: String = (0..20).map(|i| format!("secure peer{i}\n")).collect();
    a.restore(&text).unwrap();
    assert_eq!(a.connection_reset().len(), 20);
    let now = Instant::now();
    let hellos = |actions: &[Action]| {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Send { payload, .. } if matches!(envelope(payload), Envelope::Hello { .. })))
            .count()
    };
    let mut started = 0;
    for i in 0..20 {
        started += hellos(&a.presence(&format!("peer{i}"), true, now));
    }
    assert_eq!(started, MAX_AUTOMATIC_STARTS);
    // As they time out (nobody answers here), the next ones start.
    let later = now + Duration::from_secs(31);
    let more = hellos(&a.tick(later));
    assert!(more > 0 && more <= MAX_AUTOMATIC_STARTS, "{more}");
}

#[test]
fn beyond_the_monitor_bound_the_same_peers_are_watched_and_the_rest_are_tried_when_written_to() {
    let mut a = fresh("alice");
    let n = crate::protocol::MAX_MONITORED + 10;
    let text: String = (0..n).map(|i| format!("secure peer{i:04}\n")).collect();
    a.restore(&text).unwrap();
    let first = a.connection_reset();
    assert_eq!(first.len(), crate::protocol::MAX_MONITORED);
    assert_eq!(a.connection_reset(), first, "the same ones every time");
    let last = format!("peer{:04}", n - 1);
    assert!(!first.contains(&last));
    // An unwatched peer seen offline once may be back: a line to it is tried, not refused.
    a.peer_left(&last);
    assert!(matches!(
        a.send_text(&last, "hi", 1, Instant::now()),
        Ok(Outgoing::Queued(actions)) if !actions.is_empty()
    ));
}

#[test]
fn a_hello_that_never_completes_does_not_unblock_a_blocked_conversation() {
    let mut r = mangled(|inbox| inbox.swap(0, 1));
    assert_eq!(
        r.b.sessions.status("alice"),
        Status::Failed(Failure::Decrypt)
    );
    // The server forges a Hello "from alice" (it cannot finish the handshake).
    let hello = forged_hello("alice", "bob", r.now);
    let actions = r.b.sessions.receive("alice", &hello, r.now);
    r.apply(false, actions);
    let later = r.now + Duration::from_secs(600);
    let actions = r.b.sessions.tick(later);
    r.apply(false, actions);
    assert_eq!(
        r.b.sessions.status("alice"),
        Status::Failed(Failure::Decrypt),
        "still blocked for its reason, not merely interrupted"
    );
    assert!(matches!(
        r.b.sessions.send_text("alice", "x", 0, later),
        Err(Refused::Blocked { .. })
    ));
}

#[test]
fn a_broken_hello_leaves_a_plain_conversation_plain() {
    let mut r = Relay::new();
    // A Hello with a payload (handshake payloads are always empty) and one with a
    // small-order key.
    for noise in [vec![9; 48], vec![0; 32]] {
        let hello = hello_with(noise);
        let actions = r.b.sessions.receive("alice", &hello, r.now);
        r.apply(false, actions);
    }
    // A broken offer only says the session did not come up; a bad key is a failure.
    assert!(r.b.events.iter().any(|e| matches!(
        e,
        E2eEvent::NotStarted {
            failure: Failure::Handshake,
            ..
        }
    )));
    assert_eq!(Relay::failures(&r.b), vec![Failure::BadKey], "shown");
    assert_eq!(r.b.sessions.status("alice"), Status::Plain);
    assert_eq!(
        r.b.sessions.send_text("alice", "plain as chosen", 0, r.now),
        Ok(Outgoing::Plain)
    );
}

#[test]
fn a_forged_hello_on_a_blocked_conversation_does_not_survive_a_reconnect_or_a_save() {
    let mut r = mangled(|inbox| inbox.swap(0, 1));
    let hello = forged_hello("alice", "bob", r.now);
    let actions = r.b.sessions.receive("alice", &hello, r.now);
    r.apply(false, actions);
    assert_eq!(r.b.sessions.conversations_text(), "blocked alice decrypt\n");
    r.b.sessions.connection_reset();
    assert_eq!(
        r.b.sessions.status("alice"),
        Status::Failed(Failure::Decrypt)
    );
    assert!(matches!(
        r.b.sessions.send_text("alice", "x", 0, r.now),
        Err(Refused::Blocked { .. })
    ));
}

#[test]
fn the_peers_insecure_is_not_undone_by_an_automatic_restart() {
    let mut r = Relay::new();
    r.connect();
    let actions = r.b.sessions.end("alice").unwrap();
    r.apply(false, actions);
    r.deliver_all();
    let later = r.now + Duration::from_secs(600);
    let actions = r.a.sessions.tick(later);
    assert!(actions.is_empty(), "alice waits for her user: {actions:?}");
    let actions = r.a.sessions.presence("bob", true, later);
    assert!(actions.is_empty(), "{actions:?}");
    // Her next line is hers to send: it starts a new session (never plain).
    assert!(matches!(
        r.a.sessions.send_text("bob", "x", 1, later),
        Ok(Outgoing::Queued(actions)) if !actions.is_empty()
    ));
}
