/**
 * Control-plane configuration from the environment, validated once at start-up.
 * The store is the embedded dynalite unless DynamoDB is asked for (NFSHA_STORE=dynamodb, a
 * DYNAMODB_ENDPOINT, or running in Lambda, detected by AWS_LAMBDA_FUNCTION_NAME).
 */
import { z } from 'zod';

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
  LAMBDA_TASK_ROOT: z.string().min(1).optional(),
});

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
  LAMBDA_TASK_ROOT: 'lambda-runtime',
};

/** The variables the control plane reads. */
export const ENV_VARS = Object.keys(Env.shape) as (keyof typeof ENV_SOURCE)[];

export type StoreConfig =
  { kind: 'embedded'; dataDir: string; tableName: string } | { kind: 'dynamodb'; tableName: string; endpoint: string | undefined; region: string | undefined };

export interface Config {
  runtime: 'lambda' | 'node';
  port: number;
  host: string;
  logLevel: z.infer<typeof Env>['LOG_LEVEL'];
  store: StoreConfig;
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
  return {
    runtime,
    port: e.PORT,
    host: e.HOST,
    logLevel: e.LOG_LEVEL,
    store:
      kind === 'embedded'
        ? { kind, dataDir: e.NFSHA_DATA_DIR, tableName: e.NFSHA_TABLE }
        : { kind, tableName: e.NFSHA_TABLE, endpoint: e.DYNAMODB_ENDPOINT, region: e.AWS_REGION },
  };
}
