import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import type { ControlPlane } from '../../agent/control-plane-client.ts';
import { type CommandResult, CommandLedger } from '../../agent/executor.ts';
import type { HeartbeatResponse } from '../../shared/api.ts';
import { type Directive, type FencingReport, type Heartbeat, HeartbeatSchema, type PhaseReport, PhaseReportSchema, type Release } from '../../shared/lease.ts';
import { VERSION } from '../../shared/version.ts';
import type { PromiseAnswer, PromiseAsk } from '../../shared/failsafe.ts';
import type { PeerView } from '../../shared/node-role.ts';
import { activeDeadline } from '../../shared/timing.ts';
import type { Logger } from 'pino';
import { ControlPlaneError } from '../../agent/control-plane-client.ts';
import { capturedLog, TEST_INSTANCE, testAgent } from '../helpers/agent.ts';
import { SafetyInDoubt } from '../../agent/resources/resource.ts';
import { sample } from '../helpers/prometheus.ts';
import { RememberedEpochs } from '../helpers/epochs.ts';
import type { EpochMemory } from '../../agent/epoch-memory.ts';
import type { ClientTickler } from '../../agent/tickle.ts';
import { PREPARE_AFTER_PEER_MS } from '../../agent/loop.ts';

const PEER_KEY = '0x17b0d5daf00be581';

/** Everything the agent did, in order, across resources, control plane and self-fence. */
const journal: string[] = [];
let now: number;

class FakeControlPlane implements ControlPlane {
  /** The next heartbeat answers; the last one repeats. An Error means unreachable. */
  answers: (HeartbeatResponse | Error)[] = [];
  sent: Heartbeat[] = [];
  async heartbeat(body: Heartbeat) {
    this.sent.push(body);
    const a = this.answers.length > 1 ? this.answers.shift()! : this.answers[0]!;
    if (a instanceof Error) throw a;
    return a;
  }
  async reportFencing(body: FencingReport) {
    journal.push(`report fencing epoch ${body.epoch}`);
  }
  phases: PhaseReport[] = [];
  async reportPhase(body: PhaseReport) {
    this.phases.push(body);
  }
  async release(body: Release) {
    journal.push(`release epoch ${body.epoch} (${body.reason})`);
  }
}

function answer(directive: Directive, renewed: boolean, holder: string | null = 'node-b'): HeartbeatResponse {
  return { lease: { holder, epoch: directive.epoch, ttlMs: 3000, renewed, specVersion: 1, maintenance: false }, directive };
}
const granted = (epoch: number, confirmed = false) =>
  answer({ action: 'activate', epoch, fence: { victim: 'node-a', keys: [PEER_KEY], confirmed }, reason: 'granted' }, true);
const stayActive = (epoch: number) => answer({ action: 'stay-active', epoch, reason: 'renewed' }, true);

/** Granted `epoch`, fenced, then activated: the two steps of a takeover. */
async function takeOver(cp: FakeControlPlane, step: () => Promise<unknown>, epoch = 2): Promise<void> {
  cp.answers = [granted(epoch)];
  await step();
  cp.answers = [granted(epoch, true)];
  await step();
}

async function agentFor(
  options: {
    maxRestarts?: number;
    monitorIntervalMs?: number;
    storageMonitorIntervalMs?: number;
    onNewSpec?: (version: number) => void;
    memory?: RememberedEpochs;
    log?: Logger;
    ledger?: CommandLedger;
    peerReachable?: () => boolean | undefined;
    peerClients?: () => string[];
    peerHandover?: (node: string, epoch: number) => Promise<boolean>;
    clients?: ClientTickler;
  } = {},
) {
  const cp = new FakeControlPlane();
  return { cp, ...(await testAgent({ nodeId: 'node-b', controlPlane: cp, journal, now: () => now, ...options })) };
}

beforeEach(() => {
  journal.length = 0;
  now = 1_000;
});

describe('agent loop', () => {
  it('takes over in order: fence, report, and only then start every resource', async () => {
    const { agent, cp, step, fencing, others } = await agentFor();
    others.find((r) => r.name === 'floating-ip')!.startAhead = () => void journal.push('ahead floating-ip');
    cp.answers = [granted(2)];
    assert.equal((await step())?.action, 'fence');
    assert.equal(fencing.confirmedEpoch, 2);
    now += 10;
    cp.answers = [granted(2, true)];
    assert.equal((await step())?.action, 'activate');
    assert.equal(agent.role, 'active');
    assert.deepEqual(journal, [
      'watchdog armed',
      `fence ${PEER_KEY}`,
      'report fencing epoch 2',
      'ahead floating-ip',
      'start scsi-reservation',
      'start volume-group',
      'start filesystem',
      'start nfs-server',
      'start exports',
      'start floating-ip',
    ]);
    assert.deepEqual(
      cp.sent.at(-1),
      { role: 'activating', epoch: 2, known: { seen: 2, acted: 2 } },
      'reports itself activating under the epoch while fencing, and its memory',
    );
  });

  it('reports its release and runtime only to a control plane that says its own version (an older one refuses unknown fields)', async () => {
    const { cp, step } = await agentFor();
    const passive = answer({ action: 'stay-passive', epoch: 1, holder: 'node-a', reason: 'node-a holds epoch 1' }, false, 'node-a');
    const told = (answers: HeartbeatResponse[]) => answers.map((a) => ({ ...a, controlPlaneVersion: '0.1.0' }));
    const sent = async (answers: HeartbeatResponse[]) => {
      cp.answers = answers;
      now += 500;
      await step();
      return cp.sent.at(-1)!;
    };
    assert.equal((await sent([passive])).agent, undefined, 'nothing known of the control plane yet');
    assert.equal((await sent(told([passive]))).agent, undefined, 'the answer without a version said nothing');
    assert.deepEqual((await sent(told([passive]))).agent, { version: VERSION, runtime: process.version });
    assert.ok(HeartbeatSchema.safeParse(cp.sent.at(-1)).success, 'the API accepts it');
    // A control plane rolled back to a release that does not say its version: the agent stops sending it.
    await sent([passive]);
    assert.equal((await sent([passive])).agent, undefined);
  });

  it("phase reports carry ids that sort in the order they were made, as the API's schema accepts", async () => {
    const { cp, step } = await agentFor();
    cp.answers = [granted(2)];
    await step();
    cp.answers = [granted(2, true)];
    await step();
    const ids = cp.phases.map((p) => p.reportId);
    assert.ok(ids.length >= 12, `${ids.length} reports`);
    assert.deepEqual([...ids].sort(), ids);
    assert.equal(new Set(ids).size, ids.length);
    for (const p of cp.phases) assert.ok(PhaseReportSchema.safeParse(p).success, JSON.stringify(p));
  });

  it("reports each phase's time and its commands, each timed: the rest is the agent's own; commands of other tasks meanwhile are not the phase's", async () => {
    const ledger = new CommandLedger();
    const { cp, step, others } = await agentFor({ ledger });
    const ran = (argv: [string, ...string[]], ms: number): CommandResult => ({ argv, exitCode: 0, signal: null, timedOut: false, stdout: '', stderr: '', durationMs: ms });
    // A task begun before the takeover (prepare() at agent start) whose command ends during the mount.
    let during!: () => void;
    const outside = new Promise<void>((resolve) => (during = resolve)).then(() => ledger.record(ran(['systemctl', 'start', 'rpcbind.service'], 900)));
    // The mount: 300 ms, of which 240 in its two commands; the other phases take no time.
    const filesystem = others.find((r) => r.name === 'filesystem')!;
    const start = filesystem.start.bind(filesystem);
    filesystem.start = async () => {
      now += 300;
      ledger.record(ran(['findmnt', '-J', '/srv/nfs'], 40));
      during();
      await outside;
      ledger.record(ran(['mount', '-t', 'ext4', 'UUID=x', '/srv/nfs'], 199.6));
      await start();
    };
    await takeOver(cp, step);
    const done = cp.phases.filter((p) => p.direction === 'start' && p.status === 'succeeded');
    const mount = done.find((p) => p.phase === 'filesystem');
    assert.deepEqual([mount?.durationMs, mount?.commandsMs, mount?.commands], [
      300,
      240,
      [
        { command: 'findmnt -J /srv/nfs', ms: 40 },
        { command: 'mount -t ext4 UUID=x /srv/nfs', ms: 200 },
      ],
    ]);
    assert.deepEqual(
      done.filter((p) => p.phase !== 'filesystem').map((p) => [p.phase, p.durationMs, p.commandsMs, p.commands]),
      ['fence', 'scsi-reservation', 'volume-group', 'nfs-server', 'exports', 'floating-ip'].map((p) => [p, 0, 0, []]),
    );
  });

  it('after a takeover, tickles the clients its peer served (once the VIP is up); a failed tickle changes nothing', async () => {
    const tickled: string[][] = [];
    let fail = false;
    const clients: ClientTickler = {
      read: async () => [],
      tickle: async (list, vipUp) => {
        journal.push('tickle ready');
        await vipUp;
        journal.push('tickle');
        tickled.push([...list]);
        if (fail) throw new Error('tickle ACKs not sent: perl exited 1');
        return `tickle ACKs sent to ${list.length} client connection(s)`;
      },
    };
    const { lines, log } = capturedLog();
    const { agent, cp, step } = await agentFor({ peerReachable: () => false, peerClients: () => ['10.88.0.21:812'], clients, log });
    now += 10_000; // past the promise a restarted agent keeps for its predecessor
    await takeOver(cp, step);
    assert.equal(agent.role, 'active');
    assert.ok(journal.indexOf('tickle ready') < journal.indexOf('start scsi-reservation'), 'made ready as the takeover begins');
    assert.deepEqual(journal.slice(-2), ['start floating-ip', 'tickle'], 'sent after the VIP, never before');
    assert.deepEqual(tickled, [['10.88.0.21:812']]);
    assert.ok(lines.some((l) => l.msg === 'tickle ACKs sent to 1 client connection(s)'));
    now += 500;
    cp.answers = [stayActive(2)];
    await step();
    assert.equal(tickled.length, 1, 'once per takeover, not on every renewal');
    fail = true;
    const second = await agentFor({ peerReachable: () => false, peerClients: () => ['10.88.0.21:812'], clients, log });
    now += 10_000;
    await takeOver(second.cp, second.step, 3);
    assert.equal(second.agent.role, 'active', 'serving regardless');
    assert.ok(lines.some((l) => l.level === 40 && /perl exited 1; the clients reconnect at their next retransmission/.test(l.msg)));
  });

  it("the active reads its clients on each monitor pass and tells its peer; a passive tells none", async () => {
    let connected = ['10.88.0.21:812'];
    const clients: ClientTickler = { read: async () => connected, tickle: async () => 'unused' };
    const { agent, cp, step } = await agentFor({ clients });
    assert.equal(agent.status().clients, undefined, 'passive');
    await takeOver(cp, step);
    now += 500;
    cp.answers = [stayActive(2)];
    await step();
    assert.deepEqual(agent.status().clients, ['10.88.0.21:812']);
    connected = ['10.88.0.21:812', '10.88.0.22:700'];
    now += 500;
    await step();
    assert.deepEqual(agent.status().clients, ['10.88.0.21:812', '10.88.0.22:700']);
  });

  it('activates when the arbiter recorded its fencing although the answer to its report was lost', async () => {
    const { agent, cp, step, fencing } = await agentFor();
    cp.answers = [granted(2)];
    cp.reportFencing = async () => {
      throw new Error('no answer within 800 ms');
    };
    await step();
    assert.equal(fencing.confirmedEpoch, 0, 'not acknowledged to us');
    now += 500;
    cp.answers = [granted(2, true)];
    assert.equal((await step())?.action, 'activate');
    assert.equal(agent.role, 'active');
    assert.equal(fencing.confirmedEpoch, 2, "the arbiter's record is the acknowledgement the volume group checks");
  });

  it('never starts a resource while fencing is unacknowledged', async () => {
    const { agent, cp, step } = await agentFor();
    cp.answers = [granted(2)];
    cp.reportFencing = async () => {
      throw new Error('control plane down');
    };
    await step();
    await step();
    assert.equal(agent.role, 'fencing');
    assert.ok(!journal.some((l) => l.startsWith('start')), journal.join('\n'));
    assert.equal(journal.filter((l) => l.startsWith('fence')).length, 2, 'fences again (idempotently) to report again');
  });

  it('demotes itself when its deadline passes without a renewal — not a moment before', async () => {
    const { agent, cp, spec, step } = await agentFor();
    cp.answers = [granted(2)];
    const sentAt = now;
    await step();
    cp.answers = [stayActive(2)];
    await step();
    assert.equal(agent.role, 'active');
    // The last committed renewal was the second tick's, sent at `sentAt`: the clock did not move.
    assert.equal(agent.deadline, activeDeadline(sentAt, spec.timing));
    cp.answers = [new Error('no answer within 800 ms')];
    now = agent.deadline! - 1;
    assert.equal((await step())?.action, 'none');
    assert.equal(agent.role, 'active');
    now = agent.deadline!;
    await agent.onDeadline();
    await agent.settled();
    assert.equal(agent.role, 'passive');
    assert.deepEqual(journal.slice(-7), [
      'stop floating-ip',
      'stop exports',
      'stop nfs-server',
      'stop filesystem',
      'stop volume-group',
      'stop scsi-reservation',
      'watchdog disarmed',
    ]);
  });

  it('a fenced node self-fences and never re-registers on its own', async () => {
    const { cp, step, reservation } = await agentFor();
    cp.answers = [granted(2)];
    await step();
    cp.answers = [stayActive(2)];
    await step();
    reservation.present = false;
    now += 100;
    assert.equal((await step())?.action, 'none', 'the monitor pass runs in the background and finds it');
    now += 100;
    assert.equal((await step())?.action, 'self-fence');
    assert.match(journal.at(-1)!, /^REBOOT: our reservation key is gone/);
    assert.equal(journal.filter((l) => l.startsWith('fence')).length, 1, 'only the fencing of its own grant');

    // After the reboot, a new agent for this node: the lease is the peer's; it stays passive.
    const again = await agentFor();
    journal.length = 0;
    again.cp.answers = [answer({ action: 'stay-passive', epoch: 3, holder: 'node-a', reason: 'node-a holds epoch 3' }, false, 'node-a')];
    for (let i = 0; i < 3; i++) await again.step();
    assert.equal(again.agent.role, 'passive');
    assert.deepEqual(journal, [], 'no fencing, no registration, nothing started');
  });

  it('switchover: while it stops in order, the holder keeps renewing and its deadline moves on (found in the lab)', async () => {
    const { agent, cp, spec, step, others } = await agentFor();
    cp.answers = [granted(2)];
    await step();
    cp.answers = [stayActive(2)];
    await step();
    const vip = others.find((r) => r.name === 'floating-ip')!;
    let finishStop!: () => void;
    vip.stop = () => new Promise<void>((resolve) => (finishStop = resolve));
    const release = answer({ action: 'release', epoch: 2, reason: 'switchover to node-a requested' }, true);
    cp.answers = [release];
    now += 500;
    assert.equal((await agent.tick())?.action, 'release');
    assert.equal(agent.role, 'demoting');
    now += 2000;
    cp.answers = [release];
    await agent.tick();
    assert.equal(agent.deadline, activeDeadline(now, spec.timing), 'the renewal during the demotion extended the deadline');
    finishStop();
    await agent.idle();
    assert.equal(agent.role, 'passive');
    assert.equal(journal.at(-1), 'release epoch 2 (switchover)');
  });

  it('releasing after a resource failed: the demoting holder keeps renewing, so its watchdog never fires (found in the lab)', async () => {
    const { agent, cp, spec, step, others } = await agentFor({ maxRestarts: 0 });
    cp.answers = [granted(2)];
    await step();
    cp.answers = [stayActive(2)];
    await step();
    const nfs = others.find((r) => r.name === 'nfs-server')!;
    nfs.state = { state: 'failed', reason: 'nfsd runs 0 threads' };
    now += 100;
    await step(); // the background monitor pass finds it
    const vip = others.find((r) => r.name === 'floating-ip')!;
    let finishStop!: () => void;
    vip.stop = () => new Promise<void>((resolve) => (finishStop = resolve));
    now += 100;
    assert.equal((await agent.tick())?.action, 'release');
    assert.equal(agent.role, 'demoting');
    // The arbiter still renews the holder while it stops (it reports itself demoting).
    cp.answers = [granted(2, true)];
    now += 2500;
    const sent = cp.sent.length;
    await agent.tick();
    assert.deepEqual(cp.sent.at(-1), { role: 'demoting', epoch: 2, known: { seen: 2, acted: 2 } });
    assert.equal(cp.sent.length, sent + 1);
    assert.equal(agent.deadline, activeDeadline(now, spec.timing), 'the renewal during the demotion extended the deadline');
    finishStop();
    await agent.idle();
    assert.equal(agent.role, 'passive');
    assert.equal(agent.deadline, null);
    assert.equal(journal.at(-1), 'release epoch 2 (resource-failure)');
    await agent.tick();
    assert.equal(agent.deadline, null, 'a renewal after the demotion extends nothing');
  });

  it('a renewal under a shorter TTL than its own spec (the spec changed since the agent started) earns the shorter deadline', async () => {
    const { agent, cp, spec, step } = await agentFor();
    cp.answers = [granted(2)];
    await step();
    const shorter = stayActive(2);
    shorter.lease.ttlMs = spec.timing.leaseTtlMs - 1000;
    cp.answers = [shorter];
    now += 100;
    await step();
    assert.equal(agent.deadline, activeDeadline(now, { ...spec.timing, leaseTtlMs: spec.timing.leaseTtlMs - 1000 }));
    const longer = stayActive(2);
    longer.lease.ttlMs = spec.timing.leaseTtlMs + 5000;
    cp.answers = [longer];
    now += 100;
    await step();
    assert.equal(agent.deadline, activeDeadline(now, spec.timing), 'a longer one does not lengthen its own');
  });

  it('a newer spec version: a passive node with nothing running restarts to take it; one granted the lease or active does not', async () => {
    const restarts: number[] = [];
    const { agent, cp, step } = await agentFor({ onNewSpec: (v) => restarts.push(v) });
    const passive = (specVersion: number) => {
      const a = answer({ action: 'stay-passive', epoch: 1, holder: 'node-a', reason: 'node-a holds epoch 1' }, false, 'node-a');
      a.lease.specVersion = specVersion;
      return a;
    };
    cp.answers = [passive(1)];
    assert.equal((await step())?.action, 'none');
    assert.equal(restarts.length, 0);
    const newer = granted(2);
    newer.lease.specVersion = 2;
    cp.answers = [newer];
    now += 5000;
    assert.equal((await step())?.action, 'fence', 'granted the lease: takes over first, on the spec it has');
    assert.equal(restarts.length, 0);
    const active = stayActive(2);
    active.lease.specVersion = 2;
    cp.answers = [granted(2, true)];
    await step();
    cp.answers = [active];
    now += 500;
    await step();
    assert.equal(agent.role, 'active');
    assert.equal(restarts.length, 0, 'an active node keeps the spec it started its resources with');
    const again = await agentFor({ onNewSpec: (v) => restarts.push(v) });
    again.cp.answers = [passive(3)];
    assert.equal(await again.step(), null);
    assert.deepEqual(restarts, [3]);
  });

  it('renewals and the deadline never wait for a slow monitor pass (found in the lab)', async () => {
    const { agent, cp, spec, step, others } = await agentFor();
    cp.answers = [granted(2)];
    await step();
    cp.answers = [stayActive(2)];
    await step();
    const nfs = others.find((r) => r.name === 'nfs-server')!;
    let finishMonitor!: () => void;
    nfs.monitor = () => new Promise((resolve) => (finishMonitor = () => resolve({ state: 'running' })));
    now += 100;
    await agent.tick(); // starts the monitor pass, which now hangs
    const renewalsBefore = cp.sent.length;
    cp.answers = [stayActive(2)];
    now += 500;
    assert.equal((await agent.tick())?.action, 'none');
    assert.equal(cp.sent.length, renewalsBefore + 1, 'the renewal went out while the monitor pass hangs');
    assert.equal(agent.deadline, activeDeadline(now, spec.timing), 'and extended the deadline');
    cp.answers = [new Error('no answer within 800 ms')];
    now = agent.deadline!;
    await agent.onDeadline();
    await agent.settled();
    assert.equal(agent.role, 'passive', 'demoted at the deadline, the monitor pass still hanging');
    finishMonitor();
    await agent.idle();
  });

  it("the first monitor pass comes one interval after the takeover, not while the clients recover", async () => {
    const { cp, step, others, reservation } = await agentFor({ monitorIntervalMs: 2000 });
    const nfs = others.find((r) => r.name === 'nfs-server')!;
    await takeOver(cp, step);
    const before = { nfs: nfs.monitored, keys: reservation.keyChecks };
    // Renewals 0.5, 1 and 1.9 s after the takeover.
    for (const ms of [500, 500, 900]) {
      now += ms;
      cp.answers = [stayActive(2)];
      await step();
    }
    assert.deepEqual({ nfs: nfs.monitored, keys: reservation.keyChecks }, before, 'no pass in the first interval');
    now += 100;
    cp.answers = [stayActive(2)];
    await step();
    assert.equal(nfs.monitored, before.nfs + 1, 'then one, two seconds after the takeover');
    assert.equal(reservation.keyChecks, before.keys + 1);
  });

  it('runs the storage monitors at their own cadence, and the key check on every pass', async () => {
    const { cp, step, others, reservation } = await agentFor({ storageMonitorIntervalMs: 10_000 });
    cp.answers = [granted(2)];
    await step();
    cp.answers = [stayActive(2)];
    await step(); // the first pass of the active: every monitor
    const vg = others.find((r) => r.name === 'volume-group')!;
    const nfs = others.find((r) => r.name === 'nfs-server')!;
    const before = { keys: reservation.keyChecks, scsi: reservation.monitored, vg: vg.monitored, nfs: nfs.monitored };
    // 20 s of passes, one every 2 s.
    for (let pass = 0; pass < 10; pass++) {
      cp.answers = [stayActive(2)];
      now += 2000;
      await step();
    }
    assert.equal(nfs.monitored - before.nfs, 10, 'the NFS server on every pass');
    assert.equal(reservation.keyChecks - before.keys, 10, 'whether the peer fenced us: every pass');
    assert.equal(reservation.monitored - before.scsi, 2, 'the reservation every 10 s');
    assert.equal(vg.monitored - before.vg, 2, 'LVM every 10 s');
    // A fence found by the key check acts at once, between storage passes.
    reservation.present = false;
    cp.answers = [stayActive(2)];
    now += 2000;
    await step();
    cp.answers = [stayActive(2)];
    now += 100;
    assert.equal((await step())?.action, 'self-fence');
  });

  it('restarts a failed resource and its dependents up to the limit, then releases the lease', async () => {
    const { agent, cp, step, others } = await agentFor();
    cp.answers = [granted(2)];
    await step();
    cp.answers = [stayActive(2)];
    await step();
    const nfs = others.find((r) => r.name === 'nfs-server')!;
    for (let round = 1; round <= 2; round++) {
      journal.length = 0;
      nfs.state = { state: 'failed', reason: 'nfs-server is failed' };
      now += 100;
      assert.equal((await step())?.action, 'none', 'found by the background monitor pass');
      assert.deepEqual(journal, []);
      now += 100;
      assert.equal((await step())?.action, 'restart');
      assert.deepEqual(journal, ['stop floating-ip', 'stop exports', 'stop nfs-server', 'start nfs-server', 'start exports', 'start floating-ip']);
    }
    journal.length = 0;
    nfs.state = { state: 'failed', reason: 'nfs-server is failed' };
    now += 100;
    await step();
    now += 100;
    assert.equal((await step())?.action, 'release');
    assert.equal(agent.role, 'passive');
    assert.equal(journal.at(-1), 'release epoch 2 (resource-failure)');
  });

  it('a monitor whose action on the disk is in doubt (a path registration that may land after its lease) resets the node; it hands the lease the deadline it acts under', async () => {
    const { agent, cp, step, reservation, fencing } = await agentFor();
    cp.answers = [granted(2)];
    await step();
    cp.answers = [stayActive(2)];
    await step();
    assert.ok(fencing.leaseRemainingMs!() > 0 && fencing.leaseRemainingMs!() <= 3000, `lease left ${fencing.leaseRemainingMs!()} ms`);
    journal.length = 0;
    reservation.monitor = async () => {
      throw new SafetyInDoubt('scsi-reservation', 'registering our key on /dev/sdb did not complete within our lease');
    };
    now += 20_000;
    await step();
    await agent.idle();
    assert.ok(journal.some((l) => /^REBOOT: scsi-reservation: registering our key on \/dev\/sdb did not complete within our lease: resetting this node$/.test(l)), journal.join('\n'));
  });

  it('after its process was killed on the active: stops what it finds if the peer has the lease since', async () => {
    const { agent, cp, step, others } = await agentFor();
    for (const r of others) r.state = { state: 'running' };
    assert.deepEqual(await agent.recover(), ['volume-group', 'filesystem', 'nfs-server', 'exports', 'floating-ip']);
    cp.answers = [answer({ action: 'stay-passive', epoch: 3, holder: 'node-a', reason: 'node-a holds epoch 3' }, false, 'node-a')];
    assert.equal((await step())?.action, 'demote');
    assert.equal(agent.role, 'passive');
    assert.equal(journal.filter((l) => l.startsWith('stop')).length, 6);
    now += 500;
    assert.equal((await step())?.action, 'none', 'and then stays passive');
  });

  it('after its process was killed on the active: adopts what it finds if it still holds the lease', async () => {
    // The killed process had acted under epoch 2: its memory says so.
    const { agent, cp, step, others } = await agentFor({ memory: new RememberedEpochs({ seen: 2, acted: 2 }) });
    for (const r of others) r.state = { state: 'running' };
    await agent.recover();
    cp.answers = [granted(2, true)];
    assert.equal((await step())?.action, 'activate');
    assert.equal(agent.role, 'active');
    assert.ok(!journal.some((l) => l.startsWith('stop') || l.startsWith('fence')), 'nothing stopped, no new fencing');
  });

  it('after a crash: exports listed with no NFS server running are stale (the table outlives a reboot): cleared, not demoted for', async () => {
    const { agent, cp, step, others } = await agentFor();
    others.find((r) => r.name === 'exports')!.state = { state: 'running' };
    assert.deepEqual(await agent.recover(), []);
    assert.deepEqual(journal.filter((l) => l.startsWith('stop')), ['stop exports']);
    cp.answers = [answer({ action: 'stay-passive', epoch: 3, holder: 'node-a', reason: 'node-a holds epoch 3' }, false, 'node-a')];
    assert.equal((await step())?.action, 'none', 'nothing left to demote');
    assert.equal(agent.role, 'passive');
  });

  it('exports found with their NFS server running, or that cannot be cleared, count as running', async () => {
    const served = await agentFor();
    for (const name of ['nfs-server', 'exports']) served.others.find((r) => r.name === name)!.state = { state: 'running' };
    assert.deepEqual(await served.agent.recover(), ['nfs-server', 'exports']);
    const stuck = await agentFor();
    const exports = stuck.others.find((r) => r.name === 'exports')!;
    exports.state = { state: 'running' };
    exports.stop = async () => {
      throw new Error('exportfs -u exited 1');
    };
    assert.deepEqual(await stuck.agent.recover(), ['exports']);
    assert.ok(!journal.some((l) => l.startsWith('stop')), 'the first agent stopped nothing it found served');
  });

  /** node-b beside a peer whose view (null: unreachable) the test sets; a healthy active at first. */
  async function besidePeer() {
    const cp = new FakeControlPlane();
    const peer: { view: PeerView | null } = { view: { role: 'active', leaseRemainingMs: 2600 } };
    const agent = await testAgent({
      nodeId: 'node-b',
      controlPlane: cp,
      journal,
      now: () => now,
      peerReachable: () => peer.view !== null,
      peerStatus: () => peer.view,
    });
    return { cp, peer, ...agent };
  }

  it('a passive node polls every 5 s while its peer is a healthy active, every tick once it is not', async () => {
    const { cp, peer, step } = await besidePeer();
    cp.answers = [answer({ action: 'stay-passive', epoch: 1, holder: 'node-a', reason: 'node-a holds epoch 1' }, false, 'node-a')];
    for (let i = 0; i < 20; i++) {
      await step();
      now += 500;
    }
    assert.equal(cp.sent.length, 2, '10 s of ticks, one poll per 5 s');
    peer.view = null;
    for (let i = 0; i < 4; i++) {
      await step();
      now += 500;
    }
    assert.equal(cp.sent.length, 6, 'the peer went silent: a poll every tick');
    assert.deepEqual(cp.sent.at(-1), { role: 'passive', epoch: 0, peer: { reachable: false }, known: { seen: 1, acted: 0 } });
  });

  it("a passive readies itself again some way into each new term of its peer (what the peer's takeover changed), not at the agent's start", async () => {
    const { cp, peer, step, others, agent } = await besidePeer();
    const vg = others.find((r) => r.name === 'volume-group')!;
    vg.afterPeerTakeover = () => void journal.push('volume-group: after the peer took over');
    const prepared = () => journal.filter((l) => l === 'volume-group: after the peer took over').length;
    const run = async (ms: number) => {
      for (const end = now + ms; now < end; now += 500) await step();
    };
    cp.answers = [answer({ action: 'stay-passive', epoch: 1, holder: 'node-a', reason: 'node-a holds epoch 1' }, false, 'node-a')];
    await run(10_000);
    assert.equal(prepared(), 0, 'the peer active since the agent started: its start prepared for that');
    // The peer stops serving, then serves again (its new term): prepared once, PREPARE_AFTER_PEER_MS in.
    peer.view = { role: 'passive', leaseRemainingMs: null };
    await run(1000);
    peer.view = { role: 'activating', leaseRemainingMs: 3000 };
    await run(2000);
    peer.view = { role: 'active', leaseRemainingMs: 3000 };
    await run(PREPARE_AFTER_PEER_MS - 500);
    assert.equal(prepared(), 0, 'not while its clients recover');
    await run(1000);
    assert.equal(prepared(), 1);
    await run(20_000);
    assert.equal(prepared(), 1, 'once per term');
    // Its own term in between counts as the peer not serving, though the peer's last word was
    // "active" (it went silent, its lease running out): the peer's next term prepares again.
    peer.view = { role: 'active', leaseRemainingMs: 0 };
    await takeOver(cp, step);
    peer.view = { role: 'active', leaseRemainingMs: 3000 };
    assert.equal(agent.role, 'active');
    cp.answers = [answer({ action: 'release', epoch: 2, reason: 'switchover to node-a requested' }, true)];
    await step();
    assert.equal(agent.role, 'passive');
    cp.answers = [answer({ action: 'stay-passive', epoch: 3, holder: 'node-a', reason: 'node-a holds epoch 3' }, false, 'node-a')];
    await run(PREPARE_AFTER_PEER_MS + 1000);
    assert.equal(prepared(), 2);
  });

  it('a releasing holder tells its peer it handed the lease over; a release that failed tells nothing', async () => {
    const handovers: [string, number][] = [];
    const { agent, cp, step } = await agentFor({ peerReachable: () => true, peerHandover: async (node, epoch) => (handovers.push([node, epoch]), true) });
    // Past the promise a fresh agent keeps for the process that may have preceded it.
    now += 3500;
    await takeOver(cp, step);
    assert.equal(agent.role, 'active');
    assert.equal(agent.leaseHandedOver('node-a', 1), false, 'an active node has nothing to ask for');
    cp.answers = [answer({ action: 'release', epoch: 2, reason: 'switchover to node-a requested' }, true)];
    now += 500;
    await step();
    assert.equal(agent.role, 'passive');
    assert.equal(journal.at(-1), 'release epoch 2 (switchover)');
    assert.deepEqual(handovers, [['node-b', 2]], 'after the release landed');
    const refused = await agentFor({ peerReachable: () => true, peerHandover: async (node, epoch) => (handovers.push([node, epoch]), true) });
    refused.cp.release = async () => Promise.reject(new Error('control plane unreachable'));
    now += 3500;
    await takeOver(refused.cp, refused.step);
    assert.equal(refused.agent.role, 'active');
    refused.cp.answers = [answer({ action: 'release', epoch: 2, reason: 'switchover to node-a requested' }, true)];
    await refused.step();
    assert.equal(refused.agent.role, 'passive');
    assert.equal(handovers.length, 1, 'the lease was not given back: the peer waits for its expiry');
  });

  it("a passive told of its peer's handover asks the arbiter at once: its run loop wakes (or ticks again without waiting)", async () => {
    const cp = new FakeControlPlane();
    const { agent, step } = await testAgent({
      nodeId: 'node-b',
      controlPlane: cp,
      journal,
      now: () => now,
      peerReachable: () => true,
      peerStatus: () => ({ role: 'active', leaseRemainingMs: 2600 }),
    });
    cp.answers = [answer({ action: 'stay-passive', epoch: 1, holder: 'node-a', reason: 'node-a holds epoch 1' }, false, 'node-a')];
    await step();
    now += 500;
    await step();
    assert.equal(cp.sent.length, 1, 'its peer a healthy active: no poll before 5 s');
    assert.equal(agent.leaseHandedOver('node-c', 1), false, 'not its peer');
    assert.equal(agent.leaseHandedOver('node-a', 1), true);
    await step();
    assert.equal(cp.sent.length, 2, 'polled at the next tick, not 5 s after the last');
    // Under its run loop (a fixed clock: no poll is ever due by time; a tick every 500 ms, while
    // these waits take about 50 ms), the handover itself starts the tick.
    const settle = async (n: number) => {
      for (let i = 0; i < 50 && cp.sent.length < n; i++) await new Promise((resolve) => setTimeout(resolve, 1));
    };
    agent.run();
    try {
      await settle(3);
      assert.equal(cp.sent.length, 2, "the run loop's first tick: no poll due");
      agent.leaseHandedOver('node-a', 1);
      await settle(3);
      assert.equal(cp.sent.length, 3, 'woken while it waited: a poll at once, not after renewIntervalMs');
      // Told while a tick's heartbeat is in flight: the next tick starts as soon as it ends.
      let answerNow!: () => void;
      const hold = new Promise<void>((resolve) => (answerNow = resolve));
      const heartbeat = cp.heartbeat.bind(cp);
      cp.heartbeat = async (body) => (await hold, heartbeat(body));
      agent.leaseHandedOver('node-a', 1);
      await settle(4);
      assert.equal(cp.sent.length, 3, 'its heartbeat waits for an answer');
      agent.leaseHandedOver('node-a', 1);
      answerNow();
      await settle(5);
      assert.equal(cp.sent.length, 5, 'the tick that was under way, then one more at once');
    } finally {
      agent.stop();
    }
  });

  it("demotes when the control plane says the lease is another node's", async () => {
    const { agent, cp, step } = await agentFor();
    cp.answers = [granted(2)];
    await step();
    cp.answers = [stayActive(2)];
    await step();
    cp.answers = [answer({ action: 'demote', epoch: 3, holder: 'node-a', reason: 'node-a holds epoch 3' }, false, 'node-a')];
    now += 100;
    assert.equal((await step())?.action, 'demote');
    assert.equal(agent.role, 'passive');
  });
});

describe('agent loop: epoch memory and a credential that stops working', () => {
  it('remembers epochs granted to others before deciding, reports them, and refuses an epoch it has seen', async () => {
    const memory = new RememberedEpochs();
    const { agent, cp, step } = await agentFor({ memory });
    cp.answers = [answer({ action: 'stay-passive', epoch: 4, holder: 'node-a', reason: 'node-a holds epoch 4' }, false, 'node-a')];
    await step();
    assert.deepEqual(memory.current(), { seen: 4, acted: 0 });
    now += 500;
    // A store that went back grants this node epoch 4 again: someone else's epoch.
    cp.answers = [answer({ action: 'activate', epoch: 4, fence: { victim: null, keys: [PEER_KEY], confirmed: true }, reason: 'granted' }, true, 'node-b')];
    assert.equal((await step())?.action, 'refuse');
    assert.equal(agent.role, 'passive');
    assert.ok(!journal.some((j) => j.startsWith('start') || j.startsWith('fence')), 'nothing runs under it');
    now += 500;
    await step();
    assert.deepEqual(cp.sent.at(-1)?.known, { seen: 4, acted: 0 });
    assert.deepEqual(cp.sent.at(-1)?.refused?.epoch, 4);
    // A new epoch above it is taken, and remembered before the fence.
    now += 500;
    cp.answers = [granted(5)];
    assert.equal((await step())?.action, 'fence');
    assert.deepEqual(memory.current(), { seen: 5, acted: 5 });
    now += 500;
    await step();
    assert.equal(cp.sent.at(-1)?.refused, undefined, 'the refusal ends with the new grant');
  });

  it('a sudden 401 is an unreachable arbiter (the holder demotes at its deadline), said once with the fix, and its end too', async () => {
    const { lines, log } = capturedLog();
    const { agent, cp, step } = await agentFor({ log });
    cp.answers = [granted(2)];
    await step();
    now += 100;
    cp.answers = [stayActive(2)];
    await step();
    assert.equal(agent.role, 'active');
    const rejected = new ControlPlaneError('HTTP 401 invalid_credential: the credential is malformed, unknown or revoked', 401, 'invalid_credential');
    cp.answers = [rejected];
    for (let i = 0; i < 3; i++) {
      now += 500;
      await step();
    }
    const errors = lines.filter((l) => l.level === 50 && /rejects this node's credential/.test(l.msg));
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.msg, /re-enrol this node \(nfs-ha enrol .* node-b, then install.sh --token-file\)/);
    assert.equal(agent.role, 'active', 'the lease is still valid');
    now += 3000;
    await step();
    assert.equal(agent.role, 'passive', 'demoted at its deadline, as for any unreachable arbiter');
    cp.answers = [answer({ action: 'stay-passive', epoch: 2, holder: 'node-b', reason: 'x' }, false, null)];
    now += 500;
    await step();
    assert.ok(lines.some((l) => /accepts this node's credential again/.test(l.msg)));
  });
});

describe('agent loop: failsafe (the arbiter unreachable)', () => {
  const timing = { leaseTtlMs: 3000, maxDriftRatio: 0.01, safetyMarginMs: 250 };
  const windowMs = timing.leaseTtlMs * (1 - timing.maxDriftRatio) - timing.safetyMarginMs;

  /** What node-b's peer channel last heard from node-a. */
  let peerView: PeerView & { released?: PromiseAsk } = { role: 'passive', leaseRemainingMs: null };

  /** node-b with a peer channel; `promise` answers node-b's requests to node-a. */
  async function withPeer(promise: (node: string, epoch: number) => Promise<PromiseAnswer>, log?: Logger, memory?: EpochMemory) {
    peerView = { role: 'passive', leaseRemainingMs: null };
    const cp = new FakeControlPlane();
    const asked: number[] = [];
    const releases: [string, PromiseAsk][] = [];
    /** Timers the test fires by hand. */
    const timers: (() => void)[] = [];
    const t = await testAgent({
      timer: (_ms, fn) => {
        timers.push(fn);
        return { cancel: () => {} };
      },
      nodeId: 'node-b',
      controlPlane: cp,
      journal,
      now: () => now,
      peerReachable: () => true,
      peerStatus: () => peerView,
      peerPromise: async (node, epoch) => {
        asked.push(now);
        return promise(node, epoch);
      },
      peerRelease: async (node, through) => {
        releases.push([node, through]);
        return true;
      },
      ...(log && { log }),
      ...(memory && { memory }),
    });
    return { cp, asked, releases, timers, ...t };
  }

  /** Past the restart window, granted epoch 2 and active, renewed at `now`. */
  async function activeUnderEpoch2(t: Awaited<ReturnType<typeof withPeer>>) {
    now += 3_001;
    t.cp.answers = [granted(2)];
    await t.step();
    t.cp.answers = [granted(2, true)];
    await t.step();
    t.cp.answers = [stayActive(2)];
    await t.step();
    assert.equal(t.agent.role, 'active');
  }

  it('serves on while the peer vouches, past its lease; renewals resume under the same epoch when the arbiter is back', async () => {
    const { lines, log } = capturedLog();
    const t = await withPeer(async () => ({ accepted: true, ttlMs: 3000 }), log);
    await activeUnderEpoch2(t);
    const leaseDeadline = t.agent.deadline!;
    t.cp.answers = [new Error('connect ECONNREFUSED')];
    for (let i = 0; i < 20; i++) {
      now += 500;
      await t.step();
      assert.equal(t.agent.role, 'active', `still serving ${now - leaseDeadline} ms past the lease's deadline`);
      assert.equal(t.agent.deadline, t.asked.at(-1)! + windowMs, 'the deadline runs from the moment the promise was asked for, with the lease math');
    }
    assert.ok(now > leaseDeadline + 5_000);
    assert.ok(lines.some((l) => /serving on under epoch 2, vouched for by node-a \(failsafe\)/.test(l.msg)));
    assert.deepEqual(t.cp.sent.at(-1)?.failsafe?.vouchedBy, 'node-a', 'the heartbeat says so, for the arbiter to record when it hears it');
    t.cp.answers = [stayActive(2)];
    now += 500;
    await t.step();
    assert.equal(t.agent.role, 'active');
    assert.equal(t.fencing.epoch, 2, 'no new epoch');
    assert.ok(!journal.some((j) => j.startsWith('stop')), 'nothing stopped');
    now += 500;
    await t.step();
    assert.equal(t.cp.sent.at(-1)?.failsafe, undefined, 'failsafe over');
    assert.ok(lines.some((l) => /renewals resume under epoch 2 after/.test(l.msg)));
  });

  it('after a committed renewal it releases the promises it asked for before it: at once, and in its status', async () => {
    const t = await withPeer(async () => ({ accepted: true, ttlMs: 3000 }));
    await activeUnderEpoch2(t);
    assert.equal(t.agent.status().released, undefined, 'no promise asked for yet: nothing to release');
    t.cp.answers = [new Error('no answer within 800 ms')];
    now += 500;
    await t.step();
    now += 500;
    await t.step();
    assert.equal(t.asked.length, 2);
    assert.equal(t.agent.status().released, undefined, 'serving on the promises: none released');
    t.cp.answers = [stayActive(2)];
    now += 500;
    await t.step();
    assert.deepEqual(t.agent.status().released, { instance: TEST_INSTANCE, seq: 2 }, 'renewed after sending request 2');
    assert.equal(t.agent.deadline, now + windowMs, 'the renewal, sent after both requests, sets a deadline past theirs');
    assert.deepEqual(t.releases, [['node-b', { instance: TEST_INSTANCE, seq: 2 }]], 'told to the peer at once');
    now += 500;
    await t.step();
    assert.equal(t.releases.length, 1, 'once: no promise asked for since');
  });

  it('the watchdog is petted while the deadline is at least its longest timeout away — a renewal that times out starves nothing the deadline covers', async () => {
    const t = await withPeer(async () => ({ accepted: true, ttlMs: 3000 }));
    await activeUnderEpoch2(t);
    const renewedAt = now;
    const maxWatchdog = windowMs - 800; // activeWindow − requestTimeout: the longest watchdog this timing allows
    t.timers.length = 0;
    t.agent.keepWatchdog();
    t.pets.at.length = 0;
    // The pet loop's timer, fired by hand at these moments; no renewal lands meanwhile.
    const lastSafe = renewedAt + windowMs - maxWatchdog; // the renewal was sent at renewedAt: deadline − longest watchdog
    for (const at of [renewedAt + 500, lastSafe, lastSafe + 1, renewedAt + windowMs - 100]) {
      now = at;
      t.timers.shift()!();
      await new Promise((ok) => setImmediate(ok));
    }
    assert.deepEqual(t.pets.at, [renewedAt + 500, lastSafe], 'no pet once a hang after it could outlast the deadline');
    // A promise extends the deadline, and the pets go on.
    t.cp.answers = [new Error('no answer within 800 ms')];
    now = renewedAt + windowMs - 50;
    await t.step();
    assert.equal(t.agent.role, 'active');
    assert.equal(t.pets.at.at(-1), now, 'petted once the promise extended the deadline');
  });

  it('without a promise (refused, or no answer) it demotes at its lease deadline, as without failsafe', async () => {
    for (const promise of [
      async (): Promise<PromiseAnswer> => ({ accepted: false, reason: 'this node is active' }),
      () => Promise.reject(new Error('timed out')),
    ]) {
      journal.length = 0;
      const t = await withPeer(promise);
      await activeUnderEpoch2(t);
      const leaseDeadline = t.agent.deadline!;
      t.cp.answers = [new Error('no answer within 800 ms')];
      while (now < leaseDeadline) {
        now += 500;
        await t.step();
      }
      assert.equal(t.agent.role, 'passive');
      assert.ok(t.asked.length > 0);
    }
  });

  it('an answer about the lease is final: no promise is asked for, it demotes', async () => {
    const t = await withPeer(async () => ({ accepted: true, ttlMs: 3000 }));
    await activeUnderEpoch2(t);
    t.cp.answers = [answer({ action: 'demote', epoch: 3, holder: 'node-a', reason: 'node-a holds epoch 3' }, false, 'node-a')];
    now += 500;
    assert.equal((await t.step())?.action, 'demote');
    assert.deepEqual(t.asked, []);
  });

  it('the passive that vouches says so to the arbiter, never that its peer is unreachable, and acts on no grant until the promise ends', async () => {
    const t = await withPeer(async () => ({ accepted: false, reason: 'unused' }));
    now += 3_001;
    t.cp.answers = [answer({ action: 'stay-passive', epoch: 1, holder: 'node-a', reason: 'node-a holds epoch 1' }, false, 'node-a')];
    await t.step();
    assert.deepEqual(await t.agent.answerPromise({ node: 'node-a', epoch: 1 }), { accepted: true, ttlMs: 3000 });
    const promisedAt = now;
    now += 500;
    t.cp.answers = [granted(2)];
    assert.equal((await t.step())?.action, 'none', 'a grant (one sent before the promise, say) is not acted on');
    assert.deepEqual(t.cp.sent.at(-1)?.vouching, { for: 'node-a', epoch: 1, remainingMs: 2500 });
    assert.equal(t.cp.sent.at(-1)?.peer, undefined);
    assert.ok(!journal.some((j) => j.startsWith('fence')));
    now = promisedAt + 3_000;
    assert.equal((await t.step())?.action, 'fence', 'the promise has run out');
  });

  it('the passive ends its promise when the holder releases it, unless a later request extended it', async () => {
    const { lines, log } = capturedLog();
    const t = await withPeer(async () => ({ accepted: false, reason: 'unused' }), log);
    now += 3_001;
    t.cp.answers = [answer({ action: 'stay-passive', epoch: 1, holder: 'node-a', reason: 'node-a holds epoch 1' }, false, 'node-a')];
    await t.step();
    const request = (seq: number) => ({ node: 'node-a', epoch: 1, asked: { instance: 'aaaaaaaaaaaaaaaa', seq } });
    assert.deepEqual(await t.agent.answerPromise(request(1)), { accepted: true, ttlMs: 3000 });
    assert.deepEqual(await t.agent.answerPromise(request(2)), { accepted: true, ttlMs: 3000 });
    const active = { role: 'active' as const, leaseRemainingMs: 2_700 };
    peerView = { ...active, released: { instance: 'aaaaaaaaaaaaaaaa', seq: 1 } };
    now += 500;
    await t.step();
    assert.deepEqual(t.cp.sent.at(-1)?.vouching, { for: 'node-a', epoch: 1, remainingMs: 2500 }, 'request 2 came after the release of 1');
    peerView = { ...active, released: { instance: 'bbbbbbbbbbbbbbbb', seq: 5 } };
    now += 500;
    await t.step();
    assert.ok(t.cp.sent.at(-1)?.vouching, 'another process of node-a releases nothing of this one');
    assert.equal(t.agent.releasePromise('node-c', { instance: 'aaaaaaaaaaaaaaaa', seq: 9 }), false, 'nor a node that is not its peer');
    // Released, and then the peer renews late: the passive polls at full rate again.
    peerView = { ...active, leaseRemainingMs: 500, released: { instance: 'aaaaaaaaaaaaaaaa', seq: 2 } };
    now += 500;
    t.cp.answers = [granted(2)];
    assert.equal((await t.step())?.action, 'fence', 'released: the passive reports its peer again and acts on a grant');
    assert.equal(t.cp.sent.at(-1)?.vouching, undefined);
    assert.ok(lines.some((l) => /node-a renewed its lease since it asked this node to vouch: the promise ends now/.test(l.msg)));
  });

  it('a restarted agent keeps out of the lease for one promise window, unless it found resources running', async () => {
    const t = await withPeer(async () => ({ accepted: false, reason: 'unused' }));
    t.cp.answers = [granted(2)];
    assert.equal((await t.step())?.action, 'none');
    assert.deepEqual(t.cp.sent.at(-1)?.vouching, { for: 'node-a', epoch: 0, remainingMs: 3000 });
    now += 3_000;
    assert.equal((await t.step())?.action, 'fence');

    journal.length = 0;
    const leftover = await withPeer(async () => ({ accepted: false, reason: 'unused' }));
    leftover.others[0]!.state = { state: 'running' };
    await leftover.agent.recover();
    leftover.cp.answers = [granted(2)];
    await leftover.step();
    assert.equal(leftover.cp.sent.at(-1)?.vouching, undefined, 'a node that ran resources had given no promise that still runs');
  });

  it('a restarted agent that acted under the highest epoch it has seen has no restart window; one that has seen a later epoch keeps it', async () => {
    const acted = await withPeer(async () => ({ accepted: false, reason: 'unused' }), undefined, new RememberedEpochs({ seen: 2, acted: 2 }));
    acted.cp.answers = [granted(3)];
    assert.equal((await acted.step())?.action, 'fence', 'every promise it gave had run out before it acted under epoch 2');
    assert.equal(acted.cp.sent.at(-1)?.vouching, undefined);

    journal.length = 0;
    const later = await withPeer(async () => ({ accepted: false, reason: 'unused' }), undefined, new RememberedEpochs({ seen: 3, acted: 2 }));
    later.cp.answers = [granted(4)];
    assert.equal((await later.step())?.action, 'none', 'it may have vouched for epoch 3');
    assert.deepEqual(later.cp.sent.at(-1)?.vouching, { for: 'node-a', epoch: 0, remainingMs: 3000 });
  });

  it('an epoch it has not seen is on disk before it promises for it', async () => {
    const memory = new RememberedEpochs({ seen: 1, acted: 1 });
    let written: () => void = () => {};
    const slowDisk: EpochMemory = {
      current: () => memory.current(),
      record: async (update) => {
        await new Promise<void>((resolve) => (written = resolve));
        await memory.record(update);
      },
    };
    const t = await withPeer(async () => ({ accepted: false, reason: 'unused' }), undefined, slowDisk);
    let answered: PromiseAnswer | null = null;
    const answering = t.agent.answerPromise({ node: 'node-a', epoch: 3 }).then((a) => (answered = a));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(answered, null, 'no answer while epoch 3 is not on disk');
    written();
    await answering;
    assert.deepEqual(answered, { accepted: true, ttlMs: 3000 });
    assert.deepEqual(memory.current(), { seen: 3, acted: 1 });
  });
});

describe("the agent's metrics", () => {
  it('show its role, epoch, deadline margin, heartbeats, pets and each resource, and forget the resources once it demotes', async () => {
    const { cp, step, metrics, others, spec } = await agentFor();
    await takeOver(cp, step);
    now += 500;
    cp.answers = [stayActive(2)];
    const sentAt = now;
    await step();
    let text = await metrics.registry.metrics();
    assert.equal(sample(text, 'nfsha_agent_role', { role: 'active' }), 1);
    assert.equal(sample(text, 'nfsha_agent_role', { role: 'passive' }), 0);
    assert.equal(sample(text, 'nfsha_agent_build_info', { version: VERSION, runtime: process.version }), 1);
    assert.equal(sample(text, 'nfsha_agent_epoch'), 2);
    assert.equal(sample(text, 'nfsha_agent_deadline_margin_seconds', { epoch: '2' }), Math.round(activeDeadline(sentAt, spec.timing) - now) / 1000);
    // The grant answered a passive's heartbeat; the activating and the active ones renewed.
    assert.equal(sample(text, 'nfsha_agent_heartbeat_duration_seconds_count', { outcome: 'renewed' }), 2);
    assert.ok(sample(text, 'nfsha_agent_watchdog_pets_total') >= 2);
    assert.equal(sample(text, 'nfsha_agent_resource_up', { resource: 'nfs-server' }), 1);
    assert.equal(sample(text, 'nfsha_agent_failsafe'), 0);

    const nfsd = others.find((r) => r.name === 'nfs-server')!;
    nfsd.state = { state: 'failed', reason: 'nfsd is not running' };
    cp.answers = [new Error('connect ECONNREFUSED')];
    now += 500;
    await step();
    text = await metrics.registry.metrics();
    assert.equal(sample(text, 'nfsha_agent_resource_up', { resource: 'nfs-server' }), 0);
    assert.equal(sample(text, 'nfsha_agent_heartbeat_duration_seconds_count', { outcome: 'failed' }), 1);

    cp.answers = [answer({ action: 'demote', epoch: 3, holder: 'node-a', reason: 'node-a holds epoch 3' }, false, 'node-a')];
    now += 500;
    await step();
    text = await metrics.registry.metrics();
    assert.equal(sample(text, 'nfsha_agent_role', { role: 'passive' }), 1);
    assert.equal(sample(text, 'nfsha_agent_heartbeat_duration_seconds_count', { outcome: 'answered' }), 2);
    assert.throws(() => sample(text, 'nfsha_agent_deadline_margin_seconds'), /0 samples/, 'holds nothing: no margin');
    assert.ok(!text.includes('nfsha_agent_resource_up{'), 'nothing runs: no resource is reported up or down');
  });

  it('are served on their own listener at /metrics, and nothing else is', async () => {
    const { metrics } = await agentFor();
    const server = await metrics.listen('127.0.0.1', 0);
    try {
      const ok = await fetch(`http://127.0.0.1:${server.port}/metrics`);
      assert.equal(ok.status, 200);
      assert.match(await ok.text(), /^nfsha_agent_role\{role="passive"\} 1$/m);
      assert.equal((await fetch(`http://127.0.0.1:${server.port}/peer/v1/status`)).status, 404);
    } finally {
      server.close();
    }
  });
});
