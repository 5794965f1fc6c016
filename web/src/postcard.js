// Canonical postcard 1.x encoding and decoding (PROTOCOL.md, "Encoding").
//
// Numbers: u16 and u32 are JavaScript Numbers. u64 values (ids, timestamps, tokens) are
// **always BigInt** when decoded, so that ids above 2^53 stay exact; the encoder takes a BigInt
// or a safe-integer Number for a u64. (A timestamp in milliseconds fits a Number: the UI
// converts with Number(ts) for display only.)
//
// Decoding is strict, like the server's: overlong varints, values over the type's range,
// bools other than 00/01, options other than 00/01, invalid UTF-8, lengths longer than what
// remains and trailing bytes are all refused. The decoder throws nothing but DecodeError.

/** The one error the decoder throws. `why` is one of the protocol's words for it. */
export class DecodeError extends Error {
  constructor(why, detail = '') {
    super(detail ? `${why}: ${detail}` : why);
    this.name = 'DecodeError';
    this.why = why;
  }
}

/** Largest payload of one frame / WebSocket message. */
export const MAX_PAYLOAD = 65536;

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

const U64_MAX = (1n << 64n) - 1n;

/** Reads postcard values from a byte array, strictly. */
export class Reader {
  /** @param {Uint8Array} bytes */
  constructor(bytes) {
    if (!(bytes instanceof Uint8Array)) throw new DecodeError('its fields do not decode', 'not bytes');
    if (bytes.length > MAX_PAYLOAD) throw new DecodeError('frame too long', `${bytes.length} bytes`);
    this.bytes = bytes;
    this.pos = 0;
  }

  remaining() {
    return this.bytes.length - this.pos;
  }

  byte() {
    if (this.pos >= this.bytes.length) throw new DecodeError('it ends too early');
    return this.bytes[this.pos++];
  }

  // A varint of at most `maxBytes` bytes whose value is at most 2^bits - 1, canonical.
  varintBig(bits) {
    const maxBytes = Math.ceil(bits / 7);
    let value = 0n;
    for (let i = 0; i < maxBytes; i++) {
      const b = this.byte();
      value |= BigInt(b & 0x7f) << BigInt(7 * i);
      if ((b & 0x80) === 0) {
        if (i > 0 && b === 0) throw new DecodeError('a number is malformed', 'overlong varint');
        if (value >> BigInt(bits) !== 0n) throw new DecodeError('a number is malformed', 'out of range');
        return value;
      }
    }
    throw new DecodeError('a number is malformed', 'varint too long');
  }

  u8() {
    return this.byte();
  }

  u16() {
    return Number(this.varintBig(16));
  }

  u32() {
    return Number(this.varintBig(32));
  }

  /** @returns {bigint} */
  u64() {
    return this.varintBig(64);
  }

  bool() {
    const b = this.byte();
    if (b > 1) throw new DecodeError('a true/false field is not 0 or 1');
    return b === 1;
  }

  /** A length (of a string, byte list or vector), checked against what remains. */
  length(minBytesEach = 1, max = MAX_PAYLOAD) {
    const n = this.u32();
    if (n > max) throw new DecodeError('a field holds an unknown value', `length ${n} over ${max}`);
    if (n * minBytesEach > this.remaining()) throw new DecodeError('it ends too early', `length ${n}`);
    return n;
  }

  raw(n) {
    if (n > this.remaining()) throw new DecodeError('it ends too early');
    const out = this.bytes.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  bytesVec(max = MAX_PAYLOAD) {
    return this.raw(this.length(1, max));
  }

  string(max = MAX_PAYLOAD) {
    const raw = this.raw(this.length(1, max));
    try {
      return utf8Decoder.decode(raw);
    } catch {
      throw new DecodeError('a text is not valid UTF-8');
    }
  }

  option(readValue) {
    const tag = this.byte();
    if (tag === 0) return null;
    if (tag === 1) return readValue();
    throw new DecodeError('a field holds an unknown value', 'option tag');
  }

  finish() {
    const left = this.remaining();
    if (left !== 0) {
      throw new DecodeError(
        'trailing bytes',
        `${left} ${left === 1 ? 'byte' : 'bytes'} after the end of the message`,
      );
    }
  }
}

/** Writes postcard values into a growing buffer. Throws TypeError/RangeError on bad input. */
export class Writer {
  constructor() {
    this.buf = new Uint8Array(64);
    this.len = 0;
  }

  ensure(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  byte(b) {
    this.ensure(1);
    this.buf[this.len++] = b;
  }

  varint(value, bits) {
    let v = typeof value === 'bigint' ? value : toBigIntChecked(value);
    if (v < 0n || v >> BigInt(bits) !== 0n) throw new RangeError(`${value} is not a u${bits}`);
    do {
      let b = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) b |= 0x80;
      this.byte(b);
    } while (v !== 0n);
  }

  u8(v) {
    if (!Number.isInteger(v) || v < 0 || v > 255) throw new RangeError(`${v} is not a u8`);
    this.byte(v);
  }

  u16(v) {
    this.varint(v, 16);
  }

  u32(v) {
    this.varint(v, 32);
  }

  u64(v) {
    this.varint(v, 64);
  }

  bool(v) {
    if (typeof v !== 'boolean') throw new TypeError(`${v} is not a bool`);
    this.byte(v ? 1 : 0);
  }

  raw(bytes) {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }

  bytesVec(bytes) {
    const b = asBytes(bytes);
    this.u32(b.length);
    this.raw(b);
  }

  string(s) {
    if (typeof s !== 'string') throw new TypeError(`${s} is not a string`);
    if (typeof s.isWellFormed === 'function' ? !s.isWellFormed() : hasLoneSurrogate(s)) {
      throw new TypeError('a string with a lone surrogate has no UTF-8 form');
    }
    const b = utf8Encoder.encode(s);
    this.u32(b.length);
    this.raw(b);
  }

  option(v, writeValue) {
    if (v === null || v === undefined) {
      this.byte(0);
    } else {
      this.byte(1);
      writeValue(v);
    }
  }

  finish() {
    return this.buf.slice(0, this.len);
  }
}

function toBigIntChecked(v) {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new RangeError(`${v} is not a safe integer`);
  return BigInt(v);
}

function hasLoneSurrogate(s) {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return true;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return true;
    }
  }
  return false;
}

/** @returns {Uint8Array} */
export function asBytes(v) {
  if (v instanceof Uint8Array) return v;
  if (Array.isArray(v) && v.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)) return Uint8Array.from(v);
  throw new TypeError('not a byte array');
}

export { U64_MAX };

/** Lowercase hex of bytes. */
export function toHex(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/** Bytes of lowercase or uppercase hex (spaces allowed). */
export function fromHex(hex) {
  const clean = hex.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) throw new TypeError('not hex');
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}
