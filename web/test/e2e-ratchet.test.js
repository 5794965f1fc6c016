// ratchet.js against e2e-v1.json's whole ratchet transcript (same headers and ciphertexts,
// every message decrypted in the transcript's order), then hostile cases: damaged headers and
// ciphertexts leave the state unchanged, replays are Old, skipped-key bounds hold.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Ratchet, MAX_SKIP, MAX_SKIPPED_KEYS, MAX_OLD_CHAINS, HEADER_LEN, encodeHeader, decodeHeader } from '../src/e2e/ratchet.js';
import { publicKey } from '../src/e2e/x3dh.js';
import { E2eError } from '../src/e2e/errors.js';
import { vectors, fromHex, toHex, counterRng, fuzzBytes, ratchetPair as pair } from './e2e-helpers.js';

const why = (w) => (e) => e instanceof E2eError && e.why === w;
const enc = new TextEncoder();

/** A snapshot of a ratchet's whole state, to show that a failed decrypt changed nothing. */
function snapshot(r) {
  const h = (x) => (x === null ? null : toHex(x));
  return JSON.stringify({
    dhs: h(r.dhs), dhsPublic: h(r.dhsPublic), dhr: h(r.dhr), oldDhr: r.oldDhr.map(h), rk: h(r.rk),
    cks: h(r.cks), ckr: h(r.ckr), ns: r.ns, nr: r.nr, pn: r.pn, received: r.received,
    skipped: r.skipped.map((s) => [h(s.dh), s.n, h(s.mk)]),
  });
}

test('the ratchet transcript: same headers and ciphertexts, every message decrypts', () => {
  const t = vectors.ratchet;
  assert.equal(toHex(publicKey(fromHex(t.responder_ratchet_secret))), t.responder_ratchet_public);
  const { alice, bob, rngA, rngB } = pair();
  const sent = new Map();
  let sends = 0;
  let receives = 0;
  for (const ev of t.events) {
    if (ev.op === 'send') {
      const r = ev.from === 'alice' ? alice : bob;
      const { header, ciphertext } = r.encrypt(fromHex(ev.plaintext));
      assert.equal(toHex(header.dh), ev.header.dh, ev.id);
      assert.equal(header.pn, ev.header.pn, ev.id);
      assert.equal(header.n, ev.header.n, ev.id);
      assert.equal(toHex(encodeHeader(header)), ev.header_encoded, ev.id);
      assert.deepEqual(decodeHeader(fromHex(ev.header_encoded)), header);
      assert.equal(toHex(ciphertext), ev.ciphertext, ev.id);
      sent.set(ev.id, { header, ciphertext });
      sends++;
    } else {
      const { header, ciphertext } = sent.get(ev.id);
      const got = ev.to === 'bob' ? bob.decrypt(header, ciphertext, rngB) : alice.decrypt(header, ciphertext, rngA);
      assert.equal(toHex(got), ev.plaintext, ev.id);
      receives++;
    }
  }
  assert.equal(sends, 9);
  assert.equal(receives, 9);
  assert.ok(alice.hasReceived() && bob.hasReceived());
});

test('the bounds are the Rust ones (common/src/e2e/ratchet.rs)', () => {
  const rust = readFileSync(new URL('../../common/src/e2e/ratchet.rs', import.meta.url), 'utf8');
  const constant = (name) => Number(rust.match(new RegExp(`pub const ${name}: \\w+ = (\\d+);`))[1]);
  assert.equal(MAX_SKIP, constant('MAX_SKIP'));
  assert.equal(MAX_SKIPPED_KEYS, constant('MAX_SKIPPED_KEYS'));
  assert.equal(MAX_OLD_CHAINS, constant('MAX_OLD_CHAINS'));
  assert.equal(HEADER_LEN, constant('HEADER_LEN'));
});

test('a responder cannot send before it received', () => {
  const { bob } = pair();
  assert.throws(() => bob.encrypt(enc.encode('x')), why('NotReady'));
});

test('truncated, oversized and bit-flipped ciphertexts and headers are refused, state unchanged', () => {
  const { alice, bob, rngB } = pair();
  const m0 = alice.encrypt(enc.encode('first'));
  const m1 = alice.encrypt(enc.encode('second'));
  const before = snapshot(bob);
  const calls = rngB.calls();
  const attempts = [];
  const ct = m0.ciphertext;
  attempts.push({ header: m0.header, ciphertext: ct.slice(0, ct.length - 1) });
  attempts.push({ header: m0.header, ciphertext: ct.slice(0, 15) });
  attempts.push({ header: m0.header, ciphertext: new Uint8Array(0) });
  attempts.push({ header: m0.header, ciphertext: new Uint8Array([...ct, 0]) });
  attempts.push({ header: m0.header, ciphertext: new Uint8Array(8209) });
  for (let bit = 0; bit < ct.length * 8; bit += 5) {
    const c = Uint8Array.from(ct);
    c[bit >> 3] ^= 1 << (bit & 7);
    attempts.push({ header: m0.header, ciphertext: c });
  }
  for (let bit = 0; bit < 320; bit += 3) {
    const h = encodeHeader(m0.header);
    h[bit >> 3] ^= 1 << (bit & 7);
    attempts.push({ header: decodeHeader(h), ciphertext: ct });
  }
  attempts.push({ header: { ...m0.header, n: 1 }, ciphertext: ct });
  for (const a of attempts) {
    assert.throws(() => bob.decrypt(a.header, a.ciphertext, rngB), (e) => e instanceof E2eError && ['Decrypt', 'TooManySkipped', 'BadKey'].includes(e.why));
    assert.equal(snapshot(bob), before, 'a refused message changes nothing');
  }
  assert.equal(rngB.calls(), calls, 'no randomness drawn for refused messages');
  // Malformed header shapes are BadInput, also without a state change.
  for (const h of [null, {}, { dh: new Uint8Array(31), pn: 0, n: 0 }, { ...m0.header, n: -1 }, { ...m0.header, pn: 2 ** 32 }, { ...m0.header, n: 1.5 }]) {
    assert.throws(() => bob.decrypt(h, ct, rngB), why('BadInput'));
  }
  assert.equal(snapshot(bob), before);
  assert.throws(() => decodeHeader(new Uint8Array(39)), why('Format'));
  assert.throws(() => decodeHeader(new Uint8Array(41)), why('Format'));
  // The genuine messages still decrypt, in either order.
  assert.equal(new TextDecoder().decode(bob.decrypt(m1.header, m1.ciphertext, rngB)), 'second');
  assert.equal(new TextDecoder().decode(bob.decrypt(m0.header, m0.ciphertext, rngB)), 'first');
  // And a replay is Old.
  assert.throws(() => bob.decrypt(m0.header, m0.ciphertext, rngB), why('Old'));
  assert.throws(() => bob.decrypt(m1.header, m1.ciphertext, rngB), why('Old'));
});

test('a message from a chain already passed is Old, not a new ratchet step', () => {
  const { alice, bob, rngA, rngB } = pair();
  const a0 = alice.encrypt(enc.encode('a0'));
  bob.decrypt(a0.header, a0.ciphertext, rngB);
  const b0 = bob.encrypt(enc.encode('b0'));
  alice.decrypt(b0.header, b0.ciphertext, rngA);
  const a1 = alice.encrypt(enc.encode('a1')); // new chain
  bob.decrypt(a1.header, a1.ciphertext, rngB);
  const late = { header: { ...a0.header, n: 5 }, ciphertext: a0.ciphertext };
  assert.throws(() => bob.decrypt(late.header, late.ciphertext, rngB), why('Old'));
});

test('skipped-key bounds: MAX_SKIP per chain, MAX_SKIPPED_KEYS in total', () => {
  // MAX_SKIP in the current chain: exactly MAX_SKIP skipped is fine, one more is refused.
  let { alice, bob, rngB } = pair();
  const first = alice.encrypt(enc.encode('0'));
  bob.decrypt(first.header, first.ciphertext, rngB);
  for (let i = 0; i < MAX_SKIP + 1; i++) alice.encrypt(enc.encode('lost'));
  const far = alice.encrypt(enc.encode('far')); // n = MAX_SKIP + 2: skips MAX_SKIP + 1
  const before = snapshot(bob);
  assert.throws(() => bob.decrypt(far.header, far.ciphertext, rngB), why('TooManySkipped'));
  assert.equal(snapshot(bob), before);

  ({ alice, bob, rngB } = pair());
  for (let i = 0; i < MAX_SKIP; i++) alice.encrypt(enc.encode('lost'));
  const edge = alice.encrypt(enc.encode('edge')); // n = MAX_SKIP: skips exactly MAX_SKIP in a new chain
  assert.equal(new TextDecoder().decode(bob.decrypt(edge.header, edge.ciphertext, rngB)), 'edge');
  assert.equal(bob.skippedKeys(), MAX_SKIP);

  // A forged header claiming a huge n or pn is refused before any work.
  const started = Date.now();
  for (const h of [{ ...edge.header, n: 0xffffffff }, { dh: new Uint8Array(32).fill(9), pn: 0xffffffff, n: 0 }, { dh: new Uint8Array(32).fill(9), pn: 0, n: 0xffffffff }]) {
    assert.throws(() => bob.decrypt(h, edge.ciphertext, rngB), why('TooManySkipped'));
  }
  assert.ok(Date.now() - started < 1000);

  // The total store is capped at MAX_SKIPPED_KEYS, the oldest dropped first. Alice sends
  // chains of MAX_SKIP + 1 messages, Bob receives only the last of each chain and answers.
  let rngA;
  ({ alice, bob, rngA, rngB } = pair());
  let firstLost = null;
  for (let round = 0; round < 3; round++) {
    let last;
    for (let i = 0; i <= MAX_SKIP; i++) {
      last = alice.encrypt(enc.encode(`r${round} m${i}`));
      if (round === 0 && i === 0) firstLost = last;
    }
    bob.decrypt(last.header, last.ciphertext, rngB);
    const reply = bob.encrypt(enc.encode('ok'));
    alice.decrypt(reply.header, reply.ciphertext, rngA);
  }
  assert.equal(bob.skippedKeys(), MAX_SKIPPED_KEYS);
  assert.throws(() => bob.decrypt(firstLost.header, firstLost.ciphertext, rngB), why('Old'));
});

test('fuzz: random headers and ciphertexts into decrypt only give typed errors', () => {
  const { alice, bob, rngB } = pair();
  const m = alice.encrypt(enc.encode('hello'));
  bob.decrypt(m.header, m.ciphertext, rngB);
  const before = snapshot(bob);
  const r = fuzzBytes(42);
  const started = Date.now();
  for (let i = 0; i < 400; i++) {
    const header = r.int(2) === 0
      ? { dh: r.int(2) ? m.header.dh : r.bytes(32), pn: r.int(1200), n: r.int(1200) }
      : decodeHeader(r.bytes(40));
    const ciphertext = r.bytes(r.int(200));
    assert.throws(() => bob.decrypt(header, ciphertext, rngB), (e) => e instanceof E2eError);
    const len = r.int(80);
    assert.throws(() => decodeHeader(r.bytes(len === 40 ? 41 : len)), (e) => e instanceof E2eError);
  }
  assert.equal(snapshot(bob), before);
  assert.ok(Date.now() - started < 30000, 'bounded time');
});

test('property: random interleavings, losses and reordering; each message opens once, replays are Old', () => {
  for (let seed = 1; seed <= 12; seed++) {
    const r = fuzzBytes(seed * 7919);
    const { alice, bob, rngA, rngB } = pair();
    const sides = { alice: { me: alice, rng: rngA, inbox: [] }, bob: { me: bob, rng: rngB, inbox: [] } };
    let count = 0;
    // Alice speaks first (Bob cannot send before he received).
    const first = alice.encrypt(enc.encode('m0'));
    sides.bob.inbox.push({ ...first, text: 'm0' });
    for (let step = 0; step < 120; step++) {
      const name = r.int(2) === 0 ? 'alice' : 'bob';
      const side = sides[name];
      const other = sides[name === 'alice' ? 'bob' : 'alice'];
      const op = r.int(10);
      if (op < 4 && (name === 'alice' || bob.hasReceived())) {
        const text = `m${++count}`;
        const m = side.me.encrypt(enc.encode(text));
        if (r.int(8) !== 0) other.inbox.push({ ...m, text }); // else lost
      } else if (side.inbox.length > 0) {
        const i = r.int(side.inbox.length); // any order
        const [m] = side.inbox.splice(i, 1);
        const got = side.me.decrypt(m.header, m.ciphertext, side.rng);
        assert.equal(new TextDecoder().decode(got), m.text, `seed ${seed} step ${step}`);
        assert.throws(() => side.me.decrypt(m.header, m.ciphertext, side.rng), why('Old'), `replay, seed ${seed}`);
      }
    }
    for (const side of Object.values(sides)) {
      for (const m of side.inbox) assert.equal(new TextDecoder().decode(side.me.decrypt(m.header, m.ciphertext, side.rng)), m.text);
    }
  }
});
