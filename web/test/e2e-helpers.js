// Shared helpers of the e2e tests: the vectors file, the vectors' CounterRng and the transcript's ratchet pair.
// TEST-ONLY, NOT CRYPTOGRAPHIC.
import { Ratchet } from '../src/e2e/ratchet.js';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { fromHex, toHex } from '../src/postcard.js';

export { fromHex, toHex };

const path = fileURLToPath(new URL('../../common/tests/vectors/e2e-v1.json', import.meta.url));
/** common/tests/vectors/e2e-v1.json, parsed. */
export const vectors = JSON.parse(readFileSync(path, 'utf8'));

/**
 * The vectors' generator (e2e-v1.json "rng"): each call of n bytes takes ceil(n/32) blocks,
 * block i = SHA-256(utf8(label) || counter as 8 bytes big-endian), counter from 0.
 * @param {string} label
 * @returns {(n: number) => Uint8Array}
 */
export function counterRng(label) {
  let counter = 0n;
  const rng = (n) => {
    const out = new Uint8Array(n);
    for (let at = 0; at < n; at += 32) {
      const c = Buffer.alloc(8);
      c.writeBigUInt64BE(counter);
      counter += 1n;
      const block = createHash('sha256').update(label, 'utf8').update(c).digest();
      out.set(block.subarray(0, Math.min(32, n - at)), at);
    }
    return out;
  };
  rng.calls = () => counter;
  return rng;
}

/** A seeded, non-cryptographic byte source for fuzz loops (xorshift32). */
export function fuzzBytes(seed) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return {
    int: (n) => next() % n,
    bytes: (n) => {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = next() & 0xff;
      return out;
    },
  };
}

/**
 * Alice (initiator) and Bob (responder) at the start of e2e-v1.json's ratchet transcript, with
 * the transcript's CounterRng randomness each: {alice, bob, rngA, rngB}.
 */
export function ratchetPair() {
  const t = vectors.ratchet;
  const rngA = counterRng('alice ratchet');
  const rngB = counterRng('bob ratchet');
  const alice = Ratchet.initiator(fromHex(t.shared), fromHex(t.responder_ratchet_public), fromHex(t.associated_data), rngA);
  const bob = Ratchet.responder(fromHex(t.shared), fromHex(t.responder_ratchet_secret), fromHex(t.associated_data));
  return { alice, bob, rngA, rngB };
}
