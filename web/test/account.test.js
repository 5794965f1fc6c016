// The account key as the browser makes it (WebCrypto: node has the same API), and the login
// signature the server verifies (ECDSA P-256 / SHA-256, r ‖ s, over key_login::signed_message).
import test from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, verify } from 'node:crypto';
import { Account } from '../src/account.js';
import { keyLoginMessage } from '../src/core.js';

test('a non-extractable P-256 key signs the login message in the layout the server verifies', async () => {
  const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
  assert.equal(pair.privateKey.extractable, false);
  await assert.rejects(crypto.subtle.exportKey('pkcs8', pair.privateKey));
  const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  assert.equal(raw.length, 65);
  assert.equal(raw[0], 4);
  const account = new Account({ nickKey: 'alice', nick: 'Alice', devices: [{ id: 1, privateKey: pair.privateKey, publicKey: pair.publicKey, raw, created: 0 }] });
  assert.deepEqual(account.publicKey, raw);
  const nonce = crypto.getRandomValues(new Uint8Array(32));
  const message = keyLoginMessage(nonce, 'Alice', raw);
  const signature = await account.sign(message);
  assert.equal(signature.length, 64, 'r ‖ s');
  const jwk = { kty: 'EC', crv: 'P-256', x: Buffer.from(raw.slice(1, 33)).toString('base64url'), y: Buffer.from(raw.slice(33)).toString('base64url') };
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  assert.ok(verify('sha256', message, { key, dsaEncoding: 'ieee-p1363' }, signature));
  assert.ok(!verify('sha256', keyLoginMessage(nonce, 'Alicf', raw), { key, dsaEncoding: 'ieee-p1363' }, signature));
});
