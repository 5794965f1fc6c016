//! Deterministic in-memory tests of the protocol core: no sockets, no threads, no sleeps. Time
//! is an [`Instant`] the tests move themselves.
//!
//! - [`double`]: an in-memory server double speaking the real wire protocol;
//! - [`world`]: the double and several cores on a simulated clock ([`world::World`]);
//! - `script`: one core fed scripted server bytes (hostile servers, acknowledgements);
//! - `chat`: login, public and private chat, offline mail, `/who`, pacing, wake-ups;
//! - `secure`: end-to-end by default through the double's key directory: sessions started
//!   from prekeys (the peer online or not), offline delivery, restarts, `/insecure`;
//! - `exits`: every way a conversation fails or leaves end-to-end (no keys, a changed key,
//!   our own key, unreadable or replayed messages, a refused relay), and that nothing goes
//!   plain unless the user chose it.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use mm_common::e2e::{E2eConfig, E2eEvent};
use mm_common::frame;
use mm_common::protocol::{ClientMsg, ServerMsg};

use super::{ClientState, Core, CoreConfig, Event};
use crate::secure::SecureSetup;

mod chat;
mod double;
mod exits;
mod notice;
mod rooms;
mod script;
mod secure;
mod world;

/// Read timeout of test cores: long, so that only tests about it see it.
const READ_TIMEOUT: Duration = Duration::from_secs(600);

/// A configuration for `nick` with a fresh in-memory identity and state.
fn config(nick: &str) -> CoreConfig {
    config_e2e(nick, E2eConfig::default())
}

/// A configuration for `nick` with a fresh in-memory identity and these end-to-end tunables.
fn config_e2e(nick: &str, e2e: E2eConfig) -> CoreConfig {
    let mut secure = SecureSetup::ephemeral();
    secure.config = e2e;
    CoreConfig {
        nick: nick.to_owned(),
        login_timeout: Duration::from_secs(10),
        read_timeout: READ_TIMEOUT,
        user_list: true,
        secure,
        state: ClientState::new(),
        reconnection: false,
        reconnects: false,
    }
}

/// Appends the frames of `msgs` to one buffer, as a server writes them.
fn frames(msgs: &[ServerMsg]) -> BytesMut {
    let mut bytes = BytesMut::new();
    for msg in msgs {
        frame::encode_into(msg, &mut bytes).expect("test messages encode");
    }
    bytes
}

/// Everything `core` transmits at `now`, decoded.
fn transmitted(core: &mut Core, now: Instant) -> Vec<ClientMsg> {
    let mut out = BytesMut::new();
    while core.poll_transmit(now, &mut out) {}
    let mut msgs = Vec::new();
    while let Ok(payload) = frame::split_frame(&mut out) {
        msgs.push(ClientMsg::decode(&payload).expect("the core sends valid messages"));
    }
    assert!(out.is_empty(), "a partial frame was transmitted");
    msgs
}

/// Every event waiting in `core` at `now`.
fn drain(core: &mut Core, now: Instant) -> Vec<Event> {
    std::iter::from_fn(|| core.poll_event(now)).collect()
}

/// The end-to-end events among `events`.
fn secure_events(events: &[Event]) -> Vec<&E2eEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Secure(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// Whether `events` hold `Ready` for `peer`, started by the peer or by us as asked.
fn ready(events: &[Event], peer: &str, by_peer: bool) -> bool {
    secure_events(events).iter().any(
        |e| matches!(e, E2eEvent::Ready { peer: p, by_peer: b, .. } if p == peer && *b == by_peer),
    )
}

/// The texts of the secure messages from `peer` among `events`.
fn secure_texts(events: &[Event], peer: &str) -> Vec<String> {
    secure_events(events)
        .iter()
        .filter_map(|e| match e {
            E2eEvent::Message { peer: p, text, .. } if p == peer => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// Whether the plain text `text` reached the server as a `Private` from anyone.
fn sent_plain(world: &world::World, text: &str) -> bool {
    world
        .server
        .log
        .iter()
        .any(|l| matches!(&l.msg, ClientMsg::Private { text: t, .. } if t == text))
}

/// The relay payloads `from` sent, in order.
fn relays_from(world: &world::World, from: &str) -> Vec<Vec<u8>> {
    world
        .server
        .log
        .iter()
        .filter(|l| l.from == from)
        .filter_map(|l| match &l.msg {
            ClientMsg::Relay { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .collect()
}

/// Whether a relay payload is an [`mm_common::e2e::Envelope::Start`] (it carries the X3DH
/// start: the sender has not heard from the peer in that session yet). Postcard encodes an
/// enum's variant first, as a varint: 0 is `Start`, 1 is `Message`.
fn is_start(payload: &[u8]) -> bool {
    payload.first() == Some(&0)
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
