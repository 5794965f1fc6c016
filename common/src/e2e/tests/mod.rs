//! Tests of the end-to-end layer: a world of users ([`World`]) with a fake server that keeps a
//! key directory and mailboxes, as the real one does (each one-time prekey handed out once),
//! and that tests can turn hostile (replay, alter, drop, serve bad bundles).

mod commands;
mod directory;
mod held;
mod hostile;
mod kdf;
mod notice;
mod peer_table;
mod ratchet;
mod review;
mod schedules;
mod sessions;
mod vectors;
mod x3dh;
mod xeddsa;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::{Action, E2eConfig, E2eEvent, Outgoing, Refused, Sessions, Status};
use crate::identity::Identity;
use crate::pins::Pins;
use crate::prekeys::{BundleAnswer, KeyUpload, OneTimePrekey, PrekeyBundle, SignedPrekey};
use crate::protocol::nick_key;
use rand_core::{CryptoRng, RngCore};

/// TEST-ONLY, NOT CRYPTOGRAPHIC: SplitMix64 (Steele, Lea, Flood 2014), a deterministic
/// generator whose whole state is one `u64` seed. It claims `CryptoRng` only so that tests can
/// inject it where the end-to-end layer takes a secure generator; it must never leave tests.
struct TestRng(u64);

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for TestRng {}

/// One user: their sessions, what they were shown, and the state they last saved.
pub(super) struct User {
    pub(super) nick: String,
    pub(super) identity: Identity,
    pub(super) sessions: Sessions,
    pub(super) online: bool,
    /// Texts shown as secure, with their sender and relay id.
    pub(super) shown: Vec<(String, u64, String)>,
    /// Every event.
    pub(super) events: Vec<E2eEvent>,
    /// The state as of the last `Persist` (what a crash would leave on disk), with the pins.
    pub(super) saved: Vec<u8>,
    pub(super) saved_pins: Pins,
    /// Texts sent plain (after `/insecure`), by recipient.
    pub(super) plain: Vec<(String, String)>,
    /// Every action list, for checking their order.
    pub(super) action_lists: Vec<Vec<Action>>,
}

/// What the fake server holds for one account.
#[derive(Clone)]
pub(super) struct Published {
    pub(super) identity: [u8; 32],
    pub(super) signed: SignedPrekey,
    pub(super) one_time: VecDeque<OneTimePrekey>,
}

/// Alters a bundle the fake server hands out: (whose, the answer).
pub(super) type BundleHook = Box<dyn FnMut(&str, &mut BundleAnswer)>;

/// Alters a relay the fake server takes: (from, to, payload) → what it keeps (`None`: drops it).
pub(super) type RelayHook = Box<dyn FnMut(&str, &str, Vec<u8>) -> Option<Vec<u8>>>;

/// A mail: relay id, sender, payload.
pub(super) type Mail = (u64, String, Vec<u8>);

pub(super) struct World {
    pub(super) users: Vec<User>,
    pub(super) directory: HashMap<String, Published>,
    pub(super) mailboxes: HashMap<String, VecDeque<Mail>>,
    /// Every relay the server took: (id, from, to, payload).
    pub(super) relayed: Vec<(u64, String, String, Vec<u8>)>,
    pub(super) fetches: usize,
    next_id: u64,
    next_line: u64,
    pub(super) now: Instant,
    pub(super) now_ms: u64,
    pub(super) config: E2eConfig,
    /// Alters each bundle the server hands out (hostile-server tests).
    pub(super) bundle_hook: Option<BundleHook>,
    /// Alters (or drops: `None`) each relay the server takes.
    pub(super) relay_hook: Option<RelayHook>,
}

impl World {
    pub(super) fn new() -> World {
        World::with_config(E2eConfig::default())
    }

    pub(super) fn with_config(config: E2eConfig) -> World {
        World {
            users: Vec::new(),
            directory: HashMap::new(),
            mailboxes: HashMap::new(),
            relayed: Vec::new(),
            fetches: 0,
            next_id: 1,
            next_line: 1,
            now: Instant::now(),
            now_ms: 1_800_000_000_000,
            config,
            bundle_hook: None,
            relay_hook: None,
        }
    }

    /// A new user (not logged in yet).
    pub(super) fn add(&mut self, nick: &str) -> usize {
        let identity = Identity::generate();
        let sessions = Sessions::new(nick, identity.clone(), Pins::default(), self.config.clone());
        self.users.push(User {
            nick: nick.to_owned(),
            identity,
            sessions,
            online: false,
            shown: Vec::new(),
            events: Vec::new(),
            saved: Vec::new(),
            saved_pins: Pins::default(),
            plain: Vec::new(),
            action_lists: Vec::new(),
        });
        self.users.len() - 1
    }

    pub(super) fn idx(&self, nick: &str) -> usize {
        self.users
            .iter()
            .position(|u| nick_key(&u.nick) == nick_key(nick))
            .unwrap_or_else(|| panic!("no user {nick}"))
    }

    pub(super) fn user(&self, nick: &str) -> &User {
        &self.users[self.idx(nick)]
    }

    pub(super) fn user_mut(&mut self, nick: &str) -> &mut User {
        let i = self.idx(nick);
        &mut self.users[i]
    }

    /// Logs `nick` in: publishes its keys, then takes its mail.
    pub(super) fn login(&mut self, nick: &str) {
        let i = self.idx(nick);
        self.users[i].online = true;
        let (now, ms) = (self.now, self.now_ms);
        let actions = self.users[i].sessions.login(now, ms);
        self.run(i, actions);
        self.deliver(nick);
    }

    pub(super) fn logout(&mut self, nick: &str) {
        let i = self.idx(nick);
        self.users[i].online = false;
        self.users[i].sessions.disconnected();
    }

    /// Restarts `nick`'s client from what it last saved (a crash: anything after the last
    /// `Persist` is lost). Offline afterwards.
    pub(super) fn crash(&mut self, nick: &str) {
        let i = self.idx(nick);
        let user = &mut self.users[i];
        let mut sessions = Sessions::new(
            &user.nick,
            user.identity.clone(),
            user.saved_pins.clone(),
            self.config.clone(),
        );
        if !user.saved.is_empty() {
            sessions.restore(&user.saved).expect("saved state restores");
        }
        user.sessions = sessions;
        user.online = false;
    }

    /// `from` sends `text` to `to`; returns what became of it (the actions are carried out).
    pub(super) fn send(&mut self, from: &str, to: &str, text: &str) -> Result<u64, Refused> {
        let i = self.idx(from);
        let line = self.next_line;
        self.next_line += 1;
        let now = self.now;
        match self.users[i].sessions.send_text(to, text, line, now)? {
            Outgoing::Plain => {
                self.users[i].plain.push((to.to_owned(), text.to_owned()));
            }
            Outgoing::QueuedPlain => {}
            Outgoing::Secure(actions) | Outgoing::Queued(actions) => self.run(i, actions),
        }
        Ok(line)
    }

    /// Runs a user command's actions.
    pub(super) fn command(
        &mut self,
        nick: &str,
        f: impl FnOnce(&mut Sessions, Instant) -> Result<Vec<Action>, Refused>,
    ) -> Result<(), Refused> {
        let i = self.idx(nick);
        let now = self.now;
        let actions = f(&mut self.users[i].sessions, now)?;
        self.run(i, actions);
        Ok(())
    }

    /// Carries out `actions` of user `i`, as the client and the server would.
    pub(super) fn run(&mut self, i: usize, actions: Vec<Action>) {
        self.users[i].action_lists.push(actions.clone());
        for action in actions {
            match action {
                Action::Persist => {
                    let user = &mut self.users[i];
                    user.saved = user.sessions.state_bytes().to_vec();
                    user.saved_pins = user.sessions.pins().clone();
                }
                Action::SendPlain { to, text, .. } => {
                    self.users[i].plain.push((to, text));
                }
                Action::Event(event) => {
                    if let E2eEvent::Message { peer, id, text } = &event {
                        self.users[i].shown.push((peer.clone(), *id, text.clone()));
                        // Shown and kept, as the clients confirm it; one released at
                        // `/accept-key` is then saved as no longer held (as mm does).
                        let user = &mut self.users[i];
                        if user.sessions.shown(peer, *id) {
                            user.saved = user.sessions.state_bytes().to_vec();
                            user.saved_pins = user.sessions.pins().clone();
                        }
                    }
                    self.users[i].events.push(event);
                }
                Action::Publish(upload) => {
                    let count = self.publish(i, upload);
                    let actions = self.users[i].sessions.published(count, false);
                    self.run(i, actions);
                }
                Action::FetchBundle(nick) => {
                    self.fetches += 1;
                    let mut answer = self.bundle_for(&nick);
                    if let Some(hook) = self.bundle_hook.as_mut() {
                        hook(&nick, &mut answer);
                    }
                    let now = self.now;
                    let actions = self.users[i].sessions.bundle(&nick, answer, now);
                    self.run(i, actions);
                }
                Action::Send { to, payload, .. } => {
                    let from = self.users[i].nick.clone();
                    let payload = match self.relay_hook.as_mut() {
                        Some(hook) => match hook(&from, &to, payload) {
                            Some(p) => p,
                            None => continue,
                        },
                        None => payload,
                    };
                    let id = self.next_id;
                    self.next_id += 1;
                    self.relayed
                        .push((id, from.clone(), to.clone(), payload.clone()));
                    self.mailboxes
                        .entry(nick_key(&to))
                        .or_default()
                        .push_back((id, from, payload));
                    if self
                        .users
                        .iter()
                        .any(|u| nick_key(&u.nick) == nick_key(&to) && u.online)
                    {
                        self.deliver(&to);
                    }
                }
            }
        }
    }

    /// Stores an upload; returns the one-time count.
    fn publish(&mut self, i: usize, upload: KeyUpload) -> u32 {
        let key = nick_key(&self.users[i].nick);
        let entry = self.directory.entry(key).or_insert_with(|| Published {
            identity: upload.identity,
            signed: upload.signed_prekey.clone(),
            one_time: VecDeque::new(),
        });
        if entry.identity != upload.identity {
            entry.one_time.clear();
        }
        entry.identity = upload.identity;
        entry.signed = upload.signed_prekey;
        entry.one_time.extend(upload.one_time);
        entry.one_time.len() as u32
    }

    /// What the directory hands out for `nick` (its one-time prekey used up).
    pub(super) fn bundle_for(&mut self, nick: &str) -> BundleAnswer {
        if !self
            .users
            .iter()
            .any(|u| nick_key(&u.nick) == nick_key(nick))
        {
            return BundleAnswer::NoSuchUser;
        }
        match self.directory.get_mut(&nick_key(nick)) {
            None => BundleAnswer::NoKeys,
            Some(p) => BundleAnswer::Keys(PrekeyBundle {
                identity: p.identity,
                signed_prekey: p.signed.clone(),
                one_time: p.one_time.pop_front(),
            }),
        }
    }

    /// Delivers `nick`'s mailbox (if online), acknowledging each mail after its actions ran.
    pub(super) fn deliver(&mut self, nick: &str) {
        let i = self.idx(nick);
        while self.users[i].online {
            let Some((id, from, payload)) = self
                .mailboxes
                .get_mut(&nick_key(nick))
                .and_then(VecDeque::pop_front)
            else {
                break;
            };
            let now = self.now;
            let actions = self.users[i].sessions.receive(&from, id, &payload, now);
            self.run(i, actions);
            self.users[i].sessions.acknowledged(id);
        }
    }

    /// The texts `nick` was shown from `from`, in order.
    pub(super) fn texts(&self, nick: &str, from: &str) -> Vec<String> {
        self.user(nick)
            .shown
            .iter()
            .filter(|(p, _, _)| nick_key(p) == nick_key(from))
            .map(|(_, _, t)| t.clone())
            .collect()
    }

    pub(super) fn status(&self, nick: &str, peer: &str) -> Status {
        self.user(nick).sessions.status(peer)
    }

    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.now_ms += by.as_millis() as u64;
    }

    /// Whether any event of `nick` matches.
    pub(super) fn saw(&self, nick: &str, f: impl Fn(&E2eEvent) -> bool) -> bool {
        self.user(nick).events.iter().any(f)
    }

    /// Every payload relayed from `from` to `to`.
    pub(super) fn payloads(&self, from: &str, to: &str) -> Vec<Vec<u8>> {
        self.relayed
            .iter()
            .filter(|(_, f, t, _)| nick_key(f) == nick_key(from) && nick_key(t) == nick_key(to))
            .map(|(_, _, _, p)| p.clone())
            .collect()
    }
}

/// Whether `needle` occurs in `haystack`.
pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Two users who both logged in once (keys published), then went offline.
pub(super) fn pair() -> World {
    let mut w = World::new();
    w.add("alice");
    w.add("bob");
    w.login("alice");
    w.login("bob");
    w.logout("alice");
    w.logout("bob");
    w
}
