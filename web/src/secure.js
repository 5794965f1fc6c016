// End-to-end encryption in the page: the account's end-to-end record in this browser, the one
// tab that may write it, and the driver that carries out what the sessions (e2e/sessions.js,
// pure) ask, strictly in order.
//
// Storage (IndexedDB database `mm-web-e2e`, version 1; apart from `mm-web` (the account key)
// and `mm-web-private` (the conversations kept)):
//   homes  keyPath `nickKey`:
//     { nickKey, nick, identity: Uint8Array(32), state: Sessions.toState(), writer: string,
//       saved: ms since the epoch }
//   Made at the first use of an account in this browser (a new identity). A damaged record
//   stops end-to-end for that account with a visible error; it is never replaced.
//
// The identity is an X25519 secret from crypto.getRandomValues, kept as bytes in the record:
// XEdDSA signs with the X25519 scalar itself, which WebCrypto's non-extractable keys never
// hand out, so a CryptoKey cannot be used for it. (The account's login key, an ECDSA key in
// account.js, stays a non-extractable CryptoKey.)
//
// Two tabs never fork the state: the tab that owns the account (tablock.js) writes a fresh
// random `writer` token into the record when it opens it, and every save runs in a readwrite
// transaction that first checks the stored token is still its own, and writes nothing
// otherwise (HomeError 'Lost': that tab stops using its sessions). "Use here" opens the record
// again (a new token) and so continues from the state the other tab saved.

import { nickKey } from './protocol.js';
import { promisify, database, transaction } from './idb.js';
import { equalBytes } from './e2e/errors.js';

export const DB_NAME = 'mm-web-e2e';
const DB_VERSION = 1;
const STORE = 'homes';
/** Longest wait for one save or open of the record, milliseconds. */
export const STORAGE_TIMEOUT_MS = 10_000;
/** Most lists of actions waiting in the runner at once (behind a slow or stuck storage). */
export const MAX_PENDING_RUNS = 4096;
/** Relay ids remembered as handled (saved, shown, kept), for repeats after a reconnection. */
const MAX_HANDLED = 4096;
/** Longest sleep between two looks at the sessions' timers, milliseconds. */
const MAX_SLEEP_MS = 60 * 60 * 1000;
/**
 * Longest stretch of end-to-end work (relays decrypted one after the other; a session start is
 * ~11 ms of cryptography) before the runner lets the page take a turn, milliseconds.
 */
export const SLICE_MS = 8;

/**
 * Resolves in a later task of the event loop (never a microtask): input and drawing come first.
 * scheduler.yield where the browser has it, else a MessageChannel message (not clamped to 4 ms
 * as nested timers are), else a timer.
 */
export function nextTask() {
  if (typeof globalThis.scheduler?.yield === 'function') return globalThis.scheduler.yield();
  if (typeof MessageChannel === 'function') {
    return new Promise((resolve) => {
      const channel = new MessageChannel();
      channel.port1.onmessage = () => {
        channel.port1.close();
        resolve();
      };
      channel.port2.postMessage(null);
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** What the record's loss while open says (it is gone from the browser, not taken by a tab). */
export const DELETED_WORDS = 'the end-to-end keys were deleted from this browser';

/**
 * Why the record cannot be used: `kind` 'Damaged' (the stored record is not one: end-to-end
 * stops for this account), 'Lost' (another tab took the record over: this tab's sessions are
 * dropped), 'Deleted' (the record is gone: the site's data was cleared, the database deleted),
 * 'Storage' (the browser's storage refused or did not answer).
 */
export class HomeError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'HomeError';
    this.kind = kind;
  }
}

/** A random token of 16 bytes, hex. */
function token(rng) {
  return Array.from(rng(16), (b) => b.toString(16).padStart(2, '0')).join('');
}

function timeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new HomeError('Storage', `the browser storage did not ${what} in time`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Where records are kept. Each method returns a Promise:
 *   get(nickKey)                      → the stored record, or undefined
 *   claim(nickKey, fresh, writer)     → the stored record with `writer` now written into it;
 *                                       `fresh` is stored if there is none yet
 *   save(nickKey, writer, state, saved) stores the state if the stored writer is `writer`,
 *                                       else writes nothing and rejects with HomeError 'Lost'
 *                                       ('Deleted' if there is no record any more)
 * @typedef {{get(k: string): Promise<any>, claim(k: string, fresh: object|null, w: string): Promise<any>, save(k: string, w: string, s: object, saved: number): Promise<void>}} Homes
 */

/** Records in memory (structured copies, as IndexedDB keeps them): for tests. */
export function memoryHomes() {
  const rows = new Map();
  return {
    rows,
    async get(key) {
      return rows.has(key) ? structuredClone(rows.get(key)) : undefined;
    },
    async claim(key, fresh, writer) {
      let r = rows.get(key);
      if (r === undefined) {
        if (!fresh) throw new HomeError('Deleted', DELETED_WORDS);
        r = structuredClone(fresh);
      } else if (!r || typeof r !== 'object') {
        throw new HomeError('Damaged', 'the stored end-to-end record is not one');
      }
      r.writer = writer;
      rows.set(key, r);
      return structuredClone(r);
    },
    async save(key, writer, state, saved) {
      const r = rows.get(key);
      if (r === undefined) throw new HomeError('Deleted', DELETED_WORDS);
      if (!r || r.writer !== writer) throw new HomeError('Lost', 'another tab took over this account\'s end-to-end state');
      rows.set(key, { ...r, state: structuredClone(state), saved });
    },
  };
}

const openDb = database(DB_NAME, DB_VERSION, (db) => {
  if (!db.objectStoreNames.contains(STORE)) db.createObjectStore(STORE, { keyPath: 'nickKey' });
});

// Strict durability: a save is on disk before what it enables goes out (a save lost in a crash
// could make the page encrypt twice under one key).
const tx = (mode, fn) => transaction(openDb, [STORE], mode, (t) => fn(t.objectStore(STORE), t), mode === 'readwrite' ? { durability: 'strict' } : undefined);

/** The IndexedDB records (database `mm-web-e2e`, store `homes`). */
export const indexedDbHomes = {
  get: (key) => tx('readonly', (s) => promisify(s.get(key))),
  claim: (key, fresh, writer) => tx('readwrite', async (s, t) => {
    let r = await promisify(s.get(key));
    if (r === undefined) {
      if (!fresh) {
        t.abort();
        throw new HomeError('Deleted', DELETED_WORDS);
      }
      r = fresh;
    } else if (!r || typeof r !== 'object') {
      t.abort();
      throw new HomeError('Damaged', 'the stored end-to-end record is not one');
    }
    r.writer = writer;
    await promisify(s.put(r));
    return r;
  }),
  save: (key, writer, state, saved) => tx('readwrite', async (s, t) => {
    const r = await promisify(s.get(key));
    if (r === undefined) {
      t.abort();
      throw new HomeError('Deleted', DELETED_WORDS);
    }
    if (!r || r.writer !== writer) {
      t.abort();
      throw new HomeError('Lost', 'another tab took over this account\'s end-to-end state');
    }
    r.state = state;
    r.saved = saved;
    await promisify(s.put(r));
  }),
};

/**
 * The account's end-to-end record opened by this tab: its sessions and the token its saves
 * must match.
 */
export class Home {
  /**
   * Opens (or makes, at the first use of the account in this browser) the record of `nick`,
   * writing a new writer token: from now on only this Home's saves succeed.
   * @param {object} o
   * @param {string} o.nick
   * @param {Homes} o.homes
   * @param {{Sessions: any}} o.e2e the sessions module
   * @param {(n: number) => Uint8Array} o.rng
   * @param {object} [o.config]
   * @returns {Promise<Home>} rejects with HomeError ('Damaged', 'Storage')
   */
  static async open({ nick, homes, e2e, rng, config, now = () => Date.now() }) {
    const key = nickKey(nick);
    const writer = token(rng);
    let existing;
    try {
      existing = await timeout(homes.get(key), STORAGE_TIMEOUT_MS, 'answer');
    } catch (e) {
      throw e instanceof HomeError ? e : new HomeError('Storage', `the browser storage cannot be read: ${e?.message ?? e}`);
    }
    let fresh = null;
    let made = null;
    if (existing === undefined) {
      const identity = rng(32);
      made = e2e.Sessions.create({ me: nick, identitySecret: identity, config, rng });
      fresh = { nickKey: key, nick, identity, state: made.toState(), writer, saved: now() };
    }
    let record;
    try {
      record = await timeout(homes.claim(key, fresh, writer), STORAGE_TIMEOUT_MS, 'answer');
    } catch (e) {
      throw e instanceof HomeError ? e : new HomeError('Storage', `the browser storage refused to keep the end-to-end keys: ${e?.message ?? e}`);
    }
    let sessions;
    if (made && record.identity instanceof Uint8Array && equalBytes(record.identity, fresh.identity)) {
      sessions = made;
    } else {
      if (!(record.identity instanceof Uint8Array) || record.identity.length !== 32) {
        throw new HomeError('Damaged', 'the end-to-end record kept in this browser is damaged (its identity key is missing)');
      }
      try {
        sessions = e2e.Sessions.restore({ me: nick, identitySecret: record.identity, config, rng, state: record.state });
      } catch (e) {
        throw new HomeError('Damaged', `the end-to-end record kept in this browser is damaged (${e?.message ?? e})`);
      }
    }
    return new Home({ key, nick, homes, writer, sessions, now, created: sessions === made });
  }

  constructor({ key, nick, homes, writer, sessions, now, created = false }) {
    this.key = key;
    /** The identity was made by this open (there was no record): a new end-to-end key. */
    this.created = created;
    this.nick = nick;
    this.homes = homes;
    this.writer = writer;
    this.sessions = sessions;
    this.now = now;
  }

  /** Saves the sessions' state now; rejects with HomeError ('Lost', 'Storage'). */
  async save() {
    const state = this.sessions.toState();
    try {
      await timeout(this.homes.save(this.key, this.writer, state, this.now()), STORAGE_TIMEOUT_MS, 'save in time');
    } catch (e) {
      throw e instanceof HomeError ? e : new HomeError('Storage', `${e?.name ?? 'error'}${e?.message ? `: ${e.message}` : ''}`);
    }
  }
}


/**
 * Carries out lists of actions one after the other (the user's work before relays not started
 * yet; each in the order given): a `Persist` is awaited before anything after it (a payload goes out only once the
 * state that encrypted it is stored; a message is shown only once the state that decrypted it
 * is). When a save fails, nothing after it in that list is carried out.
 *
 * A list may also be given as a function that makes it (a relay to decrypt): it is called when
 * its turn comes, and after SLICE_MS of such work in one go the runner waits for a later task
 * first, so that a burst of relays (a flood of session starts) never holds the page.
 */
export class ActionRunner {
  /**
   * @param {object} o
   * @param {() => Promise<void>} o.save
   * @param {(action: object, ctx: object) => any} o.perform  carries out any other action;
   *   what it returns (a promise, for a line kept) is collected
   * @param {() => boolean} [o.alive] false once the sessions are dropped: nothing more is done
   */
  constructor({ save, perform, alive = () => true, maxPending = MAX_PENDING_RUNS, clock = () => performance.now(),
    yieldTask = nextTask }) {
    this.save = save;
    this.perform = perform;
    this.alive = alive;
    /** Work not started: the user's (lists) before relays' (functions), each lane in order. */
    this.user = [];
    this.relays = [];
    this.pumping = false;
    this.idleWaiters = [];
    this.pending = 0;
    this.maxPending = maxPending;
    this.clock = clock;
    this.yieldTask = yieldTask;
    this.sliceStart = clock(); // when the current stretch of work in one task began
  }

  /**
   * Queues `actions` (a list, or a function that makes it when its turn comes) behind those
   * given before. Lists (what the user did, worked out already) go before functions not started
   * yet (relays still to decrypt): the user's line never waits behind a burst of relays. Resolves
   * (never rejects) with `{ok, results, dropped, error}`: ok false if a save failed or the
   * sessions were dropped (`dropped`: the actions not carried out; `error`: the save's error,
   * or a HomeError 'Busy' when more than `maxPending` runs wait).
   */
  run(actions, ctx = {}) {
    if (this.pending >= this.maxPending) {
      // Bounded: the storage does not keep up, or more relays came at once than are taken.
      const error = new HomeError('Busy', 'more end-to-end work arrived at once than this page takes');
      return Promise.resolve({ ok: false, results: [], dropped: typeof actions === 'function' ? [] : actions ?? [], error });
    }
    if (this.pending === 0) this.sliceStart = this.clock(); // idle until now: a new task
    this.pending += 1;
    return new Promise((resolve) => {
      (typeof actions === 'function' ? this.relays : this.user).push({ actions, ctx, resolve });
      this.#pump();
    });
  }

  /** Resolves once no work is waiting or being done (also work queued meanwhile). */
  async idle() {
    while (this.pumping || this.user.length > 0 || this.relays.length > 0) {
      await new Promise((resolve) => {
        this.idleWaiters.push(resolve);
      });
    }
  }

  async #pump() {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (;;) {
        const next = this.user.shift() ?? this.relays.shift();
        if (!next) break;
        let outcome;
        try {
          outcome = await this.#make(next.actions, next.ctx);
        } catch (error) {
          outcome = { ok: false, results: [], dropped: [], error };
        }
        this.pending -= 1;
        next.resolve(outcome);
      }
    } finally {
      this.pumping = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  async #make(actions, ctx) {
    if (typeof actions !== 'function') return this.#carry(actions ?? [], ctx);
    if (this.clock() - this.sliceStart >= SLICE_MS) {
      await this.yieldTask();
      this.sliceStart = this.clock();
    }
    if (!this.alive()) return { ok: false, results: [], dropped: [], error: null };
    let made;
    try {
      made = actions();
    } catch (error) {
      console.error('web client: end-to-end work failed', error);
      made = [];
    }
    return this.#carry(made ?? [], ctx);
  }

  async #carry(actions, ctx) {
    const results = [];
    for (let i = 0; i < actions.length; i++) {
      const a = actions[i];
      if (!this.alive()) return { ok: false, results, dropped: actions.slice(i), error: null };
      if (a.type === 'Persist') {
        try {
          await this.save();
        } catch (error) {
          return { ok: false, results, dropped: actions.slice(i + 1), error };
        }
        continue;
      }
      try {
        results.push(this.perform(a, ctx));
      } catch (error) {
        console.error('web client: an end-to-end action failed', error);
      }
    }
    return { ok: true, results, dropped: [], error: null };
  }
}

const isPromise = (x) => x !== null && typeof x === 'object' && typeof x.then === 'function';

/**
 * The page's end-to-end driver: opens the record, feeds the sessions what the server and the
 * user say, and carries out what they ask through the connection and the chat view.
 *
 * `ui` (the chat view) provides:
 *   sendWire(msg, line)      send a Relay or Private through the connection for the chat's
 *                            line tag `line` (null: a line of no text of the user's)
 *   secureMessage(event, ctx) show a decrypted Message (ctx.ts: the server time); returns the
 *                            promise of keeping it (true once kept)
 *   secureEvent(event)       show any other event (marks its `unsent` lines)
 *   securityChanged()        the status of some conversation may have changed
 *   problem(text)            say plainly what went wrong (a save, the record, another tab)
 *   announce(text)           say something the user should know that is not a fault (new keys)
 *   cannotRead(msg, why)     a Relay arrived while end-to-end is not available here
 *   notSent(line, words)     a line of the user's was not sent (its save failed)
 *   linesDropped(words)      the sessions are dropped: every line still waiting in them is not sent
 */
export class Secure {
  /**
   * @param {object} o
   * @param {string} o.nick
   * @param {object} o.e2e       the sessions module: {Sessions, Refused, failureWords, isBlocking}
   * @param {Homes} o.homes
   * @param {(n: number) => Uint8Array} o.rng
   * @param {() => import('./connection.js').Connection | null} o.connection
   * @param {object} o.ui
   * @param {() => number} [o.clock]  monotonic milliseconds
   * @param {boolean} [o.newAccount] the account was made in this page just now: its first
   *   end-to-end key is expected to be made, not a sign that the old one was deleted
   */
  constructor({ nick, e2e, homes, rng, connection, ui, config, clock = () => performance.now(),
    wallClock = () => Date.now(), newAccount = false }) {
    this.nick = nick;
    this.newAccount = newAccount;
    this.e2e = e2e;
    this.homes = homes;
    this.rng = rng;
    this.connection = connection;
    this.ui = ui;
    this.config = config;
    this.clock = clock;
    this.wallClock = wallClock;
    this.home = null;
    this.unavailable = 'not opened yet';
    this.generation = 0;
    this.runner = null;
    this.timer = null;
    this.opening = null;
    this.unsaved = false; // a save failed, and none worked since
    this.handled = new Set(); // relay ids (decimal strings) handled in this page, ≤ MAX_HANDLED
  }

  /**
   * Whether the Relay `id` was handled in this page (its state saved, what it showed kept):
   * sent again after a reconnection, it is acknowledged again, not decrypted again (which
   * would say "replayed").
   */
  wasHandled(id) {
    return this.handled.has(String(id));
  }

  /** The sessions, or null while end-to-end is not available in this tab. */
  get sessions() {
    return this.home?.sessions ?? null;
  }

  /** Words for the sessions module's failures, for render.js. */
  get words() {
    return { failureWords: this.e2e.failureWords, isBlocking: this.e2e.isBlocking };
  }

  /**
   * Opens the record again (this tab owns the account now): a new writer token, the state as
   * last saved by whichever tab. Resolves true if end-to-end is available.
   */
  open() {
    this.drop(this.unavailable);
    const generation = this.generation;
    this.unavailable = 'opening the keys kept in this browser';
    const opening = Home.open({ nick: this.nick, homes: this.homes, e2e: this.e2e, rng: this.rng, config: this.config, now: this.wallClock })
      .then((home) => {
        if (generation !== this.generation) return false;
        this.home = home;
        this.unavailable = '';
        if (home.created) this.#newKeys();
        this.newAccount = false;
        this.runner = new ActionRunner({
          save: () => home.save(),
          perform: (a, ctx) => this.#perform(a, ctx, generation),
          alive: () => generation === this.generation,
        });
        this.ui.securityChanged();
        return true;
      }, (e) => {
        if (generation !== this.generation) return false;
        this.unavailable = e?.message ?? String(e);
        this.ui.problem(`End-to-end encryption is stopped in this tab: ${this.unavailable}. Private lines are not sent until it works again.`);
        this.ui.securityChanged();
        return false;
      });
    this.opening = opening;
    return opening;
  }

  /**
   * A new identity was made (there was no record): said, as mm says it when its home is new
   * (client/src/cli.rs); for an account used before in this browser, its keys were deleted,
   * and everyone it talked to sees a key change.
   */
  #newKeys() {
    if (this.newAccount) {
      this.ui.announce?.('created your end-to-end identity key in this browser (keep it private: it stays in this browser only; clearing this site\'s data deletes it)');
      return;
    }
    this.ui.problem('The end-to-end keys were deleted from this browser (this site\'s data was cleared, or another program removed them): new keys were made. '
      + 'Everyone you talked to before sees that your key CHANGED, and has to accept the new one; messages sent to your old keys cannot be read here.');
  }

  /** Stops using the sessions (another tab owns the account now, or the record was lost). */
  drop(why = 'another tab uses this account') {
    // Texts waiting for keys live only in these sessions (they are not saved): not sent.
    if (this.home) this.ui.linesDropped?.(`not sent: end-to-end encryption stopped in this tab (${why})`);
    this.generation += 1;
    clearTimeout(this.timer);
    this.timer = null;
    this.home = null;
    this.runner = null;
    this.unavailable = why;
    this.ui.securityChanged();
  }

  /** The status of the conversation with `peer`, or null if end-to-end is not available. */
  status(peer) {
    return this.sessions?.status(peer) ?? null;
  }

  /** Runs `actions` and re-arms the timer; resolves with the runner's outcome. */
  #run(actions, ctx = {}) {
    const runner = this.runner;
    if (!runner) return Promise.resolve({ ok: false, results: [], dropped: typeof actions === 'function' ? [] : actions ?? [], error: null });
    const generation = this.generation;
    const done = runner.run(actions, ctx).then((outcome) => {
      if (!outcome.ok && outcome.error && generation === this.generation) this.#saveFailed(outcome);
      else if (outcome.ok && this.unsaved && generation === this.generation && this.sessions) {
        // Saving works again: messages released at /accept-key that could not be shown then
        // (the server will not send them again) are shown now.
        this.unsaved = false;
        const released = this.sessions.showReleased(this.clock());
        if (released.length > 0) this.#run(released);
      }
      if (generation === this.generation) this.#arm();
      this.ui.securityChanged();
      return outcome;
    });
    this.ui.securityChanged();
    return done;
  }

  #saveFailed({ error, dropped }) {
    this.unsaved = true;
    for (const a of dropped) {
      if (a.type === 'Event' && a.event.kind === 'Message') this.sessions?.notShown(a.event.peer, a.event.id);
      if (a.type === 'Send' || a.type === 'SendPlain') {
        if (a.line !== null && a.line !== undefined) {
          this.ui.notSent?.(a.line, error?.kind === 'Busy' ? 'not sent: too much end-to-end work was waiting in this page; send it again' : 'not sent: the end-to-end state could not be saved in this browser');
        }
      }
    }
    if (error?.kind === 'Deleted') {
      this.drop(DELETED_WORDS);
      this.ui.problem('The end-to-end keys were deleted from this browser (this site\'s data was cleared, or another program removed them): this tab stopped using them and sends no private line. '
        + 'Reloading the page makes new keys; everyone you talked to then sees that your key CHANGED.');
      return;
    }
    if (error?.kind === 'Lost') {
      this.drop('another tab took over this account');
      this.ui.problem('Another tab took over this account\'s end-to-end keys: this tab stopped using them (Use here takes them back).');
      return;
    }
    if (error?.kind === 'Busy') {
      // Not the storage: a burst (a flood of session starts, or a storage too slow for it).
      this.ui.problem(`More end-to-end work arrived at once than this page takes (${MAX_PENDING_RUNS} waiting): what did not fit was not sent or shown; a message received is not acknowledged, so the server sends it again at the next login`);
      return;
    }
    this.ui.problem(`The end-to-end state could not be saved in this browser (${error?.message ?? error}): what needed it was not sent or shown; a message received is shown when the server sends it again`);
  }

  #arm() {
    clearTimeout(this.timer);
    this.timer = null;
    const s = this.sessions;
    if (!s) return;
    const at = s.pollTimeout();
    if (at === null || at === undefined) return;
    const generation = this.generation;
    const delay = Math.min(MAX_SLEEP_MS, Math.max(0, at - this.clock()));
    this.timer = setTimeout(() => {
      this.timer = null;
      if (generation !== this.generation || !this.sessions) return;
      this.#run(this.sessions.tick(this.clock()));
    }, delay);
  }

  #perform(a, ctx, generation) {
    if (generation !== this.generation) return undefined;
    const conn = this.connection();
    switch (a.type) {
      case 'Send':
        return this.ui.sendWire({ type: 'Relay', to: a.to, payload: a.payload }, a.line ?? null);
      case 'SendPlain':
        return this.ui.sendWire({ type: 'Private', to: a.to, text: a.text }, a.line ?? null);
      case 'Publish':
        conn?.send({ type: 'PublishKeys', keys: a.upload });
        return undefined;
      case 'FetchBundle':
        // Not connected: the sessions ask again at the next login.
        conn?.send({ type: 'FetchBundle', nick: a.nick });
        return undefined;
      case 'Event':
        if (a.event.kind === 'Message') {
          const kept = this.ui.secureMessage(a.event, ctx);
          // Kept: a message released at /accept-key is no longer saved as held (until then a
          // reload shows it again, from the text the state kept).
          const sessions = this.sessions;
          Promise.resolve(kept).then((ok) => {
            if (ok && this.sessions === sessions) sessions.shown(a.event.peer, a.event.id);
          }, () => {});
          return kept;
        }
        return this.ui.secureEvent(a.event);
      default:
        return undefined;
    }
  }

  // ---- from the connection ----

  /** Logged in (the welcome): publishes keys, asks again for the keys still wanted. */
  login() {
    if (!this.sessions) return Promise.resolve(null);
    return this.#run(this.sessions.login(this.clock(), this.wallClock()));
  }

  /** A `keys` event of the core. */
  keys(msg) {
    const s = this.sessions;
    if (!s) return Promise.resolve(null);
    switch (msg.type) {
      case 'KeysPublished':
        return this.#run(s.published(msg.one_time, msg.other_device));
      case 'KeysRefused':
        s.publishRefused();
        this.ui.problem(`the server did not take your end-to-end keys (${msg.detail}; code ${msg.code}): people who never wrote to you cannot start a secure conversation with you until your next login`);
        return Promise.resolve(null);
      case 'PrekeysLow':
        return this.#run(s.prekeysLow(msg.one_time));
      case 'Bundle':
        return this.#run(s.bundle(msg.nick, msg.answer, this.clock()));
      default:
        return Promise.resolve(null);
    }
  }

  /**
   * A Relay (`msg`: {id, ts, from, payload}). Resolves true once the state that decrypted it
   * is saved and what it showed is kept (then the connection acknowledges it); false if
   * either failed (not acknowledged: the server sends it again at the next login).
   */
  async relay(msg) {
    const s = this.sessions;
    if (!s) {
      this.ui.cannotRead(msg, this.unavailable);
      return false;
    }
    // Decrypted when its turn comes in the runner, which lets the page take turns in a burst.
    const outcome = await this.#run(() => s.receive(msg.from, msg.id, msg.payload, this.clock()), { ts: msg.ts, id: msg.id, from: msg.from });
    if (!outcome.ok) return false;
    const kept = await Promise.all(outcome.results.filter(isPromise).map((p) => p.then((ok) => ok !== false, () => false)));
    if (!kept.every(Boolean)) return false;
    this.handled.add(String(msg.id));
    if (this.handled.size > MAX_HANDLED) this.handled.delete(this.handled.values().next().value);
    return true;
  }

  /** The core sent Received {up_to}. */
  acknowledged(upTo) {
    this.sessions?.acknowledged(upTo);
  }

  /** The connection ended (reconnecting or stopped). */
  disconnected() {
    this.sessions?.disconnected();
  }

  // ---- from the user ----

  /**
   * A private text to `peer` for the chat's line tag `line`. Returns `{kind, message?}`:
   *   Secure      encrypted; its Send follows once the state is saved
   *   Queued      waiting for the peer's keys
   *   QueuedPlain waiting behind lines being set up, to be sent plain (the user said /insecure)
   *   Plain       the conversation is plain: the caller sends a Private itself
   *   Refused     nothing is sent: `message` says why
   */
  sendText(peer, text, line) {
    const s = this.sessions;
    if (!s) return { kind: 'Refused', message: `end-to-end encryption is not available in this tab (${this.unavailable}): nothing was sent` };
    let r;
    try {
      r = s.sendText(peer, text, line, this.clock());
    } catch (e) {
      if (e instanceof this.e2e.Refused) return { kind: 'Refused', message: e.message };
      throw e;
    }
    if (r.actions) this.#run(r.actions);
    else this.ui.securityChanged();
    return { kind: r.kind };
  }

  /**
   * An end-to-end command: 'secure' | 'insecure' | 'verify' | 'verified' | 'accept-key'.
   * Returns null, or `{refused: message}`, or for 'verify' `{number, newKey}`.
   */
  command(which, peer) {
    const s = this.sessions;
    if (!s) return { refused: `end-to-end encryption is not available in this tab (${this.unavailable})` };
    const now = this.clock();
    try {
      switch (which) {
        case 'secure':
          this.#run(s.start(peer, now));
          return null;
        case 'insecure':
          this.#run(s.end(peer));
          return null;
        case 'accept-key':
          this.#run(s.acceptKey(peer, now));
          return null;
        case 'verified':
          this.#run(s.markVerified(peer, now));
          return null;
        case 'verify':
          return { number: s.safetyNumber(peer), newKey: s.safetyNumberIsOfNewKey(peer) };
        default:
          return { refused: `unknown end-to-end command ${which}` };
      }
    } catch (e) {
      if (e instanceof this.e2e.Refused) return { refused: e.message };
      throw e;
    }
  }

  /** Resolves once every action given so far is carried out (tests, page hide). */
  settled() {
    return this.runner ? this.runner.idle() : Promise.resolve();
  }
}

/** The page's random bytes: crypto.getRandomValues (at most 65,536 bytes a call). */
export function browserRng(n) {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) crypto.getRandomValues(out.subarray(at, Math.min(n, at + 65536)));
  return out;
}
