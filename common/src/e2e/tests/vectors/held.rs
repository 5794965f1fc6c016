//! The `sessions_held` section of the vectors: a scripted run in which Bob's home is replaced
//! (a new identity under his nick) and his messages to Alice under the new key are held until
//! she accepts it, then shown; so that the browser holds, saves and releases them as Rust does,
//! byte for byte.

use std::time::Instant;

use serde_json::{json, Value};

use super::sessions::{bundle_of, Run, NOW_MS};
use super::CounterRng;
use crate::e2e::{E2eConfig, Sessions};
use crate::identity::{hex, Identity};
use crate::pins::Pins;

pub(super) const ABOUT: &str = "Messages under a changed key, held until /accept-key: the same \
rules as the sessions section (identities drawn in party order from CounterRng(\"sessions held \
identities\"), each party's randomness from CounterRng(rng_labels[party])), but a party's nick \
is nicks[party]: bob-new is Bob's replaced home (a new identity under the nick bob). More ops: \
accept_key {peer} (/accept-key), not_shown {peer, id} (the caller could not show that \
message: its save failed), acknowledged {up_to}, show_released (a save works again: the \
messages released and not shown are shown). More events: Held {peer, held, dropped} (messages held now \
under a key not accepted yet, and how many went over the bounds), Released {peer, key (hex), \
count} (after /accept-key: the held messages follow, as if they arrived then).";

/// The section.
pub(super) fn held_vectors() -> Value {
    let mut ids = CounterRng::new("sessions held identities");
    let parties = ["alice", "bob", "bob-new"];
    let nicks = ["alice", "bob", "bob"];
    let secrets: Vec<[u8; 32]> = parties.iter().map(|_| ids.bytes()).collect();
    let labels: Vec<String> = parties
        .iter()
        .map(|p| format!("sessions held {p}"))
        .collect();
    let make = |i: usize| {
        Sessions::with_rng(
            nicks[i],
            Identity::from_secret(secrets[i]),
            Pins::default(),
            E2eConfig::default(),
            Box::new(CounterRng::new(&labels[i])),
        )
    };
    let (mut alice, mut bob, mut bob_new) = (make(0), make(1), make(2));
    let mut run = Run {
        base: Instant::now(),
        at_ms: 0,
        steps: Vec::new(),
    };
    let r = &mut run;

    // Alice and Bob talk: Alice pins Bob's key.
    let bob_upload = r.login("bob", &mut bob, NOW_MS);
    r.published("bob", &mut bob, 100, false);
    let alice_upload = r.login("alice", &mut alice, NOW_MS);
    r.published("alice", &mut alice, 100, false);
    r.send("alice", &mut alice, "bob", "Hi Bob", 1);
    let a1 = r.bundle("alice", &mut alice, "bob", bundle_of(&bob_upload, 0));
    r.receive("bob", &mut bob, "alice", 10, &a1);
    let b1 = r.send("bob", &mut bob, "alice", "Hi Alice", 1);
    r.receive("alice", &mut alice, "bob", 20, &b1);

    // Bob's home is replaced: his new key starts a session with Alice and sends twice.
    r.login("bob-new", &mut bob_new, NOW_MS);
    r.published("bob-new", &mut bob_new, 100, false);
    r.send("bob-new", &mut bob_new, "alice", "It's me, new phone", 1);
    let n1 = r.bundle(
        "bob-new",
        &mut bob_new,
        "alice",
        bundle_of(&alice_upload, 0),
    );
    let n2 = r.send("bob-new", &mut bob_new, "alice", "Did you get it?", 2);
    // Alice holds both (blocked, told how many), once each.
    r.receive("alice", &mut alice, "bob", 21, &n1);
    r.receive("alice", &mut alice, "bob", 22, &n2);
    r.receive("alice", &mut alice, "bob", 21, &n1);
    r.receive("alice", &mut alice, "bob", 23, &n1);
    // /insecure shows nothing held; /accept-key shows both, in order.
    r.command("alice", &mut alice, "end", "bob");
    let now = r.now();
    let actions = alice.accept_key("bob", now).expect("a key changed");
    r.step(
        "alice",
        json!({"op": "accept_key", "peer": "bob"}),
        &actions,
    );
    // The save after /accept-key failed: neither could be shown (and the server will not
    // send them again); they are kept over acknowledgements and shown once a save works.
    for id in [21, 22] {
        alice.not_shown("bob", id);
        r.step(
            "alice",
            json!({"op": "not_shown", "peer": "bob", "id": id}),
            &[],
        );
    }
    alice.acknowledged(30);
    r.step("alice", json!({"op": "acknowledged", "up_to": 30}), &[]);
    let now = r.now();
    let actions = alice.show_released(now);
    r.step("alice", json!({"op": "show_released"}), &actions);
    // The start is taken once.
    r.receive("alice", &mut alice, "bob", 24, &n1);
    // Secure again, on the session the new key started.
    r.command("alice", &mut alice, "start", "bob");
    let a2 = r.send("alice", &mut alice, "bob", "Welcome back", 2);
    r.receive("bob-new", &mut bob_new, "alice", 11, &a2);

    json!({
        "about": ABOUT,
        "parties": parties,
        "nicks": nicks,
        "identities": secrets.iter().map(|s| hex(s)).collect::<Vec<_>>(),
        "rng_labels": labels,
        "steps": run.steps,
    })
}
