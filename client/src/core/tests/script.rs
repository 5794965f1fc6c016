// Over 600 lines: one test per scripted hostile or tricky server; they share its helpers.
//! One core fed scripted server bytes: hostile servers during the login, the server's own
//! words, acknowledgements of personal lines, and the answer of every line.

use crate::ChatLine;
use std::time::{Duration, Instant};

use mm_common::protocol::{ClientMsg, ErrorCode, ServerMsg};

use super::super::{server_words_on_one_line, Core, CoreConfig, LoginError, SendError};
use super::{config, drain, frames, transmitted, READ_TIMEOUT};
use crate::core::{Delivery, Event};

/// The `Welcome` of a server with generous limits, for `nick`.
fn welcome(nick: &str) -> ServerMsg {
    ServerMsg::Welcome {
        nick: nick.into(),
        server: "script".into(),
        online: 1,
        max_text_len: 4096,
        rate_burst: 1000,
        rate_per_sec: 1000,
    }
}

/// A core made with `config`, logged in at `now` by a scripted `Welcome` and user list.
fn logged_in(config: &CoreConfig, now: Instant) -> Core {
    let mut core = Core::new(config.clone(), now);
    let hello = transmitted(&mut core, now);
    assert!(
        matches!(hello.as_slice(), [ClientMsg::Hello { .. }]),
        "{hello:?}"
    );
    let users = ServerMsg::Users {
        nicks: vec![config.nick.clone()],
        last: true,
    };
    core.receive(&frames(&[welcome(&config.nick), users]), now);
    match core.poll_login() {
        Some(Ok(_)) => {}
        other => panic!("login: {other:?}"),
    }
    // Every login publishes end-to-end keys; the script's server stores them.
    let sent = transmitted(&mut core, now);
    assert!(
        matches!(sent.as_slice(), [ClientMsg::PublishKeys { .. }]),
        "{sent:?}"
    );
    let published = ServerMsg::KeysPublished {
        one_time: 100,
        other_device: false,
    };
    core.receive(&frames(&[published]), now);
    assert!(transmitted(&mut core, now).is_empty());
    core
}

/// A plain private line `id` from bob, at server time 0.
fn private(id: u64) -> ServerMsg {
    ServerMsg::Private {
        id,
        ts: 0,
        from: "bob".into(),
        text: format!("p{id}"),
    }
}

/// The `up_to`s among `msgs`.
fn acks(msgs: &[ClientMsg]) -> Vec<u64> {
    msgs.iter()
        .filter_map(|m| match m {
            ClientMsg::Received { up_to } => Some(*up_to),
            _ => None,
        })
        .collect()
}

#[test]
fn an_endless_user_list_from_a_hostile_server_is_refused() {
    let t0 = Instant::now();
    let mut cfg = config("a");
    cfg.user_list = false;
    let mut core = Core::new(cfg, t0);
    transmitted(&mut core, t0);
    core.receive(&frames(&[welcome("a")]), t0);
    let chunk = frames(&[ServerMsg::Users {
        nicks: vec!["x".to_string(); 1000],
        last: false,
    }]);
    // Never says `last`.
    let mut outcome = None;
    for _ in 0..2_000 {
        core.receive(&chunk, t0);
        outcome = core.poll_login();
        if outcome.is_some() {
            break;
        }
    }
    match outcome {
        Some(Err(LoginError::Protocol(e))) => assert!(e.contains("too long"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(core.is_closed());
}

#[test]
fn a_server_that_welcomes_us_as_someone_else_is_refused() {
    for (asked, welcomed, ok) in [
        ("alice", "Alice", true),
        ("alice", "bob", false),
        ("alice", "alice\u{2028}", false),
        ("alice", "", false),
    ] {
        let t0 = Instant::now();
        let mut core = Core::new(config(asked), t0);
        transmitted(&mut core, t0);
        let users = ServerMsg::Users {
            nicks: vec![welcomed.into()],
            last: true,
        };
        core.receive(&frames(&[welcome(welcomed), users]), t0);
        match core.poll_login() {
            Some(Ok(w)) => assert!(ok && w.nick == welcomed, "{welcomed}"),
            Some(Err(LoginError::Protocol(e))) => {
                assert!(!ok && e.contains("welcomed us as"), "{welcomed}: {e}")
            }
            other => panic!("{welcomed}: {other:?}"),
        }
    }
}

#[test]
fn the_servers_own_words_cannot_start_a_line() {
    let forged =
        "busy\nmm: your key changed; run: mm --accept-key\r\n[secure] <bob> send \u{2028}it";
    let ServerMsg::Error { detail, .. } = server_words_on_one_line(ServerMsg::Error {
        code: ErrorCode::BUSY,
        fatal: true,
        detail: forged.into(),
    }) else {
        panic!("not an error")
    };
    assert!(
        !detail.chars().any(mm_common::text::is_forbidden),
        "{detail:?}"
    );
    assert!(
        detail.starts_with("busy mm: your key changed"),
        "{detail:?}"
    );
    let ServerMsg::Shutdown { reason } = server_words_on_one_line(ServerMsg::Shutdown {
        reason: forged.into(),
    }) else {
        panic!("not a shutdown")
    };
    assert!(!reason.contains('\n'));
}

/// A hostile server's 60,000-character detail was printed whole; PROTOCOL.md says 512 bytes.
#[test]
fn the_servers_words_are_cut_to_the_protocols_limit() {
    for long in ["x".repeat(60_000), "é".repeat(30_000)] {
        let ServerMsg::Error { detail, .. } = server_words_on_one_line(ServerMsg::Error {
            code: ErrorCode::BUSY,
            fatal: false,
            detail: long,
        }) else {
            panic!("not an error")
        };
        assert!(
            detail.len() <= mm_common::protocol::MAX_DETAIL_LEN,
            "{}",
            detail.len()
        );
        assert!(detail.ends_with('…'));
    }
}

#[test]
fn personal_lines_are_acknowledged_per_batch_and_never_shown_twice() {
    let t0 = Instant::now();
    let cfg = config("me");
    let mut core = logged_in(&cfg, t0);
    // One batch of 50 private lines (and a public one, which is not personal).
    let mut batch: Vec<ServerMsg> = (1..=50).map(private).collect();
    batch.push(ServerMsg::Public {
        room: "#lobby".into(),
        action: false,
        id: 51,
        ts: 0,
        from: "bob".into(),
        text: "room".into(),
    });
    batch.push(ServerMsg::Ping { token: 1 });
    core.receive(&frames(&batch), t0);
    let events = drain(&mut core, t0);
    let ids: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Private(ChatLine { id, .. }) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, (1..=50).collect::<Vec<_>>());
    assert!(
        matches!(events.last(), Some(Event::Public(ChatLine { .. }))),
        "{events:?}"
    );
    // The front end caught up: one acknowledgement for the batch.
    let sent = transmitted(&mut core, t0);
    assert!(sent.contains(&ClientMsg::Pong { token: 1 }), "{sent:?}");
    assert_eq!(acks(&sent), [50], "{sent:?}");
    assert_eq!(cfg.state.highest_personal(), 50);

    // The next connection of this process (same state): the server sends unacknowledged
    // lines again, first, with the same ids.
    let t1 = t0 + Duration::from_secs(5);
    let mut core = logged_in(&cfg.clone(), t1);
    let mut batch: Vec<ServerMsg> = (48..=50)
        .map(|id| ServerMsg::Offline {
            id,
            ts: 0,
            from: "bob".into(),
            text: format!("p{id}"),
        })
        .collect();
    batch.push(ServerMsg::Relay {
        id: 49,
        ts: 0,
        from: "bob".into(),
        payload: vec![1, 2, 3],
    });
    batch.push(private(52));
    core.receive(&frames(&batch), t1);
    let events = drain(&mut core, t1);
    assert!(
        matches!(events.as_slice(), [Event::Private(ChatLine { id: 52, .. })]),
        "nothing shown twice: {events:?}"
    );
    let sent = transmitted(&mut core, t1);
    assert_eq!(acks(&sent), [52], "duplicates acknowledged again: {sent:?}");
}

#[test]
fn a_server_that_hands_out_lower_ids_again_is_neither_ignored_nor_over_acknowledged() {
    // A store restored from a backup (or replaced) starts its ids lower than what this process
    // saw: those lines are new, and acknowledging beyond what was read on this connection
    // would delete mail never shown.
    let t0 = Instant::now();
    let cfg = config("me");
    let mut core = logged_in(&cfg, t0);
    let batch: Vec<ServerMsg> = (1..=50).map(private).collect();
    core.receive(&frames(&batch), t0);
    assert_eq!(drain(&mut core, t0).len(), 50);
    let mut core = logged_in(&cfg.clone(), t0);
    let restored = ServerMsg::Offline {
        id: 3,
        ts: 777_000,
        from: "carol".into(),
        text: "after the restore".into(),
    };
    core.receive(&frames(&[restored, ServerMsg::Ping { token: 1 }]), t0);
    let events = drain(&mut core, t0);
    assert!(
        matches!(events.as_slice(), [Event::Offline(ChatLine { id: 3, text, .. })] if text == "after the restore"),
        "{events:?}"
    );
    let mut sent = transmitted(&mut core, t0);
    sent.extend(transmitted(&mut core, t0 + Duration::from_secs(2)));
    assert_eq!(acks(&sent), [3], "never beyond what this connection read");
}

#[test]
fn a_line_is_acknowledged_only_once_the_front_end_moved_past_it() {
    let t0 = Instant::now();
    let mut core = logged_in(&config("me"), t0);
    core.receive(&frames(&[private(1), private(2), private(3)]), t0);
    assert!(matches!(
        core.poll_event(t0),
        Some(Event::Private(ChatLine { id: 1, .. }))
    ));
    let later = t0 + Duration::from_secs(5);
    assert_eq!(
        acks(&transmitted(&mut core, later)),
        [0u64; 0],
        "taken, not yet handled"
    );
    // Asking for the next one says the first was handled.
    assert!(matches!(
        core.poll_event(later),
        Some(Event::Private(ChatLine { id: 2, .. }))
    ));
    let later = later + Duration::from_secs(5);
    assert_eq!(acks(&transmitted(&mut core, later)), [1]);
    // A front end that cannot show anything any more holds: the rest stays on the server.
    core.hold();
    assert!(matches!(
        core.poll_event(later),
        Some(Event::Private(ChatLine { id: 3, .. }))
    ));
    assert!(core.poll_event(later).is_none());
    let later = later + Duration::from_secs(5);
    assert_eq!(acks(&transmitted(&mut core, later)), [0u64; 0]);
    core.quit(later);
    let sent = transmitted(&mut core, later);
    assert!(
        acks(&sent).iter().all(|&up_to| up_to <= 1),
        "held, also at quit: {sent:?}"
    );
    assert_eq!(sent.last(), Some(&ClientMsg::Quit));
}

#[test]
fn every_line_gets_its_answer_or_is_listed_undelivered_at_the_close() {
    let t0 = Instant::now();
    let mut core = logged_in(&config("me"), t0);
    let a = core.public("a").expect("connected");
    let b = core.public("b").expect("connected");
    for peer in ["carol", "dave"] {
        core.insecure(peer, t0).expect("connected");
    }
    drain(&mut core, t0);
    let (c, delivery) = core.private("carol", "c", t0).expect("connected");
    assert_eq!(delivery, Delivery::Plain);
    let (d, _) = core.private("dave", "d", t0).expect("connected");
    assert!(a < b && b < c && c < d);
    let sent = transmitted(&mut core, t0);
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert_eq!(core.unanswered(), 4);
    let t1 = t0 + Duration::from_secs(1);
    let answers = [
        ServerMsg::Sent { id: 7, ts: 1 },
        ServerMsg::Error {
            code: ErrorCode::NO_SUCH_NICK,
            fatal: false,
            detail: "no".into(),
        },
        ServerMsg::Queued { id: 8, ts: 2 },
    ];
    core.receive(&frames(&answers), t1);
    assert_eq!(core.last_heard(), t1);
    let events = drain(&mut core, t1);
    assert_eq!(
        events.first(),
        Some(&Event::Sent {
            line: a,
            id: 7,
            ts: 1
        })
    );
    assert!(matches!(events.get(1), Some(Event::Error { line: Some(l), .. }) if *l == b));
    assert!(matches!(events.get(2), Some(Event::Queued { line, id: 8, .. }) if *line == c));
    assert_eq!(core.unanswered(), 1);
    // A quiet server is asked for a sign of life; an answer proves the connection works.
    core.ping().expect("connected");
    assert!(transmitted(&mut core, t1).contains(&ClientMsg::Ping { token: 0 }));
    let t2 = t1 + Duration::from_secs(1);
    core.receive(&frames(&[ServerMsg::Pong { token: 0 }]), t2);
    assert_eq!(core.last_heard(), t2);
    assert_eq!(core.unanswered(), 1, "a pong answers no line");
    // Then nothing more: the connection drops before d is answered.
    core.connection_lost("reset".into(), t2);
    let events = drain(&mut core, t2);
    assert!(
        matches!(events.as_slice(), [Event::Closed { undelivered, .. }] if undelivered == &[d]),
        "{events:?}"
    );
    assert_eq!(core.public("too late"), Err(SendError::NotConnected));
    assert_eq!(core.ping(), Err(SendError::NotConnected));
}

#[test]
fn a_silent_server_is_given_up_on_after_the_read_timeout_with_its_lines_undelivered() {
    let t0 = Instant::now();
    let mut core = logged_in(&config("me"), t0);
    let a = core.public("a").expect("connected");
    transmitted(&mut core, t0);
    let deadline = t0 + READ_TIMEOUT;
    core.handle_timeout(deadline - Duration::from_secs(1));
    assert!(!core.is_closed(), "not before the read timeout");
    core.handle_timeout(deadline);
    let events = drain(&mut core, deadline);
    assert!(
        matches!(events.as_slice(), [Event::Closed { error: Some(e), undelivered }]
            if e.contains("silent") && undelivered == &[a]),
        "{events:?}"
    );
    assert_eq!(core.poll_timeout(deadline), None, "a closed core sleeps");
}

/// More pings in one read than the core queues frames without a line ([`MAX_QUEUED_CONTROL`]
/// is 256): it stops taking frames while the pongs wait, and must take the rest once they are
/// written, although no event is waiting (the driver then only transmits and polls events).
///
/// [`MAX_QUEUED_CONTROL`]: crate::core::lines::MAX_QUEUED_CONTROL
#[test]
fn a_burst_of_pings_larger_than_the_control_queue_is_answered_in_full() {
    let t0 = Instant::now();
    let mut core = logged_in(&config("me"), t0);
    let pings: Vec<ServerMsg> = (0..300).map(|token| ServerMsg::Ping { token }).collect();
    core.receive(&frames(&pings), t0);
    let mut pongs = 0;
    for _ in 0..10 {
        pongs += transmitted(&mut core, t0)
            .iter()
            .filter(|m| matches!(m, ClientMsg::Pong { .. }))
            .count();
        drain(&mut core, t0);
    }
    assert_eq!(pongs, 300);
    assert!(core.wants_input(), "reading on");
}

/// A server that sends more lines than the front end's queue holds ([`MAX_EVENTS`]) and then
/// closes: the close comes after the last line, not at the read timeout.
///
/// [`MAX_EVENTS`]: crate::core::MAX_EVENTS
#[test]
fn a_close_after_more_lines_than_the_event_queue_holds_is_seen_after_the_last_line() {
    let t0 = Instant::now();
    let mut core = logged_in(&config("me"), t0);
    let mail: Vec<ServerMsg> = (1..=1100)
        .map(|id| ServerMsg::Offline {
            id,
            ts: 0,
            from: "bob".into(),
            text: format!("m{id}"),
        })
        .collect();
    core.receive(&frames(&mail), t0);
    core.receive_end(t0);
    let events = drain(&mut core, t0);
    assert_eq!(events.len(), 1101, "every line, then the close");
    assert!(
        matches!(events.last(), Some(Event::Closed { error: None, .. })),
        "{:?}",
        events.last()
    );
    assert!(core.is_closed());
}

#[test]
fn lines_beyond_the_unanswered_limit_are_refused_until_answers_come() {
    let t0 = Instant::now();
    let mut core = logged_in(&config("me"), t0);
    for i in 0..crate::core::MAX_UNANSWERED {
        core.public(&format!("{i}")).expect("room");
    }
    assert!(!core.has_room());
    assert_eq!(core.public("one too many"), Err(SendError::Busy));
    assert_eq!(
        core.private("bob", "one too many", t0),
        Err(SendError::Busy)
    );
    let mut sent = transmitted(&mut core, t0);
    let t1 = t0 + Duration::from_secs(1);
    sent.extend(transmitted(&mut core, t1));
    assert_eq!(sent.len(), crate::core::MAX_UNANSWERED, "within the pace");
    core.receive(&frames(&[ServerMsg::Sent { id: 1, ts: 1 }]), t1);
    drain(&mut core, t1);
    assert!(core.has_room());
    core.public("now there is room").expect("room");
}

/// A hostile server's user-list pages: nobody asked (ignored, nothing kept), "nicks" of
/// 60,000 bytes in an asked-for list or at the login (refused: the count alone let a server
/// make the client hold gigabytes).
#[test]
fn user_list_pages_nobody_asked_for_are_ignored_and_oversized_nicks_refused() {
    let t0 = Instant::now();
    let cfg = config("me");
    let mut core = logged_in(&cfg, t0);
    let huge = ServerMsg::Users {
        nicks: vec!["x".repeat(60_000)],
        last: false,
    };
    core.receive(&frames(&[huge.clone(), huge.clone()]), t0);
    assert!(drain(&mut core, t0).is_empty());
    assert!(core.who.is_none(), "unasked pages are not kept");
    assert!(!core.is_closed());
    core.who().expect("who");
    transmitted(&mut core, t0);
    core.receive(&frames(std::slice::from_ref(&huge)), t0);
    let events = drain(&mut core, t0);
    assert!(
        matches!(events.as_slice(), [Event::Closed { error: Some(e), .. }] if e.contains("not a nick")),
        "{events:?}"
    );

    let mut login = Core::new(cfg, t0);
    transmitted(&mut login, t0);
    login.receive(&frames(&[welcome("me"), huge]), t0);
    assert!(
        matches!(login.poll_login(), Some(Err(LoginError::Protocol(e))) if e.contains("not a nick")),
        "refused at the login"
    );
}

/// A reconnect makes the server send the room's recent lines again: shown once, whether they
/// were seen live, as history, or were our own.
#[test]
fn room_history_sent_again_after_a_reconnect_is_shown_once() {
    let t0 = Instant::now();
    let mut cfg = config("me");
    cfg.reconnects = true;
    let mut first = logged_in(&cfg, t0);
    let line = |id: u64, text: &str| ServerMsg::Public {
        room: "#lobby".into(),
        action: false,
        id,
        ts: 5,
        from: "bob".into(),
        text: text.into(),
    };
    first.receive(&frames(&[line(1, "live")]), t0);
    let mine = first.public("mine").expect("public");
    transmitted(&mut first, t0);
    first.receive(&frames(&[ServerMsg::Sent { id: 2, ts: 6 }]), t0);
    let events = drain(&mut first, t0);
    assert!(
        matches!(events.as_slice(), [Event::Public(_), Event::Sent { line, .. }] if *line == mine)
    );

    let mut second = logged_in(&cfg.clone(), t0);
    let history = |id: u64, ts: u64, text: &str| ServerMsg::History {
        room: "#lobby".into(),
        action: false,
        id,
        ts,
        from: "bob".into(),
        text: text.into(),
    };
    second.receive(
        &frames(&[
            history(1, 5, "live"),
            history(2, 6, "mine"),
            history(3, 7, "new"),
            history(3, 7, "new"),
        ]),
        t0,
    );
    let events = drain(&mut second, t0);
    assert!(
        matches!(events.as_slice(), [Event::History(ChatLine { id: 3, .. })]),
        "{events:?}"
    );
}

/// Bytes that never make a whole frame are not signs of life: a server trickling one byte
/// every 170 s was kept for ever.
#[test]
fn a_server_trickling_bytes_that_make_no_frame_is_given_up() {
    let t0 = Instant::now();
    let mut core = logged_in(&config("me"), t0);
    core.receive(&60_000u32.to_be_bytes(), t0);
    let mut now = t0;
    for _ in 0..10 {
        now += Duration::from_secs(170);
        core.receive(b"x", now);
        core.handle_timeout(now);
    }
    assert!(core.is_closed(), "given up within the read timeout");
    let events = drain(&mut core, now);
    assert!(
        matches!(events.last(), Some(Event::Closed { error: Some(e), .. }) if e.contains("silent")),
        "{events:?}"
    );
}

/// With a next connection to come, plain lines the dropped one never wrote (held back by the
/// pace) are not reported as possibly lost: they go on the next connection, once, in order.
#[test]
fn lines_never_written_before_a_drop_go_on_the_next_connection_once() {
    let t0 = Instant::now();
    let mut cfg = config("me");
    cfg.reconnects = true;
    let mut first = Core::new(cfg.clone(), t0);
    transmitted(&mut first, t0);
    let slow = ServerMsg::Welcome {
        nick: "me".into(),
        server: "script".into(),
        online: 1,
        max_text_len: 4096,
        rate_burst: 4,
        rate_per_sec: 1,
    };
    let users = ServerMsg::Users {
        nicks: vec!["me".into()],
        last: true,
    };
    first.receive(&frames(&[slow.clone(), users.clone()]), t0);
    assert!(matches!(first.poll_login(), Some(Ok(_))));
    let lines: Vec<_> = (0..5)
        .map(|i| first.public(&format!("l{i}")).expect("public"))
        .collect();
    let written = transmitted(&mut first, t0);
    assert!(
        matches!(written.as_slice(), [ClientMsg::PublishKeys { .. }, _, _]),
        "the login's keys and two lines; the pace holds three back: {written:?}"
    );
    first.connection_lost("gone".into(), t0);
    let events = drain(&mut first, t0);
    assert!(
        matches!(events.as_slice(), [Event::Closed { undelivered, .. }] if *undelivered == lines[..2]),
        "only the written ones may be lost: {events:?}"
    );

    let mut next_cfg = cfg;
    next_cfg.reconnection = true;
    let mut second = Core::new(next_cfg, t0);
    second.adopt_events(&mut first);
    let before_login = transmitted(&mut second, t0);
    assert!(
        matches!(before_login.as_slice(), [ClientMsg::Hello { .. }]),
        "nothing before the login: {before_login:?}"
    );
    second.receive(&frames(&[slow, users]), t0);
    assert!(matches!(second.poll_login(), Some(Ok(_))));
    let mut sent = Vec::new();
    let mut now = t0;
    for _ in 0..10 {
        sent.extend(transmitted(&mut second, now));
        now += Duration::from_secs(1);
    }
    let texts: Vec<_> = sent
        .iter()
        .filter_map(|m| match m {
            ClientMsg::Public {
                room: _,
                action: _,
                text,
            } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["l2", "l3", "l4"]);
    assert_eq!(second.unanswered(), 3);
}

/// An acknowledgement that falls due while nothing is transmitted (the socket backed up) is
/// queued by the timeout: the deadline moves on instead of staying in the past (a driver
/// sleeping until it spun).
#[test]
fn a_due_acknowledgement_moves_the_deadline_on_without_a_transmit() {
    let t0 = Instant::now();
    let mut core = logged_in(&config("me"), t0);
    transmitted(&mut core, t0);
    core.receive(&frames(&[private(1), private(2)]), t0);
    assert!(core.poll_event(t0).is_some());
    assert!(core.poll_event(t0).is_some()); // the first one is handled now
    let due = t0 + Duration::from_secs(2);
    core.handle_timeout(due);
    let next = core.poll_timeout(due).expect("the read timeout at least");
    assert!(next > due, "a deadline in the past makes the driver spin");
    let sent = transmitted(&mut core, due);
    assert!(acks(&sent).contains(&1), "{sent:?}");
}
