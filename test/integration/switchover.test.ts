import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, hb, startHarness } from '../helpers/control-plane.ts';

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
    const types = ((await h.call('GET', `${base}/events?type=maintenance.changed,standby.changed`)).body.events as { type: string }[]).map((e) => e.type);
    assert.deepEqual(types, ['maintenance.changed', 'maintenance.changed', 'standby.changed']);
  });
});
