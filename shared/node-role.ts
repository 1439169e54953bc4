/**
 * The agent's side of the protocol: what a node does next, decided from an immutable snapshot of
 * what it knows, one decision per cycle (Patroni's run cycle), each with a sentence saying why.
 *
 * Roles and their transitions, as one table (pg_auto_failover's keeper FSM): the agent moves
 * only along these rows, and `assertTransition` refuses anything else.
 */
import type { Directive } from './lease.ts';
import type { ReservationKey } from './reservation-key.ts';
import { activeWindowMs, type Timing } from './timing.ts';

export const NODE_ROLES = ['passive', 'fencing', 'activating', 'active', 'demoting'] as const;
export type NodeRole = (typeof NODE_ROLES)[number];

export const TRANSITIONS: readonly { from: NodeRole; to: NodeRole; when: string }[] = [
  { from: 'passive', to: 'fencing', when: 'granted an epoch whose fencing is not yet confirmed' },
  { from: 'passive', to: 'activating', when: 'holder of an epoch whose fencing is confirmed (agent restart)' },
  { from: 'passive', to: 'demoting', when: 'resources left running by a previous agent process, and this node does not hold the lease' },
  { from: 'fencing', to: 'activating', when: 'the arbiter acknowledged the fencing report' },
  { from: 'fencing', to: 'demoting', when: 'fencing failed, the lease was lost, or the deadline passed' },
  { from: 'activating', to: 'active', when: 'every resource started' },
  { from: 'activating', to: 'demoting', when: 'a resource failed to start, the lease was lost, or the deadline passed' },
  { from: 'active', to: 'active', when: "granted a new epoch while serving (the arbiter's store went back), or its fencing is not on record: fence again under it, without stopping" },
  { from: 'active', to: 'demoting', when: 'deadline passed, told to demote, or a resource failed past its restart limit' },
  { from: 'demoting', to: 'passive', when: 'every resource stopped' },
];

export function assertTransition(from: NodeRole, to: NodeRole): void {
  if (from !== to && !TRANSITIONS.some((t) => t.from === from && t.to === to)) throw new Error(`illegal role transition ${from} → ${to}`);
}

/** The role reported to the control plane (fencing is part of activating there). */
export function reportedRole(role: NodeRole): 'passive' | 'activating' | 'active' | 'demoting' {
  return role === 'fencing' ? 'activating' : role;
}

export interface CycleSnapshot {
  role: NodeRole;
  /** Epoch this node acts under (0: none). */
  epoch: number;
  /** Epoch whose fencing the arbiter acknowledged (0: none). */
  confirmedEpoch: number;
  /** Local monotonic time. */
  now: number;
  /** Until when this node may act as holder, on its monotonic clock (null: it holds nothing). */
  deadline: number | null;
  /** The latest heartbeat's outcome. */
  heartbeat: { ok: true; directive: Directive; renewed: boolean; maintenance?: boolean } | { ok: false; error: string };
  /** False when our reservation key has vanished from the disk while we hold it; null if not checked. */
  keyPresent: boolean | null;
  /** A resource monitor reported failed, with how often it was already restarted locally. */
  failure: { resource: string; reason: string; restarts: number } | null;
  maxRestarts: number;
  /** Resources found running at start-up that this agent process did not start. */
  leftovers: boolean;
  /** This node's persisted epoch memory (agent/epoch-memory.ts). */
  memory: { seen: number; acted: number };
  /** A failsafe promise this node gave its peer that still runs (shared/failsafe.ts); null if none. */
  vouching?: { for: string; epoch: number; remainingMs: number } | null;
}

export type CycleAction =
  | { action: 'none'; reason: string }
  | { action: 'fence'; epoch: number; keys: ReservationKey[]; reason: string }
  | { action: 'refence'; epoch: number; keys: ReservationKey[]; reason: string }
  | { action: 'refuse'; epoch: number; reason: string }
  | { action: 'activate'; epoch: number; reason: string }
  | { action: 'restart'; resource: string; reason: string }
  | { action: 'release'; epoch: number; reason: string; why: 'resource-failure' | 'switchover' }
  | { action: 'demote'; reason: string }
  | { action: 'self-fence'; reason: string };

const holding = (role: NodeRole) => role === 'fencing' || role === 'activating' || role === 'active';

export function decideCycle(s: CycleSnapshot): CycleAction {
  if (holding(s.role) && s.keyPresent === false) {
    return { action: 'self-fence', reason: `our reservation key is gone while ${s.role} under epoch ${s.epoch}: the peer fenced us; self-fencing` };
  }
  if (holding(s.role) && (s.deadline === null || s.now >= s.deadline)) {
    return {
      action: 'demote',
      reason: `lease deadline passed ${s.deadline === null ? '' : `${Math.round(s.now - s.deadline)} ms ago `}without a renewal: demoting before anyone else may take over`,
    };
  }
  if (s.role === 'passive' && s.leftovers) {
    // Resources left by a previous agent process may be kept only under the very epoch they
    // were started in: a grant whose fencing is already confirmed can only be this node's own
    // earlier epoch. A new epoch means another node may have written since, and a mount from
    // before that would write over it: stop everything, then fence and start clean.
    const h = s.heartbeat;
    const sameEpoch =
      h.ok &&
      h.renewed &&
      h.directive.epoch === s.memory.acted &&
      (h.directive.action === 'stay-active' || (h.directive.action === 'activate' && h.directive.fence.confirmed));
    if (!sameEpoch) {
      const why = !h.ok
        ? h.error
        : h.renewed && h.directive.action === 'activate'
          ? h.directive.epoch === s.memory.acted
            ? `epoch ${h.directive.epoch}'s fencing is not on record`
            : `granted epoch ${h.directive.epoch}, not the ${s.memory.acted} they run under; another node may have written since`
          : h.directive.reason;
      return {
        action: 'demote',
        reason: `resources left running by a previous agent process, and this node does not hold their epoch (${why}): stopping them`,
      };
    }
  }
  if (s.role === 'passive' && s.vouching && s.heartbeat.ok && s.heartbeat.directive.action === 'activate') {
    const v = s.vouching;
    return {
      action: 'none',
      reason: `${v.epoch === 0 ? 'restarted within a promise window' : `vouching for ${v.for} (epoch ${v.epoch})`}: not acting on epoch ${s.heartbeat.directive.epoch} for ${v.remainingMs} ms more`,
    };
  }
  if (!s.heartbeat.ok) {
    if (!holding(s.role)) return { action: 'none', reason: `control plane unreachable (${s.heartbeat.error}); staying ${s.role}` };
    // A local restart changes no holder: it needs no arbiter (an active in failsafe may serve for long).
    // Past the limit, releasing needs the arbiter: demote, and the lease runs out.
    if (s.role === 'active' && s.failure) {
      if (s.failure.restarts < s.maxRestarts) {
        return {
          action: 'restart',
          resource: s.failure.resource,
          reason: `${s.failure.resource} failed (${s.failure.reason}); local restart ${s.failure.restarts + 1} of ${s.maxRestarts} (control plane unreachable)`,
        };
      }
      return { action: 'demote', reason: `${s.failure.resource} failed ${s.failure.restarts} times (${s.failure.reason}) and the control plane is unreachable: demoting` };
    }
    return { action: 'none', reason: `control plane unreachable (${s.heartbeat.error}); lease valid for ${Math.round(s.deadline! - s.now)} ms more` };
  }
  const d = s.heartbeat.directive;
  switch (d.action) {
    case 'release':
      // Planned switchover: stop everything, then hand the lease over (a passive holder — an
      // agent restarted before it activated — has nothing to stop).
      if (s.role === 'demoting') return { action: 'none', reason: 'demotion in progress' };
      return { action: 'release', epoch: d.epoch, reason: `control plane: ${d.reason}`, why: 'switchover' };
    case 'stay-passive':
    case 'demote':
      if (s.role === 'passive') return { action: 'none', reason: `passive: ${d.reason}` };
      if (s.role === 'demoting') return { action: 'none', reason: 'demotion in progress' };
      return { action: 'demote', reason: `control plane: ${d.reason}` };
    case 'activate':
    case 'stay-active': {
      if (!s.heartbeat.renewed) return { action: 'none', reason: `${d.action} for epoch ${d.epoch} without a committed renewal; waiting` };
      if (s.role === 'demoting') return { action: 'none', reason: `demotion in progress; epoch ${d.epoch} can be taken once it completes` };
      const known = Math.max(s.memory.seen, s.memory.acted);
      if (s.role === 'active' && d.action === 'activate' && !d.fence.confirmed && (d.epoch === s.epoch || (d.epoch > s.epoch && d.epoch > known))) {
        // The arbiter lost what it knew (its store went back): it moved the lease past our epoch
        // and gave us the next one, or it lost our fencing report. Fence again and report it,
        // serving all along — nobody else acted in between, or our key would be gone.
        const why = d.epoch === s.epoch ? `the arbiter has no record of epoch ${d.epoch}'s fencing` : `granted epoch ${d.epoch} while serving under ${s.epoch}`;
        return { action: 'refence', epoch: d.epoch, keys: d.fence.keys, reason: `${why}: fencing ${d.fence.keys.join(', ')} again and reporting it, without stopping` };
      }
      if (holding(s.role) && s.epoch !== d.epoch)
        return { action: 'demote', reason: `acting under epoch ${s.epoch} but the lease is epoch ${d.epoch}: demote first` };
      // A new grant only above every epoch this node remembers: the one it holds in this process
      // (or its leftovers run under) is not new, but one it has left or seen is never taken again.
      const continuing = (holding(s.role) && s.epoch === d.epoch) || (s.leftovers && d.epoch === s.memory.acted);
      if (!continuing && d.epoch <= known) {
        return {
          action: 'refuse',
          epoch: d.epoch,
          reason: `refusing epoch ${d.epoch}: this node has ${d.epoch <= s.memory.acted ? `acted under epoch ${s.memory.acted}` : `seen epoch ${s.memory.seen} granted`} and never acts again under an epoch it has left or seen; asking for a new one`,
        };
      }
      const confirmed = s.confirmedEpoch === d.epoch || (d.action === 'activate' && d.fence.confirmed);
      if (!confirmed) {
        if (d.action !== 'activate') return { action: 'none', reason: `epoch ${d.epoch} renewed but its fencing is not confirmed` };
        return {
          action: 'fence',
          epoch: d.epoch,
          keys: d.fence.keys,
          reason: `granted epoch ${d.epoch}: fencing ${d.fence.keys.join(', ')}${d.fence.victim ? ` of ${d.fence.victim}` : ''} before anything starts`,
        };
      }
      if (s.role !== 'active') return { action: 'activate', epoch: d.epoch, reason: `holder of epoch ${d.epoch}, fencing confirmed: starting resources` };
      if (s.failure && s.heartbeat.maintenance) {
        return { action: 'none', reason: `maintenance mode: ${s.failure.resource} failed (${s.failure.reason}); not restarting or releasing` };
      }
      if (s.failure) {
        if (s.failure.restarts < s.maxRestarts) {
          return {
            action: 'restart',
            resource: s.failure.resource,
            reason: `${s.failure.resource} failed (${s.failure.reason}); local restart ${s.failure.restarts + 1} of ${s.maxRestarts}`,
          };
        }
        return {
          action: 'release',
          epoch: s.epoch,
          reason: `${s.failure.resource} failed ${s.failure.restarts} times (${s.failure.reason}); releasing the lease so the peer takes over`,
          why: 'resource-failure',
        };
      }
      return { action: 'none', reason: `active: holder of epoch ${s.epoch}, lease renewed` };
    }
  }
}

/** What a passive node last heard from its peer over the peer channel. */
export interface PeerView {
  role: NodeRole;
  leaseRemainingMs: number | null;
}

/**
 * How long a passive node may wait between polls of the arbiter. Slowly only while the peer
 * is an active whose renewals are landing (its lease has at most two renewal intervals fewer
 * left than a fresh one); at full rate when the peer is silent, renewing late, demoting,
 * passive, or unknown — everything a takeover may follow.
 */
export function passivePollIntervalMs(t: Timing, peer: PeerView | null): number {
  const healthyFloor = activeWindowMs(t) - 2 * t.renewIntervalMs;
  const healthy = peer !== null && peer.role === 'active' && peer.leaseRemainingMs !== null && peer.leaseRemainingMs >= healthyFloor;
  return healthy ? t.passivePollMs : t.renewIntervalMs;
}
