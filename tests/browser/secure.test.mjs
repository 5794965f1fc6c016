// End-to-end encryption between the web page and line-mode mm, through a real mm-server:
// private lines both ways online and offline, nothing readable on the wire (the page's
// WebSocket frames), on the server's disk or in its memory, equal safety numbers, key changes
// that block on either side, sessions that survive a reload, and two tabs that never fork one
// account's sessions. What the tests read of the page (issue 20): `#security` with its
// `data-state` (plain, ready, starting, secure, verified, changed, blocked) and words, log lines
// with the class `secure`, and the `Safety number with NICK: ` notice. See harness.mjs.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join as path } from 'node:path';
import { describe, test } from 'node:test';
import {
  browser, framesHold, grepDir, join, loggedIn, open, recordFrames, say, scanMemory, Server, sleep, until, WAIT,
  withScreenshots,
} from './harness.mjs';
import { decodeClient, decodeServer } from '../../web/src/protocol.js';

/** How long to watch for something that must NOT happen. */
const QUIET_MS = 1500;
/** Each test's limit (the brief: about a minute). */
const LIMIT = { timeout: 90000 };

/** A word nothing else holds, for looking for it later. */
const unique = (what) => `${what}${randomBytes(6).toString('hex')}`;

/** A server, a browser trusting it, and what to close after `t`. */
async function world(t) {
  const server = await Server.start();
  const chromium = await browser(server);
  const pages = [];
  t.after(async () => {
    await chromium.close().catch(() => {});
    await server.stop();
  });
  /** A new browser profile (its own IndexedDB: its own accounts) with its frames recorded. */
  const visitor = async () => {
    const context = await chromium.newContext();
    const page = await context.newPage();
    pages.push(page);
    const frames = recordFrames(page);
    return { context, page, frames };
  };
  /** Another tab of `context`, frames recorded into `frames`. */
  const tab = async (context, frames) => {
    const page = await context.newPage();
    pages.push(page);
    recordFrames(page, frames);
    return page;
  };
  return { server, chromium, pages, visitor, tab };
}

/** The log line (an `li` of a `log`) holding `text`. */
async function lineOf(page, text) {
  const li = page.locator('[role=log] li').filter({ hasText: text }).first();
  await li.waitFor({ timeout: WAIT });
  return li;
}

/** Waits until the line holding `text` has every class in `classes`. */
async function lineHas(page, text, ...classes) {
  const li = await lineOf(page, text);
  let seen = '';
  await until(
    async () => {
      seen = (await li.getAttribute('class')) ?? '';
      const have = seen.split(/\s+/);
      return classes.every((c) => have.includes(c));
    },
    () => `the line "${text}" has the classes "${seen}", not all of ${classes.join(', ')}`,
  );
  return li;
}

/** Waits until `#security` says `state` (data-state) with text starting with `words`. */
async function security(page, state, words) {
  let seen = null;
  await until(
    async () => {
      seen = await page.evaluate(() => {
        const el = document.querySelector('#security');
        return el ? { state: el.dataset.state ?? null, text: el.textContent.trim(), hidden: !el.checkVisibility() } : null;
      });
      return seen && seen.state === state && !seen.hidden && seen.text.startsWith(words);
    },
    () => `#security is ${JSON.stringify(seen)}, not data-state ${state} with "${words}…"`,
  );
}

/** The log's whole text now (every conversation's log). */
async function logText(page) {
  return page.evaluate(() => [...document.querySelectorAll('[role=log]')].map((l) => l.textContent).join('\n'));
}

/** Protocol messages recorded since index `from` (`frames.sent.length` taken earlier). */
const sentSince = (frames, from) => frames.sent.slice(from).map((f) => f.msg).filter(Boolean);
const receivedSince = (frames, from) => frames.received.slice(from).map((f) => f.msg).filter(Boolean);

/** Waits until the page has published end-to-end keys the server stored (a KeysPublished came
 *  back after the recorded frame `from`); returns the identity key of the last PublishKeys. */
async function published(frames, from = 0) {
  await until(
    () => receivedSince(frames, from).some((m) => m.type === 'KeysPublished'),
    () => `no KeysPublished; the page sent ${sentSince(frames, from).map((m) => m.type).join(' ')}; got ${receivedSince(frames, from).map((m) => m.type).join(' ')}`,
  );
  const uploads = sentSince(frames, from).filter((m) => m.type === 'PublishKeys');
  assert.ok(uploads.length > 0, 'KeysPublished without a PublishKeys');
  return Buffer.from(uploads.at(-1).keys.identity).toString('hex');
}

/** Asserts the page sent `text` to `peer` as end-to-end ciphertext: a Relay went to `peer`
 *  and no frame holds the text. The recorded frames come from Playwright's events, which can
 *  reach the test after mm already printed the line: waited for, within WAIT. */
async function wentEncrypted(frames, peer, text, from = 0) {
  await until(
    () => sentSince(frames, from).some((m) => m.type === 'Relay' && m.to === peer),
    () => `no Relay to ${peer}; sent: ${sentSince(frames, from).map((m) => m.type).join(' ')}`,
  );
  const sent = sentSince(frames, from);
  assert.ok(!sent.some((m) => m.type === 'Private'), 'a plain Private went');
  assert.ok(!framesHold(frames, text), `"${text}" is readable in a WebSocket frame`);
}

/** Waits until `nick`'s end-to-end keys are in the server's directory: a `keyprobe` mm user
 *  asks for them (`/secure NICK`) until a session can start from them. */
async function keysOf(server, nick) {
  const probe = await server.mm('keyprobe');
  try {
    await until(
      async () => {
        const mark = probe.mark();
        probe.type(`/secure ${nick}`);
        const line = await probe.seesAfter(mark, new RegExp(`secure session with ${nick} ready|${nick} has no end-to-end keys|${nick}.*already|could not start`));
        return /session with \S+ ready|already up/.test(line);
      },
      () => `${nick}'s keys never reached the directory`,
    );
  } finally {
    await probe.quit();
  }
}

/** wendy (the page, in the conversation with max) and max (mm) exchange one line each way,
 *  both end-to-end; returns the texts. */
async function exchange(page, frames, max, tag) {
  const fromPage = unique(`${tag}-from-page-`);
  const fromMm = unique(`${tag}-from-mm-`);
  const before = frames.sent.length;
  await say(page, `/msg max ${fromPage}`);
  await open(page, 'max');
  await max.sees(`[secure] <wendy> ${fromPage}`);
  await wentEncrypted(frames, 'max', fromPage, before);
  await lineHas(page, fromPage, 'secure');
  max.type(`/msg wendy ${fromMm}`);
  await lineHas(page, fromMm, 'secure');
  assert.ok(!framesHold(frames, fromMm), `"${fromMm}" is readable in a WebSocket frame`);
  return { fromPage, fromMm };
}

/** Lines mm printed that say a message could not be read, came twice, or was refused. */
function mmTrouble(max, mark) {
  return max.linesAfter(mark, /could not be decrypted|came again|CHANGED|failed|blocked/);
}

describe('end-to-end between the page and mm', () => {
  test('online, both ways: the page encrypts by default and shows mm\'s answer as secure', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('secure-online', () => w.pages, async () => {
      const max = await w.server.mm('max');
      const { page, frames } = await w.visitor();
      await join(page, w.server, 'wendy');
      await max.sees('wendy joined');
      const hello = unique('hello-');
      await say(page, `/msg max ${hello}`);
      await max.sees(/wendy started a secure session/);
      await max.sees(`[secure] <wendy> ${hello}`);
      await wentEncrypted(frames, 'max', hello);
      await open(page, 'max');
      await lineHas(page, hello, 'secure');
      const answer = unique('answer-');
      max.type(`/msg wendy ${answer}`);
      const li = await lineHas(page, answer, 'secure');
      assert.ok(!(await li.getAttribute('class')).split(/\s+/).includes('plain'), 'a secure line is also marked plain');
      await security(page, 'secure', 'SECURE');
      assert.ok(!framesHold(frames, answer), 'mm\'s answer is readable in a WebSocket frame');
    });
  });

  test('offline start, mm offline: the page\'s line is queued and mm reads it at its next login', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('secure-offline-mm', () => w.pages, async () => {
      const first = await w.server.mm('max');
      await keysOf(w.server, 'max');
      await first.quit();
      const { page, frames } = await w.visitor();
      await join(page, w.server, 'wendy');
      const text = unique('while-you-were-out-');
      await say(page, `/msg max ${text}`);
      await open(page, 'max');
      await lineHas(page, text, 'secure', 'queued');
      await wentEncrypted(frames, 'max', text);
      const max = await w.server.mm('max');
      await max.sees(`[secure] <wendy> ${text}`);
      const mark = { out: 0, err: 0 };
      assert.deepEqual(mmTrouble(max, mark), []);
    });
  });

  test('offline start, page closed: mm\'s line is shown secure when the page opens again', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('secure-offline-page', () => w.pages, async () => {
      const max = await w.server.mm('max');
      const { context, page, frames } = await w.visitor();
      await join(page, w.server, 'wendy');
      await max.sees('wendy joined');
      await published(frames);
      await page.close();
      await max.sees('wendy left');
      const text = unique('for-later-');
      max.type(`/msg wendy ${text}`);
      await max.sees('queued end-to-end encrypted for wendy (offline)');
      const again = await w.tab(context, frames);
      await again.goto(w.server.url);
      await loggedIn(again, 'wendy');
      await open(again, 'max');
      await lineHas(again, text, 'secure');
      await security(again, 'secure', 'SECURE');
      assert.ok(!framesHold(frames, text), 'mm\'s line is readable in a WebSocket frame');
    });
  });

  test('no plaintext on the wire, on the server\'s disk or in its memory; plain room lines are (the scans work)', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('secure-no-plaintext', () => w.pages, async () => {
      const max = await w.server.mm('max');
      const { page, frames } = await w.visitor();
      await join(page, w.server, 'wendy');
      await max.sees('wendy joined');
      const secretOut = unique('zebrasecretout');
      const secretIn = unique('zebrasecretin');
      const controlOut = unique('zebracontrolout');
      const controlIn = unique('zebracontrolin');
      await say(page, `/msg max ${secretOut}`);
      await max.sees(`[secure] <wendy> ${secretOut}`);
      await open(page, 'max');
      max.type(`/msg wendy ${secretIn}`);
      await lineHas(page, secretIn, 'secure');
      await open(page, '#lobby');
      await say(page, controlOut);
      await max.sees(`<wendy> ${controlOut}`);
      max.type(controlIn);
      await lineOf(page, controlIn);
      const secrets = [secretOut, secretIn];
      const controls = [controlOut, controlIn];

      // The page's WebSocket, both directions: the controls are there, the secrets are not.
      assert.ok(frames.sent.length > 0 && frames.received.length > 0, 'no frames recorded');
      for (const c of controls) assert.ok(framesHold(frames, c), `the frame capture missed the plain room line ${c}`);
      for (const s of secrets) assert.ok(!framesHold(frames, s), `${s} is readable in a WebSocket frame`);

      // The running server's memory.
      const memory = scanMemory(w.server.pid, [...secrets, ...controls]);
      t.diagnostic(`server memory scanned: ${(memory.bytes / 2 ** 20).toFixed(0)} MiB via ${memory.how === 'proc' ? '/proc/PID/mem' : 'gcore'}`);
      for (const c of controls) assert.ok(memory.found.has(c), `the memory scan did not find the plain room line ${c}`);
      for (const s of secrets) assert.ok(!memory.found.has(s), `${s} is in the server's memory`);

      // Its log.
      const log = w.server.log.lines.join('\n');
      for (const s of [...secrets, ...controls]) assert.ok(!log.includes(s), `${s} is in the server's log`);

      // Everything it keeps on disk, while it runs (a -wal not yet checkpointed) and once
      // stopped (SQLite's database, -wal, -shm).
      const live = grepDir(w.server.data, [...secrets, ...controls]);
      for (const s of secrets) assert.ok(!live.found.has(s), `${s} is in the running server's data directory`);
      await w.server.halt();
      const disk = grepDir(w.server.data, [...secrets, ...controls]);
      t.diagnostic(`server data: ${live.files} files, ${live.bytes} bytes running; ${disk.files} files, ${disk.bytes} bytes stopped`);
      for (const c of controls) assert.ok(disk.found.has(c), `the data directory scan did not find the plain room line ${c}`);
      for (const s of secrets) assert.ok(!disk.found.has(s), `${s} is in the server's data directory`);
    });
  });

  test('/verify shows the same safety number in the page and in mm', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('secure-verify', () => w.pages, async () => {
      const max = await w.server.mm('max');
      const { page, frames } = await w.visitor();
      await join(page, w.server, 'wendy');
      await exchange(page, frames, max, 'verify');
      await say(page, '/verify max');
      const li = await lineOf(page, 'Safety number with max: ');
      const pageText = await li.locator('.text').textContent();
      const inPage = pageText.match(/Safety number with max: ([0-9][0-9 ]*[0-9])/)?.[1];
      assert.ok(inPage, `no digits in "${pageText}"`);
      max.type('/verify wendy');
      const mmLine = await max.sees(/safety number with wendy: /);
      const inMm = mmLine.match(/safety number with wendy: ([0-9][0-9 ]*[0-9])/)?.[1];
      assert.ok(inMm, `no digits in "${mmLine}"`);
      assert.equal(inMm.replace(/ /g, '').length, 60, `mm's number is not 60 digits: ${inMm}`);
      assert.equal(inPage, inMm, 'the page and mm show different safety numbers');
    });
  });

  test('the page loses its keys (site data deleted): a line to the old key is not shown and the page tells mm, which is blocked at once (KEY CHANGED), holds the page\'s lines, sends nothing until /accept-key, then says how many to send again', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('secure-page-key-changed', () => w.pages, async () => {
      const max = await w.server.mm('max');
      const { page, frames } = await w.visitor();
      await join(page, w.server, 'wendy');
      // A new account's first keys: said as made, not as deleted.
      await lineOf(page, 'created your end-to-end identity key in this browser');
      const oldKey = await published(frames);
      await exchange(page, frames, max, 'before');
      const deleted = await page.evaluate(
        () => new Promise((resolve) => {
          const req = indexedDB.deleteDatabase('mm-web-e2e');
          req.onsuccess = () => resolve('deleted');
          req.onerror = () => resolve(`error ${req.error}`);
          req.onblocked = () => resolve('blocked'); // deleted once this page lets go of it
        }),
      );
      assert.ok(deleted === 'deleted' || deleted === 'blocked', `deleteDatabase: ${deleted}`);
      const from = frames.sent.length;
      const fromReceived = frames.received.length;
      await page.reload();
      await loggedIn(page, 'wendy');
      const newKey = await published(frames, fromReceived);
      assert.notEqual(newKey, oldKey, 'the page published its old identity after its record was deleted');
      // Said plainly: deleted (not "another tab took over"), new keys made, a key change for others.
      await lineOf(page, 'The end-to-end keys were deleted from this browser');
      await lineOf(page, 'new keys were made');
      assert.doesNotMatch(await logText(page), /another tab/i);
      assert.ok(sentSince(frames, from).some((m) => m.type === 'PublishKeys'));

      // mm cannot know yet: its next line goes on the old session, which the page no longer
      // has. The page says so and shows nothing of it.
      const mark = max.mark();
      const lost = unique('to-the-old-key-');
      max.type(`/msg wendy ${lost}`);
      await open(page, 'max');
      await lineOf(page, 'could not be decrypted');
      assert.ok(!(await logText(page)).includes(lost), 'the page showed a line sent to its old key');
      // The page tells mm, end-to-end, under its new key (no text of the user's): mm is blocked
      // at once, before the page writes anything, and holds the notice.
      await max.seesAfter(mark, "WARNING: wendy's key has CHANGED");
      await max.seesAfter(mark, '1 message from wendy under the new key is held until you compare safety numbers (/verify wendy) and /accept-key wendy');

      // The page writes with its new key: mm holds it too and shows nothing.
      const withNewKey = unique('new-key-');
      await say(page, `/msg max ${withNewKey}`);
      // Held, not lost: mm says so at once.
      await max.seesAfter(mark, '2 messages from wendy under the new key are held until you compare safety numbers (/verify wendy) and /accept-key wendy');
      // mm's next line is refused, and nothing goes to the page.
      const seenBefore = frames.received.length;
      const refused = unique('must-not-go-');
      max.type(`/msg wendy ${refused}`);
      await max.seesAfter(mark, "wendy's key changed and nothing was sent");
      await sleep(QUIET_MS);
      assert.deepEqual(max.linesAfter(mark, withNewKey), [], 'mm showed a line from the unaccepted key');
      assert.ok(!(await logText(page)).includes(refused), 'the refused line reached the page');
      assert.ok(
        !receivedSince(frames, seenBefore).some((m) => m.type === 'Relay'),
        'a Relay reached the page after mm refused to send',
      );

      // Both compare the NEW key's safety number, max accepts it, and they talk again.
      await open(page, 'max');
      await say(page, '/verify max');
      const li = await lineOf(page, 'Safety number with max: ');
      const inPage = (await li.locator('.text').textContent()).match(/: ([0-9][0-9 ]*[0-9])/)?.[1];
      assert.equal(inPage?.replace(/ /g, '').length, 60, `the page's number: ${inPage}`);
      max.type('/verify wendy');
      await max.seesAfter(mark, new RegExp(`safety number of wendy's NEW key \\(not accepted yet\\): ${inPage}`));
      max.type('/accept-key wendy');
      await max.seesAfter(mark, "accepted wendy's new key");
      // The page's notice and its line, held under the new key, are shown now: how many of
      // mm's lines the page could not read (to send again), then the line, as secure.
      await max.seesAfter(mark, '2 held messages from wendy follow, sent under the key you just accepted');
      await max.seesAfter(mark, "wendy could not read 1 of your messages (wendy's client no longer had the keys of your secure session): send again what you sent wendy before the key-change warning");
      await max.seesAfter(mark, `[secure] <wendy> ${withNewKey}`);
      await exchange(page, frames, max, 'accepted');
    });
  });

  test('mm\'s identity changes: the page shows KEY CHANGED, holds mm\'s line and sends nothing until /accept-key, then shows the line', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('secure-mm-key-changed', () => w.pages, async () => {
      const first = await w.server.mm('max');
      const { page, frames } = await w.visitor();
      await join(page, w.server, 'wendy');
      await published(frames);
      await exchange(page, frames, first, 'before');
      await open(page, 'max');
      await security(page, 'secure', 'SECURE');
      // The same account (login certificate and trusted server kept) with a new identity key:
      // what mm does on a new machine with a copied certificate, or after losing its home.
      await first.quit();
      for (const f of ['identity.key', 'pins', 'e2e-state']) rmSync(path(w.server.home('max'), f), { force: true });
      const max = await w.server.mm('max');
      const fromNewKey = unique('from-new-key-');
      max.type(`/msg wendy ${fromNewKey}`);
      await security(page, 'changed', 'KEY CHANGED');
      await lineOf(page, "WARNING: max's key has CHANGED");
      // Held, not lost: the page says so at once, in mm's words.
      await lineOf(page, '1 message from max under the new key is held until you compare safety numbers (/verify max) and /accept-key max');
      // A line typed now is not sent.
      const from = frames.sent.length;
      const blocked = unique('blocked-line-');
      await say(page, blocked);
      await sleep(QUIET_MS);
      assert.deepEqual(max.linesAfter({ out: 0, err: 0 }, blocked), [], 'mm received a line while the key change was not accepted');
      const sent = sentSince(frames, from).filter((m) => (m.type === 'Relay' || m.type === 'Private') && m.to === 'max');
      assert.deepEqual(sent.map((m) => m.type), [], 'the page sent to max while the key change was not accepted');
      assert.ok(!(await logText(page)).includes(fromNewKey), 'the page showed a line from the unaccepted key');
      await security(page, 'changed', 'KEY CHANGED');

      // Both compare the NEW key's safety number, wendy accepts it, and they talk again.
      max.type('/verify wendy');
      const mmLine = await max.sees(/safety number with wendy: /);
      const inMm = mmLine.match(/safety number with wendy: ([0-9][0-9 ]*[0-9])/)?.[1];
      assert.equal(inMm?.replace(/ /g, '').length, 60, `mm's number: ${mmLine}`);
      await say(page, '/verify max');
      await lineOf(page, inMm);
      await say(page, '/accept-key max');
      // Confirmed in mm's words (client/src/execute.rs accepted_item).
      await lineOf(page, "accepted max's new key (pinned, not verified); a new secure session starts. /verify max to compare safety numbers");
      await until(
        async () => (await page.locator('#security').getAttribute('data-state')) !== 'changed',
        async () => `#security still says ${await page.locator('#security').textContent()} after /accept-key`,
      );
      // The line held under the new key is shown now, as secure, after saying it follows.
      await lineOf(page, '1 held message from max follows, sent under the key you just accepted');
      await lineHas(page, fromNewKey, 'secure');
      await exchange(page, frames, max, 'accepted');
      await security(page, 'secure', 'SECURE');
      // The new session's key is the one the user accepted, not one "pinned at first contact".
      const ready = await lineOf(page, 'accepted by you with /accept-key');
      assert.match(await ready.textContent(), /max's key: .*not verified \(accepted by you with \/accept-key\)/);
      const after = (await logText(page)).split("accepted max's new key").at(-1);
      assert.doesNotMatch(after, /pinned at first contact/);
      await say(page, '/verified max');
      await lineOf(page, "max's key is now marked as verified");
      await security(page, 'verified', 'VERIFIED');
      // A reload keeps where the key changed, was held and accepted, in order with the lines.
      await page.reload();
      await loggedIn(page, 'wendy');
      await open(page, 'max');
      const kept = await logText(page);
      const order = ["WARNING: max's key has CHANGED", '1 message from max under the new key is held', "accepted max's new key", fromNewKey];
      const at = order.map((text) => kept.indexOf(text));
      assert.ok(at.every((i, k) => i >= 0 && (k === 0 || i > at[k - 1])), `after a reload, in order: ${order.join(' | ')}; found at ${at}`);
    });
  });

  test('mm loses its home: the page\'s line to the old key is not shown, mm tells the page, which shows KEY CHANGED and sends nothing until /accept-key, then says how many to send again', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('secure-mm-lost-home', () => w.pages, async () => {
      const first = await w.server.mm('max');
      const { page, frames } = await w.visitor();
      await join(page, w.server, 'wendy');
      await published(frames);
      await exchange(page, frames, first, 'before');
      await open(page, 'max');
      await security(page, 'secure', 'SECURE');
      // mm's home is replaced: a new identity under the same account.
      await first.quit();
      for (const f of ['identity.key', 'pins', 'e2e-state']) rmSync(path(w.server.home('max'), f), { force: true });
      const max = await w.server.mm('max');
      const mark = max.mark();
      // The page cannot know: its line goes on the old session, which mm no longer has.
      const lost = unique('to-the-old-home-');
      await say(page, lost);
      await max.seesAfter(mark, 'a message from wendy could not be decrypted');
      assert.deepEqual(max.linesAfter(mark, lost), [], 'mm showed a line sent to its old key');
      // mm tells the page under its new key: the page is blocked at once, in mm's words.
      await security(page, 'changed', 'KEY CHANGED');
      await lineOf(page, "WARNING: max's key has CHANGED");
      await lineOf(page, '1 message from max under the new key is held until you compare safety numbers (/verify max) and /accept-key max');
      // A line typed now is not sent.
      const from = frames.sent.length;
      const blocked = unique('blocked-line-');
      await say(page, blocked);
      await sleep(QUIET_MS);
      const sent = sentSince(frames, from).filter((m) => (m.type === 'Relay' || m.type === 'Private') && m.to === 'max');
      assert.deepEqual(sent.map((m) => m.type), [], 'the page sent to max while the key change was not accepted');
      // After /accept-key: how many lines mm could not read, to send again.
      await say(page, '/accept-key max');
      await lineOf(page, '1 held message from max follows, sent under the key you just accepted');
      await lineOf(page, "max could not read 1 of your messages (max's client no longer had the keys of your secure session): send again what you sent max before the key-change warning");
      assert.deepEqual(max.linesAfter(mark, 'could not read'), [], 'mm said the notice (it is the page\'s to say)');
      await exchange(page, frames, max, 'accepted');
    });
  });

  test('not connected: the secure conversation says paused and presence unknown; both back to normal after reconnecting', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('secure-paused', () => w.pages, async () => {
      const max = await w.server.mm('max');
      const { page, frames } = await w.visitor();
      await join(page, w.server, 'wendy');
      await published(frames);
      await exchange(page, frames, max, 'before');
      await open(page, 'max');
      await security(page, 'secure', 'SECURE');
      const info = () => page.locator('#conv-info').textContent();
      await until(async () => /max is online/.test(await info()), async () => `the header says "${await info()}"`);
      await w.server.down();
      await security(page, 'paused', 'SECURE e2e · paused while reconnecting (nothing goes plain)');
      await until(async () => (await info()) === 'private conversation · online: unknown (not connected)', async () => `the header says "${await info()}" while reconnecting`);
      assert.doesNotMatch(await page.locator('#security').textContent(), /VERIFIED|not verified/);
      await w.server.up();
      await loggedIn(page, 'wendy');
      await security(page, 'secure', 'SECURE — end-to-end encrypted');
      await until(async () => /^private conversation · max is (online|offline)$/.test(await info()), async () => `the header says "${await info()}" after reconnecting`);
      // Leaving with nothing unsent asks nothing; with a line typed while the server is down
      // (it lives only in this page), the browser asks first.
      assert.deepEqual(page.asked, []);
      await w.server.down();
      await security(page, 'paused', 'SECURE e2e · paused while reconnecting (nothing goes plain)');
      await say(page, 'typed while the server is down');
      await page.getByRole('log').locator('li.waiting').filter({ hasText: 'typed while the server is down' }).first().waitFor({ timeout: WAIT });
      await page.close({ runBeforeUnload: true });
      await until(async () => page.asked.includes('beforeunload'), async () => `asked: ${page.asked}`);
    });
  });

  /**
   * Wendy's page writes to max while the server's answers with max's keys are held back (the
   * session is being set up); `typed` is said after /insecure, `then` after that; the keys are
   * let through at the end. Returns the page, max, and the two lines' texts.
   */
  async function typedWhileStarting(w, then) {
    const max = await w.server.mm('max');
    const { page } = await w.visitor();
    let hold = false;
    const held = [];
    let toPage = null;
    await page.routeWebSocket(/\/ws$/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => server.send(m));
      toPage = (m) => ws.send(m);
      server.onMessage((m) => {
        let msg = null;
        try {
          msg = typeof m === 'string' ? null : decodeServer(new Uint8Array(m));
        } catch {
          msg = null;
        }
        if (hold && msg?.type === 'Bundle' && msg.nick === 'max') held.push(m);
        else ws.send(m);
      });
    });
    await join(page, w.server, 'wendy');
    await keysOf(w.server, 'max');
    hold = true;
    const first = unique('first-secure-');
    await say(page, `/msg max ${first}`);
    await open(page, 'max');
    await lineOf(page, `waiting for max's keys`);
    await say(page, '/insecure max');
    await security(page, 'plain', 'NOT end-to-end encrypted');
    const typed = unique('typed-while-plain-');
    await say(page, typed);
    await lineOf(page, 'waiting: to be sent NOT end-to-end encrypted');
    await then(page);
    hold = false;
    for (const m of held.splice(0)) toPage(m);
    return { page, max, first, typed };
  }

  test('/secure while a line typed after /insecure still waits: said as done, and that line goes encrypted, kept so over a reload', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('secure-after-insecure', () => w.pages, async () => {
      const { page, max, first, typed } = await typedWhileStarting(w, async (page) => {
        await say(page, '/secure max');
        // Done, and said as mm says it: end-to-end again.
        await lineOf(page, 'private messages to max are end-to-end encrypted again');
      });
      await max.sees(`[secure] <wendy> ${first}`);
      await max.sees(`[secure] <wendy> ${typed}`);
      const li = await lineHas(page, typed, 'secure');
      assert.ok(!(await li.getAttribute('class')).split(/\s+/).includes('plain'), 'the line that went encrypted is still marked plain');
      assert.equal(await li.locator('.lock').count(), 1, 'the line that went encrypted has no lock');
      await sleep(QUIET_MS);
      assert.deepEqual(max.linesAfter({ out: 0, err: 0 }, typed).filter((l) => !l.includes('[secure]')), [], 'the line typed while plain went plain after /secure');
      await page.reload();
      await loggedIn(page, 'wendy');
      await open(page, 'max');
      const again = await lineHas(page, typed, 'secure', 'earlier');
      assert.equal(await again.locator('.lock').count(), 1, 'after a reload the line that went encrypted has no lock');
    });
  });

  test('a line typed after /insecure while the keys were fetched goes plain after them, and comes back plain after a reload', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('plain-behind-keys', () => w.pages, async () => {
      const { page, max, first, typed } = await typedWhileStarting(w, async () => {});
      await max.sees(`[secure] <wendy> ${first}`);
      await max.sees(`<wendy> ${typed}`);
      assert.deepEqual(max.linesAfter({ out: 0, err: 0 }, typed).filter((l) => l.includes('[secure]')), [], 'the line typed after /insecure went encrypted');
      await lineHas(page, typed, 'plain');
      await sleep(300); // kept (written in the next task)
      await page.reload();
      await loggedIn(page, 'wendy');
      await open(page, 'max');
      const again = await lineHas(page, typed, 'plain', 'earlier');
      assert.equal(await again.locator('.lock').count(), 0, 'after a reload the line that went plain has the lock');
      assert.match(await again.textContent(), /NOT end-to-end encrypted/);
    });
  });

  test('a reload keeps the sessions: both ways still decrypt, no new session, earlier lines shown', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('secure-reload', () => w.pages, async () => {
      const max = await w.server.mm('max');
      const { page, frames } = await w.visitor();
      await join(page, w.server, 'wendy');
      await open(page, '#lobby');
      const earlier = await exchange(page, frames, max, 'earlier');
      await max.sees('wendy started a secure session');
      const mark = max.mark();
      const from = frames.sent.length;
      await page.reload();
      await loggedIn(page, 'wendy');
      await open(page, 'max');
      await lineHas(page, earlier.fromPage, 'secure');
      await lineHas(page, earlier.fromMm, 'secure');
      await exchange(page, frames, max, 'after');
      await security(page, 'secure', 'SECURE');
      assert.deepEqual(max.linesAfter(mark, /started a secure session|secure session with wendy ready/), [], 'a new session after the reload');
      assert.deepEqual(mmTrouble(max, mark), []);
      assert.ok(!sentSince(frames, from).some((m) => m.type === 'FetchBundle'), 'the page fetched max\'s keys again after the reload');
      assert.ok(!(await logText(page)).includes('could not be decrypted'), 'the page could not decrypt a line');
      // And once more, mm first.
      const again = unique('again-');
      max.type(`/msg wendy ${again}`);
      await lineHas(page, again, 'secure');
    });
  });

  test('two tabs of one account never fork its sessions: take over, take back, all decrypt', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('secure-tabs', () => w.pages, async () => {
      const max = await w.server.mm('max');
      const { context, page: one, frames } = await w.visitor();
      await join(one, w.server, 'wendy');
      await open(one, '#lobby');
      await exchange(one, frames, max, 'tab-one');
      const mark = max.mark();

      const two = await w.tab(context, frames);
      await two.goto(w.server.url);
      await two.getByRole('button', { name: 'Use here' }).click({ timeout: WAIT });
      await loggedIn(two, 'wendy');
      await one.getByText(/another tab/).first().waitFor({ timeout: WAIT });
      await open(two, 'max');
      await exchange(two, frames, max, 'tab-two');
      await exchange(two, frames, max, 'tab-two-again');
      await security(two, 'secure', 'SECURE');

      await one.getByRole('button', { name: 'Use here' }).click({ timeout: WAIT });
      await loggedIn(one, 'wendy');
      await two.getByText(/another tab/).first().waitFor({ timeout: WAIT });
      await open(one, 'max');
      await exchange(one, frames, max, 'tab-one-back');
      await exchange(one, frames, max, 'tab-one-back-again');
      await security(one, 'secure', 'SECURE');

      assert.deepEqual(mmTrouble(max, mark), [], 'mm could not read a line or saw one twice');
      assert.deepEqual(max.linesAfter(mark, /started a secure session|secure session with wendy ready/), [], 'a new session: a tab started over');
      for (const p of [one, two]) {
        assert.ok(!(await logText(p)).includes('could not be decrypted'), 'a tab could not decrypt a line');
      }
    });
  });

  test('two tabs taking turns while mm writes: every line acknowledged is kept, each shown once, after each take-over and after a reload', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('secure-tabs-kept', () => w.pages, async () => {
      const max = await w.server.mm('max');
      const { context, page: one, frames } = await w.visitor();
      await join(one, w.server, 'wendy');
      // The second tab opens now and reads the (empty) kept conversations; it waits.
      const two = await w.tab(context, frames);
      await two.goto(w.server.url);
      await two.getByRole('button', { name: 'Use here' }).waitFor({ timeout: WAIT });
      const fromMax = [];
      const fromWendy = [];
      /** A turn of `page` (the owner): mm sends `n` lines, the page one. */
      const turn = async (page, n, tag) => {
        for (let i = 0; i < n; i++) {
          const text = unique(`${tag}-mm-${i}-`);
          fromMax.push(text);
          max.type(`/msg wendy ${text}`);
          if (i === 0) await open(page, 'max');
          await lineHas(page, text, 'secure');
        }
        const mine = unique(`${tag}-page-`);
        fromWendy.push(mine);
        await say(page, mine);
        await max.sees(`[secure] <wendy> ${mine}`);
        await lineHas(page, mine, 'secure', 'sent');
      };
      /** `to` takes the account over from `from` (Use here). */
      const takeOver = async (to, from) => {
        await to.getByRole('button', { name: 'Use here' }).click({ timeout: WAIT });
        await loggedIn(to, 'wendy');
        await from.getByText(/another tab/).first().waitFor({ timeout: WAIT });
      };
      /** Every line so far is shown exactly once in `page`'s conversation with max. */
      const allOnce = async (page, when) => {
        await open(page, 'max');
        await lineOf(page, fromMax.at(-1));
        const texts = [...fromMax, ...fromWendy];
        const counts = await page.evaluate((all) => {
          const lis = [...document.querySelectorAll('[role=log] li')].map((li) => li.textContent);
          return all.map((x) => lis.filter((l) => l.includes(x)).length);
        }, texts);
        const wrong = texts.map((x, k) => `${x}: ${counts[k]}`).filter((_, k) => counts[k] !== 1);
        assert.deepEqual(wrong, [], `${when}: lines not shown exactly once (of ${texts.length})`);
      };

      await turn(one, 4, 'one-a');
      await takeOver(two, one);
      await allOnce(two, 'the second tab after taking over');
      await turn(two, 4, 'two-a');
      await takeOver(one, two);
      await allOnce(one, 'the first tab after taking back');
      await turn(one, 4, 'one-b');
      await takeOver(two, one);
      await turn(two, 4, 'two-b');
      await allOnce(two, 'the second tab at the end');
      // The page acknowledged what it showed (the server sends none of them again).
      const acked = frames.sent.map((f) => f.msg).filter((m) => m?.type === 'Received');
      assert.ok(acked.length > 0, 'the page acknowledged nothing');

      // A reload of the owner: every line both tabs kept comes back, once, marked earlier; ours
      // as sent (not "not confirmed").
      await two.reload();
      await loggedIn(two, 'wendy');
      await allOnce(two, 'after a reload');
      assert.equal(fromMax.length, 16);
      for (const text of fromWendy) {
        const li = await lineHas(two, text, 'secure', 'earlier');
        assert.ok(!(await li.textContent()).includes('not confirmed'), `${text} came back not confirmed`);
      }
    });
  });

  test('a line whose end-to-end save fails is not sent: it loses the lock at once, says why, and comes back so after a reload', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('secure-unsent-save', () => w.pages, async () => {
      const max = await w.server.mm('max');
      const { page, frames } = await w.visitor();
      await join(page, w.server, 'wendy');
      await exchange(page, frames, max, 'before');
      // The end-to-end record is deleted under the open page (its site data cleared): the next
      // save finds no record of this tab's.
      const deleted = await page.evaluate(() => new Promise((resolve) => {
        const req = indexedDB.deleteDatabase('mm-web-e2e');
        req.onsuccess = () => resolve('deleted');
        req.onerror = () => resolve(`error ${req.error}`);
        req.onblocked = () => resolve('blocked');
      }));
      assert.equal(deleted, 'deleted');
      const mark = max.mark();
      const from = frames.sent.length;
      const text = unique('never-sent-');
      await say(page, text);
      const li = await lineHas(page, text, 'refused');
      assert.equal(await li.locator('.lock').count(), 0, 'a line not sent still shows the lock');
      assert.ok(!(await li.getAttribute('class')).split(/\s+/).includes('secure'), 'a line not sent is still marked secure');
      assert.match(await li.textContent(), /not sent: the end-to-end state could not be saved/);
      await sleep(QUIET_MS);
      assert.ok(!sentSince(frames, from).some((m) => (m.type === 'Relay' || m.type === 'Private') && m.to === 'max'), 'it went to max');
      assert.deepEqual(max.linesAfter(mark, text), [], 'max got it');
      await page.reload();
      await loggedIn(page, 'wendy');
      await open(page, 'max');
      const again = await lineHas(page, text, 'refused', 'earlier');
      assert.equal(await again.locator('.lock').count(), 0, 'after a reload, a line not sent shows the lock');
      assert.match(await again.textContent(), /not sent/);
    });
  });

  test('a reload while a line waits for the peer\'s keys: it comes back not sent, without the lock, and never goes', LIMIT, async (t) => {
    const w = await world(t);
    await withScreenshots('secure-unsent-keys', () => w.pages, async () => {
      const kim = await w.server.mm('kim');
      const { page } = await w.visitor();
      // The page's requests for keys are held back (a slow directory): its line waits.
      let holdKeys = true;
      await page.routeWebSocket(/\/ws$/, (ws) => {
        const server = ws.connectToServer();
        ws.onMessage((m) => {
          let type = null;
          try {
            type = decodeClient(new Uint8Array(typeof m === 'string' ? Buffer.from(m) : m)).type;
          } catch {
            // not one: forwarded as it is
          }
          if (!(holdKeys && type === 'FetchBundle')) server.send(m);
        });
      });
      await join(page, w.server, 'wendy');
      const text = unique('waiting-for-keys-');
      await say(page, `/msg kim ${text}`);
      await open(page, 'kim');
      const li = await lineHas(page, text, 'waiting');
      assert.match(await li.textContent(), /waiting for kim's keys/);
      await sleep(300); // kept (written in the next task)
      holdKeys = false;
      await page.reload();
      await loggedIn(page, 'wendy');
      await open(page, 'kim');
      const again = await lineHas(page, text, 'refused', 'earlier');
      assert.equal(await again.locator('.lock').count(), 0, 'a line never sent came back with the lock');
      assert.match(await again.textContent(), /not sent: this page was closed or reloaded before it could be sent/);
      await sleep(QUIET_MS);
      assert.deepEqual(kim.linesAfter({ out: 0, err: 0 }, text), [], 'kim got the line after all');
    });
  });
});
