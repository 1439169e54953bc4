/** Builds the Store a configuration asks for. */
import type { StoreConfig } from '../config.ts';
import { dynamoClient } from './client.ts';
import { DynamoStore, ensureTable } from './dynamodb.ts';
import { startEmbeddedDynamo } from './embedded.ts';
import type { Store } from './store.ts';

export interface OpenedStore {
  store: Store;
  /** Where the data lives, for the start-up log line. */
  description: string;
  close(): Promise<void>;
}

export async function openStore(config: StoreConfig): Promise<OpenedStore> {
  if (config.kind === 'embedded') {
    const embedded = await startEmbeddedDynamo(config.dataDir);
    const client = dynamoClient({ endpoint: embedded.endpoint, local: true });
    try {
      await ensureTable(client, config.tableName);
    } catch (err) {
      await embedded.close();
      throw err;
    }
    return {
      store: new DynamoStore({ client, tableName: config.tableName }),
      description: `embedded DynamoDB (dynalite) with data in ${embedded.dataDir}`,
      async close() {
        client.destroy();
        await embedded.close();
      },
    };
  }
  const client = dynamoClient({ endpoint: config.endpoint, region: config.region });
  // A local DynamoDB-compatible endpoint gets its table made for it; on AWS the deployment owns it.
  if (config.endpoint) await ensureTable(client, config.tableName);
  return {
    store: new DynamoStore({ client, tableName: config.tableName }),
    description: `DynamoDB table ${config.tableName}${config.endpoint ? ` at ${config.endpoint}` : ''}`,
    async close() {
      client.destroy();
    },
  };
}
