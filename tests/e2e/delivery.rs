//! Nothing accepted is lost: personal lines stay on the server until the recipient's client
//! acknowledges them (`Received`), whatever happens to the links in between; a graceful
//! shutdown delivers and answers everything before it closes, and never resets a connection.
//!
//! These tests speak the protocol directly (`RawTls`) so that they decide exactly when a client
//! reads, acknowledges or dies.

use std::time::Duration;

use mm_common::frame::ReadError;
use mm_common::protocol::{ClientMsg, ErrorCode, ServerMsg, PROTOCOL_VERSION};
use mm_server::Limits;
use mm_tests::{identity_for, RawTls, TestServer, WAIT};

/// Kills a connection the hard way: a TCP reset, no close_notify, nothing read.
fn reset(raw: RawTls) {
    let (tcp, _) = raw.stream.get_ref();
    // A zero linger makes close send a reset and never blocks, which is what this wants.
    #[allow(deprecated)]
    tcp.set_linger(Some(Duration::ZERO)).unwrap();
    drop(raw);
}

/// Sends a private line from `raw` and returns the answer.
async fn private(raw: &mut RawTls, to: &str, text: &str) -> ServerMsg {
    raw.send(&ClientMsg::Private {
        to: to.into(),
        text: text.into(),
    })
    .await;
    loop {
        match raw.read().await.unwrap() {
            ServerMsg::Joined { .. } | ServerMsg::Left { .. } => {}
            answer => return answer,
        }
    }
}

/// Reads until a `Pong` with `token`, returning the personal lines seen before it.
async fn personal_lines_until_pong(raw: &mut RawTls, token: u64) -> Vec<ServerMsg> {
    raw.send(&ClientMsg::Ping { token }).await;
    let mut seen = Vec::new();
    loop {
        match raw.read().await.unwrap() {
            ServerMsg::Pong { token: t } if t == token => return seen,
            msg @ (ServerMsg::Offline { .. }
            | ServerMsg::Private { .. }
            | ServerMsg::Relay { .. }) => seen.push(msg),
            ServerMsg::History { .. } | ServerMsg::Joined { .. } | ServerMsg::Left { .. } => {}
            other => panic!("{other:?}"),
        }
    }
}

fn id_of(msg: &ServerMsg) -> u64 {
    match msg {
        ServerMsg::Offline { id, .. }
        | ServerMsg::Private { id, .. }
        | ServerMsg::Relay { id, .. }
        | ServerMsg::Sent { id, .. }
        | ServerMsg::Queued { id, .. } => *id,
        other => panic!("no id: {other:?}"),
    }
}

#[tokio::test]
async fn offline_mail_survives_a_link_that_dies_before_reading_it() {
    let server = TestServer::start().await;
    reset(RawTls::login(&server, "bob").await); // registers bob
    let mut alice = RawTls::login(&server, "alice").await;
    let mut queued = Vec::new();
    for text in ["one", "two", "three"] {
        let answer = private(&mut alice, "bob", text).await;
        assert!(matches!(answer, ServerMsg::Queued { .. }), "{answer:?}");
        queued.push(id_of(&answer));
    }
    // bob's link dies right after the login, before a byte of the mail was read.
    reset(RawTls::login(&server, "bob").await);
    // And again, this time after reading it all but without acknowledging it.
    let mut bob = RawTls::login(&server, "bob").await;
    let seen = personal_lines_until_pong(&mut bob, 1).await;
    assert_eq!(seen.iter().map(id_of).collect::<Vec<_>>(), queued);
    reset(bob);

    let mut bob = RawTls::login(&server, "bob").await;
    let seen = personal_lines_until_pong(&mut bob, 2).await;
    let texts: Vec<_> = seen
        .iter()
        .map(|m| match m {
            ServerMsg::Offline { from, text, .. } => format!("{from}: {text}"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(texts, ["alice: one", "alice: two", "alice: three"]);
    assert_eq!(
        seen.iter().map(id_of).collect::<Vec<_>>(),
        queued,
        "same ids"
    );
    // Acknowledging the first two keeps only the third.
    bob.send(&ClientMsg::Received { up_to: queued[1] }).await;
    assert!(personal_lines_until_pong(&mut bob, 30).await.is_empty()); // it was read
    reset(bob);
    let mut bob = RawTls::login(&server, "bob").await;
    let seen = personal_lines_until_pong(&mut bob, 3).await;
    assert_eq!(seen.iter().map(id_of).collect::<Vec<_>>(), [queued[2]]);
    bob.send(&ClientMsg::Received { up_to: queued[2] }).await;
    bob.send(&ClientMsg::Quit).await;
    bob.read_to_close().await;
    let mut bob = RawTls::login(&server, "bob").await;
    assert!(personal_lines_until_pong(&mut bob, 4).await.is_empty());
}

#[tokio::test]
async fn lines_to_an_online_user_whose_link_dies_unacknowledged_are_delivered_again() {
    let server = TestServer::start().await;
    let mut bob = RawTls::login(&server, "bob").await;
    let mut alice = RawTls::login(&server, "alice").await;
    let answer = private(&mut alice, "bob", "live").await;
    assert!(matches!(answer, ServerMsg::Sent { .. }), "{answer:?}");
    alice
        .send(&ClientMsg::Relay {
            to: "bob".into(),
            payload: vec![7, 7, 7],
        })
        .await;
    let relay_answer = alice.read().await.unwrap();
    assert!(
        matches!(relay_answer, ServerMsg::Sent { .. }),
        "{relay_answer:?}"
    );
    // bob got both live, but his link dies before he says so.
    let seen = personal_lines_until_pong(&mut bob, 1).await;
    assert_eq!(
        seen.iter().map(id_of).collect::<Vec<_>>(),
        [id_of(&answer), id_of(&relay_answer)]
    );
    reset(bob);

    let mut bob = RawTls::login(&server, "bob").await;
    let seen = personal_lines_until_pong(&mut bob, 2).await;
    assert!(
        matches!(&seen[..], [
            ServerMsg::Offline { text, from, .. },
            ServerMsg::Relay { payload, from: relay_from, .. },
        ] if text == "live" && from == "alice" && payload == &[7, 7, 7] && relay_from == "alice"),
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().map(id_of).collect::<Vec<_>>(),
        [id_of(&answer), id_of(&relay_answer)],
        "redelivered with the ids they had"
    );
}

#[tokio::test]
async fn a_silently_dead_link_keeps_its_lines_for_the_next_login() {
    // No FIN, no pongs: the server finds out only by its idle timeout (shortened here; the
    // rules are the default ones otherwise).
    let server = TestServer::start_with(Limits {
        ping_interval: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let mut alice = RawTls::login(&server, "alice").await;
    let silent = RawTls::login(&server, "bob").await; // never reads or writes again
    let answer = private(&mut alice, "bob", "are you there?").await;
    assert!(matches!(answer, ServerMsg::Sent { .. }), "{answer:?}");
    // The server drops bob for silence; the line must not go with him.
    let left = tokio::time::timeout(WAIT, async {
        loop {
            match alice.read().await.unwrap() {
                ServerMsg::Left { nick, .. } if nick == "bob" => break,
                ServerMsg::Ping { token } => alice.send(&ClientMsg::Pong { token }).await,
                _ => {}
            }
        }
    })
    .await;
    assert!(left.is_ok(), "bob was never dropped");
    drop(silent);
    let mut bob = RawTls::login(&server, "bob").await;
    let seen = personal_lines_until_pong(&mut bob, 1).await;
    assert!(
        matches!(&seen[..], [ServerMsg::Offline { text, id, .. }] if text == "are you there?" && *id == id_of(&answer)),
        "{seen:?}"
    );
}

#[tokio::test]
async fn an_older_client_is_told_which_version_to_speak() {
    let server = TestServer::start().await;
    let mut raw = RawTls::connect_as(&server, Some(&identity_for("old"))).await;
    raw.send(&ClientMsg::Hello {
        version: 2,
        nick: "old".into(),
    })
    .await;
    match raw.read().await {
        Some(ServerMsg::Error {
            code,
            fatal: true,
            detail,
        }) => {
            assert_eq!(code, ErrorCode::UNSUPPORTED_VERSION);
            assert!(
                detail.contains(&format!("version {PROTOCOL_VERSION}")),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Reads everything until the server closes, and says whether it closed cleanly (TLS
/// close_notify) rather than with a reset or a cut.
async fn read_until_closed(raw: &mut RawTls) -> (Vec<ServerMsg>, Result<(), std::io::Error>) {
    let mut seen = Vec::new();
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match raw.read_frame().await {
                Ok(Some(payload)) => seen.push(ServerMsg::decode(&payload).unwrap()),
                Ok(None) => return Ok(()),
                Err(ReadError::Io(e)) => return Err(e),
                // A bad frame, or one cut short: not a clean close either.
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
    })
    .await
    .expect("the server did not close");
    (seen, end)
}

/// The server sent `Shutdown` and then closed cleanly (close_notify, no reset).
fn said_goodbye(seen: &[ServerMsg], end: Result<(), std::io::Error>) {
    assert!(
        seen.iter().any(|m| matches!(m, ServerMsg::Shutdown { .. })),
        "{seen:?}"
    );
    assert!(end.is_ok(), "closed with {end:?}, not cleanly");
}

#[tokio::test]
async fn a_client_that_is_behind_at_shutdown_gets_every_line_then_a_clean_close() {
    let server = TestServer::start_unthrottled().await;
    let mut alice = RawTls::login(&server, "alice").await;
    // A small window: most of what the server writes for bob waits in the server's buffers.
    let mut bob = RawTls::login_with(&server, "bob", Some(4096)).await;
    let _ = alice.read().await; // bob's join
    let text = "y".repeat(4000);
    let mut sent = Vec::new();
    for _ in 0..18 {
        alice
            .send(&ClientMsg::Public {
                room: "#lobby".into(),
                action: false,
                text: text.clone(),
            })
            .await;
    }
    for _ in 0..18 {
        sent.push(id_of(&alice.read().await.unwrap()));
    }
    // bob has read nothing of it. The server stops; bob sends something meanwhile.
    let stopping = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(50)).await;
    bob.send(&ClientMsg::Ping { token: 9 }).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    bob.send(&ClientMsg::Ping { token: 10 }).await; // after the server stopped reading, once
    let (seen, end) = read_until_closed(&mut bob).await;
    let lines: Vec<u64> = seen
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Public { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(lines, sent, "every accepted line, in order");
    said_goodbye(&seen, end);
    stopping.await.unwrap();
}

#[tokio::test]
async fn messages_that_arrive_during_shutdown_are_answered_shutting_down() {
    let server = TestServer::start().await;
    let mut alice = RawTls::login(&server, "alice").await;
    let stopping = tokio::spawn(server.shutdown());
    let mut sent = 0;
    for delay_ms in [0u64, 50, 100, 200] {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        alice
            .send(&ClientMsg::Public {
                room: "#lobby".into(),
                action: false,
                text: format!("late by {delay_ms} ms"),
            })
            .await;
        sent += 1;
    }
    let (seen, end) = read_until_closed(&mut alice).await;
    let answers = seen
        .iter()
        .filter(|m| {
            matches!(
                m,
                ServerMsg::Error {
                    code: ErrorCode::SHUTTING_DOWN,
                    fatal: false,
                    ..
                } | ServerMsg::Sent { .. }
            )
        })
        .count();
    assert_eq!(answers, sent, "every message answered: {seen:?}");
    said_goodbye(&seen, end);
    stopping.await.unwrap();
}

#[tokio::test]
async fn acknowledgements_that_acknowledge_nothing_new_are_a_flood() {
    let server = TestServer::start().await;
    let mut bob = RawTls::login(&server, "bob").await;
    let mut alice = RawTls::login(&server, "alice").await;
    let answer = private(&mut alice, "bob", "one").await;
    assert!(matches!(answer, ServerMsg::Sent { .. }), "{answer:?}");
    assert_eq!(personal_lines_until_pong(&mut bob, 1).await.len(), 1);
    // The first acknowledgement counts (clamped to what bob was given); thousands of repeats
    // are refused like any flood, instead of each costing a store operation.
    let mut flood = Vec::new();
    for _ in 0..2000 {
        flood.extend_from_slice(
            &mm_common::frame::encode(&ClientMsg::Received { up_to: u64::MAX }).unwrap(),
        );
    }
    bob.send_bytes(&flood).await;
    let seen = bob.read_to_close().await;
    assert!(
        matches!(
            seen.last(),
            Some(ServerMsg::Error {
                code: ErrorCode::RATE_LIMITED,
                fatal: true,
                ..
            })
        ),
        "{seen:?}"
    );
    // The acknowledged line is gone; nothing else was touched.
    let mut bob = RawTls::login(&server, "bob").await;
    assert!(personal_lines_until_pong(&mut bob, 2).await.is_empty());
    let answer = private(&mut alice, "bob", "two").await;
    assert!(matches!(answer, ServerMsg::Sent { .. }), "{answer:?}");
    reset(bob);
    let mut bob = RawTls::login(&server, "bob").await;
    let seen = personal_lines_until_pong(&mut bob, 3).await;
    assert!(
        matches!(&seen[..], [ServerMsg::Offline { text, .. }] if text == "two"),
        "{seen:?}"
    );
}
