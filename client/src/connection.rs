//! A connection to a server: [`connect`] does TCP, TLS (always verified), hello and welcome;
//! then a reader task turns frames into [`Event`]s and a writer task sends what the [`Client`]
//! handle queues, batching whatever is ready into one write and one flush.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mm_common::frame::{self, FrameError};
use mm_common::protocol::{ClientMsg, ErrorCode, LeaveReason, ServerMsg, ALPN, PROTOCOL_VERSION};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;

use mm_common::e2e::{E2eEvent, Outgoing, Refused, Status};
use mm_common::rate::TokenBucket;

use crate::secure::{Secure, SecureSetup};
use crate::trust::{KnownServers, Observed, PinVerifier};

/// Most nicks accepted in one user list: a hostile server could otherwise send `Users` frames
/// without end and grow the list without bound.
pub(crate) const MAX_LISTED_USERS: usize = 1_000_000;

/// What the server answers a frame with: every Public, Private and Relay gets exactly one
/// `Sent` or non-fatal `Error`, in order, so the reader can tell which message an answer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A chat line: the answer is shown to the user.
    Text,
    /// End-to-end data for this peer: an error means the peer is unreachable.
    Relay(String),
}

/// A frame on its way out, with the answer it will get.
#[derive(Debug)]
pub(crate) struct Outbound {
    frame: Bytes,
    answer: Option<Answer>,
    /// Counts against the server's rate limit (every frame but Pong and Quit).
    paced: bool,
}

impl Outbound {
    pub(crate) fn new(msg: &ClientMsg) -> Option<Outbound> {
        let frame = frame::encode(msg).ok()?;
        let answer = match msg {
            ClientMsg::Public { .. } | ClientMsg::Private { .. } => Some(Answer::Text),
            ClientMsg::Relay { to, .. } => Some(Answer::Relay(to.clone())),
            _ => None,
        };
        let paced = !matches!(msg, ClientMsg::Pong { .. } | ClientMsg::Quit);
        Some(Outbound {
            frame,
            answer,
            paced,
        })
    }
}

/// Answers expected from the server, oldest first; the writer pushes, the reader pops.
type Pending = Arc<Mutex<VecDeque<Answer>>>;

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
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(180),
            secure: SecureSetup::ephemeral(),
            // Generation only fails if the system RNG does; the server then says a certificate
            // is required, which is the truth.
            certificate: mm_certs::ClientIdentity::generate().ok(),
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// `--server` is not `host:port`.
    #[error("{0:?} is not HOST:PORT")]
    BadAddress(String),
    /// TCP connect failed.
    #[error("cannot reach {server}: {source}")]
    Unreachable {
        /// The server.
        server: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A step took longer than the connect timeout.
    #[error("{server} did not answer in time ({step})")]
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
    #[error("the certificate of {server} has CHANGED\n  pinned:    {expected}\n  presented: {found}\nThis may be an attack (someone between you and the server), or the server's certificates were regenerated.\nAsk the server's operator. If the change is expected, delete the line for {server} from {}", .known_file.display())]
    ServerKeyChanged {
        /// The server.
        server: String,
        /// The pinned fingerprint.
        expected: String,
        /// What it presented.
        found: String,
        /// The file holding the pin.
        known_file: PathBuf,
    },
    /// TLS failed for another reason (e.g. the certificate does not cover this name).
    #[error("TLS with {server} failed: {source}")]
    Tls {
        /// The server.
        server: String,
        /// The cause.
        source: std::io::Error,
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
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Config(String),
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
        /// Its id.
        id: u64,
        /// Its server time.
        ts: u64,
    },
    /// The server accepted our message.
    Sent {
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
    /// The connection ended; always the last event.
    Closed {
        /// Why, when it was not a clean close.
        error: Option<String>,
    },
}

/// Handle for sending. Cheap to clone; the connection closes when every clone is dropped or
/// [`Client::quit`] is called.
#[derive(Debug, Clone)]
pub struct Client {
    out: mpsc::Sender<Outbound>,
    /// Weak, so that the event stream still ends when the connection does.
    events: mpsc::WeakSender<Event>,
    secure: Arc<Secure>,
    nick: String,
    max_text_len: usize,
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

/// The stream of [`Event`]s.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` after [`Event::Closed`] has been returned.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is ready now (for batching work, e.g. one redraw per burst).
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
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

    /// Queues a message for the server; waits only if the outgoing queue is full.
    ///
    /// # Errors
    /// [`NotConnected`] once the connection is closed.
    pub async fn send(&self, msg: &ClientMsg) -> Result<(), NotConnected> {
        let outbound = Outbound::new(msg).ok_or(NotConnected)?;
        self.out.send(outbound).await.map_err(|_| NotConnected)
    }

    /// Sends a public line.
    ///
    /// # Errors
    /// [`NotConnected`].
    pub async fn public(&self, text: &str) -> Result<(), NotConnected> {
        self.send(&ClientMsg::Public {
            text: text.to_owned(),
        })
        .await
    }

    /// Sends a private line: end-to-end encrypted if there is a secure session with `to`
    /// (or one being set up), plain otherwise.
    ///
    /// # Errors
    /// [`SendError::Refused`] when the secure session failed: the text is not sent at all.
    pub async fn private(&self, to: &str, text: &str) -> Result<Delivery, SendError> {
        let outgoing = self
            .secure
            .sessions()
            .send_text(to, text, std::time::Instant::now())?;
        match outgoing {
            Outgoing::Plain => {
                self.send(&ClientMsg::Private {
                    to: to.to_owned(),
                    text: text.to_owned(),
                })
                .await
                .map_err(|_| SendError::NotConnected)?;
                Ok(Delivery::Plain)
            }
            Outgoing::Secure(actions) => {
                self.perform(actions).await?;
                Ok(Delivery::Secure)
            }
            Outgoing::Queued => Ok(Delivery::Queued),
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
        let actions = self.secure.sessions().accept_key(peer)?;
        self.perform(actions).await
    }

    /// `/verified peer`: the users compared the safety number and it matched.
    ///
    /// # Errors
    /// [`Refused::NoKey`] if no key is pinned for the peer.
    pub async fn mark_verified(&self, peer: &str) -> Result<(), SendError> {
        let actions = self.secure.sessions().mark_verified(peer)?;
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
        self.send(&ClientMsg::Who).await
    }

    /// Sends `Quit` after everything queued before it. The server then closes the connection,
    /// which ends the event stream with [`Event::Closed`].
    pub async fn quit(&self) {
        let _ = self.send(&ClientMsg::Quit).await;
    }
}

fn split_host_port(server: &str) -> Option<(String, u16)> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Some((addr.ip().to_string(), addr.port()));
    }
    let (host, port) = server.rsplit_once(':')?;
    let port = port.parse().ok()?;
    if host.is_empty() || host.contains(':') {
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
    let server = opts.server.clone();
    let (host, port) =
        split_host_port(&server).ok_or_else(|| ConnectError::BadAddress(server.clone()))?;
    let server_name =
        ServerName::try_from(host.clone()).map_err(|_| ConnectError::BadAddress(server.clone()))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Config(e.to_string()))?;
    let mut observed: Option<Arc<Mutex<Option<Observed>>>> = None;
    let mut known_file = None;
    let builder = match &opts.trust {
        Trust::Roots(certs) => {
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots
                    .add(cert.clone())
                    .map_err(|e| ConnectError::Config(format!("CA certificate: {e}")))?;
            }
            builder.with_root_certificates(roots)
        }
        Trust::Known(known) => {
            let pin = known.lookup(&server)?.map(|p| p.fingerprint);
            let (verifier, seen) = PinVerifier::new(pin, Arc::clone(&provider));
            observed = Some(seen);
            known_file = Some(known.path().to_path_buf());
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
        }
    };
    let mut config = match &opts.certificate {
        Some(id) => builder
            .with_client_auth_cert(vec![id.cert.clone()], id.key())
            .map_err(|e| ConnectError::Config(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

    let tcp = match timeout(
        opts.connect_timeout,
        TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => return Err(ConnectError::Unreachable { server, source }),
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
                    server,
                    expected,
                    found,
                    known_file: known_file.unwrap_or_default(),
                },
                None => ConnectError::Tls { server, source },
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
    let mut reader = FrameReader::new(read_half);
    let hello = frame::encode(&ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        nick: opts.nick.clone(),
    })
    .map_err(|e| ConnectError::Protocol(e.to_string()))?;
    let login = async {
        write_half
            .write_all(&hello)
            .await
            .map_err(|e| ConnectError::Protocol(e.to_string()))?;
        write_half
            .flush()
            .await
            .map_err(|e| ConnectError::Protocol(e.to_string()))?;
        read_welcome(&mut reader).await
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

    let secure = Arc::new(Secure::new(&welcome.nick, opts.secure.clone()));
    let (out_tx, out_rx) = mpsc::channel(256);
    let pending: Pending = Arc::default();
    let (event_tx, event_rx) = mpsc::channel(1024);
    let weak_events = event_tx.downgrade();
    // Pace a little inside the server's limits, so that timing jitter never trips them.
    let pacer = TokenBucket::new(
        welcome.rate_burst.saturating_sub(1).max(1),
        f64::from(welcome.rate_per_sec) * 0.9,
        std::time::Instant::now(),
    );
    tokio::spawn(write_loop(write_half, out_rx, Arc::clone(&pending), pacer));
    // The reader holds only a weak handle (for pongs): when every `Client` is dropped, the
    // writer sees its queue close and ends the connection.
    tokio::spawn(read_loop(
        reader,
        event_tx,
        out_tx.downgrade(),
        pending,
        Arc::clone(&secure),
        opts.read_timeout,
    ));
    let client = Client {
        out: out_tx,
        events: weak_events,
        secure,
        nick: welcome.nick.clone(),
        max_text_len: usize::try_from(welcome.max_text_len).unwrap_or(usize::MAX),
    };
    Ok((client, Events { rx: event_rx }, welcome))
}

async fn read_welcome<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
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
    }
}

/// Reads frames from the read half of the TLS stream with a bounded buffer.
struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(4096),
        }
    }

    /// The next message; `Ok(None)` on a clean close. Errors are described for the user.
    async fn read_msg(&mut self) -> Result<Option<ServerMsg>, String> {
        loop {
            match frame::split_frame(&mut self.buf) {
                Ok(payload) => {
                    return ServerMsg::decode(&payload)
                        .map(Some)
                        .map_err(|e| format!("bad message from server: {e}"))
                }
                Err(FrameError::Incomplete { needed }) => {
                    let missing = needed.saturating_sub(self.buf.len());
                    self.buf.reserve(missing.max(4096));
                }
                Err(e) => return Err(format!("bad frame from server: {e}")),
            }
            match self.inner.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => return Err("connection closed in the middle of a frame".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("connection lost: {e}")),
            }
        }
    }
}

async fn read_loop(
    mut reader: FrameReader<ReadHalf<TlsStream<TcpStream>>>,
    events: mpsc::Sender<Event>,
    out: mpsc::WeakSender<Outbound>,
    pending: Pending,
    secure: Arc<Secure>,
    read_timeout: Duration,
) {
    let mut users: Vec<String> = Vec::new();
    // Drives end-to-end timers (handshake timeouts, session renewal) and notices a silent server.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_heard = tokio::time::Instant::now();
    let error = loop {
        let read = tokio::select! {
            read = reader.read_msg() => read,
            _ = tick.tick() => {
                if last_heard.elapsed() >= read_timeout {
                    break Some(format!("server silent for {} s", read_timeout.as_secs()));
                }
                let actions = secure.sessions().tick(std::time::Instant::now());
                if !actions.is_empty() {
                    let Some(out) = out.upgrade() else { return };
                    secure.perform(actions, &out, &events).await;
                }
                continue;
            }
        };
        last_heard = tokio::time::Instant::now();
        let msg = match read {
            Ok(Some(msg)) => msg,
            Ok(None) => break None,
            Err(e) => break Some(e),
        };
        let event = match msg {
            ServerMsg::Ping { token } => {
                if let (Some(out), Some(pong)) =
                    (out.upgrade(), Outbound::new(&ClientMsg::Pong { token }))
                {
                    // If the queue is full we are sending anyway, which also proves liveness.
                    let _ = out.try_send(pong);
                }
                continue;
            }
            ServerMsg::Pong { .. } | ServerMsg::Welcome { .. } => continue,
            ServerMsg::Relay { from, payload, .. } => {
                let actions = secure
                    .sessions()
                    .receive(&from, &payload, std::time::Instant::now());
                let Some(out) = out.upgrade() else { return };
                secure.perform(actions, &out, &events).await;
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
            ServerMsg::Offline { id, ts, from, text } => Event::Offline { id, ts, from, text },
            ServerMsg::Queued { id, ts } => {
                pop_answer(&pending);
                Event::Queued { id, ts }
            }
            ServerMsg::Private { id, ts, from, text } => {
                // Only the rare case pays for a warning: a plain line from a secure peer.
                let warning = matches!(secure.sessions().status(&from), Status::Secure { .. })
                    .then(|| {
                        format!(
                            "the private message from {from} above was NOT end-to-end encrypted, \
                             although you have a secure session"
                        )
                    });
                if events
                    .send(Event::Private { id, ts, from, text })
                    .await
                    .is_err()
                {
                    return;
                }
                match warning {
                    Some(w) => Event::Warning(w),
                    None => continue,
                }
            }
            ServerMsg::Sent { id, ts } => match pop_answer(&pending) {
                // Acknowledgements of end-to-end internals are not the user's business.
                Some(Answer::Relay(_)) => continue,
                _ => Event::Sent { id, ts },
            },
            ServerMsg::Joined { nick, .. } => Event::Joined { nick },
            ServerMsg::Left { nick, reason, .. } => {
                let actions = secure.sessions().peer_left(&nick);
                if events.send(Event::Left { nick, reason }).await.is_err() {
                    return;
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
            } => match pop_answer(&pending) {
                Some(Answer::Relay(peer)) if code == ErrorCode::NO_SUCH_NICK => {
                    // The peer is offline: its handshake or session fails now, with that reason.
                    let actions = secure.sessions().unreachable(&peer);
                    let Some(out) = out.upgrade() else { return };
                    secure.perform(actions, &out, &events).await;
                    continue;
                }
                _ => Event::Error {
                    code,
                    fatal: false,
                    detail,
                },
            },
            ServerMsg::Error {
                code,
                fatal: true,
                detail,
            } => Event::Error {
                code,
                fatal: true,
                detail,
            },
            ServerMsg::Shutdown { reason } => Event::Shutdown { reason },
        };
        if events.send(event).await.is_err() {
            return; // nobody listens any more
        }
    };
    let _ = events.send(Event::Closed { error }).await;
}

fn pop_answer(pending: &Pending) -> Option<Answer> {
    pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop_front()
}

async fn write_loop(
    mut writer: WriteHalf<TlsStream<TcpStream>>,
    mut rx: mpsc::Receiver<Outbound>,
    pending: Pending,
    mut pacer: TokenBucket,
) {
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
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
async fn write_batch(writer: &mut WriteHalf<TlsStream<TcpStream>>, batch: &mut BytesMut) -> bool {
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
        let mut reader = FrameReader::new(client);
        match read_welcome(&mut reader).await {
            Err(ConnectError::Protocol(e)) => assert!(e.contains("too long"), "{e}"),
            other => panic!("{other:?}"),
        }
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
        assert_eq!(split_host_port("localhost"), None);
        assert_eq!(split_host_port(":7667"), None);
        assert_eq!(split_host_port("::1:7667"), None);
        assert_eq!(split_host_port("host:99999"), None);
    }
}
