/**
 * The shared disks at boot. A node's SAN comes up beside its agent: iSCSI logs in, multipathd
 * assembles the maps, Fibre Channel LUNs appear as udev finds them. An agent that ran its
 * preflight at once would find no disk, exit, and be restarted by systemd over and over (a
 * lab node's agent failed three starts at boot, each 7–8 s of CPU under TCG, and came up 27 s
 * after its map had appeared). So the agent waits for its disks first, saying what it waits
 * for; whatever is still missing afterwards is the preflight's to report.
 */
import { access } from 'node:fs/promises';
import type { Logger } from 'pino';

/** How long a starting agent waits for its disks before its preflight reports them missing. */
export const DEVICE_WAIT_MS = 120_000;
const POLL_MS = 250;

/** The devices that do not exist (yet). */
async function missing(devices: readonly string[]): Promise<string[]> {
  const absent = await Promise.all(devices.map((d) => access(d).then(() => null, () => d)));
  return absent.filter((d) => d !== null);
}

/** Waits until every device exists or `timeoutMs` has passed; returns those still missing. */
export async function waitForDevices(devices: readonly string[], log: Logger, timeoutMs = DEVICE_WAIT_MS): Promise<string[]> {
  let absent = await missing(devices);
  if (absent.length === 0) return [];
  const started = performance.now();
  log.warn({ devices: absent }, `waiting up to ${timeoutMs / 1000} s for the shared disk to appear: ${absent.join(', ')} (iSCSI login, multipath map)`);
  while (absent.length > 0 && performance.now() - started < timeoutMs) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    absent = await missing(devices);
  }
  const waitedMs = Math.round(performance.now() - started);
  if (absent.length === 0) log.info({ devices, waitedMs }, `the shared disk appeared after ${(waitedMs / 1000).toFixed(1)} s`);
  return absent;
}
