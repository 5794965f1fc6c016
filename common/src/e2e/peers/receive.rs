//! Payloads from peers ([`Sessions::receive`]): the three XX handshake messages, data and
//! aborts, each checked against the peer's state before anything is believed.

use std::collections::VecDeque;
use std::time::Instant;

use super::{abort, Intent, Sessions, State};
use crate::e2e::config::{MAX_INCOMING_HANDSHAKES, MAX_PEERS};
use crate::e2e::envelope::{Envelope, Inner, SessionId};
use crate::e2e::error::{AbortReason, Failure};
use crate::e2e::event::{Action, E2eEvent};
use crate::e2e::session::{open, Established, Handshake};
use crate::e2e::trust::{check_peer_key, Trust};
use crate::protocol::{nick_key, validate_nick};

impl State {
    /// The transport that decrypts messages of `session` in this state, if any: the
    /// established session (or its drained predecessor), or during a renewal the session
    /// still carrying messages.
    fn transport_for(&mut self, session: &SessionId) -> Option<&mut snow::TransportState> {
        match self {
            State::Established(e) => e.transport_for(session),
            State::Handshaking(h) => match &mut h.previous {
                Some(p) if p.session == *session => Some(&mut p.transport),
                _ => None,
            },
            State::Idle | State::Failed(_) => None,
        }
    }
}

impl Sessions {
    /// Handles a relay payload from `from` (the server-authenticated sender).
    pub fn receive(&mut self, from: &str, payload: &[u8], now: Instant) -> Vec<Action> {
        self.saw(now);
        if validate_nick(from).is_err() || nick_key(from) == nick_key(&self.me) {
            return Vec::new();
        }
        // Whatever it sent, the peer is online.
        if let Some(entry) = self.peers.get_mut(&nick_key(from)) {
            entry.online = Some(true);
        }
        let envelope = match postcard::from_bytes::<Envelope>(payload) {
            Ok(envelope) => envelope,
            // Garbage in a live session is tampering; otherwise there is nothing to protect.
            Err(_) => return self.fail_if_active(from, Failure::Decrypt),
        };
        match envelope {
            Envelope::Hello { session, noise } => self.on_hello(from, session, &noise, now),
            Envelope::Reply { session, noise } => self.on_reply(from, session, &noise, now),
            Envelope::Finish { session, noise } => self.on_finish(from, session, &noise, now),
            Envelope::Data {
                session,
                ciphertext,
            } => self.on_data(from, session, &ciphertext, now),
            Envelope::Abort { session, reason } => self.on_abort(from, session, reason),
        }
    }

    fn on_hello(
        &mut self,
        from: &str,
        session: SessionId,
        noise: &[u8],
        now: Instant,
    ) -> Vec<Action> {
        let my_key = nick_key(&self.me);
        if !self.peers.contains_key(&nick_key(from)) && self.incoming_full() {
            // No state is created for the sender: a flood of Hellos costs nothing but this.
            return vec![abort(from, session, AbortReason::HandshakeFailed)];
        }
        let entry = self.peer(from);
        let nick = entry.nick.clone();
        let previous = match std::mem::replace(&mut entry.state, State::Idle) {
            State::Failed(failure @ Failure::KeyChanged { .. }) => {
                entry.state = State::Failed(failure);
                // Answer (message 2 carries our key and nothing else), then drop the session:
                // the peer learns our key, so that both can compare the safety number of its
                // new key before this side accepts it.
                let mut actions = Vec::new();
                if let Ok((_, reply)) = self.respond(from, session, noise, now, None) {
                    actions.push(Action::Send {
                        to: nick.clone(),
                        payload: reply,
                        line: None,
                    });
                }
                actions.push(abort(&nick, session, AbortReason::KeyNotAccepted));
                return actions;
            }
            State::Handshaking(h) if h.initiator && h.session != session => {
                // Both sides started at once. The side with the smaller nick stays initiator;
                // the other answers its Hello. Both apply the same rule, so one session results.
                if my_key < nick_key(from) {
                    entry.state = State::Handshaking(h);
                    return Vec::new();
                }
                h.previous
            }
            State::Handshaking(h) => h.previous,
            State::Established(e) => Some(e), // the peer renews the session
            State::Failed(f) => {
                // A peer (or a forged Hello) may start a new session on a blocked
                // conversation; if that does not complete, it stays blocked for its reason.
                if !f.is_interruption() {
                    entry.blocked_by = Some(f);
                }
                None
            }
            State::Idle => None,
        };
        let renewing = previous.is_some();
        match self.respond(from, session, noise, now, previous) {
            Ok((handshake, reply)) => {
                self.peer(from).state = State::Handshaking(Box::new(handshake));
                let mut actions = vec![Action::Send {
                    to: nick.clone(),
                    payload: reply,
                    line: None,
                }];
                if !renewing {
                    actions.push(Action::Event(E2eEvent::Starting {
                        peer: nick,
                        by_peer: true,
                    }));
                }
                actions
            }
            Err(failure) => self.handshake_failed(from, session, failure),
        }
    }

    /// Answers a `Hello` from `from` as responder (see [`Handshake::respond`]), carrying
    /// `previous` on while the new handshake runs.
    fn respond(
        &self,
        from: &str,
        session: SessionId,
        noise: &[u8],
        now: Instant,
        previous: Option<Box<Established>>,
    ) -> Result<(Handshake, Vec<u8>), Failure> {
        let (mut handshake, reply) = Handshake::respond(
            &self.rng,
            self.identity.secret(),
            &self.me,
            from,
            session,
            noise,
            now,
        )?;
        handshake.previous = previous;
        Ok((handshake, reply))
    }

    /// Whether a new peer's `Hello` must be refused: too many peers, or too many handshakes
    /// started by peers in progress.
    fn incoming_full(&self) -> bool {
        let incoming = self
            .peers
            .values()
            .filter(|p| matches!(&p.state, State::Handshaking(h) if !h.initiator))
            .count();
        self.peers.len() >= MAX_PEERS || incoming >= MAX_INCOMING_HANDSHAKES
    }

    /// Takes the handshake for `session` out of the peer's state if it is ours to continue.
    fn take_handshake(
        &mut self,
        from: &str,
        session: SessionId,
        initiator: bool,
    ) -> Option<Box<Handshake>> {
        let entry = self.peers.get_mut(&nick_key(from))?;
        match std::mem::replace(&mut entry.state, State::Idle) {
            State::Handshaking(h) if h.session == session && h.initiator == initiator => Some(h),
            other => {
                entry.state = other; // stale or unexpected: ignore
                None
            }
        }
    }

    fn on_reply(
        &mut self,
        from: &str,
        session: SessionId,
        noise: &[u8],
        now: Instant,
    ) -> Vec<Action> {
        let Some(mut h) = self.take_handshake(from, session, true) else {
            return Vec::new();
        };
        if let Err(failure) = h.read_reply(noise) {
            return self.handshake_failed(from, session, failure);
        }
        // The responder's static key is known now: check it before sending message 3.
        let checked = check_peer_key(&self.pins, self.identity.public(), from, h.remote_key());
        if let Err(failure) = &checked {
            if matches!(failure, Failure::OwnKey) {
                return self.own_key(from, *h);
            }
            if !matches!(failure, Failure::KeyChanged { .. }) {
                let failure = failure.clone();
                return self.abort_and_fail(from, session, failure.abort_reason(), failure);
            }
        }
        // Message 3 carries our static key and nothing else (handshake payloads are empty).
        // It is sent even when the peer's key changed, then the session is dropped: the peer
        // then knows our key, so that both sides can compare the safety number of the key
        // presented before either accepts it.
        let Some(finish) = h.write_finish() else {
            return self.handshake_failed(from, session, Failure::Handshake);
        };
        let nick = self.peer(from).nick.clone();
        let mut actions = vec![Action::Send {
            to: nick,
            payload: finish,
            line: None,
        }];
        match checked {
            Ok(trust) => actions.extend(self.establish(from, *h, trust, now)),
            Err(failure) => {
                actions.extend(self.abort_and_fail(from, session, failure.abort_reason(), failure))
            }
        }
        actions
    }

    fn on_finish(
        &mut self,
        from: &str,
        session: SessionId,
        noise: &[u8],
        now: Instant,
    ) -> Vec<Action> {
        let Some(mut h) = self.take_handshake(from, session, false) else {
            return Vec::new();
        };
        if let Err(failure) = h.read_finish(noise) {
            return self.handshake_failed(from, session, failure);
        }
        match check_peer_key(&self.pins, self.identity.public(), from, h.remote_key()) {
            Ok(trust) => self.establish(from, *h, trust, now),
            Err(failure) => self.abort_and_fail(from, session, failure.abort_reason(), failure),
        }
    }

    /// The responder presented our own key. Handshake message 3 still goes (it tells a holder
    /// of our key nothing new: reading message 2 proved it has our secret key), so that the
    /// responder sees our key too and warns its user likewise; then no session, no pin.
    fn own_key(&mut self, from: &str, mut h: Handshake) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(payload) = h.write_finish() {
            actions.push(Action::Send {
                to: self.peer(from).nick.clone(),
                payload,
                line: None,
            });
        }
        actions.extend(self.fail(from, Failure::OwnKey));
        actions
    }

    fn establish(
        &mut self,
        from: &str,
        h: Handshake,
        (trust, new_pin): (Trust, bool),
        now: Instant,
    ) -> Vec<Action> {
        let session = h.session;
        let renewed = h.previous.is_some();
        #[cfg(test)]
        let mut h = h;
        #[cfg(test)]
        if h.remote_key().is_some() {
            let (a, b) = h.noise.dangerously_get_raw_split();
            self.stolen.push((session, a, b));
        }
        let Some(established) = h.into_established(trust, now) else {
            return self.handshake_failed(from, session, Failure::Handshake);
        };
        let peer_key = established.peer_key;
        let mut actions = self.want_secure(from);
        if new_pin && self.pins.pin_new(from, &peer_key) && !actions.contains(&Action::Persist) {
            actions.push(Action::Persist);
        }
        let entry = self.peer(from);
        entry.attempts = 0;
        entry.quiet = false;
        entry.blocked_by = None;
        let entry = self.peer(from);
        entry.state = State::Established(Box::new(established));
        let nick = entry.nick.clone();
        let mut queued: VecDeque<(String, u64)> = entry.queued.drain(..).collect();
        actions.push(Action::Event(E2eEvent::Ready {
            peer: nick,
            key: peer_key,
            trust,
            renewed,
        }));
        let key = nick_key(from);
        while let Some((text, line)) = queued.pop_front() {
            match self.encrypt_text(&key, &text, line, now) {
                Ok(more) => actions.extend(more),
                Err(_) => {
                    // This text and the ones after it were not sent: put them back to be
                    // reported with the failure.
                    queued.push_front((text, line));
                    self.peer(from).queued = queued;
                    actions.extend(self.fail(from, Failure::Handshake));
                    break;
                }
            }
        }
        actions
    }

    fn on_data(
        &mut self,
        from: &str,
        session: SessionId,
        ciphertext: &[u8],
        now: Instant,
    ) -> Vec<Action> {
        let key = nick_key(from);
        let Some(nick) = self.peers.get(&key).map(|p| p.nick.clone()) else {
            return vec![abort(from, session, AbortReason::UnknownSession)];
        };
        // Decrypt within one short borrow of the peer's state; act on the result after.
        let opened: Option<Option<Inner>> = self
            .peers
            .get_mut(&key)
            .and_then(|entry| entry.state.transport_for(&session))
            .map(|transport| open(transport, ciphertext));
        match opened {
            None => vec![abort(&nick, session, AbortReason::UnknownSession)],
            Some(None) => {
                self.abort_and_fail(from, session, AbortReason::DecryptFailed, Failure::Decrypt)
            }
            Some(Some(Inner::Text(text))) => {
                if let Some(e) = self.current_mut(&key) {
                    e.messages += 1;
                }
                let mut actions = vec![Action::Event(E2eEvent::Message { peer: nick, text })];
                actions.extend(self.rehandshake_if_due(&key, now));
                actions
            }
            Some(Some(Inner::Rekey)) => Vec::new(),
            Some(Some(Inner::Close)) => {
                let entry = self.peer(from);
                // The peer chose plain; this side still wants secure until its user says so.
                entry.state = match entry.intent {
                    Intent::Secure => State::Failed(Failure::PeerAborted(AbortReason::Ended)),
                    Intent::Plain => State::Idle,
                };
                let unsent = entry.queued.drain(..).map(|(_, line)| line).collect();
                vec![Action::Event(E2eEvent::Ended {
                    peer: nick,
                    by_peer: true,
                    unsent,
                })]
            }
        }
    }

    fn on_abort(&mut self, from: &str, session: SessionId, reason: AbortReason) -> Vec<Action> {
        let ours = match self.peers.get(&nick_key(from)).map(|p| &p.state) {
            Some(State::Handshaking(h)) => {
                h.session == session || h.previous.as_ref().is_some_and(|p| p.session == session)
            }
            Some(State::Established(e)) => e.session == session,
            _ => false,
        };
        if ours {
            self.fail(from, Failure::PeerAborted(reason))
        } else {
            Vec::new() // stale or forged for a session we do not have: nothing to end
        }
    }
}
