// X3DH key agreement (Signal's X3DH specification, revision 1, §2-3) with X25519, SHA-256 and
// XEdDSA, exactly as common/src/e2e/x3dh.rs:
// * DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B), and DH4 = DH(EK_A,
//   OPK_B) when a one-time prekey was handed out;
// * SK = HKDF-SHA-256(salt = 32 zero bytes, ikm = 32 x 0xFF || DH1 || DH2 || DH3 [|| DH4],
//   info = "MultiMessenger X3DH v1", 32 bytes);
// * AD = "MultiMessenger AD v1" || IK_A || IK_B || len || lowercase(A's nick) || len ||
//   lowercase(B's nick), lengths one byte, ASCII case folding.
// Every DH output must be contributory (not all zeros): E2eError 'BadKey' otherwise.
// Pure: the initiator's ephemeral secret is passed in. Checked against e2e-v1.json's x3dh and
// signed_prekey_message.

import { x25519 } from '@noble/curves/ed25519.js';
import { hkdfSha256 } from './kdf.js';
import { verify } from './xeddsa.js';
import { E2eError, bytesOf, concat, u32Of, utf8 } from './errors.js';

/** The `info` of the X3DH key derivation. */
export const X3DH_INFO = utf8('MultiMessenger X3DH v1');
/** The first bytes of the associated data. */
export const AD_LABEL = utf8('MultiMessenger AD v1');
/** The domain label of signedPrekeyMessage. */
export const SIGNED_PREKEY_LABEL = utf8('MultiMessenger signed prekey v1');
/** Longest nick accepted here, in UTF-8 bytes (the protocol's limit is 32). */
export const MAX_NICK_BYTES = 255;

/**
 * The X25519 public key of a 32-byte secret (clamped as X25519 does).
 * @param {Uint8Array} secret 32 bytes @returns {Uint8Array} 32 bytes
 */
export function publicKey(secret) {
  bytesOf(secret, 32, 'secret key');
  return x25519.getPublicKey(secret);
}

/**
 * DH(secret, public): the X25519 shared secret, refused ('BadKey') if all zeros.
 * @param {Uint8Array} secret 32 bytes @param {Uint8Array} pub 32 bytes @returns {Uint8Array}
 */
export function dh(secret, pub) {
  bytesOf(secret, 32, 'secret key');
  bytesOf(pub, 32, 'public key');
  let out;
  try {
    out = x25519.getSharedSecret(secret, pub);
  } catch {
    // @noble refuses an all-zero output (a small-order key); nothing else reaches here with
    // 32-byte inputs.
    throw new E2eError('BadKey', 'a key is not usable');
  }
  let acc = 0;
  for (const b of out) acc |= b;
  if (acc === 0) throw new E2eError('BadKey', 'a key is not usable');
  return out;
}

/** ASCII lowercase (the protocol's nick_key): other characters are kept as they are. */
function nickKey(nick) {
  if (typeof nick !== 'string') throw new E2eError('BadInput', 'a nick is not a string');
  const bytes = utf8(nick.replace(/[A-Z]/g, (c) => c.toLowerCase()));
  if (bytes.length > MAX_NICK_BYTES) throw new E2eError('BadInput', 'a nick is too long');
  return bytes;
}

/**
 * The bytes an identity key signs for a signed prekey: label || id (4 bytes big-endian) || key.
 * @param {number} id u32 @param {Uint8Array} key 32 bytes @returns {Uint8Array}
 */
export function signedPrekeyMessage(id, key) {
  u32Of(id, 'signed prekey id');
  bytesOf(key, 32, 'signed prekey');
  const idBytes = new Uint8Array(4);
  new DataView(idBytes.buffer).setUint32(0, id, false);
  return concat(SIGNED_PREKEY_LABEL, idBytes, key);
}

/**
 * The associated data of a session (initiator first on both sides).
 * @param {string} initiator nick @param {Uint8Array} initiatorKey 32 bytes
 * @param {string} responder nick @param {Uint8Array} responderKey 32 bytes
 * @returns {Uint8Array}
 */
export function associatedData(initiator, initiatorKey, responder, responderKey) {
  bytesOf(initiatorKey, 32, 'initiator identity key');
  bytesOf(responderKey, 32, 'responder identity key');
  const a = nickKey(initiator);
  const b = nickKey(responder);
  return concat(AD_LABEL, initiatorKey, responderKey, Uint8Array.of(a.length), a, Uint8Array.of(b.length), b);
}

function derive(outputs) {
  return hkdfSha256(new Uint8Array(32), concat(new Uint8Array(32).fill(0xff), ...outputs), X3DH_INFO, 32);
}

/**
 * The initiator's side, from the peer's prekey bundle and a fresh ephemeral secret.
 * @param {object} args
 * @param {string} args.me our nick
 * @param {Uint8Array} args.identitySecret our identity key's secret (32 bytes)
 * @param {string} args.peer the peer's nick
 * @param {{identity: Uint8Array, signedPrekey: {id: number, key: Uint8Array, signature: Uint8Array},
 *          oneTime: {id: number, key: Uint8Array}|null}} args.bundle as decoded from `Bundle`
 * @param {Uint8Array} args.ephemeralSecret 32 random bytes (its public key goes to the peer)
 * @returns {{shared: Uint8Array, associatedData: Uint8Array}} SK (32 bytes) and AD
 * @throws {E2eError} 'BadSignature' (checked first), 'BadKey', 'BadInput'
 */
export function initiate({ me, identitySecret, peer, bundle, ephemeralSecret }) {
  if (bundle === null || typeof bundle !== 'object') throw new E2eError('BadInput', 'no bundle');
  const spk = bundle.signedPrekey;
  if (spk === null || typeof spk !== 'object') throw new E2eError('BadInput', 'no signed prekey');
  bytesOf(bundle.identity, 32, 'bundle identity key');
  bytesOf(ephemeralSecret, 32, 'ephemeral secret');
  if (!verify(bundle.identity, signedPrekeyMessage(spk.id, spk.key), spk.signature)) {
    throw new E2eError('BadSignature', 'the prekey bundle signature does not verify');
  }
  const dh1 = dh(identitySecret, spk.key);
  const dh2 = dh(ephemeralSecret, bundle.identity);
  const dh3 = dh(ephemeralSecret, spk.key);
  const outputs = [dh1, dh2, dh3];
  if (bundle.oneTime !== null && bundle.oneTime !== undefined) {
    u32Of(bundle.oneTime.id, 'one-time prekey id');
    outputs.push(dh(ephemeralSecret, bundle.oneTime.key));
  }
  return {
    shared: derive(outputs),
    associatedData: associatedData(me, publicKey(identitySecret), peer, bundle.identity),
  };
}

/**
 * The responder's side, from the initiator's first message.
 * @param {object} args
 * @param {string} args.me our nick
 * @param {Uint8Array} args.identitySecret our identity key's secret (32 bytes)
 * @param {string} args.peer the initiator's nick
 * @param {Uint8Array} args.peerIdentity the initiator's identity key (32 bytes)
 * @param {Uint8Array} args.peerEphemeral the initiator's ephemeral key (32 bytes)
 * @param {Uint8Array} args.signedPrekeySecret the secret of the signed prekey used (32 bytes)
 * @param {Uint8Array|null} args.oneTimeSecret that of the one-time prekey used, if one was
 * @returns {{shared: Uint8Array, associatedData: Uint8Array}}
 * @throws {E2eError} 'BadKey', 'BadInput'
 */
export function respond({ me, identitySecret, peer, peerIdentity, peerEphemeral, signedPrekeySecret, oneTimeSecret = null }) {
  const dh1 = dh(signedPrekeySecret, peerIdentity);
  const dh2 = dh(identitySecret, peerEphemeral);
  const dh3 = dh(signedPrekeySecret, peerEphemeral);
  const outputs = [dh1, dh2, dh3];
  if (oneTimeSecret !== null && oneTimeSecret !== undefined) outputs.push(dh(oneTimeSecret, peerEphemeral));
  return {
    shared: derive(outputs),
    associatedData: associatedData(peer, peerIdentity, me, publicKey(identitySecret)),
  };
}
