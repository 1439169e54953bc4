/**
 * SCSI-3 persistent reservation keys.
 *
 * Layout, after fence_scsi: a 64-bit key whose high 32 bits identify the cluster and whose low
 * 32 bits identify the node within it, each taken from a SHA-256 hash rather than from raw ids:
 *
 *   key = SHA-256("nfs-ha:cluster:" + clusterId)[0..4] ‖ SHA-256("nfs-ha:node:" + clusterId + ":" + nodeId)[0..4]
 *
 * so `sg_persist --read-keys` output can be attributed to a cluster at a glance (all its keys share
 * the first eight hex digits), keys are stable across restarts and re-installs, and no two
 * clusters on one SAN are likely to collide. Key 0 means "unregister" in SPC-3 and is never
 * produced; the cluster spec rejects the (astronomically unlikely) case of two nodes of one
 * cluster hashing to the same key.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

/** A reservation key as sg_persist prints and takes it: 0x followed by 16 lowercase hex digits. */
export const ReservationKey = z
  .string()
  .regex(/^0x[0-9a-f]{16}$/, 'must be 0x followed by 16 lowercase hex digits')
  .refine((k) => k !== '0x0000000000000000', 'key 0 means "unregister" and cannot be used')
  .describe('SCSI-3 persistent reservation key');
export type ReservationKey = z.infer<typeof ReservationKey>;

function hash32(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex').slice(0, 8);
}

export function reservationKey(clusterId: string, nodeId: string): ReservationKey {
  let node = hash32(`nfs-ha:node:${clusterId}:${nodeId}`);
  // A node half of zero with a cluster half of zero would be key 0; keep the key non-zero.
  const cluster = hash32(`nfs-ha:cluster:${clusterId}`);
  if (cluster === '00000000' && node === '00000000') node = '00000001';
  return `0x${cluster}${node}`;
}
