//! Messages that come under a peer's changed key before the user accepted it: held (saved,
//! bounded, counted), never lost; shown only after `/accept-key`, as if they arrived then.

use sha2::{Digest, Sha256};

use super::*;
use crate::e2e::config::{MAX_HELD, MAX_HELD_PER_PEER};
use crate::e2e::{Failure, StateError, Trust};

/// `nick`'s home is replaced (a new identity under the same nick); it logs in again.
fn replace_home(w: &mut World, nick: &str) -> [u8; 32] {
    let i = w.idx(nick);
    let identity = Identity::generate();
    let public = *identity.public();
    w.users[i].identity = identity.clone();
    w.users[i].sessions = Sessions::new(nick, identity, Pins::default(), E2eConfig::default());
    w.logout(nick);
    w.login(nick);
    public
}

/// Alice and Bob talked (Bob pinned Alice's key); then Alice's home is replaced. Both online.
pub(super) fn changed() -> (World, [u8; 32]) {
    let mut w = pair();
    w.login("alice");
    w.login("bob");
    w.send("alice", "bob", "hi").unwrap();
    w.send("bob", "alice", "hello").unwrap();
    let key = replace_home(&mut w, "alice");
    (w, key)
}

/// The last `Held` event `nick` saw: (held, dropped).
fn last_held(w: &World, nick: &str, peer: &str) -> Option<(usize, u64)> {
    w.user(nick).events.iter().rev().find_map(|e| match e {
        E2eEvent::Held {
            peer: p,
            held,
            dropped,
        } if nick_key(p) == nick_key(peer) => Some((*held, *dropped)),
        _ => None,
    })
}

fn key_changed(e: &E2eEvent) -> bool {
    matches!(
        e,
        E2eEvent::Failed {
            failure: Failure::KeyChanged { .. },
            ..
        }
    )
}

#[test]
fn messages_under_a_changed_key_are_held_and_shown_after_accept_key() {
    let (mut w, new_key) = changed();
    w.send("alice", "bob", "new 1").unwrap();
    w.send("alice", "bob", "new 2").unwrap();
    // Not shown, but not lost either: held, and Bob is told how many.
    assert_eq!(w.texts("bob", "alice"), vec!["hi"]);
    assert!(w.saw("bob", key_changed));
    assert_eq!(last_held(&w, "bob", "alice"), Some((2, 0)));
    // Each hold is saved before it is said (and so before the relay is acknowledged).
    for list in &w.user("bob").action_lists {
        if let Some(h) = list
            .iter()
            .position(|a| matches!(a, Action::Event(E2eEvent::Held { .. })))
        {
            let p = list.iter().position(|a| *a == Action::Persist);
            assert!(p.is_some_and(|p| p < h), "{list:?}");
        }
    }
    w.command("bob", |s, now| s.accept_key("alice", now))
        .unwrap();
    assert_eq!(w.texts("bob", "alice"), vec!["hi", "new 1", "new 2"]);
    // Said as held messages under the key just accepted, then the session it started.
    let events = &w.user("bob").events;
    let released = events
        .iter()
        .position(|e| matches!(e, E2eEvent::Released { key, count: 2, .. } if *key == new_key))
        .expect("released");
    assert!(matches!(
        &events[released + 1],
        E2eEvent::Ready { key, by_peer: true, trust: Trust::Pinned, .. } if *key == new_key
    ));
    assert!(matches!(w.status("bob", "alice"), Status::Secure { key, .. } if key == new_key));
    // Nothing held any more: a later text of Alice's is shown at once.
    w.send("alice", "bob", "new 3").unwrap();
    assert_eq!(w.texts("bob", "alice").last().unwrap(), "new 3");
    w.send("bob", "alice", "welcome back").unwrap();
    assert_eq!(
        w.texts("alice", "bob").last().map(String::as_str),
        Some("welcome back")
    );
}

#[test]
fn held_messages_are_saved_and_come_back_after_a_restart() {
    let (mut w, _) = changed();
    w.send("alice", "bob", "before the crash").unwrap();
    assert_eq!(last_held(&w, "bob", "alice"), Some((1, 0)));
    w.crash("bob");
    w.login("bob");
    assert!(matches!(
        w.status("bob", "alice"),
        Status::Failed(Failure::KeyChanged { .. })
    ));
    // The server sends the same relay again (it was not acknowledged before the crash, say):
    // held once, not twice.
    let (id, payload) = w
        .relayed
        .iter()
        .rev()
        .find(|(_, f, t, _)| f == "alice" && t == "bob")
        .map(|(id, _, _, p)| (*id, p.clone()))
        .unwrap();
    let now = w.now;
    let i = w.idx("bob");
    let actions = w.users[i].sessions.receive("alice", id, &payload, now);
    assert_eq!(
        actions,
        vec![
            Action::Persist,
            Action::Event(E2eEvent::Held {
                peer: "alice".into(),
                held: 1,
                dropped: 0
            })
        ]
    );
    // The same bytes under another id: a replay.
    let actions = w.users[i]
        .sessions
        .receive("alice", id + 1000, &payload, now);
    assert!(matches!(
        actions.as_slice(),
        [Action::Event(E2eEvent::Replayed { .. })]
    ));
    w.command("bob", |s, now| s.accept_key("alice", now))
        .unwrap();
    assert_eq!(w.texts("bob", "alice"), vec!["hi", "before the crash"]);
    // Taken once: the same start again (same id or a new one) is refused, not shown twice.
    for again in [id, id + 2000] {
        let actions = w.users[i].sessions.receive("alice", again, &payload, now);
        assert!(
            matches!(
                actions.as_slice(),
                [Action::Event(E2eEvent::Replayed { .. })]
            ),
            "{actions:?}"
        );
    }
    assert_eq!(w.texts("bob", "alice"), vec!["hi", "before the crash"]);
    // And a restart after accepting holds nothing any more.
    w.crash("bob");
    w.login("bob");
    assert_eq!(w.texts("bob", "alice"), vec!["hi", "before the crash"]);
}

#[test]
fn insecure_does_not_show_held_messages() {
    let (mut w, _) = changed();
    w.send("alice", "bob", "held 1").unwrap();
    w.command("bob", |s, _| s.end("alice")).unwrap();
    assert_eq!(w.status("bob", "alice"), Status::Plain);
    w.send("alice", "bob", "held 2").unwrap();
    assert_eq!(w.texts("bob", "alice"), vec!["hi"]);
    assert_eq!(last_held(&w, "bob", "alice"), Some((2, 0)));
    w.command("bob", |s, now| s.accept_key("alice", now))
        .unwrap();
    assert_eq!(w.texts("bob", "alice"), vec!["hi", "held 1", "held 2"]);
    // Still plain for what Bob sends: accepting shows messages, it does not change his choice.
    assert_eq!(w.status("bob", "alice"), Status::Plain);
}

#[test]
fn held_messages_are_bounded_per_peer_and_the_dropped_counted() {
    let (mut w, _) = changed();
    let extra = 3;
    for n in 0..MAX_HELD_PER_PEER + extra {
        w.send("alice", "bob", &format!("m{n}")).unwrap();
    }
    assert_eq!(
        last_held(&w, "bob", "alice"),
        Some((MAX_HELD_PER_PEER, extra as u64))
    );
    w.crash("bob");
    w.login("bob");
    w.command("bob", |s, now| s.accept_key("alice", now))
        .unwrap();
    let want: Vec<String> = std::iter::once("hi".to_string())
        .chain((extra..MAX_HELD_PER_PEER + extra).map(|n| format!("m{n}")))
        .collect();
    assert_eq!(w.texts("bob", "alice"), want);
}

#[test]
fn held_messages_are_bounded_in_all() {
    let mut w = World::new();
    w.add("bob");
    w.login("bob");
    let peers: Vec<String> = (0..MAX_HELD / MAX_HELD_PER_PEER + 1)
        .map(|n| format!("p{n}"))
        .collect();
    for p in &peers {
        w.add(p);
        w.login(p);
        w.send(p, "bob", "hi").unwrap();
        replace_home(&mut w, p);
    }
    for p in &peers {
        for n in 0..MAX_HELD_PER_PEER {
            w.send(p, "bob", &format!("{p} {n}")).unwrap();
        }
    }
    // The oldest went: all of the first peer's held beyond the bound, counted for it.
    let over = peers.len() * MAX_HELD_PER_PEER - MAX_HELD;
    assert_eq!(
        last_held(&w, "bob", &peers[0]),
        Some((MAX_HELD_PER_PEER - over, over as u64))
    );
    assert_eq!(
        last_held(&w, "bob", &peers[1]),
        Some((MAX_HELD_PER_PEER, 0))
    );
    // Saved and restored within the bounds.
    w.crash("bob");
    w.login("bob");
    w.command("bob", |s, now| s.accept_key(&peers[0], now))
        .unwrap();
    assert_eq!(
        w.texts("bob", &peers[0]).len(),
        1 + MAX_HELD_PER_PEER - over
    );
}

#[test]
fn a_second_key_change_replaces_nothing() {
    let (mut w, second) = changed();
    w.send("alice", "bob", "from the second key").unwrap();
    let third = replace_home(&mut w, "alice");
    w.send("alice", "bob", "from the third key").unwrap();
    assert_eq!(last_held(&w, "bob", "alice"), Some((2, 0)));
    // The block names the latest key; accepting it shows its message, and the one under the
    // second key blocks the conversation again (held again, said again), never shown as if
    // from the key accepted.
    w.command("bob", |s, now| s.accept_key("alice", now))
        .unwrap();
    assert_eq!(w.texts("bob", "alice"), vec!["hi", "from the third key"]);
    assert!(matches!(
        w.status("bob", "alice"),
        Status::Failed(Failure::KeyChanged { pinned, presented }) if pinned == third && presented == second
    ));
    assert_eq!(last_held(&w, "bob", "alice"), Some((1, 0)));
    w.command("bob", |s, now| s.accept_key("alice", now))
        .unwrap();
    assert_eq!(
        w.texts("bob", "alice"),
        vec!["hi", "from the third key", "from the second key"]
    );
}

/// A format 1 document (before messages were held) made from a format 2 one that holds
/// nothing: the version byte 1, without the held part (an empty list: one zero byte) and the
/// `SavedUse` after it (a count below 128, then one flag byte, 0 or 1, per saved peer).
fn as_format_1(state: &[u8]) -> Vec<u8> {
    let body = &state[..state.len() - 32];
    assert_eq!(body[0], 2);
    let tails: Vec<usize> = (0..body.len().min(120))
        .filter(|&n| {
            body.len() >= n + 2
                && body[body.len() - n - 1] == n as u8
                && body[body.len() - n - 2] == 0
                && body[body.len() - n..].iter().all(|&f| f <= 1)
        })
        .collect();
    assert_eq!(tails.len(), 1, "nothing held, then one SavedUse");
    let mut old = body[..body.len() - tails[0] - 2].to_vec();
    old[0] = 1;
    let sum: [u8; 32] = Sha256::digest(&old).into();
    old.extend_from_slice(&sum);
    old
}

#[test]
fn a_state_saved_before_messages_were_held_still_loads() {
    let mut w = pair();
    w.login("alice");
    w.login("bob");
    w.send("alice", "bob", "hi").unwrap();
    let state = w.user("bob").sessions.state_bytes().to_vec();
    let old = as_format_1(&state);
    let user = w.user("bob");
    let mut s = Sessions::new(
        "bob",
        user.identity.clone(),
        user.saved_pins.clone(),
        E2eConfig::default(),
    );
    s.restore(&old).expect("format 1 loads");
    // The same, written as format 2 (every peer now taken as one the user took part in:
    // format 1 did not say who started).
    let again = s.state_bytes().to_vec();
    assert_eq!(again[0], 2);
    assert_eq!(as_format_1(&again), old, "the same document");
    // Format 1 with anything after it, or an unknown format, is damaged.
    let mut trailing = old[..old.len() - 32].to_vec();
    trailing.push(0);
    let sum: [u8; 32] = Sha256::digest(&trailing).into();
    trailing.extend_from_slice(&sum);
    assert_eq!(s.restore(&trailing), Err(StateError::Damaged));
    let mut unknown = state[..state.len() - 32].to_vec();
    unknown[0] = 3;
    let sum: [u8; 32] = Sha256::digest(&unknown).into();
    unknown.extend_from_slice(&sum);
    assert_eq!(s.restore(&unknown), Err(StateError::Damaged));
}

/// The messages of Alice's held relays, as `actions` show them.
fn shown_texts(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(E2eEvent::Message { text, .. }) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// `/accept-key` whose save fails: the released messages cannot be shown (the caller says so
/// with `not_shown`), and the server will not send them again (acknowledged when held). They
/// are kept — over later acknowledgements too — and shown once a save works
/// (`show_released`), or at the next login; after a restart from the state saved then, too.
#[test]
fn released_messages_not_shown_for_a_failed_save_are_shown_later() {
    let (mut w, _) = changed();
    w.send("alice", "bob", "new 1").unwrap();
    w.send("alice", "bob", "new 2").unwrap();
    assert_eq!(last_held(&w, "bob", "alice"), Some((2, 0)));
    let (now, now_ms) = (w.now, w.now_ms);
    let bob = &mut w.user_mut("bob").sessions;
    let actions = bob.accept_key("alice", now).unwrap();
    // The save fails: nothing after it is shown.
    let lost = shown_texts(&actions);
    assert_eq!(lost, vec!["new 1", "new 2"]);
    for a in &actions {
        if let Action::Event(E2eEvent::Message { peer, id, .. }) = a {
            bob.not_shown(peer, *id);
        }
    }
    // Other relays are acknowledged meanwhile (ids far above the held ones).
    bob.acknowledged(1_000_000);
    // The save works again: shown now, after a save.
    let again = bob.show_released(now);
    assert!(matches!(again.first(), Some(Action::Persist)), "{again:?}");
    assert_eq!(shown_texts(&again), vec!["new 1", "new 2"]);
    // Shown: nothing more to show, and not at the next login either.
    assert!(shown_texts(&bob.show_released(now)).is_empty());
    assert!(shown_texts(&bob.login(now, now_ms)).is_empty());

    // Again, and this time the process restarts from the state saved after the failure.
    let (mut w, _) = changed();
    w.send("alice", "bob", "new 3").unwrap();
    let now = w.now;
    let bob = &mut w.user_mut("bob").sessions;
    let actions = bob.accept_key("alice", now).unwrap();
    for a in &actions {
        if let Action::Event(E2eEvent::Message { peer, id, .. }) = a {
            bob.not_shown(peer, *id);
        }
    }
    bob.acknowledged(1_000_000);
    let saved = bob.state_bytes().to_vec();
    let identity = w.user("bob").identity.clone();
    let pins = w.user("bob").sessions.pins().clone();
    let mut restarted = Sessions::new("bob", identity, pins, E2eConfig::default());
    restarted.restore(&saved).unwrap();
    assert!(restarted.status("alice") != Status::Plain);
    let at_login = restarted.login(now, w.now_ms);
    assert_eq!(shown_texts(&at_login), vec!["new 3"]);
}

/// A client that stops after `/accept-key` saved but before it kept the released messages
/// (the page reloaded within milliseconds): they are still saved as held and shown at the next
/// login, once, from the text the state kept; once confirmed kept they are not shown again.
#[test]
fn released_messages_not_confirmed_kept_are_shown_again_after_a_restart() {
    let (mut w, _) = changed();
    w.send("alice", "bob", "held across a reload").unwrap();
    let i = w.idx("bob");
    let now = w.now;
    let actions = w.users[i].sessions.accept_key("alice", now).unwrap();
    // Only the saves are carried out: the page went before it kept what it showed.
    for a in &actions {
        if matches!(a, Action::Persist) {
            w.users[i].saved = w.users[i].sessions.state_bytes().to_vec();
            w.users[i].saved_pins = w.users[i].sessions.pins().clone();
        }
    }
    assert!(
        actions.iter().any(|a| matches!(a, Action::Event(E2eEvent::Message { text, .. }) if text == "held across a reload")),
        "{actions:?}"
    );
    assert_eq!(w.texts("bob", "alice"), vec!["hi"]);
    w.crash("bob");
    w.login("bob");
    assert_eq!(w.texts("bob", "alice"), vec!["hi", "held across a reload"]);
    // Kept now (the world confirms what it shows): the next restart shows nothing again.
    w.crash("bob");
    w.login("bob");
    assert_eq!(w.texts("bob", "alice"), vec!["hi", "held across a reload"]);
}
