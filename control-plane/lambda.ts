/**
 * The control plane on AWS Lambda (Function URL or API Gateway HTTP API, payload format 2.0):
 * the same app as the Node server, on DynamoDB. The client and app are built once per
 * instance, at cold start, and reused by every invocation it serves. The scheduled sweep
 * (EventBridge Scheduler, input SWEEP_EVENT) arrives through the same handler.
 *
 * Webhooks: an instance is frozen once it answers, so it cannot deliver after its response.
 * A request that enqueued deliveries invokes the function again, asynchronously (DELIVER_EVENT),
 * and that invocation delivers; the sweep delivers retries, and anything the invocation missed.
 */
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { handle } from 'hono/aws-lambda';
import { createApp } from './app.ts';
import { Arbiter } from './arbiter.ts';
import { Credentials } from './auth.ts';
import { systemClock } from './clock.ts';
import { loadConfig } from './config.ts';
import { AddressSet } from './limits.ts';
import { createLogger } from './log.ts';
import { ControlPlaneMetrics } from './metrics.ts';
import { DynamoStore } from './store/dynamodb.ts';
import { dynamoClient } from './store/client.ts';
import { BOOTSTRAP_EVENT, DELIVER_EVENT, isTaskEvent, SWEEP_EVENT, sweep } from './sweep.ts';
import { WebhookDeliverer } from './webhooks.ts';

const config = loadConfig(process.env);
if (config.store.kind !== 'dynamodb') throw new Error('the Lambda handler runs on DynamoDB only');
const log = createLogger(config.logLevel);
// One request at a time per instance: no queue to jump, so one store serves the arbiter and the routes.
const store = new DynamoStore({ client: dynamoClient(config.store), tableName: config.store.tableName, eventRetentionMs: config.eventRetentionMs });
// An instance's own counters mean nothing to a scrape: they go to CloudWatch as embedded metrics.
const metrics = new ControlPlaneMetrics('emf');
const deliverer = new WebhookDeliverer(store, systemClock, log, { allow: new AddressSet(config.app.webhookAllow), metrics });
/** One request at a time per instance: set while handling one, when it enqueued deliveries. */
let enqueued = false;
const arbiter = new Arbiter(store, systemClock, log, { onDeliveries: () => (enqueued = true), metrics });
const credentials = new Credentials(store, systemClock);
const http = handle(createApp({ store, clock: systemClock, log, arbiter, credentials, deliverer, options: config.app, metrics }));
const lambda = new LambdaClient({ maxAttempts: 2 });

async function invokeDelivery(functionName: string): Promise<void> {
  try {
    await lambda.send(new InvokeCommand({ FunctionName: functionName, InvocationType: 'Event', Payload: JSON.stringify(DELIVER_EVENT) }));
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'could not invoke webhook delivery; the next sweep delivers');
  }
}

export const handler = async (event: Parameters<typeof http>[0], context: Parameters<typeof http>[1]) => {
  if (isTaskEvent(event, SWEEP_EVENT)) return sweep({ store, arbiter, deliverer, clock: systemClock, log });
  if (isTaskEvent(event, DELIVER_EVENT)) return deliverer.deliverDue();
  if (isTaskEvent(event, BOOTSTRAP_EVENT)) {
    const adminKey = await credentials.bootstrapAdmin();
    return adminKey ? { adminKey } : { error: 'an operator key already exists; create more with POST /v1/keys' };
  }
  enqueued = false;
  const response = await http(event, context);
  if (enqueued) await invokeDelivery(context?.functionName ?? process.env.AWS_LAMBDA_FUNCTION_NAME!);
  return response;
};
