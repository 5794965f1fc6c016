//! Line mode (stdin is not a terminal: for scripts, bots and tests): every stdin line is a chat
//! line or a /command ([`crate::execute`]), every event is printed as one line on stdout
//! ([`crate::render`], laid out by [`crate::display`]), and EOF quits.

use std::process::ExitCode;
use std::time::Duration;

use mm_common::e2e::E2eEvent;
use mm_common::protocol::ErrorCode;
use tokio::sync::oneshot;

use super::{EXIT_FAILURE, EXIT_REFUSED, EXIT_REPLACED, EXIT_STDOUT_CLOSED};
use crate::command;
use crate::display::{self, Style};
use crate::execute::{Outcome, Sink};
use crate::render::Rendered;
use crate::stdio::{self, InputLine, LineReader, MAX_INPUT_LINE};
use crate::{Client, Event, Events, FlushError, Welcome};

/// How long to wait for the server to close after we quit, once every line has its answer.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// At EOF, how long the server may stay silent (pinged meanwhile) while lines still wait for
/// their answers before `mm` gives up on it.
const STALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Line mode's sink: each item as its line ([`display::format`], without colour), to `say`.
/// Line mode does not echo what it sends.
struct LineSink<F>(F);

impl<F: FnMut(String)> Sink for LineSink<F> {
    fn show(&mut self, item: Rendered) {
        if let Some(line) = display::format(&item, Style::PLAIN) {
            (self.0)(line);
        }
    }
}

/// Parses and carries out one input line. `say` shows lines to the user (stdout).
async fn execute(client: &Client, line: &str, say: impl FnMut(String)) -> Outcome {
    let mut sink = LineSink(say);
    match command::parse(line) {
        Err(e) => {
            sink.show(Rendered::error(e.0));
            Outcome::Refused
        }
        Ok(command) => crate::execute::execute(client, command, &mut sink).await,
    }
}

/// How the input side of line mode ended.
#[derive(Debug, Default)]
struct InputEnd {
    /// Input lines `mm` refused (and said why).
    refused: usize,
    /// Chat lines not taken because the connection was closed.
    not_taken: usize,
    /// Reading stdin failed.
    read_error: bool,
    /// The server stopped answering while this many lines waited for their answers.
    stalled: Option<usize>,
}

/// The fates of our lines that were not delivered, counted for the exit summary.
#[derive(Debug, Default)]
struct Undelivered {
    /// Refused by `mm` before sending.
    by_mm: usize,
    /// Refused by the server (a non-fatal error answering the line).
    by_server: usize,
    /// Waited for a secure session that failed or ended: never sent.
    unsent: usize,
    /// No answer when the connection ended (or when the server stopped answering).
    unanswered: usize,
    /// The connection ended before the input did: the rest of it was never read.
    input_unread: bool,
}

impl Undelivered {
    fn total(&self) -> usize {
        self.by_mm + self.by_server + self.unsent + self.unanswered
    }

    /// `mm: 3 lines not delivered: 1 refused by mm, 2 without an answer ...`.
    fn summary(&self, lost: Option<&str>) -> String {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.by_mm, "refused by mm"),
            (self.by_server, "refused by the server"),
            (
                self.unsent,
                "not sent: no end-to-end session could be set up (see above)",
            ),
            (self.unanswered, "without an answer"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        let n = self.total();
        if n == 0 {
            // Nothing was lost; only the connection was.
            return format!(
                "mm: connection lost ({}); every line was delivered{}",
                lost.unwrap_or("closed"),
                if self.input_unread {
                    " (the rest of the input was not read)"
                } else {
                    ""
                }
            );
        }
        let mut text = format!(
            "mm: {} not delivered",
            crate::display::count(n, "line", "lines")
        );
        if !parts.is_empty() {
            text.push_str(&format!(": {}", parts.join(", ")));
        }
        if let Some(lost) = lost {
            text.push_str(&format!(" ({lost})"));
        }
        if self.input_unread {
            // Lines after these were never read, so they are in no count above.
            text.push_str("; the rest of the input was not read");
        }
        text
    }
}

/// Reads stdin to its end (or a closed stdout), runs every line, waits for the answers to
/// everything sent, then reports how it went on `done` (the event loop then quits).
async fn read_input(
    client: Client,
    mut stop: oneshot::Receiver<()>,
    done: oneshot::Sender<InputEnd>,
) {
    let mut end = InputEnd::default();
    let mut input = LineReader::new(
        tokio::io::BufReader::new(tokio::io::stdin()),
        MAX_INPUT_LINE,
    );
    // A closed stdout (`stop`) ends the reading: nobody sees what happens any more.
    while !stdio::stdout_closed() {
        let next = tokio::select! {
            next = input.next_line() => next,
            _ = &mut stop => break,
        };
        let (number, line) = match next {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                stdio::err(&format!("mm: reading stdin: {e}"));
                end.read_error = true;
                break;
            }
        };
        let text = match line {
            InputLine::Text(text) => text,
            InputLine::NotUtf8 => {
                stdio::err(&format!(
                    "mm: stdin line {number} is not valid UTF-8; not sent"
                ));
                end.refused += 1;
                continue;
            }
            InputLine::TooLong { len } => {
                stdio::err(&format!(
                    "mm: stdin line {number} is {len} bytes, over the {MAX_INPUT_LINE} bytes mm reads as a line; not sent"
                ));
                end.refused += 1;
                continue;
            }
        };
        match execute(&client, &text, |l| {
            stdio::out(&l);
        })
        .await
        {
            Outcome::Done => {}
            Outcome::Refused => end.refused += 1,
            Outcome::NotConnected => {
                end.not_taken += 1;
                break;
            }
            Outcome::Quit => break,
        }
    }
    // Everything read is queued; quit only once all of it has its answer, however long the
    // pacing takes, unless the server stops answering.
    if let Err(FlushError::Stalled { unanswered }) = client.flush(STALL_TIMEOUT).await {
        end.stalled = Some(unanswered);
    }
    // The event loop quits: in turn with showing events, so that quitting (which
    // acknowledges what was shown) never counts a line it is still trying to print.
    let _ = done.send(end);
}

/// Line mode: stdin lines in, one line per event out. Reading stdin runs in its own task so that
/// printing events never waits behind a send that waits for the server.
///
/// Exit status: 0 when every line was delivered; 1 when the connection was lost or the server
/// stopped answering; 2 when some lines were refused; 3 when the account logged in from
/// another client, which took over; 141 when stdout was closed. Any line not delivered is
/// counted in one line on stderr.
pub(super) async fn line_mode(
    server: &str,
    client: Client,
    mut events: Events,
    welcome: Welcome,
    reconnect: bool,
) -> ExitCode {
    stdio::out(&display::welcome_line(server, &welcome, Style::PLAIN));
    let (done_tx, mut done_rx) = oneshot::channel::<InputEnd>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut stop_tx = Some(stop_tx);
    tokio::spawn(read_input(client.clone(), stop_rx, done_tx));

    let mut fates = Undelivered::default();
    let mut input: Option<InputEnd> = None;
    let mut lost: Option<String> = None;
    let mut replaced = false;
    let deadline = tokio::time::sleep(Duration::from_secs(u64::MAX / 4));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            biased; // see the end of the input before the close it causes
            end = &mut done_rx, if input.is_none() => {
                let Ok(end) = end else {
                    lost = Some("mm's input task failed".into());
                    break;
                };
                let stalled = end.stalled;
                input = Some(end);
                if let Some(n) = stalled {
                    fates.unanswered += n;
                    lost = Some(format!("the server stopped answering for {} s", STALL_TIMEOUT.as_secs()));
                    break;
                }
                deadline.as_mut().reset(tokio::time::Instant::now() + QUIT_TIMEOUT);
                client.quit().await;
            }
            event = events.next() => {
                let Some(event) = event else { break };
                // Giving up ends line mode: its reason (several lines, e.g. a CHANGED
                // certificate) is said on stderr at the end, where line breaks are kept.
                let shown = if matches!(event, Event::GaveUp { .. }) {
                    Vec::new()
                } else {
                    display::event_lines(&event, Style::PLAIN)
                };
                for line in shown {
                    if !stdio::out(&line) {
                        // stdout is closed: what it did not show stays on the server (not
                        // acknowledged), reading input stops, what was read still goes.
                        events.hold();
                        if let Some(stop) = stop_tx.take() {
                            let _ = stop.send(());
                        }
                        break;
                    }
                }
                match event {
                    Event::Error { line: Some(_), .. } => fates.by_server += 1,
                    // Say why the connection ends (e.g. logged in elsewhere), not just that.
                    Event::Error { fatal: true, code, detail, .. } if lost.is_none() => {
                        replaced = code == ErrorCode::REPLACED;
                        lost = Some(format!("{detail} ({code})"));
                    }
                    Event::Secure(E2eEvent::Failed { unsent, .. } | E2eEvent::Ended { unsent, .. }) => {
                        fates.unsent += unsent.len();
                    }
                    Event::Closed { undelivered, .. } if reconnect && input.is_none() && !replaced => {
                        // Reconnecting follows; say which lines may not have arrived.
                        fates.unanswered += undelivered.len();
                        if !undelivered.is_empty() {
                            stdio::err(&format!(
                                "mm: {} without an answer from the server when the connection dropped: they may not have arrived",
                                display::count(undelivered.len(), "line", "lines")
                            ));
                        }
                    }
                    Event::GaveUp { reason, unsent, .. } => {
                        fates.unanswered += unsent.len();
                        lost = Some(reason);
                        break;
                    }
                    // Connected again: what ended the connection before is over.
                    Event::Reconnected(_) => lost = None,
                    Event::Closed { error, undelivered } => {
                        let unanswered = undelivered.len();
                        fates.unanswered += unanswered;
                        // After the input ended a close is the end of the session, unless it
                        // came with an error or left lines without an answer: then it was lost.
                        if lost.is_none()
                            && (input.is_none() || error.is_some() || unanswered > 0)
                        {
                            lost = Some(error.unwrap_or_else(|| "the server closed the connection".into()));
                        }
                        break;
                    }
                    _ => {}
                }
            }
            // Every line had its answer; only the goodbye is missing.
            () = &mut deadline => break,
        }
    }
    let input_ended = input.is_some();
    let end = input.unwrap_or_default();
    fates.by_mm += end.refused;
    fates.unanswered += end.not_taken;
    // A last try to save what the disk refused so far: what is not saved is forgotten.
    let unsaved = client
        .unsaved()
        .filter(|_| client.retry_save_now().is_err());
    if let Some(why) = &unsaved {
        stdio::err(&format!(
            "mm: pinned keys and end-to-end sessions could not be saved ({why}): nothing was sent with the unsaved state, but messages shown since may be shown again after a restart; fix the home directory (free some space) before the next start"
        ));
    }
    if replaced {
        stdio::err(&format!(
            "mm: {} logged in from another client (same account, same certificate); this one is disconnected and does not reconnect",
            welcome.nick
        ));
        if fates.total() > 0 {
            stdio::err(&fates.summary(None));
        }
        return ExitCode::from(EXIT_REPLACED);
    }
    if lost.is_some() || fates.total() > 0 {
        // The connection ended before the input did: what came after was never read.
        fates.input_unread = !input_ended && lost.is_some();
        stdio::err(&fates.summary(lost.as_deref()));
    }
    if lost.is_some() || unsaved.is_some() {
        ExitCode::from(EXIT_FAILURE)
    } else if fates.total() > 0 || end.read_error {
        ExitCode::from(EXIT_REFUSED)
    } else if stdio::stdout_closed() {
        ExitCode::from(EXIT_STDOUT_CLOSED)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::Undelivered;

    #[test]
    fn a_summary_says_when_the_rest_of_the_input_was_not_read_whatever_else_was_lost() {
        let fates = Undelivered {
            unanswered: 1024,
            input_unread: true,
            ..Undelivered::default()
        };
        assert_eq!(
            fates.summary(Some("the server closed the connection")),
            "mm: 1024 lines not delivered: 1024 without an answer (the server closed the connection); the rest of the input was not read"
        );
        let read_all = Undelivered {
            unanswered: 2,
            ..Undelivered::default()
        };
        assert_eq!(
            read_all.summary(None),
            "mm: 2 lines not delivered: 2 without an answer"
        );
    }
}
