/**
 * The installer served by the control plane (GET /install.sh), run for real with bash against a
 * control plane on loopback: under another root (NFSHA_INSTALL_ROOT), with --no-start, and with
 * a PATH holding only the tools it may use, so "what is missing" is the same on every machine.
 * The served agent bundle here is a stand-in that answers `validate`; the lab installs the real
 * one on real nodes with systemd.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, exampleSpec, runCommand, serveHarness, startHarness, tempDir } from '../helpers/control-plane.ts';

const root = new URL('../..', import.meta.url).pathname;
const BASIC_TOOLS = ['bash', 'id', 'dirname', 'mkdir', 'chmod', 'mktemp', 'rm', 'rmdir', 'curl', 'sha256sum', 'install', 'cat', 'mv', 'node'];
const NODE_TOOLS = ['sg_persist', 'lvm', 'exportfs', 'ip', 'arping'];

let h: Harness;
let http: Awaited<ReturnType<typeof serveHarness>>;
let dir: string;
let bundle: string;
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
  await writeFile(bundle, "console.log(`stand-in agent: ${process.argv.slice(2).join(' ')}`);\n");
  h = await startHarness({
    install: { script: join(root, 'infra/install.sh'), unit: join(root, 'infra/systemd/nfs-ha-agent.service'), bundle },
  });
  http = await serveHarness(h);
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

function install(script: string, args: string[], installRoot: string, bin = fullBin) {
  return runCommand([join(bin, 'bash'), script, ...args], { env: { PATH: bin, NFSHA_INSTALL_ROOT: installRoot, HOME: dir } });
}

async function enrolmentToken(node: string): Promise<string> {
  return (await h.call('POST', '/v1/clusters/inst/enrolments', { node })).body.token as string;
}

describe('installer (GET /install.sh)', () => {
  it('is served with this control plane, the bundle checksum and the unit filled in, and passes shellcheck', async () => {
    const file = await servedScript();
    const script = await readFile(file, 'utf8');
    assert.match(script, new RegExp(`^CONTROL_PLANE='${http.url}'$`, 'm'));
    assert.match(script, /^BUNDLE_SHA256='[0-9a-f]{64}'$/m);
    assert.ok(script.includes(await readFile(join(root, 'infra/systemd/nfs-ha-agent.service'), 'utf8')), 'the unit is embedded as it is');
    assert.ok(!script.includes('@@'), 'no placeholder left');
    const shellcheck = await runCommand(['shellcheck', '--shell=bash', file]);
    assert.equal(shellcheck.code, 0, `shellcheck (Debian package shellcheck) must pass:\n${shellcheck.stdout}${shellcheck.stderr}`);
  });

  it('says exactly which packages are missing, and changes nothing', async () => {
    const target = await tempDir('nfs-ha-root-');
    const r = await install(await servedScript(), ['--token', await enrolmentToken('node-a')], target, bareBin);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /error: missing sg3-utils lvm2 nfs-kernel-server iproute2 arping; install them with: apt-get install sg3-utils lvm2 nfs-kernel-server iproute2 arping/,
    );
    await assert.rejects(stat(join(target, 'etc/nfs-ha')), 'nothing written');
  });

  it('installs: verified bundle, enrolled credential (0600), unit, preflight; a rerun keeps the credential; --uninstall removes it', async () => {
    const target = await tempDir('nfs-ha-root-');
    const script = await servedScript();
    const r = await install(script, ['--token', await enrolmentToken('node-a'), '--no-start'], target);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /enrolled as node-a of cluster inst/);
    assert.match(r.stdout, /stand-in agent: validate --config .*\/etc\/nfs-ha\/agent\.json/, 'the preflight is the agent’s own validate');
    const configPath = join(target, 'etc/nfs-ha/agent.json');
    assert.equal((await stat(configPath)).mode & 0o777, 0o600);
    const config = JSON.parse(await readFile(configPath, 'utf8'));
    assert.equal(config.controlPlane.url, http.url);
    assert.equal(config.clusterId, 'inst');
    assert.equal(config.nodeId, 'node-a');
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
    assert.equal((await install(script, ['--token', await enrolmentToken('node-b'), '--no-start'], b)).code, 0);
    assert.equal(JSON.parse(await readFile(join(b, 'etc/nfs-ha/agent.json'), 'utf8')).peer.token, config.peer.token);

    const again = await install(script, ['--no-start'], target);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /keeping this node's credential/);
    assert.deepEqual(JSON.parse(await readFile(configPath, 'utf8')), config);

    const reused = await install(script, ['--token', 'nfsha_en_0123456789abcdef_' + 'x'.repeat(43), '--no-start'], target);
    assert.equal(reused.code, 1);
    assert.match(reused.stderr, /refused the enrolment token/);
    assert.deepEqual(JSON.parse(await readFile(configPath, 'utf8')), config, 'a refused token leaves the installed credential alone');

    const gone = await install(script, ['--uninstall', '--no-start'], target);
    assert.equal(gone.code, 0, gone.stderr);
    await assert.rejects(stat(configPath));
    await assert.rejects(stat(join(target, 'etc/systemd/system/nfs-ha-agent.service')));
  });

  it('refuses a bundle that does not match the checksum it was served with', async () => {
    const target = await tempDir('nfs-ha-root-');
    const script = await servedScript();
    const original = await readFile(bundle, 'utf8');
    await writeFile(bundle, `${original}// tampered\n`);
    try {
      const r = await install(script, ['--token', await enrolmentToken('node-a'), '--no-start'], target);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /does not match its checksum/);
      await assert.rejects(stat(join(target, 'usr/local/lib/nfs-ha/nfs-ha-agent.mjs')));
    } finally {
      await writeFile(bundle, original);
    }
  });

  it('rejects what is not an enrolment token before calling anyone', async () => {
    const r = await install(await servedScript(), ['--token', 'x; rm -rf /', '--no-start'], await tempDir('nfs-ha-root-'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /that is not an enrolment token/);
  });
});
