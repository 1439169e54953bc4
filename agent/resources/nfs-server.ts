/**
 * The kernel NFS server, run by systemd's nfs-server unit, with the state clients need to
 * reclaim after a failover kept on the shared filesystem: the client-tracking database
 * (nfsdcld, v4recovery) and the NFSv3 lock-monitor lists (sm, sm.bak) are bind-mounted from
 * the spec's stateDir into /var/lib/nfs. Only those: binding over all of /var/lib/nfs would
 * hide the rpc_pipefs mount that idmapd and gssd use.
 *
 * Server scope. NFSv4.1+ clients reclaim state after a failover only if both servers present
 * the same server scope (RFC 8881, 8.4.2.1). Linux's nfsd takes it from the UTS hostname of
 * the process that starts it, and Debian 12's nfs-utils has no setting for it; so a runtime
 * systemd drop-in starts rpc.nfsd in a UTS namespace named after the spec's scope. The drop-in's
 * script is a constant; the validated scope reaches it as an argument.
 *
 * nfsdcld's database is switched to SQLite's WAL mode once (see #walJournal).
 *
 * Grace and lease times go to /etc/nfs.conf.d. After starting, sm-notify (as a transient unit,
 * so stop can end it) tells NFSv3 clients to reclaim their locks, sent from the VIP's name.
 * Stop ends everything that keeps the bound directories open (nfsdcld, rpc.statd, sm-notify)
 * before unbinding them.
 */
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { expectExit } from '../executor.ts';
import { type MonitorResult, type Resource, type ResourceContext, TIMEOUT } from './resource.ts';

export const NFS_STATE_DIRS = ['nfsdcld', 'v4recovery', 'sm', 'sm.bak'] as const;
export const NFS_CONF = '/etc/nfs.conf.d/nfs-ha.conf';
export const SCOPE_DROPIN = '/run/systemd/system/nfs-server.service.d/50-nfs-ha-server-scope.conf';
export const SM_NOTIFY_UNIT = 'nfs-ha-sm-notify';
/** What nfs-server requires that holds no state: started ahead by prepare(). */
const PREPARED_UNITS = ['proc-fs-nfsd.mount', 'rpc_pipefs.target'];
const RPCBIND_UNIT = 'rpcbind.service';
const VAR_LIB_NFS = '/var/lib/nfs';
const RPC_NFSD = '/usr/sbin/rpc.nfsd';
/** nfsdcld's client-tracking database (its default storagedir), in the bound state directory. */
export const NFSDCLD_DB = `${VAR_LIB_NFS}/nfsdcld/main.sqlite`;
const NFSD_THREADS = '/proc/fs/nfsd/threads';
const NFSD_END_GRACE = '/proc/fs/nfsd/v4_end_grace';
export const GRACE_DETAIL = 'in its NFSv4 grace period: clients reclaim their state; new opens and locks wait';
/** Exit status of `systemctl stop` for a unit that is not loaded. */
const UNIT_NOT_LOADED = 5;

/** The nfs.conf fragment for a spec: the [nfsd] settings both nodes must share. */
export function nfsConf(spec: ResourceContext['spec']): string {
  return [
    '# Written by nfs-ha; both nodes carry the same values. Do not edit: the next start rewrites it.',
    '[nfsd]',
    `grace-time=${spec.nfs.gracePeriodS}`,
    `lease-time=${spec.nfs.leaseTimeS}`,
    '',
  ].join('\n');
}

/** The drop-in that starts nfsd under the shared server scope. */
export function scopeDropIn(scope: string): string {
  return [
    '# Written by nfs-ha: nfsd takes its NFSv4 server scope from the hostname it starts under,',
    '# so both nodes start it in a UTS namespace named after the same scope.',
    '[Service]',
    'ExecStart=',
    // "$$" is systemd's escape for a literal "$": the shell receives $0 (the scope) and $@.
    `ExecStart=/usr/bin/unshare --uts /bin/sh -c 'hostname "$$0" && exec "$$@"' ${scope} ${RPC_NFSD}`,
    '',
  ].join('\n');
}

/** How a SQLite database keeps its journal. */
export type JournalMode = 'wal' | 'rollback' | 'absent';
export type ReadJournalMode = (path: string) => Promise<JournalMode>;

/**
 * From the database file's header, no process: its bytes 18 and 19 (the file format's write and
 * read versions) are 2 in WAL mode and 1 with a rollback journal (sqlite.org/fileformat2.html).
 */
export const sqliteJournalMode: ReadJournalMode = async (path) => {
  let file;
  try {
    file = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw err;
  }
  try {
    const { buffer, bytesRead } = await file.read(Buffer.alloc(20), 0, 20, 0);
    return bytesRead === 20 && buffer[18] === 2 && buffer[19] === 2 ? 'wal' : 'rollback';
  } finally {
    await file.close();
  }
};

export class NfsServer implements Resource {
  readonly name = 'nfs-server' as const;
  /** The files written ahead by prepare(), while it runs: start() waits for it (one writer at a time). */
  #preparing: Promise<void> | null = null;

  constructor(
    private readonly ctx: ResourceContext,
    private readonly journalMode: ReadJournalMode = sqliteJournalMode,
  ) {}

  #run(argv: [string, ...string[]], timeoutMs: number = TIMEOUT.change, input?: string) {
    return this.ctx.exec.run({ argv, timeoutMs, ...(input !== undefined && { input }) });
  }

  /**
   * Which of the state directories' targets in /var/lib/nfs are mount points: one findmnt for
   * all four (a takeover pays for every process it starts). Raw output (-r) escapes blanks, and
   * these paths have none.
   */
  async #boundTargets(): Promise<Set<string>> {
    const r = expectExit(await this.#run(['findmnt', '-rn', '-o', 'TARGET'], TIMEOUT.query), [0], 'listing mount points');
    const mounted = new Set(r.stdout.split('\n'));
    return new Set(NFS_STATE_DIRS.map((d) => `${VAR_LIB_NFS}/${d}`).filter((t) => mounted.has(t)));
  }

  /** Writes a file only if its content differs; reports whether it did. */
  async #ensureFile(path: string, content: string): Promise<boolean> {
    const current = await this.#run(['cat', path], TIMEOUT.query);
    if (current.exitCode === 0 && current.stdout === content) return false;
    // tee, not `install /dev/stdin`: the executor's stdin is a socket pair, which /dev/stdin cannot open (ENXIO).
    expectExit(await this.#run(['mkdir', '-p', dirname(path)], TIMEOUT.query), [0], `creating ${dirname(path)}`);
    expectExit(await this.#run(['tee', path], TIMEOUT.query, content), [0], `writing ${path}`);
    return true;
  }

  async validate(): Promise<string[]> {
    const problems: string[] = [];
    const r = await this.#run(['systemctl', 'is-enabled', 'nfs-server'], TIMEOUT.query);
    const state = r.stdout.trim();
    if (r.exitCode === 0 && state === 'enabled')
      problems.push('nfs-server is enabled at boot; nfs-ha starts it on the active node only: run `systemctl disable nfs-server`');
    else if (state === '' || /not-found|No such file/i.test(r.stderr)) problems.push('the nfs-server unit is not installed (Debian package nfs-kernel-server)');
    // sm-notify -v takes an address only if it resolves back to a name ("my_name '…' is unusable"),
    // and otherwise notifies nobody: NFSv3 clients would never reclaim their locks after a takeover.
    const vip = this.ctx.spec.vip.address;
    const name = await this.#run(['getent', 'hosts', vip], TIMEOUT.query);
    if (name.exitCode !== 0 || name.stdout.trim() === '')
      problems.push(
        `the VIP ${vip} has no host name here (\`getent hosts ${vip}\` finds none), and sm-notify refuses to send NFSv3 clients their lock-recovery notice from a nameless address: add "${vip} <its name>" to /etc/hosts on both nodes (or a PTR record)`,
      );
    return problems;
  }

  /** The nfs.conf fragment and the scope drop-in; systemd reloaded if the drop-in changed. */
  async #configure(): Promise<void> {
    await this.#ensureFile(NFS_CONF, nfsConf(this.ctx.spec));
    if (await this.#ensureFile(SCOPE_DROPIN, scopeDropIn(this.ctx.spec.nfs.serverScope))) {
      expectExit(await this.#run(['systemctl', 'daemon-reload'], TIMEOUT.service), [0], 'reloading systemd units');
    }
  }

  /**
   * The settings and the drop-in, in place before a takeover needs them: the drop-in lives in
   * /run, so a node that has not served since it booted would otherwise write it and reload
   * systemd during its takeover (5.7 s of the lab's 9 s nfs-server start under TCG). Then what
   * nfs-server pulls in that holds no state: nfsd's kernel module with its control filesystem,
   * the RPC pipe filesystem and rpcbind — on a node that has not served since it booted, loading
   * them held the lab's `systemctl start nfs-server` 5.6 s against 3.3 s. Nothing here reads or
   * writes the shared state, and no nfsd thread starts: knfsd's grace period and its client
   * tracking (nfsdcld) begin with the threads, after the state is bound in place.
   */
  prepare(): Promise<void> {
    this.#preparing ??= (async () => {
      await this.#configure();
      expectExit(await this.#run(['systemctl', 'start', ...PREPARED_UNITS], TIMEOUT.service), [0], 'loading nfsd and its filesystems');
      // nfs-server only wants rpcbind: a node that masks it (NFSv4 only) serves without it.
      await this.#run(['systemctl', 'start', RPCBIND_UNIT], TIMEOUT.service);
    })().finally(() => (this.#preparing = null));
    return this.#preparing;
  }

  async start(): Promise<void> {
    await this.#preparing?.catch(() => {});
    const stateDir = this.ctx.spec.nfs.stateDir;
    const binds = NFS_STATE_DIRS.map((dir) => ({ source: `${stateDir}/${dir}`, target: `${VAR_LIB_NFS}/${dir}` }));
    expectExit(await this.#run(['mkdir', '-p', ...binds.flatMap((b) => [b.source, b.target])], TIMEOUT.query));
    const bound = await this.#boundTargets();
    for (const { source, target } of binds) {
      if (!bound.has(target)) expectExit(await this.#run(['mount', '--bind', source, target]), [0], `binding ${source} onto ${target}`);
    }
    await this.#walJournal();
    // Normally in place already (prepare(), or an earlier start): a takeover rarely pays for the reload.
    await this.#configure();
    expectExit(await this.#run(['systemctl', 'start', 'nfs-server'], TIMEOUT.service), [0], 'starting nfs-server');
    // Lock recovery for NFSv3 clients; nothing to wait for, it retries on its own. --no-block: the
    // unit is queued, not waited for (0.4–1 s of a takeover in the lab).
    await this.#run(['systemd-run', '--no-block', '--collect', '--unit', SM_NOTIFY_UNIT, 'sm-notify', '-d', '-f', '-v', this.ctx.spec.vip.address], TIMEOUT.query);
  }

  /**
   * nfsdcld keeps its client records in SQLite and leaves the database in SQLite's default
   * rollback-journal mode, where each transaction flushes the disk about three times (journal,
   * database, directory). A failover waits for three transactions: the grace period's start,
   * within nfs-server's start, then, on the clients' clock, the record each reclaiming client's
   * RECLAIM_COMPLETE writes and the grace period's end, which that answer waits for. On the lab's
   * shared disk a transaction took 50–690 ms, against 8–32 ms in WAL mode, where a commit is one
   * flush of the log and as durable (synchronous=FULL, the default of Debian's SQLite in WAL mode
   * too). The mode is kept in the database file: set once, here, while no nfsdcld runs. A
   * database not there yet is created in it (nfsdcld sets up its tables in an empty one). Without
   * sqlite3 the start goes on, in the slower mode, and says so.
   */
  async #walJournal(): Promise<void> {
    if ((await this.journalMode(NFSDCLD_DB).catch(() => 'rollback')) === 'wal') return;
    const r = await this.#run(['sqlite3', NFSDCLD_DB, 'PRAGMA journal_mode=WAL;'], TIMEOUT.query);
    if (r.exitCode === 0 && r.stdout.trim() === 'wal') {
      this.ctx.log.info({ resource: this.name, database: NFSDCLD_DB }, "nfsdcld's client-tracking database switched to SQLite's WAL mode");
      return;
    }
    this.ctx.log.warn(
      { resource: this.name, database: NFSDCLD_DB, exitCode: r.exitCode, stdout: r.stdout.trim(), stderr: r.stderr.trim().slice(0, 500) },
      "nfsdcld's client-tracking database stays in rollback-journal mode, which makes a failover's NFSv4 recovery slower: is sqlite3 installed (Debian package sqlite3)?",
    );
  }

  async stop(): Promise<void> {
    // One systemctl for all (each costs a process and a round trip to PID 1, most of a second
    // under emulation): it stops every unit it knows and waits for their jobs; a job that failed
    // makes it exit 1, a unit it does not know 5 — sm-notify's, once it ran to its end and was
    // collected (nfs-server's own is there: validate checks).
    expectExit(
      await this.#run(['systemctl', 'stop', SM_NOTIFY_UNIT, 'nfs-server', 'nfsdcld', 'rpc-statd'], TIMEOUT.service),
      [0, UNIT_NOT_LOADED],
      'stopping nfs-server',
    );
    // One umount for all of them, in the reverse order of their binding.
    const bound = [...(await this.#boundTargets())].reverse();
    if (bound.length > 0) expectExit(await this.#run(['umount', ...bound]), [0], `unmounting ${bound.join(', ')}`);
  }

  async monitor(): Promise<MonitorResult> {
    // The kernel threads are the server itself: while they run, it serves, and one read of a
    // /proc file says so. systemctl (a round trip to PID 1, on every pass the costliest of the
    // monitor's commands) is asked only when they do not: the oneshot unit stays "active" after
    // rpc.nfsd returns, so threads gone (rpc.nfsd 0, a crash) under an active unit are a failure.
    // The same read says whether the NFSv4 grace period is still on (v4_end_grace reads N):
    // clients reclaim their state, and new opens and locks wait until it ends.
    const threads = await this.#run(['cat', NFSD_THREADS, NFSD_END_GRACE], TIMEOUT.query);
    const [threadLine = '', graceLine] = threads.stdout.split('\n');
    const count = Number.parseInt(threadLine.trim(), 10);
    if (count > 0) return graceLine?.trim() === 'N' ? { state: 'running', detail: GRACE_DETAIL } : { state: 'running' };
    const r = await this.#run(['systemctl', 'is-active', 'nfs-server'], TIMEOUT.query);
    const state = r.stdout.trim();
    if (state === 'inactive') return { state: 'stopped' };
    if (r.exitCode === 0)
      return {
        state: 'failed',
        reason: `nfs-server is active but nfsd runs ${Number.isNaN(count) ? 'no threads (/proc/fs/nfsd not readable)' : `${count} threads`}`,
      };
    return { state: 'failed', reason: `nfs-server is ${state || `in an unknown state (exit ${r.exitCode})`}` };
  }
}
