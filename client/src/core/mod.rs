// About 600 lines: the core's state, input, time and output; its commands are in commands.rs,
// its dispatch of server messages in dispatch.rs.
//! The client's protocol core, without I/O: fed the bytes the server sent and the time, it
//! yields the bytes to send, the [`Event`]s for the front end, and when it next needs the time
//! ([`Core::poll_timeout`]) — the shape of quinn-proto's `Connection`. It owns the login, the
//! answers expected for the user's lines, pings, the `/who` list, acknowledgements of personal
//! lines, pacing inside the server's announced rate, and the end-to-end layer's dispatch.
//!
//! The driver ([`crate::driver`]) moves bytes between a TLS socket and a [`Core`]; tests wire
//! cores to an in-memory server double and advance time themselves.
//!
//! ```text
//! server bytes ─▶ receive ─▶ frames ─▶ dispatch ─┬─▶ events ─▶ poll_event ─▶ front end
//!                                                ├─▶ e2e (Sessions) ─▶ actions ─┐
//! front end ─▶ public / private / secure ... ────┴──────────────────────────────┴─▶ queue
//! queue ─▶ pacer ─▶ poll_transmit ─▶ driver writes         poll_timeout / handle_timeout
//! ```
//!
//! Nothing in it grows with the number of users online unless asked: the login's user list is
//! kept only with [`CoreConfig::user_list`], a `/who` answer only when asked for.

mod commands;
mod dispatch;
mod event;
mod lines;
mod login;
mod received;
mod rooms;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mm_common::e2e::Refused;
use mm_common::frame::{self, FrameError};
use mm_common::protocol::{ClientMsg, ServerMsg, PROTOCOL_VERSION};

use crate::secure::{Secure, SecureSetup};

pub use event::{ChatLine, Event, LineId, RoomEvent, RoomInfo, Welcome};
pub use lines::MAX_UNANSWERED;
pub use login::LoginError;
pub use received::ClientState;
pub use received::MAX_IGNORED;
pub use rooms::{modes_words, role_words, MAX_NAMES, MAX_ROOMS};

use lines::Outgoing;
use login::{Login, Step};
use received::Acks;

pub(crate) use login::{server_words_on_one_line, MAX_LISTED_USERS};

/// Most events waiting for the front end; beyond it the core reads no more input (so the
/// server sees a slow reader, not an unbounded client).
pub const MAX_EVENTS: usize = 1024;

/// Most input buffer capacity kept while no bytes wait in it (two of the driver's reads).
const KEPT_INPUT: usize = 16 * 1024;

/// Least time between two runs of the end-to-end timers.
const E2E_MIN_GAP: Duration = Duration::from_millis(10);

/// How often a save the disk refused is tried again.
const SAVE_RETRY: Duration = Duration::from_secs(1);

/// How a private text went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Unencrypted (TLS to the server only): there is no secure session with the peer.
    Plain,
    /// End-to-end encrypted.
    Secure,
    /// Waiting for the secure session being set up; it goes encrypted when it is ready.
    Queued,
}

/// Sending failed because the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not connected")]
pub struct NotConnected;

/// Why a private text or secure-session command did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closed (or not logged in yet).
    #[error("not connected")]
    NotConnected,
    /// [`MAX_UNANSWERED`] lines wait for their answers: wait for some (the async
    /// [`crate::Client`] does).
    #[error("too many lines wait for the server's answer")]
    Busy,
    /// The end-to-end layer refused (e.g. the session failed: never a silent fallback).
    #[error(transparent)]
    Refused(#[from] Refused),
}

impl From<NotConnected> for SendError {
    fn from(_: NotConnected) -> SendError {
        SendError::NotConnected
    }
}

/// What a [`Core`] is made with.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The nick to log in with.
    pub nick: String,
    /// Longest wait for the login to complete.
    pub login_timeout: Duration,
    /// If nothing at all arrives from the server for this long, the connection is dead.
    pub read_timeout: Duration,
    /// Keep the login's list of users online in [`Welcome::online`] (a front end that shows
    /// it); without, the list is only counted.
    pub user_list: bool,
    /// Identity, pins and conversations for end-to-end sessions (shared by reconnections).
    pub secure: SecureSetup,
    /// What this process received (shared by reconnections).
    pub state: ClientState,
    /// This connection replaces one that dropped: its login is announced as
    /// [`Event::Reconnected`] (the first login is the caller's to show).
    pub reconnection: bool,
    /// A next connection follows a drop (the driver reconnects, sharing `state`): plain
    /// lines never written go on it ([`Core::adopt_events`]) instead of being reported
    /// undelivered, and room lines are remembered so that the history it sends again is shown
    /// once. Off, the core keeps no per-line memory of room lines (a load generator's thousands
    /// of connections).
    pub reconnects: bool,
}

/// What travels to the front end: an event, or a mark that the personal lines up to an id (a
/// relay whose events came before the mark, a repeat shown before) are handled once everything
/// before the mark is.
#[derive(Debug)]
enum Item {
    Event(Event),
    Handled(u64),
    /// An event of an earlier connection: shown, never acknowledged on this one (its ids are
    /// that server's; the server sends unacknowledged lines again, recognised as repeats).
    Adopted(Event),
}

#[derive(Debug)]
enum Phase {
    Login(Login),
    Ready,
    Closed,
}

/// One connection's protocol state. See the module documentation.
#[derive(Debug)]
pub struct Core {
    phase: Phase,
    config: CoreConfig,
    /// Our nick as welcomed.
    nick: String,
    max_text_len: usize,
    /// Bytes received and not yet taken as frames.
    input: BytesMut,
    /// The connection ended on the server's side (clean, or with this error); applied once
    /// every whole frame received is taken.
    ending: Option<Option<String>>,
    out: Outgoing,
    events: VecDeque<Item>,
    /// A `/who` answer being put together.
    who: Option<Vec<String>>,
    /// `/who` asked and not answered yet.
    who_asked: u32,
    secure: Option<Arc<Secure>>,
    acks: Acks,
    last_heard: Instant,
    login_deadline: Instant,
    login_result: Option<Result<Welcome, LoginError>>,
    /// Pins or conversations changed and are to be saved.
    save_wanted: bool,
    /// A decrypted message was not shown because its state could not be saved: its relay is
    /// not acknowledged (the server sends it again at the next login).
    held_unsaved: bool,
    /// A save worked again after failing: messages released at `/accept-key` that could not
    /// be shown then are shown now ([`Sessions::show_released`](mm_common::e2e::Sessions)).
    show_released: bool,
    /// Messages released at `/accept-key` were shown during this `perform`: one more save.
    released_kept: bool,
    /// Inside [`Core::perform`]: what it asks for waits until it is done.
    performing: bool,
    save_retry_at: Option<Instant>,
    /// Why the connection closed (`None`: cleanly, or not yet).
    closed_reason: Option<String>,
    /// When the end-to-end timers last ran.
    e2e_ran: Option<Instant>,
    /// Plain lines never written on an earlier connection (or this one, once closed), to send
    /// after the next login.
    carried: Vec<(LineId, bytes::Bytes)>,
    /// Private lines the end-to-end layer holds until the peer's keys come (not sent nor
    /// dropped yet). It keeps them across a reconnect and sends them after the next login's
    /// fetch, so a drop carries them like [`Core::carried`] lines instead of reporting them
    /// undelivered (a line reported undelivered and then sent anyway could arrive twice).
    awaiting_keys: Vec<LineId>,
    /// Whether it was logged in at some point.
    was_ready: bool,
    /// The server closed it because another login took the account over.
    replaced: bool,
    /// The user quit.
    quitting: bool,
    /// The rooms we are in, and room questions waiting for answers.
    rooms: rooms::Rooms,
}

impl Core {
    /// A connection starting its login at `now`: the first [`Core::poll_transmit`] yields
    /// `Hello`.
    pub fn new(config: CoreConfig, now: Instant) -> Core {
        let mut out = Outgoing::new(2, 1, now);
        out.queue(
            &ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                nick: config.nick.clone(),
            },
            None,
        );
        Core {
            phase: Phase::Login(Login::new(&config.nick, config.user_list)),
            nick: config.nick.clone(),
            max_text_len: 0,
            input: BytesMut::new(),
            ending: None,
            out,
            events: VecDeque::new(),
            who: None,
            who_asked: 0,
            secure: None,
            acks: Acks::default(),
            last_heard: now,
            login_deadline: now + config.login_timeout,
            login_result: None,
            save_wanted: false,
            held_unsaved: false,
            show_released: false,
            released_kept: false,
            performing: false,
            save_retry_at: None,
            closed_reason: None,
            e2e_ran: None,
            carried: Vec::new(),
            awaiting_keys: Vec::new(),
            was_ready: false,
            replaced: false,
            quitting: false,
            rooms: rooms::Rooms::default(),
            config,
        }
    }

    // ---- input ----------------------------------------------------------------------------

    /// Bytes from the server, in order, as they came.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        if matches!(self.phase, Phase::Closed) || self.ending.is_some() {
            return;
        }
        self.input.extend_from_slice(bytes);
        self.process(now);
    }

    /// The server closed the connection (end of stream).
    pub fn receive_end(&mut self, now: Instant) {
        if self.ending.is_none() {
            self.ending = Some(None);
        }
        self.process(now);
    }

    /// The connection failed; `why` says how, in words for the user.
    pub fn connection_lost(&mut self, why: String, now: Instant) {
        if self.ending.is_none() {
            self.ending = Some(Some(why));
        }
        self.process(now);
    }

    /// Whether the driver should read more from the socket: the core takes input while the
    /// front end keeps up and the outgoing queue drains.
    pub fn wants_input(&self) -> bool {
        !matches!(self.phase, Phase::Closed)
            && self.ending.is_none()
            && self.has_room_for_input()
            && !self.has_frame()
    }

    /// Whether what the next frame may cause fits: events for the front end (not counted
    /// during the login, which makes none but its last, so that events a front end has not
    /// taken yet cannot stall the next login), and frames to send (answers, end-to-end replies
    /// to many peers).
    fn has_room_for_input(&self) -> bool {
        let login = matches!(self.phase, Phase::Login(_));
        (login || self.events.len() < MAX_EVENTS)
            && self.out.control_has_room()
            && self.out.len() < lines::MAX_QUEUED
    }

    /// Whether a whole frame (or a bad header) is buffered.
    fn has_frame(&self) -> bool {
        !matches!(
            frame::check(&self.input),
            Err(FrameError::Incomplete { .. })
        )
    }

    /// Takes up again what [`Core::process`] left for lack of room: buffered frames, or the
    /// end of the connection.
    ///
    /// Bug fixed (found by `tests::script`): `process` stops while the events or the queue of
    /// frames without a line are full, and only `poll_event` took it up again, and only while
    /// an event was waiting and a whole frame was buffered. So frames left when the control
    /// queue filled (more pings in one read than it holds) were never taken, as no event
    /// waited and the driver reads no more while a frame is buffered; and an end of stream
    /// met with the events full was never applied: `Closed` came at the read timeout, as
    /// "server silent".
    fn resume(&mut self, now: Instant) {
        if self.has_frame() || self.ending.is_some() {
            self.process(now);
        }
    }

    /// Takes the whole frames received, as far as there is room for what they cause.
    fn process(&mut self, now: Instant) {
        loop {
            if matches!(self.phase, Phase::Closed) {
                return;
            }
            if !self.has_room_for_input() {
                return;
            }
            let payload = match frame::split_frame(&mut self.input) {
                Ok(payload) => payload,
                Err(FrameError::Incomplete { .. }) => break,
                Err(e) => return self.close(Some(format!("bad frame from server: {e}")), now),
            };
            // Heard from only on whole frames: a server trickling one byte now and then is not
            // alive.
            self.last_heard = now;
            let msg = match ServerMsg::decode(&payload) {
                Ok(msg) => server_words_on_one_line(msg),
                Err(e) => return self.close(Some(format!("bad message from server: {e}")), now),
            };
            self.on_message(msg, now);
        }
        if self.input.is_empty() && self.input.capacity() > KEPT_INPUT {
            // A large frame's buffer is not kept; a small one is reused by the next read
            // (freeing it after every read cost an allocation per read under a flood).
            self.input = BytesMut::new();
        }
        if let Some(ending) = self.ending.take() {
            let error = match ending {
                None if !self.input.is_empty() => {
                    Some("connection closed in the middle of a frame".to_string())
                }
                other => other,
            };
            self.close(error, now);
        }
    }

    fn on_message(&mut self, msg: ServerMsg, now: Instant) {
        let Phase::Login(login) = &mut self.phase else {
            return self.dispatch(msg, now);
        };
        match login.step(msg) {
            Ok(Step::More) => {}
            Ok(Step::Done(welcome)) => self.logged_in(welcome, now),
            Err(e) => {
                self.login_result = Some(Err(e));
                self.phase = Phase::Closed;
                self.out.close();
            }
        }
    }

    fn logged_in(&mut self, welcome: Welcome, now: Instant) {
        self.nick = welcome.nick.clone();
        self.max_text_len = usize::try_from(welcome.max_text_len).unwrap_or(usize::MAX);
        self.out = Outgoing::new(welcome.rate_burst, welcome.rate_per_sec, now);
        // Lines a dropped connection left waiting for a peer's keys wait for their answer here.
        for &line in &self.awaiting_keys {
            self.out.add_line(line);
        }
        let secure = self.config.secure.attach(&welcome.nick);
        self.secure = Some(Arc::clone(&secure));
        // Our keys in the server's directory (new prekeys when due), and the key requests the
        // last connection left unanswered.
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let actions = secure.sessions().login(now, wall_ms);
        self.perform(actions, now);
        // Lines a dropped connection never wrote go first, in their order.
        for (line, frame) in std::mem::take(&mut self.carried) {
            self.out.queue_line_frame(line, frame);
        }
        self.phase = Phase::Ready;
        self.was_ready = true;
        if self.config.reconnection {
            self.push(Event::Reconnected(welcome.clone()));
        }
        self.login_result = Some(Ok(welcome));
    }

    /// The login's outcome, once: `None` while it is in progress (or after it was taken).
    pub fn poll_login(&mut self) -> Option<Result<Welcome, LoginError>> {
        if let (Phase::Closed, None) = (&self.phase, &self.login_result) {
            return None;
        }
        self.login_result.take()
    }

    // ---- time -----------------------------------------------------------------------------

    /// When [`Core::handle_timeout`] must be called next (`None`: only input or the user can
    /// change anything). Ask again after every call that takes `&mut self`.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        match &self.phase {
            Phase::Closed => return None,
            Phase::Login(_) => consider(Some(self.login_deadline)),
            Phase::Ready => {
                consider(Some(self.last_heard + self.config.read_timeout));
                consider(self.acks.deadline());
                consider(self.save_retry_at);
                consider(self.e2e_deadline());
            }
        }
        consider(self.out.next_send(now));
        at
    }

    /// The time is `now`: timers that are due fire.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &self.phase {
            Phase::Closed => {}
            Phase::Login(_) => {
                if now >= self.login_deadline {
                    self.login_result = Some(Err(LoginError::Timeout));
                    self.phase = Phase::Closed;
                    self.out.close();
                }
            }
            Phase::Ready => {
                let silent = now.saturating_duration_since(self.last_heard);
                if silent >= self.config.read_timeout {
                    let secs = self.config.read_timeout.as_secs();
                    return self.close(Some(format!("server silent for {secs} s")), now);
                }
                if let Some(secure) = self.secure.clone() {
                    if self.e2e_deadline().is_some_and(|t| t <= now) {
                        self.e2e_ran = Some(now);
                        let actions = secure.sessions().tick(now);
                        self.perform(actions, now);
                    }
                }
                // An acknowledgement due: queued now (poll_transmit may not be asked while the
                // socket is backed up, and the deadline must not stay in the past).
                if let Some(up_to) = self.acks.poll(false, now) {
                    self.acknowledge(up_to);
                }
                if self.save_retry_at.is_some_and(|t| t <= now) {
                    self.save_retry_at = None;
                    self.save_wanted = true;
                }
            }
        }
    }

    /// When the end-to-end layer's timers (handshake timeouts, automatic restarts, session
    /// renewal) must run next ([`mm_common::e2e::Sessions::poll_timeout`]).
    /// Never sooner than [`E2E_MIN_GAP`] after the last run: a timer that stays due without
    /// acting must not make the driver spin.
    fn e2e_deadline(&self) -> Option<Instant> {
        let due = self.secure.as_ref()?.sessions().poll_timeout()?;
        Some(match self.e2e_ran {
            Some(ran) => due.max(ran + E2E_MIN_GAP),
            None => due,
        })
    }

    // ---- output ---------------------------------------------------------------------------

    /// Appends to `out` what may be sent at `now` (acknowledgements, answers, the user's lines
    /// within the pace); false if nothing was added.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut BytesMut) -> bool {
        if let Phase::Ready = self.phase {
            let caught_up = self.events.is_empty() && !self.has_frame();
            if let Some(up_to) = self.acks.poll(caught_up, now) {
                self.acknowledge(up_to);
            }
        }
        let before = out.len();
        self.out.transmit(now, out);
        // What was written may have made room for frames left unread.
        self.resume(now);
        out.len() > before
    }

    /// Acknowledges every personal line up to `up_to` to the server; the end-to-end layer
    /// stops keeping the decrypted texts of those (kept to show again after a crash).
    pub(super) fn acknowledge(&mut self, up_to: u64) {
        self.out.queue(&ClientMsg::Received { up_to }, None);
        if let Some(secure) = &self.secure {
            secure.sessions().acknowledged(up_to);
        }
    }

    /// Whether frames wait to be transmitted (now or when the pace allows).
    pub fn has_queued(&self) -> bool {
        !self.out.is_empty()
    }

    /// Whether [`Core::poll_transmit`] has something to send at `now`.
    pub fn wants_transmit(&mut self, now: Instant) -> bool {
        self.out.ready(now)
    }

    /// The next event for the front end. Asking says the event returned before was handled
    /// (shown, stored): a private line is acknowledged to the server only then.
    pub fn poll_event(&mut self, now: Instant) -> Option<Event> {
        self.acks.all_returned(now);
        self.resume(now);
        let event = loop {
            match self.events.pop_front()? {
                Item::Handled(id) => self.acks.mark(id, now),
                Item::Adopted(event) => break event,
                Item::Event(event) => {
                    if let Event::Private(ChatLine { id, .. })
                    | Event::Offline(ChatLine { id, .. }) = &event
                    {
                        self.acks.returning(*id);
                    }
                    break event;
                }
            }
        };
        self.resume(now);
        Some(event)
    }

    /// Whether an event is waiting.
    pub fn has_event(&self) -> bool {
        self.events
            .iter()
            .any(|i| matches!(i, Item::Event(_) | Item::Adopted(_)))
    }

    /// Stops acknowledging: from now on nothing returned counts as handled (the front end
    /// cannot show it any more), so the server keeps those lines for the next login.
    pub fn hold(&mut self) {
        self.acks.hold();
    }

    /// Whether pins or conversations are to be saved now; the driver saves them
    /// ([`Secure::save`]) and reports with [`Core::saved`].
    pub fn poll_save(&mut self) -> Option<Arc<Secure>> {
        if !std::mem::take(&mut self.save_wanted) {
            return None;
        }
        self.secure.clone()
    }

    /// How the save asked for by [`Core::poll_save`] went.
    pub fn saved(&mut self, result: Result<(), String>, now: Instant) {
        let Some(secure) = &self.secure else { return };
        match result {
            Ok(()) => {
                if secure.set_unsaved(None).is_some() {
                    self.push(Event::Warning(
                        "pinned keys and end-to-end sessions are saved now".into(),
                    ));
                    self.show_released = true;
                }
                self.save_retry_at = None;
                if !self.performing {
                    self.released_shown(now);
                }
            }
            Err(e) => {
                if secure.set_unsaved(Some(e.clone())).is_none() {
                    self.push(Event::Warning(format!(
                        "could not save pinned keys and end-to-end sessions ({e}); retrying every second. Until they are saved, end-to-end messages are not sent, and if mm stops, messages shown since may be shown again: free some space or fix the home directory"
                    )));
                }
                self.save_retry_at = Some(now + SAVE_RETRY);
            }
        }
    }

    /// Whether the connection is closed (its [`Event::Closed`] is queued or was returned).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Closes the connection on our side (e.g. the front end went away): what has no answer
    /// is reported undelivered.
    pub fn close(&mut self, error: Option<String>, _now: Instant) {
        match &self.phase {
            Phase::Closed => {}
            Phase::Login(_) => {
                self.login_result = Some(Err(LoginError::Protocol(
                    error.unwrap_or_else(|| "server closed the connection".into()),
                )));
                self.phase = Phase::Closed;
                self.out.close();
            }
            Phase::Ready => {
                self.phase = Phase::Closed;
                self.closed_reason.clone_from(&error);
                if self.config.reconnects && !self.quitting {
                    let unwritten = self.out.take_unwritten_lines();
                    self.carried.extend(unwritten);
                    for &line in &self.awaiting_keys {
                        self.out.answered(line);
                    }
                } else {
                    self.awaiting_keys.clear();
                }
                let undelivered = self.out.close();
                self.push(Event::Closed { error, undelivered });
            }
        }
    }

    /// Why the connection closed, in words (`None`: cleanly, or still open).
    pub fn closed_reason(&self) -> Option<&str> {
        self.closed_reason.as_deref()
    }

    /// Whether the login completed on this connection.
    pub fn was_ready(&self) -> bool {
        self.was_ready
    }

    /// Whether it is logged in and open (commands are taken).
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// Whether the server closed it because another login with our account took over
    /// (reconnecting would knock that one off, which would do the same).
    pub fn was_replaced(&self) -> bool {
        self.replaced
    }

    /// Whether the user quit.
    pub fn quitting(&self) -> bool {
        self.quitting
    }

    /// Takes over the events `old` (the closed connection before this one) still holds for
    /// the front end, ahead of this connection's (its acknowledgement marks stay behind:
    /// they were that connection's).
    pub fn adopt_events(&mut self, old: &mut Core) {
        let mut items: VecDeque<Item> = std::mem::take(&mut old.events)
            .into_iter()
            .filter_map(|i| match i {
                Item::Event(e) | Item::Adopted(e) => Some(Item::Adopted(e)),
                Item::Handled(_) => None,
            })
            .collect();
        items.append(&mut self.events);
        self.events = items;
        let mut carried = std::mem::take(&mut old.carried);
        carried.append(&mut self.carried);
        self.carried = carried;
        if self.is_ready() {
            for &line in &old.awaiting_keys {
                self.out.add_line(line);
            }
        }
        self.awaiting_keys.append(&mut old.awaiting_keys);
    }

    /// Whether personal lines are handled and not acknowledged yet.
    pub fn ack_pending(&self) -> bool {
        self.acks.deadline().is_some()
    }

    /// How many lines wait for the next connection (never written on a dropped one).
    pub fn carried(&self) -> usize {
        self.carried.len() + self.awaiting_keys.len()
    }

    /// The lines carried for a next connection that will not come (reconnecting stopped):
    /// never sent, for the front end to report.
    pub fn take_carried(&mut self) -> Vec<LineId> {
        let mut lines: Vec<LineId> = std::mem::take(&mut self.carried)
            .into_iter()
            .map(|(line, _)| line)
            .collect();
        lines.append(&mut self.awaiting_keys);
        lines
    }

    /// Adds an event of the driver's (reconnecting) for the front end.
    pub fn push_event(&mut self, event: Event) {
        self.push(event);
    }

    fn push(&mut self, event: Event) {
        self.events.push_back(Item::Event(event));
    }
}
