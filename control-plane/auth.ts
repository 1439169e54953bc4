/**
 * Who is calling. Operator keys carry a role (admin, read-only); agent credentials are scoped
 * to one node of one cluster and obtained by exchanging a one-time, short-lived enrolment token.
 * Only SHA-256 hashes of secrets are stored, compared in constant time; secrets are shown once,
 * at creation, and never logged.
 *
 * Deciding that a token is bad never costs a store read (a flood of bad keys must not slow the
 * renewals down): every credential's record is held in memory — all of them loaded at start,
 * reloaded in the background every DIRECTORY_REFRESH_MS — and an id the directory does not know
 * is looked up in the store only within a small budget, its absence remembered for a while.
 * A revocation takes effect at once on the instance that revoked and within
 * DIRECTORY_REFRESH_MS elsewhere.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { formatToken, type OperatorRole, parseToken, type SecretKind } from '../shared/credentials.ts';
import type { Clock } from './clock.ts';
import { TokenBucket } from './limits.ts';
import type { SecretRecord, Store } from './store/store.ts';

export type Principal = { kind: 'operator'; id: string; role: OperatorRole; name: string } | { kind: 'agent'; id: string; clusterId: string; node: string };

export const DIRECTORY_REFRESH_MS = 10_000;
/** How long an id the store does not have is taken as unknown without asking again. */
const ABSENT_MS = 10_000;
/** Store reads for ids the directory does not know (a credential made by another instance): per second, and burst. */
const UNKNOWN_READS = { perS: 5, burst: 20 };
export const ENROLMENT_TTL_MS = { default: 3_600_000, max: 86_400_000 };
/** Agent credentials: how long the previous one keeps working after a rotation, by default and at most. */
export const ROTATION_OVERLAP_MS = { default: 3_600_000, max: 7 * 86_400_000 };

const KINDS: SecretKind[] = ['operator', 'agent', 'enrolment'];
const sha256 = (text: string) => createHash('sha256').update(text).digest();
const key = (kind: SecretKind, id: string) => `${kind}/${id}`;

function hashMatches(secret: string, storedHex: string): boolean {
  const stored = Buffer.from(storedHex, 'hex');
  const presented = sha256(secret);
  return stored.length === presented.length && timingSafeEqual(stored, presented);
}

/** Whether a record is usable now: not revoked, and not past the end of a rotation's overlap. */
export function live(record: SecretRecord, now: number): boolean {
  return record.revokedAt === null && (record.kind === 'enrolment' || record.expiresAt === undefined || record.expiresAt > now);
}

export class Credentials {
  readonly #records = new Map<string, SecretRecord>();
  readonly #absent = new Map<string, number>();
  readonly #unknownReads: TokenBucket;
  #loadedAt = -Infinity;
  #loading: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {
    this.#unknownReads = new TokenBucket(UNKNOWN_READS.perS, UNKNOWN_READS.burst, clock.now());
  }

  /** Loads every credential (single-flight); the first call waits for it, later ones refresh in the background. */
  async #directory(): Promise<void> {
    const stale = this.clock.now() - this.#loadedAt > DIRECTORY_REFRESH_MS;
    if (stale && !this.#loading) {
      this.#loading = (async () => {
        const started = this.clock.now();
        const lists = await Promise.all(KINDS.map((k) => this.store.listSecrets(k)));
        for (const r of lists.flat()) this.#remember(r);
        this.#loadedAt = started;
      })().finally(() => (this.#loading = null));
    }
    if (this.#loadedAt === -Infinity) await this.#loading;
    else this.#loading?.catch(() => {});
  }

  #remember(record: SecretRecord): void {
    this.#records.set(key(record.kind, record.id), record);
    this.#absent.delete(key(record.kind, record.id));
  }

  /** The record of a token's id: from the directory, or (rarely, within budget) from the store. */
  async #record(kind: SecretKind, id: string): Promise<SecretRecord | null> {
    await this.#directory();
    const k = key(kind, id);
    const known = this.#records.get(k);
    if (known) return known;
    const now = this.clock.now();
    if ((this.#absent.get(k) ?? -Infinity) > now) return null;
    if (!this.#unknownReads.take(now)) return null;
    const record = await this.store.getSecret(kind, id);
    if (record) this.#remember(record);
    else {
      this.#absent.set(k, now + ABSENT_MS);
      if (this.#absent.size > 10_000) this.#absent.delete(this.#absent.keys().next().value!);
    }
    return record;
  }

  /** Creates a secret record and returns its token: the only time the secret exists in clear. */
  async issue(kind: SecretKind, fields: Partial<SecretRecord>): Promise<{ token: string; record: SecretRecord }> {
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const record: SecretRecord = { ...fields, kind, id, hash: sha256(secret).toString('hex'), createdAt: this.clock.now(), revokedAt: null };
    if (!(await this.store.putSecretIfAbsent(record))) throw new Error(`credential id ${id} collided; try again`);
    this.#remember(record);
    return { token: formatToken(kind, id, secret), record };
  }

  /** The principal a bearer token stands for, or null if it is not a valid, live credential. */
  async authenticate(token: string): Promise<Principal | null> {
    const parsed = parseToken(token);
    if (!parsed || parsed.kind === 'enrolment') return null;
    const record = await this.#record(parsed.kind, parsed.id);
    if (!record || !live(record, this.clock.now()) || !hashMatches(parsed.secret, record.hash)) return null;
    return record.kind === 'operator'
      ? { kind: 'operator', id: record.id, role: record.role ?? 'read-only', name: record.name ?? '' }
      : { kind: 'agent', id: record.id, clusterId: record.clusterId!, node: record.node! };
  }

  async revoke(kind: SecretKind, id: string): Promise<boolean> {
    const at = this.clock.now();
    const known = this.#records.get(key(kind, id));
    if (known && known.revokedAt === null) this.#remember({ ...known, revokedAt: at });
    return this.store.markSecret(kind, id, 'revokedAt', at);
  }

  /** The live agent credentials of a node. */
  async agentCredentials(clusterId: string, node: string | null): Promise<SecretRecord[]> {
    const now = this.clock.now();
    return (await this.store.listSecrets('agent')).filter((r) => r.clusterId === clusterId && (node === null || r.node === node) && live(r, now));
  }

  /**
   * A new credential for a node. `overlapMs`: how long its other credentials keep working (a
   * rotation without downtime); 0 revokes them at once (a re-enrolment: the old one may be lost).
   */
  async rotate(clusterId: string, node: string, overlapMs: number): Promise<{ token: string; record: SecretRecord; superseded: string[] }> {
    const previous = await this.agentCredentials(clusterId, node);
    const issued = await this.issue('agent', { clusterId, node });
    const until = this.clock.now() + overlapMs;
    for (const r of previous) {
      if (overlapMs === 0) await this.revoke('agent', r.id);
      else if ((r.expiresAt ?? Infinity) > until) {
        await this.store.setSecretExpiry('agent', r.id, until);
        this.#remember({ ...r, expiresAt: until });
      }
    }
    return { ...issued, superseded: previous.map((r) => r.id) };
  }

  /**
   * Exchanges a one-time enrolment token for an agent credential of its node. The node's
   * previous credentials are revoked: a re-enrolled node may have lost its old one to anyone.
   */
  async enrol(
    token: string,
  ): Promise<{ token: string; clusterId: string; node: string; peerToken: string | null; previousPeerToken: string | null } | { refused: string }> {
    const parsed = parseToken(token);
    if (!parsed || parsed.kind !== 'enrolment') return { refused: 'not an enrolment token' };
    const record = await this.#record('enrolment', parsed.id);
    if (!record || record.revokedAt !== null || !hashMatches(parsed.secret, record.hash)) return { refused: 'unknown or revoked enrolment token' };
    if ((record.expiresAt ?? 0) <= this.clock.now()) return { refused: 'the enrolment token has expired; ask for a new one' };
    if (!(await this.store.markSecret('enrolment', record.id, 'usedAt', this.clock.now()))) return { refused: 'the enrolment token was already used' };
    this.#remember({ ...record, usedAt: this.clock.now() });
    const issued = await this.rotate(record.clusterId!, record.node!, 0);
    const cluster = await this.store.getCluster(record.clusterId!);
    return {
      token: issued.token,
      clusterId: record.clusterId!,
      node: record.node!,
      peerToken: cluster?.peerToken ?? null,
      previousPeerToken: cluster?.previousPeerToken ?? null,
    };
  }

  /** On an empty store: the first admin key (null when any operator key exists). */
  async bootstrapAdmin(): Promise<string | null> {
    if ((await this.store.listSecrets('operator')).length > 0) return null;
    return (await this.issue('operator', { role: 'admin', name: 'bootstrap' })).token;
  }

  /** A new admin key whatever exists (local recovery by whoever holds the data directory). */
  async recoveryAdmin(): Promise<string> {
    return (await this.issue('operator', { role: 'admin', name: `recovery-${new Date(this.clock.now()).toISOString()}` })).token;
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
 * cluster's spec is also open to its agents; key and credential management is for admins; other
 * reads need an operator key; every change needs an admin key; exchanging an enrolment token is
 * authenticated by the token itself.
 */
export function accessFor(method: string, path: string): Access {
  if (method === 'POST' && path === '/v1/enrol') return { public: true };
  const node = /^\/v1\/clusters\/([^/]+)\/nodes\/([^/]+)\//.exec(path);
  if (node) return { agentOf: { clusterId: node[1]!, node: node[2]! } };
  // Operator keys and agent credentials are managed by admins only, reading the lists included.
  // So are backups of the store: they hold every credential's hash.
  if (path === '/v1/keys' || path.startsWith('/v1/keys/') || path.startsWith('/v1/backups') || /^\/v1\/clusters\/[^/]+\/credentials(\/|$)/.test(path))
    return { operator: 'admin' };
  if (method === 'GET' || method === 'HEAD') {
    const cluster = /^\/v1\/clusters\/([^/]+)$/.exec(path);
    return { operator: 'read-only', ...(cluster && { orAgentOf: cluster[1]! }) };
  }
  return { operator: 'admin' };
}
