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
  assert.equal(notice({ type: 'ModeChanged', ts: 1n, room: '#dev', by: 'bob', mode: 'TopicOps', on: false }, c).text, 'bob set #dev -t (no longer topic settable by operators only)');
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
