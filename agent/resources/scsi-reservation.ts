/**
 * SCSI-3 persistent reservations with sg_persist, type 5 (Write Exclusive – Registrants Only):
 * only registered nexuses may write, so a node whose key has been preempted can no longer
 * write to the disk — the storage itself fences it. Only the active node is registered.
 *
 * A LUN is a device of the spec: a single path, or a dm-multipath map whose paths the agent
 * finds itself (multipath.ts). Each path is its own I_T nexus and a registration on one does
 * not cover another, so registering is per path; everything else — the key list, the
 * reservation, a preemption (which removes every registration of the key, on every path) — is
 * the LUN's, sent through one live path. Per-path sg_persist rather than mpathpersist: with
 * multipath.conf's `reservation_key`, multipathd registers a key by itself whenever a path
 * appears, at boot too, which is exactly what a node the arbiter has not granted must never do.
 *
 * Registration happens only inside `fence`, which the agent calls only under a grant from the
 * arbiter, and in the repair of a path that lacks our key while another path of the same LUN
 * has it, under a valid lease: a fenced node that re-registered on its own would regain write
 * access (LAB-NOTES, "register-ignore").
 */
import { readFile } from 'node:fs/promises';
import { ReservationKey, reservationKey } from '../../shared/reservation-key.ts';
import { nodeDevices } from '../../shared/spec.ts';
import { type CommandResult, expectExit, failureText } from '../executor.ts';
import { isMultipathName, multipathProblems, type PathFinder, sysfsPaths } from './multipath.ts';
import { type MonitorResult, type Resource, type ResourceContext, ResourceError, SafetyInDoubt, TIMEOUT } from './resource.ts';

const TYPE_5 = '5';
const TYPE_5_NAME = 'Write Exclusive, registrants only';

/** sg_persist prints keys without leading zeros (0xa1); ours are 16 hex digits. */
export function normalizeKey(printed: string): ReservationKey {
  return `0x${BigInt(printed).toString(16).padStart(16, '0')}`;
}

/** Registered keys from `sg_persist --in --read-keys` (with or without the INQUIRY lines). */
export function parseKeys(stdout: string): ReservationKey[] {
  if (/there are NO registered reservation keys/.test(stdout)) return [];
  const header = /registered reservation keys? follows?:/.exec(stdout);
  if (!header) throw new Error(`unrecognised sg_persist --read-keys output: ${stdout.trim().slice(0, 200)}`);
  return stdout
    .slice(header.index + header[0].length)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^0x[0-9a-f]+$/i.test(l))
    .map(normalizeKey);
}

export interface Reservation {
  key: ReservationKey;
  type: string;
}

/** The reservation from `sg_persist --in --read-reservation`, or null when none is held. */
export function parseReservation(stdout: string): Reservation | null {
  if (/there is NO reservation held/.test(stdout)) return null;
  const key = /Key=(0x[0-9a-f]+)/i.exec(stdout);
  const type = /scope:\s*\S+?,\s*type:\s*(.+?)\s*$/m.exec(stdout);
  if (!/Reservation follows:/.test(stdout) || !key || !type)
    throw new Error(`unrecognised sg_persist --read-reservation output: ${stdout.trim().slice(0, 200)}`);
  return { key: normalizeKey(key[1]!), type: type[1]! };
}

/** Whether `--report-capabilities` says the device supports type 5. */
export function supportsType5(stdout: string): boolean {
  return /Write Exclusive, registrants only:\s*1/.test(stdout);
}

/** sg3_utils' exit status for a UNIT ATTENTION sense (SG_LIB_CAT_UNIT_ATTENTION). */
const SG_UNIT_ATTENTION = 6;
/** sg3_utils' exit status for a RESERVATION CONFLICT status (SG_LIB_CAT_RES_CONFLICT). */
const SG_RESERVATION_CONFLICT = 24;
/** The least lease left to register a path that lacks our key: a command's round trip, with room. */
const MIN_REPAIR_LEASE_MS = 1000;

interface Lun {
  device: string;
  multipath: boolean;
}

/**
 * An sg_persist command line, the device opened read-only. sg_persist opens it read-write by
 * default, and udev watches block devices: closing one opened for writing makes it process the
 * device again ("change": blkid, multipath, LVM's pvscan), and multipathd reload the map, for each
 * path at each command. A PR OUT needs no write access to the device: the kernel lets a root
 * process with CAP_SYS_RAWIO (the agent) send any SCSI command through a read-only descriptor.
 */
export function sgPersistArgv(...args: string[]): [string, ...string[]] {
  return ['sg_persist', '--no-inquiry', '--readonly', ...args];
}

/** CAP_SYS_RAWIO's bit (linux/capability.h). */
const CAP_SYS_RAWIO = 17n;

/** Whether a process status (/proc/PID/status) lists CAP_SYS_RAWIO among its effective capabilities. */
export function hasRawIo(status: string): boolean {
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return hex !== undefined && ((BigInt(`0x${hex}`) >> CAP_SYS_RAWIO) & 1n) === 1n;
}

export class ScsiReservation implements Resource {
  readonly name = 'scsi-reservation' as const;
  readonly queriesStorage = true;
  readonly key: ReservationKey;
  readonly #luns: Lun[];
  /**
   * Per multipath LUN, the paths last found running with our key. A path that leaves this set
   * (it stopped running) and comes back is asked at the next key check, every pass, rather than
   * at the next storage monitor: dm-multipath puts a returning path back into service within its
   * polling interval, and a write through a path without our key fails with a reservation conflict.
   */
  readonly #known = new Map<string, Set<string>>();

  constructor(
    private readonly ctx: ResourceContext,
    private readonly findPaths: PathFinder = sysfsPaths(),
    private readonly ownStatus: () => Promise<string> = () => readFile('/proc/self/status', 'utf8'),
  ) {
    this.key = reservationKey(ctx.spec.id, ctx.node.id);
    this.#luns = nodeDevices(ctx.spec, ctx.node.id).map((device) => ({ device, multipath: isMultipathName(device) }));
  }

  /**
   * One sg_persist command. A UNIT ATTENTION (exit 6) reports a past event on this I_T nexus —
   * "registrations preempted" after a fencing, a reset — and the command did not run; the
   * target clears it by reporting it, so the command is sent again (as fence_scsi does).
   */
  async #sg(device: string, ...args: string[]): Promise<CommandResult> {
    return this.#sgWithin(() => TIMEOUT.change, device, ...args);
  }

  async #sgWithin(timeoutMs: () => number, device: string, ...args: string[]): Promise<CommandResult> {
    const argv = sgPersistArgv(...args, device);
    let r = await this.ctx.exec.run({ argv, timeoutMs: timeoutMs() });
    for (let retry = 0; r.exitCode === SG_UNIT_ATTENTION && retry < 2; retry++) {
      r = await this.ctx.exec.run({ argv, timeoutMs: timeoutMs() });
    }
    return r;
  }

  async #expect(what: string, pending: Promise<CommandResult>): Promise<CommandResult> {
    return expectExit(await pending, [0], what);
  }

  /** The paths commands go to: the device itself, or the running paths of a multipath map. */
  async #paths(lun: Lun): Promise<string[]> {
    if (!lun.multipath) return [lun.device];
    const { paths } = await this.findPaths(lun.device).catch((err: Error) => {
      throw new ResourceError(this.name, err.message);
    });
    const live = paths.filter((p) => p.live).map((p) => p.device);
    if (live.length === 0)
      throw new ResourceError(this.name, `${lun.device}: no running path (${paths.map((p) => `${p.name} ${p.state}`).join(', ') || 'the map has no paths'})`);
    return live;
  }

  async readKeys(device: string): Promise<ReservationKey[]> {
    return this.#readKeysVia([device]);
  }

  async readReservation(device: string): Promise<Reservation | null> {
    return parseReservation((await this.#expect(`reading the reservation of ${device}`, this.#sg(device, '--in', '--read-reservation'))).stdout);
  }

  /**
   * Which paths' own I_T nexus carries our key (`on`) and which answered without it (`off`). The
   * key list is the LUN's (a key registered through one path shows through all), so a multipath
   * LUN asks each path: REGISTER from the key to itself succeeds on a nexus registered with it and
   * meets a reservation conflict on any other, changing nothing either way.
   *
   * A path whose command fails otherwise is in neither list: a path being cut still reads
   * "running" in sysfs for the seconds before its transport notices, and its commands fail or
   * time out. The LUN is served through the others — a failed monitor would restart every
   * resource over one cut path — and the path is asked again while it runs. Only when no path
   * answers does the check fail.
   */
  async #registered(lun: Lun, paths: string[]): Promise<{ on: string[]; off: string[] }> {
    if (!lun.multipath) return (await this.#readKeysVia(paths)).includes(this.key) ? { on: paths, off: [] } : { on: [], off: paths };
    const on: string[] = [];
    const off: string[] = [];
    const failed: CommandResult[] = [];
    const known = this.#known.get(lun.device) ?? new Set<string>();
    for (const path of paths) {
      const r = await this.#sg(path, '--out', '--register', `--param-rk=${this.key}`, `--param-sark=${this.key}`);
      if (r.exitCode === 0) {
        on.push(path);
        known.add(path);
        continue;
      }
      known.delete(path);
      if (r.exitCode === SG_RESERVATION_CONFLICT) off.push(path);
      else {
        failed.push(r);
        this.ctx.log.warn({ resource: this.name, device: lun.device, path }, `path ${path} did not answer (sg_persist ${failureText(r)}); served through the others`);
      }
    }
    this.#known.set(lun.device, known);
    if (on.length === 0 && off.length === 0) expectExit(failed[0]!, [0], `checking our key on ${paths.join(', ')}`);
    return { on, off };
  }

  /** The LUN's registered keys, read through the first path that answers (see #registered). */
  async #readKeysVia(paths: string[]): Promise<ReservationKey[]> {
    for (const [i, path] of paths.entries()) {
      const r = await this.#sg(path, '--in', '--read-keys');
      if (r.exitCode === 0) return parseKeys(r.stdout);
      if (i === paths.length - 1) expectExit(r, [0], `reading keys of ${paths.join(', ')}`);
      this.ctx.log.warn({ resource: this.name, path }, `path ${path} did not answer (sg_persist ${failureText(r)}); reading the keys through another`);
    }
    throw new ResourceError(this.name, 'no path to read the keys through');
  }

  /**
   * Whether our key is on the LUN. A preemption takes it off every path at once, so one answer
   * with it is enough; an answer without it counts only when every path, asked again, agrees:
   * a path whose connection fails under the command may still answer, with no keys (in the lab
   * the active reset itself as fenced the moment one of its paths was cut). A real preemption
   * costs a few more reads; a false one would have cost the service.
   */
  async #keyRegistered(lun: Lun, paths: string[]): Promise<boolean> {
    const first = await this.#readKeysVia(paths);
    if (first.includes(this.key)) return true;
    let answered = 0;
    for (const path of paths) {
      const r = await this.#sg(path, '--in', '--read-keys');
      if (r.exitCode !== 0) continue;
      answered++;
      if (parseKeys(r.stdout).includes(this.key)) {
        this.ctx.log.warn({ resource: this.name, device: lun.device, path, first }, 'a read of the keys without ours was contradicted by another: our key is registered');
        return true;
      }
    }
    if (answered === 0) throw new ResourceError(this.name, `${lun.device}: one read of the keys lacked ours and no path answered again`);
    return false;
  }

  /**
   * Registers our key on the paths of a LUN that lack it while another path has it: a path that
   * came back as a new I_T nexus (an iSCSI session rebuilt, an HBA replaced). A registration
   * that reached the storage after a peer preempted us would give us write access again, so it
   * must complete within our lease: no peer is granted before our deadline. The command gets
   * what is left of the lease as its timeout; one that did not answer by then may still reach
   * the storage, and only a reset of this node makes that safe. Returns the paths still missing.
   */
  async #repair(lun: Lun, missing: string[]): Promise<string[]> {
    if (missing.length === 0) return missing;
    const left = () => this.ctx.fencing.leaseRemainingMs?.() ?? 0;
    if (left() < MIN_REPAIR_LEASE_MS) {
      this.ctx.log.warn({ resource: this.name, device: lun.device, paths: missing, leaseRemainingMs: left() }, 'our key is missing on some paths; not registering them without a lease to do it in');
      return missing;
    }
    for (const path of missing) {
      const r = await this.#sgWithin(left, path, '--out', '--register-ignore', `--param-sark=${this.key}`);
      if (r.timedOut || left() === 0)
        throw new SafetyInDoubt(this.name, `registering our key on ${path} did not complete within our lease; it may reach the storage after a peer preempted us`);
      expectExit(r, [0], `registering ${this.key} on ${path}`);
      this.#known.get(lun.device)?.add(path);
    }
    this.ctx.log.warn({ resource: this.name, device: lun.device, paths: missing }, 'our key was missing on some paths of the LUN while present on others: registered it there again');
    return [];
  }

  async validate(): Promise<string[]> {
    const problems: string[] = [];
    // Without it the kernel refuses every PR OUT sent through a read-only descriptor: no fencing.
    if (!hasRawIo(await this.ownStatus()))
      problems.push('the agent lacks CAP_SYS_RAWIO, without which it cannot register or preempt a key: run it as root, with the capability kept');
    for (const lun of this.#luns) {
      let paths: string[];
      try {
        paths = await this.#paths(lun);
      } catch (err) {
        problems.push((err as Error).message);
        continue;
      }
      if (lun.multipath) problems.push(...(await multipathProblems(this.ctx.exec, lun.device, await this.findPaths(lun.device))));
      for (const path of paths) {
        const name = path === lun.device ? path : `${lun.device} (path ${path})`;
        const r = await this.#sg(path, '--in', '--report-capabilities');
        if (r.exitCode !== 0) problems.push(`${name}: persistent reservations not available (sg_persist ${failureText(r)})`);
        else if (!supportsType5(r.stdout)) problems.push(`${name}: does not support reservation type 5 (${TYPE_5_NAME})`);
      }
    }
    return problems;
  }

  /**
   * Executes a fencing decision: register our key on every running path, preempt-and-abort each
   * named key that is registered (aborting its outstanding I/O), and hold the type-5
   * reservation. Refuses to finish while any key the arbiter did not name is registered, since
   * under type 5 every registrant can write. Returns the keys it preempted.
   */
  async fence(keys: readonly ReservationKey[]): Promise<ReservationKey[]> {
    const preempted = new Set<ReservationKey>();
    for (const lun of this.#luns) {
      const paths = await this.#paths(lun);
      for (const path of paths)
        await this.#expect(`registering ${this.key} on ${path}`, this.#sg(path, '--out', '--register-ignore', `--param-sark=${this.key}`));
      if (lun.multipath) this.#known.set(lun.device, new Set(paths));
      const via = paths[0]!;
      // One registration per nexus: a victim on two paths is listed twice, and preempted once
      // (a second PREEMPT names a key no longer registered: a reservation conflict).
      for (const victim of new Set((await this.#keysAfterRegistering(via)).filter((k) => keys.includes(k)))) {
        await this.#expect(
          `preempting ${victim} on ${lun.device}`,
          this.#sg(via, '--out', '--preempt-abort', `--param-rk=${this.key}`, `--param-sark=${victim}`, `--prout-type=${TYPE_5}`),
        );
        preempted.add(victim);
      }
      await this.#holdReservation(lun, via);
      const others = (await this.#keysAfterRegistering(via)).filter((k) => k !== this.key);
      if (others.length > 0)
        throw new ResourceError(
          this.name,
          `${lun.device}: keys the arbiter did not name are still registered (${[...new Set(others)].join(', ')}); refusing to write alongside them`,
        );
    }
    return [...preempted];
  }

  /**
   * The keys read through `via` once our key is registered there. An answer without our own key
   * is not the LUN's (a path failing under the command can answer "no keys"), and fencing must
   * not trust it: it would hide a victim still registered.
   */
  async #keysAfterRegistering(via: string): Promise<ReservationKey[]> {
    const keys = await this.readKeys(via);
    if (!keys.includes(this.key)) throw new ResourceError(this.name, `${via}: the registered keys read back without ours, just registered (${keys.join(', ') || 'none'}): not trusting that answer`);
    return keys;
  }

  async #holdReservation(lun: Lun, via: string): Promise<void> {
    const held = await this.readReservation(via);
    if (held === null) {
      await this.#expect(`reserving ${lun.device}`, this.#sg(via, '--out', '--reserve', `--param-rk=${this.key}`, `--prout-type=${TYPE_5}`));
    } else if (held.key !== this.key) {
      throw new ResourceError(this.name, `${lun.device}: reservation held by ${held.key}, which the arbiter did not ask to preempt`);
    } else if (held.type !== TYPE_5_NAME) {
      throw new ResourceError(this.name, `${lun.device}: our reservation has type "${held.type}", expected "${TYPE_5_NAME}"`);
    }
  }

  /** Checks that fencing has put us in place, repairing a path that came up since; never registers a LUN from nothing (that is fence's job alone). */
  async start(): Promise<void> {
    for (const lun of this.#luns) {
      const paths = await this.#paths(lun);
      const { on, off } = await this.#registered(lun, paths);
      if (on.length === 0) throw new ResourceError(this.name, `${lun.device}: our key ${this.key} is not registered; fencing must run first`);
      const missing = await this.#repair(lun, off);
      if (missing.length > 0) throw new ResourceError(this.name, `${lun.device}: our key ${this.key} is not registered on ${missing.join(', ')}`);
      await this.#holdReservation(lun, on[0]!);
    }
  }

  /** The reservation is kept on stop: the next holder preempts it. */
  async stop(): Promise<void> {
    this.ctx.log.debug({ resource: this.name }, 'reservation kept; the next holder preempts it');
  }

  async monitor(): Promise<MonitorResult> {
    const partial: string[] = [];
    let registered = 0;
    for (const lun of this.#luns) {
      const { on, off } = await this.#registered(lun, await this.#paths(lun));
      if (on.length === 0) continue;
      const missing = await this.#repair(lun, off);
      if (missing.length > 0) partial.push(`${lun.device}: our key is missing on ${missing.join(', ')}`);
      registered++;
      // Unregistering the nexus that reserved (a path lost as a nexus) also releases the
      // reservation, which leaves the LUN open to non-registrants: take it again at once.
      const held = await this.readReservation(on[0]!);
      if (held === null) {
        this.ctx.log.warn({ resource: this.name, device: lun.device }, 'registered but no reservation held: reserving again');
        await this.#holdReservation(lun, on[0]!);
      } else if (held.key !== this.key) return { state: 'failed', reason: `${lun.device}: registered but the reservation is held by ${held.key}` };
    }
    if (partial.length > 0) return { state: 'failed', reason: partial.join('; ') };
    if (registered === this.#luns.length) return { state: 'running' };
    if (registered === 0) return { state: 'stopped' };
    return { state: 'failed', reason: `our key ${this.key} is registered on ${registered} of ${this.#luns.length} devices` };
  }

  /**
   * Used while active, every pass: our key gone from a LUN means the peer fenced us. The key list
   * is the LUN's, so one running path tells: a preemption removes the key from every path at
   * once. Also asks a multipath LUN's paths that came back since the last pass, and registers
   * one that lacks the key (under the lease, as the monitor does).
   */
  async keyPresent(): Promise<boolean> {
    for (const lun of this.#luns) {
      const paths = await this.#paths(lun);
      if (!(await this.#keyRegistered(lun, paths))) return false;
      const known = this.#known.get(lun.device);
      if (!known) continue;
      // A path that stopped running is asked again when it runs again: it may be a new nexus.
      for (const path of known) if (!paths.includes(path)) known.delete(path);
      const back = paths.filter((p) => !known.has(p));
      if (back.length > 0) {
        // Our key is on the LUN (read above): a returning path that does not answer yet is asked again next pass.
        const asked = await this.#registered(lun, back).catch((err: Error) => {
          this.ctx.log.warn({ resource: this.name, device: lun.device, paths: back, err: err.message }, 'paths back in service did not answer yet');
          return null;
        });
        if (asked) await this.#repair(lun, asked.off);
      }
    }
    return true;
  }
}
