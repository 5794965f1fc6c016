//! Line mode's standard streams, made safe against what a pipe can do: input lines are read
//! with a bound (a line without an end cannot grow memory), checked for UTF-8 and numbered for
//! messages; output never panics on a closed pipe (`mm | head -2`).

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest input line kept, in bytes, without its line end: room for a `/msg NICK` command
/// with the protocol's longest text (4,096 bytes) and then some. A longer line is refused and
/// skipped to its end; its real size is reported.
pub const MAX_INPUT_LINE: usize = 16 * 1024;

/// One line of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputLine {
    /// A line of text, without its `\n` or `\r\n`.
    Text(String),
    /// Not valid UTF-8 (nothing of it is used).
    NotUtf8,
    /// Longer than the reader's bound.
    TooLong {
        /// Its real length in bytes, without the line end.
        len: usize,
    },
}

/// Reads numbered lines (from 1) with a bound on the memory one line can take.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    max: usize,
    number: u64,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// Lines of `inner`, each kept up to `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            max,
            number: 0,
        }
    }

    /// The next line and its number; `None` at the end. A last line without `\n` counts.
    ///
    /// # Errors
    /// An I/O error from the input; the line it interrupted is lost.
    pub async fn next_line(&mut self) -> std::io::Result<Option<(u64, InputLine)>> {
        let mut kept: Vec<u8> = Vec::new();
        let mut len = 0usize;
        let mut any = false;
        let mut last = None;
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let (part, used, end) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], i + 1, true),
                None => (chunk, chunk.len(), false),
            };
            len = len.saturating_add(part.len());
            if let Some(&b) = part.last() {
                last = Some(b);
            }
            // Keep one byte over the bound, so that a `\r` right after it can still go.
            if kept.len() + part.len() <= self.max + 1 {
                kept.extend_from_slice(part);
            }
            self.inner.consume(used);
            if end {
                break;
            }
        }
        self.number += 1;
        if last == Some(b'\r') {
            len -= 1;
            kept.pop();
        }
        let line = if len > self.max {
            InputLine::TooLong { len }
        } else {
            match String::from_utf8(kept) {
                // A byte order mark that starts the input (a file saved by some Windows editors)
                // marks the encoding, not text: dropped rather than refused as a format character.
                Ok(text) if self.number == 1 && text.starts_with('\u{FEFF}') => {
                    InputLine::Text(text['\u{FEFF}'.len_utf8()..].to_owned())
                }
                Ok(text) => InputLine::Text(text),
                Err(_) => InputLine::NotUtf8,
            }
        };
        Ok(Some((self.number, line)))
    }
}

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `line` and a newline to stdout and flushes. False when stdout is closed (e.g. the
/// reading end of a pipe went away): then nothing more is written to it.
///
/// The last gate of line mode, whose output scripts split into lines: whatever `line` holds,
/// what is written is one line with no character chat text may not hold (`mm_common::text`:
/// no line break of any kind, no bidi or format control, no escape sequence). The display
/// functions clean what came from the network already; this catches anything they missed.
pub fn out(line: &str) -> bool {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return false;
    }
    let line = mm_common::text::sanitize(line);
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    if written.is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        return false;
    }
    true
}

/// Whether a write to stdout failed.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Writes `line` and a newline to stderr; a closed stderr is ignored (there is nowhere left
/// to say anything). Messages of several lines keep their `\n`s; anything else chat text may
/// not hold (a server's error detail could carry it) is replaced, as in [`out`].
pub fn err(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{}", clean_lines(line)).and_then(|()| stderr.flush());
}

/// `text` with each of its `\n`-separated lines cleaned (`mm_common::text::sanitize`), and
/// without any library's documentation link ([`crate::explain::scrub`]): stderr is mm's own
/// words.
fn clean_lines(text: &str) -> String {
    crate::explain::scrub(text)
        .split('\n')
        .map(mm_common::text::sanitize)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes `text` to stderr without a newline (a prompt); errors are ignored as in [`err`].
pub fn err_prompt(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{text}").and_then(|()| stderr.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_keeps_its_newlines_and_nothing_else() {
        assert_eq!(
            clean_lines("mm: refused: a\u{2028}b\u{1b}[2J\nsecond line\r"),
            "mm: refused: a\u{FFFD}b\u{FFFD}[2J\nsecond line\u{FFFD}"
        );
    }

    async fn read_all(input: &[u8], max: usize) -> Vec<(u64, InputLine)> {
        // A small buffer, so that lines span several reads.
        let mut reader = LineReader::new(tokio::io::BufReader::with_capacity(4, input), max);
        let mut lines = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            lines.push(line);
        }
        lines
    }

    fn text(s: &str) -> InputLine {
        InputLine::Text(s.into())
    }

    #[tokio::test]
    async fn hostile_input_is_numbered_bounded_and_never_cut() {
        let mut input = b"line one\ncaf\xe9 au lait\r\nline three\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100));
        input.extend(b"\nnul\0byte\n\n/msg bob no newline");
        let lines = read_all(&input, 20).await;
        assert_eq!(
            lines,
            [
                (1, text("line one")),
                (2, InputLine::NotUtf8),
                (3, text("line three")),
                (4, InputLine::TooLong { len: 100 }),
                (5, text("nul\0byte")),
                (6, text("")),
                (7, text("/msg bob no newline")),
            ]
        );
    }

    #[tokio::test]
    async fn the_bound_is_exact_and_crlf_does_not_count() {
        let lines = read_all(b"12345\r\n123456\r\n\r\n", 5).await;
        assert_eq!(
            lines,
            [
                (1, text("12345")),
                (2, InputLine::TooLong { len: 6 }),
                (3, text("")),
            ]
        );
        assert!(read_all(b"", 5).await.is_empty());
    }

    #[tokio::test]
    async fn a_byte_order_mark_is_dropped_only_where_the_input_starts() {
        let lines = read_all("\u{FEFF}first\n\u{FEFF}second\n".as_bytes(), 100).await;
        assert_eq!(lines, [(1, text("first")), (2, text("\u{FEFF}second"))]);
    }
}
