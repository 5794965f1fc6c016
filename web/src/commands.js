// What the user typed, as a command (client/src/command.rs), and what each command sends in
// the current conversation. Pure: no I/O, so every rule is unit-tested.

import {
  nickError, roomError, textError, MAX_REASON_LEN, MAX_TOPIC_LEN, LOBBY, isLobby,
} from './protocol.js';

export class CommandError extends Error {}

/** Command names and aliases (as `mm`'s, less what the browser cannot do yet). */
export const NAMES = [
  ['msg', ['m']], ['query', []], ['me', []], ['join', ['j']], ['part', ['leave']],
  ['list', []], ['topic', []], ['names', []], ['invite', []], ['kick', []], ['ban', []],
  ['unban', []], ['op', []], ['deop', []], ['voice', []], ['devoice', []], ['mode', []],
  ['away', []], ['back', []], ['secure', []], ['insecure', []], ['verify', []], ['verified', []],
  ['accept-key', []], ['who', []],
  ['help', ['?']], ['quit', ['exit', 'q']], ['close', []],
];

export const HELP = `commands:
  TEXT             say TEXT in this conversation (start with // to say something beginning with /)
  /msg NICK TEXT   say TEXT to NICK only (end-to-end encrypted unless you said /insecure NICK)
  /query NICK      open a private conversation with NICK
  /close           close this private conversation (its lines kept in this browser go too)
  /me ACTION       act in the room: shown as "* you ACTION"
rooms (#name; the server reads room lines: they are not end-to-end encrypted):
  /join #ROOM      join a room (creating it: you are its owner)
  /part [#ROOM] [REASON]  leave a room
  /list [more]     list the rooms (more: the next page)
  /names [#ROOM]   list a room's members (~owner @operator +voiced)
  /topic [#ROOM] [TEXT]  show the topic, or set it to TEXT
  /invite NICK [#ROOM]   invite NICK into a room
  /kick [#ROOM] NICK [REASON]  remove NICK from a room (operators)
  /ban /unban [#ROOM] NICK     ban NICK from a room, or lift the ban
  /op /deop [#ROOM] NICK       make NICK an operator, or take it back
  /voice /devoice [#ROOM] NICK let NICK speak in a moderated room, or take it back
  /mode [#ROOM] +i|-i|+t|-t|+m|-m  invite-only, topic by operators, moderated
  /away [MESSAGE]  mark yourself away (no message: back); /back: back
other commands:
  /secure NICK     start an end-to-end encrypted session with NICK (the server cannot read it)
  /verify NICK     show the safety number to compare with NICK in person or by phone
  /verified NICK   mark NICK's key as verified after the numbers matched
  /insecure NICK   end the secure session: private lines to NICK are NOT encrypted any more
  /accept-key NICK accept NICK's new key after a key-change warning
  (in a private conversation NICK may be left out: the conversation's)
  In a browser, end-to-end protects you from a server that is curious or broken into after
  this page loaded, not from its operator changing this page (it comes from the server);
  the mm program does not have that limit.
  /who             list who is online
  /help            this list
  /quit            leave (close the connection)
keys: Enter sends, Shift+Enter starts a new line, Up on an empty input edits your last line,
Tab completes nicks and /commands, Alt+Up / Alt+Down switch conversations.`;

export function commandName(word) {
  const w = word.toLowerCase();
  const hit = NAMES.find(([name, aliases]) => name === w || aliases.includes(w));
  return hit ? hit[0] : null;
}

/** Every /command name, for Tab completion. */
export const COMPLETIONS = NAMES.map(([name]) => `/${name}`);

const TAB = '    ';
const expandTabs = (s) => s.replaceAll('\t', TAB);

function splitWord(s) {
  const m = /^(\S*)\s*([\s\S]*)$/.exec(s);
  return [m[1], m[2]];
}

function roomName(name) {
  const why = roomError(name);
  if (why) throw new CommandError(`${name} is not a room name: ${why}`);
  return name;
}

function nickArg(nick) {
  const why = nickError(nick);
  if (why) throw new CommandError(`${nick} is not a nick: ${why}`);
  return nick;
}

function leadingRoom(args) {
  if (!args.startsWith('#')) return [null, args];
  const [room, rest] = splitWord(args);
  return [roomName(room), rest];
}

function reasonArg(text) {
  const t = expandTabs(text.trim());
  if (t === '') return t;
  const why = textError(t, MAX_REASON_LEN);
  if (why) throw new CommandError(why);
  return t;
}

const usage = (u) => {
  throw new CommandError(`usage: ${u}`);
};

const MODES = { i: 'InviteOnly', 'invite-only': 'InviteOnly', invite: 'InviteOnly', t: 'TopicOps', 'topic-ops': 'TopicOps', topic: 'TopicOps', m: 'Moderated', moderated: 'Moderated' };
const CHANGES = { ban: 'Ban', unban: 'Unban', op: 'Op', deop: 'Deop', voice: 'Voice', devoice: 'Devoice' };

/**
 * Parses one input (possibly several lines typed with Shift+Enter: each line of plain text is
 * one chat line). Returns a command object `{cmd, ...}`; throws CommandError with words for
 * the user.
 */
export function parse(input) {
  const line = input.replace(/\r$/, '');
  if (line.trim() === '') return { cmd: 'nothing' };
  if (line.startsWith('//')) return { cmd: 'say', text: expandTabs(line.slice(1)) };
  if (!line.startsWith('/')) return { cmd: 'say', text: expandTabs(line) };
  const [name, args] = splitWord(line.slice(1));
  const command = commandName(name);
  if (!command) throw new CommandError(`unknown command /${name.toLowerCase()} (try /help)`);
  switch (command) {
    case 'msg': {
      const [to, text] = splitWord(args);
      if (to === '' || text.trim() === '') usage('/msg NICK TEXT (or /msg #ROOM TEXT)');
      if (to.startsWith('#')) return { cmd: 'sayIn', room: roomName(to), text: expandTabs(text), action: false };
      return { cmd: 'msg', to: nickArg(to), text: expandTabs(text) };
    }
    case 'query': {
      const words = args.split(/\s+/).filter(Boolean);
      if (words.length !== 1) usage('/query NICK');
      return { cmd: 'query', nick: nickArg(words[0]) };
    }
    case 'secure':
    case 'insecure':
    case 'verify':
    case 'verified':
    case 'accept-key': {
      const words = args.split(/\s+/).filter(Boolean);
      if (words.length > 1) usage(`/${command} NICK`);
      return { cmd: 'e2e', which: command, nick: words.length ? nickArg(words[0]) : null };
    }
    case 'who':
      return { cmd: 'who' };
    case 'close':
      if (args.trim() !== '') usage('/close (in the private conversation to close)');
      return { cmd: 'close' };
    case 'help':
      return { cmd: 'help' };
    case 'quit':
      return { cmd: 'quit' };
    case 'back':
      if (args.trim() !== '') usage('/back');
      return { cmd: 'away', message: '' };
    case 'away':
      return { cmd: 'away', message: reasonArg(args) };
    case 'me': {
      const [room, text] = leadingRoom(args);
      if (text.trim() === '') usage('/me [#ROOM] ACTION');
      return { cmd: 'sayIn', room, text: expandTabs(text), action: true };
    }
    case 'join': {
      const words = args.split(/\s+/).filter(Boolean);
      if (words.length !== 1) usage('/join #ROOM');
      return { cmd: 'join', room: roomName(words[0].startsWith('#') ? words[0] : `#${words[0]}`) };
    }
    case 'part': {
      const [room, reason] = leadingRoom(args);
      return { cmd: 'part', room, reason: reasonArg(reason) };
    }
    case 'list': {
      const a = args.trim();
      if (a === '') return { cmd: 'list', more: false };
      if (a === 'more') return { cmd: 'list', more: true };
      return usage('/list [more]');
    }
    case 'topic': {
      const [room, raw] = leadingRoom(args);
      const text = expandTabs(raw.trimEnd());
      if (text === '') return { cmd: 'topic', room, text: null };
      const why = textError(text, MAX_TOPIC_LEN);
      if (why) throw new CommandError(why);
      return { cmd: 'topic', room, text };
    }
    case 'names': {
      const [room, rest] = leadingRoom(args);
      if (rest.trim() !== '') usage('/names [#ROOM]');
      return { cmd: 'names', room };
    }
    case 'invite': {
      const words = args.split(/\s+/).filter(Boolean);
      if (words.length < 1 || words.length > 2 || words[0].startsWith('#')) usage('/invite NICK [#ROOM]');
      return { cmd: 'invite', nick: nickArg(words[0]), room: words[1] ? roomName(words[1]) : null };
    }
    case 'kick': {
      const [room, rest] = leadingRoom(args);
      const [nick, reason] = splitWord(rest);
      if (nick === '') usage('/kick [#ROOM] NICK [REASON]');
      return { cmd: 'kick', room, nick: nickArg(nick), reason: reasonArg(reason) };
    }
    case 'ban':
    case 'unban':
    case 'op':
    case 'deop':
    case 'voice':
    case 'devoice': {
      const [room, rest] = leadingRoom(args);
      const words = rest.split(/\s+/).filter(Boolean);
      if (words.length !== 1) usage(`/${command} [#ROOM] NICK`);
      return { cmd: 'member', room, nick: nickArg(words[0]), change: CHANGES[command] };
    }
    case 'mode': {
      const [room, rest] = leadingRoom(args);
      const words = rest.split(/\s+/).filter(Boolean);
      const bad = () => {
        throw new CommandError('usage: /mode [#ROOM] +i|-i|+t|-t|+m|-m (i: invite-only, t: topic by operators, m: moderated), or /mode [#ROOM] invite-only|topic-ops|moderated on|off');
      };
      let mode;
      let on;
      if (words.length === 1) {
        const flag = words[0];
        if (flag[0] === '+') on = true;
        else if (flag[0] === '-') on = false;
        else bad();
        mode = MODES[flag.slice(1)];
      } else if (words.length === 2) {
        const state = words[1].toLowerCase();
        if (['on', 'yes', 'true'].includes(state)) on = true;
        else if (['off', 'no', 'false'].includes(state)) on = false;
        else bad();
        mode = MODES[words[0].toLowerCase()];
      } else bad();
      if (!mode) bad();
      return { cmd: 'mode', room, mode, on };
    }
    default:
      throw new CommandError(`unknown command /${command} (try /help)`);
  }
}

/**
 * What a command does in a conversation (`{kind: 'room', name}` or `{kind: 'private', name}`).
 * Returns a list of actions:
 *   {line: msg}  a line to send (Public/Private), answered by the server
 *   {send: msg}  a command message (room commands, Who, Away)
 *   {open: nick} open (and switch to) a private conversation
 *   {close: nick} close the private conversation with nick (and forget its kept lines)
 *   {show: text} words for the user, shown locally
 *   {e2e: 'secure'|'insecure'|'verify'|'verified'|'accept-key', nick} an end-to-end command
 *   {quit: true}
 * Throws CommandError.
 */
export function plan(command, here, { maxTextLen = 4096, listNext = '' } = {}) {
  const roomHere = here?.kind === 'room' ? here.name : null;
  const needRoom = (room, usageText) => {
    const r = room ?? roomHere;
    if (!r) throw new CommandError(`this is not a room: ${usageText}`);
    return r;
  };
  const checkText = (text) => {
    const why = textError(text, maxTextLen);
    if (why) throw new CommandError(why);
  };
  switch (command.cmd) {
    case 'nothing':
      return [];
    case 'say': {
      const lines = command.text.split('\n').filter((l) => l.trim() !== '');
      const out = [];
      for (const text of lines) {
        checkText(text);
        if (!here) throw new CommandError('no conversation is open');
        if (here.kind === 'private') out.push({ line: { type: 'Private', to: here.name, text } });
        else out.push({ line: { type: 'Public', room: here.name, text, action: false } });
      }
      return out;
    }
    case 'sayIn': {
      checkText(command.text);
      if (!command.room && here?.kind === 'private') {
        if (command.action) throw new CommandError('/me works in rooms only: a private /me would not be shown as an action');
      }
      const room = needRoom(command.room, '/me #ROOM ACTION');
      return [{ line: { type: 'Public', room, text: command.text, action: command.action } }];
    }
    case 'msg':
      checkText(command.text);
      return [{ open: command.to, quiet: true }, { line: { type: 'Private', to: command.to, text: command.text } }];
    case 'query':
      return [{ open: command.nick }];
    case 'close':
      if (here?.kind !== 'private') throw new CommandError(`/close closes a private conversation; leave a room with /part`);
      return [{ close: here.name }];
    case 'e2e': {
      const nick = command.nick ?? (here?.kind === 'private' ? here.name : null);
      if (!nick) throw new CommandError(`usage: /${command.which} NICK`);
      return [{ e2e: command.which, nick }];
    }
    case 'who':
      return [{ send: { type: 'Who' } }];
    case 'help':
      return [{ show: HELP }];
    case 'quit':
      return [{ quit: true }];
    case 'away':
      return [{ send: { type: 'Away', message: command.message } }];
    case 'join':
      return [{ send: { type: 'Join', room: command.room } }];
    case 'part': {
      const room = needRoom(command.room, '/part #ROOM');
      if (isLobby(room)) throw new CommandError(`${LOBBY} cannot be left`);
      return [{ send: { type: 'Part', room, reason: command.reason } }];
    }
    case 'list':
      return [{ send: { type: 'List', after: command.more ? listNext : '' } }];
    case 'topic':
      return [{ send: { type: 'Topic', room: needRoom(command.room, '/topic #ROOM [TEXT]'), topic: command.text } }];
    case 'names':
      return [{ send: { type: 'Names', room: needRoom(command.room, '/names #ROOM') } }];
    case 'invite':
      return [{ send: { type: 'Invite', room: needRoom(command.room, '/invite NICK #ROOM'), nick: command.nick } }];
    case 'kick':
      return [{ send: { type: 'Kick', room: needRoom(command.room, '/kick #ROOM NICK'), nick: command.nick, reason: command.reason } }];
    case 'member':
      return [{ send: { type: 'Member', room: needRoom(command.room, `/${command.change.toLowerCase()} #ROOM NICK`), nick: command.nick, change: command.change } }];
    case 'mode':
      return [{ send: { type: 'Mode', room: needRoom(command.room, '/mode #ROOM +i'), mode: command.mode, on: command.on } }];
    default:
      throw new CommandError(`unknown command ${command.cmd}`);
  }
}

/**
 * Tab completion: the word before the cursor completed from /commands (at the start of the
 * input) or nicks. Returns {value, cursor} or null. `cycle` picks among several matches.
 */
export function complete(value, cursor, nicks, cycle = 0) {
  const before = value.slice(0, cursor);
  const m = /(\S*)$/.exec(before);
  const word = m[1];
  if (word === '') return null;
  const start = cursor - word.length;
  let candidates;
  if (start === 0 && word.startsWith('/')) {
    candidates = COMPLETIONS.filter((c) => c.startsWith(word.toLowerCase()));
  } else {
    const w = word.toLowerCase().replace(/^@/, '');
    candidates = [...new Set(nicks)].filter((n) => n.toLowerCase().startsWith(w)).sort((a, b) => a.localeCompare(b));
  }
  if (candidates.length === 0) return null;
  let pick = candidates[cycle % candidates.length];
  if (!pick.startsWith('/') && start === 0) pick += ':';
  const insert = `${pick} `;
  return { value: value.slice(0, start) + insert + value.slice(cursor), cursor: start + insert.length, matches: candidates.length };
}
