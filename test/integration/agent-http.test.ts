/** The agent's HTTP client (agent/http.ts) against a real node:http server on loopback. */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MAX_ANSWER_BYTES, request } from '../../agent/http.ts';

let server: Server;
let base: string;
const connections: Socket[] = [];
let handler: (req: IncomingMessage, res: ServerResponse) => void;

before(async () => {
  server = createServer((req, res) => handler(req, res));
  server.on('connection', (s: Socket) => connections.push(s));
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((ok) => server.close(ok));
});

/** What the server received, and an answer. */
function echo(): { seen: { method: string; headers: IncomingMessage['headers']; body: string }[] } {
  const seen: { method: string; headers: IncomingMessage['headers']; body: string }[] = [];
  handler = (req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method!, headers: req.headers, body });
      res.writeHead(req.url === '/missing' ? 404 : 200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: req.url !== '/missing' }));
    });
  };
  return { seen };
}

describe('the agent HTTP client', () => {
  it('sends the method, headers and body, and reads the status and the answer', async () => {
    const { seen } = echo();
    const post = await request(`${base}/heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer x' },
      body: '{"é":1}',
    });
    assert.deepEqual([post.status, post.ok, await post.text()], [200, true, '{"ok":true}']);
    assert.equal(seen[0]!.method, 'POST');
    assert.equal(seen[0]!.body, '{"é":1}');
    assert.equal(seen[0]!.headers['content-length'], String(Buffer.byteLength('{"é":1}')), 'the length in bytes, not characters');
    assert.equal(seen[0]!.headers.authorization, 'Bearer x');
    const missing = await request(`${base}/missing`, {});
    assert.deepEqual([missing.status, missing.ok], [404, false]);
  });

  it('keeps the connection for the next request, and closes it after 2 s idle, before the server would', async () => {
    echo();
    await sleep(2500); // sockets of the test before are closed by now
    const before = connections.length;
    await request(`${base}/a`, {});
    await request(`${base}/b`, {});
    await request(`${base}/c`, { method: 'POST', body: '{}' });
    assert.equal(connections.length - before, 1, 'three requests, one connection');
    const socket = connections.at(-1)!;
    const closed = new Promise((ok) => socket.once('close', ok));
    await Promise.race([closed, sleep(4000).then(() => assert.fail('the idle connection was still open after 4 s'))]);
    assert.equal((await request(`${base}/d`, {})).status, 200, 'and a new one serves the next request');
  });

  it('gives up at the deadline with a TimeoutError, whether the server is silent or stalls mid-answer', async () => {
    handler = () => {}; // never answers
    const t0 = performance.now();
    await assert.rejects(request(`${base}/silent`, { timeoutMs: 200 }), { name: 'TimeoutError' });
    assert.ok(performance.now() - t0 < 1000);
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"partial":'); // and nothing more
    };
    await assert.rejects(request(`${base}/stall`, { timeoutMs: 200 }), { name: 'TimeoutError' });
  });

  it('leaves no timer behind once the answer is in, nor after a refused connection', async () => {
    echo();
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    await request(`${base}/a`, { timeoutMs: 60_000 });
    await assert.rejects(request('http://127.0.0.1:9/', { timeoutMs: 60_000 }), /ECONNREFUSED/);
    // The keep-alive socket's idle timer is a socket's, not a Timeout.
    assert.equal(timers(), before, 'a timer per request would run on for its minute after its answer');
  });

  it('refuses an answer larger than it would ever need rather than buffering it', async () => {
    handler = (_req, res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(1 << 20, 'x');
      for (let i = 0; i <= MAX_ANSWER_BYTES / chunk.length; i++) res.write(chunk);
      res.end();
    };
    await assert.rejects(request(`${base}/huge`, {}), /answer larger than/);
  });

  it('reports a refused connection as an error', async () => {
    await assert.rejects(request('http://127.0.0.1:9/', { timeoutMs: 2000 }), /ECONNREFUSED/);
  });
});
