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
import type { PromiseAnswer, PromiseAsk, PromiseRequest } from '../shared/failsafe.ts';
import { NODE_ROLES } from '../shared/node-role.ts';
import { request } from './http.ts';
import { MAX_CLIENT_CONNECTIONS } from './tickle.ts';

export const PeerStatusSchema = z.object({
  node: z.string(),
  role: z.enum(NODE_ROLES),
  epoch: z.number().int(),
  /** Time left on this node's lease (or promise), by its own monotonic clock (null: holds none). */
  leaseRemainingMs: z.number().nullable(),
  /** Serving on its peer's promise, the arbiter unreachable: since how long, on its clock. */
  failsafe: z.object({ vouchedBy: z.string(), forMs: z.number() }).optional(),
  /**
   * A holder's last committed renewal: the last promise request it had sent by then (its agent
   * process and sequence number). It relies on no promise asked for up to it; the peer may drop
   * one that no later request extended (shared/failsafe.ts, released).
   */
  released: z.object({ instance: z.string().regex(/^[0-9a-f]{16}$/), seq: z.number().int().nonnegative() }).optional(),
  /** A promise it gave its peer that still runs. */
  vouching: z.object({ for: z.string(), epoch: z.number().int(), remainingMs: z.number() }).optional(),
  /**
   * An active's NFS clients connected to the VIP ("address:port"): the peer tickles them when it
   * takes over (tickle.ts), which checks each. Loosely typed here: an entry that is not a
   * connection must not make the whole answer count as silence.
   */
  clients: z.array(z.string().max(21)).max(MAX_CLIENT_CONNECTIONS).optional(),
});
export type PeerStatus = z.infer<typeof PeerStatusSchema>;

/** The secrets of the channel: `token` signs; `previousToken` is still accepted during a rotation. */
export interface PeerKeys {
  token: string;
  previousToken?: string | undefined;
}

const NONCE = /^[0-9a-f]{32}$/;
const Answer = z.object({ status: z.string().max(4096), mac: z.string().max(100) });
/** A promise request (vouch for `node` serving under `epoch`), or a handover (`node` gave the lease of `epoch` back). */
const EpochRequestSchema = z
  .object({ node: z.string().max(100), epoch: z.number().int().nonnegative(), instance: z.string().regex(/^[0-9a-f]{16}$/), seq: z.number().int().positive() })
  .strict();
const ReleaseSchema = z
  .object({
    node: z.string().max(100),
    instance: z.string().regex(/^[0-9a-f]{16}$/),
    seq: z.number().int().positive(),
    /** The last promise request of this process that it no longer relies on. */
    through: z.number().int().nonnegative(),
  })
  .strict();
const ReleaseAnswerSchema = z.object({ ended: z.boolean() });
const HandoverAnswerSchema = z.object({ polling: z.boolean() });
const PromiseAnswerSchema = z.discriminatedUnion('accepted', [
  z.object({ accepted: z.literal(true), ttlMs: z.number().int().positive() }),
  z.object({ accepted: z.literal(false), reason: z.string().max(1000) }),
]);
/** Instances whose last sequence number is remembered: an agent restarts rarely, a few suffice. */
const REMEMBERED_INSTANCES = 16;

const mac = (key: string, ...parts: string[]) => createHmac('sha256', key).update(parts.join('\n')).digest('base64url');

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const requestMac = (key: string, nonce: string) => mac(key, 'nfs-ha peer request', nonce);
/** The POST routes: the label their signature covers (with the nonce and the body), and their body. */
const POSTS = {
  '/peer/v1/promise': { label: 'nfs-ha peer promise', body: EpochRequestSchema },
  '/peer/v1/release': { label: 'nfs-ha peer release', body: ReleaseSchema },
  '/peer/v1/handover': { label: 'nfs-ha peer handover', body: EpochRequestSchema },
} as const;
type PostRoute = keyof typeof POSTS;
const postMac = (key: string, route: PostRoute, nonce: string, body: string) => mac(key, POSTS[route].label, nonce, body);
const answerMac = (key: string, nonce: string, status: string) => mac(key, 'nfs-ha peer status', nonce, status);

/** The key a request was signed with, among those accepted; null when none. */
function signedWith(keys: PeerKeys, header: string | undefined, expected: (key: string) => string): string | null {
  const presented = /^NFSHA-HMAC ([A-Za-z0-9_-]{43})$/.exec(header ?? '')?.[1];
  if (!presented) return null;
  for (const key of [keys.token, keys.previousToken]) if (key && same(expected(key), presented)) return key;
  return null;
}

const MAX_PROMISE_BODY = 1024;

export function startPeerServer(options: {
  host: string;
  port: number;
  keys: () => PeerKeys;
  status: () => PeerStatus;
  /** Answers a failsafe promise request (absent: every request is refused). */
  promise?: (req: PromiseRequest) => Promise<PromiseAnswer>;
  /** The peer no longer relies on the promises it asked for up to `through`; true if one ended here. */
  release?: (node: string, through: PromiseAsk) => boolean;
  /** The peer gave the lease of `epoch` back to the arbiter; true if this node asks the arbiter for it now. */
  handover?: (node: string, epoch: number) => boolean;
}): Promise<Server> {
  const lastSeq = new Map<string, number>();
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const url = new URL(req.url ?? '/', 'http://peer');
    const route = `${req.method} ${url.pathname}`;
    const post = req.method === 'POST' && url.pathname in POSTS ? (url.pathname as PostRoute) : null;
    if (route !== 'GET /peer/v1/status' && !post)
      return send(404, { error: { code: 'route_not_found', message: `only GET /peer/v1/status and POST ${Object.keys(POSTS).join(', ')}` } });
    const nonce = url.searchParams.get('nonce') ?? '';
    if (!NONCE.test(nonce)) return send(400, { error: { code: 'invalid_request', message: 'nonce: 32 hex digits' } });
    const signed = (answer: unknown, key: string) => {
      const body = JSON.stringify(answer);
      send(200, { status: body, mac: answerMac(key, nonce, body) });
    };
    if (route === 'GET /peer/v1/status') {
      const key = signedWith(options.keys(), req.headers.authorization, (k) => requestMac(k, nonce));
      if (!key) return send(401, { error: { code: 'unauthorized', message: 'peer signature missing or wrong' } });
      return signed(options.status(), key);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_PROMISE_BODY) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const key = signedWith(options.keys(), req.headers.authorization, (k) => postMac(k, post!, nonce, body));
      if (!key) return send(401, { error: { code: 'unauthorized', message: 'peer signature missing or wrong' } });
      const schema = POSTS[post!].body;
      let parsed: z.infer<(typeof POSTS)[PostRoute]['body']>;
      try {
        parsed = schema.parse(JSON.parse(body));
      } catch {
        return send(400, { error: { code: 'invalid_request', message: `body: { ${Object.keys(schema.shape).join(', ')} }` } });
      }
      // One sequence per agent process, across routes: a request is used once.
      const fresh = parsed.seq > (lastSeq.get(parsed.instance) ?? 0);
      if (fresh) {
        lastSeq.delete(parsed.instance);
        lastSeq.set(parsed.instance, parsed.seq);
        if (lastSeq.size > REMEMBERED_INSTANCES) lastSeq.delete(lastSeq.keys().next().value!);
      }
      if ('through' in parsed) return signed({ ended: fresh && (options.release?.(parsed.node, { instance: parsed.instance, seq: parsed.through }) ?? false) }, key);
      if (post === '/peer/v1/handover') return signed({ polling: fresh && (options.handover?.(parsed.node, parsed.epoch) ?? false) }, key);
      if (!fresh) return signed({ accepted: false, reason: 'replayed request (sequence number already seen)' }, key);
      const request = { node: parsed.node, epoch: parsed.epoch, asked: { instance: parsed.instance, seq: parsed.seq } };
      if (!options.promise) return signed({ accepted: false, reason: 'this agent gives no promises' }, key);
      options.promise(request).then(
        (answer) => signed(answer, key),
        (err: Error) => signed({ accepted: false, reason: `no promise: ${err.message}` }, key),
      );
    });
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

/** One signed request; the verified answer, or null when the peer refused this key. */
async function ask<T>(url: string, key: string, timeoutMs: number, schema: z.ZodType<T>, body?: string): Promise<T | null> {
  const nonce = randomBytes(16).toString('hex');
  const route = new URL(url).pathname as PostRoute;
  const res = await request(`${url}?nonce=${nonce}`, {
    ...(body === undefined
      ? { headers: { authorization: `NFSHA-HMAC ${requestMac(key, nonce)}` } }
      : { method: 'POST', body, headers: { authorization: `NFSHA-HMAC ${postMac(key, route, nonce, body)}`, 'content-type': 'application/json' } }),
    timeoutMs,
  });
  if (res.status === 401) return null;
  if (!res.ok) throw new Error(`peer answered HTTP ${res.status}`);
  const answer = Answer.parse(JSON.parse(await res.text()));
  // Only an answer to this request, from a holder of the secret, counts.
  if (!same(answerMac(key, nonce, answer.status), answer.mac))
    throw new PeerAuthError('the peer answer is not signed for this request (forged or replayed): ignored');
  return schema.parse(JSON.parse(answer.status));
}

/**
 * A signed request, with `token`; if the peer does not know it yet (a rotation half done), with
 * `previousToken`. Throws unless a verified answer came back.
 */
async function askEither<T>(url: string, keys: PeerKeys, timeoutMs: number, schema: z.ZodType<T>, body?: string): Promise<T> {
  for (const key of [keys.token, keys.previousToken]) {
    if (!key) continue;
    const answer = await ask(url, key, timeoutMs, schema, body);
    if (answer !== null) return answer;
  }
  throw new PeerAuthError('the peer refused our signature (peer secrets differ)');
}

/** Asks the peer for its status. */
export function fetchPeerStatus(url: string, keys: PeerKeys, timeoutMs: number): Promise<PeerStatus> {
  return askEither(url, keys, timeoutMs, PeerStatusSchema);
}

/** Asks the peer for a failsafe promise; `instance` and `seq` make each request unique (no replays). */
export function requestPromise(url: string, keys: PeerKeys, timeoutMs: number, req: PromiseRequest & { instance: string; seq: number }): Promise<PromiseAnswer> {
  return askEither(url, keys, timeoutMs, PromiseAnswerSchema, JSON.stringify(req));
}

/** Tells the peer this process relies on none of the promises it asked for up to `through` (shared/failsafe.ts, released). */
export async function sendRelease(url: string, keys: PeerKeys, timeoutMs: number, release: z.infer<typeof ReleaseSchema>): Promise<boolean> {
  return (await askEither(url, keys, timeoutMs, ReleaseAnswerSchema, JSON.stringify(release))).ended;
}

/** Tells the peer that `node` gave the lease of `epoch` back to the arbiter; whether it asks for it now. */
export async function sendHandover(url: string, keys: PeerKeys, timeoutMs: number, handover: z.infer<typeof EpochRequestSchema>): Promise<boolean> {
  return (await askEither(url, keys, timeoutMs, HandoverAnswerSchema, JSON.stringify(handover))).polling;
}

/** Tracks whether the peer answered recently, and what it said. */
export class PeerWatch {
  #lastSuccess: number | null = null;
  #lastStatus: PeerStatus | null = null;
  #clients: readonly string[] = [];
  #checks = 0;
  readonly #instance = randomBytes(8).toString('hex');
  #seq = 0;

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
      const status = await fetchPeerStatus(this.url, this.keys(), this.timeoutMs);
      this.#lastStatus = status;
      this.#lastSuccess = this.now();
      // The list of the peer's last term as the active, kept through its silence (a crash) and
      // its release (a switchover): the next takeover tickles it. Stale entries are harmless (a
      // connection the new active does have ignores the tickle); its next term replaces them.
      if (status.role === 'active') this.#clients = status.clients ?? [];
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

  /** The last promise request this process sent (seq 0: none yet). */
  asked(): PromiseAsk {
    return { instance: this.#instance, seq: this.#seq };
  }

  /** Tells the peer that `node` relies on none of this process's promise requests up to `through.seq`; whether one ended there. */
  release(node: string, through: PromiseAsk, timeoutMs: number): Promise<boolean> {
    this.#seq += 1;
    return sendRelease(new URL('release', this.url).href, this.keys(), timeoutMs, { node, instance: this.#instance, seq: this.#seq, through: through.seq });
  }

  /** Tells the peer that `node` gave the lease of `epoch` back, so that it asks the arbiter now rather than at its next tick. */
  handover(node: string, epoch: number, timeoutMs: number): Promise<boolean> {
    this.#seq += 1;
    return sendHandover(new URL('handover', this.url).href, this.keys(), timeoutMs, { node, epoch, instance: this.#instance, seq: this.#seq });
  }

  /** Asks the peer for a failsafe promise for `node` serving under `epoch`; throws when it does not answer. */
  promise(node: string, epoch: number, timeoutMs: number): Promise<PromiseAnswer> {
    this.#seq += 1;
    return requestPromise(new URL('promise', this.url).href, this.keys(), timeoutMs, { node, epoch, instance: this.#instance, seq: this.#seq });
  }

  /** The NFS clients connected to the peer when it last answered as the active. */
  clients(): readonly string[] {
    return this.#clients;
  }

  /** The peer's latest status while it is reachable; null otherwise. */
  status(): PeerStatus | null {
    return this.reachable() ? this.#lastStatus : null;
  }
}
