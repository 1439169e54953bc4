/**
 * Live events over WebSocket (Node server only; Lambda has no long-lived connections):
 * GET /v1/clusters/{id}/events/stream[?cursor=…] upgrades, authenticated like the API
 * (Authorization: Bearer …, a read-only key is enough), then sends each new event of the
 * cluster as one JSON text message, oldest first. Without a cursor it starts at the end of the
 * timeline; with one (from the REST page or the last event received) it resumes after it, so a
 * client that reconnects loses nothing.
 */
import { type IncomingMessage, type Server, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { ClusterId } from '../shared/names.ts';
import { accessFor, allows, type Credentials } from './auth.ts';
import { EVENT_CURSOR, type Store } from './store/store.ts';

const STREAM_PATH = /^\/v1\/clusters\/([^/]+)\/events\/stream$/;
const POLL_MS = 500;
const PING_MS = 20_000;

function refuse(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

export function attachEventStream(server: Server, deps: { store: Store; credentials: Credentials; log: Logger; pollMs?: number }): { close(): Promise<void> } {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 });
  const pollMs = deps.pollMs ?? POLL_MS;

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://stream');
      const match = STREAM_PATH.exec(url.pathname);
      if (!match) return refuse(socket, 404, 'route_not_found', `no WebSocket route at ${url.pathname}`);
      const clusterId = ClusterId.safeParse(match[1]);
      if (!clusterId.success) return refuse(socket, 400, 'invalid_request', 'the cluster id is not valid');
      const cursor = url.searchParams.get('cursor') ?? undefined;
      if (cursor !== undefined && !EVENT_CURSOR.test(cursor))
        return refuse(socket, 400, 'invalid_request', 'cursor: must be a cursor returned by a previous page');
      const token = /^Bearer ([\x21-\x7e]{1,200})$/.exec(req.headers.authorization ?? '')?.[1];
      if (!token) return refuse(socket, 401, 'unauthenticated', 'this route needs a credential: Authorization: Bearer <token>');
      const principal = await deps.credentials.authenticate(token);
      if (!principal) return refuse(socket, 401, 'invalid_credential', 'the credential is malformed, unknown or revoked');
      // The same rule as reading the cluster's timeline over REST.
      if (!allows(accessFor('GET', `/v1/clusters/${clusterId.data}/events`), principal))
        return refuse(socket, 403, 'forbidden', 'this credential may not read these events');
      if (!(await deps.store.getCluster(clusterId.data))) return refuse(socket, 404, 'cluster_not_found', `no cluster "${clusterId.data}"`);
      wss.handleUpgrade(req, socket, head, (ws) => stream(ws, clusterId.data, cursor));
    })().catch((err: Error) => {
      deps.log.warn({ err: err.message }, 'event stream upgrade failed');
      refuse(socket, 503, 'store_unavailable', 'could not open the event stream');
    });
  });

  /** The streams' polling loops, so close() can wait for them. */
  const loops = new Set<Promise<void>>();

  /** Sends every event after `cursor` (or after the current end) as it is recorded. */
  function stream(ws: WebSocket, clusterId: string, from: string | undefined): void {
    let cursor = from;
    let open = true;
    let alive = true;
    ws.on('close', () => (open = false));
    ws.on('pong', () => (alive = true));
    const ping = setInterval(() => {
      if (!alive) return ws.terminate();
      alive = false;
      ws.ping();
    }, PING_MS);
    const loop = (async () => {
      let catchingUp = from === undefined;
      while (open) {
        try {
          const page = await deps.store.listEvents(clusterId, { limit: 100, cursor });
          for (const e of page.events) {
            if (!catchingUp) ws.send(JSON.stringify(e));
            cursor = `${e.at}.${e.id}`;
          }
          if (page.cursor) continue;
          catchingUp = false;
        } catch (err) {
          deps.log.warn({ clusterId, err: (err as Error).message }, 'event stream: store read failed; retrying');
        }
        await new Promise((r) => setTimeout(r, pollMs));
      }
      clearInterval(ping);
    })();
    loops.add(loop);
    void loop.finally(() => loops.delete(loop));
  }

  return {
    /** Ends every stream and resolves once none is reading the store (which may be closed next). */
    async close() {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      await Promise.all(loops);
    },
  };
}
