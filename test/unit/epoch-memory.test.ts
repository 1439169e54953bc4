import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { EPOCHS_FILE, EpochMemoryError, FileEpochMemory } from '../../agent/epoch-memory.ts';
import { tempDir } from '../helpers/control-plane.ts';

describe('epoch memory (the agent state directory)', () => {
  it('starts at zero in a new directory (created 0700), only ever rises, and survives a restart', async () => {
    const dir = join(await tempDir(), 'state');
    const memory = await FileEpochMemory.open(dir);
    assert.deepEqual(memory.current(), { seen: 0, acted: 0 });
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    await memory.record({ seen: 4 });
    await memory.record({ acted: 3, seen: 2 });
    await memory.record({ seen: 1, acted: 1 });
    assert.deepEqual(memory.current(), { seen: 4, acted: 3 });
    assert.equal((await stat(join(dir, EPOCHS_FILE))).mode & 0o777, 0o600);
    assert.deepEqual((await FileEpochMemory.open(dir)).current(), { seen: 4, acted: 3 }, 'a new process reads what the last one wrote');
  });

  it('concurrent records all land, in order, and the file is always whole', async () => {
    const dir = await tempDir();
    const memory = await FileEpochMemory.open(dir);
    await Promise.all(Array.from({ length: 20 }, (_, i) => memory.record({ seen: i + 1, acted: i % 7 })));
    assert.deepEqual(memory.current(), { seen: 20, acted: 6 });
    assert.deepEqual(JSON.parse(await readFile(join(dir, EPOCHS_FILE), 'utf8')), { seen: 20, acted: 6 });
  });

  it('a damaged file is refused, never taken as zero', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, EPOCHS_FILE), '{"seen": 3, "act');
    await assert.rejects(FileEpochMemory.open(dir), (err: Error) => err instanceof EpochMemoryError && /is damaged .* will not start without it/.test(err.message));
    await writeFile(join(dir, EPOCHS_FILE), '{"seen": -1, "acted": 0}');
    await assert.rejects(FileEpochMemory.open(dir), EpochMemoryError);
  });
});
