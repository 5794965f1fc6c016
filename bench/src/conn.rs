//! The bench driver: one load connection is a TLS socket and the client's protocol core
//! ([`Core`]), the same core the `mm` client and the tests drive. The core does the login,
//! answers pings, matches answers to lines and paces within the server's announced rate (the
//! bench server announces 10⁹ lines at once and per second: no pacing in effect); this file
//! only moves bytes, lean enough for 10,000 connections in one process (no user list, one
//! 8 KiB read buffer each). The full async client ([`mm_client::connect`]) is used only where
//! its features matter (the `/secure` scenario).
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
use mm_common::protocol::ClientMsg;
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
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
    let stream = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
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
    };
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

    /// Takes what the core lets go now into the write buffer.
    fn fill(&mut self) {
        let now = Instant::now();
        while self.out.len() < READ_CHUNK * 8 && self.core.poll_transmit(now, &mut self.out) {}
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
                Ok(n) => core.receive(&buf[..n], Instant::now()),
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
