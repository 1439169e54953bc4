/**
 * SCSI-3 persistent reservations with sg_persist, type 5 (Write Exclusive – Registrants Only):
 * only registered nexuses may write, so a node whose key has been preempted can no longer
 * write to the disk — the storage itself fences it. Only the active node is registered.
 *
 * Every command is sent on every configured path of the shared devices (each path is its own
 * I_T nexus; a registration on one does not cover another). Registration happens only inside
 * `fence`, which the agent calls only under a grant from the arbiter: a fenced node that
 * re-registered on its own would regain write access (LAB-NOTES, "register-ignore").
 */
import { ReservationKey, reservationKey } from '../../shared/reservation-key.ts';
import { nodeDevices } from '../../shared/spec.ts';
import { type CommandResult, expectExit, failureText } from '../executor.ts';
import { type MonitorResult, type Resource, type ResourceContext, ResourceError, TIMEOUT } from './resource.ts';

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

export class ScsiReservation implements Resource {
  readonly name = 'scsi-reservation' as const;
  readonly queriesStorage = true;
  readonly key: ReservationKey;
  readonly #devices: string[];

  constructor(private readonly ctx: ResourceContext) {
    this.key = reservationKey(ctx.spec.id, ctx.node.id);
    this.#devices = nodeDevices(ctx.spec, ctx.node.id);
  }

  /**
   * One sg_persist command. A UNIT ATTENTION (exit 6) reports a past event on this I_T nexus —
   * "registrations preempted" after a fencing, a reset — and the command did not run; the
   * target clears it by reporting it, so the command is sent again (as fence_scsi does).
   */
  async #sg(device: string, ...args: string[]): Promise<CommandResult> {
    let r = await this.ctx.exec.run({ argv: ['sg_persist', '--no-inquiry', ...args, device], timeoutMs: TIMEOUT.change });
    for (let retry = 0; r.exitCode === SG_UNIT_ATTENTION && retry < 2; retry++) {
      r = await this.ctx.exec.run({ argv: ['sg_persist', '--no-inquiry', ...args, device], timeoutMs: TIMEOUT.change });
    }
    return r;
  }

  async #expect(what: string, pending: Promise<CommandResult>): Promise<CommandResult> {
    return expectExit(await pending, [0], what);
  }

  async readKeys(device: string): Promise<ReservationKey[]> {
    return parseKeys((await this.#expect(`reading keys of ${device}`, this.#sg(device, '--in', '--read-keys'))).stdout);
  }

  async readReservation(device: string): Promise<Reservation | null> {
    return parseReservation((await this.#expect(`reading the reservation of ${device}`, this.#sg(device, '--in', '--read-reservation'))).stdout);
  }

  async validate(): Promise<string[]> {
    const problems: string[] = [];
    for (const device of this.#devices) {
      const r = await this.#sg(device, '--in', '--report-capabilities');
      if (r.exitCode !== 0) problems.push(`${device}: persistent reservations not available (sg_persist ${failureText(r)})`);
      else if (!supportsType5(r.stdout)) problems.push(`${device}: does not support reservation type 5 (${TYPE_5_NAME})`);
    }
    return problems;
  }

  /**
   * Executes a fencing decision: register our key, preempt-and-abort each named key that is
   * registered (aborting its outstanding I/O), and hold the type-5 reservation. Refuses to
   * finish while any key the arbiter did not name is registered, since under type 5 every
   * registrant can write. Returns the keys it preempted.
   */
  async fence(keys: readonly ReservationKey[]): Promise<ReservationKey[]> {
    const preempted = new Set<ReservationKey>();
    for (const device of this.#devices) {
      await this.#expect(`registering ${this.key} on ${device}`, this.#sg(device, '--out', '--register-ignore', `--param-sark=${this.key}`));
      for (const victim of (await this.readKeys(device)).filter((k) => keys.includes(k))) {
        await this.#expect(
          `preempting ${victim} on ${device}`,
          this.#sg(device, '--out', '--preempt-abort', `--param-rk=${this.key}`, `--param-sark=${victim}`, `--prout-type=${TYPE_5}`),
        );
        preempted.add(victim);
      }
      await this.#holdReservation(device);
      const others = (await this.readKeys(device)).filter((k) => k !== this.key);
      if (others.length > 0)
        throw new ResourceError(
          this.name,
          `${device}: keys the arbiter did not name are still registered (${others.join(', ')}); refusing to write alongside them`,
        );
    }
    return [...preempted];
  }

  async #holdReservation(device: string): Promise<void> {
    const held = await this.readReservation(device);
    if (held === null) {
      await this.#expect(`reserving ${device}`, this.#sg(device, '--out', '--reserve', `--param-rk=${this.key}`, `--prout-type=${TYPE_5}`));
    } else if (held.key !== this.key) {
      throw new ResourceError(this.name, `${device}: reservation held by ${held.key}, which the arbiter did not ask to preempt`);
    } else if (held.type !== TYPE_5_NAME) {
      throw new ResourceError(this.name, `${device}: our reservation has type "${held.type}", expected "${TYPE_5_NAME}"`);
    }
  }

  /** Checks that fencing has put us in place; never registers (that is fence's job alone). */
  async start(): Promise<void> {
    for (const device of this.#devices) {
      if (!(await this.readKeys(device)).includes(this.key)) {
        throw new ResourceError(this.name, `${device}: our key ${this.key} is not registered; fencing must run first`);
      }
      await this.#holdReservation(device);
    }
  }

  /** The reservation is kept on stop: the next holder preempts it. */
  async stop(): Promise<void> {
    this.ctx.log.debug({ resource: this.name }, 'reservation kept; the next holder preempts it');
  }

  /** Planned switchover: give up the reservation and unregister, so the peer need not preempt. */
  async release(): Promise<void> {
    for (const device of this.#devices) {
      const held = await this.readReservation(device);
      if (held?.key === this.key)
        await this.#expect(`releasing ${device}`, this.#sg(device, '--out', '--release', `--param-rk=${this.key}`, `--prout-type=${TYPE_5}`));
      if ((await this.readKeys(device)).includes(this.key)) {
        await this.#expect(`unregistering from ${device}`, this.#sg(device, '--out', '--register', `--param-rk=${this.key}`, '--param-sark=0'));
      }
    }
  }

  async monitor(): Promise<MonitorResult> {
    let registered = 0;
    for (const device of this.#devices) {
      if (!(await this.readKeys(device)).includes(this.key)) continue;
      registered++;
      const held = await this.readReservation(device);
      if (held?.key !== this.key)
        return { state: 'failed', reason: `${device}: registered but the reservation is ${held ? `held by ${held.key}` : 'not held'}` };
    }
    if (registered === this.#devices.length) return { state: 'running' };
    if (registered === 0) return { state: 'stopped' };
    return { state: 'failed', reason: `our key ${this.key} is registered on ${registered} of ${this.#devices.length} paths` };
  }

  /** Used while active: our key gone from any path means the peer fenced us. */
  async keyPresent(): Promise<boolean> {
    for (const device of this.#devices) if (!(await this.readKeys(device)).includes(this.key)) return false;
    return true;
  }
}
