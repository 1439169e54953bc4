/** Pieces every router shares: validation errors in our envelope, and route-definition helpers. */
import { OpenAPIHono } from '@hono/zod-openapi';
import { z } from 'zod';
import { ClusterId, NodeId } from '../../shared/names.ts';
import type { Requester } from '../../shared/lease.ts';
import type { Principal } from '../auth.ts';
import { ApiError, ErrorBodySchema, validationError } from '../errors.ts';
import type { ClusterRecord, Store } from '../store/store.ts';

const WHERE = { json: 'request body', param: 'path', query: 'query string', header: 'headers' } as Record<string, string>;

export function router() {
  return new OpenAPIHono<{ Variables: { principal: Principal | null } }>({
    defaultHook: (result, c) => {
      if (!result.success) return validationError(c, result.error, WHERE[result.target] ?? result.target);
    },
  });
}

export const ClusterParams = z.object({ clusterId: ClusterId });
export const NodeParams = z.object({ clusterId: ClusterId, nodeId: NodeId });

export function jsonBody<T extends z.ZodType>(schema: T) {
  return { body: { content: { 'application/json': { schema } }, required: true } };
}

export function jsonResponse<T extends z.ZodType>(schema: T, description: string) {
  return { content: { 'application/json': { schema } }, description };
}

const ERROR_DESCRIPTIONS = {
  400: 'Invalid request (malformed JSON or a field that fails validation)',
  401: 'No credential, or one that is malformed, unknown or revoked',
  403: 'The credential may not use this route (wrong role, node or cluster)',
  404: 'Unknown cluster or node',
  409: 'Conflicts with the current state (e.g. a stale epoch, an existing cluster)',
  413: 'Request body too large',
  429: 'Too many failed authentications (or enrolment attempts) from this address; wait a minute',
  503: 'The state store is unavailable or the lease is contended; retry',
} as const;

/** Every /v1 route authenticates its caller, so every one can answer these. */
const AUTH_ERRORS = [401, 403, 429] as const;

/** The error responses a route can give, documented with the shared envelope. */
export function errors(...statuses: (keyof typeof ERROR_DESCRIPTIONS)[]) {
  return Object.fromEntries([...AUTH_ERRORS, ...statuses].map((s) => [s, jsonResponse(ErrorBodySchema, ERROR_DESCRIPTIONS[s])])) as Record<
    keyof typeof ERROR_DESCRIPTIONS,
    ReturnType<typeof jsonResponse<typeof ErrorBodySchema>>
  >;
}

/** The cluster's record, or the API's 404. */
export async function existingCluster(store: Store, clusterId: string): Promise<ClusterRecord> {
  const record = await store.getCluster(clusterId);
  if (!record) throw new ApiError(404, 'cluster_not_found', `no cluster "${clusterId}"`);
  return record;
}

/** The operator key behind a request, as its events record it. */
export function requester(c: { get(key: 'principal'): Principal | null }): Requester | undefined {
  const p = c.get('principal');
  return p?.kind === 'operator' ? { keyId: p.id, name: p.name } : undefined;
}
