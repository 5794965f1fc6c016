// The envelope between two clients (common/src/e2e/envelope.rs): the padded plaintext inside
// a sealed message, the AEAD that seals it under a message key, and the postcard Envelope that
// travels as a Relay payload. Checked against e2e-v1.json's envelope.
//
// * Inner::Text(text) is postcard: variant 0 (varint), length (varint), UTF-8; it is padded
//   with zero bytes up to the first of PAD_BUCKETS that holds it.
// * seal/open: ChaCha20-Poly1305 under messageKeys(mk), aad = AD || the 40-byte header.
// * Envelope: Start = variant 0, identity (32 bytes), ephemeral (32 bytes), signed prekey id
//   (u32), one-time prekey id (Option<u32>), message; Message = variant 1, message; a message
//   (Sealed) = header { dh (32 bytes), pn (u32), n (u32) }, ciphertext (length, bytes) with
//   the ciphertext at most MAX_CIPHERTEXT bytes.
// Decoders throw only E2eError ('Format'); encoders E2eError ('BadInput', 'TooLong').

import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { Reader, Writer, DecodeError } from '../postcard.js';
import { messageKeys } from './kdf.js';
import { E2eError, bytesOf, concat, u32Of } from './errors.js';

/** Plaintext sizes that messages are padded up to, in bytes. */
export const PAD_BUCKETS = Object.freeze([128, 512, 2048, 8192]);
/** Authentication tag added by ChaCha20-Poly1305, in bytes. */
export const TAG_LEN = 16;
/** Largest ciphertext accepted, in bytes. */
export const MAX_CIPHERTEXT = PAD_BUCKETS[PAD_BUCKETS.length - 1] + TAG_LEN;
/** Length of an encoded ratchet header, in bytes. */
export const HEADER_LEN = 40;

const utf8Encoder = new TextEncoder();

/**
 * The padded plaintext of a chat text: postcard(Inner::Text(text)) and zeros up to a bucket.
 * @param {string} text well-formed Unicode (no lone surrogates)
 * @returns {Uint8Array} 128, 512, 2048 or 8192 bytes
 * @throws {E2eError} 'BadInput' (not a well-formed string), 'TooLong' (does not fit 8192 bytes)
 */
export function pad(text) {
  if (typeof text !== 'string' || !text.isWellFormed()) {
    throw new E2eError('BadInput', 'the text is not a well-formed string');
  }
  // A UTF-8 byte per UTF-16 unit at most thrice: refuse early what cannot fit.
  if (text.length > 3 * PAD_BUCKETS[PAD_BUCKETS.length - 1]) throw new E2eError('TooLong', 'the text is too long');
  const w = new Writer();
  w.varint(0, 32);
  w.string(text);
  const inner = w.finish();
  const bucket = PAD_BUCKETS.find((b) => b >= inner.length);
  if (bucket === undefined) throw new E2eError('TooLong', 'the text is too long');
  const out = new Uint8Array(bucket);
  out.set(inner);
  return out;
}

/**
 * The text in a padded plaintext; the size must be a bucket and the padding all zeros.
 * @param {Uint8Array} padded
 * @returns {string}
 * @throws {E2eError} 'Format'
 */
export function unpad(padded) {
  if (!(padded instanceof Uint8Array) || !PAD_BUCKETS.includes(padded.length)) {
    throw new E2eError('Format', 'not a padded plaintext');
  }
  try {
    const r = new Reader(padded);
    const variant = r.u32();
    if (variant !== 0) throw new E2eError('Format', 'unknown plaintext kind');
    const text = r.string(padded.length);
    for (let i = r.pos; i < padded.length; i++) {
      if (padded[i] !== 0) throw new E2eError('Format', 'padding not zero');
    }
    return text;
  } catch (e) {
    if (e instanceof E2eError) throw e;
    if (e instanceof DecodeError) throw new E2eError('Format', 'the plaintext does not decode');
    throw e;
  }
}

/**
 * The 40-byte header encoding dh || pn (big-endian) || n (big-endian).
 * @param {{dh: Uint8Array, pn: number, n: number}} header
 * @returns {Uint8Array}
 * @throws {E2eError} 'BadInput'
 */
export function encodeHeader(header) {
  if (header === null || typeof header !== 'object') throw new E2eError('BadInput', 'no header');
  bytesOf(header.dh, 32, 'header dh');
  u32Of(header.pn, 'header pn');
  u32Of(header.n, 'header n');
  const out = new Uint8Array(HEADER_LEN);
  out.set(header.dh);
  const view = new DataView(out.buffer);
  view.setUint32(32, header.pn, false);
  view.setUint32(36, header.n, false);
  return out;
}

/**
 * The header in 40 bytes (the reverse of encodeHeader).
 * @param {Uint8Array} bytes
 * @returns {{dh: Uint8Array, pn: number, n: number}}
 * @throws {E2eError} 'Format'
 */
export function decodeHeader(bytes) {
  if (!(bytes instanceof Uint8Array) || bytes.length !== HEADER_LEN) throw new E2eError('Format', 'not a header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_LEN);
  return { dh: bytes.slice(0, 32), pn: view.getUint32(32, false), n: view.getUint32(36, false) };
}

function aead(mk, ad, header) {
  bytesOf(ad, null, 'associated data');
  const { key, nonce } = messageKeys(mk);
  return chacha20poly1305(key, nonce, concat(ad, encodeHeader(header)));
}

/**
 * ChaCha20-Poly1305 of `plaintext` under the message key `mk`, authenticating AD and header.
 * @param {Uint8Array} mk 32 bytes @param {Uint8Array} ad @param {{dh, pn, n}} header
 * @param {Uint8Array} plaintext at most MAX_CIPHERTEXT - TAG_LEN bytes
 * @returns {Uint8Array} plaintext.length + 16 bytes
 * @throws {E2eError} 'BadInput', 'TooLong'
 */
export function seal(mk, ad, header, plaintext) {
  bytesOf(plaintext, null, 'plaintext');
  if (plaintext.length > MAX_CIPHERTEXT - TAG_LEN) throw new E2eError('TooLong', 'the plaintext is too long');
  return aead(mk, ad, header).encrypt(plaintext);
}

/**
 * The plaintext of `ciphertext` sealed under `mk`, AD and header.
 * @param {Uint8Array} mk 32 bytes @param {Uint8Array} ad @param {{dh, pn, n}} header
 * @param {Uint8Array} ciphertext 16 ..= MAX_CIPHERTEXT bytes
 * @returns {Uint8Array}
 * @throws {E2eError} 'Decrypt' (does not authenticate, or a length out of bounds), 'BadInput'
 */
export function open(mk, ad, header, ciphertext) {
  if (!(ciphertext instanceof Uint8Array) || ciphertext.length < TAG_LEN || ciphertext.length > MAX_CIPHERTEXT) {
    throw new E2eError('Decrypt', 'the message does not decrypt');
  }
  const cipher = aead(mk, ad, header);
  try {
    return cipher.decrypt(ciphertext);
  } catch {
    throw new E2eError('Decrypt', 'the message does not decrypt');
  }
}

function writeSealed(w, message) {
  if (message === null || typeof message !== 'object') throw new E2eError('BadInput', 'no message');
  const { header, ciphertext } = message;
  encodeHeader(header); // validates
  bytesOf(ciphertext, null, 'ciphertext');
  if (ciphertext.length > MAX_CIPHERTEXT) throw new E2eError('BadInput', 'ciphertext too long');
  w.raw(header.dh);
  w.varint(header.pn, 32);
  w.varint(header.n, 32);
  w.bytesVec(ciphertext);
}

function readSealed(r) {
  const dh = r.raw(32);
  const pn = r.u32();
  const n = r.u32();
  const ciphertext = r.bytesVec(MAX_CIPHERTEXT);
  return { header: { dh, pn, n }, ciphertext };
}

/**
 * The postcard bytes of an envelope.
 * @param {{kind: 'Start', identity: Uint8Array, ephemeral: Uint8Array, signedPrekey: number,
 *          oneTime: number|null, message: {header, ciphertext: Uint8Array}}
 *        | {kind: 'Message', message: {header, ciphertext: Uint8Array}}} envelope
 * @returns {Uint8Array}
 * @throws {E2eError} 'BadInput'
 */
export function encodeEnvelope(envelope) {
  if (envelope === null || typeof envelope !== 'object') throw new E2eError('BadInput', 'no envelope');
  const w = new Writer();
  if (envelope.kind === 'Start') {
    bytesOf(envelope.identity, 32, 'identity key');
    bytesOf(envelope.ephemeral, 32, 'ephemeral key');
    u32Of(envelope.signedPrekey, 'signed prekey id');
    if (envelope.oneTime !== null) u32Of(envelope.oneTime, 'one-time prekey id');
    w.varint(0, 32);
    w.raw(envelope.identity);
    w.raw(envelope.ephemeral);
    w.varint(envelope.signedPrekey, 32);
    w.option(envelope.oneTime, (v) => w.varint(v, 32));
    writeSealed(w, envelope.message);
  } else if (envelope.kind === 'Message') {
    w.varint(1, 32);
    writeSealed(w, envelope.message);
  } else {
    throw new E2eError('BadInput', 'unknown envelope kind');
  }
  return w.finish();
}

/**
 * The envelope in `bytes`: exactly one, ciphertext at most MAX_CIPHERTEXT bytes.
 * @param {Uint8Array} bytes at most 65536 bytes
 * @returns {object} as encodeEnvelope takes
 * @throws {E2eError} 'Format'
 */
export function decodeEnvelope(bytes) {
  try {
    const r = new Reader(bytes);
    const variant = r.u32();
    let envelope;
    if (variant === 0) {
      const identity = r.raw(32);
      const ephemeral = r.raw(32);
      const signedPrekey = r.u32();
      const oneTime = r.option(() => r.u32());
      const message = readSealed(r);
      envelope = { kind: 'Start', identity, ephemeral, signedPrekey, oneTime, message };
    } else if (variant === 1) {
      envelope = { kind: 'Message', message: readSealed(r) };
    } else {
      throw new E2eError('Format', 'unknown envelope kind');
    }
    r.finish();
    return envelope;
  } catch (e) {
    if (e instanceof E2eError) throw e;
    if (e instanceof DecodeError) throw new E2eError('Format', 'the envelope does not decode');
    throw e;
  }
}
