//! Micro-benchmarks: frame encode/decode (the server's per-message work) and the end-to-end
//! seal/open path. `cargo bench -p mm-bench --bench micro`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mm_common::e2e::{Action, E2eConfig, Outgoing, Sessions};
use mm_common::frame;
use mm_common::identity::Identity;
use mm_common::pins::Pins;
use mm_common::protocol::{ClientMsg, ServerMsg};

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

criterion_group!(benches, codec, e2e, tui);
criterion_main!(benches);
