/**
 * dm-multipath: a LUN is named once, by its multipath map (/dev/mapper/NAME, or
 * /dev/disk/by-id/dm-uuid-mpath-WWID); its SCSI paths are the map's slaves in sysfs. Each path
 * is its own I_T nexus to the storage, so persistent-reservation registrations are per path
 * (scsi-reservation.ts). Paths are read from sysfs, not from multipathd: a path's state there is
 * the SCSI device's own ("running", or "blocked" while its transport recovers, "transport-offline"
 * after), and a command sent to a path that is not running waits on the transport instead of failing.
 */
import { readdir, readFile, realpath } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { z } from 'zod';
import { type Executor, failureText } from '../executor.ts';
import { TIMEOUT } from './resource.ts';
import { sysBlock } from './sysfs.ts';

/** A device path that names a multipath map rather than a single disk. */
export function isMultipathName(device: string): boolean {
  return /^\/dev\/(mapper\/[^/]+|disk\/by-id\/dm-uuid-mpath-[^/]+)$/.test(device);
}

/** A kernel block device name from sysfs (sdb, sdaa), checked before it reaches a command as /dev/NAME. */
const PathName = z.string().regex(/^sd[a-z]{1,4}$/, 'not a SCSI disk name');

export interface ScsiPath {
  /** Kernel name, e.g. sdb. */
  name: string;
  /** Its device node, e.g. /dev/sdb. */
  device: string;
  /** The SCSI device state from sysfs (running, blocked, transport-offline, offline…). */
  state: string;
  /** Only a running path gets commands. */
  live: boolean;
}

export interface MultipathMap {
  /** The map's name (multipathd's alias, or the WWID). */
  name: string;
  paths: ScsiPath[];
}

/** Reads a multipath map and its paths. */
export type PathFinder = (device: string) => Promise<MultipathMap>;

/** The real one, reading sysfs under `root` (tests point it at a tree rebuilt from a real listing). */
export function sysfsPaths(root = '/'): PathFinder {
  return async (device) => {
    const dm = basename(
      await realpath(join(root, device)).catch((err: NodeJS.ErrnoException) => {
        throw new Error(`${device}: ${err.code === 'ENOENT' ? 'no such device (is multipathd running, the map assembled?)' : err.message}`);
      }),
    );
    if (!/^dm-\d+$/.test(dm)) throw new Error(`${device} is not a device-mapper device (it is ${dm})`);
    const { dir: block, read } = sysBlock(root);
    const uuid = await read(`${dm}/dm/uuid`);
    if (!uuid.startsWith('mpath-')) throw new Error(`${device} (${dm}) is not a dm-multipath map (device-mapper uuid "${uuid}")`);
    const slaves = (await readdir(join(block, dm, 'slaves'))).sort();
    const paths = await Promise.all(
      slaves.map(async (slave) => {
        const name = PathName.parse(slave);
        const state = (await read(`${name}/device/state`)) || 'unknown';
        return { name, device: `/dev/${name}`, state, live: state === 'running' };
      }),
    );
    return { name: await read(`${dm}/dm/name`), paths };
  };
}

/** One line of `multipathd show maps raw format "%n %w %Q %N %f"`. */
export interface MapStatus {
  name: string;
  wwid: string;
  /** What happens to I/O with no path left: off (fail at once), on (queue for ever), "N chk" / "N sec" (queue that long), - (the features decide). */
  queueing: string;
  paths: number;
  features: string;
}

export const MAPS_FORMAT = '%n %w %Q %N %f';

export function parseMaps(stdout: string): MapStatus[] {
  return stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((line) => {
      const m = /^(\S+) (\S+) (on|off|-|\d+ chk|\d+ sec) (\d+) (.*)$/.exec(line.trim());
      if (!m) throw new Error(`unrecognised multipathd show maps line: ${line.slice(0, 200)}`);
      return { name: m[1]!, wwid: m[2]!, queueing: m[3]!, paths: Number(m[4]), features: m[5]!.trim() };
    });
}

/** Whether I/O to a map with no path left waits for ever (a fenced or cut-off node's I/O would hang instead of failing). */
export function queuesForever(map: MapStatus): boolean {
  return map.queueing === 'on' || (map.queueing === '-' && /\bqueue_if_no_path\b/.test(map.features));
}

/** `reservation_key` lines of a multipath.conf text (comments skipped). */
export function reservationKeyLines(conf: string): string[] {
  return conf
    .split('\n')
    .map((l) => l.replace(/#.*$/, '').trim())
    .filter((l) => /^reservation_key\s+\S/.test(l));
}

/**
 * What in the node's multipath set-up defeats fencing, each with its fix (the preflight's
 * `nfs-ha-agent validate` and the installer show them): multipathd registering keys by itself,
 * and I/O that queues for ever once no path is left.
 */
export async function multipathProblems(exec: Executor, device: string, map: MultipathMap, root = '/'): Promise<string[]> {
  const problems: string[] = [];
  const confDir = join(root, 'etc/multipath/conf.d');
  const files = [join(root, 'etc/multipath.conf'), ...(await readdir(confDir).catch(() => [])).filter((f) => f.endsWith('.conf')).map((f) => join(confDir, f))];
  for (const file of files) {
    const lines = reservationKeyLines(await readFile(file, 'utf8').catch(() => ''));
    if (lines.length > 0)
      problems.push(
        `/${relative(root, file)} sets "${lines[0]}": multipathd would register that key on every path that appears, at boot too, and give a node the arbiter did not grant write access. Remove it: nfs-ha registers each path itself`,
      );
  }
  const r = await exec.run({ argv: ['multipathd', 'show', 'maps', 'raw', 'format', MAPS_FORMAT], timeoutMs: TIMEOUT.query });
  if (r.exitCode !== 0) return [...problems, `${device}: cannot ask multipathd about the map (multipathd ${failureText(r)}); is multipathd running?`];
  const status = parseMaps(r.stdout).find((m) => m.name === map.name);
  if (!status) problems.push(`${device}: multipathd does not know the map ${map.name}`);
  else if (queuesForever(status))
    problems.push(
      `${device}: I/O with no path left queues for ever (no_path_retry queue, or queue_if_no_path): a node cut off from the storage hangs instead of failing its writes and demoting. Set no_path_retry to a number of checks (e.g. 3) or to fail in multipath.conf`,
    );
  return problems;
}
