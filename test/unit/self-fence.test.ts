/**
 * The watchdog's magic close: the driver stops the timer on close only when the last write before
 * it held 'V'. Here the device is a plain file, which records every write in the order it landed.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { WatchdogSelfFence } from '../../agent/self-fence.ts';

const dir = await mkdtemp(join(tmpdir(), 'nfs-ha-watchdog-'));
after(() => rm(dir, { recursive: true, force: true }));
const log = pino({ level: 'silent' });

describe('watchdog self-fence', () => {
  it('a demotion disarms with the magic close last, whatever pets are still in flight', async () => {
    for (let round = 0; round < 200; round++) {
      const device = join(dir, `watchdog-${round}`);
      const w = new WatchdogSelfFence(device, log);
      await w.arm();
      // Renewals keep petting while the demotion ends: nothing is awaited, as in the agent.
      const inFlight = [w.pet(), w.pet(), w.disarm(), w.pet(), w.pet()];
      await Promise.all(inFlight);
      const written = await readFile(device, 'latin1');
      assert.equal(written.at(-1), 'V', `round ${round}: the last write before the close was ${JSON.stringify(written.at(-1))}`);
      assert.equal(written, '\0\0V', `round ${round}: pets after the disarm reach nothing`);
    }
  });

  it('arms again after a disarm, and a pet before any arm is harmless', async () => {
    const device = join(dir, 'watchdog-again');
    const w = new WatchdogSelfFence(device, log);
    await w.pet();
    await w.arm();
    await w.disarm();
    await w.arm();
    await w.pet();
    await w.disarm();
    assert.equal(await readFile(device, 'latin1'), '\0V');
  });
});
