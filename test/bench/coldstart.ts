/**
 * `npm run bench -- coldstart`: the Lambda bundle's cold start — a fresh Node process loads
 * dist-style bundle and answers its first request (an operator's listing, against dynalite) — against a
 * bare `node` process start measured in the same run. Reports medians of several runs.
 */
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { Credentials } from '../../control-plane/auth.ts';
import { systemClock } from '../../control-plane/clock.ts';
import { dynamoClient } from '../../control-plane/store/client.ts';
import { DynamoStore, ensureTable } from '../../control-plane/store/dynamodb.ts';
import { startEmbeddedDynamo } from '../../control-plane/store/embedded.ts';
import { buildBundle } from '../../infra/build.ts';
import { tempDir } from '../helpers/control-plane.ts';

const run = promisify(execFile);
const RUNS = 7;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function coldStartBench(): Promise<void> {
  const dir = await tempDir('nfs-ha-coldstart-');
  const bundle = await buildBundle('lambda', dir);
  const dynamo = await startEmbeddedDynamo(`${dir}/data`);
  const sdk = dynamoClient({ endpoint: dynamo.endpoint, local: dynamo.credentials });
  await ensureTable(sdk, 'nfs-ha');
  // The first request is an operator's, with a read-only key, as every request but /healthz is.
  const { token } = await new Credentials(new DynamoStore({ client: sdk, tableName: 'nfs-ha' }), systemClock).issue('operator', { role: 'read-only', name: 'bench' });
  sdk.destroy();
  const env = {
    ...process.env,
    AWS_LAMBDA_FUNCTION_NAME: 'bench',
    NFSHA_TABLE: 'nfs-ha',
    DYNAMODB_ENDPOINT: dynamo.endpoint,
    AWS_REGION: 'local',
    AWS_ACCESS_KEY_ID: dynamo.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: dynamo.credentials.secretAccessKey,
    LOG_LEVEL: 'silent',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
  // In the child: load the bundle, then serve one request as a Function URL event.
  const child = `
    const t0 = performance.now();
    const { handler } = await import(${JSON.stringify(pathToFileURL(bundle.path).href)});
    const loaded = performance.now();
    const res = await handler({ version: '2.0', rawPath: '/v1/clusters', rawQueryString: '', headers: { host: 'x.lambda-url.eu-west-1.on.aws', authorization: 'Bearer ${token}' },
      requestContext: { domainName: 'x.lambda-url.eu-west-1.on.aws', http: { method: 'GET', path: '/v1/clusters', protocol: 'HTTP/1.1', sourceIp: '127.0.0.1' } }, isBase64Encoded: false }, {});
    if (res.statusCode !== 200) throw new Error('first request: ' + res.statusCode + ' ' + res.body);
    process.stdout.write(JSON.stringify({ loadMs: loaded - t0, firstRequestMs: performance.now() - loaded }));
  `;
  const bare: number[] = [];
  const whole: number[] = [];
  const load: number[] = [];
  const first: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    let t = performance.now();
    await run(process.execPath, ['--input-type=module', '-e', 'process.stdout.write("{}")'], { env });
    bare.push(performance.now() - t);
    t = performance.now();
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', child], { env });
    whole.push(performance.now() - t);
    const r = JSON.parse(stdout) as { loadMs: number; firstRequestMs: number };
    load.push(r.loadMs);
    first.push(r.firstRequestMs);
  }
  console.log(`cold start of the Lambda bundle (${(bundle.bytes / 1024).toFixed(0)} KiB), median of ${RUNS} fresh processes:`);
  console.log(`  bare node process (baseline)       ${median(bare).toFixed(0).padStart(6)} ms`);
  console.log(
    `  process loading the bundle + 1 req ${median(whole).toFixed(0).padStart(6)} ms   (+${(median(whole) - median(bare)).toFixed(0)} ms over bare node)`,
  );
  console.log(`    of which: load ${median(load).toFixed(0)} ms, first request ${median(first).toFixed(0)} ms (SDK client set-up, first DynamoDB call)`);
  await dynamo.close();
  await rm(dir, { recursive: true, force: true });
}
