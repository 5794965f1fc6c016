//! The user's commands on a logged-in connection (lines, `/secure` and the other end-to-end
//! commands, `/who`, quit), and carrying out what the end-to-end layer asks for.

use std::sync::Arc;
use std::time::Instant;

use mm_common::e2e::{Action, E2eEvent, Outgoing as E2eOutgoing, Refused, Status};
use mm_common::protocol::ClientMsg;

use super::lines::Answer;
use super::{Core, Delivery, Event, LineId, Phase, SendError};
use crate::secure::Secure;

impl Core {
    /// Our nick (as welcomed, once logged in).
    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// The server's text limit in bytes (0 before the login).
    pub fn max_text_len(&self) -> usize {
        self.max_text_len
    }

    /// When anything last arrived from the server.
    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// What this process received and keeps across connections (ignored nicks too).
    pub fn state(&self) -> &super::ClientState {
        &self.config.state
    }

    /// Lines without an answer yet.
    pub fn unanswered(&self) -> usize {
        self.out.unanswered()
    }

    /// Whether another line may be sent now ([`MAX_UNANSWERED`](super::MAX_UNANSWERED)), and commands without a line
    /// queued.
    pub fn has_room(&self) -> bool {
        self.out.has_room() && self.out.control_has_room()
    }

    pub(super) fn ready(&self) -> Result<(), SendError> {
        match self.phase {
            Phase::Ready => Ok(()),
            _ => Err(SendError::NotConnected),
        }
    }

    pub(super) fn new_line(&mut self) -> Result<LineId, SendError> {
        self.ready()?;
        if !self.out.has_room() {
            return Err(SendError::Busy);
        }
        let line = self.config.state.next_line();
        self.out.add_line(line);
        Ok(line)
    }

    /// Queues `line`'s message; if it cannot be encoded, the line is taken back.
    pub(super) fn queue_line(
        &mut self,
        line: LineId,
        msg: &ClientMsg,
        answer: Answer,
    ) -> Result<LineId, SendError> {
        if self.out.queue(msg, Some(answer)) {
            Ok(line)
        } else {
            self.out.answered(line);
            Err(SendError::NotConnected)
        }
    }

    /// Queues any message as it is, bypassing the end-to-end layer (tests and tools). A
    /// `Public`, `Private` or `Relay` gets a [`LineId`], reported like the user's lines.
    ///
    /// # Errors
    /// [`SendError::NotConnected`], [`SendError::Busy`].
    pub fn send_raw(&mut self, msg: &ClientMsg) -> Result<Option<LineId>, SendError> {
        let answer = match msg {
            ClientMsg::Public { .. } | ClientMsg::Private { .. } => None,
            ClientMsg::Relay { to, .. } => Some(to.clone()),
            _ => return self.control(msg).map(|()| None),
        };
        let line = self.new_line()?;
        let answer = match answer {
            None => Answer::Text(line),
            Some(peer) => Answer::Relay {
                peer,
                line: Some(line),
            },
        };
        self.queue_line(line, msg, answer).map(Some)
    }

    pub(super) fn control(&mut self, msg: &ClientMsg) -> Result<(), SendError> {
        self.ready()?;
        if !self.out.control_has_room() {
            return Err(SendError::Busy);
        }
        self.out.queue(msg, None);
        Ok(())
    }

    /// A public line. Its fate comes as [`Event::Sent`], a non-fatal [`Event::Error`], or in
    /// [`Event::Closed`]'s `undelivered`.
    ///
    /// # Errors
    /// [`SendError::NotConnected`], [`SendError::Busy`]: the line was not taken.
    pub fn public(&mut self, text: &str) -> Result<LineId, SendError> {
        self.say(mm_common::protocol::LOBBY, text, false)
    }

    /// A private line: end-to-end encrypted if there is a secure session with `to` (or one
    /// being set up: then it waits for the session), plain otherwise.
    ///
    /// # Errors
    /// [`SendError::Refused`] when the conversation is blocked (never a silent plain send),
    /// [`SendError::NotConnected`], [`SendError::Busy`]; the line was not taken.
    pub fn private(
        &mut self,
        to: &str,
        text: &str,
        now: Instant,
    ) -> Result<(LineId, Delivery), SendError> {
        let line = self.new_line()?;
        let outgoing = self.sessions_do(|s| s.send_text(to, text, line.get(), now));
        let outgoing = match outgoing {
            Ok(outgoing) => outgoing,
            Err(e) => {
                self.out.answered(line);
                return Err(e);
            }
        };
        match outgoing {
            E2eOutgoing::Plain => {
                let msg = ClientMsg::Private {
                    to: to.to_owned(),
                    text: text.to_owned(),
                };
                self.queue_line(line, &msg, Answer::Text(line))?;
                Ok((line, Delivery::Plain))
            }
            E2eOutgoing::Secure(actions) => {
                self.perform(actions, now);
                Ok((line, Delivery::Secure))
            }
            E2eOutgoing::Queued(actions) => {
                self.awaiting_keys.push(line);
                self.perform(actions, now);
                Ok((line, Delivery::Queued))
            }
            // Plain, sent by an `Action::SendPlain` behind lines waiting for keys.
            E2eOutgoing::QueuedPlain => {
                self.awaiting_keys.push(line);
                Ok((line, Delivery::Plain))
            }
        }
    }

    /// Runs `f` on the end-to-end sessions.
    fn sessions_do<T>(
        &mut self,
        f: impl FnOnce(&mut mm_common::e2e::Sessions) -> Result<T, Refused>,
    ) -> Result<T, SendError> {
        self.ready()?;
        let secure = self.secure.as_ref().ok_or(SendError::NotConnected)?;
        let mut sessions = secure.sessions();
        f(&mut sessions).map_err(SendError::from)
    }

    fn e2e_command(
        &mut self,
        f: impl FnOnce(&mut mm_common::e2e::Sessions) -> Result<Vec<Action>, Refused>,
        now: Instant,
    ) -> Result<(), SendError> {
        let actions = self.sessions_do(f)?;
        self.perform(actions, now);
        Ok(())
    }

    /// `/secure peer`: starts an end-to-end session; [`Event::Secure`] events follow.
    ///
    /// # Errors
    /// [`SendError::Refused`] if a session exists or the peer's key changed and was not
    /// accepted.
    pub fn secure(&mut self, peer: &str, now: Instant) -> Result<(), SendError> {
        self.e2e_command(|s| s.start(peer, now), now)
    }

    /// `/insecure peer`: ends the secure session; private texts to the peer go plain again.
    ///
    /// # Errors
    /// [`SendError::Refused`] if there is no session.
    pub fn insecure(&mut self, peer: &str, now: Instant) -> Result<(), SendError> {
        self.e2e_command(|s| s.end(peer), now)
    }

    /// `/accept-key peer`: accepts the peer's changed key (pinned again, not verified).
    ///
    /// # Errors
    /// [`Refused::NothingToAccept`] if its key did not change.
    pub fn accept_key(&mut self, peer: &str, now: Instant) -> Result<(), SendError> {
        self.e2e_command(|s| s.accept_key(peer, now), now)
    }

    /// `/verified peer`: the users compared the safety number and it matched.
    ///
    /// # Errors
    /// [`Refused::NoKey`] if no key is pinned for the peer.
    pub fn mark_verified(&mut self, peer: &str, now: Instant) -> Result<(), SendError> {
        self.e2e_command(|s| s.mark_verified(peer, now), now)
    }

    /// The safety number with `peer` (60 digits in groups of 5), from the pinned key.
    ///
    /// # Errors
    /// [`Refused::NoKey`] if no key is pinned for the peer.
    pub fn safety_number(&self, peer: &str) -> Result<String, Refused> {
        match &self.secure {
            Some(secure) => secure.sessions().safety_number(peer),
            None => Err(Refused::NoKey(peer.to_owned())),
        }
    }

    /// Where the conversation with `peer` stands (plain, starting, secure, failed).
    pub fn secure_status(&self, peer: &str) -> Status {
        match &self.secure {
            Some(secure) => secure.sessions().status(peer),
            None => Status::Plain,
        }
    }

    /// Where this nick's pins and conversations are kept (after the login).
    pub fn keys(&self) -> Option<Arc<Secure>> {
        self.secure.clone()
    }

    /// Our identity public key.
    pub fn public_key(&self) -> [u8; mm_common::identity::KEY_LEN] {
        *self.config.secure.identity.public()
    }

    /// Asks for the online users (answered with [`Event::Users`]).
    ///
    /// # Errors
    /// [`SendError::NotConnected`], [`SendError::Busy`].
    pub fn who(&mut self) -> Result<(), SendError> {
        self.control(&ClientMsg::Who)?;
        self.who_asked = self.who_asked.saturating_add(1);
        Ok(())
    }

    /// Asks the server for a sign of life (its answer proves the connection works).
    ///
    /// # Errors
    /// [`SendError::NotConnected`], [`SendError::Busy`].
    pub fn ping(&mut self) -> Result<(), SendError> {
        self.control(&ClientMsg::Ping { token: 0 })
    }

    /// Acknowledges every private line returned so far (unless held), then asks the server to
    /// close: `Quit` goes after everything queued before it.
    pub fn quit(&mut self, now: Instant) {
        if self.ready().is_err() {
            return;
        }
        self.quitting = true;
        self.acks.all_returned(now);
        let up_to = self.acks.handled();
        if up_to > 0 {
            self.acknowledge(up_to);
        }
        self.out.queue(&ClientMsg::Quit, None);
    }

    // ---- end-to-end effects -----------------------------------------------------------------

    /// Carries out what the end-to-end layer asked for, in order. [`Action::Persist`] saves
    /// the state here and now (a small write and an fsync): a ciphertext leaves only once the
    /// ratchet state that made it is on disk — sending after a failed save could make a
    /// restarted client encrypt twice with one key — so when the save fails, the texts after
    /// it are not sent (each gets an error) until a save succeeds.
    pub(super) fn perform(&mut self, actions: Vec<Action>, now: Instant) {
        let outer = !std::mem::replace(&mut self.performing, true);
        self.perform_all(actions, now);
        if outer {
            self.performing = false;
            self.released_shown(now);
            // Released messages shown: saved as no longer held, so that a restart does not
            // show them again.
            if std::mem::take(&mut self.released_kept) {
                self.perform(vec![Action::Persist], now);
            }
        }
    }

    /// Once a save worked again after failing: the messages released at `/accept-key` that
    /// could not be shown then (the server will not send them again) are shown now.
    pub(super) fn released_shown(&mut self, now: Instant) {
        if !std::mem::take(&mut self.show_released) {
            return;
        }
        let actions = match &self.secure {
            Some(secure) => secure.sessions().show_released(now),
            None => return,
        };
        if !actions.is_empty() {
            self.perform(actions, now);
        }
    }

    fn perform_all(&mut self, actions: Vec<Action>, now: Instant) {
        let mut unsaved: Option<String> = None;
        for action in actions {
            match action {
                Action::Persist => {
                    if let Some(secure) = self.secure.clone() {
                        let result = secure.save().map_err(|e| e.to_string());
                        unsaved = result.clone().err();
                        self.saved(result, now);
                    }
                }
                Action::Send { line, .. } if unsaved.is_some() => {
                    if let Some(line) = line {
                        let line = LineId::from_tag(line);
                        self.awaiting_keys.retain(|l| *l != line);
                        self.out.answered(line);
                        self.push(Event::Error {
                            line: Some(line),
                            code: mm_common::protocol::ErrorCode::INTERNAL,
                            fatal: false,
                            detail: format!(
                                "not sent: the end-to-end state could not be saved ({})",
                                unsaved.as_deref().unwrap_or_default()
                            ),
                        });
                    }
                }
                Action::Send { to, payload, line } => {
                    if let Some(line) = line {
                        let line = LineId::from_tag(line);
                        self.awaiting_keys.retain(|l| *l != line);
                        if !self.out.is_unanswered(line) {
                            // Reported undelivered already (its connection closed while it
                            // waited for the peer's keys): the user may have typed it again,
                            // so it must not arrive now. The peer's ratchet skips the gap.
                            continue;
                        }
                    }
                    let answer = Answer::Relay {
                        peer: to.clone(),
                        line: line.map(LineId::from_tag),
                    };
                    let queued = self
                        .out
                        .queue(&ClientMsg::Relay { to, payload }, Some(answer));
                    if let (false, Some(line)) = (queued, line) {
                        self.out.answered(LineId::from_tag(line));
                    }
                }
                Action::SendPlain { to, text, line } => {
                    let line = LineId::from_tag(line);
                    self.awaiting_keys.retain(|l| *l != line);
                    if !self.out.is_unanswered(line) {
                        continue; // reported undelivered already (as a `Send` above)
                    }
                    let msg = ClientMsg::Private { to, text };
                    if !self.out.queue(&msg, Some(Answer::Text(line))) {
                        self.out.answered(line);
                    }
                }
                // Keys whose secrets are not on disk are never handed out (a restart would
                // have lost them: the peers' first messages would be unreadable).
                Action::Publish(_) if unsaved.is_some() => {
                    if let Some(secure) = &self.secure {
                        secure.sessions().publish_refused();
                    }
                }
                Action::Publish(keys) => {
                    self.out.queue(&ClientMsg::PublishKeys { keys }, None);
                }
                Action::FetchBundle(nick) => {
                    self.out.queue(&ClientMsg::FetchBundle { nick }, None);
                }
                // Not saved: not shown (the server keeps it, unacknowledged, and sends it
                // again at the next login, when it is shown; one released at `/accept-key`
                // is held again and shown once a save works: `released_shown`).
                Action::Event(E2eEvent::Message { peer, id, .. }) if unsaved.is_some() => {
                    if let Some(secure) = &self.secure {
                        secure.sessions().not_shown(&peer, id);
                    }
                    self.held_unsaved = true;
                }
                // Held under a changed key, but not saved: said, and not acknowledged either
                // (the server sends it again at the next login, when it is held and saved).
                Action::Event(event @ E2eEvent::Held { .. }) if unsaved.is_some() => {
                    self.held_unsaved = true;
                    self.secure_event(event);
                }
                Action::Event(event) => self.secure_event(event),
            }
        }
    }

    fn secure_event(&mut self, event: E2eEvent) {
        if let E2eEvent::Message { peer, id, .. } = &event {
            // Shown (after its save): one released at `/accept-key` is no longer saved as
            // held. Also when ignored: the user chose not to see it.
            if let Some(secure) = &self.secure {
                if secure.sessions().shown(peer, *id) {
                    self.released_kept = true; // saved at the end of `perform`
                }
            }
            if self.ignored(peer) {
                return;
            }
        }
        // Texts dropped unsent have their answer: this event.
        if let E2eEvent::Failed { unsent, .. } | E2eEvent::Ended { unsent, .. } = &event {
            for &line in unsent {
                let line = LineId::from_tag(line);
                self.out.answered(line);
                self.awaiting_keys.retain(|l| *l != line);
            }
        }
        let new_key = match (&event, &self.secure) {
            (
                E2eEvent::Failed {
                    peer,
                    failure: mm_common::e2e::Failure::KeyChanged { .. },
                    ..
                },
                Some(secure),
            ) => secure
                .sessions()
                .safety_number(peer)
                .ok()
                .map(|n| (peer.clone(), n)),
            _ => None,
        };
        self.push(Event::Secure(event));
        if let Some((peer, number)) = new_key {
            self.push(Event::SafetyNumber {
                peer,
                number,
                new_key: true,
            });
        }
    }
}
