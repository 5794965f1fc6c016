// The session manager (common/src/e2e/peers.rs and peers/*.rs): the peer table, one entry per
// peer with its Double Ratchet sessions, what the user wants of the conversation, the texts
// waiting for the peer's keys and the decrypted messages not acknowledged yet; plus our own
// prekeys (keys.js) and the pins (pins.js). Pure: no I/O, no clock, no DOM. Callers pass in what
// arrived and the time, and carry out the actions handed back, in order:
//   {type: 'Persist'}                                save toState() durably before going on
//   {type: 'Send', to, payload: Uint8Array, line}    ClientMsg::Relay (line: number | null)
//   {type: 'SendPlain', to, text, line}              ClientMsg::Private (the user said /insecure)
//   {type: 'Event', event}                           show it (events below)
//   {type: 'Publish', upload}                        ClientMsg::PublishKeys {keys: upload}
//   {type: 'FetchBundle', nick}                      ClientMsg::FetchBundle {nick}
// Events (event.kind): Ready {peer, key, trust, byPeer}, Message {peer, id: bigint, text},
// Resumed {peer}, Ended {peer, unsent: number[]}, Failed {peer, failure, unsent: number[]},
// Unreadable {peer}, Replayed {peer}, Held {peer, held, dropped} (messages under a changed key
// not accepted yet, kept until /accept-key), Released {peer, key, count} (after /accept-key: the
// held messages follow), OtherDevice {}.
// Here: the table, statuses, failing, the clock's work; sending in send.js, incoming payloads
// in receive.js, the user's commands in commands.js, the key directory in directory.js, the
// saved state in state.js.

import { nickKey } from '../protocol.js';
import { E2eError, bytesOf } from './errors.js';
import { publicKey } from './x3dh.js';
import { MAX_PEERS, MAX_PINS, makeConfig } from './config.js';
import { Refused, isBlocking, failureWords } from './failure.js';
import { checkPeerKey } from './trust.js';
import { Pins } from './pins.js';
import { OwnKeys } from './keys.js';
import * as send from './send.js';
import * as receive from './receive.js';
import * as commands from './commands.js';
import * as directory from './directory.js';
import * as state from './state.js';

export { Refused, isBlocking, failureWords };

/** Wipes a ratchet's secrets (it is dropped). */
export function wipeRatchet(r) {
  for (const k of [r.dhs, r.rk, r.cks, r.ckr]) k?.fill?.(0);
  for (const s of r.skipped ?? []) s.mk?.fill?.(0);
}

/**
 * A new peer entry.
 * intent: 'Default' | 'Secure' | 'Plain'; sessions: [{ratchet, ephemeral: Uint8Array(32),
 * start: {signedPrekey, oneTime: number|null} | null}], the current first; setup: {kind:
 * 'Idle'} | {kind: 'Fetching', since: ms} | {kind: 'Failed', failure}; queued: [{text, line,
 * plain}]; unacknowledged: Map<bigint relay id, {digest: Uint8Array(32), text, reshow}>;
 * held: [{id: bigint, payload: Uint8Array}] (relays under a changed key not accepted yet, oldest
 * first); heldDropped: how many went over the bounds since the last /accept-key.
 */
export function newPeer(nick) {
  return {
    nick,
    intent: 'Default',
    sessions: [],
    peerKey: null,
    setup: { kind: 'Idle' },
    queued: [],
    unacknowledged: new Map(),
    held: [],
    heldDropped: 0,
    // The relays the last /accept-key took out of `held` (not saved): one whose message the
    // caller could not show and save (notShown) goes back into `held`, shown by showReleased.
    released: [],
    renew: false,
    unsolicited: false, // the peer started it and the user never took part (Sessions.peer)
    lastUsed: 0, // Sessions.uses when last made or used: which entry makes room
  };
}

/** Whether an entry holds nothing: no session, no text waiting, no block, nothing said, nothing to show again. */
function holdsNothing(p) {
  return p.sessions.length === 0 && p.queued.length === 0 && p.unacknowledged.size === 0 &&
    p.intent === 'Default' && (p.setup.kind === 'Idle' || p.setup.kind === 'Failed') && blockedOf(p) === null &&
    p.held.length === 0;
}

/** The blocking failure of a peer entry, or null. */
export function blockedOf(entry) {
  return entry.setup.kind === 'Failed' && isBlocking(entry.setup.failure) ? entry.setup.failure : null;
}

/** All of one user's end-to-end sessions and prekeys. */
export class Sessions {
  /** Use Sessions.create or Sessions.restore. */
  constructor({ me, identitySecret, config, rng }) {
    if (typeof me !== 'string') throw new E2eError('BadInput', 'me is not a nick');
    bytesOf(identitySecret, 32, 'identity secret');
    if (typeof rng !== 'function') throw new E2eError('BadInput', 'rng is not a function');
    this.me = me;
    this.identitySecret = Uint8Array.from(identitySecret);
    this.identityPublic = publicKey(this.identitySecret);
    this.config = makeConfig(config);
    this.rng = rng;
    this.pins = new Pins();
    /** @type {Map<string, ReturnType<typeof newPeer>>} by nickKey */
    this.peers = new Map();
    /** Counts the uses of entries (entry.lastUsed): the order in which they make room, as Rust's. */
    this.uses = 0;
    this.keys = new OwnKeys();
    /** Telling peers we could not read their messages (notice.js); not saved. */
    this.notices = { pending: new Map(), told: new Map() };
    /** When each pin was made in this run (nickKey -> count): which one makes room (MAX_PINS). Not saved. */
    this.pinMade = new Map();
    this.pinClock = 0;
  }

  /**
   * Whether a key for `nick` could be pinned: {room: true, victim: null} if there is room (or
   * `nick` has a pin), {room: true, victim} for the pin to drop first (the least recently pinned
   * that is not verified and whose nick has no entry), {room: false} if none may go.
   */
  pinRoom(nick) {
    if (this.pins.size < MAX_PINS || this.pins.get(nick) !== null) return { room: true, victim: null };
    const me = nickKey(nick);
    let best = null;
    for (const [k, pin] of this.pins.byNick) {
      if (pin.verified || k === me || this.peers.has(k)) continue;
      const made = this.pinMade.get(k) ?? 0;
      if (best === null || made < best.made || (made === best.made && k < best.k)) best = { k, made };
    }
    return best === null ? { room: false } : { room: true, victim: best.k };
  }

  /**
   * Pins `key` for `nick` (trust on first use), dropping a pin to make room. For a session the
   * peer started (`byPeer`) nothing is pinned when nothing may go (the caller checked first); for
   * the user's own conversation it is pinned all the same.
   */
  pinNew(nick, key, byPeer) {
    const r = this.pinRoom(nick);
    if (!r.room && byPeer) return;
    if (r.victim) {
      this.pins.remove(r.victim);
      this.pinMade.delete(r.victim);
    }
    if (this.pins.pinNew(nick, key)) {
      this.pinClock += 1;
      this.pinMade.set(nickKey(nick), this.pinClock);
    }
  }

  /**
   * Fresh sessions (no peers, no prekeys yet: login() makes them).
   * @param {{me: string, identitySecret: Uint8Array, config?: object, rng: (n: number) => Uint8Array}} args
   * @returns {Sessions}
   * @throws {E2eError} 'BadInput'
   */
  static create(args) {
    return new Sessions(args);
  }

  /**
   * Sessions from a toState() object; all or nothing.
   * @param {{me, identitySecret, config?, rng, state: object}} args
   * @returns {Sessions}
   * @throws {E2eError} 'Format' for a damaged state (or one of another identity), 'BadInput'
   */
  static restore(args) {
    const s = new Sessions(args);
    state.restore(s, args.state);
    return s;
  }

  /** Our identity's public key (32 bytes, a copy). */
  get publicKey() {
    return Uint8Array.from(this.identityPublic);
  }

  /** Everything to save, as a structured-cloneable plain object ({v: 2, ...}); see state.js. */
  toState() {
    return state.toState(this);
  }

  /**
   * The entry for `nick`, made if missing, for something the user does (a text, a command):
   * from now on the user took part (it is not unsolicited). When the table is full, the least
   * recently used entry that holds nothing makes room, else the least recently used evictable
   * unsolicited one; if there is none, Refused('TooManyPeers').
   */
  peer(nick) {
    const entry = this.#entryFor(nick, false);
    entry.unsolicited = false;
    return entry;
  }

  /**
   * The entry for `nick`, made if missing, for a session the peer started: a new entry is
   * unsolicited. At most config.maxUnsolicited of them: beyond it the least recently used
   * evictable one makes room; entries the user took part in never do (only ones that hold
   * nothing). @throws {Refused} 'TooManyPeers'
   */
  peerStarted(nick) {
    return this.#entryFor(nick, true);
  }

  /** Whether a session `nick` starts could have an entry: checked before its cryptography. */
  roomForStart(nick) {
    if (this.peers.has(nickKey(nick))) return true;
    try {
      this.#room(true);
      return true;
    } catch {
      return false;
    }
  }

  #entryFor(nick, byPeer) {
    const key = nickKey(nick);
    let entry = this.peers.get(key);
    if (entry === undefined) {
      const victim = this.#room(byPeer);
      if (victim !== null) this.peers.delete(victim);
      entry = newPeer(nick);
      entry.unsolicited = byPeer;
      this.peers.set(key, entry);
    }
    this.uses += 1;
    entry.lastUsed = this.uses;
    return entry;
  }

  /** The key of the entry that must go to make room for a new one, or null if there is room. */
  #room(byPeer) {
    const leastUsed = (f) => {
      let best = null;
      let at = 0;
      for (const [k, p] of this.peers) {
        if (f(p) && (best === null || p.lastUsed < at)) {
          best = k;
          at = p.lastUsed;
        }
      }
      return best;
    };
    const maxPeers = Math.min(this.config.maxPeers, MAX_PEERS);
    if (byPeer) {
      let unsolicited = 0;
      for (const p of this.peers.values()) if (p.unsolicited) unsolicited += 1;
      if (unsolicited >= Math.min(this.config.maxUnsolicited, maxPeers)) {
        const victim = leastUsed((p) => this.evictable(p));
        if (victim === null) throw new Refused('TooManyPeers');
        return victim;
      }
    }
    if (this.peers.size < maxPeers) return null;
    const victim = leastUsed(holdsNothing) ?? leastUsed((p) => this.evictable(p));
    if (victim === null) throw new Refused('TooManyPeers');
    return victim;
  }

  /**
   * Whether `p` is an unsolicited entry that may make room: the peer started it, the user never
   * took part (sent nothing, said nothing, did not verify the key), and it holds nothing to show
   * or send. Its key stays pinned: a key change is still caught when the peer comes back.
   */
  evictable(p) {
    return p.unsolicited && p.queued.length === 0 && p.unacknowledged.size === 0 && blockedOf(p) === null &&
      p.held.length === 0 && p.setup.kind !== 'Fetching' && this.pins.get(p.nick)?.verified !== true;
  }

  /** The entry for `nick` or undefined (never made). */
  existing(nick) {
    return this.peers.get(nickKey(nick));
  }

  /**
   * Where the conversation with `peer` stands.
   * @returns {{kind: 'Plain'} | {kind: 'Ready'} | {kind: 'Starting'}
   *   | {kind: 'Secure', key: Uint8Array, trust: 'New'|'Pinned'|'Verified'} | {kind: 'Failed', failure}}
   */
  status(peer) {
    const def = this.config.endToEndByDefault ? { kind: 'Ready' } : { kind: 'Plain' };
    const entry = this.existing(peer);
    if (entry === undefined) return def;
    if (entry.intent === 'Plain') return { kind: 'Plain' };
    const blocked = blockedOf(entry);
    if (blocked !== null) return { kind: 'Failed', failure: blocked };
    if (entry.peerKey !== null && entry.sessions.length > 0) {
      const checked = checkPeerKey(this.pins, this.identityPublic, entry.nick, entry.peerKey);
      return { kind: 'Secure', key: Uint8Array.from(entry.peerKey), trust: checked.trust ?? 'Pinned' };
    }
    switch (entry.setup.kind) {
      case 'Fetching':
        return { kind: 'Starting' };
      case 'Failed':
        return { kind: 'Failed', failure: entry.setup.failure };
      default:
        return entry.intent === 'Secure' ? { kind: 'Ready' } : def;
    }
  }

  /**
   * Fails the setting-up with `peer`: the texts waiting are dropped and reported (those the
   * user chose plain go, after the report); a blocking failure blocks (and is saved).
   * @returns {object[]} actions
   */
  fail(peer, failure) {
    const entry = this.existing(peer);
    if (entry === undefined) return [];
    const blocking = isBlocking(failure);
    entry.setup = { kind: 'Failed', failure };
    const unsent = [];
    const plain = [];
    for (const q of entry.queued.splice(0)) {
      if (q.plain) plain.push({ type: 'SendPlain', to: entry.nick, text: q.text, line: q.line });
      else unsent.push(q.line);
    }
    const actions = [];
    if (blocking) actions.push({ type: 'Persist' });
    actions.push({ type: 'Event', event: { kind: 'Failed', peer: entry.nick, failure, unsent } });
    actions.push(...plain);
    return actions;
  }

  /** When tick() must run next (ms, the same clock as `now`): the earliest fetch deadline, or null. */
  pollTimeout() {
    let min = null;
    for (const p of this.peers.values()) {
      if (p.setup.kind !== 'Fetching') continue;
      const at = p.setup.since + this.config.fetchTimeoutMs;
      if (min === null || at < min) min = at;
    }
    return min;
  }

  /** Fails the key requests not answered by `now` (ms). @returns {object[]} actions */
  tick(now) {
    const timeout = this.config.fetchTimeoutMs;
    const late = [];
    for (const p of this.peers.values()) {
      if (p.setup.kind === 'Fetching' && p.setup.since + timeout <= now) late.push(p.nick);
    }
    return late.flatMap((nick) => this.fail(nick, { kind: 'Timeout' }));
  }

  /** The connection ended: the texts waiting stay queued; login() asks again. */
  disconnected() {}

  /**
   * The page sent Received {up_to}: texts of relays up to `upTo` (bigint) need not be kept —
   * but those of relays released at /accept-key and not known to be shown yet (held, released)
   * are: they were acknowledged when held, and are shown from here (showReleased).
   */
  acknowledged(upTo) {
    let up;
    try {
      up = BigInt(upTo);
    } catch {
      return;
    }
    for (const entry of this.peers.values()) {
      const keep = new Set([...entry.held, ...entry.released].map((h) => h.id));
      for (const id of [...entry.unacknowledged.keys()]) if (id <= up && !keep.has(id)) entry.unacknowledged.delete(id);
    }
  }

  /**
   * Shows the messages released at /accept-key that could not be shown then (notShown held them
   * again), or that a restart found held in a conversation no longer blocked (commands.js).
   * Run at each login and by the page once a save works again. @returns {object[]} actions
   */
  showReleased(now) {
    return commands.showReleased(this, now);
  }

  /** The sending half (send.js). @returns {{kind: string, actions?: object[]}} @throws {Refused} */
  sendText(peer, text, line, now) {
    return send.sendText(this, peer, text, line, now);
  }

  /** A relay payload (receive.js); never throws. @returns {object[]} */
  receive(from, id, payload, now) {
    return receive.receive(this, from, id, payload, now);
  }

  /**
   * The caller kept (showed and stored) message `id` (bigint) from `peer`: one released at
   * /accept-key is no longer saved as held (peers.rs `shown`). Does nothing for others.
   */
  shown(peer, id) {
    const entry = this.peers.get(nickKey(peer));
    if (!entry) return;
    const key = BigInt(id);
    entry.released = entry.released.filter((h) => h.id !== key);
  }

  /** The caller could not show message `id` (bigint) from `peer`: shown when it comes again. */
  notShown(peer, id) {
    receive.notShown(this, peer, id);
  }

  /** A login (directory.js): prekeys and the upload. `nowMs` is Date.now(). */
  login(now, nowMs) {
    return directory.login(this, now, nowMs);
  }

  /** KeysPublished {one_time, other_device}. */
  published(oneTime, otherDevice) {
    return directory.published(this, oneTime, otherDevice);
  }

  /** KeysRefused. */
  publishRefused() {
    directory.publishRefused(this);
  }

  /** PrekeysLow {one_time}. */
  prekeysLow(oneTime) {
    return directory.prekeysLow(this, oneTime);
  }

  /** Bundle {nick, answer}: protocol.js's BundleAnswer. */
  bundle(peer, answer, now) {
    return directory.bundle(this, peer, answer, now);
  }

  /** /secure. @throws {Refused} */
  start(peer, now) {
    return commands.start(this, peer, now);
  }

  /** /insecure. @throws {Refused} */
  end(peer) {
    return commands.end(this, peer);
  }

  /** /accept-key. @throws {Refused} */
  acceptKey(peer, now) {
    return commands.acceptKey(this, peer, now);
  }

  /** /verified. @throws {Refused} */
  markVerified(peer, now) {
    return commands.markVerified(this, peer, now);
  }

  /** The 60-digit safety number with `peer`. @throws {Refused} 'NoKey' */
  safetyNumber(peer) {
    return commands.safetyNumber(this, peer);
  }

  /** Whether the safety number is of a changed key not accepted yet. */
  safetyNumberIsOfNewKey(peer) {
    const entry = this.existing(peer);
    return entry !== undefined && blockedOf(entry)?.kind === 'KeyChanged';
  }

  /** Wipes every secret; the object must not be used after. */
  wipe() {
    this.identitySecret.fill(0);
    this.keys.wipe();
    for (const p of this.peers.values()) for (const s of p.sessions) wipeRatchet(s.ratchet);
  }
}
