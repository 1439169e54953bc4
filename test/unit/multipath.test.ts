import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isMultipathName, multipathProblems, parseMaps, queuesForever, reservationKeyLines, sysfsPaths } from '../../agent/resources/multipath.ts';
import { fixture, ScriptedExecutor } from '../helpers/fixtures.ts';
import { hostFromListing } from '../helpers/sysfs.ts';

describe('dm-multipath (real output from the lab: LIO LUN, two iSCSI target ports, multipath-tools 0.9.4)', () => {
  it('names: a map by /dev/mapper/ or by its dm-uuid link; a disk by-id is not one', () => {
    assert.equal(isMultipathName('/dev/mapper/360014051e90c20474cc48cf91d83c194'), true);
    assert.equal(isMultipathName('/dev/disk/by-id/dm-uuid-mpath-360014051e90c20474cc48cf91d83c194'), true);
    assert.equal(isMultipathName('/dev/disk/by-id/wwn-0x6001405a1b2c3d4e5f60718293a4b5c6'), false);
  });

  it('finds the paths of a map in sysfs, with their state', async () => {
    const { root, device } = hostFromListing('sysfs-multipath--two-paths');
    const map = await sysfsPaths(root)(device);
    assert.equal(map.name, '360014051e90c20474cc48cf91d83c194');
    assert.deepEqual(map.paths, [
      { name: 'sda', device: '/dev/sda', state: 'running', live: true },
      { name: 'sdb', device: '/dev/sdb', state: 'running', live: true },
    ]);
  });

  it('a cut path is not live: its SCSI device is transport-offline (captured with one path cut)', async () => {
    const { root, device } = hostFromListing('sysfs-multipath--one-path-cut');
    const { paths } = await sysfsPaths(root)(device);
    assert.deepEqual(
      paths.map((p) => [p.name, p.state, p.live]),
      [
        ['sda', 'running', true],
        ['sdb', 'transport-offline', false],
      ],
    );
    assert.equal(parseMaps(fixture('multipathd-show-maps--one-path-cut').stdout)[0]!.paths, 1);
  });

  it('refuses a device-mapper device that is not a multipath map (an LVM volume under /dev/mapper)', async () => {
    const { root, device } = hostFromListing('sysfs-multipath--two-paths', (p, v) => (p.endsWith('/dm/uuid') ? 'LVM-abc' : v));
    await assert.rejects(sysfsPaths(root)(device), /is not a dm-multipath map/);
    await assert.rejects(sysfsPaths(root)('/dev/mapper/missing'), /no such device/);
  });

  it('reads multipathd maps: queueing, path count, features', () => {
    const [map] = parseMaps(fixture('multipathd-show-maps--two-paths').stdout);
    assert.deepEqual(map, { name: '360014051e90c20474cc48cf91d83c194', wwid: '360014051e90c20474cc48cf91d83c194', queueing: '3 chk', paths: 2, features: '1 queue_if_no_path' });
    // no_path_retry 3: queue_if_no_path is on while checks remain, then off — bounded.
    assert.equal(queuesForever(map!), false);
    assert.equal(queuesForever({ ...map!, queueing: 'on' }), true);
    assert.equal(queuesForever({ ...map!, queueing: '-' }), true);
    assert.equal(queuesForever({ ...map!, queueing: '-', features: '0' }), false);
    assert.throws(() => parseMaps('garbage'), /unrecognised/);
  });

  it('finds reservation_key settings, not comments', () => {
    assert.deepEqual(reservationKeyLines('defaults {\n\treservation_key file\n}\n# reservation_key 0x1\n'), ['reservation_key file']);
    assert.deepEqual(reservationKeyLines('defaults {\n\tuser_friendly_names no\n}\n'), []);
  });

  it('preflight: names reservation_key and endless queueing, with the fix; the lab set-up passes', async () => {
    const { root, device } = hostFromListing('sysfs-multipath--two-paths');
    const map = await sysfsPaths(root)(device);
    const ok = new ScriptedExecutor().on(/^multipathd show maps/, 'multipathd-show-maps--two-paths');
    mkdirSync(join(root, 'etc'), { recursive: true });
    writeFileSync(join(root, 'etc/multipath.conf'), 'defaults {\n\tuser_friendly_names no\n}\noverrides {\n\tno_path_retry 3\n}\n');
    assert.deepEqual(await multipathProblems(ok, device, map, root), []);
    assert.deepEqual(ok.lines(), ['multipathd show maps raw format %n %w %Q %N %f']);

    mkdirSync(join(root, 'etc/multipath/conf.d'), { recursive: true });
    writeFileSync(join(root, 'etc/multipath/conf.d/keys.conf'), 'defaults {\n\treservation_key file\n}\n');
    const queueing = new ScriptedExecutor().on(/^multipathd show maps/, {
      exitCode: 0,
      stdout: fixture('multipathd-show-maps--two-paths').stdout.replace(' 3 chk ', ' on '),
      stderr: '',
    });
    const problems = await multipathProblems(queueing, device, map, root);
    assert.equal(problems.length, 2);
    assert.match(problems[0]!, /^\/etc\/multipath\/conf\.d\/keys\.conf sets "reservation_key file".*Remove it/);
    assert.match(problems[1]!, /queues for ever.*Set no_path_retry/);

    const down = new ScriptedExecutor().on(/^multipathd show maps/, { exitCode: 1, stdout: '', stderr: 'error -104 receiving packet\n' });
    assert.match((await multipathProblems(down, device, map, root)).at(-1)!, /cannot ask multipathd/);
  });
});
