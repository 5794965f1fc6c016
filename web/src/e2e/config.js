// Tunables of the session manager (common/src/e2e/config.rs E2eConfig) and the fixed bounds of
// the peer table. Times here are milliseconds (Rust's Durations).

import { E2eError } from './errors.js';
import { MAX_ONE_TIME_PER_UPLOAD } from '../protocol.js';

/** Most peers kept: a flood of starts from many (invented) nicks is refused beyond it. */
export const MAX_PEERS = 4096;
/**
 * Most pinned keys that sessions the peers started can make: beyond it, the least recently pinned
 * (in this run; pins loaded count as older, ties by nick) that is not verified and whose nick has
 * no peer entry is dropped, or, if there is none, the start is refused as unreadable (before its
 * cryptography). The user's own conversations drop one too, but are never refused.
 */
export const MAX_PINS = 8192;
/**
 * Most entries for peers who started a session the user never took part in (a quarter of
 * MAX_PEERS): a flood of valid starts from invented nicks never takes the table from the user.
 */
export const MAX_UNSOLICITED = MAX_PEERS / 4;
/** Most sessions kept per peer (the current one and older ones for late messages). */
export const MAX_SESSIONS_PER_PEER = 3;
/** Most decrypted messages kept per peer until the server's copy is acknowledged. */
export const MAX_UNACKNOWLEDGED = 1024;
/** Most messages held per peer (under a changed key not accepted yet); the oldest go beyond it. */
export const MAX_HELD_PER_PEER = 50;
/** Most messages held in all; beyond it the oldest (lowest relay id) of any peer goes. */
export const MAX_HELD = 500;
/** At most one notice that we could not read a peer's messages per peer in this time, in ms. */
export const NOTICE_INTERVAL_MS = 10 * 60 * 1000;
/** At most this many peers with a notice waiting for their keys, in all. */
export const MAX_NOTICES_PENDING = 20;
/** The largest count a notice carries. */
export const MAX_NOTICE_COUNT = 999;
/** At most this many peers remembered as told recently (the oldest forgotten first). */
export const MAX_NOTICES_REMEMBERED = 256;
/** Most one-time prekey secrets kept. */
export const MAX_ONE_TIME_SECRETS = 400;
/** Signed prekeys kept: the current one and older ones. */
export const MAX_SIGNED_PREKEYS = 3;
/** Session-start ephemeral keys remembered per signed prekey (replay protection, X3DH §4.2). */
export const MAX_SEEN_STARTS = 8192;

/**
 * The default tunables:
 * - endToEndByDefault (bool): private texts are end-to-end unless the user says /insecure;
 * - maxQueued (count): texts that may wait for a peer's keys;
 * - fetchTimeoutMs (ms): a key request not answered within this fails its texts;
 * - signedPrekeyRotationMs (ms): a new signed prekey after this long (7 days);
 * - oneTimeBatch (count): one-time prekeys published at a time (100);
 * - maxPeers (count): most peers kept (at most MAX_PEERS, the default; smaller in tests);
 * - maxUnsolicited (count): most entries of peers who started a session the user never took
 *   part in (MAX_UNSOLICITED); beyond it the least recently used of them makes room.
 */
export const DEFAULT_CONFIG = Object.freeze({
  endToEndByDefault: true,
  maxQueued: 64,
  fetchTimeoutMs: 30_000,
  signedPrekeyRotationMs: 7 * 24 * 60 * 60 * 1000,
  oneTimeBatch: MAX_ONE_TIME_PER_UPLOAD,
  maxPeers: MAX_PEERS,
  maxUnsolicited: MAX_UNSOLICITED,
});

/**
 * The defaults with `config`'s fields over them, checked.
 * @param {object|undefined|null} config some of DEFAULT_CONFIG's fields
 * @returns {Readonly<typeof DEFAULT_CONFIG>}
 * @throws {E2eError} 'BadInput' for a field of the wrong type or out of range
 */
export function makeConfig(config) {
  const c = { ...DEFAULT_CONFIG, ...(config ?? {}) };
  const count = (v) => Number.isSafeInteger(v) && v >= 0;
  if (typeof c.endToEndByDefault !== 'boolean') throw new E2eError('BadInput', 'endToEndByDefault is not a boolean');
  if (!count(c.maxQueued)) throw new E2eError('BadInput', 'maxQueued is not a count');
  if (!count(c.fetchTimeoutMs)) throw new E2eError('BadInput', 'fetchTimeoutMs is not a duration');
  if (!count(c.signedPrekeyRotationMs)) throw new E2eError('BadInput', 'signedPrekeyRotationMs is not a duration');
  if (!count(c.oneTimeBatch)) throw new E2eError('BadInput', 'oneTimeBatch is not a count');
  if (!count(c.maxPeers)) throw new E2eError('BadInput', 'maxPeers is not a count');
  if (!count(c.maxUnsolicited)) throw new E2eError('BadInput', 'maxUnsolicited is not a count');
  return Object.freeze(c);
}
