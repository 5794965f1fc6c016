// The driver against a fake WebSocket and mocked timers: lines across reconnections,
// backoff, no retry when it cannot help.
import test, { mock } from 'node:test';
import assert from 'node:assert/strict';
import { Connection } from '../src/connection.js';
import { encodeServer, decodeClient } from '../src/protocol.js';

const sockets = [];
class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    sockets.push(this);
  }
  send(b) {
    this.sent.push(decodeClient(b));
  }
  close() {
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  server(msg) {
    const b = encodeServer(msg);
    this.onmessage?.({ data: b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) });
  }
  drop() {
    this.readyState = 3;
    this.onclose?.({ code: 1006, reason: '' });
  }
}

const account = { nick: 'alice', publicKey: Uint8Array.from({ length: 65 }, (_, i) => (i ? 1 : 4)), sign: async () => new Uint8Array(64) };
const tick = () => new Promise((r) => setImmediate(r));

async function login(ws) {
  ws.open();
  ws.server({ type: 'Challenge', nonce: new Uint8Array(32) });
  await tick();
  ws.server({ type: 'Welcome', nick: 'alice', server: 'test', online: 1, max_text_len: 4096, rate_burst: 50, rate_per_sec: 50 });
  ws.server({ type: 'Users', nicks: ['alice'], last: true });
}

/** A connection to a FakeSocket; `keep(e)` is what the page's handler returns for event `e`. */
function setup(keep = () => undefined, random = () => 0) {
  sockets.length = 0;
  const events = [];
  let t = 0;
  const onEvent = (e) => {
    events.push(e);
    return keep(e);
  };
  const conn = new Connection({ account, onEvent, url: 'wss://x/ws', WebSocketImpl: FakeSocket, clock: () => t, random });
  return { conn, events, states: () => events.filter((e) => e.kind === 'lineState').map((e) => [e.line, e.state]), advance: (ms) => { t += ms; } };
}

test('a line typed while disconnected waits, then goes out after the login and is answered', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const { conn, events, states } = setup();
    const line = conn.sendLine({ type: 'Public', room: '#lobby', text: 'early', action: false });
    assert.deepEqual(states(), [[line, 'waiting']]);
    assert.match(events.find((e) => e.kind === 'lineState').detail, /once connected/);
    conn.start();
    const ws = sockets[0];
    await login(ws);
    assert.deepEqual(ws.sent.map((m) => m.type), ['KeyHello', 'KeyProof', 'Public']);
    ws.server({ type: 'Sent', id: 5n, ts: 9n });
    assert.deepEqual(states().at(-1), [line, 'sent']);
    assert.ok(events.some((e) => e.kind === 'status' && /Connected to test as alice/.test(e.text)));
  } finally {
    mock.timers.reset();
  }
});

test('a lost connection: the written line is unconfirmed, the rest is carried, in order, after a backoff', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const { conn, events, states } = setup();
    conn.start();
    const ws = sockets[0];
    await login(ws);
    const l1 = conn.sendLine({ type: 'Public', room: '#lobby', text: 'one', action: false });
    ws.drop();
    assert.deepEqual(states().at(-1), [l1, 'unknown']);
    const l2 = conn.sendLine({ type: 'Public', room: '#lobby', text: 'two', action: false });
    const l3 = conn.sendLine({ type: 'Private', to: 'bob', text: 'three' });
    const status = events.filter((e) => e.kind === 'status').at(-1);
    assert.match(status.text, /Reconnecting in 1 s/);
    mock.timers.tick(999);
    assert.equal(sockets.length, 1);
    mock.timers.tick(1);
    assert.equal(sockets.length, 2);
    const ws2 = sockets[1];
    await login(ws2);
    assert.deepEqual(ws2.sent.slice(2).map((m) => m.text), ['two', 'three']);
    ws2.server({ type: 'Sent', id: 6n, ts: 1n });
    ws2.server({ type: 'Error', code: 20, fatal: false, detail: 'no user bob' });
    assert.deepEqual(states().slice(-2), [[l2, 'sent'], [l3, 'refused']]);
    assert.match(events.filter((e) => e.kind === 'lineState').at(-1).detail, /no user bob \(no-such-nick\)/);
    assert.equal(events.filter((e) => e.kind === 'lineState').at(-1).code, 20, "the refusal's code, for the page");
  } finally {
    mock.timers.reset();
  }
});

test('the backoff doubles up to 30 s and resets after a welcome', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const { conn, events } = setup();
    conn.start();
    const delays = [];
    for (let i = 0; i < 7; i++) {
      sockets.at(-1).drop();
      delays.push(events.filter((e) => e.kind === 'status').at(-1).text.match(/in (\d+) s/)[1]);
      mock.timers.tick(30_000);
    }
    assert.deepEqual(delays, ['1', '2', '4', '8', '16', '30', '30']);
    await login(sockets.at(-1));
    sockets.at(-1).drop();
    assert.match(events.filter((e) => e.kind === 'status').at(-1).text, /in 1 s/);
  } finally {
    mock.timers.reset();
  }
});

test('the jitter never makes a wait longer than its step (30 s at most), and the status says the real wait', async () => {
  for (const r of [0, 0.3, 0.5, 0.999999]) {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const { conn, events } = setup(undefined, () => r);
      conn.start();
      for (let i = 0; i < 8; i++) {
        const before = sockets.length;
        sockets.at(-1).drop();
        const said = Number(events.filter((e) => e.kind === 'status').at(-1).text.match(/Reconnecting in (\d+) s/)[1]);
        assert.ok(said <= 30, `said ${said} s with random ${r}`);
        // The socket opens at the real wait: not before, and at once then.
        let waited = 0;
        while (sockets.length === before && waited <= 31_000) {
          mock.timers.tick(1);
          waited += 1;
        }
        assert.equal(sockets.length, before + 1, 'reconnected');
        assert.ok(waited <= 30_000, `waited ${waited} ms with random ${r}`);
        assert.ok(Math.abs(waited - said * 1000) <= 500 || (said === 1 && waited < 1000), `said ${said} s, waited ${waited} ms`);
      }
    } finally {
      mock.timers.reset();
    }
  }
});

test('a refused nick stops: no reconnecting', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const { conn, events } = setup();
    conn.start();
    const ws = sockets[0];
    ws.open();
    ws.server({ type: 'Error', code: 12, fatal: true, detail: 'registered to another key' });
    assert.ok(events.some((e) => e.kind === 'loginFailed' && e.retry === false));
    assert.ok(events.some((e) => e.kind === 'stopped'));
    mock.timers.tick(60_000);
    assert.equal(sockets.length, 1);
  } finally {
    mock.timers.reset();
  }
});

test('personal lines are acknowledged once handed to the page', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const { conn, events, advance } = setup();
    conn.start();
    const ws = sockets[0];
    await login(ws);
    ws.server({ type: 'Offline', id: 40n, ts: 1n, from: 'bob', text: 'hi' });
    ws.server({ type: 'Relay', id: 41n, ts: 2n, from: 'bob', payload: new Uint8Array([1]) });
    assert.deepEqual(events.filter((e) => e.kind === 'line' || e.kind === 'relay').map((e) => e.kind), ['line', 'relay']);
    assert.deepEqual(ws.sent.filter((m) => m.type === 'Received'), []);
    advance(1000);
    mock.timers.tick(1000);
    assert.deepEqual(ws.sent.filter((m) => m.type === 'Received'), [{ type: 'Received', up_to: 41n }]);
  } finally {
    mock.timers.reset();
  }
});

test('after stop (another tab took over) nothing reconnects', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const { conn, events, states } = setup();
    conn.start();
    await login(sockets[0]);
    const line = conn.sendLine({ type: 'Public', room: '#lobby', text: 'x', action: false });
    conn.stop('another tab took over this account');
    assert.deepEqual(states().at(-1), [line, 'unknown']);
    assert.match(events.find((e) => e.kind === 'stopped').why, /another tab/);
    mock.timers.tick(120_000);
    assert.equal(sockets.length, 1);
    assert.equal(sockets[0].readyState, 3);
  } finally {
    mock.timers.reset();
  }
});

test('a personal line the page is still keeping is acknowledged only once kept, and in order', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const keeping = new Map(); // id → resolve
    const { conn, advance } = setup((e) => (e.kind === 'line' && e.personal ? new Promise((resolve) => keeping.set(e.msg.id, resolve)) : undefined));
    conn.start();
    const ws = sockets[0];
    await login(ws);
    ws.server({ type: 'Private', id: 50n, ts: 1n, from: 'bob', text: 'one' });
    ws.server({ type: 'Private', id: 51n, ts: 2n, from: 'bob', text: 'two' });
    const received = () => ws.sent.filter((m) => m.type === 'Received');
    advance(1000);
    mock.timers.tick(1000);
    await tick();
    assert.deepEqual(received(), [], 'acknowledged before the page kept it');
    // The later one settles first: still nothing, since 50 is not kept yet (acks are cumulative).
    keeping.get(51n)();
    await tick();
    advance(1000);
    mock.timers.tick(1000);
    assert.deepEqual(received(), []);
    keeping.get(50n)();
    await tick();
    await tick();
    advance(1000);
    mock.timers.tick(1000);
    assert.deepEqual(received(), [{ type: 'Received', up_to: 51n }]);
  } finally {
    mock.timers.reset();
  }
});

test('a personal line the page could not keep is not acknowledged, nor any after it on that connection', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const { conn, advance } = setup((e) => (e.kind === 'line' && e.personal ? Promise.resolve(e.msg.id !== 60n) : undefined));
    conn.start();
    const ws = sockets[0];
    await login(ws);
    ws.server({ type: 'Private', id: 60n, ts: 1n, from: 'bob', text: 'not kept' });
    ws.server({ type: 'Private', id: 61n, ts: 2n, from: 'bob', text: 'kept' });
    for (let i = 0; i < 4; i++) await tick();
    advance(1000);
    mock.timers.tick(1000);
    assert.deepEqual(ws.sent.filter((m) => m.type === 'Received'), []);
  } finally {
    mock.timers.reset();
  }
});

test('a Relay is acknowledged only once the page saved and kept it (its promise), then said acknowledged', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    let done;
    const { conn, events, advance } = setup((e) => (e.kind === 'relay' ? new Promise((resolve) => { done = resolve; }) : undefined));
    conn.start();
    const ws = sockets[0];
    await login(ws);
    ws.server({ type: 'Relay', id: 70n, ts: 1n, from: 'bob', payload: new Uint8Array([9]) });
    const received = () => ws.sent.filter((m) => m.type === 'Received');
    advance(1000);
    mock.timers.tick(1000);
    await tick();
    assert.deepEqual(received(), [], 'acknowledged before its state was saved and its line kept');
    assert.equal(events.some((e) => e.kind === 'acknowledged'), false);
    done(true);
    await tick();
    await tick();
    advance(1000);
    mock.timers.tick(1000);
    assert.deepEqual(received(), [{ type: 'Received', up_to: 70n }]);
    assert.deepEqual(events.filter((e) => e.kind === 'acknowledged'), [{ kind: 'acknowledged', upTo: 70n }]);
  } finally {
    mock.timers.reset();
  }
});
