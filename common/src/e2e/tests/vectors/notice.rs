//! The `sessions_notice` section of the vectors: a scripted run in which Carol's home is
//! replaced (a new identity under her nick); Bob, who has a session with her old key, sends
//! twice; Carol can read neither, fetches Bob's keys and tells him in a session start whose
//! inner content is `Inner::Unreadable { count: 2 }`; Bob is blocked (her key changed) and
//! shown the notice after `/accept-key`. So that the browser does the same, byte for byte.

use serde_json::{json, Value};

use super::sessions::{bundle_of, ThreeParties, NOW_MS};

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
    let mut three = ThreeParties::new(
        "notice",
        ["bob", "carol", "carol-new"],
        ["bob", "carol", "carol"],
    );
    let [bob, carol, carol_new] = &mut three.sessions;
    let r = &mut three.run;

    // Bob and Carol talk: Bob pins Carol's key; his session with her is answered.
    let bob_upload = r.login("bob", bob, NOW_MS);
    r.published("bob", bob, 100, false);
    let carol_upload = r.login("carol", carol, NOW_MS);
    r.published("carol", carol, 100, false);
    r.send("bob", bob, "carol", "Hi Carol", 1);
    let b1 = r.bundle("bob", bob, "carol", bundle_of(&carol_upload, 0));
    r.receive("carol", carol, "bob", 10, &b1);
    let c1 = r.send("carol", carol, "bob", "Hi Bob", 1);
    r.receive("bob", bob, "carol", 20, &c1);

    // Carol's home is replaced. Bob sends twice on his old session: she reads neither, and
    // fetches his keys once.
    r.login("carol-new", carol_new, NOW_MS);
    r.published("carol-new", carol_new, 100, false);
    let lost1 = r.send("bob", bob, "carol", "Lost one", 2);
    let lost2 = r.send("bob", bob, "carol", "Lost two", 3);
    r.receive("carol-new", carol_new, "bob", 11, &lost1);
    r.receive("carol-new", carol_new, "bob", 12, &lost2);
    // The keys come: the notice goes, in a start under her new key.
    let notice = r.bundle("carol-new", carol_new, "bob", bundle_of(&bob_upload, 1));
    // Now she has a session with Bob: an old message again is merely unreadable.
    r.receive("carol-new", carol_new, "bob", 13, &lost1);
    // Bob: blocked (her key changed), the notice held; after /accept-key it is shown.
    r.receive("bob", bob, "carol", 21, &notice);
    let now = r.now();
    let actions = bob.accept_key("carol", now).expect("a key changed");
    r.step(
        "bob",
        json!({"op": "accept_key", "peer": "carol"}),
        &actions,
    );
    // Bob sends again, on the session her notice started.
    let again = r.send("bob", bob, "carol", "Lost one, again", 4);
    r.receive("carol-new", carol_new, "bob", 14, &again);

    three.section(ABOUT)
}
