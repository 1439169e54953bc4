/**
 * The control plane's Prometheus metrics (GET /v1/metrics, read-only key).
 *
 * Two kinds, because the control plane runs both as one long-lived process and as many
 * short-lived Lambda instances:
 * - the clusters' state (holder, epoch, lease left, heartbeat ages, failsafe, fencing) is
 *   computed from the store at scrape time, so every instance answers the same;
 * - what happens (events, grants and fencing by reason, phase and fencing durations, webhook
 *   deliveries, request latency) is counted where it happens. On the Node server the counters
 *   are in the scrape; on Lambda, where an instance's counters mean nothing, each count is
 *   written as a CloudWatch embedded-metric-format line instead (README, "Metrics").
 * Counting never waits on anything: a scrape's store reads go through the general store, not
 * the arbiter's, and run one at a time.
 */
import { Counter, Gauge, Histogram, type Metric, Registry } from 'prom-client';
import type { ClusterEvent } from '../shared/events.ts';
import { leaseState, type LeaseState } from '../shared/lease.ts';
import type { Clock } from './clock.ts';
import type { Store } from './store/store.ts';

const LEASE_STATES: LeaseState[] = ['vacant', 'fencing', 'held', 'expired'];
/** Seconds: a fencing step or a resource start takes from milliseconds to tens of seconds. */
const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60];
const REQUEST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
/** Event ids counted lately: an outbox flushed twice (a retry, two instances) is counted once. */
const COUNTED_IDS = 4096;
const EMF_NAMESPACE = 'nfs-ha';
/** Prometheus scrapes every 15 s or so; anything faster is answered from the last scrape. */
const SCRAPE_REUSE_MS = 1000;

type Labels = Record<string, string>;
/** Each instance keeps its metrics in its own registry (tests make many; prom-client's global one would refuse). */
const OWN = { registers: [] as Registry[] };

export type MetricsMode = 'prometheus' | 'emf';

export class ControlPlaneMetrics {
  readonly registry = new Registry();
  readonly #counted = new Set<string>();
  #scraping: Promise<string> | null = null;
  #last: { at: number; text: string } | null = null;

  readonly #events = new Counter({ ...OWN, name: 'nfsha_events_total', help: 'Cluster events recorded, by type', labelNames: ['cluster', 'type'] });
  readonly #grants = new Counter({ ...OWN,
    name: 'nfsha_lease_grants_total',
    help: 'Leases granted, by reason (holder-silent, lease-expired and released are failovers)',
    labelNames: ['cluster', 'reason'],
  });
  readonly #fencing = new Counter({ ...OWN, name: 'nfsha_fencing_decisions_total', help: 'Fencing decisions, by reason', labelNames: ['cluster', 'reason'] });
  readonly #fenceDuration = new Histogram({ ...OWN,
    name: 'nfsha_fencing_duration_seconds',
    help: 'How long the preemption took on the new holder',
    labelNames: ['cluster'],
    buckets: DURATION_BUCKETS,
  });
  readonly #phaseDuration = new Histogram({ ...OWN,
    name: 'nfsha_phase_duration_seconds',
    help: 'Resource actions reported by the agents (succeeded), by phase and direction',
    labelNames: ['cluster', 'phase', 'direction'],
    buckets: DURATION_BUCKETS,
  });
  readonly #deliveries = new Counter({ ...OWN, name: 'nfsha_webhook_deliveries_total', help: 'Webhook delivery attempts, by outcome', labelNames: ['cluster', 'outcome'] });
  readonly #requests = new Histogram({ ...OWN,
    name: 'nfsha_http_request_duration_seconds',
    help: 'API requests, by route and status',
    labelNames: ['method', 'route', 'status'],
    buckets: REQUEST_BUCKETS,
  });

  readonly #epoch = new Gauge({ ...OWN, name: 'nfsha_lease_epoch', help: 'The current epoch (fencing token)', labelNames: ['cluster'] });
  readonly #holder = new Gauge({ ...OWN, name: 'nfsha_lease_holder', help: '1 for the node holding the lease, 0 for the other', labelNames: ['cluster', 'node'] });
  readonly #state = new Gauge({ ...OWN, name: 'nfsha_lease_state', help: '1 for the lease state the cluster is in', labelNames: ['cluster', 'state'] });
  readonly #remaining = new Gauge({ ...OWN,
    name: 'nfsha_lease_remaining_seconds',
    help: 'Time until the lease could go to another node, by the arbiter (negative: past it)',
    labelNames: ['cluster'],
  });
  readonly #failsafe = new Gauge({ ...OWN, name: 'nfsha_failsafe', help: '1 while the holder serves on its peer\'s promise, the arbiter unreachable', labelNames: ['cluster'] });
  readonly #maintenance = new Gauge({ ...OWN, name: 'nfsha_maintenance', help: '1 while the cluster is in maintenance mode', labelNames: ['cluster'] });
  readonly #heartbeatAge = new Gauge({ ...OWN,
    name: 'nfsha_node_heartbeat_age_seconds',
    help: 'Time since the arbiter last heard from the node (the holder: its last renewal; absent: never)',
    labelNames: ['cluster', 'node'],
  });
  readonly #unconfirmed = new Gauge({ ...OWN,
    name: 'nfsha_fencing_unconfirmed_seconds',
    help: 'Time since the current fencing decision while the holder has not confirmed it (0: confirmed)',
    labelNames: ['cluster'],
  });
  readonly #clusterGauges: Gauge[] = [this.#epoch, this.#holder, this.#state, this.#remaining, this.#failsafe, this.#maintenance, this.#heartbeatAge, this.#unconfirmed];

  constructor(
    readonly mode: MetricsMode = 'prometheus',
    /** Where embedded-metric-format lines go (Lambda: stdout, which CloudWatch Logs reads). */
    private readonly emf: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
  ) {
    const instance: Metric[] = [this.#events, this.#grants, this.#fencing, this.#fenceDuration, this.#phaseDuration, this.#deliveries, this.#requests];
    for (const m of [...this.#clusterGauges, ...(mode === 'prometheus' ? instance : [])] as Metric[]) this.registry.registerMetric(m);
  }

  /** Counts recorded events (each once). */
  events(events: readonly ClusterEvent[]): void {
    for (const e of events) {
      if (this.#counted.has(e.id)) continue;
      this.#counted.add(e.id);
      if (this.#counted.size > COUNTED_IDS) this.#counted.delete(this.#counted.values().next().value!);
      const cluster = e.clusterId;
      this.#count(this.#events, 'EventsRecorded', { cluster, type: e.type });
      if (e.type === 'lease.granted') this.#count(this.#grants, 'LeaseGrants', { cluster, reason: e.data.reason });
      if (e.type === 'fencing.decided') this.#count(this.#fencing, 'FencingDecisions', { cluster, reason: e.data.reason });
      if (e.type === 'fencing.confirmed' && e.data.durationMs !== undefined) this.#observe(this.#fenceDuration, 'FencingDuration', { cluster }, e.data.durationMs / 1000);
      if (e.type === 'phase.reported' && e.data.status === 'succeeded' && e.data.durationMs !== undefined) {
        this.#observe(this.#phaseDuration, 'PhaseDuration', { cluster, phase: e.data.phase, direction: e.data.direction }, e.data.durationMs / 1000);
      }
    }
  }

  delivery(cluster: string, outcome: 'delivered' | 'retry' | 'failed'): void {
    this.#count(this.#deliveries, 'WebhookDeliveries', { cluster, outcome });
  }

  /** `route`: the matched route's pattern (never the raw path: it would make a series per cluster and id). */
  request(method: string, route: string, status: number, seconds: number): void {
    // Per-request EMF lines would double Lambda's log volume for what API Gateway already measures.
    if (this.mode === 'prometheus') this.#requests.observe({ method, route, status: String(status) }, seconds);
  }

  /**
   * The exposition: the clusters' state read now, then the counters. One scrape at a time, and
   * a scrape within SCRAPE_REUSE_MS of the last one gets its answer: a flood of scrapes costs the
   * store no more than one reader.
   */
  scrape(store: Store, clock: Clock): Promise<string> {
    const now = clock.now();
    if (this.#last && now - this.#last.at < SCRAPE_REUSE_MS) return Promise.resolve(this.#last.text);
    this.#scraping ??= this.#read(store, clock)
      .then((text) => {
        this.#last = { at: now, text };
        return text;
      })
      .finally(() => (this.#scraping = null));
    return this.#scraping;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  async #read(store: Store, clock: Clock): Promise<string> {
    const clusters = await store.listClusters();
    const states = await Promise.all(clusters.map(async (c) => [await store.getLease(c.spec.id), await store.listNodeStatuses(c.spec.id)] as const));
    const now = clock.now();
    for (const g of this.#clusterGauges) g.reset();
    for (const [lease, statuses] of states) {
      if (!lease) continue;
      const cluster = lease.clusterId;
      const state = leaseState(lease, now);
      this.#epoch.set({ cluster }, lease.epoch);
      for (const s of LEASE_STATES) this.#state.set({ cluster, state: s }, s === state ? 1 : 0);
      this.#remaining.set({ cluster }, lease.holder === null ? 0 : (lease.expiresAt - now) / 1000);
      this.#failsafe.set({ cluster }, lease.failsafe && lease.holder ? 1 : 0);
      this.#maintenance.set({ cluster }, lease.maintenance ? 1 : 0);
      const fencing = lease.fencing;
      this.#unconfirmed.set({ cluster }, lease.holder !== null && fencing && fencing.confirmedAt === null ? (now - fencing.decidedAt) / 1000 : 0);
      for (const node of lease.terms.nodes) {
        this.#holder.set({ cluster, node }, lease.holder === node ? 1 : 0);
        const heard = statuses.find((s) => s.node === node)?.lastHeartbeatAt;
        // As in status: the holder's renewals are fresher than its status item.
        const last = lease.holder === node ? Math.max(lease.renewedAt, heard ?? -Infinity) : heard;
        if (last !== undefined) this.#heartbeatAge.set({ cluster, node }, (now - last) / 1000);
      }
    }
    return this.registry.metrics();
  }

  #count(counter: Counter, name: string, labels: Labels): void {
    if (this.mode === 'prometheus') counter.inc(labels);
    else this.#emf(name, 'Count', labels, 1);
  }

  #observe(histogram: Histogram, name: string, labels: Labels, seconds: number): void {
    if (this.mode === 'prometheus') histogram.observe(labels, seconds);
    else this.#emf(name, 'Seconds', labels, seconds);
  }

  /** One CloudWatch embedded-metric-format record: the metric, its unit and its dimensions. */
  #emf(name: string, unit: 'Count' | 'Seconds', labels: Labels, value: number): void {
    const dimensions = Object.keys(labels);
    this.emf(
      JSON.stringify({
        _aws: { Timestamp: Date.now(), CloudWatchMetrics: [{ Namespace: EMF_NAMESPACE, Dimensions: [dimensions], Metrics: [{ Name: name, Unit: unit }] }] },
        ...labels,
        [name]: value,
      }),
    );
  }
}
