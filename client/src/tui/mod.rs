// Over 600 lines: about 150 of them are its tests (the burst reader, /help).
//! The interactive `mm` (stdin is a terminal): a ratatui + crossterm UI with one tab per
//! conversation, scrollback, an input line with completion, and a status bar that always says
//! whether the conversation shown is end-to-end encrypted.
//!
//! [`app`] holds the state (pure), [`ui`] draws it, [`input`] is the line editor; this module
//! owns the terminal, reads keys on a thread of its own, carries out commands with the
//! [`Client`], and reconnects with backoff when the connection drops.

pub mod app;
pub mod input;
pub mod ui;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use ratatui::crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    Event as TermEvent, KeyEventKind,
};
use ratatui::crossterm::execute;
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::app::{Action, App, Conn, Notification, Placing};
use self::ui::Theme;
use crate::command::Command;
use crate::display::clean;
use crate::execute::Outcome;
use crate::{Client, ConnectOptions, Event, Events, FlushError, SendError, Welcome};

/// Fewest seconds between two desktop notifications.
const NOTIFY_EVERY: Duration = Duration::from_secs(2);

/// Keys, beyond the commands.
const KEYS_HELP: &str = "\
keys:
  Alt+1..9, Ctrl+N / Ctrl+P   switch tabs (/next, /prev); /query NICK opens one, /close closes it
  PgUp / PgDn, mouse wheel    scroll back and forth; End: back to the bottom
  F2                          show or hide the members of the room tab shown (~owner @op +voiced)
  Ctrl+A / Ctrl+E, arrows     move in the line; Ctrl+W / Ctrl+U / Ctrl+K delete; Up/Down history
  Tab                         complete nicks, commands and #rooms
  paste, Alt+Enter            a draft of several lines: Enter sends each line as its own, in order
                              (the first line says where: /msg NICK or the tab); a tab is 4 spaces
  Ctrl+C, Ctrl+D, /quit       leave
  /reconnect                  connect again now (after another login took the account, or a refusal)
in a private tab, lines go to that person; /secure, /insecure, /verify, /verified, /accept-key need no nick
in a room tab (one per room you are in), lines go to that room; /part, /topic, /names, /kick, /op... need
no #room; /close leaves the room. The tab bar counts unread lines (N) and mentions of you !N";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// UI settings from the command line.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Raise a desktop notification (notify-send, else the terminal bell) for private lines and
    /// mentions in tabs not shown.
    pub notify: bool,
    /// Notices to show first (e.g. that keys were just created).
    pub notes: Vec<String>,
}

/// Puts the terminal back however the UI ends (return, error or panic).
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> anyhow::Result<(TerminalGuard, ratatui::DefaultTerminal)> {
        let terminal = ratatui::try_init().context("setting up the terminal")?;
        // ratatui's panic hook restores raw mode and the screen; ours also stops mouse reports,
        // or the shell would receive them after a crash.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = execute!(
                std::io::stdout(),
                DisableMouseCapture,
                DisableBracketedPaste
            );
            previous(info);
        }));
        let _ = execute!(std::io::stdout(), EnableMouseCapture, EnableBracketedPaste);
        Ok((TerminalGuard, terminal))
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            DisableMouseCapture,
            DisableBracketedPaste
        );
        ratatui::restore();
    }
}

/// Runs the UI on an established connection until the user quits.
///
/// # Errors
/// If the terminal cannot be set up or drawn.
pub async fn run(
    opts: ConnectOptions,
    (client, events, welcome): (Client, Events, Welcome),
    settings: Settings,
) -> anyhow::Result<ExitCode> {
    let theme = Theme {
        color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    let mut app = App::new(&opts.server, &welcome.nick);
    app.set_online(welcome.online.clone());
    app.max_text_len = text_limit(&welcome);
    for note in &settings.notes {
        app.notice(note, now_ms());
    }
    app.place(crate::render::welcome(&opts.server, &welcome), now_ms());
    app.notice("/help for commands and keys", now_ms());

    // Keys come from a thread: crossterm's reader blocks. They come in bursts: what arrived
    // together (a paste, in a terminal without bracketed paste) is handed over together.
    let (key_tx, mut keys) = mpsc::channel::<Chunk>(256);
    std::thread::Builder::new()
        .name("mm-keys".into())
        .spawn(move || {
            let mut reader = BurstReader::new(Terminal);
            while let Some(chunk) = reader.next_chunk() {
                if key_tx.blocking_send(chunk).is_err() {
                    break;
                }
            }
        })
        .context("starting the key reader")?;

    let (guard, mut terminal) = TerminalGuard::enter()?;
    let mut link = Link {
        client,
        events,
        retry_at: None,
        give_up: false,
        notify: settings.notify,
        last_notification: None,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));

    let quit = 'ui: loop {
        terminal.draw(|f| ui::draw(f, &mut app, theme))?;
        tokio::select! {
            chunk = keys.recv() => {
                let Some(chunk) = chunk else { break true };
                let now = now_ms();
                let is_key = |e: &TermEvent| matches!(e, TermEvent::Key(k) if k.kind != KeyEventKind::Release);
                let last_key = chunk.events.iter().rposition(is_key);
                let ends = chunk.ends;
                for (i, event) in chunk.events.into_iter().enumerate() {
                    match event {
                        TermEvent::Key(k) if k.kind != KeyEventKind::Release => {
                            // More keys follow in this burst: a later key of this chunk, or the
                            // next chunk of a burst that has not ended.
                            let more = !ends || last_key.is_some_and(|last| i < last);
                            match app.on_burst_key(k, more, now) {
                                Action::Quit => break 'ui true,
                                Action::Run(command) => {
                                    link.run(&mut app, vec![command], false, now).await;
                                }
                                Action::RunAll(commands) => {
                                    link.run(&mut app, commands, true, now).await;
                                    app.sent(now);
                                }
                                Action::Reconnect => link.reconnect_now(&mut app, now),
                                Action::None => {}
                            }
                        }
                        TermEvent::Mouse(m) => app.on_mouse(m),
                        TermEvent::Paste(text) => app.on_paste(&text, now),
                        _ => {} // resize: the next draw adapts
                    }
                }
                if ends {
                    app.end_burst();
                }
            }
            event = link.events.next() => {
                // None: the driver stopped for good (it never does while this UI holds the
                // handles); nothing more will come.
                let Some(event) = event else { break 'ui false };
                link.on_event(&mut app, &event);
                // Take whatever else already arrived before drawing again: under a flood of
                // lines the screen is redrawn once per burst, not once per line (a redraw of
                // a full 120x40 screen costs ~0.3 ms; see BENCHMARKS.md).
                for _ in 0..MAX_EVENTS_PER_DRAW {
                    let Some(event) = link.events.try_next() else {
                        break;
                    };
                    link.on_event(&mut app, &event);
                }
            }
            _ = tick.tick() => {
                // The countdown in the status bar.
                if let (Some(at), Conn::Reconnecting { in_secs, .. }) = (link.retry_at, &mut app.conn) {
                    *in_secs = at.saturating_duration_since(Instant::now()).as_secs() + 1;
                }
            }
        }
        refresh_security(&mut app, &link.client);
    };
    let mut unanswered = 0;
    if link.client.is_connected() {
        let c = &link.client;
        // Lines typed just before quitting still go: wait (a little) for their answers.
        if c.unanswered() > 0 {
            app.notice(
                &format!(
                    "quitting: waiting for the server to take {}...",
                    crate::display::count(c.unanswered(), "line", "lines")
                ),
                now_ms(),
            );
            terminal.draw(|f| ui::draw(f, &mut app, theme))?;
            if let Err(FlushError::Stalled { unanswered: n }) = c.flush(QUIT_FLUSH).await {
                unanswered = n;
            }
        }
        // Tell the server we leave; do not wait long for its goodbye.
        let _ = tokio::time::timeout(Duration::from_secs(2), c.quit()).await;
    }
    drop(terminal);
    drop(guard);
    if let Err(why) = opts.secure.save_pending() {
        crate::stdio::err(&format!(
            "mm: pinned keys and end-to-end sessions could not be saved ({why}): nothing was sent with the unsaved state, but messages shown since may be shown again after a restart; fix the home directory (free some space) before the next start"
        ));
        return Ok(ExitCode::from(1));
    }
    if unanswered > 0 {
        crate::stdio::err(&format!(
            "mm: {} not delivered: no answer from the server before quitting",
            crate::display::count(unanswered, "line", "lines")
        ));
        return Ok(ExitCode::from(1));
    }
    Ok(if quit {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// At quit, how long the server may stay silent while lines wait for its answers.
const QUIT_FLUSH: Duration = Duration::from_secs(5);

/// Most events handled between two redraws.
const MAX_EVENTS_PER_DRAW: usize = 512;

/// The connection, which the driver reconnects by itself ([`ConnectOptions::reconnect`]), and
/// what the status bar shows of it.
struct Link {
    client: Client,
    events: Events,
    /// When the driver's next attempt starts (for the countdown in the status bar).
    retry_at: Option<Instant>,
    /// The driver stopped reconnecting by itself: a reconnection failed in a way retrying
    /// cannot fix (refused login, changed server key), or another login took the account
    /// over. `/reconnect` only.
    give_up: bool,
    notify: bool,
    last_notification: Option<Instant>,
}

impl Link {
    /// Carries out commands in order, stopping at the first one that fails. With `give_back`
    /// (the lines of a draft), the lines not sent go back into the input.
    async fn run(&self, app: &mut App, commands: Vec<Command>, give_back: bool, now: u64) {
        // Between connections the client would wait for the next one: the UI says so instead.
        if !self.client.is_connected() {
            if self.give_up {
                app.error(
                    "not connected: nothing was sent; /reconnect to connect again",
                    now,
                );
            } else {
                app.error("not connected: nothing was sent; waiting to reconnect", now);
            }
            if give_back {
                app.unsent(&commands, now);
            }
            return;
        }
        for (i, command) in commands.iter().enumerate() {
            if !carry_out(app, &self.client, command.clone(), now).await {
                if give_back {
                    app.unsent(&commands[i..], now);
                }
                return;
            }
        }
    }

    fn on_event(&mut self, app: &mut App, event: &Event) {
        match event {
            Event::Reconnecting {
                attempt,
                in_secs,
                reason,
            } => {
                self.give_up = false;
                self.retry_at = Some(Instant::now() + Duration::from_secs(*in_secs));
                app.conn = Conn::Reconnecting {
                    attempt: *attempt,
                    in_secs: *in_secs,
                    reason: reason.clone(),
                };
            }
            Event::Reconnected(welcome) => {
                self.retry_at = None;
                app.conn = Conn::Connected;
                app.replaced = false;
                app.max_text_len = text_limit(welcome);
                app.nick = welcome.nick.clone();
                app.set_online(welcome.online.clone());
            }
            Event::GaveUp { reason, .. } => {
                self.give_up = true;
                self.retry_at = None;
                if !app.replaced {
                    app.conn = Conn::Offline(reason.clone());
                }
            }
            _ => {}
        }
        let note = app.on_event(event, now_ms());
        if let (Some(note), true) = (note, self.notify) {
            notify(&note, &mut self.last_notification);
        }
    }

    /// `/reconnect`: connect now, whatever happened before.
    fn reconnect_now(&mut self, app: &mut App, now: u64) {
        if self.client.is_connected() {
            app.notice("already connected", now);
            return;
        }
        self.give_up = false;
        self.retry_at = None;
        app.notice(&format!("reconnecting to {}...", app.server), now);
        app.conn = Conn::Reconnecting {
            attempt: 1,
            in_secs: 0,
            reason: "as you asked".into(),
        };
        self.client.reconnect_now();
    }
}

/// The server's limit on a chat text, in bytes.
fn text_limit(welcome: &Welcome) -> usize {
    usize::try_from(welcome.max_text_len).unwrap_or(usize::MAX)
}

/// Longest pause between two events of one burst: a paste arrives in pieces microseconds apart
/// on an idle machine, and a busy one can delay a piece by a scheduler time slice (milliseconds,
/// up to tens of them), so the gap leaves that room. A hand takes ~50 ms or more from a key to
/// the next; an Enter taken as a line break by mistake makes a visible draft, never a sent line.
const BURST_GAP: Duration = Duration::from_millis(40);

/// Most events handed over at once: input that never pauses is still handed over, in chunks of
/// one burst.
const MAX_CHUNK: usize = 64 * 1024;

/// Events read together, in order.
#[derive(Debug)]
struct Chunk {
    events: Vec<TermEvent>,
    /// The burst ends with this chunk: the input paused ([`BURST_GAP`]) after its last event.
    /// Otherwise the next chunk goes on with the same burst.
    ends: bool,
}

/// Where terminal events come from: crossterm's reader, or a script in tests.
trait EventSource {
    /// Whether an event is there, waiting at most `timeout` for one.
    fn poll(&mut self, timeout: Duration) -> std::io::Result<bool>;
    /// The next event, waiting for it.
    fn read(&mut self) -> std::io::Result<TermEvent>;
}

/// The terminal, through crossterm. Its reader (crossterm's `use-dev-tty` one) waits with
/// poll(2), which says there is input as long as some waits unread: input that came in one go,
/// however long, is all read without waiting for another key.
struct Terminal;

impl EventSource for Terminal {
    fn poll(&mut self, timeout: Duration) -> std::io::Result<bool> {
        ratatui::crossterm::event::poll(timeout)
    }

    fn read(&mut self) -> std::io::Result<TermEvent> {
        ratatui::crossterm::event::read()
    }
}

/// Splits terminal input into bursts by time alone: a burst is what arrives without a pause of
/// [`BURST_GAP`]; it ends at the first such pause, whatever the sizes of the terminal's reads.
/// An event is handed over as soon as the input pauses after it: never held back until the next
/// key, never merged into a burst that already ended.
struct BurstReader<S> {
    source: S,
    /// The first event of the next chunk, read to know that the burst goes on.
    next: Option<TermEvent>,
}

impl<S: EventSource> BurstReader<S> {
    fn new(source: S) -> BurstReader<S> {
        BurstReader { source, next: None }
    }

    /// The next events and whether their burst ends with them; `None` when the terminal is
    /// gone.
    fn next_chunk(&mut self) -> Option<Chunk> {
        let first = match self.next.take() {
            Some(event) => event,
            None => self.source.read().ok()?,
        };
        let mut events = vec![first];
        loop {
            if !self.source.poll(BURST_GAP).unwrap_or(false) {
                return Some(Chunk { events, ends: true });
            }
            let Ok(event) = self.source.read() else {
                return Some(Chunk { events, ends: true });
            };
            if events.len() >= MAX_CHUNK {
                self.next = Some(event);
                return Some(Chunk {
                    events,
                    ends: false,
                });
            }
            events.push(event);
        }
    }
}

fn refresh_security(app: &mut App, client: &Client) {
    let peers: Vec<String> = app
        .tabs
        .iter()
        .filter_map(|t| t.peer().map(str::to_owned))
        .collect();
    for peer in peers {
        let status = client.secure_status(&peer);
        app.set_status(&peer, &status);
    }
}

/// Raises a desktop notification with `notify-send` (no shell involved), or rings the terminal
/// bell where there is none; at most one per [`NOTIFY_EVERY`].
fn notify(note: &Notification, last: &mut Option<Instant>) {
    if last.is_some_and(|t| t.elapsed() < NOTIFY_EVERY) {
        return;
    }
    *last = Some(Instant::now());
    let body: String = clean(&note.body).chars().take(200).collect();
    let sent = std::process::Command::new("notify-send")
        .args(["--app-name=mm", "--", &clean(&note.title), &body])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok();
    if !sent {
        let mut out = std::io::stdout();
        let _ = out.write_all(b"\x07");
        let _ = out.flush();
    }
}

/// Carries out a command resolved by [`App::resolve`] ([`crate::execute`]); false if it
/// failed (and said why). `/help` adds the terminal UI's keys.
async fn carry_out(app: &mut App, client: &Client, command: Command, now: u64) -> bool {
    let help = command == Command::Help;
    let outcome = crate::execute::execute(client, command, &mut Placing { app, now }).await;
    if help {
        for line in KEYS_HELP.lines() {
            app.notice(line, now);
        }
    }
    match outcome {
        Outcome::Done | Outcome::Quit => true,
        Outcome::Refused => false,
        Outcome::NotConnected => {
            app.error(&format!("not sent: {}", SendError::NotConnected), now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{self, HELP};
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    /// Events arriving at given times (ms), on a clock of its own: `poll` and `read` wait (move
    /// the clock) as a terminal would.
    struct Script {
        now: u64,
        events: std::collections::VecDeque<(u64, TermEvent)>,
    }

    impl Script {
        fn new(events: Vec<(u64, TermEvent)>) -> Script {
            Script {
                now: 0,
                events: events.into(),
            }
        }
    }

    impl EventSource for Script {
        fn poll(&mut self, timeout: Duration) -> std::io::Result<bool> {
            let until = self.now + u64::try_from(timeout.as_millis()).unwrap();
            match self.events.front() {
                Some(&(at, _)) if at <= until => {
                    self.now = self.now.max(at);
                    Ok(true)
                }
                _ => {
                    self.now = until;
                    Ok(false)
                }
            }
        }

        fn read(&mut self) -> std::io::Result<TermEvent> {
            let (at, event) = self
                .events
                .pop_front()
                .ok_or_else(|| std::io::Error::other("the terminal is gone"))?;
            self.now = self.now.max(at);
            Ok(event)
        }
    }

    fn press(code: KeyCode) -> TermEvent {
        TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    /// The chunks read from `events`: (how many events, whether the burst ends).
    fn chunks(events: Vec<(u64, TermEvent)>) -> Vec<(Vec<TermEvent>, bool)> {
        let mut reader = BurstReader::new(Script::new(events));
        std::iter::from_fn(|| reader.next_chunk())
            .map(|c| (c.events, c.ends))
            .collect()
    }

    #[test]
    fn a_burst_ends_when_the_input_pauses_and_a_key_after_a_pause_comes_alone() {
        // 3,000 characters at once (more than any read of the terminal), then Enter 3 s later,
        // then a letter 1 s after that.
        let mut events: Vec<(u64, TermEvent)> =
            (0..3000).map(|_| (0, press(KeyCode::Char('x')))).collect();
        events.push((3000, press(KeyCode::Enter)));
        events.push((4000, press(KeyCode::Char('a'))));
        let got = chunks(events);
        assert_eq!(
            got.len(),
            3,
            "{:?}",
            got.iter().map(|c| c.0.len()).collect::<Vec<_>>()
        );
        assert_eq!((got[0].0.len(), got[0].1), (3000, true));
        assert_eq!(
            got[1],
            (vec![press(KeyCode::Enter)], true),
            "Enter on its own"
        );
        assert_eq!(got[2], (vec![press(KeyCode::Char('a'))], true));

        // Pieces 1 ms apart are one burst; a pause of 41 ms ends it; 40 ms is still within.
        let got = chunks(vec![
            (0, press(KeyCode::Char('a'))),
            (1, press(KeyCode::Enter)),
            (2, press(KeyCode::Char('b'))),
            (42, press(KeyCode::Char('c'))),
            (83, press(KeyCode::Enter)),
        ]);
        let sizes: Vec<(usize, bool)> = got.iter().map(|(e, ends)| (e.len(), *ends)).collect();
        assert_eq!(sizes, [(4, true), (1, true)]);
    }

    #[test]
    fn input_that_never_pauses_is_handed_over_in_chunks_of_one_burst() {
        let n = MAX_CHUNK * 2 + 10;
        let mut events: Vec<(u64, TermEvent)> = (0..n)
            .map(|i| (u64::try_from(i / 1000).unwrap(), press(KeyCode::Left)))
            .collect();
        events.push((1000, press(KeyCode::Enter)));
        let got = chunks(events);
        let sizes: Vec<(usize, bool)> = got.iter().map(|(e, ends)| (e.len(), *ends)).collect();
        assert_eq!(
            sizes,
            [
                (MAX_CHUNK, false),
                (MAX_CHUNK, false),
                (10, true),
                (1, true)
            ],
            "nothing lost, nothing held back past the end of the burst"
        );
    }

    #[test]
    fn help_in_the_terminal_ui_names_every_command_it_knows() {
        let help = format!("{HELP}\n{KEYS_HELP}");
        let words: Vec<&str> = help
            .split(|c: char| c.is_whitespace() || ",;()".contains(c))
            .collect();
        // Tab completes every command the UI takes, its own (/query, /close...) included.
        for command in app::COMMANDS {
            assert!(
                words.contains(&command),
                "/help in the terminal UI does not name {command}"
            );
        }
        for (name, _) in command::NAMES {
            let command = format!("/{name}");
            assert!(
                app::COMMANDS.contains(&command.as_str()),
                "Tab does not complete {command}"
            );
        }
        // And the UI takes each of them: none is an unknown command.
        for command in app::COMMANDS {
            let mut ui = App::new("localhost:7667", "alice");
            ui.resolve(&format!("{command} bob hi"), 0);
            let unknown = ui
                .tabs
                .iter()
                .flat_map(|tab| &tab.lines)
                .any(|line| line.text.contains("unknown command"));
            assert!(!unknown, "the terminal UI does not know {command}");
        }
    }
}
