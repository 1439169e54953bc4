/**
 * The agent's HTTP client, for the control plane and the peer: node:http and node:https with
 * keep-alive. Not fetch: Node's fetch (undici) is a large library of its own, and the agent makes
 * two to four requests a second for as long as it runs; a loop of requests measured 61.6 MiB
 * resident with fetch and 52.6 MiB with node:http (Node 24). A storage node's memory is nfsd's.
 */
import http from 'node:http';
import https from 'node:https';

export interface HttpAnswer {
  status: number;
  ok: boolean;
  text(): Promise<string>;
}

export interface HttpInit {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** Gives up on the request and the reading of its answer after this long: the promise rejects with a TimeoutError. */
  timeoutMs?: number;
}

export type HttpRequest = (url: string, init: HttpInit) => Promise<HttpAnswer>;

/** No answer the agent expects is near this; a larger one is refused rather than buffered. */
export const MAX_ANSWER_BYTES = 4 << 20;

/**
 * Keep-alive saves a TCP (and TLS) handshake per renewal. An idle socket is closed after 2 s, well
 * before a server's own idle timeout (Node's: 5 s), so a request never goes out on a socket the
 * server is closing at that moment.
 */
const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 4, timeout: 2000 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 4, timeout: 2000 }),
};

/**
 * A plain timer, not AbortSignal.timeout: that one's timer runs to its end after the answer came
 * and then builds a DOMException, and its listeners are added and removed per request. The agent
 * sends one or two requests a second; in a takeover's CPU profile in a lab guest that machinery
 * was 4–5 % of the agent's own time.
 */
export const request: HttpRequest = (url, init) =>
  new Promise<HttpAnswer>((resolve, reject) => {
    const target = new URL(url);
    if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new Error(`not an http(s) URL: ${url}`);
    const body = init.body === undefined ? undefined : Buffer.from(init.body);
    const timer =
      init.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            reject(Object.assign(new Error(`no answer within ${init.timeoutMs} ms`), { name: 'TimeoutError' }));
            req.destroy();
          }, init.timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    const req = (target.protocol === 'https:' ? https : http).request(
      target,
      {
        method: init.method ?? 'GET',
        headers: { ...init.headers, ...(body && { 'content-length': String(body.length) }) },
        agent: agents[target.protocol],
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_ANSWER_BYTES) res.destroy(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`));
          else chunks.push(chunk);
        });
        res.on('error', fail);
        res.on('end', () => {
          clearTimeout(timer);
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status, ok: status >= 200 && status < 300, text: async () => text });
        });
      },
    );
    req.on('error', fail);
    req.end(body);
  });
