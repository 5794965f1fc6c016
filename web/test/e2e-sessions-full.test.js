// The peer table against a flood of valid session starts (a hostile server registers invented
// nicks and their keys and relays their starts), as common/src/e2e/tests/peer_table.rs: entries
// the peer started and the user never took part in are bounded and make room, least recently
// used first; the user's own conversations never do. Then e2e-v1.json's `sessions_full` (a run
// of Rust's Sessions with a small table) replayed byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sessions, Refused, failureWords } from '../src/e2e/sessions.js';
import { MAX_PEERS, MAX_UNSOLICITED, DEFAULT_CONFIG, makeConfig } from '../src/e2e/config.js';
import { encodeClient } from '../src/protocol.js';
import { World } from './e2e-sessions-world.js';
import { vectors, counterRng, fromHex, toHex } from './e2e-helpers.js';

const SMALL = { maxPeers: 8, maxUnsolicited: 2 };

function refusal(f, kind) {
  assert.throws(f, (e) => e instanceof Refused && e.kind === kind);
}

/** Bob (keys published) in a small table, and Alice (keys published). */
function bobOnline() {
  const w = new World();
  w.add('alice');
  w.add('bob', { config: SMALL });
  w.login('alice');
  w.login('bob');
  return w;
}

/** A stranger `nick` (in the world, default table) starts a session with `to` saying `text`. */
function stranger(w, nick, to, text) {
  if (!w.clients.has(nick)) w.add(nick);
  w.say(nick, to, text);
}

/** Delivers to `to`, acknowledging each relay after it; returns the new events. */
function deliverAll(w, to) {
  const c = w.clients.get(to);
  const ids = w.relay.filter((m) => m.to === to).map((m) => m.id);
  const events = w.deliver(to);
  for (const id of ids) c.s.acknowledged(id);
  return events;
}

/** Restarts `nick` (small table) from its last saved state. */
function restart(w, nick, label) {
  const c = w.clients.get(nick);
  c.s = Sessions.restore({ me: nick, identitySecret: counterRng(`id ${c.seed}`)(32), config: SMALL, rng: counterRng(label), state: structuredClone(c.saved) });
}

const secure = (w, who, peer) => w.clients.get(who).s.status(peer).kind === 'Secure';
const kind = (w, who, peer) => w.clients.get(who).s.status(peer).kind;

test('the default bound of unsolicited entries is a quarter of the table', () => {
  assert.equal(DEFAULT_CONFIG.maxPeers, MAX_PEERS);
  assert.equal(DEFAULT_CONFIG.maxUnsolicited, MAX_UNSOLICITED);
  assert.equal(MAX_UNSOLICITED, 1024);
  assert.throws(() => makeConfig({ maxPeers: -1 }), /maxPeers/);
  assert.throws(() => makeConfig({ maxUnsolicited: 'x' }), /maxUnsolicited/);
});

test('a flood of valid starts leaves /msg and /insecure to a new peer working, also after a restart', () => {
  const w = bobOnline();
  for (let round = 0; round < 2; round++) {
    const nick = (k) => `flood${round}x${k}`;
    for (let k = 0; k < 20; k++) {
      stranger(w, nick(k), 'bob', 'hi');
      assert.deepEqual(World.texts(deliverAll(w, 'bob')), ['hi']);
    }
    assert.ok(secure(w, 'bob', nick(19)) && secure(w, 'bob', nick(18)));
    assert.equal(kind(w, 'bob', nick(17)), 'Ready', 'made room');
    const bob = w.clients.get('bob');
    w.carry(bob, bob.s.end(`carol${round}`));
    assert.equal(kind(w, 'bob', `carol${round}`), 'Plain');
    assert.equal(w.say('bob', 'alice', 'to a real friend'), round === 0 ? 'Queued' : 'Secure');
    assert.ok(World.texts(w.deliver('alice')).includes('to a real friend'));
    restart(w, 'bob', `restart${round}`);
  }
});

test('entries the user took part in are never evicted for a start', () => {
  const w = bobOnline();
  const bob = w.clients.get('bob');
  for (let k = 0; k < 5; k++) w.carry(bob, bob.s.end(`user${k}`));
  assert.equal(w.say('bob', 'nokeys', 'waiting'), 'Queued'); // fails (no keys): holds nothing after
  assert.equal(w.say('bob', 'alice', 'hello'), 'Queued'); // a session Bob started
  stranger(w, 'm1', 'bob', 'one');
  deliverAll(w, 'bob');
  stranger(w, 'm2', 'bob', 'two');
  deliverAll(w, 'bob');
  assert.equal(kind(w, 'bob', 'nokeys'), 'Ready', 'the entry that held nothing made room');
  stranger(w, 'm3', 'bob', 'three');
  assert.deepEqual(World.texts(deliverAll(w, 'bob')), ['three']);
  // m1 (the least recently used unsolicited entry) made room: its next text is not shown.
  w.say('m1', 'bob', 'again');
  const events = deliverAll(w, 'bob');
  assert.deepEqual(events.map((e) => e.kind), ['Replayed']);
  for (let k = 0; k < 5; k++) assert.equal(kind(w, 'bob', `user${k}`), 'Plain');
  assert.ok(secure(w, 'bob', 'alice'));
  // Bob answers m2: no longer unsolicited. A new conversation of his takes m3's place; then
  // there is no room left: refused in plain words.
  assert.equal(w.say('bob', 'm2', 'who are you?'), 'Secure');
  w.carry(bob, bob.s.end('user5'));
  assert.equal(kind(w, 'bob', 'm3'), 'Ready', 'm3 made room');
  refusal(() => bob.s.end('user6'), 'TooManyPeers');
  refusal(() => bob.s.sendText('user8', 'x', 9, 0), 'TooManyPeers');
  assert.ok(secure(w, 'bob', 'm2'));
  // A start now finds no room: unreadable, and nothing of Bob's is spent on it.
  const oneTime = bob.s.keys.oneTime.size;
  stranger(w, 'm4', 'bob', 'four');
  assert.deepEqual(deliverAll(w, 'bob').map((e) => e.kind), ['Unreadable']);
  assert.equal(bob.s.keys.oneTime.size, oneTime);
  assert.equal(bob.s.pins.get('m4'), null);
});

test('an unsolicited entry with a message not acknowledged, or a verified key, is kept', () => {
  const w = bobOnline();
  const bob = w.clients.get('bob');
  stranger(w, 'm1', 'bob', 'one');
  // Shown, not acknowledged (an id above those acknowledged below).
  w.relay.find((m) => m.from === 'm1').id = 1_000_000n;
  w.deliver('bob');
  stranger(w, 'v1', 'bob', 'v');
  deliverAll(w, 'bob');
  w.carry(bob, bob.s.markVerified('v1', 0));
  for (let k = 2; k < 5; k++) {
    stranger(w, `m${k}`, 'bob', 'x');
    deliverAll(w, 'bob');
  }
  assert.ok(secure(w, 'bob', 'm1'), 'not acknowledged: kept');
  assert.ok(secure(w, 'bob', 'v1'), 'verified: kept');
  assert.equal(kind(w, 'bob', 'm2'), 'Ready');
});

test('a restored state keeps the order and who started; an older state loads with every peer taken part in', () => {
  const w = bobOnline();
  for (const m of ['m1', 'm2', 'm3']) {
    stranger(w, m, 'bob', m);
    deliverAll(w, 'bob');
  }
  assert.equal(kind(w, 'bob', 'm1'), 'Ready');
  const bob = w.clients.get('bob');
  const saved = structuredClone(bob.saved);
  assert.deepEqual(saved.peers.map((p) => [p.nick, p.unsolicited]), [['m2', true], ['m3', true]]);
  for (let k = 0; k < 3; k++) restart(w, 'bob', `r${k}`);
  stranger(w, 'm4', 'bob', 'm4');
  deliverAll(w, 'bob');
  assert.equal(kind(w, 'bob', 'm2'), 'Ready');
  assert.ok(secure(w, 'bob', 'm3') && secure(w, 'bob', 'm4'));
  // Saved before the flags existed: none unsolicited, so a start evicts neither.
  const old = structuredClone(saved);
  for (const p of old.peers) delete p.unsolicited;
  const restored = Sessions.restore({ me: 'bob', identitySecret: counterRng('id bob')(32), config: SMALL, rng: counterRng('old'), state: old });
  bob.s = restored;
  stranger(w, 'm5', 'bob', 'm5');
  deliverAll(w, 'bob');
  for (const m of ['m2', 'm3', 'm5']) assert.ok(secure(w, 'bob', m), m);
  const bad = structuredClone(saved);
  bad.peers[0].unsolicited = 1;
  assert.throws(() => Sessions.restore({ me: 'bob', identitySecret: counterRng('id bob')(32), rng: counterRng('x'), state: bad }), /damaged/);
});

// ---- the vectors ----

const v = vectors.sessions_full;

function actionJson(a) {
  switch (a.type) {
    case 'Persist':
      return { type: 'Persist' };
    case 'Send':
      return { type: 'Send', to: a.to, payload: toHex(a.payload), line: a.line };
    case 'SendPlain':
      return { type: 'SendPlain', to: a.to, text: a.text, line: a.line };
    case 'Publish':
      return { type: 'Publish', message: toHex(encodeClient({ type: 'PublishKeys', keys: a.upload })) };
    case 'FetchBundle':
      return { type: 'FetchBundle', nick: a.nick };
    case 'Event': {
      const e = a.event;
      switch (e.kind) {
        case 'Ready':
          return { type: 'Event', event: { kind: 'Ready', peer: e.peer, key: toHex(e.key), trust: e.trust, by_peer: e.byPeer } };
        case 'Message':
          return { type: 'Event', event: { kind: 'Message', peer: e.peer, id: Number(e.id), text: e.text } };
        case 'Failed':
          return { type: 'Event', event: { kind: 'Failed', peer: e.peer, failure: failureWords(e.failure), unsent: e.unsent } };
        case 'Ended':
          return { type: 'Event', event: { kind: 'Ended', peer: e.peer, unsent: e.unsent } };
        default:
          return { type: 'Event', event: { kind: e.kind, peer: e.peer } };
      }
    }
    default:
      throw new Error(`unknown action ${a.type}`);
  }
}

function bundleOf(b) {
  return {
    type: 'Keys',
    bundle: {
      identity: fromHex(b.identity),
      signed_prekey: { id: b.signed_prekey.id, key: fromHex(b.signed_prekey.key), signature: fromHex(b.signed_prekey.signature) },
      one_time: b.one_time === null ? null : { id: b.one_time.id, key: fromHex(b.one_time.key) },
    },
  };
}

const configOf = (who) => (who === 'alice' ? { maxPeers: v.config.max_peers, maxUnsolicited: v.config.max_unsolicited } : undefined);

test('the sessions_full vectors make room, refuse and reload as Rust did', () => {
  assert.ok(v.steps.some((s) => s.op === 'reload'));
  assert.ok(v.steps.filter((s) => s.refused === 'TooManyPeers').length >= 2);
  const js = {};
  v.parties.forEach((p, i) => {
    js[p] = Sessions.create({ me: p, identitySecret: fromHex(v.identities[i]), config: configOf(p), rng: counterRng(v.rng_labels[i]) });
  });
  const ours = new Map(); // Rust's payload hex -> the payload JS sent in its place
  let replays = 0;
  let unreadable = 0;
  for (const [i, step] of v.steps.entries()) {
    const s = js[step.who];
    const where = `step ${i} (${step.who} ${step.op})`;
    let actions = [];
    const refusable = (f) => {
      if (step.refused === undefined) return f();
      assert.throws(f, (e) => e instanceof Refused && e.kind === step.refused && e.message === step.words, where);
      return [];
    };
    switch (step.op) {
      case 'login':
        actions = s.login(step.at_ms, step.now_ms);
        break;
      case 'published':
        actions = s.published(step.one_time, step.other_device);
        break;
      case 'start':
        actions = refusable(() => s.start(step.peer, step.at_ms));
        break;
      case 'end':
        actions = refusable(() => s.end(step.peer));
        break;
      case 'send_text':
        actions = refusable(() => {
          const out = s.sendText(step.to, step.text, step.line, step.at_ms);
          assert.equal(out.kind, step.outcome, where);
          return out.actions ?? [];
        });
        break;
      case 'bundle':
        actions = s.bundle(step.peer, bundleOf(step.bundle), step.at_ms);
        break;
      case 'receive': {
        const p = ours.get(step.payload);
        assert.ok(p, `${where}: JS never sent the payload received here`);
        actions = s.receive(step.from, BigInt(step.id), p, step.at_ms);
        break;
      }
      case 'acknowledged':
        s.acknowledged(BigInt(step.up_to));
        break;
      case 'reload':
        js[step.who] = Sessions.restore({
          me: step.who, identitySecret: fromHex(v.identities[v.parties.indexOf(step.who)]), config: configOf(step.who),
          rng: counterRng(v.reload_rng_label), state: structuredClone(s.toState()),
        });
        break;
      default:
        throw new Error(`unknown op ${step.op}`);
    }
    const got = actions.map(actionJson);
    assert.equal(got.length, step.actions.length, `${where}: action count`);
    for (let j = 0; j < got.length; j++) {
      if (step.actions[j].type === 'Send' && got[j].type === 'Send') ours.set(step.actions[j].payload, fromHex(got[j].payload));
    }
    assert.deepEqual(got, step.actions, where);
    replays += got.filter((a) => a.event?.kind === 'Replayed').length;
    unreadable += got.filter((a) => a.event?.kind === 'Unreadable').length;
  }
  assert.ok(replays >= 3, 'evicted peers writing again');
  assert.equal(unreadable, 1, 'the start with no room');
});
