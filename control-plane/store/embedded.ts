/**
 * The embedded store: dynalite — a DynamoDB-protocol server on LevelDB — started in this process
 * with its data on disk. The control plane talks to it through the same AWS SDK adapter it uses
 * for DynamoDB, over loopback.
 */
import { mkdir } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import dynalite from 'dynalite';
import { Level } from 'level';

export class DataDirInUseError extends Error {
  override name = 'DataDirInUseError';
}

export interface EmbeddedDynamo {
  endpoint: string;
  dataDir: string;
  close(): Promise<void>;
}

/**
 * Holds the data directory for the life of the process. Node has no flock(2), but LevelDB locks
 * its LOCK file with fcntl: the kernel releases it when the process dies, so a crash never
 * leaves a stale lock behind, and a second process gets a clear refusal instead of dynalite's
 * crash on a half-opened database.
 */
async function lockDataDir(dataDir: string): Promise<Level> {
  const lock = new Level(join(dataDir, 'lock'));
  try {
    await lock.open();
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    if (cause?.code === 'LEVEL_LOCKED') {
      throw new DataDirInUseError(
        `data directory ${dataDir} is in use by another nfs-ha control plane; stop it, or point NFSHA_DATA_DIR at another directory`,
      );
    }
    throw err;
  }
  return lock;
}

export async function startEmbeddedDynamo(dataDir: string): Promise<EmbeddedDynamo> {
  const dir = resolve(dataDir);
  await mkdir(dir, { recursive: true });
  const lock = await lockDataDir(dir);
  const server: Server = dynalite({ path: join(dir, 'dynamodb'), createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => ok());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    dataDir: dir,
    async close() {
      await new Promise<void>((ok) => server.close(() => ok()));
      await lock.close();
    },
  };
}
