/**
 * The node's memory of epochs, on its own disk: the highest epoch it has seen granted to anyone,
 * and the highest it has acted under. The arbiter's store can go back (a restore, a rolled-back
 * VM, a re-created cluster); this file does not, so an epoch this node has seen or left is never
 * taken again as a new grant, and every heartbeat tells the arbiter what it forgot.
 *
 * Written before acting: a new value is on disk (written to a temporary file, fsync'd, renamed
 * over the old one, and the directory fsync'd) before the agent fences, activates, or decides
 * on what it has seen. It changes only when an epoch changes, so it costs one small write per
 * failover.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';

export interface Epochs {
  /** The highest epoch this node has seen granted to anyone. */
  seen: number;
  /** The highest epoch this node has acted under (fenced for, or started resources under). */
  acted: number;
}

export interface EpochMemory {
  current(): Epochs;
  /** Raises either value (never lowers it); resolves once the new values are durable. */
  record(update: Partial<Epochs>): Promise<void>;
}

const EpochsSchema = z.object({ seen: z.number().int().nonnegative(), acted: z.number().int().nonnegative() }).strict();

export const EPOCHS_FILE = 'epochs.json';

export class EpochMemoryError extends Error {
  override name = 'EpochMemoryError';
}

export class FileEpochMemory implements EpochMemory {
  #epochs: Epochs;
  #writing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly dir: string,
    epochs: Epochs,
  ) {
    this.#epochs = epochs;
  }

  /**
   * Reads the memory from `dir` (created 0700 if missing: a node that never acted starts at 0).
   * A file that cannot be read or parsed is refused, never taken as 0: forgetting is what this
   * file exists to prevent. The operator moves it away only after reading the arbiter's status.
   */
  static async open(dir: string): Promise<FileEpochMemory> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, EPOCHS_FILE);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new FileEpochMemory(dir, { seen: 0, acted: 0 });
      throw new EpochMemoryError(`cannot read the epoch memory ${path}: ${(err as Error).message}`);
    }
    let parsed: Epochs;
    try {
      parsed = EpochsSchema.parse(JSON.parse(text));
    } catch (err) {
      throw new EpochMemoryError(
        `the epoch memory ${path} is damaged (${(err as Error).message.split('\n')[0]}): the agent will not start without it. ` +
          'Check the cluster with `nfs-ha status`, then move the file away to start this node with no memory',
      );
    }
    return new FileEpochMemory(dir, parsed);
  }

  current(): Epochs {
    return { ...this.#epochs };
  }

  record(update: Partial<Epochs>): Promise<void> {
    const run = this.#writing.then(() => this.#write(update));
    this.#writing = run.catch(() => {});
    return run;
  }

  async #write(update: Partial<Epochs>): Promise<void> {
    const next = { seen: Math.max(this.#epochs.seen, update.seen ?? 0), acted: Math.max(this.#epochs.acted, update.acted ?? 0) };
    if (next.seen === this.#epochs.seen && next.acted === this.#epochs.acted) return;
    const path = join(this.dir, EPOCHS_FILE);
    const tmp = `${path}.tmp`;
    const file = await open(tmp, 'w', 0o600);
    try {
      await file.writeFile(`${JSON.stringify(next)}\n`);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
    const dir = await open(this.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    this.#epochs = next;
  }
}
