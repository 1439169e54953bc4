/**
 * Webhook delivery: the outbox and the deliverer.
 *
 * The outbox is the store. Before an event is stored, a delivery is stored for every webhook
 * that subscribes to a message made from it (idempotent by id), so a stored event always has
 * its deliveries: an event still in the lease's outbox is stored later with them, by whoever
 * flushes it. The deliverer claims a due delivery with a conditional write (one attempt at a
 * time, across instances), POSTs it signed, and records the attempt; a failure is retried
 * with exponential backoff and jitter until the policy gives up. Delivery is at least once:
 * receivers dedupe on webhook-id.
 */
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import type { ClusterEvent } from '../shared/events.ts';
import type { Lease } from '../shared/lease.ts';
import {
  type Attempt,
  DEFAULT_RETRY,
  deliveryId,
  messageBody,
  needsEpochEvents,
  type RetryPolicy,
  retryDelayMs,
  signedHeaders,
  subscribed,
  TEST_TYPE,
  type WebhookMessage,
  webhookMessages,
} from '../shared/webhooks.ts';
import type { Clock } from './clock.ts';
import { AddressSet } from './limits.ts';
import type { Logger } from './log.ts';
import type { ControlPlaneMetrics } from './metrics.ts';
import type { DeliveryRecord, Store, WebhookRecord } from './store/store.ts';
import { WebhookDestinations } from './webhook-destinations.ts';

/** Attempts kept in a delivery's log (the newest); older ones are in the control plane's log. */
const ATTEMPT_LOG = 30;
/** Deliveries claimed per pass; each pass runs them concurrently. */
const BATCH = 25;

function newDelivery(webhook: WebhookRecord, m: WebhookMessage, now: number): DeliveryRecord {
  return {
    clusterId: webhook.clusterId,
    webhookId: webhook.id,
    id: deliveryId(webhook.id, m),
    messageId: m.id,
    type: m.type,
    body: messageBody(m),
    status: 'pending',
    attempts: [],
    tries: 0,
    nextAttemptAt: now,
    createdAt: now,
    version: 1,
  };
}

/** Enqueues the deliveries of events about to be stored. */
export class WebhookOutbox {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    /** Told when deliveries were enqueued, so they go out now rather than at the next poll. */
    private readonly onEnqueued: () => void = () => {},
  ) {}

  /** `lease`: the cluster's lease the events were decided on (a takeover's timings start at its grant). */
  async enqueue(events: readonly ClusterEvent[], lease: Lease | null): Promise<number> {
    const first = events[0];
    if (!first) return 0;
    const webhooks = await this.store.listWebhooks(first.clusterId);
    if (webhooks.length === 0) return 0;
    const now = this.clock.now();
    const deliveries: DeliveryRecord[] = [];
    for (const e of events) {
      const context = needsEpochEvents(e) ? await this.#epochEvents(e, lease) : [];
      for (const m of webhookMessages(e, context)) {
        for (const w of webhooks) if (subscribed(w.types, m.type)) deliveries.push(newDelivery(w, m, now));
      }
    }
    if (deliveries.length === 0) return 0;
    await this.store.putDeliveriesIfAbsent(deliveries);
    this.onEnqueued();
    return deliveries.length;
  }

  /** Something became due now (a redelivery): deliver without waiting for the next poll. */
  kick(): void {
    this.onEnqueued();
  }

  /** A test message to one webhook, whatever its filter. */
  async enqueueTest(webhook: WebhookRecord): Promise<DeliveryRecord> {
    const now = this.clock.now();
    const m: WebhookMessage = {
      id: `msg_test_${randomBytes(9).toString('base64url')}`,
      type: TEST_TYPE,
      clusterId: webhook.clusterId,
      at: now,
      data: { message: 'a test event from the nfs-ha control plane' },
    };
    const delivery = newDelivery(webhook, m, now);
    await this.store.putDeliveriesIfAbsent([delivery]);
    this.onEnqueued();
    return delivery;
  }

  /** The events of e's epoch since its grant (a takeover spans a few seconds: one page). */
  async #epochEvents(e: ClusterEvent, lease: Lease | null): Promise<ClusterEvent[]> {
    const grantedAt = lease?.epoch === e.epoch ? lease.fencing?.decidedAt : undefined;
    if (grantedAt === undefined) return [];
    const page = await this.store.listEvents(e.clusterId, { limit: 500, fromAt: grantedAt });
    return page.events.filter((x) => x.epoch === e.epoch);
  }
}

export interface DeliveryOptions {
  retry?: RetryPolicy;
  /** Per attempt: connect, send and the receiver's answer (default 5 s, well inside Lambda's 10 s). */
  timeoutMs?: number;
  /** Non-public addresses webhooks may reach all the same (NFSHA_WEBHOOK_ALLOW). */
  allow?: AddressSet;
  /** Counts the attempts by outcome. */
  metrics?: ControlPlaneMetrics;
}

/** The secrets that sign a delivery now: the current one, and during a rotation's overlap the previous one too. */
export function signingSecrets(webhook: WebhookRecord, now: number): string[] {
  return webhook.previousSecret && (webhook.previousSecretUntil ?? 0) > now ? [webhook.secret, webhook.previousSecret] : [webhook.secret];
}

export interface DeliveryPass {
  attempted: number;
  delivered: number;
  failed: number;
}

/** Sends due deliveries. Safe to run in several instances at once: each attempt is claimed first. */
export class WebhookDeliverer {
  readonly #retry: RetryPolicy;
  readonly #timeoutMs: number;
  readonly #metrics: ControlPlaneMetrics | null;
  readonly destinations: WebhookDestinations;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
    options: DeliveryOptions = {},
  ) {
    this.#retry = options.retry ?? DEFAULT_RETRY;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.destinations = new WebhookDestinations(options.allow ?? new AddressSet([]));
    this.#metrics = options.metrics ?? null;
  }

  /** Delivers what is due, pass after pass, until nothing is (or `maxPasses`). */
  async deliverDue(maxPasses = 8): Promise<DeliveryPass> {
    const total: DeliveryPass = { attempted: 0, delivered: 0, failed: 0 };
    for (let pass = 0; pass < maxPasses; pass++) {
      const due = await this.store.dueDeliveries(this.clock.now(), BATCH);
      const outcomes = await Promise.all(due.map((d) => this.#attempt(d)));
      const tried = outcomes.filter((o) => o !== null);
      total.attempted += tried.length;
      total.delivered += tried.filter((o) => o === 'delivered').length;
      total.failed += tried.filter((o) => o !== 'delivered').length;
      // Claimed elsewhere, or the index lagging a write: nothing more this time.
      if (tried.length === 0 || due.length < BATCH) break;
    }
    return total;
  }

  /** Sends it again now, whatever became of it (the message and its id stay the same). */
  async redeliver(d: DeliveryRecord): Promise<DeliveryRecord | null> {
    const next: DeliveryRecord = { ...d, status: 'pending', tries: 0, nextAttemptAt: this.clock.now(), version: d.version + 1 };
    return (await this.store.putDelivery(next, d.version)) ? next : null;
  }

  async #attempt(d: DeliveryRecord): Promise<'delivered' | 'retry' | 'failed' | null> {
    const start = this.clock.now();
    // The claim: due again only once this attempt has surely ended, so a crashed deliverer's
    // attempt is retried and a live one's is not doubled.
    const claim: DeliveryRecord = { ...d, nextAttemptAt: start + this.#timeoutMs + this.#retry.baseDelayMs, version: d.version + 1 };
    if (d.status !== 'pending' || !(await this.store.putDelivery(claim, d.version))) return null;
    const webhook = await this.store.getWebhook(d.clusterId, d.webhookId);
    const attempt = webhook ? await this.#post(webhook, d) : { at: start, durationMs: 0, httpStatus: null, error: 'the webhook was deleted' };
    const ok = attempt.httpStatus !== null && attempt.httpStatus >= 200 && attempt.httpStatus < 300;
    const tries = claim.tries + 1;
    const delay = ok || !webhook ? null : retryDelayMs(tries, this.#retry);
    const status = ok ? 'delivered' : delay === null ? 'failed' : 'pending';
    const next: DeliveryRecord = {
      ...claim,
      status,
      tries,
      attempts: [...claim.attempts, attempt].slice(-ATTEMPT_LOG),
      nextAttemptAt: status === 'pending' ? this.clock.now() + delay! : null,
      version: claim.version + 1,
    };
    const fields = {
      clusterId: d.clusterId,
      webhookId: d.webhookId,
      delivery: d.id,
      type: d.type,
      attempt: tries,
      httpStatus: attempt.httpStatus,
      ms: attempt.durationMs,
    };
    this.#metrics?.delivery(d.clusterId, ok ? 'delivered' : status === 'failed' ? 'failed' : 'retry');
    if (ok) this.log.info(fields, `webhook ${d.type} delivered to ${d.webhookId}`);
    else {
      const then = status === 'failed' ? 'giving up (redeliver to try again)' : `next attempt in ${Math.round(delay! / 1000)} s`;
      this.log.warn(
        { ...fields, err: attempt.error },
        `webhook ${d.type} to ${d.webhookId} failed (${attempt.error ?? `HTTP ${attempt.httpStatus}`}); ${then}`,
      );
    }
    // Lost only if the delivery was changed meanwhile (a redelivery): that change stands.
    await this.store.putDelivery(next, claim.version);
    return status === 'pending' ? 'retry' : status;
  }

  async #post(webhook: WebhookRecord, d: DeliveryRecord): Promise<Attempt> {
    const at = this.clock.now();
    const t0 = performance.now();
    const durationMs = () => Math.round(performance.now() - t0);
    const url = new URL(webhook.url);
    // A name is checked as it is resolved for the connection (the lookup below); an address has no lookup.
    const literal = isIP(url.hostname.replace(/^\[(.*)\]$/, '$1')) !== 0;
    const refused = literal ? this.destinations.refusal(url.hostname.replace(/^\[(.*)\]$/, '$1')) : null;
    if (refused) return { at, durationMs: 0, httpStatus: null, error: `refused: ${refused}`.slice(0, 500) };
    const headers = { ...signedHeaders(signingSecrets(webhook, at), d.messageId, at, d.body), 'user-agent': 'nfs-ha-webhooks/1' };
    return new Promise<Attempt>((resolve) => {
      const fail = (err: Error & { code?: string }) => {
        const reason =
          err.name === 'TimeoutError' || err.name === 'AbortError'
            ? `no answer within ${this.#timeoutMs} ms`
            : err.code === 'EDESTINATIONREFUSED'
              ? `refused: ${err.message}`
              : (err.code ?? err.message);
        resolve({ at, durationMs: durationMs(), httpStatus: null, error: String(reason).slice(0, 500) });
      };
      // A redirect is an answer, not a delivery: receivers give their final URL (http.request never follows one).
      const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
        url,
        {
          method: 'POST',
          headers: { ...headers, 'content-length': Buffer.byteLength(d.body) },
          lookup: this.destinations.lookup,
          signal: AbortSignal.timeout(this.#timeoutMs),
        },
        (res) => {
          res.resume();
          const status = res.statusCode ?? 0;
          resolve({ at, durationMs: durationMs(), httpStatus: status, error: status >= 200 && status < 300 ? null : `HTTP ${status}` });
        },
      );
      req.on('error', fail);
      req.end(d.body);
    });
  }
}

/**
 * The Node server's delivery loop: a pass every `pollMs` (retries come due), and one at once
 * when deliveries are enqueued. One pass at a time.
 */
export class DeliveryLoop {
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #again = false;

  constructor(
    private readonly deliverer: WebhookDeliverer,
    private readonly log: Logger,
    private readonly pollMs = 1000,
  ) {}

  start(): void {
    this.#timer = setInterval(() => this.kick(), this.pollMs);
    this.#timer.unref();
  }

  kick(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.deliverer
      .deliverDue()
      .then(() => undefined)
      .catch((err: Error) => this.log.warn({ err: err.message }, 'webhook delivery pass failed'))
      .finally(() => {
        this.#running = null;
        if (this.#again) {
          this.#again = false;
          this.kick();
        }
      });
  }

  /** Resolves when no pass is running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }
}
