// Over 600 lines: half of them are its tests, drawn on ratatui's TestBackend.
//! Drawing the [`App`]: the tab bar, the conversation, the status bar and the input line.
//!
//! ```text
//!  1 #lobby   2 bob (2)   3 carol !
//! 14:02 <bob> hi
//! ───────────────────── new ─────────────────────
//! 14:05 [secure] <bob> end-to-end, this one
//!  bob: SECURE e2e · key 3f2a 9b1c 0e4d 7a61 … · not verified: /verify │ alice@localhost:7667 · connected
//! > typing here_
//! ```

use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use unicode_width::UnicodeWidthChar;

use super::app::{App, Conn, LineKind, Security, Sending, Tab};
use crate::display::{clean, nick_palette_index};

/// Colours on, or only bold/dim/reverse (`NO_COLOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// Use colours.
    pub color: bool,
}

impl Theme {
    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    /// A nick's colour: the same hash as line mode, colours readable on dark and light
    /// backgrounds (no white, black or bright yellow).
    fn nick(self, nick: &str) -> Style {
        const PALETTE: [Color; 10] = [
            Color::Red,
            Color::Green,
            Color::Yellow,
            Color::Blue,
            Color::Magenta,
            Color::Cyan,
            Color::LightRed,
            Color::LightGreen,
            Color::LightBlue,
            Color::LightMagenta,
        ];
        self.fg(PALETTE[nick_palette_index(nick) % PALETTE.len()])
    }

    fn secure(self) -> Style {
        self.fg(Color::Green).add_modifier(Modifier::BOLD)
    }

    fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    fn dim(self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }
}

/// Most rows the input takes (a draft of more lines scrolls).
const MAX_INPUT_ROWS: usize = 6;

/// Rows the input takes: one per line of the draft, up to [`MAX_INPUT_ROWS`] and a third of the
/// screen.
fn input_height(app: &App, screen: Rect) -> u16 {
    let rows = app
        .input
        .rows()
        .min(MAX_INPUT_ROWS)
        .min(usize::from(screen.height / 3))
        .max(1);
    u16::try_from(rows).unwrap_or(1)
}

/// Draws everything.
pub fn draw(frame: &mut Frame<'_>, app: &mut App, theme: Theme) {
    let [tabs, body, status, input] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(input_height(app, frame.area())),
    ])
    .areas(frame.area());
    let (body, pane) = match app.current_room() {
        Some(_) if app.show_members && body.width >= 40 => {
            let [body, pane] =
                Layout::horizontal([Constraint::Min(20), Constraint::Length(MEMBER_PANE)])
                    .areas(body);
            (body, Some(pane))
        }
        _ => (body, None),
    };
    app.set_view(usize::from(body.width), usize::from(body.height));
    frame.render_widget(Paragraph::new(tab_bar(app, theme)), tabs);
    let rows = conversation(app.current(), &app.nick, body, theme);
    frame.render_widget(Paragraph::new(rows), body);
    if let Some(pane) = pane {
        frame.render_widget(Paragraph::new(member_rows(app, pane, theme)), pane);
    }
    frame.render_widget(Paragraph::new(status_bar(app, theme)), status);
    draw_input(frame, app, input, theme);
}

/// Columns of the member pane (F2), its left border included.
pub const MEMBER_PANE: u16 = 22;

/// The member pane of the room shown: `│ ~alice`, one member a row, as many as fit, then
/// `│ … N more`.
fn member_rows(app: &App, area: Rect, theme: Theme) -> Vec<Line<'static>> {
    let Some(info) = app.current_room().and_then(|r| app.room_info(r)) else {
        return Vec::new();
    };
    let height = usize::from(area.height);
    let width = usize::from(area.width).saturating_sub(2);
    let mut rows = vec![Line::from(Span::styled(
        format!(
            "│ {}",
            crate::display::count(info.members as usize, "member", "members")
        ),
        theme.dim(),
    ))];
    let shown = height.saturating_sub(2);
    for m in info.names.iter().take(shown) {
        let mut name = format!("{}{}", m.role.prefix(), clean(&m.nick));
        if m.away || !m.online {
            name.push_str(if m.away { " (away)" } else { " (off)" });
        }
        let name: String = name.chars().take(width).collect();
        let style = if m.online && !m.away {
            theme.nick(&m.nick)
        } else {
            theme.dim()
        };
        rows.push(Line::from(vec![
            Span::styled("│ ", theme.dim()),
            Span::styled(name, style),
        ]));
    }
    if info.names.len() > shown {
        rows.push(Line::from(Span::styled(
            format!("│ … {} more", info.names.len() - shown),
            theme.dim(),
        )));
    }
    rows
}

fn tab_bar(app: &App, theme: Theme) -> Line<'static> {
    let mut spans = Vec::new();
    for (i, tab) in app.tabs.iter().enumerate() {
        let mut label = if i < 9 {
            format!(" {} {}", i + 1, clean(tab.title()))
        } else {
            format!(" {}", clean(tab.title()))
        };
        let mut style = match &tab.security {
            Security::Secure { .. } if tab.peer().is_some() => theme.fg(Color::Green),
            Security::Failed { .. } if tab.peer().is_some() => theme.fg(Color::Red),
            Security::Plain if tab.peer().is_some() => theme.fg(Color::Yellow),
            _ => Style::new(),
        };
        if tab.unread > 0 {
            label.push_str(&format!(" ({})", tab.unread));
            style = style.add_modifier(Modifier::BOLD);
        }
        if tab.mention {
            label.push_str(&format!(" !{}", tab.mentions.max(1)));
            style = style
                .patch(theme.fg(Color::Magenta))
                .add_modifier(Modifier::BOLD);
        }
        label.push(' ');
        if i == app.active {
            style = style.add_modifier(Modifier::REVERSED | Modifier::BOLD);
        }
        spans.push(Span::styled(label, style));
        spans.push(Span::raw(" "));
    }
    Line::from(spans)
}

/// `HH:MM` local time, or `MM-DD HH:MM` for lines from the past (history, offline mail): each
/// with the UTC offset in force at that instant.
fn stamp(ts: u64, with_date: bool) -> String {
    let zone = crate::localtime::zone();
    if with_date {
        crate::localtime::format_date_time(ts, zone)
    } else {
        crate::localtime::format_time(ts, zone)
    }
}

/// One scrollback line as styled spans (not yet wrapped).
fn line_spans(line: &super::app::Line, me: &str, theme: Theme) -> Vec<Span<'static>> {
    let past = matches!(line.kind, LineKind::History | LineKind::Offline);
    let mut spans = vec![Span::styled(
        format!("{} ", stamp(line.ts, past)),
        theme.dim(),
    )];
    let from = line.from.as_deref().map(clean).unwrap_or_default();
    let nick = |style: Style| Span::styled(format!("<{from}> "), style);
    let text = clean(&line.text);
    match line.kind {
        LineKind::Public | LineKind::Private => {
            spans.push(nick(theme.nick(&from)));
            spans.push(Span::raw(text));
        }
        LineKind::History => {
            spans.push(Span::styled("[history] ", theme.dim()));
            spans.push(nick(theme.nick(&from).add_modifier(Modifier::DIM)));
            spans.push(Span::styled(text, theme.dim()));
        }
        LineKind::Offline => {
            spans.push(Span::styled(
                "[while you were away] ",
                theme.fg(Color::Cyan),
            ));
            spans.push(nick(theme.nick(&from)));
            spans.push(Span::raw(text));
        }
        LineKind::Secure => {
            spans.push(Span::styled("[secure] ", theme.secure()));
            spans.push(nick(theme.nick(&from)));
            spans.push(Span::raw(text));
        }
        LineKind::Own => {
            spans.push(nick(Style::new().add_modifier(Modifier::BOLD)));
            spans.push(Span::raw(text));
        }
        LineKind::OwnSecure { queued } => {
            // A line refused before it went (no keys, a failed session) was never secure.
            let (tag, style) = if matches!(line.sending, Some(Sending::Refused(_))) {
                ("[not sent] ", theme.dim())
            } else if queued {
                ("[secure, waiting for the session] ", theme.secure())
            } else {
                ("[secure] ", theme.secure())
            };
            spans.push(Span::styled(tag, style));
            spans.push(Span::styled(
                format!("<{}> ", clean(me)),
                Style::new().add_modifier(Modifier::BOLD),
            ));
            spans.push(Span::raw(text));
        }
        LineKind::Action => {
            spans.push(Span::styled("* ", theme.nick(&from)));
            spans.push(Span::styled(format!("{from} "), theme.nick(&from)));
            spans.push(Span::raw(text));
        }
        LineKind::Notice => spans.push(Span::styled(format!("* {text}"), theme.fg(Color::Cyan))),
        LineKind::Error => spans.push(Span::styled(format!("! {text}"), theme.error())),
        LineKind::Safety => spans.push(Span::styled(
            text,
            theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        )),
    }
    // Our own line: dimmed with a mark until the server has it; a clear mark if it never
    // got there. Words, not only colours, so NO_COLOR shows it too.
    match &line.sending {
        None | Some(Sending::Delivered) => {}
        Some(Sending::Pending(_)) => {
            for span in spans.iter_mut().skip(1) {
                span.style = span.style.add_modifier(Modifier::DIM);
            }
            spans.push(Span::styled(" … (sending)", theme.dim()));
        }
        Some(Sending::Refused(why)) => {
            spans.push(Span::styled(
                format!("  ✗ NOT DELIVERED: {}", clean(why)),
                theme.error(),
            ));
        }
        Some(Sending::NotDelivered) => {
            spans.push(Span::styled(
                "  ✗ NOT DELIVERED (no answer before the connection was lost; Up to resend)",
                theme.error(),
            ));
        }
    }
    spans
}

/// Splits styled spans into rows of at most `width` columns (by display width), breaking after
/// a space where the row has one and inside a word only when it does not.
fn wrap(spans: Vec<Span<'static>>, width: usize) -> Vec<Line<'static>> {
    let cells: Vec<(char, Style, usize)> = spans
        .iter()
        .flat_map(|s| {
            s.content
                .chars()
                .map(move |c| (c, s.style, c.width().unwrap_or(0)))
        })
        .collect();
    let mut rows: Vec<Line<'static>> = row_ranges(&cells, width)
        .into_iter()
        .map(|(start, end)| styled_row(&cells[start..end]))
        .collect();
    if rows.is_empty() {
        rows.push(Line::default());
    }
    rows
}

/// Where [`wrap`] breaks cells (a character, its style, its width) into rows: each row's start
/// and end.
fn row_ranges(cells: &[(char, Style, usize)], width: usize) -> Vec<(usize, usize)> {
    let width = width.max(1);
    let mut rows = Vec::new();
    let mut start = 0;
    while start < cells.len() {
        let mut used = 0;
        let mut end = start;
        let mut last_space = None;
        while end < cells.len() && (used + cells[end].2 <= width || end == start) {
            used += cells[end].2;
            if cells[end].0 == ' ' {
                last_space = Some(end);
            }
            end += 1;
        }
        if end < cells.len() {
            if let Some(space) = last_space.filter(|&i| i > start) {
                end = space + 1;
            }
        }
        rows.push((start, end));
        start = end;
    }
    rows
}

/// The rows a scrollback line takes in a conversation `width` columns wide, as drawn (the
/// unread marker's row not included).
pub fn line_rows(line: &super::app::Line, me: &str, width: usize) -> usize {
    let cells: Vec<(char, Style, usize)> = line_spans(line, me, Theme { color: false })
        .iter()
        .flat_map(|s| {
            s.content
                .chars()
                .map(|c| (c, Style::new(), c.width().unwrap_or(0)))
        })
        .collect();
    row_ranges(&cells, width).len().max(1)
}

/// Groups runs of equally styled characters back into spans.
fn styled_row(cells: &[(char, Style, usize)]) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut text = String::new();
    let mut style = cells.first().map(|c| c.1).unwrap_or_default();
    for &(c, s, _) in cells {
        if s != style && !text.is_empty() {
            spans.push(Span::styled(std::mem::take(&mut text), style));
        }
        style = s;
        text.push(c);
    }
    if !text.is_empty() {
        spans.push(Span::styled(text, style));
    }
    Line::from(spans)
}

/// The rows of the conversation that fit in `area`, scrolled back `tab.scroll` rows, with the
/// unread marker before the first line that arrived while the user was away.
fn conversation(tab: &Tab, me: &str, area: Rect, theme: Theme) -> Vec<Line<'static>> {
    let (width, height) = (usize::from(area.width), usize::from(area.height));
    let wanted = height + tab.scroll;
    // Only the tail is wrapped: every line takes at least one row.
    let mut rows: Vec<Line<'static>> = Vec::new();
    for line in tab.lines.iter().rev() {
        let mut wrapped = wrap(line_spans(line, me, theme), width);
        if tab.marker == Some(line.seq) {
            let label = " new ";
            let side = width.saturating_sub(label.len()) / 2;
            let bar = format!(
                "{}{label}{}",
                "─".repeat(side),
                "─".repeat(width.saturating_sub(side + label.len()))
            );
            wrapped.insert(0, Line::from(Span::styled(bar, theme.fg(Color::Red))));
        }
        for row in wrapped.into_iter().rev() {
            rows.push(row);
        }
        if rows.len() >= wanted {
            break;
        }
    }
    rows.reverse();
    let end = rows
        .len()
        .saturating_sub(tab.scroll.min(rows.len().saturating_sub(height)));
    let start = end.saturating_sub(height);
    rows[start..end].to_vec()
}

/// The status bar: a private conversation's protection first (it must be impossible to miss,
/// connected or not), then who and where we are; in the room tab the connection comes first
/// while it is down.
fn status_bar(app: &App, theme: Theme) -> Line<'static> {
    let bar = Style::new().add_modifier(Modifier::REVERSED);
    let conn = connection_spans(app, theme, bar);
    let tab = tab_spans(app, theme, bar);
    let sep = Span::styled("│", bar);
    let (first, second) = if app.conn == Conn::Connected || app.current().peer().is_some() {
        (tab, conn)
    } else {
        (conn, tab)
    };
    let mut spans = first;
    // Scrolled back, the bar says so right after its first part, where a narrow window still
    // shows it: in rows, the unit PgUp, PgDn and the wheel move by.
    let scroll = app.current().scroll;
    if scroll > 0 {
        let rows = crate::display::count(scroll, "row", "rows");
        let top = if app.at_top() { ", at the top" } else { "" };
        spans.push(Span::styled(
            format!("│ scrolled back {rows}{top} (PgDn) "),
            bar,
        ));
    }
    spans.push(sep);
    spans.extend(second);
    Line::from(spans)
}

/// A text of one or more lines as one status-bar line: its first line, cleaned, with ` …` when
/// more follows (the whole text is in the conversation). The bar is one row: a line break in it
/// would show as a replacement character, or cut the bar.
fn one_line(text: &str) -> String {
    let text = crate::explain::scrub(text);
    let mut lines = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty());
    let first = clean(lines.next().unwrap_or_default());
    if lines.next().is_some() {
        format!("{first} …")
    } else {
        first
    }
}

fn connection_spans(app: &App, theme: Theme, bar: Style) -> Vec<Span<'static>> {
    let mut spans = vec![Span::styled(
        format!(" {}@{} · ", clean(&app.nick), clean(&app.server)),
        bar,
    )];
    spans.push(match &app.conn {
        Conn::Connected => Span::styled("connected ", bar),
        Conn::Reconnecting {
            attempt,
            in_secs,
            reason,
        } => Span::styled(
            if *in_secs == 0 {
                format!(
                    "reconnecting now (attempt {attempt}) — {} ",
                    one_line(reason)
                )
            } else {
                format!(
                    "reconnecting in {in_secs} s (attempt {attempt}) — {} ",
                    one_line(reason)
                )
            },
            bar.patch(theme.fg(Color::Yellow))
                .add_modifier(Modifier::BOLD),
        ),
        Conn::Offline(reason) => Span::styled(
            format!("offline: {} ", one_line(reason)),
            bar.patch(theme.error()),
        ),
    });
    spans
}

fn tab_spans(app: &App, theme: Theme, bar: Style) -> Vec<Span<'static>> {
    let mut spans = vec![Span::styled(" ", bar)];
    let tab = app.current();
    if let Some(room) = tab.room() {
        let mut text = clean(room);
        if let Some(info) = app.room_info(room) {
            text.push_str(&format!(
                " · {}",
                crate::display::count(info.members as usize, "member", "members")
            ));
            let modes = info.modes.letters();
            if !modes.is_empty() {
                text.push_str(&format!(" · {modes}"));
            }
            if !info.topic.is_empty() {
                text.push_str(&format!(" · {}", one_line(&info.topic)));
            }
        }
        spans.push(Span::styled(format!("{text} "), bar));
        spans.push(Span::styled(
            "· not end-to-end (the server reads room lines) ",
            bar.patch(theme.dim()),
        ));
        return spans;
    }
    match tab.peer() {
        // Not connected, the count of the last connection would be stale.
        None if !app.online_known => {
            spans.push(Span::styled("#lobby · online: unknown ".to_string(), bar));
        }
        None => spans.push(Span::styled(
            format!("#lobby · {} online ", app.online.len()),
            bar,
        )),
        Some(peer) => {
            let peer = clean(peer);
            spans.push(Span::styled(format!("{peer}: "), bar));
            let paused = app.conn != Conn::Connected
                && matches!(
                    tab.security,
                    Security::Secure { .. } | Security::Starting | Security::Ready
                );
            // SECURE only where a session is: a conversation about to be one says end-to-end.
            let what = if matches!(tab.security, Security::Secure { .. }) {
                "SECURE e2e"
            } else {
                "end-to-end"
            };
            spans.push(match &tab.security {
                _ if paused => Span::styled(
                    if matches!(app.conn, Conn::Reconnecting { .. }) {
                        format!("{what} · paused while reconnecting (nothing goes plain) ")
                    } else {
                        format!("{what} · paused: not connected (nothing goes plain) ")
                    },
                    bar.patch(theme.fg(Color::Yellow)),
                ),
                Security::Plain if app.conn != Conn::Connected => {
                    Span::styled("NOT end-to-end encrypted ".to_string(), bar)
                }
                Security::Plain => Span::styled(
                    "NOT end-to-end encrypted (the server can read it) · /secure to encrypt ".to_string(),
                    bar.patch(theme.fg(Color::Yellow)),
                ),
                Security::Ready => Span::styled(
                    "end-to-end encrypted · the session starts with your first line (offline or not) ".to_string(),
                    bar.patch(theme.secure()),
                ),
                Security::Starting => Span::styled(
                    "setting up end-to-end encryption... ".to_string(),
                    bar.patch(theme.fg(Color::Yellow)),
                ),
                Security::Secure {
                    fingerprint,
                    verified: false,
                } => Span::styled(
                    format!("SECURE e2e · key {} · not verified: /verify ", short(fingerprint)),
                    bar.patch(theme.secure()),
                ),
                Security::Secure {
                    fingerprint,
                    verified: true,
                } => Span::styled(
                    format!("SECURE e2e · VERIFIED · key {} ", short(fingerprint)),
                    bar.patch(theme.secure()),
                ),
                Security::Failed { no_keys: true, .. } => Span::styled(
                    format!("{peer} has no end-to-end keys · nothing goes plain: /insecure {peer} to send plain "),
                    bar.patch(theme.error()),
                ),
                Security::Failed { blocked: false, reason, .. } => Span::styled(
                    format!("no secure session ({reason}) · your next line tries again (nothing goes plain) "),
                    bar.patch(theme.fg(Color::Yellow)),
                ),
                Security::Failed {
                    key_changed: true, ..
                } => Span::styled(
                    format!(" KEY CHANGED — sending blocked · /verify {peer}, then /accept-key or /insecure "),
                    Style::new()
                        .add_modifier(Modifier::BOLD)
                        .patch(if theme.color {
                            Style::new().fg(Color::White).bg(Color::Red)
                        } else {
                            Style::new().add_modifier(Modifier::REVERSED | Modifier::UNDERLINED)
                        }),
                ),
                Security::Failed { .. } => Span::styled(
                    "secure session FAILED — sending blocked · /secure or /insecure ".to_string(),
                    bar.patch(theme.error()),
                ),
            });
        }
    }
    spans
}

/// The first four groups of a key fingerprint: enough to recognise a key at a glance (the
/// safety number is what verifies it).
fn short(fingerprint: &str) -> String {
    let groups: Vec<&str> = fingerprint.split_whitespace().collect();
    if groups.len() > 4 {
        format!("{} …", groups[..4].join(" "))
    } else {
        fingerprint.to_owned()
    }
}

/// The input: the prompt, then the draft, one row per line (a draft of several lines says how
/// many, and scrolls to keep the cursor's line in view); the cursor's line scrolls sideways to
/// keep the cursor in view. Near or over the server's limit, the cursor's line shows its size
/// in bytes, in red when over.
fn draw_input(frame: &mut Frame<'_>, app: &App, area: Rect, theme: Theme) {
    let title = clean(app.current().title());
    // The lines counted as everywhere else (the paste's notice, Enter's refusals): those that
    // hold something, which Enter sends, and the empty ones, left out.
    let prompt = if app.input.rows() > 1 {
        let lines = app.input.lines();
        let mut count = crate::display::count(lines.filled, "line", "lines");
        if lines.empty > 0 {
            count.push_str(&format!(", {} empty", lines.empty));
        }
        format!("{title} ({count})> ")
    } else {
        format!("{title}> ")
    };
    let prompt_w: usize = prompt.chars().map(|c| c.width().unwrap_or(0)).sum();
    let indent = " ".repeat(prompt_w);
    let (cursor_row, cursor_col) = app.input.cursor_row_col();
    let height = usize::from(area.height).max(1);
    let top = (cursor_row + 1).saturating_sub(height);
    let size = app.size_of_line_at_cursor().map(|(bytes, limit)| {
        let style = if bytes > limit {
            theme.error()
        } else {
            theme.dim()
        };
        (format!(" {bytes}/{limit} bytes"), style)
    });
    // What the user typed or pasted is shown cleaned too (one for one, so the cursor stays
    // right): a pasted bidi override must not reorder the input. Sending such a line is refused
    // with a message saying which character it holds.
    let draft = app.input.text();
    let mut rows = Vec::with_capacity(height);
    let mut cursor_x = 0;
    for (i, row) in draft.split('\n').enumerate().skip(top).take(height) {
        let text: Vec<char> = clean(row).chars().collect();
        let lead = if i == top {
            Span::styled(
                prompt.clone(),
                theme
                    .nick(app.current().title())
                    .add_modifier(Modifier::BOLD),
            )
        } else {
            Span::raw(indent.clone())
        };
        let mut spans = vec![lead];
        if i == cursor_row {
            let tail = size.as_ref().map_or(0, |(s, _)| s.chars().count());
            let room = usize::from(area.width)
                .saturating_sub(prompt_w + 1 + tail)
                .max(1);
            let col = cursor_col.min(text.len());
            let first = col.saturating_sub(room);
            spans.push(Span::raw(
                text.iter().skip(first).take(room).collect::<String>(),
            ));
            cursor_x = prompt_w
                + text[first..col]
                    .iter()
                    .map(|c| c.width().unwrap_or(0))
                    .sum::<usize>();
            if let Some((label, style)) = &size {
                let used: usize = text
                    .iter()
                    .skip(first)
                    .take(room)
                    .map(|c| c.width().unwrap_or(0))
                    .sum();
                let gap = usize::from(area.width).saturating_sub(prompt_w + used + tail);
                spans.push(Span::raw(" ".repeat(gap)));
                spans.push(Span::styled(label.clone(), *style));
            }
        } else {
            let room = usize::from(area.width).saturating_sub(prompt_w).max(1);
            spans.push(Span::raw(text.iter().take(room).collect::<String>()));
        }
        rows.push(Line::from(spans));
    }
    frame.render_widget(Paragraph::new(rows), area);
    let x = area.x + u16::try_from(cursor_x).unwrap_or(area.width);
    let y = area.y + u16::try_from(cursor_row - top).unwrap_or(0);
    frame.set_cursor_position(Position::new(
        x.min(area.right().saturating_sub(1)),
        y.min(area.bottom().saturating_sub(1)),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChatLine;
    use crate::Event;
    use mm_common::e2e::{Failure, Status, Trust};
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::crossterm::event::{KeyCode, KeyEvent};
    use ratatui::Terminal;

    #[test]
    fn an_own_secure_line_refused_before_it_went_is_not_tagged_secure() {
        let text_of = |sending: Option<Sending>| -> String {
            let line = super::super::app::Line {
                seq: 1,
                ts: 0,
                kind: LineKind::OwnSecure { queued: false },
                from: None,
                text: "hi wendy".into(),
                sending,
            };
            line_spans(&line, "alice", Theme { color: false })
                .iter()
                .map(|s| s.content.to_string())
                .collect()
        };
        let refused = text_of(Some(Sending::Refused(
            "not sent: wendy has no end-to-end keys".into(),
        )));
        assert!(refused.contains("[not sent] <alice> hi wendy"), "{refused}");
        assert!(!refused.contains("[secure]"), "{refused}");
        let sent = text_of(Some(Sending::Delivered));
        assert!(sent.contains("[secure] <alice> hi wendy"), "{sent}");
    }

    /// Draws `app` on an in-memory terminal; returns the buffer and its rows as text.
    fn drawn(app: &mut App, width: u16, height: u16) -> (Buffer, Vec<String>) {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|f| draw(f, app, Theme { color: true }))
            .unwrap();
        let buffer = terminal.backend().buffer().clone();
        let rows = (0..height)
            .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect())
            .collect();
        (buffer, rows)
    }

    fn render(app: &mut App, width: u16, height: u16) -> Vec<String> {
        let (_, rows) = drawn(app, width, height);
        rows.iter().map(|r| r.trim_end().to_string()).collect()
    }

    /// The background colour where `needle` starts on screen.
    fn cell_bg(app: &mut App, width: u16, height: u16, needle: &str) -> Color {
        let (buffer, rows) = drawn(app, width, height);
        for (y, row) in rows.iter().enumerate() {
            if let Some(col) = row.find(needle) {
                let x = row[..col].chars().count() as u16;
                return buffer[(x, y as u16)].bg;
            }
        }
        panic!("{needle} not on screen");
    }

    fn app_with_bob() -> App {
        let mut app = App::new("localhost:7667", "alice");
        app.on_event(&Event::Users(vec!["alice".into(), "bob".into()]), 0);
        app.on_event(
            &Event::Public(ChatLine {
                id: 1,
                ts: 0,
                room: String::new(),
                action: false,
                from: "bob".into(),
                text: "hello room".into(),
            }),
            0,
        );
        app
    }

    #[test]
    fn a_notice_of_several_lines_shows_as_lines_and_the_status_bar_as_one() {
        let mut app = app_with_bob();
        let warning = "the certificate of localhost:7667 has CHANGED since you trusted it\n  trusted:   AA:AA\n  presented: BB:BB\nforget it with\n  mm trust forget localhost:7667\r\n";
        app.conn = Conn::Offline(warning.into());
        app.error(&format!("not reconnecting: {warning}"), 0);
        app.notice(
            "peer closed connection: https://docs.rs/rustls/latest/x#y",
            0,
        );
        let rows = render(&mut app, 140, 12);
        let screen = rows.join("\n");
        assert!(!screen.contains('\u{fffd}'), "{screen}");
        assert!(!screen.contains("docs.rs"), "{screen}");
        for line in [
            "! not reconnecting: the certificate of localhost:7667 has CHANGED since you trusted it",
            "!   trusted:   AA:AA",
            "!   presented: BB:BB",
            "! forget it with",
            "!   mm trust forget localhost:7667",
            "* peer closed connection",
        ] {
            assert!(
                rows.iter().any(|r| r.ends_with(line)),
                "{line:?} as a row of its own:\n{screen}"
            );
        }
        let status = &rows[10];
        assert!(
            status.contains(
                "offline: the certificate of localhost:7667 has CHANGED since you trusted it …"
            ),
            "{status}"
        );
        // Chat lines stay one line whatever they hold.
        app.on_event(
            &Event::Public(ChatLine {
                room: String::new(),
                action: false,
                id: 9,
                ts: 0,
                from: "bob".into(),
                text: "one\n[secure] <carol> two".into(),
            }),
            0,
        );
        let rows = render(&mut app, 100, 12);
        assert!(
            rows.iter()
                .any(|r| r.contains("<bob> one\u{fffd}[secure] <carol> two")),
            "{rows:#?}"
        );
    }

    #[test]
    fn tabs_show_unread_counts_and_mentions() {
        let mut app = app_with_bob();
        app.on_event(
            &Event::Private(ChatLine {
                room: String::new(),
                action: false,
                id: 2,
                ts: 0,
                from: "bob".into(),
                text: "psst".into(),
            }),
            0,
        );
        let screen = render(&mut app, 80, 10);
        assert!(screen[0].contains("1 #lobby"), "{screen:?}");
        assert!(screen[0].contains("2 bob (1) !"), "{screen:?}");
        assert!(
            screen[1..].iter().any(|l| l.ends_with("<bob> hello room")),
            "{screen:?}"
        );
        assert!(
            screen[8].contains("alice@localhost:7667 · connected"),
            "{screen:?}"
        );
        assert!(screen[8].contains("#lobby · 2 online"), "{screen:?}");
        assert!(screen[9].starts_with("#lobby>"), "{screen:?}");
    }

    /// The text of a screen's rows, joined.
    fn rows_text(rows: &[String]) -> String {
        rows.join("\n")
    }

    #[test]
    fn scrolling_back_reaches_the_first_row_whatever_the_lines_and_the_window() {
        // Start-up notices, then history holding lines of 2,500 to 3,000 characters (each some
        // 20 rows at 150 columns), then short ones.
        let mut app = App::new("localhost:7667", "alice");
        app.notice("first notice at start-up", 0);
        app.notice("connected to localhost:7667 as alice; 2 online", 0);
        for (id, n) in [(1, 2500), (2, 3000), (3, 2800), (4, 2600)] {
            app.on_event(
                &Event::History(crate::ChatLine {
                    room: String::new(),
                    action: false,
                    id,
                    ts: 0,
                    from: "bob".into(),
                    text: format!("{}{id}", "long ".repeat(n / 5)),
                }),
                0,
            );
        }
        for id in 5..15 {
            app.on_event(
                &Event::Public(crate::ChatLine {
                    room: String::new(),
                    action: false,
                    id,
                    ts: 0,
                    from: "bob".into(),
                    text: format!("short {id}"),
                }),
                0,
            );
        }
        for (width, height) in [(150, 30), (80, 24), (200, 60), (40, 12)] {
            let pgup = |app: &mut App| app.on_key(KeyEvent::from(KeyCode::PageUp), 0);
            render(&mut app, width, height); // the window's size, for PgUp
            let mut screen;
            // PgUp until the view stops moving: the first row at the top.
            let mut steps = 0;
            loop {
                let before = app.current().scroll;
                pgup(&mut app);
                screen = render(&mut app, width, height);
                if app.current().scroll == before {
                    break;
                }
                steps += 1;
                assert!(steps < 1000, "{width}x{height}: no end");
            }
            assert!(
                screen[1].ends_with("* first notice at start-up"),
                "{width}x{height}: the first row at the top:\n{}",
                rows_text(&screen)
            );
            let status = &screen[usize::from(height) - 2];
            let rows = app.current().scroll;
            assert!(app.at_top());
            // (40 columns are too few for the whole bar.)
            assert!(
                width < 80
                    || status.contains(&format!("scrolled back {rows} rows, at the top (PgDn)")),
                "{width}x{height}: {status}"
            );
            // The count is the rows below the view: PgDn by PgDn back to the bottom, each a
            // page less 2 rows.
            let step = usize::from(height) - 3 - 2;
            let mut expected = rows;
            while expected > 0 {
                app.on_key(KeyEvent::from(KeyCode::PageDown), 0);
                expected = expected.saturating_sub(step);
                screen = render(&mut app, width, height);
                assert_eq!(app.current().scroll, expected);
                let status = &screen[usize::from(height) - 2];
                if expected > 0 && width >= 80 {
                    assert!(
                        status.contains(&format!("scrolled back {expected} rows (PgDn)"))
                            || status.contains(&format!("scrolled back {expected} row (PgDn)")),
                        "{status}"
                    );
                } else if expected == 0 {
                    assert!(!status.contains("scrolled back"), "{status}");
                }
            }
            assert!(screen[usize::from(height) - 3].ends_with("<bob> short 14"));
        }
    }

    #[test]
    fn a_view_scrolled_back_keeps_its_place_when_the_window_changes() {
        let mut app = App::new("localhost:7667", "alice");
        for id in 0..40 {
            app.on_event(
                &Event::Public(crate::ChatLine {
                    room: String::new(),
                    action: false,
                    id,
                    ts: 0,
                    from: "bob".into(),
                    text: format!("line {id} {}", "word ".repeat(60)),
                }),
                0,
            );
        }
        render(&mut app, 150, 30);
        for _ in 0..8 {
            app.on_key(KeyEvent::from(KeyCode::PageUp), 0);
        }
        let screen = render(&mut app, 150, 30);
        // The line at the bottom of the view: the last row naming a line.
        let last_named = |screen: &[String]| {
            screen
                .iter()
                .rev()
                .find_map(|r| {
                    r.split("<bob> line ")
                        .nth(1)
                        .and_then(|rest| rest.split(' ').next())
                        .map(str::to_owned)
                })
                .unwrap()
        };
        let before = last_named(&screen);
        // Narrower (more rows a line), then wider again: the same lines in view.
        let narrow = render(&mut app, 60, 30);
        let text = rows_text(&narrow);
        assert!(
            text.contains(&format!("<bob> line {before} ")) || {
                // The line's start may be above the view: its number, then, is one more than
                // the last line named.
                let shown = last_named(&narrow).parse::<usize>().unwrap();
                shown + 1 == before.parse::<usize>().unwrap()
            },
            "line {before} in view:\n{text}"
        );
        let wide = render(&mut app, 150, 30);
        assert_eq!(last_named(&wide), before, "{}", rows_text(&wide));
        // Taller than the whole conversation's rows: the view goes to the bottom, not past the top.
        render(&mut app, 150, 500);
        assert_eq!(app.current().scroll, 0);
    }

    #[test]
    fn the_room_shows_no_count_of_who_is_online_while_disconnected() {
        let mut app = app_with_bob();
        let status = |app: &mut App| render(app, 120, 8)[6].clone();
        assert!(status(&mut app).contains("#lobby · 2 online"));
        app.on_event(
            &Event::Closed {
                error: Some("connection reset".into()),
                undelivered: vec![],
            },
            0,
        );
        for conn in [
            Conn::Reconnecting {
                attempt: 1,
                in_secs: 2,
                reason: "connection reset".into(),
            },
            Conn::Offline("connection reset".into()),
        ] {
            app.conn = conn;
            let s = status(&mut app);
            assert!(s.contains("#lobby · online: unknown"), "{s}");
            assert!(!s.contains("2 online"), "{s}");
        }
        // The next connection's welcome says again.
        app.conn = Conn::Connected;
        app.set_online(vec!["alice".into()]);
        assert!(status(&mut app).contains("#lobby · 1 online"));
        // And so does a list of users.
        app.on_event(
            &Event::Closed {
                error: None,
                undelivered: vec![],
            },
            0,
        );
        app.on_event(&Event::Users(vec!["bob".into(), "alice".into()]), 0);
        assert!(status(&mut app).contains("#lobby · 2 online"));
        assert_eq!(app.online, ["alice", "bob"]);
    }

    #[test]
    fn the_unread_marker_sits_before_the_first_unread_line() {
        let mut app = app_with_bob();
        let bob = app.tab_for("bob").unwrap();
        app.push(bob, LineKind::Private, Some("bob"), "read already", 0);
        app.switch_to(bob);
        app.switch_to(0); // leaving bob's tab: what comes next is new
        app.push(bob, LineKind::Private, Some("bob"), "first new", 0);
        app.push(bob, LineKind::Private, Some("bob"), "second new", 0);
        app.switch_to(bob);
        let screen = render(&mut app, 60, 10);
        let marker = screen.iter().position(|l| l.contains("─ new ─")).unwrap();
        assert!(screen[marker - 1].ends_with("read already"), "{screen:?}");
        assert!(screen[marker + 1].ends_with("first new"), "{screen:?}");
    }

    #[test]
    fn the_status_bar_always_says_how_a_private_tab_is_protected() {
        let mut app = app_with_bob();
        let bob = app.tab_for("bob").unwrap();
        app.switch_to(bob);
        let status = |app: &mut App| render(app, 120, 8)[6].clone();
        assert!(status(&mut app).contains("bob: NOT end-to-end encrypted"));
        app.set_status("bob", &Status::Starting);
        assert!(status(&mut app).contains("setting up end-to-end encryption"));
        let key = [7u8; 32];
        app.set_status(
            "bob",
            &Status::Secure {
                key,
                trust: Trust::Pinned,
            },
        );
        let fp = short(&mm_common::identity::key_fingerprint(&key));
        let s = status(&mut app);
        assert!(
            s.contains("SECURE e2e") && s.contains(&fp) && s.contains("not verified"),
            "{s}"
        );
        app.set_status(
            "bob",
            &Status::Secure {
                key,
                trust: Trust::Verified,
            },
        );
        assert!(status(&mut app).contains("VERIFIED"));
        app.set_status(
            "bob",
            &Status::Failed(Failure::KeyChanged {
                pinned: key,
                presented: [9; 32],
            }),
        );
        assert!(status(&mut app).contains("KEY CHANGED — sending blocked"));
        assert_eq!(
            cell_bg(&mut app, 120, 8, "KEY CHANGED"),
            Color::Red,
            "red warning"
        );
    }

    #[test]
    fn history_and_away_mail_are_marked_and_long_lines_wrap() {
        let mut app = App::new("s:1", "alice");
        app.on_event(
            &Event::History(ChatLine {
                room: String::new(),
                action: false,
                id: 1,
                ts: 0,
                from: "carol".into(),
                text: "from before".into(),
            }),
            0,
        );
        app.on_event(
            &Event::Public(ChatLine {
                room: String::new(),
                action: false,
                id: 2,
                ts: 0,
                from: "carol".into(),
                text: "x".repeat(100),
            }),
            0,
        );
        let screen = render(&mut app, 60, 12);
        assert!(
            screen
                .iter()
                .any(|l| l.contains("[history] <carol> from before")),
            "{screen:?}"
        );
        let xs: usize = screen.iter().map(|l| l.matches('x').count()).sum();
        assert_eq!(xs, 100, "wrapped, nothing cut: {screen:?}");
        app.on_event(
            &Event::Offline(ChatLine {
                room: String::new(),
                action: false,
                id: 3,
                ts: 0,
                from: "dave".into(),
                text: "sent while away".into(),
            }),
            0,
        );
        app.switch_to(1);
        let screen = render(&mut app, 80, 6);
        assert!(
            screen
                .iter()
                .any(|l| l.contains("[while you were away] <dave> sent while away")),
            "{screen:?}"
        );
    }

    #[test]
    fn a_safety_number_is_a_readable_block_and_reconnecting_is_said() {
        let mut app = app_with_bob();
        let number = (0..12)
            .map(|i| format!("{:05}", i * 1111))
            .collect::<Vec<_>>()
            .join(" ");
        app.safety_block("bob", &number, 0);
        let bob = app.tab_for("bob").unwrap();
        app.switch_to(bob);
        app.conn = Conn::Reconnecting {
            attempt: 2,
            in_secs: 4,
            reason: "connection reset".into(),
        };
        let screen = render(&mut app, 100, 10);
        assert!(
            screen
                .iter()
                .any(|l| l.ends_with("00000  01111  02222  03333")),
            "{screen:?}"
        );
        assert!(
            screen
                .iter()
                .any(|l| l.ends_with("08888  09999  11110  12221")),
            "{screen:?}"
        );
        assert!(
            screen[8].contains("reconnecting in 4 s (attempt 2)"),
            "{screen:?}"
        );
    }

    #[test]
    fn hostile_text_cannot_reach_the_terminal() {
        let mut app = App::new("s", "alice");
        app.on_event(
            &Event::Public(crate::ChatLine {
                room: String::new(),
                action: false,
                id: 1,
                ts: 0,
                from: "bob".into(),
                text: "a\u{1b}[2Jb\u{202e}c\u{2028}[secure] <carol> d\u{2066}e".into(),
            }),
            0,
        );
        // Typed or pasted input is shown cleaned too.
        for c in "x\u{202E}y\u{2029}z".chars() {
            app.input.edit(crate::tui::input::Edit::Insert(c));
        }
        let screen = render(&mut app, 60, 5);
        assert!(
            screen
                .iter()
                .any(|l| l
                    .ends_with("<bob> a\u{FFFD}[2Jb\u{FFFD}c\u{FFFD}[secure] <carol> d\u{FFFD}e")),
            "{screen:?}"
        );
        assert!(
            screen.iter().any(|l| l.contains("x\u{FFFD}y\u{FFFD}z")),
            "{screen:?}"
        );
        for row in &screen {
            assert_eq!(mm_common::text::find_forbidden(row), None, "{row:?}");
        }
    }

    #[test]
    fn wrapping_breaks_between_words_and_inside_a_word_only_when_it_must() {
        let rows = |text: &str, width| -> Vec<String> {
            wrap(vec![Span::raw(text.to_string())], width)
                .iter()
                .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
                .collect()
        };
        assert_eq!(rows("the quick brown fox", 10), ["the quick ", "brown fox"]);
        assert_eq!(rows("abcdefghijkl", 5), ["abcde", "fghij", "kl"]);
        assert_eq!(rows("日本語のテキスト", 6), ["日本語", "のテキ", "スト"]);
        assert_eq!(rows("", 5), [""]);
    }

    #[test]
    fn a_draft_of_several_lines_shows_them_all_and_a_long_line_its_size() {
        let mut app = App::new("s", "alice");
        app.on_paste("first line\nsecond\tline\nthird", 0);
        let screen = render(&mut app, 60, 12);
        let input = &screen[9..];
        assert_eq!(
            input,
            [
                "#lobby (3 lines)> first line",
                "                  second    line",
                "                  third"
            ],
            "{screen:?}"
        );
        assert!(
            screen.iter().any(|l| l.contains("* pasted 3 lines")),
            "{screen:?}"
        );
        // The prompt counts as the paste's notice does: a last line break is no line, empty
        // lines are counted apart.
        let mut app = App::new("s", "alice");
        app.on_paste("a\nb\nc\nd\n", 0);
        let screen = render(&mut app, 60, 12);
        assert!(screen[8].starts_with("#lobby (4 lines)> a"), "{screen:?}");
        assert!(
            screen.iter().any(|l| l.contains("* pasted 4 lines:")),
            "{screen:?}"
        );
        let mut app = App::new("s", "alice");
        app.on_paste("a\n\nb\n", 0);
        let screen = render(&mut app, 60, 12);
        assert!(
            screen[9].starts_with("#lobby (2 lines, 1 empty)> a"),
            "{screen:?}"
        );
        assert!(
            screen
                .iter()
                .any(|l| l.contains("* pasted 2 lines (and 1 empty line, left out):")),
            "{screen:?}"
        );
        // More lines than rows: the cursor's line stays in view, the prompt on top.
        let mut app = App::new("s", "alice");
        let draft: Vec<String> = (1..=10).map(|i| format!("line {i}")).collect();
        app.on_paste(&draft.join("\n"), 0);
        let screen = render(&mut app, 60, 30);
        assert_eq!(screen[24], "#lobby (10 lines)> line 5", "{screen:?}");
        assert_eq!(screen[29], "                   line 10", "{screen:?}");
        // Over the limit: the size, in bytes.
        let mut app = App::new("s", "alice");
        app.on_paste(&"é".repeat(2100), 0);
        let screen = render(&mut app, 60, 5);
        assert!(screen[4].ends_with(" 4200/4096 bytes"), "{screen:?}");
        assert!(screen[4].starts_with("#lobby> éééé"), "{screen:?}");
        let (buffer, rows) = drawn(&mut app, 60, 5);
        let x = rows[4].chars().position(|c| c == '4').unwrap() as u16;
        assert_eq!(buffer[(x, 4)].fg, Color::Red, "over: in red");
    }

    #[test]
    fn a_room_tab_shows_its_topic_members_protection_and_member_pane() {
        use crate::{RoomEvent, RoomInfo};
        use mm_common::protocol::{Member, Modes, Role};
        let mut app = app_with_bob();
        app.on_event(
            &Event::Room(RoomEvent::Entered {
                room: RoomInfo {
                    name: "#dev".into(),
                    topic: "ship\u{202E} it".into(),
                    topic_by: "carol".into(),
                    modes: Modes {
                        moderated: true,
                        ..Modes::default()
                    },
                    members: 2,
                    role: Role::Owner,
                    seen: 0,
                    names: Vec::new(),
                },
                created: false,
                asked: false,
            }),
            0,
        );
        app.on_event(
            &Event::Room(RoomEvent::Names {
                room: "#dev".into(),
                members: vec![
                    Member {
                        nick: "alice".into(),
                        role: Role::Owner,
                        online: true,
                        away: false,
                    },
                    Member {
                        nick: "bob".into(),
                        role: Role::Op,
                        online: true,
                        away: true,
                    },
                ],
                complete: true,
            }),
            0,
        );
        app.on_event(
            &Event::Public(ChatLine {
                id: 5,
                ts: 0,
                room: "#dev".into(),
                action: false,
                from: "bob".into(),
                text: "alice: ping".into(),
            }),
            0,
        );
        let screen = render(&mut app, 100, 10);
        assert!(screen[0].contains("2 #dev (2) !1"), "{screen:?}");
        app.switch_to(1);
        app.show_members = true;
        let screen = render(&mut app, 100, 10);
        assert!(
            screen[8].contains("#dev · 2 members · +m · ship")
                && screen[8].contains("not end-to-end (the server reads room lines)"),
            "{screen:?}"
        );
        assert!(!screen.iter().any(|l| l.contains('\u{202E}')), "{screen:?}");
        assert!(screen[1].ends_with("│ 2 members"), "{screen:?}");
        assert!(screen[2].ends_with("│ ~alice"), "{screen:?}");
        assert!(screen[3].ends_with("│ @bob (away)"), "{screen:?}");
        assert!(
            screen.iter().any(|l| l.contains("<bob> alice: ping")),
            "{screen:?}"
        );
    }
}
