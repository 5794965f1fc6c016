// The Double Ratchet (Signal's Double Ratchet specification, revision 1, §3.1-3.5) with
// X25519, HKDF/HMAC-SHA-256 (kdf.js) and ChaCha20-Poly1305 (envelope.js seal/open), exactly
// as common/src/e2e/ratchet.rs:
// * decrypt is transactional: every change is computed aside and committed only after the
//   message authenticated, so a forged, damaged or replayed message leaves the state as it
//   was; the new ratchet key pair is drawn (one rng(32) call) only then;
// * the peer's previous ratchet keys are remembered (the last MAX_OLD_CHAINS) so that a
//   message from a chain already passed is 'Old', not a new ratchet step;
// * MAX_SKIP bounds the keys skipped in one chain per message (for the end of the current
//   chain and again in the new one); MAX_SKIPPED_KEYS bounds those stored, oldest dropped.
// The AEAD's associated data is AD || the 40-byte header. Randomness is a function
// `rng(n) -> Uint8Array(n)`.
// toBytes/fromBytes save and restore the whole state in ratchet.rs's to_bytes/from_bytes format
// (a version byte 1, then the postcard `Saved` struct), so a state is portable between the two;
// fromBytes reads it as hostile input (E2eError 'Format' only). The saved bytes hold every
// secret of the session: keep them as carefully as the identity key.
// Checked against e2e-v1.json's ratchet transcript and ratchet_state.

import { kdfCk, kdfRk } from './kdf.js';
import { dh, publicKey } from './x3dh.js';
import { open, seal, encodeHeader, decodeHeader, HEADER_LEN } from './envelope.js';
import { E2eError, bytesOf, equalBytes, u32Of } from './errors.js';

export { encodeHeader, decodeHeader, HEADER_LEN };

/** Most message keys skipped in one chain step (per chain, per message received). */
export const MAX_SKIP = 1000;
/** Most skipped message keys stored in total; beyond it the oldest are dropped. */
export const MAX_SKIPPED_KEYS = 2000;
/** How many of the peer's previous ratchet keys are remembered. */
export const MAX_OLD_CHAINS = 1000;

const U32_MAX = 0xffffffff;

/** The version byte that starts toBytes (ratchet.rs FORMAT_VERSION). */
const FORMAT_VERSION = 1;

/** A reader of a saved state as postcard decodes it; every failure is E2eError('Format'). */
class StateReader {
  constructor(bytes) {
    this.bytes = bytes;
    this.at = 0;
  }

  fail() {
    throw new E2eError('Format', 'the saved session state is damaged');
  }

  byte() {
    if (this.at >= this.bytes.length) this.fail();
    return this.bytes[this.at++];
  }

  /** A copy of the next `n` bytes (n already known to fit in a safe integer). */
  take(n) {
    if (n > this.bytes.length - this.at) this.fail();
    const out = this.bytes.slice(this.at, this.at + n);
    this.at += n;
    return out;
  }

  /** Option<[u8; 32]>: 0, or 1 and 32 bytes. */
  option32() {
    const tag = this.byte();
    if (tag === 0) return null;
    if (tag !== 1) this.fail();
    return this.take(32);
  }

  /**
   * A postcard varint of at most `maxBytes` bytes whose last byte is at most `lastMax`
   * (non-canonical forms accepted, as postcard does). Returns a Number, exact up to 2^53;
   * larger values (only possible for lengths) are refused by the callers' bounds.
   */
  varint(maxBytes, lastMax) {
    let out = 0;
    let scale = 1;
    for (let i = 0; i < maxBytes; i++) {
      const b = this.byte();
      out += (b & 0x7f) * scale;
      scale *= 0x80;
      if ((b & 0x80) === 0) {
        if (i === maxBytes - 1 && b > lastMax) this.fail();
        return out;
      }
    }
    return this.fail();
  }

  u32() {
    return this.varint(5, 0x0f);
  }

  /**
   * A sequence length (usize, 64-bit): at most `max` and at most what the bytes left can
   * hold with elements of `minSize` bytes, else refused before anything is allocated.
   */
  count(max, minSize) {
    const n = this.varint(10, 0x01);
    if (n > max || n * minSize > this.bytes.length - this.at) this.fail();
    return n;
  }
}

/** A fresh ratchet key pair from one rng(32) call. */
function generate(rng) {
  if (typeof rng !== 'function') throw new E2eError('BadInput', 'rng is not a function');
  const secret = rng(32);
  bytesOf(secret, 32, 'rng output');
  return { secret: Uint8Array.from(secret), pub: publicKey(secret) };
}

/** Advances `ck` from `from` to `until`, pushing the skipped keys of chain `dhKey` to `out`. */
function skip(ck, dhKey, from, until, out) {
  if (until - from > MAX_SKIP) throw new E2eError('TooManySkipped', 'the message would skip too many messages');
  for (let n = from; n < until; n++) {
    const { nextChainKey, messageKey } = kdfCk(ck);
    ck = nextChainKey;
    out.push({ dh: dhKey, n, mk: messageKey });
  }
  return ck;
}

function checkHeader(header) {
  if (header === null || typeof header !== 'object') throw new E2eError('BadInput', 'no header');
  bytesOf(header.dh, 32, 'header dh');
  u32Of(header.pn, 'header pn');
  u32Of(header.n, 'header n');
}

/** One side of a Double Ratchet session (state in memory; all fields private by convention). */
export class Ratchet {
  constructor(s) {
    this.dhs = s.dhs; // our ratchet secret
    this.dhsPublic = s.dhsPublic;
    this.dhr = s.dhr; // the peer's ratchet key or null
    this.oldDhr = []; // the peer's previous ratchet keys, oldest first
    this.rk = s.rk;
    this.cks = s.cks; // or null
    this.ckr = null;
    this.ns = 0;
    this.nr = 0;
    this.pn = 0;
    this.skipped = []; // {dh, n, mk}, oldest first
    this.ad = s.ad;
    this.received = false;
  }

  /**
   * RatchetInitAlice: from the X3DH secret and the responder's signed prekey (its first
   * ratchet key). Draws our first ratchet key pair: one rng(32) call.
   * @param {Uint8Array} shared 32 bytes @param {Uint8Array} peerRatchetKey 32 bytes
   * @param {Uint8Array} associatedData @param {(n: number) => Uint8Array} rng
   * @returns {Ratchet}
   * @throws {E2eError} 'BadKey', 'BadInput'
   */
  static initiator(shared, peerRatchetKey, associatedData, rng) {
    bytesOf(shared, 32, 'shared secret');
    bytesOf(peerRatchetKey, 32, 'peer ratchet key');
    bytesOf(associatedData, null, 'associated data');
    const { secret, pub } = generate(rng);
    const { rootKey, chainKey } = kdfRk(shared, dh(secret, peerRatchetKey));
    return new Ratchet({
      dhs: secret, dhsPublic: pub, dhr: Uint8Array.from(peerRatchetKey), rk: rootKey, cks: chainKey,
      ad: Uint8Array.from(associatedData),
    });
  }

  /**
   * RatchetInitBob: from the X3DH secret and our signed prekey's secret. Can send only after
   * it received.
   * @param {Uint8Array} shared 32 bytes @param {Uint8Array} ownRatchetSecret 32 bytes
   * @param {Uint8Array} associatedData
   * @returns {Ratchet}
   */
  static responder(shared, ownRatchetSecret, associatedData) {
    bytesOf(shared, 32, 'shared secret');
    bytesOf(ownRatchetSecret, 32, 'own ratchet secret');
    bytesOf(associatedData, null, 'associated data');
    return new Ratchet({
      dhs: Uint8Array.from(ownRatchetSecret), dhsPublic: publicKey(ownRatchetSecret), dhr: null,
      rk: Uint8Array.from(shared), cks: null, ad: Uint8Array.from(associatedData),
    });
  }

  /** Whether a message from the peer decrypted in this session. */
  hasReceived() {
    return this.received;
  }

  /** Our current ratchet public key (32 bytes, a copy). */
  ratchetKey() {
    return Uint8Array.from(this.dhsPublic);
  }

  /** The number of skipped message keys stored. */
  skippedKeys() {
    return this.skipped.length;
  }

  /**
   * RatchetEncrypt.
   * @param {Uint8Array} plaintext at most MAX_CIPHERTEXT - 16 bytes
   * @returns {{header: {dh: Uint8Array, pn: number, n: number}, ciphertext: Uint8Array}}
   * @throws {E2eError} 'NotReady' (a responder that has received nothing), 'TooLong', 'BadInput'
   */
  encrypt(plaintext) {
    if (this.cks === null) throw new E2eError('NotReady', 'no sending chain yet');
    const { nextChainKey, messageKey } = kdfCk(this.cks);
    const header = { dh: Uint8Array.from(this.dhsPublic), pn: this.pn, n: this.ns };
    const ciphertext = seal(messageKey, this.ad, header, plaintext);
    this.cks = nextChainKey;
    this.ns = Math.min(this.ns + 1, U32_MAX);
    return { header, ciphertext };
  }

  /**
   * RatchetDecrypt, transactional: on any error the state is exactly as before.
   * @param {{dh: Uint8Array, pn: number, n: number}} header
   * @param {Uint8Array} ciphertext
   * @param {(n: number) => Uint8Array} rng called once (32 bytes) if the message starts a new
   *   ratchet step, after it authenticated
   * @returns {Uint8Array} the plaintext
   * @throws {E2eError} 'Decrypt', 'Old', 'TooManySkipped', 'BadKey', 'BadInput'
   */
  decrypt(header, ciphertext, rng) {
    checkHeader(header);
    // TrySkippedMessageKeys
    const i = this.skipped.findIndex((s) => s.n === header.n && equalBytes(s.dh, header.dh));
    if (i >= 0) {
      const plaintext = open(this.skipped[i].mk, this.ad, header, ciphertext);
      this.skipped.splice(i, 1);
      this.received = true;
      return plaintext;
    }
    const newSkipped = [];
    if (this.dhr !== null && equalBytes(this.dhr, header.dh)) {
      // The current receiving chain; the initiator has none before its first reply.
      if (this.ckr === null) throw new E2eError('Decrypt', 'the message does not decrypt');
      if (header.n < this.nr) throw new E2eError('Old', 'the message is a replay or too old');
      const ck = skip(this.ckr, Uint8Array.from(header.dh), this.nr, header.n, newSkipped);
      const { nextChainKey, messageKey } = kdfCk(ck);
      const plaintext = open(messageKey, this.ad, header, ciphertext);
      this.ckr = nextChainKey;
      this.nr = Math.min(header.n + 1, U32_MAX);
      this.commitSkipped(newSkipped);
      this.received = true;
      return plaintext;
    }
    if (this.oldDhr.some((k) => equalBytes(k, header.dh))) {
      throw new E2eError('Old', 'the message is a replay or too old');
    }
    // A new ratchet step, computed aside. First the end of the current chain.
    if (header.pn - this.nr > MAX_SKIP) throw new E2eError('TooManySkipped', 'the message would skip too many messages');
    if (this.ckr !== null && this.dhr !== null) skip(this.ckr, this.dhr, this.nr, header.pn, newSkipped);
    const dhKey = Uint8Array.from(header.dh);
    const step1 = kdfRk(this.rk, dh(this.dhs, dhKey));
    const ck = skip(step1.chainKey, dhKey, 0, header.n, newSkipped);
    const { nextChainKey, messageKey } = kdfCk(ck);
    const plaintext = open(messageKey, this.ad, header, ciphertext);
    // Authenticated: the second half of the step, then commit.
    const { secret, pub } = generate(rng);
    const step2 = kdfRk(step1.rootKey, dh(secret, dhKey));
    if (this.dhr !== null) {
      this.oldDhr.push(this.dhr);
      while (this.oldDhr.length > MAX_OLD_CHAINS) this.oldDhr.shift();
    }
    this.dhr = dhKey;
    this.pn = this.ns;
    this.ns = 0;
    this.nr = Math.min(header.n + 1, U32_MAX);
    this.ckr = nextChainKey;
    this.dhs = secret;
    this.dhsPublic = pub;
    this.rk = step2.rootKey;
    this.cks = step2.chainKey;
    this.commitSkipped(newSkipped);
    this.received = true;
    return plaintext;
  }

  /**
   * The state as bytes to save: ratchet.rs's `to_bytes` byte for byte (FORMAT_VERSION, then
   * postcard: dhs[32], dhr Option<[32]>, old_dhr Vec<[32]>, rk[32], cks/ckr Option<[32]>,
   * ns/nr/pn varint u32, skipped Vec<{dh[32], n varint u32, mk[32]}>, ad Vec<u8>, received bool).
   * Holds every secret of the session.
   * @returns {Uint8Array}
   */
  toBytes() {
    const out = [];
    const raw = (b) => {
      for (let i = 0; i < b.length; i++) out.push(b[i]);
    };
    const varint = (v) => {
      while (v >= 0x80) {
        out.push((v % 0x80) | 0x80);
        v = Math.floor(v / 0x80);
      }
      out.push(v);
    };
    const option = (b) => {
      if (b === null) out.push(0);
      else {
        out.push(1);
        raw(b);
      }
    };
    out.push(FORMAT_VERSION);
    raw(this.dhs);
    option(this.dhr);
    varint(this.oldDhr.length);
    for (const k of this.oldDhr) raw(k);
    raw(this.rk);
    option(this.cks);
    option(this.ckr);
    varint(this.ns);
    varint(this.nr);
    varint(this.pn);
    varint(this.skipped.length);
    for (const s of this.skipped) {
      raw(s.dh);
      varint(s.n);
      raw(s.mk);
    }
    varint(this.ad.length);
    raw(this.ad);
    out.push(this.received ? 1 : 0);
    const bytes = Uint8Array.from(out);
    out.fill(0);
    return bytes;
  }

  /**
   * Reads toBytes' (and ratchet.rs's to_bytes') format, accepting exactly what from_bytes
   * accepts (postcard's decoding: varints of at most 5 bytes for u32, 10 for lengths, option
   * and bool bytes 0 or 1). Hostile input is refused with E2eError('Format'), nothing else:
   * an unknown version, a short or overlong input, more than MAX_OLD_CHAINS old keys or
   * MAX_SKIPPED_KEYS skipped keys. Counts are checked against the bytes left before anything
   * is allocated.
   * @param {Uint8Array} bytes
   * @returns {Ratchet}
   * @throws {E2eError} 'Format'
   */
  static fromBytes(bytes) {
    if (!(bytes instanceof Uint8Array)) throw new E2eError('Format', 'the saved session state is damaged');
    const r = new StateReader(bytes);
    if (r.byte() !== FORMAT_VERSION) r.fail();
    const dhs = r.take(32);
    const dhr = r.option32();
    const oldCount = r.count(MAX_OLD_CHAINS, 32);
    const oldDhr = [];
    for (let i = 0; i < oldCount; i++) oldDhr.push(r.take(32));
    const rk = r.take(32);
    const cks = r.option32();
    const ckr = r.option32();
    const ns = r.u32();
    const nr = r.u32();
    const pn = r.u32();
    const skippedCount = r.count(MAX_SKIPPED_KEYS, 65);
    const skipped = [];
    for (let i = 0; i < skippedCount; i++) {
      const dhKey = r.take(32);
      const n = r.u32();
      skipped.push({ dh: dhKey, n, mk: r.take(32) });
    }
    const ad = r.take(r.count(Number.MAX_SAFE_INTEGER, 1));
    const receivedByte = r.byte();
    if (receivedByte > 1 || r.at !== bytes.length) r.fail();
    const ratchet = new Ratchet({ dhs, dhsPublic: publicKey(dhs), dhr, rk, cks, ad });
    ratchet.oldDhr = oldDhr;
    ratchet.ckr = ckr;
    ratchet.ns = ns;
    ratchet.nr = nr;
    ratchet.pn = pn;
    ratchet.skipped = skipped;
    ratchet.received = receivedByte === 1;
    return ratchet;
  }

  /** Stores newly skipped keys, dropping the oldest beyond MAX_SKIPPED_KEYS. */
  commitSkipped(added) {
    for (const s of added) this.skipped.push(s);
    if (this.skipped.length > MAX_SKIPPED_KEYS) this.skipped.splice(0, this.skipped.length - MAX_SKIPPED_KEYS);
  }
}
