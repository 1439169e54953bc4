/**
 * The agent installer as served by the control plane: GET /install.sh (the script, with this
 * control plane's URL, the agent bundle's checksum and the systemd unit filled in) and
 * GET /install/nfs-ha-agent.mjs (the bundle). Both are public: neither holds a secret; the
 * enrolment token the operator passes to the script is what authenticates the node.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import { errorResponse } from './errors.ts';

export interface InstallAssets {
  script: string;
  unit: string;
  bundle: string;
}

/**
 * Where the files are: beside the bundle that runs (the build copies them next to the Lambda
 * handler and the packaged server), or in the repository.
 */
export function installAssets(env: NodeJS.ProcessEnv = process.env): InstallAssets {
  const beside = fileURLToPath(new URL('.', import.meta.url));
  if (existsSync(join(beside, 'install.sh')))
    return { script: join(beside, 'install.sh'), unit: join(beside, 'nfs-ha-agent.service'), bundle: env.NFSHA_AGENT_BUNDLE ?? join(beside, 'nfs-ha-agent.mjs') };
  const root = fileURLToPath(new URL('..', import.meta.url));
  return {
    script: join(root, 'infra/install.sh'),
    unit: join(root, 'infra/systemd/nfs-ha-agent.service'),
    bundle: env.NFSHA_AGENT_BUNDLE ?? join(root, 'dist/nfs-ha-agent.mjs'),
  };
}

/** The bundle's bytes and checksum, read again only when the file changes. */
export function bundleReader(path: string): () => Promise<{ mtimeMs: number; bytes: Buffer; sha256: string }> {
  let cached: { mtimeMs: number; bytes: Buffer; sha256: string } | null = null;
  return async () => {
    const { mtimeMs } = await stat(path);
    if (cached?.mtimeMs !== mtimeMs) {
      const bytes = await readFile(path);
      cached = { mtimeMs, bytes, sha256: createHash('sha256').update(bytes).digest('hex') };
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
  const bundle = bundleReader(assets.bundle);
  const unavailable = (c: Parameters<typeof errorResponse>[0]) =>
    errorResponse(c, 503, 'agent_bundle_unavailable', `the agent bundle is not on this control plane (${assets.bundle}); build it with: npm run build`);
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
      const [script, unit] = await Promise.all([readFile(assets.script, 'utf8'), readFile(assets.unit, 'utf8')]);
      const filled = script.replace('@@CONTROL_PLANE_URL@@', urls.agentUrl).replace('@@BUNDLE_SHA256@@', b.sha256).replace('@@AGENT_UNIT@@', unit.trimEnd());
      return c.body(filled, 200, { 'content-type': 'text/x-shellscript; charset=utf-8', 'cache-control': 'no-store' });
    })
    .get('/install/nfs-ha-agent.mjs', async (c) => {
      const b = await bundle().catch(() => null);
      if (!b) return unavailable(c);
      return c.body(new Uint8Array(b.bytes), 200, { 'content-type': 'text/javascript; charset=utf-8', 'x-checksum-sha256': b.sha256 });
    });
}
