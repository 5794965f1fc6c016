//! `/secure`: end-to-end encrypted private chats through a real server.

use mm_client::ChatLine;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mm_client::{Delivery, Event, SendError};
use mm_common::e2e::{
    noise_builder, prologue, AbortReason, E2eConfig, E2eEvent, Envelope, Failure, Refused,
    SessionId, Trust,
};
use mm_common::identity::Identity;
use mm_tests::{TestClient, TestServer};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

type Seen = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A server that records every payload it relays.
async fn recording_server() -> (TestServer, Seen) {
    let seen: Seen = Arc::default();
    let tap = Arc::clone(&seen);
    let server =
        TestServer::start_with_hook(Arc::new(move |from: &str, to: &str, payload: Vec<u8>| {
            tap.lock()
                .unwrap()
                .push((from.to_owned(), to.to_owned(), payload.clone()));
            payload
        }))
        .await;
    (server, seen)
}

#[tokio::test]
async fn alice_and_bob_talk_securely_and_neither_carol_nor_the_server_sees_the_text() {
    let (server, seen) = recording_server().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut carol = server.client("carol").await;

    alice.client.secure("bob").await.unwrap();
    match alice.secure_ready("bob").await {
        E2eEvent::Ready {
            key,
            trust,
            renewed,
            ..
        } => {
            assert_eq!(key, bob.client.public_key(), "alice sees bob's real key");
            assert_eq!((trust, renewed), (Trust::New, false));
        }
        other => panic!("{other:?}"),
    }
    match bob.secure_ready("alice").await {
        E2eEvent::Ready { key, .. } => assert_eq!(key, alice.client.public_key()),
        other => panic!("{other:?}"),
    }

    let secrets = [
        "the eagle lands at midnight",
        "bring the blue folder",
        "ünïcødé ✓ secret",
    ];
    assert_eq!(
        alice.client.private("bob", secrets[0]).await.unwrap().1,
        Delivery::Secure
    );
    assert_eq!(
        bob.secure_message().await,
        ("alice".to_string(), secrets[0].to_string())
    );
    assert_eq!(
        bob.client.private("ALICE", secrets[1]).await.unwrap().1,
        Delivery::Secure
    );
    assert_eq!(
        alice.secure_message().await,
        ("bob".to_string(), secrets[1].to_string())
    );
    assert_eq!(
        alice.client.private("bob", secrets[2]).await.unwrap().1,
        Delivery::Secure
    );
    assert_eq!(
        bob.secure_message().await,
        ("alice".to_string(), secrets[2].to_string())
    );

    // carol's next chat line is the public marker: she saw nothing of the secure chat.
    alice.client.public("marker").await.unwrap();
    let next = carol
        .wait_for("a line", |e| {
            matches!(
                e,
                Event::Public(ChatLine { .. }) | Event::Private(ChatLine { .. }) | Event::Secure(_)
            )
        })
        .await;
    assert!(
        matches!(&next, Event::Public(ChatLine { text, .. }) if text == "marker"),
        "{next:?}"
    );

    // The server relayed the handshake and the messages, and none of it is readable.
    let seen = seen.lock().unwrap();
    assert!(
        seen.len() >= 6,
        "3 handshake messages and 3 data messages, saw {}",
        seen.len()
    );
    for (from, to, payload) in seen.iter() {
        assert!(
            matches!(
                (from.as_str(), to.as_str()),
                ("alice", "bob") | ("bob", "alice")
            ),
            "{from} -> {to}"
        );
        for secret in secrets {
            // Not the text, nor any 6-byte piece of it.
            for piece in secret.as_bytes().windows(6) {
                assert!(
                    !contains(payload, piece),
                    "plaintext piece {:?} visible to the server",
                    String::from_utf8_lossy(piece)
                );
            }
        }
    }
}

#[tokio::test]
async fn secure_errors_are_clear() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    // An offline peer: the server says so, and the handshake fails at once (no 30 s wait).
    // Since protocol 6 a relay's refusal comes once the store has looked the nick up (as a
    // private line's does), so carol's presence (offline) may tell first.
    alice.client.secure("carol").await.unwrap();
    let failed = alice
        .secure_event("failure", |e| matches!(e, E2eEvent::Failed { .. }))
        .await;
    assert!(
        matches!(
            &failed,
            E2eEvent::Failed { peer, failure: Failure::Unreachable | Failure::PeerLeft, unsent }
                if peer == "carol" && unsent.is_empty()
        ),
        "{failed:?}"
    );
    // Today's reason: carol is offline (nothing is sent, and it says what happens next).
    match alice.client.private("carol", "x").await {
        Err(SendError::Refused(e @ Refused::Offline(_))) => {
            assert!(
                e.to_string()
                    .contains("restarts by itself when carol is back"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        alice.client.secure("Alice").await.unwrap_err(),
        SendError::Refused(Refused::Yourself)
    );
    assert!(matches!(
        alice.client.secure("bad nick").await,
        Err(SendError::Refused(Refused::InvalidNick(_)))
    ));
    assert!(matches!(
        alice.client.insecure("bob").await,
        Err(SendError::Refused(Refused::NoSession(_)))
    ));
    assert!(matches!(
        alice.client.safety_number("bob"),
        Err(Refused::NoKey(_))
    ));
}

#[tokio::test]
async fn both_starting_at_once_gives_one_session() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let (a, b) = tokio::join!(alice.client.secure("bob"), bob.client.secure("alice"));
    a.unwrap();
    b.unwrap();
    alice.secure_ready("bob").await;
    bob.secure_ready("alice").await;
    for i in 0..5 {
        assert_eq!(
            alice
                .client
                .private("bob", &format!("a{i}"))
                .await
                .unwrap()
                .1,
            Delivery::Secure
        );
        assert_eq!(
            bob.client
                .private("alice", &format!("b{i}"))
                .await
                .unwrap()
                .1,
            Delivery::Secure
        );
    }
    for i in 0..5 {
        assert_eq!(bob.secure_message().await.1, format!("a{i}"));
        assert_eq!(alice.secure_message().await.1, format!("b{i}"));
    }
    // No failure or second session on either side.
    alice.client.public("end").await.unwrap();
    let mut saw = Vec::new();
    loop {
        match bob.next().await {
            Event::Public(ChatLine { text, .. }) if text == "end" => break,
            Event::Secure(e) => saw.push(e),
            _ => {}
        }
    }
    assert!(saw.is_empty(), "{saw:?}");
}

#[tokio::test]
async fn a_peer_leaving_blocks_sending_until_the_user_decides() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let bob_opts = server.options("bob");
    let bob = server.client_with(bob_opts.clone()).await;
    alice.client.secure("bob").await.unwrap();
    alice.secure_ready("bob").await;
    bob.client.quit().await;
    let failed = alice
        .secure_event("failure", |e| matches!(e, E2eEvent::Failed { .. }))
        .await;
    assert!(
        matches!(
            failed,
            E2eEvent::Failed {
                failure: Failure::PeerLeft,
                ..
            }
        ),
        "{failed:?}"
    );

    // Never a silent fallback to plain text while bob is away.
    match alice.client.private("bob", "are you there?").await {
        Err(SendError::Refused(Refused::Offline(_))) => {}
        other => panic!("{other:?}"),
    }
    // bob is back (same keys): alice's side restarts the session by itself (it monitors bob)
    // and what she sends goes end-to-end again.
    let mut bob = TestClient::connect(&bob_opts).await;
    alice
        .secure_event(
            "the session restarting",
            |e| matches!(e, E2eEvent::Ready { peer, .. } if peer == "bob"),
        )
        .await;
    assert_eq!(
        alice
            .client
            .private("bob", "are you there?")
            .await
            .unwrap()
            .1,
        Delivery::Secure
    );
    assert_eq!(bob.secure_message().await.1, "are you there?");
    alice.client.insecure("bob").await.unwrap();
    assert_eq!(
        alice.client.private("bob", "plain now").await.unwrap().1,
        Delivery::Plain
    );
    assert!(
        matches!(bob.next_line().await, Event::Private(ChatLine { text, .. }) if text == "plain now")
    );
}

#[tokio::test]
async fn sessions_renew_their_keys_and_the_conversation_goes_on() {
    let server = TestServer::start_unthrottled().await;
    let mut opts = server.options("alice");
    opts.secure.config = E2eConfig {
        rehandshake_messages: 5,
        rekey_every: 2,
        ..E2eConfig::default()
    };
    let mut alice = server.client_with(opts).await;
    let mut bob = server.client("bob").await;
    alice.client.secure("bob").await.unwrap();
    alice.secure_ready("bob").await;
    let mut renewals = 0;
    for i in 0..30 {
        alice.client.private("bob", &format!("m{i}")).await.unwrap();
        assert_eq!(bob.secure_message().await.1, format!("m{i}"));
        bob.client.private("alice", &format!("r{i}")).await.unwrap();
        loop {
            match alice.next().await {
                Event::Secure(E2eEvent::Message { text, .. }) => {
                    assert_eq!(text, format!("r{i}"));
                    break;
                }
                Event::Secure(E2eEvent::Ready { renewed: true, .. }) => renewals += 1,
                Event::Secure(e @ E2eEvent::Failed { .. }) => panic!("{e:?}"),
                _ => {}
            }
        }
    }
    assert!(
        renewals >= 3,
        "expected several re-handshakes, saw {renewals}"
    );
}

#[tokio::test]
async fn pins_survive_a_restart_and_a_changed_key_is_refused_loudly() {
    let server = TestServer::start().await;
    let (alice_home, bob_home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let options = |nick: &str, home: &std::path::Path| {
        let mut opts = server.options(nick);
        opts.secure = mm_client::SecureSetup::load(home).unwrap().0;
        opts
    };

    // First contact: new keys, pinned on both sides and saved.
    let mut alice = server
        .client_with(options("alice", alice_home.path()))
        .await;
    let mut bob = server.client_with(options("bob", bob_home.path())).await;
    alice.client.secure("bob").await.unwrap();
    assert!(matches!(
        alice.secure_ready("bob").await,
        E2eEvent::Ready {
            trust: Trust::New,
            ..
        }
    ));
    bob.secure_ready("alice").await;
    let number = alice.client.safety_number("bob").unwrap();
    assert_eq!(number, bob.client.safety_number("alice").unwrap());
    alice.client.mark_verified("bob").await.unwrap();
    let pins = std::fs::read_to_string(alice_home.path().join("pins")).unwrap();
    assert!(pins.contains("bob") && pins.contains("verified"), "{pins}");
    alice.client.quit().await;
    bob.client.quit().await;
    alice
        .wait_for("close", |e| matches!(e, Event::Closed { .. }))
        .await;
    bob.wait_for("close", |e| matches!(e, Event::Closed { .. }))
        .await;

    // Restart both: the pin (and its verification) is remembered.
    let mut alice = server
        .client_with(options("alice", alice_home.path()))
        .await;
    let bob = server.client_with(options("bob", bob_home.path())).await;
    // Both remember the conversation as secure, so it restarts by itself once both are online;
    // whether alice's /secure comes before that or finds it starting is a race.
    match alice.client.secure("bob").await {
        Ok(()) | Err(SendError::Refused(Refused::AlreadyStarting(_))) => {}
        Err(e) => panic!("{e:?}"),
    }
    assert!(matches!(
        alice.secure_ready("bob").await,
        E2eEvent::Ready {
            trust: Trust::Verified,
            ..
        }
    ));
    assert_eq!(alice.client.safety_number("bob").unwrap(), number);
    alice.client.insecure("bob").await.unwrap();
    bob.client.quit().await;

    // bob comes back with a new identity (new machine, or someone else): refused, loudly.
    std::fs::remove_file(bob_home.path().join("identity.key")).unwrap();
    let mut bob = server.client_with(options("bob", bob_home.path())).await;
    alice
        .wait_for(
            "bob back",
            |e| matches!(e, Event::Joined { nick } if nick == "bob"),
        )
        .await;
    alice.client.secure("bob").await.unwrap();
    let failed = alice
        .secure_event("failure", |e| matches!(e, E2eEvent::Failed { .. }))
        .await;
    match failed {
        E2eEvent::Failed {
            failure: Failure::KeyChanged { presented, .. },
            ..
        } => {
            assert_eq!(presented, bob.client.public_key());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        alice.client.private("bob", "x").await,
        Err(SendError::Refused(Refused::KeyNotAccepted(_)))
    ));
    assert!(matches!(
        alice.client.secure("bob").await,
        Err(SendError::Refused(Refused::KeyNotAccepted(_)))
    ));
    // bob learns alice's key from message 3 and is told at once that she did not accept his:
    // nothing he might send reaches her, and both can compare the new key's safety number.
    // (A handshake replayed from bob's mailbox, stale since his restart, may fail first:
    // that only interrupts.)
    let bob_saw = bob
        .secure_event(
            "bob's outcome",
            |e| matches!(e, E2eEvent::Failed { failure, .. } if !failure.is_interruption()),
        )
        .await;
    assert!(
        matches!(
            bob_saw,
            E2eEvent::Failed {
                failure: Failure::PeerAborted(AbortReason::KeyNotAccepted),
                ..
            }
        ),
        "{bob_saw:?}"
    );
    assert_eq!(
        alice.client.safety_number("bob").unwrap(),
        bob.client.safety_number("alice").unwrap(),
        "the safety number alice sees is the one of the key bob presents"
    );
    // Accepting the new key is explicit, clears "verified" and starts a new session.
    alice.client.accept_key("bob").await.unwrap();
    assert!(matches!(
        alice.secure_ready("bob").await,
        E2eEvent::Ready {
            trust: Trust::Pinned,
            ..
        }
    ));
}

/// A relay that runs its own handshake with each side and re-encrypts everything: the attack
/// that pinning and safety numbers exist to catch.
struct Mitm {
    active: AtomicBool,
    secret: [u8; 32],
    sessions: Mutex<HashMap<SessionId, MitmSession>>,
    read: Mutex<Vec<String>>,
}

struct MitmSession {
    initiator: String,
    /// Mallory as responder to the real initiator.
    toward_initiator: Option<snow::HandshakeState>,
    /// Mallory as initiator to the real responder.
    toward_responder: Option<snow::HandshakeState>,
    transports: Option<(snow::TransportState, snow::TransportState)>,
}

impl Mitm {
    fn new() -> Arc<Mitm> {
        let mut secret = [0u8; 32];
        secret.copy_from_slice(
            &Identity::generate()
                .to_file_text()
                .lines()
                .nth(1)
                .map(|h| mm_common::identity::parse_key(h).unwrap())
                .unwrap(),
        );
        Arc::new(Mitm {
            active: AtomicBool::new(false),
            secret,
            sessions: Mutex::default(),
            read: Mutex::default(),
        })
    }

    fn public(&self) -> [u8; 32] {
        *Identity::from_secret(self.secret).public()
    }

    fn relay(&self, from: &str, to: &str, payload: Vec<u8>) -> Vec<u8> {
        if !self.active.load(Ordering::SeqCst) {
            return payload;
        }
        let Ok(envelope) = postcard::from_bytes::<Envelope>(&payload) else {
            return payload;
        };
        let mut buf = vec![0u8; 65535];
        let mut out = vec![0u8; 65535];
        let mut sessions = self.sessions.lock().unwrap();
        let forged = match envelope {
            Envelope::Hello { session, noise } => {
                let pro = prologue(from, to, &session);
                let mut r = noise_builder(&self.secret, &pro)
                    .unwrap()
                    .build_responder()
                    .unwrap();
                r.read_message(&noise, &mut out).unwrap();
                let mut i = noise_builder(&self.secret, &pro)
                    .unwrap()
                    .build_initiator()
                    .unwrap();
                let n = i.write_message(&[], &mut buf).unwrap();
                sessions.insert(
                    session,
                    MitmSession {
                        initiator: from.into(),
                        toward_initiator: Some(r),
                        toward_responder: Some(i),
                        transports: None,
                    },
                );
                Envelope::Hello {
                    session,
                    noise: buf[..n].to_vec(),
                }
            }
            Envelope::Reply { session, noise } => {
                let s = sessions.get_mut(&session).unwrap();
                s.toward_responder
                    .as_mut()
                    .unwrap()
                    .read_message(&noise, &mut out)
                    .unwrap();
                let n = s
                    .toward_initiator
                    .as_mut()
                    .unwrap()
                    .write_message(&[], &mut buf)
                    .unwrap();
                Envelope::Reply {
                    session,
                    noise: buf[..n].to_vec(),
                }
            }
            Envelope::Finish { session, noise } => {
                let s = sessions.get_mut(&session).unwrap();
                let mut r = s.toward_initiator.take().unwrap();
                let mut i = s.toward_responder.take().unwrap();
                r.read_message(&noise, &mut out).unwrap();
                let n = i.write_message(&[], &mut buf).unwrap();
                s.transports = Some((
                    r.into_transport_mode().unwrap(),
                    i.into_transport_mode().unwrap(),
                ));
                Envelope::Finish {
                    session,
                    noise: buf[..n].to_vec(),
                }
            }
            Envelope::Data {
                session,
                ciphertext,
            } => {
                let s = sessions.get_mut(&session).unwrap();
                let (ti, tr) = s.transports.as_mut().unwrap();
                let (open, seal) = if from == s.initiator {
                    (ti, tr)
                } else {
                    (tr, ti)
                };
                let n = open.read_message(&ciphertext, &mut out).unwrap();
                self.read
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&out[..n]).into_owned());
                let m = seal.write_message(&out[..n], &mut buf).unwrap();
                Envelope::Data {
                    session,
                    ciphertext: buf[..m].to_vec(),
                }
            }
            other => other,
        };
        postcard::to_allocvec(&forged).unwrap()
    }
}

async fn mitm_server() -> (TestServer, Arc<Mitm>) {
    let mitm = Mitm::new();
    let hook = Arc::clone(&mitm);
    let server =
        TestServer::start_with_hook(Arc::new(move |from: &str, to: &str, payload: Vec<u8>| {
            hook.relay(from, to, payload)
        }))
        .await;
    (server, mitm)
}

#[tokio::test]
async fn a_relay_that_swaps_keys_on_first_contact_shows_in_the_safety_numbers() {
    let (server, mitm) = mitm_server().await;
    mitm.active.store(true, Ordering::SeqCst);
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.client.secure("bob").await.unwrap();
    // Trust on first use cannot tell: both sides see a "new" key...
    let E2eEvent::Ready {
        key: alice_sees, ..
    } = alice.secure_ready("bob").await
    else {
        unreachable!()
    };
    let E2eEvent::Ready { key: bob_sees, .. } = bob.secure_ready("alice").await else {
        unreachable!()
    };
    assert_eq!(alice_sees, mitm.public());
    assert_eq!(bob_sees, mitm.public());
    alice.client.private("bob", "hello").await.unwrap();
    assert_eq!(bob.secure_message().await.1, "hello");
    assert!(
        mitm.read
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.contains("hello")),
        "the attack is real"
    );
    // ...but comparing safety numbers out of band exposes it.
    assert_ne!(
        alice.client.safety_number("bob").unwrap(),
        bob.client.safety_number("alice").unwrap()
    );
}

#[tokio::test]
async fn a_relay_that_swaps_keys_on_a_pinned_peer_is_stopped_before_anything_is_sent() {
    let (server, mitm) = mitm_server().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    // An honest session first: the real keys get pinned.
    alice.client.secure("bob").await.unwrap();
    alice.secure_ready("bob").await;
    bob.secure_ready("alice").await;
    alice.client.insecure("bob").await.unwrap();
    bob.secure_event("ended", |e| matches!(e, E2eEvent::Ended { .. }))
        .await;

    mitm.active.store(true, Ordering::SeqCst);
    alice.client.secure("bob").await.unwrap();
    let failed = alice
        .secure_event("key change", |e| matches!(e, E2eEvent::Failed { .. }))
        .await;
    match failed {
        E2eEvent::Failed {
            failure: Failure::KeyChanged { pinned, presented },
            ..
        } => {
            assert_eq!(pinned, bob.client.public_key());
            assert_eq!(presented, mitm.public());
        }
        other => panic!("{other:?}"),
    }
    // Alice aborted before handshake message 3: the relay never completed either handshake,
    // and alice refuses to send anything to bob.
    assert!(mitm
        .sessions
        .lock()
        .unwrap()
        .values()
        .all(|s| s.transports.is_none()));
    assert!(matches!(
        alice.client.private("bob", "secret").await,
        Err(SendError::Refused(Refused::KeyNotAccepted(_)))
    ));
    assert!(mitm.read.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_plain_message_during_a_secure_session_is_shown_plain_and_flagged() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.client.secure("bob").await.unwrap();
    alice.secure_ready("bob").await;
    bob.secure_ready("alice").await;
    // A client (or a server injecting a frame) sends a plain Private instead of an encrypted one.
    bob.client
        .send(&mm_common::protocol::ClientMsg::Private {
            to: "alice".into(),
            text: "trust me".into(),
        })
        .await
        .unwrap();
    let line = alice.next_line().await;
    assert!(
        matches!(&line, Event::Private(ChatLine { text, .. }) if text == "trust me"),
        "{line:?}"
    );
    match alice.next().await {
        Event::Warning(w) => assert!(w.contains("NOT end-to-end encrypted"), "{w}"),
        other => panic!("expected a warning, got {other:?}"),
    }
}

#[tokio::test]
async fn a_plain_line_in_a_secure_conversation_is_flagged_even_from_the_mailbox() {
    let server = TestServer::start().await;
    let alice_opts = server.options("alice");
    let bob_opts = server.options("bob");
    let mut alice = server.client_with(alice_opts.clone()).await;
    let bob = server.client_with(bob_opts.clone()).await;
    alice.client.secure("bob").await.unwrap();
    alice.secure_ready("bob").await;
    bob.client.quit().await;
    alice.client.quit().await;
    // An old copy of bob's home (same certificate, no secure conversation) writes plain while
    // alice is away: the server keeps it in her mailbox.
    let mut stale = bob_opts.clone();
    stale.secure = mm_client::SecureSetup::ephemeral();
    let mut stale_bob = TestClient::connect(&stale).await;
    stale_bob
        .client
        .private("alice", "plain, from an old copy")
        .await
        .unwrap();
    assert!(matches!(
        stale_bob.next_answer_or_queued().await,
        Event::Queued { .. }
    ));
    stale_bob.client.quit().await;
    // alice comes back: the line is shown, and flagged.
    let mut alice = TestClient::connect(&alice_opts).await;
    alice
        .wait_for(
            "the mail",
            |e| matches!(e, Event::Offline(ChatLine { text, .. }) if text == "plain, from an old copy"),
        )
        .await;
    let warning = alice
        .wait_for("the warning", |e| matches!(e, Event::Warning(_)))
        .await;
    assert!(
        matches!(&warning, Event::Warning(w) if w.contains("NOT end-to-end encrypted") && w.contains("bob")),
        "{warning:?}"
    );
}

/// A save the disk refuses is said while the client runs (not only at exit), and so is the
/// retry that works once the disk lets it.
#[tokio::test]
async fn a_save_the_disk_refuses_is_said_at_once_and_so_is_the_retry_that_works() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let gone = tmp.path().join("not-yet");
    let mut opts = server.options("alice");
    opts.secure.pins_file = Some(gone.join("pins"));
    opts.secure.conversations_file = Some(gone.join("conversations"));
    let mut alice = server.client_with(opts).await;
    let mut bob = server.client("bob").await;
    alice.client.secure("bob").await.unwrap();
    bob.secure_ready("alice").await;
    alice
        .wait_for(
            "the refused save",
            |e| matches!(e, Event::Warning(w) if w.contains("could not save pinned keys")),
        )
        .await;
    assert!(alice.client.unsaved().is_some());
    std::fs::create_dir(&gone).unwrap();
    alice
        .wait_for(
            "the save that worked",
            |e| matches!(e, Event::Warning(w) if w.contains("saved now")),
        )
        .await;
    assert!(alice.client.unsaved().is_none());
    assert!(std::fs::read_to_string(gone.join("pins"))
        .unwrap()
        .contains("bob"));
}
