//! The key directory (protocol 6) and relays to offline users, over real TLS against a real
//! server: keys published by one account are fetched by others, each one-time prekey handed
//! out once, fetches limited, the owner told when its one-time prekeys run low; a relay to an
//! offline user waits for them across a restart; a protocol 5 client is told to upgrade.
//!
//! These speak the protocol directly (`RawTls`): the reference client's use of the directory
//! is tested with the client.

use std::collections::HashSet;

use mm_common::prekeys::{
    BundleAnswer, DeviceCheck, KeyUpload, OneTimePrekey, SignedPrekey, PREKEYS_LOW, SIGNATURE_LEN,
};
use mm_common::protocol::{ClientMsg, ErrorCode, ServerMsg, PROTOCOL_VERSION};
use mm_server::Limits;
use mm_tests::{identity_for, RawTls, TestServer};

fn upload(ids: std::ops::Range<u32>) -> KeyUpload {
    KeyUpload {
        identity: [5; 32],
        signed_prekey: SignedPrekey {
            id: 1,
            key: [6; 32],
            signature: vec![1; SIGNATURE_LEN],
        },
        one_time: ids
            .map(|id| {
                let mut key = [7; 32];
                key[..4].copy_from_slice(&id.to_be_bytes());
                OneTimePrekey { id, key }
            })
            .collect(),
        device: DeviceCheck {
            previous: [0; 16],
            next: [1; 16],
        },
        replace_one_time: false,
    }
}

/// The next message that is not presence or history.
async fn next(raw: &mut RawTls) -> ServerMsg {
    loop {
        match raw.read().await.expect("the server closed") {
            ServerMsg::Joined { .. } | ServerMsg::Left { .. } | ServerMsg::History { .. } => {}
            msg => return msg,
        }
    }
}

async fn publish(raw: &mut RawTls, keys: KeyUpload) -> ServerMsg {
    raw.send(&ClientMsg::PublishKeys { keys }).await;
    next(raw).await
}

async fn fetch(raw: &mut RawTls, nick: &str) -> BundleAnswer {
    raw.send(&ClientMsg::FetchBundle { nick: nick.into() })
        .await;
    match next(raw).await {
        ServerMsg::Bundle { nick: n, answer } => {
            assert_eq!(n, nick);
            answer
        }
        other => panic!("not a bundle: {other:?}"),
    }
}

fn one_time(answer: &BundleAnswer) -> Option<u32> {
    match answer {
        BundleAnswer::Keys(b) => b.one_time.as_ref().map(|k| k.id),
        other => panic!("no keys: {other:?}"),
    }
}

#[tokio::test]
async fn keys_published_by_one_account_are_fetched_by_another() {
    let server = TestServer::start().await;
    let mut bob = RawTls::login(&server, "bob").await;
    let mut alice = RawTls::login(&server, "alice").await;
    assert_eq!(fetch(&mut alice, "bob").await, BundleAnswer::NoKeys);
    assert_eq!(fetch(&mut alice, "nobody").await, BundleAnswer::NoSuchUser);
    assert_eq!(
        publish(&mut bob, upload(0..5)).await,
        ServerMsg::KeysPublished {
            one_time: 5,
            other_device: false
        }
    );
    match fetch(&mut alice, "bob").await {
        BundleAnswer::Keys(bundle) => {
            assert_eq!(bundle.identity, [5; 32]);
            assert_eq!(bundle.signed_prekey.id, 1);
            assert_eq!(bundle.signed_prekey.key, [6; 32]);
            assert_eq!(bundle.signed_prekey.signature, vec![1; SIGNATURE_LEN]);
            assert_eq!(bundle.one_time.map(|k| k.id), Some(0));
        }
        other => panic!("{other:?}"),
    }
    // Within the reuse window alice gets no second one-time prekey of bob's: the signed
    // prekey alone.
    assert_eq!(one_time(&fetch(&mut alice, "bob").await), None);
    // 4 left, below PREKEYS_LOW: bob was told.
    assert_eq!(next(&mut bob).await, ServerMsg::PrekeysLow { one_time: 4 });
    // A second copy of bob's home publishing: the device check says so.
    let mut copy = upload(10..11);
    copy.device = DeviceCheck {
        previous: [0; 16],
        next: [2; 16],
    };
    assert_eq!(
        publish(&mut bob, copy).await,
        ServerMsg::KeysPublished {
            one_time: 5,
            other_device: true
        }
    );
}

#[tokio::test]
async fn two_fetchers_never_get_the_same_one_time_prekey() {
    let server = TestServer::start().await;
    let mut bob = RawTls::login(&server, "bob").await;
    publish(&mut bob, upload(0..40)).await;
    let mut fetchers = Vec::new();
    for i in 0..8 {
        fetchers.push(RawTls::login(&server, &format!("f{i}")).await);
    }
    // Every fetcher asks at once: each is another requester, so each takes one.
    for f in &mut fetchers {
        f.send(&ClientMsg::FetchBundle { nick: "bob".into() }).await;
    }
    let mut seen = HashSet::new();
    for f in &mut fetchers {
        let ServerMsg::Bundle { answer, .. } = next(f).await else {
            panic!("no bundle");
        };
        let id = one_time(&answer).expect("a one-time prekey for each");
        assert!(seen.insert(id), "one-time prekey {id} handed out twice");
    }
    assert_eq!(seen.len(), 8);
}

#[tokio::test]
async fn fetches_beyond_the_limit_are_told_when_to_try_again() {
    let server = TestServer::start_with(Limits {
        bundle_fetch_burst: 3,
        bundle_fetches_per_minute: 1,
        ..Limits::default()
    })
    .await;
    let mut bob = RawTls::login(&server, "bob").await;
    publish(&mut bob, upload(0..10)).await;
    let mut alice = RawTls::login(&server, "alice").await;
    for _ in 0..3 {
        assert!(matches!(
            fetch(&mut alice, "bob").await,
            BundleAnswer::Keys(_)
        ));
    }
    let BundleAnswer::RateLimited { retry_after_ms } = fetch(&mut alice, "bob").await else {
        panic!("not limited");
    };
    assert!(
        (50_000..=60_000).contains(&retry_after_ms),
        "{retry_after_ms}"
    );
    // The limit is the account's: a new connection does not reset it.
    drop(alice);
    let mut alice = RawTls::login(&server, "alice").await;
    assert!(matches!(
        fetch(&mut alice, "bob").await,
        BundleAnswer::RateLimited { .. }
    ));
    // Chat is not limited by it.
    alice
        .send(&ClientMsg::Private {
            to: "bob".into(),
            text: "hi".into(),
        })
        .await;
    assert!(matches!(next(&mut alice).await, ServerMsg::Sent { .. }));
}

#[tokio::test]
async fn the_owner_is_told_when_its_one_time_prekeys_run_low() {
    let server = TestServer::start().await;
    let mut bob = RawTls::login(&server, "bob").await;
    publish(&mut bob, upload(0..PREKEYS_LOW + 1)).await;
    for i in 0..2 {
        let mut f = RawTls::login(&server, &format!("f{i}")).await;
        assert!(one_time(&fetch(&mut f, "bob").await).is_some());
    }
    assert_eq!(
        next(&mut bob).await,
        ServerMsg::PrekeysLow {
            one_time: PREKEYS_LOW - 1
        }
    );
    // It answers with more.
    assert_eq!(
        publish(&mut bob, upload(100..150)).await,
        ServerMsg::KeysPublished {
            one_time: PREKEYS_LOW - 1 + 50,
            other_device: false
        }
    );
}

#[tokio::test]
async fn hostile_uploads_get_bad_keys_and_the_connection_stays_usable() {
    let server = TestServer::start().await;
    let mut bob = RawTls::login(&server, "bob").await;
    let mut long_signature = upload(0..1);
    long_signature.signed_prekey.signature = vec![1; SIGNATURE_LEN + 1];
    let mut short_signature = upload(0..1);
    short_signature.signed_prekey.signature = vec![1; SIGNATURE_LEN - 1];
    let mut no_signature = upload(0..1);
    no_signature.signed_prekey.signature = Vec::new();
    let mut zero_identity = upload(0..1);
    zero_identity.identity = [0; 32];
    let mut duplicates = upload(0..3);
    duplicates.one_time[2].id = 1;
    let mut zero_signed_prekey = upload(0..1);
    zero_signed_prekey.signed_prekey.key = [0; 32];
    for (what, keys) in [
        ("a 65-byte signature", long_signature),
        ("a 63-byte signature", short_signature),
        ("no signature", no_signature),
        ("a zero identity key", zero_identity),
        ("101 one-time prekeys", upload(0..101)),
        ("duplicate ids", duplicates),
        ("a zero signed prekey", zero_signed_prekey),
    ] {
        match publish(&mut bob, keys).await {
            ServerMsg::Error {
                code,
                fatal: false,
                detail,
            } => {
                assert_eq!(code, ErrorCode::BAD_KEYS, "{what}");
                assert!(!detail.is_empty(), "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // The connection goes on.
    bob.send(&ClientMsg::Ping { token: 9 }).await;
    assert_eq!(next(&mut bob).await, ServerMsg::Pong { token: 9 });
    // No keys were stored by any of them; a good upload still works. Zero one-time prekeys
    // is a valid upload: the signed prekey is then the last resort.
    let mut alice = RawTls::login(&server, "alice").await;
    assert_eq!(fetch(&mut alice, "bob").await, BundleAnswer::NoKeys);
    assert!(matches!(
        publish(&mut bob, upload(0..0)).await,
        ServerMsg::KeysPublished { one_time: 0, .. }
    ));
    assert_eq!(one_time(&fetch(&mut alice, "bob").await), None);
}

#[tokio::test]
async fn a_relay_to_an_offline_user_is_queued_and_delivered_at_login_after_a_restart() {
    let server = TestServer::start().await;
    // bob registers and leaves.
    let mut bob = RawTls::login(&server, "bob").await;
    bob.send(&ClientMsg::Quit).await;
    bob.read_to_close().await;
    let mut alice = RawTls::login(&server, "alice").await;
    alice
        .send(&ClientMsg::Relay {
            to: "bob".into(),
            payload: vec![1, 2, 3],
        })
        .await;
    let ServerMsg::Queued { id, .. } = next(&mut alice).await else {
        panic!("not queued");
    };
    // Nobody by that nick: still no-such-nick.
    alice
        .send(&ClientMsg::Relay {
            to: "nobody".into(),
            payload: vec![1],
        })
        .await;
    match next(&mut alice).await {
        ServerMsg::Error {
            code, fatal: false, ..
        } => assert_eq!(code, ErrorCode::NO_SUCH_NICK),
        other => panic!("{other:?}"),
    }
    drop(alice);
    let server = server.restart().await;
    let mut bob = RawTls::login(&server, "bob").await;
    match next(&mut bob).await {
        ServerMsg::Relay {
            id: got,
            from,
            payload,
            ..
        } => {
            assert_eq!(got, id, "the same id");
            assert_eq!(from, "alice");
            assert_eq!(payload, [1, 2, 3]);
        }
        other => panic!("{other:?}"),
    }
    // Acknowledged, it is gone: the next login gets nothing.
    bob.send(&ClientMsg::Received { up_to: id }).await;
    bob.send(&ClientMsg::Quit).await;
    bob.read_to_close().await;
    let mut bob = RawTls::login(&server, "bob").await;
    bob.send(&ClientMsg::Ping { token: 1 }).await;
    assert_eq!(next(&mut bob).await, ServerMsg::Pong { token: 1 });
}

#[tokio::test]
async fn a_protocol_5_client_is_told_to_upgrade() {
    let server = TestServer::start().await;
    let mut raw = RawTls::connect_as(&server, Some(&identity_for("old"))).await;
    raw.send(&ClientMsg::Hello {
        version: 5,
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
            assert_eq!(
                detail,
                format!("this server speaks protocol version {PROTOCOL_VERSION}, not 5: upgrade your client (mm) to one that speaks version {PROTOCOL_VERSION}")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(raw.read().await, None, "closed after it");
}
