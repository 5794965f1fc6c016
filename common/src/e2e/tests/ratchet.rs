//! The Double Ratchet: random schedules with reordering, drops, duplicates, tampering and
//! save/restore (proptest); the skip bounds; forward secrecy and post-compromise recovery; and
//! `from_bytes` on arbitrary bytes.

use std::collections::HashSet;

use proptest::prelude::*;

use super::TestRng;
use crate::e2e::kdf::kdf_ck;
use crate::e2e::ratchet::{Header, Ratchet, RatchetError, MAX_SKIP, MAX_SKIPPED_KEYS};
use crate::e2e::x3dh::public_key;
use crate::identity::parse_key;

/// Alice (initiator) and Bob (responder) from a shared secret, with Bob's ratchet key.
pub(super) fn pair(seed: u64) -> (Ratchet, Ratchet, TestRng) {
    let mut rng = TestRng(seed);
    let mut shared = [0u8; 32];
    let mut bob_secret = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rng, &mut shared);
    rand_core::RngCore::fill_bytes(&mut rng, &mut bob_secret);
    let ad = b"test AD".to_vec();
    let alice =
        Ratchet::initiator(&shared, &public_key(&bob_secret), ad.clone(), &mut rng).unwrap();
    let bob = Ratchet::responder(&shared, &bob_secret, ad);
    (alice, bob, rng)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Decrypts and checks that a failure left the state unchanged.
fn decrypt_checked(
    r: &mut Ratchet,
    header: &Header,
    ct: &[u8],
    rng: &mut TestRng,
) -> Result<Vec<u8>, RatchetError> {
    let before = r.to_bytes();
    let result = r.decrypt(header, ct, rng);
    if result.is_err() {
        assert_eq!(
            *before,
            *r.to_bytes(),
            "a failed decryption changed the state"
        );
    }
    result
}

#[test]
fn a_conversation_in_order() {
    let (mut a, mut b, mut rng) = pair(1);
    assert_eq!(b.encrypt(b"too early").unwrap_err(), RatchetError::NotReady);
    assert!(!a.has_received() && !b.has_received());
    for round in 0..5u8 {
        for i in 0..3u8 {
            let (h, ct) = a.encrypt(&[round, i]).unwrap();
            assert_eq!(b.decrypt(&h, &ct, &mut rng).unwrap(), [round, i]);
        }
        assert!(b.has_received());
        let (h, ct) = b.encrypt(&[round]).unwrap();
        assert_eq!(a.decrypt(&h, &ct, &mut rng).unwrap(), [round]);
        assert!(a.has_received());
    }
}

#[test]
fn headers_encode_big_endian() {
    let h = Header {
        dh: [0xAB; 32],
        pn: 0x0102_0304,
        n: 5,
    };
    let e = h.encode();
    assert_eq!(e[..32], [0xAB; 32]);
    assert_eq!(e[32..], [1, 2, 3, 4, 0, 0, 0, 5]);
}

#[test]
fn skipping_more_than_max_skip_is_refused() {
    let (mut a, mut b, mut rng) = pair(2);
    let sent: Vec<_> = (0..=MAX_SKIP + 1)
        .map(|i| a.encrypt(&i.to_be_bytes()).unwrap())
        .collect();
    // n = MAX_SKIP + 1 would skip MAX_SKIP + 1 keys.
    let (h, ct) = &sent[MAX_SKIP as usize + 1];
    assert_eq!(
        decrypt_checked(&mut b, h, ct, &mut rng).unwrap_err(),
        RatchetError::TooManySkipped
    );
    // n = MAX_SKIP skips exactly MAX_SKIP.
    let (h, ct) = &sent[MAX_SKIP as usize];
    assert!(b.decrypt(h, ct, &mut rng).is_ok());
    assert_eq!(b.skipped_keys(), MAX_SKIP as usize);
    // Now the last one is next in the chain.
    let (h, ct) = &sent[MAX_SKIP as usize + 1];
    assert!(b.decrypt(h, ct, &mut rng).is_ok());
    let (h, ct) = &sent[0];
    assert_eq!(b.decrypt(h, ct, &mut rng).unwrap(), 0u32.to_be_bytes());
    assert_eq!(b.skipped_keys(), MAX_SKIP as usize - 1);
}

#[test]
fn stored_skipped_keys_are_bounded_oldest_dropped() {
    let (mut a, mut b, mut rng) = pair(3);
    let mut first_chain = Vec::new();
    for round in 0..3 {
        let sent: Vec<_> = (0..=MAX_SKIP)
            .map(|i| a.encrypt(&i.to_be_bytes()).unwrap())
            .collect();
        let (h, ct) = sent.last().unwrap();
        b.decrypt(h, ct, &mut rng).unwrap();
        assert!(b.skipped_keys() <= MAX_SKIPPED_KEYS);
        if round == 0 {
            first_chain = sent;
        }
        let (h, ct) = b.encrypt(b"reply").unwrap();
        a.decrypt(&h, &ct, &mut rng).unwrap();
    }
    assert_eq!(b.skipped_keys(), MAX_SKIPPED_KEYS);
    // The first chain's keys were the oldest: dropped, so its messages are now `Old`.
    let (h, ct) = &first_chain[0];
    assert_eq!(b.decrypt(h, ct, &mut rng).unwrap_err(), RatchetError::Old);
}

#[test]
fn small_order_ratchet_keys_are_refused() {
    let order8 =
        parse_key("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800").unwrap();
    let mut rng = TestRng(4);
    assert_eq!(
        Ratchet::initiator(&[1; 32], &order8, vec![], &mut rng).unwrap_err(),
        RatchetError::BadKey
    );
    let (mut a, mut b, mut rng) = pair(4);
    let (mut h, ct) = a.encrypt(b"hi").unwrap();
    h.dh = order8;
    assert_eq!(
        decrypt_checked(&mut b, &h, &ct, &mut rng).unwrap_err(),
        RatchetError::BadKey
    );
}

#[test]
fn forward_secrecy_used_message_keys_leave_the_state() {
    let (mut a, mut b, mut rng) = pair(5);
    let m0 = a.encrypt(b"zero").unwrap();
    let m1 = a.encrypt(b"one").unwrap();
    let m2 = a.encrypt(b"two").unwrap();
    // m1 first: m0's key is skipped and stored.
    b.decrypt(&m1.0, &m1.1, &mut rng).unwrap();
    let state = b.to_bytes();
    let stored = b.skipped_key_for_test(&m0.0).expect("m0's key stored");
    assert!(contains(&state, &stored));
    // In-order key of m2: derived from the receiving chain key now in the state.
    let ckr = b.receiving_chain_for_test().unwrap();
    let (_, mk2) = kdf_ck(&ckr);
    b.decrypt(&m0.0, &m0.1, &mut rng).unwrap();
    b.decrypt(&m2.0, &m2.1, &mut rng).unwrap();
    let state = b.to_bytes();
    assert!(!contains(&state, &stored), "a used skipped key stayed");
    assert!(!contains(&state, &mk2[..]), "a used message key stayed");
    assert!(!contains(&state, &ckr[..]), "an old chain key stayed");
    assert_eq!(b.skipped_keys(), 0);
}

#[test]
fn post_compromise_a_stolen_state_stops_working_after_a_round_trip() {
    let (mut a, mut b, mut rng) = pair(6);
    let (h, ct) = a.encrypt(b"hello").unwrap();
    b.decrypt(&h, &ct, &mut rng).unwrap();
    // The thief copies Bob's whole state, including his current ratchet secret.
    let stolen = b.to_bytes();
    let (h, ct) = a.encrypt(b"same chain").unwrap();
    let mut thief = Ratchet::from_bytes(&stolen).unwrap();
    assert_eq!(
        thief.decrypt(&h, &ct, &mut TestRng(99)).unwrap(),
        b"same chain"
    );
    b.decrypt(&h, &ct, &mut rng).unwrap();
    // Bob answers with the ratchet key the thief holds; Alice's next step still uses it, so
    // the thief reads her reply too: the compromise is real.
    let (h, ct) = b.encrypt(b"reply").unwrap();
    a.decrypt(&h, &ct, &mut rng).unwrap();
    let (h1, ct1) = a.encrypt(b"readable").unwrap();
    assert_eq!(
        thief.decrypt(&h1, &ct1, &mut TestRng(99)).unwrap(),
        b"readable"
    );
    // Bob receives it and draws a new ratchet key; once Alice used it, the thief is out.
    b.decrypt(&h1, &ct1, &mut rng).unwrap();
    let (h, ct) = b.encrypt(b"healed").unwrap();
    a.decrypt(&h, &ct, &mut rng).unwrap();
    let (h2, ct2) = a.encrypt(b"secret again").unwrap();
    assert!(thief.decrypt(&h2, &ct2, &mut TestRng(99)).is_err());
    let mut fresh_thief = Ratchet::from_bytes(&stolen).unwrap();
    assert!(fresh_thief.decrypt(&h2, &ct2, &mut TestRng(99)).is_err());
    assert_eq!(b.decrypt(&h2, &ct2, &mut rng).unwrap(), b"secret again");
}

#[test]
fn debug_shows_nothing_secret() {
    let (a, _, _) = pair(7);
    let debug = format!("{a:?}");
    assert!(debug.starts_with("Ratchet"), "{debug}");
    let state = a.to_bytes();
    // No 8 consecutive bytes of the state (hex) appear in the Debug output beyond the public key
    // prefix it shows.
    let hex_state = crate::identity::hex(&state);
    for chunk in hex_state.as_bytes().chunks(16) {
        let chunk = std::str::from_utf8(chunk).unwrap();
        if chunk.len() == 16 {
            assert!(!debug.contains(chunk), "{debug}");
        }
    }
}

#[test]
fn saved_state_round_trips_and_damage_is_refused() {
    let (mut a, mut b, mut rng) = pair(8);
    let m0 = a.encrypt(b"0").unwrap();
    let m1 = a.encrypt(b"1").unwrap();
    b.decrypt(&m1.0, &m1.1, &mut rng).unwrap();
    let bytes = b.to_bytes();
    assert_eq!(bytes[0], 1, "format version");
    let mut restored = Ratchet::from_bytes(&bytes).unwrap();
    assert_eq!(*restored.to_bytes(), *bytes);
    assert_eq!(restored.decrypt(&m0.0, &m0.1, &mut rng).unwrap(), b"0");
    assert_eq!(Ratchet::from_bytes(&[]).unwrap_err(), RatchetError::Format);
    let mut v2 = bytes.to_vec();
    v2[0] = 2;
    assert_eq!(Ratchet::from_bytes(&v2).unwrap_err(), RatchetError::Format);
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert_eq!(
        Ratchet::from_bytes(&longer).unwrap_err(),
        RatchetError::Format
    );
    for cut in 0..bytes.len() {
        assert!(Ratchet::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

/// One step of a random schedule.
#[derive(Debug, Clone)]
enum Op {
    /// Alice (`true`) or Bob sends a new message.
    Send(bool),
    /// Delivers the in-flight message `pick` (modulo) to Alice (`true`) or Bob; `keep` leaves a
    /// copy in flight (a duplicate delivered later).
    Deliver { to_a: bool, pick: usize, keep: bool },
    /// The relay drops an in-flight message.
    Drop { to_a: bool, pick: usize },
    /// The relay alters an in-flight message (a bit of its ciphertext, or a header field)
    /// before delivering it; the genuine one stays in flight.
    Tamper {
        to_a: bool,
        pick: usize,
        what: u8,
        bit: usize,
    },
    /// Replays an already delivered message.
    Replay { to_a: bool, pick: usize },
    /// Saves and restores Alice (`true`) or Bob.
    Restart(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(Op::Send),
        4 => (any::<bool>(), any::<usize>(), prop::bool::weighted(0.1))
            .prop_map(|(to_a, pick, keep)| Op::Deliver { to_a, pick, keep }),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(to_a, pick)| Op::Drop { to_a, pick }),
        1 => (any::<bool>(), any::<usize>(), 0..4u8, any::<usize>())
            .prop_map(|(to_a, pick, what, bit)| Op::Tamper { to_a, pick, what, bit }),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(to_a, pick)| Op::Replay { to_a, pick }),
        1 => any::<bool>().prop_map(Op::Restart),
    ]
}

type Msg = (u64, Header, Vec<u8>);

struct Party {
    ratchet: Ratchet,
    /// Messages on their way to this party.
    inbox: Vec<Msg>,
    /// Messages this party decrypted (for replays).
    delivered: Vec<Msg>,
    /// Ids this party decrypted.
    seen: HashSet<u64>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_schedules(seed: u64, ops in prop::collection::vec(op(), 1..120)) {
        let (a, b, mut rng) = pair(seed);
        let mut parties = [
            Party { ratchet: a, inbox: vec![], delivered: vec![], seen: HashSet::new() },
            Party { ratchet: b, inbox: vec![], delivered: vec![], seen: HashSet::new() },
        ];
        let mut next_id = 0u64;
        let plaintext = |id: u64| format!("message {id}").into_bytes();
        for op in ops {
            match op {
                Op::Send(by_a) => {
                    let (me, other) = if by_a { (0, 1) } else { (1, 0) };
                    match parties[me].ratchet.encrypt(&plaintext(next_id)) {
                        Ok((h, ct)) => {
                            parties[other].inbox.push((next_id, h, ct));
                            next_id += 1;
                        }
                        Err(e) => {
                            prop_assert_eq!(e, RatchetError::NotReady);
                            prop_assert!(!by_a && !parties[me].ratchet.has_received());
                        }
                    }
                }
                Op::Deliver { to_a, pick, keep } => {
                    let p = &mut parties[usize::from(!to_a)];
                    if p.inbox.is_empty() { continue; }
                    let i = pick % p.inbox.len();
                    let msg = if keep { p.inbox[i].clone() } else { p.inbox.remove(i) };
                    let result = decrypt_checked(&mut p.ratchet, &msg.1, &msg.2, &mut rng);
                    if p.seen.contains(&msg.0) {
                        prop_assert_eq!(result, Err(RatchetError::Old));
                    } else {
                        prop_assert_eq!(result, Ok(plaintext(msg.0)));
                        p.seen.insert(msg.0);
                        p.delivered.push(msg);
                    }
                }
                Op::Drop { to_a, pick } => {
                    let p = &mut parties[usize::from(!to_a)];
                    if !p.inbox.is_empty() {
                        let i = pick % p.inbox.len();
                        p.inbox.remove(i);
                    }
                }
                Op::Tamper { to_a, pick, what, bit } => {
                    let p = &mut parties[usize::from(!to_a)];
                    if p.inbox.is_empty() { continue; }
                    let (_, mut h, mut ct) = p.inbox[pick % p.inbox.len()].clone();
                    match what {
                        0 => { let i = bit % (ct.len() * 8); ct[i / 8] ^= 1 << (i % 8); }
                        1 => { let i = bit % 256; h.dh[i / 8] ^= 1 << (i % 8); }
                        2 => h.pn ^= 1 << (bit % 32),
                        _ => h.n ^= 1 << (bit % 32),
                    }
                    prop_assert!(decrypt_checked(&mut p.ratchet, &h, &ct, &mut rng).is_err());
                }
                Op::Replay { to_a, pick } => {
                    let p = &mut parties[usize::from(!to_a)];
                    if p.delivered.is_empty() { continue; }
                    let (_, h, ct) = p.delivered[pick % p.delivered.len()].clone();
                    prop_assert_eq!(
                        decrypt_checked(&mut p.ratchet, &h, &ct, &mut rng),
                        Err(RatchetError::Old)
                    );
                }
                Op::Restart(a) => {
                    let p = &mut parties[usize::from(!a)];
                    let bytes = p.ratchet.to_bytes();
                    p.ratchet = Ratchet::from_bytes(&bytes).unwrap();
                    prop_assert_eq!(&*p.ratchet.to_bytes(), &*bytes);
                }
            }
            for p in &parties {
                prop_assert!(p.ratchet.skipped_keys() <= MAX_SKIPPED_KEYS);
            }
        }
        // Everything still in flight arrives (in the schedule's order), once each.
        for p in &mut parties {
            for msg in std::mem::take(&mut p.inbox) {
                let result = p.ratchet.decrypt(&msg.1, &msg.2, &mut rng);
                if p.seen.insert(msg.0) {
                    prop_assert_eq!(result, Ok(plaintext(msg.0)));
                } else {
                    prop_assert_eq!(result, Err(RatchetError::Old));
                }
            }
        }
    }

    #[test]
    fn from_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Ratchet::from_bytes(&bytes);
        let mut versioned = vec![1u8];
        versioned.extend_from_slice(&bytes);
        let _ = Ratchet::from_bytes(&versioned);
    }

    #[test]
    fn damaged_saved_states_never_panic(seed: u64, flips in prop::collection::vec(any::<usize>(), 1..6)) {
        let (mut a, mut b, mut rng) = pair(seed);
        let (h, ct) = a.encrypt(b"x").unwrap();
        let _ = a.encrypt(b"y").unwrap();
        let (h2, ct2) = a.encrypt(b"z").unwrap();
        b.decrypt(&h2, &ct2, &mut rng).unwrap();
        let mut bytes = b.to_bytes().to_vec();
        for f in flips {
            let i = f % (bytes.len() * 8);
            bytes[i / 8] ^= 1 << (i % 8);
        }
        if let Ok(mut r) = Ratchet::from_bytes(&bytes) {
            let _ = r.decrypt(&h, &ct, &mut rng);
            let _ = r.encrypt(b"after");
        }
    }
}
