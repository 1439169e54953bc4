/**
 * Prints a real exposition of both kinds of metrics — the control plane's after a takeover, an
 * active agent's after a few heartbeats and commands — for `promtool check metrics` (.ci/run,
 * infra/monitoring/check.sh) and for the monitoring test.
 */
import { AgentMetrics } from '../../agent/metrics.ts';
import { hb, startHarness } from './control-plane.ts';

export async function exampleExposition(): Promise<{ controlPlane: string; agent: string }> {
  const h = await startHarness();
  try {
    await h.clusterHeldByNodeA('example');
    await h.call('POST', '/v1/clusters/example/nodes/node-b/heartbeat', hb('passive', 0, true));
    h.clock.advance(3201);
    await h.call('POST', '/v1/clusters/example/nodes/node-b/heartbeat', hb('passive', 0, false));
    await h.call('POST', '/v1/clusters/example/nodes/node-b/fencing', { epoch: 2, keys: [], durationMs: 640 });
    const res = await h.app.request('/v1/metrics', { headers: { authorization: `Bearer ${h.adminToken}` } });
    const agent = new AgentMetrics(() => ({ node: 'node-b', role: 'active', epoch: 2, leaseRemainingMs: 2310 }));
    agent.heartbeat('renewed', 0.012);
    agent.heartbeat('failed', 0.8);
    agent.command(['/usr/bin/sg_persist', '--in', '--read-keys'], 0, 0.03);
    agent.resource('nfs-server', true);
    await agent.counting({ arm: async () => {}, pet: async () => {}, disarm: async () => {}, reboot: async () => {} }).pet();
    return { controlPlane: await res.text(), agent: await agent.registry.metrics() };
  } finally {
    await h.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { controlPlane, agent } = await exampleExposition();
  process.stdout.write(process.argv[2] === 'agent' ? agent : controlPlane);
}
