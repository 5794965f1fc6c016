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
use mm_common::prekeys::{signed_prekey_message, OneTimePrekey, PrekeyBundle, SignedPrekey};
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

/// An established session pair.
fn pair() -> (Sessions, Sessions) {
    let now = Instant::now();
    let config = E2eConfig {
        rekey_every: u64::MAX,
        rehandshake_messages: u64::MAX,
        ..E2eConfig::default()
    };
    let mut a = Sessions::new(
        "alice",
        Identity::generate(),
        Pins::default(),
        config.clone(),
    );
    let mut b = Sessions::new("bob", Identity::generate(), Pins::default(), config);
    let mut to_b = sends(a.start("bob", now).unwrap());
    while !to_b.is_empty() {
        let mut to_a = Vec::new();
        for p in to_b.drain(..) {
            to_a.extend(sends(b.receive("alice", &p, now)));
        }
        for p in to_a {
            to_b.extend(sends(a.receive("bob", &p, now)));
        }
    }
    (a, b)
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
    group.bench_function("seal + open 64 B text (128 B bucket)", |bench| {
        bench.iter(|| {
            let Outgoing::Secure(actions) = a.send_text("bob", &text, 0, now).unwrap() else {
                panic!()
            };
            for payload in sends(actions) {
                b.receive("alice", &payload, now);
            }
        })
    });
    group.sample_size(20);
    group.bench_function("full XX handshake (both sides)", |bench| bench.iter(pair));
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
