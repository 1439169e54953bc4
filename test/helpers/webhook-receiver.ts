/**
 * A webhook receiver on loopback, as an operator would write one: it verifies every request
 * with the Standard Webhooks reference library (not our signing code) and records what it
 * accepted. It can be taken down (connection refused) and brought back on the same port, or
 * made to answer with an error status.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface Received {
  id: string;
  type: string;
  timestamp: string;
  data: Record<string, any>;
  /** The raw body, as signed. */
  body: string;
  headers: IncomingHttpHeaders;
}

export class WebhookReceiver {
  /** Verified messages, in arrival order (retries included). */
  readonly received: Received[] = [];
  /** Requests whose signature did not verify. */
  readonly rejected: string[] = [];
  /** The status to answer with (2xx: accept). */
  answer = 204;
  #server: Server | null = null;
  #port = 0;
  #secrets: string[] = [];

  /** The secrets of the webhooks this receiver stands for (each subscription has its own). */
  trust(secret: string): void {
    this.#secrets.push(secret);
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}/hooks/nfs-ha`;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
        const verified = this.#secrets.some((secret) => {
          try {
            new Webhook(secret).verify(body, headers);
            return true;
          } catch {
            return false;
          }
        });
        if (!verified) {
          this.rejected.push(body);
          res.writeHead(401).end();
          return;
        }
        if (this.answer >= 200 && this.answer < 300) {
          const parsed = JSON.parse(body) as Omit<Received, 'id' | 'headers' | 'body'>;
          this.received.push({ id: headers['webhook-id']!, ...parsed, body, headers: req.headers });
        }
        res.writeHead(this.answer).end();
      });
    });
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(this.#port, '127.0.0.1', () => ok());
    });
    this.#port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  /** Down: nothing listens on the port any more. */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise((ok) => server.close(ok));
  }

  types(): string[] {
    return this.received.map((r) => r.type);
  }

  /** Messages by webhook-id: retries of one message collapse, as a deduping receiver does. */
  unique(): Map<string, Received> {
    return new Map(this.received.map((r) => [r.id, r]));
  }
}
