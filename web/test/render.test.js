import test from 'node:test';
import assert from 'node:assert/strict';
import { notice, enteredWords, mentions, linkParts, timeWords } from '../src/render.js';

const ctx = () => ({ me: 'alice', topicAsked: new Set(), namesAsked: new Set() });

test("room events are worded like mm's", () => {
  const c = ctx();
  assert.equal(notice({ type: 'Joined', ts: 1n, room: '#dev', nick: 'bob' }, c).text, 'bob joined #dev');
  assert.deepEqual(notice({ type: 'Joined', ts: 1n, room: '#lobby', nick: 'bob' }, c), { conv: '#lobby', text: 'bob joined', kind: 'presence' });
  assert.equal(notice({ type: 'Left', ts: 1n, room: '#lobby', nick: 'bob', reason: 'TooSlow' }, c).text, 'bob left (too slow)');
  assert.equal(notice({ type: 'Parted', ts: 1n, room: '#dev', nick: 'bob', reason: 'lunch' }, c).text, 'bob left #dev (lunch)');
  assert.equal(notice({ type: 'Parted', ts: 1n, room: '#dev', nick: 'Alice', reason: '' }, c).text, 'you left #dev');
  assert.equal(notice({ type: 'Kicked', ts: 1n, room: '#dev', nick: 'carol', by: 'alice', reason: 'spam' }, c).text, 'carol was kicked from #dev by you (spam)');
  assert.equal(notice({ type: 'Topic', ts: 5n, room: '#dev', by: 'bob', topic: 'text' }, c).text, 'bob set the topic of #dev: text');
  assert.equal(notice({ type: 'Topic', ts: 5n, room: '#dev', by: 'bob', topic: '' }, c).text, 'bob cleared the topic of #dev');
  c.topicAsked.add('#dev');
  assert.equal(notice({ type: 'Topic', ts: 5n, room: '#dev', by: 'bob', topic: 'text' }, c).text, 'topic of #dev: text (set by bob)');
  assert.equal(notice({ type: 'ModeChanged', ts: 1n, room: '#dev', by: 'bob', mode: 'TopicOps', on: false }, c).text, 'bob let every member set the topic of #dev (-t)');
  assert.equal(notice({ type: 'MemberChanged', ts: 1n, room: '#dev', by: 'bob', nick: 'carol', change: 'Unban' }, c).text, 'bob lifted the ban on carol in #dev');
  assert.equal(notice({ type: 'Invited', ts: 1n, room: '#dev', by: 'bob', nick: 'alice' }, c).text, 'you were invited to #dev by bob — /join #dev');
  assert.equal(notice({ type: 'RoomError', room: '#dev', code: 45, detail: 'only operators' }, c).text, '#dev: only operators (not-op)');
  assert.equal(notice({ type: 'Away', nick: 'bob', message: 'lunch' }, c).text, 'bob is away: lunch');
  assert.equal(notice({ type: 'Names', room: '#dev', members: [], last: true }, c), null, 'names not asked: state only');
});

test('entered, unreadable, mentions, links, time', () => {
  assert.equal(
    enteredWords({ room: '#dev', topic: 'release friday', members: 3, role: 'Owner', modes: { invite_only: false, topic_ops: false, moderated: false } }),
    'entered #dev — topic: release friday — 3 members — you are the owner — not end-to-end encrypted: the server reads room lines',
  );
  assert.ok(mentions('hey Alice!', 'alice'));
  assert.ok(!mentions('malice', 'alice'));
  assert.ok(!mentions('alice_2 here', 'alice'));
  assert.deepEqual(linkParts('see https://x.org/a?b=1. ok'), [{ text: 'see ' }, { link: 'https://x.org/a?b=1' }, { text: '. ok' }]);
  assert.deepEqual(linkParts('javascript:alert(1)'), [{ text: 'javascript:alert(1)' }]);
  assert.match(timeWords(1700000000000n).hhmm, /^\d\d:\d\d$/);
});

// ---- end-to-end words ----
import { securityWords, secureEventWords, unsentReason, safetyNumberLines, keyFingerprint, sentTextLine, keptLine, NEVER_SENT, UNCONFIRMED, acceptedWords, verifiedWords } from '../src/render.js';
import { failureWords, isBlocking } from '../src/e2e/sessions.js';

const fw = { failureWords, isBlocking };
const key = (b) => new Uint8Array(32).fill(b);

test('#security: one state and its words for each status of the conversation', () => {
  const s = (status) => securityWords(status, 'bob', fw);
  assert.deepEqual(s({ kind: 'Plain' }).state, 'plain');
  assert.match(s({ kind: 'Plain' }).text, /^NOT end-to-end encrypted — the server can read it; \/secure bob/);
  assert.equal(s({ kind: 'Ready' }).state, 'ready');
  assert.match(s({ kind: 'Ready' }).text, /^End-to-end encrypted/);
  assert.equal(s({ kind: 'Starting' }).state, 'starting');
  assert.match(s({ kind: 'Starting' }).text, /^Setting up end-to-end encryption/);
  for (const trust of ['New', 'Pinned']) {
    const w = s({ kind: 'Secure', key: key(1), trust });
    assert.equal(w.state, 'secure');
    assert.match(w.text, /^SECURE — end-to-end encrypted · not verified: compare safety numbers with \/verify bob/);
  }
  assert.deepEqual(s({ kind: 'Secure', key: key(1), trust: 'Verified' }), { state: 'verified', text: 'VERIFIED — end-to-end encrypted; safety number compared' });
  const changed = s({ kind: 'Failed', failure: { kind: 'KeyChanged', pinned: key(1), presented: key(2) } });
  assert.equal(changed.state, 'changed');
  assert.match(changed.text, /^KEY CHANGED — blocked: nothing is sent until .*\/accept-key bob/);
  const blocked = s({ kind: 'Failed', failure: { kind: 'BadSignature' } });
  assert.equal(blocked.state, 'blocked');
  assert.ok(blocked.text.startsWith(`BLOCKED — ${failureWords({ kind: 'BadSignature' })}`));
  const retry = s({ kind: 'Failed', failure: { kind: 'Timeout' } });
  assert.equal(retry.state, 'ready', 'a failure that is not blocking: the next message tries again');
  assert.equal(securityWords(null, 'bob', fw, 'another tab took over this account').state, 'blocked');
  // Only plain says NOT end-to-end encrypted.
  for (const st of [{ kind: 'Ready' }, { kind: 'Starting' }, { kind: 'Secure', key: key(1), trust: 'New' }, { kind: 'Failed', failure: { kind: 'OwnKey' } }]) {
    assert.doesNotMatch(s(st).text, /NOT end-to-end/);
  }
});

test('#security while not connected: a secure (or about to be) conversation is paused, in mm\'s words; others say what they say', () => {
  const secure = { kind: 'Secure', key: key(1), trust: 'Verified' };
  for (const st of [{ kind: 'Secure', key: key(1), trust: 'Pinned' }, secure]) {
    assert.deepEqual(securityWords(st, 'bob', fw, '', 'reconnecting'), { state: 'paused', text: 'SECURE e2e · paused while reconnecting (nothing goes plain)' });
    assert.deepEqual(securityWords(st, 'bob', fw, '', 'offline'), { state: 'paused', text: 'SECURE e2e · paused: not connected (nothing goes plain)' });
  }
  // No session yet: not called SECURE.
  for (const st of [{ kind: 'Ready' }, { kind: 'Starting' }]) {
    assert.deepEqual(securityWords(st, 'bob', fw, '', 'reconnecting'), { state: 'paused', text: 'end-to-end · paused while reconnecting (nothing goes plain)' });
    assert.deepEqual(securityWords(st, 'bob', fw, '', 'offline'), { state: 'paused', text: 'end-to-end · paused: not connected (nothing goes plain)' });
  }
  // Back to normal once connected.
  assert.equal(securityWords(secure, 'bob', fw, '', 'connected').state, 'verified');
  assert.equal(securityWords(secure, 'bob', fw).state, 'verified');
  // Plain stays plain, a changed key stays a changed key: never "SECURE" while not connected.
  assert.equal(securityWords({ kind: 'Plain' }, 'bob', fw, '', 'offline').state, 'plain');
  assert.equal(securityWords({ kind: 'Failed', failure: { kind: 'KeyChanged', pinned: key(1), presented: key(2) } }, 'bob', fw, '', 'reconnecting').state, 'changed');
  assert.equal(securityWords(null, 'bob', fw, 'x', 'offline').state, 'blocked');
});

test('/accept-key and /verified say they are done, in mm\'s words (client/src/execute.rs); an accepted key is not "pinned at first contact"', () => {
  assert.equal(acceptedWords('bob'), "accepted bob's new key (pinned, not verified); a new secure session starts. /verify bob to compare safety numbers");
  assert.equal(verifiedWords('bob'), "bob's key is now marked as verified");
  const ready = secureEventWords({ kind: 'Ready', peer: 'bob', key: key(1), trust: 'Accepted', byPeer: false }, fw);
  assert.match(ready.text, /not verified \(accepted by you with \/accept-key\)\. Compare safety numbers: \/verify bob$/);
  assert.doesNotMatch(ready.text, /first contact/);
});

test('end-to-end events in mm\'s words (client/src/render.rs secure())', () => {
  const ready = secureEventWords({ kind: 'Ready', peer: 'bob', key: key(0xab), trust: 'New', byPeer: true }, fw);
  assert.equal(ready.peer, 'bob');
  assert.equal(ready.text, `bob started a secure session: messages to and from bob are end-to-end encrypted. bob's key: ${'abab '.repeat(15)}abab, not verified (first contact: key from the server's directory, now pinned). Compare safety numbers: /verify bob`);
  const changed = secureEventWords({ kind: 'Failed', peer: 'bob', failure: { kind: 'KeyChanged', pinned: key(1), presented: key(2) }, unsent: [] }, fw);
  assert.equal(changed.kind, 'alarm');
  assert.match(changed.text, /^WARNING: bob's key has CHANGED\. Pinned: 0101 0101 .* Presented: 0202 .*\/accept-key bob, then \/verified bob$/);
  assert.equal(
    secureEventWords({ kind: 'Ended', peer: 'bob', unsent: [1, 2] }, fw).text,
    'private messages to bob are NOT end-to-end encrypted from now on (the server can read them); 2 waiting messages were NOT sent; /secure bob to encrypt again',
  );
  const timeout = secureEventWords({ kind: 'Failed', peer: 'bob', failure: { kind: 'Timeout' }, unsent: [4] }, fw);
  assert.equal(timeout.text, `could not start a secure session with bob: ${failureWords({ kind: 'Timeout' })}; 1 waiting message was NOT sent. Nothing goes unencrypted: your next message to bob tries again (/insecure bob to send plain)`);
  assert.equal(
    secureEventWords({ kind: 'Failed', peer: 'carol', failure: { kind: 'NoKeys' }, unsent: [1] }, fw).text,
    'carol has no end-to-end keys (an older client, or a browser page from before end-to-end; carol gets keys by logging in again with a current one); 1 waiting message was NOT sent. To send plain (the server can read it): /insecure carol, then send again',
  );
  // As mm says them (client/src/render_tests.rs).
  const held = secureEventWords({ kind: 'Held', peer: 'bob', held: 2, dropped: 0 }, fw);
  assert.equal(held.peer, 'bob');
  assert.equal(held.kind, 'alarm');
  assert.equal(held.text, '2 messages from bob under the new key are held until you compare safety numbers (/verify bob) and /accept-key bob');
  assert.equal(
    secureEventWords({ kind: 'Held', peer: 'bob', held: 1, dropped: 3 }, fw).text,
    '1 message from bob under the new key is held until you compare safety numbers (/verify bob) and /accept-key bob; 3 older messages were dropped (too many held)',
  );
  assert.equal(
    secureEventWords({ kind: 'Released', peer: 'bob', key: key(0xab), count: 2 }, fw).text,
    `2 held messages from bob follow, sent under the key you just accepted (${'abab '.repeat(15)}abab)`,
  );
  assert.equal(secureEventWords({ kind: 'OtherDevice' }, fw).peer, null);
  assert.equal(secureEventWords({ kind: 'Message', peer: 'bob', id: 1n, text: 'x' }, fw), null);
  assert.equal(unsentReason({ kind: 'Ended', peer: 'bob', unsent: [1] }, fw), 'not sent: you said /insecure before it went');
  assert.equal(unsentReason({ kind: 'Failed', peer: 'bob', failure: { kind: 'NoKeys' }, unsent: [1] }, fw), 'not sent: bob has no end-to-end keys (to send plain: /insecure bob, then send again)');
  assert.equal(unsentReason({ kind: 'Failed', peer: 'bob', failure: { kind: 'Busy' }, unsent: [1] }, fw), `not sent: no secure session (${failureWords({ kind: 'Busy' })})`);
  assert.equal(keyFingerprint(new Uint8Array([1, 2, 3])), '0102 03');
});

test('/verify: the number after "Safety number with NICK: ", then how to compare it', () => {
  const [n, how] = safetyNumberLines('bob', '12345 67890', false);
  assert.equal(n.text, 'Safety number with bob: 12345 67890');
  assert.match(how.text, /if they are the same: \/verified bob$/);
  const [m, then] = safetyNumberLines('bob', '1', true);
  assert.match(m.text, /NEW key \(not accepted yet\): 1$/);
  assert.match(then.text, /\/accept-key bob, then \/verified bob$/);
});

test('a private line as sendText left it: secure or plain, kept or not, its state now', () => {
  assert.deepEqual(sentTextLine({ kind: 'Secure' }, 'bob'), { secure: true, keep: true, state: null, words: '' });
  assert.deepEqual(sentTextLine({ kind: 'Queued' }, 'bob'), { secure: true, keep: true, state: 'waiting', words: "waiting for bob's keys" });
  assert.deepEqual(sentTextLine({ kind: 'QueuedPlain' }, 'bob'), { secure: false, keep: true, state: 'waiting', words: 'waiting: to be sent NOT end-to-end encrypted' });
  assert.deepEqual(sentTextLine({ kind: 'Plain' }, 'bob'), { secure: false, keep: true, state: null, words: '' });
  assert.deepEqual(
    sentTextLine({ kind: 'Refused', message: 'messages to bob are blocked' }, 'bob'),
    { secure: null, keep: false, state: 'refused', words: 'not sent: messages to bob are blocked' },
  );
});

test('a kept line of ours not sent, or not known to be, comes back without the lock, saying so', () => {
  const mine = { ts: 1, from: 'alice', text: 'x', kind: 'line', plain: false, local: 'a-1' };
  assert.deepEqual(keptLine({ ...mine, pending: true, waiting: true }, true), { secure: null, state: 'refused', words: NEVER_SENT });
  assert.deepEqual(keptLine({ ...mine, pending: true }, true), { secure: null, state: 'unknown', words: UNCONFIRMED });
  assert.deepEqual(keptLine({ ...mine, note: 'not sent: bob has no end-to-end keys' }, true), { secure: null, state: 'refused', words: 'not sent: bob has no end-to-end keys' });
  assert.deepEqual(keptLine(mine, true), { secure: true, state: null, words: '' }, 'taken by the server: the lock');
  assert.deepEqual(keptLine({ ...mine, plain: true }, true), { secure: false, state: null, words: '' });
  // Another's line: as it was received (our flags never apply).
  assert.deepEqual(keptLine({ ...mine, from: 'bob', pending: true }, false), { secure: true, state: null, words: '' });
  assert.deepEqual(keptLine({ ...mine, kind: 'notice' }, true), { secure: null, state: null, words: '' });
  for (const words of [NEVER_SENT, UNCONFIRMED]) assert.match(words, /^not (sent|confirmed): /);
});
