/**
 * `npm run bench -- abuse`: renewal latency while the control plane is asked everything else a
 * stranger, a read-only key or a misbehaving agent can ask (issue "Hardening", item 2).
 *
 * The control plane runs as `npm start` runs it (its own process, embedded store). Sixteen
 * agents (eight clusters, each with an active and a passive node) renew every 500 ms as real
 * agents do, from this process; each load comes from a third process, at the rates the review
 * measured. For each phase: renewal p50/p99, against the idle phase of the same run. Goal: p99
 * under every load ≤ 2 × idle p99 and < 300 ms.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { exampleSpec, tempDir } from '../helpers/control-plane.ts';

export type AbuseLoad = 'idle' | 'bad-keys' | 'enrolments' | 'streams' | 'fencing-reads' | 'phase-reports';

export interface AbuseJob {
  base: string;
  load: AbuseLoad;
  seconds: number;
  readOnlyKeys: string[];
  /** An agent credential of node-b of the history cluster (the non-holder that floods reports). */
  reporter: string;
}

const CLUSTERS = 8;
const RENEW_MS = 500;
const PHASE_S = 8;
const root = new URL('../..', import.meta.url).pathname;
const keepAlive = new Agent({ keepAlive: true, maxSockets: 64 });

function call(base: URL, method: string, path: string, token: string, body?: unknown): Promise<{ status: number; text: string }> {
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((ok, fail) => {
    const req = request(
      {
        agent: keepAlive,
        host: base.hostname,
        port: base.port,
        method,
        path,
        headers: { authorization: `Bearer ${token}`, ...(data && { 'content-type': 'application/json', 'content-length': data.length }) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => ok({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', fail);
    req.end(data);
  });
}

async function startServer(dataDir: string, port: number): Promise<{ child: ChildProcess; adminKey: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'control-plane/server.ts'], {
    cwd: root,
    env: { ...process.env, NFSHA_DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: 'warn', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (let i = 0; i < 300; i++) {
    const key = (await readFile(join(dataDir, 'initial-admin-key'), 'utf8').catch(() => '')).trim();
    const up =
      key &&
      (await fetch(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.ok,
        () => false,
      ));
    if (up) return { child, adminKey: key };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the control plane did not start');
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

export async function abuseBench(): Promise<void> {
  const dataDir = await tempDir('nfs-ha-abuse-');
  const port = 21000 + Math.floor(Math.random() * 20000);
  const { child, adminKey } = await startServer(dataDir, port);
  const base = new URL(`http://127.0.0.1:${port}`);
  const admin = (method: string, path: string, body?: unknown) =>
    call(base, method, path, adminKey, body).then((r) => {
      if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
      return JSON.parse(r.text || 'null');
    });
  const credential = async (cluster: string, node: string): Promise<string> => {
    const e = await admin('POST', `/v1/clusters/${cluster}/enrolments`, { node });
    return JSON.parse((await call(base, 'POST', '/v1/enrol', '', { token: e.token })).text).credential as string;
  };
  try {
    // Eight clusters, node-a active (fencing confirmed), node-b passive.
    const agents: { cluster: string; node: string; token: string; body: unknown }[] = [];
    for (let c = 0; c < CLUSTERS; c++) {
      const id = `abuse-${c}`;
      await admin('POST', '/v1/clusters', await exampleSpec(id));
      const a = await credential(id, 'node-a');
      await call(base, 'POST', `/v1/clusters/${id}/nodes/node-a/heartbeat`, a, { role: 'passive', epoch: 0 });
      await call(base, 'POST', `/v1/clusters/${id}/nodes/node-a/fencing`, a, { epoch: 1, keys: [] });
      agents.push({ cluster: id, node: 'node-a', token: a, body: { role: 'active', epoch: 1 } });
      agents.push({ cluster: id, node: 'node-b', token: await credential(id, 'node-b'), body: { role: 'passive', epoch: 0, peer: { reachable: true } } });
    }
    // A cluster with a long timeline (4,000 events) for the fencing-history readers.
    await admin('POST', '/v1/clusters', await exampleSpec('history'));
    const historyA = await credential('history', 'node-a');
    await call(base, 'POST', '/v1/clusters/history/nodes/node-a/heartbeat', historyA, { role: 'passive', epoch: 0 });
    process.stdout.write('abuse bench: writing 4,000 events of timeline … ');
    for (let i = 0; i < 4000; i++) await admin('PUT', '/v1/clusters/history/maintenance', { enabled: i % 2 === 0 });
    console.log('done');
    const readOnlyKeys: string[] = [];
    for (let i = 0; i < 60; i++) readOnlyKeys.push((await admin('POST', '/v1/keys', { role: 'read-only', name: `viewer-${i}` })).key);
    const reporter = await credential('history', 'node-b');

    const client = fork(new URL('./abuse-client.ts', import.meta.url).pathname, [], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    });
    const loads: AbuseLoad[] = ['idle', 'bad-keys', 'enrolments', 'streams', 'fencing-reads', 'phase-reports'];
    const rows: { load: AbuseLoad; p50: number; p99: number; n: number; failed: number; sent: string }[] = [];
    console.log(`${CLUSTERS * 2} agents renewing every ${RENEW_MS} ms; ${PHASE_S} s per load; control plane as npm start runs it`);
    for (const load of loads) {
      const done = new Promise<string>((ok) => client.once('message', (m) => ok(String(m))));
      client.send({ base: base.href, load, seconds: PHASE_S, readOnlyKeys, reporter } satisfies AbuseJob);
      // The agents: each renews every RENEW_MS, as its loop does, for the phase.
      const latencies: number[] = [];
      let failed = 0;
      const end = performance.now() + PHASE_S * 1000;
      await new Promise((r) => setTimeout(r, 300)); // let the load start
      await Promise.all(
        agents.map(async (a, i) => {
          await new Promise((r) => setTimeout(r, (i * RENEW_MS) / agents.length));
          while (performance.now() < end) {
            const t = performance.now();
            const r = await call(base, 'POST', `/v1/clusters/${a.cluster}/nodes/${a.node}/heartbeat`, a.token, a.body).catch(() => ({ status: 0, text: '' }));
            const ms = performance.now() - t;
            latencies.push(ms);
            // A renewal later than the request timeout (800 ms) is a missed one, whatever it answered.
            if (r.status !== 200 || ms > 800) failed++;
            await new Promise((res) => setTimeout(res, Math.max(0, RENEW_MS - ms)));
          }
        }),
      );
      const sent = await done;
      latencies.sort((x, y) => x - y);
      rows.push({ load, p50: pct(latencies, 50), p99: pct(latencies, 99), n: latencies.length, failed, sent });
    }
    client.kill();
    const idle = rows[0]!;
    console.log('');
    console.log('load             renewal p50   renewal p99   renewals  missed   vs idle p99   goal (≤ 2 × idle p99, < 300 ms)   load sent');
    for (const r of rows) {
      const ratio = r.p99 / idle.p99;
      const met = r.load === 'idle' ? '' : r.p99 <= 2 * idle.p99 && r.p99 < 300 ? 'met' : 'NOT met';
      console.log(
        `${r.load.padEnd(16)} ${r.p50.toFixed(1).padStart(8)} ms  ${r.p99.toFixed(1).padStart(8)} ms  ${String(r.n).padStart(9)}  ${String(r.failed).padStart(6)}   ${ratio.toFixed(2).padStart(9)} ×   ${met.padEnd(32)} ${r.sent}`,
      );
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await rm(dataDir, { recursive: true, force: true });
  }
}
