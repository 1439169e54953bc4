/**
 * The lease protocol: one lease per cluster, pure functions from (lease, request, now) to the
 * next lease and a directive. The control plane commits `next` with a conditional write on
 * `version`; if another writer got there first it re-reads and asks again, so every decision
 * here is made on the current lease or not at all.
 *
 * Rules:
 * - The epoch grows by one on every change of holder and never otherwise; it is the fencing token.
 * - Every grant carries a fencing decision naming the other node's reservation key: the new
 *   holder must preempt-and-abort it (and report that) before it activates anything. Only the
 *   holder is ever registered on the disk, so a grant is also the only way to be unfenced.
 * - A holder's heartbeat renews its lease, even a lapsed one nobody else has taken.
 * - A lease held by the peer goes to the asking node only when it has expired (plus the
 *   control-plane skew allowance), or — with early fencing — when the holder has been silent to
 *   the arbiter for suspectAfterMs and the asking node reports it unreachable too.
 * - Expiry and silence are durations this arbiter measured itself: how long it has seen the
 *   lease's version unchanged, on its own monotonic clock (`quietMs`). A holder's renewal was
 *   sent before it was committed, and committed before it was seen, so the holder's own deadline
 *   runs out first whatever any wall clock says; no time written by one machine is compared with
 *   another's clock (DynamoDB lock client's record-version rule). Wall time only labels events.
 * - The epoch never repeats, even when the store goes back (a restore, a re-created cluster):
 *   every heartbeat carries the highest epoch its node has seen granted and acted under. One
 *   above the lease's means the store lost epochs: the lease moves past every reported epoch, a
 *   node still serving keeps the service under a new epoch, and nobody else is granted until a
 *   node still serving has had a lease's time to say so.
 * - Failsafe: a node that says it vouches for the holder (it promised over the peer channel not to
 *   take the lease) is never granted it. The arbiter records who serves on promises, and since
 *   when; when the holder is heard from again it renews under the same epoch.
 * - Nothing else changes hands: no directive other than a committed grant lets a node activate.
 */
import { z } from 'zod';
import { type ClusterEvent, EventSchema, GrantReason, Phase, PhaseCommands, PhaseDirection, PhaseStatus, ReleaseReason } from './events.ts';
import { ClusterId, NodeId } from './names.ts';
import { ReservationKey, reservationKey } from './reservation-key.ts';
import type { ClusterSpec } from './spec.ts';
import { grantableAfter, leaseExpiry } from './timing.ts';

export const FencingDecisionSchema = z.object({
  epoch: z.number().int().positive(),
  holder: NodeId.describe('The node that must fence before it activates'),
  victim: NodeId.nullable().describe('The previous holder being fenced, if there was one'),
  keys: z.array(ReservationKey).describe('Reservation keys to preempt-and-abort'),
  reason: GrantReason,
  decidedAt: z.number().int(),
  confirmedAt: z.number().int().nullable(),
});
export type FencingDecision = z.infer<typeof FencingDecisionSchema>;

/** What the arbiter needs from the spec, kept in the lease so one read serves a heartbeat. */
export const LeaseTermsSchema = z.object({
  nodes: z.tuple([NodeId, NodeId]),
  keys: z.tuple([ReservationKey, ReservationKey]),
  leaseTtlMs: z.number().int().positive(),
  skewAllowanceMs: z.number().int().nonnegative(),
  suspectAfterMs: z.number().int().positive(),
  earlyFencing: z.boolean(),
  specVersion: z.number().int().positive(),
});
export type LeaseTerms = z.infer<typeof LeaseTermsSchema>;

export const LeaseSchema = z.object({
  clusterId: ClusterId,
  holder: NodeId.nullable(),
  epoch: z.number().int().nonnegative(),
  version: z.number().int().nonnegative().describe('Incremented by every write; the condition of every write'),
  renewedAt: z.number().int().describe('Control-plane time of the last grant or renewal'),
  expiresAt: z.number().int().describe('Control-plane time the lease lapses'),
  releasedBy: NodeId.nullable().describe('The node that last released the lease, given no first claim on it'),
  previousHolder: NodeId.nullable().default(null).describe('The holder of the epoch before this one (its stop reports are still accepted)'),
  fencing: FencingDecisionSchema.nullable(),
  switchover: z
    .object({ to: NodeId, requestedAt: z.number().int() })
    .nullable()
    .default(null)
    .describe('An operator asked the holder to hand over to this node: it demotes, then releases'),
  maintenance: z.boolean().default(false).describe('Maintenance mode: the holder keeps renewing, but no node restarts, releases or takes over'),
  standby: z.array(NodeId).default([]).describe('Nodes in standby: they may not hold the lease'),
  holdoff: z
    .object({
      at: z.number().int(),
      by: NodeId,
      reason: z.enum(['store-regressed', 'epoch-refused']),
      storeEpoch: z.number().int().nonnegative().describe('The epoch the lease was at before it was vacated'),
    })
    .nullable()
    .default(null)
    .describe("Vacated because the store went back, or its holder refused an epoch it had left: for a lease's time only a node still serving may take it"),
  failsafe: z
    .object({
      since: z.number().int().describe('Control-plane time the arbiter learnt of it'),
      vouchedBy: NodeId,
      reportedBy: z.enum(['peer', 'holder']).describe('peer: the vouching node reached the arbiter; holder: only the holder told, afterwards'),
    })
    .nullable()
    .default(null)
    .describe("The holder serves on its peer's promise while the arbiter cannot reach it"),
  terms: LeaseTermsSchema,
  outbox: z.array(EventSchema).describe('Events decided with this lease state, not yet written as event items'),
});
export type Lease = z.infer<typeof LeaseSchema>;

/** What a program is: its release (package.json) and the Node runtime it runs on. */
export const AgentBuildSchema = z
  .object({
    version: z.string().regex(/^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]{1,40})?$/, 'a semantic version'),
    runtime: z.string().regex(/^v\d+\.\d+\.\d+$/, 'a Node version such as v24.22.3'),
  })
  .strict();
export type AgentBuild = z.infer<typeof AgentBuildSchema>;

/** Role an agent reports for itself. */
export const AgentRole = z.enum(['passive', 'activating', 'active', 'demoting']);
export type AgentRole = z.infer<typeof AgentRole>;

export const HeartbeatSchema = z
  .object({
    role: AgentRole,
    epoch: z.number().int().nonnegative().describe("Epoch the node's resources run under (0 when it has none running)"),
    peer: z
      .object({ reachable: z.boolean().describe("Result of this node's latest direct check of its peer") })
      .strict()
      .optional(),
    unfit: z
      .string()
      .max(1000)
      .optional()
      .describe('Why this node refuses to run the cluster (e.g. the spec names a device it does not allow): it is never granted the lease'),
    known: z
      .object({
        seen: z.number().int().nonnegative().describe('The highest epoch this node has seen granted to anyone'),
        acted: z.number().int().nonnegative().describe('The highest epoch this node has acted under'),
      })
      .strict()
      .optional()
      .describe("The node's persisted epoch memory: the arbiter never grants below it, and learns from it that its store went back"),
    leftovers: z
      .boolean()
      .optional()
      .describe('Resources found running at start that this agent process has not adopted or stopped yet (it may adopt them under the epoch it acted under)'),
    refused: z
      .object({ epoch: z.number().int().positive(), reason: z.string().max(1000) })
      .strict()
      .optional()
      .describe('This node was given an epoch it will not act under (one it has seen or left): it needs a new one'),
    vouching: z
      .object({
        for: NodeId,
        epoch: z.number().int().nonnegative().describe('The epoch it vouches for (0: it restarted within a promise window and may have promised)'),
        remainingMs: z.number().int().nonnegative().describe('How long its promise still runs, on its own clock'),
      })
      .strict()
      .optional()
      .describe('This node promised its peer not to take the lease (failsafe): the arbiter never grants it the lease meanwhile'),
    agent: AgentBuildSchema.optional().describe(
      'The release and Node runtime this agent runs. Sent only to a control plane that has said its own version (controlPlaneVersion): an older one refuses unknown fields',
    ),
    failsafe: z
      .object({
        forMs: z
          .number()
          .int()
          .nonnegative()
          .max(365 * 86_400_000)
          .describe('How long it has served on promises without reaching the arbiter'),
        vouchedBy: NodeId,
      })
      .strict()
      .optional()
      .describe("The holder served on its peer's promise because it could not reach the arbiter"),
  })
  .strict();
export type Heartbeat = z.infer<typeof HeartbeatSchema>;

export const DirectiveSchema = z.discriminatedUnion('action', [
  z.object({ action: z.literal('stay-passive'), epoch: z.number().int(), holder: NodeId.nullable(), reason: z.string() }),
  z.object({
    action: z.literal('activate'),
    epoch: z.number().int(),
    fence: z.object({ victim: NodeId.nullable(), keys: z.array(ReservationKey), confirmed: z.boolean() }),
    reason: z.string(),
  }),
  z.object({ action: z.literal('stay-active'), epoch: z.number().int(), reason: z.string() }),
  z.object({ action: z.literal('demote'), epoch: z.number().int(), holder: NodeId.nullable(), reason: z.string() }),
  z.object({ action: z.literal('release'), epoch: z.number().int(), reason: z.string() }).describe('Holder: demote, then release this epoch (switchover)'),
]);
export type Directive = z.infer<typeof DirectiveSchema>;

export const FencingReportSchema = z
  .object({
    epoch: z.number().int().positive(),
    keys: z.array(ReservationKey).max(16).describe('Keys the node preempted (or found already gone)'),
    durationMs: z.number().nonnegative().max(3_600_000).optional(),
  })
  .strict();
export type FencingReport = z.infer<typeof FencingReportSchema>;

export const ReleaseSchema = z.object({ epoch: z.number().int().positive(), reason: ReleaseReason }).strict();
export type Release = z.infer<typeof ReleaseSchema>;

export const PhaseReportSchema = z
  .object({
    reportId: z.string().regex(/^[A-Za-z0-9-]{8,64}$/, 'must be 8–64 letters, digits or "-" (a UUID); reuse it when retrying the same report'),
    epoch: z.number().int().positive(),
    phase: Phase,
    direction: PhaseDirection,
    status: PhaseStatus,
    durationMs: z.number().nonnegative().max(3_600_000).optional(),
    commandsMs: z
      .number()
      .nonnegative()
      .max(3_600_000)
      .optional()
      .describe("Of durationMs, the time the phase's commands ran; the rest is the agent's own"),
    commands: PhaseCommands.optional(),
    message: z.string().max(2000).optional(),
  })
  .strict();
export type PhaseReport = z.infer<typeof PhaseReportSchema>;

export type LeaseState = 'vacant' | 'fencing' | 'held' | 'expired';

/** A decision: the lease to commit (null: no write) and what the asking node is told. */
export interface Decision {
  next: Lease | null;
  directive: Directive;
}

/** A report the lease cannot accept, with the reason. */
export interface Rejection {
  code: 'stale_epoch' | 'switchover_not_possible' | 'standby_not_possible' | 'immutable_field';
  message: string;
}

/** The lease's own events, in the order they happen within an epoch. */
const EPOCH_STEPS = { 'lease.granted': 1, 'fencing.decided': 2, 'fencing.confirmed': 3, 'lease.released': 4 } as const;
type EpochEventType = keyof typeof EPOCH_STEPS;

/**
 * An event of the lease's lifecycle. Its id names the epoch and the step, so it is unique per
 * epoch (recording it twice stores it once) and sorts in lifecycle order within a millisecond.
 */
function epochEvent<T extends EpochEventType>(
  clusterId: string,
  epoch: number,
  at: number,
  node: string,
  type: T,
  data: Extract<ClusterEvent, { type: T }>['data'],
): ClusterEvent {
  return { id: `e${epoch}.${EPOCH_STEPS[type]}.${type}`, clusterId, at, epoch, type, node, data } as ClusterEvent;
}

export function leaseTerms(spec: ClusterSpec, specVersion: number): LeaseTerms {
  const [a, b] = spec.nodes;
  return {
    nodes: [a.id, b.id],
    keys: [reservationKey(spec.id, a.id), reservationKey(spec.id, b.id)],
    leaseTtlMs: spec.timing.leaseTtlMs,
    skewAllowanceMs: spec.timing.skewAllowanceMs,
    suspectAfterMs: spec.timing.suspectAfterMs,
    earlyFencing: spec.policy.earlyFencing,
    specVersion,
  };
}

/** The lease of a new cluster: nobody holds it, epoch 0. */
export function vacantLease(clusterId: string, terms: LeaseTerms, now: number): Lease {
  return {
    clusterId,
    holder: null,
    epoch: 0,
    version: 0,
    renewedAt: now,
    expiresAt: now,
    releasedBy: null,
    previousHolder: null,
    fencing: null,
    switchover: null,
    maintenance: false,
    standby: [],
    holdoff: null,
    failsafe: null,
    terms,
    outbox: [],
  };
}

export function isMember(terms: LeaseTerms, node: string): boolean {
  return terms.nodes.includes(node);
}

function peerIndex(terms: LeaseTerms, node: string): 0 | 1 {
  return terms.nodes[0] === node ? 1 : 0;
}

export function leaseState(lease: Lease, now: number): LeaseState {
  if (lease.holder === null) return 'vacant';
  if (now > grantableAfter(lease.expiresAt, lease.terms.skewAllowanceMs)) return 'expired';
  return lease.fencing?.confirmedAt == null ? 'fencing' : 'held';
}

function holderDirective(lease: Lease, hb: Heartbeat): Directive {
  const fencing = lease.fencing;
  if (!fencing || fencing.epoch !== lease.epoch) throw new Error(`lease of ${lease.clusterId} has a holder but no fencing decision for epoch ${lease.epoch}`);
  const fence = { victim: fencing.victim, keys: fencing.keys, confirmed: fencing.confirmedAt !== null };
  if (fence.confirmed && !lease.maintenance && (lease.switchover || lease.standby.includes(fencing.holder))) {
    const why = lease.switchover ? `switchover to ${lease.switchover.to} requested` : `${fencing.holder} was put in standby`;
    return { action: 'release', epoch: lease.epoch, reason: `${why}: demote, then release epoch ${lease.epoch}` };
  }
  if (!fence.confirmed) {
    return {
      action: 'activate',
      epoch: lease.epoch,
      fence,
      reason: `granted epoch ${lease.epoch} (${fencing.reason}): preempt ${fencing.keys.join(', ')}${fencing.victim ? ` of ${fencing.victim}` : ''}, report it, then activate`,
    };
  }
  if (hb.role === 'active' && hb.epoch === lease.epoch) {
    return { action: 'stay-active', epoch: lease.epoch, reason: `renewed: holder of epoch ${lease.epoch}` };
  }
  return { action: 'activate', epoch: lease.epoch, fence, reason: `holder of epoch ${lease.epoch}, fencing confirmed: start the resources` };
}

function followerDirective(lease: Lease, hb: Heartbeat, why: string): Directive {
  if (hb.role === 'passive') return { action: 'stay-passive', epoch: lease.epoch, holder: lease.holder, reason: why };
  return {
    action: 'demote',
    epoch: lease.epoch,
    holder: lease.holder,
    reason: `${why}; this node reports ${hb.role} under epoch ${hb.epoch} without the lease: demote`,
  };
}

function grant(lease: Lease, node: string, hb: Heartbeat, now: number, reason: GrantReason): Decision {
  const epoch = lease.epoch + 1;
  const peer = peerIndex(lease.terms, node);
  const victim = reason === 'lease-expired' || reason === 'holder-silent' ? lease.holder : null;
  const keys = [lease.terms.keys[peer]];
  const fencing: FencingDecision = { epoch, holder: node, victim, keys, reason, decidedAt: now, confirmedAt: null };
  const events = [
    ...failsafeLeft(lease, now, 'replaced'),
    epochEvent(lease.clusterId, epoch, now, node, 'lease.granted', { previousHolder: lease.holder, reason }),
    epochEvent(lease.clusterId, epoch, now, node, 'fencing.decided', { victim, keys, reason }),
  ];
  const next: Lease = {
    ...lease,
    holder: node,
    epoch,
    version: lease.version + 1,
    renewedAt: now,
    expiresAt: leaseExpiry(now, lease.terms.leaseTtlMs),
    releasedBy: null,
    previousHolder: lease.holder ?? lease.releasedBy,
    fencing,
    switchover: null,
    holdoff: null,
    failsafe: null,
    outbox: [...lease.outbox, ...events],
  };
  return { next, directive: holderDirective(next, hb) };
}

/** The failsafe the lease records ends (the holder was heard from, released, or was replaced). */
function failsafeLeft(
  lease: Lease,
  now: number,
  outcome: 'renewed' | 'replaced' | 'released',
  failsafe: Pick<NonNullable<Lease['failsafe']>, 'since' | 'vouchedBy'> | null = lease.failsafe,
): ClusterEvent[] {
  if (!failsafe || !lease.holder) return [];
  const durationMs = Math.max(0, now - failsafe.since);
  return [operatorEvent(lease, now, { type: 'failsafe.left', node: lease.holder, data: { vouchedBy: failsafe.vouchedBy, durationMs, outcome } })];
}

/**
 * A heartbeat from a node that vouches for the holder: it is never granted the lease. The
 * first such heartbeat for the current holder and epoch, once the holder is silent, records the
 * failsafe (one write).
 */
function onVouching(lease: Lease, node: string, hb: Heartbeat & { vouching: NonNullable<Heartbeat['vouching']> }, now: number, quietMs: number): Decision {
  const v = hb.vouching;
  const why =
    v.epoch === 0
      ? `${node} restarted ${lease.terms.leaseTtlMs - v.remainingMs} ms ago and may have promised ${v.for} not to take the lease: not granting it for ${v.remainingMs} ms more`
      : `${node} vouches for ${v.for} (epoch ${v.epoch}) for ${v.remainingMs} ms more: ${v.for} serves without reaching the arbiter (failsafe); not granting ${node} the lease`;
  // A promise asked for as a hedge against one slow renewal is no failsafe: only a silent holder's is.
  const records = v.epoch > 0 && v.for === lease.holder && v.epoch === lease.epoch && lease.failsafe === null && quietMs > lease.terms.suspectAfterMs;
  if (!records) return { next: null, directive: followerDirective(lease, hb, why) };
  const event = operatorEvent(lease, now, { type: 'failsafe.entered', node: v.for, data: { vouchedBy: node, unreachableFrom: [v.for] } });
  const next: Lease = { ...lease, version: lease.version + 1, failsafe: { since: now, vouchedBy: node, reportedBy: 'peer' }, outbox: [...lease.outbox, event] };
  return { next, directive: followerDirective(next, hb, why) };
}

/**
 * The holder renews after serving on promises. If the arbiter never heard of it (both nodes
 * were cut from it), the holder's own account is recorded, entered and left at once.
 */
function failsafeRenewed(lease: Lease, hb: Heartbeat, now: number): ClusterEvent[] {
  if (lease.failsafe) return failsafeLeft(lease, now, 'renewed');
  if (!hb.failsafe || !lease.holder) return [];
  const peer = lease.terms.nodes[peerIndex(lease.terms, lease.holder)];
  const told = { since: now - hb.failsafe.forMs, vouchedBy: hb.failsafe.vouchedBy };
  return [
    operatorEvent(lease, told.since, {
      type: 'failsafe.entered',
      node: lease.holder,
      data: { vouchedBy: told.vouchedBy, unreachableFrom: [lease.holder, peer] },
    }),
    ...failsafeLeft(lease, now, 'renewed', told),
  ];
}

/** The highest epoch a heartbeat shows its node knows of. */
export function reportedEpoch(hb: Heartbeat): number {
  return Math.max(hb.epoch, hb.known?.seen ?? 0, hb.known?.acted ?? 0);
}

/** The holder runs nothing, has no leftovers to adopt, and has acted under this epoch: it left it. */
function leftEpoch(lease: Lease, hb: Heartbeat): boolean {
  return lease.epoch > 0 && hb.role === 'passive' && hb.leftovers !== true && (hb.known?.acted ?? 0) >= lease.epoch;
}

/** A node acting under the highest epoch it knows of: it may keep the service through a regression. */
function serving(hb: Heartbeat): boolean {
  // A node that vouches for its peer runs nothing (the agent promises only then): never granted on this ground.
  return hb.role === 'active' && hb.epoch > 0 && hb.epoch === reportedEpoch(hb) && hb.vouching === undefined;
}

/**
 * The lease cannot stay as it is: the heartbeat shows an epoch above the store's (the store went
 * back: a restore, a re-created cluster), or its holder refuses the epoch (it left it). The lease
 * moves to the highest epoch known. A node still serving under the highest epoch it knows of
 * keeps the service under the next one (it fences the peer again, without stopping); anyone else
 * waits, the lease vacant, until the other node has reported too, or a node still serving has
 * had a lease's time to report — a serving node renews every interval, and one that could not
 * has demoted by then.
 */
function vacate(lease: Lease, node: string, hb: Heartbeat, now: number, reason: 'store-regressed' | 'epoch-refused'): Decision {
  const reported = Math.max(lease.epoch, reportedEpoch(hb));
  const keeps = serving(hb) && hb.unfit === undefined && hb.epoch === reported;
  const events: ClusterEvent[] =
    reason === 'store-regressed'
      ? [
          {
            id: `store.regressed.e${reported}.from${lease.epoch}.v${lease.version}`,
            clusterId: lease.clusterId,
            at: now,
            epoch: reported,
            type: 'store.regressed',
            node,
            data: { storeEpoch: lease.epoch, reportedEpoch: reported, serving: keeps },
          },
        ]
      : [];
  const moved: Lease = {
    ...lease,
    holder: null,
    epoch: reported,
    expiresAt: now,
    releasedBy: null,
    previousHolder: lease.holder,
    fencing: null,
    switchover: null,
    holdoff: { at: now, by: node, reason, storeEpoch: lease.epoch },
    failsafe: null,
    outbox: [...lease.outbox, ...events],
  };
  // One write either way: the grant (which bumps the version) or the vacated lease.
  if (keeps) return grant(moved, node, hb, now, 'store-regressed');
  const why =
    reason === 'store-regressed'
      ? `the store went back (it held epoch ${lease.epoch}, ${node} knows of epoch ${reported}): the lease moves past it; waiting for a node still serving`
      : `${node} will not act again under epoch ${lease.epoch} (${hb.refused?.reason ?? `it acted under epoch ${hb.known?.acted} and runs nothing now`}): the next epoch goes out once no node can still be serving`;
  const next = { ...moved, version: lease.version + 1 };
  return { next, directive: followerDirective(next, hb, why) };
}

/**
 * A node's heartbeat: renew, acquire, take over, or be told to stay passive / demote.
 * `quietMs`: how long this arbiter has seen the lease's current version, on its monotonic clock.
 */
export function onHeartbeat(lease: Lease, node: string, hb: Heartbeat, now: number, quietMs: number): Decision {
  const { terms } = lease;
  const reported = reportedEpoch(hb);
  if (reported > lease.epoch) return vacate(lease, node, hb, now, 'store-regressed');
  // A node that refuses the spec runs nothing: it neither takes nor keeps the lease.
  if (hb.unfit !== undefined) return { next: null, directive: followerDirective(lease, hb, `${node} cannot run this cluster: ${hb.unfit}`) };
  // It left this epoch, or has seen it: not a lease it can use (an agent restarted without its
  // resources, a store that went back to exactly this epoch). Nobody else holds it either. A
  // holder that runs nothing and has acted under it says so by its memory alone: no need to
  // renew it first and wait for its refusal.
  if (lease.holder === node && (hb.refused?.epoch === lease.epoch || leftEpoch(lease, hb))) return vacate(lease, node, hb, now, 'epoch-refused');
  if (hb.vouching) return onVouching(lease, node, { ...hb, vouching: hb.vouching }, now, quietMs);
  const lapsed = quietMs > terms.leaseTtlMs + terms.skewAllowanceMs;
  if (lease.holder === node) {
    // Never earlier than before: the holder may not have heard of a shorter TTL yet (a renewal
    // whose answer was lost), and its deadline stands on the expiry it last learnt.
    const expiresAt = Math.max(lease.expiresAt, leaseExpiry(now, terms.leaseTtlMs));
    const events = failsafeRenewed(lease, hb, now);
    // The same outbox when nothing was decided: the store writes only what changed.
    const outbox = events.length === 0 ? lease.outbox : [...lease.outbox, ...events];
    const next: Lease = { ...lease, version: lease.version + 1, renewedAt: now, expiresAt, failsafe: null, outbox };
    return { next, directive: holderDirective(next, hb) };
  }
  // Neither a node in standby nor, in maintenance, any node other than the holder takes the lease.
  if (lease.standby.includes(node)) return { next: null, directive: followerDirective(lease, hb, `${node} is in standby`) };
  if (lease.maintenance) return { next: null, directive: followerDirective(lease, hb, 'maintenance mode: no node takes the lease over') };
  if (lease.holder === null) {
    if (lease.holdoff) {
      if (serving(hb) && hb.epoch === lease.epoch) return grant(lease, node, hb, now, 'store-regressed');
      // The other node has reported too, neither serving nor knowing of a later epoch (either
      // would have moved the lease on): everything there is to know is known, no need to wait.
      const bothHeard = node !== lease.holdoff.by && hb.role === 'passive';
      if (!lapsed && !bothHeard) {
        const why =
          lease.holdoff.reason === 'store-regressed'
            ? `the store went back (found by ${lease.holdoff.by})`
            : `${lease.holdoff.by} refused epoch ${lease.holdoff.storeEpoch}`;
        return {
          next: null,
          directive: followerDirective(
            lease,
            hb,
            `${why}; waiting ${terms.leaseTtlMs + terms.skewAllowanceMs - quietMs} ms more for a node still serving to report`,
          ),
        };
      }
      return grant(lease, node, hb, now, lease.holdoff.reason);
    }
    if (lease.releasedBy === node && quietMs <= terms.leaseTtlMs) {
      return {
        next: null,
        directive: followerDirective(lease, hb, `released the lease ${quietMs} ms ago; the peer has the first claim for ${terms.leaseTtlMs} ms`),
      };
    }
    return grant(lease, node, hb, now, lease.epoch === 0 ? 'cold-start' : lease.switchover?.to === node ? 'switchover' : 'released');
  }
  if (lapsed) return grant(lease, node, hb, now, 'lease-expired');
  if (terms.earlyFencing && quietMs > terms.suspectAfterMs && hb.peer?.reachable === false) {
    return grant(lease, node, hb, now, 'holder-silent');
  }
  const why =
    quietMs > terms.suspectAfterMs
      ? `${lease.holder} holds epoch ${lease.epoch} and has been silent for ${quietMs} ms, but ${hb.peer ? 'this node still reaches it' : 'this node has not checked it'}`
      : `${lease.holder} holds epoch ${lease.epoch}, renewed ${quietMs} ms ago`;
  return { next: null, directive: followerDirective(lease, hb, why) };
}

function staleEpoch(lease: Lease, node: string, epoch: number): Rejection | null {
  if (lease.holder === node && lease.epoch === epoch) return null;
  return {
    code: 'stale_epoch',
    message: `epoch ${epoch} of ${node} is not current: ${lease.holder ? `${lease.holder} holds epoch ${lease.epoch}` : `the lease is vacant at epoch ${lease.epoch}`}`,
  };
}

/** The holder reports that it preempted the keys of its fencing decision. Idempotent. */
export function onFencingConfirmed(lease: Lease, node: string, report: FencingReport, now: number): Rejection | { next: Lease | null } {
  const stale = staleEpoch(lease, node, report.epoch);
  if (stale) return stale;
  const fencing = lease.fencing;
  if (!fencing) throw new Error(`lease of ${lease.clusterId} has a holder but no fencing decision`);
  if (fencing.confirmedAt !== null) return { next: null };
  const event = epochEvent(lease.clusterId, lease.epoch, now, node, 'fencing.confirmed', {
    keys: report.keys,
    victim: fencing.victim,
    ...(report.durationMs !== undefined && { durationMs: report.durationMs }),
  });
  return {
    next: { ...lease, version: lease.version + 1, fencing: { ...fencing, confirmedAt: now }, outbox: [...lease.outbox, event] },
  };
}

/** The holder gives the lease up after demoting. The peer gets the first claim on it. */
export function onRelease(lease: Lease, node: string, release: Release, now: number): Rejection | { next: Lease | null } {
  // Idempotent: a holder told to release by a renewal answered during its demotion asks again once passive.
  if (release.epoch === lease.epoch && releasedIt(lease, node)) return { next: null };
  const stale = staleEpoch(lease, node, release.epoch);
  if (stale) return stale;
  const event = epochEvent(lease.clusterId, lease.epoch, now, node, 'lease.released', { reason: release.reason });
  const left = failsafeLeft(lease, now, 'released');
  // A pending switchover stays until its target is granted the lease: the releaser's hold-off
  // gives the target the first claim, and the grant names it a switchover.
  return {
    next: { ...lease, holder: null, version: lease.version + 1, expiresAt: now, releasedBy: node, failsafe: null, outbox: [...lease.outbox, ...left, event] },
  };
}

/**
 * An operator asks for a planned switchover to `to`. Only from a holder whose fencing is
 * confirmed (a node still activating finishes first); the holder is told to demote and release
 * at its next renewal, and the target takes the lease through the ordinary grant with fencing.
 */
export function requestSwitchover(lease: Lease, to: string, now: number, by?: Requester): Rejection | { next: Lease | null } {
  if (lease.maintenance) return { code: 'switchover_not_possible', message: 'the cluster is in maintenance mode: nothing changes hands until it ends' };
  if (lease.failsafe && lease.holder) {
    return {
      code: 'switchover_not_possible',
      message: `${lease.holder} serves in failsafe, vouched by ${lease.failsafe.vouchedBy}: the arbiter cannot reach it to make it release; retry once it is heard from again (maintenance and standby are recorded and take effect then)`,
    };
  }
  const state = leaseState(lease, now);
  if (state !== 'held' || lease.holder === null) {
    return { code: 'switchover_not_possible', message: `the lease is ${state}: a switchover needs an active holder whose fencing is confirmed` };
  }
  // The target's own state only once something is active to hand over.
  if (lease.standby.includes(to)) return { code: 'switchover_not_possible', message: `${to} is in standby` };
  if (lease.holder === to) return { code: 'switchover_not_possible', message: `${to} already holds the lease (epoch ${lease.epoch})` };
  if (lease.switchover?.to === to) return { next: null };
  const event = operatorEvent(lease, now, { type: 'switchover.requested', node: to, data: { from: lease.holder } }, by);
  return { next: { ...lease, version: lease.version + 1, switchover: { to, requestedAt: now }, outbox: [...lease.outbox, event] } };
}

/** Whether the lease is vacant because `node` released its current epoch. */
function releasedIt(lease: Lease, node: string): boolean {
  return lease.holder === null && lease.releasedBy === node;
}

/**
 * Whether `node` held `epoch`, as far as the lease remembers: the current epoch (held, or just
 * released by it) and the one before.
 */
function heldEpoch(lease: Lease, node: string, epoch: number): boolean {
  if (epoch === lease.epoch) return lease.holder === node || releasedIt(lease, node);
  return epoch === lease.epoch - 1 && epoch > 0 && lease.previousHolder === node;
}

/**
 * A phase of activation or demotion, or a resource found failed. Starting and monitoring a
 * resource is only legitimate for the current holder under the current epoch. Stopping is
 * reported by a demoting node that has often lost the lease already: accepted for an epoch the
 * node held, the current one or the one before — a report that cannot be true (an epoch the
 * node never held) is refused, so a node cannot fill the timeline with old epochs' reports.
 */
export function phaseEvent(lease: Lease, node: string, report: PhaseReport, now: number): Rejection | { event: ClusterEvent } {
  if (report.direction !== 'stop') {
    const stale = staleEpoch(lease, node, report.epoch);
    if (stale) return stale;
  } else if (!heldEpoch(lease, node, report.epoch)) {
    return {
      code: 'stale_epoch',
      message: `${node} did not hold epoch ${report.epoch} (the lease is at epoch ${lease.epoch}${lease.holder ? `, held by ${lease.holder}` : ''}): no stop to report`,
    };
  }
  const { reportId, epoch, phase, direction, status, durationMs, commandsMs, commands, message } = report;
  return {
    event: {
      id: `${node}.${reportId}`,
      clusterId: lease.clusterId,
      at: now,
      epoch,
      type: 'phase.reported',
      node,
      data: {
        phase,
        direction,
        status,
        ...(durationMs !== undefined && { durationMs }),
        ...(commandsMs !== undefined && { commandsMs }),
        ...(commands !== undefined && { commands }),
        ...(message !== undefined && { message }),
      },
    },
  };
}

/**
 * An operator's event that changes no holder. Its id names the lease version it was decided on
 * (unique, and the same when a retried request decides it again) and sorts after the epoch's
 * fencing.confirmed (step 3) and before its release (step 4).
 */
/** Who asked for a change through the API (recorded on its event). */
export type Requester = NonNullable<ClusterEvent['by']>;

function operatorEvent(lease: Lease, now: number, event: Pick<ClusterEvent, 'type' | 'data'> & { node?: string }, by?: Requester): ClusterEvent {
  const id = `e${lease.epoch}.3.${event.type}.v${String(lease.version).padStart(12, '0')}`;
  return { id, clusterId: lease.clusterId, at: now, epoch: lease.epoch, ...event, ...(by && { by }) } as ClusterEvent;
}

/** A spec may not change a cluster's nodes: the reservation keys derive from them. */
export function nodesChanged(before: readonly string[], after: readonly string[]): Rejection | null {
  if (before.join() === after.join()) return null;
  return {
    code: 'immutable_field',
    message: `the nodes of a cluster cannot change (${before.join(', ')}): their reservation keys derive from them; delete the cluster and create it anew`,
  };
}

/**
 * A new spec version: the lease takes its terms (timing, early fencing) at once. Safe while a
 * node holds the lease: a renewal never moves the expiry earlier, and a holder's deadline uses
 * the shorter of its own TTL and the one each renewal answers with. The nodes, and so the
 * reservation keys, never change. Idempotent for a version already taken.
 */
export function updateTerms(lease: Lease, terms: LeaseTerms, now: number, by?: Requester): Rejection | { next: Lease | null } {
  const refused = nodesChanged(lease.terms.nodes, terms.nodes);
  if (refused) return refused;
  if (terms.specVersion <= lease.terms.specVersion) return { next: null };
  const event = operatorEvent(lease, now, { type: 'spec.updated', data: { specVersion: terms.specVersion } }, by);
  return { next: { ...lease, version: lease.version + 1, terms, outbox: [...lease.outbox, event] } };
}

/** Maintenance mode on or off. Idempotent. */
export function setMaintenance(lease: Lease, enabled: boolean, now: number, by?: Requester): { next: Lease | null } {
  if (lease.maintenance === enabled) return { next: null };
  const event = operatorEvent(lease, now, { type: 'maintenance.changed', data: { enabled } }, by);
  return { next: { ...lease, version: lease.version + 1, maintenance: enabled, outbox: [...lease.outbox, event] } };
}

/**
 * A node in or out of standby. A holder put in standby is told to release at its next renewal
 * (as for a switchover); both nodes in standby is refused — that is maintenance or an outage.
 */
export function setStandby(lease: Lease, node: string, enabled: boolean, now: number, by?: Requester): Rejection | { next: Lease | null } {
  if (lease.standby.includes(node) === enabled) return { next: null };
  if (enabled && lease.standby.length > 0) {
    return {
      code: 'standby_not_possible',
      message: `${lease.standby[0]} is already in standby: one node must stay eligible (use maintenance mode to freeze both)`,
    };
  }
  const standby = enabled ? [...lease.standby, node] : lease.standby.filter((n) => n !== node);
  const event = operatorEvent(lease, now, { type: 'standby.changed', node, data: { enabled } }, by);
  return { next: { ...lease, version: lease.version + 1, standby, outbox: [...lease.outbox, event] } };
}
