// Why things fail (common/src/e2e/error.rs): a conversation's Failure, and a refused command or
// text (Refused). The words are Rust's, so that mm and the browser say the same.
//
// Failure: {kind: 'KeyChanged', pinned: Uint8Array(32), presented: Uint8Array(32)}
//        | {kind: 'BadSignature'} | {kind: 'BadKey'} | {kind: 'OwnKey'} | {kind: 'NoKeys'}
//        | {kind: 'NoSuchUser'} | {kind: 'RateLimited', retryAfterMs: bigint} | {kind: 'Timeout'}
//        | {kind: 'Busy'} | {kind: 'NotConnected'}

import { MAX_PEERS } from './config.js';

/** The failure kinds, as Rust's variant names. */
export const FAILURE_KINDS = Object.freeze([
  'KeyChanged', 'BadSignature', 'BadKey', 'OwnKey', 'NoKeys', 'NoSuchUser', 'RateLimited', 'Timeout', 'Busy',
  'NotConnected',
]);

/** The kinds that block the conversation until the user acts (what tampering looks like). */
const BLOCKING = new Set(['KeyChanged', 'BadSignature', 'BadKey', 'OwnKey']);

/** Whether `failure` blocks sending until /secure, /accept-key or /insecure. */
export function isBlocking(failure) {
  return BLOCKING.has(failure.kind);
}

/** A key as lowercase hex in groups of 4 (identity.rs key_fingerprint). @param {Uint8Array} key */
export function keyFingerprint(key) {
  const hex = Array.from(key, (b) => b.toString(16).padStart(2, '0')).join('');
  return hex.match(/.{1,4}/g)?.join(' ') ?? '';
}

/** Rust's `Display for Failure`. @param {{kind: string}} failure @returns {string} */
export function failureWords(failure) {
  switch (failure.kind) {
    case 'KeyChanged':
      return `the peer's key CHANGED (pinned ${keyFingerprint(failure.pinned)}, presented ${keyFingerprint(failure.presented)})`;
    case 'BadSignature':
      return "the server's key directory gave keys whose signature does not verify (altered on the way)";
    case 'BadKey':
      return "the peer's keys are not usable (invalid key)";
    case 'OwnKey':
      return 'the peer presents your own key: you share one home directory (identity.key) with them; each user needs their own';
    case 'NoKeys':
      return 'the peer has no end-to-end keys';
    case 'NoSuchUser':
      return 'no such user on this server';
    case 'RateLimited': {
      const ms = BigInt(failure.retryAfterMs);
      let s = (ms + 999n) / 1000n;
      if (s < 1n) s = 1n;
      return `the server limits key requests; try again in ${s} s`;
    }
    case 'Timeout':
      return 'the server did not answer the request for keys';
    case 'Busy':
      return 'the server could not read its key directory just now';
    case 'NotConnected':
      return 'not connected to the server';
    default:
      return 'unknown failure';
  }
}

/** Rust's `{:?}` of a string: in double quotes, with escapes. @param {string} s */
export function debugString(s) {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\0') out += '\\0';
    else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) out += `\\u{${cp.toString(16)}}`;
    else out += ch;
  }
  return `${out}"`;
}

/**
 * A refused text or command: `.kind` is Rust's Refused variant name, `.message` its text;
 * `.peer` the nick when there is one, `.failure` for 'Blocked'.
 */
export class Refused extends Error {
  /**
   * @param {string} kind 'Blocked' | 'InvalidText' | 'QueueFull' | 'Yourself' | 'InvalidNick'
   *   | 'AlreadySecure' | 'AlreadyStarting' | 'KeyNotAccepted' | 'NothingToAccept'
   *   | 'AlreadyPlain' | 'NoKey' | 'Crypto' | 'TooManyPeers'
   * @param {{peer?: string, failure?: object, text?: string}} [what] the peer, the failure
   *   (Blocked), the text error's words (InvalidText)
   */
  constructor(kind, what = {}) {
    super(refusedWords(kind, what));
    this.name = 'Refused';
    this.kind = kind;
    if (what.peer !== undefined) this.peer = what.peer;
    if (what.failure !== undefined) this.failure = what.failure;
  }
}

function refusedWords(kind, { peer = '', failure, text = '' }) {
  switch (kind) {
    case 'Blocked':
      return `the end-to-end conversation with ${peer} is blocked (${failureWords(failure)}); nothing was sent. /secure ${peer} tries again, or /insecure ${peer} sends unencrypted`;
    case 'InvalidText':
      return text;
    case 'QueueFull':
      return `too many messages waiting for ${peer}'s keys`;
    case 'Yourself':
      return 'private messages to yourself are not end-to-end encrypted: there is nobody else to keep them from';
    case 'InvalidNick':
      return `${debugString(peer)} is not a valid nick`;
    case 'AlreadySecure':
      return `a secure session with ${peer} is already up`;
    case 'AlreadyStarting':
      return `a secure session with ${peer} is already being set up`;
    case 'KeyNotAccepted':
      return `${peer}'s key changed and nothing was sent; compare the safety number of the new key (/verify ${peer}) with ${peer}, then /accept-key ${peer} (and /verified ${peer} if the numbers matched), or /insecure ${peer} to send unencrypted`;
    case 'NothingToAccept':
      return `${peer}'s key has not changed; nothing to accept`;
    case 'AlreadyPlain':
      return `the conversation with ${peer} is already not end-to-end encrypted`;
    case 'NoKey':
      return `no key known for ${peer} yet; /secure ${peer} fetches it`;
    case 'Crypto':
      return 'encryption failed';
    case 'TooManyPeers':
      return `too many end-to-end conversations (${MAX_PEERS} people, the most kept): nothing was sent or changed`;
    default:
      return 'refused';
  }
}
