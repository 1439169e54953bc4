/**
 * Credentials. A token names its kind and id, so the control plane finds its record with one
 * read, then compares a hash of its secret in constant time; only hashes are stored.
 *
 *   nfsha_<kind>_<id>_<secret>   kind: op (operator key), ag (agent credential), en (enrolment token)
 */
import { z } from 'zod';

export const OperatorRole = z.enum(['admin', 'read-only']);
export type OperatorRole = z.infer<typeof OperatorRole>;

export const SECRET_KINDS = { op: 'operator', ag: 'agent', en: 'enrolment' } as const;
export type SecretKind = (typeof SECRET_KINDS)[keyof typeof SECRET_KINDS];

const TOKEN = /^nfsha_(op|ag|en)_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface ParsedToken {
  kind: SecretKind;
  id: string;
  secret: string;
}

export function parseToken(token: string): ParsedToken | null {
  const m = TOKEN.exec(token);
  return m ? { kind: SECRET_KINDS[m[1] as keyof typeof SECRET_KINDS], id: m[2]!, secret: m[3]! } : null;
}

export function formatToken(kind: SecretKind, id: string, secret: string): string {
  const prefix = (Object.keys(SECRET_KINDS) as (keyof typeof SECRET_KINDS)[]).find((k) => SECRET_KINDS[k] === kind)!;
  return `nfsha_${prefix}_${id}_${secret}`;
}
