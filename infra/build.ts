/**
 * npm run build: the agent as one file runnable with plain `node` on a storage node, the operator
 * CLI, the control plane's Lambda handler as one minified file, and the control plane as a Node
 * server (dist/control-plane/: the server, the embedded store's worker, the LevelDB addon, the
 * installer's files and the API docs); then, on linux-x64 (where the pinned runtime exists), the
 * agent as a single executable and both Debian packages (infra/package.ts; `--no-package` skips
 * them). `--agent-bundle` builds the agent bundle alone, before `npm start`, so that a fresh
 * clone's control plane serves a working /install.sh. ESM bundles get a createRequire banner: some
 * dependencies still call require() for Node built-ins, which bare ESM lacks.
 */
import { copyFile, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type BuildOptions, type Plugin } from 'esbuild';
import { DOCS_FILES, docsDir } from '../control-plane/docs.ts';
import { buildAgentExecutable, buildAgentDeb, buildControlPlaneDeb } from './package.ts';

const REQUIRE_SHIM = "import { createRequire as __nfsHaCreateRequire } from 'node:module'; const require = __nfsHaCreateRequire(import.meta.url);";
const ESM: BuildOptions = { bundle: true, platform: 'node', target: 'node22', format: 'esm', sourcemap: 'linked', legalComments: 'linked', logLevel: 'warning' };

export const BUNDLES = {
  agent: { entry: 'agent/main.ts', file: 'nfs-ha-agent.mjs', minify: false, shebang: true },
  cli: { entry: 'control-plane/cli.ts', file: 'nfs-ha.mjs', minify: false, shebang: true },
  lambda: { entry: 'control-plane/lambda.ts', file: 'lambda/index.mjs', minify: true, shebang: false },
} as const;

/** Where `npm run build` puts the control plane as a Node server (the package installs this directory). */
export const SERVER_DIR = 'control-plane';
/** The LevelDB addon of the embedded store, for this platform, beside the server's bundles. */
export const LEVELDB_ADDON = 'classic-level.node';

/** Builds one bundle into `outdir`; returns its path and size. */
export async function buildBundle(name: keyof typeof BUNDLES, outdir = 'dist'): Promise<{ path: string; bytes: number }> {
  const b = BUNDLES[name];
  const outfile = join(outdir, b.file);
  await build({ ...ESM, entryPoints: [b.entry], outfile, minify: b.minify, banner: { js: `${b.shebang ? '#!/usr/bin/env node\n' : ''}${REQUIRE_SHIM}` } });
  return { path: outfile, bytes: (await stat(outfile)).size };
}

/**
 * The embedded store's two packages that expect their own directory at run time. classic-level
 * finds its addon through node-gyp-build from its package directory, which a bundle no longer has:
 * bundled, it loads the addon the build copied beside the bundle. dynalite requires each action
 * by a computed name without the extension, which esbuild's glob import only matches with it.
 */
const embeddedStoreInBundle: Plugin = {
  name: 'embedded-store',
  setup(b) {
    b.onLoad({ filter: /[\\/]classic-level[\\/]binding\.js$/ }, () => ({ contents: `module.exports = require('./${LEVELDB_ADDON}');`, loader: 'js' }));
    b.onResolve({ filter: /^\.\/classic-level\.node$/ }, (args) => ({ path: args.path, external: true }));
    b.onLoad({ filter: /[\\/]dynalite[\\/]index\.js$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      const contents = source.replace(/require\('\.\/(actions|validations)\/' \+ action\)/g, "require('./$1/' + action + '.js')");
      if (contents.split("+ action + '.js')").length !== 3) throw new Error(`${args.path}: dynalite's action requires changed; update infra/build.ts`);
      return { contents, loader: 'js' };
    });
  },
};

/**
 * The control plane as a Node server, in `outdir/control-plane/`: server.mjs, the embedded
 * store's worker beside it (where control-plane/store/embedded.ts starts it from), the LevelDB
 * addon, the operator CLI, and the installer's files and API docs. Runs on any Node ≥ 22 with
 * nothing else installed: `node server.mjs`.
 */
export async function buildServer(outdir = 'dist'): Promise<{ dir: string; bytes: number }> {
  const dir = join(outdir, SERVER_DIR);
  await rm(dir, { recursive: true, force: true });
  await build({
    ...ESM,
    entryPoints: { server: 'control-plane/server.ts', 'embedded-worker': 'control-plane/store/embedded-worker.mjs' },
    outdir: dir,
    outExtension: { '.js': '.mjs' },
    banner: { js: REQUIRE_SHIM },
    plugins: [embeddedStoreInBundle],
  });
  // The addon classic-level itself would load here (node-gyp-build's choice for this platform).
  const level = createRequire(import.meta.url).resolve('classic-level/package.json');
  const nodeGypBuild = createRequire(level)('node-gyp-build') as { resolve(dir: string): string };
  await copyFile(nodeGypBuild.resolve(dirname(level)), join(dir, LEVELDB_ADDON));
  await copyFile(join(outdir, BUNDLES.cli.file), join(dir, BUNDLES.cli.file));
  await copyInstallAssets(dir, outdir);
  return { dir, bytes: (await stat(join(dir, 'server.mjs'))).size };
}

/**
 * The installer's files and the API docs beside a control plane's bundle (the Lambda handler's
 * or the server's), where control-plane/install.ts and docs.ts look for them first.
 */
export async function copyInstallAssets(dir: string, outdir = 'dist'): Promise<void> {
  await copyFile('infra/install.sh', join(dir, 'install.sh'));
  await copyFile('infra/systemd/nfs-ha-agent.service', join(dir, 'nfs-ha-agent.service'));
  await copyFile(join(outdir, BUNDLES.agent.file), join(dir, 'nfs-ha-agent.mjs'));
  await mkdir(join(dir, 'docs'), { recursive: true });
  for (const file of Object.keys(DOCS_FILES)) await copyFile(join(docsDir(), file), join(dir, 'docs', file));
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
    console.log(`${name.padEnd(7)} ${path.padEnd(42)} ${(bytes / 1024).toFixed(0).padStart(6)} KiB`);
  }
  await copyInstallAssets(join('dist', dirname(BUNDLES.lambda.file)));
  const server = await buildServer();
  console.log(`server  ${join(server.dir, 'server.mjs').padEnd(42)} ${(server.bytes / 1024).toFixed(0).padStart(6)} KiB  (+ embedded store worker, LevelDB addon, installer, docs)`);
  if (process.argv.includes('--no-package')) process.exit(0);
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    console.log(`package  not built: the pinned runtime and the .deb are linux-x64 only (this is ${process.platform}-${process.arch})`);
    process.exit(0);
  }
  const exe = await buildAgentExecutable();
  console.log(`agent    ${exe.path.padEnd(42)} ${(exe.bytes / 1024).toFixed(0).padStart(6)} KiB  (single executable, node ${exe.runtime})`);
  const agentDeb = await buildAgentDeb('dist', exe.path);
  for (const deb of [agentDeb, await buildControlPlaneDeb('dist', server.dir, agentDeb.path)])
    console.log(`package  ${deb.path.padEnd(42)} ${(deb.bytes / 1024).toFixed(0).padStart(6)} KiB`);
}
