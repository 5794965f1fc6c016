//! The server's key directory: publishing our keys at each login and when the server says
//! they run low ([`Sessions::login`], [`Sessions::published`], [`Sessions::prekeys_low`]),
//! and starting a session from a peer's bundle ([`Sessions::bundle`]).

use std::time::Instant;

use zeroize::Zeroizing;

use super::{Intent, Session, Sessions, Setup, StartParams};
use crate::e2e::config::MAX_SESSIONS_PER_PEER;
use crate::e2e::error::Failure;
use crate::e2e::event::{Action, E2eEvent};
use crate::e2e::ratchet::Ratchet;
use crate::e2e::trust::{check_peer_key, Trust};
use crate::e2e::x3dh::{self, X3dhError};
use crate::identity::KEY_LEN;
use crate::prekeys::{BundleAnswer, PrekeyBundle, PREKEYS_LOW};
use crate::protocol::nick_key;

impl Sessions {
    /// A login to the server: makes a new signed prekey if the current one is older than the
    /// rotation period, one-time prekeys if none wait to be published, and returns the upload
    /// ([`Action::Publish`], after [`Action::Persist`]: the secrets are on disk before their
    /// public halves are handed out), plus the key requests that the last connection left
    /// unanswered. `now_ms` is the wall clock (milliseconds since the Unix epoch).
    pub fn login(&mut self, now: Instant, now_ms: u64) -> Vec<Action> {
        // Messages released at `/accept-key` and not shown then (see `show_released`).
        let mut actions = self.show_released(now);
        let rotation = self.config.signed_prekey_rotation;
        if self
            .keys
            .rotate_if_due(&self.identity, now_ms, rotation, &mut *self.rng)
            .is_none()
        {
            return actions; // the random source failed: nothing to publish
        }
        // The first batch; later ones when the server says its stock runs low
        // ([`Sessions::published`], [`Sessions::prekeys_low`]).
        if self.keys.one_time.is_empty() {
            let batch = self.config.one_time_batch;
            let _ = self.keys.add_one_time(batch, &mut *self.rng);
        }
        if let Some(upload) = self.keys.upload(&self.identity, &mut *self.rng) {
            actions.push(Action::Persist);
            actions.push(Action::Publish(upload));
        }
        for entry in self.peers.values_mut() {
            if matches!(entry.setup, Setup::Fetching(_)) {
                entry.setup = Setup::Fetching(now);
                actions.push(Action::FetchBundle(entry.nick.clone()));
            }
        }
        actions
    }

    /// The server stored our last upload (`KeysPublished`): it holds `one_time` one-time
    /// prekeys; `other_device` says another copy of this home published since we last did.
    pub fn published(&mut self, one_time: u32, other_device: bool) -> Vec<Action> {
        let carried_one_time = !self.keys.in_flight.is_empty();
        self.keys.published();
        let mut actions = vec![Action::Persist];
        if other_device {
            // The other copy has these sessions too: never encrypt on them again from here.
            for entry in self.peers.values_mut() {
                entry.renew |= !entry.sessions.is_empty();
            }
            actions.push(Action::Event(E2eEvent::OtherDevice));
        }
        if one_time < PREKEYS_LOW && !carried_one_time {
            actions.extend(self.replenish());
        }
        actions
    }

    /// The server refused our last upload (`KeysRefused`: busy, rate-limited, shutting down;
    /// or bad-keys, which a correct client never sees). Nothing it carried counts as published:
    /// the next login (or `PrekeysLow`) sends it again, with the same copied-home token.
    pub fn publish_refused(&mut self) {
        self.keys.in_flight.clear();
    }

    /// The server says our one-time prekeys run low (`PrekeysLow`): publish more.
    pub fn prekeys_low(&mut self, _one_time: u32) -> Vec<Action> {
        if !self.keys.in_flight.is_empty() {
            return Vec::new(); // an upload is on its way
        }
        self.replenish()
    }

    fn replenish(&mut self) -> Vec<Action> {
        let batch = self.config.one_time_batch;
        if self.keys.add_one_time(batch, &mut *self.rng).is_none() {
            return Vec::new();
        }
        match self.keys.upload(&self.identity, &mut *self.rng) {
            Some(upload) => vec![Action::Persist, Action::Publish(upload)],
            None => Vec::new(),
        }
    }

    /// The server's answer to our request for `peer`'s keys: start a session from the bundle
    /// (X3DH, then the Double Ratchet) and send the texts that waited for it — or fail them
    /// visibly. An answer nobody waits for is ignored.
    pub fn bundle(&mut self, peer: &str, answer: BundleAnswer, _now: Instant) -> Vec<Action> {
        let Some(entry) = self.peers.get(&nick_key(peer)) else {
            return Vec::new();
        };
        if !matches!(entry.setup, Setup::Fetching(_)) {
            return Vec::new();
        }
        let nick = entry.nick.clone();
        let bundle = match answer {
            BundleAnswer::Keys(bundle) => bundle,
            BundleAnswer::NoKeys => return self.fail(&nick, Failure::NoKeys),
            BundleAnswer::NoSuchUser => return self.fail(&nick, Failure::NoSuchUser),
            BundleAnswer::RateLimited { retry_after_ms } => {
                return self.fail(&nick, Failure::RateLimited { retry_after_ms })
            }
            BundleAnswer::Busy => return self.fail(&nick, Failure::Busy),
        };
        match self.start_from(&nick, &bundle) {
            Ok(trust) => {
                let key = bundle.identity;
                let mut actions = vec![Action::Persist];
                // A notice that we could not read the peer's messages goes first.
                let notice = self.send_notice(&nick);
                let sends = self.flush_queued(&nick);
                actions.push(Action::Event(E2eEvent::Ready {
                    peer: nick,
                    key,
                    trust,
                    by_peer: false,
                }));
                actions.extend(notice);
                actions.extend(sends);
                actions
            }
            Err(failure) => self.fail(&nick, failure),
        }
    }

    /// Starts a session with `nick` from `bundle`: checks the identity key against the pin,
    /// the signed prekey's signature (in [`x3dh::initiate`]), runs X3DH with a fresh ephemeral
    /// key and initialises the ratchet. Returns the trust of the key (pinned now if new).
    fn start_from(&mut self, nick: &str, bundle: &PrekeyBundle) -> Result<Trust, Failure> {
        // The signature first: a key that signs nothing is not even a key change to report.
        let signed = crate::prekeys::signed_prekey_message(
            bundle.signed_prekey.id,
            &bundle.signed_prekey.key,
        );
        if !crate::e2e::xeddsa::verify(&bundle.identity, &signed, &bundle.signed_prekey.signature) {
            return Err(Failure::BadSignature);
        }
        let trust = check_peer_key(&self.pins, self.identity.public(), nick, &bundle.identity)?;
        let mut ephemeral = Zeroizing::new([0u8; KEY_LEN]);
        self.rng
            .try_fill_bytes(&mut ephemeral[..])
            .map_err(|_| Failure::BadKey)?;
        let start = x3dh::initiate(&self.me, &self.identity, nick, bundle, &ephemeral).map_err(
            |e| match e {
                X3dhError::BadSignature => Failure::BadSignature,
                _ => Failure::BadKey,
            },
        )?;
        let ratchet = Ratchet::initiator(
            &start.shared,
            &bundle.signed_prekey.key,
            start.associated_data.clone(),
            &mut *self.rng,
        )
        .map_err(|_| Failure::BadKey)?;
        if trust == Trust::New {
            self.pin_new(nick, &bundle.identity, false);
        }
        let session = Session {
            ratchet,
            ephemeral: x3dh::public_key(&ephemeral),
            start: Some(StartParams {
                signed_prekey: bundle.signed_prekey.id,
                one_time: bundle.one_time.as_ref().map(|k| k.id),
            }),
        };
        let Some(entry) = self.peers.get_mut(&nick_key(nick)) else {
            return Err(Failure::NotConnected);
        };
        if entry.peer_key != Some(bundle.identity) {
            entry.sessions.clear();
        }
        entry.peer_key = Some(bundle.identity);
        entry.renew = false;
        entry.sessions.insert(0, session);
        entry.sessions.truncate(MAX_SESSIONS_PER_PEER);
        entry.setup = Setup::Idle;
        if entry.intent == Intent::Default {
            entry.intent = Intent::Secure;
        }
        Ok(trust)
    }
}
