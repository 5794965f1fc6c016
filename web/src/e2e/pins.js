// Pinned peer keys (trust on first use) and which of them the user verified
// (common/src/pins.rs). Pins are by nick, case-insensitively (protocol.js nickKey, Rust's
// nick_key).

import { nickKey } from '../protocol.js';
import { equalBytes } from './errors.js';

/**
 * Pins by nick: nickKey(nick) -> {key: Uint8Array(32), verified: bool}.
 * check() returns {kind: 'New'} | {kind: 'Pinned', verified} | {kind: 'Changed', pinned}.
 */
export class Pins {
  constructor() {
    /** @type {Map<string, {key: Uint8Array, verified: boolean}>} */
    this.byNick = new Map();
  }

  /** Compares `key` (32 bytes) with the pin for `nick`. */
  check(nick, key) {
    const pin = this.byNick.get(nickKey(nick));
    if (pin === undefined) return { kind: 'New' };
    if (equalBytes(pin.key, key)) return { kind: 'Pinned', verified: pin.verified };
    return { kind: 'Changed', pinned: Uint8Array.from(pin.key) };
  }

  /** The pin for `nick` (a copy), or null. */
  get(nick) {
    const pin = this.byNick.get(nickKey(nick));
    return pin === undefined ? null : { key: Uint8Array.from(pin.key), verified: pin.verified };
  }

  /** Pins `key` for `nick` if it has no pin yet; returns whether it did. */
  pinNew(nick, key) {
    const k = nickKey(nick);
    if (this.byNick.has(k)) return false;
    this.byNick.set(k, { key: Uint8Array.from(key), verified: false });
    return true;
  }

  /** How many keys are pinned. */
  get size() {
    return this.byNick.size;
  }

  /** Drops the pin for `nick` (to make room); returns whether there was one. */
  remove(nick) {
    return this.byNick.delete(nickKey(nick));
  }

  /** Replaces the pin (after the user accepted a changed key); clears "verified". */
  replace(nick, key) {
    this.byNick.set(nickKey(nick), { key: Uint8Array.from(key), verified: false });
  }

  /** Marks the pinned key as verified; false if there is no pin. */
  markVerified(nick) {
    const pin = this.byNick.get(nickKey(nick));
    if (pin === undefined) return false;
    pin.verified = true;
    return true;
  }

  /** Plain form: [{nick (its nickKey), key, verified}], sorted by nick as Rust's BTreeMap. */
  toState() {
    return [...this.byNick.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([nick, pin]) => ({ nick, key: Uint8Array.from(pin.key), verified: pin.verified }));
  }
}
