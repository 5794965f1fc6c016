// The browser tests' harness: a real mm-server on 127.0.0.1 (port 0, a fresh data directory,
// certificates it makes itself), line-mode `mm` users as subprocesses, and Debian's Chromium
// driven by playwright-core. Nothing is mocked: the page is the one the server embeds.
//
// Binaries: $MM_SERVER_BIN and $MM_BIN, else target/debug/ of this repository (the test
// script builds them). The browser: $MM_CHROMIUM, else /usr/bin/chromium. A missing binary or
// browser fails the tests; nothing is skipped.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import {
  closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join as joinPath, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { decodeClient, decodeServer } from '../../web/src/protocol.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SERVER_BIN = process.env.MM_SERVER_BIN ?? joinPath(repo, 'target', 'debug', 'mm-server');
export const MM_BIN = process.env.MM_BIN ?? joinPath(repo, 'target', 'debug', 'mm');
export const CHROMIUM = process.env.MM_CHROMIUM ?? '/usr/bin/chromium';
/** Where a failing test leaves its screenshots. */
export const SCREENSHOTS = joinPath(repo, 'target', 'browser-screenshots');

function need(path, what) {
  if (!existsSync(path)) {
    throw new Error(`${what} not found at ${path}: run ./scripts/test (it installs and builds what the browser tests need)`);
  }
}

/** Lines of a child's stream, with a wait for one that matches. */
class Lines {
  constructor(stream, label) {
    this.lines = [];
    this.waiters = [];
    this.label = label;
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      partial += chunk;
      let nl;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        this.lines.push(line);
        for (const w of [...this.waiters]) w();
      }
    });
  }

  /** Resolves with the first line (from `from` on) matching `pattern`; rejects after `ms`. */
  waitFor(pattern, { ms = 15000, from = 0 } = {}) {
    const test = typeof pattern === 'string' ? (l) => l.includes(pattern) : (l) => pattern.test(l);
    return new Promise((resolveWait, reject) => {
      const check = () => {
        const found = this.lines.slice(from).find(test);
        if (found !== undefined) {
          this.waiters = this.waiters.filter((w) => w !== check);
          clearTimeout(timer);
          resolveWait(found);
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`${this.label}: no line matching ${pattern} within ${ms} ms; got:\n${this.lines.join('\n')}`));
      }, ms);
      if (!check()) this.waiters.push(check);
    });
  }

  get length() {
    return this.lines.length;
  }
}

/** A running mm-server with its own data directory. */
export class Server {
  /** `config`: the text of an mm-server config file (TOML), e.g. higher rate limits. */
  static async start({ config = null } = {}) {
    need(SERVER_BIN, 'mm-server');
    const dir = mkdtempSync(joinPath(tmpdir(), 'mm-browser-'));
    const data = joinPath(dir, 'server');
    const args = ['--bind', '127.0.0.1:0'];
    if (config !== null) {
      const file = joinPath(dir, 'mm-server.toml');
      writeFileSync(file, config);
      args.push('--config', file);
    }
    const child = spawn(SERVER_BIN, args, {
      env: { ...process.env, MM_SERVER_DATA: data, NO_COLOR: '1', RUST_LOG: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const server = new Server(child, dir, data);
    server.args = args;
    const line = await server.log.waitFor(/listening local=127\.0\.0\.1:\d+/, { ms: 30000 });
    server.port = Number(line.match(/local=127\.0\.0\.1:(\d+)/)[1]);
    server.url = `https://localhost:${server.port}/`;
    return server;
  }

  /** Stops the server process only (its users stay; clients see the connection drop). */
  async down() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    const late = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(late);
  }

  /** Starts the server again after `down()`: the same data (CA, accounts, mailboxes), port and
   *  address, so clients reconnect to it. */
  async up() {
    const args = this.args.map((a) => (a === '127.0.0.1:0' ? `127.0.0.1:${this.port}` : a));
    this.child = spawn(SERVER_BIN, args, {
      env: { ...process.env, MM_SERVER_DATA: this.data, NO_COLOR: '1', RUST_LOG: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.log = new Lines(this.child.stderr, 'mm-server');
    new Lines(this.child.stdout, 'mm-server stdout');
    await this.log.waitFor(/listening local=127\.0\.0\.1:\d+/, { ms: 30000 });
  }

  constructor(child, dir, data) {
    this.child = child;
    this.dir = dir;
    this.data = data;
    this.ca = joinPath(data, 'tls', 'ca.pem');
    this.log = new Lines(child.stderr, 'mm-server');
    new Lines(child.stdout, 'mm-server stdout');
    this.users = [];
  }

  /** Chromium's `--ignore-certificate-errors-spki-list` value: this server's key, pinned
   *  (base64 of the SHA-256 of its SubjectPublicKeyInfo), so the browser accepts exactly this
   *  server's certificate and no other. */
  spki() {
    const cert = new X509Certificate(readFileSync(joinPath(this.data, 'tls', 'server.pem')));
    const der = cert.publicKey.export({ type: 'spki', format: 'der' });
    return createHash('sha256').update(der).digest('base64');
  }

  /** The server process's id. */
  get pid() {
    return this.child.pid;
  }

  /** The home directory `mm(nick)` uses (the same for every start of that nick: its identity,
   *  pins, sessions and login certificate). */
  home(nick) {
    return joinPath(this.dir, `home-${nick}`);
  }

  /** A line-mode `mm` user logged in as `nick`; resolves once connected. */
  async mm(nick) {
    need(MM_BIN, 'mm');
    const home = this.home(nick);
    const child = spawn(
      MM_BIN,
      ['--server', `127.0.0.1:${this.port}`, '--ca', this.ca, '--nick', nick, '--home', home, '--line-mode'],
      { env: { ...process.env, NO_COLOR: '1', MM_SERVER: '', MM_NICK: '' }, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const user = new MmUser(nick, child);
    this.users.push(user);
    await user.out.waitFor(`connected to 127.0.0.1:${this.port} as ${nick}`, { ms: 30000 });
    return user;
  }

  /** Stops the users and the server (SIGTERM, SIGKILL after 5 s) and keeps its data
   *  directory (`this.data`) to look at. */
  async halt() {
    for (const u of this.users) u.kill();
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    let timer;
    const late = new Promise((r) => {
      timer = setTimeout(() => r('late'), 5000);
    });
    if ((await Promise.race([exited, late])) === 'late') {
      this.child.kill('SIGKILL');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    }
    clearTimeout(timer);
  }

  async stop() {
    await this.halt();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A line-mode mm user: type lines, wait for output. */
export class MmUser {
  constructor(nick, child) {
    this.nick = nick;
    this.child = child;
    this.out = new Lines(child.stdout, `mm ${nick}`);
    this.err = new Lines(child.stderr, `mm ${nick} (stderr)`);
  }

  type(line) {
    this.child.stdin.write(`${line}\n`);
  }

  /** Waits for a line (stdout or stderr: mm prints warnings on stderr) matching `pattern`. */
  async sees(pattern, ms = 15000) {
    return Promise.any([this.out.waitFor(pattern, { ms }), this.err.waitFor(pattern, { ms })]).catch(
      () => {
        throw new Error(
          `mm ${this.nick}: nothing matching ${pattern} within ${ms} ms; stdout:\n${this.out.lines.join('\n')}\nstderr:\n${this.err.lines.join('\n')}`,
        );
      },
    );
  }

  /** Where each stream is now: `seesAfter(mark, …)` looks only at lines printed after it. */
  mark() {
    return { out: this.out.length, err: this.err.length };
  }

  /** Like `sees`, for lines printed after `mark` (from `mark()`). */
  async seesAfter(mark, pattern, ms = 15000) {
    return Promise.any([
      this.out.waitFor(pattern, { ms, from: mark.out }),
      this.err.waitFor(pattern, { ms, from: mark.err }),
    ]).catch(() => {
      throw new Error(
        `mm ${this.nick}: nothing matching ${pattern} within ${ms} ms after line ${mark.out}; stdout:\n${this.out.lines.join('\n')}\nstderr:\n${this.err.lines.join('\n')}`,
      );
    });
  }

  /** Every line (stdout and stderr) printed after `mark` that matches `pattern`. */
  linesAfter(mark, pattern) {
    const test = typeof pattern === 'string' ? (l) => l.includes(pattern) : (l) => pattern.test(l);
    return [...this.out.lines.slice(mark.out), ...this.err.lines.slice(mark.err)].filter(test);
  }

  /** `/quit`: resolves once mm has exited (SIGKILL after `ms`), releasing its home. */
  async quit(ms = 15000) {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.type('/quit');
    let timer;
    const late = new Promise((r) => {
      timer = setTimeout(() => r('late'), ms);
    });
    const how = await Promise.race([exited, late]);
    clearTimeout(timer);
    if (how === 'late') {
      this.kill();
      await exited;
      throw new Error(`mm ${this.nick} did not exit within ${ms} ms of /quit`);
    }
  }

  kill() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/**
 * Every WebSocket frame `page` sends and receives from now on (attach before `goto`), as bytes,
 * with the protocol messages they decode to (`null` for a frame that does not decode).
 * Shape: `{ sent: [{ bytes: Buffer, msg }], received: [{ bytes: Buffer, msg }] }`.
 */
export function recordFrames(page, into = { sent: [], received: [] }) {
  const bytes = (payload) => (typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload));
  const decoded = (decode, b) => {
    try {
      return decode(new Uint8Array(b));
    } catch {
      return null;
    }
  };
  page.on('websocket', (ws) => {
    ws.on('framesent', ({ payload }) => {
      const b = bytes(payload);
      into.sent.push({ bytes: b, msg: decoded(decodeClient, b) });
    });
    ws.on('framereceived', ({ payload }) => {
      const b = bytes(payload);
      into.received.push({ bytes: b, msg: decoded(decodeServer, b) });
    });
  });
  return into;
}

/** Whether any of `frames` (from `recordFrames`) holds `word` as UTF-8 bytes. */
export function framesHold(frames, word) {
  const needle = Buffer.from(word, 'utf8');
  return [...frames.sent, ...frames.received].some((f) => f.bytes.includes(needle));
}

/**
 * Which of `words` (as UTF-8 bytes) are in a file under `dir` (recursively; every file whole:
 * SQLite's database, -wal and -shm included). Returns `{ found: Set<word>, files, bytes }`.
 */
export function grepDir(dir, words) {
  const needles = words.map((w) => [w, Buffer.from(w, 'utf8')]);
  const found = new Set();
  let files = 0;
  let bytes = 0;
  const walk = (d) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = joinPath(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) {
        const data = readFileSync(path);
        files += 1;
        bytes += data.length;
        for (const [w, n] of needles) if (data.includes(n)) found.add(w);
      }
    }
  };
  walk(dir);
  return { found, files, bytes };
}

/** Finds `needles` (Buffers) in `read(buffer, length, position)`'s bytes from `start` to `end`,
 *  1 MiB at a time (overlapping so that nothing across a boundary is missed). */
function scanRange(read, start, end, needles, found, chunk) {
  const overlap = Math.max(...needles.map(([, n]) => n.length)) - 1;
  let at = start;
  while (at < end) {
    const want = Math.min(chunk.length, end - at);
    const got = read(chunk, want, at);
    if (got <= 0) break;
    const view = chunk.subarray(0, got);
    for (const [w, n] of needles) if (!found.has(w) && view.includes(n)) found.add(w);
    if (at + got >= end) break;
    at += Math.max(1, got - overlap);
  }
}

/**
 * Which of `words` (as UTF-8 bytes) are anywhere in process `pid`'s readable memory. Reads
 * /proc/PID/maps and /proc/PID/mem (allowed to a parent: the tests start the server); where the
 * kernel refuses that (Yama's ptrace_scope), or with $MM_SCAN_WITH_GCORE=1, writes a core file
 * with gdb's `gcore` and scans it.
 * Returns `{ found: Set<word>, bytes, how: 'proc' | 'gcore' }`; throws if neither works.
 */
export function scanMemory(pid, words) {
  const needles = words.map((w) => [w, Buffer.from(w, 'utf8')]);
  const found = new Set();
  const chunk = Buffer.alloc(1 << 20);
  if (process.env.MM_SCAN_WITH_GCORE === '1') return scanCore(pid, needles, found, chunk, new Error('MM_SCAN_WITH_GCORE=1'));
  let fd;
  try {
    fd = openSync(`/proc/${pid}/mem`, 'r');
  } catch (e) {
    if (e.code !== 'EACCES' && e.code !== 'EPERM') throw e;
    return scanCore(pid, needles, found, chunk, e);
  }
  let bytes = 0;
  let refused = 0;
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const m = line.match(/^([0-9a-f]+)-([0-9a-f]+) (\S{4})\s+\S+\s+\S+\s+\S+\s*(.*)$/);
      if (!m || m[3][0] !== 'r' || /^\[(vvar|vvar_vclock|vsyscall)\]$/.test(m[4])) continue;
      const start = parseInt(m[1], 16);
      const end = parseInt(m[2], 16);
      try {
        scanRange((buf, n, at) => readSync(fd, buf, 0, n, at), start, end, needles, found, chunk);
        bytes += end - start;
      } catch (e) {
        if (e.code !== 'EIO' && e.code !== 'EACCES' && e.code !== 'EPERM') throw e;
        refused += 1;
      }
    }
  } finally {
    closeSync(fd);
  }
  if (bytes === 0) return scanCore(pid, needles, found, chunk, new Error(`every region refused (${refused})`));
  return { found, bytes, how: 'proc' };
}

function scanCore(pid, needles, found, chunk, why) {
  const dir = mkdtempSync(joinPath(tmpdir(), 'mm-core-'));
  try {
    const out = spawnSync('gcore', ['-o', joinPath(dir, 'core'), String(pid)], { encoding: 'utf8', timeout: 60000 });
    const file = joinPath(dir, `core.${pid}`);
    if (out.status !== 0 || !existsSync(file)) {
      throw new Error(`cannot read the memory of process ${pid}: /proc/${pid}/mem: ${why.message}; gcore (Debian package gdb): ${out.error?.message ?? out.stderr}`);
    }
    const size = statSync(file).size;
    const fd = openSync(file, 'r');
    try {
      scanRange((buf, n, at) => readSync(fd, buf, 0, n, at), 0, size, needles, found, chunk);
    } finally {
      closeSync(fd);
    }
    return { found, bytes: size, how: 'gcore' };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Headless Chromium trusting `server`'s certificate (by its key) and nothing else. */
export async function browser(server) {
  need(CHROMIUM, 'Chromium (Debian package chromium)');
  const b = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', // tests run as root in CI containers
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking', // the closed network refuses Chromium's own calls
      '--disable-component-update',
      '--disable-sync',
      `--ignore-certificate-errors-spki-list=${server.spki()}`,
    ],
  });
  // The page asks before leaving with lines not sent yet ("Leave site?"): a test that reloads or
  // closes then means to leave, as a user who confirms (Playwright would otherwise dismiss the
  // question, and the reload would never happen). Each page's questions are in `page.asked`.
  const newContext = b.newContext.bind(b);
  b.newContext = async (...args) => {
    const context = await newContext(...args);
    context.on('page', (page) => {
      page.asked = [];
      page.on('dialog', (d) => {
        page.asked.push(d.type());
        (d.type() === 'beforeunload' ? d.accept() : d.dismiss()).catch(() => {});
      });
    });
    return context;
  };
  return b;
}

/** Runs `body(page)`; on failure saves a screenshot of every page given to `pages()` in
 *  target/browser-screenshots/ and rethrows. */
export async function withScreenshots(name, pages, body) {
  try {
    await body();
  } catch (e) {
    mkdirSync(SCREENSHOTS, { recursive: true });
    let i = 0;
    for (const page of pages()) {
      const file = joinPath(SCREENSHOTS, `${name.replace(/[^a-z0-9]+/gi, '-')}-${i++}.png`);
      try {
        await page.screenshot({ path: file, fullPage: true });
        console.error(`screenshot: ${file}`);
      } catch (shotError) {
        console.error(`no screenshot (${shotError.message})`);
      }
    }
    throw e;
  }
}

// ---- what the tests do on the page (shared by chat.test.mjs and secure.test.mjs) ----

/** The longest any one thing on the page may take (wide: 2 shared cores, debug builds). */
export const WAIT = 20000;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check()` (truthy: done) every 100 ms for `ms`; throws `what()`'s words on timeout. */
export async function until(check, what, ms = WAIT) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await check();
    if (got) return got;
    if (Date.now() > deadline) throw new Error(`within ${ms} ms: ${await what()}`);
    await sleep(100);
  }
}

/** Opens `server`'s page and picks `nick` on the first visit; resolves once logged in. */
export async function join(page, server, nick) {
  await page.goto(server.url);
  await page.getByLabel('Nick', { exact: true }).fill(nick);
  await page.getByRole('button', { name: 'Join chat' }).click();
  await loggedIn(page, nick);
}

/** Resolves once the page shows the message box and says it is logged in as `nick`. */
export async function loggedIn(page, nick) {
  await page.getByLabel('Message', { exact: true }).waitFor({ timeout: WAIT });
  await page.getByRole('status').filter({ hasText: `as ${nick}` }).first().waitFor({ timeout: WAIT });
}

/** Types `text` in the message box and sends it (Enter). */
export async function say(page, text) {
  const box = page.getByLabel('Message', { exact: true });
  await box.fill(text);
  await box.press('Enter');
}

/** Opens the conversation `name` (a room or a nick) from the sidebar. */
export async function open(page, name) {
  await page
    .getByRole('navigation', { name: 'Conversations' })
    .getByRole('button', { name: new RegExp(`^${name.replace(/[#]/g, '\\$&')}\\b`) })
    .first()
    .click({ timeout: WAIT });
}
