// The private conversations' unread counts kept across a reload (src/unread.js).
import test from 'node:test';
import assert from 'node:assert/strict';
import { unreadText, parseUnread, MAX_KEPT } from '../src/unread.js';

test('private counts go through a reload; rooms and read conversations are not kept', () => {
  const text = unreadText([
    { kind: 'private', key: '@bob', unread: 3, mentions: 1 },
    { kind: 'private', key: '@carol', unread: 0, mentions: 0 },
    { kind: 'room', key: '#dev', unread: 5, mentions: 0 },
  ]);
  assert.deepEqual([...parseUnread(text)], [['@bob', { unread: 3, mentions: 1 }]]);
});

test('hostile or damaged kept text gives nothing, or only what is sound, bounded', () => {
  for (const bad of [null, undefined, '', 'not json', '[]', '"x"', '{"@bob": 3}', '{"#dev": [2, 0]}', '{"@bob": [-1, 0]}', '{"@bob": ["2", 0]}', '{"@bob": [1.5, 0]}', 'x'.repeat(200_000)]) {
    assert.deepEqual([...parseUnread(bad)], [], String(bad).slice(0, 40));
  }
  assert.deepEqual([...parseUnread('{"@bob": [2, 9], "@x": [123456, 0], "@y": [1e30, 0]}')], [['@bob', { unread: 2, mentions: 2 }], ['@x', { unread: 9999, mentions: 0 }]]);
  const many = Object.fromEntries(Array.from({ length: MAX_KEPT + 50 }, (_, i) => [`@u${i}`, [1, 0]]));
  assert.equal(parseUnread(JSON.stringify(many)).size, MAX_KEPT);
  const convs = Array.from({ length: MAX_KEPT + 50 }, (_, i) => ({ kind: 'private', key: `@u${i}`, unread: 1, mentions: 0 }));
  assert.equal(Object.keys(JSON.parse(unreadText(convs))).length, MAX_KEPT);
});
