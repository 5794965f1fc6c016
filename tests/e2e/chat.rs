//! Public and private chat, nicks, presence.

use mm_client::ChatLine;
use mm_client::{ConnectError, Event};
use mm_common::protocol::{
    ClientMsg, ErrorCode, LeaveReason, ServerMsg, MAX_TEXT_LEN, PROTOCOL_VERSION,
};
use mm_tests::TestServer;

#[tokio::test]
async fn public_line_reaches_every_other_user_and_the_sender_gets_an_ack() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut carol = server.client("carol").await;

    alice.client.public("hello everyone").await.unwrap();
    let Event::Sent { id, .. } = alice.next_answer().await else {
        panic!("expected Sent")
    };
    for user in [&mut bob, &mut carol] {
        match user.next_line().await {
            Event::Public(ChatLine {
                room: _,
                action: _,
                id: got,
                from,
                text,
                ts,
                ..
            }) => {
                assert_eq!(
                    (got, from.as_str(), text.as_str()),
                    (id, "alice", "hello everyone")
                );
                assert!(ts > 1_700_000_000_000, "server timestamp in ms: {ts}");
            }
            other => panic!("{other:?}"),
        }
    }
    // No echo to the sender: its next line is bob's, not its own.
    bob.client.public("hi alice").await.unwrap();
    assert!(
        matches!(alice.next_line().await, Event::Public(ChatLine { from, .. }) if from == "bob")
    );
}

#[tokio::test]
async fn lines_from_one_sender_arrive_in_order_across_public_and_private() {
    let server = TestServer::start_unthrottled().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    // Plain private lines (end-to-end ones are relays, ordered the same way: secure.rs).
    alice.client.insecure("bob").await.unwrap();
    for i in 0..50 {
        if i % 3 == 0 {
            alice.client.private("bob", &format!("m{i}")).await.unwrap();
        } else {
            alice.client.public(&format!("m{i}")).await.unwrap();
        }
    }
    for i in 0..50 {
        let (Event::Public(ChatLine { text, .. }) | Event::Private(ChatLine { text, .. })) =
            bob.next_line().await
        else {
            unreachable!()
        };
        assert_eq!(text, format!("m{i}"));
    }
}

#[tokio::test]
async fn private_line_reaches_only_its_recipient() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut carol = server.client("carol").await;

    alice.client.insecure("bob").await.unwrap();
    alice.client.private("BOB", "for bob only").await.unwrap();
    assert!(matches!(alice.next_answer().await, Event::Sent { .. }));
    assert!(
        matches!(bob.next_line().await, Event::Private(ChatLine { from, text, .. }) if from == "alice" && text == "for bob only")
    );
    // carol's next line is the marker sent afterwards, so she never saw the private one.
    alice.client.public("marker").await.unwrap();
    assert!(
        matches!(carol.next_line().await, Event::Public(ChatLine { text, .. }) if text == "marker")
    );
    assert!(
        matches!(bob.next_line().await, Event::Public(ChatLine { text, .. }) if text == "marker")
    );
}

#[tokio::test]
async fn unknown_recipient_is_a_clear_error_and_the_connection_stays_usable() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    // Plain: the server refuses the line (end-to-end, the key directory says there is no
    // such user: secure.rs).
    alice.client.insecure("dave").await.unwrap();
    alice.client.private("dave", "anyone?").await.unwrap();
    alice.expect_refusal(ErrorCode::NO_SUCH_NICK, "dave").await;
    assert!(
        alice.client.insecure("bad nick!").await.is_err(),
        "not a nick"
    );
    alice.client.public("still here").await.unwrap();
    assert!(matches!(alice.next_answer().await, Event::Sent { .. }));
    assert!(
        matches!(bob.next_line().await, Event::Public(ChatLine { text, .. }) if text == "still here")
    );
}

/// Logs in as `nick` with a certificate of its own (not `nick`'s).
async fn try_with_another_key(
    server: &TestServer,
    nick: &str,
) -> Result<(mm_client::Client, mm_client::Events, mm_client::Welcome), ConnectError> {
    let mut opts = server.options(nick);
    opts.certificate = Some(mm_certs::ClientIdentity::generate().unwrap());
    mm_client::connect(&opts).await
}

fn assert_registered_elsewhere(
    result: Result<(mm_client::Client, mm_client::Events, mm_client::Welcome), ConnectError>,
) {
    match result {
        Err(ConnectError::Refused { code, detail }) => {
            assert_eq!(code, ErrorCode::NICK_REGISTERED);
            assert!(detail.contains("registered to another key"), "{detail}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a nick was taken with another key"),
    }
}

#[tokio::test]
async fn a_nick_belongs_to_its_certificate_case_insensitively_online_or_not() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    for nick in ["alice", "ALICE", "Alice"] {
        assert_registered_elsewhere(try_with_another_key(&server, nick).await);
    }
    alice.client.quit().await;
    let mut alice = alice;
    alice
        .wait_for("close", |e| matches!(e, Event::Closed { .. }))
        .await;
    // Offline, the nick is still hers: nobody else receives what is meant for her.
    assert_registered_elsewhere(try_with_another_key(&server, "alice").await);
    // Her own certificate, from a new connection, gets it back (in the spelling she asks for).
    let again = server.client("Alice").await;
    assert_eq!(again.welcome.nick, "Alice");
    // A new nick registers to whatever certificate comes first.
    let (_c, _e, w) = try_with_another_key(&server, "carol").await.unwrap();
    assert_eq!(w.nick, "carol");
}

#[tokio::test]
async fn a_login_with_the_same_certificate_replaces_the_old_connection() {
    let server = TestServer::start().await;
    let mut bob = server.client("bob").await;
    let mut old = server.client("alice").await;
    bob.wait_for("alice joined", |e| matches!(e, Event::Joined { .. }))
        .await;
    let mut new = server.client("alice").await;
    match old
        .wait_for("replaced", |e| matches!(e, Event::Error { .. }))
        .await
    {
        Event::Error { code, fatal, .. } => {
            assert_eq!(code, ErrorCode::REPLACED);
            assert!(fatal);
        }
        other => panic!("{other:?}"),
    }
    old.wait_for("close", |e| matches!(e, Event::Closed { .. }))
        .await;
    bob.client.insecure("alice").await.unwrap();
    bob.client.private("alice", "to the new one").await.unwrap();
    assert!(
        matches!(new.next_line().await, Event::Private(ChatLine { text, .. }) if text == "to the new one")
    );
    // Bob saw neither a leave nor a second join: alice never went away.
    bob.client.public("ping").await.unwrap();
    loop {
        match bob.next().await {
            Event::Sent { .. } => break,
            e @ (Event::Left { .. } | Event::Joined { .. }) => panic!("bob saw {e:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_client_without_a_certificate_is_told_why_it_is_refused() {
    let server = TestServer::start().await;
    let mut raw = mm_tests::RawTls::connect_as(&server, None).await;
    raw.send(&ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        nick: "anon".into(),
    })
    .await;
    match raw.read().await {
        Some(ServerMsg::Error {
            code,
            fatal,
            detail,
            ..
        }) => {
            assert_eq!(code, ErrorCode::CERTIFICATE_REQUIRED);
            assert!(fatal);
            assert!(detail.contains("client certificate"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(raw.read().await.is_none(), "then the server closes");
}

#[tokio::test]
async fn invalid_nicks_are_refused_with_the_rule() {
    let server = TestServer::start().await;
    for nick in ["", "1abc", "has space", "x\u{1b}[31m", "é", &"a".repeat(33)] {
        match server.try_client(nick).await {
            Err(ConnectError::Refused { code, .. }) => {
                assert_eq!(code, ErrorCode::INVALID_NICK, "{nick:?}")
            }
            Err(e) => panic!("{nick:?}: {e}"),
            Ok(_) => panic!("{nick:?} was accepted"),
        }
    }
    let max = "a".repeat(32);
    assert_eq!(server.client(&max).await.welcome.nick, max);
}

#[tokio::test]
async fn joins_leaves_and_who() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    assert_eq!(alice.welcome.online, vec!["alice".to_string()]);
    let bob = server.client("bob").await;
    assert_eq!(
        bob.welcome.online,
        vec!["alice".to_string(), "bob".to_string()]
    );
    assert_eq!(alice.next().await, Event::Joined { nick: "bob".into() });

    alice.client.who().await.unwrap();
    assert_eq!(
        alice.next().await,
        Event::Users(vec!["alice".into(), "bob".into()])
    );

    bob.client.quit().await;
    assert_eq!(
        alice.next().await,
        Event::Left {
            nick: "bob".into(),
            reason: LeaveReason::Quit
        }
    );
    let carol = server.client("carol").await;
    drop(carol); // connection dropped without Quit
    assert_eq!(
        alice.next().await,
        Event::Joined {
            nick: "carol".into()
        }
    );
    assert_eq!(
        alice.next().await,
        Event::Left {
            nick: "carol".into(),
            reason: LeaveReason::Disconnected
        }
    );
    alice.client.who().await.unwrap();
    assert_eq!(alice.next().await, Event::Users(vec!["alice".into()]));
}

#[tokio::test]
async fn too_long_and_control_character_texts_are_refused_not_truncated() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    assert_eq!(alice.welcome.max_text_len as usize, MAX_TEXT_LEN);

    alice
        .client
        .public(&"x".repeat(MAX_TEXT_LEN + 1))
        .await
        .unwrap();
    assert!(matches!(
        alice.next_answer().await,
        Event::Error {
            code: ErrorCode::TEXT_TOO_LONG,
            fatal: false,
            ..
        }
    ));
    alice.client.public("two\nlines").await.unwrap();
    assert!(matches!(
        alice.next_answer().await,
        Event::Error {
            code: ErrorCode::INVALID_TEXT,
            fatal: false,
            ..
        }
    ));
    // Plain, so that the server checks it (end-to-end text only the peer can check: it never
    // prints a control character, see text.rs).
    alice.client.insecure("bob").await.unwrap();
    alice
        .client
        .private("bob", "\u{1b}[2Jgotcha")
        .await
        .unwrap();
    assert!(matches!(
        alice.next_answer().await,
        Event::Error {
            code: ErrorCode::INVALID_TEXT,
            ..
        }
    ));

    let longest = "é".repeat(MAX_TEXT_LEN / 2);
    alice.client.public(&longest).await.unwrap();
    assert!(matches!(alice.next_answer().await, Event::Sent { .. }));
    // bob's first line is the longest one: nothing refused leaked through.
    assert!(
        matches!(bob.next_line().await, Event::Public(ChatLine { text, .. }) if text == longest)
    );
}
