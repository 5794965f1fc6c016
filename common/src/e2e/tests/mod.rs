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

mod determinism;
mod failures;
mod handshake;
mod kdf;
mod keys;
mod ratchet;
mod restarts;
mod timers;
mod vectors;
mod x3dh;
mod xeddsa;

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

fn reconnect_a_only(r: &mut Relay) {
    r.a.sessions.connection_reset();
    r.a.inbox.clear();
    r.b.inbox.clear();
    r.a.events.clear();
    r.b.events.clear();
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
