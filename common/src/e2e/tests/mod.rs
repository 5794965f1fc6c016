//! The end-to-end state machine, tested in memory: two `Sessions` and a relay the test
//! controls (it can drop, replay, reorder and alter payloads). Every random byte (identities,
//! session ids, ephemeral keys) comes from [`TestRng`], seeded per test: runs are repeatable.

use std::cell::Cell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};

use super::config::RESPONDER_PATIENCE;
use super::*;
use crate::identity::Identity;
use crate::pins::Pins;

/// TEST-ONLY, NOT CRYPTOGRAPHIC: SplitMix64 (Steele, Lea, Flood 2014), a deterministic
/// generator whose whole state is one `u64` seed. It claims `CryptoRng` only so that tests can
/// inject it where the end-to-end layer takes a secure generator; it must never leave tests.
struct TestRng(u64);

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for TestRng {}

thread_local! {
    /// Seeds handed out on this test's thread (each test runs on its own thread).
    static NEXT_SEED: Cell<u64> = const { Cell::new(1) };
}

/// The next seed of this test: the same sequence in every run of a test.
fn next_seed() -> u64 {
    NEXT_SEED.with(|n| {
        let seed = n.get();
        n.set(seed + 1);
        seed
    })
}

/// An identity drawn from a new seed of this test.
fn test_identity() -> Identity {
    Identity::generate_with(&mut TestRng(next_seed()))
}

/// `Sessions` drawing from `seed`.
fn seeded_sessions(
    nick: &str,
    identity: Identity,
    pins: Pins,
    config: E2eConfig,
    seed: u64,
) -> Sessions {
    Sessions::with_rng(nick, identity, pins, config, Box::new(TestRng(seed)))
}

/// `Sessions` drawing from a new seed of this test.
fn test_sessions(nick: &str, identity: Identity, pins: Pins, config: E2eConfig) -> Sessions {
    seeded_sessions(nick, identity, pins, config, next_seed())
}

struct Side {
    nick: &'static str,
    sessions: Sessions,
    inbox: VecDeque<Vec<u8>>,
    events: Vec<E2eEvent>,
    pins_saved: usize,
    /// Tags of the texts sent, in order.
    sent_lines: Vec<u64>,
    /// Peers it asked the server to monitor.
    monitored: Vec<String>,
}

struct Relay {
    a: Side,
    b: Side,
    now: Instant,
    /// Every payload relayed, in order.
    relayed: Vec<Vec<u8>>,
}

fn side(nick: &'static str, identity: Identity, config: E2eConfig, seed: u64) -> Side {
    Side {
        nick,
        sessions: seeded_sessions(nick, identity, Pins::default(), config, seed),
        inbox: VecDeque::new(),
        events: Vec::new(),
        pins_saved: 0,
        sent_lines: Vec::new(),
        monitored: Vec::new(),
    }
}

impl Relay {
    fn new() -> Relay {
        Self::with_config(E2eConfig::default())
    }

    fn with_config(config: E2eConfig) -> Relay {
        Self::seeded(config, next_seed())
    }

    /// Alice and bob with identities and randomness all drawn from `seed`.
    fn seeded(config: E2eConfig, seed: u64) -> Relay {
        let mut rng = TestRng(seed);
        let (alice, bob) = (
            Identity::generate_with(&mut rng),
            Identity::generate_with(&mut rng),
        );
        Relay {
            a: side("alice", alice, config.clone(), rng.next_u64()),
            b: side("bob", bob, config, rng.next_u64()),
            now: Instant::now(),
            relayed: Vec::new(),
        }
    }

    /// Applies actions produced by `from_a ? alice : bob`.
    fn apply(&mut self, from_a: bool, actions: Vec<Action>) {
        for action in actions {
            let (me, other) = if from_a {
                (&mut self.a, &mut self.b)
            } else {
                (&mut self.b, &mut self.a)
            };
            match action {
                Action::Send { to, payload, line } => {
                    assert_eq!(to, other.nick, "sent to the peer");
                    me.sent_lines.extend(line);
                    self.relayed.push(payload.clone());
                    other.inbox.push_back(payload);
                }
                Action::Event(e) => me.events.push(e),
                Action::Persist => me.pins_saved += 1,
                Action::Monitor(nick) => {
                    assert_eq!(nick, other.nick, "monitors the peer");
                    me.monitored.push(nick);
                }
            }
        }
    }

    /// Delivers one payload to alice (`to_a`) or bob.
    fn deliver_one(&mut self, to_a: bool) -> bool {
        let now = self.now;
        let (to, from) = if to_a {
            (&mut self.a, &self.b)
        } else {
            (&mut self.b, &self.a)
        };
        let Some(payload) = to.inbox.pop_front() else {
            return false;
        };
        let actions = to.sessions.receive(from.nick, &payload, now);
        self.apply(to_a, actions);
        true
    }

    fn deliver_all(&mut self) {
        while self.deliver_one(false) || self.deliver_one(true) {}
    }

    fn start(&mut self, by_a: bool) {
        let now = self.now;
        let (me, peer) = if by_a {
            (&mut self.a, "bob")
        } else {
            (&mut self.b, "alice")
        };
        let actions = me.sessions.start(peer, now).unwrap();
        self.apply(by_a, actions);
    }

    fn connect(&mut self) {
        self.start(true);
        self.deliver_all();
        assert!(matches!(
            self.a.sessions.status("bob"),
            Status::Secure { .. }
        ));
        assert!(matches!(
            self.b.sessions.status("alice"),
            Status::Secure { .. }
        ));
    }

    /// Sends a text from alice (`by_a`) or bob; it must go encrypted.
    fn send(&mut self, by_a: bool, text: &str) {
        let now = self.now;
        let (me, peer) = if by_a {
            (&mut self.a, "bob")
        } else {
            (&mut self.b, "alice")
        };
        match me.sessions.send_text(peer, text, 0, now).unwrap() {
            Outgoing::Secure(actions) => self.apply(by_a, actions),
            other => panic!("{text}: {other:?}"),
        }
    }

    fn messages(side: &Side) -> Vec<String> {
        side.events
            .iter()
            .filter_map(|e| match e {
                E2eEvent::Message { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    fn failures(side: &Side) -> Vec<Failure> {
        side.events
            .iter()
            .filter_map(|e| match e {
                E2eEvent::Failed { failure, .. } => Some(failure.clone()),
                _ => None,
            })
            .collect()
    }

    fn readies(side: &Side) -> Vec<(Trust, bool)> {
        side.events
            .iter()
            .filter_map(|e| match e {
                E2eEvent::Ready { trust, renewed, .. } => Some((*trust, *renewed)),
                _ => None,
            })
            .collect()
    }
}

fn envelope(payload: &[u8]) -> Envelope {
    postcard::from_bytes(payload).unwrap()
}

/// A new `Sessions` for `nick`, with a new identity, no pins and the default configuration.
fn fresh(nick: &str) -> Sessions {
    test_sessions(nick, test_identity(), Pins::default(), E2eConfig::default())
}

/// The opening of a real handshake "from `from`" to `to`, made by a `Sessions` with a key of its
/// own that is never used again (a forger: it cannot finish the handshake).
fn forged_hello(from: &str, to: &str, now: Instant) -> Vec<u8> {
    match fresh(from).start(to, now).unwrap().into_iter().next() {
        Some(Action::Send { payload, .. }) => payload,
        other => panic!("{other:?}"),
    }
}

/// A Hello carrying `noise` as its handshake message (a broken one, for the tests that send it).
fn hello_with(noise: Vec<u8>) -> Vec<u8> {
    postcard::to_allocvec(&Envelope::Hello {
        session: [7; 16],
        noise,
    })
    .unwrap()
}

#[test]
fn handshake_then_messages_both_ways() {
    let mut r = Relay::new();
    r.connect();
    assert_eq!(Relay::readies(&r.a), vec![(Trust::New, false)]);
    assert_eq!(Relay::readies(&r.b), vec![(Trust::New, false)]);
    assert!(
        r.a.pins_saved >= 1 && r.b.pins_saved >= 1,
        "both pinned the other on first use, and saved"
    );
    assert_eq!(
        r.a.sessions.pins().get("bob").unwrap().key,
        *r.b.sessions.public_key()
    );
    assert_eq!(
        r.b.sessions.pins().get("alice").unwrap().key,
        *r.a.sessions.public_key()
    );
    assert_eq!(
        (r.a.monitored.len(), r.b.monitored.len()),
        (1, 1),
        "both watch the other"
    );
    assert!(r.b.events.contains(&E2eEvent::Starting {
        peer: "alice".into(),
        by_peer: true
    }));
    assert!(r.a.events.contains(&E2eEvent::Starting {
        peer: "bob".into(),
        by_peer: false
    }));
    match (r.a.sessions.status("bob"), r.b.sessions.status("alice")) {
        (Status::Secure { key: kb, .. }, Status::Secure { key: ka, .. }) => {
            assert_eq!(&kb, r.b.sessions.public_key());
            assert_eq!(&ka, r.a.sessions.public_key());
        }
        other => panic!("{other:?}"),
    }
    r.send(true, "hello bob");
    r.send(false, "hi alice");
    r.send(true, "how are you?");
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), vec!["hello bob", "how are you?"]);
    assert_eq!(Relay::messages(&r.a), vec!["hi alice"]);
    assert_eq!(
        r.a.sessions.safety_number("bob").unwrap(),
        r.b.sessions.safety_number("alice").unwrap()
    );
}

#[test]
fn handshake_messages_carry_no_content_and_data_is_not_plaintext() {
    let mut r = Relay::new();
    r.start(true);
    let hello = r.b.inbox[0].clone();
    match envelope(&hello) {
        Envelope::Hello { noise, .. } => assert_eq!(
            noise.len(),
            32,
            "message 1 is just the ephemeral key: no payload"
        ),
        other => panic!("{other:?}"),
    }
    r.deliver_all();
    r.send(true, "attack at dawn");
    let data = r.b.inbox[0].clone();
    assert!(!data.windows(6).any(|w| w == b"attack"));
}

#[test]
fn texts_wait_for_the_handshake_then_go_encrypted() {
    let mut r = Relay::new();
    r.start(true);
    let now = r.now;
    assert_eq!(
        r.a.sessions.send_text("bob", "early 1", 11, now).unwrap(),
        Outgoing::Queued(vec![])
    );
    assert_eq!(
        r.a.sessions.send_text("bob", "early 2", 12, now).unwrap(),
        Outgoing::Queued(vec![])
    );
    assert_eq!(r.a.sessions.status("bob"), Status::Starting);
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), vec!["early 1", "early 2"]);
    assert_eq!(
        r.a.sent_lines,
        [11, 12],
        "each text's payload carries its tag"
    );
    r.send(true, "later");
    assert_eq!(r.a.sent_lines, [11, 12, 0]);
}

#[test]
fn without_a_session_texts_are_plain_and_to_oneself_too() {
    let mut r = Relay::new();
    let now = r.now;
    assert_eq!(
        r.a.sessions.send_text("bob", "x", 0, now).unwrap(),
        Outgoing::Plain
    );
    assert_eq!(
        r.a.sessions.send_text("alice", "x", 0, now).unwrap(),
        Outgoing::Plain
    );
    assert_eq!(
        r.a.sessions.start("ALICE", now).unwrap_err(),
        Refused::Yourself
    );
    assert!(matches!(
        r.a.sessions.start("not a nick", now),
        Err(Refused::InvalidNick(_))
    ));
}

#[test]
fn simultaneous_starts_give_one_session() {
    for alice_first in [true, false] {
        let mut r = Relay::new();
        r.start(true);
        r.start(false);
        // Deliver in either order.
        if alice_first {
            r.deliver_one(false);
            r.deliver_one(true);
        } else {
            r.deliver_one(true);
            r.deliver_one(false);
        }
        r.deliver_all();
        assert_eq!(Relay::readies(&r.a).len(), 1, "{:?}", r.a.events);
        assert_eq!(Relay::readies(&r.b).len(), 1, "{:?}", r.b.events);
        assert!(Relay::failures(&r.a).is_empty() && Relay::failures(&r.b).is_empty());
        r.send(true, "one");
        r.send(false, "two");
        r.deliver_all();
        assert_eq!(Relay::messages(&r.b), vec!["one"]);
        assert_eq!(Relay::messages(&r.a), vec!["two"]);
    }
}

/// Sends two texts from alice and hands the relay's copies to `mangle` before bob sees them.
fn mangled(mangle: impl FnOnce(&mut VecDeque<Vec<u8>>)) -> Relay {
    let mut r = Relay::new();
    r.connect();
    r.send(true, "first");
    r.send(true, "second");
    mangle(&mut r.b.inbox);
    r.deliver_all();
    r
}

fn assert_failed_closed(r: &Relay, expect_messages: &[&str]) {
    assert_eq!(
        Relay::messages(&r.b),
        expect_messages,
        "nothing that failed is shown"
    );
    assert_eq!(Relay::failures(&r.b), vec![Failure::Decrypt]);
    assert_eq!(
        r.b.sessions.status("alice"),
        Status::Failed(Failure::Decrypt)
    );
    // The peer is told, and both now refuse to send until the users act.
    assert_eq!(
        Relay::failures(&r.a),
        vec![Failure::PeerAborted(AbortReason::DecryptFailed)]
    );
}

#[test]
fn tampered_ciphertext_ends_the_session() {
    let r = mangled(|inbox| {
        let Envelope::Data {
            session,
            mut ciphertext,
        } = envelope(&inbox[0])
        else {
            panic!()
        };
        ciphertext[3] ^= 0x01;
        inbox[0] = postcard::to_allocvec(&Envelope::Data {
            session,
            ciphertext,
        })
        .unwrap();
    });
    assert_failed_closed(&r, &[]);
}

#[test]
fn replayed_ciphertext_ends_the_session() {
    let r = mangled(|inbox| {
        let first = inbox[0].clone();
        inbox.insert(1, first);
    });
    assert_failed_closed(&r, &["first"]);
}

#[test]
fn dropped_ciphertext_ends_the_session() {
    let r = mangled(|inbox| {
        inbox.pop_front();
    });
    assert_failed_closed(&r, &[]);
}

#[test]
fn reordered_ciphertext_ends_the_session() {
    let r = mangled(|inbox| inbox.swap(0, 1));
    assert_failed_closed(&r, &[]);
}

#[test]
fn truncated_and_garbage_payloads_end_the_session() {
    let r = mangled(|inbox| {
        let Envelope::Data {
            session,
            mut ciphertext,
        } = envelope(&inbox[0])
        else {
            panic!()
        };
        ciphertext.truncate(ciphertext.len() - 1);
        inbox[0] = postcard::to_allocvec(&Envelope::Data {
            session,
            ciphertext,
        })
        .unwrap();
    });
    assert_failed_closed(&r, &[]);
    let mut r = Relay::new();
    r.connect();
    let actions = r.b.sessions.receive("alice", &[0xff, 0xff, 0xff], r.now);
    r.apply(false, actions);
    assert_eq!(Relay::failures(&r.b), vec![Failure::Decrypt]);
}

#[test]
fn a_failed_session_refuses_to_send_until_the_user_acts() {
    let mut r = mangled(|inbox| inbox.swap(0, 1));
    let now = r.now;
    match r.b.sessions.send_text("alice", "psst", 0, now) {
        Err(Refused::Blocked {
            failure: Failure::Decrypt,
            ..
        }) => {}
        other => panic!("must never fall back to plain text: {other:?}"),
    }
    assert!(matches!(
        r.a.sessions.send_text("bob", "psst", 0, now),
        Err(Refused::Blocked { .. })
    ));
    // Either a new session...
    r.start(true);
    r.deliver_all();
    r.send(true, "again");
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), vec!["again"]);
    // ...or an explicit end allows plain text.
    let actions = r.b.sessions.end("alice").unwrap();
    r.apply(false, actions);
    r.deliver_all();
    assert_eq!(
        r.b.sessions.send_text("alice", "plain", 0, now).unwrap(),
        Outgoing::Plain
    );
    assert!(r.a.events.contains(&E2eEvent::Ended {
        peer: "bob".into(),
        by_peer: true,
        unsent: vec![],
    }));
    // bob's choice is not alice's: her conversation stays secure until she says so, and her
    // next text starts a new session instead of going plain.
    assert_eq!(
        r.a.sessions.status("bob"),
        Status::Interrupted {
            reason: Failure::PeerAborted(AbortReason::Ended),
            online: Some(true)
        }
    );
    assert!(matches!(
        r.a.sessions.send_text("bob", "still secret", 0, now).unwrap(),
        Outgoing::Queued(actions) if !actions.is_empty()
    ));
    let actions = r.a.sessions.end("bob").unwrap();
    r.apply(true, actions);
    assert_eq!(
        r.a.sessions.send_text("bob", "plain", 0, now).unwrap(),
        Outgoing::Plain
    );
}

#[test]
fn a_peer_that_leaves_blocks_sending_and_drops_waiting_texts_visibly() {
    let mut r = Relay::new();
    r.start(true);
    let now = r.now;
    r.a.sessions.send_text("bob", "waiting", 7, now).unwrap();
    let actions = r.a.sessions.peer_left("bob");
    r.apply(true, actions);
    assert_eq!(
        r.a.events.last(),
        Some(&E2eEvent::Failed {
            peer: "bob".into(),
            failure: Failure::PeerLeft,
            unsent: vec![7]
        })
    );
    // Never plain: bob is offline, so the text is refused with that reason.
    assert_eq!(
        r.a.sessions.send_text("bob", "x", 0, now),
        Err(Refused::Offline("bob".into()))
    );
    assert_eq!(
        r.a.sessions.status("bob"),
        Status::Interrupted {
            reason: Failure::PeerLeft,
            online: Some(false)
        }
    );
}

#[test]
fn ending_a_session_being_set_up_reports_the_texts_that_waited() {
    let mut r = Relay::new();
    r.start(true);
    let now = r.now;
    r.a.sessions.send_text("bob", "one", 3, now).unwrap();
    r.a.sessions.send_text("bob", "two", 4, now).unwrap();
    let actions = r.a.sessions.end("bob").unwrap();
    r.apply(true, actions);
    assert_eq!(
        r.a.events.last(),
        Some(&E2eEvent::Ended {
            peer: "bob".into(),
            by_peer: false,
            unsent: vec![3, 4]
        })
    );
    assert!(r.a.sent_lines.is_empty(), "nothing was sent");
}

/// A connected pair, then bob comes back with a new identity (new device, or an attacker).
fn key_changed_pair() -> Relay {
    let mut r = Relay::new();
    r.connect();
    let pins_b = r.b.sessions.pins().clone();
    r.b.sessions = test_sessions("bob", test_identity(), pins_b, E2eConfig::default());
    r.a.events.clear();
    r.b.events.clear();
    let actions = r.a.sessions.peer_left("bob");
    r.apply(true, actions);
    let actions = r.a.sessions.end("bob").unwrap();
    r.apply(true, actions);
    r.b.inbox.clear();
    r.a.events.clear();
    r
}

#[test]
fn initiator_detects_a_changed_key_before_sending_message_three() {
    let mut r = key_changed_pair();
    r.start(true); // alice -> Hello
    r.deliver_one(false); // bob -> Reply
    r.deliver_one(true); // alice checks bob's key
    let sent: Vec<Envelope> = r.b.inbox.iter().map(|p| envelope(p)).collect();
    assert!(
        matches!(
            sent.as_slice(),
            [
                Envelope::Finish { .. },
                Envelope::Abort {
                    reason: AbortReason::KeyNotAccepted,
                    ..
                }
            ]
        ),
        "message 3 (so that bob learns alice's key), then the abort: {sent:?}"
    );
    match Relay::failures(&r.a).as_slice() {
        [Failure::KeyChanged { pinned, presented }] => {
            assert_ne!(pinned, presented);
            assert_eq!(presented, r.b.sessions.public_key());
        }
        other => panic!("{other:?}"),
    }
    let now = r.now;
    assert_eq!(
        r.a.sessions.send_text("bob", "x", 0, now),
        Err(Refused::KeyNotAccepted("bob".into()))
    );
    assert_eq!(
        r.a.sessions.start("bob", now).unwrap_err(),
        Refused::KeyNotAccepted("bob".into())
    );
    // Only an explicit acceptance unblocks; the new key is pinned but not verified, and a
    // new session starts at once.
    r.deliver_all(); // bob takes message 3 and the abort
    r.b.inbox.clear();
    r.a.events.clear();
    r.b.events.clear();
    let actions = r.a.sessions.accept_key("bob", now).unwrap();
    assert_eq!(actions.first(), Some(&Action::Persist));
    r.apply(true, actions);
    r.deliver_all();
    assert_eq!(
        Relay::readies(&r.a),
        vec![(Trust::Pinned, false)],
        "accepting a key clears verified"
    );
}

#[test]
fn responder_detects_a_changed_key_after_message_three() {
    let mut r = key_changed_pair();
    // Now alice changes key and bob (who pinned her old one) answers her.
    let pins_a = r.a.sessions.pins().clone();
    r.a.sessions = test_sessions("alice", test_identity(), pins_a, E2eConfig::default());
    let pins_b = r.b.sessions.pins().clone();
    // bob keeps his identity from key_changed_pair, which alice has not pinned yet: give alice
    // a pin for it so only bob's check can fail.
    r.a.sessions
        .pins_mut()
        .replace("bob", r.b.sessions.public_key());
    assert_eq!(pins_b, *r.b.sessions.pins());
    r.start(true);
    r.deliver_all();
    match Relay::failures(&r.b).as_slice() {
        [Failure::KeyChanged { presented, .. }] => assert_eq!(presented, r.a.sessions.public_key()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        Relay::failures(&r.a),
        vec![Failure::PeerAborted(AbortReason::KeyNotAccepted)]
    );
    // Whatever alice sent on the session it believed in is never shown by bob.
    assert!(Relay::messages(&r.b).is_empty());
}

#[test]
fn small_order_keys_are_refused() {
    let mut r = Relay::new();
    let hello = hello_with(vec![0; 32]);
    let actions = r.b.sessions.receive("alice", &hello, r.now);
    r.apply(false, actions);
    assert_eq!(Relay::failures(&r.b), vec![Failure::BadKey]);
    assert!(matches!(
        envelope(&r.a.inbox[0]),
        Envelope::Abort {
            reason: AbortReason::HandshakeFailed,
            ..
        }
    ));
}

#[test]
fn rekeys_keep_the_conversation_going() {
    let mut r = Relay::with_config(E2eConfig {
        rekey_every: 3,
        ..E2eConfig::default()
    });
    r.connect();
    let mut expect_b = Vec::new();
    let mut expect_a = Vec::new();
    for i in 0..20 {
        r.send(true, &format!("a{i}"));
        expect_b.push(format!("a{i}"));
        if i % 2 == 0 {
            r.send(false, &format!("b{i}"));
            expect_a.push(format!("b{i}"));
        }
        if i % 5 == 0 {
            r.deliver_all();
        }
    }
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), expect_b);
    assert_eq!(Relay::messages(&r.a), expect_a);
}

/// Decrypts a transport message with raw keys, as someone who stole them would.
fn decrypt_with(key: &[u8; 32], nonce: u64, ciphertext: &[u8]) -> bool {
    use chacha20poly1305::aead::{Aead, KeyInit};
    let cipher = chacha20poly1305::ChaCha20Poly1305::new(key.into());
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&nonce.to_le_bytes()); // Noise's ChaChaPoly nonce: 32 zero bits, 64-bit LE counter
    cipher.decrypt(&n.into(), ciphertext).is_ok()
}

#[test]
fn rehandshake_renews_keys_so_stolen_session_keys_stop_working() {
    let config = E2eConfig {
        rekey_every: u64::MAX,
        rehandshake_messages: 4,
        ..E2eConfig::default()
    };
    let mut r = Relay::with_config(config);
    r.connect();
    let (first_session, stolen_i2r, _) = r.a.sessions.stolen()[0];
    // The thief reads the first session's traffic...
    r.send(true, "m0");
    let Envelope::Data {
        session,
        ciphertext,
    } = envelope(r.b.inbox.back().unwrap())
    else {
        panic!()
    };
    assert_eq!(session, first_session);
    assert!(
        decrypt_with(&stolen_i2r, 0, &ciphertext),
        "sanity: the stolen key opens session-1 traffic"
    );
    r.deliver_all();
    for i in 1..12 {
        r.send(true, &format!("m{i}"));
        r.send(false, &format!("r{i}"));
        r.deliver_all();
    }
    let renewals = Relay::readies(&r.a)
        .iter()
        .filter(|(_, renewed)| *renewed)
        .count();
    assert!(
        renewals >= 2,
        "expected re-handshakes, saw {:?}",
        Relay::readies(&r.a)
    );
    assert_eq!(
        Relay::messages(&r.b),
        (0..12).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        Relay::messages(&r.a),
        (1..12).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
    // ...but not what follows the re-handshake, at any nonce.
    r.send(true, "after");
    let Envelope::Data {
        session,
        ciphertext,
    } = envelope(r.b.inbox.back().unwrap())
    else {
        panic!()
    };
    assert_ne!(session, first_session);
    assert!((0..64).all(|nonce| !decrypt_with(&stolen_i2r, nonce, &ciphertext)));
    r.deliver_all();
    assert_eq!(
        Relay::messages(&r.b).last().map(String::as_str),
        Some("after")
    );
    // A replay of old-session traffic is refused, not shown.
    let old = postcard::to_allocvec(&Envelope::Data {
        session: first_session,
        ciphertext: vec![0; 200],
    })
    .unwrap();
    let actions = r.b.sessions.receive("alice", &old, r.now);
    assert!(actions
        .iter()
        .all(|a| !matches!(a, Action::Event(E2eEvent::Message { .. }))));
}

#[test]
fn rehandshake_after_time_via_tick() {
    let config = E2eConfig {
        rehandshake_after: Duration::from_secs(600),
        ..E2eConfig::default()
    };
    let mut r = Relay::with_config(config);
    r.connect();
    r.now += Duration::from_secs(601);
    let actions = r.a.sessions.tick(r.now);
    assert!(matches!(actions.as_slice(), [Action::Send { .. }]));
    r.apply(true, actions);
    r.send(true, "during renewal"); // still encrypted on the old session meanwhile
    r.deliver_all();
    assert_eq!(
        Relay::readies(&r.a).last(),
        Some(&(Trust::Pinned, true)),
        "renewed, same pinned key"
    );
    assert_eq!(Relay::messages(&r.b), vec!["during renewal"]);
}

#[test]
fn handshake_timeout_via_tick() {
    let mut r = Relay::new();
    r.start(true);
    r.b.inbox.clear(); // lost
    r.now += Duration::from_secs(31);
    let actions = r.a.sessions.tick(r.now);
    r.apply(true, actions);
    assert_eq!(Relay::failures(&r.a), vec![Failure::Timeout]);
}

#[test]
fn plaintexts_are_padded_to_buckets() {
    let mut r = Relay::new();
    r.connect();
    let mut lens = Vec::new();
    for text in [
        "a",
        &"b".repeat(100),
        &"c".repeat(120),
        &"d".repeat(300),
        &"e".repeat(4096),
    ] {
        r.send(true, text);
        let Envelope::Data { ciphertext, .. } = envelope(r.b.inbox.back().unwrap()) else {
            panic!()
        };
        lens.push(ciphertext.len());
    }
    assert_eq!(
        lens,
        vec![128 + 16, 128 + 16, 128 + 16, 512 + 16, 8192 + 16]
    );
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b).len(), 5);
}

#[test]
fn verification_is_shown_and_survives_in_pins() {
    let mut r = Relay::new();
    r.connect();
    assert_eq!(
        r.a.sessions.mark_verified("bob", r.now).unwrap(),
        vec![Action::Persist]
    );
    assert!(matches!(
        r.a.sessions.status("bob"),
        Status::Secure {
            trust: Trust::Verified,
            ..
        }
    ));
    assert!(r.a.sessions.pins().get("bob").unwrap().verified);
    assert_eq!(
        r.a.sessions.mark_verified("carol", r.now).unwrap_err(),
        Refused::NoKey("carol".into())
    );
    assert!(matches!(
        r.a.sessions.safety_number("carol"),
        Err(Refused::NoKey(_))
    ));
    // A later session with the same key reports it as verified.
    let actions = r.a.sessions.end("bob").unwrap();
    r.apply(true, actions);
    r.deliver_all();
    r.a.events.clear();
    r.connect();
    assert_eq!(Relay::readies(&r.a), vec![(Trust::Verified, false)]);
}

#[test]
fn debug_output_holds_no_key_material() {
    let r = Relay::new();
    let debug = format!("{:?}", r.a.sessions);
    assert!(debug.contains("alice"));
    assert!(!debug.contains(&crate::identity::hex(r.a.sessions.public_key())));
}

#[test]
fn a_flood_of_hellos_from_many_nicks_is_bounded() {
    let mut r = Relay::new();
    let now = r.now;
    // Real handshake openings from many different (invented) nicks, never finished.
    for i in 0..(MAX_INCOMING_HANDSHAKES + 50) {
        let nick = format!("mallory{i}");
        let hello = forged_hello(&nick, "bob", now);
        let actions = r.b.sessions.receive(&nick, &hello, now);
        let replied = actions.iter().any(|a| matches!(a, Action::Send { payload, .. } if matches!(envelope(payload), Envelope::Reply { .. })));
        assert_eq!(replied, i < MAX_INCOMING_HANDSHAKES, "hello {i}");
    }
    assert_eq!(
        r.b.sessions.peer_count(),
        MAX_INCOMING_HANDSHAKES,
        "no state for refused senders"
    );
    // A real peer still gets through once the stale handshakes time out (a responder waits
    // RESPONDER_PATIENCE times the handshake timeout).
    r.now += Duration::from_secs(30 * u64::from(RESPONDER_PATIENCE) + 1);
    let actions = r.b.sessions.tick(r.now);
    r.apply(false, actions);
    r.a.inbox.clear();
    r.b.events.clear();
    r.connect();
    assert_eq!(Relay::readies(&r.b).len(), 1);
}

/// Both sides lose their connection to the server (or restart): each resets.
fn reconnect(r: &mut Relay) {
    let monitor_a = r.a.sessions.connection_reset();
    let monitor_b = r.b.sessions.connection_reset();
    assert_eq!(
        (monitor_a, monitor_b),
        (vec!["bob".to_string()], vec!["alice".to_string()])
    );
    r.a.inbox.clear();
    r.b.inbox.clear();
    r.a.events.clear();
    r.b.events.clear();
}

#[test]
fn a_reconnect_never_turns_a_secure_conversation_plain() {
    for verified in [false, true] {
        let mut r = Relay::new();
        r.connect();
        if verified {
            r.a.sessions.mark_verified("bob", r.now).unwrap();
        }
        reconnect(&mut r);
        assert_eq!(
            r.a.sessions.status("bob"),
            Status::Interrupted {
                reason: Failure::NotConnected,
                online: None
            }
        );
        // The next text starts a new session and waits for it: never plain.
        let now = r.now;
        let actions = match r
            .a
            .sessions
            .send_text("bob", "my PIN is 1234", 5, now)
            .unwrap()
        {
            Outgoing::Queued(actions) => actions,
            other => panic!("{other:?}"),
        };
        r.apply(true, actions);
        r.deliver_all();
        assert_eq!(Relay::messages(&r.b), vec!["my PIN is 1234"]);
        assert_eq!(r.a.sent_lines.last(), Some(&5));
        let trust = if verified {
            Trust::Verified
        } else {
            Trust::Pinned
        };
        assert_eq!(Relay::readies(&r.a), vec![(trust, false)]);
    }
}

#[test]
fn an_interrupted_session_restarts_when_the_peer_comes_online() {
    let mut r = Relay::new();
    r.connect();
    reconnect(&mut r);
    let now = r.now;
    // The monitor answers: bob is offline for alice; sending is refused with that reason.
    assert!(r.a.sessions.presence("bob", false, now).is_empty());
    assert_eq!(
        r.a.sessions.send_text("bob", "x", 0, now),
        Err(Refused::Offline("bob".into()))
    );
    // bob comes online: alice's side restarts by itself.
    let actions = r.a.sessions.presence("bob", true, now);
    assert!(
        matches!(actions.first(), Some(Action::Send { .. })),
        "{actions:?}"
    );
    r.apply(true, actions);
    r.deliver_all();
    assert!(matches!(r.a.sessions.status("bob"), Status::Secure { .. }));
    assert!(matches!(
        r.b.sessions.status("alice"),
        Status::Secure { .. }
    ));
    r.send(true, "back");
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), vec!["back"]);
}

#[test]
fn both_sides_restarting_at_once_make_one_session() {
    let mut r = Relay::new();
    r.connect();
    reconnect(&mut r);
    let now = r.now;
    let a = r.a.sessions.presence("bob", true, now);
    let b = r.b.sessions.presence("alice", true, now);
    r.apply(true, a);
    r.apply(false, b);
    r.deliver_all();
    assert!(matches!(r.a.sessions.status("bob"), Status::Secure { .. }));
    assert!(matches!(
        r.b.sessions.status("alice"),
        Status::Secure { .. }
    ));
    r.send(true, "one");
    r.send(false, "two");
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), vec!["one"]);
    assert_eq!(Relay::messages(&r.a), vec!["two"]);
}

#[test]
fn automatic_restarts_wait_longer_after_each_attempt_that_fails() {
    let mut r = Relay::new();
    r.connect();
    reconnect(&mut r);
    let start = r.now;
    // bob never answers (an old client, or a relay that drops): each attempt times out.
    let mut starts = Vec::new();
    let mut announced = Vec::new();
    let mut note = |s: u64, actions: Vec<Action>| {
        for action in actions {
            match action {
                Action::Send { payload, .. }
                    if matches!(envelope(&payload), Envelope::Hello { .. }) =>
                {
                    starts.push(s)
                }
                Action::Event(e) => announced.push(e),
                _ => {}
            }
        }
    };
    note(0, r.a.sessions.presence("bob", true, start));
    for s in 1..=200u64 {
        note(s, r.a.sessions.tick(start + Duration::from_secs(s)));
    }
    // Each attempt times out after 30 s; the next waits 5, 10, 20, 40 … s after the start of
    // the last (ticks are 1 s apart). Only the first is announced (with its failure).
    assert_eq!(starts, vec![0, 31, 62, 93, 133], "{starts:?}");
    assert!(
        matches!(
            announced.as_slice(),
            [
                E2eEvent::Starting { .. },
                E2eEvent::Failed {
                    failure: Failure::Timeout,
                    ..
                }
            ]
        ),
        "{announced:?}"
    );
    assert!(r.b.events.is_empty());
}

#[test]
fn a_stale_failure_gives_todays_reason_and_secure_needs_no_insecure_first() {
    let mut r = Relay::new();
    let now = r.now;
    // `/secure bob` while bob is offline.
    let actions = r.a.sessions.start("bob", now).unwrap();
    r.apply(true, actions);
    r.b.inbox.clear();
    let actions = r.a.sessions.unreachable("bob");
    r.apply(true, actions);
    assert_eq!(
        r.a.sessions.status("bob"),
        Status::Interrupted {
            reason: Failure::Unreachable,
            online: Some(false)
        }
    );
    assert_eq!(
        r.a.sessions.send_text("bob", "hi", 0, now),
        Err(Refused::Offline("bob".into()))
    );
    // bob logs in (a while later): the session starts by itself.
    let actions =
        r.a.sessions
            .presence("bob", true, now + Duration::from_secs(60));
    r.apply(true, actions);
    r.deliver_all();
    assert!(matches!(r.a.sessions.status("bob"), Status::Secure { .. }));
    // A blocked conversation names the peer's presence now, and /secure restarts it.
    let mut r = mangled(|inbox| inbox.swap(0, 1));
    let now = r.now;
    let actions = r.b.sessions.presence("alice", true, now);
    assert!(
        actions.is_empty(),
        "a failure that may be an attack does not restart by itself"
    );
    let refused = r.b.sessions.send_text("alice", "x", 0, now).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("alice is online: /secure alice"),
        "{refused}"
    );
    r.start(false);
    r.deliver_all();
    assert!(matches!(
        r.b.sessions.status("alice"),
        Status::Secure { .. }
    ));
}

#[test]
fn a_refused_relay_ends_the_session_visibly_and_the_next_text_restarts_it() {
    let mut r = Relay::new();
    r.connect();
    r.send(true, "lost");
    r.b.inbox.clear(); // the server refused it
    let actions = r.a.sessions.relay_refused("bob");
    r.apply(true, actions);
    assert_eq!(Relay::failures(&r.a), vec![Failure::RelayRefused]);
    let now = r.now;
    let actions = match r.a.sessions.send_text("bob", "again", 9, now).unwrap() {
        Outgoing::Queued(actions) => actions,
        other => panic!("{other:?}"),
    };
    r.apply(true, actions);
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), vec!["again"]);
}

#[test]
fn conversations_survive_a_restart_secure_blocked_and_key_changed() {
    let mut r = Relay::new();
    r.connect();
    let text = r.a.sessions.conversations_text();
    assert_eq!(text, "secure bob\n");
    let restart = |r: &Relay, text: &str| {
        let mut s = test_sessions(
            "alice",
            r.a.sessions.identity().clone(),
            r.a.sessions.pins().clone(),
            E2eConfig::default(),
        );
        s.restore(text).unwrap();
        s
    };
    let mut s = restart(&r, &text);
    assert_eq!(
        s.status("bob"),
        Status::Interrupted {
            reason: Failure::NotConnected,
            online: None
        }
    );
    assert!(matches!(
        s.send_text("bob", "x", 1, r.now),
        Ok(Outgoing::Queued(_))
    ));
    // Blocked.
    let r = mangled(|inbox| inbox.swap(0, 1));
    let text = r.b.sessions.conversations_text();
    assert_eq!(text, "blocked alice decrypt\n");
    let mut s = fresh("bob");
    s.restore(&text).unwrap();
    assert_eq!(s.status("alice"), Status::Failed(Failure::Decrypt));
    // Key changed.
    let mut r = key_changed_pair();
    r.start(true);
    r.deliver_all();
    let text = r.a.sessions.conversations_text();
    assert!(text.starts_with("key-changed bob "), "{text}");
    let mut s = restart(&r, &text);
    assert_eq!(
        s.send_text("bob", "x", 0, r.now),
        Err(Refused::KeyNotAccepted("bob".into()))
    );
    assert_eq!(s.safety_number("bob"), r.a.sessions.safety_number("bob"));
    // A cut-off file and one with more conversations than a client keeps are refused.
    assert_eq!(check_conversations("secure bob\nsecure bo"), Err(2));
    let many: String = (0..=MAX_PEERS).map(|i| format!("secure p{i}\n")).collect();
    assert_eq!(check_conversations(&many), Err(MAX_PEERS + 1));
    // Damaged files are refused, not half-read.
    for bad in [
        "secure",
        "secure b@d",
        "blocked bob nonsense",
        "key-changed bob 12",
        "frobnicate bob",
    ] {
        let mut s = fresh("alice");
        assert_eq!(
            s.restore(&format!("secure carol\n{bad}\n")),
            Err(2),
            "{bad}"
        );
        assert_eq!(s.status("carol"), Status::Plain, "nothing restored");
    }
}

#[test]
fn after_a_key_change_both_sides_can_compare_the_new_keys_safety_number() {
    // bob reinstalled (new key, no pins); alice started (initiator) or bob did (responder).
    for alice_starts in [true, false] {
        let mut r = Relay::new();
        r.connect();
        r.b.sessions = fresh("bob");
        reconnect_a_only(&mut r);
        r.start(!alice_starts);
        r.deliver_all();
        assert!(
            matches!(
                r.a.sessions.status("bob"),
                Status::Failed(Failure::KeyChanged { .. })
            ),
            "{:?}",
            r.a.sessions.status("bob")
        );
        let alice_says = r.a.sessions.safety_number("bob").unwrap();
        let bob_says =
            r.b.sessions
                .safety_number("alice")
                .expect("bob learned alice's key");
        assert_eq!(alice_says, bob_says, "alice_starts={alice_starts}");
        // bob is told that alice did not accept his key; nothing was shown as a message.
        assert!(Relay::failures(&r.b).contains(&Failure::PeerAborted(AbortReason::KeyNotAccepted)));
        // /verified alone never accepts a changed key (it may have been meant for an earlier
        // comparison); they compared: /accept-key, then /verified.
        assert_eq!(
            r.a.sessions.mark_verified("bob", r.now),
            Err(Refused::KeyNotAccepted("bob".into()))
        );
        let actions = r.a.sessions.accept_key("bob", r.now).unwrap();
        r.apply(true, actions);
        let actions = r.a.sessions.mark_verified("bob", r.now).unwrap();
        r.apply(true, actions);
        r.deliver_all();
        assert!(matches!(
            r.a.sessions.status("bob"),
            Status::Secure {
                trust: Trust::Verified,
                ..
            }
        ));
        r.send(true, "hello again");
        r.deliver_all();
        assert_eq!(Relay::messages(&r.b), vec!["hello again"]);
    }
}

fn reconnect_a_only(r: &mut Relay) {
    r.a.sessions.connection_reset();
    r.a.inbox.clear();
    r.b.inbox.clear();
    r.a.events.clear();
    r.b.events.clear();
}

/// Two nicks with one identity key: two users sharing one home directory.
fn shared_key_pair() -> Relay {
    let shared = test_identity();
    Relay {
        a: side("alice", shared.clone(), E2eConfig::default(), next_seed()),
        b: side("bob", shared, E2eConfig::default(), next_seed()),
        now: Instant::now(),
        relayed: Vec::new(),
    }
}

#[test]
fn a_peer_presenting_our_own_key_is_refused_on_both_sides_and_never_pinned() {
    for alice_starts in [true, false] {
        let mut r = shared_key_pair();
        // Even an old pin of that key (made before this check existed) does not make it good.
        r.b.sessions
            .pins_mut()
            .replace("alice", r.a.sessions.public_key());
        r.start(alice_starts);
        r.deliver_all();
        assert_eq!(
            Relay::failures(&r.a),
            vec![Failure::OwnKey],
            "{alice_starts}"
        );
        assert_eq!(
            Relay::failures(&r.b),
            vec![Failure::OwnKey],
            "{alice_starts}"
        );
        assert!(Relay::readies(&r.a).is_empty() && Relay::readies(&r.b).is_empty());
        assert!(r.a.sessions.pins().get("bob").is_none(), "nothing pinned");
        assert!(
            r.b.sessions
                .pins()
                .get("alice")
                .is_some_and(|p| p.key == *r.a.sessions.public_key()),
            "only the old pin"
        );
        let now = r.now;
        for (side, peer) in [(&mut r.a, "bob"), (&mut r.b, "alice")] {
            assert_eq!(side.sessions.status(peer), Status::Failed(Failure::OwnKey));
            assert!(
                matches!(
                    side.sessions.send_text(peer, "x", 0, now),
                    Err(Refused::Blocked {
                        failure: Failure::OwnKey,
                        ..
                    })
                ),
                "never plain, never secure"
            );
        }
    }
    assert!(Failure::OwnKey.to_string().contains("your own key"));
}

#[test]
fn a_responder_waits_for_message_three_longer_than_an_initiator_waits_for_message_two() {
    let mut r = Relay::new();
    r.start(true);
    r.deliver_one(false); // bob answers; alice's message 3 is delayed (her paced queue)
    let late = r.now + Duration::from_secs(90);
    let actions = r.b.sessions.tick(late);
    assert!(actions.is_empty(), "bob still waits at 90 s: {actions:?}");
    r.now = late;
    r.deliver_all();
    assert!(matches!(
        r.b.sessions.status("alice"),
        Status::Secure { .. }
    ));
    r.send(true, "made it");
    r.deliver_all();
    assert_eq!(Relay::messages(&r.b), vec!["made it"]);
}

#[test]
fn after_a_reconnect_only_a_few_automatic_handshakes_run_at_once() {
    let mut a = fresh("alice");
    let text: String = (0..20).map(|i| format!("secure peer{i}\n")).collect();
    a.restore(&text).unwrap();
    assert_eq!(a.connection_reset().len(), 20);
    let now = Instant::now();
    let hellos = |actions: &[Action]| {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Send { payload, .. } if matches!(envelope(payload), Envelope::Hello { .. })))
            .count()
    };
    let mut started = 0;
    for i in 0..20 {
        started += hellos(&a.presence(&format!("peer{i}"), true, now));
    }
    assert_eq!(started, MAX_AUTOMATIC_STARTS);
    // As they time out (nobody answers here), the next ones start.
    let later = now + Duration::from_secs(31);
    let more = hellos(&a.tick(later));
    assert!(more > 0 && more <= MAX_AUTOMATIC_STARTS, "{more}");
}

#[test]
fn beyond_the_monitor_bound_the_same_peers_are_watched_and_the_rest_are_tried_when_written_to() {
    let mut a = fresh("alice");
    let n = crate::protocol::MAX_MONITORED + 10;
    let text: String = (0..n).map(|i| format!("secure peer{i:04}\n")).collect();
    a.restore(&text).unwrap();
    let first = a.connection_reset();
    assert_eq!(first.len(), crate::protocol::MAX_MONITORED);
    assert_eq!(a.connection_reset(), first, "the same ones every time");
    let last = format!("peer{:04}", n - 1);
    assert!(!first.contains(&last));
    // An unwatched peer seen offline once may be back: a line to it is tried, not refused.
    a.peer_left(&last);
    assert!(matches!(
        a.send_text(&last, "hi", 1, Instant::now()),
        Ok(Outgoing::Queued(actions)) if !actions.is_empty()
    ));
}

#[test]
fn a_hello_that_never_completes_does_not_unblock_a_blocked_conversation() {
    let mut r = mangled(|inbox| inbox.swap(0, 1));
    assert_eq!(
        r.b.sessions.status("alice"),
        Status::Failed(Failure::Decrypt)
    );
    // The server forges a Hello "from alice" (it cannot finish the handshake).
    let hello = forged_hello("alice", "bob", r.now);
    let actions = r.b.sessions.receive("alice", &hello, r.now);
    r.apply(false, actions);
    let later = r.now + Duration::from_secs(600);
    let actions = r.b.sessions.tick(later);
    r.apply(false, actions);
    assert_eq!(
        r.b.sessions.status("alice"),
        Status::Failed(Failure::Decrypt),
        "still blocked for its reason, not merely interrupted"
    );
    assert!(matches!(
        r.b.sessions.send_text("alice", "x", 0, later),
        Err(Refused::Blocked { .. })
    ));
}

#[test]
fn a_broken_hello_leaves_a_plain_conversation_plain() {
    let mut r = Relay::new();
    // A Hello with a payload (handshake payloads are always empty) and one with a
    // small-order key.
    for noise in [vec![9; 48], vec![0; 32]] {
        let hello = hello_with(noise);
        let actions = r.b.sessions.receive("alice", &hello, r.now);
        r.apply(false, actions);
    }
    // A broken offer only says the session did not come up; a bad key is a failure.
    assert!(r.b.events.iter().any(|e| matches!(
        e,
        E2eEvent::NotStarted {
            failure: Failure::Handshake,
            ..
        }
    )));
    assert_eq!(Relay::failures(&r.b), vec![Failure::BadKey], "shown");
    assert_eq!(r.b.sessions.status("alice"), Status::Plain);
    assert_eq!(
        r.b.sessions.send_text("alice", "plain as chosen", 0, r.now),
        Ok(Outgoing::Plain)
    );
}

#[test]
fn a_forged_hello_on_a_blocked_conversation_does_not_survive_a_reconnect_or_a_save() {
    let mut r = mangled(|inbox| inbox.swap(0, 1));
    let hello = forged_hello("alice", "bob", r.now);
    let actions = r.b.sessions.receive("alice", &hello, r.now);
    r.apply(false, actions);
    assert_eq!(r.b.sessions.conversations_text(), "blocked alice decrypt\n");
    r.b.sessions.connection_reset();
    assert_eq!(
        r.b.sessions.status("alice"),
        Status::Failed(Failure::Decrypt)
    );
    assert!(matches!(
        r.b.sessions.send_text("alice", "x", 0, r.now),
        Err(Refused::Blocked { .. })
    ));
}

#[test]
fn the_peers_insecure_is_not_undone_by_an_automatic_restart() {
    let mut r = Relay::new();
    r.connect();
    let actions = r.b.sessions.end("alice").unwrap();
    r.apply(false, actions);
    r.deliver_all();
    let later = r.now + Duration::from_secs(600);
    let actions = r.a.sessions.tick(later);
    assert!(actions.is_empty(), "alice waits for her user: {actions:?}");
    let actions = r.a.sessions.presence("bob", true, later);
    assert!(actions.is_empty(), "{actions:?}");
    // Her next line is hers to send: it starts a new session (never plain).
    assert!(matches!(
        r.a.sessions.send_text("bob", "x", 1, later),
        Ok(Outgoing::Queued(actions)) if !actions.is_empty()
    ));
}
