/** The API document as clients and their generators read it, and the docs page built on it. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createConfig, lintFromString } from '@redocly/openapi-core';
import { type Harness, startHarness } from '../helpers/control-plane.ts';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(() => h.close());

describe('/openapi.json', () => {
  it("passes Redocly's recommended ruleset with no error and no warning", async () => {
    const doc = await (await h.app.request('/openapi.json')).text();
    const problems = await lintFromString({ source: doc, absoluteRef: 'openapi.json', config: await createConfig({ extends: ['recommended'] }) });
    assert.deepEqual(
      problems.map((p) => `${p.severity} ${p.ruleId}: ${p.message} (${p.location[0]?.pointer ?? ''})`),
      [],
    );
  });

  it('names every operation, declares the bearer scheme for all but the enrolment exchange, and its server', async () => {
    const doc = (await (await h.app.request('/openapi.json')).json()) as {
      servers: { url: string }[];
      security: Record<string, string[]>[];
      components: { securitySchemes: Record<string, { type: string; scheme: string }> };
      paths: Record<string, Record<string, { operationId?: string; security?: unknown[] }>>;
    };
    const operations = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({ at: `${method} ${path}`, ...op })));
    const ids = operations.map((o) => o.operationId);
    assert.ok(ids.every(Boolean), 'every operation has an operationId');
    assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');
    const { type, scheme } = doc.components.securitySchemes.bearer!;
    assert.deepEqual([type, scheme], ['http', 'bearer'], 'Swagger UI shows an Authorize button for it');
    assert.deepEqual(doc.security, [{ bearer: [] }]);
    assert.deepEqual(
      operations.filter((o) => o.security !== undefined).map((o) => [o.at, o.security]),
      [['post /v1/enrol', []]],
    );
    assert.equal(doc.servers[0]?.url, 'http://127.0.0.1:8080', "the harness's public URL");
  });
});

describe('GET / (the status page)', () => {
  it('is one self-contained document that loads nothing from elsewhere and may not be framed', async () => {
    const r = await h.app.request('/');
    assert.equal(r.status, 200);
    const csp = r.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /connect-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    const page = await r.text();
    assert.deepEqual([...page.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]), ['/docs'], 'only a link to the API docs');
    assert.match(page, /sessionStorage/);
    assert.doesNotMatch(page, /localStorage|[?&](key|token)=/, 'the key stays in the tab, never in a URL');
  });
});

describe('/docs', () => {
  it('is Swagger UI served from the package itself: the page loads nothing from elsewhere', async () => {
    const page = await (await h.app.request('/docs')).text();
    assert.match(page, /SwaggerUIBundle\(\{ url: '\/openapi\.json'/);
    const loaded = [...page.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    assert.deepEqual(loaded, ['/docs/swagger-ui.css', '/docs/swagger-ui-bundle.js']);
    for (const path of loaded) {
      const r = await h.app.request(path);
      assert.equal(r.status, 200, path);
      assert.ok((await r.arrayBuffer()).byteLength > 10_000, `${path} is the real file`);
    }
    assert.match((await h.app.request('/docs/swagger-ui-bundle.js')).headers.get('content-type') ?? '', /javascript/);
  });
});
