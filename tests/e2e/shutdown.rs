//! Graceful shutdown.

use mm_client::ChatLine;
use mm_client::Event;
use mm_tests::TestServer;

#[tokio::test]
async fn shutdown_tells_clients_after_delivering_everything_accepted() {
    let server = TestServer::start_unthrottled().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    for i in 0..200 {
        alice.client.public(&format!("line {i}")).await.unwrap();
    }
    // Wait until the server acknowledged all of them, then stop it.
    let mut acked = 0;
    while acked < 200 {
        if let Event::Sent { .. } = alice.next_answer().await {
            acked += 1;
        }
    }
    server.shutdown().await;

    for i in 0..200 {
        assert!(
            matches!(bob.next_line().await, Event::Public(ChatLine { text, .. }) if text == format!("line {i}"))
        );
    }
    for user in [&mut alice, &mut bob] {
        let shutdown = user
            .wait_for("shutdown notice", |e| matches!(e, Event::Shutdown { .. }))
            .await;
        assert!(matches!(shutdown, Event::Shutdown { reason } if reason.contains("shutting down")));
        assert_eq!(
            user.next().await,
            Event::Closed {
                error: None,
                undelivered: vec![]
            },
            "clean TLS close"
        );
    }
}

#[tokio::test]
async fn shutdown_in_the_middle_of_a_flood_loses_nothing_acknowledged() {
    let server = TestServer::start_unthrottled().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice
        .wait_for("bob", |e| matches!(e, Event::Joined { .. }))
        .await;
    // alice sends without pause; the server stops while lines are in flight.
    let sender = {
        let client = alice.client.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while client.public(&format!("n{i}")).await.is_ok() && i < 1_000_000 {
                i += 1;
            }
        })
    };
    let mut acked = Vec::new();
    while acked.len() < 500 {
        if let Event::Sent { id, .. } = alice.next_answer().await {
            acked.push(id);
        }
    }
    server.shutdown().await;
    // Every line the server acknowledged before it stopped, and nothing it refused.
    loop {
        match alice.next().await {
            Event::Sent { id, .. } => acked.push(id),
            Event::Shutdown { .. } | Event::Closed { .. } => break,
            Event::Error { .. } => {} // shutting-down: not accepted, not delivered
            _ => {}
        }
    }
    sender.abort();
    let mut delivered = Vec::new();
    loop {
        match bob.next().await {
            Event::Public(ChatLine { id, .. }) => delivered.push(id),
            Event::Shutdown { .. } => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(acked.len() >= 500);
    assert_eq!(
        delivered, acked,
        "bob receives exactly the acknowledged lines, in order"
    );
}
