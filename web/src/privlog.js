// The account's private conversations, kept in this browser so that a reload brings them back
// (the server keeps no history of delivered private lines). Bounded: the last MAX_LINES lines
// of each conversation, the MAX_CONVS conversations most recently written to. A conversation
// the user closes is deleted here too.
//
// Storage (IndexedDB database `mm-web-private`, version 1; apart from `mm-web`, which holds the
// account keys, so that neither waits for the other's upgrades):
//   conversations  keyPath [account, peerKey], index `account`:
//     { account: nickKey of the account, peerKey: nickKey of the peer, peer: the peer's nick,
//       updated: ms since the epoch, lines: [{ ts: ms since the epoch (Number), from: nick,
//       text: string ≤ MAX_TEXT chars, kind: 'line' | 'notice', plain: true, id?: the server's id of
//       a received line, decimal string }] }
//   `plain: true`: the line was NOT end-to-end encrypted; `plain: false`: it was (a line
//   decrypted here, or one of ours sent encrypted). Only the text is kept, never key material.
//   A line of ours also has `local` (the page's name for it) and, until the server took it,
//   `pending: true`; `note` says why it was not sent. A line still pending at the next page load
//   was never confirmed (the page closed first): it is shown so, never as if it had gone.
//
// Writes are coalesced: lines added in one task are written in the next (one `put` per
// conversation), so a line is stored within a few milliseconds of being shown. `add` returns a
// promise that settles when the line's write did: the page acknowledges a received line to the
// server only then, and a line the server sends again (a reload before the acknowledgement) is
// recognised by its id (`has`) and not shown twice.

import { nickKey, nickError } from './protocol.js';
import { promisify, database, transaction } from './idb.js';

export const MAX_LINES = 500;
export const MAX_CONVS = 200;
/** Longest text kept for one line (characters); longer is cut (the protocol's cap is 4096 bytes). */
export const MAX_TEXT = 8192;

const DB_NAME = 'mm-web-private';
const DB_VERSION = 1;
const STORE = 'conversations';

/**
 * What the log stores in. `load(account)` → records (any shape: checked here), `put(record)`,
 * `delete(account, peerKey)`, `clear(account)`; each returns a Promise.
 * @typedef {{load(a: string): Promise<any[]>, put(r: object): Promise<void>, delete(a: string, p: string): Promise<void>, clear(a: string): Promise<void>}} Backend
 */

/** A stored line as kept (or null if the stored value is not one). */
function checkLine(l) {
  if (!l || typeof l !== 'object') return null;
  if (typeof l.text !== 'string' || typeof l.from !== 'string' || !Number.isSafeInteger(l.ts) || l.ts < 0) return null;
  const kind = l.kind === 'notice' ? 'notice' : 'line';
  const line = { ts: l.ts, from: l.from.slice(0, 64), text: l.text.slice(0, MAX_TEXT), kind, plain: l.plain !== false };
  if (typeof l.id === 'string' && ID.test(l.id)) line.id = l.id;
  if (typeof l.local === 'string' && l.local.length <= 64) line.local = l.local;
  if (l.pending === true) line.pending = true;
  if (typeof l.note === 'string' && l.note) line.note = l.note.slice(0, MAX_NOTE);
  return line;
}

/** Longest reason kept for a line of ours not sent (characters). */
export const MAX_NOTE = 500;

/** A server id of a received line (a u64 in decimal). */
const ID = /^[0-9]{1,20}$/;

export class PrivateLog {
  /**
   * @param {string} account the account's nick (any case)
   * @param {Backend} backend
   * @param {{onError?: (e: Error) => void, schedule?: (fn: () => void) => void}} [o]
   */
  constructor(account, backend, { onError = () => {}, schedule = (fn) => setTimeout(fn, 0) } = {}) {
    this.account = nickKey(account);
    this.backend = backend;
    this.onError = onError;
    this.schedule = schedule;
    this.convs = new Map(); // peerKey → record
    this.dirty = new Set();
    this.scheduled = false;
    this.writing = Promise.resolve();
    this.lastUpdated = 0;
    /** Conversations whose stored copy holds every line added so far (unless also in `dirty`). */
    this.written = new Set();
  }

  /**
   * The stored conversations, oldest written first: [{peer, lines}] (lines oldest first).
   * Records that are not well formed are skipped.
   */
  async load() {
    const records = await this.backend.load(this.account);
    const out = [];
    for (const r of Array.isArray(records) ? records : []) {
      if (!r || typeof r.peer !== 'string' || nickError(r.peer) || !Array.isArray(r.lines)) continue;
      const lines = r.lines.slice(-MAX_LINES).map(checkLine).filter(Boolean);
      const record = { account: this.account, peerKey: nickKey(r.peer), peer: r.peer, updated: Number(r.updated) || 0, lines };
      this.convs.set(record.peerKey, record);
      this.written.add(record.peerKey);
      this.lastUpdated = Math.max(this.lastUpdated, record.updated);
      out.push(record);
    }
    out.sort((a, b) => a.updated - b.updated);
    for (const r of out) {
      this.convs.delete(r.peerKey);
      this.convs.set(r.peerKey, r);
    }
    return out.map((r) => ({ peer: r.peer, lines: r.lines.slice() }));
  }

  /** Whether the received line with server id `id` (BigInt, number or string) is kept for `peer`. */
  has(peer, id) {
    const r = this.convs.get(nickKey(peer));
    if (!r || id === undefined || id === null) return false;
    const want = String(id);
    return r.lines.some((l) => l.id === want);
  }

  /**
   * For a received line the server sends again: null if this log does not hold it (show it,
   * then `add` it); else a promise, as `add`'s, that resolves true once it is in storage (at
   * once if it is; else after writing it again: its first write failed).
   * @returns {Promise<boolean> | null}
   */
  repeat(peer, id) {
    if (!this.has(peer, id)) return null;
    const key = nickKey(peer);
    if (this.written.has(key) && !this.dirty.has(key)) return Promise.resolve(true);
    this.dirty.add(key);
    return this.#soon();
  }

  /**
   * Keeps one line of the conversation with `peer`: {ts (ms, Number or BigInt), from, text,
   * kind?: 'line'|'notice', id?: the server's id of a received line, plain?: false for an
   * end-to-end encrypted line (default true), local?: the page's name for a line of ours,
   * pending?: true until the server took it (see `settle`)}. Stored in the next task;
   * the promise resolves once that write is done: true if it was kept, false if the write
   * failed (the failure also goes to `onError`; the caller must then not acknowledge the line,
   * so the server sends it again). It never rejects.
   * @returns {Promise<boolean>}
   */
  add(peer, { ts, from, text, kind = 'line', id, plain = true, local, pending = false }) {
    const key = nickKey(peer);
    let r = this.convs.get(key);
    if (!r) {
      r = { account: this.account, peerKey: key, peer, updated: 0, lines: [] };
      this.convs.set(key, r);
    }
    const line = checkLine({ ts: Number(ts), from, text, kind, plain: plain !== false, id: id === undefined ? undefined : String(id), local, pending });
    if (!line) return Promise.resolve(false);
    r.lines.push(line);
    if (r.lines.length > MAX_LINES) r.lines.splice(0, r.lines.length - MAX_LINES);
    this.lastUpdated = Math.max(Date.now(), this.lastUpdated + 1); // strictly increasing
    r.updated = this.lastUpdated;
    // Re-inserted: the Map's order is the order of the last write, oldest first.
    this.convs.delete(key);
    this.convs.set(key, r);
    this.dirty.add(key);
    while (this.convs.size > MAX_CONVS) {
      const [oldest] = this.convs.keys();
      this.#forget(oldest);
    }
    return this.#soon();
  }

  /**
   * The line of ours named `local` in the conversation with `peer` is settled: the server took
   * it (`note` null), or it was not sent (`note` says why). A no-op if the line is gone.
   * @returns {Promise<boolean>} as `add`'s
   */
  settle(peer, local, note = null) {
    const key = nickKey(peer);
    const line = this.convs.get(key)?.lines.findLast((l) => l.local === local);
    if (!line || (!line.pending && !note)) return Promise.resolve(true);
    delete line.pending;
    if (note) line.note = String(note).slice(0, MAX_NOTE);
    this.dirty.add(key);
    return this.#soon();
  }

  /** Forgets the conversation with `peer` (the user closed it). */
  close(peer) {
    this.#forget(nickKey(peer));
  }

  /** Forgets every conversation of this account. */
  clear() {
    this.convs.clear();
    this.dirty.clear();
    this.written.clear();
    this.#chain(() => this.backend.clear(this.account));
  }

  /** Resolves once every write asked so far is done (for tests and page hide). */
  async settled() {
    if (this.scheduled) this.#write();
    await this.writing;
  }

  #forget(key) {
    this.convs.delete(key);
    this.dirty.delete(key);
    this.written.delete(key);
    this.#chain(() => this.backend.delete(this.account, key));
  }

  /** Schedules the next write (once per task); the promise settles when it is done. */
  #soon() {
    if (!this.scheduled) {
      this.scheduled = true;
      this.batch = new Promise((resolve) => {
        this.batchDone = resolve;
      });
      this.schedule(() => this.#write());
    }
    return this.batch;
  }

  #write() {
    if (!this.scheduled) return;
    this.scheduled = false;
    const done = this.batchDone;
    const records = [...this.dirty].map((k) => this.convs.get(k)).filter(Boolean);
    this.dirty.clear();
    let kept = true;
    for (const r of records) {
      const copy = { ...r, lines: r.lines.slice() };
      this.written.delete(r.peerKey);
      this.#chain(
        async () => {
          await this.backend.put(copy);
          if (!this.dirty.has(r.peerKey)) this.written.add(r.peerKey);
        },
        () => {
          kept = false;
          this.dirty.add(r.peerKey); // written again with the next line
        },
      );
    }
    this.writing.then(() => done(kept));
  }

  #chain(fn, failed = () => {}) {
    this.writing = this.writing.then(fn).catch((e) => {
      failed();
      this.onError(e);
    });
  }
}

// ---- IndexedDB ----

const openDb = database(DB_NAME, DB_VERSION, (db) => {
  if (!db.objectStoreNames.contains(STORE)) {
    const store = db.createObjectStore(STORE, { keyPath: ['account', 'peerKey'] });
    store.createIndex('account', 'account');
  }
});

const tx = (mode, fn) => transaction(openDb, [STORE], mode, (t) => fn(t.objectStore(STORE)));

/** The IndexedDB backend of a PrivateLog. */
export const indexedDbBackend = {
  load: (account) => tx('readonly', (s) => promisify(s.index('account').getAll(IDBKeyRange.only(account), MAX_CONVS * 2))),
  put: (record) => tx('readwrite', (s) => promisify(s.put(record))),
  delete: (account, peerKey) => tx('readwrite', (s) => promisify(s.delete([account, peerKey]))),
  clear: (account) => tx('readwrite', async (s) => {
    const keys = await promisify(s.index('account').getAllKeys(IDBKeyRange.only(account)));
    await Promise.all(keys.map((k) => promisify(s.delete(k))));
  }),
};
