// Pin decisions (common/src/e2e/trust.rs): how far a peer's key is trusted ('New' | 'Pinned' |
// 'Verified'), and the check of a key a peer presents against its pin.

import { x25519 } from '@noble/curves/ed25519.js';
import { equalBytes } from './errors.js';

/** Rust's `Display for Trust`. */
export const TRUST_WORDS = Object.freeze({
  New: "not verified (first contact: key from the server's directory, now pinned)",
  Pinned: 'not verified (pinned at first contact)',
  Verified: 'verified',
});

// A fixed clamped scalar: its product with a point is the identity exactly when the point is of
// small order (identity.rs is_contributory draws a random one; any non-zero clamped scalar below
// the group order decides the same). Fixed here so that the check draws no randomness.
const PROBE = new Uint8Array(32).fill(0x5a);

/** Whether X25519 with `key` (32 bytes) gives a non-zero output (not of small order). */
export function isContributory(key) {
  try {
    const out = x25519.getSharedSecret(PROBE, key);
    return out.some((b) => b !== 0);
  } catch {
    return false;
  }
}

/**
 * Checks the identity key `key` that `from` presents: usable, not our own `own`, matching its pin.
 * @param {import('./pins.js').Pins} pins
 * @param {Uint8Array} own 32 bytes @param {string} from @param {Uint8Array} key 32 bytes
 * @returns {{trust: 'New'|'Pinned'|'Verified'} | {failure: object}} a failure BadKey, OwnKey or
 *   KeyChanged {pinned, presented}
 */
export function checkPeerKey(pins, own, from, key) {
  if (!isContributory(key)) return { failure: { kind: 'BadKey' } };
  if (equalBytes(key, own)) return { failure: { kind: 'OwnKey' } };
  const c = pins.check(from, key);
  if (c.kind === 'New') return { trust: 'New' };
  if (c.kind === 'Pinned') return { trust: c.verified ? 'Verified' : 'Pinned' };
  return { failure: { kind: 'KeyChanged', pinned: c.pinned, presented: Uint8Array.from(key) } };
}
