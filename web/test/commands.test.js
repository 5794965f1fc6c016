import test from 'node:test';
import assert from 'node:assert/strict';
import { parse, plan, complete, CommandError, HELP, NAMES } from '../src/commands.js';

const room = { kind: 'room', name: '#dev' };
const priv = { kind: 'private', name: 'bob' };
const err = (line) => {
  try {
    parse(line);
  } catch (e) {
    assert.ok(e instanceof CommandError);
    return e.message;
  }
  assert.fail(`${line} parsed`);
};

test('plain text is said verbatim; // escapes a slash; tabs become spaces', () => {
  assert.deepEqual(parse('hello /there'), { cmd: 'say', text: 'hello /there' });
  assert.deepEqual(parse('//me too'), { cmd: 'say', text: '/me too' });
  assert.deepEqual(parse('a\tb'), { cmd: 'say', text: 'a    b' });
  assert.deepEqual(parse('   '), { cmd: 'nothing' });
});

test('plain text goes to the room, or privately in a private conversation', () => {
  assert.deepEqual(plan(parse('hi'), room), [{ line: { type: 'Public', room: '#dev', text: 'hi', action: false } }]);
  assert.deepEqual(plan(parse('hi'), priv), [{ line: { type: 'Private', to: 'bob', text: 'hi' } }]);
  assert.equal(plan(parse('one\ntwo'), room).length, 2, 'each line of a Shift+Enter input is a line');
});

test('commands parse like mm', () => {
  assert.deepEqual(parse('/msg bob hi there'), { cmd: 'msg', to: 'bob', text: 'hi there' });
  assert.deepEqual(parse('/m #dev hi'), { cmd: 'sayIn', room: '#dev', text: 'hi', action: false });
  assert.deepEqual(parse('/me waves'), { cmd: 'sayIn', room: null, text: 'waves', action: true });
  assert.deepEqual(parse('/me #x waves'), { cmd: 'sayIn', room: '#x', text: 'waves', action: true });
  assert.deepEqual(parse('/join #rust'), { cmd: 'join', room: '#rust' });
  assert.deepEqual(parse('/j rust'), { cmd: 'join', room: '#rust' });
  assert.deepEqual(parse('/part'), { cmd: 'part', room: null, reason: '' });
  assert.deepEqual(parse('/part #dev bye all'), { cmd: 'part', room: '#dev', reason: 'bye all' });
  assert.deepEqual(parse('/list more'), { cmd: 'list', more: true });
  assert.deepEqual(parse('/topic'), { cmd: 'topic', room: null, text: null });
  assert.deepEqual(parse('/topic #dev new one'), { cmd: 'topic', room: '#dev', text: 'new one' });
  assert.deepEqual(parse('/names #dev'), { cmd: 'names', room: '#dev' });
  assert.deepEqual(parse('/invite carol #dev'), { cmd: 'invite', nick: 'carol', room: '#dev' });
  assert.deepEqual(parse('/kick mallory spam'), { cmd: 'kick', room: null, nick: 'mallory', reason: 'spam' });
  assert.deepEqual(parse('/ban #dev mallory'), { cmd: 'member', room: '#dev', nick: 'mallory', change: 'Ban' });
  assert.deepEqual(parse('/devoice bob'), { cmd: 'member', room: null, nick: 'bob', change: 'Devoice' });
  assert.deepEqual(parse('/mode +i'), { cmd: 'mode', room: null, mode: 'InviteOnly', on: true });
  assert.deepEqual(parse('/mode #dev moderated off'), { cmd: 'mode', room: '#dev', mode: 'Moderated', on: false });
  assert.deepEqual(parse('/away lunch'), { cmd: 'away', message: 'lunch' });
  assert.deepEqual(parse('/back'), { cmd: 'away', message: '' });
  assert.deepEqual(parse('/query Bob'), { cmd: 'query', nick: 'Bob' });
  assert.deepEqual(parse('/who'), { cmd: 'who' });
  assert.deepEqual(parse('/QUIT'), { cmd: 'quit' });
  assert.deepEqual(parse('/q'), { cmd: 'quit' });
});

test('bad commands say why', () => {
  assert.match(err('/frob'), /unknown command \/frob/);
  assert.match(err('/msg bob'), /usage: \/msg/);
  assert.match(err('/join #a.b'), /not a room name/);
  assert.match(err('/kick 9lives'), /not a nick/);
  assert.match(err('/mode +x'), /usage: \/mode/);
  assert.match(err('/part #dev a\u202eb'), /U\+202E/);
});

test('room commands use the current room, or say they need one', () => {
  assert.deepEqual(plan(parse('/topic'), room), [{ send: { type: 'Topic', room: '#dev', topic: null } }]);
  assert.deepEqual(plan(parse('/op bob'), room), [{ send: { type: 'Member', room: '#dev', nick: 'bob', change: 'Op' } }]);
  assert.deepEqual(plan(parse('/mode -t'), room), [{ send: { type: 'Mode', room: '#dev', mode: 'TopicOps', on: false } }]);
  assert.throws(() => plan(parse('/kick carol'), priv), /not a room/);
  assert.throws(() => plan(parse('/part'), { kind: 'room', name: '#lobby' }), /cannot be left/);
  assert.deepEqual(plan(parse('/list more'), room, { listNext: '#m' }), [{ send: { type: 'List', after: '#m' } }]);
});

test('/msg opens the conversation and sends a Private (end-to-end or not is the page\'s)', () => {
  assert.deepEqual(plan(parse('/msg bob yo'), room), [{ open: 'bob', quiet: true }, { line: { type: 'Private', to: 'bob', text: 'yo' } }]);
});

test('the end-to-end commands name a nick, or the private conversation they are typed in', () => {
  for (const which of ['secure', 'insecure', 'verify', 'verified', 'accept-key']) {
    assert.deepEqual(parse(`/${which} Bob`), { cmd: 'e2e', which, nick: 'Bob' });
    assert.deepEqual(parse(`/${which.toUpperCase()} bob`), { cmd: 'e2e', which, nick: 'bob' });
    assert.deepEqual(plan(parse(`/${which} bob`), room), [{ e2e: which, nick: 'bob' }]);
    assert.deepEqual(plan(parse(`/${which}`), priv), [{ e2e: which, nick: 'bob' }]);
    assert.throws(() => plan(parse(`/${which}`), room), /usage: \/[a-z-]+ NICK/);
    assert.throws(() => parse(`/${which} bob carol`), /usage/);
    assert.throws(() => parse(`/${which} 9lives`), /not a nick/);
  }
});

test('every command is in /help', () => {
  for (const [name] of NAMES) assert.ok(HELP.includes(`/${name}`), name);
});

test('Tab completes /commands and nicks', () => {
  assert.deepEqual(complete('/jo', 3, []), { value: '/join ', cursor: 6, matches: 1 });
  assert.deepEqual(complete('b', 1, ['bob', 'alice']), { value: 'bob: ', cursor: 5, matches: 1 });
  assert.deepEqual(complete('hi ca', 5, ['carol', 'Carl']), { value: 'hi Carl ', cursor: 8, matches: 2 });
  assert.deepEqual(complete('hi ca', 5, ['carol', 'Carl'], 1).value, 'hi carol ');
  assert.equal(complete('hi ', 3, ['bob']), null);
});

test('/close closes the private conversation it is typed in, and only that', () => {
  assert.deepEqual(parse('/close'), { cmd: 'close' });
  assert.deepEqual(plan(parse('/close'), { kind: 'private', name: 'max' }), [{ close: 'max' }]);
  assert.throws(() => plan(parse('/close'), { kind: 'room', name: '#dev' }), /\/part/);
  assert.throws(() => parse('/close max'), /usage/);
});

test('the command table is the shared fixture common/tests/vectors/commands-v1.json (web side)', async () => {
  const { readFile } = await import('node:fs/promises');
  const file = new URL('../../common/tests/vectors/commands-v1.json', import.meta.url);
  const { commands } = JSON.parse(await readFile(file, 'utf8'));
  const web = commands.filter((c) => c.clients.includes('web'));
  assert.deepEqual(
    NAMES.map(([name, aliases]) => [name, aliases]).sort(),
    web.map((c) => [c.name, c.aliases]).sort(),
    'web/src/commands.js NAMES and the fixture\'s "web" commands differ',
  );
  for (const c of web) {
    assert.ok(c.usage.startsWith(`/${c.name}`) && c.help.length > 0, c.name);
    assert.ok(HELP.includes(`/${c.name}`), `/help does not mention /${c.name}`);
  }
  for (const c of commands) assert.ok(c.clients.length > 0 && c.clients.every((x) => x === 'mm' || x === 'web'), c.name);
});
