//! Random schedules of three users going online and offline, sending to each other, and
//! crashing (restarting from their last saved state, with the server sending what they had
//! not acknowledged again): every message is shown, once per delivery that reached the screen,
//! in the order sent, and nothing is ever unreadable or taken for a replay.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Step {
    Login(usize),
    Logout(usize),
    Send(usize, usize),
    /// Restart from the last saved state; the unacknowledged mail comes again.
    Crash(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..3usize).prop_map(Step::Login),
        2 => (0..3usize).prop_map(Step::Logout),
        6 => (0..3usize, 0..3usize).prop_map(|(a, b)| Step::Send(a, b)),
        1 => (0..3usize).prop_map(Step::Crash),
    ]
}

const NICKS: [&str; 3] = ["ann", "ben", "cat"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_message_is_shown_in_order_and_nothing_is_lost(steps in prop::collection::vec(step(), 1..30)) {
        let mut w = World::new();
        for n in NICKS {
            w.add(n);
            w.login(n);
            w.logout(n);
        }
        let mut sent: Vec<(usize, usize, String)> = Vec::new();
        for (k, s) in steps.iter().enumerate() {
            match *s {
                Step::Login(u) if !w.users[u].online => w.login(NICKS[u]),
                Step::Logout(u) if w.users[u].online => w.logout(NICKS[u]),
                Step::Send(a, b) if a != b => {
                    let text = format!("{} to {} #{k}", NICKS[a], NICKS[b]);
                    w.send(NICKS[a], NICKS[b], &text).unwrap();
                    sent.push((a, b, text));
                }
                Step::Crash(u) => {
                    // A crash loses what was shown since the last save, never the mail: the
                    // server keeps it until acknowledged, and acknowledgements follow saves.
                    w.crash(NICKS[u]);
                }
                _ => {}
            }
        }
        for n in NICKS {
            if !w.user(n).online {
                w.login(n);
            }
        }
        for (a, b) in [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)] {
            let want: Vec<String> = sent
                .iter()
                .filter(|(x, y, _)| (*x, *y) == (a, b))
                .map(|(_, _, t)| t.clone())
                .collect();
            prop_assert_eq!(w.texts(NICKS[b], NICKS[a]), want);
        }
        for u in &w.users {
            let trouble = u.events.iter().any(|e| {
                matches!(e, E2eEvent::Unreadable { .. } | E2eEvent::Replayed { .. } | E2eEvent::Failed { .. })
            });
            prop_assert!(!trouble, "{}: {:?}", u.nick, u.events);
        }
    }

    #[test]
    fn any_bytes_as_a_saved_state_are_refused_or_restored_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut s = Sessions::new("ann", Identity::generate(), Pins::default(), E2eConfig::default());
        let _ = s.restore(&bytes);
    }

    #[test]
    fn any_bytes_as_a_relay_payload_are_reported_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut w = pair();
        w.login("bob");
        let i = w.idx("bob");
        let now = w.now;
        let actions = w.users[i].sessions.receive("alice", 1, &bytes, now);
        let only_reports = actions
            .iter()
            .all(|a| matches!(a, Action::Event(E2eEvent::Unreadable { .. } | E2eEvent::Replayed { .. })));
        prop_assert!(only_reports, "{:?}", actions);
    }
}
