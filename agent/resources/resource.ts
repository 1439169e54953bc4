/**
 * The contract every node resource follows, after OCF resource agents: validate, start, stop,
 * monitor. Start and stop are idempotent. Stop is a force operation: when it fails, the caller
 * escalates to self-fencing. Each command has its own timeout; the whole action's timeout
 * belongs to the caller.
 */
import type { Logger } from 'pino';
import type { Phase } from '../../shared/events.ts';
import type { ClusterSpec, NodeSpec } from '../../shared/spec.ts';
import type { Executor } from '../executor.ts';

export type ResourceName = Exclude<Phase, 'fence'>;

/** A running resource may add what an operator should know of it (nfs-server: its grace period). */
export type MonitorResult = { state: 'running'; detail?: string } | { state: 'stopped' } | { state: 'failed'; reason: string };

export interface Resource {
  readonly name: ResourceName;
  /** Problems that prevent this resource from working on this node; empty when fine. */
  validate(): Promise<string[]>;
  start(): Promise<void>;
  stop(): Promise<void>;
  monitor(): Promise<MonitorResult>;
  /**
   * Readies, ahead of any takeover, what its start would otherwise do on the critical path and
   * needs no shared state (a unit's drop-in and systemd's reload of it). Starts nothing. The agent
   * runs it once when it starts, whatever its role; start() does it again where it must.
   */
  prepare?(): Promise<void>;
  /**
   * Reads again, ahead of this node's next takeover, what the peer's takeover has changed that
   * start() reads (the VG's owner). The agent calls it on a passive node some way into each new
   * term of its peer. Best effort: start() reads what it must.
   */
  afterPeerTakeover?(): void;
  /**
   * Begins, as a takeover begins, a part of its start() that touches nothing shared and waits on
   * the network rather than on the steps before it (a probe), so that it runs beside them;
   * start() waits for its outcome. Errors surface in start(), not here.
   */
  startAhead?(): void;
  /**
   * Its monitor queries the SAN (SCSI reservations, a command per path): the most costly
   * commands of a pass, for state that changes only by fencing (which the key check of every
   * pass catches) or by hand. The agent runs these monitors at their own, slower cadence.
   */
  readonly queriesStorage?: boolean;
  /**
   * The resource through which this one takes effect: with that one stopped, what its monitor
   * finds is a record left from before (the export table outlives a crash on the local disk),
   * cleared at start-up rather than taken for a running service.
   */
  readonly inEffectOnlyWith?: ResourceName;
}

/**
 * The epoch the node acts under and the epoch whose fencing the arbiter acknowledged. Owned
 * by the agent loop; resources that touch the data only read it.
 */
export interface FencingState {
  epoch: number;
  confirmedEpoch: number;
  /** How long the lease we act under still runs, by the loop's monotonic clock (0 when none). Set by the loop. */
  leaseRemainingMs?: () => number;
}

/** What every resource is built from. */
export interface ResourceContext {
  spec: ClusterSpec;
  node: NodeSpec;
  exec: Executor;
  log: Logger;
  fencing: FencingState;
}

/** A resource action that cannot proceed, with a sentence for the log and the phase report. */
export class ResourceError extends Error {
  constructor(
    readonly resource: ResourceName,
    message: string,
  ) {
    super(`${resource}: ${message}`);
    this.name = 'ResourceError';
  }
}

/**
 * An action whose effect on the shared disk cannot be known and may land after our lease: a
 * registration sent too late. Only a reset of the node makes it safe; the loop self-fences.
 */
export class SafetyInDoubt extends ResourceError {
  constructor(resource: ResourceName, message: string) {
    super(resource, `${message}: resetting this node`);
    this.name = 'SafetyInDoubt';
  }
}

/** Per-command timeouts, ms: queries are quick, changes may wait on the SAN or on systemd. */
export const TIMEOUT = { query: 5_000, change: 15_000, service: 60_000 } as const;
