/** A host's root rebuilt from a real sysfs listing, for the multipath path finder. */
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fixture } from './fixtures.ts';

/**
 * A host root rebuilt from a real sysfs listing (the lab's `sysfs-multipath--*` fixtures: the
 * map's device node, its slaves, then `grep -H` of the files the agent reads): /dev/mapper/NAME
 * → /dev/dm-N, /sys/block/dm-N/{dm/name,dm/uuid,slaves/sdX}, /sys/block/sdX/device/state.
 */
export function hostFromListing(name: string, edit: (path: string, value: string) => string = (_p, v) => v): { root: string; device: string } {
  const lines = fixture(name).stdout.trim().split('\n');
  const root = mkdtempSync(join(tmpdir(), 'nfsha-sysfs-'));
  const dmNode = lines[0]!;
  const dm = dmNode.replace('/dev/', '');
  const write = (path: string, content: string) => {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), `${content}\n`);
  };
  write(dmNode, '');
  let mapName = '';
  for (const line of lines.slice(1)) {
    const at = line.indexOf(':');
    if (at < 0) {
      mkdirSync(join(root, 'sys/block', dm, 'slaves', line), { recursive: true });
      continue;
    }
    const path = line.slice(0, at);
    const value = edit(path, line.slice(at + 1));
    // slaves/sdX/device/state is sdX's own attribute seen through the slave link.
    write(path.replace(new RegExp(`/sys/block/${dm}/slaves/`), '/sys/block/'), value);
    if (path.endsWith('/dm/name')) mapName = value;
  }
  mkdirSync(join(root, 'dev/mapper'), { recursive: true });
  symlinkSync(`../${dm}`, join(root, 'dev/mapper', mapName));
  return { root, device: `/dev/mapper/${mapName}` };
}

/**
 * Device-mapper devices in sysfs (/sys/block/dm-N/dm/{name,uuid}) under `root`, rebuilt from a
 * real `ls -l /dev/disk/by-id/` listing: udev names each dm device there by its dm name
 * (dm-name-NAME) and uuid (dm-uuid-UUID), each a link to ../../dm-N. `renumber` moves a device
 * (dm-0 → dm-1) when the listing comes from another host than the root's.
 */
export function addDeviceMapperFromByIdListing(root: string, name: string, renumber: (dm: string) => string = (dm) => dm): void {
  for (const line of fixture(name).stdout.split('\n')) {
    const m = /\bdm-(name|uuid)-(\S+) -> \.\.\/\.\.\/(dm-\d+)$/.exec(line);
    if (!m) continue;
    const dir = join(root, 'sys/block', renumber(m[3]!), 'dm');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, m[1]!), `${m[2]}\n`);
  }
}
