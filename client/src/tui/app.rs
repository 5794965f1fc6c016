//! The interactive client's state: tabs (the room and one per private peer) with their
//! scrollback, unread counts, mention flags and security state; the input line; the connection
//! state. Pure: events, keys and statuses go in, effects come out, so it is tested without a
//! terminal (and rendered on ratatui's `TestBackend` in `ui`'s tests).

use std::collections::VecDeque;

use mm_common::e2e::{E2eEvent, Failure, Status, Trust};
use mm_common::identity::key_fingerprint;
use mm_common::protocol::{nick_key, ErrorCode};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};

use super::input::{Edit, Input};
use crate::command::{self, Command};
use crate::connection::{Delivery, Event, LineId};
use crate::execute::Sink;
use crate::render::{self, Kind, Rendered, Target};

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
pub const COMMANDS: [&str; 14] = [
    "/accept-key",
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

/// What a tab is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TabKind {
    /// The public room.
    Room,
    /// A private conversation with this nick.
    Private(String),
}

/// The end-to-end state of a private conversation, as shown in the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// No secure session: TLS to the server only, which can read the messages.
    Plain,
    /// A secure session is being set up.
    Starting,
    /// End-to-end encrypted with the key of this fingerprint.
    Secure {
        /// The peer's key fingerprint.
        fingerprint: String,
        /// Whether the user verified the safety number.
        verified: bool,
    },
    /// Secure wanted, no session now (a reconnect, the peer left...): nothing goes plain; the
    /// next line restarts the session (refused while the peer is offline).
    Interrupted {
        /// Why there is no session.
        reason: String,
        /// The peer is known to be offline.
        offline: bool,
    },
    /// The session failed; sending is blocked until the user acts.
    Failed {
        /// What happened.
        reason: String,
        /// The peer's key changed: possibly an attack.
        key_changed: bool,
    },
}

impl From<&Status> for Security {
    fn from(status: &Status) -> Security {
        match status {
            Status::Plain => Security::Plain,
            Status::Starting => Security::Starting,
            Status::Secure { key, trust } => Security::Secure {
                fingerprint: key_fingerprint(key),
                verified: *trust == Trust::Verified,
            },
            Status::Interrupted { reason, online } => Security::Interrupted {
                reason: reason.to_string(),
                offline: *online == Some(false),
            },
            Status::Failed(failure) => Security::Failed {
                reason: failure.to_string(),
                key_changed: matches!(failure, Failure::KeyChanged { .. }),
            },
            _ => Security::Failed {
                reason: "unknown state".into(),
                key_changed: false,
            },
        }
    }
}

/// How a line looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Someone's public line.
    Public,
    /// A public line from before we logged in.
    History,
    /// A private line (not end-to-end encrypted).
    Private,
    /// A private line sent to us while we were offline.
    Offline,
    /// An end-to-end encrypted line.
    Secure,
    /// Our own line (public, or private in plain).
    Own,
    /// Our own end-to-end encrypted line (`queued`: waiting for the session).
    OwnSecure {
        /// Still waiting for the session to be ready.
        queued: bool,
    },
    /// A notice (joins, session changes, answers to commands).
    Notice,
    /// An error or warning.
    Error,
    /// A line of a safety-number block.
    Safety,
}

/// How far one of our own lines got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sending {
    /// No answer from the server yet (or waiting for the secure session).
    Pending(LineId),
    /// The server accepted it (or stored it for an offline recipient).
    Delivered,
    /// It was not delivered, for this reason (a refusal, a session that failed).
    Refused(String),
    /// The connection ended before the server answered: maybe not delivered.
    NotDelivered,
}

/// One line of scrollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Increasing per tab; the unread marker points at one.
    pub seq: u64,
    /// When it was sent (server time for messages, local time for notices), ms since the epoch.
    pub ts: u64,
    /// How it looks.
    pub kind: LineKind,
    /// The sender, for chat lines.
    pub from: Option<String>,
    /// The text (as received: the renderer neutralises control characters).
    pub text: String,
    /// For our own chat lines: how far it got.
    pub sending: Option<Sending>,
}

/// A conversation.
#[derive(Debug)]
pub struct Tab {
    /// What it is.
    pub kind: TabKind,
    /// Scrollback, oldest first, at most [`SCROLLBACK`].
    pub lines: VecDeque<Line>,
    /// Lines that arrived while the tab was not shown.
    pub unread: usize,
    /// Whether one of them mentions us (or, for a private tab, any line at all).
    pub mention: bool,
    /// Rows scrolled back from the bottom, as drawn (long lines wrap to several rows; 0:
    /// following new lines). At most what shows the conversation's first row at the top.
    pub scroll: usize,
    /// The first line that arrived since the user last left the tab.
    pub marker: Option<u64>,
    /// For private tabs.
    pub security: Security,
    next_seq: u64,
}

impl Tab {
    fn new(kind: TabKind) -> Tab {
        Tab {
            kind,
            lines: VecDeque::new(),
            unread: 0,
            mention: false,
            scroll: 0,
            marker: None,
            security: Security::Plain,
            next_seq: 0,
        }
    }

    /// The tab's title (`#room` or the peer's nick).
    pub fn title(&self) -> &str {
        match &self.kind {
            TabKind::Room => "#room",
            TabKind::Private(peer) => peer,
        }
    }

    /// The peer of a private tab.
    pub fn peer(&self) -> Option<&str> {
        match &self.kind {
            TabKind::Room => None,
            TabKind::Private(peer) => Some(peer),
        }
    }
}

/// The connection, as shown in the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conn {
    /// Logged in.
    Connected,
    /// Lost; trying again.
    Reconnecting {
        /// Attempts so far.
        attempt: u32,
        /// Seconds until the next one (0: trying now).
        in_secs: u64,
        /// Why the last one failed, or why the connection was lost.
        reason: String,
    },
    /// Given up (or quitting).
    Offline(String),
}

/// What the runner must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing (the state changed, redraw).
    None,
    /// Carry out this command (already resolved against the current tab).
    Run(Command),
    /// Send these lines in order, one chat line each: a draft of several lines. If one is not
    /// sent, it and the ones after it go back into the input ([`App::unsent`]).
    RunAll(Vec<Command>),
    /// `/reconnect`: connect again now, even after being replaced by another login or giving
    /// up.
    Reconnect,
    /// Leave.
    Quit,
}

/// A desktop notification to raise (when enabled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Title (who).
    pub title: String,
    /// Body (what).
    pub body: String,
}

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
            Event::Public { id, .. } => self.seen.insert(*id),
            Event::History { id, .. } => {
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
                e @ (E2eEvent::Ended { unsent, .. }
                | E2eEvent::NotStarted { unsent, .. }
                | E2eEvent::Failed { unsent, .. }),
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
            _ => {}
        }
        for item in render::event(event) {
            self.place(item, now);
        }
        match event {
            Event::Public { from, text, .. } if self.mentions_me(text) => {
                self.mark_mention(0);
                return (self.active != 0).then(|| Notification {
                    title: format!("{from} in #room"),
                    body: text.clone(),
                });
            }
            Event::Private { from, text, .. } | Event::Offline { from, text, .. } => {
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
        // Sessions die with the connection, but a secure conversation stays secure: the status
        // bar says it is paused, and the next connection restarts it.
        for tab in &mut self.tabs {
            if matches!(tab.security, Security::Secure { .. } | Security::Starting) {
                tab.security = Security::Interrupted {
                    reason: "the connection to the server was lost".into(),
                    offline: false,
                };
            }
        }
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
            Kind::Notice | Kind::Ready => LineKind::Notice,
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
            if self.online.len() < crate::connection::MAX_LISTED_USERS {
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

    /// Takes a key.
    pub fn on_key(&mut self, key: KeyEvent, now: u64) -> Action {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char('c') if ctrl => return Action::Quit,
            KeyCode::Char('d') if ctrl && self.input.is_empty() => return Action::Quit,
            KeyCode::Char('n') if ctrl => self.cycle(true),
            KeyCode::Char('p') if ctrl => self.cycle(false),
            KeyCode::Char(c @ '1'..='9') if alt => {
                self.switch_to(usize::from(c as u8 - b'1'));
            }
            KeyCode::Char('a') if ctrl => self.input.edit(Edit::Home),
            KeyCode::Char('e') if ctrl => self.input.edit(Edit::End),
            KeyCode::Char('w') if ctrl => self.input.edit(Edit::DeleteWord),
            KeyCode::Char('u') if ctrl => self.input.edit(Edit::DeleteToStart),
            KeyCode::Char('k') if ctrl => self.input.edit(Edit::DeleteToEnd),
            KeyCode::Char('b') if alt => self.input.edit(Edit::WordLeft),
            KeyCode::Char('f') if alt => self.input.edit(Edit::WordRight),
            KeyCode::Char(_) if ctrl || alt => {}
            KeyCode::Char(c) => self.insert(Edit::Insert(c), now),
            KeyCode::Backspace => self.input.edit(Edit::Backspace),
            KeyCode::Delete => self.input.edit(Edit::Delete),
            KeyCode::Left if ctrl || alt => self.input.edit(Edit::WordLeft),
            KeyCode::Right if ctrl || alt => self.input.edit(Edit::WordRight),
            KeyCode::Left => self.input.edit(Edit::Left),
            KeyCode::Right => self.input.edit(Edit::Right),
            KeyCode::Home => self.input.edit(Edit::Home),
            KeyCode::End => self.input.edit(Edit::End),
            KeyCode::Up => self.input.edit(Edit::HistoryUp),
            KeyCode::Down => self.input.edit(Edit::HistoryDown),
            KeyCode::PageUp => self.scroll(self.page.saturating_sub(2).max(1) as isize),
            KeyCode::PageDown => self.scroll(-(self.page.saturating_sub(2).max(1) as isize)),
            KeyCode::Tab => {
                let mut nicks = self.online.clone();
                for tab in &self.tabs {
                    if let Some(p) = tab.peer() {
                        nicks.push(p.to_owned());
                    }
                }
                nicks.retain(|n| nick_key(n) != nick_key(&self.nick));
                nicks.sort_unstable_by_key(|n| nick_key(n));
                nicks.dedup_by_key(|n| nick_key(n));
                self.input.complete(&COMMANDS, &nicks);
            }
            // Alt+Enter (Shift+Enter where the terminal tells it apart): a new line in the draft.
            KeyCode::Enter if alt || key.modifiers.contains(KeyModifiers::SHIFT) => {
                self.insert(Edit::Newline, now);
            }
            KeyCode::Enter => return self.send_draft(now),
            _ => {}
        }
        Action::None
    }

    /// Takes a key that came in a burst with others (read at once: keys no hand types that
    /// fast), as a terminal without bracketed paste delivers a paste. `more` says whether more
    /// keys follow in the burst. A burst with Enter between keys is a paste of several lines:
    /// its Enters (the last one too) start new lines in the draft instead of sending, and its
    /// tabs become spaces instead of completing — as [`App::on_paste`] does, a last line break
    /// starting no line. The last key of a burst without line breaks is taken as typed (a fast
    /// `hi` + Enter over a slow link still sends; a last Tab still completes).
    pub fn on_burst_key(&mut self, key: KeyEvent, more: bool, now: u64) -> Action {
        let one_line = *self.burst.get_or_insert(self.input.rows() == 1);
        let plain = !key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        let pasted = more || self.burst_breaks > 0 || self.pasted_in_burst;
        let action = match key.code {
            KeyCode::Enter if plain && pasted => {
                self.burst_breaks += 1;
                self.burst_tail += 1;
                self.insert(Edit::Newline, now);
                Action::None
            }
            KeyCode::Tab if plain && pasted => {
                for _ in 0..command::TAB_SPACES {
                    self.insert(Edit::Insert(' '), now);
                }
                Action::None
            }
            code => {
                if code != KeyCode::Char(' ') {
                    self.burst_tail = 0;
                }
                self.on_key(key, now)
            }
        };
        if !more {
            self.burst = None;
            let tail = std::mem::take(&mut self.burst_tail);
            if std::mem::take(&mut self.burst_breaks) > 0 {
                self.input.trim_blank_tail(tail);
                if self.input.rows() > 1 {
                    self.say_pasted(one_line, now);
                }
            }
        }
        action
    }

    /// The input paused: what comes next is a new burst.
    pub fn end_burst(&mut self) {
        self.pasted_in_burst = false;
    }

    /// Takes a paste (bracketed paste: the terminal marks it as one): its lines stay lines —
    /// line breaks of every kind, `\r\n` included, start a new line in the draft — and its tabs
    /// become spaces; at the end of the input, a last line break starts no line. A paste of
    /// several lines is said, with what Enter will do. Nothing is sent before Enter, so a paste
    /// can be read and edited first; a paste that does not fit in the input is refused whole,
    /// and said so.
    pub fn on_paste(&mut self, text: &str, now: u64) {
        self.pasted_in_burst = true;
        let one_line = self.input.rows() == 1;
        match self.input.paste(text) {
            Ok(lines) if lines.rows() > 1 => self.say_pasted(one_line, now),
            Ok(_) => {}
            Err(e) => self.error(
                &format!(
                    "not pasted: the paste is {} characters and the input holds at most {} ({} in it now)",
                    e.pasted,
                    super::input::MAX_DRAFT,
                    e.held
                ),
                now,
            ),
        }
    }

    /// The notice for a paste that made a draft of several lines, counted as the input counts
    /// them ([`Input::lines`](super::input::Input::lines)): what Enter will do, or, over
    /// [`MAX_DRAFT_LINES`], that it will send nothing until the draft is short enough. Pasted
    /// onto a draft of one line, the draft's lines are the paste's (its first line goes on the
    /// line typed); onto a draft of several, the notice says the draft's.
    fn say_pasted(&mut self, onto_one_line: bool, now: u64) {
        use crate::display::count;
        let lines = self.input.lines();
        let filled = count(lines.filled, "line", "lines");
        let mut what = if onto_one_line {
            format!("pasted {filled}")
        } else {
            format!("pasted into the draft, which holds {filled}")
        };
        if lines.empty > 0 {
            what.push_str(&format!(
                " (and {}, left out)",
                count(lines.empty, "empty line", "empty lines")
            ));
        }
        if lines.filled > MAX_DRAFT_LINES {
            self.error(
                &format!(
                    "{what}: mm sends at most {MAX_DRAFT_LINES} lines at once, so Enter sends nothing until the draft holds {MAX_DRAFT_LINES} or fewer (edit it, or Ctrl+U clears it)"
                ),
                now,
            );
        } else {
            self.notice(
                &format!(
                    "{what}: Enter sends each as its own line, in order (Up/Down move between them, Ctrl+U clears the draft)"
                ),
                now,
            );
        }
    }

    /// A typed character or line break, unless the input is full (said once).
    fn insert(&mut self, edit: Edit, now: u64) {
        if self.input.is_full() {
            if !self.said_full {
                self.said_full = true;
                self.error(
                    &format!(
                        "the input is full ({} characters): send or clear it (Ctrl+U) to type more",
                        super::input::MAX_DRAFT
                    ),
                    now,
                );
            }
            return;
        }
        self.said_full = false;
        self.input.edit(edit);
    }

    /// The size in bytes of the text the cursor's line would send, and the server's limit, once
    /// it is over three quarters of the limit (the input shows it then).
    pub fn size_of_line_at_cursor(&self) -> Option<(usize, usize)> {
        let (row, _) = self.input.cursor_row_col();
        let draft = self.input.text();
        let line = draft.split('\n').nth(row)?;
        let text = if row == 0 {
            Self::text_of(line)?
        } else {
            command::expand_tabs(line).into_owned()
        };
        let limit = self.max_text_len.min(mm_common::protocol::MAX_TEXT_LEN);
        (text.len() > limit / 4 * 3).then_some((text.len(), limit))
    }

    /// The text a line would send (a chat line or `/msg`), if it sends one.
    fn text_of(line: &str) -> Option<String> {
        match command::parse(line) {
            Ok(Command::Say(text) | Command::Msg { text, .. }) => Some(text),
            _ => None,
        }
    }

    /// Why the server would refuse `text`, with its size in characters too when that differs
    /// from its size in bytes (the limit counts bytes).
    fn refusal(&self, text: &str) -> Option<String> {
        let why = command::text_refusal(text, self.max_text_len)?;
        let chars = text.chars().count();
        if text.len() > self.max_text_len.min(mm_common::protocol::MAX_TEXT_LEN)
            && chars != text.len()
        {
            return Some(format!("{why} ({chars} characters)"));
        }
        Some(why)
    }

    /// Enter. A draft of one line is a chat line or a command, as typed. A draft of several
    /// lines (a paste, or Alt+Enter) sends each line as its own chat line, in order: its first
    /// line says where they all go (the tab shown, or `/msg NICK` at its start) and the others
    /// are text even when they start with `/` (a pasted line is never run as a command). Empty
    /// lines are left out (the server takes none; those in the middle are said). A line the
    /// server would refuse — longer than it takes, or holding a control character — sends
    /// nothing: the error says which line and its real size, and the draft stays in the input
    /// to be edited.
    fn send_draft(&mut self, now: u64) -> Action {
        let draft = self.input.text();
        let all: Vec<&str> = draft.split('\n').collect();
        let filled: Vec<&str> = all
            .iter()
            .copied()
            .filter(|l| !l.trim().is_empty())
            .collect();
        if filled.len() <= 1 {
            let line = filled.first().copied().unwrap_or(draft.as_str()).to_owned();
            if let Some(why) = Self::text_of(&line).and_then(|t| self.refusal(&t)) {
                self.error(
                    &format!("{why} — nothing was sent; the line stays in the input to edit"),
                    now,
                );
                return Action::None;
            }
            self.input.submit();
            return self.resolve(&line, now);
        }
        let n = filled.len();
        if n > MAX_DRAFT_LINES {
            self.error(
                &format!(
                    "the draft holds {n} lines and mm sends at most {MAX_DRAFT_LINES} at once — nothing was sent (Ctrl+U clears the draft)"
                ),
                now,
            );
            return Action::None;
        }
        let (to, first) = match command::parse(filled[0]) {
            Ok(Command::Say(text)) => (None, text),
            Ok(Command::Msg { to, text }) => (Some(to), text),
            _ => {
                self.error(
                    &format!(
                        "the draft's first line is a command, and a command takes one line; the draft holds {n} lines — nothing was sent (start it with // to send a line that begins with /; Ctrl+U clears the draft)"
                    ),
                    now,
                );
                return Action::None;
            }
        };
        let texts: Vec<String> = std::iter::once(first)
            .chain(
                filled[1..]
                    .iter()
                    .map(|l| command::expand_tabs(l).into_owned()),
            )
            .collect();
        for (i, text) in texts.iter().enumerate() {
            if let Some(why) = self.refusal(text) {
                self.error(
                    &format!(
                        "line {} of {n}: {why} — nothing was sent; the draft stays in the input to edit",
                        i + 1
                    ),
                    now,
                );
                return Action::None;
            }
        }
        self.input.submit();
        let mut commands = Vec::with_capacity(n);
        for text in texts {
            let command = match &to {
                Some(to) => Command::Msg {
                    to: to.clone(),
                    text,
                },
                None => Command::Say(text),
            };
            match self.route(command, now) {
                Action::Run(command) => commands.push(command),
                other => return other, // refused, and said why (a changed key)
            }
        }
        // The empty lines, as the prompt and the paste's notice counted them.
        self.left_out = all.len() - n;
        Action::RunAll(commands)
    }

    /// The lines of a draft went (or some did not, and said so): says the empty lines left out
    /// of it, after them.
    pub fn sent(&mut self, now: u64) {
        let left_out = std::mem::take(&mut self.left_out);
        if left_out > 0 {
            self.notice(
                &format!(
                    "left out {} (the server takes no empty lines)",
                    crate::display::count(left_out, "empty line", "empty lines")
                ),
                now,
            );
        }
    }

    /// After a line of a draft was not sent: puts it and the lines after it back into the input
    /// (if nothing was typed since), the first one with where it goes, so that Enter sends them
    /// to the same place; returns whether it did.
    pub fn unsent(&mut self, commands: &[Command], now: u64) -> bool {
        if commands.is_empty() || !self.input.is_empty() {
            return false;
        }
        let mut lines = Vec::with_capacity(commands.len());
        for (i, command) in commands.iter().enumerate() {
            let (to, text) = match command {
                Command::Say(text) => (None, text),
                Command::Msg { to, text } => (Some(to), text),
                _ => continue,
            };
            lines.push(match (i, to) {
                (0, Some(to)) => format!("/msg {to} {text}"),
                (0, None) if text.starts_with('/') => format!("/{text}"),
                _ => text.clone(),
            });
        }
        self.input.restore(&lines.join("\n"));
        self.notice(
            &format!(
                "{} not sent {} back in the input: Enter sends again",
                crate::display::count(lines.len(), "line", "lines"),
                if lines.len() == 1 { "is" } else { "are" }
            ),
            now,
        );
        true
    }

    /// Takes a mouse event (the wheel scrolls).
    pub fn on_mouse(&mut self, mouse: MouseEvent) {
        match mouse.kind {
            MouseEventKind::ScrollUp => self.scroll(WHEEL as isize),
            MouseEventKind::ScrollDown => self.scroll(-(WHEEL as isize)),
            _ => {}
        }
    }

    /// Scrolls the tab shown `by` rows (back when positive), as far as its first row at the top
    /// of the view and no farther.
    fn scroll(&mut self, by: isize) {
        let i = self.active.min(self.tabs.len() - 1);
        let wanted = self.tabs[i].scroll.saturating_add_signed(by);
        self.tabs[i].scroll = self.reachable(i, wanted);
    }

    /// `wanted` rows back in tab `i`, or as far back as it goes: where its first row is at the
    /// top of the view. Counts rows from the newest line back, no farther than needed.
    fn reachable(&self, i: usize, wanted: usize) -> usize {
        let tab = &self.tabs[i];
        let needed = wanted.saturating_add(self.page);
        let mut rows = 0;
        for line in tab.lines.iter().rev() {
            if rows >= needed {
                break;
            }
            rows += rows_of(tab, line, &self.nick, self.width);
        }
        wanted.min(rows.saturating_sub(self.page))
    }

    /// Whether the tab shown is scrolled back to its first row.
    pub fn at_top(&self) -> bool {
        let i = self.active.min(self.tabs.len() - 1);
        let scroll = self.tabs[i].scroll;
        scroll > 0 && self.reachable(i, scroll + 1) == scroll
    }

    /// The size of the message area, at each draw. When its width changes, a tab scrolled back
    /// keeps the line at the bottom of its view there, its rows counted anew; a taller area
    /// takes the view no farther back than the first row at its top.
    pub fn set_view(&mut self, width: usize, height: usize) {
        let width = width.max(1);
        if width != self.width {
            for i in 0..self.tabs.len() {
                if self.tabs[i].scroll > 0 {
                    self.tabs[i].scroll = self.rewrapped_scroll(&self.tabs[i], width);
                }
            }
            self.width = width;
        }
        self.page = height;
        let i = self.active.min(self.tabs.len() - 1);
        if self.tabs[i].scroll > 0 {
            self.tabs[i].scroll = self.reachable(i, self.tabs[i].scroll);
        }
    }

    /// `tab`'s scroll at `width` columns instead of [`App::width`]: the same line at the bottom
    /// of the view, as many of its rows below it as in proportion before.
    fn rewrapped_scroll(&self, tab: &Tab, width: usize) -> usize {
        let (mut below, mut below_now) = (0, 0);
        for line in tab.lines.iter().rev() {
            let rows = rows_of(tab, line, &self.nick, self.width);
            let rows_now = rows_of(tab, line, &self.nick, width);
            if below + rows > tab.scroll {
                let hidden = tab.scroll - below; // of this line's rows, below the view
                return below_now + hidden * rows_now / rows;
            }
            below += rows;
            below_now += rows_now;
        }
        below_now
    }

    fn cycle(&mut self, forward: bool) {
        let n = self.tabs.len();
        let next = if forward {
            (self.active + 1) % n
        } else {
            (self.active + n - 1) % n
        };
        self.switch_to(next);
    }

    /// Turns an input line into an action in the context of the tab shown: in a private tab a
    /// plain line goes to its peer and peer commands default to it; `/msg` and `/secure` from
    /// anywhere open (and show) the peer's tab. Local commands (`/query`, `/close`, tab
    /// switching) are done here.
    pub fn resolve(&mut self, line: &str, now: u64) -> Action {
        let peer = self.current().peer().map(str::to_owned);
        let mut line = line.to_owned();
        let first = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if let Some(peer) = &peer {
            if PEER_COMMANDS.contains(&first.as_str()) && line.split_whitespace().count() == 1 {
                line = format!("{} {peer}", line.trim());
            }
        }
        let arg = line.split_whitespace().nth(1).map(str::to_owned);
        match first.as_str() {
            "/query" => {
                match arg.as_deref().map(mm_common::protocol::validate_nick) {
                    Some(Ok(())) => {
                        if let Some(i) = arg.as_deref().and_then(|a| self.tab_for(a)) {
                            self.switch_to(i);
                        }
                    }
                    _ => self.error("usage: /query NICK (opens a private tab)", now),
                }
                return Action::None;
            }
            "/close" => {
                if self.active == 0 {
                    self.error("the room tab stays open (/quit to leave)", now);
                } else {
                    let closing = self.active;
                    self.active = closing - 1;
                    self.tabs.remove(closing);
                }
                return Action::None;
            }
            "/next" => {
                self.cycle(true);
                return Action::None;
            }
            "/reconnect" => return Action::Reconnect,
            "/prev" => {
                self.cycle(false);
                return Action::None;
            }
            _ => {}
        }
        let command = match command::parse(&line) {
            Ok(c) => c,
            Err(e) => {
                self.error(&e.to_string(), now);
                return Action::None;
            }
        };
        self.route(command, now)
    }

    /// A parsed command in the context of the tab shown: in a private tab a plain line goes to
    /// its peer; `/msg` and `/secure` open (and show) the peer's tab; a line to a peer whose key
    /// changed is refused.
    fn route(&mut self, command: Command, now: u64) -> Action {
        let peer = self.current().peer().map(str::to_owned);
        let command = match (command, &peer) {
            (Command::Say(text), Some(peer)) => Command::Msg {
                to: peer.clone(),
                text,
            },
            (other, _) => other,
        };
        match &command {
            Command::Msg { to, .. } | Command::Secure(to) => {
                if let Some(Security::Failed {
                    key_changed: true, ..
                }) = self.find_tab(to).map(|i| &self.tabs[i].security)
                {
                    if matches!(command, Command::Msg { .. }) {
                        self.error(
                            &format!("not sent: {to}'s key CHANGED. /verify {to} and compare by phone or in person, then /accept-key {to}; or /insecure {to}"),
                            now,
                        );
                        return Action::None;
                    }
                }
                match self.tab_for(to) {
                    Some(i) => self.switch_to(i),
                    None => self.error("too many tabs open; /close some", now),
                }
            }
            Command::Quit => return Action::Quit,
            _ => {}
        }
        Action::Run(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEventState;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent {
            code,
            modifiers,
            kind: ratatui::crossterm::event::KeyEventKind::Press,
            state: KeyEventState::NONE,
        }
    }

    fn type_line(app: &mut App, text: &str) -> Action {
        for c in text.chars() {
            app.on_key(key(KeyCode::Char(c), KeyModifiers::NONE), 0);
        }
        app.on_key(key(KeyCode::Enter, KeyModifiers::NONE), 0)
    }

    fn private(from: &str, text: &str) -> Event {
        Event::Private {
            id: 1,
            ts: 0,
            from: from.into(),
            text: text.into(),
        }
    }

    #[test]
    fn a_private_message_opens_a_tab_that_counts_unread_lines() {
        let mut app = App::new("s", "alice");
        let note = app.on_event(&private("bob", "hi"), 0);
        assert!(note.is_some());
        app.on_event(&private("BOB", "there"), 0);
        assert_eq!(app.tabs.len(), 2, "one tab per peer, case-insensitively");
        assert_eq!(app.tabs[1].unread, 2);
        assert!(app.tabs[1].mention);
        assert_eq!(app.tabs[1].marker, Some(0));
        app.on_key(key(KeyCode::Char('2'), KeyModifiers::ALT), 0);
        assert_eq!(app.active, 1);
        assert_eq!((app.tabs[1].unread, app.tabs[1].mention), (0, false));
        assert_eq!(app.tabs[1].marker, Some(0), "marker shown while reading");
        app.on_key(key(KeyCode::Char('p'), KeyModifiers::CONTROL), 0);
        assert_eq!(app.active, 0);
        assert_eq!(app.tabs[1].marker, None, "left: marker cleared");
    }

    #[test]
    fn mentions_are_flagged_on_the_room_tab() {
        let mut app = App::new("s", "alice");
        let bob = app.tab_for("bob").unwrap();
        app.switch_to(bob);
        let public = |text: &str| Event::Public {
            id: 1,
            ts: 0,
            from: "carol".into(),
            text: text.into(),
        };
        assert!(app.on_event(&public("malice aforethought"), 0).is_none());
        assert!(!app.tabs[0].mention);
        assert!(app.on_event(&public("hey Alice, look"), 0).is_some());
        assert!(app.tabs[0].mention);
        assert_eq!(app.tabs[0].unread, 2);
        app.switch_to(0);
        assert!(
            app.on_event(&public("alice?"), 0).is_none(),
            "no notification for the tab being read"
        );
        assert_eq!((app.tabs[0].unread, app.tabs[0].mention), (0, false));
    }

    #[test]
    fn in_a_private_tab_lines_and_peer_commands_go_to_the_peer() {
        let mut app = App::new("s", "alice");
        let bob = app.tab_for("bob").unwrap();
        app.switch_to(bob);
        assert_eq!(
            type_line(&mut app, "hello"),
            Action::Run(Command::Msg {
                to: "bob".into(),
                text: "hello".into()
            })
        );
        assert_eq!(
            type_line(&mut app, "/secure"),
            Action::Run(Command::Secure("bob".into()))
        );
        assert_eq!(
            type_line(&mut app, "/verify"),
            Action::Run(Command::Verify("bob".into()))
        );
        assert_eq!(
            type_line(&mut app, "//slash"),
            Action::Run(Command::Msg {
                to: "bob".into(),
                text: "/slash".into()
            })
        );
    }

    #[test]
    fn msg_and_secure_from_the_room_open_the_peers_tab() {
        let mut app = App::new("s", "alice");
        assert!(matches!(
            type_line(&mut app, "/secure carol"),
            Action::Run(Command::Secure(_))
        ));
        assert_eq!(app.current().title(), "carol");
        app.switch_to(0);
        assert!(matches!(
            type_line(&mut app, "/msg dave hi"),
            Action::Run(Command::Msg { .. })
        ));
        assert_eq!(app.current().title(), "dave");
        assert_eq!(type_line(&mut app, "/close"), Action::None);
        assert_eq!(app.tabs.len(), 2);
        type_line(&mut app, "/query erin");
        assert_eq!(app.current().title(), "erin");
    }

    #[test]
    fn a_changed_key_blocks_sending_from_the_tab() {
        let mut app = App::new("s", "alice");
        let i = app.tab_for("bob").unwrap();
        app.switch_to(i);
        app.set_status(
            "bob",
            &Status::Failed(Failure::KeyChanged {
                pinned: [1; 32],
                presented: [2; 32],
            }),
        );
        assert_eq!(type_line(&mut app, "are you there?"), Action::None);
        let last = app.current().lines.back().unwrap();
        assert_eq!(last.kind, LineKind::Error);
        assert!(last.text.contains("key CHANGED"), "{}", last.text);
        // Verifying and accepting still work.
        assert_eq!(
            type_line(&mut app, "/accept-key"),
            Action::Run(Command::AcceptKey("bob".into()))
        );
    }

    #[test]
    fn history_is_not_repeated_after_a_reconnect_and_scrollback_is_bounded() {
        let mut app = App::new("s", "alice");
        let h = |id| Event::History {
            id,
            ts: 0,
            from: "bob".into(),
            text: format!("h{id}"),
        };
        for id in 1..=3 {
            app.on_event(&h(id), 0);
        }
        for id in 2..=4 {
            app.on_event(&h(id), 0); // replay after a reconnect, plus one new
        }
        // Our own line (answered with Sent 5) and a line we missed while away (6).
        app.on_event(
            &Event::Sent {
                line: LineId::from_tag(1),
                id: 5,
                ts: 0,
            },
            0,
        );
        for id in [5, 6] {
            app.on_event(&h(id), 0);
        }
        let texts: Vec<&str> = app.tabs[0].lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["h1", "h2", "h3", "h4", "h6"]);
        for i in 0..SCROLLBACK + 10 {
            app.own_public(LineId::from_tag(1), &format!("{i}"), 0);
        }
        assert_eq!(app.tabs[0].lines.len(), SCROLLBACK);
    }

    #[test]
    fn own_lines_are_pending_until_answered_and_say_how_they_ended() {
        use mm_common::protocol::ErrorCode;
        let mut app = App::new("s", "alice");
        let [sent, refused, lost, unsent] = [1, 2, 3, 4].map(LineId::from_tag);
        app.own_public(sent, "a", 0);
        app.own_private("nobody", "b", refused, Delivery::Plain, 0);
        app.own_public(lost, "c", 0);
        app.own_private("bob", "d", unsent, Delivery::Queued, 0);
        let state = |app: &App, text: &str| {
            app.tabs
                .iter()
                .flat_map(|t| &t.lines)
                .find(|l| l.text == text)
                .and_then(|l| l.sending.clone())
        };
        assert_eq!(state(&app, "a"), Some(Sending::Pending(sent)));
        app.on_event(
            &Event::Sent {
                line: sent,
                id: 9,
                ts: 0,
            },
            0,
        );
        assert_eq!(state(&app, "a"), Some(Sending::Delivered));
        let lines_before = app.tabs.iter().map(|t| t.lines.len()).sum::<usize>();
        app.on_event(
            &Event::Error {
                line: Some(refused),
                code: ErrorCode::NO_SUCH_NICK,
                fatal: false,
                detail: "nobody is not online".into(),
            },
            0,
        );
        assert_eq!(
            state(&app, "b"),
            Some(Sending::Refused(
                "error (no-such-nick): nobody is not online".into()
            ))
        );
        assert_eq!(
            app.tabs.iter().map(|t| t.lines.len()).sum::<usize>(),
            lines_before,
            "the refusal marks the line instead of adding one"
        );
        app.on_event(
            &Event::Secure(E2eEvent::Failed {
                peer: "bob".into(),
                failure: Failure::PeerLeft,
                unsent: vec![unsent.get()],
            }),
            0,
        );
        assert!(
            matches!(state(&app, "d"), Some(Sending::Refused(why)) if why.contains("not sent"))
        );
        app.on_event(
            &Event::Closed {
                error: Some("connection lost".into()),
                undelivered: vec![lost],
            },
            0,
        );
        assert_eq!(state(&app, "c"), Some(Sending::NotDelivered));
        assert!(app.tabs[0]
            .lines
            .iter()
            .any(|l| l.kind == LineKind::Error && l.text.contains("1 of your line")));
    }

    #[test]
    fn tabs_are_bounded() {
        let mut app = App::new("s", "alice");
        for i in 0..MAX_TABS + 5 {
            app.on_event(&private(&format!("u{i}"), "spam"), 0);
        }
        assert_eq!(app.tabs.len(), MAX_TABS);
    }

    #[test]
    fn scrolling_back_holds_the_view_and_is_bounded() {
        let mut app = App::new("s", "alice");
        for i in 0..50 {
            app.own_public(LineId::from_tag(1), &format!("{i}"), 0);
        }
        app.page = 10;
        app.on_key(key(KeyCode::PageUp, KeyModifiers::NONE), 0);
        assert_eq!(app.tabs[0].scroll, 8);
        app.own_public(LineId::from_tag(1), "new", 0);
        assert_eq!(
            app.tabs[0].scroll, 9,
            "new lines do not move what is being read"
        );
        // A new line of several rows moves the view by as many (80 columns: the time and the
        // nick on a row, then 1,000 characters without a space on 13).
        app.own_public(LineId::from_tag(1), &"w".repeat(1000), 0);
        assert_eq!(app.tabs[0].scroll, 9 + 14);
        for _ in 0..20 {
            app.on_key(key(KeyCode::PageUp, KeyModifiers::NONE), 0);
        }
        // 51 lines of one row and one of 14, in a view of 10 rows: the first row at the top.
        assert_eq!(app.tabs[0].scroll, 51 + 14 - 10);
        assert!(app.at_top());
        for _ in 0..20 {
            app.on_key(key(KeyCode::PageDown, KeyModifiers::NONE), 0);
        }
        assert_eq!(app.tabs[0].scroll, 0);
    }

    #[test]
    fn a_replaced_connection_says_so_and_offers_reconnect_only() {
        use mm_common::protocol::ErrorCode;
        let mut app = App::new("s", "alice");
        app.on_event(
            &Event::Error {
                line: None,
                code: ErrorCode::REPLACED,
                fatal: true,
                detail: "you logged in again from another connection".into(),
            },
            0,
        );
        app.on_event(
            &Event::Closed {
                error: None,
                undelivered: vec![],
            },
            0,
        );
        assert!(app.replaced);
        assert_eq!(app.conn, Conn::Offline(REPLACED_STATUS.into()));
        assert!(app.tabs[0].lines.iter().any(|l| l.text
            == "alice logged in from another client; this one is disconnected — /reconnect to take the account back"));
        assert_eq!(type_line(&mut app, "/reconnect"), Action::Reconnect);
        // A fatal error of another kind is only an error: reconnecting stays automatic.
        let mut app = App::new("s", "alice");
        app.on_event(
            &Event::Error {
                line: None,
                code: ErrorCode::TOO_SLOW,
                fatal: true,
                detail: "slow".into(),
            },
            0,
        );
        assert!(!app.replaced);
    }

    fn last_line(app: &App) -> String {
        app.current()
            .lines
            .back()
            .map(|l| l.text.clone())
            .unwrap_or_default()
    }

    fn say(text: &str) -> Command {
        Command::Say(text.into())
    }

    fn msg(to: &str, text: &str) -> Command {
        Command::Msg {
            to: to.into(),
            text: text.into(),
        }
    }

    fn enter(app: &mut App) -> Action {
        app.on_key(key(KeyCode::Enter, KeyModifiers::NONE), 0)
    }

    #[test]
    fn a_line_over_the_limit_is_refused_with_its_real_size_and_stays_in_the_input() {
        let mut app = App::new("s", "alice");
        let long = "x".repeat(5000);
        assert_eq!(type_line(&mut app, &long), Action::None);
        assert_eq!(app.input.text(), long, "not cut, not lost");
        assert_eq!(
            last_line(&app),
            "error (text-too-long): message of 5000 bytes is over the limit of 4096 bytes — nothing was sent; the line stays in the input to edit"
        );
        // Multi-byte text: the limit counts bytes, and the characters are said too.
        let mut app = App::new("s", "alice");
        assert_eq!(type_line(&mut app, &"é".repeat(2100)), Action::None);
        assert!(
            last_line(&app).contains(
                "message of 4200 bytes is over the limit of 4096 bytes (2100 characters)"
            ),
            "{}",
            last_line(&app)
        );
        // Deleting what is too much sends it: 2048 'é' are 4096 bytes.
        for _ in 0..52 {
            app.on_key(key(KeyCode::Backspace, KeyModifiers::NONE), 0);
        }
        assert_eq!(enter(&mut app), Action::Run(say(&"é".repeat(2048))));
        assert!(app.input.is_empty());
        // The limit is the server's: a smaller one counts.
        let mut app = App::new("s", "alice");
        app.max_text_len = 10;
        assert_eq!(type_line(&mut app, "/msg bob 12345678901"), Action::None);
        assert!(last_line(&app).contains("message of 11 bytes is over the limit of 10 bytes"));
        assert_eq!(app.input.text(), "/msg bob 12345678901");
        // Other refused text stays too; other errors clear the line as before (Up recalls it).
        let mut app = App::new("s", "alice");
        app.on_paste("a\u{1b}[2Jb", 0);
        assert_eq!(enter(&mut app), Action::None);
        assert!(
            last_line(&app).contains("control character"),
            "{}",
            last_line(&app)
        );
        assert_eq!(app.input.text(), "a\u{1b}[2Jb");
    }

    #[test]
    fn a_pasted_draft_sends_each_line_as_a_line_in_order() {
        let mut app = App::new("s", "alice");
        app.on_paste("one\r\ntwo\tcols\r\n\r\n/three\r\n", 0);
        assert_eq!(app.input.text(), "one\ntwo    cols\n\n/three");
        assert!(
            last_line(&app).starts_with(
                "pasted 3 lines (and 1 empty line, left out): Enter sends each as its own line"
            ),
            "{}",
            last_line(&app)
        );
        // Nothing is sent before Enter; then each line, in order, a pasted "/..." as text.
        assert_eq!(
            enter(&mut app),
            Action::RunAll(vec![say("one"), say("two    cols"), say("/three")])
        );
        app.sent(0);
        assert_eq!(
            last_line(&app),
            "left out 1 empty line (the server takes no empty lines)"
        );
        assert!(app.input.is_empty());
        // Up brings the draft back whole.
        app.on_key(key(KeyCode::Up, KeyModifiers::NONE), 0);
        assert_eq!(app.input.text(), "one\ntwo    cols\n\n/three");

        // "/msg NICK" on the first line takes them all to NICK (never the rest to the room).
        let mut app = App::new("s", "alice");
        for c in "/msg bob ".chars() {
            app.on_key(key(KeyCode::Char(c), KeyModifiers::NONE), 0);
        }
        app.on_paste("first\nsecond", 0);
        assert_eq!(
            enter(&mut app),
            Action::RunAll(vec![msg("bob", "first"), msg("bob", "second")])
        );
        assert_eq!(app.current().peer(), Some("bob"), "bob's tab, shown");
        // In a private tab, they all go to its peer.
        app.on_paste("a\nb", 0);
        assert_eq!(
            enter(&mut app),
            Action::RunAll(vec![msg("bob", "a"), msg("bob", "b")])
        );
        // A paste that ends with a line break is one line: sent as typed.
        app.on_paste("just this\n", 0);
        assert_eq!(enter(&mut app), Action::Run(msg("bob", "just this")));
        // Blanks only: nothing.
        app.on_paste(" \n\t\n", 0);
        assert_eq!(enter(&mut app), Action::Run(Command::Nothing));
    }

    #[test]
    fn a_draft_that_cannot_go_whole_sends_nothing_and_stays() {
        let mut app = App::new("s", "alice");
        app.on_paste(&format!("fine\n{}\nalso fine", "x".repeat(5000)), 0);
        assert_eq!(enter(&mut app), Action::None);
        assert_eq!(
            last_line(&app),
            "line 2 of 3: error (text-too-long): message of 5000 bytes is over the limit of 4096 bytes — nothing was sent; the draft stays in the input to edit"
        );
        assert_eq!(app.input.rows(), 3);
        let mut app = App::new("s", "alice");
        app.on_paste("fine\nbell\u{7}", 0);
        assert_eq!(enter(&mut app), Action::None);
        assert!(last_line(&app).starts_with("line 2 of 2: error (invalid-text)"));
        // At most 100 lines at once.
        let mut app = App::new("s", "alice");
        let many: Vec<String> = (0..=MAX_DRAFT_LINES).map(|i| i.to_string()).collect();
        app.on_paste(&many.join("\n"), 0);
        assert_eq!(enter(&mut app), Action::None);
        assert_eq!(
            last_line(&app),
            "the draft holds 101 lines and mm sends at most 100 at once — nothing was sent (Ctrl+U clears the draft)"
        );
        assert_eq!(app.input.rows(), 101);
        app.on_key(key(KeyCode::Backspace, KeyModifiers::NONE), 0);
        app.on_key(key(KeyCode::Backspace, KeyModifiers::NONE), 0);
        app.on_key(key(KeyCode::Backspace, KeyModifiers::NONE), 0);
        assert!(matches!(enter(&mut app), Action::RunAll(lines) if lines.len() == 100));
        // A command takes one line.
        let mut app = App::new("s", "alice");
        app.on_paste("/secure bob\nhello", 0);
        assert_eq!(enter(&mut app), Action::None);
        assert!(last_line(&app).starts_with("the draft's first line is a command"));
        assert_eq!(app.input.text(), "/secure bob\nhello");
        // Lines not sent come back, with where they go.
        let mut app = App::new("s", "alice");
        app.input.submit();
        assert!(app.unsent(&[msg("bob", "x"), msg("bob", "/y")], 0));
        assert_eq!(app.input.text(), "/msg bob x\n/y");
        assert_eq!(
            last_line(&app),
            "2 lines not sent are back in the input: Enter sends again"
        );
        app.input.submit();
        assert!(app.unsent(&[say("/etc/passwd is here"), say("z")], 0));
        assert_eq!(app.input.text(), "//etc/passwd is here\nz");
        assert_eq!(
            enter(&mut app),
            Action::RunAll(vec![say("/etc/passwd is here"), say("z")])
        );
        // Not over something typed since.
        app.on_key(key(KeyCode::Char('q'), KeyModifiers::NONE), 0);
        assert!(!app.unsent(&[say("lost?")], 0));
        assert_eq!(app.input.text(), "q");
    }

    #[test]
    fn keys_that_arrive_as_one_burst_with_line_breaks_are_a_paste() {
        // A terminal without bracketed paste: the pasted lines arrive as keys, Enter included,
        // all at once. They make a draft, tabs as spaces; nothing is sent or completed.
        let mut app = App::new("s", "alice");
        app.on_event(&Event::Users(vec!["alice".into(), "bob".into()]), 0);
        let mut burst: Vec<KeyEvent> = Vec::new();
        for c in "bo".chars() {
            burst.push(key(KeyCode::Char(c), KeyModifiers::NONE));
        }
        burst.push(key(KeyCode::Tab, KeyModifiers::NONE));
        burst.push(key(KeyCode::Char('x'), KeyModifiers::NONE));
        burst.push(key(KeyCode::Enter, KeyModifiers::NONE));
        burst.push(key(KeyCode::Char('y'), KeyModifiers::NONE));
        burst.push(key(KeyCode::Enter, KeyModifiers::NONE));
        let last = burst.len() - 1;
        for (i, k) in burst.into_iter().enumerate() {
            assert_eq!(app.on_burst_key(k, i < last, 0), Action::None);
        }
        assert_eq!(
            app.input.text(),
            "bo    x\ny",
            "the last line break starts no line"
        );
        assert!(last_line(&app).starts_with("pasted 2 lines: Enter sends"));
        // Then a typed Enter sends them.
        assert_eq!(
            app.on_burst_key(key(KeyCode::Enter, KeyModifiers::NONE), false, 0),
            Action::RunAll(vec![say("bo    x"), say("y")])
        );
        // A burst without a line break before its end is typing (a slow link): its last Enter
        // sends, its last Tab completes.
        let burst = [
            key(KeyCode::Char('b'), KeyModifiers::NONE),
            key(KeyCode::Tab, KeyModifiers::NONE),
        ];
        app.on_burst_key(burst[0], true, 0);
        app.on_burst_key(burst[1], false, 0);
        assert_eq!(app.input.text(), "bob: ");
        app.on_burst_key(key(KeyCode::Char('h'), KeyModifiers::NONE), true, 0);
        assert_eq!(
            app.on_burst_key(key(KeyCode::Enter, KeyModifiers::NONE), false, 0),
            Action::Run(say("bob: h"))
        );
        // Alt+Enter starts a line by hand.
        app.on_key(key(KeyCode::Char('1'), KeyModifiers::NONE), 0);
        app.on_key(key(KeyCode::Enter, KeyModifiers::ALT), 0);
        app.on_key(key(KeyCode::Char('2'), KeyModifiers::NONE), 0);
        assert_eq!(enter(&mut app), Action::RunAll(vec![say("1"), say("2")]));
    }

    /// Pastes `text` as a terminal without bracketed paste delivers it: one burst of keys, each
    /// line break an Enter.
    fn burst_paste(app: &mut App, text: &str) -> Vec<Action> {
        let keys: Vec<KeyEvent> = text
            .chars()
            .map(|c| match c {
                '\n' => key(KeyCode::Enter, KeyModifiers::NONE),
                c => key(KeyCode::Char(c), KeyModifiers::NONE),
            })
            .collect();
        let last = keys.len() - 1;
        keys.into_iter()
            .enumerate()
            .map(|(i, k)| app.on_burst_key(k, i < last, 0))
            .collect()
    }

    #[test]
    fn a_paste_is_counted_one_way_its_last_line_break_starting_no_line() {
        // 4 lines copied as whole lines (the last one ends with a line break), pasted both ways:
        // the notice, the draft and Enter all count 4.
        for bracketed in [true, false] {
            let mut app = App::new("s", "alice");
            if bracketed {
                app.on_paste("a\nb\nc\nd\n", 0);
            } else {
                burst_paste(&mut app, "a\nb\nc\nd\n");
            }
            assert_eq!(app.input.text(), "a\nb\nc\nd", "bracketed: {bracketed}");
            assert_eq!(app.input.rows(), 4);
            assert!(
                last_line(&app).starts_with("pasted 4 lines: Enter sends each"),
                "{}",
                last_line(&app)
            );
            assert!(matches!(enter(&mut app), Action::RunAll(lines) if lines.len() == 4));
        }
        // Empty lines are shown, counted apart and left out, the same in the notice and after
        // sending.
        let mut app = App::new("s", "alice");
        app.on_paste("\nfirst\n\n\nsecond\n\n", 0);
        assert_eq!(app.input.text(), "\nfirst\n\n\nsecond");
        assert_eq!(
            last_line(&app),
            "pasted 2 lines (and 3 empty lines, left out): Enter sends each as its own line, in order (Up/Down move between them, Ctrl+U clears the draft)"
        );
        assert_eq!(
            enter(&mut app),
            Action::RunAll(vec![say("first"), say("second")])
        );
        app.sent(0);
        assert_eq!(
            last_line(&app),
            "left out 3 empty lines (the server takes no empty lines)"
        );
        // Into a draft that already holds lines: the draft's count.
        let mut app = App::new("s", "alice");
        app.on_paste("x\ny", 0);
        app.on_key(key(KeyCode::Enter, KeyModifiers::ALT), 0);
        app.on_paste("z\nw\n", 0);
        assert!(
            last_line(&app).starts_with("pasted into the draft, which holds 4 lines: Enter sends"),
            "{}",
            last_line(&app)
        );
        assert!(matches!(enter(&mut app), Action::RunAll(lines) if lines.len() == 4));
    }

    #[test]
    fn a_paste_over_the_line_limit_says_so_at_once_and_stays() {
        let many: String = (1..=150).map(|i| format!("line {i}\n")).collect();
        for bracketed in [true, false] {
            let mut app = App::new("s", "alice");
            if bracketed {
                app.on_paste(&many, 0);
            } else {
                let actions = burst_paste(&mut app, &many);
                assert!(actions.iter().all(|a| *a == Action::None));
            }
            let said = app.current().lines.back().unwrap().clone();
            assert_eq!(said.kind, LineKind::Error, "bracketed: {bracketed}");
            assert_eq!(
                said.text,
                "pasted 150 lines: mm sends at most 100 lines at once, so Enter sends nothing until the draft holds 100 or fewer (edit it, or Ctrl+U clears it)"
            );
            assert!(
                !app.current()
                    .lines
                    .iter()
                    .any(|l| l.text.contains("Enter sends each")),
                "never promises to send them"
            );
            assert_eq!(app.input.lines().filled, 150, "the draft stays");
            // Enter refuses with the same count, and the draft still stays.
            assert_eq!(enter(&mut app), Action::None);
            assert_eq!(
                last_line(&app),
                "the draft holds 150 lines and mm sends at most 100 at once — nothing was sent (Ctrl+U clears the draft)"
            );
            assert_eq!(app.input.rows(), 150);
        }
        // 100 lines go.
        let mut app = App::new("s", "alice");
        let hundred: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        app.on_paste(&hundred, 0);
        assert!(last_line(&app).starts_with("pasted 100 lines: Enter sends each"));
        assert!(matches!(enter(&mut app), Action::RunAll(lines) if lines.len() == 100));
    }

    #[test]
    fn a_full_input_says_so_once_and_a_paste_that_does_not_fit_is_refused_whole() {
        let mut app = App::new("s", "alice");
        app.on_paste(&"x".repeat(super::super::input::MAX_DRAFT - 1), 0);
        let lines = app.current().lines.len();
        for _ in 0..3 {
            app.on_key(key(KeyCode::Char('y'), KeyModifiers::NONE), 0);
        }
        assert_eq!(app.input.len(), super::super::input::MAX_DRAFT);
        assert_eq!(app.current().lines.len(), lines + 1, "said once");
        assert!(last_line(&app).starts_with("the input is full (262144 characters)"));
        let mut app = App::new("s", "alice");
        app.on_paste("abc", 0);
        app.on_paste(&"x".repeat(super::super::input::MAX_DRAFT), 0);
        assert_eq!(app.input.text(), "abc");
        assert_eq!(
            last_line(&app),
            "not pasted: the paste is 262144 characters and the input holds at most 262144 (3 in it now)"
        );
    }

    #[test]
    fn the_size_of_a_long_line_shows_once_it_nears_the_limit() {
        let mut app = App::new("s", "alice");
        app.on_paste(&"x".repeat(3000), 0);
        assert_eq!(app.size_of_line_at_cursor(), None);
        app.on_paste(&"x".repeat(100), 0);
        assert_eq!(app.size_of_line_at_cursor(), Some((3100, 4096)));
        let mut app = App::new("s", "alice");
        app.on_paste(&format!("/msg bob {}", "é".repeat(2100)), 0);
        assert_eq!(app.size_of_line_at_cursor(), Some((4200, 4096)));
        app.on_paste("\nshort", 0);
        assert_eq!(app.size_of_line_at_cursor(), None, "the cursor's line");
    }

    /// A bracketed paste holding `ESC [ 201 ~` then a line break ended early, and its Enter (in
    /// the same burst) ran `/quit`: an Enter arriving with a paste is part of it.
    #[test]
    fn an_enter_in_the_burst_of_a_paste_sends_and_runs_nothing() {
        let mut app = App::new("s", "alice");
        app.on_paste("/quit", 0);
        assert_eq!(
            app.on_burst_key(key(KeyCode::Enter, KeyModifiers::NONE), false, 0),
            Action::None
        );
        assert_eq!(app.input.text(), "/quit", "kept as a draft");
        app.end_burst();
        // A key after the pause is the user's: Enter runs what they now see.
        assert_eq!(
            app.on_burst_key(key(KeyCode::Enter, KeyModifiers::NONE), false, 0),
            Action::Quit
        );
    }
}
