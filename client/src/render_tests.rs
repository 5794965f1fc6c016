//! Tests of [`super`]: one or more per event kind (where it goes, what kind, the words), and
//! hostile text through both layouts.

use super::*;
use crate::display::{self, Style};
use crate::tui::app::{App, LineKind};
use crate::ChatLine;
use crate::LineId;
use crate::RoomEvent;
use mm_common::protocol::ErrorCode;

fn only(event: &Event) -> Rendered {
    let mut items = super::event(event);
    assert_eq!(items.len(), 1, "{items:?}");
    items.remove(0)
}

fn chat(target: Target, kind: Kind, from: &str, text: &str, ts: Option<u64>) -> Rendered {
    Rendered {
        target,
        kind,
        from: Some(from.into()),
        text: text.into(),
        ts,
    }
}

fn peer(nick: &str) -> Target {
    Target::Peer(nick.into())
}

#[test]
fn chat_lines_keep_sender_text_and_time() {
    let (from, text) = ("alice".to_string(), "hi  there".to_string());
    let cases = [
        (
            Event::Public(ChatLine {
                room: String::new(),
                action: false,
                id: 1,
                ts: 5,
                from: from.clone(),
                text: text.clone(),
            }),
            Target::Room,
            Kind::Public,
        ),
        (
            Event::Private(ChatLine {
                room: String::new(),
                action: false,
                id: 1,
                ts: 5,
                from: from.clone(),
                text: text.clone(),
            }),
            peer("alice"),
            Kind::Private,
        ),
        (
            Event::History(ChatLine {
                room: String::new(),
                action: false,
                id: 1,
                ts: 5,
                from: from.clone(),
                text: text.clone(),
            }),
            Target::Room,
            Kind::History,
        ),
        (
            Event::Offline(ChatLine {
                room: String::new(),
                action: false,
                id: 1,
                ts: 5,
                from: from.clone(),
                text: text.clone(),
            }),
            peer("alice"),
            Kind::Offline,
        ),
    ];
    for (event, target, kind) in cases {
        assert_eq!(
            only(&event),
            chat(target, kind, "alice", "hi  there", Some(5))
        );
    }
}

#[test]
fn acknowledgements_show_nothing_and_a_queued_line_is_said_here() {
    let line = LineId::from_tag(3);
    assert!(super::event(&Event::Sent { line, id: 1, ts: 1 }).is_empty());
    assert_eq!(
        only(&Event::Queued {
            line,
            secure_for: None,
            id: 1,
            ts: 1
        }),
        Rendered::notice(
            Target::Here,
            "they are offline; the server keeps the message (NOT end-to-end encrypted) for their next login"
        )
    );
    // An end-to-end message queued for an offline peer says so in the peer's conversation,
    // and never claims it went plain.
    let secure = only(&Event::Queued {
        line,
        secure_for: Some("bob".into()),
        id: 2,
        ts: 2,
    });
    assert_eq!(secure.target, peer("bob"));
    assert!(
        secure
            .text
            .starts_with("queued end-to-end encrypted for bob (offline)")
            && !secure.text.contains("NOT"),
        "{secure:?}"
    );
}

#[test]
fn joins_and_leaves_are_said_in_the_room_and_in_an_open_conversation() {
    assert_eq!(
        super::event(&Event::Joined { nick: "bob".into() }),
        [
            Rendered::notice(Target::Room, "bob joined"),
            Rendered::notice(Target::PeerTab("bob".into()), "bob is online"),
        ]
    );
    assert_eq!(
        super::event(&Event::Left {
            nick: "bob".into(),
            reason: LeaveReason::Quit
        }),
        [
            Rendered::notice(Target::Room, "bob left"),
            Rendered::notice(Target::PeerTab("bob".into()), "bob went offline"),
        ]
    );
    let slow = super::event(&Event::Left {
        nick: "bob".into(),
        reason: LeaveReason::TooSlow,
    });
    assert_eq!(slow[0].text, "bob left (too slow)");
    assert_eq!(slow[1].text, "bob went offline (too slow)");
}

#[test]
fn users_errors_warnings_shutdowns_and_closes() {
    assert_eq!(
        only(&Event::Users(vec!["a".into(), "b".into()])),
        Rendered::notice(Target::Here, "online (2): a, b")
    );
    assert_eq!(
        only(&Event::Error {
            line: None,
            code: ErrorCode::NO_SUCH_NICK,
            fatal: false,
            detail: "carol is not online".into(),
        }),
        Rendered::error("error (no-such-nick): carol is not online")
    );
    assert_eq!(
        only(&Event::Warning("careful".into())),
        Rendered::error("warning: careful")
    );
    assert_eq!(
        only(&Event::Shutdown {
            reason: "server is shutting down".into()
        }),
        Rendered::notice(Target::Room, "server shutting down")
    );
    assert_eq!(
        only(&Event::Closed {
            error: Some("reset".into()),
            undelivered: vec![],
        }),
        Rendered::new(Target::Room, Kind::Error, "disconnected: reset")
    );
    assert_eq!(
        only(&Event::Closed {
            error: None,
            undelivered: vec![],
        }),
        Rendered::notice(Target::Room, "disconnected")
    );
}

#[test]
fn a_safety_number_comes_with_how_to_compare_it() {
    let items = super::event(&Event::SafetyNumber {
        peer: "bob".into(),
        number: "12345 67890".into(),
        new_key: true,
    });
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(
        items[0],
        Rendered::new(
            peer("bob"),
            Kind::SafetyNumber {
                number: "12345 67890".into(),
                new_key: true
            },
            "safety number of bob's NEW key (not accepted yet)"
        )
    );
    assert_eq!(items[1].target, peer("bob"));
    assert!(
        items[1]
            .text
            .ends_with("if they are the same: /accept-key bob, then /verified bob"),
        "{items:?}"
    );
    let plain = safety_number("bob", "1", false);
    assert_eq!(plain[0].text, "safety number with bob");
    assert!(plain[1]
        .text
        .ends_with("if they are the same: /verified bob"));
}

fn e2e(event: E2eEvent) -> Rendered {
    only(&Event::Secure(event))
}

#[test]
fn secure_session_events_go_to_the_peer() {
    let ready = e2e(E2eEvent::Ready {
        peer: "bob".into(),
        key: [3; 32],
        trust: Trust::New,
        by_peer: false,
    });
    assert_eq!(
        (ready.target.clone(), ready.kind.clone()),
        (peer("bob"), Kind::Ready)
    );
    assert!(
        ready.text.starts_with("secure session with bob ready")
            && ready.text.contains(&key_fingerprint(&[3; 32]))
            && ready.text.ends_with("Compare safety numbers: /verify bob"),
        "{ready:?}"
    );
    let verified = e2e(E2eEvent::Ready {
        peer: "bob".into(),
        key: [3; 32],
        trust: Trust::Verified,
        by_peer: false,
    });
    assert!(!verified.text.contains("/verify"), "{verified:?}");
    let started_by_peer = e2e(E2eEvent::Ready {
        peer: "bob".into(),
        key: [3; 32],
        trust: Trust::Pinned,
        by_peer: true,
    });
    assert!(
        started_by_peer.text.starts_with(
            "bob started a secure session: messages to and from bob are end-to-end encrypted"
        ),
        "{started_by_peer:?}"
    );
    let message = e2e(E2eEvent::Message {
        peer: "bob".into(),
        id: 9,
        text: "psst".into(),
    });
    assert_eq!(
        message,
        chat(peer("bob"), Kind::Secure, "bob", "psst", None)
    );
}

#[test]
fn secure_session_endings_say_what_was_not_sent_and_what_to_do() {
    let ended = e2e(E2eEvent::Ended {
        peer: "bob".into(),
        unsent: vec![1],
    });
    assert_eq!(ended.kind, Kind::Notice);
    assert!(
        ended.text.starts_with(
            "private messages to bob are NOT end-to-end encrypted from now on (the server can read them); 1 waiting message was NOT sent"
        ) && ended.text.ends_with("/secure bob to encrypt again"),
        "{ended:?}"
    );
    let no_keys = e2e(E2eEvent::Failed {
        peer: "bob".into(),
        failure: Failure::NoKeys,
        unsent: vec![1, 2],
    });
    assert_eq!(no_keys.kind, Kind::Error);
    assert!(
        no_keys
            .text
            .starts_with("bob has no end-to-end keys (an older client, or a browser page from before end-to-end; bob gets keys by logging in again with a current one); 2 waiting messages were NOT sent")
            && no_keys.text.contains("To send plain (the server can read it): /insecure bob, then send again"),
        "{no_keys:?}"
    );
    let changed = e2e(E2eEvent::Failed {
        peer: "bob".into(),
        failure: Failure::KeyChanged {
            pinned: [1; 32],
            presented: [2; 32],
        },
        unsent: vec![],
    });
    assert_eq!(changed.kind, Kind::Alarm);
    assert!(changed.text.starts_with("WARNING: bob's key has CHANGED"));
    let own = e2e(E2eEvent::Failed {
        peer: "bob".into(),
        failure: Failure::OwnKey,
        unsent: vec![7],
    });
    assert_eq!(own.kind, Kind::Alarm);
    assert!(
        own.text.starts_with("WARNING: bob presents your own key")
            && own.text.ends_with("; 1 waiting message was NOT sent"),
        "{own:?}"
    );
    let bad = e2e(E2eEvent::Failed {
        peer: "bob".into(),
        failure: Failure::BadSignature,
        unsent: vec![],
    });
    assert_eq!(bad.kind, Kind::Error);
    assert!(
        bad.text.starts_with("secure session with bob failed")
            && bad.text.contains("blocked until /secure bob"),
        "{bad:?}"
    );
    let failed = e2e(E2eEvent::Failed {
        peer: "bob".into(),
        failure: Failure::Timeout,
        unsent: vec![],
    });
    assert!(
        failed
            .text
            .starts_with("could not start a secure session with bob")
            && failed.text.contains("Nothing goes unencrypted"),
        "{failed:?}"
    );
    let unreadable = e2e(E2eEvent::Unreadable { peer: "bob".into() });
    assert_eq!(unreadable.kind, Kind::Error);
    assert!(
        unreadable
            .text
            .contains("could not be decrypted and is not shown"),
        "{unreadable:?}"
    );
    let replayed = e2e(E2eEvent::Replayed { peer: "bob".into() });
    assert!(replayed.text.contains("replayed"), "{replayed:?}");
    // The page says the same words (web/test/render.test.js).
    let held = e2e(E2eEvent::Held {
        peer: "bob".into(),
        held: 2,
        dropped: 0,
    });
    assert_eq!(held.target, peer("bob"));
    assert_eq!(held.kind, Kind::Alarm);
    assert_eq!(
        held.text,
        "2 messages from bob under the new key are held until you compare safety numbers (/verify bob) and /accept-key bob"
    );
    let one = e2e(E2eEvent::Held {
        peer: "bob".into(),
        held: 1,
        dropped: 3,
    });
    assert_eq!(
        one.text,
        "1 message from bob under the new key is held until you compare safety numbers (/verify bob) and /accept-key bob; 3 older messages were dropped (too many held)"
    );
    let released = e2e(E2eEvent::Released {
        peer: "bob".into(),
        key: [0xab; 32],
        count: 2,
    });
    assert_eq!(
        released.text,
        format!(
            "2 held messages from bob follow, sent under the key you just accepted ({}abab)",
            "abab ".repeat(15)
        )
    );
    for event in [
        E2eEvent::Ended {
            peer: "b".into(),
            unsent: vec![],
        },
        E2eEvent::Failed {
            peer: "b".into(),
            failure: Failure::NoKeys,
            unsent: vec![],
        },
        E2eEvent::Failed {
            peer: "b".into(),
            failure: Failure::Timeout,
            unsent: vec![],
        },
    ] {
        assert!(unsent_reason(&event).is_some_and(|why| why.starts_with("not sent: ")));
    }
    assert_eq!(
        unsent_reason(&E2eEvent::Message {
            peer: "b".into(),
            id: 1,
            text: "x".into()
        }),
        None
    );
}

#[test]
fn welcome_own_lines_and_help() {
    let w = Welcome {
        nick: "alice".into(),
        server: "s".into(),
        max_text_len: 1,
        rate_burst: 1,
        rate_per_sec: 1,
        online: vec!["alice".into(), "bob".into()],
        online_count: 2,
    };
    assert_eq!(
        welcome("h:1", &w),
        Rendered::notice(
            Target::Room,
            "connected to h:1 as alice; 2 online: alice, bob"
        )
    );
    // A large server lists nobody at login: the count, and where the list is.
    let big = Welcome {
        online: Vec::new(),
        online_count: 5000,
        ..w.clone()
    };
    assert_eq!(
        welcome("h:1", &big),
        Rendered::notice(
            Target::Room,
            "connected to h:1 as alice; 5000 online (/who lists them)"
        )
    );
    assert_eq!(
        own_public("alice", "hi"),
        chat(Target::Room, Kind::OwnPublic, "alice", "hi", None)
    );
    assert_eq!(
        own_private("alice", "bob", "hi", Delivery::Queued),
        chat(
            peer("bob"),
            Kind::OwnSecure { queued: true },
            "alice",
            "hi",
            None
        )
    );
    assert_eq!(
        own_private("alice", "bob", "hi", Delivery::Plain).kind,
        Kind::OwnPrivate
    );
    let help = help();
    assert_eq!(help.len(), HELP.lines().count());
    assert!(help
        .iter()
        .all(|i| i.kind == Kind::Notice && i.target == Target::Here));
}

/// Characters that break, reorder or hide a line.
const HOSTILE: [&str; 10] = [
    "\n",
    "\r",
    "\u{1b}[2J",
    "\u{7}",
    "\u{85}",
    "\u{2028}",
    "\u{2029}",
    "\u{202E}",
    "\u{2066}",
    "\u{FEFF}",
];

/// Every event with `s` in each string field.
fn every_event(s: &str) -> Vec<Event> {
    let s = s.to_string();
    vec![
        Event::Public(ChatLine {
            room: String::new(),
            action: false,
            id: 1,
            ts: 0,
            from: s.clone(),
            text: s.clone(),
        }),
        Event::Private(ChatLine {
            room: String::new(),
            action: false,
            id: 2,
            ts: 0,
            from: s.clone(),
            text: s.clone(),
        }),
        Event::History(ChatLine {
            room: String::new(),
            action: false,
            id: 3,
            ts: 0,
            from: s.clone(),
            text: s.clone(),
        }),
        Event::Offline(ChatLine {
            room: String::new(),
            action: false,
            id: 4,
            ts: 0,
            from: s.clone(),
            text: s.clone(),
        }),
        Event::Joined { nick: s.clone() },
        Event::Left {
            nick: s.clone(),
            reason: LeaveReason::TooSlow,
        },
        Event::Users(vec![s.clone(), s.clone()]),
        Event::Error {
            line: None,
            code: ErrorCode(7),
            fatal: false,
            detail: s.clone(),
        },
        Event::Shutdown { reason: s.clone() },
        Event::Warning(s.clone()),
        Event::SafetyNumber {
            peer: s.clone(),
            number: s.clone(),
            new_key: true,
        },
        Event::Secure(E2eEvent::Message {
            peer: s.clone(),
            id: 1,
            text: s.clone(),
        }),
        Event::Secure(E2eEvent::Failed {
            peer: s.clone(),
            failure: Failure::NoKeys,
            unsent: vec![],
        }),
        Event::Secure(E2eEvent::Unreadable { peer: s.clone() }),
        Event::Queued {
            line: LineId::from_tag(1),
            secure_for: Some(s.clone()),
            id: 1,
            ts: 1,
        },
        Event::Closed {
            error: Some(s.clone()),
            undelivered: vec![],
        },
    ]
}

fn assert_shows_clean(line: &str) {
    assert_eq!(mm_common::text::find_forbidden(line), None, "{line:?}");
    assert!(!line.chars().any(char::is_control), "{line:?}");
}

#[test]
fn hostile_text_reaches_neither_front_end() {
    for bad in HOSTILE {
        let s = format!("x{bad}y");
        for event in every_event(&s) {
            for item in super::event(&event) {
                // Line mode: its one line.
                if let Some(line) = display::format(&item, Style::PLAIN) {
                    assert_shows_clean(&line);
                }
            }
            // The terminal UI: every line it keeps, as the screen cleans it.
            let mut app = App::new("s", "me");
            app.on_event(&event, 0);
            for line in app.tabs.iter().flat_map(|t| &t.lines) {
                let shown = display::clean(&line.text);
                if line.kind != LineKind::Notice && line.kind != LineKind::Error {
                    assert_eq!(shown.chars().count(), line.text.chars().count());
                }
                assert_shows_clean(&shown);
                assert_shows_clean(&display::clean(line.from.as_deref().unwrap_or("")));
            }
        }
    }
}

/// The lines line mode prints for `event`.
fn lines(event: &Event) -> Vec<String> {
    display::event_lines(event, Style::PLAIN)
}

fn line_in(room: &str, from: &str, text: &str, action: bool) -> ChatLine {
    ChatLine {
        id: 7,
        ts: 0,
        room: room.into(),
        from: from.into(),
        text: text.into(),
        action,
    }
}

fn room_info(name: &str) -> crate::RoomInfo {
    crate::RoomInfo {
        name: name.into(),
        topic: "release friday".into(),
        topic_by: "alice".into(),
        modes: mm_common::protocol::Modes::default(),
        members: 3,
        role: mm_common::protocol::Role::Owner,
        seen: 0,
        names: Vec::new(),
    }
}

#[test]
fn room_lines_name_their_room_and_lobby_lines_stay_as_they_were() {
    assert_eq!(
        lines(&Event::Public(line_in("#dev", "alice", "hi", false))),
        ["[#dev] <alice> hi"]
    );
    assert_eq!(
        lines(&Event::Public(line_in("#dev", "alice", "waves", true))),
        ["[#dev] * alice waves"]
    );
    assert_eq!(
        lines(&Event::Public(line_in("#lobby", "alice", "hi", false))),
        ["<alice> hi"]
    );
    assert_eq!(
        lines(&Event::Public(line_in("#Lobby", "alice", "waves", true))),
        ["* alice waves"]
    );
    assert_eq!(
        lines(&Event::History(line_in("#dev", "bob", "old", false))),
        ["[history 1970-01-01 00:00 UTC] [#dev] <bob> old"]
    );
    assert_eq!(
        lines(&Event::History(line_in("#dev", "bob", "shrugs", true))),
        ["[history 1970-01-01 00:00 UTC] [#dev] * bob shrugs"]
    );
    assert_eq!(
        only(&Event::Public(line_in("#dev", "alice", "hi", false))).target,
        Target::InRoom("#dev".into())
    );
    let own = display::format(&own_room_line("me", "#dev", "hello", false), Style::PLAIN);
    assert_eq!(own.as_deref(), Some("[#dev] <me> hello"));
    let own = display::format(&own_room_line("me", "#lobby", "dances", true), Style::PLAIN);
    assert_eq!(own.as_deref(), Some("* me dances"));
}

#[test]
fn each_room_event_is_one_line() {
    use mm_common::protocol::{Member, MemberChange, Role, RoomMode, RoomSummary};
    let room = |e: RoomEvent| lines(&Event::Room(e));
    assert_eq!(
        room(RoomEvent::Entered { room: room_info("#dev"), created: false, asked: false }),
        ["* entered #dev — topic: release friday — 3 members — you are the owner — not end-to-end encrypted: the server reads room lines"]
    );
    assert_eq!(
        room(RoomEvent::NewLines {
            room: "#dev".into()
        }),
        ["[#dev] ── new ──"]
    );
    assert_eq!(
        room(RoomEvent::NewLines {
            room: "#lobby".into()
        }),
        ["── new ──"]
    );
    assert_eq!(
        room(RoomEvent::Joined {
            room: "#dev".into(),
            nick: "bob".into()
        }),
        ["* bob joined #dev"]
    );
    assert_eq!(
        room(RoomEvent::Parted {
            room: "#dev".into(),
            nick: "bob".into(),
            reason: "lunch".into(),
            me: false
        }),
        ["* bob left #dev (lunch)"]
    );
    assert_eq!(
        room(RoomEvent::Parted {
            room: "#dev".into(),
            nick: "bob".into(),
            reason: String::new(),
            me: false
        }),
        ["* bob left #dev"]
    );
    assert_eq!(
        room(RoomEvent::Parted {
            room: "#dev".into(),
            nick: "me".into(),
            reason: String::new(),
            me: true
        }),
        ["* you left #dev"]
    );
    assert_eq!(
        room(RoomEvent::Kicked {
            room: "#dev".into(),
            nick: "carol".into(),
            by: "alice".into(),
            reason: "spam".into(),
            me: false
        }),
        ["* carol was kicked from #dev by alice (spam)"]
    );
    assert_eq!(
        room(RoomEvent::Kicked {
            room: "#dev".into(),
            nick: "me".into(),
            by: "alice".into(),
            reason: String::new(),
            me: true
        }),
        ["! you were kicked from #dev by alice"]
    );
    assert_eq!(
        room(RoomEvent::Topic {
            room: "#dev".into(),
            by: "alice".into(),
            topic: "text".into(),
            changed: true
        }),
        ["* alice set the topic of #dev: text"]
    );
    assert_eq!(
        room(RoomEvent::Topic {
            room: "#dev".into(),
            by: "alice".into(),
            topic: String::new(),
            changed: true
        }),
        ["* alice cleared the topic of #dev"]
    );
    assert_eq!(
        room(RoomEvent::Topic {
            room: "#dev".into(),
            by: "alice".into(),
            topic: "text".into(),
            changed: false
        }),
        ["* topic of #dev: text (set by alice)"]
    );
    assert_eq!(
        room(RoomEvent::Mode {
            room: "#dev".into(),
            by: "alice".into(),
            mode: RoomMode::InviteOnly,
            on: true
        }),
        ["* alice made #dev invite-only (+i): only those invited join"]
    );
    assert_eq!(
        room(RoomEvent::Mode {
            room: "#dev".into(),
            by: "alice".into(),
            mode: RoomMode::Moderated,
            on: true
        }),
        ["* alice made #dev moderated (+m): only operators and voiced members speak"]
    );
    assert_eq!(
        room(RoomEvent::Mode {
            room: "#dev".into(),
            by: "alice".into(),
            mode: RoomMode::TopicOps,
            on: false
        }),
        ["* alice let every member set the topic of #dev (-t)"]
    );
    for (change, words) in [
        (MemberChange::Op, "* alice made bob an operator in #dev"),
        (
            MemberChange::Deop,
            "* alice took bob's operator status in #dev",
        ),
        (MemberChange::Voice, "* alice gave bob voice in #dev"),
        (MemberChange::Devoice, "* alice took bob's voice in #dev"),
        (MemberChange::Ban, "* alice banned bob from #dev"),
        (MemberChange::Unban, "* alice lifted the ban on bob in #dev"),
    ] {
        assert_eq!(
            room(RoomEvent::Member {
                room: "#dev".into(),
                by: "alice".into(),
                nick: "bob".into(),
                change
            }),
            [words]
        );
    }
    assert_eq!(
        room(RoomEvent::Invited {
            room: "#dev".into(),
            by: "alice".into(),
            nick: "me".into(),
            me: true
        }),
        ["* you were invited to #dev by alice — /join #dev"]
    );
    assert_eq!(
        room(RoomEvent::Invited {
            room: "#dev".into(),
            by: "me".into(),
            nick: "bob".into(),
            me: false
        }),
        ["* invited bob to #dev"]
    );
    let member = |nick: &str, role, online, away| Member {
        nick: nick.into(),
        role,
        online,
        away,
    };
    assert_eq!(
        room(RoomEvent::Names {
            room: "#dev".into(),
            members: vec![
                member("alice", Role::Owner, true, false),
                member("bob", Role::Op, true, false),
                member("carol", Role::Voiced, true, false),
                member("dave", Role::Member, true, true),
                member("erin", Role::Member, false, false),
            ],
            complete: true
        }),
        ["* #dev: ~alice @bob +carol dave (away) erin (offline)"]
    );
    assert_eq!(
        room(RoomEvent::List {
            rooms: vec![
                RoomSummary {
                    name: "#dev".into(),
                    members: 3,
                    topic: "topic".into()
                },
                RoomSummary {
                    name: "#ops".into(),
                    members: 1,
                    topic: String::new()
                },
            ],
            next: "#ops".into()
        }),
        [
            "* #dev  3 members  topic",
            "* #ops  1 member",
            "* more rooms: /list more"
        ]
    );
    assert_eq!(
        room(RoomEvent::Away {
            nick: "bob".into(),
            message: "lunch".into(),
            me: false
        }),
        ["* bob is away: lunch"]
    );
    assert_eq!(
        room(RoomEvent::Away {
            nick: "me".into(),
            message: String::new(),
            me: true
        }),
        ["* you are back (no longer marked away)"]
    );
}

#[test]
fn every_room_error_code_is_one_clear_sentence() {
    let error = |code: ErrorCode, doing: Option<&'static str>| {
        lines(&Event::Room(RoomEvent::Error {
            room: "#x".into(),
            doing,
            code,
            detail: "detail".into(),
        }))
    };
    // A code that covers several cases shows the server's words, which say which one.
    assert_eq!(
        error(ErrorCode::BANNED, Some("join")),
        ["! cannot join #x: detail"]
    );
    let without_detail = |code: ErrorCode| {
        lines(&Event::Room(RoomEvent::Error {
            room: "#x".into(),
            doing: Some("join"),
            code,
            detail: String::new(),
        }))
    };
    assert_eq!(
        without_detail(ErrorCode::BANNED),
        ["! cannot join #x: you are banned from it"]
    );
    assert_eq!(
        error(ErrorCode::INVITE_ONLY, Some("join")),
        ["! cannot join #x: it is invite-only and you are not invited (ask an operator to /invite you)"]
    );
    for code in [
        ErrorCode::NO_SUCH_ROOM,
        ErrorCode::INVALID_ROOM,
        ErrorCode::NOT_IN_ROOM,
        ErrorCode::BANNED,
        ErrorCode::INVITE_ONLY,
        ErrorCode::NOT_OP,
        ErrorCode::ROOM_FULL,
        ErrorCode::TOO_MANY_ROOMS,
        ErrorCode::ROOMS_FULL,
        ErrorCode::ROOM_LOOKS_LIKE,
        ErrorCode::MODERATED,
        ErrorCode::INVALID_TOPIC,
        ErrorCode::LOBBY_FIXED,
    ] {
        assert!(room_error_words(code).is_some(), "{code:?}");
        let got = error(code, Some("join"));
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("! cannot join #x: "), "{got:?}");
    }
    assert_eq!(
        error(ErrorCode::ROOMS_FULL, None),
        ["! cannot use #x: detail"]
    );
    assert_eq!(
        error(ErrorCode(999), Some("kick from")),
        ["! cannot kick from #x: detail (unknown)"]
    );
}

#[test]
fn a_peer_who_could_not_read_says_how_many_to_send_again() {
    let two = e2e(E2eEvent::PeerCouldNotRead {
        peer: "carol".into(),
        count: 2,
    });
    assert_eq!(two.target, Target::Peer("carol".into()));
    assert_eq!(two.kind, Kind::Error);
    assert_eq!(
        two.text,
        "carol could not read 2 of your messages (carol's client no longer had the keys of your secure session): send again what you sent carol before the key-change warning"
    );
    let one = e2e(E2eEvent::PeerCouldNotRead {
        peer: "carol".into(),
        count: 1,
    });
    assert_eq!(
        one.text,
        "carol could not read 1 of your messages (carol's client no longer had the keys of your secure session): send again what you sent carol before the key-change warning"
    );
}
