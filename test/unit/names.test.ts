import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { z } from 'zod';
import {
  AbsolutePath,
  ClusterId,
  DevicePath,
  FilesystemUuid,
  HostName,
  InterfaceName,
  Ipv4Address,
  LogicalVolumeName,
  MountOption,
  NfsClientSpec,
  NfsExportOption,
  NodeId,
  VolumeGroupName,
} from '../../shared/names.ts';

/** Things that must never reach a command line, whatever the field. */
const HOSTILE = [
  '; rm -rf /',
  '$(reboot)',
  '`reboot`',
  'a\nb',
  'a\rb',
  'a\0b',
  'a b',
  'a\tb',
  '-o',
  '--config=x',
  '-rf',
  'a|b',
  'a&&b',
  'a>b',
  "a'b",
  'a"b',
  '',
];

const cases: [string, z.ZodType, string[], string[]][] = [
  ['ClusterId', ClusterId, ['nfs-prod', 'a', 'c1'], ['Nfs', 'a_b', '-a', 'a-', 'a'.repeat(64)]],
  ['NodeId', NodeId, ['node-a', 'storage01'], ['node_a', 'Node-A', 'a.b']],
  [
    'AbsolutePath',
    AbsolutePath,
    ['/srv/nfs', '/srv/nfs/.nfs-ha/state', '/'],
    ['srv/nfs', '/srv/../etc', '/srv/./x', '/srv//x', '/srv/', '/srv/-o', '/srv/a b', '/srv/a;b'],
  ],
  [
    'DevicePath',
    DevicePath,
    ['/dev/disk/by-id/wwn-0x6001405a1b2c3d4e', '/dev/mapper/mpatha', '/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-iqn.2003-01.org.lab:t-lun-0'],
    ['/dev/sdb', '/dev/disk/by-id/../../sda', '/dev/mapper/x/y', '/etc/passwd', '/dev/disk/by-id/'],
  ],
  ['VolumeGroupName', VolumeGroupName, ['vg_nfs', 'vg0', 'vg.data+1'], ['-vg', 'vg nfs', '..', 'snapshot1', 'vg/x']],
  ['LogicalVolumeName', LogicalVolumeName, ['lv_export', 'data'], ['lv_tmeta', 'a_rimage_1', '-lv']],
  [
    'FilesystemUuid',
    FilesystemUuid,
    ['3f1c2b7e-9a4d-4e8b-b6f2-1c0d9e8a7b65'],
    ['3F1C2B7E-9A4D-4E8B-B6F2-1C0D9E8A7B65', '3f1c2b7e', 'UUID=3f1c2b7e-9a4d-4e8b-b6f2-1c0d9e8a7b65'],
  ],
  ['InterfaceName', InterfaceName, ['eth0', 'ens3', 'bond0.100', 'br-lab'], ['-eth0', '.eth0', 'eth0/x', 'a'.repeat(16)]],
  ['Ipv4Address', Ipv4Address, ['10.88.0.100', '192.168.1.1', '0.0.0.0'], ['10.88.0.256', '010.88.0.1', '10.88.0', '::1', '10.88.0.1/24']],
  ['HostName', HostName, ['10.88.0.1', 'node-a.lab.example', 'node-a'], ['node_a', '-node', 'a..b']],
  [
    'NfsClientSpec',
    NfsClientSpec,
    ['*', '10.88.0.0/24', '10.88.0.10', 'client.lab', '*.lab', 'node?.lab', '@trusted', 'fd00::/64', '2001:db8::1'],
    ['(rw)', '-o', '10.0.0.0/24(rw)', '300.88.0.0/24', '10.88.0.0/33', '10.88.0', 'fd00::/129', 'gg::1', 'a..b', '-host'],
  ],
  [
    'NfsExportOption',
    NfsExportOption,
    ['rw', 'no_subtree_check', 'sec=sys', 'sec=krb5p:sys', 'anonuid=65534', 'async', 'no_root_squash'],
    ['fsid=1', 'rw,sync', 'rw sync', '-o', 'sycn', 'rw=1', 'anonuid=x', 'sec=ntlm', 'anonuid'],
  ],
  ['MountOption', MountOption, ['noatime', 'logbufs=8', 'data=ordered'], ['noatime,nodev', 'x=a b', '-o']],
];

describe('validated names reject injection attempts', () => {
  for (const [name, schema, good, bad] of cases) {
    it(`${name}: accepts ${good.length} valid values, rejects hostile and malformed ones`, () => {
      for (const v of good) assert.equal(schema.safeParse(v).success, true, `${name} should accept ${JSON.stringify(v)}`);
      for (const v of [...HOSTILE, ...bad]) assert.equal(schema.safeParse(v).success, false, `${name} must reject ${JSON.stringify(v)}`);
      // Metacharacters smuggled after a valid value are refused too.
      for (const v of HOSTILE.filter((h) => /[^A-Za-z0-9=-]/.test(h))) {
        const smuggled = `${good[0]}${v}`;
        assert.equal(schema.safeParse(smuggled).success, false, `${name} must reject ${JSON.stringify(smuggled)}`);
      }
      for (const v of [42, null, undefined, {}, ['x']]) assert.equal(schema.safeParse(v).success, false, `${name} must reject ${JSON.stringify(v)}`);
    });
  }
});
