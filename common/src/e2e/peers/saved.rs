//! Saving the sessions across restarts ([`Sessions::state_bytes`], [`Sessions::restore`]):
//! one postcard document with a format version and a SHA-256 checksum at its end, holding our prekey secrets, every ratchet,
//! what the user wants of each conversation, blocks, and the decrypted messages not
//! acknowledged yet (texts waiting for a peer's keys are not kept: the client reports them
//! unsent when it exits), and the relays held under a changed key not accepted yet.
//!
//! Format 2 is format 1's document (with 2 as its version) followed by the held relays
//! ([`SavedHeldPart`]) and then a [`SavedUse`]: which of the saved peers the peer started without
//! the user taking part. The peers are saved least recently used first (the order in which they
//! make room when the table is full). A format 1 document (written before either existed) still
//! loads, with nothing held and every peer taken as one the user took part in. The caller writes
//! it to a 0600 file atomically; the bytes are zeroized when dropped.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::{Held, Intent, Peer, Session, Sessions, Setup, StartParams, Unacknowledged};
use crate::e2e::config::{
    MAX_HELD, MAX_HELD_PER_PEER, MAX_ONE_TIME_SECRETS, MAX_PEERS, MAX_SEEN_STARTS,
    MAX_SESSIONS_PER_PEER, MAX_SIGNED_PREKEYS, MAX_UNACKNOWLEDGED,
};
use crate::e2e::error::Failure;
use crate::e2e::keys::{OneTimeSecret, OwnKeys, SignedSecret};
use crate::e2e::ratchet::Ratchet;
use crate::e2e::x3dh;
use crate::identity::KEY_LEN;
use crate::prekeys::DEVICE_TOKEN_LEN;
use crate::protocol::{nick_key, validate_nick, MAX_RELAY_LEN};

/// The format version written first.
const FORMAT: u8 = 2;

/// The format before messages were held: the same document without the held part.
const FORMAT_1: u8 = 1;

#[derive(Serialize, Deserialize, Zeroize)]
struct SavedSigned {
    id: u32,
    secret: [u8; KEY_LEN],
    signature: Vec<u8>,
    created_ms: u64,
}

#[derive(Serialize, Deserialize, Zeroize)]
struct SavedOneTime {
    id: u32,
    secret: [u8; KEY_LEN],
    published: bool,
}

#[derive(Serialize, Deserialize, Zeroize)]
struct SavedSession {
    ratchet: Vec<u8>,
    ephemeral: [u8; KEY_LEN],
    start: Option<(u32, Option<u32>)>,
}

#[derive(Serialize, Deserialize, Zeroize)]
enum SavedBlock {
    KeyChanged {
        pinned: [u8; KEY_LEN],
        presented: [u8; KEY_LEN],
    },
    BadSignature,
    BadKey,
    OwnKey,
}

#[derive(Serialize, Deserialize, Zeroize)]
struct SavedPeer {
    nick: String,
    /// 0 default, 1 secure, 2 plain.
    intent: u8,
    peer_key: Option<[u8; KEY_LEN]>,
    sessions: Vec<SavedSession>,
    blocked: Option<SavedBlock>,
    /// (relay id, SHA-256 of its payload, text).
    unacknowledged: Vec<(u64, [u8; 32], String)>,
    renew: bool,
}

#[derive(Serialize, Deserialize, Zeroize)]
struct SavedState {
    format: u8,
    signed: Vec<SavedSigned>,
    one_time: Vec<SavedOneTime>,
    next_id: u32,
    /// (signed prekey id, ephemeral key) of the starts taken.
    seen: Vec<(u32, [u8; KEY_LEN])>,
    rotate_now: bool,
    device: [u8; DEVICE_TOKEN_LEN],
    device_pending: Option<[u8; DEVICE_TOKEN_LEN]>,
    peers: Vec<SavedPeer>,
}

/// What follows the [`SavedHeldPart`] in format 2 (see the module doc).
#[derive(Serialize, Deserialize)]
struct SavedUse {
    /// One flag per saved peer, in their order: the peer started it and the user never took
    /// part.
    unsolicited: Vec<bool>,
}

/// One peer's held relays, oldest first.
#[derive(Serialize, Deserialize, Zeroize)]
struct SavedHeld {
    nick: String,
    /// How many were dropped over the bounds since the last `/accept-key`.
    dropped: u64,
    /// (relay id, payload).
    relays: Vec<(u64, Vec<u8>)>,
}

/// What format 2 adds after format 1's document.
#[derive(Serialize, Deserialize, Zeroize)]
struct SavedHeldPart {
    held: Vec<SavedHeld>,
}

impl Drop for SavedHeldPart {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl Drop for SavedState {
    fn drop(&mut self) {
        self.zeroize();
    }
}

/// The saved state cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Not a state document of a format we know, damaged, or over the bounds.
    #[error("the end-to-end state is damaged or of an unknown format")]
    Damaged,
}

impl Sessions {
    /// Everything to save (see the module doc). Zeroized when dropped.
    pub fn state_bytes(&self) -> Zeroizing<Vec<u8>> {
        let keys = &self.keys;
        let mut saved: Vec<&Peer> = self
            .peers
            .values()
            .filter(|p| {
                p.intent != Intent::Default
                    || !p.sessions.is_empty()
                    || p.blocked().is_some()
                    || !p.unacknowledged.is_empty()
                    || !p.held.is_empty()
                    || !p.released.is_empty()
                    || p.renew
            })
            .collect();
        saved.sort_by_key(|p| p.last_used);
        let uses = SavedUse {
            unsolicited: saved.iter().map(|p| p.unsolicited).collect(),
        };
        let state = SavedState {
            format: FORMAT,
            signed: keys
                .signed
                .iter()
                .map(|s| SavedSigned {
                    id: s.id,
                    secret: *s.secret,
                    signature: s.signature.clone(),
                    created_ms: s.created_ms,
                })
                .collect(),
            one_time: keys
                .one_time
                .iter()
                .map(|(id, k)| SavedOneTime {
                    id: *id,
                    secret: *k.secret,
                    published: k.published,
                })
                .collect(),
            next_id: keys.next_id,
            seen: keys
                .seen
                .iter()
                .flat_map(|(id, set)| set.iter().map(|e| (*id, *e)))
                .collect(),
            rotate_now: keys.rotate_now,
            device: keys.device,
            device_pending: keys.device_pending,
            peers: saved
                .iter()
                .map(|p| SavedPeer {
                    nick: p.nick.clone(),
                    intent: match p.intent {
                        Intent::Default => 0,
                        Intent::Secure => 1,
                        Intent::Plain => 2,
                    },
                    peer_key: p.peer_key,
                    sessions: p
                        .sessions
                        .iter()
                        .map(|s| SavedSession {
                            ratchet: s.ratchet.to_bytes().to_vec(),
                            ephemeral: s.ephemeral,
                            start: s.start.map(|st| (st.signed_prekey, st.one_time)),
                        })
                        .collect(),
                    blocked: p.blocked().and_then(|f| match f {
                        Failure::KeyChanged { pinned, presented } => Some(SavedBlock::KeyChanged {
                            pinned: *pinned,
                            presented: *presented,
                        }),
                        Failure::BadSignature => Some(SavedBlock::BadSignature),
                        Failure::BadKey => Some(SavedBlock::BadKey),
                        Failure::OwnKey => Some(SavedBlock::OwnKey),
                        _ => None,
                    }),
                    unacknowledged: p
                        .unacknowledged
                        .iter()
                        .map(|(id, u)| (*id, u.digest, u.text.clone()))
                        .collect(),
                    renew: p.renew,
                })
                .collect(),
        };
        let held = SavedHeldPart {
            held: self
                .peers
                .values()
                .filter(|p| !p.held.is_empty() || !p.released.is_empty() || p.held_dropped > 0)
                .map(|p| {
                    // Released and not confirmed kept yet: saved as held (see `Peer::released`).
                    let mut relays: Vec<(u64, Vec<u8>)> = p
                        .held
                        .iter()
                        .chain(&p.released)
                        .map(|h| (h.id, h.payload.clone()))
                        .collect();
                    relays.sort_by_key(|(id, _)| *id);
                    relays.dedup_by_key(|(id, _)| *id);
                    SavedHeld {
                        nick: p.nick.clone(),
                        dropped: p.held_dropped,
                        relays,
                    }
                })
                .collect(),
        };
        let mut bytes = Zeroizing::new(postcard::to_allocvec(&state).unwrap_or_default());
        bytes.extend_from_slice(&Zeroizing::new(
            postcard::to_allocvec(&held).unwrap_or_default(),
        ));
        bytes.extend_from_slice(&postcard::to_allocvec(&uses).unwrap_or_default());
        // A checksum last: a file damaged on disk is refused whole, never half-read into keys
        // that decrypt nothing.
        let sum: [u8; 32] = Sha256::digest(&bytes[..]).into();
        bytes.extend_from_slice(&sum);
        bytes
    }

    /// Restores what [`Sessions::state_bytes`] saved (call before the first connection).
    ///
    /// # Errors
    /// [`StateError::Damaged`]; nothing is restored then. Refusing is safer than forgetting:
    /// forgotten sessions and prekeys would make the peers' messages unreadable, and a
    /// forgotten `/insecure` or block would change what is sent.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let split = bytes.len().checked_sub(32).ok_or(StateError::Damaged)?;
        let (body, sum) = bytes.split_at(split);
        let expected: [u8; 32] = Sha256::digest(body).into();
        if expected[..] != *sum {
            return Err(StateError::Damaged);
        }
        let (state, rest): (SavedState, &[u8]) =
            postcard::take_from_bytes(body).map_err(|_| StateError::Damaged)?;
        let (held, unsolicited) = match state.format {
            // Saved before held messages and the flags existed.
            FORMAT_1 if rest.is_empty() => (
                SavedHeldPart { held: Vec::new() },
                vec![false; state.peers.len()],
            ),
            FORMAT => {
                let (held, rest): (SavedHeldPart, &[u8]) =
                    postcard::take_from_bytes(rest).map_err(|_| StateError::Damaged)?;
                let (uses, after): (SavedUse, &[u8]) =
                    postcard::take_from_bytes(rest).map_err(|_| StateError::Damaged)?;
                if !after.is_empty() || uses.unsolicited.len() != state.peers.len() {
                    return Err(StateError::Damaged);
                }
                (held, uses.unsolicited)
            }
            _ => return Err(StateError::Damaged),
        };
        if held.held.len() > MAX_PEERS
            || held.held.iter().map(|h| h.relays.len()).sum::<usize>() > MAX_HELD
            || held.held.iter().any(|h| {
                h.relays.len() > MAX_HELD_PER_PEER
                    || h.relays.iter().any(|(_, p)| p.len() > MAX_RELAY_LEN)
            })
        {
            return Err(StateError::Damaged);
        }
        if state.signed.len() > MAX_SIGNED_PREKEYS
            || state.one_time.len() > MAX_ONE_TIME_SECRETS
            || state.seen.len() > MAX_SEEN_STARTS * MAX_SIGNED_PREKEYS
            || state.peers.len() > MAX_PEERS
        {
            return Err(StateError::Damaged);
        }
        let mut keys = OwnKeys::default();
        keys.next_id = state.next_id;
        keys.device = state.device;
        keys.device_pending = state.device_pending;
        for s in &state.signed {
            keys.signed.push(SignedSecret {
                id: s.id,
                secret: Zeroizing::new(s.secret),
                public: x3dh::public_key(&s.secret),
                signature: s.signature.clone(),
                created_ms: s.created_ms,
            });
        }
        for k in &state.one_time {
            keys.one_time.insert(
                k.id,
                OneTimeSecret {
                    secret: Zeroizing::new(k.secret),
                    public: x3dh::public_key(&k.secret),
                    published: k.published,
                },
            );
        }
        for (id, e) in &state.seen {
            keys.remember_start(*id, *e);
        }
        keys.rotate_now = state.rotate_now;
        let mut peers = std::collections::HashMap::new();
        let mut uses = 0u64;
        for (p, unsolicited) in state.peers.iter().zip(unsolicited) {
            uses += 1; // in the saved order: the least recently used first
            if validate_nick(&p.nick).is_err() {
                continue; // never saved by this version; not worth losing every session over
            }
            if p.sessions.len() > MAX_SESSIONS_PER_PEER
                || p.unacknowledged.len() > MAX_UNACKNOWLEDGED
            {
                return Err(StateError::Damaged);
            }
            let mut sessions = Vec::new();
            for s in &p.sessions {
                sessions.push(Session {
                    ratchet: Ratchet::from_bytes(&s.ratchet).map_err(|_| StateError::Damaged)?,
                    ephemeral: s.ephemeral,
                    start: s.start.map(|(signed_prekey, one_time)| StartParams {
                        signed_prekey,
                        one_time,
                    }),
                });
            }
            let setup = match &p.blocked {
                None => Setup::Idle,
                Some(SavedBlock::KeyChanged { pinned, presented }) => {
                    Setup::Failed(Failure::KeyChanged {
                        pinned: *pinned,
                        presented: *presented,
                    })
                }
                Some(SavedBlock::BadSignature) => Setup::Failed(Failure::BadSignature),
                Some(SavedBlock::BadKey) => Setup::Failed(Failure::BadKey),
                Some(SavedBlock::OwnKey) => Setup::Failed(Failure::OwnKey),
            };
            let peer = Peer {
                nick: p.nick.clone(),
                intent: match p.intent {
                    0 => Intent::Default,
                    1 => Intent::Secure,
                    2 => Intent::Plain,
                    _ => return Err(StateError::Damaged),
                },
                sessions,
                peer_key: p.peer_key,
                setup,
                queued: VecDeque::new(),
                // Restored: each may be shown again once, if the server sends it again.
                unacknowledged: p
                    .unacknowledged
                    .iter()
                    .map(|(id, digest, text)| {
                        (
                            *id,
                            Unacknowledged {
                                digest: *digest,
                                text: text.clone(),
                                reshow: true,
                            },
                        )
                    })
                    .collect::<BTreeMap<_, _>>(),
                held: VecDeque::new(),
                held_dropped: 0,
                released: Vec::new(),
                renew: p.renew,
                unsolicited,
                last_used: uses,
            };
            peers.insert(nick_key(&p.nick), peer);
        }
        for h in &held.held {
            if validate_nick(&h.nick).is_err() {
                continue; // as its peer above
            }
            // Held only in a saved peer entry (it is blocked).
            let entry = peers
                .get_mut(&nick_key(&h.nick))
                .ok_or(StateError::Damaged)?;
            if !entry.held.is_empty() {
                return Err(StateError::Damaged); // the same peer twice
            }
            entry.held_dropped = h.dropped;
            entry.held = h
                .relays
                .iter()
                .map(|(id, payload)| Held {
                    id: *id,
                    payload: payload.clone(),
                })
                .collect();
        }
        self.keys = keys;
        self.peers = peers;
        self.uses = uses;
        Ok(())
    }
}
