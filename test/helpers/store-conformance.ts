/**
 * The Store contract (control-plane/store/store.ts) as tests, run against every backend: the
 * DynamoDB adapter on dynalite, and the simulator's SimulatedStore. The simulator is only as
 * good as its store's likeness to DynamoDB; this is where that likeness is checked.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Store } from '../../control-plane/store/store.ts';
import type { ClusterEvent } from '../../shared/events.ts';
import { leaseTerms, onHeartbeat, vacantLease } from '../../shared/lease.ts';
import { ClusterSpecSchema } from '../../shared/spec.ts';
import { exampleSpec } from './control-plane.ts';

const T = 1_800_000_000_000;

export function storeConformance(backend: string, open: () => Promise<{ store: Store; close(): Promise<void> }>): void {
  describe(`Store contract: ${backend}`, () => {
    let store: Store;
    let close: () => Promise<void>;
    before(async () => {
      ({ store, close } = await open());
    });
    after(() => close());

    const nodeStatus = (clusterId: string) => ({
      clusterId,
      node: 'node-a',
      role: 'passive' as const,
      epoch: 0,
      peerReachable: null,
      lastHeartbeatAt: T,
      lastDirective: 'stay-passive',
    });

    const cluster = async (id: string) => {
      const spec = ClusterSpecSchema.parse(await exampleSpec(id));
      const record = { spec, specVersion: 1, createdAt: T, updatedAt: T };
      return { spec, record, lease: vacantLease(id, leaseTerms(spec, 1), T) };
    };

    it('creates a cluster once; reads and lists it', async () => {
      const { record } = await cluster('sc-one');
      assert.equal(await store.putClusterIfAbsent(record), true);
      assert.equal(await store.putClusterIfAbsent({ ...record, specVersion: 2 }), false);
      assert.deepEqual(await store.getCluster('sc-one'), record);
      assert.equal(await store.getCluster('sc-none'), null);
      assert.ok((await store.listClusters()).some((c) => c.spec.id === 'sc-one'));
    });

    it('a cluster record is replaced only at the expected spec version; deletion removes every item of the cluster', async () => {
      const { record, lease } = await cluster('sc-del');
      const other = await cluster('sc-keep');
      for (const c of [{ record, lease }, other]) {
        await store.putClusterIfAbsent(c.record);
        await store.putLeaseIfAbsent(c.lease);
        await store.putEvents([{ id: 'e0.x', clusterId: c.lease.clusterId, at: T, epoch: 0, type: 'maintenance.changed', data: { enabled: true } }]);
        await store.putNodeStatus({
          clusterId: c.lease.clusterId,
          node: 'node-a',
          role: 'passive',
          epoch: 0,
          peerReachable: null,
          lastHeartbeatAt: T,
          lastDirective: 'x',
        });
        await store.putWebhookIfAbsent({
          clusterId: c.lease.clusterId,
          id: 'wh_0000000000000009',
          url: 'https://e.example/h',
          secret: 'whsec_A',
          types: null,
          description: null,
          createdAt: T,
        });
      }
      assert.equal(await store.putCluster({ ...record, specVersion: 2 }, 2), false);
      assert.equal(await store.putCluster({ ...record, specVersion: 2 }, 1), true);
      assert.equal((await store.getCluster('sc-del'))?.specVersion, 2);
      await store.deleteCluster('sc-del');
      assert.equal(await store.getCluster('sc-del'), null);
      assert.equal(await store.getLease('sc-del'), null);
      assert.deepEqual((await store.listEvents('sc-del', { limit: 10 })).events, []);
      assert.deepEqual(await store.listNodeStatuses('sc-del'), []);
      assert.deepEqual(await store.listWebhooks('sc-del'), []);
      assert.ok(!(await store.listClusters()).some((c) => c.spec.id === 'sc-del'));
      assert.equal((await store.listEvents('sc-keep', { limit: 10 })).events.length, 1, 'another cluster keeps its items');
      assert.equal((await store.listWebhooks('sc-keep')).length, 1);
      await store.deleteCluster('sc-del'); // again: nothing left, no error
    });

    it('the lease: created once, compare-and-set on its version, reads see every completed write', async () => {
      const { lease } = await cluster('sc-lease');
      assert.equal(await store.putLeaseIfAbsent(lease), true);
      assert.equal(await store.putLeaseIfAbsent({ ...lease, epoch: 9 }), false);
      assert.deepEqual(await store.getLease('sc-lease'), lease);
      const granted = onHeartbeat(lease, 'node-a', { role: 'passive', epoch: 0 }, T + 10, 0).next!;
      assert.equal(await store.putLease(granted, lease), true);
      assert.deepEqual(await store.getLease('sc-lease'), granted, 'the stored lease is exactly `next`, whatever the backend writes');
      assert.equal(await store.putLease({ ...granted, version: granted.version + 1 }, lease), false, 'a stale version does not write');
      // A store restored from a backup counts versions again: the same number with another write time is another lease.
      assert.equal(await store.putLease({ ...granted, version: granted.version + 1 }, { ...granted, renewedAt: granted.renewedAt - 1 }), false);
      assert.deepEqual(await store.getLease('sc-lease'), granted);
      assert.equal(await store.putLease(granted, { ...lease, clusterId: 'sc-missing' }), false);
      assert.equal(await store.getLease('sc-missing'), null);
    });

    it('concurrent writers on one version: exactly one wins', async () => {
      const { lease } = await cluster('sc-race');
      await store.putLeaseIfAbsent(lease);
      const results = await Promise.all(
        ['node-a', 'node-b', 'node-a', 'node-b', 'node-a'].map((n, i) =>
          store.putLease(onHeartbeat(lease, n, { role: 'passive', epoch: 0 }, T + i, 0).next!, lease),
        ),
      );
      assert.equal(results.filter(Boolean).length, 1);
      assert.equal((await store.getLease('sc-race'))?.version, 1);
    });

    it('clearOutbox empties it only at the same version, and leaves the version alone', async () => {
      const { lease } = await cluster('sc-outbox');
      const granted = onHeartbeat(lease, 'node-a', { role: 'passive', epoch: 0 }, T, 0).next!;
      await store.putLeaseIfAbsent(granted);
      assert.equal(await store.clearOutbox('sc-outbox', granted.version + 1), false);
      assert.equal((await store.getLease('sc-outbox'))?.outbox.length, 2);
      assert.equal(await store.clearOutbox('sc-outbox', granted.version), true);
      assert.deepEqual(await store.getLease('sc-outbox'), { ...granted, outbox: [] });
    });

    it('events: idempotent by id, listed oldest first, paged without loss or repeat', async () => {
      const events: ClusterEvent[] = Array.from({ length: 7 }, (_, i) => ({
        id: `e${i}.phase`,
        clusterId: 'sc-events',
        at: T + (i % 3),
        epoch: 1,
        type: 'phase.reported',
        node: 'node-a',
        data: { phase: 'exports', direction: 'start', status: 'succeeded' },
      }));
      await store.putEvents(events);
      await store.putEvents([{ ...events[0]!, data: { phase: 'exports', direction: 'start', status: 'failed' } } as ClusterEvent]);
      const all = await store.listEvents('sc-events', { limit: 100 });
      assert.equal(all.cursor, null);
      assert.deepEqual(
        all.events.map((e) => e.id),
        ['e0.phase', 'e3.phase', 'e6.phase', 'e1.phase', 'e4.phase', 'e2.phase', 'e5.phase'],
      );
      assert.equal(all.events[0]!.type === 'phase.reported' && all.events[0]!.data.status, 'succeeded', 'the first write of an id stays');
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await store.listEvents('sc-events', { limit: 3, cursor });
        seen.push(...page.events.map((e) => e.id));
        cursor = page.cursor ?? undefined;
      } while (cursor);
      assert.deepEqual(
        seen,
        all.events.map((e) => e.id),
      );
    });

    it('events: newest first, filtered by type, paged by what was read (a page may hold none and still go on)', async () => {
      const types = ['maintenance.changed', 'spec.updated', 'spec.updated', 'maintenance.changed', 'spec.updated'] as const;
      await store.putEvents(
        types.map(
          (type, i) =>
            ({
              id: `f${i}`,
              clusterId: 'sc-filter',
              at: T + i,
              epoch: 0,
              type,
              data: type === 'spec.updated' ? { specVersion: i } : { enabled: true },
            }) as ClusterEvent,
        ),
      );
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await store.listEvents('sc-filter', { limit: 2, cursor, newestFirst: true, types: ['maintenance.changed'] });
        seen.push(...page.events.map((e) => e.id));
        cursor = page.cursor ?? undefined;
        pages++;
      } while (cursor && pages < 10);
      assert.deepEqual(seen, ['f3', 'f0']);
    });

    it('events are pruned oldest first, only before the given time', async () => {
      const e = (at: number): ClusterEvent => ({ id: `p${at}`, clusterId: 'sc-prune', at, epoch: 0, type: 'maintenance.changed', data: { enabled: true } });
      await store.putEvents([e(T), e(T + 1), e(T + 2), e(T + 3)]);
      assert.equal(await store.pruneEvents('sc-prune', T + 3, 2), 2);
      assert.equal(await store.pruneEvents('sc-prune', T + 3, 10), 1);
      assert.deepEqual(
        (await store.listEvents('sc-prune', { limit: 10 })).events.map((x) => x.at),
        [T + 3],
      );
    });

    it('events from a time on, oldest first', async () => {
      const e = (at: number): ClusterEvent => ({ id: `e${at}`, clusterId: 'sc-from', at, epoch: 0, type: 'maintenance.changed', data: { enabled: true } });
      await store.putEvents([e(T + 20), e(T), e(T + 10)]);
      assert.deepEqual(
        (await store.listEvents('sc-from', { limit: 10, fromAt: T + 10 })).events.map((x) => x.at),
        [T + 10, T + 20],
      );
      assert.deepEqual((await store.listEvents('sc-from', { limit: 10, fromAt: T + 21 })).events, []);
    });

    it('node status: last write wins, listed per cluster', async () => {
      const s = nodeStatus('sc-status');
      assert.equal(await store.putNodeStatus(s), null);
      assert.deepEqual(await store.putNodeStatus({ ...s, role: 'active', epoch: 3 }), s, 'returns the status it replaced');
      assert.deepEqual(await store.listNodeStatuses('sc-status'), [{ ...s, role: 'active', epoch: 3 }]);
      assert.deepEqual(await store.listNodeStatuses('sc-nothing'), []);
    });

    it('node down: marked once, only if not heard from since; the next status replaces the mark', async () => {
      const s = nodeStatus('sc-down');
      await store.putNodeStatus(s);
      assert.equal(await store.markNodeDown('sc-down', 'node-a', T - 1, T + 1), false, 'heard from since');
      assert.equal(await store.markNodeDown('sc-down', 'node-b', T, T + 1), false, 'no such status');
      const marks = await Promise.all([1, 2].map((i) => store.markNodeDown('sc-down', 'node-a', T, T + i)));
      assert.equal(marks.filter(Boolean).length, 1);
      const previous = await store.putNodeStatus({ ...s, lastHeartbeatAt: T + 5 });
      assert.ok(previous?.downAt === T + 1 || previous?.downAt === T + 2);
      assert.equal((await store.listNodeStatuses('sc-down'))[0]!.downAt, undefined);
    });

    it('webhooks: created once, listed per cluster, deleted once', async () => {
      const w = {
        clusterId: 'sc-wh',
        id: 'wh_0000000000000001',
        url: 'https://example.com/h',
        secret: 'whsec_AAAA',
        types: null,
        description: null,
        createdAt: T,
      };
      assert.equal(await store.putWebhookIfAbsent(w), true);
      assert.equal(await store.putWebhookIfAbsent({ ...w, url: 'https://other.example/h' }), false);
      await store.putWebhookIfAbsent({ ...w, id: 'wh_0000000000000002', types: ['node.down'] });
      assert.deepEqual(await store.getWebhook('sc-wh', w.id), w);
      assert.deepEqual(
        (await store.listWebhooks('sc-wh')).map((x) => x.id),
        [w.id, 'wh_0000000000000002'],
      );
      assert.deepEqual(await store.listWebhooks('sc-nothing'), []);
      assert.equal(await store.deleteWebhook('sc-wh', w.id), true);
      assert.equal(await store.deleteWebhook('sc-wh', w.id), false);
      assert.equal(await store.getWebhook('sc-wh', w.id), null);
    });

    it('deliveries: enqueued once, compare-and-set on their version, due by time, paged newest first', async () => {
      const d = (i: number, due: number | null = T + i) => ({
        clusterId: 'sc-dlv',
        webhookId: 'wh_0000000000000001',
        id: `dlv_${(T + i).toString(36).padStart(9, '0')}_${String(i).padStart(20, '0')}`,
        messageId: `msg_${i}`,
        type: 'node.down',
        body: '{}',
        status: 'pending' as const,
        attempts: [],
        tries: 0,
        nextAttemptAt: due,
        createdAt: T,
        version: 1,
      });
      await store.putDeliveriesIfAbsent([d(1), d(2), d(3)]);
      await store.putDeliveriesIfAbsent([{ ...d(1), body: 'changed' }]);
      assert.equal((await store.getDelivery('sc-dlv', 'wh_0000000000000001', d(1).id))?.body, '{}', 'a second enqueue changes nothing');
      const dueIds = async (now: number) => (await store.dueDeliveries(now, 10)).filter((x) => x.clusterId === 'sc-dlv').map((x) => x.id);
      assert.deepEqual(await dueIds(T + 2), [d(1).id, d(2).id]);
      const claims = await Promise.all([1, 2].map((i) => store.putDelivery({ ...d(1), nextAttemptAt: T + 100 + i, version: 2 }, 1)));
      assert.equal(claims.filter(Boolean).length, 1, 'one claim wins');
      assert.deepEqual(await dueIds(T + 3), [d(2).id, d(3).id]);
      const attempt = { at: T + 4, durationMs: 3, httpStatus: 204, error: null };
      assert.equal(await store.putDelivery({ ...d(2), status: 'delivered', attempts: [attempt], tries: 1, nextAttemptAt: null, version: 2 }, 1), true);
      assert.deepEqual(await dueIds(T + 1000), [d(3).id, d(1).id], 'a settled delivery is never due');
      assert.deepEqual((await store.getDelivery('sc-dlv', 'wh_0000000000000001', d(2).id))?.attempts, [attempt]);
      const first = await store.listDeliveries('sc-dlv', 'wh_0000000000000001', { limit: 2 });
      assert.deepEqual(
        first.deliveries.map((x) => x.id),
        [d(3).id, d(2).id],
      );
      const rest = await store.listDeliveries('sc-dlv', 'wh_0000000000000001', { limit: 2, cursor: first.cursor! });
      assert.deepEqual(
        rest.deliveries.map((x) => x.id),
        [d(1).id],
      );
      assert.equal(rest.cursor, null);
    });

    it('secrets: created once, listed by kind, revoked or used exactly once', async () => {
      const key = {
        kind: 'operator' as const,
        id: '00112233445566aa',
        hash: 'ab'.repeat(32),
        createdAt: T,
        revokedAt: null,
        role: 'admin' as const,
        name: 'first',
      };
      const token = {
        kind: 'enrolment' as const,
        id: '00112233445566bb',
        hash: 'cd'.repeat(32),
        createdAt: T,
        revokedAt: null,
        clusterId: 'c',
        node: 'node-a',
        expiresAt: T + 1,
        usedAt: null,
      };
      assert.equal(await store.putSecretIfAbsent(key), true);
      assert.equal(await store.putSecretIfAbsent({ ...key, role: 'read-only' }), false);
      assert.equal(await store.putSecretIfAbsent(token), true);
      assert.deepEqual(await store.getSecret('operator', key.id), key);
      assert.equal(await store.getSecret('agent', key.id), null, 'kinds do not mix');
      assert.deepEqual(
        (await store.listSecrets('operator')).filter((r) => r.id === key.id),
        [key],
      );
      assert.ok(!(await store.listSecrets('operator')).some((r) => r.id === token.id));
      const uses = await Promise.all([1, 2, 3].map((i) => store.markSecret('enrolment', token.id, 'usedAt', T + i)));
      assert.equal(uses.filter(Boolean).length, 1, 'an enrolment token is used once');
      assert.equal(await store.markSecret('operator', key.id, 'revokedAt', T + 5), true);
      assert.equal(await store.markSecret('operator', key.id, 'revokedAt', T + 6), false);
      assert.equal((await store.getSecret('operator', key.id))?.revokedAt, T + 5);
      assert.equal(await store.markSecret('operator', 'ffffffffffffffff', 'revokedAt', T), false);
    });

    it('reads return copies: changing one changes nothing stored', async () => {
      const { lease } = await cluster('sc-copy');
      await store.putLeaseIfAbsent(lease);
      const read = (await store.getLease('sc-copy'))!;
      read.epoch = 99;
      read.terms.nodes[0] = 'mallory';
      assert.deepEqual(await store.getLease('sc-copy'), lease);
    });
  });
}
