/**
 * The store goes back while the agents run: the embedded store (dynalite, on disk) is backed up
 * online, a failover happens, the control plane is stopped, the backup is restored into its data
 * directory, and it starts again. The real agent loops (recording fakes for resources) keep
 * their epoch memory in real files. Both orders of who asks first after the restore.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ControlPlaneClient } from '../../agent/control-plane-client.ts';
import { FileEpochMemory } from '../../agent/epoch-memory.ts';
import { BackupError, restoreEmbedded } from '../../control-plane/store/embedded.ts';
import type { Heartbeat } from '../../shared/lease.ts';
import { testAgent } from '../helpers/agent.ts';
import { exampleSpec, type Harness, serveHarness, startHarness, tempDir } from '../helpers/control-plane.ts';

const CLUSTER = 'restored';
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A control plane on `dataDir`, over HTTP; agents reach whichever one runs now. */
class ControlPlaneHost {
  h!: Harness;
  http!: Awaited<ReturnType<typeof serveHarness>>;
  constructor(readonly dataDir: string) {}
  async start() {
    this.h = await startHarness({ dataDir: this.dataDir, keepData: true });
    this.http = await serveHarness(this.h);
  }
  async stop() {
    await this.http.close();
    await this.h.close();
  }
}

/** An agent process on node `id`: its memory in `stateDir`, its credential issued before the backup. */
async function agentOn(cp: ControlPlaneHost, id: 'node-a' | 'node-b', stateDir: string, token: string) {
  const journal: string[] = [];
  const clock = { t: 0 };
  const client = () => new ControlPlaneClient(cp.http.url, CLUSTER, id, { timeoutMs: 2000, token });
  const sent: Heartbeat[] = [];
  const controlPlane = {
    heartbeat: (body: Heartbeat) => (sent.push(body), client().heartbeat(body)),
    reportFencing: (body: Parameters<ControlPlaneClient['reportFencing']>[0]) => client().reportFencing(body),
    reportPhase: (body: Parameters<ControlPlaneClient['reportPhase']>[0]) => client().reportPhase(body),
    release: (body: Parameters<ControlPlaneClient['release']>[0]) => client().release(body),
  };
  const memory = await FileEpochMemory.open(stateDir);
  const t = await testAgent({ nodeId: id, controlPlane, journal, now: () => clock.t, clusterId: CLUSTER, memory });
  return { ...t, journal, clock, memory, sent, step: async () => (await t.step())?.action ?? 'busy' };
}

type Agent = Awaited<ReturnType<typeof agentOn>>;
const advance = (cp: ControlPlaneHost, ms: number, ...agents: Agent[]) => {
  cp.h.clock.advance(ms);
  for (const a of agents) a.clock.t += ms;
};

/**
 * node-a active under epoch 1; a backup; node-a crashes and node-b takes over under epoch 2; the
 * control plane stops and its data directory is restored to the backup; it starts again.
 */
async function restoredAfterFailover() {
  const dir = await tempDir();
  const cp = new ControlPlaneHost(join(dir, 'data'));
  await cp.start();
  cleanups.push(() => cp.stop());
  assert.equal((await cp.h.call('POST', '/v1/clusters', await exampleSpec(CLUSTER))).status, 201);
  const tokens = { a: await cp.h.agentToken(CLUSTER, 'node-a'), b: await cp.h.agentToken(CLUSTER, 'node-b') };
  const a = await agentOn(cp, 'node-a', join(dir, 'state-a'), tokens.a);
  const b = await agentOn(cp, 'node-b', join(dir, 'state-b'), tokens.b);
  assert.equal(await a.step(), 'fence');
  advance(cp, 100, a, b);
  assert.equal(await a.step(), 'activate');
  assert.equal(await b.step(), 'none');

  const taken = await cp.h.call('POST', '/v1/backups');
  assert.equal(taken.status, 201, JSON.stringify(taken.body));
  assert.ok(taken.body.entries > 0);
  const backupFile = taken.body.path as string;

  // node-a crashes (its agent never ticks again); node-b takes over at expiry.
  for (let i = 0; i < 8; i++) {
    advance(cp, 500, b);
    await b.step();
  }
  assert.equal(b.agent.role, 'active');
  assert.equal(b.fencing.epoch, 2);
  assert.deepEqual(b.memory.current(), { seen: 2, acted: 2 });
  assert.deepEqual(a.memory.current(), { seen: 1, acted: 1 });

  await cp.stop();
  cleanups.pop();
  const r = await restoreEmbedded(cp.dataDir, backupFile);
  assert.ok(r.keptAside, 'the store it replaced is kept aside');
  await cp.start();
  cleanups.push(() => cp.stop());
  const lease = await cp.h.store.getLease(CLUSTER);
  assert.deepEqual([lease?.holder, lease?.epoch], ['node-a', 1], 'the restored store names node-a under epoch 1');
  // node-a's agent restarts after its crash: a new process, the same state directory.
  const a2 = await agentOn(cp, 'node-a', join(dir, 'state-a'), tokens.a);
  return { cp, a: a2, b };
}

async function timeline(cp: ControlPlaneHost) {
  const events = (await cp.h.call('GET', `/v1/clusters/${CLUSTER}/events?limit=500`)).body.events as { type: string; epoch: number; node?: string; data: any }[];
  return events;
}

describe('the store restored to a backup from before a failover, agents running', () => {
  it('node-b (serving under epoch 2) asks first: it keeps the service under epoch 3, fencing again without stopping', async () => {
    const { cp, a, b } = await restoredAfterFailover();
    const stopsBefore = b.journal.filter((j) => j.startsWith('stop')).length;
    advance(cp, 100, a, b);
    assert.equal(await b.step(), 'refence');
    assert.equal(b.agent.role, 'active');
    assert.equal(b.fencing.epoch, 3);
    assert.deepEqual(b.memory.current(), { seen: 3, acted: 3 });
    assert.equal(b.journal.filter((j) => j.startsWith('stop')).length, stopsBefore, 'nothing stopped: no failover, no client stall');
    assert.match(b.journal.at(-1)!, /^fence 0x[0-9a-f]{16}$/, "node-a's key preempted again");

    // node-a, which the restored lease named, is not given it back.
    advance(cp, 500, a, b);
    assert.equal(await a.step(), 'none');
    assert.equal(a.agent.role, 'passive');
    assert.equal(await b.step(), 'none');
    const lease = await cp.h.store.getLease(CLUSTER);
    assert.deepEqual([lease?.holder, lease?.epoch, lease?.fencing?.confirmedAt !== null], ['node-b', 3, true]);
    const events = await timeline(cp);
    assert.deepEqual(
      events.filter((e) => e.type === 'store.regressed').map((e) => [e.node, e.data]),
      [['node-b', { storeEpoch: 1, reportedEpoch: 2, serving: true }]],
    );
    assert.deepEqual(
      events.filter((e) => e.type === 'lease.granted').map((e) => [e.epoch, e.node, e.data.reason]),
      [
        [1, 'node-a', 'cold-start'],
        [3, 'node-b', 'store-regressed'],
      ],
    );
  });

  it('node-a (named by the restored lease, its epoch left) asks first: the lease is vacated, not renewed, and node-b still keeps the service', async () => {
    const { cp, a, b } = await restoredAfterFailover();
    const stopsBefore = b.journal.filter((j) => j.startsWith('stop')).length;
    advance(cp, 100, a, b);
    // Its heartbeat says it runs nothing and has acted under epoch 1: it left it. The lease is
    // vacated at once, without renewing it first.
    assert.equal(await a.step(), 'none');
    assert.equal(a.journal.filter((j) => j.startsWith('start') || j.startsWith('fence')).length, 0, 'node-a starts nothing under the epoch it left');
    assert.deepEqual(a.sent.at(-1)?.known, { seen: 1, acted: 1 });
    assert.equal((await cp.h.store.getLease(CLUSTER))?.holder, null, 'vacated: nobody is granted while a serving node may report');
    const status = (await cp.h.call('GET', `/v1/clusters/${CLUSTER}/status`)).body;
    assert.deepEqual(status.lease.holdoff && [status.lease.holdoff.by, status.lease.holdoff.reason], ['node-a', 'epoch-refused']);
    advance(cp, 100, a, b);
    assert.equal(await b.step(), 'refence');
    assert.equal(b.fencing.epoch, 3);
    assert.equal(b.journal.filter((j) => j.startsWith('stop')).length, stopsBefore);
    advance(cp, 500, a, b);
    await a.step();
    assert.equal(a.agent.role, 'passive');
    assert.deepEqual(a.memory.current(), { seen: 3, acted: 1 });
    const lease = await cp.h.store.getLease(CLUSTER);
    assert.deepEqual([lease?.holder, lease?.epoch], ['node-b', 3]);
    assert.ok((await timeline(cp)).some((e) => e.type === 'store.regressed' && e.data.serving === true));
  });

  it('a cut-off or foreign file is refused before anything changes', async () => {
    const dir = await tempDir();
    const cp = new ControlPlaneHost(join(dir, 'data'));
    await cp.start();
    const taken = await cp.h.call('POST', '/v1/backups');
    const { readFile, writeFile } = await import('node:fs/promises');
    const text = await readFile(taken.body.path, 'utf8');
    await cp.stop();
    const cut = join(dir, 'cut.jsonl');
    await writeFile(cut, text.split('\n').slice(0, -2).join('\n'));
    await assert.rejects(restoreEmbedded(cp.dataDir, cut), (e: Error) => e instanceof BackupError && /incomplete/.test(e.message));
    const foreign = join(dir, 'foreign.jsonl');
    await writeFile(foreign, '{"hello": 1}\n');
    await assert.rejects(restoreEmbedded(cp.dataDir, foreign), (e: Error) => e instanceof BackupError && /not an nfs-ha store backup/.test(e.message));
    // The store is untouched: it starts with what it had.
    await cp.start();
    assert.equal((await cp.h.call('GET', '/v1/clusters')).status, 200);
    await cp.stop();
  });
});
