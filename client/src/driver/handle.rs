//! The handles' side: what [`Client`] does with the shared core — waits for room, wakes the
//! driver, saves what a command changed before returning.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mm_common::e2e::{Refused, Status};
use mm_common::protocol::ClientMsg;

use super::{save_now, Client, FlushError, Shared};
use crate::core::{Core, Delivery, LineId, NotConnected, SendError};

impl Client {
    fn shared(&self) -> &Shared {
        &self.alive.0
    }

    /// Runs `f` on the core once it has room for another line (waits while
    /// [`crate::MAX_UNANSWERED`] lines wait for their answers), then wakes the driver.
    async fn with_room<T>(
        &self,
        mut f: impl FnMut(&mut Core, Instant) -> Result<T, SendError>,
    ) -> Result<T, SendError> {
        let shared = self.shared();
        loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut core = shared.core();
                let between = shared.reconnecting.load(Ordering::SeqCst);
                if !core.is_ready() && !between {
                    return Err(SendError::NotConnected);
                }
                if core.is_ready() && core.has_room() {
                    let result = f(&mut core, Instant::now());
                    drop(core);
                    save_now(shared);
                    shared.wake.notify_one();
                    return result;
                }
            }
            changed.await;
        }
    }

    /// Runs `f` on the core now, then wakes the driver.
    fn now<T>(&self, f: impl FnOnce(&mut Core, Instant) -> T) -> T {
        let result = f(&mut self.shared().core(), Instant::now());
        save_now(self.shared());
        self.shared().wake.notify_one();
        result
    }

    /// Connects again now (`/reconnect`): ends the wait of a reconnecting client, or starts
    /// again after it gave up ([`Event::GaveUp`](crate::Event::GaveUp)). Nothing happens while connected, or
    /// without [`ConnectOptions::reconnect`](crate::ConnectOptions::reconnect).
    pub fn reconnect_now(&self) {
        self.shared().reconnect_asked.store(true, Ordering::SeqCst);
        self.shared().wake.notify_one();
    }

    /// Whether it is connected and logged in now.
    pub fn is_connected(&self) -> bool {
        self.shared().core().is_ready()
    }

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
    /// get none. Waits only while [`crate::MAX_UNANSWERED`] lines wait.
    ///
    /// # Errors
    /// [`NotConnected`] once the connection is closed.
    pub async fn send(&self, msg: &ClientMsg) -> Result<Option<LineId>, NotConnected> {
        self.with_room(|core, _| core.send_raw(msg))
            .await
            .map_err(|_| NotConnected)
    }

    /// Sends a public line. The handle is in the answer ([`Event::Sent`](crate::Event::Sent), or a non-fatal
    /// [`Event::Error`](crate::Event::Error) if the server refused it) or, if none came, in [`Event::Closed`](crate::Event::Closed)'s
    /// `undelivered`. Waits while [`crate::MAX_UNANSWERED`] lines wait for their answers.
    ///
    /// # Errors
    /// [`NotConnected`]: the line was not taken (and no event will mention it).
    pub async fn public(&self, text: &str) -> Result<LineId, NotConnected> {
        self.with_room(|core, _| core.public(text))
            .await
            .map_err(|_| NotConnected)
    }

    /// Sends a private line: end-to-end encrypted if there is a secure session with `to`
    /// (or one being set up: then it waits for the session), plain otherwise. The handle is
    /// reported as for [`Client::public`] ([`Event::Queued`](crate::Event::Queued) too, for a plain line to an
    /// offline user), or in the `unsent` of an end-to-end `Failed`/`Ended` event if the
    /// session it waited for did not come up.
    ///
    /// # Errors
    /// [`SendError::Refused`] when the secure session failed: the text is not sent at all;
    /// [`SendError::NotConnected`]. In both cases no event will mention the line.
    pub async fn private(&self, to: &str, text: &str) -> Result<(LineId, Delivery), SendError> {
        self.with_room(|core, now| core.private(to, text, now))
            .await
    }

    /// Sends a line to a room we are in ([`mm_common::protocol::LOBBY`] for the public chat);
    /// `action`: a `/me` line. Reported as for [`Client::public`].
    ///
    /// # Errors
    /// [`NotConnected`]: the line was not taken.
    pub async fn say(&self, room: &str, text: &str, action: bool) -> Result<LineId, NotConnected> {
        self.with_room(|core, _| core.say(room, text, action))
            .await
            .map_err(|_| NotConnected)
    }

    /// Sends a room command (`Join`, `Part`, `List`, `Names`, `Topic`, `Invite`, `Kick`,
    /// `Member`, `Mode`, `Away`); the server answers with [`Event::Room`](crate::Event::Room)
    /// events whenever it does.
    ///
    /// # Errors
    /// [`NotConnected`].
    pub async fn room_command(&self, msg: &ClientMsg) -> Result<(), NotConnected> {
        self.with_room(|core, _| core.room_command(msg))
            .await
            .map_err(|_| NotConnected)
    }

    /// Where the next `/list` page starts (empty: no more pages, or none asked).
    pub fn list_next(&self) -> String {
        self.shared().core().list_next().to_owned()
    }

    /// The rooms we are in (the lobby aside), sorted by name.
    pub fn rooms(&self) -> Vec<crate::RoomInfo> {
        self.shared().core().rooms()
    }

    /// The state shared by this client's connections (received lines, ignored nicks).
    pub fn state(&self) -> crate::ClientState {
        self.shared().core().state().clone()
    }

    /// Lines of this connection without an answer yet.
    pub fn unanswered(&self) -> usize {
        self.shared().core().unanswered()
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
        let shared = self.shared();
        loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = Instant::now();
            let (connected, carried) = {
                let core = shared.core();
                (core.is_ready(), core.carried())
            };
            if !connected {
                if !shared.reconnecting.load(Ordering::SeqCst) {
                    return Err(FlushError::Closed);
                }
                if carried == 0 {
                    // Every line of the dropped connection was answered or reported: nothing
                    // waits for the next one.
                    return Ok(());
                }
                // Between connections: the old one reported its lines; wait for the next.
                changed.await;
                continue;
            }
            let wait = {
                let mut core = shared.core();
                let unanswered = core.unanswered();
                if unanswered == 0 {
                    return Ok(());
                }
                let quiet = now.saturating_duration_since(core.last_heard());
                if quiet >= stall {
                    return Err(FlushError::Stalled { unanswered });
                }
                let probe_due = last_probe.is_none_or(|t| now - t >= probe_every);
                if quiet >= probe_every && probe_due {
                    last_probe = Some(now);
                    // A full queue is being sent, and its answers prove liveness anyway.
                    let _ = core.ping();
                    drop(core);
                    shared.wake.notify_one();
                }
                // Until the next probe or the stall, whichever is first.
                let next_probe =
                    last_probe.map_or(probe_every, |t| probe_every - (now - t).min(probe_every));
                (stall - quiet).min(next_probe.max(Duration::from_millis(10)))
            };
            let _ = tokio::time::timeout(wait, changed).await;
        }
    }

    /// `/secure peer`: starts an end-to-end session; [`Event::Secure`](crate::Event::Secure) events follow.
    ///
    /// # Errors
    /// [`SendError::Refused`] if a session exists or the peer's key changed and was not
    /// accepted. An offline peer fails the handshake with `Failure::Unreachable` as soon as the
    /// server says so.
    pub async fn secure(&self, peer: &str) -> Result<(), SendError> {
        self.with_room(|core, now| core.secure(peer, now)).await
    }

    /// `/insecure peer`: ends the secure session; private texts to the peer go plain again.
    ///
    /// # Errors
    /// [`SendError::Refused`] if there is no session.
    pub async fn insecure(&self, peer: &str) -> Result<(), SendError> {
        self.with_room(|core, now| core.insecure(peer, now)).await
    }

    /// `/accept-key peer`: accepts the peer's changed key (pinned again, not verified).
    ///
    /// # Errors
    /// [`Refused::NothingToAccept`] if its key did not change.
    pub async fn accept_key(&self, peer: &str) -> Result<(), SendError> {
        self.with_room(|core, now| core.accept_key(peer, now)).await
    }

    /// `/verified peer`: the users compared the safety number and it matched.
    ///
    /// # Errors
    /// [`Refused::NoKey`] if no key is pinned for the peer.
    pub async fn mark_verified(&self, peer: &str) -> Result<(), SendError> {
        self.with_room(|core, now| core.mark_verified(peer, now))
            .await
    }

    /// The safety number with `peer` (60 digits in groups of 5), from the pinned key.
    ///
    /// # Errors
    /// [`Refused::NoKey`] if no key is pinned for the peer.
    pub fn safety_number(&self, peer: &str) -> Result<String, Refused> {
        self.shared().core().safety_number(peer)
    }

    /// Where the conversation with `peer` stands (plain, starting, secure, failed).
    pub fn secure_status(&self, peer: &str) -> Status {
        self.shared().core().secure_status(peer)
    }

    /// Whether pins or conversations changed and could not be saved yet (the disk is full or
    /// the home not writable); they are retried every second. Check before exiting: what is
    /// not saved is forgotten at the next start, and a forgotten conversation is plain.
    pub fn unsaved(&self) -> Option<String> {
        self.shared().core().keys().and_then(|s| s.unsaved())
    }

    /// Saves the pins and conversations now (e.g. before exiting after [`Client::unsaved`]).
    ///
    /// # Errors
    /// Why saving failed.
    pub fn retry_save_now(&self) -> Result<(), String> {
        let keys = self.shared().core().keys();
        keys.map_or(Ok(()), |k| k.save_now())
    }

    /// Our identity public key.
    pub fn public_key(&self) -> [u8; mm_common::identity::KEY_LEN] {
        self.shared().core().public_key()
    }

    /// Asks for the online users (answered with [`Event::Users`](crate::Event::Users)).
    ///
    /// # Errors
    /// [`NotConnected`].
    pub async fn who(&self) -> Result<(), NotConnected> {
        self.with_room(|core, _| core.who())
            .await
            .map_err(|_| NotConnected)
    }

    /// Sends `Quit` after everything queued before it. The server then closes the connection,
    /// which ends the event stream with [`Event::Closed`](crate::Event::Closed). Quitting says every private line
    /// [`Events`](crate::Events) returned so far was handled (unless [`Events::hold`](crate::Events::hold) was called): they are
    /// acknowledged first.
    pub async fn quit(&self) {
        // Between connections too: no next connection then.
        self.shared().quit_asked.store(true, Ordering::SeqCst);
        self.now(|core, now| core.quit(now));
    }
}
