/**
 * The volume group in LVM's system_id access mode (as LVM-activate's vg_access_mode=system_id):
 * the VG records its owner, and LVM refuses to activate a VG owned by another system ID. After
 * fencing, the new active takes ownership (`--systemid`, allowed to touch the old owner's VG
 * through extra_system_ids) and activates. Autoactivation must be off on both nodes.
 */
import { readdir } from 'node:fs/promises';
import { z } from 'zod';
import { expectExit } from '../executor.ts';
import { type MonitorResult, type Resource, type ResourceContext, ResourceError, TIMEOUT } from './resource.ts';
import { sysBlock } from './sysfs.ts';

/** A system ID as LVM prints it; it goes back into a command line, so it is checked first. */
const SystemId = z.string().regex(/^[A-Za-z0-9_.+-]{1,128}$/, 'unexpected characters in an LVM system ID');

/** The local system ID from `lvm systemid` ("  system ID: nodea"), or null if none is set. */
export function parseSystemId(stdout: string): string | null {
  const m = /system ID:[ \t]*(\S*)/.exec(stdout);
  if (!m) throw new Error(`unrecognised lvm systemid output: ${stdout.trim().slice(0, 200)}`);
  return m[1] ? SystemId.parse(m[1]) : null;
}

const report = <T extends z.ZodType>(key: string, row: T) =>
  z.object({ report: z.array(z.object({ [key]: z.array(row) })).length(1) }).transform((r) => r.report[0]![key] as z.infer<T>[]);

const VgsReport = report('vg', z.object({ vg_name: z.string(), vg_systemid: z.string() }).loose());
const AutoactivationReport = report('vg', z.object({ vg_name: z.string(), vg_autoactivation: z.string() }).loose());

/** Whether LVM autoactivates `vg` at boot ("enabled"; empty when off), or undefined if absent. */
export function parseAutoactivation(stdout: string, vg: string): boolean | undefined {
  const row = AutoactivationReport.parse(JSON.parse(stdout)).find((v) => v.vg_name === vg);
  return row ? row.vg_autoactivation === 'enabled' : undefined;
}

/** The owner (system ID) of `vg` from `vgs --foreign --reportformat json`, or undefined if absent. */
export function parseVgOwner(stdout: string, vg: string): string | null | undefined {
  const row = VgsReport.parse(JSON.parse(stdout)).find((v) => v.vg_name === vg);
  if (!row) return undefined;
  return row.vg_systemid ? SystemId.parse(row.vg_systemid) : null;
}

/** LVM's device-mapper name for `vg`/`lv`: each name with its hyphens doubled, joined by one. */
export function lvDeviceName(vg: string, lv: string): string {
  return `${vg.replaceAll('-', '--')}-${lv.replaceAll('-', '--')}`;
}

/** The device-mapper names of the LVM volumes active on this node. */
export type ActiveVolumes = () => Promise<string[]>;

/**
 * The real one, from sysfs under `root` (/sys/block/dm-N/dm/{name,uuid}; LVM's uuids start
 * with "LVM-"): the kernel's own table, as LVM-activate's monitor reads it with dmsetup. No LVM
 * command: those read every PV's label and metadata, and through a multipath map that has just
 * lost a path they wait seconds for the path to fail over — a monitor that timed out there read
 * as a stopped VG and restarted everything above it.
 */
export function sysfsActiveVolumes(root = '/'): ActiveVolumes {
  return async () => {
    const { dir, read } = sysBlock(root);
    const dms = (await readdir(dir)).filter((n) => /^dm-\d+$/.test(n));
    const devices = await Promise.all(dms.map(async (dm) => ({ name: await read(`${dm}/dm/name`), uuid: await read(`${dm}/dm/uuid`) })));
    return devices.filter((d) => d.uuid.startsWith('LVM-')).map((d) => d.name);
  };
}

export class VolumeGroup implements Resource {
  readonly name = 'volume-group' as const;
  readonly #vg: string;
  readonly #lv: string;

  constructor(
    private readonly ctx: ResourceContext,
    private readonly activeVolumes: ActiveVolumes = sysfsActiveVolumes(),
  ) {
    this.#vg = ctx.spec.storage.volumeGroup;
    this.#lv = ctx.spec.storage.logicalVolume;
  }

  /** This node's system ID, as prepare() read it: a takeover does not wait for `lvm systemid`. */
  #prepared: string | null = null;
  /**
   * The VG's owner when last read (prepare(), a takeover that had to) to be another than this
   * node: on a passive node the active peer's system ID, the owner at each of its takeovers
   * however often the two swap. A takeover names it without reading it again; should it be
   * wrong, LVM refuses the change, and the owner is read.
   */
  #otherOwner: string | null | undefined = undefined;

  async #localSystemId(): Promise<string | null> {
    return parseSystemId(expectExit(await this.ctx.exec.run({ argv: ['lvm', 'systemid'], timeoutMs: TIMEOUT.query })).stdout);
  }

  /**
   * Reads this node's system ID (from lvm.conf, which the installer sets; changing it means
   * restarting the agent) and the VG's owner ahead: each LVM command reads every PV's label. The
   * owner is for a later takeover, so the preparations after this one (nfs-server's, which a
   * takeover right after the agent's start waits for) do not wait for it.
   */
  async prepare(): Promise<void> {
    this.#prepared = await this.#localSystemId();
    this.#readOwnerAhead();
  }

  /** The peer's takeover made the VG the peer's: its owner is read again, ahead of this node's next takeover. */
  afterPeerTakeover(): void {
    this.#readOwnerAhead();
  }

  #readOwnerAhead(): void {
    this.#owner().then(
      (owner) => this.#noteOwner(owner, this.#prepared),
      (err: Error) => this.ctx.log.debug({ resource: this.name, err: err.message }, 'VG owner not read ahead; a takeover reads it'),
    );
  }

  #noteOwner(owner: string | null | undefined, local: string | null): void {
    if (owner !== undefined && owner !== local) this.#otherOwner = owner;
  }

  async #owner(): Promise<string | null | undefined> {
    const r = await this.ctx.exec.run({
      argv: ['vgs', '--foreign', '--reportformat', 'json', '-o', 'vg_name,vg_systemid', this.#vg],
      timeoutMs: TIMEOUT.query,
    });
    // vgs exits 5 when the named VG does not exist at all.
    if (r.exitCode === 5 && /not found/i.test(r.stderr)) return undefined;
    return parseVgOwner(expectExit(r, [0], `reading the owner of VG ${this.#vg}`).stdout, this.#vg);
  }

  async validate(): Promise<string[]> {
    const local = await this.#localSystemId();
    if (!local) return ['no LVM system ID is configured on this node: set system_id_source (e.g. "lvmlocal" with system_id) in lvm.conf/lvmlocal.conf'];
    if ((await this.#owner()) === undefined) return [`volume group ${this.#vg} is not visible on this node`];
    // The agent alone activates the VG, after fencing: a node booting (after a watchdog reset,
    // say) must not activate it on its own.
    const r = await this.ctx.exec.run({
      argv: ['vgs', '--foreign', '--reportformat', 'json', '-o', 'vg_name,vg_autoactivation', this.#vg],
      timeoutMs: TIMEOUT.query,
    });
    const autoactivated = parseAutoactivation(expectExit(r, [0], `reading the autoactivation of VG ${this.#vg}`).stdout, this.#vg);
    return autoactivated ? [`LVM autoactivation is on for volume group ${this.#vg}: turn it off with vgchange --setautoactivation n ${this.#vg}`] : [];
  }

  async start(): Promise<void> {
    const { epoch, confirmedEpoch } = this.ctx.fencing;
    if (epoch === 0 || confirmedEpoch !== epoch) {
      throw new ResourceError(this.name, `refusing to activate ${this.#vg}: fencing is not confirmed for epoch ${epoch}`);
    }
    const local = this.#prepared ?? (await this.#localSystemId());
    if (!local) throw new ResourceError(this.name, 'no LVM system ID is configured on this node');
    if (this.#otherOwner !== undefined && (await this.#activate(local, this.#otherOwner, false))) return;
    const owner = await this.#owner();
    if (owner === undefined) throw new ResourceError(this.name, `volume group ${this.#vg} not found`);
    this.#noteOwner(owner, local);
    await this.#activate(local, owner, true);
  }

  /**
   * Takes the VG over from `owner` unless it is this node's, then activates it. Not `strict`
   * (`owner` remembered, not read): false instead of an error when LVM refuses.
   */
  async #activate(local: string, owner: string | null, strict: boolean): Promise<boolean> {
    const run = async (argv: [string, ...string[]], what: string) => {
      const r = await this.ctx.exec.run({ argv, timeoutMs: TIMEOUT.change });
      if (strict) expectExit(r, [0], what);
      return r.exitCode === 0;
    };
    const config = `local/extra_system_ids=[${owner ? `"${owner}"` : ''}]`;
    if (
      owner !== local &&
      !(await run(['vgchange', '--config', config, '--systemid', local, this.#vg], `taking over VG ${this.#vg} from ${owner ?? 'no owner'}`))
    )
      return false;
    return run(['vgchange', '-ay', this.#vg], `activating VG ${this.#vg}`);
  }

  /**
   * One command when the VG is this node's own (a switchover's stop, which the clients wait
   * for). After a takeover the VG belongs to the new active, and LVM refuses a plain
   * `vgchange -an` of a foreign VG although its LVs may still be active here: only then is the
   * owner read and named as an extra system ID, to deactivate them locally (ownership stays
   * with it).
   */
  async stop(): Promise<void> {
    const plain = await this.ctx.exec.run({ argv: ['vgchange', '-an', this.#vg], timeoutMs: TIMEOUT.change });
    if (plain.exitCode === 0) return;
    const owner = await this.#owner();
    if (owner === undefined) return;
    const local = this.#prepared ?? (await this.#localSystemId());
    if (!owner || owner === local) expectExit(plain, [0], `deactivating VG ${this.#vg}`);
    expectExit(
      await this.ctx.exec.run({ argv: ['vgchange', '--config', `local/extra_system_ids=["${owner}"]`, '-an', this.#vg], timeoutMs: TIMEOUT.change }),
      [0],
      `deactivating VG ${this.#vg} (owned by ${owner})`,
    );
  }

  /** Active here means mapped by this node's kernel, whoever LVM's metadata says owns the VG. */
  async monitor(): Promise<MonitorResult> {
    return (await this.activeVolumes()).includes(lvDeviceName(this.#vg, this.#lv)) ? { state: 'running' } : { state: 'stopped' };
  }
}
