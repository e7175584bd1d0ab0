import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { selfSignedCertificate } from '../support/certificates.js';
import { startGateway, type TestGateway } from '../support/gateway.js';

const CHROMIUM = '/usr/bin/chromium';

let dir: string;
let gw: TestGateway;
let browser: Browser;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install chromium (see .ci/run)`);
  dir = mkdtempSync(join(tmpdir(), 'switchboard-browser-'));
  const { cert, key } = selfSignedCertificate(dir);
  gw = await startGateway({ TLS_CERT_FILE: cert, TLS_KEY_FILE: key });
  // The flags keep Chromium off the network this machine does not have; the certificate is self-signed.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--ignore-certificate-errors'],
  });
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

test('a real browser connects over wss with a self-signed certificate, gets ready and an event', async () => {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await page.goto(`https://127.0.0.1:${gw.publicPort}/health`);
  const url = (await gw.userUrl('browser', 'desk', 'u1')).replace('ws://', 'wss://');
  await page.evaluate((wssUrl) => {
    const frames: string[] = [];
    (globalThis as unknown as { frames: string[] }).frames = frames;
    const socket = new WebSocket(wssUrl, 'json.v1');
    socket.onmessage = (message) => frames.push(String(message.data));
  }, url);
  const frames = async () => page.evaluate(() => (globalThis as unknown as { frames: string[] }).frames);
  await page.waitForFunction(() => (globalThis as unknown as { frames: string[] }).frames.length > 0, undefined, { timeout: 10_000 });
  assert.deepEqual(await frames(), ['{"type":"ready"}']);
  await gw.publish('websocket.browser.desk.chats', { event_id: 'to-the-browser' });
  await page.waitForFunction(() => (globalThis as unknown as { frames: string[] }).frames.length > 1, undefined, { timeout: 10_000 });
  assert.deepEqual(JSON.parse((await frames())[1] ?? '{}'), { type: 'event', payload: { event_id: 'to-the-browser' } });
  await context.close();
});
