//! What was received: personal lines recognised when a server sends them again after a
//! reconnect ([`ClientState`], shared by the connections of one process), and how far the front
//! end handled them, which is how far they are acknowledged (`Received { up_to }`).

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use mm_common::protocol::{nick_key, validate_nick};
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
    /// Room lines (live, history, and our own as the server numbered them), per room.
    public: Mutex<RoomSeen>,
    /// Nicks whose lines are hidden (`/ignore`), by [`nick_key`], and the file they are kept in.
    ignored: Mutex<Ignored>,
}

/// Recently received room lines by (room key, id, server time), oldest first.
#[derive(Debug, Default)]
struct RoomSeen {
    keys: HashSet<(String, u64, u64)>,
    order: VecDeque<(String, u64, u64)>,
}

/// Most nicks one user may ignore.
pub const MAX_IGNORED: usize = 1000;

#[derive(Debug, Default)]
struct Ignored {
    nicks: BTreeSet<String>,
    file: Option<PathBuf>,
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

    /// Records the line `id` sent at `ts` in the room `room` (its [`room_key`](mm_common::protocol::room_key)); false if it was received before (a server
    /// sends the rooms' recent lines again at every login).
    pub(crate) fn received_public(&self, room: &str, id: u64, ts: u64) -> bool {
        let mut public = self.inner.public.lock().unwrap_or_else(|p| p.into_inner());
        let key = (room.to_owned(), id, ts);
        if public.keys.contains(&key) {
            return false;
        }
        public.keys.insert(key.clone());
        public.order.push_back(key);
        while public.order.len() > MAX_REMEMBERED {
            if let Some(old) = public.order.pop_front() {
                public.keys.remove(&old);
            }
        }
        true
    }

    fn ignored_list(&self) -> std::sync::MutexGuard<'_, Ignored> {
        self.inner.ignored.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `nick`'s room and private lines are hidden (`/ignore`).
    pub fn is_ignored(&self, nick: &str) -> bool {
        let list = self.ignored_list();
        !list.nicks.is_empty() && list.nicks.contains(&nick_key(nick))
    }

    /// The nicks ignored, in lowercase, sorted.
    pub fn ignored(&self) -> Vec<String> {
        self.ignored_list().nicks.iter().cloned().collect()
    }

    /// Reads the ignored nicks from `file` (one a line; a missing file is an empty list), and
    /// keeps them there from now on ([`ClientState::ignore`]).
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn load_ignored(&self, file: &Path) -> Result<(), String> {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
        };
        let mut list = self.ignored_list();
        list.nicks = text
            .lines()
            .map(str::trim)
            .filter(|n| validate_nick(n).is_ok())
            .map(nick_key)
            .take(MAX_IGNORED)
            .collect();
        list.file = Some(file.to_path_buf());
        Ok(())
    }

    /// Hides (`on`) or shows again `nick`'s lines, and saves the list (owner-only file) if it
    /// is kept in one. `Ok(false)`: nothing changed.
    ///
    /// # Errors
    /// An invalid nick, too many ignored, or the file could not be written (the change holds
    /// for this run).
    pub fn ignore(&self, nick: &str, on: bool) -> Result<bool, String> {
        validate_nick(nick).map_err(|e| format!("cannot ignore {nick:?}: {e}"))?;
        let mut list = self.ignored_list();
        let key = nick_key(nick);
        let changed = if on {
            if list.nicks.len() >= MAX_IGNORED && !list.nicks.contains(&key) {
                return Err(format!("you ignore {MAX_IGNORED} nicks already"));
            }
            list.nicks.insert(key)
        } else {
            list.nicks.remove(&key)
        };
        if changed {
            if let Some(file) = &list.file {
                let mut text = String::new();
                for n in &list.nicks {
                    text.push_str(n);
                    text.push('\n');
                }
                write_private(file, &text).map_err(|e| {
                    format!(
                        "cannot save {}: {e} (the change holds until mm ends)",
                        file.display()
                    )
                })?;
            }
        }
        Ok(changed)
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

/// Writes `text` to `file`, readable by its owner only (through a temporary file renamed over
/// it, so that a crash never leaves half a list).
fn write_private(file: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = file.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
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
