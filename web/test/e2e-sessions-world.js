// TEST-ONLY: a tiny in-memory server for the session manager's tests: a key directory that
// hands each one-time prekey out once (the signed prekey alone after: the last resort), a
// relay that holds payloads until they are delivered, and clients that carry out their
// actions (Persist keeps a structured clone of toState(), as IndexedDB would).
import { Sessions } from '../src/e2e/sessions.js';
import { counterRng } from './e2e-helpers.js';

export class World {
  constructor() {
    this.directory = new Map(); // nick -> {identity, signed_prekey, one_time: [...]}
    this.relay = []; // {from, to, id: bigint, payload}
    this.nextId = 1n;
    this.clients = new Map();
    this.now = 0;
    this.answerFetches = true;
    this.pendingFetches = [];
  }

  /** A client `nick` with its own identity and counter randomness. */
  add(nick, { seed = nick, config } = {}) {
    const s = Sessions.create({ me: nick, identitySecret: counterRng(`id ${seed}`)(32), config, rng: counterRng(`rng ${seed}`) });
    const c = { nick, s, events: [], sent: [], plain: [], saved: null, seed };
    this.clients.set(nick, c);
    return c;
  }

  /** The client restored from its last saved state (a restart). */
  restart(nick, rngLabel = 'restarted') {
    const c = this.clients.get(nick);
    c.s = Sessions.restore({ me: nick, identitySecret: counterRng(`id ${c.seed}`)(32), rng: counterRng(`${rngLabel} ${c.seed}`), state: structuredClone(c.saved) });
    return c;
  }

  /** Carries out `actions` for client `c`, in order. */
  carry(c, actions) {
    for (const a of actions) {
      switch (a.type) {
        case 'Persist':
          c.saved = structuredClone(c.s.toState());
          break;
        case 'Send': {
          const msg = { from: c.nick, to: a.to, id: this.nextId++, payload: a.payload };
          this.relay.push(msg);
          c.sent.push({ ...msg, line: a.line });
          break;
        }
        case 'SendPlain':
          c.plain.push(a);
          break;
        case 'Event':
          c.events.push(a.event);
          break;
        case 'Publish': {
          const u = a.upload;
          let entry = this.directory.get(c.nick) ?? { one_time: [] };
          // A new identity replaces what the old one published.
          if (entry.identity !== undefined && !entry.identity.every((b, i) => b === u.identity[i])) entry = { one_time: [] };
          entry.identity = u.identity;
          entry.signed_prekey = u.signed_prekey;
          entry.one_time = [...entry.one_time, ...u.one_time];
          this.directory.set(c.nick, entry);
          this.carry(c, c.s.published(entry.one_time.length, false));
          break;
        }
        case 'FetchBundle':
          if (this.answerFetches) this.carry(c, c.s.bundle(a.nick, this.fetch(a.nick), this.now));
          else this.pendingFetches.push({ c, nick: a.nick });
          break;
        default:
          throw new Error(`unknown action ${a.type}`);
      }
    }
  }

  /** The directory's answer for `nick`: a one-time prekey handed out once. */
  fetch(nick) {
    const e = this.directory.get(nick);
    if (e === undefined) return { type: 'NoKeys' };
    const oneTime = e.one_time.shift() ?? null;
    return { type: 'Keys', bundle: { identity: e.identity, signed_prekey: e.signed_prekey, one_time: oneTime } };
  }

  login(nick) {
    const c = this.clients.get(nick);
    this.carry(c, c.s.login(this.now, 1_700_000_000_000 + this.now));
    return c;
  }

  /** Sends a text; returns the outcome kind. */
  say(from, to, text, line = 0) {
    const c = this.clients.get(from);
    const out = c.s.sendText(to, text, line, this.now);
    this.carry(c, out.actions ?? []);
    return out.kind;
  }

  /** Delivers the relayed payloads for `to` (all, or those picked), in order; returns the new events. */
  deliver(to, pick = () => true) {
    const c = this.clients.get(to);
    const before = c.events.length;
    const keep = [];
    for (const m of this.relay) {
      if (m.to === to && pick(m)) this.carry(c, c.s.receive(m.from, m.id, m.payload, this.now));
      else keep.push(m);
    }
    this.relay = keep;
    return c.events.slice(before);
  }

  /** The texts of the Message events among `events`. */
  static texts(events) {
    return events.filter((e) => e.kind === 'Message').map((e) => e.text);
  }
}
