//! The peer table against a flood of valid session starts (a hostile server registers invented
//! nicks and their keys, and relays their starts): entries the peer started and the user never
//! took part in are bounded and make room, least recently used first; the user's own
//! conversations are never evicted for them.

use sha2::Digest;

use super::*;
use crate::e2e::config::{MAX_PEERS, MAX_UNSOLICITED};

/// A small table: 8 peers, of which at most 2 unsolicited.
fn small() -> E2eConfig {
    E2eConfig {
        max_peers: 8,
        max_unsolicited: 2,
        ..E2eConfig::default()
    }
}

/// Bob (logged in, keys published) and Alice (keys published, offline), in a small table.
fn bob_online() -> World {
    let mut w = World::with_config(small());
    w.add("alice");
    w.add("bob");
    w.login("alice");
    w.logout("alice");
    w.login("bob");
    w
}

/// A client of an invented nick, outside the world: a valid start to `to`, from a bundle the
/// fake directory hands out. Returns its sessions (to write again) and the payload.
fn stranger(w: &mut World, nick: &str, to: &str, text: &str) -> (Sessions, Vec<u8>) {
    let mut s = Sessions::new(
        nick,
        Identity::generate(),
        Pins::default(),
        E2eConfig::default(),
    );
    let now = w.now;
    let Ok(Outgoing::Queued(_)) = s.send_text(to, text, 1, now) else {
        panic!("queued for the keys")
    };
    let answer = w.bundle_for(to);
    let actions = s.bundle(to, answer, now);
    (s, sent(&actions))
}

/// The payload of the (last) Send in `actions`.
fn sent(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::Send { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .expect("a send")
}

/// Relays `payload` from `from` to `to` (who takes it and acknowledges it, if online).
fn relay(w: &mut World, from: &str, to: &str, id: u64, payload: Vec<u8>) {
    w.mailboxes
        .entry(nick_key(to))
        .or_default()
        .push_back((id, from.to_owned(), payload));
    w.deliver(to);
}

/// Whether the last event of `nick` is `Unreadable` or `Replayed` from `peer` (not shown).
fn last_not_shown(w: &World, nick: &str, peer: &str) -> bool {
    matches!(
        w.user(nick).events.last(),
        Some(E2eEvent::Unreadable { peer: p } | E2eEvent::Replayed { peer: p }) if p == peer
    )
}

#[test]
fn the_default_bound_of_unsolicited_entries_is_a_quarter_of_the_table() {
    let c = E2eConfig::default();
    assert_eq!(c.max_peers, MAX_PEERS);
    assert_eq!(c.max_unsolicited, MAX_UNSOLICITED);
    assert_eq!(MAX_UNSOLICITED, 1024);
}

#[test]
fn a_flood_of_valid_starts_leaves_msg_and_insecure_to_a_new_peer_working() {
    let mut w = bob_online();
    for round in 0..2u64 {
        for k in 0..20u64 {
            let nick = format!("flood{round}x{k}");
            let (_, payload) = stranger(&mut w, &nick, "bob", "hi");
            relay(&mut w, &nick, "bob", 1000 + 100 * round + k, payload);
        }
        // Each start was read (and shown): the newest ones still have their entries, the
        // oldest made room.
        let nick = |k: u64| format!("flood{round}x{k}");
        assert_eq!(w.texts("bob", &nick(0)), vec!["hi"]);
        assert_eq!(w.texts("bob", &nick(19)), vec!["hi"]);
        assert!(matches!(w.status("bob", &nick(19)), Status::Secure { .. }));
        assert!(matches!(w.status("bob", &nick(18)), Status::Secure { .. }));
        assert_eq!(w.status("bob", &nick(17)), Status::Ready);
        // /insecure and /msg to peers the table never had.
        let carol = format!("carol{round}");
        w.command("bob", |s, _| s.end(&carol)).unwrap();
        assert_eq!(w.status("bob", &carol), Status::Plain);
        w.login("alice");
        w.send("bob", "alice", "to a real friend").unwrap();
        assert_eq!(w.texts("alice", "bob").last().unwrap(), "to a real friend");
        w.logout("alice");
        // Again after a reload.
        w.crash("bob");
        w.login("bob");
    }
}

#[test]
fn entries_the_user_took_part_in_are_never_evicted_for_a_start() {
    let mut w = bob_online();
    // Six conversations of Bob's own: five plain, one with a text waiting.
    for k in 0..5 {
        w.command("bob", |s, _| s.end(&format!("user{k}"))).unwrap();
    }
    w.send("bob", "nokeys", "waiting").unwrap(); // no such user: fails, holds nothing after
    w.send("bob", "alice", "hello").unwrap(); // a session Bob started
                                              // Two unsolicited: the table is full (8).
    let (mut m1, p1) = stranger(&mut w, "m1", "bob", "one");
    relay(&mut w, "m1", "bob", 101, p1);
    let (_, p2) = stranger(&mut w, "m2", "bob", "two");
    relay(&mut w, "m2", "bob", 102, p2);
    // The entry that held nothing made room for m2.
    assert!(matches!(w.status("bob", "nokeys"), Status::Ready));
    assert_eq!(w.texts("bob", "m1"), vec!["one"]);
    assert_eq!(w.texts("bob", "m2"), vec!["two"]);
    // A third start: the least recently used unsolicited entry (m1) makes room, no other.
    let (_, p3) = stranger(&mut w, "m3", "bob", "three");
    relay(&mut w, "m3", "bob", 103, p3);
    assert_eq!(w.texts("bob", "m3"), vec!["three"]);
    let Ok(Outgoing::Secure(actions)) = m1.send_text("bob", "again", 2, w.now) else {
        panic!("m1 has a session")
    };
    let again = sent(&actions);
    relay(&mut w, "m1", "bob", 104, again);
    assert!(last_not_shown(&w, "bob", "m1"), "m1's entry made room");
    assert_eq!(w.texts("bob", "m1"), vec!["one"]);
    for k in 0..5 {
        assert_eq!(w.status("bob", &format!("user{k}")), Status::Plain);
    }
    assert!(matches!(w.status("bob", "alice"), Status::Secure { .. }));
    // Bob answers m2: no longer unsolicited. m3 still is.
    w.send("bob", "m2", "who are you?").unwrap();
    // A new conversation of the user's takes the unsolicited entry's place (m3); then there
    // is no room left: refused in plain words.
    w.command("bob", |s, _| s.end("user5")).unwrap();
    assert_eq!(w.status("bob", "m3"), Status::Ready, "m3 made room");
    let refused = w.command("bob", |s, _| s.end("user6")).unwrap_err();
    assert_eq!(refused, Refused::TooManyPeers);
    assert_eq!(
        refused.to_string(),
        "too many end-to-end conversations (4096 people, the most kept): nothing was sent or changed"
    );
    assert_eq!(
        w.send("bob", "user8", "x").unwrap_err(),
        Refused::TooManyPeers
    );
    assert!(matches!(w.status("bob", "m2"), Status::Secure { .. }));
    // A start now finds no room: unreadable, and nothing of Bob's is spent on it.
    let one_time = w.user("bob").sessions.one_time_secrets();
    let (_, p4) = stranger(&mut w, "m4", "bob", "four");
    relay(&mut w, "m4", "bob", 105, p4);
    assert!(last_not_shown(&w, "bob", "m4"));
    assert_eq!(w.user("bob").sessions.one_time_secrets(), one_time);
    assert!(w.user("bob").sessions.pins().get("m4").is_none());
}

#[test]
fn an_unsolicited_entry_with_a_message_not_acknowledged_is_kept() {
    let mut w = bob_online();
    let (_, p1) = stranger(&mut w, "m1", "bob", "one");
    let i = w.idx("bob");
    let now = w.now;
    // Shown but not acknowledged yet (the client crashed before sending Received).
    let actions = w.users[i].sessions.receive("m1", 900, &p1, now);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Event(E2eEvent::Message { .. }))));
    let (_, p2) = stranger(&mut w, "m2", "bob", "two");
    relay(&mut w, "m2", "bob", 150, p2);
    let (_, p3) = stranger(&mut w, "m3", "bob", "three");
    relay(&mut w, "m3", "bob", 160, p3);
    // m2 made room for m3, not m1 (older, but holding a message to show again).
    assert!(matches!(w.status("bob", "m1"), Status::Secure { .. }));
    assert_eq!(w.status("bob", "m2"), Status::Ready);
    assert!(matches!(w.status("bob", "m3"), Status::Secure { .. }));
}

#[test]
fn a_verified_key_is_taken_part_in() {
    let mut w = bob_online();
    let (_, p1) = stranger(&mut w, "m1", "bob", "one");
    relay(&mut w, "m1", "bob", 301, p1);
    w.command("bob", |s, now| s.mark_verified("m1", now))
        .unwrap();
    for k in 2..6u64 {
        let nick = format!("m{k}");
        let (_, p) = stranger(&mut w, &nick, "bob", "x");
        relay(&mut w, &nick, "bob", 300 + k, p);
    }
    assert!(matches!(w.status("bob", "m1"), Status::Secure { .. }));
    assert_eq!(w.status("bob", "m2"), Status::Ready);
}

#[test]
fn a_restored_state_keeps_the_order_and_who_started() {
    let mut w = bob_online();
    let (_, p1) = stranger(&mut w, "m1", "bob", "one");
    relay(&mut w, "m1", "bob", 401, p1);
    let (_, p2) = stranger(&mut w, "m2", "bob", "two");
    relay(&mut w, "m2", "bob", 402, p2);
    let (_, p3) = stranger(&mut w, "m3", "bob", "three");
    relay(&mut w, "m3", "bob", 403, p3);
    // m1 made room; now m2 is the least recently used, across reloads.
    assert_eq!(w.status("bob", "m1"), Status::Ready);
    for _ in 0..3 {
        w.crash("bob");
        w.login("bob");
    }
    let (_, p4) = stranger(&mut w, "m4", "bob", "four");
    relay(&mut w, "m4", "bob", 404, p4);
    assert_eq!(w.status("bob", "m2"), Status::Ready);
    assert!(matches!(w.status("bob", "m3"), Status::Secure { .. }));
    assert!(matches!(w.status("bob", "m4"), Status::Secure { .. }));
}

#[test]
fn a_state_saved_before_the_flags_loads_with_every_peer_taken_part_in() {
    let mut w = bob_online();
    for k in 1..=2u64 {
        let nick = format!("m{k}");
        let (_, p) = stranger(&mut w, &nick, "bob", "x");
        relay(&mut w, &nick, "bob", 500 + k, p);
    }
    // The document as format 1 wrote it: version byte 1, without what follows it (nothing
    // held: an empty list; then SavedUse: two flags, both set).
    let saved = w.user("bob").saved.clone();
    let body = &saved[..saved.len() - 32];
    let after = [0u8, 2, 1, 1];
    assert!(body.ends_with(&after));
    assert_eq!(body[0], 2, "format 2");
    let mut old = body[..body.len() - after.len()].to_vec();
    old[0] = 1;
    let mut old_state = old.clone();
    old_state.extend_from_slice(&sha2::Sha256::digest(&old));
    let user = w.user_mut("bob");
    let mut fresh = Sessions::new(
        "bob",
        user.identity.clone(),
        user.saved_pins.clone(),
        small(),
    );
    fresh.restore(&old_state).expect("an older state loads");
    user.sessions = fresh;
    // Neither is unsolicited now (the quota counts only unsolicited entries): a third start
    // is taken, and m1 and m2 stay.
    let (_, p3) = stranger(&mut w, "m3", "bob", "three");
    relay(&mut w, "m3", "bob", 503, p3);
    for nick in ["m1", "m2", "m3"] {
        assert!(
            matches!(w.status("bob", nick), Status::Secure { .. }),
            "{nick}"
        );
    }
    // Format 1 with anything after its document is refused; so are damaged flags in format 2
    // (the wrong count, or bytes after them).
    let format_2_to_held = &body[..body.len() - 3];
    let damaged: [(&[u8], &[u8]); 6] = [
        (&old, &[0]),
        (&old, &[0, 2, 1, 1]),
        (format_2_to_held, &[1, 1]),
        (format_2_to_held, &[2, 1, 1, 0]),
        (format_2_to_held, &[2, 1, 7]),
        (format_2_to_held, &[]),
    ];
    for (head, bad) in damaged {
        let mut doc = head.to_vec();
        doc.extend_from_slice(bad);
        let sum = sha2::Sha256::digest(&doc);
        doc.extend_from_slice(&sum);
        let mut s = Sessions::new("bob", Identity::generate(), Pins::default(), small());
        assert_eq!(
            s.restore(&doc),
            Err(crate::e2e::StateError::Damaged),
            "{bad:?}"
        );
    }
}

/// Bob with `MAX_PINS` pins of strangers ("x0000".."x8191", verified if `verified`), logged in.
fn full_of_pins(verified: bool) -> World {
    use crate::e2e::config::MAX_PINS;
    let mut w = World::new();
    w.add("alice");
    w.add("bob");
    let mut pins = Pins::default();
    for i in 0..MAX_PINS {
        let nick = format!("x{i:04}");
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).to_le_bytes());
        pins.pin_new(&nick, &key);
        if verified {
            pins.mark_verified(&nick);
        }
    }
    let identity = w.user("bob").identity.clone();
    w.user_mut("bob").sessions = Sessions::new("bob", identity, pins, E2eConfig::default());
    w.login("alice");
    w.login("bob");
    w
}

/// Pins are bounded: a start from a new peer when `MAX_PINS` are pinned drops the least
/// recently pinned stranger's pin (not verified, no conversation), and the next one drops the
/// next; a pin verified or of a conversation in the table never goes.
#[test]
fn pins_are_bounded_the_oldest_strangers_pin_goes() {
    use crate::e2e::config::MAX_PINS;
    let mut w = full_of_pins(false);
    // A conversation with x0000: its pin stays.
    w.command("bob", |s, now| s.start("x0000", now)).unwrap();
    w.send("alice", "bob", "hello").unwrap();
    assert_eq!(w.texts("bob", "alice"), vec!["hello"]);
    let pins = w.user("bob").sessions.pins().clone();
    assert_eq!(pins.len(), MAX_PINS);
    assert!(pins.get("alice").is_some());
    assert!(pins.get("x0000").is_some(), "a conversation's pin went");
    assert!(
        pins.get("x0001").is_none(),
        "the oldest stranger's pin stayed"
    );
    // Pinned in this run: newer than the ones loaded.
    w.add("carol");
    w.login("carol");
    w.send("carol", "bob", "hi").unwrap();
    let pins = w.user("bob").sessions.pins().clone();
    assert_eq!(pins.len(), MAX_PINS);
    assert!(pins.get("alice").is_some() && pins.get("carol").is_some());
    assert!(pins.get("x0002").is_none());
}

/// Every pin verified: nothing may go, so a start from a new peer is refused as unreadable
/// before its cryptography (no one-time prekey spent, nothing pinned).
#[test]
fn pins_full_of_verified_keys_refuse_a_strangers_start() {
    use crate::e2e::config::MAX_PINS;
    let mut w = full_of_pins(true);
    let one_time = w.user("bob").sessions.one_time_secrets();
    w.send("alice", "bob", "hello").unwrap();
    assert!(w.texts("bob", "alice").is_empty());
    assert!(w.saw("bob", |e| matches!(e, E2eEvent::Unreadable { .. })));
    assert_eq!(w.user("bob").sessions.one_time_secrets(), one_time);
    assert_eq!(w.user("bob").sessions.pins().len(), MAX_PINS);
    assert!(w.user("bob").sessions.pins().get("alice").is_none());
}
