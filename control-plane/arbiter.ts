/**
 * The arbiter: the control plane's witness role. It holds no rules of its own — those are the
 * pure functions of shared/lease.ts — only the loop that applies them to the store:
 *
 *   snapshot → decide → conditional write on the snapshot's version → on conflict, re-read.
 *
 * The snapshot is the last lease this process saw. Deciding on it saves the read on the hot
 * path (a holder's renewal is one conditional write); it is safe because a decision that writes
 * commits only if the snapshot was still current, and a decision that would not write (stay
 * passive, reject a report) is always re-made on a fresh read before it is answered.
 */
import type { ClusterEvent } from '../shared/events.ts';
import {
  type Decision,
  type Directive,
  type FencingReport,
  type Heartbeat,
  isMember,
  type Lease,
  type LeaseTerms,
  leaseTerms,
  onFencingConfirmed,
  onHeartbeat,
  onRelease,
  type PhaseReport,
  phaseEvent,
  type Rejection,
  type Release,
  requestSwitchover,
  setMaintenance,
  setStandby,
  type Requester,
  updateTerms,
  vacantLease,
} from '../shared/lease.ts';
import type { ClusterSpec } from '../shared/spec.ts';
import type { Clock } from './clock.ts';
import { ApiError } from './errors.ts';
import { TokenBucket } from './limits.ts';
import type { Logger } from './log.ts';
import type { ControlPlaneMetrics } from './metrics.ts';
import type { Store } from './store/store.ts';
import { WebhookOutbox } from './webhooks.ts';

/** Conditional-write conflicts tolerated in one request before answering 503. */
const MAX_ATTEMPTS = 8;
/**
 * A node's status item is rewritten when something changes, or at least this often. It is for
 * operators only (the lease carries what decisions need), so it is kept cheap.
 */
export const NODE_STATUS_REFRESH_MS = 30_000;
/** Snapshots kept; beyond this the oldest are dropped (they are only a hint). */
const MAX_SNAPSHOTS = 10_000;

const observedKey = (lease: Lease) => `${lease.version}/${lease.renewedAt}/${lease.expiresAt}`;

type Outcome<T> = Rejection | { next: Lease | null; result: T };

export interface HeartbeatOutcome {
  lease: Lease;
  directive: Directive;
  /** This heartbeat committed a grant or renewal for the asking node. */
  renewed: boolean;
}

/**
 * A node unheard of this long is reported down (node.down). Longer than NODE_STATUS_REFRESH_MS,
 * so a live node's status item is always fresher than this.
 */
export const NODE_DOWN_AFTER_MS = 60_000;

export interface ArbiterOptions {
  /** Told when webhook deliveries were enqueued (the Node server's loop, or Lambda's self-invocation). */
  onDeliveries?: () => void;
  /** Counts the events it records. */
  metrics?: ControlPlaneMetrics;
}

/** Phase reports per node: a takeover or demotion makes about 15; restarts a few more. */
const PHASE_REPORTS = { perS: 2, burst: 60 };

const asked = (by: Requester | undefined) => (by ? `, asked by key ${by.name} (${by.keyId})` : '');

export class Arbiter {
  readonly #snapshots = new Map<string, Lease>();
  /**
   * Per cluster: the lease this process last saw (its version and write time: a restored store
   * can bring a version number back with other contents) and when it first saw it (elapsed()).
   */
  readonly #observed = new Map<string, { key: string; at: number }>();
  readonly #reportBudget = new Map<string, TokenBucket>();
  readonly #statusWritten = new Map<string, { at: number; key: string }>();
  /** When this process last heard each node: fresher than its status item, which is written only on a change or every 30 s. */
  readonly #heardAt = new Map<string, number>();
  readonly outbox: WebhookOutbox;
  readonly #metrics: ControlPlaneMetrics | null;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
    options: ArbiterOptions = {},
  ) {
    this.outbox = new WebhookOutbox(store, clock, options.onDeliveries);
    this.#metrics = options.metrics ?? null;
  }

  /**
   * Stores events, their webhook deliveries first: a stored event always has its deliveries.
   * `lease`: the lease they were decided on (or read with).
   */
  async recordEvents(events: ClusterEvent[], lease: Lease | null): Promise<void> {
    if (events.length === 0) return;
    await this.outbox.enqueue(events, lease);
    await this.store.putEvents(events);
    this.#metrics?.events(events);
  }

  /** Writes the vacant lease of a newly created cluster (idempotent). */
  async openLease(spec: ClusterSpec, specVersion: number): Promise<void> {
    const now = this.clock.now();
    const created: ClusterEvent = {
      id: 'e0.cluster.created',
      clusterId: spec.id,
      at: now,
      epoch: 0,
      type: 'cluster.created',
      data: { nodes: spec.nodes.map((n) => n.id) },
    };
    const lease = { ...vacantLease(spec.id, leaseTerms(spec, specVersion), now), outbox: [created] };
    if (await this.store.putLeaseIfAbsent(lease)) await this.#flush(lease);
  }

  /** The current lease, read from the store (never from the snapshot). */
  async read(clusterId: string): Promise<Lease> {
    let lease = await this.store.getLease(clusterId);
    if (!lease) {
      // The cluster item is written before its lease; a crash in between leaves a cluster
      // without one, which is repaired here rather than refused forever.
      const cluster = await this.store.getCluster(clusterId);
      if (!cluster) throw new ApiError(404, 'cluster_not_found', `no cluster "${clusterId}"`);
      await this.openLease(cluster.spec, cluster.specVersion);
      lease = await this.store.getLease(clusterId);
      if (!lease) throw new ApiError(503, 'store_unavailable', `the lease of ${clusterId} could not be read back`);
    }
    this.#remember(lease);
    if (lease.outbox.length > 0) await this.#flush(lease);
    return lease;
  }

  async heartbeat(clusterId: string, node: string, hb: Heartbeat): Promise<HeartbeatOutcome> {
    let decidedOn = 0;
    const { lease, result, wrote } = await this.#decide(clusterId, node, (l, now): Outcome<Decision> => {
      decidedOn = l.epoch;
      const d = onHeartbeat(l, node, hb, now, this.#quietMs(l));
      return { next: d.next, result: d };
    });
    const outcome = { lease, directive: result.directive, renewed: wrote && lease.holder === node };
    await this.#noteHeartbeat(clusterId, node, hb, result.directive);
    // Once per grant: the renewals of a holder still fencing repeat its directive, not its grant.
    if (wrote && lease.epoch > decidedOn) {
      this.log.info({ clusterId, node, epoch: lease.epoch, directive: result.directive }, result.directive.reason);
    } else if (this.log.isLevelEnabled('debug')) {
      this.log.debug({ clusterId, node, epoch: lease.epoch, action: result.directive.action }, result.directive.reason);
    }
    return outcome;
  }

  async confirmFencing(clusterId: string, node: string, report: FencingReport): Promise<Lease> {
    const { lease, wrote } = await this.#change(clusterId, node, (l, now) => onFencingConfirmed(l, node, report, now));
    if (wrote) this.log.info({ clusterId, node, epoch: lease.epoch, keys: report.keys }, `fencing confirmed for epoch ${lease.epoch}`);
    return lease;
  }

  async release(clusterId: string, node: string, release: Release): Promise<Lease> {
    const { lease, wrote } = await this.#change(clusterId, node, (l, now) => onRelease(l, node, release, now));
    if (wrote) this.log.info({ clusterId, node, epoch: release.epoch, reason: release.reason }, `${node} released epoch ${release.epoch}`);
    return lease;
  }

  /** An operator's planned switchover to `to`; the holder learns it at its next renewal. */
  async requestSwitchover(clusterId: string, to: string, by?: Requester): Promise<Lease> {
    const { lease, wrote } = await this.#change(clusterId, to, (l, now) => requestSwitchover(l, to, now, by));
    if (wrote) this.log.info({ clusterId, from: lease.holder, to, epoch: lease.epoch, by }, `switchover from ${lease.holder} to ${to} requested${asked(by)}`);
    return lease;
  }

  async reportPhase(clusterId: string, node: string, report: PhaseReport): Promise<ClusterEvent> {
    // A node's own reports are its timeline, a few dozen per takeover: more is refused, not stored.
    let bucket = this.#reportBudget.get(`${clusterId}/${node}`);
    if (!bucket) {
      bucket = new TokenBucket(PHASE_REPORTS.perS, PHASE_REPORTS.burst, this.clock.now());
      this.#reportBudget.set(`${clusterId}/${node}`, bucket);
      if (this.#reportBudget.size > MAX_SNAPSHOTS) this.#reportBudget.delete(this.#reportBudget.keys().next().value!);
    }
    if (!bucket.take(this.clock.now()))
      throw new ApiError(429, 'too_many_reports', `${node} sent more phase reports than a takeover makes; wait a few seconds`);
    const { result: event } = await this.#decide(clusterId, node, (l, now): Outcome<ClusterEvent> => {
      const r = phaseEvent(l, node, report, now);
      return 'code' in r ? r : { next: null, result: r.event };
    });
    await this.recordEvents([event], this.#snapshots.get(clusterId) ?? null);
    return event;
  }

  /** The lease takes the terms of a new spec version (refused if the nodes changed). */
  async updateTerms(clusterId: string, terms: LeaseTerms, by?: Requester): Promise<Lease> {
    const { lease, wrote } = await this.#change(clusterId, null, (l, now) => updateTerms(l, terms, now, by));
    if (wrote) this.log.info({ clusterId, specVersion: terms.specVersion }, `lease terms of ${clusterId} now from spec version ${terms.specVersion}`);
    return lease;
  }

  /** After the cluster was deleted: its lease is no longer a snapshot to decide on. */
  forget(clusterId: string): void {
    this.#snapshots.delete(clusterId);
    this.#observed.delete(clusterId);
  }

  /** Maintenance mode on or off for the whole cluster. */
  async setMaintenance(clusterId: string, enabled: boolean, by?: Requester): Promise<Lease> {
    const { lease, wrote } = await this.#change(clusterId, null, (l, now) => setMaintenance(l, enabled, now, by));
    if (wrote) this.log.info({ clusterId, enabled, by }, `maintenance mode ${enabled ? 'on' : 'off'}${asked(by)}`);
    return lease;
  }

  /** A node in or out of standby. */
  async setStandby(clusterId: string, node: string, enabled: boolean, by?: Requester): Promise<Lease> {
    const { lease, wrote } = await this.#change(clusterId, node, (l, now) => setStandby(l, node, enabled, now, by));
    if (wrote) this.log.info({ clusterId, node, enabled, by }, `${node} ${enabled ? 'in' : 'out of'} standby${asked(by)}`);
    return lease;
  }

  /**
   * When this process last heard from a node (null: not since it started). On the Node server
   * that is every heartbeat; on Lambda only those this instance served, so the status item stays
   * the fallback.
   */
  lastHeardAt(clusterId: string, node: string): number | null {
    return this.#heardAt.get(`${clusterId}/${node}`) ?? null;
  }

  /** A rule that only changes the lease (or refuses to): commits its next lease, if any. */
  #change(clusterId: string, node: string | null, rule: (lease: Lease, now: number) => Rejection | { next: Lease | null }) {
    return this.#decide(clusterId, node, (l, now): Outcome<null> => {
      const r = rule(l, now);
      return 'code' in r ? r : { next: r.next, result: null };
    });
  }

  /** `node`: the member the request is about (checked against the lease's terms), or null for the whole cluster. */
  async #decide<T>(
    clusterId: string,
    node: string | null,
    decide: (lease: Lease, now: number) => Outcome<T>,
  ): Promise<{ lease: Lease; result: T; wrote: boolean }> {
    let lease = this.#snapshots.get(clusterId);
    let fresh = false;
    if (!lease) {
      lease = await this.read(clusterId);
      fresh = true;
    }
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (node !== null && !isMember(lease.terms, node)) {
        if (!fresh) {
          lease = await this.read(clusterId);
          fresh = true;
          continue;
        }
        throw new ApiError(404, 'node_not_found', `"${node}" is not a node of cluster ${clusterId} (nodes: ${lease.terms.nodes.join(', ')})`);
      }
      const outcome = decide(lease, this.clock.now());
      if ('code' in outcome || outcome.next === null) {
        if (!fresh) {
          lease = await this.read(clusterId);
          fresh = true;
          continue;
        }
        if ('code' in outcome) throw new ApiError(409, outcome.code, outcome.message);
        return { lease, result: outcome.result, wrote: false };
      }
      if (await this.store.putLease(outcome.next, lease)) {
        this.#remember(outcome.next);
        if (outcome.next.outbox.length > 0) await this.#flush(outcome.next);
        return { lease: outcome.next, result: outcome.result, wrote: true };
      }
      lease = await this.read(clusterId);
      fresh = true;
    }
    throw new ApiError(503, 'lease_contention', `the lease of ${clusterId} changed ${MAX_ATTEMPTS} times during this request; retry`);
  }

  #remember(lease: Lease): void {
    this.#snapshots.delete(lease.clusterId);
    this.#snapshots.set(lease.clusterId, lease);
    if (this.#snapshots.size > MAX_SNAPSHOTS) this.#snapshots.delete(this.#snapshots.keys().next().value!);
    const key = observedKey(lease);
    if (this.#observed.get(lease.clusterId)?.key !== key) {
      this.#observed.delete(lease.clusterId);
      this.#observed.set(lease.clusterId, { key, at: this.clock.elapsed() });
      if (this.#observed.size > MAX_SNAPSHOTS) this.#observed.delete(this.#observed.keys().next().value!);
    }
  }

  /**
   * How long this process has seen `lease`'s version as the current one, on its monotonic clock.
   * A decision that writes commits only if that version is still current, so the lease was
   * indeed not renewed for at least this long: a lower bound that no wall clock enters.
   */
  #quietMs(lease: Lease): number {
    const seen = this.#observed.get(lease.clusterId);
    return seen?.key === observedKey(lease) ? Math.floor(this.clock.elapsed() - seen.at) : 0;
  }

  /**
   * Stores the outbox's events (idempotent by id), then drops them from the lease if it has not
   * moved on. A failure here does not undo the decision already committed: the events stay in
   * the outbox and the next reader of the lease stores them.
   */
  async #flush(lease: Lease): Promise<void> {
    try {
      await this.recordEvents(lease.outbox, lease);
      if (await this.store.clearOutbox(lease.clusterId, lease.version)) {
        const current = this.#snapshots.get(lease.clusterId);
        if (current?.version === lease.version) this.#snapshots.set(lease.clusterId, { ...current, outbox: [] });
      }
    } catch (err) {
      this.log.warn({ clusterId: lease.clusterId, err: (err as Error).message }, 'events left in the lease outbox for a later flush');
    }
  }

  /** Rate-limited record of what a node last said, for the status view. Never fails the heartbeat. */
  async #noteHeartbeat(clusterId: string, node: string, hb: Heartbeat, directive: Directive): Promise<void> {
    const now = this.clock.now();
    this.#heardAt.delete(`${clusterId}/${node}`);
    this.#heardAt.set(`${clusterId}/${node}`, now);
    if (this.#heardAt.size > MAX_SNAPSHOTS * 2) this.#heardAt.delete(this.#heardAt.keys().next().value!);
    const refused = hb.refused && `epoch ${hb.refused.epoch}: ${hb.refused.reason}`;
    const agent = hb.agent;
    const key = `${hb.role}/${hb.epoch}/${hb.peer?.reachable ?? '-'}/${directive.action}/${hb.unfit ?? ''}/${refused ?? ''}/${agent?.version ?? ''}/${agent?.runtime ?? ''}`;
    const id = `${clusterId}/${node}`;
    const last = this.#statusWritten.get(id);
    if (last && last.key === key && now - last.at < NODE_STATUS_REFRESH_MS) return;
    try {
      const previous = await this.store.putNodeStatus({
        clusterId,
        node,
        role: hb.role,
        epoch: hb.epoch,
        peerReachable: hb.peer?.reachable ?? null,
        lastHeartbeatAt: now,
        lastDirective: directive.action,
        ...(hb.unfit !== undefined && { unfit: hb.unfit }),
        ...(refused && { refused }),
        ...(agent && { agent }),
      });
      if (hb.unfit !== undefined && last?.key !== key) this.log.error({ clusterId, node, unfit: hb.unfit }, `${node} refuses to run ${clusterId}: ${hb.unfit}`);
      if (refused && last?.key !== key) this.log.warn({ clusterId, node, refused: hb.refused }, `${node} refuses ${refused}`);
      this.#statusWritten.set(id, { at: now, key });
      if (previous?.downAt !== undefined) {
        const lease = this.#snapshots.get(clusterId) ?? null;
        const up: ClusterEvent = {
          id: `node.up.${node}.${previous.downAt}`,
          clusterId,
          at: now,
          epoch: lease?.epoch ?? 0,
          type: 'node.up',
          node,
          data: { downForMs: now - previous.lastHeartbeatAt },
        };
        this.log.info({ clusterId, node }, `${node} is heard from again after ${Math.round(up.data.downForMs / 1000)} s`);
        await this.recordEvents([up], lease);
      }
    } catch (err) {
      this.log.warn({ clusterId, node, err: (err as Error).message }, 'node status not recorded');
    }
  }
}
