// The page stays responsive under a burst of relays (a flood of session starts, each ~11 ms of
// cryptography): the runner decrypts each when its turn comes and, after SLICE_MS of such work
// in one go, lets the event loop run other tasks first. Browser-free.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as e2e from '../src/e2e/sessions.js';
import { ActionRunner, SLICE_MS, Secure, memoryHomes, nextTask } from '../src/secure.js';
import { counterRng } from './e2e-helpers.js';

function busy(ms) {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* work */ }
}

test('a burst of deferred work does not run in one task, and keeps its order', async () => {
  const log = [];
  const runner = new ActionRunner({ save: async () => {}, perform: (a) => log.push(a.n) });
  let turns = 0; // macrotasks that ran while the burst was being worked through
  let done = false;
  const count = () => {
    turns += 1;
    if (!done) setTimeout(count, 0);
  };
  setTimeout(count, 0);
  const seen = [];
  const runs = [];
  for (let n = 0; n < 20; n++) {
    runs.push(runner.run(() => {
      busy(3);
      seen.push(turns);
      return [{ type: 'Persist' }, { type: 'X', n }];
    }));
  }
  const outcomes = await Promise.all(runs);
  done = true;
  assert.ok(outcomes.every((o) => o.ok));
  assert.deepEqual(log, [...Array(20).keys()], 'in order, each once');
  assert.ok(seen[seen.length - 1] > seen[0], `other tasks ran in between: ${seen}`);
  assert.ok(new Set(seen).size >= 3, `spread over several tasks: ${seen}`);
});

test('the runner yields after SLICE_MS of work, and not before', async () => {
  let now = 0;
  let yields = 0;
  const runner = new ActionRunner({
    save: async () => {},
    perform: () => undefined,
    clock: () => now,
    yieldTask: () => {
      yields += 1;
      return nextTask();
    },
  });
  // Cheap work (the clock does not move): no needless hops.
  await Promise.all([...Array(10)].map(() => runner.run(() => [{ type: 'X' }])));
  assert.equal(yields, 0);
  // Each piece takes 3 ms: a turn for the page after every SLICE_MS.
  const runs = [...Array(12)].map(() => runner.run(() => {
    now += 3;
    return [];
  }));
  await Promise.all(runs);
  // ceil(SLICE_MS / 3) pieces per turn, a yield before each turn but the first.
  assert.equal(yields, Math.ceil(12 / Math.ceil(SLICE_MS / 3)) - 1);
  // Lists given as lists are carried out as before, without waiting.
  const before = yields;
  await runner.run([{ type: 'X' }]);
  assert.equal(yields, before);
});

test('work made for sessions since dropped is not done', async () => {
  let alive = true;
  let made = 0;
  const runner = new ActionRunner({ save: async () => {}, perform: () => undefined, alive: () => alive });
  const first = runner.run([{ type: 'Persist' }]);
  alive = false;
  const second = await runner.run(() => {
    made += 1;
    return [];
  });
  await first;
  assert.equal(made, 0);
  assert.equal(second.ok, false);
});

test('a flood of session starts relayed to the page: shown in order, and the page gets turns', async () => {
  const published = [];
  const shown = [];
  const ui = {
    sendWire: () => undefined,
    secureMessage: (event) => {
      shown.push(event.peer);
      return Promise.resolve(true);
    },
    secureEvent: () => undefined,
    securityChanged: () => undefined,
    problem: (text) => assert.fail(text),
    cannotRead: () => assert.fail('cannot read'),
  };
  const secure = new Secure({
    nick: 'bob', e2e, homes: memoryHomes(), rng: counterRng('bob'), ui, newAccount: true,
    connection: () => ({ send: (msg) => published.push(msg) }),
  });
  try {
    assert.equal(await secure.open(), true);
    await secure.login();
    const upload = published.find((m) => m.type === 'PublishKeys').keys;
    const starts = [];
    for (let k = 0; k < 12; k++) {
      const s = e2e.Sessions.create({ me: `s${k}`, identitySecret: counterRng(`id s${k}`)(32), rng: counterRng(`s${k}`) });
      s.sendText('bob', 'hi', 1, 0);
      const bundle = { identity: upload.identity, signed_prekey: upload.signed_prekey, one_time: upload.one_time[k] };
      const send = s.bundle('bob', { type: 'Keys', bundle }, 0).find((a) => a.type === 'Send');
      starts.push({ from: `s${k}`, payload: send.payload });
    }
    let turnAt = null; // how many relays were done when a task queued after the burst ran
    let finished = 0;
    setTimeout(() => {
      turnAt = finished;
    }, 0);
    const results = await Promise.all(starts.map((m, i) => secure.relay({ id: BigInt(i + 1), ts: 1n, from: m.from, payload: m.payload })
      .then((ok) => {
        finished += 1;
        return ok;
      })));
    assert.ok(results.every(Boolean), 'each saved and kept');
    assert.deepEqual(shown, starts.map((m) => m.from), 'shown in order');
    assert.notEqual(turnAt, null);
    assert.ok(turnAt < starts.length, `the page had a turn before the burst was done (after ${turnAt})`);
  } finally {
    secure.drop('the test is over');
  }
});
