/**
 * The node-local agent configuration (default /etc/nfs-ha/agent.json, mode 0600): how to reach
 * the control plane and who this node is. The cluster spec itself comes from the control plane.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { AbsolutePath, ClusterId, DevicePath, Ipv4Address, NodeId, VolumeGroupName } from '../shared/names.ts';

export const DEFAULT_CONFIG_PATH = '/etc/nfs-ha/agent.json';

export const AgentConfigSchema = z
  .object({
    controlPlane: z
      .object({
        url: z.url({ protocol: /^https?$/ }).describe('Base URL of the control plane'),
        token: z.string().min(16).describe("This node's agent credential (from the enrolment exchange)"),
        insecure: z.boolean().default(false).describe('Allow a plain-HTTP control plane (a lab, a test): credentials then cross the network in clear'),
      })
      .strict()
      .refine((cp) => cp.insecure || cp.url.startsWith('https://'), {
        message: 'the control plane URL must be https:// (credentials cross the network); set "insecure": true only for a lab',
        path: ['url'],
      }),
    clusterId: ClusterId,
    nodeId: NodeId,
    peer: z
      .object({
        token: z.string().min(16).describe('Shared secret of the peer channel, the same on both nodes; signs every request and answer'),
        previousToken: z.string().min(16).optional().describe('The secret before a rotation, still accepted until both nodes have the new one'),
        listen: Ipv4Address.default('0.0.0.0'),
      })
      .strict(),
    metrics: z
      .object({
        listen: Ipv4Address.default('127.0.0.1').describe('Address of the Prometheus listener (GET /metrics); loopback unless a scraper elsewhere needs it'),
        port: z.number().int().min(0).max(65535).default(9758).describe('0: no listener'),
      })
      .strict()
      .prefault({}),
    selfFence: z
      .object({
        mode: z.enum(['watchdog', 'reboot']).default('watchdog').describe('watchdog: /dev/watchdog armed while active; reboot: sysrq only'),
        device: AbsolutePath.default('/dev/watchdog'),
      })
      .strict()
      .prefault({}),
    allowed: z
      .object({
        devices: z.array(DevicePath).min(1).max(64).describe('The shared devices this node lets a cluster spec use'),
        volumeGroup: VolumeGroupName.describe('The one VG a spec may activate here'),
        mountPrefix: AbsolutePath.describe('The shared filesystem must be mounted at or below this path'),
      })
      .strict()
      .describe(
        "What a cluster spec may touch on this node: decided here, by the node's operator (the installer's --device, --vg, --mount-prefix), never by the spec",
      ),
    stateDir: AbsolutePath.default('/var/lib/nfs-ha-agent').describe(
      "The node's own state (the epochs it has seen and acted under): a local disk that keeps its writes across reboots, never the shared LUN",
    ),
    maxRestarts: z.number().int().min(0).max(10).default(2).describe('Local restarts of a failed resource before the lease is released'),
    monitorIntervalMs: z.number().int().min(200).max(60_000).default(2000),
    storageMonitorIntervalMs: z
      .number()
      .int()
      .min(200)
      .max(300_000)
      .default(10_000)
      .describe('The SCSI reservation monitor (commands to every path of the LUN); the check that our key is still on the disk runs every monitor pass regardless'),
    demoteBudgetMs: z.number().int().min(1000).max(300_000).default(10_000).describe('Self-fence when demotion takes longer'),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
  })
  .strict();
export type AgentConfig = z.output<typeof AgentConfigSchema>;

export class AgentConfigError extends Error {
  override name = 'AgentConfigError';
}

export async function loadAgentConfig(path: string): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new AgentConfigError(`cannot read ${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AgentConfigError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  const r = AgentConfigSchema.safeParse(json);
  if (!r.success) throw new AgentConfigError(`${path}: ${r.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')}`);
  return r.data;
}
