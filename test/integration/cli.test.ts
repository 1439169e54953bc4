/** The operator CLI, as the package ships it (its bundle), against a control plane serving HTTP on loopback. */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { buildBundle } from '../../infra/build.ts';
import { WebhookReceiver } from '../helpers/webhook-receiver.ts';
import { exampleSpec, type Harness, hb, runCommand, serveHarness, startHarness, tempDir } from '../helpers/control-plane.ts';

const root = new URL('../..', import.meta.url).pathname;
let h: Harness;
let http: Awaited<ReturnType<typeof serveHarness>>;
let dir: string;
let bundle: string;

before(async () => {
  h = await startHarness();
  http = await serveHarness(h);
  dir = await tempDir('nfs-ha-cli-');
  bundle = (await buildBundle('cli', dir)).path;
});
after(async () => {
  await http.close();
  await h.close();
});

function cli(args: string[], key: string | null = h.adminToken) {
  const env = { ...process.env, NFSHA_URL: http.url, NFSHA_API_KEY: key ?? '', HOME: dir };
  return runCommand([process.execPath, bundle, ...args], { cwd: root, env });
}

describe('nfs-ha CLI', () => {
  it('validate: a good spec (YAML) with its expected detection time; a bad one with every field named', async () => {
    const good = join(dir, 'cluster.yaml');
    await writeFile(good, stringify(await exampleSpec('cli-prod')));
    const ok = await cli(['validate', '-f', good]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /✓ .*cluster cli-prod, nodes node-a and node-b, VIP 10\.88\.0\.100\/24/);
    assert.match(ok.stdout, /detected in 0\.5–1\.5 s \(early fencing\), 2\.7–3\.7 s when only its lease can tell/);
    const spec = (await exampleSpec('cli-bad')) as any;
    spec.nfs.exports[1].fsid = 101;
    spec.timing = { leaseTtlMs: 1000 };
    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify(spec));
    const r = await cli(['validate', '-f', bad, '--json']);
    assert.equal(r.code, 1);
    const problems = (JSON.parse(r.stdout) as { problems: string[] }).problems;
    assert.ok(problems.some((p) => p.startsWith('nfs.exports.1.fsid: fsid 101 is already used')));
    assert.ok(problems.some((p) => p.startsWith('timing.leaseTtlMs:')));
  });

  it('apply creates, then reports a match, then shows a difference (--dry-run) and applies it', async () => {
    const file = join(dir, 'cluster.yaml');
    const created = await cli(['apply', '-f', file]);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /created cluster cli-prod .*nfs-ha enrol cli-prod <node>/);
    assert.match((await cli(['apply', '-f', file])).stdout, /already matches/);
    await writeFile(file, (await readFile(file, 'utf8')).replace('fsid: 102', 'fsid: 103'));
    const dry = await cli(['apply', '-f', file, '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /dry run, nothing changed\):\n {2}nfs\.exports\[1\]\.fsid: 102 → 103$/m);
    assert.equal(JSON.parse((await cli(['clusters', '--json'])).stdout).clusters[0].specVersion, 1);
    const applied = await cli(['apply', '-f', file]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(
      applied.stdout,
      /updated cluster cli-prod to spec version 2:\n {2}nfs\.exports\[1\]\.fsid: 102 → 103\n.*the passive agent restarts to take the rest/,
    );
    assert.match((await cli(['apply', '-f', file])).stdout, /already matches/);
    const renamed = (await readFile(file, 'utf8')).replaceAll('node-b', 'node-c');
    await writeFile(join(dir, 'renamed.yaml'), renamed);
    const refused = await cli(['apply', '-f', join(dir, 'renamed.yaml')]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /immutable_field: the nodes of a cluster cannot change/);
  });

  it('status: one glance at who is active, and --json', async () => {
    await h.call('POST', '/v1/clusters/cli-prod/nodes/node-a/heartbeat', hb('passive'));
    await h.call('POST', '/v1/clusters/cli-prod/nodes/node-b/heartbeat', hb('passive', 0, true));
    const r = await cli(['status', 'cli-prod']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^cluster cli-prod {3}epoch 1 {3}fencing: node-a/m);
    assert.match(r.stdout, /^node-a \*\s+passive\s+0\s/m);
    assert.match(r.stdout, /^node-b\s+passive\s+0\s+\S+ s ago\s+yes\s+0x[0-9a-f]{16}\s+-\s+-$/m);
    assert.match(r.stdout, /fencing: epoch 1 \(cold-start\), NOT YET CONFIRMED/);
    const json = JSON.parse((await cli(['status', 'cli-prod', '--json'])).stdout);
    assert.equal(json.lease.holder, 'node-a');

    // Each resource's state, from the holder's own reports since its grant.
    await h.call('POST', '/v1/clusters/cli-prod/nodes/node-a/fencing', { epoch: 1, keys: [] });
    // Within one millisecond of the (manual) clock, events sort by id: the agent's ids sort in report order.
    let seq = 0;
    const report = (phase: string, direction: string, status: string) =>
      h.call('POST', '/v1/clusters/cli-prod/nodes/node-a/phases', { reportId: `report-${String(++seq).padStart(4, '0')}`, epoch: 1, phase, direction, status });
    for (const phase of ['scsi-reservation', 'volume-group', 'filesystem', 'nfs-server']) await report(phase, 'start', 'succeeded');
    assert.match((await cli(['status', 'cli-prod'])).stdout, /^node-a \*\s.*\s4 running$/m);
    await report('nfs-server', 'monitor', 'failed');
    await report('exports', 'start', 'started');
    assert.match((await cli(['status', 'cli-prod'])).stdout, /^node-a \*\s.*\snfs-server FAILED, exports STARTING$/m);
    assert.deepEqual(JSON.parse((await cli(['status', 'cli-prod', '--json'])).stdout).nodes[0].resources, {
      'scsi-reservation': 'running',
      'volume-group': 'running',
      filesystem: 'running',
      'nfs-server': 'failed',
      exports: 'starting',
    });

    assert.match((await cli(['maintenance', 'cli-prod', 'on'])).stdout, /maintenance mode ON/);
    assert.match((await cli(['standby', 'cli-prod', 'node-b'])).stdout, /node-b is in standby/);
    const modes = (await cli(['status', 'cli-prod'])).stdout;
    assert.match(modes, /^MAINTENANCE MODE: no restarts, releases or takeovers$/m);
    assert.match(modes, /^standby: node-b$/m);
    assert.match((await cli(['standby', 'cli-prod', 'node-b', '--off'])).stdout, /node-b is eligible again; in standby now: none/);
    assert.match((await cli(['maintenance', 'cli-prod', 'off'])).stdout, /maintenance mode off/);
    assert.match((await cli(['maintenance', 'cli-prod'])).stdout, /^maintenance mode is off for cli-prod$/m);
    const bad = await cli(['maintenance', 'cli-prod', 'maybe']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /takes "on" or "off"/);
  });

  it("keys and enrolment tokens; errors come back as one line with the API's code", async () => {
    const created = JSON.parse((await cli(['keys', 'create', '--role', 'read-only', '--name', 'dashboards', '--json'])).stdout) as { id: string; key: string };
    assert.match(created.key, /^nfsha_op_/);
    assert.match((await cli(['keys', 'list'])).stdout, new RegExp(`${created.id}  read-only dashboards`));
    assert.match((await cli(['enrol', 'cli-prod', 'node-b'])).stdout, /enrolment token for node-b of cli-prod, valid until .*\nnfsha_en_/);
    const denied = await cli(['keys', 'list'], created.key);
    assert.deepEqual(
      [denied.code, denied.stderr.trim()],
      [1, "nfs-ha: forbidden: this credential may not GET /v1/keys; the key from NFSHA_API_KEY is read-only or an agent's: use an admin key"],
    );
    const anonymous = await cli(['clusters'], null);
    assert.match(anonymous.stderr, /^nfs-ha: unauthenticated: .*; no API key was given: pass one with --key, NFSHA_API_KEY or "key" in \S+cli\.json$/m);
    const refused = await cli(['clusters', '--key', 'nfsha_op_0000000000000000_wrong'], null);
    assert.match(refused.stderr, /^nfs-ha: invalid_credential: .*; the key from --key was refused/m);
    // A port nothing listens on (fetch refuses some low ports outright, such as 9).
    const unreachable = await cli(['clusters', '--url', 'http://127.0.0.1:65531']);
    assert.match(
      unreachable.stderr,
      /^nfs-ha: cannot reach the control plane at http:\/\/127\.0\.0\.1:65531 \(from --url\): .*ECONNREFUSED.*; set it with --url, NFSHA_URL or "url" in /m,
    );
    assert.match((await cli(['events', 'cli-prod'])).stdout, /lease\.granted\s+node-a/);
  });

  it('agent credentials: list, rotate with an overlap, revoke; the peer secret rotates', async () => {
    await h.clusterHeldByNodeA('cli-creds');
    const rotated = JSON.parse((await cli(['credentials', 'rotate', 'cli-creds', 'node-b', '--overlap', '60', '--json'])).stdout) as {
      id: string;
      credential: string;
    };
    assert.match(rotated.credential, /^nfsha_ag_/);
    const text = (await cli(['credentials', 'rotate', 'cli-creds', 'node-b'])).stdout;
    assert.match(text, new RegExp(`the old one \\(${rotated.id}\\) keeps working until .*\non node-b: nfs-ha-agent set-credential`));
    const listed = (await cli(['credentials', 'list', 'cli-creds', '--node', 'node-b'])).stdout;
    assert.match(listed, new RegExp(`${rotated.id}  node-b .* works until`));
    assert.match((await cli(['credentials', 'revoke', 'cli-creds', rotated.id])).stdout, new RegExp(`agent credential ${rotated.id} revoked`));
    assert.doesNotMatch((await cli(['credentials', 'list', 'cli-creds', '--node', 'node-b'])).stdout, new RegExp(rotated.id));
    assert.match((await cli(['peer-secret', 'rotate', 'cli-creds'])).stdout, /new peer secret \(shown once\):\n[A-Za-z0-9_-]{43}\n/);
  });

  it('switchover: requests it, shows progress while the nodes hand over, ends when the target is active', async () => {
    await h.clusterHeldByNodeA('cli-sw');
    const node = (n: string) => `/v1/clusters/cli-sw/nodes/${n}`;
    await h.call('POST', `${node('node-a')}/heartbeat`, hb('active', 1));
    await h.call('POST', `${node('node-b')}/heartbeat`, hb('passive'));
    const refused = await cli(['switchover', 'cli-sw', '--to', 'node-a']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^nfs-ha: switchover_not_possible: node-a already holds the lease/);

    const running = cli(['switchover', 'cli-sw', '--to', 'node-b', '--timeout', '30']);
    let done = false;
    void running.then(() => (done = true));
    // The two agents' side, driven by hand: node-a releases when told, node-b fences and starts.
    let released = false;
    while (!done) {
      if (!released && (await h.call('POST', `${node('node-a')}/heartbeat`, hb('active', 1))).body.directive.action === 'release') {
        await h.call('POST', `${node('node-a')}/release`, { epoch: 1, reason: 'switchover' });
        released = true;
      }
      if (released) {
        const d = (await h.call('POST', `${node('node-b')}/heartbeat`, hb('passive'))).body.directive;
        if (d.action === 'activate') {
          await h.call('POST', `${node('node-b')}/fencing`, { epoch: d.epoch, keys: d.fence.keys });
          await h.call('POST', `${node('node-b')}/heartbeat`, hb('active', d.epoch));
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const r = await running;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^switchover requested: node-a → node-b \(epoch 1\)$/m);
    assert.match(r.stdout, /node-b is active under epoch 2 after \d+\.\d s$/m);

    const fencing = await cli(['fencing', 'cli-sw']);
    assert.equal(fencing.code, 0, fencing.stderr);
    assert.match(fencing.stdout, /^2\s+node-b\s+-\s+switchover\s+\S+\s+\S+/m);
    const grants = JSON.parse((await cli(['events', 'cli-sw', '--type', 'lease.granted', '--json'])).stdout) as { events: { node: string }[] };
    assert.deepEqual(
      grants.events.map((e) => e.node),
      ['node-a', 'node-b'],
    );
  });
  it('webhooks: add (validated locally), list, test, deliveries with their last answer, redeliver, remove', async () => {
    const receiver = new WebhookReceiver(); // trusts no secret: answers 401, which the deliveries show
    await receiver.start();
    try {
      const unknown = await cli(['webhooks', 'add', 'cli-prod', '--endpoint', receiver.url, '--type', 'node.down,node.exploded']);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /^nfs-ha: unknown webhook type "node\.exploded"; known: failover\.started, /);
      const bad = await cli(['webhooks', 'add', 'cli-prod', '--endpoint', 'ftp://example.com/h']);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /nfs-ha: url: /);
      const added = await cli([
        'webhooks',
        'add',
        'cli-prod',
        '--endpoint',
        receiver.url,
        // One way to write a list everywhere: comma-separated, the option repeatable.
        '--type',
        'node.down',
        '--type',
        'node.up',
        '--description',
        'pager',
        '--json',
      ]);
      assert.equal(added.code, 0, added.stderr);
      const hook = JSON.parse(added.stdout) as { id: string; secret: string; types: string[] };
      assert.deepEqual(hook.types, ['node.down', 'node.up']);
      assert.match(hook.secret, /^whsec_/);
      assert.match((await cli(['webhooks', 'list', 'cli-prod'])).stdout, new RegExp(`${hook.id}\\s+${receiver.url}\\s+node\\.down,node\\.up\\s+pager`));
      assert.match((await cli(['webhooks', 'test', 'cli-prod', hook.id])).stdout, /test event enqueued as delivery dlv_/);
      await h.deliverer.deliverDue();
      const listed = await cli(['webhooks', 'deliveries', 'cli-prod', hook.id]);
      assert.match(listed.stdout, /dlv_\S+\s+webhook\.test\s+pending\s+1\s+HTTP 401\s+\d{4}-/);
      const delivery = (JSON.parse((await cli(['webhooks', 'deliveries', 'cli-prod', hook.id, '--json'])).stdout) as { deliveries: { id: string }[] })
        .deliveries[0]!;
      assert.match((await cli(['webhooks', 'redeliver', 'cli-prod', hook.id, delivery.id])).stdout, /is due again now/);
      assert.equal((await cli(['webhooks', 'remove', 'cli-prod', hook.id])).code, 0);
      const gone = await cli(['webhooks', 'deliveries', 'cli-prod', hook.id]);
      assert.equal(gone.code, 1);
      assert.match(gone.stderr, /webhook_not_found/);
    } finally {
      await receiver.stop();
    }
  });

  it("status: each node's agent release, and a warning when the versions differ or an agent is newer than the control plane", async () => {
    const id = 'cli-versions';
    await h.clusterHeldByNodeA(id);
    const { version } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string };
    const report = async (node: string, v: string) => {
      const r = await h.call('POST', `/v1/clusters/${id}/nodes/${node}/heartbeat`, { ...hb('passive'), agent: { version: v, runtime: 'v24.22.3' } });
      assert.equal(r.body.controlPlaneVersion, version, 'the answer says the control plane release');
    };
    await report('node-a', version);
    await report('node-b', version);
    const same = await cli(['status', id]);
    assert.match(same.stdout, new RegExp(`^node-b\\s+passive\\s+0\\s+.*0x[0-9a-f]{16}\\s+${version.replaceAll('.', '\\.')}\\s+-$`, 'm'));
    assert.doesNotMatch(same.stdout, /mixed versions|NEWER/);
    const json = JSON.parse((await cli(['status', id, '--json'])).stdout) as { controlPlaneVersion: string; nodes: { agent: unknown }[] };
    assert.equal(json.controlPlaneVersion, version);
    assert.deepEqual(json.nodes[1]!.agent, { version, runtime: 'v24.22.3' });
    await report('node-b', '0.0.1');
    assert.match(
      (await cli(['status', id])).stdout,
      new RegExp(`^mixed versions \\(node-a ${version}, node-b 0\\.0\\.1, control plane ${version}\\): a rolling upgrade not finished$`, 'm'),
    );
    await report('node-b', '999.0.0');
    assert.match((await cli(['status', id])).stdout, /^AGENT NEWER THAN THE CONTROL PLANE \(.*node-b 999\.0\.0.*\): upgrade the control plane first/m);
  });

  it('status without a cluster: every cluster in one table; --version', async () => {
    await h.clusterHeldByNodeA('cli-other');
    const r = await cli(['status']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^CLUSTER\s+HOLDER\s+EPOCH\s+LEASE\s+NODES\s+NOTES$/m);
    assert.match(r.stdout, /^cli-other\s+node-a\s+1\s+active\s+node-a passive \S+ s ago; node-b \? never\s+-$/m);
    assert.match(r.stdout, /^cli-prod\s+/m);
    const listed = (JSON.parse((await cli(['status', '--json'])).stdout) as { clusters: { clusterId: string }[] }).clusters.map((c) => c.clusterId);
    assert.ok(listed.includes('cli-other') && listed.includes('cli-prod'), listed.join(', '));
    assert.equal(listed.length, r.stdout.trim().split('\n').length - 1, 'one row per cluster');
    const { version } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string };
    assert.equal((await cli(['--version'])).stdout.trim(), version);
  });

  it('events: the newest by default, oldest first, with the command for more; --cursor, --since, --limit and --type checked', async () => {
    const id = 'cli-events';
    await h.clusterHeldByNodeA(id);
    for (let i = 0; i < 6; i++) {
      h.clock.advance(1000);
      await h.call('PUT', `/v1/clusters/${id}/maintenance`, { enabled: i % 2 === 0 });
    }
    const all = (JSON.parse((await cli(['events', id, '--limit', '100', '--json'])).stdout) as { events: { type: string; at: number }[] }).events;
    assert.equal(all.filter((e) => e.type === 'maintenance.changed').length, 6);
    assert.deepEqual(
      all.map((e) => e.at),
      [...all.map((e) => e.at)].sort((a, b) => a - b),
      'oldest first',
    );
    const newest = await cli(['events', id, '--limit', '3']);
    assert.equal(newest.code, 0, newest.stderr);
    const lines = newest.stdout.trim().split('\n');
    assert.equal(lines.length, 3);
    assert.deepEqual(
      lines.map((l) => l.slice(0, 24)),
      all.slice(-3).map((e) => new Date(e.at).toISOString()),
    );
    const more = /^\(more older events: (nfs-ha events cli-events --cursor (\S+))\)$/m.exec(newest.stderr);
    assert.ok(more, newest.stderr);
    const older = await cli(['events', id, '--limit', '3', '--cursor', more[2]!]);
    assert.deepEqual(
      older.stdout
        .trim()
        .split('\n')
        .map((l) => l.slice(0, 24)),
      all.slice(-6, -3).map((e) => new Date(e.at).toISOString()),
    );
    const since = await cli(['events', id, '--since', new Date(all.at(-2)!.at).toISOString()]);
    assert.equal(since.stdout.trim().split('\n').length, 2);
    assert.equal(since.stderr, '');
    const limit = await cli(['events', id, '--limit', '0']);
    assert.deepEqual([limit.code, limit.stderr.trim()], [1, 'nfs-ha: --limit takes a whole number from 1 to 10000, not "0"']);
    assert.match(
      (await cli(['events', id, '--type', 'lease.granted,bogus'])).stderr,
      /^nfs-ha: unknown event type "bogus"; known: cluster\.created, lease\.granted, /,
    );
    assert.match((await cli(['events', id, '--type', 'lease.granted', '--type', 'cluster.created'])).stdout, /cluster\.created[\s\S]*lease\.granted/);
  });

  it('a malformed ~/.config/nfs-ha/cli.json is named, not ignored', async () => {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(dir, '.config', 'nfs-ha'), { recursive: true });
    await writeFile(join(dir, '.config', 'nfs-ha', 'cli.json'), '{"url": ');
    try {
      const r = await cli(['clusters']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^nfs-ha: \S+\/\.config\/nfs-ha\/cli\.json is not valid JSON \(.*\); it should look like \{"url": /m);
    } finally {
      await writeFile(join(dir, '.config', 'nfs-ha', 'cli.json'), '{}');
    }
  });

  it('backup: taken while the store serves, downloaded (0600), and a file that exists is never overwritten', async () => {
    const out = join(dir, 'store.jsonl');
    const r = await cli(['backup', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^backup nfs-ha-.*\.jsonl: \d+ entries, \d+ bytes, taken /m);
    assert.match(r.stdout, /saved to .*store\.jsonl \(mode 0600/);
    const { stat } = await import('node:fs/promises');
    assert.equal((await stat(out)).mode & 0o777, 0o600);
    const lines = (await readFile(out, 'utf8')).trim().split('\n');
    assert.equal(JSON.parse(lines[0]!).format, 'nfs-ha-embedded-store/1');
    assert.equal(JSON.parse(lines.at(-1)!).end, lines.length - 2);
    const again = await cli(['backup', '--out', out]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /cannot write .*store\.jsonl: EEXIST/);
    const readOnly = (await h.credentials.issue('operator', { role: 'read-only', name: 'cli-ro' })).token;
    const refused = await cli(['backup'], readOnly);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /forbidden/);
  });
});
