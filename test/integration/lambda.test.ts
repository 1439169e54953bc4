import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { buildBundle } from '../../infra/build.ts';
import { DynamoStore, ensureTable } from '../../control-plane/store/dynamodb.ts';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BOOTSTRAP_EVENT, DELIVER_EVENT, SWEEP_EVENT } from '../../control-plane/sweep.ts';
import { WebhookReceiver } from '../helpers/webhook-receiver.ts';
import { Credentials } from '../../control-plane/auth.ts';
import { systemClock } from '../../control-plane/clock.ts';
import { type EmbeddedDynamo, startEmbeddedDynamo } from '../../control-plane/store/embedded.ts';
import { dynamoClient } from '../../control-plane/store/client.ts';
import { exampleSpec, tempDir } from '../helpers/control-plane.ts';

type Handler = (event: unknown, context: unknown) => Promise<any>;

let dynamo: EmbeddedDynamo;
let bundleDir: string;
let credentials: Credentials;
let adminToken: string;
let setupClient: ReturnType<typeof dynamoClient>;
/** The handler from the source, and from the bundle `npm run build` makes: both must behave. */
const handlers: Record<'source' | 'bundle', Handler> = {} as never;
/** The Lambda API on loopback: records the asynchronous invocations the handler makes. */
let lambdaApi: Server;
const invocations: { path: string; type: string | undefined; payload: unknown }[] = [];
const receiver = new WebhookReceiver();

before(async () => {
  dynamo = await startEmbeddedDynamo(await tempDir());
  setupClient = dynamoClient({ endpoint: dynamo.endpoint, local: dynamo.credentials });
  await ensureTable(setupClient, 'nfs-ha-lambda');
  credentials = new Credentials(new DynamoStore({ client: setupClient, tableName: 'nfs-ha-lambda' }), systemClock);
  adminToken = (await credentials.issue('operator', { role: 'admin', name: 'test' })).token;
  lambdaApi = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      invocations.push({
        path: req.url ?? '',
        type: req.headers['x-amz-invocation-type'] as string | undefined,
        payload: JSON.parse(Buffer.concat(chunks).toString()),
      });
      res.writeHead(202).end();
    });
  });
  await new Promise<void>((ok) => lambdaApi.listen(0, '127.0.0.1', ok));
  await receiver.start();
  // What the Lambda runtime and the deployment set; the handler reads them at cold start.
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_LAMBDA: `http://127.0.0.1:${(lambdaApi.address() as AddressInfo).port}`,
    AWS_LAMBDA_FUNCTION_NAME: 'nfs-ha-control-plane',
    NFSHA_TABLE: 'nfs-ha-lambda',
    DYNAMODB_ENDPOINT: dynamo.endpoint,
    AWS_REGION: 'local',
    AWS_ACCESS_KEY_ID: dynamo.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: dynamo.credentials.secretAccessKey,
    // The test's receiver listens on loopback, which only the operator's allowlist opens.
    NFSHA_WEBHOOK_ALLOW: '127.0.0.1',
    LOG_LEVEL: 'silent',
  });
  handlers.source = ((await import('../../control-plane/lambda.ts')) as unknown as { handler: Handler }).handler;
  bundleDir = await tempDir('nfs-ha-lambda-');
  const built = await buildBundle('lambda', bundleDir);
  handlers.bundle = ((await import(pathToFileURL(built.path).href)) as { handler: Handler }).handler;
});

after(async () => {
  lambdaApi.close();
  await receiver.stop();
  setupClient.destroy();
  await dynamo.close();
  await rm(dynamo.dataDir, { recursive: true, force: true });
  await rm(bundleDir, { recursive: true, force: true });
});

const context = { awsRequestId: 'req-1', functionName: 'nfs-ha-control-plane', getRemainingTimeInMillis: () => 10_000 };

/** An HTTP API (payload 2.0) or Function URL event; both use the 2.0 format. */
function event(kind: 'apigw' | 'url', method: string, path: string, body?: unknown, options: { base64?: boolean; query?: string; token?: string } = {}) {
  const text = body === undefined ? undefined : JSON.stringify(body);
  const domainName = kind === 'url' ? 'abcdefghijklmnop.lambda-url.eu-west-1.on.aws' : 'abc123.execute-api.eu-west-1.amazonaws.com';
  return {
    version: '2.0',
    routeKey: kind === 'url' ? '$default' : `${method} ${path}`,
    rawPath: path,
    rawQueryString: options.query ?? '',
    headers: { host: domainName, 'content-type': 'application/json', 'user-agent': 'test', authorization: `Bearer ${options.token ?? adminToken}` },
    requestContext: {
      accountId: kind === 'url' ? 'anonymous' : '123456789012',
      apiId: 'abcdefghijklmnop',
      domainName,
      domainPrefix: domainName.split('.')[0],
      http: { method, path, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'test' },
      requestId: 'req-1',
      routeKey: '$default',
      stage: '$default',
      time: '26/Nov/2026:02:30:00 +0000',
      timeEpoch: 1795660200000,
    },
    ...(text !== undefined && { body: options.base64 ? Buffer.from(text).toString('base64') : text }),
    isBase64Encoded: !!options.base64,
  };
}

/** Invokes with the admin key, or with the node's agent credential on node routes. */
async function invoke(
  handler: Handler,
  kind: 'apigw' | 'url',
  method: string,
  path: string,
  body?: unknown,
  options: { base64?: boolean; query?: string } = {},
) {
  const node = /^\/v1\/clusters\/([^/]+)\/nodes\/([^/]+)\//.exec(path);
  const token = node ? (await credentials.issue('agent', { clusterId: node[1], node: node[2] })).token : adminToken;
  const res = await handler(event(kind, method, path, body, { ...options, token }), context);
  const text = res.isBase64Encoded ? Buffer.from(res.body, 'base64').toString('utf8') : res.body;
  return { status: res.statusCode, body: text ? JSON.parse(text) : null };
}

describe('Lambda handler against dynalite', () => {
  for (const [build, kind] of [
    ['source', 'apigw'],
    ['source', 'url'],
    ['bundle', 'apigw'],
    ['bundle', 'url'],
  ] as const) {
    it(`${build}: ${kind === 'url' ? 'Function URL' : 'API Gateway v2'} events: create, heartbeat, fence, status, events, errors`, async () => {
      const id = `lambda-${build}-${kind}`;
      const call = (method: string, path: string, body?: unknown, options?: { base64?: boolean; query?: string }) =>
        invoke(handlers[build], kind, method, path, body, options);
      const created = await call('POST', '/v1/clusters', await exampleSpec(id), { base64: kind === 'url' });
      assert.equal(created.status, 201, JSON.stringify(created.body));

      const a = await call('POST', `/v1/clusters/${id}/nodes/node-a/heartbeat`, { role: 'passive', epoch: 0 });
      assert.equal(a.status, 200);
      assert.equal(a.body.directive.action, 'activate');
      assert.equal(a.body.lease.epoch, 1);
      const fenced = await call('POST', `/v1/clusters/${id}/nodes/node-a/fencing`, { epoch: 1, keys: a.body.directive.fence.keys });
      assert.equal(fenced.status, 200);
      const b = await call('POST', `/v1/clusters/${id}/nodes/node-b/heartbeat`, { role: 'passive', epoch: 0 });
      assert.equal(b.body.directive.action, 'stay-passive');

      const status = await call('GET', `/v1/clusters/${id}/status`);
      assert.equal(status.status, 200);
      assert.equal(status.body.lease.state, 'held');
      assert.equal(status.body.lease.holder, 'node-a');

      const events = await call('GET', `/v1/clusters/${id}/events`, undefined, { query: 'limit=3' });
      assert.deepEqual(
        events.body.events.map((e: { type: string }) => e.type),
        ['cluster.created', 'lease.granted', 'fencing.decided'],
      );

      const bad = await call('POST', `/v1/clusters/${id}/nodes/node-b/heartbeat`, { role: 'passive' });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, 'invalid_request');
      const missing = await call('GET', '/v1/clusters/nope');
      assert.equal(missing.status, 404);
    });
  }

  for (const build of ['source', 'bundle'] as const) {
    it(`${build}: the scheduled sweep stores events a crash left in a lease's outbox`, async () => {
      const id = `lambda-sweep-${build}`;
      await invoke(handlers[build], 'url', 'POST', '/v1/clusters', await exampleSpec(id));
      const sweepClient = dynamoClient({ endpoint: dynamo.endpoint, local: dynamo.credentials });
      const store = new DynamoStore({ client: sweepClient, tableName: 'nfs-ha-lambda' });
      const lease = (await store.getLease(id))!;
      const orphan = {
        id: 'e1.1.lease.granted',
        clusterId: id,
        at: lease.renewedAt + 1,
        epoch: 1,
        type: 'lease.granted' as const,
        node: 'node-a',
        data: { previousHolder: null, reason: 'cold-start' as const },
      };
      // As if the process died right after committing a decision, before storing its events.
      assert.equal(await store.putLease({ ...lease, version: lease.version + 1, outbox: [orphan] }, lease), true);
      const swept = await handlers[build](SWEEP_EVENT, context);
      assert.deepEqual({ clusters: swept.clusters, failed: swept.failed }, { clusters: (await store.listClusters()).length, failed: 0 });
      const events = (await store.listEvents(id, { limit: 10 })).events.map((e) => e.id);
      assert.ok(events.includes('e1.1.lease.granted'), events.join(', '));
      assert.deepEqual((await store.getLease(id))?.outbox, []);
      sweepClient.destroy();
    });
  }

  for (const build of ['source', 'bundle'] as const) {
    it(`${build}: a request that enqueued webhooks invokes the function asynchronously, and that invocation delivers them`, async () => {
      const id = `lambda-webhook-${build}`;
      const call = (method: string, path: string, body?: unknown) => invoke(handlers[build], 'url', method, path, body);
      await call('POST', '/v1/clusters', await exampleSpec(id));
      const hook = await call('POST', `/v1/clusters/${id}/webhooks`, { url: receiver.url, types: ['maintenance.changed'] });
      assert.equal(hook.status, 201);
      receiver.trust(hook.body.secret);
      invocations.length = 0;
      receiver.received.length = 0;
      assert.equal((await call('GET', `/v1/clusters/${id}/status`)).status, 200);
      assert.deepEqual(invocations, [], 'nothing enqueued, nothing invoked');
      assert.equal((await call('PUT', `/v1/clusters/${id}/maintenance`, { enabled: true })).status, 200);
      assert.deepEqual(invocations, [{ path: '/2015-03-31/functions/nfs-ha-control-plane/invocations', type: 'Event', payload: DELIVER_EVENT }]);
      assert.equal(receiver.received.length, 0, 'not delivered inside the request');
      assert.deepEqual(await handlers[build](DELIVER_EVENT, context), { attempted: 1, delivered: 1, failed: 0 });
      assert.deepEqual(
        receiver.received.map((r) => [r.type, r.data.clusterId, r.data.enabled]),
        [['maintenance.changed', id, true]],
      );
    });
  }

  it('the bootstrap invocation refuses once an operator key exists, and mints nothing', async () => {
    const store = new DynamoStore({ client: setupClient, tableName: 'nfs-ha-lambda' });
    const before = (await store.listSecrets('operator')).length;
    assert.deepEqual(await handlers.source(BOOTSTRAP_EVENT, context), { error: 'an operator key already exists; create more with POST /v1/keys' });
    assert.equal((await store.listSecrets('operator')).length, before);
  });
});
