//! Peers that misbehave get a clear error where possible and are disconnected; everyone else
//! notices nothing.

use mm_client::ChatLine;
use std::time::Duration;

use mm_client::Event;
use mm_common::frame::MAX_FRAME_LEN;
use mm_common::protocol::{ClientMsg, ErrorCode, LeaveReason, ServerMsg, PROTOCOL_VERSION};
use mm_server::Limits;
use mm_tests::{closes, RawTls, TestServer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn fatal_error(msgs: &[ServerMsg]) -> (ErrorCode, String) {
    match msgs.last() {
        Some(ServerMsg::Error {
            code,
            fatal: true,
            detail,
        }) => (*code, detail.clone()),
        other => panic!("expected a fatal error as the last frame, got {other:?} (all: {msgs:?})"),
    }
}

#[tokio::test]
async fn plain_tcp_garbage_does_not_disturb_connected_users() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;

    let mut garbage = Vec::new();
    for payload in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0u8; 3000][..],
        &[0x16, 0x03, 0x01, 0xff, 0xff][..],
    ] {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(payload).await.unwrap();
        garbage.push(tcp);
    }
    alice.client.public("still fine?").await.unwrap();
    assert!(
        matches!(bob.next_line().await, Event::Public(ChatLine { text, .. }) if text == "still fine?")
    );
    for tcp in &mut garbage {
        assert!(closes(tcp).await, "server must close a non-TLS connection");
    }
    alice.client.insecure("bob").await.unwrap();
    alice.client.private("bob", "yes").await.unwrap();
    assert!(
        matches!(bob.next_line().await, Event::Private(ChatLine { text, .. }) if text == "yes")
    );
}

#[tokio::test]
async fn oversized_length_prefix_gets_bad_frame_and_a_disconnect() {
    let server = TestServer::start().await;
    let mut raw = RawTls::login(&server, "mallory").await;
    let too_big = u32::try_from(MAX_FRAME_LEN + 1).unwrap().to_be_bytes();
    raw.send_bytes(&too_big).await;
    let (code, detail) = fatal_error(&raw.read_to_close().await);
    assert_eq!(code, ErrorCode::BAD_FRAME);
    assert_eq!(detail, "frame too long: 65537 bytes, the limit is 65536");

    // Before login too, and with the largest possible prefix.
    let mut raw = RawTls::connect(&server).await;
    raw.send_bytes(&[0xff; 4]).await;
    assert_eq!(
        fatal_error(&raw.read_to_close().await).0,
        ErrorCode::BAD_FRAME
    );
}

#[tokio::test]
async fn undecodable_and_out_of_place_messages_are_fatal_errors() {
    let server = TestServer::start().await;
    let mut watcher = server.client("watcher").await;

    // Valid frame, garbage payload.
    let mut raw = RawTls::login(&server, "m1").await;
    raw.send_bytes(&[0, 0, 0, 3, 0xee, 0xee, 0xee]).await;
    assert_eq!(
        fatal_error(&raw.read_to_close().await).0,
        ErrorCode::BAD_FRAME
    );
    // A second Hello.
    let mut raw = RawTls::login(&server, "m2").await;
    raw.send(&ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        nick: "m3".into(),
    })
    .await;
    assert_eq!(
        fatal_error(&raw.read_to_close().await).0,
        ErrorCode::UNEXPECTED_MESSAGE
    );
    // Chat before Hello.
    let mut raw = RawTls::connect(&server).await;
    raw.send(&ClientMsg::Public {
        room: "#lobby".into(),
        action: false,
        text: "hi".into(),
    })
    .await;
    assert_eq!(
        fatal_error(&raw.read_to_close().await).0,
        ErrorCode::UNEXPECTED_MESSAGE
    );
    // A future protocol version.
    let mut raw = RawTls::connect(&server).await;
    raw.send(&ClientMsg::Hello {
        version: PROTOCOL_VERSION + 1,
        nick: "m4".into(),
    })
    .await;
    let (code, detail) = fatal_error(&raw.read_to_close().await);
    assert_eq!(code, ErrorCode::UNSUPPORTED_VERSION);
    assert!(detail.contains(&PROTOCOL_VERSION.to_string()), "{detail}");
    // A frame cut off by the peer closing.
    let mut raw = RawTls::login(&server, "m5").await;
    raw.send_bytes(&[0, 0, 0, 10, 1]).await;
    raw.stream.shutdown().await.unwrap();
    assert_eq!(
        fatal_error(&raw.read_to_close().await).0,
        ErrorCode::BAD_FRAME
    );

    // The watcher saw the logged-in ones come and go as protocol errors, and nothing else.
    for nick in ["m1", "m2", "m5"] {
        assert_eq!(watcher.next().await, Event::Joined { nick: nick.into() });
        let left = watcher.next().await;
        assert!(
            matches!(&left, Event::Left { nick: n, reason } if n == nick && *reason != LeaveReason::Quit),
            "{left:?}"
        );
    }
}

/// What the server says about a frame it cannot read is in the protocol's own words
/// (PROTOCOL.md, "Error details"), before and after login, never the decoder's ("Serde
/// Deserialization Error", "Found a varint that didn't terminate", "Hit the end of buffer").
#[tokio::test]
async fn bad_frame_details_are_the_protocols_own_words() {
    let server = TestServer::start().await;
    let cases: [(&[u8], &str); 7] = [
        (&[0, 0, 0, 1, 42], "unknown message type 42"),
        (
            &[0, 0, 0, 1, 0x80],
            "malformed frame: the message type is not a valid number",
        ),
        (
            &[0, 0, 0, 3, 1, 5, b'a'],
            "malformed frame: the Public message does not decode (it ends too early)",
        ),
        (
            &[0, 0, 0, 4, 1, 2, 0xff, 0xfe],
            "malformed frame: the Public message does not decode (a text is not valid UTF-8)",
        ),
        (
            &[0, 0, 0, 2, 3, 0],
            "malformed frame: 1 byte after the end of the message",
        ),
        (
            &[0, 0, 0, 0],
            "malformed frame: length 0 (a frame holds 1 to 65536 bytes)",
        ),
        (
            &[0, 1, 0x11, 0x70],
            "frame too long: 70000 bytes, the limit is 65536",
        ),
    ];
    for (i, (bytes, expected)) in cases.iter().enumerate() {
        for logged_in in [false, true] {
            let mut raw = if logged_in {
                RawTls::login(&server, &format!("m{i}")).await
            } else {
                RawTls::connect(&server).await
            };
            raw.send_bytes(bytes).await;
            let (code, detail) = fatal_error(&raw.read_to_close().await);
            assert_eq!(code, ErrorCode::BAD_FRAME, "{bytes:?}");
            assert_eq!(&detail, expected, "{bytes:?} (logged in: {logged_in})");
        }
    }
}

fn quick_timeouts() -> Limits {
    Limits {
        handshake_timeout: Duration::from_millis(300),
        hello_timeout: Duration::from_millis(300),
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(400),
        ..Limits::default()
    }
}

#[tokio::test]
async fn silent_peers_time_out_at_every_stage() {
    let server = TestServer::start_with(quick_timeouts()).await;
    // TCP connected, no TLS ClientHello.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    assert!(closes(&mut tcp).await);
    // TLS done, no Hello.
    let mut raw = RawTls::connect(&server).await;
    let (code, _) = fatal_error(&raw.read_to_close().await);
    assert_eq!(code, ErrorCode::TIMEOUT);
    // Logged in, never answers pings: pinged, then dropped.
    let mut raw = RawTls::login(&server, "mute").await;
    let seen = raw.read_to_close().await;
    assert!(
        seen.iter().any(|m| matches!(m, ServerMsg::Ping { .. })),
        "{seen:?}"
    );
    assert_eq!(fatal_error(&seen).0, ErrorCode::TIMEOUT);
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_connected() {
    let server = TestServer::start_with(quick_timeouts()).await;
    let mut alice = server.client("alice").await;
    let bob = server.client("bob").await;
    // Several idle timeouts pass; the client library answers the server's pings by itself.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bob.client.public("still here").await.unwrap();
    assert!(
        matches!(alice.next_line().await, Event::Public(ChatLine { text, .. }) if text == "still here")
    );
    alice.client.who().await.unwrap();
    let users = alice
        .wait_for("users", |e| matches!(e, Event::Users(_)))
        .await;
    assert_eq!(users, Event::Users(vec!["alice".into(), "bob".into()]));
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_costs_the_others_nothing() {
    let limits = Limits {
        write_timeout: Duration::from_millis(500),
        ..mm_tests::unthrottled()
    };
    let server = TestServer::start_with(limits).await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut sloth = RawTls::login(&server, "sloth").await; // logs in, then never reads
    assert_eq!(alice.next().await, Event::Joined { nick: "bob".into() });
    assert_eq!(
        alice.next().await,
        Event::Joined {
            nick: "sloth".into()
        }
    );
    assert_eq!(
        bob.next().await,
        Event::Joined {
            nick: "sloth".into()
        }
    );

    // 20 MB: enough to fill the kernel buffers between the server and sloth many times over.
    // alice waits for acks in windows of 32, as a client under a rate limit would; flood
    // control itself is the rate limiter's job, not this test's.
    let text = "z".repeat(4000);
    let count = 5000;
    let bob_reads = tokio::spawn(async move {
        let mut received = 0;
        let mut sloth_left = false;
        while received < count {
            match bob.next().await {
                Event::Public(ChatLine { text, .. }) => {
                    assert_eq!(text.len(), 4000);
                    received += 1;
                }
                Event::Left { nick, reason } => {
                    assert_eq!((nick.as_str(), reason), ("sloth", LeaveReason::TooSlow));
                    sloth_left = true;
                }
                other => panic!("{other:?}"),
            }
        }
        // bob stays online until alice has all her acknowledgements: lines are delivered at
        // once but acknowledged only once stored, so bob may be done first.
        (sloth_left, bob)
    });
    let mut sent = 0;
    while sent < count {
        for _ in 0..32 {
            alice.client.public(&text).await.unwrap();
        }
        let mut acked = 0;
        while acked < 32 {
            match alice.next().await {
                Event::Sent { .. } => acked += 1,
                Event::Left { nick, reason } => {
                    assert_eq!((nick.as_str(), reason), ("sloth", LeaveReason::TooSlow))
                }
                other => panic!("{other:?}"),
            }
        }
        sent += 32;
    }
    let (sloth_left, _bob) = tokio::time::timeout(mm_tests::WAIT, bob_reads)
        .await
        .unwrap()
        .unwrap();
    assert!(
        sloth_left,
        "sloth should have been disconnected as too slow"
    );
    // Its connection is closed once it finally reads what the kernel buffered for it.
    let seen = sloth.read_to_close().await;
    assert!(seen.len() < count, "sloth cannot have been sent everything");
}

#[tokio::test]
async fn relay_payloads_are_bounded_and_answered() {
    use mm_common::protocol::MAX_RELAY_LEN;
    let server = TestServer::start().await;
    let _bob = server.client("bob").await;
    let mut raw = RawTls::login(&server, "mallory").await;
    for payload in [Vec::new(), vec![0u8; MAX_RELAY_LEN + 1]] {
        raw.send(&ClientMsg::Relay {
            to: "bob".into(),
            payload,
        })
        .await;
        match raw.read().await {
            Some(ServerMsg::Error {
                code, fatal: false, ..
            }) => assert_eq!(code, ErrorCode::BAD_PAYLOAD),
            other => panic!("{other:?}"),
        }
    }
    raw.send(&ClientMsg::Relay {
        to: "nobody".into(),
        payload: vec![1],
    })
    .await;
    assert!(matches!(
        raw.read().await,
        Some(ServerMsg::Error {
            code: ErrorCode::NO_SUCH_NICK,
            fatal: false,
            ..
        })
    ));
    raw.send(&ClientMsg::Relay {
        to: "BOB".into(),
        payload: vec![0u8; MAX_RELAY_LEN],
    })
    .await;
    // bob's client may answer the garbage (an abort) before the server acknowledges it: the
    // acknowledgement waits until the payload is stored for bob.
    loop {
        match raw.read().await {
            Some(ServerMsg::Sent { .. }) => break,
            Some(ServerMsg::Relay { from, .. }) if from == "bob" => {}
            other => panic!("{other:?}"),
        }
    }
}
