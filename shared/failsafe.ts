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

/**
 * Which request asked for a promise: the asking agent process (a random instance id) and its
 * request's sequence number. A holder that names one in its status as released relies on no
 * promise asked for by that request or an earlier one of the same process (see released()).
 */
export interface PromiseAsk {
  instance: string;
  seq: number;
}

/** A promise this node gave its peer, on this node's monotonic clock. */
export interface GivenPromise {
  to: string;
  /** The epoch the peer serves under (0: this node restarted and may have promised before). */
  epoch: number;
  until: number;
  /** The request that last extended it (absent: the promise a restarted node assumes it gave). */
  asked?: PromiseAsk;
}

export interface PromiseRequest {
  /** The asking node. */
  node: string;
  /** The epoch it serves under. */
  epoch: number;
  /** Which request this is (absent: not known, and the promise cannot be released early). */
  asked?: PromiseAsk;
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
  return { accept: true, promise: { to: req.node, epoch: req.epoch, until, ...(req.asked && { asked: req.asked }) } };
}

/**
 * Whether the peer has released the promise `p`. A holder's renewal that the arbiter committed
 * extends its deadline past every promise it asked for before sending it (the same window, from
 * a later moment, on the same clock), and the arbiter's lease then covers that deadline. So the
 * holder relies on none of those promises any more, and says so in its status: `released` names
 * the last request it had sent. Keeping such a promise to its end would only delay a takeover
 * (the passive neither reports the holder silent nor takes a grant while it runs) if the holder
 * dies just after. Released only if no later request of that process extended it: the status
 * may be older than a request that crossed it. The promise a restarted node assumes (no
 * request known) is not released unless a request extended it since; the release then covers
 * it too, as the holder's committed renewal covers whatever its node relied on before it.
 */
export function released(p: GivenPromise | null, by: PromiseAsk | undefined): boolean {
  return p !== null && by !== undefined && p.asked !== undefined && p.asked.instance === by.instance && p.asked.seq <= by.seq;
}

/**
 * Whether a node that starts may have promised in a previous life (a crash, a restart of the
 * agent) and forgotten it. Its epoch memory answers: a promise is given only for an epoch above
 * the one it acted under and is recorded as seen before it is answered, and the node acts on no
 * grant while a promise runs. So if it acted under the highest epoch it has seen, every promise
 * it gave ran out before it acted, and it gives none for that epoch or below: none is in force.
 * A node that never acted (acted 0) cannot tell a new memory from a lost one, and assumes one.
 */
export function mayHavePromised(memory: { seen: number; acted: number }): boolean {
  return memory.acted === 0 || memory.seen > memory.acted;
}

/**
 * A node that may have promised in a previous life behaves as if it had, for one promise window.
 * Not when it found resources running: a node that runs anything gives no promise, and one given
 * before it started them had run out, since it acts on no grant while a promise runs.
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
