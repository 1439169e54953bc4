/**
 * The embedded store: dynalite — a DynamoDB-protocol server on LevelDB — started in this process
 * (in a worker thread) with its data on disk. The control plane talks to it through the same
 * AWS SDK adapter it uses for DynamoDB, over loopback.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chmod, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Level } from 'level';

export class DataDirInUseError extends Error {
  override name = 'DataDirInUseError';
}

export interface EmbeddedDynamo {
  endpoint: string;
  /** The credentials every request must be signed with: generated for this start, known to this process only. */
  credentials: { accessKeyId: string; secretAccessKey: string };
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
      throw new DataDirInUseError(`data directory ${dataDir} is in use by another nfs-ha control plane; stop it, or point NFSHA_DATA_DIR at another directory`);
    }
    throw err;
  }
  return lock;
}

export async function startEmbeddedDynamo(dataDir: string): Promise<EmbeddedDynamo> {
  const dir = resolve(dataDir);
  // The data directory holds every credential's hash and the lease: only this user may enter it.
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const lock = await lockDataDir(dir);
  const credentials = { accessKeyId: `nfsha${randomBytes(16).toString('hex')}`, secretAccessKey: randomBytes(24).toString('base64url') };
  const worker = new Worker(new URL('./embedded-worker.mjs', import.meta.url), {
    workerData: { path: join(dir, 'dynamodb'), accessKeyId: credentials.accessKeyId },
  });
  const [ready] = (await Promise.race([once(worker, 'message'), once(worker, 'error')])) as [{ port?: number; error?: string } | Error];
  if (ready instanceof Error || ready.error !== undefined || ready.port === undefined) {
    await worker.terminate();
    await lock.close();
    throw new Error(`embedded store did not start: ${ready instanceof Error ? ready.message : ready.error}`);
  }
  return {
    endpoint: `http://127.0.0.1:${ready.port}`,
    credentials,
    dataDir: dir,
    async close() {
      const exited = once(worker, 'exit');
      worker.postMessage('close');
      await exited;
      await lock.close();
    },
  };
}
