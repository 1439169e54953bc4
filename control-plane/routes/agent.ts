/**
 * The agent-facing API: heartbeat (renew or acquire, answered with a directive), fencing done,
 * phase progress, release. Each names the node in the path; authentication that ties a
 * credential to that node is added in front of these routes by the auth middleware.
 */
import { createRoute } from '@hono/zod-openapi';
import { HeartbeatResponseSchema, LeaseAckSchema } from '../../shared/api.ts';
import { VERSION } from '../../shared/version.ts';
import { EventSchema } from '../../shared/events.ts';
import { FencingReportSchema, HeartbeatSchema, PhaseReportSchema, ReleaseSchema } from '../../shared/lease.ts';
import type { Arbiter } from '../arbiter.ts';
import { errors, jsonBody, jsonResponse, NodeParams, router } from './router.ts';

const tags = ['agent'];
const nodePath = '/v1/clusters/{clusterId}/nodes/{nodeId}';

export function agentRouter(arbiter: Arbiter) {
  return router()
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'heartbeat',
        path: `${nodePath}/heartbeat`,
        tags,
        summary: 'Renew or acquire the lease; get a directive',
        description:
          "Sent every renewIntervalMs by both agents. The holder's heartbeat renews its lease; the other node's heartbeat may take the lease over when it has expired, or early when the holder is silent and the peer reports it unreachable. The directive says what to do: stay passive, activate under an epoch after fencing the named keys, stay active, or demote.",
        request: { params: NodeParams, ...jsonBody(HeartbeatSchema) },
        responses: { 200: jsonResponse(HeartbeatResponseSchema, 'The lease as it now stands and the directive'), ...errors(400, 404, 503) },
      }),
      async (c) => {
        const { clusterId, nodeId } = c.req.valid('param');
        const o = await arbiter.heartbeat(clusterId, nodeId, c.req.valid('json'));
        const { holder, epoch, terms } = o.lease;
        return c.json(
          {
            lease: { holder, epoch, ttlMs: terms.leaseTtlMs, renewed: o.renewed, specVersion: terms.specVersion, maintenance: o.lease.maintenance },
            directive: o.directive,
            controlPlaneVersion: VERSION,
          },
          200,
        );
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'reportFencing',
        path: `${nodePath}/fencing`,
        tags,
        summary: 'Report the fencing decision executed',
        description:
          'The holder reports that it preempted the keys named in its fencing decision. Only after this is acknowledged may it start any resource. Idempotent.',
        request: { params: NodeParams, ...jsonBody(FencingReportSchema) },
        responses: { 200: jsonResponse(LeaseAckSchema, 'Fencing recorded for the epoch'), ...errors(400, 404, 409, 503) },
      }),
      async (c) => {
        const { clusterId, nodeId } = c.req.valid('param');
        const lease = await arbiter.confirmFencing(clusterId, nodeId, c.req.valid('json'));
        return c.json({ holder: lease.holder, epoch: lease.epoch }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'reportPhase',
        path: `${nodePath}/phases`,
        tags,
        summary: 'Report progress of a resource start or stop',
        request: { params: NodeParams, ...jsonBody(PhaseReportSchema) },
        responses: { 201: jsonResponse(EventSchema, 'Recorded as an event'), ...errors(400, 404, 409, 503) },
      }),
      async (c) => {
        const { clusterId, nodeId } = c.req.valid('param');
        return c.json(await arbiter.reportPhase(clusterId, nodeId, c.req.valid('json')), 201);
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'releaseLease',
        path: `${nodePath}/release`,
        tags,
        summary: 'Give the lease up after demoting',
        description: 'Only the holder, naming its current epoch. The peer gets the first claim on the released lease.',
        request: { params: NodeParams, ...jsonBody(ReleaseSchema) },
        responses: { 200: jsonResponse(LeaseAckSchema, 'The lease is vacant'), ...errors(400, 404, 409, 503) },
      }),
      async (c) => {
        const { clusterId, nodeId } = c.req.valid('param');
        const lease = await arbiter.release(clusterId, nodeId, c.req.valid('json'));
        return c.json({ holder: lease.holder, epoch: lease.epoch }, 200);
      },
    );
}
