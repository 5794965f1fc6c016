// Over 600 lines: a third of them are its tests.
//! The input: a small line editor with the usual terminal keys, input history and Tab
//! completion. Usually one line; a paste of several lines (or Alt+Enter) makes it a draft of
//! several, held as `\n`-separated text, which is sent line by line. Pure state, no terminal:
//! every key is unit-tested.

use std::collections::VecDeque;

/// Most lines kept in the input history.
const HISTORY: usize = 500;

/// Most characters the input holds. Far over what the server takes in one line (4,096 bytes):
/// never a reason to cut a line, only a bound on memory; a paste that would go over it is
/// refused whole, and the UI says so.
pub const MAX_DRAFT: usize = 256 * 1024;

/// What ends a line in pasted text: CR LF, and Unicode's mandatory breaks (LF, CR, VT, FF, NEL,
/// the line and paragraph separators).
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Pasted text as the input holds it: each line break (`\r\n` is one) a `\n`, each tab
/// [`crate::command::TAB_SPACES`] spaces. Nothing else is changed: a character the server
/// refuses (an escape, a NUL...) stays, shown as `�`, and sending the line is refused with its
/// name, as in line mode.
pub fn normalize_paste(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\t' => out.extend(std::iter::repeat_n(' ', crate::command::TAB_SPACES)),
            c if is_line_break(c) => out.push('\n'),
            c => out.push(c),
        }
    }
    out
}

/// The lines of a draft, counted one way wherever a count is shown: those that hold something,
/// each sent as a chat line of its own, and the empty ones (blanks only), left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lines {
    /// Lines that hold something: what Enter sends.
    pub filled: usize,
    /// Empty lines (or spaces only): shown, never sent.
    pub empty: usize,
}

impl Lines {
    fn of(chars: &[char]) -> Lines {
        let mut lines = Lines {
            filled: 0,
            empty: 0,
        };
        for line in chars.split(|&c| c == '\n') {
            if line.iter().all(|c| c.is_whitespace()) {
                lines.empty += 1;
            } else {
                lines.filled += 1;
            }
        }
        lines
    }

    /// All of them: the rows of the draft.
    pub fn rows(self) -> usize {
        self.filled + self.empty
    }
}

/// Where the empty lines at the end of `chars` start, at most `max` of them: the line break
/// before each and what follows it. A text copied as whole lines ends with a line break, which
/// is no line of its own.
fn blank_tail(chars: &[char], max: usize) -> usize {
    let mut end = chars.len();
    for _ in 0..max {
        match chars[..end].iter().rposition(|&c| c == '\n') {
            Some(i) if chars[i + 1..end].iter().all(|c| c.is_whitespace()) => end = i,
            _ => break,
        }
    }
    end
}

/// A paste that did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooBig {
    /// Characters of the paste.
    pub pasted: usize,
    /// Characters already in the input.
    pub held: usize,
}

/// The line being typed.
#[derive(Debug, Default)]
pub struct Input {
    chars: Vec<char>,
    /// Cursor position, in characters (0..=len).
    cursor: usize,
    history: VecDeque<String>,
    /// While browsing history: the index into `history` and what was being typed before.
    browsing: Option<(usize, String)>,
    /// While cycling completions: the candidates, the next one to use, and where the completed
    /// word starts.
    completing: Option<Completion>,
}

#[derive(Debug)]
struct Completion {
    candidates: Vec<String>,
    next: usize,
    start: usize,
    /// The text after the completed word, kept as it was.
    suffix: Vec<char>,
}

/// An editing operation (the key bindings live in `app`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// Insert a character at the cursor.
    Insert(char),
    /// Start a new line in the draft at the cursor (Alt+Enter).
    Newline,
    /// Delete the character before the cursor (Backspace).
    Backspace,
    /// Delete the character at the cursor (Delete).
    Delete,
    /// Cursor one left.
    Left,
    /// Cursor one right.
    Right,
    /// Cursor one word left (Ctrl/Alt+Left).
    WordLeft,
    /// Cursor one word right.
    WordRight,
    /// Cursor to the start of its line (Home, Ctrl+A).
    Home,
    /// Cursor to the end of its line (End, Ctrl+E).
    End,
    /// Delete the word before the cursor (Ctrl+W).
    DeleteWord,
    /// Delete from the start of the draft to the cursor (Ctrl+U; at the end of a pasted draft
    /// it clears the whole draft).
    DeleteToStart,
    /// Delete from the cursor to the end of the draft (Ctrl+K).
    DeleteToEnd,
    /// The line above in a draft of several lines, else the previous history entry (Up).
    HistoryUp,
    /// The line below in a draft of several lines, else the next history entry (Down).
    HistoryDown,
}

impl Input {
    /// The text.
    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }

    /// The cursor position, in characters.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Whether nothing is typed.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// Characters held.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether the input holds [`MAX_DRAFT`] characters: nothing more can be typed.
    pub fn is_full(&self) -> bool {
        self.chars.len() >= MAX_DRAFT
    }

    /// Lines of the draft (1 for a plain line).
    pub fn rows(&self) -> usize {
        1 + self.chars.iter().filter(|&&c| c == '\n').count()
    }

    /// The draft's lines, filled and empty.
    pub fn lines(&self) -> Lines {
        Lines::of(&self.chars)
    }

    /// At the end of the input, removes up to `max` empty lines that end it (a paste's last line
    /// break); returns how many it removed.
    pub fn trim_blank_tail(&mut self, max: usize) -> usize {
        if self.cursor != self.chars.len() {
            return 0;
        }
        let end = blank_tail(&self.chars, max);
        let removed = self.chars[end..].iter().filter(|&&c| c == '\n').count();
        self.chars.truncate(end);
        self.cursor = end;
        removed
    }

    /// The cursor's line (from 0) and column (in characters).
    pub fn cursor_row_col(&self) -> (usize, usize) {
        let before = &self.chars[..self.cursor];
        let row = before.iter().filter(|&&c| c == '\n').count();
        let start = self.row_start(self.cursor);
        (row, self.cursor - start)
    }

    /// Where the line holding position `at` starts.
    fn row_start(&self, at: usize) -> usize {
        self.chars[..at]
            .iter()
            .rposition(|&c| c == '\n')
            .map_or(0, |i| i + 1)
    }

    /// Where the line holding position `at` ends (its `\n`, or the end).
    fn row_end(&self, at: usize) -> usize {
        self.chars[at..]
            .iter()
            .position(|&c| c == '\n')
            .map_or(self.chars.len(), |i| at + i)
    }

    /// Inserts pasted text at the cursor ([`normalize_paste`]); returns its lines. At the end of
    /// the input, the empty lines that end the paste are left out: a text copied as whole lines
    /// ends with a line break, which starts no line. All or nothing: a paste that would take the
    /// input over [`MAX_DRAFT`] characters is refused whole.
    ///
    /// # Errors
    /// [`TooBig`] when it does not fit; the input is unchanged.
    pub fn paste(&mut self, text: &str) -> Result<Lines, TooBig> {
        let mut text: Vec<char> = normalize_paste(text).chars().collect();
        if self.cursor == self.chars.len() {
            text.truncate(blank_tail(&text, usize::MAX));
        }
        if self.chars.len() + text.len() > MAX_DRAFT {
            return Err(TooBig {
                pasted: text.len(),
                held: self.chars.len(),
            });
        }
        self.browsing = None;
        self.completing = None;
        let lines = Lines::of(&text);
        let n = text.len();
        self.chars.splice(self.cursor..self.cursor, text);
        self.cursor += n;
        Ok(lines)
    }

    /// Puts `text` (a draft of one or more lines) back in the input, the cursor at its end.
    pub fn restore(&mut self, text: &str) {
        self.browsing = None;
        self.completing = None;
        self.set(text);
    }

    /// Applies one edit.
    pub fn edit(&mut self, edit: Edit) {
        if !matches!(edit, Edit::HistoryUp | Edit::HistoryDown) {
            self.browsing = None;
        }
        self.completing = None;
        let len = self.chars.len();
        match edit {
            Edit::Insert(c) => {
                if len < MAX_DRAFT && !c.is_control() {
                    self.chars.insert(self.cursor, c);
                    self.cursor += 1;
                }
            }
            Edit::Newline => {
                if len < MAX_DRAFT {
                    self.chars.insert(self.cursor, '\n');
                    self.cursor += 1;
                }
            }
            Edit::Backspace => {
                if self.cursor > 0 {
                    self.cursor -= 1;
                    self.chars.remove(self.cursor);
                }
            }
            Edit::Delete => {
                if self.cursor < len {
                    self.chars.remove(self.cursor);
                }
            }
            Edit::Left => self.cursor = self.cursor.saturating_sub(1),
            Edit::Right => self.cursor = (self.cursor + 1).min(len),
            Edit::WordLeft => self.cursor = self.word_start(),
            Edit::WordRight => {
                let mut i = self.cursor;
                while i < len && self.chars[i].is_whitespace() {
                    i += 1;
                }
                while i < len && !self.chars[i].is_whitespace() {
                    i += 1;
                }
                self.cursor = i;
            }
            Edit::Home => self.cursor = self.row_start(self.cursor),
            Edit::End => self.cursor = self.row_end(self.cursor),
            Edit::DeleteWord => {
                let start = self.word_start();
                self.chars.drain(start..self.cursor);
                self.cursor = start;
            }
            Edit::DeleteToStart => {
                self.chars.drain(..self.cursor);
                self.cursor = 0;
            }
            Edit::DeleteToEnd => self.chars.truncate(self.cursor),
            Edit::HistoryUp => self.history_step(true),
            Edit::HistoryDown => self.history_step(false),
        }
    }

    /// Where the word before the cursor starts (skipping spaces right before the cursor).
    fn word_start(&self) -> usize {
        let mut i = self.cursor;
        while i > 0 && self.chars[i - 1].is_whitespace() {
            i -= 1;
        }
        while i > 0 && !self.chars[i - 1].is_whitespace() {
            i -= 1;
        }
        i
    }

    fn set(&mut self, text: &str) {
        self.chars = text.chars().take(MAX_DRAFT).collect();
        self.cursor = self.chars.len();
    }

    /// Up or Down: to the line above or below in the draft, keeping the column where it can.
    /// False on its first (Up) or last (Down) line.
    fn row_step(&mut self, up: bool) -> bool {
        let (_, col) = self.cursor_row_col();
        let start = self.row_start(self.cursor);
        let end = self.row_end(self.cursor);
        let target = if up {
            if start == 0 {
                return false;
            }
            self.row_start(start - 1)
        } else {
            if end == self.chars.len() {
                return false;
            }
            end + 1
        };
        self.cursor = (target + col).min(self.row_end(target));
        true
    }

    fn history_step(&mut self, up: bool) {
        if self.row_step(up) {
            return;
        }
        if self.history.is_empty() {
            return;
        }
        let next = match (&self.browsing, up) {
            (None, true) => Some(self.history.len() - 1),
            (None, false) => return,
            (Some((i, _)), true) => Some(i.saturating_sub(1)),
            (Some((i, _)), false) => (i + 1 < self.history.len()).then_some(i + 1),
        };
        match next {
            Some(i) => {
                let typed = match self.browsing.take() {
                    Some((_, typed)) => typed,
                    None => self.text(),
                };
                let entry = self.history[i].clone();
                self.set(&entry);
                self.browsing = Some((i, typed));
            }
            None => {
                // Down past the newest entry: back to what was being typed.
                if let Some((_, typed)) = self.browsing.take() {
                    self.set(&typed);
                }
            }
        }
    }

    /// Takes the line (Enter): returns it, remembers it in the history, and clears the input.
    pub fn submit(&mut self) -> String {
        let line = self.text();
        self.chars.clear();
        self.cursor = 0;
        self.browsing = None;
        self.completing = None;
        if !line.trim().is_empty() && self.history.back() != Some(&line) {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(line.clone());
        }
        line
    }

    /// Tab: completes the word before the cursor from `commands` (when it is the first word and
    /// starts with `/`) or `nicks`; pressing Tab again cycles through the candidates. A nick
    /// completed at the start of the line gets `: ` after it, as in IRC clients.
    pub fn complete(&mut self, commands: &[&str], nicks: &[String]) {
        self.complete_with_rooms(commands, nicks, &[]);
    }

    /// [`Input::complete`], and a word starting with `#` completes from `rooms`.
    pub fn complete_with_rooms(&mut self, commands: &[&str], nicks: &[String], rooms: &[String]) {
        if let Some(c) = &mut self.completing {
            if c.candidates.is_empty() {
                return;
            }
            let pick = c.candidates[c.next % c.candidates.len()].clone();
            c.next += 1;
            let (start, suffix) = (c.start, c.suffix.clone());
            self.replace_word(start, &pick, &suffix);
            return;
        }
        let start = {
            let mut i = self.cursor;
            while i > 0 && !self.chars[i - 1].is_whitespace() {
                i -= 1;
            }
            i
        };
        let word: String = self.chars[start..self.cursor].iter().collect();
        let lower = word.to_ascii_lowercase();
        let mut candidates: Vec<String> = if start == 0 && word.starts_with('/') {
            commands
                .iter()
                .filter(|c| c.starts_with(&lower))
                .map(|c| format!("{c} "))
                .collect()
        } else if word.starts_with('#') {
            rooms
                .iter()
                .filter(|r| r.to_ascii_lowercase().starts_with(&lower))
                .map(|r| format!("{r} "))
                .collect()
        } else {
            nicks
                .iter()
                .filter(|n| !word.is_empty() && n.to_ascii_lowercase().starts_with(&lower))
                .map(|n| {
                    if start == 0 {
                        format!("{n}: ")
                    } else {
                        format!("{n} ")
                    }
                })
                .collect()
        };
        candidates.sort_unstable_by_key(|c| c.to_ascii_lowercase());
        candidates.dedup();
        let suffix: Vec<char> = self.chars[self.cursor..].to_vec();
        if let Some(first) = candidates.first().cloned() {
            self.replace_word(start, &first, &suffix);
        }
        self.completing = Some(Completion {
            candidates,
            next: 1,
            start,
            suffix,
        });
    }

    fn replace_word(&mut self, start: usize, with: &str, suffix: &[char]) {
        self.chars.truncate(start);
        self.chars.extend(with.chars());
        self.cursor = self.chars.len();
        self.chars.extend_from_slice(suffix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> Input {
        let mut input = Input::default();
        for c in text.chars() {
            input.edit(Edit::Insert(c));
        }
        input
    }

    #[test]
    fn editing_keys_do_what_terminals_do() {
        let mut i = typed("hello big world");
        i.edit(Edit::DeleteWord); // Ctrl+W
        assert_eq!(i.text(), "hello big ");
        i.edit(Edit::Home); // Ctrl+A
        i.edit(Edit::Insert('>'));
        assert_eq!((i.text().as_str(), i.cursor()), (">hello big ", 1));
        i.edit(Edit::DeleteToEnd); // Ctrl+K
        assert_eq!(i.text(), ">");
        let mut i = typed("abc def");
        i.edit(Edit::Left);
        i.edit(Edit::Left);
        i.edit(Edit::DeleteToStart); // Ctrl+U
        assert_eq!((i.text().as_str(), i.cursor()), ("ef", 0));
        i.edit(Edit::End);
        i.edit(Edit::Backspace);
        i.edit(Edit::Home);
        i.edit(Edit::Delete);
        assert_eq!(i.text(), "");
        let mut i = typed("one two three");
        i.edit(Edit::WordLeft);
        i.edit(Edit::WordLeft);
        assert_eq!(i.cursor(), 4);
        i.edit(Edit::WordRight);
        assert_eq!(i.cursor(), 7);
    }

    #[test]
    fn control_characters_are_never_inserted() {
        let mut i = typed("a\u{1b}[2Jb\u{7}");
        assert_eq!(i.text(), "a[2Jb");
        i.edit(Edit::Insert('\n'));
        assert_eq!(i.text(), "a[2Jb");
    }

    #[test]
    fn history_walks_back_and_returns_to_what_was_typed() {
        let mut i = Input::default();
        for line in ["first", "second"] {
            for c in line.chars() {
                i.edit(Edit::Insert(c));
            }
            assert_eq!(i.submit(), line);
        }
        for c in "draft".chars() {
            i.edit(Edit::Insert(c));
        }
        i.edit(Edit::HistoryUp);
        assert_eq!(i.text(), "second");
        i.edit(Edit::HistoryUp);
        i.edit(Edit::HistoryUp); // stays at the oldest
        assert_eq!(i.text(), "first");
        i.edit(Edit::HistoryDown);
        assert_eq!(i.text(), "second");
        i.edit(Edit::HistoryDown);
        assert_eq!(i.text(), "draft");
    }

    #[test]
    fn tab_completes_commands_and_nicks_and_cycles() {
        let commands = ["/msg", "/me", "/secure", "/verify", "/verified"];
        let nicks = vec!["alice".to_string(), "Albert".into(), "bob".into()];
        let mut i = typed("/sec");
        i.complete(&commands, &nicks);
        assert_eq!(i.text(), "/secure ");
        let mut i = typed("/secure bo");
        i.complete(&commands, &nicks);
        assert_eq!(i.text(), "/secure bob ");
        let mut i = typed("al");
        i.complete(&commands, &nicks);
        assert_eq!(i.text(), "Albert: ");
        i.complete(&commands, &nicks);
        assert_eq!(i.text(), "alice: ");
        i.complete(&commands, &nicks);
        assert_eq!(i.text(), "Albert: ", "cycles");
        let mut i = typed("hi zed");
        i.complete(&commands, &nicks);
        assert_eq!(i.text(), "hi zed", "no candidate: unchanged");
        // Completion in the middle keeps the rest of the line.
        let mut i = typed("hey b, how are you");
        for _ in 0.." , how are you".len() - 1 {
            i.edit(Edit::Left);
        }
        i.complete(&commands, &nicks);
        assert_eq!(i.text(), "hey bob , how are you");
    }

    #[test]
    fn a_line_longer_than_the_server_takes_is_kept_whole() {
        // 5,000 characters and 3,000 two-byte ones: nothing cut (the old input stopped at 4,200);
        // sending says how long the line is.
        let i = typed(&"x".repeat(5000));
        assert_eq!(i.text().len(), 5000);
        let mut i = Input::default();
        assert_eq!(
            i.paste(&"é".repeat(3000)),
            Ok(Lines {
                filled: 1,
                empty: 0
            })
        );
        assert_eq!((i.text().len(), i.len()), (6000, 3000));
    }

    #[test]
    fn the_input_is_bounded_and_a_paste_that_does_not_fit_is_refused_whole() {
        let mut i = Input::default();
        assert_eq!(
            i.paste(&"x".repeat(MAX_DRAFT - 2)),
            Ok(Lines {
                filled: 1,
                empty: 0
            })
        );
        assert_eq!(
            i.paste("abc"),
            Err(TooBig {
                pasted: 3,
                held: MAX_DRAFT - 2
            })
        );
        assert_eq!(i.len(), MAX_DRAFT - 2, "nothing of it went in");
        assert!(!i.is_full());
        i.edit(Edit::Insert('y'));
        i.edit(Edit::Newline);
        assert!(i.is_full());
        i.edit(Edit::Insert('z'));
        assert_eq!(i.len(), MAX_DRAFT);
        assert!(i.text().ends_with("y\n"));
    }

    #[test]
    fn a_paste_keeps_its_lines_turns_tabs_into_spaces_and_keeps_the_rest_to_be_refused() {
        assert_eq!(
            normalize_paste("a\r\nb\rc\nd\u{2028}e\u{2029}f\u{85}g\u{b}h\u{c}i"),
            "a\nb\nc\nd\ne\nf\ng\nh\ni"
        );
        assert_eq!(normalize_paste("k\tv\r\n"), "k    v\n");
        assert_eq!(normalize_paste("\u{1b}[31mred\0"), "\u{1b}[31mred\0");
        let mut i = typed("say: ");
        i.edit(Edit::Left);
        i.edit(Edit::Left);
        assert_eq!(
            i.paste("one\r\n\r\n\ttwo\r\nthree"),
            Ok(Lines {
                filled: 3,
                empty: 1
            })
        );
        assert_eq!(i.text(), "sayone\n\n    two\nthree: ");
        assert_eq!(i.rows(), 4);
        assert_eq!(i.cursor_row_col(), (3, 5), "after the pasted text");
        let mut i = Input::default();
        assert_eq!(
            i.paste("  \n\t\n"),
            Ok(Lines {
                filled: 0,
                empty: 1
            }),
            "only blanks"
        );
        assert_eq!(i.text(), "  ");
    }

    #[test]
    fn a_pastes_last_line_break_starts_no_line_and_the_count_is_the_drafts() {
        // Copied as whole lines: 4 lines and a line break, not 5 lines.
        let mut i = Input::default();
        assert_eq!(
            i.paste("a\nb\nc\nd\n"),
            Ok(Lines {
                filled: 4,
                empty: 0
            })
        );
        assert_eq!(i.text(), "a\nb\nc\nd");
        assert_eq!(
            (i.rows(), i.lines()),
            (
                4,
                Lines {
                    filled: 4,
                    empty: 0
                }
            )
        );
        // CR LF, blank lines and spaces at the end alike; an empty line inside stays, counted
        // as empty.
        let mut i = Input::default();
        let pasted = i.paste("one\r\n\r\ntwo\r\n  \r\n\r\n").unwrap();
        assert_eq!(i.text(), "one\n\ntwo");
        assert_eq!(
            pasted,
            Lines {
                filled: 2,
                empty: 1
            }
        );
        assert_eq!(i.lines(), pasted);
        assert_eq!(i.rows(), pasted.rows());
        // 150 lines are 150 lines.
        let mut i = Input::default();
        let many: String = (1..=150).map(|n| format!("{n}\n")).collect();
        assert_eq!(i.paste(&many).map(Lines::rows), Ok(150));
        assert_eq!(i.rows(), 150);
        // Pasted inside a line, the line break keeps what follows on a line of its own.
        let mut i = Input::default();
        i.paste("ab").unwrap();
        i.edit(Edit::Left);
        i.paste("x\n").unwrap();
        assert_eq!(i.text(), "ax\nb");
        // A burst's last line breaks, removed at the end of the input only, at most as asked.
        let mut i = typed("k");
        i.edit(Edit::Newline);
        i.edit(Edit::Newline);
        assert_eq!(i.trim_blank_tail(1), 1);
        assert_eq!(i.text(), "k\n");
        i.edit(Edit::Left);
        assert_eq!(i.trim_blank_tail(1), 0, "not at the end");
    }

    #[test]
    fn up_and_down_move_between_the_lines_of_a_draft_before_the_history() {
        let mut i = typed("old");
        i.submit();
        i.paste("first line\nsecond\nthird line").unwrap();
        i.edit(Edit::Home);
        assert_eq!(i.cursor_row_col(), (2, 0), "Home: the start of the line");
        i.edit(Edit::End);
        assert_eq!(i.cursor_row_col(), (2, 10));
        i.edit(Edit::HistoryUp);
        assert_eq!(
            i.cursor_row_col(),
            (1, 6),
            "the column, as far as the line goes"
        );
        i.edit(Edit::HistoryUp);
        assert_eq!(i.cursor_row_col(), (0, 6));
        i.edit(Edit::Insert('!'));
        assert_eq!(i.text(), "first !line\nsecond\nthird line");
        i.edit(Edit::HistoryDown);
        assert_eq!(i.cursor_row_col(), (1, 6));
        i.edit(Edit::HistoryDown);
        assert_eq!(i.cursor_row_col(), (2, 6));
        i.edit(Edit::Left);
        i.edit(Edit::Home);
        i.edit(Edit::Backspace);
        assert_eq!(i.text(), "first !line\nsecondthird line", "joins two lines");
        // On the first line, Up is the history again; the draft comes back with Down.
        i.edit(Edit::HistoryUp);
        i.edit(Edit::HistoryUp);
        assert_eq!(i.text(), "old");
        i.edit(Edit::HistoryDown);
        assert_eq!(i.text(), "first !line\nsecondthird line");
        // Ctrl+U at the end clears a whole draft.
        i.edit(Edit::DeleteToStart);
        assert!(i.is_empty());
    }
}
