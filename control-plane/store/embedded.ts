/**
 * The embedded store: dynalite — a DynamoDB-protocol server on LevelDB — started in this process
 * (in a worker thread) with its data on disk. The control plane talks to it through the same
 * AWS SDK adapter it uses for DynamoDB, over loopback.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import { chmod, mkdir, readdir, rename } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Worker } from 'node:worker_threads';
import { Level } from 'level';

/** The first line of a backup file names its format. */
export const BACKUP_FORMAT = 'nfs-ha-embedded-store/1';

export class BackupError extends Error {
  override name = 'BackupError';
}

export class DataDirInUseError extends Error {
  override name = 'DataDirInUseError';
}

export interface EmbeddedDynamo {
  endpoint: string;
  /** The credentials every request must be signed with: generated for this start, known to this process only. */
  credentials: { accessKeyId: string; secretAccessKey: string };
  dataDir: string;
  /** Writes a consistent copy of the whole store to `path` (a new file), while it keeps serving. */
  backup(path: string): Promise<{ entries: number }>;
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
    workerData: { path: join(dir, 'dynamodb'), accessKeyId: credentials.accessKeyId, backupFormat: BACKUP_FORMAT },
  });
  const [ready] = (await Promise.race([once(worker, 'message'), once(worker, 'error')])) as [{ port?: number; error?: string } | Error];
  if (ready instanceof Error || ready.error !== undefined || ready.port === undefined) {
    await worker.terminate();
    await lock.close();
    throw new Error(`embedded store did not start: ${ready instanceof Error ? ready.message : ready.error}`);
  }
  let backups = 0;
  return {
    endpoint: `http://127.0.0.1:${ready.port}`,
    credentials,
    dataDir: dir,
    async backup(path) {
      const id = ++backups;
      const answer = new Promise<{ entries?: number; error?: string }>((done) => {
        const listen = (msg: { backup?: { id: number; entries?: number; error?: string } }) => {
          if (msg.backup?.id !== id) return;
          worker.off('message', listen);
          done(msg.backup);
        };
        worker.on('message', listen);
      });
      worker.postMessage({ backup: { id, path } });
      const r = await answer;
      if (r.error !== undefined || r.entries === undefined) throw new BackupError(`backup to ${path} failed: ${r.error}`);
      return { entries: r.entries };
    },
    async close() {
      const exited = once(worker, 'exit');
      worker.postMessage('close');
      await exited;
      await lock.close();
    },
  };
}

/**
 * Restores a backup into the data directory of a stopped control plane. The store it replaces
 * is kept beside it (`dynamodb.before-restore-<time>`), never deleted. The file is checked whole
 * first — its format line, and a trailer that counts its entries — so a cut-off copy is refused
 * before anything changes.
 */
export async function restoreEmbedded(dataDir: string, file: string): Promise<{ entries: number; takenAt: string; keptAside: string | null }> {
  const dir = resolve(dataDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const lock = await lockDataDir(dir);
  try {
    const entries: [string, string][] = [];
    let header = null as { format?: string; takenAt?: string } | null;
    let trailer = null as { end?: number } | null;
    const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        if (line === '') continue;
        if (trailer) throw new BackupError(`${file}: data after the end marker`);
        const parsed = JSON.parse(line) as unknown;
        if (header === null) {
          const first = parsed as { format?: string; takenAt?: string } | null;
          header = first;
          if (first?.format !== BACKUP_FORMAT) throw new BackupError(`${file} is not an nfs-ha store backup (its first line does not name ${BACKUP_FORMAT})`);
        } else if (Array.isArray(parsed) && parsed.length === 2 && typeof parsed[0] === 'string' && typeof parsed[1] === 'string') {
          entries.push([parsed[0], parsed[1]]);
        } else {
          trailer = parsed as typeof trailer;
        }
      }
    } catch (err) {
      if (err instanceof BackupError) throw err;
      throw new BackupError(`${file} cannot be read as a backup: ${(err as Error).message}`);
    }
    if (!header) throw new BackupError(`${file} is empty`);
    if (trailer?.end !== entries.length) throw new BackupError(`${file} is incomplete: its end marker is missing or counts other entries than it holds`);
    const target = join(dir, 'dynamodb');
    let keptAside: string | null = null;
    if ((await readdir(target).catch(() => [])).length > 0) {
      keptAside = join(dir, `dynamodb.before-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`);
      await rename(target, keptAside);
    }
    const db = new Level<string, string>(target, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    try {
      for (let i = 0; i < entries.length; i += 500) {
        await db.batch(entries.slice(i, i + 500).map(([key, value]) => ({ type: 'put' as const, key, value })));
      }
    } finally {
      await db.close();
    }
    return { entries: entries.length, takenAt: header.takenAt ?? 'unknown', keptAside };
  } finally {
    await lock.close();
  }
}
