//! Micro-benchmarks: frame encode/decode (the server's per-message work), the end-to-end
//! seal/open path, and the X3DH / Double Ratchet core. `cargo bench -p mm-bench --bench micro`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mm_common::e2e::ratchet::Ratchet;
use mm_common::e2e::{x3dh, xeddsa, Action, E2eConfig, Outgoing, Sessions};
use mm_common::frame;
use mm_common::identity::Identity;
use mm_common::pins::Pins;
use mm_common::prekeys::{
    signed_prekey_message, BundleAnswer, KeyUpload, OneTimePrekey, PrekeyBundle, SignedPrekey,
};
use mm_common::protocol::{ClientMsg, ServerMsg};
use rand_core::{OsRng, RngCore};

fn codec(c: &mut Criterion) {
    let text = "x".repeat(64);
    let public = ServerMsg::Public {
        room: "#lobby".into(),
        action: false,
        id: 123_456,
        ts: 1_700_000_000_000,
        from: "alice".into(),
        text: text.clone(),
    };
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode ServerMsg::Public (64 B text)", |b| {
        b.iter(|| frame::encode(&public).unwrap())
    });
    let client = frame::encode(&ClientMsg::Public {
        room: "#lobby".into(),
        action: false,
        text,
    })
    .unwrap();
    group.bench_function("split + decode ClientMsg::Public", |b| {
        b.iter_batched(
            || BytesMut::from(&client[..]),
            |mut buf| {
                let payload = frame::split_frame(&mut buf).unwrap();
                ClientMsg::decode(&payload).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The upload in `actions` (a login's `Publish`).
fn upload(actions: &[Action]) -> KeyUpload {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Publish(u) => Some(u.clone()),
            _ => None,
        })
        .expect("a login publishes keys")
}

/// Two users who logged in (keys published): alice's sessions, bob's, and bob's upload.
fn users() -> (Sessions, Sessions, KeyUpload) {
    let now = Instant::now();
    let mut a = Sessions::new(
        "alice",
        Identity::generate(),
        Pins::default(),
        E2eConfig::default(),
    );
    let mut b = Sessions::new(
        "bob",
        Identity::generate(),
        Pins::default(),
        E2eConfig::default(),
    );
    let _ = a.login(now, 1_800_000_000_000);
    let up = upload(&b.login(now, 1_800_000_000_000));
    b.published(up.one_time.len() as u32, false);
    (a, b, up)
}

/// The first message to an offline peer, both sides: alice takes bob's bundle (XEdDSA check,
/// X3DH, ratchet start) and encrypts; bob opens the start (X3DH, ratchet) and decrypts.
fn first_message(a: &mut Sessions, b: &mut Sessions, up: &KeyUpload, now: Instant) {
    let Ok(Outgoing::Queued(_)) = a.send_text("bob", "hello", 1, now) else {
        panic!("a text to a new peer waits for its bundle")
    };
    let bundle = PrekeyBundle {
        identity: up.identity,
        signed_prekey: up.signed_prekey.clone(),
        one_time: up.one_time.first().cloned(),
    };
    for payload in sends(a.bundle("bob", BundleAnswer::Keys(bundle), now)) {
        b.receive("alice", 1, &payload, now);
    }
}

/// An established session pair.
fn pair() -> (Sessions, Sessions) {
    let now = Instant::now();
    let (mut a, mut b, up) = users();
    first_message(&mut a, &mut b, &up, now);
    (a, b)
}

/// `from` sends `text` to `to` on their session; `to` opens it (relay ids from `id`).
fn one_way(s: &mut Sessions, r: &mut Sessions, from: &str, to: &str, text: &str, id: &mut u64) {
    let now = Instant::now();
    let Outgoing::Secure(actions) = s.send_text(to, text, 0, now).unwrap() else {
        panic!("no session")
    };
    for payload in sends(actions) {
        *id += 1;
        r.receive(from, *id, &payload, now);
    }
}

fn sends(actions: Vec<Action>) -> Vec<Vec<u8>> {
    actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Send { payload, .. } => Some(payload),
            _ => None,
        })
        .collect()
}

fn e2e(c: &mut Criterion) {
    let mut group = c.benchmark_group("e2e");
    group.throughput(Throughput::Elements(1));
    let (mut a, mut b) = pair();
    let now = Instant::now();
    let text = "x".repeat(64);
    let mut id = 10;
    group.bench_function(
        "ratchet message, one way: seal + open 64 B (128 B bucket)",
        |bench| bench.iter(|| one_way(&mut a, &mut b, "alice", "bob", &text, &mut id)),
    );
    group.bench_function("ratchet message, taking turns (a DH step each)", |bench| {
        bench.iter(|| {
            one_way(&mut a, &mut b, "alice", "bob", &text, &mut id);
            one_way(&mut b, &mut a, "bob", "alice", &text, &mut id);
        })
    });
    group.bench_function("saved state of one session (state_bytes)", |bench| {
        bench.iter(|| a.state_bytes().len())
    });
    group.sample_size(20);
    group.bench_function(
        "first message to an offline peer, both sides (X3DH + ratchet start)",
        |bench| {
            bench.iter_batched(
                users,
                |(mut a, mut b, up)| first_message(&mut a, &mut b, &up, now),
                BatchSize::SmallInput,
            )
        },
    );
    group.bench_function("login: 100 one-time prekeys and a signed prekey", |bench| {
        bench.iter_batched(
            || {
                Sessions::new(
                    "carol",
                    Identity::generate(),
                    Pins::default(),
                    E2eConfig::default(),
                )
            },
            |mut s| s.login(now, 1_800_000_000_000).len(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// XEdDSA, X3DH and the Double Ratchet (the crypto core of the prekey sessions).
fn ratchet(c: &mut Criterion) {
    let mut group = c.benchmark_group("x3dh_ratchet");
    group.throughput(Throughput::Elements(1));

    let private = random::<32>();
    let public = x3dh::public_key(&private);
    let message = signed_prekey_message(1, &random::<32>());
    let z = random::<64>();
    group.bench_function("XEdDSA sign", |b| {
        b.iter(|| xeddsa::sign(&private, &message, &z))
    });
    let signature = xeddsa::sign(&private, &message, &z);
    group.bench_function("XEdDSA verify", |b| {
        b.iter(|| assert!(xeddsa::verify(&public, &message, &signature)))
    });

    let (alice, bob) = (Identity::generate(), Identity::generate());
    let (spk, otk) = (random::<32>(), random::<32>());
    let spk_public = x3dh::public_key(&spk);
    let bundle = PrekeyBundle {
        identity: *bob.public(),
        signed_prekey: SignedPrekey {
            id: 1,
            key: spk_public,
            signature: bob
                .sign(&signed_prekey_message(1, &spk_public), &mut OsRng)
                .to_vec(),
        },
        one_time: Some(OneTimePrekey {
            id: 1,
            key: x3dh::public_key(&otk),
        }),
    };
    group.bench_function("X3DH initiate + respond (with one-time prekey)", |b| {
        b.iter(|| {
            let ek = random::<32>();
            let a = x3dh::initiate("alice", &alice, "bob", &bundle, &ek).unwrap();
            let r = x3dh::respond(
                "bob",
                &bob,
                "alice",
                alice.public(),
                &x3dh::public_key(&ek),
                &spk,
                Some(&otk),
            )
            .unwrap();
            assert_eq!(*a.shared, *r.shared);
        })
    });

    let start = x3dh::initiate("alice", &alice, "bob", &bundle, &random::<32>()).unwrap();
    let new_pair = || {
        let a = Ratchet::initiator(
            &start.shared,
            &spk_public,
            start.associated_data.clone(),
            &mut OsRng,
        )
        .unwrap();
        let b = Ratchet::responder(&start.shared, &spk, start.associated_data.clone());
        (a, b)
    };
    let text = [b'x'; 100];
    let (mut a, mut b) = new_pair();
    group.bench_function("ratchet encrypt + decrypt 100 B (same chain)", |bench| {
        bench.iter(|| {
            let (h, ct) = a.encrypt(&text).unwrap();
            b.decrypt(&h, &ct, &mut OsRng).unwrap()
        })
    });
    let (a, b) = new_pair();
    let mut sides = [a, b];
    group.bench_function(
        "ratchet encrypt + decrypt 100 B with a DH step (alternating)",
        |bench| {
            bench.iter(|| {
                let [from, to] = &mut sides;
                let (h, ct) = from.encrypt(&text).unwrap();
                let plaintext = to.decrypt(&h, &ct, &mut OsRng).unwrap();
                sides.swap(0, 1);
                plaintext
            })
        },
    );
    group.finish();
}

/// One redraw of the terminal UI (it redraws after every event): a 120x40 screen of a tab with
/// full scrollback, on ratatui's in-memory backend.
fn tui(c: &mut Criterion) {
    use mm_client::tui::app::{App, LineKind};
    use mm_client::tui::ui::{draw, Theme};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    let mut app = App::new("localhost:7667", "alice");
    for i in 0..mm_client::tui::app::SCROLLBACK {
        app.push(
            0,
            LineKind::Public,
            Some("bob"),
            &format!("line {i}: the quick brown fox jumps over the lazy dog, twice over"),
            0,
        );
    }
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    c.bench_function("tui redraw, 120x40, 5000-line tab", |b| {
        b.iter(|| {
            terminal
                .draw(|f| draw(f, &mut app, Theme { color: true }))
                .unwrap();
        })
    });
}

criterion_group!(benches, codec, e2e, ratchet, tui);
criterion_main!(benches);
