//! The terminal UI's rooms: what it knows of the rooms we are in (kept in step with the room
//! events), and their tabs, opened when we enter a room and closed when we leave it.

use mm_common::protocol::{nick_key, room_key};

use super::{App, Tab, TabKind, MAX_TABS};
use crate::{RoomEvent, RoomInfo};

impl App {
    /// The room shown, if the tab shown is a room's (not the lobby's).
    pub fn current_room(&self) -> Option<&str> {
        self.current().room()
    }

    /// The index of room `room`'s tab, if open.
    pub fn room_tab(&self, room: &str) -> Option<usize> {
        let key = room_key(room);
        self.tabs
            .iter()
            .position(|t| t.room().is_some_and(|r| room_key(r) == key))
    }

    /// What we know of the room `room` (any case).
    pub fn room_info(&self, room: &str) -> Option<&RoomInfo> {
        self.rooms.get(&room_key(room))
    }

    /// Keeps the state of the rooms in step with a room event: their tabs open when we enter
    /// and close when we leave or are kicked (the lobby tab says so).
    pub(super) fn on_room_event(&mut self, event: &RoomEvent) {
        match event {
            RoomEvent::Entered { room, asked, .. } => {
                let key = room_key(&room.name);
                if self.rooms.contains_key(&key) || self.rooms.len() < crate::core::MAX_ROOMS {
                    self.rooms.insert(key, room.clone());
                }
                if self.room_tab(&room.name).is_none() && self.tabs.len() < MAX_TABS {
                    self.tabs
                        .push(Tab::new(TabKind::Channel(room.name.clone())));
                }
                // Our own /join brings its room forward (so that a /close right after leaves
                // that room, not the one we were in); the server's entries at login do not.
                if *asked {
                    if let Some(i) = self.room_tab(&room.name) {
                        self.active = i;
                    }
                }
            }
            RoomEvent::Parted { room, me: true, .. } | RoomEvent::Kicked { room, me: true, .. } => {
                self.rooms.remove(&room_key(room));
                if let Some(i) = self.room_tab(room) {
                    self.tabs.remove(i);
                    if self.active >= i && self.active > 0 {
                        self.active -= 1;
                    }
                }
            }
            RoomEvent::Parted { room, nick, .. } | RoomEvent::Kicked { room, nick, .. } => {
                if let Some(info) = self.rooms.get_mut(&room_key(room)) {
                    let k = nick_key(nick);
                    info.members = info.members.saturating_sub(1);
                    info.names.retain(|m| nick_key(&m.nick) != k);
                }
            }
            RoomEvent::Joined { room, nick } => {
                if let Some(info) = self.rooms.get_mut(&room_key(room)) {
                    let k = nick_key(nick);
                    if !info.names.iter().any(|m| nick_key(&m.nick) == k) {
                        info.members = info.members.saturating_add(1);
                        if info.names.len() < crate::core::MAX_NAMES {
                            info.names.push(mm_common::protocol::Member {
                                nick: nick.clone(),
                                role: mm_common::protocol::Role::Member,
                                online: true,
                                away: false,
                            });
                            info.names.sort_by_key(|m| nick_key(&m.nick));
                        }
                    }
                }
            }
            RoomEvent::Topic {
                room, by, topic, ..
            } => {
                if let Some(info) = self.rooms.get_mut(&room_key(room)) {
                    info.topic.clone_from(topic);
                    info.topic_by.clone_from(by);
                }
            }
            RoomEvent::Mode { room, mode, on, .. } => {
                if let Some(info) = self.rooms.get_mut(&room_key(room)) {
                    info.modes.set(*mode, *on);
                }
            }
            RoomEvent::Member {
                room, nick, change, ..
            } => {
                use mm_common::protocol::{MemberChange as C, Role};
                let me = nick_key(nick) == nick_key(&self.nick);
                let role = |old: Role| match change {
                    C::Op => Role::Op,
                    C::Deop if old == Role::Op => Role::Member,
                    C::Voice if old < Role::Voiced => Role::Voiced,
                    C::Devoice if old == Role::Voiced => Role::Member,
                    _ => old,
                };
                if let Some(info) = self.rooms.get_mut(&room_key(room)) {
                    if me {
                        info.role = role(info.role);
                    }
                    let k = nick_key(nick);
                    if *change == C::Ban {
                        info.names.retain(|m| nick_key(&m.nick) != k);
                    }
                    for m in info.names.iter_mut().filter(|m| nick_key(&m.nick) == k) {
                        m.role = role(m.role);
                    }
                }
            }
            RoomEvent::Names { room, members, .. } => {
                if let Some(info) = self.rooms.get_mut(&room_key(room)) {
                    info.names = members
                        .iter()
                        .take(crate::core::MAX_NAMES)
                        .cloned()
                        .collect();
                }
            }
            _ => {}
        }
    }
}
