/**
 * The control plane as a plain Node server: `npm start`. With no store configured it runs on the
 * embedded DynamoDB-protocol store, with its data in ./data (NFSHA_DATA_DIR).
 */
import { writeFile, mkdir } from 'node:fs/promises';
import type { Server } from 'node:http';
import { join, resolve } from 'node:path';
import { serve } from '@hono/node-server';
import { createApp } from './app.ts';
import { Arbiter } from './arbiter.ts';
import { Credentials } from './auth.ts';
import { monotonicWallClock } from './clock.ts';
import { ConfigError, loadConfig } from './config.ts';
import { attachEventStream } from './event-stream.ts';
import { createLogger } from './log.ts';
import { ControlPlaneMetrics } from './metrics.ts';
import { BackupError, DataDirInUseError, restoreEmbedded } from './store/embedded.ts';
import { openStore } from './store/open.ts';
import { sweep } from './sweep.ts';
import { DeliveryLoop, WebhookDeliverer } from './webhooks.ts';
import { AddressSet } from './limits.ts';

/** The file the first admin key (or a recovered one) is written to, in the data directory. */
export const ADMIN_KEY_FILE = 'initial-admin-key';

/**
 * Keeps a new admin key where only this user can read it (as Jenkins keeps its initial admin
 * password), and tells where; the key itself goes to the terminal only, never to a log.
 */
async function handOver(key: string, dataDir: string, log: ReturnType<typeof createLogger>, what: string): Promise<void> {
  const dir = resolve(dataDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, ADMIN_KEY_FILE);
  await writeFile(file, `${key}\n`, { mode: 0o600 });
  log.warn({ file }, `${what}: the admin API key is in ${file} (mode 0600); store it elsewhere, then delete the file`);
  if (process.stderr.isTTY) process.stderr.write(`\nnfs-ha: ${what}; the admin API key is:\n\n  ${key}\n\nIt is also in ${file}.\n\n`);
}

/** The value after `flag` on the command line (`npm start -- --restore FILE`). */
function flagValue(flag: string): string | undefined {
  const i = process.argv.indexOf(flag);
  if (i < 0) return undefined;
  const value = process.argv[i + 1];
  if (value === undefined || value.startsWith('--')) throw new ConfigError(`${flag} needs a value`);
  return value;
}

/** How often the Node server sweeps (the deployment's schedule does it every minute on Lambda). */
const SWEEP_INTERVAL_MS = 15_000;

async function main(): Promise<void> {
  // Whatever this process writes (the embedded store's files, the admin key file) is its user's alone.
  process.umask(0o077);
  const config = loadConfig(process.env);
  const log = createLogger(config.logLevel);
  const dataDir = config.store.kind === 'embedded' ? config.store.dataDir : (process.env.NFSHA_DATA_DIR ?? './data');
  const restoreFrom = flagValue('--restore');
  if (restoreFrom !== undefined) {
    // Before the store opens: the data directory's lock refuses this while a control plane runs on it.
    if (config.store.kind !== 'embedded') throw new ConfigError('--restore is for the embedded store; DynamoDB restores with point-in-time recovery (README, "Backup and restore")');
    const r = await restoreEmbedded(dataDir, restoreFrom);
    log.warn(
      { from: restoreFrom, takenAt: r.takenAt, entries: r.entries, keptAside: r.keptAside },
      `restored ${r.entries} entries from ${restoreFrom} (taken ${r.takenAt})${r.keptAside ? `; the store it replaced is kept in ${r.keptAside}` : ''}. ` +
        'Agents report the epochs the backup lacks and the arbiter moves past them on their first heartbeats; revoke again any credential revoked since the backup, and re-enrol nodes enrolled since',
    );
    // Then it starts on the restored store, as on any start (one command, the shortest outage).
  }
  const opened = await openStore(config.store, { eventRetentionMs: config.eventRetentionMs });
  const clock = monotonicWallClock();
  const credentials = new Credentials(opened.store, clock);
  if (process.argv.includes('--recover-admin-key')) {
    // Local recovery for whoever holds the data directory (the server must be stopped: it holds the lock).
    await handOver(await credentials.recoveryAdmin(), dataDir, log, 'recovery');
    await opened.close();
    return;
  }
  const metrics = new ControlPlaneMetrics();
  const deliverer = new WebhookDeliverer(opened.store, clock, log, { allow: new AddressSet(config.app.webhookAllow), metrics });
  const deliveries = new DeliveryLoop(deliverer, log);
  const arbiter = new Arbiter(opened.leaseStore, clock, log, { onDeliveries: () => deliveries.kick(), metrics });
  const adminKey = await credentials.bootstrapAdmin();
  if (adminKey) await handOver(adminKey, dataDir, log, 'first start on an empty store');
  const backups = opened.backup && { dir: join(resolve(dataDir), 'backups'), take: opened.backup };
  const app = createApp({ store: opened.store, clock, log, arbiter, credentials, deliverer, options: config.app, backups, metrics });
  // The embedded store has no TTL: the sweep prunes events past their retention.
  const retention = config.store.kind === 'embedded' ? config.eventRetentionMs : null;
  const sweeper = setInterval(
    () =>
      void sweep({ store: opened.store, arbiter, deliverer, clock, log, pruneEventsOlderThanMs: retention }).catch((err: Error) =>
        log.warn({ err: err.message }, 'sweep failed'),
      ),
    SWEEP_INTERVAL_MS,
  );
  sweeper.unref();
  deliveries.start();

  const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, (info) => {
    log.info(
      { port: info.port, host: config.host, store: opened.description },
      `nfs-ha control plane listening on http://${config.host}:${info.port} (store: ${opened.description})`,
    );
  });
  const events = attachEventStream(server as Server, { store: opened.store, credentials, log, trustedProxies: new AddressSet(config.app.trustedProxies) });
  server.on('error', async (err) => {
    log.fatal({ err: err.message }, `cannot listen on ${config.host}:${config.port}: ${err.message}`);
    await opened.close();
    process.exit(1);
  });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    clearInterval(sweeper);
    deliveries.stop();
    await events.close();
    server.close();
    await opened.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((err: unknown) => {
  // Operator mistakes get one clear line, not a stack trace.
  if (err instanceof ConfigError || err instanceof DataDirInUseError || err instanceof BackupError) {
    console.error(`nfs-ha: ${err.message}`);
    process.exit(2);
  }
  console.error(err);
  process.exit(1);
});
