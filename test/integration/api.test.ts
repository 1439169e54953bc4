import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MAX_BODY_BYTES } from '../../control-plane/app.ts';
import { exampleSpec, type Harness, hb, startHarness } from '../helpers/control-plane.ts';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(() => h.close());

const heartbeat = (cluster: string, node: string, body: unknown, app?: Harness['app']) =>
  h.call('POST', `/v1/clusters/${cluster}/nodes/${node}/heartbeat`, body, app);

/** Everything a client can observe of a cluster, to prove a rejected request changed nothing. */
async function snapshot(cluster: string) {
  const [c, l, s, e] = await Promise.all([
    h.call('GET', `/v1/clusters/${cluster}`),
    h.store.getLease(cluster),
    h.store.listNodeStatuses(cluster),
    h.call('GET', `/v1/clusters/${cluster}/events?limit=500`),
  ]);
  return { cluster: c.body, lease: l, statuses: s, events: e.body };
}

describe('control plane API on dynalite', () => {
  it('creates a cluster from its spec, lists and reads it', async () => {
    const created = await h.call('POST', '/v1/clusters', await exampleSpec('api-basic'));
    assert.equal(created.status, 201);
    assert.equal(created.body.spec.timing.leaseTtlMs, 3000);
    assert.equal(created.body.specVersion, 1);
    const list = await h.call('GET', '/v1/clusters');
    assert.ok(list.body.clusters.some((c: { id: string }) => c.id === 'api-basic'));
    const status = await h.call('GET', '/v1/clusters/api-basic/status');
    assert.equal(status.status, 200);
    assert.equal(status.body.lease.state, 'vacant');
    assert.equal(status.body.lease.epoch, 0);
    assert.deepEqual(
      status.body.nodes.map((n: { id: string; role: null }) => [n.id, n.role]),
      [
        ['node-a', null],
        ['node-b', null],
      ],
    );
    const dup = await h.call('POST', '/v1/clusters', await exampleSpec('api-basic'));
    assert.equal(dup.status, 409);
    assert.equal(dup.body.error.code, 'cluster_exists');
  });

  it('runs a whole activation: grant, fence, confirm, renew; records the timeline in order', async () => {
    await h.call('POST', '/v1/clusters', await exampleSpec('api-flow'));
    const a1 = await heartbeat('api-flow', 'node-a', hb('passive'));
    assert.equal(a1.status, 200);
    assert.equal(a1.body.lease.renewed, true);
    assert.equal(a1.body.directive.action, 'activate');
    assert.equal(a1.body.directive.fence.confirmed, false);
    const b1 = await heartbeat('api-flow', 'node-b', hb('passive'));
    assert.equal(b1.body.directive.action, 'stay-passive');
    assert.equal(b1.body.lease.renewed, false);

    const early = await h.call('POST', '/v1/clusters/api-flow/nodes/node-a/phases', {
      reportId: 'aaaaaaaa-0001',
      epoch: 1,
      phase: 'volume-group',
      direction: 'start',
      status: 'started',
    });
    assert.equal(early.status, 201, 'the holder may report phases (the agent only starts after fencing)');
    h.clock.advance(20);

    const fenced = await h.call('POST', '/v1/clusters/api-flow/nodes/node-a/fencing', { epoch: 1, keys: a1.body.directive.fence.keys, durationMs: 130 });
    assert.deepEqual([fenced.status, fenced.body], [200, { holder: 'node-a', epoch: 1 }]);
    const again = await h.call('POST', '/v1/clusters/api-flow/nodes/node-a/fencing', { epoch: 1, keys: a1.body.directive.fence.keys });
    assert.equal(again.status, 200, 'confirming twice is idempotent');

    // A phase done, with its commands: the timeline shows where a takeover spent its time.
    const commands = [
      { command: 'vgchange --config \'local/extra_system_ids=["node-b"]\' --systemid node-a vg_nfs', ms: 668 },
      { command: 'vgchange -ay vg_nfs', ms: 4612 },
    ];
    const done = { reportId: 'aaaaaaaa-0002', epoch: 1, phase: 'volume-group', direction: 'start', status: 'succeeded', durationMs: 5400, commandsMs: 5280, commands };
    assert.equal((await h.call('POST', '/v1/clusters/api-flow/nodes/node-a/phases', done)).status, 201);

    h.clock.advance(480);
    const a2 = await heartbeat('api-flow', 'node-a', hb('active', 1));
    assert.equal(a2.body.directive.action, 'stay-active');
    assert.equal(a2.body.lease.renewed, true);

    const status = await h.call('GET', '/v1/clusters/api-flow/status');
    assert.equal(status.body.lease.state, 'held');
    assert.equal(status.body.lease.expiresInMs, 3000);
    assert.equal(status.body.at, new Date(h.clock.now()).toISOString(), "read on the control plane's clock, as its events are");
    const events = await h.call('GET', '/v1/clusters/api-flow/events');
    assert.deepEqual(
      events.body.events.map((e: { type: string }) => e.type),
      ['cluster.created', 'lease.granted', 'fencing.decided', 'phase.reported', 'fencing.confirmed', 'phase.reported'],
    );
    assert.deepEqual(events.body.events.at(-1).data, { phase: 'volume-group', direction: 'start', status: 'succeeded', durationMs: 5400, commandsMs: 5280, commands });
    const page1 = await h.call('GET', '/v1/clusters/api-flow/events?limit=2');
    const page2 = await h.call('GET', `/v1/clusters/api-flow/events?limit=2&cursor=${encodeURIComponent(page1.body.cursor)}`);
    assert.deepEqual(
      [...page1.body.events, ...page2.body.events].map((e: { id: string }) => e.id),
      events.body.events.slice(0, 4).map((e: { id: string }) => e.id),
    );
    const lease = await h.store.getLease('api-flow');
    assert.deepEqual(lease?.outbox, [], 'the outbox is emptied once its events are stored');
  });

  it('two agents racing to acquire: exactly one wins, epoch 1, one fencing decision', async () => {
    for (let round = 0; round < 10; round++) {
      const id = `race-${round}`;
      await h.call('POST', '/v1/clusters', await exampleSpec(id));
      // Two control-plane instances, as two Lambda instances would be, one per agent.
      const [a, b] = await Promise.all([heartbeat(id, 'node-a', hb('passive'), h.instance()), heartbeat(id, 'node-b', hb('passive'), h.instance())]);
      const winners = [a, b].filter((r) => r.body.directive.action === 'activate');
      assert.equal(winners.length, 1, `round ${round}: ${JSON.stringify([a.body, b.body])}`);
      assert.equal(winners[0]!.body.lease.epoch, 1);
      const loser = [a, b].find((r) => r !== winners[0])!;
      assert.equal(loser.body.directive.action, 'stay-passive');
      assert.equal(loser.body.directive.holder, winners[0]!.body.lease.holder);
      const events = await h.call('GET', `/v1/clusters/${id}/events`);
      assert.equal(events.body.events.filter((e: { type: string }) => e.type === 'fencing.decided').length, 1);
    }
  });

  it("takeover after expiry; the stale holder's renewal and reports are rejected", async () => {
    await h.clusterHeldByNodeA('api-stale');
    h.clock.advance(3000 + 200 + 1);
    const b = await heartbeat('api-stale', 'node-b', hb('passive'));
    assert.equal(b.body.directive.action, 'activate');
    assert.equal(b.body.directive.epoch, 2);
    assert.equal(b.body.directive.fence.victim, 'node-a');

    const before = await snapshot('api-stale');
    const a = await heartbeat('api-stale', 'node-a', hb('active', 1));
    assert.equal(a.status, 200);
    assert.equal(a.body.directive.action, 'demote');
    assert.equal(a.body.lease.renewed, false);
    assert.equal(a.body.lease.holder, 'node-b');
    const staleFence = await h.call('POST', '/v1/clusters/api-stale/nodes/node-a/fencing', { epoch: 1, keys: [] });
    assert.equal(staleFence.status, 409);
    assert.equal(staleFence.body.error.code, 'stale_epoch');
    const staleRelease = await h.call('POST', '/v1/clusters/api-stale/nodes/node-a/release', { epoch: 1, reason: 'shutdown' });
    assert.equal(staleRelease.status, 409);
    const after = await snapshot('api-stale');
    assert.deepEqual(after.lease, before.lease, 'the stale node changed nothing');
    assert.deepEqual(after.events, before.events);
  });

  it('release: the holder gives up, the peer takes the next epoch', async () => {
    await h.call('POST', '/v1/clusters', await exampleSpec('api-release'));
    await heartbeat('api-release', 'node-a', hb('passive'));
    const r = await h.call('POST', '/v1/clusters/api-release/nodes/node-a/release', { epoch: 1, reason: 'switchover' });
    assert.deepEqual([r.status, r.body], [200, { holder: null, epoch: 1 }]);
    assert.equal((await heartbeat('api-release', 'node-a', hb('passive'))).body.directive.action, 'stay-passive');
    const b = await heartbeat('api-release', 'node-b', hb('passive'));
    assert.equal(b.body.directive.epoch, 2);
    assert.equal(b.body.directive.fence.victim, null);
  });

  it('malformed, invalid and oversized requests get a 4xx with a code and change nothing', async () => {
    await h.call('POST', '/v1/clusters', await exampleSpec('api-bad'));
    await heartbeat('api-bad', 'node-a', hb('passive'));
    const before = await snapshot('api-bad');
    const huge = JSON.stringify({ role: 'passive', epoch: 0, pad: 'x'.repeat(MAX_BODY_BYTES) });
    const bad: [string, string, unknown, number, string][] = [
      ['POST', '/v1/clusters/api-bad/nodes/node-b/heartbeat', '{"role":"passive",', 400, 'invalid_json'],
      ['POST', '/v1/clusters/api-bad/nodes/node-b/heartbeat', { role: 'boss', epoch: 0 }, 400, 'invalid_request'],
      ['POST', '/v1/clusters/api-bad/nodes/node-b/heartbeat', { role: 'passive', epoch: -1 }, 400, 'invalid_request'],
      ['POST', '/v1/clusters/api-bad/nodes/node-b/heartbeat', { role: 'passive', epoch: 0, extra: 1 }, 400, 'invalid_request'],
      ['POST', '/v1/clusters/api-bad/nodes/node-b/heartbeat', [], 400, 'invalid_request'],
      ['POST', '/v1/clusters/api-bad/nodes/node-b/heartbeat', huge, 413, 'payload_too_large'],
      ['POST', '/v1/clusters/api-bad/nodes/node-c/heartbeat', hb('passive'), 404, 'node_not_found'],
      ['POST', '/v1/clusters/api-bad/nodes/Node_B/heartbeat', hb('passive'), 400, 'invalid_request'],
      ['POST', '/v1/clusters/nope/nodes/node-a/heartbeat', hb('passive'), 404, 'cluster_not_found'],
      ['POST', '/v1/clusters/api-bad/nodes/node-b/fencing', { epoch: 1, keys: ['0x0000000000000000'] }, 400, 'invalid_request'],
      ['POST', '/v1/clusters/api-bad/nodes/node-b/fencing', { epoch: 1, keys: [] }, 409, 'stale_epoch'],
      ['POST', '/v1/clusters/api-bad/nodes/node-b/release', { epoch: 1, reason: 'because' }, 400, 'invalid_request'],
      [
        'POST',
        '/v1/clusters/api-bad/nodes/node-b/phases',
        { reportId: 'x', epoch: 1, phase: 'exports', direction: 'start', status: 'started' },
        400,
        'invalid_request',
      ],
      [
        'POST',
        '/v1/clusters/api-bad/nodes/node-b/phases',
        { reportId: 'bbbbbbbb-0001', epoch: 1, phase: 'exports', direction: 'start', status: 'succeeded', commands: Array.from({ length: 33 }, () => ({ command: 'exportfs -v', ms: 1 })) },
        400,
        'invalid_request',
      ],
      [
        'POST',
        '/v1/clusters/api-bad/nodes/node-b/phases',
        { reportId: 'bbbbbbbb-0002', epoch: 1, phase: 'exports', direction: 'start', status: 'succeeded', commands: [{ command: 'x'.repeat(301), ms: 1 }] },
        400,
        'invalid_request',
      ],
      ['POST', '/v1/clusters', { id: 'api-bad' }, 400, 'invalid_request'],
      ['GET', '/v1/clusters/api-bad/events?limit=0', undefined, 400, 'invalid_request'],
      ['GET', '/v1/clusters/api-bad/events?cursor=%24(reboot)', undefined, 400, 'invalid_request'],
      ['GET', '/v1/nothing-here', undefined, 404, 'route_not_found'],
    ];
    for (const [method, path, body, status, code] of bad) {
      const r = await h.call(method, path, body);
      assert.equal(r.status, status, `${method} ${path} ${JSON.stringify(body)?.slice(0, 80)} → ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, code, `${method} ${path}`);
      assert.ok(typeof r.body.error.message === 'string' && r.body.error.message.length > 0);
    }
    // With a Content-Length the header alone decides (no body read); without one, the body is counted.
    const declared = await h.app.request('/v1/clusters/api-bad/nodes/node-b/heartbeat', {
      method: 'POST',
      body: huge,
      headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(huge)) },
    });
    assert.equal(declared.status, 413);
    assert.equal(((await declared.json()) as { error: { code: string } }).error.code, 'payload_too_large');
    const wrongType = await h.app.request('/v1/clusters/api-bad/nodes/node-b/heartbeat', {
      method: 'POST',
      body: '{"role":"passive","epoch":0}',
      headers: { 'content-type': 'text/plain', authorization: `Bearer ${await h.agentToken('api-bad', 'node-b')}` },
    });
    assert.equal(wrongType.status, 415);
    assert.deepEqual(await snapshot('api-bad'), before);
  });

  it('an invalid spec says which field is wrong and creates nothing', async () => {
    const spec = (await exampleSpec('api-invalid')) as any;
    spec.nfs.exports[1].fsid = 101;
    spec.timing = { leaseTtlMs: 1000 };
    const r = await h.call('POST', '/v1/clusters', spec);
    assert.equal(r.status, 400);
    assert.match(r.body.error.message, /nfs\.exports\.1\.fsid: fsid 101 is already used by export 0/);
    assert.match(r.body.error.message, /timing\.leaseTtlMs/);
    assert.equal((await h.call('GET', '/v1/clusters/api-invalid')).status, 404);
  });

  it('serves an OpenAPI 3.1 document of every route', async () => {
    const r = await h.call('GET', '/openapi.json');
    assert.equal(r.body.openapi, '3.1.0');
    for (const p of [
      '/v1/clusters',
      '/v1/clusters/{clusterId}/status',
      '/v1/clusters/{clusterId}/nodes/{nodeId}/heartbeat',
      '/v1/clusters/{clusterId}/nodes/{nodeId}/fencing',
    ]) {
      assert.ok(r.body.paths[p], `missing ${p}`);
    }
  });
});
