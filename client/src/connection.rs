//! A connection to a server: [`connect`] does TCP, TLS (always verified), hello and welcome;
//! then a reader task turns frames into [`Event`]s and a writer task sends what the [`Client`]
//! handle queues, batching whatever is ready into one write and one flush.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mm_common::frame::{self, FrameReader, ReadError};
use mm_common::protocol::{
    nick_key, validate_nick, ClientMsg, ErrorCode, LeaveReason, ServerMsg, ALPN, PROTOCOL_VERSION,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::{timeout, Instant};

use mm_common::e2e::{E2eEvent, Outgoing, Refused, Status};
use mm_common::rate::TokenBucket;

use crate::secure::{Secure, SecureSetup};
use crate::trust::{KnownServers, Observed, PinVerifier};

/// Most nicks accepted in one user list: a hostile server could otherwise send `Users` frames
/// without end and grow the list without bound.
pub(crate) const MAX_LISTED_USERS: usize = 1_000_000;

/// Most lines of one connection waiting for the server's answer (queued for the pacer,
/// written, or waiting for a secure session); [`Client::public`] and [`Client::private`] wait
/// for room beyond it.
pub const MAX_UNANSWERED: usize = 1024;

/// A handle for one chat line given to [`Client::public`] or [`Client::private`]: the events
/// that answer it ([`Event::Sent`], [`Event::Queued`], a non-fatal [`Event::Error`]), the
/// end-to-end events that drop it unsent (`unsent` of `E2eEvent::Failed` / `Ended`, as
/// [`LineId::get`]) and [`Event::Closed`]'s `undelivered` carry it. Unique within one
/// [`ClientState`] (so across the reconnections of one process), increasing from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LineId(u64);

impl LineId {
    /// The number (as in end-to-end events' `unsent`).
    pub fn get(self) -> u64 {
        self.0
    }

    /// The handle of an end-to-end tag (which this client sets to [`LineId::get`]).
    pub(crate) fn from_tag(tag: u64) -> LineId {
        LineId(tag)
    }
}

/// What one client process keeps across its connections: the personal lines (`Private`,
/// `Offline`, `Relay`) it received recently, so that lines a server sends again after a
/// reconnect are recognised and not shown twice, and the counter for [`LineId`]s. Cheap to
/// clone; clones share the state. Kept in [`ConnectOptions::state`], so reconnecting with the
/// same options (or a clone) continues it.
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
}

/// Recently received personal lines by (id, server time), oldest first.
#[derive(Debug, Default)]
struct Seen {
    keys: std::collections::HashSet<(u64, u64)>,
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
    fn is_new_personal(&self, id: u64, ts: u64) -> bool {
        !self.seen().keys.contains(&(id, ts))
    }

    /// Records that the personal line `id` sent at `ts` was passed on.
    fn received_personal(&self, id: u64, ts: u64) {
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

    fn next_line(&self) -> LineId {
        LineId(
            self.inner
                .last_line
                .fetch_add(1, Ordering::SeqCst)
                .saturating_add(1),
        )
    }
}

/// The lines of one connection that have no answer yet. Bounded by [`MAX_UNANSWERED`]; once
/// the connection closed it takes no more lines.
#[derive(Debug)]
pub(crate) struct Lines {
    inner: Mutex<LinesInner>,
    /// One permit per line that may still be added.
    room: Semaphore,
    /// Woken whenever a line is answered or the connection closes.
    changed: Notify,
}

#[derive(Debug)]
struct LinesInner {
    open: bool,
    unanswered: BTreeSet<LineId>,
}

impl Lines {
    pub(crate) fn new() -> Lines {
        Lines {
            inner: Mutex::new(LinesInner {
                open: true,
                unanswered: BTreeSet::new(),
            }),
            room: Semaphore::new(MAX_UNANSWERED),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LinesInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new line waiting for its answer; waits while [`MAX_UNANSWERED`] lines wait.
    async fn add(&self, state: &ClientState) -> Result<LineId, NotConnected> {
        let permit = self.room.acquire().await.map_err(|_| NotConnected)?;
        permit.forget();
        let mut inner = self.lock();
        if !inner.open {
            return Err(NotConnected);
        }
        let line = state.next_line();
        inner.unanswered.insert(line);
        Ok(line)
    }

    /// `line` got its answer (or was dropped and reported). False if it was not waiting
    /// (already answered, or reported as undelivered at the close).
    pub(crate) fn answered(&self, line: LineId) -> bool {
        let removed = self.lock().unanswered.remove(&line);
        if removed {
            self.room.add_permits(1);
            self.changed.notify_waiters();
        }
        removed
    }

    fn is_open(&self) -> bool {
        self.lock().open
    }

    fn unanswered(&self) -> usize {
        self.lock().unanswered.len()
    }

    /// The connection is closed: the lines still waiting, oldest first.
    fn close(&self) -> Vec<LineId> {
        let lines = {
            let mut inner = self.lock();
            inner.open = false;
            std::mem::take(&mut inner.unanswered)
        };
        self.room.close();
        self.changed.notify_waiters();
        lines.into_iter().collect()
    }
}

/// What the server answers a frame with: every Public, Private and Relay gets exactly one
/// `Sent`/`Queued` or non-fatal `Error`, in order, so the reader can tell which message an
/// answer is for.
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
pub(crate) struct Outbound {
    frame: Bytes,
    answer: Option<Answer>,
    /// Counts against the server's rate limit (every frame but Pong, Quit and Received).
    paced: bool,
}

impl Outbound {
    /// `msg` expecting `answer` (which must be `Some` for Public, Private and Relay);
    /// `None` if it cannot be encoded.
    pub(crate) fn new(msg: &ClientMsg, answer: Option<Answer>) -> Option<Outbound> {
        let frame = frame::encode(msg).ok()?;
        let paced = !matches!(
            msg,
            ClientMsg::Pong { .. } | ClientMsg::Quit | ClientMsg::Received { .. }
        );
        Some(Outbound {
            frame,
            answer,
            paced,
        })
    }
}

/// Answers expected from the server, oldest first; the writer pushes, the reader pops.
type Pending = Arc<Mutex<VecDeque<Answer>>>;

/// When the reader last heard anything from the server.
type Heard = Arc<Mutex<Instant>>;

fn elapsed_since(heard: &Heard) -> Duration {
    heard.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
}

/// How the server is to be trusted.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Verify against these CA certificates (from `--ca`).
    Roots(Vec<CertificateDer<'static>>),
    /// Verify against the fingerprint pinned in this file.
    Known(KnownServers),
}

/// Everything [`connect`] needs.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `host:port`, `[v6]:port`.
    pub server: String,
    /// The nick to log in with.
    pub nick: String,
    /// How to verify the server.
    pub trust: Trust,
    /// The file the [`Trust::Roots`] certificates were read from (`--ca`), named when the server
    /// turns out not to be signed by them.
    pub ca_file: Option<PathBuf>,
    /// Limit for each of TCP connect, TLS handshake, and hello-to-welcome.
    pub connect_timeout: Duration,
    /// If nothing at all arrives from the server for this long, the connection is considered
    /// dead. The server pings quiet clients every 30 s by default, so a live server is never
    /// silent this long.
    pub read_timeout: Duration,
    /// Identity, pins and tunables for end-to-end sessions.
    pub secure: SecureSetup,
    /// The client certificate presented to the server, which owns our nick there. Without
    /// one, servers that register nicks refuse the login (`certificate-required`).
    pub certificate: Option<mm_certs::ClientIdentity>,
    /// What this process has received (shared by every connection made with these options
    /// or their clones: a reconnect does not show personal lines again).
    pub state: ClientState,
}

impl ConnectOptions {
    /// Options with default timeouts (10 s to connect, 3 min of server silence), a fresh
    /// in-memory end-to-end identity with no pins, and a fresh in-memory client certificate (so
    /// a new account: `mm` keeps both in its home directory instead).
    pub fn new(server: impl Into<String>, nick: impl Into<String>, trust: Trust) -> Self {
        ConnectOptions {
            server: server.into(),
            nick: nick.into(),
            trust,
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(180),
            secure: SecureSetup::ephemeral(),
            // Generation only fails if the system RNG does; the server then says a certificate
            // is required, which is the truth.
            certificate: mm_certs::ClientIdentity::generate().ok(),
            state: ClientState::new(),
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// `--server` is not `HOST` or `HOST:PORT` (see [`server_address`]).
    #[error("'{0}' is not a server address: give HOST or HOST:PORT, for example chat.example.org or 192.168.1.20:7667")]
    BadAddress(String),
    /// The host name could not be looked up.
    #[error("cannot reach {server}: the name {host} could not be looked up ({}); check the name in --server, and that this computer is online", lookup_words(.cause))]
    UnknownHost {
        /// The server.
        server: String,
        /// The host part.
        host: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// TCP connect failed.
    #[error("cannot reach {server}: {}", crate::explain::unreachable(.cause))]
    Unreachable {
        /// The server.
        server: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// A step took longer than the connect timeout.
    #[error("{}", timeout_words(.server, .step))]
    Timeout {
        /// The server.
        server: String,
        /// Which step.
        step: &'static str,
    },
    /// No pin and no CA: the user must decide whether to trust this fingerprint.
    #[error("{server} is not a known server (CA fingerprint {fingerprint})")]
    UnknownServer {
        /// The server.
        server: String,
        /// SHA-256 fingerprint of the CA certificate it presented.
        fingerprint: String,
    },
    /// The server presented a different certificate than the pinned one: possibly an attack.
    #[error("the certificate of {server} has CHANGED since you trusted it\n  trusted:   {expected}\n  presented: {found}\nThis may be an attack (someone between you and the server), or its operator made a new CA.\nAsk the operator which fingerprint is right. If it is the presented one, trust it instead with\n  {trust_presented}\nthen connect again (/reconnect in the terminal UI).")]
    ServerKeyChanged {
        /// The server.
        server: String,
        /// The pinned fingerprint.
        expected: String,
        /// What it presented.
        found: String,
        /// The file holding the pin.
        known_file: PathBuf,
        /// The command that trusts the presented CA instead (`mm trust add HOST:PORT FINGERPRINT`,
        /// with the options that find this file).
        trust_presented: String,
    },
    /// TLS failed for another reason (e.g. the certificate does not cover this name, or the
    /// server does not speak TLS); said in plain words with what to do.
    #[error("{}", crate::explain::handshake(.server, .cause, .verified))]
    Tls {
        /// The server.
        server: String,
        /// The cause.
        cause: std::io::Error,
        /// How the server was to be verified (for the advice).
        verified: crate::explain::Verified,
    },
    /// The server refused the login.
    #[error("server refused the login: {detail} ({code})")]
    Refused {
        /// Error code.
        code: ErrorCode,
        /// Detail from the server.
        detail: String,
    },
    /// The server broke the protocol or closed the connection during login.
    #[error("login failed: {0}")]
    Protocol(String),
    /// Reading the known-servers file failed.
    #[error(transparent)]
    KnownServers(#[from] crate::trust::KnownServersError),
    /// The TLS configuration could not be built (said in full).
    #[error("{0}")]
    Config(String),
}

/// A failed name lookup in words: the resolver's own, without its preamble and number.
fn lookup_words(e: &std::io::Error) -> String {
    let words = crate::explain::io_words(e);
    words
        .strip_prefix("failed to lookup address information: ")
        .map_or(words.clone(), |w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_lowercase().chain(chars).collect())
                .unwrap_or_default()
        })
}

/// A connection step that took too long, in words.
fn timeout_words(server: &str, step: &str) -> String {
    match step {
        "TCP connect" => format!(
            "{server} did not answer (no connection within the time allowed): a firewall, or the wrong address in --server?"
        ),
        "TLS handshake" => format!(
            "{server} took the connection but did not set up a secure connection in time: it may not be a Multi-Messenger server (check --server), or it is overloaded (try again later)"
        ),
        "login" => format!(
            "{server} did not answer the login in time: it may be overloaded; try again later"
        ),
        other => format!("{server} did not answer in time ({other})"),
    }
}

/// What the server said when we logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// Our nick as registered.
    pub nick: String,
    /// Server software.
    pub server: String,
    /// The server's text limit in bytes.
    pub max_text_len: u32,
    /// The server's rate limit: messages at once...
    pub rate_burst: u32,
    /// ...and per second, sustained. The client paces itself within them.
    pub rate_per_sec: u32,
    /// Users online, us included.
    pub online: Vec<String>,
}

/// Something that happened on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A public line.
    Public {
        /// Message id.
        id: u64,
        /// Server time, ms since the Unix epoch.
        ts: u64,
        /// Sender.
        from: String,
        /// Text.
        text: String,
    },
    /// A private line to us.
    Private {
        /// Message id.
        id: u64,
        /// Server time, ms since the Unix epoch.
        ts: u64,
        /// Sender.
        from: String,
        /// Text.
        text: String,
    },
    /// A public line from before we logged in (the room's recent history, oldest first,
    /// before anything live).
    History {
        /// Message id.
        id: u64,
        /// When it was sent, ms since the Unix epoch.
        ts: u64,
        /// Sender.
        from: String,
        /// Text.
        text: String,
    },
    /// A private line sent to us while we were offline, delivered at login (oldest first).
    Offline {
        /// Message id.
        id: u64,
        /// When it was sent, ms since the Unix epoch.
        ts: u64,
        /// Sender.
        from: String,
        /// Text.
        text: String,
    },
    /// Our private line's recipient is offline; the server stored it for their next login.
    Queued {
        /// Our line.
        line: LineId,
        /// Its id.
        id: u64,
        /// Its server time.
        ts: u64,
    },
    /// The server accepted our line (for a secure line: the relay carrying it).
    Sent {
        /// Our line.
        line: LineId,
        /// Its id.
        id: u64,
        /// Its server time.
        ts: u64,
    },
    /// Someone came online.
    Joined {
        /// Their nick.
        nick: String,
    },
    /// Someone went offline.
    Left {
        /// Their nick.
        nick: String,
        /// Why.
        reason: LeaveReason,
    },
    /// The complete list of online users (answer to `/who`).
    Users(Vec<String>),
    /// An error from the server.
    Error {
        /// The line it refuses (non-fatal errors answering one of our lines); `None` for
        /// errors about something else.
        line: Option<LineId>,
        /// Code.
        code: ErrorCode,
        /// Whether the server is closing the connection.
        fatal: bool,
        /// Detail.
        detail: String,
    },
    /// The server is shutting down.
    Shutdown {
        /// Its reason.
        reason: String,
    },
    /// Something about an end-to-end session (ready, a decrypted message, a failure...).
    Secure(E2eEvent),
    /// A local warning for the user (not from the server).
    Warning(String),
    /// The safety number of a peer's key ([`Client::safety_number`]), shown unasked when the
    /// peer presented a key other than its pin: the number of that new key, to compare before
    /// accepting it.
    SafetyNumber {
        /// The peer.
        peer: String,
        /// 60 digits in groups of 5.
        number: String,
        /// It is the number of a changed key, not accepted yet.
        new_key: bool,
    },
    /// The connection ended; always the last event.
    Closed {
        /// Why, when it was not a clean close.
        error: Option<String>,
        /// Our lines that got no answer, oldest first: whether the server took them is
        /// unknown (send them again to be sure). Lines waiting for a secure session are here
        /// too: they were never sent.
        undelivered: Vec<LineId>,
    },
}

/// Handle for sending. Cheap to clone; the connection closes when every clone is dropped or
/// [`Client::quit`] is called.
#[derive(Debug, Clone)]
pub struct Client {
    out: mpsc::Sender<Outbound>,
    /// Weak, so that the event stream still ends when the connection does.
    events: mpsc::WeakSender<Item>,
    secure: Arc<Secure>,
    lines: Arc<Lines>,
    state: ClientState,
    heard: Heard,
    handled: Arc<Handled>,
    nick: String,
    max_text_len: usize,
}

/// Why [`Client::flush`] stopped waiting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlushError {
    /// The connection closed first; [`Event::Closed`] lists the lines without an answer.
    #[error("the connection closed")]
    Closed,
    /// Nothing at all came from the server for the given time (not even an answer to a
    /// ping) while lines waited for their answers.
    #[error("the server stopped answering ({unanswered} lines without an answer)")]
    Stalled {
        /// Lines without an answer.
        unanswered: usize,
    },
}

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

/// Why a private text or secure-session command did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closed.
    #[error("not connected")]
    NotConnected,
    /// The end-to-end layer refused (e.g. the session failed: never a silent fallback).
    #[error(transparent)]
    Refused(#[from] Refused),
}

/// What travels from the connection's tasks to [`Events`]: an event, or a mark that the
/// personal lines up to an id (a relay whose events came before the mark, a repeat shown
/// before) are handled once everything before the mark is.
#[derive(Debug)]
pub(crate) enum Item {
    Event(Event),
    Handled(u64),
}

/// Sending events to [`Events`].
pub(crate) trait SendEvent {
    /// Sends one event; `Err` once nobody listens.
    async fn event(&self, event: Event) -> Result<(), mpsc::error::SendError<Item>>;
}

impl SendEvent for mpsc::Sender<Item> {
    async fn event(&self, event: Event) -> Result<(), mpsc::error::SendError<Item>> {
        self.send(Item::Event(event)).await
    }
}

/// How far the user has handled the personal lines of one connection: the reader
/// acknowledges (`Received`) only that far, so that a line the front end never took — its
/// output closed, the process died with events still queued — stays on the server.
#[derive(Debug, Default)]
pub(crate) struct Handled {
    up_to: AtomicU64,
    changed: Notify,
    /// The personal line [`Events`] returned last: handled at its next call, or at
    /// [`Client::quit`].
    returned: AtomicU64,
    /// Set by [`Events::hold`]: nothing more counts as handled.
    held: std::sync::atomic::AtomicBool,
}

impl Handled {
    /// Everything returned so far is handled (unless held); returns how far that is.
    fn all_returned(&self) -> u64 {
        let id = self.returned.swap(0, Ordering::SeqCst);
        self.mark(id);
        self.up_to.load(Ordering::SeqCst)
    }

    fn mark(&self, id: u64) {
        if id == 0 || self.held.load(Ordering::SeqCst) {
            return;
        }
        if self.up_to.fetch_max(id, Ordering::SeqCst) < id {
            self.changed.notify_one();
        }
    }
}

/// The stream of [`Event`]s.
///
/// Asking for the next event says the previous one was handled (shown, stored): a private
/// line is acknowledged to the server only then. A front end that can no longer show what it
/// is given calls [`Events::hold`] first, and the server keeps those lines.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Item>,
    handled: Arc<Handled>,
}

impl Events {
    /// The next event; `None` after [`Event::Closed`] has been returned.
    pub async fn next(&mut self) -> Option<Event> {
        self.handled.all_returned();
        loop {
            match self.rx.recv().await? {
                Item::Event(event) => return Some(self.returning(event)),
                Item::Handled(id) => self.handled.mark(id),
            }
        }
    }

    /// The next event if one is ready now (for batching work, e.g. one redraw per burst).
    pub fn try_next(&mut self) -> Option<Event> {
        self.handled.all_returned();
        loop {
            match self.rx.try_recv().ok()? {
                Item::Event(event) => return Some(self.returning(event)),
                Item::Handled(id) => self.handled.mark(id),
            }
        }
    }

    /// Stops acknowledging: from now on nothing returned counts as handled (the front end
    /// cannot show it any more), so the server keeps those lines for the next login.
    pub fn hold(&mut self) {
        self.handled.held.store(true, Ordering::SeqCst);
    }

    fn returning(&mut self, event: Event) -> Event {
        if let Event::Private { id, .. } | Event::Offline { id, .. } = &event {
            self.handled.returned.store(*id, Ordering::SeqCst);
        }
        event
    }
}

/// Sending failed because the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not connected")]
pub struct NotConnected;

impl Client {
    /// Our nick.
    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// The server's text limit in bytes.
    pub fn max_text_len(&self) -> usize {
        self.max_text_len
    }

    /// Queues any message as it is, bypassing the end-to-end layer (for tests and tools);
    /// [`Client::public`] and [`Client::private`] are what a front end uses. A `Public`,
    /// `Private` or `Relay` gets a [`LineId`] (returned), reported like theirs; other messages
    /// get none. Waits only if the outgoing queue (or [`MAX_UNANSWERED`]) is full.
    ///
    /// # Errors
    /// [`NotConnected`] once the connection is closed.
    pub async fn send(&self, msg: &ClientMsg) -> Result<Option<LineId>, NotConnected> {
        let relay_to = match msg {
            ClientMsg::Public { .. } | ClientMsg::Private { .. } => None,
            ClientMsg::Relay { to, .. } => Some(to.clone()),
            _ => return self.send_unanswered(msg).await.map(|()| None),
        };
        let line = self.lines.add(&self.state).await?;
        let answer = match relay_to {
            None => Answer::Text(line),
            Some(peer) => Answer::Relay {
                peer,
                line: Some(line),
            },
        };
        self.send_line(line, msg, answer).await.map(Some)
    }

    /// Queues a message that gets no answer (Who, Ping, Quit); waits only if the outgoing
    /// queue is full.
    async fn send_unanswered(&self, msg: &ClientMsg) -> Result<(), NotConnected> {
        let outbound = Outbound::new(msg, None).ok_or(NotConnected)?;
        self.out.send(outbound).await.map_err(|_| NotConnected)
    }

    /// Queues `msg`, which carries `line` and gets `answer`. The line's fate is reported by
    /// events unless this returns an error.
    async fn send_line(
        &self,
        line: LineId,
        msg: &ClientMsg,
        answer: Answer,
    ) -> Result<LineId, NotConnected> {
        let sent = match Outbound::new(msg, Some(answer)) {
            Some(outbound) => self.out.send(outbound).await.is_ok(),
            None => false,
        };
        self.settle(line, sent).map_err(|_| NotConnected)
    }

    /// After trying to send `line`: if it did not go and is still ours to report, take it
    /// back and fail; if the close already reported it as undelivered, it is the caller's.
    fn settle(&self, line: LineId, sent: bool) -> Result<LineId, SendError> {
        if sent || !self.lines.answered(line) {
            Ok(line)
        } else {
            Err(SendError::NotConnected)
        }
    }

    /// Sends a public line. The handle is in the answer ([`Event::Sent`], or a non-fatal
    /// [`Event::Error`] if the server refused it) or, if none came, in [`Event::Closed`]'s
    /// `undelivered`. Waits while [`MAX_UNANSWERED`] lines wait for their answers.
    ///
    /// # Errors
    /// [`NotConnected`]: the line was not taken (and no event will mention it).
    pub async fn public(&self, text: &str) -> Result<LineId, NotConnected> {
        let line = self.lines.add(&self.state).await?;
        let msg = ClientMsg::Public {
            text: text.to_owned(),
        };
        self.send_line(line, &msg, Answer::Text(line)).await
    }

    /// Sends a private line: end-to-end encrypted if there is a secure session with `to`
    /// (or one being set up: then it waits for the session), plain otherwise. The handle is
    /// reported as for [`Client::public`] ([`Event::Queued`] too, for a plain line to an
    /// offline user), or in the `unsent` of an end-to-end `Failed`/`Ended` event if the
    /// session it waited for did not come up.
    ///
    /// # Errors
    /// [`SendError::Refused`] when the secure session failed: the text is not sent at all;
    /// [`SendError::NotConnected`]. In both cases no event will mention the line.
    pub async fn private(&self, to: &str, text: &str) -> Result<(LineId, Delivery), SendError> {
        let line = self
            .lines
            .add(&self.state)
            .await
            .map_err(|_| SendError::NotConnected)?;
        let outgoing =
            self.secure
                .sessions()
                .send_text(to, text, line.get(), std::time::Instant::now());
        let outgoing = match outgoing {
            Ok(outgoing) => outgoing,
            Err(e) => {
                self.lines.answered(line);
                return Err(e.into());
            }
        };
        match outgoing {
            Outgoing::Plain => {
                let msg = ClientMsg::Private {
                    to: to.to_owned(),
                    text: text.to_owned(),
                };
                self.send_line(line, &msg, Answer::Text(line))
                    .await
                    .map_err(|_| SendError::NotConnected)?;
                Ok((line, Delivery::Plain))
            }
            Outgoing::Secure(actions) => {
                let sent = self.perform(actions).await.is_ok();
                self.settle(line, sent)?;
                Ok((line, Delivery::Secure))
            }
            Outgoing::Queued(actions) => {
                self.perform(actions).await?;
                Ok((line, Delivery::Queued))
            }
        }
    }

    /// Lines of this connection without an answer yet.
    pub fn unanswered(&self) -> usize {
        self.lines.unanswered()
    }

    /// Waits until every line given to [`Client::public`] and [`Client::private`] on this
    /// connection has its answer (or was dropped by the end-to-end layer, which says so),
    /// e.g. before [`Client::quit`]. While it waits and the server is quiet, it pings the
    /// server (at most every `stall / 3`).
    ///
    /// # Errors
    /// [`FlushError::Stalled`] when nothing at all arrived from the server for `stall`;
    /// [`FlushError::Closed`] if the connection closed first.
    pub async fn flush(&self, stall: Duration) -> Result<(), FlushError> {
        let probe_every = stall / 3;
        let mut last_probe: Option<Instant> = None;
        loop {
            let changed = self.lines.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if !self.lines.is_open() {
                return Err(FlushError::Closed);
            }
            let unanswered = self.lines.unanswered();
            if unanswered == 0 {
                return Ok(());
            }
            let quiet = elapsed_since(&self.heard);
            if quiet >= stall {
                return Err(FlushError::Stalled { unanswered });
            }
            if quiet >= probe_every && last_probe.is_none_or(|t| t.elapsed() >= probe_every) {
                last_probe = Some(Instant::now());
                let probe = Outbound::new(&ClientMsg::Ping { token: 0 }, None);
                if let Some(probe) = probe {
                    // A full queue is being sent, and its answers prove liveness anyway.
                    let _ = self.out.try_send(probe);
                }
            }
            let _ = timeout(Duration::from_millis(200), changed).await;
        }
    }

    /// `/secure peer`: starts an end-to-end session; [`Event::Secure`] events follow.
    ///
    /// # Errors
    /// [`SendError::Refused`] if a session exists or the peer's key changed and was not
    /// accepted. An offline peer fails the handshake with `Failure::Unreachable` as soon as the
    /// server says so.
    pub async fn secure(&self, peer: &str) -> Result<(), SendError> {
        let actions = self
            .secure
            .sessions()
            .start(peer, std::time::Instant::now())?;
        self.perform(actions).await
    }

    /// `/insecure peer`: ends the secure session; private texts to the peer go plain again.
    ///
    /// # Errors
    /// [`SendError::Refused`] if there is no session.
    pub async fn insecure(&self, peer: &str) -> Result<(), SendError> {
        let actions = self.secure.sessions().end(peer)?;
        self.perform(actions).await
    }

    /// `/accept-key peer`: accepts the peer's changed key (pinned again, not verified).
    ///
    /// # Errors
    /// [`Refused::NothingToAccept`] if its key did not change.
    pub async fn accept_key(&self, peer: &str) -> Result<(), SendError> {
        let actions = self
            .secure
            .sessions()
            .accept_key(peer, std::time::Instant::now())?;
        self.perform(actions).await
    }

    /// `/verified peer`: the users compared the safety number and it matched.
    ///
    /// # Errors
    /// [`Refused::NoKey`] if no key is pinned for the peer.
    pub async fn mark_verified(&self, peer: &str) -> Result<(), SendError> {
        let actions = self
            .secure
            .sessions()
            .mark_verified(peer, std::time::Instant::now())?;
        self.perform(actions).await
    }

    /// The safety number with `peer` (60 digits in groups of 5), from the pinned key.
    ///
    /// # Errors
    /// [`Refused::NoKey`] if no key is pinned for the peer.
    pub fn safety_number(&self, peer: &str) -> Result<String, Refused> {
        self.secure.sessions().safety_number(peer)
    }

    /// Where the conversation with `peer` stands (plain, starting, secure, failed).
    pub fn secure_status(&self, peer: &str) -> Status {
        self.secure.sessions().status(peer)
    }

    /// Whether pins or conversations changed and could not be saved yet (the disk is full or
    /// the home not writable); they are retried every second. Check before exiting: what is
    /// not saved is forgotten at the next start, and a forgotten conversation is plain.
    pub fn unsaved(&self) -> Option<String> {
        self.secure.unsaved()
    }

    /// Saves the pins and conversations now (e.g. before exiting after [`Client::unsaved`]).
    ///
    /// # Errors
    /// Why saving failed.
    pub fn retry_save_now(&self) -> Result<(), String> {
        self.secure.retry_save();
        match self.secure.unsaved() {
            None => Ok(()),
            Some(why) => Err(why),
        }
    }

    /// Our identity public key.
    pub fn public_key(&self) -> [u8; mm_common::identity::KEY_LEN] {
        *self.secure.sessions().public_key()
    }

    async fn perform(&self, actions: Vec<mm_common::e2e::Action>) -> Result<(), SendError> {
        let Some(events) = self.events.upgrade() else {
            return Err(SendError::NotConnected);
        };
        if self.secure.perform(actions, &self.out, &events).await {
            Ok(())
        } else {
            Err(SendError::NotConnected)
        }
    }

    /// Asks for the online users (answered with [`Event::Users`]).
    ///
    /// # Errors
    /// [`NotConnected`].
    pub async fn who(&self) -> Result<(), NotConnected> {
        self.send_unanswered(&ClientMsg::Who).await
    }

    /// Sends `Quit` after everything queued before it. The server then closes the connection,
    /// which ends the event stream with [`Event::Closed`]. Quitting says every private line
    /// [`Events`] returned so far was handled (unless [`Events::hold`] was called): they are
    /// acknowledged first.
    pub async fn quit(&self) {
        let up_to = self.handled.all_returned();
        if up_to > 0 {
            let _ = self.send_unanswered(&ClientMsg::Received { up_to }).await;
        }
        let _ = self.send_unanswered(&ClientMsg::Quit).await;
    }
}

/// The canonical `HOST:PORT` form of a server address as a user types it: `chat.example.org`,
/// `chat.example.org:7667`, `192.168.1.20`, `192.168.1.20:7667`, `::1`, `[::1]` or `[::1]:7667`.
/// Without a port, [`DEFAULT_PORT`](mm_common::protocol::DEFAULT_PORT); IPv6 addresses come back
/// in brackets. `None` for anything else (an empty host, a port that is not 1–65535, spaces).
/// Known servers are remembered under this form, so `localhost` and `localhost:7667` are one.
pub fn server_address(input: &str) -> Option<String> {
    let (host, port) = split_host_port(input)?;
    Some(match host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("[{v6}]:{port}"),
        Err(_) => format!("{host}:{port}"),
    })
}

/// `(host, port)` of a server address in any form [`server_address`] takes; IPv6 without
/// brackets.
pub(crate) fn split_host_port(server: &str) -> Option<(String, u16)> {
    const DEFAULT: u16 = mm_common::protocol::DEFAULT_PORT;
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return (addr.port() != 0).then(|| (addr.ip().to_string(), addr.port()));
    }
    if let Ok(ip) = server.parse::<std::net::IpAddr>() {
        return Some((ip.to_string(), DEFAULT));
    }
    if let Some(v6) = server.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        let ip = v6.parse::<std::net::Ipv6Addr>().ok()?;
        return Some((ip.to_string(), DEFAULT));
    }
    let (host, port) = match server.rsplit_once(':') {
        // Digits only: `+80` and ` 80` are not ports, whatever `u16::from_str` takes.
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, port.parse::<u16>().ok().filter(|p| *p != 0)?)
        }
        Some(_) => return None,
        None => (server, DEFAULT),
    };
    // A name TLS can check a certificate against (RFC 1035 labels, not all digits: `127.1`
    // and `a..b` are refused here, not after the home was made).
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if host.is_empty()
        || !host.chars().all(valid)
        || !matches!(
            rustls_pki_types::ServerName::try_from(host),
            Ok(rustls_pki_types::ServerName::DnsName(_))
        )
    {
        return None;
    }
    Some((host.to_owned(), port))
}

/// Connects, verifies the server, logs in and starts the reader and writer tasks.
///
/// # Errors
/// [`ConnectError`] says which step failed; [`ConnectError::UnknownServer`] and
/// [`ConnectError::ServerKeyChanged`] carry the fingerprint the server presented.
pub async fn connect(opts: &ConnectOptions) -> Result<(Client, Events, Welcome), ConnectError> {
    let server = server_address(&opts.server)
        .ok_or_else(|| ConnectError::BadAddress(opts.server.clone()))?;
    let (host, port) =
        split_host_port(&server).ok_or_else(|| ConnectError::BadAddress(server.clone()))?;
    let server_name =
        ServerName::try_from(host.clone()).map_err(|_| ConnectError::BadAddress(server.clone()))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Config(e.to_string()))?;
    let mut observed: Option<Arc<Mutex<Option<Observed>>>> = None;
    let mut known_pins: Option<&KnownServers> = None;
    let builder = match &opts.trust {
        Trust::Roots(certs) => {
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots.add(cert.clone()).map_err(|_| {
                    ConnectError::Config(match &opts.ca_file {
                        Some(file) => format!(
                            "{} does not hold a certificate mm can check servers with (a damaged file?); --ca takes the server's ca.pem",
                            file.display()
                        ),
                        None => "a CA certificate mm was given is damaged".into(),
                    })
                })?;
            }
            builder.with_root_certificates(roots)
        }
        Trust::Known(known) => {
            let pin = known.lookup(&server)?.map(|p| p.fingerprint);
            let (verifier, seen) = PinVerifier::new(pin, Arc::clone(&provider));
            observed = Some(seen);
            known_pins = Some(known);
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
        }
    };
    let mut config = match &opts.certificate {
        Some(id) => builder
            .with_client_auth_cert(vec![id.cert.clone()], id.key())
            .map_err(|e| {
                ConnectError::Config(format!(
                    "your client certificate (client.pem and client.key in your home) cannot be used: {e}"
                ))
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

    let deadline = Instant::now() + opts.connect_timeout;
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout_at(deadline, tokio::net::lookup_host((host.as_str(), port)))
            .await
        {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(cause)) => {
                return Err(ConnectError::UnknownHost {
                    server,
                    host: host.clone(),
                    cause,
                })
            }
            Err(_) => {
                return Err(ConnectError::Timeout {
                    server,
                    step: "TCP connect",
                })
            }
        };
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(&addrs[..])).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => {
            return Err(ConnectError::Unreachable {
                server,
                cause: source,
            })
        }
        Err(_) => {
            return Err(ConnectError::Timeout {
                server,
                step: "TCP connect",
            })
        }
    };
    let _ = tcp.set_nodelay(true);
    let tls = match timeout(opts.connect_timeout, connector.connect(server_name, tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(source)) => {
            let seen = observed
                .as_ref()
                .and_then(|o| o.lock().ok().and_then(|mut s| s.take()));
            return Err(match seen {
                Some(Observed::Unknown(fingerprint)) => ConnectError::UnknownServer {
                    server,
                    fingerprint,
                },
                Some(Observed::Changed { expected, found }) => ConnectError::ServerKeyChanged {
                    trust_presented: known_pins.map_or_else(
                        || format!("mm trust add {server} {found}"),
                        |k| k.command(&format!("add {server} {found}")),
                    ),
                    server,
                    expected,
                    found,
                    known_file: known_pins
                        .map(|k| k.path().to_path_buf())
                        .unwrap_or_default(),
                },
                None => ConnectError::Tls {
                    verified: match known_pins {
                        Some(k) => crate::explain::Verified::Pin(k.path().to_path_buf()),
                        None => crate::explain::Verified::Ca(opts.ca_file.clone()),
                    },
                    server,
                    cause: source,
                },
            });
        }
        Err(_) => {
            return Err(ConnectError::Timeout {
                server,
                step: "TLS handshake",
            })
        }
    };

    let (read_half, mut write_half) = tokio::io::split(tls);
    let mut reader = ServerReader::new(read_half);
    let hello = frame::encode(&ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        nick: opts.nick.clone(),
    })
    .map_err(|e| ConnectError::Protocol(e.to_string()))?;
    let login = async {
        write_half
            .write_all(&hello)
            .await
            .map_err(|e| ConnectError::Protocol(crate::explain::lost(&e)))?;
        write_half
            .flush()
            .await
            .map_err(|e| ConnectError::Protocol(crate::explain::lost(&e)))?;
        read_welcome(&mut reader, &opts.nick).await
    };
    let welcome = match timeout(opts.connect_timeout, login).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(ConnectError::Timeout {
                server,
                step: "login",
            })
        }
    };
    Ok(start(reader, write_half, welcome, opts))
}

/// Starts the reader and writer on a logged-in connection.
fn start<R, W>(
    reader: ServerReader<R>,
    write_half: W,
    welcome: Welcome,
    opts: &ConnectOptions,
) -> (Client, Events, Welcome)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let lines = Arc::new(Lines::new());
    let (secure, monitor) = opts.secure.attach(&welcome.nick, Arc::clone(&lines));
    let heard: Heard = Arc::new(Mutex::new(Instant::now()));
    let (out_tx, out_rx) = mpsc::channel(256);
    // Watch the peers of secure conversations, so that interrupted sessions restart when they
    // come online (the queue is empty and larger than this: nothing waits).
    for nicks in monitor.chunks(mm_common::protocol::MONITOR_PER_FRAME) {
        let msg = ClientMsg::Monitor {
            nicks: nicks.to_vec(),
        };
        if let Some(outbound) = Outbound::new(&msg, None) {
            let _ = out_tx.try_send(outbound);
        }
    }
    let pending: Pending = Arc::default();
    let (event_tx, event_rx) = mpsc::channel::<Item>(1024);
    let handled = Arc::new(Handled::default());
    let weak_events = event_tx.downgrade();
    // Pace a little inside the server's limits, so that timing jitter never trips them.
    let pacer = TokenBucket::new(
        welcome.rate_burst.saturating_sub(1).max(1),
        f64::from(welcome.rate_per_sec) * 0.9,
        std::time::Instant::now(),
    );
    tokio::spawn(write_loop(
        write_half,
        out_rx,
        Arc::clone(&pending),
        pacer,
        Arc::clone(&lines),
    ));
    // The reader holds only a weak handle (for pongs): when every `Client` is dropped, the
    // writer sees its queue close and ends the connection.
    tokio::spawn(read_loop(
        reader,
        event_tx,
        out_tx.downgrade(),
        Reading {
            pending,
            secure: Arc::clone(&secure),
            lines: Arc::clone(&lines),
            state: opts.state.clone(),
            heard: Arc::clone(&heard),
            read_timeout: opts.read_timeout,
            handled: Arc::clone(&handled),
        },
    ));
    let client = Client {
        out: out_tx,
        events: weak_events,
        secure,
        lines,
        state: opts.state.clone(),
        heard,
        handled: Arc::clone(&handled),
        nick: welcome.nick.clone(),
        max_text_len: usize::try_from(welcome.max_text_len).unwrap_or(usize::MAX),
    };
    (
        client,
        Events {
            rx: event_rx,
            handled,
        },
        welcome,
    )
}

async fn read_welcome<R: AsyncRead + Unpin>(
    reader: &mut ServerReader<R>,
    asked: &str,
) -> Result<Welcome, ConnectError> {
    let mut welcome: Option<Welcome> = None;
    loop {
        let msg = match reader.read_msg().await {
            Ok(Some(msg)) => msg,
            Ok(None) => {
                return Err(ConnectError::Protocol(
                    "server closed the connection".into(),
                ))
            }
            Err(e) => return Err(ConnectError::Protocol(e)),
        };
        match (msg, welcome.as_mut()) {
            (
                ServerMsg::Welcome {
                    nick,
                    server,
                    max_text_len,
                    rate_burst,
                    rate_per_sec,
                    ..
                },
                None,
            ) => {
                // The nick is who we are to the end-to-end layer: a server that welcomed us as
                // someone else could make a conversation with that someone look like one with
                // ourselves (which goes plain). Only the spelling may differ.
                if nick_key(&nick) != nick_key(asked) || validate_nick(&nick).is_err() {
                    return Err(ConnectError::Protocol(format!(
                        "the server welcomed us as {:?}, not as {asked}",
                        mm_common::text::sanitize(&nick)
                    )));
                }
                welcome = Some(Welcome {
                    nick,
                    server,
                    max_text_len,
                    rate_burst,
                    rate_per_sec,
                    online: Vec::new(),
                });
            }
            (ServerMsg::Users { nicks, last }, Some(w)) => {
                if w.online.len() + nicks.len() > MAX_LISTED_USERS {
                    return Err(ConnectError::Protocol(
                        "the server's user list is too long".into(),
                    ));
                }
                w.online.extend(nicks);
                if last {
                    return welcome.ok_or_else(|| ConnectError::Protocol("no welcome".into()));
                }
            }
            (ServerMsg::Error { code, detail, .. }, _) => {
                return Err(ConnectError::Refused { code, detail })
            }
            (ServerMsg::Shutdown { reason }, _) => {
                return Err(ConnectError::Refused {
                    code: ErrorCode::SHUTTING_DOWN,
                    detail: reason,
                })
            }
            (other, _) => {
                return Err(ConnectError::Protocol(format!(
                    "unexpected {}",
                    variant_name(&other)
                )))
            }
        }
    }
}

/// The warning for a plain private line from `from` when the conversation with them is
/// secure (a session is up, being set up, or interrupted, or it is blocked): their client (or
/// an old copy of it), or the server, sent it plain. Only the rare case pays for it.
fn plain_from_secure(secure: &Secure, from: &str) -> Option<String> {
    (!matches!(secure.sessions().status(from), Status::Plain)).then(|| {
        format!(
            "the private message from {from} above was NOT end-to-end encrypted, although your \
             conversation with {from} is secure: the server could read it (or forged it)"
        )
    })
}

fn variant_name(msg: &ServerMsg) -> &'static str {
    match msg {
        ServerMsg::Welcome { .. } => "Welcome",
        ServerMsg::Users { .. } => "Users",
        ServerMsg::Public { .. } => "Public",
        ServerMsg::Private { .. } => "Private",
        ServerMsg::Sent { .. } => "Sent",
        ServerMsg::Joined { .. } => "Joined",
        ServerMsg::Left { .. } => "Left",
        ServerMsg::Error { .. } => "Error",
        ServerMsg::Shutdown { .. } => "Shutdown",
        ServerMsg::Ping { .. } => "Ping",
        ServerMsg::Pong { .. } => "Pong",
        ServerMsg::Relay { .. } => "Relay",
        ServerMsg::History { .. } => "History",
        ServerMsg::Queued { .. } => "Queued",
        ServerMsg::Offline { .. } => "Offline",
        ServerMsg::Presence { .. } => "Presence",
    }
}

/// Reads the server's messages from the read half of the TLS stream, with a bounded buffer
/// (4 KiB per read, grown only as far as the next frame needs).
struct ServerReader<R> {
    inner: R,
    frames: FrameReader<4096>,
}

impl<R: AsyncRead + Unpin> ServerReader<R> {
    fn new(inner: R) -> Self {
        ServerReader {
            inner,
            frames: FrameReader::new(),
        }
    }

    /// Whether a whole frame (or a bad header) is already buffered: reading it will not wait.
    fn has_frame(&self) -> bool {
        self.frames.has_frame()
    }

    /// The next message; `Ok(None)` on a clean close. Errors are described for the user.
    /// Cancel-safe (see [`FrameReader::read_frame`]).
    async fn read_msg(&mut self) -> Result<Option<ServerMsg>, String> {
        match self.frames.read_frame(&mut self.inner).await {
            Ok(Some(payload)) => ServerMsg::decode(&payload)
                .map(|msg| Some(server_words_on_one_line(msg)))
                .map_err(|e| format!("bad message from server: {e}")),
            Ok(None) => Ok(None),
            Err(ReadError::Io(e)) => Err(crate::explain::lost(&e)),
            Err(ReadError::Frame(e)) => Err(format!("bad frame from server: {e}")),
            // Truncated: "connection closed in the middle of a frame".
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The server's own words (error details, shutdown reasons, its name) are one line of text:
/// whatever could end or reorder a line in them becomes a space, so that a hostile server
/// cannot print lines of its choosing (say, a forged `[secure] <bob> ...`) on our stderr.
/// Users' texts are checked where they are shown.
fn server_words_on_one_line(msg: ServerMsg) -> ServerMsg {
    // At most MAX_DETAIL_LEN bytes, as PROTOCOL.md promises (a hostile server sent 60,000).
    let one_line = |mut text: String| -> String {
        let max = mm_common::protocol::MAX_DETAIL_LEN;
        if text.len() > max {
            let mut cut = max - '…'.len_utf8();
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        if text.chars().any(mm_common::text::is_forbidden) {
            text.chars()
                .map(|c| {
                    if mm_common::text::is_forbidden(c) {
                        ' '
                    } else {
                        c
                    }
                })
                .collect()
        } else {
            text
        }
    };
    match msg {
        ServerMsg::Error {
            code,
            fatal,
            detail,
        } => ServerMsg::Error {
            code,
            fatal,
            detail: one_line(detail),
        },
        ServerMsg::Shutdown { reason } => ServerMsg::Shutdown {
            reason: one_line(reason),
        },
        ServerMsg::Welcome {
            nick,
            server,
            online,
            max_text_len,
            rate_burst,
            rate_per_sec,
        } => ServerMsg::Welcome {
            nick,
            server: one_line(server),
            online,
            max_text_len,
            rate_burst,
            rate_per_sec,
        },
        other => other,
    }
}

/// What the reader works with, besides its channels.
struct Reading {
    pending: Pending,
    secure: Arc<Secure>,
    lines: Arc<Lines>,
    state: ClientState,
    heard: Heard,
    read_timeout: Duration,
    handled: Arc<Handled>,
}

/// Queues `Received { up_to }` for every personal line read on this connection so far
/// (`up_to`: the highest such id; they arrive in increasing order). False if the outgoing
/// queue is full (the caller tries again later) or gone.
fn acknowledge(out: &mpsc::WeakSender<Outbound>, up_to: u64) -> bool {
    match (
        out.upgrade(),
        Outbound::new(&ClientMsg::Received { up_to }, None),
    ) {
        (Some(out), Some(ack)) => out.try_send(ack).is_ok(),
        _ => false,
    }
}

/// Whether the personal line `id` sent at `ts` is one sent again after a reconnect (already
/// passed on): then it is marked handled, in turn, so that it is acknowledged again without
/// being shown again. `Err` once nobody listens.
async fn repeat(
    events: &mpsc::Sender<Item>,
    state: &ClientState,
    id: u64,
    ts: u64,
) -> Result<bool, ()> {
    if state.is_new_personal(id, ts) {
        return Ok(false);
    }
    events.send(Item::Handled(id)).await.map_err(|_| ())?;
    Ok(true)
}

/// Passes a new personal line (`Private` or `Offline`) on and remembers it, so that it is
/// recognised when it comes again. False once nobody listens.
async fn pass_on(events: &mpsc::Sender<Item>, state: &ClientState, event: Event) -> bool {
    let key = match &event {
        Event::Private { id, ts, .. } | Event::Offline { id, ts, .. } => Some((*id, *ts)),
        _ => None,
    };
    if events.event(event).await.is_err() {
        return false;
    }
    if let Some((id, ts)) = key {
        state.received_personal(id, ts);
    }
    true
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: ServerReader<R>,
    events: mpsc::Sender<Item>,
    out: mpsc::WeakSender<Outbound>,
    r: Reading,
) {
    let Reading {
        pending,
        secure,
        lines,
        state,
        heard,
        read_timeout,
        handled,
    } = r;
    let mut users: Vec<String> = Vec::new();
    // Drives end-to-end timers (handshake timeouts, session renewal) and notices a silent server.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_heard = Instant::now();
    // Personal lines are acknowledged as far as the front end handled them (see `Events`):
    // only lines of this connection, since another server (a store restored from a backup)
    // may use lower ids, and acknowledging an id never shown would delete it.
    let mut acked_up_to: u64 = 0;
    // Set by the tick: acknowledge what is handled even while events keep coming.
    let mut ack_anyway = false;
    let error = loop {
        // One acknowledgement per burst: when every frame read is passed on and the front end
        // has taken every event (or once a second under a steady stream).
        let up_to = handled.up_to.load(Ordering::SeqCst);
        let caught_up = events.capacity() == events.max_capacity();
        if up_to > acked_up_to
            && !reader.has_frame()
            && (caught_up || ack_anyway)
            && acknowledge(&out, up_to)
        {
            acked_up_to = up_to;
            ack_anyway = false;
        }
        let read = tokio::select! {
            read = reader.read_msg() => read,
            () = handled.changed.notified() => continue,
            _ = tick.tick() => {
                ack_anyway = true;
                if last_heard.elapsed() >= read_timeout {
                    break Some(format!("server silent for {} s", read_timeout.as_secs()));
                }
                let actions = secure.sessions().tick(std::time::Instant::now());
                if !actions.is_empty() {
                    let Some(out) = out.upgrade() else { break None };
                    secure.perform(actions, &out, &events).await;
                }
                // Pins and conversations that could not be saved are saved as soon as the
                // disk lets us: forgetting them would turn a secure conversation plain (and a
                // pin into trust on first use) after a restart.
                if let Some(saved) = secure.retry_save() {
                    let _ = events.event(saved).await;
                }
                continue;
            }
        };
        last_heard = Instant::now();
        *heard.lock().unwrap_or_else(|p| p.into_inner()) = last_heard;
        let msg = match read {
            Ok(Some(msg)) => msg,
            Ok(None) => break None,
            Err(e) => break Some(e),
        };
        let event = match msg {
            ServerMsg::Ping { token } => {
                if let (Some(out), Some(pong)) = (
                    out.upgrade(),
                    Outbound::new(&ClientMsg::Pong { token }, None),
                ) {
                    // If the queue is full we are sending anyway, which also proves liveness.
                    let _ = out.try_send(pong);
                }
                continue;
            }
            ServerMsg::Pong { .. } | ServerMsg::Welcome { .. } => continue,
            ServerMsg::Relay {
                id,
                ts,
                from,
                payload,
            } => {
                // A replayed end-to-end message would fail to decrypt and end the session.
                match repeat(&events, &state, id, ts).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(()) => break None,
                }
                let actions = secure
                    .sessions()
                    .receive(&from, &payload, std::time::Instant::now());
                let Some(out) = out.upgrade() else { break None };
                secure.perform(actions, &out, &events).await;
                state.received_personal(id, ts);
                // Handled once the events it made are.
                if events.send(Item::Handled(id)).await.is_err() {
                    break None;
                }
                continue;
            }
            ServerMsg::Users { nicks, last } => {
                if users.len() + nicks.len() > MAX_LISTED_USERS {
                    break Some("the server's user list is too long".to_string());
                }
                users.extend(nicks);
                if !last {
                    continue;
                }
                Event::Users(std::mem::take(&mut users))
            }
            ServerMsg::Public { id, ts, from, text } => Event::Public { id, ts, from, text },
            ServerMsg::History { id, ts, from, text } => Event::History { id, ts, from, text },
            ServerMsg::Offline { id, ts, from, text } => {
                match repeat(&events, &state, id, ts).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(()) => break None,
                }
                let warning = plain_from_secure(&secure, &from);
                if !pass_on(&events, &state, Event::Offline { id, ts, from, text }).await {
                    break None;
                }
                match warning {
                    Some(w) => Event::Warning(w),
                    None => continue,
                }
            }
            ServerMsg::Private { id, ts, from, text } => {
                match repeat(&events, &state, id, ts).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(()) => break None,
                }
                let warning = plain_from_secure(&secure, &from);
                if !pass_on(&events, &state, Event::Private { id, ts, from, text }).await {
                    break None;
                }
                match warning {
                    Some(w) => Event::Warning(w),
                    None => continue,
                }
            }
            ServerMsg::Sent { id, ts } | ServerMsg::Queued { id, ts } => {
                let queued = matches!(msg, ServerMsg::Queued { .. });
                let line = match pop_answer(&pending) {
                    Some(Answer::Text(line)) => line,
                    Some(Answer::Relay {
                        line: Some(line), ..
                    }) => line,
                    // Acknowledgements of end-to-end internals are not the user's business;
                    // an answer to nothing (a confused server) is ignored.
                    Some(Answer::Relay { line: None, .. }) | None => continue,
                };
                lines.answered(line);
                if queued {
                    Event::Queued { line, id, ts }
                } else {
                    Event::Sent { line, id, ts }
                }
            }
            ServerMsg::Joined { nick, .. } => {
                let actions = secure
                    .sessions()
                    .presence(&nick, true, std::time::Instant::now());
                if !actions.is_empty() {
                    let Some(out) = out.upgrade() else { break None };
                    secure.perform(actions, &out, &events).await;
                }
                Event::Joined { nick }
            }
            ServerMsg::Presence { nick, online } => {
                let actions = secure
                    .sessions()
                    .presence(&nick, online, std::time::Instant::now());
                let Some(out) = out.upgrade() else { break None };
                secure.perform(actions, &out, &events).await;
                continue;
            }
            ServerMsg::Left { nick, reason, .. } => {
                let actions = secure.sessions().peer_left(&nick);
                if events.event(Event::Left { nick, reason }).await.is_err() {
                    break None;
                }
                if let Some(out) = out.upgrade() {
                    secure.perform(actions, &out, &events).await;
                }
                continue;
            }
            ServerMsg::Error {
                code,
                fatal: false,
                detail,
            } => {
                let (line, refused_relay) = match pop_answer(&pending) {
                    Some(Answer::Text(line)) => (Some(line), None),
                    Some(Answer::Relay { peer, line }) => (line, Some(peer)),
                    None => (None, None),
                };
                let unreachable = refused_relay
                    .as_ref()
                    .filter(|_| code == ErrorCode::NO_SUCH_NICK)
                    .cloned();
                if let Some(line) = line {
                    lines.answered(line);
                }
                // An unreachable peer's end-to-end internals are not the user's business;
                // a refused line of theirs (or any other refusal) is.
                if (unreachable.is_none() || line.is_some())
                    && events
                        .event(Event::Error {
                            line,
                            code,
                            fatal: false,
                            detail,
                        })
                        .await
                        .is_err()
                {
                    break None;
                }
                // The peer is offline: its handshake or session fails now, with that reason. Any
                // other refused relay leaves a gap the peer could not decrypt past: the session
                // ends now, visibly.
                let Some(peer) = refused_relay else { continue };
                let actions = if unreachable.is_some() {
                    secure.sessions().unreachable(&peer)
                } else {
                    secure.sessions().relay_refused(&peer)
                };
                let Some(out) = out.upgrade() else { break None };
                secure.perform(actions, &out, &events).await;
                continue;
            }
            ServerMsg::Error {
                code,
                fatal: true,
                detail,
            } => Event::Error {
                line: None,
                code,
                fatal: true,
                detail,
            },
            ServerMsg::Shutdown { reason } => Event::Shutdown { reason },
        };
        if events.event(event).await.is_err() {
            break None; // nobody listens any more
        }
    };
    // From here on no line is taken, and the writer stops: what has no answer now never
    // will on this connection.
    let undelivered = lines.close();
    let _ = events.event(Event::Closed { error, undelivered }).await;
}

fn pop_answer(pending: &Pending) -> Option<Answer> {
    pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop_front()
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::Receiver<Outbound>,
    pending: Pending,
    mut pacer: TokenBucket,
    lines: Arc<Lines>,
) {
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
        if !lines.is_open() {
            return; // the reader reported the connection closed, with what it had not sent
        }
        let mut next = Some(first);
        while let Some(outbound) = next.take() {
            if outbound.paced {
                let wait = pacer.wait_time(std::time::Instant::now());
                if !wait.is_zero() {
                    // Send what is ready before waiting for the rate limit.
                    if !write_batch(&mut writer, &mut batch).await {
                        return;
                    }
                    tokio::time::sleep(wait).await;
                    if !lines.is_open() {
                        return;
                    }
                }
                pacer.try_take(std::time::Instant::now());
            }
            // Recorded before the frame is written, so its answer always finds it.
            if let Some(answer) = outbound.answer {
                pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_back(answer);
            }
            batch.extend_from_slice(&outbound.frame);
            if batch.len() < 64 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if !write_batch(&mut writer, &mut batch).await {
            return; // the reader sees the connection end and reports it
        }
    }
    // Every handle is gone: close our side cleanly (TLS close_notify).
    let _ = timeout(Duration::from_secs(5), writer.shutdown()).await;
}

/// Writes and flushes `batch` (if not empty) and clears it; false if the connection failed.
async fn write_batch<W: AsyncWrite + Unpin>(writer: &mut W, batch: &mut BytesMut) -> bool {
    const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
    if batch.is_empty() {
        return true;
    }
    let write = async {
        writer.write_all(batch).await?;
        writer.flush().await
    };
    let ok = matches!(timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())));
    batch.clear();
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_endless_user_list_from_a_hostile_server_is_refused() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let welcome = ServerMsg::Welcome {
                nick: "a".into(),
                server: "evil".into(),
                online: 1,
                max_text_len: 10,
                rate_burst: 1,
                rate_per_sec: 1,
            };
            let chunk = ServerMsg::Users {
                nicks: vec!["x".to_string(); 1000],
                last: false,
            };
            let _ = server.write_all(&frame::encode(&welcome).unwrap()).await;
            let chunk = frame::encode(&chunk).unwrap();
            // Never says `last`.
            while server.write_all(&chunk).await.is_ok() {}
        });
        let mut reader = ServerReader::new(client);
        match read_welcome(&mut reader, "A").await {
            Err(ConnectError::Protocol(e)) => assert!(e.contains("too long"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_connect_error_says_its_cause_once() {
        let cause =
            || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        for (e, words) in [
            (
                ConnectError::Unreachable {
                    server: "localhost:7667".into(),
                    cause: cause(),
                },
                "nothing is listening there",
            ),
            (
                ConnectError::Tls {
                    server: "localhost:7667".into(),
                    cause: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                    ),
                    verified: crate::explain::Verified::Ca(None),
                },
                "is not a Multi-Messenger server",
            ),
        ] {
            // As mm prints it (anyhow's alternate form shows the chain of sources).
            let shown = format!("{:#}", anyhow::Error::from(e));
            assert_eq!(shown.matches(words).count(), 1, "{shown}");
            assert!(
                !shown.contains("os error") && !shown.contains("InvalidContentType"),
                "{shown}"
            );
        }
    }

    #[test]
    fn timeouts_and_failed_lookups_say_which_step_in_words() {
        let timeout = |step| ConnectError::Timeout {
            server: "h:1".into(),
            step,
        };
        assert_eq!(
            timeout("TCP connect").to_string(),
            "h:1 did not answer (no connection within the time allowed): a firewall, or the wrong address in --server?"
        );
        assert_eq!(
            timeout("TLS handshake").to_string(),
            "h:1 took the connection but did not set up a secure connection in time: it may not be a Multi-Messenger server (check --server), or it is overloaded (try again later)"
        );
        let lookup = ConnectError::UnknownHost {
            server: "nowhere.invalid:1".into(),
            host: "nowhere.invalid".into(),
            cause: std::io::Error::other(
                "failed to lookup address information: Name or service not known",
            ),
        };
        assert_eq!(
            lookup.to_string(),
            "cannot reach nowhere.invalid:1: the name nowhere.invalid could not be looked up (name or service not known); check the name in --server, and that this computer is online"
        );
    }

    #[test]
    fn a_changed_server_certificate_names_both_fingerprints_and_the_command_that_trusts_the_new_one(
    ) {
        let e = ConnectError::ServerKeyChanged {
            server: "127.0.0.1:7667".into(),
            expected: "AA:AA".into(),
            found: "BB:BB".into(),
            known_file: PathBuf::from("/h/known_servers"),
            trust_presented: "mm trust add 127.0.0.1:7667 BB:BB --nick bob".into(),
        };
        assert_eq!(
            e.to_string(),
            "the certificate of 127.0.0.1:7667 has CHANGED since you trusted it\n  trusted:   AA:AA\n  presented: BB:BB\nThis may be an attack (someone between you and the server), or its operator made a new CA.\nAsk the operator which fingerprint is right. If it is the presented one, trust it instead with\n  mm trust add 127.0.0.1:7667 BB:BB --nick bob\nthen connect again (/reconnect in the terminal UI)."
        );
    }

    #[test]
    fn the_servers_own_words_cannot_start_a_line() {
        let forged =
            "busy\nmm: your key changed; run: mm --accept-key\r\n[secure] <bob> send \u{2028}it";
        let ServerMsg::Error { detail, .. } = server_words_on_one_line(ServerMsg::Error {
            code: ErrorCode::BUSY,
            fatal: true,
            detail: forged.into(),
        }) else {
            panic!()
        };
        assert!(
            !detail.chars().any(mm_common::text::is_forbidden),
            "{detail:?}"
        );
        assert!(
            detail.starts_with("busy mm: your key changed"),
            "{detail:?}"
        );
        let ServerMsg::Shutdown { reason } = server_words_on_one_line(ServerMsg::Shutdown {
            reason: forged.into(),
        }) else {
            panic!()
        };
        assert!(!reason.contains('\n'));
    }

    /// A hostile server's 60,000-character detail was printed whole; PROTOCOL.md says 512 bytes.
    #[test]
    fn the_servers_words_are_cut_to_the_protocols_limit() {
        for long in ["x".repeat(60_000), "é".repeat(30_000)] {
            let ServerMsg::Error { detail, .. } = server_words_on_one_line(ServerMsg::Error {
                code: ErrorCode::BUSY,
                fatal: false,
                detail: long,
            }) else {
                panic!()
            };
            assert!(
                detail.len() <= mm_common::protocol::MAX_DETAIL_LEN,
                "{}",
                detail.len()
            );
            assert!(detail.ends_with('…'));
        }
    }

    #[tokio::test]
    async fn a_server_that_welcomes_us_as_someone_else_is_refused() {
        for (asked, welcomed, ok) in [
            ("alice", "Alice", true),
            ("alice", "bob", false),
            ("alice", "alice\u{2028}", false),
            ("alice", "", false),
        ] {
            let (client, mut server) = tokio::io::duplex(1 << 16);
            let welcome = ServerMsg::Welcome {
                nick: welcomed.into(),
                server: "s".into(),
                online: 1,
                max_text_len: 10,
                rate_burst: 1,
                rate_per_sec: 1,
            };
            let users = ServerMsg::Users {
                nicks: vec![welcomed.into()],
                last: true,
            };
            server
                .write_all(&frame::encode(&welcome).unwrap())
                .await
                .unwrap();
            server
                .write_all(&frame::encode(&users).unwrap())
                .await
                .unwrap();
            let mut reader = ServerReader::new(client);
            match read_welcome(&mut reader, asked).await {
                Ok(w) => assert!(ok && w.nick == welcomed, "{welcomed}"),
                Err(ConnectError::Protocol(e)) => {
                    assert!(!ok && e.contains("welcomed us as"), "{welcomed}: {e}")
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    /// The server's side of an in-memory connection.
    struct FakeServer {
        reader: tokio::io::ReadHalf<tokio::io::DuplexStream>,
        writer: tokio::io::WriteHalf<tokio::io::DuplexStream>,
        frames: FrameReader,
    }

    impl FakeServer {
        /// Writes all of `msgs` at once (one batch for the client's reader).
        async fn send(&mut self, msgs: &[ServerMsg]) {
            let mut bytes = BytesMut::new();
            for msg in msgs {
                frame::encode_into(msg, &mut bytes).unwrap();
            }
            self.writer.write_all(&bytes).await.unwrap();
        }

        async fn recv(&mut self) -> ClientMsg {
            let read = timeout(
                Duration::from_secs(5),
                self.frames.read_frame(&mut self.reader),
            );
            let payload = read.await.unwrap().unwrap().expect("client closed");
            ClientMsg::decode(&payload).unwrap()
        }

        /// The next frame other than `Received`, and the `up_to`s seen before it.
        async fn recv_after_acks(&mut self) -> (Vec<u64>, ClientMsg) {
            let mut acks = Vec::new();
            loop {
                match self.recv().await {
                    ClientMsg::Received { up_to } => acks.push(up_to),
                    other => return (acks, other),
                }
            }
        }
    }

    /// A logged-in client on an in-memory connection, with the given options.
    fn fake(opts: &ConnectOptions) -> (Client, Events, FakeServer) {
        let (client_end, server_end) = tokio::io::duplex(1 << 20);
        let (client_read, client_write) = tokio::io::split(client_end);
        let (reader, writer) = tokio::io::split(server_end);
        let welcome = Welcome {
            nick: opts.nick.clone(),
            server: "fake".into(),
            max_text_len: 4096,
            rate_burst: 1000,
            rate_per_sec: 1000,
            online: Vec::new(),
        };
        let (client, events, _) =
            start(ServerReader::new(client_read), client_write, welcome, opts);
        let server = FakeServer {
            reader,
            writer,
            frames: FrameReader::new(),
        };
        (client, events, server)
    }

    fn options() -> ConnectOptions {
        let mut opts = ConnectOptions::new("fake:1", "me", Trust::Roots(Vec::new()));
        opts.certificate = None;
        opts
    }

    async fn next(events: &mut Events) -> Event {
        timeout(Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .unwrap()
    }

    fn private(id: u64) -> ServerMsg {
        ServerMsg::Private {
            id,
            ts: 0,
            from: "bob".into(),
            text: format!("p{id}"),
        }
    }

    #[tokio::test]
    async fn personal_lines_are_acknowledged_per_batch_and_never_shown_twice() {
        let opts = options();
        let (_client, mut events, mut server) = fake(&opts);
        // One batch of 50 private lines (and a public one, which is not personal).
        let mut batch: Vec<ServerMsg> = (1..=50).map(private).collect();
        batch.push(ServerMsg::Public {
            id: 51,
            ts: 0,
            from: "bob".into(),
            text: "room".into(),
        });
        batch.push(ServerMsg::Ping { token: 1 });
        server.send(&batch).await;
        for id in 1..=50 {
            assert!(matches!(next(&mut events).await, Event::Private { id: got, .. } if got == id));
        }
        assert!(matches!(next(&mut events).await, Event::Public { .. }));
        assert!(events.try_next().is_none()); // the front end caught up
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (mut acks, after) = server.recv_after_acks().await;
        assert_eq!(after, ClientMsg::Pong { token: 1 });
        server.send(&[ServerMsg::Ping { token: 2 }]).await;
        let (more, after) = server.recv_after_acks().await;
        assert_eq!(after, ClientMsg::Pong { token: 2 });
        acks.extend(more);
        assert_eq!(acks.last(), Some(&50), "{acks:?}");
        assert!(acks.windows(2).all(|w| w[0] < w[1]), "{acks:?}");
        assert!(acks.len() <= 5, "coalesced, not one per line: {acks:?}");
        assert_eq!(opts.state.highest_personal(), 50);

        // The next connection of this process (the TUI reconnects with a clone of its
        // options): the server sends unacknowledged lines again, first, with the same ids.
        let (_client, mut events, mut server) = fake(&opts.clone());
        let mut batch: Vec<ServerMsg> = (48..=50)
            .map(|id| ServerMsg::Offline {
                id,
                ts: 0,
                from: "bob".into(),
                text: format!("p{id}"),
            })
            .collect();
        batch.push(ServerMsg::Relay {
            id: 49,
            ts: 0,
            from: "bob".into(),
            payload: vec![1, 2, 3],
        });
        batch.push(private(52));
        server.send(&batch).await;
        assert!(matches!(
            next(&mut events).await,
            Event::Private { id: 52, .. }
        ));
        assert!(events.try_next().is_none(), "nothing shown twice");
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.send(&[ServerMsg::Ping { token: 3 }]).await;
        let (acks, after) = server.recv_after_acks().await;
        assert_eq!(after, ClientMsg::Pong { token: 3 });
        assert_eq!(
            acks.last(),
            Some(&52),
            "duplicates acknowledged again: {acks:?}"
        );
    }

    #[tokio::test]
    async fn a_server_that_hands_out_lower_ids_again_is_neither_ignored_nor_over_acknowledged() {
        // A store restored from a backup (or replaced) starts its ids lower than what this
        // process saw: those lines are new, and acknowledging beyond what was read on this
        // connection would delete mail never shown.
        let opts = options();
        let (_client, mut events, mut server) = fake(&opts);
        let batch: Vec<ServerMsg> = (1..=50).map(private).collect();
        server.send(&batch).await;
        for _ in 1..=50 {
            next(&mut events).await;
        }
        let (_client, mut events, mut server) = fake(&opts.clone());
        server
            .send(&[
                ServerMsg::Offline {
                    id: 3,
                    ts: 777_000,
                    from: "carol".into(),
                    text: "after the restore".into(),
                },
                ServerMsg::Ping { token: 1 },
            ])
            .await;
        assert!(matches!(
            next(&mut events).await,
            Event::Offline { id: 3, text, .. } if text == "after the restore"
        ));
        assert!(events.try_next().is_none());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (mut acks, after) = server.recv_after_acks().await;
        assert_eq!(after, ClientMsg::Pong { token: 1 });
        server.send(&[ServerMsg::Ping { token: 2 }]).await;
        let (more, after) = server.recv_after_acks().await;
        assert_eq!(after, ClientMsg::Pong { token: 2 });
        acks.extend(more);
        assert_eq!(acks, [3], "never beyond what this connection read");
    }

    #[tokio::test]
    async fn a_line_is_acknowledged_only_once_the_front_end_moved_past_it() {
        let opts = options();
        let (_client, mut events, mut server) = fake(&opts);
        server.send(&[private(1), private(2), private(3)]).await;
        let settle = || tokio::time::sleep(Duration::from_millis(50));
        assert!(matches!(
            next(&mut events).await,
            Event::Private { id: 1, .. }
        ));
        settle().await;
        server.send(&[ServerMsg::Ping { token: 1 }]).await;
        let (acks, _) = server.recv_after_acks().await;
        assert!(acks.is_empty(), "taken, not yet handled: {acks:?}");
        // Asking for the next one says the first was handled.
        assert!(matches!(
            next(&mut events).await,
            Event::Private { id: 2, .. }
        ));
        settle().await;
        server.send(&[ServerMsg::Ping { token: 2 }]).await;
        let (acks, _) = server.recv_after_acks().await;
        assert_eq!(acks, [1]);
        // A front end that cannot show anything any more holds: the rest stays on the server.
        events.hold();
        assert!(matches!(
            next(&mut events).await,
            Event::Private { id: 3, .. }
        ));
        settle().await;
        server.send(&[ServerMsg::Ping { token: 3 }]).await;
        let (acks, _) = server.recv_after_acks().await;
        assert!(acks.is_empty(), "{acks:?}");
    }

    #[tokio::test]
    async fn every_line_gets_its_answer_or_is_listed_undelivered_at_the_close() {
        let (client, mut events, mut server) = fake(&options());
        let a = client.public("a").await.unwrap();
        let b = client.public("b").await.unwrap();
        let (c, delivery) = client.private("carol", "c").await.unwrap();
        assert_eq!(delivery, Delivery::Plain);
        let d = client.private("dave", "d").await.unwrap().0;
        assert!(a < b && b < c && c < d);
        for _ in 0..4 {
            assert!(matches!(
                server.recv().await,
                ClientMsg::Public { .. } | ClientMsg::Private { .. }
            ));
        }
        server
            .send(&[
                ServerMsg::Sent { id: 7, ts: 1 },
                ServerMsg::Error {
                    code: ErrorCode::NO_SUCH_NICK,
                    fatal: false,
                    detail: "no".into(),
                },
                ServerMsg::Queued { id: 8, ts: 2 },
            ])
            .await;
        assert_eq!(
            next(&mut events).await,
            Event::Sent {
                line: a,
                id: 7,
                ts: 1
            }
        );
        assert!(matches!(next(&mut events).await, Event::Error { line: Some(l), .. } if l == b));
        assert!(matches!(next(&mut events).await, Event::Queued { line, id: 8, .. } if line == c));
        assert_eq!(client.unanswered(), 1);
        drop(server); // the connection drops before d is answered
        assert!(matches!(
            next(&mut events).await,
            Event::Closed { undelivered, .. } if undelivered == [d]
        ));
        assert_eq!(client.public("too late").await, Err(NotConnected));
        assert_eq!(
            client.flush(Duration::from_secs(1)).await,
            Err(FlushError::Closed)
        );
    }

    #[tokio::test]
    async fn flush_waits_for_answers_and_gives_up_on_a_silent_server() {
        let (client, _events, mut server) = fake(&options());
        client.public("a").await.unwrap();
        assert!(matches!(server.recv().await, ClientMsg::Public { .. }));
        let answer = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            server.send(&[ServerMsg::Sent { id: 1, ts: 1 }]).await;
            server
        };
        let (flushed, mut server) = tokio::join!(client.flush(Duration::from_secs(5)), answer);
        assert_eq!(flushed, Ok(()));
        client.public("b").await.unwrap();
        assert!(matches!(server.recv().await, ClientMsg::Public { .. }));
        // No answer, ever: flush pings the quiet server, then gives up.
        let flushed = client.flush(Duration::from_millis(900)).await;
        assert_eq!(flushed, Err(FlushError::Stalled { unanswered: 1 }));
        assert!(matches!(server.recv().await, ClientMsg::Ping { .. }));
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("localhost:7667"),
            Some(("localhost".into(), 7667))
        );
        assert_eq!(
            split_host_port("192.168.1.5:1"),
            Some(("192.168.1.5".into(), 1))
        );
        assert_eq!(split_host_port("[::1]:7667"), Some(("::1".into(), 7667)));
        assert_eq!(split_host_port(":7667"), None);
        assert_eq!(split_host_port("host:99999"), None);
        assert_eq!(split_host_port("host:0"), None);
        assert_eq!(split_host_port("host:"), None);
        assert_eq!(split_host_port("two words"), None);
        assert_eq!(split_host_port("a:b:c"), None);
        assert_eq!(split_host_port(""), None);
    }

    /// A host without a port takes the default port (`mm --server localhost` was refused), and
    /// every spelling of one address is one known server.
    #[test]
    fn server_addresses_default_the_port_and_have_one_form() {
        for (typed, canonical) in [
            ("localhost", "localhost:7667"),
            ("localhost:7667", "localhost:7667"),
            ("chat.example.org", "chat.example.org:7667"),
            ("chat.example.org:443", "chat.example.org:443"),
            ("192.168.1.20", "192.168.1.20:7667"),
            ("192.168.1.20:9000", "192.168.1.20:9000"),
            ("::1", "[::1]:7667"),
            ("[::1]", "[::1]:7667"),
            ("[::1]:7667", "[::1]:7667"),
            ("[0:0::1]:8000", "[::1]:8000"),
        ] {
            assert_eq!(server_address(typed).as_deref(), Some(canonical), "{typed}");
        }
        for bad in [
            "127.1",
            "2130706433",
            "a..b",
            "1.2.3.4.5",
            "999.1.1.1",
            "host:+80",
            "host: 80",
            "-",
            "",
            ":7667",
            "host:",
            "host:0",
            "host:x",
            "[::1",
            "a b",
            "::1:7667:x",
        ] {
            assert_eq!(server_address(bad), None, "{bad:?}");
        }
    }
}
