/// <reference lib="dom" />
/**
 * The status page in a real browser (Debian's chromium through puppeteer-core): run by .ci/run
 * (npm run test:browser), which installs chromium; not by npm test. CHROMIUM overrides the path.
 * A screenshot of the page during a failover goes to test-results/status-page-failover.png.
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { exampleSpec, type Harness, hb, serveHarness, startHarness } from '../helpers/control-plane.ts';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SHOT = 'test-results/status-page-failover.png';

let h: Harness;
let http: Awaited<ReturnType<typeof serveHarness>>;
let browser: Browser;
let readOnly: string;
/** Every request the page made: method and URL. */
const requests: string[] = [];

async function phases(id: string, node: string, epoch: number) {
  let seq = 0;
  for (const phase of ['scsi-reservation', 'volume-group', 'filesystem', 'nfs-server', 'exports', 'floating-ip']) {
    h.clock.advance(100);
    const r = await h.call('POST', `/v1/clusters/${id}/nodes/${node}/phases`, {
      reportId: `${node}-${epoch}-${String(++seq).padStart(3, '0')}`,
      epoch,
      phase,
      direction: 'start',
      status: 'succeeded',
      durationMs: 100,
      ...(phase === 'nfs-server' && { commandsMs: 90, commands: [{ command: 'systemctl start nfs-server', ms: 90 }] }),
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
}

async function signedIn(): Promise<Page> {
  const page = await browser.newPage();
  page.on('request', (r) => void requests.push(`${r.method()} ${r.url()}`));
  await page.goto(`${http.url}/`);
  await page.type('input[name=key]', readOnly);
  await page.click('button[type=submit]');
  return page;
}

const holderText = (page: Page, id: string) => page.$eval(`#cluster-${id} [data-role=holder]`, (el) => el.textContent ?? '');

before(async () => {
  h = await startHarness();
  http = await serveHarness(h, { eventStreamPollMs: 100 });
  readOnly = (await h.credentials.issue('operator', { role: 'read-only', name: 'status-page' })).token;
  await h.clusterHeldByNodeA('page-a');
  await phases('page-a', 'node-a', 1);
  await h.call('POST', '/v1/clusters/page-a/nodes/node-b/heartbeat', hb('passive', 0, true));
  assert.equal((await h.call('POST', '/v1/clusters', await exampleSpec('page-vacant'))).status, 201);
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
});
after(async () => {
  await browser?.close();
  await http?.close();
  await h?.close();
});

describe('status page (GET /) in Chromium', () => {
  it('signs in with a read-only key, shows each cluster, and only ever reads', async () => {
    const page = await signedIn();
    await page.waitForSelector('#cluster-page-a [data-role=holder]', { timeout: 10_000 });
    assert.equal(await holderText(page, 'page-a'), 'ACTIVE: node-a');
    await page.waitForSelector('#cluster-page-vacant [data-role=holder]', { timeout: 10_000 });
    assert.equal(await holderText(page, 'page-vacant'), 'VACANT: nobody serves');
    assert.equal(await page.$eval('#cluster-page-a [data-role=epoch]', (el) => el.textContent), 'epoch 1');
    const timeline = await page.$eval('#cluster-page-a [data-role=timeline]', (el) => el.textContent ?? '');
    assert.match(timeline, /fence .*scsi-reservation 0\.1 s.*floating-ip 0\.1 s/);
    const titles = await page.$$eval('#cluster-page-a [data-role=timeline] span', (spans) => spans.map((s) => [s.textContent?.split(' ')[0], s.getAttribute('title')]));
    assert.deepEqual(
      titles.filter(([, title]) => title !== null),
      [['nfs-server', '0.1 s  systemctl start nfs-server']],
      'a step shows its commands when hovered',
    );
    assert.match(await page.$eval('#cluster-page-a tr[data-node=node-b]', (el) => el.textContent ?? ''), /node-bpassive/);
    assert.ok(!page.url().includes(readOnly), 'the key is not in the URL');
    assert.ok(await page.evaluate(() => sessionStorage.getItem('nfs-ha.key') !== null), 'kept in the tab');
    const writes = requests.filter((r) => !r.startsWith('GET '));
    assert.deepEqual(writes, [], 'a read-only key is enough: the page only reads');
    assert.ok(requests.every((r) => !r.includes(readOnly)), 'no request carries the key in its URL');
    await page.close();
  });

  it('shows a failover within a second of the grant, live; a screenshot is kept', async () => {
    const page = await signedIn();
    await page.waitForSelector('#cluster-page-a [data-role=holder]', { timeout: 10_000 });
    await page.waitForFunction(() => document.querySelector('#cluster-page-a')?.textContent?.includes('live'), { timeout: 10_000 });
    // node-a goes silent; node-b, which cannot see it, is granted the lease once it has expired.
    h.clock.advance(3000 + 200 + 1);
    const granted = await h.call('POST', '/v1/clusters/page-a/nodes/node-b/heartbeat', hb('passive', 0, false));
    assert.equal(granted.body.directive.action, 'activate');
    const grantedAt = performance.now();
    await page.waitForFunction(() => document.querySelector('#cluster-page-a [data-role=holder]')?.textContent?.endsWith('node-b'), { timeout: 5000, polling: 20 });
    const shownAfterMs = performance.now() - grantedAt;
    assert.ok(shownAfterMs < 1000, `shown ${Math.round(shownAfterMs)} ms after the grant`);
    assert.equal(await page.$eval('#cluster-page-a [data-role=epoch]', (el) => el.textContent), 'epoch 2');
    await h.call('POST', '/v1/clusters/page-a/nodes/node-b/fencing', { epoch: 2, keys: [], durationMs: 640 });
    await phases('page-a', 'node-b', 2);
    await page.waitForFunction(() => document.querySelector('#cluster-page-a [data-role=timeline]')?.textContent?.includes('floating-ip'), { timeout: 5000 });
    assert.match(await page.$eval('#cluster-page-a [data-role=timeline]', (el) => el.textContent ?? ''), /^fence 0\.6 s/);
    await mkdir('test-results', { recursive: true });
    await page.screenshot({ path: SHOT, fullPage: true });
    console.log(`screenshot of the page after the failover: ${SHOT} (shown ${Math.round(shownAfterMs)} ms after the grant)`);
    await page.close();
  });

  it('is readable on a phone: nothing wider than the screen', async () => {
    const page = await signedIn();
    await page.setViewport({ width: 390, height: 844, isMobile: true });
    await page.waitForSelector('#cluster-page-a [data-role=holder]', { timeout: 10_000 });
    const [scroll, client] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth] as const);
    assert.ok(scroll <= client, `${scroll} px of content in ${client} px`);
    await page.close();
  });

  it('a wrong key is refused with a message, and signing out forgets the key', async () => {
    const page = await browser.newPage();
    await page.goto(`${http.url}/`);
    await page.type('input[name=key]', 'nfsha_op_0000000000000000_wrong');
    await page.click('button[type=submit]');
    await page.waitForFunction(() => document.querySelector('[role=alert]')?.textContent?.includes('refused'), { timeout: 5000 });
    assert.equal(await page.evaluate(() => sessionStorage.getItem('nfs-ha.key')), null);
    await page.type('input[name=key]', readOnly);
    await page.click('button[type=submit]');
    await page.waitForSelector('#who button', { timeout: 10_000 });
    await page.click('#who button');
    await page.waitForSelector('input[name=key]');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('nfs-ha.key')), null);
    await page.close();
  });
});
