//! The user's own lines on their way: frames waiting to be written (paced within the server's
//! announced rate), the answers expected for frames written, and the lines without an answer.
//!
//! The server answers every `Public`, `Private` and `Relay` with exactly one `Sent`/`Queued`
//! or non-fatal `Error`, in the order it read them (PROTOCOL.md, "Acknowledgements"), so the
//! answers expected are a FIFO filled when a frame is written.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mm_common::frame;
use mm_common::protocol::ClientMsg;
use mm_common::rate::TokenBucket;

use super::LineId;

/// Most lines of one connection waiting for the server's answer (queued for the pacer,
/// written, or waiting for a secure session); [`crate::Client::public`] and
/// [`crate::Client::private`] wait for room beyond it.
pub const MAX_UNANSWERED: usize = 1024;

/// Most frames without a line (acknowledgements, pongs, monitor requests, `/who`) queued at
/// once; beyond it the core reads no more input until the queue drains.
pub(crate) const MAX_QUEUED_CONTROL: usize = 256;

/// Most frames queued in all (lines, control frames, end-to-end data); beyond it the core reads
/// no more input until the queue drains (many peers' handshakes each cause a reply).
pub(crate) const MAX_QUEUED: usize = MAX_UNANSWERED + 2 * MAX_QUEUED_CONTROL;

/// Most bytes handed to the transport in one [`Outgoing::transmit`]: one write per wake-up,
/// never an unbounded one.
pub(crate) const MAX_BATCH: usize = 64 * 1024;

/// What the server answers a frame with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A chat line: the answer is passed on with its handle.
    Text(LineId),
    /// End-to-end data for this peer, carrying this line if it is a text: an error means the
    /// peer is unreachable.
    Relay { peer: String, line: Option<LineId> },
}

/// A frame on its way out, with the answer it will get.
#[derive(Debug)]
struct Outbound {
    frame: Bytes,
    answer: Option<Answer>,
    /// Counts against the server's rate limit (every frame but Pong, Quit and Received).
    paced: bool,
}

/// The outgoing side of one connection.
#[derive(Debug)]
pub(crate) struct Outgoing {
    queue: VecDeque<Outbound>,
    /// Frames in `queue` without an answer.
    control: usize,
    /// Answers expected for frames written, oldest first.
    pending: VecDeque<Answer>,
    unanswered: BTreeSet<LineId>,
    pacer: TokenBucket,
}

impl Outgoing {
    /// Paced a little inside the server's limits (`burst` at once, `per_sec` sustained), so
    /// that timing jitter never trips them.
    pub(crate) fn new(burst: u32, per_sec: u32, now: Instant) -> Outgoing {
        Outgoing {
            queue: VecDeque::new(),
            control: 0,
            pending: VecDeque::new(),
            unanswered: BTreeSet::new(),
            pacer: TokenBucket::new(
                burst.saturating_sub(1).max(1),
                f64::from(per_sec) * 0.9,
                now,
            ),
        }
    }

    /// Whether another line may be added ([`MAX_UNANSWERED`]).
    pub(crate) fn has_room(&self) -> bool {
        self.unanswered.len() < MAX_UNANSWERED
    }

    /// Whether frames without a line may still be queued ([`MAX_QUEUED_CONTROL`]).
    pub(crate) fn control_has_room(&self) -> bool {
        self.control < MAX_QUEUED_CONTROL
    }

    /// Lines without an answer.
    pub(crate) fn unanswered(&self) -> usize {
        self.unanswered.len()
    }

    /// `line` now waits for its answer.
    pub(crate) fn add_line(&mut self, line: LineId) {
        self.unanswered.insert(line);
    }

    /// Whether `line` waits for its answer (taken, neither answered nor reported).
    pub(crate) fn is_unanswered(&self, line: LineId) -> bool {
        self.unanswered.contains(&line)
    }

    /// `line` got its answer (or was dropped and reported). False if it was not waiting.
    pub(crate) fn answered(&mut self, line: LineId) -> bool {
        self.unanswered.remove(&line)
    }

    /// Queues `msg`, which gets `answer`. False if it cannot be encoded (a bug or an
    /// unchecked input: nothing was queued).
    pub(crate) fn queue(&mut self, msg: &ClientMsg, answer: Option<Answer>) -> bool {
        let Ok(frame) = frame::encode(msg) else {
            return false;
        };
        let paced = !matches!(
            msg,
            ClientMsg::Pong { .. } | ClientMsg::Quit | ClientMsg::Received { .. }
        );
        if answer.is_none() {
            self.control += 1;
        }
        self.queue.push_back(Outbound {
            frame,
            answer,
            paced,
        });
        true
    }

    /// Appends to `out` the frames the pacer lets go at `now` (at most [`MAX_BATCH`] bytes
    /// in all, unless one frame alone is larger), recording the answers they will get.
    pub(crate) fn transmit(&mut self, now: Instant, out: &mut BytesMut) {
        while out.len() < MAX_BATCH {
            let Some(next) = self.queue.front() else {
                return;
            };
            if next.paced && !self.pacer.try_take(now) {
                return;
            }
            let Some(next) = self.queue.pop_front() else {
                return;
            };
            match next.answer {
                Some(answer) => self.pending.push_back(answer),
                None => self.control = self.control.saturating_sub(1),
            }
            out.extend_from_slice(&next.frame);
        }
    }

    /// When the pacer lets the next queued frame go (`None`: nothing queued, or it may go now
    /// and [`Outgoing::transmit`] should be called).
    pub(crate) fn next_send(&mut self, now: Instant) -> Option<Instant> {
        let next = self.queue.front()?;
        if !next.paced {
            return None;
        }
        let wait = self.pacer.wait_time(now);
        (!wait.is_zero()).then(|| now + wait.max(Duration::from_millis(1)))
    }

    /// Frames waiting to be transmitted.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether frames wait to be transmitted.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether a frame may be transmitted now.
    pub(crate) fn ready(&mut self, now: Instant) -> bool {
        match self.queue.front() {
            None => false,
            Some(next) if !next.paced => true,
            Some(_) => self.pacer.wait_time(now).is_zero(),
        }
    }

    /// The answer the server's next `Sent`, `Queued` or non-fatal `Error` is for (`None`: an
    /// answer to nothing, from a confused server).
    pub(crate) fn next_answer(&mut self) -> Option<Answer> {
        self.pending.pop_front()
    }

    /// Takes out the plain chat lines (`Public`, `Private`) never written to the connection,
    /// oldest first, with their frames: certainly not delivered, so they can go on the next
    /// connection without any risk of a duplicate. End-to-end data stays: it belongs to this
    /// connection's sessions.
    pub(crate) fn take_unwritten_lines(&mut self) -> Vec<(LineId, Bytes)> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for outbound in self.queue.drain(..) {
            match outbound.answer {
                Some(Answer::Text(line)) => {
                    self.unanswered.remove(&line);
                    taken.push((line, outbound.frame));
                }
                _ => kept.push_back(outbound),
            }
        }
        self.queue = kept;
        taken
    }

    /// Queues a line's `frame` taken from an earlier connection
    /// ([`Outgoing::take_unwritten_lines`]).
    pub(crate) fn queue_line_frame(&mut self, line: LineId, frame: Bytes) {
        self.unanswered.insert(line);
        self.queue.push_back(Outbound {
            frame,
            answer: Some(Answer::Text(line)),
            paced: true,
        });
    }

    /// The connection closed: the lines still waiting, oldest first. Nothing more is sent.
    pub(crate) fn close(&mut self) -> Vec<LineId> {
        self.queue.clear();
        self.control = 0;
        self.pending.clear();
        std::mem::take(&mut self.unanswered).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_go_in_order_within_the_pace_and_answers_follow_them() {
        let t0 = Instant::now();
        let mut out = Outgoing::new(3, 10, t0);
        for i in 1..=4 {
            out.add_line(LineId(i));
            assert!(out.queue(
                &ClientMsg::Public {
                    room: "#lobby".into(),
                    action: false,
                    text: format!("{i}")
                },
                Some(Answer::Text(LineId(i)))
            ));
        }
        assert!(out.queue(&ClientMsg::Pong { token: 9 }, None));
        let mut buf = BytesMut::new();
        out.transmit(t0, &mut buf);
        // A burst of 2 (one under the server's 3), then the pace.
        let mut sent = Vec::new();
        let mut b = buf.clone();
        while let Ok(payload) = frame::split_frame(&mut b) {
            sent.push(ClientMsg::decode(&payload).unwrap());
        }
        assert_eq!(sent.len(), 2, "{sent:?}");
        let at = out.next_send(t0).expect("paced");
        assert!(
            at > t0 && at <= t0 + Duration::from_millis(120),
            "{:?}",
            at - t0
        );
        assert!(!out.ready(t0));
        assert!(out.ready(at));
        buf.clear();
        out.transmit(at, &mut buf);
        assert!(!buf.is_empty(), "what the pacer calls ready goes");
        assert_eq!(out.next_answer(), Some(Answer::Text(LineId(1))));
        assert_eq!(out.next_answer(), Some(Answer::Text(LineId(2))));
        assert_eq!(out.next_answer(), Some(Answer::Text(LineId(3))));
        assert_eq!(out.next_answer(), None, "line 4 is not written yet");
        assert!(out.answered(LineId(1)));
        assert!(!out.answered(LineId(1)));
        assert_eq!(out.close(), vec![LineId(2), LineId(3), LineId(4)]);
        assert!(
            !out.ready(at + Duration::from_secs(9)),
            "nothing after the close"
        );
    }
}
