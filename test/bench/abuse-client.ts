/**
 * The abuser's side of the abuse bench, in a process of its own (test/bench/abuse.ts): one load
 * at a time, at the rate the review measured, for the phase's seconds; answers with a line
 * saying what it sent and what came back.
 */
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { WebSocket } from 'ws';
import type { AbuseJob } from './abuse.ts';

const agent = new Agent({ keepAlive: true, maxSockets: 64 });

function send(base: URL, method: string, path: string, token: string | null, body?: unknown): Promise<number> {
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((ok) => {
    const req = request(
      {
        agent,
        host: base.hostname,
        port: base.port,
        method,
        path,
        headers: { ...(token && { authorization: `Bearer ${token}` }), ...(data && { 'content-type': 'application/json', 'content-length': data.length }) },
      },
      (res) => {
        res.resume();
        res.on('end', () => ok(res.statusCode ?? 0));
      },
    );
    req.on('error', () => ok(0));
    req.end(data);
  });
}

/** `perS` requests a second, open loop (as a flood is: it does not wait for answers), for `seconds`. */
async function rate(seconds: number, perS: number, op: (i: number) => Promise<number>): Promise<Map<number, number>> {
  const statuses = new Map<number, number>();
  const pending: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; performance.now() - start < seconds * 1000; i++) {
    pending.push(op(i).then((s) => void statuses.set(s, (statuses.get(s) ?? 0) + 1)));
    const next = start + ((i + 1) * 1000) / perS;
    await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
  }
  await Promise.all(pending);
  return statuses;
}

const summary = (what: string, statuses: Map<number, number>) =>
  `${what}: ${[...statuses.entries()]
    .sort()
    .map(([s, n]) => `${n}× ${s || 'error'}`)
    .join(', ')}`;

const badToken = () => `nfsha_ag_${randomBytes(8).toString('hex')}_${randomBytes(32).toString('base64url')}`;

process.on('message', async (job: AbuseJob) => {
  const base = new URL(job.base);
  const { seconds } = job;
  let said = '';
  switch (job.load) {
    case 'idle':
      await new Promise((r) => setTimeout(r, seconds * 1000));
      said = 'nothing';
      break;
    case 'bad-keys':
      // From the agents' own address (loopback here), renewals with keys nobody issued.
      said = summary(
        '200/s bad-key heartbeats',
        await rate(seconds, 200, () => send(base, 'POST', '/v1/clusters/abuse-0/nodes/node-a/heartbeat', badToken(), { role: 'active', epoch: 1 })),
      );
      break;
    case 'enrolments':
      said = summary(
        '126/s bogus enrolments',
        await rate(seconds, 126, () =>
          send(base, 'POST', '/v1/enrol', null, { token: `nfsha_en_${randomBytes(8).toString('hex')}_${randomBytes(32).toString('base64url')}` }),
        ),
      );
      break;
    case 'streams': {
      const url = `${job.base.replace('http', 'ws')}v1/clusters/abuse-0/events/stream`;
      const outcomes = new Map<number, number>();
      const sockets = await Promise.all(
        Array.from(
          { length: 300 },
          (_, i) =>
            new Promise<WebSocket | null>((ok) => {
              const ws = new WebSocket(url, { headers: { authorization: `Bearer ${job.readOnlyKeys[i % job.readOnlyKeys.length]}` } });
              ws.on('open', () => (outcomes.set(101, (outcomes.get(101) ?? 0) + 1), ok(ws)));
              ws.on('unexpected-response', (_q, res) => (outcomes.set(res.statusCode ?? 0, (outcomes.get(res.statusCode ?? 0) ?? 0) + 1), ok(null)));
              ws.on('error', () => ok(null));
            }),
        ),
      );
      await new Promise((r) => setTimeout(r, seconds * 1000));
      for (const ws of sockets) ws?.terminate();
      said = summary('300 WebSocket streams opened', outcomes);
      break;
    }
    case 'fencing-reads': {
      const statuses = new Map<number, number>();
      const end = performance.now() + seconds * 1000;
      await Promise.all(
        Array.from({ length: 12 }, async (_, i) => {
          while (performance.now() < end) {
            const s = await send(base, 'GET', '/v1/clusters/history/fencing', job.readOnlyKeys[i]!);
            statuses.set(s, (statuses.get(s) ?? 0) + 1);
          }
        }),
      );
      said = summary('12 parallel fencing-history readers (4,000 events)', statuses);
      break;
    }
    case 'phase-reports':
      said = summary(
        '100/s 2 KB stop reports for an old epoch from the non-holder',
        await rate(seconds, 100, (i) =>
          send(base, 'POST', '/v1/clusters/history/nodes/node-b/phases', job.reporter, {
            reportId: `abuse-${i.toString(16).padStart(8, '0')}`,
            epoch: 1,
            phase: 'exports',
            direction: 'stop',
            status: 'succeeded',
            message: 'x'.repeat(2000),
          }),
        ),
      );
      break;
  }
  process.send!(said);
});
