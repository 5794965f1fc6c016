//! Rooms (protocol 5): the rooms we are in, kept from the server's room messages, the events
//! those messages make, and the user's room commands. Room commands are not answered in the
//! order of the user's lines: the server answers them with room events, or a non-fatal
//! `RoomError`, whenever it does.

use std::collections::{BTreeMap, HashMap, HashSet};

use mm_common::protocol::{
    is_lobby, nick_key, room_key, validate_room, ClientMsg, ErrorCode, Member, MemberChange, Modes,
    Role, RoomSummary, ServerMsg, MAX_REASON_LEN, MAX_TOPIC_LEN, ROOMS_PER_FRAME,
};

use super::event::{RoomEvent, RoomInfo};
use super::lines::Answer;
use super::{ChatLine, Core, Event, LineId, SendError};

/// Most rooms (besides the lobby) the client keeps track of; `Entered` beyond it is ignored
/// (far above what a server lets one user join).
pub const MAX_ROOMS: usize = 512;

/// Most members of one room the client keeps (a `/names` list, the member pane); further pages
/// are not kept and the list is marked incomplete.
pub const MAX_NAMES: usize = 10_000;

/// Most room questions (`/names`, `/topic #room`, what a room command was) remembered while
/// waiting for their answers.
const MAX_ASKED: usize = 64;

/// The room state of one connection.
#[derive(Debug, Default)]
pub(super) struct Rooms {
    /// The rooms we are in, by [`room_key`].
    joined: BTreeMap<String, RoomInfo>,
    /// Member lists being put together, by room key.
    names: HashMap<String, (Vec<Member>, bool)>,
    /// Rooms whose member list we asked for (or just entered: one page follows a join).
    names_asked: HashSet<String>,
    /// Rooms just entered: the next `Names` page (if any comes before the history) is the join's.
    join_page: HashSet<String>,
    /// Rooms whose topic we asked for.
    topic_asked: HashSet<String>,
    /// Rooms entered whose `── new ──` marker is not shown yet, with their `seen` and whether
    /// a line we had been sent came before (the marker separates old lines from new ones).
    unmarked: HashMap<String, (u64, bool)>,
    /// The newest line shown of each room we are in (live or from its history): a `/join`
    /// of a room we are in already brings its history again, and what was shown is not shown
    /// twice.
    shown: HashMap<String, u64>,
    /// What we last asked of each room, for the words of its errors.
    doing: HashMap<String, &'static str>,
    /// `/list` pages asked for and not answered yet.
    list_asked: u32,
    /// The room of each of our room lines waiting for its answer.
    line_rooms: HashMap<LineId, String>,
    /// Where the next `/list` page starts.
    list_next: String,
}

/// `text` cut to `max` bytes (on a character boundary) and on one line: what could end or
/// reorder a line becomes a space.
pub(crate) fn one_line_max(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max.saturating_sub('…'.len_utf8());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    if text.chars().any(mm_common::text::is_forbidden) {
        text.chars()
            .map(|c| {
                if mm_common::text::is_forbidden(c) {
                    ' '
                } else {
                    c
                }
            })
            .collect()
    } else {
        text
    }
}

/// Nicks in [`nick_key`] order (ASCII case-insensitive), without allocating.
fn compare_nicks(a: &str, b: &str) -> std::cmp::Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

/// A nick from the server as a nick: 1 to 32 characters, on one line.
fn nick_ok(nick: &str) -> bool {
    super::login::is_nick_sized(nick) && !nick.chars().any(mm_common::text::is_forbidden)
}

/// What a room command asks, in words for its error (`cannot join #x: ...`).
fn doing_words(msg: &ClientMsg) -> Option<(&str, &'static str)> {
    Some(match msg {
        ClientMsg::Join { room } => (room, "join"),
        ClientMsg::Part { room, .. } => (room, "leave"),
        ClientMsg::Names { room } => (room, "list the members of"),
        ClientMsg::Topic {
            room,
            topic: Some(_),
        } => (room, "set the topic of"),
        ClientMsg::Topic { room, topic: None } => (room, "show the topic of"),
        ClientMsg::Invite { room, .. } => (room, "invite into"),
        ClientMsg::Kick { room, .. } => (room, "kick from"),
        ClientMsg::Member { room, change, .. } => (
            room,
            match change {
                MemberChange::Op => "make an operator in",
                MemberChange::Deop => "take operator status in",
                MemberChange::Voice => "give voice in",
                MemberChange::Devoice => "take voice in",
                MemberChange::Ban => "ban from",
                MemberChange::Unban => "unban from",
                MemberChange::Owner => "hand over",
            },
        ),
        ClientMsg::Mode { room, .. } => (room, "change the modes of"),
        _ => return None,
    })
}

impl Core {
    /// The rooms we are in (the lobby aside), sorted by name.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        self.rooms.joined.values().cloned().collect()
    }

    /// Where the next `/list` page starts (empty: no more pages, or none asked).
    pub fn list_next(&self) -> &str {
        &self.rooms.list_next
    }

    /// The room we are in by this name (any case), if any.
    pub fn room(&self, name: &str) -> Option<&RoomInfo> {
        self.rooms.joined.get(&room_key(name))
    }

    /// A line to a room we are in ([`mm_common::protocol::LOBBY`] for the public chat);
    /// `action`: a `/me` line. Answered like [`Core::public`].
    ///
    /// # Errors
    /// [`SendError::NotConnected`], [`SendError::Busy`].
    pub fn say(&mut self, room: &str, text: &str, action: bool) -> Result<LineId, SendError> {
        let line = self.new_line()?;
        let msg = ClientMsg::Public {
            room: room.to_owned(),
            text: text.to_owned(),
            action,
        };
        let line = self.queue_line(line, &msg, Answer::Text(line))?;
        if self.rooms.line_rooms.len() < super::MAX_UNANSWERED * 2 {
            self.rooms.line_rooms.insert(line, room_key(room));
        }
        Ok(line)
    }

    /// A room command (`Join`, `Part`, `List`, `Names`, `Topic`, `Invite`, `Kick`, `Member`,
    /// `Mode`, `Away`): answered with [`Event::Room`] events whenever the server answers.
    /// Other messages are queued as they are.
    ///
    /// # Errors
    /// [`SendError::NotConnected`], [`SendError::Busy`].
    pub fn room_command(&mut self, msg: &ClientMsg) -> Result<(), SendError> {
        self.control(msg)?;
        let rooms = &mut self.rooms;
        if let Some((room, words)) = doing_words(msg) {
            if rooms.doing.len() >= MAX_ASKED {
                rooms.doing.clear();
            }
            rooms.doing.insert(room_key(room), words);
        }
        match msg {
            ClientMsg::Names { room } if rooms.names_asked.len() < MAX_ASKED => {
                rooms.names_asked.insert(room_key(room));
            }
            ClientMsg::Topic { room, topic: None } if rooms.topic_asked.len() < MAX_ASKED => {
                rooms.topic_asked.insert(room_key(room));
            }
            ClientMsg::List { .. } => rooms.list_asked = rooms.list_asked.saturating_add(1),
            _ => {}
        }
        Ok(())
    }

    /// The room of our line `line`, now answered (lobby if unknown).
    pub(super) fn line_room(&mut self, line: LineId) -> String {
        self.rooms
            .line_rooms
            .remove(&line)
            .unwrap_or_else(|| mm_common::protocol::LOBBY.to_owned())
    }

    /// Whether `nick`'s lines are hidden (`/ignore`).
    pub(super) fn ignored(&self, nick: &str) -> bool {
        self.config.state.is_ignored(nick)
    }

    /// A room line, live (`history == false`) or from the room's history.
    pub(super) fn room_line(&mut self, line: ChatLine, history: bool) {
        if validate_room(&line.room).is_err() {
            return;
        }
        let key = room_key(&line.room);
        // After a reconnect the server sends the rooms' recent lines again: shown once. Only
        // remembered when a reconnect can follow (a connection that never reconnects, such as
        // the bench's, does not pay for it on every line).
        if self.config.reconnects
            && !self.config.state.received_public(&key, line.id, line.ts)
            && history
        {
            return;
        }
        if history
            && self
                .rooms
                .shown
                .get(&key)
                .is_some_and(|&newest| line.id <= newest)
        {
            return;
        }
        if self.rooms.joined.contains_key(&key) {
            let newest = self.rooms.shown.entry(key.clone()).or_insert(0);
            *newest = (*newest).max(line.id);
        }
        if history {
            if let Some((seen, had_old)) = self.rooms.unmarked.get_mut(&key) {
                if line.id <= *seen {
                    *had_old = true;
                } else {
                    let had_old = *had_old;
                    self.rooms.unmarked.remove(&key);
                    if had_old {
                        self.push(Event::Room(RoomEvent::NewLines {
                            room: line.room.clone(),
                        }));
                    }
                }
            }
        } else {
            // Live lines: the history is over.
            self.rooms.unmarked.remove(&key);
        }
        self.rooms.join_page.remove(&key);
        if self.ignored(&line.from) {
            return;
        }
        self.push(if history {
            Event::History(line)
        } else {
            Event::Public(line)
        });
    }

    /// Updates the member list kept for `key` with `f`, if one is kept.
    fn with_names(&mut self, key: &str, f: impl FnOnce(&mut Vec<Member>)) {
        if let Some(info) = self.rooms.joined.get_mut(key) {
            f(&mut info.names);
        }
    }

    fn is_me(&self, nick: &str) -> bool {
        nick_key(nick) == nick_key(&self.nick)
    }

    /// We are no longer in `key`.
    fn closed_room(&mut self, key: &str) {
        self.rooms.joined.remove(key);
        self.rooms.shown.remove(key);
        self.rooms.names.remove(key);
        self.rooms.unmarked.remove(key);
        self.rooms.join_page.remove(key);
    }

    /// A room message from the server (`Entered` … `Away`, and `Joined` in a room).
    pub(super) fn room_message(&mut self, msg: ServerMsg) {
        // Every room named must be a valid name: anything else is dropped.
        let room = match &msg {
            ServerMsg::Entered { room, .. }
            | ServerMsg::Names { room, .. }
            | ServerMsg::Parted { room, .. }
            | ServerMsg::Kicked { room, .. }
            | ServerMsg::Topic { room, .. }
            | ServerMsg::ModeChanged { room, .. }
            | ServerMsg::MemberChanged { room, .. }
            | ServerMsg::Invited { room, .. }
            | ServerMsg::Joined { room, .. } => Some(room.as_str()),
            _ => None,
        };
        if room.is_some_and(|r| validate_room(r).is_err()) {
            return;
        }
        // The lobby is no room one enters (everyone online is in it).
        if matches!(&msg, ServerMsg::Entered { room, .. } if is_lobby(room)) {
            return;
        }
        // And every nick a nick (`by` may be empty).
        let nicks_ok = match &msg {
            ServerMsg::Parted { nick, .. } | ServerMsg::Joined { nick, .. } => nick_ok(nick),
            ServerMsg::Kicked { nick, by, .. }
            | ServerMsg::MemberChanged { nick, by, .. }
            | ServerMsg::Invited { nick, by, .. } => {
                nick_ok(nick) && (by.is_empty() || nick_ok(by))
            }
            ServerMsg::ModeChanged { by, .. } => by.is_empty() || nick_ok(by),
            _ => true,
        };
        if !nicks_ok {
            return;
        }
        let key = room.map(room_key).unwrap_or_default();
        // What happens in a room is told to its members: about a room we are not in (a
        // confused or hostile server), nothing is shown. A topic may be one we asked for.
        let members_only = matches!(
            &msg,
            ServerMsg::Joined { .. }
                | ServerMsg::Parted { .. }
                | ServerMsg::Kicked { .. }
                | ServerMsg::ModeChanged { .. }
                | ServerMsg::MemberChanged { .. }
        ) || matches!(&msg, ServerMsg::Topic { .. } if !self.rooms.topic_asked.contains(&key));
        if members_only && !self.rooms.joined.contains_key(&key) {
            return;
        }
        let event = match msg {
            ServerMsg::Entered {
                room,
                topic,
                topic_by,
                modes,
                members,
                role,
                seen,
                created,
                ..
            } => {
                if !self.rooms.joined.contains_key(&key) && self.rooms.joined.len() >= MAX_ROOMS {
                    return;
                }
                let info = RoomInfo {
                    name: room,
                    topic: one_line_max(topic, MAX_TOPIC_LEN),
                    topic_by: if nick_ok(&topic_by) {
                        topic_by
                    } else {
                        String::new()
                    },
                    modes,
                    members,
                    role,
                    seen,
                    names: Vec::new(),
                };
                self.rooms.joined.insert(key.clone(), info.clone());
                self.rooms.unmarked.insert(key.clone(), (seen, false));
                self.rooms.join_page.insert(key.clone());
                self.rooms.names.remove(&key);
                let asked = self.rooms.doing.get(&key) == Some(&"join");
                if asked {
                    self.rooms.doing.remove(&key);
                }
                RoomEvent::Entered {
                    room: info,
                    created,
                    asked,
                }
            }
            ServerMsg::Names {
                room,
                members,
                last,
            } => {
                let join_page = self.rooms.join_page.remove(&key);
                if !join_page && !self.rooms.names_asked.contains(&key) {
                    return;
                }
                if members.iter().any(|m| !nick_ok(&m.nick)) {
                    return;
                }
                let (list, truncated) = self.rooms.names.entry(key.clone()).or_default();
                let room_left = MAX_NAMES.saturating_sub(list.len());
                *truncated |= members.len() > room_left;
                list.extend(members.into_iter().take(room_left));
                if !last && !join_page {
                    return;
                }
                let (members, truncated) = self.rooms.names.remove(&key).unwrap_or_default();
                self.rooms.names_asked.remove(&key);
                if let Some(info) = self.rooms.joined.get_mut(&key) {
                    info.names.clone_from(&members);
                }
                RoomEvent::Names {
                    room,
                    members,
                    complete: last && !truncated,
                }
            }
            ServerMsg::Rooms { rooms, next } => {
                if self.rooms.list_asked == 0 {
                    return;
                }
                self.rooms.list_asked -= 1;
                let rooms: Vec<RoomSummary> = rooms
                    .into_iter()
                    .take(ROOMS_PER_FRAME)
                    .filter(|r| validate_room(&r.name).is_ok())
                    .map(|r| RoomSummary {
                        topic: one_line_max(r.topic, MAX_TOPIC_LEN),
                        ..r
                    })
                    .collect();
                let next = if validate_room(&next).is_ok() {
                    next
                } else {
                    String::new()
                };
                self.rooms.list_next.clone_from(&next);
                RoomEvent::List { rooms, next }
            }
            ServerMsg::Joined { room, nick, .. } => {
                // Our own join is told by `Entered`.
                if !nick_ok(&nick) || self.is_me(&nick) {
                    return;
                }
                if let Some(info) = self.rooms.joined.get_mut(&key) {
                    // The list is kept sorted by nick key: a binary search without
                    // allocating, not a scan and a sort per join (a room filling up to 1,000
                    // members cost its members O(n² log n) otherwise).
                    if let Err(at) = info
                        .names
                        .binary_search_by(|m| compare_nicks(&m.nick, &nick))
                    {
                        info.members = info.members.saturating_add(1);
                        if info.names.len() < MAX_NAMES {
                            info.names.insert(
                                at,
                                Member {
                                    nick: nick.clone(),
                                    role: Role::Member,
                                    online: true,
                                    away: false,
                                },
                            );
                        }
                    }
                }
                RoomEvent::Joined { room, nick }
            }
            ServerMsg::Parted {
                room, nick, reason, ..
            } => {
                let me = self.is_me(&nick);
                self.left_room(&key, &nick, me);
                RoomEvent::Parted {
                    room,
                    nick,
                    reason: one_line_max(reason, MAX_REASON_LEN),
                    me,
                }
            }
            ServerMsg::Kicked {
                room,
                nick,
                by,
                reason,
                ..
            } => {
                let me = self.is_me(&nick);
                self.left_room(&key, &nick, me);
                RoomEvent::Kicked {
                    room,
                    nick,
                    by,
                    reason: one_line_max(reason, MAX_REASON_LEN),
                    me,
                }
            }
            ServerMsg::Topic {
                room, by, topic, ..
            } => {
                let topic = one_line_max(topic, MAX_TOPIC_LEN);
                let by = if nick_ok(&by) { by } else { String::new() };
                if let Some(info) = self.rooms.joined.get_mut(&key) {
                    info.topic.clone_from(&topic);
                    info.topic_by.clone_from(&by);
                }
                let changed = !self.rooms.topic_asked.remove(&key);
                RoomEvent::Topic {
                    room,
                    by,
                    topic,
                    changed,
                }
            }
            ServerMsg::ModeChanged {
                room, by, mode, on, ..
            } => {
                if let Some(info) = self.rooms.joined.get_mut(&key) {
                    info.modes.set(mode, on);
                }
                RoomEvent::Mode { room, by, mode, on }
            }
            ServerMsg::MemberChanged {
                room,
                by,
                nick,
                change,
                ..
            } => {
                let me = self.is_me(&nick);
                let role = |old: Role| match change {
                    MemberChange::Op => Role::Op,
                    MemberChange::Owner => Role::Owner,
                    MemberChange::Deop if old == Role::Op => Role::Member,
                    MemberChange::Voice if old < Role::Voiced => Role::Voiced,
                    MemberChange::Devoice if old == Role::Voiced => Role::Member,
                    _ => old,
                };
                if let Some(info) = self.rooms.joined.get_mut(&key) {
                    if me {
                        info.role = role(info.role);
                    } else if change == MemberChange::Owner && info.role == Role::Owner {
                        info.role = Role::Op; // the previous owner stays an operator
                    }
                }
                if change == MemberChange::Owner {
                    let k = nick_key(&nick);
                    self.with_names(&key, |names| {
                        for m in names.iter_mut() {
                            if m.role == Role::Owner && nick_key(&m.nick) != k {
                                m.role = Role::Op;
                            }
                        }
                    });
                }
                if change == MemberChange::Ban {
                    let k = nick_key(&nick);
                    self.with_names(&key, |names| names.retain(|m| nick_key(&m.nick) != k));
                } else {
                    let k = nick_key(&nick);
                    self.with_names(&key, |names| {
                        for m in names.iter_mut().filter(|m| nick_key(&m.nick) == k) {
                            m.role = role(m.role);
                        }
                    });
                }
                RoomEvent::Member {
                    room,
                    by,
                    nick,
                    change,
                }
            }
            ServerMsg::Invited { room, by, nick, .. } => {
                let me = self.is_me(&nick);
                if me && self.ignored(&by) {
                    return; // /ignore hides an ignored user's invitations too
                }
                RoomEvent::Invited { room, by, nick, me }
            }
            ServerMsg::RoomError { room, code, detail } => {
                let room = one_line_max(room, mm_common::protocol::MAX_ROOM_LEN + 8);
                let k = room_key(&room);
                let doing = self.rooms.doing.remove(&k);
                if code == ErrorCode::NOT_IN_ROOM || code == ErrorCode::NO_SUCH_ROOM {
                    self.rooms.names_asked.remove(&k);
                    self.rooms.topic_asked.remove(&k);
                }
                RoomEvent::Error {
                    room,
                    doing,
                    code,
                    detail: one_line_max(detail, mm_common::protocol::MAX_DETAIL_LEN),
                }
            }
            ServerMsg::Away { nick, message } => {
                if !nick_ok(&nick) {
                    return;
                }
                let me = self.is_me(&nick);
                RoomEvent::Away {
                    nick,
                    message: one_line_max(message, MAX_REASON_LEN),
                    me,
                }
            }
            _ => return,
        };
        self.push(Event::Room(event));
    }

    /// `nick` left the room `key` (parted, kicked); `me`: we did.
    fn left_room(&mut self, key: &str, nick: &str, me: bool) {
        if me {
            return self.closed_room(key);
        }
        let k = nick_key(nick);
        if let Some(info) = self.rooms.joined.get_mut(key) {
            info.members = info.members.saturating_sub(1);
            info.names.retain(|m| nick_key(&m.nick) != k);
        }
    }
}

/// The modes and role shown for a room: `+imt`, `you are an operator`...
pub fn role_words(role: Role) -> &'static str {
    match role {
        Role::Owner => "you are the owner",
        Role::Op => "you are an operator",
        Role::Voiced => "you have voice",
        Role::Member => "you are a member",
    }
}

/// The modes that are on, in words (`invite-only, moderated`), or empty.
pub fn modes_words(modes: Modes) -> String {
    mm_common::protocol::RoomMode::ALL
        .iter()
        .filter(|m| modes.get(**m))
        .map(|m| match m {
            mm_common::protocol::RoomMode::InviteOnly => "invite-only",
            mm_common::protocol::RoomMode::TopicOps => "topic by operators",
            mm_common::protocol::RoomMode::Moderated => "moderated",
        })
        .collect::<Vec<_>>()
        .join(", ")
}
