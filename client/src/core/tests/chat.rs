//! Plain chat through the server double: login, public and private lines, offline mail,
//! `/who`, pacing within the announced rate, and when an idle core wakes up.

use crate::ChatLine;
use std::time::Duration;

use mm_common::protocol::ClientMsg;

use super::world::World;
use super::READ_TIMEOUT;
use crate::core::{Delivery, Event, LineId};

/// Whether `events` answer `line` with `Sent`.
fn was_sent(events: &[Event], line: LineId) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::Sent { line: l, .. } if *l == line))
}

#[test]
fn each_core_logs_in_and_is_welcomed_with_who_is_online() {
    let mut world = World::new();
    world.connect("alice");
    world.connect("bob");
    let Some(Ok(welcome)) = world.client("bob").login.clone() else {
        panic!("bob is not logged in")
    };
    assert_eq!(welcome.nick, "bob");
    assert_eq!(welcome.online, ["alice", "bob"]);
    assert_eq!(world.core("bob").max_text_len(), 4096);
    let events = world.events("alice");
    assert!(
        events.contains(&Event::Joined { nick: "bob".into() }),
        "alice sees bob come: {events:?}"
    );
}

#[test]
fn a_public_line_reaches_everyone_else_and_is_answered_to_its_sender() {
    let mut world = World::new();
    for nick in ["alice", "bob", "carol"] {
        world.connect(nick);
    }
    for nick in ["alice", "bob", "carol"] {
        world.events(nick);
    }
    let line = world.core("alice").public("hello room").expect("connected");
    world.pump();
    for nick in ["bob", "carol"] {
        let events = world.events(nick);
        assert!(
            matches!(events.as_slice(), [Event::Public(ChatLine { from, text, .. })]
                if from == "alice" && text == "hello room"),
            "{nick}: {events:?}"
        );
    }
    let events = world.events("alice");
    assert!(
        matches!(events.as_slice(), [Event::Sent { line: l, id: 1, .. }] if *l == line),
        "{events:?}"
    );
    assert_eq!(world.core("alice").unanswered(), 0);
}

#[test]
fn a_plain_private_line_reaches_only_its_recipient() {
    let mut world = World::new();
    for nick in ["alice", "bob", "carol"] {
        world.connect(nick);
        world.events(nick);
    }
    world.events("alice");
    world.events("bob");
    let now = world.now;
    // Plain by the user's choice (private lines are end-to-end by default).
    world.core("alice").insecure("bob", now).expect("connected");
    world.pump();
    world.events("alice");
    let (line, delivery) = world
        .core("alice")
        .private("bob", "psst", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Plain, "the user said /insecure");
    world.pump();
    let events = world.events("bob");
    assert!(
        matches!(events.as_slice(), [Event::Private(ChatLine { from, text, .. })]
            if from == "alice" && text == "psst"),
        "{events:?}"
    );
    assert_eq!(world.events("carol"), []);
    assert!(was_sent(&world.events("alice"), line));
}

#[test]
fn a_private_line_to_someone_offline_is_queued_and_delivered_at_their_next_login() {
    let mut world = World::new();
    world.connect("alice");
    let now = world.now;
    world
        .core("alice")
        .insecure("dave", now)
        .expect("connected");
    world.pump();
    world.events("alice");
    let (line, delivery) = world
        .core("alice")
        .private("dave", "while you were out", now)
        .expect("connected");
    assert_eq!(delivery, Delivery::Plain);
    world.pump();
    let events = world.events("alice");
    assert!(
        matches!(events.as_slice(), [Event::Queued { line: l, .. }] if *l == line),
        "{events:?}"
    );
    world.advance(Duration::from_secs(30));
    world.connect("dave");
    let events = world.events("dave");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Offline(ChatLine { from, text, .. })
            if from == "alice" && text == "while you were out")),
        "{events:?}"
    );
}

#[test]
fn who_lists_everyone_online() {
    let mut world = World::new();
    for nick in ["alice", "bob", "carol"] {
        world.connect(nick);
    }
    world.events("carol");
    world.core("carol").who().expect("connected");
    world.pump();
    let events = world.events("carol");
    assert_eq!(
        events,
        [Event::Users(vec![
            "alice".into(),
            "bob".into(),
            "carol".into()
        ])]
    );
    world.disconnect("bob");
    world.events("carol");
    world.core("carol").who().expect("connected");
    world.pump();
    assert_eq!(
        world.events("carol"),
        [Event::Users(vec!["alice".into(), "carol".into()])]
    );
}

#[test]
fn fifty_lines_at_once_go_out_within_the_announced_rate_and_all_are_answered() {
    let (burst, per_sec) = (10, 5);
    let mut world = World::with_rate(burst, per_sec);
    world.connect("alice");
    world.connect("bob");
    world.events("alice");
    world.events("bob");
    let start = world.now;
    let lines: Vec<LineId> = (0..50)
        .map(|i| {
            world
                .core("alice")
                .public(&format!("line {i}"))
                .expect("room")
        })
        .collect();
    world.pump();
    world.advance(Duration::from_secs(20));
    let publics: Vec<_> = world
        .server
        .log
        .iter()
        .filter(|l| l.from == "alice" && matches!(l.msg, ClientMsg::Public { .. }))
        .map(|l| l.at)
        .collect();
    assert_eq!(publics.len(), 50);
    assert_eq!(
        world.server.rate_violations, 0,
        "the server's own rate limit never tripped"
    );
    // Counted per simulated second: the burst may go in the first, then the steady rate.
    let mut per_second = [0usize; 20];
    for at in &publics {
        let second = usize::try_from(at.duration_since(start).as_secs()).expect("small");
        per_second[second] += 1;
    }
    assert!(
        per_second[0] <= (burst + per_sec) as usize,
        "{per_second:?}"
    );
    assert!(
        per_second[1..].iter().all(|&n| n <= per_sec as usize),
        "{per_second:?}"
    );
    let last = publics.last().expect("50 lines");
    assert!(
        last.duration_since(start) >= Duration::from_secs(7),
        "paced, not all at once: {:?}",
        last.duration_since(start)
    );
    let events = world.events("alice");
    assert!(lines.iter().all(|&l| was_sent(&events, l)), "{events:?}");
    let received = world
        .events("bob")
        .iter()
        .filter(|e| matches!(e, Event::Public(ChatLine { .. })))
        .count();
    assert_eq!(received, 50);
}

#[test]
fn an_idle_core_without_secure_sessions_sleeps_until_its_read_timeout() {
    let mut world = World::new();
    world.connect("alice");
    let now = world.now;
    let heard = world.core("alice").last_heard();
    let wake = world.core("alice").poll_timeout(now);
    assert_eq!(
        wake,
        Some(heard + READ_TIMEOUT),
        "an idle core does not wake every second"
    );
}

#[test]
fn quitting_acknowledges_what_was_shown_and_ends_with_a_clean_close() {
    let mut world = World::new();
    world.connect("alice");
    world.connect("bob");
    let now = world.now;
    world
        .core("alice")
        .private("bob", "before you go", now)
        .expect("connected");
    world.pump();
    let shown = world.events("bob");
    // End-to-end by default: shown as a secure message, acknowledged by its relay's id.
    let Some(id) = shown.iter().find_map(|e| match e {
        Event::Secure(mm_common::e2e::E2eEvent::Message { id, .. }) => Some(*id),
        _ => None,
    }) else {
        panic!("{shown:?}")
    };
    let now = world.now;
    world.core("bob").quit(now);
    world.pump();
    let sent: Vec<ClientMsg> = world
        .server
        .log
        .iter()
        .filter(|l| l.from == "bob")
        .map(|l| l.msg.clone())
        .collect();
    assert!(
        sent.ends_with(&[ClientMsg::Received { up_to: id }, ClientMsg::Quit]),
        "what was shown is acknowledged, then Quit: {sent:?}"
    );
    let events = world.events("bob");
    assert_eq!(
        events.last(),
        Some(&Event::Closed {
            error: None,
            undelivered: Vec::new()
        })
    );
    assert!(world.core("bob").is_closed());
    let alice = world.events("alice");
    assert!(
        alice
            .iter()
            .any(|e| matches!(e, Event::Left { nick, .. } if nick == "bob")),
        "{alice:?}"
    );
}

#[test]
fn a_server_that_never_answers_the_login_times_it_out() {
    // A connection nobody answers: the core's Hello goes nowhere.
    let t0 = std::time::Instant::now();
    let mut core = crate::core::Core::new(super::config("alice"), t0);
    assert_eq!(core.poll_timeout(t0), Some(t0 + Duration::from_secs(10)));
    core.handle_timeout(t0 + Duration::from_secs(9));
    assert_eq!(core.poll_login(), None, "not yet");
    core.handle_timeout(t0 + Duration::from_secs(10));
    assert!(matches!(
        core.poll_login(),
        Some(Err(crate::core::LoginError::Timeout))
    ));
    assert!(core.is_closed());
}
