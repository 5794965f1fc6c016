// The private conversations kept in the browser (privlog.js) over an in-memory backend with
// IndexedDB's shape: bounded per conversation and in number, written when added, restored,
// forgotten when closed, stored garbage skipped.
import test from 'node:test';
import assert from 'node:assert/strict';
import { PrivateLog, MAX_LINES, MAX_CONVS } from '../src/privlog.js';

/**
 * IndexedDB's shape in memory: the stored records are structured copies, apart from any tab's
 * copy; `update` is one transaction (read, change, put) as the IndexedDB backend's; `gate`, if
 * set, holds every write until it resolves (a write in flight).
 */
function memoryBackend() {
  const rows = new Map(); // `${account} ${peerKey}` → record (structured copies)
  const ops = [];
  const backend = {
    rows,
    ops,
    gate: null,
    load: async (account) => [...rows.values()].filter((r) => r.account === account).map((r) => structuredClone(r)),
    update: async (account, peerKey, fn) => {
      if (backend.gate) await backend.gate;
      const k = `${account} ${peerKey}`;
      const stored = rows.get(k);
      const next = fn(stored === undefined ? undefined : structuredClone(stored));
      if (next) {
        ops.push(['put', peerKey]);
        rows.set(k, structuredClone(next));
      }
      const now = rows.get(k);
      return now === undefined ? undefined : structuredClone(now);
    },
    delete: async (a, p, ifNotAfter) => {
      if (backend.gate) await backend.gate;
      const k = `${a} ${p}`;
      if (ifNotAfter !== undefined && (rows.get(k)?.updated ?? 0) > ifNotAfter) return;
      ops.push(['delete', p]);
      rows.delete(k);
    },
    clear: async (a) => {
      for (const k of [...rows.keys()]) if (k.startsWith(`${a} `)) rows.delete(k);
    },
  };
  return backend;
}

/** A write held until `release()`. */
function gate() {
  let release;
  const promise = new Promise((r) => {
    release = r;
  });
  return { promise, release };
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
  const update = backend.update;
  backend.update = async (...a) => {
    if (fail) throw new Error('quota');
    return update(...a);
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
  const slow = { ...backend, update: async (...a) => { await gate; return backend.update(...a); } };
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
  const flaky = { ...backend, update: async (...a) => { if (fail) throw Object.assign(new Error(''), { name: 'QuotaExceededError' }); return backend.update(...a); } };
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

// ---- two tabs of one account taking turns ("Use here" back and forth) ----

/** The texts of the conversation with `peer` as stored. */
async function storedTexts(backend, account, peer) {
  const convs = await new PrivateLog(account, backend).load();
  return convs.find((c) => c.peer === peer)?.lines.map((l) => l.text) ?? [];
}

test('two tabs taking turns over one store: every line both kept is stored, in the order added', async () => {
  const backend = memoryBackend();
  const a = new PrivateLog('wendy', backend);
  const b = new PrivateLog('wendy', backend);
  // Both pages opened the account at the start (each loads once): B waits, A owns it.
  await a.load();
  await b.load();
  const added = [];
  let id = 1;
  const turn = async (tab, n) => {
    for (let i = 0; i < n; i++) {
      const text = `line ${id}`;
      added.push(text);
      assert.equal(await tab.add('max', { ts: id, from: 'max', text, id: BigInt(id) }), true);
      id += 1;
    }
  };
  await turn(a, 3);
  await turn(b, 4); // B took over without reading A's lines: its copy is stale
  await turn(a, 2);
  await turn(b, 1);
  await a.settled();
  await b.settled();
  assert.deepEqual(await storedTexts(backend, 'wendy', 'max'), added);
  // A takes over once more and reads again: B's lines are there, recognised by id.
  const [conv] = await a.load();
  assert.deepEqual(conv.lines.map((l) => l.text), added);
  assert.equal(a.has('max', 7n), true, 'a line B kept is known to A: its repeat is not shown twice');
  assert.equal(await a.repeat('max', 7n), true);
});

test('a write in flight from the tab that lost the account does not remove what the new owner kept', async () => {
  const backend = memoryBackend();
  const a = new PrivateLog('wendy', backend);
  await a.load();
  assert.equal(await a.add('max', { ts: 1, from: 'max', text: 'one', id: 1n }), true);
  // A's next write hangs (a slow disk) while B takes over.
  const held = gate();
  backend.gate = held.promise;
  const late = a.add('max', { ts: 2, from: 'max', text: 'two', id: 2n });
  await new Promise((r) => setTimeout(r, 5));
  backend.gate = null;
  const b = new PrivateLog('wendy', backend);
  const [conv] = await b.load();
  assert.deepEqual(conv.lines.map((l) => l.text), ['one']);
  assert.equal(await b.add('max', { ts: 3, from: 'max', text: 'three', id: 3n }), true);
  assert.equal(await b.add('max', { ts: 4, from: 'wendy', text: 'four', local: 'b-1', pending: true }), true);
  held.release();
  assert.equal(await late, true);
  assert.deepEqual(await storedTexts(backend, 'wendy', 'max'), ['one', 'three', 'four', 'two']);
  // B settles its line after A's late write: the settle applies to the record as stored.
  assert.equal(await b.settle('max', 'b-1'), true);
  const [after] = await new PrivateLog('wendy', backend).load();
  assert.deepEqual(after.lines.map((l) => [l.text, l.pending ?? false]), [['one', false], ['three', false], ['four', false], ['two', false]]);
});

test('a received line both tabs kept (the server sent it again to the new owner) is stored once', async () => {
  const backend = memoryBackend();
  const a = new PrivateLog('wendy', backend);
  const b = new PrivateLog('wendy', backend);
  await a.load();
  await b.load();
  await a.add('max', { ts: 1, from: 'max', text: 'hi', id: 9n });
  await b.add('max', { ts: 1, from: 'max', text: 'hi', id: 9n });
  await b.add('max', { ts: 2, from: 'max', text: 'next', id: 10n });
  assert.deepEqual(await storedTexts(backend, 'wendy', 'max'), ['hi', 'next']);
});

test('settles and the line limit apply to the record as stored, not to the tab copy', async () => {
  const backend = memoryBackend();
  const a = new PrivateLog('wendy', backend);
  const b = new PrivateLog('wendy', backend);
  await a.load();
  await b.load();
  await a.add('max', { ts: 1, from: 'wendy', text: 'mine', local: 'a-1', pending: true, waiting: true });
  for (let i = 0; i < MAX_LINES - 1; i++) b.add('max', { ts: 2 + i, from: 'max', text: `b ${i}`, id: BigInt(100 + i) });
  await b.settled();
  assert.equal(await a.sent('max', 'a-1'), true);
  assert.equal(await a.settle('max', 'a-1', 'not sent: refused'), true);
  let [conv] = await new PrivateLog('wendy', backend).load();
  assert.equal(conv.lines.length, MAX_LINES);
  assert.deepEqual(conv.lines[0], { ts: 1, from: 'wendy', text: 'mine', kind: 'line', plain: true, local: 'a-1', note: 'not sent: refused' });
  await a.add('max', { ts: 9999, from: 'max', text: 'last', id: 5n });
  [conv] = await new PrivateLog('wendy', backend).load();
  assert.equal(conv.lines.length, MAX_LINES, 'trimmed as stored');
  assert.equal(conv.lines[0].text, 'b 0');
  assert.equal(conv.lines.at(-1).text, 'last');
});

test('a conversation another tab wrote to since is not evicted by a tab that saw it older', async () => {
  const backend = memoryBackend();
  const held = gate();
  // Tab A's writes wait (in flight) until B has written.
  const slowA = { ...backend, update: async (...x) => { await held.promise; return backend.update(...x); }, delete: async (...x) => { await held.promise; return backend.delete(...x); } };
  const first = new PrivateLog('wendy', backend);
  await first.add('max', { ts: 1, from: 'max', text: 'old', id: 1n });
  const a = new PrivateLog('wendy', slowA);
  const b = new PrivateLog('wendy', backend);
  await a.load();
  await b.load();
  // A fills its list: max, its oldest, is evicted from it (and from the store, as A saw it).
  for (let i = 0; i < MAX_CONVS; i++) a.add(`peer${i}`, { ts: i, from: `peer${i}`, text: 'hi' });
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(a.has('max', 1n), false);
  await b.add('max', { ts: 2, from: 'max', text: 'new in b', id: 2n });
  held.release();
  await a.settled();
  // A's delete found max written since it saw it: kept (a later load trims to the most recent).
  assert.deepEqual(backend.rows.get('wendy max')?.lines.map((l) => l.text), ['old', 'new in b']);
  assert.equal(backend.rows.size, MAX_CONVS + 1);
});

test('a line of ours whose writes fail is written with its settle once the store works again', async () => {
  const backend = memoryBackend();
  let fail = true;
  const update = backend.update;
  backend.update = async (...a) => {
    if (fail) throw new Error('quota');
    return update(...a);
  };
  const errors = [];
  const log = new PrivateLog('wendy', backend, { onError: (e) => errors.push(e.message) });
  assert.equal(await log.add('max', { ts: 1, from: 'wendy', text: 'mine', plain: false, local: 'x-1', pending: true, waiting: true }), false);
  assert.equal(await log.sent('max', 'x-1'), false);
  assert.deepEqual(errors, ['quota', 'quota']);
  assert.equal(backend.rows.size, 0);
  fail = false;
  assert.equal(await log.settle('max', 'x-1', 'not sent: the end-to-end state could not be saved in this browser'), true);
  const [conv] = await new PrivateLog('wendy', backend).load();
  assert.deepEqual(conv.lines, [{ ts: 1, from: 'wendy', text: 'mine', kind: 'line', plain: false, local: 'x-1', note: 'not sent: the end-to-end state could not be saved in this browser' }]);
});

test('a line of ours never given to the connection comes back waiting; once given, only pending', async () => {
  const backend = memoryBackend();
  const log = new PrivateLog('wendy', backend);
  log.add('max', { ts: 1, from: 'wendy', text: 'queued for keys', plain: false, local: 'q-1', pending: true, waiting: true });
  log.add('max', { ts: 2, from: 'wendy', text: 'went out', plain: false, local: 'q-2', pending: true, waiting: true });
  log.sent('max', 'q-2');
  await log.settled();
  const [conv] = await new PrivateLog('wendy', backend).load();
  assert.deepEqual(conv.lines.map((l) => [l.text, l.pending ?? false, l.waiting ?? false]), [
    ['queued for keys', true, true],
    ['went out', true, false],
  ]);
});

test('a line of ours is kept as it went: plain after all, or encrypted after all, through a reload', async () => {
  const backend = memoryBackend();
  const log = new PrivateLog('wendy', backend);
  // Typed while the keys were fetched, then /insecure: went plain behind them.
  log.add('max', { ts: 1, from: 'wendy', text: 'went plain', plain: false, local: 'p-1', pending: true, waiting: true });
  // Typed after /insecure, then /secure again: went encrypted.
  log.add('max', { ts: 2, from: 'wendy', text: 'went encrypted', plain: true, local: 'p-2', pending: true, waiting: true });
  // Said nothing of how it went: as it was.
  log.add('max', { ts: 3, from: 'wendy', text: 'as typed', plain: false, local: 'p-3', pending: true, waiting: true });
  log.sent('max', 'p-1', true);
  log.sent('max', 'p-2', false);
  log.sent('max', 'p-3');
  await log.settled();
  const [conv] = await new PrivateLog('wendy', backend).load();
  assert.deepEqual(conv.lines.map((l) => [l.text, l.plain, l.waiting ?? false]), [
    ['went plain', true, false],
    ['went encrypted', false, false],
    ['as typed', false, false],
  ]);
  // Once given to the connection, only the plainness can still change (and is written).
  const ops = backend.ops.length;
  assert.equal(await log.sent('max', 'p-3'), true);
  await log.settled();
  assert.equal(backend.ops.length, ops, 'nothing to write');
  await log.sent('max', 'p-3', true);
  await log.settled();
  const [again] = await new PrivateLog('wendy', backend).load();
  assert.equal(again.lines[2].plain, true);
});

test('read again after a failed write: what the other tab kept and what this tab could not store yet, both', async () => {
  const backend = memoryBackend();
  let fail = false;
  const flaky = { ...backend, update: async (...a) => { if (fail) throw new Error('quota'); return backend.update(...a); } };
  const a = new PrivateLog('wendy', flaky);
  const b = new PrivateLog('wendy', backend);
  await a.load();
  await b.load();
  assert.equal(await a.add('max', { ts: 1, from: 'max', text: 'a1', id: 1n }), true);
  fail = true;
  assert.equal(await a.add('max', { ts: 2, from: 'max', text: 'a2 not stored yet', id: 2n }), false);
  assert.equal(await b.add('max', { ts: 3, from: 'max', text: 'b3', id: 3n }), true);
  assert.equal(await b.add('bob', { ts: 4, from: 'bob', text: 'b4', id: 4n }), true);
  // A owns the account again and reads: B's lines, and its own line still to be stored.
  const convs = await a.load();
  assert.deepEqual(convs.map((c) => [c.peer, c.lines.map((l) => l.text)]), [['max', ['a1', 'b3', 'a2 not stored yet']], ['bob', ['b4']]]);
  assert.equal(a.has('bob', 4n), true);
  fail = false;
  assert.equal(await a.repeat('max', 2n), true, 'written again');
  assert.deepEqual(await storedTexts(backend, 'wendy', 'max'), ['a1', 'b3', 'a2 not stored yet']);
});

/** localStorage's shape in memory (shared by the "tabs" of one browser). */
function memoryMarks() {
  const m = new Map();
  return { get: (k) => m.get(k) ?? null, set: (k, v) => m.set(k, String(v)), m };
}

test('a closed conversation stays closed when the page goes before its deletion is stored', async () => {
  const backend = memoryBackend();
  const marks = memoryMarks();
  // The page unloads before IndexedDB runs the deletion: it never happens.
  const leaving = { ...backend, delete: () => new Promise(() => {}) };
  const log = new PrivateLog('wendy', leaving, { marks });
  log.add('max', { ts: 1000, from: 'wendy', text: 'mine' });
  log.add('max', { ts: 2000, from: 'max', text: 'theirs', id: 41n });
  await log.add('max', { ts: 3000, from: 'max', text: 'last', id: 42n });
  log.close('max');
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(backend.rows.size, 1, 'the record is still stored');
  // The next page: the conversation is not shown, and its deletion is made now.
  const next = new PrivateLog('wendy', backend, { marks });
  assert.deepEqual(await next.load(), []);
  await next.settled();
  assert.equal(backend.rows.size, 0);
  // The server (or the end-to-end sessions) gives one of its lines again: not shown.
  assert.equal(next.closed('MAX', 42n), true);
  assert.equal(next.closed('max', '41'), true);
  // A new line from max opens the conversation again, and it stays after a reload.
  assert.equal(next.closed('max', 43n), false);
  await next.add('max', { ts: 4000, from: 'max', text: 'new', id: 43n });
  const third = new PrivateLog('wendy', backend, { marks });
  const convs = await third.load();
  assert.deepEqual(convs.map((c) => c.lines.map((l) => l.text)), [['new']]);
  // Another account's closings are its own.
  assert.equal(new PrivateLog('max', backend, { marks }).closed('max', 42n), false);
});

test('closings are bounded and garbage in their storage is skipped', async () => {
  const backend = memoryBackend();
  const marks = memoryMarks();
  const log = new PrivateLog('wendy', backend, { marks });
  for (let i = 0; i < MAX_CONVS + 5; i += 1) {
    await log.add(`p${i}`, { ts: 1000, from: `p${i}`, text: 'x', id: BigInt(i + 1) });
    log.close(`p${i}`);
  }
  const stored = JSON.parse(marks.get('mm-web-closed:wendy'));
  assert.equal(stored.length, MAX_CONVS);
  assert.equal(new PrivateLog('wendy', backend, { marks }).closed('p0', 1n), false, 'the oldest closing was dropped');
  assert.equal(new PrivateLog('wendy', backend, { marks }).closed(`p${MAX_CONVS + 4}`, BigInt(MAX_CONVS + 5)), true);
  for (const bad of ['{', '5', '[[1,2,3]]', '[["max",["x"],1]]', '[["max",[],"t"]]', JSON.stringify([['max', Array(5000).fill('1'), 5]])]) {
    marks.set('mm-web-closed:wendy', bad);
    const l = new PrivateLog('wendy', backend, { marks });
    assert.equal(l.closed('max', 'x'), false);
    assert.ok(l.closings.size <= 1);
  }
});
