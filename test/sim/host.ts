/**
 * The simulated hosts: one shared LUN with exact SCSI-3 type-5 semantics (only registered
 * nexuses may write once a reservation is held; preempt-and-abort removes a registration), LVM
 * system_id ownership, and per node a mount, an NFS server, exports and the VIP — behind the
 * same Resource interface the agent drives in production.
 *
 * The mount models what makes a second writer destructive: each node appends at the file
 * length it saw when it mounted, so two nodes writing at once overwrite each other's records.
 */
import type { Reservation } from '../../agent/resources/index.ts';
import type { FencingState, MonitorResult, Resource, ResourceName } from '../../agent/resources/resource.ts';
import { reservationKey, type ReservationKey } from '../../shared/reservation-key.ts';

export class SimLun {
  readonly registrations = new Map<string, ReservationKey>();
  reservation: ReservationKey | null = null;
  /** The file the NFS client appends to: slot → record number. */
  readonly records: number[] = [];
  vgOwner: string | null = null;

  mayWrite(node: string): boolean {
    return this.reservation === null || this.registrations.has(node);
  }
}

export interface HostState {
  /** Injected faults: the next mount fails; the next stop of any resource hangs this long. */
  failNextMount: boolean;
  hangNextStopMs: number;
  hangingUntil: number;
  powered: boolean;
  vgActive: boolean;
  mounted: boolean;
  cursor: number;
  nfsRunning: boolean;
  /** nfsd died under a running service (the 'nfs-dies' fault): monitor says failed, not stopped. */
  nfsDied: boolean;
  exported: boolean;
  vip: boolean;
  garpAt: number;
}

export function freshHost(): HostState {
  return {
    failNextMount: false,
    hangNextStopMs: 0,
    hangingUntil: 0,
    powered: true,
    vgActive: false,
    mounted: false,
    cursor: 0,
    nfsRunning: false,
    nfsDied: false,
    exported: false,
    vip: false,
    garpAt: 0,
  };
}

/** What the host resources need from the simulated world. */
export interface HostWorld {
  lun: SimLun;
  clusterId: string;
  now(): number;
  /** A step that takes virtual time (longer when the node is frozen). */
  work(node: string): Promise<void>;
  /** A stop step: like work, unless a hang was injected. */
  stopWork(node: string, host: HostState): Promise<void>;
  violation(what: string): void;
  trace(what: string): void;
  /** Whether the arbiter ever granted `node` the epoch, and confirmed its fencing (restores do not erase it). */
  granted(node: string, epoch: number): { granted: boolean; confirmed: boolean };
  /** `node` acts under `epoch`: it fences, or activates the VG, under it. */
  acted(node: string, epoch: number): void;
  /** `node` stopped acting under `epoch`: its VG is deactivated. */
  left(node: string, epoch: number): void;
  bugs: ReadonlySet<string>;
}

abstract class SimResource implements Resource {
  abstract readonly name: ResourceName;
  constructor(
    protected readonly w: HostWorld,
    protected readonly node: string,
    protected readonly host: HostState,
    /** The agent's fencing state (shared with it, as in production). */
    protected readonly fencing: FencingState,
  ) {}
  async validate(): Promise<string[]> {
    return [];
  }
  abstract start(): Promise<void>;
  abstract stop(): Promise<void>;
  abstract monitor(): Promise<MonitorResult>;
  protected state(up: boolean): MonitorResult {
    return up ? { state: 'running' } : { state: 'stopped' };
  }
}

class SimReservation extends SimResource implements Reservation {
  readonly name = 'scsi-reservation' as const;
  readonly key = reservationKey(this.w.clusterId, this.node);
  async fence(keys: readonly ReservationKey[]): Promise<ReservationKey[]> {
    await this.w.work(this.node);
    if (!this.w.granted(this.node, this.fencing.epoch).granted)
      this.w.violation(`${this.node} registered its key without a grant of epoch ${this.fencing.epoch}`);
    this.w.acted(this.node, this.fencing.epoch);
    this.w.lun.registrations.set(this.node, this.key);
    const preempted: ReservationKey[] = [];
    if (!this.w.bugs.has('skip-fencing')) {
      for (const [n, k] of [...this.w.lun.registrations]) {
        if (n !== this.node && keys.includes(k)) {
          this.w.lun.registrations.delete(n);
          preempted.push(k);
        }
      }
    }
    this.w.lun.reservation = this.key;
    this.w.trace(`${this.node}: registered, preempted [${preempted.join(', ')}], holds the reservation`);
    return preempted;
  }
  async keyPresent(): Promise<boolean> {
    const present = this.w.lun.registrations.get(this.node) === this.key;
    if (!present && this.w.bugs.has('reregister-when-fenced')) {
      this.w.lun.registrations.set(this.node, this.key);
      return true;
    }
    return present;
  }
  async start(): Promise<void> {
    await this.w.work(this.node);
    if (this.w.lun.registrations.get(this.node) !== this.key) throw new Error(`${this.node}: key not registered; fencing must run first`);
    this.w.lun.reservation ??= this.key;
  }
  async stop(): Promise<void> {}
  async monitor(): Promise<MonitorResult> {
    return this.state(this.w.lun.registrations.get(this.node) === this.key);
  }
}

class SimVolumeGroup extends SimResource {
  readonly name = 'volume-group' as const;
  async start(): Promise<void> {
    if (this.fencing.epoch === 0 || this.fencing.confirmedEpoch !== this.fencing.epoch) throw new Error('fencing not confirmed');
    if (!this.w.granted(this.node, this.fencing.epoch).confirmed)
      this.w.violation(`${this.node} activated the VG under epoch ${this.fencing.epoch} without confirmed fencing`);
    this.w.acted(this.node, this.fencing.epoch);
    await this.w.work(this.node);
    this.w.lun.vgOwner = this.node;
    this.host.vgActive = true;
  }
  async stop(): Promise<void> {
    await this.w.stopWork(this.node, this.host);
    if (this.host.vgActive) this.w.left(this.node, this.fencing.epoch);
    this.host.vgActive = false;
  }
  async monitor() {
    return this.state(this.host.vgActive);
  }
}

class SimFilesystem extends SimResource {
  readonly name = 'filesystem' as const;
  async start(): Promise<void> {
    await this.w.work(this.node);
    if (!this.host.vgActive) throw new Error('no active VG to mount');
    if (this.host.failNextMount) {
      this.host.failNextMount = false;
      throw new Error('mount: wrong fs type, bad option, bad superblock (injected)');
    }
    if (!this.host.mounted) this.host.cursor = this.w.lun.records.length;
    this.host.mounted = true;
    this.w.trace(`${this.node}: mounted (appends at slot ${this.host.cursor})`);
  }
  async stop(): Promise<void> {
    await this.w.stopWork(this.node, this.host);
    this.host.mounted = false;
    this.w.trace(`${this.node}: unmounted`);
  }
  async monitor() {
    return this.state(this.host.mounted);
  }
}

/** A resource that is one flag of the host: the NFS server, the exports. */
class SimFlagResource extends SimResource {
  constructor(
    w: HostWorld,
    node: string,
    host: HostState,
    fencing: FencingState,
    readonly name: ResourceName,
    private readonly flag: 'nfsRunning' | 'exported',
    /** What monitor reports when the flag is down: nfs-server dying is a failure, not a stop. */
    private readonly down: () => MonitorResult,
  ) {
    super(w, node, host, fencing);
  }
  async start(): Promise<void> {
    await this.w.work(this.node);
    this.host[this.flag] = true;
    if (this.flag === 'nfsRunning') this.host.nfsDied = false;
  }
  async stop(): Promise<void> {
    await this.w.stopWork(this.node, this.host);
    this.host[this.flag] = false;
    if (this.flag === 'nfsRunning') this.host.nfsDied = false;
  }
  async monitor(): Promise<MonitorResult> {
    return this.host[this.flag] ? { state: 'running' } : this.down();
  }
}

class SimFloatingIp extends SimResource {
  readonly name = 'floating-ip' as const;
  async start(): Promise<void> {
    await this.w.work(this.node);
    this.host.vip = true;
    this.host.garpAt = this.w.now();
    this.w.trace(`${this.node}: VIP up`);
  }
  async stop(): Promise<void> {
    await this.w.stopWork(this.node, this.host);
    this.host.vip = false;
    this.w.trace(`${this.node}: VIP down`);
  }
  async monitor() {
    return this.state(this.host.vip);
  }
}

export function simResources(w: HostWorld, node: string, host: HostState, fencing: FencingState) {
  const reservation = new SimReservation(w, node, host, fencing);
  const ordered: Resource[] = [
    reservation,
    new SimVolumeGroup(w, node, host, fencing),
    new SimFilesystem(w, node, host, fencing),
    new SimFlagResource(w, node, host, fencing, 'nfs-server', 'nfsRunning', () =>
      host.nfsDied ? { state: 'failed', reason: 'nfs-server is active but nfsd runs 0 threads' } : { state: 'stopped' },
    ),
    new SimFlagResource(w, node, host, fencing, 'exports', 'exported', () => ({ state: 'stopped' })),
    new SimFloatingIp(w, node, host, fencing),
  ];
  return { reservation, ordered };
}
