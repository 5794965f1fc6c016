// x3dh.js against e2e-v1.json's x3dh cases (both sides) and signed_prekey_message.
import test from 'node:test';
import assert from 'node:assert/strict';
import { initiate, respond, publicKey, signedPrekeyMessage, associatedData, dh } from '../src/e2e/x3dh.js';
import { sign } from '../src/e2e/xeddsa.js';
import { E2eError } from '../src/e2e/errors.js';
import { vectors, fromHex, toHex } from './e2e-helpers.js';

function bundleOf(v) {
  return {
    identity: fromHex(v.responder_identity_public),
    signedPrekey: { id: v.signed_prekey_id, key: fromHex(v.signed_prekey_public), signature: fromHex(v.signed_prekey_signature) },
    oneTime: v.one_time_prekey_id === null ? null : { id: v.one_time_prekey_id, key: fromHex(v.one_time_prekey_public) },
  };
}

test('x3dh vectors: both cases, both sides', () => {
  assert.equal(vectors.x3dh.length, 2);
  for (const v of vectors.x3dh) {
    assert.equal(toHex(publicKey(fromHex(v.initiator_identity_secret))), v.initiator_identity_public);
    assert.equal(toHex(publicKey(fromHex(v.ephemeral_secret))), v.ephemeral_public);
    assert.equal(toHex(publicKey(fromHex(v.signed_prekey_secret))), v.signed_prekey_public);
    const spkMessage = signedPrekeyMessage(v.signed_prekey_id, fromHex(v.signed_prekey_public));
    const sig = sign(fromHex(v.responder_identity_secret), spkMessage, fromHex(v.signed_prekey_signing_random));
    assert.equal(toHex(sig), v.signed_prekey_signature);
    const a = initiate({
      me: v.initiator_nick, identitySecret: fromHex(v.initiator_identity_secret), peer: v.responder_nick,
      bundle: bundleOf(v), ephemeralSecret: fromHex(v.ephemeral_secret),
    });
    assert.equal(toHex(a.shared), v.shared, v.name);
    assert.equal(toHex(a.associatedData), v.associated_data, v.name);
    const b = respond({
      me: v.responder_nick, identitySecret: fromHex(v.responder_identity_secret), peer: v.initiator_nick,
      peerIdentity: fromHex(v.initiator_identity_public), peerEphemeral: fromHex(v.ephemeral_public),
      signedPrekeySecret: fromHex(v.signed_prekey_secret),
      oneTimeSecret: v.one_time_prekey_secret === null ? null : fromHex(v.one_time_prekey_secret),
    });
    assert.equal(toHex(b.shared), v.shared, v.name);
    assert.equal(toHex(b.associatedData), v.associated_data, v.name);
  }
});

test('signed_prekey_message vectors', () => {
  assert.equal(vectors.signed_prekey_message.length, 4);
  for (const v of vectors.signed_prekey_message) {
    assert.equal(toHex(signedPrekeyMessage(v.id, fromHex(v.key))), v.message);
  }
  for (const id of [-1, 2 ** 32, 1.5, '7', null]) {
    assert.throws(() => signedPrekeyMessage(id, new Uint8Array(32)), (e) => e instanceof E2eError && e.why === 'BadInput');
  }
});

test('a damaged bundle signature is refused before anything else', () => {
  const v = vectors.x3dh[0];
  const args = () => ({
    me: v.initiator_nick, identitySecret: fromHex(v.initiator_identity_secret), peer: v.responder_nick,
    bundle: bundleOf(v), ephemeralSecret: fromHex(v.ephemeral_secret),
  });
  const badSig = (e) => e instanceof E2eError && e.why === 'BadSignature';
  let x = args();
  x.bundle.signedPrekey.signature[5] ^= 1;
  assert.throws(() => initiate(x), badSig);
  x = args();
  x.bundle.signedPrekey.id += 1;
  assert.throws(() => initiate(x), badSig);
  x = args();
  x.bundle.signedPrekey.key[0] ^= 1;
  assert.throws(() => initiate(x), badSig);
  x = args();
  x.bundle.signedPrekey.signature = x.bundle.signedPrekey.signature.slice(0, 63);
  assert.throws(() => initiate(x), badSig);
  x = args();
  x.bundle.identity[2] ^= 1;
  assert.throws(() => initiate(x), badSig);
});

test('small-order keys are refused with BadKey', () => {
  const v = vectors.x3dh[0];
  const badKey = (e) => e instanceof E2eError && e.why === 'BadKey';
  // Points of small order on Curve25519 (u = 0, u = 1, and one of order 8).
  const smalls = [
    new Uint8Array(32),
    fromHex('0100000000000000000000000000000000000000000000000000000000000000'),
    fromHex('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800'),
  ];
  for (const s of smalls) {
    assert.throws(() => dh(fromHex(v.ephemeral_secret), s), badKey);
    assert.throws(() => respond({
      me: 'bob', identitySecret: fromHex(v.responder_identity_secret), peer: 'Alice',
      peerIdentity: fromHex(v.initiator_identity_public), peerEphemeral: s,
      signedPrekeySecret: fromHex(v.signed_prekey_secret), oneTimeSecret: null,
    }), badKey);
  }
});

test('associated data folds ASCII case only and bounds nicks', () => {
  const k = new Uint8Array(32);
  assert.deepEqual(associatedData('ALICE', k, 'Bob', k), associatedData('alice', k, 'bob', k));
  assert.throws(() => associatedData('a'.repeat(256), k, 'b', k), (e) => e instanceof E2eError && e.why === 'BadInput');
  assert.throws(() => associatedData(7, k, 'b', k), (e) => e instanceof E2eError && e.why === 'BadInput');
  assert.throws(() => associatedData('a', new Uint8Array(31), 'b', k), (e) => e instanceof E2eError && e.why === 'BadInput');
});
