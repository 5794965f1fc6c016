//! Login with an account key (`KeyHello`, `Challenge`, `KeyProof`) on the in-memory transport:
//! what a browser does over the WebSocket, checked to the byte without a browser.

use super::*;
use mm_common::key_login;

/// A session on `ctx` for a client without a certificate (a WebSocket client).
fn web_session(ctx: &Arc<Context>, cancel: &CancellationToken) -> (Client, JoinHandle<()>) {
    let (mut transport, io) = memory::pair(ROOMY, None);
    let (ctx, cancel) = (Arc::clone(ctx), cancel.clone());
    let task = tokio::spawn(async move {
        let peer = SocketAddr::from(([192, 0, 2, 8], 1));
        run(&mut transport, peer, &ctx, &cancel).await;
    });
    (Client { io }, task)
}

async fn key_hello(c: &mut Client, nick: &str, key: &[u8]) -> Vec<u8> {
    c.send(&ClientMsg::KeyHello {
        version: PROTOCOL_VERSION,
        nick: nick.into(),
        key: key.to_vec(),
    })
    .await;
    match c.recv().await {
        Some(ServerMsg::Challenge { nonce }) => {
            assert_eq!(nonce.len(), key_login::NONCE_LEN);
            nonce
        }
        other => panic!("expected a Challenge, got {other:?}"),
    }
}

/// A whole key login as `nick` with `key`; returns what the server sent after `Challenge`.
async fn key_login(c: &mut Client, nick: &str, key: &AccountKey) -> Vec<ServerMsg> {
    let nonce = key_hello(c, nick, &key.public()).await;
    let signature = key.sign(&key_login::signed_message(&nonce, nick, &key.public()));
    c.send(&ClientMsg::KeyProof { signature }).await;
    rest_of_login(c).await
}

/// Makes a `KeyProof`'s signature from the challenge's nonce.
type Proof<'a> = Box<dyn Fn(&[u8]) -> Vec<u8> + 'a>;

fn detail_of(seen: &[ServerMsg]) -> String {
    match seen.last() {
        Some(ServerMsg::Error { detail, .. }) => detail.clone(),
        other => panic!("not an error: {other:?}"),
    }
}

fn memory_context() -> (Arc<MemoryStore>, Arc<Context>) {
    let store = Arc::new(MemoryStore::new(crate::store::Options::from_limits(
        &Limits::default(),
    )));
    let ctx = context(store.clone());
    (store, ctx)
}

#[tokio::test(start_paused = true)]
async fn a_key_login_registers_the_nick_to_the_keys_credential_and_the_key_logs_in_again() {
    let (store, ctx) = memory_context();
    let cancel = CancellationToken::new();
    let key = AccountKey::new();
    let (mut c, _t) = web_session(&ctx, &cancel);
    let seen = key_login(&mut c, "alice", &key).await;
    assert_eq!(refused_with(&seen), None, "{seen:?}");
    assert!(matches!(&seen[0], ServerMsg::Welcome { nick, .. } if nick == "alice"));
    let credential = key_login::credential(&key.public());
    assert_eq!(
        store.accounts().get("alice").map(|a| a.0.clone()),
        Some([credential].into())
    );
    c.send(&ClientMsg::Quit).await;
    while c.recv().await.is_some() {}

    // The same key again: the same account.
    let (mut again, _t) = web_session(&ctx, &cancel);
    assert_eq!(
        refused_with(&key_login(&mut again, "alice", &key).await),
        None
    );
    // Another key: the nick is someone else's.
    let (mut thief, task) = web_session(&ctx, &cancel);
    let seen = key_login(&mut thief, "alice", &AccountKey::new()).await;
    assert_eq!(refused_with(&seen), Some(ErrorCode::NICK_REGISTERED));
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_nick_registered_by_a_certificate_is_not_taken_by_a_key_nor_the_reverse() {
    let (_store, ctx) = memory_context();
    let cancel = CancellationToken::new();
    let (mut native, _n) = session(&ctx, "fp-bob", &cancel);
    assert_eq!(refused_with(&hello(&mut native, "bob").await), None);
    native.send(&ClientMsg::Quit).await;
    while native.recv().await.is_some() {}
    let (mut web, _w) = web_session(&ctx, &cancel);
    let seen = key_login(&mut web, "bob", &AccountKey::new()).await;
    assert_eq!(refused_with(&seen), Some(ErrorCode::NICK_REGISTERED));

    let key = AccountKey::new();
    let (mut web, _w) = web_session(&ctx, &cancel);
    assert_eq!(
        refused_with(&key_login(&mut web, "carol", &key).await),
        None
    );
    web.send(&ClientMsg::Quit).await;
    while web.recv().await.is_some() {}
    // A certificate client as carol: not the key owner.
    let (mut native, _n) = session(&ctx, "fp-carol", &cancel);
    assert_eq!(
        refused_with(&hello(&mut native, "carol").await),
        Some(ErrorCode::NICK_REGISTERED)
    );
    // KeyHello on a connection that has a certificate: the key is the account, not the
    // certificate (the certificate of bob's account does not log in as carol by key).
    let (mut both, _b) = session(&ctx, "fp-bob", &cancel);
    assert_eq!(
        refused_with(&key_login(&mut both, "carol", &key).await),
        None
    );
}

#[tokio::test(start_paused = true)]
async fn a_proof_that_does_not_verify_is_refused_and_registers_nothing() {
    let (store, ctx) = memory_context();
    let cancel = CancellationToken::new();
    let key = AccountKey::new();
    let other = AccountKey::new();
    let cases: Vec<(&str, Proof)> = vec![
        (
            "signed by another key",
            Box::new(|nonce| other.sign(&key_login::signed_message(nonce, "dave", &key.public()))),
        ),
        (
            "signed for another nick",
            Box::new(|nonce| key.sign(&key_login::signed_message(nonce, "davf", &key.public()))),
        ),
        (
            "signed over another nonce (a replay from an earlier login)",
            Box::new(|_| {
                key.sign(&key_login::signed_message(
                    &[9u8; key_login::NONCE_LEN],
                    "dave",
                    &key.public(),
                ))
            }),
        ),
        ("empty", Box::new(|_| Vec::new())),
        ("too long", Box::new(|_| vec![1u8; 65])),
        (
            "a DER signature instead of r ‖ s",
            Box::new(|nonce| {
                let mut der = vec![0x30, 0x44, 0x02, 0x20];
                der.extend(key.sign(&key_login::signed_message(nonce, "dave", &key.public())));
                der
            }),
        ),
    ];
    for (what, sign) in cases {
        let (mut c, task) = web_session(&ctx, &cancel);
        let nonce = key_hello(&mut c, "dave", &key.public()).await;
        c.send(&ClientMsg::KeyProof {
            signature: sign(&nonce),
        })
        .await;
        let seen = rest_of_login(&mut c).await;
        assert_eq!(
            refused_with(&seen),
            Some(ErrorCode::CERTIFICATE_REQUIRED),
            "{what}: {seen:?}"
        );
        assert!(detail_of(&seen).contains("does not verify"), "{what}");
        task.await.unwrap();
    }
    assert!(store.accounts().is_empty(), "{:?}", store.accounts());
}

#[tokio::test(start_paused = true)]
async fn a_malformed_key_is_refused_before_any_challenge() {
    let (store, ctx) = memory_context();
    let cancel = CancellationToken::new();
    let mut compressed = AccountKey::new().public()[..33].to_vec();
    compressed[0] = 2;
    for key in [
        Vec::new(),
        compressed,
        vec![4u8; 64],
        vec![4u8; 66],
        vec![5u8; 65],
    ] {
        let (mut c, task) = web_session(&ctx, &cancel);
        c.send(&ClientMsg::KeyHello {
            version: PROTOCOL_VERSION,
            nick: "erin".into(),
            key: key.clone(),
        })
        .await;
        let seen = rest_of_login(&mut c).await;
        assert_eq!(refused_with(&seen), Some(ErrorCode::BAD_FRAME), "{key:?}");
        task.await.unwrap();
    }
    // 65 bytes starting 04 that are not a point on the curve: challenged, and then no
    // signature can verify.
    let (mut c, task) = web_session(&ctx, &cancel);
    let not_a_point = [&[4u8][..], &[0xffu8; 64][..]].concat();
    let nonce = key_hello(&mut c, "erin", &not_a_point).await;
    let key = AccountKey::new();
    c.send(&ClientMsg::KeyProof {
        signature: key.sign(&key_login::signed_message(&nonce, "erin", &not_a_point)),
    })
    .await;
    assert_eq!(
        refused_with(&rest_of_login(&mut c).await),
        Some(ErrorCode::CERTIFICATE_REQUIRED)
    );
    task.await.unwrap();
    assert!(store.accounts().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_challenge_is_answered_in_time_by_a_proof_or_the_login_ends() {
    let (_store, ctx) = memory_context();
    let cancel = CancellationToken::new();
    let key = AccountKey::new();
    // Silence after the challenge: the hello timeout, counted from the challenge.
    let (mut c, task) = web_session(&ctx, &cancel);
    key_hello(&mut c, "frank", &key.public()).await;
    let started = Instant::now();
    let seen = rest_of_login(&mut c).await;
    assert_eq!(refused_with(&seen), Some(ErrorCode::TIMEOUT));
    assert!(detail_of(&seen).contains("challenge"));
    assert_eq!(started.elapsed(), Limits::default().hello_timeout);
    task.await.unwrap();
    // Anything but a proof.
    let (mut c, task) = web_session(&ctx, &cancel);
    key_hello(&mut c, "frank", &key.public()).await;
    c.send(&ClientMsg::Who).await;
    assert_eq!(
        refused_with(&rest_of_login(&mut c).await),
        Some(ErrorCode::BAD_FRAME)
    );
    task.await.unwrap();
    // Two challenges are never the same.
    let (mut a, _a) = web_session(&ctx, &cancel);
    let (mut b, _b) = web_session(&ctx, &cancel);
    assert_ne!(
        key_hello(&mut a, "g1", &key.public()).await,
        key_hello(&mut b, "g2", &key.public()).await
    );
}

#[tokio::test(start_paused = true)]
async fn a_web_client_without_key_or_certificate_is_told_so() {
    let (_store, ctx) = memory_context();
    let cancel = CancellationToken::new();
    let (mut c, task) = web_session(&ctx, &cancel);
    assert_eq!(
        refused_with(&hello(&mut c, "hank").await),
        Some(ErrorCode::CERTIFICATE_REQUIRED)
    );
    task.await.unwrap();
}
