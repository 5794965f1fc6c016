//! The end-to-end state machine facing a hostile relay: arbitrary payloads "from bob", first
//! with no session, then inside an established session. Must never panic, and nothing that
//! did not decrypt may ever come out as a secure message.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use mm_common::e2e::{Action, E2eConfig, E2eEvent, Sessions};
use mm_common::identity::Identity;
use mm_common::pins::Pins;

fn identities() -> &'static (Identity, Identity) {
    static IDS: OnceLock<(Identity, Identity)> = OnceLock::new();
    IDS.get_or_init(|| (Identity::generate(), Identity::generate()))
}

fn no_secure_message(actions: &[Action]) {
    assert!(!actions.iter().any(|a| matches!(a, Action::Event(E2eEvent::Message { .. }))));
}

fuzz_target!(|data: &[u8]| {
    let (a, b) = identities();
    let now = Instant::now();
    // No session at all.
    let mut alice = Sessions::new("alice", a.clone(), Pins::default(), E2eConfig::default());
    no_secure_message(&alice.receive("bob", data, now));

    // An established session, then the garbage.
    let mut alice = Sessions::new("alice", a.clone(), Pins::default(), E2eConfig::default());
    let mut bob = Sessions::new("bob", b.clone(), Pins::default(), E2eConfig::default());
    let mut to_bob: Vec<Vec<u8>> = Vec::new();
    let mut to_alice: Vec<Vec<u8>> = Vec::new();
    let collect = |actions: Vec<Action>, out: &mut Vec<Vec<u8>>| {
        for action in actions {
            if let Action::Send { payload, .. } = action {
                out.push(payload);
            }
        }
    };
    if let Ok(actions) = alice.start("bob", now) {
        collect(actions, &mut to_bob);
    }
    for _ in 0..3 {
        for payload in std::mem::take(&mut to_bob) {
            collect(bob.receive("alice", &payload, now), &mut to_alice);
        }
        for payload in std::mem::take(&mut to_alice) {
            collect(alice.receive("bob", &payload, now), &mut to_bob);
        }
    }
    no_secure_message(&alice.receive("bob", data, now));
});
