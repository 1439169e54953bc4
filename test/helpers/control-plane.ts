/** Test harness: the real app on a real dynalite (on-disk, in a temp dir), with a manual clock. */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createApp } from '../../control-plane/app.ts';
import { attachEventStream } from '../../control-plane/event-stream.ts';
import type { InstallAssets } from '../../control-plane/install.ts';
import { Credentials } from '../../control-plane/auth.ts';
import type { Clock } from '../../control-plane/clock.ts';
import type { AppOptions } from '../../control-plane/config.ts';
import { AddressSet } from '../../control-plane/limits.ts';
import { createLogger } from '../../control-plane/log.ts';
import { ControlPlaneMetrics } from '../../control-plane/metrics.ts';
import { openStore } from '../../control-plane/store/open.ts';
import type { Store } from '../../control-plane/store/store.ts';
import { type DeliveryOptions, WebhookDeliverer } from '../../control-plane/webhooks.ts';
import type { ClusterSpecInput } from '../../shared/spec.ts';

export class ManualClock implements Clock {
  /** Monotonic time, moved only by advance(); step() moves the wall clock alone. */
  #elapsed = 0;
  constructor(public t = 1_800_000_000_000) {}
  now(): number {
    return this.t;
  }
  elapsed(): number {
    return this.#elapsed;
  }
  advance(ms: number): void {
    this.t += ms;
    this.#elapsed += ms;
  }
  /** An NTP step or a VM migration: the wall clock jumps, the monotonic one does not. */
  step(ms: number): void {
    this.t += ms;
  }
}

export const silentLog = createLogger('silent');

export async function tempDir(prefix = 'nfs-ha-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** The example spec of test/fixtures/cluster.json, optionally under another id. */
export async function exampleSpec(id = 'nfs-prod'): Promise<ClusterSpecInput> {
  const spec = JSON.parse(await readFile(new URL('../fixtures/cluster.json', import.meta.url), 'utf8')) as ClusterSpecInput;
  return { ...spec, id, nfs: { ...spec.nfs, serverScope: id } };
}

export interface Harness {
  store: Store;
  clock: ManualClock;
  dataDir: string;
  /** A second app on the same store: another control-plane instance (another Lambda). */
  instance(options?: Partial<AppOptions>): ReturnType<typeof createApp>;
  app: ReturnType<typeof createApp>;
  /**
   * A request to the app. The credential is chosen for the route (the node's agent credential on
   * node routes, the admin key elsewhere) unless `token` is given; null sends none.
   */
  call(method: string, path: string, body?: unknown, app?: ReturnType<typeof createApp>, token?: string | null): Promise<{ status: number; body: any }>;
  adminToken: string;
  agentToken(clusterId: string, node: string): Promise<string>;
  credentials: Credentials;
  /** Delivers webhooks when a test says so (nothing runs in the background). */
  deliverer: WebhookDeliverer;
  /** A consistent copy of the whole store, taken while it serves (the embedded store's online backup). */
  backup(path: string): Promise<{ entries: number }>;
  /** Creates cluster `id` from the example spec, held by node-a under epoch 1 with fencing confirmed. */
  clusterHeldByNodeA(id: string): Promise<void>;
  close(): Promise<void>;
}

export const LOOPBACK_ALLOWED = ['127.0.0.1'];

export async function startHarness(
  options: {
    dataDir?: string;
    keepData?: boolean;
    install?: InstallAssets;
    clockStart?: number;
    delivery?: DeliveryOptions;
    app?: Partial<AppOptions>;
  } = {},
): Promise<Harness> {
  const dataDir = options.dataDir ?? (await tempDir());
  const opened = await openStore({ kind: 'embedded', dataDir, tableName: 'nfs-ha' });
  const clock = new ManualClock(options.clockStart);
  // The tests' webhook receivers listen on loopback, which only an operator's allowlist opens.
  const metrics = new ControlPlaneMetrics();
  const deliverer = new WebhookDeliverer(opened.store, clock, silentLog, { allow: new AddressSet(LOOPBACK_ALLOWED), metrics, ...options.delivery });
  const instance = (app: Partial<AppOptions> = {}) =>
    createApp({
      store: opened.store,
      clock,
      log: silentLog,
      deliverer,
      metrics,
      options: { webhookAllow: LOOPBACK_ALLOWED, publicUrl: 'http://127.0.0.1:8080', agentUrl: 'http://127.0.0.1:8080', ...options.app, ...app },
      backups: { dir: join(dataDir, 'backups'), take: opened.backup! },
      ...(options.install && { install: options.install }),
    });
  const app = instance();
  const credentials = new Credentials(opened.store, clock);
  const adminToken = (await credentials.issue('operator', { role: 'admin', name: 'test' })).token;
  const agentTokens = new Map<string, Promise<string>>();
  const agentToken = (clusterId: string, node: string) => {
    const key = `${clusterId}/${node}`;
    if (!agentTokens.has(key))
      agentTokens.set(
        key,
        credentials.issue('agent', { clusterId, node }).then((r) => r.token),
      );
    return agentTokens.get(key)!;
  };
  const call: Harness['call'] = async (method, path, body, target = app, token) => {
    const node = /^\/v1\/clusters\/([^/]+)\/nodes\/([^/]+)\//.exec(path);
    const credential = token === undefined ? (node ? await agentToken(node[1]!, node[2]!) : adminToken) : token;
    const res = await target.request(path, {
      method,
      headers: {
        ...(body !== undefined && { 'content-type': 'application/json' }),
        ...(credential !== null && { authorization: `Bearer ${credential}` }),
      },
      ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
  return {
    store: opened.store,
    clock,
    dataDir,
    app,
    instance,
    call,
    adminToken,
    agentToken,
    credentials,
    deliverer,
    backup: (path) => opened.backup!(path),
    async clusterHeldByNodeA(id) {
      for (const [path, body] of [
        ['/v1/clusters', await exampleSpec(id)],
        [`/v1/clusters/${id}/nodes/node-a/heartbeat`, hb('passive')],
        [`/v1/clusters/${id}/nodes/node-a/fencing`, { epoch: 1, keys: [] }],
      ] as const) {
        const r = await call('POST', path, body);
        if (r.status >= 300) throw new Error(`setting up ${id}: POST ${path} → ${r.status} ${JSON.stringify(r.body)}`);
      }
    },
    async close() {
      await opened.close();
      if (!options.keepData) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Heartbeat body shorthand. */
export function hb(role: 'passive' | 'activating' | 'active' | 'demoting', epoch = 0, peerReachable?: boolean) {
  return { role, epoch, ...(peerReachable !== undefined && { peer: { reachable: peerReachable } }) };
}

/** The harness's app served over HTTP on loopback, for clients that speak HTTP (agents, the CLI). */
export async function serveHarness(
  h: Harness,
  options: { eventStreamPollMs?: number; publicUrl?: boolean } = {},
): Promise<{ url: string; close(): Promise<void> }> {
  const { serve } = await import('@hono/node-server');
  // With publicUrl, the app is made once the port is known, with its own URL as the public one.
  let app = h.app;
  const server = serve({ fetch: (req, env) => app.fetch(req, env), port: 0, hostname: '127.0.0.1' }) as Server;
  const events = attachEventStream(server, { store: h.store, credentials: h.credentials, log: silentLog, pollMs: options.eventStreamPollMs ?? 50 });
  await new Promise((ok) => server.once('listening', ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  if (options.publicUrl) app = h.instance({ publicUrl: url, agentUrl: url });
  return {
    url,
    close: async () => {
      server.close();
      await events.close();
    },
  };
}

/** Runs a program to completion: exit code, stdout and stderr, whatever the outcome. */
export async function runCommand(argv: [string, ...string[]], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const [file, ...args] = argv;
  try {
    const { stdout, stderr } = await promisify(execFile)(file, args, options);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
