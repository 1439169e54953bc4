/**
 * The agent's HA loop. Every renewIntervalMs a tick sends one heartbeat — always, even while an
 * action runs, so a slow activation never costs the lease — and, when no action is running,
 * makes one decision with the pure rules of shared/node-role.ts and starts it. Each decision
 * is logged as one sentence.
 *
 * The deadline is kept on the monotonic clock from the moment a committed renewal was *sent*
 * (shared/timing.ts). A timer fires at the deadline: whatever is running is told to stop at the
 * next step, and demotion begins. Demotion that does not finish within its budget, a failed
 * stop, or our reservation key vanishing while we hold the lease, ends in self-fencing.
 *
 * Failsafe (shared/failsafe.ts): a holder whose renewal got no answer about the lease asks its
 * peer for a promise, and an accepted one extends the deadline as a renewal would. A passive
 * node answers such requests, and keeps what it promised: while a promise runs it tells the
 * arbiter it vouches, and acts on no grant.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { MAX_PHASE_COMMANDS, type Phase, type PhaseDirection } from '../shared/events.ts';
import type { AgentBuild, Release } from '../shared/lease.ts';
import {
  assertTransition,
  type CycleAction,
  type CycleSnapshot,
  decideCycle,
  type NodeRole,
  passivePollIntervalMs,
  type PeerView,
  reportedRole,
} from '../shared/node-role.ts';
import type { ReservationKey } from '../shared/reservation-key.ts';
import type { ClusterSpec } from '../shared/spec.ts';
import { activeDeadline, maxWatchdogTimeoutMs } from '../shared/timing.ts';
import {
  answerPromise,
  definiteAnswer,
  type GivenPromise,
  type PromiseAnswer,
  type PromiseAsk,
  type PromiseRequest,
  released,
  mayHavePromised,
  restartPromise,
  vouching,
} from '../shared/failsafe.ts';
import { type ControlPlane, ControlPlaneError } from './control-plane-client.ts';
import type { EpochMemory } from './epoch-memory.ts';
import type { CommandLedger, CommandTime } from './executor.ts';
import type { AgentMetrics } from './metrics.ts';
import type { PeerStatus } from './peer.ts';
import type { NodeResources } from './resources/index.ts';
import { type FencingState, type Resource, SafetyInDoubt } from './resources/resource.ts';
import type { SelfFence } from './self-fence.ts';
import type { ClientConnection, ClientTickler } from './tickle.ts';
import { VERSION } from '../shared/version.ts';

/** What this agent reports of itself, so that status shows a cluster of mixed versions. */
const AGENT_BUILD: AgentBuild = { version: VERSION, runtime: process.version };

export interface AgentDeps {
  spec: ClusterSpec;
  nodeId: string;
  controlPlane: ControlPlane;
  resources: NodeResources;
  /** Shared with the resources: the volume group refuses to activate without it. */
  fencing: FencingState;
  selfFence: SelfFence;
  /** The epochs this node has seen and acted under, on its own disk. */
  memory: EpochMemory;
  /** The passive's view of its peer over the peer channel, and the holder's way to ask it for a failsafe promise. */
  peer: {
    reachable(): boolean | undefined;
    /** The peer's last status, while it answers; `released` as the peer's own status() says. */
    status(): (PeerView & { released?: PromiseAsk | undefined }) | null;
    /** The last promise request (or release, or handover) this process sent. */
    asked(): PromiseAsk;
    /** Tells the peer this node relies on none of the promises it asked for up to `through`; throws when it does not answer. */
    release(node: string, through: PromiseAsk, timeoutMs: number): Promise<boolean>;
    /** Tells the peer this node gave the lease of `epoch` back to the arbiter; throws when it does not answer. */
    handover(node: string, epoch: number, timeoutMs: number): Promise<boolean>;
    /** The NFS clients the peer last served as the active ("address:port", checked when tickled). */
    clients(): readonly string[];
    check(): Promise<void>;
    /** Asks the peer to vouch for `node` serving under `epoch`; throws when it does not answer in time. */
    promise(node: string, epoch: number, timeoutMs: number): Promise<PromiseAnswer>;
  } | null;
  /** Monotonic milliseconds. */
  now: () => number;
  /** Books each command to the phase that ran it (absent: phases report no commands). */
  ledger?: CommandLedger;
  log: Logger;
  maxRestarts: number;
  monitorIntervalMs: number;
  /** How often a pass also runs the monitors that query storage (Resource.queriesStorage). */
  storageMonitorIntervalMs: number;
  demoteBudgetMs: number;
  /** Reads the clients connected to the VIP here, and tickles the peer's after a takeover (absent: neither). */
  clients?: ClientTickler;
  /** Counts heartbeats and monitor results (absent: not counted). */
  metrics?: Pick<AgentMetrics, 'heartbeat' | 'resource' | 'resourcesStopped'>;
  /** The spec version this process runs. */
  specVersion?: number;
  /**
   * A newer spec version is out and this node runs nothing: the process restarts to take it
   * (the agent's service restarts it). A node running resources stops them with the spec it
   * started them with, and takes the new one once passive.
   */
  onNewSpec?: (version: number) => void;
  /** Runs `fn` after `ms` of the agent's time (default: setTimeout); the simulator supplies its own. */
  timer?: (ms: number, fn: () => void) => { cancel(): void };
}

const realTimer = (ms: number, fn: () => void) => {
  const t = setTimeout(fn, ms);
  return { cancel: () => clearTimeout(t) };
};

class Interrupted extends Error {}

/** Tries per promise request: a lost packet on the peer channel must not cost the active its deadline. */
const PROMISE_ATTEMPTS = 3;
/** How long into the peer's term a passive readies itself again for a takeover: past its clients' recovery. */
export const PREPARE_AFTER_PEER_MS = 5_000;

export class NodeAgent {
  #role: NodeRole = 'passive';
  #deadline: number | null = null;
  #lastHeartbeat: CycleSnapshot['heartbeat'] = { ok: false, error: 'no heartbeat yet' };
  #heartbeatInFlight = false;
  #action: Promise<void> | null = null;
  #interrupt = false;
  #keyPresent: boolean | null = null;
  #failure: CycleSnapshot['failure'] = null;
  #monitoring: Promise<void> | null = null;
  #tickling: Promise<void> | null = null;
  /** The NFS clients connected to the VIP here, as the last monitor pass read them (reported to the peer). */
  #clients: ClientConnection[] = [];
  /** Counts actions started, so a monitor pass that overlapped one is not trusted. */
  #actionsStarted = 0;
  #restarts = new Map<string, number>();
  #lastMonitorAt = Number.NEGATIVE_INFINITY;
  #lastStorageMonitorAt = Number.NEGATIVE_INFINITY;
  #lastSituation = '';
  #timers: NodeJS.Timeout[] = [];
  #deadlineTimer: NodeJS.Timeout | null = null;
  #running = false;
  #leftovers = false;
  #lastPollAt = Number.NEGATIVE_INFINITY;
  /** The run loop's way to tick at once, while it waits for its next tick (null otherwise). */
  #wake: (() => void) | null = null;
  /** Asked to tick at once while a tick ran: the next one starts without waiting. */
  #woken = false;
  /** The peer as a passive last saw it: active or not (null: not seen yet; the agent's start prepared for it). */
  #peerActive: boolean | null = null;
  /** When the passive readies itself again, some way into the peer's new term (null: nothing due). */
  #prepareAt: number | null = null;
  #deciding = false;
  #reports = 0;
  #latestSpec = 0;
  /** An epoch the arbiter gave us that we will not act under; said in every heartbeat until a new grant. */
  #refused: { epoch: number; reason: string } | null = null;
  #credentialRejected = false;
  readonly #peerId: string;
  /** The failsafe promise this node gave its peer (passive side). */
  #promise: GivenPromise | null = null;
  /** Serving on the peer's promises, the arbiter unreachable: since when (holder side). */
  #failsafeSince: number | null = null;
  /** The release the control plane said in its latest answer (null: none, or an older one that does not say). */
  #controlPlaneVersion: string | null = null;
  /** The last promise request sent before this holder's latest committed renewal: it relies on none up to it. */
  #released: PromiseAsk | null = null;
  /** A promise was asked for since the last committed renewal: the next one tells the peer it is released. */
  #promisesAsked = false;
  /** When the first promise since the last committed renewal was asked for. */
  #vouchedSince: number | null = null;
  #lastRefusal = '';
  #petTimer: { cancel(): void } | null = null;

  constructor(private readonly d: AgentDeps) {
    this.#peerId = d.spec.nodes.find((n) => n.id !== d.nodeId)!.id;
    // This process may have been preceded by one that promised and died: keep that promise.
    if (this.#failsafeOn && mayHavePromised(d.memory.current())) this.#promise = restartPromise(this.#peerId, d.now(), d.spec.timing.leaseTtlMs);
    d.fencing.leaseRemainingMs = () => (this.#deadline === null ? 0 : Math.max(0, this.#deadline - d.now()));
  }

  get #failsafeOn(): boolean {
    return this.d.peer !== null && this.d.spec.policy.failsafe;
  }

  /**
   * At start-up: finds resources a previous agent process left running (it crashed or was
   * killed while active). They are adopted only if the arbiter says this node holds the lease;
   * otherwise the first decision stops them.
   */
  async recover(): Promise<string[]> {
    const running: string[] = [];
    const stopped = new Set<string>();
    for (const r of this.d.resources.ordered) {
      if (r === this.d.resources.reservation) continue;
      const m = await r.monitor().catch((err: Error) => ({ state: 'failed' as const, reason: err.message }));
      if (m.state === 'stopped' || (r.inEffectOnlyWith && stopped.has(r.inEffectOnlyWith) && (await this.#clearStale(r)))) stopped.add(r.name);
      else running.push(r.name);
    }
    this.#leftovers = running.length > 0;
    // A node that runs anything gives no promise, and one given before its resources started had run out.
    if (this.#leftovers) this.#promise = null;
    if (this.#leftovers) this.d.log.warn({ resources: running }, `found running without this process: ${running.join(', ')}`);
    return running;
  }

  /**
   * A resource found "running" while the one it takes effect through is stopped (exports with
   * no NFS server) is a record left from before: cleared, rather than demoted for, which would
   * stop every unit at boot and keep the node from vouching for its peer meanwhile.
   */
  async #clearStale(r: Resource): Promise<boolean> {
    try {
      await r.stop();
      this.d.log.info({ resource: r.name }, `${r.name} listed from before this node stopped serving, with ${r.inEffectOnlyWith} stopped: cleared`);
      return true;
    } catch (err) {
      this.d.log.warn({ resource: r.name, err: (err as Error).message }, `stale ${r.name} not cleared: ${(err as Error).message}`);
      return false;
    }
  }

  get role(): NodeRole {
    return this.#role;
  }

  get deadline(): number | null {
    return this.#deadline;
  }

  status(): PeerStatus {
    const now = this.d.now();
    const promised = vouching(this.#promise, now);
    return {
      node: this.d.nodeId,
      role: this.#role,
      epoch: this.#role === 'passive' ? 0 : this.d.fencing.epoch,
      leaseRemainingMs: this.#deadline === null ? null : Math.round(this.#deadline - now),
      ...(this.#failsafeSince !== null && { failsafe: { vouchedBy: this.#peerId, forMs: Math.round(now - this.#failsafeSince) } }),
      ...(this.#role !== 'passive' && this.#released && { released: this.#released }),
      ...(promised && { vouching: promised }),
      ...(this.#role === 'active' && this.d.clients && { clients: this.#clients }),
    };
  }

  /**
   * The peer relies on none of the promises it asked for up to `through` (its status says so, or
   * its release, sent when its renewal landed): a promise no later request extended ends now.
   */
  releasePromise(node: string, through: PromiseAsk | undefined): boolean {
    if (node !== this.#peerId || !released(this.#promise, through)) return false;
    this.d.log.info(
      { peer: node, epoch: this.#promise!.epoch },
      `${node} renewed its lease since it asked this node to vouch: the promise ends now (failsafe)`,
    );
    this.#promise = null;
    return true;
  }

  /**
   * The peer gave the lease of `epoch` back to the arbiter (a switchover, a standby, a resource
   * past its restarts, its agent stopping) and says so over the peer channel: a passive asks the
   * arbiter at once instead of at its next tick. The arbiter decides, as at any poll.
   */
  leaseHandedOver(node: string, epoch: number): boolean {
    // Already acting (a grant this node polled for itself came first): nothing to hurry.
    if (node !== this.#peerId || this.#role !== 'passive' || this.#action || this.#deciding) return false;
    this.d.log.info({ peer: node, epoch }, `${node} gave the lease of epoch ${epoch} back: asking the arbiter now`);
    this.#lastPollAt = Number.NEGATIVE_INFINITY;
    if (this.#wake) this.#wake();
    else this.#woken = true;
    return true;
  }

  /**
   * The peer asks this node to vouch for it (the peer channel calls this). A promise newly given
   * is told to the arbiter at once, and kept until it runs out on this node's clock. An epoch not
   * seen before is on disk before the promise is given (a restarted node relies on it:
   * mayHavePromised).
   */
  async answerPromise(req: PromiseRequest): Promise<PromiseAnswer> {
    let answer = this.#promiseAnswer(req);
    if (answer.accept && req.epoch > this.d.memory.current().seen) {
      await this.d.memory.record({ seen: req.epoch });
      answer = this.#promiseAnswer(req); // the node may have changed while it wrote
    }
    if (!answer.accept) {
      if (answer.reason !== this.#lastRefusal) this.d.log.warn({ peer: req.node, epoch: req.epoch }, `not vouching for ${req.node}: ${answer.reason}`);
      this.#lastRefusal = answer.reason;
      return { accepted: false, reason: answer.reason };
    }
    const now = this.d.now();
    const promiseMs = this.d.spec.timing.leaseTtlMs;
    this.#lastRefusal = '';
    if (!vouching(this.#promise, now)?.epoch) {
      this.d.log.warn(
        { peer: req.node, epoch: req.epoch, promiseMs },
        `${req.node} cannot reach the arbiter and asks this node to vouch for it (epoch ${req.epoch}): promised not to take the lease for ${promiseMs} ms, renewed while it asks (failsafe)`,
      );
      this.#lastPollAt = Number.NEGATIVE_INFINITY;
    }
    this.#promise = answer.promise;
    return { accepted: true, ttlMs: promiseMs };
  }

  #promiseAnswer(req: PromiseRequest): ReturnType<typeof answerPromise> {
    return answerPromise(
      {
        enabled: this.#failsafeOn,
        peer: this.#peerId,
        role: this.#role,
        acting: this.#action !== null,
        leftovers: this.#leftovers,
        heartbeat: this.#lastHeartbeat,
        memory: this.d.memory.current(),
        now: this.d.now(),
        promiseMs: this.d.spec.timing.leaseTtlMs,
        current: this.#promise,
      },
      req,
    );
  }

  /** Resolves when the action in progress (if any) has finished. */
  async settled(): Promise<void> {
    while (this.#action) await this.#action;
  }

  /** One heartbeat; a committed renewal for the epoch we act under extends the deadline. */
  async heartbeat(): Promise<void> {
    if (this.#heartbeatInFlight) return;
    this.#heartbeatInFlight = true;
    const sentAt = this.d.now();
    const asked = this.d.peer?.asked();
    const holding = this.#role !== 'passive';
    let renewed = false;
    let answered = false;
    try {
      const reachable = this.d.peer?.reachable();
      // While it vouches, a node does not report its peer unreachable: its promise says so.
      const promised = vouching(this.#promise, sentAt);
      const r = await this.d.controlPlane.heartbeat({
        role: reportedRole(this.#role),
        epoch: holding ? this.d.fencing.epoch : 0,
        ...(promised ? { vouching: promised } : reachable !== undefined && { peer: { reachable } }),
        known: this.d.memory.current(),
        ...(this.#leftovers && { leftovers: true }),
        ...(this.#refused && { refused: this.#refused }),
        ...(holding && this.#failsafeSince !== null && { failsafe: { forMs: Math.round(sentAt - this.#failsafeSince), vouchedBy: this.#peerId } }),
        ...(this.#controlPlaneVersion !== null && { agent: AGENT_BUILD }),
      });
      this.#controlPlaneVersion = r.controlPlaneVersion ?? null;
      // An epoch granted to someone else (or left vacant) is remembered before anything is decided on it.
      if (r.lease.holder !== this.d.nodeId) await this.d.memory.record({ seen: r.lease.epoch });
      answered = true;
      this.#credentialAccepted();
      this.#lastHeartbeat = { ok: true, directive: r.directive, renewed: r.lease.renewed, maintenance: r.lease.maintenance };
      this.#latestSpec = Math.max(this.#latestSpec, r.lease.specVersion);
      const ours = r.lease.renewed && r.lease.holder === this.d.nodeId && (!holding || r.lease.epoch === this.d.fencing.epoch);
      // A committed renewal of our epoch keeps the lease from anyone else until the deadline,
      // whatever this node does with it meanwhile: acting, or stopping in order before it
      // releases (switchover, standby, a resource past its restarts). A demoting holder's
      // deadline therefore moves on and its watchdog is petted; the demotion budget bounds it.
      // A renewal answered after the demotion completed extends nothing.
      const extendsLease = holding ? this.#role !== 'passive' : r.directive.action === 'activate';
      if (ours && extendsLease) {
        // The arbiter's TTL may be shorter than ours (the spec changed since we started): the shorter rules.
        const timing = { ...this.d.spec.timing, leaseTtlMs: Math.min(this.d.spec.timing.leaseTtlMs, r.lease.ttlMs) };
        this.#setDeadline(activeDeadline(sentAt, timing));
        renewed = holding;
        if (holding && asked && asked.seq > 0) this.#released = asked;
        if (holding && asked && this.#promisesAsked) {
          this.#promisesAsked = false;
          // At once, so that the peer is not kept out of a takeover should this node die next;
          // the status says the same at the peer's next check if this is lost.
          this.d.peer?.release(this.d.nodeId, asked, this.#peerTimeoutMs()).catch(() => {});
        }
        if (holding) await this.d.selfFence.pet();
        if (holding && this.#failsafeSince !== null) {
          const failsafeMs = Math.round(sentAt - this.#failsafeSince);
          this.d.log.info(
            { epoch: this.d.fencing.epoch, failsafeMs },
            `the arbiter answers again: renewals resume under epoch ${this.d.fencing.epoch} after ${(failsafeMs / 1000).toFixed(1)} s in failsafe`,
          );
          this.#failsafeSince = null;
        }
      }
    } catch (err) {
      this.#lastHeartbeat = { ok: false, error: (err as Error).message };
      if (err instanceof ControlPlaneError && (err.status === 401 || err.status === 403)) this.#credentialRejected401(err);
    } finally {
      this.#heartbeatInFlight = false;
    }
    this.d.metrics?.heartbeat(renewed ? 'renewed' : answered ? 'answered' : 'failed', (this.d.now() - sentAt) / 1000);
    if (renewed) {
      this.#vouchedSince = null;
      return;
    }
    // An answer about the lease is final: the decision demotes. Anything else: ask the peer.
    if (this.#mayAskPromise() && !definiteAnswer(this.#lastHeartbeat, this.d.fencing.epoch)) {
      await this.#askPromise();
      this.#enterFailsafe();
    }
  }

  #serving(): boolean {
    return this.#role === 'activating' || this.#role === 'active';
  }

  #mayAskPromise(): boolean {
    return this.#failsafeOn && this.#serving();
  }

  /** The peer is on the local network: a short timeout (and for a promise another try or two at once). */
  #peerTimeoutMs(): number {
    return Math.min(this.d.spec.timing.requestTimeoutMs, this.d.spec.timing.renewIntervalMs / 2);
  }

  /**
   * The arbiter gave no answer about the lease: ask the peer to vouch. An accepted promise
   * extends the deadline from the moment the request was sent, as a committed renewal would.
   */
  async #askPromise(): Promise<void> {
    const epoch = this.d.fencing.epoch;
    const timeoutMs = this.#peerTimeoutMs();
    this.#promisesAsked = true;
    let sentAt = this.d.now();
    let answer: PromiseAnswer = { accepted: false, reason: 'not asked' };
    for (let attempt = 1; attempt <= PROMISE_ATTEMPTS; attempt++) {
      sentAt = this.d.now();
      try {
        answer = await this.d.peer!.promise(this.d.nodeId, epoch, timeoutMs);
        break;
      } catch (err) {
        answer = { accepted: false, reason: `no answer from ${this.#peerId} (${(err as Error).message})` };
      }
    }
    const serving = this.#serving() && this.d.fencing.epoch === epoch;
    if (!answer.accepted || !serving || this.#deadline === null || this.d.now() >= this.#deadline) {
      if (!answer.accepted && answer.reason !== this.#lastRefusal) {
        const left = this.#deadline === null ? 0 : Math.max(0, Math.round(this.#deadline - this.d.now()));
        this.d.log.warn(
          { epoch, peer: this.#peerId },
          `the arbiter is unreachable and ${this.#peerId} does not vouch (${answer.reason}): demoting at the deadline, in ${left} ms`,
        );
      }
      if (!answer.accepted) this.#lastRefusal = answer.reason;
      return;
    }
    this.#lastRefusal = '';
    const timing = { ...this.d.spec.timing, leaseTtlMs: Math.min(this.d.spec.timing.leaseTtlMs, answer.ttlMs) };
    this.#setDeadline(Math.max(this.#deadline, activeDeadline(sentAt, timing)));
    this.#vouchedSince ??= sentAt;
    await this.d.selfFence.pet();
  }

  /**
   * Pets the watchdog if it may: only while the deadline is at least the longest allowed
   * watchdog timeout away, so that a node whose agent hangs after this pet is reset before its
   * deadline. On a timer of its own (keepWatchdog), between the pets that every extension gives,
   * so that a renewal that times out does not starve a watchdog the deadline still covers.
   */
  async #petIfSafe(): Promise<void> {
    if (this.#role === 'passive' || this.#deadline === null) return;
    if (this.d.now() + maxWatchdogTimeoutMs(this.d.spec.timing) <= this.#deadline) await this.d.selfFence.pet();
  }

  /** Pets the watchdog every half renewal interval while the deadline allows (run() starts it; the simulator too). */
  keepWatchdog(): void {
    const pet = () => {
      void this.#petIfSafe().catch((err: Error) => this.d.log.error({ err: err.message }, 'watchdog pet failed'));
      this.#petTimer = (this.d.timer ?? realTimer)(this.d.spec.timing.renewIntervalMs / 2, pet);
    };
    pet();
  }

  /** The renewal failed and the peer vouches: this node serves in failsafe (said once). */
  #enterFailsafe(): void {
    if (this.#failsafeSince !== null || this.#vouchedSince === null) return;
    this.#failsafeSince = this.#vouchedSince;
    this.d.log.warn(
      { epoch: this.d.fencing.epoch, vouchedBy: this.#peerId },
      `the arbiter is unreachable (${this.#lastHeartbeat.ok ? 'no renewal committed' : this.#lastHeartbeat.error}): serving on under epoch ${this.d.fencing.epoch}, vouched for by ${this.#peerId} (failsafe)`,
    );
  }

  /**
   * A credential that worked and now does not: revoked, or the control plane's store was
   * restored to a backup from before it was issued. Safe as it is — to the lease it is an
   * unreachable arbiter (a holder demotes at its deadline) — and said once, loudly, with the fix.
   */
  #credentialRejected401(err: ControlPlaneError): void {
    if (this.#credentialRejected) return;
    this.#credentialRejected = true;
    this.d.log.error(
      { status: err.status, code: err.code },
      `the control plane rejects this node's credential (${err.message}); the lease is treated as unreachable. If its store was restored from a backup, the credential may have been issued after it: re-enrol this node (nfs-ha enrol ${this.d.spec.id} ${this.d.nodeId}, then install.sh --token-file)`,
    );
  }

  #credentialAccepted(): void {
    if (!this.#credentialRejected) return;
    this.#credentialRejected = false;
    this.d.log.info("the control plane accepts this node's credential again");
  }

  #setDeadline(deadline: number | null): void {
    this.#deadline = deadline;
    if (!this.#running) return;
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = deadline === null ? null : setTimeout(() => void this.onDeadline(), Math.max(0, deadline - this.d.now()));
  }

  /** The deadline passed: stop whatever runs at its next step, and demote. */
  async onDeadline(): Promise<void> {
    if (this.#role === 'passive' || this.#role === 'demoting' || this.#deadline === null) return;
    const left = this.#deadline - this.d.now();
    if (left > 0) {
      // Timers have millisecond granularity and may fire a fraction early: look again then,
      // rather than leave demotion to the next tick (which may be waiting out a timeout).
      if (this.#running) this.#deadlineTimer = setTimeout(() => void this.onDeadline(), Math.ceil(left) + 1);
      return;
    }
    this.#interrupt = true;
    await this.settled();
    await this.decide();
  }

  /**
   * One tick: heartbeat, then (when idle) one decision. A passive node checks its peer every
   * tick but polls the arbiter at the rate passivePollIntervalMs allows.
   */
  async tick(): Promise<CycleAction | null> {
    if (this.#role === 'passive') {
      await this.d.peer?.check();
      this.releasePromise(this.#peerId, this.d.peer?.status()?.released);
      this.#prepareAfterPeerTakeover();
      // While it vouches, the arbiter hears of it at every interval: status shows the failsafe at once.
      const interval = vouching(this.#promise, this.d.now())?.epoch
        ? this.d.spec.timing.renewIntervalMs
        : passivePollIntervalMs(this.d.spec.timing, this.d.peer?.status() ?? null);
      // Half a tick of slack: timers fire a little early or late, and a 500 ms poll must not become 1 s.
      const due = this.d.now() - this.#lastPollAt >= interval - this.d.spec.timing.renewIntervalMs / 2;
      if (!due && !this.#leftovers) return null;
    }
    this.#lastPollAt = this.d.now();
    await this.heartbeat();
    if (this.#action) return null;
    const hb = this.#lastHeartbeat;
    const idle = this.#role === 'passive' && !this.#leftovers && hb.ok && hb.directive.action === 'stay-passive';
    if (idle && this.d.onNewSpec && this.d.specVersion !== undefined && this.#latestSpec > this.d.specVersion) {
      this.d.log.info(
        { running: this.d.specVersion, latest: this.#latestSpec },
        `spec version ${this.#latestSpec} is out and nothing runs here: restarting to take it`,
      );
      this.d.onNewSpec(this.#latestSpec);
      return null;
    }
    return this.decide();
  }

  /**
   * What the agent's start read ahead (resource.prepare) the peer's takeover has changed since:
   * the VG's owner. Once the peer has served a while under its new term, the passive reads it
   * again (resource.afterPeerTakeover), so that its own next takeover does not read it on its
   * way. Not at once: the peer's clients are recovering then. Best effort, beside the loop.
   */
  #prepareAfterPeerTakeover(): void {
    const active = this.d.peer?.status()?.role === 'active';
    const now = this.d.now();
    if (!active) this.#prepareAt = null;
    else if (this.#peerActive === false) this.#prepareAt = now + PREPARE_AFTER_PEER_MS;
    this.#peerActive = active;
    if (this.#prepareAt === null || now < this.#prepareAt) return;
    this.#prepareAt = null;
    this.d.log.info({ peer: this.#peerId }, `${this.#peerId} serves a new term: preparing again for a takeover`);
    for (const r of this.d.resources.ordered) r.afterPeerTakeover?.();
  }

  /** Makes one decision from the current snapshot and starts it; returns it. */
  async decide(): Promise<CycleAction> {
    // The deadline timer and the tick may both ask; one decision at a time, one action at a time.
    if (this.#action || this.#deciding) return { action: 'none', reason: 'a decision or action is already under way' };
    this.#deciding = true;
    try {
      return await this.#decide();
    } finally {
      this.#deciding = false;
    }
  }

  async #decide(): Promise<CycleAction> {
    const decision = decideCycle({
      role: this.#role,
      epoch: this.d.fencing.epoch,
      confirmedEpoch: this.d.fencing.confirmedEpoch,
      now: this.d.now(),
      deadline: this.#deadline,
      heartbeat: this.#lastHeartbeat,
      keyPresent: this.#role === 'active' ? this.#keyPresent : null,
      failure: this.#failure,
      maxRestarts: this.d.maxRestarts,
      leftovers: this.#leftovers,
      memory: this.d.memory.current(),
      vouching: vouching(this.#promise, this.d.now()),
    });
    this.#logDecision(decision);
    if (decision.action === 'none' && this.#role === 'active') this.#monitorIfDue();
    if (decision.action !== 'none') {
      this.#actionsStarted += 1;
      this.#interrupt = false;
      this.#action = this.#perform(decision).finally(() => {
        this.#action = null;
        // Fencing acknowledged: activate now rather than at the next tick; the deadline still rules.
        if (this.#running && decision.action === 'fence' && this.d.fencing.confirmedEpoch === decision.epoch) {
          void this.decide().catch((err: Error) => this.d.log.error({ err: err.message }, 'decision failed'));
        }
      });
    }
    return decision;
  }

  #logDecision(decision: CycleAction): void {
    const situation = `${decision.action}/${this.#role}/${this.d.fencing.epoch}/${this.#lastHeartbeat.ok ? this.#lastHeartbeat.directive.action : 'unreachable'}`;
    const fields = { action: decision.action, role: this.#role, epoch: this.d.fencing.epoch };
    if (situation !== this.#lastSituation || decision.action !== 'none') this.d.log.info(fields, decision.reason);
    else this.d.log.debug(fields, decision.reason);
    this.#lastSituation = situation;
  }

  /**
   * Starts a monitor pass in the background when one is due. It never runs inside a decision:
   * probing every resource takes a few commands' time (seconds on a slow host), and neither the
   * renewals nor the deadline may wait for it. The next decision acts on its findings, which
   * are dropped if an action came in between.
   */
  #monitorIfDue(): void {
    if (this.#monitoring || this.d.now() - this.#lastMonitorAt < this.d.monitorIntervalMs) return;
    this.#lastMonitorAt = this.d.now();
    const storage = this.d.now() - this.#lastStorageMonitorAt >= this.d.storageMonitorIntervalMs;
    if (storage) this.#lastStorageMonitorAt = this.d.now();
    const actionsBefore = this.#actionsStarted;
    this.#monitoring = (async () => {
      // Every pass: whether the peer fenced us (our key gone), whatever the storage cadence.
      const keyPresent = await this.d.resources.reservation.keyPresent().catch((err: Error) => {
        if (err instanceof SafetyInDoubt) void this.d.selfFence.reboot(err.message);
        return null;
      });
      let failure: (CycleSnapshot['failure'] & { resource: Phase }) | null = null;
      for (const r of this.d.resources.ordered) {
        if (r.queriesStorage && !storage) continue;
        const m = await r.monitor().catch((err: Error) => {
          if (err instanceof SafetyInDoubt) void this.d.selfFence.reboot(err.message);
          return { state: 'failed' as const, reason: err.message };
        });
        this.d.metrics?.resource(r.name, m.state === 'running');
        if (m.state !== 'running') {
          failure = { resource: r.name, reason: m.state === 'failed' ? m.reason : 'stopped unexpectedly', restarts: this.#restarts.get(r.name) ?? 0 };
          break;
        }
      }
      const clients = await this.d.clients?.read().catch((err: Error) => {
        this.d.log.debug({ err: err.message }, 'cannot read the client connections');
        return null;
      });
      // Every change of role or epoch is an action; one that started meanwhile voids this pass.
      if (this.#role === 'active' && this.#actionsStarted === actionsBefore) {
        if (clients) this.#clients = clients;
        this.#keyPresent = keyPresent;
        this.#failure = failure;
        if (failure) this.#report(failure.resource, 'monitor', 'failed', { message: failure.reason });
      }
    })()
      .catch((err: Error) => this.d.log.error({ err: err.message }, 'monitor failed'))
      .finally(() => (this.#monitoring = null));
  }

  /** Resolves when no action and no monitor pass is under way (tests, orderly shutdown). */
  async idle(): Promise<void> {
    while (this.#action || this.#monitoring || this.#tickling) await Promise.all([this.#action, this.#monitoring, this.#tickling]);
  }

  #become(role: NodeRole): void {
    assertTransition(this.#role, role);
    if (role !== this.#role) this.d.log.info({ from: this.#role, to: role, epoch: this.d.fencing.epoch }, `role ${this.#role} → ${role}`);
    this.#role = role;
    // Serving, this node holds the lease: the peer's next term, if any, is a new one.
    if (role !== 'passive') this.#peerActive = false;
  }

  async #perform(decision: CycleAction): Promise<void> {
    try {
      switch (decision.action) {
        case 'fence':
          return await this.#fence(decision.epoch, decision.keys);
        case 'refence':
          return await this.#refence(decision.epoch, decision.keys);
        case 'refuse':
          this.#refused = { epoch: decision.epoch, reason: decision.reason };
          return;
        case 'activate':
          return await this.#activate(decision.epoch);
        case 'restart':
          return await this.#restart(decision.resource);
        case 'release':
          return await this.#release(decision.epoch, decision.why);
        case 'demote':
          return await this.#demote();
        case 'self-fence':
          return await this.d.selfFence.reboot(decision.reason);
        case 'none':
          return;
      }
    } catch (err) {
      this.d.log.error({ action: decision.action, err: (err as Error).message }, `${decision.action} failed: ${(err as Error).message}`);
      if (err instanceof Interrupted) {
        await this.#demote().catch((e: Error) => this.d.selfFence.reboot(`demotion failed: ${e.message}`));
      } else if (decision.action === 'demote' || decision.action === 'release') {
        await this.d.selfFence.reboot(`demotion failed: ${(err as Error).message}`);
      } else if (this.#role !== 'passive' && this.#role !== 'demoting') {
        // A node that cannot stop what it started may not be trusted to stay out: self-fence.
        await this.#release(this.d.fencing.epoch).catch((e: Error) => this.d.selfFence.reboot(`demotion failed: ${e.message}`));
      }
    }
  }

  #report(
    phase: Phase,
    direction: PhaseDirection,
    status: 'started' | 'succeeded' | 'failed',
    extra: { durationMs?: number; commandsMs?: number; commands?: CommandTime[]; message?: string } = {},
  ): void {
    const epoch = this.d.fencing.epoch;
    if (epoch === 0) return;
    // Reports are the timeline, not the protocol: they never hold up a failover.
    this.d.controlPlane.reportPhase({ reportId: this.#reportId(), epoch, phase, direction, status, ...extra }).catch((err: Error) => {
      this.d.log.debug({ phase, err: err.message }, 'phase report not delivered');
    });
  }

  /**
   * Report ids sort in the order the reports were made: the timeline orders events of the same
   * millisecond by id, and a resource's state is its last report.
   */
  #reportId(): string {
    this.#reports += 1;
    return `${Date.now().toString(36)}-${this.#reports.toString(36).padStart(6, '0')}-${randomBytes(3).toString('hex')}`;
  }

  async #timed<T>(phase: Phase, direction: 'start' | 'stop', work: () => Promise<T>): Promise<T> {
    if (this.#interrupt && direction === 'start') throw new Interrupted('lease deadline reached');
    const t0 = this.d.now();
    // The phase's own commands, each with its time: where a slow takeover spent it, and the
    // agent's own share of the phase (durationMs less commandsMs).
    const commands: CommandTime[] = [];
    const timing = () => ({
      durationMs: this.d.now() - t0,
      ...(this.d.ledger && { commandsMs: commands.reduce((sum, c) => sum + c.ms, 0), commands: commands.slice(0, MAX_PHASE_COMMANDS) }),
    });
    this.#report(phase, direction, 'started');
    try {
      const result = await (this.d.ledger ? this.d.ledger.track(commands, work) : work());
      this.#report(phase, direction, 'succeeded', timing());
      return result;
    } catch (err) {
      this.#report(phase, direction, 'failed', { ...timing(), message: (err as Error).message });
      if (err instanceof SafetyInDoubt) await this.d.selfFence.reboot(err.message);
      throw err;
    }
  }

  /** Remembers on disk that this node acts under `epoch`, before it does anything under it. */
  async #actUnder(epoch: number): Promise<void> {
    await this.d.memory.record({ acted: epoch, seen: epoch });
    this.#refused = null;
    this.d.fencing.epoch = epoch;
  }

  async #fence(epoch: number, keys: ReservationKey[]): Promise<void> {
    await this.#actUnder(epoch);
    this.#become('fencing');
    await this.d.selfFence.arm();
    await this.#preemptAndReport(epoch, keys);
  }

  /**
   * Serving, and granted a new epoch (or told our fencing is not on record): preempt the peer's
   * key again under it and report, while everything keeps running. Our own key must still be on
   * the disk — if anyone acted in between, it preempted us, and we must not register again.
   */
  async #refence(epoch: number, keys: ReservationKey[]): Promise<void> {
    if (!(await this.d.resources.reservation.keyPresent())) {
      return this.d.selfFence.reboot(`our reservation key is gone while serving under epoch ${this.d.fencing.epoch}: the peer fenced us; self-fencing`);
    }
    await this.#actUnder(epoch);
    if (await this.#preemptAndReport(epoch, keys)) this.d.log.info({ epoch }, `serving on under epoch ${epoch}`);
  }

  /** Preempts `keys` and reports it; true once the arbiter acknowledged it for `epoch`. */
  async #preemptAndReport(epoch: number, keys: ReservationKey[]): Promise<boolean> {
    const t0 = this.d.now();
    const preempted = await this.#timed('fence', 'start', () => this.d.resources.reservation.fence(keys));
    try {
      await this.d.controlPlane.reportFencing({ epoch, keys: preempted, durationMs: this.d.now() - t0 });
    } catch (err) {
      // Not acknowledged, so nothing (more) may start yet; the next cycle fences (idempotently) and reports again.
      this.d.log.warn({ epoch, err: (err as Error).message }, 'fencing done but not acknowledged; will report again');
      return false;
    }
    this.d.fencing.confirmedEpoch = epoch;
    return true;
  }

  async #activate(epoch: number): Promise<void> {
    await this.#actUnder(epoch);
    // Activation is decided only with fencing confirmed for this epoch: by our own report's
    // answer, or by the arbiter's record of it (our report landed but its answer was lost, or
    // a previous agent process reported it). The arbiter records it only from this node.
    this.d.fencing.confirmedEpoch = epoch;
    if (this.#role === 'passive') await this.d.selfFence.arm();
    this.#become('activating');
    for (const r of this.d.resources.ordered) r.startAhead?.();
    // The tickles are made ready beside the takeover and sent once the VIP is up. Nothing waits for them.
    let vipUp!: () => void;
    let failed!: (err: Error) => void;
    const vip = new Promise<void>((resolve, reject) => ((vipUp = resolve), (failed = reject)));
    vip.catch(() => {}); // a failed takeover sends nothing; #perform reports it
    this.#tickling ??= this.#tickleClients(vip).finally(() => (this.#tickling = null));
    try {
      for (const r of this.d.resources.ordered) await this.#timed(r.name, 'start', () => r.start());
    } catch (err) {
      failed(err as Error);
      throw err;
    }
    vipUp();
    this.#restarts.clear();
    this.#failure = null;
    this.#leftovers = false;
    // The first monitor pass comes one interval after the takeover, not at the next renewal: each
    // start has just checked its resource, and a pass's commands would take the CPU from the
    // clients' recovery (their reclaims and nfsdcld's writes), which the next second is for.
    this.#lastMonitorAt = this.d.now();
    this.#become('active');
  }

  /** After a takeover: the clients the peer served learn at once that their connections are gone (tickle.ts). Best effort. */
  async #tickleClients(vipUp: Promise<void>): Promise<void> {
    const connections = this.d.peer?.clients() ?? [];
    if (!this.d.clients || connections.length === 0) return;
    try {
      this.d.log.info({ connections: connections.length }, await this.d.clients.tickle(connections, vipUp));
    } catch (err) {
      this.d.log.warn({ err: (err as Error).message }, `${(err as Error).message}; the clients reconnect at their next retransmission`);
    }
  }

  /** Restarts a failed resource and those that depend on it (stop from the top down, start back up). */
  async #restart(name: string): Promise<void> {
    const order = this.d.resources.ordered;
    const from = order.findIndex((r) => r.name === name);
    this.#restarts.set(name, (this.#restarts.get(name) ?? 0) + 1);
    for (const r of order.slice(from).reverse()) await this.#timed(r.name, 'stop', () => r.stop());
    for (const r of order.slice(from)) await this.#timed(r.name, 'start', () => r.start());
    this.#failure = null;
    this.#lastMonitorAt = Number.NEGATIVE_INFINITY;
  }

  async #demote(): Promise<void> {
    this.#become('demoting');
    const budget = (this.d.timer ?? realTimer)(
      this.d.demoteBudgetMs,
      () => void this.d.selfFence.reboot(`demotion did not finish within ${this.d.demoteBudgetMs} ms`),
    );
    try {
      // Reverse order; the reservation stays (the next holder preempts it).
      for (const r of [...this.d.resources.ordered].reverse() as Resource[]) await this.#timed(r.name, 'stop', () => r.stop());
    } finally {
      budget.cancel();
    }
    await this.d.selfFence.disarm();
    this.#setDeadline(null);
    this.#leftovers = false;
    this.#failsafeSince = null;
    this.#vouchedSince = null;
    this.d.metrics?.resourcesStopped();
    this.#become('passive');
  }

  async #release(epoch: number, reason: Release['reason'] = 'resource-failure'): Promise<void> {
    if (this.#role !== 'passive') await this.#demote();
    const released = await this.d.controlPlane.release({ epoch, reason }).then(
      () => true,
      (err: Error) => {
        // The lease then simply runs out; the peer takes over at expiry instead.
        this.d.log.warn({ err: err.message }, 'could not release the lease; it will expire');
        return false;
      },
    );
    // Awaited (briefly) so that an exiting agent sends it; lost, the peer learns at its next tick.
    if (released) await this.d.peer?.handover(this.d.nodeId, epoch, this.#peerTimeoutMs()).catch(() => false);
  }

  /** Orderly exit of a holder (agent stopped): demote, then hand the lease over at once. */
  async shutdown(): Promise<void> {
    await this.settled();
    if (this.#role !== 'passive') await this.#release(this.d.fencing.epoch, 'shutdown');
  }

  /**
   * Runs until stopped: a tick every renewIntervalMs, at once after fencing is acknowledged, and at
   * once when the peer hands the lease over.
   */
  run(): void {
    this.#running = true;
    this.keepWatchdog();
    const loop = async () => {
      if (!this.#running) return;
      this.#wake = null;
      this.#woken = false;
      const started = this.d.now();
      // The tick's heartbeat is awaited (bounded by the request timeout); its decision only
      // starts an action, which runs on while the next ticks keep renewing.
      await this.tick().catch((err: Error) => this.d.log.error({ err: err.message }, 'tick failed'));
      const wait = this.#woken ? 0 : Math.max(0, this.d.spec.timing.renewIntervalMs - (this.d.now() - started));
      const timer = setTimeout(loop, wait);
      this.#timers = [timer];
      this.#wake = () => {
        clearTimeout(timer);
        void loop();
      };
    };
    void loop();
  }

  stop(): void {
    this.#running = false;
    this.#wake = null;
    this.#petTimer?.cancel();
    for (const t of this.#timers) clearTimeout(t);
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
  }
}
