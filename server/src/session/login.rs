//! Login: from the client's `Hello` to `Welcome`, the user list, the room's history and the
//! waiting mail, or a [`LoginFailed`] saying what to tell the client. See [`login`] for the
//! order of the checks and why a refused login writes nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use mm_common::key_login;
use mm_common::protocol::{
    nick_key, validate_nick, ClientMsg, LeaveReason, ServerMsg, PROTOCOL_VERSION,
};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::context::{queue_users, Context, STORE_TIMEOUT};
use super::refusal::Refusal;
use crate::cluster::ClaimError;
use crate::hub::{JoinError, Outbox};
use crate::store::{Body, LoginOutcome, Reply, StoreError};
use crate::transport::{ReadError, Transport};

/// Why a login failed, and what the client is told.
pub(crate) enum LoginFailed {
    /// Send this fatal error, then close.
    Tell(Refusal),
    /// The server is shutting down.
    Shutdown,
    /// The peer is gone or sent no message at all; nothing to say.
    Silent,
}

impl From<StoreError> for LoginFailed {
    /// The store could not complete the login (busy, failing, a stuck disk, closed).
    fn from(e: StoreError) -> Self {
        warn!(error = %e, "login not completed: store failed");
        LoginFailed::Tell(Refusal::LoginNotCompleted)
    }
}

/// The refusal for a login the accounts do not admit.
fn login_refusal(nick: &str, outcome: &LoginOutcome) -> LoginFailed {
    let nick = nick.to_owned();
    LoginFailed::Tell(match outcome {
        LoginOutcome::Taken => Refusal::NickRegistered { nick },
        LoginOutcome::Full => Refusal::AccountsFull { nick },
        LoginOutcome::LooksLike(other) => Refusal::NickLooksLike {
            nick,
            other: other.clone(),
        },
        LoginOutcome::Changed => Refusal::AccountChanged { nick },
        LoginOutcome::Registered | LoginOutcome::Known => Refusal::LoginRefusedForNoReason,
    })
}

/// A registration that [`Store::login`](crate::store::Store::login) may be making while the
/// session waits for the answer. If the session stops waiting before it knows the outcome
/// (shutdown, the store's timeout, the task dropped at the end of the shutdown grace), dropping
/// this undoes the registration, applied after it in the store's order: the login was
/// refused, so it must not leave the nick registered to this credential.
struct PendingRegistration<'a> {
    armed: bool,
    store: &'a Arc<dyn crate::store::Store>,
    nick: &'a str,
    credential: &'a str,
    created_ms: u64,
}

impl PendingRegistration<'_> {
    /// The store's answer arrived: nothing to undo.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for PendingRegistration<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(e) = self
            .store
            .abandon_registration(self.nick, self.credential, self.created_ms)
        {
            warn!(error = %e, nick = self.nick, "a registration whose login did not complete could not be undone; the operator can release the nick");
        }
    }
}

/// Waits for `Hello`, checks it and the account, joins the hub and queues `Welcome`, the user
/// list, the room's history and the personal lines waiting in the user's mailbox (sent while
/// offline, or delivered before and never acknowledged).
///
/// A login's side effects happen only if it succeeds. In order:
/// 1. what can be checked without anyone's help (hello, nick, certificate);
/// 2. the account, from a read ([`Store::check_login`](crate::store::Store::check_login):
///    nick registered to another certificate, look-alike, accounts full);
/// 3. for a new nick, the registration limits (in memory; given back if the login fails);
/// 4. the hub (nick online with another certificate, shutting down), which admits the login;
/// 5. the store, which decides again in its own order and, only if it admits the login,
///    writes all a login writes — the registration, "logged in again" — and reads the mailbox,
///    as one unit ([`Store::login`](crate::store::Store::login)).
///
/// Nothing is written before step 5, and nothing can refuse the login after it, except that
/// the session may stop waiting for the store's answer (shutdown, a stuck store, the task
/// dropped): a [`PendingRegistration`] then undoes the registration in the store's order, so
/// that a refused login never leaves a nick registered (the fault of issue 13, item 5: a
/// refused `nick-in-use` login used to register the nick first).
pub(crate) async fn login<T: Transport>(
    conn: &mut T,
    peer: SocketAddr,
    fingerprint: Option<String>,
    ctx: &Context,
    cancel: &CancellationToken,
) -> Result<Outbox, LoginFailed> {
    let read = timeout(ctx.limits.hello_timeout, conn.recv());
    let payload = tokio::select! {
        r = read => match r {
            Ok(Ok(Some(payload))) => payload,
            Ok(Ok(None)) | Ok(Err(ReadError::Io(_))) => return Err(LoginFailed::Silent),
            Ok(Err(e)) => return Err(LoginFailed::Tell(Refusal::BadFrame(e.to_string()))),
            Err(_) => return Err(LoginFailed::Tell(Refusal::NoHello)),
        },
        () = cancel.cancelled() => return Err(LoginFailed::Shutdown),
    };
    let (version, nick, key) = match ClientMsg::decode(&payload) {
        Ok(ClientMsg::Hello { version, nick }) => (version, nick, None),
        Ok(ClientMsg::KeyHello { version, nick, key }) => (version, nick, Some(key)),
        Ok(_) => return Err(LoginFailed::Tell(Refusal::NotHello)),
        Err(e) => return Err(LoginFailed::Tell(Refusal::BadFrame(e.to_string()))),
    };
    if version != PROTOCOL_VERSION {
        return Err(LoginFailed::Tell(Refusal::UnsupportedVersion { version }));
    }
    if let Err(e) = validate_nick(&nick) {
        return Err(LoginFailed::Tell(Refusal::InvalidNick(e.to_string())));
    }
    // The account's credential: the certificate's fingerprint, or the proven key's.
    let credential = match key {
        // The account is the key the client proves it holds, whatever the transport says.
        Some(key) => prove_key(conn, &nick, &key, ctx, cancel).await?,
        None => match fingerprint {
            Some(fingerprint) => fingerprint,
            None => return Err(LoginFailed::Tell(Refusal::CertificateRequired)),
        },
    };
    let checked = tokio::select! {
        checked = store_answer(ctx.hub.store().check_login(&nick, &credential)) => checked,
        // A read: nothing to undo.
        () = cancel.cancelled() => return Err(LoginFailed::Shutdown),
    };
    let checked = match checked {
        Ok(outcome) => outcome,
        Err(e) => {
            warn!(error = %e, "login not checked: store failed");
            return Err(LoginFailed::Tell(Refusal::AccountsUnchecked));
        }
    };
    let register = match checked {
        LoginOutcome::Known => false,
        LoginOutcome::Registered => true,
        refused => return Err(login_refusal(&nick, &refused)),
    };
    let reservation = if register {
        match ctx
            .registrations
            .reserve(&credential, peer.ip(), std::time::Instant::now())
        {
            Ok(reservation) => Some(reservation),
            Err(over) => {
                info!(%peer, %nick, limit = ?over.by, "registration refused: over the limit");
                return Err(LoginFailed::Tell(Refusal::RegistrationLimit {
                    nick,
                    over: over.to_string(),
                }));
            }
        }
    } else {
        None
    };
    // One node of several: the nick is claimed for this node first (another node's session of
    // it ends, as a takeover does on one node); released again if the login fails.
    let claimed = match &ctx.cluster {
        Some(node) => {
            let key = nick_key(&nick);
            let claim = tokio::select! {
                claim = node.claim(&nick, &credential) => claim,
                () = cancel.cancelled() => return Err(LoginFailed::Shutdown),
            };
            match claim {
                Ok(()) => Some(Claimed {
                    node: std::sync::Arc::clone(node),
                    hub: ctx.hub.clone(),
                    key: Some(key),
                }),
                Err(ClaimError::InUse) => {
                    return Err(LoginFailed::Tell(Refusal::NickInUse { nick }))
                }
                Err(e) => return Err(LoginFailed::Tell(Refusal::Cluster(e))),
            }
        }
        None => None,
    };
    let now = ctx.hub.clock().now_ms();
    let mut joined =
        match ctx
            .hub
            .join_unannounced(ctx.hub.next_conn_id(), &nick, &credential, now, register)
        {
            Ok(m) => m,
            Err(JoinError::NickInUse(n)) => {
                return Err(LoginFailed::Tell(Refusal::NickInUse { nick: n }))
            }
            Err(JoinError::Closed) => return Err(LoginFailed::Shutdown),
        };
    // Without the mailbox the login fails: acknowledging the live lines that would follow
    // (`Received` is cumulative) would delete waiting ones this client never saw.
    let answer = match joined.login.take() {
        Some(reply) => {
            let pending = PendingRegistration {
                armed: register,
                store: ctx.hub.store(),
                nick: &nick,
                credential: &credential,
                created_ms: now,
            };
            let answer = tokio::select! {
                answer = store_answer(Ok(reply)) => answer.map_err(LoginFailed::from),
                // Stops waiting: the pending registration, if any, is undone.
                () = cancel.cancelled() => Err(LoginFailed::Shutdown),
            };
            if answer.is_ok() {
                // The store decided; whatever it decided, nothing is left to undo.
                pending.disarm();
            }
            answer
        }
        None => Err(LoginFailed::from(StoreError::Busy)),
    };
    let admitted = match answer {
        Ok(login) if login.outcome.admits() => Ok(login),
        Ok(login) => Err(login_refusal(&nick, &login.outcome)),
        Err(failed) => Err(failed),
    };
    let login = match admitted {
        Ok(login) => login,
        Err(failed) => {
            if joined.announce {
                ctx.hub.withdraw(joined.outbox.conn_id, &joined.outbox.nick);
            } else {
                // It took over an older connection of the account: that one is gone, so the
                // others must hear that the user left (and its logout is recorded: the older
                // connection's, not this login's). Taking over is the one thing a login does
                // before the store admits it, because the live queue must exist when the
                // mailbox is read; only the owner's own certificate can do it.
                ctx.hub.leave(
                    joined.outbox.conn_id,
                    &joined.outbox.nick,
                    LeaveReason::Disconnected,
                );
            }
            return Err(failed);
        }
    };
    ctx.metrics
        .login(if login.outcome == LoginOutcome::Registered {
            crate::metrics::LoginOutcome::Registered
        } else {
            crate::metrics::LoginOutcome::Known
        });
    if login.outcome == LoginOutcome::Registered {
        if let Some(reservation) = reservation {
            reservation.commit();
        }
        info!(%peer, %nick, %credential, "nick registered");
    }
    let mails = login.waiting;
    if let Some(mut claimed) = claimed {
        claimed.key = None; // held by this session now: released when it ends
    }
    ctx.hub.announce(&joined.outbox, joined.announce);
    let online = u32::try_from(joined.online_count).unwrap_or(u32::MAX);
    conn.queue_msg(&ServerMsg::Welcome {
        nick: joined.outbox.nick.clone(),
        server: ctx.server_name.clone(),
        online,
        max_text_len: u32::try_from(ctx.limits.max_text_len).unwrap_or(u32::MAX),
        rate_burst: ctx.limits.rate_burst,
        rate_per_sec: ctx.limits.rate_per_sec,
    });
    queue_users(conn, std::mem::take(&mut joined.online));
    // Sent, and dropped with `joined` when the login returns: the session keeps only its
    // outbox. (Every session holding the list of who was online when it joined cost N²/2
    // strings: 325 KiB per connection with 10,000 users.)
    for line in std::mem::take(&mut joined.history) {
        conn.queue(line);
    }
    // Each room the user is a member of: `Entered`, then its history. Rooms whose history was
    // not in memory follow in the outbox once the store answered (before their live lines:
    // the session is subscribed to them only then).
    for frame in std::mem::take(&mut joined.rooms) {
        conn.queue(frame);
    }
    for mut load in std::mem::take(&mut joined.loading) {
        let lines = tokio::select! {
            lines = super::rooms::loaded(&mut load) => lines,
            // Shutting down: the chat loop says goodbye right after.
            () = cancel.cancelled() => Err(StoreError::Closed),
        };
        super::rooms::complete(conn, &joined.outbox, ctx, load, lines, false);
    }
    // They stay in the mailbox until the client acknowledges them.
    let ids: Vec<u64> = mails.iter().map(|m| m.id).collect();
    // A login fetches at most what one mailbox may hold; more can wait only after the limits
    // were lowered, and then the rest comes at a later login.
    let fetch_limit = ctx.limits.mailbox_len + ctx.limits.outbound_queue.max(1);
    ctx.hub.fetched(
        joined.outbox.conn_id,
        &joined.outbox.nick,
        &ids,
        ids.len() < fetch_limit,
    );
    for mail in mails {
        conn.queue_msg(&match mail.body {
            Body::Text(text) => ServerMsg::Offline {
                id: mail.id,
                ts: mail.ts,
                from: mail.from,
                text,
            },
            Body::Relay(payload) => ServerMsg::Relay {
                id: mail.id,
                ts: mail.ts,
                from: mail.from,
                payload,
            },
        });
    }
    Ok(joined.outbox)
}

/// The second half of a login with an account key (PROTOCOL.md, "Login with an account key"):
/// sends a fresh [`ServerMsg::Challenge`], waits (the hello timeout) for the
/// [`ClientMsg::KeyProof`] and checks it. Returns the account's credential.
async fn prove_key<T: Transport>(
    conn: &mut T,
    nick: &str,
    key: &[u8],
    ctx: &Context,
    cancel: &CancellationToken,
) -> Result<String, LoginFailed> {
    if !key_login::well_formed_key(key) {
        return Err(LoginFailed::Tell(Refusal::BadFrame(format!(
            "the account key is not an uncompressed P-256 point ({} bytes starting 04)",
            key_login::PUBLIC_KEY_LEN
        ))));
    }
    let mut nonce = [0u8; key_login::NONCE_LEN];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).is_err() {
        warn!("no randomness for a login challenge");
        return Err(LoginFailed::Tell(Refusal::LoginNotCompleted));
    }
    conn.queue_msg(&ServerMsg::Challenge {
        nonce: nonce.to_vec(),
    });
    let sent = async {
        conn.flush().await.map_err(|_| LoginFailed::Silent)?;
        match conn.recv().await {
            Ok(Some(payload)) => Ok(payload),
            Ok(None) | Err(ReadError::Io(_)) => Err(LoginFailed::Silent),
            Err(e) => Err(LoginFailed::Tell(Refusal::BadFrame(e.to_string()))),
        }
    };
    let payload = tokio::select! {
        r = timeout(ctx.limits.hello_timeout, sent) => match r {
            Ok(r) => r?,
            Err(_) => return Err(LoginFailed::Tell(Refusal::NoKeyProof)),
        },
        () = cancel.cancelled() => return Err(LoginFailed::Shutdown),
    };
    let signature = match ClientMsg::decode(&payload) {
        Ok(ClientMsg::KeyProof { signature }) => signature,
        Ok(_) => {
            return Err(LoginFailed::Tell(Refusal::BadFrame(
                "the answer to Challenge must be KeyProof".into(),
            )))
        }
        Err(e) => return Err(LoginFailed::Tell(Refusal::BadFrame(e.to_string()))),
    };
    let message = key_login::signed_message(&nonce, nick, key);
    let verified = signature.len() == key_login::SIGNATURE_LEN
        && ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, key)
            .verify(&message, &signature)
            .is_ok();
    if !verified {
        return Err(LoginFailed::Tell(Refusal::KeyProofInvalid));
    }
    Ok(key_login::credential(key))
}

/// The store's answer, within [`STORE_TIMEOUT`].
async fn store_answer<T>(submitted: Result<Reply<T>, StoreError>) -> Result<T, StoreError> {
    match timeout(STORE_TIMEOUT, submitted?).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(StoreError::Closed),
        Err(_) => Err(StoreError::Busy),
    }
}

/// A nick claimed for this node by a login that has not completed: released if the login
/// fails (dropped while still holding the key).
struct Claimed {
    node: std::sync::Arc<crate::cluster::Node>,
    hub: crate::hub::Hub,
    key: Option<String>,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.node.release(&self.hub, key);
        }
    }
}
