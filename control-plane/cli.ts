/**
 * nfs-ha: the operator's command line, over the REST API.
 *
 *   nfs-ha validate -f cluster.yaml        check a spec locally (the same schemas as the API)
 *   nfs-ha apply -f cluster.yaml [--dry-run]  create the cluster, or update it (showing the difference)
 *   nfs-ha delete <cluster> --yes          once both agents are stopped
 *   nfs-ha clusters | status <cluster> | events <cluster>
 *   nfs-ha keys list | keys create --role admin --name ops | keys revoke <id>
 *   nfs-ha enrol <cluster> <node>          a one-time enrolment token for a node's installer
 *   nfs-ha switchover <cluster> --to <node>  planned switchover, waiting until the target is active
 *   nfs-ha fencing <cluster>               who fenced whom, when, confirmed how fast
 *   nfs-ha maintenance <cluster> on|off    |  nfs-ha standby <cluster> <node> [--off]
 *   nfs-ha webhooks list|add|remove|deliveries|redeliver|test <cluster> …
 *
 * --json on every command. The control plane and the key come from --url/--key, or NFSHA_URL /
 * NFSHA_API_KEY, or ~/.config/nfs-ha/cli.json ({ "url": …, "key": … }).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, Option } from 'commander';
import type { z } from 'zod';
import type { ClusterStatus, FencingHistorySchema } from '../shared/api.ts';
import { type ClusterSpec, specDiff } from '../shared/spec.ts';
import { specFromText } from '../shared/spec-file.ts';
import { EVENT_TYPES, eventMatches } from '../shared/events.ts';
import { detectionWindowMs } from '../shared/timing.ts';
import { VERSION, versionWarning } from '../shared/version.ts';
import { WEBHOOK_TYPES, WebhookCreateSchema } from '../shared/webhooks.ts';

class CliError extends Error {}

interface Globals {
  url?: string;
  key?: string;
  json?: boolean;
}

const CONFIG_FILE = join(homedir(), '.config', 'nfs-ha', 'cli.json');

interface Connection {
  url: string;
  key: string | undefined;
  /** Where each came from, for the error messages. */
  urlFrom: string;
  keyFrom: string | null;
}

async function connection(g: Globals): Promise<Connection> {
  let file: { url?: unknown; key?: unknown } = {};
  let text: string | null = null;
  try {
    text = await readFile(CONFIG_FILE, 'utf8');
  } catch (err) {
    // No config file: flags and environment only. Any other failure is the operator's to know.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new CliError(`cannot read ${CONFIG_FILE}: ${(err as Error).message}`);
  }
  if (text !== null) {
    try {
      file = JSON.parse(text) as typeof file;
    } catch (err) {
      throw new CliError(`${CONFIG_FILE} is not valid JSON (${(err as Error).message}); it should look like {"url": "https://…", "key": "…"}`);
    }
    for (const k of ['url', 'key'] as const)
      if (file[k] !== undefined && typeof file[k] !== 'string') throw new CliError(`${CONFIG_FILE}: "${k}" must be a string`);
  }
  // The flag, then the environment, then the file: the first that is set, and where it came from.
  const pick = (flag: string | undefined, flagName: string, envName: string, field: 'url' | 'key') =>
    (
      [
        [flag, flagName],
        [process.env[envName], envName],
        [file[field] as string | undefined, `"${field}" in ${CONFIG_FILE}`],
      ] as const
    ).find(([value]) => value) ?? [undefined, null];
  const [url, urlFrom] = pick(g.url, '--url', 'NFSHA_URL', 'url');
  const [key, keyFrom] = pick(g.key, '--key', 'NFSHA_API_KEY', 'key');
  return { url: (url ?? 'http://127.0.0.1:8080').replace(/\/+$/, ''), key, urlFrom: urlFrom ?? 'the default', keyFrom };
}

const SET_URL = `set it with --url, NFSHA_URL or "url" in ${CONFIG_FILE}`;
const SET_KEY = `pass one with --key, NFSHA_API_KEY or "key" in ${CONFIG_FILE}`;

async function api<T>(g: Globals, method: string, path: string, body?: unknown): Promise<T> {
  const { url, key, urlFrom, keyFrom } = await connection(g);
  let res: Response;
  try {
    res = await fetch(url + path, {
      method,
      headers: { ...(body !== undefined && { 'content-type': 'application/json' }), ...(key && { authorization: `Bearer ${key}` }) },
      ...(body !== undefined && { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    const cause = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message;
    throw new CliError(`cannot reach the control plane at ${url} (from ${urlFrom}): ${cause}; ${SET_URL}`);
  }
  const json = (await res.json().catch(() => ({}))) as T & { error?: { code: string; message: string } };
  if (!res.ok) {
    const said = `${json.error?.code ?? `HTTP ${res.status}`}: ${json.error?.message ?? 'request failed'}`;
    if (res.status === 401 && !key) throw new CliError(`${said}; no API key was given: ${SET_KEY}`);
    if (res.status === 401) throw new CliError(`${said}; the key from ${keyFrom} was refused: ${SET_KEY}`);
    if (res.status === 403) throw new CliError(`${said}; the key from ${keyFrom} is read-only or an agent's: use an admin key`);
    throw new CliError(said);
  }
  return json;
}

/** Reads a spec file (YAML or JSON) and checks it with the API's own schema. */
async function readSpec(file: string): Promise<{ spec?: ClusterSpec; problems: string[] }> {
  const text = await readFile(file, 'utf8').catch((err: Error) => err);
  return text instanceof Error ? { problems: [`${file}: ${text.message}`] } : specFromText(text, file);
}

const out = (g: Globals, json: unknown, text: () => string) => console.log(g.json ? JSON.stringify(json, null, 2) : text());
const ago = (ms: number | null) => (ms === null ? 'never' : `${(ms / 1000).toFixed(1)} s ago`);

/** Rows as aligned columns, the first row being the header. */
function columns(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function statusTable(s: ClusterStatus): string {
  const l = s.lease;
  const head =
    l.holder === null
      ? `cluster ${s.clusterId}   epoch ${l.epoch}   lease vacant${
          l.holdoff
            ? l.holdoff.reason === 'store-regressed'
              ? ` (the store went back to epoch ${l.holdoff.storeEpoch}, found by ${l.holdoff.by}: waiting for a node still serving)`
              : ` (${l.holdoff.by} refused epoch ${l.holdoff.storeEpoch}: the next one goes out once no node can still be serving)`
            : ''
        }`
      : `cluster ${s.clusterId}   epoch ${l.epoch}   ${l.state === 'held' ? 'active' : l.state}: ${l.holder} (renewed ${ago(l.renewedAgoMs)}, ${l.expiresInMs >= 0 ? `expires in ${(l.expiresInMs / 1000).toFixed(1)} s` : `lapsed ${(-l.expiresInMs / 1000).toFixed(1)} s ago`})`;
  const rows = [['NODE', 'ROLE', 'EPOCH', 'LAST HEARTBEAT', 'SEES PEER', 'RESERVATION KEY', 'AGENT', 'RESOURCES']];
  for (const n of s.nodes) {
    const states = Object.entries(n.resources);
    const unusual = states.filter(([, state]) => state !== 'running');
    rows.push([
      `${n.id}${n.isHolder ? ' *' : ''}`,
      n.role ?? '-',
      String(n.epoch ?? '-'),
      ago(n.lastHeartbeatAgoMs),
      n.peerReachable === null ? '-' : n.peerReachable ? 'yes' : 'NO',
      n.reservationKey,
      n.agent?.version ?? '-',
      states.length === 0 ? '-' : unusual.length === 0 ? `${states.length} running` : unusual.map(([r, state]) => `${r} ${state.toUpperCase()}`).join(', '),
    ]);
  }
  const table = columns(rows);
  const f = l.fencing;
  const fencing = f
    ? `\nfencing: epoch ${f.epoch} (${f.reason})${f.victim ? ` fenced ${f.victim}` : ''}, ${f.confirmedAt ? 'confirmed' : 'NOT YET CONFIRMED'}`
    : '';
  const modes = [
    l.failsafe
      ? `FAILSAFE since ${l.failsafe.since}: ${l.failsafe.serving} serves without the arbiter (unreachable from ${l.failsafe.unreachableFrom.join(', ')}), vouched for by ${l.failsafe.vouchedBy}`
      : '',
    ...s.nodes.flatMap((n) => [n.unfit ? `${n.id} REFUSES this cluster: ${n.unfit}` : '', n.refused ? `${n.id} refuses ${n.refused}` : '']),
    versionWarning(
      s.controlPlaneVersion,
      s.nodes.map((n) => ({ node: n.id, version: n.agent?.version ?? null })),
    ) ?? '',
    s.maintenance ? 'MAINTENANCE MODE: no restarts, releases or takeovers' : '',
    s.standby.length > 0 ? `standby: ${s.standby.join(', ')}` : '',
    s.switchover ? `switchover to ${s.switchover.to} requested at ${s.switchover.requestedAt}` : '',
  ].filter(Boolean);
  return `${head}\n${table}${fencing}${modes.map((m) => `\n${m}`).join('')}`;
}

const program = new Command('nfs-ha').description('nfs-ha operator command line').version(VERSION).showHelpAfterError();
program
  .addOption(new Option('--url <url>', 'control plane URL (NFSHA_URL)'))
  .addOption(new Option('--key <key>', 'API key (NFSHA_API_KEY)'))
  .option('--json', 'machine-readable output');
const g = () => program.opts<Globals>();

program
  .command('validate')
  .description('check a cluster spec (YAML or JSON) without sending it')
  .requiredOption('-f, --file <file>', 'the spec')
  .action(async (o: { file: string }) => {
    const { spec, problems } = await readSpec(o.file);
    if (!spec) {
      out(g(), { ok: false, problems }, () => `✗ ${o.file} is not a valid cluster spec:\n${problems.map((p) => `  ${p}`).join('\n')}`);
      process.exitCode = 1;
      return;
    }
    const early = detectionWindowMs(spec.timing, spec.policy.earlyFencing);
    const expiry = detectionWindowMs(spec.timing, false);
    const summary = {
      ok: true,
      cluster: spec.id,
      nodes: spec.nodes.map((n) => n.id),
      vip: `${spec.vip.address}/${spec.vip.prefix}`,
      exports: spec.nfs.exports.map((e) => ({ path: e.path, fsid: e.fsid })),
      detectionMs: { earlyFencing: early, leaseExpiry: expiry },
    };
    out(g(), summary, () =>
      [
        `✓ ${o.file}: cluster ${spec.id}, nodes ${summary.nodes.join(' and ')}, VIP ${summary.vip}`,
        `  exports: ${spec.nfs.exports.map((e) => `${e.path} (fsid ${e.fsid})`).join(', ')}; server scope ${spec.nfs.serverScope}; grace ${spec.nfs.gracePeriodS} s, lease ${spec.nfs.leaseTimeS} s`,
        `  timing: renew every ${spec.timing.renewIntervalMs} ms, lease ${spec.timing.leaseTtlMs} ms — all safety relations hold`,
        spec.policy.earlyFencing
          ? `  a dead active is detected in ${early.min / 1000}–${early.max / 1000} s (early fencing), ${expiry.min / 1000}–${expiry.max / 1000} s when only its lease can tell; takeover adds fencing and the resources' start`
          : `  a dead active is detected in ${expiry.min / 1000}–${expiry.max / 1000} s (lease expiry; early fencing is off); takeover adds fencing and the resources' start`,
      ].join('\n'),
    );
  });

program
  .command('apply')
  .description('create the cluster of a spec, or update it to the spec (validated locally first; the difference is shown)')
  .requiredOption('-f, --file <file>', 'the spec')
  .option('--dry-run', 'show the difference, change nothing')
  .action(async (o: { file: string; dryRun?: boolean }) => {
    const { spec, problems } = await readSpec(o.file);
    if (!spec) throw new CliError(`${o.file} is not a valid cluster spec:\n  ${problems.join('\n  ')}`);
    const existing = await api<{ spec: ClusterSpec }>(g(), 'GET', `/v1/clusters/${spec.id}`).catch((err: CliError) => {
      if (/cluster_not_found/.test(err.message)) return null;
      throw err;
    });
    if (existing) {
      const diff = specDiff(existing.spec, spec);
      const lines = diff.map((d) => `  ${d}`).join('\n');
      if (diff.length === 0 || o.dryRun) {
        return out(g(), { cluster: spec.id, exists: true, diff, applied: false }, () =>
          diff.length === 0
            ? `cluster ${spec.id} already matches ${o.file}`
            : `cluster ${spec.id} differs from ${o.file} (dry run, nothing changed):\n${lines}`,
        );
      }
      const r = await api<{ specVersion: number }>(g(), 'PUT', `/v1/clusters/${spec.id}`, spec);
      return out(
        g(),
        { cluster: spec.id, exists: true, diff, applied: true, specVersion: r.specVersion },
        () =>
          `updated cluster ${spec.id} to spec version ${r.specVersion}:\n${lines}\n` +
          'the lease uses the new timing now; the passive agent restarts to take the rest, the active keeps its spec until it hands over (nfs-ha switchover)',
      );
    }
    if (o.dryRun) return out(g(), { cluster: spec.id, exists: false, applied: false }, () => `cluster ${spec.id} does not exist; apply would create it`);
    const created = await api<{ specVersion: number }>(g(), 'POST', '/v1/clusters', spec);
    out(
      g(),
      { cluster: spec.id, created: true, specVersion: created.specVersion },
      () => `created cluster ${spec.id} (nodes ${spec.nodes.map((n) => n.id).join(', ')}); next: nfs-ha enrol ${spec.id} <node>`,
    );
  });

program
  .command('delete')
  .description('delete a cluster once both agents are stopped (admin)')
  .argument('<cluster>')
  .requiredOption('--yes', 'yes, delete its lease, timeline, webhooks and agent credentials')
  .action(async (cluster: string) => {
    await api(g(), 'DELETE', `/v1/clusters/${encodeURIComponent(cluster)}`);
    out(g(), { cluster, deleted: true }, () => `cluster ${cluster} deleted`);
  });

program
  .command('clusters')
  .description('list clusters')
  .action(async () => {
    const r = await api<{ clusters: { id: string; nodes: string[]; specVersion: number; createdAt: string }[] }>(g(), 'GET', '/v1/clusters');
    out(g(), r, () =>
      r.clusters.length === 0 ? 'no clusters' : r.clusters.map((c) => `${c.id.padEnd(24)} ${c.nodes.join(', ').padEnd(30)} created ${c.createdAt}`).join('\n'),
    );
  });

type ClusterList = { clusters: { id: string; nodes: string[]; specVersion: number; createdAt: string }[]; cursor: string | null };

/** Every cluster's id, all pages. */
async function clusterIds(): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const page: ClusterList = await api(g(), 'GET', `/v1/clusters?${new URLSearchParams({ limit: '100', ...(cursor && { cursor }) })}`);
    ids.push(...page.clusters.map((c) => c.id));
    cursor = page.cursor;
  } while (cursor);
  return ids;
}

/** One line per cluster: what `pcs status` would lead with. */
function overviewTable(all: ClusterStatus[]): string {
  if (all.length === 0) return 'no clusters (create one: nfs-ha apply -f cluster.yaml)';
  const rows = [['CLUSTER', 'HOLDER', 'EPOCH', 'LEASE', 'NODES', 'NOTES']];
  for (const s of all) {
    const nodes = s.nodes.map((n) => `${n.id} ${n.role ?? '?'} ${ago(n.lastHeartbeatAgoMs)}`).join('; ');
    const notes = [
      s.lease.failsafe ? 'FAILSAFE' : '',
      s.maintenance ? 'MAINTENANCE' : '',
      s.switchover ? `switchover to ${s.switchover.to}` : '',
      s.standby.length ? `standby ${s.standby.join(',')}` : '',
      s.lease.fencing && !s.lease.fencing.confirmedAt && s.lease.holder ? 'fencing not confirmed' : '',
      ...s.nodes.flatMap((n) =>
        Object.entries(n.resources)
          .filter(([, st]) => st !== 'running' && n.isHolder)
          .map(([r, st]) => `${r} ${st}`),
      ),
    ].filter(Boolean);
    rows.push([
      s.clusterId,
      s.lease.holder ?? '-',
      String(s.lease.epoch),
      s.lease.state === 'held' ? 'active' : s.lease.state.toUpperCase(),
      nodes,
      notes.join(', ') || '-',
    ]);
  }
  return columns(rows);
}

program
  .command('status')
  .description('who is active, under which epoch, and what each node last said; without a cluster, every cluster in one table')
  .argument('[cluster]')
  .option('-w, --watch', 'redraw every --interval seconds until Ctrl-C (like crm_mon); with --json, one JSON document per line')
  .option('--interval <seconds>', 'with --watch: how often', '1')
  .action(async (cluster: string | undefined, o: { watch?: boolean; interval: string }) => {
    const interval = Number(o.interval);
    if (!(interval >= 0.2 && interval <= 3600)) throw new CliError(`--interval takes seconds between 0.2 and 3600, not "${o.interval}"`);
    const read = async (): Promise<{ json: unknown; text: string }> => {
      if (cluster) {
        const s = await api<ClusterStatus>(g(), 'GET', `/v1/clusters/${encodeURIComponent(cluster)}/status`);
        return { json: s, text: statusTable(s) };
      }
      const all = await Promise.all((await clusterIds()).map((id) => api<ClusterStatus>(g(), 'GET', `/v1/clusters/${encodeURIComponent(id)}/status`)));
      return { json: { clusters: all }, text: overviewTable(all) };
    };
    if (!o.watch) {
      const r = await read();
      return out(g(), r.json, () => r.text);
    }
    for (;;) {
      const r = await read().catch((err: Error) => ({ json: { error: err.message }, text: `nfs-ha: ${err.message}` }));
      if (g().json) console.log(JSON.stringify(r.json));
      // Clear the screen and home the cursor, then the table with the time it was read.
      else process.stdout.write(`\x1b[2J\x1b[H${new Date().toISOString()}  ${cluster ?? 'all clusters'} (every ${interval} s; Ctrl-C to stop)\n\n${r.text}\n`);
      await new Promise((resolve) => setTimeout(resolve, interval * 1000));
    }
  });

type EventLine = { id: string; at: number; type: string; node?: string; epoch: number; data: unknown };
const eventLine = (e: EventLine) =>
  `${new Date(e.at).toISOString()}  epoch ${String(e.epoch).padEnd(3)} ${e.type.padEnd(20)} ${(e.node ?? '').padEnd(10)} ${JSON.stringify(e.data)}`;

/**
 * A list of names, written the same way on every command: comma- or space-separated, the option
 * repeatable (`--type a,b --type c`); each checked against `known`, naming the ones accepted.
 */
function nameList(what: string, known: readonly string[]) {
  return (value: string, previous: string[] = []): string[] => {
    const names = value.split(/[\s,]+/).filter(Boolean);
    const unknown = names.filter((n) => !known.includes(n));
    if (unknown.length > 0) throw new CliError(`unknown ${what} ${unknown.map((u) => `"${u}"`).join(', ')}; known: ${known.join(', ')}`);
    return [...previous, ...names];
  };
}

/** `--since`: an ISO 8601 time, or how long ago (30s, 10m, 2h, 7d). */
function sinceTime(value: string): string {
  const rel = /^(\d+)(s|m|h|d)$/.exec(value);
  if (rel) return new Date(Date.now() - Number(rel[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[rel[2] as 's']).toISOString();
  const at = Date.parse(value);
  if (Number.isNaN(at)) throw new CliError(`--since takes an ISO 8601 time (2026-12-02T10:00:00Z) or a duration ago (30s, 10m, 2h, 7d), not "${value}"`);
  return new Date(at).toISOString();
}

const EVENTS_MAX = 10_000;
/** The API's largest page. */
const EVENTS_PAGE = 500;

program
  .command('events')
  .description("the cluster's timeline: the newest events (shown oldest first), or those since a time; --follow streams new ones")
  .argument('<cluster>')
  .option('--limit <n>', `how many (1–${EVENTS_MAX}; with --follow: how many recent ones first)`, '50')
  .option('--since <time>', 'events from then on, oldest first: ISO 8601, or a duration ago (10m, 2h, 7d)')
  .option('--cursor <cursor>', 'continue where the previous listing said "more" (older ones; with --since, newer ones)')
  .option('--type <types>', `only these event types, comma-separated (${EVENT_TYPES.join(', ')})`, nameList('event type', EVENT_TYPES))
  .option('--node <node>', 'only events of this node')
  .option('--epoch <n>', 'only events of this epoch')
  .option('-f, --follow', 'keep streaming new events (WebSocket; Ctrl-C to stop)')
  .action(async (cluster: string, o: { limit: string; since?: string; cursor?: string; type?: string[]; node?: string; epoch?: string; follow?: boolean }) => {
    const limit = Number(o.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > EVENTS_MAX)
      throw new CliError(`--limit takes a whole number from 1 to ${EVENTS_MAX}, not "${o.limit}"`);
    const filter = { ...(o.type && { type: o.type.join(',') }), ...(o.node && { node: o.node }), ...(o.epoch && { epoch: o.epoch }) };
    const path = `/v1/clusters/${encodeURIComponent(cluster)}/events`;
    const since = o.since === undefined ? undefined : sinceTime(o.since);
    const order = since ? 'oldest' : 'newest';
    const events: EventLine[] = [];
    let cursor: string | null = o.cursor ?? null;
    do {
      const query = { limit: String(Math.min(EVENTS_PAGE, limit - events.length)), order, ...(since && { since }), ...(cursor && { cursor }), ...filter };
      const page: { events: EventLine[]; cursor: string | null } = await api(g(), 'GET', `${path}?${new URLSearchParams(query)}`);
      events.push(...page.events);
      cursor = page.cursor;
    } while (cursor && events.length < limit);
    if (order === 'newest') events.reverse();
    if (!o.follow) {
      const again = cursor && `nfs-ha events ${cluster}${o.since ? ` --since ${o.since}` : ''} --cursor ${cursor}`;
      out(g(), { events, cursor }, () => events.map(eventLine).join('\n') || 'no events');
      // The hint goes to stderr: a pipe gets the events alone.
      if (again && !g().json) console.error(`(more ${order === 'newest' ? 'older' : 'newer'} events: ${again})`);
      return;
    }
    // The recent past from REST, then the stream from the last event seen; reconnects resume there.
    const match = { types: o.type, node: o.node, epoch: o.epoch === undefined ? undefined : Number(o.epoch) };
    const wanted = (e: EventLine) => eventMatches(e, match);
    const show = (e: EventLine) => console.log(g().json ? JSON.stringify(e) : eventLine(e));
    events.forEach(show);
    let last = events.at(-1);
    const { url, key } = await connection(g());
    const { WebSocket } = await import('ws');
    for (;;) {
      await new Promise<void>((resolve) => {
        const ws = new WebSocket(`${url.replace(/^http/, 'ws')}${path}/stream${last ? `?cursor=${last.at}.${last.id}` : ''}`, {
          headers: key ? { authorization: `Bearer ${key}` } : {},
        });
        ws.on('message', (data) => {
          const e = JSON.parse(String(data)) as EventLine;
          last = e;
          if (wanted(e)) show(e);
        });
        ws.on('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d));
          res.on('end', () => {
            const err = (JSON.parse(body || '{}') as { error?: { code: string; message: string } }).error;
            console.error(`nfs-ha: ${err ? `${err.code}: ${err.message}` : `HTTP ${res.statusCode}`}`);
            process.exit(1);
          });
        });
        ws.on('error', (err) => console.error(`nfs-ha: event stream: ${err.message}; reconnecting`));
        ws.on('close', () => resolve());
      });
      await new Promise((r) => setTimeout(r, 1000));
    }
  });

program
  .command('maintenance')
  .description('maintenance mode: agents keep the lease but neither restart, release nor take over (admin); without on|off, show it')
  .argument('<cluster>')
  .argument('[on|off]')
  .action(async (cluster: string, state: string | undefined) => {
    if (state === undefined) {
      const s = await api<ClusterStatus>(g(), 'GET', `/v1/clusters/${encodeURIComponent(cluster)}/status`);
      return out(g(), { clusterId: cluster, maintenance: s.maintenance }, () =>
        s.maintenance
          ? `maintenance mode is ON for ${cluster}: no restarts, releases or takeovers (nfs-ha maintenance ${cluster} off to end it)`
          : `maintenance mode is off for ${cluster}`,
      );
    }
    if (state !== 'on' && state !== 'off') throw new CliError(`maintenance takes "on" or "off", not "${state}"`);
    const r = await api<{ maintenance: boolean }>(g(), 'PUT', `/v1/clusters/${encodeURIComponent(cluster)}/maintenance`, { enabled: state === 'on' });
    out(g(), r, () => `maintenance mode ${r.maintenance ? 'ON: no restarts, releases or takeovers until it is turned off' : 'off'} for ${cluster}`);
  });

program
  .command('standby')
  .description('put a node in standby (it hands the lease over if it holds it), or --off to make it eligible again (admin)')
  .argument('<cluster>')
  .argument('<node>')
  .option('--off', 'take the node out of standby')
  .action(async (cluster: string, node: string, o: { off?: boolean }) => {
    const r = await api<{ standby: string[] }>(g(), 'PUT', `/v1/clusters/${encodeURIComponent(cluster)}/standby/${encodeURIComponent(node)}`, {
      enabled: !o.off,
    });
    out(g(), r, () => `${node} ${o.off ? 'is eligible again' : 'is in standby'}; in standby now: ${r.standby.join(', ') || 'none'}`);
  });

program
  .command('fencing')
  .description('fencing history: who fenced whom, why, and when it was confirmed')
  .argument('<cluster>')
  .action(async (cluster: string) => {
    const r = await api<z.infer<typeof FencingHistorySchema>>(g(), 'GET', `/v1/clusters/${encodeURIComponent(cluster)}/fencing`);
    out(g(), r, () =>
      r.fencing.length === 0
        ? 'no fencing yet'
        : [
            'EPOCH  HOLDER    FENCED    REASON          DECIDED                   CONFIRMED',
            ...r.fencing.map(
              (f) =>
                `${String(f.epoch).padEnd(6)} ${f.holder.padEnd(9)} ${(f.victim ?? '-').padEnd(9)} ${f.reason.padEnd(15)} ${f.decidedAt}  ${f.confirmedAt ? `${f.confirmedAt}${f.durationMs !== null ? ` (${f.durationMs} ms)` : ''}` : 'NOT CONFIRMED'}`,
            ),
          ].join('\n'),
    );
  });

program
  .command('backup')
  .description('back up the embedded store now, consistently, while it serves; with --out, download it too (admin)')
  .option('--out <file>', 'write the backup here (a new file); restore: stop the control plane, then npm start -- --restore FILE')
  .action(async (o: { out?: string }) => {
    const r = await api<{ name: string; entries: number; bytes: number; takenAt: string; path: string }>(g(), 'POST', '/v1/backups');
    if (o.out) {
      const { url, key } = await connection(g());
      const res = await fetch(`${url}/v1/backups/${r.name}`, {
        headers: { ...(key && { authorization: `Bearer ${key}` }) },
        signal: AbortSignal.timeout(120_000),
      }).catch((err: Error) => {
        throw new CliError(`cannot download ${r.name}: ${err.message}`);
      });
      if (!res.ok || !res.body) throw new CliError(`cannot download ${r.name}: HTTP ${res.status}`);
      await writeFile(o.out, Buffer.from(await res.arrayBuffer()), { mode: 0o600, flag: 'wx' }).catch((err: Error) => {
        throw new CliError(`cannot write ${o.out}: ${err.message}`);
      });
    }
    out(g(), { ...r, ...(o.out && { savedTo: o.out }) }, () =>
      [
        `backup ${r.name}: ${r.entries} entries, ${r.bytes} bytes, taken ${r.takenAt}`,
        `on the control plane host: ${r.path}`,
        ...(o.out ? [`saved to ${o.out} (mode 0600: it holds every credential's hash)`] : []),
        'restore: stop the control plane, then npm start -- --restore FILE',
      ].join('\n'),
    );
  });

program
  .command('switchover')
  .description('planned switchover: the active demotes and releases, the target fences and takes over (admin)')
  .argument('<cluster>')
  .requiredOption('--to <node>', 'the node to hand over to')
  .option('--timeout <seconds>', 'how long to wait for the target to be active', '120')
  .option('--no-wait', 'return once the request is accepted')
  .action(async (cluster: string, o: { to: string; timeout: string; wait: boolean }) => {
    const path = `/v1/clusters/${encodeURIComponent(cluster)}`;
    const started = performance.now();
    const r = await api<{ from: string; to: string; epoch: number }>(g(), 'POST', `${path}/switchover`, { to: o.to });
    if (!g().json) console.log(`switchover requested: ${r.from} → ${r.to} (epoch ${r.epoch})`);
    if (!o.wait) return out(g(), r, () => '');
    let last = '';
    for (;;) {
      const s = await api<ClusterStatus>(g(), 'GET', `${path}/status`);
      const target = s.nodes.find((n) => n.id === o.to);
      const line = `${s.lease.holder ?? 'nobody'} holds epoch ${s.lease.epoch} (${s.lease.state}); ${o.to} reports ${target?.role ?? 'nothing'}`;
      if (line !== last && !g().json) console.log(`  ${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s  ${line}`);
      last = line;
      if (s.lease.holder === o.to && s.lease.epoch > r.epoch && target?.role === 'active' && target.epoch === s.lease.epoch) {
        const seconds = (performance.now() - started) / 1000;
        return out(g(), { ...r, epoch: s.lease.epoch, seconds }, () => `${o.to} is active under epoch ${s.lease.epoch} after ${seconds.toFixed(1)} s`);
      }
      if (performance.now() - started > Number(o.timeout) * 1000) {
        throw new CliError(`${o.to} was not active within ${o.timeout} s (${line}); follow it with: nfs-ha events ${cluster}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  });

const keys = program.command('keys').description('operator API keys (admin)');
keys.command('list').action(async () => {
  const r = await api<{ keys: { id: string; role: string; name: string; createdAt: string; revokedAt: string | null }[] }>(g(), 'GET', '/v1/keys');
  out(g(), r, () =>
    r.keys.map((k) => `${k.id}  ${k.role.padEnd(9)} ${k.name.padEnd(20)} ${k.revokedAt ? `revoked ${k.revokedAt}` : `since ${k.createdAt}`}`).join('\n'),
  );
});
keys
  .command('create')
  .requiredOption('--role <role>', 'admin or read-only')
  .requiredOption('--name <name>', 'what it is for')
  .action(async (o: { role: string; name: string }) => {
    const r = await api<{ id: string; key: string }>(g(), 'POST', '/v1/keys', o);
    out(g(), r, () => `key ${r.id} (${o.role}): ${r.key}\nshown once: store it now`);
  });
keys
  .command('revoke')
  .argument('<id>')
  .action(async (id: string) => {
    const r = await api<{ id: string }>(g(), 'DELETE', `/v1/keys/${encodeURIComponent(id)}`);
    out(g(), r, () => `key ${r.id} revoked`);
  });

interface WebhookView {
  id: string;
  url: string;
  types: string[] | null;
  description: string | null;
  createdAt: string;
}
interface DeliveryView {
  id: string;
  type: string;
  status: string;
  messageId: string;
  attempts: { at: string; httpStatus: number | null; error: string | null; durationMs: number }[];
  nextAttemptAt: string | null;
  createdAt: string;
}
const hooksPath = (cluster: string, id?: string) => `/v1/clusters/${encodeURIComponent(cluster)}/webhooks${id ? `/${encodeURIComponent(id)}` : ''}`;

const webhooks = program.command('webhooks').description('signed webhook notifications of failovers and node events');
webhooks
  .command('list')
  .argument('<cluster>')
  .action(async (cluster: string) => {
    const r = await api<{ webhooks: WebhookView[] }>(g(), 'GET', hooksPath(cluster));
    out(g(), r, () =>
      r.webhooks.length === 0
        ? `no webhooks on ${cluster}; add one with: nfs-ha webhooks add ${cluster} --endpoint https://…`
        : columns([['ID', 'URL', 'TYPES', 'DESCRIPTION'], ...r.webhooks.map((w) => [w.id, w.url, w.types?.join(',') ?? 'all', w.description ?? ''])]),
    );
  });
webhooks
  .command('add')
  .argument('<cluster>')
  .requiredOption('--endpoint <url>', 'where to POST (http or https)')
  .option('--type <types>', `only these types, comma-separated (${WEBHOOK_TYPES.join(', ')}); default all`, nameList('webhook type', WEBHOOK_TYPES))
  .option('--description <text>', 'what it is for')
  .action(async (cluster: string, o: { endpoint: string; type?: string[]; description?: string }) => {
    const body = WebhookCreateSchema.safeParse({ url: o.endpoint, ...(o.type && { types: o.type }), ...(o.description && { description: o.description }) });
    if (!body.success) throw new CliError(body.error.issues.map((i) => `${i.path.join('.') || 'webhook'}: ${i.message}`).join('; '));
    const r = await api<WebhookView & { secret: string }>(g(), 'POST', hooksPath(cluster), body.data);
    out(
      g(),
      r,
      () => `webhook ${r.id} → ${r.url} (${r.types?.join(', ') ?? 'all types'})\nsigning secret (shown once; verify webhook-signature with it):\n${r.secret}`,
    );
  });
webhooks
  .command('remove')
  .argument('<cluster>')
  .argument('<id>')
  .action(async (cluster: string, id: string) => {
    await api(g(), 'DELETE', hooksPath(cluster, id));
    out(g(), { id, deleted: true }, () => `webhook ${id} deleted`);
  });
webhooks
  .command('deliveries')
  .description('newest first, with every attempt')
  .argument('<cluster>')
  .argument('<id>')
  .option('--status <status>', 'pending, delivered or failed')
  .option('--limit <n>', 'how many', '20')
  .action(async (cluster: string, id: string, o: { status?: string; limit: string }) => {
    const query = new URLSearchParams({ limit: o.limit, ...(o.status && { status: o.status }) });
    const r = await api<{ deliveries: DeliveryView[] }>(g(), 'GET', `${hooksPath(cluster, id)}/deliveries?${query}`);
    out(g(), r, () =>
      r.deliveries.length === 0
        ? 'no deliveries'
        : columns([
            ['DELIVERY', 'TYPE', 'STATUS', 'ATTEMPTS', 'LAST ANSWER', 'NEXT ATTEMPT'],
            ...r.deliveries.map((d) => {
              const last = d.attempts.at(-1);
              return [d.id, d.type, d.status, String(d.attempts.length), last ? (last.error ?? `HTTP ${last.httpStatus}`) : '-', d.nextAttemptAt ?? '-'];
            }),
          ]),
    );
  });
webhooks
  .command('redeliver')
  .description('send a delivery again now, with the same webhook-id')
  .argument('<cluster>')
  .argument('<id>')
  .argument('<delivery>')
  .action(async (cluster: string, id: string, delivery: string) => {
    const r = await api<DeliveryView>(g(), 'POST', `${hooksPath(cluster, id)}/deliveries/${encodeURIComponent(delivery)}/redeliver`);
    out(g(), r, () => `delivery ${r.id} (${r.type}) is due again now`);
  });
webhooks
  .command('rotate-secret')
  .description('a new signing secret; the old one signs too during the overlap')
  .argument('<cluster>')
  .argument('<id>')
  .option('--overlap <seconds>', 'how long the old secret keeps signing', '86400')
  .action(async (cluster: string, id: string, o: { overlap: string }) => {
    const r = await api<{ secret: string; previousSecretUntil: string }>(g(), 'POST', `${hooksPath(cluster, id)}/rotate-secret`, {
      overlapSeconds: Number(o.overlap),
    });
    out(g(), r, () => `new secret (shown once): ${r.secret}\ndeliveries carry both signatures until ${r.previousSecretUntil}: update the receiver before then`);
  });
webhooks
  .command('test')
  .description('send a webhook.test event to this webhook')
  .argument('<cluster>')
  .argument('<id>')
  .action(async (cluster: string, id: string) => {
    const r = await api<DeliveryView>(g(), 'POST', `${hooksPath(cluster, id)}/test`);
    out(g(), r, () => `test event enqueued as delivery ${r.id}; see it with: nfs-ha webhooks deliveries ${cluster} ${id}`);
  });

program
  .command('enrol')
  .description("a one-time enrolment token for a node's installer (admin)")
  .argument('<cluster>')
  .argument('<node>')
  .option('--ttl <seconds>', 'how long it is valid', '3600')
  .action(async (cluster: string, node: string, o: { ttl: string }) => {
    const r = await api<{ token: string; expiresAt: string; agentSha256: string | null; packageSha256: string | null }>(
      g(),
      'POST',
      `/v1/clusters/${encodeURIComponent(cluster)}/enrolments`,
      { node, ttlSeconds: Number(o.ttl) },
    );
    out(g(), r, () =>
      [
        `enrolment token for ${node} of ${cluster}, valid until ${r.expiresAt}:`,
        r.token,
        ...(r.packageSha256 ? [`agent package SHA-256 (the installer's --sha256 on a Debian amd64 node, which installs the package): ${r.packageSha256}`] : []),
        r.agentSha256
          ? `agent bundle SHA-256 (the installer's --sha256 on a node that runs the agent on its own Node): ${r.agentSha256}`
          : 'this control plane serves no agent bundle yet (npm run build)',
        'on the node, put the token in a 0600 file and pass --token-file (never on a command line)',
      ].join('\n'),
    );
  });

const clusterPath = (cluster: string) => `/v1/clusters/${encodeURIComponent(cluster)}`;
interface AgentCredentialView {
  id: string;
  node: string;
  createdAt: string;
  revokedAt: string | null;
  expiresAt: string | null;
  live: boolean;
}
const credentials = program.command('credentials').description("the nodes' agent credentials (admin)");
credentials
  .command('list')
  .argument('<cluster>')
  .option('--node <node>', 'only this node')
  .option('--all', 'revoked and expired ones too')
  .action(async (cluster: string, o: { node?: string; all?: boolean }) => {
    const query = new URLSearchParams({ ...(o.node && { node: o.node }), ...(o.all && { all: 'true' }) });
    const r = await api<{ credentials: AgentCredentialView[] }>(g(), 'GET', `${clusterPath(cluster)}/credentials?${query}`);
    out(g(), r, () =>
      r.credentials.length === 0
        ? 'no agent credentials'
        : r.credentials
            .map(
              (c) =>
                `${c.id}  ${c.node.padEnd(12)} since ${c.createdAt}  ${c.revokedAt ? `revoked ${c.revokedAt}` : c.expiresAt ? `${c.live ? 'works until' : 'expired'} ${c.expiresAt}` : 'live'}`,
            )
            .join('\n'),
    );
  });
credentials
  .command('revoke')
  .argument('<cluster>')
  .argument('<id>')
  .action(async (cluster: string, id: string) => {
    const r = await api<{ id: string }>(g(), 'DELETE', `${clusterPath(cluster)}/credentials/${encodeURIComponent(id)}`);
    out(g(), r, () => `agent credential ${r.id} revoked`);
  });
credentials
  .command('rotate')
  .description('a new credential for a node; the old one keeps working for the overlap')
  .argument('<cluster>')
  .argument('<node>')
  .option('--overlap <seconds>', 'how long the old one keeps working', '3600')
  .action(async (cluster: string, node: string, o: { overlap: string }) => {
    const r = await api<AgentCredentialView & { credential: string; overlapUntil: string; superseded: string[] }>(
      g(),
      'POST',
      `${clusterPath(cluster)}/credentials`,
      { node, overlapSeconds: Number(o.overlap) },
    );
    out(g(), r, () =>
      [
        `new credential ${r.id} for ${node} (shown once):`,
        r.credential,
        `the old one${r.superseded.length > 1 ? 's' : ''} (${r.superseded.join(', ') || 'none'}) keep${r.superseded.length > 1 ? '' : 's'} working until ${r.overlapUntil}`,
        `on ${node}: nfs-ha-agent set-credential < file-with-the-credential   (writes agent.json and reloads the agent; no failover)`,
      ].join('\n'),
    );
  });

program
  .command('peer-secret')
  .description("the nodes' peer-channel secret (admin)")
  .argument('<action>', 'rotate')
  .argument('<cluster>')
  .action(async (action: string, cluster: string) => {
    if (action !== 'rotate') throw new CliError(`peer-secret ${action}: the only action is rotate`);
    const r = await api<{ peerToken: string }>(g(), 'POST', `${clusterPath(cluster)}/peer-secret`);
    out(g(), r, () =>
      [
        'new peer secret (shown once):',
        r.peerToken,
        'on each node: nfs-ha-agent set-peer-secret < file-with-the-secret   (keeps the old one as previousToken and reloads; the nodes talk throughout)',
      ].join('\n'),
    );
  });

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href || process.argv[1]?.endsWith('nfs-ha.mjs')) {
  program.parseAsync().catch((err: unknown) => {
    console.error(`nfs-ha: ${err instanceof CliError ? err.message : ((err as Error).stack ?? err)}`);
    process.exit(err instanceof CliError ? 1 : 2);
  });
}
