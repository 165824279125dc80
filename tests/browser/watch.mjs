// GET /v1/watch in headless Debian Chromium: a page's EventSource sees the
// changes made over the memcached text, meta and binary protocols and over
// HTTP, in order, with increasing ids and the values; when the server
// restarts, the browser reconnects by itself sending Last-Event-ID, gets
// `resync` (the history does not survive a restart) and then live changes
// with higher revisions. Usage (tests/clients/test_watch_browser.py runs it):
//   node tests/browser/watch.mjs <http base url> <memcached port>
// The restart is the caller's: this script prints `restart-server` and
// waits for a line on stdin once the server is back on the same ports.
import { chromium } from 'playwright-core';
import net from 'node:net';
import readline from 'node:readline';
import assert from 'node:assert/strict';

const [base, mcPort] = [process.argv[2], Number(process.argv[3])];
if (!base || !mcPort) throw new Error('usage: watch.mjs <http base url> <memcached port>');
const prefix = `ev-${process.pid}:`;

/** Sends raw bytes to the memcached port and resolves with the reply once it ends with `end`. */
function memcached(bytes, end) {
  return new Promise((resolve, reject) => {
    const s = net.connect(mcPort, '127.0.0.1', () => s.write(bytes));
    let got = Buffer.alloc(0);
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.subarray(-end.length).equals(end)) { s.end(); resolve(got); }
    });
    s.on('error', reject);
  });
}
const text = (cmd) => memcached(Buffer.from(cmd), Buffer.from('\r\n'));

/** A binary-protocol set: 24-byte header, 8 bytes of extras (flags, exptime), key, value. */
function binarySet(key, value, flags) {
  const k = Buffer.from(key); const v = Buffer.from(value);
  const h = Buffer.alloc(24);
  h[0] = 0x80; h[1] = 0x01; h.writeUInt16BE(k.length, 2); h[4] = 8;
  h.writeUInt32BE(8 + k.length + v.length, 8);
  const extras = Buffer.alloc(8); extras.writeUInt32BE(flags, 0);
  return new Promise((resolve, reject) => {
    const s = net.connect(mcPort, '127.0.0.1', () => s.write(Buffer.concat([h, extras, k, v])));
    s.on('data', (d) => { if (d.length >= 24) { assert.equal(d.readUInt16BE(6), 0, 'binary set ok'); s.end(); resolve(); } });
    s.on('error', reject);
  });
}

const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 60_000,
});
const page = await browser.newPage();
page.setDefaultTimeout(30_000);
try {
  // Any page of the server's origin will do; the stream is same-origin.
  await page.goto(`${base}/healthz`);
  await page.evaluate((prefix) => {
    window.got = [];
    window.opened = 0;
    const es = new EventSource(`/v1/watch?prefix=${encodeURIComponent(prefix)}&values=true`);
    es.onopen = () => { window.opened += 1; };
    for (const kind of ['set', 'delete', 'expire', 'flush', 'resync']) {
      es.addEventListener(kind, (e) => window.got.push({ kind, id: e.lastEventId, data: JSON.parse(e.data) }));
    }
    window.es = es;
  }, prefix);
  await page.waitForFunction(() => window.opened === 1);

  assert.equal((await text(`set ${prefix}text 3 0 4\r\ntext\r\n`)).toString(), 'STORED\r\n');
  assert.equal((await text(`set other 0 0 1\r\nx\r\n`)).toString(), 'STORED\r\n');
  assert.equal((await text(`ms ${prefix}meta 4 F5\r\nmeta\r\n`)).toString(), 'HD\r\n');
  await binarySet(`${prefix}binary`, 'bin!', 9);
  const put = await fetch(`${base}/v1/keys/${encodeURIComponent(prefix + 'http')}`, { method: 'PUT', body: 'via http' });
  assert.equal(put.status, 201);
  assert.equal((await text(`delete ${prefix}text\r\n`)).toString(), 'DELETED\r\n');

  await page.waitForFunction(() => window.got.length >= 5);
  const got = await page.evaluate(() => window.got);
  assert.deepEqual(got.map((e) => [e.kind, e.data.key]), [
    ['set', `${prefix}text`], ['set', `${prefix}meta`], ['set', `${prefix}binary`],
    ['set', `${prefix}http`], ['delete', `${prefix}text`],
  ]);
  const ids = got.map((e) => BigInt(e.id));
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i] > ids[i - 1], `ids increase: ${ids}`);
  assert.deepEqual(got.map((e) => e.data.value && Buffer.from(e.data.value, 'base64').toString()),
    ['text', 'meta', 'bin!', 'via http', undefined]);
  assert.deepEqual(got.slice(0, 3).map((e) => e.data.flags), [3, 5, 9]);
  const lastBefore = ids[ids.length - 1];

  // The server restarts on the same ports: the browser reconnects on its
  // own with Last-Event-ID, which the new process no longer holds: resync.
  console.log('restart-server');
  await nextLine();
  await page.waitForFunction(() => window.opened === 2, null, { timeout: 60_000 });
  await page.waitForFunction(() => window.got.some((e) => e.kind === 'resync'));
  assert.equal((await text(`set ${prefix}after 0 0 5\r\nafter\r\n`)).toString(), 'STORED\r\n');
  await page.waitForFunction(() => window.got.length >= 7);
  const after = (await page.evaluate(() => window.got)).slice(5);
  assert.equal(after[0].kind, 'resync');
  assert.equal(after[0].data.reason, 'history', 'the browser sent Last-Event-ID');
  assert.equal(after[1].kind, 'set');
  assert.equal(after[1].data.key, `${prefix}after`);
  assert.ok(BigInt(after[1].id) > lastBefore, 'revisions keep increasing across the restart');
  await page.evaluate(() => window.es.close());
  console.log('browser watch test passed');
} finally {
  await browser.close();
  lines.close();
}
