// What end-to-end costs the browser client, per operation (web/src/e2e/sessions.js, the page's
// own code): publishing keys at the first login, the first message to a peer (from its bundle:
// XEdDSA check, X3DH, ratchet start, encryption), the peer opening it, then each message on an
// established session (encrypt, decrypt, and saving the state, which the page does before every
// send and every line it shows).
//
// Runs in Node (`node bench/web_e2e/costs.mjs`) and in Chromium (`node bench/web_e2e/run.mjs`,
// which bundles this file with esbuild and runs it in headless Chromium with playwright-core).
// Prints one JSON object: milliseconds per operation, median (min–max) over the runs.
import { Sessions } from '../../web/src/e2e/sessions.js';

const rng = (n) => globalThis.crypto.getRandomValues(new Uint8Array(n));
const now = () => globalThis.performance.now();

/** An in-memory key directory and relay, as the server would be. */
class Directory {
  constructor() {
    this.keys = new Map();
  }

  publish(nick, upload) {
    const stock = this.keys.get(nick)?.oneTime ?? [];
    this.keys.set(nick, { identity: upload.identity, signed: upload.signed_prekey, oneTime: stock.concat(upload.one_time) });
    return this.keys.get(nick).oneTime.length;
  }

  bundle(nick) {
    const k = this.keys.get(nick);
    if (!k) return { type: 'NoKeys' };
    return { type: 'Keys', bundle: { identity: k.identity, signed_prekey: k.signed, one_time: k.oneTime.shift() ?? null } };
  }
}

function identity() {
  return rng(32);
}

/** Carries out actions: publishes, answers fetches, relays; returns the payloads sent. */
function run(dir, s, nick, actions, counts) {
  const sent = [];
  for (const a of actions) {
    if (a.type === 'Persist') {
      const t = now();
      const state = s.toState();
      structuredClone(state); // what IndexedDB does to it before writing
      counts.persist.push(now() - t);
    } else if (a.type === 'Publish') {
      const n = dir.publish(nick, a.upload);
      sent.push(...run(dir, s, nick, s.published(n, false), counts));
    } else if (a.type === 'Send') {
      sent.push(a.payload);
    }
  }
  return sent;
}

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const r = (x) => Math.round(x * 1000) / 1000;
  return { median: r(s[Math.floor(s.length / 2)]), min: r(s[0]), max: r(s[s.length - 1]), n: s.length };
}

export async function measure({ runs = 20, messages = 200 } = {}) {
  const out = { login: [], firstSend: [], firstOpen: [], encrypt: [], decrypt: [], persist: [], safetyNumber: [] };
  for (let r = 0; r < runs; r++) {
    const dir = new Directory();
    const alice = Sessions.create({ me: 'alice', identitySecret: identity(), rng });
    const bob = Sessions.create({ me: 'bob', identitySecret: identity(), rng });
    const counts = { persist: out.persist };
    let t = now();
    run(dir, bob, 'bob', bob.login(0, Date.now()), counts);
    out.login.push(now() - t);
    run(dir, alice, 'alice', alice.login(0, Date.now()), counts);
    // Alice's first message to Bob, who is offline: fetch his bundle, start, encrypt.
    t = now();
    const sent0 = alice.sendText('bob', 'hello bob, this is the first message', 1, 0);
    const payloads = run(dir, alice, 'alice', [...sent0.actions, ...alice.bundle('bob', dir.bundle('bob'), 0)], counts);
    out.firstSend.push(now() - t);
    t = now();
    const opened = bob.receive('alice', 1n, payloads[0], 0);
    out.firstOpen.push(now() - t);
    if (!opened.some((a) => a.type === 'Event' && a.event.kind === 'Message')) throw new Error('the first message did not open');
    // Then a conversation: alternating senders, so that every message is a ratchet step too.
    let id = 2n;
    for (let m = 0; m < messages; m++) {
      const [from, to, fromNick, toNick] = m % 2 === 0 ? [bob, alice, 'bob', 'alice'] : [alice, bob, 'alice', 'bob'];
      t = now();
      const res = from.sendText(toNick, `message ${m} ${'x'.repeat(80)}`, m + 2, 0);
      out.encrypt.push(now() - t);
      const payload = res.actions.find((a) => a.type === 'Send').payload;
      t = now();
      const got = to.receive(fromNick, id++, payload, 0);
      out.decrypt.push(now() - t);
      if (!got.some((a) => a.type === 'Event' && a.event.kind === 'Message')) throw new Error(`message ${m} did not open`);
      t = now();
      structuredClone(from.toState());
      out.persist.push(now() - t);
    }
    t = now();
    alice.safetyNumber('bob');
    out.safetyNumber.push(now() - t);
  }
  if (globalThis.indexedDB) {
    // The save the page does before each send and each line shown: one readwrite transaction
    // putting the whole state, waited for until it committed.
    const alice = Sessions.create({ me: 'alice', identitySecret: identity(), rng });
    const dir = new Directory();
    run(dir, alice, 'alice', alice.login(0, Date.now()), { persist: [] });
    for (const durability of ['strict', 'relaxed']) {
      out[`save_${durability}`] = await idbSaves(alice.toState(), durability, 100);
    }
  }
  const result = {};
  for (const [k, v] of Object.entries(out)) result[k] = stats(v);
  return result;
}

async function idbSaves(state, durability, n) {
  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open('mm-bench', 1);
    req.onupgradeneeded = () => req.result.createObjectStore('homes');
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  const times = [];
  for (let i = 0; i < n; i++) {
    const t = now();
    await new Promise((resolve, reject) => {
      const tx = db.transaction(['homes'], 'readwrite', { durability });
      tx.objectStore('homes').put(state, 'alice');
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
    });
    times.push(now() - t);
  }
  db.close();
  return times;
}

if (typeof process !== 'undefined' && process.argv?.[1]?.endsWith('costs.mjs')) {
  measure().then((result) => console.log(JSON.stringify({ where: `node ${process.version}`, unit: 'ms', ...result }, null, 1)));
}
