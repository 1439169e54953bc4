/**
 * The peer channel: each agent answers `GET /peer/v1/status` for its peer (and for the local
 * `nfs-ha-agent status`), authenticated by a shared bearer token compared in constant time.
 * The passive checks the active through it; "unreachable" means no successful check within
 * suspectAfterMs — the same silence the arbiter requires before it fences early. The channel
 * runs over the network that carries the VIP, so silent to the peer also means silent to
 * clients.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { NODE_ROLES } from '../shared/node-role.ts';

export const PeerStatusSchema = z.object({
  node: z.string(),
  role: z.enum(NODE_ROLES),
  epoch: z.number().int(),
  /** Time left on this node's lease, by its own monotonic clock (null: holds none). */
  leaseRemainingMs: z.number().nullable(),
});
export type PeerStatus = z.infer<typeof PeerStatusSchema>;

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** Compares a presented bearer token with the expected one in constant time. */
export function tokenMatches(header: string | undefined, expected: string): boolean {
  const presented = /^Bearer (.+)$/.exec(header ?? '')?.[1] ?? '';
  return timingSafeEqual(digest(presented), digest(expected));
}

export function startPeerServer(options: { host: string; port: number; token: string; status: () => PeerStatus }): Promise<Server> {
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'GET' || req.url !== '/peer/v1/status') return send(404, { error: { code: 'route_not_found', message: 'only GET /peer/v1/status' } });
    if (!tokenMatches(req.headers.authorization, options.token)) return send(401, { error: { code: 'unauthorized', message: 'peer token missing or wrong' } });
    send(200, options.status());
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(options.port, options.host, () => ok(server));
  });
}

export function peerPort(server: Server): number {
  return (server.address() as AddressInfo).port;
}

export async function fetchPeerStatus(url: string, token: string, timeoutMs: number): Promise<PeerStatus> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`peer answered HTTP ${res.status}`);
  return PeerStatusSchema.parse(await res.json());
}

/** Tracks whether the peer answered recently, and what it said. */
export class PeerWatch {
  #lastSuccess: number | null = null;
  #lastStatus: PeerStatus | null = null;
  #checks = 0;

  constructor(
    private readonly url: string,
    private readonly token: string,
    private readonly timeoutMs: number,
    private readonly silenceMs: number,
    private readonly now: () => number,
  ) {}

  async check(): Promise<void> {
    this.#checks++;
    try {
      this.#lastStatus = await fetchPeerStatus(this.url, this.token, this.timeoutMs);
      this.#lastSuccess = this.now();
    } catch {
      // Silence is the signal; the time of the last success says how long it has lasted.
    }
  }

  /** For the heartbeat: undefined until a check has run, then whether the peer answered within the window. */
  reachable(): boolean | undefined {
    if (this.#checks === 0) return undefined;
    return this.#lastSuccess !== null && this.now() - this.#lastSuccess <= this.silenceMs;
  }

  /** The peer's latest status while it is reachable; null otherwise. */
  status(): PeerStatus | null {
    return this.reachable() ? this.#lastStatus : null;
  }
}
