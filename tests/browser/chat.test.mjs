// A browser user and line-mode mm users chat through a real mm-server: #lobby, a room,
// private both ways, reload, two tabs, hostile text. See harness.mjs.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  browser, join, open, say, Server, WAIT, withScreenshots,
} from './harness.mjs';

let server;
let chromium;
const pages = [];

before(async () => {
  server = await Server.start();
  chromium = await browser(server);
});

after(async () => {
  await chromium?.close();
  await server?.stop();
});

/** A new browser profile (its own IndexedDB: its own accounts) on the server's page. */
async function newVisitor() {
  const context = await chromium.newContext();
  const page = await context.newPage();
  pages.push(page);
  return { context, page };
}

async function logShows(page, text) {
  await page.getByRole('log').getByText(text, { exact: false }).first().waitFor({ timeout: WAIT });
}

describe('the web client with mm users', () => {
  let wendy;
  let max;

  test('a browser user and an mm user talk in #lobby', async () => {
    await withScreenshots('lobby', () => pages, async () => {
      max = await server.mm('max');
      ({ page: wendy } = await newVisitor());
      await join(wendy, server, 'wendy');
      await max.sees('wendy joined');
      await say(wendy, 'hello from the browser');
      await max.sees('<wendy> hello from the browser');
      max.type('hi wendy, from mm');
      await logShows(wendy, 'hi wendy, from mm');
    });
  });

  test('in a room, both ways', async () => {
    await withScreenshots('room', () => pages, async () => {
      max.type('/join #dev');
      await max.sees('entered #dev');
      await say(wendy, '/join #dev');
      await max.sees('wendy joined #dev');
      await say(wendy, 'room line from the browser');
      await max.sees('[#dev] <wendy> room line from the browser');
      max.type('/msg #dev room line from mm');
      await logShows(wendy, 'room line from mm');
    });
  });

  test('privately both ways: end-to-end encrypted between the browser and mm, the same safety number; plain only once said', async () => {
    await withScreenshots('private', () => pages, async () => {
      await say(wendy, '/msg max psst from the browser');
      await max.sees('[secure] <wendy> psst from the browser');
      await open(wendy, 'max');
      await wendy.locator('#security[data-state="secure"]').waitFor({ timeout: WAIT });
      assert.match(await wendy.locator('#security').textContent(), /^SECURE/);
      max.type('/msg wendy secret reply');
      await wendy.getByRole('log').locator('li.secure').filter({ hasText: 'secret reply' }).first().waitFor({ timeout: WAIT });
      assert.equal(await wendy.getByRole('log').getByRole('img', { name: 'end-to-end encrypted' }).count() >= 2, true, 'both lines carry the lock');
      // The same safety number on both sides.
      await say(wendy, '/verify max');
      const line = await wendy.getByRole('log').getByText(/Safety number with max: /).first().textContent();
      const digits = /Safety number with max: ([0-9 ]+)/.exec(line)[1].trim();
      max.type('/verify wendy');
      await max.sees(`safety number with wendy: ${digits}`);
      await say(wendy, '/verified max');
      await wendy.locator('#security[data-state="verified"]').waitFor({ timeout: WAIT });
      // Plain only once said, on both sides.
      await say(wendy, '/insecure max');
      await wendy.locator('#security[data-state="plain"]').waitFor({ timeout: WAIT });
      await wendy.getByText('NOT end-to-end encrypted — the server can read it').first().waitFor({ timeout: WAIT });
      max.type('/insecure wendy');
      await max.sees('NOT end-to-end encrypted');
      max.type('/msg wendy plain reply, knowingly');
      await wendy.getByRole('log').locator('li.plain').filter({ hasText: 'plain reply, knowingly' }).first().waitFor({ timeout: WAIT });
      // The plain line says so on the line itself, not only in the header.
      await wendy.getByRole('log').locator('li.plain').filter({ hasText: 'plain reply, knowingly' }).filter({ hasText: 'NOT end-to-end encrypted' }).first().waitFor({ timeout: WAIT });
    });
  });

  test('chat text is shown as text, never as markup', async () => {
    await withScreenshots('markup', () => pages, async () => {
      await open(wendy, '#lobby');
      max.type('<img src=x onerror="window.pwned=1"><b>bold</b>');
      await logShows(wendy, '<img src=x onerror="window.pwned=1"><b>bold</b>');
      assert.equal(await wendy.getByRole('log').locator('img, b').count(), 0);
      assert.equal(await wendy.evaluate(() => window.pwned), undefined);
    });
  });

  test('the page is served with a strict policy', async () => {
    await withScreenshots('headers', () => pages, async () => {
      const script = wendy.waitForResponse((r) => new URL(r.url()).pathname === '/app.js', { timeout: WAIT });
      const response = await wendy.goto(server.url);
      const h = response.headers();
      // Chromium accepts gzip: app.js comes compressed with the gzip form's own ETag, varying
      // with Accept-Encoding. Here it revalidates the gzip form the first visit cached (its 304
      // shows as the cached 200 with the 304's headers: ETag and Vary, no Content-Encoding).
      const jsResponse = await script;
      const js = await jsResponse.allHeaders();
      const asked = await jsResponse.request().allHeaders();
      assert.match(asked['accept-encoding'], /\bgzip\b/);
      assert.match(js.etag, /-gzip"$/);
      assert.equal(js.vary, 'Accept-Encoding');
      if (asked['if-none-match'] === undefined) assert.equal(js['content-encoding'], 'gzip');
      else assert.equal(asked['if-none-match'], js.etag);
      assert.match(h['content-security-policy'], /default-src 'none'/);
      assert.match(h['content-security-policy'], /script-src 'self'/);
      assert.match(h['content-security-policy'], /connect-src 'self'/);
      assert.match(h['content-security-policy'], /frame-ancestors 'none'/);
      assert.equal(h['x-content-type-options'], 'nosniff');
      assert.equal(h['referrer-policy'], 'no-referrer');
    });
  });

  test('a reload keeps the nick and shows the history', async () => {
    await withScreenshots('reload', () => pages, async () => {
      await wendy.reload();
      await wendy.getByLabel('Message', { exact: true }).waitFor({ timeout: WAIT });
      assert.equal(await wendy.getByLabel('Nick', { exact: true }).isVisible(), false, 'the nick form came back after a reload');
      await logShows(wendy, 'hello from the browser');
      await logShows(wendy, 'hi wendy, from mm');
      await say(wendy, 'back after a reload');
      await max.sees('<wendy> back after a reload');
      // A login re-enters #dev without its members: the room on screen asks for them.
      await open(wendy, '#dev');
      const members = wendy.getByRole('complementary', { name: 'Members' });
      await members.getByText('max', { exact: false }).first().waitFor({ timeout: WAIT });
      await members.getByText('wendy', { exact: false }).first().waitFor({ timeout: WAIT });
      // Private lines are not server history: the page kept them, both ways.
      await open(wendy, 'max');
      await logShows(wendy, 'psst from the browser');
      await logShows(wendy, 'plain reply, knowingly');
      // Kept as plain: still marked NOT end-to-end encrypted after the reload, never with a lock.
      const plainLine = wendy.getByRole('log').locator('li').filter({ hasText: 'plain reply, knowingly' }).first();
      assert.match(await plainLine.getAttribute('class'), /\bplain\b/, 'a reloaded plain line is not marked plain');
      assert.match(await plainLine.textContent(), /NOT end-to-end encrypted/, 'a reloaded plain line does not say it was not end-to-end');
      assert.equal(await plainLine.locator('.lock').count(), 0, 'a reloaded plain line has the lock');
      await wendy.getByText('NOT end-to-end encrypted — the server can read it').first().waitFor({ timeout: WAIT });
      max.type('/msg wendy after her reload');
      await logShows(wendy, 'after her reload');
      await wendy.reload();
      await wendy.getByLabel('Message', { exact: true }).waitFor({ timeout: WAIT });
      await open(wendy, 'max');
      await logShows(wendy, 'psst from the browser');
      await logShows(wendy, 'after her reload');
      // A private line read nowhere yet stays unread across a reload.
      await open(wendy, '#lobby');
      max.type('/msg wendy unread across a reload');
      const nav = wendy.getByRole('navigation', { name: 'Conversations' });
      await nav.getByRole('button', { name: /^max\b.*\b1 unread$/ }).waitFor({ timeout: WAIT });
      await wendy.reload();
      await wendy.getByLabel('Message', { exact: true }).waitFor({ timeout: WAIT });
      await nav.getByRole('button', { name: /^max\b.*\b1 unread$/ }).waitFor({ timeout: WAIT });
      await open(wendy, 'max');
      await logShows(wendy, 'unread across a reload');
      await nav.getByRole('button', { name: /^max$/ }).waitFor({ timeout: WAIT });
    });
  });

  test('/help is readable: upright, in full colour, columns kept, scrolling in its own box when long', async () => {
    await withScreenshots('help', () => pages, async () => {
      await open(wendy, '#lobby');
      await say(wendy, '/help');
      const text = wendy.getByRole('log').locator('li.help .text').filter({ hasText: '/accept-key NICK' }).last();
      await text.waitFor({ timeout: WAIT });
      const style = await text.evaluate((el) => {
        const s = getComputedStyle(el);
        const notice = document.querySelector('.log li.notice:not(.help) .text');
        return {
          fontStyle: s.fontStyle, whiteSpace: s.whiteSpace, overflowX: s.overflowX, overflowY: s.overflowY,
          color: s.color, noticeColor: notice ? getComputedStyle(notice).color : null,
          maxHeight: s.maxHeight, height: el.getBoundingClientRect().height, scrollHeight: el.scrollHeight, viewport: innerHeight,
        };
      });
      assert.equal(style.fontStyle, 'normal', '/help is in italics');
      assert.equal(style.whiteSpace, 'pre', "/help's columns are not kept");
      assert.equal(style.overflowX, 'auto');
      assert.equal(style.overflowY, 'auto');
      assert.notEqual(style.color, style.noticeColor, '/help is in the dim colour of notices');
      assert.ok(style.height <= style.viewport * 0.7 + 1, `/help is ${style.height} px tall in a ${style.viewport} px window`);
    });
  });

  test('a closed private conversation stays closed after a reload', async () => {
    await withScreenshots('close', () => pages, async () => {
      const nav = wendy.getByRole('navigation', { name: 'Conversations' });
      await nav.getByRole('button', { name: 'Close the conversation with max' }).click();
      assert.equal(await nav.getByRole('button', { name: /^max\b/ }).count(), 0);
      await wendy.reload();
      await wendy.getByLabel('Message', { exact: true }).waitFor({ timeout: WAIT });
      await logShows(wendy, 'back after a reload');
      assert.equal(await nav.getByRole('button', { name: /^max\b/ }).count(), 0, 'the closed conversation came back');
    });
  });

  test('/msg to a nick nobody has: the error where the user is, no conversation left behind', async () => {
    await withScreenshots('unknown-nick', () => pages, async () => {
      await open(wendy, '#lobby');
      await say(wendy, '/msg nobody7 are you there');
      await logShows(wendy, 'nobody7: no such user');
      await wendy.getByRole('status').filter({ hasText: 'nobody7: no such user' }).first().waitFor({ timeout: WAIT });
      const nav = wendy.getByRole('navigation', { name: 'Conversations' });
      assert.equal(await nav.getByRole('button', { name: /^nobody7\b/ }).count(), 0, 'an empty conversation was left behind');
      assert.equal(await wendy.getByRole('heading', { level: 1 }).textContent(), '#lobby');
      // A room command's error is shown too, where the user typed it.
      await say(wendy, '/topic #nosuchroom');
      await wendy.getByRole('status').filter({ hasText: /nosuchroom/ }).first().waitFor({ timeout: WAIT });
    });
  });

  test('two tabs: one holds the connection, the other says so and can take it over', async () => {
    await withScreenshots('tabs', () => pages, async () => {
      const second = await wendy.context().newPage();
      pages.push(second);
      await second.goto(server.url);
      await second.getByText('This account is open in another tab. Use here to move it to this tab.').first().waitFor({ timeout: WAIT });
      // Only the banner and its button: no message box or conversation list that looks usable.
      await second.getByRole('button', { name: 'Use here' }).waitFor({ timeout: WAIT });
      assert.equal(await second.getByLabel('Message', { exact: true }).isVisible(), false, 'a message box under the banner');
      assert.equal(await second.getByRole('navigation', { name: 'Conversations' }).isVisible(), false, 'a conversation list under the banner');
      await second.getByRole('button', { name: 'Use here' }).click();
      await second.getByLabel('Message', { exact: true }).waitFor({ timeout: WAIT });
      await say(second, 'from the second tab');
      await max.sees('<wendy> from the second tab');
      // The first tab gave the account up and does not take it back by itself.
      await wendy.getByText(/another tab/).first().waitFor({ timeout: WAIT });
      assert.equal(await wendy.getByLabel('Message', { exact: true }).isVisible(), false, 'the tab that lost the account still offers a message box');
      await new Promise((r) => setTimeout(r, 1000));
      await say(second, 'still the second tab');
      await max.sees('<wendy> still the second tab');
      // Neither tab took the account back from the other: each line went out once, and the
      // server saw no login of wendy after the take-over (a tab fighting back would log in).
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(max.out.lines.filter((l) => l.includes('<wendy> still the second tab')).length, 1);
      const logins = server.log.lines.filter((l) => /logged in/.test(l) && /nick=wendy\b/.test(l));
      assert.ok(logins.length >= 2, `wendy's logins (first tab, then the second): ${logins.length}`);
      await new Promise((r) => setTimeout(r, 3000));
      const later = server.log.lines.filter((l) => /logged in/.test(l) && /nick=wendy\b/.test(l));
      assert.equal(later.length, logins.length, 'a tab logged in again after the take-over');
    });
  });

  test('two tabs take turns with one secure session: each continues from what the other saved', async () => {
    await withScreenshots('tabs-secure', () => pages, async () => {
      const kim = await server.mm('kim');
      const tabs = pages.filter((p) => p.url().startsWith(server.url) && p.context() === wendy.context());
      const second = tabs.at(-1);
      await say(second, '/msg kim one from the second tab');
      await kim.sees('[secure] <wendy> one from the second tab');
      kim.type('/msg wendy reply to the second tab');
      await second.getByRole('log').locator('li.secure').filter({ hasText: 'reply to the second tab' }).first().waitFor({ timeout: WAIT });
      // The first tab takes the account back: it opens the record again, with the session
      // as the second tab left it (a stale copy would fail to decrypt or be refused).
      await wendy.getByRole('button', { name: 'Use here' }).click();
      await wendy.getByLabel('Message', { exact: true }).waitFor({ timeout: WAIT });
      await second.getByText(/another tab/).first().waitFor({ timeout: WAIT });
      await say(wendy, '/query kim');
      await wendy.locator('#security[data-state="secure"]').waitFor({ timeout: WAIT });
      await say(wendy, '/msg kim two from the first tab');
      await kim.sees('[secure] <wendy> two from the first tab');
      kim.type('/msg wendy reply to the first tab');
      await wendy.getByRole('log').locator('li.secure').filter({ hasText: 'reply to the first tab' }).first().waitFor({ timeout: WAIT });
      assert.equal(kim.out.lines.concat(kim.err.lines).some((l) => /could not be decrypted|CHANGED|replayed/.test(l)), false, 'kim saw a broken session');
      assert.equal(await wendy.getByRole('log').getByText(/could not be decrypted/).count(), 0);
    });
  });

  test('an mm user starts a secure session with the browser from the keys it published', async () => {
    await withScreenshots('mm-starts', () => pages, async () => {
      const lee = await server.mm('lee');
      lee.type('/msg wendy first contact from lee');
      await wendy.getByRole('navigation', { name: 'Conversations' }).getByRole('button', { name: /^lee\b/ }).waitFor({ timeout: WAIT });
      await open(wendy, 'lee');
      await wendy.getByRole('log').locator('li.secure').filter({ hasText: 'first contact from lee' }).first().waitFor({ timeout: WAIT });
      await logShows(wendy, 'lee started a secure session');
      await say(wendy, '/msg lee answer from the browser');
      await lee.sees('[secure] <wendy> answer from the browser');
    });
  });

  test('two browsers: end-to-end both ways, and a secure line waits in the mailbox while its reader is away', async () => {
    await withScreenshots('browsers', () => pages, async () => {
      const { context, page: zoe } = await newVisitor();
      await join(zoe, server, 'zoe');
      // zoe's page publishes her keys just after joining: a line sent before they reach the
      // server's directory is refused visibly ("zoe has no end-to-end keys ... NOT sent") and
      // the page says the next one tries again — as a user would, send it again then.
      const fromWendy = zoe.getByRole('navigation', { name: 'Conversations' }).getByRole('button', { name: /^wendy\b/ });
      for (let attempt = 1; ; attempt++) {
        const refusals = await wendy.getByText(/zoe has no end-to-end keys/).count();
        await say(wendy, '/msg zoe hello zoe, from one browser to another');
        const refused = wendy.getByText(/zoe has no end-to-end keys/).nth(refusals);
        const outcome = await Promise.race([
          fromWendy.waitFor({ timeout: WAIT }).then(() => 'delivered'),
          refused.waitFor({ timeout: WAIT }).then(() => 'no keys yet'),
        ]);
        if (outcome === 'delivered') break;
        assert.ok(attempt < 5, "zoe's keys never reached the directory");
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      await open(zoe, 'wendy');
      await zoe.getByRole('log').locator('li.secure').filter({ hasText: 'hello zoe, from one browser to another' }).first().waitFor({ timeout: WAIT });
      await zoe.locator('#security[data-state="secure"]').waitFor({ timeout: WAIT });
      await say(zoe, 'hello wendy');
      await wendy.getByRole('log').locator('li.secure').filter({ hasText: 'hello wendy' }).first().waitFor({ timeout: WAIT });
      // Zoe closes her page: the next line is queued by the server, and read at her next visit.
      await zoe.close();
      await say(wendy, 'while you were away');
      await wendy.getByRole('log').locator('li.queued').filter({ hasText: 'while you were away' }).first().waitFor({ timeout: WAIT });
      const again = await context.newPage();
      pages.push(again);
      await again.goto(server.url);
      await again.getByLabel('Message', { exact: true }).waitFor({ timeout: WAIT });
      await open(again, 'wendy');
      await again.getByRole('log').locator('li.secure').filter({ hasText: 'while you were away' }).first().waitFor({ timeout: WAIT });
      await again.getByRole('log').locator('li.secure').filter({ hasText: 'hello zoe, from one browser to another' }).first().waitFor({ timeout: WAIT });
      assert.equal(await again.getByRole('log').getByText(/could not be decrypted|cannot be read/).count(), 0);
      // Wendy's line said "queued" while zoe was away: now it says zoe logged in (a fact seen,
      // not "delivered": no receipt comes from zoe).
      const queued = wendy.getByRole('log').locator('li.queued').filter({ hasText: 'while you were away' }).first();
      await queued.locator('.state', { hasText: /^queued · zoe logged in at \d\d:\d\d / }).waitFor({ timeout: WAIT });
    });
  });

  test('a nick registered to another key is refused in plain words', async () => {
    await withScreenshots('taken', () => pages, async () => {
      const { page } = await newVisitor();
      await page.goto(server.url);
      await page.getByLabel('Nick', { exact: true }).fill('max');
      await page.getByRole('button', { name: 'Join chat' }).click();
      await page.getByText(/registered/i).first().waitFor({ timeout: WAIT });
    });
  });
});
