import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, hb, startHarness } from '../helpers/control-plane.ts';

let h: Harness;
before(async () => {
  h = await startHarness();
  // Epoch 1 by node-a, then node-b takes over at expiry (epoch 2) and confirms its fencing.
  await h.clusterHeldByNodeA('ev');
  h.clock.advance(3000 + 200 + 1);
  const d = (await h.call('POST', '/v1/clusters/ev/nodes/node-b/heartbeat', hb('passive'))).body.directive;
  await h.call('POST', '/v1/clusters/ev/nodes/node-b/fencing', { epoch: d.epoch, keys: d.fence.keys, durationMs: 120 });
});
after(() => h.close());

describe('events: filters and fencing history', () => {
  it('filters by type, node and epoch; pages through the filtered timeline', async () => {
    const grants = await h.call('GET', '/v1/clusters/ev/events?type=lease.granted');
    assert.equal(grants.status, 200);
    assert.deepEqual(
      grants.body.events.map((e: { node: string; epoch: number }) => `${e.epoch} ${e.node}`),
      ['1 node-a', '2 node-b'],
    );
    const b = await h.call('GET', '/v1/clusters/ev/events?node=node-b&type=fencing.decided,fencing.confirmed');
    assert.deepEqual(
      b.body.events.map((e: { type: string }) => e.type),
      ['fencing.decided', 'fencing.confirmed'],
    );
    const first = await h.call('GET', '/v1/clusters/ev/events?epoch=1&limit=1');
    assert.equal(first.body.events.length, 1);
    const rest = await h.call('GET', `/v1/clusters/ev/events?epoch=1&limit=100&cursor=${first.body.cursor}`);
    assert.ok(rest.body.events.length >= 2);
    assert.ok([...first.body.events, ...rest.body.events].every((e: { epoch: number }) => e.epoch === 1));
  });

  it('refuses unknown types and bad nodes with a 400 that names them', async () => {
    const r = await h.call('GET', '/v1/clusters/ev/events?type=lease.granted,node.exploded');
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, 'invalid_request');
    assert.match(JSON.stringify(r.body.error), /type/);
    assert.equal((await h.call('GET', '/v1/clusters/ev/events?node=../../etc')).status, 400);
  });

  it('fencing history: newest first, who fenced whom, confirmed when and how fast', async () => {
    const r = await h.call('GET', '/v1/clusters/ev/fencing');
    assert.equal(r.status, 200);
    const [second, first] = r.body.fencing;
    assert.equal(second.epoch, 2);
    assert.equal(second.holder, 'node-b');
    assert.equal(second.victim, 'node-a');
    assert.equal(second.reason, 'lease-expired');
    assert.equal(second.durationMs, 120);
    assert.ok(second.confirmedAt);
    assert.equal(first.epoch, 1);
    assert.equal(first.victim, null);
    assert.equal((await h.call('GET', '/v1/clusters/nope/fencing')).status, 404);
  });
});
