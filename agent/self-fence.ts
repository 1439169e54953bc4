/**
 * The node's last resort when it may no longer be trusted to stop on its own: its reservation
 * key vanished while active (the peer fenced it), or demotion did not finish in time. Like sbd
 * and fence_scsi_check: the hardware watchdog, armed only while this node holds the lease and
 * petted only while its deadline is at least a watchdog timeout away, reboots a hung node; an immediate reboot (sysrq)
 * serves when the agent itself decides.
 */
import { open, readFile, realpath, writeFile, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Logger } from 'pino';

export interface SelfFence {
  /** Holding the lease from now on: arm the watchdog. */
  arm(): Promise<void>;
  /** The deadline is at least a timeout away: the node is still trusted for another timeout. */
  pet(): Promise<void>;
  /** Demotion completed cleanly: nothing to guard any more. */
  disarm(): Promise<void>;
  /** Reboot now, without syncing (writes would fail with a reservation conflict anyway). */
  reboot(reason: string): Promise<void>;
}

async function sysrqReboot(log: Logger, reason: string): Promise<void> {
  log.fatal({ reason }, `self-fencing: ${reason}`);
  // The journal may not reach the disk before the reset; the kernel log reaches the console (and
  // pstore, netconsole) at once, so the reason survives the reboot. <2>: critical.
  await writeFile('/dev/kmsg', `<2>nfs-ha-agent: self-fencing: ${reason.replace(/\s+/g, ' ').slice(0, 900)}\n`).catch(() => {});
  await writeFile('/proc/sysrq-trigger', 'b');
}

/** /dev/watchdog while holding the lease, sysrq for an immediate reboot. */
export class WatchdogSelfFence implements SelfFence {
  #handle: FileHandle | null = null;
  /**
   * Every operation on the device, one at a time and in the order asked. The driver honours the
   * magic close only when the last write before the close held 'V'; file writes run on libuv's
   * thread pool, so a pet still in flight could land between them, and the node was reset after
   * a clean demotion (the lab caught it: "watchdog did not stop!" after a switchover).
   */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly device: string,
    private readonly log: Logger,
  ) {}

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(op, op);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  arm(): Promise<void> {
    return this.#serial(async () => {
      if (this.#handle) return;
      this.#handle = await open(this.device, 'w');
      this.log.info({ device: this.device }, 'watchdog armed');
    });
  }

  pet(): Promise<void> {
    return this.#serial(async () => {
      await this.#handle?.write('\0');
    });
  }

  disarm(): Promise<void> {
    return this.#serial(async () => {
      const handle = this.#handle;
      if (!handle) return;
      // From here no pet reaches the device: the magic close, 'V' and then close, is the last of it.
      this.#handle = null;
      await handle.write('V');
      await handle.close();
      this.log.info({ device: this.device }, 'watchdog disarmed');
    });
  }

  reboot(reason: string): Promise<void> {
    return sysrqReboot(this.log, reason);
  }
}

/**
 * The driver's timeout in seconds, from sysfs (`/dev/watchdog` is the legacy name of
 * watchdog0), or null when the kernel does not say.
 */
export async function watchdogTimeoutSeconds(device: string): Promise<number | null> {
  const name = basename(device) === 'watchdog' ? 'watchdog0' : basename(await realpath(device).catch(() => device));
  const text = await readFile(`/sys/class/watchdog/${name}/timeout`, 'utf8').catch(() => null);
  const seconds = text === null ? Number.NaN : Number.parseInt(text.trim(), 10);
  return Number.isFinite(seconds) ? seconds : null;
}

/** No watchdog device: the agent reboots the node itself when it must. */
export class RebootSelfFence implements SelfFence {
  constructor(private readonly log: Logger) {}
  async arm(): Promise<void> {}
  async pet(): Promise<void> {}
  async disarm(): Promise<void> {}
  reboot(reason: string): Promise<void> {
    return sysrqReboot(this.log, reason);
  }
}
