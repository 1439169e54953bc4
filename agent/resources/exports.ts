/**
 * NFS exports, one `exportfs -o` per (path, client) with the spec's options and its fixed fsid,
 * identical on both nodes so clients' file handles stay valid across a failover. The live
 * export table (`exportfs -v`) is the truth: exportfs exits 1 for a path it cannot stat yet
 * still adds the entry, so every start is verified against the table and a failed entry is
 * removed again.
 */
import { expectExit, failureText } from '../executor.ts';
import { type MonitorResult, type Resource, type ResourceContext, ResourceError, TIMEOUT } from './resource.ts';

export interface ExportEntry {
  path: string;
  client: string;
  options: string[];
}

/**
 * Entries of `exportfs -v`. A long path is printed on its own line with the client on the next;
 * a short one shares the line: both are a path token followed by `client(options)` tokens.
 */
export function parseExportfs(stdout: string): ExportEntry[] {
  const entries: ExportEntry[] = [];
  let path: string | null = null;
  for (const token of stdout.split(/\s+/).filter(Boolean)) {
    const m = /^(.+?)\((.*)\)$/.exec(token);
    if (m && path !== null) entries.push({ path, client: m[1]!, options: m[2]!.split(',') });
    else if (token.startsWith('/')) path = token;
    else throw new Error(`unrecognised exportfs -v output near "${token}"`);
  }
  return entries;
}

/** exportfs's exit status when it could not do what it was asked for one of its arguments. */
const EXPORTFS_FAILED = 1;

interface Wanted {
  path: string;
  client: string;
  options: string[];
  fsid: number;
}

export class Exports implements Resource {
  readonly name = 'exports' as const;
  /** exportfs keeps its table in /var/lib/nfs/etab: after a crash it lists what no server exports. */
  readonly inEffectOnlyWith = 'nfs-server' as const;
  readonly #wanted: Wanted[];

  constructor(private readonly ctx: ResourceContext) {
    this.#wanted = ctx.spec.nfs.exports.flatMap((e) => e.clients.map((c) => ({ path: e.path, client: c.host, options: c.options, fsid: e.fsid })));
  }

  async #table(): Promise<ExportEntry[]> {
    const r = expectExit(await this.ctx.exec.run({ argv: ['exportfs', '-v'], timeoutMs: TIMEOUT.query }), [0], 'reading the export table');
    return parseExportfs(r.stdout);
  }

  #present(table: ExportEntry[], w: Wanted): boolean {
    return table.some((e) => e.path === w.path && e.client === w.client && e.options.includes(`fsid=${w.fsid}`));
  }

  async validate(): Promise<string[]> {
    const r = await this.ctx.exec.run({ argv: ['exportfs', '-v'], timeoutMs: TIMEOUT.query });
    return r.exitCode === 0 ? [] : [`exportfs is not usable: it ${failureText(r)}`];
  }

  async start(): Promise<void> {
    const before = await this.#table();
    const failed: string[] = [];
    for (const w of this.#wanted.filter((w) => !this.#present(before, w))) {
      const r = await this.ctx.exec.run({
        argv: ['exportfs', '-o', [...w.options, `fsid=${w.fsid}`].join(','), `${w.client}:${w.path}`],
        timeoutMs: TIMEOUT.change,
      });
      if (r.exitCode !== 0) failed.push(`${w.client}:${w.path} (${(r.stderr || r.stdout).trim() || `exit ${r.exitCode}`})`);
    }
    const after = await this.#table();
    const missing = this.#wanted.filter((w) => !this.#present(after, w));
    if (failed.length > 0 || missing.length > 0) {
      // A failed export may still sit in the table; leave nothing half-exported behind.
      await this.stop();
      throw new ResourceError(this.name, `could not export ${[...failed, ...missing.map((w) => `${w.client}:${w.path}`)].join(', ')}`);
    }
  }

  /**
   * An `exportfs -u` per entry, no table read before them: a switchover's clients wait from the
   * first stop step on. exportfs names an entry it did not find (exit 1): not exported, done.
   */
  async stop(): Promise<void> {
    for (const { client, path } of this.#wanted) {
      const entry = `${client}:${path}`;
      const r = await this.ctx.exec.run({ argv: ['exportfs', '-u', entry], timeoutMs: TIMEOUT.change });
      if (r.exitCode === EXPORTFS_FAILED && r.stderr.includes(`Could not find '${entry}' to unexport`)) continue;
      expectExit(r, [0], `unexporting ${entry}`);
    }
  }

  async monitor(): Promise<MonitorResult> {
    const table = await this.#table();
    const present = this.#wanted.filter((w) => this.#present(table, w)).length;
    if (present === this.#wanted.length) return { state: 'running' };
    if (present === 0) return { state: 'stopped' };
    const missing = this.#wanted.filter((w) => !this.#present(table, w)).map((w) => `${w.client}:${w.path}`);
    return { state: 'failed', reason: `missing from the export table: ${missing.join(', ')}` };
  }
}
