// Safety numbers (common/src/safety.rs): what two users compare out of band. Per party 30
// digits: d = SHA-512(0x00 0x01 || key || lowercase(nick)), then 5200 times
// d = SHA-512(d || key); the first 30 bytes of d in six 5-byte big-endian chunks, each mod
// 100000 as 5 digits. The safety number is the two halves sorted, concatenated, in 12 groups
// of 5 digits separated by spaces: the same whoever asks. Checked against e2e-v1.json's safety.

import { sha512 } from '@noble/hashes/sha2.js';
import { E2eError, bytesOf, concat, utf8 } from './errors.js';

const ITERATIONS = 5200;
const VERSION = Uint8Array.of(0, 1);
/** Longest nick accepted here, in UTF-8 bytes (the protocol's limit is 32). */
export const MAX_NICK_BYTES = 255;

function half(nick, key) {
  if (typeof nick !== 'string') throw new E2eError('BadInput', 'a nick is not a string');
  const nickBytes = utf8(nick.replace(/[A-Z]/g, (c) => c.toLowerCase()));
  if (nickBytes.length > MAX_NICK_BYTES) throw new E2eError('BadInput', 'a nick is too long');
  bytesOf(key, 32, 'identity key');
  let digest = sha512(concat(VERSION, key, nickBytes));
  const buf = new Uint8Array(64 + 32);
  buf.set(key, 64);
  for (let i = 0; i < ITERATIONS; i++) {
    buf.set(digest, 0);
    digest = sha512(buf);
  }
  let out = '';
  for (let c = 0; c < 30; c += 5) {
    let value = 0;
    for (let i = c; i < c + 5; i++) value = value * 256 + digest[i]; // < 2^40: exact in a Number
    out += String(value % 100000).padStart(5, '0');
  }
  return out;
}

/**
 * The 60-digit safety number of two parties, as 12 groups of 5 digits separated by spaces.
 * Symmetric in the two parties; nicks compare case-insensitively (ASCII).
 * @param {string} nickA @param {Uint8Array} keyA 32 bytes
 * @param {string} nickB @param {Uint8Array} keyB 32 bytes
 * @returns {string}
 * @throws {E2eError} 'BadInput'
 */
export function safetyNumber(nickA, keyA, nickB, keyB) {
  const halves = [half(nickA, keyA), half(nickB, keyB)].sort();
  return halves.join('').match(/.{5}/g).join(' ');
}
