// Runs costs.mjs in headless Chromium: bundles it with esbuild (web/node_modules), serves it to
// the browser from memory (page.setContent with the bundle inline), and prints the result.
//   cd web && npm ci --ignore-scripts; cd tests/browser && npm ci; node bench/web_e2e/run.mjs
import { build } from '../../web/node_modules/esbuild/lib/main.js';
import { chromium } from '../../tests/browser/node_modules/playwright-core/index.mjs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:http';

const here = dirname(fileURLToPath(import.meta.url));
const bundle = await build({
  stdin: { contents: "import { measure } from './costs.mjs'; window.measure = measure;", resolveDir: here, loader: 'js' },
  bundle: true, format: 'iife', target: ['es2022'], minify: true, write: false, logLevel: 'warning',
});
const code = bundle.outputFiles[0].text;
const browser = await chromium.launch({ executablePath: process.env.MM_CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  // A page of a real origin (IndexedDB needs one): http://127.0.0.1 is a secure context.
  const server = createServer((_, res) => res.end('<!doctype html><title>bench</title>'));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  server.close();
  await page.addScriptTag({ content: code });
  const result = await page.evaluate(() => window.measure());
  const version = browser.version();
  console.log(JSON.stringify({ where: `chromium ${version}`, unit: 'ms', bundleBytes: code.length, ...result }, null, 1));
} finally {
  await browser.close();
}
