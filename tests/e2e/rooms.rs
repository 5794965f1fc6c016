//! Rooms over real TLS with raw protocol frames: join, part, list, names, topic, modes,
//! invitations, kicks and bans as the server answers them, and rooms with their history
//! after a restart. (Through the `mm` binary: `cli.rs` and `tui.rs`.)

use mm_common::protocol::{ClientMsg, ErrorCode, MemberChange, Role, RoomMode, ServerMsg, LOBBY};
use mm_server::config::Limits;
use mm_tests::{RawTls, TestServer};

/// Reads until `pred` holds; returns what it matched. Panics (with what came) if the server
/// closes first.
async fn until(raw: &mut RawTls, what: &str, pred: impl Fn(&ServerMsg) -> bool) -> ServerMsg {
    let mut seen = Vec::new();
    loop {
        match raw.read().await {
            Some(msg) if pred(&msg) => return msg,
            Some(msg) => seen.push(msg),
            None => panic!("closed while waiting for {what}; saw {seen:?}"),
        }
    }
}

fn join(room: &str) -> ClientMsg {
    ClientMsg::Join { room: room.into() }
}

fn line(room: &str, text: &str) -> ClientMsg {
    ClientMsg::Public {
        room: room.into(),
        text: text.into(),
        action: false,
    }
}

async fn room_error(raw: &mut RawTls) -> (ErrorCode, String) {
    match until(raw, "a room error", |m| {
        matches!(m, ServerMsg::RoomError { .. })
    })
    .await
    {
        ServerMsg::RoomError { code, detail, .. } => (code, detail),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn three_users_talk_in_a_room_while_the_lobby_goes_on_and_only_members_hear_it() {
    let server = TestServer::start().await;
    let mut alice = RawTls::login(&server, "alice").await;
    let mut bob = RawTls::login(&server, "bob").await;
    let mut carol = RawTls::login(&server, "carol").await;
    alice.send(&join("#dev")).await;
    let entered = until(&mut alice, "Entered", |m| {
        matches!(m, ServerMsg::Entered { .. })
    })
    .await;
    assert!(matches!(
        entered,
        ServerMsg::Entered {
            role: Role::Owner,
            created: true,
            ..
        }
    ));
    bob.send(&join("#DEV")).await;
    until(
        &mut bob,
        "Entered",
        |m| matches!(m, ServerMsg::Entered { room, .. } if room == "#dev"),
    )
    .await;
    until(
        &mut alice,
        "bob joined",
        |m| matches!(m, ServerMsg::Joined { room, nick, .. } if room == "#dev" && nick == "bob"),
    )
    .await;
    alice.send(&line("#dev", "dev talk")).await;
    until(&mut alice, "Sent", |m| matches!(m, ServerMsg::Sent { .. })).await;
    carol.send(&line(LOBBY, "lobby talk")).await;
    until(&mut carol, "Sent", |m| matches!(m, ServerMsg::Sent { .. })).await;
    // Bob hears both, each in its room; carol never hears #dev.
    until(&mut bob, "the #dev line", |m| {
        matches!(m, ServerMsg::Public { room, text, .. } if room == "#dev" && text == "dev talk")
    })
    .await;
    until(&mut bob, "the lobby line", |m| {
        matches!(m, ServerMsg::Public { room, text, .. } if room == LOBBY && text == "lobby talk")
    })
    .await;
    carol.send(&line("#dev", "let me in")).await;
    let refused = until(&mut carol, "an answer", |m| {
        matches!(
            m,
            ServerMsg::Error { .. } | ServerMsg::Sent { .. } | ServerMsg::Public { .. }
        )
    })
    .await;
    assert!(
        matches!(
            refused,
            ServerMsg::Error {
                code: ErrorCode::NOT_IN_ROOM,
                fatal: false,
                ..
            }
        ),
        "{refused:?}"
    );
    // The list shows it with its members and topic; names mark the owner.
    alice
        .send(&ClientMsg::Topic {
            room: "#dev".into(),
            topic: Some("rust and tea".into()),
        })
        .await;
    until(
        &mut bob,
        "the topic",
        |m| matches!(m, ServerMsg::Topic { topic, .. } if topic == "rust and tea"),
    )
    .await;
    carol
        .send(&ClientMsg::List {
            after: String::new(),
        })
        .await;
    let list = until(&mut carol, "Rooms", |m| {
        matches!(m, ServerMsg::Rooms { .. })
    })
    .await;
    assert!(
        matches!(&list, ServerMsg::Rooms { rooms, next } if next.is_empty() && rooms.len() == 1 && rooms[0].members == 2 && rooms[0].topic == "rust and tea"),
        "{list:?}"
    );
    carol
        .send(&ClientMsg::Names {
            room: "#dev".into(),
        })
        .await;
    let names = until(&mut carol, "Names", |m| {
        matches!(m, ServerMsg::Names { .. })
    })
    .await;
    let ServerMsg::Names {
        members,
        last: true,
        ..
    } = names
    else {
        panic!("{names:?}")
    };
    let roles: Vec<(String, Role)> = members.iter().map(|m| (m.nick.clone(), m.role)).collect();
    assert_eq!(
        roles,
        [("alice".into(), Role::Owner), ("bob".into(), Role::Member)]
    );
    // Bob leaves: everyone in the room (bob included) hears it, with the reason.
    bob.send(&ClientMsg::Part {
        room: "#dev".into(),
        reason: "lunch".into(),
    })
    .await;
    for raw in [&mut bob, &mut alice] {
        until(raw, "Parted", |m| {
            matches!(m, ServerMsg::Parted { nick, reason, .. } if nick == "bob" && reason == "lunch")
        })
        .await;
    }
}

#[tokio::test]
async fn moderation_invite_only_kick_and_ban_are_enforced_with_clear_errors() {
    let server = TestServer::start().await;
    let mut alice = RawTls::login(&server, "alice").await;
    let mut bob = RawTls::login(&server, "bob").await;
    alice.send(&join("#ops")).await;
    until(&mut alice, "Entered", |m| {
        matches!(m, ServerMsg::Entered { .. })
    })
    .await;
    alice
        .send(&ClientMsg::Mode {
            room: "#ops".into(),
            mode: RoomMode::InviteOnly,
            on: true,
        })
        .await;
    until(&mut alice, "+i", |m| {
        matches!(m, ServerMsg::ModeChanged { on: true, .. })
    })
    .await;
    bob.send(&join("#ops")).await;
    let (code, detail) = room_error(&mut bob).await;
    assert_eq!(code, ErrorCode::INVITE_ONLY);
    assert!(detail.contains("invite"), "{detail}");
    alice
        .send(&ClientMsg::Invite {
            room: "#ops".into(),
            nick: "bob".into(),
        })
        .await;
    until(
        &mut bob,
        "the invitation",
        |m| matches!(m, ServerMsg::Invited { by, .. } if by == "alice"),
    )
    .await;
    bob.send(&join("#ops")).await;
    until(&mut bob, "Entered", |m| {
        matches!(m, ServerMsg::Entered { .. })
    })
    .await;
    // Not an operator: bob cannot kick.
    bob.send(&ClientMsg::Kick {
        room: "#ops".into(),
        nick: "alice".into(),
        reason: String::new(),
    })
    .await;
    assert_eq!(room_error(&mut bob).await.0, ErrorCode::NOT_OP);
    // Moderated: bob's line is refused until voiced.
    alice
        .send(&ClientMsg::Mode {
            room: "#ops".into(),
            mode: RoomMode::Moderated,
            on: true,
        })
        .await;
    until(&mut bob, "+m", |m| {
        matches!(
            m,
            ServerMsg::ModeChanged {
                mode: RoomMode::Moderated,
                ..
            }
        )
    })
    .await;
    bob.send(&line("#ops", "hello?")).await;
    let answer = until(&mut bob, "an answer", |m| {
        matches!(m, ServerMsg::Error { .. } | ServerMsg::Sent { .. })
    })
    .await;
    assert!(
        matches!(
            answer,
            ServerMsg::Error {
                code: ErrorCode::MODERATED,
                ..
            }
        ),
        "{answer:?}"
    );
    // Banned: removed, and cannot come back, invited or not.
    alice
        .send(&ClientMsg::Member {
            room: "#ops".into(),
            nick: "bob".into(),
            change: MemberChange::Ban,
        })
        .await;
    until(
        &mut bob,
        "Kicked",
        |m| matches!(m, ServerMsg::Kicked { nick, .. } if nick == "bob"),
    )
    .await;
    bob.send(&join("#ops")).await;
    assert_eq!(room_error(&mut bob).await.0, ErrorCode::BANNED);
    // A bad room name is refused in the protocol's words, never echoed unsafely.
    bob.send(&join("#no spaces")).await;
    let (code, detail) = room_error(&mut bob).await;
    assert_eq!(code, ErrorCode::INVALID_ROOM);
    assert!(detail.contains("letters, digits"), "{detail}");
    bob.send(&ClientMsg::Part {
        room: LOBBY.into(),
        reason: String::new(),
    })
    .await;
    assert_eq!(room_error(&mut bob).await.0, ErrorCode::LOBBY_FIXED);
}

#[tokio::test]
async fn a_user_in_fifty_rooms_gets_them_all_back_at_login_and_the_fifty_first_is_refused() {
    let server = TestServer::start_with(Limits {
        room_creations_per_user: 100,
        rate_burst: 200,
        ..Limits::default()
    })
    .await;
    let mut alice = RawTls::login(&server, "alice").await;
    for i in 0..50 {
        alice.send(&join(&format!("#r{i}"))).await;
        until(&mut alice, "Entered", |m| {
            matches!(m, ServerMsg::Entered { .. })
        })
        .await;
    }
    alice.send(&join("#r50")).await;
    let (code, detail) = room_error(&mut alice).await;
    assert_eq!(code, ErrorCode::TOO_MANY_ROOMS);
    assert!(detail.contains("50"), "{detail}");
    alice.send(&ClientMsg::Quit).await;
    alice.read_to_close().await;
    let mut again = RawTls::login(&server, "alice").await;
    let mut rooms = Vec::new();
    while rooms.len() < 50 {
        if let ServerMsg::Entered { room, .. } = until(&mut again, "Entered", |m| {
            matches!(m, ServerMsg::Entered { .. })
        })
        .await
        {
            rooms.push(room);
        }
    }
    rooms.sort();
    rooms.dedup();
    assert_eq!(rooms.len(), 50);
}

#[tokio::test]
async fn rooms_membership_topics_bans_and_history_survive_a_restart() {
    let server = TestServer::start().await;
    let mut alice = RawTls::login(&server, "alice").await;
    let mut bob = RawTls::login(&server, "bob").await;
    let mut carol = RawTls::login(&server, "carol").await;
    alice.send(&join("#dev")).await;
    until(&mut alice, "Entered", |m| {
        matches!(m, ServerMsg::Entered { .. })
    })
    .await;
    for raw in [&mut bob, &mut carol] {
        raw.send(&join("#dev")).await;
        until(raw, "Entered", |m| matches!(m, ServerMsg::Entered { .. })).await;
    }
    alice
        .send(&ClientMsg::Topic {
            room: "#dev".into(),
            topic: Some("kept across restarts".into()),
        })
        .await;
    alice
        .send(&ClientMsg::Member {
            room: "#dev".into(),
            nick: "carol".into(),
            change: MemberChange::Ban,
        })
        .await;
    until(&mut carol, "Kicked", |m| {
        matches!(m, ServerMsg::Kicked { .. })
    })
    .await;
    for text in ["one", "two"] {
        alice.send(&line("#dev", text)).await;
        until(&mut alice, "Sent", |m| matches!(m, ServerMsg::Sent { .. })).await;
    }
    alice.send(&line(LOBBY, "lobby line")).await;
    until(&mut alice, "Sent", |m| matches!(m, ServerMsg::Sent { .. })).await;
    for raw in [&mut alice, &mut bob, &mut carol] {
        raw.send(&ClientMsg::Quit).await;
        raw.read_to_close().await;
    }
    let server = server.restart().await;
    let mut bob = RawTls::login(&server, "bob").await;
    // Lobby history first, then #dev: Entered (topic kept), then its lines.
    let mut seen = Vec::new();
    loop {
        let msg = bob.read().await.expect("the server closed");
        let done = matches!(&msg, ServerMsg::History { text, room, .. } if text == "two" && room == "#dev");
        seen.push(msg);
        if done {
            break;
        }
    }
    let lobby = seen
        .iter()
        .position(|m| matches!(m, ServerMsg::History { room, text, .. } if room == LOBBY && text == "lobby line"));
    let entered = seen.iter().position(|m| {
        matches!(m, ServerMsg::Entered { room, topic, members: 2, role: Role::Member, .. } if room == "#dev" && topic == "kept across restarts")
    });
    let one = seen.iter().position(
        |m| matches!(m, ServerMsg::History { room, text, .. } if room == "#dev" && text == "one"),
    );
    assert!(
        lobby < entered && entered < one && lobby.is_some(),
        "{seen:?}"
    );
    // The ban holds after the restart.
    let mut carol = RawTls::login(&server, "carol").await;
    carol.send(&join("#dev")).await;
    assert_eq!(room_error(&mut carol).await.0, ErrorCode::BANNED);
}

#[tokio::test]
async fn an_operator_deletes_a_room_while_the_server_runs_and_its_members_are_told() {
    let server = TestServer::start().await;
    let mut alice = RawTls::login(&server, "alice").await;
    alice.send(&join("#tmp")).await;
    until(&mut alice, "Entered", |m| {
        matches!(m, ServerMsg::Entered { .. })
    })
    .await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_e2e-mm-server"))
        .arg("--data")
        .arg(server.data.path())
        .args(["rooms", "delete", "#tmp"])
        .output()
        .await
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("the running server applied it"), "{said}");
    until(
        &mut alice,
        "Kicked",
        |m| matches!(m, ServerMsg::Kicked { room, by, .. } if room == "#tmp" && by.is_empty()),
    )
    .await;
    alice.send(&line("#tmp", "anyone?")).await;
    let answer = until(&mut alice, "an answer", |m| {
        matches!(m, ServerMsg::Error { .. } | ServerMsg::Sent { .. })
    })
    .await;
    assert!(
        matches!(
            answer,
            ServerMsg::Error {
                code: ErrorCode::NO_SUCH_ROOM,
                ..
            }
        ),
        "{answer:?}"
    );
}

#[tokio::test]
async fn room_commands_over_the_rate_limit_are_told_so_not_dropped_silently() {
    let server = TestServer::start().await; // default limits: a burst of 20
    let mut alice = RawTls::login(&server, "alice").await;
    for _ in 0..30 {
        alice
            .send(&ClientMsg::List {
                after: String::new(),
            })
            .await;
    }
    let (mut lists, mut limited) = (0, 0);
    while lists + limited < 30 {
        match alice.read().await.expect("the server closed") {
            ServerMsg::Rooms { .. } => lists += 1,
            ServerMsg::RoomError {
                code: ErrorCode::RATE_LIMITED,
                ..
            } => limited += 1,
            _ => {}
        }
    }
    assert!(
        limited >= 5 && lists >= 20,
        "{lists} lists, {limited} refusals"
    );
}
