// kdf.js against e2e-v1.json (kdf_rk, kdf_ck, message_keys) and its input checks.
import test from 'node:test';
import assert from 'node:assert/strict';
import { kdfCk, kdfRk, messageKeys, hkdfSha256 } from '../src/e2e/kdf.js';
import { E2eError } from '../src/e2e/errors.js';
import { vectors, fromHex, toHex } from './e2e-helpers.js';

const badInput = (e) => e instanceof E2eError && e.why === 'BadInput';

test('kdf_rk vectors', () => {
  assert.equal(vectors.kdf_rk.length, 3);
  for (const v of vectors.kdf_rk) {
    const { rootKey, chainKey } = kdfRk(fromHex(v.rk), fromHex(v.dh_out));
    assert.equal(toHex(rootKey), v.root_key);
    assert.equal(toHex(chainKey), v.chain_key);
  }
});

test('kdf_ck vectors', () => {
  assert.equal(vectors.kdf_ck.length, 3);
  for (const v of vectors.kdf_ck) {
    const { nextChainKey, messageKey } = kdfCk(fromHex(v.ck));
    assert.equal(toHex(nextChainKey), v.next_chain_key);
    assert.equal(toHex(messageKey), v.message_key);
  }
});

test('message_keys vectors', () => {
  assert.equal(vectors.message_keys.length, 3);
  for (const v of vectors.message_keys) {
    const { key, nonce } = messageKeys(fromHex(v.mk));
    assert.equal(toHex(key), v.key);
    assert.equal(toHex(nonce), v.nonce);
  }
});

test('kdf inputs of the wrong length or type are refused with BadInput', () => {
  for (const bad of [new Uint8Array(31), new Uint8Array(33), new Uint8Array(0), [1, 2], 'x', null, undefined]) {
    assert.throws(() => kdfCk(bad), badInput);
    assert.throws(() => messageKeys(bad), badInput);
    assert.throws(() => kdfRk(bad, new Uint8Array(32)), badInput);
    assert.throws(() => kdfRk(new Uint8Array(32), bad), badInput);
  }
  for (const len of [0, -1, 8161, 1.5, NaN]) {
    assert.throws(() => hkdfSha256(new Uint8Array(0), new Uint8Array(0), new Uint8Array(0), len), badInput);
  }
});
