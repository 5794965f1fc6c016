// envelope.js against e2e-v1.json's envelope vectors (padding, sealed bytes, postcard
// envelopes, refusals), plus hostile inputs and a fuzz loop over every decoder.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  pad, unpad, seal, open, encodeEnvelope, decodeEnvelope, encodeHeader, PAD_BUCKETS, MAX_CIPHERTEXT,
} from '../src/e2e/envelope.js';
import { E2eError } from '../src/e2e/errors.js';
import { vectors, fromHex, toHex, fuzzBytes } from './e2e-helpers.js';

const V = vectors.envelope;
const why = (w) => (e) => e instanceof E2eError && e.why === w;
const headerOf = (h) => ({ dh: fromHex(h.dh), pn: h.pn, n: h.n });

test('bounds match the Rust ones', () => {
  assert.deepEqual([...PAD_BUCKETS], V.pad_buckets);
  assert.equal(MAX_CIPHERTEXT, V.max_ciphertext);
});

test('sealed vectors: padding, bucket, ciphertext; open gives the text back', () => {
  assert.equal(V.sealed.length, 7);
  const ad = fromHex(V.associated_data);
  const buckets = new Set();
  for (const v of V.sealed) {
    const padded = pad(v.text);
    assert.equal(padded.length, v.bucket, JSON.stringify(v.text.slice(0, 10)));
    buckets.add(v.bucket);
    const inner = fromHex(v.inner);
    assert.deepEqual(padded.subarray(0, inner.length), inner);
    assert.ok(padded.subarray(inner.length).every((b) => b === 0));
    assert.equal(unpad(padded), v.text);
    const header = headerOf(v.header);
    assert.equal(toHex(encodeHeader(header)), v.header_encoded);
    const ct = seal(fromHex(v.mk), ad, header, padded);
    assert.equal(ct.length, v.ciphertext_len);
    if (v.ciphertext !== undefined) assert.equal(toHex(ct), v.ciphertext);
    else assert.equal(createHash('sha256').update(ct).digest('hex'), v.ciphertext_sha256);
    assert.equal(unpad(open(fromHex(v.mk), ad, header, ct)), v.text);
  }
  assert.deepEqual([...buckets].sort((a, b) => a - b), [128, 512, 2048, 8192]);
});

test('texts too long for the largest bucket are refused', () => {
  assert.throws(() => pad('v'.repeat(V.too_long_text_len)), why('TooLong'));
  assert.equal(pad('v'.repeat(V.longest_text_len)).length, 8192);
  assert.throws(() => pad('v'.repeat(100000)), why('TooLong'));
  assert.throws(() => pad('\ud800 lone surrogate'), why('BadInput'));
  assert.throws(() => pad(42), why('BadInput'));
});

test('unpad_invalid vectors are refused', () => {
  assert.equal(V.unpad_invalid.length, 7);
  for (const v of V.unpad_invalid) assert.throws(() => unpad(fromHex(v.padded)), why('Format'), v.why);
});

test('envelope vectors encode and decode both ways', () => {
  assert.equal(V.envelopes.length, 3);
  for (const v of V.envelopes) {
    const message = { header: headerOf(v.header), ciphertext: fromHex(v.ciphertext) };
    const env = v.kind === 'Start'
      ? { kind: 'Start', identity: fromHex(v.identity), ephemeral: fromHex(v.ephemeral), signedPrekey: v.signed_prekey, oneTime: v.one_time, message }
      : { kind: 'Message', message };
    assert.equal(toHex(encodeEnvelope(env)), v.encoded, v.name);
    assert.deepEqual(decodeEnvelope(fromHex(v.encoded)), env, v.name);
  }
});

test('decode_invalid vectors are refused', () => {
  assert.equal(V.decode_invalid.length, 6);
  for (const v of V.decode_invalid) assert.throws(() => decodeEnvelope(fromHex(v.encoded)), why('Format'), v.why);
});

test('every truncation of every envelope vector is refused', () => {
  for (const v of V.envelopes) {
    const bytes = fromHex(v.encoded);
    for (let len = 0; len < bytes.length; len++) {
      assert.throws(() => decodeEnvelope(bytes.subarray(0, len)), why('Format'), `${v.name} cut at ${len}`);
    }
  }
});

test('seal and open refuse bad lengths and damaged bytes', () => {
  const v = V.sealed[1];
  const ad = fromHex(V.associated_data);
  const header = headerOf(v.header);
  const ct = fromHex(v.ciphertext);
  const mk = fromHex(v.mk);
  assert.throws(() => seal(mk, ad, header, new Uint8Array(MAX_CIPHERTEXT - 15)), why('TooLong'));
  assert.throws(() => seal(new Uint8Array(31), ad, header, new Uint8Array(1)), why('BadInput'));
  assert.throws(() => open(mk, ad, header, ct.subarray(0, 15)), why('Decrypt'));
  assert.throws(() => open(mk, ad, header, new Uint8Array(MAX_CIPHERTEXT + 1)), why('Decrypt'));
  for (let bit = 0; bit < ct.length * 8; bit += 11) {
    const c = Uint8Array.from(ct);
    c[bit >> 3] ^= 1 << (bit & 7);
    assert.throws(() => open(mk, ad, header, c), why('Decrypt'));
  }
  assert.throws(() => open(mk, ad.subarray(1), header, ct), why('Decrypt'));
  assert.throws(() => open(mk, ad, { ...header, n: header.n + 1 }, ct), why('Decrypt'));
  assert.throws(() => encodeEnvelope({ kind: 'Other' }), why('BadInput'));
  assert.throws(() => encodeEnvelope({ kind: 'Message', message: { header, ciphertext: new Uint8Array(MAX_CIPHERTEXT + 1) } }), why('BadInput'));
});

test('fuzz: random and mutated bytes into unpad and decodeEnvelope give only Format errors', () => {
  const r = fuzzBytes(7);
  const seeds = V.envelopes.map((v) => fromHex(v.encoded));
  const padded = pad('hello');
  const started = Date.now();
  for (let i = 0; i < 5000; i++) {
    let bytes;
    if (i % 2 === 0) {
      bytes = r.bytes(r.int(300));
    } else {
      bytes = Uint8Array.from(seeds[r.int(seeds.length)]);
      for (let k = 0; k < 1 + r.int(4); k++) bytes[r.int(bytes.length)] = r.int(256);
    }
    try {
      decodeEnvelope(bytes);
    } catch (e) {
      assert.ok(e instanceof E2eError && e.why === 'Format', String(e));
    }
    const p = i % 3 === 0 ? r.bytes(PAD_BUCKETS[r.int(4)]) : Uint8Array.from(padded);
    if (i % 3 !== 0) p[r.int(8)] = r.int(256);
    try {
      unpad(p);
    } catch (e) {
      assert.ok(e instanceof E2eError && e.why === 'Format', String(e));
    }
  }
  for (const bad of [null, undefined, 'bytes', [0, 1], new Uint8Array(65537)]) {
    assert.throws(() => decodeEnvelope(bad), why('Format'));
    assert.throws(() => unpad(bad), why('Format'));
  }
  assert.ok(Date.now() - started < 20000, 'bounded time');
});
