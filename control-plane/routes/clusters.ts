/** Operator routes: create a cluster from its spec, list and read clusters, status, events. */
import { randomBytes } from 'node:crypto';
import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import { ClusterListSchema, ClusterSchema, type ClusterStatus, ClusterStatusSchema, EventPageSchema, FencingHistorySchema } from '../../shared/api.ts';
import { type ClusterEvent, EVENT_TYPES, eventMatches, EventTypeSchema, resourceStates } from '../../shared/events.ts';
import { leaseState, leaseTerms, nodesChanged } from '../../shared/lease.ts';
import { NodeId } from '../../shared/names.ts';
import { ClusterSpecSchema, specDiff } from '../../shared/spec.ts';
import { maxWatchdogTimeoutMs } from '../../shared/timing.ts';
import { VERSION } from '../../shared/version.ts';
import { type Arbiter, NODE_DOWN_AFTER_MS } from '../arbiter.ts';
import type { Credentials } from '../auth.ts';
import type { Clock } from '../clock.ts';
import { ApiError } from '../errors.ts';
import { type ClusterRecord, EVENT_CURSOR, type EventPage, type EventQuery, type Store } from '../store/store.ts';
import { ClusterParams, errors, existingCluster, jsonBody, jsonResponse, requester, router } from './router.ts';

const tags = ['clusters'];
/** A request reads at most SCAN_PAGES pages of SCAN_PAGE events; past that its cursor says where to go on. */
const SCAN_PAGE = 100;
const SCAN_PAGES = 10;
const FencingEntry = FencingHistorySchema.shape.fencing.element;
const FENCING_TYPES = ['fencing.decided', 'fencing.confirmed'];
/** A switchover target must have heartbeated this recently (node status is refreshed every 30 s). */
const SWITCHOVER_TARGET_SEEN_MS = 45_000;
const iso = (ms: number) => new Date(ms).toISOString();

function clusterView(r: ClusterRecord) {
  return { spec: r.spec, specVersion: r.specVersion, createdAt: iso(r.createdAt), updatedAt: iso(r.updatedAt) };
}

/**
 * A node's heartbeat age from the freshest of what is known: the holder's last renewal, the
 * status item (written on a change or every 30 s), and this process's own record of it.
 */
function heartbeatAge(now: number, heard: (number | null)[]): number | null {
  const known = heard.filter((t): t is number => t !== null);
  return known.length === 0 ? null : now - Math.max(...known);
}

export function clustersRouter(deps: { store: Store; arbiter: Arbiter; clock: Clock; credentials: Credentials }) {
  const { store, arbiter, clock, credentials } = deps;

  const cluster = (clusterId: string) => existingCluster(store, clusterId);

  /** The timeline from `at` on: since the current grant, a takeover and whatever followed (a few pages at most). */
  async function eventsSince(clusterId: string, at: number): Promise<ClusterEvent[]> {
    const events: ClusterEvent[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < SCAN_PAGES; pages++) {
      const page = await store.listEvents(clusterId, { limit: SCAN_PAGE, cursor, fromAt: at });
      events.push(...page.events);
      if (!page.cursor) break;
      cursor = page.cursor;
    }
    return events;
  }

  /** Why the cluster counts as running (a holder, or a node heard from recently), or null. */
  function inUse(s: ClusterStatus): string | null {
    const heard = s.nodes.filter((n) => n.lastHeartbeatAgoMs !== null && n.lastHeartbeatAgoMs <= NODE_DOWN_AFTER_MS);
    const held = s.lease.state === 'held' || s.lease.state === 'fencing';
    const why = [
      held ? `${s.lease.holder} holds the lease (epoch ${s.lease.epoch})` : '',
      ...heard.map((n) => `${n.id} was heard from ${Math.round(n.lastHeartbeatAgoMs! / 1000)} s ago`),
    ].filter(Boolean);
    return why.length > 0 ? why.join('; ') : null;
  }

  async function status(clusterId: string): Promise<ClusterStatus> {
    const record = await cluster(clusterId);
    const [lease, statuses] = await Promise.all([arbiter.read(clusterId), store.listNodeStatuses(clusterId)]);
    const recent = await eventsSince(clusterId, lease.fencing?.decidedAt ?? lease.renewedAt);
    const now = clock.now();
    return {
      clusterId,
      at: iso(now),
      controlPlaneVersion: VERSION,
      specVersion: record.specVersion,
      maintenance: lease.maintenance,
      standby: lease.standby,
      switchover: lease.switchover && { to: lease.switchover.to, requestedAt: iso(lease.switchover.requestedAt) },
      lease: {
        holder: lease.holder,
        epoch: lease.epoch,
        state: leaseState(lease, now),
        renewedAgoMs: now - lease.renewedAt,
        expiresInMs: lease.expiresAt - now,
        fencing: lease.fencing,
        holdoff: lease.holdoff,
        failsafe:
          lease.failsafe && lease.holder
            ? {
                serving: lease.holder,
                vouchedBy: lease.failsafe.vouchedBy,
                since: iso(lease.failsafe.since),
                // A voucher that reached the arbiter itself says so; an account given afterwards by the holder means neither did.
                unreachableFrom: lease.failsafe.reportedBy === 'peer' ? [lease.holder] : [...lease.terms.nodes],
              }
            : null,
      },
      nodes: lease.terms.nodes.map((id, i) => {
        const s = statuses.find((n) => n.node === id);
        return {
          id,
          reservationKey: lease.terms.keys[i]!,
          isHolder: lease.holder === id,
          role: s?.role ?? null,
          epoch: s?.epoch ?? null,
          peerReachable: s?.peerReachable ?? null,
          lastHeartbeatAgoMs: heartbeatAge(now, [lease.holder === id ? lease.renewedAt : null, s?.lastHeartbeatAt ?? null, arbiter.lastHeardAt(clusterId, id)]),
          lastDirective: s?.lastDirective ?? null,
          unfit: s?.unfit ?? null,
          refused: s?.refused ?? null,
          agent: s?.agent ?? null,
          resources: resourceStates(recent, id),
        };
      }),
    };
  }

  return router()
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'createCluster',
        path: '/v1/clusters',
        tags,
        summary: 'Create a cluster from its spec',
        description: 'Validates the spec (including the timing safety relations) and creates the cluster with a vacant lease at epoch 0.',
        request: jsonBody(ClusterSpecSchema),
        responses: { 201: jsonResponse(ClusterSchema, 'Created'), ...errors(400, 409, 503) },
      }),
      async (c) => {
        const spec = c.req.valid('json');
        const now = clock.now();
        const record: ClusterRecord = { spec, specVersion: 1, peerToken: randomBytes(32).toString('base64url'), createdAt: now, updatedAt: now };
        if (!(await store.putClusterIfAbsent(record))) {
          throw new ApiError(409, 'cluster_exists', `cluster "${spec.id}" already exists`);
        }
        await arbiter.openLease(spec, record.specVersion);
        return c.json(clusterView(record), 201, { Location: `/v1/clusters/${spec.id}` });
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        operationId: 'listClusters',
        path: '/v1/clusters',
        tags,
        summary: 'List clusters, by id',
        request: {
          query: z.object({
            limit: z.coerce.number().int().min(1).max(500).default(100),
            cursor: z.string().max(63).optional().describe('The last id of the previous page'),
          }),
        },
        responses: { 200: jsonResponse(ClusterListSchema, 'A page of clusters'), ...errors(400, 503) },
      }),
      async (c) => {
        const { limit, cursor } = c.req.valid('query');
        const records = (await store.listClusters()).filter((r) => cursor === undefined || r.spec.id > cursor).sort((a, b) => (a.spec.id < b.spec.id ? -1 : 1));
        const clusters = records
          .slice(0, limit)
          .map((r) => ({ id: r.spec.id, nodes: r.spec.nodes.map((n) => n.id), specVersion: r.specVersion, createdAt: iso(r.createdAt) }));
        return c.json({ clusters, cursor: records.length > limit ? clusters.at(-1)!.id : null }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        operationId: 'getCluster',
        path: '/v1/clusters/{clusterId}',
        tags,
        summary: "Get a cluster's spec",
        request: { params: ClusterParams },
        responses: { 200: jsonResponse(ClusterSchema, 'The cluster'), ...errors(400, 404, 503) },
      }),
      async (c) => c.json(clusterView(await cluster(c.req.valid('param').clusterId)), 200),
    )
    .openapi(
      createRoute({
        method: 'put',
        operationId: 'updateCluster',
        path: '/v1/clusters/{clusterId}',
        tags,
        summary: "Update a cluster's spec (admin)",
        description:
          'Validated like a new spec. The id and the nodes cannot change (the reservation keys derive from them). The lease takes the new timing at once. ' +
          "Timing that shortens the active's window is refused while the cluster is in use (the nodes' watchdogs are sized for the current one); a longer window is safe live: the expiry never moves earlier and a holder uses the shorter TTL. Agents use the rest of the new spec from their next start: a passive agent running nothing restarts to take it; the active keeps the spec it started its resources with until it hands over (a switchover).",
        request: { params: ClusterParams, ...jsonBody(ClusterSpecSchema) },
        responses: {
          200: jsonResponse(ClusterSchema.extend({ changed: z.array(z.string()).describe('What changed, "path: old → new"') }), 'The cluster as it now is'),
          ...errors(400, 404, 409, 503),
        },
      }),
      async (c) => {
        const { clusterId } = c.req.valid('param');
        const spec = c.req.valid('json');
        if (spec.id !== clusterId)
          throw new ApiError(400, 'invalid_request', `the spec's id "${spec.id}" is not this cluster's ("${clusterId}"); a cluster's id cannot change`);
        const current = await cluster(clusterId);
        const changed = specDiff(current.spec, spec);
        const refused = nodesChanged(
          current.spec.nodes.map((n) => n.id),
          spec.nodes.map((n) => n.id),
        );
        if (refused) throw new ApiError(409, refused.code, refused.message);
        // Each node's watchdog was sized for the active's window under the timing it was
        // installed with (shared/timing.ts); a shorter window would outlast it.
        const before = maxWatchdogTimeoutMs(current.spec.timing);
        const after = maxWatchdogTimeoutMs(spec.timing);
        const busy = after < before ? inUse(await status(clusterId)) : null;
        if (busy) {
          throw new ApiError(
            409,
            'unsafe_while_running',
            `this timing shortens the active's window (the longest watchdog timeout it allows drops from ${before} to ${after} ms) while cluster ${clusterId} is in use: ${busy}. ` +
              'Stop both agents, apply, then run the installer on each node again (it sizes the watchdog); a longer window can be applied live',
          );
        }
        let record = current;
        if (changed.length > 0) {
          record = { ...current, spec, specVersion: current.specVersion + 1, updatedAt: clock.now() };
          if (!(await store.putCluster(record, current.specVersion))) {
            throw new ApiError(
              409,
              'spec_changed',
              `the spec of ${clusterId} changed meanwhile (now version ${(await cluster(clusterId)).specVersion}); read it and apply again`,
            );
          }
        }
        // Also when nothing changed: a retry completes an update whose lease write did not land.
        await arbiter.updateTerms(clusterId, leaseTerms(record.spec, record.specVersion), requester(c));
        return c.json({ ...clusterView(record), changed }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'delete',
        operationId: 'deleteCluster',
        path: '/v1/clusters/{clusterId}',
        tags,
        summary: 'Delete a cluster (admin), only once no agent runs it',
        description: `Refused while a node holds the lease or either node was heard from in the last ${NODE_DOWN_AFTER_MS / 1000} s: stop (or uninstall) both agents first. Deletes the lease, timeline, node statuses, webhooks and deliveries, and revokes the cluster's agent credentials and enrolment tokens.`,
        request: { params: ClusterParams },
        responses: { 204: { description: 'Deleted' }, ...errors(400, 404, 409, 503) },
      }),
      async (c) => {
        const { clusterId } = c.req.valid('param');
        const busy = inUse(await status(clusterId));
        if (busy)
          throw new ApiError(
            409,
            'cluster_in_use',
            `cluster ${clusterId} is in use: ${busy}. Stop the agent on both nodes first (systemctl stop nfs-ha-agent)`,
          );
        for (const kind of ['agent', 'enrolment'] as const) {
          for (const r of await store.listSecrets(kind)) if (r.clusterId === clusterId && r.revokedAt === null) await credentials.revoke(kind, r.id);
        }
        await store.deleteCluster(clusterId);
        arbiter.forget(clusterId);
        return c.body(null, 204);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        operationId: 'getClusterStatus',
        path: '/v1/clusters/{clusterId}/status',
        tags,
        summary: 'Who is active, under which epoch, and what each node last reported',
        request: { params: ClusterParams },
        responses: { 200: jsonResponse(ClusterStatusSchema, 'Current status'), ...errors(400, 404, 503) },
      }),
      async (c) => c.json(await status(c.req.valid('param').clusterId), 200),
    )
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'requestSwitchover',
        path: '/v1/clusters/{clusterId}/switchover',
        tags,
        summary: 'Planned switchover to a node (admin)',
        description:
          'The holder demotes in order (VIP, exports, NFS server, mount, VG), releases the lease, and the target takes it with the ordinary grant: fence, then start. ' +
          'Accepted only while a holder is active and the target is a passive node heard from recently. Asking again for the same target changes nothing.',
        request: { params: ClusterParams, ...jsonBody(z.object({ to: NodeId.describe('The node to hand over to') }).strict()) },
        responses: {
          202: jsonResponse(
            z.object({ clusterId: z.string(), from: NodeId, to: NodeId, epoch: z.number().int(), requestedAt: z.string() }),
            'Requested; follow it in the events',
          ),
          ...errors(400, 404, 409, 503),
        },
      }),
      async (c) => {
        const { clusterId } = c.req.valid('param');
        const { to } = c.req.valid('json');
        const s = await status(clusterId);
        const target = s.nodes.find((n) => n.id === to);
        if (!target) throw new ApiError(404, 'node_not_found', `"${to}" is not a node of cluster ${clusterId}`);
        // With nothing active, that is the answer (the arbiter's), whatever the target's state.
        const active = s.lease.holder !== null && s.lease.state === 'held';
        if (
          active &&
          !target.isHolder &&
          (target.role !== 'passive' || target.lastHeartbeatAgoMs === null || target.lastHeartbeatAgoMs > SWITCHOVER_TARGET_SEEN_MS)
        ) {
          throw new ApiError(
            409,
            'target_not_ready',
            `${to} is not a passive node heard from in the last ${SWITCHOVER_TARGET_SEEN_MS / 1000} s (role ${target.role ?? 'unknown'}, last heartbeat ${target.lastHeartbeatAgoMs === null ? 'never' : `${Math.round(target.lastHeartbeatAgoMs / 1000)} s ago`})`,
          );
        }
        const lease = await arbiter.requestSwitchover(clusterId, to, requester(c));
        return c.json({ clusterId, from: lease.holder!, to, epoch: lease.epoch, requestedAt: iso(lease.switchover?.requestedAt ?? clock.now()) }, 202);
      },
    )
    .openapi(
      createRoute({
        method: 'put',
        operationId: 'setMaintenance',
        path: '/v1/clusters/{clusterId}/maintenance',
        tags,
        summary: 'Maintenance mode on or off (admin)',
        description:
          'Like Pacemaker maintenance-mode or a Patroni pause: the holder keeps renewing its lease (and demotes at its deadline if it cannot), but no agent restarts or releases a failed resource and no node takes the lease over. Switchovers wait until it ends.',
        request: { params: ClusterParams, ...jsonBody(z.object({ enabled: z.boolean() }).strict()) },
        responses: { 200: jsonResponse(z.object({ clusterId: z.string(), maintenance: z.boolean() }), 'The mode now in force'), ...errors(400, 404, 503) },
      }),
      async (c) => {
        const { clusterId } = c.req.valid('param');
        await cluster(clusterId);
        const lease = await arbiter.setMaintenance(clusterId, c.req.valid('json').enabled, requester(c));
        return c.json({ clusterId, maintenance: lease.maintenance }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'put',
        operationId: 'setStandby',
        path: '/v1/clusters/{clusterId}/standby/{node}',
        tags,
        summary: 'A node in or out of standby (admin)',
        description:
          'A node in standby may not hold the lease: if it holds it, it demotes and releases at its next renewal and the peer takes over (fencing it). Only one node at a time; taking it out of standby makes it eligible again.',
        request: { params: ClusterParams.extend({ node: NodeId }), ...jsonBody(z.object({ enabled: z.boolean() }).strict()) },
        responses: { 200: jsonResponse(z.object({ clusterId: z.string(), standby: z.array(NodeId) }), 'Nodes now in standby'), ...errors(400, 404, 409, 503) },
      }),
      async (c) => {
        const { clusterId, node } = c.req.valid('param');
        await cluster(clusterId);
        const lease = await arbiter.setStandby(clusterId, node, c.req.valid('json').enabled, requester(c));
        return c.json({ clusterId, standby: lease.standby }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        operationId: 'listEvents',
        path: '/v1/clusters/{clusterId}/events',
        tags,
        summary: "The cluster's timeline, oldest first (order=newest: newest first)",
        request: {
          params: ClusterParams,
          query: z.object({
            limit: z.coerce.number().int().min(1).max(500).default(100),
            cursor: z.string().regex(EVENT_CURSOR, 'must be a cursor returned by a previous page').optional(),
            type: z
              .string()
              .max(1000)
              .transform((v) => v.split(','))
              .pipe(z.array(EventTypeSchema))
              .optional()
              .describe(`Only these types, comma-separated (${EVENT_TYPES.join(', ')})`),
            node: NodeId.optional().describe('Only events of this node'),
            epoch: z.coerce.number().int().nonnegative().optional().describe('Only events of this epoch'),
            order: z
              .enum(['oldest', 'newest'])
              .default('oldest')
              .describe('oldest: oldest first, the cursor pages forward; newest: newest first, the cursor pages back'),
            since: z.iso.datetime({ offset: true }).optional().describe('Only events at or after this time (ISO 8601)'),
          }),
        },
        responses: { 200: jsonResponse(EventPageSchema, 'A page of events'), ...errors(400, 404, 503) },
      }),
      async (c) => {
        const { clusterId } = c.req.valid('param');
        await cluster(clusterId);
        const { type, node, epoch, order, since, ...page } = c.req.valid('query');
        const filter = { types: type, node, epoch };
        const query = { ...page, types: type, newestFirst: order === 'newest', fromAt: since === undefined ? undefined : Date.parse(since) };
        return c.json(await filteredEvents(store, clusterId, query, type || node || epoch !== undefined ? (e) => eventMatches(e, filter) : null), 200);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        operationId: 'listFencing',
        path: '/v1/clusters/{clusterId}/fencing',
        tags,
        summary: 'Fencing history: every fencing decision, who fenced whom, and when it was confirmed',
        request: {
          params: ClusterParams,
          query: z.object({
            limit: z.coerce.number().int().min(1).max(100).default(20),
            cursor: z.string().regex(EVENT_CURSOR, 'must be a cursor returned by a previous page').optional(),
          }),
        },
        responses: {
          200: jsonResponse(
            FencingHistorySchema.extend({ cursor: z.string().nullable().describe('Pass as ?cursor= for older decisions; null at the beginning') }),
            'Newest first',
          ),
          ...errors(400, 404, 503),
        },
      }),
      async (c) => {
        const { clusterId } = c.req.valid('param');
        const { limit, cursor: from } = c.req.valid('query');
        await cluster(clusterId);
        // Newest first, a bounded scan per request: a confirmation comes before its decision.
        const fencing: z.infer<typeof FencingEntry>[] = [];
        const confirmed = new Map<number, ClusterEvent>();
        let cursor = from;
        let resume: string | null = null;
        scan: for (let pages = 0; pages < SCAN_PAGES; pages++) {
          const page = await store.listEvents(clusterId, { limit: SCAN_PAGE, cursor, newestFirst: true, types: FENCING_TYPES });
          for (const e of page.events) {
            if (e.type === 'fencing.confirmed') confirmed.set(e.epoch, e);
            if (e.type !== 'fencing.decided') continue;
            const done = confirmed.get(e.epoch);
            confirmed.delete(e.epoch);
            fencing.push({
              epoch: e.epoch,
              holder: e.node,
              victim: e.data.victim,
              keys: e.data.keys,
              reason: e.data.reason,
              decidedAt: iso(e.at),
              confirmedAt: done ? iso(done.at) : null,
              durationMs: done?.type === 'fencing.confirmed' ? (done.data.durationMs ?? null) : null,
            });
            resume = `${e.at}.${e.id}`;
            if (fencing.length === limit) break scan;
          }
          if (!page.cursor) {
            resume = null;
            break;
          }
          cursor = page.cursor;
          // Past the scan budget, go on from the last decision (its confirmation, if any, is behind it).
          if (pages === SCAN_PAGES - 1 && confirmed.size === 0) resume = cursor;
        }
        return c.json({ fencing, cursor: resume }, 200);
      },
    );
}

/**
 * A page of events that match `filter`, read through as many store pages as it takes (at most
 * SCAN_PAGES, then the cursor says where to go on), so a sparse filter still fills its page.
 */
async function filteredEvents(store: Store, clusterId: string, query: EventQuery, filter: ((e: ClusterEvent) => boolean) | null): Promise<EventPage> {
  if (!filter) return store.listEvents(clusterId, query);
  const events: ClusterEvent[] = [];
  let cursor = query.cursor;
  for (let pages = 0; pages < SCAN_PAGES; pages++) {
    const page = await store.listEvents(clusterId, { ...query, limit: Math.min(query.limit, SCAN_PAGE), cursor });
    for (const e of page.events) {
      if (!filter(e)) continue;
      events.push(e);
      if (events.length === query.limit) return { events, cursor: `${e.at}.${e.id}` };
    }
    if (!page.cursor) return { events, cursor: null };
    cursor = page.cursor;
  }
  return { events, cursor: cursor ?? null };
}
