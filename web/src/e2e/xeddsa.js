// XEdDSA signatures with X25519 keys (Signal's XEdDSA specification, revision 1, §2.3-2.4 and
// §5), exactly as common/src/e2e/xeddsa.rs, on @noble/curves' ed25519 arithmetic:
// * the private key is an X25519 secret: clamped, then used as the scalar k;
// * calculate_key_pair(k): E = kB; a = k mod q, negated when E's sign bit is 1; A = E with the
//   sign bit 0;
// * sign: r = hash_1(a || M || Z) mod q with hash_1(X) = SHA-512(0xFE || 31 x 0xFF || X) and a
//   as its canonical 32 bytes little-endian; R = rB; h = SHA-512(R || A || M) mod q;
//   s = r + h·a mod q; the signature is R || s (64 bytes);
// * verify refuses u >= p, R.y >= p, s >= q (stricter than the spec's s >= 2^253) and any
//   signature that is not 64 bytes, then checks sB - hA == R byte for byte.
// Checked against e2e-v1.json's xeddsa (valid and invalid).

import { ed25519 } from '@noble/curves/ed25519.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { bytesOf, concat } from './errors.js';

const Point = ed25519.Point;
const P = Point.Fp.ORDER;
const Q = Point.Fn.ORDER;

/** Length of a signature, in bytes. */
export const SIGNATURE_LEN = 64;

const HASH_1_PREFIX = (() => {
  const p = new Uint8Array(32).fill(0xff);
  p[0] = 0xfe;
  return p;
})();

/** The little-endian integer of `bytes`. */
function leToInt(bytes) {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

/** `n` (0 <= n < 2^256) as 32 bytes little-endian. */
function intToLe32(n) {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

function mod(n, m) {
  const r = n % m;
  return r < 0n ? r + m : r;
}

/** X25519's clamping of a secret scalar (a copy). */
function clamp(k) {
  const c = Uint8Array.from(k);
  c[0] &= 248;
  c[31] &= 127;
  c[31] |= 64;
  return c;
}

/**
 * calculate_key_pair(k): the Edwards public key A (sign bit 0, 32 bytes), the scalar a with
 * A = aB, and whether a was negated.
 * @param {Uint8Array} privateKey 32 bytes, an X25519 secret
 * @returns {{publicKey: Uint8Array, a: bigint, negated: boolean}}
 */
export function calculateKeyPair(privateKey) {
  bytesOf(privateKey, 32, 'private key');
  let a = mod(leToInt(clamp(privateKey)), Q);
  const e = Point.BASE.multiply(a).toBytes();
  const negated = (e[31] & 0x80) !== 0;
  if (negated) a = mod(-a, Q);
  e[31] &= 0x7f;
  return { publicKey: e, a, negated };
}

/** h = SHA-512(R || A || M) mod q. */
function challenge(r, a, message) {
  return mod(leToInt(sha512(concat(r, a, message))), Q);
}

/**
 * Signs `message` with the X25519 secret `privateKey`; `random` is 64 fresh random bytes (Z).
 * @param {Uint8Array} privateKey 32 bytes
 * @param {Uint8Array} message any length
 * @param {Uint8Array} random 64 bytes
 * @returns {Uint8Array} the 64-byte signature R || s
 * @throws {E2eError} 'BadInput' for wrong lengths
 */
export function sign(privateKey, message, random) {
  bytesOf(message, null, 'message');
  bytesOf(random, 64, 'signing randomness');
  const { publicKey, a } = calculateKeyPair(privateKey);
  const r = mod(leToInt(sha512(concat(HASH_1_PREFIX, intToLe32(a), message, random))), Q);
  const bigR = Point.BASE.multiply(r).toBytes();
  const h = challenge(bigR, publicKey, message);
  const s = mod(r + h * a, Q);
  return concat(bigR, intToLe32(s));
}

/** Whether the 32-byte little-endian `x` is below p = 2^255 - 19. */
function belowP(x) {
  return leToInt(x) < P;
}

/**
 * convert_mont(u): the Edwards point with sign bit 0 for the Montgomery u-coordinate `u`
 * (32 bytes, u < p), or null when u = -1 or the point is not on the curve.
 */
function convertMont(u) {
  const n = leToInt(u);
  if (n >= P || n === P - 1n) return null;
  const y = Point.Fp.div(mod(n - 1n, P), mod(n + 1n, P));
  try {
    return Point.fromBytes(intToLe32(y));
  } catch {
    return null;
  }
}

/**
 * The Ed25519 public key (32 bytes) that `publicKey`'s XEdDSA signatures verify under, or
 * null if there is none.
 * @param {Uint8Array} publicKey 32 bytes, an X25519 public key
 * @returns {Uint8Array|null}
 */
export function edwardsPublic(publicKey) {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32 || !belowP(publicKey)) return null;
  const a = convertMont(publicKey);
  return a === null ? null : a.toBytes();
}

/**
 * Whether `signature` is `publicKey`'s XEdDSA signature of `message`. Anything malformed
 * (wrong types or lengths included) is simply not a valid signature: never throws.
 * @param {Uint8Array} publicKey 32 bytes
 * @param {Uint8Array} message
 * @param {Uint8Array} signature 64 bytes
 * @returns {boolean}
 */
export function verify(publicKey, message, signature) {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return false;
  if (!(message instanceof Uint8Array)) return false;
  if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_LEN) return false;
  const rBytes = signature.slice(0, 32);
  const sBytes = signature.slice(32);
  if (!belowP(publicKey)) return false;
  const rY = Uint8Array.from(rBytes);
  rY[31] &= 0x7f;
  if (!belowP(rY)) return false;
  const s = leToInt(sBytes);
  if (s >= Q) return false;
  const bigA = convertMont(publicKey);
  if (bigA === null) return false;
  const h = challenge(rBytes, bigA.toBytes(), message);
  // R_check = sB - hA (public values: variable time is fine).
  const check = Point.BASE.multiplyUnsafe(s).subtract(bigA.multiplyUnsafe(h));
  const checkBytes = check.toBytes();
  for (let i = 0; i < 32; i++) if (checkBytes[i] !== rBytes[i]) return false;
  return true;
}
