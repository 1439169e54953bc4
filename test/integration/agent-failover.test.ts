/**
 * The real agent loop and its real HTTP client against the real control plane (HTTP server,
 * dynalite), with recording fakes in place of the node resources. Each party has its own
 * clock, moved by hand: the control plane's (wall) and each agent's (monotonic).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ControlPlaneClient } from '../../agent/control-plane-client.ts';
import { reservationKey } from '../../shared/reservation-key.ts';
import { testAgent } from '../helpers/agent.ts';
import { exampleSpec, type Harness, serveHarness, startHarness } from '../helpers/control-plane.ts';

let h: Harness;
let http: Awaited<ReturnType<typeof serveHarness>>;

before(async () => {
  h = await startHarness();
  http = await serveHarness(h);
});
after(async () => {
  await http.close();
  await h.close();
});

async function node(clusterId: string, nodeId: 'node-a' | 'node-b', peerReachable?: () => boolean | undefined) {
  const journal: string[] = [];
  const clock = { t: 0 };
  const controlPlane = new ControlPlaneClient(http.url, clusterId, nodeId, { timeoutMs: 2000, token: await h.agentToken(clusterId, nodeId) });
  const t = await testAgent({ nodeId, controlPlane, journal, now: () => clock.t, clusterId, ...(peerReachable && { peerReachable }) });
  return { ...t, journal, clock, step: async () => (await t.step())?.action ?? 'busy' };
}

/** Moves every clock forward together. */
function advance(ms: number, ...nodes: { clock: { t: number } }[]) {
  h.clock.advance(ms);
  for (const n of nodes) n.clock.t += ms;
}

describe('agents against the control plane', () => {
  it('cold start, crash of the active, takeover with fencing, the old active demotes on return', async () => {
    await h.call('POST', '/v1/clusters', await exampleSpec('e2e'));
    const a = await node('e2e', 'node-a');
    const b = await node('e2e', 'node-b');

    assert.equal(await a.step(), 'fence');
    assert.equal(await b.step(), 'none');
    advance(500, a, b);
    assert.equal(await a.step(), 'activate');
    assert.equal(a.agent.role, 'active');
    assert.equal(b.agent.role, 'passive');
    assert.equal(a.journal.at(-1), 'start floating-ip');

    // node-a dies: no more ticks from it. node-b keeps asking; it gets the lease only after expiry.
    advance(2900, a, b);
    assert.equal(await b.step(), 'none', 'the lease has not expired yet (3000 ms TTL + 200 ms skew)');
    advance(400, a, b);
    assert.equal(await b.step(), 'fence');
    assert.deepEqual(b.journal.slice(0, 2), ['watchdog armed', `fence ${reservationKey('e2e', 'node-a')}`]);
    assert.equal(await b.step(), 'activate');
    assert.equal(b.agent.role, 'active');
    assert.equal(b.fencing.epoch, 2);

    // node-a comes back believing it is active under epoch 1; its deadline has passed anyway.
    assert.equal(await a.step(), 'demote');
    assert.equal(a.agent.role, 'passive');
    advance(500, a, b);
    assert.equal(await a.step(), 'none');

    const lease = await h.store.getLease('e2e');
    assert.deepEqual([lease?.holder, lease?.epoch], ['node-b', 2]);
    const events = (await h.call('GET', '/v1/clusters/e2e/events?limit=500')).body.events as { type: string; epoch: number; data: { reason?: string } }[];
    assert.deepEqual(
      events.filter((e) => e.type === 'fencing.decided').map((e) => [e.epoch, e.data.reason]),
      [
        [1, 'cold-start'],
        [2, 'lease-expired'],
      ],
    );
    assert.ok(events.some((e) => e.type === 'fencing.confirmed' && e.epoch === 2));
    assert.ok(
      events.some((e) => e.type === 'phase.reported' && e.epoch === 2),
      'phases of the takeover are on the timeline',
    );
  });

  it('early fencing: the holder silent to the arbiter and to its peer is fenced before its lease expires', async () => {
    await h.call('POST', '/v1/clusters', await exampleSpec('e2e-early'));
    let bSeesA = true;
    const a = await node('e2e-early', 'node-a');
    const b = await node('e2e-early', 'node-b', () => bSeesA);
    await a.step();
    advance(100, a, b);
    await a.step();
    assert.equal(a.agent.role, 'active');

    advance(1001, a, b);
    assert.equal(await b.step(), 'none', 'silent to the arbiter, but node-b still reaches it');
    bSeesA = false;
    advance(500, a, b);
    const oldExpiry = (await h.store.getLease('e2e-early'))!.expiresAt;
    assert.equal(await b.step(), 'fence', 'silent to both: fenced at once');
    const lease = await h.store.getLease('e2e-early');
    assert.equal(lease?.fencing?.reason, 'holder-silent');
    assert.ok(lease!.fencing!.decidedAt < oldExpiry, `decided at ${lease!.fencing!.decidedAt}, before the old lease's expiry ${oldExpiry}`);
  });
});
