// What each server event says, in mm's words (client/src/render*.rs), as data: which
// conversation it belongs to and its text. Pure: no DOM, unit-tested.

import { isLobby, nickKey, errorName, LOBBY, sanitize } from './protocol.js';

export const ROLE_WORDS = { Owner: 'the owner', Op: 'an operator', Voiced: 'voiced', Member: 'a member' };
export const ROLE_PREFIX = { Owner: '~', Op: '@', Voiced: '+', Member: '' };
const MODE_LETTER = { InviteOnly: 'i', TopicOps: 't', Moderated: 'm' };
const MODE_WORDS = {
  InviteOnly: 'invite-only',
  TopicOps: 'topic settable by operators only',
  Moderated: 'moderated (only operators and voiced members speak)',
};
const LEAVE_WORDS = { Quit: '', Disconnected: 'disconnected', TooSlow: 'too slow', ProtocolError: 'protocol error' };

const because = (reason) => (reason ? ` (${sanitize(reason)})` : '');

/** Words for the room modes (`+im`), or '' for none. */
export function modeLetters(modes) {
  const s = (modes.invite_only ? 'i' : '') + (modes.moderated ? 'm' : '') + (modes.topic_ops ? 't' : '');
  return s ? `+${s}` : '';
}

/** The Entered line: "entered #dev — topic: … — 3 members — you are the owner — …". */
export function enteredWords(msg) {
  const parts = [`entered ${msg.room}`];
  if (msg.topic) parts.push(`topic: ${sanitize(msg.topic)}`);
  parts.push(`${msg.members} ${msg.members === 1 ? 'member' : 'members'}`);
  parts.push(`you are ${ROLE_WORDS[msg.role]}`);
  const m = modeLetters(msg.modes);
  if (m) parts.push(`modes ${m}`);
  parts.push('not end-to-end encrypted: the server reads room lines');
  return parts.join(' — ');
}

/**
 * A notice for a server message that is not a chat line: `{conv, text, kind}` (conv: a room
 * name, a nick for a private conversation, or null for wherever the user is), or null when
 * the message says nothing worth a line (it still updates state elsewhere).
 * `ctx`: { me, topicAsked: Set of room keys, namesAsked: Set of room keys }.
 */
export function notice(msg, ctx) {
  const me = nickKey(ctx.me ?? '');
  const isMe = (n) => nickKey(n) === me;
  const who = (n) => (isMe(n) ? 'you' : n);
  switch (msg.type) {
    case 'Joined':
      return isLobby(msg.room)
        ? { conv: LOBBY, text: `${msg.nick} joined`, kind: 'presence' }
        : { conv: msg.room, text: `${msg.nick} joined ${msg.room}`, kind: 'presence' };
    case 'Left': {
      const why = LEAVE_WORDS[msg.reason];
      return { conv: LOBBY, text: `${msg.nick} left${why ? ` (${why})` : ''}`, kind: 'presence' };
    }
    case 'Parted':
      return { conv: msg.room, text: `${who(msg.nick)} left ${msg.room}${because(msg.reason)}`, kind: 'presence' };
    case 'Kicked': {
      if (!msg.by) {
        return { conv: msg.room, text: `${isMe(msg.nick) ? 'you were' : `${msg.nick} was`} removed from ${msg.room} by the server${because(msg.reason)}`, kind: 'notice' };
      }
      return { conv: msg.room, text: `${isMe(msg.nick) ? 'you were' : `${msg.nick} was`} kicked from ${msg.room} by ${who(msg.by)}${because(msg.reason)}`, kind: 'notice' };
    }
    case 'Topic': {
      const key = msg.room.toLowerCase();
      const asked = ctx.topicAsked?.has(key);
      if (asked) ctx.topicAsked.delete(key);
      if (asked || (!msg.by && msg.ts === 0n)) {
        if (!msg.topic) return { conv: msg.room, text: `${msg.room} has no topic`, kind: 'notice' };
        return { conv: msg.room, text: `topic of ${msg.room}: ${sanitize(msg.topic)}${msg.by ? ` (set by ${msg.by})` : ''}`, kind: 'notice' };
      }
      if (!msg.topic) return { conv: msg.room, text: `${who(msg.by)} cleared the topic of ${msg.room}`, kind: 'notice' };
      return { conv: msg.room, text: `${who(msg.by)} set the topic of ${msg.room}: ${sanitize(msg.topic)}`, kind: 'notice' };
    }
    case 'ModeChanged': {
      const l = MODE_LETTER[msg.mode];
      const w = MODE_WORDS[msg.mode];
      return { conv: msg.room, text: `${who(msg.by)} set ${msg.room} ${msg.on ? '+' : '-'}${l} (${msg.on ? w : `no longer ${w}`})`, kind: 'notice' };
    }
    case 'MemberChanged': {
      const by = msg.by ? who(msg.by) : 'the server';
      const nick = who(msg.nick);
      const poss = isMe(msg.nick) ? 'your' : `${msg.nick}'s`;
      const text = {
        Op: `${by} made ${nick} an operator in ${msg.room}`,
        Deop: `${by} took ${poss} operator status in ${msg.room}`,
        Voice: `${by} gave ${nick} voice in ${msg.room}`,
        Devoice: `${by} took ${poss} voice in ${msg.room}`,
        Ban: `${by} banned ${nick} from ${msg.room}`,
        Unban: `${by} lifted the ban on ${nick} in ${msg.room}`,
        Owner: `${nick} ${isMe(msg.nick) ? 'now own' : 'now owns'} ${msg.room}`,
      }[msg.change];
      return { conv: msg.room, text, kind: 'notice' };
    }
    case 'Invited':
      if (isMe(msg.nick)) return { conv: null, text: `you were invited to ${msg.room} by ${msg.by} — /join ${msg.room}`, kind: 'mention' };
      return { conv: msg.room, text: `${who(msg.by)} invited ${msg.nick} to ${msg.room}`, kind: 'notice' };
    case 'RoomError':
      return { conv: msg.room || null, text: `${msg.room ? `${msg.room}: ` : ''}${sanitize(msg.detail) || errorName(msg.code)} (${errorName(msg.code)})`, kind: 'error' };
    case 'Away':
      if (isMe(msg.nick)) return { conv: null, text: msg.message ? `you are marked away: ${sanitize(msg.message)}` : 'you are back', kind: 'notice' };
      return { conv: msg.nick, text: msg.message ? `${msg.nick} is away: ${sanitize(msg.message)}` : `${msg.nick} is back`, kind: 'notice' };
    case 'Presence':
      return { conv: msg.nick, text: `${msg.nick} is ${msg.online ? 'online' : 'offline'}`, kind: 'presence' };
    case 'Rooms': {
      if (msg.rooms.length === 0) return { conv: null, text: 'no rooms (besides #lobby)', kind: 'notice' };
      const lines = msg.rooms.map((r) => `${r.name} (${r.members})${r.topic ? ` ${sanitize(r.topic)}` : ''}`);
      if (msg.next) lines.push('more: /list more');
      return { conv: null, text: `rooms:\n${lines.join('\n')}`, kind: 'notice' };
    }
    case 'Names': {
      const key = msg.room.toLowerCase();
      if (!ctx.namesAsked?.has(key)) return null;
      if (msg.last) ctx.namesAsked.delete(key);
      const names = msg.members.map((m) => `${ROLE_PREFIX[m.role]}${m.nick}${m.online ? '' : ' (offline)'}${m.away ? ' (away)' : ''}`);
      return { conv: msg.room, text: `${msg.room}: ${names.join(' ')}`, kind: 'notice' };
    }
    case 'Entered':
      return { conv: msg.room, text: enteredWords(msg), kind: 'notice' };
    case 'Error':
      return { conv: null, text: `error (${errorName(msg.code)}): ${sanitize(msg.detail) || `code ${msg.code}`}`, kind: 'error' };
    case 'KeysPublished':
    case 'PrekeysLow':
    case 'KeysRefused':
    case 'Bundle':
    case 'Pong':
    case 'Ping':
      return null;
    default:
      return null;
  }
}

/** Words for an end-to-end encrypted message the browser cannot read yet. */
export function unreadableWords(from) {
  return `${from} sent an end-to-end encrypted message this browser cannot read yet (end-to-end encryption in the browser is coming)`;
}

/** Whether `text` mentions `nick` (a whole word, any case). */
export function mentions(text, nick) {
  if (!nick) return false;
  const esc = nick.replace(/[-_]/g, '\\$&');
  return new RegExp(`(^|[^A-Za-z0-9_-])${esc}($|[^A-Za-z0-9_-])`, 'i').test(text);
}

/** Splits text into plain parts and http(s) links: [{text}, {link}]. */
export function linkParts(text) {
  const out = [];
  const re = /\bhttps?:\/\/[^\s<>"'`]+/gi;
  let last = 0;
  for (let m; (m = re.exec(text)); ) {
    let url = m[0];
    const trail = /[.,;:!?)\]]+$/.exec(url);
    if (trail) url = url.slice(0, -trail[0].length);
    if (m.index > last) out.push({ text: text.slice(last, m.index) });
    out.push({ link: url });
    last = m.index + url.length;
    re.lastIndex = last;
  }
  if (last < text.length) out.push({ text: text.slice(last) });
  return out;
}

/** Local HH:MM and the full date, from a server time in ms (BigInt or Number). */
export function timeWords(ts) {
  const d = new Date(Number(ts));
  const hhmm = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  return { hhmm, full: d.toLocaleString(), iso: d.toISOString() };
}
