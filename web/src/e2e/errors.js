// The one error the end-to-end modules throw (web/src/e2e/*), and the input checks they share.
//
// `why` is one of:
//   'BadInput'       an argument of the wrong type, length or range (a caller's mistake, or a
//                    hostile value that should have been refused earlier)
//   'BadKey'         a key is of small order (a Diffie-Hellman output is all zeros)
//   'BadSignature'   a prekey bundle's signature does not verify
//   'NotReady'       a responder cannot send before it received a message
//   'Decrypt'        a message does not authenticate (forged, damaged, from another session)
//   'Old'            a replay, or a message whose key was dropped
//   'TooManySkipped' accepting the message would skip more than MAX_SKIP message keys
//   'TooLong'        a text does not fit the largest padding bucket
//   'Format'         bytes that do not decode (envelope, padded plaintext, header, saved
//                    ratchet state)
// as the Rust errors of the same names (common/src/e2e: RatchetError, X3dhError). Messages
// never hold secrets or message text.

/** The error of every e2e module; `why` says which (see above). */
export class E2eError extends Error {
  /**
   * @param {string} why one of the words above
   * @param {string} [detail] a short description without secrets
   */
  constructor(why, detail = '') {
    super(detail ? `${why}: ${detail}` : why);
    this.name = 'E2eError';
    this.why = why;
  }
}

/**
 * `value` if it is a Uint8Array of exactly `len` bytes (or any length when `len` is null),
 * else throws E2eError('BadInput').
 * @param {unknown} value
 * @param {number|null} len
 * @param {string} what name for the error message
 * @returns {Uint8Array}
 */
export function bytesOf(value, len, what) {
  if (!(value instanceof Uint8Array)) throw new E2eError('BadInput', `${what} is not bytes`);
  if (len !== null && value.length !== len) {
    throw new E2eError('BadInput', `${what} is ${value.length} bytes, not ${len}`);
  }
  return value;
}

/**
 * `value` if it is an integer in 0 ..= 2^32 - 1, else throws E2eError('BadInput').
 * @param {unknown} value
 * @param {string} what
 * @returns {number}
 */
export function u32Of(value, what) {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new E2eError('BadInput', `${what} is not a u32`);
  }
  return /** @type {number} */ (value);
}

/** Concatenation of byte arrays. @param {...Uint8Array} parts @returns {Uint8Array} */
export function concat(...parts) {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Byte-wise equality (of public values only: not constant-time). */
export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const encoder = new TextEncoder();
/** UTF-8 bytes of a string literal (labels). @param {string} s */
export function utf8(s) {
  return encoder.encode(s);
}
