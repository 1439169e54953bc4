/**
 * The API's error envelope: `{ error: { code, message, details } }`, with a machine-readable
 * code and a sentence a person can act on. Anything a client can send maps to a 4xx here;
 * store trouble is a 503 the client may retry; only our own bugs are 500.
 */
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { z } from 'zod';
import type { Logger } from './log.ts';
import { StoreUnavailableError } from './store/store.ts';

export const ErrorBodySchema = z.object({
  error: z.object({
    code: z.string().describe('Machine-readable error code'),
    message: z.string().describe('What went wrong, for a person'),
    details: z.unknown().optional(),
  }),
});

export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export function errorResponse(c: Context, status: ContentfulStatusCode, code: string, message: string, details?: unknown, headers?: Record<string, string>) {
  return c.json({ error: { code, message, ...(details !== undefined && { details }) } }, status, headers);
}

/** A 400 from zod issues: the message names each offending field. */
export function validationError(c: Context, error: z.ZodError, where: string) {
  const issues = error.issues.map((i) => ({ path: i.path.join('.'), message: i.message, code: i.code }));
  const summary = issues
    .slice(0, 5)
    .map((i) => (i.path ? `${i.path}: ${i.message}` : i.message))
    .join('; ');
  const more = issues.length > 5 ? ` (and ${issues.length - 5} more)` : '';
  return errorResponse(c, 400, 'invalid_request', `invalid ${where}: ${summary}${more}`, { issues });
}

const HTTP_CODES: Record<number, string> = {
  400: 'invalid_request',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
};

export function errorHandler(log: Logger) {
  return (err: Error, c: Context) => {
    // Every 503 is a "retry shortly": say when.
    if (err instanceof ApiError)
      return errorResponse(c, err.status, err.code, err.message, err.details, err.status === 503 ? { 'retry-after': '1' } : undefined);
    if (err instanceof HTTPException) {
      const status = err.status as ContentfulStatusCode;
      const code = status === 400 && /JSON/i.test(err.message) ? 'invalid_json' : (HTTP_CODES[status] ?? 'http_error');
      return errorResponse(c, status, code, err.message || 'request rejected');
    }
    if (err instanceof StoreUnavailableError) {
      log.warn({ err: err.message, path: c.req.path }, 'store unavailable');
      return errorResponse(c, 503, 'store_unavailable', 'the state store is unavailable; retry shortly', undefined, { 'retry-after': '1' });
    }
    log.error({ err, path: c.req.path, method: c.req.method }, 'unhandled error');
    return errorResponse(c, 500, 'internal', 'internal error; see the control-plane log');
  };
}
