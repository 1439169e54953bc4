/**
 * Live events over WebSocket (Node server only; Lambda has no long-lived connections):
 * GET /v1/clusters/{id}/events/stream[?cursor=…] upgrades, authenticated like the API
 * (Authorization: Bearer …, a read-only key is enough; a browser, which cannot set headers on a
 * WebSocket, offers the subprotocols `nfs-ha` and `nfs-ha.bearer.<key>` instead, as Kubernetes
 * does, so that the key never sits in a URL), then sends each new event of the
 * cluster as one JSON text message, oldest first. Without a cursor it starts at the end of the
 * timeline; with one (from the REST page or the last event received) it resumes after it, so a
 * client that reconnects loses nothing.
 *
 * Streams must never cost the lease its latency, whoever opens them: one poller per cluster
 * reads the store and fans out to every stream of that cluster (300 streams cost what one
 * does); upgrades are rate-limited; streams are capped per key and overall; a reader too slow
 * to take its messages is dropped; and the streams of a deleted cluster end (close code 4404).
 */
import { type IncomingMessage, type Server, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import type { ClusterEvent } from '../shared/events.ts';
import { ClusterId } from '../shared/names.ts';
import { accessFor, allows, type Credentials } from './auth.ts';
import { AddressSet, clientAddress, RateLimit } from './limits.ts';
import { EVENT_CURSOR, type Store } from './store/store.ts';

const STREAM_PATH = /^\/v1\/clusters\/([^/]+)\/events\/stream$/;
const POLL_MS = 500;
const PING_MS = 20_000;
/** Polls between two checks that the cluster still exists. */
const EXISTS_EVERY = 10;
export const STREAM_LIMITS = { perKey: 5, total: 200, maxBufferedBytes: 1 << 20 };
export const UPGRADE_LIMIT = { globalPerS: 50, globalBurst: 100, clientPerS: 5, clientBurst: 30 };
/** Close code sent when the cluster of a stream is deleted. */
export const CLOSE_CLUSTER_DELETED = 4404;

const key = (e: ClusterEvent) => `${String(e.at).padStart(15, '0')}#${e.id}`;
const cursorKey = (cursor: string) => {
  const m = EVENT_CURSOR.exec(cursor)!;
  return `${m[1]!.padStart(15, '0')}#${m[2]}`;
};

const PROTOCOL = 'nfs-ha';
const BEARER_PROTOCOL = /^nfs-ha\.bearer\.([A-Za-z0-9_-]{1,200})$/;

/** The key a browser offered as a subprotocol (Sec-WebSocket-Protocol: nfs-ha, nfs-ha.bearer.<key>). */
function protocolToken(header: string | undefined): string | undefined {
  for (const p of (header ?? '').split(',')) {
    const m = BEARER_PROTOCOL.exec(p.trim());
    if (m) return m[1];
  }
  return undefined;
}

function refuse(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

interface Subscriber {
  ws: WebSocket;
  keyId: string;
  /** Events that arrived while the subscriber caught up from its cursor. */
  buffer: ClusterEvent[] | null;
  /** The key of the last event sent. */
  last: string;
}

/** One cluster's poller: reads new events once and hands them to every subscriber. */
class ClusterFeed {
  readonly subscribers = new Set<Subscriber>();
  #cursor: string | undefined;
  #ready: Promise<void>;
  #stopped = false;
  readonly loop: Promise<void>;

  constructor(
    private readonly store: Store,
    private readonly clusterId: string,
    private readonly pollMs: number,
    private readonly log: Logger,
    private readonly onEmpty: () => void,
  ) {
    this.#ready = this.#skipToEnd();
    this.loop = this.#run();
  }

  /** The feed starts at the end of the timeline. */
  async #skipToEnd(): Promise<void> {
    for (;;) {
      const page = await this.store.listEvents(this.clusterId, { limit: 500, cursor: this.#cursor });
      const last = page.events.at(-1);
      if (last) this.#cursor = `${last.at}.${last.id}`;
      if (!page.cursor) return;
    }
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  async #run(): Promise<void> {
    await this.#ready.catch(() => {});
    for (let polls = 1; !this.#stopped; polls++) {
      try {
        if (polls % EXISTS_EVERY === 0 && !(await this.store.getCluster(this.clusterId))) {
          for (const s of this.subscribers) s.ws.close(CLOSE_CLUSTER_DELETED, 'the cluster was deleted');
          this.stop();
          return;
        }
        for (;;) {
          const page = await this.store.listEvents(this.clusterId, { limit: 100, cursor: this.#cursor });
          for (const e of page.events) {
            this.#cursor = `${e.at}.${e.id}`;
            for (const s of this.subscribers) send(s, e);
          }
          if (!page.cursor) break;
        }
      } catch (err) {
        this.log.warn({ clusterId: this.clusterId, err: (err as Error).message }, 'event stream: store read failed; retrying');
      }
      await new Promise((r) => setTimeout(r, this.pollMs));
    }
  }

  leave(s: Subscriber): void {
    this.subscribers.delete(s);
    if (this.subscribers.size === 0) {
      this.stop();
      this.onEmpty();
    }
  }

  stop(): void {
    this.#stopped = true;
  }
}

function send(s: Subscriber, e: ClusterEvent): void {
  if (s.buffer) {
    s.buffer.push(e);
    return;
  }
  const k = key(e);
  if (k <= s.last) return;
  // A reader that does not take its messages would hold them all in memory: drop it.
  if (s.ws.bufferedAmount > STREAM_LIMITS.maxBufferedBytes) {
    s.ws.terminate();
    return;
  }
  s.last = k;
  s.ws.send(JSON.stringify(e));
}

export function attachEventStream(
  server: Server,
  deps: { store: Store; credentials: Credentials; log: Logger; pollMs?: number; trustedProxies?: AddressSet; limits?: Partial<typeof STREAM_LIMITS> },
): { close(): Promise<void>; streams(): number } {
  // A browser's connection needs its subprotocol answered: the plain one, never the one carrying the key.
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024, handleProtocols: (offered) => (offered.has(PROTOCOL) ? PROTOCOL : false) });
  const pollMs = deps.pollMs ?? POLL_MS;
  const limits = { ...STREAM_LIMITS, ...deps.limits };
  const trusted = deps.trustedProxies ?? new AddressSet([]);
  const upgrades = new RateLimit(UPGRADE_LIMIT, Date.now());
  const feeds = new Map<string, ClusterFeed>();
  const stopped = new Set<Promise<void>>();
  let open = 0;
  const perKey = new Map<string, number>();

  const client = (req: IncomingMessage) => clientAddress(req.socket.remoteAddress ?? 'local', req.headers['x-forwarded-for'] as string | undefined, trusted);

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    void (async () => {
      if (!upgrades.allow(client(req), Date.now())) return refuse(socket, 429, 'too_many_requests', 'too many stream upgrades; wait a minute');
      const url = new URL(req.url ?? '/', 'http://stream');
      const match = STREAM_PATH.exec(url.pathname);
      if (!match) return refuse(socket, 404, 'route_not_found', `no WebSocket route at ${url.pathname}`);
      const clusterId = ClusterId.safeParse(match[1]);
      if (!clusterId.success) return refuse(socket, 400, 'invalid_request', 'the cluster id is not valid');
      const cursor = url.searchParams.get('cursor') ?? undefined;
      if (cursor !== undefined && !EVENT_CURSOR.test(cursor))
        return refuse(socket, 400, 'invalid_request', 'cursor: must be a cursor returned by a previous page');
      const token = /^Bearer ([\x21-\x7e]{1,200})$/.exec(req.headers.authorization ?? '')?.[1] ?? protocolToken(req.headers['sec-websocket-protocol']);
      if (!token) return refuse(socket, 401, 'unauthenticated', 'this route needs a credential: Authorization: Bearer <token>');
      const principal = await deps.credentials.authenticate(token);
      if (!principal) return refuse(socket, 401, 'invalid_credential', 'the credential is malformed, unknown or revoked');
      // The same rule as reading the cluster's timeline over REST.
      if (!allows(accessFor('GET', `/v1/clusters/${clusterId.data}/events`), principal))
        return refuse(socket, 403, 'forbidden', 'this credential may not read these events');
      if (open >= limits.total) return refuse(socket, 503, 'too_many_streams', `this control plane serves ${limits.total} streams already; retry later`);
      if ((perKey.get(principal.id) ?? 0) >= limits.perKey)
        return refuse(socket, 429, 'too_many_streams', `this key has ${limits.perKey} streams open already; close one first`);
      if (!(await deps.store.getCluster(clusterId.data))) return refuse(socket, 404, 'cluster_not_found', `no cluster "${clusterId.data}"`);
      wss.handleUpgrade(req, socket, head, (ws) => {
        // Counted once the stream exists: an upgrade that fails never holds a place.
        open++;
        perKey.set(principal.id, (perKey.get(principal.id) ?? 0) + 1);
        void subscribe(ws, clusterId.data, principal.id, cursor);
      });
    })().catch((err: Error) => {
      deps.log.warn({ err: err.message }, 'event stream upgrade failed');
      refuse(socket, 503, 'store_unavailable', 'could not open the event stream');
    });
  });

  function feedOf(clusterId: string): ClusterFeed {
    let feed = feeds.get(clusterId);
    if (!feed) {
      const f = new ClusterFeed(deps.store, clusterId, pollMs, deps.log, () => {
        if (feeds.get(clusterId) === f) feeds.delete(clusterId);
      });
      stopped.add(f.loop);
      void f.loop.finally(() => stopped.delete(f.loop));
      feeds.set(clusterId, f);
      feed = f;
    }
    return feed;
  }

  async function subscribe(ws: WebSocket, clusterId: string, keyId: string, from: string | undefined): Promise<void> {
    const feed = feedOf(clusterId);
    const s: Subscriber = { ws, keyId, buffer: [], last: from ? cursorKey(from) : '' };
    feed.subscribers.add(s);
    let alive = true;
    const ping = setInterval(() => {
      if (!alive) return ws.terminate();
      alive = false;
      ws.ping();
    }, PING_MS);
    ws.on('pong', () => (alive = true));
    ws.on('close', () => {
      clearInterval(ping);
      open--;
      perKey.set(keyId, (perKey.get(keyId) ?? 1) - 1);
      if (perKey.get(keyId) === 0) perKey.delete(keyId);
      feed.leave(s);
    });
    try {
      await feed.ready();
      // Resuming: what came after the cursor, read once for this subscriber, then the shared feed.
      let cursor = from;
      while (cursor !== undefined) {
        const page = await deps.store.listEvents(clusterId, { limit: 100, cursor });
        const buffered = s.buffer!;
        s.buffer = null;
        for (const e of page.events) send(s, e);
        s.buffer = buffered;
        cursor = page.cursor ?? undefined;
      }
    } catch (err) {
      deps.log.warn({ clusterId, err: (err as Error).message }, 'event stream: catching up failed');
    }
    const buffered = s.buffer ?? [];
    s.buffer = null;
    for (const e of buffered) send(s, e);
  }

  return {
    streams: () => open,
    /** Ends every stream and resolves once none is reading the store (which may be closed next). */
    async close() {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      for (const f of feeds.values()) f.stop();
      await Promise.all(stopped);
    },
  };
}
