import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, hb, startHarness } from '../helpers/control-plane.ts';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(() => h.close());

describe('takeover under concurrency', () => {
  it('expiry then takeover: the passive and its retries, on several instances at once, yield one fencing decision', async () => {
    for (let round = 0; round < 5; round++) {
      const id = `takeover-${round}`;
      await h.clusterHeldByNodeA(id);
      // The same heartbeat of node-b sent to three instances (retries after a timeout land on
      // another instance) and twice to one, all at once. Each instance has watched the lease
      // (node-b polled it) for a TTL plus the allowance on its own monotonic clock.
      const instances = [h.app, h.app, h.instance(), h.instance(), h.instance()];
      for (const app of new Set(instances)) {
        const polled = await h.call('POST', `/v1/clusters/${id}/nodes/node-b/heartbeat`, hb('passive', 0, false), app);
        assert.equal(polled.body.directive.action, 'stay-passive');
      }
      h.clock.advance(3000 + 200 + 1);
      const answers = await Promise.all(instances.map((app) => h.call('POST', `/v1/clusters/${id}/nodes/node-b/heartbeat`, hb('passive', 0, false), app)));
      for (const a of answers) {
        assert.equal(a.status, 200, JSON.stringify(a.body));
        assert.equal(a.body.directive.action, 'activate');
        assert.equal(a.body.directive.epoch, 2);
        assert.equal(a.body.directive.fence.victim, 'node-a');
      }
      const lease = await h.store.getLease(id);
      assert.equal(lease?.epoch, 2);
      assert.equal(lease?.holder, 'node-b');
      const events = (await h.call('GET', `/v1/clusters/${id}/events?limit=500`)).body.events as { type: string; epoch: number }[];
      assert.equal(events.filter((e) => e.type === 'fencing.decided' && e.epoch === 2).length, 1);
      assert.equal(events.filter((e) => e.type === 'lease.granted').length, 2, 'epoch 1 and epoch 2, nothing more');

      // The old holder, meanwhile, renewing on yet another instance: refused, told to demote.
      const old = await h.call('POST', `/v1/clusters/${id}/nodes/node-a/heartbeat`, hb('active', 1), h.instance());
      assert.equal(old.body.directive.action, 'demote');
      assert.equal((await h.store.getLease(id))?.epoch, 2);
    }
  });

  it('the holder renewing while the peer takes over on another instance: one of them wins, never both', async () => {
    for (let round = 0; round < 10; round++) {
      const id = `contest-${round}`;
      await h.clusterHeldByNodeA(id);
      h.clock.advance(3000 + 200 + 1);
      const [a, b] = await Promise.all([
        h.call('POST', `/v1/clusters/${id}/nodes/node-a/heartbeat`, hb('active', 1), h.instance()),
        h.call('POST', `/v1/clusters/${id}/nodes/node-b/heartbeat`, hb('passive'), h.instance()),
      ]);
      const active = [a, b].filter((r) => ['activate', 'stay-active'].includes(r.body.directive.action));
      assert.equal(active.length, 1, JSON.stringify([a.body, b.body]));
      const lease = await h.store.getLease(id);
      assert.equal(lease?.holder, active[0] === a ? 'node-a' : 'node-b');
      assert.equal(lease?.epoch, active[0] === a ? 1 : 2);
    }
  });
});

describe('clock steps on the control plane', () => {
  it('a wall clock stepping ±10 s neither grants the lease to the passive while the holder renews, nor costs the holder its lease', async () => {
    const id = 'clock-step';
    await h.clusterHeldByNodeA(id);
    const other = h.instance();
    for (const step of [10_000, -10_000, 10_000, 10_000]) {
      h.clock.advance(500);
      const renewed = await h.call('POST', `/v1/clusters/${id}/nodes/node-a/heartbeat`, hb('active', 1), other);
      assert.equal(renewed.body.directive.action, 'stay-active');
      // NTP steps the clock of the instance the passive asks (and every instance here shares it).
      h.clock.step(step);
      const passive = await h.call('POST', `/v1/clusters/${id}/nodes/node-b/heartbeat`, hb('passive', 0, false));
      assert.equal(passive.body.directive.action, 'stay-passive', JSON.stringify(passive.body.directive));
    }
    const lease = await h.store.getLease(id);
    assert.deepEqual([lease?.holder, lease?.epoch], ['node-a', 1]);
    // The holder really stops: the instance that watched the lease for a TTL and the allowance grants it.
    await h.call('POST', `/v1/clusters/${id}/nodes/node-b/heartbeat`, hb('passive', 0, true));
    h.clock.advance(3201);
    const taken = await h.call('POST', `/v1/clusters/${id}/nodes/node-b/heartbeat`, hb('passive', 0, true));
    assert.equal(taken.body.directive.action, 'activate');
    assert.equal(taken.body.directive.epoch, 2);
  });
});

describe('a node that refuses an epoch', () => {
  it('is shown refusing it in the status view, with its reason', async () => {
    const id = 'refusal-shown';
    await h.clusterHeldByNodeA(id);
    const body = { ...hb('passive'), known: { seen: 1, acted: 0 }, refused: { epoch: 1, reason: 'this node has seen epoch 1 granted' } };
    assert.equal((await h.call('POST', `/v1/clusters/${id}/nodes/node-b/heartbeat`, body)).status, 200);
    const status = (await h.call('GET', `/v1/clusters/${id}/status`)).body;
    assert.equal(status.nodes[1].refused, 'epoch 1: this node has seen epoch 1 granted');
    assert.equal(status.nodes[0].refused, null);
    assert.equal(status.lease.holdoff, null);
  });
});
