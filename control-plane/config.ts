/**
 * Control-plane configuration from the environment, validated once at start-up.
 * The store is the embedded dynalite unless DynamoDB is asked for (NFSHA_STORE=dynamodb, a
 * DYNAMODB_ENDPOINT, or running in Lambda, detected by AWS_LAMBDA_FUNCTION_NAME).
 */
import { z } from 'zod';
import { AddressSet } from './limits.ts';

/** A URL that goes into a shell script and into nodes' configs as it is: nothing to quote in it. */
const PlainUrl = z
  .url({ protocol: /^https?$/ })
  .regex(/^[A-Za-z0-9:/._~%-]+$/, 'must be a plain http(s) URL: letters, digits and : / . _ ~ % - only')
  .transform((u) => u.replace(/\/+$/, ''));

const Env = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().min(1).default('127.0.0.1'),
  NFSHA_STORE: z.enum(['embedded', 'dynamodb']).optional(),
  NFSHA_DATA_DIR: z.string().min(1).default('./data'),
  NFSHA_TABLE: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{3,255}$/, 'must be a DynamoDB table name')
    .default('nfs-ha'),
  DYNAMODB_ENDPOINT: z.url().optional(),
  AWS_REGION: z.string().min(1).optional(),
  AWS_LAMBDA_FUNCTION_NAME: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  NFSHA_AGENT_BUNDLE: z.string().min(1).optional().describe('The agent bundle the installer hands out (default dist/nfs-ha-agent.mjs)'),
  NFSHA_PUBLIC_URL: PlainUrl.optional().describe(
    'The URL nodes and operators reach this control plane by; the installer is written with it (never with request headers)',
  ),
  NFSHA_AGENT_URL: PlainUrl.optional().describe("The URL agents use, when it differs from NFSHA_PUBLIC_URL (on AWS: the agents' own function)"),
  NFSHA_TRUSTED_PROXIES: z.string().optional().describe('Comma-separated addresses or CIDR blocks of reverse proxies whose X-Forwarded-For names the client'),
  NFSHA_WEBHOOK_ALLOW: z
    .string()
    .optional()
    .describe('Comma-separated addresses or CIDR blocks a webhook may reach although they are loopback, link-local or private'),
  NFSHA_EVENT_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(90),
  NFSHA_API_SURFACE: z
    .enum(['all', 'agent', 'operator'])
    .default('all')
    .describe("Which routes this instance serves: on AWS, the agents' function serves only theirs"),
});

const addressList = (name: string, value: string | undefined): string[] => {
  const entries = (value ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  for (const e of entries) {
    try {
      new AddressSet([e]);
    } catch {
      throw new ConfigError(`invalid configuration: ${name}: "${e}" is not an IP address or CIDR block`);
    }
  }
  return entries;
};

/**
 * Who sets each variable in a deployment. The template test checks that every 'template' one is
 * set on the function; the record's type makes a new variable impossible to leave unclassified.
 */
export const ENV_SOURCE: Record<keyof z.input<typeof Env>, 'template' | 'lambda-runtime' | 'node-server-only'> = {
  NFSHA_TABLE: 'template',
  LOG_LEVEL: 'template',
  AWS_REGION: 'lambda-runtime',
  AWS_LAMBDA_FUNCTION_NAME: 'lambda-runtime',
  PORT: 'node-server-only',
  HOST: 'node-server-only',
  NFSHA_STORE: 'node-server-only',
  NFSHA_DATA_DIR: 'node-server-only',
  DYNAMODB_ENDPOINT: 'node-server-only',
  NFSHA_AGENT_BUNDLE: 'node-server-only',
  NFSHA_PUBLIC_URL: 'template',
  NFSHA_AGENT_URL: 'template',
  NFSHA_TRUSTED_PROXIES: 'node-server-only',
  NFSHA_WEBHOOK_ALLOW: 'template',
  NFSHA_EVENT_RETENTION_DAYS: 'template',
  NFSHA_API_SURFACE: 'template',
};

/** The variables the control plane reads. */
export const ENV_VARS = Object.keys(Env.shape) as (keyof typeof ENV_SOURCE)[];

export type StoreConfig =
  { kind: 'embedded'; dataDir: string; tableName: string } | { kind: 'dynamodb'; tableName: string; endpoint: string | undefined; region: string | undefined };

/** What the HTTP app needs of the configuration (tests build it directly). */
export interface AppOptions {
  /** The URL the installer writes into a node's config; null: the installer is not served. */
  publicUrl: string | null;
  agentUrl: string | null;
  trustedProxies: string[];
  webhookAllow: string[];
  surface: 'all' | 'agent' | 'operator';
}

export interface Config {
  runtime: 'lambda' | 'node';
  port: number;
  host: string;
  logLevel: z.infer<typeof Env>['LOG_LEVEL'];
  store: StoreConfig;
  app: AppOptions;
  eventRetentionMs: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadConfig(env: NodeJS.ProcessEnv): Config {
  const parsed = Env.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(`invalid configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const e = parsed.data;
  const runtime = e.AWS_LAMBDA_FUNCTION_NAME ? 'lambda' : 'node';
  const kind = e.NFSHA_STORE ?? (e.DYNAMODB_ENDPOINT || runtime === 'lambda' ? 'dynamodb' : 'embedded');
  if (kind === 'embedded' && runtime === 'lambda') {
    throw new ConfigError('NFSHA_STORE=embedded cannot be used in Lambda: its data would live on one short-lived instance; use DynamoDB');
  }
  // Without a configured URL the Node server names itself by where it listens, when that is one address.
  const listening = e.HOST === '0.0.0.0' || e.HOST === '::' ? null : `http://${e.HOST.includes(':') ? `[${e.HOST}]` : e.HOST}:${e.PORT}`;
  const publicUrl = e.NFSHA_PUBLIC_URL ?? (runtime === 'node' ? listening : null);
  return {
    runtime,
    port: e.PORT,
    host: e.HOST,
    logLevel: e.LOG_LEVEL,
    app: {
      publicUrl,
      agentUrl: e.NFSHA_AGENT_URL ?? publicUrl,
      trustedProxies: addressList('NFSHA_TRUSTED_PROXIES', e.NFSHA_TRUSTED_PROXIES),
      webhookAllow: addressList('NFSHA_WEBHOOK_ALLOW', e.NFSHA_WEBHOOK_ALLOW),
      surface: e.NFSHA_API_SURFACE,
    },
    eventRetentionMs: e.NFSHA_EVENT_RETENTION_DAYS * 86_400_000,
    store:
      kind === 'embedded'
        ? { kind, dataDir: e.NFSHA_DATA_DIR, tableName: e.NFSHA_TABLE }
        : { kind, tableName: e.NFSHA_TABLE, endpoint: e.DYNAMODB_ENDPOINT, region: e.AWS_REGION },
  };
}
