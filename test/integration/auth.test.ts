import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { createApp } from '../../control-plane/app.ts';
import { exampleSpec, type Harness, hb, startHarness } from '../helpers/control-plane.ts';

let h: Harness;
const tokens: Record<string, string | null> = {};

before(async () => {
  h = await startHarness();
  for (const id of ['auth-a', 'auth-b']) await h.call('POST', '/v1/clusters', await exampleSpec(id));
  const readOnly = await h.credentials.issue('operator', { role: 'read-only', name: 'viewer' });
  const revoked = await h.credentials.issue('operator', { role: 'admin', name: 'gone' });
  await h.credentials.revoke('operator', revoked.record.id);
  Object.assign(tokens, {
    none: null,
    malformed: 'not-a-token',
    revoked: revoked.token,
    'read-only': readOnly.token,
    admin: h.adminToken,
    'agent of this node': await h.agentToken('auth-a', 'node-a'),
    'agent of the other node': await h.agentToken('auth-a', 'node-b'),
    'agent of another cluster': await h.agentToken('auth-b', 'node-a'),
  });
});
after(() => h.close());

function beat(token: string, body: unknown): RequestInit {
  return { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

/** Counts the store's credential reads from now on. */
function countSecretReads(store: Harness['store']) {
  let n = 0;
  const original = { getSecret: store.getSecret, listSecrets: store.listSecrets };
  store.getSecret = (...args) => (n++, original.getSecret.apply(store, args));
  store.listSecrets = (...args) => (n++, original.listSecrets.apply(store, args));
  return {
    count: () => n,
    restore: () => Object.assign(store, original),
  };
}

type Who = 'read-only' | 'admin' | 'agent of this node' | 'agent of the other node' | 'agent of another cluster';
const node = '/v1/clusters/auth-a/nodes/node-a';
const webhook = '/v1/clusters/auth-a/webhooks/wh_ffffffffffffffff';

/** Each route, a request to it, and the status each kind of caller gets (401 for the unauthenticated). */
const routes: { method: string; path: string; body?: unknown; allowed: Partial<Record<Who, number>> }[] = [
  { method: 'GET', path: '/v1/clusters', allowed: { 'read-only': 200, admin: 200 } },
  { method: 'POST', path: '/v1/clusters', body: {}, allowed: { admin: 400 } },
  { method: 'GET', path: '/v1/clusters/auth-a', allowed: { 'read-only': 200, admin: 200, 'agent of this node': 200, 'agent of the other node': 200 } },
  { method: 'GET', path: '/v1/clusters/auth-a/status', allowed: { 'read-only': 200, admin: 200 } },
  { method: 'GET', path: '/v1/clusters/auth-a/events', allowed: { 'read-only': 200, admin: 200 } },
  { method: 'GET', path: '/v1/clusters/auth-a/fencing', allowed: { 'read-only': 200, admin: 200 } },
  { method: 'POST', path: '/v1/clusters/auth-a/switchover', body: { to: 'node-b' }, allowed: { admin: 409 } },
  { method: 'PUT', path: '/v1/clusters/auth-a/maintenance', body: { enabled: false }, allowed: { admin: 200 } },
  { method: 'PUT', path: '/v1/clusters/auth-a/standby/node-b', body: { enabled: false }, allowed: { admin: 200 } },
  { method: 'POST', path: `${node}/heartbeat`, body: hb('passive'), allowed: { 'agent of this node': 200 } },
  { method: 'POST', path: `${node}/fencing`, body: { epoch: 99, keys: [] }, allowed: { 'agent of this node': 409 } },
  {
    method: 'POST',
    path: `${node}/phases`,
    body: { reportId: 'aaaaaaaa-0001', epoch: 99, phase: 'exports', direction: 'start', status: 'started' },
    allowed: { 'agent of this node': 409 },
  },
  { method: 'POST', path: `${node}/release`, body: { epoch: 99, reason: 'shutdown' }, allowed: { 'agent of this node': 409 } },
  { method: 'PUT', path: '/v1/clusters/auth-a', body: {}, allowed: { admin: 400 } },
  // In use (node-a's heartbeat above took the lease): refused, but only after authorization.
  { method: 'DELETE', path: '/v1/clusters/auth-a', allowed: { admin: 409 } },
  { method: 'POST', path: '/v1/keys', body: { role: 'read-only', name: 'matrix' }, allowed: { admin: 201 } },
  { method: 'GET', path: '/v1/keys', allowed: { admin: 200 } },
  { method: 'DELETE', path: '/v1/keys/ffffffffffffffff', allowed: { admin: 404 } },
  { method: 'POST', path: '/v1/clusters/auth-a/enrolments', body: { node: 'node-b' }, allowed: { admin: 201 } },
  { method: 'DELETE', path: '/v1/clusters/auth-a/credentials/ffffffffffffffff', allowed: { admin: 404 } },
  { method: 'POST', path: '/v1/clusters/auth-a/webhooks', body: { url: 'http://127.0.0.1:9/hook' }, allowed: { admin: 201 } },
  { method: 'GET', path: '/v1/clusters/auth-a/webhooks', allowed: { 'read-only': 200, admin: 200 } },
  { method: 'GET', path: `${webhook}`, allowed: { 'read-only': 404, admin: 404 } },
  { method: 'DELETE', path: `${webhook}`, allowed: { admin: 404 } },
  { method: 'GET', path: `${webhook}/deliveries`, allowed: { 'read-only': 404, admin: 404 } },
  { method: 'POST', path: `${webhook}/deliveries/dlv_000000000_00000000000000000000/redeliver`, allowed: { admin: 404 } },
  { method: 'POST', path: `${webhook}/test`, allowed: { admin: 404 } },
  { method: 'POST', path: `${webhook}/rotate-secret`, body: {}, allowed: { admin: 404 } },
  { method: 'GET', path: '/v1/clusters/auth-a/credentials', allowed: { admin: 200 } },
  { method: 'POST', path: '/v1/clusters/auth-a/credentials', body: { node: 'node-b', overlapSeconds: 60 }, allowed: { admin: 201 } },
  { method: 'POST', path: '/v1/clusters/auth-a/peer-secret', allowed: { admin: 201 } },
  // A backup holds every credential's hash: admins only, reading included.
  { method: 'POST', path: '/v1/backups', allowed: { admin: 201 } },
  { method: 'GET', path: '/v1/metrics', allowed: { 'read-only': 200, admin: 200 } },
  { method: 'GET', path: '/v1/backups/nfs-ha-2026-01-01T00-00-00-000Z.jsonl', allowed: { admin: 404 } },
];

describe('authorization matrix', () => {
  it('every route × every kind of caller gets exactly the expected status', async () => {
    const app = h.instance();
    const failures: string[] = [];
    let n = 0;
    for (const r of routes) {
      for (const [who, token] of Object.entries(tokens)) {
        const expected = token === null || who === 'malformed' || who === 'revoked' ? 401 : (r.allowed[who as Who] ?? 403);
        const res = await app.request(
          r.path,
          {
            method: r.method,
            headers: { ...(r.body !== undefined && { 'content-type': 'application/json' }), ...(token !== null && { authorization: `Bearer ${token}` }) },
            ...(r.body !== undefined && { body: JSON.stringify(r.body) }),
          },
          // A distinct client address per request: the failure limiter is tested on its own below.
          { incoming: { socket: { remoteAddress: `matrix-${n++}` } } },
        );
        // Errors are JSON; a success may be another format (the Prometheus text of /v1/metrics).
        const body = (res.headers.get('content-type')?.includes('json') ? await res.json() : {}) as { error?: { code: string } };
        const code = body.error?.code ?? '';
        const expectedCode = expected === 401 ? (token === null ? 'unauthenticated' : 'invalid_credential') : expected === 403 ? 'forbidden' : null;
        if (res.status !== expected || (expectedCode !== null && code !== expectedCode)) {
          failures.push(`${r.method} ${r.path} as ${who}: ${res.status} ${code} (expected ${expected} ${expectedCode ?? ''})`);
        }
      }
    }
    assert.deepEqual(failures, []);
  });

  it('the matrix covers every route of the API document', async () => {
    const doc = (await h.call('GET', '/openapi.json', undefined, h.app, null)).body as { paths: Record<string, Record<string, unknown>> };
    const template = (path: string) =>
      path
        .replace(/\/auth-a(\/|$)/, '/{clusterId}$1')
        .replace('/node-a/', '/{node}/')
        .replace(/\/standby\/node-b$/, '/standby/{node}')
        .replace(/\/(f{16})$/, '/{id}')
        .replace('/wh_ffffffffffffffff', '/{webhookId}')
        .replace(/\/dlv_[0-9_]+\//, '/{deliveryId}/')
        .replace(/\/nfs-ha-[^/]+\.jsonl$/, '/{name}');
    const covered = new Set(routes.map((r) => `${r.method} ${template(r.path)}`));
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map(
        (m) =>
          `${m.toUpperCase()} ${path
            .replace(/\{(keyId|credentialId)\}/, '{id}')
            .replace('/standby/{node}', '/standby/{node}')
            .replace('{clusterId}/nodes/{nodeId}', '{clusterId}/nodes/{node}')}`,
      ),
    );
    const missing = documented.filter((d) => !covered.has(d) && d !== 'POST /v1/enrol');
    assert.deepEqual(missing, [], 'routes without a row in the authorization matrix');
  });

  it('public: health, the API document, and the enrolment exchange (authenticated by its own token)', async () => {
    assert.equal((await h.call('GET', '/healthz', undefined, h.app, null)).status, 200);
    assert.equal((await h.call('GET', '/openapi.json', undefined, h.app, null)).status, 200);
    const docs = await h.app.request('/docs');
    assert.equal(docs.status, 200);
    assert.match(await docs.text(), /SwaggerUIBundle[\s\S]*\/openapi\.json/, 'interactive docs over the API document');
    const r = await h.call('POST', '/v1/enrol', { token: 'nfsha_en_0000000000000000_' + 'x'.repeat(43) }, h.app, null);
    assert.deepEqual([r.status, r.body.error.code], [401, 'invalid_enrolment_token']);
  });
});

describe('enrolment and revocation', () => {
  it('an enrolment token gives one agent credential for its node, once, before it expires', async () => {
    const e = await h.call('POST', '/v1/clusters/auth-a/enrolments', { node: 'node-b', ttlSeconds: 600 });
    assert.equal(e.status, 201);
    const first = await h.call('POST', '/v1/enrol', { token: e.body.token }, h.app, null);
    assert.equal(first.status, 201);
    assert.deepEqual([first.body.clusterId, first.body.node], ['auth-a', 'node-b']);
    const beat = await h.call('POST', '/v1/clusters/auth-a/nodes/node-b/heartbeat', hb('passive'), h.app, first.body.credential);
    assert.equal(beat.status, 200);
    const other = await h.call('POST', '/v1/clusters/auth-a/nodes/node-a/heartbeat', hb('passive'), h.app, first.body.credential);
    assert.equal(other.status, 403, 'only for its own node');
    const again = await h.call('POST', '/v1/enrol', { token: e.body.token }, h.app, null);
    assert.deepEqual([again.status, again.body.error.message], [401, 'the enrolment token was already used']);

    const late = await h.call('POST', '/v1/clusters/auth-a/enrolments', { node: 'node-b', ttlSeconds: 60 });
    h.clock.advance(61_000);
    const expired = await h.call('POST', '/v1/enrol', { token: late.body.token }, h.app, null);
    assert.deepEqual([expired.status, expired.body.error.message], [401, 'the enrolment token has expired; ask for a new one']);
  });

  it('a revoked credential stops working at once on the instance that revoked it', async () => {
    const cred = await h.credentials.issue('agent', { clusterId: 'auth-b', node: 'node-b' });
    const path = '/v1/clusters/auth-b/nodes/node-b/heartbeat';
    assert.equal((await h.call('POST', path, hb('passive'), h.app, cred.token)).status, 200);
    const r = await h.call('DELETE', `/v1/clusters/auth-b/credentials/${cred.record.id}`);
    assert.equal(r.status, 200);
    assert.equal((await h.call('POST', path, hb('passive'), h.app, cred.token)).status, 401);
    const key = await h.call('POST', '/v1/keys', { role: 'admin', name: 'temp' });
    assert.equal((await h.call('GET', '/v1/keys', undefined, h.app, key.body.key)).status, 200);
    assert.equal((await h.call('DELETE', `/v1/keys/${key.body.id}`)).status, 200);
    assert.equal((await h.call('GET', '/v1/keys', undefined, h.app, key.body.key)).status, 401);
    const listed = (await h.call('GET', '/v1/keys')).body.keys as { id: string; revokedAt: string | null; key?: string }[];
    assert.ok(listed.find((k) => k.id === key.body.id)?.revokedAt);
    assert.ok(
      listed.every((k) => k.key === undefined),
      'listing never shows a secret',
    );
  });
});

describe('secrets', () => {
  it('stored only as hashes, and never written to the log', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const app = createApp({ store: h.store, clock: h.clock, log: pino({ level: 'debug' }, sink) });
    const key = await h.call('POST', '/v1/keys', { role: 'read-only', name: 'logged?' }, app);
    await h.call('GET', '/v1/clusters', undefined, app, key.body.key);
    await h.call('GET', '/v1/clusters', undefined, app, `${key.body.key}x`);
    const secret = (key.body.key as string).split('_').at(-1)!;
    const record = await h.store.getSecret('operator', key.body.id);
    assert.ok(record && !JSON.stringify(record).includes(secret), 'the store holds a hash, not the secret');
    assert.ok(lines.length > 0, 'the app did log');
    assert.ok(!lines.join('').includes(secret), 'no log line carries the secret');
  });

  it("repeated failed authentications from one address are refused for a while, but never a valid credential's requests", async () => {
    const app = h.instance();
    const env = { incoming: { socket: { remoteAddress: '192.0.2.7' } } };
    const attempt = () => app.request('/v1/clusters', { headers: { authorization: 'Bearer nfsha_op_0000000000000000_' + 'y'.repeat(43) } }, env);
    const statuses: number[] = [];
    for (let i = 0; i < 22; i++) statuses.push((await attempt()).status);
    assert.deepEqual([statuses.slice(0, 20).every((s) => s === 401), statuses.slice(20)], [true, [429, 429]]);
    const good = await app.request('/v1/clusters', { headers: { authorization: `Bearer ${h.adminToken}` } }, env);
    assert.equal(good.status, 200, 'a valid credential from the same address (a NAT, a proxy) is served');
    assert.equal((await attempt()).status, 429, 'and the address stays locked for bad ones');
  });

  it('1,000 bad-key requests from the agents’ own address while two agents renew: no renewal missed, no store read for a bad key', async () => {
    const app = h.instance();
    await h.clusterHeldByNodeA('flood');
    const env = { incoming: { socket: { remoteAddress: '198.51.100.10' } } };
    const tokens = { a: await h.agentToken('flood', 'node-a'), b: await h.agentToken('flood', 'node-b') };
    // Warm: the directory is loaded by the first request, as at any start.
    await app.request('/v1/clusters/flood/nodes/node-a/heartbeat', beat(tokens.a, hb('active', 1)), env);
    const reads = countSecretReads(h.store);
    const bad = Array.from({ length: 1000 }, (_, i) =>
      app.request('/v1/clusters/flood/nodes/node-a/heartbeat', beat(`nfsha_ag_${i.toString(16).padStart(16, '0')}_${'z'.repeat(43)}`, hb('active', 1)), env),
    );
    // Each agent renews one request after the other, as agents do, while the flood runs.
    const agent = async (node: string, token: string, body: unknown) => {
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) statuses.push((await app.request(`/v1/clusters/flood/nodes/${node}/heartbeat`, beat(token, body), env)).status);
      return statuses;
    };
    const [flood, a, b] = await Promise.all([Promise.all(bad), agent('node-a', tokens.a, hb('active', 1)), agent('node-b', tokens.b, hb('passive', 0))]);
    const badStatuses = new Set(flood.map((r) => r.status));
    assert.deepEqual(
      [...a, ...b].filter((s) => s !== 200),
      [],
      'every renewal answered 200',
    );
    assert.deepEqual([...badStatuses].sort(), [401, 429]);
    assert.ok(reads.count() <= 20, `bad keys cost ${reads.count()} store reads (at most the unknown-id budget of 20)`);
    reads.restore();
  });
});
