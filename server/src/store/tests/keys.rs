//! The key directory (schema 5), on both backends: a one-time prekey is handed out once (also
//! under concurrent takes and across a reopen), the newest 200 are kept, a new identity drops
//! the old one-time prekeys, the device check, and keys go with their account.

use mm_common::prekeys::{
    DeviceCheck, KeyUpload, OneTimePrekey, SignedPrekey, DEVICE_TOKEN_LEN, MAX_ONE_TIME_STORED,
    SIGNATURE_LEN,
};

use super::*;

use crate::store::memory::MemoryStore;
use crate::store::{Published, Store, Taken};

pub(crate) const NONE: [u8; DEVICE_TOKEN_LEN] = [0; DEVICE_TOKEN_LEN];

pub(crate) fn token(n: u8) -> [u8; DEVICE_TOKEN_LEN] {
    [n; DEVICE_TOKEN_LEN]
}

/// An upload with identity `identity`, one-time prekeys with ids `ids` (key bytes from the id),
/// the device step `previous` → `next`.
pub(crate) fn upload(
    identity: u8,
    ids: std::ops::Range<u32>,
    previous: [u8; DEVICE_TOKEN_LEN],
    next: [u8; DEVICE_TOKEN_LEN],
) -> KeyUpload {
    KeyUpload {
        identity: [identity; 32],
        signed_prekey: SignedPrekey {
            id: 7,
            key: [identity.wrapping_add(1); 32],
            signature: vec![3; SIGNATURE_LEN],
        },
        one_time: ids
            .map(|id| OneTimePrekey {
                id,
                key: one_time_key(id),
            })
            .collect(),
        device: DeviceCheck { previous, next },
        replace_one_time: false,
    }
}

pub(crate) fn one_time_key(id: u32) -> [u8; 32] {
    let mut k = [9; 32];
    k[..4].copy_from_slice(&id.to_be_bytes());
    k
}

pub(crate) async fn answer<T>(r: Result<Reply<T>, StoreError>) -> T {
    r.unwrap().await.unwrap().unwrap()
}

pub(crate) async fn publish(store: &dyn Store, key: &str, keys: KeyUpload) -> Published {
    answer(store.publish_keys(key, keys)).await
}

/// The one-time prekey id a take hands out (None: none), and how many remain.
pub(crate) async fn take(store: &dyn Store, key: &str) -> (Option<u32>, u32) {
    match answer(store.take_bundle(key, true)).await {
        Taken::Bundle { bundle, remaining } => {
            if let Some(k) = &bundle.one_time {
                assert_eq!(k.key, one_time_key(k.id), "the key stored with its id");
            }
            (bundle.one_time.map(|k| k.id), remaining)
        }
        other => panic!("no bundle: {other:?}"),
    }
}

pub(crate) async fn register(store: &dyn Store, nick: &str) {
    let login = answer(store.login(nick, &format!("fp-{nick}"), 1, true)).await;
    assert!(login.outcome.admits(), "{login:?}");
}

/// Both backends, fresh.
pub(crate) fn backends<P: Place>(place: &P) -> Vec<(&'static str, Box<dyn Store>)> {
    let opts = OPTS_MANY;
    let (store, _) = place.open(opts, clock()).unwrap();
    vec![
        (
            std::any::type_name::<P>(),
            Box::new(store) as Box<dyn Store>,
        ),
        ("memory", Box::new(MemoryStore::new(opts))),
    ]
}

async fn one_time_prekeys_are_handed_out_once_oldest_first_then_the_signed_prekey_alone<
    P: Place,
>() {
    let place = P::new();
    for (name, store) in backends(&place) {
        let store = store.as_ref();
        register(store, "bob").await;
        register(store, "carol").await;
        assert_eq!(
            answer(store.take_bundle("bob", true)).await,
            Taken::NoKeys,
            "{name}"
        );
        assert_eq!(
            answer(store.take_bundle("nobody", true)).await,
            Taken::NoSuchAccount,
            "{name}"
        );
        assert_eq!(answer(store.prekey_count("bob")).await, None, "{name}");
        let p = publish(store, "bob", upload(1, 0..3, NONE, token(1))).await;
        assert_eq!(
            p,
            Published {
                one_time: 3,
                other_device: false
            },
            "{name}"
        );
        assert_eq!(take(store, "bob").await, (Some(0), 2), "{name}");
        // Without asking for one, none is used up.
        match answer(store.take_bundle("bob", false)).await {
            Taken::Bundle { bundle, remaining } => {
                assert_eq!(bundle.one_time, None, "{name}");
                assert_eq!(remaining, 2, "{name}");
                assert_eq!(bundle.identity, [1; 32], "{name}");
                assert_eq!(bundle.signed_prekey.id, 7, "{name}");
                assert_eq!(
                    bundle.signed_prekey.signature.len(),
                    SIGNATURE_LEN,
                    "{name}"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(take(store, "bob").await, (Some(1), 1), "{name}");
        assert_eq!(take(store, "bob").await, (Some(2), 0), "{name}");
        // The last resort: the signed prekey alone.
        assert_eq!(take(store, "bob").await, (None, 0), "{name}");
        assert_eq!(answer(store.prekey_count("bob")).await, Some(0), "{name}");
        // Another account's keys are its own.
        assert_eq!(
            answer(store.take_bundle("carol", true)).await,
            Taken::NoKeys,
            "{name}"
        );
    }
}

async fn takes_submitted_together_never_share_a_one_time_prekey<P: Place>() {
    let place = P::new();
    for (name, store) in backends(&place) {
        let store = store.as_ref();
        register(store, "bob").await;
        publish(store, "bob", upload(1, 0..50, NONE, token(1))).await;
        // 60 takes submitted before any is answered (one batch for SQLite).
        let replies: Vec<_> = (0..60)
            .map(|_| store.take_bundle("bob", true).unwrap())
            .collect();
        let mut ids = Vec::new();
        for r in replies {
            if let Taken::Bundle { bundle, .. } = r.await.unwrap().unwrap() {
                ids.extend(bundle.one_time.map(|k| k.id));
            }
        }
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(ids.len(), 50, "{name}: every one handed out");
        assert_eq!(unique.len(), 50, "{name}: none twice");
    }
}

async fn a_handed_out_one_time_prekey_stays_gone_after_a_reopen<P: Place>() {
    let place = P::new();
    {
        let (store, _) = place.open(OPTS_MANY, clock()).unwrap();
        register(&store, "bob").await;
        publish(&store, "bob", upload(1, 0..3, NONE, token(1))).await;
        assert_eq!(take(&store, "bob").await, (Some(0), 2));
        reply(store.close(0)).await;
        store.join();
    }
    let (store, _) = place.open(OPTS_MANY, clock()).unwrap();
    assert_eq!(answer(store.prekey_count("bob")).await, Some(2));
    assert_eq!(take(&store, "bob").await, (Some(1), 1));
    assert_eq!(take(&store, "bob").await, (Some(2), 0));
    assert_eq!(take(&store, "bob").await, (None, 0));
    // The device token survived too: the next upload from the same home is no other device.
    let p = publish(&store, "bob", upload(1, 10..11, token(1), token(2))).await;
    assert!(!p.other_device);
}

async fn the_newest_200_one_time_prekeys_are_kept<P: Place>() {
    let place = P::new();
    for (name, store) in backends(&place) {
        let store = store.as_ref();
        register(store, "bob").await;
        let mut previous = NONE;
        for round in 0..3_u8 {
            let start = u32::from(round) * 100;
            let next = token(round + 1);
            let p = publish(store, "bob", upload(1, start..start + 100, previous, next)).await;
            previous = next;
            assert_eq!(
                p.one_time,
                (u32::from(round) + 1).min(2) * 100,
                "{name}: round {round}"
            );
            assert!(!p.other_device, "{name}");
        }
        assert_eq!(
            answer(store.prekey_count("bob")).await,
            Some(MAX_ONE_TIME_STORED as u32),
            "{name}"
        );
        // The oldest 100 (ids 0..100) were dropped.
        assert_eq!(take(store, "bob").await, (Some(100), 199), "{name}");
    }
}

async fn a_new_identity_or_replace_one_time_drops_the_stored_one_time_prekeys<P: Place>() {
    let place = P::new();
    for (name, store) in backends(&place) {
        let store = store.as_ref();
        register(store, "bob").await;
        publish(store, "bob", upload(1, 0..5, NONE, token(1))).await;
        // Same identity: added.
        let p = publish(store, "bob", upload(1, 5..7, token(1), token(2))).await;
        assert_eq!(p.one_time, 7, "{name}");
        // A new identity (a new home): the old ones go, the new ones stay.
        let p = publish(store, "bob", upload(2, 100..102, token(2), token(3))).await;
        assert_eq!(p.one_time, 2, "{name}");
        match answer(store.take_bundle("bob", true)).await {
            Taken::Bundle { bundle, remaining } => {
                assert_eq!(bundle.identity, [2; 32], "{name}");
                assert_eq!(bundle.one_time.map(|k| k.id), Some(100), "{name}");
                assert_eq!(remaining, 1, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        // replace_one_time with the same identity.
        let mut u = upload(2, 200..201, token(3), token(4));
        u.replace_one_time = true;
        let p = publish(store, "bob", u).await;
        assert_eq!(p.one_time, 1, "{name}");
        assert_eq!(take(store, "bob").await, (Some(200), 0), "{name}");
        // A re-uploaded id replaces the stored key.
        publish(store, "bob", upload(2, 300..302, token(4), token(5))).await;
        let p = publish(store, "bob", upload(2, 300..301, token(5), token(6))).await;
        assert_eq!(p.one_time, 2, "{name}");
    }
}

async fn the_device_check_truth_table<P: Place>() {
    let place = P::new();
    for (name, store) in backends(&place) {
        let store = store.as_ref();
        register(store, "bob").await;
        let check = |previous, next| {
            let keys = upload(1, 0..0, previous, next);
            async move { publish(store, "bob", keys).await.other_device }
        };
        // Nothing stored yet: never another device, whatever `previous` says.
        assert!(!check(token(9), token(1)).await, "{name}: first upload");
        // Stored 1; previous = 1: the same home, stores 2.
        assert!(!check(token(1), token(2)).await, "{name}: previous matches");
        // Stored 2; next = 2 (an upload repeated after a lost answer): the same home.
        assert!(!check(token(7), token(2)).await, "{name}: next matches");
        // Stored 2; neither matches: another copy published since. Stores 3 all the same.
        assert!(check(token(1), token(3)).await, "{name}: neither matches");
        // Stored 3: the copy that stored it goes on without a warning.
        assert!(!check(token(3), token(4)).await, "{name}: the other copy");
        // A first upload (all zeros) against a stored token: another device.
        assert!(check(NONE, token(5)).await, "{name}: a fresh home");
    }
}

async fn keys_go_with_their_account<P: Place>() {
    let place = P::new();
    for (name, store) in backends(&place) {
        let store = store.as_ref();
        // Unknown accounts store nothing.
        assert!(
            store
                .publish_keys("ghost", upload(1, 0..1, NONE, token(1)))
                .unwrap()
                .await
                .unwrap()
                .is_err(),
            "{name}"
        );
        assert_eq!(
            answer(store.take_bundle("ghost", true)).await,
            Taken::NoSuchAccount,
            "{name}"
        );
        // An unused account expires with its keys; a new account of the same nick has none.
        register(store, "bob").await;
        publish(store, "bob", upload(1, 0..3, NONE, token(1))).await;
        store.logged_out("bob", 2, true).unwrap();
        let expired = answer(store.expire_unused(100, Vec::new(), 10)).await;
        assert_eq!(expired, ["bob"], "{name}");
        assert_eq!(
            answer(store.take_bundle("bob", true)).await,
            Taken::NoSuchAccount,
            "{name}"
        );
        register(store, "bob").await;
        assert_eq!(
            answer(store.take_bundle("bob", true)).await,
            Taken::NoKeys,
            "{name}"
        );
        assert_eq!(answer(store.prekey_count("bob")).await, None, "{name}");
    }
}

async fn a_take_accepted_before_commits_fail_waits_for_the_commit_and_new_ones_are_refused<
    P: Place,
>() {
    let place = P::new();
    let (store, _) = place.open_tuned(OPTS_MANY, clock(), FAST).unwrap();
    register(&store, "bob").await;
    publish(&store, "bob", upload(1, 0..2, NONE, token(1))).await;
    let lock = place.hold();
    let mut held = store.take_bundle("bob", true).unwrap();
    failing(&store).await;
    assert!(matches!(
        store.take_bundle("bob", true),
        Err(StoreError::Busy)
    ));
    assert!(matches!(
        store.publish_keys("bob", upload(1, 5..6, token(1), token(2))),
        Err(StoreError::Busy)
    ));
    // Not handed out while its deletion is not stored...
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(matches!(held.try_recv(), Err(TryRecvError::Empty)));
    // ...and handed out once it is.
    drop(lock);
    match held.await.unwrap().unwrap() {
        Taken::Bundle { bundle, remaining } => {
            assert_eq!(bundle.one_time.map(|k| k.id), Some(0));
            assert_eq!(remaining, 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(take(&store, "bob").await, (Some(1), 0));
    reply(store.close(0)).await;
    store.join();
}

fn an_account_released_by_the_operator_loses_its_keys<P: Place>() {
    let place = P::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let (store, _) = place.open(OPTS_MANY, clock()).unwrap();
        register(&store, "bob").await;
        publish(&store, "bob", upload(1, 0..3, NONE, token(1))).await;
        reply(store.close(0)).await;
        store.join();
    });
    drop(rt);
    assert!(place.release("Bob"));
    assert_eq!(place.count("prekeys") + place.count("one_time_prekeys"), 0);
}

on_both!(
    async: [a_take_accepted_before_commits_fail_waits_for_the_commit_and_new_ones_are_refused,
        one_time_prekeys_are_handed_out_once_oldest_first_then_the_signed_prekey_alone,
        takes_submitted_together_never_share_a_one_time_prekey,
        a_handed_out_one_time_prekey_stays_gone_after_a_reopen,
        the_newest_200_one_time_prekeys_are_kept,
        a_new_identity_or_replace_one_time_drops_the_stored_one_time_prekeys,
        the_device_check_truth_table,
        keys_go_with_their_account,
    ],
    sync: [an_account_released_by_the_operator_loses_its_keys],
);
