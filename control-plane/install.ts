/**
 * The agent installer as served by the control plane: GET /install.sh (the script, with this
 * control plane's URL, the checksums of the agent bundle and package and the systemd unit filled
 * in), GET /install/nfs-ha-agent.mjs (the bundle, for a node's own Node) and, where this control
 * plane has it, GET /install/nfs-ha-agent.deb (the agent's package, with its own runtime: what a
 * Debian amd64 node installs). All are public: none holds a secret; the enrolment token the
 * operator passes to the script is what authenticates the node.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import { debFileName } from '../shared/version.ts';
import { errorResponse } from './errors.ts';

export interface InstallAssets {
  script: string;
  unit: string;
  bundle: string;
  /** The agent's Debian package; absent on Lambda (its responses are limited to 6 MB). */
  package: string;
}

/**
 * Where the files are: beside the bundle that runs (the build copies them next to the Lambda
 * handler and the packaged server), or in the repository.
 */
export function installAssets(env: NodeJS.ProcessEnv = process.env): InstallAssets {
  const beside = fileURLToPath(new URL('.', import.meta.url));
  const dir = existsSync(join(beside, 'install.sh')) ? beside : null;
  const root = fileURLToPath(new URL('..', import.meta.url));
  return {
    script: dir ? join(dir, 'install.sh') : join(root, 'infra/install.sh'),
    unit: dir ? join(dir, 'nfs-ha-agent.service') : join(root, 'infra/systemd/nfs-ha-agent.service'),
    bundle: env.NFSHA_AGENT_BUNDLE ?? join(dir ?? join(root, 'dist'), 'nfs-ha-agent.mjs'),
    package: join(dir ?? join(root, 'dist'), debFileName()),
  };
}

/** A file the installer hands out: its size and checksum, computed again only when it changes. */
export function artifactReader(path: string): () => Promise<{ size: number; sha256: string }> {
  let cached: { mtimeMs: number; size: number; sha256: string } | null = null;
  return async () => {
    const { mtimeMs, size } = await stat(path);
    if (cached?.mtimeMs !== mtimeMs || cached.size !== size) {
      const hash = createHash('sha256');
      for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
      cached = { mtimeMs, size, sha256: hash.digest('hex') };
    }
    return cached;
  };
}

/**
 * `urls.agentUrl`: what the script calls and writes into the node's config — from the
 * configuration (NFSHA_PUBLIC_URL / NFSHA_AGENT_URL, validated to plain URL characters), never
 * from request headers, which anyone (or a misconfigured proxy) can set.
 */
export function installRouter(assets: InstallAssets, urls: { agentUrl: string | null }) {
  const bundle = artifactReader(assets.bundle);
  const pkg = artifactReader(assets.package);
  const unavailable = (c: Parameters<typeof errorResponse>[0]) =>
    errorResponse(c, 503, 'agent_bundle_unavailable', `the agent bundle is not on this control plane (${assets.bundle}); build it with: npm run build`);
  /** The file as a stream: the package is tens of MiB, never held in memory for a slow reader. */
  const serve = (path: string, size: number, sha256: string, type: string) =>
    new Response(Readable.toWeb(createReadStream(path)) as ReadableStream, {
      headers: { 'content-type': type, 'content-length': String(size), 'x-checksum-sha256': sha256 },
    });
  return new Hono()
    .get('/install.sh', async (c) => {
      if (!urls.agentUrl)
        return errorResponse(
          c,
          503,
          'public_url_not_configured',
          'this control plane does not know the URL nodes reach it by: set NFSHA_PUBLIC_URL (e.g. https://nfs-ha.example.net)',
        );
      const b = await bundle().catch(() => null);
      if (!b) return unavailable(c);
      const p = await pkg().catch(() => null);
      const [script, unit] = await Promise.all([readFile(assets.script, 'utf8'), readFile(assets.unit, 'utf8')]);
      const filled = script
        .replace('@@CONTROL_PLANE_URL@@', urls.agentUrl)
        .replace('@@BUNDLE_SHA256@@', b.sha256)
        .replace('@@PACKAGE_SHA256@@', p?.sha256 ?? '')
        .replace('@@AGENT_UNIT@@', unit.trimEnd());
      return c.body(filled, 200, { 'content-type': 'text/x-shellscript; charset=utf-8', 'cache-control': 'no-store' });
    })
    .get('/install/nfs-ha-agent.mjs', async (c) => {
      const b = await bundle().catch(() => null);
      if (!b) return unavailable(c);
      return serve(assets.bundle, b.size, b.sha256, 'text/javascript; charset=utf-8');
    })
    .get('/install/nfs-ha-agent.deb', async (c) => {
      const p = await pkg().catch(() => null);
      if (!p)
        return errorResponse(
          c,
          404,
          'agent_package_unavailable',
          'this control plane serves no agent package (on AWS, or not built): copy nfs-ha-agent_<version>_amd64.deb to the node and pass --package FILE',
        );
      return serve(assets.package, p.size, p.sha256, 'application/vnd.debian.binary-package');
    });
}
