// xeddsa.js against e2e-v1.json's xeddsa vectors (valid and invalid), plus hostile inputs.
import test from 'node:test';
import assert from 'node:assert/strict';
import { ed25519 } from '@noble/curves/ed25519.js';
import { sign, verify, calculateKeyPair, edwardsPublic } from '../src/e2e/xeddsa.js';
import { publicKey } from '../src/e2e/x3dh.js';
import { E2eError } from '../src/e2e/errors.js';
import { vectors, fromHex, toHex, fuzzBytes } from './e2e-helpers.js';

test('valid XEdDSA vectors: same signature, verifies, also as plain Ed25519', () => {
  const { valid } = vectors.xeddsa;
  assert.equal(valid.length, 4);
  const negations = new Set();
  for (const v of valid) {
    const priv = fromHex(v.private);
    assert.equal(toHex(publicKey(priv)), v.public);
    const kp = calculateKeyPair(priv);
    assert.equal(kp.negated, v.a_negated);
    negations.add(kp.negated);
    assert.equal(toHex(kp.publicKey), v.edwards_public);
    assert.equal(toHex(edwardsPublic(fromHex(v.public))), v.edwards_public);
    const sig = sign(priv, fromHex(v.message), fromHex(v.random));
    assert.equal(toHex(sig), v.signature);
    assert.equal(verify(fromHex(v.public), fromHex(v.message), sig), true);
    // Independent check: @noble's own Ed25519 verifier (strict by default) on the Edwards key.
    assert.equal(ed25519.verify(sig, fromHex(v.message), fromHex(v.edwards_public)), true);
  }
  assert.equal(negations.size, 2, 'both signs of a are covered');
});

test('invalid XEdDSA vectors verify to false', () => {
  const { invalid } = vectors.xeddsa;
  assert.equal(invalid.length, 7);
  for (const v of invalid) {
    assert.equal(verify(fromHex(v.public), fromHex(v.message), fromHex(v.signature)), false, v.why);
  }
});

test('verify never throws: wrong types and lengths are just false', () => {
  const v = vectors.xeddsa.valid[1];
  const [pub, msg, sig] = [fromHex(v.public), fromHex(v.message), fromHex(v.signature)];
  for (const bad of [null, undefined, 'x', 7, [], new Uint8Array(0), new Uint8Array(31), new Uint8Array(33), new Uint8Array(65)]) {
    assert.equal(verify(bad, msg, sig), false);
    assert.equal(verify(pub, bad, sig), false);
    assert.equal(verify(pub, msg, bad), false);
  }
  assert.equal(verify(pub, msg, sig), true);
  // u = p - 1 (no Edwards point), u = 0, all zero signature.
  const pMinus1 = fromHex('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f');
  assert.equal(verify(pMinus1, msg, sig), false);
  assert.equal(verify(new Uint8Array(32), msg, sig), false);
  assert.equal(verify(pub, msg, new Uint8Array(64)), false);
});

test('every single bit flip of a signature, key or message is refused', () => {
  const v = vectors.xeddsa.valid[2];
  const [pub, msg, sig] = [fromHex(v.public), fromHex(v.message), fromHex(v.signature)];
  for (let bit = 0; bit < 512; bit++) {
    const s = Uint8Array.from(sig);
    s[bit >> 3] ^= 1 << (bit & 7);
    assert.equal(verify(pub, msg, s), false, `signature bit ${bit}`);
  }
  for (let bit = 0; bit < 255; bit += 7) {
    const k = Uint8Array.from(pub);
    k[bit >> 3] ^= 1 << (bit & 7);
    assert.equal(verify(k, msg, sig), false, `key bit ${bit}`);
  }
  for (let bit = 0; bit < msg.length * 8; bit += 13) {
    const m = Uint8Array.from(msg);
    m[bit >> 3] ^= 1 << (bit & 7);
    assert.equal(verify(pub, m, sig), false, `message bit ${bit}`);
  }
});

test('sign checks its input lengths', () => {
  const bad = (e) => e instanceof E2eError && e.why === 'BadInput';
  assert.throws(() => sign(new Uint8Array(31), new Uint8Array(0), new Uint8Array(64)), bad);
  assert.throws(() => sign(new Uint8Array(32), new Uint8Array(0), new Uint8Array(63)), bad);
  assert.throws(() => sign(new Uint8Array(32), 'text', new Uint8Array(64)), bad);
});

test('fuzz: random keys, messages and signatures never throw and never verify', () => {
  const r = fuzzBytes(0x5eed);
  const started = Date.now();
  for (let i = 0; i < 300; i++) {
    const pub = r.bytes(r.int(3) === 0 ? r.int(40) : 32);
    const sig = r.bytes(r.int(3) === 0 ? r.int(80) : 64);
    assert.equal(verify(pub, r.bytes(r.int(64)), sig), false);
    edwardsPublic(pub);
  }
  assert.ok(Date.now() - started < 20000, 'bounded time');
});
