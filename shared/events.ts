/**
 * Cluster events: the timeline operators read and webhooks are made from.
 * Ids are deterministic (derived from the epoch, or from the agent's report id), so recording
 * an event twice — a retried request, an outbox flushed by two instances — stores it once.
 */
import { z } from 'zod';
import { ClusterId, NodeId } from './names.ts';
import { ReservationKey } from './reservation-key.ts';

export const GrantReason = z
  .enum(['cold-start', 'released', 'switchover', 'lease-expired', 'holder-silent', 'epoch-refused', 'store-regressed'])
  .describe(
    "Why the lease went to a new holder (or to the same one under a new epoch: epoch-refused — the holder will not act again under an epoch it left; store-regressed — the arbiter's store went back and the lease moved past every epoch a node reported)",
  );
export type GrantReason = z.infer<typeof GrantReason>;

export const ReleaseReason = z.enum(['switchover', 'resource-failure', 'shutdown']).describe('Why the holder gave the lease up');
export type ReleaseReason = z.infer<typeof ReleaseReason>;

/** The resources in start order, plus the fencing step that precedes them. */
export const PHASES = ['fence', 'scsi-reservation', 'volume-group', 'filesystem', 'nfs-server', 'exports', 'floating-ip'] as const;
export const Phase = z.enum(PHASES);
export type Phase = z.infer<typeof Phase>;

export const PhaseStatus = z.enum(['started', 'succeeded', 'failed']);
/** Start and stop are actions; monitor reports a running resource found failed. */
export const PhaseDirection = z.enum(['start', 'stop', 'monitor']);
export type PhaseDirection = z.infer<typeof PhaseDirection>;

const base = {
  id: z.string().min(1).max(200),
  clusterId: ClusterId,
  at: z.number().int().describe('Control-plane time, ms since the Unix epoch'),
  epoch: z.number().int().nonnegative(),
  by: z
    .object({ keyId: z.string().max(100), name: z.string().max(200) })
    .optional()
    .describe('The operator key that asked for it (maintenance, standby, switchover, a spec update through the API)'),
};

/** At most this many of a phase's commands are reported (a resource runs a handful per phase). */
export const MAX_PHASE_COMMANDS = 32;
/** A phase's commands in the order they ran, each with its time: where a slow takeover spent it. */
export const PhaseCommands = z
  .array(z.object({ command: z.string().min(1).max(300), ms: z.number().nonnegative().max(3_600_000) }).strict())
  .max(MAX_PHASE_COMMANDS)
  .describe(`The phase's commands in the order they ran, each with the time it took (the first ${MAX_PHASE_COMMANDS})`);

export const EventSchema = z.discriminatedUnion('type', [
  z.object({ ...base, type: z.literal('cluster.created'), data: z.object({ nodes: z.array(NodeId) }) }),
  z.object({
    ...base,
    type: z.literal('lease.granted'),
    node: NodeId,
    data: z.object({ previousHolder: NodeId.nullable(), reason: GrantReason }),
  }),
  z.object({
    ...base,
    type: z.literal('fencing.decided'),
    node: NodeId,
    data: z.object({ victim: NodeId.nullable(), keys: z.array(ReservationKey), reason: GrantReason }),
  }),
  z.object({
    ...base,
    type: z.literal('fencing.confirmed'),
    node: NodeId,
    data: z.object({
      keys: z.array(ReservationKey),
      durationMs: z.number().nonnegative().optional(),
      victim: NodeId.nullable().optional().describe('The node fenced because it failed (absent on events recorded before it was added)'),
    }),
  }),
  z.object({ ...base, type: z.literal('lease.released'), node: NodeId, data: z.object({ reason: ReleaseReason }) }),
  z.object({ ...base, type: z.literal('switchover.requested'), node: NodeId.describe('The target'), data: z.object({ from: NodeId }) }),
  z.object({ ...base, type: z.literal('maintenance.changed'), data: z.object({ enabled: z.boolean() }) }),
  z.object({ ...base, type: z.literal('spec.updated'), data: z.object({ specVersion: z.number().int().positive() }) }),
  z.object({ ...base, type: z.literal('standby.changed'), node: NodeId, data: z.object({ enabled: z.boolean() }) }),
  z.object({
    ...base,
    type: z.literal('node.down'),
    node: NodeId,
    data: z.object({ silentMs: z.number().int().nonnegative().describe('How long the control plane had not heard from it') }),
  }),
  z.object({
    ...base,
    type: z.literal('store.regressed'),
    node: NodeId.describe('The node whose report showed it'),
    data: z.object({
      storeEpoch: z.number().int().nonnegative().describe('The epoch the store held'),
      reportedEpoch: z.number().int().nonnegative().describe('The highest epoch the node reported (seen granted, or acted under)'),
      serving: z.boolean().describe('The node still serves under its epoch and keeps the service under a new one'),
    }),
  }),
  z.object({
    ...base,
    type: z.literal('failsafe.entered'),
    node: NodeId.describe('The holder, serving on without the arbiter'),
    data: z.object({
      vouchedBy: NodeId.describe('The peer that promised not to take the lease'),
      unreachableFrom: z.array(NodeId).describe('The nodes that could not reach the arbiter'),
    }),
  }),
  z.object({
    ...base,
    type: z.literal('failsafe.left'),
    node: NodeId.describe('The holder that was in failsafe'),
    data: z.object({
      vouchedBy: NodeId,
      durationMs: z.number().int().nonnegative().describe('How long the holder served on promises, as far as the arbiter knows'),
      outcome: z.enum(['renewed', 'replaced', 'released']).describe('renewed: the holder reached the arbiter again; replaced: the peer took over; released: the holder gave the lease up'),
    }),
  }),
  z.object({ ...base, type: z.literal('node.up'), node: NodeId, data: z.object({ downForMs: z.number().int().nonnegative() }) }),
  z.object({
    ...base,
    type: z.literal('lease.expired'),
    node: NodeId.describe('The holder whose lease ran out'),
    data: z.object({
      expiredForMs: z.number().int().nonnegative().describe('How long the lease had been past its expiry, with no node taking it over'),
    }),
  }),
  z.object({
    ...base,
    type: z.literal('phase.reported'),
    node: NodeId,
    data: z.object({
      phase: Phase,
      direction: PhaseDirection,
      status: PhaseStatus,
      durationMs: z.number().nonnegative().optional(),
      commandsMs: z.number().nonnegative().optional().describe("Of durationMs, the time the phase's commands ran; the rest is the agent's own"),
      commands: PhaseCommands.optional(),
      message: z.string().max(2000).optional(),
    }),
  }),
]);
export type ClusterEvent = z.infer<typeof EventSchema>;
export type EventType = ClusterEvent['type'];
export const EVENT_TYPES = EventSchema.options.map((o) => o.shape.type.value) as [EventType, ...EventType[]];
export const EventTypeSchema = z.enum(EVENT_TYPES);

/** An event filter (the API's ?type=&node=&epoch=); an absent field matches everything. */
export interface EventFilter {
  types?: readonly string[] | undefined;
  node?: string | undefined;
  epoch?: number | undefined;
}

export function eventMatches(e: { type: string; epoch: number; node?: string }, f: EventFilter): boolean {
  return (!f.types || f.types.includes(e.type)) && (!f.node || e.node === f.node) && (f.epoch === undefined || e.epoch === f.epoch);
}

export const ResourceState = z.enum(['starting', 'running', 'stopping', 'stopped', 'failed']);
export type ResourceState = z.infer<typeof ResourceState>;

/**
 * Each resource's state on `node` as its own phase reports tell it (the last one per resource
 * wins), from reports oldest first. A resource it never reported on is absent.
 */
export function resourceStates(events: readonly ClusterEvent[], node: string): Partial<Record<Exclude<Phase, 'fence'>, ResourceState>> {
  const states: Partial<Record<Exclude<Phase, 'fence'>, ResourceState>> = {};
  for (const e of events) {
    if (e.type !== 'phase.reported' || e.node !== node || e.data.phase === 'fence') continue;
    const { direction, status } = e.data;
    if (status === 'failed') states[e.data.phase] = 'failed';
    else if (direction === 'stop') states[e.data.phase] = status === 'started' ? 'stopping' : 'stopped';
    else states[e.data.phase] = status === 'started' ? 'starting' : 'running';
  }
  return states;
}
