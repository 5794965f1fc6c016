// Makes the web client's screenshots in docs/ (desktop and phone width, light and dark) from a
// scripted conversation with a line-mode mm user on a real server:
//   node tests/browser/screenshots.mjs        (after ./scripts/test or cargo build)
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { browser, Server } from './harness.mjs';

const docs = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs');
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

const server = await Server.start();
const chromium = await browser(server);
try {
  const max = await server.mm('max');
  const context = await chromium.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  await page.goto(server.url);
  await page.getByLabel('Nick', { exact: true }).fill('wendy');
  await page.screenshot({ path: join(docs, 'web-client-first-visit.png') });
  await page.getByRole('button', { name: 'Join chat' }).click();
  await page.getByRole('status').filter({ hasText: 'as wendy' }).first().waitFor();
  const say = async (text) => {
    const box = page.getByLabel('Message', { exact: true });
    await box.fill(text);
    await box.press('Enter');
  };
  max.type('/join #dev');
  await max.sees('entered #dev');
  max.type('/topic #dev release planning');
  await say('/join #dev');
  await max.sees('wendy joined #dev');
  await say('morning! is the release still on for Friday?');
  max.type('/msg #dev yes, wendy: tests are green, docs next');
  await say('great, I will write the notes');
  max.type('/msg #dev thanks!');
  await say('/msg max can we talk about the budget later?');
  await max.sees('budget later');
  max.type('/insecure wendy');
  max.type('/msg wendy sure, after lunch');
  await pause(1500);
  await page.screenshot({ path: join(docs, 'web-client-private.png') });
  await page
    .getByRole('navigation', { name: 'Conversations' })
    .getByRole('button', { name: /^#dev/ })
    .click();
  await pause(500);
  await page.screenshot({ path: join(docs, 'web-client-desktop.png') });

  const phone = await chromium.newContext({ viewport: { width: 375, height: 812 }, colorScheme: 'dark' });
  const phonePage = await phone.newPage();
  await phonePage.goto(server.url);
  await phonePage.getByLabel('Nick', { exact: true }).fill('pat');
  await phonePage.getByRole('button', { name: 'Join chat' }).click();
  await phonePage.getByRole('status').filter({ hasText: 'as pat' }).first().waitFor();
  await phonePage.getByLabel('Message', { exact: true }).fill('/join #dev');
  await phonePage.getByLabel('Message', { exact: true }).press('Enter');
  await pause(1500);
  await phonePage.screenshot({ path: join(docs, 'web-client-phone-dark.png') });
  console.log(`screenshots in ${docs}`);
} finally {
  await chromium.close();
  await server.stop();
}
