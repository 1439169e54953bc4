/**
 * Limits on what a client can make the control plane do. None of them ever applies to a valid
 * credential's lease operations: they bound the cost of what anyone can send (failed
 * authentications, enrolment attempts, stream upgrades), so that it cannot crowd out renewals.
 */
import { BlockList, isIP } from 'node:net';

/** A token bucket: `ratePerS` tokens a second, at most `burst` saved up. */
export class TokenBucket {
  #tokens: number;
  #at: number;

  constructor(
    private readonly ratePerS: number,
    private readonly burst: number,
    now: number,
  ) {
    this.#tokens = burst;
    this.#at = now;
  }

  take(now: number): boolean {
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) / 1000) * this.ratePerS);
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/**
 * A global bucket and one per client address: a request passes when both have a token. The
 * per-client buckets are forgotten beyond `maxClients` (oldest first), so a flood from many
 * addresses costs bounded memory and still meets the global limit.
 */
export class RateLimit {
  readonly #global: TokenBucket;
  readonly #clients = new Map<string, TokenBucket>();

  constructor(
    private readonly limits: { globalPerS: number; globalBurst: number; clientPerS: number; clientBurst: number },
    now: number,
    private readonly maxClients = 10_000,
  ) {
    this.#global = new TokenBucket(limits.globalPerS, limits.globalBurst, now);
  }

  allow(client: string, now: number): boolean {
    let bucket = this.#clients.get(client);
    if (!bucket) {
      bucket = new TokenBucket(this.limits.clientPerS, this.limits.clientBurst, now);
      this.#clients.set(client, bucket);
      if (this.#clients.size > this.maxClients) this.#clients.delete(this.#clients.keys().next().value!);
    }
    return bucket.take(now) && this.#global.take(now);
  }
}

/**
 * Counts failed authentications per client address. It is consulted only once a request has
 * failed to authenticate: a valid credential is never refused by it, whoever shares its address.
 */
export class FailureLimiter {
  readonly #failures = new Map<string, number[]>();

  constructor(
    private readonly limit = 20,
    private readonly windowMs = 60_000,
  ) {}

  /** Whether the client is past the limit now, without recording anything. */
  locked(client: string, now: number): boolean {
    return (this.#failures.get(client) ?? []).filter((t) => t > now - this.windowMs).length > this.limit;
  }

  /**
   * Records a failure; true when the client is past the limit (refuse with 429 instead of 401).
   * `locked` is told once per lockout, when the client first goes past it.
   */
  fail(client: string, now: number, locked: (failures: number) => void = () => {}): boolean {
    const recent = (this.#failures.get(client) ?? []).filter((t) => t > now - this.windowMs);
    recent.push(now);
    // Refresh the entry's place, so the oldest entries are the ones dropped past the cap.
    this.#failures.delete(client);
    this.#failures.set(client, recent.slice(-this.limit - 1));
    if (this.#failures.size > 10_000) this.#failures.delete(this.#failures.keys().next().value!);
    if (recent.length === this.limit + 1) locked(recent.length);
    return recent.length > this.limit;
  }
}

/** A set of addresses and CIDR blocks ("10.0.0.0/8", "::1", "fd00::/8"), on node:net's BlockList. */
export class AddressSet {
  readonly #list = new BlockList();

  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const [address, len] = entry.split('/') as [string, string | undefined];
      const family = isIP(address);
      if (family === 0) throw new Error(`"${entry}" is not an IP address or CIDR block`);
      const type = family === 4 ? 'ipv4' : 'ipv6';
      if (len === undefined) this.#list.addAddress(address, type);
      else this.#list.addSubnet(address, Number(len), type);
    }
  }

  has(address: string): boolean {
    const plain = unmapped(address);
    const family = isIP(plain);
    return family !== 0 && this.#list.check(plain, family === 4 ? 'ipv4' : 'ipv6');
  }
}

/** "::ffff:10.1.2.3" (an IPv4 client on a dual-stack socket) as "10.1.2.3". */
export function unmapped(address: string): string {
  return /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] ?? address;
}

/**
 * The client's address: the connection's peer, or — when the peer is a trusted reverse proxy —
 * the last X-Forwarded-For hop that is not itself a trusted proxy. A header from anyone else
 * is ignored, since a client can write whatever it likes there.
 */
export function clientAddress(peer: string, forwardedFor: string | undefined, trusted: AddressSet): string {
  const from = unmapped(peer);
  if (!trusted.has(from)) return from;
  const hops = (forwardedFor ?? '')
    .split(',')
    .map((h) => unmapped(h.trim()))
    .filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) if (!trusted.has(hops[i]!)) return hops[i]!;
  return from;
}
