// The user's commands on a conversation (common/src/e2e/peers/commands.rs): /secure (start),
// /insecure (end), /accept-key, /verified, and the safety number to compare.

import { nickKey, nickError } from '../protocol.js';
import { Refused } from './failure.js';
import { blockedOf, wipeRatchet } from './sessions.js';
import { safetyNumber as safety } from './safety.js';

/**
 * /secure peer: end-to-end from now on, and a session starts now (the keys are fetched). After
 * a blocking failure other than a key change, this is the retry. Said while a session is still
 * being set up after /insecure: end-to-end again, and the texts typed after /insecure that still
 * wait for the keys go encrypted with the others (the user's last word was /secure). Decided
 * before anything changes: a refusal leaves the conversation as it was.
 * @returns {object[]} actions
 * @throws {Refused} InvalidNick, Yourself, TooManyPeers, KeyNotAccepted, AlreadySecure, AlreadyStarting
 */
export function start(s, peer, now) {
  if (nickError(peer) !== null) throw new Refused('InvalidNick', { peer });
  if (nickKey(peer) === nickKey(s.me)) throw new Refused('Yourself');
  const existing = s.existing(peer);
  if (existing !== undefined) {
    if (blockedOf(existing)?.kind === 'KeyChanged') throw new Refused('KeyNotAccepted', { peer: existing.nick });
    if (existing.intent === 'Secure') {
      if (existing.sessions.length > 0 && !existing.renew) throw new Refused('AlreadySecure', { peer: existing.nick });
      if (existing.setup.kind === 'Fetching') throw new Refused('AlreadyStarting', { peer: existing.nick });
    }
  }
  const entry = s.peer(peer);
  const actions = [];
  if (entry.intent !== 'Secure') {
    entry.intent = 'Secure';
    // Waiting texts the user had typed for plain go encrypted now.
    for (const q of entry.queued) q.plain = false;
    actions.push({ type: 'Persist' });
  }
  if ((entry.sessions.length > 0 && !entry.renew) || entry.setup.kind === 'Fetching') {
    // Secure again after /insecure: the sessions are still there, or the keys still coming
    // (the texts waiting go on the session when it comes up).
    actions.push({ type: 'Event', event: { kind: 'Resumed', peer: entry.nick } });
    return actions;
  }
  const wasBlocked = blockedOf(entry) !== null;
  entry.setup = { kind: 'Fetching', since: now };
  if (wasBlocked) actions.push({ type: 'Persist' });
  actions.push({ type: 'FetchBundle', nick: entry.nick });
  return actions;
}

/**
 * /insecure peer: texts go plain from now on, until /secure. The sessions are kept.
 * @returns {object[]} actions
 * @throws {Refused} InvalidNick, Yourself, TooManyPeers, AlreadyPlain
 */
export function end(s, peer) {
  if (nickError(peer) !== null) throw new Refused('InvalidNick', { peer });
  if (nickKey(peer) === nickKey(s.me)) throw new Refused('Yourself');
  const byDefault = s.config.endToEndByDefault;
  // Decided before anything changes (a refusal makes no entry, so evicts none).
  const existing = s.existing(peer);
  const intent = existing === undefined ? 'Default' : existing.intent;
  if (intent === 'Plain' || (intent === 'Default' && !byDefault)) {
    throw new Refused('AlreadyPlain', { peer: existing === undefined ? peer : existing.nick });
  }
  const entry = s.peer(peer);
  entry.intent = 'Plain';
  return [{ type: 'Persist' }, { type: 'Event', event: { kind: 'Ended', peer: entry.nick, unsent: [] } }];
}

/**
 * /accept-key peer: after a key change, pins the new key (not verified) and unblocks; the next
 * text starts a session with it. The old sessions are dropped (wiped). The messages held
 * meanwhile are taken now, in the order they came, as if they arrived now (Released, then what
 * receive() makes of each). Only this shows them: /insecure does not (a plain conversation does
 * not make an unaccepted key trusted). One held under yet another key blocks again, held again.
 * @returns {object[]} actions
 * @throws {Refused} NothingToAccept
 */
export function acceptKey(s, peer, now) {
  const existing = s.existing(peer);
  const blocked = existing === undefined ? null : blockedOf(existing);
  if (blocked?.kind !== 'KeyChanged') throw new Refused('NothingToAccept', { peer });
  const presented = Uint8Array.from(blocked.presented);
  // The entry exists (it is blocked): never refused here, so nothing changed before.
  const entry = s.peer(peer);
  entry.setup = { kind: 'Idle' };
  for (const old of entry.sessions.splice(0)) wipeRatchet(old.ratchet);
  entry.peerKey = null;
  const held = entry.held.splice(0);
  // Until the caller shows them: one it cannot show (its save failed) is held again.
  entry.released = held.slice();
  entry.heldDropped = 0;
  const nick = entry.nick;
  s.pins.replace(peer, presented);
  const actions = [{ type: 'Persist' }];
  if (held.length > 0) {
    actions.push({ type: 'Event', event: { kind: 'Released', peer: nick, key: presented, count: held.length } });
    for (const h of held) actions.push(...s.receive(nick, h.id, h.payload, now));
  }
  return actions;
}

/**
 * Shows the messages released at /accept-key that the caller could not show then (the save
 * before them failed: notShown held them again), or that a restart found still held in a
 * conversation no longer blocked: for each such peer (in the order of their keys) a save, then
 * what receive() makes of each (its text kept since, or the relay decrypted now).
 * @returns {object[]} actions
 */
export function showReleased(s, now) {
  const keys = [...s.peers.entries()].filter(([, p]) => p.held.length > 0 && blockedOf(p) === null).map(([k]) => k).sort();
  const actions = [];
  for (const key of keys) {
    const entry = s.peers.get(key);
    if (entry === undefined) continue;
    const held = entry.held.splice(0);
    entry.released = held.slice();
    for (const h of held) {
      const kept = entry.unacknowledged.get(h.id);
      if (kept !== undefined) kept.reshow = true; // shown from the text kept, once
    }
    actions.push({ type: 'Persist' });
    for (const h of held) actions.push(...s.receive(entry.nick, h.id, h.payload, now));
  }
  return actions;
}

/**
 * /verified peer: the user compared the safety number and it matched. Never accepts a changed key.
 * @returns {object[]} actions
 * @throws {Refused} KeyNotAccepted, NoKey
 */
export function markVerified(s, peer, _now) {
  const entry = s.existing(peer);
  if (entry !== undefined && blockedOf(entry)?.kind === 'KeyChanged') throw new Refused('KeyNotAccepted', { peer });
  if (!s.pins.markVerified(peer)) throw new Refused('NoKey', { peer });
  return [{ type: 'Persist' }];
}

/**
 * The safety number with `peer`: of our key and its pinned key, or after a key change of the
 * key presented now (the one to compare before accepting it).
 * @returns {string} 12 groups of 5 digits
 * @throws {Refused} NoKey
 */
export function safetyNumber(s, peer) {
  const entry = s.existing(peer);
  const blocked = entry === undefined ? null : blockedOf(entry);
  let key;
  if (blocked?.kind === 'KeyChanged') key = blocked.presented;
  else {
    const pin = s.pins.get(peer);
    if (pin === null) throw new Refused('NoKey', { peer });
    key = pin.key;
  }
  try {
    return safety(s.me, s.identityPublic, peer, key);
  } catch {
    throw new Refused('NoKey', { peer });
  }
}
