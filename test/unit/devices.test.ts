import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { waitForDevices } from '../../agent/devices.ts';
import { capturedLog } from '../helpers/agent.ts';
import { tempDir } from '../helpers/control-plane.ts';

describe('the shared disks at boot', () => {
  it('present already: no wait, nothing logged', async () => {
    const dir = await tempDir('nfs-ha-devices-');
    await writeFile(join(dir, 'lun'), '');
    const { lines, log } = capturedLog();
    assert.deepEqual(await waitForDevices([join(dir, 'lun')], log), []);
    assert.deepEqual(lines, []);
  });

  it('waits for a disk that appears (a multipath map assembled after the agent started), saying what it waits for', async () => {
    const dir = await tempDir('nfs-ha-devices-');
    const lun = join(dir, 'lun');
    const { lines, log } = capturedLog();
    const started = performance.now();
    setTimeout(() => void writeFile(lun, ''), 600);
    assert.deepEqual(await waitForDevices([lun], log, 10_000), []);
    const waited = performance.now() - started;
    assert.ok(waited >= 550 && waited < 5_000, `waited ${waited} ms`);
    assert.equal(lines.length, 2);
    assert.match(lines[0]!.msg, new RegExp(`^waiting up to 10 s for the shared disk to appear: ${lun} \\(iSCSI login, multipath map\\)$`));
    assert.match(lines[1]!.msg, /^the shared disk appeared after \d+\.\d s$/);
  });

  it('gives up after its time, naming what is still missing (the preflight then refuses to run)', async () => {
    const dir = await tempDir('nfs-ha-devices-');
    await writeFile(join(dir, 'present'), '');
    const { lines, log } = capturedLog();
    const started = performance.now();
    assert.deepEqual(await waitForDevices([join(dir, 'present'), join(dir, 'absent')], log, 700), [join(dir, 'absent')]);
    assert.ok(performance.now() - started >= 700);
    assert.equal(lines.length, 1, 'no "appeared" line');
  });
});
