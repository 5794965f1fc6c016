// The browser's account: an ECDSA P-256 key that WebCrypto generates as non-extractable (the
// page never holds the private key's bytes), kept in IndexedDB with the nick. The key proves
// the account at every login (KeyHello / Challenge / KeyProof, common/src/key_login.rs).
//
// Storage (IndexedDB database `mm-web`, version 1):
//   accounts  keyPath `nickKey` (the lowercase nick):
//             { nickKey, nick, created, devices: [{ id, privateKey, publicKey, raw, created }] }
//             A list of keys per nick, for several devices later; today there is one.
//   meta      key 'current' → the nickKey of the account this browser opens.
// CryptoKey objects are structured-cloneable, so IndexedDB keeps them as they are.

import { nickKey } from './protocol.js';
import { promisify, database, transaction } from './idb.js';

const DB_NAME = 'mm-web';
const DB_VERSION = 1;

const openDb = database(DB_NAME, DB_VERSION, (db) => {
  if (!db.objectStoreNames.contains('accounts')) db.createObjectStore('accounts', { keyPath: 'nickKey' });
  if (!db.objectStoreNames.contains('meta')) db.createObjectStore('meta');
});

const tx = (stores, mode, fn) => transaction(openDb, stores, mode, fn);

/** An account: a nick and its key (the first device's). */
export class Account {
  constructor(record) {
    this.record = record;
    const device = record.devices[0];
    this.nick = record.nick;
    this.privateKey = device.privateKey;
    /** The public key, SEC1 uncompressed (65 bytes). */
    this.publicKey = new Uint8Array(device.raw);
  }

  /** ECDSA P-256 / SHA-256 signature of `message`, r ‖ s (64 bytes). */
  async sign(message) {
    const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, this.privateKey, message);
    return new Uint8Array(sig);
  }

  /** The nick as the server spelled it at the welcome (same account, case may differ). */
  async rename(nick) {
    if (nick === this.nick || nickKey(nick) !== this.record.nickKey) return;
    this.nick = nick;
    this.record.nick = nick;
    await tx(['accounts'], 'readwrite', (t) => promisify(t.objectStore('accounts').put(this.record)));
  }
}

/** The account this browser opens, or null on a first visit. */
export async function loadAccount() {
  return tx(['accounts', 'meta'], 'readonly', async (t) => {
    const current = await promisify(t.objectStore('meta').get('current'));
    if (!current) return null;
    const record = await promisify(t.objectStore('accounts').get(current));
    return record && record.devices?.length ? new Account(record) : null;
  });
}

/** Makes a new key for `nick` and keeps it (replacing nothing: an existing one is reused). */
export async function createAccount(nick) {
  const key = nickKey(nick);
  const existing = await tx(['accounts'], 'readonly', (t) => promisify(t.objectStore('accounts').get(key)));
  if (existing?.devices?.length) {
    existing.nick = nick;
    await tx(['accounts', 'meta'], 'readwrite', async (t) => {
      await promisify(t.objectStore('accounts').put(existing));
      await promisify(t.objectStore('meta').put(key, 'current'));
    });
    return new Account(existing);
  }
  const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
  const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  if (raw.length !== 65 || raw[0] !== 4) throw new Error('the browser made a key of an unexpected shape');
  const now = Date.now();
  const record = {
    nickKey: key,
    nick,
    created: now,
    devices: [{ id: 1, privateKey: pair.privateKey, publicKey: pair.publicKey, raw, created: now }],
  };
  await tx(['accounts', 'meta'], 'readwrite', async (t) => {
    await promisify(t.objectStore('accounts').put(record));
    await promisify(t.objectStore('meta').put(key, 'current'));
  });
  await askPersistence();
  return new Account(record);
}

/** Forgets which account this browser opens (the key stays, for the same nick later). */
export async function forgetCurrent() {
  await tx(['meta'], 'readwrite', (t) => promisify(t.objectStore('meta').delete('current')));
}

/** Asks once that the browser keep this site's storage (the key) under storage pressure. */
export async function askPersistence() {
  try {
    if (localStorage.getItem('mm-persist-asked')) return;
    localStorage.setItem('mm-persist-asked', '1');
  } catch {
    // no localStorage: ask anyway
  }
  try {
    await navigator.storage?.persist?.();
  } catch {
    // not granted: nothing else to do
  }
}
