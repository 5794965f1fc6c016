//! X3DH: both sides derive the same secret and associated data, with and without a one-time
//! prekey; bad signatures and small-order keys are refused.

use super::TestRng;
use crate::e2e::x3dh::{associated_data, initiate, public_key, respond, X3dhError};
use crate::identity::{parse_key, Identity};
use crate::prekeys::{signed_prekey_message, OneTimePrekey, PrekeyBundle, SignedPrekey};

/// Bob's published keys and their secrets.
pub(super) struct Bob {
    pub identity: Identity,
    pub spk_secret: [u8; 32],
    pub otk_secret: [u8; 32],
    pub bundle: PrekeyBundle,
}

pub(super) fn bob(seed: u64, with_one_time: bool) -> Bob {
    let mut rng = TestRng(seed);
    let identity = Identity::generate_with(&mut rng);
    let spk_secret = *Identity::generate_with(&mut rng).secret();
    let otk_secret = *Identity::generate_with(&mut rng).secret();
    let spk = public_key(&spk_secret);
    let bundle = PrekeyBundle {
        identity: *identity.public(),
        signed_prekey: SignedPrekey {
            id: 1,
            key: spk,
            signature: identity
                .sign(&signed_prekey_message(1, &spk), &mut rng)
                .to_vec(),
        },
        one_time: with_one_time.then(|| OneTimePrekey {
            id: 9,
            key: public_key(&otk_secret),
        }),
    };
    Bob {
        identity,
        spk_secret,
        otk_secret,
        bundle,
    }
}

/// A point of order 8.
fn small_order() -> [u8; 32] {
    parse_key("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800").unwrap()
}

#[test]
fn both_sides_agree_with_and_without_a_one_time_prekey() {
    for with_one_time in [true, false] {
        let b = bob(1, with_one_time);
        let alice = Identity::generate_with(&mut TestRng(2));
        let ek = [0x55; 32];
        let a_start = initiate("Alice", &alice, "bob", &b.bundle, &ek).unwrap();
        let b_start = respond(
            "Bob",
            &b.identity,
            "alice",
            alice.public(),
            &public_key(&ek),
            &b.spk_secret,
            with_one_time.then_some(&b.otk_secret),
        )
        .unwrap();
        assert_eq!(*a_start.shared, *b_start.shared);
        assert_eq!(a_start.associated_data, b_start.associated_data);
        assert_eq!(
            a_start.associated_data,
            associated_data("alice", alice.public(), "BOB", b.identity.public())
        );
        // The responder forgetting (or inventing) the one-time prekey gets another secret.
        let other = respond(
            "bob",
            &b.identity,
            "alice",
            alice.public(),
            &public_key(&ek),
            &b.spk_secret,
            (!with_one_time).then_some(&b.otk_secret),
        )
        .unwrap();
        assert_ne!(*other.shared, *a_start.shared);
    }
}

#[test]
fn the_associated_data_layout() {
    let ad = associated_data("Alice", &[1; 32], "bob", &[2; 32]);
    let mut expected = b"MultiMessenger AD v1".to_vec();
    expected.extend_from_slice(&[1; 32]);
    expected.extend_from_slice(&[2; 32]);
    expected.extend_from_slice(b"\x05alice\x03bob");
    assert_eq!(ad, expected);
    // The initiator always comes first: the roles matter.
    assert_ne!(ad, associated_data("bob", &[2; 32], "alice", &[1; 32]));
}

#[test]
fn a_bad_signature_is_refused_first() {
    let mut b = bob(3, true);
    let alice = Identity::generate_with(&mut TestRng(4));
    b.bundle.signed_prekey.signature[10] ^= 1;
    assert_eq!(
        initiate("alice", &alice, "bob", &b.bundle, &[7; 32]).unwrap_err(),
        X3dhError::BadSignature
    );
    // Even when a key is also bad.
    b.bundle.one_time = Some(OneTimePrekey {
        id: 1,
        key: small_order(),
    });
    assert_eq!(
        initiate("alice", &alice, "bob", &b.bundle, &[7; 32]).unwrap_err(),
        X3dhError::BadSignature
    );
    // A signature by someone else, or of another prekey id, or of the wrong length.
    let mut b = bob(3, false);
    let mallory = Identity::generate_with(&mut TestRng(5));
    let spk = b.bundle.signed_prekey.key;
    b.bundle.signed_prekey.signature = mallory
        .sign(&signed_prekey_message(1, &spk), &mut TestRng(6))
        .to_vec();
    assert!(initiate("alice", &alice, "bob", &b.bundle, &[7; 32]).is_err());
    let mut b = bob(3, false);
    b.bundle.signed_prekey.id = 2;
    assert!(initiate("alice", &alice, "bob", &b.bundle, &[7; 32]).is_err());
    let mut b = bob(3, false);
    b.bundle.signed_prekey.signature.pop();
    assert!(initiate("alice", &alice, "bob", &b.bundle, &[7; 32]).is_err());
}

#[test]
fn small_order_keys_are_refused() {
    let alice = Identity::generate_with(&mut TestRng(8));
    // A small-order one-time prekey (the signature covers only the signed prekey).
    let mut b = bob(7, true);
    b.bundle.one_time = Some(OneTimePrekey {
        id: 1,
        key: small_order(),
    });
    assert_eq!(
        initiate("alice", &alice, "bob", &b.bundle, &[7; 32]).unwrap_err(),
        X3dhError::BadKey
    );
    // A small-order signed prekey, validly signed.
    let mut b = bob(7, false);
    b.bundle.signed_prekey.key = small_order();
    b.bundle.signed_prekey.signature = b
        .identity
        .sign(&signed_prekey_message(1, &small_order()), &mut TestRng(9))
        .to_vec();
    assert_eq!(
        initiate("alice", &alice, "bob", &b.bundle, &[7; 32]).unwrap_err(),
        X3dhError::BadKey
    );
    // The responder: a small-order identity or ephemeral key from the initiator.
    let b = bob(7, true);
    for (identity, ephemeral) in [
        (small_order(), public_key(&[7; 32])),
        (*alice.public(), small_order()),
        (*alice.public(), [0; 32]),
    ] {
        assert_eq!(
            respond(
                "bob",
                &b.identity,
                "alice",
                &identity,
                &ephemeral,
                &b.spk_secret,
                Some(&b.otk_secret)
            )
            .unwrap_err(),
            X3dhError::BadKey
        );
    }
}

#[test]
fn debug_redacts_the_secret() {
    let b = bob(1, true);
    let alice = Identity::generate_with(&mut TestRng(2));
    let start = initiate("alice", &alice, "bob", &b.bundle, &[1; 32]).unwrap();
    let debug = format!("{start:?}");
    assert!(debug.contains("<redacted>"));
    assert!(!debug.contains(&crate::identity::hex(&start.shared[..])));
}
