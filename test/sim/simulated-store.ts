/**
 * SimulatedStore: the Store contract (control-plane/store/store.ts) in memory, for the
 * deterministic simulator only. It behaves like the DynamoDB adapter for every operation the
 * control plane uses — the conformance suite runs against both — and can inject the store's
 * faults: unavailability, and writes that fail *after* they were applied (a timed-out call
 * whose write landed), which the contract allows.
 */
import {
  type ClusterRecord,
  type DeliveryQuery,
  type DeliveryRecord,
  EVENT_CURSOR,
  type EventPage,
  type EventQuery,
  type NodeStatus,
  type SecretRecord,
  type Store,
  StoreUnavailableError,
  type WebhookRecord,
} from '../../control-plane/store/store.ts';
import type { SecretKind } from '../../shared/credentials.ts';
import type { ClusterEvent } from '../../shared/events.ts';
import type { Lease } from '../../shared/lease.ts';

export interface StoreFaults {
  /** Called before each operation; may delay it, or throw StoreUnavailableError. */
  before(operation: string): Promise<void>;
  /** After a write was applied: true to report it failed anyway. */
  failAfterApply(operation: string): boolean;
}

const noFaults: StoreFaults = { before: async () => {}, failAfterApply: () => false };
const copy = <T>(v: T): T => structuredClone(v);
const eventKey = (e: ClusterEvent) => `${String(e.at).padStart(15, '0')}#${e.id}`;

export class SimulatedStore implements Store {
  readonly #clusters = new Map<string, ClusterRecord>();
  readonly #leases = new Map<string, Lease>();
  readonly #events = new Map<string, Map<string, ClusterEvent>>();
  readonly #statuses = new Map<string, Map<string, NodeStatus>>();
  readonly #secrets = new Map<string, SecretRecord>();
  readonly #webhooks = new Map<string, WebhookRecord>();
  readonly #deliveries = new Map<string, DeliveryRecord>();
  faults: StoreFaults = noFaults;
  /** Observers of every committed lease (the simulator's invariants watch them). */
  readonly onLease: ((next: Lease, previous: Lease | null) => void)[] = [];

  async #write(operation: string, apply: () => boolean): Promise<boolean> {
    await this.faults.before(operation);
    const applied = apply();
    if (this.faults.failAfterApply(operation)) throw new StoreUnavailableError(`${operation}: timed out (the write may have landed)`);
    return applied;
  }

  async putClusterIfAbsent(record: ClusterRecord): Promise<boolean> {
    return this.#write('putClusterIfAbsent', () => {
      if (this.#clusters.has(record.spec.id)) return false;
      this.#clusters.set(record.spec.id, copy(record));
      return true;
    });
  }

  async putCluster(record: ClusterRecord, expectedSpecVersion: number): Promise<boolean> {
    return this.#write('putCluster', () => {
      if (this.#clusters.get(record.spec.id)?.specVersion !== expectedSpecVersion) return false;
      this.#clusters.set(record.spec.id, copy(record));
      return true;
    });
  }

  async deleteCluster(clusterId: string): Promise<void> {
    await this.#write('deleteCluster', () => {
      this.#leases.delete(clusterId);
      this.#events.delete(clusterId);
      this.#statuses.delete(clusterId);
      for (const [key, w] of this.#webhooks) if (w.clusterId === clusterId) this.#webhooks.delete(key);
      for (const [key, d] of this.#deliveries) if (d.clusterId === clusterId) this.#deliveries.delete(key);
      this.#clusters.delete(clusterId);
      return true;
    });
  }

  async getCluster(clusterId: string): Promise<ClusterRecord | null> {
    await this.faults.before('getCluster');
    return copy(this.#clusters.get(clusterId) ?? null);
  }

  async listClusters(): Promise<ClusterRecord[]> {
    await this.faults.before('listClusters');
    return [...this.#clusters.values()].sort((a, b) => a.spec.id.localeCompare(b.spec.id)).map(copy);
  }

  async putLeaseIfAbsent(lease: Lease): Promise<boolean> {
    return this.#write('putLeaseIfAbsent', () => {
      if (this.#leases.has(lease.clusterId)) return false;
      this.#commit(copy(lease), null);
      return true;
    });
  }

  async getLease(clusterId: string): Promise<Lease | null> {
    await this.faults.before('getLease');
    return copy(this.#leases.get(clusterId) ?? null);
  }

  async putLease(next: Lease, current: Lease): Promise<boolean> {
    return this.#write('putLease', () => {
      const stored = this.#leases.get(next.clusterId);
      if (!stored || stored.version !== current.version || stored.renewedAt !== current.renewedAt || stored.expiresAt !== current.expiresAt) return false;
      this.#commit(copy(next), stored);
      return true;
    });
  }

  #commit(next: Lease, previous: Lease | null): void {
    this.#leases.set(next.clusterId, next);
    for (const observe of this.onLease) observe(copy(next), previous && copy(previous));
  }

  async clearOutbox(clusterId: string, version: number): Promise<boolean> {
    return this.#write('clearOutbox', () => {
      const stored = this.#leases.get(clusterId);
      if (!stored || stored.version !== version) return false;
      this.#leases.set(clusterId, { ...stored, outbox: [] });
      return true;
    });
  }

  async putEvents(events: ClusterEvent[]): Promise<void> {
    await this.#write('putEvents', () => {
      for (const e of events) {
        const byKey = this.#events.get(e.clusterId) ?? new Map<string, ClusterEvent>();
        if (!byKey.has(eventKey(e))) byKey.set(eventKey(e), copy(e));
        this.#events.set(e.clusterId, byKey);
      }
      return true;
    });
  }

  async listEvents(clusterId: string, query: EventQuery): Promise<EventPage> {
    await this.faults.before('listEvents');
    const after = query.cursor ? EVENT_CURSOR.exec(query.cursor) : null;
    const from = after ? `${after[1]!.padStart(15, '0')}#${after[2]}` : '';
    const fromAt = query.fromAt !== undefined ? String(query.fromAt).padStart(15, '0') : '';
    const all = [...(this.#events.get(clusterId) ?? new Map()).entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0) * (query.newestFirst ? -1 : 1))
      .filter(([k]) => (from === '' || (query.newestFirst ? k < from : k > from)) && k >= fromAt);
    // As DynamoDB: the limit counts what is read; the type filter applies after it.
    const read = all.slice(0, query.limit).map(([, e]) => copy(e));
    const last = read.at(-1);
    const events = query.types ? read.filter((e) => query.types!.includes(e.type)) : read;
    return { events, cursor: all.length > query.limit && last ? `${last.at}.${last.id}` : null };
  }

  async pruneEvents(clusterId: string, before: number, limit: number): Promise<number> {
    let pruned = 0;
    await this.#write('pruneEvents', () => {
      const byKey = this.#events.get(clusterId) ?? new Map<string, ClusterEvent>();
      for (const k of [...byKey.keys()].sort()) {
        if (pruned === limit || byKey.get(k)!.at >= before) break;
        byKey.delete(k);
        pruned++;
      }
      return true;
    });
    return pruned;
  }

  async putNodeStatus(status: NodeStatus): Promise<NodeStatus | null> {
    let previous: NodeStatus | null = null;
    await this.#write('putNodeStatus', () => {
      const byNode = this.#statuses.get(status.clusterId) ?? new Map<string, NodeStatus>();
      previous = copy(byNode.get(status.node) ?? null);
      byNode.set(status.node, copy(status));
      this.#statuses.set(status.clusterId, byNode);
      return true;
    });
    return previous;
  }

  async markNodeDown(clusterId: string, node: string, lastHeartbeatAt: number, at: number): Promise<boolean> {
    return this.#write('markNodeDown', () => {
      const s = this.#statuses.get(clusterId)?.get(node);
      if (!s || s.lastHeartbeatAt !== lastHeartbeatAt || s.downAt !== undefined) return false;
      s.downAt = at;
      return true;
    });
  }

  async putWebhookIfAbsent(record: WebhookRecord): Promise<boolean> {
    return this.#write('putWebhookIfAbsent', () => {
      const key = `${record.clusterId}#${record.id}`;
      if (this.#webhooks.has(key)) return false;
      this.#webhooks.set(key, copy(record));
      return true;
    });
  }

  async replaceWebhook(record: WebhookRecord): Promise<boolean> {
    return this.#write('replaceWebhook', () => {
      const key = `${record.clusterId}#${record.id}`;
      if (!this.#webhooks.has(key)) return false;
      this.#webhooks.set(key, copy(record));
      return true;
    });
  }

  async getWebhook(clusterId: string, id: string): Promise<WebhookRecord | null> {
    await this.faults.before('getWebhook');
    return copy(this.#webhooks.get(`${clusterId}#${id}`) ?? null);
  }

  async listWebhooks(clusterId: string): Promise<WebhookRecord[]> {
    await this.faults.before('listWebhooks');
    return [...this.#webhooks.values()]
      .filter((w) => w.clusterId === clusterId)
      .sort((a, b) => a.id.localeCompare(b.id))
      .map(copy);
  }

  async deleteWebhook(clusterId: string, id: string): Promise<boolean> {
    return this.#write('deleteWebhook', () => this.#webhooks.delete(`${clusterId}#${id}`));
  }

  async putDeliveriesIfAbsent(records: DeliveryRecord[]): Promise<void> {
    await this.#write('putDeliveriesIfAbsent', () => {
      for (const d of records) {
        const key = `${d.clusterId}#${d.webhookId}#${d.id}`;
        if (!this.#deliveries.has(key)) this.#deliveries.set(key, copy(d));
      }
      return true;
    });
  }

  async getDelivery(clusterId: string, webhookId: string, id: string): Promise<DeliveryRecord | null> {
    await this.faults.before('getDelivery');
    return copy(this.#deliveries.get(`${clusterId}#${webhookId}#${id}`) ?? null);
  }

  async listDeliveries(clusterId: string, webhookId: string, query: DeliveryQuery) {
    await this.faults.before('listDeliveries');
    const all = [...this.#deliveries.values()]
      .filter((d) => d.clusterId === clusterId && d.webhookId === webhookId && (query.cursor === undefined || d.id < query.cursor))
      .sort((a, b) => (a.id < b.id ? 1 : -1));
    const deliveries = all.slice(0, query.limit).map(copy);
    return { deliveries, cursor: all.length > query.limit ? deliveries.at(-1)!.id : null };
  }

  async putDelivery(next: DeliveryRecord, expectedVersion: number): Promise<boolean> {
    return this.#write('putDelivery', () => {
      const key = `${next.clusterId}#${next.webhookId}#${next.id}`;
      if (this.#deliveries.get(key)?.version !== expectedVersion) return false;
      this.#deliveries.set(key, copy(next));
      return true;
    });
  }

  async dueDeliveries(now: number, limit: number): Promise<DeliveryRecord[]> {
    await this.faults.before('dueDeliveries');
    return [...this.#deliveries.values()]
      .filter((d) => d.status === 'pending' && d.nextAttemptAt !== null && d.nextAttemptAt <= now)
      .sort((a, b) => a.nextAttemptAt! - b.nextAttemptAt! || (a.id < b.id ? -1 : 1))
      .slice(0, limit)
      .map(copy);
  }

  async listNodeStatuses(clusterId: string): Promise<NodeStatus[]> {
    await this.faults.before('listNodeStatuses');
    return [...(this.#statuses.get(clusterId) ?? new Map()).values()].sort((a, b) => a.node.localeCompare(b.node)).map(copy);
  }

  async putSecretIfAbsent(record: SecretRecord): Promise<boolean> {
    return this.#write('putSecretIfAbsent', () => {
      const key = `${record.kind}#${record.id}`;
      if (this.#secrets.has(key)) return false;
      this.#secrets.set(key, copy(record));
      return true;
    });
  }

  async getSecret(kind: SecretKind, id: string): Promise<SecretRecord | null> {
    await this.faults.before('getSecret');
    return copy(this.#secrets.get(`${kind}#${id}`) ?? null);
  }

  async listSecrets(kind: SecretKind): Promise<SecretRecord[]> {
    await this.faults.before('listSecrets');
    return [...this.#secrets.values()]
      .filter((r) => r.kind === kind)
      .sort((a, b) => a.id.localeCompare(b.id))
      .map(copy);
  }

  async setSecretExpiry(kind: SecretKind, id: string, at: number): Promise<boolean> {
    return this.#write('setSecretExpiry', () => {
      const r = this.#secrets.get(`${kind}#${id}`);
      if (!r) return false;
      this.#secrets.set(`${kind}#${id}`, { ...r, expiresAt: at });
      return true;
    });
  }

  async markSecret(kind: SecretKind, id: string, field: 'revokedAt' | 'usedAt', at: number): Promise<boolean> {
    return this.#write('markSecret', () => {
      const r = this.#secrets.get(`${kind}#${id}`);
      if (!r || (r[field] !== undefined && r[field] !== null)) return false;
      this.#secrets.set(`${kind}#${id}`, { ...r, [field]: at });
      return true;
    });
  }

  /** Everything stored, as a backup would hold it (the 'store-restored' fault). */
  backup(): unknown {
    return copy([this.#clusters, this.#leases, this.#events, this.#statuses, this.#secrets, this.#webhooks, this.#deliveries]);
  }

  /** Replaces everything with a backup's contents, as restoring it would. */
  restore(backup: unknown): void {
    const maps = [this.#clusters, this.#leases, this.#events, this.#statuses, this.#secrets, this.#webhooks, this.#deliveries] as Map<string, unknown>[];
    copy(backup as Map<string, unknown>[]).forEach((saved, i) => {
      maps[i]!.clear();
      for (const [k, v] of saved) maps[i]!.set(k, v);
    });
  }

  /** For the simulator's checks: the stored events of a cluster, oldest first. */
  eventsOf(clusterId: string): ClusterEvent[] {
    return [...(this.#events.get(clusterId) ?? new Map()).entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, e]) => copy(e));
  }

  leaseOf(clusterId: string): Lease | null {
    return copy(this.#leases.get(clusterId) ?? null);
  }
}
