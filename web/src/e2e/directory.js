// The server's key directory (common/src/e2e/peers/directory.rs): publishing our keys at each
// login and when the server says they run low, and starting a session from a peer's bundle.

import { nickKey, KEY_LEN } from '../protocol.js';
import { bytesOf, equalBytes } from './errors.js';
import { MAX_SESSIONS_PER_PEER } from './config.js';
import { Ratchet } from './ratchet.js';
import { initiate, publicKey, signedPrekeyMessage } from './x3dh.js';
import { verify } from './xeddsa.js';
import { checkPeerKey } from './trust.js';
import { draw } from './keys.js';
import { flushQueued } from './send.js';
import { sendNotice } from './notice.js';
import { wipeRatchet } from './sessions.js';

/** The server's PREKEYS_LOW (common/src/prekeys.rs): fewer one-time prekeys than this is low. */
export const PREKEYS_LOW = 20;

/**
 * A login: a new signed prekey if due, one-time prekeys if none are kept, the upload (after a
 * Persist: the secrets are saved before their public halves go out), and the key requests the
 * last connection left unanswered. Draws rng exactly as Rust: rotation (32 then 64), one-time
 * keys (32 each), the device token (16, only when none is pending).
 * @param {number} now ms (monotonic) @param {number} nowMs wall clock (Date.now())
 * @returns {object[]} actions
 */
export function login(s, now, nowMs) {
  // Messages released at /accept-key and not shown then (commands.js showReleased).
  const actions = s.showReleased(now);
  try {
    s.keys.rotateIfDue(s.identitySecret, nowMs, s.config.signedPrekeyRotationMs, s.rng);
  } catch {
    return actions; // the random source failed: nothing to publish
  }
  if (s.keys.oneTime.size === 0) {
    try {
      s.keys.addOneTime(s.config.oneTimeBatch, s.rng);
    } catch {
      // as Rust: the keys made so far stay; the upload goes with them
    }
  }
  let upload = null;
  try {
    upload = s.keys.upload(s.identityPublic, s.rng);
  } catch {
    upload = null;
  }
  if (upload !== null) actions.push({ type: 'Persist' }, { type: 'Publish', upload });
  for (const entry of s.peers.values()) {
    if (entry.setup.kind === 'Fetching') {
      entry.setup = { kind: 'Fetching', since: now };
      actions.push({ type: 'FetchBundle', nick: entry.nick });
    }
  }
  return actions;
}

/**
 * KeysPublished: the server holds `oneTime` one-time prekeys; `otherDevice` says another copy of
 * this account published since we last did (its sessions are renewed before the next send).
 * @param {number} oneTime @param {boolean} otherDevice
 * @returns {object[]} actions
 */
export function published(s, oneTime, otherDevice) {
  const carried = s.keys.inFlight.length > 0;
  s.keys.published();
  const actions = [{ type: 'Persist' }];
  if (otherDevice) {
    for (const entry of s.peers.values()) entry.renew ||= entry.sessions.length > 0;
    actions.push({ type: 'Event', event: { kind: 'OtherDevice' } });
  }
  if (oneTime < PREKEYS_LOW && !carried) actions.push(...replenish(s));
  return actions;
}

/** KeysRefused: nothing of the last upload counts as published. */
export function publishRefused(s) {
  s.keys.inFlight = [];
}

/** PrekeysLow: publish more (unless an upload is on its way). @returns {object[]} actions */
export function prekeysLow(s, _oneTime) {
  if (s.keys.inFlight.length > 0) return [];
  return replenish(s);
}

function replenish(s) {
  try {
    s.keys.addOneTime(s.config.oneTimeBatch, s.rng);
  } catch {
    return [];
  }
  let upload;
  try {
    upload = s.keys.upload(s.identityPublic, s.rng);
  } catch {
    return [];
  }
  return upload === null ? [] : [{ type: 'Persist' }, { type: 'Publish', upload }];
}

/**
 * The answer to our request for `peer`'s keys (protocol.js BundleAnswer): start a session and
 * send the texts that waited, or fail them visibly. An answer nobody waits for is ignored.
 * @returns {object[]} actions
 */
export function bundle(s, peer, answer, _now) {
  const entry = s.existing(peer);
  if (entry === undefined || entry.setup.kind !== 'Fetching') return [];
  const nick = entry.nick;
  switch (answer?.type) {
    case 'Keys':
      break;
    case 'NoKeys':
      return s.fail(nick, { kind: 'NoKeys' });
    case 'NoSuchUser':
      return s.fail(nick, { kind: 'NoSuchUser' });
    case 'RateLimited': {
      let ms;
      try {
        ms = BigInt(answer.retry_after_ms);
      } catch {
        ms = 0n;
      }
      return s.fail(nick, { kind: 'RateLimited', retryAfterMs: ms });
    }
    case 'Busy':
      return s.fail(nick, { kind: 'Busy' });
    default:
      // Not a BundleAnswer (protocol.js never gives one): fails the texts waiting, no block.
      return s.fail(nick, { kind: 'Busy' });
  }
  const b = answer.bundle;
  const result = startFrom(s, nick, b);
  if (result.failure !== undefined) return s.fail(nick, result.failure);
  const actions = [{ type: 'Persist' }];
  // A notice that we could not read the peer's messages goes first.
  const notice = sendNotice(s, nick);
  const sends = flushQueued(s, nick);
  actions.push({ type: 'Event', event: { kind: 'Ready', peer: nick, key: Uint8Array.from(b.identity), trust: result.trust, byPeer: false } });
  actions.push(...notice, ...sends);
  return actions;
}

/** Whether `b` has a PrekeyBundle's shape (protocol.js: identity, signed_prekey, one_time). */
function wellFormed(b) {
  try {
    bytesOf(b.identity, KEY_LEN, 'identity');
    bytesOf(b.signed_prekey.key, KEY_LEN, 'signed prekey');
    bytesOf(b.signed_prekey.signature, null, 'signature');
    if (!Number.isInteger(b.signed_prekey.id) || b.signed_prekey.id < 0 || b.signed_prekey.id > 0xffffffff) return false;
    if (b.one_time !== null) {
      bytesOf(b.one_time.key, KEY_LEN, 'one-time prekey');
      if (!Number.isInteger(b.one_time.id) || b.one_time.id < 0 || b.one_time.id > 0xffffffff) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts a session with `nick` from bundle `b`: the signature first, then the pin, a fresh
 * ephemeral key (rng(32)), X3DH, the ratchet (rng(32)).
 * @returns {{trust: string} | {failure: object}}
 */
function startFrom(s, nick, b) {
  if (b === null || typeof b !== 'object' || !wellFormed(b)) return { failure: { kind: 'BadKey' } };
  const spk = b.signed_prekey;
  if (!verify(b.identity, signedPrekeyMessage(spk.id, spk.key), spk.signature)) return { failure: { kind: 'BadSignature' } };
  const checked = checkPeerKey(s.pins, s.identityPublic, nick, b.identity);
  if (checked.failure !== undefined) return checked;
  let ephemeral;
  try {
    ephemeral = draw(s.rng, 32);
  } catch {
    return { failure: { kind: 'BadKey' } };
  }
  let start;
  let ratchet;
  try {
    try {
      start = initiate({
        me: s.me, identitySecret: s.identitySecret, peer: nick,
        bundle: {
          identity: b.identity, signedPrekey: { id: spk.id, key: spk.key, signature: spk.signature },
          oneTime: b.one_time === null ? null : { id: b.one_time.id, key: b.one_time.key },
        },
        ephemeralSecret: ephemeral,
      });
    } catch (e) {
      return { failure: { kind: e?.why === 'BadSignature' ? 'BadSignature' : 'BadKey' } };
    }
    try {
      ratchet = Ratchet.initiator(start.shared, spk.key, start.associatedData, s.rng);
    } catch {
      return { failure: { kind: 'BadKey' } };
    } finally {
      start.shared.fill(0);
    }
    if (checked.trust === 'New') s.pinNew(nick, b.identity, false);
    const session = {
      ratchet,
      ephemeral: publicKey(ephemeral),
      start: { signedPrekey: spk.id, oneTime: b.one_time === null ? null : b.one_time.id },
    };
    const entry = s.peers.get(nickKey(nick));
    if (entry === undefined) return { failure: { kind: 'NotConnected' } };
    if (entry.peerKey === null || !equalBytes(entry.peerKey, b.identity)) {
      for (const old of entry.sessions.splice(0)) wipeRatchet(old.ratchet);
    }
    entry.peerKey = Uint8Array.from(b.identity);
    entry.renew = false;
    entry.sessions.unshift(session);
    for (const old of entry.sessions.splice(MAX_SESSIONS_PER_PEER)) wipeRatchet(old.ratchet);
    entry.setup = { kind: 'Idle' };
    if (entry.intent === 'Default') entry.intent = 'Secure';
    return { trust: checked.trust };
  } finally {
    ephemeral.fill(0);
  }
}
