//! Tampering (altered, replayed, dropped, reordered, truncated payloads) fails closed, and a failed session refuses to send until the user acts.

use super::*;

fn assert_failed_closed(r: &Relay, expect_messages: &[&str]) {
    assert_eq!(
        Relay::messages(&r.b),
        expect_messages,
        "nothing that failed is shown"
    );
    assert_eq!(Relay::failures(&r.b), vec![Failure::Decrypt]);
    assert_eq!(
        r.b.sessions.status("alice"),
        Status::Failed(Failure::Decrypt)
    );
    // The peer is told, and both now refuse to send until the users act.
    assert_eq!(
        Relay::failures(&r.a),
        vec![Failure::PeerAborted(AbortReason::DecryptFailed)]
    );
}

#[test]
fn tampered_ciphertext_ends_the_session() {
    let r = mangled(|inbox| {
        let Envelope::Data {
            session,
            mut ciphertext,
        } = envelope(&inbox[0])
        else {
            panic!()
        };
        ciphertext[3] ^= 0x01;
        inbox[0] = postcard::to_allocvec(&Envelope::Data {
            session,
            ciphertext,
        })
        .unwrap();
    });
    assert_failed_closed(&r, &[]);
}

#[test]
fn replayed_ciphertext_ends_the_session() {
    let r = mangled(|inbox| {
        let first = inbox[0].clone();
        inbox.insert(1, first);
    });
    assert_failed_closed(&r, &["first"]);
}

#[test]
fn dropped_ciphertext_ends_the_session() {
    let r = mangled(|inbox| {
        inbox.pop_front();
    });
    assert_failed_closed(&r, &[]);
}

#[test]
fn reordered_ciphertext_ends_the_session() {
    let r = mangled(|inbox| inbox.swap(0, 1));
    assert_failed_closed(&r, &[]);
}

#[test]
fn truncated_and_garbage_payloads_end_the_session() {
    let r = mangled(|inbox| {
        let Envelope::Data {
            session,
            mut ciphertext,
        } = envelope(&inbox[0])
        else {
            panic!()
        };
        ciphertext.truncate(ciphertext.len() - 1);
        inbox[0] = postcard::to_allocvec(&Envelope::Data {
            session,
            ciphertext,
        })
        .unwrap();
    });
    assert_failed_closed(&r, &[]);
    let mut r = Relay::new();
    r.connect();
    let actions = r.b.sessions.receive("alice", &[0xff, 0xff, 0xff], r.now);
    r.apply(false, actions);
    assert_eq!(Relay::failures(&r.b), vec![Failure::Decrypt]);
}

#[test]
fn a_failed_session_refuses_to_send_until_the_user_acts() {
    let mut r = mangled(|inbox| inbox.swap(0, 1));
    let now = r.now;
    match r.b.sessions.send_text("alice", "psst", 0, now) {
        Err(Refused::Blocked {
            failure: Failure::Decrypt,
            ..
        }) => {}
        other => panic!("must never fall back to plain text: {other:?}"),
    }
    assert!(matches!(
        r.a.sessions.send_text("bob", "psst", 0, now),
        Err(Refused::Blocked { .. })
    ));
    // Either a new session...
    r.start(true);
    r.deliver_all();
    r.send(true, "again");
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), vec!["again"]);
    // ...or an explicit end allows plain text.
    let actions = r.b.sessions.end("alice").unwrap();
    r.apply(false, actions);
    r.deliver_all();
    assert_eq!(
        r.b.sessions.send_text("alice", "plain", 0, now).unwrap(),
        Outgoing::Plain
    );
    assert!(r.a.events.contains(&E2eEvent::Ended {
        peer: "bob".into(),
        by_peer: true,
        unsent: vec![],
    }));
    // bob's choice is not alice's: her conversation stays secure until she says so, and her
    // next text starts a new session instead of going plain.
    assert_eq!(
        r.a.sessions.status("bob"),
        Status::Interrupted {
            reason: Failure::PeerAborted(AbortReason::Ended),
            online: Some(true)
        }
    );
    assert!(matches!(
        r.a.sessions.send_text("bob", "still secret", 0, now).unwrap(),
        Outgoing::Queued(actions) if !actions.is_empty()
    ));
    let actions = r.a.sessions.end("bob").unwrap();
    r.apply(true, actions);
    assert_eq!(
        r.a.sessions.send_text("bob", "plain", 0, now).unwrap(),
        Outgoing::Plain
    );
}

#[test]
fn a_peer_that_leaves_blocks_sending_and_drops_waiting_texts_visibly() {
    let mut r = Relay::new();
    r.start(true);
    let now = r.now;
    r.a.sessions.send_text("bob", "waiting", 7, now).unwrap();
    let actions = r.a.sessions.peer_left("bob");
    r.apply(true, actions);
    assert_eq!(
        r.a.events.last(),
        Some(&E2eEvent::Failed {
            peer: "bob".into(),
            failure: Failure::PeerLeft,
            unsent: vec![7]
        })
    );
    // Never plain: bob is offline, so the text is refused with that reason.
    assert_eq!(
        r.a.sessions.send_text("bob", "x", 0, now),
        Err(Refused::Offline("bob".into()))
    );
    assert_eq!(
        r.a.sessions.status("bob"),
        Status::Interrupted {
            reason: Failure::PeerLeft,
            online: Some(false)
        }
    );
}

#[test]
fn ending_a_session_being_set_up_reports_the_texts_that_waited() {
    let mut r = Relay::new();
    r.start(true);
    let now = r.now;
    r.a.sessions.send_text("bob", "one", 3, now).unwrap();
    r.a.sessions.send_text("bob", "two", 4, now).unwrap();
    let actions = r.a.sessions.end("bob").unwrap();
    r.apply(true, actions);
    assert_eq!(
        r.a.events.last(),
        Some(&E2eEvent::Ended {
            peer: "bob".into(),
            by_peer: false,
            unsent: vec![3, 4]
        })
    );
    assert!(r.a.sent_lines.is_empty(), "nothing was sent");
}
