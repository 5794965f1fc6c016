// safety.js against e2e-v1.json's safety vectors and the Rust unit test's known answer.
import test from 'node:test';
import assert from 'node:assert/strict';
import { safetyNumber } from '../src/e2e/safety.js';
import { E2eError } from '../src/e2e/errors.js';
import { vectors, fromHex } from './e2e-helpers.js';

test('safety vectors, in both orders', () => {
  assert.equal(vectors.safety.length, 4);
  for (const v of vectors.safety) {
    const [ka, kb] = [fromHex(v.key_a), fromHex(v.key_b)];
    assert.equal(safetyNumber(v.nick_a, ka, v.nick_b, kb), v.safety_number);
    assert.equal(safetyNumber(v.nick_b, kb, v.nick_a, ka), v.safety_number);
    assert.match(v.safety_number, /^(\d{5} ){11}\d{5}$/);
  }
  // common/src/safety.rs's known answer.
  assert.equal(
    safetyNumber('alice', new Uint8Array(32).fill(1), 'bob', new Uint8Array(32).fill(2)),
    '37812 37970 04775 76222 69836 61495 84443 70421 74322 38920 06509 06633',
  );
});

test('bad inputs are refused with BadInput', () => {
  const k = new Uint8Array(32);
  const bad = (e) => e instanceof E2eError && e.why === 'BadInput';
  assert.throws(() => safetyNumber('a', new Uint8Array(31), 'b', k), bad);
  assert.throws(() => safetyNumber('a', k, null, k), bad);
  assert.throws(() => safetyNumber('a'.repeat(256), k, 'b', k), bad);
});
