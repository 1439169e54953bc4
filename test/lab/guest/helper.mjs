// Lab only: the host drives each guest through this small HTTP service on the lab's private
// network. It runs argument arrays (no shell), writes files, and answers the overlap sampler.
import { execFile } from 'node:child_process';
import { readdirSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { networkInterfaces } from 'node:os';
import { dirname } from 'node:path';

const monotonicMs = () => Number(process.hrtime.bigint() / 1000n) / 1000;

function body(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {}));
    req.on('error', reject);
  });
}

function exec({ argv, timeoutMs = 60_000, env }) {
  const started = monotonicMs();
  return new Promise((resolve) => {
    execFile(argv[0], argv.slice(1), { timeout: timeoutMs, maxBuffer: 64 << 20, env: { ...process.env, LC_ALL: 'C', ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, signal: err?.signal ?? null, stdout, stderr, ms: monotonicMs() - started });
    });
  });
}

function sample(vg, vip) {
  let vgActive = false;
  try {
    vgActive = readdirSync('/dev/mapper').some((n) => n.startsWith(`${vg.replaceAll('-', '--')}-`));
  } catch {}
  const hasVip = Object.values(networkInterfaces()).some((list) => list?.some((a) => a.address === vip));
  return { t: monotonicMs(), vgActive, vip: hasVip };
}

createServer(async (req, res) => {
  const reply = (status, value) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(value));
  };
  try {
    const url = new URL(req.url, 'http://guest');
    if (req.method === 'GET' && url.pathname === '/sample') return reply(200, sample(url.searchParams.get('vg'), url.searchParams.get('vip')));
    if (req.method === 'POST' && url.pathname === '/exec') return reply(200, await exec(await body(req)));
    if (req.method === 'POST' && url.pathname === '/write') {
      const { path, content, mode = 0o644 } = await body(req);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, content, { mode });
      return reply(200, { ok: true });
    }
    reply(404, { error: 'no such endpoint' });
  } catch (err) {
    reply(500, { error: String(err) });
  }
}).listen(7000, '0.0.0.0', () => console.log('nfs-ha lab: guest helper listening on port 7000'));
