/**
 * Response shapes of the REST API (/v1). Request shapes live beside the rules they feed
 * (shared/lease.ts, shared/spec.ts). The agent and the CLI parse responses with these.
 */
import { z } from 'zod';
import { EventSchema, ResourceState } from './events.ts';
import { AgentBuildSchema, AgentRole, DirectiveSchema, FencingDecisionSchema, LeaseSchema } from './lease.ts';
import { ClusterId, NodeId } from './names.ts';
import { ReservationKey } from './reservation-key.ts';
import { ClusterSpecSchema } from './spec.ts';

export const HeartbeatResponseSchema = z.object({
  lease: z.object({
    holder: NodeId.nullable(),
    epoch: z.number().int(),
    ttlMs: z.number().int().describe('Lease duration the control plane granted; the agent computes its own deadline from the moment it sent the request'),
    renewed: z.boolean().describe('This request granted or renewed the lease for the asking node'),
    specVersion: z.number().int().describe('Refetch the spec when this changes'),
    maintenance: z.boolean().default(false).describe('Maintenance mode: keep renewing; do not restart, release or take over'),
  }),
  directive: DirectiveSchema,
  controlPlaneVersion: z
    .string()
    .max(64)
    .optional()
    .describe("The control plane's release: an agent reports its own version (heartbeat.agent) only to a control plane that says this"),
});
export type HeartbeatResponse = z.infer<typeof HeartbeatResponseSchema>;

/** The enrolment exchange's answer (POST /v1/enrol), which the node's `nfs-ha-agent configure` reads. */
export const EnrolmentSchema = z.object({
  credential: z.string().describe("Shown once: the agent's bearer token"),
  clusterId: z.string(),
  node: z.string(),
  peerToken: z.string().nullable().describe("The secret of the nodes' peer channel, the same for both nodes"),
  previousPeerToken: z.string().nullable().describe('The peer secret before its last rotation, still accepted during the overlap'),
});

export const LeaseViewSchema = z.object({
  holder: NodeId.nullable(),
  epoch: z.number().int(),
  state: z.enum(['vacant', 'fencing', 'held', 'expired']),
  renewedAgoMs: z.number().int().describe("Time since the last grant or renewal, on the control plane's clock"),
  expiresInMs: z.number().int().describe('Time until the lease lapses (negative: lapsed)'),
  fencing: FencingDecisionSchema.nullable(),
  holdoff: LeaseSchema.shape.holdoff.describe('The lease was vacated (the store went back, or its holder refused its epoch): who found it, and why'),
  failsafe: z
    .object({
      serving: NodeId.describe('The holder, serving on without the arbiter'),
      vouchedBy: NodeId,
      since: z.string().describe('When the arbiter learnt of it (ISO 8601)'),
      unreachableFrom: z.array(NodeId).describe('The nodes that could not reach the arbiter'),
    })
    .nullable()
    .default(null)
    .describe("The holder cannot reach the arbiter and serves on its peer's promise not to take the lease (failsafe)"),
});

export const NodeStatusViewSchema = z.object({
  id: NodeId,
  reservationKey: ReservationKey,
  isHolder: z.boolean(),
  role: AgentRole.nullable().describe('Role the node last reported (null: never heard from)'),
  epoch: z.number().int().nullable(),
  peerReachable: z.boolean().nullable(),
  lastHeartbeatAgoMs: z.number().int().nullable().describe('Refreshed at least every 30 s while the node heartbeats (for the holder, at every renewal)'),
  lastDirective: z.string().nullable(),
  unfit: z.string().nullable().describe('Why the node refuses to run the cluster (null: it does not); it is never granted the lease'),
  refused: z
    .string()
    .nullable()
    .default(null)
    .describe('The epoch the node will not act under (one it has seen or left) and why, as it last said; it is given a new one'),
  agent: AgentBuildSchema.nullable().default(null).describe("The node agent's release and Node runtime, as it last said (null: not reported yet)"),
  resources: z
    .record(z.string(), ResourceState)
    .describe("Each resource's state as this node last reported it since the current grant (empty: nothing reported)"),
});

export const ClusterStatusSchema = z.object({
  clusterId: ClusterId,
  at: z
    .string()
    .describe(
      "When the control plane read this status, on its clock (ISO 8601): the ages and the time left below count from it, and its events' times are on the same clock",
    ),
  controlPlaneVersion: z.string().describe('This control plane\'s release: agents may be older, never newer (README, "Versions and rolling upgrades")'),
  specVersion: z.number().int(),
  maintenance: z.boolean().describe('Maintenance mode: agents do not restart, release or take over'),
  standby: z.array(NodeId).describe('Nodes that may not hold the lease'),
  switchover: z.object({ to: NodeId, requestedAt: z.string() }).nullable().describe('A planned switchover under way'),
  lease: LeaseViewSchema,
  nodes: z.array(NodeStatusViewSchema),
});
export type ClusterStatus = z.infer<typeof ClusterStatusSchema>;

export const ClusterSchema = z.object({
  spec: ClusterSpecSchema,
  specVersion: z.number().int(),
  createdAt: z.string().describe('ISO 8601'),
  updatedAt: z.string().describe('ISO 8601'),
});

export const ClusterListSchema = z.object({
  clusters: z.array(z.object({ id: ClusterId, nodes: z.array(NodeId), specVersion: z.number().int(), createdAt: z.string() })),
  cursor: z.string().nullable().describe('Pass as ?cursor= for the next page; null at the end'),
});

export const EventPageSchema = z.object({
  events: z.array(EventSchema),
  cursor: z.string().nullable().describe('Pass as ?cursor= for the next page; null at the end'),
});

export const FencingHistorySchema = z.object({
  fencing: z.array(
    z.object({
      epoch: z.number().int(),
      holder: NodeId.describe('The node that fenced'),
      victim: NodeId.nullable().describe('The previous holder, when it was taken over'),
      keys: z.array(ReservationKey),
      reason: z.string(),
      decidedAt: z.string().describe('ISO 8601'),
      confirmedAt: z.string().nullable().describe('ISO 8601; null while the holder has not reported it'),
      durationMs: z.number().nullable().describe('How long the preemption took on the node'),
    }),
  ),
});

export const LeaseAckSchema = z.object({ holder: NodeId.nullable(), epoch: z.number().int() });
