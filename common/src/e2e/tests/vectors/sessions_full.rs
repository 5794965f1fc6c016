//! The `sessions_full` section of the vectors: a scripted run of a small peer table (6 peers, at
//! most 2 of them unsolicited) that strangers fill with valid session starts, so that the
//! browser's session manager can be checked to make room with the same entries, refuse the same
//! things, and keep the order across a reload.

use std::time::Instant;

use serde_json::{json, Value};

use super::sessions::{bundle_of, Run};
use super::CounterRng;
use crate::e2e::{E2eConfig, Refused, Sessions};
use crate::identity::{hex, Identity};
use crate::pins::Pins;

/// The wall clock of the login (milliseconds since the Unix epoch).
const NOW_MS: u64 = 1_700_000_000_000;

pub(super) const ABOUT: &str = "A scripted run of a full peer table: alice's Sessions have \
E2eConfig {max_peers, max_unsolicited} from `config` (the rest default); the strangers' are \
default. identities and rng labels as in `sessions` (identities from CounterRng(\"sessions_full \
identities\")). Ops as in `sessions`, plus: acknowledged {up_to} (Sessions::acknowledged; no \
actions); reload (alice's state saved and restored into new Sessions whose randomness is \
CounterRng(rng_label) from then on; no actions); and an op that was refused has \
`refused` (the Refused kind) and `words` (its Display) and no actions.";

/// alice and the strangers, in the order of their identities.
const PARTIES: [&str; 6] = ["alice", "m1", "m2", "m3", "m4", "m5"];

/// The section.
pub(super) fn sessions_full_vectors() -> Value {
    let mut ids = CounterRng::new("sessions_full identities");
    let secrets: Vec<[u8; 32]> = PARTIES.iter().map(|_| ids.bytes()).collect();
    let labels: Vec<String> = PARTIES
        .iter()
        .map(|p| format!("sessions_full {p}"))
        .collect();
    let reload_label = "sessions_full alice reloaded";
    let small = E2eConfig {
        max_peers: 6,
        max_unsolicited: 2,
        ..E2eConfig::default()
    };
    let make = |i: usize, config: E2eConfig| {
        Sessions::with_rng(
            PARTIES[i],
            Identity::from_secret(secrets[i]),
            Pins::default(),
            config,
            Box::new(CounterRng::new(&labels[i])),
        )
    };
    let mut alice = make(0, small.clone());
    let mut m: Vec<Sessions> = (1..PARTIES.len())
        .map(|i| make(i, E2eConfig::default()))
        .collect();
    let mut run = Run {
        base: Instant::now(),
        at_ms: 0,
        steps: Vec::new(),
    };
    let r = &mut run;

    let upload = r.login("alice", &mut alice, NOW_MS);
    r.published("alice", &mut alice, 100, false);
    // Three conversations of alice's own: two plain, one secure (its keys asked for).
    r.command("alice", &mut alice, "end", "u1");
    r.command("alice", &mut alice, "end", "u2");
    r.command("alice", &mut alice, "start", "bob");
    // Strangers start sessions; each message is acknowledged.
    let mut id = 0;
    let mut stranger_start = |r: &mut Run, alice: &mut Sessions, s: &mut Sessions, k: usize| {
        let who = PARTIES[k + 1];
        r.send(who, s, "alice", &format!("hello from {who}"), 1);
        let payload = r.bundle(who, s, "alice", bundle_of(&upload, k));
        id += 1;
        r.receive("alice", alice, who, id, &payload);
        acknowledged(r, alice, id);
        id
    };
    let [m1, m2, m3, m4, m5] = &mut m[..] else {
        unreachable!("five strangers")
    };
    stranger_start(r, &mut alice, m1, 0);
    stranger_start(r, &mut alice, m2, 1);
    // Two unsolicited entries already: m1, the least recently used, makes room for m3.
    stranger_start(r, &mut alice, m3, 2);
    // m1 writes again: its entry is gone (its start is remembered: a replay).
    let again = r.send("m1", m1, "alice", "still me", 2);
    r.receive("alice", &mut alice, "m1", 100, &again);
    // The order survives a reload.
    r.steps
        .push(json!({"who": "alice", "op": "reload", "at_ms": r.at_ms, "actions": []}));
    r.at_ms += 10;
    let saved = alice.state_bytes();
    alice = Sessions::with_rng(
        "alice",
        Identity::from_secret(secrets[0]),
        alice.pins().clone(),
        small,
        Box::new(CounterRng::new(reload_label)),
    );
    alice.restore(&saved).expect("restores");
    // alice's table: u1, u2, bob, m2, m3 (5 of 6). Her own new conversations: the first
    // fits, the second takes the place of m2 (unsolicited, least recently used).
    r.command("alice", &mut alice, "end", "u3");
    r.command("alice", &mut alice, "end", "u4");
    let again = r.send("m2", m2, "alice", "still me", 2);
    r.receive("alice", &mut alice, "m2", 101, &again);
    // m4's start takes m3's place (the table is full; m3 is the only evictable entry).
    stranger_start(r, &mut alice, m4, 3);
    // alice answers m4: she takes part now.
    let answer = r.send("alice", &mut alice, "m4", "hello, who is this?", 2);
    r.receive("m4", m4, "alice", 1, &answer);
    // Now every entry is one alice took part in: her next new conversation is refused, and so
    // is a stranger's start (before any cryptography: nothing of alice's is spent).
    refused_end(r, &mut alice, "u5");
    let now = r.now();
    let refusal = alice.send_text("u6", "x", 3, now).expect_err("no room");
    assert_eq!(refusal, Refused::TooManyPeers);
    r.steps.push(
        json!({"who": "alice", "op": "send_text", "to": "u6", "text": "x", "line": 3,
        "at_ms": r.at_ms, "refused": "TooManyPeers", "words": refusal.to_string(), "actions": []}),
    );
    r.at_ms += 10;
    r.send("m5", m5, "alice", "let me in", 1);
    let start = r.bundle("m5", m5, "alice", bundle_of(&upload, 4));
    r.receive("alice", &mut alice, "m5", 200, &start);
    // m3 (made room) writes again: a replay too.
    let again = r.send("m3", m3, "alice", "still me", 2);
    r.receive("alice", &mut alice, "m3", 102, &again);
    json!({
        "about": ABOUT,
        "config": {"max_peers": 6, "max_unsolicited": 2},
        "parties": PARTIES,
        "identities": secrets.iter().map(|s| hex(s)).collect::<Vec<_>>(),
        "rng_labels": labels,
        "reload_rng_label": reload_label,
        "steps": run.steps,
    })
}

fn acknowledged(r: &mut Run, s: &mut Sessions, up_to: u64) {
    s.acknowledged(up_to);
    r.steps.push(json!({"who": "alice", "op": "acknowledged", "up_to": up_to, "at_ms": r.at_ms, "actions": []}));
    r.at_ms += 10;
}

fn refused_end(r: &mut Run, s: &mut Sessions, peer: &str) {
    let refusal = s.end(peer).expect_err("no room");
    assert_eq!(refusal, Refused::TooManyPeers);
    r.steps.push(
        json!({"who": "alice", "op": "end", "peer": peer, "at_ms": r.at_ms,
        "refused": "TooManyPeers", "words": refusal.to_string(), "actions": []}),
    );
    r.at_ms += 10;
}
