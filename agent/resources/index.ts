/** The node's resources in start order; stop runs them in reverse. */
import { Exports } from './exports.ts';
import { Filesystem } from './filesystem.ts';
import { FloatingIp } from './floating-ip.ts';
import { NfsServer, type ReadJournalMode } from './nfs-server.ts';
import type { Resource, ResourceContext } from './resource.ts';
import { ScsiReservation } from './scsi-reservation.ts';
import { VolumeGroup } from './volume-group.ts';

/** What the loop needs of the reservation besides the common contract. */
export type Reservation = Resource & Pick<ScsiReservation, 'fence' | 'keyPresent'>;

export interface NodeResources {
  reservation: Reservation;
  /** Start order: reservation → volume group → filesystem → NFS server → exports → VIP. */
  ordered: Resource[];
}

/** `journalMode`: how nfsdcld's database is read (the file's header; a dry run states it). */
export function nodeResources(ctx: ResourceContext, journalMode?: ReadJournalMode): NodeResources {
  const reservation = new ScsiReservation(ctx);
  return {
    reservation,
    ordered: [reservation, new VolumeGroup(ctx), new Filesystem(ctx), new NfsServer(ctx, journalMode), new Exports(ctx), new FloatingIp(ctx)],
  };
}

/** Each resource's prepare(), one after another (they are few and short); the first failure throws. */
export async function prepareResources(resources: NodeResources): Promise<void> {
  for (const r of resources.ordered) await r.prepare?.();
}
