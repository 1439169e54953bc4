/**
 * The cluster spec: what the operator declares once and both agents execute.
 * Everything that must be identical on the two nodes (export fsids, the NFS server scope, the
 * VIP) is a single field here, so it cannot drift apart.
 */
import { z } from 'zod';
import {
  AbsolutePath,
  ClusterId,
  DevicePath,
  FilesystemUuid,
  HostName,
  InterfaceName,
  Ipv4Address,
  ipv4ToInt,
  LogicalVolumeName,
  MountOption,
  NfsClientSpec,
  NfsExportOption,
  NodeId,
  VolumeGroupName,
} from './names.ts';
import { reservationKey } from './reservation-key.ts';
import { TimingSchema } from './timing.ts';

export const NodeSpecSchema = z
  .object({
    id: NodeId,
    address: HostName.describe('Address the peer agent and operators reach this node on'),
    peerPort: z.number().int().min(1).max(65535).default(7411).describe("Port of the agent's peer channel"),
    vipInterface: InterfaceName.describe('Interface the VIP is added to on this node'),
    devices: z
      .array(DevicePath)
      .min(1)
      .max(16)
      .optional()
      .describe("This node's paths to the shared devices, when they differ from storage.devices (e.g. by-path names)"),
  })
  .strict();
export type NodeSpec = z.output<typeof NodeSpecSchema>;

/**
 * Options that are legal but break a promise, so a spec must say it means them:
 * `async` acknowledges writes before they reach the disk (a failover loses them);
 * `no_root_squash` and a client of `*` give root on any client — or any host at all — the
 * files as root.
 */
export const ACKNOWLEDGEABLE = ['async', 'no_root_squash', 'any-host'] as const;

export const ExportClientSchema = z
  .object({
    host: NfsClientSpec,
    options: z.array(NfsExportOption).max(32).default(['rw', 'sync', 'no_subtree_check']),
    acknowledge: z
      .array(z.enum(ACKNOWLEDGEABLE))
      .max(3)
      .default([])
      .describe('Risks this client accepts knowingly: async (a failover loses acknowledged writes), no_root_squash, any-host (the client "*")'),
  })
  .strict()
  .superRefine((c, ctx) => {
    const risks: [(typeof ACKNOWLEDGEABLE)[number], boolean, string][] = [
      ['async', c.options.includes('async'), 'the server acknowledges writes before they are on disk, so a failover loses acknowledged writes'],
      ['no_root_squash', c.options.includes('no_root_squash'), 'root on the client is root on the shared filesystem'],
      ['any-host', c.host === '*', 'any host that reaches the VIP may mount it'],
    ];
    for (const [risk, present, why] of risks) {
      if (present && !c.acknowledge.includes(risk))
        ctx.addIssue({
          code: 'custom',
          path: [risk === 'any-host' ? 'host' : 'options'],
          message: `${risk === 'any-host' ? 'the client "*"' : `"${risk}"`}: ${why}; if that is meant, add "${risk}" to this client's "acknowledge" list`,
        });
    }
  });

export const ExportSpecSchema = z
  .object({
    path: AbsolutePath.describe('Exported directory on the shared filesystem'),
    fsid: z
      .number()
      .int()
      .min(1)
      .max(2 ** 31 - 1)
      .describe('Fixed filesystem id, identical on both nodes so file handles survive failover (0 is the NFSv4 pseudo-root and not allowed)'),
    clients: z.array(ExportClientSchema).min(1).max(64),
  })
  .strict();
export type ExportSpec = z.output<typeof ExportSpecSchema>;

const ServerScope = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'must be 1–64 letters, digits, _ . -, starting with a letter or digit')
  .describe('nfsd server scope, identical on both nodes so NFSv4.1+ clients may reclaim state after failover');

const StorageSchema = z
  .object({
    devices: z.array(DevicePath).min(1).max(16).describe('Shared devices (LUNs) by stable path, as seen on both nodes'),
    volumeGroup: VolumeGroupName,
    logicalVolume: LogicalVolumeName,
    filesystem: z
      .object({
        uuid: FilesystemUuid,
        type: z.enum(['ext4', 'xfs']),
        mountPoint: AbsolutePath,
        options: z.array(MountOption).max(32).default([]),
      })
      .strict(),
  })
  .strict();

const NfsSchema = z
  .object({
    serverScope: ServerScope,
    stateDir: AbsolutePath.describe('Directory on the shared filesystem bind-mounted onto /var/lib/nfs (client tracking for reclaim)'),
    gracePeriodS: z.number().int().min(10).max(3600).default(15).describe('nfsd grace time in seconds'),
    leaseTimeS: z.number().int().min(10).max(3600).default(15).describe('nfsd (NFSv4) lease time in seconds; a client gives up a connection that gets no answer after about 1.2 × this, where tickle ACKs no longer reach it: keep it above the longest failover'),
    exports: z.array(ExportSpecSchema).min(1).max(64),
  })
  .strict();

const VipSchema = z
  .object({
    address: Ipv4Address.describe('Floating IP clients mount through'),
    prefix: z.number().int().min(1).max(32),
  })
  .strict();

const PolicySchema = z
  .object({
    earlyFencing: z.boolean().default(true).describe('Fence and grant before the lease expires when the holder is silent to the arbiter and to its peer'),
    failsafe: z
      .boolean()
      .default(true)
      .describe(
        'When the arbiter is unreachable, the active keeps serving while its peer promises, over the peer channel, not to take the lease (Patroni failsafe_mode); off: the active demotes at its deadline',
      ),
  })
  .strict();

/** Whether `path` is `dir` or lies inside it. */
export function within(path: string, dir: string): boolean {
  return path === dir || dir === '/' || path.startsWith(`${dir}/`);
}

/** Directories the system needs: the shared filesystem is never mounted on them or inside them. */
const SYSTEM_TREES = [
  '/bin',
  '/boot',
  '/dev',
  '/etc',
  '/home',
  '/lib',
  '/lib32',
  '/lib64',
  '/libx32',
  '/proc',
  '/root',
  '/run',
  '/sbin',
  '/sys',
  '/tmp',
  '/usr',
  '/var',
];
/** Top-level directories that are no place for it either, though a directory inside them is. */
const SYSTEM_TOPS = ['/media', '/mnt', '/opt', '/srv'];

/** Why a mount point is a system directory, or null. */
export function systemDirectory(path: string): string | null {
  const tree = SYSTEM_TREES.find((d) => within(path, d));
  if (tree) return `${path} is ${path === tree ? 'a system directory' : `inside the system directory ${tree}`}`;
  if (SYSTEM_TOPS.includes(path)) return `${path} is a system directory (use a directory of its own inside it, e.g. ${path}/nfs)`;
  return null;
}

export const ClusterSpecSchema = z
  .object({
    id: ClusterId,
    description: z.string().max(500).optional(),
    nodes: z.tuple([NodeSpecSchema, NodeSpecSchema]).describe('Exactly two storage nodes'),
    storage: StorageSchema,
    nfs: NfsSchema,
    vip: VipSchema,
    timing: TimingSchema.prefault({}),
    policy: PolicySchema.prefault({}),
  })
  .strict()
  .superRefine((spec, ctx) => {
    const [a, b] = spec.nodes;
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });

    if (a.id === b.id) issue(['nodes', 1, 'id'], `both nodes are called "${a.id}"; the two nodes need distinct ids`);
    else if (reservationKey(spec.id, a.id) === reservationKey(spec.id, b.id)) {
      issue(['nodes', 1, 'id'], 'the two nodes derive the same reservation key; rename one of them');
    }
    if (a.address === b.address) issue(['nodes', 1, 'address'], `both nodes have address ${a.address}`);

    const mount = spec.storage.filesystem.mountPoint;
    if (mount === '/') issue(['storage', 'filesystem', 'mountPoint'], 'the shared filesystem cannot be mounted on /');
    else {
      const system = systemDirectory(mount);
      if (system)
        issue(
          ['storage', 'filesystem', 'mountPoint'],
          `${system}: mounting the shared filesystem there would hide what the node needs, and a demotion would stop what uses it; choose e.g. /srv/nfs`,
        );
    }
    if (!within(spec.nfs.stateDir, mount) || spec.nfs.stateDir === mount) {
      issue(
        ['nfs', 'stateDir'],
        `stateDir must be a directory inside the shared filesystem (${mount}/…) so the new active node finds the clients to let them reclaim`,
      );
    }
    if (spec.nfs.gracePeriodS < spec.nfs.leaseTimeS) {
      issue(
        ['nfs', 'gracePeriodS'],
        `gracePeriodS (${spec.nfs.gracePeriodS}) must be at least leaseTimeS (${spec.nfs.leaseTimeS}) or clients may not get to reclaim their state`,
      );
    }

    const fsids = new Map<number, number>();
    const paths = new Map<string, number>();
    spec.nfs.exports.forEach((e, i) => {
      if (!within(e.path, mount)) issue(['nfs', 'exports', i, 'path'], `${e.path} is not on the shared filesystem mounted at ${mount}`);
      if (within(e.path, spec.nfs.stateDir)) issue(['nfs', 'exports', i, 'path'], `${e.path} would export the NFS state directory`);
      const f = fsids.get(e.fsid);
      if (f !== undefined) issue(['nfs', 'exports', i, 'fsid'], `fsid ${e.fsid} is already used by export ${f}; each export needs its own fixed fsid`);
      else fsids.set(e.fsid, i);
      const p = paths.get(e.path);
      if (p !== undefined) issue(['nfs', 'exports', i, 'path'], `${e.path} is already exported by export ${p}`);
      else paths.set(e.path, i);
    });

    spec.nodes.forEach((n, i) => {
      if (n.address === spec.vip.address) issue(['vip', 'address'], `the VIP ${spec.vip.address} is node ${i}'s own address; it must be an address of its own`);
      if (n.devices && n.devices.length !== spec.storage.devices.length) {
        issue(
          ['nodes', i, 'devices'],
          `lists ${n.devices.length} devices but storage.devices lists ${spec.storage.devices.length}; give one path per shared device, in the same order`,
        );
      }
    });
    if (spec.vip.prefix < 31) {
      const size = 2 ** (32 - spec.vip.prefix);
      const host = ipv4ToInt(spec.vip.address) % size;
      if (host === 0 || host === size - 1)
        issue(['vip', 'address'], `${spec.vip.address}/${spec.vip.prefix} is the network or broadcast address of its subnet`);
    }
  });

export type ClusterSpecInput = z.input<typeof ClusterSpecSchema>;
export type ClusterSpec = z.output<typeof ClusterSpecSchema>;

/** The shared-device paths a given node uses. */
export function nodeDevices(spec: ClusterSpec, nodeId: string): string[] {
  const node = spec.nodes.find((n) => n.id === nodeId);
  return node?.devices ?? spec.storage.devices;
}

/** Where two specs (or any JSON values) differ, as "path: old → new" lines. */
export function specDiff(before: unknown, after: unknown, path = ''): string[] {
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  const at = path || '(spec)';
  if (before === undefined) return [`${at}: added ${JSON.stringify(after)}`];
  if (after === undefined) return [`${at}: removed ${JSON.stringify(before)}`];
  const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => specDiff(before[k], after[k], path ? `${path}.${k}` : k));
  }
  if (Array.isArray(before) && Array.isArray(after)) {
    // A list of names or options: what came and went, not two lines of JSON.
    if ([...before, ...after].every((v) => v === null || typeof v !== 'object')) {
      const shown = (list: unknown[], sign: string) => list.map((v) => `${sign}${JSON.stringify(v)}`);
      const changes = [...shown(after.filter((v) => !before.includes(v)), '+'), ...shown(before.filter((v) => !after.includes(v)), '-')];
      return [`${at}: ${changes.length > 0 ? changes.join(' ') : `reordered ${JSON.stringify(before)} → ${JSON.stringify(after)}`}`];
    }
    // A list of records (exports, clients, nodes): entry by entry.
    return Array.from({ length: Math.max(before.length, after.length) }, (_, i) => specDiff(before[i], after[i], `${at}[${i}]`)).flat();
  }
  return [`${at}: ${JSON.stringify(before)} → ${JSON.stringify(after)}`];
}
