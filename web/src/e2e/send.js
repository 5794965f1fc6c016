// Sending a text (common/src/e2e/peers/send.rs): encrypted on the current session, queued while
// the peer's keys are fetched, or plain when the user said so. Never plain by itself.

import { nickKey, nickError, textError, MAX_TEXT_LEN } from '../protocol.js';
import { encodeEnvelope, pad } from './envelope.js';
import { Refused } from './failure.js';
import { blockedOf } from './sessions.js';

/**
 * A text for `peer`. `line` is the caller's tag for the text (a number): the Send carrying it
 * has that `line`; dropped unsent, it is in the event's `unsent`.
 * @param {import('./sessions.js').Sessions} s
 * @param {string} peer @param {string} text @param {number} line @param {number} now ms
 * @returns {{kind: 'Plain'} | {kind: 'Secure', actions: object[]} | {kind: 'Queued', actions: object[]}
 *   | {kind: 'QueuedPlain'}}
 * @throws {Refused} InvalidNick, InvalidText, KeyNotAccepted, Blocked, QueueFull, TooManyPeers, Crypto
 */
export function sendText(s, peer, text, line, now) {
  if (nickKey(peer) === nickKey(s.me)) return { kind: 'Plain' };
  if (nickError(peer) !== null) throw new Refused('InvalidNick', { peer });
  const byDefault = s.config.endToEndByDefault;
  const maxQueued = s.config.maxQueued;
  // Decided before anything changes: a refused text makes no entry (so evicts none) and leaves
  // the conversation as it was.
  const existing = s.existing(peer);
  const intent = existing === undefined ? 'Default' : existing.intent;
  const plain = intent === 'Plain' || (intent === 'Default' && !byDefault);
  if (existing !== undefined) {
    const queueFull = existing.queued.length >= maxQueued;
    if (plain) {
      // Behind the texts still waiting for the peer's keys (typed before /insecure).
      if (existing.queued.length > 0 && queueFull) throw new Refused('QueueFull', { peer: existing.nick });
    } else {
      checkText(text);
      const blocked = blockedOf(existing);
      if (blocked !== null) {
        if (blocked.kind === 'KeyChanged') throw new Refused('KeyNotAccepted', { peer: existing.nick });
        throw new Refused('Blocked', { peer: existing.nick, failure: blocked });
      }
      if ((existing.sessions.length === 0 || existing.renew) && queueFull) throw new Refused('QueueFull', { peer: existing.nick });
    }
  } else if (!plain) {
    checkText(text);
    if (maxQueued === 0) throw new Refused('QueueFull', { peer });
  }
  const entry = s.peer(peer);
  if (plain) {
    if (entry.queued.length === 0) return { kind: 'Plain' };
    entry.queued.push({ text, line, plain: true });
    return { kind: 'QueuedPlain' };
  }
  if (entry.sessions.length > 0 && !entry.renew) {
    const action = encrypt(s, entry.nick, text, line);
    return { kind: 'Secure', actions: [{ type: 'Persist' }, action] };
  }
  entry.queued.push({ text, line, plain: false });
  if (entry.setup.kind === 'Fetching') return { kind: 'Queued', actions: [] };
  entry.setup = { kind: 'Fetching', since: now };
  return { kind: 'Queued', actions: [{ type: 'FetchBundle', nick: entry.nick }] };
}

/** The rules of a plain line, which the server cannot check inside ciphertext. */
function checkText(text) {
  const why = typeof text === 'string' ? textError(text, MAX_TEXT_LEN) : 'empty message';
  if (why !== null) throw new Refused('InvalidText', { text: why });
}

/**
 * Encrypts `text` on the current session with `peer` (the X3DH start attached while the peer
 * has not answered). The caller saves the state before the send goes out.
 * @returns {{type: 'Send', to, payload: Uint8Array, line}}
 * @throws {Refused} 'Crypto' without a session or if the text does not fit
 */
export function encrypt(s, peer, text, line) {
  return encryptPadded(s, peer, () => pad(text), line);
}

/**
 * encrypt() for any padded inner content (`makePadded` gives it; it is wiped after use).
 * @throws {Refused} 'Crypto'
 */
export function encryptPadded(s, peer, makePadded, line) {
  const entry = s.existing(peer);
  const session = entry?.sessions[0];
  if (session === undefined) throw new Refused('Crypto');
  let padded;
  let sealed;
  try {
    padded = makePadded();
    sealed = session.ratchet.encrypt(padded);
  } catch {
    throw new Refused('Crypto');
  } finally {
    padded?.fill(0);
  }
  const envelope = session.start !== null
    ? {
        kind: 'Start', identity: Uint8Array.from(s.identityPublic), ephemeral: Uint8Array.from(session.ephemeral),
        signedPrekey: session.start.signedPrekey, oneTime: session.start.oneTime, message: sealed,
      }
    : { kind: 'Message', message: sealed };
  return { type: 'Send', to: entry.nick, payload: encodeEnvelope(envelope), line };
}

/**
 * Encrypts the texts that waited for a session with `peer`: the sends, in order (texts that
 * fail to encrypt reported unsent in a Failed BadKey event).
 * @returns {object[]} actions
 */
export function flushQueued(s, peer) {
  const entry = s.existing(peer);
  if (entry === undefined) return [];
  const queued = entry.queued.splice(0);
  const to = entry.nick;
  const sends = [];
  const unsent = [];
  for (const q of queued) {
    if (q.plain) {
      sends.push({ type: 'SendPlain', to, text: q.text, line: q.line });
      continue;
    }
    try {
      sends.push(encrypt(s, peer, q.text, q.line));
    } catch {
      unsent.push(q.line);
    }
  }
  if (unsent.length > 0) {
    sends.push({ type: 'Event', event: { kind: 'Failed', peer, failure: { kind: 'BadKey' }, unsent } });
  }
  return sends;
}
