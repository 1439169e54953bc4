/** The control plane's HTTP app: the same object serves the Node server and the Lambda handler. */
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { Arbiter } from './arbiter.ts';
import { swaggerUI } from '@hono/swagger-ui';
import { accessFor, allows, Credentials, FailureLimiter } from './auth.ts';
import { type InstallAssets, installAssets, installRouter } from './install.ts';
import type { Clock } from './clock.ts';
import { errorHandler, errorResponse } from './errors.ts';
import type { Logger } from './log.ts';
import { agentRouter } from './routes/agent.ts';
import { clustersRouter } from './routes/clusters.ts';
import { credentialsRouter } from './routes/credentials.ts';
import { router } from './routes/router.ts';
import { webhooksRouter } from './routes/webhooks.ts';
import type { Store } from './store/store.ts';
import { WebhookDeliverer } from './webhooks.ts';

/** Largest request body accepted; a cluster spec with 64 exports fits many times over. */
export const MAX_BODY_BYTES = 64 * 1024;

export interface AppDeps {
  store: Store;
  clock: Clock;
  log: Logger;
  /** The arbiter to serve with (one per process); made here when not given. */
  arbiter?: Arbiter;
  credentials?: Credentials;
  /** Where the installer's files are (tests point it elsewhere). */
  install?: InstallAssets;
  deliverer?: WebhookDeliverer;
}

/** The caller's address, for limiting authentication failures (Node server, or Lambda event). */
function clientAddress(c: Context): string {
  const env = c.env as { incoming?: { socket?: { remoteAddress?: string } }; event?: { requestContext?: { http?: { sourceIp?: string } } } } | undefined;
  return env?.incoming?.socket?.remoteAddress ?? env?.event?.requestContext?.http?.sourceIp ?? 'local';
}

export function createApp({
  store,
  clock,
  log,
  arbiter = new Arbiter(store, clock, log),
  credentials = new Credentials(store, clock),
  install = installAssets(),
  deliverer = new WebhookDeliverer(store, clock, log),
}: AppDeps) {
  const app = router();
  const limiter = new FailureLimiter();

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

  app.use('/v1/*', async (c, next) => {
    const access = accessFor(c.req.method, c.req.path);
    if ('public' in access) return next();
    const client = clientAddress(c);
    if (limiter.blocked(client, clock.now()))
      return errorResponse(c, 429, 'too_many_auth_failures', 'too many failed authentications from this address; wait a minute');
    const header = c.req.header('authorization');
    if (!header) return errorResponse(c, 401, 'unauthenticated', 'this route needs a credential: Authorization: Bearer <token>');
    const token = /^Bearer ([\x21-\x7e]{1,200})$/.exec(header)?.[1];
    const principal = token ? await credentials.authenticate(token) : null;
    if (!principal) {
      limiter.fail(client, clock.now());
      return errorResponse(c, 401, 'invalid_credential', 'the credential is malformed, unknown or revoked');
    }
    if (!allows(access, principal)) return errorResponse(c, 403, 'forbidden', `this credential may not ${c.req.method} ${c.req.path}`);
    await next();
  });

  app.get('/healthz', (c) => c.json({ ok: true }));
  app.route('/', installRouter(install));
  app.route('/', clustersRouter({ store, arbiter, clock, credentials }));
  app.route('/', agentRouter(arbiter));
  app.route('/', credentialsRouter({ store, credentials, clock }));
  app.route('/', webhooksRouter({ store, clock, outbox: arbiter.outbox, deliverer }));
  // Interactive docs: Swagger UI's page (its scripts come from a CDN) over /openapi.json.
  app.get('/docs', swaggerUI({ url: '/openapi.json', title: 'nfs-ha control plane API' }));
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: { title: 'nfs-ha control plane', version: '1', description: 'Lease arbiter and fencing authority for two-node NFS clusters.' },
  });

  app.notFound((c) => errorResponse(c, 404, 'route_not_found', `no route for ${c.req.method} ${c.req.path}`));
  app.onError(errorHandler(log));
  return app;
}

export type App = ReturnType<typeof createApp>;
