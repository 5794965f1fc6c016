//! The independent review's hostile-server tests (each failed before its fix).

use super::super::envelope::{encode, pad, Envelope, Inner, Sealed};
use super::*;
use crate::e2e::ratchet::Ratchet;
use crate::e2e::{x3dh, Failure};

fn talking() -> World {
    let mut w = pair();
    w.login("alice");
    w.login("bob");
    w.send("alice", "bob", "hello").unwrap();
    w.send("bob", "alice", "hi").unwrap();
    w
}

fn forged_start(identity: [u8; 32]) -> Envelope {
    Envelope::Start {
        identity,
        ephemeral: x3dh::public_key(&[8; 32]),
        signed_prekey: 0,
        one_time: None,
        message: Sealed {
            header: crate::e2e::ratchet::Header {
                dh: [9; 32],
                pn: 0,
                n: 0,
            },
            ciphertext: vec![0; 144],
        },
    }
}

/// A valid start to `bundle`'s owner (bob) made by `from_identity` under the nick `from`.
fn server_start(
    from: &str,
    from_identity: &Identity,
    bundle: &PrekeyBundle,
    rng: &mut TestRng,
    one_time: bool,
) -> Envelope {
    start_saying(from, from_identity, bundle, rng, one_time, "x")
}

/// [`server_start`] carrying `text` (any text: a hostile client encrypts what it likes).
fn start_saying(
    from: &str,
    from_identity: &Identity,
    bundle: &PrekeyBundle,
    rng: &mut TestRng,
    one_time: bool,
    text: &str,
) -> Envelope {
    let mut eph = [0u8; 32];
    rng.fill_bytes(&mut eph);
    let b = PrekeyBundle {
        one_time: if one_time {
            bundle.one_time.clone()
        } else {
            None
        },
        ..bundle.clone()
    };
    let start = x3dh::initiate(from, from_identity, "bob", &b, &eph).unwrap();
    let mut r = Ratchet::initiator(
        &start.shared,
        &b.signed_prekey.key,
        start.associated_data,
        rng,
    )
    .unwrap();
    let (header, ciphertext) = r.encrypt(&pad(&Inner::Text(text.into())).unwrap()).unwrap();
    Envelope::Start {
        identity: *from_identity.public(),
        ephemeral: x3dh::public_key(&eph),
        signed_prekey: b.signed_prekey.id,
        one_time: b.one_time.as_ref().map(|k| k.id),
        message: Sealed { header, ciphertext },
    }
}

/// F1: a relay id seen before, with other bytes, is not the message shown again.
#[test]
fn review_a_reused_relay_id_with_junk_shows_the_text_again() {
    let mut w = talking();
    w.logout("bob");
    w.send("alice", "bob", "pay 200").unwrap();
    let (id, from, _, payload) = w.relayed.last().unwrap().clone();
    let i = w.idx("bob");
    let now = w.now;
    let first = w.users[i].sessions.receive(&from, id, &payload, now);
    assert!(first
        .iter()
        .any(|a| matches!(a, Action::Event(E2eEvent::Message { .. }))));
    let again = w.users[i].sessions.receive(&from, id, b"junk", now);
    assert!(
        !again
            .iter()
            .any(|a| matches!(a, Action::Event(E2eEvent::Message { .. }))),
        "shown twice: {again:?}"
    );
    // Nor the same bytes again in the same run (the client saw it already).
    let same = w.users[i].sessions.receive(&from, id, &payload, now);
    assert!(!same
        .iter()
        .any(|a| matches!(a, Action::Event(E2eEvent::Message { .. }))));
}

/// F2: a forged start (random key, no proof) neither wipes the sessions nor blocks.
#[test]
fn review_a_forged_start_with_a_random_key_does_not_wipe_the_sessions() {
    let mut w = talking();
    w.mailboxes.entry("bob".into()).or_default().push_back((
        5000,
        "alice".into(),
        encode(&forged_start(x3dh::public_key(&[7; 32]))),
    ));
    w.deliver("bob");
    w.send("alice", "bob", "still me").unwrap();
    assert_eq!(
        w.texts("bob", "alice"),
        vec!["hello", "still me"],
        "{:?}",
        w.status("bob", "alice")
    );
}

/// F2: a key nobody proved is never offered for `/accept-key`.
#[test]
fn review_forged_start_key_change_can_be_accepted_as_garbage() {
    let mut w = talking();
    let junk_key = x3dh::public_key(&[7; 32]);
    let i = w.idx("bob");
    let now = w.now;
    let _ = w.users[i]
        .sessions
        .receive("alice", 6000, &encode(&forged_start(junk_key)), now);
    assert!(!matches!(
        w.status("bob", "alice"),
        Status::Failed(Failure::KeyChanged { .. })
    ));
    assert!(w
        .command("bob", |s, now| s.accept_key("alice", now))
        .is_err());
    assert_ne!(
        w.user("bob").sessions.pins().get("alice").map(|p| p.key),
        Some(junk_key),
        "pinned a key that never authenticated anything"
    );
}

/// F2: a start proven by another key blocks sending, but keeps the sessions with the pinned
/// key: messages in them still decrypt.
#[test]
fn review_a_proven_key_change_blocks_but_keeps_the_pinned_sessions() {
    let mut w = talking();
    let BundleAnswer::Keys(bundle) = w.bundle_for("bob") else {
        panic!()
    };
    let mallory = Identity::generate();
    let mut rng = TestRng(3);
    let env = server_start("alice", &mallory, &bundle, &mut rng, true);
    w.mailboxes
        .entry("bob".into())
        .or_default()
        .push_back((7000, "alice".into(), encode(&env)));
    w.deliver("bob");
    assert!(matches!(
        w.status("bob", "alice"),
        Status::Failed(Failure::KeyChanged { .. })
    ));
    assert!(matches!(
        w.send("bob", "alice", "x"),
        Err(Refused::KeyNotAccepted(_))
    ));
    w.send("alice", "bob", "from the real alice").unwrap();
    assert_eq!(
        w.texts("bob", "alice"),
        vec!["hello", "from the real alice"]
    );
}

/// F3: the starts taken are never pushed out by newer ones: once a signed prekey's list is
/// full, further starts on it without a one-time prekey are refused, and the prekey is
/// replaced at the next login.
#[test]
fn review_a_replayed_start_after_flushing_the_seen_list_is_not_shown_again() {
    let mut w = pair();
    w.bundle_hook = Some(Box::new(|_, answer| {
        if let BundleAnswer::Keys(b) = answer {
            b.one_time = None;
        }
    }));
    w.login("alice");
    w.send("alice", "bob", "meet at 5").unwrap();
    w.login("bob");
    assert_eq!(w.texts("bob", "alice"), vec!["meet at 5"]);
    let (_, _, _, old_start) = w.relayed[0].clone();
    let i = w.idx("bob");
    let now = w.now;
    let BundleAnswer::Keys(bundle) = w.bundle_for("bob") else {
        panic!()
    };
    let mallory = Identity::generate();
    let mut rng = TestRng(42);
    let mut taken = 0;
    let mut refused = 0;
    let max = crate::e2e::config::MAX_SEEN_STARTS;
    for k in 0..max as u64 * 2 {
        let env = server_start("mallory", &mallory, &bundle, &mut rng, false);
        let actions = w.users[i]
            .sessions
            .receive("mallory", 10_000 + k, &encode(&env), now);
        w.users[i].sessions.acknowledged(10_000 + k);
        if actions
            .iter()
            .any(|a| matches!(a, Action::Event(E2eEvent::Message { .. })))
        {
            taken += 1;
        } else {
            refused += 1;
        }
    }
    // Alice's start holds one place of the list: mallory's fill the rest, then are refused.
    assert_eq!(taken, max - 1);
    assert_eq!(refused, max + 1);
    let actions = w.users[i]
        .sessions
        .receive("alice", 99_999, &old_start, now);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Event(E2eEvent::Message { .. }))),
        "an old message shown again as new: {actions:?}"
    );
    // The full prekey is replaced at the next login.
    let (now, ms) = (w.now, w.now_ms);
    let login = w.users[i].sessions.login(now, ms);
    let after = login.iter().find_map(|a| match a {
        Action::Publish(u) => Some(u.signed_prekey.id),
        _ => None,
    });
    assert_ne!(after, Some(bundle.signed_prekey.id));
}

/// F3, underneath: a start remembered stays remembered while its prekey is kept, however many
/// come after it; it goes with its prekey.
#[test]
fn review_starts_are_remembered_per_signed_prekey_and_never_pushed_out() {
    let mut keys = super::super::keys::OwnKeys::default();
    let first = [1u8; 32];
    keys.remember_start(7, first);
    for k in 0..crate::e2e::config::MAX_SEEN_STARTS * 3 {
        let mut e = [0u8; 32];
        e[..8].copy_from_slice(&(k as u64 + 10).to_le_bytes());
        keys.remember_start(7, e);
    }
    assert!(keys.seen_start(&first));
    assert!(!keys.can_remember(7));
    assert!(keys.can_remember(8));
    assert!(keys.rotate_now);
}

/// F4: junk from invented nicks makes no entries.
#[test]
fn review_junk_from_invented_nicks_does_not_fill_the_peer_table() {
    let mut w = pair();
    w.login("bob");
    let i = w.idx("bob");
    let now = w.now;
    for k in 0..crate::e2e::MAX_PEERS + 10 {
        let _ = w.users[i]
            .sessions
            .receive(&format!("x{k}"), k as u64, b"junk", now);
    }
    w.login("alice");
    w.send("alice", "bob", "hello").unwrap();
    assert_eq!(w.texts("bob", "alice"), vec!["hello"]);
    w.send("bob", "alice", "and to a new contact too").unwrap();
}

/// F6: a sender that is not a nick is nobody's, and cannot poison the saved state.
#[test]
fn review_a_session_from_a_non_nick_does_not_poison_the_saved_state() {
    let mut w = pair();
    w.login("bob");
    let BundleAnswer::Keys(bundle) = w.bundle_for("bob") else {
        panic!()
    };
    let server = Identity::generate();
    let mut rng = TestRng(7);
    let bad_nick = "not a nick!";
    let env = server_start(bad_nick, &server, &bundle, &mut rng, true);
    let i = w.idx("bob");
    let now = w.now;
    let actions = w.users[i].sessions.receive(bad_nick, 1, &encode(&env), now);
    assert!(actions.is_empty(), "{actions:?}");
    let saved = w.users[i].sessions.state_bytes().to_vec();
    let mut fresh = Sessions::new(
        "bob",
        w.users[i].identity.clone(),
        Pins::default(),
        E2eConfig::default(),
    );
    assert!(
        fresh.restore(&saved).is_ok(),
        "bob's saved state no longer restores"
    );
}

/// A directory key with a bad signature is refused as such, not offered as a key change.
#[test]
fn review_a_directory_key_that_signs_nothing_is_not_a_key_change() {
    let mut w = talking();
    w.command("alice", |s, _| s.end("bob")).unwrap();
    let i = w.idx("alice");
    let pins = w.users[i].sessions.pins().clone();
    let identity = w.users[i].identity.clone();
    w.users[i].sessions = Sessions::new("alice", identity, pins, E2eConfig::default());
    w.bundle_hook = Some(Box::new(|_, answer| {
        if let BundleAnswer::Keys(b) = answer {
            b.identity = x3dh::public_key(&[5; 32]);
        }
    }));
    w.send("alice", "bob", "x").unwrap();
    assert_eq!(
        w.status("alice", "bob"),
        Status::Failed(Failure::BadSignature)
    );
}

/// F8: once another copy of the home is reported, this copy never encrypts on the sessions
/// the copy may also hold: the next text starts a new session (fresh keys).
#[test]
fn review_after_another_copy_is_reported_the_next_text_starts_a_fresh_session() {
    let mut w = talking();
    let i = w.idx("alice");
    let fetches = w.fetches;
    let actions = w.users[i].sessions.published(100, true);
    w.run(i, actions);
    w.send("alice", "bob", "fresh").unwrap();
    assert_eq!(w.fetches, fetches + 1, "a new session from a new bundle");
    let last = w.relayed.last().unwrap().3.clone();
    assert!(matches!(
        postcard::from_bytes::<Envelope>(&last),
        Ok(Envelope::Start { .. })
    ));
    assert_eq!(w.texts("bob", "alice"), vec!["hello", "fresh"]);
    // After a restart too.
    w.crash("alice");
    w.login("alice");
    w.send("alice", "bob", "again").unwrap();
    assert_eq!(w.fetches, fetches + 1);
    assert_eq!(w.texts("bob", "alice"), vec!["hello", "fresh", "again"]);
}

/// A hostile client encrypts a text no client of ours would send (a line separator and a
/// forged `[secure] <bob>` after it): it is not shown at all.
#[test]
fn review_a_peers_text_with_refused_characters_is_not_shown() {
    let mut w = pair();
    w.login("bob");
    let mallory = Identity::generate();
    let mut rng = TestRng(11);
    let i = w.idx("bob");
    let now = w.now;
    for (k, bad) in ["hi\u{2028}[secure] <bob> send it", "a\nb", "\u{1b}[2J", ""]
        .iter()
        .enumerate()
    {
        let BundleAnswer::Keys(bundle) = w.bundle_for("bob") else {
            panic!()
        };
        let env = start_saying("mallory", &mallory, &bundle, &mut rng, true, bad);
        let actions = w.users[i]
            .sessions
            .receive("mallory", 100 + k as u64, &encode(&env), now);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::Event(E2eEvent::Message { .. }))),
            "{bad:?}: {actions:?}"
        );
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::Event(E2eEvent::Unreadable { .. }))));
    }
}

/// A saved state damaged anywhere (one byte) is refused whole, not half-read into keys that
/// decrypt nothing (found by the breaker: 90 of 96 changed bytes were taken).
#[test]
fn a_state_with_any_byte_changed_is_refused() {
    let mut w = talking();
    w.send("alice", "bob", "x").unwrap();
    let saved = w.user("bob").saved.clone();
    let identity = w.user("bob").identity.clone();
    for at in 0..saved.len() {
        let mut bad = saved.clone();
        bad[at] ^= 0x2a;
        let mut s = Sessions::new(
            "bob",
            identity.clone(),
            Pins::default(),
            E2eConfig::default(),
        );
        assert!(s.restore(&bad).is_err(), "byte {at} of {}", saved.len());
    }
}

/// Not a nick: refused at once (it waited 30 s for an answer to a fetch the server could not
/// match); and `/insecure` to oneself is refused like `/secure`.
#[test]
fn lines_to_what_is_not_a_nick_are_refused_at_once() {
    let mut w = pair();
    w.login("alice");
    let long = "x".repeat(40);
    assert!(matches!(
        w.send("alice", &long, "hi"),
        Err(Refused::InvalidNick(_))
    ));
    assert!(matches!(
        w.send("alice", "bad!nick", "hi"),
        Err(Refused::InvalidNick(_))
    ));
    assert_eq!(w.fetches, 0);
    assert!(matches!(
        w.command("alice", |s, _| s.end("alice")),
        Err(Refused::Yourself)
    ));
}

/// `/secure` after `/insecure` says so.
#[test]
fn secure_again_after_insecure_is_said() {
    let mut w = talking();
    w.command("alice", |s, _| s.end("bob")).unwrap();
    w.command("alice", |s, now| s.start("bob", now)).unwrap();
    assert!(w.saw(
        "alice",
        |e| matches!(e, E2eEvent::Resumed { peer } if peer == "bob")
    ));
}
