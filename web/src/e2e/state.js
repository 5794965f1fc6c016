// The saved state (common/src/e2e/peers/saved.rs, as a plain object instead of postcard bytes):
// our prekey secrets, every ratchet (Ratchet.toBytes), what the user wants of each
// conversation, blocks, the decrypted messages not acknowledged yet, and the pins. Texts
// waiting for a peer's keys are not kept (the page reports them unsent when it closes), nor
// key requests in flight (as in Rust).
//
// Shape, version 2 (every byte field a Uint8Array; structured-cloneable):
// { v: 2, identity: Uint8Array(32) (our public key: a state of another identity is refused),
//   keys: { signed: [{id, secret(32), signature(64), createdMs}], oneTime: [{id, secret(32), published}],
//           nextId, seen: [[signedPrekeyId, ephemeral(32)]], rotateNow, device(16), devicePending(16)|null },
//   pins: [{nick, key(32), verified}],
//   peers: [{ nick, intent: 'Default'|'Secure'|'Plain', peerKey(32)|null,
//             sessions: [{ratchet: Uint8Array (Ratchet.toBytes), ephemeral(32), start: {signedPrekey, oneTime}|null}],
//             blocked: null | {kind: 'KeyChanged', pinned(32), presented(32)} | {kind: 'BadSignature'|'BadKey'|'OwnKey'},
//             unacknowledged: [{id: bigint, digest(32), text}], renew, unsolicited,
//             held: [{id: bigint, payload: Uint8Array}], heldDropped }] }
// The peers are in the order they make room when the table is full (least recently used first);
// `unsolicited` (the peer started it and the user never took part) may be missing: false then
// (as Rust's format 1 documents). Version 1 (before messages were held under a changed key) is
// the same without held and heldDropped in a peer; it still loads, with nothing held.
// restore() checks everything and loads all or nothing: E2eError('Format') otherwise.

import { nickKey, nickError, DEVICE_TOKEN_LEN, MAX_RELAY_LEN } from '../protocol.js';
import { E2eError, equalBytes } from './errors.js';
import {
  MAX_HELD, MAX_HELD_PER_PEER, MAX_ONE_TIME_SECRETS, MAX_PEERS, MAX_SEEN_STARTS, MAX_SESSIONS_PER_PEER, MAX_SIGNED_PREKEYS, MAX_UNACKNOWLEDGED,
} from './config.js';
import { Ratchet } from './ratchet.js';
import { publicKey } from './x3dh.js';
import { OwnKeys } from './keys.js';
import { Pins } from './pins.js';
import { blockedOf, newPeer } from './sessions.js';
import { fromHex } from '../postcard.js';

/** The version written. */
export const STATE_VERSION = 2;
const U64_MAX = (1n << 64n) - 1n;
/** Most pins restored (pins outlive peer entries, so more than MAX_PEERS; a bound all the same). */
export const MAX_PINS = 1 << 20;
const copy = (b) => Uint8Array.from(b);

/** Everything to save (see above). */
export function toState(s) {
  const k = s.keys;
  const peers = [];
  for (const p of [...s.peers.values()].sort((a, b) => a.lastUsed - b.lastUsed)) {
    const blocked = blockedOf(p);
    if (p.intent === 'Default' && p.sessions.length === 0 && blocked === null && p.unacknowledged.size === 0 && p.held.length === 0 && p.released.length === 0 && !p.renew) continue;
    // Released and not confirmed kept yet: saved as held (sessions.js `shown`).
    const held = new Map();
    for (const h of [...p.held, ...p.released]) if (!held.has(h.id)) held.set(h.id, h);
    peers.push({
      nick: p.nick,
      intent: p.intent,
      peerKey: p.peerKey === null ? null : copy(p.peerKey),
      sessions: p.sessions.map((x) => ({
        ratchet: x.ratchet.toBytes(),
        ephemeral: copy(x.ephemeral),
        start: x.start === null ? null : { signedPrekey: x.start.signedPrekey, oneTime: x.start.oneTime },
      })),
      blocked: blocked === null ? null
        : blocked.kind === 'KeyChanged' ? { kind: 'KeyChanged', pinned: copy(blocked.pinned), presented: copy(blocked.presented) }
          : { kind: blocked.kind },
      unacknowledged: [...p.unacknowledged.entries()].sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([id, u]) => ({ id, digest: copy(u.digest), text: u.text })),
      renew: p.renew,
      unsolicited: p.unsolicited,
      held: [...held.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map((h) => ({ id: h.id, payload: copy(h.payload) })),
      heldDropped: p.heldDropped,
    });
  }
  const seen = [];
  for (const [id, set] of k.seen) for (const h of set) seen.push([id, fromHex(h)]);
  return {
    v: STATE_VERSION,
    identity: copy(s.identityPublic),
    keys: {
      signed: k.signed.map((x) => ({ id: x.id, secret: copy(x.secret), signature: copy(x.signature), createdMs: x.createdMs })),
      oneTime: k.oneTimeIds().map((id) => {
        const x = k.oneTime.get(id);
        return { id, secret: copy(x.secret), published: x.published };
      }),
      nextId: k.nextId,
      seen,
      rotateNow: k.rotateNow,
      device: copy(k.device),
      devicePending: k.devicePending === null ? null : copy(k.devicePending),
    },
    pins: s.pins.toState(),
    peers,
  };
}

function damaged(what) {
  return new E2eError('Format', `the saved end-to-end state is damaged (${what})`);
}

function need(ok, what) {
  if (!ok) throw damaged(what);
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isBytes = (v, n) => v instanceof Uint8Array && (n === null || v.length === n);
const isU32 = (v) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
const isBool = (v) => typeof v === 'boolean';
const isArr = (v, max) => Array.isArray(v) && v.length <= max;

/** Restores `state` into the fresh Sessions `s`: all or nothing. @throws {E2eError} 'Format' */
export function restore(s, state) {
  need(isObj(state) && (state.v === STATE_VERSION || state.v === 1), 'version');
  const withHeld = state.v === STATE_VERSION;
  need(isBytes(state.identity, 32) && equalBytes(state.identity, s.identityPublic), 'of another identity');
  const sk = state.keys;
  need(isObj(sk), 'keys');
  need(isArr(sk.signed, MAX_SIGNED_PREKEYS), 'signed prekeys');
  need(isArr(sk.oneTime, MAX_ONE_TIME_SECRETS), 'one-time prekeys');
  need(isArr(sk.seen, MAX_SEEN_STARTS * MAX_SIGNED_PREKEYS), 'seen starts');
  need(isU32(sk.nextId) && isBool(sk.rotateNow) && isBytes(sk.device, DEVICE_TOKEN_LEN), 'keys');
  need(sk.devicePending === null || isBytes(sk.devicePending, DEVICE_TOKEN_LEN), 'device token');
  const keys = new OwnKeys();
  keys.nextId = sk.nextId;
  keys.device = copy(sk.device);
  keys.devicePending = sk.devicePending === null ? null : copy(sk.devicePending);
  for (const x of sk.signed) {
    need(isObj(x) && isU32(x.id) && isBytes(x.secret, 32) && isBytes(x.signature, 64), 'signed prekey');
    need(Number.isSafeInteger(x.createdMs) && x.createdMs >= 0, 'signed prekey time');
    need(!keys.signed.some((y) => y.id === x.id), 'signed prekey ids');
    keys.signed.push({ id: x.id, secret: copy(x.secret), public: publicKey(x.secret), signature: copy(x.signature), createdMs: x.createdMs });
  }
  for (const x of sk.oneTime) {
    need(isObj(x) && isU32(x.id) && isBytes(x.secret, 32) && isBool(x.published), 'one-time prekey');
    need(!keys.oneTime.has(x.id), 'one-time prekey ids');
    keys.oneTime.set(x.id, { secret: copy(x.secret), public: publicKey(x.secret), published: x.published });
  }
  for (const x of sk.seen) {
    need(Array.isArray(x) && x.length === 2 && isU32(x[0]) && isBytes(x[1], 32), 'seen start');
    keys.rememberStart(x[0], x[1]);
  }
  keys.rotateNow = sk.rotateNow;

  const pins = new Pins();
  need(isArr(state.pins, MAX_PINS), 'pins');
  for (const p of state.pins) {
    need(isObj(p) && typeof p.nick === 'string' && isBytes(p.key, 32) && isBool(p.verified), 'pin');
    need(!pins.byNick.has(nickKey(p.nick)), 'pins twice');
    pins.byNick.set(nickKey(p.nick), { key: copy(p.key), verified: p.verified });
  }

  need(isArr(state.peers, MAX_PEERS), 'peers');
  const peers = new Map();
  let uses = 0;
  let heldInAll = 0;
  for (const p of state.peers) {
    need(isObj(p) && typeof p.nick === 'string', 'peer');
    need(['Default', 'Secure', 'Plain'].includes(p.intent) && isBool(p.renew), 'peer intent');
    need(p.unsolicited === undefined || isBool(p.unsolicited), 'peer flags');
    uses += 1; // in the saved order: the least recently used first
    need(p.peerKey === null || isBytes(p.peerKey, 32), 'peer key');
    need(isArr(p.sessions, MAX_SESSIONS_PER_PEER) && isArr(p.unacknowledged, MAX_UNACKNOWLEDGED), 'peer bounds');
    const entry = newPeer(p.nick);
    entry.intent = p.intent;
    entry.renew = p.renew;
    entry.unsolicited = p.unsolicited ?? false;
    entry.lastUsed = uses;
    entry.peerKey = p.peerKey === null ? null : copy(p.peerKey);
    for (const x of p.sessions) {
      need(isObj(x) && isBytes(x.ratchet, null) && isBytes(x.ephemeral, 32), 'session');
      need(x.start === null || (isObj(x.start) && isU32(x.start.signedPrekey) && (x.start.oneTime === null || isU32(x.start.oneTime))), 'session start');
      let ratchet;
      try {
        ratchet = Ratchet.fromBytes(x.ratchet);
      } catch {
        throw damaged('ratchet');
      }
      entry.sessions.push({
        ratchet, ephemeral: copy(x.ephemeral),
        start: x.start === null ? null : { signedPrekey: x.start.signedPrekey, oneTime: x.start.oneTime },
      });
    }
    const b = p.blocked;
    if (b !== null) {
      need(isObj(b), 'block');
      if (b.kind === 'KeyChanged') {
        need(isBytes(b.pinned, 32) && isBytes(b.presented, 32), 'block keys');
        entry.setup = { kind: 'Failed', failure: { kind: 'KeyChanged', pinned: copy(b.pinned), presented: copy(b.presented) } };
      } else {
        need(['BadSignature', 'BadKey', 'OwnKey'].includes(b.kind), 'block kind');
        entry.setup = { kind: 'Failed', failure: { kind: b.kind } };
      }
    }
    for (const u of p.unacknowledged) {
      need(isObj(u) && typeof u.id === 'bigint' && u.id >= 0n && u.id <= U64_MAX, 'kept message id');
      need(isBytes(u.digest, 32) && typeof u.text === 'string' && !entry.unacknowledged.has(u.id), 'kept message');
      // Restored: each may be shown again once, if the server sends it again.
      entry.unacknowledged.set(u.id, { digest: copy(u.digest), text: u.text, reshow: true });
    }
    if (withHeld) {
      need(isArr(p.held, MAX_HELD_PER_PEER) && Number.isSafeInteger(p.heldDropped) && p.heldDropped >= 0, 'held bounds');
      heldInAll += p.held.length;
      need(heldInAll <= MAX_HELD, 'held bounds');
      for (const h of p.held) {
        need(isObj(h) && typeof h.id === 'bigint' && h.id >= 0n && h.id <= U64_MAX, 'held message id');
        need(isBytes(h.payload, null) && h.payload.length <= MAX_RELAY_LEN, 'held message');
        entry.held.push({ id: h.id, payload: copy(h.payload) });
      }
      entry.heldDropped = p.heldDropped;
    }
    if (nickError(p.nick) !== null) continue; // as Rust: never saved by this version; skipped
    need(!peers.has(nickKey(p.nick)), 'peer twice');
    peers.set(nickKey(p.nick), entry);
  }
  s.keys = keys;
  s.pins = pins;
  s.peers = peers;
  s.uses = uses;
}
