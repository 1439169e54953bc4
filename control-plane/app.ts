/** The control plane's HTTP app: the same object serves the Node server and the Lambda handler. */
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { routePath } from 'hono/route';
import { Arbiter } from './arbiter.ts';
import { docsDir, docsRouter } from './docs.ts';
import { statusPageRouter } from './status-page.ts';
import { accessFor, allows, Credentials } from './auth.ts';
import type { AppOptions } from './config.ts';
import { AddressSet, clientAddress, FailureLimiter } from './limits.ts';
import { type InstallAssets, installAssets, installRouter } from './install.ts';
import type { Clock } from './clock.ts';
import { errorHandler, errorResponse } from './errors.ts';
import { ControlPlaneMetrics } from './metrics.ts';
import { VERSION } from '../shared/version.ts';
import type { Logger } from './log.ts';
import { agentRouter } from './routes/agent.ts';
import { clustersRouter } from './routes/clusters.ts';
import { credentialsRouter } from './routes/credentials.ts';
import { router } from './routes/router.ts';
import { type Backups, backupsRouter } from './routes/backups.ts';
import { metricsRouter } from './routes/metrics.ts';
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
  options?: Partial<AppOptions>;
  /** The embedded store's online backups (absent on DynamoDB). */
  backups?: Backups | undefined;
  /** Shared with the arbiter and the deliverer, which count what they do (made here when not given). */
  metrics?: ControlPlaneMetrics;
}

export const DEFAULT_APP_OPTIONS: AppOptions = { publicUrl: null, agentUrl: null, trustedProxies: [], webhookAllow: [], surface: 'all' };

/** The caller's address (Node server socket, or the Lambda event's source), behind a trusted proxy too. */
function callerAddress(c: Context, trusted: AddressSet): string {
  const env = c.env as { incoming?: { socket?: { remoteAddress?: string } }; event?: { requestContext?: { http?: { sourceIp?: string } } } } | undefined;
  const peer = env?.incoming?.socket?.remoteAddress ?? env?.event?.requestContext?.http?.sourceIp ?? 'local';
  return clientAddress(peer, c.req.header('x-forwarded-for'), trusted);
}

/** Routes an agents-only instance serves (the lease protocol, its spec, health). */
function agentRoute(method: string, path: string): boolean {
  return /^\/v1\/clusters\/[^/]+\/nodes\/[^/]+\/[a-z]+$/.test(path) || (method === 'GET' && /^\/v1\/clusters\/[^/]+$/.test(path)) || path === '/healthz';
}

export function createApp({
  store,
  clock,
  log,
  metrics = new ControlPlaneMetrics(),
  arbiter = new Arbiter(store, clock, log, { metrics }),
  credentials = new Credentials(store, clock),
  install = installAssets(),
  deliverer,
  options = {},
  backups,
}: AppDeps) {
  const opts = { ...DEFAULT_APP_OPTIONS, ...options };
  const delivery = deliverer ?? new WebhookDeliverer(store, clock, log, { allow: new AddressSet(opts.webhookAllow), metrics });
  const trusted = new AddressSet(opts.trustedProxies);
  const app = router();
  const limiter = new FailureLimiter();
  // Enrolment is the one route anyone can call. A valid token costs nothing to check and is
  // one-time; what is limited is refused tokens, per address, as for other credentials.
  const enrolFailures = new FailureLimiter();

  app.use('*', async (c, next) => {
    const started = performance.now();
    await next();
    const seconds = (performance.now() - started) / 1000;
    metrics.request(c.req.method, routePath(c, -1), c.res.status, seconds);
    if (log.isLevelEnabled('debug')) log.debug({ method: c.req.method, path: c.req.path, status: c.res.status, ms: +(seconds * 1000).toFixed(2) }, 'request');
  });
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

  if (opts.surface !== 'all') {
    // On AWS the agents have a function of their own (infra/cloudformation.yaml): each serves only its routes.
    app.use('*', async (c, next) => {
      if (agentRoute(c.req.method, c.req.path) === (opts.surface === 'agent')) return next();
      return errorResponse(c, 404, 'route_not_found', `no route for ${c.req.method} ${c.req.path} on this endpoint (the ${opts.surface} endpoint)`);
    });
  }

  app.use('/v1/*', async (c, next) => {
    c.set('principal', null);
    const access = accessFor(c.req.method, c.req.path);
    if ('public' in access) {
      const client = callerAddress(c, trusted);
      if (enrolFailures.locked(client, clock.now()))
        return errorResponse(c, 429, 'too_many_auth_failures', 'too many refused enrolment tokens from this address; wait a minute', undefined, {
          'retry-after': '60',
        });
      await next();
      if (c.res.status === 401)
        enrolFailures.fail(client, clock.now(), (n) =>
          log.warn({ client, failures: n }, `${n} refused enrolment tokens from ${client} within a minute: refusing it for a minute`),
        );
      return;
    }
    const header = c.req.header('authorization');
    const token = header ? /^Bearer ([\x21-\x7e]{1,200})$/.exec(header)?.[1] : undefined;
    // A valid credential is never refused by the failure limiter, whoever shares its address.
    const principal = token ? await credentials.authenticate(token) : null;
    if (!principal) {
      const client = callerAddress(c, trusted);
      const locked = limiter.fail(client, clock.now(), (n) =>
        log.warn({ client, failures: n }, `${n} failed authentications from ${client} within a minute: refusing its failed attempts for a minute`),
      );
      if (locked)
        return errorResponse(c, 429, 'too_many_auth_failures', 'too many failed authentications from this address; wait a minute', undefined, {
          'retry-after': '60',
        });
      if (!header) return errorResponse(c, 401, 'unauthenticated', 'this route needs a credential: Authorization: Bearer <token>');
      return errorResponse(c, 401, 'invalid_credential', 'the credential is malformed, unknown or revoked');
    }
    if (!allows(access, principal)) return errorResponse(c, 403, 'forbidden', `this credential may not ${c.req.method} ${c.req.path}`);
    c.set('principal', principal);
    await next();
  });

  app.get('/healthz', (c) => c.json({ ok: true }));
  app.route('/', installRouter(install, opts));
  app.route('/', clustersRouter({ store, arbiter, clock, credentials }));
  app.route('/', agentRouter(arbiter));
  app.route('/', credentialsRouter({ store, credentials, clock, install }));
  app.route('/', webhooksRouter({ store, clock, outbox: arbiter.outbox, deliverer: delivery }));
  app.route('/', backupsRouter(backups));
  app.route('/', metricsRouter({ store, clock, metrics }));
  app.route('/', docsRouter(docsDir()));
  app.route('/', statusPageRouter());
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'An operator key (nfsha_op_…: admin or read-only) or, on its node routes, an agent credential',
  });
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'nfs-ha control plane',
      version: VERSION,
      description: 'Lease arbiter and fencing authority for two-node NFS clusters.',
      license: { name: 'Apache-2.0', url: 'https://www.apache.org/licenses/LICENSE-2.0' },
    },
    servers: [{ url: opts.publicUrl ?? '/', description: 'this control plane' }],
    security: [{ bearer: [] }],
  });

  app.notFound((c) => errorResponse(c, 404, 'route_not_found', `no route for ${c.req.method} ${c.req.path}`));
  app.onError(errorHandler(log));
  return app;
}

export type App = ReturnType<typeof createApp>;
