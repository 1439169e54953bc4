/**
 * /docs: Swagger UI over /openapi.json, served from the package itself (swagger-ui-dist) — a
 * storage network is often air-gapped, and a CDN would also see who reads the docs. Its
 * Authorize button takes an API key (the document declares the bearer scheme); the key stays in
 * the page, never in a URL.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';

/** The files the page loads, each read once. */
export const DOCS_FILES = { 'swagger-ui.css': 'text/css; charset=utf-8', 'swagger-ui-bundle.js': 'text/javascript; charset=utf-8' } as const;

/**
 * Where the files are: in docs/ beside the bundle that runs (infra/build.ts copies them next to
 * the Lambda handler), else in the installed package.
 */
export function docsDir(): string {
  const beside = fileURLToPath(new URL('./docs/', import.meta.url));
  if (existsSync(join(beside, 'swagger-ui.css'))) return beside;
  try {
    return dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
  } catch {
    return beside; // neither: the page says what is missing
  }
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nfs-ha control plane API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', persistAuthorization: false, tryItOutEnabled: false });
</script>
</body>
</html>
`;

export function docsRouter(dir: string) {
  const cache = new Map<string, Promise<Buffer>>();
  const app = new Hono();
  app.get('/docs', (c) => c.html(PAGE));
  for (const [file, type] of Object.entries(DOCS_FILES)) {
    app.get(`/docs/${file}`, async (c) => {
      if (!cache.has(file)) cache.set(file, readFile(join(dir, file)));
      const body = await cache.get(file)!.catch(() => {
        cache.delete(file);
        return null;
      });
      if (!body) return c.json({ error: { code: 'docs_unavailable', message: `${file} is missing from ${dir}; reinstall the package or rebuild` } }, 503);
      return c.body(new Uint8Array(body), 200, { 'content-type': type, 'cache-control': 'public, max-age=86400' });
    });
  }
  return app;
}
