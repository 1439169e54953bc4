/**
 * Webhooks: what operators subscribe to, the messages made from the cluster's events, how they
 * are signed (Standard Webhooks) and when a failed delivery is tried again. Pure; the control
 * plane's outbox and deliverer (control-plane/webhooks.ts) do the I/O.
 */
import { createHmac, createHash } from 'node:crypto';
import { z } from 'zod';
import { type ClusterEvent, type Phase, PHASES } from './events.ts';

export const WEBHOOK_TYPES = [
  'failover.started',
  'node.fenced',
  'failover.completed',
  'switchover.completed',
  'node.down',
  'node.up',
  'resource.failed',
  'lease.lost',
  'maintenance.changed',
  'store.regressed',
  'failsafe.entered',
  'failsafe.left',
  'lease.expired',
] as const;
export const WebhookType = z.enum(WEBHOOK_TYPES);
export type WebhookType = z.infer<typeof WebhookType>;
/** Sent by `POST …/webhooks/{id}/test` to that subscription only, whatever its filter. */
export const TEST_TYPE = 'webhook.test';

export const WebhookId = z.string().regex(/^wh_[a-z0-9]{16}$/, 'must be a webhook id (wh_…)');
export const DeliveryId = z.string().regex(/^dlv_[a-z0-9]{9}_[a-z0-9]{20}$/, 'must be a delivery id (dlv_…)');

export const WebhookUrl = z
  .url({ protocol: /^https?$/ })
  .max(2000)
  .refine((u) => {
    const url = new URL(u);
    return url.username === '' && url.password === '';
  }, 'must not carry credentials in the URL (the signature authenticates the sender)')
  .describe('Where to POST: an http(s) URL without credentials, at most 2000 characters');

export const WebhookCreateSchema = z
  .object({
    url: WebhookUrl,
    types: z.array(WebhookType).min(1).max(WEBHOOK_TYPES.length).optional().describe('Only these event types (default: all)'),
    description: z.string().max(200).optional(),
  })
  .strict();
export type WebhookCreate = z.infer<typeof WebhookCreateSchema>;

export const WebhookViewSchema = z.object({
  id: WebhookId,
  clusterId: z.string(),
  url: z.string(),
  types: z.array(WebhookType).nullable().describe('null: every type'),
  description: z.string().nullable(),
  createdAt: z.string(),
});

export const DeliveryStatus = z.enum(['pending', 'delivered', 'failed']);
export type DeliveryStatus = z.infer<typeof DeliveryStatus>;

export const AttemptSchema = z.object({
  at: z.number().int().describe('Control-plane time, ms since the Unix epoch'),
  durationMs: z.number().int().nonnegative(),
  httpStatus: z.number().int().nullable().describe('null: no response (refused, timed out, DNS)'),
  error: z.string().max(500).nullable(),
});
export type Attempt = z.infer<typeof AttemptSchema>;

export const DeliveryViewSchema = z.object({
  id: DeliveryId,
  webhookId: WebhookId,
  messageId: z.string(),
  type: z.string(),
  status: DeliveryStatus,
  attempts: z.array(AttemptSchema.extend({ at: z.string() })),
  nextAttemptAt: z.string().nullable(),
  createdAt: z.string(),
  payload: z.unknown().describe('The JSON body sent'),
});

/** One message: the body every subscriber of its type receives, under one webhook-id. */
export interface WebhookMessage {
  /** webhook-id: the same on every attempt and for every subscriber, so receivers can dedupe. */
  id: string;
  type: WebhookType | typeof TEST_TYPE;
  clusterId: string;
  /** ms since the Unix epoch: when the event happened. */
  at: number;
  data: Record<string, unknown>;
}

const message = (e: ClusterEvent, type: WebhookMessage['type'], data: Record<string, unknown>): WebhookMessage => ({
  id: `msg_${createHash('sha256').update(`${e.clusterId}/${e.id}/${type}`).digest('base64url').slice(0, 24)}`,
  type,
  clusterId: e.clusterId,
  at: e.at,
  data,
});

/** True when `webhookMessages` needs the epoch's earlier events to decide about `e`. */
export function needsEpochEvents(e: ClusterEvent): boolean {
  return e.type === 'phase.reported' && e.data.phase === 'floating-ip' && e.data.direction === 'start' && e.data.status === 'succeeded';
}

/**
 * The messages an event gives rise to. `epochEvents` are the events of `e`'s epoch recorded
 * before it (only read when needsEpochEvents(e)): a takeover is complete when its floating IP
 * first comes up, and its timings are the phases the agent reported on the way.
 */
export function webhookMessages(e: ClusterEvent, epochEvents: readonly ClusterEvent[] = []): WebhookMessage[] {
  switch (e.type) {
    case 'lease.granted': {
      const { previousHolder, reason } = e.data;
      const out: WebhookMessage[] = [];
      if (previousHolder && (reason === 'lease-expired' || reason === 'holder-silent')) {
        out.push(message(e, 'lease.lost', { node: previousHolder, epoch: e.epoch - 1, reason, newHolder: e.node }));
      }
      // A switchover was asked for; it is announced when it completes. A store that went back
      // is announced by store.regressed (the serving node keeps the service under a new epoch).
      if (reason !== 'switchover' && reason !== 'store-regressed') out.push(message(e, 'failover.started', { epoch: e.epoch, from: previousHolder, to: e.node, reason }));
      return out;
    }
    case 'fencing.confirmed':
      // Every takeover preempts the peer's key; only a failed node's is news.
      if (!e.data.victim) return [];
      return [message(e, 'node.fenced', { node: e.data.victim, by: e.node, epoch: e.epoch, keys: e.data.keys, durationMs: e.data.durationMs ?? null })];
    case 'phase.reported': {
      const { phase, direction, status } = e.data;
      if (status === 'failed') {
        return [message(e, 'resource.failed', { node: e.node, epoch: e.epoch, resource: phase, during: direction, message: e.data.message ?? null })];
      }
      if (!needsEpochEvents(e)) return [];
      const earlier = epochEvents.filter((x) => x.epoch === e.epoch && x.at <= e.at && x.id !== e.id);
      const grant = earlier.find((x) => x.type === 'lease.granted');
      const started = (x: ClusterEvent) => x.type === 'phase.reported' && x.node === e.node && x.data.direction === 'start' && x.data.status === 'succeeded';
      // A local restart brings the floating IP up again: only the first time completes the takeover.
      if (
        !grant ||
        grant.type !== 'lease.granted' ||
        grant.node !== e.node ||
        earlier.some((x) => started(x) && x.type === 'phase.reported' && x.data.phase === 'floating-ip')
      ) {
        return [];
      }
      const phases: Partial<Record<Phase, number>> = {};
      for (const x of [...earlier, e]) {
        if (started(x) && x.type === 'phase.reported' && x.data.durationMs !== undefined && phases[x.data.phase] === undefined)
          phases[x.data.phase] = x.data.durationMs;
      }
      const confirmed = earlier.find((x) => x.type === 'fencing.confirmed');
      if (confirmed?.type === 'fencing.confirmed' && confirmed.data.durationMs !== undefined) phases.fence ??= confirmed.data.durationMs;
      const ordered = Object.fromEntries(PHASES.filter((p) => phases[p] !== undefined).map((p) => [p, phases[p]]));
      const type = grant.data.reason === 'switchover' ? 'switchover.completed' : 'failover.completed';
      return [
        message(e, type, {
          epoch: e.epoch,
          from: grant.data.previousHolder,
          to: e.node,
          reason: grant.data.reason,
          takeoverMs: e.at - grant.at,
          phases: ordered,
        }),
      ];
    }
    case 'maintenance.changed':
      return [message(e, 'maintenance.changed', { enabled: e.data.enabled })];
    case 'node.down':
      return [message(e, 'node.down', { node: e.node, silentMs: e.data.silentMs })];
    case 'store.regressed':
      return [message(e, 'store.regressed', { node: e.node, ...e.data })];
    case 'failsafe.entered':
    case 'failsafe.left':
      return [message(e, e.type, { node: e.node, ...e.data })];
    case 'node.up':
      return [message(e, 'node.up', { node: e.node, downForMs: e.data.downForMs })];
    case 'lease.expired':
      return [message(e, 'lease.expired', { node: e.node, epoch: e.epoch, expiredForMs: e.data.expiredForMs })];
    default:
      return [];
  }
}

export function subscribed(types: readonly string[] | null, type: WebhookMessage['type']): boolean {
  return type === TEST_TYPE || types === null || types.includes(type);
}

/** The request body: Standard Webhooks' `{ type, timestamp, data }`. */
export function messageBody(m: WebhookMessage): string {
  return JSON.stringify({ type: m.type, timestamp: new Date(m.at).toISOString(), data: { clusterId: m.clusterId, ...m.data } });
}

/** A new signing secret: `whsec_` and 32 random bytes in base64, as Standard Webhooks prescribes. */
export function formatSecret(bytes: Buffer): string {
  return `whsec_${bytes.toString('base64')}`;
}

/**
 * The Standard Webhooks headers for one attempt: HMAC-SHA256 over `id.timestamp.body` with the
 * secret's bytes, `v1,<base64>`; the timestamp is the attempt's, in seconds.
 */
/**
 * The Standard Webhooks headers. Several secrets sign at once during a rotation's overlap (the
 * header lists one `v1,` signature per secret, space-separated), so receivers verify with
 * either the old or the new secret.
 */
export function signedHeaders(secrets: string | readonly string[], id: string, attemptAtMs: number, body: string): Record<string, string> {
  const timestamp = Math.floor(attemptAtMs / 1000).toString();
  const signatures = (typeof secrets === 'string' ? [secrets] : secrets).map((secret) => {
    const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
    return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
  });
  return { 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': signatures.join(' '), 'content-type': 'application/json' };
}

export interface RetryPolicy {
  /** Delay before the second attempt; doubled after each failure. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Attempts in all, the first included; then the delivery is failed (it can be redelivered). */
  maxAttempts: number;
}

/** 2 s, 4 s, 8 s … capped at an hour: 17 attempts over 3 to 6 hours (the jitter decides). */
export const DEFAULT_RETRY: RetryPolicy = { baseDelayMs: 2000, maxDelayMs: 3_600_000, maxAttempts: 17 };

/**
 * The wait after failed attempt number `attempts` (1 = the first), or null when none is left.
 * Exponential, with "equal jitter": half fixed, half random, so retries of many deliveries to one
 * recovering receiver spread out instead of arriving together.
 */
export function retryDelayMs(attempts: number, policy: RetryPolicy, random: () => number = Math.random): number | null {
  if (attempts >= policy.maxAttempts) return null;
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempts - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Delivery ids sort by the event's time and are the same whenever the same message is enqueued for the same webhook. */
export function deliveryId(webhookId: string, m: Pick<WebhookMessage, 'id' | 'at'>): string {
  const hash = createHash('sha256').update(`${webhookId}/${m.id}`).digest('hex').slice(0, 20);
  return `dlv_${m.at.toString(36).padStart(9, '0')}_${hash}`;
}
