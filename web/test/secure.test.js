// The page's end-to-end driver (secure.js) with the real sessions (e2e/sessions.js): the record
// and its writer token, the action runner's order, relays saved and kept before they are
// acknowledged, and what sending a private text gives for each state of the conversation.
// Two users talk through a small in-memory stand-in for the server's key directory and relay.
import test, { afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { ActionRunner, Home, HomeError, Secure, memoryHomes } from '../src/secure.js';
import * as e2e from '../src/e2e/sessions.js';
import { counterRng } from './e2e-helpers.js';
import { securityWords, secureEventWords } from '../src/render.js';

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const tick = () => new Promise((r) => setImmediate(r));

// ---- the action runner ----

test('the runner carries nothing out after a Persist before the save resolved, and in order across lists', async () => {
  const log = [];
  const saves = [];
  const runner = new ActionRunner({
    save: () => {
      const d = deferred();
      saves.push(d);
      log.push('save');
      return d.promise;
    },
    perform: (a) => log.push(a.type === 'Send' ? `send ${a.line}` : `show ${a.event.text}`),
  });
  const first = runner.run([{ type: 'Persist' }, { type: 'Send', to: 'bob', payload: new Uint8Array([1]), line: 1 }]);
  const second = runner.run([{ type: 'Event', event: { kind: 'Message', peer: 'bob', id: 5n, text: 'hi' } }]);
  await tick();
  assert.deepEqual(log, ['save'], 'nothing sent or shown while the state is not saved');
  saves[0].resolve();
  assert.equal((await first).ok, true);
  assert.equal((await second).ok, true);
  assert.deepEqual(log, ['save', 'send 1', 'show hi']);
});

test('a failed save stops what follows it in its list; the next list goes on', async () => {
  const log = [];
  let fail = true;
  const runner = new ActionRunner({
    save: async () => {
      log.push('save');
      if (fail) throw new HomeError('Storage', 'quota');
    },
    perform: (a) => log.push(`send ${a.line}`),
  });
  const out = await runner.run([
    { type: 'Send', to: 'bob', payload: new Uint8Array([1]), line: 1 },
    { type: 'Persist' },
    { type: 'Send', to: 'bob', payload: new Uint8Array([2]), line: 2 },
    { type: 'Persist' },
  ]);
  assert.equal(out.ok, false);
  assert.equal(out.error.kind, 'Storage');
  assert.deepEqual(out.dropped.map((a) => a.line ?? 'persist'), [2, 'persist']);
  assert.deepEqual(log, ['send 1', 'save']);
  fail = false;
  assert.equal((await runner.run([{ type: 'Persist' }, { type: 'Send', line: 3 }])).ok, true);
  assert.deepEqual(log, ['send 1', 'save', 'save', 'send 3']);
});

test('the runner is bounded: behind a stuck save, more work is refused (Busy, not blamed on the storage)', async () => {
  const gate = deferred();
  const log = [];
  const runner = new ActionRunner({ save: () => gate.promise, perform: (a) => log.push(a.line), maxPending: 2 });
  const a = runner.run([{ type: 'Persist' }, { type: 'Send', line: 1 }]);
  const b = runner.run([{ type: 'Send', line: 2 }]);
  const c = await runner.run([{ type: 'Send', line: 3 }]);
  assert.equal(c.ok, false);
  assert.equal(c.error.kind, 'Busy');
  assert.deepEqual(c.dropped.map((x) => x.line), [3]);
  gate.resolve();
  await a;
  await b;
  assert.deepEqual(log, [1, 2]);
  assert.equal((await runner.run([{ type: 'Send', line: 4 }])).ok, true, 'room again once the storage caught up');
});

test('what the user did goes before relays still to decrypt; each lane keeps its order', async () => {
  const gate = deferred();
  const log = [];
  const runner = new ActionRunner({ save: () => gate.promise, perform: (a) => log.push(a.line) });
  // A relay being worked on (its save held), then a burst of relays still to decrypt.
  const first = runner.run(() => [{ type: 'Persist' }, { type: 'Send', line: 'r0' }]);
  const relays = [];
  for (let k = 1; k <= 5; k++) relays.push(runner.run(() => { log.push(`made r${k}`); return [{ type: 'Send', line: `r${k}` }]; }));
  // The user types two lines meanwhile.
  const u1 = runner.run([{ type: 'Send', line: 'u1' }]);
  const u2 = runner.run([{ type: 'Send', line: 'u2' }]);
  gate.resolve();
  await Promise.all([first, ...relays, u1, u2]);
  // The relay under way finishes first (nothing is cut in two), then the user's, then the burst.
  assert.deepEqual(log, ['r0', 'u1', 'u2', 'made r1', 'r1', 'made r2', 'r2', 'made r3', 'r3', 'made r4', 'r4', 'made r5', 'r5']);
  await runner.idle();
});

test('once the sessions are dropped the runner does nothing more', async () => {
  let alive = true;
  const log = [];
  const runner = new ActionRunner({ save: async () => { alive = false; }, perform: (a) => log.push(a.line), alive: () => alive });
  const out = await runner.run([{ type: 'Persist' }, { type: 'Send', line: 1 }]);
  assert.equal(out.ok, false);
  assert.deepEqual(log, []);
});

// ---- the record ----

test('the record is made at the first use, kept, and opened again with the same identity', async () => {
  const homes = memoryHomes();
  const a = await Home.open({ nick: 'Wendy', homes, e2e, rng: counterRng('w1') });
  const stored = homes.rows.get('wendy');
  assert.equal(stored.nick, 'Wendy');
  assert.ok(stored.identity instanceof Uint8Array && stored.identity.length === 32);
  assert.equal(stored.state.v, 2);
  assert.equal(typeof stored.writer, 'string');
  const b = await Home.open({ nick: 'wendy', homes, e2e, rng: counterRng('w2') });
  assert.deepEqual(b.sessions.publicKey, a.sessions.publicKey, 'the identity is kept, not made again');
  assert.notEqual(b.writer, a.writer);
});

test('a second opener (another tab) makes the first one\'s saves fail, and continues from its state', async () => {
  const homes = memoryHomes();
  const first = await Home.open({ nick: 'wendy', homes, e2e, rng: counterRng('t1') });
  first.sessions.login(0, 1_000);
  await first.save();
  const second = await Home.open({ nick: 'wendy', homes, e2e, rng: counterRng('t2') });
  assert.deepEqual(second.sessions.toState(), first.sessions.toState(), 'the second tab starts from what the first saved');
  const before = structuredClone(homes.rows.get('wendy').state);
  first.sessions.end('bob');
  await assert.rejects(first.save(), (e) => e instanceof HomeError && e.kind === 'Lost');
  assert.deepEqual(homes.rows.get('wendy').state, before, 'the first tab wrote nothing');
  second.sessions.end('carol');
  await second.save();
  const third = await Home.open({ nick: 'wendy', homes, e2e, rng: counterRng('t3') });
  assert.equal(third.sessions.status('carol').kind, 'Plain');
  assert.equal(third.sessions.status('bob').kind, 'Ready', 'what the tab that lost the record did is not kept');
});

test('a damaged record stops end-to-end and is not replaced', async () => {
  const homes = memoryHomes();
  await Home.open({ nick: 'wendy', homes, e2e, rng: counterRng('d1') });
  homes.rows.get('wendy').state = { v: 1, garbage: true };
  const kept = structuredClone(homes.rows.get('wendy'));
  await assert.rejects(Home.open({ nick: 'wendy', homes, e2e, rng: counterRng('d2') }), (e) => e instanceof HomeError && e.kind === 'Damaged');
  const now = homes.rows.get('wendy');
  assert.deepEqual(now.identity, kept.identity);
  assert.deepEqual(now.state, kept.state);
  homes.rows.get('wendy').identity = new Uint8Array(3);
  await assert.rejects(Home.open({ nick: 'wendy', homes, e2e, rng: counterRng('d3') }), (e) => e.kind === 'Damaged');
  homes.rows.set('max', 'not a record');
  await assert.rejects(Home.open({ nick: 'max', homes, e2e, rng: counterRng('d4') }), (e) => e.kind === 'Damaged');
});

// ---- two users through a stand-in server ----

/** Every driver made by a test: dropped after it (their timers would keep the process alive). */
const drivers = [];
afterEach(() => {
  for (const d of drivers.splice(0)) d.drop('the test is over');
});

/**
 * A server's key directory and relay for Secure drivers: Publish, FetchBundle and Relay
 * messages are queued and handled by `flush()`; each Relay is answered (lineState) and handed
 * to its recipient's driver, whose promise is kept in `delivered`.
 */
function world() {
  const users = new Map();
  const uploads = new Map();
  const queue = [];
  let nextId = 1n;
  const w = {
    users,
    delivered: [],
    async flush() {
      for (let guard = 0; queue.length > 0 && guard < 1000; guard++) {
        const { from, msg } = queue.shift();
        const u = users.get(from);
        if (msg.type === 'PublishKeys') {
          const prev = uploads.get(from);
          const oneTime = msg.keys.replace_one_time || !prev ? msg.keys.one_time.slice() : prev.oneTime.concat(msg.keys.one_time);
          uploads.set(from, { keys: msg.keys, oneTime });
          await u.secure.keys({ type: 'KeysPublished', one_time: oneTime.length, other_device: false });
        } else if (msg.type === 'FetchBundle') {
          const up = uploads.get(msg.nick);
          const answer = up
            ? { type: 'Keys', bundle: { identity: up.keys.identity, signed_prekey: up.keys.signed_prekey, one_time: up.oneTime.shift() ?? null } }
            : { type: users.has(msg.nick) ? 'NoKeys' : 'NoSuchUser' };
          await u.secure.keys({ type: 'Bundle', nick: msg.nick, answer });
        } else if (msg.type === 'Relay') {
          const id = nextId++;
          u.lineStates.push({ line: msg.line, state: 'sent' });
          const to = users.get(msg.to);
          w.delivered.push(to.secure.relay({ id, ts: 1000n + id, from, payload: msg.payload }));
        } else if (msg.type === 'Private') {
          u.lineStates.push({ line: msg.line, state: 'sent', plain: true });
        }
        await tick();
      }
    },
    user(nick, { homes = memoryHomes(), keepOk = true, label = `rng ${nick}`, newAccount = true } = {}) {
      const u = { nick, log: [], shown: [], events: [], lineStates: [], problems: [], announced: [], homes, keepOk, sent: [] };
      const conn = {
        send: (msg) => {
          queue.push({ from: nick, msg });
          return true;
        },
        sendLine: (msg) => {
          queue.push({ from: nick, msg: { ...msg, line: u.wireLine } });
          return 1;
        },
      };
      u.ui = {
        sendWire(msg, line) {
          u.log.push(`${msg.type} ${line}`);
          u.sent.push({ ...msg, line });
          u.wireLine = line;
          conn.sendLine(msg);
        },
        secureMessage(event, ctx) {
          u.log.push(`show ${event.text}`);
          u.shown.push({ ...event, ts: ctx.ts });
          return Promise.resolve(u.keepOk);
        },
        secureEvent(event) {
          u.log.push(`event ${event.kind}`);
          u.events.push(event);
        },
        securityChanged() {},
        problem(text) {
          u.problems.push(text);
        },
        announce(text) {
          u.announced.push(text);
        },
        cannotRead() {
          u.log.push('cannot read');
        },
        notSent(line, words) {
          u.log.push(`not sent ${line}: ${words}`);
        },
        linesDropped(words) {
          u.log.push(`dropped: ${words}`);
        },
      };
      let t = 0;
      u.secure = new Secure({
        nick, e2e, homes, rng: counterRng(label), connection: () => conn, ui: u.ui,
        clock: () => (t += 1), wallClock: () => 1_700_000_000_000, newAccount,
      });
      drivers.push(u.secure);
      users.set(nick, u);
      return u;
    },
  };
  return w;
}

async function loggedIn(w, ...users) {
  for (const u of users) {
    assert.equal(await u.secure.open(), true);
    await u.secure.login();
  }
  await w.flush();
}

/** `from` sends `text` to `to` under the tag `tag`; resolves once all that follows is delivered. */
async function sendDelivered(w, from, to, text, tag) {
  from.secure.sendText(to, text, tag);
  await from.secure.settled();
  await w.flush();
  await Promise.all(w.delivered);
}

/** alice (her `homes`, if given) and bob logged in, alice's first line to bob delivered: a
 *  secure session both ways. */
async function talking({ homes } = {}) {
  const w = world();
  const alice = w.user('alice', { homes });
  const bob = w.user('bob');
  await loggedIn(w, alice, bob);
  await sendDelivered(w, alice, 'bob', 'hello', 1);
  return { w, alice, bob };
}

test('a first text waits for the keys (Queued), then goes out encrypted and is shown to its reader', async () => {
  const w = world();
  const alice = w.user('alice');
  const bob = w.user('bob');
  await loggedIn(w, alice, bob);
  assert.equal(alice.secure.status('bob').kind, 'Ready');
  assert.deepEqual(alice.secure.sendText('bob', 'hello bob', 7), { kind: 'Queued' });
  await alice.secure.settled();
  assert.equal(alice.secure.status('bob').kind, 'Starting');
  await w.flush();
  assert.equal(alice.secure.status('bob').kind, 'Secure');
  assert.deepEqual(alice.log.filter((l) => l.startsWith('Relay')), ['Relay 7'], 'the line goes out under its tag');
  assert.deepEqual(await Promise.all(w.delivered), [true]);
  assert.deepEqual(bob.shown.map((m) => m.text), ['hello bob']);
  assert.equal(bob.secure.wasHandled(1n), true, 'a repeat after a reconnection is acknowledged, not decrypted again');
  assert.equal(bob.secure.wasHandled(2n), false);
  assert.equal(bob.shown[0].ts, 1001n);
  assert.equal(bob.secure.status('alice').kind, 'Secure');
  // Now the conversation is up: Secure at once.
  assert.deepEqual(bob.secure.sendText('alice', 'hi alice', 1), { kind: 'Secure' });
  await bob.secure.settled();
  await w.flush();
  assert.deepEqual(await Promise.all(w.delivered), [true, true]);
  assert.deepEqual(alice.shown.map((m) => m.text), ['hi alice']);
});

test('a relay resolves only once its state is saved and its line kept; not kept means not acknowledged', async () => {
  const w = world();
  const gate = { open: true, waiting: [] };
  const inner = memoryHomes();
  const homes = {
    ...inner,
    async save(...args) {
      if (!gate.open) {
        const d = deferred();
        gate.waiting.push(d);
        await d.promise;
      }
      return inner.save(...args);
    },
  };
  const alice = w.user('alice');
  const bob = w.user('bob', { homes });
  await loggedIn(w, alice, bob);
  alice.secure.sendText('bob', 'one', 1);
  await alice.secure.settled();
  gate.open = false;
  let settled = false;
  const tracking = async () => {
    await w.flush();
  };
  await tracking();
  // Bob's driver decrypted "one" but its state is not saved: nothing shown, nothing resolved.
  await tick();
  assert.equal(gate.waiting.length > 0, true);
  assert.deepEqual(bob.shown, [], 'not shown before the state that decrypted it is saved');
  const first = w.delivered[0].then((ok) => {
    settled = true;
    return ok;
  });
  await tick();
  assert.equal(settled, false, 'not acknowledged before it is saved');
  gate.open = true;
  for (const d of gate.waiting.splice(0)) d.resolve();
  assert.equal(await first, true);
  assert.deepEqual(bob.shown.map((m) => m.text), ['one']);
  // Shown, but the conversation log refused it: not acknowledged.
  bob.keepOk = false;
  alice.secure.sendText('bob', 'two', 2);
  await alice.secure.settled();
  await w.flush();
  assert.equal(await w.delivered[1], false);
});

test('a save that fails shows nothing and says so; the message comes back when the server sends it again', async () => {
  const w = world();
  const inner = memoryHomes();
  let failing = false;
  const homes = {
    ...inner,
    async save(...args) {
      if (failing) throw new Error('QuotaExceededError');
      return inner.save(...args);
    },
  };
  const alice = w.user('alice');
  const bob = w.user('bob', { homes });
  await loggedIn(w, alice, bob);
  alice.secure.sendText('bob', 'one', 1);
  await alice.secure.settled();
  failing = true;
  await w.flush();
  assert.equal(await w.delivered[0], false, 'not acknowledged');
  assert.deepEqual(bob.shown, [], 'not shown');
  assert.equal(bob.problems.length, 1);
  assert.match(bob.problems[0], /could not be saved in this browser/);
  // The server sends it again (the next login): shown then.
  failing = false;
  const relay = alice.sent.find((m) => m.type === 'Relay');
  assert.equal(await bob.secure.relay({ id: 1n, ts: 1001n, from: 'alice', payload: relay.payload }), true);
  assert.deepEqual(bob.shown.map((m) => m.text), ['one']);
});

test('sendText: Plain after /insecure (the page sends a Private), Refused when blocked, Failed marks the waiting lines', async () => {
  const w = world();
  const alice = w.user('alice');
  w.user('carol'); // registered, never published keys
  await loggedIn(w, alice);
  // No keys: the line waiting for them is not sent, and says why.
  assert.equal(alice.secure.sendText('carol', 'hi', 3).kind, 'Queued');
  await alice.secure.settled();
  await w.flush();
  const failed = alice.events.find((e) => e.kind === 'Failed');
  assert.equal(failed.failure.kind, 'NoKeys');
  assert.deepEqual(failed.unsent, [3]);
  assert.equal(alice.sent.length, 0, 'nothing plain went out');
  // /insecure: plain from now on.
  assert.equal(alice.secure.command('insecure', 'carol'), null);
  await alice.secure.settled();
  assert.equal(alice.secure.status('carol').kind, 'Plain');
  assert.deepEqual(alice.secure.sendText('carol', 'plain now', 4), { kind: 'Plain' });
  // Refused: the sessions' words, nothing sent.
  const r = alice.secure.command('insecure', 'carol');
  assert.equal(typeof r.refused, 'string');
  const bad = alice.secure.sendText('dave', 'a\u0000b', 5);
  assert.equal(bad.kind, 'Refused');
  assert.equal(typeof bad.message, 'string');
  // Not available in this tab (another tab took it): refused, never plain.
  alice.secure.drop('another tab took over this account');
  const gone = alice.secure.sendText('carol', 'x', 6);
  assert.equal(gone.kind, 'Refused');
  assert.match(gone.message, /another tab took over/);
  assert.equal(alice.secure.status('carol'), null);
});

test('/verify gives the safety number both sides see; /verified makes the conversation verified', async () => {
  const { alice, bob } = await talking();
  const a = alice.secure.command('verify', 'bob');
  const b = bob.secure.command('verify', 'alice');
  assert.match(a.number, /^[0-9 ]+$/);
  assert.equal(a.number, b.number);
  assert.equal(a.newKey, false);
  assert.equal(alice.secure.command('verified', 'bob'), null);
  await alice.secure.settled();
  const st = alice.secure.status('bob');
  assert.equal(st.kind, 'Secure');
  assert.equal(st.trust, 'Verified');
});

test('two tabs: the tab that lost the record stops, the one that took it over continues from the saved state', async () => {
  const homes = memoryHomes();
  const { alice: tab1 } = await talking({ homes });
  // Another tab opens the same account (Use here there): a new writer token.
  const other = new Secure({
    nick: 'alice', e2e, homes, rng: counterRng('tab 2'), connection: () => null, ui: tab1.ui,
  });
  drivers.push(other);
  assert.equal(await other.open(), true);
  assert.equal(other.status('bob').kind, 'Secure', 'it continues from what the first tab saved');
  // The first tab's next save fails: it drops its sessions and says so; a text it had waiting
  // for keys is not sent.
  assert.equal(tab1.secure.sendText('dave', 'waiting for keys', 9).kind, 'Queued');
  tab1.secure.command('insecure', 'bob');
  await tab1.secure.settled();
  assert.equal(tab1.secure.sessions, null);
  assert.match(tab1.problems.at(-1), /Another tab took over/);
  assert.match(tab1.log.at(-1), /^dropped: not sent: end-to-end encryption stopped in this tab \(another tab took over this account\)$/);
  assert.equal(other.status('bob').kind, 'Secure', 'what the first tab did after losing the record is not kept');
});

test('a changed key: the conversation is blocked, nothing is sent, until /accept-key', async () => {
  const { w, alice } = await talking();
  // Bob starts over elsewhere with a new identity, and writes first.
  const bob2 = w.user('bob', { label: 'bob elsewhere' });
  await loggedIn(w, bob2);
  await sendDelivered(w, bob2, 'alice', 'it is me, new key', 1);
  const st = alice.secure.status('bob');
  assert.equal(st.kind, 'Failed');
  assert.equal(st.failure.kind, 'KeyChanged');
  assert.equal(securityWordsState(alice, 'bob'), 'changed');
  assert.equal(alice.shown.some((m) => m.text === 'it is me, new key'), false, 'nothing shown from the changed key');
  assert.ok(alice.events.some((e) => e.kind === 'Failed' && e.failure.kind === 'KeyChanged'));
  const sent = alice.sent.length;
  const r = alice.secure.sendText('bob', 'are you there?', 2);
  assert.equal(r.kind, 'Refused');
  assert.equal(alice.sent.length, sent, 'nothing sent to the changed key');
  assert.equal(alice.secure.command('verify', 'bob').newKey, true);
  assert.equal(alice.secure.command('accept-key', 'bob'), null);
  await alice.secure.settled();
  assert.notEqual(alice.secure.status('bob').kind, 'Failed');
  assert.notEqual(alice.secure.sendText('bob', 'hello again', 3).kind, 'Refused');
});

function securityWordsState(u, peer) {
  return securityWords(u.secure.status(peer), peer, u.secure.words).state;
}

test('a changed key: its message is held (saved, acknowledged, said), kept over a reload, and shown after /accept-key', async () => {
  const w = world();
  const alice = w.user('alice');
  const bob = w.user('bob');
  await loggedIn(w, alice, bob);
  alice.secure.sendText('bob', 'one', 1);
  await alice.secure.settled();
  await w.flush();
  await Promise.all(w.delivered);
  const bob2 = w.user('bob', { label: 'bob elsewhere' });
  await loggedIn(w, bob2);
  bob2.secure.sendText('alice', 'it is me, new key', 1);
  await bob2.secure.settled();
  await w.flush();
  // Acknowledged: it is held in the saved record.
  assert.deepEqual(await Promise.all(w.delivered), [true, true]);
  assert.equal(alice.shown.some((m) => m.text === 'it is me, new key'), false, 'not shown before /accept-key');
  const held = alice.events.find((e) => e.kind === 'Held');
  assert.deepEqual(held, { kind: 'Held', peer: 'bob', held: 1, dropped: 0 });
  assert.equal(
    secureEventWords(held, alice.secure.words).text,
    '1 message from bob under the new key is held until you compare safety numbers (/verify bob) and /accept-key bob',
  );
  // The page is reloaded: the record holds it still.
  alice.secure.drop('reloaded');
  const again = w.user('alice', { homes: alice.homes, label: 'alice reloaded' });
  assert.equal(await again.secure.open(), true);
  assert.equal(again.secure.status('bob').failure.kind, 'KeyChanged');
  // /insecure does not show it; /accept-key does, after saying it follows.
  assert.equal(again.secure.command('insecure', 'bob'), null);
  await again.secure.settled();
  assert.deepEqual(again.shown, []);
  assert.equal(again.secure.command('accept-key', 'bob'), null);
  await again.secure.settled();
  assert.deepEqual(again.shown.map((m) => m.text), ['it is me, new key']);
  const kinds = again.events.map((e) => e.kind);
  assert.ok(kinds.indexOf('Released') >= 0 && kinds.indexOf('Released') < kinds.indexOf('Ready'), kinds.join());
  assert.ok(again.log.indexOf('event Released') < again.log.indexOf('show it is me, new key'));
});

test('/accept-key whose save fails: the released message is not shown, and is shown once a save works (the server will not send it again)', async () => {
  const w = world();
  const inner = memoryHomes();
  let failing = false;
  const homes = {
    ...inner,
    async save(...args) {
      if (failing) throw new Error('QuotaExceededError');
      return inner.save(...args);
    },
  };
  const alice = w.user('alice', { homes });
  const bob = w.user('bob');
  await loggedIn(w, alice, bob);
  await sendDelivered(w, alice, 'bob', 'hello', 1);
  await sendDelivered(w, bob, 'alice', 'hi', 1);
  const bob2 = w.user('bob', { label: 'bob elsewhere' });
  await loggedIn(w, bob2);
  await sendDelivered(w, bob2, 'alice', 'it is me, new key', 2);
  assert.ok(alice.events.some((e) => e.kind === 'Held'));
  failing = true;
  assert.equal(alice.secure.command('accept-key', 'bob'), null);
  await alice.secure.settled();
  assert.equal(alice.shown.some((m) => m.text === 'it is me, new key'), false, 'shown although not saved');
  assert.match(alice.problems.at(-1), /could not be saved in this browser/);
  // Later relays are acknowledged meanwhile.
  alice.secure.acknowledged(1_000_000n);
  // A save works again (the next thing that saves): shown then, once.
  failing = false;
  await sendDelivered(w, alice, 'bob', 'anyone there?', 3);
  await alice.secure.settled();
  assert.deepEqual(alice.shown.filter((m) => m.text === 'it is me, new key').length, 1);
  await alice.secure.login();
  await alice.secure.settled();
  assert.deepEqual(alice.shown.filter((m) => m.text === 'it is me, new key').length, 1, 'shown twice');
});

test('a new account\'s first keys are announced as made; an account used before whose keys are gone says they were deleted', async () => {
  const w = world();
  const homes = memoryHomes();
  const fresh = w.user('alice', { homes, newAccount: true });
  assert.equal(await fresh.secure.open(), true);
  assert.deepEqual(fresh.problems, []);
  assert.equal(fresh.announced.length, 1);
  assert.match(fresh.announced[0], /^created your end-to-end identity key in this browser/);
  // Opened again (a reload): the keys are there, nothing to say.
  const again = w.user('alice', { homes, label: 'again', newAccount: false });
  assert.equal(await again.secure.open(), true);
  assert.deepEqual([again.announced, again.problems], [[], []]);
  // The record deleted (site data cleared), the account kept: new keys, said plainly.
  homes.rows.delete('alice');
  const after = w.user('alice', { homes, label: 'after', newAccount: false });
  assert.equal(await after.secure.open(), true);
  assert.equal(after.problems.length, 1);
  assert.match(after.problems[0], /^The end-to-end keys were deleted from this browser .*new keys were made\. Everyone you talked to before sees that your key CHANGED/);
  assert.doesNotMatch(after.problems[0], /another tab/i);
});

test('the record deleted while the tab uses it: said as deleted, not as another tab taking over; nothing more is sent', async () => {
  const homes = memoryHomes();
  await Home.open({ nick: 'wendy', homes, e2e, rng: counterRng('x1') }).then(async (h) => {
    homes.rows.delete('wendy');
    await assert.rejects(h.save(), (e) => e instanceof HomeError && e.kind === 'Deleted' && /deleted from this browser/.test(e.message));
  });
  const w = world();
  const alice = w.user('alice');
  const bob = w.user('bob');
  await loggedIn(w, alice, bob);
  alice.homes.rows.delete('alice');
  assert.equal(alice.secure.sendText('dave', 'waiting for keys', 9).kind, 'Queued');
  alice.secure.command('insecure', 'bob');
  await alice.secure.settled();
  assert.equal(alice.secure.sessions, null, 'the sessions are dropped');
  assert.match(alice.problems.at(-1), /^The end-to-end keys were deleted from this browser .*this tab stopped using them/);
  assert.ok(!alice.problems.some((p) => /another tab/i.test(p)), alice.problems.join(' | '));
  assert.match(alice.log.at(-1), /^dropped: not sent: end-to-end encryption stopped in this tab \(the end-to-end keys were deleted from this browser\)$/);
  assert.equal(alice.secure.sendText('bob', 'after', 10).kind, 'Refused');
});

test('the page that lost its keys tells the sender: blocked at once (key changed), told the count after /accept-key', async () => {
  const { w, alice, bob } = await talking();
  await sendDelivered(w, bob, 'alice', 'hello alice', 2);
  // bob's site data is cleared: the page makes new keys.
  bob.secure.drop('reloaded');
  bob.homes.rows.delete('bob');
  const bob2 = w.user('bob', { homes: bob.homes, label: 'bob new keys', newAccount: false });
  await loggedIn(w, bob2);
  await sendDelivered(w, alice, 'bob', 'lost one', 3);
  assert.ok(bob2.log.includes('event Unreadable'), bob2.log.join(' | '));
  // bob's page told alice, end-to-end, in a start under its new key: no user text of bob's.
  const notice = bob2.sent.filter((m) => m.type === 'Relay');
  assert.equal(notice.length, 1);
  assert.equal(notice[0].line, null);
  await w.flush();
  await Promise.all(w.delivered);
  assert.equal(alice.secure.status('bob').failure?.kind, 'KeyChanged');
  assert.equal(alice.secure.sendText('bob', 'lost two', 4).kind, 'Refused');
  assert.equal(alice.events.some((e) => e.kind === 'PeerCouldNotRead'), false, 'not before /accept-key');
  assert.equal(alice.secure.command('accept-key', 'bob'), null);
  await alice.secure.settled();
  const told = alice.events.find((e) => e.kind === 'PeerCouldNotRead');
  assert.deepEqual(told, { kind: 'PeerCouldNotRead', peer: 'bob', count: 1 });
  assert.deepEqual(secureEventWords(told, alice.secure.words), {
    peer: 'bob', kind: 'error',
    text: "bob could not read 1 of your messages (bob's client no longer had the keys of your secure session): send again what you sent bob before the key-change warning",
  });
  // Sent again, it reaches bob's new keys.
  await sendDelivered(w, alice, 'bob', 'lost one, again', 5);
  assert.deepEqual(bob2.shown.map((m) => m.text), ['lost one, again']);
});

test('a reader who lost its keys before ever answering tells the sender too (its lines are still session starts)', async () => {
  // alice wrote first; bob never answered: each of alice's lines is a start.
  const { w, alice, bob } = await talking();
  bob.secure.drop('reloaded');
  bob.homes.rows.delete('bob');
  const bob2 = w.user('bob', { homes: bob.homes, label: 'bob new keys', newAccount: false });
  await loggedIn(w, bob2);
  await sendDelivered(w, alice, 'bob', 'lost one', 2);
  assert.ok(bob2.log.includes('event Unreadable'), bob2.log.join(' | '));
  assert.equal(bob2.sent.filter((m) => m.type === 'Relay').length, 1, 'the notice');
  await w.flush();
  await Promise.all(w.delivered);
  assert.equal(alice.secure.status('bob').failure?.kind, 'KeyChanged');
  assert.equal(alice.secure.command('accept-key', 'bob'), null);
  await alice.secure.settled();
  assert.deepEqual(alice.events.find((e) => e.kind === 'PeerCouldNotRead'), { kind: 'PeerCouldNotRead', peer: 'bob', count: 1 });
});
