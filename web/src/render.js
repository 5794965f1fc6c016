// What each server event says, in mm's words (client/src/render*.rs), as data: which
// conversation it belongs to and its text. Pure: no DOM, unit-tested.

import { isLobby, nickKey, errorName, LOBBY, sanitize } from './protocol.js';

export const ROLE_WORDS = { Owner: 'the owner', Op: 'an operator', Voiced: 'voiced', Member: 'a member' };
export const ROLE_PREFIX = { Owner: '~', Op: '@', Voiced: '+', Member: '' };
const MODE_LETTER = { InviteOnly: 'i', TopicOps: 't', Moderated: 'm' };
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
      // The same words as mm's (client/src/render_rooms.rs).
      const by = who(msg.by);
      const words = {
        InviteOnly: [`${by} made ${msg.room} open to everyone (-i)`, `${by} made ${msg.room} invite-only (+i): only those invited join`],
        Moderated: [`${by} made ${msg.room} unmoderated (-m): every member speaks`, `${by} made ${msg.room} moderated (+m): only operators and voiced members speak`],
        TopicOps: [`${by} let every member set the topic of ${msg.room} (-t)`, `${by} let only operators set the topic of ${msg.room} (+t)`],
      }[msg.mode];
      const text = words ? words[msg.on ? 1 : 0] : `${by} set ${msg.room} ${msg.on ? '+' : '-'}${MODE_LETTER[msg.mode] ?? '?'}`;
      return { conv: msg.room, text, kind: 'notice' };
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

// ---- end-to-end (client/src/render.rs `secure()`, `unsent_reason()`, `safety_number()`) ----
// The failure words and the blocking rule come from the sessions module (e2e/sessions.js
// `failureWords`, `isBlocking`), handed in as `fw = {failureWords, isBlocking}`, so that these
// word functions stay pure and testable on their own.

/** A 32-byte key as 16 groups of 4 hex digits (common/src/identity.rs `key_fingerprint`). */
export function keyFingerprint(key) {
  const hex = Array.from(key ?? [], (b) => b.toString(16).padStart(2, '0')).join('');
  return hex.match(/.{1,4}/g)?.join(' ') ?? '';
}

/**
 * render.rs Trust's Display; 'Accepted' (the page's own: a key the user accepted with
 * /accept-key in this page, which the sessions report as 'Pinned') says so instead of "pinned
 * at first contact".
 */
export function trustWords(trust) {
  switch (trust) {
    case 'Accepted':
      return 'not verified (accepted by you with /accept-key)';
    case 'New':
      return 'not verified (first contact: key from the server\'s directory, now pinned)';
    case 'Verified':
      return 'verified';
    default:
      return 'not verified (pinned at first contact)';
  }
}

/** `; 2 waiting messages were NOT sent`, or '' for 0. */
function notSent(n) {
  if (!n) return '';
  return n === 1 ? '; 1 waiting message was NOT sent' : `; ${n} waiting messages were NOT sent`;
}

export function ownKeyWarning(peer) {
  return `${peer} presents your own key: you and ${peer} share one home directory; each user needs `
    + `their own (each --nick has one by default; or --home DIR). Nothing was sent or pinned; `
    + `messages to ${peer} stay blocked: once ${peer} has a home of their own, /secure ${peer} `
    + `again (or /insecure ${peer} to send plain)`;
}

/** What a Held event says (render.rs `held_words`): how many wait under a changed key, and what shows them. */
export function heldWords(peer, held, dropped) {
  const lost = dropped === 0 ? '' : dropped === 1 ? '; 1 older message was dropped (too many held)' : `; ${dropped} older messages were dropped (too many held)`;
  const messages = held === 1 ? '1 message' : `${held} messages`;
  return `${messages} from ${peer} under the new key ${held === 1 ? 'is' : 'are'} held until you compare safety numbers (/verify ${peer}) and /accept-key ${peer}${lost}`;
}

/** What a PeerCouldNotRead event says (render.rs `could_not_read_words`): the peer lost its keys. */
export function couldNotReadWords(peer, count) {
  const messages = count === 1 ? '1 of your messages' : `${count} of your messages`;
  return `${peer} could not read ${messages} (${peer}'s client no longer had the keys of your secure session): send again what you sent ${peer} before the key-change warning`;
}

/** The words of OtherDevice (render.rs `secure_general`), said for the browser. */
export const OTHER_DEVICE_WORDS = 'WARNING: another copy of this account\'s end-to-end keys published keys since this one last did: '
  + 'two browsers or programs are using one account, and their secure sessions break each other\'s. Use one copy only '
  + '(each browser or machine needs its own nick)';

/**
 * What an end-to-end event (other than a Message, which is a chat line) says:
 * `{peer, text, kind}` (peer: the conversation, or null for wherever the user is; kind:
 * 'ready' | 'notice' | 'error' | 'alarm'), or null for an event that says nothing.
 */
export function secureEventWords(event, fw) {
  const peer = event.peer;
  const failure = event.failure;
  switch (event.kind) {
    case 'Ready': {
      const compare = event.trust === 'Verified' ? '' : `. Compare safety numbers: /verify ${peer}`;
      const who = event.byPeer ? `${peer} started a secure session` : `secure session with ${peer} ready`;
      return {
        peer, kind: 'ready',
        text: `${who}: messages to and from ${peer} are end-to-end encrypted. ${peer}'s key: ${keyFingerprint(event.key)}, ${trustWords(event.trust)}${compare}`,
      };
    }
    case 'Ended':
      return {
        peer, kind: 'notice',
        text: `private messages to ${peer} are NOT end-to-end encrypted from now on (the server can read them)${notSent(event.unsent?.length)}; /secure ${peer} to encrypt again`,
      };
    case 'Resumed':
      return { peer, kind: 'notice', text: `private messages to ${peer} are end-to-end encrypted again` };
    case 'Unreadable':
      return {
        peer, kind: 'error',
        text: `a message from ${peer} could not be decrypted and is not shown (altered on the way, or sent in a session this client no longer has): ask ${peer} to send it again`,
      };
    case 'Replayed':
      return { peer, kind: 'error', text: `a message from ${peer} came again (replayed by the server?) and was ignored` };
    case 'Held':
      return { peer, kind: 'alarm', text: heldWords(peer, event.held, event.dropped) };
    case 'PeerCouldNotRead':
      return { peer, kind: 'error', text: couldNotReadWords(peer, event.count) };
    case 'Released':
      return {
        peer, kind: 'notice',
        text: `${event.count === 1 ? '1 held message' : `${event.count} held messages`} from ${peer} ${event.count === 1 ? 'follows' : 'follow'}, sent under the key you just accepted (${keyFingerprint(event.key)})`,
      };
    case 'OtherDevice':
      return { peer: null, kind: 'alarm', text: OTHER_DEVICE_WORDS };
    case 'Failed': {
      const dropped = notSent(event.unsent?.length);
      switch (failure?.kind) {
        case 'KeyChanged':
          return {
            peer, kind: 'alarm',
            text: `WARNING: ${peer}'s key has CHANGED. Pinned: ${keyFingerprint(failure.pinned)}. Presented: ${keyFingerprint(failure.presented)}. Someone may be intercepting your conversation; nothing was sent or shown. Compare the safety number of the NEW key (/verify ${peer}) with ${peer} in person or by phone; if they match: /accept-key ${peer}, then /verified ${peer}`,
          };
        case 'OwnKey':
          return { peer, kind: 'alarm', text: `WARNING: ${ownKeyWarning(peer)}${dropped}` };
        case 'NoSuchUser':
          return { peer, kind: 'error', text: `${peer} is not a user on this server${dropped}` };
        case 'NoKeys':
          return {
            peer, kind: 'error',
            text: `${peer} has no end-to-end keys (an older client, or a browser page from before end-to-end; ${peer} gets keys by logging in again with a current one)${dropped}. To send plain (the server can read it): /insecure ${peer}, then send again`,
          };
        default: {
          const words = fw.failureWords(failure);
          const text = fw.isBlocking(failure)
            ? `secure session with ${peer} failed: ${words}${dropped}. Messages to ${peer} are blocked until /secure ${peer} (tries again) or /insecure ${peer}`
            : `could not start a secure session with ${peer}: ${words}${dropped}. Nothing goes unencrypted: your next message to ${peer} tries again (/insecure ${peer} to send plain)`;
          return { peer, kind: 'error', text };
        }
      }
    }
    default:
      return null;
  }
}

/** Why the lines an event drops (its `unsent`) were not sent, for marking each; null if none. */
export function unsentReason(event, fw) {
  if (event.kind === 'Ended') return 'not sent: you said /insecure before it went';
  if (event.kind !== 'Failed') return null;
  if (event.failure?.kind === 'NoKeys') {
    return `not sent: ${event.peer} has no end-to-end keys (to send plain: /insecure ${event.peer}, then send again)`;
  }
  return `not sent: no secure session (${fw.failureWords(event.failure)})`;
}

/**
 * The `/verify` lines, in the conversation with `peer`: the number, then how to compare it.
 * `newKey`: the number of a changed key not accepted yet.
 */
export function safetyNumberLines(peer, number, newKey) {
  const title = newKey ? `Safety number of ${peer}'s NEW key (not accepted yet): ${number}` : `Safety number with ${peer}: ${number}`;
  const then = newKey ? `/accept-key ${peer}, then /verified ${peer}` : `/verified ${peer}`;
  return [
    { kind: 'safety', text: title },
    { kind: 'notice', text: `compare it with the one ${peer} sees, in person or by phone; if they are the same: ${then}` },
  ];
}

/** What `/verified peer` says once done (client/src/execute.rs `verified_item`). */
export function verifiedWords(peer) {
  return `${peer}'s key is now marked as verified`;
}

/** What `/accept-key peer` says once done (client/src/execute.rs `accepted_item`). */
export function acceptedWords(peer) {
  return `accepted ${peer}'s new key (pinned, not verified); a new secure session starts. /verify ${peer} to compare safety numbers`;
}

/**
 * The `#security` element of a private conversation with `peer` for its end-to-end `status`
 * (Sessions.status), or null status when end-to-end is not available in this tab
 * (`unavailable`: why). `link`: the connection, 'connected' | 'reconnecting' | 'offline'; while
 * not connected a secure (or about to be) conversation is paused, in mm's words
 * (client/src/tui/ui.rs). Returns `{state, text}`; state is one of plain | ready | starting |
 * secure | verified | paused | changed | blocked.
 */
export function securityWords(status, peer, fw, unavailable = '', link = 'connected') {
  if (!status) {
    return { state: 'blocked', text: `BLOCKED — end-to-end encryption is not available in this tab (${unavailable || 'not opened yet'}): nothing is sent to ${peer}` };
  }
  if (link !== 'connected' && (status.kind === 'Secure' || status.kind === 'Starting' || status.kind === 'Ready')) {
    // SECURE only where a session is: a conversation about to be one says end-to-end.
    const what = status.kind === 'Secure' ? 'SECURE e2e' : 'end-to-end';
    return {
      state: 'paused',
      text: link === 'reconnecting'
        ? `${what} · paused while reconnecting (nothing goes plain)`
        : `${what} · paused: not connected (nothing goes plain)`,
    };
  }
  switch (status.kind) {
    case 'Plain':
      return { state: 'plain', text: `NOT end-to-end encrypted — the server can read it; /secure ${peer} to encrypt` };
    case 'Ready':
      return { state: 'ready', text: `End-to-end encrypted — your first message sets up a secure session with ${peer}` };
    case 'Starting':
      return { state: 'starting', text: `Setting up end-to-end encryption with ${peer}…` };
    case 'Secure':
      if (status.trust === 'Verified') return { state: 'verified', text: 'VERIFIED — end-to-end encrypted; safety number compared' };
      return { state: 'secure', text: `SECURE — end-to-end encrypted · not verified: compare safety numbers with /verify ${peer}` };
    case 'Failed': {
      const f = status.failure;
      if (f?.kind === 'KeyChanged') {
        return { state: 'changed', text: `KEY CHANGED — blocked: nothing is sent until you compare the new safety number (/verify ${peer}) and say /accept-key ${peer}` };
      }
      if (fw.isBlocking(f)) {
        return { state: 'blocked', text: `BLOCKED — ${fw.failureWords(f)}; nothing is sent until /secure ${peer} (tries again) or /insecure ${peer}` };
      }
      return { state: 'ready', text: `End-to-end encrypted — the last try to set up a secure session failed (${fw.failureWords(f)}); your next message tries again` };
    }
    default:
      return { state: 'blocked', text: 'BLOCKED — unknown end-to-end state' };
  }
}

/**
 * How the user's private line shows for what Secure.sendText gave (`{kind, message?}`):
 * `{secure}` (true: the lock, class `secure`; false: class `plain`; null: neither, it was not
 * sent), `keep` (kept in the conversation
 * log), and the state to mark now (`state` 'waiting' | 'refused' with `words`, or null: the
 * connection's states follow once it is sent).
 */
export function sentTextLine(outcome, peer) {
  switch (outcome.kind) {
    case 'Secure':
      return { secure: true, keep: true, state: null, words: '' };
    case 'Queued':
      return { secure: true, keep: true, state: 'waiting', words: `waiting for ${peer}'s keys` };
    case 'QueuedPlain':
      return { secure: false, keep: true, state: 'waiting', words: 'waiting: to be sent NOT end-to-end encrypted' };
    case 'Plain':
      return { secure: false, keep: true, state: null, words: '' };
    default:
      return { secure: null, keep: false, state: 'refused', words: `not sent: ${outcome.message ?? 'refused'}` };
  }
}

/** A line of ours kept while still waiting for the server, at the next page load. */
export const UNCONFIRMED = 'not confirmed: this page was closed or reloaded before the server took it (it may not have been sent; send it again if it matters)';
/** A line of ours kept while it still waited to be sent (for keys, or its end-to-end save). */
export const NEVER_SENT = 'not sent: this page was closed or reloaded before it could be sent (send it again if it matters)';

/**
 * How a kept line (privlog.js) comes back at a page load: `{secure}` as sentTextLine's, and
 * for a line of ours (`own`) the state to mark (`state` 'refused' | 'unknown' with `words`, or
 * null). A line of ours not sent, or not known to be, never comes back with the lock.
 */
export function keptLine(l, own) {
  const secure = l.kind === 'notice' ? null : l.plain === false;
  if (!own) return { secure, state: null, words: '' };
  if (l.pending && l.waiting) return { secure: null, state: 'refused', words: NEVER_SENT };
  if (l.pending) return { secure: null, state: 'unknown', words: UNCONFIRMED };
  if (l.note) return { secure: null, state: 'refused', words: l.note };
  return { secure, state: null, words: '' };
}
