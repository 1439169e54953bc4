/** The control plane's HTTP app: the same object serves the Node server and the Lambda handler. */
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { Arbiter } from './arbiter.ts';
import type { Clock } from './clock.ts';
import { errorHandler, errorResponse } from './errors.ts';
import type { Logger } from './log.ts';
import { agentRouter } from './routes/agent.ts';
import { clustersRouter } from './routes/clusters.ts';
import { router } from './routes/router.ts';
import type { Store } from './store/store.ts';

/** Largest request body accepted; a cluster spec with 64 exports fits many times over. */
export const MAX_BODY_BYTES = 64 * 1024;

export interface AppDeps {
  store: Store;
  clock: Clock;
  log: Logger;
  /** The arbiter to serve with (one per process); made here when not given. */
  arbiter?: Arbiter;
}

export function createApp({ store, clock, log, arbiter = new Arbiter(store, clock, log) }: AppDeps) {
  const app = router();

  if (log.isLevelEnabled('debug')) {
    app.use('*', async (c, next) => {
      const started = performance.now();
      await next();
      log.debug({ method: c.req.method, path: c.req.path, status: c.res.status, ms: +(performance.now() - started).toFixed(2) }, 'request');
    });
  }
  const tooLarge = (c: Context) => errorResponse(c, 413, 'payload_too_large', `request body exceeds ${MAX_BODY_BYTES} bytes`);
  const countingLimit = bodyLimit({ maxSize: MAX_BODY_BYTES, onError: tooLarge });
  app.use('*', async (c, next) => {
    // With a Content-Length the HTTP parser reads exactly that many bytes, so the header alone
    // decides; only a chunked body needs counting as it streams (which costs a full Request).
    const length = c.req.header('content-length');
    if (length === undefined) return countingLimit(c, next);
    if (Number(length) > MAX_BODY_BYTES) return tooLarge(c);
    await next();
  });

  app.get('/healthz', (c) => c.json({ ok: true }));
  app.route('/', clustersRouter({ store, arbiter, clock }));
  app.route('/', agentRouter(arbiter));
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: { title: 'nfs-ha control plane', version: '1', description: 'Lease arbiter and fencing authority for two-node NFS clusters.' },
  });

  app.notFound((c) => errorResponse(c, 404, 'route_not_found', `no route for ${c.req.method} ${c.req.path}`));
  app.onError(errorHandler(log));
  return app;
}

export type App = ReturnType<typeof createApp>;
