/**
 * The peer channel: each agent answers `GET /peer/v1/status` for its peer (and for the local
 * `nfs-ha-agent status`). The passive checks the active through it; "unreachable" means no
 * successful check within suspectAfterMs — the same silence the arbiter requires before it
 * fences early. The channel runs over the network that carries the VIP, so silent to the peer
 * also means silent to clients.
 *
 * The secret never crosses the network. A request carries a fresh random nonce and an HMAC of
 * it; the answer carries the status and an HMAC over the nonce and the status, with the same
 * key. A forged answer ("active, plenty of lease") fails the HMAC, a replayed one names another
 * nonce: either counts as no answer, so nobody can talk a passive out of reporting a silent
 * active. During a rotation each side accepts the previous secret too (`previousToken`).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
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

/** The secrets of the channel: `token` signs; `previousToken` is still accepted during a rotation. */
export interface PeerKeys {
  token: string;
  previousToken?: string | undefined;
}

const NONCE = /^[0-9a-f]{32}$/;
const Answer = z.object({ status: z.string().max(4096), mac: z.string().max(100) });

const mac = (key: string, ...parts: string[]) => createHmac('sha256', key).update(parts.join('\n')).digest('base64url');

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const requestMac = (key: string, nonce: string) => mac(key, 'nfs-ha peer request', nonce);
const answerMac = (key: string, nonce: string, status: string) => mac(key, 'nfs-ha peer status', nonce, status);

/** The key a request was signed with, among those accepted; null when none. */
function signedWith(keys: PeerKeys, header: string | undefined, nonce: string): string | null {
  const presented = /^NFSHA-HMAC ([A-Za-z0-9_-]{43})$/.exec(header ?? '')?.[1];
  if (!presented) return null;
  for (const key of [keys.token, keys.previousToken]) if (key && same(requestMac(key, nonce), presented)) return key;
  return null;
}

export function startPeerServer(options: { host: string; port: number; keys: () => PeerKeys; status: () => PeerStatus }): Promise<Server> {
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const url = new URL(req.url ?? '/', 'http://peer');
    if (req.method !== 'GET' || url.pathname !== '/peer/v1/status')
      return send(404, { error: { code: 'route_not_found', message: 'only GET /peer/v1/status' } });
    const nonce = url.searchParams.get('nonce') ?? '';
    if (!NONCE.test(nonce)) return send(400, { error: { code: 'invalid_request', message: 'nonce: 32 hex digits' } });
    const key = signedWith(options.keys(), req.headers.authorization, nonce);
    if (!key) return send(401, { error: { code: 'unauthorized', message: 'peer signature missing or wrong' } });
    const status = JSON.stringify(options.status());
    send(200, { status, mac: answerMac(key, nonce, status) });
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(options.port, options.host, () => ok(server));
  });
}

export function peerPort(server: Server): number {
  return (server.address() as AddressInfo).port;
}

export class PeerAuthError extends Error {
  override name = 'PeerAuthError';
}

async function ask(url: string, key: string, timeoutMs: number): Promise<{ status: number; answer?: PeerStatus }> {
  const nonce = randomBytes(16).toString('hex');
  const res = await fetch(`${url}?nonce=${nonce}`, {
    headers: { authorization: `NFSHA-HMAC ${requestMac(key, nonce)}` },
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (res.status === 401) return { status: 401 };
  if (!res.ok) throw new Error(`peer answered HTTP ${res.status}`);
  const body = Answer.parse(await res.json());
  // Only an answer to this request, from a holder of the secret, counts.
  if (!same(answerMac(key, nonce, body.status), body.mac))
    throw new PeerAuthError('the peer answer is not signed for this request (forged or replayed): ignored');
  return { status: 200, answer: PeerStatusSchema.parse(JSON.parse(body.status)) };
}

/**
 * Asks the peer for its status, signed with `token`; if the peer does not know it yet (a
 * rotation half done), with `previousToken`. Throws unless a verified answer came back.
 */
export async function fetchPeerStatus(url: string, keys: PeerKeys, timeoutMs: number): Promise<PeerStatus> {
  for (const key of [keys.token, keys.previousToken]) {
    if (!key) continue;
    const r = await ask(url, key, timeoutMs);
    if (r.answer) return r.answer;
  }
  throw new PeerAuthError('the peer refused our signature (peer secrets differ)');
}

/** Tracks whether the peer answered recently, and what it said. */
export class PeerWatch {
  #lastSuccess: number | null = null;
  #lastStatus: PeerStatus | null = null;
  #checks = 0;

  constructor(
    private readonly url: string,
    private readonly keys: () => PeerKeys,
    private readonly timeoutMs: number,
    private readonly silenceMs: number,
    private readonly now: () => number,
    private readonly onRejected: (err: Error) => void = () => {},
  ) {}

  async check(): Promise<void> {
    this.#checks++;
    try {
      this.#lastStatus = await fetchPeerStatus(this.url, this.keys(), this.timeoutMs);
      this.#lastSuccess = this.now();
    } catch (err) {
      // Silence is the signal; the time of the last success says how long it has lasted.
      if (err instanceof PeerAuthError) this.onRejected(err);
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
