/** A cluster's spec updated while it runs, and a cluster deleted once nothing runs it. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, exampleSpec, hb, startHarness } from '../helpers/control-plane.ts';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(() => h.close());

describe('spec updates', () => {
  it('refuses another id, other nodes and an invalid spec, changing nothing', async () => {
    await h.clusterHeldByNodeA('upd-bad');
    const spec = await exampleSpec('upd-bad');
    const other = await h.call('PUT', '/v1/clusters/upd-bad', { ...spec, id: 'upd-other' });
    assert.equal(other.status, 400);
    assert.match(other.body.error.message, /id cannot change/);
    const renamed = structuredClone(spec) as any;
    renamed.nodes[1].id = 'node-c';
    const nodes = await h.call('PUT', '/v1/clusters/upd-bad', renamed);
    assert.equal(nodes.status, 409);
    assert.equal(nodes.body.error.code, 'immutable_field');
    const invalid = await h.call('PUT', '/v1/clusters/upd-bad', { ...spec, timing: { leaseTtlMs: 10 } });
    assert.equal(invalid.status, 400);
    assert.equal((await h.call('PUT', '/v1/clusters/nope', await exampleSpec('nope'))).status, 404);
    assert.equal((await h.call('GET', '/v1/clusters/upd-bad')).body.specVersion, 1);
  });

  it('a longer lease while a node holds it: taken at once; a shorter one is refused while the cluster runs', async () => {
    await h.clusterHeldByNodeA('upd');
    const spec = (await exampleSpec('upd')) as any;
    assert.deepEqual((await h.call('PUT', '/v1/clusters/upd', spec)).body.changed, [], 'the same spec changes nothing');
    const shorter = { ...spec, timing: { ...spec.timing, leaseTtlMs: 2000, safetyMarginMs: 100 } };
    const refused = await h.call('PUT', '/v1/clusters/upd', shorter);
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'unsafe_while_running');
    assert.match(refused.body.error.message, /watchdog timeout it allows drops from 1920 to 1080 ms.*node-a holds the lease \(epoch 1\).*run the installer/);
    assert.equal((await h.call('GET', '/v1/clusters/upd')).body.specVersion, 1, 'nothing changed');

    const longer = { ...spec, timing: { ...spec.timing, leaseTtlMs: 4000 } };
    const r = await h.call('PUT', '/v1/clusters/upd', longer);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.specVersion, 2);
    assert.deepEqual(r.body.changed, ['timing.leaseTtlMs: 3000 → 4000']);
    h.clock.advance(100);
    const renewed = await h.call('POST', '/v1/clusters/upd/nodes/node-a/heartbeat', hb('active', 1));
    assert.equal(renewed.body.lease.ttlMs, 4000, 'the holder learns the new TTL from its renewal');
    assert.equal((await h.call('GET', '/v1/clusters/upd/status')).body.lease.expiresInMs, 4000);
    const events = await h.call('GET', '/v1/clusters/upd/events?type=spec.updated');
    assert.deepEqual(
      events.body.events.map((e: { data: unknown }) => e.data),
      [{ specVersion: 2 }],
    );
    assert.equal((await h.call('PUT', '/v1/clusters/upd', longer)).body.specVersion, 2, 'idempotent');
  });

  it('a shorter lease on a cluster nothing runs yet', async () => {
    assert.equal((await h.call('POST', '/v1/clusters', await exampleSpec('upd-idle'))).status, 201);
    const spec = (await exampleSpec('upd-idle')) as any;
    const r = await h.call('PUT', '/v1/clusters/upd-idle', { ...spec, timing: { ...spec.timing, leaseTtlMs: 2000, safetyMarginMs: 100 } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((await h.call('POST', '/v1/clusters/upd-idle/nodes/node-a/heartbeat', hb('passive'))).body.lease.ttlMs, 2000);
  });
});

describe('deleting a cluster', () => {
  it('refused while it is in use; then everything goes, its agents are locked out, and the id can be used again', async () => {
    await h.clusterHeldByNodeA('del');
    const agent = await h.agentToken('del', 'node-a');
    await h.call('POST', '/v1/clusters/del/webhooks', { url: 'http://127.0.0.1:9/hook' });
    const busy = await h.call('DELETE', '/v1/clusters/del');
    assert.equal(busy.status, 409);
    assert.equal(busy.body.error.code, 'cluster_in_use');
    assert.match(busy.body.error.message, /node-a holds the lease \(epoch 1\); node-a was heard from 0 s ago/);
    h.clock.advance(30_000);
    await h.call('POST', '/v1/clusters/del/nodes/node-b/heartbeat', hb('passive'), h.app, await h.agentToken('del', 'node-b'));
    h.clock.advance(30_000);
    assert.match((await h.call('DELETE', '/v1/clusters/del')).body.error.message, /node-b was heard from 30 s ago/);
    h.clock.advance(31_000);
    assert.equal((await h.call('DELETE', '/v1/clusters/del')).status, 204);
    assert.equal((await h.call('GET', '/v1/clusters/del')).status, 404);
    assert.equal((await h.call('DELETE', '/v1/clusters/del')).status, 404);
    assert.equal((await h.call('POST', '/v1/clusters/del/nodes/node-a/heartbeat', hb('passive'), h.app, agent)).status, 401, 'its credentials are revoked');
    assert.equal((await h.call('POST', '/v1/clusters', await exampleSpec('del'))).status, 201);
    const fresh = await h.call('GET', '/v1/clusters/del/status');
    assert.equal(fresh.body.lease.epoch, 0);
    assert.deepEqual((await h.call('GET', '/v1/clusters/del/webhooks')).body.webhooks, []);
    assert.deepEqual(
      (await h.call('GET', '/v1/clusters/del/events')).body.events.map((e: { type: string }) => e.type),
      ['cluster.created'],
    );
  });
});
