/**
 * The control plane's durable state.
 *
 * Contract every backend must keep (the conformance tests check it):
 * - Reads of the lease are strongly consistent: they see every write that completed before them.
 * - `putLease(next, current)` is an atomic compare-and-set: it writes `next` only if the stored
 *   lease's version, renewedAt and expiresAt equal `current`'s, and reports whether it wrote.
 *   The version alone is not enough: a store restored from a backup counts its versions again
 *   from an older one, and a process holding a lease from before the restore must not write
 *   over a different lease that reached the same version. Since these match only when the
 *   stored lease is `current`, a backend may write just the fields in which `next` differs. This single operation serialises every change of the lease; nothing
 *   else writes the lease except `clearOutbox`, which is conditional on the version too and
 *   leaves the version unchanged.
 * - `putClusterIfAbsent` / `putLeaseIfAbsent` / `putEvents` never overwrite: a second write of
 *   the same key is a no-op (events are idempotent by id).
 * - No multi-item transactions are assumed (dynalite has none), and no store-side expiry (TTL)
 *   is used for anything the protocol depends on.
 * - Each operation either completes or throws `StoreUnavailableError`; a thrown write may or may
 *   not have been applied, so callers re-read before deciding again.
 */
import type { OperatorRole, SecretKind } from '../../shared/credentials.ts';
import type { ClusterEvent } from '../../shared/events.ts';
import type { AgentBuild, AgentRole, Lease } from '../../shared/lease.ts';
import type { Attempt, DeliveryStatus, WebhookType } from '../../shared/webhooks.ts';
import type { ClusterSpec } from '../../shared/spec.ts';

export interface ClusterRecord {
  spec: ClusterSpec;
  specVersion: number;
  /** The secret of the nodes' peer channel, handed to each node at enrolment. */
  peerToken?: string;
  /** The peer secret before the last rotation: still accepted by the agents during the overlap. */
  previousPeerToken?: string;
  createdAt: number;
  updatedAt: number;
}

/** What the control plane last heard from a node; for operators, not for decisions. */
export interface NodeStatus {
  clusterId: string;
  node: string;
  role: AgentRole;
  epoch: number;
  peerReachable: boolean | null;
  lastHeartbeatAt: number;
  lastDirective: string;
  /** Why the node refuses to run the cluster, as it last said (absent: it does not). */
  unfit?: string | undefined;
  /** The epoch the node refuses to act under and why, as it last said (absent: it refuses none). */
  refused?: string | undefined;
  /** The agent's release and runtime, as it last said (absent: not reported yet). */
  agent?: AgentBuild | undefined;
  /** Set by the sweep when the node has been silent too long (a node.down event); a heartbeat clears it. */
  downAt?: number | undefined;
}

/** Event-page cursors name the last event of the previous page: "<at>.<id>". */
export const EVENT_CURSOR = /^(\d{1,15})\.([A-Za-z0-9._-]{1,200})$/;

export interface EventQuery {
  limit: number;
  /** Opaque cursor from a previous page. */
  cursor?: string | undefined;
  /** Only events at or after this time. */
  fromAt?: number | undefined;
  /** Newest first (the cursor then pages towards older events). */
  newestFirst?: boolean | undefined;
  /**
   * Only events of these types. `limit` still counts the events read, so a page may hold fewer
   * (even none) and still have a cursor: the store filters, the caller parses only what matches.
   */
  types?: readonly string[] | undefined;
}

export interface EventPage {
  events: ClusterEvent[];
  /** Cursor for the next page, null when there is none. */
  cursor: string | null;
}

/** A webhook subscription. The secret is kept in clear: it signs every delivery. */
export interface WebhookRecord {
  clusterId: string;
  id: string;
  url: string;
  secret: string;
  types: WebhookType[] | null;
  description: string | null;
  createdAt: number;
  /** The secret before the last rotation: deliveries are signed with both until `previousSecretUntil`. */
  previousSecret?: string | undefined;
  previousSecretUntil?: number | undefined;
}

/** One message for one webhook: the durable outbox entry and its delivery log. */
export interface DeliveryRecord {
  clusterId: string;
  webhookId: string;
  id: string;
  messageId: string;
  type: string;
  /** The exact body sent (and signed) on every attempt. */
  body: string;
  status: DeliveryStatus;
  /** The newest attempts, oldest first. */
  attempts: Attempt[];
  /** Attempts since it was enqueued or last redelivered: the retry policy counts these. */
  tries: number;
  /** When it is due next (pending only). */
  nextAttemptAt: number | null;
  createdAt: number;
  /** Every write is conditional on it: one deliverer claims an attempt. */
  version: number;
}

export interface DeliveryQuery {
  limit: number;
  /** The last delivery id of the previous page (newest first). */
  cursor?: string | undefined;
}

/** An operator key, an agent credential or an enrolment token: only the secret's hash is kept. */
export interface SecretRecord {
  kind: SecretKind;
  id: string;
  /** SHA-256 of the secret, hex. */
  hash: string;
  createdAt: number;
  revokedAt: number | null;
  /** Operator keys. */
  role?: OperatorRole | undefined;
  name?: string | undefined;
  /** Agent credentials and enrolment tokens: the node they are for. */
  clusterId?: string | undefined;
  node?: string | undefined;
  /** Enrolment tokens: one use, before this time. Agent credentials: the end of a rotation's overlap. */
  expiresAt?: number | undefined;
  usedAt?: number | null | undefined;
}

export interface Store {
  putClusterIfAbsent(record: ClusterRecord): Promise<boolean>;
  /** Replaces the cluster record only if its stored specVersion is `expectedSpecVersion`. */
  putCluster(record: ClusterRecord, expectedSpecVersion: number): Promise<boolean>;
  /**
   * Deletes every item of the cluster (lease, events, node statuses, webhooks, deliveries), the
   * cluster record last, so an interrupted deletion leaves a cluster that can be deleted again.
   */
  deleteCluster(clusterId: string): Promise<void>;
  getCluster(clusterId: string): Promise<ClusterRecord | null>;
  listClusters(): Promise<ClusterRecord[]>;

  putLeaseIfAbsent(lease: Lease): Promise<boolean>;
  getLease(clusterId: string): Promise<Lease | null>;
  putLease(next: Lease, current: Lease): Promise<boolean>;
  /** Drops the outbox once its events are stored, if the lease is still at `version`. */
  clearOutbox(clusterId: string, version: number): Promise<boolean>;

  putEvents(events: ClusterEvent[]): Promise<void>;
  listEvents(clusterId: string, query: EventQuery): Promise<EventPage>;
  /**
   * Deletes up to `limit` of the cluster's events older than `before`, oldest first; returns how
   * many. On DynamoDB the table's TTL does this too (each event carries its expiry); the
   * embedded store has no TTL, so the sweep prunes.
   */
  pruneEvents(clusterId: string, before: number, limit: number): Promise<number>;

  /** Returns the status it replaced (null: none), so a heartbeat learns the node was marked down. */
  putNodeStatus(status: NodeStatus): Promise<NodeStatus | null>;
  listNodeStatuses(clusterId: string): Promise<NodeStatus[]>;
  /** Marks a node down, only if it has not been heard from since `lastHeartbeatAt` and is not marked yet. */
  markNodeDown(clusterId: string, node: string, lastHeartbeatAt: number, at: number): Promise<boolean>;

  putWebhookIfAbsent(record: WebhookRecord): Promise<boolean>;
  getWebhook(clusterId: string, id: string): Promise<WebhookRecord | null>;
  /** Replaces an existing webhook (a secret rotation); false when it no longer exists. */
  replaceWebhook(record: WebhookRecord): Promise<boolean>;
  listWebhooks(clusterId: string): Promise<WebhookRecord[]>;
  deleteWebhook(clusterId: string, id: string): Promise<boolean>;

  /** Enqueues deliveries; one already stored under the same id is left as it is. */
  putDeliveriesIfAbsent(records: DeliveryRecord[]): Promise<void>;
  getDelivery(clusterId: string, webhookId: string, id: string): Promise<DeliveryRecord | null>;
  listDeliveries(clusterId: string, webhookId: string, query: DeliveryQuery): Promise<{ deliveries: DeliveryRecord[]; cursor: string | null }>;
  /** Compare-and-set on `expectedVersion`; `next.version` must be one more. */
  putDelivery(next: DeliveryRecord, expectedVersion: number): Promise<boolean>;
  /** Pending deliveries due at `now`, oldest due first, across clusters. May lag writes slightly (an index). */
  dueDeliveries(now: number, limit: number): Promise<DeliveryRecord[]>;

  putSecretIfAbsent(record: SecretRecord): Promise<boolean>;
  getSecret(kind: SecretKind, id: string): Promise<SecretRecord | null>;
  listSecrets(kind: SecretKind): Promise<SecretRecord[]>;
  /** Sets revokedAt or usedAt, only if it is not set yet (so an enrolment token is used once). */
  markSecret(kind: SecretKind, id: string, field: 'revokedAt' | 'usedAt', at: number): Promise<boolean>;
  /** Sets when an existing secret stops working (the end of a rotation's overlap). */
  setSecretExpiry(kind: SecretKind, id: string, at: number): Promise<boolean>;
}

/** The store could not be reached or refused the operation for a reason of its own. */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
}
