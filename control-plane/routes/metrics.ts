/** GET /v1/metrics: Prometheus text exposition (any operator key; Prometheus sends it as a bearer token). */
import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import type { Clock } from '../clock.ts';
import type { ControlPlaneMetrics } from '../metrics.ts';
import type { Store } from '../store/store.ts';
import { errors, router } from './router.ts';

export function metricsRouter({ store, clock, metrics }: { store: Store; clock: Clock; metrics: ControlPlaneMetrics }) {
  return router().openapi(
    createRoute({
      method: 'get',
      operationId: 'getMetrics',
      path: '/v1/metrics',
      tags: ['metrics'],
      summary: 'Prometheus metrics',
      description:
        "Every cluster's lease, holder, heartbeat ages, failsafe and fencing state, read from the store at scrape time; on the Node server also this process's counters (events, grants and fencing by reason, phase durations, webhook deliveries, request latency). On Lambda the counters go to CloudWatch as embedded metrics instead. Scrape with a read-only key.",
      responses: {
        200: { content: { 'text/plain': { schema: z.string() } }, description: 'Prometheus text format 0.0.4' },
        ...errors(401, 403, 503),
      },
    }),
    async (c) => c.text(await metrics.scrape(store, clock), 200, { 'content-type': metrics.contentType }),
  );
}
