//! An in-memory server double that speaks the real wire protocol (see `world` for the cores
//! around it).
//!
//! The double is a small, honest chat server: `Hello` is answered with `Welcome` and one
//! `Users { last: true }` page (then the mailbox as `Offline`), `Public` goes to everyone,
//! `Private` to an online nick or into its mailbox (`Queued`), `Relay` likewise (to an online
//! nick, into the mailbox of a registered user who is offline, or a non-fatal `NO_SUCH_NICK`
//! for a nick that never logged in), `Monitor` is answered with `Presence` now and at every
//! change, `Ping` with `Pong`, `Who` with `Users`, `Quit` closes. It keeps a key directory as
//! protocol 6's server does: `PublishKeys` stores a user's keys (answered `KeysPublished`),
//! `FetchBundle` hands out a bundle with each one-time prekey once (`NoKeys` for a registered
//! user who published none, `NoSuchUser` for a nick that never logged in). Ids increase from
//! 1; `ts` is the milliseconds of the test clock since the world began. Tests can make it
//! misbehave in the ways the end-to-end layer must survive ([`Server::hold_relays_from`],
//! [`Server::tamper_next_relay_from`], [`Server::refuse_next_relay_from`], editing
//! [`Server::directory`]), and read what it received ([`Server::log`], [`Server::raw_in`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use bytes::BytesMut;
use mm_common::frame;
use mm_common::prekeys::{
    BundleAnswer, KeyUpload, OneTimePrekey, PrekeyBundle, SignedPrekey, MAX_ONE_TIME_STORED,
};
use mm_common::protocol::{
    is_lobby, nick_key, room_key, ClientMsg, ErrorCode, LeaveReason, Member, MemberChange, Modes,
    Role, RoomSummary, ServerMsg,
};
use mm_common::rate::TokenBucket;

/// One frame the double received, when, and from whom.
#[derive(Debug, Clone)]
pub(super) struct Logged {
    /// The nick of the connection it came on.
    pub from: String,
    /// When it arrived.
    pub at: Instant,
    /// The message.
    pub msg: ClientMsg,
}

/// One client connection as the double sees it.
#[derive(Debug)]
struct Conn {
    /// Logged in (after `Hello`).
    nick: Option<String>,
    input: BytesMut,
    output: BytesMut,
    /// Folded nicks this connection monitors.
    monitors: BTreeSet<String>,
    /// The double closed it (after `Quit` or a fatal error): the client reads what is in
    /// `output`, then the end of the stream.
    closed: bool,
    /// The server's rate limit for this connection, as the real server applies it.
    bucket: TokenBucket,
}

/// A room of the double (not the lobby).
#[derive(Debug, Clone, Default)]
pub(super) struct Room {
    pub name: String,
    pub topic: String,
    pub topic_by: String,
    pub modes: Modes,
    /// Members by folded nick: their nick and role.
    pub members: BTreeMap<String, (String, Role)>,
    /// Lines: (id, ts, from, text, action).
    pub history: Vec<(u64, u64, String, String, bool)>,
    /// The newest id each member was sent, by folded nick (for `Entered::seen`).
    pub seen: HashMap<String, u64>,
}

/// A relay held back by [`Server::hold_relays_from`].
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub from: String,
    pub to: String,
    pub payload: Vec<u8>,
}

/// A user's keys in the double's key directory.
#[derive(Debug, Clone)]
pub(super) struct Published {
    pub identity: [u8; 32],
    pub signed_prekey: SignedPrekey,
    /// Handed out oldest first, each once.
    pub one_time: VecDeque<OneTimePrekey>,
}

/// A line kept for an offline user: a plain private line or a relay.
#[derive(Debug, Clone)]
enum Mail {
    Text(String),
    Relay(Vec<u8>),
}

/// The in-memory server double. Connections are named by the nick the test connects as.
#[derive(Debug)]
pub(super) struct Server {
    t0: Instant,
    conns: BTreeMap<String, Conn>,
    next_id: u64,
    /// Mail for offline users by folded nick: (id, ts, from, line), delivered at their login.
    mailboxes: HashMap<String, Vec<(u64, u64, String, Mail)>>,
    /// Folded nicks that logged in at some point: the accounts.
    pub registered: BTreeSet<String>,
    /// The key directory, by folded nick.
    pub directory: HashMap<String, Published>,
    /// `FetchBundle` goes unanswered (a server that lost the request).
    pub ignore_fetches: bool,
    /// `FetchBundle` is answered only at [`Server::answer_fetches`] (a slow directory): the
    /// requests waiting, (connection, nick).
    pub slow_fetches: Option<Vec<(String, String)>>,
    /// The rate limits announced in `Welcome`.
    pub rate_burst: u32,
    pub rate_per_sec: u32,
    /// Every frame received, in order.
    pub log: Vec<Logged>,
    /// Every byte received from any client.
    pub raw_in: Vec<u8>,
    /// Every byte sent to any client.
    pub raw_out: Vec<u8>,
    /// Paced frames that arrived faster than the announced rate allows (the real server
    /// would have refused them).
    pub rate_violations: usize,
    /// Relays from these (folded) nicks are answered `Sent` but not delivered: kept in
    /// [`Server::held`] until [`Server::release_held`] (or forever).
    pub hold_relays_from: BTreeSet<String>,
    /// Relays held back.
    pub held: Vec<Held>,
    /// The next relay from this nick is delivered with its last byte flipped.
    pub tamper_next_relay_from: Option<String>,
    /// The next relay from this nick is refused with this non-fatal error.
    pub refuse_next_relay_from: Option<(String, ErrorCode)>,
    /// Rooms other than the lobby, by folded name.
    pub rooms: BTreeMap<String, Room>,
    /// Away messages by folded nick.
    pub away: HashMap<String, String>,
}

impl Server {
    /// A double whose clock starts at `t0`, announcing `rate_burst` and `rate_per_sec`.
    pub(super) fn new(t0: Instant, rate_burst: u32, rate_per_sec: u32) -> Server {
        Server {
            t0,
            conns: BTreeMap::new(),
            next_id: 0,
            mailboxes: HashMap::new(),
            registered: BTreeSet::new(),
            directory: HashMap::new(),
            ignore_fetches: false,
            slow_fetches: None,
            rate_burst,
            rate_per_sec,
            log: Vec::new(),
            raw_in: Vec::new(),
            raw_out: Vec::new(),
            rate_violations: 0,
            hold_relays_from: BTreeSet::new(),
            held: Vec::new(),
            tamper_next_relay_from: None,
            refuse_next_relay_from: None,
            rooms: BTreeMap::new(),
            away: HashMap::new(),
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn ts(&self, now: Instant) -> u64 {
        u64::try_from(now.duration_since(self.t0).as_millis()).unwrap_or(u64::MAX)
    }

    /// A new TCP connection for the client that will log in as `name`.
    pub(super) fn open(&mut self, name: &str, now: Instant) {
        let conn = Conn {
            nick: None,
            input: BytesMut::new(),
            output: BytesMut::new(),
            monitors: BTreeSet::new(),
            closed: false,
            bucket: TokenBucket::new(self.rate_burst, f64::from(self.rate_per_sec), now),
        };
        self.conns.insert(name.to_owned(), conn);
    }

    /// The connection `name` is gone (dropped link or closed): the others see it leave.
    pub(super) fn drop_conn(&mut self, name: &str, reason: LeaveReason, now: Instant) {
        let Some(conn) = self.conns.remove(name) else {
            return;
        };
        if let Some(nick) = conn.nick {
            let ts = self.ts(now);
            self.broadcast_presence(&nick, false, Some(reason), ts);
        }
    }

    /// The client read the end of the connection `name` that the double closed: it is gone.
    pub(super) fn forget(&mut self, name: &str) {
        self.conns.remove(name);
    }

    /// The logged-in connection of `nick` (folded), if any.
    fn online(&self, nick: &str) -> Option<String> {
        let key = nick_key(nick);
        self.conns
            .iter()
            .find(|(_, c)| c.nick.as_deref().map(nick_key) == Some(key.clone()))
            .map(|(name, _)| name.clone())
    }

    /// Nicks online, in order.
    fn online_nicks(&self) -> Vec<String> {
        self.conns.values().filter_map(|c| c.nick.clone()).collect()
    }

    fn send(&mut self, name: &str, msg: &ServerMsg) {
        if let Some(conn) = self.conns.get_mut(name) {
            if conn.closed {
                return;
            }
            let before = conn.output.len();
            frame::encode_into(msg, &mut conn.output).expect("the double encodes");
            self.raw_out.extend_from_slice(&conn.output[before..]);
        }
    }

    /// `Joined`/`Left` to everyone else, `Presence` to those who monitor `nick`.
    fn broadcast_presence(
        &mut self,
        nick: &str,
        online: bool,
        reason: Option<LeaveReason>,
        ts: u64,
    ) {
        let key = nick_key(nick);
        let names: Vec<String> = self.conns.keys().cloned().collect();
        for name in names {
            let Some(conn) = self.conns.get(&name) else {
                continue;
            };
            if conn.nick.is_none() || conn.nick.as_deref().map(nick_key) == Some(key.clone()) {
                continue;
            }
            let monitors = conn.monitors.contains(&key);
            let notice = match reason {
                None => ServerMsg::Joined {
                    room: "#lobby".into(),
                    ts,
                    nick: nick.to_owned(),
                },
                Some(reason) => ServerMsg::Left {
                    room: "#lobby".into(),
                    ts,
                    nick: nick.to_owned(),
                    reason,
                },
            };
            self.send(&name, &notice);
            if monitors {
                self.send(
                    &name,
                    &ServerMsg::Presence {
                        nick: nick.to_owned(),
                        online,
                    },
                );
            }
        }
    }

    /// Bytes from the client `name`.
    pub(super) fn receive(&mut self, name: &str, bytes: &[u8], now: Instant) {
        self.raw_in.extend_from_slice(bytes);
        let Some(conn) = self.conns.get_mut(name) else {
            return;
        };
        conn.input.extend_from_slice(bytes);
        loop {
            let Some(conn) = self.conns.get_mut(name) else {
                return;
            };
            if conn.closed {
                return;
            }
            let payload = match frame::split_frame(&mut conn.input) {
                Ok(payload) => payload,
                Err(frame::FrameError::Incomplete { .. }) => return,
                Err(e) => panic!("{name} sent a bad frame: {e}"),
            };
            let msg = ClientMsg::decode(&payload).expect("the client sends valid messages");
            let paced = !matches!(
                msg,
                ClientMsg::Pong { .. } | ClientMsg::Quit | ClientMsg::Received { .. }
            );
            if paced && conn.nick.is_some() && !conn.bucket.try_take(now) {
                self.rate_violations += 1;
            }
            self.log.push(Logged {
                from: name.to_owned(),
                at: now,
                msg: msg.clone(),
            });
            self.handle(name, msg, now);
        }
    }

    fn handle(&mut self, name: &str, msg: ClientMsg, now: Instant) {
        let ts = self.ts(now);
        let Some(me) = self.conns.get(name).and_then(|c| c.nick.clone()) else {
            return self.hello(name, msg, now);
        };
        match msg {
            ClientMsg::Hello { .. } | ClientMsg::KeyHello { .. } | ClientMsg::KeyProof { .. } => {}
            ClientMsg::PublishKeys { keys } => self.publish_keys(name, &me, keys),
            ClientMsg::FetchBundle { nick } => self.fetch_bundle(name, nick),
            msg @ (ClientMsg::Join { .. }
            | ClientMsg::Part { .. }
            | ClientMsg::List { .. }
            | ClientMsg::Names { .. }
            | ClientMsg::Topic { .. }
            | ClientMsg::Invite { .. }
            | ClientMsg::Kick { .. }
            | ClientMsg::Member { .. }
            | ClientMsg::Mode { .. }
            | ClientMsg::Away { .. }) => self.room_command(name, &me, msg, ts),
            ClientMsg::Public { room, action, text } if !is_lobby(&room) => {
                self.room_line(name, &me, &room, text, action, ts)
            }
            ClientMsg::Public {
                room: _,
                action: _,
                text,
            } => {
                let id = self.id();
                let names: Vec<String> = self.conns.keys().cloned().collect();
                for other in names.iter().filter(|n| *n != name) {
                    let public = ServerMsg::Public {
                        room: "#lobby".into(),
                        action: false,
                        id,
                        ts,
                        from: me.clone(),
                        text: text.clone(),
                    };
                    self.send(other, &public);
                }
                self.send(name, &ServerMsg::Sent { id, ts });
            }
            ClientMsg::Private { to, text } => {
                let id = self.id();
                match self.online(&to) {
                    Some(peer) => {
                        let private = ServerMsg::Private {
                            id,
                            ts,
                            from: me,
                            text,
                        };
                        self.send(&peer, &private);
                        self.send(name, &ServerMsg::Sent { id, ts });
                        if let Some(message) = self.away.get(&nick_key(&to)).cloned() {
                            let nick = to.clone();
                            self.send(name, &ServerMsg::Away { nick, message });
                        }
                    }
                    None => {
                        self.mailboxes.entry(nick_key(&to)).or_default().push((
                            id,
                            ts,
                            me,
                            Mail::Text(text),
                        ));
                        self.send(name, &ServerMsg::Queued { id, ts });
                    }
                }
            }
            ClientMsg::Relay { to, payload } => self.relay(name, me, to, payload, now),
            ClientMsg::Who => {
                let nicks = self.online_nicks();
                self.send(name, &ServerMsg::Users { nicks, last: true });
            }
            ClientMsg::Ping { token } => self.send(name, &ServerMsg::Pong { token }),
            ClientMsg::Pong { .. } | ClientMsg::Received { .. } => {}
            ClientMsg::Quit => {
                if let Some(conn) = self.conns.get_mut(name) {
                    conn.closed = true;
                }
                self.broadcast_presence(&me, false, Some(LeaveReason::Quit), ts);
                if let Some(conn) = self.conns.get_mut(name) {
                    conn.nick = None;
                }
            }
            ClientMsg::Monitor { nicks } => {
                for nick in nicks {
                    let online = self.online(&nick).is_some();
                    if let Some(conn) = self.conns.get_mut(name) {
                        conn.monitors.insert(nick_key(&nick));
                    }
                    self.send(name, &ServerMsg::Presence { nick, online });
                }
            }
        }
    }

    /// The login: `Welcome`, the user list, then the mailbox.
    fn hello(&mut self, name: &str, msg: ClientMsg, now: Instant) {
        let ClientMsg::Hello { nick, .. } = msg else {
            panic!("{name} sent {msg:?} before Hello");
        };
        let ts = self.ts(now);
        if let Some(conn) = self.conns.get_mut(name) {
            conn.nick = Some(nick.clone());
        }
        self.registered.insert(nick_key(&nick));
        let online = self.online_nicks();
        let welcome = ServerMsg::Welcome {
            nick: nick.clone(),
            server: "double".into(),
            online: u32::try_from(online.len()).unwrap_or(u32::MAX),
            max_text_len: 4096,
            rate_burst: self.rate_burst,
            rate_per_sec: self.rate_per_sec,
        };
        self.send(name, &welcome);
        self.send(
            name,
            &ServerMsg::Users {
                nicks: online,
                last: true,
            },
        );
        let mine: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.members.contains_key(&nick_key(&nick)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in mine {
            self.enter(name, &nick, &key, false, false);
        }
        for (id, ts, from, mail) in self.mailboxes.remove(&nick_key(&nick)).unwrap_or_default() {
            let msg = match mail {
                Mail::Text(text) => ServerMsg::Offline { id, ts, from, text },
                Mail::Relay(payload) => ServerMsg::Relay {
                    id,
                    ts,
                    from,
                    payload,
                },
            };
            self.send(name, &msg);
        }
        self.broadcast_presence(&nick, true, None, ts);
    }

    fn relay(&mut self, name: &str, me: String, to: String, mut payload: Vec<u8>, now: Instant) {
        let ts = self.ts(now);
        if let Some((from, code)) = &self.refuse_next_relay_from {
            if nick_key(from) == nick_key(&me) {
                let code = *code;
                self.refuse_next_relay_from = None;
                let error = ServerMsg::Error {
                    code,
                    fatal: false,
                    detail: "busy".into(),
                };
                return self.send(name, &error);
            }
        }
        let online = self.online(&to);
        if online.is_none() && !self.registered.contains(&nick_key(&to)) {
            let error = ServerMsg::Error {
                code: ErrorCode::NO_SUCH_NICK,
                fatal: false,
                detail: format!("no user {to}"),
            };
            return self.send(name, &error);
        }
        if self
            .tamper_next_relay_from
            .as_deref()
            .is_some_and(|from| nick_key(from) == nick_key(&me))
        {
            self.tamper_next_relay_from = None;
            if let Some(last) = payload.last_mut() {
                *last ^= 0x01;
            }
        }
        let Some(peer) = online else {
            let id = self.id();
            self.mailboxes.entry(nick_key(&to)).or_default().push((
                id,
                ts,
                me,
                Mail::Relay(payload),
            ));
            return self.send(name, &ServerMsg::Queued { id, ts });
        };
        let id = self.id();
        self.send(name, &ServerMsg::Sent { id, ts });
        if self.hold_relays_from.contains(&nick_key(&me)) {
            self.held.push(Held {
                from: me,
                to,
                payload,
            });
            return;
        }
        let relay = ServerMsg::Relay {
            id,
            ts,
            from: me,
            payload,
        };
        self.send(&peer, &relay);
    }

    /// `PublishKeys`: stored as the real server stores them (the identity and signed prekey
    /// replaced, one-time prekeys added — dropped when the identity changed — keeping the
    /// newest [`MAX_ONE_TIME_STORED`]).
    fn publish_keys(&mut self, name: &str, me: &str, keys: KeyUpload) {
        if let Err(e) = keys.validate() {
            let error = ServerMsg::Error {
                code: ErrorCode::BAD_KEYS,
                fatal: false,
                detail: e.to_string(),
            };
            return self.send(name, &error);
        }
        let entry = self
            .directory
            .entry(nick_key(me))
            .or_insert_with(|| Published {
                identity: keys.identity,
                signed_prekey: keys.signed_prekey.clone(),
                one_time: VecDeque::new(),
            });
        if entry.identity != keys.identity || keys.replace_one_time {
            entry.one_time.clear();
        }
        entry.identity = keys.identity;
        entry.signed_prekey = keys.signed_prekey;
        entry.one_time.extend(keys.one_time);
        while entry.one_time.len() > MAX_ONE_TIME_STORED {
            entry.one_time.pop_front();
        }
        let one_time = u32::try_from(entry.one_time.len()).unwrap_or(u32::MAX);
        let published = ServerMsg::KeysPublished {
            one_time,
            other_device: false,
        };
        self.send(name, &published);
    }

    /// `FetchBundle`: the user's keys with one one-time prekey, handed out once.
    fn fetch_bundle(&mut self, name: &str, nick: String) {
        if self.ignore_fetches {
            return;
        }
        if let Some(waiting) = self.slow_fetches.as_mut() {
            waiting.push((name.to_owned(), nick));
            return;
        }
        let key = nick_key(&nick);
        let answer = match self.directory.get_mut(&key) {
            Some(keys) => BundleAnswer::Keys(PrekeyBundle {
                identity: keys.identity,
                signed_prekey: keys.signed_prekey.clone(),
                one_time: keys.one_time.pop_front(),
            }),
            None if self.registered.contains(&key) => BundleAnswer::NoKeys,
            None => BundleAnswer::NoSuchUser,
        };
        self.send(name, &ServerMsg::Bundle { nick, answer });
    }

    /// Answers the `FetchBundle`s a slow directory kept waiting; answers at once from now on.
    pub(super) fn answer_fetches(&mut self) {
        for (name, nick) in self.slow_fetches.take().unwrap_or_default() {
            self.fetch_bundle(&name, nick);
        }
    }

    /// How many `FetchBundle`s `from` sent for `nick` so far.
    pub(super) fn fetches(&self, from: &str, nick: &str) -> usize {
        self.log
            .iter()
            .filter(|l| {
                l.from == from
                    && matches!(&l.msg, ClientMsg::FetchBundle { nick: n } if nick_key(n) == nick_key(nick))
            })
            .count()
    }

    /// Delivers `payload` to `to` as a relay from `from` with a new id, as a server replaying
    /// an old message from its mailbox would.
    pub(super) fn inject_relay(&mut self, from: &str, to: &str, payload: Vec<u8>, now: Instant) {
        let ts = self.ts(now);
        if let Some(peer) = self.online(to) {
            let id = self.id();
            let relay = ServerMsg::Relay {
                id,
                ts,
                from: from.to_owned(),
                payload,
            };
            self.send(&peer, &relay);
        }
    }

    /// Delivers the relays held back (to recipients still online), in order.
    pub(super) fn release_held(&mut self, now: Instant) {
        let ts = self.ts(now);
        for held in std::mem::take(&mut self.held) {
            if let Some(peer) = self.online(&held.to) {
                let id = self.id();
                let relay = ServerMsg::Relay {
                    id,
                    ts,
                    from: held.from,
                    payload: held.payload,
                };
                self.send(&peer, &relay);
            }
        }
    }

    /// The connections of the online members of room `key`, with their folded nicks.
    fn room_conns(&self, key: &str) -> Vec<(String, String)> {
        let Some(room) = self.rooms.get(key) else {
            return Vec::new();
        };
        self.conns
            .iter()
            .filter_map(|(name, c)| {
                let k = nick_key(c.nick.as_deref()?);
                room.members.contains_key(&k).then(|| (name.clone(), k))
            })
            .collect()
    }

    /// Sends `msg` to every online member of room `key`.
    fn send_room(&mut self, key: &str, msg: &ServerMsg) {
        for (name, _) in self.room_conns(key) {
            self.send(&name, msg);
        }
    }

    /// `Entered` (then, for a join, one `Names` page), then the room's history.
    fn enter(&mut self, name: &str, nick: &str, key: &str, join: bool, created: bool) {
        let Some(room) = self.rooms.get(key).cloned() else {
            return;
        };
        let k = nick_key(nick);
        let role = room.members.get(&k).map_or(Role::Member, |m| m.1);
        let entered = ServerMsg::Entered {
            room: room.name.clone(),
            topic: room.topic.clone(),
            topic_by: room.topic_by.clone(),
            topic_ts: 0,
            modes: room.modes,
            members: u32::try_from(room.members.len()).unwrap_or(u32::MAX),
            role,
            seen: room.seen.get(&k).copied().unwrap_or(0),
            created,
        };
        self.send(name, &entered);
        if join {
            let members = Self::members(&room).into_iter().take(100).collect();
            let names = ServerMsg::Names {
                room: room.name.clone(),
                members,
                last: room.members.len() <= 100,
            };
            self.send(name, &names);
        }
        for (id, ts, from, text, action) in &room.history {
            let line = ServerMsg::History {
                id: *id,
                ts: *ts,
                room: room.name.clone(),
                from: from.clone(),
                text: text.clone(),
                action: *action,
            };
            self.send(name, &line);
        }
    }

    fn members(room: &Room) -> Vec<Member> {
        room.members
            .values()
            .map(|(nick, role)| Member {
                nick: nick.clone(),
                role: *role,
                online: true,
                away: false,
            })
            .collect()
    }

    fn room_error(&mut self, name: &str, room: &str, code: ErrorCode) {
        let error = ServerMsg::RoomError {
            room: room.to_owned(),
            code,
            detail: code.name().into(),
        };
        self.send(name, &error);
    }

    /// A line to a room: answered like a lobby line.
    fn room_line(&mut self, name: &str, me: &str, room: &str, text: String, action: bool, ts: u64) {
        let key = room_key(room);
        let member = self
            .rooms
            .get(&key)
            .is_some_and(|r| r.members.contains_key(&nick_key(me)));
        if !member {
            let error = ServerMsg::Error {
                code: ErrorCode::NOT_IN_ROOM,
                fatal: false,
                detail: format!("you are not in {room}"),
            };
            return self.send(name, &error);
        }
        let id = self.id();
        let conns = self.room_conns(&key);
        let Some(r) = self.rooms.get_mut(&key) else {
            return;
        };
        r.history
            .push((id, ts, me.to_owned(), text.clone(), action));
        let line = ServerMsg::Public {
            id,
            ts,
            room: r.name.clone(),
            from: me.to_owned(),
            text,
            action,
        };
        for (_, k) in &conns {
            r.seen.insert(k.clone(), id);
        }
        for (other, _) in conns.iter().filter(|(n, _)| n != name) {
            self.send(other, &line);
        }
        self.send(name, &ServerMsg::Sent { id, ts });
    }

    /// The room commands, as the real server answers them (simplified: no invitations kept).
    fn room_command(&mut self, name: &str, me: &str, msg: ClientMsg, ts: u64) {
        let mk = nick_key(me);
        let role_in = |s: &Server, key: &str| {
            s.rooms
                .get(key)
                .and_then(|r| r.members.get(&mk))
                .map(|m| m.1)
        };
        match msg {
            ClientMsg::Join { room } => {
                let key = room_key(&room);
                let created = !self.rooms.contains_key(&key);
                let r = self.rooms.entry(key.clone()).or_insert_with(|| Room {
                    name: room.clone(),
                    ..Room::default()
                });
                let role = if created { Role::Owner } else { Role::Member };
                let new = !r.members.contains_key(&mk);
                r.members.entry(mk.clone()).or_insert((me.to_owned(), role));
                if new {
                    let joined = ServerMsg::Joined {
                        ts,
                        room: r.name.clone(),
                        nick: me.to_owned(),
                    };
                    for (other, _) in self.room_conns(&key).into_iter().filter(|(n, _)| n != name) {
                        self.send(&other, &joined);
                    }
                }
                self.enter(name, me, &key, true, created);
            }
            ClientMsg::Part { room, reason } => {
                let key = room_key(&room);
                if is_lobby(&room) {
                    return self.room_error(name, &room, ErrorCode::LOBBY_FIXED);
                }
                if role_in(self, &key).is_none() {
                    return self.room_error(name, &room, ErrorCode::NOT_IN_ROOM);
                }
                let room_name = self.rooms.get(&key).map(|r| r.name.clone()).unwrap_or(room);
                let parted = ServerMsg::Parted {
                    ts,
                    room: room_name,
                    nick: me.to_owned(),
                    reason,
                };
                self.send_room(&key, &parted);
                if let Some(r) = self.rooms.get_mut(&key) {
                    r.members.remove(&mk);
                }
            }
            ClientMsg::List { .. } => {
                let rooms = self
                    .rooms
                    .values()
                    .map(|r| RoomSummary {
                        name: r.name.clone(),
                        members: u32::try_from(r.members.len()).unwrap_or(u32::MAX),
                        topic: r.topic.clone(),
                    })
                    .collect();
                self.send(
                    name,
                    &ServerMsg::Rooms {
                        rooms,
                        next: String::new(),
                    },
                );
            }
            ClientMsg::Names { room } => match self.rooms.get(&room_key(&room)) {
                Some(r) => {
                    let names = ServerMsg::Names {
                        room: r.name.clone(),
                        members: Self::members(r),
                        last: true,
                    };
                    self.send(name, &names);
                }
                None => self.room_error(name, &room, ErrorCode::NO_SUCH_ROOM),
            },
            ClientMsg::Topic { room, topic } => {
                let key = room_key(&room);
                let Some(role) = role_in(self, &key) else {
                    return self.room_error(name, &room, ErrorCode::NOT_IN_ROOM);
                };
                let Some(r) = self.rooms.get_mut(&key) else {
                    return;
                };
                match topic {
                    None => {
                        let answer = ServerMsg::Topic {
                            ts: 0,
                            room: r.name.clone(),
                            by: r.topic_by.clone(),
                            topic: r.topic.clone(),
                        };
                        self.send(name, &answer);
                    }
                    Some(_) if r.modes.topic_ops && !role.is_op() => {
                        self.room_error(name, &room, ErrorCode::NOT_OP)
                    }
                    Some(topic) => {
                        r.topic.clone_from(&topic);
                        r.topic_by = me.to_owned();
                        let changed = ServerMsg::Topic {
                            ts,
                            room: r.name.clone(),
                            by: me.to_owned(),
                            topic,
                        };
                        self.send_room(&key, &changed);
                    }
                }
            }
            ClientMsg::Kick { room, nick, reason } => {
                let key = room_key(&room);
                if !role_in(self, &key).is_some_and(Role::is_op) {
                    return self.room_error(name, &room, ErrorCode::NOT_OP);
                }
                let Some(r) = self.rooms.get(&key) else {
                    return;
                };
                if !r.members.contains_key(&nick_key(&nick)) {
                    return self.room_error(name, &room, ErrorCode::NOT_IN_ROOM);
                }
                let kicked = ServerMsg::Kicked {
                    ts,
                    room: r.name.clone(),
                    nick: nick.clone(),
                    by: me.to_owned(),
                    reason,
                };
                self.send_room(&key, &kicked);
                if let Some(r) = self.rooms.get_mut(&key) {
                    r.members.remove(&nick_key(&nick));
                }
            }
            ClientMsg::Mode { room, mode, on } => {
                let key = room_key(&room);
                if !role_in(self, &key).is_some_and(Role::is_op) {
                    return self.room_error(name, &room, ErrorCode::NOT_OP);
                }
                let Some(r) = self.rooms.get_mut(&key) else {
                    return;
                };
                r.modes.set(mode, on);
                let changed = ServerMsg::ModeChanged {
                    ts,
                    room: r.name.clone(),
                    by: me.to_owned(),
                    mode,
                    on,
                };
                self.send_room(&key, &changed);
            }
            ClientMsg::Member { room, nick, change } => {
                let key = room_key(&room);
                if !role_in(self, &key).is_some_and(Role::is_op) {
                    return self.room_error(name, &room, ErrorCode::NOT_OP);
                }
                let Some(r) = self.rooms.get_mut(&key) else {
                    return;
                };
                if let Some(m) = r.members.get_mut(&nick_key(&nick)) {
                    m.1 = match change {
                        MemberChange::Op => Role::Op,
                        MemberChange::Voice => Role::Voiced,
                        _ => Role::Member,
                    };
                }
                let changed = ServerMsg::MemberChanged {
                    ts,
                    room: r.name.clone(),
                    by: me.to_owned(),
                    nick,
                    change,
                };
                self.send_room(&key, &changed);
            }
            ClientMsg::Invite { room, nick } => {
                let invited = ServerMsg::Invited {
                    ts,
                    room: room.clone(),
                    by: me.to_owned(),
                    nick: nick.clone(),
                };
                self.send(name, &invited);
                if let Some(peer) = self.online(&nick) {
                    self.send(&peer, &invited);
                }
            }
            ClientMsg::Away { message } => {
                if message.is_empty() {
                    self.away.remove(&mk);
                } else {
                    self.away.insert(mk, message.clone());
                }
                let away = ServerMsg::Away {
                    nick: me.to_owned(),
                    message,
                };
                self.send(name, &away);
            }
            _ => {}
        }
    }

    /// What the double wrote to `name` since the last call, and whether the double closed
    /// the connection.
    pub(super) fn take_output(&mut self, name: &str) -> (BytesMut, bool) {
        match self.conns.get_mut(name) {
            Some(conn) => (conn.output.split(), conn.closed),
            None => (BytesMut::new(), false),
        }
    }
}
