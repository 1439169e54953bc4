import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ControlPlaneMetrics } from '../../control-plane/metrics.ts';
import type { ClusterEvent } from '../../shared/events.ts';
import { type Harness, hb, startHarness } from '../helpers/control-plane.ts';
import { families, sample } from '../helpers/prometheus.ts';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(() => h.close());

/** A scrape a second after the last one (a scrape sooner gets the last one's answer). */
async function scrape(token: string | null = h.adminToken): Promise<{ status: number; type: string | null; text: string }> {
  h.clock.advance(1000);
  const res = await h.app.request('/v1/metrics', { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
}

describe('GET /v1/metrics', () => {
  it('needs an operator key; a read-only one serves, in the Prometheus text format', async () => {
    assert.equal((await scrape(null)).status, 401);
    const readOnly = (await h.credentials.issue('operator', { role: 'read-only', name: 'prometheus' })).token;
    const r = await scrape(readOnly);
    assert.equal(r.status, 200);
    assert.match(r.type ?? '', /^text\/plain; version=0\.0\.4/);
  });

  it("shows the lease as the arbiter holds it, then a takeover: holder, epoch, state, fencing and the grant's reason", async () => {
    const id = 'metrics-a';
    await h.clusterHeldByNodeA(id);
    let text = (await scrape()).text;
    assert.equal(sample(text, 'nfsha_lease_epoch', { cluster: id }), 1);
    assert.equal(sample(text, 'nfsha_lease_holder', { cluster: id, node: 'node-a' }), 1);
    assert.equal(sample(text, 'nfsha_lease_holder', { cluster: id, node: 'node-b' }), 0);
    assert.equal(sample(text, 'nfsha_lease_state', { cluster: id, state: 'held' }), 1);
    assert.equal(sample(text, 'nfsha_lease_state', { cluster: id, state: 'vacant' }), 0);
    assert.equal(sample(text, 'nfsha_fencing_unconfirmed_seconds', { cluster: id }), 0);
    assert.equal(sample(text, 'nfsha_lease_grants_total', { cluster: id, reason: 'cold-start' }), 1);
    // The default TTL is 3 s, renewed by the fencing report, a second before the scrape.
    assert.equal(sample(text, 'nfsha_lease_remaining_seconds', { cluster: id }), 2);
    assert.equal(sample(text, 'nfsha_node_heartbeat_age_seconds', { cluster: id, node: 'node-a' }), 1);
    assert.throws(() => sample(text, 'nfsha_node_heartbeat_age_seconds', { cluster: id, node: 'node-b' }), /0 samples/, 'never heard from: no sample');

    await h.call('POST', `/v1/clusters/${id}/nodes/node-b/heartbeat`, hb('passive', 0, true));
    h.clock.advance(3000 + 200 + 1);
    const taken = await h.call('POST', `/v1/clusters/${id}/nodes/node-b/heartbeat`, hb('passive', 0, false));
    assert.equal(taken.body.directive.action, 'activate');
    h.clock.advance(1500);
    text = (await scrape()).text;
    assert.equal(sample(text, 'nfsha_lease_epoch', { cluster: id }), 2);
    assert.equal(sample(text, 'nfsha_lease_holder', { cluster: id, node: 'node-b' }), 1);
    assert.equal(sample(text, 'nfsha_lease_state', { cluster: id, state: 'fencing' }), 1);
    assert.equal(sample(text, 'nfsha_fencing_unconfirmed_seconds', { cluster: id }), 2.5);
    assert.equal(sample(text, 'nfsha_lease_grants_total', { cluster: id, reason: 'lease-expired' }), 1);
    assert.equal(sample(text, 'nfsha_fencing_decisions_total', { cluster: id, reason: 'lease-expired' }), 1);
    assert.equal(sample(text, 'nfsha_node_heartbeat_age_seconds', { cluster: id, node: 'node-a' }), 6.701);

    await h.call('POST', `/v1/clusters/${id}/nodes/node-b/fencing`, { epoch: 2, keys: [], durationMs: 700 });
    await h.call('POST', `/v1/clusters/${id}/nodes/node-b/heartbeat`, hb('activating', 2, true));
    text = (await scrape()).text;
    assert.equal(sample(text, 'nfsha_lease_state', { cluster: id, state: 'held' }), 1);
    assert.equal(sample(text, 'nfsha_fencing_unconfirmed_seconds', { cluster: id }), 0);
    assert.equal(sample(text, 'nfsha_fencing_duration_seconds_count', { cluster: id }), 1);
    assert.equal(sample(text, 'nfsha_fencing_duration_seconds_bucket', { cluster: id, le: '0.5' }), 0);
    assert.equal(sample(text, 'nfsha_fencing_duration_seconds_bucket', { cluster: id, le: '1' }), 1);
  });

  it('a scrape within a second of the last one gets its answer without reading the store again', async () => {
    const first = (await scrape()).text;
    await h.clusterHeldByNodeA('metrics-b');
    const again = await h.app.request('/v1/metrics', { headers: { authorization: `Bearer ${h.adminToken}` } });
    assert.equal(await again.text(), first);
    assert.equal(sample((await scrape()).text, 'nfsha_lease_epoch', { cluster: 'metrics-b' }), 1);
  });

  it('times requests by route pattern, never by the raw path', async () => {
    const text = (await scrape()).text;
    const route = '/v1/clusters/:clusterId/nodes/:nodeId/heartbeat';
    assert.ok(sample(text, 'nfsha_http_request_duration_seconds_count', { method: 'POST', route, status: '200' }) >= 3);
    assert.doesNotMatch(text, /route="\/v1\/clusters\/metrics-a/);
  });
});

describe('counting', () => {
  const granted: ClusterEvent = { id: 'e1', clusterId: 'c', at: 0, epoch: 1, type: 'lease.granted', node: 'node-a', data: { previousHolder: null, reason: 'cold-start' } };

  it('an event recorded twice (an outbox flushed again) is counted once', async () => {
    const m = new ControlPlaneMetrics();
    m.events([granted]);
    m.events([granted, { ...granted, id: 'e2', epoch: 2, data: { previousHolder: 'node-a', reason: 'holder-silent' } }]);
    const text = await m.registry.metrics();
    assert.equal(sample(text, 'nfsha_events_total', { cluster: 'c', type: 'lease.granted' }), 2);
    assert.equal(sample(text, 'nfsha_lease_grants_total', { cluster: 'c', reason: 'holder-silent' }), 1);
  });

  it("on Lambda, counts go out as CloudWatch embedded metrics and stay out of the scrape (an instance's counters mean nothing)", async () => {
    const lines: string[] = [];
    const m = new ControlPlaneMetrics('emf', (l) => lines.push(l));
    m.events([granted]);
    m.delivery('c', 'failed');
    const records = lines.map((l) => JSON.parse(l));
    assert.deepEqual(
      records.map((r) => [r._aws.CloudWatchMetrics[0].Namespace, r._aws.CloudWatchMetrics[0].Metrics[0].Name, r._aws.CloudWatchMetrics[0].Dimensions[0]]),
      [
        ['nfs-ha', 'EventsRecorded', ['cluster', 'type']],
        ['nfs-ha', 'LeaseGrants', ['cluster', 'reason']],
        ['nfs-ha', 'WebhookDeliveries', ['cluster', 'outcome']],
      ],
    );
    assert.equal(records[1].reason, 'cold-start');
    assert.equal(records[1].LeaseGrants, 1);
    const exposed = families(await m.registry.metrics());
    assert.ok(exposed.has('nfsha_lease_epoch'));
    assert.ok(!exposed.has('nfsha_events_total'));
  });
});
