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
//   `pending: true`; `waiting: true` too until it was given to the connection (waiting for the
//   peer's keys, or its end-to-end state's save); `note` says why it was not sent. A line still
//   pending at the next page load was never confirmed (the page closed first): it is shown so,
//   never as if it had gone, and one still waiting as not sent.
//
// Writes are coalesced: what is asked in one task (lines added, lines of ours settled) is
// written in the next, one transaction per conversation, so a line is stored within a few
// milliseconds of being shown. `add` returns a promise that settles when the line's write did:
// the page acknowledges a received line to the server only then, and a line the server sends
// again (a reload before the acknowledgement) is recognised by its id (`has`) and not shown twice.
//
// Two tabs of one account take turns owning it ("Use here"), each with its own copy of the
// conversations. A write never puts that copy: it is read-modify-write in ONE readwrite
// transaction: this tab's operations not yet stored (lines added, settles of its own lines) are
// applied to the record as stored (a received line whose server id is already there, or a line
// of ours whose `local` is, is not added twice), trimmed to MAX_LINES, and put. So a tab that
// wrote from a stale copy, or a write still in flight from the tab that lost the account, never
// removes what the other tab kept. `load` (again when the tab owns the account again) reads the
// stored conversations and applies what this tab has not stored yet.

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
 * What the log stores in; each method returns a Promise.
 *   load(account) → the account's records (any shape: checked here)
 *   update(account, peerKey, fn) → in ONE readwrite transaction: `fn(stored record or
 *     undefined)` (synchronous) returns the record to put, or null to put nothing; resolves with
 *     what the store holds after it (the record put, or the one stored)
 *   delete(account, peerKey, ifNotAfter?) deletes the record; with `ifNotAfter` (a number) only
 *     if its `updated` is not later (no other tab wrote to it since this tab saw it)
 *   clear(account)
 * @typedef {{load(a: string): Promise<any[]>, update(a: string, p: string, fn: (r: any) => object | null): Promise<any>, delete(a: string, p: string, ifNotAfter?: number): Promise<void>, clear(a: string): Promise<void>}} Backend
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
  if (l.waiting === true && line.pending) line.waiting = true;
  if (typeof l.note === 'string' && l.note) line.note = l.note.slice(0, MAX_NOTE);
  return line;
}

/** Longest reason kept for a line of ours not sent (characters). */
export const MAX_NOTE = 500;

/** A server id of a received line (a u64 in decimal). */
const ID = /^[0-9]{1,20}$/;

/** How many of a closed conversation's last received lines are remembered as closed. */
export const CLOSED_IDS = 20;


/** A line's name for recognising it in the record as stored: its server id, or our `local`. */
const nameOf = (l) => (l.id !== undefined ? `i${l.id}` : l.local !== undefined ? `l${l.local}` : null);

/**
 * Applies operations {add: [line], settle: [{local, note, out}]} to `lines` (changed in place):
 * a line whose name (server id, or our `local`) is there already is not added again; a settle
 * of a line not there is a no-op.
 */
function applyOps(lines, { add, settle }) {
  const names = new Set();
  for (const l of lines) {
    const n = nameOf(l);
    if (n) names.add(n);
  }
  for (const l of add) {
    const n = nameOf(l);
    if (n && names.has(n)) continue;
    if (n) names.add(n);
    lines.push({ ...l });
  }
  for (const s of settle) settleLine(lines.findLast((l) => l.local === s.local), s);
  if (lines.length > MAX_LINES) lines.splice(0, lines.length - MAX_LINES);
  return lines;
}

/**
 * A line of ours: given to the connection (`out`; `plain`, when said: whether it went NOT
 * end-to-end encrypted), or settled (taken, or `note`: why not sent).
 */
function settleLine(line, { note, out, plain }) {
  if (!line) return;
  delete line.waiting;
  if (typeof plain === 'boolean') line.plain = plain;
  if (out) return;
  delete line.pending;
  if (note) line.note = note;
}

/** A stored record's lines, checked (any shape: garbage is skipped). */
function storedLines(r) {
  return r && Array.isArray(r.lines) ? r.lines.slice(-MAX_LINES).map(checkLine).filter(Boolean) : [];
}

export class PrivateLog {
  /**
   * @param {string} account the account's nick (any case)
   * @param {Backend} backend
   * @param {{onError?: (e: Error) => void, schedule?: (fn: () => void) => void}} [o]
   */
  constructor(account, backend, { onError = () => {}, schedule = (fn) => setTimeout(fn, 0), marks = localMarks() } = {}) {
    this.account = nickKey(account);
    /** Where the closings are noted at once (synchronously): `get(name)`, `set(name, text)`. */
    this.marks = marks;
    /** peerKey → {ids: server ids of the last CLOSED_IDS received lines the conversation held
     *  (decimal strings), at: ms since the epoch}: conversations the user closed (see `closed`). */
    this.closings = readClosings(marks, this.account);
    this.backend = backend;
    this.onError = onError;
    this.schedule = schedule;
    /** This tab's view, peerKey → {peer, lines, stored: `updated` of the record as last seen}:
     *  the record as last read or written, with this tab's operations not stored yet applied.
     *  Oldest written first. */
    this.convs = new Map();
    /** Operations not stored yet and not being written: peerKey → {peer, add, settle, waiters}. */
    this.ops = new Map();
    /** Operations being written (taken from `ops`), in order: {key, op}. */
    this.flying = new Set();
    /** peerKey → times forgotten (closed): a failed write of before is not written again. */
    this.epochs = new Map();
    this.scheduled = false;
    this.writing = Promise.resolve();
  }

  /**
   * The stored conversations, oldest written first: [{peer, lines}] (lines oldest first), with
   * what this tab has not stored yet applied. Records that are not well formed are skipped.
   * Again (the tab owns the account again): what another tab kept meanwhile comes too.
   */
  async load() {
    await this.settled(); // what this tab asked so far is stored first
    const records = await this.backend.load(this.account);
    const found = [];
    for (const r of Array.isArray(records) ? records : []) {
      if (!r || typeof r.peer !== 'string' || nickError(r.peer) || !Array.isArray(r.lines)) continue;
      const peerKey = nickKey(r.peer);
      const stored = Number(r.updated) || 0;
      const closing = this.closings.get(peerKey);
      let lines = storedLines(r);
      if (closing) {
        // Closed, but its deletion may not have been stored (the page went at once): what the
        // conversation held then stays forgotten.
        if (stored <= closing.at) {
          this.#chain(() => this.backend.delete(this.account, peerKey, stored));
          continue;
        }
        // Lines of ours (no server id) carry this browser's time; received ones the server's.
        lines = lines.filter((l) => (l.id === undefined ? l.ts > closing.at : !this.#coveredBy(closing, l.id)));
      }
      found.push({ peerKey, peer: r.peer, stored, lines });
    }
    found.sort((a, b) => a.stored - b.stored);
    const before = this.convs;
    this.convs = new Map();
    for (const v of found) this.convs.set(v.peerKey, v);
    // Conversations with lines this tab has not stored yet (a write failed) stay.
    for (const key of this.#unstoredKeys()) {
      if (this.convs.has(key)) continue;
      const peer = before.get(key)?.peer ?? this.ops.get(key)?.peer ?? [...this.flying].find((f) => f.key === key)?.op.peer;
      this.convs.set(key, { peerKey: key, peer, stored: 0, lines: [] });
    }
    for (const v of this.convs.values()) this.#reapply(v);
    while (this.convs.size > MAX_CONVS) this.#evictOldest();
    return [...this.convs.values()].map((v) => ({ peer: v.peer, lines: v.lines.map((l) => ({ ...l })) }));
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
    const want = String(id);
    const holds = (op) => op.add.some((l) => l.id === want);
    for (const f of this.flying) {
      // Being written: once done, stored (true), or back in `ops` (written again, below).
      if (f.key === key && holds(f.op)) return this.writing.then(() => this.repeat(peer, id) ?? false);
    }
    const op = this.ops.get(key);
    if (!op || !holds(op)) return Promise.resolve(true);
    return this.#soon(op);
  }

  /**
   * Keeps one line of the conversation with `peer`: {ts (ms, Number or BigInt), from, text,
   * kind?: 'line'|'notice', id?: the server's id of a received line, plain?: false for an
   * end-to-end encrypted line (default true), local?: the page's name for a line of ours,
   * pending?: true until the server took it (see `settle`), waiting?: true until it is given
   * to the connection (see `sent`)}. Stored in the next task; the promise resolves once that
   * write is done: true if it was kept, false if the write failed (the failure also goes to
   * `onError`; the caller must then not acknowledge the line, so the server sends it again; the
   * line is written again with the next write). It never rejects.
   * @returns {Promise<boolean>}
   */
  add(peer, { ts, from, text, kind = 'line', id, plain = true, local, pending = false, waiting = false }) {
    const key = nickKey(peer);
    const line = checkLine({ ts: Number(ts), from, text, kind, plain: plain !== false, id: id === undefined ? undefined : String(id), local, pending, waiting });
    if (!line) return Promise.resolve(false);
    let v = this.convs.get(key);
    if (v) {
      this.convs.delete(key); // re-inserted: the Map's order is the order of the last write
    } else {
      v = { peerKey: key, peer, stored: 0, lines: [] };
    }
    this.convs.set(key, v);
    v.lines.push(line); // the page asked `has` first: a repeat is not added
    if (v.lines.length > MAX_LINES) v.lines.splice(0, v.lines.length - MAX_LINES);
    const op = this.#op(key, peer);
    op.add.push(line);
    while (this.convs.size > MAX_CONVS) this.#evictOldest();
    return this.#soon(op);
  }

  /**
   * The line of ours named `local` in the conversation with `peer` is settled: the server took
   * it (`note` null), or it was not sent (`note` says why). A no-op if the line is gone.
   * @returns {Promise<boolean>} as `add`'s
   */
  settle(peer, local, note = null) {
    return this.#settle(peer, { local, note: note ? String(note).slice(0, MAX_NOTE) : null, out: false });
  }

  /**
   * The line of ours named `local` was given to the connection (it may go out now): no longer
   * `waiting`, still pending until settled. `plain` (when given) is how it went: true NOT
   * end-to-end encrypted (a line typed after /insecure that waited behind a session being set
   * up), false encrypted; kept so, so that a reload shows it as it went.
   * @returns {Promise<boolean>} as `add`'s
   */
  sent(peer, local, plain) {
    const s = { local, note: null, out: true };
    if (typeof plain === 'boolean') s.plain = plain;
    return this.#settle(peer, s);
  }

  #settle(peer, s) {
    const key = nickKey(peer);
    const line = this.convs.get(key)?.lines.findLast((l) => l.local === s.local);
    if (!line) return Promise.resolve(true);
    const replain = typeof s.plain === 'boolean' && line.plain !== s.plain;
    if (!replain && (s.out ? !line.waiting : !line.pending && !line.waiting && !s.note)) return Promise.resolve(true);
    settleLine(line, s);
    const op = this.#op(key, peer);
    op.settle.push(s);
    return this.#soon(op);
  }

  /**
   * Whether the received line `id` from `peer` was in a conversation the user closed since: a
   * line the server or the end-to-end sessions give again (not acknowledged before the page
   * went) is then not shown again, only acknowledged. Only the last CLOSED_IDS received lines
   * can still be unacknowledged (each is acknowledged once kept, within milliseconds).
   */
  closed(peer, id) {
    return this.#coveredBy(this.closings.get(nickKey(peer)), id);
  }

  #coveredBy(closing, id) {
    return !!closing && id !== undefined && id !== null && closing.ids.includes(String(id));
  }

  /** Forgets the conversation with `peer` (the user closed it). The closing is noted at once,
   *  so a reload before the deletion is stored still keeps it closed. */
  close(peer) {
    const key = nickKey(peer);
    const ids = (this.convs.get(key)?.lines ?? []).filter((l) => l.id !== undefined).map((l) => l.id).slice(-CLOSED_IDS);
    this.closings.delete(key);
    this.closings.set(key, { ids, at: Date.now() });
    while (this.closings.size > MAX_CONVS) this.closings.delete(this.closings.keys().next().value);
    writeClosings(this.marks, this.account, this.closings);
    this.#forget(key);
    this.#chain(() => this.backend.delete(this.account, key));
  }

  /** Forgets every conversation of this account. */
  clear() {
    for (const key of [...this.convs.keys(), ...this.#unstoredKeys()]) this.#forget(key);
    this.#chain(() => this.backend.clear(this.account));
  }

  /** Resolves once every write asked so far is done (for tests and page hide). */
  async settled() {
    if (this.scheduled) this.#write();
    await this.writing;
  }

  /** Keys of conversations with operations not stored yet. */
  #unstoredKeys() {
    return new Set([...this.ops.keys(), ...[...this.flying].map((f) => f.key)]);
  }

  #op(key, peer) {
    let op = this.ops.get(key);
    if (!op) {
      op = { peer, add: [], settle: [], waiters: [] };
      this.ops.set(key, op);
    }
    return op;
  }

  /** The view of `v` again: as stored, with this tab's operations not stored yet applied. */
  #reapply(v) {
    for (const f of this.flying) if (f.key === v.peerKey) applyOps(v.lines, f.op);
    const op = this.ops.get(v.peerKey);
    if (op) applyOps(v.lines, op);
  }

  #forget(key) {
    this.convs.delete(key);
    const op = this.ops.get(key);
    this.ops.delete(key);
    for (const w of op?.waiters ?? []) w(false);
    this.epochs.set(key, (this.epochs.get(key) ?? 0) + 1);
  }

  /** Over MAX_CONVS: the conversation written longest ago goes, here and in storage unless
   *  another tab wrote to it since this tab saw it. */
  #evictOldest() {
    const [key, v] = this.convs.entries().next().value;
    this.#forget(key);
    this.#chain(() => this.backend.delete(this.account, key, v.stored));
  }

  /** Schedules the next write (once per task); resolves as `add`'s for the operations `op`. */
  #soon(op) {
    const done = new Promise((resolve) => op.waiters.push(resolve));
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(() => this.#write());
    }
    return done;
  }

  #write() {
    if (!this.scheduled) return;
    this.scheduled = false;
    const taken = [...this.ops];
    this.ops.clear();
    for (const [key, op] of taken) {
      const f = { key, op, epoch: this.epochs.get(key) ?? 0 };
      this.flying.add(f);
      this.#chain(
        async () => {
          const stored = await this.backend.update(this.account, key, (r) => this.#merged(r, key, op));
          this.flying.delete(f);
          const v = this.convs.get(key);
          if (v && f.epoch === (this.epochs.get(key) ?? 0)) {
            // The view follows the store (another tab's lines come with it).
            v.stored = Number(stored?.updated) || 0;
            v.lines = storedLines(stored);
            this.#reapply(v);
          }
          for (const w of op.waiters) w(true);
        },
        () => {
          this.flying.delete(f);
          if (f.epoch === (this.epochs.get(key) ?? 0)) {
            // Written again with the next write, before what was asked since.
            const now = this.ops.get(key);
            this.ops.delete(key);
            this.ops.set(key, {
              peer: op.peer,
              add: [...op.add, ...(now?.add ?? [])],
              settle: [...op.settle, ...(now?.settle ?? [])],
              waiters: now?.waiters ?? [],
            });
          }
          for (const w of op.waiters) w(false);
        },
      );
    }
  }

  /** The record to put: the one stored with `op` applied (null: nothing to put). */
  #merged(stored, key, op) {
    const exists = stored && typeof stored === 'object';
    if (!exists && op.add.length === 0) return null; // settles of a conversation gone
    const lines = applyOps(storedLines(stored), op);
    const peer = exists && typeof stored.peer === 'string' && !nickError(stored.peer) ? stored.peer : op.peer;
    const updated = Math.max(Date.now(), (exists ? Number(stored.updated) || 0 : 0) + 1);
    return { account: this.account, peerKey: key, peer, updated, lines };
  }

  #chain(fn, failed = () => {}) {
    this.writing = this.writing.then(fn).catch((e) => {
      failed();
      this.onError(e);
    });
  }
}

// ---- Closings (localStorage: written synchronously, so they outlast an immediate reload) ----

/** localStorage, or a map in memory where there is none (node's tests). */
function localMarks() {
  try {
    if (globalThis.localStorage) {
      return { get: (k) => globalThis.localStorage.getItem(k), set: (k, v) => globalThis.localStorage.setItem(k, v) };
    }
  } catch {
    // Storage forbidden (a sandboxed frame): kept in memory only.
  }
  const m = new Map();
  return { get: (k) => m.get(k) ?? null, set: (k, v) => m.set(k, v) };
}

const closingsName = (account) => `mm-web-closed:${account}`;

/** The closings noted for `account` (any shape: garbage is skipped). */
function readClosings(marks, account) {
  const out = new Map();
  let data;
  try {
    data = JSON.parse(marks.get(closingsName(account)) ?? '[]');
  } catch {
    return out;
  }
  for (const c of Array.isArray(data) ? data.slice(-MAX_CONVS) : []) {
    if (!Array.isArray(c) || typeof c[0] !== 'string' || nickError(c[0])) continue;
    const ids = Array.isArray(c[1]) ? c[1].slice(-CLOSED_IDS).filter((i) => typeof i === 'string' && ID.test(i)) : [];
    if (!Number.isSafeInteger(c[2])) continue;
    out.set(nickKey(c[0]), { ids, at: c[2] });
  }
  return out;
}

function writeClosings(marks, account, closings) {
  try {
    marks.set(closingsName(account), JSON.stringify([...closings].map(([k, c]) => [k, c.ids, c.at])));
  } catch {
    // Full or forbidden: the deletion in IndexedDB still happens.
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
  update: (account, peerKey, fn) => tx('readwrite', async (s) => {
    const stored = await promisify(s.get([account, peerKey]));
    const next = fn(stored);
    if (next) await promisify(s.put(next));
    return next ?? stored;
  }),
  delete: (account, peerKey, ifNotAfter) => tx('readwrite', async (s) => {
    if (ifNotAfter !== undefined) {
      const stored = await promisify(s.get([account, peerKey]));
      if (stored && (Number(stored.updated) || 0) > ifNotAfter) return;
    }
    await promisify(s.delete([account, peerKey]));
  }),
  clear: (account) => tx('readwrite', async (s) => {
    const keys = await promisify(s.index('account').getAllKeys(IDBKeyRange.only(account)));
    await Promise.all(keys.map((k) => promisify(s.delete(k))));
  }),
};
