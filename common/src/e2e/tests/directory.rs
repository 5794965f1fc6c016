//! Our keys in the directory: what a login publishes, signatures, replenishing, rotation, and
//! the copied-home check.

use std::time::Duration;

use super::*;
use crate::e2e::xeddsa;
use crate::prekeys::{signed_prekey_message, PREKEYS_LOW};

fn uploads(w: &World, nick: &str) -> Vec<KeyUpload> {
    w.user(nick)
        .action_lists
        .iter()
        .flatten()
        .filter_map(|a| match a {
            Action::Publish(u) => Some(u.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_login_publishes_a_signed_prekey_and_a_batch_of_one_time_prekeys_after_saving_them() {
    let mut w = World::new();
    w.add("alice");
    w.login("alice");
    let ups = uploads(&w, "alice");
    assert_eq!(ups.len(), 1);
    let up = &ups[0];
    assert_eq!(&up.identity, w.user("alice").identity.public());
    assert_eq!(up.one_time.len(), 100);
    assert!(up.validate().is_ok());
    assert!(xeddsa::verify(
        &up.identity,
        &signed_prekey_message(up.signed_prekey.id, &up.signed_prekey.key),
        &up.signed_prekey.signature
    ));
    // The secrets were saved before the public halves went out.
    let list = &w.user("alice").action_lists[0];
    let publish = list
        .iter()
        .position(|a| matches!(a, Action::Publish(_)))
        .unwrap();
    assert!(list[..publish].contains(&Action::Persist));
    // A second login publishes no new one-time keys while the server has the first batch.
    w.logout("alice");
    w.login("alice");
    let ups = uploads(&w, "alice");
    assert_eq!(ups.len(), 2);
    assert!(ups[1].one_time.is_empty());
    assert_eq!(ups[1].signed_prekey, ups[0].signed_prekey);
}

#[test]
fn low_one_time_prekeys_are_replenished_and_the_signed_prekey_rotates_weekly() {
    let mut w = pair();
    w.login("bob");
    let i = w.idx("bob");
    let actions = w.users[i].sessions.prekeys_low(PREKEYS_LOW - 1);
    let fresh: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish(u) => Some(u.one_time.len()),
            _ => None,
        })
        .collect();
    assert_eq!(fresh, vec![100]);
    // While that upload is unanswered, another PrekeysLow adds nothing.
    assert!(w.users[i].sessions.prekeys_low(0).is_empty());
    w.run(i, actions);
    let before = uploads(&w, "bob").last().unwrap().signed_prekey.clone();
    w.advance(Duration::from_secs(6 * 24 * 3600));
    w.logout("bob");
    w.login("bob");
    assert_eq!(uploads(&w, "bob").last().unwrap().signed_prekey, before);
    w.advance(Duration::from_secs(2 * 24 * 3600));
    w.logout("bob");
    w.login("bob");
    let after = uploads(&w, "bob").last().unwrap().signed_prekey.clone();
    assert_ne!(after.id, before.id);
    // A session started from a bundle fetched before the rotation still opens.
    let stale = crate::prekeys::PrekeyBundle {
        identity: *w.user("bob").identity.public(),
        signed_prekey: before,
        one_time: None,
    };
    w.bundle_hook = Some(Box::new(move |_, answer| {
        *answer = BundleAnswer::Keys(stale.clone());
    }));
    w.login("alice");
    w.send("alice", "bob", "old prekey").unwrap();
    assert_eq!(w.texts("bob", "alice"), vec!["old prekey"]);
}

#[test]
fn one_time_prekey_secrets_are_spent_once_used() {
    let mut w = pair();
    let before = w.user("bob").sessions.one_time_secrets();
    w.login("alice");
    w.send("alice", "bob", "hi").unwrap();
    w.login("bob");
    assert_eq!(w.user("bob").sessions.one_time_secrets(), before - 1);
}

#[test]
fn another_copy_of_the_home_is_reported() {
    let mut w = World::new();
    w.add("alice");
    w.login("alice");
    let i = w.idx("alice");
    let actions = w.users[i].sessions.published(100, true);
    assert!(actions.contains(&Action::Event(E2eEvent::OtherDevice)));
    // The device token the server confirmed is the one sent next as `previous`.
    let ups = uploads(&w, "alice");
    w.logout("alice");
    w.login("alice");
    let again = uploads(&w, "alice");
    assert_eq!(again.last().unwrap().device.previous, ups[0].device.next);
    assert_ne!(again.last().unwrap().device.next, ups[0].device.next);
}

#[test]
fn a_login_whose_answer_never_came_sends_the_same_token_again() {
    let mut w = World::new();
    w.add("alice");
    let i = w.idx("alice");
    let (now, ms) = (w.now, w.now_ms);
    let first = w.users[i].sessions.login(now, ms);
    let token = first
        .iter()
        .find_map(|a| match a {
            Action::Publish(u) => Some(u.device.clone()),
            _ => None,
        })
        .unwrap();
    // Saved, then the connection dropped before KeysPublished.
    let saved = w.users[i].sessions.state_bytes().to_vec();
    w.users[i].saved = saved;
    w.users[i].saved_pins = Pins::default();
    w.crash("alice");
    let (now, ms) = (w.now, w.now_ms);
    let second = w.users[i].sessions.login(now, ms);
    let again = second
        .iter()
        .find_map(|a| match a {
            Action::Publish(u) => Some(u.device.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(again, token);
}

#[test]
fn a_damaged_state_is_refused_whole() {
    let mut w = pair();
    w.login("alice");
    w.send("alice", "bob", "x").unwrap();
    let saved = w.user("alice").saved.clone();
    let identity = w.user("alice").identity.clone();
    let fresh = || {
        Sessions::new(
            "alice",
            identity.clone(),
            Pins::default(),
            E2eConfig::default(),
        )
    };
    assert!(fresh().restore(&saved).is_ok());
    for cut in [0, 1, saved.len() / 2, saved.len() - 1] {
        assert!(fresh().restore(&saved[..cut]).is_err(), "cut at {cut}");
    }
    let mut flipped = saved.clone();
    flipped[0] ^= 0xFF;
    assert!(fresh().restore(&flipped).is_err());
}
