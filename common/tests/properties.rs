//! Property tests: generated inputs against the decoders and the end-to-end state machine.
//! These run in CI in seconds; the libFuzzer targets in `fuzz/` go further, run by hand.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use bytes::BytesMut;
use mm_common::confusable::skeleton;
use mm_common::e2e::{Action, E2eConfig, E2eEvent, Envelope, Outgoing, Sessions, PAD_BUCKETS};
use mm_common::frame::{self, FrameError, HEADER_LEN};
use mm_common::identity::Identity;
use mm_common::pins::Pins;
use mm_common::prekeys::{BundleAnswer, PrekeyBundle};
use mm_common::protocol::{nick_key, validate_nick, ClientMsg, ErrorCode, LeaveReason, ServerMsg};
use proptest::prelude::*;

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        (any::<u16>(), ".{0,40}").prop_map(|(version, nick)| ClientMsg::Hello { version, nick }),
        ".{0,300}".prop_map(|text| ClientMsg::Public {
            room: "#lobby".into(),
            action: false,
            text
        }),
        (".{0,40}", ".{0,300}").prop_map(|(to, text)| ClientMsg::Private { to, text }),
        Just(ClientMsg::Who),
        any::<u64>().prop_map(|token| ClientMsg::Ping { token }),
        any::<u64>().prop_map(|token| ClientMsg::Pong { token }),
        Just(ClientMsg::Quit),
        (".{0,40}", proptest::collection::vec(any::<u8>(), 0..2000))
            .prop_map(|(to, payload)| ClientMsg::Relay { to, payload }),
    ]
}

fn server_msg() -> impl Strategy<Value = ServerMsg> {
    prop_oneof![
        (
            ".{0,40}",
            ".{0,40}",
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(
                |(nick, server, online, max_text_len, rate_burst, rate_per_sec)| {
                    ServerMsg::Welcome {
                        nick,
                        server,
                        online,
                        max_text_len,
                        rate_burst,
                        rate_per_sec,
                    }
                }
            ),
        (proptest::collection::vec(".{0,32}", 0..50), any::<bool>())
            .prop_map(|(nicks, last)| ServerMsg::Users { nicks, last }),
        (any::<u64>(), any::<u64>(), ".{0,40}", ".{0,300}").prop_map(|(id, ts, from, text)| {
            ServerMsg::Public {
                room: "#lobby".into(),
                action: false,
                id,
                ts,
                from,
                text,
            }
        }),
        (any::<u64>(), any::<u64>(), ".{0,40}", ".{0,300}")
            .prop_map(|(id, ts, from, text)| ServerMsg::Private { id, ts, from, text }),
        (any::<u64>(), any::<u64>()).prop_map(|(id, ts)| ServerMsg::Sent { id, ts }),
        (any::<u64>(), ".{0,40}").prop_map(|(ts, nick)| ServerMsg::Joined {
            room: "#lobby".into(),
            ts,
            nick
        }),
        (any::<u64>(), ".{0,40}", 0u8..4).prop_map(|(ts, nick, r)| ServerMsg::Left {
            room: "#lobby".into(),
            ts,
            nick,
            reason: [
                LeaveReason::Quit,
                LeaveReason::Disconnected,
                LeaveReason::TooSlow,
                LeaveReason::ProtocolError
            ][usize::from(r)],
        }),
        (any::<u16>(), any::<bool>(), ".{0,100}").prop_map(|(code, fatal, detail)| {
            ServerMsg::Error {
                code: ErrorCode(code),
                fatal,
                detail,
            }
        }),
        ".{0,100}".prop_map(|reason| ServerMsg::Shutdown { reason }),
        any::<u64>().prop_map(|token| ServerMsg::Ping { token }),
        (
            any::<u64>(),
            any::<u64>(),
            ".{0,40}",
            proptest::collection::vec(any::<u8>(), 0..2000)
        )
            .prop_map(|(id, ts, from, payload)| ServerMsg::Relay {
                id,
                ts,
                from,
                payload
            }),
    ]
}

proptest! {
    #[test]
    fn client_messages_round_trip(msg in client_msg()) {
        let bytes = frame::encode(&msg).unwrap();
        prop_assert_eq!(frame::check(&bytes).unwrap() + HEADER_LEN, bytes.len());
        prop_assert_eq!(ClientMsg::decode(&bytes[HEADER_LEN..]).unwrap(), msg);
    }

    #[test]
    fn server_messages_round_trip(msg in server_msg()) {
        let bytes = frame::encode(&msg).unwrap();
        prop_assert_eq!(ServerMsg::decode(&bytes[HEADER_LEN..]).unwrap(), msg);
    }

    #[test]
    fn a_frame_stream_decodes_the_same_however_it_is_chunked(
        msgs in proptest::collection::vec(client_msg(), 1..20),
        chunk in 1usize..300,
    ) {
        let mut wire = Vec::new();
        for msg in &msgs {
            wire.extend_from_slice(&frame::encode(msg).unwrap());
        }
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match frame::split_frame(&mut buf) {
                    Ok(payload) => decoded.push(ClientMsg::decode(&payload).unwrap()),
                    Err(FrameError::Incomplete { .. }) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded, msgs);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = ClientMsg::decode(&data);
        let _ = ServerMsg::decode(&data);
        let _ = postcard::from_bytes::<Envelope>(&data);
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(payload) = frame::split_frame(&mut buf) {
            let _ = ClientMsg::decode(&payload);
        }
    }

    #[test]
    fn nick_rules_match_their_documented_pattern(nick in "[a-zA-Z][a-zA-Z0-9_-]{0,31}") {
        prop_assert!(validate_nick(&nick).is_ok());
        prop_assert_eq!(nick_key(&nick_key(&nick)), nick_key(&nick));
    }

    #[test]
    fn nicks_outside_the_pattern_are_refused(nick in ".{0,40}") {
        let ok = !nick.is_empty()
            && nick.len() <= 32
            && nick.starts_with(|c: char| c.is_ascii_alphabetic())
            && nick.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        prop_assert_eq!(validate_nick(&nick).is_ok(), ok);
    }
}

/// Logs `s` in (its keys published) and returns the bundle the directory would hand out.
fn published_bundle(s: &mut Sessions, now: Instant) -> PrekeyBundle {
    let upload = s
        .login(now, 1_800_000_000_000)
        .into_iter()
        .find_map(|a| match a {
            Action::Publish(u) => Some(u),
            _ => None,
        })
        .unwrap();
    let _ = s.published(upload.one_time.len() as u32, false);
    PrekeyBundle {
        identity: upload.identity,
        signed_prekey: upload.signed_prekey,
        one_time: upload.one_time.first().cloned(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any sequence of texts, in both directions, arrives intact and in order through an
    /// end-to-end session started from a prekey bundle, and every ciphertext has a bucket's
    /// length.
    #[test]
    fn secure_sessions_deliver_any_texts_in_order(
        texts in proptest::collection::vec((any::<bool>(), ".{1,300}"), 1..40),
    ) {
        let now = Instant::now();
        let config = E2eConfig::default();
        let mut a = Sessions::new("alice", Identity::generate(), Pins::default(), config.clone());
        let mut b = Sessions::new("bob", Identity::generate(), Pins::default(), config);
        let alice_bundle = published_bundle(&mut a, now);
        let bundle = published_bundle(&mut b, now);
        let mut wire: Vec<(bool, Vec<u8>)> = Vec::new(); // (to_bob, payload)
        let mut got_a = Vec::new();
        let mut got_b = Vec::new();
        fn push(actions: Vec<Action>, to_bob: bool, wire: &mut Vec<(bool, Vec<u8>)>, got: &mut Vec<String>) {
            for action in actions {
                match action {
                    Action::Send { payload, .. } => wire.push((to_bob, payload)),
                    Action::Event(E2eEvent::Message { text, .. }) => got.push(text),
                    Action::Event(e @ (E2eEvent::Failed { .. } | E2eEvent::Unreadable { .. } | E2eEvent::Replayed { .. })) => panic!("{e:?}"),
                    _ => {}
                }
            }
        }
        let start = a.start("bob", now).unwrap();
        prop_assert!(start.contains(&Action::FetchBundle("bob".into())));
        push(a.bundle("bob", BundleAnswer::Keys(bundle), now), true, &mut wire, &mut got_a);
        let mut sent_to_b = Vec::new();
        let mut sent_to_a = Vec::new();
        let mut pending = texts.iter();
        let mut id = 0;
        loop {
            // Deliver everything in flight, then send the next text.
            while !wire.is_empty() {
                let (to_bob, payload) = wire.remove(0);
                let sealed = match postcard::from_bytes::<Envelope>(&payload) {
                    Ok(Envelope::Start { message, .. } | Envelope::Message(message)) => message,
                    other => panic!("{other:?}"),
                };
                prop_assert!(PAD_BUCKETS.iter().any(|b| b + 16 == sealed.ciphertext.len()));
                id += 1;
                if to_bob {
                    let actions = b.receive("alice", id, &payload, now);
                    push(actions, false, &mut wire, &mut got_b);
                } else {
                    let actions = a.receive("bob", id, &payload, now);
                    push(actions, true, &mut wire, &mut got_a);
                }
            }
            let Some((from_alice, text)) = pending.next() else { break };
            let (me, to_bob) = if *from_alice { (&mut a, true) } else { (&mut b, false) };
            let peer = if *from_alice { "bob" } else { "alice" };
            // Texts a plain line could not hold are refused before encryption, as plain.
            if mm_common::protocol::validate_text(text, mm_common::protocol::MAX_TEXT_LEN).is_err() {
                prop_assert!(matches!(
                    me.send_text(peer, text, 0, now),
                    Err(mm_common::e2e::Refused::InvalidText(_))
                ));
                continue;
            }
            match me.send_text(peer, text, 0, now).unwrap() {
                Outgoing::Secure(actions) => {
                    let got = if to_bob { &mut got_a } else { &mut got_b };
                    push(actions, to_bob, &mut wire, got);
                }
                // Bob speaks before alice's first message reached him: he starts a session
                // of his own from alice's bundle (both sessions then work).
                Outgoing::Queued(actions) if !*from_alice => {
                    prop_assert_eq!(actions, vec![Action::FetchBundle("alice".into())]);
                    let answer = BundleAnswer::Keys(alice_bundle.clone());
                    push(b.bundle("alice", answer, now), false, &mut wire, &mut got_b);
                }
                other => panic!("{other:?}"),
            }
            if *from_alice { sent_to_b.push(text.clone()) } else { sent_to_a.push(text.clone()) }
        }
        prop_assert_eq!(got_b, sent_to_b);
        prop_assert_eq!(got_a, sent_to_a);
    }
}

/// Every look-alike substitution the skeleton covers, both ways: (what, what it may replace).
const LOOK_ALIKES: &[(&str, &str)] = &[
    ("I", "l"),
    ("l", "I"),
    ("1", "l"),
    ("l", "1"),
    ("I", "1"),
    ("i", "l"),
    ("L", "I"),
    ("0", "O"),
    ("O", "0"),
    ("o", "0"),
    ("m", "rn"),
    ("rn", "m"),
    ("M", "RN"),
    ("w", "vv"),
    ("vv", "w"),
    ("W", "VV"),
    ("d", "cl"),
    ("cl", "d"),
    ("D", "CL"),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_look_alike_substitution_keeps_the_skeleton(
        nick in "[a-zA-Z][a-zA-Z0-9_-]{0,31}",
        at in any::<proptest::sample::Index>(),
    ) {
        let s = skeleton(&nick);
        for (from, to) in LOOK_ALIKES {
            // Replace each occurrence alone, and all of them at once.
            let found: Vec<usize> = nick.match_indices(from).map(|(i, _)| i).collect();
            if found.is_empty() {
                continue;
            }
            let i = found[at.index(found.len())];
            let one = format!("{}{}{}", &nick[..i], to, &nick[i + from.len()..]);
            prop_assert_eq!(skeleton(&one), s.clone(), "{} -> {}", nick, one);
            let all = nick.replace(from, to);
            prop_assert_eq!(skeleton(&all), s.clone(), "{} -> {}", nick, all);
        }
    }

    #[test]
    fn a_look_alike_inserted_anywhere_matches_the_original(
        nick in "[a-zA-Z][a-zA-Z0-9_-]{0,28}",
        at in any::<proptest::sample::Index>(),
        pair in proptest::sample::select(LOOK_ALIKES),
    ) {
        // The same name with `pair.0` at one place, or `pair.1` there instead.
        let i = at.index(nick.len() + 1);
        let a = format!("{}{}{}", &nick[..i], pair.0, &nick[i..]);
        let b = format!("{}{}{}", &nick[..i], pair.1, &nick[i..]);
        prop_assert_eq!(skeleton(&a), skeleton(&b));
    }

    #[test]
    fn skeletons_are_idempotent_and_case_insensitive(nick in "[a-zA-Z][a-zA-Z0-9_-]{0,31}") {
        let s = skeleton(&nick);
        prop_assert_eq!(skeleton(&s), s.clone());
        prop_assert_eq!(skeleton(&nick.to_ascii_lowercase()), s.clone());
        prop_assert_eq!(skeleton(&nick.to_ascii_uppercase()), s.clone());
        prop_assert_eq!(skeleton(&nick_key(&nick)), s.clone());
        prop_assert!(s.len() <= 2 * nick.len());
    }

    #[test]
    fn the_skeleton_never_panics(name in ".{0,64}") {
        let s = skeleton(&name);
        prop_assert_eq!(skeleton(&s), s);
    }
}
