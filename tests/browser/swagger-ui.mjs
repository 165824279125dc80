// Drives the Swagger UI served at /docs in headless Debian Chromium:
// the operations are listed, "Try it out" PUTs a value and GETs it back,
// and a screenshot is kept in tests/artifacts/. Usage:
//   node tests/browser/swagger-ui.mjs http://127.0.0.1:8080
// playwright-core is pinned to ~1.57, a line that still supports
// the Node 18 Debian 12 ships; it never downloads a browser.
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const base = process.argv[2] ?? process.env.MEMCACHED_LITE_HTTP;
if (!base) throw new Error('usage: swagger-ui.mjs <http base url>');
const artifacts = join(dirname(fileURLToPath(import.meta.url)), '..', 'artifacts');
mkdirSync(artifacts, { recursive: true });

const key = `browser-${process.pid}`;
const value = `hello from chromium ${Date.now()}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 60_000,
});
const page = await browser.newPage({ viewport: { width: 1280, height: 1800 }, acceptDownloads: true });
page.setDefaultTimeout(20_000);
// Everything must come from the server itself: fail on any other origin.
const foreign = [];
page.on('request', (r) => { if (!r.url().startsWith(base) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) foreign.push(r.url()); });

try {
  await page.goto(`${base}/docs`);
  await page.waitForSelector('.opblock');
  const title = await page.textContent('.info .title');
  assert.match(title, /memcached-lite HTTP API/);

  // Every operation of the document is listed.
  const listed = await page.$$eval('.opblock', (els) => els.map((e) => e.id));
  for (const op of ['put_item', 'get_item', 'head_item', 'delete_item', 'incr_item', 'decr_item',
    'touch_item', 'list_items', 'watch', 'stats', 'flush', 'healthz', 'readyz', 'export_csv', 'metrics']) {
    assert.ok(listed.some((id) => id.endsWith(`-${op}`)), `operation ${op} listed (got ${listed})`);
  }

  // PUT via "Try it out".
  const put = page.locator('.opblock[id$="-put_item"]');
  await put.locator('.opblock-summary').first().click();
  await put.locator('.try-out__btn').click();
  await put.locator('tr[data-param-name="key"] input').fill(key);
  await put.locator('tr[data-param-name="flags"] input').fill('7');
  await put.locator('.body-param-content-type select').selectOption('text/plain');
  await put.locator('textarea.body-param__text').fill(value);
  await put.locator('.execute').click();
  const putStatus = put.locator('.live-responses-table .response .response-col_status').first();
  await putStatus.waitFor();
  assert.equal((await putStatus.textContent()).trim(), '201');
  const putHeaders = await put.locator('.live-responses-table .response .response-col_description').first().textContent();
  const etag = putHeaders.match(/etag:\s*"(\d+)"/i)?.[1];
  assert.ok(etag, `ETag shown after PUT: ${putHeaders}`);

  // GET it back via "Try it out".
  const get = page.locator('.opblock[id$="-get_item"]');
  await get.locator('.opblock-summary').first().click();
  await get.locator('.try-out__btn').click();
  await get.locator('tr[data-param-name="key"] input').fill(key);
  await get.locator('.execute').click();
  const getStatus = get.locator('.live-responses-table .response .response-col_status').first();
  await getStatus.waitFor();
  assert.equal((await getStatus.textContent()).trim(), '200');
  const shown = await get.locator('.live-responses-table .response .response-col_description').first().textContent();
  assert.match(shown, new RegExp(`etag:\\s*"${etag}"`, 'i'), 'same ETag shown on GET');
  assert.match(shown, /x-flags:\s*7/i, 'flags shown on GET');
  // Binary responses are offered as a download: fetch it and compare bytes.
  const link = get.locator('.live-responses-table a', { hasText: 'Download file' });
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  const got = readFileSync(await download.path(), 'utf8');
  assert.equal(got, value, 'value round-trips through the UI');
  // The request URL shown is the same origin, key in the path.
  const reqUrl = await get.locator('.request-url pre').first().textContent();
  assert.equal(reqUrl.trim(), `${base}/v1/keys/${key}`);

  await get.scrollIntoViewIfNeeded();
  const shot = join(artifacts, 'swagger-ui.png');
  await page.screenshot({ path: shot, fullPage: true });
  // A readable close-up of the GET operation with its live response.
  await get.screenshot({ path: join(artifacts, 'swagger-ui-get.png') });
  assert.deepEqual(foreign, [], 'no request left the server');
  console.log(`swagger-ui browser test passed (PUT 201, GET 200, ETag "${etag}"); screenshot ${shot}`);
} catch (e) {
  await page.screenshot({ path: join(artifacts, 'swagger-ui-failure.png'), fullPage: true }).catch(() => {});
  throw e;
} finally {
  await browser.close();
}
