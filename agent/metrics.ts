/**
 * The agent's Prometheus metrics, on a listener of their own (default 127.0.0.1:9758, config
 * `metrics`), apart from the peer channel: a scrape never touches the lease's path. The state
 * (role, epoch, deadline margin, failsafe, vouching) is read from the agent at scrape time;
 * renewals, commands, monitor results and watchdog pets are counted as they happen.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename } from 'node:path';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { NODE_ROLES } from '../shared/node-role.ts';
import type { SelfFence } from './self-fence.ts';
import type { PeerStatus } from './peer.ts';
import { VERSION } from '../shared/version.ts';

const OWN = { registers: [] as Registry[] };
/** Seconds: a renewal takes milliseconds; a command up to its timeout (tens of seconds). */
const RENEWAL_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const COMMAND_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60];

export type HeartbeatOutcome = 'renewed' | 'answered' | 'failed';

export class AgentMetrics {
  readonly registry = new Registry();
  readonly #heartbeats = new Histogram({
    ...OWN,
    name: 'nfsha_agent_heartbeat_duration_seconds',
    help: "Heartbeats to the arbiter by outcome: renewed (the holder's lease extended), answered (anything else the arbiter said), failed (no answer)",
    labelNames: ['outcome'],
    buckets: RENEWAL_BUCKETS,
  });
  readonly #commands = new Histogram({
    ...OWN,
    name: 'nfsha_agent_command_duration_seconds',
    help: 'Commands the agent ran, by program and whether they exited 0',
    labelNames: ['program', 'ok'],
    buckets: COMMAND_BUCKETS,
  });
  readonly #pets = new Counter({ ...OWN, name: 'nfsha_agent_watchdog_pets_total', help: 'Times the agent petted the watchdog' });
  readonly #resources = new Gauge({
    ...OWN,
    name: 'nfsha_agent_resource_up',
    help: 'The last monitor result of each resource this node runs (1 running, 0 failed); none while passive',
    labelNames: ['resource'],
  });

  constructor(status: () => PeerStatus) {
    const gauges = [
      new Gauge({
        ...OWN,
        name: 'nfsha_agent_build_info',
        help: "Always 1: this agent's release and the Node runtime it runs on (a cluster of mixed versions shows two)",
        labelNames: ['version', 'runtime'],
        collect() {
          this.set({ version: VERSION, runtime: process.version }, 1);
        },
      }),
      new Gauge({
        ...OWN,
        name: 'nfsha_agent_role',
        help: '1 for the role this node is in',
        labelNames: ['role'],
        collect() {
          const s = status();
          for (const role of NODE_ROLES) this.set({ role }, s.role === role ? 1 : 0);
        },
      }),
      new Gauge({
        ...OWN,
        name: 'nfsha_agent_epoch',
        help: 'The epoch this node acts under (0 while passive)',
        collect() {
          this.set(status().epoch);
        },
      }),
      new Gauge({
        ...OWN,
        name: 'nfsha_agent_deadline_margin_seconds',
        help: 'Time left before this node must have stopped serving, by its own clock, under the epoch it acts under (absent: it holds nothing)',
        labelNames: ['epoch'],
        collect() {
          this.reset();
          const s = status();
          if (s.leaseRemainingMs !== null) this.set({ epoch: String(s.epoch) }, s.leaseRemainingMs / 1000);
        },
      }),
      new Gauge({
        ...OWN,
        name: 'nfsha_agent_failsafe',
        help: "1 while this node serves on its peer's promise, the arbiter unreachable",
        collect() {
          this.set(status().failsafe ? 1 : 0);
        },
      }),
      new Gauge({
        ...OWN,
        name: 'nfsha_agent_vouching',
        help: '1 while this node has promised its peer not to take the lease',
        collect() {
          this.set(status().vouching ? 1 : 0);
        },
      }),
    ];
    for (const m of [...gauges, this.#heartbeats, this.#commands, this.#pets, this.#resources]) this.registry.registerMetric(m);
  }

  heartbeat(outcome: HeartbeatOutcome, seconds: number): void {
    this.#heartbeats.observe({ outcome }, seconds);
  }

  command(argv: readonly string[], exitCode: number | null, seconds: number): void {
    this.#commands.observe({ program: basename(argv[0] ?? ''), ok: String(exitCode === 0) }, seconds);
  }

  resource(name: string, running: boolean): void {
    this.#resources.set({ resource: name }, running ? 1 : 0);
  }

  /** Demoted: nothing runs, nothing is monitored. */
  resourcesStopped(): void {
    this.#resources.reset();
  }

  /** The self-fence, its pets counted. */
  counting(selfFence: SelfFence): SelfFence {
    return {
      arm: () => selfFence.arm(),
      pet: async () => {
        await selfFence.pet();
        this.#pets.inc();
      },
      disarm: () => selfFence.disarm(),
      reboot: (reason) => selfFence.reboot(reason),
    };
  }

  /** Serves GET /metrics; anything else is a 404. */
  async listen(host: string, port: number): Promise<Server & { port: number }> {
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || req.url !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('GET /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
    });
    await new Promise<void>((ok, fail) => server.once('error', fail).listen(port, host, ok));
    return Object.assign(server, { port: (server.address() as AddressInfo).port });
  }
}
