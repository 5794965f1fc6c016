//! One room (IRC's channel; Ergo's `channel.go`): its name, topic, modes, members with their
//! standing, bans, invitations and recent lines — and the room table that finds rooms by id,
//! by name and by look-alike name, and each user's rooms (Ergo's `channelmanager.go`).
//!
//! Pure data under the hub's lock: no I/O, no clock (times come in), no encoding beyond the
//! messages a room answers with. The hub decides who may do what and publishes the notices
//! (`rooms`); the store keeps what persists (`RoomChange`).

use std::collections::{BTreeMap, HashMap, HashSet};

use mm_common::confusable::skeleton;
use mm_common::protocol::{room_key, Member as NamesEntry, Modes, Role, RoomSummary, ServerMsg};

use super::history::History;
use super::topic::RoomId;
use crate::store::{Line, MemberRecord, RoomRecord};

/// A member's standing and bookkeeping.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// The nick as spelled when it joined (or last logged in).
    pub nick: String,
    /// Its standing.
    pub role: Role,
    /// The newest room line it had been sent when it last left or logged out.
    pub seen: u64,
}

/// Where a room's recent lines are.
#[derive(Debug)]
pub(crate) enum RoomHistory {
    /// In memory.
    Cached(History),
    /// Asked of the store (`Store::room_history`); the lines published since the question wait
    /// here with their ids (the newest `history_len`), to follow the store's answer — without
    /// those it already holds (an answer to a later question, after one that failed, holds
    /// some of them).
    Loading(std::collections::VecDeque<(u64, bytes::Bytes)>),
    /// Only in the store: ask it.
    Evicted,
}

impl RoomHistory {
    /// The lines in memory, if all of them are.
    pub fn cached(&self) -> Option<&History> {
        match self {
            RoomHistory::Cached(h) => Some(h),
            _ => None,
        }
    }
}

/// One room.
#[derive(Debug)]
pub(crate) struct Room {
    pub id: RoomId,
    /// As spelled at creation.
    pub name: String,
    pub topic: String,
    pub topic_by: String,
    pub topic_ts: u64,
    pub modes: Modes,
    pub created_ms: u64,
    /// Last time it had a member join or a line (ms since the Unix epoch).
    pub active_ms: u64,
    /// The last activity time handed to the store (it is told at most hourly).
    pub stored_active_ms: u64,
    /// By nick key, sorted: a page of members in name order costs the page, not a sort of
    /// the whole room (a join into a room of 5,000 sends its first 100).
    pub members: BTreeMap<String, Member>,
    /// Banned nick keys.
    pub bans: HashSet<String>,
    /// Invited nick keys, until they join.
    pub invites: HashSet<String>,
    /// Its newest lines, encoded, if in memory (`RoomTable` bounds how many lines all rooms
    /// keep in memory together).
    pub history: RoomHistory,
    /// The id of its newest line (0: none).
    pub last_line: u64,
}

impl Room {
    /// A new room with its creator as owner.
    pub fn new(
        id: RoomId,
        name: &str,
        owner_key: &str,
        owner: &str,
        now_ms: u64,
        history_len: usize,
    ) -> Room {
        let mut members = BTreeMap::new();
        members.insert(
            owner_key.to_owned(),
            Member {
                nick: owner.to_owned(),
                role: Role::Owner,
                seen: 0,
            },
        );
        Room {
            id,
            name: name.to_owned(),
            topic: String::new(),
            topic_by: String::new(),
            topic_ts: 0,
            modes: Modes::default(),
            created_ms: now_ms,
            active_ms: now_ms,
            stored_active_ms: now_ms,
            members,
            bans: HashSet::new(),
            invites: HashSet::new(),
            history: RoomHistory::Cached(History::from_lines(Vec::new(), history_len, name)),
            last_line: 0,
        }
    }

    /// The room the store kept, with its newest `lines` (`None`: not kept in memory).
    pub fn from_record(
        record: RoomRecord,
        lines: Option<Vec<Line>>,
        last_line: u64,
        history_len: usize,
    ) -> Room {
        let history = match lines {
            Some(lines) => {
                RoomHistory::Cached(History::from_lines(lines, history_len, &record.name))
            }
            None => RoomHistory::Evicted,
        };
        Room {
            id: record.id,
            name: record.name,
            topic: record.topic,
            topic_by: record.topic_by,
            topic_ts: record.topic_ts,
            modes: record.modes,
            created_ms: record.created_ms,
            active_ms: record.active_ms,
            stored_active_ms: record.active_ms,
            members: record
                .members
                .into_iter()
                .map(|m| {
                    (
                        m.key,
                        Member {
                            nick: m.nick,
                            role: m.role,
                            seen: m.seen,
                        },
                    )
                })
                .collect(),
            bans: record.bans.into_iter().collect(),
            invites: record.invites.into_iter().collect(),
            history,
            last_line,
        }
    }

    /// What the store keeps of it.
    pub fn record(&self) -> RoomRecord {
        RoomRecord {
            id: self.id,
            name: self.name.clone(),
            topic: self.topic.clone(),
            topic_by: self.topic_by.clone(),
            topic_ts: self.topic_ts,
            modes: self.modes,
            created_ms: self.created_ms,
            active_ms: self.active_ms,
            members: self
                .members
                .iter()
                .map(|(key, m)| MemberRecord {
                    key: key.clone(),
                    nick: m.nick.clone(),
                    role: m.role,
                    seen: m.seen,
                })
                .collect(),
            bans: self.bans.iter().cloned().collect(),
            invites: self.invites.iter().cloned().collect(),
        }
    }

    /// The standing of the user `key`, if a member.
    pub fn role(&self, key: &str) -> Option<Role> {
        self.members.get(key).map(|m| m.role)
    }

    /// The `Entered` message for member `key`.
    pub fn entered(&self, key: &str, created: bool) -> ServerMsg {
        let member = self.members.get(key);
        ServerMsg::Entered {
            room: self.name.clone(),
            topic: self.topic.clone(),
            topic_by: self.topic_by.clone(),
            topic_ts: self.topic_ts,
            modes: self.modes,
            members: u32::try_from(self.members.len()).unwrap_or(u32::MAX),
            role: member.map_or(Role::Member, |m| m.role),
            seen: member.map_or(0, |m| m.seen),
            created,
        }
    }

    /// Its line in a room list.
    pub fn summary(&self) -> RoomSummary {
        RoomSummary {
            name: self.name.clone(),
            members: u32::try_from(self.members.len()).unwrap_or(u32::MAX),
            topic: self.topic.clone(),
        }
    }

    /// Members in name order, in pages of `per_page` (at most `pages` of them), each marked
    /// online and away by `status` (nick key → (online, away)). Returns the `Names` messages;
    /// the last has `last == true` when it holds the last member.
    pub fn names(
        &self,
        per_page: usize,
        pages: usize,
        status: impl Fn(&str) -> (bool, bool),
    ) -> Vec<ServerMsg> {
        let per_page = per_page.max(1);
        let mut out = Vec::new();
        let mut page = Vec::with_capacity(per_page.min(self.members.len()));
        let mut iter = self.members.iter().peekable();
        while let Some((key, m)) = iter.next() {
            let (online, away) = status(key);
            page.push(NamesEntry {
                nick: m.nick.clone(),
                role: m.role,
                online,
                away,
            });
            if page.len() == per_page || iter.peek().is_none() {
                let last = iter.peek().is_none();
                out.push(ServerMsg::Names {
                    room: self.name.clone(),
                    members: std::mem::take(&mut page),
                    last,
                });
                if out.len() >= pages {
                    break;
                }
            }
        }
        if out.is_empty() {
            out.push(ServerMsg::Names {
                room: self.name.clone(),
                members: Vec::new(),
                last: true,
            });
        }
        out
    }
}

/// Every room but the lobby.
#[derive(Debug, Default)]
pub(crate) struct RoomTable {
    rooms: HashMap<RoomId, Room>,
    /// Room key → id, sorted (room lists page through it in name order).
    by_key: BTreeMap<String, RoomId>,
    /// Skeleton of the name → id: a new room may not look like an existing one.
    by_skeleton: HashMap<String, RoomId>,
    /// User nick key → the rooms it is a member of.
    of_user: HashMap<String, Vec<RoomId>>,
    /// The highest room id ever given.
    last_id: u64,
    /// Lines of history in memory, all rooms together (`Cached` ones).
    cached_lines: usize,
    /// Room creations per user nick key: (tokens, at ms).
    creations: HashMap<String, (f64, u64)>,
}

/// Most users whose recent room creations are remembered; beyond it, the table forgets those
/// whose allowance has refilled.
const CREATIONS_TRACKED: usize = 10_000;

impl RoomTable {
    /// The rooms the store kept, with their histories: in memory for the most recently
    /// active rooms, up to `cache_lines` lines in all; the others' stay in the store until
    /// asked for.
    pub fn load(
        mut rooms: Vec<RoomRecord>,
        histories: Vec<(RoomId, Vec<Line>)>,
        last_id: u64,
        history_len: usize,
        cache_lines: usize,
    ) -> RoomTable {
        let mut histories: HashMap<RoomId, Vec<Line>> = histories.into_iter().collect();
        let mut table = RoomTable {
            last_id: last_id.max(RoomId::LOBBY.0),
            ..RoomTable::default()
        };
        rooms.sort_by_key(|r| std::cmp::Reverse(r.active_ms));
        for record in rooms {
            let lines = histories.remove(&record.id).unwrap_or_default();
            let last_line = lines.last().map_or(0, |l| l.id);
            let kept = lines.len().min(history_len);
            let lines = if table.cached_lines + kept <= cache_lines {
                table.cached_lines += kept;
                Some(lines)
            } else {
                None
            };
            let room = Room::from_record(record, lines, last_line, history_len);
            table.last_id = table.last_id.max(room.id.0);
            table.insert(room);
        }
        table
    }

    fn insert(&mut self, room: Room) {
        let key = room_key(&room.name);
        self.by_skeleton.insert(name_skeleton(&room.name), room.id);
        self.by_key.insert(key, room.id);
        for user in room.members.keys() {
            self.of_user.entry(user.clone()).or_default().push(room.id);
        }
        self.rooms.insert(room.id, room);
    }

    /// How many rooms.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// The next room id (never given before).
    pub fn next_id(&mut self) -> RoomId {
        self.last_id += 1;
        RoomId(self.last_id)
    }

    /// Lines of history all rooms hold in memory together.
    pub fn cached_lines(&self) -> usize {
        self.cached_lines
    }

    /// Adds the encoded line `line` (message id `line_id`) to room `id`'s history, wherever it
    /// is kept (`history_len` lines at most).
    pub fn push_line(&mut self, id: RoomId, line_id: u64, line: bytes::Bytes, history_len: usize) {
        let Some(room) = self.rooms.get_mut(&id) else {
            return;
        };
        match &mut room.history {
            RoomHistory::Cached(h) => {
                let before = h.len();
                h.push(line);
                self.cached_lines = self.cached_lines + h.len() - before;
            }
            RoomHistory::Loading(pending) => {
                if history_len > 0 {
                    if pending.len() >= history_len {
                        pending.pop_front();
                    }
                    pending.push_back((line_id, line));
                }
            }
            RoomHistory::Evicted => {}
        }
    }

    /// Room `id`'s history as the store answered it (`lines`, oldest first), followed by what
    /// was published while it was asked: in memory from now on. Nothing changes if it is in
    /// memory already.
    pub fn fill(&mut self, id: RoomId, lines: Vec<Line>, history_len: usize) {
        let Some(room) = self.rooms.get_mut(&id) else {
            return;
        };
        let pending = match std::mem::replace(&mut room.history, RoomHistory::Evicted) {
            RoomHistory::Cached(h) => {
                room.history = RoomHistory::Cached(h);
                return;
            }
            RoomHistory::Loading(pending) => pending,
            RoomHistory::Evicted => std::collections::VecDeque::new(),
        };
        let newest = lines.last().map_or(0, |l| l.id);
        let mut history = History::from_lines(lines, history_len, &room.name);
        for (_, line) in pending.into_iter().filter(|(id, _)| *id > newest) {
            history.push(line);
        }
        self.cached_lines += history.len();
        room.history = RoomHistory::Cached(history);
    }

    /// Marks room `id`'s history as asked of the store (unless it is in memory or already
    /// asked for). Returns whether it is in memory.
    pub fn start_loading(&mut self, id: RoomId) -> bool {
        let Some(room) = self.rooms.get_mut(&id) else {
            return false;
        };
        match room.history {
            RoomHistory::Cached(_) => true,
            RoomHistory::Loading(_) => false,
            RoomHistory::Evicted => {
                room.history = RoomHistory::Loading(std::collections::VecDeque::new());
                false
            }
        }
    }

    /// Drops room `id`'s history from memory (the store keeps it).
    pub fn evict(&mut self, id: RoomId) {
        if let Some(room) = self.rooms.get_mut(&id) {
            if let RoomHistory::Cached(h) = &room.history {
                self.cached_lines = self.cached_lines.saturating_sub(h.len());
                room.history = RoomHistory::Evicted;
            }
        }
    }

    /// Adds a new room (its members are indexed).
    pub fn create(&mut self, room: Room) {
        self.insert(room);
    }

    /// The room named `name` (any case).
    pub fn id_of(&self, name: &str) -> Option<RoomId> {
        self.by_key.get(&room_key(name)).copied()
    }

    /// The name of an existing room that `name` looks like (same skeleton), if any.
    pub fn looks_like(&self, name: &str) -> Option<&str> {
        let id = self.by_skeleton.get(&name_skeleton(name))?;
        self.rooms.get(id).map(|r| r.name.as_str())
    }

    pub fn get(&self, id: RoomId) -> Option<&Room> {
        self.rooms.get(&id)
    }

    pub fn get_mut(&mut self, id: RoomId) -> Option<&mut Room> {
        self.rooms.get_mut(&id)
    }

    /// The rooms the user `key` is a member of.
    pub fn of_user(&self, key: &str) -> &[RoomId] {
        self.of_user.get(key).map_or(&[], Vec::as_slice)
    }

    /// Adds (or updates) member `key` of room `id`.
    pub fn add_member(&mut self, id: RoomId, key: &str, member: Member) {
        let Some(room) = self.rooms.get_mut(&id) else {
            return;
        };
        room.invites.remove(key);
        if room.members.insert(key.to_owned(), member).is_none() {
            self.of_user.entry(key.to_owned()).or_default().push(id);
        }
    }

    /// Removes member `key` from room `id`; whether it was one.
    pub fn remove_member(&mut self, id: RoomId, key: &str) -> bool {
        let Some(room) = self.rooms.get_mut(&id) else {
            return false;
        };
        if room.members.remove(key).is_none() {
            return false;
        }
        if let Some(rooms) = self.of_user.get_mut(key) {
            rooms.retain(|r| *r != id);
            if rooms.is_empty() {
                self.of_user.remove(key);
            }
        }
        true
    }

    /// Deletes room `id`; returns it.
    pub fn delete(&mut self, id: RoomId) -> Option<Room> {
        let room = self.rooms.remove(&id)?;
        self.by_key.remove(&room_key(&room.name));
        let sk = name_skeleton(&room.name);
        if self.by_skeleton.get(&sk) == Some(&id) {
            self.by_skeleton.remove(&sk);
        }
        for user in room.members.keys() {
            if let Some(rooms) = self.of_user.get_mut(user) {
                rooms.retain(|r| *r != id);
                if rooms.is_empty() {
                    self.of_user.remove(user);
                }
            }
        }
        Some(room)
    }

    /// Rooms in name order after `after` (a room key; empty for the start) that `visible`
    /// admits, at most `n`; and the key to continue after, if more may follow.
    pub fn page(
        &self,
        after: &str,
        n: usize,
        visible: impl Fn(&Room) -> bool,
    ) -> (Vec<RoomSummary>, String) {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = if after.is_empty() {
            Unbounded
        } else {
            Excluded(room_key(after))
        };
        let mut out = Vec::new();
        let mut next = String::new();
        for id in self.by_key.range((start, Unbounded)).map(|(_, id)| id) {
            let Some(room) = self.rooms.get(id) else {
                continue;
            };
            if !visible(room) {
                continue;
            }
            if out.len() == n {
                next = out
                    .last()
                    .map_or_else(String::new, |s: &RoomSummary| room_key(&s.name));
                break;
            }
            out.push(room.summary());
        }
        (out, next)
    }

    /// Gives back one room creation [`RoomTable::take_creation`] took from user `key` (a join
    /// that, once a cluster's stream ordered it, did not create the room).
    pub fn give_back_creation(&mut self, key: &str, burst: u32) {
        if let Some((tokens, _)) = self.creations.get_mut(key) {
            *tokens = (*tokens + 1.0).min(f64::from(burst.max(1)));
        }
    }

    /// Takes one room creation from user `key`'s allowance (`burst` at once, refilled over
    /// `period_ms`) at `now_ms`; `Err` with the ms until one is available.
    pub fn take_creation(
        &mut self,
        key: &str,
        burst: u32,
        period_ms: u64,
        now_ms: u64,
    ) -> Result<(), u64> {
        let burst = f64::from(burst.max(1));
        let per_ms = burst / period_ms.max(1) as f64;
        if self.creations.len() >= CREATIONS_TRACKED && !self.creations.contains_key(key) {
            // Forget those whose allowance has refilled; if none has, the oldest.
            self.creations.retain(|_, (tokens, at)| {
                *tokens + now_ms.saturating_sub(*at) as f64 * per_ms < burst
            });
            if self.creations.len() >= CREATIONS_TRACKED {
                if let Some(oldest) = self
                    .creations
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
                {
                    self.creations.remove(&oldest);
                }
            }
        }
        let (tokens, at) = self
            .creations
            .entry(key.to_owned())
            .or_insert((burst, now_ms));
        *tokens = (*tokens + now_ms.saturating_sub(*at) as f64 * per_ms).min(burst);
        *at = now_ms;
        if *tokens >= 1.0 - 1e-6 {
            *tokens = (*tokens - 1.0).max(0.0);
            Ok(())
        } else {
            Err(((1.0 - *tokens) / per_ms).ceil() as u64)
        }
    }

    /// The rooms where the user `key` is invited or banned: (room, invited, banned). A scan of
    /// every room: only a registration asks (rate-limited).
    pub fn marks_of(&self, key: &str) -> Vec<(RoomId, bool, bool)> {
        self.rooms
            .values()
            .filter_map(|r| {
                let (i, b) = (r.invites.contains(key), r.bans.contains(key));
                (i || b).then_some((r.id, i, b))
            })
            .collect()
    }

    /// Ids of rooms without members last active before `cutoff_ms`, at most `limit`.
    pub fn expired(&self, cutoff_ms: u64, limit: usize) -> Vec<RoomId> {
        self.rooms
            .values()
            .filter(|r| r.members.is_empty() && r.active_ms < cutoff_ms)
            .map(|r| r.id)
            .take(limit)
            .collect()
    }
}

/// The look-alike form of a room name: the skeleton of what follows the `#`.
fn name_skeleton(name: &str) -> String {
    skeleton(name.trim_start_matches('#'))
}
