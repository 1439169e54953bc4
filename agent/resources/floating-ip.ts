/**
 * The floating IP (VIP) clients mount through: `ip addr add` on the node's interface and a
 * burst of gratuitous ARP so switches and clients learn the new MAC at once.
 *
 * Before adding it, a duplicate-address probe. Debian's arping is Thomas Habets' arping, whose
 * probe is `-0` (source 0.0.0.0): exit 1 means nobody answered (free), 0 means somebody owns
 * the address. (Its -D only changes the display; LAB-NOTES.) A previous active that is frozen
 * or partitioned may still answer until its own lease deadline, so a conflict is probed again
 * for up to one lease TTL before start fails.
 *
 * Both steps are one process each with short waits: an ARP reply on the VIP's segment takes
 * milliseconds, so the probe waits DAD_WAIT_S for one (not arping's usual second), and it runs
 * beside the storage steps of a takeover (startAhead); the gratuitous ARPs go out from one arping,
 * GARP_INTERVAL_S apart.
 * Neither is what keeps the VIP on one node: the lease is (the old holder drops the VIP before
 * its deadline, and the arbiter grants nobody else before then); the probe catches what the
 * lease cannot see, another host configured with the address.
 */
import { z } from 'zod';
import { expectExit } from '../executor.ts';
import { type MonitorResult, type Resource, type ResourceContext, ResourceError, TIMEOUT } from './resource.ts';

const IpAddrJson = z.array(
  z.object({ ifname: z.string(), addr_info: z.array(z.object({ family: z.string(), local: z.string(), prefixlen: z.number() }).loose()) }).loose(),
);

/** The IPv4 addresses (address/prefix) of an interface from `ip -j addr show dev IFACE`. */
export function parseIpv4Addresses(stdout: string): string[] {
  if (stdout.trim() === '') return [];
  return IpAddrJson.parse(JSON.parse(stdout)).flatMap((i) => i.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`));
}

const ARPING_FREE = 1;
const ARPING_ANSWERED = 0;
export const GARP_COUNT = 3;
const GARP_INTERVAL_S = '0.05';
const DAD_WAIT_S = '0.3';
const PROBE_RETRY_MS = 250;
/** `ip addr del` of an address the interface does not have: exit 2, the kernel's EADDRNOTAVAIL. */
const IP_FAILED = 2;
const NOT_PRESENT = /Cannot assign requested address/;

export class FloatingIp implements Resource {
  readonly name = 'floating-ip' as const;
  readonly #cidr: string;

  constructor(
    private readonly ctx: ResourceContext,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {
    this.#cidr = `${ctx.spec.vip.address}/${ctx.spec.vip.prefix}`;
  }

  get #iface() {
    return this.ctx.node.vipInterface;
  }

  async #present(): Promise<boolean> {
    const r = expectExit(
      await this.ctx.exec.run({ argv: ['ip', '-j', 'addr', 'show', 'dev', this.#iface], timeoutMs: TIMEOUT.query }),
      [0],
      `reading addresses of ${this.#iface}`,
    );
    return parseIpv4Addresses(r.stdout).includes(this.#cidr);
  }

  async validate(): Promise<string[]> {
    const r = await this.ctx.exec.run({ argv: ['ip', '-j', 'addr', 'show', 'dev', this.#iface], timeoutMs: TIMEOUT.query });
    return r.exitCode === 0 ? [] : [`interface ${this.#iface} not found on this node`];
  }

  /** Resolves when nobody answers for the VIP; fails if somebody still does after the lease TTL. */
  async #probeFree(): Promise<void> {
    const vip = this.ctx.spec.vip.address;
    const giveUpAt = performance.now() + this.ctx.spec.timing.leaseTtlMs;
    for (;;) {
      const r = await this.ctx.exec.run({ argv: ['arping', '-0', '-c', '1', '-w', DAD_WAIT_S, '-i', this.#iface, vip], timeoutMs: TIMEOUT.query });
      if (r.exitCode === ARPING_FREE) return;
      if (r.exitCode !== ARPING_ANSWERED) expectExit(r, [ARPING_FREE], `probing ${vip} on ${this.#iface}`);
      const owner = /from ([0-9a-f:]{17})/i.exec(r.stdout)?.[1] ?? 'another host';
      if (performance.now() >= giveUpAt) throw new ResourceError(this.name, `${vip} is still answered by ${owner}; not adding a duplicate address`);
      this.ctx.log.warn({ resource: this.name, owner }, `${vip} answered by ${owner}; waiting for it to go`);
      await this.sleep(PROBE_RETRY_MS);
    }
  }

  /** The duplicate-address probe begun with the takeover (startAhead), for start() to wait for. */
  #probe: Promise<void> | null = null;

  /**
   * The probe waits DAD_WAIT_S for a reply that should not come: begun with the takeover, that
   * wait passes beside the storage steps instead of after them. It is still done after the grant
   * (the old holder has dropped the VIP by then, or is answered for until the TTL, as below), and
   * the address is added only once it found the VIP free.
   */
  startAhead(): void {
    this.#probe = this.#probeFree();
    this.#probe.catch(() => {}); // start() reports its failure
  }

  async start(): Promise<void> {
    const probe = this.#probe;
    this.#probe = null;
    if (!(await this.#present())) {
      await (probe ?? this.#probeFree());
      expectExit(
        await this.ctx.exec.run({ argv: ['ip', 'addr', 'add', this.#cidr, 'dev', this.#iface], timeoutMs: TIMEOUT.change }),
        [0],
        `adding ${this.#cidr} to ${this.#iface}`,
      );
    }
    const vip = this.ctx.spec.vip.address;
    // Exit 1 is normal: nobody replies to a gratuitous ARP. The deadline (-w) only bounds the
    // burst: arping exits once it has sent -c of them.
    expectExit(
      await this.ctx.exec.run({
        argv: ['arping', '-U', '-i', this.#iface, '-S', vip, '-c', String(GARP_COUNT), '-W', GARP_INTERVAL_S, '-w', '1', vip],
        timeoutMs: TIMEOUT.query,
      }),
      [0, 1],
      'sending gratuitous ARP',
    );
  }

  /**
   * One command, no read before it: a switchover's clients wait from this step on. The kernel
   * says whether the address was there (EADDRNOTAVAIL: nothing to remove).
   */
  async stop(): Promise<void> {
    this.#probe = null;
    const r = await this.ctx.exec.run({ argv: ['ip', 'addr', 'del', this.#cidr, 'dev', this.#iface], timeoutMs: TIMEOUT.change });
    if (r.exitCode === IP_FAILED && NOT_PRESENT.test(r.stderr)) return;
    expectExit(r, [0], `removing ${this.#cidr} from ${this.#iface}`);
  }

  async monitor(): Promise<MonitorResult> {
    return (await this.#present()) ? { state: 'running' } : { state: 'stopped' };
  }
}
