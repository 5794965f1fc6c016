// The browser tests' harness: a real mm-server on 127.0.0.1 (port 0, a fresh data directory,
// certificates it makes itself), line-mode `mm` users as subprocesses, and Debian's Chromium
// driven by playwright-core. Nothing is mocked: the page is the one the server embeds.
//
// Binaries: $MM_SERVER_BIN and $MM_BIN, else target/debug/ of this repository (the test
// script builds them). The browser: $MM_CHROMIUM, else /usr/bin/chromium. A missing binary or
// browser fails the tests; nothing is skipped.
import { spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SERVER_BIN = process.env.MM_SERVER_BIN ?? join(repo, 'target', 'debug', 'mm-server');
export const MM_BIN = process.env.MM_BIN ?? join(repo, 'target', 'debug', 'mm');
export const CHROMIUM = process.env.MM_CHROMIUM ?? '/usr/bin/chromium';
/** Where a failing test leaves its screenshots. */
export const SCREENSHOTS = join(repo, 'target', 'browser-screenshots');

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
    const dir = mkdtempSync(join(tmpdir(), 'mm-browser-'));
    const data = join(dir, 'server');
    const args = ['--bind', '127.0.0.1:0'];
    if (config !== null) {
      const file = join(dir, 'mm-server.toml');
      writeFileSync(file, config);
      args.push('--config', file);
    }
    const child = spawn(SERVER_BIN, args, {
      env: { ...process.env, MM_SERVER_DATA: data, NO_COLOR: '1', RUST_LOG: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const server = new Server(child, dir, data);
    const line = await server.log.waitFor(/listening local=127\.0\.0\.1:\d+/, { ms: 30000 });
    server.port = Number(line.match(/local=127\.0\.0\.1:(\d+)/)[1]);
    server.url = `https://localhost:${server.port}/`;
    return server;
  }

  constructor(child, dir, data) {
    this.child = child;
    this.dir = dir;
    this.data = data;
    this.ca = join(data, 'tls', 'ca.pem');
    this.log = new Lines(child.stderr, 'mm-server');
    new Lines(child.stdout, 'mm-server stdout');
    this.users = [];
  }

  /** Chromium's `--ignore-certificate-errors-spki-list` value: this server's key, pinned
   *  (base64 of the SHA-256 of its SubjectPublicKeyInfo), so the browser accepts exactly this
   *  server's certificate and no other. */
  spki() {
    const cert = new X509Certificate(readFileSync(join(this.data, 'tls', 'server.pem')));
    const der = cert.publicKey.export({ type: 'spki', format: 'der' });
    return createHash('sha256').update(der).digest('base64');
  }

  /** A line-mode `mm` user logged in as `nick`; resolves once connected. */
  async mm(nick) {
    need(MM_BIN, 'mm');
    const home = join(this.dir, `home-${nick}`);
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

  async stop() {
    for (const u of this.users) u.kill();
    this.child.kill('SIGTERM');
    await new Promise((r) => {
      if (this.child.exitCode !== null) return r();
      this.child.once('exit', r);
      setTimeout(r, 5000);
    });
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

  kill() {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/** Headless Chromium trusting `server`'s certificate (by its key) and nothing else. */
export async function browser(server) {
  need(CHROMIUM, 'Chromium (Debian package chromium)');
  return chromium.launch({
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
      const file = join(SCREENSHOTS, `${name.replace(/[^a-z0-9]+/gi, '-')}-${i++}.png`);
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
