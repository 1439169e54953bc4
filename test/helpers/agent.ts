/** Agent test helpers: resources on a scripted executor, and recording fakes of the resources. */
import { type Logger, pino } from 'pino';
import type { EpochMemory } from '../../agent/epoch-memory.ts';
import type { CommandLedger } from '../../agent/executor.ts';
import { RememberedEpochs } from './epochs.ts';
import type { ControlPlane } from '../../agent/control-plane-client.ts';
import { NodeAgent } from '../../agent/loop.ts';
import { AgentMetrics } from '../../agent/metrics.ts';
import type { NodeResources, Reservation } from '../../agent/resources/index.ts';
import type { FencingState, MonitorResult, Resource, ResourceContext, ResourceName } from '../../agent/resources/resource.ts';
import type { SelfFence } from '../../agent/self-fence.ts';
import type { ClientTickler } from '../../agent/tickle.ts';
import type { PromiseAnswer, PromiseAsk } from '../../shared/failsafe.ts';
import type { PeerView } from '../../shared/node-role.ts';
import type { ReservationKey } from '../../shared/reservation-key.ts';
import { ClusterSpecSchema } from '../../shared/spec.ts';
import { silentLog, exampleSpec } from './control-plane.ts';
import { ScriptedExecutor } from './fixtures.ts';

/** The agent process id a test agent numbers its promise requests under. */
export const TEST_INSTANCE = '0123456789abcdef';

/** A logger whose lines the test reads. */
export function capturedLog() {
  const lines: { level: number; msg: string }[] = [];
  return { lines, log: pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as { level: number; msg: string }) }) };
}

export async function resourceContext(node: 'node-a' | 'node-b' = 'node-a', fencing: FencingState = { epoch: 1, confirmedEpoch: 1 }) {
  const spec = ClusterSpecSchema.parse(await exampleSpec());
  const exec = new ScriptedExecutor();
  const ctx: ResourceContext = { spec, node: spec.nodes.find((n) => n.id === node)!, exec, log: silentLog, fencing };
  return { ctx, exec, spec };
}

/** A resource that only records what was asked of it, in a journal shared with the test. */
export class FakeResource implements Resource {
  state: MonitorResult = { state: 'stopped' };
  /** How many times its monitor ran. */
  monitored = 0;
  queriesStorage = false;
  /** As the real resource of its name declares it (exports take effect through nfs-server). */
  inEffectOnlyWith: ResourceName | undefined;
  /** Absent unless a test gives it one. */
  startAhead?: () => void;
  /** Absent unless a test gives it one. */
  afterPeerTakeover?: () => void;
  constructor(
    readonly name: ResourceName,
    protected readonly journal: string[],
  ) {}
  async validate() {
    return [];
  }
  async start() {
    this.journal.push(`start ${this.name}`);
    this.state = { state: 'running' };
  }
  async stop() {
    this.journal.push(`stop ${this.name}`);
    this.state = { state: 'stopped' };
  }
  async monitor() {
    this.monitored++;
    return this.state;
  }
}

export class FakeReservation extends FakeResource implements Reservation {
  override queriesStorage = true;
  present = true;
  /** How many times the key check ran. */
  keyChecks = 0;
  async fence(keys: readonly ReservationKey[]) {
    this.journal.push(`fence ${keys.join(',')}`);
    return [...keys];
  }
  async keyPresent() {
    this.keyChecks++;
    return this.present;
  }
}

export function fakeResources(journal: string[]) {
  const reservation = new FakeReservation('scsi-reservation', journal);
  const others = (['volume-group', 'filesystem', 'nfs-server', 'exports', 'floating-ip'] as const).map((n) =>
    Object.assign(new FakeResource(n, journal), {
      queriesStorage: n === 'volume-group',
      inEffectOnlyWith: n === 'exports' ? ('nfs-server' as const) : undefined,
    }),
  );
  const resources: NodeResources = { reservation, ordered: [reservation, ...others] };
  return { resources, reservation, others };
}

export function recordingSelfFence(journal: string[], pets: { at: number[] } = { at: [] }, now: () => number = () => 0): SelfFence {
  return {
    arm: async () => void journal.push('watchdog armed'),
    pet: async () => void pets.at.push(now()),
    disarm: async () => void journal.push('watchdog disarmed'),
    reboot: async (reason) => void journal.push(`REBOOT: ${reason}`),
  };
}

/**
 * A NodeAgent on recording fakes, for the example spec under `clusterId`, with a clock the test
 * moves; `step` runs one tick and whatever action it started, to completion.
 */
export async function testAgent(options: {
  nodeId: 'node-a' | 'node-b';
  controlPlane: ControlPlane;
  journal: string[];
  now: () => number;
  clusterId?: string;
  peerReachable?: () => boolean | undefined;
  peerStatus?: () => (PeerView & { released?: PromiseAsk }) | null;
  /** The NFS clients the peer last served as the active (default: none). */
  peerClients?: () => string[];
  /** Reads and tickles client connections (default: none). */
  clients?: ClientTickler;
  /** The releases this agent sends its peer (default: lost). */
  peerRelease?: (node: string, through: PromiseAsk) => Promise<boolean>;
  /** The handovers this agent sends its peer (default: lost). */
  peerHandover?: (node: string, epoch: number) => Promise<boolean>;
  /** The peer's answer to a failsafe promise request (default: it does not answer). */
  peerPromise?: (node: string, epoch: number) => Promise<PromiseAnswer>;
  maxRestarts?: number;
  /** How often a monitor pass runs (default 0: at every renewal). */
  monitorIntervalMs?: number;
  /** How often the storage monitors run (default 0: every pass, as the others). */
  storageMonitorIntervalMs?: number;
  onNewSpec?: (version: number) => void;
  memory?: EpochMemory;
  log?: Logger;
  /** The agent's timers (default: setTimeout). */
  timer?: (ms: number, fn: () => void) => { cancel(): void };
  /** Books commands to the phase that ran them (default: phases report no commands). */
  ledger?: CommandLedger;
}) {
  const spec = ClusterSpecSchema.parse(await exampleSpec(options.clusterId));
  const fakes = fakeResources(options.journal);
  const fencing: FencingState = { epoch: 0, confirmedEpoch: 0 };
  /** When the watchdog was petted, on the agent's clock. */
  const pets = { at: [] as number[] };
  const metrics = new AgentMetrics(() => agent.status());
  /** The promise requests this agent sent, numbered as the peer channel would. */
  let asked = 0;
  const peerPromise = options.peerPromise ?? (async () => Promise.reject(new Error('peer unreachable')));
  /** A one-way message to the peer, numbered as the peer channel would; lost when the test gives no receiver. */
  const numbered =
    <A extends unknown[]>(send?: (...args: A) => Promise<boolean>) =>
    (...args: A) => {
      asked += 1;
      return send ? send(...args) : Promise.reject(new Error('peer unreachable'));
    };
  const agent = new NodeAgent({
    spec,
    nodeId: options.nodeId,
    controlPlane: options.controlPlane,
    resources: fakes.resources,
    fencing,
    memory: options.memory ?? new RememberedEpochs(),
    selfFence: metrics.counting(recordingSelfFence(options.journal, pets, options.now)),
    peer: options.peerReachable
      ? {
          reachable: options.peerReachable,
          status: () => options.peerStatus?.() ?? null,
          clients: () => options.peerClients?.() ?? [],
          check: async () => {},
          asked: () => ({ instance: TEST_INSTANCE, seq: asked }),
          release: numbered(options.peerRelease),
          handover: numbered(options.peerHandover),
          promise: (node: string, epoch: number) => {
            asked += 1;
            return peerPromise(node, epoch);
          },
        }
      : null,
    now: options.now,
    log: options.log ?? silentLog,
    maxRestarts: options.maxRestarts ?? 2,
    monitorIntervalMs: options.monitorIntervalMs ?? 0,
    storageMonitorIntervalMs: options.storageMonitorIntervalMs ?? 0,
    demoteBudgetMs: 10_000,
    metrics,
    specVersion: 1,
    ...(options.onNewSpec && { onNewSpec: options.onNewSpec }),
    ...(options.timer && { timer: options.timer }),
    ...(options.ledger && { ledger: options.ledger }),
    ...(options.clients && { clients: options.clients }),
  });
  const step = async () => {
    const d = await agent.tick();
    await agent.idle();
    return d;
  };
  return { agent, spec, fencing, step, pets, metrics, ...fakes };
}
