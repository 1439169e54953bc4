/**
 * Validated names, paths and addresses.
 *
 * Every value that can end up in a command line on a storage node is parsed by one of these
 * schemas first. They are deliberately narrow: a value that could be read as an option
 * (leading "-"), contains whitespace, quotes, shell metacharacters or control characters, or
 * escapes its directory ("..") is rejected, so the executor never has to quote anything.
 */
import { z } from 'zod';

const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Cluster id: a DNS label, also used in reservation-key derivation and store keys. */
export const ClusterId = z
  .string()
  .regex(DNS_LABEL, 'must be a DNS label: lowercase letters, digits and "-", 1–63 chars, not starting or ending with "-"')
  .describe('Cluster identifier (DNS label)');
export type ClusterId = z.infer<typeof ClusterId>;

/** Node id: a DNS label (usually the node's short hostname). */
export const NodeId = z
  .string()
  .regex(DNS_LABEL, 'must be a DNS label: lowercase letters, digits and "-", 1–63 chars, not starting or ending with "-"')
  .describe('Node identifier (DNS label, usually the short hostname)');
export type NodeId = z.infer<typeof NodeId>;

/** Path segments: a conservative character set; "." and ".." are refused separately. */
const SAFE_SEGMENT = /^[A-Za-z0-9_.][A-Za-z0-9_.:+@=-]*$/;

function absolutePath(what: string) {
  return z
    .string()
    .max(4096)
    .refine((p) => p.startsWith('/'), `${what} must be an absolute path`)
    .refine(
      (p) =>
        p === '/' ||
        p
          .slice(1)
          .split('/')
          .every((s) => SAFE_SEGMENT.test(s) && s !== '.' && s !== '..'),
      `${what} may contain only letters, digits and _ . : + @ = - in its segments, with no empty, "." or ".." segment and no trailing "/"`,
    );
}

/** An absolute path on a node (mount point, export path, state directory). */
export const AbsolutePath = absolutePath('path').describe('Absolute path');
export type AbsolutePath = z.infer<typeof AbsolutePath>;

/**
 * A shared block device by a stable name. Kernel names such as /dev/sdb change across boots
 * and differ between the two nodes, so only persistent names are accepted.
 */
export const DevicePath = absolutePath('device path')
  .refine(
    (p) => /^\/dev\/(disk\/by-(id|path|uuid|partuuid)\/|mapper\/)[^/]+$/.test(p),
    'device path must be a stable name under /dev/disk/by-id/, /dev/disk/by-path/, /dev/disk/by-uuid/, /dev/disk/by-partuuid/ or /dev/mapper/',
  )
  .describe('Shared block device by stable path, e.g. /dev/disk/by-id/wwn-0x6001405…');
export type DevicePath = z.infer<typeof DevicePath>;

/** LVM volume group / logical volume name (lvm(8) "VALID NAMES", minus the reserved ones). */
const LvmName = z
  .string()
  .regex(/^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,126}$/, 'must use only letters, digits and _ . + -, must not start with "-", at most 127 chars')
  .refine((n) => n !== '.' && n !== '..' && !n.startsWith('snapshot') && !n.startsWith('pvmove'), 'is a name LVM reserves');
export const VolumeGroupName = LvmName.describe('LVM volume group name');
export const LogicalVolumeName = LvmName.refine(
  (n) => !/_(cdata|cmeta|corig|mlog|mimage|pmspare|rimage|rmeta|tdata|tmeta|vorigin|vdata)/.test(n),
  'uses a suffix LVM reserves',
).describe('LVM logical volume name');

/** Filesystem UUID as printed by blkid: ext4 and xfs use the RFC 4122 form. */
export const FilesystemUuid = z
  .string()
  .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a lowercase RFC 4122 UUID as printed by blkid')
  .describe('Filesystem UUID (blkid)');

/** Network interface name (Linux: up to 15 chars, no "/" or whitespace). */
export const InterfaceName = z
  .string()
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/, 'must be a Linux interface name: letters, digits, _ . -, at most 15 chars, not starting with "-" or "."')
  .describe('Network interface name');

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Dotted-quad IPv4 address without leading zeros (which some tools read as octal). */
export const Ipv4Address = z.string().regex(IPV4, 'must be a dotted-quad IPv4 address without leading zeros').describe('IPv4 address');

/** Converts a validated dotted quad to a 32-bit unsigned integer. */
export function ipv4ToInt(address: string): number {
  return address.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

/** A host name or address, e.g. for the peer channel. */
export const HostName = z
  .string()
  .max(253)
  .refine((h) => IPV4.test(h) || h.split('.').every((l) => DNS_LABEL.test(l)), 'must be an IPv4 address or a DNS name')
  .describe('Host name or IPv4 address');

const ipv4 = z.ipv4();
const cidr4 = z.cidrv4();
const ipv6 = z.ipv6();
const cidr6 = z.cidrv6();
const ok = (schema: z.ZodType, v: string) => schema.safeParse(v).success;


/**
 * An NFS client specification as exports(5) takes it: "*", a host name or wildcard (* ? in
 * labels), an IPv4 or IPv6 address or network (with a valid prefix length), or a netgroup
 * (@name). A malformed network such as 300.88.0.0/33 is refused here, not at takeover.
 */
export const NfsClientSpec = z
  .string()
  .max(255)
  .refine((h) => {
    if (h === '*') return true;
    if (/^@[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(h)) return true;
    if (/^[\d./]+$/.test(h)) return ok(ipv4, h) || ok(cidr4, h);
    if (h.includes(':')) return ok(ipv6, h) || ok(cidr6, h);
    return /^[A-Za-z0-9*?]([A-Za-z0-9*?-]*[A-Za-z0-9*?])?(\.[A-Za-z0-9*?]([A-Za-z0-9*?-]*[A-Za-z0-9*?])?)*$/.test(h);
  }, 'must be "*", a host name or wildcard, an IPv4 or IPv6 address or network (a.b.c.d/0–32, x::y/0–128), or a netgroup (@name)')
  .describe('NFS client (exports(5) host specification)');

/**
 * The options exports(5) documents, each with the values it takes (null: a flag). fsid is not
 * among them: it is a mandatory field of the export, so it cannot be forgotten or differ
 * between the two nodes.
 */
const EXPORT_OPTIONS: Record<string, RegExp | null> = {
  rw: null,
  ro: null,
  sync: null,
  async: null,
  secure: null,
  insecure: null,
  wdelay: null,
  no_wdelay: null,
  hide: null,
  nohide: null,
  crossmnt: null,
  subtree_check: null,
  no_subtree_check: null,
  secure_locks: null,
  insecure_locks: null,
  auth_nlm: null,
  no_auth_nlm: null,
  root_squash: null,
  no_root_squash: null,
  all_squash: null,
  no_all_squash: null,
  nordirplus: null,
  pnfs: null,
  no_pnfs: null,
  security_label: null,
  mp: null,
  mountpoint: /^\/[A-Za-z0-9_.:+@=\/-]*$/,
  sec: /^(sys|krb5|krb5i|krb5p)(:(sys|krb5|krb5i|krb5p))*$/,
  anonuid: /^\d{1,10}$/,
  anongid: /^\d{1,10}$/,
  refer: /^[A-Za-z0-9_.:@\/+-]+$/,
  replicas: /^[A-Za-z0-9_.:@\/+-]+$/,
  xprtsec: /^(none|tls|mtls)(:(none|tls|mtls))*$/,
};

/** One export option, e.g. "rw", "sync", "no_subtree_check", "sec=sys", "anonuid=65534". */
export const NfsExportOption = z
  .string()
  .max(200)
  .superRefine((o, ctx) => {
    const [name, value] = o.split(/=(.*)/s) as [string, string | undefined];
    if (name.startsWith('fsid')) return ctx.addIssue({ code: 'custom', message: 'fsid is set by the export\'s own "fsid" field, not as an option' });
    const rule = EXPORT_OPTIONS[name];
    if (rule === undefined) {
      const near = Object.keys(EXPORT_OPTIONS).find((k) => [...k].sort().join() === [...name].sort().join());
      return ctx.addIssue({ code: 'custom', message: `"${name}" is not an exports(5) option${near ? ` (did you mean "${near}"?)` : ''}` });
    }
    if (rule === null && value !== undefined) return ctx.addIssue({ code: 'custom', message: `"${name}" takes no value` });
    if (rule !== null && (value === undefined || !rule.test(value)))
      ctx.addIssue({ code: 'custom', message: `"${name}" needs a value of the form ${rule.source.replace(/^\^|\$$/g, '')}` });
  })
  .describe('exportfs option (exports(5))');

/** One mount option, e.g. "noatime" or "logbufs=8". */
export const MountOption = z
  .string()
  .regex(/^[a-z][a-z0-9_]*(=[A-Za-z0-9_.:\/+-]+)?$/, 'must be a mount option: name or name=value, without spaces or commas')
  .describe('Mount option');
