/**
 * The agent as a storage node installs it: the single executable and the Debian package that
 * `npm run build` makes, built here from the source and taken apart with dpkg-deb. lintian runs
 * on the same package from .ci/run.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { buildAgentDeb, buildAgentExecutable, DEB_DEPENDS, debFileName, pinnedNode } from '../../infra/package.ts';
import { VERSION } from '../../shared/version.ts';

const run = promisify(execFile);
const spec = new URL('../fixtures/cluster.json', import.meta.url).pathname;
let dir: string;
let deb: string;
let tree: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nfs-ha-package-'));
  const exe = await buildAgentExecutable(dir);
  deb = (await buildAgentDeb(dir, exe.path)).path;
  tree = join(dir, 'unpacked');
  await run('dpkg-deb', ['-x', deb, tree]);
  await run('dpkg-deb', ['-e', deb, join(dir, 'DEBIAN')]);
});
after(() => rm(dir, { recursive: true, force: true }));

/** `dpkg-deb -c`: mode, owner and path of every entry. */
async function contents(): Promise<Map<string, { mode: string; owner: string }>> {
  const { stdout } = await run('dpkg-deb', ['-c', deb], { maxBuffer: 1 << 20 });
  const entries = new Map<string, { mode: string; owner: string }>();
  for (const line of stdout.trim().split('\n')) {
    const [mode, owner, , , , path] = line.split(/\s+/);
    entries.set(path!.replace(/^\.\//, ''), { mode: mode!, owner: owner! });
  }
  return entries;
}

describe('the agent package (nfs-ha-agent_<version>_amd64.deb)', () => {
  it('is named and described as Debian expects, and depends on the tools the agent runs', async () => {
    assert.equal(deb.endsWith(debFileName()), true);
    const field = async (name: string) => (await run('dpkg-deb', ['-f', deb, name])).stdout.trim();
    assert.equal(await field('Package'), 'nfs-ha-agent');
    assert.equal(await field('Version'), VERSION);
    assert.equal(await field('Architecture'), 'amd64');
    const depends = (await field('Depends')).split(/,\s*/);
    for (const tool of ['sg3-utils', 'lvm2', 'nfs-kernel-server', 'iproute2', 'arping']) assert.ok(depends.includes(tool), `Depends: ${tool}`);
    assert.deepEqual(depends, DEB_DEPENDS);
    // Installed-Size is in KiB and covers the runtime (over 100 MiB).
    assert.ok(Number(await field('Installed-Size')) > 100 * 1024);
  });

  it('holds the executable, the unit, the docs and the maintainer scripts, root-owned with the right modes', async () => {
    const entries = await contents();
    const expected: [string, string][] = [
      ['usr/sbin/nfs-ha-agent', '-rwxr-xr-x'],
      ['lib/systemd/system/nfs-ha-agent.service', '-rw-r--r--'],
      ['usr/share/doc/nfs-ha-agent/copyright', '-rw-r--r--'],
      ['usr/share/doc/nfs-ha-agent/changelog.gz', '-rw-r--r--'],
      ['usr/share/man/man8/nfs-ha-agent.8.gz', '-rw-r--r--'],
      ['usr/share/lintian/overrides/nfs-ha-agent', '-rw-r--r--'],
    ];
    for (const [path, mode] of expected) {
      assert.equal(entries.get(path)?.mode, mode, path);
      assert.equal(entries.get(path)?.owner, 'root/root', path);
    }
    // Nothing else: no node_modules, no bundle that would need a node of its own.
    assert.deepEqual([...entries.keys()].filter((p) => p !== '' && !p.endsWith('/')).sort(), expected.map(([p]) => p).sort());
    for (const script of ['postinst', 'prerm', 'postrm']) assert.equal(((await stat(join(dir, 'DEBIAN', script))).mode & 0o777).toString(8), '755', script);
  });

  it('installs a unit that runs the packaged executable, otherwise the same unit as the installer writes', async () => {
    const packaged = await readFile(join(tree, 'lib/systemd/system/nfs-ha-agent.service'), 'utf8');
    const source = await readFile('infra/systemd/nfs-ha-agent.service', 'utf8');
    assert.match(packaged, /^ExecStart=\/usr\/sbin\/nfs-ha-agent run --config \/etc\/nfs-ha\/agent\.json$/m);
    const withoutExec = (unit: string) => unit.split('\n').filter((l) => !l.startsWith('ExecStart='));
    assert.deepEqual(withoutExec(packaged), withoutExec(source));
  });

  it('runs with no node anywhere: the pinned runtime is inside the executable', async () => {
    const exe = join(tree, 'usr/sbin/nfs-ha-agent');
    // An empty environment: no PATH, so no node could be found even if the machine had one.
    const version = await run(exe, ['--version'], { env: {}, timeout: 30_000 });
    assert.equal(version.stdout.trim(), VERSION);
    const probe = await run(exe, ['start', '--dry-run', '--json', '--spec', spec, '--node', 'node-a'], { env: {}, timeout: 30_000 });
    const steps = (JSON.parse(probe.stdout) as { steps: { step: string }[] }).steps.map((s) => s.step.split(':')[0]);
    assert.deepEqual(steps, [
      'fence',
      'start scsi-reservation',
      'start volume-group',
      'start filesystem',
      'start nfs-server',
      'start exports',
      'start floating-ip',
    ]);
    // A NODE_OPTIONS meant for another program does not reach the agent's runtime.
    const options = await run(exe, ['--version'], { env: { NODE_OPTIONS: '--no-such-flag' }, timeout: 30_000 });
    assert.equal(options.stdout.trim(), VERSION);
    // The runtime is the pinned one, byte for byte apart from the injected agent.
    assert.ok((await stat(exe)).size > (await stat(pinnedNode().path)).size);
  });

  it('postinst: never starts an agent, restarts a passive one on upgrade, and leaves an active one running', async () => {
    const script = join(dir, 'DEBIAN', 'postinst');
    // Stand-ins for systemctl, deb-systemd-invoke and the agent's role query, logging each call.
    const bin = join(dir, 'stub-bin');
    await mkdir(bin, { recursive: true });
    const log = join(dir, 'calls.log');
    const stub = async (name: string, body: string) => {
      await writeFile(join(bin, name), `#!/bin/sh\necho "${name} $*" >> "${log}"\n${body}\n`);
      await chmod(join(bin, name), 0o755);
    };
    await stub('systemctl', 'if [ "$1" = is-active ]; then [ "$STUB_RUNNING" = 1 ]; exit $?; fi; exit 0');
    await stub('deb-systemd-invoke', 'exit 0');
    await stub('nfs-ha-agent', 'echo "$STUB_ROLE"');
    const root = join(dir, 'root');
    await mkdir(join(root, 'run/systemd/system'), { recursive: true });
    const configure = async (running: boolean, role: string) => {
      await rm(log, { force: true });
      const r = await run('sh', [script, 'configure', '0.0.9'], {
        env: { PATH: `${bin}:/usr/bin:/bin`, DPKG_ROOT: root, STUB_RUNNING: running ? '1' : '0', STUB_ROLE: role },
      });
      const calls = (await readFile(log, 'utf8').catch(() => '')).trim().split('\n');
      return { out: r.stdout, calls };
    };
    const fresh = await configure(false, 'down');
    assert.deepEqual(fresh.calls, ['systemctl --system daemon-reload', 'systemctl is-active --quiet nfs-ha-agent.service']);
    assert.equal(((await stat(join(root, 'etc/nfs-ha'))).mode & 0o777).toString(8), '700');
    const passive = await configure(true, 'passive');
    assert.ok(passive.calls.includes('deb-systemd-invoke restart nfs-ha-agent.service'), passive.calls.join('; '));
    for (const role of ['active', 'activating', 'fencing', 'demoting']) {
      const serving = await configure(true, role);
      assert.ok(!serving.calls.some((c) => c.includes('restart') || c.includes(' start') || c.includes(' stop')), `${role}: ${serving.calls.join('; ')}`);
      assert.match(serving.out, new RegExp(`agent is ${role}: it keeps running the previous version`));
    }
    // Installing into another root touches no service at all.
    await rm(join(root, 'run'), { recursive: true });
    assert.deepEqual((await configure(true, 'passive')).calls, ['']);
  });
});
