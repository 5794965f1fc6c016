//! The `sessions_held` section of the vectors: a scripted run in which Bob's home is replaced
//! (a new identity under his nick) and his messages to Alice under the new key are held until
//! she accepts it, then shown; so that the browser holds, saves and releases them as Rust does,
//! byte for byte.

use serde_json::{json, Value};

use super::sessions::{bundle_of, ThreeParties, NOW_MS};

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
    let mut three = ThreeParties::new("held", ["alice", "bob", "bob-new"], ["alice", "bob", "bob"]);
    let [alice, bob, bob_new] = &mut three.sessions;
    let r = &mut three.run;

    // Alice and Bob talk: Alice pins Bob's key.
    let bob_upload = r.login("bob", bob, NOW_MS);
    r.published("bob", bob, 100, false);
    let alice_upload = r.login("alice", alice, NOW_MS);
    r.published("alice", alice, 100, false);
    r.send("alice", alice, "bob", "Hi Bob", 1);
    let a1 = r.bundle("alice", alice, "bob", bundle_of(&bob_upload, 0));
    r.receive("bob", bob, "alice", 10, &a1);
    let b1 = r.send("bob", bob, "alice", "Hi Alice", 1);
    r.receive("alice", alice, "bob", 20, &b1);

    // Bob's home is replaced: his new key starts a session with Alice and sends twice.
    r.login("bob-new", bob_new, NOW_MS);
    r.published("bob-new", bob_new, 100, false);
    r.send("bob-new", bob_new, "alice", "It's me, new phone", 1);
    let n1 = r.bundle("bob-new", bob_new, "alice", bundle_of(&alice_upload, 0));
    let n2 = r.send("bob-new", bob_new, "alice", "Did you get it?", 2);
    // Alice holds both (blocked, told how many), once each.
    r.receive("alice", alice, "bob", 21, &n1);
    r.receive("alice", alice, "bob", 22, &n2);
    r.receive("alice", alice, "bob", 21, &n1);
    r.receive("alice", alice, "bob", 23, &n1);
    // /insecure shows nothing held; /accept-key shows both, in order.
    r.command("alice", alice, "end", "bob");
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
    r.receive("alice", alice, "bob", 24, &n1);
    // Secure again, on the session the new key started.
    r.command("alice", alice, "start", "bob");
    let a2 = r.send("alice", alice, "bob", "Welcome back", 2);
    r.receive("bob-new", bob_new, "alice", 11, &a2);

    three.section(ABOUT)
}
