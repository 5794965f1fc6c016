//! A peer who lost its keys (a new identity under its nick) tells the sender it could not read
//! its messages: end-to-end, in a session start under its new key, so that the sender's
//! conversation is blocked at once (key changed) and the notice shown after `/accept-key`.

use super::*;
use crate::e2e::config::{MAX_NOTICES_PENDING, NOTICE_INTERVAL};
use crate::e2e::Failure;

/// Bob and Carol talked (both have sessions, Bob pinned Carol's key); then Carol's home is
/// replaced: a new identity, which logs in (publishes its keys) and goes offline. Bob online.
fn carol_lost_her_keys() -> World {
    carol_lost(false, true)
}

/// As [`carol_lost_her_keys`]; with `keep_identity`, only her sessions are lost (the same key,
/// her end-to-end state gone); without `answered`, Carol never answered Bob before (every line
/// of his is still a session start).
fn carol_lost(keep_identity: bool, answered: bool) -> World {
    let mut w = World::new();
    w.add("bob");
    w.add("carol");
    w.login("bob");
    w.login("carol");
    w.send("bob", "carol", "hi carol").unwrap();
    if answered {
        w.send("carol", "bob", "hi bob").unwrap();
        w.send("bob", "carol", "how are you").unwrap();
        assert_eq!(w.texts("carol", "bob"), vec!["hi carol", "how are you"]);
    } else {
        assert_eq!(w.texts("carol", "bob"), vec!["hi carol"]);
    }
    let i = w.idx("carol");
    let identity = if keep_identity {
        w.users[i].identity.clone()
    } else {
        Identity::generate()
    };
    w.users[i].identity = identity.clone();
    w.users[i].sessions = Sessions::new("carol", identity, Pins::default(), E2eConfig::default());
    w.users[i].events.clear();
    w.users[i].shown.clear();
    w.logout("carol");
    w.login("carol");
    w.logout("carol");
    w
}

/// Carol takes her mail by hand: each relay's actions, the fetches held back.
fn carol_reads_mail(w: &mut World) -> (Vec<Vec<Action>>, Vec<Action>) {
    let i = w.idx("carol");
    w.users[i].online = true;
    let mail: Vec<Mail> = w
        .mailboxes
        .get_mut(&nick_key("carol"))
        .map(|m| m.drain(..).collect())
        .unwrap_or_default();
    let mut lists = Vec::new();
    let mut fetches = Vec::new();
    for (id, from, payload) in mail {
        let now = w.now;
        let actions = w.users[i].sessions.receive(&from, id, &payload, now);
        let (f, rest): (Vec<Action>, Vec<Action>) = actions
            .into_iter()
            .partition(|a| matches!(a, Action::FetchBundle(_)));
        fetches.extend(f);
        w.run(i, rest.clone());
        w.users[i].sessions.acknowledged(id);
        lists.push(rest);
    }
    w.users[i].online = false;
    (lists, fetches)
}

fn could_not_read(w: &World, nick: &str) -> Vec<u32> {
    w.user(nick)
        .events
        .iter()
        .filter_map(|e| match e {
            E2eEvent::PeerCouldNotRead { count, .. } => Some(*count),
            _ => None,
        })
        .collect()
}

fn key_changed(w: &World, nick: &str, peer: &str) -> bool {
    matches!(
        w.status(nick, peer),
        Status::Failed(Failure::KeyChanged { .. })
    )
}

#[test]
fn a_peer_who_lost_its_keys_tells_the_sender_who_is_blocked_then_shown_the_count() {
    let mut w = carol_lost_her_keys();
    w.send("bob", "carol", "lost 1").unwrap();
    w.send("bob", "carol", "lost 2").unwrap();
    let (lists, fetches) = carol_reads_mail(&mut w);
    // Carol could read neither, and fetches Bob's keys once.
    assert_eq!(lists.len(), 2);
    for l in &lists {
        assert!(
            matches!(l.as_slice(), [Action::Event(E2eEvent::Unreadable { .. })]),
            "{l:?}"
        );
    }
    assert_eq!(fetches, vec![Action::FetchBundle("bob".into())]);
    assert!(w.texts("carol", "bob").is_empty());
    let sent_before = w.payloads("carol", "bob").len();
    let i = w.idx("carol");
    w.users[i].online = true;
    w.run(i, fetches);
    // One start went to Bob: the notice, no user text.
    assert_eq!(w.payloads("carol", "bob").len(), sent_before + 1);
    // Bob: blocked at once (Carol's key changed), the notice held, not shown yet.
    assert!(key_changed(&w, "bob", "carol"));
    assert!(could_not_read(&w, "bob").is_empty());
    assert!(w.saw("bob", |e| matches!(e, E2eEvent::Held { held: 1, .. })));
    let relays = w.relayed.len();
    assert!(matches!(
        w.send("bob", "carol", "lost 3"),
        Err(Refused::KeyNotAccepted(_))
    ));
    assert_eq!(w.relayed.len(), relays, "nothing more sent by bob");
    // After /accept-key: the notice, with the count Carol saw.
    w.command("bob", |s, now| s.accept_key("carol", now))
        .unwrap();
    assert_eq!(could_not_read(&w, "bob"), vec![2]);
    assert!(w.texts("bob", "carol").iter().all(|t| !t.contains("lost")));
    // And Bob's next text reaches Carol, on the session her notice started.
    w.send("bob", "carol", "sent again").unwrap();
    assert_eq!(w.texts("carol", "bob"), vec!["sent again"]);
}

/// Bob wrote first and Carol never answered: every line of Bob's is still a session start.
/// Carol loses her keys; the starts she cannot open tell Bob too (the breaker found Bob's
/// lines lost unseen, his side SECURE, when only session messages did).
#[test]
fn starts_a_peer_who_lost_its_keys_cannot_open_tell_the_sender_too() {
    let mut w = carol_lost(false, false);
    w.send("bob", "carol", "lost 1").unwrap();
    w.send("bob", "carol", "lost 2").unwrap();
    let (lists, fetches) = carol_reads_mail(&mut w);
    assert_eq!(lists.len(), 2);
    assert_eq!(fetches, vec![Action::FetchBundle("bob".into())]);
    let i = w.idx("carol");
    w.users[i].online = true;
    w.run(i, fetches);
    assert!(key_changed(&w, "bob", "carol"));
    w.command("bob", |s, now| s.accept_key("carol", now))
        .unwrap();
    assert_eq!(could_not_read(&w, "bob"), vec![2]);
}

#[test]
fn a_second_burst_within_the_interval_sends_no_second_notice() {
    let mut w = carol_lost_her_keys();
    // Carol's first fetch of Bob's keys fails (the server is busy).
    w.bundle_hook = Some(Box::new(|_, answer| *answer = BundleAnswer::Busy));
    w.send("bob", "carol", "lost 1").unwrap();
    let (_, fetches) = carol_reads_mail(&mut w);
    assert_eq!(fetches.len(), 1);
    let i = w.idx("carol");
    w.run(i, fetches);
    w.bundle_hook = None;
    // A second burst a minute later: no fetch, no notice.
    w.advance(Duration::from_secs(60));
    w.send("bob", "carol", "lost 2").unwrap();
    w.send("bob", "carol", "lost 3").unwrap();
    let (_, fetches) = carol_reads_mail(&mut w);
    assert!(fetches.is_empty());
    assert!(w.payloads("carol", "bob").len() == 1, "only the old hi bob");
    // Once the interval has passed, the next one is told.
    w.advance(NOTICE_INTERVAL);
    w.send("bob", "carol", "lost 4").unwrap();
    let (_, fetches) = carol_reads_mail(&mut w);
    assert_eq!(fetches.len(), 1);
    w.run(i, fetches);
    assert_eq!(w.payloads("carol", "bob").len(), 2);
    w.command("bob", |s, now| s.accept_key("carol", now))
        .unwrap();
    assert_eq!(could_not_read(&w, "bob"), vec![1]);
}

#[test]
fn a_forged_unreadable_relay_from_a_peer_we_have_a_session_with_sends_nothing() {
    let mut w = World::new();
    w.add("bob");
    w.add("carol");
    w.login("bob");
    w.login("carol");
    w.send("bob", "carol", "hi").unwrap();
    w.send("carol", "bob", "hi").unwrap();
    w.logout("carol");
    w.send("bob", "carol", "one more").unwrap();
    w.mailboxes.clear();
    let mut forged = w.payloads("bob", "carol").pop().unwrap();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let i = w.idx("carol");
    let now = w.now;
    let actions = w.users[i].sessions.receive("bob", 999, &forged, now);
    assert_eq!(
        actions,
        vec![Action::Event(E2eEvent::Unreadable { peer: "bob".into() })]
    );
}

#[test]
fn notices_are_bounded_in_all_and_never_to_ourselves() {
    let mut w = carol_lost_her_keys();
    w.send("bob", "carol", "junk").unwrap();
    let payload = w.payloads("bob", "carol").pop().unwrap();
    let mut s = Sessions::new(
        "dave",
        Identity::generate(),
        Pins::default(),
        E2eConfig::default(),
    );
    let now = w.now;
    let mut fetches = 0;
    for n in 0..MAX_NOTICES_PENDING + 5 {
        let actions = s.receive(&format!("forger{n}"), n as u64 + 1, &payload, now);
        assert!(actions.contains(&Action::Event(E2eEvent::Unreadable {
            peer: format!("forger{n}")
        })));
        fetches += actions
            .iter()
            .filter(|a| matches!(a, Action::FetchBundle(_)))
            .count();
        // Again from the same nick: counted, not fetched again.
        let again = s.receive(&format!("forger{n}"), 1000 + n as u64, &payload, now);
        assert!(!again.iter().any(|a| matches!(a, Action::FetchBundle(_))));
    }
    assert_eq!(fetches, MAX_NOTICES_PENDING);
    assert!(s.receive("dave", 5000, &payload, now).is_empty());
}

#[test]
fn a_peer_who_lost_only_its_sessions_tells_the_sender_who_is_shown_it_at_once() {
    let mut w = carol_lost(true, true);
    w.send("bob", "carol", "lost 1").unwrap();
    let (_, fetches) = carol_reads_mail(&mut w);
    assert_eq!(fetches.len(), 1);
    let i = w.idx("carol");
    w.users[i].online = true;
    w.run(i, fetches);
    // From the pinned key: taken at once, no block, the notice shown.
    assert!(!key_changed(&w, "bob", "carol"));
    assert!(!w.saw("bob", |e| matches!(e, E2eEvent::Held { .. })));
    assert_eq!(could_not_read(&w, "bob"), vec![1]);
    w.send("bob", "carol", "sent again").unwrap();
    assert_eq!(w.texts("carol", "bob"), vec!["sent again"]);
}
