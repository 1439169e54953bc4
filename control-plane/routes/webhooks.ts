/** Webhook subscriptions of a cluster, their deliveries, redelivery and test events. */
import { randomBytes } from 'node:crypto';
import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import {
  DeliveryId,
  DeliveryStatus,
  DeliveryViewSchema,
  formatSecret,
  WEBHOOK_TYPES,
  WebhookCreateSchema,
  WebhookId,
  WebhookViewSchema,
} from '../../shared/webhooks.ts';
import type { Principal } from '../auth.ts';
import type { Clock } from '../clock.ts';
import { ApiError } from '../errors.ts';
import type { DeliveryRecord, Store, WebhookRecord } from '../store/store.ts';
import type { WebhookDeliverer, WebhookOutbox } from '../webhooks.ts';
import { ClusterParams, errors, existingCluster, jsonBody, jsonResponse, router } from './router.ts';

const tags = ['webhooks'];
const iso = (ms: number) => new Date(ms).toISOString();
const WebhookParams = ClusterParams.extend({ webhookId: WebhookId });
const DeliveryParams = WebhookParams.extend({ deliveryId: DeliveryId });
/** Subscriptions per cluster: each costs a delivery per message. */
const MAX_WEBHOOKS = 20;

/**
 * What a caller may see. A webhook URL is often a secret of its own (Slack, Teams): read-only
 * keys see only its origin. They see each attempt's outcome, not its error text.
 */
type Viewer = { admin: boolean };
const viewer = (c: { get(key: 'principal'): Principal | null }): Viewer => {
  const p = c.get('principal');
  return { admin: p?.kind === 'operator' && p.role === 'admin' };
};

function webhookView(w: WebhookRecord, v: Viewer = { admin: true }) {
  const url = v.admin ? w.url : `${new URL(w.url).origin}/…`;
  return { id: w.id, clusterId: w.clusterId, url, types: w.types, description: w.description, createdAt: iso(w.createdAt) };
}

function deliveryView(d: DeliveryRecord, v: Viewer = { admin: true }) {
  return {
    id: d.id,
    webhookId: d.webhookId,
    messageId: d.messageId,
    type: d.type,
    status: d.status,
    attempts: d.attempts.map((a) => ({ ...a, at: iso(a.at), ...(!v.admin && { error: a.error === null ? null : 'failed (details for admin keys)' }) })),
    nextAttemptAt: d.nextAttemptAt === null ? null : iso(d.nextAttemptAt),
    createdAt: iso(d.createdAt),
    payload: JSON.parse(d.body) as unknown,
  };
}

/** How long the previous secret keeps signing after a rotation, by default. */
const SECRET_OVERLAP_MS = 24 * 3_600_000;

export function webhooksRouter(deps: { store: Store; clock: Clock; outbox: WebhookOutbox; deliverer: WebhookDeliverer }) {
  const { store, clock, outbox, deliverer } = deps;

  async function webhook(clusterId: string, webhookId: string): Promise<WebhookRecord> {
    await existingCluster(store, clusterId);
    const w = await store.getWebhook(clusterId, webhookId);
    if (!w) throw new ApiError(404, 'webhook_not_found', `cluster ${clusterId} has no webhook ${webhookId}`);
    return w;
  }

  return router()
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'createWebhook',
        path: '/v1/clusters/{clusterId}/webhooks',
        tags,
        summary: 'Subscribe a URL to the cluster’s events (admin)',
        description:
          `Every message is POSTed as JSON \`{ type, timestamp, data }\`, signed per Standard Webhooks (headers webhook-id, webhook-timestamp, webhook-signature \`v1,<base64 HMAC-SHA256>\` with the secret returned here, once). ` +
          `Types: ${WEBHOOK_TYPES.join(', ')}. Delivered at least once (dedupe on webhook-id), retried with exponential backoff and jitter on any answer but 2xx.`,
        request: { params: ClusterParams, ...jsonBody(WebhookCreateSchema) },
        responses: {
          201: jsonResponse(WebhookViewSchema.extend({ secret: z.string().describe('whsec_…: shown once; verify signatures with it') }), 'Subscribed'),
          ...errors(400, 404, 409, 503),
        },
      }),
      async (c) => {
        const { clusterId } = c.req.valid('param');
        const body = c.req.valid('json');
        await existingCluster(store, clusterId);
        if ((await store.listWebhooks(clusterId)).length >= MAX_WEBHOOKS) {
          throw new ApiError(409, 'too_many_webhooks', `cluster ${clusterId} has ${MAX_WEBHOOKS} webhooks already; delete one first`);
        }
        const refused = await deliverer.destinations.check(body.url);
        if (refused) throw new ApiError(400, 'webhook_destination_refused', `the webhook URL is refused: ${refused}`);
        const record: WebhookRecord = {
          clusterId,
          id: `wh_${randomBytes(8).toString('hex')}`,
          url: body.url,
          secret: formatSecret(randomBytes(32)),
          types: body.types ? [...new Set(body.types)] : null,
          description: body.description ?? null,
          createdAt: clock.now(),
        };
        if (!(await store.putWebhookIfAbsent(record))) throw new Error(`webhook id ${record.id} collided`);
        return c.json({ ...webhookView(record), secret: record.secret }, 201, { Location: `/v1/clusters/${clusterId}/webhooks/${record.id}` });
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        operationId: 'listWebhooks',
        path: '/v1/clusters/{clusterId}/webhooks',
        tags,
        summary: 'List the cluster’s webhooks (without secrets)',
        request: { params: ClusterParams },
        responses: { 200: jsonResponse(z.object({ webhooks: z.array(WebhookViewSchema) }), 'The webhooks'), ...errors(400, 404, 503) },
      }),
      async (c) => {
        const { clusterId } = c.req.valid('param');
        await existingCluster(store, clusterId);
        const v = viewer(c);
        return c.json({ webhooks: (await store.listWebhooks(clusterId)).map((w) => webhookView(w, v)) }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        operationId: 'getWebhook',
        path: '/v1/clusters/{clusterId}/webhooks/{webhookId}',
        tags,
        summary: 'Get a webhook (without its secret)',
        request: { params: WebhookParams },
        responses: { 200: jsonResponse(WebhookViewSchema, 'The webhook'), ...errors(400, 404, 503) },
      }),
      async (c) => {
        const { clusterId, webhookId } = c.req.valid('param');
        return c.json(webhookView(await webhook(clusterId, webhookId), viewer(c)), 200);
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'rotateWebhookSecret',
        path: '/v1/clusters/{clusterId}/webhooks/{webhookId}/rotate-secret',
        tags,
        summary: 'A new signing secret (admin); the old one keeps signing too during the overlap',
        description:
          'Every delivery carries one signature per live secret (`webhook-signature: v1,<new> v1,<old>`), so a receiver verifies with either: update it, then let the overlap end.',
        request: {
          params: WebhookParams,
          ...jsonBody(
            z
              .object({
                overlapSeconds: z
                  .number()
                  .int()
                  .min(0)
                  .max(7 * 86_400)
                  .optional()
                  .describe('Default 86400 (a day)'),
              })
              .strict(),
          ),
        },
        responses: {
          200: jsonResponse(WebhookViewSchema.extend({ secret: z.string().describe('Shown once'), previousSecretUntil: z.string() }), 'Rotated'),
          ...errors(400, 404, 503),
        },
      }),
      async (c) => {
        const { clusterId, webhookId } = c.req.valid('param');
        const { overlapSeconds } = c.req.valid('json');
        const current = await webhook(clusterId, webhookId);
        const until = clock.now() + (overlapSeconds === undefined ? SECRET_OVERLAP_MS : overlapSeconds * 1000);
        const next: WebhookRecord = { ...current, secret: formatSecret(randomBytes(32)), previousSecret: current.secret, previousSecretUntil: until };
        if (!(await store.replaceWebhook(next))) throw new ApiError(404, 'webhook_not_found', `cluster ${clusterId} has no webhook ${webhookId}`);
        return c.json({ ...webhookView(next), secret: next.secret, previousSecretUntil: iso(until) }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'delete',
        operationId: 'deleteWebhook',
        path: '/v1/clusters/{clusterId}/webhooks/{webhookId}',
        tags,
        summary: 'Delete a webhook (admin); its pending deliveries are dropped',
        request: { params: WebhookParams },
        responses: { 204: { description: 'Deleted' }, ...errors(400, 404, 503) },
      }),
      async (c) => {
        const { clusterId, webhookId } = c.req.valid('param');
        await webhook(clusterId, webhookId);
        await store.deleteWebhook(clusterId, webhookId);
        return c.body(null, 204);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        operationId: 'listDeliveries',
        path: '/v1/clusters/{clusterId}/webhooks/{webhookId}/deliveries',
        tags,
        summary: 'A webhook’s deliveries, newest first, each with its attempts',
        request: {
          params: WebhookParams,
          query: z.object({
            limit: z.coerce.number().int().min(1).max(100).default(20),
            cursor: DeliveryId.optional().describe('The cursor of the previous page'),
            status: DeliveryStatus.optional().describe('Only deliveries in this state'),
          }),
        },
        responses: {
          200: jsonResponse(z.object({ deliveries: z.array(DeliveryViewSchema), cursor: z.string().nullable() }), 'A page of deliveries'),
          ...errors(400, 404, 503),
        },
      }),
      async (c) => {
        const { clusterId, webhookId } = c.req.valid('param');
        const { limit, cursor, status } = c.req.valid('query');
        await webhook(clusterId, webhookId);
        const page = await store.listDeliveries(clusterId, webhookId, { limit, cursor });
        const v = viewer(c);
        const deliveries = page.deliveries.filter((d) => !status || d.status === status).map((d) => deliveryView(d, v));
        return c.json({ deliveries, cursor: page.cursor }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'redeliver',
        path: '/v1/clusters/{clusterId}/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver',
        tags,
        summary: 'Send a delivery again now (admin), with the same webhook-id; a failed one gets a fresh round of retries',
        request: { params: DeliveryParams },
        responses: { 202: jsonResponse(DeliveryViewSchema, 'Due now'), ...errors(400, 404, 409, 503) },
      }),
      async (c) => {
        const { clusterId, webhookId, deliveryId } = c.req.valid('param');
        await webhook(clusterId, webhookId);
        const d = await store.getDelivery(clusterId, webhookId, deliveryId);
        if (!d) throw new ApiError(404, 'delivery_not_found', `webhook ${webhookId} has no delivery ${deliveryId}`);
        const next = await deliverer.redeliver(d);
        if (!next) throw new ApiError(409, 'delivery_busy', `delivery ${deliveryId} changed meanwhile (an attempt is under way); look again and retry`);
        outbox.kick();
        return c.json(deliveryView(next), 202);
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'testWebhook',
        path: '/v1/clusters/{clusterId}/webhooks/{webhookId}/test',
        tags,
        summary: 'Send a test event (webhook.test) to this webhook (admin)',
        request: { params: WebhookParams },
        responses: { 202: jsonResponse(DeliveryViewSchema, 'Enqueued; follow it in the deliveries'), ...errors(400, 404, 503) },
      }),
      async (c) => {
        const { clusterId, webhookId } = c.req.valid('param');
        return c.json(deliveryView(await outbox.enqueueTest(await webhook(clusterId, webhookId))), 202);
      },
    );
}
