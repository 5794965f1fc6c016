//! Room commands: join, part, list, names, topic, invite, kick, standing (op, voice, ban),
//! modes and away — who may do what, what changes, and who hears of it.
//!
//! Every command runs under the hub's lock, in one order with the lines: the store gets the
//! change first (a change it refuses is refused to the user, with nothing changed), then the
//! room table changes, then the notice is encoded once and published to the room's topic.
//! Answers that must come before a room's live lines (`Entered`, the first page of members,
//! the history) go into the user's own outbox before it subscribes to the room, so no line
//! overtakes them. Join and part notices go out only while the room is small enough
//! (`presence_max_online`, as for the lobby): in a room of thousands they are noise, and each
//! costs one queued message per member — the O(n²) that slows IRC servers' join storms.

use std::time::Duration;

use bytes::Bytes;
use mm_common::frame;
use mm_common::protocol::{
    is_lobby, nick_key, validate_text, MemberChange, Modes, Role, RoomMode, ServerMsg, TextError,
    LOBBY, NAMES_ON_JOIN, NAMES_PER_FRAME, ROOMS_PER_FRAME,
};

use super::room::{Member, Room};
use super::topic::{RoomId, Topic};
use super::{Hub, State};
use crate::store::RoomChange;

/// What became of a room command (a join, mostly).
#[derive(Debug)]
#[must_use = "a join whose history is loading must be completed"]
pub enum Joining {
    /// Answered: everything is in the member's outbox.
    Done,
    /// On a node of several: proposed to the cluster's stream; the receiver answers once
    /// this node ran it (CLUSTER.md, "Rooms"), with what it became.
    Ordering(tokio::sync::oneshot::Receiver<super::cluster::RoomSettled>),
    /// The room's history is being read from the store: complete the join with
    /// [`Hub::complete_join`] once it answers.
    Loading(HistoryLoad),
}

/// A room's history asked of the store for a join or a login.
#[derive(Debug)]
pub struct HistoryLoad {
    /// The room.
    pub room: RoomId,
    /// Whether the join created it.
    pub created: bool,
    /// The store's answer to come.
    pub reply: crate::store::Reply<Vec<crate::store::Line>>,
}

/// Why a room command was refused. Each maps to one error code (`code`) and detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// On a node of several: the cluster's message bus did not order the command in time.
    #[error("the cluster's message bus is not answering; the command may still take effect once it is back")]
    Unanswered,
    /// No room by that name.
    #[error("no room by that name")]
    NoSuchRoom,
    /// The user is not a member of the room.
    #[error("you are not in that room")]
    NotInRoom,
    /// The named user is not a member of the room.
    #[error("{0} is not in that room")]
    NotMember(String),
    /// The account is banned from the room.
    #[error("you are banned from that room")]
    Banned,
    /// The room is invite-only and the user is not invited.
    #[error("that room is invite-only: ask one of its operators for an invitation")]
    InviteOnly,
    /// Only operators may do that.
    #[error("only the room's operators may do that")]
    NotOp,
    /// Nobody may do that to the room's owner.
    #[error("nobody may do that to the room's owner")]
    Owner,
    /// The user to unban is not banned.
    #[error("{0} is not banned from that room")]
    NotBanned(String),
    /// The invitee is banned from the room.
    #[error("{0} is banned from that room: lift the ban first")]
    TargetBanned(String),
    /// Only the server names a room's owner.
    #[error("a room's ownership passes only when its owner leaves, or by the server's operator (mm-server rooms set-owner)")]
    OwnerByServer,
    /// The room has as many members as allowed.
    #[error("the room is full ({0} members)")]
    RoomFull(usize),
    /// The room has as many bans (or invitations) as allowed.
    #[error("the room's list of bans or invitations is full ({0})")]
    ListFull(usize),
    /// The user is in as many rooms as allowed.
    #[error("you are in {0} rooms, the most this server allows; leave one first")]
    TooManyRooms(usize),
    /// The server holds as many rooms as allowed.
    #[error("the server holds {0} rooms, the most it allows")]
    RoomsFull(usize),
    /// The user created as many rooms as allowed for now.
    #[error("you created as many rooms as this server allows for now; try again in {}", wait_words(.0))]
    CreationLimit(Duration),
    /// The name looks like an existing room's.
    #[error("no room {0} exists and the name looks like the existing {1}; choose another name or join {1}")]
    LooksLike(String, String),
    /// The lobby cannot be left, nor its members kicked or banned.
    #[error(
        "everyone online is in #lobby: it cannot be left, and nobody is kicked or banned from it"
    )]
    LobbyFixed,
    /// A topic, reason or away message that is too long or holds refused characters.
    #[error("{0}")]
    BadText(String),
    /// The room name breaks the rules.
    #[error("{0}")]
    BadName(String),
    /// The nick is not a valid nick.
    #[error("no such user")]
    NoSuchNick,
    /// The store cannot take the change now.
    #[error("the server is busy; try again")]
    Busy,
    /// The server is shutting down, or this connection was replaced.
    #[error("server is shutting down")]
    Closed,
}

impl RoomError {
    /// The error code it is sent with.
    pub fn code(&self) -> mm_common::protocol::ErrorCode {
        use mm_common::protocol::ErrorCode as C;
        match self {
            RoomError::NoSuchRoom => C::NO_SUCH_ROOM,
            RoomError::NotInRoom | RoomError::NotMember(_) | RoomError::NotBanned(_) => {
                C::NOT_IN_ROOM
            }
            RoomError::Banned | RoomError::TargetBanned(_) => C::BANNED,
            RoomError::InviteOnly => C::INVITE_ONLY,
            RoomError::NotOp | RoomError::Owner | RoomError::OwnerByServer => C::NOT_OP,
            RoomError::RoomFull(_) | RoomError::ListFull(_) => C::ROOM_FULL,
            RoomError::TooManyRooms(_) => C::TOO_MANY_ROOMS,
            RoomError::RoomsFull(_) | RoomError::CreationLimit(_) => C::ROOMS_FULL,
            RoomError::LooksLike(..) => C::ROOM_LOOKS_LIKE,
            RoomError::LobbyFixed => C::LOBBY_FIXED,
            RoomError::BadText(_) => C::INVALID_TOPIC,
            RoomError::BadName(_) => C::INVALID_ROOM,
            RoomError::NoSuchNick => C::NO_SUCH_NICK,
            RoomError::Busy | RoomError::Unanswered => C::BUSY,
            RoomError::Closed => C::SHUTTING_DOWN,
        }
    }

    /// The `RoomError` message for `room` (as the client wrote it).
    pub fn message(&self, room: &str) -> ServerMsg {
        ServerMsg::RoomError {
            room: room.to_owned(),
            code: self.code(),
            detail: self.to_string(),
        }
    }
}

/// Whether `name` looks like `#lobby` (same skeleton) without being it.
fn looks_like_lobby(name: &str) -> bool {
    use mm_common::confusable::skeleton;
    skeleton(name.trim_start_matches('#')) == skeleton(LOBBY.trim_start_matches('#'))
}

/// `3 minutes`, `1 hour`.
fn wait_words(d: &Duration) -> String {
    let secs = d.as_secs().max(1);
    let (n, unit) = if secs < 120 {
        (secs, "second")
    } else if secs < 7200 {
        (secs.div_ceil(60), "minute")
    } else {
        (secs.div_ceil(3600), "hour")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// The room limits the hub enforces (from the server's `Limits`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoomLimits {
    pub max_rooms: usize,
    pub per_user: usize,
    pub members: usize,
    pub creations: u32,
    pub creations_period_ms: u64,
    pub topic_len: usize,
    pub bans: usize,
    pub history_len: usize,
}

impl RoomLimits {
    pub fn from_limits(l: &crate::config::Limits) -> RoomLimits {
        RoomLimits {
            max_rooms: l.max_rooms,
            per_user: l.max_rooms_per_user,
            members: l.max_room_members,
            creations: l.room_creations_per_user,
            creations_period_ms: u64::try_from(l.room_creations_period.as_millis())
                .unwrap_or(u64::MAX),
            topic_len: l.max_topic_len.min(mm_common::protocol::MAX_TOPIC_LEN),
            bans: l.max_bans_per_room,
            history_len: l.history_len,
        }
    }
}

/// The room limits by which every node of a cluster decides room commands, as text: all nodes
/// must run with the same (CLUSTER.md, "Rooms"; a node whose differ from a live node's is
/// refused at start). The creation limit is a node's own and not in it.
pub fn cluster_settings(limits: &crate::config::Limits) -> String {
    let l = RoomLimits::from_limits(limits);
    format!(
        "max_rooms={} max_room_members={} max_rooms_per_user={} max_bans_per_room={} max_topic_len={} history_len={}",
        l.max_rooms, l.members, l.per_user, l.bans, l.topic_len, l.history_len
    )
}

/// Checks a topic, reason or away message: may be empty; at most `max` bytes; no control or
/// unsafe characters (the rules of chat text).
pub fn check_words(text: &str, max: usize, what: &str) -> Result<(), RoomError> {
    if text.is_empty() {
        return Ok(());
    }
    match validate_text(text, max) {
        Ok(()) => Ok(()),
        Err(TextError::TooLong { len, max }) => Err(RoomError::BadText(format!(
            "the {what} is {len} bytes; at most {max} are allowed"
        ))),
        Err(e) => Err(RoomError::BadText(format!("the {what}: {e}"))),
    }
}

pub(super) fn encode(msg: &ServerMsg) -> Option<Bytes> {
    match frame::encode_message(msg) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!(error = %e, "room message could not be encoded");
            None
        }
    }
}

impl State {
    /// The user `key`'s connection, if `conn_id` is still it.
    pub(super) fn actor(&self, conn_id: u64, key: &str) -> Result<(), RoomError> {
        if self.closed || !self.is_current(conn_id, key) {
            return Err(RoomError::Closed);
        }
        Ok(())
    }

    /// The room `name` (not the lobby), where the user `key` must be an operator.
    fn operator(&self, key: &str, name: &str) -> Result<RoomId, RoomError> {
        let (id, role) = self.room_and_role(name, key)?;
        if !role.ok_or(RoomError::NotInRoom)?.is_op() {
            return Err(RoomError::NotOp);
        }
        Ok(id)
    }

    /// The room `name` (not the lobby) and the actor's standing in it.
    fn room_and_role(&self, name: &str, key: &str) -> Result<(RoomId, Option<Role>), RoomError> {
        if is_lobby(name) {
            return Err(RoomError::LobbyFixed);
        }
        let id = self.rooms.id_of(name).ok_or(RoomError::NoSuchRoom)?;
        let role = self.rooms.get(id).and_then(|r| r.role(key));
        Ok((id, role))
    }

    /// Publishes `msg` to everyone in room `id`.
    fn publish_room(&mut self, id: RoomId, msg: &ServerMsg) {
        if let Some(encoded) = encode(msg) {
            self.publish(&Topic::Room(id), &encoded, None);
        }
    }

    /// Queues `msgs` for the user `key` alone (its own outbox, in hub order).
    pub(super) fn send_user(&mut self, key: &str, msgs: impl IntoIterator<Item = Bytes>) {
        let topic = Topic::user(key);
        for msg in msgs {
            let published = self.bus.publish(&topic, &msg, None);
            if !published.too_slow.is_empty() {
                self.evict_all(published.too_slow);
                return;
            }
        }
    }

    /// (online, away) of the user `key`.
    fn status(&self, key: &str) -> (bool, bool) {
        match self.peers.get(key) {
            Some(p) if p.announced => (true, p.away.is_some()),
            Some(_) => (false, false),
            None => self
                .cluster
                .as_ref()
                .and_then(|c| c.remote.get(key))
                .map_or((false, false), |r| (true, r.is_away())),
        }
    }

    /// `Entered`, names (`pages` pages of `per_page`; none if 0) and history of room `id` for
    /// member `key`, encoded.
    pub(super) fn entry_frames(
        &self,
        id: RoomId,
        key: &str,
        created: bool,
        names: Option<usize>,
    ) -> Vec<Bytes> {
        let Some(room) = self.rooms.get(id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        out.extend(encode(&room.entered(key, created)));
        if let Some(per_page) = names {
            for page in room.names(per_page, 1, |k| self.status(k)) {
                out.extend(encode(&page));
            }
        }
        if let Some(history) = room.history.cached() {
            out.extend(history.snapshot());
        }
        out
    }

    /// Drops from memory the histories of rooms `ids` that have nobody online in them, while
    /// all rooms together hold more lines than the bound (they stay in the store).
    pub(super) fn evict_histories(&mut self, ids: &[RoomId]) {
        for &id in ids {
            if self.rooms.cached_lines() <= self.history_cache_lines {
                return;
            }
            if self.bus.subscribers(&Topic::Room(id)) == 0 {
                self.rooms.evict(id);
            }
        }
    }

    /// Counts a room creation of the user `key` against its limit ([`RoomLimits`]).
    pub(super) fn take_creation(
        &mut self,
        key: &str,
        limits: &RoomLimits,
        now_ms: u64,
    ) -> Result<(), RoomError> {
        self.rooms
            .take_creation(key, limits.creations, limits.creations_period_ms, now_ms)
            .map_err(|wait_ms| RoomError::CreationLimit(Duration::from_millis(wait_ms)))
    }

    /// Whether a join or part notice goes out in a room of `members`.
    fn room_presence(&self, members: usize) -> bool {
        members <= self.presence_max_online
    }
}

/// Who acts in a room command, and when: a user of this node or of another (a command the
/// cluster's stream ordered, CLUSTER.md), or the server itself (`key` empty).
#[derive(Debug, Clone)]
pub(super) struct Act {
    /// The actor's nick key; empty for the server.
    pub key: String,
    /// The actor's nick as spelled; empty for the server.
    pub nick: String,
    /// The command's time, ms since the Unix epoch (on a cluster, the accepting node's: every
    /// node stores the same).
    pub now_ms: u64,
}

impl Hub {
    /// Hands a room change to the store — or, while a command the stream ordered is applied,
    /// to that command's changes (stored together with its id: `RoomChange::Ordered`).
    fn submit_room(&self, state: &mut State, change: RoomChange) -> Result<(), RoomError> {
        if let Some(batch) = state.cluster.as_mut().and_then(|c| c.room_changes.as_mut()) {
            batch.push(change);
            return Ok(());
        }
        match self.shared.store.room(change) {
            Ok(_reply) => Ok(()), // accepted work is retried until stored
            Err(crate::store::StoreError::Closed) => Err(RoomError::Closed),
            Err(_) => Err(RoomError::Busy),
        }
    }

    /// Joins connection `conn_id` of `nick` to room `name` (valid per
    /// [`validate_room`](mm_common::protocol::validate_room)), creating it if missing. Its
    /// outbox gets `Entered`, the first page of members and the history; the room gets a
    /// `Joined` notice (unless large).
    ///
    /// # Errors
    /// [`RoomError`]: banned, invite-only, full, too many rooms, creation limits, a
    /// look-alike name, the store busy, the hub closed.
    pub fn join_room(&self, conn_id: u64, nick: &str, name: &str) -> Result<Joining, RoomError> {
        let key = nick_key(nick);
        let mut state = self.lock();
        state.actor(conn_id, &key)?;
        let now_ms = state.clock.now_ms();
        if is_lobby(name) {
            let online = state.peers.len();
            let mut frames: Vec<Bytes> = encode(&ServerMsg::Entered {
                room: LOBBY.to_owned(),
                topic: String::new(),
                topic_by: String::new(),
                topic_ts: 0,
                modes: Modes::default(),
                members: u32::try_from(online).unwrap_or(u32::MAX),
                role: Role::Member,
                seen: 0,
                created: false,
            })
            .into_iter()
            .collect();
            frames.extend(state.history.snapshot());
            state.send_user(&key, frames);
            return Ok(Joining::Done);
        }
        let act = Act {
            key,
            nick: nick.to_owned(),
            now_ms,
        };
        self.join_in(&mut state, &act, name)
    }

    /// [`Hub::join_room`] of a room other than the lobby, by `act` (checked). The creation
    /// limit is a node's own (not shared by a cluster): checked here only on one node.
    pub(super) fn join_in(
        &self,
        state: &mut State,
        act: &Act,
        name: &str,
    ) -> Result<Joining, RoomError> {
        let (key, nick, now_ms) = (&act.key, act.nick.as_str(), act.now_ms);
        let limits = self.shared.room_limits;
        let (id, created) = match state.rooms.id_of(name) {
            Some(id) => {
                let room = state.rooms.get(id).ok_or(RoomError::NoSuchRoom)?;
                if room.members.contains_key(key) {
                    // Already a member: answered as a join, nothing changes.
                    return self.answer_join(state, id, key, false, true);
                }
                if room.bans.contains(key) {
                    return Err(RoomError::Banned);
                }
                if room.modes.invite_only && !room.invites.contains(key) {
                    return Err(RoomError::InviteOnly);
                }
                if room.members.len() >= limits.members {
                    return Err(RoomError::RoomFull(limits.members));
                }
                if state.rooms.of_user(key).len() >= limits.per_user {
                    return Err(RoomError::TooManyRooms(limits.per_user));
                }
                // Whoever joins an empty room owns it (its owner left, and nobody was left to
                // inherit it).
                let member = Member {
                    nick: nick.to_owned(),
                    role: if room.members.is_empty() {
                        Role::Owner
                    } else {
                        Role::Member
                    },
                    seen: room.last_line,
                };
                self.submit_room(
                    state,
                    RoomChange::Join(
                        id,
                        crate::store::MemberRecord {
                            key: key.clone(),
                            nick: nick.to_owned(),
                            role: member.role,
                            seen: member.seen,
                        },
                    ),
                )?;
                state.rooms.add_member(id, key, member);
                if let Some(room) = state.rooms.get_mut(id) {
                    room.active_ms = now_ms;
                }
                (id, false)
            }
            None => {
                if looks_like_lobby(name) {
                    return Err(RoomError::LooksLike(name.to_owned(), LOBBY.to_owned()));
                }
                if let Some(existing) = state.rooms.looks_like(name) {
                    return Err(RoomError::LooksLike(name.to_owned(), existing.to_owned()));
                }
                if state.rooms.len() >= limits.max_rooms {
                    return Err(RoomError::RoomsFull(limits.max_rooms));
                }
                if state.rooms.of_user(key).len() >= limits.per_user {
                    return Err(RoomError::TooManyRooms(limits.per_user));
                }
                if state.cluster.is_none() {
                    state.take_creation(key, &limits, now_ms)?;
                }
                let id = state.rooms.next_id();
                let room = Room::new(id, name, key, nick, now_ms, limits.history_len);
                self.submit_room(state, RoomChange::Create(room.record()))?;
                state.rooms.create(room);
                tracing::info!(room = id.0, "room created");
                (id, true)
            }
        };
        let members = state.rooms.get(id).map_or(0, |r| r.members.len());
        if !created && state.room_presence(members) {
            let joined = ServerMsg::Joined {
                ts: now_ms,
                room: state
                    .rooms
                    .get(id)
                    .map_or_else(String::new, |r| r.name.clone()),
                nick: nick.to_owned(),
            };
            state.publish_room(id, &joined);
        }
        self.answer_join(state, id, key, created, false)
    }

    /// Answers a join of member `key` into room `id`: `Entered`, the first page of members and
    /// the history into its outbox, then subscribes it — if the history is in memory. If not,
    /// asks the store for it and returns [`Joining::Loading`]: the session completes the join
    /// with [`Hub::complete_join`] once the store answers. `member_before`: whether it was a
    /// member already (then it may be subscribed already; a new member is not).
    fn answer_join(
        &self,
        state: &mut State,
        id: RoomId,
        key: &str,
        created: bool,
        member_before: bool,
    ) -> Result<Joining, RoomError> {
        if !state.peers.contains_key(key) {
            // A user of another node (a command the stream ordered): that node answers it.
            return Ok(Joining::Done);
        }
        let len = self.shared.room_limits.history_len;
        if !state.rooms.start_loading(id) {
            let reply = match self.shared.store.room_history(id, len) {
                Ok(reply) => reply,
                Err(crate::store::StoreError::Closed) => return Err(RoomError::Closed),
                Err(_) => return Err(RoomError::Busy),
            };
            return Ok(Joining::Loading(HistoryLoad {
                room: id,
                created,
                reply,
            }));
        }
        let frames = state.entry_frames(id, key, created, Some(NAMES_ON_JOIN));
        state.send_user(key, frames);
        if member_before {
            state.subscribe_room(id, key);
        } else if let Some(sender) = state.outbox_sender(key) {
            // A new member is subscribed nowhere yet: no scan of the room's subscribers (a
            // storm of 5,000 joins would scan 12.5 M of them).
            state.bus.subscribe(Topic::Room(id), sender);
        }
        Ok(Joining::Done)
    }

    /// The name of room `id`, if it exists.
    pub fn room_name(&self, id: RoomId) -> Option<String> {
        self.lock().rooms.get(id).map(|r| r.name.clone())
    }

    /// Completes a join (or a login's entry into a room) whose history the store was asked
    /// for ([`Joining::Loading`]): `lines` is its answer. The room's history is in memory from
    /// now on; the member's outbox gets `Entered`, its first page of members (`names`) and
    /// the history, and it is subscribed to the room. Nothing happens if the connection is
    /// gone or is no longer a member.
    ///
    /// # Errors
    /// [`RoomError::Busy`] if the store did not answer (`lines` is `Err`): the member is not
    /// subscribed; joining again asks again.
    pub fn complete_join(
        &self,
        conn_id: u64,
        nick: &str,
        load: HistoryLoad,
        lines: Result<Vec<crate::store::Line>, crate::store::StoreError>,
        names: bool,
    ) -> Result<(), RoomError> {
        let key = nick_key(nick);
        let mut state = self.lock();
        if !state.is_current(conn_id, &key) {
            return Ok(());
        }
        let lines = lines.map_err(|_| RoomError::Busy)?;
        state
            .rooms
            .fill(load.room, lines, self.shared.room_limits.history_len);
        if state
            .rooms
            .get(load.room)
            .and_then(|r| r.role(&key))
            .is_none()
        {
            return Ok(()); // removed meanwhile
        }
        let names = names.then_some(NAMES_ON_JOIN);
        let frames = state.entry_frames(load.room, &key, load.created, names);
        state.send_user(&key, frames);
        state.subscribe_room(load.room, &key);
        Ok(())
    }

    /// Takes `nick` out of room `name`; everyone in it, the leaver included, gets `Parted`.
    ///
    /// # Errors
    /// Not a member, the lobby, the store busy, the hub closed.
    pub fn part_room(
        &self,
        conn_id: u64,
        nick: &str,
        name: &str,
        reason: &str,
    ) -> Result<(), RoomError> {
        self.acting(conn_id, nick, |hub, state, act| {
            hub.part_in(state, act, name, reason)
        })
    }

    /// Runs a room command of connection `conn_id` of `nick` (checked to be current) under
    /// the lock, now.
    fn acting<T>(
        &self,
        conn_id: u64,
        nick: &str,
        run: impl FnOnce(&Self, &mut State, &Act) -> Result<T, RoomError>,
    ) -> Result<T, RoomError> {
        let key = nick_key(nick);
        let mut state = self.lock();
        state.actor(conn_id, &key)?;
        let act = Act {
            key,
            nick: nick.to_owned(),
            now_ms: state.clock.now_ms(),
        };
        run(self, &mut state, &act)
    }

    pub(super) fn part_in(
        &self,
        state: &mut State,
        act: &Act,
        name: &str,
        reason: &str,
    ) -> Result<(), RoomError> {
        let (key, nick, now_ms) = (&act.key, act.nick.as_str(), act.now_ms);
        let (id, role) = state.room_and_role(name, key)?;
        if role.is_none() {
            return Err(RoomError::NotInRoom);
        }
        self.submit_room(state, RoomChange::Part(id, key.clone()))?;
        let Some(room) = state.rooms.get(id) else {
            return Err(RoomError::NoSuchRoom);
        };
        let parted = ServerMsg::Parted {
            ts: now_ms,
            room: room.name.clone(),
            nick: nick.to_owned(),
            reason: reason.to_owned(),
        };
        let loud = state.room_presence(room.members.len());
        state.remove_from_room(id, key, &parted, loud);
        if role == Some(Role::Owner) {
            self.succeed_owner(state, id, now_ms);
        }
        self.emptied(state, id, now_ms);
        Ok(())
    }

    /// The page of the room list after `after`: rooms in name order, invite-only ones only to
    /// their members.
    pub fn list_rooms(&self, nick: &str, after: &str) -> ServerMsg {
        let key = nick_key(nick);
        let state = self.lock();
        let (rooms, next) = state.rooms.page(after, ROOMS_PER_FRAME, |r| {
            !r.modes.invite_only || r.members.contains_key(&key)
        });
        ServerMsg::Rooms { rooms, next }
    }

    /// Room `name`'s members, in `Names` pages.
    ///
    /// # Errors
    /// No such room; an invite-only room the user is not in ([`RoomError::NotInRoom`]).
    pub fn names(&self, nick: &str, name: &str) -> Result<Vec<ServerMsg>, RoomError> {
        let key = nick_key(nick);
        let state = self.lock();
        if is_lobby(name) {
            // The lobby's members are who is online: `Who` lists them.
            let mut members: Vec<(String, mm_common::protocol::Member)> = state
                .peers
                .iter()
                .filter(|(_, p)| p.announced)
                .map(|(k, p)| {
                    (
                        k.clone(),
                        mm_common::protocol::Member {
                            nick: p.nick.clone(),
                            role: Role::Member,
                            online: true,
                            away: p.away.is_some(),
                        },
                    )
                })
                .chain(Self::remote_members(&state).map(|(n, away)| {
                    (
                        nick_key(n),
                        mm_common::protocol::Member {
                            nick: n.clone(),
                            role: Role::Member,
                            online: true,
                            away,
                        },
                    )
                }))
                .collect();
            drop(state);
            members.sort_by(|a, b| a.0.cmp(&b.0));
            let mut pages: Vec<ServerMsg> = members
                .chunks(NAMES_PER_FRAME)
                .map(|c| ServerMsg::Names {
                    room: LOBBY.to_owned(),
                    members: c.iter().map(|(_, m)| m.clone()).collect(),
                    last: false,
                })
                .collect();
            match pages.last_mut() {
                Some(ServerMsg::Names { last, .. }) => *last = true,
                _ => pages.push(ServerMsg::Names {
                    room: LOBBY.to_owned(),
                    members: Vec::new(),
                    last: true,
                }),
            }
            return Ok(pages);
        }
        let id = state.rooms.id_of(name).ok_or(RoomError::NoSuchRoom)?;
        let room = state.rooms.get(id).ok_or(RoomError::NoSuchRoom)?;
        if room.modes.invite_only && !room.members.contains_key(&key) {
            return Err(RoomError::NotInRoom);
        }
        Ok(room.names(NAMES_PER_FRAME, usize::MAX, |k| state.status(k)))
    }

    /// Sets room `name`'s topic (`Some`), telling everyone in it, or shows it to the user
    /// (`None`).
    ///
    /// # Errors
    /// Not a member (to set), not an operator of a `+t` room, a bad topic, busy, closed.
    pub fn topic(
        &self,
        conn_id: u64,
        nick: &str,
        name: &str,
        topic: Option<String>,
    ) -> Result<(), RoomError> {
        self.acting(conn_id, nick, |hub, state, act| {
            hub.topic_in(state, act, name, topic)
        })
    }

    pub(super) fn topic_in(
        &self,
        state: &mut State,
        act: &Act,
        name: &str,
        topic: Option<String>,
    ) -> Result<(), RoomError> {
        let (key, nick, now_ms) = (&act.key, act.nick.as_str(), act.now_ms);
        let (id, role) = state.room_and_role(name, key)?;
        let Some(room) = state.rooms.get(id) else {
            return Err(RoomError::NoSuchRoom);
        };
        let Some(topic) = topic else {
            if room.modes.invite_only && role.is_none() {
                return Err(RoomError::NotInRoom);
            }
            let msg = ServerMsg::Topic {
                ts: room.topic_ts,
                room: room.name.clone(),
                by: room.topic_by.clone(),
                topic: room.topic.clone(),
            };
            state.send_user(key, encode(&msg));
            return Ok(());
        };
        let role = role.ok_or(RoomError::NotInRoom)?;
        if room.modes.topic_ops && !role.is_op() {
            return Err(RoomError::NotOp);
        }
        check_words(&topic, self.shared.room_limits.topic_len, "topic")?;
        self.submit_room(
            state,
            RoomChange::Topic(id, topic.clone(), nick.to_owned(), now_ms),
        )?;
        let Some(room) = state.rooms.get_mut(id) else {
            return Err(RoomError::NoSuchRoom);
        };
        room.topic.clone_from(&topic);
        room.topic_by = nick.to_owned();
        room.topic_ts = now_ms;
        let msg = ServerMsg::Topic {
            ts: now_ms,
            room: room.name.clone(),
            by: nick.to_owned(),
            topic,
        };
        state.publish_room(id, &msg);
        Ok(())
    }

    /// Invites `target` into room `name` (operators only in an invite-only room; members
    /// otherwise). The inviter and the invitee (if online) get `Invited`.
    ///
    /// # Errors
    /// Not a member, not an operator, the list full, busy, closed.
    pub fn invite(
        &self,
        conn_id: u64,
        nick: &str,
        name: &str,
        target: &str,
    ) -> Result<(), RoomError> {
        self.acting(conn_id, nick, |hub, state, act| {
            hub.invite_in(state, act, name, target)
        })
    }

    pub(super) fn invite_in(
        &self,
        state: &mut State,
        act: &Act,
        name: &str,
        target: &str,
    ) -> Result<(), RoomError> {
        let (key, nick) = (&act.key, act.nick.as_str());
        let target_key = nick_key(target);
        let (id, role) = state.room_and_role(name, key)?;
        let role = role.ok_or(RoomError::NotInRoom)?;
        let Some(room) = state.rooms.get(id) else {
            return Err(RoomError::NoSuchRoom);
        };
        if room.modes.invite_only && !role.is_op() {
            return Err(RoomError::NotOp);
        }
        if room.bans.contains(&target_key) {
            return Err(RoomError::TargetBanned(target.to_owned()));
        }
        let room_name = room.name.clone();
        // An invitation is kept only where it is needed, an invite-only room (where only
        // operators give them); elsewhere it is a notice: anyone may join anyway.
        let kept = room.modes.invite_only;
        let already = room.members.contains_key(&target_key) || room.invites.contains(&target_key);
        if kept && !already {
            if room.invites.len() >= self.shared.room_limits.bans {
                return Err(RoomError::ListFull(self.shared.room_limits.bans));
            }
            self.submit_room(state, RoomChange::Invite(id, target_key.clone(), true))?;
            if let Some(room) = state.rooms.get_mut(id) {
                room.invites.insert(target_key.clone());
            }
        }
        let target_nick = state
            .peers
            .get(&target_key)
            .map_or_else(|| target.to_owned(), |p| p.nick.clone());
        let msg = ServerMsg::Invited {
            ts: act.now_ms,
            room: room_name,
            by: nick.to_owned(),
            nick: target_nick,
        };
        let encoded = encode(&msg);
        state.send_user(key, encoded.clone());
        // The invitee hears once per invitation: asking again only confirms to the inviter
        // (repeated invitations are not a way to pester someone).
        if !already && target_key != *key && state.peers.contains_key(&target_key) {
            state.send_user(&target_key, encoded);
        }
        Ok(())
    }

    /// Removes `target` from room `name` (operators only; never the owner). Everyone in the
    /// room and the target get `Kicked`.
    ///
    /// # Errors
    /// Not an operator, the owner, the target not a member, busy, closed.
    pub fn kick(
        &self,
        conn_id: u64,
        nick: &str,
        name: &str,
        target: &str,
        reason: &str,
    ) -> Result<(), RoomError> {
        self.acting(conn_id, nick, |hub, state, act| {
            hub.kick_in(state, act, name, target, reason)
        })
    }

    pub(super) fn kick_in(
        &self,
        state: &mut State,
        act: &Act,
        name: &str,
        target: &str,
        reason: &str,
    ) -> Result<(), RoomError> {
        let (key, nick) = (&act.key, act.nick.as_str());
        let target_key = nick_key(target);
        let id = state.operator(key, name)?;
        let Some(room) = state.rooms.get(id) else {
            return Err(RoomError::NoSuchRoom);
        };
        let Some(victim) = room.members.get(&target_key) else {
            return Err(RoomError::NotMember(target.to_owned()));
        };
        if victim.role == Role::Owner {
            return Err(RoomError::Owner);
        }
        let msg = ServerMsg::Kicked {
            ts: act.now_ms,
            room: room.name.clone(),
            nick: victim.nick.clone(),
            by: nick.to_owned(),
            reason: reason.to_owned(),
        };
        self.submit_room(state, RoomChange::Part(id, target_key.clone()))?;
        state.remove_from_room(id, &target_key, &msg, true);
        Ok(())
    }

    /// Changes `target`'s standing in room `name` (operators only; never the owner's).
    /// Everyone in the room gets `MemberChanged`; a ban removes a member (it gets `Kicked`).
    ///
    /// # Errors
    /// Not an operator, the owner, the target not a member (op, voice), the ban list full,
    /// busy, closed.
    pub fn member_change(
        &self,
        conn_id: u64,
        nick: &str,
        name: &str,
        target: &str,
        change: MemberChange,
    ) -> Result<(), RoomError> {
        self.acting(conn_id, nick, |hub, state, act| {
            hub.member_change_in(state, act, name, target, change)
        })
    }

    pub(super) fn member_change_in(
        &self,
        state: &mut State,
        act: &Act,
        name: &str,
        target: &str,
        change: MemberChange,
    ) -> Result<(), RoomError> {
        let (key, nick) = (&act.key, act.nick.as_str());
        let target_key = nick_key(target);
        let id = state.operator(key, name)?;
        let limits = self.shared.room_limits;
        let Some(room) = state.rooms.get(id) else {
            return Err(RoomError::NoSuchRoom);
        };
        let target_member = room.members.get(&target_key).cloned();
        if target_member
            .as_ref()
            .is_some_and(|m| m.role == Role::Owner)
        {
            return Err(RoomError::Owner);
        }
        let room_name = room.name.clone();
        let shown = target_member
            .as_ref()
            .map_or_else(|| target.to_owned(), |m| m.nick.clone());
        let now_ms = act.now_ms;
        match change {
            MemberChange::Owner => return Err(RoomError::OwnerByServer),
            MemberChange::Op | MemberChange::Deop | MemberChange::Voice | MemberChange::Devoice => {
                let Some(mut member) = target_member.clone() else {
                    return Err(RoomError::NotMember(target.to_owned()));
                };
                let before = member.role;
                member.role = match change {
                    MemberChange::Op => Role::Op,
                    MemberChange::Voice if member.role.is_op() => member.role,
                    MemberChange::Voice => Role::Voiced,
                    MemberChange::Devoice if member.role == Role::Voiced => Role::Member,
                    MemberChange::Deop if member.role.is_op() => Role::Member,
                    _ => member.role,
                };
                if member.role == before {
                    // Nothing changes (voice for an operator, deop of a member): confirmed to
                    // the asker alone, nothing stored, nobody else hears of it.
                    let msg = ServerMsg::MemberChanged {
                        ts: now_ms,
                        room: room_name,
                        by: nick.to_owned(),
                        nick: shown,
                        change,
                    };
                    state.send_user(key, encode(&msg));
                    return Ok(());
                }
                self.submit_room(
                    state,
                    RoomChange::Join(
                        id,
                        crate::store::MemberRecord {
                            key: target_key.clone(),
                            nick: member.nick.clone(),
                            role: member.role,
                            seen: member.seen,
                        },
                    ),
                )?;
                state.rooms.add_member(id, &target_key, member);
            }
            MemberChange::Ban => {
                if room.bans.len() >= limits.bans && !room.bans.contains(&target_key) {
                    return Err(RoomError::ListFull(limits.bans));
                }
                // One change: the ban removes the member in the store too.
                self.submit_room(state, RoomChange::Ban(id, target_key.clone(), true))?;
                if let Some(room) = state.rooms.get_mut(id) {
                    room.bans.insert(target_key.clone());
                    room.invites.remove(&target_key);
                }
            }
            MemberChange::Unban => {
                if !room.bans.contains(&target_key) {
                    return Err(RoomError::NotBanned(target.to_owned()));
                }
                self.submit_room(state, RoomChange::Ban(id, target_key.clone(), false))?;
                if let Some(room) = state.rooms.get_mut(id) {
                    room.bans.remove(&target_key);
                }
            }
        }
        let msg = ServerMsg::MemberChanged {
            ts: now_ms,
            room: room_name.clone(),
            by: nick.to_owned(),
            nick: shown.clone(),
            change,
        };
        state.publish_room(id, &msg);
        if change == MemberChange::Ban && target_member.is_some() {
            let kicked = ServerMsg::Kicked {
                ts: now_ms,
                room: room_name,
                nick: shown,
                by: nick.to_owned(),
                reason: "banned".to_owned(),
            };
            state.remove_from_room(id, &target_key, &kicked, true);
        }
        Ok(())
    }

    /// Turns a mode of room `name` on or off (operators only); everyone in it gets
    /// `ModeChanged` (when it changes).
    ///
    /// # Errors
    /// Not an operator, busy, closed.
    pub fn set_mode(
        &self,
        conn_id: u64,
        nick: &str,
        name: &str,
        mode: RoomMode,
        on: bool,
    ) -> Result<(), RoomError> {
        self.acting(conn_id, nick, |hub, state, act| {
            hub.set_mode_in(state, act, name, mode, on)
        })
    }

    pub(super) fn set_mode_in(
        &self,
        state: &mut State,
        act: &Act,
        name: &str,
        mode: RoomMode,
        on: bool,
    ) -> Result<(), RoomError> {
        let (key, nick) = (&act.key, act.nick.as_str());
        let id = state.operator(key, name)?;
        let Some(room) = state.rooms.get(id) else {
            return Err(RoomError::NoSuchRoom);
        };
        let mut modes = room.modes;
        modes.set(mode, on);
        if modes != room.modes {
            self.submit_room(state, RoomChange::Modes(id, modes))?;
        }
        let ts = act.now_ms;
        let Some(room) = state.rooms.get_mut(id) else {
            return Err(RoomError::NoSuchRoom);
        };
        let changed = room.modes != modes;
        room.modes = modes;
        let msg = ServerMsg::ModeChanged {
            ts,
            room: room.name.clone(),
            by: nick.to_owned(),
            mode,
            on,
        };
        if changed {
            state.publish_room(id, &msg);
        } else {
            // Already so: confirmed to the one who asked, nobody else hears of it.
            state.send_user(key, encode(&msg));
        }
        Ok(())
    }

    /// Marks `nick` away with `message` (empty: back), and tells it.
    ///
    /// # Errors
    /// A bad message, closed.
    pub fn away(&self, conn_id: u64, nick: &str, message: String) -> Result<(), RoomError> {
        check_words(
            &message,
            mm_common::protocol::MAX_REASON_LEN,
            "away message",
        )?;
        let key = nick_key(nick);
        let mut state = self.lock();
        state.actor(conn_id, &key)?;
        let Some(peer) = state.peers.get_mut(&key) else {
            return Err(RoomError::Closed);
        };
        peer.away = (!message.is_empty()).then(|| message.clone());
        let (shown, away) = (peer.nick.clone(), peer.away.clone());
        if let Some(cluster) = state.cluster.as_mut() {
            cluster.tell_away(&shown, away);
        }
        let msg = ServerMsg::Away {
            nick: shown,
            message,
        };
        state.send_user(&key, encode(&msg));
        Ok(())
    }

    /// The away message of `nick` if online and away.
    pub fn away_message(&self, nick: &str) -> Option<(String, String)> {
        let state = self.lock();
        let key = nick_key(nick);
        match state.peers.get(&key) {
            Some(peer) => peer.away.clone().map(|m| (peer.nick.clone(), m)),
            None => state.cluster.as_ref()?.remote_away(&key),
        }
    }

    /// Deletes room `key` (an operator's `mm-server rooms delete`, or expiry): its members
    /// online get `Kicked` by the server.
    pub fn delete_room(&self, name: &str, reason: &str) -> bool {
        self.delete_room_of(name, reason, None)
    }

    /// [`Hub::delete_room`]; with `only`, only if the room of that name is still that room
    /// (on a cluster: when the stream orders the deletion).
    fn delete_room_of(&self, name: &str, reason: &str, only: Option<RoomId>) -> bool {
        let mut state = self.lock();
        let Some(id) = state.rooms.id_of(name) else {
            return false;
        };
        if only.is_some_and(|only| only != id) {
            return false;
        }
        if state.cluster.is_some() {
            // Every node deletes it when the stream orders it.
            let cmd = crate::cluster::event::RoomCmd::Delete {
                room: name.to_owned(),
                reason: reason.to_owned(),
                id: only.map_or(0, |id| id.0),
            };
            return matches!(Self::propose_room(&mut state, 0, "", cmd), Some(Ok(_)));
        }
        let now_ms = state.clock.now_ms();
        self.delete_in(&mut state, name, reason, now_ms)
    }

    /// [`Hub::delete_room`] under the lock, at `now_ms`.
    pub(super) fn delete_in(
        &self,
        state: &mut State,
        name: &str,
        reason: &str,
        now_ms: u64,
    ) -> bool {
        let Some(id) = state.rooms.id_of(name) else {
            return false;
        };
        if self.submit_room(state, RoomChange::Delete(id)).is_err() {
            return false;
        }
        let members: Vec<String> = state
            .rooms
            .get(id)
            .map(|r| r.members.keys().cloned().collect())
            .unwrap_or_default();
        let room_name = state
            .rooms
            .get(id)
            .map_or_else(String::new, |r| r.name.clone());
        for key in members {
            let nick = state
                .rooms
                .get(id)
                .and_then(|r| r.members.get(&key))
                .map_or_else(|| key.clone(), |m| m.nick.clone());
            let msg = ServerMsg::Kicked {
                ts: now_ms,
                room: room_name.clone(),
                nick,
                by: String::new(), // the server itself: never a nick
                reason: reason.to_owned(),
            };
            state.remove_from_room(id, &key, &msg, false);
        }
        state.rooms.delete(id);
        tracing::info!(room = id.0, "room deleted");
        true
    }

    /// Deletes rooms without members last active more than `days` days (of
    /// [`DAY_MS`](crate::clock::DAY_MS)) before now, at most `limit`; returns their names.
    pub fn expire_rooms(&self, days: u32, limit: usize) -> Vec<String> {
        let expired: Vec<(RoomId, String)> = {
            let state = self.lock();
            let cutoff = state
                .clock
                .now_ms()
                .saturating_sub(u64::from(days).saturating_mul(crate::clock::DAY_MS));
            state
                .rooms
                .expired(cutoff, limit)
                .into_iter()
                .filter_map(|id| state.rooms.get(id).map(|r| (id, r.name.clone())))
                .collect()
        };
        expired
            .into_iter()
            .filter(|(id, name)| self.delete_room_of(name, "the room expired", Some(*id)))
            .map(|(_, name)| name)
            .collect()
    }

    /// The accounts `nicks` are gone (expired or released): they leave every room; a room
    /// whose owner was one of them gets a new owner.
    pub fn accounts_gone(&self, nicks: &[String]) {
        let mut state = self.lock();
        let now_ms = state.clock.now_ms();
        for nick in nicks {
            self.forget_memberships(&mut state, nick, "account expired", now_ms);
        }
    }

    /// Takes `nick`'s account out of every room it is in (it no longer exists, or a new
    /// account took the nick): everyone in each room hears that it left, with `reason`.
    /// On a node of several, the command is proposed to the stream, and every node runs it
    /// once ordered.
    pub(super) fn forget_memberships(
        &self,
        state: &mut State,
        nick: &str,
        reason: &str,
        now_ms: u64,
    ) {
        if state.cluster.as_ref().is_some_and(|c| !c.applying()) {
            let cmd = crate::cluster::event::RoomCmd::Forget {
                reason: reason.to_owned(),
            };
            if !matches!(Self::propose_room(state, 0, nick, cmd), Some(Ok(_))) {
                tracing::warn!(
                    "an account's room memberships not forgotten: the bus queue is full"
                );
            }
            return;
        }
        let key = nick_key(nick);
        // Invitations and bans were the old account's too: a new owner of the nick neither
        // enters invite-only rooms on them nor stays out of rooms for them.
        for (id, invited, banned) in state.rooms.marks_of(&key) {
            if invited
                && self
                    .submit_room(state, RoomChange::Invite(id, key.clone(), false))
                    .is_ok()
            {
                if let Some(room) = state.rooms.get_mut(id) {
                    room.invites.remove(&key);
                }
            }
            if banned
                && self
                    .submit_room(state, RoomChange::Ban(id, key.clone(), false))
                    .is_ok()
            {
                if let Some(room) = state.rooms.get_mut(id) {
                    room.bans.remove(&key);
                }
            }
        }
        for id in state.rooms.of_user(&key).to_vec() {
            let Some(room) = state.rooms.get(id) else {
                continue;
            };
            let was_owner = room.role(&key) == Some(Role::Owner);
            if self
                .submit_room(state, RoomChange::Part(id, key.clone()))
                .is_err()
            {
                continue; // kept: the next registration or sweep tries again
            }
            let Some(room) = state.rooms.get(id) else {
                continue;
            };
            let msg = ServerMsg::Parted {
                ts: now_ms,
                room: room.name.clone(),
                nick: nick.to_owned(),
                reason: reason.to_owned(),
            };
            let loud = state.room_presence(room.members.len());
            state.remove_from_room(id, &key, &msg, loud);
            if was_owner {
                self.succeed_owner(state, id, now_ms);
            }
            self.emptied(state, id, now_ms);
        }
    }

    /// Makes `nick` the owner of room `name` (an operator's `mm-server rooms set-owner`); the
    /// previous owner becomes an operator. Whether it happened (`nick` must be a member).
    pub fn set_owner(&self, name: &str, nick: &str) -> bool {
        let mut state = self.lock();
        if state.cluster.is_some() {
            let known = state
                .rooms
                .id_of(name)
                .and_then(|id| state.rooms.get(id))
                .is_some_and(|r| r.members.contains_key(&nick_key(nick)));
            let cmd = crate::cluster::event::RoomCmd::SetOwner {
                room: name.to_owned(),
                nick: nick.to_owned(),
            };
            return known && matches!(Self::propose_room(&mut state, 0, "", cmd), Some(Ok(_)));
        }
        let now_ms = state.clock.now_ms();
        self.set_owner_in(&mut state, name, nick, now_ms)
    }

    /// [`Hub::set_owner`] under the lock, at `now_ms`.
    pub(super) fn set_owner_in(
        &self,
        state: &mut State,
        name: &str,
        nick: &str,
        now_ms: u64,
    ) -> bool {
        let key = nick_key(nick);
        let Some(id) = state.rooms.id_of(name) else {
            return false;
        };
        let Some(room) = state.rooms.get(id) else {
            return false;
        };
        let Some(new_owner) = room.members.get(&key).cloned() else {
            return false;
        };
        let old: Vec<(String, Member)> = room
            .members
            .iter()
            .filter(|(k, m)| m.role == Role::Owner && **k != key)
            .map(|(k, m)| (k.clone(), m.clone()))
            .collect();
        let room_name = room.name.clone();
        let mut changes = Vec::new();
        for (k, mut m) in old {
            m.role = Role::Op;
            changes.push((k, m));
        }
        let mut owner = new_owner;
        owner.role = Role::Owner;
        changes.push((key, owner));
        for (k, m) in changes {
            let record = crate::store::MemberRecord {
                key: k.clone(),
                nick: m.nick.clone(),
                role: m.role,
                seen: m.seen,
            };
            if self
                .submit_room(state, RoomChange::Join(id, record))
                .is_err()
            {
                return false;
            }
            let shown = m.nick.clone();
            let is_owner = m.role == Role::Owner;
            state.rooms.add_member(id, &k, m);
            // The previous owner becomes an operator without a notice of its own: clients
            // apply that with the new owner's.
            if is_owner {
                let msg = ServerMsg::MemberChanged {
                    ts: now_ms,
                    room: room_name.clone(),
                    by: String::new(), // the server itself: never a nick
                    nick: shown,
                    change: MemberChange::Owner,
                };
                state.publish_room(id, &msg);
            }
        }
        true
    }
}

impl Hub {
    /// If room `id` has no members left, its expiry counts from now: the store is told.
    fn emptied(&self, state: &mut State, id: RoomId, now_ms: u64) {
        let Some(room) = state.rooms.get_mut(id) else {
            return;
        };
        if room.members.is_empty() {
            room.active_ms = now_ms;
            if self
                .submit_room(state, RoomChange::Active(id, now_ms))
                .is_ok()
            {
                if let Some(room) = state.rooms.get_mut(id) {
                    room.stored_active_ms = now_ms;
                }
            }
        }
    }

    /// A room whose owner left gets a new one: its first operator by name, else its first
    /// member; everyone in it hears. An empty room stays without one until someone joins it
    /// (who then owns it).
    fn succeed_owner(&self, state: &mut State, id: RoomId, now_ms: u64) {
        let Some(room) = state.rooms.get(id) else {
            return;
        };
        let heir = room
            .members
            .iter()
            .find(|(_, m)| m.role.is_op())
            .or_else(|| room.members.iter().next())
            .map(|(k, m)| (k.clone(), m.clone()));
        let Some((key, mut member)) = heir else {
            return;
        };
        member.role = Role::Owner;
        let record = crate::store::MemberRecord {
            key: key.clone(),
            nick: member.nick.clone(),
            role: Role::Owner,
            seen: member.seen,
        };
        if self
            .submit_room(state, RoomChange::Join(id, record))
            .is_err()
        {
            tracing::warn!(room = id.0, "the room's new owner could not be stored yet");
        }
        let Some(room) = state.rooms.get(id) else {
            return;
        };
        let msg = ServerMsg::MemberChanged {
            ts: now_ms,
            room: room.name.clone(),
            by: String::new(), // the server itself: never a nick
            nick: member.nick.clone(),
            change: MemberChange::Owner,
        };
        state.rooms.add_member(id, &key, member);
        state.publish_room(id, &msg);
    }
}

impl State {
    /// Takes member `key` out of room `id`: `notice` goes to the room (if `loud`, else to the
    /// member alone) before it is unsubscribed, so it sees its own removal.
    pub(super) fn remove_from_room(
        &mut self,
        id: RoomId,
        key: &str,
        notice: &ServerMsg,
        loud: bool,
    ) {
        if let Some(encoded) = encode(notice) {
            if loud {
                self.publish(&Topic::Room(id), &encoded, None);
            } else if self.peers.contains_key(key) {
                self.send_user(key, [encoded]);
            }
        }
        if let Some(conn_id) = self.peers.get(key).map(|p| p.conn_id) {
            self.bus.unsubscribe(&Topic::Room(id), conn_id);
        }
        self.rooms.remove_member(id, key);
    }
}
