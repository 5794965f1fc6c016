// Protocol 6's messages (PROTOCOL.md; common/src/protocol.rs, common/src/prekeys.rs): the
// schema of every ClientMsg and ServerMsg variant in Rust's order (field order = wire order),
// encodeClient / decodeServer (and the reverse pair, for tests and tools), and the rules of
// nicks, room names and chat text.
//
// Messages are plain objects `{ type: 'Public', room, text, action }` with Rust's field names.
// u64 fields are BigInt (see postcard.js); u16/u32 and ErrorCode are Numbers; byte fields are
// Uint8Array; Option is `null` or the value; unit-only enums (Role, RoomMode, MemberChange,
// LeaveReason) are their variant name as a string ('Owner'); BundleAnswer is an object with a
// `type` (`{ type: 'Keys', bundle }`, `{ type: 'RateLimited', retry_after_ms }`, `{ type: 'NoKeys' }`).

import { DecodeError, Reader, Writer, asBytes } from './postcard.js';

export { DecodeError };

export const PROTOCOL_VERSION = 6;
export const MAX_NICK_LEN = 32;
export const MAX_TEXT_LEN = 4096;
export const MAX_RELAY_LEN = 16 * 1024;
export const MAX_DETAIL_LEN = 512;
export const MAX_ROOM_LEN = 49;
export const MAX_TOPIC_LEN = 1024;
export const MAX_REASON_LEN = 256;
export const MONITOR_PER_FRAME = 64;
export const USERS_PER_FRAME = 1000;
export const NAMES_PER_FRAME = 1000;
export const ROOMS_PER_FRAME = 100;
export const LOBBY = '#lobby';
export const KEY_LEN = 32;
export const DEVICE_TOKEN_LEN = 16;
export const MAX_ONE_TIME_PER_UPLOAD = 100;

// ---- types -------------------------------------------------------------------------------

// A type is a string ('u16', 'u32', 'u64', 'bool', 'string', 'bytes', 'code') or an array:
// ['array', N], ['vec', T, max], ['option', T], ['struct', Name], ['units', Name],
// ['tagged', Name]. A field is [name, type, max?] (max: bytes of a string or byte list).

export const UNIT_ENUMS = {
  Role: ['Member', 'Voiced', 'Op', 'Owner'],
  RoomMode: ['InviteOnly', 'TopicOps', 'Moderated'],
  MemberChange: ['Op', 'Deop', 'Voice', 'Devoice', 'Ban', 'Unban', 'Owner'],
  LeaveReason: ['Quit', 'Disconnected', 'TooSlow', 'ProtocolError'],
};

export const STRUCTS = {
  Modes: [['invite_only', 'bool'], ['topic_ops', 'bool'], ['moderated', 'bool']],
  Member: [['nick', 'string'], ['role', ['units', 'Role']], ['online', 'bool'], ['away', 'bool']],
  RoomSummary: [['name', 'string'], ['members', 'u32'], ['topic', 'string']],
  SignedPrekey: [['id', 'u32'], ['key', ['array', KEY_LEN]], ['signature', 'bytes']],
  OneTimePrekey: [['id', 'u32'], ['key', ['array', KEY_LEN]]],
  DeviceCheck: [['previous', ['array', DEVICE_TOKEN_LEN]], ['next', ['array', DEVICE_TOKEN_LEN]]],
  KeyUpload: [
    ['identity', ['array', KEY_LEN]],
    ['signed_prekey', ['struct', 'SignedPrekey']],
    ['one_time', ['vec', ['struct', 'OneTimePrekey'], MAX_ONE_TIME_PER_UPLOAD]],
    ['device', ['struct', 'DeviceCheck']],
    ['replace_one_time', 'bool'],
  ],
  PrekeyBundle: [
    ['identity', ['array', KEY_LEN]],
    ['signed_prekey', ['struct', 'SignedPrekey']],
    ['one_time', ['option', ['struct', 'OneTimePrekey']]],
  ],
};

// Enums with data: variants [name, fields]; a `newtype` variant has one field written bare
// (Rust's `Keys(PrekeyBundle)`), named here `bundle`.
export const TAGGED = {
  BundleAnswer: [
    ['Keys', [['bundle', ['struct', 'PrekeyBundle']]], 'newtype'],
    ['NoKeys', []],
    ['NoSuchUser', []],
    ['RateLimited', [['retry_after_ms', 'u64']]],
    ['Busy', []],
  ],
};

const T = MAX_TEXT_LEN;
const D = MAX_DETAIL_LEN;

/** ClientMsg variants, in wire order (index = variant number). */
export const CLIENT = [
  ['Hello', [['version', 'u16'], ['nick', 'string']]],
  ['Public', [['room', 'string'], ['text', 'string'], ['action', 'bool']]],
  ['Private', [['to', 'string'], ['text', 'string']]],
  ['Who', []],
  ['Ping', [['token', 'u64']]],
  ['Pong', [['token', 'u64']]],
  ['Quit', []],
  ['Relay', [['to', 'string'], ['payload', 'bytes', MAX_RELAY_LEN]]],
  ['Received', [['up_to', 'u64']]],
  ['Monitor', [['nicks', ['vec', 'string', MONITOR_PER_FRAME]]]],
  ['Join', [['room', 'string']]],
  ['Part', [['room', 'string'], ['reason', 'string']]],
  ['List', [['after', 'string']]],
  ['Names', [['room', 'string']]],
  ['Topic', [['room', 'string'], ['topic', ['option', 'string']]]],
  ['Invite', [['room', 'string'], ['nick', 'string']]],
  ['Kick', [['room', 'string'], ['nick', 'string'], ['reason', 'string']]],
  ['Member', [['room', 'string'], ['nick', 'string'], ['change', ['units', 'MemberChange']]]],
  ['Mode', [['room', 'string'], ['mode', ['units', 'RoomMode']], ['on', 'bool']]],
  ['Away', [['message', 'string']]],
  ['PublishKeys', [['keys', ['struct', 'KeyUpload']]]],
  ['FetchBundle', [['nick', 'string']]],
  ['KeyHello', [['version', 'u16'], ['nick', 'string'], ['key', 'bytes']]],
  ['KeyProof', [['signature', 'bytes']]],
];

/** ServerMsg variants, in wire order (index = variant number). */
export const SERVER = [
  ['Welcome', [['nick', 'string'], ['server', 'string'], ['online', 'u32'], ['max_text_len', 'u32'], ['rate_burst', 'u32'], ['rate_per_sec', 'u32']]],
  ['Users', [['nicks', ['vec', 'string', USERS_PER_FRAME]], ['last', 'bool']]],
  ['Public', [['id', 'u64'], ['ts', 'u64'], ['room', 'string'], ['from', 'string'], ['text', 'string', T], ['action', 'bool']]],
  ['Private', [['id', 'u64'], ['ts', 'u64'], ['from', 'string'], ['text', 'string', T]]],
  ['Sent', [['id', 'u64'], ['ts', 'u64']]],
  ['Joined', [['ts', 'u64'], ['room', 'string'], ['nick', 'string']]],
  ['Left', [['ts', 'u64'], ['room', 'string'], ['nick', 'string'], ['reason', ['units', 'LeaveReason']]]],
  ['Error', [['code', 'code'], ['fatal', 'bool'], ['detail', 'string', D]]],
  ['Shutdown', [['reason', 'string']]],
  ['Ping', [['token', 'u64']]],
  ['Pong', [['token', 'u64']]],
  ['Relay', [['id', 'u64'], ['ts', 'u64'], ['from', 'string'], ['payload', 'bytes', MAX_RELAY_LEN]]],
  ['History', [['id', 'u64'], ['ts', 'u64'], ['room', 'string'], ['from', 'string'], ['text', 'string', T], ['action', 'bool']]],
  ['Queued', [['id', 'u64'], ['ts', 'u64']]],
  ['Offline', [['id', 'u64'], ['ts', 'u64'], ['from', 'string'], ['text', 'string', T]]],
  ['Presence', [['nick', 'string'], ['online', 'bool']]],
  ['Entered', [['room', 'string'], ['topic', 'string', MAX_TOPIC_LEN], ['topic_by', 'string'], ['topic_ts', 'u64'], ['modes', ['struct', 'Modes']], ['members', 'u32'], ['role', ['units', 'Role']], ['seen', 'u64'], ['created', 'bool']]],
  ['Names', [['room', 'string'], ['members', ['vec', ['struct', 'Member'], NAMES_PER_FRAME]], ['last', 'bool']]],
  ['Rooms', [['rooms', ['vec', ['struct', 'RoomSummary'], ROOMS_PER_FRAME]], ['next', 'string']]],
  ['Parted', [['ts', 'u64'], ['room', 'string'], ['nick', 'string'], ['reason', 'string']]],
  ['Kicked', [['ts', 'u64'], ['room', 'string'], ['nick', 'string'], ['by', 'string'], ['reason', 'string']]],
  ['Topic', [['ts', 'u64'], ['room', 'string'], ['by', 'string'], ['topic', 'string', MAX_TOPIC_LEN]]],
  ['ModeChanged', [['ts', 'u64'], ['room', 'string'], ['by', 'string'], ['mode', ['units', 'RoomMode']], ['on', 'bool']]],
  ['MemberChanged', [['ts', 'u64'], ['room', 'string'], ['by', 'string'], ['nick', 'string'], ['change', ['units', 'MemberChange']]]],
  ['Invited', [['ts', 'u64'], ['room', 'string'], ['by', 'string'], ['nick', 'string']]],
  ['RoomError', [['room', 'string'], ['code', 'code'], ['detail', 'string', D]]],
  ['Away', [['nick', 'string'], ['message', 'string']]],
  ['KeysPublished', [['one_time', 'u32'], ['other_device', 'bool']]],
  ['Bundle', [['nick', 'string'], ['answer', ['tagged', 'BundleAnswer']]]],
  ['PrekeysLow', [['one_time', 'u32']]],
  ['KeysRefused', [['code', 'code'], ['detail', 'string', D]]],
  ['Challenge', [['nonce', 'bytes', 256]]],
];

const clientIndex = new Map(CLIENT.map(([name], i) => [name, i]));
const serverIndex = new Map(SERVER.map(([name], i) => [name, i]));

// ---- decoding ----------------------------------------------------------------------------

function readType(r, type, max) {
  if (typeof type === 'string') {
    switch (type) {
      case 'u16':
      case 'code':
        return r.u16();
      case 'u32':
        return r.u32();
      case 'u64':
        return r.u64();
      case 'bool':
        return r.bool();
      case 'string':
        return r.string(max);
      case 'bytes':
        return r.bytesVec(max);
      default:
        throw new DecodeError('its fields do not decode', `unknown type ${type}`);
    }
  }
  const [kind, inner, innerMax] = type;
  switch (kind) {
    case 'array':
      return r.raw(inner);
    case 'vec': {
      const n = r.length(1, innerMax ?? 65536);
      const out = [];
      for (let i = 0; i < n; i++) out.push(readType(r, inner));
      return out;
    }
    case 'option':
      return r.option(() => readType(r, inner));
    case 'struct':
      return readFields(r, STRUCTS[inner], {});
    case 'units': {
      const names = UNIT_ENUMS[inner];
      const i = r.u32();
      if (i >= names.length) throw new DecodeError('a field holds an unknown value', `${inner} ${i}`);
      return names[i];
    }
    case 'tagged': {
      const variants = TAGGED[inner];
      const i = r.u32();
      if (i >= variants.length) throw new DecodeError('a field holds an unknown value', `${inner} ${i}`);
      const [name, fields] = variants[i];
      return readFields(r, fields, { type: name });
    }
    default:
      throw new DecodeError('its fields do not decode', `unknown type ${kind}`);
  }
}

function readFields(r, fields, out) {
  for (const [name, type, max] of fields) out[name] = readType(r, type, max);
  return out;
}

function decodeWith(variants, bytes, side) {
  try {
    const r = new Reader(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
    let index;
    try {
      index = r.u32();
    } catch {
      throw new DecodeError('the message type is not a valid number');
    }
    if (index >= variants.length) throw new DecodeError('unknown message type', `${side} ${index}`);
    const [name, fields] = variants[index];
    let msg;
    try {
      msg = readFields(r, fields, { type: name });
    } catch (e) {
      if (e instanceof DecodeError) {
        throw new DecodeError(`the ${name} message does not decode (${e.why})`, e.message);
      }
      throw e;
    }
    r.finish();
    return msg;
  } catch (e) {
    if (e instanceof DecodeError) throw e;
    throw new DecodeError('its fields do not decode', String(e?.message ?? e));
  }
}

/** Decodes one server payload (a WebSocket binary message). Throws only DecodeError. */
export function decodeServer(bytes) {
  return decodeWith(SERVER, bytes, 'server');
}

/** Decodes one client payload (tests, tools). Throws only DecodeError. */
export function decodeClient(bytes) {
  return decodeWith(CLIENT, bytes, 'client');
}

// ---- encoding ----------------------------------------------------------------------------

function writeType(w, type, value, where) {
  if (typeof type === 'string') {
    switch (type) {
      case 'u16':
      case 'code':
        return w.u16(value);
      case 'u32':
        return w.u32(value);
      case 'u64':
        return w.u64(value);
      case 'bool':
        return w.bool(value);
      case 'string':
        return w.string(value);
      case 'bytes':
        return w.bytesVec(value);
      default:
        throw new TypeError(`${where}: unknown type ${type}`);
    }
  }
  const [kind, inner] = type;
  switch (kind) {
    case 'array': {
      const b = asBytes(value);
      if (b.length !== inner) throw new RangeError(`${where}: ${b.length} bytes, not ${inner}`);
      return w.raw(b);
    }
    case 'vec':
      if (!Array.isArray(value)) throw new TypeError(`${where}: not a list`);
      w.u32(value.length);
      for (const v of value) writeType(w, inner, v, where);
      return undefined;
    case 'option':
      return w.option(value, (v) => writeType(w, inner, v, where));
    case 'struct':
      if (value === null || typeof value !== 'object') throw new TypeError(`${where}: not a ${inner}`);
      return writeFields(w, STRUCTS[inner], value, `${where}.${inner}`);
    case 'units': {
      const i = UNIT_ENUMS[inner].indexOf(value);
      if (i < 0) throw new TypeError(`${where}: ${value} is not a ${inner}`);
      return w.u32(i);
    }
    case 'tagged': {
      const variants = TAGGED[inner];
      const i = variants.findIndex(([name]) => name === value?.type);
      if (i < 0) throw new TypeError(`${where}: ${value?.type} is not a ${inner}`);
      w.u32(i);
      return writeFields(w, variants[i][1], value, `${where}.${value.type}`);
    }
    default:
      throw new TypeError(`${where}: unknown type ${kind}`);
  }
}

function writeFields(w, fields, value, where) {
  for (const [name, type] of fields) {
    if (!(name in value)) throw new TypeError(`${where}: missing field ${name}`);
    writeType(w, type, value[name], `${where}.${name}`);
  }
}

function encodeWith(variants, index, msg) {
  const i = index.get(msg?.type);
  if (i === undefined) throw new TypeError(`unknown message type ${msg?.type}`);
  const w = new Writer();
  w.u32(i);
  writeFields(w, variants[i][1], msg, msg.type);
  return w.finish();
}

/** Encodes one ClientMsg to its payload bytes. Throws TypeError/RangeError on a bad message. */
export function encodeClient(msg) {
  return encodeWith(CLIENT, clientIndex, msg);
}

/** Encodes one ServerMsg (tests: scripted servers). */
export function encodeServer(msg) {
  return encodeWith(SERVER, serverIndex, msg);
}

// ---- error codes -------------------------------------------------------------------------

export const ERROR_NAMES = {
  1: 'unsupported-version', 2: 'bad-frame', 3: 'unexpected-message', 10: 'invalid-nick',
  11: 'nick-in-use', 12: 'nick-registered', 13: 'certificate-required', 14: 'replaced',
  15: 'accounts-full', 16: 'nick-looks-like', 17: 'registration-limit', 20: 'no-such-nick',
  21: 'text-too-long', 22: 'invalid-text', 23: 'bad-payload', 24: 'mailbox-full', 25: 'bad-keys',
  30: 'too-slow', 31: 'timeout', 32: 'rate-limited', 33: 'server-full', 34: 'shutting-down',
  35: 'busy', 40: 'no-such-room', 41: 'invalid-room', 42: 'not-in-room', 43: 'banned',
  44: 'invite-only', 45: 'not-op', 46: 'room-full', 47: 'too-many-rooms', 48: 'rooms-full',
  49: 'room-looks-like', 50: 'moderated', 51: 'invalid-topic', 52: 'lobby-fixed', 53: 'rooms-unavailable',
  99: 'internal',
};

export const ErrorCode = {
  UNSUPPORTED_VERSION: 1, BAD_FRAME: 2, UNEXPECTED_MESSAGE: 3, INVALID_NICK: 10,
  NICK_IN_USE: 11, NICK_REGISTERED: 12, CERTIFICATE_REQUIRED: 13, REPLACED: 14,
  ACCOUNTS_FULL: 15, NICK_LOOKS_LIKE: 16, REGISTRATION_LIMIT: 17, NO_SUCH_NICK: 20,
  TEXT_TOO_LONG: 21, INVALID_TEXT: 22, BAD_PAYLOAD: 23, MAILBOX_FULL: 24, BAD_KEYS: 25,
  TOO_SLOW: 30, TIMEOUT: 31, RATE_LIMITED: 32, SERVER_FULL: 33, SHUTTING_DOWN: 34, BUSY: 35,
  NO_SUCH_ROOM: 40, INVALID_ROOM: 41, NOT_IN_ROOM: 42, BANNED: 43, INVITE_ONLY: 44, NOT_OP: 45,
  ROOM_FULL: 46, TOO_MANY_ROOMS: 47, ROOMS_FULL: 48, ROOM_LOOKS_LIKE: 49, MODERATED: 50,
  INVALID_TOPIC: 51, LOBBY_FIXED: 52, ROOMS_UNAVAILABLE: 53, INTERNAL: 99,
};

/** The code's name (`nick-registered`), or `unknown` for a code this client does not know. */
export function errorName(code) {
  return ERROR_NAMES[code] ?? 'unknown';
}

// ---- validation (protocol.rs validate_nick, validate_room, validate_text; text.rs) ------

const utf8 = new TextEncoder();

export function byteLength(s) {
  return utf8.encode(s).length;
}

/** Why `nick` is not a nick (protocol.rs `NickError`), or null. */
export function nickError(nick) {
  if (nick.length === 0) return 'a nick cannot be empty';
  if (byteLength(nick) > MAX_NICK_LEN) return `a nick is at most ${MAX_NICK_LEN} characters`;
  if (!/^[A-Za-z]/.test(nick)) return 'a nick must start with a letter (a-z, A-Z)';
  if (!/^[A-Za-z0-9_-]+$/.test(nick)) return "a nick may only hold letters a-z, A-Z, digits, '_' and '-'";
  return null;
}

/** Why `name` is not a room name (protocol.rs `RoomNameError`), or null. */
export function roomError(name) {
  if (!name.startsWith('#')) return 'a room name starts with #';
  const rest = name.slice(1);
  if (rest.length === 0) return 'a room name needs at least one character after #';
  if (!/^[A-Za-z0-9_-]+$/.test(rest)) return 'a room name holds only letters, digits, _ and - after #';
  if (name.length > MAX_ROOM_LEN) return 'a room name is at most 48 characters after #';
  return null;
}

export const nickKey = (nick) => nick.replace(/[A-Z]/g, (c) => c.toLowerCase());
export const roomKey = nickKey;
export const isLobby = (name) => roomKey(name) === LOBBY;

function isControl(cp) {
  return cp <= 0x1f || (cp >= 0x7f && cp <= 0x9f);
}

/** text.rs `is_forbidden`: characters that can break, reorder or hide a line. */
export function isForbidden(cp) {
  return (
    isControl(cp) ||
    cp === 0x2028 || cp === 0x2029 ||
    (cp >= 0x202a && cp <= 0x202e) ||
    (cp >= 0x2060 && cp <= 0x206f) ||
    cp === 0xfeff ||
    (cp >= 0xfff9 && cp <= 0xfffb) ||
    (cp >= 0xe0000 && cp <= 0xe007f)
  );
}

const FLAG_BASE = 0x1f3f4;
const CANCEL_TAG = 0xe007f;

/** The first forbidden code point of `text` (tag sequences of a flag allowed), or null. */
export function findForbidden(text) {
  const cps = Array.from(text, (c) => c.codePointAt(0));
  let allowedUntil = 0;
  for (let i = 0; i < cps.length; i++) {
    const cp = cps[i];
    if (cp === FLAG_BASE) {
      let count = 0;
      for (let j = i + 1; j < cps.length; j++) {
        const t = cps[j];
        if (((t >= 0xe0030 && t <= 0xe0039) || (t >= 0xe0061 && t <= 0xe007a)) && count < 7) {
          count++;
        } else {
          if (t === CANCEL_TAG && count >= 2) allowedUntil = j + 1;
          break;
        }
      }
    }
    if (i >= allowedUntil && isForbidden(cp)) return cp;
  }
  return null;
}

/** Why `text` cannot be sent as chat text (protocol.rs `TextError`), or null. */
export function textError(text, maxLen = MAX_TEXT_LEN) {
  const max = Math.min(maxLen, MAX_TEXT_LEN);
  if (text.length === 0) return 'empty message';
  const len = byteLength(text);
  if (len > max) return `message of ${len} bytes is over the limit of ${max} bytes`;
  const cp = findForbidden(text);
  if (cp === null) return null;
  if (isControl(cp)) return 'message holds a control character';
  return `message holds U+${cp.toString(16).toUpperCase().padStart(4, '0')}: characters that can break a line, reorder it or hide text are refused`;
}

/** Replaces forbidden characters with U+FFFD before showing text (text.rs `sanitize`). */
export function sanitize(text) {
  if (findForbidden(text) === null) return text;
  return Array.from(text, (c) => (isForbidden(c.codePointAt(0)) ? '\uFFFD' : c)).join('');
}
