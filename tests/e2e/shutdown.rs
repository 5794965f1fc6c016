//! Graceful shutdown.

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
            matches!(bob.next_line().await, Event::Public { text, .. } if text == format!("line {i}"))
        );
    }
    for user in [&mut alice, &mut bob] {
        let shutdown = user
            .wait_for("shutdown notice", |e| matches!(e, Event::Shutdown { .. }))
            .await;
        assert!(matches!(shutdown, Event::Shutdown { reason } if reason.contains("shutting down")));
        assert_eq!(
            user.next().await,
            Event::Closed { error: None },
            "clean TLS close"
        );
    }
}
