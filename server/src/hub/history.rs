//! A room's recent history in memory, already encoded as `History` messages, so that a login
//! costs a few reference-count increments instead of a store query.

use std::collections::VecDeque;

use bytes::Bytes;
use mm_common::frame;
use mm_common::protocol::ServerMsg;

use crate::store::Line;

/// The newest lines of one room, oldest first, at most `len`.
#[derive(Debug)]
pub(crate) struct History {
    lines: VecDeque<Bytes>,
    len: usize,
}

impl History {
    /// The newest `len` of `loaded` (oldest first, all of room `room_name`), as the store
    /// kept them.
    pub fn from_lines(loaded: Vec<Line>, len: usize, room_name: &str) -> History {
        let skip = loaded.len().saturating_sub(len);
        let lines = loaded
            .iter()
            .skip(skip)
            .filter_map(|l| encode(l, room_name.to_owned()))
            .collect();
        History { lines, len }
    }

    /// Whether the room keeps any history (`history_len` > 0).
    pub fn is_kept(&self) -> bool {
        self.len > 0
    }

    /// Adds the newest line (encoded with [`encode`]), dropping the oldest beyond the bound.
    pub fn push(&mut self, line: Bytes) {
        if self.len == 0 {
            return;
        }
        if self.lines.len() >= self.len {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// How many lines it holds.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// The lines, oldest first: shared handles, no copies.
    pub fn snapshot(&self) -> Vec<Bytes> {
        self.lines.iter().cloned().collect()
    }
}

/// A room line (of the room named `room`) as the encoded `History` message a newcomer
/// receives.
pub(crate) fn encode(line: &Line, room: String) -> Option<Bytes> {
    frame::encode_message(&ServerMsg::History {
        id: line.id,
        ts: line.ts,
        room,
        from: line.from.clone(),
        text: line.text.clone(),
        action: line.action,
    })
    .ok()
}
