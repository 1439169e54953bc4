/**
 * What a stranger, a misbehaving agent or a typo can send, and what it may not cost: the
 * lease's latency, a node, the store, or a secret (issue "Hardening"). Each test fails on the
 * code before the fix it names.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Webhook } from 'standardwebhooks';
import { WebSocket } from 'ws';
import { createApp } from '../../control-plane/app.ts';
import { CLOSE_CLUSTER_DELETED } from '../../control-plane/event-stream.ts';
import { StoreUnavailableError } from '../../control-plane/store/store.ts';
import { sweep } from '../../control-plane/sweep.ts';
import { WebhookDeliverer } from '../../control-plane/webhooks.ts';
import { Arbiter } from '../../control-plane/arbiter.ts';
import { exampleSpec, type Harness, hb, serveHarness, silentLog, startHarness } from '../helpers/control-plane.ts';
import { WebhookReceiver } from '../helpers/webhook-receiver.ts';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(() => h.close());

describe('credentials', () => {
  it('the last admin key cannot be revoked (409); with another admin key it can', async () => {
    const h2 = await startHarness();
    try {
      const keys = (await h2.call('GET', '/v1/keys')).body.keys as { id: string }[];
      assert.equal(keys.length, 1);
      const r = await h2.call('DELETE', `/v1/keys/${keys[0]!.id}`);
      assert.deepEqual([r.status, r.body.error.code], [409, 'last_admin_key']);
      assert.equal((await h2.call('GET', '/v1/keys')).status, 200, 'still works');
      const second = await h2.call('POST', '/v1/keys', { role: 'admin', name: 'second' });
      assert.equal((await h2.call('DELETE', `/v1/keys/${keys[0]!.id}`, undefined, h2.app, second.body.key)).status, 200);
    } finally {
      await h2.close();
    }
  });

  it('agent credentials are listed (without secrets); re-enrolment revokes the old one; rotation keeps the old one for its overlap only', async () => {
    await h.clusterHeldByNodeA('creds');
    const enrol = async () => {
      const e = await h.call('POST', '/v1/clusters/creds/enrolments', { node: 'node-b' });
      return (await h.call('POST', '/v1/enrol', { token: e.body.token }, h.app, null)).body.credential as string;
    };
    const beat = (token: string) => h.call('POST', '/v1/clusters/creds/nodes/node-b/heartbeat', hb('passive'), h.app, token).then((r) => r.status);
    const first = await enrol();
    const second = await enrol();
    assert.deepEqual([await beat(first), await beat(second)], [401, 200], 're-enrolling revoked the first credential');
    const listed = (await h.call('GET', '/v1/clusters/creds/credentials?node=node-b')).body;
    assert.equal(listed.credentials.length, 1);
    assert.ok(!JSON.stringify(listed).includes(second.split('_').at(-1)!), 'no secret in the listing');
    const all = (await h.call('GET', '/v1/clusters/creds/credentials?node=node-b&all=true')).body.credentials as { live: boolean }[];
    assert.deepEqual(all.map((c) => c.live).sort(), [false, true]);

    const rotated = await h.call('POST', '/v1/clusters/creds/credentials', { node: 'node-b', overlapSeconds: 60 });
    assert.equal(rotated.status, 201);
    assert.deepEqual(rotated.body.superseded, [listed.credentials[0].id]);
    assert.deepEqual([await beat(second), await beat(rotated.body.credential)], [200, 200], 'both work during the overlap');
    h.clock.advance(61_000);
    assert.deepEqual([await beat(second), await beat(rotated.body.credential)], [401, 200], 'the old one stops at its end');
  });

  it('a webhook secret rotates with an overlap: every delivery is signed with both, so either verifies', async () => {
    // Receivers check the signature's timestamp against their own clock: this harness runs on it.
    const hw = await startHarness({ clockStart: Date.now() });
    const receiver = new WebhookReceiver();
    await receiver.start();
    try {
      await hw.call('POST', '/v1/clusters', await exampleSpec('whrot'));
      const created = await hw.call('POST', '/v1/clusters/whrot/webhooks', { url: receiver.url });
      receiver.trust(created.body.secret);
      const rotated = await hw.call('POST', `/v1/clusters/whrot/webhooks/${created.body.id}/rotate-secret`, { overlapSeconds: 3600 });
      assert.equal(rotated.status, 200);
      assert.notEqual(rotated.body.secret, created.body.secret);
      await hw.call('POST', `/v1/clusters/whrot/webhooks/${created.body.id}/test`);
      await hw.deliverer.deliverDue();
      const got = receiver.received.at(-1)!;
      assert.ok(got, 'a receiver that knows only the old secret accepts it');
      for (const secret of [created.body.secret, rotated.body.secret]) new Webhook(secret).verify(got.body, got.headers as Record<string, string>);
      // The overlap ended: only the new secret signs.
      const again = await hw.call('POST', `/v1/clusters/whrot/webhooks/${created.body.id}/rotate-secret`, { overlapSeconds: 0 });
      receiver.trust(again.body.secret);
      await hw.call('POST', `/v1/clusters/whrot/webhooks/${created.body.id}/test`);
      await hw.deliverer.deliverDue();
      const later = receiver.received.at(-1)!;
      assert.notEqual(later.id, got.id);
      assert.equal(String(later.headers['webhook-signature']).split(' ').length, 1);
      new Webhook(again.body.secret).verify(later.body, later.headers as Record<string, string>);
    } finally {
      await receiver.stop();
      await hw.close();
    }
  });
});

describe('separate endpoints (the AWS deployment)', () => {
  it("the agents' endpoint serves only the lease protocol and the spec; the public one everything but the lease protocol", async () => {
    await h.clusterHeldByNodeA('surface');
    const agentApp = h.instance({ surface: 'agent' });
    const publicApp = h.instance({ surface: 'operator' });
    const beat = (app: typeof agentApp) => h.call('POST', '/v1/clusters/surface/nodes/node-a/heartbeat', hb('active', 1), app);
    assert.equal((await beat(agentApp)).status, 200);
    assert.equal((await h.call('GET', '/v1/clusters/surface', undefined, agentApp, await h.agentToken('surface', 'node-a'))).status, 200);
    for (const path of ['/v1/keys', '/v1/clusters', '/install.sh', '/openapi.json']) assert.equal((await agentApp.request(path)).status, 404, path);
    assert.equal((await h.call('POST', '/v1/enrol', { token: 'x' }, agentApp, null)).status, 404, 'enrolment is public: not on the agents’ endpoint');
    assert.equal((await beat(publicApp)).status, 404);
    assert.equal((await h.call('GET', '/v1/clusters', undefined, publicApp)).status, 200);
  });
});

describe('webhook destinations', () => {
  it('loopback, link-local, private and metadata addresses are refused, also by name, unless allowlisted', async () => {
    const strict = createApp({ store: h.store, clock: h.clock, log: silentLog, credentials: h.credentials, options: { webhookAllow: [] } });
    await h.clusterHeldByNodeA('ssrf');
    for (const url of [
      'http://127.0.0.1:8080/v1/keys',
      'http://169.254.169.254/latest/meta-data/',
      'http://10.1.2.3/',
      'http://[::1]:9/',
      'http://localhost:4567/',
    ]) {
      const r = await h.call('POST', '/v1/clusters/ssrf/webhooks', { url }, strict);
      assert.deepEqual([r.status, r.body.error.code], [400, 'webhook_destination_refused'], url);
    }
    assert.match(
      (await h.call('POST', '/v1/clusters/ssrf/webhooks', { url: 'http://localhost:4567/' }, strict)).body.error.message,
      /localhost resolves to 127\.0\.0\.1 is a loopback/,
    );
    // Allowed by the operator's list (the harness allows 127.0.0.1).
    assert.equal((await h.call('POST', '/v1/clusters/ssrf/webhooks', { url: 'http://127.0.0.1:9/hook' })).status, 201);
  });

  it('a delivery checks again at connection time: nothing reaches a refused address', async () => {
    const receiver = new WebhookReceiver();
    await receiver.start();
    try {
      await h.clusterHeldByNodeA('ssrf2');
      const ok = await h.call('POST', '/v1/clusters/ssrf2/webhooks', { url: receiver.url });
      // The operator narrows the allowlist: the deliverer of a stricter instance refuses at delivery.
      const strict = new WebhookDeliverer(h.store, h.clock, silentLog);
      await h.call('POST', `/v1/clusters/ssrf2/webhooks/${ok.body.id}/test`);
      const before = receiver.received.length;
      await strict.deliverDue();
      assert.equal(receiver.received.length, before, 'nothing sent');
      const d = (await h.call('GET', `/v1/clusters/ssrf2/webhooks/${ok.body.id}/deliveries`)).body.deliveries[0];
      assert.match(d.attempts[0].error, /refused: 127\.0\.0\.1 is a loopback, link-local or private address/);
    } finally {
      await receiver.stop();
    }
  });

  it('read-only keys see a webhook URL as its origin only, and no attempt’s error text', async () => {
    await h.clusterHeldByNodeA('redact');
    const w = await h.call('POST', '/v1/clusters/redact/webhooks', { url: 'http://127.0.0.1:9/services/T000/B000/XXXXsecret' });
    await h.call('POST', `/v1/clusters/redact/webhooks/${w.body.id}/test`);
    await h.deliverer.deliverDue();
    const viewer = (await h.credentials.issue('operator', { role: 'read-only', name: 'viewer' })).token;
    const listed = (await h.call('GET', '/v1/clusters/redact/webhooks', undefined, h.app, viewer)).body.webhooks;
    assert.deepEqual(
      listed.map((x: { url: string }) => x.url),
      ['http://127.0.0.1:9/…'],
    );
    const one = (await h.call('GET', `/v1/clusters/redact/webhooks/${w.body.id}`, undefined, h.app, viewer)).body;
    assert.equal(one.url, 'http://127.0.0.1:9/…');
    const d = (await h.call('GET', `/v1/clusters/redact/webhooks/${w.body.id}/deliveries`, undefined, h.app, viewer)).body.deliveries[0];
    assert.equal(d.attempts[0].httpStatus, null);
    assert.equal(d.attempts[0].error, 'failed (details for admin keys)');
    const admin = (await h.call('GET', `/v1/clusters/redact/webhooks/${w.body.id}/deliveries`)).body.deliveries[0];
    assert.match(admin.attempts[0].error, /ECONNREFUSED/);
    assert.match((await h.call('GET', `/v1/clusters/redact/webhooks/${w.body.id}`)).body.url, /XXXXsecret$/);
  });
});

describe('what agents may report', () => {
  it('a node cannot post stop reports for epochs it never held, nor flood the timeline', async () => {
    await h.clusterHeldByNodeA('reports');
    const report = (i: number, epoch: number) => ({
      reportId: `flood-${String(i).padStart(6, '0')}`,
      epoch,
      phase: 'exports',
      direction: 'stop',
      status: 'succeeded',
      message: 'x'.repeat(2000),
    });
    const old = await h.call('POST', '/v1/clusters/reports/nodes/node-b/phases', report(0, 1));
    assert.deepEqual([old.status, old.body.error.code], [409, 'stale_epoch'], 'node-b never held epoch 1');
    const statuses: number[] = [];
    for (let i = 1; i <= 80; i++) statuses.push((await h.call('POST', '/v1/clusters/reports/nodes/node-a/phases', report(i, 1))).status);
    assert.ok(statuses.filter((s) => s === 201).length <= 61, `at most a burst is stored (${statuses.filter((s) => s === 201).length})`);
    assert.ok(statuses.includes(429));
  });
});

describe('reads are bounded', () => {
  it('the fencing history comes in pages, newest first, with a cursor', async () => {
    await h.clusterHeldByNodeA('history');
    for (let epoch = 2; epoch <= 6; epoch++) {
      const [to, from] = epoch % 2 === 0 ? ['node-b', 'node-a'] : ['node-a', 'node-b'];
      await h.call('POST', `/v1/clusters/history/nodes/${from}/release`, { epoch: epoch - 1, reason: 'shutdown' });
      await h.call('POST', `/v1/clusters/history/nodes/${to}/heartbeat`, hb('passive'));
      await h.call('POST', `/v1/clusters/history/nodes/${to}/fencing`, { epoch, keys: [] });
      h.clock.advance(10);
    }
    const page1 = (await h.call('GET', '/v1/clusters/history/fencing?limit=2')).body;
    assert.deepEqual(
      page1.fencing.map((f: { epoch: number }) => f.epoch),
      [6, 5],
    );
    assert.ok(page1.fencing.every((f: { confirmedAt: string | null }) => f.confirmedAt));
    const page2 = (await h.call('GET', `/v1/clusters/history/fencing?limit=10&cursor=${page1.cursor}`)).body;
    assert.deepEqual(
      page2.fencing.map((f: { epoch: number }) => f.epoch),
      [4, 3, 2, 1],
    );
    assert.equal(page2.cursor, null);
    const clusters = (await h.call('GET', '/v1/clusters?limit=1')).body;
    assert.equal(clusters.clusters.length, 1);
    assert.ok(clusters.cursor);
  });

  it('events are kept for a bounded time: the sweep prunes them on the embedded store', async () => {
    await h.clusterHeldByNodeA('prune');
    const before = (await h.call('GET', '/v1/clusters/prune/events')).body.events.length;
    assert.ok(before > 0);
    h.clock.advance(91 * 86_400_000);
    await h.call('PUT', '/v1/clusters/prune/maintenance', { enabled: true });
    const r = await sweep({
      store: h.store,
      arbiter: new Arbiter(h.store, h.clock, silentLog),
      deliverer: h.deliverer,
      clock: h.clock,
      log: silentLog,
      pruneEventsOlderThanMs: 90 * 86_400_000,
    });
    assert.ok(r.pruned >= before);
    const left = (await h.call('GET', '/v1/clusters/prune/events')).body.events as { type: string; at: number }[];
    assert.ok(
      left.some((e) => e.type === 'maintenance.changed'),
      'the recent event stays',
    );
    assert.ok(
      left.every((e) => e.at >= h.clock.now() - 90 * 86_400_000),
      'nothing older than the retention is left',
    );
  });

  it('store trouble is a 503 with Retry-After', async () => {
    const broken = new Proxy(h.store, {
      get: (target, prop, receiver) =>
        prop === 'getCluster'
          ? () => Promise.reject(new StoreUnavailableError('down'))
          : (Reflect.get(target, prop, receiver) as (...a: unknown[]) => unknown).bind(target),
    });
    const app = createApp({ store: broken, clock: h.clock, log: silentLog, credentials: h.credentials });
    const r = await app.request('/v1/clusters/x', { headers: { authorization: `Bearer ${h.adminToken}` } });
    assert.deepEqual([r.status, r.headers.get('retry-after')], [503, '1']);
  });

  it('the arbiter logs a grant once, not at every renewal of a holder still fencing', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _e, done) => (lines.push(String(chunk)), done()) });
    const app = createApp({ store: h.store, clock: h.clock, log: pino({ level: 'info' }, sink), credentials: h.credentials });
    await h.call('POST', '/v1/clusters', await exampleSpec('grantlog'));
    for (let i = 0; i < 5; i++) {
      await h.call('POST', '/v1/clusters/grantlog/nodes/node-a/heartbeat', hb(i === 0 ? 'passive' : 'activating', i === 0 ? 0 : 1), app);
      h.clock.advance(500);
    }
    assert.equal(lines.filter((l) => l.includes('granted epoch 1')).length, 1);
  });
});

describe('live streams', () => {
  it('one poller per cluster, streams capped per key, and they end when their cluster is deleted', async () => {
    await h.clusterHeldByNodeA('streams');
    let reads = 0;
    const listEvents = h.store.listEvents.bind(h.store);
    h.store.listEvents = (...args) => (reads++, listEvents(...args));
    const http = await serveHarness(h, { eventStreamPollMs: 50 });
    const open = (token: string) =>
      new Promise<{ status: number; ws?: WebSocket; closed?: Promise<number> }>((resolve, reject) => {
        const ws = new WebSocket(`${http.url.replace('http', 'ws')}/v1/clusters/streams/events/stream`, { headers: { authorization: `Bearer ${token}` } });
        const closed = new Promise<number>((ok) => ws.on('close', (code) => ok(code)));
        ws.on('open', () => resolve({ status: 101, ws, closed }));
        ws.on('unexpected-response', (_q, res) => resolve({ status: res.statusCode ?? 0 }));
        ws.on('error', reject);
      });
    try {
      const keys = await Promise.all(Array.from({ length: 4 }, (_, i) => h.credentials.issue('operator', { role: 'read-only', name: `s${i}` })));
      const streams = [];
      for (const k of keys) for (let i = 0; i < 5; i++) streams.push(await open(k.token));
      assert.ok(streams.every((s) => s.status === 101));
      assert.equal((await open(keys[0]!.token)).status, 429, 'a sixth stream for one key');
      reads = 0;
      await new Promise((r) => setTimeout(r, 500));
      // 20 streams, one poller: about ten polls in 500 ms, not two hundred.
      assert.ok(reads <= 25, `${reads} store reads for 20 streams in 500 ms`);
      h.store.listEvents = listEvents;
      // The cluster goes: every stream ends with 4404.
      await h.call('DELETE', '/v1/clusters/streams').then(async (r) => {
        if (r.status === 409) {
          // In use (node-a holds it): release, wait past the status window, then delete.
          await h.call('POST', '/v1/clusters/streams/nodes/node-a/release', { epoch: 1, reason: 'shutdown' });
          h.clock.advance(61_000);
          assert.equal((await h.call('DELETE', '/v1/clusters/streams')).status, 204);
        }
      });
      const codes = await Promise.all(streams.map((s) => s.closed!));
      assert.ok(
        codes.every((c) => c === CLOSE_CLUSTER_DELETED),
        `close codes ${[...new Set(codes)].join(', ')}`,
      );
    } finally {
      h.store.listEvents = listEvents;
      await http.close();
    }
  });
});
