// Incoming relay payloads (common/src/e2e/peers/receive.rs): a message of a session we have, or
// the start of a new one (X3DH as the responder). Only what decrypted and authenticated is ever
// shown; anything else is reported unreadable (or replayed) and changes nothing. A peer entry
// is made only for a start that authenticated, so junk from invented nicks cannot fill the table.

import { sha256 } from '@noble/hashes/sha2.js';
import { nickKey, nickError, textError, MAX_TEXT_LEN, MAX_RELAY_LEN } from '../protocol.js';
import { equalBytes } from './errors.js';
import { MAX_HELD, MAX_HELD_PER_PEER, MAX_SESSIONS_PER_PEER, MAX_UNACKNOWLEDGED } from './config.js';
import { decodeEnvelope } from './envelope.js';
import { noticeUnreadable, showNotice, unpadInner } from './notice.js';
import { Ratchet } from './ratchet.js';
import { respond } from './x3dh.js';
import { checkPeerKey } from './trust.js';
import { flushQueued } from './send.js';
import { wipeRatchet } from './sessions.js';

const U64_MAX = (1n << 64n) - 1n;

const unreadable = (peer) => [{ type: 'Event', event: { kind: 'Unreadable', peer } }];
const replayed = (peer) => [{ type: 'Event', event: { kind: 'Replayed', peer } }];
const heldEvent = (entry) => ({ type: 'Event', event: { kind: 'Held', peer: entry.nick, held: entry.held.length, dropped: entry.heldDropped } });

/** A relay id as a bigint (a safe non-negative Number is taken too), or null. */
export function relayId(id) {
  if (typeof id === 'number' && Number.isSafeInteger(id) && id >= 0) return BigInt(id);
  if (typeof id !== 'bigint' || id < 0n || id > U64_MAX) return null;
  return id;
}

/** The inner content of a padded plaintext ({kind: 'Text', text} | {kind: 'Unreadable', count}), or null (wiping the plaintext). */
function innerOf(plain) {
  try {
    return unpadInner(plain);
  } catch {
    return null;
  } finally {
    plain.fill(0);
  }
}

/**
 * A relay payload from `from`, which the server gave the id `id`. A decrypted message comes
 * after a Persist (the state that decrypted it is saved before it is shown). Never throws.
 * @param {import('./sessions.js').Sessions} s
 * @param {string} from @param {bigint} id u64 (a safe Number is taken too) @param {Uint8Array} payload @param {number} now ms
 * @returns {object[]} actions
 */
export function receive(s, from, id, payload, now) {
  if (typeof from !== 'string' || nickError(from) !== null) return [];
  id = relayId(id);
  if (id === null) return [];
  const key = nickKey(from);
  if (key === nickKey(s.me)) return [];
  const known = s.peers.get(key);
  const nick = known === undefined ? from : known.nick;
  if (!(payload instanceof Uint8Array) || payload.length > MAX_RELAY_LEN) return unreadable(nick);
  const kept = known?.unacknowledged.get(id);
  if (kept !== undefined) {
    if (equalBytes(kept.digest, sha256(payload)) && kept.reshow) {
      kept.reshow = false;
      return [{ type: 'Event', event: { kind: 'Message', peer: nick, id, text: kept.text } }];
    }
    return replayed(nick);
  }
  // Held already (under a changed key not accepted yet): sent again; the same bytes under
  // another id are a replay.
  const h = known?.held.find((x) => x.id === id || equalBytes(x.payload, payload));
  if (h !== undefined) {
    if (h.id === id && equalBytes(h.payload, payload)) return [{ type: 'Persist' }, heldEvent(known)];
    return replayed(nick);
  }
  let envelope;
  try {
    envelope = decodeEnvelope(payload);
  } catch {
    return unreadable(nick);
  }
  if (envelope.kind === 'Message') {
    const actions = openExisting(s, nick, id, payload, envelope.message, null);
    // Unreadable with no session at all: we lost ours, and the peer is told.
    if (actions.length === 1 && actions[0].event?.kind === 'Unreadable') actions.push(...noticeUnreadable(s, nick, now));
    return actions;
  }
  const ours = known !== undefined && known.sessions.some((x) => equalBytes(x.ephemeral, envelope.ephemeral));
  if (ours) return openExisting(s, nick, id, payload, envelope.message, envelope.ephemeral);
  if (s.keys.seenStart(envelope.ephemeral)) return replayed(nick);
  return takeStart(s, nick, id, payload, envelope, now);
}

/** A session start our keys cannot open: unreadable, and the peer told if we have no session
 *  with them (notice.js, as receive.rs `unreadable_start`). */
function unreadableStart(s, nick, now) {
  return [...unreadable(nick), ...noticeUnreadable(s, nick, now)];
}

/** A message of a session we have (the one named by `ephemeral`, or any). */
function openExisting(s, nick, id, payload, sealed, ephemeral) {
  const entry = s.existing(nick);
  if (entry === undefined) return unreadable(nick);
  let opened = { kind: 'Unreadable' };
  for (let i = 0; i < entry.sessions.length; i++) {
    const session = entry.sessions[i];
    if (ephemeral !== null && !equalBytes(ephemeral, session.ephemeral)) continue;
    let plain;
    try {
      plain = session.ratchet.decrypt(sealed.header, sealed.ciphertext, s.rng);
    } catch (e) {
      if (e?.why === 'Old') opened = { kind: 'Replayed' };
      continue;
    }
    const inner = innerOf(plain);
    if (inner === null) opened = { kind: 'Unreadable' };
    else if (inner.kind === 'Text') opened = { kind: 'Text', index: i, text: inner.text };
    else opened = { kind: 'Notice', index: i, count: inner.count };
    if (ephemeral === null) session.start = null; // the peer answered in a session we started
    break;
  }
  if (opened.kind === 'Text' || opened.kind === 'Notice') {
    const [session] = entry.sessions.splice(opened.index, 1);
    entry.sessions.unshift(session);
    if (opened.kind === 'Notice') return showNotice(nick, opened.count, []);
    return deliver(s, nick, id, payload, opened.text, []);
  }
  return opened.kind === 'Replayed' ? replayed(nick) : unreadable(nick);
}

/**
 * The first message of a session the peer started. Nothing changes unless it authenticates:
 * then the one-time prekey is spent, the start remembered, the key pinned; or, for a key other
 * than the pinned one, the conversation blocked (its sessions kept, the message not shown).
 */
function takeStart(s, nick, id, payload, start, now) {
  // No room for one more peer (the table is full of conversations in use), or for one more pin
  // (MAX_PINS, none may go): refused before any cryptography, so that a flood costs little.
  if (!s.roomForStart(nick) || !s.pinRoom(nick).room) return unreadable(nick);
  const checked = checkPeerKey(s.pins, s.identityPublic, nick, start.identity);
  if (checked.failure?.kind === 'BadKey') return unreadable(nick);
  // From here, a start our keys cannot open was made for keys we no longer have: the peer is
  // told (receive.rs take_start).
  const spk = s.keys.signedSecret(start.signedPrekey);
  if (spk === undefined) return unreadableStart(s, nick, now);
  if (start.oneTime === null && !s.keys.canRemember(start.signedPrekey)) {
    s.keys.rotateNow = true;
    return unreadable(nick);
  }
  let otk = null;
  if (start.oneTime !== null) {
    const k = s.keys.oneTime.get(start.oneTime);
    if (k === undefined) return unreadableStart(s, nick, now);
    otk = k.secret;
  }
  let x3dh;
  try {
    x3dh = respond({
      me: s.me, identitySecret: s.identitySecret, peer: nick, peerIdentity: start.identity,
      peerEphemeral: start.ephemeral, signedPrekeySecret: spk.secret, oneTimeSecret: otk,
    });
  } catch {
    return unreadableStart(s, nick, now);
  }
  const ratchet = Ratchet.responder(x3dh.shared, spk.secret, x3dh.associatedData);
  x3dh.shared.fill(0);
  let plain;
  try {
    plain = ratchet.decrypt(start.message.header, start.message.ciphertext, s.rng);
  } catch {
    wipeRatchet(ratchet);
    return unreadableStart(s, nick, now);
  }
  const inner = innerOf(plain);
  if (inner === null) {
    wipeRatchet(ratchet);
    return unreadable(nick);
  }
  // Authenticated: whoever sent it holds the private key of `identity`.
  if (checked.failure !== undefined) {
    wipeRatchet(ratchet);
    try {
      s.peerStarted(nick);
    } catch {
      return unreadable(nick);
    }
    // Under a changed key: held, not lost; taken again (as if it arrived then) at /accept-key.
    if (checked.failure.kind === 'KeyChanged') return hold(s, nick, id, payload, checked.failure);
    return s.fail(nick, checked.failure);
  }
  let entry;
  try {
    entry = s.peerStarted(nick);
  } catch {
    wipeRatchet(ratchet);
    return unreadable(nick); // the table is full of peers in use
  }
  if (entry.peerKey === null || !equalBytes(entry.peerKey, start.identity)) {
    for (const old of entry.sessions.splice(0)) wipeRatchet(old.ratchet);
  }
  entry.peerKey = Uint8Array.from(start.identity);
  entry.renew = false;
  entry.sessions.unshift({ ratchet, ephemeral: Uint8Array.from(start.ephemeral), start: null });
  for (const old of entry.sessions.splice(MAX_SESSIONS_PER_PEER)) wipeRatchet(old.ratchet);
  if (entry.intent === 'Default') entry.intent = 'Secure';
  const wasFetching = entry.setup.kind === 'Fetching';
  const keep = entry.setup.kind === 'Failed' && (entry.setup.failure.kind === 'KeyChanged' || entry.setup.failure.kind === 'OwnKey');
  if (!keep) entry.setup = { kind: 'Idle' };
  const peer = entry.nick;
  const hasQueued = entry.queued.length > 0;
  if (start.oneTime !== null) s.keys.removeOneTime(start.oneTime);
  s.keys.rememberStart(start.signedPrekey, start.ephemeral);
  if (checked.trust === 'New') s.pinNew(nick, start.identity, true);
  const before = [{ type: 'Event', event: { kind: 'Ready', peer, key: Uint8Array.from(start.identity), trust: checked.trust, byPeer: true } }];
  if (wasFetching || hasQueued) before.push(...flushQueued(s, nick));
  if (inner.kind === 'Unreadable') return showNotice(nick, inner.count, before);
  return deliver(s, nick, id, payload, inner.text, before);
}

/**
 * A relay that authenticated under a changed key not accepted yet: held (saved before it is
 * acknowledged: fail() asks for the save first), the conversation blocked, the user told how
 * many wait. Over the bounds the oldest go, counted.
 */
function hold(s, nick, id, payload, failure) {
  const key = nickKey(nick);
  const entry = s.peers.get(key);
  if (entry === undefined) return unreadable(nick);
  entry.held.push({ id, payload: Uint8Array.from(payload) });
  while (entry.held.length > MAX_HELD_PER_PEER) {
    entry.held.shift();
    entry.heldDropped += 1;
  }
  // In all: the oldest (lowest relay id) of any peer goes; its peer is told too.
  const others = [];
  const total = () => {
    let n = 0;
    for (const p of s.peers.values()) n += p.held.length;
    return n;
  };
  while (total() > MAX_HELD) {
    let oldest = null;
    for (const [k, p] of s.peers) {
      if (p.held.length === 0) continue;
      const at = p.held[0].id;
      if (oldest === null || at < oldest.id || (at === oldest.id && k < oldest.k)) oldest = { id: at, k };
    }
    if (oldest === null) break;
    const p = s.peers.get(oldest.k);
    p.held.shift();
    p.heldDropped += 1;
    if (oldest.k !== key && !others.includes(oldest.k)) others.push(oldest.k);
  }
  const actions = s.fail(nick, failure);
  for (const k of [key, ...others]) {
    const p = s.peers.get(k);
    if (p !== undefined) actions.push(heldEvent(p));
  }
  return actions;
}

/** A decrypted text: kept until acknowledged, saved, then shown. */
function deliver(s, nick, id, payload, text, before) {
  const actions = [{ type: 'Persist' }, ...before];
  if (textError(text, MAX_TEXT_LEN) !== null) {
    actions.push({ type: 'Event', event: { kind: 'Unreadable', peer: nick } });
    return actions;
  }
  const entry = s.existing(nick);
  if (entry !== undefined) {
    entry.unacknowledged.set(id, { digest: sha256(payload), text, reshow: false });
    while (entry.unacknowledged.size > MAX_UNACKNOWLEDGED) {
      let min = null;
      for (const k of entry.unacknowledged.keys()) if (min === null || k < min) min = k;
      entry.unacknowledged.delete(min);
    }
  }
  actions.push({ type: 'Event', event: { kind: 'Message', peer: nick, id, text } });
  return actions;
}

/** The caller could not show message `id` from `peer`: shown when the server sends it again. */
export function notShown(s, peer, id) {
  const key = relayId(id);
  if (key === null || typeof peer !== 'string') return;
  const entry = s.existing(peer);
  if (entry === undefined) return;
  const kept = entry.unacknowledged.get(key);
  if (kept !== undefined) kept.reshow = true;
  // Released at /accept-key (the server will not send it again: it was acknowledged when held):
  // held again, shown by showReleased.
  const at = entry.released.findIndex((h) => h.id === key);
  if (at >= 0) {
    const [h] = entry.released.splice(at, 1);
    if (!entry.held.some((o) => o.id === key)) {
      const before = entry.held.findIndex((o) => o.id > key);
      entry.held.splice(before < 0 ? entry.held.length : before, 0, h);
    }
  }
}
