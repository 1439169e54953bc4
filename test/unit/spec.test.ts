import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { type ClusterSpecInput, ClusterSpecSchema, nodeDevices, specDiff } from '../../shared/spec.ts';
import { TIMING_DEFAULTS } from '../../shared/timing.ts';
import { exampleSpec } from '../helpers/control-plane.ts';

let spec: ClusterSpecInput;
before(async () => {
  spec = await exampleSpec();
});

function rejects(mutate: (s: any) => void, path: string, fragment: RegExp) {
  const s = structuredClone(spec) as any;
  mutate(s);
  const r = ClusterSpecSchema.safeParse(s);
  assert.equal(r.success, false, 'expected the spec to be rejected');
  const hit = r.error!.issues.find((i) => i.path.join('.') === path && fragment.test(i.message));
  assert.ok(hit, `no issue at ${path} matching ${fragment}; got ${JSON.stringify(r.error!.issues.map((i) => [i.path.join('.'), i.message]))}`);
}

describe('cluster spec', () => {
  it('parses the example, filling in defaults', () => {
    const s = ClusterSpecSchema.parse(spec);
    assert.deepEqual(s.timing, { ...TIMING_DEFAULTS });
    assert.equal(s.policy.earlyFencing, true);
    assert.equal(s.nodes[0].peerPort, 7411);
    assert.deepEqual(s.nfs.exports[1]!.clients[0]!.options, ['rw', 'sync', 'no_subtree_check']);
    assert.equal(s.nfs.gracePeriodS, 15);
    assert.deepEqual(nodeDevices(s, 'node-b'), s.storage.devices);
  });

  it("uses a node's own device paths when given", () => {
    const s = structuredClone(spec) as any;
    s.nodes[1].devices = ['/dev/disk/by-path/ip-10.0.0.1:3260-iscsi-iqn.2003-01.org.lab:t-lun-0'];
    assert.deepEqual(nodeDevices(ClusterSpecSchema.parse(s), 'node-b'), s.nodes[1].devices);
  });

  it('refuses a system directory as the mount point (a typo must not mount over, or stop, what the node needs)', () => {
    for (const dir of ['/run', '/srv', '/var', '/home', '/root/.ssh', '/etc/nfs', '/usr/local/data', '/mnt']) {
      rejects(
        (s) => {
          s.storage.filesystem.mountPoint = dir;
          s.nfs.stateDir = `${dir}/.state`;
          s.nfs.exports = [{ path: `${dir}/export`, fsid: 1, clients: [{ host: '10.88.0.0/24' }] }];
        },
        'storage.filesystem.mountPoint',
        /system directory/,
      );
    }
    const fine = structuredClone(spec) as any;
    fine.storage.filesystem.mountPoint = '/export/data';
    fine.nfs.stateDir = '/export/data/.state';
    fine.nfs.exports = [{ path: '/export/data/x', fsid: 1, clients: [{ host: '10.88.0.0/24' }] }];
    assert.equal(ClusterSpecSchema.safeParse(fine).success, true);
  });

  it('checks export clients and options as exports(5) does, at validation rather than takeover', () => {
    rejects((s) => (s.nfs.exports[0].clients[0].host = '300.88.0.0/33'), 'nfs.exports.0.clients.0.host', /IPv4 or IPv6 address or network/);
    rejects(
      (s) => (s.nfs.exports[0].clients[0].options = ['rw', 'sycn']),
      'nfs.exports.0.clients.0.options.1',
      /"sycn" is not an exports\(5\) option \(did you mean "sync"\?\)/,
    );
  });

  it('takes async, no_root_squash and the client "*" only when the spec acknowledges them', () => {
    rejects(
      (s) => (s.nfs.exports[0].clients[0].options = ['rw', 'async']),
      'nfs.exports.0.clients.0.options',
      /a failover loses acknowledged writes.*add "async"/,
    );
    rejects((s) => (s.nfs.exports[0].clients[0].options = ['rw', 'sync', 'no_root_squash']), 'nfs.exports.0.clients.0.options', /add "no_root_squash"/);
    rejects((s) => (s.nfs.exports[0].clients[0].host = '*'), 'nfs.exports.0.clients.0.host', /any host .* add "any-host"/);
    const s = structuredClone(spec) as any;
    s.nfs.exports[0].clients[0] = { host: '*', options: ['rw', 'async', 'no_root_squash'], acknowledge: ['async', 'no_root_squash', 'any-host'] };
    assert.equal(ClusterSpecSchema.safeParse(s).success, true);
  });

  it('requires exactly two nodes with distinct ids and addresses', () => {
    rejects((s) => s.nodes.pop(), 'nodes', /.*/);
    rejects((s) => s.nodes.push({ ...s.nodes[0], id: 'node-c' }), 'nodes', /.*/);
    rejects((s) => (s.nodes[1].id = 'node-a'), 'nodes.1.id', /distinct ids/);
    rejects((s) => (s.nodes[1].address = '10.88.0.1'), 'nodes.1.address', /both nodes have address/);
  });

  it('requires a unique fixed fsid per export', () => {
    rejects((s) => (s.nfs.exports[1].fsid = 101), 'nfs.exports.1.fsid', /already used by export 0/);
    rejects((s) => delete s.nfs.exports[0].fsid, 'nfs.exports.0.fsid', /.*/);
    rejects((s) => (s.nfs.exports[0].fsid = 0), 'nfs.exports.0.fsid', /.*/);
    rejects((s) => s.nfs.exports[0].clients[0].options.push('fsid=7'), 'nfs.exports.0.clients.0.options.3', /fsid is set by the export/);
  });

  it('keeps exports and the NFS state on the shared filesystem', () => {
    rejects((s) => (s.nfs.exports[0].path = '/home/data'), 'nfs.exports.0.path', /not on the shared filesystem/);
    rejects((s) => (s.nfs.exports[1].path = '/srv/nfs/export1'), 'nfs.exports.1.path', /already exported/);
    rejects((s) => (s.nfs.stateDir = '/var/lib/nfs'), 'nfs.stateDir', /inside the shared filesystem/);
    rejects((s) => (s.nfs.exports[0].path = '/srv/nfs/.nfs-ha/state/v4recovery'), 'nfs.exports.0.path', /export the NFS state directory/);
    rejects((s) => (s.nfs.gracePeriodS = 10), 'nfs.gracePeriodS', /at least leaseTimeS/);
  });

  it('keeps the VIP distinct from the nodes and usable', () => {
    rejects((s) => (s.vip.address = '10.88.0.2'), 'vip.address', /node 1's own address/);
    rejects((s) => (s.vip.address = '10.88.0.255'), 'vip.address', /broadcast/);
    rejects((s) => (s.vip.prefix = 33), 'vip.prefix', /.*/);
  });

  it('refuses unknown fields (typos) and unsafe timing', () => {
    rejects((s) => (s.vip.adress = '10.88.0.5'), 'vip', /adress/);
    rejects((s) => (s.timing = { leaseTtlMs: 1000 }), 'timing.leaseTtlMs', /at least 3 × renewIntervalMs/);
  });

  it('refuses device paths that are not stable names', () => {
    rejects((s) => (s.storage.devices = ['/dev/sdb']), 'storage.devices.0', /stable name/);
    rejects((s) => (s.nodes[0].devices = ['/dev/mapper/a', '/dev/mapper/b']), 'nodes.0.devices', /one path per shared device/);
  });
});

describe('specDiff: what apply shows', () => {
  it('names each changed field by its path, lists of names by what came and went, records entry by entry', () => {
    const before = { vip: { address: '10.0.0.5', prefix: 24 }, nfs: { exports: [{ path: '/a', fsid: 1, options: ['rw', 'sync'] }] } };
    const after = { vip: { address: '10.0.0.6', prefix: 24 }, nfs: { exports: [{ path: '/a', fsid: 1, options: ['rw', 'async'] }, { path: '/b', fsid: 2 }] } };
    assert.deepEqual(specDiff(before, after), [
      'nfs.exports[0].options: +"async" -"sync"',
      'nfs.exports[1]: added {"path":"/b","fsid":2}',
      'vip.address: "10.0.0.5" → "10.0.0.6"',
    ]);
    assert.deepEqual(specDiff({ standby: ['a', 'b'] }, { standby: ['b', 'a'] }), ['standby: reordered ["a","b"] → ["b","a"]']);
    assert.deepEqual(specDiff({ x: 1, y: 2 }, { x: 1 }), ['y: removed 2']);
    assert.deepEqual(specDiff(before, structuredClone(before)), []);
  });
});
