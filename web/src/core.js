// The browser client's protocol core, without I/O (the design of client/src/core/): no
// WebSocket, no DOM, no timers. The driver (connection.js) feeds it each server payload and the
// time (`now`, milliseconds, any monotonic clock), takes the payloads to send
// (`pollTransmit`), the events to show (`pollEvent`), and sleeps until `pollTimeout()`.
//
// One Core is one connection. What outlives a connection — lines not yet written, the
// personal and room lines already shown (repeats are recognised by id and server time across
// reconnections) — is kept by the driver and handed to the next Core (`carried`, `seen`).
//
// Events (objects with a `kind`):
//   sign        {message}            sign these bytes with the account key, then call
//                                     giveSignature(signature, now)
//   welcome     {nick, server, online, users, maxTextLen, rateBurst, ratePerSec}
//   loginFailed {code, name, detail, words, retry}   the server refused the login (fatal)
//   answer      {line, outcome: 'sent'|'queued'|'refused', id, ts, code, name, detail}
//   line        {msg, personal, earlier}  a chat line (Public, Private, History, Offline); a
//                                     personal one carries `ack` = its id: call taken(id, now)
//                                     once it is shown
//   relay       {msg, ack}           a Relay (end-to-end encrypted data from msg.from): decrypt it
//                                     (secure.js); call taken(id, now) once what it held is
//                                     saved and shown
//   keys        {msg}                KeysPublished, Bundle, PrekeysLow or KeysRefused (for the
//                                     end-to-end sessions)
//   acknowledged {upTo}              the core sent Received {up_to: upTo} (BigInt)
//   repeat      {msg, ack}           a personal line (Private, Offline, Relay) this page was
//                                     given before (a reconnection before its acknowledgement):
//                                     not to be shown again; call taken(id, now) once it is kept
//   server      {msg}                any other message for the front end (rooms, Presence,
//                                     Users pages asked with /who, Away, Error not a line's, ...)
//   closed      {why, code, name, retry}  the connection is over (the driver closes the socket)

import {
  PROTOCOL_VERSION, encodeClient, decodeServer, DecodeError, errorName, nickKey, nickError,
  ErrorCode, sanitize,
} from './protocol.js';

export const LOGIN_TIMEOUT_MS = 30_000;
/** The server pings every 30 s; after this much silence the core pings itself. */
export const PING_AFTER_MS = 45_000;
/** After this much silence the connection is taken as dead (the server's idle timeout is 90 s). */
export const READ_TIMEOUT_MS = 100_000;
/**
 * A personal line is acknowledged this long after the first one taken since the last
 * acknowledgement: one Received per burst (a login's mail comes as many WebSocket messages),
 * well under a second late.
 */
export const ACK_DELAY_MS = 200;
/** Most lines waiting for an answer at once. */
export const MAX_UNANSWERED = 1024;

const KEY_LOGIN_CONTEXT = new TextEncoder().encode('multi-messenger key login v1\0');

/**
 * The bytes an account key signs to log in (common/src/key_login.rs `signed_message`):
 * "multi-messenger key login v1" 00 ‖ nonce (32) ‖ len(nick) (1 byte) ‖ nick (ASCII) ‖ key (65).
 */
export function keyLoginMessage(nonce, nick, key) {
  const nickBytes = new TextEncoder().encode(nick);
  const m = new Uint8Array(KEY_LOGIN_CONTEXT.length + nonce.length + 1 + nickBytes.length + key.length);
  let at = 0;
  m.set(KEY_LOGIN_CONTEXT, at);
  at += KEY_LOGIN_CONTEXT.length;
  m.set(nonce, at);
  at += nonce.length;
  m[at++] = Math.min(nickBytes.length, 255);
  m.set(nickBytes, at);
  at += nickBytes.length;
  m.set(key, at);
  return m;
}

/** A token bucket: `burst` at once, `perSec` sustained (common/src/rate.rs). */
export class TokenBucket {
  constructor(burst, perSec, now) {
    this.burst = Math.max(1, burst);
    this.perSec = Math.max(0.001, perSec);
    this.tokens = this.burst;
    this.at = now;
  }

  refill(now) {
    if (now > this.at) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.perSec) / 1000);
      this.at = now;
    }
  }

  /** Milliseconds until a token is there (0: now). */
  wait(now) {
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) * 1000) / this.perSec);
  }

  take(now) {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/**
 * What outlives one connection: personal lines already shown (by id and server time) and
 * room lines already shown (by room, id and time), bounded.
 */
export class Seen {
  constructor(max = 16 * 1024) {
    this.max = Math.max(1, max);
    this.keys = new Set();
    this.order = new Array(this.max); // a ring: constant work per line however many were seen
    this.next = 0;
    this.highestPersonal = 0n;
  }

  #remember(key) {
    if (this.keys.has(key)) return false;
    const old = this.order[this.next];
    if (old !== undefined) this.keys.delete(old);
    this.order[this.next] = key;
    this.next = (this.next + 1) % this.max;
    this.keys.add(key);
    return true;
  }

  /** How many keys are remembered (≤ max). */
  get size() {
    return this.keys.size;
  }

  /** True if the personal line (id, ts) is new; remembers it. */
  personal(id, ts) {
    const fresh = this.#remember(`p ${id} ${ts}`);
    if (id > this.highestPersonal) this.highestPersonal = id;
    return fresh;
  }

  /** True if the room line is new; remembers it. */
  room(room, id, ts) {
    return this.#remember(`r ${room.toLowerCase()} ${id} ${ts}`);
  }
}

/** Plain words for a refused login, from its code and the server's detail. */
export function loginWords(code, detail, nick) {
  const d = detail ? ` (the server says: ${detail})` : '';
  switch (code) {
    case ErrorCode.NICK_REGISTERED:
      return `The nick ${nick} belongs to another account: another browser or the mm program registered it. Choose another nick${d}.`;
    case ErrorCode.NICK_LOOKS_LIKE:
      return `The nick ${nick} looks too much like a nick someone registered. Choose another${d}.`;
    case ErrorCode.INVALID_NICK:
      return `${nick} is not a valid nick${d}.`;
    case ErrorCode.NICK_IN_USE:
      return `Someone else is online as ${nick}${d}.`;
    case ErrorCode.ACCOUNTS_FULL:
      return `This server takes no new accounts${d}.`;
    case ErrorCode.REGISTRATION_LIMIT:
      return `Too many new nicks were registered from here for now${d}.`;
    case ErrorCode.CERTIFICATE_REQUIRED:
      return `The server did not accept this browser's account key${d}.`;
    case ErrorCode.UNSUPPORTED_VERSION:
      return `This page and the server speak different protocol versions: reload the page${d}.`;
    case ErrorCode.REPLACED:
      return `This account logged in somewhere else, which took over this connection${d}.`;
    case ErrorCode.SHUTTING_DOWN:
      return `The server is stopping${d}.`;
    case ErrorCode.BUSY:
      return `The server is busy${d}.`;
    case ErrorCode.TIMEOUT:
      return `The connection timed out${d}.`;
    case ErrorCode.TOO_SLOW:
      return `This page did not keep up with the server${d}.`;
    default:
      return `The server refused: ${detail || errorName(code)} (${errorName(code)}, code ${code}).`;
  }
}

/** Whether reconnecting can help after this fatal code (the driver's rule, PROTOCOL.md). */
export function retryHelps(code, duringLogin) {
  if (code === ErrorCode.REPLACED) return false;
  if (!duringLogin) return true;
  return code === ErrorCode.BUSY || code === ErrorCode.SHUTTING_DOWN || code === ErrorCode.TIMEOUT;
}

const LINE_TYPES = new Set(['Public', 'Private', 'Relay']);
const UNPACED = new Set(['Pong', 'Quit', 'Received', 'KeyHello', 'KeyProof']);

export class Core {
  /**
   * @param {object} o
   * @param {string} o.nick
   * @param {Uint8Array} o.key the account's public key (65 bytes)
   * @param {number} o.now
   * @param {Seen} [o.seen]
   * @param {Array<{line: any, msg: object}>} [o.carried] lines never written, sent after login
   */
  constructor({ nick, key, now, seen = new Seen(), carried = [], loginTimeoutMs = LOGIN_TIMEOUT_MS,
    readTimeoutMs = READ_TIMEOUT_MS, pingAfterMs = PING_AFTER_MS }) {
    this.nick = nick;
    this.key = key;
    this.seen = seen;
    this.phase = 'hello'; // hello → signing → proof → users → ready → closed
    this.readTimeoutMs = readTimeoutMs;
    this.pingAfterMs = pingAfterMs;
    this.loginDeadline = now + loginTimeoutMs;
    this.lastHeard = now;
    this.pingSentAt = null;
    this.pingToken = 0n;
    this.events = [];
    this.queue = []; // {msg, line?}, in order
    this.urgent = []; // Pong and Received: unpaced, ahead of the queue (no order with lines)
    this.pending = []; // lines written, waiting for their answer, oldest first
    this.waiting = carried.slice(); // lines before login
    this.pacer = new TokenBucket(2, 1, now);
    this.welcome = null;
    this.users = [];
    this.whoAsked = 0;
    this.whoPages = null;
    this.acked = 0n;
    this.taken_ = 0n;
    this.ackDue = null;
    this.maxTextLen = 4096;
    this.closed = null;
    this.queue.push({ msg: { type: 'KeyHello', version: PROTOCOL_VERSION, nick, key } });
  }

  // ---- from the server ----

  /** One server payload. */
  receive(bytes, now) {
    if (this.phase === 'closed') return;
    this.lastHeard = now;
    this.pingSentAt = null;
    let msg;
    try {
      msg = decodeServer(bytes);
    } catch (e) {
      if (e instanceof DecodeError) return this.#close(`bad message from server: ${e.message}`, null, true);
      throw e;
    }
    if (msg.type === 'Ping') {
      this.urgent.push({ type: 'Pong', token: msg.token });
      return;
    }
    if (msg.type === 'Pong') return;
    if (this.phase !== 'ready') return this.#loginStep(msg, now);
    this.#dispatch(msg, now);
  }

  /** The transport ended (closed by the server, network lost). */
  connectionLost(why, now) {
    if (this.phase === 'closed') return;
    const duringLogin = this.phase !== 'ready';
    this.#close(why || 'connection lost', null, true, duringLogin);
    void now;
  }

  #loginStep(msg, now) {
    const fail = (code, detail) => {
      this.phase = 'closed';
      this.closed = { why: detail, code };
      this.events.push({
        kind: 'loginFailed', code, name: errorName(code), detail,
        words: loginWords(code, detail, this.nick), retry: retryHelps(code, true),
      });
      this.#closedEvent(loginWords(code, detail, this.nick), code, retryHelps(code, true));
    };
    if (msg.type === 'Error') return fail(msg.code, msg.detail);
    if (msg.type === 'Shutdown') return fail(ErrorCode.SHUTTING_DOWN, msg.reason);
    if (this.phase === 'hello' && msg.type === 'Challenge') {
      if (msg.nonce.length !== 32) return this.#protocolFailure('the server sent a challenge of the wrong size');
      this.phase = 'signing';
      this.events.push({ kind: 'sign', message: keyLoginMessage(msg.nonce, this.nick, this.key) });
      return;
    }
    if (this.phase === 'proof' && msg.type === 'Welcome') {
      if (nickKey(msg.nick) !== nickKey(this.nick) || nickError(msg.nick)) {
        return this.#protocolFailure(`the server welcomed us as ${JSON.stringify(msg.nick)}, not as ${this.nick}`);
      }
      this.welcome = msg;
      this.phase = 'users';
      return;
    }
    if (this.phase === 'users' && msg.type === 'Users') {
      if (msg.nicks.some((n) => n.length === 0 || n.length > 32)) {
        return this.#protocolFailure("the server's user list holds something that is not a nick");
      }
      this.users.push(...msg.nicks);
      if (msg.last) this.#loggedIn(now);
      return;
    }
    return this.#protocolFailure(`unexpected ${msg.type} during the login`);
  }

  #protocolFailure(why) {
    this.#close(`login failed: ${why}`, null, false, true);
  }

  /** The account key's signature of the `sign` event's message (64 bytes, r ‖ s). */
  giveSignature(signature, now) {
    if (this.phase !== 'signing') return;
    this.phase = 'proof';
    this.queue.push({ msg: { type: 'KeyProof', signature } });
    void now;
  }

  /** Signing failed (the key is gone, the browser refused). */
  signingFailed(why) {
    if (this.phase !== 'signing') return;
    this.#close(`cannot sign the login with this browser's key: ${why}`, null, false, true);
  }

  #loggedIn(now) {
    const w = this.welcome;
    this.nick = w.nick;
    this.maxTextLen = Math.min(w.max_text_len, 4096);
    this.pacer = new TokenBucket(Math.max(1, w.rate_burst - 1), w.rate_per_sec * 0.9, now);
    this.phase = 'ready';
    this.events.push({
      kind: 'welcome', nick: w.nick, server: w.server, online: w.online, users: this.users,
      maxTextLen: this.maxTextLen, rateBurst: w.rate_burst, ratePerSec: w.rate_per_sec,
    });
    this.users = [];
    for (const { line, msg } of this.waiting) this.queue.push({ msg, line });
    this.waiting = [];
  }

  #dispatch(msg, now) {
    switch (msg.type) {
      case 'Sent':
      case 'Queued': {
        const line = this.pending.shift();
        if (line === undefined) return this.#close('the server answered a line that was not sent', null, false);
        this.events.push({ kind: 'answer', line, outcome: msg.type === 'Sent' ? 'sent' : 'queued', id: msg.id, ts: msg.ts });
        return;
      }
      case 'Error': {
        if (msg.fatal) {
          const words = loginWords(msg.code, msg.detail, this.nick);
          return this.#close(words, msg.code, retryHelps(msg.code, false));
        }
        const line = this.pending.shift();
        if (line === undefined) {
          this.events.push({ kind: 'server', msg });
          return;
        }
        this.events.push({ kind: 'answer', line, outcome: 'refused', code: msg.code, name: errorName(msg.code), detail: msg.detail });
        return;
      }
      case 'Shutdown':
        // As mm's shutdown_words: the reason only when it says more than that.
        return this.#close(
          `the server is shutting down${msg.reason && !/shutting down/i.test(msg.reason) ? `: ${sanitize(msg.reason.trim())}` : ''}`,
          ErrorCode.SHUTTING_DOWN,
          true,
        );
      case 'Private':
      case 'Offline': {
        const fresh = this.seen.personal(msg.id, msg.ts);
        if (!fresh) return void this.events.push({ kind: 'repeat', msg, ack: msg.id });
        this.events.push({ kind: 'line', msg, personal: true, earlier: msg.type === 'Offline', ack: msg.id });
        return;
      }
      case 'Relay': {
        const fresh = this.seen.personal(msg.id, msg.ts);
        if (!fresh) return void this.events.push({ kind: 'repeat', msg, ack: msg.id });
        this.events.push({ kind: 'relay', msg, ack: msg.id });
        return;
      }
      case 'KeysPublished':
      case 'Bundle':
      case 'PrekeysLow':
      case 'KeysRefused':
        this.events.push({ kind: 'keys', msg });
        return;
      case 'Public':
      case 'History':
        if (!this.seen.room(msg.room, msg.id, msg.ts)) return;
        this.events.push({ kind: 'line', msg, personal: false, earlier: msg.type === 'History' });
        return;
      case 'Users':
        if (this.whoAsked === 0) return; // not asked for: nothing kept
        this.whoPages = (this.whoPages ?? []).concat(msg.nicks);
        if (msg.last) {
          this.whoAsked -= 1;
          this.events.push({ kind: 'who', nicks: this.whoPages });
          this.whoPages = null;
        }
        return;
      default:
        this.events.push({ kind: 'server', msg });
    }
  }

  // ---- acknowledgements ----

  /** The front end showed the personal line `id` (from a `line`, `relay` or `repeat` event). */
  taken(id, now) {
    this.#take(BigInt(id), now);
  }

  #take(id, now) {
    if (id > this.taken_) this.taken_ = id;
    if (this.taken_ > this.acked && this.ackDue === null) this.ackDue = now + ACK_DELAY_MS;
  }

  #ackNow() {
    if (this.phase !== 'ready' || this.taken_ <= this.acked) return;
    this.acked = this.taken_;
    this.ackDue = null;
    this.urgent.push({ type: 'Received', up_to: this.acked });
    this.events.push({ kind: 'acknowledged', upTo: this.acked });
  }

  // ---- from the user ----

  /**
   * Sends a line (`Public`, `Private` or `Relay` message object); `line` is the front end's
   * handle, given back in its `answer` event. Before the login is over the line waits.
   * Returns false if too many lines wait already.
   */
  sendLine(msg, line) {
    if (!LINE_TYPES.has(msg.type)) throw new TypeError(`${msg.type} is not a line`);
    if (this.phase === 'closed') return false;
    if (this.pending.length + this.waiting.length + this.#queuedLines() >= MAX_UNANSWERED) return false;
    if (this.phase !== 'ready') this.waiting.push({ msg, line });
    else this.queue.push({ msg, line });
    return true;
  }

  #queuedLines() {
    let n = 0;
    for (const q of this.queue) if (q.line !== undefined) n++;
    return n;
  }

  /** Sends anything that is not a line (room commands, Who, Monitor, Quit ...). */
  send(msg) {
    if (LINE_TYPES.has(msg.type)) throw new TypeError(`${msg.type} is a line: use sendLine`);
    if (this.phase !== 'ready') return false;
    if (msg.type === 'Who') this.whoAsked += 1;
    this.queue.push({ msg });
    return true;
  }

  /** The user leaves: Quit, then the driver closes once it is written. */
  quit() {
    if (this.phase !== 'ready') return this.#close('you left', null, false);
    this.queue.push({ msg: { type: 'Quit' } });
    this.quitting = true;
    return undefined;
  }

  // ---- to the server ----

  /** The next payload to write now, or null (paced within the server's rate limit). */
  pollTransmit(now) {
    if (this.phase === 'ready' && this.ackDue !== null && now >= this.ackDue) this.#ackNow();
    if (this.phase === 'closed' && !this.quitting) return null;
    if (this.urgent.length > 0 && !this.quitting) return encodeClient(this.urgent.shift());
    const next = this.queue[0];
    if (!next) return null;
    if (!UNPACED.has(next.msg.type) && !this.pacer.take(now)) return null;
    this.queue.shift();
    if (next.line !== undefined) this.pending.push(next.line);
    const bytes = encodeClient(next.msg);
    if (next.msg.type === 'Quit') {
      this.#close('you left', null, false);
    }
    return bytes;
  }

  // ---- time ----

  /** The instant (same clock as `now`) the core next needs handleTimeout, or null. */
  pollTimeout(now) {
    if (this.phase === 'closed') return null;
    const at = [];
    if (this.phase !== 'ready') at.push(this.loginDeadline);
    else {
      at.push(this.lastHeard + this.readTimeoutMs);
      if (this.pingSentAt === null) at.push(this.lastHeard + this.pingAfterMs);
      if (this.ackDue !== null) at.push(this.ackDue);
    }
    if (this.urgent.length > 0) at.push(now);
    const head = this.queue[0];
    if (head && !UNPACED.has(head.msg.type)) at.push(now + this.pacer.wait(now));
    else if (head) at.push(now);
    return Math.min(...at);
  }

  handleTimeout(now) {
    if (this.phase === 'closed') return;
    if (this.phase !== 'ready') {
      if (now >= this.loginDeadline) this.#close('the server did not answer the login in time', ErrorCode.TIMEOUT, true, true);
      return;
    }
    if (now - this.lastHeard >= this.readTimeoutMs) {
      return this.#close(`the server was silent for ${Math.round(this.readTimeoutMs / 1000)} s`, ErrorCode.TIMEOUT, true);
    }
    if (this.pingSentAt === null && now - this.lastHeard >= this.pingAfterMs) {
      this.pingSentAt = now;
      this.pingToken += 1n;
      this.queue.push({ msg: { type: 'Ping', token: this.pingToken } });
    }
    if (this.ackDue !== null && now >= this.ackDue) this.#ackNow();
  }

  // ---- to the front end ----

  pollEvent() {
    return this.events.shift() ?? null;
  }

  /** Lines never written to this connection (to carry to the next). */
  unsent() {
    const lines = this.waiting.concat(this.queue.filter((q) => q.line !== undefined));
    this.waiting = [];
    this.queue = this.queue.filter((q) => q.line === undefined);
    return lines;
  }

  /** Lines written whose answer never came (their outcome is unknown once closed). */
  unanswered() {
    return this.pending.slice();
  }

  get ready() {
    return this.phase === 'ready';
  }

  get isClosed() {
    return this.phase === 'closed';
  }

  #close(why, code, retry, duringLogin = false) {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.closed = { why, code };
    void duringLogin;
    this.#closedEvent(why, code, retry);
  }

  #closedEvent(why, code, retry) {
    this.events.push({ kind: 'closed', why, code, name: code === null || code === undefined ? null : errorName(code), retry });
  }
}
