/**
 * `npm run bench -- cost [--seconds N]`: what one cluster costs per month on Lambda + DynamoDB
 * on-demand at default timing. Two real agents (recording fakes in place of the node
 * resources) run their real loops against the control plane over HTTP on the embedded store
 * for N seconds of real time; every request is counted as one Lambda invocation with the time
 * its handler took, and the capacity DynamoDB reports for every call (ReturnConsumedCapacity)
 * is summed. The totals are scaled to a 30-day month at the list prices below.
 */
import type { AddressInfo } from 'node:net';
import { rm } from 'node:fs/promises';
import { serve } from '@hono/node-server';
import { ControlPlaneClient } from '../../agent/control-plane-client.ts';
import { createApp } from '../../control-plane/app.ts';
import { Credentials } from '../../control-plane/auth.ts';
import { monotonicWallClock } from '../../control-plane/clock.ts';
import { dynamoClient } from '../../control-plane/store/client.ts';
import { type CapacityUse, DynamoStore, ensureTable } from '../../control-plane/store/dynamodb.ts';
import { startEmbeddedDynamo } from '../../control-plane/store/embedded.ts';
import { testAgent } from '../helpers/agent.ts';
import { exampleSpec, silentLog, tempDir } from '../helpers/control-plane.ts';

/**
 * us-east-1 list prices, as published when written: Lambda arm64 (requests, GB-seconds) and
 * DynamoDB on-demand after its price cut of 2024-11-01. Check them before relying on a figure.
 */
export const PRICES = {
  asOf: '2024-11-01',
  lambdaPerMillionRequests: 0.2,
  lambdaArm64PerGbSecond: 0.0000133334,
  dynamoPerMillionWriteUnits: 0.625,
  dynamoPerMillionReadUnits: 0.125,
} as const;
const LAMBDA_MEMORY_GB = 0.5;
const MONTH_S = 30 * 24 * 3600;
/** The scheduled sweep runs once a minute for the whole deployment; charged here to one cluster. */
const SWEEPS_PER_S = 1 / 60;

export async function costBench(seconds: number): Promise<void> {
  const dataDir = await tempDir('nfs-ha-cost-');
  const dynamo = await startEmbeddedDynamo(dataDir);
  const sdk = dynamoClient({ endpoint: dynamo.endpoint, local: dynamo.credentials });
  await ensureTable(sdk, 'nfs-ha');
  const capacity = new Map<string, { calls: number; units: number; kind: CapacityUse['kind'] }>();
  let counting = false;
  const store = new DynamoStore({
    client: sdk,
    tableName: 'nfs-ha',
    onCapacity: (u) => {
      if (!counting) return;
      const c = capacity.get(u.operation) ?? { calls: 0, units: 0, kind: u.kind };
      c.calls++;
      c.units += u.units;
      capacity.set(u.operation, c);
    },
  });
  const app = createApp({ store, clock: monotonicWallClock(), log: silentLog });
  const requests = new Map<string, { count: number; ms: number }>();
  const server = serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: async (req, env) => {
      const t0 = performance.now();
      const res = await app.fetch(req, env);
      if (counting) {
        const route = `${req.method} ${new URL(req.url).pathname.replace(/\/v1\/clusters\/[^/]+/, '/v1/clusters/:id').replace(/nodes\/[^/]+/, 'nodes/:node')}`;
        const r = requests.get(route) ?? { count: 0, ms: 0 };
        r.count++;
        r.ms += performance.now() - t0;
        requests.set(route, r);
      }
      return res;
    },
  });
  await new Promise((ok) => server.once('listening', ok));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const issuer = new Credentials(store, monotonicWallClock());
  const adminToken = (await issuer.issue('operator', { role: 'admin', name: 'cost' })).token;
  await fetch(`${base}/v1/clusters`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
    body: JSON.stringify(await exampleSpec('cost')),
  });

  const now = () => performance.now();
  const journal: string[] = [];
  // Each agent's peer channel answers with the other agent's real status, as over the network.
  const agents: Awaited<ReturnType<typeof testAgent>>[] = [];
  for (const nodeId of ['node-a', 'node-b'] as const) {
    const peerOf = () => agents.find((a) => a.agent.status().node !== nodeId)?.agent.status() ?? null;
    agents.push(
      await testAgent({
        nodeId,
        clusterId: 'cost',
        journal,
        now,
        peerReachable: () => true,
        peerStatus: peerOf,
        controlPlane: new ControlPlaneClient(base, 'cost', nodeId, {
          timeoutMs: 800,
          token: (await issuer.issue('agent', { clusterId: 'cost', node: nodeId })).token,
        }),
      }),
    );
  }
  for (const a of agents) a.agent.run();
  // Let the cold start (grant, fencing, activation) settle: the bill is for the steady state.
  while (!agents.some((a) => a.agent.role === 'active')) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 2000));
  counting = true;
  const started = performance.now();
  console.log(
    `cost bench: 1 cluster, 2 agents at default timing (renew every ${agents[0]!.spec.timing.renewIntervalMs} ms), ${seconds} s of real time, embedded store`,
  );
  await new Promise((r) => setTimeout(r, seconds * 1000));
  counting = false;
  const elapsed = (performance.now() - started) / 1000;
  for (const a of agents) a.agent.stop();
  await Promise.all(agents.map((a) => a.agent.settled()));

  const perMonth = (count: number) => (count / elapsed) * MONTH_S;
  const totalRequests = [...requests.values()].reduce((s, r) => s + r.count, 0);
  const totalMs = [...requests.values()].reduce((s, r) => s + r.ms, 0);
  const units = (kind: CapacityUse['kind']) => [...capacity.values()].filter((c) => c.kind === kind).reduce((s, c) => s + c.units, 0);
  const requestsMonth = perMonth(totalRequests) + SWEEPS_PER_S * MONTH_S;
  const gbSecondsMonth = (perMonth(totalMs) / 1000) * LAMBDA_MEMORY_GB;
  const rows = [
    ['Lambda requests', requestsMonth, (requestsMonth / 1e6) * PRICES.lambdaPerMillionRequests, 'requests'],
    ['Lambda duration (512 MB, arm64)', gbSecondsMonth, gbSecondsMonth * PRICES.lambdaArm64PerGbSecond, 'GB-s'],
    ['DynamoDB writes', perMonth(units('write')), (perMonth(units('write')) / 1e6) * PRICES.dynamoPerMillionWriteUnits, 'WRU'],
    ['DynamoDB reads', perMonth(units('read')), (perMonth(units('read')) / 1e6) * PRICES.dynamoPerMillionReadUnits, 'RRU'],
  ] as const;
  const total = rows.reduce((s, r) => s + r[2], 0);
  console.log(`\n${'per cluster-month'.padEnd(34)}${'quantity'.padStart(16)}${'$'.padStart(10)}`);
  for (const [name, qty, usd, unit] of rows)
    console.log(`${name.padEnd(34)}${`${(qty / 1e6).toFixed(2)} M ${unit}`.padStart(16)}${usd.toFixed(2).padStart(10)}`);
  console.log(
    `${'total'.padEnd(50)}${total.toFixed(2).padStart(10)}   (goal ≤ $1.00: ${total <= 1 ? 'met' : `missed by $${(total - 1).toFixed(2)}, ${total.toFixed(1)}×`}; prices as of ${PRICES.asOf})`,
  );
  console.log('\nwhere it goes (per second):');
  for (const [route, r] of [...requests].sort((a, b) => b[1].count - a[1].count)) {
    console.log(`  ${route.padEnd(52)} ${(r.count / elapsed).toFixed(2).padStart(6)} req/s   ${(r.ms / r.count).toFixed(2)} ms`);
  }
  for (const [op, c] of [...capacity].sort((a, b) => b[1].units - a[1].units)) {
    console.log(
      `  DynamoDB ${op.padEnd(43)} ${(c.calls / elapsed).toFixed(2).padStart(6)} calls/s ${(c.units / elapsed).toFixed(2)} ${c.kind === 'write' ? 'WRU' : 'RRU'}/s`,
    );
  }

  server.close();
  sdk.destroy();
  await dynamo.close();
  await rm(dataDir, { recursive: true, force: true });
}
