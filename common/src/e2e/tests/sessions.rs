//! Sessions between two users: offline starts, replies, restarts, crashes, both starting at
//! once, `/insecure` and `/secure`, and the order of saving against sending and showing.

use std::time::Duration;

use super::super::envelope::Envelope;
use super::*;
use crate::e2e::{Failure, Trust};

#[test]
fn messages_to_an_offline_user_are_end_to_end_and_read_at_the_next_login_in_order_once() {
    let mut w = pair();
    w.logout("bob");
    w.login("alice");
    for i in 1..=5 {
        w.send("alice", "bob", &format!("secret line {i}")).unwrap();
    }
    // The server holds ciphertext only.
    assert_eq!(w.payloads("alice", "bob").len(), 5);
    for p in w.payloads("alice", "bob") {
        assert!(!contains(&p, b"secret line"), "plaintext in a relay");
    }
    assert!(w.texts("bob", "alice").is_empty());
    assert!(matches!(
        w.status("alice", "bob"),
        Status::Secure {
            trust: Trust::Pinned,
            ..
        }
    ));
    w.login("bob");
    let want: Vec<String> = (1..=5).map(|i| format!("secret line {i}")).collect();
    assert_eq!(w.texts("bob", "alice"), want);
    assert!(w.saw("bob", |e| matches!(
        e,
        E2eEvent::Ready {
            by_peer: true,
            trust: Trust::New,
            ..
        }
    )));
    assert!(!w.saw("bob", |e| matches!(
        e,
        E2eEvent::Unreadable { .. } | E2eEvent::Replayed { .. }
    )));
    // One bundle fetched, by alice; bob answers on the session alice started.
    assert_eq!(w.fetches, 1);
    w.send("bob", "alice", "got them").unwrap();
    assert_eq!(w.fetches, 1, "bob needs no bundle to answer");
    assert_eq!(w.texts("alice", "bob"), vec!["got them".to_string()]);
}

#[test]
fn the_x3dh_start_rides_along_until_the_peer_answers_then_stops() {
    let mut w = pair();
    w.login("alice");
    w.send("alice", "bob", "one").unwrap();
    w.send("alice", "bob", "two").unwrap();
    let starts = |w: &World, from: &str, to: &str| {
        w.payloads(from, to)
            .iter()
            .map(|p| {
                matches!(
                    postcard::from_bytes::<Envelope>(p),
                    Ok(Envelope::Start { .. })
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(starts(&w, "alice", "bob"), vec![true, true]);
    w.login("bob");
    w.send("bob", "alice", "three").unwrap();
    assert_eq!(starts(&w, "bob", "alice"), vec![false]);
    w.send("alice", "bob", "four").unwrap();
    assert_eq!(starts(&w, "alice", "bob"), vec![true, true, false]);
    assert_eq!(w.texts("bob", "alice"), vec!["one", "two", "four"]);
}

#[test]
fn a_lost_first_message_does_not_strand_the_rest() {
    let mut w = pair();
    w.login("alice");
    let mut n = 0;
    w.relay_hook = Some(Box::new(move |_, _, p| {
        n += 1;
        (n != 1).then_some(p)
    }));
    for t in ["one", "two", "three"] {
        w.send("alice", "bob", t).unwrap();
    }
    w.relay_hook = None;
    w.login("bob");
    assert_eq!(w.texts("bob", "alice"), vec!["two", "three"]);
}

#[test]
fn both_restart_and_the_session_continues_without_a_new_bundle() {
    let mut w = pair();
    w.login("alice");
    w.send("alice", "bob", "before").unwrap();
    w.login("bob");
    w.send("bob", "alice", "reply").unwrap();
    let fetches = w.fetches;
    w.crash("alice");
    w.crash("bob");
    w.login("alice");
    w.login("bob");
    w.send("alice", "bob", "after restart").unwrap();
    w.send("bob", "alice", "me too").unwrap();
    assert_eq!(w.fetches, fetches, "no new session");
    assert_eq!(w.texts("bob", "alice"), vec!["before", "after restart"]);
    assert_eq!(w.texts("alice", "bob"), vec!["reply", "me too"]);
    assert!(matches!(w.status("alice", "bob"), Status::Secure { .. }));
}

#[test]
fn a_crash_after_saving_but_before_the_acknowledgement_shows_the_message_again_not_never() {
    let mut w = pair();
    w.login("alice");
    w.login("bob");
    // Bob takes the message (decrypts and saves) but the acknowledgement never leaves.
    w.send("alice", "bob", "do not lose me").unwrap();
    assert_eq!(w.texts("bob", "alice"), vec!["do not lose me"]);
    let (id, from, payload) = {
        let (id, from, _, payload) = w.relayed.last().unwrap().clone();
        (id, from, payload)
    };
    w.crash("bob");
    w.user_mut("bob").shown.clear();
    // The server sends the unacknowledged mail again with its id.
    w.mailboxes
        .entry("bob".into())
        .or_default()
        .push_back((id, from, payload));
    w.login("bob");
    assert_eq!(w.texts("bob", "alice"), vec!["do not lose me"]);
    // Acknowledged now: a replay of the same bytes under a new id is not shown again.
    w.user_mut("bob").sessions.acknowledged(id);
    let (_, _, _, payload) = w.relayed.last().unwrap().clone();
    w.mailboxes
        .entry("bob".into())
        .or_default()
        .push_back((id + 100, "alice".into(), payload));
    w.deliver("bob");
    assert_eq!(w.texts("bob", "alice").len(), 1);
    assert!(w.saw("bob", |e| matches!(e, E2eEvent::Replayed { .. })));
}

#[test]
fn both_starting_at_once_still_reads_everything_and_settles_on_one_session() {
    let mut w = pair();
    // Both offline for each other: each starts its own session from the other's bundle.
    w.send("alice", "bob", "a1").unwrap();
    w.send("bob", "alice", "b1").unwrap();
    w.login("alice");
    w.login("bob");
    for round in 0..3 {
        w.send("alice", "bob", &format!("a{}", round + 2)).unwrap();
        w.send("bob", "alice", &format!("b{}", round + 2)).unwrap();
    }
    assert_eq!(w.texts("bob", "alice"), vec!["a1", "a2", "a3", "a4"]);
    assert_eq!(w.texts("alice", "bob"), vec!["b1", "b2", "b3", "b4"]);
    for nick in ["alice", "bob"] {
        assert!(
            !w.saw(nick, |e| matches!(e, E2eEvent::Unreadable { .. })),
            "{nick}"
        );
    }
    // Settled: the last messages are plain ratchet messages, no more starts.
    let last = w.relayed.last().unwrap().3.clone();
    assert!(matches!(
        postcard::from_bytes::<Envelope>(&last),
        Ok(Envelope::Message(_))
    ));
}

#[test]
fn saving_comes_before_every_send_and_every_message_shown() {
    let mut w = pair();
    w.login("alice");
    w.send("alice", "bob", "x").unwrap();
    w.login("bob");
    w.send("bob", "alice", "y").unwrap();
    w.send("alice", "bob", "z").unwrap();
    for user in &w.users {
        for list in &user.action_lists {
            let first_send_or_message = list.iter().position(|a| {
                matches!(
                    a,
                    Action::Send { .. } | Action::Event(E2eEvent::Message { .. })
                )
            });
            if let Some(at) = first_send_or_message {
                let persisted = list[..at].iter().any(|a| matches!(a, Action::Persist));
                assert!(persisted, "{}: {list:?}", user.nick);
            }
        }
    }
}

#[test]
fn insecure_sends_plain_only_when_asked_and_secure_turns_it_back() {
    let mut w = pair();
    w.login("alice");
    assert_eq!(w.status("alice", "bob"), Status::Ready);
    w.command("alice", |s, _| s.end("bob")).unwrap();
    assert_eq!(w.status("alice", "bob"), Status::Plain);
    w.send("alice", "bob", "plain one").unwrap();
    assert_eq!(
        w.user("alice").plain,
        vec![("bob".to_string(), "plain one".to_string())]
    );
    assert!(w.payloads("alice", "bob").is_empty());
    assert!(matches!(
        w.command("alice", |s, _| s.end("bob")),
        Err(Refused::AlreadyPlain(_))
    ));
    // Survives a restart.
    w.crash("alice");
    w.login("alice");
    assert_eq!(w.status("alice", "bob"), Status::Plain);
    w.command("alice", |s, now| s.start("bob", now)).unwrap();
    assert!(matches!(w.status("alice", "bob"), Status::Secure { .. }));
    w.send("alice", "bob", "secure again").unwrap();
    assert_eq!(w.payloads("alice", "bob").len(), 1);
    assert_eq!(w.user("alice").plain.len(), 1);
}

#[test]
fn without_end_to_end_by_default_a_conversation_is_plain_until_secure() {
    let config = E2eConfig {
        end_to_end_by_default: false,
        ..E2eConfig::default()
    };
    let mut w = World::with_config(config);
    w.add("alice");
    w.add("bob");
    w.login("alice");
    w.login("bob");
    assert_eq!(w.status("alice", "bob"), Status::Plain);
    w.send("alice", "bob", "hi").unwrap();
    assert_eq!(w.user("alice").plain.len(), 1);
    w.command("alice", |s, now| s.start("bob", now)).unwrap();
    w.send("alice", "bob", "secret").unwrap();
    assert_eq!(w.texts("bob", "alice"), vec!["secret"]);
    // Bob's side came up with the session: his answer goes encrypted too.
    w.send("bob", "alice", "back").unwrap();
    assert!(w.user("bob").plain.is_empty());
    assert_eq!(w.texts("alice", "bob"), vec!["back"]);
}

#[test]
fn a_peer_without_keys_gets_nothing_plain_and_the_next_line_tries_again() {
    let mut w = World::new();
    w.add("alice");
    w.add("bob");
    w.login("alice");
    // Bob never logged in with protocol 6: no keys.
    let line = w.send("alice", "bob", "hello?").unwrap();
    assert!(w.user("alice").plain.is_empty());
    assert!(w.relayed.is_empty());
    assert!(w.saw("alice", |e| matches!(
        e,
        E2eEvent::Failed { failure: Failure::NoKeys, unsent, .. } if unsent == &vec![line]
    )));
    assert_eq!(w.status("alice", "bob"), Status::Failed(Failure::NoKeys));
    // Bob logs in: the next line starts a session.
    w.login("bob");
    w.send("alice", "bob", "now?").unwrap();
    assert_eq!(w.texts("bob", "alice"), vec!["now?"]);
    // Nobody by that name.
    w.send("alice", "carol", "x").unwrap();
    assert!(w.saw("alice", |e| matches!(
        e,
        E2eEvent::Failed {
            failure: Failure::NoSuchUser,
            ..
        }
    )));
}

#[test]
fn texts_wait_for_the_bundle_and_a_request_never_answered_fails_them_visibly() {
    let mut w = pair();
    w.login("alice");
    let i = w.idx("alice");
    let now = w.now;
    // The request goes out but no answer comes.
    let first = w.users[i].sessions.send_text("bob", "one", 1, now).unwrap();
    assert!(
        matches!(first, Outgoing::Queued(ref a) if a == &vec![Action::FetchBundle("bob".into())])
    );
    let second = w.users[i].sessions.send_text("bob", "two", 2, now).unwrap();
    assert_eq!(second, Outgoing::Queued(Vec::new()));
    assert_eq!(w.status("alice", "bob"), Status::Starting);
    let due = w.users[i].sessions.poll_timeout().unwrap();
    assert_eq!(due, now + E2eConfig::default().fetch_timeout);
    assert!(w.users[i]
        .sessions
        .tick(now + Duration::from_secs(1))
        .is_empty());
    let actions = w.users[i].sessions.tick(due);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Event(E2eEvent::Failed { failure: Failure::Timeout, unsent, .. }) if unsent == &vec![1, 2]
    )));
    assert_eq!(w.users[i].sessions.poll_timeout(), None);
}

#[test]
fn a_reconnect_asks_again_for_the_bundles_the_last_connection_left_unanswered() {
    let mut w = pair();
    w.login("alice");
    let i = w.idx("alice");
    let now = w.now;
    let _ = w.users[i].sessions.send_text("bob", "one", 1, now).unwrap();
    w.logout("alice");
    let actions = w.users[i].sessions.login(now, w.now_ms);
    assert!(actions.contains(&Action::FetchBundle("bob".into())));
    w.run(i, actions);
    w.login("bob");
    assert_eq!(w.texts("bob", "alice"), vec!["one"]);
}

#[test]
fn texts_typed_before_insecure_still_go_end_to_end_when_the_keys_come() {
    let mut w = pair();
    w.login("alice");
    let i = w.idx("alice");
    let now = w.now;
    let Outgoing::Queued(fetch) = w.users[i]
        .sessions
        .send_text("bob", "typed secure", 1, now)
        .unwrap()
    else {
        panic!("waits for the bundle")
    };
    // The user says /insecure before the directory answered.
    w.command("alice", |s, _| s.end("bob")).unwrap();
    assert!(!w.saw(
        "alice",
        |e| matches!(e, E2eEvent::Ended { unsent, .. } if !unsent.is_empty())
    ));
    w.run(i, fetch);
    w.send("alice", "bob", "typed plain").unwrap();
    assert_eq!(
        w.user("alice").plain,
        vec![("bob".to_string(), "typed plain".to_string())]
    );
    w.login("bob");
    assert_eq!(w.texts("bob", "alice"), vec!["typed secure"]);
}
