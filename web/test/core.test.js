// The sans-I/O core against scripted servers (no browser, no socket).
import test from 'node:test';
import assert from 'node:assert/strict';
import { Core, Seen, keyLoginMessage, TokenBucket, PING_AFTER_MS, READ_TIMEOUT_MS, ACK_DELAY_MS } from '../src/core.js';
import { encodeServer, decodeClient } from '../src/protocol.js';

const KEY = Uint8Array.from({ length: 65 }, (_, i) => (i === 0 ? 4 : i));
const NONCE = Uint8Array.from({ length: 32 }, (_, i) => 200 - i);

function drain(core, now) {
  const out = [];
  for (;;) {
    const b = core.pollTransmit(now);
    if (!b) break;
    out.push(decodeClient(b));
  }
  return out;
}
function events(core) {
  const out = [];
  for (let e; (e = core.pollEvent()); ) out.push(e);
  return out;
}
const S = (msg) => encodeServer(msg);
const welcome = (over = {}) => ({ type: 'Welcome', nick: 'alice', server: 'mm-server', online: 2, max_text_len: 4096, rate_burst: 20, rate_per_sec: 5, ...over });

function loggedIn(opts = {}) {
  const core = new Core({ nick: 'alice', key: KEY, now: 0, ...opts });
  drain(core, 0);
  core.receive(S({ type: 'Challenge', nonce: NONCE }), 1);
  const sign = events(core).find((e) => e.kind === 'sign');
  core.giveSignature(new Uint8Array(64), 2);
  drain(core, 2);
  core.receive(S(welcome(opts.welcome)), 3);
  core.receive(S({ type: 'Users', nicks: ['alice', 'bob'], last: true }), 3);
  return { core, sign };
}

test('the signed login message has key_login.rs layout', () => {
  const m = keyLoginMessage(new Uint8Array(32).fill(7), 'alice', KEY);
  const ctx = new TextEncoder().encode('multi-messenger key login v1\0');
  assert.equal(ctx.length, 29);
  assert.deepEqual(m.slice(0, 29), ctx);
  assert.deepEqual(m.slice(29, 61), new Uint8Array(32).fill(7));
  assert.equal(m[61], 5);
  assert.deepEqual(m.slice(62, 67), new TextEncoder().encode('alice'));
  assert.deepEqual(m.slice(67), KEY);
  assert.equal(m.length, 29 + 32 + 1 + 5 + 65);
});

test('login: KeyHello, Challenge → sign → KeyProof, Welcome and Users → welcome', () => {
  const core = new Core({ nick: 'alice', key: KEY, now: 0 });
  const hello = drain(core, 0);
  assert.deepEqual(hello, [{ type: 'KeyHello', version: 6, nick: 'alice', key: KEY }]);
  core.receive(S({ type: 'Challenge', nonce: NONCE }), 10);
  const [sign] = events(core);
  assert.equal(sign.kind, 'sign');
  assert.deepEqual(sign.message, keyLoginMessage(NONCE, 'alice', KEY));
  assert.deepEqual(drain(core, 10), [], 'nothing before the signature');
  core.giveSignature(new Uint8Array(64).fill(9), 20);
  assert.deepEqual(drain(core, 20), [{ type: 'KeyProof', signature: new Uint8Array(64).fill(9) }]);
  core.receive(S(welcome({ nick: 'Alice' })), 30);
  assert.deepEqual(events(core), []);
  core.receive(S({ type: 'Users', nicks: ['Alice'], last: false }), 31);
  core.receive(S({ type: 'Users', nicks: ['bob'], last: true }), 31);
  const [w] = events(core);
  assert.equal(w.kind, 'welcome');
  assert.equal(w.nick, 'Alice');
  assert.deepEqual(w.users, ['Alice', 'bob']);
  assert.ok(core.ready);
});

test('a refused login is reported in plain words and not retried', () => {
  const core = new Core({ nick: 'alice', key: KEY, now: 0 });
  drain(core, 0);
  core.receive(S({ type: 'Error', code: 12, fatal: true, detail: 'the nick alice is registered to another key' }), 1);
  const ev = events(core);
  assert.equal(ev[0].kind, 'loginFailed');
  assert.equal(ev[0].name, 'nick-registered');
  assert.match(ev[0].words, /belongs to another account/);
  assert.match(ev[0].words, /registered to another key/);
  assert.equal(ev[0].retry, false);
  assert.equal(ev[1].kind, 'closed');
  assert.ok(core.isClosed);
});

test('busy at login is worth retrying; a welcome for another nick is not', () => {
  const a = new Core({ nick: 'alice', key: KEY, now: 0 });
  a.receive(S({ type: 'Error', code: 35, fatal: true, detail: '' }), 1);
  assert.equal(events(a)[0].retry, true);
  const b = new Core({ nick: 'alice', key: KEY, now: 0 });
  b.receive(S({ type: 'Challenge', nonce: NONCE }), 1);
  b.giveSignature(new Uint8Array(64), 1);
  b.receive(S(welcome({ nick: 'mallory' })), 2);
  const closed = events(b).find((e) => e.kind === 'closed');
  assert.match(closed.why, /welcomed us as "mallory"/);
});

test('the login times out', () => {
  const core = new Core({ nick: 'alice', key: KEY, now: 0, loginTimeoutMs: 1000 });
  assert.equal(core.pollTimeout(0), 0, 'KeyHello is due now');
  drain(core, 0);
  assert.equal(core.pollTimeout(0), 1000);
  core.handleTimeout(1000);
  const [closed] = events(core);
  assert.equal(closed.kind, 'closed');
  assert.equal(closed.retry, true);
});

test('a Ping is answered with a Pong of the same token, at any time', () => {
  const core = new Core({ nick: 'alice', key: KEY, now: 0 });
  drain(core, 0);
  core.receive(S({ type: 'Ping', token: 1n << 40n }), 1);
  assert.deepEqual(drain(core, 1), [{ type: 'Pong', token: 1n << 40n }]);
  const { core: c2 } = loggedIn();
  events(c2);
  c2.receive(S({ type: 'Ping', token: 7n }), 5);
  assert.deepEqual(drain(c2, 5), [{ type: 'Pong', token: 7n }]);
});

test('line answers are matched in order; room and key commands are not counted', () => {
  const { core } = loggedIn();
  events(core);
  core.sendLine({ type: 'Public', room: '#lobby', text: 'one', action: false }, 'L1');
  core.send({ type: 'Join', room: '#dev' });
  core.sendLine({ type: 'Private', to: 'bob', text: 'two' }, 'L2');
  core.send({ type: 'FetchBundle', nick: 'bob' });
  core.sendLine({ type: 'Private', to: 'carol', text: 'three' }, 'L3');
  assert.equal(drain(core, 10).length, 5);
  core.receive(S({ type: 'RoomError', room: '#dev', code: 43, detail: 'banned' }), 11);
  core.receive(S({ type: 'Sent', id: 5n, ts: 100n }), 11);
  core.receive(S({ type: 'Bundle', nick: 'bob', answer: { type: 'NoKeys' } }), 11);
  core.receive(S({ type: 'Queued', id: 6n, ts: 101n }), 12);
  core.receive(S({ type: 'Away', nick: 'bob', message: 'lunch' }), 12);
  core.receive(S({ type: 'Error', code: 20, fatal: false, detail: 'no such nick carol' }), 13);
  const ev = events(core);
  const answers = ev.filter((e) => e.kind === 'answer');
  assert.deepEqual(answers.map((a) => [a.line, a.outcome]), [['L1', 'sent'], ['L2', 'queued'], ['L3', 'refused']]);
  assert.equal(answers[2].detail, 'no such nick carol');
  assert.equal(answers[2].name, 'no-such-nick');
  assert.deepEqual(ev.filter((e) => e.kind === 'server').map((e) => e.msg.type), ['RoomError', 'Away']);
  assert.deepEqual(ev.filter((e) => e.kind === 'keys').map((e) => e.msg.type), ['Bundle']);
});

test('an answer without a line closes the connection', () => {
  const { core } = loggedIn();
  events(core);
  core.receive(S({ type: 'Sent', id: 1n, ts: 1n }), 5);
  assert.equal(events(core).at(-1).kind, 'closed');
});

test('personal lines are acknowledged with Received once taken, one per burst', () => {
  const { core } = loggedIn();
  events(core);
  drain(core, 5);
  core.receive(S({ type: 'Offline', id: 3n, ts: 50n, from: 'bob', text: 'while away' }), 10);
  core.receive(S({ type: 'Private', id: 9n, ts: 60n, from: 'bob', text: 'hi' }), 10);
  assert.deepEqual(drain(core, 10), [], 'nothing before the front end took them');
  const ev = events(core);
  assert.deepEqual(ev.map((e) => [e.kind, e.earlier, e.ack]), [['line', true, 3n], ['line', false, 9n]]);
  for (const e of ev) core.taken(e.ack, 11);
  assert.deepEqual(drain(core, 11), [], 'a burst is acknowledged once, a little later');
  assert.equal(core.pollTimeout(11), 11 + ACK_DELAY_MS);
  assert.deepEqual(drain(core, 11 + ACK_DELAY_MS), [{ type: 'Received', up_to: 9n }]);
  assert.deepEqual(drain(core, 2000), [], 'once');
});

test('lines taken later in a burst join its acknowledgement', () => {
  const { core } = loggedIn();
  events(core);
  drain(core, 5);
  core.receive(S({ type: 'Private', id: 9n, ts: 60n, from: 'bob', text: 'hi' }), 10);
  core.taken(core.pollEvent().ack, 10);
  core.receive(S({ type: 'Private', id: 11n, ts: 61n, from: 'bob', text: 'ho' }), 50);
  core.taken(core.pollEvent().ack, 50);
  assert.equal(core.pollTimeout(50), 10 + ACK_DELAY_MS);
  core.handleTimeout(10 + ACK_DELAY_MS);
  assert.deepEqual(drain(core, 10 + ACK_DELAY_MS), [{ type: 'Received', up_to: 11n }]);
});

test('a Relay goes to the page as relay, acknowledged once taken, and the acknowledgement is an event', () => {
  const { core } = loggedIn();
  events(core);
  drain(core, 5);
  core.receive(S({ type: 'Relay', id: 12n, ts: 70n, from: 'bob', payload: new Uint8Array([1, 2]) }), 10);
  const [e] = events(core);
  assert.equal(e.kind, 'relay');
  assert.equal(e.msg.from, 'bob');
  assert.deepEqual(e.msg.payload, new Uint8Array([1, 2]));
  assert.equal(e.ack, 12n);
  assert.deepEqual(drain(core, 10 + ACK_DELAY_MS), [], 'nothing acknowledged before it is taken');
  core.taken(e.ack, 10);
  assert.deepEqual(drain(core, 10 + ACK_DELAY_MS), [{ type: 'Received', up_to: 12n }]);
  assert.deepEqual(events(core), [{ kind: 'acknowledged', upTo: 12n }]);
});

test('the key messages go to the page as keys events', () => {
  const { core } = loggedIn();
  events(core);
  drain(core, 5);
  const msgs = [
    { type: 'KeysPublished', one_time: 100, other_device: false },
    { type: 'PrekeysLow', one_time: 3 },
    { type: 'Bundle', nick: 'bob', answer: { type: 'NoKeys' } },
    { type: 'KeysRefused', code: 2, detail: 'no' },
  ];
  for (const m of msgs) core.receive(S(m), 10);
  const got = events(core);
  assert.deepEqual(got.map((e) => e.kind), ['keys', 'keys', 'keys', 'keys']);
  assert.deepEqual(got.map((e) => e.msg.type), msgs.map((m) => m.type));
  // Key messages go out as commands, not lines.
  assert.equal(core.send({ type: 'FetchBundle', nick: 'bob' }), true);
  assert.deepEqual(drain(core, 5000), [{ type: 'FetchBundle', nick: 'bob' }]);
});

test('repeats across reconnections are recognised, and a personal one acknowledged once the front end kept it', () => {
  const seen = new Seen();
  const { core } = loggedIn({ seen });
  events(core);
  core.receive(S({ type: 'Private', id: 9n, ts: 60n, from: 'bob', text: 'hi' }), 10);
  core.receive(S({ type: 'History', id: 4n, ts: 40n, room: '#lobby', from: 'bob', text: 'old', action: false }), 10);
  assert.equal(events(core).length, 2);
  const { core: again } = loggedIn({ seen });
  events(again);
  drain(again, 5);
  again.receive(S({ type: 'Offline', id: 9n, ts: 60n, from: 'bob', text: 'hi' }), 10);
  again.receive(S({ type: 'History', id: 4n, ts: 40n, room: '#LOBBY', from: 'bob', text: 'old', action: false }), 10);
  // The personal repeat goes to the front end as a repeat (acknowledged once it is kept, which
  // it may not be yet: a failed write); the room's is dropped here.
  const got = events(again);
  assert.deepEqual(got.map((e) => [e.kind, e.ack]), [['repeat', 9n]]);
  assert.deepEqual(drain(again, 10 + ACK_DELAY_MS), []);
  again.taken(got[0].ack, 10);
  assert.deepEqual(drain(again, 10 + ACK_DELAY_MS), [{ type: 'Received', up_to: 9n }]);
});

test('lines are paced inside rate_burst and rate_per_sec', () => {
  const { core } = loggedIn({ welcome: { rate_burst: 4, rate_per_sec: 2 } });
  events(core);
  for (let i = 0; i < 10; i++) core.sendLine({ type: 'Public', room: '#lobby', text: `l${i}`, action: false }, i);
  assert.equal(drain(core, 100).length, 3, 'burst - 1');
  const at = core.pollTimeout(100);
  assert.ok(at > 100 && at <= 100 + 600, `next at ${at}`);
  assert.equal(drain(core, at).length, 1);
  assert.equal(drain(core, at + 10_000).length, 3, 'never more than the burst at once');
});

test('pongs and acknowledgements are not held back by pacing', () => {
  const { core } = loggedIn({ welcome: { rate_burst: 2, rate_per_sec: 1 } });
  events(core);
  core.sendLine({ type: 'Public', room: '#lobby', text: 'a', action: false }, 1);
  core.sendLine({ type: 'Public', room: '#lobby', text: 'b', action: false }, 2);
  assert.equal(drain(core, 10).length, 1);
  core.receive(S({ type: 'Ping', token: 3n }), 11);
  assert.deepEqual(drain(core, 11).map((m) => m.type), ['Pong'], 'ahead of the paced line');
  assert.deepEqual(drain(core, 2000).map((m) => m.type), ['Public']);
});

test('lines sent before the login wait and go out after the welcome, in order', () => {
  const core = new Core({ nick: 'alice', key: KEY, now: 0, carried: [{ line: 'c1', msg: { type: 'Private', to: 'bob', text: 'carried' } }] });
  core.sendLine({ type: 'Public', room: '#lobby', text: 'typed', action: false }, 'c2');
  assert.deepEqual(drain(core, 0).map((m) => m.type), ['KeyHello']);
  core.receive(S({ type: 'Challenge', nonce: NONCE }), 1);
  core.giveSignature(new Uint8Array(64), 1);
  core.receive(S(welcome()), 2);
  core.receive(S({ type: 'Users', nicks: [], last: true }), 2);
  assert.deepEqual(drain(core, 3).map((m) => m.type), ['KeyProof', 'Private', 'Public']);
});

test('unsent and unanswered lines are handed back when the connection is lost', () => {
  const { core } = loggedIn({ welcome: { rate_burst: 2, rate_per_sec: 1 } });
  events(core);
  core.sendLine({ type: 'Public', room: '#lobby', text: 'a', action: false }, 1);
  core.sendLine({ type: 'Public', room: '#lobby', text: 'b', action: false }, 2);
  drain(core, 10);
  core.connectionLost('network', 11);
  assert.deepEqual(core.unanswered(), [1]);
  assert.deepEqual(core.unsent().map((l) => l.line), [2]);
  const closed = events(core).find((e) => e.kind === 'closed');
  assert.equal(closed.retry, true);
});

test('the core pings a silent server and gives up after the read timeout', () => {
  const { core } = loggedIn();
  events(core);
  drain(core, 3);
  assert.equal(core.pollTimeout(3), 3 + PING_AFTER_MS);
  core.handleTimeout(3 + PING_AFTER_MS);
  const [ping] = drain(core, 3 + PING_AFTER_MS);
  assert.equal(ping.type, 'Ping');
  core.handleTimeout(3 + READ_TIMEOUT_MS);
  const closed = events(core).find((e) => e.kind === 'closed');
  assert.match(closed.why, /silent/);
  assert.equal(closed.retry, true);
});

test('replaced is fatal and not retried; undecodable bytes close', () => {
  const { core } = loggedIn();
  events(core);
  core.receive(S({ type: 'Error', code: 14, fatal: true, detail: 'logged in elsewhere' }), 5);
  const closed = events(core).find((e) => e.kind === 'closed');
  assert.equal(closed.retry, false);
  assert.equal(closed.name, 'replaced');
  const { core: c2 } = loggedIn();
  events(c2);
  c2.receive(new Uint8Array([0x40]), 5);
  assert.match(events(c2).at(-1).why, /bad message from server/);
});

test('/who pages are kept only when asked for', () => {
  const { core } = loggedIn();
  events(core);
  core.receive(S({ type: 'Users', nicks: ['x'], last: true }), 5);
  assert.deepEqual(events(core), []);
  core.send({ type: 'Who' });
  drain(core, 5);
  core.receive(S({ type: 'Users', nicks: ['a'], last: false }), 6);
  core.receive(S({ type: 'Users', nicks: ['b'], last: true }), 6);
  assert.deepEqual(events(core), [{ kind: 'who', nicks: ['a', 'b'] }]);
});

test('quit writes Quit and closes', () => {
  const { core } = loggedIn();
  events(core);
  core.quit();
  assert.deepEqual(drain(core, 5), [{ type: 'Quit' }]);
  assert.ok(core.isClosed);
});

test('the token bucket refills at its rate', () => {
  const b = new TokenBucket(2, 1, 0);
  assert.ok(b.take(0));
  assert.ok(b.take(0));
  assert.ok(!b.take(0));
  assert.equal(b.wait(0), 1000);
  assert.ok(b.take(1000));
});

test('Seen forgets the oldest beyond its bound, a ring with constant work per line', () => {
  const seen = new Seen(3);
  for (let i = 1n; i <= 4n; i++) assert.ok(seen.personal(i, 10n));
  assert.equal(seen.size, 3);
  assert.ok(seen.personal(1n, 10n), 'the oldest was forgotten');
  assert.ok(!seen.personal(4n, 10n), 'the newest is remembered');
  assert.ok(seen.room('#Dev', 1n, 1n));
  assert.ok(!seen.room('#dev', 1n, 1n), 'room names without case');
  assert.equal(seen.size, 3);
  const many = new Seen(1000);
  const start = performance.now();
  for (let i = 0n; i < 200_000n; i++) many.room('#lobby', i, i);
  assert.equal(many.size, 1000);
  assert.ok(performance.now() - start < 5000);
});

test('a Shutdown says the server is shutting down, with a reason only when it says more', () => {
  for (const [reason, want] of [
    ['server is shutting down', 'the server is shutting down'],
    ['', 'the server is shutting down'],
    ['maintenance until 10:00', 'the server is shutting down: maintenance until 10:00'],
  ]) {
    const { core } = loggedIn();
    events(core);
    core.receive(S({ type: 'Shutdown', reason }), 1);
    const closed = events(core).filter((e) => e.kind === 'closed');
    assert.equal(closed.length, 1);
    assert.equal(closed[0].why, want);
    assert.equal(closed[0].retry, true);
  }
});
