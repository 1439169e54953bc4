/**
 * Benchmarks (not tests): `npm run bench [-- <name> [--seconds N] [--concurrency N]]`.
 *
 * coldstart — the Lambda bundle's load and first request in a fresh process, against bare node.
 *
 * abuse — renewal p50/p99 idle and under each load a stranger or a misbehaving client can send
 * (test/bench/abuse.ts).
 *
 * cost — what one cluster costs per month on Lambda + DynamoDB (test/bench/cost.ts); --seconds
 * here is per heartbeat round, so the cost bench runs 30 × that (default 60 s).
 *
 * heartbeat — holders renewing their leases through the HTTP API of the control plane (Node
 * server on its embedded store, as `npm start` runs it), driven by a separate client process
 * as the agents would be; against a baseline measured in the same run on the same store: the
 * raw SDK → dynalite conditional-update loop a renewal boils down to, run inside the control
 * plane's process where its own store calls run. Short rounds alternate (raw, API, raw, API, …)
 * and each adjacent pair gives a ratio; the median of those ratios is the figure judged
 * against the target (API ≥ 0.75 × raw), as it shrugs off a noisy neighbour in one round.
 */
import { fork } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { rm } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { serve } from '@hono/node-server';
import { UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import { createApp } from '../../control-plane/app.ts';
import { Credentials } from '../../control-plane/auth.ts';
import { monotonicWallClock } from '../../control-plane/clock.ts';
import { ensureTable } from '../../control-plane/store/dynamodb.ts';
import { startEmbeddedDynamo } from '../../control-plane/store/embedded.ts';
import { dynamoClient } from '../../control-plane/store/client.ts';
import { DynamoStore } from '../../control-plane/store/dynamodb.ts';
import { exampleSpec, silentLog, tempDir } from '../helpers/control-plane.ts';
import { abuseBench } from './abuse.ts';
import { coldStartBench } from './coldstart.ts';
import { costBench } from './cost.ts';
import { load, type Round, summarize } from './load.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string', default: '2' },
    pairs: { type: 'string', default: '8' },
    concurrency: { type: 'string', default: '16' },
  },
});
const SECONDS = Number(values.seconds);
const PAIRS = Number(values.pairs);
const CONCURRENCY = Number(values.concurrency);

async function heartbeatBench(): Promise<void> {
  const dataDir = await tempDir('nfs-ha-bench-');
  const dynamo = await startEmbeddedDynamo(dataDir);
  const sdk = dynamoClient({ endpoint: dynamo.endpoint, local: dynamo.credentials });
  await ensureTable(sdk, 'nfs-ha');
  const store = new DynamoStore({ client: sdk, tableName: 'nfs-ha' });
  const app = createApp({ store, clock: monotonicWallClock(), log: silentLog });
  const issuer = new Credentials(store, monotonicWallClock());
  const adminToken = (await issuer.issue('operator', { role: 'admin', name: 'bench' })).token;
  const agentTokens: string[] = [];
  for (let w = 0; w < CONCURRENCY; w++) agentTokens.push((await issuer.issue('agent', { clusterId: `bench-${w}`, node: 'node-a' })).token);
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
  await new Promise((ok) => server.once('listening', ok));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const post = async (path: string, body: unknown, token = adminToken) => {
    const res = await fetch(base + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return res.json() as Promise<{ directive: { action: string } }>;
  };

  // One cluster per worker, each held by node-a with fencing confirmed: the steady state.
  for (let w = 0; w < CONCURRENCY; w++) {
    await post('/v1/clusters', await exampleSpec(`bench-${w}`));
    await post(`/v1/clusters/bench-${w}/nodes/node-a/heartbeat`, { role: 'passive', epoch: 0 }, agentTokens[w]);
    await post(`/v1/clusters/bench-${w}/nodes/node-a/fencing`, { epoch: 1, keys: [] }, agentTokens[w]);
  }
  const client = fork(new URL('./heartbeat-client.ts', import.meta.url).pathname, [], { execArgv: ['--import', 'tsx'] });
  const clusters = Array.from({ length: CONCURRENCY }, (_, w) => `bench-${w}`);
  const apiRound = (seconds: number) =>
    new Promise<Round>((ok, fail) => {
      client.once('message', (r) => ok(r as Round));
      client.once('exit', (code) => fail(new Error(`bench client exited with ${code}`)));
      client.send({ base, clusters, tokens: agentTokens, seconds });
    });

  // Baseline: what a renewal is at its core — one conditional update on a version, per worker item.
  const versions = new Array<number>(CONCURRENCY).fill(0);
  for (let w = 0; w < CONCURRENCY; w++) {
    await sdk.send(
      new UpdateItemCommand({
        TableName: 'nfs-ha',
        Key: marshall({ pk: `RAW#${w}`, sk: 'LEASE' }),
        UpdateExpression: 'SET version = :zero',
        ExpressionAttributeValues: marshall({ ':zero': 0 }),
      }),
    );
  }
  const rawRenewal = async (w: number) => {
    const now = Date.now();
    await sdk.send(
      new UpdateItemCommand({
        TableName: 'nfs-ha',
        Key: marshall({ pk: `RAW#${w}`, sk: 'LEASE' }),
        UpdateExpression: 'SET version = :next, renewedAt = :now, expiresAt = :exp, holder = :holder',
        ConditionExpression: 'version = :expected',
        ExpressionAttributeValues: marshall({ ':next': versions[w]! + 1, ':expected': versions[w]!, ':now': now, ':exp': now + 3000, ':holder': 'node-a' }),
      }),
    );
    versions[w]!++;
  };

  console.log(
    `heartbeat bench: ${CONCURRENCY} concurrent holders, ${PAIRS} pairs of ${SECONDS} s rounds, embedded dynalite (worker thread); API load from a separate process`,
  );
  await load(1, CONCURRENCY, rawRenewal);
  await apiRound(1);
  const raw: Round[] = [];
  const api: Round[] = [];
  const ratios: number[] = [];
  for (let pair = 0; pair < PAIRS; pair++) {
    raw.push(await load(SECONDS, CONCURRENCY, rawRenewal));
    api.push(await apiRound(SECONDS));
    ratios.push(summarize([api.at(-1)!]).throughput / summarize([raw.at(-1)!]).throughput);
  }
  const row = (name: string, s: ReturnType<typeof summarize>) =>
    `${name.padEnd(34)} ${s.throughput.toFixed(0).padStart(8)} ops/s   p50 ${s.p50.toFixed(2).padStart(6)} ms   p99 ${s.p99.toFixed(2).padStart(6)} ms   (${s.ops} ops)`;
  console.log(row('baseline: SDK conditional update', summarize(raw)));
  console.log(row('API: POST …/heartbeat (renewal)', summarize(api)));
  const sorted = [...ratios].sort((a, b) => a - b);
  const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
  console.log(`ratio API / baseline per pair: ${ratios.map((r) => r.toFixed(2)).join(' ')}`);
  console.log(`ratio API / baseline throughput: median ${median.toFixed(2)} (target ≥ 0.75: ${median >= 0.75 ? 'met' : 'NOT met'})`);

  client.kill();
  server.close();
  sdk.destroy();
  await dynamo.close();
  await rm(dataDir, { recursive: true, force: true });
}

const benches: Record<string, () => Promise<void>> = {
  heartbeat: heartbeatBench,
  cost: () => costBench(Number(values.seconds) * 30),
  coldstart: coldStartBench,
  abuse: abuseBench,
};
// Without a name: heartbeat and cold start (the cost bench runs minutes; ask for it by name).
const names = positionals.length > 0 ? positionals : ['heartbeat', 'coldstart'];
for (const name of names) {
  const bench = benches[name];
  if (!bench) {
    console.error(`unknown bench "${name}"; available: ${Object.keys(benches).join(', ')}`);
    process.exit(2);
  }
  await bench();
}
