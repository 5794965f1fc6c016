//! The key directory through real sessions (login, dispatch, the hub, the in-memory store) on
//! the in-memory transport with tokio's paused clock: the fetch limit and the reuse window are
//! checked to the second without waiting for them.

use mm_common::prekeys::{
    BundleAnswer, DeviceCheck, KeyUpload, OneTimePrekey, SignedPrekey, PREKEYS_LOW, SIGNATURE_LEN,
};

use super::*;

fn directory(limits: Limits) -> Arc<Context> {
    Arc::new(Context {
        hub: Hub::in_memory(&limits),
        registrations: Registrations::from_limits(&limits),
        metrics: Arc::new(crate::metrics::Metrics::new().unwrap()),
        limits,
        server_name: "test".into(),
        cluster: None,
    })
}

/// Default limits but a one-minute reuse window, and no idle timeout within a test (the
/// clients here do not answer pings).
fn limits() -> Limits {
    Limits {
        one_time_prekey_reuse_window: Duration::from_secs(60),
        ping_interval: Duration::from_secs(24 * 3600),
        idle_timeout: Duration::from_secs(48 * 3600),
        ..Limits::default()
    }
}

async fn log_in(ctx: &Arc<Context>, nick: &str) -> (Client, JoinHandle<()>) {
    let (mut c, task) = connect(ctx, &format!("fp-{nick}"), ROOMY, &CancellationToken::new());
    c.login(nick).await;
    (c, task)
}

fn keys(first_id: u32, count: u32) -> KeyUpload {
    KeyUpload {
        identity: [5; 32],
        signed_prekey: SignedPrekey {
            id: 1,
            key: [6; 32],
            signature: vec![0; SIGNATURE_LEN],
        },
        one_time: (first_id..first_id + count)
            .map(|id| OneTimePrekey { id, key: [7; 32] })
            .collect(),
        device: DeviceCheck {
            previous: [0; 16],
            next: [1; 16],
        },
        replace_one_time: false,
    }
}

/// The next message that is not a presence notice.
async fn next(c: &mut Client) -> ServerMsg {
    loop {
        match c.recv().await {
            Some(ServerMsg::Joined { .. } | ServerMsg::Left { .. }) => {}
            Some(msg) => return msg,
            None => panic!("the session closed"),
        }
    }
}

async fn publish(c: &mut Client, upload: KeyUpload) -> ServerMsg {
    c.send(&ClientMsg::PublishKeys { keys: upload }).await;
    next(c).await
}

/// Fetches `nick`'s bundle: the answer, for `nick`.
async fn fetch(c: &mut Client, nick: &str) -> BundleAnswer {
    c.send(&ClientMsg::FetchBundle { nick: nick.into() }).await;
    match next(c).await {
        ServerMsg::Bundle { nick: n, answer } => {
            assert_eq!(n, nick);
            answer
        }
        other => panic!("not a bundle: {other:?}"),
    }
}

fn one_time_id(answer: &BundleAnswer) -> Option<u32> {
    match answer {
        BundleAnswer::Keys(b) => b.one_time.as_ref().map(|k| k.id),
        other => panic!("no keys: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn published_keys_are_fetched_once_per_requester_and_window() {
    let ctx = directory(limits());
    let (mut bob, _b) = log_in(&ctx, "bob").await;
    let (mut alice, _a) = log_in(&ctx, "alice").await;
    let (mut carol, _c) = log_in(&ctx, "carol").await;
    assert_eq!(fetch(&mut alice, "bob").await, BundleAnswer::NoKeys);
    assert_eq!(fetch(&mut alice, "nobody").await, BundleAnswer::NoSuchUser);
    assert_eq!(
        publish(&mut bob, keys(0, 30)).await,
        ServerMsg::KeysPublished {
            one_time: 30,
            other_device: false
        }
    );
    assert_eq!(one_time_id(&fetch(&mut alice, "BOB").await), Some(0));
    assert_eq!(one_time_id(&fetch(&mut carol, "bob").await), Some(1));
    // Alice again within the window: the signed prekey alone.
    assert_eq!(one_time_id(&fetch(&mut alice, "bob").await), None);
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(one_time_id(&fetch(&mut alice, "bob").await), None);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(one_time_id(&fetch(&mut alice, "bob").await), Some(2));
    // One's own bundle is answered like anyone's.
    assert_eq!(one_time_id(&fetch(&mut bob, "bob").await), Some(3));
}

#[tokio::test(start_paused = true)]
async fn bundle_fetches_are_limited_per_account_not_per_connection() {
    // 20 fetches at once, 20 a minute; room in the chat limit (which fetches count against
    // too) for more than that.
    let ctx = directory(Limits {
        rate_burst: 60,
        ..Limits::default()
    });
    let (mut bob, _b) = log_in(&ctx, "bob").await;
    publish(&mut bob, keys(0, 100)).await;
    let (mut alice, task) = log_in(&ctx, "alice").await;
    for i in 0..20 {
        assert!(
            matches!(fetch(&mut alice, "bob").await, BundleAnswer::Keys(_)),
            "fetch {i}"
        );
    }
    let BundleAnswer::RateLimited { retry_after_ms } = fetch(&mut alice, "bob").await else {
        panic!("the 21st fetch was not limited");
    };
    assert!(
        (2_900..=3_000).contains(&retry_after_ms),
        "{retry_after_ms}"
    );
    alice.send(&ClientMsg::Ping { token: 5 }).await;
    assert_eq!(next(&mut alice).await, ServerMsg::Pong { token: 5 });
    // Reconnecting does not refill it.
    alice.send(&ClientMsg::Quit).await;
    while alice.recv().await.is_some() {}
    task.await.unwrap();
    let (mut alice, _a) = log_in(&ctx, "alice").await;
    assert!(matches!(
        fetch(&mut alice, "bob").await,
        BundleAnswer::RateLimited { .. }
    ));
    tokio::time::advance(Duration::from_millis(retry_after_ms)).await;
    assert!(matches!(
        fetch(&mut alice, "bob").await,
        BundleAnswer::Keys(_)
    ));
    // Another account has its own.
    let (mut carol, _c) = log_in(&ctx, "carol").await;
    assert!(matches!(
        fetch(&mut carol, "bob").await,
        BundleAnswer::Keys(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn the_owner_hears_once_that_its_one_time_prekeys_run_low() {
    let ctx = directory(limits());
    let (mut bob, _b) = log_in(&ctx, "bob").await;
    let low = PREKEYS_LOW;
    publish(&mut bob, keys(0, low + 1)).await;
    let mut fetchers = Vec::new();
    for i in 0..3 {
        let (mut c, t) = log_in(&ctx, &format!("f{i}")).await;
        assert!(one_time_id(&fetch(&mut c, "bob").await).is_some());
        fetchers.push((c, t));
    }
    // low + 1 → low (not below) → low - 1: told once, with the count.
    assert_eq!(
        next(&mut bob).await,
        ServerMsg::PrekeysLow { one_time: low - 1 }
    );
    assert_eq!(until_pong(&mut bob).await, 0, "told once");
    // Publishing again re-arms it.
    assert_eq!(
        publish(&mut bob, keys(100, 0)).await,
        ServerMsg::KeysPublished {
            one_time: low - 2,
            other_device: false
        }
    );
    let (c, _) = &mut fetchers[0];
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(one_time_id(&fetch(c, "bob").await).is_some());
    assert_eq!(
        next(&mut bob).await,
        ServerMsg::PrekeysLow { one_time: low - 3 }
    );
}

/// Pings and reads up to the pong; returns how many `PrekeysLow` came meanwhile.
async fn until_pong(c: &mut Client) -> usize {
    c.send(&ClientMsg::Ping { token: 77 }).await;
    let mut low = 0;
    loop {
        match next(c).await {
            ServerMsg::Pong { token: 77 } => return low,
            ServerMsg::PrekeysLow { .. } => low += 1,
            _ => {}
        }
    }
}

#[tokio::test(start_paused = true)]
async fn hostile_uploads_are_refused_bad_keys_and_the_session_goes_on() {
    let ctx = directory(Limits::default());
    let (mut bob, _b) = log_in(&ctx, "bob").await;
    let mut short_signature = keys(0, 1);
    short_signature.signed_prekey.signature.pop();
    let mut zero_key = keys(0, 1);
    zero_key.one_time[0].key = [0; 32];
    let mut duplicate = keys(0, 2);
    duplicate.one_time[1].id = 0;
    for (what, upload) in [
        ("a short signature", short_signature),
        ("101 one-time prekeys", keys(0, 101)),
        ("duplicate ids", duplicate),
        ("a zero key", zero_key),
    ] {
        match publish(&mut bob, upload).await {
            ServerMsg::KeysRefused { code, detail } => {
                assert_eq!(code, ErrorCode::BAD_KEYS, "{what}");
                assert!(!detail.is_empty(), "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // Nothing was stored, and the connection works.
    let (mut alice, _a) = log_in(&ctx, "alice").await;
    assert_eq!(fetch(&mut alice, "bob").await, BundleAnswer::NoKeys);
    assert!(matches!(
        publish(&mut bob, keys(0, 0)).await,
        ServerMsg::KeysPublished { one_time: 0, .. }
    ));
    // No one-time prekeys: the signed prekey alone.
    assert_eq!(one_time_id(&fetch(&mut alice, "bob").await), None);
}

#[tokio::test(start_paused = true)]
async fn key_answers_leave_the_line_answers_in_their_order() {
    let ctx = directory(Limits::default());
    let (mut bob, _b) = log_in(&ctx, "bob").await;
    let line = |text: &str| ClientMsg::Public {
        room: "#lobby".into(),
        text: text.into(),
        action: false,
    };
    bob.send(&line("one")).await;
    bob.send(&ClientMsg::PublishKeys { keys: keys(0, 1) }).await;
    bob.send(&ClientMsg::FetchBundle { nick: "bob".into() })
        .await;
    bob.send(&line("two")).await;
    let mut sent = Vec::new();
    let mut others = Vec::new();
    while sent.len() < 2 || others.len() < 2 {
        match next(&mut bob).await {
            ServerMsg::Sent { id, .. } => sent.push(id),
            other => others.push(other),
        }
    }
    assert!(sent[0] < sent[1], "{sent:?}");
    assert!(matches!(
        others[0],
        ServerMsg::KeysPublished { one_time: 1, .. }
    ));
    assert!(matches!(others[1], ServerMsg::Bundle { .. }));
}

#[tokio::test(start_paused = true)]
async fn an_invalid_nick_has_no_keys_and_is_echoed_cleaned() {
    let ctx = directory(Limits::default());
    let (mut alice, _a) = log_in(&ctx, "alice").await;
    alice
        .send(&ClientMsg::FetchBundle {
            nick: format!("no\u{202e}pe{}", "x".repeat(100)),
        })
        .await;
    match next(&mut alice).await {
        ServerMsg::Bundle { nick, answer } => {
            assert_eq!(answer, BundleAnswer::NoSuchUser);
            assert!(nick.len() <= 32, "{nick}");
            assert!(!nick.contains('\u{202e}'), "{nick}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_failure_is_told_as_busy_and_costs_no_one_time_prekey() {
    use std::sync::atomic::Ordering::SeqCst;
    let store = Arc::new(crate::store::memory::FaultyStore::new(
        crate::store::Options::from_limits(&Limits::default()),
    ));
    let ctx = Arc::new(Context {
        hub: Hub::new(&limits(), store.clone(), crate::store::Loaded::default()),
        registrations: Registrations::from_limits(&limits()),
        metrics: Arc::new(crate::metrics::Metrics::new().unwrap()),
        limits: limits(),
        server_name: "test".into(),
        cluster: None,
    });
    let (mut bob, _b) = log_in(&ctx, "bob").await;
    let (mut alice, _a) = log_in(&ctx, "alice").await;
    store.keys_fail.store(true, SeqCst);
    // Each in its own message, never an `Error` a client could take for a line's answer.
    bob.send(&ClientMsg::PublishKeys { keys: keys(0, 3) }).await;
    match next(&mut bob).await {
        ServerMsg::KeysRefused { code, .. } => assert_eq!(code, ErrorCode::BUSY),
        other => panic!("{other:?}"),
    }
    alice
        .send(&ClientMsg::FetchBundle { nick: "bob".into() })
        .await;
    assert_eq!(
        next(&mut alice).await,
        ServerMsg::Bundle {
            nick: "bob".into(),
            answer: BundleAnswer::Busy
        }
    );
    store.keys_fail.store(false, SeqCst);
    assert!(matches!(
        publish(&mut bob, keys(0, 3)).await,
        ServerMsg::KeysPublished { one_time: 3, .. }
    ));
    // The failed fetch did not start alice's reuse window.
    assert_eq!(one_time_id(&fetch(&mut alice, "bob").await), Some(0));
}

#[tokio::test(start_paused = true)]
async fn fetching_without_end_is_a_flood_like_any_other() {
    let ctx = directory(limits()); // rate_burst 20
    let (mut bob, _b) = log_in(&ctx, "bob").await;
    publish(&mut bob, keys(0, 10)).await;
    let (mut alice, task) = log_in(&ctx, "alice").await;
    for _ in 0..200 {
        alice
            .send(&ClientMsg::FetchBundle { nick: "bob".into() })
            .await;
    }
    let mut limited = 0;
    let mut fatal = None;
    while let Some(msg) = alice.recv().await {
        match msg {
            ServerMsg::Bundle {
                answer: BundleAnswer::RateLimited { .. },
                ..
            } => limited += 1,
            ServerMsg::Error {
                code, fatal: true, ..
            } => fatal = Some(code),
            _ => {}
        }
    }
    assert!(limited > 0);
    assert_eq!(fatal, Some(ErrorCode::RATE_LIMITED));
    task.await.unwrap();
}
