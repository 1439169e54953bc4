/**
 * The control plane as a plain Node server: `npm start`. With no store configured it runs on the
 * embedded DynamoDB-protocol store, with its data in ./data (NFSHA_DATA_DIR).
 */
import { serve } from '@hono/node-server';
import { createApp } from './app.ts';
import { monotonicWallClock } from './clock.ts';
import { ConfigError, loadConfig } from './config.ts';
import { createLogger } from './log.ts';
import { DataDirInUseError } from './store/embedded.ts';
import { openStore } from './store/open.ts';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const log = createLogger(config.logLevel);
  const opened = await openStore(config.store);
  const app = createApp({ store: opened.store, clock: monotonicWallClock(), log });

  const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, (info) => {
    log.info({ port: info.port, host: config.host, store: opened.description }, `nfs-ha control plane listening on http://${config.host}:${info.port} (store: ${opened.description})`);
  });
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
