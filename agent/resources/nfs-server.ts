/**
 * The kernel NFS server, run by systemd's nfs-server unit, with the state clients need to
 * reclaim after a failover kept on the shared filesystem: the client-tracking database
 * (nfsdcld, v4recovery) and the NFSv3 lock-monitor lists (sm, sm.bak) are bind-mounted from
 * the spec's stateDir into /var/lib/nfs. Only those: binding over all of /var/lib/nfs would
 * hide the rpc_pipefs mount that idmapd and gssd use. Grace and lease times and the server
 * scope (identical on both nodes) go into /etc/nfs.conf.d. After starting, sm-notify tells
 * NFSv3 clients to reclaim their locks, sent from the VIP's name.
 */
import { expectExit } from '../executor.ts';
import { type MonitorResult, type Resource, type ResourceContext, TIMEOUT } from './resource.ts';

export const NFS_STATE_DIRS = ['nfsdcld', 'v4recovery', 'sm', 'sm.bak'] as const;
export const NFS_CONF = '/etc/nfs.conf.d/nfs-ha.conf';
const VAR_LIB_NFS = '/var/lib/nfs';

/** The nfs.conf fragment for a spec: the [nfsd] settings both nodes must share. */
export function nfsConf(spec: ResourceContext['spec']): string {
  return [
    '# Written by nfs-ha; both nodes carry the same values. Do not edit: the next start rewrites it.',
    '[nfsd]',
    `scope=${spec.nfs.serverScope}`,
    `grace-time=${spec.nfs.gracePeriodS}`,
    `lease-time=${spec.nfs.leaseTimeS}`,
    '',
  ].join('\n');
}

export class NfsServer implements Resource {
  readonly name = 'nfs-server' as const;

  constructor(private readonly ctx: ResourceContext) {}

  #run(argv: [string, ...string[]], timeoutMs: number = TIMEOUT.change, input?: string) {
    return this.ctx.exec.run({ argv, timeoutMs, ...(input !== undefined && { input }) });
  }

  async #isMountPoint(path: string): Promise<boolean> {
    const r = await this.#run(['findmnt', '-n', '-o', 'TARGET', path], TIMEOUT.query);
    return r.exitCode === 0 && r.stdout.trim() === path;
  }

  async validate(): Promise<string[]> {
    const r = await this.#run(['systemctl', 'is-enabled', 'nfs-server'], TIMEOUT.query);
    const state = r.stdout.trim();
    if (r.exitCode === 0 && state === 'enabled')
      return ['nfs-server is enabled at boot; nfs-ha starts it on the active node only: run `systemctl disable nfs-server`'];
    if (state === '' || /not-found|No such file/i.test(r.stderr)) return ['the nfs-server unit is not installed (Debian package nfs-kernel-server)'];
    return [];
  }

  async start(): Promise<void> {
    const stateDir = this.ctx.spec.nfs.stateDir;
    for (const dir of NFS_STATE_DIRS) {
      const source = `${stateDir}/${dir}`;
      const target = `${VAR_LIB_NFS}/${dir}`;
      expectExit(await this.#run(['mkdir', '-p', source, target], TIMEOUT.query));
      if (!(await this.#isMountPoint(target))) expectExit(await this.#run(['mount', '--bind', source, target]), [0], `binding ${source} onto ${target}`);
    }
    expectExit(await this.#run(['install', '-D', '-m', '0644', '/dev/stdin', NFS_CONF], TIMEOUT.query, nfsConf(this.ctx.spec)), [0], `writing ${NFS_CONF}`);
    expectExit(await this.#run(['systemctl', 'start', 'nfs-server'], TIMEOUT.service), [0], 'starting nfs-server');
    // Lock recovery for NFSv3 clients; nothing to wait for, it retries on its own.
    await this.#run(['sm-notify', '-f', '-v', this.ctx.spec.vip.address], TIMEOUT.query);
  }

  async stop(): Promise<void> {
    expectExit(await this.#run(['systemctl', 'stop', 'nfs-server'], TIMEOUT.service), [0], 'stopping nfs-server');
    for (const dir of [...NFS_STATE_DIRS].reverse()) {
      const target = `${VAR_LIB_NFS}/${dir}`;
      if (await this.#isMountPoint(target)) expectExit(await this.#run(['umount', target]), [0], `unmounting ${target}`);
    }
  }

  async monitor(): Promise<MonitorResult> {
    const r = await this.#run(['systemctl', 'is-active', 'nfs-server'], TIMEOUT.query);
    const state = r.stdout.trim();
    if (r.exitCode === 0) return { state: 'running' };
    if (state === 'inactive') return { state: 'stopped' };
    return { state: 'failed', reason: `nfs-server is ${state || `in an unknown state (exit ${r.exitCode})`}` };
  }
}
