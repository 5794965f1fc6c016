// Telling a peer that we could not read its messages (common/src/e2e/peers/notice.rs). When a
// session message comes from a peer with whom we have no session at all (we lost our keys: the
// site data was cleared, or this nick has a new identity), nothing can ever read it, and the
// peer would go on sending into the void. So we fetch the peer's keys (as for a first text, on
// the same fetch) and send it a session start whose inner content is Inner::Unreadable {count}
// (postcard variant 1, after Text): no user text. Under our new key the peer's client blocks the
// conversation until its user accepts the key, then shows the notice (PeerCouldNotRead).
//
// A hostile server can forge unreadable relays from any nick: at most one notice per peer per
// NOTICE_INTERVAL_MS (remembered in memory, for at most MAX_NOTICES_REMEMBERED peers), at most
// MAX_NOTICES_PENDING waiting for keys in all, never to ourselves, never while the conversation
// is blocked, never a second fetch while one runs, and never for a relay from a peer with whom
// we have a session (that one is merely unreadable).

import { Reader, Writer, DecodeError } from '../postcard.js';
import { nickKey } from '../protocol.js';
import { MAX_NOTICES_PENDING, MAX_NOTICES_REMEMBERED, MAX_NOTICE_COUNT, NOTICE_INTERVAL_MS } from './config.js';
import { PAD_BUCKETS, unpad } from './envelope.js';
import { E2eError } from './errors.js';
import { blockedOf } from './sessions.js';
import { encryptPadded } from './send.js';

/** The notices of `s` (made on first use; not saved): {pending: Map key→count, told: Map key→ms}. */
function notices(s) {
  if (s.notices === undefined) s.notices = { pending: new Map(), told: new Map() };
  return s.notices;
}

/**
 * The padded plaintext of a notice: postcard(Inner::Unreadable {count}), zeros up to 128.
 * @param {number} count
 * @returns {Uint8Array}
 */
export function padNotice(count) {
  const w = new Writer();
  w.varint(1, 32);
  w.varint(count, 32);
  const inner = w.finish();
  const out = new Uint8Array(PAD_BUCKETS[0]);
  out.set(inner);
  return out;
}

/**
 * The inner content of a padded plaintext: {kind: 'Text', text} or {kind: 'Unreadable', count}.
 * @param {Uint8Array} padded
 * @throws {E2eError} 'Format'
 */
export function unpadInner(padded) {
  if (!(padded instanceof Uint8Array) || !PAD_BUCKETS.includes(padded.length)) {
    throw new E2eError('Format', 'not a padded plaintext');
  }
  let r;
  let variant;
  try {
    r = new Reader(padded);
    variant = r.u32();
    if (variant !== 1) return { kind: 'Text', text: unpad(padded) };
    const count = r.u32();
    for (let i = r.pos; i < padded.length; i++) {
      if (padded[i] !== 0) throw new E2eError('Format', 'padding not zero');
    }
    return { kind: 'Unreadable', count };
  } catch (e) {
    if (e instanceof E2eError) throw e;
    if (e instanceof DecodeError) throw new E2eError('Format', 'the plaintext does not decode');
    throw e;
  }
}

/**
 * A session message from `nick` that nothing could read: if we have no session with the peer
 * at all, it is told (within the bounds). Returns the fetch of its keys, if one must start.
 * @returns {object[]} actions
 */
export function noticeUnreadable(s, nick, now) {
  const key = nickKey(nick);
  if (key === nickKey(s.me)) return [];
  const known = s.peers.get(key);
  if (known !== undefined && (known.sessions.length > 0 || blockedOf(known) !== null)) return [];
  const n = notices(s);
  // Only while the fetch that carries them runs.
  for (const k of [...n.pending.keys()]) {
    if (s.peers.get(k)?.setup.kind !== 'Fetching') n.pending.delete(k);
  }
  const count = n.pending.get(key);
  if (count !== undefined) {
    n.pending.set(key, Math.min(count + 1, MAX_NOTICE_COUNT));
    return [];
  }
  const at = n.told.get(key);
  if (at !== undefined && now - at < NOTICE_INTERVAL_MS) return [];
  if (n.pending.size >= MAX_NOTICES_PENDING || !s.roomForStart(nick)) return [];
  let entry;
  try {
    entry = s.peerStarted(nick);
  } catch {
    return [];
  }
  let fetch = [];
  if (entry.setup.kind !== 'Fetching') {
    entry.setup = { kind: 'Fetching', since: now };
    fetch = [{ type: 'FetchBundle', nick: entry.nick }];
  }
  n.pending.set(key, 1);
  n.told.delete(key);
  n.told.set(key, now);
  while (n.told.size > MAX_NOTICES_REMEMBERED) {
    let oldest = null;
    for (const [k, t] of n.told) {
      if (oldest === null || t < oldest.t || (t === oldest.t && k < oldest.k)) oldest = { k, t };
    }
    n.told.delete(oldest.k);
  }
  return fetch;
}

/**
 * The peer's keys came and a session with it is up: the notice waiting for them, if any,
 * encrypted on it (before the texts that waited).
 * @returns {object[]} zero or one Send (line null)
 */
export function sendNotice(s, nick) {
  const n = notices(s);
  const key = nickKey(nick);
  const count = n.pending.get(key);
  if (count === undefined) return [];
  n.pending.delete(key);
  try {
    return [encryptPadded(s, nick, () => padNotice(count), null)];
  } catch {
    return [];
  }
}

/** The notice in a message that decrypted and authenticated: saved, then shown. */
export function showNotice(nick, count, before) {
  const shown = Math.max(1, Math.min(count, MAX_NOTICE_COUNT));
  return [{ type: 'Persist' }, ...before, { type: 'Event', event: { kind: 'PeerCouldNotRead', peer: nick, count: shown } }];
}
