/** The control plane's HTTP app: the same object serves the Node server and the Lambda handler. */
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
}

export function createApp({ store, clock, log }: AppDeps) {
  const arbiter = new Arbiter(store, clock, log);
  const app = router();

  app.use('*', async (c, next) => {
    const started = performance.now();
    await next();
    log.debug({ method: c.req.method, path: c.req.path, status: c.res.status, ms: +(performance.now() - started).toFixed(2) }, 'request');
  });
  app.use(
    '*',
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: (c) => errorResponse(c, 413, 'payload_too_large', `request body exceeds ${MAX_BODY_BYTES} bytes`),
    }),
  );

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
