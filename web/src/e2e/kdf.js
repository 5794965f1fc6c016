// The key derivation functions of X3DH and the Double Ratchet (common/src/e2e/kdf.rs): HKDF
// and HMAC over SHA-256. Pure; every input length is checked (E2eError 'BadInput').
// Checked against e2e-v1.json's kdf_rk, kdf_ck and message_keys.

import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { E2eError, bytesOf, utf8 } from './errors.js';

/** The `info` of kdfRk. */
export const ROOT_INFO = utf8('MultiMessenger Double Ratchet v1 root');
/** The `info` of messageKeys. */
export const MESSAGE_KEYS_INFO = utf8('MultiMessenger message keys v1');
/** Length of a ChaCha20-Poly1305 nonce, in bytes. */
export const NONCE_LEN = 12;

const ZERO_SALT = new Uint8Array(32);

/**
 * HKDF-SHA-256 (RFC 5869): `len` bytes (1 ..= 8160) of output keying material.
 * @param {Uint8Array} salt @param {Uint8Array} ikm @param {Uint8Array} info @param {number} len
 * @returns {Uint8Array}
 */
export function hkdfSha256(salt, ikm, info, len) {
  bytesOf(salt, null, 'salt');
  bytesOf(ikm, null, 'ikm');
  bytesOf(info, null, 'info');
  if (!Number.isInteger(len) || len < 1 || len > 255 * 32) {
    throw new E2eError('BadInput', 'HKDF length out of range');
  }
  return hkdf(sha256, ikm, salt, info, len);
}

/**
 * The root KDF of a ratchet step: the two halves of HKDF-SHA-256(salt = rk, ikm = dhOut,
 * info = ROOT_INFO, 64 bytes).
 * @param {Uint8Array} rk 32 bytes @param {Uint8Array} dhOut 32 bytes
 * @returns {{rootKey: Uint8Array, chainKey: Uint8Array}} 32 bytes each
 */
export function kdfRk(rk, dhOut) {
  bytesOf(rk, 32, 'root key');
  bytesOf(dhOut, 32, 'DH output');
  const okm = hkdfSha256(rk, dhOut, ROOT_INFO, 64);
  return { rootKey: okm.slice(0, 32), chainKey: okm.slice(32) };
}

/**
 * The chain KDF: (HMAC-SHA-256(ck, 0x02), HMAC-SHA-256(ck, 0x01)).
 * @param {Uint8Array} ck 32 bytes
 * @returns {{nextChainKey: Uint8Array, messageKey: Uint8Array}} 32 bytes each
 */
export function kdfCk(ck) {
  bytesOf(ck, 32, 'chain key');
  return {
    nextChainKey: hmac(sha256, ck, Uint8Array.of(0x02)),
    messageKey: hmac(sha256, ck, Uint8Array.of(0x01)),
  };
}

/**
 * The ChaCha20-Poly1305 key and nonce of a message key: HKDF-SHA-256(salt = 32 zero bytes,
 * ikm = mk, info = MESSAGE_KEYS_INFO, 44 bytes) split 32/12.
 * @param {Uint8Array} mk 32 bytes
 * @returns {{key: Uint8Array, nonce: Uint8Array}} 32 and 12 bytes
 */
export function messageKeys(mk) {
  bytesOf(mk, 32, 'message key');
  const okm = hkdfSha256(ZERO_SALT, mk, MESSAGE_KEYS_INFO, 32 + NONCE_LEN);
  return { key: okm.slice(0, 32), nonce: okm.slice(32) };
}
