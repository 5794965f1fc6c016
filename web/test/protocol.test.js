// The JS codec against the Rust fixtures (common/tests/vectors/wire-v6.json, written and
// checked by common/tests/wire_fixtures.rs), and against hostile bytes.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  CLIENT, SERVER, STRUCTS, TAGGED, DecodeError, decodeServer, decodeClient, encodeClient,
  encodeServer, nickError, roomError, textError,
} from '../src/protocol.js';
import { fromHex, toHex, Reader } from '../src/postcard.js';

const path = fileURLToPath(new URL('../../common/tests/vectors/wire-v6.json', import.meta.url));
// Integers beyond 2^53 are read as BigInt (JSON.parse would round them).
const text = readFileSync(path, 'utf8').replace(/(?<=[\s:[,])(\d{16,})(?=\s*[,\]}\n])/g, '"#big:$1"');
const fixtures = JSON.parse(text, (_k, v) => (typeof v === 'string' && v.startsWith('#big:') ? BigInt(v.slice(5)) : v));

// serde_json form → this module's form, driven by the schema.
function fromSerdeType(type, v) {
  if (typeof type === 'string') {
    if (type === 'u64') return BigInt(v);
    if (type === 'bytes') return Uint8Array.from(v);
    return v;
  }
  const [kind, inner] = type;
  switch (kind) {
    case 'array': return Uint8Array.from(v);
    case 'vec': return v.map((x) => fromSerdeType(inner, x));
    case 'option': return v === null ? null : fromSerdeType(inner, v);
    case 'struct': return fromSerdeFields(STRUCTS[inner], v, {});
    case 'units': return v;
    case 'tagged': {
      if (typeof v === 'string') return { type: v };
      const [name, body] = Object.entries(v)[0];
      const [, fields, newtype] = TAGGED[inner].find(([n]) => n === name);
      return newtype ? { type: name, [fields[0][0]]: fromSerdeType(fields[0][1], body) } : fromSerdeFields(fields, body, { type: name });
    }
    default: throw new Error(kind);
  }
}
function fromSerdeFields(fields, v, out) {
  for (const [name, type] of fields) out[name] = fromSerdeType(type, v[name]);
  return out;
}
function fromSerde(variants, value) {
  if (typeof value === 'string') return { type: value };
  const [name, body] = Object.entries(value)[0];
  const [, fields] = variants.find(([n]) => n === name);
  return fromSerdeFields(fields, body, { type: name });
}

test('the fixtures hold every variant, in order', () => {
  assert.deepEqual(fixtures.client.slice(0, CLIENT.length).map((f) => f.name), CLIENT.map(([n]) => n));
  assert.deepEqual(fixtures.server.slice(0, SERVER.length).map((f) => f.name), SERVER.map(([n]) => n));
  assert.equal(CLIENT.length, 24);
  assert.equal(SERVER.length, 32);
});

for (const f of fixtures.server) {
  test(`server ${f.name} ${f.hex.slice(0, 16)}: decodes to the Rust value and encodes back`, () => {
    const expected = fromSerde(SERVER, f.value);
    const got = decodeServer(fromHex(f.hex));
    assert.deepEqual(got, expected);
    assert.equal(toHex(encodeServer(got)), f.hex);
  });
}

for (const f of fixtures.client) {
  test(`client ${f.name} ${f.hex.slice(0, 16)}: encodes to the Rust bytes and decodes back`, () => {
    const msg = fromSerde(CLIENT, f.value);
    assert.equal(toHex(encodeClient(msg)), f.hex);
    assert.deepEqual(decodeClient(fromHex(f.hex)), msg);
  });
}

test("PROTOCOL.md's examples", () => {
  assert.equal(toHex(encodeClient({ type: 'Hello', version: 6, nick: 'bob' })), '0006036' + '2' + '6f62');
  assert.equal(toHex(encodeClient({ type: 'Received', up_to: 300n })), '08ac02');
  assert.equal(toHex(encodeClient({ type: 'Received', up_to: 300 })), '08ac02');
  assert.deepEqual(decodeServer(fromHex('0207 80d095ffbc31 0423646576 03626f62 026869 00')), {
    type: 'Public', id: 7n, ts: 1700000000000n, room: '#dev', from: 'bob', text: 'hi', action: false,
  });
  assert.deepEqual(decodeServer(fromHex('1d13')), { type: 'PrekeysLow', one_time: 19 });
});

function mustRefuse(bytes, label) {
  let err;
  try {
    decodeServer(bytes);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof DecodeError, `${label}: ${toHex(bytes)} gave ${err}`);
}

test('every truncation of every server fixture is a DecodeError', () => {
  for (const f of fixtures.server) {
    const b = fromHex(f.hex);
    for (let n = 0; n < b.length; n++) mustRefuse(b.slice(0, n), `${f.name} cut at ${n}`);
  }
});

test('trailing bytes after any fixture are refused', () => {
  for (const f of fixtures.server) {
    const b = fromHex(f.hex);
    const longer = new Uint8Array(b.length + 1);
    longer.set(b);
    mustRefuse(longer, f.name);
    try { decodeServer(longer); } catch (e) { assert.match(e.message, /1 byte after the end/); }
  }
});

test('overlong and out-of-range varints are refused', () => {
  mustRefuse(fromHex('8400'), 'overlong variant number');
  mustRefuse(fromHex('0480 00 01'), 'overlong id');
  mustRefuse(fromHex('1d 9300'), 'overlong u32');
  mustRefuse(fromHex('1d ffffffff10'), 'u32 over range');
  mustRefuse(fromHex('09 ffffffffffffffffff02'), 'u64 over range');
  mustRefuse(fromHex('09 ffffffffffffffffffff01'), 'u64 too long');
  mustRefuse(fromHex('07 ffff04 00 00'), 'ErrorCode over u16');
  assert.equal(decodeServer(fromHex('07 ffff03 00 00')).code, 65535);
  assert.deepEqual(decodeServer(fromHex('09 ffffffffffffffffff01')), { type: 'Ping', token: (1n << 64n) - 1n });
});

test('unknown variants, bad bools, bad options, bad UTF-8 and huge lengths are refused', () => {
  mustRefuse(fromHex('20'), 'message 32');
  mustRefuse(fromHex('ffffffff0f'), 'message u32::MAX');
  mustRefuse(fromHex('0f 03626f62 02'), 'bool 2');
  mustRefuse(fromHex('06 01 0123 0178 04'), 'LeaveReason 4');
  mustRefuse(fromHex('1c 03626f62 05'), 'BundleAnswer 5');
  mustRefuse(fromHex('08 02 c328'), 'invalid UTF-8');
  mustRefuse(fromHex('08 02 eda080'), 'surrogate in UTF-8');
  mustRefuse(fromHex('08 ffffffff0f 41'), 'string length 4 GiB');
  mustRefuse(fromHex('01 ffffffff0f'), 'vector of 4 G nicks');
  mustRefuse(fromHex('01 05 0141 00'), 'vector longer than the bytes');
  mustRefuse(fromHex('1c 03626f62 00' + '07'.repeat(32) + '01 07' + '00'.repeat(32) + '00 02'), 'option tag 2');
  mustRefuse(new Uint8Array(65537), 'over 64 KiB');
  mustRefuse(fromHex('10 0423646576 00 00 00 00 000000 01 04 00 00'), 'Role 4');
});

test('random bytes only ever give a DecodeError or a message that encodes back to them', () => {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) >> 8) & 0xff;
  const bases = fixtures.server.map((f) => fromHex(f.hex));
  for (let i = 0; i < 20000; i++) {
    const base = bases[i % bases.length];
    const b = base.slice();
    for (let k = 0; k < 1 + (i % 3); k++) if (b.length) b[rand() % b.length] = rand();
    let msg;
    try {
      msg = decodeServer(b);
    } catch (e) {
      assert.ok(e instanceof DecodeError, String(e));
      continue;
    }
    assert.equal(toHex(encodeServer(msg)), toHex(b));
  }
});

test('the reader refuses non-bytes with a DecodeError', () => {
  assert.throws(() => new Reader('abc'), DecodeError);
  mustRefuse(new Uint8Array(0), 'empty');
});

test('encoding refuses bad messages with a TypeError or RangeError', () => {
  assert.throws(() => encodeClient({ type: 'Nope' }), TypeError);
  assert.throws(() => encodeClient({ type: 'Ping', token: -1 }), RangeError);
  assert.throws(() => encodeClient({ type: 'Ping', token: 2 ** 60 }), RangeError);
  assert.throws(() => encodeClient({ type: 'Ping', token: 1n << 64n }), RangeError);
  assert.throws(() => encodeClient({ type: 'Hello', version: 70000, nick: 'a' }), RangeError);
  assert.throws(() => encodeClient({ type: 'Public', room: '#a', text: 'x\uD800', action: false }), TypeError);
  assert.throws(() => encodeClient({ type: 'Public', room: '#a', text: 'x' }), TypeError);
});

test('nick, room and text rules follow protocol.rs', () => {
  assert.equal(nickError('alice'), null);
  assert.equal(nickError('A-b_9'), null);
  assert.match(nickError(''), /empty/);
  assert.match(nickError('9a'), /start with a letter/);
  assert.match(nickError('a b'), /may only hold/);
  assert.match(nickError('é'), /start/);
  assert.match(nickError('a'.repeat(33)), /at most 32/);
  assert.equal(nickError('a'.repeat(32)), null);
  assert.equal(roomError('#dev'), null);
  assert.match(roomError('dev'), /starts with #/);
  assert.match(roomError('#'), /at least one/);
  assert.match(roomError('#a.b'), /only letters/);
  assert.match(roomError('#' + 'a'.repeat(49)), /at most 48/);
  assert.equal(textError('héllo 👋'), null);
  assert.match(textError(''), /empty/);
  assert.match(textError('a\nb'), /control/);
  assert.match(textError('a\u202eb'), /U\+202E/);
  assert.match(textError('x'.repeat(4097)), /4097 bytes/);
  assert.match(textError('é'.repeat(2049)), /4098 bytes/);
  assert.equal(textError('\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}'), null, 'a flag');
  assert.match(textError('\u{E0067}'), /U\+E0067/);
});
