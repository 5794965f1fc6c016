//! Rooms through the server double: join, lines, topic, modes, kick, part, names, the
//! `── new ──` marker, reconnects, `/ignore`, and a hostile server's room frames.

use std::time::Instant;

use mm_common::protocol::{
    ClientMsg, ErrorCode, MemberChange, Modes, Role, RoomMode, ServerMsg, LOBBY,
};

use super::world::World;
use super::{config, drain, frames, transmitted};
use crate::core::{Core, RoomEvent};
use crate::{ChatLine, Event};

fn room_events(events: &[Event]) -> Vec<&RoomEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Room(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn join(world: &mut World, nick: &str, room: &str) -> Vec<Event> {
    world
        .core(nick)
        .room_command(&ClientMsg::Join { room: room.into() })
        .expect("connected");
    world.pump();
    world.events(nick)
}

/// alice creates #dev, bob joins it; their events so far are taken.
fn dev() -> World {
    let mut world = World::new();
    world.connect("alice");
    world.connect("bob");
    join(&mut world, "alice", "#dev");
    join(&mut world, "bob", "#dev");
    world.events("alice");
    world
}

#[test]
fn joining_enters_the_room_with_its_names_and_the_others_see_it() {
    let mut world = World::new();
    world.connect("alice");
    world.connect("bob");
    let events = join(&mut world, "alice", "#Dev");
    let rooms = room_events(&events);
    let [RoomEvent::Entered {
        room,
        created: true,
        asked: true,
    }, RoomEvent::Names {
        members,
        complete: true,
        ..
    }] = rooms.as_slice()
    else {
        panic!("{events:?}")
    };
    assert_eq!(room.name, "#Dev");
    assert_eq!(room.role, Role::Owner);
    assert_eq!(members.len(), 1);
    let events = join(&mut world, "bob", "#dev");
    assert!(
        matches!(room_events(&events).first(), Some(RoomEvent::Entered { created: false, room, asked: true }) if room.role == Role::Member && room.members == 2),
        "{events:?}"
    );
    let alice = world.events("alice");
    assert_eq!(
        room_events(&alice),
        [&RoomEvent::Joined {
            room: "#Dev".into(),
            nick: "bob".into()
        }]
    );
    let info = world
        .core("alice")
        .room("#DEV")
        .expect("alice is in #dev")
        .clone();
    assert_eq!(info.members, 2);
    assert_eq!(info.names.len(), 2, "bob joined the kept list");
    assert_eq!(world.core("bob").rooms().len(), 1);
}

#[test]
fn room_lines_and_actions_reach_the_members_only_with_their_room() {
    let mut world = dev();
    world.connect("carol");
    world.events("carol");
    let line = world
        .core("alice")
        .say("#dev", "hi devs", false)
        .expect("up");
    world.core("alice").say("#dev", "waves", true).expect("up");
    world.pump();
    let bob = world.events("bob");
    let lines: Vec<&ChatLine> = bob
        .iter()
        .filter_map(|e| match e {
            Event::Public(l) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(lines.len(), 2, "{bob:?}");
    assert_eq!(
        (
            lines[0].room.as_str(),
            lines[0].text.as_str(),
            lines[0].action
        ),
        ("#dev", "hi devs", false)
    );
    assert!(lines[1].action && lines[1].in_room());
    assert!(world.events("carol").is_empty(), "carol is not in #dev");
    let alice = world.events("alice");
    assert!(
        alice
            .iter()
            .any(|e| matches!(e, Event::Sent { line: l, .. } if *l == line)),
        "{alice:?}"
    );
    // A line to a room one is not in is answered with an error, in turn.
    let refused = world
        .core("carol")
        .say("#dev", "let me in", false)
        .expect("up");
    world.pump();
    let carol = world.events("carol");
    assert!(
        matches!(carol.as_slice(), [Event::Error { line: Some(l), code: ErrorCode::NOT_IN_ROOM, fatal: false, .. }] if *l == refused),
        "{carol:?}"
    );
}

#[test]
fn topic_modes_and_standing_are_told_and_kept() {
    let mut world = dev();
    world
        .core("alice")
        .room_command(&ClientMsg::Topic {
            room: "#dev".into(),
            topic: Some("release\u{202E} friday".into()),
        })
        .expect("up");
    world
        .core("alice")
        .room_command(&ClientMsg::Mode {
            room: "#dev".into(),
            mode: RoomMode::Moderated,
            on: true,
        })
        .expect("up");
    world
        .core("alice")
        .room_command(&ClientMsg::Member {
            room: "#dev".into(),
            nick: "bob".into(),
            change: MemberChange::Op,
        })
        .expect("up");
    world.pump();
    let bob = world.events("bob");
    let rooms = room_events(&bob);
    assert!(
        matches!(rooms[0], RoomEvent::Topic { by, topic, changed: true, .. } if by == "alice" && topic == "release  friday"),
        "the topic is on one line: {rooms:?}"
    );
    assert!(matches!(
        rooms[1],
        RoomEvent::Mode {
            mode: RoomMode::Moderated,
            on: true,
            ..
        }
    ));
    assert!(
        matches!(rooms[2], RoomEvent::Member { nick, change: MemberChange::Op, .. } if nick == "bob")
    );
    let info = world.core("bob").room("#dev").expect("in").clone();
    assert_eq!(info.topic, "release  friday");
    assert!(info.modes.moderated);
    assert_eq!(info.role, Role::Op, "bob knows he is an operator now");
    // Asking shows the topic, not as a change.
    world
        .core("bob")
        .room_command(&ClientMsg::Topic {
            room: "#dev".into(),
            topic: None,
        })
        .expect("up");
    world.pump();
    let bob = world.events("bob");
    assert!(
        matches!(
            room_events(&bob).as_slice(),
            [RoomEvent::Topic { changed: false, .. }]
        ),
        "{bob:?}"
    );
}

#[test]
fn a_kick_closes_the_room_for_the_kicked_and_tells_the_others() {
    let mut world = dev();
    world.connect("carol");
    join(&mut world, "carol", "#dev");
    world.events("alice");
    world.events("bob");
    world
        .core("alice")
        .room_command(&ClientMsg::Kick {
            room: "#dev".into(),
            nick: "bob".into(),
            reason: "spam".into(),
        })
        .expect("up");
    world.pump();
    let bob = world.events("bob");
    assert!(
        matches!(room_events(&bob).as_slice(), [RoomEvent::Kicked { me: true, by, reason, .. }] if by == "alice" && reason == "spam"),
        "{bob:?}"
    );
    assert!(world.core("bob").rooms().is_empty());
    let carol = world.events("carol");
    assert!(matches!(
        room_events(&carol).as_slice(),
        [RoomEvent::Kicked { me: false, .. }]
    ));
    assert_eq!(world.core("carol").room("#dev").map(|r| r.members), Some(2));
    // Bob cannot kick: the error names the room and what he tried.
    world
        .core("carol")
        .room_command(&ClientMsg::Kick {
            room: "#dev".into(),
            nick: "alice".into(),
            reason: String::new(),
        })
        .expect("up");
    world.pump();
    let carol = world.events("carol");
    assert_eq!(
        room_events(&carol),
        [&RoomEvent::Error {
            room: "#dev".into(),
            doing: Some("kick from"),
            code: ErrorCode::NOT_OP,
            detail: "not-op".into()
        }]
    );
}

#[test]
fn parting_closes_the_room_and_the_lobby_cannot_be_left() {
    let mut world = dev();
    world
        .core("bob")
        .room_command(&ClientMsg::Part {
            room: "#dev".into(),
            reason: "bye".into(),
        })
        .expect("up");
    world.pump();
    let bob = world.events("bob");
    assert!(
        matches!(room_events(&bob).as_slice(), [RoomEvent::Parted { me: true, reason, .. }] if reason == "bye")
    );
    assert!(world.core("bob").rooms().is_empty());
    let alice = world.events("alice");
    assert!(
        matches!(room_events(&alice).as_slice(), [RoomEvent::Parted { me: false, nick, .. }] if nick == "bob")
    );
    world
        .core("bob")
        .room_command(&ClientMsg::Part {
            room: LOBBY.into(),
            reason: String::new(),
        })
        .expect("up");
    world.pump();
    let bob = world.events("bob");
    assert!(matches!(
        room_events(&bob).as_slice(),
        [RoomEvent::Error {
            code: ErrorCode::LOBBY_FIXED,
            doing: Some("leave"),
            ..
        }]
    ));
}

#[test]
fn names_and_the_room_list_come_only_when_asked() {
    let mut world = dev();
    world
        .core("bob")
        .room_command(&ClientMsg::Names {
            room: "#dev".into(),
        })
        .expect("up");
    world
        .core("bob")
        .room_command(&ClientMsg::List {
            after: String::new(),
        })
        .expect("up");
    world.pump();
    let bob = world.events("bob");
    let rooms = room_events(&bob);
    assert!(
        matches!(rooms[0], RoomEvent::Names { members, complete: true, .. } if members.len() == 2)
    );
    assert!(
        matches!(rooms[1], RoomEvent::List { rooms, next } if rooms.len() == 1 && next.is_empty())
    );
}

/// A core logged in from a script, for frames only a hostile or a real server sends.
fn scripted(nick: &str) -> (Core, Instant) {
    let t0 = Instant::now();
    let mut core = Core::new(config(nick), t0);
    transmitted(&mut core, t0);
    core.receive(
        &frames(&[
            ServerMsg::Welcome {
                nick: nick.into(),
                server: "s".into(),
                online: 1,
                max_text_len: 4096,
                rate_burst: 20,
                rate_per_sec: 10,
            },
            ServerMsg::Users {
                nicks: vec![nick.into()],
                last: true,
            },
        ]),
        t0,
    );
    assert!(matches!(core.poll_login(), Some(Ok(_))));
    (core, t0)
}

fn entered(room: &str, seen: u64) -> ServerMsg {
    ServerMsg::Entered {
        room: room.into(),
        topic: String::new(),
        topic_by: String::new(),
        topic_ts: 0,
        modes: Modes::default(),
        members: 3,
        role: Role::Member,
        seen,
        created: false,
    }
}

fn history(room: &str, id: u64, from: &str) -> ServerMsg {
    ServerMsg::History {
        id,
        ts: id * 10,
        room: room.into(),
        from: from.into(),
        text: format!("line {id}"),
        action: false,
    }
}

#[test]
fn the_new_marker_goes_before_the_first_line_after_seen() {
    let (mut core, t0) = scripted("alice");
    core.receive(
        &frames(&[
            entered("#dev", 11),
            history("#dev", 10, "bob"),
            history("#dev", 11, "bob"),
            history("#dev", 12, "bob"),
            history("#dev", 13, "bob"),
        ]),
        t0,
    );
    let events = drain(&mut core, t0);
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::Room(RoomEvent::Entered { .. }) => "entered".into(),
            Event::Room(RoomEvent::NewLines { .. }) => "new".into(),
            Event::History(l) => l.id.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["entered", "10", "11", "new", "12", "13"]);
    // All new (a first join, or nothing seen yet): nothing to separate, no marker.
    core.receive(
        &frames(&[entered("#ops", 0), history("#ops", 20, "bob")]),
        t0,
    );
    let events = drain(&mut core, t0);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Room(RoomEvent::NewLines { .. }))),
        "{events:?}"
    );
}

#[test]
fn joining_a_room_we_are_in_does_not_show_its_lines_again() {
    // Found by a new user: /join #race while in it showed rb 1..rb 10 live, then again as
    // history.
    let (mut core, t0) = scripted("alice");
    let live = |id: u64| ServerMsg::Public {
        room: "#dev".into(),
        action: false,
        id,
        ts: id * 10,
        from: "bob".into(),
        text: format!("line {id}"),
    };
    core.receive(
        &frames(&[
            entered("#dev", 0),
            history("#dev", 1, "bob"),
            history("#dev", 2, "bob"),
            live(3),
            entered("#dev", 0),
            history("#dev", 1, "bob"),
            history("#dev", 2, "bob"),
            history("#dev", 3, "bob"),
            live(4),
        ]),
        t0,
    );
    let shown: Vec<String> = drain(&mut core, t0)
        .iter()
        .filter_map(|e| match e {
            Event::History(l) => Some(format!("history {}", l.id)),
            Event::Public(l) => Some(format!("live {}", l.id)),
            _ => None,
        })
        .collect();
    assert_eq!(shown, ["history 1", "history 2", "live 3", "live 4"]);
}

#[test]
fn history_sent_again_after_a_reconnect_is_shown_once_per_room() {
    let mut cfg = config("alice");
    cfg.reconnects = true;
    let state = cfg.state.clone();
    let t0 = Instant::now();
    let login = |core: &mut Core| {
        core.receive(
            &frames(&[
                ServerMsg::Welcome {
                    nick: "alice".into(),
                    server: "s".into(),
                    online: 1,
                    max_text_len: 4096,
                    rate_burst: 20,
                    rate_per_sec: 10,
                },
                ServerMsg::Users {
                    nicks: vec!["alice".into()],
                    last: true,
                },
                entered("#dev", 0),
                history("#dev", 5, "bob"),
                // Same id and time in another room: another line (per-room memory).
                history("#ops", 5, "bob"),
            ]),
            t0,
        );
    };
    let mut core = Core::new(cfg.clone(), t0);
    login(&mut core);
    let first: Vec<Event> = drain(&mut core, t0)
        .into_iter()
        .filter(|e| matches!(e, Event::History(_)))
        .collect();
    assert_eq!(first.len(), 2, "{first:?}");
    let mut again = Core::new(cfg, t0);
    login(&mut again);
    let second: Vec<Event> = drain(&mut again, t0)
        .into_iter()
        .filter(|e| matches!(e, Event::History(_)))
        .collect();
    assert!(second.is_empty(), "{second:?}");
    drop(state);
}

#[test]
fn room_frames_with_bad_room_names_or_nicks_are_dropped_and_texts_put_on_one_line() {
    let (mut core, t0) = scripted("alice");
    core.receive(
        &frames(&[
            entered("dev", 0),
            entered("#a b", 0),
            ServerMsg::Public {
                id: 1,
                ts: 1,
                room: "#\u{1b}[2J".into(),
                from: "bob".into(),
                text: "x".into(),
                action: false,
            },
            ServerMsg::Joined {
                ts: 1,
                room: "#dev".into(),
                nick: "x".repeat(500),
            },
            // News of a room we are not in.
            ServerMsg::Kicked {
                ts: 1,
                room: "#elsewhere".into(),
                nick: "alice".into(),
                by: "mallory".into(),
                reason: String::new(),
            },
            ServerMsg::Topic {
                ts: 1,
                room: "#elsewhere".into(),
                by: "mallory".into(),
                topic: "forged".into(),
            },
            // Names nobody asked for.
            ServerMsg::Names {
                room: "#zzz".into(),
                members: Vec::new(),
                last: true,
            },
            // A list nobody asked for.
            ServerMsg::Rooms {
                rooms: Vec::new(),
                next: String::new(),
            },
            ServerMsg::Away {
                nick: "bob".into(),
                message: "gone\nfishing".into(),
            },
            ServerMsg::RoomError {
                room: "#x".into(),
                code: ErrorCode::BANNED,
                detail: "a\u{2028}b".into(),
            },
        ]),
        t0,
    );
    let events = drain(&mut core, t0);
    assert_eq!(
        events,
        [
            Event::Room(RoomEvent::Away {
                nick: "bob".into(),
                message: "gone fishing".into(),
                me: false
            }),
            Event::Room(RoomEvent::Error {
                room: "#x".into(),
                doing: None,
                code: ErrorCode::BANNED,
                detail: "a b".into()
            }),
        ]
    );
    assert!(core.rooms().is_empty());
}

#[test]
fn an_away_user_is_told_after_a_private_line() {
    let mut world = World::new();
    world.connect("alice");
    world.connect("bob");
    world
        .core("bob")
        .room_command(&ClientMsg::Away {
            message: "lunch".into(),
        })
        .expect("up");
    world.pump();
    let bob = world.events("bob");
    assert!(
        matches!(room_events(&bob).as_slice(), [RoomEvent::Away { me: true, message, .. }] if message == "lunch")
    );
    // Plain (the real server says a user is away after a `Private`, not after a `Relay`).
    let now = world.now;
    world.core("alice").insecure("bob", now).expect("up");
    world.pump();
    world.events("alice");
    world.core("alice").private("bob", "hi", now).expect("up");
    world.pump();
    let alice = world.events("alice");
    assert!(
        matches!(alice.as_slice(), [Event::Sent { .. }, Event::Room(RoomEvent::Away { nick, message, me: false })] if nick == "bob" && message == "lunch"),
        "{alice:?}"
    );
}

#[test]
fn ignored_nicks_lines_are_hidden_but_not_their_notices() {
    let mut world = dev();
    world
        .client("bob")
        .config
        .state
        .ignore("alice", true)
        .expect("valid");
    world
        .core("alice")
        .say("#dev", "can you see me", false)
        .expect("up");
    world.core("alice").public("or here").expect("up");
    let now = world.now;
    world.core("alice").private("bob", "psst", now).expect("up");
    world
        .core("alice")
        .room_command(&ClientMsg::Topic {
            room: "#dev".into(),
            topic: Some("t".into()),
        })
        .expect("up");
    world.pump();
    let bob = world.events("bob");
    assert!(
        !bob.iter()
            .any(|e| matches!(e, Event::Public(_) | Event::Private(_))),
        "{bob:?}"
    );
    assert!(matches!(
        room_events(&bob).as_slice(),
        [RoomEvent::Topic { .. }]
    ));
    world
        .client("bob")
        .config
        .state
        .ignore("ALICE", false)
        .expect("valid");
    world.core("alice").say("#dev", "now?", false).expect("up");
    world.pump();
    assert!(world
        .events("bob")
        .iter()
        .any(|e| matches!(e, Event::Public(l) if l.text == "now?")));
}

#[test]
fn the_ignore_list_is_kept_in_an_owner_only_file() {
    let dir = std::env::temp_dir().join(format!("mm-ignore-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("ignored");
    let _ = std::fs::remove_file(&file);
    let state = crate::ClientState::new();
    state.load_ignored(&file).expect("missing is empty");
    assert_eq!(state.ignore("Eve", true), Ok(true));
    assert_eq!(state.ignore("eve", true), Ok(false));
    assert!(state.ignore("not a nick", true).is_err());
    let again = crate::ClientState::new();
    again.load_ignored(&file).expect("readable");
    assert!(again.is_ignored("EVE"));
    assert_eq!(again.ignored(), ["eve"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_ignored_users_invitations_are_hidden_too() {
    let (mut core, t0) = scripted("bob");
    core.config.state.ignore("mallory", true).expect("valid");
    core.receive(
        &frames(&[
            ServerMsg::Invited {
                ts: 1,
                room: "#spam".into(),
                by: "mallory".into(),
                nick: "bob".into(),
            },
            ServerMsg::Invited {
                ts: 2,
                room: "#dev".into(),
                by: "alice".into(),
                nick: "bob".into(),
            },
        ]),
        t0,
    );
    let mut invited = Vec::new();
    while let Some(item) = core.poll_event(t0) {
        if let Event::Room(RoomEvent::Invited { room, .. }) = item {
            invited.push(room);
        }
    }
    assert_eq!(invited, ["#dev"]);
}
