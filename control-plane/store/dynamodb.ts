/**
 * The Store on DynamoDB (and on dynalite, which speaks the same protocol).
 *
 * Single-table design; every item of a cluster shares its partition:
 *
 * | item        | pk             | sk                           | gsi1pk / gsi1sk     | conditional writes            |
 * |-------------|----------------|------------------------------|---------------------|-------------------------------|
 * | cluster     | CLUSTER#<id>   | SPEC                         | CLUSTERS / <id>     | create: attribute_not_exists  |
 * | lease       | CLUSTER#<id>   | LEASE                        | –                   | every write: version = :v     |
 * | node status | CLUSTER#<id>   | NODE#<node>                  | –                   | none (informational)          |
 * | event       | CLUSTER#<id>   | EVENT#<at, 15 digits>#<id>   | –                   | attribute_not_exists (dedupe); `ttl` (epoch seconds) for DynamoDB TTL |
 * | secret      | SECRET#<kind>#<id> | SECRET                   | SECRETS#<kind> / <id> | create: attribute_not_exists; revoke/use: once |
 * | webhook     | CLUSTER#<id>   | WEBHOOK#<webhook>            | –                   | create: attribute_not_exists  |
 * | delivery    | CLUSTER#<id>   | DELIVERY#<webhook>#<delivery> | DELIVERIES#DUE / <due>#… while pending | create: attribute_not_exists; then version = :v |
 *
 * Index `gsi1` (gsi1pk HASH, gsi1sk RANGE, projection ALL) lists clusters and secrets without a
 * scan, and holds pending deliveries by due time (sparse: a delivery leaves it once settled).
 * Secrets are operator keys, agent credentials and enrolment tokens; only their hashes are stored.
 * Attributes are the fields of the stored object, marshalled as native DynamoDB types.
 * The item operations used are exactly `DYNAMODB_ITEM_ACTIONS`; deployment grants only those.
 */
import {
  ConditionalCheckFailedException,
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  ResourceNotFoundException,
  UpdateItemCommand,
  type AttributeValue,
  type CreateTableCommandInput,
} from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import { type ClusterEvent, EventSchema } from '../../shared/events.ts';
import { type Lease, LeaseSchema } from '../../shared/lease.ts';
import { ClusterSpecSchema } from '../../shared/spec.ts';
import type { SecretKind } from '../../shared/credentials.ts';
import {
  type ClusterRecord,
  EVENT_CURSOR,
  type EventPage,
  type DeliveryQuery,
  type DeliveryRecord,
  type EventQuery,
  type NodeStatus,
  type SecretRecord,
  type Store,
  StoreUnavailableError,
  type WebhookRecord,
} from './store.ts';

/** The DynamoDB item operations this adapter performs (the IAM policy is derived from this). */
export const DYNAMODB_ITEM_ACTIONS = ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:Query'] as const;

const CLUSTERS_INDEX = 'gsi1';
const EVENT_AT_DIGITS = 15;

const clusterPk = (clusterId: string) => `CLUSTER#${clusterId}`;
const padAt = (at: number) => String(at).padStart(EVENT_AT_DIGITS, '0');
const eventSk = (at: number, id: string) => `EVENT#${padAt(at)}#${id}`;
const deliverySk = (webhookId: string, id: string) => `DELIVERY#${webhookId}#${id}`;
const DUE = 'DELIVERIES#DUE';

/** A pending delivery sits in the due index under its due time; a settled one is not indexed. */
function deliveryItem(d: DeliveryRecord): Record<string, AttributeValue> {
  const due: Record<string, string> =
    d.status === 'pending' && d.nextAttemptAt !== null ? { gsi1pk: DUE, gsi1sk: `${padAt(d.nextAttemptAt)}#${d.clusterId}#${d.webhookId}#${d.id}` } : {};
  return toItem({ pk: clusterPk(d.clusterId), sk: deliverySk(d.webhookId, d.id), ...due }, d);
}

function toItem(keys: Record<string, string>, value: object): Record<string, AttributeValue> {
  return marshall({ ...value, ...keys }, { removeUndefinedValues: true, convertTopLevelContainer: false });
}

function fromItem(item: Record<string, AttributeValue>): Record<string, unknown> {
  const { pk: _pk, sk: _sk, gsi1pk: _g1, gsi1sk: _g2, ...value } = unmarshall(item);
  return value;
}

function toClusterRecord(item: Record<string, AttributeValue>): ClusterRecord {
  const v = fromItem(item) as Omit<ClusterRecord, 'spec'> & { spec: unknown };
  return {
    spec: ClusterSpecSchema.parse(v.spec),
    specVersion: v.specVersion,
    ...(typeof v.peerToken === 'string' && { peerToken: v.peerToken }),
    ...(typeof v.previousPeerToken === 'string' && { previousPeerToken: v.previousPeerToken }),
    createdAt: v.createdAt,
    updatedAt: v.updatedAt,
  };
}

/** Capacity a call consumed, as DynamoDB reports it (ReturnConsumedCapacity: TOTAL). */
export interface CapacityUse {
  operation: string;
  kind: 'read' | 'write';
  units: number;
}

export interface DynamoStoreOptions {
  client: DynamoDBClient;
  tableName: string;
  /** How long events are kept: each carries its expiry in `ttl`, for DynamoDB's TTL (and the embedded store's pruning sweep). */
  eventRetentionMs?: number;
  /**
   * Calls in flight at once; more wait here, in this process. The routes' store is limited so
   * that a burst of reads waits here rather than in the store's own queue ahead of the arbiter's
   * renewals, which have a store (and connection pool) of their own. Default: no limit.
   */
  concurrency?: number;
  /** Called after every call with the capacity it consumed (cost accounting, metrics). */
  onCapacity?: (use: CapacityUse) => void;
}

/** Every call asks DynamoDB what it consumed; it costs nothing and makes cost observable. */
const TOTAL = { ReturnConsumedCapacity: 'TOTAL' } as const;
const WRITES = new Set(['PutItem', 'UpdateItem', 'DeleteItem']);

/** Events are kept this long unless configured otherwise (NFSHA_EVENT_RETENTION_DAYS). */
export const DEFAULT_EVENT_RETENTION_MS = 90 * 86_400_000;
/** The TTL attribute DynamoDB's Time to Live deletes event items by (the template enables it). */
export const TTL_ATTRIBUTE = 'ttl';

export class DynamoStore implements Store {
  readonly #db: DynamoDBClient;
  readonly #table: string;
  readonly #retentionMs: number;
  readonly #onCapacity: ((use: CapacityUse) => void) | undefined;
  readonly #slots: number;
  #inFlight = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(options: DynamoStoreOptions) {
    this.#slots = options.concurrency ?? Infinity;
    this.#db = options.client;
    this.#table = options.tableName;
    this.#retentionMs = options.eventRetentionMs ?? DEFAULT_EVENT_RETENTION_MS;
    this.#onCapacity = options.onCapacity;
  }

  /**
   * Runs one SDK call and reports the capacity it consumed; a failed condition is `false`,
   * anything else unexpected is StoreUnavailableError.
   */
  async #send<T extends { ConsumedCapacity?: { CapacityUnits?: number } }>(what: string, operation: string, call: () => Promise<T>): Promise<T | false> {
    if (this.#inFlight >= this.#slots) await new Promise<void>((ok) => this.#waiting.push(ok));
    else this.#inFlight++;
    try {
      return await this.#call(what, operation, call);
    } finally {
      // The slot passes straight to the next waiter, if any.
      const next = this.#waiting.shift();
      if (next) next();
      else this.#inFlight--;
    }
  }

  async #call<T extends { ConsumedCapacity?: { CapacityUnits?: number } }>(what: string, operation: string, call: () => Promise<T>): Promise<T | false> {
    const kind = WRITES.has(operation) ? 'write' : 'read';
    try {
      const result = await call();
      this.#onCapacity?.({ operation, kind, units: result.ConsumedCapacity?.CapacityUnits ?? 0 });
      return result;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) {
        // DynamoDB charges a failed conditional write as one write unit (items up to 1 KB).
        this.#onCapacity?.({ operation, kind, units: 1 });
        return false;
      }
      throw new StoreUnavailableError(`${what} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  async #putIfAbsent(item: Record<string, AttributeValue>, what: string): Promise<boolean> {
    const r = await this.#send(what, 'PutItem', () =>
      this.#db.send(new PutItemCommand({ ...TOTAL, TableName: this.#table, Item: item, ConditionExpression: 'attribute_not_exists(pk)' })),
    );
    return r !== false;
  }

  async #get(pk: string, sk: string): Promise<Record<string, AttributeValue> | null> {
    const r = await this.#send(`get ${pk} ${sk}`, 'GetItem', () =>
      this.#db.send(new GetItemCommand({ ...TOTAL, TableName: this.#table, Key: marshall({ pk, sk }), ConsistentRead: true })),
    );
    return (r && r.Item) || null;
  }

  /** Items whose sk starts with `prefix` (from `fromSk` on, if given), oldest first unless `newestFirst`. */
  async #queryPrefix(
    pk: string,
    prefix: string,
    page: {
      limit?: number | undefined;
      startSk?: string | undefined;
      fromSk?: string | undefined;
      newestFirst?: boolean;
      /** Only items whose `type` is one of these (the store reads the rest, but does not return them). */
      types?: readonly string[] | undefined;
    } = {},
  ) {
    const { limit, startSk, fromSk, newestFirst, types } = page;
    const typeValues = Object.fromEntries((types ?? []).map((t, i) => [`:t${i}`, t]));
    const r = await this.#send(`query ${pk} ${prefix}`, 'Query', () =>
      this.#db.send(
        new QueryCommand({
          ...TOTAL,
          TableName: this.#table,
          // Every sk of the prefix sorts before prefix + "\uffff".
          KeyConditionExpression: fromSk !== undefined ? 'pk = :pk AND sk BETWEEN :from AND :to' : 'pk = :pk AND begins_with(sk, :prefix)',
          ExpressionAttributeValues: marshall({
            ...(fromSk !== undefined ? { ':pk': pk, ':from': fromSk, ':to': `${prefix}\uffff` } : { ':pk': pk, ':prefix': prefix }),
            ...typeValues,
          }),
          ...(types && { FilterExpression: `#type IN (${Object.keys(typeValues).join(', ')})`, ExpressionAttributeNames: { '#type': 'type' } }),
          ConsistentRead: true,
          ...(newestFirst && { ScanIndexForward: false }),
          ...(limit !== undefined && { Limit: limit }),
          ...(startSk !== undefined && { ExclusiveStartKey: marshall({ pk, sk: startSk }) }),
        }),
      ),
    );
    return r || { Items: [], LastEvaluatedKey: undefined };
  }

  putClusterIfAbsent(record: ClusterRecord): Promise<boolean> {
    const id = record.spec.id;
    return this.#putIfAbsent(toItem({ pk: clusterPk(id), sk: 'SPEC', gsi1pk: 'CLUSTERS', gsi1sk: id }, record), `create cluster ${id}`);
  }

  async putCluster(record: ClusterRecord, expectedSpecVersion: number): Promise<boolean> {
    const id = record.spec.id;
    const r = await this.#send(`update cluster ${id}`, 'PutItem', () =>
      this.#db.send(
        new PutItemCommand({
          ...TOTAL,
          TableName: this.#table,
          Item: toItem({ pk: clusterPk(id), sk: 'SPEC', gsi1pk: 'CLUSTERS', gsi1sk: id }, record),
          ConditionExpression: 'specVersion = :v',
          ExpressionAttributeValues: marshall({ ':v': expectedSpecVersion }),
        }),
      ),
    );
    return r !== false;
  }

  async deleteCluster(clusterId: string): Promise<void> {
    const pk = clusterPk(clusterId);
    const remove = (sk: string) =>
      this.#send(`delete ${pk} ${sk}`, 'DeleteItem', () =>
        this.#db.send(new DeleteItemCommand({ ...TOTAL, TableName: this.#table, Key: marshall({ pk, sk }) })),
      );
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.#send(`list items of ${pk}`, 'Query', () =>
        this.#db.send(
          new QueryCommand({
            ...TOTAL,
            TableName: this.#table,
            KeyConditionExpression: 'pk = :pk',
            ExpressionAttributeValues: marshall({ ':pk': pk }),
            ProjectionExpression: 'sk',
            ConsistentRead: true,
            Limit: 100,
            ExclusiveStartKey: start,
          }),
        ),
      );
      if (!page) break;
      const keys = (page.Items ?? []).map((item) => unmarshall(item).sk as string).filter((sk) => sk !== 'SPEC');
      await Promise.all(keys.map(remove));
      start = page.LastEvaluatedKey;
    } while (start);
    await remove('SPEC');
  }

  async getCluster(clusterId: string): Promise<ClusterRecord | null> {
    const item = await this.#get(clusterPk(clusterId), 'SPEC');
    return item ? toClusterRecord(item) : null;
  }

  /** Every item of one kind in the index (gsi1pk), following pages. */
  async #queryIndex(kind: string): Promise<Record<string, AttributeValue>[]> {
    const items: Record<string, AttributeValue>[] = [];
    let start: Record<string, AttributeValue> | undefined;
    do {
      const r = await this.#send(`list ${kind}`, 'Query', () =>
        this.#db.send(
          new QueryCommand({
            ...TOTAL,
            TableName: this.#table,
            IndexName: CLUSTERS_INDEX,
            KeyConditionExpression: 'gsi1pk = :kind',
            ExpressionAttributeValues: marshall({ ':kind': kind }),
            ExclusiveStartKey: start,
          }),
        ),
      );
      if (!r) break;
      items.push(...(r.Items ?? []));
      start = r.LastEvaluatedKey;
    } while (start);
    return items;
  }

  async listClusters(): Promise<ClusterRecord[]> {
    return (await this.#queryIndex('CLUSTERS')).map(toClusterRecord);
  }

  putLeaseIfAbsent(lease: Lease): Promise<boolean> {
    return this.#putIfAbsent(toItem({ pk: clusterPk(lease.clusterId), sk: 'LEASE' }, lease), `create lease of ${lease.clusterId}`);
  }

  async getLease(clusterId: string): Promise<Lease | null> {
    const item = await this.#get(clusterPk(clusterId), 'LEASE');
    return item ? LeaseSchema.parse(fromItem(item)) : null;
  }

  /** Writes only the fields that changed: a renewal is three small attributes, not the whole lease. */
  async putLease(next: Lease, current: Lease): Promise<boolean> {
    const changed = (Object.keys(next) as (keyof Lease)[]).filter((k) => next[k] !== current[k]);
    const names: Record<string, string> = { '#version': 'version', '#renewedAt': 'renewedAt', '#expiresAt': 'expiresAt' };
    const values: Record<string, unknown> = { ':expected': current.version, ':renewedAt': current.renewedAt, ':expiresAt': current.expiresAt };
    const sets = changed.map((k, i) => {
      names[`#f${i}`] = k;
      values[`:f${i}`] = next[k];
      return `#f${i} = :f${i}`;
    });
    const r = await this.#send(`write lease of ${next.clusterId}`, 'UpdateItem', () =>
      this.#db.send(
        new UpdateItemCommand({
          ...TOTAL,
          TableName: this.#table,
          Key: marshall({ pk: clusterPk(next.clusterId), sk: 'LEASE' }),
          UpdateExpression: `SET ${sets.join(', ')}`,
          ConditionExpression: '#version = :expected AND #renewedAt = :renewedAt AND #expiresAt = :expiresAt',
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: marshall(values, { removeUndefinedValues: true }),
        }),
      ),
    );
    return r !== false;
  }

  async clearOutbox(clusterId: string, version: number): Promise<boolean> {
    const r = await this.#send(`clear outbox of ${clusterId}`, 'UpdateItem', () =>
      this.#db.send(
        new UpdateItemCommand({
          ...TOTAL,
          TableName: this.#table,
          Key: marshall({ pk: clusterPk(clusterId), sk: 'LEASE' }),
          UpdateExpression: 'SET outbox = :empty',
          ConditionExpression: 'version = :version',
          ExpressionAttributeValues: marshall({ ':empty': [], ':version': version }),
        }),
      ),
    );
    return r !== false;
  }

  async putEvents(events: ClusterEvent[]): Promise<void> {
    await Promise.all(
      events.map((e) =>
        this.#putIfAbsent(
          toItem({ pk: clusterPk(e.clusterId), sk: eventSk(e.at, e.id) }, { ...e, [TTL_ATTRIBUTE]: Math.ceil((e.at + this.#retentionMs) / 1000) }),
          `record event ${e.id}`,
        ),
      ),
    );
  }

  async pruneEvents(clusterId: string, before: number, limit: number): Promise<number> {
    const pk = clusterPk(clusterId);
    const r = await this.#send(`list old events of ${clusterId}`, 'Query', () =>
      this.#db.send(
        new QueryCommand({
          ...TOTAL,
          TableName: this.#table,
          KeyConditionExpression: 'pk = :pk AND sk BETWEEN :from AND :to',
          ExpressionAttributeValues: marshall({ ':pk': pk, ':from': 'EVENT#', ':to': `EVENT#${padAt(Math.max(0, before - 1))}#\uffff` }),
          ProjectionExpression: 'sk',
          ConsistentRead: true,
          Limit: limit,
        }),
      ),
    );
    const keys = r ? (r.Items ?? []).map((item) => unmarshall(item).sk as string) : [];
    await Promise.all(
      keys.map((sk) =>
        this.#send(`delete event ${sk}`, 'DeleteItem', () =>
          this.#db.send(new DeleteItemCommand({ ...TOTAL, TableName: this.#table, Key: marshall({ pk, sk }) })),
        ),
      ),
    );
    return keys.length;
  }

  async listEvents(clusterId: string, query: EventQuery): Promise<EventPage> {
    const after = query.cursor ? EVENT_CURSOR.exec(query.cursor) : null;
    const r = await this.#queryPrefix(clusterPk(clusterId), 'EVENT#', {
      limit: query.limit,
      startSk: after ? eventSk(Number(after[1]), after[2]!) : undefined,
      fromSk: query.fromAt !== undefined ? `EVENT#${padAt(query.fromAt)}` : undefined,
      newestFirst: query.newestFirst ?? false,
      types: query.types,
    });
    const events = (r.Items ?? []).map((item) => {
      const { [TTL_ATTRIBUTE]: _ttl, ...e } = fromItem(item);
      return EventSchema.parse(e);
    });
    // The next page starts after the last item read, which a type filter may not have returned.
    const lastSk = r.LastEvaluatedKey ? (unmarshall(r.LastEvaluatedKey).sk as string) : null;
    const m = lastSk ? /^EVENT#(\d+)#(.+)$/.exec(lastSk) : null;
    return { events, cursor: m ? `${Number(m[1])}.${m[2]}` : null };
  }

  async putNodeStatus(status: NodeStatus): Promise<NodeStatus | null> {
    const r = await this.#send(`record status of ${status.node}`, 'PutItem', () =>
      this.#db.send(
        new PutItemCommand({
          ...TOTAL,
          TableName: this.#table,
          Item: toItem({ pk: clusterPk(status.clusterId), sk: `NODE#${status.node}` }, status),
          ReturnValues: 'ALL_OLD',
        }),
      ),
    );
    return r && r.Attributes ? (fromItem(r.Attributes) as unknown as NodeStatus) : null;
  }

  async markNodeDown(clusterId: string, node: string, lastHeartbeatAt: number, at: number): Promise<boolean> {
    const r = await this.#send(`mark ${node} down`, 'UpdateItem', () =>
      this.#db.send(
        new UpdateItemCommand({
          ...TOTAL,
          TableName: this.#table,
          Key: marshall({ pk: clusterPk(clusterId), sk: `NODE#${node}` }),
          UpdateExpression: 'SET downAt = :at',
          ConditionExpression: 'lastHeartbeatAt = :last AND attribute_not_exists(downAt)',
          ExpressionAttributeValues: marshall({ ':at': at, ':last': lastHeartbeatAt }),
        }),
      ),
    );
    return r !== false;
  }

  putWebhookIfAbsent(record: WebhookRecord): Promise<boolean> {
    return this.#putIfAbsent(toItem({ pk: clusterPk(record.clusterId), sk: `WEBHOOK#${record.id}` }, record), `create webhook ${record.id}`);
  }

  async getWebhook(clusterId: string, id: string): Promise<WebhookRecord | null> {
    const item = await this.#get(clusterPk(clusterId), `WEBHOOK#${id}`);
    return item ? (fromItem(item) as unknown as WebhookRecord) : null;
  }

  async replaceWebhook(record: WebhookRecord): Promise<boolean> {
    const r = await this.#send(`replace webhook ${record.id}`, 'PutItem', () =>
      this.#db.send(
        new PutItemCommand({
          ...TOTAL,
          TableName: this.#table,
          Item: toItem({ pk: clusterPk(record.clusterId), sk: `WEBHOOK#${record.id}` }, record),
          ConditionExpression: 'attribute_exists(pk)',
        }),
      ),
    );
    return r !== false;
  }

  async listWebhooks(clusterId: string): Promise<WebhookRecord[]> {
    const r = await this.#queryPrefix(clusterPk(clusterId), 'WEBHOOK#');
    return (r.Items ?? []).map((item) => fromItem(item) as unknown as WebhookRecord);
  }

  async deleteWebhook(clusterId: string, id: string): Promise<boolean> {
    const r = await this.#send(`delete webhook ${id}`, 'DeleteItem', () =>
      this.#db.send(
        new DeleteItemCommand({
          ...TOTAL,
          TableName: this.#table,
          Key: marshall({ pk: clusterPk(clusterId), sk: `WEBHOOK#${id}` }),
          ConditionExpression: 'attribute_exists(pk)',
        }),
      ),
    );
    return r !== false;
  }

  async putDeliveriesIfAbsent(records: DeliveryRecord[]): Promise<void> {
    await Promise.all(records.map((d) => this.#putIfAbsent(deliveryItem(d), `enqueue delivery ${d.id}`)));
  }

  async getDelivery(clusterId: string, webhookId: string, id: string): Promise<DeliveryRecord | null> {
    const item = await this.#get(clusterPk(clusterId), deliverySk(webhookId, id));
    return item ? (fromItem(item) as unknown as DeliveryRecord) : null;
  }

  async listDeliveries(clusterId: string, webhookId: string, query: DeliveryQuery) {
    const r = await this.#queryPrefix(clusterPk(clusterId), `DELIVERY#${webhookId}#`, {
      limit: query.limit,
      newestFirst: true,
      startSk: query.cursor ? deliverySk(webhookId, query.cursor) : undefined,
    });
    const deliveries = (r.Items ?? []).map((item) => fromItem(item) as unknown as DeliveryRecord);
    return { deliveries, cursor: r.LastEvaluatedKey && deliveries.length > 0 ? deliveries.at(-1)!.id : null };
  }

  async putDelivery(next: DeliveryRecord, expectedVersion: number): Promise<boolean> {
    const r = await this.#send(`record delivery ${next.id}`, 'PutItem', () =>
      this.#db.send(
        new PutItemCommand({
          ...TOTAL,
          TableName: this.#table,
          Item: deliveryItem(next),
          ConditionExpression: 'version = :v',
          ExpressionAttributeValues: marshall({ ':v': expectedVersion }),
        }),
      ),
    );
    return r !== false;
  }

  async dueDeliveries(now: number, limit: number): Promise<DeliveryRecord[]> {
    const r = await this.#send('list due deliveries', 'Query', () =>
      this.#db.send(
        new QueryCommand({
          ...TOTAL,
          TableName: this.#table,
          IndexName: CLUSTERS_INDEX,
          KeyConditionExpression: 'gsi1pk = :due AND gsi1sk <= :now',
          ExpressionAttributeValues: marshall({ ':due': DUE, ':now': `${padAt(now)}#\uffff` }),
          Limit: limit,
        }),
      ),
    );
    return r ? (r.Items ?? []).map((item) => fromItem(item) as unknown as DeliveryRecord) : [];
  }

  putSecretIfAbsent(record: SecretRecord): Promise<boolean> {
    const keys = { pk: `SECRET#${record.kind}#${record.id}`, sk: 'SECRET', gsi1pk: `SECRETS#${record.kind}`, gsi1sk: record.id };
    return this.#putIfAbsent(toItem(keys, record), `create ${record.kind} secret ${record.id}`);
  }

  async getSecret(kind: SecretKind, id: string): Promise<SecretRecord | null> {
    const item = await this.#get(`SECRET#${kind}#${id}`, 'SECRET');
    return item ? (fromItem(item) as unknown as SecretRecord) : null;
  }

  async listSecrets(kind: SecretKind): Promise<SecretRecord[]> {
    return (await this.#queryIndex(`SECRETS#${kind}`)).map((item) => fromItem(item) as unknown as SecretRecord);
  }

  async markSecret(kind: SecretKind, id: string, field: 'revokedAt' | 'usedAt', at: number): Promise<boolean> {
    const r = await this.#send(`mark ${kind} secret ${id}`, 'UpdateItem', () =>
      this.#db.send(
        new UpdateItemCommand({
          ...TOTAL,
          TableName: this.#table,
          Key: marshall({ pk: `SECRET#${kind}#${id}`, sk: 'SECRET' }),
          UpdateExpression: 'SET #field = :at',
          ConditionExpression: 'attribute_exists(pk) AND (attribute_not_exists(#field) OR #field = :null)',
          ExpressionAttributeNames: { '#field': field },
          ExpressionAttributeValues: marshall({ ':at': at, ':null': null }),
        }),
      ),
    );
    return r !== false;
  }

  async setSecretExpiry(kind: SecretKind, id: string, at: number): Promise<boolean> {
    const r = await this.#send(`set expiry of ${kind} secret ${id}`, 'UpdateItem', () =>
      this.#db.send(
        new UpdateItemCommand({
          ...TOTAL,
          TableName: this.#table,
          Key: marshall({ pk: `SECRET#${kind}#${id}`, sk: 'SECRET' }),
          UpdateExpression: 'SET expiresAt = :at',
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeValues: marshall({ ':at': at }),
        }),
      ),
    );
    return r !== false;
  }

  async listNodeStatuses(clusterId: string): Promise<NodeStatus[]> {
    const r = await this.#queryPrefix(clusterPk(clusterId), 'NODE#');
    return (r.Items ?? []).map((item) => fromItem(item) as unknown as NodeStatus);
  }
}

/** The table's keys, index and billing; the deployment template must declare the same (tested). */
export const TABLE_DEFINITION = {
  BillingMode: 'PAY_PER_REQUEST',
  AttributeDefinitions: ['pk', 'sk', 'gsi1pk', 'gsi1sk'].map((name) => ({ AttributeName: name, AttributeType: 'S' })),
  KeySchema: [
    { AttributeName: 'pk', KeyType: 'HASH' },
    { AttributeName: 'sk', KeyType: 'RANGE' },
  ],
  GlobalSecondaryIndexes: [
    {
      IndexName: CLUSTERS_INDEX,
      KeySchema: [
        { AttributeName: 'gsi1pk', KeyType: 'HASH' },
        { AttributeName: 'gsi1sk', KeyType: 'RANGE' },
      ],
      Projection: { ProjectionType: 'ALL' },
    },
  ],
} satisfies Omit<CreateTableCommandInput, 'TableName'>;

/** Creates the table with its index if it does not exist, and waits until it is usable. */
export async function ensureTable(client: DynamoDBClient, tableName: string): Promise<'created' | 'exists'> {
  const describe = async () => {
    try {
      return (await client.send(new DescribeTableCommand({ TableName: tableName }))).Table?.TableStatus ?? null;
    } catch (err) {
      if (err instanceof ResourceNotFoundException) return null;
      throw err;
    }
  };
  if ((await describe()) === 'ACTIVE') return 'exists';
  try {
    await client.send(new CreateTableCommand({ TableName: tableName, ...TABLE_DEFINITION }));
  } catch (err) {
    // Another process created it between our describe and create: fine.
    if ((err as Error).name !== 'ResourceInUseException') throw err;
  }
  for (let i = 0; i < 600; i++) {
    if ((await describe()) === 'ACTIVE') return 'created';
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`table ${tableName} did not become ACTIVE within 60 s`);
}
