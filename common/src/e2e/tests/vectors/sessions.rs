//! The `sessions` section of the vectors: a scripted run of two (then three) [`Sessions`]
//! with fixed identities and [`CounterRng`] randomness, every action recorded, so that the
//! browser's session manager can be checked to give the same uploads and payloads byte for
//! byte, and to read Rust's payloads.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::CounterRng;
use crate::e2e::{Action, E2eConfig, E2eEvent, Failure, Outgoing, Refused, Sessions, Trust};
use crate::identity::{hex, Identity};
use crate::pins::Pins;
use crate::prekeys::{BundleAnswer, KeyUpload, PrekeyBundle};
use crate::protocol::ClientMsg;

/// The wall clock of the logins (milliseconds since the Unix epoch).
pub(super) const NOW_MS: u64 = 1_700_000_000_000;

pub(super) const ABOUT: &str = "A scripted run of the session manager (common/src/e2e/peers.rs, \
Sessions::with_rng with E2eConfig::default() and no pins). identities: each party's identity \
secret, drawn in that order (32 bytes each) from CounterRng(\"sessions identities\"); each party's \
Sessions draws every random byte from CounterRng(rng_labels[party]). steps in order: who, op \
(login {now_ms} | published {one_time, other_device} | prekeys_low {one_time} | start {peer} \
(/secure) | end {peer} (/insecure) | send_text {to, text, line} -> outcome \
Plain/Secure/Queued/QueuedPlain | bundle {peer, bundle (hex fields; one_time null = the last \
resort)} | receive {from, id, payload}), and the actions handed back in order: Persist; Send \
{to, payload (hex of the Relay payload, postcard Envelope), line}; Event {event: kind and fields; \
Ready's key hex and trust New/Pinned/Verified; Failed's failure as its Display words}; Publish \
{message: hex of postcard ClientMsg::PublishKeys {keys}}; FetchBundle {nick}. now (monotonic) \
starts at 0 and is in milliseconds (at_ms) for every step.";

fn trust_name(t: Trust) -> &'static str {
    match t {
        Trust::New => "New",
        Trust::Pinned => "Pinned",
        Trust::Verified => "Verified",
    }
}

fn event_json(e: &E2eEvent) -> Value {
    match e {
        E2eEvent::Ready {
            peer,
            key,
            trust,
            by_peer,
        } => {
            json!({"kind": "Ready", "peer": peer, "key": hex(key), "trust": trust_name(*trust), "by_peer": by_peer})
        }
        E2eEvent::Message { peer, id, text } => {
            json!({"kind": "Message", "peer": peer, "id": id, "text": text})
        }
        E2eEvent::Resumed { peer } => json!({"kind": "Resumed", "peer": peer}),
        E2eEvent::Ended { peer, unsent } => {
            json!({"kind": "Ended", "peer": peer, "unsent": unsent})
        }
        E2eEvent::Failed {
            peer,
            failure,
            unsent,
        } => {
            json!({"kind": "Failed", "peer": peer, "failure": failure.to_string(), "unsent": unsent})
        }
        E2eEvent::Unreadable { peer } => json!({"kind": "Unreadable", "peer": peer}),
        E2eEvent::Replayed { peer } => json!({"kind": "Replayed", "peer": peer}),
        E2eEvent::Held {
            peer,
            held,
            dropped,
        } => json!({"kind": "Held", "peer": peer, "held": held, "dropped": dropped}),
        E2eEvent::Released { peer, key, count } => {
            json!({"kind": "Released", "peer": peer, "key": hex(key), "count": count})
        }
        E2eEvent::OtherDevice => json!({"kind": "OtherDevice"}),
        E2eEvent::PeerCouldNotRead { peer, count } => {
            json!({"kind": "PeerCouldNotRead", "peer": peer, "count": count})
        }
    }
}

fn upload_hex(keys: &KeyUpload) -> String {
    let msg = ClientMsg::PublishKeys { keys: keys.clone() };
    hex(&postcard::to_allocvec(&msg).expect("encodes"))
}

fn actions_json(actions: &[Action]) -> Value {
    Value::Array(
        actions
            .iter()
            .map(|a| match a {
                Action::Persist => json!({"type": "Persist"}),
                Action::Send { to, payload, line } => {
                    json!({"type": "Send", "to": to, "payload": hex(payload), "line": line})
                }
                Action::SendPlain { to, text, line } => {
                    json!({"type": "SendPlain", "to": to, "text": text, "line": line})
                }
                Action::Event(e) => json!({"type": "Event", "event": event_json(e)}),
                Action::Publish(keys) => json!({"type": "Publish", "message": upload_hex(keys)}),
                Action::FetchBundle(nick) => json!({"type": "FetchBundle", "nick": nick}),
            })
            .collect(),
    )
}

fn bundle_json(b: &PrekeyBundle) -> Value {
    json!({
        "identity": hex(&b.identity),
        "signed_prekey": {
            "id": b.signed_prekey.id,
            "key": hex(&b.signed_prekey.key),
            "signature": hex(&b.signed_prekey.signature),
        },
        "one_time": b.one_time.as_ref().map(|k| json!({"id": k.id, "key": hex(&k.key)})),
    })
}

/// The payloads of the Send actions, in order.
fn payloads(actions: &[Action]) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .collect()
}

pub(super) struct Run {
    pub(super) base: Instant,
    pub(super) at_ms: u64,
    pub(super) steps: Vec<Value>,
}

impl Run {
    pub(super) fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.at_ms)
    }

    pub(super) fn step(&mut self, who: &str, op: Value, actions: &[Action]) {
        let mut step = op;
        step["who"] = json!(who);
        step["at_ms"] = json!(self.at_ms);
        step["actions"] = actions_json(actions);
        self.steps.push(step);
        self.at_ms += 10;
    }

    pub(super) fn login(&mut self, who: &str, s: &mut Sessions, now_ms: u64) -> KeyUpload {
        let actions = s.login(self.now(), now_ms);
        self.step(who, json!({"op": "login", "now_ms": now_ms}), &actions);
        let upload = actions.iter().find_map(|a| match a {
            Action::Publish(keys) => Some(keys.clone()),
            _ => None,
        });
        upload.expect("a first login publishes")
    }

    pub(super) fn published(
        &mut self,
        who: &str,
        s: &mut Sessions,
        one_time: u32,
        other_device: bool,
    ) {
        let actions = s.published(one_time, other_device);
        self.step(
            who,
            json!({"op": "published", "one_time": one_time, "other_device": other_device}),
            &actions,
        );
    }

    pub(super) fn prekeys_low(
        &mut self,
        who: &str,
        s: &mut Sessions,
        one_time: u32,
    ) -> Option<KeyUpload> {
        let actions = s.prekeys_low(one_time);
        self.step(
            who,
            json!({"op": "prekeys_low", "one_time": one_time}),
            &actions,
        );
        actions.iter().find_map(|a| match a {
            Action::Publish(keys) => Some(keys.clone()),
            _ => None,
        })
    }

    pub(super) fn command(&mut self, who: &str, s: &mut Sessions, op: &str, peer: &str) {
        let actions = match op {
            "start" => s.start(peer, self.now()),
            _ => s.end(peer),
        }
        .expect("not refused");
        self.step(who, json!({"op": op, "peer": peer}), &actions);
    }

    pub(super) fn send(
        &mut self,
        who: &str,
        s: &mut Sessions,
        to: &str,
        text: &str,
        line: u64,
    ) -> Vec<u8> {
        let now = self.now();
        let out = s.send_text(to, text, line, now).expect("not refused");
        let (outcome, actions) = match out {
            Outgoing::Plain => ("Plain", vec![]),
            Outgoing::Secure(a) => ("Secure", a),
            Outgoing::Queued(a) => ("Queued", a),
            Outgoing::QueuedPlain => ("QueuedPlain", vec![]),
        };
        self.step(
            who,
            json!({"op": "send_text", "to": to, "text": text, "line": line, "outcome": outcome}),
            &actions,
        );
        payloads(&actions).pop().unwrap_or_default()
    }

    pub(super) fn bundle(
        &mut self,
        who: &str,
        s: &mut Sessions,
        peer: &str,
        b: PrekeyBundle,
    ) -> Vec<u8> {
        let op = json!({"op": "bundle", "peer": peer, "bundle": bundle_json(&b)});
        let actions = s.bundle(peer, BundleAnswer::Keys(b), self.now());
        self.step(who, op, &actions);
        payloads(&actions).pop().expect("the queued text goes")
    }

    pub(super) fn receive(
        &mut self,
        who: &str,
        s: &mut Sessions,
        from: &str,
        id: u64,
        payload: &[u8],
    ) {
        let actions = s.receive(from, id, payload, self.now());
        self.step(
            who,
            json!({"op": "receive", "from": from, "id": id, "payload": hex(payload)}),
            &actions,
        );
    }
}

/// Three parties of a scripted run (the third a replaced home of the second: `nicks` gives
/// the nick each logs in as), their identities and random bytes drawn from counters labelled
/// `"sessions {section} …"`, and a run starting now.
pub(super) struct ThreeParties {
    pub(super) sessions: [Sessions; 3],
    pub(super) run: Run,
    parties: [&'static str; 3],
    nicks: [&'static str; 3],
    secrets: Vec<[u8; 32]>,
    labels: Vec<String>,
}

impl ThreeParties {
    pub(super) fn new(
        section: &str,
        parties: [&'static str; 3],
        nicks: [&'static str; 3],
    ) -> ThreeParties {
        let mut ids = CounterRng::new(&format!("sessions {section} identities"));
        let secrets: Vec<[u8; 32]> = parties.iter().map(|_| ids.bytes()).collect();
        let labels: Vec<String> = parties
            .iter()
            .map(|p| format!("sessions {section} {p}"))
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
        ThreeParties {
            sessions: [make(0), make(1), make(2)],
            run: Run {
                base: Instant::now(),
                at_ms: 0,
                steps: Vec::new(),
            },
            parties,
            nicks,
            secrets,
            labels,
        }
    }

    /// The section: `about`, the parties and the steps run.
    pub(super) fn section(self, about: &str) -> Value {
        json!({
            "about": about,
            "parties": self.parties,
            "nicks": self.nicks,
            "identities": self.secrets.iter().map(|s| hex(s)).collect::<Vec<_>>(),
            "rng_labels": self.labels,
            "steps": self.run.steps,
        })
    }
}

pub(super) fn bundle_of(upload: &KeyUpload, one_time: usize) -> PrekeyBundle {
    PrekeyBundle {
        identity: upload.identity,
        signed_prekey: upload.signed_prekey.clone(),
        one_time: upload.one_time.get(one_time).cloned(),
    }
}

/// Every failure and refusal with its words (Display), as the browser must say them.
fn words() -> Value {
    let pinned = [0x11; 32];
    let mut presented = [0x22; 32];
    presented[31] = 0xfe;
    let failures = vec![
        (
            json!({"kind": "KeyChanged", "pinned": hex(&pinned), "presented": hex(&presented)}),
            Failure::KeyChanged { pinned, presented },
        ),
        (json!({"kind": "BadSignature"}), Failure::BadSignature),
        (json!({"kind": "BadKey"}), Failure::BadKey),
        (json!({"kind": "OwnKey"}), Failure::OwnKey),
        (json!({"kind": "NoKeys"}), Failure::NoKeys),
        (json!({"kind": "NoSuchUser"}), Failure::NoSuchUser),
        (
            json!({"kind": "RateLimited", "retry_after_ms": 0}),
            Failure::RateLimited { retry_after_ms: 0 },
        ),
        (
            json!({"kind": "RateLimited", "retry_after_ms": 1001}),
            Failure::RateLimited {
                retry_after_ms: 1001,
            },
        ),
        (json!({"kind": "Timeout"}), Failure::Timeout),
        (json!({"kind": "Busy"}), Failure::Busy),
        (json!({"kind": "NotConnected"}), Failure::NotConnected),
    ];
    let peer = "Bob";
    let text_error = crate::protocol::validate_text("", crate::protocol::MAX_TEXT_LEN)
        .expect_err("empty is refused");
    let refusals = vec![
        (
            json!({"kind": "Blocked", "peer": peer, "failure": {"kind": "BadSignature"}}),
            Refused::Blocked {
                peer: peer.into(),
                failure: Failure::BadSignature,
            },
        ),
        (
            json!({"kind": "InvalidText", "text": text_error.to_string()}),
            Refused::InvalidText(text_error),
        ),
        (
            json!({"kind": "QueueFull", "peer": peer}),
            Refused::QueueFull(peer.into()),
        ),
        (json!({"kind": "Yourself"}), Refused::Yourself),
        (
            json!({"kind": "InvalidNick", "peer": "a \"b\"\\"}),
            Refused::InvalidNick("a \"b\"\\".into()),
        ),
        (
            json!({"kind": "InvalidNick", "peer": "x\ty\u{7}\u{e9}\0"}),
            Refused::InvalidNick("x\ty\u{7}\u{e9}\0".into()),
        ),
        (
            json!({"kind": "AlreadySecure", "peer": peer}),
            Refused::AlreadySecure(peer.into()),
        ),
        (
            json!({"kind": "AlreadyStarting", "peer": peer}),
            Refused::AlreadyStarting(peer.into()),
        ),
        (
            json!({"kind": "KeyNotAccepted", "peer": peer}),
            Refused::KeyNotAccepted(peer.into()),
        ),
        (
            json!({"kind": "NothingToAccept", "peer": peer}),
            Refused::NothingToAccept(peer.into()),
        ),
        (
            json!({"kind": "AlreadyPlain", "peer": peer}),
            Refused::AlreadyPlain(peer.into()),
        ),
        (
            json!({"kind": "NoKey", "peer": peer}),
            Refused::NoKey(peer.into()),
        ),
        (json!({"kind": "Crypto"}), Refused::Crypto),
        (json!({"kind": "TooManyPeers"}), Refused::TooManyPeers),
    ];
    let trust = [Trust::New, Trust::Pinned, Trust::Verified];
    json!({
        "failures": failures
            .iter()
            .map(|(f, failure)| json!({"failure": f, "blocking": failure.is_blocking(), "words": failure.to_string()}))
            .collect::<Vec<_>>(),
        "refusals": refusals
            .iter()
            .map(|(r, refused)| json!({"refused": r, "words": refused.to_string()}))
            .collect::<Vec<_>>(),
        "trust": trust
            .iter()
            .map(|t| json!({"trust": trust_name(*t), "words": t.to_string()}))
            .collect::<Vec<_>>(),
    })
}

/// The section.
pub(super) fn sessions_vectors() -> Value {
    let mut ids = CounterRng::new("sessions identities");
    let parties = ["alice", "bob", "carol"];
    let secrets: Vec<[u8; 32]> = parties.iter().map(|_| ids.bytes()).collect();
    let labels: Vec<String> = parties.iter().map(|p| format!("sessions {p}")).collect();
    let make = |i: usize| {
        Sessions::with_rng(
            parties[i],
            Identity::from_secret(secrets[i]),
            Pins::default(),
            E2eConfig::default(),
            Box::new(CounterRng::new(&labels[i])),
        )
    };
    let (mut alice, mut bob, mut carol) = (make(0), make(1), make(2));
    let mut run = Run {
        base: Instant::now(),
        at_ms: 0,
        steps: Vec::new(),
    };
    let r = &mut run;

    // Bob publishes; Alice starts from his bundle with a one-time prekey.
    let upload = r.login("bob", &mut bob, NOW_MS);
    r.published("bob", &mut bob, 100, false);
    r.send("alice", &mut alice, "bob", "Hello Bob", 1);
    let a1 = r.bundle("alice", &mut alice, "bob", bundle_of(&upload, 0));
    let a2 = r.send("alice", &mut alice, "bob", "Are you there?", 2);
    // Out of order: the second start arrives first.
    r.receive("bob", &mut bob, "alice", 11, &a2);
    r.receive("bob", &mut bob, "alice", 10, &a1);
    let b1 = r.send("bob", &mut bob, "alice", "Hi Alice", 1);
    let b2 = r.send("bob", &mut bob, "alice", "Yes, here.", 2);
    let b3 = r.send(
        "bob",
        &mut bob,
        "alice",
        "Third, \u{e9}t\u{e9} \u{1f30d}",
        3,
    );
    r.receive("alice", &mut alice, "bob", 20, &b1);
    r.receive("alice", &mut alice, "bob", 22, &b3);
    r.receive("alice", &mut alice, "bob", 21, &b2);
    let a3 = r.send("alice", &mut alice, "bob", "Got them all", 3);
    let a4 = r.send("alice", &mut alice, "bob", &"x".repeat(300), 4);
    r.receive("bob", &mut bob, "alice", 13, &a4);
    r.receive("bob", &mut bob, "alice", 12, &a3);
    // The server replays a message under a new id.
    r.receive("bob", &mut bob, "alice", 14, &a3);
    let b4 = r.send("bob", &mut bob, "alice", "Bye", 4);
    r.receive("alice", &mut alice, "bob", 23, &b4);

    // Carol starts from Bob's bundle without a one-time prekey (the last resort).
    r.send("carol", &mut carol, "bob", "Hi from Carol", 1);
    let c1 = r.bundle("carol", &mut carol, "bob", bundle_of(&upload, usize::MAX));
    r.receive("bob", &mut bob, "carol", 30, &c1);
    let b5 = r.send("bob", &mut bob, "carol", "Hello Carol", 5);
    r.receive("carol", &mut carol, "bob", 40, &b5);
    let c2 = r.send("carol", &mut carol, "bob", "Answered", 2);
    r.receive("bob", &mut bob, "carol", 31, &c2);

    // A week later Bob logs in again: a new signed prekey; the server says another copy of
    // his account published meanwhile, so his next text starts a new session from Alice's
    // keys (Alice publishes now) instead of sending on the old one.
    let week = 8 * 24 * 60 * 60 * 1000;
    r.login("bob", &mut bob, NOW_MS + week);
    r.published("bob", &mut bob, 30, true);
    let alice_upload = r.login("alice", &mut alice, NOW_MS + week);
    r.published("alice", &mut alice, 100, false);
    r.send("bob", &mut bob, "alice", "After the copy", 6);
    let b6 = r.bundle("bob", &mut bob, "alice", bundle_of(&alice_upload, 0));
    r.receive("alice", &mut alice, "bob", 24, &b6);
    let a5 = r.send("alice", &mut alice, "bob", "Seen", 5);
    r.receive("bob", &mut bob, "alice", 15, &a5);
    // Carol's session still started on Bob's previous signed prekey, which he keeps.
    let c3 = r.send("carol", &mut carol, "bob", "Still here", 3);
    r.receive("bob", &mut bob, "carol", 32, &c3);
    // The server runs low on Bob's one-time prekeys: a new batch.
    if r.prekeys_low("bob", &mut bob, 5).is_some() {
        r.published("bob", &mut bob, 105, false);
    }
    // Alice says /insecure, then /secure again.
    r.command("alice", &mut alice, "end", "bob");
    r.send("alice", &mut alice, "bob", "plain", 6);
    r.command("alice", &mut alice, "start", "bob");
    let a7 = r.send("alice", &mut alice, "bob", "secure again", 7);
    r.receive("bob", &mut bob, "alice", 16, &a7);
    // Carol writes to Alice (her keys are being fetched), says /insecure, types a line (it
    // waits, for plain), then /secure again before the keys come: done, and both lines go
    // encrypted.
    r.send("carol", &mut carol, "alice", "waiting one", 4);
    r.command("carol", &mut carol, "end", "alice");
    r.send("carol", &mut carol, "alice", "typed while plain", 5);
    r.command("carol", &mut carol, "start", "alice");
    let c5 = r.bundle("carol", &mut carol, "alice", bundle_of(&alice_upload, 1));
    r.receive("alice", &mut alice, "carol", 25, &c5);

    json!({
        "about": ABOUT,
        "parties": parties,
        "identities": secrets.iter().map(|s| hex(s)).collect::<Vec<_>>(),
        "rng_labels": labels,
        "steps": run.steps,
        "words": words(),
    })
}
