/**
 * The control plane as a plain Node server: `npm start`. With no store configured it runs on the
 * embedded DynamoDB-protocol store, with its data in ./data (NFSHA_DATA_DIR).
 */
import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import { createApp } from './app.ts';
import { Arbiter } from './arbiter.ts';
import { Credentials } from './auth.ts';
import { monotonicWallClock } from './clock.ts';
import { ConfigError, loadConfig } from './config.ts';
import { attachEventStream } from './event-stream.ts';
import { createLogger } from './log.ts';
import { DataDirInUseError } from './store/embedded.ts';
import { openStore } from './store/open.ts';
import { sweep } from './sweep.ts';
import { DeliveryLoop, WebhookDeliverer } from './webhooks.ts';

/** How often the Node server sweeps (the deployment's schedule does it every minute on Lambda). */
const SWEEP_INTERVAL_MS = 15_000;

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const log = createLogger(config.logLevel);
  const opened = await openStore(config.store);
  const clock = monotonicWallClock();
  const deliverer = new WebhookDeliverer(opened.store, clock, log);
  const deliveries = new DeliveryLoop(deliverer, log);
  const arbiter = new Arbiter(opened.store, clock, log, { onDeliveries: () => deliveries.kick() });
  const credentials = new Credentials(opened.store, clock);
  const adminKey = await credentials.bootstrapAdmin();
  if (adminKey) {
    // Shown this once, on the terminal, never in the JSON log; only its hash is stored.
    process.stderr.write(
      `\nnfs-ha: first start on an empty store; the admin API key is:\n\n  ${adminKey}\n\nStore it now (e.g. NFSHA_API_KEY); it will not be shown again.\n\n`,
    );
  }
  const app = createApp({ store: opened.store, clock, log, arbiter, credentials, deliverer });
  const sweeper = setInterval(
    () => void sweep({ store: opened.store, arbiter, deliverer, clock, log }).catch((err: Error) => log.warn({ err: err.message }, 'sweep failed')),
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
  const events = attachEventStream(server as Server, { store: opened.store, credentials, log });
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
  if (err instanceof ConfigError || err instanceof DataDirInUseError) {
    console.error(`nfs-ha: ${err.message}`);
    process.exit(2);
  }
  console.error(err);
  process.exit(1);
});
