import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { dynamoClient } from '../../control-plane/store/client.ts';
import { startEmbeddedDynamo } from '../../control-plane/store/embedded.ts';
import { after, describe, it } from 'node:test';
import { exampleSpec, hb, startHarness, tempDir } from '../helpers/control-plane.ts';

const root = new URL('../..', import.meta.url).pathname;
const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

describe('restart and the data directory', () => {
  it('a restarted control plane keeps the lease and epoch', async () => {
    const dataDir = await tempDir();
    dirs.push(dataDir);
    const first = await startHarness({ dataDir, keepData: true });
    await first.clusterHeldByNodeA('persist');
    first.clock.advance(3201);
    await first.call('POST', '/v1/clusters/persist/nodes/node-b/heartbeat', hb('passive'));
    const before = await first.store.getLease('persist');
    await first.close();

    const second = await startHarness({ dataDir, keepData: true });
    second.clock.t = first.clock.t + 100;
    try {
      assert.deepEqual(await second.store.getLease('persist'), before);
      const status = await second.call('GET', '/v1/clusters/persist/status');
      assert.equal(status.body.lease.holder, 'node-b');
      assert.equal(status.body.lease.epoch, 2);
      const b = await second.call('POST', '/v1/clusters/persist/nodes/node-b/heartbeat', hb('activating', 2));
      assert.equal(b.body.directive.action, 'activate');
      assert.equal(b.body.directive.epoch, 2);
      const a = await second.call('POST', '/v1/clusters/persist/nodes/node-a/heartbeat', hb('active', 1));
      assert.equal(a.body.directive.action, 'demote');
      const events = await second.call('GET', '/v1/clusters/persist/events');
      assert.equal(events.body.events.filter((e: { type: string }) => e.type === 'fencing.decided').length, 2);
    } finally {
      await second.close();
    }
  });
});

/** Starts `npm start`'s entry as its own process and resolves once it listens (or exits). */
function startServer(
  dataDir: string,
  port: number,
  args: string[] = [],
): Promise<{ child: ChildProcess; output: () => string; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'control-plane/server.ts', ...args], {
    cwd: root,
    env: { ...process.env, NFSHA_DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((ok) => child.on('exit', (code) => ok(code)));
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`server did not start: ${out}`)), 30_000);
    const done = () => {
      clearTimeout(timer);
      ok({ child, output: () => out, exited });
    };
    child.stdout!.on('data', () => out.includes('listening on') && done());
    void exited.then(done);
  });
}

describe('npm start', () => {
  it('serves the API on the embedded store; a second process on the same data directory fails clearly', async () => {
    const dataDir = await tempDir();
    dirs.push(dataDir);
    const port = 20000 + Math.floor(Math.random() * 20000);
    const server = await startServer(dataDir, port);
    try {
      assert.match(server.output(), /listening on http:\/\/127\.0\.0\.1:\d+ \(store: embedded DynamoDB \(dynalite\) with data in /);
      const health = await fetch(`http://127.0.0.1:${port}/healthz`);
      assert.equal(health.status, 200);
      // First start on an empty store: one admin key, in a 0600 file of the data directory; the
      // log (stderr is no terminal here, as under systemd) says where, never the key.
      const keyFile = join(dataDir, 'initial-admin-key');
      const adminKey = (await readFile(keyFile, 'utf8')).trim();
      assert.match(adminKey, /^nfsha_op_/);
      assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
      assert.match(server.output(), /the admin API key is in .*initial-admin-key \(mode 0600\)/);
      assert.ok(!server.output().includes(adminKey), 'never printed when stderr is not a terminal');
      // The data directory is the control plane's alone: 0700, every file in it 0600.
      assert.equal((await stat(dataDir)).mode & 0o777, 0o700);
      const files = (await readdir(dataDir, { recursive: true, withFileTypes: true })).filter((f) => f.isFile());
      assert.ok(files.length > 3);
      for (const f of files) assert.equal((await stat(join(f.parentPath, f.name))).mode & 0o777, 0o600, `${f.name} is 0600`);
      const anonymous = await fetch(`http://127.0.0.1:${port}/v1/clusters`);
      assert.equal(anonymous.status, 401);
      const created = await fetch(`http://127.0.0.1:${port}/v1/clusters`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${adminKey}` },
        body: JSON.stringify(await exampleSpec('via-http')),
      });
      assert.equal(created.status, 201);

      const second = await startServer(dataDir, port + 1);
      const code = await second.exited;
      assert.equal(code, 2);
      assert.match(second.output(), /nfs-ha: data directory .* is in use by another nfs-ha control plane/);
      assert.doesNotMatch(second.output(), /\n\s+at /, 'no stack trace');
    } finally {
      server.child.kill('SIGTERM');
      // Its output in the message: exit 1 here was seen once in this suite, not since reproduced.
      assert.equal(await server.exited, 0, `stops cleanly on SIGTERM; its output:\n${server.output().slice(-2000)}`);
    }

    // Every admin key lost: whoever holds the data directory makes a new one, the server stopped.
    await rm(join(dataDir, 'initial-admin-key'));
    const recovery = await startServer(dataDir, port + 2, ['--recover-admin-key']);
    assert.equal(await recovery.exited, 0, recovery.output());
    const recovered = (await readFile(join(dataDir, 'initial-admin-key'), 'utf8')).trim();
    const again = await startServer(dataDir, port + 3);
    try {
      const listed = await fetch(`http://127.0.0.1:${port + 3}/v1/keys`, { headers: { authorization: `Bearer ${recovered}` } });
      assert.equal(listed.status, 200, 'the recovered key is an admin key');
    } finally {
      again.child.kill('SIGTERM');
      await again.exited;
    }
  });

  it('the embedded store refuses a local process that lacks its per-start credentials', async () => {
    const dataDir = await tempDir();
    dirs.push(dataDir);
    const dynamo = await startEmbeddedDynamo(dataDir);
    try {
      const stranger = dynamoClient({ endpoint: dynamo.endpoint, local: { accessKeyId: 'embedded', secretAccessKey: 'embedded' } });
      await assert.rejects(stranger.send(new ListTablesCommand({})), /security token included in the request is invalid/);
      stranger.destroy();
      const own = dynamoClient({ endpoint: dynamo.endpoint, local: dynamo.credentials });
      assert.ok(Array.isArray((await own.send(new ListTablesCommand({}))).TableNames));
      own.destroy();
    } finally {
      await dynamo.close();
    }
  });
});
