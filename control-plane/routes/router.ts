/** Pieces every router shares: validation errors in our envelope, and route-definition helpers. */
import { OpenAPIHono } from '@hono/zod-openapi';
import { z } from 'zod';
import { ClusterId, NodeId } from '../../shared/names.ts';
import { ErrorBodySchema, validationError } from '../errors.ts';

const WHERE = { json: 'request body', param: 'path', query: 'query string', header: 'headers' } as Record<string, string>;

export function router() {
  return new OpenAPIHono({
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
  404: 'Unknown cluster or node',
  409: 'Conflicts with the current state (e.g. a stale epoch, an existing cluster)',
  413: 'Request body too large',
  503: 'The state store is unavailable or the lease is contended; retry',
} as const;

/** The error responses a route can give, documented with the shared envelope. */
export function errors(...statuses: (keyof typeof ERROR_DESCRIPTIONS)[]) {
  return Object.fromEntries(statuses.map((s) => [s, jsonResponse(ErrorBodySchema, ERROR_DESCRIPTIONS[s])])) as Record<
    keyof typeof ERROR_DESCRIPTIONS,
    ReturnType<typeof jsonResponse<typeof ErrorBodySchema>>
  >;
}
