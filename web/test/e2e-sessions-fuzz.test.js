// Property: receive() never throws and never shows a Message for payloads that are not genuine
// and new: 3,000 seeded random payloads, mutations of genuine ones not delivered yet, and
// replays of delivered ones. Afterwards the genuine payloads still read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { World } from './e2e-sessions-world.js';
import { fuzzBytes } from './e2e-helpers.js';

test('3,000 random and mutated payloads: receive never throws, never gives a Message, changes nothing', () => {
  const w = new World();
  const alice = w.add('alice');
  const bob = w.add('bob');
  const carol = w.add('carol');
  w.login('alice');
  w.login('bob');
  w.login('carol');
  w.say('alice', 'bob', 'one', 1);
  w.deliver('bob');
  w.say('bob', 'alice', 'two', 1);
  w.deliver('alice');
  w.say('alice', 'bob', 'three', 2); // a Message envelope, not delivered
  w.say('carol', 'bob', 'from carol', 1); // a Start of a session bob does not know, not delivered
  const delivered = [alice.sent[0].payload, bob.sent[0].payload];
  const pending = w.relay.filter((m) => m.to === 'bob').map((m) => m.payload);
  assert.equal(pending.length, 2);
  assert.equal(pending[0][0], 1, 'a Message envelope');
  assert.equal(pending[1][0], 0, 'a Start envelope');
  const rnd = fuzzBytes(20261201);
  const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  // A mutation that differs from the genuine payload.
  const mutate = (p) => {
    for (;;) {
      const out = mutateOnce(p);
      if (!same(out, p)) return out;
    }
  };
  const mutateOnce = (p) => {
    const out = Uint8Array.from(p);
    switch (rnd.int(5)) {
      case 0: {
        const n = 1 + rnd.int(3);
        for (let i = 0; i < n; i++) out[rnd.int(out.length)] ^= 1 << rnd.int(8);
        return out;
      }
      case 1:
        return out.subarray(0, rnd.int(out.length));
      case 2: {
        const longer = new Uint8Array(out.length + 1 + rnd.int(4));
        longer.set(out);
        longer.set(rnd.bytes(longer.length - out.length), out.length);
        return longer;
      }
      case 3:
        out[rnd.int(out.length)] = rnd.int(256);
        return out;
      default: {
        const at = rnd.int(out.length);
        out.copyWithin(at, rnd.int(out.length));
        return out;
      }
    }
  };
  const kinds = new Map();
  let id = 1000n;
  for (let i = 0; i < 3000; i++) {
    let payload;
    let from = rnd.int(2) === 0 ? 'alice' : 'carol';
    let useId = null;
    switch (rnd.int(7)) {
      case 6:
        // The same id as a message shown already: the same bytes, or others.
        useId = alice.sent[0].id;
        payload = rnd.int(2) === 0 ? alice.sent[0].payload : mutate(alice.sent[0].payload);
        from = 'alice';
        break;
      case 0:
        payload = rnd.bytes(rnd.int(700));
        break;
      case 1: {
        payload = rnd.bytes(60 + rnd.int(400));
        payload[0] = rnd.int(2);
        break;
      }
      case 2:
      case 3: {
        const which = rnd.int(2);
        payload = mutate(pending[which]);
        from = which === 0 ? 'alice' : 'carol';
        break;
      }
      case 4:
        payload = delivered[rnd.int(delivered.length)];
        from = 'alice';
        break;
      default:
        payload = mutate(delivered[0]);
        from = ['alice', 'carol', 'bob', 'x y', ''][rnd.int(5)];
    }
    id += 1n;
    let actions;
    assert.doesNotThrow(() => {
      actions = bob.s.receive(from, useId ?? id, payload, 0);
    }, `payload ${i}`);
    for (const a of actions) {
      assert.notEqual(a.event?.kind, 'Message', `payload ${i} showed a message`);
      assert.notEqual(a.type, 'Send', `payload ${i} sent something`);
      if (a.type === 'Event') kinds.set(a.event.kind, (kinds.get(a.event.kind) ?? 0) + 1);
    }
  }
  assert.ok(kinds.get('Unreadable') > 1000, 'mostly unreadable');
  assert.ok(kinds.get('Replayed') > 100, 'replays recognised');
  // A start nobody could open from a peer with no session: at most an entry fetching their keys
  // to tell them (notice.js), never a session, key or block from it.
  const e = bob.s.existing('carol');
  assert.ok(e === undefined || (e.sessions.length === 0 && e.peerKey === null && e.held.length === 0), 'nothing taken from a start that never authenticated');
  assert.notEqual(bob.s.status('carol').kind, 'Failed');
  assert.deepEqual(World.texts(w.deliver('bob')), ['three', 'from carol'], 'the genuine payloads still read');
});
