//! Handshakes, transport, rekeys and renewals on the happy path, padding, and bounds.

use super::*;

#[test]
fn handshake_then_messages_both_ways() {
    let mut r = Relay::new();
    r.connect();
    assert_eq!(Relay::readies(&r.a), vec![(Trust::New, false)]);
    assert_eq!(Relay::readies(&r.b), vec![(Trust::New, false)]);
    assert!(
        r.a.pins_saved >= 1 && r.b.pins_saved >= 1,
        "both pinned the other on first use, and saved"
    );
    assert_eq!(
        r.a.sessions.pins().get("bob").unwrap().key,
        *r.b.sessions.public_key()
    );
    assert_eq!(
        r.b.sessions.pins().get("alice").unwrap().key,
        *r.a.sessions.public_key()
    );
    assert_eq!(
        (r.a.monitored.len(), r.b.monitored.len()),
        (1, 1),
        "both watch the other"
    );
    assert!(r.b.events.contains(&E2eEvent::Starting {
        peer: "alice".into(),
        by_peer: true
    }));
    assert!(r.a.events.contains(&E2eEvent::Starting {
        peer: "bob".into(),
        by_peer: false
    }));
    match (r.a.sessions.status("bob"), r.b.sessions.status("alice")) {
        (Status::Secure { key: kb, .. }, Status::Secure { key: ka, .. }) => {
            assert_eq!(&kb, r.b.sessions.public_key());
            assert_eq!(&ka, r.a.sessions.public_key());
        }
        other => panic!("{other:?}"),
    }
    r.send(true, "hello bob");
    r.send(false, "hi alice");
    r.send(true, "how are you?");
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), vec!["hello bob", "how are you?"]);
    assert_eq!(Relay::messages(&r.a), vec!["hi alice"]);
    assert_eq!(
        r.a.sessions.safety_number("bob").unwrap(),
        r.b.sessions.safety_number("alice").unwrap()
    );
}

#[test]
fn handshake_messages_carry_no_content_and_data_is_not_plaintext() {
    let mut r = Relay::new();
    r.start(true);
    let hello = r.b.inbox[0].clone();
    match envelope(&hello) {
        Envelope::Hello { noise, .. } => assert_eq!(
            noise.len(),
            32,
            "message 1 is just the ephemeral key: no payload"
        ),
        other => panic!("{other:?}"),
    }
    r.deliver_all();
    r.send(true, "attack at dawn");
    let data = r.b.inbox[0].clone();
    assert!(!data.windows(6).any(|w| w == b"attack"));
}

#[test]
fn texts_wait_for_the_handshake_then_go_encrypted() {
    let mut r = Relay::new();
    r.start(true);
    let now = r.now;
    assert_eq!(
        r.a.sessions.send_text("bob", "early 1", 11, now).unwrap(),
        Outgoing::Queued(vec![])
    );
    assert_eq!(
        r.a.sessions.send_text("bob", "early 2", 12, now).unwrap(),
        Outgoing::Queued(vec![])
    );
    assert_eq!(r.a.sessions.status("bob"), Status::Starting);
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), vec!["early 1", "early 2"]);
    assert_eq!(
        r.a.sent_lines,
        [11, 12],
        "each text's payload carries its tag"
    );
    r.send(true, "later");
    assert_eq!(r.a.sent_lines, [11, 12, 0]);
}

#[test]
fn without_a_session_texts_are_plain_and_to_oneself_too() {
    let mut r = Relay::new();
    let now = r.now;
    assert_eq!(
        r.a.sessions.send_text("bob", "x", 0, now).unwrap(),
        Outgoing::Plain
    );
    assert_eq!(
        r.a.sessions.send_text("alice", "x", 0, now).unwrap(),
        Outgoing::Plain
    );
    assert_eq!(
        r.a.sessions.start("ALICE", now).unwrap_err(),
        Refused::Yourself
    );
    assert!(matches!(
        r.a.sessions.start("not a nick", now),
        Err(Refused::InvalidNick(_))
    ));
}

#[test]
fn simultaneous_starts_give_one_session() {
    for alice_first in [true, false] {
        let mut r = Relay::new();
        r.start(true);
        r.start(false);
        // Deliver in either order.
        if alice_first {
            r.deliver_one(false);
            r.deliver_one(true);
        } else {
            r.deliver_one(true);
            r.deliver_one(false);
        }
        r.deliver_all();
        assert_eq!(Relay::readies(&r.a).len(), 1, "{:?}", r.a.events);
        assert_eq!(Relay::readies(&r.b).len(), 1, "{:?}", r.b.events);
        assert!(Relay::failures(&r.a).is_empty() && Relay::failures(&r.b).is_empty());
        r.send(true, "one");
        r.send(false, "two");
        r.deliver_all();
        assert_eq!(Relay::messages(&r.b), vec!["one"]);
        assert_eq!(Relay::messages(&r.a), vec!["two"]);
    }
}

#[test]
fn small_order_keys_are_refused() {
    let mut r = Relay::new();
    let hello = hello_with(vec![0; 32]);
    let actions = r.b.sessions.receive("alice", &hello, r.now);
    r.apply(false, actions);
    assert_eq!(Relay::failures(&r.b), vec![Failure::BadKey]);
    assert!(matches!(
        envelope(&r.a.inbox[0]),
        Envelope::Abort {
            reason: AbortReason::HandshakeFailed,
            ..
        }
    ));
}

#[test]
fn rekeys_keep_the_conversation_going() {
    let mut r = Relay::with_config(E2eConfig {
        rekey_every: 3,
        ..E2eConfig::default()
    });
    r.connect();
    let mut expect_b = Vec::new();
    let mut expect_a = Vec::new();
    for i in 0..20 {
        r.send(true, &format!("a{i}"));
        expect_b.push(format!("a{i}"));
        if i % 2 == 0 {
            r.send(false, &format!("b{i}"));
            expect_a.push(format!("b{i}"));
        }
        if i % 5 == 0 {
            r.deliver_all();
        }
    }
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), expect_b);
    assert_eq!(Relay::messages(&r.a), expect_a);
}

/// Decrypts a transport message with raw keys, as someone who stole them would.
fn decrypt_with(key: &[u8; 32], nonce: u64, ciphertext: &[u8]) -> bool {
    use chacha20poly1305::aead::{Aead, KeyInit};
    let cipher = chacha20poly1305::ChaCha20Poly1305::new(key.into());
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&nonce.to_le_bytes()); // Noise's ChaChaPoly nonce: 32 zero bits, 64-bit LE counter
    cipher.decrypt(&n.into(), ciphertext).is_ok()
}

#[test]
fn rehandshake_renews_keys_so_stolen_session_keys_stop_working() {
    let config = E2eConfig {
        rekey_every: u64::MAX,
        rehandshake_messages: 4,
        ..E2eConfig::default()
    };
    let mut r = Relay::with_config(config);
    r.connect();
    let (first_session, stolen_i2r, _) = r.a.sessions.stolen()[0];
    // The thief reads the first session's traffic...
    r.send(true, "m0");
    let Envelope::Data {
        session,
        ciphertext,
    } = envelope(r.b.inbox.back().unwrap())
    else {
        panic!()
    };
    assert_eq!(session, first_session);
    assert!(
        decrypt_with(&stolen_i2r, 0, &ciphertext),
        "sanity: the stolen key opens session-1 traffic"
    );
    r.deliver_all();
    for i in 1..12 {
        r.send(true, &format!("m{i}"));
        r.send(false, &format!("r{i}"));
        r.deliver_all();
    }
    let renewals = Relay::readies(&r.a)
        .iter()
        .filter(|(_, renewed)| *renewed)
        .count();
    assert!(
        renewals >= 2,
        "expected re-handshakes, saw {:?}",
        Relay::readies(&r.a)
    );
    assert_eq!(
        Relay::messages(&r.b),
        (0..12).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        Relay::messages(&r.a),
        (1..12).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
    // ...but not what follows the re-handshake, at any nonce.
    r.send(true, "after");
    let Envelope::Data {
        session,
        ciphertext,
    } = envelope(r.b.inbox.back().unwrap())
    else {
        panic!()
    };
    assert_ne!(session, first_session);
    assert!((0..64).all(|nonce| !decrypt_with(&stolen_i2r, nonce, &ciphertext)));
    r.deliver_all();
    assert_eq!(
        Relay::messages(&r.b).last().map(String::as_str),
        Some("after")
    );
    // A replay of old-session traffic is refused, not shown.
    let old = postcard::to_allocvec(&Envelope::Data {
        session: first_session,
        ciphertext: vec![0; 200],
    })
    .unwrap();
    let actions = r.b.sessions.receive("alice", &old, r.now);
    assert!(actions
        .iter()
        .all(|a| !matches!(a, Action::Event(E2eEvent::Message { .. }))));
}

#[test]
fn plaintexts_are_padded_to_buckets() {
    let mut r = Relay::new();
    r.connect();
    let mut lens = Vec::new();
    for text in [
        "a",
        &"b".repeat(100),
        &"c".repeat(120),
        &"d".repeat(300),
        &"e".repeat(4096),
    ] {
        r.send(true, text);
        let Envelope::Data { ciphertext, .. } = envelope(r.b.inbox.back().unwrap()) else {
            panic!()
        };
        lens.push(ciphertext.len());
    }
    assert_eq!(
        lens,
        vec![128 + 16, 128 + 16, 128 + 16, 512 + 16, 8192 + 16]
    );
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b).len(), 5);
}

#[test]
fn debug_output_holds_no_key_material() {
    let r = Relay::new();
    let debug = format!("{:?}", r.a.sessions);
    assert!(debug.contains("alice"));
    assert!(!debug.contains(&crate::identity::hex(r.a.sessions.public_key())));
}

#[test]
fn a_flood_of_hellos_from_many_nicks_is_bounded() {
    let mut r = Relay::new();
    let now = r.now;
    // Real handshake openings from many different (invented) nicks, never finished.
    for i in 0..(MAX_INCOMING_HANDSHAKES + 50) {
        let nick = format!("mallory{i}");
        let hello = forged_hello(&nick, "bob", now);
        let actions = r.b.sessions.receive(&nick, &hello, now);
        let replied = actions.iter().any(|a| matches!(a, Action::Send { payload, .. } if matches!(envelope(payload), Envelope::Reply { .. })));
        assert_eq!(replied, i < MAX_INCOMING_HANDSHAKES, "hello {i}");
    }
    assert_eq!(
        r.b.sessions.peer_count(),
        MAX_INCOMING_HANDSHAKES,
        "no state for refused senders"
    );
    // A real peer still gets through once the stale handshakes time out (a responder waits
    // RESPONDER_PATIENCE times the handshake timeout).
    r.now += Duration::from_secs(30 * u64::from(RESPONDER_PATIENCE) + 1);
    let actions = r.b.sessions.tick(r.now);
    r.apply(false, actions);
    r.a.inbox.clear();
    r.b.events.clear();
    r.connect();
    assert_eq!(Relay::readies(&r.b).len(), 1);
}
