//! The bench driver: one load connection is a TLS socket and the client's protocol core
//! ([`Core`]), the same core the `mm` client and the tests drive. The core does the login,
//! answers pings, matches answers to lines and paces within the server's announced rate (the
//! bench server announces 10⁹ lines at once and per second: no pacing in effect); this file
//! only moves bytes, lean enough for 10,000 connections in one process (no user list, one
//! 8 KiB read buffer each). The full async client ([`mm_client::connect`]) is used only where
//! its features matter (the `/secure` scenario).
//!
//! With `--transport ws` ([`set_transport`]) a connection is what a browser's is: TLS with ALPN
//! `http/1.1`, an upgrade to a WebSocket at `/ws` with the server's own `Origin`, each message
//! one masked binary WebSocket message, and a login with an account key (`KeyHello`, the
//! server's `Challenge`, `KeyProof`) instead of a client certificate. The core still speaks the
//! native framing: [`WsShim`] turns its frames into WebSocket messages and back, and answers
//! the challenge with the process's one account key (so the core's `Hello` becomes a
//! `KeyHello`). The same scenarios then run over either transport.
//!
//! Reading and writing go on together inside [`BenchConn::next_event`]: a sender waiting for
//! its answers keeps writing what it queued, and one writing keeps reading, so neither side of
//! the TCP connection can fill up while the other waits.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::BytesMut;
use mm_client::core::{Core, CoreConfig};
use mm_client::{ClientState, Event, LineId, SecureSetup, SendError};
use mm_common::protocol::{ClientMsg, ServerMsg};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::client::TlsStream;

type Tls = TlsStream<TcpStream>;

/// Bytes read from the socket at once: a bench client receives fan-out at full speed.
const READ_CHUNK: usize = 8 * 1024;

/// Longest the login may take once TLS is up.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Silence after which the core calls the connection dead: longer than the bench server's
/// ping interval (10 minutes), so an idle bench client is never dropped by its own side.
const READ_TIMEOUT: Duration = Duration::from_secs(3600);

/// The transport the load connections use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TransportKind {
    /// Length-prefixed frames over TLS (ALPN `mm/1`), a client certificate.
    #[default]
    Native,
    /// WebSocket binary messages over TLS (ALPN `http/1.1`, `/ws`), an account key.
    Ws,
}

static TRANSPORT: OnceLock<TransportKind> = OnceLock::new();

/// Chooses the transport of every later [`login`] in this process (once; native otherwise).
pub fn set_transport(kind: TransportKind) {
    let _ = TRANSPORT.set(kind);
}

/// The transport [`login`] uses.
pub fn transport() -> TransportKind {
    TRANSPORT.get().copied().unwrap_or_default()
}

/// Longest upgrade response head read, in bytes.
const MAX_UPGRADE_HEAD: usize = 8 * 1024;

/// The mask of every client frame (RFC 6455 section 5.3 wants it unpredictable, against
/// proxies; the server only requires one, and unmasks whatever it is).
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The process's account key for WebSocket logins, and its public key (65 bytes).
fn account_key() -> anyhow::Result<&'static (ring::signature::EcdsaKeyPair, Vec<u8>)> {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    static KEY: OnceLock<(EcdsaKeyPair, Vec<u8>)> = OnceLock::new();
    if let Some(key) = KEY.get() {
        return Ok(key);
    }
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("cannot make an account key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("cannot read the account key"))?;
    let public = pair.public_key().as_ref().to_vec();
    Ok(KEY.get_or_init(|| (pair, public)))
}

/// Where a WebSocket connection's key login is.
#[derive(Debug)]
enum KeyLogin {
    /// The core's `Hello` is still to go (as a `KeyHello`).
    Hello,
    /// `KeyHello` sent as `nick`: the next message is the `Challenge`.
    Challenge { nick: String },
    /// Proof sent: everything goes to the core.
    Done,
}

/// Between the core's native frames and WebSocket messages (see the module).
#[derive(Debug)]
struct WsShim {
    /// WebSocket bytes read and not yet a whole frame.
    inbuf: BytesMut,
    /// The core's frames not yet wrapped.
    native_out: BytesMut,
    /// What is handed to the core: the server's messages as native frames.
    native_in: BytesMut,
    login: KeyLogin,
}

/// Appends one masked binary WebSocket frame holding `payload` (RFC 6455 section 5.2).
fn put_ws_frame(opcode: u8, payload: &[u8], out: &mut BytesMut) {
    out.reserve(payload.len() + 14);
    out.extend_from_slice(&[0x80 | opcode]);
    match payload.len() {
        n @ 0..=125 => out.extend_from_slice(&[0x80 | n as u8]),
        n @ 126..=0xFFFF => {
            out.extend_from_slice(&[0x80 | 126]);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.extend_from_slice(&[0x80 | 127]);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

impl WsShim {
    fn new(part: &[u8]) -> WsShim {
        WsShim {
            inbuf: BytesMut::from(part),
            native_out: BytesMut::new(),
            native_in: BytesMut::new(),
            login: KeyLogin::Hello,
        }
    }

    /// Wraps every whole frame of the core's into a WebSocket message in `out`; the `Hello`
    /// goes as a `KeyHello` with the process's key.
    fn wrap(&mut self, out: &mut BytesMut) -> anyhow::Result<()> {
        while self.native_out.len() >= 4 {
            let len = u32::from_be_bytes([
                self.native_out[0],
                self.native_out[1],
                self.native_out[2],
                self.native_out[3],
            ]) as usize;
            if self.native_out.len() < 4 + len {
                break;
            }
            let frame = self.native_out.split_to(4 + len);
            let payload = &frame[4..];
            if matches!(self.login, KeyLogin::Hello) {
                if let Ok(ClientMsg::Hello { version, nick }) = ClientMsg::decode(payload) {
                    let key = account_key()?.1.clone();
                    let hello = ClientMsg::KeyHello {
                        version,
                        nick: nick.clone(),
                        key,
                    };
                    put_ws_frame(0x2, &mm_common::frame::encode_message(&hello)?, out);
                    self.login = KeyLogin::Challenge { nick };
                    continue;
                }
            }
            put_ws_frame(0x2, payload, out);
        }
        Ok(())
    }

    /// Takes the server's WebSocket bytes: whole binary messages become native frames for the
    /// core ([`WsShim::native_in`]), the login's challenge is answered into `out`, a Close ends
    /// the stream (true).
    fn unwrap(&mut self, bytes: &[u8], out: &mut BytesMut) -> anyhow::Result<bool> {
        self.inbuf.extend_from_slice(bytes);
        loop {
            let b = &self.inbuf[..];
            if b.len() < 2 {
                return Ok(false);
            }
            let (len, head) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                127 if b.len() >= 10 => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&b[2..10]);
                    (usize::try_from(u64::from_be_bytes(n))?, 10)
                }
                126 | 127 => return Ok(false),
                n => (n as usize, 2),
            };
            if b[1] & 0x80 != 0 || b[0] & 0x80 == 0 || len > 1 << 20 {
                bail!("the server sent a masked, fragmented or huge WebSocket frame");
            }
            if b.len() < head + len {
                return Ok(false);
            }
            let opcode = b[0] & 0x0f;
            let frame = self.inbuf.split_to(head + len);
            let payload = &frame[head..];
            match opcode {
                0x2 => {
                    if let KeyLogin::Challenge { nick } = &self.login {
                        if let Ok(ServerMsg::Challenge { nonce }) = ServerMsg::decode(payload) {
                            let (pair, public) = account_key()?;
                            let message =
                                mm_common::key_login::signed_message(&nonce, nick, public);
                            let signature =
                                pair.sign(&ring::rand::SystemRandom::new(), &message)
                                    .map_err(|_| anyhow::anyhow!("cannot sign the challenge"))?;
                            let proof = ClientMsg::KeyProof {
                                signature: signature.as_ref().to_vec(),
                            };
                            put_ws_frame(0x2, &mm_common::frame::encode_message(&proof)?, out);
                            self.login = KeyLogin::Done;
                            continue;
                        }
                    }
                    self.native_in
                        .extend_from_slice(&u32::try_from(payload.len())?.to_be_bytes());
                    self.native_in.extend_from_slice(payload);
                }
                0x8 => return Ok(true),
                0x9 => put_ws_frame(0xA, payload, out),
                0xA => {}
                other => bail!("the server sent a WebSocket frame of opcode {other}"),
            }
        }
    }
}

/// Upgrades a TLS connection to a WebSocket at `/ws` (RFC 6455 section 4.1) as a browser on the
/// server's own page would; returns what was read after the `101` response's head.
async fn upgrade(stream: &mut Tls, addr: &str) -> anyhow::Result<Vec<u8>> {
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: https://{addr}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_UPGRADE_HEAD {
            bail!("the upgrade response head is too long");
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed before the upgrade response");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if !buf.starts_with(b"HTTP/1.1 101 ") {
        let line = String::from_utf8_lossy(&buf[..buf.len().min(80)]).into_owned();
        bail!("upgrade refused: {line}");
    }
    Ok(buf.split_off(end))
}

/// The TLS configuration of a WebSocket connection: `tls` with ALPN `http/1.1` (made once).
fn ws_tls(tls: &Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
    static WS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    Arc::clone(WS.get_or_init(|| {
        let mut config = (**tls).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }))
}

/// One load connection: the socket halves and the protocol core.
pub struct BenchConn {
    read: ReadHalf<Tls>,
    write: WriteHalf<Tls>,
    core: Core,
    /// Bytes from `poll_transmit` not yet written.
    out: BytesMut,
    /// TLS records handed to the socket halfway: a flush is owed.
    unflushed: bool,
    buf: Box<[u8]>,
    /// The core's timer, armed at `armed` (or later than the core needs: then it fires
    /// early, harmlessly). Re-armed only when the core needs it sooner, not at every frame
    /// (the read timeout moves with every frame): a timer per wake-up cost more than the
    /// protocol.
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    /// The WebSocket translation, on a WebSocket connection.
    ws: Option<Box<WsShim>>,
}

/// The core's configuration for a bench connection: no user list (10,000 bench clients must
/// not each hold a 10,000-nick list), no reconnection, and the process's one ephemeral
/// identity — as a real client has one identity per process, not per login (generating a
/// key pair per login cost the `connect` scenario ~10% of its logins per second). Clones of
/// one [`SecureSetup`] logged in under different nicks get sessions of their own.
pub fn config(nick: &str) -> CoreConfig {
    static IDENTITY: OnceLock<SecureSetup> = OnceLock::new();
    CoreConfig {
        nick: nick.to_owned(),
        login_timeout: LOGIN_TIMEOUT,
        read_timeout: READ_TIMEOUT,
        user_list: false,
        secure: IDENTITY.get_or_init(SecureSetup::ephemeral).clone(),
        state: ClientState::new(),
        reconnection: false,
        reconnects: false,
    }
}

/// Connects and logs in as `nick` (the welcome and the user list are the core's).
pub async fn login(
    addr: &str,
    tls: &Arc<rustls::ClientConfig>,
    nick: &str,
) -> anyhow::Result<BenchConn> {
    login_with(addr, tls, config(nick)).await
}

/// [`login`] with a configuration made beforehand (kept out of a timed section).
pub async fn login_with(
    addr: &str,
    tls: &Arc<rustls::ClientConfig>,
    config: CoreConfig,
) -> anyhow::Result<BenchConn> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    tcp.set_nodelay(true)?;
    let kind = transport();
    let tls = match kind {
        TransportKind::Native => Arc::clone(tls),
        TransportKind::Ws => ws_tls(tls),
    };
    let connector = tokio_rustls::TlsConnector::from(tls);
    let mut stream = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let ws = match kind {
        TransportKind::Native => None,
        TransportKind::Ws => Some(Box::new(WsShim::new(&upgrade(&mut stream, addr).await?))),
    };
    let (read, write) = tokio::io::split(stream);
    let nick = config.nick.clone();
    let now = Instant::now();
    let mut conn = BenchConn {
        read,
        write,
        core: Core::new(config, now),
        out: BytesMut::new(),
        unflushed: false,
        buf: vec![0; READ_CHUNK].into_boxed_slice(),
        timer: Box::pin(tokio::time::sleep_until((now + READ_TIMEOUT).into())),
        armed: None,
        ws,
    };
    // Frames that came right behind the upgrade response.
    if conn.ws.is_some() {
        conn.receive(&[], Instant::now());
    }
    loop {
        if let Some(result) = conn.core.poll_login() {
            result.with_context(|| format!("{nick}: login"))?;
            return Ok(conn);
        }
        if conn.core.is_closed() {
            bail!("{nick}: connection closed during the login");
        }
        conn.step().await?;
    }
}

impl BenchConn {
    /// The next event; `None` once the connection is closed and every event was taken
    /// ([`Event::Closed`] comes before). Writes what the core queued meanwhile.
    pub async fn next_event(&mut self) -> anyhow::Result<Option<Event>> {
        loop {
            if let Some(event) = self.try_event() {
                return Ok(Some(event));
            }
            if self.core.is_closed() {
                return Ok(None);
            }
            self.step().await?;
        }
    }

    /// An event already read, if any (no I/O).
    pub fn try_event(&mut self) -> Option<Event> {
        self.core.poll_event(Instant::now())
    }

    /// Queues a public line (written by the next [`BenchConn::next_event`] or
    /// [`BenchConn::flush`]); its answer comes as [`Event::Sent`] or an [`Event::Error`].
    ///
    /// # Errors
    /// [`SendError::Busy`] when [`mm_client::MAX_UNANSWERED`] lines wait for their answer:
    /// read events first.
    pub fn public(&mut self, text: &str) -> Result<LineId, SendError> {
        self.core.public(text)
    }

    /// Queues a line to room `room` (the lobby: [`mm_common::protocol::LOBBY`]), answered as
    /// [`BenchConn::public`]'s.
    ///
    /// # Errors
    /// As [`BenchConn::public`].
    pub fn say(&mut self, room: &str, text: &str) -> Result<LineId, SendError> {
        self.core.say(room, text, false)
    }

    /// Queues a `Join` of `room`: answered with `Entered`, one page of members and the room's
    /// history ([`Event::Room`] events), or a room error.
    ///
    /// # Errors
    /// [`SendError::NotConnected`], [`SendError::Busy`].
    pub fn join(&mut self, room: &str) -> Result<(), SendError> {
        self.core.room_command(&ClientMsg::Join {
            room: room.to_owned(),
        })
    }

    /// Lines without an answer yet.
    pub fn unanswered(&self) -> usize {
        self.core.unanswered()
    }

    /// Asks the server to close: `Quit` goes after everything queued. Read events until
    /// `None` to see it through.
    pub fn quit(&mut self) {
        self.core.quit(Instant::now());
    }

    /// Writes everything the core has to send now, reading meanwhile (the events read stay
    /// in the core for [`BenchConn::next_event`]; once it holds [`mm_client::core::MAX_EVENTS`]
    /// it reads no more, so a caller expecting many events reads them instead of flushing).
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        loop {
            self.fill();
            if self.out.is_empty() && !self.unflushed {
                return Ok(());
            }
            if self.core.is_closed() {
                return Ok(());
            }
            self.step().await?;
        }
    }

    /// Takes what the core lets go now into the write buffer (wrapped as WebSocket messages on
    /// a WebSocket connection).
    fn fill(&mut self) {
        let now = Instant::now();
        let Some(ws) = self.ws.as_mut() else {
            while self.out.len() < READ_CHUNK * 8 && self.core.poll_transmit(now, &mut self.out) {}
            return;
        };
        while self.out.len() < READ_CHUNK * 8 && self.core.poll_transmit(now, &mut ws.native_out) {
            if let Err(e) = ws.wrap(&mut self.out) {
                self.core.connection_lost(format!("websocket: {e:#}"), now);
                return;
            }
        }
    }

    /// Hands bytes read from the server to the core (through the WebSocket translation on a
    /// WebSocket connection).
    fn receive(&mut self, bytes: &[u8], now: Instant) {
        receive(
            &mut self.core,
            self.ws.as_deref_mut(),
            &mut self.out,
            bytes,
            now,
        );
    }

    /// One wake-up: writes what is queued, reads what came (while the core wants input), or
    /// fires the core's timer, whichever can go first.
    async fn step(&mut self) -> anyhow::Result<()> {
        self.fill();
        let now = Instant::now();
        let timeout = self.core.poll_timeout(now);
        if let Some(at) = timeout {
            if self.armed.is_none_or(|armed| at < armed) {
                self.timer.as_mut().reset(at.into());
                self.armed = Some(at);
            }
        }
        let wants_input = self.core.wants_input();
        let writing = !self.out.is_empty() || self.unflushed;
        let Self {
            read,
            write,
            core,
            out,
            unflushed,
            buf,
            timer,
            armed,
            ws,
        } = self;
        tokio::select! {
            written = async {
                if !out.is_empty() {
                    write.write_all_buf(out).await?;
                    *unflushed = true;
                }
                write.flush().await?;
                *unflushed = false;
                std::io::Result::Ok(())
            }, if writing => {
                if let Err(e) = written {
                    core.connection_lost(format!("write: {e}"), Instant::now());
                }
            }
            got = read.read(buf), if wants_input => match got {
                Ok(0) => core.receive_end(Instant::now()),
                Ok(n) => receive(core, ws.as_deref_mut(), out, &buf[..n], Instant::now()),
                // A TLS close without close_notify ends the stream as a clean close does.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    core.receive_end(Instant::now())
                }
                Err(e) => core.connection_lost(format!("read: {e}"), Instant::now()),
            },
            () = timer.as_mut(), if armed.is_some() => {
                *armed = None;
                core.handle_timeout(Instant::now());
            }
            else => bail!("the core wants neither input nor output and set no timer"),
        }
        // Bytes the core took back after a close are of no use.
        if core.is_closed() {
            out.clear();
            *unflushed = false;
        }
        Ok(())
    }
}

/// Hands `bytes` from the server to `core`: as they are, or through `ws` (answers it owes, such
/// as the login's proof, go to `out`).
fn receive(
    core: &mut Core,
    ws: Option<&mut WsShim>,
    out: &mut BytesMut,
    bytes: &[u8],
    now: Instant,
) {
    let Some(ws) = ws else {
        core.receive(bytes, now);
        return;
    };
    match ws.unwrap(bytes, out) {
        Ok(closed) => {
            if !ws.native_in.is_empty() {
                core.receive(&ws.native_in, now);
                ws.native_in.clear();
            }
            if closed {
                core.receive_end(now);
            }
        }
        Err(e) => core.connection_lost(format!("websocket: {e:#}"), now),
    }
}
