/**
 * The agent and the control plane as a machine installs them: the agent's single executable and
 * both Debian packages that `npm run build` makes, built here from the source and taken apart with
 * dpkg-deb. lintian runs on the same packages from .ci/run.
 */
import assert from 'node:assert/strict';
import { execFile, type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { buildBundle, buildServer } from '../../infra/build.ts';
import {
  AGENT_DEPENDS,
  buildAgentDeb,
  buildAgentExecutable,
  buildControlPlaneDeb,
  CONTROL_PLANE_DEPENDS,
  CONTROL_PLANE_LIB,
  debFileName,
  pinnedNode,
} from '../../infra/package.ts';
import { VERSION } from '../../shared/version.ts';

const run = promisify(execFile);
const spec = new URL('../fixtures/cluster.json', import.meta.url).pathname;
let dir: string;
let deb: string;
let tree: string;
let cpDeb: string;
let cpTree: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nfs-ha-package-'));
  const exe = await buildAgentExecutable(dir);
  deb = (await buildAgentDeb(dir, exe.path)).path;
  tree = join(dir, 'unpacked');
  await run('dpkg-deb', ['-x', deb, tree]);
  await run('dpkg-deb', ['-e', deb, join(dir, 'DEBIAN')]);
  await buildBundle('agent', dir);
  await buildBundle('cli', dir);
  cpDeb = (await buildControlPlaneDeb(dir, (await buildServer(dir)).dir, deb)).path;
  cpTree = join(dir, 'cp-unpacked');
  await run('dpkg-deb', ['-x', cpDeb, cpTree]);
  await run('dpkg-deb', ['-e', cpDeb, join(dir, 'CP-DEBIAN')]);
});
after(() => rm(dir, { recursive: true, force: true }));

/** `dpkg-deb -c`: mode, owner and path of every entry. */
async function contents(pkg = deb): Promise<Map<string, { mode: string; owner: string }>> {
  const { stdout } = await run('dpkg-deb', ['-c', pkg], { maxBuffer: 1 << 20 });
  const entries = new Map<string, { mode: string; owner: string }>();
  for (const line of stdout.trim().split('\n')) {
    const [mode, owner, , , , path] = line.split(/\s+/);
    entries.set(path!.replace(/^\.\//, ''), { mode: mode!, owner: owner! });
  }
  return entries;
}

/**
 * A maintainer script run against stand-ins for the commands it calls (each logs its arguments),
 * with DPKG_ROOT at `root`; returns what it printed and the calls in order.
 */
async function maintainerScript(script: string, stubs: Record<string, string>) {
  const bin = await mkdtemp(join(dir, 'stub-bin-'));
  const log = join(bin, 'calls.log');
  for (const [name, body] of Object.entries(stubs)) {
    await writeFile(join(bin, name), `#!/bin/sh\necho "${name} $*" >> "${log}"\n${body}\n`);
    await chmod(join(bin, name), 0o755);
  }
  return async (args: string[], root: string, env: Record<string, string> = {}) => {
    await rm(log, { force: true });
    const r = await run('sh', [script, ...args], { env: { PATH: `${bin}:/usr/bin:/bin`, DPKG_ROOT: root, ...env } });
    const calls = (await readFile(log, 'utf8').catch(() => '')).trim().split('\n');
    return { out: r.stdout, calls };
  };
}

describe('the agent package (nfs-ha-agent_<version>_amd64.deb)', () => {
  it('is named and described as Debian expects, and depends on the tools the agent runs', async () => {
    assert.equal(deb.endsWith(debFileName()), true);
    const field = async (name: string) => (await run('dpkg-deb', ['-f', deb, name])).stdout.trim();
    assert.equal(await field('Package'), 'nfs-ha-agent');
    assert.equal(await field('Version'), VERSION);
    assert.equal(await field('Architecture'), 'amd64');
    const depends = (await field('Depends')).split(/,\s*/);
    for (const tool of ['sg3-utils', 'lvm2', 'nfs-kernel-server', 'sqlite3', 'iproute2', 'arping']) assert.ok(depends.includes(tool), `Depends: ${tool}`);
    assert.deepEqual(depends, AGENT_DEPENDS);
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
    // Nothing on stderr: V8 took the code cache, made under the flags the agent runs with (it
    // rejects one made under others, and says so at every start).
    assert.equal(version.stderr, '');
    const probe = await run(exe, ['start', '--dry-run', '--json', '--spec', spec, '--node', 'node-a'], { env: {}, timeout: 30_000 });
    assert.equal(probe.stderr, '');
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
    // Stand-ins for systemctl, deb-systemd-invoke and the agent's role query.
    const postinst = await maintainerScript(join(dir, 'DEBIAN', 'postinst'), {
      systemctl: 'if [ "$1" = is-active ]; then [ "$STUB_RUNNING" = 1 ]; exit $?; fi; exit 0',
      'deb-systemd-invoke': 'exit 0',
      'nfs-ha-agent': 'echo "$STUB_ROLE"',
    });
    const root = join(dir, 'root');
    await mkdir(join(root, 'run/systemd/system'), { recursive: true });
    const configure = (running: boolean, role: string) => postinst(['configure', '0.0.9'], root, { STUB_RUNNING: running ? '1' : '0', STUB_ROLE: role });
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

/** The packaged server, started as its unit starts it but from the unpacked tree, with an empty environment apart from its settings. */
async function startPackagedServer(dataDir: string): Promise<{ url: string; child: ChildProcess; output: () => string }> {
  const lib = join(cpTree, CONTROL_PLANE_LIB);
  const child = spawn(join(lib, 'bin/node'), ['--enable-source-maps', join(lib, 'server.mjs')], {
    cwd: dir,
    env: { NFSHA_DATA_DIR: dataDir, PORT: '0', NFSHA_PUBLIC_URL: 'https://nfs-ha.example.net', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (out += d));
  const port = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`the packaged server did not listen in 30 s:\n${out}`)), 30_000);
    child.stdout!.on('data', () => {
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok(m[1]!);
      }
    });
    child.once('exit', (code) => fail(new Error(`the packaged server exited (${code}):\n${out}`)));
  });
  return { url: `http://127.0.0.1:${port}`, child, output: () => out };
}

describe('the control plane package (nfs-ha-control-plane_<version>_amd64.deb)', () => {
  it('is named and described as Debian expects, with the settings file as a conffile', async () => {
    assert.equal(cpDeb.endsWith(debFileName('nfs-ha-control-plane')), true);
    const field = async (name: string) => (await run('dpkg-deb', ['-f', cpDeb, name])).stdout.trim();
    assert.equal(await field('Package'), 'nfs-ha-control-plane');
    assert.equal(await field('Version'), VERSION);
    assert.deepEqual((await field('Depends')).split(/,\s*/), CONTROL_PLANE_DEPENDS);
    assert.equal(await readFile(join(dir, 'CP-DEBIAN', 'conffiles'), 'utf8'), '/etc/nfs-ha/control-plane.env\n');
  });

  it('holds the runtime, the bundles, the unit, the CLI and the settings, with no source tree and no node_modules', async () => {
    const entries = await contents(cpDeb);
    const expected: [string, string][] = [
      [`${CONTROL_PLANE_LIB}/bin/node`, '-rwxr-xr-x'],
      [`${CONTROL_PLANE_LIB}/server.mjs`, '-rw-r--r--'],
      [`${CONTROL_PLANE_LIB}/embedded-worker.mjs`, '-rw-r--r--'],
      [`${CONTROL_PLANE_LIB}/classic-level.node`, '-rw-r--r--'],
      [`${CONTROL_PLANE_LIB}/nfs-ha.mjs`, '-rw-r--r--'],
      [`${CONTROL_PLANE_LIB}/install.sh`, '-rw-r--r--'],
      [`${CONTROL_PLANE_LIB}/nfs-ha-agent.mjs`, '-rw-r--r--'],
      [`${CONTROL_PLANE_LIB}/${debFileName()}`, '-rw-r--r--'],
      [`${CONTROL_PLANE_LIB}/docs/swagger-ui.css`, '-rw-r--r--'],
      ['lib/systemd/system/nfs-ha-control-plane.service', '-rw-r--r--'],
      ['usr/lib/sysusers.d/nfs-ha-control-plane.conf', '-rw-r--r--'],
      ['usr/bin/nfs-ha', '-rwxr-xr-x'],
      ['usr/share/man/man1/nfs-ha.1.gz', '-rw-r--r--'],
      // The settings may hold AWS credentials: root's alone.
      ['etc/nfs-ha/control-plane.env', '-rw-------'],
    ];
    for (const [path, mode] of expected) {
      assert.equal(entries.get(path)?.mode, mode, path);
      assert.equal(entries.get(path)?.owner, 'root/root', path);
    }
    const paths = [...entries.keys()];
    assert.deepEqual(
      paths.filter((p) => p.includes('node_modules') || p.endsWith('.ts')),
      [],
    );
    // The unit runs exactly what the package holds.
    const unit = await readFile(join(cpTree, 'lib/systemd/system/nfs-ha-control-plane.service'), 'utf8');
    const exec = /^ExecStart=(\S+) --enable-source-maps (\S+)$/m.exec(unit);
    assert.ok(exec, unit);
    assert.ok(entries.has(exec[1]!.slice(1)) && entries.has(exec[2]!.slice(1)), exec[0]);
    assert.match(unit, /^User=nfs-ha$/m);
    assert.match(
      await readFile(join(cpTree, 'usr/lib/sysusers.d/nfs-ha-control-plane.conf'), 'utf8'),
      /^u nfs-ha - ".*" \/var\/lib\/nfs-ha \/usr\/sbin\/nologin$/m,
    );
    assert.match(
      await readFile(join(cpTree, 'usr/bin/nfs-ha'), 'utf8'),
      new RegExp(`^exec /${CONTROL_PLANE_LIB}/bin/node /${CONTROL_PLANE_LIB}/nfs-ha\\.mjs "\\$@"$`, 'm'),
    );
  });

  it('serves from the package alone: the embedded store (LevelDB addon in its worker), the installer, the docs and the CLI', async () => {
    const data = join(dir, 'cp-data');
    const server = await startPackagedServer(data);
    try {
      assert.deepEqual(await (await fetch(`${server.url}/healthz`)).json(), { ok: true });
      // The store answers: the first admin key was written, and a listing goes through it.
      const key = (await readFile(join(data, 'initial-admin-key'), 'utf8')).trim();
      const clusters = await fetch(`${server.url}/v1/clusters`, { headers: { authorization: `Bearer ${key}` } });
      assert.equal(clusters.status, 200, server.output());
      // The installer carries the configured URL and the checksum of the agent bundle the package holds.
      const script = await (await fetch(`${server.url}/install.sh`)).text();
      assert.match(script, /^CONTROL_PLANE='https:\/\/nfs-ha\.example\.net'$/m);
      const bundle = await readFile(join(cpTree, CONTROL_PLANE_LIB, 'nfs-ha-agent.mjs'));
      assert.match(script, new RegExp(`^BUNDLE_SHA256='${createHash('sha256').update(bundle).digest('hex')}'$`, 'm'));
      // And hands out the agent's package, byte for byte the one built, with its checksum in the script.
      const agentPackage = await readFile(deb);
      const sha = createHash('sha256').update(agentPackage).digest('hex');
      assert.match(script, new RegExp(`^PACKAGE_SHA256='${sha}'$`, 'm'));
      const served = await fetch(`${server.url}/install/nfs-ha-agent.deb`);
      assert.equal(served.headers.get('x-checksum-sha256'), sha);
      assert.ok(Buffer.from(await served.arrayBuffer()).equals(agentPackage), 'the served package is the built one');
      assert.equal((await fetch(`${server.url}/docs/swagger-ui.css`)).status, 200);
      // The CLI as /usr/bin/nfs-ha runs it, against this server.
      const lib = join(cpTree, CONTROL_PLANE_LIB);
      const cli = await run(join(lib, 'bin/node'), [join(lib, 'nfs-ha.mjs'), '--url', server.url, '--key', key, '--json', 'clusters'], {
        env: {},
        timeout: 30_000,
      });
      assert.deepEqual(JSON.parse(cli.stdout).clusters, []);
      assert.equal((await run(join(lib, 'bin/node'), [join(lib, 'nfs-ha.mjs'), '--version'], { env: {} })).stdout.trim(), VERSION);
    } finally {
      server.child.kill('SIGTERM');
    }
    // Its state is its user's alone.
    assert.equal(((await stat(data)).mode & 0o777).toString(8), '700');
    assert.ok((await readdir(data)).includes('dynamodb'));
  });

  it('postinst: makes the system user, starts the service on a fresh install, restarts it on an upgrade', async () => {
    const postinst = await maintainerScript(join(dir, 'CP-DEBIAN', 'postinst'), {
      'systemd-sysusers': 'exit 0',
      systemctl: 'exit 0',
      'deb-systemd-helper': 'exit 0',
      'deb-systemd-invoke': 'exit 0',
    });
    const root = join(dir, 'cp-root');
    await mkdir(join(root, 'run/systemd/system'), { recursive: true });
    const unit = 'nfs-ha-control-plane.service';
    const fresh = await postinst(['configure'], root);
    assert.deepEqual(fresh.calls, [
      `systemd-sysusers --root=${root} nfs-ha-control-plane.conf`,
      'systemctl --system daemon-reload',
      `deb-systemd-helper enable ${unit}`,
      `deb-systemd-invoke start ${unit}`,
    ]);
    assert.match(fresh.out, /first admin key is in \/var\/lib\/nfs-ha\/initial-admin-key/);
    assert.equal(((await stat(join(root, 'etc/nfs-ha'))).mode & 0o777).toString(8), '700');
    const upgrade = await postinst(['configure', '0.0.9'], root);
    assert.deepEqual(upgrade.calls.slice(1), ['systemctl --system daemon-reload', `deb-systemd-invoke try-restart ${unit}`]);
    // Installing into another root makes the user there and touches no service.
    await rm(join(root, 'run'), { recursive: true });
    assert.deepEqual((await postinst(['configure'], root)).calls, [`systemd-sysusers --root=${root} nfs-ha-control-plane.conf`]);
  });

  it('postrm: even a purge keeps the state directory (the leases and epochs)', async () => {
    const postrm = await maintainerScript(join(dir, 'CP-DEBIAN', 'postrm'), { 'deb-systemd-helper': 'exit 0', systemctl: 'exit 0' });
    const root = join(dir, 'cp-purge-root');
    await mkdir(join(root, 'var/lib/nfs-ha'), { recursive: true });
    await writeFile(join(root, 'var/lib/nfs-ha/keep'), 'lease');
    const purge = await postrm(['purge'], root);
    assert.deepEqual(purge.calls, ['deb-systemd-helper purge nfs-ha-control-plane.service']);
    assert.equal(await readFile(join(root, 'var/lib/nfs-ha/keep'), 'utf8'), 'lease');
  });
});
