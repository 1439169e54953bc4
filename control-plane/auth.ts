/**
 * Who is calling. Operator keys carry a role (admin, read-only); agent credentials are scoped
 * to one node of one cluster and obtained by exchanging a one-time, short-lived enrolment token.
 * Only SHA-256 hashes of secrets are stored, compared in constant time; secrets are shown once,
 * at creation, and never logged.
 *
 * A verified token is remembered for CACHE_MS per instance, so a renewal stays one write; a
 * revocation takes effect at once on the instance that revoked and within CACHE_MS elsewhere.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { formatToken, type OperatorRole, parseToken, type SecretKind } from '../shared/credentials.ts';
import type { Clock } from './clock.ts';
import type { SecretRecord, Store } from './store/store.ts';

export type Principal = { kind: 'operator'; id: string; role: OperatorRole } | { kind: 'agent'; id: string; clusterId: string; node: string };

export const CACHE_MS = 10_000;
export const ENROLMENT_TTL_MS = { default: 3_600_000, max: 86_400_000 };

const sha256 = (text: string) => createHash('sha256').update(text).digest();

function hashMatches(secret: string, storedHex: string): boolean {
  const stored = Buffer.from(storedHex, 'hex');
  const presented = sha256(secret);
  return stored.length === presented.length && timingSafeEqual(stored, presented);
}

export class Credentials {
  readonly #cache = new Map<string, { principal: Principal; until: number }>();

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  /** Creates a secret record and returns its token: the only time the secret exists in clear. */
  async issue(kind: SecretKind, fields: Partial<SecretRecord>): Promise<{ token: string; record: SecretRecord }> {
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const record: SecretRecord = { ...fields, kind, id, hash: sha256(secret).toString('hex'), createdAt: this.clock.now(), revokedAt: null };
    if (!(await this.store.putSecretIfAbsent(record))) throw new Error(`credential id ${id} collided; try again`);
    return { token: formatToken(kind, id, secret), record };
  }

  /** The principal a bearer token stands for, or null if it is not a valid, live credential. */
  async authenticate(token: string): Promise<Principal | null> {
    const key = sha256(token).toString('hex');
    const now = this.clock.now();
    const cached = this.#cache.get(key);
    if (cached && cached.until > now) return cached.principal;
    const parsed = parseToken(token);
    if (!parsed || parsed.kind === 'enrolment') return null;
    const record = await this.store.getSecret(parsed.kind, parsed.id);
    if (!record || record.revokedAt !== null || !hashMatches(parsed.secret, record.hash)) return null;
    const principal: Principal =
      record.kind === 'operator'
        ? { kind: 'operator', id: record.id, role: record.role ?? 'read-only' }
        : { kind: 'agent', id: record.id, clusterId: record.clusterId!, node: record.node! };
    this.#cache.set(key, { principal, until: now + CACHE_MS });
    if (this.#cache.size > 10_000) this.#cache.delete(this.#cache.keys().next().value!);
    return principal;
  }

  async revoke(kind: SecretKind, id: string): Promise<boolean> {
    for (const [key, entry] of this.#cache) if (entry.principal.id === id) this.#cache.delete(key);
    return this.store.markSecret(kind, id, 'revokedAt', this.clock.now());
  }

  /** Exchanges a one-time enrolment token for an agent credential of its node. */
  async enrol(token: string): Promise<{ token: string; clusterId: string; node: string; peerToken: string | null } | { refused: string }> {
    const parsed = parseToken(token);
    if (!parsed || parsed.kind !== 'enrolment') return { refused: 'not an enrolment token' };
    const record = await this.store.getSecret('enrolment', parsed.id);
    if (!record || record.revokedAt !== null || !hashMatches(parsed.secret, record.hash)) return { refused: 'unknown or revoked enrolment token' };
    if ((record.expiresAt ?? 0) <= this.clock.now()) return { refused: 'the enrolment token has expired; ask for a new one' };
    if (!(await this.store.markSecret('enrolment', record.id, 'usedAt', this.clock.now()))) return { refused: 'the enrolment token was already used' };
    const issued = await this.issue('agent', { clusterId: record.clusterId, node: record.node });
    const cluster = await this.store.getCluster(record.clusterId!);
    return { token: issued.token, clusterId: record.clusterId!, node: record.node!, peerToken: cluster?.peerToken ?? null };
  }

  /** On an empty store: the first admin key (null when any operator key exists). */
  async bootstrapAdmin(): Promise<string | null> {
    if ((await this.store.listSecrets('operator')).length > 0) return null;
    return (await this.issue('operator', { role: 'admin', name: 'bootstrap' })).token;
  }
}

/** What a route demands of its caller. */
export type Access = { public: true } | { operator: OperatorRole; orAgentOf?: string } | { agentOf: { clusterId: string; node: string } };

export function allows(access: Access, p: Principal): boolean {
  if ('public' in access) return true;
  if ('agentOf' in access) return p.kind === 'agent' && p.clusterId === access.agentOf.clusterId && p.node === access.agentOf.node;
  if (p.kind === 'agent') return access.orAgentOf !== undefined && p.clusterId === access.orAgentOf;
  return access.operator === 'read-only' || p.role === 'admin';
}

/**
 * The access rule of each route: node routes are their node's agent's alone; reading a
 * cluster's spec is also open to its agents; key management is for admins; other reads need an
 * operator key; every change needs an admin key; exchanging an enrolment token is
 * authenticated by the token itself.
 */
export function accessFor(method: string, path: string): Access {
  if (method === 'POST' && path === '/v1/enrol') return { public: true };
  const node = /^\/v1\/clusters\/([^/]+)\/nodes\/([^/]+)\//.exec(path);
  if (node) return { agentOf: { clusterId: node[1]!, node: node[2]! } };
  // Operator keys are managed by admins only, reading the list included.
  if (path === '/v1/keys' || path.startsWith('/v1/keys/')) return { operator: 'admin' };
  if (method === 'GET' || method === 'HEAD') {
    const cluster = /^\/v1\/clusters\/([^/]+)$/.exec(path);
    return { operator: 'read-only', ...(cluster && { orAgentOf: cluster[1]! }) };
  }
  return { operator: 'admin' };
}

/** Counts authentication failures per client; past the limit, requests are refused for a while. */
export class FailureLimiter {
  readonly #failures = new Map<string, number[]>();

  constructor(
    private readonly limit = 20,
    private readonly windowMs = 60_000,
  ) {}

  blocked(client: string, now: number): boolean {
    const failures = this.#failures.get(client);
    if (!failures) return false;
    const recent = failures.filter((t) => t > now - this.windowMs);
    if (recent.length === 0) this.#failures.delete(client);
    else this.#failures.set(client, recent);
    return recent.length >= this.limit;
  }

  fail(client: string, now: number): void {
    this.#failures.set(client, [...(this.#failures.get(client) ?? []), now]);
    if (this.#failures.size > 10_000) this.#failures.delete(this.#failures.keys().next().value!);
  }
}
