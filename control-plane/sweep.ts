/**
 * Periodic housekeeping, run by EventBridge Scheduler on Lambda and by a timer in the Node
 * server: reads every cluster's lease, which stores any events a crash left in its outbox
 * between a decision and its events.
 */
import type { Arbiter } from './arbiter.ts';
import type { Logger } from './log.ts';
import type { Store } from './store/store.ts';

/** The scheduled event's payload (EventBridge Scheduler target input). */
export const SWEEP_EVENT = { nfsHaTask: 'sweep' } as const;

/** The one-off invocation that returns the first admin key (`aws lambda invoke`), never logging it. */
export const BOOTSTRAP_EVENT = { nfsHaTask: 'bootstrap-admin-key' } as const;

export function isTaskEvent<T extends { nfsHaTask: string }>(event: unknown, task: T): event is T {
  return typeof event === 'object' && event !== null && (event as { nfsHaTask?: unknown }).nfsHaTask === task.nfsHaTask;
}

export async function sweep(store: Store, arbiter: Arbiter, log: Logger): Promise<{ clusters: number; failed: number }> {
  const clusters = await store.listClusters();
  let failed = 0;
  for (const c of clusters) {
    try {
      await arbiter.read(c.spec.id);
    } catch (err) {
      failed++;
      log.warn({ clusterId: c.spec.id, err: (err as Error).message }, 'sweep: lease not read');
    }
  }
  log.debug({ clusters: clusters.length, failed }, 'sweep done');
  return { clusters: clusters.length, failed };
}
