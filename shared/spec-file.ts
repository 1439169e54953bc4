/** A cluster spec as a file holds it — YAML or JSON (JSON is YAML) — checked with the API's own schema. */
import { parse } from 'yaml';
import { type ClusterSpec, ClusterSpecSchema } from './spec.ts';

export function specFromText(text: string, file: string): { spec?: ClusterSpec; problems: string[] } {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    return { problems: [`${file}: ${(err as Error).message}`] };
  }
  const r = ClusterSpecSchema.safeParse(raw);
  if (!r.success) return { problems: r.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`) };
  return { spec: r.data, problems: [] };
}
