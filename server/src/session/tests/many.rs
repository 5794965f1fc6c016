//! Several clients at once: real sessions (login, dispatch, the hub, an in-memory store) on the
//! in-memory transport, no sockets, tokio's paused clock. What one client does reaches the
//! others through the hub exactly as over TLS.

use super::*;

/// A room: a hub on an in-memory store, shared by every session of a test.
fn room(limits: Limits) -> Arc<Context> {
    Arc::new(Context {
        hub: Hub::in_memory(&limits),
        registrations: Registrations::from_limits(&limits),
        metrics: Arc::new(crate::metrics::Metrics::new().unwrap()),
        limits,
        server_name: "test".into(),
        cluster: None,
    })
}

/// Logs in as `nick` (certificate `fp-<nick>`) on a connection holding `capacity` messages each
/// way; returns the client, its session, and the `online` count and user list it was welcomed
/// with.
async fn log_in(
    ctx: &Arc<Context>,
    nick: &str,
    capacity: usize,
) -> (Client, JoinHandle<()>, u32, Vec<String>) {
    let (mut c, task) = connect(
        ctx,
        &format!("fp-{nick}"),
        capacity,
        &CancellationToken::new(),
    );
    c.send(&ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        nick: nick.into(),
    })
    .await;
    let Some(ServerMsg::Welcome { online, .. }) = c.recv().await else {
        panic!("{nick} not welcomed");
    };
    let Some(ServerMsg::Users { nicks, last: true }) = c.recv().await else {
        panic!("{nick}: no user list");
    };
    (c, task, online, nicks)
}

fn public(text: &str) -> ClientMsg {
    ClientMsg::Public {
        room: "#lobby".into(),
        action: false,
        text: text.into(),
    }
}

/// The next message, which must be the public line `text` from `from`; returns its id.
async fn expect_public(c: &mut Client, from: &str, text: &str) -> u64 {
    match c.recv().await {
        Some(ServerMsg::Public {
            id,
            from: f,
            text: t,
            ..
        }) if f == from && t == text => id,
        other => panic!("expected <{from}> {text}, got {other:?}"),
    }
}

async fn expect_joined(c: &mut Client, nick: &str) {
    match c.recv().await {
        Some(ServerMsg::Joined { nick: n, .. }) if n == nick => {}
        other => panic!("expected {nick} joined, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn users_log_in_and_hear_of_each_other() {
    let ctx = room(Limits::default());
    let (mut alice, _a, online, users) = log_in(&ctx, "alice", ROOMY).await;
    assert_eq!((online, users), (1, vec!["alice".to_string()]));
    let (mut bob, _b, online, users) = log_in(&ctx, "Bob", ROOMY).await;
    assert_eq!((online, users.len()), (2, 2));
    let (_carol, _c, online, users) = log_in(&ctx, "carol", ROOMY).await;
    assert_eq!(online, 3);
    assert_eq!(
        users,
        ["alice", "Bob", "carol"],
        "sorted case-insensitively"
    );
    expect_joined(&mut alice, "Bob").await;
    expect_joined(&mut alice, "carol").await;
    expect_joined(&mut bob, "carol").await;
    assert_eq!(ctx.hub.online(), ["alice", "Bob", "carol"]);
    // Bob's nick is registered to Bob's certificate: another one cannot log in as bob.
    let (mut fake, task) = connect(&ctx, "fp-mallory", ROOMY, &CancellationToken::new());
    assert_eq!(
        refused_with(&hello(&mut fake, "bob").await),
        Some(ErrorCode::NICK_REGISTERED)
    );
    task.await.unwrap();
    assert_eq!(ctx.hub.online().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_public_line_fans_out_and_a_private_line_reaches_only_its_recipient() {
    let ctx = room(Limits::default());
    let (mut alice, _a, ..) = log_in(&ctx, "alice", ROOMY).await;
    let (mut bob, _b, ..) = log_in(&ctx, "bob", ROOMY).await;
    let (mut carol, _c, ..) = log_in(&ctx, "carol", ROOMY).await;
    expect_joined(&mut alice, "bob").await;
    expect_joined(&mut alice, "carol").await;
    expect_joined(&mut bob, "carol").await;

    alice.send(&public("hello all")).await;
    let Some(ServerMsg::Sent { id, .. }) = alice.recv().await else {
        panic!("alice's line not acknowledged");
    };
    assert_eq!(expect_public(&mut bob, "alice", "hello all").await, id);
    assert_eq!(expect_public(&mut carol, "alice", "hello all").await, id);

    alice
        .send(&ClientMsg::Private {
            to: "BOB".into(),
            text: "just you".into(),
        })
        .await;
    let Some(ServerMsg::Sent { id: private_id, .. }) = alice.recv().await else {
        panic!("the private line not acknowledged as delivered live");
    };
    match bob.recv().await {
        Some(ServerMsg::Private { id, from, text, .. }) => {
            assert_eq!(
                (id, from.as_str(), text.as_str()),
                (private_id, "alice", "just you")
            );
        }
        other => panic!("{other:?}"),
    }
    // Every user's queue keeps the hub's order: had carol been given the private line, it
    // would come before this public one.
    bob.send(&public("after")).await;
    expect_public(&mut carol, "bob", "after").await;
    expect_public(&mut alice, "bob", "after").await;
    assert!(carol.try_recv().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_client_whose_queue_fills_is_dropped_while_the_others_continue() {
    let ctx = room(Limits {
        outbound_queue: 8,
        // Long enough that the queue, not the write timeout, drops the slow client.
        write_timeout: Duration::from_secs(60),
        rate_burst: 1000,
        rate_per_sec: 1000,
        ..Limits::default()
    });
    let (mut alice, _a, ..) = log_in(&ctx, "alice", ROOMY).await;
    let (mut bob, _b, ..) = log_in(&ctx, "bob", ROOMY).await;
    // Room for 2 messages on its connection, and it reads nothing for now.
    let (mut slow, slow_task, ..) = log_in(&ctx, "slow", 2).await;
    expect_joined(&mut alice, "bob").await;
    expect_joined(&mut alice, "slow").await;
    expect_joined(&mut bob, "slow").await;

    // Alice talks, bob keeps up (each line read before the next is sent), slow reads nothing:
    // its connection fills, then its queue in the hub, and the hub drops it.
    let lines: Vec<String> = (0..40).map(|i| format!("line {i}")).collect();
    let mut left = None;
    for (i, line) in lines.iter().enumerate() {
        alice.send(&public(line)).await;
        loop {
            match bob.recv().await {
                Some(ServerMsg::Public { text, .. }) => {
                    assert_eq!(&text, line);
                    break;
                }
                Some(ServerMsg::Left { nick, reason, .. }) => {
                    assert_eq!((nick.as_str(), reason), ("slow", LeaveReason::TooSlow));
                    assert_eq!(left.replace(i), None, "slow left twice");
                }
                other => panic!("{other:?}"),
            }
        }
        // Alice is never held up by slow: each line acknowledged.
        loop {
            match alice.recv().await {
                Some(ServerMsg::Sent { .. }) => break,
                Some(ServerMsg::Left { nick, .. }) => assert_eq!(nick, "slow"),
                other => panic!("{other:?}"),
            }
        }
    }
    let left = left.expect("slow was dropped");
    // 2 lines on its connection, a batch in its session's write buffer, 8 in its queue.
    assert!((8..30).contains(&left), "dropped at line {left}");
    assert_eq!(ctx.hub.online(), ["alice", "bob"]);
    alice.send(&public("still here")).await;
    expect_public(&mut bob, "alice", "still here").await;

    // Slow reads at last: the first lines, in order (what its connection held; the rest is
    // dropped with it), then why it is dropped, then the end.
    let mut seen = Vec::new();
    while let Some(msg) = slow.recv().await {
        seen.push(msg);
    }
    let Some(ServerMsg::Error {
        code: ErrorCode::TOO_SLOW,
        fatal: true,
        ..
    }) = seen.pop()
    else {
        panic!("no too-slow error last: {seen:?}");
    };
    let texts: Vec<String> = seen
        .into_iter()
        .map(|m| match m {
            ServerMsg::Public { text, .. } => text,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(texts.len() < left, "{} lines before the drop", texts.len());
    assert_eq!(texts[..], lines[..texts.len()]);
    slow_task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_sends_what_is_not_a_message_is_dropped_alone() {
    let ctx = room(Limits::default());
    let (mut alice, _a, ..) = log_in(&ctx, "alice", ROOMY).await;
    let (mut bob, bob_task, ..) = log_in(&ctx, "bob", ROOMY).await;
    expect_joined(&mut alice, "bob").await;
    bob.send_bytes(Bytes::new()).await; // an empty frame, as the TLS transport sees it
    match bob.recv().await {
        Some(ServerMsg::Error {
            code: ErrorCode::BAD_FRAME,
            fatal: true,
            detail,
        }) => assert_eq!(
            detail,
            "malformed frame: length 0 (a frame holds 1 to 65536 bytes)"
        ),
        other => panic!("{other:?}"),
    }
    assert!(bob.recv().await.is_none());
    bob.close();
    bob_task.await.unwrap();
    match alice.recv().await {
        Some(ServerMsg::Left { nick, reason, .. }) => {
            assert_eq!((nick.as_str(), reason), ("bob", LeaveReason::ProtocolError));
        }
        other => panic!("{other:?}"),
    }
    alice.send(&public("alone")).await;
    assert!(matches!(alice.recv().await, Some(ServerMsg::Sent { .. })));
}
