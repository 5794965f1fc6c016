// The session manager JS <-> JS through an in-memory directory and relay (e2e-sessions-world.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sessions, Refused, failureWords, isBlocking } from '../src/e2e/sessions.js';
import { E2eError } from '../src/e2e/errors.js';
import { MAX_PEERS, MAX_HELD_PER_PEER, MAX_PINS } from '../src/e2e/config.js';
import { MAX_RELAY_LEN } from '../src/protocol.js';
import { World } from './e2e-sessions-world.js';
import { counterRng } from './e2e-helpers.js';

const texts = World.texts;

/** Alice and Bob, both logged in (keys published). */
function pair() {
  const w = new World();
  const alice = w.add('alice');
  const bob = w.add('bob');
  w.login('alice');
  w.login('bob');
  return { w, alice, bob };
}

function refusal(fn, kind) {
  assert.throws(fn, (e) => e instanceof Refused && e.kind === kind, `Refused ${kind}`);
}

test('online start: the first text fetches the keys, starts, and both sides talk', () => {
  const { w, alice, bob } = pair();
  assert.deepEqual(alice.s.status('bob'), { kind: 'Ready' });
  assert.equal(w.say('alice', 'bob', 'hello', 1), 'Queued');
  assert.equal(alice.s.status('bob').kind, 'Secure');
  assert.equal(alice.events.find((e) => e.kind === 'Ready').trust, 'New');
  const ev = w.deliver('bob');
  assert.deepEqual(texts(ev), ['hello']);
  assert.equal(ev[0].kind, 'Ready');
  assert.equal(ev[0].byPeer, true);
  assert.equal(w.say('bob', 'alice', 'hi', 1), 'Secure');
  assert.deepEqual(texts(w.deliver('alice')), ['hi']);
  assert.equal(w.say('alice', 'bob', 'again', 2), 'Secure');
  assert.deepEqual(texts(w.deliver('bob')), ['again']);
  assert.equal(alice.s.safetyNumber('bob'), bob.s.safetyNumber('alice'));
  assert.match(alice.s.safetyNumber('bob'), /^(\d{5} ){11}\d{5}$/);
  assert.equal(alice.s.status('bob').trust, 'Pinned');
  assert.equal(w.directory.get('bob').one_time.length, 99, 'one one-time prekey handed out');
});

test('a start while the peer is offline: every text carries the start until it answers', () => {
  const w = new World();
  const alice = w.add('alice');
  const bob = w.add('bob');
  w.login('bob'); // publishes, then is gone
  w.login('alice');
  w.say('alice', 'bob', 'one', 1);
  w.say('alice', 'bob', 'two', 2);
  w.say('alice', 'bob', 'three', 3);
  assert.equal(alice.sent.length, 3);
  // Bob comes back: only the last arrives first, then the others.
  assert.deepEqual(texts(w.deliver('bob', (m) => m.id === alice.sent[2].id)), ['three']);
  assert.deepEqual(texts(w.deliver('bob')), ['one', 'two']);
  w.say('bob', 'alice', 'back', 1);
  assert.deepEqual(texts(w.deliver('alice')), ['back']);
  w.say('alice', 'bob', 'four', 4);
  assert.equal(alice.sent[3].payload[0], 1, 'after the answer, a plain Message envelope');
  assert.deepEqual(texts(w.deliver('bob')), ['four']);
});

test('both sides starting at once converge on one session', () => {
  const { w, alice, bob } = pair();
  w.say('alice', 'bob', 'from alice', 1);
  w.say('bob', 'alice', 'from bob', 1);
  assert.deepEqual(texts(w.deliver('bob')), ['from alice']);
  assert.deepEqual(texts(w.deliver('alice')), ['from bob']);
  for (let i = 0; i < 3; i++) {
    w.say('alice', 'bob', `a${i}`, 10 + i);
    assert.deepEqual(texts(w.deliver('bob')), [`a${i}`]);
    w.say('bob', 'alice', `b${i}`, 10 + i);
    assert.deepEqual(texts(w.deliver('alice')), [`b${i}`]);
  }
  const a = alice.s.existing('bob').sessions[0].ephemeral;
  const b = bob.s.existing('alice').sessions[0].ephemeral;
  assert.deepEqual(a, b, 'the same current session on both sides');
});

test('a key change blocks sending until /accept-key; /verified never accepts it', () => {
  const { w, alice, bob } = pair();
  w.say('alice', 'bob', 'hello', 1);
  w.deliver('bob');
  alice.s.markVerified('bob', w.now);
  assert.equal(alice.s.status('bob').trust, 'Verified');
  const oldNumber = alice.s.safetyNumber('bob');
  // Bob's account gets a new identity (another device, or an attacker with the server).
  const bob2 = w.add('bob', { seed: 'bob-new' });
  w.login('bob');
  w.say('bob', 'alice', 'new me', 1);
  const ev = w.deliver('alice');
  assert.deepEqual(texts(ev), [], 'the message of the new key is not shown');
  const failed = ev.find((e) => e.kind === 'Failed');
  assert.equal(failed.failure.kind, 'KeyChanged');
  assert.ok(isBlocking(failed.failure));
  assert.deepEqual(failed.failure.presented, bob2.s.publicKey);
  assert.match(failureWords(failed.failure), /^the peer's key CHANGED \(pinned [0-9a-f]{4} /);
  assert.equal(alice.s.status('bob').kind, 'Failed');
  assert.equal(alice.s.safetyNumberIsOfNewKey('bob'), true);
  assert.notEqual(alice.s.safetyNumber('bob'), oldNumber, 'the number of the new key');
  refusal(() => alice.s.sendText('bob', 'secret', 2, w.now), 'KeyNotAccepted');
  refusal(() => alice.s.start('bob', w.now), 'KeyNotAccepted');
  refusal(() => alice.s.markVerified('bob', w.now), 'KeyNotAccepted');
  assert.equal(
    new Refused('KeyNotAccepted', { peer: 'bob' }).message,
    "bob's key changed and nothing was sent; compare the safety number of the new key (/verify bob) with bob, then /accept-key bob (and /verified bob if the numbers matched), or /insecure bob to send unencrypted",
  );
  assert.equal(alice.sent.length, 1, 'nothing more was sent');
  // The block survives a restart.
  w.restart('alice');
  refusal(() => alice.s.sendText('bob', 'secret', 2, w.now), 'KeyNotAccepted');
  refusal(() => bob.s.acceptKey('alice', w.now), 'NothingToAccept');
  const before = alice.events.length;
  w.carry(alice, alice.s.acceptKey('bob', w.now));
  // The message held under the new key is shown now; its session start is taken.
  assert.deepEqual(texts(alice.events.slice(before)), ['new me']);
  assert.equal(alice.s.safetyNumberIsOfNewKey('bob'), false);
  assert.equal(alice.s.safetyNumber('bob'), bob2.s.safetyNumber('alice'));
  assert.equal(w.say('alice', 'bob', 'welcome back', 3), 'Secure');
  assert.equal(alice.s.status('bob').trust, 'Pinned', 'accepted, not verified');
  assert.deepEqual(texts(w.deliver('bob')), ['welcome back']);
});

test('/insecure sends plain (the sessions kept), /secure resumes them', () => {
  const { w, alice, bob } = pair();
  w.say('alice', 'bob', 'secret', 1);
  w.deliver('bob');
  w.carry(alice, alice.s.end('bob'));
  assert.equal(alice.events.at(-1).kind, 'Ended');
  assert.deepEqual(alice.s.status('bob'), { kind: 'Plain' });
  assert.equal(w.say('alice', 'bob', 'plain now', 2), 'Plain');
  refusal(() => alice.s.end('bob'), 'AlreadyPlain');
  // What bob sends encrypted still reads.
  w.say('bob', 'alice', 'still secure', 1);
  assert.deepEqual(texts(w.deliver('alice')), ['still secure']);
  w.carry(alice, alice.s.start('bob', w.now));
  assert.equal(alice.events.at(-1).kind, 'Resumed');
  refusal(() => alice.s.start('bob', w.now), 'AlreadySecure');
  assert.equal(w.say('alice', 'bob', 'secure again', 3), 'Secure');
  assert.deepEqual(texts(w.deliver('bob')), ['secure again']);
  refusal(() => alice.s.start('alice', w.now), 'Yourself');
  refusal(() => alice.s.start('no body', w.now), 'InvalidNick');
  assert.equal(new Refused('InvalidNick', { peer: 'no body' }).message, '"no body" is not a valid nick');
  refusal(() => alice.s.sendText('bob', 'a\u0007b', 4, w.now), 'InvalidText');
});

test('a payload the server replays is Replayed; an altered one Unreadable; neither changes the session', () => {
  const { w, alice, bob } = pair();
  w.say('alice', 'bob', 'one', 1);
  const first = alice.sent[0];
  w.deliver('bob');
  assert.deepEqual(bob.s.receive('alice', 99n, first.payload, 0).map((a) => a.event?.kind), ['Replayed']);
  // A session start taken once is never taken again, whoever the server says sends it.
  assert.deepEqual(bob.s.receive('dave', 98n, first.payload, 0).map((a) => a.event?.kind), ['Replayed']);
  w.say('alice', 'bob', 'two', 2);
  const second = alice.sent[1];
  // Bytes the session reads (the header and the ciphertext; a start's identity and prekey ids
  // count only for a session not known yet, and its keys are bound by the associated data).
  for (const at of [70, 75, second.payload.length - 20, second.payload.length - 1]) {
    const bad = Uint8Array.from(second.payload);
    bad[at] ^= 0x20;
    const got = bob.s.receive('alice', 100n + BigInt(at), bad, 0);
    assert.deepEqual(got.map((a) => a.event?.kind), ['Unreadable'], `byte ${at}`);
  }
  assert.deepEqual(texts(w.deliver('bob')), ['two'], 'the genuine one still reads');
  w.say('bob', 'alice', 'ok', 1);
  w.deliver('alice');
  w.say('alice', 'bob', 'three', 3);
  const third = alice.sent[2];
  w.deliver('bob');
  assert.deepEqual(bob.s.receive('alice', 500n, third.payload, 0).map((a) => a.event?.kind), ['Replayed']);
  // From a nick with no session at all it is unreadable, and that peer is told once its keys
  // come (notice.js: bounded, at most once per peer per 10 minutes): a fetch, an unsolicited
  // entry waiting for them, no session.
  const kinds = (actions) => actions.map((a) => (a.type === 'Event' ? a.event.kind : a.type));
  assert.deepEqual(kinds(bob.s.receive('mallory', 501n, third.payload, 0)), ['Unreadable', 'FetchBundle']);
  assert.equal(bob.s.existing('mallory')?.sessions.length, 0, 'junk makes no session');
  assert.equal(bob.s.existing('mallory')?.unsolicited, true);
  assert.deepEqual(kinds(bob.s.receive('mallory', 502n, third.payload, 0)), ['Unreadable'], 'one fetch at a time');
});

test('toState/restore mid-conversation carries on both ways; a damaged state is refused whole', () => {
  const { w, alice, bob } = pair();
  w.say('alice', 'bob', 'one', 1);
  w.deliver('bob');
  w.say('bob', 'alice', 'two', 1);
  w.deliver('alice');
  w.say('alice', 'bob', 'three', 2); // in flight over the restart
  w.restart('alice');
  w.restart('bob');
  assert.deepEqual(texts(w.deliver('bob')), ['three']);
  w.say('bob', 'alice', 'four', 2);
  assert.deepEqual(texts(w.deliver('alice')), ['four']);
  w.say('alice', 'bob', 'five', 3);
  assert.deepEqual(texts(w.deliver('bob')), ['five']);
  assert.equal(alice.s.status('bob').trust, 'Pinned', 'the pins are in the state');
  const state = alice.s.toState();
  const secret = counterRng('id alice')(32);
  const restore = (st) => Sessions.restore({ me: 'alice', identitySecret: secret, rng: counterRng('x'), state: st });
  restore(structuredClone(state));
  const damage = [
    (s) => { s.v = 3; },
    (s) => { s.peers[0].held = [{ id: 1n, payload: new Uint8Array(MAX_RELAY_LEN + 1) }]; },
    (s) => { s.peers[0].held = Array.from({ length: 51 }, (_, i) => ({ id: BigInt(i), payload: new Uint8Array(1) })); },
    (s) => { s.peers[0].held = [{ id: -1n, payload: new Uint8Array(1) }]; },
    (s) => { delete s.peers[0].heldDropped; },
    (s) => { s.identity = new Uint8Array(32); },
    (s) => { s.peers[0].sessions[0].ratchet = s.peers[0].sessions[0].ratchet.subarray(1); },
    (s) => { s.peers[0].intent = 'Maybe'; },
    (s) => { s.keys.signed[0].secret = new Uint8Array(31); },
    (s) => { s.keys.oneTime.push(s.keys.oneTime[0]); },
    (s) => { s.pins[0].key = 'x'; },
    (s) => { s.peers[0].unacknowledged = [{ id: -1n, digest: new Uint8Array(32), text: 'x' }]; },
    (s) => { delete s.keys; },
    (s) => { s.peers = null; },
  ];
  for (const [i, d] of damage.entries()) {
    const st = structuredClone(state);
    d(st);
    assert.throws(() => restore(st), (e) => e instanceof E2eError && e.why === 'Format', `damage ${i}`);
  }
  assert.throws(() => restore(null), (e) => e instanceof E2eError && e.why === 'Format');
});

test('a message decrypted and saved but not acknowledged is shown again once after a restart', () => {
  const { w, alice, bob } = pair();
  w.say('alice', 'bob', 'keep me', 1);
  const m = alice.sent[0];
  w.deliver('bob');
  w.restart('bob');
  const again = bob.s.receive('alice', m.id, m.payload, 0);
  assert.deepEqual(again, [{ type: 'Event', event: { kind: 'Message', peer: 'alice', id: m.id, text: 'keep me' } }]);
  assert.deepEqual(bob.s.receive('alice', m.id, m.payload, 0).map((a) => a.event.kind), ['Replayed'], 'only once');
  const other = Uint8Array.from(m.payload);
  other[10] ^= 1;
  w.restart('bob');
  assert.deepEqual(bob.s.receive('alice', m.id, other, 0).map((a) => a.event.kind), ['Replayed'], 'only the same bytes');
  // notShown: the page could not show it; shown when it comes again.
  w.restart('bob');
  bob.s.receive('alice', m.id, m.payload, 0);
  bob.s.notShown('alice', m.id);
  assert.equal(texts(bob.s.receive('alice', m.id, m.payload, 0).map((a) => a.event)).length, 1);
  // Acknowledged: forgotten, and the ratchet says it is old.
  bob.s.acknowledged(m.id);
  w.carry(bob, [{ type: 'Persist' }]);
  w.restart('bob');
  assert.deepEqual(bob.s.receive('alice', m.id, m.payload, 0).map((a) => a.event.kind), ['Replayed']);
});

test('bounds: QueueFull at max_queued texts waiting, TooManyPeers beyond MAX_PEERS', () => {
  const w = new World();
  const alice = w.add('alice');
  w.answerFetches = false;
  for (let i = 0; i < 64; i++) alice.s.sendText('bob', `t${i}`, i, 0);
  refusal(() => alice.s.sendText('bob', 'one more', 64, 0), 'QueueFull');
  assert.equal(new Refused('QueueFull', { peer: 'bob' }).message, "too many messages waiting for bob's keys");
  const small = Sessions.create({ me: 'carol', identitySecret: counterRng('c')(32), rng: counterRng('c'), config: { maxQueued: 2 } });
  small.sendText('bob', 'a', 1, 0);
  small.sendText('bob', 'b', 2, 0);
  refusal(() => small.sendText('bob', 'c', 3, 0), 'QueueFull');
  // The table: peers the user asked for are never dropped to make room.
  for (let i = 1; i < MAX_PEERS; i++) alice.s.start(`p${i}`, 0); // and bob
  refusal(() => alice.s.start('onemore', 0), 'TooManyPeers');
  refusal(() => alice.s.sendText('onemore', 'x', 1, 0), 'TooManyPeers');
  assert.equal(new Refused('TooManyPeers').message, `too many end-to-end conversations (${MAX_PEERS} people, the most kept): nothing was sent or changed`);
  // Junk from an unknown nick is not refused loudly: it is unreadable and makes no entry.
  const got = alice.s.receive('onemore', 1n, new Uint8Array([1, 2, 3]), 0);
  assert.deepEqual(got.map((a) => a.event.kind), ['Unreadable']);
});

test('a key request not answered in time fails its texts at tick', () => {
  const w = new World();
  const alice = w.add('alice');
  w.answerFetches = false;
  assert.equal(alice.s.pollTimeout(), null);
  w.now = 1000;
  w.say('alice', 'bob', 'waiting', 7);
  w.say('alice', 'bob', 'waiting too', 8);
  assert.equal(alice.s.status('bob').kind, 'Starting');
  assert.equal(alice.s.pollTimeout(), 31_000);
  assert.deepEqual(alice.s.tick(30_999), []);
  const acts = alice.s.tick(31_000);
  assert.deepEqual(acts, [{ type: 'Event', event: { kind: 'Failed', peer: 'bob', failure: { kind: 'Timeout' }, unsent: [7, 8] } }]);
  assert.equal(failureWords(acts[0].event.failure), 'the server did not answer the request for keys');
  assert.equal(alice.s.pollTimeout(), null);
  assert.equal(alice.s.status('bob').kind, 'Failed');
  // Not blocking: the next text tries again.
  assert.equal(w.say('alice', 'bob', 'retry', 9), 'Queued');
  // The late answer to the failed request is ignored only if nobody waits; here the retry waits.
  assert.equal(alice.s.status('bob').kind, 'Starting');
});

test('directory answers: no keys, no such user, rate limited, a bad signature blocks', () => {
  const w = new World();
  const alice = w.add('alice');
  w.add('bob');
  w.login('bob');
  w.answerFetches = false;
  const answer = (kind, extra = {}) => {
    alice.s.sendText('bob', 'x', 1, 0);
    return alice.s.bundle('bob', { type: kind, ...extra }, 0).find((a) => a.type === 'Event').event;
  };
  assert.equal(answer('NoKeys').failure.kind, 'NoKeys');
  assert.equal(answer('NoSuchUser').failure.kind, 'NoSuchUser');
  const rl = answer('RateLimited', { retry_after_ms: 1500n }).failure;
  assert.equal(failureWords(rl), 'the server limits key requests; try again in 2 s');
  assert.equal(answer('Busy').failure.kind, 'Busy');
  const good = w.fetch('bob');
  const sig = Uint8Array.from(good.bundle.signed_prekey.signature);
  sig[3] ^= 1;
  alice.s.sendText('bob', 'x', 1, 0);
  const acts = alice.s.bundle('bob', { type: 'Keys', bundle: { ...good.bundle, signed_prekey: { ...good.bundle.signed_prekey, signature: sig } } }, 0);
  assert.equal(acts[0].type, 'Persist', 'a block is saved');
  assert.equal(acts[1].event.failure.kind, 'BadSignature');
  refusal(() => alice.s.sendText('bob', 'y', 2, 0), 'Blocked');
  // /secure is the retry; the genuine bundle starts the session.
  w.carry(alice, alice.s.start('bob', 0));
  const ok = alice.s.bundle('bob', good, 0);
  assert.equal(ok[1].event.kind, 'Ready');
  assert.deepEqual(alice.s.bundle('bob', good, 0), [], 'an answer nobody waits for is ignored');
});

test('texts typed after /insecure wait behind those queued for keys, and go plain after them', () => {
  const w = new World();
  const alice = w.add('alice');
  w.add('bob');
  w.login('bob');
  w.answerFetches = false;
  assert.equal(w.say('alice', 'bob', 'secret one', 1), 'Queued');
  w.carry(alice, alice.s.end('bob'));
  assert.equal(w.say('alice', 'bob', 'plain two', 2), 'QueuedPlain');
  // The keys come: the first goes encrypted, then the plain one, in order.
  const { c, nick } = w.pendingFetches.shift();
  const acts = c.s.bundle(nick, w.fetch(nick), 0);
  assert.deepEqual(acts.map((a) => a.type), ['Persist', 'Event', 'Send', 'SendPlain']);
  assert.equal(acts[2].line, 1);
  assert.deepEqual(acts[3], { type: 'SendPlain', to: 'bob', text: 'plain two', line: 2 });
  // With no keys at all: the encrypted ones are reported unsent, the plain ones still go.
  const carol = w.add('carol');
  assert.equal(w.say('carol', 'dave', 'secret', 1), 'Queued');
  w.carry(carol, carol.s.end('dave'));
  assert.equal(w.say('carol', 'dave', 'plain', 2), 'QueuedPlain');
  const failed = carol.s.bundle('dave', { type: 'NoKeys' }, 0);
  assert.deepEqual(failed, [
    { type: 'Event', event: { kind: 'Failed', peer: 'dave', failure: { kind: 'NoKeys' }, unsent: [1] } },
    { type: 'SendPlain', to: 'dave', text: 'plain', line: 2 },
  ]);
});

test('/secure while the keys are fetched after /insecure is done, saved, and the waiting lines go encrypted', () => {
  const w = new World();
  const alice = w.add('alice');
  w.add('bob');
  w.login('bob');
  w.answerFetches = false;
  assert.equal(w.say('alice', 'bob', 'one', 1), 'Queued');
  w.carry(alice, alice.s.end('bob'));
  assert.equal(w.say('alice', 'bob', 'two', 2), 'QueuedPlain');
  const done = alice.s.start('bob', 0);
  assert.deepEqual(done, [{ type: 'Persist' }, { type: 'Event', event: { kind: 'Resumed', peer: 'bob' } }]);
  w.carry(alice, done);
  assert.equal(alice.s.status('bob').kind, 'Starting');
  // Saved: a restart from it is end-to-end with Bob, not plain.
  assert.notEqual(w.restart('alice').s.status('bob').kind, 'Plain');
  // (The restart dropped the waiting lines, as a real one does; check the sending on a fresh run.)
  const w2 = new World();
  const a2 = w2.add('alice');
  w2.add('bob');
  w2.login('bob');
  w2.answerFetches = false;
  w2.say('alice', 'bob', 'one', 1);
  w2.carry(a2, a2.s.end('bob'));
  w2.say('alice', 'bob', 'two', 2);
  w2.carry(a2, a2.s.start('bob', 0));
  const { c, nick } = w2.pendingFetches.shift();
  const acts = c.s.bundle(nick, w2.fetch(nick), 0);
  assert.deepEqual(acts.map((a) => a.type), ['Persist', 'Event', 'Send', 'Send']);
  assert.deepEqual(acts.filter((a) => a.type === 'Send').map((a) => a.line), [1, 2]);
});

test('a refused command or text changes nothing (the state to save is the same)', () => {
  const same = (c, peer, what, fn) => {
    const before = JSON.stringify(c.s.toState(), (_, v) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? Array.from(v) : v));
    const status = c.s.status(peer);
    assert.throws(fn, Refused, what);
    const after = JSON.stringify(c.s.toState(), (_, v) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? Array.from(v) : v));
    assert.equal(after, before, `${what} changed the state`);
    assert.deepEqual(c.s.status(peer), status, what);
  };
  // A key change not accepted, in a conversation the user made plain.
  const w = new World();
  w.add('alice');
  const bob = w.add('bob');
  w.login('alice');
  w.login('bob');
  w.say('alice', 'bob', 'hi', 1);
  w.deliver('bob');
  w.add('alice', { seed: 'alice new' }); // a new home under the same nick
  w.login('alice');
  w.say('alice', 'bob', 'under the new key', 2);
  w.deliver('bob');
  assert.equal(bob.s.status('alice').failure?.kind, 'KeyChanged');
  w.carry(bob, bob.s.end('alice'));
  same(bob, 'alice', '/secure, key changed', () => bob.s.start('alice', 0));
  same(bob, 'alice', '/insecure, plain already', () => bob.s.end('alice'));
  same(bob, 'alice', '/verified, key changed', () => bob.s.markVerified('alice', 0));
  same(bob, 'carol', '/accept-key, nothing to accept', () => bob.s.acceptKey('carol', 0));
  same(bob, 'carol', 'a text that breaks the rules', () => bob.s.sendText('carol', 'a\u0007b', 9, 0));
  w.answerFetches = false;
  w.carry(bob, bob.s.start('dave', 0));
  same(bob, 'dave', '/secure, starting', () => bob.s.start('dave', 0));
  const p = pair();
  p.w.say('bob', 'alice', 'hi', 1);
  p.w.deliver('alice');
  assert.equal(p.alice.s.status('bob').kind, 'Secure');
  same(p.alice, 'bob', '/secure, secure already', () => p.alice.s.start('bob', 0));
});

test('a refused /insecure makes no entry (not refused as a table full of conversations)', () => {
  const w = new World();
  const alice = w.add('alice', { config: { endToEndByDefault: false, maxPeers: 2 } });
  w.answerFetches = false;
  for (const p of ['bob', 'carol']) {
    w.carry(alice, alice.s.start(p, 0));
    w.carry(alice, alice.s.end(p));
  }
  refusal(() => alice.s.end('dave'), 'AlreadyPlain');
});

test('/accept-key whose save fails: the released messages come back held, survive acknowledgements, and are shown by showReleased or the next login', () => {
  const { w, bob } = pair();
  w.say('alice', 'bob', 'hi', 1);
  w.deliver('bob');
  w.add('alice', { seed: 'alice new' });
  w.login('alice');
  w.say('alice', 'bob', 'new 1', 2);
  w.say('alice', 'bob', 'new 2', 3);
  w.deliver('bob');
  assert.equal(bob.s.status('alice').failure?.kind, 'KeyChanged');
  const shown = (acts) => acts.filter((a) => a.type === 'Event' && a.event.kind === 'Message').map((a) => a.event.text);
  const acts = bob.s.acceptKey('alice', 0);
  assert.deepEqual(shown(acts), ['new 1', 'new 2']);
  // The save failed: none shown.
  for (const a of acts) if (a.type === 'Event' && a.event.kind === 'Message') bob.s.notShown(a.event.peer, a.event.id);
  bob.s.acknowledged(1_000_000n);
  const again = bob.s.showReleased(0);
  assert.deepEqual(again[0], { type: 'Persist' });
  assert.deepEqual(shown(again), ['new 1', 'new 2']);
  assert.deepEqual(shown(bob.s.showReleased(0)), []);
  assert.deepEqual(shown(bob.s.login(0, 1_700_000_000_000)), []);
});

test('released messages not confirmed kept are saved as held: a reload before the page kept them shows them again; once kept, not', () => {
  const { w, bob } = pair();
  w.say('alice', 'bob', 'hi', 1);
  w.deliver('bob');
  w.add('alice', { seed: 'alice new' });
  w.login('alice');
  w.say('alice', 'bob', 'across a reload', 2);
  w.deliver('bob');
  const shown = (acts) => acts.filter((a) => a.type === 'Event' && a.event.kind === 'Message').map((a) => a.event.text);
  const acts = bob.s.acceptKey('alice', 0);
  assert.deepEqual(shown(acts), ['across a reload']);
  // Saved (every Persist of the list), but the page went before it kept the line.
  const msg = acts.find((a) => a.type === 'Event' && a.event.kind === 'Message').event;
  const saved = structuredClone(bob.s.toState());
  assert.deepEqual(saved.peers.find((p) => p.nick === 'alice').held.map((h) => h.id), [msg.id]);
  const identitySecret = counterRng(`id ${bob.seed}`)(32);
  const reloaded = Sessions.restore({ me: 'bob', identitySecret, rng: counterRng('bob reloaded'), state: saved });
  assert.deepEqual(shown(reloaded.login(0, 1_700_000_000_000)), ['across a reload']);
  // Kept now: no longer saved as held, so the next reload shows nothing again.
  reloaded.shown(msg.peer, msg.id);
  const again = Sessions.restore({ me: 'bob', identitySecret, rng: counterRng('bob again'), state: structuredClone(reloaded.toState()) });
  assert.deepEqual(shown(again.login(0, 1_700_000_000_000)), []);
});

/** Alice, and Bob with MAX_PINS pins of strangers (x0000..x8191; verified if `verified`). */
function fullOfPins(verified) {
  const w = new World();
  const alice = w.add('alice');
  const bob = w.add('bob');
  for (let i = 0; i < MAX_PINS; i++) {
    const nick = `x${String(i).padStart(4, '0')}`;
    const key = new Uint8Array(32);
    new DataView(key.buffer).setUint32(0, i, true);
    bob.s.pins.pinNew(nick, key);
    if (verified) bob.s.pins.markVerified(nick);
  }
  w.login('alice');
  w.login('bob');
  return { w, alice, bob };
}

test('pins are bounded: the least recently pinned stranger\'s pin goes; a conversation\'s stays', () => {
  const { w, bob } = fullOfPins(false);
  w.carry(bob, bob.s.start('x0000', 0));
  w.say('alice', 'bob', 'hello', 1);
  assert.deepEqual(texts(w.deliver('bob')), ['hello']);
  assert.equal(bob.s.pins.size, MAX_PINS);
  assert.notEqual(bob.s.pins.get('alice'), null);
  assert.notEqual(bob.s.pins.get('x0000'), null, 'a conversation\'s pin went');
  assert.equal(bob.s.pins.get('x0001'), null, 'the oldest stranger\'s pin stayed');
  w.add('carol');
  w.login('carol');
  w.say('carol', 'bob', 'hi', 1);
  assert.deepEqual(texts(w.deliver('bob')), ['hi']);
  assert.equal(bob.s.pins.size, MAX_PINS);
  assert.ok(bob.s.pins.get('alice') !== null && bob.s.pins.get('carol') !== null);
  assert.equal(bob.s.pins.get('x0002'), null);
});

test('pins full of verified keys: a stranger\'s start is refused as unreadable before its cryptography', () => {
  const { w, bob } = fullOfPins(true);
  const oneTime = bob.s.keys.oneTime.size;
  w.say('alice', 'bob', 'hello', 1);
  const ev = w.deliver('bob');
  assert.deepEqual(texts(ev), []);
  assert.ok(ev.some((e) => e.kind === 'Unreadable'));
  assert.equal(bob.s.keys.oneTime.size, oneTime, 'a one-time prekey was spent');
  assert.equal(bob.s.pins.size, MAX_PINS);
  assert.equal(bob.s.pins.get('alice'), null);
});

test('a login asks again for the keys the last connection left unanswered, and publishes more when low', () => {
  const w = new World();
  const alice = w.add('alice');
  w.add('bob');
  w.login('bob');
  w.answerFetches = false;
  w.login('alice');
  w.say('alice', 'bob', 'waiting', 1);
  alice.s.disconnected();
  w.pendingFetches = [];
  w.answerFetches = true;
  w.now = 5000;
  w.login('alice');
  assert.equal(alice.s.status('bob').kind, 'Secure', 'the fetch went again at login');
  assert.deepEqual(texts(w.deliver('bob')), ['waiting']);
  // Low on one-time prekeys: a new batch, not while an upload is on its way.
  const more = alice.s.prekeysLow(3);
  assert.deepEqual(more.map((a) => a.type), ['Persist', 'Publish']);
  assert.equal(more[1].upload.one_time.length, 100);
  assert.deepEqual(alice.s.prekeysLow(3), [], 'an upload is on its way');
  alice.s.publishRefused();
  const again = alice.s.prekeysLow(3);
  assert.equal(again[1].upload.one_time.length, 100, 'the refused batch goes again (newest first)');
  assert.deepEqual(again[1].upload.device, more[1].upload.device, 'with the same device token');
  // published() with few left and nothing carried: replenish.
  alice.s.published(100, false);
  const low = alice.s.published(5, false);
  assert.deepEqual(low.map((a) => a.type), ['Persist', 'Persist', 'Publish']);
});

test('a full table makes room from idle entries only', () => {
  const s = Sessions.create({ me: 'alice', identitySecret: counterRng('t')(32), rng: counterRng('t') });
  // Peers whose keys could not be had hold nothing: they make room.
  for (let i = 0; i < MAX_PEERS; i++) {
    s.sendText(`p${i}`, 'x', i, 0);
    s.bundle(`p${i}`, { type: 'NoSuchUser' }, 0);
  }
  assert.equal(s.peers.size, MAX_PEERS);
  assert.equal(s.sendText('newcomer', 'hello', 1, 0).kind, 'Queued');
  assert.equal(s.peers.size, MAX_PEERS);
  assert.equal(s.status('newcomer').kind, 'Starting');
});

test('toState survives a structured clone and restores to the same state', () => {
  const { w, alice, bob } = pair();
  w.say('alice', 'bob', 'one', 1);
  w.deliver('bob');
  w.say('bob', 'alice', 'two', 1);
  w.deliver('alice');
  w.carry(alice, alice.s.markVerified('bob', 0));
  for (const c of [alice, bob]) {
    const state = c.s.toState();
    const again = Sessions.restore({ me: c.nick, identitySecret: counterRng(`id ${c.seed}`)(32), rng: counterRng('r'), state: structuredClone(state) });
    assert.deepEqual(again.toState(), state);
    assert.deepEqual(again.status(c.nick === 'alice' ? 'bob' : 'alice'), c.s.status(c.nick === 'alice' ? 'bob' : 'alice'));
  }
  assert.throws(
    () => Sessions.restore({ me: 'alice', identitySecret: counterRng('id bob')(32), rng: counterRng('r'), state: alice.s.toState() }),
    (e) => e instanceof E2eError && e.why === 'Format',
    "another identity's state",
  );
});

/** Alice and Bob talked; then Bob's home is replaced (a new identity) and he logs in again. */
function changed() {
  const { w, alice, bob } = pair();
  w.say('alice', 'bob', 'hello', 1);
  w.deliver('bob');
  const bob2 = w.add('bob', { seed: 'bob-new' });
  w.login('bob');
  return { w, alice, bob, bob2 };
}

const lastHeld = (events) => events.filter((e) => e.kind === 'Held').at(-1);

test('messages under a changed key are held, saved, and shown after /accept-key; never twice', () => {
  const { w, alice, bob2 } = changed();
  w.say('bob', 'alice', 'new 1', 1);
  w.say('bob', 'alice', 'new 2', 2);
  const relays = w.relay.filter((m) => m.to === 'alice');
  const ev = w.deliver('alice');
  assert.deepEqual(texts(ev), [], 'not shown');
  assert.deepEqual(lastHeld(ev), { kind: 'Held', peer: 'bob', held: 2, dropped: 0 });
  // Saved before it is said: a restart keeps them (version 2 of the state).
  assert.equal(alice.saved.v, 2);
  w.restart('alice');
  // The server sends one again (not acknowledged, say): held once, not twice.
  const again = alice.s.receive('bob', relays[0].id, relays[0].payload, w.now);
  assert.deepEqual(again, [{ type: 'Persist' }, { type: 'Event', event: { kind: 'Held', peer: 'bob', held: 2, dropped: 0 } }]);
  assert.deepEqual(alice.s.receive('bob', relays[0].id + 1000n, relays[0].payload, w.now).map((a) => a.event.kind), ['Replayed']);
  // /insecure does not show them.
  w.carry(alice, alice.s.end('bob'));
  assert.deepEqual(texts(alice.events), [], 'nothing shown after /insecure either');
  const before = alice.events.length;
  w.carry(alice, alice.s.acceptKey('bob', w.now));
  const after = alice.events.slice(before);
  assert.deepEqual(after[0], { kind: 'Released', peer: 'bob', key: bob2.s.publicKey, count: 2 });
  assert.equal(after[1].kind, 'Ready');
  assert.deepEqual(after[1].key, bob2.s.publicKey);
  assert.deepEqual(texts(after), ['new 1', 'new 2']);
  // Taken once: the same start again is refused.
  for (const id of [relays[0].id, relays[0].id + 2000n]) {
    assert.deepEqual(alice.s.receive('bob', id, relays[0].payload, w.now).map((a) => a.event.kind), ['Replayed']);
  }
});

test('held messages are bounded per peer, the dropped counted', () => {
  const { w, alice } = changed();
  for (let n = 0; n < MAX_HELD_PER_PEER + 2; n++) w.say('bob', 'alice', `m${n}`, n + 1);
  const ev = w.deliver('alice');
  assert.deepEqual(lastHeld(ev), { kind: 'Held', peer: 'bob', held: MAX_HELD_PER_PEER, dropped: 2 });
  w.restart('alice');
  const before = alice.events.length;
  w.carry(alice, alice.s.acceptKey('bob', w.now));
  const shown = texts(alice.events.slice(before));
  assert.equal(shown.length, MAX_HELD_PER_PEER);
  assert.equal(shown[0], 'm2');
});

test('a state saved before messages were held (version 1) still loads, with nothing held', () => {
  const { w, alice } = changed();
  w.say('bob', 'alice', 'held', 1);
  w.deliver('alice');
  const v1 = structuredClone(alice.saved);
  v1.v = 1;
  for (const p of v1.peers) {
    delete p.held;
    delete p.heldDropped;
  }
  const s = Sessions.restore({ me: 'alice', identitySecret: counterRng('id alice')(32), rng: counterRng('v1'), state: v1 });
  assert.equal(s.status('bob').failure.kind, 'KeyChanged', 'the block is kept');
  assert.equal(s.toState().v, 2);
  assert.deepEqual(s.toState().peers.map((p) => p.held), [[]]);
});

test('held messages are bounded in all: the oldest of any peer goes, and its peer is told', () => {
  const { w, alice } = changed();
  // Ten other peers blocked under a changed key, 50 held each (as restored): 500 in all.
  const st = alice.s.toState();
  for (let p = 0; p < 10; p++) {
    st.peers.push({
      nick: `p${p}`, intent: 'Secure', peerKey: null, sessions: [],
      blocked: { kind: 'KeyChanged', pinned: new Uint8Array(32).fill(1), presented: new Uint8Array(32).fill(2) },
      unacknowledged: [], renew: false,
      held: Array.from({ length: MAX_HELD_PER_PEER }, (_, i) => ({ id: BigInt(p * MAX_HELD_PER_PEER + i), payload: new Uint8Array([p, i]) })),
      heldDropped: 0,
    });
  }
  alice.saved = st;
  w.restart('alice');
  w.say('bob', 'alice', 'one more', 1);
  const ev = w.deliver('alice');
  // The 501st: the lowest relay id of all (p0's first) goes, counted and said for p0.
  assert.deepEqual(ev.filter((e) => e.kind === 'Held'), [
    { kind: 'Held', peer: 'bob', held: 1, dropped: 0 },
    { kind: 'Held', peer: 'p0', held: MAX_HELD_PER_PEER - 1, dropped: 1 },
  ]);
  const saved = alice.saved.peers.find((p) => p.nick === 'p0');
  assert.equal(saved.held[0].id, 1n);
  assert.equal(saved.heldDropped, 1);
  // A saved state over the bound in all (each peer within its own) is damaged.
  const over = structuredClone(alice.saved);
  over.peers.push({ ...structuredClone(over.peers.find((p) => p.nick === 'p4')), nick: 'p10' });
  assert.throws(
    () => Sessions.restore({ me: 'alice', identitySecret: counterRng('id alice')(32), rng: counterRng('x'), state: over }),
    (e) => e instanceof E2eError && e.why === 'Format',
  );
});
