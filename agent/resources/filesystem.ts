/**
 * The shared filesystem, mounted by UUID. A busy unmount finds the processes using the mount
 * (fuser), stops them — SIGTERM, then SIGKILL — and tries again; if it still cannot unmount,
 * stop fails and the caller escalates to self-fencing. Lazy unmounts are never used: the VG
 * cannot be deactivated under a filesystem that is still in use.
 *
 * Stop touches only what this cluster mounted: a mount at the mount point whose UUID or source
 * is not the cluster's (a typo such as /run, or anything else an operator mounted there) is
 * never unmounted, and its users are never signalled.
 */
import { z } from 'zod';
import { expectExit } from '../executor.ts';
import { type MonitorResult, type Resource, type ResourceContext, ResourceError, TIMEOUT } from './resource.ts';

const FindmntJson = z.object({
  filesystems: z.array(z.object({ target: z.string(), source: z.string(), fstype: z.string(), options: z.string().optional() }).loose()),
});

export interface Mounted {
  target: string;
  source: string;
  fstype: string;
  uuid?: string | undefined;
}

/** The mount at the target from `findmnt -J`; null when nothing is mounted (exit 1, no output). */
export function parseFindmnt(stdout: string): Mounted | null {
  if (stdout.trim() === '') return null;
  const fs = FindmntJson.parse(JSON.parse(stdout)).filesystems[0];
  return fs ? { target: fs.target, source: fs.source, fstype: fs.fstype, uuid: (fs as { uuid?: string }).uuid } : null;
}

/** PIDs using a mount, from `fuser -m` stdout ("kernel  1341  1342": PIDs only, access letters go to stderr). */
export function parseFuserPids(stdout: string): number[] {
  return stdout
    .split(/\s+/)
    .map((t) => /^(\d+)[a-zA-Z]*$/.exec(t)?.[1])
    .filter((p): p is string => p !== undefined)
    .map(Number)
    .filter((p) => p > 1);
}

const UMOUNT_BUSY = 32;
const GRACE_MS = 2000;

export class Filesystem implements Resource {
  readonly name = 'filesystem' as const;

  constructor(
    private readonly ctx: ResourceContext,
    /** Sends a signal to a process; injectable so tests never signal real processes. */
    private readonly kill: (pid: number, signal: NodeJS.Signals) => void = (pid, signal) => process.kill(pid, signal),
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {}

  get #fs() {
    return this.ctx.spec.storage.filesystem;
  }

  async #mounted(): Promise<Mounted | null> {
    const r = await this.ctx.exec.run({ argv: ['findmnt', '-J', '-o', 'TARGET,SOURCE,FSTYPE,UUID', this.#fs.mountPoint], timeoutMs: TIMEOUT.query });
    if (r.exitCode === 1 && r.stdout.trim() === '') return null;
    return parseFindmnt(expectExit(r, [0], `checking the mount at ${this.#fs.mountPoint}`).stdout);
  }

  /** Whether a mount is the cluster's filesystem: its UUID, or the cluster's LV as its source. */
  #ours(m: Mounted): boolean {
    if (m.uuid) return m.uuid === this.#fs.uuid;
    const { volumeGroup: vg, logicalVolume: lv } = this.ctx.spec.storage;
    const dm = (name: string) => name.replaceAll('-', '--');
    return m.source === `/dev/mapper/${dm(vg)}-${dm(lv)}` || m.source === `/dev/${vg}/${lv}` || m.source === `UUID=${this.#fs.uuid}`;
  }

  async validate(): Promise<string[]> {
    const r = await this.ctx.exec.run({ argv: ['blkid', '--version'], timeoutMs: TIMEOUT.query });
    return r.exitCode === 0 ? [] : ['blkid (util-linux) is not available'];
  }

  async start(): Promise<void> {
    const m = await this.#mounted();
    if (m) {
      if (!this.#ours(m)) throw new ResourceError(this.name, `${this.#fs.mountPoint} has another filesystem mounted (${m.source}${m.uuid ? `, UUID ${m.uuid}` : ''})`);
      return;
    }
    // X-mount.mkdir: mount(8) makes the mount point if it is missing (a takeover pays for every process it starts).
    const options = ['X-mount.mkdir', ...this.#fs.options].join(',');
    expectExit(
      await this.ctx.exec.run({ argv: ['mount', '-t', this.#fs.type, '-o', options, `UUID=${this.#fs.uuid}`, this.#fs.mountPoint], timeoutMs: TIMEOUT.change }),
      [0],
      `mounting ${this.#fs.uuid} on ${this.#fs.mountPoint}`,
    );
  }

  async stop(): Promise<void> {
    for (const signal of [null, 'SIGTERM', 'SIGKILL'] as const) {
      const m = await this.#mounted();
      if (!m) return;
      if (!this.#ours(m)) {
        this.ctx.log.warn(
          { resource: this.name, source: m.source, uuid: m.uuid },
          `${this.#fs.mountPoint} holds ${m.source}, not this cluster's filesystem: left alone`,
        );
        return;
      }
      if (signal) await this.#stopUsers(signal);
      const r = await this.ctx.exec.run({ argv: ['umount', this.#fs.mountPoint], timeoutMs: TIMEOUT.change });
      if (r.exitCode === 0) return;
      if (r.exitCode !== UMOUNT_BUSY) expectExit(r, [0], `unmounting ${this.#fs.mountPoint}`);
    }
    throw new ResourceError(this.name, `${this.#fs.mountPoint} is still busy after SIGKILL to its users`);
  }

  async #stopUsers(signal: NodeJS.Signals): Promise<void> {
    const r = await this.ctx.exec.run({ argv: ['fuser', '-m', this.#fs.mountPoint], timeoutMs: TIMEOUT.query });
    const pids = parseFuserPids(r.stdout).filter((p) => p !== process.pid);
    this.ctx.log.warn({ resource: this.name, pids, signal }, `${this.#fs.mountPoint} is busy: sending ${signal} to ${pids.length} process(es)`);
    for (const pid of pids) {
      try {
        this.kill(pid, signal);
      } catch {
        // Already gone.
      }
    }
    await this.sleep(GRACE_MS);
  }

  async monitor(): Promise<MonitorResult> {
    const m = await this.#mounted();
    if (!m) return { state: 'stopped' };
    if (!this.#ours(m)) return { state: 'failed', reason: `${this.#fs.mountPoint} holds ${m.source}${m.uuid ? ` (UUID ${m.uuid})` : ''}, not ${this.#fs.uuid}` };
    if (m.fstype !== this.#fs.type) return { state: 'failed', reason: `${this.#fs.mountPoint} is mounted as ${m.fstype}, expected ${this.#fs.type}` };
    return { state: 'running' };
  }
}
