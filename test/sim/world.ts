/**
 * One simulated run. Real: the control plane (Hono app and arbiter, two instances as on
 * Lambda), the agents' loops, their HTTP client, and every protocol rule in shared/. Simulated,
 * behind the interfaces production uses: virtual time and each machine's clock (drifting
 * within the bound), the network (delay, loss, partitions, one-way), the hosts and the shared
 * LUN (test/sim/host.ts), the store (test/sim/simulated-store.ts), an NFS client that appends
 * through the VIP, and the faults. Invariants are checked after every event.
 */
import { pino } from 'pino';
import { ControlPlaneClient } from '../../agent/control-plane-client.ts';
import type { HttpRequest } from '../../agent/http.ts';
import { NodeAgent } from '../../agent/loop.ts';
import type { SelfFence } from '../../agent/self-fence.ts';
import { createApp } from '../../control-plane/app.ts';
import { Credentials } from '../../control-plane/auth.ts';
import { StoreUnavailableError } from '../../control-plane/store/store.ts';
import type { PeerStatus } from '../../agent/peer.ts';
import type { PromiseAnswer, PromiseAsk } from '../../shared/failsafe.ts';
import { type ClusterSpec, ClusterSpecSchema } from '../../shared/spec.ts';
import { maxWatchdogTimeoutMs, minSafetyMarginMs, type TimingInput } from '../../shared/timing.ts';
import { exampleSpec, silentLog } from '../helpers/control-plane.ts';
import { RememberedEpochs } from '../helpers/epochs.ts';
import { freshHost, type HostState, type HostWorld, SimLun, simResources } from './host.ts';
import { Random } from './random.ts';
import { Scheduler, settle } from './scheduler.ts';
import { SimulatedStore } from './simulated-store.ts';

export const PLANTED_BUGS = [
  'skip-fencing',
  'reregister-when-fenced',
  'ignore-drift',
  'wall-clock-expiry',
  'forget-epochs',
  'unreported-epochs',
  'forget-promise',
  'extend-past-promise',
  'grant-vouching',
  'never-asks',
] as const;
export type PlantedBug = (typeof PLANTED_BUGS)[number];

export const FAULT_KINDS = [
  'crash',
  'agent-crash',
  'freeze',
  'partition-cp',
  'oneway-cp',
  'partition-peer',
  'partition-client',
  'store-errors',
  'cp-restart',
  'nfs-dies',
  'mount-fails',
  'stop-hangs',
  'ttl-lengthened',
  'store-restored',
  'cp-clock-step',
  'cp-down',
  'cp-down-peer-flap',
  'cp-down-passive-restart',
  'cp-down-active-crash',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface Fault {
  at: number;
  kind: FaultKind;
  /** 'active' and 'passive' are resolved when the fault strikes: the node serving then (or node-a), and its peer. */
  target: 'node-a' | 'node-b' | 'active' | 'passive';
  durationMs: number;
}

export interface Failover {
  ms: number;
  /** The faults that can have shaped it (see involvedIn): one for a single fault, more for a compound one. */
  faults: FaultKind[];
}

/** A fault armed now that strikes at the next takeover (a mount that will fail, a stop that will hang). */
const isLatent = (g: Fault) => g.kind === 'mount-fails' || g.kind === 'stop-hangs';
/** How long after a fault heals it still counts as near another event. */
const NEAR_MS = 10_000;

/**
 * The faults that can have shaped a failover whose client gap ran from `from` to `to`: those
 * under way or healed less than NEAR_MS before it began, and latent ones armed before it ended.
 */
export function involvedIn(faults: Fault[], from: number, to: number): FaultKind[] {
  return faults.filter((g) => g.at <= to && (isLatent(g) || g.at + g.durationMs + NEAR_MS >= from)).map((g) => g.kind);
}

export interface SimOptions {
  seed: number;
  durationMs?: number;
  /** Planted bugs: configurations of the simulated world that must be caught. */
  bug?: PlantedBug | undefined;
  /** Run a bug's world configuration without the bug (the control). */
  bugConfigOnly?: PlantedBug | undefined;
  /** Explicit faults (replay, minimisation); default: drawn from the seed. */
  faults?: Fault[] | undefined;
  /** Print what happens, for replaying a failing seed. */
  trace?: boolean | undefined;
}

export interface SimResult {
  seed: number;
  violations: string[];
  faults: Fault[];
  /** Client-visible failovers: time between the last write served by one node and the first by the other. */
  failovers: Failover[];
  acked: number;
  longestStallMs: number;
}

const NODES = ['node-a', 'node-b'] as const;
const CP_EPOCH = 1_800_000_000_000;
const CLIENT_INTERVAL_MS = 50;
const DEMOTE_BUDGET_MS = 10_000;
const PLANTED_BUG_WATCHDOG_MS = 10_000;
/** After a clean crash of the serving node (no other fault near it), service resumes within this. */
const CRASH_FAILOVER_BOUND_MS = 4_000;
const QUIET_END_MS = 20_000;
/** With only the arbiter gone, the client never waits longer than this (it writes every 50 ms). */
const ARBITER_OUTAGE_STALL_MS = 1_000;

/** The world's configuration for a planted bug (or its control): timing and true clock error. */
function configFor(bug: PlantedBug | undefined) {
  switch (bug) {
    case 'ignore-drift':
      // Clocks really drift by up to 10 % (the bound's maximum); agents are told 0 % (the bug)
      // and keep a thin margin.
      return { trueDrift: 0.1, cpOffsetMs: 0, timing: { maxDriftRatio: 0, safetyMarginMs: 20, skewAllowanceMs: 0 } };
    default:
      return { trueDrift: 0.01, cpOffsetMs: 100, timing: {} };
  }
}

/**
 * Failsafe keeps an active serving through an arbiter outage: the worlds of the bugs that only
 * show when it demotes there (a lease outlived, epochs forgotten across a failover) run without
 * it, as when its peer is gone too.
 */
function failsafeFor(bug: PlantedBug | undefined): boolean {
  return !(bug === 'ignore-drift' || bug === 'forget-epochs' || bug === 'unreported-epochs');
}

/** The arbiter unreachable from both nodes: 5 s to 2 min. */
const CP_DOWN_MS = { min: 5_000, max: 120_000 };
const isCpDown = (k: FaultKind) => k.startsWith('cp-down');

function controlTiming(bug: PlantedBug): TimingInput {
  if (bug === 'ignore-drift') return { maxDriftRatio: 0.1, safetyMarginMs: minSafetyMarginMs(3000, 0.1) + 20, skewAllowanceMs: 0 };
  return {};
}

/** How far back a restored backup goes, at most (the fault picks the backup taken this long before it). */
const BACKUP_AGE_MS = { min: 2_000, max: 20_000 };

export function drawFaults(rng: Random, durationMs: number, bug?: PlantedBug): Fault[] {
  const faults: Fault[] = [];
  if (bug === 'forget-epochs' || bug === 'unreported-epochs') {
    // The case those bugs break: the active fails over, and the store then goes back to before.
    const crashAt = rng.int(6_000, durationMs - QUIET_END_MS - 14_000);
    faults.push({ at: crashAt, kind: 'crash', target: 'active', durationMs: rng.int(2_000, 6_000) });
    faults.push({ at: crashAt + rng.int(4_000, 8_000), kind: 'store-restored', target: 'active', durationMs: rng.int(500, 5_000) });
    return faults;
  }
  // The arbiter cut from the active only, a while, with what breaks each failsafe rule.
  const cut = (ms: number): Fault => ({ at: rng.int(6_000, 12_000), kind: 'partition-cp', target: 'active', durationMs: ms });
  switch (bug) {
    case 'forget-promise': {
      // The passive's agent restarts while it vouches: it must keep the promise it forgot.
      const f = cut(rng.int(12_000, 20_000));
      return [f, { at: f.at + rng.int(2_000, 5_000), kind: 'agent-crash', target: 'passive', durationMs: rng.int(200, 1_000) }];
    }
    case 'extend-past-promise': {
      // Then the peer channel goes too: the active must stop before the promise it had runs out.
      const f = cut(rng.int(15_000, 20_000));
      return [f, { at: f.at + rng.int(2_000, 5_000), kind: 'partition-peer', target: 'passive', durationMs: 12_000 }];
    }
    case 'grant-vouching':
    case 'never-asks':
      return [cut(rng.int(6_000, 12_000))];
  }
  const count = rng.int(1, 3);
  for (let i = 0; i < count; i++) {
    const kind = rng.pick(FAULT_KINDS);
    faults.push({
      at: rng.int(6_000, durationMs - QUIET_END_MS - 8_000),
      kind,
      target: rng.chance(0.7) ? 'active' : rng.pick(NODES),
      durationMs: isCpDown(kind) ? rng.int(CP_DOWN_MS.min, CP_DOWN_MS.max) : rng.int(500, 8_000),
    });
  }
  return faults.sort((a, b) => a.at - b.at);
}

interface SimNode {
  id: string;
  host: HostState;
  rate: number;
  bootAt: number;
  frozenUntil: number;
  agent: NodeAgent | null;
  incarnation: number;
  watchdog: { armed: boolean; deadline: number };
  /** The agent's state directory: on the node's local disk, it outlives crashes and restarts. */
  memory: RememberedEpochs;
}

export async function simulate(options: SimOptions): Promise<SimResult> {
  const rng = new Random(options.seed);
  const faultRng = new Random(options.seed ^ 0x5bd1e995);
  const faults = options.faults ?? drawFaults(faultRng, options.durationMs ?? 60_000, options.bug);
  // A long outage of the arbiter runs on past the usual minute: the run ends a quiet while after it.
  const durationMs = Math.max(options.durationMs ?? 60_000, ...faults.map((f) => f.at + f.durationMs + QUIET_END_MS));
  const bugs = new Set<string>(options.bug ? [options.bug] : []);
  const config = configFor(options.bug ?? options.bugConfigOnly);
  const timing = options.bugConfigOnly ? controlTiming(options.bugConfigOnly) : config.timing;
  const example = await exampleSpec('sim');
  const policy = { ...example.policy, failsafe: failsafeFor(options.bug ?? options.bugConfigOnly) };
  const spec: ClusterSpec = ClusterSpecSchema.parse({ ...example, timing, policy });
  const t = spec.timing;
  // As long as the agent and the installer allow: a node whose agent died is reset before its
  // deadline. The planted bugs (and their controls) live in the deadline logic the watchdog backs
  // up: their worlds run with a lax one, so the checker must catch the bug, not the backstop.
  const watchdogMs = options.bug || options.bugConfigOnly ? PLANTED_BUG_WATCHDOG_MS : maxWatchdogTimeoutMs(t);
  const sched = new Scheduler();
  const store = new SimulatedStore();
  const lun = new SimLun();
  const violations: string[] = [];
  const trace = (what: string) => options.trace && console.log(`${String(sched.now).padStart(6)} ms  ${what}`);
  /** With --trace, the agents' own decisions too, on the virtual clock. */
  const agentTraceLog = (id: string) => pino({ level: 'info' }, { write: (line: string) => trace(`${id}: ${(JSON.parse(line) as { msg: string }).msg}`) });
  const violation = (what: string) => {
    trace(`VIOLATION ${what}`);
    if (violations.length < 20) violations.push(`t=${sched.now} ms: ${what}`);
  };

  // --- control plane: two instances with their own clocks and arbiter caches ---------------
  // Their wall clocks are synchronised (NTP, AWS Time Sync): each strays from true time by a
  // bounded, slowly varying offset (at most cpOffsetMs, so two differ by at most the skew
  // allowance), whose rate of change stays within the drift bound.
  const basePhase = rng.between(0, 2 * Math.PI);
  const cpClocks = [0, 1].map((i) => {
    // Opposite phases: the two instances swing apart by up to twice the amplitude.
    const amplitude = config.cpOffsetMs;
    const phase = basePhase + i * Math.PI;
    const period = config.trueDrift > 0 ? (2 * Math.PI * Math.max(amplitude, 1)) / config.trueDrift : Infinity;
    return () => Math.floor(CP_EPOCH + sched.now + (Number.isFinite(period) ? amplitude * Math.sin((2 * Math.PI * sched.now) / period + phase) : 0));
  });
  /** Wall-clock steps of each instance (NTP, a VM migration): the 'cp-clock-step' fault. */
  const cpSteps = [0, 0];
  // Each instance's monotonic clock runs at its own rate within the drift bound; no step moves it.
  const cpRates = [0, 1].map(() => 1 + rng.between(-config.trueDrift, config.trueDrift));
  const makeInstance = (i: number) => {
    const startedAt = sched.now;
    const now = () => cpClocks[i]!() + cpSteps[i]!;
    // The planted bug: the arbiter measures durations on its wall clock, steps and all.
    const elapsed = bugs.has('wall-clock-expiry') ? now : () => (sched.now - startedAt) * cpRates[i]!;
    return createApp({ store, clock: { now, elapsed }, log: silentLog });
  };

  let instances = [makeInstance(0), makeInstance(1)];

  // --- network ------------------------------------------------------------------------------
  const blocked = new Map<string, number>();
  const up = (from: string, to: string) => (blocked.get(`${from}>${to}`) ?? -1) <= sched.now;
  const block = (from: string, to: string, until: number) => blocked.set(`${from}>${to}`, Math.max(until, blocked.get(`${from}>${to}`) ?? 0));
  const delay = () => (rng.chance(0.02) ? rng.int(100, 400) : rng.int(1, 15));

  // --- nodes --------------------------------------------------------------------------------
  const nodes: SimNode[] = NODES.map((id) => ({
    id,
    host: freshHost(),
    rate: 1 + rng.between(-config.trueDrift, config.trueDrift),
    bootAt: 0,
    frozenUntil: 0,
    agent: null,
    incarnation: 0,
    watchdog: { armed: false, deadline: 0 },
    memory: new RememberedEpochs(),
  }));
  const node = (id: string) => nodes.find((n) => n.id === id)!;
  /** Each node's agent credential, as the installer would have left it in its config. */
  const tokens = new Map<string, string>();
  const frozen = (n: SimNode) => n.frozenUntil > sched.now;
  /** A node that was frozen cannot have acted on its deadline; it gets this long after waking. */
  const THAW_GRACE_MS = 300;
  const justThawed = (n: SimNode) => !frozen(n) && sched.now < n.frozenUntil + THAW_GRACE_MS;
  const mono = (n: SimNode) => 1000 + (sched.now - n.bootAt) * n.rate;
  const virtualAt = (n: SimNode, monoTime: number) => n.bootAt + (monoTime - 1000) / n.rate;
  /** Runs `fn` now, or when the node thaws. */
  const onNode = (n: SimNode, fn: () => void) => (frozen(n) ? sched.at(n.frozenUntil, () => onNode(n, fn)) : fn());

  /** Every grant the arbiter ever committed, and whether its fencing was confirmed: a restore does not erase what happened. */
  const grantsEver = new Map<string, { confirmed: boolean }>();
  const actedBy = new Map<number, { node: string; at: number }>();
  const leftEpochs = new Map<string, Set<number>>();
  /** When each node's latest request reached a control-plane instance. */
  const reachedCp = new Map<string, number>();
  let lastRestoreAt: number | null = null;
  /** When each node's lease was last renewed or granted, committed. */
  const renewedAt = new Map<string, number>();

  const hostWorld: HostWorld = {
    lun,
    clusterId: spec.id,
    now: () => sched.now,
    bugs,
    violation,
    trace,
    // A step of a node that crashes meanwhile never completes: its effects died with it.
    work: (id) =>
      new Promise((resolve) => {
        const n = node(id);
        const host = n.host;
        sched.after(rng.int(5, 40), () => onNode(n, () => n.host === host && resolve()));
      }),
    stopWork: (id, host) => {
      if (host.hangNextStopMs === 0) return hostWorld.work(id);
      const hang = host.hangNextStopMs;
      host.hangNextStopMs = 0;
      host.hangingUntil = sched.now + hang;
      trace(`${id}: a stop hangs for ${hang} ms`);
      return new Promise((resolve) => sched.after(hang, () => onNode(node(id), () => node(id).host === host && resolve())));
    },
    granted: (id, epoch) => {
      const g = grantsEver.get(`${id}/${epoch}`);
      return { granted: g !== undefined, confirmed: g?.confirmed ?? false };
    },
    acted: (id, epoch) => {
      if (leftEpochs.get(id)?.has(epoch)) violation(`${id} acts again under epoch ${epoch}, which it had left`);
      const first = actedBy.get(epoch);
      if (first && first.node !== id) {
        // The one case no memory can cover: the node that acted under it is down, or cut off
        // from the arbiter, from the restore until this grant, and nobody else saw its epoch.
        const unknowable = lastRestoreAt !== null && first.at < lastRestoreAt && (reachedCp.get(first.node) ?? -1) < lastRestoreAt;
        if (!unknowable) violation(`epoch ${epoch} acted under by ${first.node} and by ${id}`);
        else trace(`epoch ${epoch} acted under again by ${id}: ${first.node}, who had it, has not reached the arbiter since the restore`);
      }
      if (!first) actedBy.set(epoch, { node: id, at: sched.now });
    },
    left: (id, epoch) => {
      if (epoch === 0) return;
      if (!leftEpochs.has(id)) leftEpochs.set(id, new Set());
      leftEpochs.get(id)!.add(epoch);
    },
  };

  const fetchFor =
    (n: SimNode, incarnation: number): HttpRequest =>
    async (input, init) =>
      new Promise<Response>((resolve, reject) => {
        let done = false;
        const finish = (fn: () => void) => onNode(n, () => !done && n.incarnation === incarnation && ((done = true), fn()));
        sched.after(t.requestTimeoutMs, () => finish(() => reject(Object.assign(new Error('timed out'), { name: 'TimeoutError' }))));
        if (!up(n.id, 'cp') || rng.chance(0.01)) return;
        const { timeoutMs: _timeoutMs, ...sent } = init ?? {};
        // Now and then the network delivers a request twice; the copy's answer is lost.
        if (rng.chance(0.01)) sched.after(delay(), () => void rng.pick(instances).request(String(input), sent));
        sched.after(delay(), () => {
          const app = rng.pick(instances);
          reachedCp.set(n.id, sched.now);
          const rest = { ...sent };
          const heartbeat = String(input).endsWith('/heartbeat') && typeof rest.body === 'string' ? (JSON.parse(rest.body) as Record<string, unknown>) : null;
          if (heartbeat && bugs.has('unreported-epochs')) {
            // The planted bug: what the node knows of epochs never reaches the arbiter.
            const { known: _known, ...body } = heartbeat;
            rest.body = JSON.stringify(body);
          }
          if (heartbeat && bugs.has('grant-vouching')) {
            // The planted bug: the arbiter does not heed a node that says it vouches.
            const { vouching: _vouching, ...body } = heartbeat;
            rest.body = JSON.stringify(body);
          }
          void Promise.resolve(app.request(String(input), rest)).then(async (res) => {
            if (heartbeat?.vouching && res.ok) {
              const answer = (await res.clone().json()) as { directive: { action: string; epoch: number } };
              if (answer.directive.action === 'activate')
                violation(`${n.id} was told to activate epoch ${answer.directive.epoch} in answer to a heartbeat saying it vouches for its peer`);
            }
            if (!up('cp', n.id) || rng.chance(0.01)) return;
            sched.after(delay(), () => finish(() => resolve(res)));
          });
        });
      });

  let agentProcesses = 0;
  class SimPeer {
    lastSuccess: number | null = null;
    lastStatus: PeerStatus | null = null;
    checks = 0;
    /** This agent process's promise requests, as the peer channel numbers them (a counter: the world's random stream stays as it was). */
    readonly #instance = (++agentProcesses).toString(16).padStart(16, '0');
    #seq = 0;
    constructor(private readonly self: SimNode) {}
    asked(): PromiseAsk {
      return { instance: this.#instance, seq: this.#seq };
    }
    /** The simulator has no NFS clients' TCP connections to tickle. */
    clients() {
      return [];
    }
    get other() {
      return nodes.find((p) => p !== this.self)!;
    }
    async check() {
      this.checks++;
      const p = this.other;
      if (p.host.powered && !frozen(p) && p.agent && up(this.self.id, p.id) && up(p.id, this.self.id)) {
        this.lastSuccess = mono(this.self);
        this.lastStatus = p.agent.status();
      }
    }
    /** The last promise the peer accepted (for the planted 'extend-past-promise'). */
    lastAccepted: PromiseAnswer | null = null;
    /** A request over the peer channel to the peer's current agent, with the network's delays and losses. */
    promise(node: string, epoch: number, timeoutMs: number): Promise<PromiseAnswer> {
      // The planted 'never-asks': the active's requests never leave it, so it demotes at its deadline.
      if (bugs.has('never-asks')) return Promise.reject(new Error('not sent'));
      const self = this.self;
      const incarnation = self.incarnation;
      this.#seq += 1;
      const asked = this.asked();
      return new Promise((resolve, reject) => {
        let done = false;
        const finish = (fn: () => void) => onNode(self, () => !done && self.incarnation === incarnation && ((done = true), fn()));
        sched.after(timeoutMs, () =>
          finish(() =>
            // The planted bug: an answer not to this request (a replay) is taken as a promise.
            bugs.has('extend-past-promise') && this.lastAccepted ? resolve(this.lastAccepted) : reject(new Error('peer timed out')),
          ),
        );
        const p = this.other;
        if (!up(self.id, p.id) || rng.chance(0.01)) return;
        sched.after(delay(), () =>
          onNode(p, () => {
            if (!p.host.powered || !p.agent) return;
            void p.agent.answerPromise({ node, epoch, asked }).then((answer) => {
              if (!up(p.id, self.id) || rng.chance(0.01)) return;
              sched.after(delay(), () =>
                finish(() => {
                  if (answer.accepted) this.lastAccepted = answer;
                  resolve(answer);
                }),
              );
            });
          }),
        );
      });
    }
    /** A one-way message over the peer channel, with the network's delays and losses; nobody waits for its answer. */
    async #tell(deliver: (peer: NodeAgent) => void): Promise<boolean> {
      this.#seq += 1;
      const p = this.other;
      if (!up(this.self.id, p.id) || rng.chance(0.01)) return false;
      sched.after(delay(), () => onNode(p, () => void (p.host.powered && p.agent && deliver(p.agent))));
      return true;
    }
    release(node: string, through: PromiseAsk): Promise<boolean> {
      return this.#tell((peer) => peer.releasePromise(node, through));
    }
    /** The passive's ticks keep their schedule here: the simulator drives them, there is no run loop to wake. */
    handover(node: string, epoch: number): Promise<boolean> {
      return this.#tell((peer) => peer.leaseHandedOver(node, epoch));
    }
    reachable() {
      if (this.checks === 0) return undefined;
      return this.lastSuccess !== null && mono(this.self) - this.lastSuccess <= t.suspectAfterMs;
    }
    status() {
      return this.reachable() ? this.lastStatus : null;
    }
  }

  const crash = (n: SimNode, downMs: number) => {
    // Whatever it acted under ends with its power.
    const acting = n.agent?.status();
    if (acting && acting.epoch > 0) hostWorld.left(n.id, acting.epoch);
    // The planted bug: the state directory is on a disk that loses its writes at a reset.
    if (bugs.has('forget-epochs')) n.memory = new RememberedEpochs();
    n.incarnation++;
    n.agent?.stop();
    n.agent = null;
    n.host = { ...freshHost(), powered: false };
    n.watchdog.armed = false;
    sched.after(downMs, () => {
      n.host = freshHost();
      n.bootAt = sched.now;
      boot(n);
    });
  };

  const selfFenceFor = (n: SimNode, incarnation: number): SelfFence => ({
    arm: async () => {
      if (n.incarnation !== incarnation) return;
      n.watchdog = { armed: true, deadline: sched.now + watchdogMs };
      scheduleWatchdog(n);
    },
    pet: async () => {
      if (n.incarnation === incarnation && n.watchdog.armed) n.watchdog.deadline = sched.now + watchdogMs;
    },
    disarm: async () => {
      if (n.incarnation === incarnation) n.watchdog.armed = false;
    },
    reboot: async (reason) => {
      if (n.incarnation !== incarnation) return;
      trace(`${n.id}: SELF-FENCE (reboot): ${reason}`);
      crash(n, 3_000);
    },
  });

  /** When a watchdog reset a node: the network's own losses can cost a new holder its pets. */
  const watchdogResets: number[] = [];
  const scheduleWatchdog = (n: SimNode) =>
    sched.at(n.watchdog.deadline, () => {
      if (!n.watchdog.armed || !n.host.powered) return;
      if (sched.now >= n.watchdog.deadline) {
        trace(`${n.id}: WATCHDOG fired`);
        watchdogResets.push(sched.now);
        crash(n, 3_000);
      } else scheduleWatchdog(n);
    });

  const boot = (n: SimNode) => {
    const incarnation = ++n.incarnation;
    const alive = () => n.incarnation === incarnation;
    const fencing = { epoch: 0, confirmedEpoch: 0 };
    // The planted 'forget-promise': a restarted agent's clock reads a promise window late while
    // it starts, so the promise it may have given in its previous life is not kept.
    let startLateMs = bugs.has('forget-promise') ? t.leaseTtlMs + 1 : 0;
    const agent = new NodeAgent({
      spec,
      nodeId: n.id,
      controlPlane: new ControlPlaneClient('http://control-plane', spec.id, n.id, {
        timeoutMs: t.requestTimeoutMs,
        token: tokens.get(n.id),
        request: fetchFor(n, incarnation),
      }),
      resources: simResources(hostWorld, n.id, n.host, fencing),
      fencing,
      memory: n.memory,
      selfFence: selfFenceFor(n, incarnation),
      peer: new SimPeer(n),
      now: () => mono(n) - startLateMs,
      log: options.trace ? agentTraceLog(n.id) : silentLog,
      maxRestarts: 2,
      monitorIntervalMs: 1000,
      // The simulated host's commands cost nothing: every monitor on every pass.
      storageMonitorIntervalMs: 1000,
      demoteBudgetMs: DEMOTE_BUDGET_MS,
      timer: (ms, fn) => sched.after(ms / n.rate, () => onNode(n, () => alive() && fn())),
    });
    startLateMs = 0;
    n.agent = agent;
    const tick = () => {
      if (!alive()) return;
      const started = sched.now;
      void agent
        .tick()
        .then(() => {
          if (!alive()) return;
          if (agent.deadline !== null) {
            // As the agent's timer does: at the deadline, or a millisecond after (never before).
            const at = Math.ceil(virtualAt(n, agent.deadline)) + 1;
            sched.at(at, () => onNode(n, () => alive() && void agent.onDeadline().catch((e: Error) => violation(`${n.id} onDeadline threw: ${e.message}`))));
          }
          sched.at(started + t.renewIntervalMs / n.rate, () => onNode(n, tick));
          // As the agent's own run loop does: fencing acknowledged, it activates at once, not at the next tick.
          void agent.settled().then(() =>
            onNode(n, () => {
              if (alive() && agent.role === 'fencing' && fencing.confirmedEpoch === fencing.epoch)
                void agent.decide().catch((e: Error) => violation(`${n.id} decide threw: ${e.message}`));
            }),
          );
        })
        .catch((e: Error) => violation(`${n.id} agent threw: ${e.stack}`));
    };
    void agent.recover().then(() => onNode(n, () => (agent.keepWatchdog(), tick())));
  };

  // --- the NFS client -------------------------------------------------------------------------
  let seq = 0;
  let acked = 0;
  const ackedBy: { seq: number; at: number; node: string }[] = [];
  const failovers: Failover[] = [];
  let longestStallMs = 0;
  const clientWrite = () => {
    sched.after(CLIENT_INTERVAL_MS, clientWrite);
    const holders = nodes.filter((n) => n.host.powered && n.host.vip && up('client', n.id)).sort((a, b) => b.host.garpAt - a.host.garpAt);
    const target = holders[0];
    if (!target || frozen(target) || !up(target.id, 'client')) return;
    if (!(target.host.mounted && target.host.nfsRunning && target.host.exported)) return;
    if (!lun.mayWrite(target.id)) return;
    const record = seq++;
    lun.records[target.host.cursor++] = record;
    const last = ackedBy.at(-1);
    if (last) {
      longestStallMs = Math.max(longestStallMs, sched.now - last.at);
      if (last.node !== target.id) failovers.push({ ms: sched.now - last.at, faults: involvedIn(faults, last.at, sched.now) });
    }
    if (ackedBy.at(-1)?.node !== target.id) trace(`client: writes now served by ${target.id} (slot ${target.host.cursor - 1})`);
    ackedBy.push({ seq: record, at: sched.now, node: target.id });
    acked++;
  };

  // --- invariants -------------------------------------------------------------------------------
  let lastEpoch = 0;
  const holderOf = new Map<number, string>();
  store.onLease.push((next, previous) => {
    if (next.holder !== previous?.holder || next.epoch !== previous?.epoch || next.fencing?.confirmedAt !== previous?.fencing?.confirmedAt) {
      trace(
        `lease: ${next.holder ?? 'vacant'} epoch ${next.epoch}${next.fencing ? ` (${next.fencing.reason}${next.fencing.confirmedAt ? ', fencing confirmed' : ''})` : ''}`,
      );
    }
    if (next.epoch < lastEpoch) violation(`epoch went back from ${lastEpoch} to ${next.epoch}`);
    lastEpoch = Math.max(lastEpoch, next.epoch);
    if (next.holder && next.fencing?.epoch === next.epoch) {
      const key = `${next.holder}/${next.epoch}`;
      grantsEver.set(key, { confirmed: (grantsEver.get(key)?.confirmed ?? false) || next.fencing.confirmedAt !== null });
    }
    // No grant while the holder renews on time: the arbiter must have watched its lease unchanged
    // for suspectAfterMs at least, on a clock that runs at most trueDrift fast — whatever its wall clock did.
    const newHolder = previous?.holder && next.holder && next.holder !== previous.holder && next.epoch > previous.epoch;
    if (newHolder && next.fencing?.reason !== 'store-regressed') {
      const since = sched.now - (renewedAt.get(previous.holder!) ?? Number.NEGATIVE_INFINITY);
      if (since < t.suspectAfterMs / (1 + config.trueDrift) - 1)
        violation(`${next.holder} was granted epoch ${next.epoch} (${next.fencing?.reason}) while ${previous.holder} renewed ${since} ms ago`);
    }
    if (next.holder && (next.renewedAt !== previous?.renewedAt || next.holder !== previous?.holder)) renewedAt.set(next.holder, sched.now);
    if (next.holder && next.epoch > 0) {
      const h = holderOf.get(next.epoch);
      if (h && h !== next.holder) violation(`epoch ${next.epoch} held by ${h} and by ${next.holder}`);
      holderOf.set(next.epoch, next.holder);
    }
    // A lease that expired for everyone else: its old holder must have stopped serving by then.
    if (previous?.holder && next.holder && next.holder !== previous.holder && next.fencing?.reason === 'lease-expired') {
      const old = node(previous.holder);
      if (old.host.powered && !frozen(old) && !justThawed(old) && old.host.hangingUntil <= sched.now && old.agent && old.host.vip)
        violation(`${old.id} still served when its lease expired and went to ${next.holder} (epoch ${next.epoch})`);
    }
  });
  const check = () => {
    const writers = nodes.filter((n) => n.host.powered && n.host.mounted && n.host.vgActive && lun.registrations.has(n.id));
    if (writers.length > 1) violation(`two writers: ${writers.map((n) => n.id).join(' and ')} both have the filesystem mounted and their key registered`);
    for (const n of nodes) {
      const a = n.agent;
      if (!a || !n.host.powered || frozen(n) || justThawed(n) || !n.host.vip || a.deadline === null) continue;
      // A hung stop (injected) may hold the VIP until self-fencing ends it, within the demotion budget.
      const allowed = n.host.hangingUntil > sched.now ? DEMOTE_BUDGET_MS + 300 : 300;
      if (mono(n) > a.deadline + allowed) violation(`${n.id} serves ${Math.round(mono(n) - a.deadline)} ms past its own lease deadline`);
    }
  };

  // --- the nemesis ------------------------------------------------------------------------------
  const serving = () => nodes.find((n) => n.host.vip && n.host.powered)?.id ?? 'node-a';
  const other = (id: string) => (id === 'node-a' ? 'node-b' : 'node-a');
  const storeFaultsUntil = { t: -1 };
  store.faults = {
    before: async () => {
      if (sched.now >= storeFaultsUntil.t) return;
      if (rng.chance(0.1)) await sched.sleep(rng.int(50, 400));
      if (rng.chance(0.3)) throw new StoreUnavailableError('injected: throttled');
    },
    failAfterApply: () => sched.now < storeFaultsUntil.t && rng.chance(0.1),
  };
  const cleanCrashes: { at: number; of: string; promisedMs: number }[] = [];
  /** The active crashed while the arbiter was down: the survivor must wait for it, then take over. */
  const survivorWaits: { crashedAt: number; cpBackAt: number; of: string }[] = [];
  /** Outages of the arbiter alone, with both nodes and the peer channel healthy, that began while the service ran. */
  const arbiterOnlyOutages: { at: number; until: number; kind: FaultKind }[] = [];
  for (const f of faults) {
    sched.at(f.at, () => {
      const id = f.target === 'active' ? serving() : f.target === 'passive' ? other(serving()) : f.target;
      // Clean: no other fault near it, and no latent one armed before it (a mount that will
      // fail, a stop that will hang: they strike at the takeover the crash causes).
      const alone = faults.every((g) => g === f || (isLatent(g) ? g.at > f.at + NEAR_MS : g.at + g.durationMs < f.at - NEAR_MS || g.at > f.at + NEAR_MS));
      if (f.kind === 'crash' && alone && node(id).host.vip && node(id).host.powered) {
        // A peer that vouched for it just before (a renewal of the crashed node had failed) keeps its promise first.
        const promised = node(other(id)).agent?.status().vouching?.remainingMs ?? 0;
        cleanCrashes.push({ at: f.at, of: id, promisedMs: promised * (1 + config.trueDrift) });
      }
      // No other fault from 10 s before this one to 10 s after it ends (a latent one: none armed before then).
      const quiet = faults.every((g) => g === f || (!isLatent(g) && g.at + g.durationMs < f.at - NEAR_MS) || g.at > f.at + f.durationMs + NEAR_MS);
      const arbiterOnly = (f.kind === 'cp-down' || f.kind === 'partition-cp' || f.kind === 'oneway-cp') && quiet;
      const servingNode = nodes.find((x) => x.host.vip && x.host.powered && x.agent?.role === 'active');
      const healthyPeer = nodes.find((x) => x !== servingNode && x.host.powered && x.agent?.role === 'passive' && !frozen(x));
      const servingNow = (ackedBy.at(-1)?.at ?? Number.NEGATIVE_INFINITY) >= sched.now - 300;
      if (spec.policy.failsafe && arbiterOnly && servingNode && healthyPeer && servingNow)
        arbiterOnlyOutages.push({ at: f.at, until: f.at + f.durationMs, kind: f.kind });
      trace(`FAULT ${f.kind} on ${id} for ${f.durationMs} ms`);
      const n = node(id);
      const until = sched.now + f.durationMs;
      switch (f.kind) {
        case 'crash':
          return crash(n, f.durationMs);
        case 'agent-crash': {
          n.incarnation++;
          n.agent?.stop();
          n.agent = null;
          return sched.after(f.durationMs, () => n.host.powered && !n.agent && boot(n));
        }
        case 'freeze':
          n.frozenUntil = Math.max(n.frozenUntil, until);
          return;
        case 'partition-cp':
          block(id, 'cp', until);
          return block('cp', id, until);
        case 'cp-down':
        case 'cp-down-peer-flap':
        case 'cp-down-passive-restart':
        case 'cp-down-active-crash': {
          // The arbiter unreachable from both nodes (a WAN outage, a region down), and what may come with it.
          for (const x of NODES) {
            block(x, 'cp', until);
            block('cp', x, until);
          }
          const during = () => sched.now + rng.int(1_000, Math.max(1_001, f.durationMs - 2_000));
          if (f.kind === 'cp-down-peer-flap') {
            const flap = () => {
              if (sched.now >= until) return;
              const cutMs = rng.int(200, 3_000);
              trace(`peer channel cut for ${cutMs} ms`);
              block('node-a', 'node-b', sched.now + cutMs);
              block('node-b', 'node-a', sched.now + cutMs);
              sched.after(cutMs + rng.int(300, 4_000), flap);
            };
            sched.at(during(), flap);
          }
          if (f.kind === 'cp-down-passive-restart') {
            sched.at(during(), () => {
              const p = node(other(serving()));
              trace(`${p.id}: agent restarts during the outage`);
              p.incarnation++;
              p.agent?.stop();
              p.agent = null;
              sched.after(rng.int(200, 2_000), () => p.host.powered && !p.agent && boot(p));
            });
          }
          if (f.kind === 'cp-down-active-crash') {
            sched.at(during(), () => {
              const a = node(serving());
              if (!a.host.vip) return;
              trace(`${a.id}: crashes during the outage`);
              if (quiet) survivorWaits.push({ crashedAt: sched.now, cpBackAt: until, of: a.id });
              crash(a, rng.int(2_000, 8_000));
            });
          }
          return;
        }
        case 'oneway-cp':
          return block(id, 'cp', until);
        case 'partition-peer':
          block(id, other(id), until);
          return block(other(id), id, until);
        case 'partition-client':
          block(id, 'client', until);
          return block('client', id, until);
        case 'store-errors':
          storeFaultsUntil.t = until;
          return;
        case 'cp-restart':
          instances = [makeInstance(0), makeInstance(1)];
          return;
        case 'nfs-dies':
          n.host.nfsRunning = false;
          n.host.nfsDied = true;
          return;
        case 'mount-fails':
          // Strikes the node that would mount next: the peer of the one serving.
          node(f.target === 'active' ? other(id) : id).host.failNextMount = true;
          return;
        case 'cp-clock-step': {
          // An NTP step or a VM migration on one instance: its wall clock jumps 10 s either way.
          const i = rng.int(0, 1);
          cpSteps[i]! += rng.pick([-10_000, 10_000]);
          return;
        }
        case 'store-restored': {
          // The control plane stops, its store is restored from a backup taken up to 20 s
          // earlier (before, perhaps, a failover), and it starts again: new instances.
          const takenBy = sched.now - rng.int(BACKUP_AGE_MS.min, BACKUP_AGE_MS.max);
          const backup = [...backups].reverse().find((b) => b.at <= takenBy) ?? backups[0]!;
          for (const id of NODES) {
            block(id, 'cp', until);
            block('cp', id, until);
          }
          sched.at(until, () => {
            store.restore(backup.data);
            lastRestoreAt = sched.now;
            const restored = store.leaseOf(spec.id);
            lastEpoch = restored?.epoch ?? 0;
            for (const e of [...holderOf.keys()]) if (e > lastEpoch) holderOf.delete(e);
            trace(`store restored to its backup of ${backup.at} ms: lease ${restored?.holder ?? 'vacant'} epoch ${restored?.epoch}`);
            instances = [makeInstance(0), makeInstance(1)];
          });
          return;
        }
        case 'ttl-lengthened': {
          // An operator lengthens the lease TTL while a node holds it (shortening is refused
          // while the cluster runs); the agents keep the spec they started with.
          const leaseTtlMs = t.leaseTtlMs + 1000;
          const safetyMarginMs = Math.max(t.safetyMarginMs, minSafetyMarginMs(leaseTtlMs, t.maxDriftRatio));
          const longer = { ...spec, timing: { ...spec.timing, leaseTtlMs, safetyMarginMs } };
          void Promise.resolve(
            instances[0]!.request(`/v1/clusters/${spec.id}`, {
              method: 'PUT',
              headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
              body: JSON.stringify(longer),
            }),
          ).then(async (r) => {
            trace(`spec update: ${r.status}`);
            if (r.status >= 400 && r.status < 500) violation(`the longer lease was refused: ${r.status} ${await r.text()}`);
          });
          return;
        }
        case 'stop-hangs':
          // A stop that hangs, when it matters: the node loses the control plane, must demote
          // at its deadline, and its first stop hangs past the demotion budget.
          // Cut from its peer too: with the peer vouching (failsafe) it would serve on, the hang latent.
          n.host.hangNextStopMs = 20_000;
          for (const [a, b] of [
            [id, 'cp'],
            ['cp', id],
            [id, other(id)],
            [other(id), id],
          ] as const)
            block(a, b, Math.max(until, sched.now + t.leaseTtlMs + 2_000));
          return;
      }
    });
  }

  // --- run ----------------------------------------------------------------------------------------
  const issuer = new Credentials(store, { now: () => CP_EPOCH + sched.now, elapsed: () => sched.now });
  const adminToken = (await issuer.issue('operator', { role: 'admin', name: 'sim' })).token;
  for (const n of NODES) tokens.set(n, (await issuer.issue('agent', { clusterId: spec.id, node: n })).token);
  const created = await instances[0]!.request('/v1/clusters', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
    body: JSON.stringify(spec),
  });
  if (created.status !== 201) throw new Error(`cluster not created: ${created.status} ${await created.text()}`);
  if ((options.bug ?? options.bugConfigOnly) === 'wall-clock-expiry') {
    // NTP gone wrong: an instance's wall clock jumps 10 s ahead every few seconds.
    const step = () => {
      cpSteps[rng.int(0, 1)]! += 10_000;
      sched.after(rng.int(1_000, 3_000), step);
    };
    sched.after(2_000, step);
  }
  const backups: { at: number; data: unknown }[] = [];
  // A copy of the whole store each second was about a fifth of a seed's work: only those a
  // restore can pick are taken, in the BACKUP_AGE_MS.max (and one tick) before it. The ticks stay in every
  // run, and with them the checks run after each event.
  const restoresAt = faults.filter((f) => f.kind === 'store-restored').map((f) => f.at);
  const takeBackup = () => {
    if (restoresAt.some((at) => sched.now <= at && sched.now >= at - BACKUP_AGE_MS.max - 1_000)) {
      backups.push({ at: sched.now, data: store.backup() });
      if (backups.length > 30) backups.shift();
    }
    sched.after(1_000, takeBackup);
  };
  takeBackup();
  for (const n of nodes) sched.at(rng.int(0, 500), () => boot(n));
  sched.after(1_000, clientWrite);
  await sched.run(durationMs, check);
  await settle();

  // --- end-of-run checks ----------------------------------------------------------------------------
  const onDisk = new Set(lun.records);
  const lost = ackedBy.filter((a) => !onDisk.has(a.seq));
  if (lost.length > 0) violation(`${lost.length} acknowledged writes lost, first #${lost[0]!.seq} (acked by ${lost[0]!.node} at ${lost[0]!.at} ms)`);
  const decided = new Map<number, number>();
  for (const e of store.eventsOf(spec.id)) if (e.type === 'fencing.decided') decided.set(e.epoch, (decided.get(e.epoch) ?? 0) + 1);
  for (const [epoch, count] of decided) if (count > 1) violation(`epoch ${epoch} has ${count} fencing decisions`);
  for (const c of cleanCrashes) {
    // Either node may resume: the peer by taking over, or the crashed node itself if it is back
    // before its lease could go to anyone else.
    const resumed = ackedBy.find((a) => a.at > c.at);
    // A watchdog reset meanwhile (the taking-over node missed its pets: requests lost twice in a
    // row) is a second failure, not a slow takeover.
    const reset = watchdogResets.some((at) => at > c.at && at <= c.at + CRASH_FAILOVER_BOUND_MS);
    const bound = CRASH_FAILOVER_BOUND_MS + c.promisedMs;
    if (!reset && (!resumed || resumed.at - c.at > bound)) {
      violation(
        `after ${c.of} crashed at ${c.at} ms, service resumed ${resumed ? `only after ${resumed.at - c.at} ms (by ${resumed.node})` : 'never'} (bound ${Math.round(bound)} ms)`,
      );
    }
  }
  for (const o of arbiterOnlyOutages) {
    // Failsafe: losing only the arbiter never stops the service (policy.failsafe on).
    let last = [...ackedBy].reverse().find((a) => a.at <= o.at)?.at ?? o.at;
    let gap = 0;
    for (const a of ackedBy) {
      if (a.at <= o.at || a.at > o.until) continue;
      gap = Math.max(gap, a.at - last);
      last = a.at;
    }
    gap = Math.max(gap, Math.min(o.until, durationMs) - last);
    if (gap > ARBITER_OUTAGE_STALL_MS)
      violation(`the arbiter alone was unreachable (${o.kind} at ${o.at} ms), both nodes and the peer channel healthy, and the client stalled ${gap} ms`);
  }
  for (const w of survivorWaits) {
    const resumed = ackedBy.find((a) => a.at > w.crashedAt);
    if (resumed && resumed.at < w.cpBackAt) violation(`${resumed.node} served again at ${resumed.at} ms while the arbiter was down`);
    if (!resumed || resumed.at > w.cpBackAt + CRASH_FAILOVER_BOUND_MS)
      violation(
        `${w.of} crashed at ${w.crashedAt} ms with the arbiter down until ${w.cpBackAt} ms; service resumed ${resumed ? `only at ${resumed.at} ms` : 'never'}`,
      );
  }
  const lastAck = ackedBy.at(-1)?.at ?? 0;
  if (durationMs - lastAck > 5_000)
    violation(`no write served in the last ${Math.round((durationMs - lastAck) / 1000)} s, ${QUIET_END_MS / 1000} s after the last fault began to heal`);
  for (const n of nodes) n.agent?.stop();
  if (options.trace)
    for (const e of store.eventsOf(spec.id))
      if (e.type === 'phase.reported' && e.data.status === 'failed')
        trace(`phase failed: ${e.node} epoch ${e.epoch} ${e.data.direction} ${e.data.phase}: ${e.data.message}`);
  return { seed: options.seed, violations, faults, failovers, acked, longestStallMs };
}
