/** The agent as shipped: the esbuild bundle, run with plain node. */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildBundle } from '../../infra/build.ts';
import { reservationKey } from '../../shared/reservation-key.ts';
import { spawn } from 'node:child_process';
import { exampleSpec, runCommand, serveHarness, startHarness } from '../helpers/control-plane.ts';

const spec = new URL('../fixtures/cluster.json', import.meta.url).pathname;
let dir: string;
let bundle: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nfs-ha-agent-'));
  bundle = (await buildBundle('agent', dir)).path;
});
after(() => rm(dir, { recursive: true, force: true }));

function agent(...args: string[]) {
  return runCommand([process.execPath, bundle, ...args]);
}

describe('nfs-ha-agent bundle', () => {
  it('start --dry-run: fence first, then the resources in order, as commands an operator would type', async () => {
    const r = await agent('start', '--dry-run', '--json', '--spec', spec, '--node', 'node-b');
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { prepared: { argv: string[] }[]; steps: { step: string; commands: { argv: string[] }[] }[] };
    // Ahead of any takeover, when the agent starts: what holds no state, and no nfsd thread.
    assert.deepEqual(
      out.prepared.map((c) => c.argv.join(' ')).filter((l) => !l.startsWith('cat ')),
      ['lvm systemid', 'vgs --foreign --reportformat json -o vg_name,vg_systemid vg_nfs', 'systemctl start proc-fs-nfsd.mount rpc_pipefs.target', 'systemctl start rpcbind.service'],
    );
    assert.ok(!out.steps.some((s) => s.commands.some((c) => ['lvm', 'vgs'].includes(c.argv[0]!))), "the system ID and the VG's owner read ahead, not in the takeover");
    assert.deepEqual(
      out.steps.map((s) => s.step.split(':')[0]),
      ['fence', 'start scsi-reservation', 'start volume-group', 'start filesystem', 'start nfs-server', 'start exports', 'start floating-ip'],
    );
    const lines = out.steps.flatMap((s) => s.commands.map((c) => c.argv.join(' ')));
    const own = reservationKey('nfs-prod', 'node-b');
    const peer = reservationKey('nfs-prod', 'node-a');
    const at = (needle: string) => lines.findIndex((l) => l.includes(needle));
    assert.ok(at(`--register-ignore --param-sark=${own}`) === 0, 'registers before anything else');
    assert.ok(at(`--preempt-abort --param-rk=${own} --param-sark=${peer} --prout-type=5`) > 0);
    assert.ok(at('--preempt-abort') < at('vgchange --config'), 'fences before touching the VG');
    assert.ok(at('vgchange -ay vg_nfs') < at('mount -t ext4'));
    assert.ok(at('systemctl start nfs-server') < at('exportfs -o'));
    assert.ok(at('arping -0') < at('ip addr add 10.88.0.100/24 dev eth0'), 'probes for a duplicate before adding the VIP');
    assert.ok(at('cat /run/systemd/system/nfs-server.service.d/') > 0 && at('daemon-reload') === -1, 'the drop-in prepared at the agent\'s start: checked, no reload');
    assert.equal(at('sqlite3 '), -1, "nfsdcld's database switched by an earlier start: not again");
  });

  it('stop --dry-run: the reverse order, keeping the reservation', async () => {
    const r = await agent('stop', '--dry-run', '--spec', spec, '--node', 'node-a');
    assert.equal(r.code, 0, r.stderr);
    const steps = r.stdout
      .split('\n')
      .filter((l) => l.startsWith('# stop'))
      .map((l) => l.slice(2).split(' (')[0]);
    assert.deepEqual(steps, ['stop floating-ip', 'stop exports', 'stop nfs-server', 'stop filesystem', 'stop volume-group', 'stop scsi-reservation']);
    assert.ok(!/sg_persist .*--out/.test(r.stdout), 'no reservation change on stop');
    assert.match(r.stdout, /^umount \/srv\/nfs$/m);
    assert.match(r.stdout, /^umount \/var\/lib\/nfs\/sm\.bak \/var\/lib\/nfs\/sm \/var\/lib\/nfs\/v4recovery \/var\/lib\/nfs\/nfsdcld$/m, 'the reclaim state unbound, in reverse');
    assert.match(r.stdout, /# stop volume-group\nvgchange -an vg_nfs\n\n/, "its own VG: one command");
  });

  it('takes a YAML spec as the CLI does (the same file works for both), and says --version', async () => {
    const { readFile } = await import('node:fs/promises');
    const { stringify } = await import('yaml');
    const yaml = join(dir, 'cluster.yaml');
    await writeFile(yaml, stringify(JSON.parse(await readFile(spec, 'utf8'))));
    const fromJson = await agent('stop', '--dry-run', '--spec', spec, '--node', 'node-a');
    const fromYaml = await agent('stop', '--dry-run', '--spec', yaml, '--node', 'node-a');
    assert.equal(fromYaml.code, 0, fromYaml.stderr);
    assert.equal(fromYaml.stdout, fromJson.stdout);
    await writeFile(join(dir, 'bad.yaml'), 'id: [unclosed');
    const bad = await agent('validate', '--spec', join(dir, 'bad.yaml'), '--node', 'node-a');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^nfs-ha-agent: \S+bad\.yaml is not a valid cluster spec: /);
    const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal((await agent('--version')).stdout.trim(), version);
  });

  it('refuses to start or stop for real outside the running agent', async () => {
    const r = await agent('start', '--spec', spec, '--node', 'node-a');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /start runs only inside the agent, under a lease from the arbiter; use --dry-run/);
  });

  it('a bad config file gets one clear line and exit 2', async () => {
    const config = join(dir, 'agent.json');
    await writeFile(config, JSON.stringify({ controlPlane: { url: 'ftp://x' }, clusterId: 'c', nodeId: 'node-a', peer: { token: 'short' } }));
    const r = await agent('run', '--config', config);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^nfs-ha-agent: .*agent\.json: controlPlane\.url: .*; peer\.token: .*16/m);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });

  it('refuses a plain-HTTP control plane unless the node says insecure', async () => {
    const config = join(dir, 'http.json');
    await writeFile(
      config,
      JSON.stringify({
        controlPlane: { url: 'http://cp.example:8080', token: 'x'.repeat(20) },
        clusterId: 'c',
        nodeId: 'node-a',
        peer: { token: 'y'.repeat(20) },
        allowed: { devices: ['/dev/disk/by-id/wwn-0x1'], volumeGroup: 'vg', mountPrefix: '/srv' },
      }),
    );
    const r = await agent('run', '--config', config);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /controlPlane\.url: the control plane URL must be https:\/\/ .*"insecure": true only for a lab/);
  });

  it('runs nothing for a spec outside what the node allows, and tells the arbiter, which never grants it the lease', async () => {
    const h = await startHarness();
    const http = await serveHarness(h);
    try {
      const spec = await exampleSpec('scoped');
      spec.storage.filesystem.mountPoint = '/srv/other';
      (spec.nfs as { stateDir: string }).stateDir = '/srv/other/.state';
      spec.nfs.exports = [{ path: '/srv/other/x', fsid: 1, clients: [{ host: '10.88.0.0/24' }] }];
      assert.equal((await h.call('POST', '/v1/clusters', spec)).status, 201);
      const config = join(dir, 'scoped.json');
      await writeFile(
        config,
        JSON.stringify({
          controlPlane: { url: http.url, token: await h.agentToken('scoped', 'node-a'), insecure: true },
          clusterId: 'scoped',
          nodeId: 'node-a',
          peer: { token: 'y'.repeat(20), listen: '127.0.0.1' },
          allowed: { devices: ['/dev/disk/by-id/wwn-0xother'], volumeGroup: 'vg_other', mountPrefix: '/srv/nfs' },
          logLevel: 'info',
        }),
      );
      const child = spawn(process.execPath, [bundle, 'run', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d));
      try {
        let node: { unfit: string | null } | undefined;
        for (let i = 0; i < 100 && !node?.unfit; i++) {
          await new Promise((r) => setTimeout(r, 100));
          node = (await h.call('GET', '/v1/clusters/scoped/status')).body.nodes.find((n: { id: string }) => n.id === 'node-a');
        }
        assert.match(node?.unfit ?? '', /device \/dev\/disk\/by-id\/wwn-0x6001405a1b2c3d4e5f60718293a4b5c6 is not one this node allows/);
        assert.match(node!.unfit!, /volume group vg_nfs is not the one this node allows \(vg_other\)/);
        assert.match(node!.unfit!, /mount point \/srv\/other is outside this node's mount prefix \/srv\/nfs/);
        const status = (await h.call('GET', '/v1/clusters/scoped/status')).body;
        assert.equal(status.lease.holder, null, 'never granted');
        assert.match(out, /this node refuses cluster scoped/);
        assert.doesNotMatch(out, /"cmd"|sg_persist|vgchange/, 'not a single node command ran');
      } finally {
        child.kill('SIGTERM');
      }
    } finally {
      await http.close();
      await h.close();
    }
  });
});
