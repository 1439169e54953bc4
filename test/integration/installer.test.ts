/**
 * The installer served by the control plane (GET /install.sh), run for real with bash against a
 * control plane on loopback: under another root (NFSHA_INSTALL_ROOT), with --no-start, and with
 * a PATH holding only the tools it may use, so "what is missing" is the same on every machine.
 * The served agent bundle here is a stand-in that answers `validate` and `role` as the test says
 * and hands `configure` (writing agent.json) to the real agent bundle; the lab installs the real
 * package on real nodes with systemd.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { buildBundle } from '../../infra/build.ts';
import { type Harness, exampleSpec, runCommand, serveHarness, startHarness, tempDir } from '../helpers/control-plane.ts';

const root = new URL('../..', import.meta.url).pathname;
const BASIC_TOOLS = [
  'bash',
  'id',
  'dirname',
  'mkdir',
  'chmod',
  'mktemp',
  'rm',
  'rmdir',
  'curl',
  'sha256sum',
  'install',
  'cat',
  'mv',
  'node',
  'cmp',
  'realpath',
];
const ALLOWED = ['--device', '/dev/disk/by-id/wwn-0x6001405a1b2c3d4e5f60718293a4b5c6', '--vg', 'vg_nfs', '--mount-prefix', '/srv/nfs'];
const NODE_TOOLS = ['sg_persist', 'lvm', 'exportfs', 'sqlite3', 'ip', 'arping', 'perl'];

let h: Harness;
let http: Awaited<ReturnType<typeof serveHarness>>;
let dir: string;
let bundle: string;
let agentPackage: string;
let bareBin: string;
let fullBin: string;

async function which(tool: string): Promise<string> {
  const r = await runCommand(['bash', '-c', `command -v ${tool}`]);
  assert.equal(r.code, 0, `${tool} is needed to run the installer test`);
  return r.stdout.trim();
}

before(async () => {
  dir = await tempDir('nfs-ha-install-');
  bundle = join(dir, 'served-agent.mjs');
  // A stand-in agent: `validate` says what it was asked; `role` answers the role the test sets;
  // `configure` is the real agent's.
  const real = await buildBundle('agent', join(dir, 'real'));
  await writeFile(
    bundle,
    `if (process.argv[2] === 'configure') await import(${JSON.stringify(pathToFileURL(real.path).href)});\n` +
      "else if (process.argv[2] === 'role') console.log(process.env.STANDIN_ROLE ?? 'passive');\n" +
      "else if (process.env.STANDIN_VALIDATE === 'fail') { console.log('✗ self-fence: /dev/watchdog: busy'); process.exit(3); }\n" +
      "else console.log(`stand-in agent: ${process.argv.slice(2).join(' ')}`);\n",
  );
  // The served package: bytes the installer must hand to apt-get unchanged (the lab installs a real one).
  agentPackage = join(dir, 'served-agent.deb');
  await writeFile(agentPackage, `!<arch>\nstand-in package ${Date.now()}\n`);
  h = await startHarness({
    install: { script: join(root, 'infra/install.sh'), unit: join(root, 'infra/systemd/nfs-ha-agent.service'), bundle, package: agentPackage },
  });
  http = await serveHarness(h, { publicUrl: true });
  await h.call('POST', '/v1/clusters', await exampleSpec('inst'));
  // Two PATHs: the basic tools only, and those plus stand-ins for the node tools.
  bareBin = join(dir, 'bare-bin');
  fullBin = join(dir, 'full-bin');
  await mkdir(bareBin);
  await mkdir(fullBin);
  for (const tool of BASIC_TOOLS) {
    const path = await which(tool);
    await symlink(path, join(bareBin, tool));
    await symlink(path, join(fullBin, tool));
  }
  for (const tool of NODE_TOOLS) {
    await writeFile(join(fullBin, tool), '#!/bin/sh\nexit 0\n');
    await chmod(join(fullBin, tool), 0o755);
  }
  // systemctl: records its calls; the agent is "active" (running) when the test says so.
  await writeFile(join(fullBin, 'systemctl'), `#!/bin/bash\necho "$*" >> "$SYSTEMCTL_LOG"\n[[ $1 == is-active ]] && exit \${AGENT_RUNNING:-1}\nexit 0\n`);
  await chmod(join(fullBin, 'systemctl'), 0o755);
});
after(async () => {
  await http.close();
  await h.close();
});

async function servedScript(): Promise<string> {
  const res = await fetch(`${http.url}/install.sh`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /shellscript/);
  const file = join(dir, `install-${Date.now()}.sh`);
  await writeFile(file, await res.text());
  return file;
}

function install(script: string, args: string[], installRoot: string, bin = fullBin, env: Record<string, string> = {}) {
  return runCommand([join(bin, 'bash'), script, ...args], { env: { PATH: bin, NFSHA_INSTALL_ROOT: installRoot, HOME: dir, ...env } });
}

/** A token file, as the operator leaves it on the node. */
async function enrolmentToken(node: string): Promise<string> {
  const file = join(dir, `token-${node}-${Date.now()}`);
  await writeFile(file, `${(await h.call('POST', '/v1/clusters/inst/enrolments', { node })).body.token}\n`, { mode: 0o600 });
  return file;
}

/** A first install's flags: the token file, the allowed set confirmed, plain HTTP allowed (loopback). */
const first = async (node: string, ...more: string[]) => ['--token-file', await enrolmentToken(node), ...ALLOWED, '--yes', '--insecure', ...more];

describe('installer (GET /install.sh)', () => {
  it('is served with the configured URL (never one from request headers), the bundle checksum and the unit filled in', async () => {
    const file = await servedScript();
    const script = await readFile(file, 'utf8');
    assert.match(script, new RegExp(`^CONTROL_PLANE='${http.url}'$`, 'm'));
    assert.match(script, /^BUNDLE_SHA256='[0-9a-f]{64}'$/m);
    assert.ok(script.includes(await readFile(join(root, 'infra/systemd/nfs-ha-agent.service'), 'utf8')), 'the unit is embedded as it is');
    assert.ok(!script.includes('@@'), 'no placeholder left');
    // What a proxy (or anyone) puts in the headers never reaches the script.
    const hostile = await fetch(`${http.url}/install.sh`, {
      headers: { 'x-forwarded-proto': "https';touch /tmp/nfs-ha-pwned;'", 'x-forwarded-host': 'evil.example' },
    });
    const text = await hostile.text();
    assert.match(text, new RegExp(`^CONTROL_PLANE='${http.url}'$`, 'm'));
    assert.ok(!text.includes('pwned') && !text.includes('evil.example'));
    // Without a configured URL there is no installer to serve, rather than a guessed one.
    const unconfigured = await h.instance({ publicUrl: null, agentUrl: null }).request('/install.sh');
    assert.deepEqual([unconfigured.status, ((await unconfigured.json()) as { error: { code: string } }).error.code], [503, 'public_url_not_configured']);
  });

  it('refuses plain HTTP without --insecure, a token on the command line, and an agent that does not match the operator’s checksum', async () => {
    const script = await servedScript();
    const target = await tempDir('nfs-ha-root-');
    const http1 = await install(script, ['--token-file', await enrolmentToken('node-a'), ...ALLOWED, '--yes', '--no-start'], target);
    assert.equal(http1.code, 1);
    assert.match(http1.stderr, /plain HTTP sends this node's credential in clear; use https, or --insecure/);
    const argv = await install(script, ['--token', 'nfsha_en_0123456789abcdef_' + 'x'.repeat(43), '--no-start'], target);
    assert.match(argv.stderr, /does not go on the command line.*--token-file/);
    // The operator's checksum, from nfs-ha enrol (the enrolment response), is what counts.
    const enrolment = await h.call('POST', '/v1/clusters/inst/enrolments', { node: 'node-a' });
    assert.match(enrolment.body.agentSha256, /^[0-9a-f]{64}$/);
    const wrong = await install(script, [...(await first('node-a')), '--sha256', 'f'.repeat(64), '--no-start'], target);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /does not match its checksum \(f{64}\)/);
    await assert.rejects(stat(join(target, 'usr/local/lib/nfs-ha/nfs-ha-agent.mjs')));
    const right = await install(script, [...(await first('node-b')), '--sha256', enrolment.body.agentSha256, '--no-start'], await tempDir('nfs-ha-root-'));
    assert.equal(right.code, 0, right.stderr);
  });

  it('asks for the allowed set, and without a terminal for --yes, before it uses the token', async () => {
    const script = await servedScript();
    const target = await tempDir('nfs-ha-root-');
    const token = await enrolmentToken('node-a');
    const none = await install(script, ['--token-file', token, '--insecure', '--no-start'], target);
    assert.match(none.stderr, /say what this node lets the cluster touch: --device PATH/);
    const unconfirmed = await install(script, ['--token-file', token, ...ALLOWED, '--insecure', '--no-start'], target);
    assert.match(
      unconfirmed.stderr,
      /device +\/dev\/disk\/by-id\/wwn-0x6001405a1b2c3d4e5f60718293a4b5c6[\s\S]*volume group +vg_nfs[\s\S]*mounts under +\/srv\/nfs/,
    );
    assert.match(unconfirmed.stderr, /no terminal to confirm on: .* --yes/);
    const r = await install(script, ['--token-file', token, ...ALLOWED, '--insecure', '--yes', '--no-start'], target);
    assert.equal(r.code, 0, `the token was not used by the refused attempts: ${r.stderr}`);
  });

  it('says exactly which packages are missing, and changes nothing', async () => {
    const target = await tempDir('nfs-ha-root-');
    const r = await install(await servedScript(), await first('node-a'), target, bareBin);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /error: missing sg3-utils lvm2 nfs-kernel-server sqlite3 iproute2 arping perl-base; install them with: apt-get install sg3-utils lvm2 nfs-kernel-server sqlite3 iproute2 arping perl-base/,
    );
    await assert.rejects(stat(join(target, 'etc/nfs-ha')), 'nothing written');
  });

  it('installs: verified bundle, enrolled credential (0600), unit, preflight; a rerun keeps the credential; --uninstall removes it', async () => {
    const target = await tempDir('nfs-ha-root-');
    const script = await servedScript();
    const r = await install(script, await first('node-a', '--no-start'), target);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /enrolled as node-a of cluster inst/);
    assert.match(r.stdout, /stand-in agent: validate --config .*\/etc\/nfs-ha\/agent\.json/, 'the preflight is the agent’s own validate');
    const configPath = join(target, 'etc/nfs-ha/agent.json');
    assert.equal((await stat(configPath)).mode & 0o777, 0o600);
    const config = JSON.parse(await readFile(configPath, 'utf8'));
    assert.equal(config.controlPlane.url, http.url);
    assert.equal(config.clusterId, 'inst');
    assert.equal(config.nodeId, 'node-a');
    assert.equal(config.controlPlane.insecure, true);
    assert.deepEqual(config.allowed, { devices: [ALLOWED[1]], volumeGroup: 'vg_nfs', mountPrefix: '/srv/nfs' });
    assert.match(config.peer.token, /^[A-Za-z0-9_-]{43}$/);
    const beat = await h.call('POST', '/v1/clusters/inst/nodes/node-a/heartbeat', { role: 'passive', epoch: 0 }, h.app, config.controlPlane.token);
    assert.equal(beat.status, 200, 'the credential it wrote works for its node');
    assert.equal(await readFile(join(target, 'usr/local/lib/nfs-ha/nfs-ha-agent.mjs'), 'utf8'), await readFile(bundle, 'utf8'));
    assert.equal(
      await readFile(join(target, 'etc/systemd/system/nfs-ha-agent.service'), 'utf8'),
      await readFile(join(root, 'infra/systemd/nfs-ha-agent.service'), 'utf8'),
    );

    // node-b gets the same peer-channel secret.
    const b = await tempDir('nfs-ha-root-');
    assert.equal((await install(script, await first('node-b', '--no-start'), b)).code, 0);
    assert.equal(JSON.parse(await readFile(join(b, 'etc/nfs-ha/agent.json'), 'utf8')).peer.token, config.peer.token);

    const again = await install(script, ['--insecure', '--no-start'], target);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /keeping this node's credential/);
    assert.deepEqual(JSON.parse(await readFile(configPath, 'utf8')), config);

    const bogus = join(dir, 'bogus-token');
    await writeFile(bogus, 'nfsha_en_0123456789abcdef_' + 'x'.repeat(43));
    const reused = await install(script, ['--token-file', bogus, ...ALLOWED, '--yes', '--insecure', '--no-start'], target);
    assert.equal(reused.code, 1);
    assert.match(reused.stderr, /refused the enrolment token/);
    assert.deepEqual(JSON.parse(await readFile(configPath, 'utf8')), config, 'a refused token leaves the installed credential alone');

    const gone = await install(script, ['--uninstall', '--no-start'], target);
    assert.equal(gone.code, 0, gone.stderr);
    await assert.rejects(stat(configPath));
    await assert.rejects(stat(join(target, 'etc/systemd/system/nfs-ha-agent.service')));
  });

  it('uses the agent package where the node has it: no bundle, no unit of its own, and no Node needed', async () => {
    const target = await tempDir('nfs-ha-root-');
    const script = await servedScript();
    // A node that had the bundle before: the package's unit must not be shadowed by the old one.
    assert.equal((await install(script, await first('node-a', '--no-start'), target)).code, 0);
    // The package's executable: here the stand-in, run by node from an absolute path, as the
    // single executable carries its own runtime. The PATH has no node at all.
    await mkdir(join(target, 'usr/sbin'), { recursive: true });
    await writeFile(join(target, 'usr/sbin/nfs-ha-agent'), `#!/bin/bash\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(bundle)} "$@"\n`);
    await chmod(join(target, 'usr/sbin/nfs-ha-agent'), 0o755);
    const noNode = join(dir, 'no-node-bin');
    await mkdir(noNode, { recursive: true });
    for (const tool of [...BASIC_TOOLS.filter((t) => t !== 'node'), ...NODE_TOOLS, 'systemctl'])
      await symlink(join(fullBin, tool), join(noNode, tool)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    const r = await install(script, await first('node-a', '--no-start'), target, noNode);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /using the installed agent package/);
    assert.doesNotMatch(r.stderr, /downloading the agent/);
    assert.match(r.stdout, /stand-in agent: validate --config .*\/etc\/nfs-ha\/agent\.json/);
    await assert.rejects(stat(join(target, 'usr/local/lib/nfs-ha/nfs-ha-agent.mjs')), 'the old bundle is gone');
    await assert.rejects(stat(join(target, 'etc/systemd/system/nfs-ha-agent.service')), "the installer's old unit is gone: the package's serves");
    const config = JSON.parse(await readFile(join(target, 'etc/nfs-ha/agent.json'), 'utf8'));
    assert.equal(config.nodeId, 'node-a');
    // Without the package the same PATH is refused, naming the package as the way out.
    const bare = await tempDir('nfs-ha-root-');
    const refused = await install(script, await first('node-b', '--no-start'), bare, noNode);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /missing nodejs/);
  });

  it('on a Debian amd64 node without the package, installs the one the control plane serves, verified, and needs no Node', async () => {
    const script = await readFile(await servedScript(), 'utf8');
    const sha = createHash('sha256')
      .update(await readFile(agentPackage))
      .digest('hex');
    assert.match(script, new RegExp(`^PACKAGE_SHA256='${sha}'$`, 'm'));
    const enrolment = await h.call('POST', '/v1/clusters/inst/enrolments', { node: 'node-a' });
    assert.equal(enrolment.body.packageSha256, sha, 'nfs-ha enrol gives the package checksum for --sha256');
    // A node with dpkg (amd64), no node, no agent: apt-get "installs" by putting the stand-in
    // executable in place, and keeps the file it was given.
    const bin = join(dir, 'debian-bin');
    await mkdir(bin, { recursive: true });
    for (const tool of [...BASIC_TOOLS.filter((t) => t !== 'node'), ...NODE_TOOLS, 'systemctl'])
      await symlink(join(fullBin, tool), join(bin, tool)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    const stub = async (name: string, body: string) => {
      await writeFile(join(bin, name), `#!/bin/bash\n${body}\n`);
      await chmod(join(bin, name), 0o755);
    };
    await stub('dpkg', '[[ $1 == --print-architecture ]] && echo amd64');
    await stub('dpkg-query', '[[ -x $NFSHA_INSTALL_ROOT/usr/sbin/nfs-ha-agent ]] && echo 0.1.0');
    await stub(
      'apt-get',
      `echo "apt-get $*" >> "$SYSTEMCTL_LOG"\ncat "\${@: -1}" > "$NFSHA_INSTALL_ROOT/installed.deb"\nmkdir -p "$NFSHA_INSTALL_ROOT/usr/sbin"\n` +
        `printf '#!/bin/bash\\nexec %s %s "$@"\\n' ${JSON.stringify(process.execPath)} ${JSON.stringify(bundle)} > "$NFSHA_INSTALL_ROOT/usr/sbin/nfs-ha-agent"\nchmod 755 "$NFSHA_INSTALL_ROOT/usr/sbin/nfs-ha-agent"`,
    );
    const file = join(dir, 'install-debian.sh');
    await writeFile(file, script);
    const log = join(dir, 'apt-calls.log');
    // A wrong checksum from the operator: nothing installed.
    const wrongRoot = await tempDir('nfs-ha-root-');
    const wrong = await install(file, [...(await first('node-a', '--no-start')), '--sha256', 'e'.repeat(64)], wrongRoot, bin, { SYSTEMCTL_LOG: log });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /downloaded agent package does not match its checksum \(e{64}\)/);
    await assert.rejects(stat(join(wrongRoot, 'installed.deb')));
    const target = await tempDir('nfs-ha-root-');
    const r = await install(file, [...(await first('node-b', '--no-start')), '--sha256', sha], target, bin, { SYSTEMCTL_LOG: log });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /downloading the agent package from/);
    assert.match(await readFile(log, 'utf8'), /^apt-get install -y -q --no-install-recommends \/\S+\/nfs-ha-agent\.deb$/m);
    assert.ok((await readFile(join(target, 'installed.deb'))).equals(await readFile(agentPackage)), 'apt-get got the served package, byte for byte');
    assert.match(r.stdout, /stand-in agent: validate --config/);
    // Without a served package (Lambda), the script says none and the route refuses with a code.
    const kept = await readFile(agentPackage);
    await rm(agentPackage);
    try {
      assert.match(await readFile(await servedScript(), 'utf8'), /^PACKAGE_SHA256=''$/m);
      const none = await fetch(`${http.url}/install/nfs-ha-agent.deb`);
      assert.deepEqual([none.status, ((await none.json()) as { error: { code: string } }).error.code], [404, 'agent_package_unavailable']);
    } finally {
      await writeFile(agentPackage, kept);
    }
  });

  it('the configuration is checked by the agent before anything starts: a wrong allowed set changes nothing', async () => {
    const target = await tempDir('nfs-ha-root-');
    const script = await servedScript();
    assert.equal((await install(script, await first('node-a', '--no-start'), target)).code, 0);
    const configPath = join(target, 'etc/nfs-ha/agent.json');
    const before = await readFile(configPath, 'utf8');
    // A VG name the installer's own check lets through but the agent's schema does not (LVM reserves it).
    const r = await install(
      script,
      ['--insecure', '--no-start', '--device', ALLOWED[1]!, '--vg', 'snapshot_vg', '--mount-prefix', '/srv/nfs', '--yes'],
      target,
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the agent refused the configuration/);
    assert.equal(await readFile(configPath, 'utf8'), before);
  });

  it('refuses a bundle that does not match the checksum it was served with', async () => {
    const target = await tempDir('nfs-ha-root-');
    const script = await servedScript();
    const original = await readFile(bundle, 'utf8');
    await writeFile(bundle, `${original}// tampered\n`);
    try {
      const r = await install(script, await first('node-a', '--no-start'), target);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /does not match its checksum/);
      await assert.rejects(stat(join(target, 'usr/local/lib/nfs-ha/nfs-ha-agent.mjs')));
    } finally {
      await writeFile(bundle, original);
    }
  });

  it('rejects what is not an enrolment token before calling anyone', async () => {
    const bad = join(dir, 'bad-token');
    await writeFile(bad, 'x; rm -rf /');
    const r = await install(await servedScript(), ['--token-file', bad, ...ALLOWED, '--yes', '--insecure', '--no-start'], await tempDir('nfs-ha-root-'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /that is not an enrolment token/);
  });

  it('refreshing a node never moves the service: an agent that serves is reloaded, a passive one restarted', async () => {
    const target = await tempDir('nfs-ha-root-');
    const script = await servedScript();
    const log = join(dir, `systemctl-${Date.now()}.log`);
    assert.equal((await install(script, await first('node-a'), target, fullBin, { SYSTEMCTL_LOG: log })).code, 0);
    assert.match(await readFile(log, 'utf8'), /^start nfs-ha-agent$/m, 'a first install starts the agent');
    for (const [role, expected] of [
      ['active', 'reload'],
      ['activating', 'reload'],
      ['passive', 'restart'],
    ] as const) {
      await writeFile(log, '');
      const r = await install(script, ['--insecure'], target, fullBin, { SYSTEMCTL_LOG: log, AGENT_RUNNING: '0', STANDIN_ROLE: role });
      assert.equal(r.code, 0, r.stderr);
      const calls = (await readFile(log, 'utf8')).split('\n').filter((l) => /^(start|restart|reload|stop) /.test(l));
      assert.deepEqual(calls, [`${expected} nfs-ha-agent`], `${role}: ${calls.join(', ')}`);
    }
    // A preflight problem on the serving node is reported, and the reload still happens; a
    // passive node is not restarted into a failing preflight.
    await writeFile(log, '');
    const serving = await install(script, ['--insecure'], target, fullBin, {
      SYSTEMCTL_LOG: log,
      AGENT_RUNNING: '0',
      STANDIN_ROLE: 'active',
      STANDIN_VALIDATE: 'fail',
    });
    assert.equal(serving.code, 0, serving.stderr);
    assert.match(serving.stderr, /warning: the preflight found the problems above on this serving node; reloading anyway/);
    assert.match(await readFile(log, 'utf8'), /^reload nfs-ha-agent$/m);
    const passive = await install(script, ['--insecure'], target, fullBin, {
      SYSTEMCTL_LOG: log,
      AGENT_RUNNING: '0',
      STANDIN_ROLE: 'passive',
      STANDIN_VALIDATE: 'fail',
    });
    assert.equal(passive.code, 1);
    assert.match(passive.stderr, /preflight failed/);
  });
});
