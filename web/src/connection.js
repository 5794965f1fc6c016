// The driver: one WebSocket at a time (wss://HOST/ws, binary messages, one postcard payload
// each), a Core per connection, reconnecting with backoff (1, 2, 4 … 30 s, the jitter taking up to
// a quarter off each wait, never adding to it: 30 s is the longest) unless retrying cannot help. It owns the user's lines across connections: a line typed while
// disconnected waits and is sent after the next login, in order, shown as pending until the
// server answers; a line the server refused carries the server's reason. None is ever
// dropped silently: a line written to a connection that died before its answer is shown as
// "not confirmed".
//
// Line states, reported with `{kind: 'lineState', line, state, detail, code}` (code: the
// server's error code of a refusal):
//   waiting    not written yet (disconnected, or paced)
//   sent       the server stored it (`Sent`); `queued`: stored for an offline user (`Queued`)
//   refused    the server refused it: `detail` says why
//   unknown    the connection ended before the server's answer: it may not have arrived

import { Core, Seen } from './core.js';

export const BACKOFF_MS = [1000, 2000, 4000, 8000, 16000, 30000];
/** The part of a wait the jitter may take off (spreading clients' retries): never added on top,
 *  so no wait is longer than its step, nor than the last step (the cap the docs state). */
const JITTER = 0.25;

/** The wait before attempt `attempt` (0 the first retry), milliseconds, for `random` in [0, 1). */
export function backoffDelay(attempt, random) {
  const base = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
  const r = Number.isFinite(random) ? Math.min(1, Math.max(0, random)) : 0;
  return Math.round(base * (1 - JITTER * r));
}

/** The words for a wait of `ms`, as the status says it: whole seconds, at least 1. */
export function waitWords(ms) {
  return `${Math.max(1, Math.round(ms / 1000))} s`;
}

export class Connection {
  /**
   * @param {object} o
   * @param {import('./account.js').Account} o.account
   * @param {(event: object) => void} o.onEvent   core events, plus `status`, `lineState`
   */
  constructor({ account, onEvent, url = defaultUrl(), WebSocketImpl = globalThis.WebSocket,
    clock = () => performance.now(), random = Math.random }) {
    this.account = account;
    this.onEvent = onEvent;
    this.url = url;
    this.WebSocketImpl = WebSocketImpl;
    this.clock = clock;
    this.random = random;
    this.seen = new Seen();
    this.core = null;
    this.ws = null;
    this.carried = []; // {line, msg} never written
    this.nextLine = 1;
    this.lineMsgs = new Map(); // line → its message, until answered
    this.attempt = 0;
    this.timer = null;
    this.retryTimer = null;
    this.stopped = false;
    this.welcomed = false;
    this.ackChain = Promise.resolve(); // acknowledgements waiting for the front end's storage
    this.ackWaiting = 0;
    this.ackHeldFor = null; // the Core on which a line could not be kept: no more acknowledgements on it
  }

  /** Connects (again). */
  start() {
    this.stopped = false;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.ws) return;
    this.#status('connecting', this.welcomed ? 'Reconnecting…' : 'Connecting…');
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch (e) {
      this.#lost(`cannot open the connection: ${e.message}`);
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    const now = this.clock();
    const carried = this.carried;
    this.carried = [];
    this.core = new Core({ nick: this.account.nick, key: this.account.publicKey, now, seen: this.seen, carried });
    ws.onopen = () => this.#pump();
    ws.onmessage = (e) => {
      if (ws !== this.ws || !this.core) return;
      if (typeof e.data === 'string') {
        this.core.connectionLost('the server sent a text message, which is not the protocol', this.clock());
      } else {
        this.core.receive(new Uint8Array(e.data), this.clock());
      }
      this.#pump();
    };
    ws.onclose = (e) => {
      if (ws !== this.ws) return;
      const why = e.code === 1000 || e.code === 1005 ? 'the server closed the connection' : `the connection was lost${e.reason ? `: ${e.reason}` : ''}`;
      this.core?.connectionLost(why, this.clock());
      this.#pump();
    };
    ws.onerror = () => {
      // onclose follows with the details the browser gives (none, for security).
    };
  }

  /** Stops for good (the user left, another tab took the account). Lines not sent are kept. */
  stop(why) {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const core = this.core;
    if (core) {
      if (!core.isClosed) core.connectionLost(why, this.clock());
      this.#drainEvents();
      this.#finish(core);
    }
    this.#dropSocket();
  }

  /** Sends a chat line (Public/Private): returns its handle; its states come as lineState. */
  sendLine(msg) {
    const line = this.nextLine++;
    this.lineMsgs.set(line, msg);
    if (this.core && !this.core.isClosed && this.core.sendLine(msg, line)) {
      this.#emit({ kind: 'lineState', line, state: 'waiting', msg });
      this.#pump();
    } else {
      this.carried.push({ line, msg });
      this.#emit({ kind: 'lineState', line, state: 'waiting', msg, detail: 'will be sent once connected' });
    }
    return line;
  }

  /** Sends a command message (room commands, Who, Away). False if not connected. */
  send(msg) {
    if (!this.core?.ready) return false;
    this.core.send(msg);
    this.#pump();
    return true;
  }

  /** /quit: Quit to the server, and no reconnecting. */
  quit() {
    this.stopped = true;
    if (this.core?.ready) {
      this.core.quit();
      this.#pump();
    } else {
      this.stop('you left');
    }
  }

  get connected() {
    return Boolean(this.core?.ready);
  }

  // ---- the loop ----

  #pump() {
    const core = this.core;
    const ws = this.ws;
    if (!core) return;
    this.#drainEvents();
    const open = ws && ws.readyState === 1;
    if (open) {
      for (let b; (b = core.pollTransmit(this.clock())); ) ws.send(b);
      this.#drainEvents();
    }
    if (core.isClosed) {
      this.#finish(core);
      return;
    }
    clearTimeout(this.timer);
    const at = core.pollTimeout(this.clock());
    if (at !== null && open) {
      this.timer = setTimeout(() => {
        if (this.core !== core) return;
        core.handleTimeout(this.clock());
        this.#pump();
      }, Math.max(0, at - this.clock()));
    }
  }

  #drainEvents() {
    const core = this.core;
    if (!core) return;
    for (let e; (e = core.pollEvent()); ) {
      switch (e.kind) {
        case 'sign':
          this.account.sign(e.message).then(
            (sig) => {
              if (this.core !== core) return;
              core.giveSignature(sig, this.clock());
              this.#pump();
            },
            (err) => {
              if (this.core !== core) return;
              core.signingFailed(err?.message ?? String(err));
              this.#pump();
            },
          );
          break;
        case 'welcome':
          this.attempt = 0;
          this.welcomed = true;
          this.#emit(e);
          this.#status('connected', `Connected to ${e.server} as ${e.nick}`);
          break;
        case 'answer': {
          const msg = this.lineMsgs.get(e.line);
          this.lineMsgs.delete(e.line);
          // Our own room line, stored: when History brings it back after a reconnection, it is a repeat.
          if (msg?.type === 'Public' && e.outcome === 'sent') this.seen.room(msg.room, e.id, e.ts);
          this.#emit({ kind: 'lineState', line: e.line, state: e.outcome, id: e.id, ts: e.ts, detail: e.outcome === 'refused' ? `${e.detail || e.name} (${e.name})` : '', code: e.code });
          break;
        }
        case 'line':
        case 'relay':
        case 'repeat': {
          // The front end shows the line synchronously and may return a promise that settles once
          // the line is kept (a private line, in this browser's storage): acknowledged after it,
          // so a reload in between gets the line again from the server, never loses it.
          const kept = this.#emit(e);
          if (e.ack !== undefined) this.#acknowledge(core, e.ack, kept);
          break;
        }
        case 'closed':
          this.lastClose = e;
          break;
        default:
          this.#emit(e);
      }
    }
  }

  #finish(core) {
    if (this.core !== core) return;
    clearTimeout(this.timer);
    for (const line of core.unanswered()) {
      this.lineMsgs.delete(line);
      this.#emit({ kind: 'lineState', line, state: 'unknown', detail: 'not confirmed: the connection ended before the server answered (it may not have arrived)' });
    }
    this.carried = core.unsent().concat(this.carried);
    this.core = null;
    const close = this.lastClose ?? { why: 'connection lost', retry: true };
    this.lastClose = null;
    this.#dropSocket();
    if (this.stopped || !close.retry) {
      this.stopped = true;
      this.#emit({ kind: 'stopped', why: close.why, code: close.code, name: close.name });
      this.#status('offline', `Disconnected: ${close.why}`);
      return;
    }
    this.#lost(close.why);
  }

  #lost(why) {
    this.ws = null;
    const delay = backoffDelay(this.attempt, this.random());
    this.attempt += 1;
    this.#status('reconnecting', `Disconnected: ${why}. Reconnecting in ${waitWords(delay)}…`);
    this.retryTimer = setTimeout(() => this.start(), delay);
  }

  /** Reconnect now (the browser came back online, or the user asked). */
  retryNow() {
    if (this.stopped || this.ws) return;
    this.start();
  }

  #dropSocket() {
    const ws = this.ws;
    this.ws = null;
    clearTimeout(this.timer);
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        // already closed
      }
    }
  }

  #status(state, text) {
    this.#emit({ kind: 'status', state, text });
  }

  /** Hands `e` to the front end; returns what its handler returned (undefined if it threw). */
  #emit(e) {
    try {
      return this.onEvent(e);
    } catch (err) {
      console.error('web client: event handler failed', err);
      return undefined;
    }
  }

  /**
   * Tells `core` the personal line `id` was taken once `kept` (a promise, or nothing) settles.
   * Acknowledgements are cumulative (`Received { up_to }`), so while any is waiting for storage
   * the later ones queue behind it, in order.
   */
  #acknowledge(core, id, kept) {
    if (this.ackHeldFor === core) return;
    const waits = kept !== null && typeof kept === 'object' && typeof kept.then === 'function';
    if (!waits && this.ackWaiting === 0) {
      core.taken(id, this.clock());
      return;
    }
    this.ackWaiting += 1;
    this.ackChain = this.ackChain
      .then(() => kept)
      .then((ok) => ok !== false, () => false)
      .then((ok) => {
        this.ackWaiting -= 1;
        if (this.core !== core || core.isClosed || this.ackHeldFor === core) return; // the server sends it again; the page skips the repeat
        if (!ok) {
          // Not kept (the browser's storage refused): acknowledgements are cumulative, so none
          // goes on this connection any more; the server keeps these lines and sends them again
          // at the next login, and the page said why.
          this.ackHeldFor = core;
          return;
        }
        core.taken(id, this.clock());
        this.#pump();
      });
  }
}

export function defaultUrl() {
  return typeof location === 'undefined' ? '' : `wss://${location.host}/ws`;
}
