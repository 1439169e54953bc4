/** Operator keys, enrolment tokens and agent credentials. Secrets appear once, in the creating response. */
import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import { EnrolmentSchema } from '../../shared/api.ts';
import { OperatorRole } from '../../shared/credentials.ts';
import { NodeId } from '../../shared/names.ts';
import { randomBytes } from 'node:crypto';
import { type Credentials, ENROLMENT_TTL_MS, live, ROTATION_OVERLAP_MS } from '../auth.ts';
import type { Clock } from '../clock.ts';
import { ApiError } from '../errors.ts';
import { artifactReader, type InstallAssets } from '../install.ts';
import type { SecretRecord, Store } from '../store/store.ts';
import { ClusterParams, errors, existingCluster, jsonBody, jsonResponse, router } from './router.ts';

const tags = ['credentials'];
const iso = (ms: number | null | undefined) => (ms == null ? null : new Date(ms).toISOString());
const SecretId = z.string().regex(/^[0-9a-f]{16}$/, 'must be a credential id (16 hex digits)');

const KeySchema = z.object({ id: z.string(), role: OperatorRole, name: z.string(), createdAt: z.string(), revokedAt: z.string().nullable() });
const AgentCredentialSchema = z.object({
  id: z.string(),
  node: NodeId,
  createdAt: z.string(),
  revokedAt: z.string().nullable(),
  expiresAt: z.string().nullable().describe('When a rotation superseded it, the end of its overlap'),
  live: z.boolean(),
});
const Page = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(100),
  cursor: SecretId.optional().describe('The last id of the previous page'),
});

/** One page of records sorted by id, after `cursor`. */
function page<T extends { id: string }>(records: T[], query: { limit: number; cursor?: string | undefined }): { items: T[]; cursor: string | null } {
  const sorted = records.filter((r) => query.cursor === undefined || r.id > query.cursor).sort((a, b) => (a.id < b.id ? -1 : 1));
  const items = sorted.slice(0, query.limit);
  return { items, cursor: sorted.length > query.limit ? items.at(-1)!.id : null };
}

const overlapSeconds = z
  .number()
  .int()
  .min(0)
  .max(ROTATION_OVERLAP_MS.max / 1000)
  .optional()
  .describe(`How long the previous secret keeps working (default ${ROTATION_OVERLAP_MS.default / 1000} s)`);

export function credentialsRouter(deps: { store: Store; credentials: Credentials; clock: Clock; install: InstallAssets }) {
  const { store, credentials, clock } = deps;
  const bundle = artifactReader(deps.install.bundle);
  const pkg = artifactReader(deps.install.package);
  const agentView = (r: SecretRecord) => ({
    id: r.id,
    node: r.node!,
    createdAt: iso(r.createdAt)!,
    revokedAt: iso(r.revokedAt),
    expiresAt: iso(r.expiresAt),
    live: live(r, clock.now()),
  });
  return router()
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'createKey',
        path: '/v1/keys',
        tags,
        summary: 'Create an operator API key (admin)',
        request: jsonBody(z.object({ role: OperatorRole, name: z.string().min(1).max(100) }).strict()),
        responses: { 201: jsonResponse(KeySchema.extend({ key: z.string().describe('Shown once; store it now') }), 'The key'), ...errors(400, 503) },
      }),
      async (c) => {
        const { role, name } = c.req.valid('json');
        const { token, record } = await credentials.issue('operator', { role, name });
        return c.json({ id: record.id, role, name, createdAt: iso(record.createdAt)!, revokedAt: null, key: token }, 201);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        operationId: 'listKeys',
        path: '/v1/keys',
        tags,
        summary: 'List operator keys, without secrets (admin)',
        request: { query: Page },
        responses: { 200: jsonResponse(z.object({ keys: z.array(KeySchema), cursor: z.string().nullable() }), 'A page of keys, by id'), ...errors(400, 503) },
      }),
      async (c) => {
        const { items, cursor } = page(await store.listSecrets('operator'), c.req.valid('query'));
        const keys = items.map((r) => ({
          id: r.id,
          role: r.role ?? 'read-only',
          name: r.name ?? '',
          createdAt: iso(r.createdAt)!,
          revokedAt: iso(r.revokedAt),
        }));
        return c.json({ keys, cursor }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'delete',
        operationId: 'revokeKey',
        path: '/v1/keys/{keyId}',
        tags,
        summary: 'Revoke an operator key (admin)',
        description: 'The last live admin key cannot be revoked: create another admin key first (recovery without one: README, "Credentials").',
        request: { params: z.object({ keyId: SecretId }) },
        responses: { 200: jsonResponse(z.object({ id: z.string(), revoked: z.literal(true) }), 'Revoked'), ...errors(400, 404, 409, 503) },
      }),
      async (c) => {
        const { keyId } = c.req.valid('param');
        const key = await store.getSecret('operator', keyId);
        if (!key) throw new ApiError(404, 'key_not_found', `no operator key ${keyId}`);
        const admins = (await store.listSecrets('operator')).filter((r) => r.role === 'admin' && live(r, clock.now()));
        if (key.role === 'admin' && admins.length === 1 && admins[0]!.id === keyId)
          throw new ApiError(
            409,
            'last_admin_key',
            `key ${keyId} is the last admin key: revoking it would lock every operator out; create another admin key first`,
          );
        await credentials.revoke('operator', keyId);
        return c.json({ id: keyId, revoked: true as const }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'createEnrolment',
        path: '/v1/clusters/{clusterId}/enrolments',
        tags,
        summary: 'Create a one-time enrolment token for a node (admin)',
        description: "The installer exchanges it (POST /v1/enrol) for the node's agent credential. One use, short-lived.",
        request: {
          params: ClusterParams,
          ...jsonBody(
            z
              .object({
                node: NodeId,
                ttlSeconds: z
                  .number()
                  .int()
                  .min(60)
                  .max(ENROLMENT_TTL_MS.max / 1000)
                  .optional(),
              })
              .strict(),
          ),
        },
        responses: {
          201: jsonResponse(
            z.object({
              token: z.string(),
              clusterId: z.string(),
              node: z.string(),
              expiresAt: z.string(),
              agentSha256: z
                .string()
                .nullable()
                .describe(
                  "SHA-256 of the agent bundle this control plane serves (for a node that runs the agent on its own Node): give it to the installer's --sha256, so the node checks the download against what you saw here",
                ),
              packageSha256: z
                .string()
                .nullable()
                .describe(
                  "SHA-256 of the agent package this control plane serves (null: none), which a Debian amd64 node installs: give it to the installer's --sha256 there",
                ),
            }),
            'The token (shown once)',
          ),
          ...errors(400, 404, 503),
        },
      }),
      async (c) => {
        const { clusterId } = c.req.valid('param');
        const { node, ttlSeconds } = c.req.valid('json');
        const cluster = await existingCluster(store, clusterId);
        if (!cluster.spec.nodes.some((n) => n.id === node)) throw new ApiError(404, 'node_not_found', `"${node}" is not a node of cluster ${clusterId}`);
        const expiresAt = clock.now() + (ttlSeconds ? ttlSeconds * 1000 : ENROLMENT_TTL_MS.default);
        const { token } = await credentials.issue('enrolment', { clusterId, node, expiresAt, usedAt: null });
        const agentSha256 = (await bundle().catch(() => null))?.sha256 ?? null;
        const packageSha256 = (await pkg().catch(() => null))?.sha256 ?? null;
        return c.json({ token, clusterId, node, expiresAt: iso(expiresAt)!, agentSha256, packageSha256 }, 201);
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'enrol',
        path: '/v1/enrol',
        tags,
        // Authenticated by the enrolment token in its body, not a bearer credential.
        security: [],
        summary: "Exchange an enrolment token for the node's agent credential",
        request: jsonBody(z.object({ token: z.string().max(200) }).strict()),
        responses: {
          201: jsonResponse(EnrolmentSchema, 'Enrolled'),
          ...errors(400, 503),
        },
      }),
      async (c) => {
        const result = await credentials.enrol(c.req.valid('json').token);
        if ('refused' in result) throw new ApiError(401, 'invalid_enrolment_token', result.refused);
        return c.json(
          {
            credential: result.token,
            clusterId: result.clusterId,
            node: result.node,
            peerToken: result.peerToken,
            previousPeerToken: result.previousPeerToken,
          },
          201,
        );
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        operationId: 'listAgentCredentials',
        path: '/v1/clusters/{clusterId}/credentials',
        tags,
        summary: "List the cluster's agent credentials, without secrets (admin)",
        request: {
          params: ClusterParams,
          query: Page.extend({ node: NodeId.optional(), all: z.enum(['true', 'false']).default('false').describe('Include revoked and expired ones') }),
        },
        responses: {
          200: jsonResponse(z.object({ credentials: z.array(AgentCredentialSchema), cursor: z.string().nullable() }), 'A page of credentials, by id'),
          ...errors(400, 404, 503),
        },
      }),
      async (c) => {
        const { clusterId } = c.req.valid('param');
        const { node, all, ...query } = c.req.valid('query');
        await existingCluster(store, clusterId);
        const records = (await store.listSecrets('agent')).filter(
          (r) => r.clusterId === clusterId && (node === undefined || r.node === node) && (all === 'true' || live(r, clock.now())),
        );
        const { items, cursor } = page(records, query);
        return c.json({ credentials: items.map(agentView), cursor }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'rotateAgentCredential',
        path: '/v1/clusters/{clusterId}/credentials',
        tags,
        summary: 'Rotate a node’s agent credential (admin)',
        description:
          "Issues a new credential for the node. Its other credentials keep working for the overlap (default 1 h), then stop: put the new one in the node's agent.json and reload the agent (`systemctl reload nfs-ha-agent`) within it — no restart, no failover.",
        request: { params: ClusterParams, ...jsonBody(z.object({ node: NodeId, overlapSeconds }).strict()) },
        responses: {
          201: jsonResponse(
            AgentCredentialSchema.extend({
              credential: z.string().describe('Shown once'),
              superseded: z.array(z.string()).describe('Credentials that stop working at the end of the overlap'),
              overlapUntil: z.string(),
            }),
            'The new credential',
          ),
          ...errors(400, 404, 503),
        },
      }),
      async (c) => {
        const { clusterId } = c.req.valid('param');
        const { node, overlapSeconds: overlap } = c.req.valid('json');
        const cluster = await existingCluster(store, clusterId);
        if (!cluster.spec.nodes.some((n) => n.id === node)) throw new ApiError(404, 'node_not_found', `"${node}" is not a node of cluster ${clusterId}`);
        const overlapMs = overlap === undefined ? ROTATION_OVERLAP_MS.default : overlap * 1000;
        const { token, record, superseded } = await credentials.rotate(clusterId, node, overlapMs);
        return c.json({ ...agentView(record), credential: token, superseded, overlapUntil: iso(clock.now() + overlapMs)! }, 201);
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'rotatePeerSecret',
        path: '/v1/clusters/{clusterId}/peer-secret',
        tags,
        summary: "Rotate the nodes' peer-channel secret (admin)",
        description:
          'A new secret for the peer channel; the previous one stays known as the previous secret, which agents keep accepting during the rotation. Give the new one to both nodes (`nfs-ha-agent peer-secret --stdin`, which keeps the old one as previous and reloads the agent): the peer channel keeps working throughout.',
        request: { params: ClusterParams },
        responses: { 201: jsonResponse(z.object({ peerToken: z.string().describe('Shown once') }), 'The new peer secret'), ...errors(400, 404, 409, 503) },
      }),
      async (c) => {
        const { clusterId } = c.req.valid('param');
        const cluster = await existingCluster(store, clusterId);
        const peerToken = randomBytes(32).toString('base64url');
        const next = { ...cluster, peerToken, ...(cluster.peerToken && { previousPeerToken: cluster.peerToken }), updatedAt: clock.now() };
        if (!(await store.putCluster(next, cluster.specVersion))) throw new ApiError(409, 'spec_changed', `cluster ${clusterId} changed meanwhile; try again`);
        return c.json({ peerToken }, 201);
      },
    )
    .openapi(
      createRoute({
        method: 'delete',
        operationId: 'revokeAgentCredential',
        path: '/v1/clusters/{clusterId}/credentials/{credentialId}',
        tags,
        summary: 'Revoke an agent credential (admin)',
        request: { params: ClusterParams.extend({ credentialId: SecretId }) },
        responses: { 200: jsonResponse(z.object({ id: z.string(), revoked: z.literal(true) }), 'Revoked'), ...errors(400, 404, 503) },
      }),
      async (c) => {
        const { clusterId, credentialId } = c.req.valid('param');
        const record = await store.getSecret('agent', credentialId);
        if (!record || record.clusterId !== clusterId)
          throw new ApiError(404, 'credential_not_found', `no agent credential ${credentialId} in cluster ${clusterId}`);
        await credentials.revoke('agent', credentialId);
        return c.json({ id: credentialId, revoked: true as const }, 200);
      },
    );
}
