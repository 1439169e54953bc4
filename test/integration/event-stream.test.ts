/** Live events over WebSocket, and `nfs-ha events --follow`, against a control plane on loopback. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { type Harness, hb, serveHarness, startHarness } from '../helpers/control-plane.ts';

const root = new URL('../..', import.meta.url).pathname;
let h: Harness;
let http: Awaited<ReturnType<typeof serveHarness>>;

before(async () => {
  h = await startHarness();
  http = await serveHarness(h);
  await h.clusterHeldByNodeA('live');
});
after(async () => {
  await http.close();
  await h.close();
});

const streamUrl = (cluster: string, cursor?: string) =>
  `${http.url.replace('http', 'ws')}/v1/clusters/${cluster}/events/stream${cursor ? `?cursor=${cursor}` : ''}`;

/** Opens a stream; resolves with the status of a refused upgrade, or the open socket and what it receives. */
function connect(url: string, token: string | null): Promise<{ status: number; ws?: WebSocket; received: { type: string; id: string; at: number }[] }> {
  return new Promise((resolve, reject) => {
    const received: { type: string; id: string; at: number }[] = [];
    const ws = new WebSocket(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    ws.on('message', (d) => received.push(JSON.parse(String(d))));
    ws.on('open', () => resolve({ status: 101, ws, received }));
    ws.on('unexpected-response', (_req, res) => resolve({ status: res.statusCode ?? 0, received }));
    ws.on('error', reject);
  });
}

async function until(what: string, probe: () => boolean): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (probe()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe('live events (WebSocket)', () => {
  it('authenticated like the API: none 401, bad 401, an agent of another node 403, unknown cluster 404', async () => {
    assert.equal((await connect(streamUrl('live'), null)).status, 401);
    assert.equal((await connect(streamUrl('live'), 'nfsha_op_0000000000000000_' + 'x'.repeat(43))).status, 401);
    assert.equal((await connect(streamUrl('live'), await h.agentToken('other', 'node-a'))).status, 403);
    assert.equal((await connect(streamUrl('nope'), h.adminToken)).status, 404);
    assert.equal((await connect(streamUrl('live', 'not-a-cursor'), h.adminToken)).status, 400);
  });

  it('streams new events as they are recorded, and resumes after a cursor with nothing lost', async () => {
    const readOnly = (await h.credentials.issue('operator', { role: 'read-only', name: 'stream' })).token;
    const live = await connect(streamUrl('live'), readOnly);
    assert.equal(live.status, 101);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(live.received.length, 0, 'starts at the end of the timeline');
    await h.call('PUT', '/v1/clusters/live/maintenance', { enabled: true });
    await until('maintenance.changed', () => live.received.some((e) => e.type === 'maintenance.changed'));
    const seen = live.received.at(-1)!;
    live.ws!.close();

    // While nobody listens: two more events. Resuming after the last one seen delivers both.
    await h.call('PUT', '/v1/clusters/live/maintenance', { enabled: false });
    await h.call('POST', '/v1/clusters/live/nodes/node-b/heartbeat', hb('passive'));
    await h.call('PUT', '/v1/clusters/live/standby/node-b', { enabled: true });
    const resumed = await connect(streamUrl('live', `${seen.at}.${seen.id}`), h.adminToken);
    await until('the missed events', () => resumed.received.length >= 2);
    assert.deepEqual(
      resumed.received.map((e) => e.type),
      ['maintenance.changed', 'standby.changed'],
    );
    resumed.ws!.close();
  });

  it("a browser's way: the key offered as a subprotocol, never in the URL; the plain subprotocol is the one answered", async () => {
    const readOnly = (await h.credentials.issue('operator', { role: 'read-only', name: 'browser' })).token;
    const opened = await new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(streamUrl('live'), ['nfs-ha', `nfs-ha.bearer.${readOnly}`]);
      ws.on('open', () => resolve(ws));
      ws.on('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.on('error', reject);
    });
    assert.equal(opened.protocol, 'nfs-ha');
    const received: string[] = [];
    opened.on('message', (d) => received.push((JSON.parse(String(d)) as { type: string }).type));
    await new Promise((r) => setTimeout(r, 150));
    // Later than the last event on the timeline (the harness's clock stands still otherwise).
    h.clock.advance(1);
    await h.call('PUT', '/v1/clusters/live/maintenance', { enabled: true });
    await until('maintenance.changed', () => received.includes('maintenance.changed'));
    opened.close();
    await h.call('PUT', '/v1/clusters/live/maintenance', { enabled: false });
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(streamUrl('live'), ['nfs-ha', 'nfs-ha.bearer.nfsha_op_0000000000000000_nope']);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
    });
    assert.equal(refused, 401);
  });

  it('nfs-ha events --follow: the recent past, then each new event as it happens', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'control-plane/cli.ts', 'events', 'live', '--follow', '--json', '--limit', '2'], {
      cwd: root,
      env: { ...process.env, NFSHA_URL: http.url, NFSHA_API_KEY: h.adminToken },
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    try {
      await until('the recent events', () => stdout.split('\n').filter(Boolean).length >= 2);
      assert.equal(stdout.split('\n').filter(Boolean).length, 2, '--limit 2 recent events first');
      await h.call('PUT', '/v1/clusters/live/standby/node-b', { enabled: false });
      await until('the new event', () => stdout.includes('"enabled":false') && stdout.split('\n').filter(Boolean).length >= 3);
      const last = JSON.parse(stdout.split('\n').filter(Boolean).at(-1)!) as { type: string; node: string };
      assert.deepEqual([last.type, last.node], ['standby.changed', 'node-b']);
    } finally {
      child.kill();
    }
  });
});
