/** The DynamoDB SDK client every entry uses (kept apart from the embedded store, which Lambda never loads). */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { NodeHttpHandler } from '@smithy/node-http-handler';

/**
 * An SDK client with short, bounded timeouts: a lease arbiter that waits seconds on its store
 * answers after the agents' deadlines, so it fails fast and lets the agent retry instead.
 */
export function dynamoClient(options: {
  endpoint?: string | undefined;
  region?: string | undefined;
  /** The embedded store's own credentials (it refuses any other). */
  local?: { accessKeyId: string; secretAccessKey: string };
}): DynamoDBClient {
  return new DynamoDBClient({
    ...(options.endpoint && { endpoint: options.endpoint }),
    region: options.region ?? (options.local ? 'local' : undefined),
    ...(options.local && { credentials: options.local }),
    maxAttempts: 2,
    requestHandler: new NodeHttpHandler({ connectionTimeout: 300, requestTimeout: 600 }),
  });
}
