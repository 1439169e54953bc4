/** The agent's calls to the control plane, each bounded by the spec's request timeout. */
import { z } from 'zod';
import { type HttpAnswer, type HttpRequest, request } from './http.ts';
import { type HeartbeatResponse, HeartbeatResponseSchema, LeaseAckSchema } from '../shared/api.ts';
import type { FencingReport, Heartbeat, PhaseReport, Release } from '../shared/lease.ts';
import { type ClusterSpec, ClusterSpecSchema } from '../shared/spec.ts';

export interface ControlPlane {
  heartbeat(body: Heartbeat): Promise<HeartbeatResponse>;
  reportFencing(body: FencingReport): Promise<void>;
  reportPhase(body: PhaseReport): Promise<void>;
  release(body: Release): Promise<void>;
}

/**
 * The arbiter answers a phase report with the event it recorded. The agent uses none of it: a
 * check of its type, not a parse of the whole event union, which cost a takeover's fourteen
 * reports a few percent of the agent's CPU in a lab guest.
 */
const PhaseRecorded = z.object({ type: z.literal('phase.reported') });

export class ControlPlaneError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
    readonly code: string | null,
  ) {
    super(message);
    this.name = 'ControlPlaneError';
  }
}

export class ControlPlaneClient implements ControlPlane {
  readonly #base: string;
  #token: string | undefined;

  constructor(
    baseUrl: string,
    private readonly clusterId: string,
    private readonly nodeId: string,
    private readonly options: { timeoutMs: number; token?: string | undefined; request?: HttpRequest },
  ) {
    this.#base = baseUrl.replace(/\/+$/, '');
    this.#token = options.token;
  }

  /** A rotated credential, taken without a restart (the agent's reload). */
  setToken(token: string): void {
    this.#token = token;
  }

  async #call<T extends z.ZodType>(method: 'GET' | 'POST', path: string, body: unknown, schema: T): Promise<z.infer<T>> {
    let res: HttpAnswer;
    try {
      res = await (this.options.request ?? request)(`${this.#base}${path}`, {
        method,
        headers: {
          ...(body !== undefined && { 'content-type': 'application/json' }),
          ...(this.#token && { authorization: `Bearer ${this.#token}` }),
        },
        ...(body !== undefined && { body: JSON.stringify(body) }),
        timeoutMs: this.options.timeoutMs,
      });
    } catch (err) {
      const e = err as Error;
      throw new ControlPlaneError(e.name === 'TimeoutError' ? `no answer within ${this.options.timeoutMs} ms` : e.message, null, null);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new ControlPlaneError(`HTTP ${res.status} with a body that is not JSON`, res.status, null);
    }
    if (!res.ok) {
      const error = (json as { error?: { code?: string; message?: string } }).error;
      throw new ControlPlaneError(`HTTP ${res.status} ${error?.code ?? ''}: ${error?.message ?? text.slice(0, 200)}`, res.status, error?.code ?? null);
    }
    return schema.parse(json);
  }

  #node(action: string) {
    return `/v1/clusters/${this.clusterId}/nodes/${this.nodeId}/${action}`;
  }

  heartbeat(body: Heartbeat): Promise<HeartbeatResponse> {
    return this.#call('POST', this.#node('heartbeat'), body, HeartbeatResponseSchema);
  }

  async reportFencing(body: FencingReport): Promise<void> {
    await this.#call('POST', this.#node('fencing'), body, LeaseAckSchema);
  }

  async reportPhase(body: PhaseReport): Promise<void> {
    await this.#call('POST', this.#node('phases'), body, PhaseRecorded);
  }

  async release(body: Release): Promise<void> {
    await this.#call('POST', this.#node('release'), body, LeaseAckSchema);
  }

  async spec(): Promise<{ spec: ClusterSpec; specVersion: number }> {
    return this.#call('GET', `/v1/clusters/${this.clusterId}`, undefined, z.object({ spec: ClusterSpecSchema, specVersion: z.number().int().positive() }));
  }
}
