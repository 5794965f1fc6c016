//! Session rules on the in-memory transport with tokio's paused clock: timeouts and rate limits
//! are checked to the second without waiting for them. `many` runs several clients at once.

mod key_login;
mod keys;
mod many;
mod websocket;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use mm_common::frame;
use tokio::task::JoinHandle;

use super::context::STORE_TIMEOUT;
use super::*;
use crate::hub::Hub;
use crate::limit::Registrations;
use crate::store::memory::MemoryStore;
use crate::transport::memory::{self, MemoryClient};
use mm_common::protocol::PROTOCOL_VERSION;

/// Room in each direction of a test connection, in messages: more than any test sends unread.
const ROOMY: usize = 4096;

/// A test client: the client's end of an in-memory connection, speaking messages.
pub(super) struct Client {
    io: MemoryClient,
}

impl Client {
    pub(super) async fn send(&mut self, msg: &ClientMsg) {
        self.send_bytes(frame::encode_message(msg).unwrap()).await;
    }

    /// Sends a raw payload (which need not be a message); ignored if the session is gone.
    pub(super) async fn send_bytes(&mut self, payload: Bytes) {
        let _ = self.io.send(payload).await;
    }

    /// The next message, or `None` once the server closed.
    pub(super) async fn recv(&mut self) -> Option<ServerMsg> {
        let payload = self.io.recv().await?;
        Some(ServerMsg::decode(&payload).unwrap())
    }

    /// A message already sent, without waiting.
    pub(super) fn try_recv(&mut self) -> Option<ServerMsg> {
        let payload = self.io.try_recv()?;
        Some(ServerMsg::decode(&payload).unwrap())
    }

    /// Closes the client's side: the session reads the end of its input.
    pub(super) fn close(&mut self) {
        self.io.close();
    }

    pub(super) async fn login(&mut self, nick: &str) {
        self.send(&ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            nick: nick.into(),
        })
        .await;
        assert!(matches!(self.recv().await, Some(ServerMsg::Welcome { .. })));
        assert!(matches!(
            self.recv().await,
            Some(ServerMsg::Users { last: true, .. })
        ));
    }
}

/// A session on an in-memory connection whose channels hold `capacity` messages each way,
/// on a new in-memory hub.
fn start(limits: Limits, capacity: usize) -> (Client, Hub, JoinHandle<()>) {
    let hub = Hub::in_memory(&limits);
    start_on(hub, limits, capacity)
}

/// A session on `hub`, for a client with the certificate "fingerprint".
fn start_on(hub: Hub, limits: Limits, capacity: usize) -> (Client, Hub, JoinHandle<()>) {
    let ctx = Arc::new(Context {
        hub: hub.clone(),
        registrations: Registrations::from_limits(&limits),
        metrics: Arc::new(crate::metrics::Metrics::new().unwrap()),
        limits,
        server_name: "test".into(),
        cluster: None,
    });
    let (client, task) = connect(&ctx, "fingerprint", capacity, &CancellationToken::new());
    (client, hub, task)
}

/// A session for a client with certificate `fingerprint`, sharing `ctx` (and its
/// registration limits) with others, stopped by `cancel`.
fn session(
    ctx: &Arc<Context>,
    fingerprint: &str,
    cancel: &CancellationToken,
) -> (Client, JoinHandle<()>) {
    connect(ctx, fingerprint, ROOMY, cancel)
}

/// A session on `ctx` for a client with certificate `fingerprint`, on an in-memory connection
/// of `capacity` messages each way, stopped by `cancel`.
pub(super) fn connect(
    ctx: &Arc<Context>,
    fingerprint: &str,
    capacity: usize,
    cancel: &CancellationToken,
) -> (Client, JoinHandle<()>) {
    let (mut transport, io) = memory::pair(capacity, Some(fingerprint));
    let (ctx, cancel) = (Arc::clone(ctx), cancel.clone());
    let task = tokio::spawn(async move {
        let peer = SocketAddr::from(([192, 0, 2, 7], 1));
        run(&mut transport, peer, &ctx, &cancel).await;
    });
    (Client { io }, task)
}

/// A context on a hub over `store`, with default limits.
fn context(store: Arc<dyn crate::store::Store>) -> Arc<Context> {
    let limits = Limits::default();
    Arc::new(Context {
        hub: Hub::new(&limits, store, crate::store::Loaded::default()),
        registrations: Registrations::from_limits(&limits),
        metrics: Arc::new(crate::metrics::Metrics::new().unwrap()),
        limits,
        server_name: "test".into(),
        cluster: None,
    })
}

/// Sends `Hello` as `nick` and reads until the server closes; returns what it sent.
async fn hello(c: &mut Client, nick: &str) -> Vec<ServerMsg> {
    c.send(&ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        nick: nick.into(),
    })
    .await;
    rest_of_login(c).await
}

/// An account key, as WebCrypto makes one (ECDSA P-256), for key logins (`KeyHello`).
struct AccountKey {
    pair: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl AccountKey {
    fn new() -> AccountKey {
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        AccountKey { pair, rng }
    }

    fn public(&self) -> Vec<u8> {
        use ring::signature::KeyPair;
        self.pair.public_key().as_ref().to_vec()
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&self.rng, message)
            .unwrap()
            .as_ref()
            .to_vec()
    }
}

/// Reads until the login's end: `Users { last }` or the connection's close.
async fn rest_of_login(c: &mut Client) -> Vec<ServerMsg> {
    let mut seen = Vec::new();
    while let Some(msg) = c.recv().await {
        let done = matches!(msg, ServerMsg::Users { last: true, .. });
        seen.push(msg);
        if done {
            break;
        }
    }
    seen
}

/// The fatal error code that ended a login, or `None` if it was welcomed.
fn refused_with(seen: &[ServerMsg]) -> Option<ErrorCode> {
    if seen.iter().any(|m| matches!(m, ServerMsg::Welcome { .. })) {
        return None;
    }
    match seen.last() {
        Some(ServerMsg::Error {
            code, fatal: true, ..
        }) => Some(*code),
        Some(ServerMsg::Shutdown { .. }) => Some(ErrorCode::SHUTTING_DOWN),
        other => panic!("neither welcomed nor refused: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_login_refused_by_the_hub_registers_nothing() {
    // Issue 13, item 5: alice online, her account released by the operator, another
    // certificate logs in as alice: refused nick-in-use, and it must not own alice now.
    let store = Arc::new(MemoryStore::new(crate::store::Options::from_limits(
        &Limits::default(),
    )));
    let ctx = context(store.clone());
    let cancel = CancellationToken::new();
    let (mut alice, _a) = session(&ctx, "fp-alice", &cancel);
    assert_eq!(refused_with(&hello(&mut alice, "alice").await), None);
    store.release("alice");
    let (mut other, task) = session(&ctx, "fp-other", &cancel);
    assert_eq!(
        refused_with(&hello(&mut other, "Alice").await),
        Some(ErrorCode::NICK_IN_USE)
    );
    task.await.unwrap();
    assert!(store.accounts().is_empty(), "{:?}", store.accounts());
    // The refusal did not count against fp-other's registrations either: 3 still go in.
    for nick in ["o1", "o2", "o3"] {
        let (mut c, _t) = session(&ctx, "fp-other", &cancel);
        assert_eq!(refused_with(&hello(&mut c, nick).await), None, "{nick}");
    }
    // The hub refuses during shutdown before the store does anything, too.
    ctx.hub.close();
    let (mut late, task) = session(&ctx, "fp-late", &cancel);
    assert_eq!(
        refused_with(&hello(&mut late, "late").await),
        Some(ErrorCode::SHUTTING_DOWN)
    );
    task.await.unwrap();
    assert!(!store.accounts().contains_key("late"));
}

#[tokio::test(start_paused = true)]
async fn a_login_refused_after_the_store_was_asked_registers_nothing() {
    let limits = Limits::default();
    let store = Arc::new(crate::store::memory::FaultyStore::new(
        crate::store::Options::from_limits(&limits),
    ));
    let ctx = context(store.clone());
    let cancel = CancellationToken::new();
    // The mailbox cannot be read: the whole login fails, registration included.
    store.waiting_fails.store(true, Ordering::SeqCst);
    let (mut c, task) = session(&ctx, "fp-bob", &cancel);
    assert_eq!(
        refused_with(&hello(&mut c, "bob").await),
        Some(ErrorCode::BUSY)
    );
    task.await.unwrap();
    store.waiting_fails.store(false, Ordering::SeqCst);
    // The store registers but its answer does not come: after the store's timeout the
    // session gives up (busy), and the registration is undone in the store's order.
    store.logins_stall.store(true, Ordering::SeqCst);
    let (mut c, task) = session(&ctx, "fp-carol", &cancel);
    let t0 = Instant::now();
    assert_eq!(
        refused_with(&hello(&mut c, "carol").await),
        Some(ErrorCode::BUSY)
    );
    assert_eq!(t0.elapsed(), STORE_TIMEOUT);
    task.await.unwrap();
    // Shutdown while the answer is awaited: refused, and undone likewise.
    let (mut c, task) = session(&ctx, "fp-dave", &cancel);
    c.send(&ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        nick: "dave".into(),
    })
    .await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        store.inner.accounts().contains_key("dave"),
        "registered, unanswered"
    );
    cancel.cancel();
    let mut seen = Vec::new();
    while let Some(msg) = c.recv().await {
        seen.push(msg);
    }
    assert_eq!(refused_with(&seen), Some(ErrorCode::SHUTTING_DOWN));
    task.await.unwrap();
    assert!(
        store.inner.accounts().is_empty(),
        "{:?}",
        store.inner.accounts()
    );
    assert!(ctx.hub.online().is_empty());
}

#[tokio::test(start_paused = true)]
async fn refused_registrations_leave_no_trace_and_count_for_nothing() {
    let store = Arc::new(MemoryStore::new(crate::store::Options::from_limits(
        &Limits::default(),
    )));
    let ctx = context(store.clone());
    let cancel = CancellationToken::new();
    let (mut alice, _a) = session(&ctx, "fp-alice", &cancel);
    assert_eq!(refused_with(&hello(&mut alice, "alice").await), None);
    // Look-alikes of alice from one certificate, again and again: refused, not stored, and
    // not counted against its registrations.
    for fake in ["aIice", "a1ice", "ALlCE", "aiice", "AL1CE", "a1lce"] {
        let (mut c, task) = session(&ctx, "fp-mallory", &cancel);
        let seen = hello(&mut c, fake).await;
        assert_eq!(refused_with(&seen), Some(ErrorCode::NICK_LOOKS_LIKE));
        let Some(ServerMsg::Error { detail, .. }) = seen.last() else {
            unreachable!()
        };
        assert_eq!(
            detail,
            &format!("nick {fake} looks like the registered nick alice; choose another")
        );
        task.await.unwrap();
    }
    assert_eq!(store.accounts().len(), 1);
    for nick in ["m1", "m2", "m3"] {
        let (mut c, _t) = session(&ctx, "fp-mallory", &cancel);
        assert_eq!(refused_with(&hello(&mut c, nick).await), None, "{nick}");
    }
    // The fourth new nick of one certificate in a day is over the limit.
    let (mut c, task) = session(&ctx, "fp-mallory", &cancel);
    let seen = hello(&mut c, "m4").await;
    assert_eq!(refused_with(&seen), Some(ErrorCode::REGISTRATION_LIMIT));
    let Some(ServerMsg::Error { detail, .. }) = seen.last() else {
        unreachable!()
    };
    assert!(
        detail.contains("this certificate") && detail.contains("try again in 8 hours"),
        "{detail}"
    );
    task.await.unwrap();
    assert!(!store.accounts().contains_key("m4"));
    // Its registered nicks still log in.
    let (mut c, _t) = session(&ctx, "fp-mallory", &cancel);
    assert_eq!(refused_with(&hello(&mut c, "M1").await), None);
}

#[tokio::test(start_paused = true)]
async fn a_login_whose_mailbox_cannot_be_read_is_refused_not_half_done() {
    // Logged in without its waiting lines, the client would acknowledge the live lines
    // that follow, and with them (acknowledgements are cumulative) the unread ones.
    let limits = Limits::default();
    let store = crate::store::memory::FaultyStore::new(crate::store::Options::from_limits(&limits));
    store.waiting_fails.store(true, Ordering::SeqCst);
    let hub = Hub::new(&limits, Arc::new(store), crate::store::Loaded::default());
    let mut watcher = hub.join(hub.next_conn_id(), "watcher", "fp-w").unwrap();
    let (mut c, hub, task) = start_on(hub, limits, ROOMY);
    c.send(&ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        nick: "bob".into(),
    })
    .await;
    let mut seen = Vec::new();
    while let Some(msg) = c.recv().await {
        seen.push(msg);
    }
    assert!(
        matches!(
            seen.last(),
            Some(ServerMsg::Error {
                code: ErrorCode::BUSY,
                fatal: true,
                ..
            })
        ),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|m| matches!(m, ServerMsg::Welcome { .. })),
        "{seen:?}"
    );
    task.await.unwrap();
    assert_eq!(hub.online(), ["watcher"]);
    assert!(
        !matches!(watcher.outbox.try_recv(), Ok(Some(_))),
        "nobody hears of a login that did not happen"
    );
}

fn public(text: &str) -> ClientMsg {
    ClientMsg::Public {
        room: "#lobby".into(),
        action: false,
        text: text.into(),
    }
}

#[tokio::test(start_paused = true)]
async fn over_the_rate_messages_are_refused_then_allowed_again() {
    let limits = Limits {
        rate_burst: 5,
        rate_per_sec: 2,
        flood_strikes: 100,
        ..Limits::default()
    };
    let (mut c, _hub, _task) = start(limits, ROOMY);
    c.login("alice").await;
    for _ in 0..8 {
        c.send(&public("x")).await;
    }
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(match c.recv().await.unwrap() {
            ServerMsg::Sent { .. } => "sent",
            ServerMsg::Error {
                code: ErrorCode::RATE_LIMITED,
                fatal: false,
                ..
            } => "limited",
            other => panic!("{other:?}"),
        });
    }
    assert_eq!(
        answers,
        ["sent"; 5]
            .iter()
            .chain(["limited"; 3].iter())
            .copied()
            .collect::<Vec<_>>()
    );
    // One second later two more tokens (2 per second).
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..3 {
        c.send(&public("y")).await;
    }
    assert!(matches!(c.recv().await, Some(ServerMsg::Sent { .. })));
    assert!(matches!(c.recv().await, Some(ServerMsg::Sent { .. })));
    assert!(matches!(
        c.recv().await,
        Some(ServerMsg::Error {
            code: ErrorCode::RATE_LIMITED,
            ..
        })
    ));
    // A refused Who is dropped without an answer; the next answer is for the next message.
    c.send(&ClientMsg::Who).await;
    tokio::time::sleep(Duration::from_millis(1)).await; // let the session see it now
    tokio::time::advance(Duration::from_secs(1)).await;
    c.send(&public("z")).await;
    assert!(matches!(c.recv().await, Some(ServerMsg::Sent { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_sustained_flooder_is_disconnected() {
    let limits = Limits {
        rate_burst: 5,
        rate_per_sec: 1,
        flood_strikes: 10,
        ..Limits::default()
    };
    let (mut c, hub, task) = start(limits, ROOMY);
    c.login("flood").await;
    for _ in 0..100 {
        c.send(&public("spam")).await;
    }
    let mut seen = Vec::new();
    while let Some(msg) = c.recv().await {
        seen.push(msg);
    }
    let sent = seen
        .iter()
        .filter(|m| matches!(m, ServerMsg::Sent { .. }))
        .count();
    let limited = seen
        .iter()
        .filter(|m| {
            matches!(
                m,
                ServerMsg::Error {
                    code: ErrorCode::RATE_LIMITED,
                    fatal: false,
                    ..
                }
            )
        })
        .count();
    assert_eq!((sent, limited), (5, 10), "{seen:?}");
    assert!(matches!(
        seen.last(),
        Some(ServerMsg::Error {
            code: ErrorCode::RATE_LIMITED,
            fatal: true,
            ..
        })
    ));
    task.await.unwrap();
    assert!(hub.online().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_pinged_then_dropped_on_time() {
    let (mut c, hub, task) = start(Limits::default(), ROOMY); // ping 30 s, idle 90 s
    c.login("mute").await;
    let t0 = Instant::now();
    let mut pings = Vec::new();
    let last = loop {
        match c.recv().await.unwrap() {
            ServerMsg::Ping { .. } => pings.push(t0.elapsed().as_secs()),
            other => break other,
        }
    };
    assert_eq!(pings, vec![30, 60]);
    assert!(
        matches!(
            last,
            ServerMsg::Error {
                code: ErrorCode::TIMEOUT,
                fatal: true,
                ..
            }
        ),
        "{last:?}"
    );
    assert_eq!(t0.elapsed().as_secs(), 90);
    assert!(c.recv().await.is_none());
    task.await.unwrap();
    assert!(hub.online().is_empty());
}

#[tokio::test(start_paused = true)]
async fn answering_pings_keeps_a_client_connected_for_hours() {
    let (mut c, hub, _task) = start(Limits::default(), ROOMY);
    c.login("alive").await;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3 * 3600) {
        match c.recv().await.unwrap() {
            ServerMsg::Ping { token } => c.send(&ClientMsg::Pong { token }).await,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(hub.online(), vec!["alive".to_string()]);
    c.send(&public("still here")).await;
    assert!(matches!(c.recv().await, Some(ServerMsg::Sent { .. })));
}

#[tokio::test(start_paused = true)]
async fn no_hello_times_out_on_time() {
    let (mut c, _hub, task) = start(Limits::default(), ROOMY); // hello_timeout 10 s
    let t0 = Instant::now();
    let msg = c.recv().await;
    assert!(
        matches!(
            msg,
            Some(ServerMsg::Error {
                code: ErrorCode::TIMEOUT,
                fatal: true,
                ..
            })
        ),
        "{msg:?}"
    );
    assert_eq!(t0.elapsed().as_secs(), 10);
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let limits = Limits::default(); // write_timeout 10 s
    let (mut c, hub, task) = start(limits, 2); // room for 2 messages: writes block quickly
    c.login("sloth").await;
    let other = hub.join(hub.next_conn_id(), "talker", "fp").unwrap();
    // The talker's lines fill sloth's stream; sloth reads nothing.
    for i in 0..20 {
        hub.publish(
            other.outbox.conn_id,
            "talker",
            mm_common::protocol::LOBBY,
            format!("line {i} {}", "x".repeat(1000)),
            false,
        )
        .unwrap();
    }
    let t0 = Instant::now();
    task.await.unwrap();
    assert_eq!(
        t0.elapsed().as_secs(),
        10,
        "dropped when the write timeout ran out"
    );
    assert_eq!(hub.online(), vec!["talker".to_string()]);
}
