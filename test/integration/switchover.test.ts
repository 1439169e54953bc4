import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { exampleSpec, type Harness, hb, startHarness } from '../helpers/control-plane.ts';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(() => h.close());

describe('planned switchover (POST /v1/clusters/{id}/switchover)', () => {
  it('orderly: the holder is told to release while its lease is renewed, then the target is granted with fencing', async () => {
    const id = 'switch-1';
    await h.clusterHeldByNodeA(id);
    const base = `/v1/clusters/${id}`;
    assert.equal((await h.call('POST', `${base}/nodes/node-a/heartbeat`, hb('active', 1))).body.directive.action, 'stay-active');
    assert.equal((await h.call('POST', `${base}/nodes/node-b/heartbeat`, hb('passive'))).body.directive.action, 'stay-passive');

    const asked = await h.call('POST', `${base}/switchover`, { to: 'node-b' });
    assert.equal(asked.status, 202, JSON.stringify(asked.body));
    assert.deepEqual([asked.body.from, asked.body.to, asked.body.epoch], ['node-a', 'node-b', 1]);

    const told = await h.call('POST', `${base}/nodes/node-a/heartbeat`, hb('active', 1));
    assert.equal(told.body.directive.action, 'release');
    assert.equal(told.body.lease.renewed, true, 'the holder keeps a valid lease while it demotes');
    assert.equal((await h.call('POST', `${base}/nodes/node-b/heartbeat`, hb('passive'))).body.directive.action, 'stay-passive');
    assert.equal((await h.call('POST', `${base}/nodes/node-a/release`, { epoch: 1, reason: 'switchover' })).status, 200);

    const granted = await h.call('POST', `${base}/nodes/node-b/heartbeat`, hb('passive'));
    assert.equal(granted.body.directive.action, 'activate');
    assert.equal(granted.body.directive.epoch, 2);
    const events = (await h.call('GET', `${base}/events?limit=500`)).body.events as { type: string; epoch: number; data: { reason?: string } }[];
    assert.deepEqual(
      events.filter((e) => e.epoch >= 1).map((e) => `${e.epoch} ${e.type}${e.data.reason ? ` ${e.data.reason}` : ''}`),
      [
        '1 lease.granted cold-start',
        '1 fencing.decided cold-start',
        '1 fencing.confirmed',
        '1 switchover.requested',
        '1 lease.released switchover',
        '2 lease.granted switchover',
        '2 fencing.decided switchover',
      ],
    );
  });

  it('refuses what cannot be done, with a code, and changes nothing', async () => {
    const id = 'switch-2';
    await h.clusterHeldByNodeA(id);
    const base = `/v1/clusters/${id}`;
    const before = await h.store.getLease(id);
    const notReady = await h.call('POST', `${base}/switchover`, { to: 'node-b' });
    assert.equal(notReady.status, 409);
    assert.equal(notReady.body.error.code, 'target_not_ready', 'node-b was never heard from');
    await h.call('POST', `${base}/nodes/node-b/heartbeat`, hb('passive'));
    const toHolder = await h.call('POST', `${base}/switchover`, { to: 'node-a' });
    assert.equal(toHolder.status, 409);
    assert.equal(toHolder.body.error.code, 'switchover_not_possible');
    assert.equal((await h.call('POST', `${base}/switchover`, { to: 'node-z' })).status, 404);
    assert.equal((await h.call('POST', `${base}/switchover`, { to: 'node b; rm -rf /' })).status, 400);
    assert.equal((await h.call('POST', `${base}/switchover`, {})).status, 400);
    assert.equal((await h.call('POST', '/v1/clusters/nope/switchover', { to: 'node-b' })).status, 404);
    assert.equal((await h.store.getLease(id))?.version, before?.version);
  });

  it('maintenance and standby through the API, shown in the status and the events', async () => {
    const id = 'switch-3';
    await h.clusterHeldByNodeA(id);
    const base = `/v1/clusters/${id}`;
    const on = await h.call('PUT', `${base}/maintenance`, { enabled: true });
    assert.deepEqual([on.status, on.body.maintenance], [200, true]);
    assert.equal((await h.call('GET', `${base}/status`)).body.maintenance, true);
    const hbA = await h.call('POST', `${base}/nodes/node-a/heartbeat`, hb('active', 1));
    assert.equal(hbA.body.lease.maintenance, true, 'the agents learn it with every heartbeat');
    assert.equal((await h.call('PUT', `${base}/maintenance`, { enabled: 'yes' })).status, 400);
    await h.call('PUT', `${base}/maintenance`, { enabled: false });

    const standby = await h.call('PUT', `${base}/standby/node-a`, { enabled: true });
    assert.deepEqual([standby.status, standby.body.standby], [200, ['node-a']]);
    assert.equal((await h.call('POST', `${base}/nodes/node-a/heartbeat`, hb('active', 1))).body.directive.action, 'release');
    const both = await h.call('PUT', `${base}/standby/node-b`, { enabled: true });
    assert.deepEqual([both.status, both.body.error.code], [409, 'standby_not_possible']);
    assert.equal((await h.call('PUT', `${base}/standby/node-z`, { enabled: true })).status, 404);
    const status = (await h.call('GET', `${base}/status`)).body;
    assert.deepEqual(status.standby, ['node-a']);
    const events = (await h.call('GET', `${base}/events?type=maintenance.changed,standby.changed`)).body.events as { type: string; by?: { keyId: string; name: string } }[];
    assert.deepEqual(
      events.map((e) => e.type),
      ['maintenance.changed', 'maintenance.changed', 'standby.changed'],
    );
    // Each records the key that asked (the harness's admin key is named "test").
    for (const e of events) assert.equal(e.by?.name, 'test', JSON.stringify(e));
  });

  it('with nothing active, a switchover is refused for that, before anything about the target', async () => {
    const id = 'switch-4';
    assert.equal((await h.call('POST', '/v1/clusters', await exampleSpec(id))).status, 201);
    await h.call('PUT', `/v1/clusters/${id}/standby/node-b`, { enabled: true });
    const r = await h.call('POST', `/v1/clusters/${id}/switchover`, { to: 'node-b' });
    assert.deepEqual([r.status, r.body.error.code], [409, 'switchover_not_possible']);
    assert.match(r.body.error.message, /^the lease is vacant: a switchover needs an active holder/);
  });
});

describe('status', () => {
  it("shows a passive node's heartbeat age as heard, though its status item is written only every 30 s", async () => {
    const id = 'status-age';
    await h.clusterHeldByNodeA(id);
    for (let i = 0; i < 40; i++) {
      h.clock.advance(500);
      await h.call('POST', `/v1/clusters/${id}/nodes/node-a/heartbeat`, hb('active', 1));
      await h.call('POST', `/v1/clusters/${id}/nodes/node-b/heartbeat`, hb('passive', 0, true));
    }
    h.clock.advance(200);
    const nodes = (await h.call('GET', `/v1/clusters/${id}/status`)).body.nodes as { id: string; lastHeartbeatAgoMs: number }[];
    assert.deepEqual(
      nodes.map((n) => [n.id, n.lastHeartbeatAgoMs]),
      [
        ['node-a', 200],
        ['node-b', 200],
      ],
    );
    // The status item itself is older: written once, 20 s ago, as nothing it records has changed.
    const item = (await h.store.listNodeStatuses(id)).find((s) => s.node === 'node-b')!;
    assert.ok(h.clock.now() - item.lastHeartbeatAt >= 19_000, `${h.clock.now() - item.lastHeartbeatAt} ms`);
  });
});
