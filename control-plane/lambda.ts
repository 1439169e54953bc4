/**
 * The control plane on AWS Lambda (Function URL or API Gateway HTTP API, payload format 2.0):
 * the same app as the Node server, on DynamoDB. The client and app are built once per
 * instance, at cold start, and reused by every invocation it serves. The scheduled sweep
 * (EventBridge Scheduler, input SWEEP_EVENT) arrives through the same handler.
 */
import { handle } from 'hono/aws-lambda';
import { createApp } from './app.ts';
import { Arbiter } from './arbiter.ts';
import { Credentials } from './auth.ts';
import { systemClock } from './clock.ts';
import { loadConfig } from './config.ts';
import { createLogger } from './log.ts';
import { DynamoStore } from './store/dynamodb.ts';
import { dynamoClient } from './store/client.ts';
import { BOOTSTRAP_EVENT, isTaskEvent, SWEEP_EVENT, sweep } from './sweep.ts';

const config = loadConfig(process.env);
if (config.store.kind !== 'dynamodb') throw new Error('the Lambda handler runs on DynamoDB only');
const log = createLogger(config.logLevel);
const store = new DynamoStore({ client: dynamoClient(config.store), tableName: config.store.tableName });
const arbiter = new Arbiter(store, systemClock, log);
const credentials = new Credentials(store, systemClock);
const http = handle(createApp({ store, clock: systemClock, log, arbiter, credentials }));

export const handler = async (event: Parameters<typeof http>[0], context: Parameters<typeof http>[1]) => {
  if (isTaskEvent(event, SWEEP_EVENT)) return sweep(store, arbiter, log);
  if (isTaskEvent(event, BOOTSTRAP_EVENT)) {
    const adminKey = await credentials.bootstrapAdmin();
    return adminKey ? { adminKey } : { error: 'an operator key already exists; create more with POST /v1/keys' };
  }
  return http(event, context);
};
