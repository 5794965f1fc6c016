//! An in-memory server double that speaks the real wire protocol (see `world` for the cores
//! around it).
//!
//! The double is a small, honest chat server: `Hello` is answered with `Welcome` and one
//! `Users { last: true }` page (then the mailbox as `Offline`), `Public` goes to everyone,
//! `Private` to an online nick or into its mailbox (`Queued`), `Relay` to an online nick or a
//! non-fatal `NO_SUCH_NICK`, `Monitor` is answered with `Presence` now and at every change,
//! `Ping` with `Pong`, `Who` with `Users`, `Quit` closes. Ids increase from 1; `ts` is the
//! milliseconds of the test clock since the world began. Tests can make it misbehave in the
//! ways the secure-session table needs ([`Server::hold_relays_from`],
//! [`Server::tamper_next_relay_from`], [`Server::refuse_next_relay_from`]), and read what it
//! received ([`Server::log`], [`Server::raw_in`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use bytes::BytesMut;
use mm_common::frame;
use mm_common::protocol::{nick_key, ClientMsg, ErrorCode, LeaveReason, ServerMsg};
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

/// A relay held back by [`Server::hold_relays_from`].
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub from: String,
    pub to: String,
    pub payload: Vec<u8>,
}

/// The in-memory server double. Connections are named by the nick the test connects as.
#[derive(Debug)]
pub(super) struct Server {
    t0: Instant,
    conns: BTreeMap<String, Conn>,
    next_id: u64,
    /// Mail for offline users by folded nick: (id, ts, from, text).
    mailboxes: HashMap<String, Vec<(u64, u64, String, String)>>,
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
}

impl Server {
    /// A double whose clock starts at `t0`, announcing `rate_burst` and `rate_per_sec`.
    pub(super) fn new(t0: Instant, rate_burst: u32, rate_per_sec: u32) -> Server {
        Server {
            t0,
            conns: BTreeMap::new(),
            next_id: 0,
            mailboxes: HashMap::new(),
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
            ClientMsg::Hello { .. } => {}
            // Rooms: the double speaks the lobby only (WIP).
            ClientMsg::Join { .. }
            | ClientMsg::Part { .. }
            | ClientMsg::List { .. }
            | ClientMsg::Names { .. }
            | ClientMsg::Topic { .. }
            | ClientMsg::Invite { .. }
            | ClientMsg::Kick { .. }
            | ClientMsg::Member { .. }
            | ClientMsg::Mode { .. }
            | ClientMsg::Away { .. } => {}
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
                    }
                    None => {
                        self.mailboxes
                            .entry(nick_key(&to))
                            .or_default()
                            .push((id, ts, me, text));
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
        for (id, ts, from, text) in self.mailboxes.remove(&nick_key(&nick)).unwrap_or_default() {
            self.send(name, &ServerMsg::Offline { id, ts, from, text });
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
        let Some(peer) = self.online(&to) else {
            let error = ServerMsg::Error {
                code: ErrorCode::NO_SUCH_NICK,
                fatal: false,
                detail: format!("{to} is not online"),
            };
            return self.send(name, &error);
        };
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

    /// What the double wrote to `name` since the last call, and whether the double closed
    /// the connection.
    pub(super) fn take_output(&mut self, name: &str) -> (BytesMut, bool) {
        match self.conns.get_mut(name) {
            Some(conn) => (conn.output.split(), conn.closed),
            None => (BytesMut::new(), false),
        }
    }
}
