//! Message ids against the real `mm-server` binary: a client drops a line whose id it has
//! seen, so an id given out once — even to a line lost in a crash — must never name another.

use mm_client::ChatLine;
use mm_client::Event;
use mm_tests::{ServerProcess, WAIT};

const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");

/// No rate limit, and history long enough for every line.
const CONFIG: &str = crate::store::BURST_CONFIG;

/// Every (id, ts, text) of a personal or public line `events` yields until `until` matches one
/// event (which is included if it is a line).
async fn lines_until(
    events: &mut mm_client::Events,
    until: impl Fn(&Event) -> bool,
) -> Vec<(u64, u64, String)> {
    let mut got = Vec::new();
    loop {
        let ev = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("stalled");
        let Some(ev) = ev else { return got };
        match &ev {
            Event::Private(ChatLine { id, ts, text, .. })
            | Event::Offline(ChatLine { id, ts, text, .. })
            | Event::Public(ChatLine { id, ts, text, .. })
            | Event::History(ChatLine { id, ts, text, .. }) => got.push((*id, *ts, text.clone())),
            Event::Closed { .. } => return got,
            _ => {}
        }
        if until(&ev) {
            return got;
        }
    }
}

/// Private lines flow from alice to bob (who sees them live) when the server is killed with
/// SIGKILL; after the restart alice sends more. Every line bob is shown after the restart must
/// carry an id above every id he saw before (his client drops an (id, ts) it has seen), and
/// he must be shown every new line. Then the same across a graceful stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_never_reused_after_kill_9_or_a_clean_stop() {
    let server = ServerProcess::start(MM_SERVER, CONFIG).await;
    let alice_opts = server.options("alice");
    let mut bob_opts = server.options("bob");
    let (bob, mut bob_events, _) = mm_client::connect(&bob_opts).await.unwrap();
    let (alice, alice_events, _) = mm_client::connect(&alice_opts).await.unwrap();
    // Plain private lines: the ids of the store's mailbox (end-to-end ones are relays with the
    // same ids).
    alice.insecure("bob").await.unwrap();
    let sender = {
        let alice = alice.clone();
        tokio::spawn(async move {
            for i in 0..5000 {
                if alice.private("bob", &format!("before {i}")).await.is_err() {
                    break;
                }
            }
        })
    };
    // Kill once bob has been shown 300 lines live.
    let mut before: Vec<(u64, u64, String)> = Vec::new();
    while before.len() < 300 {
        before.extend(lines_until(&mut bob_events, |_| true).await);
    }
    let data = server.kill().await;
    let _ = tokio::time::timeout(WAIT, sender).await;
    before.extend(lines_until(&mut bob_events, |_| false).await);
    drop((bob, alice, alice_events));
    let mut max_before = before.iter().map(|l| l.0).max().unwrap();
    let mut data = data;
    // Round 0 follows the kill, round 1 a graceful stop.
    for round in 0..2 {
        let server = ServerProcess::start_in(MM_SERVER, CONFIG, data).await;
        bob_opts.server = server.addr.clone();
        let mut alice_opts = alice_opts.clone();
        alice_opts.server = server.addr.clone();
        let (bob, mut bob_events, _) = mm_client::connect(&bob_opts).await.unwrap();
        let (alice, _alice_events, _) = mm_client::connect(&alice_opts).await.unwrap();
        // (Plain already if this connection shares the first one's sessions.)
        let _ = alice.insecure("bob").await;
        for i in 0..50 {
            alice
                .private("bob", &format!("after{round} {i}"))
                .await
                .unwrap();
        }
        let last = format!("after{round} 49");
        let shown = lines_until(
            &mut bob_events,
            |e| matches!(e, Event::Private(ChatLine { text, .. }) if *text == last),
        )
        .await;
        let prefix = format!("after{round} ");
        let new: Vec<_> = shown.iter().filter(|l| l.2.starts_with(&prefix)).collect();
        assert_eq!(
            new.len(),
            50,
            "round {round}: bob was shown {} of 50 new lines",
            new.len()
        );
        for l in &new {
            assert!(
                l.0 > max_before,
                "round {round}: new line {l:?} reuses an id up to {max_before}"
            );
        }
        max_before = new.iter().map(|l| l.0).max().unwrap();
        eprintln!("round {round}: new ids {}..={}", new[0].0, max_before);
        drop((bob, alice));
        data = server.stop_keeping_data().await;
    }
}
