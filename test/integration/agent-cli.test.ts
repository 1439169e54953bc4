/** The agent as shipped: the esbuild bundle, run with plain node. */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildBundle } from '../../infra/build.ts';
import { reservationKey } from '../../shared/reservation-key.ts';
import { runCommand } from '../helpers/control-plane.ts';

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
    const out = JSON.parse(r.stdout) as { steps: { step: string; commands: { argv: string[] }[] }[] };
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
});
