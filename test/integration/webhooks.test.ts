import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Arbiter } from '../../control-plane/arbiter.ts';
import { LEASE_EXPIRED_ALERT_MS, sweep } from '../../control-plane/sweep.ts';
import { AddressSet } from '../../control-plane/limits.ts';
import { DeliveryLoop, WebhookDeliverer } from '../../control-plane/webhooks.ts';
import { PHASES } from '../../shared/events.ts';
import { type Harness, exampleSpec, hb, LOOPBACK_ALLOWED, silentLog, startHarness } from '../helpers/control-plane.ts';
import { WebhookReceiver } from '../helpers/webhook-receiver.ts';

const RETRY = { baseDelayMs: 1000, maxDelayMs: 8000, maxAttempts: 4 };
let h: Harness;
let receiver: WebhookReceiver;

before(async () => {
  // The receiver checks timestamps against its own clock (5 min tolerance): start the control
  // plane's manual clock at the real time.
  h = await startHarness({ clockStart: Date.now(), delivery: { retry: RETRY, timeoutMs: 2000 } });
  receiver = new WebhookReceiver();
  await receiver.start();
});
after(async () => {
  await receiver.stop();
  await h.close();
});
beforeEach(() => {
  receiver.received.length = 0;
  receiver.answer = 204;
});

async function subscribe(clusterId: string, body: Record<string, unknown> = {}) {
  const r = await h.call('POST', `/v1/clusters/${clusterId}/webhooks`, { url: receiver.url, ...body });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  receiver.trust(r.body.secret);
  return r.body as { id: string; secret: string };
}

async function newCluster(id: string) {
  const r = await h.call('POST', '/v1/clusters', await exampleSpec(id));
  assert.equal(r.status, 201);
}

/** The holder's activation as its agent reports it: fencing, then every start phase. */
async function takeOver(clusterId: string, node: string) {
  const d = (await h.call('POST', `/v1/clusters/${clusterId}/nodes/${node}/heartbeat`, hb('passive'))).body.directive;
  assert.equal(d.action, 'activate');
  h.clock.advance(40);
  assert.equal((await h.call('POST', `/v1/clusters/${clusterId}/nodes/${node}/fencing`, { epoch: d.epoch, keys: d.fence.keys, durationMs: 40 })).status, 200);
  for (const [i, phase] of PHASES.slice(1).entries()) {
    h.clock.advance(100 * (i + 1));
    const r = await h.call('POST', `/v1/clusters/${clusterId}/nodes/${node}/phases`, {
      reportId: randomUUID(),
      epoch: d.epoch,
      phase,
      direction: 'start',
      status: 'succeeded',
      durationMs: 100 * (i + 1),
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
  return d.epoch as number;
}

async function deliveries(clusterId: string, webhookId: string) {
  const r = await h.call('GET', `/v1/clusters/${clusterId}/webhooks/${webhookId}/deliveries?limit=100`);
  assert.equal(r.status, 200);
  return r.body.deliveries as {
    id: string;
    type: string;
    status: string;
    messageId: string;
    attempts: { httpStatus: number | null; error: string | null }[];
  }[];
}

describe('webhooks', () => {
  it('subscriptions: created with a secret shown once, listed without it, validated, deleted', async () => {
    await newCluster('wh-crud');
    const created = await subscribe('wh-crud', { types: ['failover.completed', 'node.fenced'], description: 'pager' });
    assert.match(created.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
    const list = await h.call('GET', '/v1/clusters/wh-crud/webhooks');
    assert.deepEqual(
      list.body.webhooks.map((w: Record<string, unknown>) => [w.id, w.url, w.types, w.description, 'secret' in w]),
      [[created.id, receiver.url, ['failover.completed', 'node.fenced'], 'pager', false]],
    );
    for (const [body, field] of [
      [{ url: 'ftp://example.com/x' }, 'url'],
      [{ url: 'https://user:pw@example.com/x' }, 'url'],
      [{ url: receiver.url, types: ['node.exploded'] }, 'types'],
      [{ url: receiver.url, secret: 'mine' }, 'secret'],
    ] as const) {
      const r = await h.call('POST', '/v1/clusters/wh-crud/webhooks', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.error.code, 'invalid_request');
      assert.match(JSON.stringify(r.body.error), new RegExp(field));
    }
    assert.equal((await h.call('POST', '/v1/clusters/nope/webhooks', { url: receiver.url })).body.error.code, 'cluster_not_found');
    assert.equal((await h.call('GET', '/v1/clusters/wh-crud/webhooks/wh_0000000000000000')).status, 404);
    assert.equal((await h.call('GET', '/v1/clusters/wh-crud/webhooks/../../keys')).status, 404);
    assert.equal((await h.call('DELETE', `/v1/clusters/wh-crud/webhooks/${created.id}`)).status, 204);
    assert.equal((await h.call('DELETE', `/v1/clusters/wh-crud/webhooks/${created.id}`)).status, 404);
    assert.deepEqual((await h.call('GET', '/v1/clusters/wh-crud/webhooks')).body.webhooks, []);
  });

  it('a cold start and a failover reach the receiver signed, each subscriber getting only the types it asked for', async () => {
    await newCluster('wh-failover');
    const all = await subscribe('wh-failover');
    const filtered = await subscribe('wh-failover', { types: ['node.fenced', 'maintenance.changed'] });
    await takeOver('wh-failover', 'node-a');
    h.clock.advance(3000 + 200 + 1); // node-a silent past its lease
    const epoch = await takeOver('wh-failover', 'node-b');
    const failed = await h.call('POST', '/v1/clusters/wh-failover/nodes/node-b/phases', {
      reportId: randomUUID(),
      epoch,
      phase: 'nfs-server',
      direction: 'monitor',
      status: 'failed',
      message: 'nfsd runs 0 threads',
    });
    assert.equal(failed.status, 201);
    assert.equal((await h.call('PUT', '/v1/clusters/wh-failover/maintenance', { enabled: true })).status, 200);

    const pass = await h.deliverer.deliverDue();
    assert.equal(pass.failed, 0);
    assert.deepEqual(receiver.rejected, [], 'every signature verified');
    const seen = receiver.received.map((r) => `${r.type} ${r.data.to ?? r.data.node ?? ''}`.trim());
    assert.deepEqual(seen.sort(), [
      'failover.completed node-a',
      'failover.completed node-b',
      'failover.started node-a',
      'failover.started node-b',
      'lease.lost node-a',
      'maintenance.changed',
      'maintenance.changed', // the filtered subscriber's
      'node.fenced node-a',
      'node.fenced node-a', // the filtered subscriber's
      'resource.failed node-b',
    ]);
    const byType = new Map(receiver.received.map((r) => [`${r.type}${r.data.to ?? r.data.node ?? ''}`, r]));
    const completed = byType.get('failover.completednode-b')!;
    assert.deepEqual(
      { ...completed.data, phases: Object.keys(completed.data.phases) },
      { clusterId: 'wh-failover', epoch: 2, from: 'node-a', to: 'node-b', reason: 'lease-expired', takeoverMs: 40 + 2100, phases: [...PHASES] },
    );
    assert.equal(completed.data.phases['floating-ip'], 600);
    assert.equal(completed.data.phases.fence, 40);
    const { keys, ...fenced } = byType.get('node.fencednode-a')!.data;
    assert.deepEqual(fenced, { clusterId: 'wh-failover', node: 'node-a', by: 'node-b', epoch: 2, durationMs: 40 });
    assert.match(keys.join(), /^0x[0-9a-f]{16}$/, "node-a's key");
    assert.deepEqual(byType.get('lease.lostnode-a')!.data, {
      clusterId: 'wh-failover',
      node: 'node-a',
      epoch: 1,
      reason: 'lease-expired',
      newHolder: 'node-b',
    });
    assert.deepEqual(byType.get('resource.failednode-b')!.data, {
      clusterId: 'wh-failover',
      node: 'node-b',
      epoch: 2,
      resource: 'nfs-server',
      during: 'monitor',
      message: 'nfsd runs 0 threads',
    });
    assert.equal(byType.get('failover.completednode-a')!.data.reason, 'cold-start');
    assert.match(completed.timestamp, /^\d{4}-\d\d-\d\dT/);
    assert.deepEqual((await deliveries('wh-failover', filtered.id)).map((d) => d.type).sort(), ['maintenance.changed', 'node.fenced']);
    const logged = await deliveries('wh-failover', all.id);
    assert.equal(logged.length, 8);
    assert.ok(logged.every((d) => d.status === 'delivered' && d.attempts.length === 1 && d.attempts[0]!.httpStatus === 204));
    assert.equal((await h.deliverer.deliverDue()).attempted, 0, 'nothing is delivered twice');
  });

  it('a local restart of the floating IP does not complete the failover again', async () => {
    await newCluster('wh-restart');
    await subscribe('wh-restart', { types: ['failover.completed'] });
    const epoch = await takeOver('wh-restart', 'node-a');
    await h.call('POST', '/v1/clusters/wh-restart/nodes/node-a/phases', {
      reportId: randomUUID(),
      epoch,
      phase: 'floating-ip',
      direction: 'start',
      status: 'succeeded',
      durationMs: 5,
    });
    await h.deliverer.deliverDue();
    assert.deepEqual(receiver.types(), ['failover.completed']);
  });

  it('receiver outage: attempts back off and are logged; after recovery everything arrives, nothing lost', async () => {
    await newCluster('wh-outage');
    const w = await subscribe('wh-outage', { types: ['maintenance.changed'] });
    await receiver.stop();
    for (const enabled of [true, false, true]) await h.call('PUT', '/v1/clusters/wh-outage/maintenance', { enabled });
    let pass = await h.deliverer.deliverDue();
    assert.deepEqual(pass, { attempted: 3, delivered: 0, failed: 3 });
    let logged = await deliveries('wh-outage', w.id);
    assert.ok(
      logged.every(
        (d) => d.status === 'pending' && d.attempts.length === 1 && d.attempts[0]!.httpStatus === null && /ECONNREFUSED/.test(d.attempts[0]!.error!),
      ),
    );
    assert.equal((await h.deliverer.deliverDue()).attempted, 0, 'not due again before the backoff');
    await receiver.start();
    receiver.answer = 503;
    h.clock.advance(RETRY.baseDelayMs);
    pass = await h.deliverer.deliverDue();
    assert.equal(pass.attempted, 3);
    assert.equal(pass.delivered, 0);
    logged = await deliveries('wh-outage', w.id);
    assert.ok(logged.every((d) => d.attempts.length === 2 && d.attempts[1]!.httpStatus === 503 && d.attempts[1]!.error === 'HTTP 503'));
    h.clock.advance(RETRY.baseDelayMs);
    assert.equal((await h.deliverer.deliverDue()).attempted, 0, 'the second wait is longer than the first (at least half of 2 s)');
    receiver.answer = 200;
    h.clock.advance(RETRY.baseDelayMs);
    pass = await h.deliverer.deliverDue();
    assert.deepEqual(pass, { attempted: 3, delivered: 3, failed: 0 });
    assert.deepEqual(receiver.received.map((r) => r.data.enabled).sort(), [false, true, true]);
    assert.equal(receiver.unique().size, 3);
    logged = await deliveries('wh-outage', w.id);
    assert.ok(logged.every((d) => d.status === 'delivered' && d.attempts.map((a) => a.httpStatus).join() === ',503,200'));
  });

  it('gives up after the last attempt; redelivery sends the same message again', async () => {
    await newCluster('wh-giveup');
    const w = await subscribe('wh-giveup', { types: ['maintenance.changed'] });
    receiver.answer = 500;
    await h.call('PUT', '/v1/clusters/wh-giveup/maintenance', { enabled: true });
    for (let i = 0; i < RETRY.maxAttempts; i++) {
      assert.equal((await h.deliverer.deliverDue()).attempted, 1, `attempt ${i + 1}`);
      h.clock.advance(RETRY.maxDelayMs);
    }
    assert.equal((await h.deliverer.deliverDue()).attempted, 0);
    const [failed] = await deliveries('wh-giveup', w.id);
    assert.equal(failed!.status, 'failed');
    assert.equal(failed!.attempts.length, RETRY.maxAttempts);
    receiver.answer = 204;
    const r = await h.call('POST', `/v1/clusters/wh-giveup/webhooks/${w.id}/deliveries/${failed!.id}/redeliver`);
    assert.equal(r.status, 202);
    assert.equal(r.body.status, 'pending');
    await h.deliverer.deliverDue();
    assert.deepEqual(
      receiver.received.map((m) => m.id),
      [failed!.messageId],
      'same webhook-id: a receiver dedupes',
    );
    assert.equal((await deliveries('wh-giveup', w.id))[0]!.status, 'delivered');
    assert.equal((await h.call('POST', `/v1/clusters/wh-giveup/webhooks/${w.id}/deliveries/dlv_000000000_00000000000000000000/redeliver`)).status, 404);
  });

  it('test event: sent to one webhook whatever its filter', async () => {
    await newCluster('wh-test');
    const w = await subscribe('wh-test', { types: ['node.down'] });
    const r = await h.call('POST', `/v1/clusters/wh-test/webhooks/${w.id}/test`);
    assert.equal(r.status, 202);
    assert.equal(r.body.type, 'webhook.test');
    await h.deliverer.deliverDue();
    assert.deepEqual(receiver.types(), ['webhook.test']);
    assert.equal(receiver.received[0]!.data.clusterId, 'wh-test');
  });

  it('enqueueing is idempotent, and two deliverers never send one attempt twice', async () => {
    await newCluster('wh-twice');
    const w = await subscribe('wh-twice');
    const arbiter = new Arbiter(h.store, h.clock, silentLog);
    const event = {
      id: 'e0.3.maintenance.changed.v000000000099',
      clusterId: 'wh-twice',
      at: h.clock.now(),
      epoch: 0,
      type: 'maintenance.changed' as const,
      data: { enabled: true },
    };
    await arbiter.recordEvents([event], null);
    await arbiter.recordEvents([event], null); // a second instance flushing the same outbox
    for (let i = 0; i < 5; i++) assert.equal((await h.call('POST', `/v1/clusters/wh-twice/webhooks/${w.id}/test`)).status, 202);
    assert.equal((await deliveries('wh-twice', w.id)).length, 6);
    // Another instance, configured as the harness's is: the receiver is on loopback, which only the allowlist opens.
    const other = new WebhookDeliverer(h.store, h.clock, silentLog, { retry: RETRY, timeoutMs: 2000, allow: new AddressSet(LOOPBACK_ALLOWED) });
    const [a, b] = await Promise.all([h.deliverer.deliverDue(), other.deliverDue()]);
    assert.equal(a.delivered + b.delivered, 6);
    assert.equal(receiver.received.length, 6);
    assert.equal(receiver.unique().size, 6);
  });

  it("the Node server's loop delivers as soon as deliveries are enqueued, without waiting for its poll", async () => {
    await newCluster('wh-loop');
    await subscribe('wh-loop', { types: ['maintenance.changed'] });
    const loop = new DeliveryLoop(h.deliverer, silentLog, 3_600_000);
    loop.start();
    const arbiter = new Arbiter(h.store, h.clock, silentLog, { onDeliveries: () => loop.kick() });
    await arbiter.setMaintenance('wh-loop', true);
    await loop.idle();
    loop.stop();
    assert.deepEqual(receiver.types(), ['maintenance.changed']);
  });

  it('node.down after a minute of silence, node.up when it is heard again', async () => {
    await newCluster('wh-down');
    await subscribe('wh-down', { types: ['node.down', 'node.up'] });
    await h.call('POST', '/v1/clusters/wh-down/nodes/node-a/heartbeat', hb('passive'));
    await h.call('POST', '/v1/clusters/wh-down/nodes/node-b/heartbeat', hb('passive'));
    const deps = { store: h.store, arbiter: new Arbiter(h.store, h.clock, silentLog), deliverer: h.deliverer, clock: h.clock, log: silentLog };
    h.clock.advance(30_000);
    await h.call('POST', '/v1/clusters/wh-down/nodes/node-b/heartbeat', hb('passive', 0));
    h.clock.advance(30_001);
    // (The other tests' clusters are swept too: their nodes have gone silent as well.)
    assert.ok((await sweep(deps)).nodesDown >= 1);
    assert.equal((await sweep(deps)).nodesDown, 0, 'reported once');
    const here = () => receiver.received.filter((r) => r.data.clusterId === 'wh-down').map((r) => [r.type, r.data.node, r.data.silentMs ?? r.data.downForMs]);
    assert.deepEqual(here(), [['node.down', 'node-a', 60_001]], 'node-a only: node-b was heard 30 s ago');
    h.clock.advance(5000);
    await h.call('POST', '/v1/clusters/wh-down/nodes/node-a/heartbeat', hb('passive'));
    await h.deliverer.deliverDue();
    assert.deepEqual(here(), [
      ['node.down', 'node-a', 60_001],
      ['node.up', 'node-a', 65_001],
    ]);
    const timeline = await h.call('GET', '/v1/clusters/wh-down/events?type=node.down,node.up');
    assert.deepEqual(
      timeline.body.events.map((e: { type: string; node: string }) => `${e.type} ${e.node}`),
      ['node.down node-a', 'node.up node-a'],
    );
  });

  it('lease.expired when the lease has run out with no taker: once per epoch, and never while a failsafe promise covers the holder', async () => {
    await h.clusterHeldByNodeA('wh-expired');
    await subscribe('wh-expired', { types: ['lease.expired'] });
    await h.clusterHeldByNodeA('wh-expired-fs');
    const deps = { store: h.store, arbiter: new Arbiter(h.store, h.clock, silentLog), deliverer: h.deliverer, clock: h.clock, log: silentLog };
    // node-b vouches for the quiet holder of wh-expired-fs: the arbiter records the failsafe.
    h.clock.advance(1500);
    const vouched = await h.call('POST', '/v1/clusters/wh-expired-fs/nodes/node-b/heartbeat', { role: 'passive', epoch: 0, vouching: { for: 'node-a', epoch: 1, remainingMs: 3000 } });
    assert.equal(vouched.status, 200, JSON.stringify(vouched.body));
    // Expired (3 s + the 200 ms allowance) but not yet for LEASE_EXPIRED_ALERT_MS: a taker may still come.
    h.clock.advance(3000);
    await sweep(deps);
    h.clock.advance(LEASE_EXPIRED_ALERT_MS);
    await sweep(deps);
    await sweep(deps);
    const expired = async (id: string) =>
      (await h.call('GET', `/v1/clusters/${id}/events?type=lease.expired`)).body.events.map((e: { node: string; epoch: number }) => `${e.node} ${e.epoch}`);
    assert.deepEqual(await expired('wh-expired'), ['node-a 1'], 'reported once');
    assert.deepEqual(await expired('wh-expired-fs'), [], 'the holder serves on its peer\'s promise');
    const got = receiver.received.filter((r) => r.data.clusterId === 'wh-expired');
    assert.deepEqual(got.map((r) => [r.type, r.data.node, r.data.epoch]), [['lease.expired', 'node-a', 1]]);
    assert.ok((got[0]!.data.expiredForMs as number) > LEASE_EXPIRED_ALERT_MS);
  });
});
