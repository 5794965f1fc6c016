//! What was received: personal lines recognised when a server sends them again after a
//! reconnect ([`ClientState`], shared by the connections of one process), and how far the front
//! end handled them, which is how far they are acknowledged (`Received { up_to }`).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::LineId;

/// What one client process keeps across its connections: the personal lines (`Private`,
/// `Offline`, `Relay`) it received recently, so that lines a server sends again after a
/// reconnect are recognised and not shown twice, and the counter for [`LineId`]s. Cheap to
/// clone; clones share the state. Kept in [`crate::ConnectOptions::state`], so reconnecting
/// with the same options (or a clone) continues it.
///
/// A repeat is recognised by its id *and* its server time, never by "an id not above the
/// highest seen": a server whose store was restored from a backup or replaced hands out
/// lower ids again, and those lines are new.
#[derive(Debug, Clone, Default)]
pub struct ClientState {
    inner: Arc<StateInner>,
}

/// Most personal lines remembered for recognising repeats: far more than a server sends again
/// at one login (its mailbox ceiling, 1,124 lines with default limits).
const MAX_REMEMBERED: usize = 16 * 1024;

#[derive(Debug, Default)]
struct StateInner {
    last_line: AtomicU64,
    seen: Mutex<Seen>,
    /// Room lines (live, history, and our own as the server numbered them).
    public: Mutex<Seen>,
}

/// Recently received personal lines by (id, server time), oldest first.
#[derive(Debug, Default)]
struct Seen {
    keys: HashSet<(u64, u64)>,
    order: VecDeque<(u64, u64)>,
    highest: u64,
}

impl ClientState {
    /// A fresh state: nothing received yet.
    pub fn new() -> ClientState {
        ClientState::default()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.inner.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The highest personal line id received and passed on as an event (0: none).
    pub fn highest_personal(&self) -> u64 {
        self.seen().highest
    }

    /// Whether the personal line `id` sent at `ts` was not received before.
    pub(crate) fn is_new_personal(&self, id: u64, ts: u64) -> bool {
        !self.seen().keys.contains(&(id, ts))
    }

    /// Records that the personal line `id` sent at `ts` was passed on.
    pub(crate) fn received_personal(&self, id: u64, ts: u64) {
        let mut seen = self.seen();
        if seen.keys.insert((id, ts)) {
            seen.order.push_back((id, ts));
            while seen.order.len() > MAX_REMEMBERED {
                if let Some(old) = seen.order.pop_front() {
                    seen.keys.remove(&old);
                }
            }
        }
        seen.highest = seen.highest.max(id);
    }

    /// Records the room line `id` sent at `ts`; false if it was received before (a server
    /// sends the room's recent lines again at every login).
    pub(crate) fn received_public(&self, id: u64, ts: u64) -> bool {
        let mut public = self.inner.public.lock().unwrap_or_else(|p| p.into_inner());
        if !public.keys.insert((id, ts)) {
            return false;
        }
        public.order.push_back((id, ts));
        while public.order.len() > MAX_REMEMBERED {
            if let Some(old) = public.order.pop_front() {
                public.keys.remove(&old);
            }
        }
        true
    }

    pub(crate) fn next_line(&self) -> LineId {
        LineId(
            self.inner
                .last_line
                .fetch_add(1, Ordering::SeqCst)
                .saturating_add(1),
        )
    }
}

/// Longest a handled personal line waits for its acknowledgement while events keep coming (an
/// acknowledgement goes once per burst: when the front end has taken every event).
pub(crate) const ACK_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// How far the user has handled the personal lines of one connection: acknowledged only that
/// far, so that a line the front end never took — its output closed, the process died with
/// events still queued — stays on the server. Only lines of this connection count: another
/// server (a store restored from a backup) may use lower ids, and acknowledging an id never
/// shown would delete it.
#[derive(Debug, Default)]
pub(crate) struct Acks {
    /// Handled up to this id.
    handled: u64,
    /// Acknowledged up to this id.
    acked: u64,
    /// The personal line returned last: handled when the next event is asked for, or at quit.
    returned: u64,
    /// Nothing more counts as handled (the front end cannot show it any more).
    held: bool,
    /// Acknowledge by then even if events keep coming.
    due: Option<Instant>,
}

impl Acks {
    /// The line `id` is handled (`0`: nothing).
    pub(crate) fn mark(&mut self, id: u64, now: Instant) {
        if id == 0 || self.held {
            return;
        }
        if id > self.handled {
            self.handled = id;
            if self.due.is_none() {
                self.due = Some(now + ACK_AT_MOST_EVERY);
            }
        }
    }

    /// Everything returned so far is handled.
    pub(crate) fn all_returned(&mut self, now: Instant) {
        let id = std::mem::take(&mut self.returned);
        self.mark(id, now);
    }

    /// The front end was given the personal line `id`.
    pub(crate) fn returning(&mut self, id: u64) {
        self.returned = id;
    }

    /// See [`crate::Events::hold`].
    pub(crate) fn hold(&mut self) {
        self.held = true;
    }

    /// The `up_to` to acknowledge now, if any: when `caught_up` (the front end took every
    /// event and no frame waits to be read) or the deadline passed.
    pub(crate) fn poll(&mut self, caught_up: bool, now: Instant) -> Option<u64> {
        if self.handled <= self.acked {
            return None;
        }
        if caught_up || self.due.is_some_and(|due| now >= due) {
            self.acked = self.handled;
            self.due = None;
            return Some(self.acked);
        }
        None
    }

    /// When an acknowledgement is due anyway.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        (self.handled > self.acked).then_some(self.due).flatten()
    }

    /// Handled so far (for quitting: acknowledged just before `Quit`).
    pub(crate) fn handled(&self) -> u64 {
        self.handled
    }
}
