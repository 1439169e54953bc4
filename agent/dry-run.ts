/**
 * `--dry-run`: the exact commands this node would run, in order, without running any.
 *
 * Some commands are queries whose answers choose the next step, so the dry run answers them as
 * a node in a stated situation would, and follows what its own commands change:
 * - start: a takeover — this node holds nothing; its peer held everything (its key registered
 *   and holding the reservation, the VG owned by the peer's LVM system ID, named here after
 *   the peer's node id).
 * - stop: this node holds everything and stops it.
 * In both, its agent has run since the node booted: what prepare() readies is in place (the NFS
 * server's settings and drop-in), as on a node whose takeover or stop this shows; a start's dry
 * run lists prepare()'s own commands apart. The cluster has served before: nfsdcld's database is
 * in WAL mode already (the first start's one `sqlite3` command is not shown).
 * This is a model for display, used by nothing else.
 */
import { reservationKey } from '../shared/reservation-key.ts';
import type { ClusterSpec } from '../shared/spec.ts';
import type { CommandResult, Responder } from './executor.ts';
import { NFS_CONF, NFS_STATE_DIRS, nfsConf, type ReadJournalMode, SCOPE_DROPIN, scopeDropIn } from './resources/nfs-server.ts';

/** nfsdcld's database as the dry run's situation has it: switched to WAL mode by an earlier start. */
export const DRY_RUN_JOURNAL_MODE: ReadJournalMode = async () => 'wal';

type Answer = Partial<Pick<CommandResult, 'exitCode' | 'stdout' | 'stderr'>>;

export function dryRunNode(spec: ClusterSpec, nodeId: string, situation: 'start' | 'stop'): Responder {
  const own = reservationKey(spec.id, nodeId);
  const peerId = spec.nodes.find((n) => n.id !== nodeId)!.id;
  const holding = situation === 'stop';
  let keys = holding ? [own] : [reservationKey(spec.id, peerId)];
  let holder: string | null = keys[0]!;
  let vgOwner = holding ? nodeId : peerId;
  let mounted = holding;
  let exported = holding;
  let vip = holding;
  const { volumeGroup: vg, logicalVolume: lv, filesystem } = spec.storage;

  const prepared = new Map([
    [NFS_CONF, nfsConf(spec)],
    [SCOPE_DROPIN, scopeDropIn(spec.nfs.serverScope)],
  ]);
  const table = () =>
    spec.nfs.exports.flatMap((e) => e.clients.map((c) => `${e.path}\n\t\t${c.host}(${[...c.options, `fsid=${e.fsid}`].join(',')})`)).join('\n');

  return (argv): Answer => {
    const [cmd, ...args] = argv;
    const line = args.join(' ');
    switch (cmd) {
      case 'sg_persist':
        if (line.includes('--register-ignore')) keys = [...new Set([...keys, own])];
        if (line.includes('--preempt-abort')) {
          const victim = /--param-sark=(\S+)/.exec(line)![1]!;
          keys = keys.filter((k) => k !== victim);
          if (holder === victim) holder = own;
        }
        if (line.includes('--reserve')) holder = own;
        if (line.includes('--read-keys')) {
          return {
            stdout: keys.length
              ? `  PR generation=0x1, ${keys.length} registered reservation keys follow:\n${keys.map((k) => `    ${k}\n`).join('')}`
              : '  PR generation=0x0, there are NO registered reservation keys\n',
          };
        }
        if (line.includes('--read-reservation')) {
          return {
            stdout: holder
              ? `  PR generation=0x1, Reservation follows:\n    Key=${holder}\n    scope: LU_SCOPE,  type: Write Exclusive, registrants only\n`
              : '  PR generation=0x0, there is NO reservation held\n',
          };
        }
        if (line.includes('--report-capabilities')) return { stdout: '      Write Exclusive, registrants only: 1\n' };
        return {};
      case 'lvm':
        return { stdout: `  system ID: ${nodeId}\n` };
      case 'vgs':
        return { stdout: JSON.stringify({ report: [{ vg: [{ vg_name: vg, vg_systemid: vgOwner }] }] }) };
      case 'vgchange':
        if (args.includes('--systemid')) vgOwner = nodeId;
        return {};
      case 'findmnt':
        if (args.at(-1) === filesystem.mountPoint && mounted) {
          return {
            stdout: JSON.stringify({
              filesystems: [{ target: filesystem.mountPoint, source: `/dev/mapper/${vg}-${lv}`, fstype: filesystem.type, uuid: filesystem.uuid }],
            }),
          };
        }
        // Every mount point (findmnt -rn -o TARGET): the reclaim state's binds while holding.
        if (args[0] === '-rn') return { stdout: ['/', '/run', ...(holding ? NFS_STATE_DIRS.map((d) => `/var/lib/nfs/${d}`) : [])].join('\n') + '\n' };
        return { exitCode: 1 };
      case 'mount':
        mounted = true;
        return {};
      case 'umount':
        if (args[0] === filesystem.mountPoint) mounted = false;
        return {};
      case 'systemctl':
        return args[0] === 'is-active' ? { exitCode: holding ? 0 : 3, stdout: holding ? 'active\n' : 'inactive\n' } : {};
      case 'exportfs':
        if (args[0] === '-o') exported = true;
        if (args[0] === '-u') {
          if (!exported) return { exitCode: 1, stderr: `exportfs: Could not find '${args[1]}' to unexport.\n` };
          exported = false;
        }
        return args[0] === '-v' ? { stdout: exported ? table() : '' } : {};
      case 'ip':
        if (args[0] === 'addr' && args[1] === 'add') vip = true;
        if (args[0] === 'addr' && args[1] === 'del') {
          if (!vip) return { exitCode: 2, stderr: 'RTNETLINK answers: Cannot assign requested address\n' };
          vip = false;
        }
        return args[0] === '-j'
          ? {
              stdout: JSON.stringify([
                { ifname: args.at(-1), addr_info: vip ? [{ family: 'inet', local: spec.vip.address, prefixlen: spec.vip.prefix }] : [] },
              ]),
            }
          : {};
      case 'cat': {
        const text = args.length === 1 ? prepared.get(args[0]!) : undefined;
        return text === undefined ? { exitCode: 1, stderr: `cat: ${line}: No such file or directory\n` } : { stdout: text };
      }
      case 'arping':
        // -0: nobody answers for the VIP; -U: nobody replies to a gratuitous ARP.
        return { exitCode: 1 };
      default:
        return {};
    }
  };
}
