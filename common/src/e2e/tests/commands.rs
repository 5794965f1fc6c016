//! The user's commands decide before they change anything: a refused command leaves the
//! conversation as it was (saved state included), and `/secure` said while the keys are still
//! being fetched after `/insecure` is done (saved), with the texts waiting sent encrypted.

use super::*;
use crate::e2e::Failure;

/// Whether `actions` hold a send of `line`: `Some(true)` encrypted, `Some(false)` plain.
fn sent(actions: &[Action], line: u64) -> Option<bool> {
    actions.iter().find_map(|a| match a {
        Action::Send { line: Some(l), .. } if *l == line => Some(true),
        Action::SendPlain { line: l, .. } if *l == line => Some(false),
        _ => None,
    })
}

/// Alice types to Bob (his keys are asked for, the answer not in yet), says `/insecure`, types
/// again (that line waits, for plain), then says `/secure`: done, saved, and when the keys come
/// both lines go encrypted — none plain.
#[test]
fn secure_while_the_keys_are_fetched_after_insecure_is_done_and_the_waiting_lines_go_encrypted() {
    let mut w = pair();
    w.login("alice");
    let now = w.now;
    let s = &mut w.user_mut("alice").sessions;
    let first = s.send_text("bob", "one", 1, now).unwrap();
    assert!(
        matches!(&first, Outgoing::Queued(a) if matches!(a.as_slice(), [Action::FetchBundle(_)])),
        "{first:?}"
    );
    s.end("bob").unwrap();
    assert!(matches!(
        s.send_text("bob", "two", 2, now),
        Ok(Outgoing::QueuedPlain)
    ));
    let actions = s.start("bob", now).expect("/secure while fetching is done");
    assert!(
        matches!(actions.first(), Some(Action::Persist)),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Event(E2eEvent::Resumed { peer }) if peer == "bob")),
        "{actions:?}"
    );
    assert_eq!(s.status("bob"), Status::Starting);
    // Saved: a restart from this state is end-to-end with Bob, not plain.
    let saved = s.state_bytes().to_vec();
    let identity = w.user("alice").identity.clone();
    let mut again = Sessions::new("alice", identity, Pins::default(), E2eConfig::default());
    again.restore(&saved).unwrap();
    assert_ne!(again.status("bob"), Status::Plain);
    // The keys come: both lines encrypted, in order, nothing plain.
    let answer = w.bundle_for("bob");
    let actions = w.user_mut("alice").sessions.bundle("bob", answer, now);
    assert_eq!(sent(&actions, 1), Some(true), "{actions:?}");
    assert_eq!(sent(&actions, 2), Some(true), "{actions:?}");
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::SendPlain { .. })),
        "{actions:?}"
    );
}

/// Every refusal of a command or a text changes nothing: the state to save is the same bytes
/// before and after, and so is the status.
#[test]
fn a_refused_command_changes_nothing() {
    fn unchanged(
        w: &mut World,
        peer: &str,
        what: &str,
        f: impl FnOnce(&mut Sessions, Instant) -> Result<Vec<Action>, Refused>,
    ) {
        let now = w.now;
        let s = &mut w.user_mut("bob").sessions;
        let (before, status) = (s.state_bytes().to_vec(), s.status(peer));
        let result = f(s, now);
        assert!(result.is_err(), "{what}: {result:?}");
        assert!(
            s.state_bytes().as_slice() == before.as_slice(),
            "{what} changed the state: {result:?}"
        );
        assert_eq!(s.status(peer), status, "{what}");
    }
    // A key change not accepted, in a conversation the user made plain.
    let (mut w, _) = super::held::changed();
    w.send("alice", "bob", "under the new key").unwrap();
    assert!(matches!(
        w.status("bob", "alice"),
        Status::Failed(Failure::KeyChanged { .. })
    ));
    w.command("bob", |s, _| s.end("alice")).unwrap();
    unchanged(&mut w, "alice", "/secure, key changed", |s, now| {
        s.start("alice", now)
    });
    unchanged(&mut w, "alice", "/insecure, plain already", |s, _| {
        s.end("alice")
    });
    unchanged(&mut w, "alice", "/verified, key changed", |s, now| {
        s.mark_verified("alice", now)
    });
    // Refused texts and commands to someone never talked to make no entry.
    unchanged(
        &mut w,
        "carol",
        "/accept-key, nothing to accept",
        |s, now| s.accept_key("carol", now),
    );
    unchanged(&mut w, "carol", "text that breaks the rules", |s, now| {
        s.send_text("carol", "a\u{7}b", 9, now).map(|_| Vec::new())
    });
    // /secure twice while the keys are fetched; /secure with a session already.
    let now = w.now;
    let s = &mut w.user_mut("bob").sessions;
    s.start("dave", now).unwrap();
    unchanged(&mut w, "dave", "/secure, starting", |s, now| {
        s.start("dave", now)
    });
    let mut w = pair();
    w.login("alice");
    w.login("bob");
    w.send("bob", "alice", "hi").unwrap();
    unchanged(&mut w, "alice", "/secure, secure already", |s, now| {
        s.start("alice", now)
    });
}

/// With end-to-end by default off, `/insecure` to someone never talked to is refused (plain
/// already) and makes no entry: it is not taken for a new conversation the table has no room for.
#[test]
fn a_refused_insecure_makes_no_entry() {
    let config = E2eConfig {
        end_to_end_by_default: false,
        max_peers: 2,
        ..E2eConfig::default()
    };
    let mut w = World::with_config(config);
    w.add("alice");
    let now = w.now;
    let s = &mut w.user_mut("alice").sessions;
    s.start("bob", now).unwrap();
    s.end("bob").unwrap();
    s.start("carol", now).unwrap();
    s.end("carol").unwrap();
    let before = s.state_bytes().to_vec();
    assert!(matches!(s.end("dave"), Err(Refused::AlreadyPlain(_))));
    assert!(
        s.state_bytes().as_slice() == before.as_slice(),
        "a refused /insecure changed the state"
    );
}
