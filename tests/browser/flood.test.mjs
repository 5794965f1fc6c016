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

const MORE = 300;

/** Lines `from` … `to` from `user`, about 1,400 a second: 100 lines every 70 ms (under the
 *  server's raised rate limit, so none is refused, and slow enough for a client that keeps up
 *  to stay connected). */
async function flood(user, from, to) {
  for (let i = from; i <= to; i += CHUNK) {
    const body = [];
    for (let j = i; j < i + CHUNK && j <= to; j++) body.push(`flood line ${j} of ${LINES}`);
    user.type(body.join('\n'));
    await new Promise((r) => setTimeout(r, 70));
  }
}

/** Waits for `text` among the log's last lines, looking every 250 ms (a locator's polling
 *  would itself load the page). */
async function waitForLine(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('[role=log] li .text')].slice(-3).some((x) => x.textContent === t),
    text,
    { polling: 250, timeout: WAIT },
  );
}

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

    await flood(flooder, 1, LINES);
    await waitForLine(page, `flood line ${LINES} of ${LINES}`);
    const stall = await page.evaluate(() => window.stall);
    console.log(`flood: longest main-thread stall ${Math.round(stall.max)} ms over ${stall.ticks} ticks`);
    assert.ok(stall.max < MAX_STALL_MS, `the page's main thread stalled for ${Math.round(stall.max)} ms during the flood`);

    const shown = await page.getByRole('log').locator('li').count();
    assert.ok(shown <= 1001, `the log holds ${shown} lines`);
    await page.getByRole('log').getByText('earlier lines not shown', { exact: false }).waitFor({ timeout: 5000 });

    // Scrolled up, the user keeps their place while more lines come (and earlier ones go).
    const topLine = () => page.evaluate(() => {
      const holder = document.getElementById('log-holder');
      const box = holder.getBoundingClientRect();
      const li = document.elementFromPoint(box.left + 40, box.top + 20)?.closest('li');
      const atBottom = holder.scrollHeight - holder.scrollTop - holder.clientHeight < 80;
      return { text: li?.querySelector('.text')?.textContent ?? null, atBottom };
    });
    await page.evaluate(() => {
      const holder = document.getElementById('log-holder');
      holder.scrollTop = holder.scrollHeight / 2;
    });
    await new Promise((r) => setTimeout(r, 500));
    const place = await topLine();
    assert.match(place.text ?? '', /^flood line \d+ of/, 'a flood line at the top of the view');
    assert.equal(place.atBottom, false);
    await flood(flooder, LINES + 1, LINES + MORE);
    await waitForLine(page, `flood line ${LINES + MORE} of ${LINES}`);
    await new Promise((r) => setTimeout(r, 500));
    const after = await topLine();
    assert.equal(after.atBottom, false, 'the view jumped to the bottom while scrolled up');
    assert.equal(after.text, place.text, 'the view moved while scrolled up');
    // Back at the bottom, it follows new lines again.
    await page.evaluate(() => {
      const holder = document.getElementById('log-holder');
      holder.scrollTop = holder.scrollHeight;
    });
    await new Promise((r) => setTimeout(r, 300));
    await flood(flooder, LINES + MORE + 1, LINES + MORE + 20);
    await waitForLine(page, `flood line ${LINES + MORE + 20} of ${LINES}`);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await topLine()).atBottom, true, 'the view no longer follows new lines');

    // Still connected: a line from the page reaches mm.
    const box = page.getByLabel('Message', { exact: true });
    await box.fill('still here after the flood');
    await box.press('Enter');
    await flooder.sees('<wendy> still here after the flood', 30000);
    assert.ok(!server.log.lines.some((l) => /too.?slow/i.test(l) && /wendy/.test(l)), 'the server dropped the page as too slow');
  });
});
