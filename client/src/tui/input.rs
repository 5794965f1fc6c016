//! The input line: a small line editor with the usual terminal keys, input history and Tab
//! completion. Pure state, no terminal: every key is unit-tested.

use std::collections::VecDeque;

/// Most lines kept in the input history.
const HISTORY: usize = 500;

/// Longest input accepted, in characters (the server's text limit is 4096 bytes; a little more
/// leaves room for `/msg NICK `).
pub const MAX_INPUT: usize = 4200;

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
    /// Cursor to the start (Home, Ctrl+A).
    Home,
    /// Cursor to the end (End, Ctrl+E).
    End,
    /// Delete the word before the cursor (Ctrl+W).
    DeleteWord,
    /// Delete from the start to the cursor (Ctrl+U).
    DeleteToStart,
    /// Delete from the cursor to the end (Ctrl+K).
    DeleteToEnd,
    /// Previous history entry (Up).
    HistoryUp,
    /// Next history entry (Down).
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

    /// Applies one edit.
    pub fn edit(&mut self, edit: Edit) {
        if !matches!(edit, Edit::HistoryUp | Edit::HistoryDown) {
            self.browsing = None;
        }
        self.completing = None;
        let len = self.chars.len();
        match edit {
            Edit::Insert(c) => {
                if len < MAX_INPUT && !c.is_control() {
                    self.chars.insert(self.cursor, c);
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
            Edit::Home => self.cursor = 0,
            Edit::End => self.cursor = len,
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
        self.chars = text.chars().take(MAX_INPUT).collect();
        self.cursor = self.chars.len();
    }

    fn history_step(&mut self, up: bool) {
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
    fn input_is_bounded() {
        let mut i = typed(&"x".repeat(MAX_INPUT + 50));
        assert_eq!(i.text().len(), MAX_INPUT);
        i.edit(Edit::Insert('y'));
        assert_eq!(i.text().len(), MAX_INPUT);
    }
}
