// A scripted stand-in for mm-server, to try the page without the Rust server: HTTPS serving
// dist/ with the real server's CSP, and a WebSocket at /ws speaking a small part of protocol 6
// (key login with signature check, lobby and rooms, private lines with Sent/Queued, Ping).
// Not a server: no limits, no storage, no rate limit. Dev only; never shipped.
//
//   node dev/mock-server.mjs CERT.pem KEY.pem [PORT]     (then https://localhost:PORT/)

import { createServer } from 'node:https';
import { readFileSync, existsSync } from 'node:fs';
import { createHash, createPublicKey, verify, randomBytes } from 'node:crypto';
import { join, dirname, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeServer, decodeClient, nickKey, roomKey } from '../src/protocol.js';
import { keyLoginMessage } from '../src/core.js';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, '..', 'dist');
const [cert, key, port = '8443'] = process.argv.slice(2);
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };

const accounts = new Map(); // nickKey → raw key hex
const online = new Map(); // nickKey → session
const mailbox = new Map(); // nickKey → [msg]
const rooms = new Map(); // roomKey → {name, members: Map nickKey→{nick, role}, topic, lines: []}
const lobbyLines = [];
let nextId = 1n;
const now = () => BigInt(Date.now());

const server = createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
  const path = req.url === '/' ? '/index.html' : req.url.split('?')[0];
  const file = join(dist, path);
  if (!file.startsWith(dist) || !existsSync(file)) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-security-policy': CSP, 'x-content-type-options': 'nosniff' });
  res.end(readFileSync(file));
});

server.on('upgrade', (req, socket) => {
  if (req.url !== '/ws' || `https://${req.headers.host}` !== req.headers.origin) {
    socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
    return;
  }
  const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  session(socket);
});

function frame(opcode, payload) {
  const len = payload.length;
  let head;
  if (len < 126) head = Buffer.from([0x80 | opcode, len]);
  else if (len < 65536) head = Buffer.from([0x80 | opcode, 126, len >> 8, len & 255]);
  else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, payload]);
}

function session(socket) {
  const s = { nick: null, key: null, nonce: null, buf: Buffer.alloc(0), rooms: new Set() };
  const send = (msg) => socket.writable && socket.write(frame(2, Buffer.from(encodeServer(msg))));
  s.send = send;
  const ping = setInterval(() => send({ type: 'Ping', token: now() }), 30_000);
  const close = () => {
    clearInterval(ping);
    if (s.nick && online.get(nickKey(s.nick)) === s) {
      online.delete(nickKey(s.nick));
      for (const o of online.values()) o.send({ type: 'Left', ts: now(), room: '#lobby', nick: s.nick, reason: 'Quit' });
    }
  };
  socket.on('close', close);
  socket.on('error', close);
  socket.on('data', (chunk) => {
    s.buf = Buffer.concat([s.buf, chunk]);
    for (;;) {
      if (s.buf.length < 2) return;
      const op = s.buf[0] & 15;
      let len = s.buf[1] & 127;
      let at = 2;
      if (len === 126) { len = s.buf.readUInt16BE(2); at = 4; }
      if (len === 127) { len = Number(s.buf.readBigUInt64BE(2)); at = 10; }
      if (s.buf.length < at + 4 + len) return;
      const mask = s.buf.subarray(at, at + 4);
      const data = Buffer.from(s.buf.subarray(at + 4, at + 4 + len));
      for (let i = 0; i < len; i++) data[i] ^= mask[i % 4];
      s.buf = s.buf.subarray(at + 4 + len);
      if (op === 8) { socket.end(frame(8, Buffer.alloc(0))); return; }
      if (op === 9) { socket.write(frame(10, data)); continue; }
      if (op !== 2) { send({ type: 'Error', code: 2, fatal: true, detail: 'text messages are not the protocol' }); socket.end(); return; }
      let msg;
      try { msg = decodeClient(new Uint8Array(data)); } catch (e) { send({ type: 'Error', code: 2, fatal: true, detail: e.message }); socket.end(); return; }
      handle(s, msg, socket);
    }
  });
}

function handle(s, msg, socket) {
  const send = s.send;
  const fatal = (code, detail) => { send({ type: 'Error', code, fatal: true, detail }); socket.end(); };
  if (!s.nick) {
    if (msg.type === 'KeyHello' && !s.nonce) {
      s.pending = msg;
      s.nonce = randomBytes(32);
      send({ type: 'Challenge', nonce: new Uint8Array(s.nonce) });
      return;
    }
    if (msg.type === 'KeyProof' && s.nonce) {
      const { nick, key } = s.pending;
      const jwk = { kty: 'EC', crv: 'P-256', x: Buffer.from(key.slice(1, 33)).toString('base64url'), y: Buffer.from(key.slice(33)).toString('base64url') };
      const ok = verify('sha256', keyLoginMessage(s.nonce, nick, key), { key: createPublicKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' }, msg.signature);
      if (!ok) return fatal(13, "the account key's proof does not verify");
      const hex = Buffer.from(key).toString('hex');
      const k = nickKey(nick);
      if (accounts.has(k) && accounts.get(k) !== hex) return fatal(12, `the nick ${nick} is registered to another key`);
      accounts.set(k, hex);
      const old = online.get(k);
      if (old) { old.send({ type: 'Error', code: 14, fatal: true, detail: 'you logged in on another connection' }); old.socket.end(); }
      s.nick = nick;
      s.socket = socket;
      online.set(k, s);
      send({ type: 'Welcome', nick, server: 'mock-server (web/dev)', online: online.size, max_text_len: 4096, rate_burst: 20, rate_per_sec: 5 });
      send({ type: 'Users', nicks: [...online.values()].map((o) => o.nick), last: true });
      for (const l of lobbyLines.slice(-20)) send({ type: 'History', ...l });
      for (const r of rooms.values()) {
        if (r.members.has(k)) { s.rooms.add(roomKey(r.name)); entered(s, r); }
      }
      for (const m of mailbox.get(k) ?? []) send(m);
      mailbox.delete(k);
      for (const o of online.values()) if (o !== s && !old) o.send({ type: 'Joined', ts: now(), room: '#lobby', nick });
      return;
    }
    return fatal(3, 'the first message must be Hello');
  }
  const k = nickKey(s.nick);
  switch (msg.type) {
    case 'Ping': return send({ type: 'Pong', token: msg.token });
    case 'Pong': case 'Received': return undefined;
    case 'Quit': socket.end(); return undefined;
    case 'Who': return send({ type: 'Users', nicks: [...online.values()].map((o) => o.nick), last: true });
    case 'Public': {
      const id = nextId++;
      const ts = now();
      if (roomKey(msg.room) === '#lobby') {
        lobbyLines.push({ id, ts, room: '#lobby', from: s.nick, text: msg.text, action: msg.action });
        send({ type: 'Sent', id, ts });
        for (const o of online.values()) if (o !== s) o.send({ type: 'Public', id, ts, room: '#lobby', from: s.nick, text: msg.text, action: msg.action });
        return undefined;
      }
      const r = rooms.get(roomKey(msg.room));
      if (!r) return send({ type: 'Error', code: 40, fatal: false, detail: `no room ${msg.room}` });
      if (!r.members.has(k)) return send({ type: 'Error', code: 42, fatal: false, detail: 'you are not in that room: /join it first' });
      r.lines.push({ id, ts, room: r.name, from: s.nick, text: msg.text, action: msg.action });
      send({ type: 'Sent', id, ts });
      for (const m of r.members.keys()) if (m !== k) online.get(m)?.send({ type: 'Public', id, ts, room: r.name, from: s.nick, text: msg.text, action: msg.action });
      return undefined;
    }
    case 'Private': {
      const to = nickKey(msg.to);
      const id = nextId++;
      const ts = now();
      if (online.has(to)) {
        send({ type: 'Sent', id, ts });
        online.get(to).send({ type: 'Private', id, ts, from: s.nick, text: msg.text });
      } else if (accounts.has(to)) {
        send({ type: 'Queued', id, ts });
        mailbox.set(to, [...(mailbox.get(to) ?? []), { type: 'Offline', id, ts, from: s.nick, text: msg.text }]);
      } else {
        send({ type: 'Error', code: 20, fatal: false, detail: `no user ${msg.to}` });
      }
      return undefined;
    }
    case 'Join': {
      if (roomKey(msg.room) === '#lobby') { send({ type: 'Entered', room: '#lobby', topic: '', topic_by: '', topic_ts: 0n, modes: { invite_only: false, topic_ops: false, moderated: false }, members: online.size, role: 'Member', seen: 0n, created: false }); return undefined; }
      let r = rooms.get(roomKey(msg.room));
      const created = !r;
      if (!r) { r = { name: msg.room, members: new Map(), topic: '', lines: [] }; rooms.set(roomKey(msg.room), r); }
      const fresh = !r.members.has(k);
      r.members.set(k, r.members.get(k) ?? { nick: s.nick, role: created ? 'Owner' : 'Member' });
      entered(s, r, created, true);
      if (fresh && !created) for (const m of r.members.keys()) if (m !== k) online.get(m)?.send({ type: 'Joined', ts: now(), room: r.name, nick: s.nick });
      return undefined;
    }
    case 'Part': {
      const r = rooms.get(roomKey(msg.room));
      if (!r || !r.members.has(k)) return send({ type: 'RoomError', room: msg.room, code: 42, detail: 'you are not in that room' });
      for (const m of r.members.keys()) online.get(m)?.send({ type: 'Parted', ts: now(), room: r.name, nick: s.nick, reason: msg.reason });
      r.members.delete(k);
      return undefined;
    }
    case 'Topic': {
      const r = rooms.get(roomKey(msg.room));
      if (!r) return send({ type: 'RoomError', room: msg.room, code: 40, detail: 'no such room' });
      if (msg.topic === null) return send({ type: 'Topic', ts: 0n, room: r.name, by: '', topic: r.topic });
      r.topic = msg.topic;
      for (const m of r.members.keys()) online.get(m)?.send({ type: 'Topic', ts: now(), room: r.name, by: s.nick, topic: msg.topic });
      return undefined;
    }
    case 'Names': {
      const r = rooms.get(roomKey(msg.room));
      if (!r) return send({ type: 'RoomError', room: msg.room, code: 40, detail: 'no such room' });
      return send({ type: 'Names', room: r.name, members: members(r), last: true });
    }
    case 'List':
      return send({ type: 'Rooms', rooms: [...rooms.values()].map((r) => ({ name: r.name, members: r.members.size, topic: r.topic })), next: '' });
    case 'Away':
      return send({ type: 'Away', nick: s.nick, message: msg.message });
    case 'Monitor':
      for (const n of msg.nicks) send({ type: 'Presence', nick: n, online: online.has(nickKey(n)) });
      return undefined;
    default:
      return send({ type: 'RoomError', room: msg.room ?? '', code: 99, detail: `the mock server does not do ${msg.type}` });
  }
}

function members(r) {
  return [...r.members.entries()].map(([m, v]) => ({ nick: v.nick, role: v.role, online: online.has(m), away: false }));
}

function entered(s, r, created = false, join = false) {
  const me = r.members.get(nickKey(s.nick));
  s.send({ type: 'Entered', room: r.name, topic: r.topic, topic_by: '', topic_ts: 0n, modes: { invite_only: false, topic_ops: false, moderated: false }, members: r.members.size, role: me.role, seen: 0n, created });
  if (join) s.send({ type: 'Names', room: r.name, members: members(r), last: true });
  for (const l of r.lines.slice(-20)) s.send({ type: 'History', ...l });
}

server.listen(Number(port), () => console.log(`mock server: https://localhost:${port}/`));
