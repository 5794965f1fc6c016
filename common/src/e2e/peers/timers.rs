//! What happens with time alone: handshakes time out, the initiator renews old or busy
//! sessions, and interrupted secure conversations restart by themselves, waiting longer after
//! each attempt that did not come up ([`super::super::config::retry_wait`]) and at most
//! [`MAX_AUTOMATIC_STARTS`] at once. [`Sessions::tick`] does what is due;
//! [`Sessions::poll_timeout`] says when that is.

use std::time::Instant;

use super::{Intent, Peer, Sessions, State};
use crate::e2e::config::{retry_wait, MAX_AUTOMATIC_STARTS};
use crate::e2e::error::{AbortReason, Failure};
use crate::e2e::event::Action;
use crate::e2e::session::Due;

impl Peer {
    /// When this conversation restarts by itself, if it is secure, interrupted and its peer
    /// online (and [`MAX_AUTOMATIC_STARTS`] allows): at once the first time, then after
    /// [`retry_wait`] since the last attempt started.
    fn resume_due(&self) -> Option<Due> {
        // Not after the peer ended the session on purpose (`/insecure` on its side): that
        // waits for this side's user to write again, so that both users' choices are seen.
        let interrupted = matches!(&self.state, State::Failed(f)
            if f.is_interruption() && *f != Failure::PeerAborted(AbortReason::Ended));
        if self.intent != Intent::Secure || self.online != Some(true) || !interrupted {
            return None;
        }
        match (self.last_start, retry_wait(self.attempts)) {
            (Some(last), Some(wait)) => Due::after(last, wait),
            _ => Some(Due::Now),
        }
    }

    /// Whether an automatic handshake of this peer is running.
    fn automatic_running(&self) -> bool {
        self.automatic && matches!(self.state, State::Handshaking(_))
    }
}

impl Sessions {
    /// Starts a session by itself for an interrupted secure conversation whose peer is online,
    /// if the wait after the last attempt is over.
    ///
    /// `running` is the number of automatic handshakes running, counted on first need and kept
    /// up to date by the caller's loop (so that a tick over many peers counts once).
    pub(super) fn resume_if_due(
        &mut self,
        key: &str,
        now: Instant,
        running: &mut Option<usize>,
    ) -> Vec<Action> {
        let Some(entry) = self.peers.get(key) else {
            return Vec::new();
        };
        if !entry.resume_due().is_some_and(|due| due.reached(now)) {
            return Vec::new();
        }
        let nick = entry.nick.clone();
        let count = *running.get_or_insert_with(|| self.automatic_running());
        if count >= MAX_AUTOMATIC_STARTS {
            return Vec::new(); // `tick` starts it when one of those is done
        }
        let actions = self.begin(&nick, now, true).unwrap_or_default();
        if !actions.is_empty() {
            *running = Some(count + 1);
        }
        actions
    }

    /// How many automatic handshakes are running.
    fn automatic_running(&self) -> usize {
        self.peers
            .values()
            .filter(|p| p.automatic_running())
            .count()
    }

    /// Starts a re-handshake if this side initiated the session and it is old or busy enough.
    pub(super) fn rehandshake_if_due(&mut self, key: &str, now: Instant) -> Vec<Action> {
        let due = match self.peers.get(key).map(|p| &p.state) {
            Some(State::Established(e)) => {
                e.renewal(&self.config).is_some_and(|due| due.reached(now))
            }
            _ => false,
        };
        if !due {
            return Vec::new();
        }
        let Some(entry) = self.peers.get_mut(key) else {
            return Vec::new();
        };
        let nick = entry.nick.clone();
        let State::Established(current) = std::mem::replace(&mut entry.state, State::Idle) else {
            return Vec::new();
        };
        match self.initiate(&nick, now) {
            Some((mut handshake, hello)) => {
                handshake.previous = Some(current);
                self.peer(&nick).state = State::Handshaking(Box::new(handshake));
                vec![Action::Send {
                    to: nick,
                    payload: hello,
                    line: None,
                }]
            }
            None => {
                self.peer(&nick).state = State::Established(current);
                Vec::new()
            }
        }
    }

    /// Does what is due at `now` (an instant from a monotonic clock, as every `now` given to
    /// [`Sessions`]): times out handshakes (after `handshake_timeout`, a responder's after
    /// four times that), renews sessions this side initiated (after `rehandshake_messages`
    /// texts or `rehandshake_after`), and restarts interrupted secure conversations whose peer
    /// is online (waiting 5 s after a failed attempt, doubling up to 300 s). Peers are visited
    /// in the order of their case-folded nicks.
    ///
    /// Call it at [`Sessions::poll_timeout`] (or now and then: every few seconds).
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        self.saw(now);
        let mut keys: Vec<String> = self.peers.keys().cloned().collect();
        // A fixed order, so that the same calls draw the same randomness in the same order.
        keys.sort_unstable();
        let mut actions = Vec::new();
        let mut running = None;
        let mut waiting = Vec::new();
        for key in keys {
            let Some(entry) = self.peers.get_mut(&key) else {
                continue;
            };
            let nick = entry.nick.clone();
            let timed_out = matches!(&entry.state, State::Handshaking(h)
                if h.timeout(&self.config).is_some_and(|due| due.reached(now)));
            if timed_out {
                if let State::Handshaking(h) = std::mem::replace(&mut entry.state, State::Idle) {
                    match h.previous {
                        // A renewal that did not finish: keep the session we have.
                        Some(previous) => entry.state = State::Established(previous),
                        None => actions.extend(self.fail(&nick, Failure::Timeout)),
                    }
                }
            } else {
                actions.extend(self.rehandshake_if_due(&key, now));
                waiting.push(key);
            }
        }
        // Then automatic restarts, once the handshakes that timed out are counted out (those
        // restart at a later tick).
        for key in waiting {
            actions.extend(self.resume_if_due(&key, now, &mut running));
        }
        actions
    }

    /// [`Sessions::tick`] under the name quinn and other sans-I/O machines use.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        self.tick(now)
    }

    /// The earliest instant at which [`Sessions::tick`] would act, `None` when nothing is timed.
    ///
    /// The instants are a handshake's timeout (`handshake_timeout` after it started; a
    /// responder's four times that), a session's renewal by its initiator
    /// (`rehandshake_after` after it came up), and an automatic restart of an interrupted
    /// secure conversation whose peer is online (the retry wait after the last attempt; none
    /// are counted while [`MAX_AUTOMATIC_STARTS`] automatic handshakes run, as those end at
    /// their own timeouts or by a received message). When something is due already (a
    /// renewal after `rehandshake_messages` texts, a first automatic restart held back until
    /// an automatic handshake ended), the answer is the latest `now` given to any call: an
    /// instant already past.
    ///
    /// Contract: a driver that sleeps until this instant and then calls `tick` with the time
    /// then observes exactly what a driver calling `tick` at every instant would: `tick` at an
    /// earlier instant does nothing, `tick` at or after it acts. The answer changes with every
    /// call that takes `&mut self` (a received payload, a text, a command, a presence change,
    /// `tick` itself): re-ask after each.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let resumes = self.automatic_running() < MAX_AUTOMATIC_STARTS;
        self.peers
            .values()
            .filter_map(|p| match &p.state {
                State::Handshaking(h) => h.timeout(&self.config),
                State::Established(e) => e.renewal(&self.config),
                State::Failed(_) if resumes => p.resume_due(),
                State::Failed(_) | State::Idle => None,
            })
            .filter_map(|due| match due {
                Due::Now => self.latest,
                Due::At(at) => Some(at),
            })
            .min()
    }
}
