// Our own prekeys (common/src/e2e/keys.rs): the signed prekeys (the current one first, a few
// before it), the one-time prekeys' secrets, what the server's directory has of them, the
// session starts seen (against replays), and the copied-home check's token.
//
// Randomness is drawn exactly as Rust draws it: a signed prekey = rng(32) secret then rng(64)
// XEdDSA nonce; a one-time prekey = rng(32); an upload = rng(16) device token only when none is
// pending.

import { publicKey, signedPrekeyMessage } from './x3dh.js';
import { sign } from './xeddsa.js';
import { toHex } from '../postcard.js';
import { MAX_ONE_TIME_SECRETS, MAX_SEEN_STARTS, MAX_SIGNED_PREKEYS } from './config.js';
import { DEVICE_TOKEN_LEN, MAX_ONE_TIME_PER_UPLOAD } from '../protocol.js';

/** rng(n), checked: exactly n bytes (a copy). */
export function draw(rng, n) {
  const out = rng(n);
  if (!(out instanceof Uint8Array) || out.length !== n) throw new Error('the random source failed');
  return Uint8Array.from(out);
}

/**
 * Our prekeys.
 * - signed: [{id: u32, secret, public: Uint8Array(32), signature: Uint8Array(64), createdMs}],
 *   newest first, at most MAX_SIGNED_PREKEYS;
 * - oneTime: Map<u32 id, {secret, public, published: bool}> (ids grow; smallest = oldest);
 * - nextId: u32, shared by signed and one-time prekeys (wrapping);
 * - seen: Map<signed prekey id, Set<hex of a start's ephemeral key>>;
 * - rotateNow: a list of starts filled up: new signed prekey at the next login;
 * - device: Uint8Array(16) (zeros: none yet); devicePending: Uint8Array(16) | null;
 * - inFlight: one-time ids sent in the upload not answered yet.
 */
export class OwnKeys {
  constructor() {
    this.signed = [];
    this.oneTime = new Map();
    this.nextId = 0;
    this.seen = new Map();
    this.rotateNow = false;
    this.device = new Uint8Array(DEVICE_TOKEN_LEN);
    this.devicePending = null;
    this.inFlight = [];
  }

  takeId() {
    const id = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0;
    return id;
  }

  /** The one-time ids, ascending. */
  oneTimeIds() {
    return [...this.oneTime.keys()].sort((a, b) => a - b);
  }

  /**
   * Makes a new signed prekey if there is none, the current one is `rotationMs` old, or
   * rotateNow; returns whether it did.
   * @param {Uint8Array} identitySecret 32 bytes @param {number} nowMs wall clock, ms since epoch
   * @param {number} rotationMs @param {(n: number) => Uint8Array} rng
   * @throws {Error} if the random source failed
   */
  rotateIfDue(identitySecret, nowMs, rotationMs, rng) {
    const first = this.signed[0];
    const due = this.rotateNow || first === undefined || Math.max(0, nowMs - first.createdMs) >= rotationMs;
    if (!due) return false;
    const secret = draw(rng, 32);
    const pub = publicKey(secret);
    const id = this.takeId();
    const random = draw(rng, 64);
    const signature = sign(identitySecret, signedPrekeyMessage(id, pub), random);
    random.fill(0);
    this.signed.unshift({ id, secret, public: pub, signature: Uint8Array.from(signature), createdMs: nowMs });
    for (const old of this.signed.splice(MAX_SIGNED_PREKEYS)) old.secret.fill(0);
    const kept = new Set(this.signed.map((s) => s.id));
    for (const id2 of [...this.seen.keys()]) if (!kept.has(id2)) this.seen.delete(id2);
    this.rotateNow = false;
    return true;
  }

  /**
   * Makes `count` (at most MAX_ONE_TIME_PER_UPLOAD) new one-time prekeys, dropping the oldest
   * secrets beyond MAX_ONE_TIME_SECRETS.
   * @throws {Error} if the random source failed
   */
  addOneTime(count, rng) {
    const n = Math.min(count, MAX_ONE_TIME_PER_UPLOAD);
    for (let i = 0; i < n; i++) {
      const secret = draw(rng, 32);
      const id = this.takeId();
      this.oneTime.set(id, { secret, public: publicKey(secret), published: false });
    }
    if (this.oneTime.size > MAX_ONE_TIME_SECRETS) {
      const ids = this.oneTimeIds();
      for (const id of ids.slice(0, this.oneTime.size - MAX_ONE_TIME_SECRETS)) this.removeOneTime(id);
    }
  }

  /** Drops a one-time secret (wiped). */
  removeOneTime(id) {
    const k = this.oneTime.get(id);
    if (k === undefined) return;
    k.secret.fill(0);
    this.oneTime.delete(id);
  }

  /**
   * The upload for the directory, in protocol.js's KeyUpload shape: the identity, the current
   * signed prekey, the one-time prekeys not published yet (newest first, at most
   * MAX_ONE_TIME_PER_UPLOAD), and the copied-home check. null without a signed prekey.
   * @param {Uint8Array} identityPublic 32 bytes
   * @throws {Error} if the random source failed
   */
  upload(identityPublic, rng) {
    const signed = this.signed[0];
    if (signed === undefined) return null;
    const oneTime = [];
    for (const id of this.oneTimeIds().reverse()) {
      if (oneTime.length >= MAX_ONE_TIME_PER_UPLOAD) break;
      const k = this.oneTime.get(id);
      if (!k.published) oneTime.push({ id, key: Uint8Array.from(k.public) });
    }
    if (this.devicePending === null) this.devicePending = draw(rng, DEVICE_TOKEN_LEN);
    this.inFlight = oneTime.map((k) => k.id);
    return {
      identity: Uint8Array.from(identityPublic),
      signed_prekey: { id: signed.id, key: Uint8Array.from(signed.public), signature: Uint8Array.from(signed.signature) },
      one_time: oneTime,
      device: { previous: Uint8Array.from(this.device), next: Uint8Array.from(this.devicePending) },
      replace_one_time: false,
    };
  }

  /** The server stored the last upload. */
  published() {
    for (const id of this.inFlight) {
      const k = this.oneTime.get(id);
      if (k !== undefined) k.published = true;
    }
    this.inFlight = [];
    if (this.devicePending !== null) {
      this.device.fill(0);
      this.device = this.devicePending;
      this.devicePending = null;
    }
  }

  /** The signed prekey with this id, or undefined. */
  signedSecret(id) {
    return this.signed.find((s) => s.id === id);
  }

  /** Whether a start with this ephemeral key (32 bytes) was taken before. */
  seenStart(ephemeral) {
    const h = toHex(ephemeral);
    for (const set of this.seen.values()) if (set.has(h)) return true;
    return false;
  }

  /** Whether a start on `signedPrekey` could still be remembered. */
  canRemember(signedPrekey) {
    const set = this.seen.get(signedPrekey);
    return set === undefined || set.size < MAX_SEEN_STARTS;
  }

  /** Remembers a start; a full list is not grown but the prekey is rotated at the next login. */
  rememberStart(signedPrekey, ephemeral) {
    let set = this.seen.get(signedPrekey);
    if (set === undefined) {
      set = new Set();
      this.seen.set(signedPrekey, set);
    }
    if (set.size < MAX_SEEN_STARTS) set.add(toHex(ephemeral));
    if (set.size >= MAX_SEEN_STARTS) this.rotateNow = true;
  }

  /** Wipes every secret (the object is unusable after). */
  wipe() {
    for (const s of this.signed) s.secret.fill(0);
    for (const k of this.oneTime.values()) k.secret.fill(0);
    this.device.fill(0);
    this.devicePending?.fill(0);
  }
}
