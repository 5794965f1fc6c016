// The session manager against Rust's: e2e-v1.json's `sessions` section is a scripted run of
// Rust's Sessions (common/src/e2e/tests/vectors/sessions.rs). (a) JS Sessions with the same
// identities and CounterRng labels give the same actions, uploads and payloads byte for byte;
// (b) each party alone in JS reads the payloads Rust's other parties sent. The `sessions_held`
// section (common/src/e2e/tests/vectors/held.rs) is replayed the same way: messages under a
// changed key held until /accept-key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sessions, failureWords, isBlocking } from '../src/e2e/sessions.js';
import { encodeClient } from '../src/protocol.js';
import { vectors, counterRng, fromHex, toHex } from './e2e-helpers.js';

const v = vectors.sessions;
const held = vectors.sessions_held;
const notice = vectors.sessions_notice;

/** A JS action in the vectors' JSON form. */
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
    case 'Event':
      return { type: 'Event', event: eventJson(a.event) };
    default:
      throw new Error(`unknown action ${a.type}`);
  }
}

function eventJson(e) {
  switch (e.kind) {
    case 'Ready':
      return { kind: 'Ready', peer: e.peer, key: toHex(e.key), trust: e.trust, by_peer: e.byPeer };
    case 'Message':
      return { kind: 'Message', peer: e.peer, id: Number(e.id), text: e.text };
    case 'Failed':
      return { kind: 'Failed', peer: e.peer, failure: failureWords(e.failure), unsent: e.unsent };
    case 'Ended':
      return { kind: 'Ended', peer: e.peer, unsent: e.unsent };
    case 'OtherDevice':
      return { kind: 'OtherDevice' };
    case 'Held':
      return { kind: 'Held', peer: e.peer, held: e.held, dropped: e.dropped };
    case 'Released':
      return { kind: 'Released', peer: e.peer, key: toHex(e.key), count: e.count };
    case 'PeerCouldNotRead':
      return { kind: 'PeerCouldNotRead', peer: e.peer, count: e.count };
    default:
      return { kind: e.kind, peer: e.peer };
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

function parties(section = v) {
  const out = {};
  section.parties.forEach((p, i) => {
    const me = section.nicks?.[i] ?? p;
    out[p] = Sessions.create({ me, identitySecret: fromHex(section.identities[i]), rng: counterRng(section.rng_labels[i]) });
  });
  return out;
}

/** Runs one step on `s`; `payloadOf(hex)` gives the bytes to receive. Returns the actions. */
function runStep(s, step, payloadOf) {
  switch (step.op) {
    case 'login':
      return s.login(step.at_ms, step.now_ms);
    case 'published':
      return s.published(step.one_time, step.other_device);
    case 'prekeys_low':
      return s.prekeysLow(step.one_time);
    case 'start':
      return s.start(step.peer, step.at_ms);
    case 'end':
      return s.end(step.peer);
    case 'accept_key':
      return s.acceptKey(step.peer, step.at_ms);
    case 'not_shown':
      s.notShown(step.peer, BigInt(step.id));
      return [];
    case 'acknowledged':
      s.acknowledged(BigInt(step.up_to));
      return [];
    case 'show_released':
      return s.showReleased(step.at_ms);
    case 'send_text': {
      const out = s.sendText(step.to, step.text, step.line, step.at_ms);
      assert.equal(out.kind, step.outcome);
      return out.actions ?? [];
    }
    case 'bundle':
      return s.bundle(step.peer, bundleOf(step.bundle), step.at_ms);
    case 'receive':
      return s.receive(step.from, BigInt(step.id), payloadOf(step.payload), step.at_ms);
    default:
      throw new Error(`unknown op ${step.op}`);
  }
}

test('the vectors hold a scripted run with starts with and without a one-time prekey', () => {
  assert.ok(v.steps.length >= 20);
  const bundles = v.steps.filter((s) => s.op === 'bundle');
  assert.ok(bundles.some((s) => s.bundle.one_time !== null));
  assert.ok(bundles.some((s) => s.bundle.one_time === null), 'a last-resort start');
  const texts = v.steps.flatMap((s) => s.actions).filter((a) => a.event?.kind === 'Message');
  assert.ok(texts.length >= 10);
  const ops = new Set(v.steps.map((s) => s.op));
  for (const op of ['login', 'published', 'prekeys_low', 'start', 'end', 'send_text', 'bundle', 'receive']) assert.ok(ops.has(op), op);
  const publishes = v.steps.flatMap((s) => s.actions).filter((a) => a.type === 'Publish');
  assert.ok(publishes.length >= 4, 'first uploads, a rotation, a new batch');
  assert.ok(v.steps.some((s) => s.actions.some((a) => a.event?.kind === 'OtherDevice')));
});

/** Runs a section's steps in JS; each step's actions must be Rust's, byte for byte. */
function byteForByte(section) {
  const js = parties(section);
  const ours = new Map(); // Rust's payload hex -> the payload JS sent in its place
  for (const [i, step] of section.steps.entries()) {
    const actions = runStep(js[step.who], step, (hex) => {
      const p = ours.get(hex);
      assert.ok(p, `step ${i}: JS never sent the payload received here`);
      return p;
    });
    const got = actions.map(actionJson);
    const want = step.actions;
    assert.equal(got.length, want.length, `step ${i} (${step.who} ${step.op}): action count`);
    for (let j = 0; j < got.length; j++) {
      if (want[j].type === 'Send' && got[j].type === 'Send') ours.set(want[j].payload, fromHex(got[j].payload));
    }
    assert.deepEqual(got, want, `step ${i} (${step.who} ${step.op})`);
  }
}

test('JS Sessions give Rust\'s uploads, payloads and events byte for byte', () => byteForByte(v));

test('messages under a changed key: held, said, and released at /accept-key as Rust does, byte for byte', () => {
  const events = held.steps.flatMap((s) => s.actions).filter((a) => a.type === 'Event').map((a) => a.event);
  assert.ok(events.some((e) => e.kind === 'Held' && e.held === 2), 'two held');
  assert.ok(events.some((e) => e.kind === 'Released' && e.count === 2), 'released at /accept-key');
  const accept = held.steps.find((s) => s.op === 'accept_key');
  assert.deepEqual(accept.actions.filter((a) => a.event?.kind === 'Message').map((a) => a.event.text), ["It's me, new phone", 'Did you get it?']);
  // Not shown then (a failed save): shown once a save works, from the texts kept.
  const shownLater = held.steps.find((s) => s.op === 'show_released');
  assert.deepEqual(shownLater.actions.filter((a) => a.event?.kind === 'Message').map((a) => a.event.text), ["It's me, new phone", 'Did you get it?']);
  byteForByte(held);
});

test('a peer who lost its keys tells the sender, who is blocked, then told the count at /accept-key, as Rust does, byte for byte', () => {
  const carolNew = notice.steps.filter((s) => s.who === 'carol-new' && s.op === 'receive');
  // Two unreadable messages: the first fetches Bob's keys, the second only counts.
  assert.deepEqual(carolNew[0].actions.map((a) => a.type), ['Event', 'FetchBundle']);
  assert.deepEqual(carolNew[1].actions.map((a) => a.type), ['Event']);
  const sent = notice.steps.find((s) => s.who === 'carol-new' && s.op === 'bundle').actions.filter((a) => a.type === 'Send');
  assert.equal(sent.length, 1);
  assert.equal(sent[0].line, null, 'no user text');
  const bob = notice.steps.filter((s) => s.who === 'bob' && s.op !== 'login');
  const blocked = bob.find((s) => s.actions.some((a) => a.event?.kind === 'Held'));
  assert.ok(blocked.actions.some((a) => a.event?.kind === 'Failed' && a.event.failure.includes('CHANGED')), JSON.stringify(blocked.actions));
  const accept = notice.steps.find((s) => s.op === 'accept_key');
  assert.deepEqual(accept.actions.filter((a) => a.event?.kind === 'PeerCouldNotRead').map((a) => a.event.count), [2]);
  byteForByte(notice);
});

test('each party of the notice run alone in JS reads the payloads Rust sent it', () => {
  for (const who of notice.parties) {
    const js = parties(notice)[who];
    for (const [i, step] of notice.steps.entries()) {
      if (step.who !== who) continue;
      const got = runStep(js, step, fromHex).map(actionJson);
      const strip = (a) => (a.type === 'Send' ? { ...a, payload: a.payload.length > 0 } : a);
      assert.deepEqual(got.map(strip), step.actions.map(strip), `${who}, step ${i} (${step.op})`);
    }
  }
});

test('each party alone in JS reads the payloads Rust sent it and answers as Rust did', () => {
  for (const who of v.parties) {
    const js = parties()[who];
    let messages = 0;
    for (const [i, step] of v.steps.entries()) {
      if (step.who !== who) continue;
      const got = runStep(js, step, fromHex).map(actionJson);
      // Compared without the payload bytes, so that this holds even without byte parity.
      const strip = (a) => (a.type === 'Send' ? { ...a, payload: a.payload.length > 0 } : a);
      assert.deepEqual(got.map(strip), step.actions.map(strip), `${who}, step ${i} (${step.op})`);
      messages += got.filter((a) => a.event?.kind === 'Message').length;
    }
    assert.ok(messages > 0, `${who} read messages`);
  }
});

test('failures, refusals and trust say Rust\'s words', async () => {
  const { Refused: R } = await import('../src/e2e/sessions.js');
  const { TRUST_WORDS } = await import('../src/e2e/trust.js');
  const failure = (f) => {
    if (f.kind === 'KeyChanged') return { kind: f.kind, pinned: fromHex(f.pinned), presented: fromHex(f.presented) };
    if (f.kind === 'RateLimited') return { kind: f.kind, retryAfterMs: BigInt(f.retry_after_ms) };
    return { kind: f.kind };
  };
  for (const c of v.words.failures) {
    assert.equal(failureWords(failure(c.failure)), c.words, c.failure.kind);
    assert.equal(isBlocking(failure(c.failure)), c.blocking, c.failure.kind);
  }
  for (const c of v.words.refusals) {
    const r = c.refused;
    const e = new R(r.kind, { peer: r.peer, failure: r.failure && failure(r.failure), text: r.text });
    assert.equal(e.message, c.words, r.kind);
    assert.equal(e.kind, r.kind);
    assert.ok(e instanceof Error);
  }
  for (const c of v.words.trust) assert.equal(TRUST_WORDS[c.trust], c.words);
  assert.equal(new Set(v.words.refusals.map((c) => c.refused.kind)).size, 13, 'every variant');
});
