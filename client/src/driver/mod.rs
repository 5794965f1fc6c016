//! The async driver: one task per connection moves bytes between the TLS socket and the
//! protocol core ([`crate::core::Core`]), sleeps until the core's next timeout, and saves what
//! the core asks to be saved. [`Client`] handles and the [`Events`] stream share the core behind
//! a `std` mutex that is never held across an `.await` (the quinn / mini-redis shape).
//!
//! One write per wake-up (the core hands over at most 64 KiB at a time), reads of 8 KiB while
//! the core wants input (it stops while the front end lags, so a slow front end is a slow
//! reader to the server, never an unbounded client).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

mod handle;

use crate::connect::{tls_connect, ConnectError, ConnectOptions};
use crate::core::{Core, CoreConfig, Event, LoginError, Welcome};

/// Longest a write may make no progress before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 8 * 1024;

/// What the handles, the event stream and the driver task share.
#[derive(Debug)]
struct Shared {
    core: Mutex<Core>,
    /// Wakes the driver: something to send, room for input, a handle gone.
    wake: Notify,
    /// Wakes handles and the event stream: events came, lines were answered, it closed.
    changed: Notify,
    /// Every [`Client`] is dropped: the driver closes our side once it sent what was queued.
    clients_gone: AtomicBool,
    /// [`Events`] is dropped: nobody reads events, so the connection ends.
    events_gone: AtomicBool,
    /// No more connections: the event stream ends once drained.
    finished: AtomicBool,
    /// The driver is between connections and will try again by itself (commands wait).
    reconnecting: AtomicBool,
    /// The first connection's login outcome, for [`start`] (the supervisor inspects later
    /// connections' own).
    first_login: Mutex<Option<Result<Welcome, LoginError>>>,
    /// The user quit: no next connection.
    quit_asked: AtomicBool,
    /// [`Client::reconnect_now`] was called and not yet acted on (a flag, not a stored
    /// permit: a `/reconnect` typed during an attempt that then succeeded must not end a
    /// later give-up, e.g. after another login took the account over).
    reconnect_asked: AtomicBool,
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Dropped with the last [`Client`] clone.
#[derive(Debug)]
struct ClientsAlive(Arc<Shared>);

impl Drop for ClientsAlive {
    fn drop(&mut self) {
        self.0.clients_gone.store(true, Ordering::SeqCst);
        self.0.wake.notify_one();
    }
}

/// Handle for sending. Cheap to clone; the connection closes when every clone is dropped or
/// [`Client::quit`] is called.
#[derive(Debug, Clone)]
pub struct Client {
    alive: Arc<ClientsAlive>,
    nick: String,
    max_text_len: usize,
}

/// The stream of [`Event`]s.
///
/// Asking for the next event says the previous one was handled (shown, stored): a private
/// line is acknowledged to the server only then. A front end that can no longer show what it
/// is given calls [`Events::hold`] first, and the server keeps those lines.
#[derive(Debug)]
pub struct Events {
    shared: Arc<Shared>,
}

impl Drop for Events {
    fn drop(&mut self) {
        self.shared.events_gone.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }
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

/// Connects, verifies the server, logs in and starts the connection's driver task.
///
/// # Errors
/// [`ConnectError`] says which step failed; [`ConnectError::UnknownServer`] and
/// [`ConnectError::ServerKeyChanged`] carry the fingerprint the server presented.
pub async fn connect(opts: &ConnectOptions) -> Result<(Client, Events, Welcome), ConnectError> {
    let (tls, server) = tls_connect(opts).await?;
    start(tls, opts)
        .await
        .map_err(|e| match ConnectError::from(e) {
            ConnectError::Timeout { step, .. } => ConnectError::Timeout { server, step },
            other => other,
        })
}

/// The core's configuration from the connect options.
fn core_config(opts: &ConnectOptions) -> CoreConfig {
    CoreConfig {
        nick: opts.nick.clone(),
        login_timeout: opts.connect_timeout,
        read_timeout: opts.read_timeout,
        user_list: opts.user_list,
        secure: opts.secure.clone(),
        state: opts.state.clone(),
        reconnection: false,
        reconnects: opts.reconnect,
    }
}

/// Logs in over `stream` (any byte stream: TLS in `mm`, in memory in tests) and, once the
/// server welcomed us, hands out the handles.
///
/// # Errors
/// [`LoginError`] when the server refused, broke the protocol, closed or took too long.
pub(crate) async fn start<S>(
    stream: S,
    opts: &ConnectOptions,
) -> Result<(Client, Events, Welcome), LoginError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let core = Core::new(core_config(opts), Instant::now());
    let shared = Arc::new(Shared {
        core: Mutex::new(core),
        wake: Notify::new(),
        changed: Notify::new(),
        clients_gone: AtomicBool::new(false),
        events_gone: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        reconnecting: AtomicBool::new(false),
        reconnect_asked: AtomicBool::new(false),
        first_login: Mutex::new(None),
        quit_asked: AtomicBool::new(false),
    });
    tokio::spawn(supervise(Arc::clone(&shared), stream, opts.clone()));
    let welcome = loop {
        let changed = shared.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let first = shared
            .first_login
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(result) = first {
            break result?;
        }
        changed.await;
    };
    let client = Client {
        alive: Arc::new(ClientsAlive(Arc::clone(&shared))),
        nick: welcome.nick.clone(),
        max_text_len: usize::try_from(welcome.max_text_len).unwrap_or(usize::MAX),
    };
    Ok((client, Events { shared }, welcome))
}

/// 1, 2, 4, 8, 16, 30, 30... seconds.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// The task of one [`Client`]: drives the first connection and, with
/// [`ConnectOptions::reconnect`], the ones after it — waiting [`backoff`] between attempts,
/// giving up (until [`Client::reconnect_now`]) when retrying cannot help. Secure
/// conversations survive a reconnection: their state is in the shared [`crate::SecureSetup`],
/// and they restart by themselves (never plain).
async fn supervise<S>(shared: Arc<Shared>, first: S, opts: ConnectOptions)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    // Between connections, commands wait for the next one (with reconnecting on).
    shared.reconnecting.store(opts.reconnect, Ordering::SeqCst);
    drive(Arc::clone(&shared), first, true).await;
    if !shared.core().was_ready() {
        // The first login failed: `start` reports that (its outcome is left for it to take).
        shared.finished.store(true, Ordering::SeqCst);
        shared.changed.notify_waiters();
        return;
    }
    let mut attempt = 0u32;
    let mut reason: Option<String> = None;
    let mut given_up = false;
    let mut failed: Option<ConnectError> = None;
    let mut driven = true;
    loop {
        let gone =
            shared.clients_gone.load(Ordering::SeqCst) || shared.events_gone.load(Ordering::SeqCst);
        // What the connection just driven (if any) ended with.
        let (quit, replaced, dropped_why, was_ready, login) = if std::mem::take(&mut driven) {
            let mut core = shared.core();
            (
                core.quitting(),
                core.was_replaced(),
                core.closed_reason().map(str::to_owned),
                core.was_ready(),
                core.poll_login(),
            )
        } else {
            (false, false, None, false, None)
        };
        if !opts.reconnect || gone || quit || shared.quit_asked.load(Ordering::SeqCst) {
            break;
        }
        if was_ready {
            // A `/reconnect` asked for before this connection came up is done.
            shared.reconnect_asked.store(false, Ordering::SeqCst);
            attempt = 0;
            reason = Some(dropped_why.unwrap_or_else(|| "the server closed the connection".into()));
        }
        let mut advice = None;
        if let Some(Err(e)) = login {
            let e = ConnectError::from(e);
            given_up |= !e.is_retryable();
            advice = Some(give_up_words(&e, &opts));
            reason = Some(e.to_string());
        }
        if let Some(e) = failed.take() {
            given_up |= !e.is_retryable();
            advice = Some(give_up_words(&e, &opts));
            reason = Some(e.to_string());
        }
        if replaced {
            given_up = true;
            let words = "another client logged in with this account (same certificate); reconnecting would knock it off, and it would do the same: /reconnect to take the account back";
            reason = Some(words.into());
            advice = Some(format!("not reconnecting: {words}"));
        }
        let wait = if given_up {
            shared.reconnecting.store(false, Ordering::SeqCst);
            let reason = reason.clone().unwrap_or_default();
            let advice = advice
                .take()
                .unwrap_or_else(|| format!("not reconnecting (/reconnect to try again): {reason}"));
            let unsent = shared.core().take_carried();
            push(
                &shared,
                Event::GaveUp {
                    reason,
                    advice,
                    unsent,
                },
            );
            None
        } else {
            attempt += 1;
            let wait = backoff(attempt);
            shared.reconnecting.store(true, Ordering::SeqCst);
            push(
                &shared,
                Event::Reconnecting {
                    attempt,
                    in_secs: wait.as_secs(),
                    reason: reason.clone().unwrap_or_default(),
                },
            );
            Some(wait)
        };
        let until = wait.map(|w| tokio::time::Instant::now() + w);
        let stop = loop {
            tokio::select! {
                () = sleep_or_never(until) => break false,
                // An event taken, `/reconnect`, quit, or a handle or the event stream gone.
                () = shared.wake.notified() => {
                    if shared.clients_gone.load(Ordering::SeqCst)
                        || shared.events_gone.load(Ordering::SeqCst)
                        || shared.quit_asked.load(Ordering::SeqCst)
                    {
                        break true;
                    }
                    if shared.reconnect_asked.swap(false, Ordering::SeqCst) {
                        given_up = false;
                        shared.reconnecting.store(true, Ordering::SeqCst);
                        break false;
                    }
                }
            }
        };
        if stop {
            break;
        }
        match tls_connect(&opts).await {
            Ok((tls, _)) => {
                let mut config = core_config(&opts);
                config.reconnection = true;
                let mut next = Core::new(config, Instant::now());
                {
                    let mut core = shared.core();
                    next.adopt_events(&mut core);
                    *core = next;
                }
                drive(Arc::clone(&shared), tls, false).await;
                driven = true;
            }
            Err(e) => failed = Some(e),
        }
    }
    shared.reconnecting.store(false, Ordering::SeqCst);
    // Lines that waited for a next connection that will not come: said, never silently gone.
    let unsent = shared.core().take_carried();
    if !unsent.is_empty() {
        let reason = "mm stopped before the next connection".to_string();
        let advice = format!("not reconnecting: {reason}");
        push(
            &shared,
            Event::GaveUp {
                reason,
                advice,
                unsent,
            },
        );
    }
    shared.finished.store(true, Ordering::SeqCst);
    shared.changed.notify_waiters();
}

/// What to tell the user when reconnecting stops after `e`.
fn give_up_words(e: &ConnectError, opts: &ConnectOptions) -> String {
    match (e, &opts.trust) {
        // Forgotten (`mm trust forget`) while this mm ran.
        (
            ConnectError::UnknownServer {
                server,
                fingerprint,
            },
            crate::Trust::Known(known),
        ) => format!(
            "not reconnecting: {server} is not a trusted server (any more); its CA fingerprint is\n  {fingerprint}\nCompare it with the one its operator gives you; if they are the same, trust it with\n  {}\nthen /reconnect (or quit and start mm again, which asks)",
            known.command(&format!("add {server} {fingerprint}"))
        ),
        _ => format!("not reconnecting (/reconnect to try again): {e}"),
    }
}

/// Adds a driver event for the front end.
fn push(shared: &Shared, event: Event) {
    shared.core().push_event(event);
    shared.changed.notify_waiters();
}

/// The connection's task: until the core is closed, reads while the core wants input, writes
/// what it hands over, and sleeps until its next timeout.
async fn drive<S>(shared: Arc<Shared>, stream: S, first: bool)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut out = BytesMut::new();
    let mut unflushed = false;
    let mut read_buf = vec![0u8; READ_CHUNK].into_boxed_slice();
    let mut last_progress = tokio::time::Instant::now();
    let mut our_side_closed = false;
    loop {
        let now = Instant::now();
        let (wants_input, deadline, save, queued) = {
            let mut core = shared.core();
            if shared.events_gone.load(Ordering::SeqCst) {
                core.close(None, now);
            }
            if first {
                if let Some(result) = core.poll_login() {
                    *shared.first_login.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                }
            }
            if core.is_closed() {
                drop(core);
                shared.changed.notify_waiters();
                break;
            }
            if out.is_empty() && core.poll_transmit(now, &mut out) {
                last_progress = tokio::time::Instant::now();
            }
            let save = core.poll_save();
            let queued = core.has_queued();
            (core.wants_input(), core.poll_timeout(now), save, queued)
        };
        shared.changed.notify_waiters();
        if let Some(keys) = save {
            // Small files, written rarely (a pin learnt, a conversation turned secure).
            // Core::saved records the outcome (and warns once, or says it is saved now).
            let result = keys.save().map_err(|e| e.to_string());
            shared.core().saved(result, Instant::now());
            continue;
        }
        let all_sent = out.is_empty() && !queued && !unflushed;
        if shared.clients_gone.load(Ordering::SeqCst) && all_sent && !our_side_closed {
            // Every handle is gone and what they queued is written: close our side cleanly
            // (TLS close_notify); the server closes its side, which ends the event stream.
            our_side_closed = true;
            let _ = tokio::time::timeout(Duration::from_secs(5), writer.shutdown()).await;
            continue;
        }
        let sleep_until = deadline.map(tokio::time::Instant::from_std);
        tokio::select! {
            read = reader.read(&mut read_buf), if wants_input => {
                let now = Instant::now();
                let mut core = shared.core();
                match read {
                    Ok(0) => core.receive_end(now),
                    Ok(n) => core.receive(&read_buf[..n], now),
                    Err(e) => core.connection_lost(crate::explain::lost(&e), now),
                }
            }
            io = write_or_flush(&mut writer, &out), if (!out.is_empty() || unflushed) && !our_side_closed => match io {
                Ok(Io::Wrote(n)) if n > 0 => {
                    out.advance(n);
                    unflushed = true;
                    last_progress = tokio::time::Instant::now();
                }
                Ok(Io::Wrote(_)) => shared.core().connection_lost("the connection closed".into(), Instant::now()),
                Ok(Io::Flushed) => unflushed = false,
                Err(e) => shared.core().connection_lost(crate::explain::lost(&e), Instant::now()),
            },
            () = tokio::time::sleep_until(last_progress + WRITE_TIMEOUT), if !out.is_empty() => {
                let why = format!("the server took nothing for {} s", WRITE_TIMEOUT.as_secs());
                shared.core().connection_lost(why, Instant::now());
            }
            () = sleep_or_never(sleep_until) => shared.core().handle_timeout(Instant::now()),
            () = shared.wake.notified() => {}
        }
    }
    if !our_side_closed {
        let _ = tokio::time::timeout(Duration::from_secs(5), writer.shutdown()).await;
    }
}

/// What [`write_or_flush`] did.
enum Io {
    /// Wrote this many bytes.
    Wrote(usize),
    /// Flushed what was written.
    Flushed,
}

/// Writes some of `out`, or flushes once it is all written. Cancel-safe: a write that did not
/// complete took nothing, and a flush can be repeated.
async fn write_or_flush<W: AsyncWrite + Unpin>(writer: &mut W, out: &[u8]) -> std::io::Result<Io> {
    if out.is_empty() {
        writer.flush().await.map(|()| Io::Flushed)
    } else {
        writer.write(out).await.map(Io::Wrote)
    }
}

async fn sleep_or_never(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Saves what the core asks to be saved, in the calling task: a command that changed a pin or
/// a conversation (`/verified`, `/accept-key`, `/insecure`) returns once it is on disk (or the
/// core said why not), as the user expects of a command.
fn save_now(shared: &Shared) {
    let save = shared.core().poll_save();
    if let Some(keys) = save {
        let result = keys.save().map_err(|e| e.to_string());
        shared.core().saved(result, Instant::now());
    }
}

/// `Ok(Some)`: an event; `Ok(None)`: the stream ended; `Err`: nothing yet.
fn take(shared: &Shared) -> Result<Option<Event>, ()> {
    let mut core = shared.core();
    let ack_before = core.ack_pending();
    let event = core.poll_event(Instant::now());
    // Asking for an event can make an acknowledgement due even when none comes back.
    let ack_new = core.ack_pending() && !ack_before;
    let closed = core.is_closed() && shared.finished.load(Ordering::SeqCst);
    drop(core);
    if ack_new {
        shared.wake.notify_one();
    }
    match event {
        Some(event) => {
            // Taking an event may let the core read on, or acknowledge.
            shared.wake.notify_one();
            Ok(Some(event))
        }
        None if closed => Ok(None),
        None => Err(()),
    }
}

impl Events {
    /// The next event; `None` after [`Event::Closed`] has been returned.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match take(&self.shared) {
                Ok(event) => return event,
                Err(()) => changed.await,
            }
        }
    }

    /// The next event if one is ready now (for batching work, e.g. one redraw per burst).
    pub fn try_next(&mut self) -> Option<Event> {
        take(&self.shared).ok().flatten()
    }

    /// Stops acknowledging: from now on nothing returned counts as handled (the front end
    /// cannot show it any more), so the server keeps those lines for the next login.
    pub fn hold(&mut self) {
        self.shared.core().hold();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mm_common::frame;
    use mm_common::protocol::ServerMsg;
    use tokio::io::AsyncWriteExt;

    /// A server that welcomes us and closes at once (shutting down, or another login took
    /// the account over): the login's outcome still reaches `start` (the supervisor took it
    /// first in 4 runs of 6, and `connect` waited for ever).
    #[tokio::test]
    async fn a_server_that_closes_right_after_the_welcome_does_not_hang_the_login() {
        for _ in 0..20 {
            let (client, mut server) = tokio::io::duplex(1 << 16);
            let mut bytes = bytes::BytesMut::new();
            for msg in [
                ServerMsg::Welcome {
                    nick: "me".into(),
                    server: "s".into(),
                    online: 1,
                    max_text_len: 100,
                    rate_burst: 10,
                    rate_per_sec: 10,
                },
                ServerMsg::Users {
                    nicks: vec!["me".into()],
                    last: true,
                },
            ] {
                frame::encode_into(&msg, &mut bytes).unwrap();
            }
            tokio::spawn(async move {
                // Takes the Hello (as a socket's buffer would), welcomes, and closes.
                let mut hello = [0u8; 64];
                let _ = tokio::io::AsyncReadExt::read(&mut server, &mut hello).await;
                server.write_all(&bytes).await.unwrap();
            });
            let mut opts = ConnectOptions::new("fake:1", "me", crate::Trust::Roots(Vec::new()));
            opts.certificate = None;
            let started = tokio::time::timeout(Duration::from_secs(5), start(client, &opts)).await;
            match started {
                Ok(Ok((_, mut events, welcome))) => {
                    assert_eq!(welcome.nick, "me");
                    let closed = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
                    assert!(
                        matches!(closed, Ok(Some(Event::Closed { .. }))),
                        "{closed:?}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
