/** Operator keys, enrolment tokens and agent credentials. Secrets appear once, in the creating response. */
import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import { OperatorRole } from '../../shared/credentials.ts';
import { NodeId } from '../../shared/names.ts';
import { type Credentials, ENROLMENT_TTL_MS } from '../auth.ts';
import type { Clock } from '../clock.ts';
import { ApiError } from '../errors.ts';
import type { Store } from '../store/store.ts';
import { ClusterParams, errors, existingCluster, jsonBody, jsonResponse, router } from './router.ts';

const tags = ['credentials'];
const iso = (ms: number | null | undefined) => (ms == null ? null : new Date(ms).toISOString());
const SecretId = z.string().regex(/^[0-9a-f]{16}$/, 'must be a credential id (16 hex digits)');

const KeySchema = z.object({ id: z.string(), role: OperatorRole, name: z.string(), createdAt: z.string(), revokedAt: z.string().nullable() });

export function credentialsRouter(deps: { store: Store; credentials: Credentials; clock: Clock }) {
  const { store, credentials, clock } = deps;
  return router()
    .openapi(
      createRoute({
        method: 'post',
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
        path: '/v1/keys',
        tags,
        summary: 'List operator keys, without secrets (admin)',
        responses: { 200: jsonResponse(z.object({ keys: z.array(KeySchema) }), 'The keys'), ...errors(503) },
      }),
      async (c) => {
        const keys = (await store.listSecrets('operator')).map((r) => ({
          id: r.id,
          role: r.role ?? 'read-only',
          name: r.name ?? '',
          createdAt: iso(r.createdAt)!,
          revokedAt: iso(r.revokedAt),
        }));
        return c.json({ keys }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'delete',
        path: '/v1/keys/{keyId}',
        tags,
        summary: 'Revoke an operator key (admin)',
        request: { params: z.object({ keyId: SecretId }) },
        responses: { 200: jsonResponse(z.object({ id: z.string(), revoked: z.literal(true) }), 'Revoked'), ...errors(400, 404, 503) },
      }),
      async (c) => {
        const { keyId } = c.req.valid('param');
        if (!(await store.getSecret('operator', keyId))) throw new ApiError(404, 'key_not_found', `no operator key ${keyId}`);
        await credentials.revoke('operator', keyId);
        return c.json({ id: keyId, revoked: true as const }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'post',
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
          201: jsonResponse(z.object({ token: z.string(), clusterId: z.string(), node: z.string(), expiresAt: z.string() }), 'The token (shown once)'),
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
        return c.json({ token, clusterId, node, expiresAt: iso(expiresAt)! }, 201);
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/enrol',
        tags,
        summary: "Exchange an enrolment token for the node's agent credential",
        request: jsonBody(z.object({ token: z.string().max(200) }).strict()),
        responses: {
          201: jsonResponse(
            z.object({
              credential: z.string().describe("Shown once: the agent's bearer token"),
              clusterId: z.string(),
              node: z.string(),
              peerToken: z.string().nullable().describe("The secret of the nodes' peer channel, the same for both nodes"),
            }),
            'Enrolled',
          ),
          ...errors(400, 503),
        },
      }),
      async (c) => {
        const result = await credentials.enrol(c.req.valid('json').token);
        if ('refused' in result) throw new ApiError(401, 'invalid_enrolment_token', result.refused);
        return c.json({ credential: result.token, clusterId: result.clusterId, node: result.node, peerToken: result.peerToken }, 201);
      },
    )
    .openapi(
      createRoute({
        method: 'delete',
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
