/**
 * The real agent loop and its real HTTP client against the real control plane (HTTP server,
 * dynalite), with recording fakes in place of the node resources. Each party has its own
 * clock, moved by hand: the control plane's (wall) and each agent's (monotonic).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ControlPlaneClient } from '../../agent/control-plane-client.ts';
import { type HttpRequest, request } from '../../agent/http.ts';
import type { PromiseAnswer } from '../../shared/failsafe.ts';
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

async function node(
  clusterId: string,
  nodeId: 'node-a' | 'node-b',
  peerReachable?: () => boolean | undefined,
  options: { cut?: () => boolean; peerPromise?: (node: string, epoch: number) => Promise<PromiseAnswer> } = {},
) {
  const journal: string[] = [];
  const clock = { t: 0 };
  // `cut`: this node's network path to the control plane is down.
  const viaNetwork: HttpRequest = (url, init) => (options.cut?.() ? Promise.reject(new Error('connect ETIMEDOUT')) : request(url, init));
  const controlPlane = new ControlPlaneClient(http.url, clusterId, nodeId, { timeoutMs: 2000, token: await h.agentToken(clusterId, nodeId), request: viaNetwork });
  const t = await testAgent({
    nodeId,
    controlPlane,
    journal,
    now: () => clock.t,
    clusterId,
    ...(peerReachable && { peerReachable }),
    ...(options.peerPromise && { peerPromise: options.peerPromise }),
  });
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
    const b = await node('e2e-early', 'node-b', () => bSeesA);
    // node-b's agent has run for longer than a promise window: one just started keeps out of the
    // lease that long, in case it promised something before it restarted (failsafe).
    b.clock.t += 3000;
    const a = await node('e2e-early', 'node-a');
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

  it('failsafe: the arbiter cut from the active, the passive vouches; no takeover, status and events say so, and the same epoch resumes', async () => {
    await h.call('POST', '/v1/clusters', await exampleSpec('e2e-failsafe'));
    let aCut = false;
    let b: Awaited<ReturnType<typeof node>> | null = null;
    const a = await node('e2e-failsafe', 'node-a', () => true, { cut: () => aCut, peerPromise: async (n, epoch) => b!.agent.answerPromise({ node: n, epoch }) });
    b = await node('e2e-failsafe', 'node-b', () => true, { peerPromise: async () => ({ accepted: false, reason: 'unused' }) });
    // Both agents have run for longer than a promise window.
    advance(3_000, a, b);
    await a.step();
    advance(100, a, b);
    await a.step();
    assert.equal(a.agent.role, 'active');

    aCut = true;
    for (let i = 0; i < 24; i++) {
      advance(500, a, b);
      await a.step();
      await b.step();
      assert.equal(a.agent.role, 'active', `node-a still serves ${(i + 1) * 500} ms into the outage`);
      assert.equal(b.agent.role, 'passive', 'node-b never takes over');
    }
    const lease = (await h.store.getLease('e2e-failsafe'))!;
    assert.deepEqual([lease.holder, lease.epoch], ['node-a', 1]);
    const status = (await h.call('GET', '/v1/clusters/e2e-failsafe/status')).body as { lease: { state: string; failsafe: unknown } };
    assert.equal(status.lease.state, 'expired', "the arbiter's own view: the lease lapsed");
    assert.deepEqual(status.lease.failsafe, { serving: 'node-a', vouchedBy: 'node-b', since: (status.lease.failsafe as { since: string }).since, unreachableFrom: ['node-a'] });
    const refused = await h.call('POST', '/v1/clusters/e2e-failsafe/switchover', { to: 'node-b' });
    assert.equal(refused.status, 409);
    assert.match((refused.body as { error: { message: string } }).error.message, /node-a serves in failsafe, vouched by node-b/);

    aCut = false;
    advance(500, a, b);
    await a.step();
    advance(500, a, b);
    await a.step();
    assert.deepEqual([a.agent.role, a.fencing.epoch], ['active', 1]);
    const after = (await h.store.getLease('e2e-failsafe'))!;
    assert.deepEqual([after.holder, after.epoch, after.failsafe], ['node-a', 1, null]);
    const events = (await h.call('GET', '/v1/clusters/e2e-failsafe/events?limit=500')).body.events as { type: string; node?: string; data: Record<string, unknown> }[];
    const failsafe = events.filter((e) => e.type.startsWith('failsafe.'));
    assert.deepEqual(
      failsafe.map((e) => [e.type, e.node, e.data.vouchedBy, e.data.outcome]),
      [
        ['failsafe.entered', 'node-a', 'node-b', undefined],
        ['failsafe.left', 'node-a', 'node-b', 'renewed'],
      ],
    );
    assert.ok(!events.some((e) => e.type === 'fencing.decided' && (e.data as { reason: string }).reason !== 'cold-start'), 'no new grant, no fencing');
  });
});
