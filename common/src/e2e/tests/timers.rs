//! Time alone: handshake timeouts, renewals, automatic restarts, and the `poll_timeout` contract.

use super::*;

#[test]
fn rehandshake_after_time_via_tick() {
    let config = E2eConfig {
        rehandshake_after: Duration::from_secs(600),
        ..E2eConfig::default()
    };
    let mut r = Relay::with_config(config);
    r.connect();
    r.now += Duration::from_secs(601);
    let actions = r.a.sessions.tick(r.now);
    assert!(matches!(actions.as_slice(), [Action::Send { .. }]));
    r.apply(true, actions);
    r.send(true, "during renewal"); // still encrypted on the old session meanwhile
    r.deliver_all();
    assert_eq!(
        Relay::readies(&r.a).last(),
        Some(&(Trust::Pinned, true)),
        "renewed, same pinned key"
    );
    assert_eq!(Relay::messages(&r.b), vec!["during renewal"]);
}

#[test]
fn handshake_timeout_via_tick() {
    let mut r = Relay::new();
    r.start(true);
    r.b.inbox.clear(); // lost
    r.now += Duration::from_secs(31);
    let actions = r.a.sessions.tick(r.now);
    r.apply(true, actions);
    assert_eq!(Relay::failures(&r.a), vec![Failure::Timeout]);
}

#[test]
fn a_responder_waits_for_message_three_longer_than_an_initiator_waits_for_message_two() {
    let mut r = Relay::new();
    r.start(true);
    r.deliver_one(false); // bob answers; alice's message 3 is delayed (her paced queue)
    let late = r.now + Duration::from_secs(90);
    let actions = r.b.sessions.tick(late);
    assert!(actions.is_empty(), "bob still waits at 90 s: {actions:?}");
    r.now = late;
    r.deliver_all();
    assert!(matches!(
        r.b.sessions.status("alice"),
        Status::Secure { .. }
    ));
    r.send(true, "made it");
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), vec!["made it"]);
}

/// Checks the `poll_timeout` contract at its next instant: `tick` just before it does nothing
/// (no action, no status change, same answer), `tick` at it acts (an action or a status
/// change). Returns the instant and the actions.
fn tick_at_poll_timeout(s: &mut Sessions, peers: &[&str]) -> (Instant, Vec<Action>) {
    let due = s.poll_timeout().expect("something is timed");
    let statuses = |s: &Sessions| peers.iter().map(|p| s.status(p)).collect::<Vec<_>>();
    let before = statuses(s);
    assert_eq!(
        s.tick(due - Duration::from_nanos(1)),
        vec![],
        "nothing before it"
    );
    assert_eq!(statuses(s), before);
    assert_eq!(
        s.poll_timeout(),
        Some(due),
        "the same instant after a tick that did nothing"
    );
    let actions = s.tick(due);
    assert!(
        !actions.is_empty() || statuses(s) != before,
        "tick at poll_timeout acts"
    );
    (due, actions)
}

fn hello_count(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Send { payload, .. } if matches!(envelope(payload), Envelope::Hello { .. })))
        .count()
}

#[test]
fn nothing_timed_means_no_poll_timeout() {
    let mut s = fresh("alice");
    assert_eq!(s.poll_timeout(), None);
    s.restore("secure bob\n").unwrap();
    // Interrupted, but bob's presence is unknown: nothing restarts by itself.
    assert_eq!(s.poll_timeout(), None);
    let mut r = Relay::new();
    r.connect();
    // Only the initiator renews; the responder has nothing timed.
    assert_eq!(r.b.sessions.poll_timeout(), None);
    assert!(r.a.sessions.poll_timeout().is_some());
}

#[test]
fn poll_timeout_is_the_initiators_handshake_timeout() {
    let mut r = Relay::new();
    let start = r.now;
    r.start(true);
    r.b.inbox.clear(); // lost
    assert_eq!(
        r.a.sessions.poll_timeout(),
        Some(start + Duration::from_secs(30))
    );
    let (due, actions) = tick_at_poll_timeout(&mut r.a.sessions, &["bob"]);
    assert_eq!(due, start + Duration::from_secs(30));
    r.apply(true, actions);
    assert_eq!(Relay::failures(&r.a), vec![Failure::Timeout]);
    // Bob's presence is unknown: no automatic restart, nothing timed any more.
    assert_eq!(r.a.sessions.poll_timeout(), None);
}

#[test]
fn poll_timeout_is_the_responders_longer_handshake_timeout() {
    let mut r = Relay::new();
    let start = r.now;
    r.start(true);
    assert!(r.deliver_one(false)); // bob answers message 1; message 2 is lost
    r.a.inbox.clear();
    let patience = Duration::from_secs(30) * RESPONDER_PATIENCE;
    assert_eq!(r.b.sessions.poll_timeout(), Some(start + patience));
    let (_, actions) = tick_at_poll_timeout(&mut r.b.sessions, &["alice"]);
    r.apply(false, actions);
    assert!(
        r.b.events.iter().any(|e| matches!(
            e,
            E2eEvent::NotStarted {
                failure: Failure::Timeout,
                ..
            }
        )),
        "{:?}",
        r.b.events
    );
    assert_eq!(r.b.sessions.poll_timeout(), None);
}

#[test]
fn poll_timeout_is_the_renewal_by_age_then_the_renewals_timeout() {
    let config = E2eConfig {
        rehandshake_after: Duration::from_secs(600),
        ..E2eConfig::default()
    };
    let mut r = Relay::with_config(config);
    let start = r.now;
    r.connect();
    assert_eq!(
        r.a.sessions.poll_timeout(),
        Some(start + Duration::from_secs(600))
    );
    let (due, actions) = tick_at_poll_timeout(&mut r.a.sessions, &["bob"]);
    assert_eq!(hello_count(&actions), 1, "the renewal starts");
    // Moves forward: the renewal's own handshake timeout.
    assert_eq!(
        r.a.sessions.poll_timeout(),
        Some(due + Duration::from_secs(30))
    );
    r.now = due;
    r.apply(true, actions);
    r.deliver_all();
    assert_eq!(Relay::readies(&r.a).last(), Some(&(Trust::Pinned, true)));
    assert_eq!(
        r.a.sessions.poll_timeout(),
        Some(due + Duration::from_secs(600))
    );
}

#[test]
fn a_renewal_due_by_messages_that_timed_out_is_due_at_once() {
    let config = E2eConfig {
        rehandshake_messages: 2,
        ..E2eConfig::default()
    };
    let mut r = Relay::with_config(config);
    let start = r.now;
    r.connect();
    r.send(true, "one");
    r.send(true, "two"); // the second message starts the renewal
    let hellos = r.b.inbox.len();
    r.b.inbox
        .retain(|p| !matches!(envelope(p), Envelope::Hello { .. })); // lost
    assert_eq!(r.b.inbox.len(), hellos - 1);
    let due = r.a.sessions.poll_timeout().unwrap();
    assert_eq!(due, start + Duration::from_secs(30));
    assert_eq!(r.a.sessions.tick(due - Duration::from_nanos(1)), vec![]);
    assert_eq!(r.a.sessions.poll_timeout(), Some(due));
    // At it, the renewal is dropped (silently) and the old session kept ...
    assert_eq!(r.a.sessions.tick(due), vec![]);
    assert!(matches!(r.a.sessions.status("bob"), Status::Secure { .. }));
    // ... and it is due again at once: the answer is the latest instant given, already past.
    assert_eq!(r.a.sessions.poll_timeout(), Some(due));
    assert_eq!(hello_count(&r.a.sessions.tick(due)), 1);
    assert_eq!(
        r.a.sessions.poll_timeout(),
        Some(due + Duration::from_secs(30))
    );
}

#[test]
fn poll_timeout_follows_the_automatic_restarts_backoff() {
    let config = E2eConfig {
        handshake_timeout: Duration::from_secs(1),
        ..E2eConfig::default()
    };
    let mut r = Relay::with_config(config);
    r.connect();
    reconnect(&mut r);
    let start = r.now;
    assert_eq!(hello_count(&r.a.sessions.presence("bob", true, start)), 1);
    // bob never answers. Each attempt times out after 1 s; the next starts 5, 10, 20, 40 …
    // s after the start of the last, up to 300 s.
    let mut starts = vec![0];
    while starts.len() < 10 {
        let (due, actions) = tick_at_poll_timeout(&mut r.a.sessions, &["bob"]);
        if hello_count(&actions) == 1 {
            starts.push(due.duration_since(start).as_secs());
        }
    }
    assert_eq!(starts, vec![0, 5, 15, 35, 75, 155, 315, 615, 915, 1215]);
}

#[test]
fn a_driver_sleeping_until_poll_timeout_restarts_as_a_ticking_one() {
    // The same scenario as `automatic_restarts_wait_longer_after_each_attempt_that_fails`,
    // driven by poll_timeout instead of a tick every second: the same attempts, each as soon
    // as it is due instead of at the next whole second.
    let mut r = Relay::new();
    r.connect();
    reconnect(&mut r);
    let start = r.now;
    let mut now = start;
    let mut starts = vec![];
    let mut announced = Vec::new();
    let mut actions = r.a.sessions.presence("bob", true, now);
    loop {
        for action in actions {
            match action {
                Action::Send { payload, .. }
                    if matches!(envelope(&payload), Envelope::Hello { .. }) =>
                {
                    starts.push(now.duration_since(start).as_secs())
                }
                Action::Event(e) => announced.push(e),
                _ => {}
            }
        }
        let due = r.a.sessions.poll_timeout().expect("a restart or a timeout");
        now = now.max(due); // "sleeps" until then (not at all when it is past)
        if now > start + Duration::from_secs(200) {
            break;
        }
        actions = r.a.sessions.tick(now);
    }
    assert_eq!(starts, vec![0, 30, 60, 90, 130], "{starts:?}");
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
}

#[test]
fn no_restart_is_timed_while_the_automatic_starts_are_all_running() {
    let mut a = fresh("alice");
    let text: String = (0..6).map(|i| format!("secure peer{i}\n")).collect();
    a.restore(&text).unwrap();
    assert_eq!(a.connection_reset().len(), 6);
    let now = Instant::now();
    let started: usize = (0..6)
        .map(|i| hello_count(&a.presence(&format!("peer{i}"), true, now)))
        .sum();
    assert_eq!(started, MAX_AUTOMATIC_STARTS);
    // The two waiting could start "at once", but not before a running one ends: the next
    // instant is the running handshakes' timeout, where they time out and the others start.
    assert_eq!(a.poll_timeout(), Some(now + Duration::from_secs(30)));
    let peers: Vec<String> = (0..6).map(|i| format!("peer{i}")).collect();
    let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
    let (_, actions) = tick_at_poll_timeout(&mut a, &peers);
    assert_eq!(hello_count(&actions), 2, "the two that waited start");
}

#[test]
fn handle_timeout_is_tick() {
    let mut r = Relay::new();
    r.start(true);
    r.b.inbox.clear();
    let due = r.a.sessions.poll_timeout().unwrap();
    let actions = r.a.sessions.handle_timeout(due);
    r.apply(true, actions);
    assert_eq!(Relay::failures(&r.a), vec![Failure::Timeout]);
}
