//! The end-to-end state machine facing a hostile relay: arbitrary payloads "from bob", first
//! with no session, then inside an established session (started from bob's prekey bundle),
//! then as a saved state. Must never panic, and nothing that did not decrypt may ever come out
//! as a secure message.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use mm_common::e2e::{Action, E2eConfig, E2eEvent, Sessions};
use mm_common::identity::Identity;
use mm_common::pins::Pins;
use mm_common::prekeys::{BundleAnswer, PrekeyBundle};

fn identities() -> &'static (Identity, Identity) {
    static IDS: OnceLock<(Identity, Identity)> = OnceLock::new();
    IDS.get_or_init(|| (Identity::generate(), Identity::generate()))
}

fn no_secure_message(actions: &[Action]) {
    assert!(!actions.iter().any(|a| matches!(a, Action::Event(E2eEvent::Message { .. }))));
}

fuzz_target!(|data: &[u8]| {
    let (a, b) = identities();
    let now = Instant::now();
    let ms = 1_800_000_000_000;
    // No session at all.
    let mut alice = Sessions::new("alice", a.clone(), Pins::default(), E2eConfig::default());
    let _ = alice.login(now, ms);
    no_secure_message(&alice.receive("bob", 1, data, now));

    // An established session, then the garbage.
    let mut alice = Sessions::new("alice", a.clone(), Pins::default(), E2eConfig::default());
    let mut bob = Sessions::new("bob", b.clone(), Pins::default(), E2eConfig::default());
    let _ = alice.login(now, ms);
    let Some(upload) = bob.login(now, ms).into_iter().find_map(|a| match a {
        Action::Publish(u) => Some(u),
        _ => None,
    }) else {
        return;
    };
    let bundle = PrekeyBundle {
        identity: upload.identity,
        signed_prekey: upload.signed_prekey,
        one_time: upload.one_time.first().cloned(),
    };
    let _ = alice.send_text("bob", "hi", 1, now);
    let mut id = 1;
    for action in alice.bundle("bob", BundleAnswer::Keys(bundle), now) {
        if let Action::Send { payload, .. } = action {
            id += 1;
            let _ = bob.receive("alice", id, &payload, now);
        }
    }
    no_secure_message(&bob.receive("alice", 1_000, data, now));
    // The bytes as a saved state.
    let mut restored = Sessions::new("alice", a.clone(), Pins::default(), E2eConfig::default());
    let _ = restored.restore(data);
});
