/**
 * npm run build: the agent as one file runnable with plain `node` on a storage node, the operator
 * CLI, and the control plane's Lambda handler as one minified file; then, on linux-x64 (where the
 * pinned runtime exists), the agent as a single executable and its Debian package
 * (infra/package.ts; `--no-package` skips them). `--agent-bundle` builds the agent bundle alone,
 * before `npm start`, so that a fresh clone's control plane serves a working /install.sh. ESM bundles get a createRequire banner: some
 * dependencies still call require() for Node built-ins, which bare ESM lacks.
 */
import { copyFile, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { DOCS_FILES, docsDir } from '../control-plane/docs.ts';
import { buildAgentDeb, buildAgentExecutable } from './package.ts';

const REQUIRE_SHIM = "import { createRequire as __nfsHaCreateRequire } from 'node:module'; const require = __nfsHaCreateRequire(import.meta.url);";

export const BUNDLES = {
  agent: { entry: 'agent/main.ts', file: 'nfs-ha-agent.mjs', minify: false, shebang: true },
  cli: { entry: 'control-plane/cli.ts', file: 'nfs-ha.mjs', minify: false, shebang: true },
  lambda: { entry: 'control-plane/lambda.ts', file: 'lambda/index.mjs', minify: true, shebang: false },
} as const;

/** Builds one bundle into `outdir`; returns its path and size. */
export async function buildBundle(name: keyof typeof BUNDLES, outdir = 'dist'): Promise<{ path: string; bytes: number }> {
  const b = BUNDLES[name];
  const outfile = join(outdir, b.file);
  await build({
    entryPoints: [b.entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'esm',
    minify: b.minify,
    sourcemap: 'linked',
    legalComments: 'linked',
    banner: { js: `${b.shebang ? '#!/usr/bin/env node\n' : ''}${REQUIRE_SHIM}` },
    logLevel: 'warning',
  });
  return { path: outfile, bytes: (await stat(outfile)).size };
}

/** The installer's files beside the Lambda handler, where control-plane/install.ts looks for them. */
export async function copyInstallAssets(outdir = 'dist'): Promise<void> {
  const lambda = join(outdir, 'lambda');
  await copyFile('infra/install.sh', join(lambda, 'install.sh'));
  await copyFile('infra/systemd/nfs-ha-agent.service', join(lambda, 'nfs-ha-agent.service'));
  await copyFile(join(outdir, BUNDLES.agent.file), join(lambda, 'nfs-ha-agent.mjs'));
  // /docs serves Swagger UI from here on Lambda (control-plane/docs.ts).
  await mkdir(join(lambda, 'docs'), { recursive: true });
  for (const file of Object.keys(DOCS_FILES)) await copyFile(join(docsDir(), file), join(lambda, 'docs', file));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  if (process.argv.includes('--agent-bundle')) {
    // npm start's prestart: the agent that /install.sh serves, from this very source tree.
    const { path, bytes } = await buildBundle('agent');
    console.log(`agent bundle for /install.sh: ${path} (${(bytes / 1024).toFixed(0)} KiB)`);
    process.exit(0);
  }
  for (const name of Object.keys(BUNDLES) as (keyof typeof BUNDLES)[]) {
    const { path, bytes } = await buildBundle(name);
    console.log(`${name.padEnd(7)} ${path.padEnd(26)} ${(bytes / 1024).toFixed(0).padStart(6)} KiB`);
  }
  await copyInstallAssets();
  if (process.argv.includes('--no-package')) process.exit(0);
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    console.log(`package  not built: the pinned runtime and the .deb are linux-x64 only (this is ${process.platform}-${process.arch})`);
    process.exit(0);
  }
  const exe = await buildAgentExecutable();
  console.log(`agent    ${exe.path.padEnd(26)} ${(exe.bytes / 1024).toFixed(0).padStart(6)} KiB  (single executable, node ${exe.runtime})`);
  const deb = await buildAgentDeb('dist', exe.path);
  console.log(`package  ${deb.path.padEnd(26)} ${(deb.bytes / 1024).toFixed(0).padStart(6)} KiB`);
}
