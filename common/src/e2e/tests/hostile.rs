//! A hostile server: it replays stored ciphertext, drops, reorders and alters messages, serves
//! bundles with a bad signature or another user's key, serves one one-time prekey twice, and
//! withholds prekeys. Each is detected, or its effect is the documented one (SECURITY.md).

use std::cell::RefCell;
use std::rc::Rc;

use super::super::envelope::Envelope;
use super::*;
use crate::e2e::Failure;

#[test]
fn replayed_ciphertext_is_never_shown_twice() {
    let mut w = pair();
    w.login("alice");
    w.login("bob");
    w.send("alice", "bob", "once").unwrap();
    w.send("bob", "alice", "answer").unwrap();
    w.send("alice", "bob", "twice?").unwrap();
    // The server sends every stored relay again, under new ids.
    let old: Vec<_> = w.relayed.clone();
    for (id, from, to, payload) in old {
        w.mailboxes
            .entry(nick_key(&to))
            .or_default()
            .push_back((id + 1000, from, payload));
    }
    w.deliver("bob");
    w.deliver("alice");
    assert_eq!(w.texts("bob", "alice"), vec!["once", "twice?"]);
    assert_eq!(w.texts("alice", "bob"), vec!["answer"]);
    let replays = w
        .user("bob")
        .events
        .iter()
        .filter(|e| matches!(e, E2eEvent::Replayed { .. }))
        .count();
    assert_eq!(replays, 2);
}

#[test]
fn a_replayed_session_start_without_a_one_time_key_is_not_a_new_session() {
    let mut w = pair();
    // The directory withholds one-time prekeys: the start rests on the signed prekey only.
    w.bundle_hook = Some(Box::new(|_, answer| {
        if let BundleAnswer::Keys(b) = answer {
            b.one_time = None;
        }
    }));
    w.login("alice");
    w.send("alice", "bob", "first").unwrap();
    w.login("bob");
    assert_eq!(w.texts("bob", "alice"), vec!["first"]);
    // Bob answers (alice's start stops), then much later the server replays the start.
    w.send("bob", "alice", "hi").unwrap();
    w.send("alice", "bob", "second").unwrap();
    let (_, from, _, start) = w.relayed[0].clone();
    w.mailboxes
        .entry("bob".into())
        .or_default()
        .push_back((9999, from, start));
    w.deliver("bob");
    assert_eq!(w.texts("bob", "alice"), vec!["first", "second"]);
    assert!(w.saw("bob", |e| matches!(e, E2eEvent::Replayed { .. })));
}

#[test]
fn dropped_and_reordered_messages_still_decrypt_and_altered_ones_are_reported_not_shown() {
    let mut w = pair();
    w.login("alice");
    w.login("bob");
    w.send("alice", "bob", "hello").unwrap();
    w.send("bob", "alice", "hi").unwrap();
    w.logout("bob");
    for t in ["m1", "m2", "m3", "m4"] {
        w.send("alice", "bob", t).unwrap();
    }
    // Reorder (m3, m1, m4), drop m2, and alter a copy of m4 delivered first.
    let mut mail: Vec<Mail> = w.mailboxes.get_mut("bob").unwrap().drain(..).collect();
    let m4 = mail[3].clone();
    let mut altered = m4.clone();
    altered.0 += 500;
    let last = altered.2.len() - 1;
    altered.2[last] ^= 1;
    let order = vec![altered, mail[2].clone(), mail[0].clone(), m4];
    mail.clear();
    w.mailboxes.get_mut("bob").unwrap().extend(order);
    w.login("bob");
    assert_eq!(w.texts("bob", "alice"), vec!["hello", "m3", "m1", "m4"]);
    assert!(w.saw("bob", |e| matches!(e, E2eEvent::Unreadable { .. })));
    // The session goes on.
    w.send("bob", "alice", "still here").unwrap();
    assert_eq!(w.texts("alice", "bob"), vec!["hi", "still here"]);
}

#[test]
fn a_bundle_with_a_bad_signature_is_refused_and_blocks_until_the_user_retries() {
    let mut w = pair();
    w.login("alice");
    w.bundle_hook = Some(Box::new(|_, answer| {
        if let BundleAnswer::Keys(b) = answer {
            b.signed_prekey.key[0] ^= 1; // a prekey of the server's choosing
        }
    }));
    let line = w.send("alice", "bob", "secret").unwrap();
    assert!(w.relayed.is_empty(), "nothing sent");
    assert!(w.user("alice").plain.is_empty());
    assert!(w.saw("alice", |e| matches!(
        e,
        E2eEvent::Failed { failure: Failure::BadSignature, unsent, .. } if unsent == &vec![line]
    )));
    assert!(matches!(
        w.send("alice", "bob", "again"),
        Err(Refused::Blocked {
            failure: Failure::BadSignature,
            ..
        })
    ));
    // The block survives a restart.
    w.crash("alice");
    w.login("alice");
    assert!(w.send("alice", "bob", "again").is_err());
    // An honest directory and an explicit /secure: it works.
    w.bundle_hook = None;
    w.command("alice", |s, now| s.start("bob", now)).unwrap();
    w.send("alice", "bob", "now").unwrap();
    w.login("bob");
    assert_eq!(w.texts("bob", "alice"), vec!["now"]);
}

#[test]
fn another_users_key_in_the_directory_is_a_key_change_once_a_key_is_pinned() {
    let mut w = pair();
    w.add("mallory");
    w.login("mallory");
    w.logout("mallory");
    w.login("alice");
    w.send("alice", "bob", "hi bob").unwrap();
    w.login("bob");
    // Later the directory serves mallory's keys as bob's (to a new session of alice's).
    let mallory = w.bundle_for("mallory");
    w.bundle_hook = Some(Box::new(move |_, answer| *answer = mallory.clone()));
    w.command("alice", |s, _| s.end("bob")).unwrap();
    // Alice's sessions are gone after a restart from an old state (say, a new machine with
    // the pins copied): the next line needs the directory.
    let i = w.idx("alice");
    let pins = w.users[i].sessions.pins().clone();
    let identity = w.users[i].identity.clone();
    w.users[i].sessions = Sessions::new("alice", identity, pins, E2eConfig::default());
    let line = w.send("alice", "bob", "for bob only").unwrap();
    assert!(w.saw("alice", |e| matches!(
        e,
        E2eEvent::Failed { failure: Failure::KeyChanged { .. }, unsent, .. } if unsent == &vec![line]
    )));
    assert!(matches!(
        w.send("alice", "bob", "again"),
        Err(Refused::KeyNotAccepted(_))
    ));
    assert!(!w
        .payloads("alice", "bob")
        .iter()
        .any(|p| contains(p, b"for bob only")));
    // The safety number to compare is the one of the key presented now.
    let number = w.user("alice").sessions.safety_number("bob").unwrap();
    let mallory_key = *w.user("mallory").identity.public();
    let expected = crate::safety::safety_number(
        "alice",
        w.user("alice").identity.public(),
        "bob",
        &mallory_key,
    );
    assert_eq!(number, expected);
}

#[test]
fn a_first_contact_key_from_the_directory_is_pinned_as_not_verified() {
    let mut w = pair();
    w.login("alice");
    w.send("alice", "bob", "hi").unwrap();
    assert!(w.saw("alice", |e| matches!(
        e,
        E2eEvent::Ready {
            trust: crate::e2e::Trust::New,
            by_peer: false,
            ..
        }
    )));
    assert_eq!(
        crate::e2e::Trust::New.to_string(),
        "not verified (first contact: key from the server's directory, now pinned)"
    );
    assert!(w.user("alice").sessions.pins().get("bob").is_some());
}

#[test]
fn a_one_time_prekey_served_twice_makes_the_second_start_unreadable_not_a_session() {
    let mut w = pair();
    w.add("carol");
    w.login("carol");
    w.logout("carol");
    // The directory hands bob's first one-time prekey to both alice and carol.
    let served: Rc<RefCell<Option<BundleAnswer>>> = Rc::default();
    let keep = Rc::clone(&served);
    w.bundle_hook = Some(Box::new(move |nick, answer| {
        if nick == "bob" {
            let mut kept = keep.borrow_mut();
            match kept.as_ref() {
                Some(first) => *answer = first.clone(),
                None => *kept = Some(answer.clone()),
            }
        }
    }));
    w.login("alice");
    w.send("alice", "bob", "from alice").unwrap();
    w.logout("alice");
    w.login("carol");
    w.send("carol", "bob", "from carol").unwrap();
    w.login("bob");
    assert_eq!(w.texts("bob", "alice"), vec!["from alice"]);
    assert!(w.texts("bob", "carol").is_empty());
    assert!(w.saw(
        "bob",
        |e| matches!(e, E2eEvent::Unreadable { peer } if peer == "carol")
    ));
}

#[test]
fn a_message_from_a_changed_key_is_not_shown() {
    let mut w = pair();
    w.login("alice");
    w.send("alice", "bob", "hi").unwrap();
    w.login("bob");
    w.send("bob", "alice", "hello").unwrap();
    // Alice's home is replaced (a new identity under the same nick).
    let i = w.idx("alice");
    let identity = Identity::generate();
    w.users[i].identity = identity.clone();
    w.users[i].sessions = Sessions::new("alice", identity, Pins::default(), E2eConfig::default());
    w.logout("alice");
    w.login("alice");
    w.send("alice", "bob", "it's me, new key").unwrap();
    assert_eq!(w.texts("bob", "alice"), vec!["hi"]);
    assert!(w.saw("bob", |e| matches!(
        e,
        E2eEvent::Failed {
            failure: Failure::KeyChanged { .. },
            ..
        }
    )));
    assert!(matches!(
        w.send("bob", "alice", "x"),
        Err(Refused::KeyNotAccepted(_))
    ));
    // Accepted after comparing: the next line goes to the new key.
    w.command("bob", |s, now| s.accept_key("alice", now))
        .unwrap();
    w.send("bob", "alice", "welcome back").unwrap();
    assert!(w
        .texts("alice", "bob")
        .contains(&"welcome back".to_string()));
}

#[test]
fn junk_payloads_are_reported_and_change_nothing() {
    let mut w = pair();
    w.login("alice");
    w.login("bob");
    w.send("alice", "bob", "ok").unwrap();
    let state = w.user("bob").sessions.state_bytes().to_vec();
    for junk in [
        vec![],
        vec![0u8],
        vec![1, 2, 3],
        vec![0xFF; 64],
        vec![1; 20_000],
    ] {
        w.mailboxes
            .entry("bob".into())
            .or_default()
            .push_back((7777, "alice".into(), junk));
        w.deliver("bob");
    }
    assert_eq!(w.user("bob").sessions.state_bytes().to_vec(), state);
    w.send("alice", "bob", "still fine").unwrap();
    assert_eq!(w.texts("bob", "alice"), vec!["ok", "still fine"]);
    // An envelope decodes but its ciphertext is over the bound: refused before decryption.
    let big = Envelope::Message(crate::e2e::Sealed {
        header: crate::e2e::ratchet::Header {
            dh: [9; 32],
            pn: 0,
            n: 0,
        },
        ciphertext: vec![0; crate::e2e::MAX_CIPHERTEXT + 1],
    });
    let bytes = postcard::to_allocvec(&big).unwrap();
    let i = w.idx("bob");
    let now = w.now;
    let actions = w.users[i].sessions.receive("alice", 8888, &bytes, now);
    assert!(matches!(
        actions.as_slice(),
        [Action::Event(E2eEvent::Unreadable { .. })]
    ));
}
