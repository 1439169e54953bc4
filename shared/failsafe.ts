/**
 * Failsafe: the arbiter is needed to *change* the holder, not to *keep* it (Patroni's
 * failsafe_mode, for two nodes). When the active cannot renew for any reason other than an
 * answer about the lease, it asks its peer over the peer channel for a promise: not to ask for
 * the lease, not to report the active unreachable, and not to act on a grant, until the promise
 * runs out on the peer's own monotonic clock. The active counts its extension from the moment
 * it *sent* the request, with the lease's drift and margin math (shared/timing.ts), so it stops
 * before the promise ends, whatever either clock does within the drift bound. The passive is the
 * only node that could take over, so while it keeps its promise the active is alone.
 *
 * Pure rules; the agent's loop (agent/loop.ts) and peer channel (agent/peer.ts) do the I/O, and
 * model/failsafe.pml checks them against message loss, crashes and drift.
 */
import type { CycleSnapshot, NodeRole } from './node-role.ts';

/** A promise this node gave its peer, on this node's monotonic clock. */
export interface GivenPromise {
  to: string;
  /** The epoch the peer serves under (0: this node restarted and may have promised before). */
  epoch: number;
  until: number;
}

export interface PromiseRequest {
  /** The asking node. */
  node: string;
  /** The epoch it serves under. */
  epoch: number;
}

export type PromiseAnswer = { accepted: true; ttlMs: number } | { accepted: false; reason: string };

/** What a node knows when its peer asks it for a promise. */
export interface PromiserView {
  /** policy.failsafe of the spec this node runs. */
  enabled: boolean;
  peer: string;
  role: NodeRole;
  /** An action (fencing, activation, demotion) is under way. */
  acting: boolean;
  leftovers: boolean;
  heartbeat: CycleSnapshot['heartbeat'];
  memory: { seen: number; acted: number };
  now: number;
  /** How long a promise runs, on this node's clock: one lease TTL. */
  promiseMs: number;
  current: GivenPromise | null;
}

/**
 * Whether to promise. Only a node that runs nothing and holds no grant promises — one that
 * could take over is exactly the one that must not — and only for an epoch that is current as
 * far as it knows. It promises whether or not it reaches the arbiter itself. A promise never
 * ends earlier than one already given.
 */
export function answerPromise(v: PromiserView, req: PromiseRequest): { accept: true; promise: GivenPromise } | { accept: false; reason: string } {
  const refuse = (reason: string) => ({ accept: false as const, reason });
  if (!v.enabled) return refuse("failsafe is off in this cluster's policy");
  if (req.node !== v.peer) return refuse(`${req.node} is not this node's peer`);
  if (v.role !== 'passive' || v.acting) return refuse(`this node is ${v.role}${v.acting ? ' with an action under way' : ''}, not an idle passive`);
  if (v.leftovers) return refuse('resources a previous agent process left are still running here');
  if (v.heartbeat.ok && v.heartbeat.directive.action === 'activate') return refuse(`the arbiter granted this node epoch ${v.heartbeat.directive.epoch}`);
  if (req.epoch < v.memory.seen || (req.epoch <= v.memory.acted && v.memory.acted > 0)) {
    return refuse(`epoch ${req.epoch} is not current: this node knows of epoch ${Math.max(v.memory.seen, v.memory.acted)}`);
  }
  const until = Math.max(v.current?.until ?? Number.NEGATIVE_INFINITY, v.now + v.promiseMs);
  return { accept: true, promise: { to: req.node, epoch: req.epoch, until } };
}

/**
 * A node that starts may have promised in a previous life (a crash, a restart of the agent) and
 * forgotten it: it behaves as if it had, for one promise window. Not when it found resources
 * running: a node that runs anything gives no promise, and one given before it started them had
 * run out, since it acts on no grant while a promise runs.
 */
export function restartPromise(peer: string, now: number, promiseMs: number): GivenPromise {
  return { to: peer, epoch: 0, until: now + promiseMs };
}

/** The promise still running at `now`, as the heartbeat reports it; null if none. */
export function vouching(p: GivenPromise | null, now: number): { for: string; epoch: number; remainingMs: number } | null {
  if (!p || p.until <= now) return null;
  return { for: p.to, epoch: p.epoch, remainingMs: Math.ceil(p.until - now) };
}

/**
 * Whether an answer from the arbiter settles the holder's fate. Only an answer about the lease
 * does: another holder, another epoch, demote, release. Anything else — no answer, a 5xx, an
 * authentication failure, a renewal not committed — leaves the question open, and the active
 * may serve on a promise: the promise, not the arbiter's answer, keeps the peer from taking over.
 */
export function definiteAnswer(h: CycleSnapshot['heartbeat'], epoch: number): boolean {
  if (!h.ok) return false;
  const d = h.directive;
  return !((d.action === 'stay-active' || d.action === 'activate') && d.epoch === epoch);
}
