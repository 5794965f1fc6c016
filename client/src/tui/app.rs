// About 600 lines: the state and its events; keys are in app_keys.rs, types in app_tabs.rs.
//! The interactive client's state: tabs (the room and one per private peer) with their
//! scrollback, unread counts, mention flags and security state; the input line; the connection
//! state. Pure: events, keys and statuses go in, effects come out, so it is tested without a
//! terminal (and rendered on ratatui's `TestBackend` in `ui`'s tests).

use crate::ChatLine;
use mm_common::e2e::{E2eEvent, Status};
use mm_common::protocol::{nick_key, room_key, ErrorCode};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use std::collections::BTreeMap;

use super::input::{Edit, Input};
use crate::command::{self, Command};
use crate::execute::Sink;
use crate::render::{self, Kind, Rendered, Target};
use crate::{Delivery, Event, LineId, RoomEvent, RoomInfo};

/// Lines kept per tab; older ones are dropped.
pub const SCROLLBACK: usize = 5000;

/// Most tabs: the room and this many minus one private conversations. A flood of private
/// messages from many nicks cannot make the client grow without bound.
pub const MAX_TABS: usize = 64;

/// Most lines one draft sends. The server takes a burst of 20 lines and then 5 a second (by
/// default): 100 lines take some 16 s to go, while they queue without holding up the UI (a
/// longer paste belongs in a file).
pub const MAX_DRAFT_LINES: usize = 100;

/// Lines scrolled per mouse-wheel step.
const WHEEL: usize = 3;

/// Commands offered by Tab completion.
pub const COMMANDS: [&str; 32] = [
    "/accept-key",
    "/away",
    "/ban",
    "/deop",
    "/devoice",
    "/ignore",
    "/invite",
    "/join",
    "/kick",
    "/list",
    "/me",
    "/mode",
    "/names",
    "/op",
    "/part",
    "/topic",
    "/unban",
    "/unignore",
    "/voice",
    "/close",
    "/help",
    "/insecure",
    "/msg",
    "/query",
    "/quit",
    "/reconnect",
    "/secure",
    "/verified",
    "/verify",
    "/who",
    "/next",
    "/prev",
];

/// The status bar's connection part after another login took the account over.
pub const REPLACED_STATUS: &str =
    "logged in from another client — /reconnect takes the account back";

/// Commands that act on one peer and, in a private tab, default to its peer.
const PEER_COMMANDS: [&str; 5] = [
    "/secure",
    "/insecure",
    "/verify",
    "/verified",
    "/accept-key",
];

pub use self::tabs::*;

/// The whole interactive state.
#[derive(Debug)]
pub struct App {
    /// `host:port`.
    pub server: String,
    /// Our nick.
    pub nick: String,
    /// Connection state.
    pub conn: Conn,
    /// The room first, then private tabs in the order they opened.
    pub tabs: Vec<Tab>,
    /// The tab shown.
    pub active: usize,
    /// The input line.
    pub input: Input,
    /// Online nicks (for the status bar and completion), sorted case-insensitively.
    pub online: Vec<String>,
    /// Whether `online` is the server's word: false from a disconnection until the next list of
    /// users (a welcome, `/who`), the status bar then showing no count.
    pub online_known: bool,
    /// Rows of the message area at the last draw (for PgUp/PgDn).
    pub page: usize,
    /// Columns of the message area at the last draw: scrolling counts rows of this width.
    pub width: usize,
    /// Public lines already shown, so history replayed after a reconnect is not shown twice.
    seen: SeenIds,
    /// The server said another login with our certificate took the account over: the
    /// connection that ends now is not to be re-established by itself (the two clients would
    /// knock each other off forever), only by `/reconnect`.
    pub replaced: bool,
    /// The server's limit on a chat text, in bytes (from its welcome).
    pub max_text_len: usize,
    /// Line breaks seen so far in the burst of keys being taken (a paste in a terminal without
    /// bracketed paste).
    burst_breaks: usize,
    /// A bracketed paste came in the current burst: an Enter in the same burst is part of what
    /// arrived at once (a paste holding `ESC [ 201 ~` then a line break ended the paste early
    /// and its Enter ran the draft as a command), never a key the user pressed.
    pasted_in_burst: bool,
    /// Line breaks the burst being taken put at the end of the draft, with nothing but blanks
    /// after them: a paste's last line break, which starts no line.
    burst_tail: usize,
    /// A burst of keys is being taken (its last key not yet), and whether the input was one line
    /// when it began.
    burst: Option<bool>,
    /// "The input is full" was said, and nothing was taken since.
    said_full: bool,
    /// Empty lines left out of the draft being sent, said once its lines are ([`App::sent`]).
    left_out: usize,
    /// The rooms we are in (the lobby aside), by [`room_key`]: at most
    /// [`crate::core::MAX_ROOMS`], each with at most [`crate::core::MAX_NAMES`] names.
    pub rooms: BTreeMap<String, RoomInfo>,
    /// The member pane is shown beside a room tab (F2).
    pub show_members: bool,
}

/// The rows `line` of `tab` takes at `width` columns, as drawn: its wrapped text and the unread
/// marker's row before it.
fn rows_of(tab: &Tab, line: &Line, me: &str, width: usize) -> usize {
    super::ui::line_rows(line, me, width) + usize::from(tab.marker == Some(line.seq))
}

/// The terminal UI as the command executor's sink ([`crate::execute`]): items go where
/// [`App::place`] puts them, at `now`; our own lines pending until the server answers.
pub struct Placing<'a> {
    /// The state.
    pub app: &'a mut App,
    /// The time, ms since the epoch.
    pub now: u64,
}

impl Sink for Placing<'_> {
    fn show(&mut self, item: Rendered) {
        self.app.place(item, self.now);
    }

    fn room(&self) -> Option<String> {
        self.app.current_room().map(str::to_owned)
    }

    fn own(&mut self, item: Rendered, line: LineId) {
        self.app
            .place_with(item, Some(Sending::Pending(line)), self.now);
    }
}

/// Ids of public lines already shown (theirs and ours), so that the history a server replays
/// after a reconnect shows only what was missed. Bounded: ids older than the window count as
/// seen.
#[derive(Debug, Default)]
struct SeenIds {
    ids: std::collections::BTreeSet<u64>,
    /// Every id at or below this was seen or is too old to matter.
    floor: u64,
}

impl SeenIds {
    const WINDOW: usize = 4096;

    fn insert(&mut self, id: u64) {
        self.ids.insert(id);
        while self.ids.len() > Self::WINDOW {
            if let Some(oldest) = self.ids.pop_first() {
                self.floor = self.floor.max(oldest);
            }
        }
    }

    fn contains(&self, id: u64) -> bool {
        id <= self.floor || self.ids.contains(&id)
    }
}

impl App {
    /// A new state for `nick` on `server`, with the room tab only.
    pub fn new(server: &str, nick: &str) -> App {
        App {
            server: server.to_owned(),
            nick: nick.to_owned(),
            conn: Conn::Connected,
            tabs: vec![Tab::new(TabKind::Room)],
            active: 0,
            input: Input::default(),
            online: Vec::new(),
            online_known: true,
            page: 20,
            width: 80,
            seen: SeenIds::default(),
            replaced: false,
            max_text_len: mm_common::protocol::MAX_TEXT_LEN,
            burst_breaks: 0,
            pasted_in_burst: false,
            burst_tail: 0,
            burst: None,
            said_full: false,
            left_out: 0,
            rooms: BTreeMap::new(),
            show_members: false,
        }
    }

    /// The tab shown.
    pub fn current(&self) -> &Tab {
        &self.tabs[self.active.min(self.tabs.len() - 1)]
    }

    /// The index of `peer`'s tab, opening it if needed (if there is room for another tab).
    pub fn tab_for(&mut self, peer: &str) -> Option<usize> {
        let key = nick_key(peer);
        if let Some(i) = self
            .tabs
            .iter()
            .position(|t| t.peer().is_some_and(|p| nick_key(p) == key))
        {
            return Some(i);
        }
        if self.tabs.len() >= MAX_TABS {
            return None;
        }
        self.tabs.push(Tab::new(TabKind::Private(peer.to_owned())));
        Some(self.tabs.len() - 1)
    }

    /// Shows tab `i`: its unread count and mention flag clear; the tab left forgets its marker
    /// (so the next time, the marker shows what arrived since this moment).
    pub fn switch_to(&mut self, i: usize) {
        if i >= self.tabs.len() || i == self.active {
            return;
        }
        if let Some(old) = self.tabs.get_mut(self.active) {
            old.marker = None;
        }
        self.active = i;
        let tab = &mut self.tabs[i];
        tab.unread = 0;
        tab.mention = false;
        tab.mentions = 0;
    }

    /// Adds a line to tab `i`, counting it as unread (and a mention if `mention`) when the tab
    /// is not shown.
    pub fn push(&mut self, i: usize, kind: LineKind, from: Option<&str>, text: &str, ts: u64) {
        self.push_line(i, kind, from, text, ts, None);
    }

    /// Adds a line; mm's own texts (notices, errors, safety numbers) of several lines become
    /// that many lines, so that a message like the server-certificate warning reads as lines
    /// wherever it comes from. Chat lines stay one line whatever they hold: a line break in
    /// one (which no server passes on) is shown as a replacement character, never as a line
    /// that could pass for someone else's.
    fn push_line(
        &mut self,
        i: usize,
        kind: LineKind,
        from: Option<&str>,
        text: &str,
        ts: u64,
        sending: Option<Sending>,
    ) {
        if matches!(kind, LineKind::Notice | LineKind::Error | LineKind::Safety) {
            let text = crate::explain::scrub(text);
            if text.contains('\n') {
                for part in text
                    .split('\n')
                    .map(|l| l.trim_end_matches('\r'))
                    .filter(|l| !l.trim().is_empty())
                {
                    self.push_one(i, kind, from, part, ts, None);
                }
                return;
            }
            self.push_one(i, kind, from, &text, ts, sending);
        } else {
            self.push_one(i, kind, from, text, ts, sending);
        }
    }

    fn push_one(
        &mut self,
        i: usize,
        kind: LineKind,
        from: Option<&str>,
        text: &str,
        ts: u64,
        sending: Option<Sending>,
    ) {
        let shown = i == self.active;
        let (nick, width) = (&self.nick, self.width);
        let Some(tab) = self.tabs.get_mut(i) else {
            return;
        };
        let seq = tab.next_seq;
        tab.next_seq += 1;
        if tab.lines.len() == SCROLLBACK {
            tab.lines.pop_front();
        }
        let line = Line {
            seq,
            ts,
            kind,
            from: from.map(str::to_owned),
            text: text.to_owned(),
            sending,
        };
        let counts = !matches!(kind, LineKind::Own | LineKind::OwnSecure { .. });
        if !shown && counts {
            tab.unread += 1;
            if tab.marker.is_none() {
                tab.marker = Some(seq);
            }
        }
        if tab.scroll > 0 {
            // Keep the view still while reading back: the new line's rows (and the unread
            // marker's) come below it.
            tab.scroll += rows_of(tab, &line, nick, width);
        }
        tab.lines.push_back(line);
    }

    fn mark_mention(&mut self, i: usize) {
        if i != self.active {
            if let Some(tab) = self.tabs.get_mut(i) {
                tab.mention = true;
                tab.mentions = tab.mentions.saturating_add(1);
            }
        }
    }

    /// A notice in the tab shown.
    pub fn notice(&mut self, text: &str, now: u64) {
        self.push(self.active, LineKind::Notice, None, text, now);
    }

    /// An error in the tab shown.
    pub fn error(&mut self, text: &str, now: u64) {
        self.push(self.active, LineKind::Error, None, text, now);
    }

    /// Updates the security state of `peer`'s tab (if open).
    pub fn set_status(&mut self, peer: &str, status: &Status) {
        let key = nick_key(peer);
        for tab in &mut self.tabs {
            if tab.peer().is_some_and(|p| nick_key(p) == key) {
                tab.security = Security::from(status);
            }
        }
    }

    /// Whether `text` mentions our nick as a word (case-insensitively).
    fn mentions_me(&self, text: &str) -> bool {
        let me = self.nick.to_ascii_lowercase();
        text.to_ascii_lowercase()
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .any(|w| w == me)
    }

    /// Takes an event from the connection: what it says ([`render::event`]) goes to its tabs
    /// ([`App::place`]) and the state follows it (who is online, how our lines went, mentions,
    /// the connection). Returns a notification for private lines and mentions in a tab that is
    /// not shown.
    pub fn on_event(&mut self, event: &Event, now: u64) -> Option<Notification> {
        match event {
            Event::Public(ChatLine { id, .. }) => self.seen.insert(*id),
            Event::History(ChatLine { id, .. }) => {
                // After a reconnect the server replays history we already have.
                if self.seen.contains(*id) {
                    return None;
                }
                self.seen.insert(*id);
            }
            Event::Queued { line, .. } => {
                self.set_sending(*line, Sending::Delivered);
            }
            Event::Sent { line, id, .. } => {
                self.set_sending(*line, Sending::Delivered);
                // Our own lines come back as history after a reconnect, too.
                self.seen.insert(*id);
            }
            Event::Joined { nick } => self.add_online(nick),
            Event::Room(e) => {
                self.on_room_event(e);
                // The member pane shows the list it asked for: not printed as well.
                if let RoomEvent::Names { room, .. } = e {
                    let shown = self
                        .current_room()
                        .is_some_and(|r| room_key(r) == room_key(room));
                    if self.show_members && shown {
                        return None;
                    }
                }
            }
            Event::Left { nick, .. } => {
                let key = nick_key(nick);
                self.online.retain(|n| nick_key(n) != key);
            }
            Event::Users(nicks) => self.set_online(nicks.clone()),
            Event::Error {
                code, fatal: true, ..
            } if *code == ErrorCode::REPLACED => {
                self.replaced = true;
                let text = format!(
                    "{} logged in from another client; this one is disconnected — /reconnect to take the account back",
                    self.nick
                );
                self.push(0, LineKind::Error, None, &text, now);
                if self.active != 0 {
                    self.error(&text, now);
                }
                return None;
            }
            Event::Error { line: Some(l), .. } => {
                // A refused line says so where it stands; an error about something else (or
                // a line scrolled away) is a line of its own.
                let why = render::event(event)
                    .into_iter()
                    .next()
                    .map(|item| item.text)
                    .unwrap_or_default();
                if self.set_sending(*l, Sending::Refused(why)) {
                    return None;
                }
            }
            Event::Secure(
                e @ (E2eEvent::Ended { unsent, .. } | E2eEvent::Failed { unsent, .. }),
            ) => {
                if let Some(why) = render::unsent_reason(e) {
                    self.refuse_unsent(unsent, &why);
                }
            }
            Event::Closed { undelivered, .. } => {
                for line in undelivered {
                    self.set_sending(*line, Sending::NotDelivered);
                }
            }
            Event::GaveUp { unsent, .. } => {
                for line in unsent {
                    self.set_sending(*line, Sending::NotDelivered);
                }
                if self.replaced {
                    // It said so already, with what to do.
                    return None;
                }
            }
            _ => {}
        }
        for item in render::event(event) {
            self.place(item, now);
        }
        match event {
            Event::Public(ChatLine {
                from, text, room, ..
            }) if self.mentions_me(text) => {
                let i = self.room_tab(room).unwrap_or(0);
                self.mark_mention(i);
                let place = if i == 0 { "#lobby" } else { room.as_str() };
                return (self.active != i).then(|| Notification {
                    title: format!("{from} in {place}"),
                    body: text.clone(),
                });
            }
            Event::Private(ChatLine { from, text, .. })
            | Event::Offline(ChatLine { from, text, .. }) => {
                let i = self.find_tab(from).unwrap_or(0);
                self.mark_mention(i);
                return (self.active != i).then(|| Notification {
                    title: format!("{from} (private)"),
                    body: text.clone(),
                });
            }
            Event::Secure(E2eEvent::Message { peer, .. }) => {
                let i = self.find_tab(peer).unwrap_or(0);
                self.mark_mention(i);
                return (self.active != i).then(|| Notification {
                    title: format!("{peer} (secure)"),
                    body: "new end-to-end encrypted message".into(),
                });
            }
            Event::Secure(E2eEvent::Failed { peer, .. }) => {
                let i = self.find_tab(peer).unwrap_or(0);
                self.mark_mention(i);
            }
            Event::Closed { error, undelivered } => {
                self.closed(error.as_deref(), undelivered.len(), now)
            }
            _ => {}
        }
        None
    }

    /// The connection ended, with `undelivered` of our lines without an answer.
    fn closed(&mut self, error: Option<&str>, undelivered: usize, now: u64) {
        if undelivered > 0 {
            let lines = if undelivered == 1 { "line" } else { "lines" };
            self.push(
                0,
                LineKind::Error,
                None,
                &format!("{undelivered} of your {lines} got no answer before the connection was lost and may not have been delivered (marked NOT DELIVERED); Up recalls them from the input history to send again"),
                now,
            );
        }
        // Who is online is unknown until the next connection says.
        self.online_known = false;
        self.conn = Conn::Offline(if self.replaced {
            REPLACED_STATUS.to_owned()
        } else {
            error.unwrap_or("connection closed").to_owned()
        });
        // Sessions outlive the connection (the status bar says they are paused until the
        // next one).
    }

    /// Puts an item where it belongs ([`Target`]): the room, a peer's tab (opened for it; the
    /// room when no more tabs fit), a peer's tab only if open ([`Target::PeerTab`]), or the tab
    /// shown. At its server time, else at `now`. A safety number becomes a block that is easy
    /// to read aloud: its title, then four groups of digits a row.
    pub fn place(&mut self, item: Rendered, now: u64) {
        self.place_with(item, None, now);
    }

    /// [`App::place`] for our own line, `sending` saying how far it got.
    fn place_with(&mut self, item: Rendered, sending: Option<Sending>, now: u64) {
        let i = match &item.target {
            Target::Room => 0,
            Target::InRoom(room) => self.room_tab(room).unwrap_or(0),
            Target::Peer(peer) => self.tab_for(peer).unwrap_or(0),
            Target::PeerTab(peer) => match self.find_tab(peer) {
                Some(i) => i,
                None => return,
            },
            Target::Here => self.active,
        };
        let ts = item.ts.unwrap_or(now);
        let kind = match item.kind {
            Kind::Public => LineKind::Public,
            Kind::Private => LineKind::Private,
            Kind::History => LineKind::History,
            Kind::Offline => LineKind::Offline,
            Kind::Secure => LineKind::Secure,
            Kind::OwnPublic | Kind::OwnPrivate => LineKind::Own,
            Kind::OwnSecure { queued } => LineKind::OwnSecure { queued },
            Kind::Notice | Kind::Ready | Kind::NewMarker => LineKind::Notice,
            Kind::Action | Kind::HistoryAction => LineKind::Action,
            Kind::Error | Kind::Alarm => LineKind::Error,
            Kind::SafetyNumber { number, .. } => {
                self.push(i, LineKind::Safety, None, &format!("{}:", item.text), ts);
                let groups: Vec<&str> = number.split_whitespace().collect();
                for row in groups.chunks(4) {
                    let row = format!("    {}", row.join("  "));
                    self.push(i, LineKind::Safety, None, &row, ts);
                }
                return;
            }
        };
        self.push_line(i, kind, item.from.as_deref(), &item.text, ts, sending);
    }

    fn find_tab(&self, nick: &str) -> Option<usize> {
        let key = nick_key(nick);
        self.tabs
            .iter()
            .position(|t| t.peer().is_some_and(|p| nick_key(p) == key))
    }

    /// The server's list of who is online (a welcome, an answer to `/who`).
    pub fn set_online(&mut self, mut nicks: Vec<String>) {
        nicks.sort_unstable_by_key(|n| nick_key(n));
        self.online = nicks;
        self.online_known = true;
    }

    /// Adds a nick to the sorted online list, which stays as bounded as the server's user
    /// list is (a hostile server could announce joins forever).
    fn add_online(&mut self, nick: &str) {
        let key = nick_key(nick);
        if let Err(at) = self.online.binary_search_by_key(&key, |n| nick_key(n)) {
            if self.online.len() < crate::core::MAX_LISTED_USERS {
                self.online.insert(at, nick.to_owned());
            }
        }
    }

    /// Shows our own line (after the runner handed it to the connection), pending until
    /// the server answers.
    pub fn own_public(&mut self, line: LineId, text: &str, now: u64) {
        let item = render::own_public(&self.nick, text);
        self.place_with(item, Some(Sending::Pending(line)), now);
    }

    /// Shows our own private line in `to`'s tab, as it went, pending until the server
    /// answers.
    pub fn own_private(
        &mut self,
        to: &str,
        text: &str,
        line: LineId,
        delivery: Delivery,
        now: u64,
    ) {
        let item = render::own_private(&self.nick, to, text, delivery);
        self.place_with(item, Some(Sending::Pending(line)), now);
    }

    /// Marks our pending lines with the tags `unsent` (the secure session's texts that never
    /// went) as refused, saying `why`.
    fn refuse_unsent(&mut self, unsent: &[u64], why: &str) {
        for &line in unsent {
            self.set_sending(LineId::from_tag(line), Sending::Refused(why.to_owned()));
        }
    }

    /// Records how our pending line `line` went; false if it is not shown (any more).
    fn set_sending(&mut self, line: LineId, to: Sending) -> bool {
        let pending = Some(Sending::Pending(line));
        for tab in &mut self.tabs {
            // Pending lines are recent: look from the end.
            if let Some(l) = tab.lines.iter_mut().rev().find(|l| l.sending == pending) {
                if let LineKind::OwnSecure { queued } = &mut l.kind {
                    *queued = false;
                }
                l.sending = Some(to);
                return true;
            }
        }
        false
    }

    /// Shows the safety number with `peer` as a block that is easy to read aloud, and how to
    /// compare it.
    pub fn safety_block(&mut self, peer: &str, number: &str, now: u64) {
        for item in render::safety_number(peer, number, false) {
            self.place(item, now);
        }
    }
}

#[path = "app_keys.rs"]
mod keys;
#[path = "app_rooms.rs"]
mod rooms;
#[path = "app_tabs.rs"]
mod tabs;

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
