/**
 * Periodic housekeeping, run by EventBridge Scheduler on Lambda and by a timer in the Node
 * server. For every cluster it reads the lease, which stores any events a crash left in its
 * outbox between a decision and its events, reports nodes unheard of for NODE_DOWN_AFTER_MS
 * (node.down) and a lease that ran out with no node taking it over (lease.expired: nobody
 * serves, and nobody will until a node is heard from); then it delivers the webhooks that are due.
 */
import type { ClusterEvent } from '../shared/events.ts';
import { leaseState } from '../shared/lease.ts';
import { type Arbiter, NODE_DOWN_AFTER_MS } from './arbiter.ts';
import type { Clock } from './clock.ts';
import type { Logger } from './log.ts';
import type { Store } from './store/store.ts';
import type { DeliveryPass, WebhookDeliverer } from './webhooks.ts';

/** The scheduled event's payload (EventBridge Scheduler target input). */
export const SWEEP_EVENT = { nfsHaTask: 'sweep' } as const;

/** The asynchronous self-invocation that delivers webhooks a request enqueued (Lambda only). */
export const DELIVER_EVENT = { nfsHaTask: 'deliver-webhooks' } as const;

/** The one-off invocation that returns the first admin key (`aws lambda invoke`), never logging it. */
export const BOOTSTRAP_EVENT = { nfsHaTask: 'bootstrap-admin-key' } as const;

export function isTaskEvent<T extends { nfsHaTask: string }>(event: unknown, task: T): event is T {
  return typeof event === 'object' && event !== null && (event as { nfsHaTask?: unknown }).nfsHaTask === task.nfsHaTask;
}

export interface SweepDeps {
  store: Store;
  arbiter: Arbiter;
  deliverer: WebhookDeliverer;
  clock: Clock;
  log: Logger;
  /** Deletes events older than this (the embedded store, which has no TTL); null: DynamoDB's TTL does it. */
  pruneEventsOlderThanMs?: number | null;
}

/**
 * A lease past its expiry this long with no taker is reported. A live peer takes an expired
 * lease over within a poll or two, so a lease still expired after this has nobody to go to.
 */
export const LEASE_EXPIRED_ALERT_MS = 5000;

/** Events deleted per cluster and sweep, so one sweep stays short however much has piled up. */
const PRUNE_BATCH = 500;

export async function sweep({
  store,
  arbiter,
  deliverer,
  clock,
  log,
  pruneEventsOlderThanMs = null,
}: SweepDeps): Promise<{ clusters: number; failed: number; nodesDown: number; pruned: number; webhooks: DeliveryPass }> {
  const clusters = await store.listClusters();
  let failed = 0;
  let nodesDown = 0;
  let pruned = 0;
  for (const c of clusters) {
    try {
      const lease = await arbiter.read(c.spec.id);
      // Reported once per epoch (the event's id is the epoch's); not while the arbiter knows of a
      // failsafe promise, under which the holder serves on although its lease ran out here.
      const expiredForMs = clock.now() - lease.expiresAt;
      if (lease.holder && !lease.failsafe && leaseState(lease, clock.now()) === 'expired' && expiredForMs > LEASE_EXPIRED_ALERT_MS) {
        const expired: ClusterEvent = {
          id: `e${lease.epoch}.lease.expired`,
          clusterId: c.spec.id,
          at: clock.now(),
          epoch: lease.epoch,
          type: 'lease.expired',
          node: lease.holder,
          data: { expiredForMs },
        };
        // Few events follow an expiry that nobody took over: one page holds them.
        const since = await store.listEvents(c.spec.id, { limit: 100, fromAt: lease.expiresAt, types: ['lease.expired'] });
        if (!since.events.some((e) => e.id === expired.id)) {
          log.error(
            { clusterId: c.spec.id, holder: lease.holder, epoch: lease.epoch, expiredForMs },
            `the lease of ${c.spec.id} (${lease.holder}, epoch ${lease.epoch}) ran out ${Math.round(expiredForMs / 1000)} s ago and no node has taken it over: nothing serves`,
          );
          await arbiter.recordEvents([expired], lease);
        }
      }
      if (pruneEventsOlderThanMs !== null) pruned += await store.pruneEvents(c.spec.id, clock.now() - pruneEventsOlderThanMs, PRUNE_BATCH);
      for (const s of await store.listNodeStatuses(c.spec.id)) {
        const now = clock.now();
        const silentMs = now - s.lastHeartbeatAt;
        if (s.downAt !== undefined || silentMs <= NODE_DOWN_AFTER_MS) continue;
        // Conditional on the status read: a heartbeat that landed meanwhile wins.
        if (!(await store.markNodeDown(c.spec.id, s.node, s.lastHeartbeatAt, now))) continue;
        nodesDown++;
        log.warn({ clusterId: c.spec.id, node: s.node, silentMs }, `${s.node} has not been heard from for ${Math.round(silentMs / 1000)} s: down`);
        const down: ClusterEvent = {
          id: `node.down.${s.node}.${s.lastHeartbeatAt}`,
          clusterId: c.spec.id,
          at: now,
          epoch: lease.epoch,
          type: 'node.down',
          node: s.node,
          data: { silentMs },
        };
        await arbiter.recordEvents([down], lease);
      }
    } catch (err) {
      failed++;
      log.warn({ clusterId: c.spec.id, err: (err as Error).message }, 'sweep: cluster not swept');
    }
  }
  const webhooks = await deliverer.deliverDue();
  log.debug({ clusters: clusters.length, failed, nodesDown, pruned, webhooks }, 'sweep done');
  return { clusters: clusters.length, failed, nodesDown, pruned, webhooks };
}
