import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON logs on stdout, one object per line; secrets are never passed to the logger. */
export function createLogger(level: string, name = 'nfs-ha-control-plane'): Logger {
  return pino({ name, level, base: { service: name }, timestamp: pino.stdTimeFunctions.isoTime });
}
