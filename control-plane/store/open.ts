/** Builds the Store a configuration asks for. */
import type { StoreConfig } from '../config.ts';
import { dynamoClient } from './client.ts';
import { DynamoStore, ensureTable } from './dynamodb.ts';
import { startEmbeddedDynamo } from './embedded.ts';
import type { Store } from './store.ts';

export interface OpenedStore {
  /** For the routes and streams: at most ROUTE_CONCURRENCY calls in flight, the rest wait in this process. */
  store: Store;
  /** For the arbiter (renewals, grants, their events): its own client and no queue behind other work. */
  leaseStore: Store;
  /** Where the data lives, for the start-up log line. */
  description: string;
  /** The embedded store's online backup (DynamoDB has its own: point-in-time recovery, on-demand backups). */
  backup?: (path: string) => Promise<{ entries: number }>;
  close(): Promise<void>;
}

/** Store calls the routes may have in flight at once (see OpenedStore). */
export const ROUTE_CONCURRENCY = 2;

/**
 * Two views of one table. The arbiter's has an SDK client (a connection pool) of its own and no
 * limit; the routes' queues its calls past ROUTE_CONCURRENCY. So whatever the API is asked —
 * event pages, listings, enrolments, streams — waits behind itself, never ahead of a renewal.
 */
export async function openStore(config: StoreConfig, options: { eventRetentionMs?: number } = {}): Promise<OpenedStore> {
  if (config.kind === 'embedded') {
    const embedded = await startEmbeddedDynamo(config.dataDir);
    const client = dynamoClient({ endpoint: embedded.endpoint, local: embedded.credentials });
    const leaseClient = dynamoClient({ endpoint: embedded.endpoint, local: embedded.credentials });
    try {
      await ensureTable(client, config.tableName);
    } catch (err) {
      await embedded.close();
      throw err;
    }
    return {
      store: new DynamoStore({ client, tableName: config.tableName, concurrency: ROUTE_CONCURRENCY, ...options }),
      leaseStore: new DynamoStore({ client: leaseClient, tableName: config.tableName, ...options }),
      description: `embedded DynamoDB (dynalite) with data in ${embedded.dataDir}`,
      backup: (path) => embedded.backup(path),
      async close() {
        client.destroy();
        leaseClient.destroy();
        await embedded.close();
      },
    };
  }
  const client = dynamoClient({ endpoint: config.endpoint, region: config.region });
  const leaseClient = dynamoClient({ endpoint: config.endpoint, region: config.region });
  // A local DynamoDB-compatible endpoint gets its table made for it; on AWS the deployment owns it.
  if (config.endpoint) await ensureTable(client, config.tableName);
  return {
    store: new DynamoStore({ client, tableName: config.tableName, concurrency: ROUTE_CONCURRENCY, ...options }),
    leaseStore: new DynamoStore({ client: leaseClient, tableName: config.tableName, ...options }),
    description: `DynamoDB table ${config.tableName}${config.endpoint ? ` at ${config.endpoint}` : ''}`,
    async close() {
      client.destroy();
      leaseClient.destroy();
    },
  };
}
