// A flood of #lobby lines (a line-mode mm user on a server with generous rate limits) does not
// freeze the page: the main thread keeps answering timers, every line's last one arrives, the
// connection stays, and the page keeps a bounded number of lines. See harness.mjs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { browser, Server, withScreenshots } from './harness.mjs';

const LINES = 3000;
const CHUNK = 100;
const WAIT = 120000;
/** The longest the page's main thread may be busy at once during the flood (wide: 2 shared cores). */
const MAX_STALL_MS = 1500;

let server;
let chromium;
const pages = [];

before(async () => {
  server = await Server.start({
    config: '[limits]\nrate_burst = 1000\nrate_per_sec = 10000\n',
  });
  chromium = await browser(server);
});

after(async () => {
  await chromium?.close();
  await server?.stop();
});

test(`${LINES} lines into #lobby: the page stays responsive and connected, and keeps a bounded log`, { timeout: 240000 }, async () => {
  await withScreenshots('flood', () => pages, async () => {
    const flooder = await server.mm('flood');
    const context = await chromium.newContext();
    const page = await context.newPage();
    pages.push(page);
    await page.goto(server.url);
    await page.getByLabel('Nick', { exact: true }).fill('wendy');
    await page.getByRole('button', { name: 'Join chat' }).click();
    await page.getByRole('status').filter({ hasText: 'as wendy' }).first().waitFor({ timeout: 30000 });
    await flooder.sees('wendy joined');

    // The page's own stall meter: a 50 ms timer; the longest gap between two of its ticks.
    await page.evaluate(() => {
      window.stall = { max: 0, last: performance.now(), ticks: 0 };
      setInterval(() => {
        const now = performance.now();
        window.stall.max = Math.max(window.stall.max, now - window.stall.last);
        window.stall.last = now;
        window.stall.ticks += 1;
      }, 50);
    });

    // About 1,400 lines a second: 100 lines every 70 ms (under the server's raised rate limit,
    // so none is refused, and slow enough for a client that keeps up to stay connected).
    for (let i = 1; i <= LINES; i += CHUNK) {
      const body = [];
      for (let j = i; j < i + CHUNK && j <= LINES; j++) body.push(`flood line ${j} of ${LINES}`);
      flooder.type(body.join('\n'));
      await new Promise((r) => setTimeout(r, 70));
    }
    // Waiting with a cheap look every 250 ms (a locator's polling would itself load the page).
    const last = `flood line ${LINES} of ${LINES}`;
    await page.waitForFunction(
      (text) => [...document.querySelectorAll('[role=log] li .text')].slice(-3).some((t) => t.textContent === text),
      last,
      { polling: 250, timeout: WAIT },
    );
    const stall = await page.evaluate(() => window.stall);
    console.log(`flood: longest main-thread stall ${Math.round(stall.max)} ms over ${stall.ticks} ticks`);
    assert.ok(stall.max < MAX_STALL_MS, `the page's main thread stalled for ${Math.round(stall.max)} ms during the flood`);

    const shown = await page.getByRole('log').locator('li').count();
    assert.ok(shown <= 1001, `the log holds ${shown} lines`);
    await page.getByRole('log').getByText('earlier lines not shown', { exact: false }).waitFor({ timeout: 5000 });
    // Still connected: a line from the page reaches mm.
    const box = page.getByLabel('Message', { exact: true });
    await box.fill('still here after the flood');
    await box.press('Enter');
    await flooder.sees('<wendy> still here after the flood', 30000);
    assert.ok(!server.log.lines.some((l) => /too.?slow/i.test(l) && /wendy/.test(l)), 'the server dropped the page as too slow');
  });
});
