//! The `sessions_notice` section of the vectors: a scripted run in which Carol's home is
//! replaced (a new identity under her nick); Bob, who has a session with her old key, sends
//! twice; Carol can read neither, fetches Bob's keys and tells him in a session start whose
//! inner content is `Inner::Unreadable { count: 2 }`; Bob is blocked (her key changed) and
//! shown the notice after `/accept-key`. So that the browser does the same, byte for byte.

use std::time::Instant;

use serde_json::{json, Value};

use super::sessions::{bundle_of, Run, NOW_MS};
use super::CounterRng;
use crate::e2e::{E2eConfig, Sessions};
use crate::identity::{hex, Identity};
use crate::pins::Pins;

pub(super) const ABOUT: &str = "A peer who lost its keys tells the sender: the same rules as the \
sessions_held section (identities drawn in party order from CounterRng(\"sessions notice \
identities\"), each party's randomness from CounterRng(rng_labels[party]), a party's nick is \
nicks[party]: carol-new is Carol's replaced home). A session message from a peer with whom the \
receiver has no session at all is Unreadable and, at most once per peer per 10 minutes, fetches \
the peer's keys (FetchBundle); the bundle then sends a start whose inner content is \
Unreadable {count} (postcard variant 1 of Inner, after Text) before any queued text. More \
events: PeerCouldNotRead {peer, count}.";

/// The section.
pub(super) fn notice_vectors() -> Value {
    let mut ids = CounterRng::new("sessions notice identities");
    let parties = ["bob", "carol", "carol-new"];
    let nicks = ["bob", "carol", "carol"];
    let secrets: Vec<[u8; 32]> = parties.iter().map(|_| ids.bytes()).collect();
    let labels: Vec<String> = parties
        .iter()
        .map(|p| format!("sessions notice {p}"))
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
    let (mut bob, mut carol, mut carol_new) = (make(0), make(1), make(2));
    let mut run = Run {
        base: Instant::now(),
        at_ms: 0,
        steps: Vec::new(),
    };
    let r = &mut run;

    // Bob and Carol talk: Bob pins Carol's key; his session with her is answered.
    let bob_upload = r.login("bob", &mut bob, NOW_MS);
    r.published("bob", &mut bob, 100, false);
    let carol_upload = r.login("carol", &mut carol, NOW_MS);
    r.published("carol", &mut carol, 100, false);
    r.send("bob", &mut bob, "carol", "Hi Carol", 1);
    let b1 = r.bundle("bob", &mut bob, "carol", bundle_of(&carol_upload, 0));
    r.receive("carol", &mut carol, "bob", 10, &b1);
    let c1 = r.send("carol", &mut carol, "bob", "Hi Bob", 1);
    r.receive("bob", &mut bob, "carol", 20, &c1);

    // Carol's home is replaced. Bob sends twice on his old session: she reads neither, and
    // fetches his keys once.
    r.login("carol-new", &mut carol_new, NOW_MS);
    r.published("carol-new", &mut carol_new, 100, false);
    let lost1 = r.send("bob", &mut bob, "carol", "Lost one", 2);
    let lost2 = r.send("bob", &mut bob, "carol", "Lost two", 3);
    r.receive("carol-new", &mut carol_new, "bob", 11, &lost1);
    r.receive("carol-new", &mut carol_new, "bob", 12, &lost2);
    // The keys come: the notice goes, in a start under her new key.
    let notice = r.bundle(
        "carol-new",
        &mut carol_new,
        "bob",
        bundle_of(&bob_upload, 1),
    );
    // Now she has a session with Bob: an old message again is merely unreadable.
    r.receive("carol-new", &mut carol_new, "bob", 13, &lost1);
    // Bob: blocked (her key changed), the notice held; after /accept-key it is shown.
    r.receive("bob", &mut bob, "carol", 21, &notice);
    let now = r.now();
    let actions = bob.accept_key("carol", now).expect("a key changed");
    r.step(
        "bob",
        json!({"op": "accept_key", "peer": "carol"}),
        &actions,
    );
    // Bob sends again, on the session her notice started.
    let again = r.send("bob", &mut bob, "carol", "Lost one, again", 4);
    r.receive("carol-new", &mut carol_new, "bob", 14, &again);

    json!({
        "about": ABOUT,
        "parties": parties,
        "nicks": nicks,
        "identities": secrets.iter().map(|s| hex(s)).collect::<Vec<_>>(),
        "rng_labels": labels,
        "steps": run.steps,
    })
}
