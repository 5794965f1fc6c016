//! Injected randomness: the same seed gives the same bytes on the wire, another seed others.

use super::*;

/// A session with renewals and rekeys, both ways; every payload relayed.
fn scenario(seed: u64) -> Vec<Vec<u8>> {
    let config = E2eConfig {
        rekey_every: 2,
        rehandshake_messages: 5,
        ..E2eConfig::default()
    };
    let mut r = Relay::seeded(config, seed);
    r.connect();
    for i in 0..12 {
        r.send(i % 3 != 0, &format!("message {i}"));
        r.deliver_all();
    }
    assert_eq!(
        Relay::messages(&r.b).len() + Relay::messages(&r.a).len(),
        12
    );
    assert!(Relay::readies(&r.a).iter().any(|(_, renewed)| *renewed));
    r.relayed
}

#[test]
fn the_same_seed_relays_the_same_bytes_and_another_seed_other_bytes() {
    let first = scenario(7);
    assert!(first.len() > 20, "{}", first.len());
    assert_eq!(first, scenario(7), "same seed, byte-identical payloads");
    let other = scenario(8);
    assert_eq!(other.len(), first.len(), "the same exchange");
    // Every payload carries a session id (and the handshakes ephemeral keys) from the seed.
    for (i, (a, b)) in first.iter().zip(&other).enumerate() {
        assert_ne!(a, b, "payload {i} does not depend on the seed");
    }
}
