/**
 * nfs-ha-agent: the node agent's command line.
 *
 *   nfs-ha-agent run                          the HA loop (systemd runs this)
 *   nfs-ha-agent status [--json]              role, epoch, lease left, each resource's monitor
 *   nfs-ha-agent validate [--json]            can this node run the cluster's resources?
 *   nfs-ha-agent start|stop --dry-run [--json]  the exact commands, in order, without running them
 *
 * The spec comes from the control plane (via the config file) or, for validate and dry runs,
 * from a local file: --spec cluster.json --node node-a.
 */
import { spawnSync } from 'node:child_process';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { z } from 'zod';
import { pino, type Logger } from 'pino';
import { reservationKey } from '../shared/reservation-key.ts';
import { type ClusterSpec, type NodeSpec, nodeDevices } from '../shared/spec.ts';
import { EnrolmentSchema } from '../shared/api.ts';
import { watchdogProblem } from '../shared/timing.ts';
import { specFromText } from '../shared/spec-file.ts';
import { VERSION } from '../shared/version.ts';
import { type AgentConfig, AgentConfigError, AgentConfigSchema, DEFAULT_CONFIG_PATH, loadAgentConfig } from './config.ts';
import { type EpochMemory, FileEpochMemory } from './epoch-memory.ts';
import { ControlPlaneClient } from './control-plane-client.ts';
import { DRY_RUN_JOURNAL_MODE, dryRunNode } from './dry-run.ts';
import { CommandLedger, type Executor, formatCommand, HostExecutor, RecordingExecutor } from './executor.ts';
import { ProcClientTickler } from './tickle.ts';
import { NodeAgent } from './loop.ts';
import { AgentMetrics } from './metrics.ts';
import { outsideAllowed } from './allowed.ts';
import { waitForDevices } from './devices.ts';
import { fetchPeerStatus, type PeerKeys, PeerWatch, type PeerStatus, startPeerServer } from './peer.ts';
import { nodeResources, prepareResources } from './resources/index.ts';
import type { ReadJournalMode } from './resources/nfs-server.ts';
import type { FencingState, MonitorResult } from './resources/resource.ts';
import { RebootSelfFence, WatchdogSelfFence, watchdogTimeoutSeconds } from './self-fence.ts';

class UsageError extends Error {}

interface Target {
  spec: ClusterSpec;
  node: NodeSpec;
  config: AgentConfig | null;
}

interface SpecOptions {
  config: string;
  spec?: string;
  node?: string;
}

async function target(options: SpecOptions): Promise<Target> {
  if (options.spec) {
    if (!options.node) throw new UsageError('--spec needs --node: which node of the spec this is');
    const text = await readFile(options.spec, 'utf8').catch((err: Error) => {
      throw new UsageError(`cannot read ${options.spec}: ${err.message}`);
    });
    const { spec, problems } = specFromText(text, options.spec);
    if (!spec) throw new UsageError(`${options.spec} is not a valid cluster spec: ${problems.join('; ')}`);
    const node = spec.nodes.find((n) => n.id === options.node);
    if (!node) throw new UsageError(`node "${options.node}" is not in ${options.spec} (nodes: ${spec.nodes.map((n) => n.id).join(', ')})`);
    return { spec, node, config: null };
  }
  const config = await loadAgentConfig(options.config);
  const { spec } = await client(config).spec();
  const node = spec.nodes.find((n) => n.id === config.nodeId);
  if (!node) throw new UsageError(`this node (${config.nodeId}) is not in cluster ${config.clusterId}`);
  return { spec, node, config };
}

/** The CLI's own calls (validate, status): patient, since a loaded node may take seconds to answer. */
function client(config: AgentConfig, timeoutMs = 15_000) {
  return new ControlPlaneClient(config.controlPlane.url, config.clusterId, config.nodeId, { timeoutMs, token: config.controlPlane.token });
}

function logger(level: string): Logger {
  return pino({ name: 'nfs-ha-agent', level, base: { service: 'nfs-ha-agent' }, timestamp: pino.stdTimeFunctions.isoTime });
}

function resourcesFor(t: Target, exec: Executor, log: Logger, fencing: FencingState, journalMode?: ReadJournalMode) {
  return nodeResources({ spec: t.spec, node: t.node, exec, log, fencing }, journalMode);
}

async function dryRun(direction: 'start' | 'stop', options: SpecOptions & { dryRun?: boolean; json?: boolean }) {
  if (!options.dryRun) {
    throw new UsageError(`${direction} runs only inside the agent, under a lease from the arbiter; use --dry-run to see its commands`);
  }
  const t = await target(options);
  const exec = new RecordingExecutor(dryRunNode(t.spec, t.node.id, direction));
  const log = logger('silent');
  const resources = resourcesFor(t, exec, log, { epoch: 1, confirmedEpoch: 1 }, DRY_RUN_JOURNAL_MODE);
  const sections: { step: string; commands: RecordingExecutor['commands'] }[] = [];
  const section = async (step: string, work: () => Promise<unknown>) => {
    const before = exec.commands.length;
    await work();
    sections.push({ step, commands: exec.commands.slice(before) });
  };
  // What prepare() runs when the agent starts, ahead of any takeover (never on its path).
  let prepared: RecordingExecutor['commands'] = [];
  if (direction === 'start') {
    await prepareResources(resources);
    prepared = exec.commands.splice(0);
    const peer = t.spec.nodes.find((n) => n.id !== t.node.id)!;
    await section(`fence: preempt ${peer.id}'s key ${reservationKey(t.spec.id, peer.id)} (as the arbiter's grant directs)`, () =>
      resources.reservation.fence([reservationKey(t.spec.id, peer.id)]),
    );
    for (const r of resources.ordered) await section(`start ${r.name}`, () => r.start());
  } else {
    for (const r of [...resources.ordered].reverse())
      await section(`stop ${r.name}${r.name === 'scsi-reservation' ? ' (kept: the next holder preempts it)' : ''}`, () => r.stop());
  }
  if (options.json) {
    console.log(JSON.stringify({ node: t.node.id, cluster: t.spec.id, direction, prepared, steps: sections }, null, 2));
    return;
  }
  const situation = direction === 'start' ? `taking over from ${t.spec.nodes.find((n) => n.id !== t.node.id)!.id}` : 'stopping everything it holds';
  console.log(`# nfs-ha-agent ${direction} --dry-run: node ${t.node.id} of cluster ${t.spec.id}, ${situation}`);
  if (prepared.length > 0) {
    console.log(`\n# prepared when the agent starts, whatever its role (not on the takeover's path)`);
    for (const c of prepared) console.log(formatCommand(c));
  }
  for (const s of sections) {
    console.log(`\n# ${s.step}`);
    for (const c of s.commands) console.log(formatCommand(c));
  }
}

/** Can this node run the cluster? Each resource's own checks, and the watchdog against the timing. */
async function preflight(t: Target, resources: ReturnType<typeof resourcesFor>): Promise<{ resource: string; problems: string[] }[]> {
  const results = [];
  // A check that cannot run (a tool missing) is a problem to name, not a crash.
  for (const r of resources.ordered) results.push({ resource: r.name as string, problems: await r.validate().catch((err: Error) => [err.message]) });
  if (t.config?.selfFence.mode === 'watchdog') {
    const device = t.config.selfFence.device;
    const timeout = await watchdogTimeoutSeconds(device);
    const problem =
      timeout === null
        ? `${device}: no watchdog timeout in sysfs (is a driver loaded? e.g. modprobe softdog soft_margin=1)`
        : watchdogProblem(timeout, t.spec.timing);
    results.push({ resource: 'self-fence', problems: problem ? [problem] : [] });
  }
  return results;
}

async function validate(options: SpecOptions & { json?: boolean }) {
  const t = await target(options);
  const log = logger('silent');
  const results = await preflight(t, resourcesFor(t, new HostExecutor(log), log, { epoch: 0, confirmedEpoch: 0 }));
  const problems = results.flatMap((r) => r.problems.map((p) => `${r.resource}: ${p}`));
  if (options.json) console.log(JSON.stringify({ node: t.node.id, ok: problems.length === 0, results }, null, 2));
  else console.log(problems.length === 0 ? `node ${t.node.id}: every resource can run here` : problems.map((p) => `✗ ${p}`).join('\n'));
  if (problems.length > 0) process.exitCode = 3;
}

async function status(options: { config: string; json?: boolean }) {
  const t = await target(options);
  const config = t.config!;
  const log = logger('silent');
  let agent: PeerStatus | { error: string };
  try {
    agent = await fetchPeerStatus(`http://127.0.0.1:${t.node.peerPort}/peer/v1/status`, config.peer, 10_000);
  } catch (err) {
    agent = { error: `the agent is not answering on port ${t.node.peerPort}: ${(err as Error).message}` };
  }
  const resources = resourcesFor(t, new HostExecutor(log), log, { epoch: 0, confirmedEpoch: 0 });
  const monitors: { resource: string; result: MonitorResult }[] = [];
  for (const r of resources.ordered)
    monitors.push({ resource: r.name, result: await r.monitor().catch((err: Error) => ({ state: 'failed' as const, reason: err.message })) });
  if (options.json) {
    console.log(JSON.stringify({ node: t.node.id, cluster: t.spec.id, agent, resources: monitors }, null, 2));
    return;
  }
  console.log(`node ${t.node.id} of cluster ${t.spec.id}`);
  if ('error' in agent) console.log(`agent   ${agent.error}`);
  else {
    const lease = agent.leaseRemainingMs === null ? 'holds no lease' : `lease ${(agent.leaseRemainingMs / 1000).toFixed(1)} s left`;
    console.log(`agent   ${agent.role}, epoch ${agent.epoch}, ${lease}`);
    if (agent.clients) console.log(`clients ${agent.clients.length} connected to the VIP${agent.clients.length > 0 ? `: ${agent.clients.join(', ')}` : ''}`);
  }
  for (const m of monitors) {
    const r = m.result;
    console.log(`${m.resource.padEnd(17)} ${r.state}${r.state === 'failed' ? `: ${r.reason}` : r.state === 'running' && r.detail ? `, ${r.detail}` : ''}`);
  }
}

/**
 * The running agent's role, one word (`down` when it does not answer): what the package's and the
 * installer's scripts ask before they restart an agent, which only a passive one may be.
 */
async function role(options: { config: string }) {
  const t = await target(options);
  const agent = await fetchPeerStatus(`http://127.0.0.1:${t.node.peerPort}/peer/v1/status`, t.config!.peer, 5_000).catch(() => null);
  console.log(agent?.role ?? 'down');
}

/**
 * The spec names something this node does not allow: run nothing, and say why in every
 * heartbeat (the arbiter never grants an unfit node the lease) until a new spec version fits,
 * then exit for systemd to start the agent on it.
 */
async function refuseSpec(
  config: AgentConfig,
  cp: ControlPlaneClient,
  log: Logger,
  memory: EpochMemory,
  problems: string[],
  specVersion: number,
  pollMs: number,
): Promise<void> {
  log.error({ problems }, `this node refuses cluster ${config.clusterId} (spec version ${specVersion}): ${problems.join('; ')}`);
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
  for (;;) {
    await cp
      .heartbeat({ role: 'passive', epoch: 0, unfit: problems.join('; ').slice(0, 1000), known: memory.current() })
      .catch((err: Error) => log.warn({ err: err.message }, 'heartbeat failed'));
    await new Promise((r) => setTimeout(r, pollMs));
    const next = await cp.spec().catch(() => null);
    if (next && next.specVersion !== specVersion) {
      log.info({ specVersion: next.specVersion }, 'a new spec version: restarting on it');
      process.exit(0);
    }
  }
}

async function run(options: { config: string }) {
  const config = await loadAgentConfig(options.config);
  const log = logger(config.logLevel);
  const cp = client(config);
  let fetched: { spec: ClusterSpec; specVersion: number } | null = null;
  while (!fetched) {
    try {
      fetched = await cp.spec();
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'cannot fetch the cluster spec yet; retrying');
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  const { spec, specVersion } = fetched;
  const node = spec.nodes.find((n) => n.id === config.nodeId);
  if (!node) throw new UsageError(`this node (${config.nodeId}) is not in cluster ${config.clusterId}`);
  const memory = await FileEpochMemory.open(config.stateDir);
  log.info({ stateDir: config.stateDir, ...memory.current() }, 'epoch memory read');
  const refused = outsideAllowed(spec, node.id, config.allowed);
  if (refused.length > 0) return refuseSpec(config, cp, log, memory, refused, specVersion, spec.timing.passivePollMs);
  // Only the disks this node allows are looked at; what is still missing, the preflight names.
  await waitForDevices(nodeDevices(spec, node.id), log);
  const peer = spec.nodes.find((n) => n.id !== config.nodeId)!;
  const fencing: FencingState = { epoch: 0, confirmedEpoch: 0 };
  // Read at scrape time: the agent exists by the time the listener starts.
  const metrics = new AgentMetrics(() => agent.status());
  const ledger = new CommandLedger();
  const executor = new HostExecutor(log, (r) => {
    ledger.record(r);
    metrics.command(r.argv, r.exitCode, r.durationMs / 1000);
  });
  const resources = resourcesFor({ spec, node, config }, executor, log, fencing);
  const problems = (await preflight({ spec, node, config }, resources)).flatMap((r) => r.problems.map((p) => `${r.resource}: ${p}`));
  if (problems.length > 0) {
    for (const p of problems) log.error(p);
    throw new UsageError(`this node cannot run the cluster's resources:\n  ${problems.join('\n  ')}`);
  }
  const now = () => performance.now();
  // What a reload (SIGHUP) may change without a restart: the credential and the peer secrets.
  let peerKeys: PeerKeys = config.peer;
  const controlPlane = new ControlPlaneClient(config.controlPlane.url, config.clusterId, config.nodeId, {
    timeoutMs: spec.timing.requestTimeoutMs,
    token: config.controlPlane.token,
  });
  let rejectedLogged = 0;
  const agent = new NodeAgent({
    spec,
    nodeId: node.id,
    controlPlane,
    resources,
    fencing,
    memory,
    selfFence: metrics.counting(config.selfFence.mode === 'watchdog' ? new WatchdogSelfFence(config.selfFence.device, log) : new RebootSelfFence(log)),
    peer: new PeerWatch(
      `http://${peer.address}:${peer.peerPort}/peer/v1/status`,
      () => peerKeys,
      spec.timing.requestTimeoutMs,
      spec.timing.suspectAfterMs,
      now,
      (err) => {
        if (now() - rejectedLogged < 60_000) return;
        rejectedLogged = now();
        log.warn({ peer: peer.id, err: err.message }, `answer from ${peer.id} rejected: ${err.message}`);
      },
    ),
    now,
    ledger,
    clients: new ProcClientTickler(executor, spec.vip.address),
    log,
    maxRestarts: config.maxRestarts,
    monitorIntervalMs: config.monitorIntervalMs,
    storageMonitorIntervalMs: config.storageMonitorIntervalMs,
    demoteBudgetMs: config.demoteBudgetMs,
    metrics,
    specVersion,
    // Passive and idle: exit, and systemd (Restart=always) starts the agent on the new spec.
    onNewSpec: () => void shutdown('new spec'),
  });
  const server = await startPeerServer({
    host: config.peer.listen,
    port: node.peerPort,
    keys: () => peerKeys,
    status: () => agent.status(),
    promise: (req) => agent.answerPromise(req),
    release: (from, through) => agent.releasePromise(from, through),
    handover: (from, epoch) => agent.leaseHandedOver(from, epoch),
  });
  const metricsServer = config.metrics.port === 0 ? null : await metrics.listen(config.metrics.listen, config.metrics.port);
  if (metricsServer)
    log.info(
      { listen: config.metrics.listen, port: metricsServer.port },
      `Prometheus metrics on http://${config.metrics.listen}:${metricsServer.port}/metrics`,
    );
  log.info({ cluster: spec.id, node: node.id, peer: peer.id, specVersion }, `nfs-ha-agent running for ${node.id} of ${spec.id} (spec version ${specVersion})`);
  await agent.recover();
  agent.run();
  // Best effort, beside the loop: a start does it again if this failed.
  prepareResources(resources).catch((err: Error) => log.warn({ err: err.message }, `resources not prepared ahead of a takeover: ${err.message}`));
  async function shutdown(signal: string) {
    log.info({ signal }, 'stopping');
    agent.stop();
    server.close();
    metricsServer?.close();
    await agent.settled();
    // Leaving the lease to expire would cost a failover its TTL; a holder demotes and releases.
    if (agent.role !== 'passive') await agent.shutdown();
    process.exit(0);
  }
  /** `systemctl reload nfs-ha-agent`: a rotated credential or peer secret, taken without a restart (no failover). */
  async function reload() {
    try {
      const next = await loadAgentConfig(options.config);
      const fixed = (['clusterId', 'nodeId'] as const).filter((k) => next[k] !== config[k]);
      if (next.controlPlane.url !== config.controlPlane.url) fixed.push('controlPlane.url' as never);
      controlPlane.setToken(next.controlPlane.token);
      peerKeys = next.peer;
      const refusedNow = outsideAllowed(spec, node!.id, next.allowed);
      if (refusedNow.length > 0) log.error({ problems: refusedNow }, 'the reloaded "allowed" section refuses the running spec; it applies from the next start');
      log.info(
        { restartNeededFor: fixed },
        `reloaded ${options.config}: credential and peer secrets in use${fixed.length ? `; ${fixed.join(', ')} change only with a restart` : ''}`,
      );
    } catch (err) {
      log.error({ err: (err as Error).message }, `reload failed; keeping the configuration in use: ${(err as Error).message}`);
    }
  }
  process.on('SIGHUP', () => void reload());
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/**
 * A rotated secret into agent.json (0600, written whole then renamed), then a reload of the
 * running agent: no restart, so no failover. A peer secret keeps the old one as previousToken.
 */
async function setSecret(which: 'credential' | 'peer', options: { config: string; reload: boolean }) {
  const secret = (await readStdin()).trim();
  if (!/^[\x21-\x7e]{16,200}$/.test(secret)) throw new UsageError('give the new secret on standard input (16–200 printable characters), not as an argument');
  const config = await loadAgentConfig(options.config);
  const raw = JSON.parse(await readFile(options.config, 'utf8')) as Record<string, any>;
  if (which === 'credential') raw.controlPlane.token = secret;
  else if (secret !== config.peer.token) raw.peer = { ...raw.peer, token: secret, previousToken: config.peer.token };
  AgentConfigSchema.parse(raw);
  await writeFile(`${options.config}.new`, `${JSON.stringify(raw, null, 2)}\n`, { mode: 0o600 });
  await rename(`${options.config}.new`, options.config);
  console.error(
    `nfs-ha-agent: ${which === 'credential' ? 'agent credential' : 'peer secret (the old one kept as previousToken)'} written to ${options.config}`,
  );
  if (options.reload) {
    const r = spawnSync('systemctl', ['reload', 'nfs-ha-agent'], { stdio: 'inherit', timeout: 30_000 });
    if (r.status !== 0) throw new UsageError('systemctl reload nfs-ha-agent failed; reload the agent by hand (it reads the file on SIGHUP)');
    console.error('nfs-ha-agent: the running agent reloaded it (no restart)');
  }
}

interface ConfigureOptions {
  config: string;
  controlPlane: string;
  insecure?: boolean;
  enrolled?: string;
  device?: string[];
  vg?: string;
  mountPrefix?: string;
}

/**
 * The installer's last step before it starts the agent: new values over the node's agent.json —
 * the control plane's URL, the credential and peer secret from the enrolment exchange, the
 * allowed set — checked whole against the schema the agent runs with, written 0600 atomically.
 * Whatever else the file holds (timing overrides, the metrics listener) is kept.
 */
async function configure(options: ConfigureOptions) {
  const raw = (await readFile(options.config, 'utf8').then(
    (text) => JSON.parse(text) as Record<string, any>,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return {};
      throw new UsageError(`cannot read ${options.config}: ${err.message}`);
    },
  )) as Record<string, any>;
  raw.controlPlane = { ...raw.controlPlane, url: options.controlPlane };
  if (options.insecure) raw.controlPlane.insecure = true;
  if (options.enrolled) {
    const parsed = EnrolmentSchema.safeParse(JSON.parse(await readFile(options.enrolled, 'utf8')));
    if (!parsed.success) throw new UsageError(`${options.enrolled} is not the enrolment exchange's answer: ${z.prettifyError(parsed.error)}`);
    const r = parsed.data;
    if (!r.peerToken) throw new UsageError('the control plane gave no peer token');
    raw.controlPlane.token = r.credential;
    Object.assign(raw, { clusterId: r.clusterId, nodeId: r.node });
    raw.peer = { ...raw.peer, token: r.peerToken };
    if (r.previousPeerToken) raw.peer.previousToken = r.previousPeerToken;
    else delete raw.peer.previousToken;
    console.error(`nfs-ha-agent: enrolled as ${r.node} of cluster ${r.clusterId}`);
  }
  if (options.device?.length || options.vg || options.mountPrefix) {
    if (!options.device?.length || !options.vg || !options.mountPrefix)
      throw new UsageError('give the whole allowed set: --device (each), --vg and --mount-prefix');
    raw.allowed = { devices: options.device, volumeGroup: options.vg, mountPrefix: options.mountPrefix };
  }
  const checked = AgentConfigSchema.safeParse(raw);
  if (!checked.success) throw new UsageError(`the resulting ${options.config} would not be valid: ${z.prettifyError(checked.error)}`);
  await writeFile(`${options.config}.new`, `${JSON.stringify(raw, null, 2)}\n`, { mode: 0o600 });
  await rename(`${options.config}.new`, options.config);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const program = new Command('nfs-ha-agent').description('nfs-ha node agent').version(VERSION).showHelpAfterError();
const configOption = new Option('-c, --config <file>', 'agent configuration').default(DEFAULT_CONFIG_PATH);
const specOptions = (cmd: Command) =>
  cmd
    .addOption(configOption)
    .option('--spec <file>', 'cluster spec (YAML or JSON) instead of the control plane')
    .option('--node <id>', "with --spec: this node's id");

program.command('run').description('run the HA loop').addOption(configOption).action(run);
program
  .command('status')
  .description('role, epoch, lease and resource states of this node')
  .addOption(configOption)
  .option('--json', 'machine-readable output')
  .action(status);
program
  .command('configure')
  .description("write this node's agent.json from the enrolment exchange and the allowed set (the installer runs it)")
  .addOption(configOption)
  .requiredOption('--control-plane <url>', "the control plane's URL")
  .option('--insecure', 'allow a plain-HTTP control plane (a lab)')
  .option('--enrolled <file>', "the enrolment exchange's answer (JSON)")
  .option('--device <path...>', 'a shared device this node lets the cluster use (repeat)')
  .option('--vg <name>', 'the volume group the cluster may activate here')
  .option('--mount-prefix <path>', 'the shared filesystem must be mounted at or below it')
  .action(configure);
program
  .command('role')
  .description("the running agent's role, one word (passive, fencing, activating, active, demoting; down when it does not answer)")
  .addOption(configOption)
  .action(role);
specOptions(program.command('validate').description("check that this node can run the cluster's resources"))
  .option('--json', 'machine-readable output')
  .action(validate);
for (const which of ['credential', 'peer'] as const) {
  program
    .command(`set-${which === 'peer' ? 'peer-secret' : 'credential'}`)
    .description(`take a rotated ${which === 'peer' ? 'peer-channel secret' : 'agent credential'} from standard input and reload the agent (no restart)`)
    .addOption(configOption)
    .option('--no-reload', 'only write the file')
    .action((options) => setSecret(which, options));
}
for (const direction of ['start', 'stop'] as const) {
  specOptions(program.command(direction).description(`the commands a ${direction} runs, in order`))
    .option('--dry-run', 'print the commands without running them')
    .option('--json', 'machine-readable output')
    .action((options) => dryRun(direction, options));
}

program.parseAsync().catch((err: unknown) => {
  if (err instanceof UsageError || err instanceof AgentConfigError) {
    console.error(`nfs-ha-agent: ${err.message}`);
    process.exit(2);
  }
  console.error(`nfs-ha-agent: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
