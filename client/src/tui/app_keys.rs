//! The terminal UI's keys, pastes and drafts: what the user types becomes edits of the input,
//! tab switches, scrolling, and commands to run ([`Action`]), resolved against the tab shown.

use super::*;

impl App {
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
            // End: the end of the input, and the bottom of the conversation.
            KeyCode::End => {
                self.input.edit(Edit::End);
                let i = self.active;
                if let Some(tab) = self.tabs.get_mut(i) {
                    tab.scroll = 0;
                }
            }
            // F2: the member pane of a room tab (its list is asked for again when it opens).
            KeyCode::F(2) => {
                self.show_members = !self.show_members;
                if let (true, Some(room)) = (self.show_members, self.current_room()) {
                    return Action::Run(Command::Names(Some(room.to_owned())));
                }
            }
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
                let mut rooms: Vec<String> = self.rooms.values().map(|r| r.name.clone()).collect();
                rooms.push(mm_common::protocol::LOBBY.to_owned());
                if let Some(info) = self.current_room().and_then(|r| self.room_info(r)) {
                    // In a room tab its members complete too.
                    nicks.extend(info.names.iter().map(|m| m.nick.clone()));
                }
                nicks.retain(|n| nick_key(n) != nick_key(&self.nick));
                nicks.sort_unstable_by_key(|n| nick_key(n));
                nicks.dedup_by_key(|n| nick_key(n));
                self.input.complete_with_rooms(&COMMANDS, &nicks, &rooms);
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
                    crate::tui::input::MAX_DRAFT,
                    e.held
                ),
                now,
            ),
        }
    }

    /// The notice for a paste that made a draft of several lines, counted as the input counts
    /// them ([`Input::lines`](crate::tui::input::Input::lines)): what Enter will do, or, over
    /// [`MAX_DRAFT_LINES`], that it will send nothing until the draft is short enough. Pasted
    /// onto a draft of one line, the draft's lines are the paste's (its first line goes on the
    /// line typed); onto a draft of several, the notice says the draft's.
    pub(super) fn say_pasted(&mut self, onto_one_line: bool, now: u64) {
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
    pub(super) fn insert(&mut self, edit: Edit, now: u64) {
        if self.input.is_full() {
            if !self.said_full {
                self.said_full = true;
                self.error(
                    &format!(
                        "the input is full ({} characters): send or clear it (Ctrl+U) to type more",
                        crate::tui::input::MAX_DRAFT
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
    pub(super) fn text_of(line: &str) -> Option<String> {
        match command::parse(line) {
            Ok(Command::Say(text) | Command::Msg { text, .. } | Command::SayIn { text, .. }) => {
                Some(text)
            }
            _ => None,
        }
    }

    /// Why the server would refuse `text`, with its size in characters too when that differs
    /// from its size in bytes (the limit counts bytes).
    pub(super) fn refusal(&self, text: &str) -> Option<String> {
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
    pub(super) fn send_draft(&mut self, now: u64) -> Action {
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
                Command::SayIn {
                    room: Some(room),
                    text,
                    action: false,
                } => (Some(room), text),
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
    pub(super) fn scroll(&mut self, by: isize) {
        let i = self.active.min(self.tabs.len() - 1);
        let wanted = self.tabs[i].scroll.saturating_add_signed(by);
        self.tabs[i].scroll = self.reachable(i, wanted);
    }

    /// `wanted` rows back in tab `i`, or as far back as it goes: where its first row is at the
    /// top of the view. Counts rows from the newest line back, no farther than needed.
    pub(super) fn reachable(&self, i: usize, wanted: usize) -> usize {
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
    pub(super) fn rewrapped_scroll(&self, tab: &Tab, width: usize) -> usize {
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

    pub(super) fn cycle(&mut self, forward: bool) {
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
                if let Some(room) = self.current_room() {
                    return Action::Run(Command::Part {
                        room: Some(room.to_owned()),
                        reason: String::new(),
                    });
                }
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
    pub(super) fn route(&mut self, command: Command, now: u64) -> Action {
        let peer = self.current().peer().map(str::to_owned);
        let room = self.current_room().map(str::to_owned);
        let command = match (command, &peer) {
            (Command::Say(text), Some(peer)) => Command::Msg {
                to: peer.clone(),
                text,
            },
            // In a room tab a plain line goes to that room.
            (Command::Say(text), None) if room.is_some() => Command::SayIn {
                room,
                text,
                action: false,
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
