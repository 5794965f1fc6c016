// The private conversations kept in the browser (privlog.js) over an in-memory backend with
// IndexedDB's shape: bounded per conversation and in number, written when added, restored,
// forgotten when closed, stored garbage skipped.
import test from 'node:test';
import assert from 'node:assert/strict';
import { PrivateLog, MAX_LINES, MAX_CONVS } from '../src/privlog.js';

function memoryBackend() {
  const rows = new Map(); // `${account} ${peerKey}` → record (structured copies)
  const ops = [];
  return {
    rows,
    ops,
    load: async (account) => [...rows.values()].filter((r) => r.account === account).map((r) => structuredClone(r)),
    put: async (r) => {
      ops.push(['put', r.peerKey]);
      rows.set(`${r.account} ${r.peerKey}`, structuredClone(r));
    },
    delete: async (a, p) => {
      ops.push(['delete', p]);
      rows.delete(`${a} ${p}`);
    },
    clear: async (a) => {
      for (const k of [...rows.keys()]) if (k.startsWith(`${a} `)) rows.delete(k);
    },
  };
}

test('lines both ways are stored and a new page gets them back, in order, marked plain', async () => {
  const backend = memoryBackend();
  const log = new PrivateLog('Wendy', backend);
  log.add('Max', { ts: 1000n, from: 'wendy', text: 'psst' });
  log.add('max', { ts: 2000, from: 'Max', text: 'hi back' });
  log.add('bob', { ts: 3000, from: 'bob', text: 'another', kind: 'notice' });
  await log.settled();
  const again = new PrivateLog('wendy', backend);
  const convs = await again.load();
  assert.deepEqual(convs.map((c) => c.peer), ['Max', 'bob']);
  assert.deepEqual(convs[0].lines, [
    { ts: 1000, from: 'wendy', text: 'psst', kind: 'line', plain: true },
    { ts: 2000, from: 'Max', text: 'hi back', kind: 'line', plain: true },
  ]);
  assert.equal(convs[1].lines[0].kind, 'notice');
  assert.deepEqual(await new PrivateLog('other', backend).load(), [], 'another account sees none of them');
});

test('writes are coalesced: one put per conversation per task', async () => {
  const backend = memoryBackend();
  const log = new PrivateLog('wendy', backend);
  for (let i = 0; i < 50; i++) log.add('max', { ts: i, from: 'max', text: `line ${i}` });
  await log.settled();
  assert.deepEqual(backend.ops, [['put', 'max']]);
});

test(`at most ${MAX_LINES} lines per conversation and ${MAX_CONVS} conversations`, async () => {
  const backend = memoryBackend();
  const log = new PrivateLog('wendy', backend);
  for (let i = 0; i < MAX_LINES + 20; i++) log.add('max', { ts: i, from: 'max', text: `line ${i}` });
  for (let i = 0; i < MAX_CONVS; i++) log.add(`peer${i}`, { ts: i, from: `peer${i}`, text: 'hi' });
  await log.settled();
  assert.equal(backend.rows.size, MAX_CONVS);
  assert.ok(!backend.rows.has('wendy max'), 'the conversation written longest ago went first');
  const log2 = new PrivateLog('wendy', memoryBackend());
  for (let i = 0; i < MAX_LINES + 20; i++) log2.add('max', { ts: i, from: 'max', text: `line ${i}` });
  await log2.settled();
  const [conv] = await new PrivateLog('wendy', log2.backend).load();
  assert.equal(conv.lines.length, MAX_LINES);
  assert.equal(conv.lines[0].text, 'line 20');
});

test('a closed conversation is deleted; clear forgets them all', async () => {
  const backend = memoryBackend();
  const log = new PrivateLog('wendy', backend);
  log.add('max', { ts: 1, from: 'max', text: 'a' });
  log.add('bob', { ts: 2, from: 'bob', text: 'b' });
  await log.settled();
  log.close('MAX');
  await log.settled();
  assert.deepEqual((await new PrivateLog('wendy', backend).load()).map((c) => c.peer), ['bob']);
  log.clear();
  await log.settled();
  assert.equal(backend.rows.size, 0);
});

test('stored records that are not well formed are skipped, not trusted', async () => {
  const backend = memoryBackend();
  backend.rows.set('wendy x', { account: 'wendy', peerKey: 'x', peer: 'not a nick!', lines: [] });
  backend.rows.set('wendy y', { account: 'wendy', peerKey: 'y', peer: 'y', lines: 'no' });
  backend.rows.set('wendy z', { account: 'wendy', peerKey: 'z', peer: 'z', updated: 5, lines: [null, { ts: -1, from: 'z', text: 'x' }, { ts: 7, from: 'z', text: 'ok' }, { ts: 8, from: 'z', text: 42 }] });
  const convs = await new PrivateLog('wendy', backend).load();
  assert.deepEqual(convs, [{ peer: 'z', lines: [{ ts: 7, from: 'z', text: 'ok', kind: 'line', plain: true }] }]);
});

test('a failing store is reported, and later writes still go', async () => {
  const backend = memoryBackend();
  const errors = [];
  let fail = true;
  const put = backend.put;
  backend.put = async (r) => {
    if (fail) throw new Error('quota');
    return put(r);
  };
  const log = new PrivateLog('wendy', backend, { onError: (e) => errors.push(e.message) });
  log.add('max', { ts: 1, from: 'max', text: 'a' });
  await log.settled();
  assert.deepEqual(errors, ['quota']);
  fail = false;
  log.add('max', { ts: 2, from: 'max', text: 'b' });
  await log.settled();
  assert.equal(backend.rows.get('wendy max').lines.length, 2);
});

test('add settles once its line is written; a kept line is recognised by its server id', async () => {
  const backend = memoryBackend();
  let release;
  const gate = new Promise((r) => {
    release = r;
  });
  const slow = { ...backend, put: async (r) => { await gate; return backend.put(r); } };
  const log = new PrivateLog('alice', slow);
  let settled = false;
  const kept = log.add('bob', { ts: 5n, from: 'bob', text: 'hi', id: 77n }).then(() => {
    settled = true;
  });
  assert.equal(log.has('Bob', 77n), true);
  assert.equal(log.has('bob', 78n), false);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(settled, false, 'settled before the write');
  release();
  await kept;
  assert.equal(backend.rows.get('alice bob').lines[0].id, '77');
  // A new page: the id came back, so the server's repeat of line 77 is recognised.
  const again = new PrivateLog('alice', backend);
  await again.load();
  assert.equal(again.has('bob', 77n), true);
  assert.equal(again.has('bob', '77'), true);
});

test('a stored id that is not a u64 in decimal is dropped, the line kept', async () => {
  const backend = memoryBackend();
  backend.rows.set('alice bob', { account: 'alice', peerKey: 'bob', peer: 'bob', updated: 1, lines: [{ ts: 1, from: 'bob', text: 'x', id: '<img>' }, { ts: 2, from: 'bob', text: 'y', id: 42 }] });
  const log = new PrivateLog('alice', backend);
  const [conv] = await log.load();
  assert.deepEqual(conv.lines.map((l) => [l.text, l.id]), [['x', undefined], ['y', undefined]]);
});

test('a line whose write failed resolves false, is written again, and its repeat waits for that write', async () => {
  const backend = memoryBackend();
  let fail = true;
  const flaky = { ...backend, put: async (r) => { if (fail) throw Object.assign(new Error(''), { name: 'QuotaExceededError' }); return backend.put(r); } };
  const errors = [];
  const log = new PrivateLog('alice', flaky, { onError: (e) => errors.push(e.name) });
  assert.equal(await log.add('bob', { ts: 1n, from: 'bob', text: 'one', id: 5n }), false);
  assert.deepEqual(errors, ['QuotaExceededError']);
  assert.equal(backend.rows.size, 0);
  // The server sends line 5 again (it was not acknowledged): not shown again, written again.
  fail = false;
  const again = log.repeat('bob', 5n);
  assert.ok(again, 'a repeat of a line shown before');
  assert.equal(await again, true);
  assert.equal(backend.rows.get('alice bob').lines[0].id, '5');
  assert.equal(await log.repeat('bob', 5n), true, 'kept now: at once');
  assert.equal(log.repeat('bob', 6n), null, 'never seen: show it');
});

test('an end-to-end encrypted line is kept as not plain, and comes back so', async () => {
  const backend = memoryBackend();
  const log = new PrivateLog('wendy', backend);
  assert.equal(await log.add('max', { ts: 5, from: 'max', text: 'secret', plain: false, id: 7n }), true);
  log.add('max', { ts: 6, from: 'wendy', text: 'open' });
  await log.settled();
  const [conv] = await new PrivateLog('wendy', backend).load();
  assert.deepEqual(conv.lines.map((l) => [l.text, l.plain]), [['secret', false], ['open', true]]);
});

test('a line of ours stays pending until settled: a new page sees it unconfirmed, or why it was not sent', async () => {
  const backend = memoryBackend();
  const log = new PrivateLog('wendy', backend);
  log.add('max', { ts: 1000, from: 'wendy', text: 'taken', plain: false, local: 'a-1', pending: true });
  log.add('max', { ts: 2000, from: 'wendy', text: 'never answered', plain: false, local: 'a-2', pending: true });
  log.add('max', { ts: 3000, from: 'wendy', text: 'refused', plain: false, local: 'a-3', pending: true });
  assert.equal(await log.settle('max', 'a-1'), true);
  assert.equal(await log.settle('Max', 'a-3', 'not sent: max has no end-to-end keys'), true);
  assert.equal(await log.settle('max', 'nothing-by-that-name'), true); // gone: a no-op
  await log.settled();
  const [conv] = await new PrivateLog('wendy', backend).load();
  assert.deepEqual(conv.lines.map((l) => [l.text, l.pending ?? false, l.note ?? null]), [
    ['taken', false, null],
    ['never answered', true, null],
    ['refused', false, 'not sent: max has no end-to-end keys'],
  ]);
});

test('stored pending flags, names and notes of the wrong shape are dropped or cut', async () => {
  const backend = memoryBackend();
  backend.rows.set('wendy max', {
    account: 'wendy', peerKey: 'max', peer: 'max', updated: 1,
    lines: [
      { ts: 1, from: 'wendy', text: 'a', pending: 'yes', local: 'x'.repeat(65), note: 7 },
      { ts: 2, from: 'wendy', text: 'b', pending: true, local: 'ok', note: 'n'.repeat(10_000) },
    ],
  });
  const [conv] = await new PrivateLog('wendy', backend).load();
  assert.equal(conv.lines[0].pending, undefined);
  assert.equal(conv.lines[0].local, undefined);
  assert.equal(conv.lines[0].note, undefined);
  assert.equal(conv.lines[1].pending, true);
  assert.equal(conv.lines[1].local, 'ok');
  assert.equal(conv.lines[1].note.length, 500);
});
