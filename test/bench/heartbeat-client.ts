/**
 * The agents' side of the heartbeat bench, in a process of its own: agents run on other
 * machines, so their HTTP client must not share the control plane's thread. It uses node:http
 * with keep-alive, the leanest client at hand, so that on a two-core machine the load
 * generator takes as little as possible from the control plane it measures. Driven over IPC.
 */
import { Agent, request } from 'node:http';
import { load } from './load.ts';

interface Job {
  base: string;
  clusters: string[];
  /** The agent credential of node-a of each cluster. */
  tokens: string[];
  seconds: number;
}

const agent = new Agent({ keepAlive: true, maxSockets: 64 });
const body = Buffer.from('{"role":"active","epoch":1}');

function heartbeat(base: URL, cluster: string, token: string): Promise<void> {
  return new Promise((ok, fail) => {
    const req = request(
      {
        agent,
        host: base.hostname,
        port: base.port,
        method: 'POST',
        path: `/v1/clusters/${cluster}/nodes/node-a/heartbeat`,
        headers: { 'content-type': 'application/json', 'content-length': body.length, authorization: `Bearer ${token}` },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          const answer = JSON.parse(text) as { directive?: { action: string } };
          if (res.statusCode !== 200 || answer.directive?.action !== 'stay-active') fail(new Error(`unexpected answer ${res.statusCode} ${text}`));
          else ok();
        });
      },
    );
    req.on('error', fail);
    req.end(body);
  });
}

process.on('message', async (job: Job) => {
  const base = new URL(job.base);
  process.send!(await load(job.seconds, job.clusters.length, (w) => heartbeat(base, job.clusters[w]!, job.tokens[w]!)));
});
