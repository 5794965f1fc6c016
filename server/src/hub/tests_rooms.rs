//! Rooms in the hub: who may join, speak, moderate; who hears what; limits; and a property
//! test of random joins, parts, kicks and lines against a model of who should receive what.

use super::*;
use mm_common::protocol::{MemberChange, Role, RoomMode, LOBBY};
use proptest::prelude::*;

fn fp(nick: &str) -> String {
    format!("fp-{}", nick_key(nick))
}

fn hub_with(limits: Limits) -> Hub {
    Hub::in_memory(&limits)
}

fn login(hub: &Hub, nick: &str) -> Joined {
    let conn = hub.next_conn_id();
    hub.join(conn, nick, &fp(nick)).unwrap()
}

/// Logs `nick` in again as its registered owner (no registration).
fn relogin(hub: &Hub, nick: &str) -> Joined {
    let conn = hub.next_conn_id();
    let now = hub.clock().now_ms();
    let joined = hub
        .join_unannounced(conn, nick, &fp(nick), now, false)
        .unwrap();
    hub.announce(&joined.outbox, joined.announce);
    joined
}

fn all(m: &mut Joined) -> Vec<ServerMsg> {
    let mut out = Vec::new();
    while let Ok(Some(b)) = m.outbox.try_recv() {
        out.push(ServerMsg::decode(&b).unwrap());
    }
    out
}

fn say(hub: &Hub, m: &Joined, room: &str, text: &str) -> Result<u64, SendError> {
    hub.publish(m.outbox.conn_id, &m.outbox.nick, room, text.into(), false)
        .map(|(a, _)| a.id)
}

/// Joins `room`; a history load is completed at once (the memory store answers at once).
fn join(hub: &Hub, m: &Joined, room: &str) -> Result<(), RoomError> {
    match hub.join_room(m.outbox.conn_id, &m.outbox.nick, room)? {
        Joining::Done => Ok(()),
        Joining::Loading(mut load) => {
            let lines = load.reply.try_recv().unwrap();
            hub.complete_join(m.outbox.conn_id, &m.outbox.nick, load, lines, true)
        }
        Joining::Ordering(_) => panic!("a hub on its own orders nothing"),
    }
}

/// The texts of the room lines in `msgs` for `room`.
fn lines_in(msgs: &[ServerMsg], room: &str) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m {
            ServerMsg::Public { room: r, text, .. } if r == room => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_join_creates_the_room_its_creator_owns_and_lines_reach_its_members_only() {
    let hub = hub_with(Limits::default());
    let mut alice = login(&hub, "alice");
    let mut bob = login(&hub, "bob");
    let mut carol = login(&hub, "carol");
    all(&mut alice);
    all(&mut bob);
    all(&mut carol);
    join(&hub, &alice, "#Dev").unwrap();
    let got = all(&mut alice);
    assert!(
        matches!(
            &got[0],
            ServerMsg::Entered { room, role: Role::Owner, created: true, members: 1, .. } if room == "#Dev"
        ),
        "{got:?}"
    );
    assert!(matches!(&got[1], ServerMsg::Names { members, last: true, .. } if members.len() == 1));
    // Case-insensitive: #dev is the same room, spelled as created.
    join(&hub, &bob, "#dev").unwrap();
    let got = all(&mut bob);
    assert!(
        matches!(
            &got[0],
            ServerMsg::Entered { room, role: Role::Member, created: false, members: 2, .. } if room == "#Dev"
        ),
        "{got:?}"
    );
    assert!(matches!(
        &all(&mut alice)[..],
        [ServerMsg::Joined { room, nick, .. }] if room == "#Dev" && nick == "bob"
    ));
    say(&hub, &alice, "#dev", "in dev").unwrap();
    say(&hub, &carol, LOBBY, "in lobby").unwrap();
    let bob_got = all(&mut bob);
    assert_eq!(lines_in(&bob_got, "#Dev"), ["in dev"]);
    assert_eq!(lines_in(&bob_got, LOBBY), ["in lobby"]);
    let carol_got = all(&mut carol);
    assert!(lines_in(&carol_got, "#Dev").is_empty(), "{carol_got:?}");
    all(&mut alice);
    // Not a member: refused, nobody receives it.
    assert_eq!(
        say(&hub, &carol, "#dev", "x"),
        Err(SendError::NotInRoom("#Dev".into()))
    );
    assert_eq!(
        say(&hub, &carol, "#nope", "x"),
        Err(SendError::NoSuchRoom("#nope".into()))
    );
    assert!(all(&mut alice).is_empty() && all(&mut bob).is_empty());
}

#[test]
fn a_joiner_gets_the_rooms_history_before_anything_live_and_its_rooms_again_at_login() {
    let hub = hub_with(Limits::default());
    let alice = login(&hub, "alice");
    join(&hub, &alice, "#dev").unwrap();
    for i in 0..3 {
        say(&hub, &alice, "#dev", &format!("old {i}")).unwrap();
    }
    let mut bob = login(&hub, "bob");
    all(&mut bob);
    join(&hub, &bob, "#dev").unwrap();
    say(&hub, &alice, "#dev", "live").unwrap();
    let got = all(&mut bob);
    let kinds: Vec<String> = got
        .iter()
        .map(|m| {
            format!("{m:?}")
                .split([' ', '{'])
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        ["Entered", "Names", "History", "History", "History", "Public"]
    );
    // Bob logs out and in again: his room comes back with its history, and a seen mark at
    // the newest line he had been sent.
    let last = say(&hub, &alice, "#dev", "before bob left").unwrap();
    hub.leave(bob.outbox.conn_id, "bob", LeaveReason::Quit);
    say(&hub, &alice, "#dev", "while bob was away").unwrap();
    let again = relogin(&hub, "bob");
    let entered = again
        .rooms
        .iter()
        .map(|b| ServerMsg::decode(b).unwrap())
        .collect::<Vec<_>>();
    assert!(
        matches!(&entered[0], ServerMsg::Entered { room, seen, .. } if room == "#dev" && *seen == last),
        "{entered:?}"
    );
    assert_eq!(entered.len(), 1 + 6, "Entered, then the 6 lines of history");
}

#[test]
fn invite_only_rooms_admit_the_invited_and_bans_keep_an_account_out() {
    let hub = hub_with(Limits::default());
    let mut alice = login(&hub, "alice");
    let mut bob = login(&hub, "bob");
    join(&hub, &alice, "#ops").unwrap();
    hub.set_mode(
        alice.outbox.conn_id,
        "alice",
        "#ops",
        RoomMode::InviteOnly,
        true,
    )
    .unwrap();
    assert_eq!(join(&hub, &bob, "#ops"), Err(RoomError::InviteOnly));
    // Invite-only rooms are listed to their members only.
    assert!(
        matches!(hub.list_rooms("bob", ""), ServerMsg::Rooms { rooms, .. } if rooms.is_empty())
    );
    assert!(
        matches!(hub.list_rooms("alice", ""), ServerMsg::Rooms { rooms, .. } if rooms.len() == 1)
    );
    all(&mut bob);
    hub.invite(alice.outbox.conn_id, "alice", "#ops", "bob")
        .unwrap();
    assert!(all(&mut bob)
        .iter()
        .any(|m| matches!(m, ServerMsg::Invited { by, .. } if by == "alice")));
    join(&hub, &bob, "#ops").unwrap();
    // Bob cannot kick the owner; the owner bans bob, who is removed and cannot come back.
    assert_eq!(
        hub.kick(bob.outbox.conn_id, "bob", "#ops", "alice", ""),
        Err(RoomError::NotOp)
    );
    all(&mut bob);
    all(&mut alice);
    hub.member_change(
        alice.outbox.conn_id,
        "alice",
        "#ops",
        "BOB",
        MemberChange::Ban,
    )
    .unwrap();
    assert!(all(&mut bob)
        .iter()
        .any(|m| matches!(m, ServerMsg::Kicked { nick, .. } if nick == "bob")));
    assert_eq!(
        say(&hub, &bob, "#ops", "x"),
        Err(SendError::NotInRoom("#ops".into()))
    );
    // Inviting a banned user is refused; the ban keeps bob out.
    assert_eq!(
        hub.invite(alice.outbox.conn_id, "alice", "#ops", "bob"),
        Err(RoomError::TargetBanned("bob".into()))
    );
    assert_eq!(join(&hub, &bob, "#ops"), Err(RoomError::Banned));
    hub.member_change(
        alice.outbox.conn_id,
        "alice",
        "#ops",
        "bob",
        MemberChange::Unban,
    )
    .unwrap();
    // The ban took his invitation with it: unbanned, he needs a new one.
    assert_eq!(join(&hub, &bob, "#ops"), Err(RoomError::InviteOnly));
    hub.invite(alice.outbox.conn_id, "alice", "#ops", "bob")
        .unwrap();
    join(&hub, &bob, "#ops").unwrap();
    // An op may not touch the owner's standing either.
    hub.member_change(
        alice.outbox.conn_id,
        "alice",
        "#ops",
        "bob",
        MemberChange::Op,
    )
    .unwrap();
    assert_eq!(
        hub.member_change(
            bob.outbox.conn_id,
            "bob",
            "#ops",
            "alice",
            MemberChange::Deop
        ),
        Err(RoomError::Owner)
    );
}

#[test]
fn a_moderated_room_lets_only_operators_and_voiced_members_speak_and_ops_set_the_topic() {
    let hub = hub_with(Limits::default());
    let alice = login(&hub, "alice");
    let mut bob = login(&hub, "bob");
    join(&hub, &alice, "#m").unwrap();
    join(&hub, &bob, "#m").unwrap();
    hub.set_mode(
        alice.outbox.conn_id,
        "alice",
        "#m",
        RoomMode::Moderated,
        true,
    )
    .unwrap();
    hub.set_mode(
        alice.outbox.conn_id,
        "alice",
        "#m",
        RoomMode::TopicOps,
        true,
    )
    .unwrap();
    assert_eq!(
        say(&hub, &bob, "#m", "hello?"),
        Err(SendError::Moderated("#m".into()))
    );
    assert_eq!(
        hub.topic(bob.outbox.conn_id, "bob", "#m", Some("mine".into())),
        Err(RoomError::NotOp)
    );
    hub.member_change(
        alice.outbox.conn_id,
        "alice",
        "#m",
        "bob",
        MemberChange::Voice,
    )
    .unwrap();
    say(&hub, &bob, "#m", "now I speak").unwrap();
    all(&mut bob);
    hub.topic(
        alice.outbox.conn_id,
        "alice",
        "#m",
        Some("quiet please".into()),
    )
    .unwrap();
    assert!(all(&mut bob).iter().any(
        |m| matches!(m, ServerMsg::Topic { topic, by, .. } if topic == "quiet please" && by == "alice")
    ));
    // Too long, or with a control character: refused.
    let long = "x".repeat(Limits::default().max_topic_len + 1);
    assert!(matches!(
        hub.topic(alice.outbox.conn_id, "alice", "#m", Some(long)),
        Err(RoomError::BadText(_))
    ));
    assert!(matches!(
        hub.topic(
            alice.outbox.conn_id,
            "alice",
            "#m",
            Some("a\u{1b}[2J".into())
        ),
        Err(RoomError::BadText(_))
    ));
}

#[test]
fn limits_are_refused_with_clear_errors() {
    let hub = hub_with(Limits {
        max_rooms_per_user: 2,
        max_room_members: 2,
        room_creations_per_user: 3,
        max_rooms: 4,
        ..Limits::default()
    });
    let alice = login(&hub, "alice");
    let bob = login(&hub, "bob");
    let carol = login(&hub, "carol");
    join(&hub, &alice, "#a").unwrap();
    join(&hub, &alice, "#b").unwrap();
    assert_eq!(join(&hub, &alice, "#c"), Err(RoomError::TooManyRooms(2)));
    join(&hub, &bob, "#a").unwrap();
    assert_eq!(join(&hub, &carol, "#a"), Err(RoomError::RoomFull(2)));
    // A look-alike of an existing name is refused; the lobby cannot be left.
    assert!(matches!(join(&hub, &carol, "#b"), Ok(())));
    assert!(matches!(join(&hub, &carol, "#I"), Ok(())));
    assert!(matches!(
        join(&hub, &bob, "#l"),
        Err(RoomError::LooksLike(..))
    ));
    assert!(matches!(
        join(&hub, &bob, "#L0BBY"),
        Err(RoomError::LooksLike(_, lobby)) if lobby == LOBBY
    ));
    assert_eq!(
        hub.part_room(bob.outbox.conn_id, "bob", "#lobby", ""),
        Err(RoomError::LobbyFixed)
    );
    // Creation rate: carol created #I; two more allowed, then refused.
    hub.part_room(carol.outbox.conn_id, "carol", "#b", "")
        .unwrap();
    hub.part_room(carol.outbox.conn_id, "carol", "#I", "")
        .unwrap();
    join(&hub, &carol, "#c1").unwrap();
    assert_eq!(join(&hub, &carol, "#c2"), Err(RoomError::RoomsFull(4)));
}

#[test]
fn the_room_creation_allowance_refills_over_its_period() {
    let hub = hub_with(Limits {
        room_creations_per_user: 1,
        ..Limits::default()
    });
    let alice = login(&hub, "alice");
    join(&hub, &alice, "#one").unwrap();
    assert!(matches!(
        join(&hub, &alice, "#two"),
        Err(RoomError::CreationLimit(wait)) if wait.as_secs() > 3500
    ));
    let e = join(&hub, &alice, "#two").unwrap_err().to_string();
    assert!(
        e.contains("try again in 1 hour") || e.contains("minutes"),
        "{e}"
    );
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Step {
    Join(usize, usize),
    Part(usize, usize),
    Kick(usize, usize, usize),
    Say(usize, usize),
    Relogin(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..4usize, 0..3usize).prop_map(|(u, r)| Step::Join(u, r)),
        (0..4usize, 0..3usize).prop_map(|(u, r)| Step::Part(u, r)),
        (0..4usize, 0..4usize, 0..3usize).prop_map(|(u, v, r)| Step::Kick(u, v, r)),
        (0..4usize, 0..3usize).prop_map(|(u, r)| Step::Say(u, r)),
        (0..4usize, 0..3usize).prop_map(|(u, r)| Step::Say(u, r)),
        (0..4usize).prop_map(Step::Relogin),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Lines in one room never reach members of another, and every member online receives
    /// every line of its rooms, in order: the hub against a model (who is in which room,
    /// who owns it).
    #[test]
    fn lines_reach_exactly_the_members_of_their_room(steps in proptest::collection::vec(step(), 1..60)) {
        const USERS: [&str; 4] = ["ann", "ben", "cat", "dan"];
        const ROOMS: [&str; 3] = ["#r0", "#r1", "#r2"];
        let hub = hub_with(Limits::default());
        let mut conns: Vec<Joined> = USERS.iter().map(|u| login(&hub, u)).collect();
        // Model: members and owner of each room (rooms exist once created, even when empty).
        let mut members: Vec<std::collections::BTreeSet<usize>> = vec![Default::default(); 3];
        let mut owner: Vec<Option<usize>> = vec![None; 3];
        let mut expected: Vec<Vec<String>> = vec![Vec::new(); 4];
        let mut received: Vec<Vec<String>> = vec![Vec::new(); 4];
        let mut n = 0;
        for step in steps {
            match step {
                Step::Join(u, r) => {
                    let ok = join(&hub, &conns[u], ROOMS[r]).is_ok();
                    prop_assert!(ok);
                    if owner[r].is_none() || (owner[r] == Some(usize::MAX) && members[r].is_empty()) {
                        owner[r] = Some(u);
                    }
                    members[r].insert(u);
                }
                Step::Part(u, r) => {
                    let got = hub.part_room(conns[u].outbox.conn_id, USERS[u], ROOMS[r], "");
                    if owner[r].is_none() {
                        prop_assert_eq!(got, Err(RoomError::NoSuchRoom));
                    } else if members[r].remove(&u) {
                        prop_assert_eq!(got, Ok(()));
                        if owner[r] == Some(u) {
                            // Ownership passes to the first member by name; an empty room's
                            // next joiner owns it.
                            owner[r] = Some(members[r].first().copied().unwrap_or(usize::MAX));
                        }
                    } else {
                        prop_assert_eq!(got, Err(RoomError::NotInRoom));
                    }
                }
                Step::Kick(u, v, r) => {
                    let got = hub.kick(conns[u].outbox.conn_id, USERS[u], ROOMS[r], USERS[v], "");
                    let allowed = owner[r] == Some(u) && members[r].contains(&u)
                        && members[r].contains(&v) && u != v;
                    if allowed {
                        prop_assert_eq!(got, Ok(()));
                        members[r].remove(&v);
                    } else {
                        prop_assert!(got.is_err());
                    }
                }
                Step::Say(u, r) => {
                    n += 1;
                    let text = format!("{n}");
                    let got = say(&hub, &conns[u], ROOMS[r], &text);
                    if members[r].contains(&u) {
                        prop_assert!(got.is_ok());
                        for &m in &members[r] {
                            if m != u { expected[m].push(format!("{}:{text}", ROOMS[r])); }
                        }
                    } else {
                        prop_assert!(got.is_err());
                    }
                }
                Step::Relogin(u) => {
                    for msg in all(&mut conns[u]) {
                        if let ServerMsg::Public { room, text, .. } = msg {
                            received[u].push(format!("{room}:{text}"));
                        }
                    }
                    hub.leave(conns[u].outbox.conn_id, USERS[u], LeaveReason::Quit);
                    conns[u] = relogin(&hub, USERS[u]);
                }
            }
        }
        for (u, conn) in conns.iter_mut().enumerate() {
            for msg in all(conn) {
                if let ServerMsg::Public { room, text, .. } = msg {
                    received[u].push(format!("{room}:{text}"));
                }
            }
            prop_assert_eq!(&received[u], &expected[u], "user {}", USERS[u]);
        }
    }
}

#[test]
fn empty_rooms_expire_after_their_days_and_an_operator_can_name_a_new_owner() {
    let clock = Arc::new(crate::clock::ManualClock::new(1_700_000_000_000));
    let limits = Limits::default();
    let store = Arc::new(MemoryStore::new(Options::from_limits(&limits)));
    let hub = Hub::builder(&limits, store, Loaded::default())
        .clock(clock.clone())
        .build();
    let alice = login(&hub, "alice");
    let mut bob = login(&hub, "bob");
    join(&hub, &alice, "#kept").unwrap();
    join(&hub, &bob, "#kept").unwrap();
    join(&hub, &alice, "#empty").unwrap();
    hub.part_room(alice.outbox.conn_id, "alice", "#empty", "")
        .unwrap();
    clock.advance(std::time::Duration::from_millis(31 * DAY_MS));
    assert_eq!(hub.expire_rooms(30, 100), ["#empty"]);
    assert_eq!(
        join(&hub, &bob, "#kept"),
        Ok(()),
        "a room with members stays"
    );
    all(&mut bob);
    assert!(hub.set_owner("#KEPT", "bob"));
    assert!(!hub.set_owner("#kept", "nobody"));
    let got = all(&mut bob);
    assert!(got.iter().any(|m| matches!(m, ServerMsg::MemberChanged { nick, change: MemberChange::Owner, .. } if nick == "bob")), "{got:?}");
    // Bob owns it now: alice (an operator now) cannot kick him.
    assert_eq!(
        hub.kick(alice.outbox.conn_id, "alice", "#kept", "bob", ""),
        Err(RoomError::Owner)
    );
    // An expired account leaves its rooms; its room passes to the next member.
    hub.accounts_gone(&["bob".to_owned()]);
    assert!(matches!(
        hub.kick(alice.outbox.conn_id, "alice", "#kept", "bob", ""),
        Err(RoomError::NotMember(_))
    ));
    assert!(hub.delete_room("#kept", "closed by the operator"));
    assert_eq!(
        join(&hub, &alice, "#kept"),
        Ok(()),
        "a deleted room's name is free again"
    );
}

#[test]
fn a_join_into_a_large_room_sends_one_page_of_members_and_no_notices() {
    let hub = hub_with(Limits {
        presence_max_online: 50,
        ..Limits::default()
    });
    let mut first = login(&hub, "u0");
    join(&hub, &first, "#big").unwrap();
    for i in 1..150 {
        let u = login(&hub, &format!("u{i}"));
        join(&hub, &u, "#big").unwrap();
    }
    all(&mut first);
    let mut late = login(&hub, "late");
    all(&mut late);
    join(&hub, &late, "#big").unwrap();
    let got = all(&mut late);
    assert!(
        matches!(&got[1], ServerMsg::Names { members, last: false, .. } if members.len() == mm_common::protocol::NAMES_ON_JOIN),
        "{:?}",
        &got[..2]
    );
    // 151 members: above presence_max_online, nobody hears of the join.
    assert!(all(&mut first).is_empty());
    // Names pages through all of them.
    let pages = hub.names("late", "#big").unwrap();
    let total: usize = pages
        .iter()
        .map(|p| match p {
            ServerMsg::Names { members, .. } => members.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(total, 151);
}

#[test]
fn a_new_account_under_a_released_nick_inherits_none_of_the_old_accounts_rooms() {
    let hub = hub_with(Limits::default());
    let alice = login(&hub, "alice");
    let bob = login(&hub, "bob");
    join(&hub, &bob, "#bobs").unwrap();
    join(&hub, &alice, "#bobs").unwrap();
    hub.leave(bob.outbox.conn_id, "bob", LeaveReason::Quit);
    // The operator released "bob"; a stranger registers it (a registering login).
    let conn = hub.next_conn_id();
    let now = hub.clock().now_ms();
    let stranger = hub
        .join_unannounced(conn, "bob", "fp-stranger", now, true)
        .unwrap();
    assert!(
        stranger.rooms.is_empty(),
        "no Entered for the old account's rooms"
    );
    hub.announce(&stranger.outbox, stranger.announce);
    assert_eq!(
        say(&hub, &stranger, "#bobs", "mine now?"),
        Err(SendError::NotInRoom("#bobs".into()))
    );
    // The room passed to alice, its remaining member.
    assert_eq!(
        hub.kick(alice.outbox.conn_id, "alice", "#bobs", "bob", ""),
        Err(RoomError::NotMember("bob".into()))
    );
    let pages = hub.names("alice", "#bobs").unwrap();
    assert!(
        matches!(&pages[0], ServerMsg::Names { members, .. } if members.len() == 1 && members[0].role == Role::Owner),
        "{pages:?}"
    );
}

/// Completes `joining` as a session would: waits for the store's answer, then hands it over.
fn complete(hub: &Hub, m: &Joined, joining: Joining) {
    match joining {
        Joining::Done | Joining::Ordering(_) => panic!("expected a history load"),
        Joining::Loading(mut load) => {
            let lines = load.reply.try_recv().unwrap();
            hub.complete_join(m.outbox.conn_id, &m.outbox.nick, load, lines, true)
                .unwrap();
        }
    }
}

#[test]
fn a_rooms_history_leaves_memory_when_nobody_is_in_it_and_comes_back_from_the_store_in_order() {
    let hub = hub_with(Limits {
        history_cache_lines: 0,
        ..Limits::default()
    });
    let alice = login(&hub, "alice");
    let mut bob = login(&hub, "bob");
    join(&hub, &alice, "#a").unwrap();
    for text in ["one", "two", "three"] {
        say(&hub, &alice, "#a", text).unwrap();
    }
    assert_eq!(
        hub.lock().rooms.cached_lines(),
        3,
        "kept while alice is in it"
    );
    hub.leave(alice.outbox.conn_id, "alice", LeaveReason::Quit);
    assert_eq!(
        hub.lock().rooms.cached_lines(),
        0,
        "nobody online in it: evicted"
    );
    // Bob's join must ask the store; alice comes back meanwhile (her login asks too) and
    // speaks before either answer is handed over.
    all(&mut bob);
    let bobs = hub.join_room(bob.outbox.conn_id, "bob", "#a").unwrap();
    let mut alice = relogin(&hub, "alice");
    assert!(alice.rooms.is_empty() && alice.loading.len() == 1);
    let alices = alice.loading.pop().unwrap();
    // Not yet subscribed: her line reaches nobody live, and waits for the history.
    say(&hub, &alice, "#a", "during").unwrap();
    complete(&hub, &bob, bobs);
    let got = all(&mut bob);
    let history: Vec<&str> = got
        .iter()
        .filter_map(|m| match m {
            ServerMsg::History { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(history, ["one", "two", "three", "during"], "{got:?}");
    let entered = got
        .iter()
        .position(|m| matches!(m, ServerMsg::Entered { .. }));
    let first = got
        .iter()
        .position(|m| matches!(m, ServerMsg::History { .. }));
    assert!(entered.is_some() && entered < first, "{got:?}");
    complete(&hub, &alice, Joining::Loading(alices));
    let got = all(&mut alice);
    assert!(got
        .iter()
        .any(|m| matches!(m, ServerMsg::History { text, .. } if text == "during")));
    // Both subscribed now: live lines flow.
    say(&hub, &alice, "#a", "live").unwrap();
    assert_eq!(lines_in(&all(&mut bob), "#a"), ["live"]);
}

#[test]
fn invitations_and_bans_belong_to_the_account_and_pester_nobody() {
    let hub = hub_with(Limits::default());
    let alice = login(&hub, "alice");
    let mut carol = login(&hub, "carol");
    let dave = login(&hub, "dave");
    join(&hub, &alice, "#open").unwrap();
    join(&hub, &dave, "#open").unwrap();
    join(&hub, &alice, "#closed").unwrap();
    hub.set_mode(
        alice.outbox.conn_id,
        "alice",
        "#closed",
        RoomMode::InviteOnly,
        true,
    )
    .unwrap();
    // In an open room an invitation is a notice, not kept: a plain member plants none.
    hub.invite(dave.outbox.conn_id, "dave", "#open", "ghost")
        .unwrap();
    assert!(hub.lock().rooms.marks_of("ghost").is_empty());
    // Repeated invitations reach the invitee once.
    all(&mut carol);
    for _ in 0..5 {
        hub.invite(alice.outbox.conn_id, "alice", "#closed", "carol")
            .unwrap();
    }
    let invited = all(&mut carol)
        .iter()
        .filter(|m| matches!(m, ServerMsg::Invited { .. }))
        .count();
    assert_eq!(invited, 1);
    // Unbanning someone not banned changes nothing and says so.
    assert_eq!(
        hub.member_change(
            alice.outbox.conn_id,
            "alice",
            "#open",
            "zed",
            MemberChange::Unban
        ),
        Err(RoomError::NotBanned("zed".into()))
    );
    // An invitation to ghost, a ban of mallory: the accounts that register those nicks later
    // are other people, and inherit neither.
    hub.invite(alice.outbox.conn_id, "alice", "#closed", "ghost")
        .unwrap();
    hub.member_change(
        alice.outbox.conn_id,
        "alice",
        "#open",
        "mallory",
        MemberChange::Ban,
    )
    .unwrap();
    let ghost = login(&hub, "ghost"); // a registering login
    assert_eq!(join(&hub, &ghost, "#closed"), Err(RoomError::InviteOnly));
    let mallory = login(&hub, "mallory");
    assert_eq!(join(&hub, &mallory, "#open"), Ok(()));
}

#[test]
fn a_failed_history_load_then_a_good_one_shows_each_line_once() {
    let hub = hub_with(Limits {
        history_cache_lines: 0,
        ..Limits::default()
    });
    let alice = login(&hub, "alice");
    let mut bob = login(&hub, "bob");
    join(&hub, &alice, "#a").unwrap();
    say(&hub, &alice, "#a", "one").unwrap();
    hub.leave(alice.outbox.conn_id, "alice", LeaveReason::Quit);
    all(&mut bob);
    // Bob's join asks the store; the answer is lost (a timeout, say).
    let Joining::Loading(load) = hub.join_room(bob.outbox.conn_id, "bob", "#a").unwrap() else {
        panic!("expected a load");
    };
    let alice = relogin(&hub, "alice");
    assert_eq!(alice.loading.len(), 1);
    say(&hub, &alice, "#a", "two").unwrap(); // waits with the load
    assert_eq!(
        hub.complete_join(
            bob.outbox.conn_id,
            "bob",
            load,
            Err(crate::store::StoreError::Busy),
            true
        ),
        Err(RoomError::Busy)
    );
    // Bob joins again: the store's answer now holds "two" as well as the waiting copy.
    join(&hub, &bob, "#a").unwrap();
    let history: Vec<String> = all(&mut bob)
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::History { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(history, ["one", "two"]);
}

#[test]
fn a_login_lists_who_is_online_only_while_presence_notices_keep_the_list_current() {
    let hub = hub_with(Limits {
        presence_max_online: 2,
        ..Limits::default()
    });
    let a = login(&hub, "a");
    assert_eq!(a.online, ["a"]);
    let b = login(&hub, "b");
    assert_eq!((b.online.len(), b.online_count), (2, 2));
    // A third user: beyond the notices, so no list (it would be stale at once): the count.
    let c = login(&hub, "c");
    assert!(c.online.is_empty());
    assert_eq!(c.online_count, 3);
    assert_eq!(hub.online().len(), 3, "Who still lists everyone");
}
