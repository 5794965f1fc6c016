// Ratchet.toBytes/fromBytes: ratchet.rs's to_bytes/from_bytes format. The whole e2e-v1.json
// transcript with both sides saved and restored before every event (same headers and
// ciphertexts), the Rust bytes of ratchet_state, a state with skipped keys and old chains, and
// hostile input: every truncation, bad tags, counts over the bounds, trailing bytes and random
// bytes give E2eError('Format') only.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Ratchet, MAX_SKIPPED_KEYS, MAX_OLD_CHAINS } from '../src/e2e/ratchet.js';
import { E2eError } from '../src/e2e/errors.js';
import { vectors, fromHex, toHex, counterRng, fuzzBytes, ratchetPair as pair } from './e2e-helpers.js';

const isFormat = (e) => e instanceof E2eError && e.why === 'Format';
const enc = new TextEncoder();

/** Saves and restores `r`, checking that the restored state saves to the same bytes. */
function reload(r) {
  const bytes = r.toBytes();
  const back = Ratchet.fromBytes(bytes);
  assert.deepEqual(back.toBytes(), bytes);
  assert.equal(back.hasReceived(), r.hasReceived());
  assert.deepEqual(back.ratchetKey(), r.ratchetKey());
  assert.equal(back.skippedKeys(), r.skippedKeys());
  return back;
}

/**
 * Runs the transcript, calling `at(i, sides)` before event i (it may replace sides.alice and
 * sides.bob) and once more at the end; checks every header, ciphertext and plaintext.
 */
function runTranscript(at) {
  const t = vectors.ratchet;
  const { alice, bob, rngA, rngB } = pair();
  const sides = { alice, bob };
  const sent = new Map();
  t.events.forEach((ev, i) => {
    at(i, sides);
    if (ev.op === 'send') {
      const { header, ciphertext } = sides[ev.from].encrypt(fromHex(ev.plaintext));
      assert.equal(toHex(header.dh), ev.header.dh, ev.id);
      assert.equal(header.pn, ev.header.pn, ev.id);
      assert.equal(header.n, ev.header.n, ev.id);
      assert.equal(toHex(ciphertext), ev.ciphertext, ev.id);
      sent.set(ev.id, { header, ciphertext });
    } else {
      const { header, ciphertext } = sent.get(ev.id);
      const got = sides[ev.to].decrypt(header, ciphertext, ev.to === 'bob' ? rngB : rngA);
      assert.equal(toHex(got), ev.plaintext, ev.id);
    }
  });
  at(t.events.length, sides);
  return sides;
}

test('saved and restored before every event, the transcript is the same', () => {
  let reloads = 0;
  const sides = runTranscript((_, s) => {
    s.alice = reload(s.alice);
    s.bob = reload(s.bob);
    reloads += 2;
  });
  assert.equal(reloads, 2 * (vectors.ratchet.events.length + 1));
  // The restored sessions go on past the transcript.
  const { header, ciphertext } = sides.bob.encrypt(enc.encode('after'));
  assert.equal(new TextDecoder().decode(sides.alice.decrypt(header, ciphertext, counterRng('more'))), 'after');
});

test('toBytes equals the Rust to_bytes of ratchet_state, and the transcript continues from it', () => {
  const v = vectors.ratchet_state;
  assert.ok(v, 'e2e-v1.json has ratchet_state');
  assert.equal(v.after, 'recv a3');
  let checked = false;
  runTranscript((i, s) => {
    if (i !== v.events_before) return;
    assert.equal(toHex(s.alice.toBytes()), v.alice);
    assert.equal(toHex(s.bob.toBytes()), v.bob);
    // Continue from the Rust bytes themselves.
    s.alice = Ratchet.fromBytes(fromHex(v.alice));
    s.bob = Ratchet.fromBytes(fromHex(v.bob));
    assert.equal(s.bob.skippedKeys(), 2);
    assert.equal(s.alice.oldDhr.length, 1);
    assert.equal(s.bob.oldDhr.length, 1);
    checked = true;
  });
  assert.ok(checked);
});

test('a state with many skipped keys and old chains round-trips, and its skipped keys work', () => {
  const { alice, bob, rngA, rngB } = pair();
  // Bob misses 5 of each of Alice's chains over 4 ratchet steps.
  let a = alice;
  let b = bob;
  const missed = [];
  for (let round = 0; round < 4; round++) {
    for (let n = 0; n < 6; n++) {
      const m = a.encrypt(enc.encode(`r${round} n${n}`));
      if (n === 5) b.decrypt(m.header, m.ciphertext, rngB);
      else missed.push(m);
    }
    const reply = b.encrypt(enc.encode(`reply ${round}`));
    a.decrypt(reply.header, reply.ciphertext, rngA);
    a = reload(a);
    b = reload(b);
  }
  assert.equal(b.skippedKeys(), 20);
  assert.equal(b.oldDhr.length, 3);
  assert.equal(a.oldDhr.length, 4);
  const bytes = b.toBytes();
  b = Ratchet.fromBytes(bytes);
  for (const m of missed.reverse()) b.decrypt(m.header, m.ciphertext, rngB);
  assert.equal(b.skippedKeys(), 0);
  // A replay after restoring is still refused as Old.
  assert.throws(() => b.decrypt(missed[0].header, missed[0].ciphertext, rngB), (e) => e.why === 'Old');
});

test('the most skipped keys and old chains round-trip; one more is refused', () => {
  const { bob } = pair();
  const r = reload(bob);
  for (let i = 0; i < MAX_OLD_CHAINS; i++) r.oldDhr.push(new Uint8Array(32).fill(i & 0xff));
  for (let i = 0; i < MAX_SKIPPED_KEYS; i++) r.skipped.push({ dh: new Uint8Array(32).fill(7), n: i * 65537, mk: new Uint8Array(32).fill(i & 0xff) });
  r.ns = 0xffffffff;
  r.nr = 0x80;
  r.pn = 0x7f;
  const full = reload(r);
  assert.equal(full.skippedKeys(), MAX_SKIPPED_KEYS);
  assert.equal(full.ns, 0xffffffff);
  r.oldDhr.push(new Uint8Array(32));
  assert.throws(() => Ratchet.fromBytes(r.toBytes()), isFormat);
  r.oldDhr.pop();
  r.skipped.push({ dh: new Uint8Array(32), n: 0, mk: new Uint8Array(32) });
  assert.throws(() => Ratchet.fromBytes(r.toBytes()), isFormat);
});

test('hostile saved states: every truncation, trailing bytes, bad version, tags and varints', () => {
  const v = vectors.ratchet_state;
  for (const hex of [v.alice, v.bob]) {
    const good = fromHex(hex);
    for (let len = 0; len < good.length; len++) {
      assert.throws(() => Ratchet.fromBytes(good.subarray(0, len)), isFormat, `truncated to ${len}`);
    }
    assert.throws(() => Ratchet.fromBytes(Uint8Array.of(...good, 0)), isFormat);
    for (const version of [0, 2, 0xff]) {
      const bad = Uint8Array.from(good);
      bad[0] = version;
      assert.throws(() => Ratchet.fromBytes(bad), isFormat);
    }
    // dhr's option tag at 33: 2 is no option.
    const badTag = Uint8Array.from(good);
    badTag[33] = 2;
    assert.throws(() => Ratchet.fromBytes(badTag), isFormat);
    // received (the last byte): 2 is no bool.
    const badBool = Uint8Array.from(good);
    badBool[badBool.length - 1] = 2;
    assert.throws(() => Ratchet.fromBytes(badBool), isFormat);
  }
  assert.throws(() => Ratchet.fromBytes(null), isFormat);
  assert.throws(() => Ratchet.fromBytes([1, 2, 3]), isFormat);
  // Counts that would allocate much are refused at once.
  const head = [1, ...new Uint8Array(32), 0];
  for (const count of [[0xe9, 0x07], [0xff, 0xff, 0xff, 0xff, 0x0f], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]]) {
    assert.throws(() => Ratchet.fromBytes(Uint8Array.from([...head, ...count])), isFormat);
  }
});

test('varints are read as postcard reads them (non-canonical accepted, over u32 refused)', () => {
  const { bob } = pair();
  const base = bob.toBytes();
  // The responder's fresh state: version, dhs, dhr None, old_dhr [], rk, cks None, ckr None,
  // then ns at 1 + 32 + 1 + 1 + 32 + 1 + 1 = 69.
  const at = 69;
  assert.equal(base[at], 0);
  const withNs = (bytes) => Uint8Array.from([...base.subarray(0, at), ...bytes, ...base.subarray(at + 1)]);
  assert.equal(Ratchet.fromBytes(withNs([0x80, 0x00])).ns, 0);
  assert.equal(Ratchet.fromBytes(withNs([0xff, 0xff, 0xff, 0xff, 0x0f])).ns, 0xffffffff);
  assert.throws(() => Ratchet.fromBytes(withNs([0xff, 0xff, 0xff, 0xff, 0x10])), isFormat);
  assert.throws(() => Ratchet.fromBytes(withNs([0x80, 0x80, 0x80, 0x80, 0x80, 0x00])), isFormat);
});

test('random and mutated bytes give E2eError Format or a state, nothing else', () => {
  const rnd = fuzzBytes(0x5eed);
  const seeds = [fromHex(vectors.ratchet_state.alice), fromHex(vectors.ratchet_state.bob)];
  let restored = 0;
  for (let i = 0; i < 4000; i++) {
    let input;
    if (i % 2 === 0) {
      input = rnd.bytes(rnd.int(400));
      if (i % 4 === 0 && input.length > 0) input[0] = 1;
    } else {
      input = Uint8Array.from(seeds[rnd.int(2)]);
      for (let k = rnd.int(4); k >= 0; k--) input[rnd.int(input.length)] = rnd.int(256);
    }
    try {
      const r = Ratchet.fromBytes(input);
      assert.ok(r instanceof Ratchet);
      r.toBytes();
      restored++;
    } catch (e) {
      assert.ok(isFormat(e), `input ${i}: ${e}`);
    }
  }
  assert.ok(restored > 0, 'some mutated states still decode');
});
